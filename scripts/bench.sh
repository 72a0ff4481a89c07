#!/usr/bin/env bash
# Benchmarks `sluice serve` against franz-go's in-memory kfake (the reference,
# internal/benchref) and the disk's own sequential write speed, with the same
# client (`sluice bench`), interleaved, ROUNDS rounds; prints a markdown table
# of medians for BENCHMARKS.md. Raw JSON lines and logs stay in $OUT.
#
#   ROUNDS=3 scripts/bench.sh
#   SUITE=txn ROUNDS=5 scripts/bench.sh    # transactions vs idempotent produce
#   SUITE=ab BASE_REV=7529eab ROUNDS=5 scripts/bench.sh   # this tree vs an older commit
#
# SUITE=ab measures `sluice serve` built from this tree against the same
# built from BASE_REV (a git worktree in $OUT, removed after), interleaved
# (the order alternates by round), each workload on a fresh broker: produce
# (a) and (b) with acks=all, their consume, and end-to-end at 1000 records/s
# with acks=all and with acks=1. The client is this tree's `sluice bench` for
# both. It prints medians and the median of per-round ratios (this / base).
#
# SUITE=txn measures instead, on one `sluice serve` (fresh data dir, default
# durability), idempotent produce (acks=all) against transactional produce
# committing every 100 ms and every 1,000 records, interleaved in ROUNDS
# rounds (the order of the three rotates), at 100 B (RECORDS_A records) and
# 1 KiB (RECORDS_B); it prints the medians and the ratios to idempotent.
#
# Environment:
#   SUITE       main (default: sluice vs kfake vs disk), txn, or ab
#   BASE_REV    the commit SUITE=ab compares with (default 7529eab)
#   ROUNDS      rounds of every workload (default 3)
#   BENCH_DIR   where brokers' data dirs and disk test files go: the disk under
#               test (default ${TMPDIR:-/tmp}; must not be a tmpfs for honest figures)
#   OUT         results directory (default: a new one under ${TMPDIR:-/tmp})
#   RECORDS_A   records of workload (a), 100 B each (default 1000000)
#   RECORDS_B   records of workload (b), 1 KiB each (default 200000)
#   E2E_SECONDS duration of the end-to-end run at 1000 records/s (default 20)
#   DISK_MIB    MiB written by each 1 MiB-block disk test (default 1024; the
#               64 KiB-block tests write a quarter of it)
#   SLUICE_SERVE_ARGS  extra `sluice serve` arguments, e.g.
#               "-c transaction.version=1" (KIP-98 transactions, not KIP-890)
#
# Every broker is started by this script on 127.0.0.1 with a random port, and
# only those processes (by PID) are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-results.XXXXXX")}
RECORDS_A=${RECORDS_A:-1000000}
RECORDS_B=${RECORDS_B:-200000}
E2E_SECONDS=${E2E_SECONDS:-20}
DISK_MIB=${DISK_MIB:-1024}
SUITE=${SUITE:-main}
BASE_REV=${BASE_REV:-7529eab}
case "$SUITE" in main | txn | ab) ;; *) echo "bench.sh: SUITE must be main, txn or ab" >&2; exit 1 ;; esac

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
BENCHLOG=$OUT/bench.log
: >"$RESULTS"
: >"$BENCHLOG"

log() { echo "bench.sh: $*" >&2; }

for tool in go jq python3 dd; do
	command -v "$tool" >/dev/null || { log "needs $tool"; exit 1; }
done

log "building bin/sluice and bin/benchref"
go build -o bin/sluice ./cmd/sluice
go build -o bin/benchref ./internal/benchref/cmd/benchref

BROKER_PID=""
BROKER_DIR=""
BROKER_ADDR=""
cleanup() {
	if [ -n "$BROKER_PID" ]; then
		kill -TERM "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	if [ -n "$BROKER_DIR" ]; then rm -rf "$BROKER_DIR"; fi
}
trap cleanup EXIT

# start_broker sluice|base|kfake: a fresh broker; sets BROKER_PID and
# BROKER_ADDR. base is `sluice serve` built from BASE_REV (SUITE=ab).
start_broker() {
	local kind=$1 logf i bin=./bin/sluice
	logf=$OUT/$kind-broker.log
	: >"$logf"
	if [ "$kind" = base ]; then bin=$OUT/sluice-base; fi
	if [ "$kind" != kfake ]; then
		BROKER_DIR=$(mktemp -d "$BENCH_DIR/sluice-bench-data.XXXXXX")
		# shellcheck disable=SC2086 # SLUICE_SERVE_ARGS is split on purpose
		"$bin" serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --schema-registry-listen "" --data-dir "$BROKER_DIR" ${SLUICE_SERVE_ARGS:-} >"$logf" 2>&1 &
	else
		./bin/benchref --listen 127.0.0.1:0 --partitions 6 >"$logf" 2>&1 &
	fi
	BROKER_PID=$!
	BROKER_ADDR=""
	for i in $(seq 1 300); do
		if [ "$kind" != kfake ]; then
			BROKER_ADDR=$(grep -o 'msg="sluice serving" kafka=[^ ]*' "$logf" | sed 's/.*kafka=//' || true)
		else
			BROKER_ADDR=$(sed -n 's/^listening on //p' "$logf")
		fi
		[ -n "$BROKER_ADDR" ] && return 0
		kill -0 "$BROKER_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "$kind did not start; its log:"
	cat "$logf" >&2
	return 1
}

stop_broker() {
	kill -TERM "$BROKER_PID" 2>/dev/null || true
	wait "$BROKER_PID" 2>/dev/null || true
	BROKER_PID=""
	if [ -n "$BROKER_DIR" ]; then rm -rf "$BROKER_DIR"; fi
	BROKER_DIR=""
}

# record WORKLOAD BROKER ROUND JSON: appends one tagged line to $RESULTS,
# with the machine's 1-minute load average (other work on it shows there).
record() {
	echo "$4" | jq -c --arg w "$1" --arg b "$2" --argjson r "$3" --argjson l "$(cut -d' ' -f1 /proc/loadavg)" \
		'. + {workload: $w, broker: $b, round: $r, load1: $l}' >>"$RESULTS"
}

# bench WORKLOAD BROKER ROUND ARGS...: runs `sluice bench ARGS` against the
# current broker and records its JSON line (or a failure).
bench() {
	local w=$1 b=$2 r=$3 out rc=0 line
	shift 3
	echo "== round $r $b $w: sluice bench $*" >>"$BENCHLOG"
	out=$(./bin/sluice bench "$@" --brokers "$BROKER_ADDR" --quiet 2>>"$BENCHLOG") || rc=$?
	line=$(echo "$out" | grep '^{' | tail -1 || true)
	if [ -z "$line" ] || [ "$rc" != 0 ]; then
		log "round $r $b $w FAILED (exit $rc); see $BENCHLOG"
		line=${line:-'{}'}
		line=$(echo "$line" | jq -c --argjson rc "$rc" '. + {failed: true, rc: $rc}')
	fi
	record "$w" "$b" "$r" "$line"
	log "round $r $b $w: $(echo "$line" | jq -r '"\(.records_per_sec // "-") rec/s \(.mib_per_sec // "-") MiB/s p99 \(.p99_ms // "-") ms errors \(.errors // "-")"')"
}

# dd_run WORKLOAD ROUND DD-ARGS...: a dd write to BENCH_DIR, as MiB/s.
dd_run() {
	local w=$1 r=$2 f last bytes secs
	shift 2
	f=$(mktemp "$BENCH_DIR/sluice-bench-dd.XXXXXX")
	last=$(LC_ALL=C dd if=/dev/zero of="$f" "$@" 2>&1 | tail -1) || true
	rm -f "$f"
	bytes=$(echo "$last" | awk '{print $1}')
	secs=$(echo "$last" | awk -F', ' '{print $3}' | awk '{print $1}')
	if [ -z "$bytes" ] || [ -z "$secs" ]; then
		log "dd $w failed: $last"
		record "$w" disk "$r" '{"mode":"disk","failed":true}'
		return
	fi
	record "$w" disk "$r" "$(jq -nc --argjson b "$bytes" --argjson s "$secs" \
		'{mode: "disk", bytes: $b, seconds: $s, mib_per_sec: ($b / 1048576 / $s)}')"
	log "round $r $w: $last"
}

disk_run() {
	local w=$1 r=$2 out rc=0
	shift 2
	echo "== round $r disk $w: sluice bench disk $*" >>"$BENCHLOG"
	out=$(./bin/sluice bench disk --dir "$BENCH_DIR" --quiet "$@" 2>>"$BENCHLOG") || rc=$?
	if [ "$rc" != 0 ] || [ -z "$out" ]; then
		log "disk $w failed (exit $rc)"
		out='{"mode":"disk","failed":true}'
	fi
	record "$w" disk "$r" "$out"
	log "round $r $w: $(echo "$out" | jq -r '"\(.mib_per_sec) MiB/s, write+fsync p50 \(.p50_ms) ms"')"
}

rss() { # rss KIND ROUND: VmRSS and VmHWM of the current broker, KiB
	local st=/proc/$BROKER_PID/status
	record rss-after-b "$1" "$2" "$(jq -nc --argjson rss "$(awk '/^VmRSS/{print $2}' "$st")" \
		--argjson hwm "$(awk '/^VmHWM/{print $2}' "$st")" '{mode: "rss", rss_kib: $rss, hwm_kib: $hwm}')"
}

# broker_cpu: user+system CPU seconds the current broker has used so far.
broker_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); print ($12 + $13) / hz}' "/proc/$BROKER_PID/stat"
}

# txn_suite: idempotent vs transactional produce on one sluice broker.
txn_suite() {
	local start r size n tag i c cases cpu0 cpu1 line
	start=$(date +%s)
	start_broker sluice
	log "sluice pid $BROKER_PID at $BROKER_ADDR, data dir $BROKER_DIR"
	cases=(idempotent commit-100ms commit-1000rec)
	for r in $(seq 1 "$ROUNDS"); do
		for size in 100 1024; do
			if [ "$size" = 100 ]; then n=$RECORDS_A; tag=a-100B; else n=$RECORDS_B; tag=b-1KiB; fi
			for i in 0 1 2; do
				c=${cases[$(((i + r) % 3))]}
				set -- produce --records "$n" --record-size "$size" --partitions 6 --producers 1 \
					--acks all --compression none --topic "txn-bench-$tag"
				case $c in
				commit-100ms) set -- "$@" --transactional-id "bench-$tag-100ms" --txn-commit-interval 100ms ;;
				commit-1000rec) set -- "$@" --transactional-id "bench-$tag-1000rec" --txn-commit-records 1000 ;;
				esac
				cpu0=$(broker_cpu)
				bench "txn-$tag-$c" sluice "$r" "$@"
				cpu1=$(broker_cpu)
				# add the broker's CPU seconds during the run to its line
				line=$(tail -1 "$RESULTS" | jq -c --argjson c "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')" \
					'. + {broker_cpu_s: $c}')
				sed -i '$ d' "$RESULTS"
				echo "$line" >>"$RESULTS"
			done
		done
	done
	log "broker log: $(grep -ciE 'level=(WARN|ERROR)' "$OUT/sluice-broker.log" || true) WARN/ERROR lines (in $OUT/sluice-broker.log)"
	stop_broker
	log "done in $(($(date +%s) - start)) s; raw results in $RESULTS"
	python3 - "$RESULTS" "$ROUNDS" <<'PYEOF'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rounds = int(sys.argv[2])

def med(w, key):
    vals = [r[key] for r in rows if r["workload"] == w and not r.get("failed") and r.get(key) is not None]
    return statistics.median(vals) if vals else None

def ok(w):
    rs = [r for r in rows if r["workload"] == w]
    return f"{sum(1 for r in rs if not r.get('failed') and not r.get('errors'))}/{len(rs)}"

def f(v, nd=1):
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}f}"

print(f"Medians of {rounds} rounds (the three cases interleaved, one broker).\n")
print("| workload | commit | rec/s | MB/s | MiB/s | vs idempotent (same run) | transactions | EndTransaction p50 / p99 ms | flush before commit p50 / p99 ms | ack p50 / p99 ms | broker CPU s | runs ok |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | --- |")
for tag in ("a-100B", "b-1KiB"):
    base = med(f"txn-{tag}-idempotent", "records_per_sec")
    # per-round ratios, then their median
    for c, desc in (("idempotent", "— (idempotent, acks=all)"), ("commit-100ms", "every 100 ms"), ("commit-1000rec", "every 1,000 records")):
        w = f"txn-{tag}-{c}"
        rps = med(w, "records_per_sec")
        ratios = []
        for r in range(1, rounds + 1):
            a = [x for x in rows if x["workload"] == f"txn-{tag}-idempotent" and x["round"] == r and not x.get("failed")]
            b = [x for x in rows if x["workload"] == w and x["round"] == r and not x.get("failed")]
            if a and b and a[0]["records_per_sec"]:
                ratios.append(b[0]["records_per_sec"] / a[0]["records_per_sec"])
        ratio = f"{statistics.median(ratios):.2f}×" if ratios else "—"
        mib = med(w, "mib_per_sec")
        mb = mib * 1048576 / 1e6 if mib is not None else None
        txn = lambda k1, k2: "—" if med(w, k1) is None else f"{f(med(w, k1), 2)} / {f(med(w, k2), 2)}"
        print(f"| {tag} | {desc} | {f(rps, 0)} | {f(mb)} | {f(mib)} | {ratio} | {f(med(w, 'transactions'), 0) if med(w, 'transactions') else '—'} | "
              f"{txn('txn_commit_p50_ms', 'txn_commit_p99_ms')} | {txn('txn_flush_p50_ms', 'txn_flush_p99_ms')} | "
              f"{f(med(w, 'p50_ms'), 2)} / {f(med(w, 'p99_ms'), 2)} | {f(med(w, 'broker_cpu_s'), 2)} | {ok(w)} |")

print("\nPer round, rec/s (idempotent / every 100 ms / every 1,000 records):\n")
for tag in ("a-100B", "b-1KiB"):
    for r in range(1, rounds + 1):
        vals = []
        for c in ("idempotent", "commit-100ms", "commit-1000rec"):
            x = [y for y in rows if y["workload"] == f"txn-{tag}-{c}" and y["round"] == r]
            vals.append(f(x[0].get("records_per_sec"), 0) if x and not x[0].get("failed") else "failed")
        print(f"- {tag} round {r}: " + " / ".join(vals))

loads = [r["load1"] for r in rows if "load1" in r]
if loads:
    print(f"\n1-minute load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f} (2 cores).")
failed = [r for r in rows if r.get("failed") or r.get("errors")]
if failed:
    print("\nFailed or erroring runs:")
    for r in failed:
        print(f"- round {r['round']} {r['workload']}: {json.dumps(r)}")
PYEOF
}

# ab_suite: this tree's broker against BASE_REV's, same client.
ab_suite() {
	local start r n size tag b order wt
	wt=$OUT/base-worktree
	log "building sluice at $BASE_REV"
	git worktree add -q --detach "$wt" "$BASE_REV"
	(cd "$wt" && go build -o "$OUT/sluice-base" ./cmd/sluice)
	git worktree remove --force "$wt"
	start=$(date +%s)
	for r in $(seq 1 "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then order="sluice base"; else order="base sluice"; fi
		for size in 100 1024; do
			if [ "$size" = 100 ]; then n=$RECORDS_A; tag=a-100B; else n=$RECORDS_B; tag=b-1KiB; fi
			for b in $order; do
				start_broker "$b"
				bench "produce-$tag-none" "$b" "$r" produce --records "$n" --record-size "$size" \
					--partitions 6 --producers 1 --acks all --compression none
				bench "consume-$tag" "$b" "$r" consume
				stop_broker
			done
		done
		for acks in all 1; do
			for b in $order; do
				start_broker "$b"
				bench "e2e-1000rps-acks-$acks" "$b" "$r" e2e --rate 1000 --duration "${E2E_SECONDS}s" --record-size 100 \
					--partitions 6 --acks "$acks" --compression none
				stop_broker
			done
		done
	done
	log "done in $(($(date +%s) - start)) s; raw results in $RESULTS"
	python3 - "$RESULTS" "$ROUNDS" "$BASE_REV" <<'PYEOF'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rounds, base_rev = int(sys.argv[2]), sys.argv[3]
good = lambda r: not r.get("failed") and not r.get("errors")

def med(w, b, key):
    vals = [r[key] for r in rows if r["workload"] == w and r["broker"] == b and good(r) and r.get(key) is not None]
    return statistics.median(vals) if vals else None

def ratio(w, key):
    rs = []
    for n in range(1, rounds + 1):
        a = [r for r in rows if r["workload"] == w and r["broker"] == "sluice" and r["round"] == n and good(r)]
        b = [r for r in rows if r["workload"] == w and r["broker"] == "base" and r["round"] == n and good(r)]
        if a and b and a[0].get(key) and b[0].get(key):
            rs.append(a[0][key] / b[0][key])
    return f"{statistics.median(rs):.2f}×" if rs else "—"

def f(v, nd=1):
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}f}"

def ok(w, b):
    rs = [r for r in rows if r["workload"] == w and r["broker"] == b]
    return f"{sum(1 for r in rs if good(r))}/{len(rs)}"

print(f"Medians of {rounds} rounds, this tree (new) and {base_rev} (base) interleaved, each workload on a fresh broker.\n")
print("| workload | new rec/s | base rec/s | new / base (median of per-round ratios) | runs ok (new, base) |")
print("| --- | ---: | ---: | ---: | --- |")
for w in ("produce-a-100B-none", "produce-b-1KiB-none", "consume-a-100B", "consume-b-1KiB"):
    print(f"| {w} | {f(med(w, 'sluice', 'records_per_sec'), 0)} | {f(med(w, 'base', 'records_per_sec'), 0)} | {ratio(w, 'records_per_sec')} | {ok(w, 'sluice')}, {ok(w, 'base')} |")
print("\n| workload (ms) | new p50 | p99 | p99.9 | max | base p50 | p99 | p99.9 | max | p50 new / base | p99 new / base |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for w in ("produce-a-100B-none", "produce-b-1KiB-none", "e2e-1000rps-acks-all", "e2e-1000rps-acks-1"):
    vals = [med(w, b, k) for b in ("sluice", "base") for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")]
    print(f"| {w} | " + " | ".join(f(v, 2) for v in vals) + f" | {ratio(w, 'p50_ms')} | {ratio(w, 'p99_ms')} |")
loads = [r["load1"] for r in rows if "load1" in r]
if loads:
    print(f"\n1-minute load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f} (2 cores).")
failed = [r for r in rows if not good(r)]
if failed:
    print("\nFailed or erroring runs:")
    for r in failed:
        print(f"- round {r['round']} {r['broker']} {r['workload']}: {json.dumps(r)}")
PYEOF
}

if [ "$SUITE" = txn ]; then
	txn_suite
	exit 0
fi
if [ "$SUITE" = ab ]; then
	ab_suite
	exit 0
fi

start=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
	# Alternate which broker goes first, so neither always runs on a
	# machine warmed (or tired) by the other.
	if [ $((r % 2)) = 1 ]; then order="sluice kfake"; else order="kfake sluice"; fi

	dd_run dd-1MiB-fdatasync "$r" bs=1M count="$DISK_MIB" conv=fdatasync
	dd_run dd-64KiB-dsync "$r" bs=64k count=$((DISK_MIB * 4)) oflag=dsync
	disk_run disk-1MiB-fsync-each "$r" --size-mib "$DISK_MIB" --block-size 1048576 --sync-every 1
	disk_run disk-64KiB-fsync-each "$r" --size-mib $((DISK_MIB / 4)) --block-size 65536 --sync-every 1

	for codec in none lz4 zstd; do
		for size in 100 1024; do
			if [ "$size" = 100 ]; then n=$RECORDS_A; tag=a-100B; else n=$RECORDS_B; tag=b-1KiB; fi
			for b in $order; do
				start_broker "$b"
				bench "produce-$tag-$codec" "$b" "$r" produce --records "$n" --record-size "$size" \
					--partitions 6 --producers 1 --acks all --compression "$codec"
				if [ "$codec" = none ]; then
					bench "consume-$tag" "$b" "$r" consume
					if [ "$size" = 1024 ]; then rss "$b" "$r"; fi
				fi
				stop_broker
			done
		done
	done
	for b in $order; do
		start_broker "$b"
		bench e2e-1000rps "$b" "$r" e2e --rate 1000 --duration "${E2E_SECONDS}s" --record-size 100 \
			--partitions 6 --acks all --compression none
		stop_broker
	done
done
log "done in $(($(date +%s) - start)) s; raw results in $RESULTS"

python3 - "$RESULTS" "$ROUNDS" <<'EOF'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rounds = int(sys.argv[2])

def runs(w, b):
    return [r for r in rows if r["workload"] == w and r["broker"] == b]

def med(w, b, key):
    vals = [r[key] for r in runs(w, b) if not r.get("failed") and r.get(key) is not None]
    return statistics.median(vals) if vals else None

def ok(w, b):
    rs = runs(w, b)
    good = sum(1 for r in rs if not r.get("failed") and not r.get("errors"))
    return f"{good}/{len(rs)}"

def f(v, nd=1):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"

def ratio(a, b):
    return "—" if a is None or not b else f"{a / b:.2f}×"

disk_ref = med("disk-1MiB-fsync-each", "disk", "mib_per_sec")

print(f"Medians of {rounds} rounds (sluice and kfake interleaved; each workload on a fresh broker).\n")
print("### Throughput\n")
print("| workload | sluice rec/s | sluice MiB/s | kfake rec/s | kfake MiB/s | sluice / kfake | sluice / raw disk | runs ok (sluice, kfake) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
workloads = []
for codec in ("none", "lz4", "zstd"):
    for tag in ("a-100B", "b-1KiB"):
        workloads.append(f"produce-{tag}-{codec}")
workloads += ["consume-a-100B", "consume-b-1KiB", "e2e-1000rps"]
for w in workloads:
    s_r, s_m = med(w, "sluice", "records_per_sec"), med(w, "sluice", "mib_per_sec")
    k_r, k_m = med(w, "kfake", "records_per_sec"), med(w, "kfake", "mib_per_sec")
    vs_disk = ratio(s_m, disk_ref) if w.startswith("produce") and w.endswith("none") else "—"
    print(f"| {w} | {f(s_r, 0)} | {f(s_m)} | {f(k_r, 0)} | {f(k_m)} | {ratio(s_r, k_r)} | {vs_disk} | {ok(w, 'sluice')}, {ok(w, 'kfake')} |")

print("\n### Latency (ms; produce: send to ack, e2e: send to consume)\n")
print("| workload | sluice p50 | p99 | p99.9 | max | kfake p50 | p99 | p99.9 | max | p99 sluice / kfake |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for w in workloads:
    if w.startswith("consume"):
        continue
    s = [med(w, "sluice", k) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")]
    k = [med(w, "kfake", k) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")]
    print(f"| {w} | " + " | ".join(f(v, 2) for v in s + k) + f" | {ratio(s[1], k[1])} |")

print("\n### Raw disk (sequential writes to the temp dir's disk)\n")
print("| test | MiB/s | write+fsync ms p50 | p99 | max |")
print("| --- | ---: | ---: | ---: | ---: |")
for w, desc in (("dd-1MiB-fdatasync", "dd bs=1M conv=fdatasync (one fdatasync at the end)"),
                ("dd-64KiB-dsync", "dd bs=64k oflag=dsync (O_DSYNC every 64 KiB)"),
                ("disk-1MiB-fsync-each", "sluice bench disk: 1 MiB writes, fsync after each"),
                ("disk-64KiB-fsync-each", "sluice bench disk: 64 KiB writes, fsync after each")):
    print(f"| {desc} | {f(med(w, 'disk', 'mib_per_sec'))} | {f(med(w, 'disk', 'p50_ms'), 2)} | "
          f"{f(med(w, 'disk', 'p99_ms'), 2)} | {f(med(w, 'disk', 'max_ms'), 2)} |")

print("\n### Broker memory after workload (b) uncompressed and its consume\n")
print("| broker | VmRSS MiB | VmHWM (peak) MiB |")
print("| --- | ---: | ---: |")
for b in ("sluice", "kfake"):
    rss, hwm = med("rss-after-b", b, "rss_kib"), med("rss-after-b", b, "hwm_kib")
    print(f"| {b} | {f(rss / 1024 if rss else None)} | {f(hwm / 1024 if hwm else None)} |")

loads = [r["load1"] for r in rows if "load1" in r]
if loads:
    print(f"\n1-minute load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f} (2 cores).")

failed = [r for r in rows if r.get("failed") or r.get("errors")]
if failed:
    print("\nFailed or erroring runs:")
    for r in failed:
        print(f"- round {r['round']} {r['broker']} {r['workload']}: {json.dumps(r)}")
EOF
