# Shared by franz-suite.sh and kafkago-suite.sh: run a Go client library's
# own tests, compiled once, each top-level test as its own process of that
# binary, JOBS at a time, then judge them against the expected skips.
#
# The caller defines say and fail, sources scripts/lib/broker.sh or
# scripts/lib/cluster.sh (NODE_PIDS, stop_cluster, NODE_RC on a cluster),
# and sets TMP, TESTS (the names), JOBS, TIMEOUT, NODES, RUN and DEFAULT_RUN
# (the -test.run pattern and its default), SKIPS_FILE (named in messages),
# EXPECT (name -> why it may skip) and EXPECT_FILE (name -> the file that
# lists it; SKIPS_FILE when not set), T_START, and run_one NAME, which runs
# one test with its output in $TMP/logs/NAME.log and its exit status in
# $TMP/logs/NAME.rc.

# suite_run_all runs every test in TESTS with run_one, JOBS at a time, and
# sets T_TEST to the seconds that took.
suite_run_all() {
	local running=0 name
	mkdir -p "$TMP/logs"
	T_TEST=$SECONDS
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
}

# suite_judge SUITE VERSION RUN_VAR ERRORS IGNORED: on a cluster, checks
# that every node lived through the tests and stops cleanly; prints one line
# per test and fails the run on a failed test, an unexpected skip or a stale
# expected-skips list. SUITE and VERSION name the library (franz-go
# v1.22.2), RUN_VAR the variable that selects tests (FRANZ_GO_RUN); for a
# failed test the lines of its log that match the ERRORS pattern and not
# the IGNORED one (grep -E) are printed.
suite_judge() {
	local suite=$1 version=$2 run_var=$3 errors=$4 ignored=$5
	local i t0 name log line res dur rc note s top msg
	local nodes_bad=0 npass=0 nfail=0 nskip=0 nexpected=0 stale=0 failed=""
	# On a cluster every node must have lived through the tests and must stop
	# cleanly on SIGTERM (all at once; each moves its leaderships away first).
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
	say "---- $suite tests (${T_TEST}s; logs in \$TMP/logs) ----"
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
	# $suite does not have: the list is out of date.
	for s in $(printf '%s\n' "${!EXPECT[@]}" | sort); do
		top=${s%%/*}
		if [ -z "${RES[$top]:-}" ]; then
			[ "$RUN" = "$DEFAULT_RUN" ] || continue # not selected by $run_var
			say "FAIL     $s: listed in ${EXPECT_FILE[$s]:-$SKIPS_FILE}, but $suite $version runs no such test here; remove it"
			stale=$((stale + 1))
		elif [ -z "${SKIPPED[$s]:-}" ] && [ "${RES[$top]}" = PASS ]; then
			say "FAIL     $s: listed in ${EXPECT_FILE[$s]:-$SKIPS_FILE}, but it ran and did not skip; remove it from the list"
			stale=$((stale + 1))
		fi
	done
	nfail=$((nfail + stale + nodes_bad))
	say "passed $npass, failed $nfail, skipped $nskip ($nexpected of them expected, in $SKIPS_FILE)"

	if [ "$nfail" != 0 ]; then
		for name in $failed; do
			say "---- $name: errors ----"
			grep -E "$errors" "$TMP/logs/$name.log" | grep -vE "$ignored" | head -n 25 || true
		done
		msg=""
		[ -z "$failed" ] || msg="$suite's tests failed or skipped unexpectedly against sluice:$failed (logs: KEEP_TMP=1)"
		[ "$stale" = 0 ] || msg="${msg:+$msg; }$SKIPS_FILE is out of date: $stale listed tests did not skip or do not exist"
		[ "$nodes_bad" = 0 ] || msg="${msg:+$msg; }$nodes_bad of the $NODES nodes died or did not stop cleanly (above)"
		fail "$msg"
	fi
	say "ok   $suite suite$([ "$NODES" = 1 ] || echo " against $NODES nodes") ($((SECONDS - T_START))s)"
}
