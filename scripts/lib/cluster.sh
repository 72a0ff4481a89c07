# Shared by the test scripts: start a cluster of N `sluice serve` processes
# on 127.0.0.1, each a broker and a voter of the metadata quorum, the way a
# real deployment starts them (not `sluice dev cluster`: the script owns every
# port and PID).
#
# The caller defines TMP (with the binary at $TMP/sluice), say and fail.
# start_cluster N starts nodes 1..N with free ports, --node-id i,
# --controller-listen, the same --controller-quorum-voters, data in
# $TMP/node-i and the log in $TMP/node-i.log; it waits until every node's
# /readyz on --http-listen answers 200 and every node's Metadata lists the N
# brokers (`sluice cluster info`, which also checks each broker answers
# ApiVersions), and sets:
#   B                  the bootstrap list, host:port of every node, comma-separated
#   NODE_PIDS[i]       node i's PID (empty once stopped)
#   NODE_KAFKA[i]      its Kafka address, NODE_HTTP[i] its HTTP address
#   CLUSTER_RF         the replication factor for test topics: min(N, 3)
#   CLUSTER_MIN_ISR    min.insync.replicas: CLUSTER_RF-1 (2 of 3), at least 1
# Every node runs with -c group.initial.rebalance.delay.ms=0
# -c default.replication.factor=CLUSTER_RF -c min.insync.replicas=CLUSTER_MIN_ISR
# plus SLUICE_SERVE_ARGS. A port taken between picking it and binding it
# restarts the cluster with other ports (3 attempts).
#
# stop_cluster [TIMEOUT_S] sends SIGTERM to every node at once, as `sluice dev
# cluster` stops its nodes (each tries a controlled shutdown first), and kills
# those still running after TIMEOUT_S (default 60); it sets NODE_RC[i] to each
# node's exit status (137 when killed) and never fails. cluster_logs prints each node's
# WARN/ERROR lines and the tail of its log, for a failed run.

. "$(dirname "${BASH_SOURCE[0]}")/broker.sh" # free_port

# cluster_ready_timeout: seconds for a new cluster to elect a quorum, register
# and unfence every broker (a 2-core machine shared with other tests is slow).
cluster_ready_timeout=60

NODE_PIDS=()
NODE_KAFKA=()
NODE_HTTP=()
NODE_RC=()

# http_status HOST:PORT PATH: the status line of GET PATH, or nothing.
http_status() {
	local host=${1%:*} port=${1##*:}
	(exec 3<>"/dev/tcp/$host/$port" && printf 'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' "$2" >&3 && head -n1 <&3) 2>/dev/null | tr -d '\r' || true
}

# cluster_pick_ports N: 3N distinct free ports in PORTS.
cluster_pick_ports() {
	local n=$1 p
	declare -gA seen=()
	PORTS=()
	while [ ${#PORTS[@]} -lt $((3 * n)) ]; do
		p=$(free_port)
		[ -z "${seen[$p]:-}" ] || continue
		seen[$p]=1
		PORTS+=("$p")
	done
	unset seen
}

start_cluster() {
	local n=$1 attempt i voters deadline pending info
	[ "$n" -ge 2 ] 2>/dev/null || fail "start_cluster: want 2 or more nodes, got '$n'"
	CLUSTER_RF=$((n < 3 ? n : 3))
	CLUSTER_MIN_ISR=$((CLUSTER_RF > 1 ? CLUSTER_RF - 1 : 1))
	for attempt in 1 2 3; do
		cluster_pick_ports "$n"
		voters="" B=""
		for i in $(seq 1 "$n"); do
			NODE_KAFKA[i]=127.0.0.1:${PORTS[3 * (i - 1)]}
			NODE_CTRL[i]=127.0.0.1:${PORTS[3 * (i - 1) + 1]}
			NODE_HTTP[i]=127.0.0.1:${PORTS[3 * (i - 1) + 2]}
			voters+="${voters:+,}$i@${NODE_CTRL[i]}"
			B+="${B:+,}${NODE_KAFKA[i]}"
		done
		for i in $(seq 1 "$n"); do
			"$TMP/sluice" serve --node-id "$i" --listen "${NODE_KAFKA[i]}" \
				--controller-listen "${NODE_CTRL[i]}" --controller-quorum-voters "$voters" \
				--http-listen "${NODE_HTTP[i]}" --data-dir "$TMP/node-$i" --schema-registry-listen "" \
				-c group.initial.rebalance.delay.ms=0 \
				-c default.replication.factor="$CLUSTER_RF" -c min.insync.replicas="$CLUSTER_MIN_ISR" \
				${SLUICE_SERVE_ARGS:-} >>"$TMP/node-$i.log" 2>&1 &
			NODE_PIDS[i]=$!
		done
		say "cluster: $n nodes starting (pids ${NODE_PIDS[*]}; voters $voters)"
		# Every node up: serving, /readyz 200.
		deadline=$((SECONDS + cluster_ready_timeout))
		while :; do
			pending=""
			for i in $(seq 1 "$n"); do
				if ! kill -0 "${NODE_PIDS[i]}" 2>/dev/null; then
					if grep -q "address already in use" "$TMP/node-$i.log" && [ "$attempt" -lt 3 ]; then
						say "cluster: node $i found a port taken; restarting the cluster with other ports"
						stop_cluster 20
						for j in $(seq 1 "$n"); do
							mv "$TMP/node-$j.log" "$TMP/node-$j.attempt$attempt.log" 2>/dev/null || true
							rm -rf "$TMP/node-$j"
						done
						continue 3
					fi
					fail "cluster: node $i (pid ${NODE_PIDS[i]}) exited while starting; its log: $TMP/node-$i.log"
				fi
				case $(http_status "${NODE_HTTP[i]}" /readyz) in
				*" 200"*) ;;
				*) pending+=" $i" ;;
				esac
			done
			[ -n "$pending" ] || break
			[ $SECONDS -lt $deadline ] || fail "cluster: /readyz of node(s)$pending did not answer 200 within ${cluster_ready_timeout}s"
			sleep 0.2
		done
		say "cluster: /readyz answers 200 on every node (http ${NODE_HTTP[*]})"
		# Every node's Metadata lists the N brokers, each answering ApiVersions.
		while :; do
			pending=""
			for i in $(seq 1 "$n"); do
				info=$("$TMP/sluice" cluster info -o json --timeout 5s --brokers "${NODE_KAFKA[i]}" 2>&1) || true
				printf '%s\n' "$info" >"$TMP/cluster-info-$i.json"
				if ! printf '%s' "$info" | python3 -c '
import json, sys
n, addrs = int(sys.argv[1]), sys.argv[2].split(",")
info = json.load(sys.stdin)
got = sorted("%s:%d" % (b["host"], b["port"]) for b in info["brokers"] if not b.get("error"))
sys.exit(0 if got == sorted(addrs) and info["controller"] >= 0 else 1)
' "$n" "$B" 2>/dev/null; then
					pending+=" $i"
				fi
			done
			[ -n "$pending" ] || break
			[ $SECONDS -lt $deadline ] || {
				cat "$TMP/cluster-info-${pending##* }.json" >&2
				fail "cluster: the Metadata of node(s)$pending did not list the $n brokers $B (with a controller, each answering ApiVersions) within ${cluster_ready_timeout}s"
			}
			sleep 0.5
		done
		say "cluster: every node's Metadata lists the $n brokers; bootstrap $B (topics RF $CLUSTER_RF, min.insync.replicas $CLUSTER_MIN_ISR)"
		return 0
	done
}

stop_cluster() {
	local timeout=${1:-60} i deadline alive
	for i in "${!NODE_PIDS[@]}"; do
		[ -z "${NODE_PIDS[i]}" ] || kill -TERM "${NODE_PIDS[i]}" 2>/dev/null || true
	done
	deadline=$((SECONDS + timeout))
	while [ $SECONDS -lt $deadline ]; do
		alive=""
		for i in "${!NODE_PIDS[@]}"; do
			if [ -n "${NODE_PIDS[i]}" ] && kill -0 "${NODE_PIDS[i]}" 2>/dev/null; then alive=1; fi
		done
		[ -n "$alive" ] || break
		sleep 0.1
	done
	for i in "${!NODE_PIDS[@]}"; do
		[ -n "${NODE_PIDS[i]}" ] || continue
		if kill -0 "${NODE_PIDS[i]}" 2>/dev/null; then
			say "cluster: node $i (pid ${NODE_PIDS[i]}) still running ${timeout}s after SIGTERM; killing it"
			kill -KILL "${NODE_PIDS[i]}" 2>/dev/null || true
		fi
		NODE_RC[i]=0
		wait "${NODE_PIDS[i]}" 2>/dev/null || NODE_RC[i]=$?
		NODE_PIDS[i]=""
	done
	return 0
}

cluster_logs() {
	local f
	for f in "$TMP"/node-*.log; do
		[ -s "$f" ] || continue
		printf '\n---- %s: WARN/ERROR lines (first 40) ----\n' "$f"
		grep -E 'level=(WARN|ERROR)|^error:|panic|fatal' "$f" | head -n 40 || true
		printf -- '---- %s: last 60 lines ----\n' "$f"
		tail -n 60 "$f"
	done
}
