#!/usr/bin/env bash
# Cross-client interop test of a real `sluice serve`.
#
# Builds the broker, starts it on random 127.0.0.1 ports with a temporary
# data dir, and checks with three independent clients:
#   (a) `kcat -L` lists the broker;
#   (b) for every codec (none gzip snappy lz4 zstd), records produced by one
#       client and consumed by another come back byte for byte (keys,
#       values, headers, timestamps, and the offsets the producer was told):
#         kcat -> kafka-python, kafka-python -> confluent-kafka (librdkafka),
#         confluent-kafka -> kcat;
#       and every batch stored has the codec it was produced with;
#   (c) a tailing `kcat -C -o end` started before producing receives what is
#       produced after it started, the broker holding its empty fetches for
#       fetch.wait.max.ms instead of answering at once.
#   (d) consumer groups (classic protocol; the broker runs with
#       group.initial.rebalance.delay.ms=0): two subscribed librdkafka
#       consumers split a 4-partition topic with no overlap and read every
#       record once, commit, and a third member resumes from the commits;
#       a kafka-python group consumer commits and a new one resumes;
#       `kcat -G` reads a group and commits, and resumes from there; and
#       offsets committed by one client are read by another (kafka-python
#       <-> confluent-kafka committed()).
#   (e) transactions: a librdkafka transactional producer (confluent-kafka)
#       commits a transaction, aborts one (each also committing a group's
#       offsets with send_offsets_to_transaction) and commits another;
#       librdkafka consumers with isolation.level=read_committed read only the
#       committed records and the committed offsets, read_uncommitted all the
#       records; kcat reads back with -X isolation.level= both ways too.
# The roundtrips in (b) and (c) assign partitions, joining no group.
# Any mismatch fails with a FAIL line, and the broker's log is printed.
# Nothing is skipped: every client and codec module is installed (and
# checked before the broker starts), and a helper that gives up with a SKIP
# line (exit 3: a codec a client cannot do, a codec module it cannot
# import) fails the run as a mismatch does, with its reason.
#
# Installs kcat, python3-confluent-kafka, python3-kafka and the Python codec
# modules kafka-python needs for snappy, lz4 and zstd (python3-snappy,
# python3-lz4, python3-zstandard) with apt-get when missing. INTEROP_PYTHON picks the interpreter
# that has them (default /usr/bin/python3, where Debian installs them);
# KEEP_TMP=1 keeps the temp dir.
#
# CLUSTER_NODES=N (N > 1) runs every check against a cluster of N `sluice
# serve` processes instead of one (scripts/lib/cluster.sh: node ids 1..N,
# each a broker and a controller voter, on 127.0.0.1 with free ports; ready
# once every /readyz answers 200 and every node's Metadata lists the N
# brokers). Clients bootstrap from all N addresses; (a) checks that kcat
# lists every node; the test topics are created with min(N, 3) replicas
# (scripts/interop/cluster.py, before the helpers that would create them with
# one) and the nodes run with default.replication.factor=min(N, 3) and
# min.insync.replicas=min(N, 3)-1, so every acks=all produce waits for the
# followers; at the end every partition of the test topics, of
# __consumer_offsets and of __transaction_state must have all its replicas
# in the ISR, and every node must exit 0 on SIGTERM. A failed run prints
# each node's WARN/ERROR lines and keeps the node logs (not the data).
# Default 1: a single node, no controller quorum.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD/scripts/interop
PY=${INTEROP_PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1 # leave no __pycache__ in the work tree
CODECS=(none gzip snappy lz4 zstd)
NODES=${CLUSTER_NODES:-1}
T_START=$SECONDS

say() { printf '%s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
case $NODES in '' | *[!0-9]* | 0*) fail "CLUSTER_NODES=$NODES: want a number of nodes, 1 or more" ;; esac

# ---- what the test needs --------------------------------------------------
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if [ ! -x "$PY" ]; then
	missing+=(python3 python3-confluent-kafka python3-kafka python3-snappy python3-lz4 python3-zstandard)
else
	"$PY" -c 'import confluent_kafka' 2>/dev/null || missing+=(python3-confluent-kafka)
	"$PY" -c 'import kafka' 2>/dev/null || missing+=(python3-kafka)
	# kafka-python's snappy, lz4 and zstd codecs.
	"$PY" -c 'import snappy' 2>/dev/null || missing+=(python3-snappy)
	"$PY" -c 'import lz4.frame' 2>/dev/null || missing+=(python3-lz4)
	"$PY" -c 'import zstandard' 2>/dev/null || missing+=(python3-zstandard)
fi
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	apt_install() {
		$SUDO apt-get update -q &&
			$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
	}
	if ! apt_install "${missing[@]}"; then
		say "apt-get install failed; retrying once"
		sleep 5
		apt_install "${missing[@]}" || fail "apt-get install ${missing[*]} failed twice"
	fi
fi
command -v kcat >/dev/null 2>&1 || fail "kcat is not installed"
"$PY" -c 'import confluent_kafka, kafka' || fail "$PY cannot import confluent_kafka and kafka"
# kafka-python finds its codecs by importing these; without one, every leg
# of that codec would have nothing to test.
"$PY" -c '
import sys
from kafka.codec import has_gzip, has_lz4, has_snappy, has_zstd
missing = [c for c, ok in (("gzip", has_gzip), ("snappy", has_snappy), ("lz4", has_lz4), ("zstd", has_zstd)) if not ok()]
if missing:
    sys.exit("kafka-python cannot use codecs %s" % ", ".join(missing))
' || fail "$PY: kafka-python lacks a codec module (python3-snappy, python3-lz4, python3-zstandard)"
say "clients: $(kcat -V 2>&1 | grep -m1 -o 'Version [^ ]*' || true) ($(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*' | head -1));" \
	"$("$PY" -c 'import kafka, confluent_kafka as c; print("kafka-python", kafka.__version__ + "; confluent-kafka", c.version()[0], "(librdkafka " + c.libversion()[0] + ")")')"

# ---- the broker -----------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-interop.XXXXXX")
BROKER_PID=""
BG_PIDS=()
FAILED=()
cleanup() {
	local rc=$?
	set +e
	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	! declare -F stop_cluster >/dev/null || stop_cluster 60
	if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
		kill -TERM "$BROKER_PID" 2>/dev/null
		for _ in $(seq 100); do
			kill -0 "$BROKER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$BROKER_PID" 2>/dev/null
		wait "$BROKER_PID" 2>/dev/null
	fi
	if [ "$rc" != 0 ]; then
		for f in "${FAILED[@]}"; do printf 'FAILED: %s\n' "$f" >&2; done
		if [ -s "$TMP/broker.log" ]; then
			printf '\n---- broker log (%s, last 300 lines) ----\n' "$TMP/broker.log" >&2
			tail -n 300 "$TMP/broker.log" >&2
			printf -- '---- end of broker log ----\n' >&2
		fi
		! declare -F cluster_logs >/dev/null || cluster_logs >&2
		printf 'interop: FAILED after %ds\n' $((SECONDS - T_START)) >&2
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		say "kept $TMP"
	elif [ "$rc" != 0 ] && [ "$NODES" != 1 ]; then
		rm -rf "$TMP"/node-[0-9]*/ "$TMP/sluice"
		say "kept the node logs in $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building sluice"
go build -o "$TMP/sluice" ./cmd/sluice || fail "go build ./cmd/sluice failed"

if [ "$NODES" = 1 ]; then
	. scripts/lib/broker.sh
	start_broker
	KPORTS=("$KPORT")
	RF=1

	# /readyz answers 200 once the broker has recovered.
	ready=$( (exec 3<>"/dev/tcp/127.0.0.1/$HPORT" && printf 'GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && head -n1 <&3) 2>/dev/null || true)
	case "$ready" in *" 200"*) say "ok   /readyz: $ready" | tr -d '\r' ;; *) fail "GET /readyz on 127.0.0.1:$HPORT answered '$ready', want 200" ;; esac
else
	# start_cluster waits for every node's /readyz and Metadata.
	. scripts/lib/cluster.sh
	start_cluster "$NODES"
	KPORTS=()
	for a in "${NODE_KAFKA[@]}"; do KPORTS+=("${a##*:}"); done
	RF=$CLUSTER_RF
fi

# ---- (a) metadata --------------------------------------------------------
timeout 30 kcat -L -b "$B" -m 10 >"$TMP/list.txt" 2>&1 || {
	cat "$TMP/list.txt" >&2
	fail "kcat -L -b $B failed"
}
for port in "${KPORTS[@]}"; do
	grep -Eq "^ +broker [0-9]+ at 127\.0\.0\.1:$port" "$TMP/list.txt" || {
		cat "$TMP/list.txt" >&2
		fail "kcat -L does not list the broker at 127.0.0.1:$port"
	}
	say "ok   kcat -L lists $(grep -Eo "broker [0-9]+ at 127\.0\.0\.1:$port" "$TMP/list.txt")"
done

# ---- (b) cross-client roundtrips ------------------------------------------
# check_failed MSG: a check failed; the others still run, the script fails at the end.
check_failed() {
	printf 'FAIL: %s\n' "$*" >&2
	FAILED+=("$*")
}
# step DESC CMD...: returns 0 ok, 1 failed (recorded; CMD printed
# "FAIL: why"). A CMD that skipped (exit 3, "SKIP: why") failed too: no
# check here may be skipped.
step() {
	local desc=$1 rc=0 why
	shift
	timeout 90 "$@" >"$TMP/step.out" 2>"$TMP/step.err" || rc=$?
	cat "$TMP/step.out"
	head -n 40 "$TMP/step.err" >&2
	[ "$(wc -l <"$TMP/step.err")" -le 40 ] || printf '     ... %d more lines on stderr\n' $(($(wc -l <"$TMP/step.err") - 40)) >&2
	why=$(grep -h -E '^(SKIP|FAIL): ' "$TMP/step.out" "$TMP/step.err" | tail -n 1 | sed -E 's/^(SKIP|FAIL): //' || true)
	case $rc in
	0) return 0 ;;
	3)
		printf 'FAIL: %s: skipped, and a skip is a failure here\n' "$desc" >&2
		FAILED+=("$desc: skipped, and interop.sh accepts no skips: ${why:-no reason given}")
		;;
	124) FAILED+=("$desc: timed out after 90s") ;;
	*) FAILED+=("$desc: ${why:-exit $rc}") ;;
	esac
	return 1
}
broker_alive() {
	if [ "$NODES" = 1 ]; then
		kill -0 "$BROKER_PID" 2>/dev/null || fail "the broker (pid $BROKER_PID) died"
		return
	fi
	for i in "${!NODE_PIDS[@]}"; do
		kill -0 "${NODE_PIDS[i]}" 2>/dev/null || fail "node $i (pid ${NODE_PIDS[i]}) died; its log: $TMP/node-$i.log"
	done
}
# batches TOPIC CODEC PRODUCER: every stored batch of TOPIC has CODEC. On a
# cluster, cluster.py sends kafka_python.py's raw Fetch to the topic's leader.
batches() {
	if [ "$NODES" = 1 ]; then
		step "$1: stored batches are $2" "$PY" "$HERE/kafka_python.py" batches "$B" "$@"
	else
		step "$1: stored batches are $2" "$PY" "$HERE/cluster.py" batches "$B" "$@"
	fi
}
topics=()
for c in "${CODECS[@]}"; do topics+=("ix-kcat-kp-$c" "ix-kp-ck-$c" "ix-ck-kcat-$c"); done
topics+=(ix-tail)
if [ "$NODES" != 1 ]; then
	# The helpers would create the topics with one replica. One preferred
	# leader for all partitions of a codec topic (see cluster.py batches),
	# node 1, 2, 3 for the three legs.
	leg=0
	for pre in ix-kcat-kp ix-kp-ck ix-ck-kcat; do
		step "create $pre-* topics with $RF replicas" "$PY" "$HERE/cluster.py" create "$B" "$RF" 2 "@$((leg % NODES + 1))" \
			"${CODECS[@]/#/$pre-}" || fail "cannot create the test topics"
		leg=$((leg + 1))
	done
	step "create ix-tail with $RF replicas" "$PY" "$HERE/cluster.py" create "$B" "$RF" 2 ix-tail || fail "cannot create the test topics"
fi
step "create topics" "$PY" "$HERE/confluent.py" create "$B" "${topics[@]}" || fail "cannot create the test topics"

mapfile -t HARGS < <("$PY" "$HERE/kcat_io.py" hargs)
HFLAGS=()
for h in "${HARGS[@]}"; do HFLAGS+=(-H "$h"); done
KCAT_FORMAT=$("$PY" "$HERE/kcat_io.py" format)
now_ms() { date +%s%3N; }

for c in "${CODECS[@]}"; do
	say "== codec $c"

	# kcat -> kafka-python
	T=ix-kcat-kp-$c
	"$PY" "$HERE/kcat_io.py" input "$c" "$TMP/$T.json" "$TMP/$T.in"
	t0=$(now_ms)
	ok=1
	for p in 0 1; do
		timeout 60 kcat -P -b "$B" -t "$T" -p "$p" -K '\x1f' -D '\x1e' "${HFLAGS[@]}" \
			-X compression.codec="$c" -X acks=all -X linger.ms=100 <"$TMP/$T.in.p$p" ||
			{
				check_failed "kcat -P to $T [$p] ($c) failed"
				ok=""
			}
	done
	t1=$(now_ms)
	if [ -n "$ok" ]; then
		say "     kcat produced to $T ($c)"
		batches "$T" "$c" librdkafka || true
		step "kcat -> kafka-python ($c)" "$PY" "$HERE/kafka_python.py" consume "$B" "$T" "$c" "$TMP/$T.json" "$t0" "$t1" || true
	fi

	# kafka-python -> confluent-kafka
	T=ix-kp-ck-$c
	if step "kafka-python -> confluent-kafka ($c)" "$PY" "$HERE/kafka_python.py" produce "$B" "$T" "$c" "$TMP/$T.json"; then
		batches "$T" "$c" kafka-python || true
		step "kafka-python -> confluent-kafka ($c)" "$PY" "$HERE/confluent.py" consume "$B" "$T" "$c" "$TMP/$T.json" || true
	fi

	# confluent-kafka -> kcat
	T=ix-ck-kcat-$c
	if step "confluent-kafka -> kcat ($c)" "$PY" "$HERE/confluent.py" produce "$B" "$T" "$c" "$TMP/$T.json"; then
		batches "$T" "$c" librdkafka || true
		rc=0
		timeout 15 kcat -C -b "$B" -t "$T" -o beginning -e -q -f "$KCAT_FORMAT" >"$TMP/$T.out" 2>"$TMP/$T.err" || rc=$?
		step "confluent-kafka -> kcat ($c)" "$PY" "$HERE/kcat_io.py" check "$T" "$c" "$TMP/$T.json" "$TMP/$T.out" || true
		if [ $rc != 0 ]; then
			head -n 6 "$TMP/$T.err" >&2
			if [ $rc = 124 ]; then
				check_failed "kcat -C -e on $T ($c) did not reach the end of the partitions within 15s ($(grep -c . "$TMP/$T.err") lines on its stderr, first above)"
			else
				check_failed "kcat -C -e on $T ($c) exited $rc"
			fi
		fi
	fi
	broker_alive
done

# ---- (c) a tailing consumer -------------------------------------------------
# The tail asks for fetch.wait.max.ms=WAIT, much longer than the test waits:
# while the partition is idle the broker must hold each empty fetch (one
# answering at once shows up as a stream of fetch requests), and an append
# must wake the held fetch at once, not when WAIT runs out.
say "== tailing kcat -C -o end"
T=ix-tail
WAIT=10000
timeout 60 kcat -C -b "$B" -t "$T" -p 0 -o end -c 3 -u -d fetch -X fetch.wait.max.ms=$WAIT \
	-f 'TAIL %o %s\n' >"$TMP/tail.out" 2>"$TMP/tail.err" &
TAIL_PID=$!
BG_PIDS+=("$TAIL_PID")
# Wait until the tail has sent its first fetch at the end offset.
deadline=$((SECONDS + 20))
until grep -q "Fetch topic $T \[0\] at offset" "$TMP/tail.err" 2>/dev/null; do
	kill -0 "$TAIL_PID" 2>/dev/null || {
		cat "$TMP/tail.err" >&2
		fail "tailing kcat exited before fetching"
	}
	[ $SECONDS -lt $deadline ] || {
		tail -n 30 "$TMP/tail.err" >&2
		fail "tailing kcat sent no fetch for $T [0] within 20s"
	}
	sleep 0.1
done
IDLE=3 # seconds the partition stays idle while the tail waits
before=$(grep -c "Fetch topic $T \[0\] at offset" "$TMP/tail.err" || true)
sleep $IDLE
after=$(grep -c "Fetch topic $T \[0\] at offset" "$TMP/tail.err" || true)
idle_fetches=$((after - before))
# Held fetches: at most 1 in IDLE < WAIT; answered at once: thousands.
if [ "$idle_fetches" -gt 4 ]; then
	tail -n 30 "$TMP/tail.err" >&2
	fail "the tail sent $idle_fetches fetches in ${IDLE}s on an idle partition with fetch.wait.max.ms=$WAIT: the broker answers empty fetches at once instead of holding them"
fi
say "ok   idle partition: $idle_fetches fetch requests in ${IDLE}s with fetch.wait.max.ms=$WAIT (held, not answered at once)"
printf 'tail-1\x1etail-2\x1etail-3\x1e' | timeout 30 kcat -P -b "$B" -t "$T" -p 0 -D '\x1e' -X acks=all ||
	fail "kcat -P to $T failed"
t_prod=$(now_ms)
deadline=$((SECONDS + 20))
until [ "$(grep -c '^TAIL ' "$TMP/tail.out" || true)" -ge 3 ]; do
	[ $SECONDS -lt $deadline ] || fail "the tailing kcat did not receive 3 records within 20s of producing them; it got: '$(cat "$TMP/tail.out")'"
	sleep 0.02
done
t_recv=$(now_ms)
wait "$TAIL_PID" || fail "tailing kcat (-c 3) failed: $(tail -n 20 "$TMP/tail.err")"
BG_PIDS=()
expect=$'TAIL 0 tail-1\nTAIL 1 tail-2\nTAIL 2 tail-3'
[ "$(cat "$TMP/tail.out")" = "$expect" ] || fail "the tail received '$(cat "$TMP/tail.out")', want '$expect'"
latency=$((t_recv - t_prod))
# An append must wake the held fetch: without that the records wait for the
# rest of WAIT (some 7s here).
if [ $latency -ge 2000 ]; then
	fail "the tail got the records ${latency}ms after they were acknowledged (fetch.wait.max.ms=$WAIT): appends do not wake held fetches"
fi
say "ok   tail received the 3 records produced after it started, ${latency}ms after they were acknowledged"

# ---- (d) consumer groups ---------------------------------------------------
say "== consumer groups"
if [ "$NODES" != 1 ]; then
	step "create group topics with $RF replicas" "$PY" "$HERE/cluster.py" create "$B" "$RF" 4 ix-grp-ck &&
		step "create group topics with $RF replicas" "$PY" "$HERE/cluster.py" create "$B" "$RF" 2 ix-grp-kp ix-grp-kcat ||
		fail "cannot create the group test topics"
fi
if step "create group topics" "$PY" "$HERE/groups.py" create "$B" 4 ix-grp-ck &&
	step "create group topics" "$PY" "$HERE/groups.py" create "$B" 2 ix-grp-kp ix-grp-kcat; then
	# librdkafka: two subscribed consumers split the partitions, commit; a
	# third resumes; kafka-python reads what librdkafka committed.
	if step "confluent-kafka group split/commit/resume" "$PY" "$HERE/groups.py" ck-split "$B" ix-grp-ck ix-grp-ck; then
		step "kafka-python committed() of confluent-kafka's commits" "$PY" "$HERE/groups.py" committed kafka-python "$B" \
			ix-grp-ck ix-grp-ck "committed by librdkafka" || true
	fi
	# kafka-python: commit and resume; confluent-kafka reads its commits.
	step "kafka-python group commit/resume" "$PY" "$HERE/groups.py" kp-resume "$B" ix-grp-kp ix-grp-kp || true
	# kcat -G: a balanced consumer reads to the end of its partitions (-e)
	# and commits on close; a second run resumes from the commits.
	T=ix-grp-kcat
	kcat_group() { # N: kcat -G must read N records, each once
		local n=$1 rc=0
		timeout 30 kcat -b "$B" -G ix-grp-kcat -X auto.offset.reset=earliest -e -q -f '%p %o %s\n' "$T" \
			>"$TMP/kcat-g.out" 2>"$TMP/kcat-g.err" || rc=$?
		if [ $rc != 0 ]; then
			head -n 6 "$TMP/kcat-g.err" >&2
			check_failed "kcat -G ix-grp-kcat -e on $T exited $rc"
			return 1
		fi
		if [ "$(wc -l <"$TMP/kcat-g.out")" != "$n" ] || [ "$(sort -u "$TMP/kcat-g.out" | wc -l)" != "$n" ]; then
			check_failed "kcat -G ix-grp-kcat read $(wc -l <"$TMP/kcat-g.out") records ($(sort -u "$TMP/kcat-g.out" | wc -l) distinct), want $n: $(head -c 300 "$TMP/kcat-g.out")"
			return 1
		fi
	}
	if step "produce to $T" "$PY" "$HERE/groups.py" produce "$B" "$T" 20 kcat-first && kcat_group 20; then
		say "ok   kcat -G ix-grp-kcat read the 20 records of $T once"
		if step "kafka-python committed() of kcat -G's commits" "$PY" "$HERE/groups.py" committed kafka-python "$B" \
			"$T" ix-grp-kcat "committed by kcat -G" &&
			step "produce to $T" "$PY" "$HERE/groups.py" produce "$B" "$T" 6 kcat-second && kcat_group 6; then
			if grep -q kcat-first "$TMP/kcat-g.out"; then
				check_failed "a second kcat -G ix-grp-kcat reread records before the committed offsets"
			else
				say "ok   a second kcat -G ix-grp-kcat resumed from the committed offsets (read only the 6 later records)"
				step "confluent-kafka committed() of kcat -G's commits" "$PY" "$HERE/groups.py" committed confluent "$B" \
					"$T" ix-grp-kcat "committed by kcat -G" || true
			fi
		fi
	fi
else
	check_failed "cannot create the group test topics"
fi
broker_alive

# ---- (e) transactions -------------------------------------------------------
say "== transactions"
# txn.py is this leg's librdkafka side: "produce BROKER TOPIC GROUP" runs the
# three transactions, "read BROKER TOPIC LEVEL" checks what a consumer at
# isolation.level LEVEL reads, "offsets BROKER TOPIC GROUP" the group's
# committed offsets.
cat >"$TMP/txn.py" <<'EOF'
import os
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30
PARTS = 2
N = 5
RF = int(os.environ.get("IX_RF", "1"))  # the topic's replication factor
LIB = "confluent-kafka %s (librdkafka %s)" % (confluent_kafka.version()[0], confluent_kafka.libversion()[0])
# tag -> committed? The aborted transaction sits between two committed ones,
# so a read_committed fetch must skip it by the aborted-transaction list.
TXNS = [("c1", True), ("ab", False), ("c2", True)]
# the offsets each transaction commits for the group (partition 0 and 1 of TOPIC)
OFFSETS = {"c1": (3, 4), "ab": (8, 9), "c2": (5, 6)}


def die(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def values(tag):
    return {p: ["%s-p%d-%d" % (tag, p, i) for i in range(N)] for p in range(PARTS)}


def expected(level):
    want = {p: [] for p in range(PARTS)}
    for tag, commit in TXNS:
        if commit or level == "read_uncommitted":
            for p, vs in values(tag).items():
                want[p] += vs
    return want


def create(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker})
    for t, f in admin.create_topics([NewTopic(topic, num_partitions=PARTS, replication_factor=RF)],
                                    request_timeout=TIMEOUT).items():
        try:
            f.result(timeout=TIMEOUT)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                die("create topic %s: %s" % (t, e))
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=TIMEOUT)
        if topic in md.topics and md.topics[topic].error is None and len(md.topics[topic].partitions) == PARTS:
            return
        if time.time() > deadline:
            die("topic %s not in metadata with %d partitions" % (topic, PARTS))
        time.sleep(0.2)


def produce(broker, topic, group):
    create(broker, topic)
    errs = []

    def report(err, msg):
        if err is not None:
            errs.append("%s [%s]: %s" % (msg.value(), msg.partition(), err))

    p = Producer({"bootstrap.servers": broker, "transactional.id": "ix-txn-producer",
                  "transaction.timeout.ms": 30000, "linger.ms": 5})
    try:
        p.init_transactions(TIMEOUT)
    except KafkaException as e:
        die("%s init_transactions: %s" % (LIB, e))
    # A consumer for the group's metadata only: it joins nothing, so the
    # offsets go in as a simple (generation -1) group's.
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    for tag, commit in TXNS:
        try:
            p.begin_transaction()
            for part, vs in values(tag).items():
                for v in vs:
                    p.produce(topic, value=v.encode(), partition=part, on_delivery=report)
            p.flush(TIMEOUT)
            if errs:
                die("%s: transaction %s: delivery failed: %s" % (LIB, tag, errs[:3]))
            offs = [TopicPartition(topic, part, o) for part, o in enumerate(OFFSETS[tag])]
            p.send_offsets_to_transaction(offs, c.consumer_group_metadata(), TIMEOUT)
            if commit:
                p.commit_transaction(TIMEOUT)
            else:
                p.abort_transaction(TIMEOUT)
        except KafkaException as e:
            die("%s: transaction %s (%s): %s" % (LIB, tag, "commit" if commit else "abort", e))
    c.close()
    print("ok   %s: committed a transaction, aborted one, committed another (%d records each, with group offsets)"
          % (LIB, N * PARTS), flush=True)


def read(broker, topic, level):
    c = Consumer({"bootstrap.servers": broker, "group.id": "ix-txn-reader", "isolation.level": level,
                  "enable.partition.eof": True, "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in range(PARTS)])
    got = {p: [] for p in range(PARTS)}
    eof = set()
    deadline = time.time() + TIMEOUT
    while len(eof) < PARTS and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            die("%s %s consumer: %s" % (LIB, level, m.error()))
        got[m.partition()].append(m.value().decode())
    c.close()
    if len(eof) < PARTS:
        die("%s %s consumer did not reach the end of partitions %s within %ds (read %s)"
            % (LIB, level, sorted(set(range(PARTS)) - eof), TIMEOUT, got))
    want = expected(level)
    for p in range(PARTS):
        if got[p] != want[p]:
            die("%s %s consumer read %s [%d] as %s, want %s" % (LIB, level, topic, p, got[p], want[p]))
    print("ok   %s %s consumer read %s" % (LIB, level,
          "only the committed transactions' records" if level == "read_committed" else "the aborted transaction's records too"),
          flush=True)


def offsets(broker, topic, group):
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    got = c.committed([TopicPartition(topic, p) for p in range(PARTS)], timeout=TIMEOUT)
    c.close()
    want = OFFSETS["c2"]
    have = tuple(tp.offset for tp in sorted(got, key=lambda tp: tp.partition))
    if have != want:
        die("%s committed() of group %s on %s: %s, want %s (the last committed transaction's; the aborted one's were %s)"
            % (LIB, group, topic, have, want, OFFSETS["ab"]))
    print("ok   %s: group %s's offsets are the last committed transaction's %s, not the aborted one's" % (LIB, group, want),
          flush=True)


if __name__ == "__main__":
    {"produce": produce, "read": read, "offsets": offsets}[sys.argv[1]](*sys.argv[2:])
EOF
T=ix-txn
if step "confluent-kafka transactions: commit, abort, commit" env IX_RF="$RF" "$PY" "$TMP/txn.py" produce "$B" "$T" ix-txn-group; then
	step "confluent-kafka read_committed after transactions" "$PY" "$TMP/txn.py" read "$B" "$T" read_committed || true
	step "confluent-kafka read_uncommitted after transactions" "$PY" "$TMP/txn.py" read "$B" "$T" read_uncommitted || true
	step "group offsets committed in transactions" "$PY" "$TMP/txn.py" offsets "$B" "$T" ix-txn-group || true
	# kcat: librdkafka properties pass through -X.
	for level in read_committed read_uncommitted; do
		want=""
		for p in 0 1; do
			for tag in c1 ab c2; do
				[ "$tag" = ab ] && [ $level = read_committed ] && continue
				for i in 0 1 2 3 4; do want+="$p $tag-p$p-$i"$'\n'; done
			done
		done
		rc=0
		timeout 30 kcat -C -b "$B" -t "$T" -o beginning -e -q -X isolation.level=$level -f '%p %s\n' \
			>"$TMP/kcat-txn.out" 2>"$TMP/kcat-txn.err" || rc=$?
		got=$(sort -s -n -k1,1 "$TMP/kcat-txn.out")
		if [ $rc != 0 ]; then
			head -n 6 "$TMP/kcat-txn.err" >&2
			check_failed "kcat -C -X isolation.level=$level on $T exited $rc"
		elif [ "$got" != "${want%$'\n'}" ]; then
			check_failed "kcat -C -X isolation.level=$level on $T read '$(echo "$got" | tr '\n' ' ')', want '$(echo "${want%$'\n'}" | tr '\n' ' ')'"
		else
			say "ok   kcat -X isolation.level=$level read $(echo "$got" | wc -l) records of $T: $([ $level = read_committed ] && echo "the two committed transactions'" || echo "all three transactions'")"
		fi
	done
fi
broker_alive

# ---- clean shutdown --------------------------------------------------------
if [ "$NODES" != 1 ]; then
	# The followers kept up: every partition of the test topics and of the
	# internal topics the groups and transactions used is fully in sync.
	step "replicas in sync" "$PY" "$HERE/cluster.py" in-sync "$B" "$RF" 'ix-*' __consumer_offsets __transaction_state || true
	# Every node at once, as the cleanup would: each moves its leaderships
	# away, then stops.
	t0=$SECONDS nfailed=${#FAILED[@]}
	stop_cluster 60
	for i in "${!NODE_RC[@]}"; do
		[ "${NODE_RC[i]}" = 0 ] || check_failed "node $i exited ${NODE_RC[i]} after SIGTERM (137: killed 60s after it)"
		grep -q "stopped cleanly" "$TMP/node-$i.log" || check_failed "node $i did not log \"stopped cleanly\""
	done
	[ ${#FAILED[@]} != "$nfailed" ] || say "ok   the $NODES nodes exited 0 on SIGTERM, within $((SECONDS - t0))s"
	[ ${#FAILED[@]} = 0 ] || fail "${#FAILED[@]} interop checks failed (listed below)"
	say "interop: all checks passed against $NODES nodes in $((SECONDS - T_START))s (none skipped)"
	exit 0
fi
kill -TERM "$BROKER_PID"
deadline=$((SECONDS + 20))
while kill -0 "$BROKER_PID" 2>/dev/null; do
	[ $SECONDS -lt $deadline ] || fail "the broker did not exit within 20s of SIGTERM"
	sleep 0.1
done
rc=0
wait "$BROKER_PID" || rc=$?
BROKER_PID=""
[ $rc = 0 ] || fail "the broker exited $rc after SIGTERM"
grep -q "stopped cleanly" "$TMP/broker.log" || fail "the broker exited 0 but did not log \"stopped cleanly\""
say "ok   broker exited 0 on SIGTERM"

[ ${#FAILED[@]} = 0 ] || fail "${#FAILED[@]} interop checks failed (listed below)"
say "interop: all checks passed in $((SECONDS - T_START))s (none skipped)"
