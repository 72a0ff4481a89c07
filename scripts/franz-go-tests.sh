#!/usr/bin/env bash
# franz-go's own consumer-group tests against a real `sluice serve`.
#
# Builds the broker, starts it on a random 127.0.0.1 port with a temporary
# data dir (group.initial.rebalance.delay.ms=0 so groups form at once), copies
# the franz-go module at FRANZ_GO_VERSION (default v1.22.2, the version
# go.mod requires) out of the Go module cache (read-only, hence the copy)
# and runs its pkg/kgo group tests against the broker:
#   TestGroupSimple                    classic and KIP-848 (848 runs when the
#                                      broker advertises ConsumerGroupHeartbeat)
#   TestGroupETL                       produce, then groups consuming, with
#                                      every eager/cooperative balancer and
#                                      member churn, checking exact counts
#   TestUnknownGroupOffsetFetchPinned  OffsetFetch of a group that does not exist
# franz-go's helpers read KGO_SEEDS (the broker), KGO_TEST_RF (replication
# factor of the topics the tests create; 1 here) and KGO_TEST_RECORDS
# (records per test, FRANZ_GO_RECORDS below, to keep the run short).
# Downloading franz-go's test dependencies needs the Go module proxy.
# KEEP_TMP=1 keeps the temp dir (and the broker's log).
set -euo pipefail
cd "$(dirname "$0")/.."
FRANZ_GO_VERSION=${FRANZ_GO_VERSION:-v1.22.2}
RUN=${FRANZ_GO_RUN:-'TestGroupSimple|TestGroupETL|TestUnknownGroupOffsetFetchPinned'}
TIMEOUT=${FRANZ_GO_TIMEOUT:-5m}
T_START=$SECONDS

say() { printf '%s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-franz-go.XXXXXX")
BROKER_PID=""
cleanup() {
	local rc=$?
	if [ -n "$BROKER_PID" ]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	if [ "$rc" != 0 ] && [ -f "$TMP/broker.log" ]; then
		say "---- broker log (tail) ----"
		tail -n 100 "$TMP/broker.log" || true
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		say "kept $TMP"
	else
		chmod -R u+w "$TMP" 2>/dev/null || true
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building sluice"
go build -o "$TMP/sluice" ./cmd/sluice || fail "go build ./cmd/sluice failed"

say "fetching franz-go $FRANZ_GO_VERSION"
SRC=$(go mod download -json "github.com/twmb/franz-go@$FRANZ_GO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$SRC" ] && [ -d "$SRC/pkg/kgo" ] || fail "no module dir for github.com/twmb/franz-go@$FRANZ_GO_VERSION"
cp -R "$SRC" "$TMP/franz-go"
chmod -R u+w "$TMP/franz-go"

# A port nothing listens on (a random pick; a race with another process
# taking it is caught by start_broker, which retries).
. scripts/lib/broker.sh
start_broker

say "go test -run '$RUN' ./pkg/kgo (franz-go $FRANZ_GO_VERSION)"
rc=0
(cd "$TMP/franz-go" && KGO_SEEDS=$B KGO_TEST_RF=1 KGO_TEST_RECORDS=${FRANZ_GO_RECORDS:-50000} KGO_LOG_LEVEL=none \
	GOFLAGS=-mod=mod go test -count=1 -timeout "$TIMEOUT" -run "$RUN" -v ./pkg/kgo) >"$TMP/test.log" 2>&1 || rc=$?
grep -E '^ *(--- |PASS|FAIL|ok|panic)' "$TMP/test.log" || true
if [ "$rc" != 0 ]; then
	say "---- go test output (tail) ----"
	tail -n 80 "$TMP/test.log"
	fail "franz-go's group tests failed"
fi
say "ok   franz-go group tests ($((SECONDS - T_START))s)"
