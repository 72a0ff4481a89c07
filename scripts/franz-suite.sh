#!/usr/bin/env bash
# franz-go's own integration tests (pkg/kgo) against one real `sluice serve`.
#
# Builds the broker, starts it on a random 127.0.0.1 port with a temporary
# data dir (group.initial.rebalance.delay.ms=0 so groups form at once), copies
# the franz-go module at FRANZ_GO_VERSION (default v1.22.2, the version
# go.mod requires) out of the Go module cache (read-only, hence the copy)
# and runs every pkg/kgo test that talks to a broker (those reaching
# franz-go's KGO_SEEDS helpers: adm, newTestClient, testClientOpts,
# getSeedBrokers, tmpTopic, tmpGroup, ...):
#   producing       TestClient_Produce, TestClient_ProduceLargeMessages,
#                   TestIssue* (TestIssue769, 831, ProduceBrokerTooOld..., ...)
#   consuming       TestConsumeRegex, TestConsumeTopicRetrieval(_Many),
#                   TestConsumeMaxDecompressBatchBytes, TestDirectPartitionPurge,
#                   TestPauseIssue489, TestPauseIssueOct2023, TestPooling,
#                   TestHookPollStart, TestAddRemovePartitions (CreatePartitions)
#   groups          TestGroupSimple, TestGroupETL (classic and KIP-848),
#                   Test848RegexBrokerResolves, TestUnknownGroupOffsetFetchPinned
#   transactions    TestTxnEtl
#   other           TestPing; share-group tests (TestShareGroup*,
#                   TestConsumeRegexShareSkipsInternal) skip themselves
#                   unless the broker serves ShareFetch/ShareAcknowledge v2
#                   (listed, as every expected skip, in franz-suite-skips.txt)
# franz-go's unit tests (no broker) are not run: `go test` of franz-go does
# that. TestSCRAMAuth* need a SCRAM listener and are left out.
#
# franz-go's helpers read KGO_SEEDS (the brokers, comma-separated),
# KGO_TEST_RF (replication factor of the topics the tests create; 1 here,
# min(N, 3) on N nodes) and KGO_TEST_RECORDS (records per test;
# FRANZ_GO_RECORDS below bounds the run time). They read nothing else about
# the cluster: KGO_TEST_CHAOS (a fault-injecting dialer), KGO_TEST_UNSAFE,
# KGO_TEST_TLS, KGO_TEST_SCRAM* and KGO_TEST_MAX_TOPIC_PARTS stay unset.
# Downloading franz-go's test dependencies needs the Go module proxy.
#
# Environment:
#   FRANZ_GO_RUN      go test -run pattern (default: the tests above)
#   FRANZ_GO_RECORDS  KGO_TEST_RECORDS (default 50000)
#   FRANZ_GO_TIMEOUT  -test.timeout of each test (default 3m)
#   FRANZ_GO_JOBS     tests run at once (default 2)
#   FRANZ_GO_VERSION  franz-go version (default v1.22.2)
#   FRANZ_GO_SKIPS    the expected skips (default scripts/franz-suite-skips.txt)
#   CLUSTER_NODES=N   run against a cluster of N `sluice serve` processes
#                     (N > 1; scripts/lib/cluster.sh: node ids 1..N, each a
#                     broker and a controller voter, on 127.0.0.1 with free
#                     ports, ready once every /readyz answers 200 and every
#                     node's Metadata lists the N brokers), with
#                     default.replication.factor=min(N, 3) and
#                     min.insync.replicas=min(N, 3)-1 on every node,
#                     KGO_SEEDS every node and KGO_TEST_RF=min(N, 3); the
#                     expected skips are then FRANZ_GO_SKIPS and
#                     FRANZ_GO_CLUSTER_SKIPS (default
#                     scripts/franz-suite-skips-cluster.txt).
#                     A failed run prints each node's WARN/ERROR lines and
#                     keeps the node logs. Default 1: a single node.
#   KEEP_TMP=1        keep the temp dir (broker log, go test output)
# Prints a PASS/FAIL/SKIP line per top-level test (and one per skipped
# subtest) at the end; exits non-zero when any test failed, timed out or
# panicked, when a test or subtest skipped that FRANZ_GO_SKIPS does not
# list, and when a listed test ran and did not skip (or, with the default
# FRANZ_GO_RUN, is no test at all): the list stays the true one.
set -euo pipefail
cd "$(dirname "$0")/.."
FRANZ_GO_VERSION=${FRANZ_GO_VERSION:-v1.22.2}
DEFAULT_RUN='^(TestPing|TestClient_Produce|TestClient_ProduceLargeMessages|TestIssue.*|TestConsumeRegex|TestConsumeRegexShareSkipsInternal|TestConsumeTopicRetrieval|TestConsumeTopicRetrieval_Many|TestConsumeMaxDecompressBatchBytes|TestDirectPartitionPurge|TestPauseIssue489|TestPauseIssueOct2023|TestPooling|TestHookPollStart|TestAddRemovePartitions|TestGroupSimple|TestGroupETL|Test848RegexBrokerResolves|TestUnknownGroupOffsetFetchPinned|TestTxnEtl|TestShareGroup.*)$'
RUN=${FRANZ_GO_RUN:-$DEFAULT_RUN}
RECORDS=${FRANZ_GO_RECORDS:-50000}
TIMEOUT=${FRANZ_GO_TIMEOUT:-3m}
JOBS=${FRANZ_GO_JOBS:-2}
SKIPS_FILE=${FRANZ_GO_SKIPS:-scripts/franz-suite-skips.txt}
CLUSTER_SKIPS_FILE=${FRANZ_GO_CLUSTER_SKIPS:-scripts/franz-suite-skips-cluster.txt}
NODES=${CLUSTER_NODES:-1}
T_START=$SECONDS

say() { printf '%s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
case $NODES in '' | *[!0-9]* | 0*) fail "CLUSTER_NODES=$NODES: want a number of nodes, 1 or more" ;; esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-franz-suite.XXXXXX")
BROKER_PID=""
cleanup() {
	local rc=$?
	if [ -n "$BROKER_PID" ]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	! declare -F stop_cluster >/dev/null || stop_cluster 60
	if [ "$rc" != 0 ] && [ -f "$TMP/broker.log" ]; then
		say "---- broker log (tail) ----"
		tail -n 40 "$TMP/broker.log" || true
	fi
	[ "$rc" = 0 ] || ! declare -F cluster_logs >/dev/null || cluster_logs
	if [ -n "${KEEP_TMP:-}" ]; then
		say "kept $TMP"
	elif [ "$rc" != 0 ] && [ "$NODES" != 1 ]; then
		chmod -R u+w "$TMP" 2>/dev/null || true
		rm -rf "$TMP"/node-[0-9]*/ "$TMP/franz-go" "$TMP/sluice" "$TMP/kgo.test"
		say "kept the node logs and the tests' logs in $TMP"
	else
		chmod -R u+w "$TMP" 2>/dev/null || true
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The expected skips: "NAME reason..." a line (NAME as go test prints it
# in "--- SKIP: NAME"), '#' comments and blank lines ignored. On a cluster,
# those of CLUSTER_SKIPS_FILE too.
declare -A EXPECT=() EXPECT_FILE=()
read_skips() {
	local file=$1 name why
	while read -r name why || [ -n "$name" ]; do
		case $name in '' | '#'*) continue ;; esac
		[ -n "$why" ] || fail "$file: $name has no reason (want: NAME reason...)"
		[ -z "${EXPECT[$name]:-}" ] || fail "$file: $name is listed twice (also in ${EXPECT_FILE[$name]})"
		EXPECT[$name]=$why
		EXPECT_FILE[$name]=$file
	done <"$file"
}
[ -f "$SKIPS_FILE" ] || fail "no expected-skips file $SKIPS_FILE"
read_skips "$SKIPS_FILE"
if [ "$NODES" != 1 ]; then
	[ -f "$CLUSTER_SKIPS_FILE" ] || fail "no expected-skips file $CLUSTER_SKIPS_FILE"
	read_skips "$CLUSTER_SKIPS_FILE"
	SKIPS_FILE="$SKIPS_FILE or $CLUSTER_SKIPS_FILE"
fi

say "building sluice"
go build -o "$TMP/sluice" ./cmd/sluice || fail "go build ./cmd/sluice failed"

say "fetching franz-go $FRANZ_GO_VERSION"
SRC=$(go mod download -json "github.com/twmb/franz-go@$FRANZ_GO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$SRC" ] && [ -d "$SRC/pkg/kgo" ] || fail "no module dir for github.com/twmb/franz-go@$FRANZ_GO_VERSION"
cp -R "$SRC" "$TMP/franz-go"
chmod -R u+w "$TMP/franz-go"
# franz-go's tests learn what the broker serves (allow848 for KIP-848,
# allowStaticMembership, allowShare) when adm() first runs; some check
# before calling it (TestGroupSimple/848 skips itself when no other test
# in the same process ran adm() first). Each test runs in a process of its
# own here, so call adm() at start-up, as a whole-package run in effect does.
cat >"$TMP/franz-go/pkg/kgo/zz_sluice_adm_test.go" <<'EOF'
package kgo

import "os"

// Added by sluice's scripts/franz-suite.sh (see there).
func init() {
	if os.Getenv("KGO_SEEDS") != "" {
		adm()
	}
}
EOF

# The tests are compiled once, then every top-level test runs as its own
# process of that binary (FRANZ_GO_JOBS at a time) with its own timeout:
# a test that hangs (TestTxnEtl, say, against a broker without
# transactions) then fails alone instead of holding the slots franz-go's
# tests share (-parallel, TestGroupETL/TestTxnEtl's etlSem) until the
# whole binary times out.
say "compiling franz-go's pkg/kgo tests"
(cd "$TMP/franz-go" && GOFLAGS=-mod=mod go test -c -o "$TMP/kgo.test" ./pkg/kgo >"$TMP/compile.log" 2>&1) ||
	{ cat "$TMP/compile.log"; fail "franz-go's tests do not compile"; }
TESTS=$(cd "$TMP/franz-go/pkg/kgo" && env -u KGO_SEEDS "$TMP/kgo.test" -test.list "$RUN" | grep -E '^(Test|Example)' || true)
[ -n "$TESTS" ] || fail "no franz-go test matches '$RUN'"

if [ "$NODES" = 1 ]; then
	. scripts/lib/broker.sh
	start_broker
	RF=1
else
	. scripts/lib/cluster.sh
	start_cluster "$NODES"
	RF=$CLUSTER_RF
fi

mkdir -p "$TMP/logs"
run_one() {
	local name=$1 rc=0
	(cd "$TMP/franz-go/pkg/kgo" && KGO_SEEDS=$B KGO_TEST_RF=$RF KGO_TEST_RECORDS=$RECORDS KGO_LOG_LEVEL=none \
		"$TMP/kgo.test" -test.count=1 -test.v -test.timeout "$TIMEOUT" -test.run "^$name\$") \
		>"$TMP/logs/$name.log" 2>&1 || rc=$?
	echo "$rc" >"$TMP/logs/$name.rc"
}

say "franz-go $FRANZ_GO_VERSION pkg/kgo: $(echo "$TESTS" | wc -l) tests, $JOBS at a time, each with -timeout $TIMEOUT, KGO_TEST_RECORDS=$RECORDS, KGO_TEST_RF=$RF, KGO_SEEDS=$B"
T_TEST=$SECONDS
running=0
for name in $TESTS; do
	if [ "$running" -ge "$JOBS" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	run_one "$name" &
	running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
	wait -n || true
	running=$((running - 1))
done
T_TEST=$((SECONDS - T_TEST))

# On a cluster every node must have lived through the tests and must stop
# cleanly on SIGTERM (all at once; each moves its leaderships away first).
nodes_bad=0
if [ "$NODES" != 1 ]; then
	for i in "${!NODE_PIDS[@]}"; do
		kill -0 "${NODE_PIDS[i]}" 2>/dev/null || {
			say "FAIL     node $i (pid ${NODE_PIDS[i]}) died during the tests; its log: \$TMP/node-$i.log"
			nodes_bad=$((nodes_bad + 1))
		}
	done
	t0=$SECONDS
	stop_cluster 60
	for i in "${!NODE_RC[@]}"; do
		if [ "${NODE_RC[i]}" != 0 ] || ! grep -q "stopped cleanly" "$TMP/node-$i.log"; then
			say "FAIL     node $i exited ${NODE_RC[i]} after SIGTERM$(grep -q "stopped cleanly" "$TMP/node-$i.log" || echo ", without logging \"stopped cleanly\"") (137: killed 60s after it)"
			nodes_bad=$((nodes_bad + 1))
		fi
	done
	[ "$nodes_bad" != 0 ] || say "ok   the $NODES nodes lived through the tests and exited 0 on SIGTERM, within $((SECONDS - t0))s"
fi

# One line per test: its own result line ("--- PASS: TestX (1.2s)",
# unindented; subtests are indented), TIMEOUT when -timeout ended it,
# PANIC, or FAIL when the process failed without saying. Every "--- SKIP"
# (the test's own or a subtest's) must be listed in SKIPS_FILE.
say "---- franz-go tests (${T_TEST}s; logs in \$TMP/logs) ----"
npass=0 nfail=0 nskip=0 nexpected=0
failed=""
declare -A RES=() SKIPPED=()
expectation() {
	if [ -n "${EXPECT[$1]:-}" ]; then
		printf 'expected: %s' "${EXPECT[$1]}"
	else
		printf 'NOT EXPECTED (not in %s)' "$SKIPS_FILE"
	fi
}
for name in $TESTS; do
	log=$TMP/logs/$name.log
	line=$(grep -E "^--- (PASS|FAIL|SKIP): $name " "$log" | tail -n 1 || true)
	res=$(printf '%s' "$line" | awk '{print $2}' | tr -d :)
	dur=$(printf '%s' "$line" | awk '{print $4}')
	rc=$(cat "$TMP/logs/$name.rc" 2>/dev/null || echo 1)
	if grep -q '^panic: test timed out' "$log"; then
		res=TIMEOUT dur="($TIMEOUT)"
	elif [ -z "$res" ] || { [ "$rc" != 0 ] && [ "$res" != FAIL ]; }; then
		if grep -q '^panic: ' "$log"; then res=PANIC; else res=FAIL; fi
	fi
	RES[$name]=$res
	case $res in
	PASS) npass=$((npass + 1)) ;;
	SKIP) ;;
	*) nfail=$((nfail + 1)) failed="$failed $name" ;;
	esac
	note=""
	[ "$res" != SKIP ] || note=$(expectation "$name")
	printf '%-8s %-56s %s%s\n' "$res" "$name" "$dur" "${note:+  $note}"
	for s in $(grep -E '^[[:space:]]*--- SKIP: ' "$log" | awk '{print $3}' | sort -u); do
		SKIPPED[$s]=1
		nskip=$((nskip + 1))
		[ "$s" = "$name" ] || printf '%-8s %-56s %s\n' SKIP "$s" "$(expectation "$s")"
		if [ -n "${EXPECT[$s]:-}" ]; then
			nexpected=$((nexpected + 1))
		else
			nfail=$((nfail + 1))
			case " $failed " in *" $name "*) ;; *) failed="$failed $name" ;; esac
			say "FAIL     $s skipped, and $SKIPS_FILE does not list it: make it run, or list it with the reason"
		fi
	done
done
# A listed test that ran and did not skip, or (all tests selected) that
# franz-go does not have: the list is out of date.
stale=0
for s in $(printf '%s\n' "${!EXPECT[@]}" | sort); do
	top=${s%%/*}
	if [ -z "${RES[$top]:-}" ]; then
		[ "$RUN" = "$DEFAULT_RUN" ] || continue # not selected by FRANZ_GO_RUN
		say "FAIL     $s: listed in ${EXPECT_FILE[$s]}, but franz-go $FRANZ_GO_VERSION runs no such test here; remove it"
		stale=$((stale + 1))
	elif [ -z "${SKIPPED[$s]:-}" ] && [ "${RES[$top]}" = PASS ]; then
		say "FAIL     $s: listed in ${EXPECT_FILE[$s]}, but it ran and did not skip; remove it from the list"
		stale=$((stale + 1))
	fi
done
nfail=$((nfail + stale + nodes_bad))
say "passed $npass, failed $nfail, skipped $nskip ($nexpected of them expected, in $SKIPS_FILE)"

if [ "$nfail" != 0 ]; then
	for name in $failed; do
		say "---- $name: errors ----"
		grep -E '^ *--- FAIL|^panic|_test\.go:[0-9]+:|^\s+running tests|^\s+Test' "$TMP/logs/$name.log" | grep -v 'deleting topic' | head -n 25 || true
	done
	msg=""
	[ -z "$failed" ] || msg="franz-go's tests failed or skipped unexpectedly against sluice:$failed (logs: KEEP_TMP=1)"
	[ "$stale" = 0 ] || msg="${msg:+$msg; }$SKIPS_FILE is out of date: $stale listed tests did not skip or do not exist"
	[ "$nodes_bad" = 0 ] || msg="${msg:+$msg; }$nodes_bad of the $NODES nodes died or did not stop cleanly (above)"
	fail "$msg"
fi
say "ok   franz-go suite$([ "$NODES" = 1 ] || echo " against $NODES nodes") ($((SECONDS - T_START))s)"
