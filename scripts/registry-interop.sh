#!/usr/bin/env bash
# Schema registry interop test of a real `sluice serve`, with clients
# nobody here wrote.
#
# Builds the broker, starts it on random 127.0.0.1 ports with a temporary
# data dir and its schema registry on --schema-registry-listen (a free
# port; scripts/lib/broker.sh with SCHEMA_REGISTRY=1 waits until the
# registry answers GET /subjects with 200), then:
#   (a) JavaScript (scripts/registry-js/registry.js, versions pinned in its
#       package-lock.json): @kafkajs/confluent-schema-registry registers an
#       Avro schema (avsc) and a JSON schema (ajv), registers them again (same
#       ids), registers a BACKWARD-compatible v2 of each and is refused (409)
#       an incompatible one; looks ids up by version, "latest" and content;
#       encodes records with Avro v1, v2 and JSON v1 in Confluent's wire
#       format (magic byte 0, the schema id, the payload), kafkajs produces
#       them (acks=all) to a 2-partition topic and consumes them back in a
#       group, and a registry client that has not seen the schemas decodes
#       each (fetching its schema by id): the bytes, keys, headers and values
#       must come back unchanged; and Avro v1 records decode with v2 as the
#       reader schema.
#   (b) Python (scripts/registry-interop/sr_client.py): confluent-kafka's
#       SchemaRegistryClient (Debian's python3-confluent-kafka) makes every
#       call it has, for AVRO and JSON: register_schema, get_schema,
#       lookup_schema, get_subjects, get_versions, get_version,
#       get_latest_version, test_compatibility (compatible and not, under
#       BACKWARD and FULL), set_compatibility and get_compatibility (a
#       subject's and the global level), delete_version (soft, then
#       ?permanent=true) and delete_subject (soft, then permanent); and the
#       errors it gets must be Confluent's (HTTP status and error_code:
#       40401, 40402, 40403, 40404, 40407, 40408, 409, 42201, 42203).
#   (c) the broker exits 0 on SIGTERM and logs "stopped cleanly".
# Each check prints "ok   ..." or "FAIL: ..."; every check runs, and the
# script fails at the end if any failed, printing the broker's log.
#
# Installs with apt-get what is missing: python3-confluent-kafka and
# python3-requests (its SchemaRegistryClient needs requests), nodejs and
# npm when there is no node. `npm ci` installs the pinned JavaScript
# packages into scripts/registry-js/node_modules (not committed) when they
# are missing or the lock file changed. REGISTRY_INTEROP_PYTHON picks the
# interpreter (default /usr/bin/python3, where Debian installs them);
# KEEP_TMP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
JS=$PWD/scripts/registry-js
HERE=$PWD/scripts/registry-interop
PY=${REGISTRY_INTEROP_PYTHON:-/usr/bin/python3}
export PYTHONDONTWRITEBYTECODE=1 # leave no __pycache__ in the work tree
T_START=$SECONDS

say() { printf '%s\n' "$*"; }
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

# ---- what the test needs --------------------------------------------------
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
if [ ! -x "$PY" ]; then
	missing+=(python3 python3-confluent-kafka python3-requests)
else
	"$PY" -c 'import confluent_kafka.schema_registry' 2>/dev/null || missing+=(python3-confluent-kafka)
	"$PY" -c 'import requests' 2>/dev/null || missing+=(python3-requests)
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
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
"$PY" -c 'import confluent_kafka.schema_registry, requests' || fail "$PY cannot import confluent_kafka.schema_registry and requests"
# npm ci (the versions in package-lock.json) when node_modules is missing
# or was installed from another lock file; the stamp is written last.
STAMP=$JS/node_modules/.sluice-package-lock.json
if ! cmp -s "$JS/package-lock.json" "$STAMP"; then
	say "npm ci in scripts/registry-js"
	npm_ci() { (cd "$JS" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error); }
	if ! npm_ci; then
		say "npm ci failed; retrying once"
		sleep 5
		npm_ci || fail "npm ci in $JS failed twice"
	fi
	cp "$JS/package-lock.json" "$STAMP"
fi
say "clients: node $(node --version), kafkajs $(node -p 'require(process.argv[1]).version' "$JS/node_modules/kafkajs/package.json")," \
	"@kafkajs/confluent-schema-registry $(node -p 'require(process.argv[1]).version' "$JS/node_modules/@kafkajs/confluent-schema-registry/package.json");" \
	"$("$PY" -c 'import confluent_kafka as c; print("confluent-kafka", c.version()[0])')"

# ---- the broker -----------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-registry-interop.XXXXXX")
BROKER_PID=""
FAILED=()
cleanup() {
	local rc=$?
	set +e
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
		printf 'registry-interop: FAILED after %ds\n' $((SECONDS - T_START)) >&2
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		say "kept $TMP"
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
. scripts/lib/broker.sh
SCHEMA_REGISTRY=1 start_broker

# step DESC CMD...: runs CMD (which prints "ok   ..." and "FAIL: ..." lines
# per check), records each FAIL line, and a non-zero exit without one.
step() {
	local desc=$1 rc=0 n
	shift
	say "== $desc"
	timeout 90 "$@" >"$TMP/step.out" 2>"$TMP/step.err" || rc=$?
	cat "$TMP/step.out"
	head -n 40 "$TMP/step.err" >&2
	n=${#FAILED[@]}
	while IFS= read -r line; do FAILED+=("$desc: ${line#FAIL: }"); done < <(grep -E '^FAIL: ' "$TMP/step.out" || true)
	case $rc in
	0) ;;
	124) FAILED+=("$desc: timed out after 90s") ;;
	*) [ ${#FAILED[@]} != "$n" ] || FAILED+=("$desc: exit $rc") ;;
	esac
	kill -0 "$BROKER_PID" 2>/dev/null || fail "the broker (pid $BROKER_PID) died"
}
step "JavaScript: kafkajs and @kafkajs/confluent-schema-registry" node "$JS/registry.js" "$B" "$SR_URL" js
step "Python: confluent-kafka SchemaRegistryClient" "$PY" "$HERE/sr_client.py" "$SR_URL" py

# ---- clean shutdown --------------------------------------------------------
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

[ ${#FAILED[@]} = 0 ] || fail "${#FAILED[@]} registry interop checks failed (listed below)"
say "registry-interop: all checks passed in $((SECONDS - T_START))s"
