# Shared by the test scripts: start `sluice serve` on random loopback ports.
# The caller defines TMP (with the binary at $TMP/sluice), say and fail;
# start_broker sets B (host:port), KPORT, HPORT and BROKER_PID, logs to
# $TMP/broker.log and retries when a picked port is taken meanwhile.
# SLUICE_SERVE_ARGS adds serve flags (e.g. "-c transaction.version=1").

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port found"
}

start_broker() {
	local attempt
	for attempt in 1 2 3; do
		KPORT=$(free_port)
		HPORT=$(free_port)
		B=127.0.0.1:$KPORT
		"$TMP/sluice" serve --listen "$B" --http-listen "127.0.0.1:$HPORT" --data-dir "$TMP/data" --schema-registry-listen "" \
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
			if grep -q "sluice serving" "$TMP/broker.log" && (exec 3<>"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null; then
				say "broker pid $BROKER_PID serving on $B (http 127.0.0.1:$HPORT)"
				return 0
			fi
			sleep 0.1
		done
		fail "the broker did not accept connections on $B within 30s"
	done
}
