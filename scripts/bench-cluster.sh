#!/usr/bin/env bash
# The cluster figures of BENCHMARKS.md, on a 3-node cluster of `sluice serve`
# processes started by this script on 127.0.0.1 (each a broker and a voter of
# the metadata quorum, data in $BENCH_DIR, default settings otherwise):
#
#   tput      produce throughput to a topic of replication factor 3
#             (min.insync.replicas 2) against one of replication factor 1, the
#             same 6 partitions (leaders spread over the three nodes), the same
#             records, on the same three processes: `sluice bench produce
#             --acks all` at 100 B (RECORDS_A) and 1 KiB (RECORDS_B), the order
#             of RF 3 and RF 1 alternating by round, TPUT_ROUNDS rounds; the
#             figure is the ratio RF 3 / RF 1 of each pair (the reference is
#             measured in the same run, next to it)
#   failover  ROUNDS rounds of: a default kgo producer (idempotent, acks=all)
#             sends one record every 10 ms to one partition of an RF 3 topic;
#             the partition's leader is killed with SIGKILL; the figure is the
#             gap between the last acknowledgement before the kill and the first
#             after it, and from the kill to that first one; the node is then
#             restarted and the script waits until it is back in every ISR and
#             the preferred leaders are restored (ElectLeaders); the partition
#             (so the node killed) rotates by round
#   rolling   a controlled (SIGTERM) restart of every node, one after the other,
#             each waiting for the ISR and preferred leaders, while a kgo and a
#             librdkafka producer (acks=all, default retries) send one record
#             every 10 ms each round robin to the 6 partitions of an RF 3 topic:
#             delivery errors the applications saw (target 0) and latencies
#   catchup   one follower stopped (SIGTERM), CATCHUP_MB MiB of 1 KiB records
#             written to an RF 3 topic, the follower restarted: the time from its
#             start until it is in the ISR of every partition of the topic, and
#             the MB/s that makes of what it fetched (its topic bytes on disk)
#   reassign  REASSIGN_MB MiB moved between brokers unthrottled (against the
#             disk's raw sequential write), produce during a throttled move
#             against idle, and that topic drained off one broker (not in the
#             default STEPS)
#   flushnone FLUSH_NONE_ROUNDS more tput pairs after restarting the three nodes
#             with -c log.flush.policy=none (0: skipped)
#
# It prints a summary block and one JSON line per figure ({"figure": ...}) on
# stdout; every raw JSON line is in $OUT/results.jsonl, the nodes' logs in
# $OUT/node-N.log, the clients' in $OUT/*.err.
#
#   scripts/bench-cluster.sh
#   ROUNDS=5 TPUT_ROUNDS=3 CATCHUP_MB=256 scripts/bench-cluster.sh   # quicker
#   STEPS=failover ROUNDS=20 scripts/bench-cluster.sh
#
# Environment:
#   STEPS              comma-separated steps (default tput,failover,rolling,catchup,flushnone)
#   ROUNDS             failover rounds (default 20)
#   TPUT_ROUNDS        RF 3 / RF 1 pairs at each record size (default 5)
#   RECORDS_A          records of 100 B per tput run (default 500000)
#   RECORDS_B          records of 1 KiB per tput run (default 100000)
#   CATCHUP_MB         MiB written while the follower is down (default 1024;
#                      lowered to what the free disk allows, with a note)
#   FLUSH_NONE_ROUNDS  tput pairs with log.flush.policy=none (default 1)
#   REASSIGN_MB        MiB moved between brokers by the reassign step (default 512)
#   REASSIGN_THROTTLE_MB  the throttle of its second move, MB/s (default 20)
#   BENCH_DIR          where the nodes' data dirs go: the disk under test
#                      (default ${TMPDIR:-/tmp}; not a tmpfs for honest figures)
#   OUT                results directory (default: a new one under ${TMPDIR:-/tmp})
#   KEEP_DATA          1: leave the nodes' data dirs (default: removed at exit)
#   SLUICE_SERVE_ARGS  extra `sluice serve` arguments for every node
#   CONTROLLERS        0 (default): every node is a broker and a controller
#                      voter; N: N more nodes with process.roles=controller
#                      (the voters) and the 3 brokers with process.roles=broker,
#                      Kafka's production layout (killing a broker then never
#                      kills the controller)
#
# Only the processes this script started are stopped, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-tput,failover,rolling,catchup,flushnone}
ROUNDS=${ROUNDS:-20}
TPUT_ROUNDS=${TPUT_ROUNDS:-5}
RECORDS_A=${RECORDS_A:-500000}
RECORDS_B=${RECORDS_B:-100000}
CATCHUP_MB=${CATCHUP_MB:-1024}
FLUSH_NONE_ROUNDS=${FLUSH_NONE_ROUNDS:-1}
REASSIGN_MB=${REASSIGN_MB:-512}
REASSIGN_THROTTLE_MB=${REASSIGN_THROTTLE_MB:-20}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-cluster.XXXXXX")}
KEEP_DATA=${KEEP_DATA:-0}
NODES=3
CONTROLLERS=${CONTROLLERS:-0}
ALL=$((NODES + CONTROLLERS)) # brokers are 1..NODES, dedicated controllers after them
PARTITIONS=6
# node_ready_timeout: seconds for a node to answer /readyz 200 after its start.
node_ready_timeout=120
# stop_timeout: seconds a node may take to stop after SIGTERM before SIGKILL.
stop_timeout=60
# healthy_timeout: seconds to wait for full ISRs and preferred leaders.
healthy_timeout=180
# disk_margin_mb: free MiB left on BENCH_DIR's disk after the catch-up step.
disk_margin_mb=2048

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
BIN=$OUT/bin
DATA=$(mktemp -d "$BENCH_DIR/sluice-bench-cluster-data.XXXXXX")

log() { echo "bench-cluster: $(date +%T) $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
say() { log "$*"; }
now_ms() { date +%s%3N; }
has_step() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

for tool in go jq python3; do
	command -v "$tool" >/dev/null || fail "needs $tool"
done

. "$(dirname "${BASH_SOURCE[0]}")/lib/broker.sh" # free_port

log "building sluice and benchcluster into $BIN (results in $OUT, data in $DATA)"
mkdir -p "$BIN"
go build -o "$BIN/sluice" ./cmd/sluice
go build -o "$BIN/benchcluster" ./internal/benchref/cmd/benchcluster
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)

FRESH=1
NODE_PIDS=()
NODE_KAFKA=()
NODE_CTRL=()
NODE_HTTP=()
BG_PIDS=()
LOAD_PID=""
cleanup() {
	local i p
	for p in "${BG_PIDS[@]}" $LOAD_PID; do
		[ -z "$p" ] || kill -TERM "$p" 2>/dev/null || true
	done
	for i in "${!NODE_PIDS[@]}"; do
		[ -z "${NODE_PIDS[i]}" ] || kill -TERM "${NODE_PIDS[i]}" 2>/dev/null || true
	done
	# The last nodes cannot move their leaderships without a quorum: bounded.
	local deadline=$((SECONDS + stop_timeout))
	for i in "${!NODE_PIDS[@]}"; do
		[ -n "${NODE_PIDS[i]}" ] || continue
		while kill -0 "${NODE_PIDS[i]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		kill -KILL "${NODE_PIDS[i]}" 2>/dev/null || true
		wait "${NODE_PIDS[i]}" 2>/dev/null || true
	done
	if [ "$KEEP_DATA" != 1 ]; then rm -rf "$DATA"; fi
}
trap cleanup EXIT

# The 1-minute load average every 5 s, for the summary.
(while :; do echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg)"; sleep 5; done) >"$OUT/load.txt" &
LOAD_PID=$!

# record FIGURE-TAGS-JSON RESULT-JSON: one tagged line in $RESULTS.
record() {
	jq -c --argjson tags "$1" --argjson l "$(cut -d' ' -f1 /proc/loadavg)" '. + $tags + {load1: $l}' <<<"$2" >>"$RESULTS"
}

# http_status HOST:PORT PATH: the status line of GET PATH, or nothing.
http_status() {
	local host=${1%:*} port=${1##*:}
	(exec 3<>"/dev/tcp/$host/$port" && printf 'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' "$2" >&3 && head -n1 <&3) 2>/dev/null | tr -d '\r' || true
}

# metric NODE NAME: the value of an unlabelled metric on NODE's /metrics.
metric() {
	local host=${NODE_HTTP[$1]%:*} port=${NODE_HTTP[$1]##*:}
	(exec 3<>"/dev/tcp/$host/$port" && printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3) 2>/dev/null |
		awk -v n="$2" '$1 == n {print $2}' || true
}

pick_ports() {
	local i p seen=" "
	VOTERS="" B=""
	for i in $(seq 1 $ALL); do
		for kind in KAFKA CTRL HTTP; do
			while :; do
				p=$(free_port)
				case $seen in *" $p "*) continue ;; esac
				seen+="$p "
				break
			done
			eval "NODE_$kind[$i]=127.0.0.1:$p"
		done
		if [ "$CONTROLLERS" = 0 ] || [ "$i" -gt $NODES ]; then VOTERS+="${VOTERS:+,}$i@${NODE_CTRL[i]}"; fi
		if [ "$i" -le $NODES ]; then B+="${B:+,}${NODE_KAFKA[i]}"; fi
	done
}

# role_args I: node I's process.roles and listeners.
role_args() {
	if [ "$CONTROLLERS" = 0 ]; then
		echo --listen "${NODE_KAFKA[$1]}" --controller-listen "${NODE_CTRL[$1]}"
	elif [ "$1" -le $NODES ]; then
		echo --listen "${NODE_KAFKA[$1]}" -c process.roles=broker
	else
		echo --controller-listen "${NODE_CTRL[$1]}" -c process.roles=controller
	fi
}

# start_node I [ARGS...]: starts node I at its ports (again after a stop).
start_node() {
	local i=$1
	shift
	# shellcheck disable=SC2086 # SLUICE_SERVE_ARGS is split on purpose
	# shellcheck disable=SC2046 # role_args is split on purpose
	"$BIN/sluice" serve --node-id "$i" $(role_args "$i") --controller-quorum-voters "$VOTERS" \
		--http-listen "${NODE_HTTP[i]}" --data-dir "$DATA/node-$i" --schema-registry-listen "" \
		-c group.initial.rebalance.delay.ms=0 ${SLUICE_SERVE_ARGS:-} "$@" >>"$OUT/node-$i.log" 2>&1 &
	NODE_PIDS[i]=$!
	echo "$(date -Is) ---- bench-cluster: started pid ${NODE_PIDS[i]} $*" >>"$OUT/node-$i.log.marks"
}

# wait_ready I: until node I's /readyz answers 200.
wait_ready() {
	local i=$1 deadline=$((SECONDS + node_ready_timeout))
	while :; do
		kill -0 "${NODE_PIDS[i]}" 2>/dev/null || fail "node $i (pid ${NODE_PIDS[i]}) exited; its log: $OUT/node-$i.log"
		case $(http_status "${NODE_HTTP[i]}" /readyz) in *" 200"*) return 0 ;; esac
		[ $SECONDS -lt $deadline ] || fail "node $i: /readyz not 200 within ${node_ready_timeout}s"
		sleep 0.1
	done
}

# stop_node I: SIGTERM, then SIGKILL after stop_timeout; sets STOP_RC, STOP_MS.
stop_node() {
	local i=$1 t0 deadline
	t0=$(now_ms)
	kill -TERM "${NODE_PIDS[i]}" 2>/dev/null || true
	deadline=$((SECONDS + stop_timeout))
	while kill -0 "${NODE_PIDS[i]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
	if kill -0 "${NODE_PIDS[i]}" 2>/dev/null; then
		log "node $i (pid ${NODE_PIDS[i]}) still running ${stop_timeout}s after SIGTERM; killing it"
		kill -KILL "${NODE_PIDS[i]}" 2>/dev/null || true
	fi
	STOP_RC=0
	wait "${NODE_PIDS[i]}" 2>/dev/null || STOP_RC=$?
	STOP_MS=$(($(now_ms) - t0))
	NODE_PIDS[i]=""
}

start_cluster() {
	local i attempt
	for attempt in 1 2 3; do
		for i in $(seq 1 $ALL); do start_node "$i" "$@"; done
		sleep 1
		for i in $(seq 1 $ALL); do
			# Only a first start (no data yet) moves to other ports.
			if [ "$FRESH" = 1 ] && [ $attempt -lt 3 ] && ! kill -0 "${NODE_PIDS[i]}" 2>/dev/null &&
				grep -q "address already in use" "$OUT/node-$i.log"; then
				log "node $i found a port taken; starting the cluster again at other ports"
				stop_cluster
				rm -rf "$DATA"/node-*
				for j in $(seq 1 $ALL); do mv "$OUT/node-$j.log" "$OUT/node-$j.attempt$attempt.log"; done
				pick_ports
				continue 2
			fi
		done
		break
	done
	FRESH=0
	for i in $(seq 1 $ALL); do wait_ready "$i"; done
	# Every node's Metadata lists the three brokers.
	local deadline=$((SECONDS + node_ready_timeout)) n
	for i in $(seq 1 $NODES); do
		while :; do
			n=$("$BIN/sluice" cluster info -o json --timeout 5s --brokers "${NODE_KAFKA[i]}" 2>/dev/null | jq '[.brokers[] | select(.error == null)] | length' 2>/dev/null || echo 0)
			[ "$n" = "$NODES" ] && break
			[ $SECONDS -lt $deadline ] || fail "node $i's Metadata lists $n brokers, want $NODES"
			sleep 0.5
		done
	done
	log "cluster up: pids ${NODE_PIDS[*]}, bootstrap $B"
}

stop_cluster() {
	local i
	for i in $(seq 1 $ALL); do [ -z "${NODE_PIDS[i]}" ] || kill -TERM "${NODE_PIDS[i]}" 2>/dev/null || true; done
	for i in $(seq 1 $ALL); do [ -z "${NODE_PIDS[i]}" ] || stop_node "$i"; done
}

pids_arg() {
	local i s=""
	for i in $(seq 1 $NODES); do s+="${s:+,}$i=${NODE_PIDS[i]}"; done
	echo "$s"
}

TOPICS=""
# create_topic NAME RF: 6 partitions; RF 3 topics get min.insync.replicas 2.
create_topic() {
	local args=(--partitions $PARTITIONS --replicas "$2")
	[ "$2" -lt 3 ] || args+=(-c min.insync.replicas=2)
	"$BIN/sluice" topic create "$1" "${args[@]}" --brokers "$B" >>"$OUT/client.err" 2>&1 || fail "topic create $1 (see $OUT/client.err)"
	TOPICS+="${TOPICS:+,}$1"
}

# healthy [ARGS...]: every replica of every topic created here in the ISR and
# led by its preferred replica; prints benchcluster's JSON line.
healthy() {
	"$BIN/benchcluster" healthy -brokers "$B" -topics "$TOPICS" -timeout ${healthy_timeout}s -elect "$@" 2>>"$OUT/healthy.err" ||
		fail "the cluster did not become healthy (ISR and preferred leaders of $TOPICS) within ${healthy_timeout}s; see $OUT/healthy.err"
}

# bench_produce TAGS TOPIC SIZE RECORDS: one `sluice bench produce`, recorded.
bench_produce() {
	local tags=$1 topic=$2 size=$3 n=$4 out rc=0 line
	echo "== $tags" >>"$OUT/bench.err"
	out=$("$BIN/sluice" bench produce --topic "$topic" --records "$n" --record-size "$size" --partitions $PARTITIONS \
		--acks all --quiet --brokers "$B" 2>>"$OUT/bench.err") || rc=$?
	line=$(grep '^{' <<<"$out" | tail -1 || true)
	if [ -z "$line" ] || [ "$rc" != 0 ]; then
		log "produce $tags FAILED (exit $rc); see $OUT/bench.err"
		[ -n "$line" ] || line='{}'
		line=$(jq -c --argjson rc "$rc" '. + {failed: true, rc: $rc}' <<<"$line")
	fi
	record "$tags" "$line"
	log "produce $(jq -r '"\(.rf) \(.size)B round \(.round)"' <<<"$tags"): $(jq -r '"\(.records_per_sec // "-") rec/s \(.mib_per_sec // "-") MiB/s p99 \(.p99_ms // "-") ms errors \(.errors // "-")"' <<<"$line")"
}

# tput_pairs FLUSH ROUNDS: RF 3 and RF 1 alternating at both record sizes.
tput_pairs() {
	local flush=$1 rounds=$2 r size n rf order
	for r in $(seq 1 "$rounds"); do
		for size in 100 1024; do
			if [ "$size" = 100 ]; then n=$RECORDS_A; else n=$RECORDS_B; fi
			if [ $((r % 2)) = 1 ]; then order="3 1"; else order="1 3"; fi
			for rf in $order; do
				bench_produce "{\"figure\":\"tput\",\"flush\":\"$flush\",\"rf\":$rf,\"size\":$size,\"round\":$r}" "tp-rf$rf-$size" "$size" "$n"
			done
		done
	done
}

log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg); data disk: $(df -hT "$DATA" | awk 'NR==2 {print $1, $2, $3 " total,", $5 " free"}')"
pick_ports
start_cluster

# ---- tput ----
if has_step tput || has_step flushnone; then
	for size in 100 1024; do create_topic "tp-rf3-$size" 3; create_topic "tp-rf1-$size" 1; done
	healthy >/dev/null
	"$BIN/sluice" topic describe tp-rf1-100 tp-rf3-100 --brokers "$B" >"$OUT/tput-topics.txt" 2>&1 || true
fi
if has_step tput; then
	log "tput: $TPUT_ROUNDS pairs (RF 3, RF 1) at 100 B x $RECORDS_A and 1 KiB x $RECORDS_B"
	tput_pairs acks-all "$TPUT_ROUNDS"
fi

# ---- failover ----
if has_step failover; then
	create_topic fo 3
	healthy >/dev/null
	log "failover: $ROUNDS rounds"
	for r in $(seq 1 "$ROUNDS"); do
		p=$(((r - 1) % PARTITIONS))
		line=$("$BIN/benchcluster" failover -brokers "$B" -topic fo -partition "$p" -pids "$(pids_arg)" -log 2>>"$OUT/failover.err") ||
			fail "failover round $r (see $OUT/failover.err)"
		k=$(jq -r .killed_node <<<"$line")
		rc=0
		{ wait "${NODE_PIDS[k]}"; } 2>/dev/null || rc=$? # 137: killed
		NODE_PIDS[k]=""
		t0=$(now_ms)
		start_node "$k"
		wait_ready "$k"
		h=$(healthy) || exit 1
		restore=$(($(jq .done_unix_ms <<<"$h") - t0))
		record "{\"figure\":\"failover\",\"round\":$r,\"exit\":$rc,\"restore_ms\":$restore,\"isr_ms\":$(($(jq .isr_unix_ms <<<"$h") - t0))}" "$line"
		log "failover round $r: $(jq -r '"p\(.partition) killed node \(.killed_node)\(if .killed_controller then " (the controller)" else "" end) -> leader \(.new_leader) (in Metadata after \(.leader_visible_ms) ms): kgo gap \(.gap_ms) ms, kill to first ack \(.kill_to_first_ack_ms) ms, errors \(.errors); " + ([.clients[] | "\(.client) p\(.partition) (\(.role)) gap \(.gap_ms) max latency \(.latency_max_ms) errors \(.errors)"] | join("; "))' <<<"$line"); back in ISR + preferred after $restore ms"
	done
fi

# ---- rolling ----
if has_step rolling; then
	create_topic roll 3
	healthy >/dev/null
	"$BIN/benchcluster" produce-loop -brokers "$B" -topic roll -partitions $PARTITIONS -log >"$OUT/rolling-kgo.json" 2>"$OUT/rolling-kgo.err" &
	KGO_PID=$!
	# The same with kgo's MetadataMinAge at 100 ms instead of 5 s: how much
	# of kgo's latency is its own wait for fresh metadata.
	"$BIN/benchcluster" produce-loop -brokers "$B" -topic roll -partitions $PARTITIONS -metadata-min-age 100ms \
		-name kgo-metadata-min-age-100ms >"$OUT/rolling-kgo-fast.json" 2>"$OUT/rolling-kgo-fast.err" &
	KGO_FAST_PID=$!
	BG_PIDS+=("$KGO_PID" "$KGO_FAST_PID")
	RDK_PID=""
	RDK_PY=""
	for py in /usr/bin/python3 python3; do
		if "$py" -c 'import confluent_kafka' 2>/dev/null; then RDK_PY=$py; break; fi
	done
	if [ -n "$RDK_PY" ]; then
		"$RDK_PY" scripts/bench-cluster-rdkafka.py --brokers "$B" --topic roll --partitions $PARTITIONS >"$OUT/rolling-rdkafka.json" 2>"$OUT/rolling-rdkafka.err" &
		RDK_PID=$!
		BG_PIDS+=("$RDK_PID")
	else
		log "rolling: python3 confluent_kafka not found; librdkafka producer skipped"
	fi
	sleep 5
	for i in $(seq 1 $NODES); do
		stop_node "$i"
		stopped=$STOP_MS
		t0=$(now_ms)
		start_node "$i"
		wait_ready "$i"
		h=$(healthy) || exit 1
		record "{\"figure\":\"rolling-node\",\"node\":$i,\"exit\":$STOP_RC,\"shutdown_ms\":$stopped,\"restore_ms\":$(($(jq .done_unix_ms <<<"$h") - t0))}" "$h"
		log "rolling: node $i stopped in $stopped ms (exit $STOP_RC), back in ISR + preferred $(($(jq .done_unix_ms <<<"$h") - t0)) ms after its start"
		sleep 2
	done
	sleep 3
	kill -TERM "$KGO_PID" "$KGO_FAST_PID" ${RDK_PID:+"$RDK_PID"}
	wait "$KGO_PID" || log "rolling: the kgo producer exited $?"
	wait "$KGO_FAST_PID" || log "rolling: the second kgo producer exited $?"
	[ -z "$RDK_PID" ] || wait "$RDK_PID" || log "rolling: the librdkafka producer exited $?"
	BG_PIDS=()
	for f in "$OUT/rolling-kgo.json" "$OUT/rolling-kgo-fast.json" ${RDK_PID:+"$OUT/rolling-rdkafka.json"}; do
		line=$(grep '^{' "$f" | tail -1 || true)
		[ -n "$line" ] || { log "rolling: no result in $f"; continue; }
		record '{"figure":"rolling"}' "$line"
		log "rolling: $(jq -r '"\(.client): \(.produced) produced, \(.acked) acked, \(.errors) errors \(.error_kinds // {}), latency p99 \(.latency_p99_ms) max \(.latency_max_ms) ms"' <<<"$line")"
	done
fi

# ---- catchup ----
if has_step catchup; then
	avail=$(df --output=avail -BM "$DATA" | tail -1 | tr -dc 0-9)
	want=$CATCHUP_MB
	# Three replicas of it, the data's overhead, and the margin.
	if [ $((avail - disk_margin_mb)) -lt $((want * 7 / 2)) ]; then
		want=$(((avail - disk_margin_mb) * 2 / 7))
		log "catchup: $avail MiB free: writing $want MiB instead of $CATCHUP_MB"
	fi
	[ "$want" -ge 16 ] || fail "catchup: too little free disk ($avail MiB)"
	create_topic cu 3
	healthy >/dev/null
	f=3 # the follower stopped
	stop_node $f
	leader=1
	under_before=$(metric $leader sluice_under_replicated_partitions)
	"$BIN/sluice" topic describe cu --brokers "$B" >"$OUT/catchup-isr-after-stop.txt" 2>&1 || true
	# A probe: 200 records at 100/s right after the stop, their latency (an
	# acks=all produce waits for the ISR, which should no longer hold node f).
	bench_probe=$("$BIN/sluice" bench produce --topic cu --records 200 --rate 100 --record-size 1024 --acks all --quiet --brokers "$B" 2>>"$OUT/bench.err" | grep '^{' | tail -1 || true)
	[ -z "$bench_probe" ] || record '{"figure":"follower-stop-probe","rf":3,"size":1024}' "$bench_probe"
	log "catchup: probe right after the stop: $(jq -r '"\(.records) records, p50 \(.p50_ms) ms, max \(.max_ms) ms, errors \(.errors)"' <<<"${bench_probe:-null}")"
	"$BIN/sluice" topic describe cu --brokers "$B" >"$OUT/catchup-isr-after-probe.txt" 2>&1 || true
	records=$((want * 1024))
	log "catchup: node $f stopped; writing $want MiB ($records records of 1 KiB) to cu"
	bench_produce '{"figure":"catchup-write","rf":3,"size":1024,"round":1}' cu 1024 "$records"
	cu_bytes() { du -sb "$DATA/node-$1"/cu-* 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
	before=$(cu_bytes $f)
	leader_bytes=$(cu_bytes $leader)
	t0=$(now_ms)
	start_node $f
	wait_ready $f
	ready=$(($(now_ms) - t0))
	h=$("$BIN/benchcluster" healthy -brokers "$B" -topics cu -timeout 1800s 2>>"$OUT/healthy.err") || fail "catchup: node $f not back in the ISR of cu within 1800s"
	isr=$(($(jq .isr_unix_ms <<<"$h") - t0))
	# When it registered with the controller (its log's last such line):
	# the start before it (opening logs, joining the quorum) is no fetching.
	reg=$(grep 'msg="registered with the controller"' "$OUT/node-$f.log" | tail -1 | sed -n 's/^time=\([^ ]*\) .*/\1/p')
	reg=$([ -n "$reg" ] && echo $(($(date -d "$reg" +%s%3N) - t0)) || echo -1)
	after=$(cu_bytes $f)
	under_after=$(metric $leader sluice_under_replicated_partitions)
	record "$(jq -nc --argjson mb "$want" --argjson isr "$isr" --argjson ready "$ready" --argjson b0 "$before" --argjson b1 "$after" \
		--argjson lb "$leader_bytes" --arg u0 "$under_before" --arg u1 "$under_after" --argjson reg "$reg" \
		'{figure: "catchup", written_mib: $mb, isr_ms: $isr, ready_ms: $ready, registered_ms: $reg, follower_bytes_before: $b0, follower_bytes_after: $b1,
		  mib_per_s_after_registered: (if $reg >= 0 and $isr > $reg then ($b1 - $b0) / 1048576 / (($isr - $reg) / 1000) else null end),
		  leader_bytes: $lb, fetched_mib: (($b1 - $b0) / 1048576), mb_per_s: (($b1 - $b0) / 1e6 / ($isr / 1000)),
		  mib_per_s: (($b1 - $b0) / 1048576 / ($isr / 1000)), under_replicated_before: $u0, under_replicated_after: $u1}')" "{}"
	log "catchup: node $f in the ISR of cu ${isr} ms after its start (registered after $reg ms, /readyz after $ready ms); fetched $(((after - before) / 1048576)) MiB"
	healthy >/dev/null
	"$BIN/sluice" topic delete cu --brokers "$B" >>"$OUT/client.err" 2>&1 || log "catchup: topic delete cu failed"
	TOPICS=$(sed 's/,cu$//; s/,cu,/,/' <<<"$TOPICS")
fi

# ---- reassign ----
# Moving data between brokers: every partition of a topic holding
# REASSIGN_MB moved to the next broker with no throttle (against the disk's
# raw sequential write, measured alongside), produce throughput to another
# topic during a throttled move against idle, and a drain of a broker.
if has_step reassign; then
	disk=$("$BIN/sluice" bench disk --dir "$BENCH_DIR" --size-mib 1024 --quiet 2>>"$OUT/bench.err" | grep '^{' | tail -1)
	record '{"figure":"disk-reference"}' "$disk"
	create_topic mv 1
	records=$((REASSIGN_MB * 1024))
	log "reassign: writing $REASSIGN_MB MiB to mv (RF 1, $PARTITIONS partitions)"
	bench_produce '{"figure":"reassign-write","rf":1,"size":1024,"round":1}' mv 1024 "$records"
	mv_bytes() { du -sb "$DATA"/node-*/mv-* 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
	bytes=$(mv_bytes)
	# The plan: each partition to the next broker.
	"$BIN/sluice" topic describe mv -o json --brokers "$B" >"$OUT/mv-before.json" 2>>"$OUT/client.err" || fail "describe mv"
	jq --argjson n "$NODES" '{version: 1, partitions: [.partitions[] | {topic: "mv", partition: .partition, replicas: [(.replicas[0] % $n) + 1]}]}' \
		"$OUT/mv-before.json" >"$OUT/mv-plan.json"
	t0=$(now_ms)
	"$BIN/sluice" cluster reassign --plan "$OUT/mv-plan.json" --brokers "$B" >"$OUT/reassign-unthrottled.txt" 2>&1 || fail "reassign mv (see $OUT/reassign-unthrottled.txt)"
	ms=$(($(now_ms) - t0))
	record "$(jq -nc --argjson b "$bytes" --argjson ms "$ms" --argjson disk "$(jq .mib_per_sec <<<"$disk")" \
		'{figure: "reassign-unthrottled", bytes: $b, ms: $ms, mib_per_s: ($b / 1048576 / ($ms / 1000)), disk_mib_per_s: $disk, ratio_to_disk: (($b / 1048576 / ($ms / 1000)) / $disk)}')" "{}"
	log "reassign: moved $((bytes / 1048576)) MiB in $ms ms ($(jq -r '.mib_per_sec' <<<"$disk") MiB/s raw disk)"
	# Produce during a throttled move back, against idle.
	create_topic load 3
	bench_produce '{"figure":"reassign-produce","phase":"idle","rf":3,"size":1024,"round":1}' load 1024 300000
	jq --argjson n "$NODES" '{version: 1, partitions: [.partitions[] | {topic: "mv", partition: .partition, replicas: [.replicas[0]]}]}' \
		"$OUT/mv-before.json" >"$OUT/mv-back.json"
	"$BIN/sluice" cluster reassign --plan "$OUT/mv-back.json" --throttle "$REASSIGN_THROTTLE_MB" --no-wait --brokers "$B" >"$OUT/reassign-throttled.txt" 2>&1 ||
		fail "throttled reassign (see $OUT/reassign-throttled.txt)"
	t0=$(now_ms)
	bench_produce '{"figure":"reassign-produce","phase":"throttled-move","rf":3,"size":1024,"round":1}' load 1024 300000
	# Until --status finds nothing moving (it then removes the throttle).
	while :; do
		st=$("$BIN/sluice" cluster reassign --status --brokers "$B" 2>>"$OUT/client.err") || fail "reassign --status (see $OUT/client.err)"
		echo "$st" >>"$OUT/reassign-throttled.txt"
		grep -q PARTITION <<<"$st" || break
		sleep 1
	done
	ms=$(($(now_ms) - t0))
	record "$(jq -nc --argjson b "$bytes" --argjson ms "$ms" --argjson mb "$REASSIGN_THROTTLE_MB" \
		'{figure: "reassign-throttled", bytes: $b, ms: $ms, throttle_mb_per_s: $mb, mb_per_s: ($b / 1e6 / ($ms / 1000))}')" "{}"
	log "reassign: moved back under a $REASSIGN_THROTTLE_MB MB/s throttle in $ms ms"
	# Drain mv off the broker holding the most of it (what `cluster drain`
	# does for every topic; other steps' RF 3 topics could not leave one of
	# three brokers).
	victim=$(jq -r '[.partitions[].replicas[0]] | group_by(.) | max_by(length)[0]' "$OUT/mv-before.json")
	vb=$(du -sb "$DATA/node-$victim"/mv-* 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}')
	others=$(seq 1 $NODES | grep -vx "$victim" | paste -sd,)
	t0=$(now_ms)
	"$BIN/sluice" cluster reassign --topics mv --broker-list "$others" --brokers "$B" >"$OUT/drain.txt" 2>&1 || fail "drain mv off $victim (see $OUT/drain.txt)"
	ms=$(($(now_ms) - t0))
	record "$(jq -nc --argjson v "$victim" --argjson ms "$ms" --argjson b "$vb" '{figure: "drain", broker: $v, bytes: $b, ms: $ms, mib_per_s: ($b / 1048576 / ($ms / 1000))}')" "{}"
	log "drain: $((vb / 1048576)) MiB of mv moved off broker $victim in $ms ms"
	for t in mv load; do "$BIN/sluice" topic delete $t --brokers "$B" >>"$OUT/client.err" 2>&1 || true; done
	TOPICS=$(sed 's/,\?mv//; s/,\?load//' <<<"$TOPICS")
fi

# ---- flushnone ----
if has_step flushnone && [ "$FLUSH_NONE_ROUNDS" -gt 0 ]; then
	log "flushnone: restarting the three nodes with -c log.flush.policy=none"
	stop_cluster
	start_cluster -c log.flush.policy=none
	healthy >/dev/null
	tput_pairs none "$FLUSH_NONE_ROUNDS"
fi

stop_cluster
kill -TERM "$LOAD_PID" 2>/dev/null || true
LOAD_PID=""

# ---- summary ----
grep -hE 'level=(WARN|ERROR)|panic' "$OUT"/node-*.log >"$OUT/warn-error.txt" 2>/dev/null || true
python3 - "$RESULTS" "$OUT/load.txt" "$COMMIT" "$DIRTY" "$OUT" <<'PYEOF'
import json, statistics, sys

res = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
loads = [float(l.split()[1]) for l in open(sys.argv[2]) if l.strip()]
commit, dirty, out = sys.argv[3], int(sys.argv[4]), sys.argv[5]
lines = []

def mmm(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3), "max": round(max(xs), 3), "n": len(xs)}

def fmt(m, unit=""):
    return "—" if m is None else f"{m['min']:,.2f} / {m['median']:,.2f} / {m['max']:,.2f}{unit} (n={m['n']})"

print("\n==== bench-cluster summary ====")
print(f"code {commit}{' + %d modified tracked files' % dirty if dirty else ''}; results {out}")
if loads:
    print(f"1-minute load average: median {statistics.median(loads):.2f}, max {max(loads):.2f} (over {len(loads)} samples, 5 s apart)")

for flush in ("acks-all", "none"):
    tp = [r for r in res if r.get("figure") == "tput" and r.get("flush") == flush]
    if not tp:
        continue
    print(f"\nproduce, acks=all, 6 partitions, log.flush.policy={flush}: each run (rec/s, MiB/s, p99 ms)")
    for size in (100, 1024):
        runs = [r for r in tp if r["size"] == size]
        if not runs:
            continue
        pairs = []
        for rnd in sorted({r["round"] for r in runs}):
            a = [r for r in runs if r["round"] == rnd and r["rf"] == 3 and not r.get("failed")]
            b = [r for r in runs if r["round"] == rnd and r["rf"] == 1 and not r.get("failed")]
            if a and b:
                pairs.append((rnd, a[0], b[0]))
                print(f"  {size:>4} B round {rnd}: RF3 {a[0]['records_per_sec']:>10,.0f} rec/s {a[0]['mib_per_sec']:7.1f} MiB/s p99 {a[0]['p99_ms']:7.1f} | "
                      f"RF1 {b[0]['records_per_sec']:>10,.0f} rec/s {b[0]['mib_per_sec']:7.1f} MiB/s p99 {b[0]['p99_ms']:7.1f} | RF3/RF1 {a[0]['records_per_sec'] / b[0]['records_per_sec']:.2f}x")
        failed = [r for r in runs if r.get("failed")]
        fig = {"figure": "produce-rf3-vs-rf1", "flush": flush, "record_bytes": size,
               "records": runs[0].get("records"),
               "rf3_records_per_sec": mmm([a["records_per_sec"] for _, a, _ in pairs]),
               "rf3_mib_per_sec": mmm([a["mib_per_sec"] for _, a, _ in pairs]),
               "rf1_records_per_sec": mmm([b["records_per_sec"] for _, _, b in pairs]),
               "rf1_mib_per_sec": mmm([b["mib_per_sec"] for _, _, b in pairs]),
               "rf3_p99_ms": mmm([a["p99_ms"] for _, a, _ in pairs]),
               "rf1_p99_ms": mmm([b["p99_ms"] for _, _, b in pairs]),
               "ratio_rf3_rf1": mmm([a["records_per_sec"] / b["records_per_sec"] for _, a, b in pairs]),
               "ratios": [round(a["records_per_sec"] / b["records_per_sec"], 3) for _, a, b in pairs],
               "failed_runs": len(failed)}
        print(f"  {size:>4} B min / median / max: RF3 {fmt(fig['rf3_mib_per_sec'], ' MiB/s')}; RF1 {fmt(fig['rf1_mib_per_sec'], ' MiB/s')}; RF3/RF1 {fmt(fig['ratio_rf3_rf1'], 'x')}; failed runs {len(failed)}")
        lines.append(fig)

fo = [r for r in res if r.get("figure") == "failover"]
if fo:
    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None
    def view(r, client, role):
        for c in r.get("clients", []):
            if c["client"].startswith(client) and c["role"] == role:
                return c
        return None
    print("\nfailover (kill -9 of a partition's leader; producers send one record every 10 ms to it, acks=all): each round, ms")
    print("  round part killed             -> new  metadata | kgo gap  kill->ack | kgo-fast gap | follower partition: kgo max lat, kgo-fast max lat | errors | restore")
    for r in fo:
        f = view(r, "kgo-metadata", "leader") or {}
        fl = view(r, "kgo", "follower") or {}
        ffl = view(r, "kgo-metadata", "follower") or {}
        print(f"  {r['round']:>5} p{r['partition']}   node {r['killed_node']}{' (controller)' if r['killed_controller'] else '             '} -> {r['new_leader']:>3} {r['leader_visible_ms']:8.0f} | {r['gap_ms']:7.0f} {r['kill_to_first_ack_ms']:9.0f} | {f.get('gap_ms', 0):12.0f} | "
              f"p{fl.get('partition', '-')}: {fl.get('latency_max_ms', 0):7.0f} {ffl.get('latency_max_ms', 0):7.0f} | {sum(c['errors'] for c in r.get('clients', []))} | {r['restore_ms']}")
    ok = [r for r in fo if r.get("recovered")]
    def figs(name, xs):
        return {name: mmm(xs), name.replace("_ms", "") + "_p50_ms": pct(xs, 0.5), name.replace("_ms", "") + "_p99_ms": pct(xs, 0.99)}
    gaps = [r["gap_ms"] for r in ok]
    fig = {"figure": "failover", "rounds": len(fo), "recovered": len(ok), "client": "kgo (defaults)"}
    fig.update(figs("gap_ms", gaps))
    fig.update(figs("kill_to_first_ack_ms", [r["kill_to_first_ack_ms"] for r in ok]))
    fig.update(figs("leader_visible_ms", [r["leader_visible_ms"] for r in fo if r["leader_visible_ms"] >= 0]))
    fast = [view(r, "kgo-metadata", "leader") for r in fo]
    fig.update(figs("fast_client_gap_ms", [c["gap_ms"] for c in fast if c and c["recovered"]]))
    fol = [view(r, "kgo", "follower") for r in fo]
    fig.update(figs("follower_partition_latency_max_ms", [c["latency_max_ms"] for c in fol if c]))
    fig.update({"controller_killed_rounds": sum(1 for r in fo if r["killed_controller"]),
                "gap_ms_controller_killed": mmm([r["gap_ms"] for r in ok if r["killed_controller"]]),
                "gap_ms_controller_alive": mmm([r["gap_ms"] for r in ok if not r["killed_controller"]]),
                "errors": sum(c["errors"] for r in fo for c in r.get("clients", [])), "restore_ms": mmm([r["restore_ms"] for r in fo]),
                "under_2s": sum(1 for g in gaps if g < 2000)})
    print(f"  kgo (defaults) gap p50 {fig['gap_p50_ms']} p99 {fig['gap_p99_ms']} ms (p99 of fewer than 100 rounds is their max); {fig['under_2s']}/{len(gaps)} under 2 s; "
          f"new leader in Metadata p50 {fig['leader_visible_p50_ms']} p99 {fig['leader_visible_p99_ms']} ms; kgo MetadataMinAge 100ms gap p50 {fig['fast_client_gap_p50_ms']} p99 {fig['fast_client_gap_p99_ms']} ms; "
          f"a partition the killed node followed: kgo max latency p50 {fig['follower_partition_latency_max_p50_ms']} p99 {fig['follower_partition_latency_max_p99_ms']} ms; errors {fig['errors']}")
    lines.append(fig)

pr = [r for r in res if r.get("figure") == "follower-stop-probe"]
for r in pr:
    print(f"\nacks=all produce right after a follower's SIGTERM (200 records of 1 KiB at 100/s to its RF 3 topic): p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms, errors {r['errors']}")
    lines.append({"figure": "follower-stop-probe", "records": r["records"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"], "errors": r["errors"]})

rn = [r for r in res if r.get("figure") == "rolling-node"]
rl = [r for r in res if r.get("figure") == "rolling"]
if rn or rl:
    print("\nrolling restart (SIGTERM one node at a time, each back in ISR + preferred before the next)")
    for r in rn:
        print(f"  node {r['node']}: stopped in {r['shutdown_ms']} ms (exit {r['exit']}), back {r['restore_ms']} ms after its start")
    for r in rl:
        print(f"  {r['client']}: {r['produced']} produced, {r['acked']} acked, {r['errors']} errors {r.get('error_kinds') or ''}, unanswered {r['unanswered']}; "
              f"latency p50 {r['latency_p50_ms']} p99 {r['latency_p99_ms']} max {r['latency_max_ms']} ms; longest gap between acks {r['max_ack_gap_ms']} ms")
        lines.append({"figure": "rolling-restart", "client": r["client"], "produced": r["produced"], "acked": r["acked"],
                      "errors": r["errors"], "error_kinds": r.get("error_kinds") or {}, "unanswered": r["unanswered"],
                      "latency_p50_ms": r["latency_p50_ms"], "latency_p99_ms": r["latency_p99_ms"], "latency_max_ms": r["latency_max_ms"],
                      "max_ack_gap_ms": r["max_ack_gap_ms"], "shutdown_ms": [n["shutdown_ms"] for n in rn], "node_exit": [n["exit"] for n in rn]})

cu = [r for r in res if r.get("figure") == "catchup"]
cw = [r for r in res if r.get("figure") == "catchup-write"]
if cu:
    c = cu[0]
    w = cw[0] if cw else {}
    print(f"\ncatch-up: {c['written_mib']} MiB of 1 KiB records written with one follower down ({w.get('mib_per_sec', 0):.1f} MiB/s, {w.get('errors')} errors); "
          f"follower in every ISR {c['isr_ms']} ms after its start (registered with the controller after {c.get('registered_ms')} ms, /readyz after {c['ready_ms']} ms), fetched {c['fetched_mib']:.0f} MiB: "
          f"{c['mib_per_s']:.1f} MiB/s ({c['mb_per_s']:.1f} MB/s) from its start, {(c.get('mib_per_s_after_registered') or 0):.1f} MiB/s from its registration")
    lines.append({"figure": "catchup", "written_mib": c["written_mib"], "write_mib_per_sec": w.get("mib_per_sec"),
                  "isr_ms": c["isr_ms"], "ready_ms": c["ready_ms"], "registered_ms": c.get("registered_ms"), "fetched_mib": round(c["fetched_mib"], 1),
                  "mib_per_sec_after_registered": round(c["mib_per_s_after_registered"], 1) if c.get("mib_per_s_after_registered") else None,
                  "mib_per_sec": round(c["mib_per_s"], 1), "mb_per_sec": round(c["mb_per_s"], 1),
                  "under_replicated_before": c["under_replicated_before"], "under_replicated_after": c["under_replicated_after"]})

print("\nJSON, one line per figure:")
for l in lines:
    print(json.dumps(l))
PYEOF
n=$(wc -l <"$OUT/warn-error.txt")
echo "nodes' WARN/ERROR lines: $n (in $OUT/warn-error.txt)"
