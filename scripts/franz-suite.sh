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

. scripts/lib/gosuite.sh
run_one() {
	local name=$1 rc=0
	(cd "$TMP/franz-go/pkg/kgo" && KGO_SEEDS=$B KGO_TEST_RF=$RF KGO_TEST_RECORDS=$RECORDS KGO_LOG_LEVEL=none \
		"$TMP/kgo.test" -test.count=1 -test.v -test.timeout "$TIMEOUT" -test.run "^$name\$") \
		>"$TMP/logs/$name.log" 2>&1 || rc=$?
	echo "$rc" >"$TMP/logs/$name.rc"
}

say "franz-go $FRANZ_GO_VERSION pkg/kgo: $(echo "$TESTS" | wc -l) tests, $JOBS at a time, each with -timeout $TIMEOUT, KGO_TEST_RECORDS=$RECORDS, KGO_TEST_RF=$RF, KGO_SEEDS=$B"
suite_run_all
suite_judge franz-go "$FRANZ_GO_VERSION" FRANZ_GO_RUN '^ *--- FAIL|^panic|_test\.go:[0-9]+:|^\s+running tests|^\s+Test' 'deleting topic'
