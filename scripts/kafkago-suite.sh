#!/usr/bin/env bash
# segmentio/kafka-go's own integration tests against a real Sluice: its
# admin tests for the cluster operations (the issue's "kafka-go's admin calls
# for these APIs pass against Sluice") and the cheap Client tests beside them.
#
# Builds the broker, starts it on a random 127.0.0.1 port with a temporary
# data dir (or a cluster, CLUSTER_NODES below), copies the kafka-go module at
# KAFKA_GO_VERSION (default v0.4.51) out of the Go module cache (read-only,
# hence the copy), compiles the tests of its root package once and runs each
# selected test in its own process of that binary, KAFKA_GO_JOBS at a time,
# each with its own timeout. The default tests:
#   cluster operations  TestClientAlterPartitionReassignments(MultiTopics)
#                       (AlterPartitionReassignments; on a cluster a real
#                       move of replicas onto broker 1, the topic deleted
#                       while it runs), TestClientListPartitionReassignments,
#                       TestClientElectLeaders (preferred: ELECTION_NOT_NEEDED
#                       per partition), TestClientCreatePartitions(NoAssignments),
#                       TestClientIncrementalAlterConfigs, TestClientAlterConfigs,
#                       TestClientDescribeConfigs
#   other Client tests  ApiVersions, Metadata, CreateTopics, DeleteTopics,
#                       ListOffsets, Produce/RawProduce (plain, compressed, nil
#                       and empty records), Fetch(Compressed), Pipeline,
#                       ProduceAndConsume, JoinGroup, SyncGroup, LeaveGroup
#   on one node only    TestClient (OffsetFetch), TestClientHeartbeat,
#                       TestClientOffsetCommit, TestClientDeleteOffset,
#                       TestClientDescribeGroups, TestClientListGroups,
#                       TestClientDeleteGroups (see "race on a cluster")
# kafka-go has no client for DescribeLogDirs or AlterReplicaLogDirs (v0.4.51:
# neither request type exists in it), so no kafka-go test covers them.
# Left out of the default, and why (KAFKA_GO_RUN runs them anyway):
#   APIs Sluice does not serve: TestClient{Create,Delete,Describe}ACLs,
#     TestClientAlterClientQuotas, Test{Alter,Describe}UserScramCredentials,
#     TestUnsupportedSASLMechanism (SASL), and the sasl/ package.
#   kafka-go skips them itself on Kafka >= 3.0 ("fails on Kafka 3.0.0 or
#     higher"): TestClientInitProducerId, TestClientAddPartitionsToTxn,
#     TestClientAddOffsetsToTxn, TestClientTxnOffsetCommit. (With
#     KAFKA_VERSION=2.8.0 the first three pass; TestClientTxnOffsetCommit gets
#     UNKNOWN_MEMBER_ID, as from Kafka 3.x: it commits with a
#     group.instance.id the member did not join with.)
#   They assume one broker, advertised as localhost:9092 with node id 1:
#     TestConn, TestDialer*, TestReadPartitionsNoTopic (dials 127.0.0.1:9092
#     itself), TestClientFindCoordinator (wants the host "localhost").
#   They race on a cluster (on CLUSTER_NODES > 1 the group tests above too):
#     they use a topic a few ms old as if every broker knew it and every
#     leader had opened its partitions. Sluice's brokers learn of a topic
#     created at the controller up to ~50-100 ms later (hashicorp/raft tells
#     followers the commit index with the next append, at the latest after
#     networkCommitTimeout, 50-100 ms: internal/metadata/quorum.go), and a
#     leader opens its partition just after its metadata names it (as in
#     Kafka). So the group coordinator may not know the topic yet and answer
#     LEADER_NOT_AVAILABLE, which kafka-go's ConsumerGroup.Next returns
#     (TestClientDeleteGroups failed so in 4 of 5 runs; TestClientHeartbeat,
#     TestClientOffsetCommit, TestClientDeleteOffset at times; the Readers
#     of TestClientDescribeGroups, TestClientListGroups retry after 5 s, past
#     their 5 s deadline); TestWriter gets UNKNOWN_TOPIC_OR_PARTITION from a
#     broker that does not know the topic yet; TestCloseLeavesGroup and
#     TestReaderConsumerGroup get NOT_LEADER_OR_FOLLOWER from a leader that
#     has not opened the partition yet; TestClient writes with acks=0 (the
#     Writer's default), which cannot report that error: the batch is gone
#     and its group Reader waits for 144 records until its 30 s timeout (3 of
#     60 runs under load).
#   The reader, writer and consumer-group tests are slow (TestReader* up to a
#     minute each; kafka-go's own CI runs the whole package for ~10 min).
# Unit tests (no broker) are not run: `go test` of kafka-go does that.
#
# How the tests find the broker, and what the copy changes: kafka-go's tests
# hard-code localhost:9092 (newLocalClient is TCP("localhost"), createTopic and
# deleteTopic Dial "localhost:9092", then the controller Metadata names). We
# may not bind a fixed port, so once the broker is up, "localhost:9092" and
# TCP("localhost") in the copied *_test.go of the root package become its
# address, on a cluster the first node's (the tests bootstrap from one
# address; the client finds the others through Metadata), and the tests are
# compiled after that. Nothing else in kafka-go is changed; a
# zz_sluice_test.go is added (below) with the KAFKA_VERSION check and
# TestSluiceGroupCoordinators, run once before the others: on a fresh broker
# the first group requests meet coordinators that are not ready
# (__consumer_offsets is created on first use, and on a cluster its leaders
# learn they lead after the node that created it answered FindCoordinator
# with them; Kafka answers that first FindCoordinator
# COORDINATOR_NOT_AVAILABLE), and a kafka-go ConsumerGroup fails its test on
# the first such error (TestClientHeartbeat or TestClientDescribeGroups did
# in each of 3 runs on a fresh cluster), so it waits until the coordinator
# of every partition answers, as on a broker that has been up a while.
#
# KAFKA_VERSION: kafka-go's tests gate on ktesting.KafkaIsAtLeast(v), and most
# of them (the admin ones included) `return` - and so PASS, having done
# nothing - when it is false, which it is for every v when KAFKA_VERSION is
# unset. It is set to 4.0.0: Sluice serves Kafka 4.0's API set (KRaft,
# KIP-848, the lower version bounds of 4.0) without SASL, ACLs, client quotas
# and SCRAM, whose tests are left out above; every gate of the default tests
# is <= 2.4.0. The added zz_sluice_test.go panics at start-up unless
# KafkaIsAtLeast("2.4.0") holds, so that a test can never pass by returning.
#
# Environment:
#   KAFKA_GO_RUN      go test -run pattern (default: the tests above)
#   KAFKA_GO_TIMEOUT  -test.timeout of each test (default 2m)
#   KAFKA_GO_JOBS     tests run at once (default 2)
#   KAFKA_GO_VERSION  kafka-go version (default v0.4.51)
#   KAFKA_GO_SKIPS    the expected skips (default scripts/kafkago-suite-skips.txt)
#   CLUSTER_NODES=N   run against a cluster of N `sluice serve` processes
#                     (N > 1; scripts/lib/cluster.sh: node ids 1..N, each a
#                     broker and a controller voter, on 127.0.0.1 with free
#                     ports, ready once every /readyz answers 200 and every
#                     node's Metadata lists the N brokers), as `make kafka-go`
#                     does with 3: the reassignment and election tests then
#                     move replicas between brokers. kafka-go creates its
#                     topics with one replica (hard-coded). A failed run
#                     prints each node's WARN/ERROR lines and keeps the node
#                     logs. Default 1: a single node (node id 1).
#   KEEP_TMP=1        keep the temp dir (broker logs, go test output)
# Downloading kafka-go's test dependencies needs the Go module proxy.
# Prints a PASS/FAIL/SKIP line per top-level test (and one per skipped
# subtest) at the end; exits non-zero when any test failed, timed out or
# panicked, when a test or subtest skipped that KAFKA_GO_SKIPS does not
# list, and when a listed test ran and did not skip (or, with the default
# KAFKA_GO_RUN, is no test at all): the list stays the true one.
set -euo pipefail
cd "$(dirname "$0")/.."
KAFKA_GO_VERSION=${KAFKA_GO_VERSION:-v0.4.51}
KAFKA_VERSION=4.0.0
ADMIN_TESTS='TestClientAlterPartitionReassignments|TestClientAlterPartitionReassignmentsMultiTopics|TestClientListPartitionReassignments|TestClientElectLeaders|TestClientCreatePartitions|TestClientCreatePartitionsNoAssignments|TestClientIncrementalAlterConfigs|TestClientAlterConfigs|TestClientDescribeConfigs'
CLIENT_TESTS='TestClientApiVersions|TestClientMetadata|TestClientCreateTopics|TestClientDeleteTopics|TestClientListOffsets|TestClientProduce|TestClientProduceCompressed|TestClientProduceNilRecords|TestClientProduceEmptyRecords|TestClientRawProduce|TestClientRawProduceCompressed|TestClientRawProduceNilRecords|TestClientRawProduceEmptyRecords|TestClientFetch|TestClientFetchCompressed|TestClientPipeline|TestClientProduceAndConsume|TestClientJoinGroup|TestClientSyncGroup|TestClientLeaveGroup'
# On one node only (the header says why).
GROUP_TESTS='TestClient|TestClientHeartbeat|TestClientOffsetCommit|TestClientDeleteOffset|TestClientDescribeGroups|TestClientListGroups|TestClientDeleteGroups'
NODES=${CLUSTER_NODES:-1}
if [ "$NODES" = 1 ]; then
	DEFAULT_RUN="^($ADMIN_TESTS|$CLIENT_TESTS|$GROUP_TESTS)\$"
else
	DEFAULT_RUN="^($ADMIN_TESTS|$CLIENT_TESTS)\$"
fi
RUN=${KAFKA_GO_RUN:-$DEFAULT_RUN}
TIMEOUT=${KAFKA_GO_TIMEOUT:-2m}
JOBS=${KAFKA_GO_JOBS:-2}
SKIPS_FILE=${KAFKA_GO_SKIPS:-scripts/kafkago-suite-skips.txt}
T_START=$SECONDS

say() { printf '%s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
case $NODES in '' | *[!0-9]* | 0*) fail "CLUSTER_NODES=$NODES: want a number of nodes, 1 or more" ;; esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-kafkago-suite.XXXXXX")
BROKER_PID=""
cleanup() {
	local rc=$?
	if [ -n "$BROKER_PID" ]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	! declare -F stop_cluster >/dev/null || stop_cluster 60
	if [ "$rc" != 0 ] && [ -f "$TMP/broker.log" ]; then
		say "---- broker log: WARN/ERROR lines (first 40) ----"
		grep -E 'level=(WARN|ERROR)|^error:|panic|fatal' "$TMP/broker.log" | head -n 40 || true
		say "---- broker log (tail) ----"
		tail -n 40 "$TMP/broker.log" || true
	fi
	[ "$rc" = 0 ] || ! declare -F cluster_logs >/dev/null || cluster_logs
	if [ -n "${KEEP_TMP:-}" ]; then
		say "kept $TMP"
	elif [ "$rc" != 0 ] && [ "$NODES" != 1 ]; then
		chmod -R u+w "$TMP" 2>/dev/null || true
		rm -rf "$TMP"/node-[0-9]*/ "$TMP/kafka-go" "$TMP/sluice" "$TMP/kafka.test"
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
# in "--- SKIP: NAME"), '#' comments and blank lines ignored.
declare -A EXPECT=() EXPECT_FILE=()
[ -f "$SKIPS_FILE" ] || fail "no expected-skips file $SKIPS_FILE"
while read -r name why || [ -n "$name" ]; do
	case $name in '' | '#'*) continue ;; esac
	[ -n "$why" ] || fail "$SKIPS_FILE: $name has no reason (want: NAME reason...)"
	[ -z "${EXPECT[$name]:-}" ] || fail "$SKIPS_FILE: $name is listed twice"
	EXPECT[$name]=$why
done <"$SKIPS_FILE"

say "building sluice"
go build -o "$TMP/sluice" ./cmd/sluice || fail "go build ./cmd/sluice failed"

say "fetching kafka-go $KAFKA_GO_VERSION"
SRC=$(go mod download -json "github.com/segmentio/kafka-go@$KAFKA_GO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$SRC" ] && [ -f "$SRC/client_test.go" ] || fail "no module dir for github.com/segmentio/kafka-go@$KAFKA_GO_VERSION"
cp -R "$SRC" "$TMP/kafka-go"
chmod -R u+w "$TMP/kafka-go"
cat >"$TMP/kafka-go/zz_sluice_test.go" <<'EOF'
package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	ktesting "github.com/segmentio/kafka-go/testing"
)

// Added by sluice's scripts/kafkago-suite.sh (see there).

// A test gated on KafkaIsAtLeast returns, and passes, without doing
// anything when KAFKA_VERSION is lower than its gate or unset.
func init() {
	if !ktesting.KafkaIsAtLeast("2.4.0") {
		panic("KAFKA_VERSION=" + os.Getenv("KAFKA_VERSION") + " turns off kafka-go's admin tests: they would pass without running")
	}
}

// TestSluiceGroupCoordinators runs once before kafka-go's tests: it has
// __consumer_offsets created (by a FindCoordinator) and waits until the
// coordinator of each of its partitions answers a DescribeGroups of a group
// that hashes there, as on a broker that has been up a while. kafka-go's
// ConsumerGroup turns the NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE of a
// coordinator that is not ready yet into an error from Next, which its tests
// do not retry.
func TestSluiceGroupCoordinators(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &Client{Addr: TCP("localhost:9092"), Timeout: 5 * time.Second}
	retry := func(what string, err error) {
		t.Helper()
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (still, after 60 s)", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	var partitions int
	for partitions == 0 {
		client.FindCoordinator(ctx, &FindCoordinatorRequest{Key: "sluice-warm-up"}) // creates the topic
		conn, err := Dial("tcp", "localhost:9092")
		if err == nil {
			var ps []Partition
			ps, err = conn.ReadPartitions("__consumer_offsets")
			conn.Close()
			partitions = len(ps)
		}
		if partitions == 0 {
			retry("the partitions of __consumer_offsets", err)
		}
	}
	for p := 0; p < partitions; p++ {
		id := groupOfPartition(p, partitions)
		for {
			resp, err := client.DescribeGroups(ctx, &DescribeGroupsRequest{GroupIDs: []string{id}})
			if err == nil && len(resp.Groups) == 1 {
				err = resp.Groups[0].Error
			} else if err == nil {
				err = errors.New("no group in the response")
			}
			if err == nil {
				break
			}
			retry(fmt.Sprintf("DescribeGroups of %s (partition %d)", id, p), err)
		}
	}
	t.Logf("the coordinators of the %d partitions of __consumer_offsets answer", partitions)
}

// groupOfPartition is a group id that Kafka places in partition p of n:
// abs(Java's String.hashCode) % n.
func groupOfPartition(p, n int) string {
	for i := 0; ; i++ {
		id := "sluice-warm-up-" + strconv.Itoa(i)
		var h int32
		for _, c := range id {
			h = 31*h + int32(c)
		}
		if h < 0 {
			h = -h // math.MinInt32 stays negative and matches no p
		}
		if int(h)%n == p {
			return id
		}
	}
}
EOF

if [ "$NODES" = 1 ]; then
	. scripts/lib/broker.sh
	start_broker
else
	. scripts/lib/cluster.sh
	start_cluster "$NODES"
	B=${NODE_KAFKA[1]}
fi

# The broker's address for localhost:9092 (see the header); none may be left.
sed -i -e "s/\"localhost:9092\"/\"$B\"/g" -e "s/TCP(\"localhost\")/TCP(\"$B\")/g" "$TMP"/kafka-go/*_test.go
left=$(grep -n '"localhost:9092"\|TCP("localhost")' "$TMP"/kafka-go/*_test.go || true)
[ -z "$left" ] || fail "kafka-go's tests still name localhost:9092 after the rewrite: $left"

say "compiling kafka-go's tests"
(cd "$TMP/kafka-go" && GOFLAGS=-mod=mod go test -c -o "$TMP/kafka.test" . >"$TMP/compile.log" 2>&1) ||
	{ cat "$TMP/compile.log"; fail "kafka-go's tests do not compile"; }
TESTS=$(cd "$TMP/kafka-go" && KAFKA_VERSION=$KAFKA_VERSION "$TMP/kafka.test" -test.list "$RUN" |
	grep -E '^(Test|Example)' | grep -v '^TestSluiceGroupCoordinators$' || true)
[ -n "$TESTS" ] || fail "no kafka-go test matches '$RUN'"

# A fresh broker's group coordinators first (TestSluiceGroupCoordinators
# in zz_sluice_test.go above says why).
say "waiting for the group coordinators"
(cd "$TMP/kafka-go" && KAFKA_VERSION=$KAFKA_VERSION "$TMP/kafka.test" -test.count=1 -test.v -test.timeout 90s \
	-test.run '^TestSluiceGroupCoordinators$') >"$TMP/coordinators.log" 2>&1 ||
	{ cat "$TMP/coordinators.log"; fail "the group coordinators did not all answer within 60s"; }

. scripts/lib/gosuite.sh
run_one() {
	local name=$1 rc=0
	(cd "$TMP/kafka-go" && KAFKA_VERSION=$KAFKA_VERSION \
		"$TMP/kafka.test" -test.count=1 -test.v -test.timeout "$TIMEOUT" -test.run "^$name\$") \
		>"$TMP/logs/$name.log" 2>&1 || rc=$?
	echo "$rc" >"$TMP/logs/$name.rc"
}

say "kafka-go $KAFKA_GO_VERSION: $(echo "$TESTS" | wc -l) tests, $JOBS at a time, each with -timeout $TIMEOUT, KAFKA_VERSION=$KAFKA_VERSION, broker $B"
suite_run_all
suite_judge kafka-go "$KAFKA_GO_VERSION" KAFKA_GO_RUN '^ *--- FAIL|^panic|_test\.go:[0-9]+:|^\s+Test' 'createTopic\(|waitForTopic|retrying after'
