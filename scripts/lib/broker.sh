# Shared by the test scripts: start `sluice serve` on random loopback ports.
# The caller defines TMP (with the binary at $TMP/sluice), say and fail;
# start_broker sets B (host:port), KPORT, HPORT and BROKER_PID, logs to
# $TMP/broker.log and retries when a picked port is taken meanwhile.
# SLUICE_SERVE_ARGS adds serve flags (e.g. "-c transaction.version=1").
# SCHEMA_REGISTRY=1 also serves the schema registry on a free port (SRPORT)
# and waits until it answers GET /subjects with 200 (it answers 503 until it
# has read _schemas); SR_URL (exported) is its http:// address. Otherwise
# the registry is off (--schema-registry-listen "").

# free_port: a port below the kernel's ephemeral range that nothing on
# 127.0.0.1 listens on. A port in that range may be handed to an outgoing
# connection (a cluster's nodes dial each other while the next one starts)
# between picking it and binding it.
free_port() {
	local p low
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "${low:-0}" -gt 10100 ] 2>/dev/null || low=32768
	for _ in $(seq 1 100); do
		p=$((10000 + RANDOM % (low - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port found"
}

# registry_ready PORT: GET /subjects on 127.0.0.1:PORT answers 200.
registry_ready() {
	local status
	status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /subjects HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && head -n1 <&3) 2>/dev/null || true)
	case "$status" in *" 200"*) return 0 ;; esac
	return 1
}

start_broker() {
	local attempt
	for attempt in 1 2 3; do
		KPORT=$(free_port)
		HPORT=$(free_port)
		B=127.0.0.1:$KPORT
		local sr=""
		if [ "${SCHEMA_REGISTRY:-}" = 1 ]; then
			SRPORT=$(free_port)
			sr=127.0.0.1:$SRPORT
			export SR_URL=http://$sr
		fi
		"$TMP/sluice" serve --listen "$B" --http-listen "127.0.0.1:$HPORT" --data-dir "$TMP/data" --schema-registry-listen "$sr" \
			-c group.initial.rebalance.delay.ms=0 ${SLUICE_SERVE_ARGS:-} >>"$TMP/broker.log" 2>&1 &
		BROKER_PID=$!
		local deadline=$((SECONDS + 30))
		while [ $SECONDS -lt $deadline ]; do
			if ! kill -0 "$BROKER_PID" 2>/dev/null; then
				wait "$BROKER_PID" || true
				BROKER_PID=""
				if grep -q "address already in use" "$TMP/broker.log" && [ $attempt -lt 3 ]; then
					say "port taken; retrying with others"
					: >"$TMP/broker.log"
					continue 2
				fi
				fail "the broker exited while starting"
			fi
			if grep -q "sluice serving" "$TMP/broker.log" && (exec 3<>"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null &&
				{ [ -z "$sr" ] || registry_ready "$SRPORT"; }; then
				say "broker pid $BROKER_PID serving on $B (http 127.0.0.1:$HPORT${sr:+, schema registry $SR_URL})"
				return 0
			fi
			sleep 0.1
		done
		fail "the broker did not accept connections on $B within 30s"
	done
}
