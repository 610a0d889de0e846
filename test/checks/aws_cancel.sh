#!/usr/bin/env bash
# A KMS call that hangs ends promptly when the statement is cancelled: the
# emulator holds a GenerateDataKey request ("hang" fault) and
#   1. statement_timeout = 500ms ends the statement in < 1.5 s (57014),
#   2. pg_cancel_backend() from another session ends it < 1.5 s after the
#      cancel (57014), and
#   3. a cancel during the retry backoff (throttling) is served as promptly;
# after each, the same session makes a normal KMS call again (the aborted
# transfer left no broken state behind).
#
# Uses the cluster and emulator of test/run.sh when PGHOST, PGPORT, PGBIN and
# PGCK_EMULATOR_PORT are set; otherwise starts its own (root, test/lib.sh).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

if [ -z "${PGCK_EMULATOR_PORT:-}" ] || [ -z "${PGHOST:-}" ] || [ -z "${PGPORT:-}" ] || [ -z "${PGBIN:-}" ]; then
    . test/lib.sh
    pgck_require_root "$@"
    pgck_make_tmp
    pgck_start_emulator || exit 1
    pgck_emulator_env
    pgck_start_cluster || { cat "$PGCK_TMP/server.log"; exit 1; }
fi

PY=/usr/bin/python3
EMUCTL="$ROOT/test/kms_emulator/emuctl.py"
DB=pgck_aws_cancel
# statement_timeout=500ms must end the call within one second of firing
LIMIT_MS=1500
# pg_cancel_backend must end the call within one second
CANCEL_LIMIT_MS=1000
PASS=0
FAIL=0
BGPID=
WORK=$(mktemp -d /tmp/pgck_aws_cancel.XXXXXX)
chmod 755 "$WORK"
# psql writes timestamps here as the postgres OS user
if [ "$(id -u)" -eq 0 ]; then chown postgres "$WORK"; fi

ctl() { "$PY" "$EMUCTL" "$PGCK_EMULATOR_PORT" "$@" >/dev/null; }

cleanup() {
    ctl clear-faults 2>/dev/null
    if [ -n "$BGPID" ]; then kill "$BGPID" 2>/dev/null; wait "$BGPID" 2>/dev/null; fi
    rm -rf "$WORK"
    # standalone: stop the cluster and emulator test/lib.sh started (by pid)
    if declare -F pgck_cleanup >/dev/null; then pgck_cleanup; fi
}
trap cleanup EXIT

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_db() {  # psql_db DB ARGS...
    local db=$1
    shift
    as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$PGBIN/psql" -X -q -A -t -U postgres -d "$db" "$@"
}

ok() {  # ok COND-STATUS DESCRIPTION
    if [ "$1" -eq 0 ]; then PASS=$((PASS + 1)); echo "ok $((PASS + FAIL)) - $2"
    else FAIL=$((FAIL + 1)); echo "not ok $((PASS + FAIL)) - $2"; fi
}


# the emulator counts every fault it applied
faults_applied() {  # faults_applied KIND
    "$PY" "$EMUCTL" "$PGCK_EMULATOR_PORT" stats |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["faults"].get(sys.argv[1], 0))' "$1"
}

# ------------------------------------------------------------------ setup
psql_db postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
psql_db "$DB" -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pgcrypt_kms" >/dev/null
ctl clear-faults

# Each session: a long kms_timeout, so only the cancel can end the call.
SESSION_SETUP="SET pgcrypt_kms.kms_timeout = 60000;"

# ------------------------------------------------- 1. statement_timeout
ctl set-fault '{"op":"GenerateDataKey","kind":"hang","count":1}'
hang_before=$(faults_applied hang)
cat >"$WORK/timeout.sql" <<SQL
\\set VERBOSITY verbose
$SESSION_SETUP
SET statement_timeout = 500;
\\o $WORK/t0
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
SELECT kms_create_key('cancel_t', 'aws-kms:alias/pgck-test');
\\o $WORK/t1
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
RESET statement_timeout;
\\! $PY $EMUCTL $PGCK_EMULATOR_PORT clear-faults >/dev/null
SELECT 'after:' || (kms_decrypt(kms_encrypt('still works', 'cancel_t2')) IS NULL)::text
  FROM (SELECT kms_create_key('cancel_t2', 'aws-kms:alias/pgck-test')) s;
SQL
chmod 644 "$WORK/timeout.sql"
psql_db "$DB" -f "$WORK/timeout.sql" >"$WORK/timeout.out" 2>&1
t0=$(tr -d ' \n' <"$WORK/t0")
t1=$(tr -d ' \n' <"$WORK/t1")
elapsed=$((t1 - t0))
echo "# statement_timeout=500ms: the hung call ended after ${elapsed} ms"
grep -q "57014" "$WORK/timeout.out"
ok $? "statement_timeout cancels a hung KMS call (SQLSTATE 57014)"
[ "$(faults_applied hang)" -gt "$hang_before" ]
ok $? "the request really hung in the emulator"
[ "$elapsed" -ge 450 ] && [ "$elapsed" -lt "$LIMIT_MS" ]
ok $? "statement_timeout=500ms ended the call in < ${LIMIT_MS} ms (${elapsed} ms)"
grep -q "after:false" "$WORK/timeout.out"
ok $? "the same session makes KMS calls again after the cancel"
grep -q "after:" "$WORK/timeout.out" || sed 's/^/# /' "$WORK/timeout.out"

# ------------------------------------------------- 2. pg_cancel_backend
cancel_during() {  # cancel_during NAME FAULT-JSON SETTLE-MS: cancel a session stuck in a KMS call
    local name=$1 fault=$2 settle=$3 pid="" i t_cancel t_end
    ctl clear-faults
    ctl set-fault "$fault"
    cat >"$WORK/$name.sql" <<SQL
\\set VERBOSITY verbose
$SESSION_SETUP
SET application_name = 'pgck_aws_cancel_$name';
SELECT kms_create_key('cancel_$name', 'aws-kms:alias/pgck-test');
\\o $WORK/$name.end
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
\\! $PY $EMUCTL $PGCK_EMULATOR_PORT clear-faults >/dev/null
SELECT 'after:' || (kms_decrypt(kms_encrypt('still works', 'cancel_${name}_2')) IS NULL)::text
  FROM (SELECT kms_create_key('cancel_${name}_2', 'aws-kms:alias/pgck-test')) s;
SQL
    chmod 644 "$WORK/$name.sql"
    psql_db "$DB" -f "$WORK/$name.sql" >"$WORK/$name.out" 2>&1 &
    BGPID=$!
    for i in $(seq 1 100); do
        pid=$(psql_db "$DB" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgck_aws_cancel_$name' AND state = 'active' AND query LIKE '%kms_create_key%'")
        [ -n "$pid" ] && break
        sleep 0.05
    done
    if [ -z "$pid" ]; then
        ok 1 "$name: found the session stuck in the KMS call"
        wait "$BGPID"; BGPID=
        sed 's/^/# /' "$WORK/$name.out"
        return
    fi
    # let the call get well into the hang (or the backoff sleep)
    sleep "$(awk "BEGIN { print $settle / 1000 }")"
    # both times are the server's clock: when the cancel was sent, and when the session ran its
    # next statement (psql's and the shell's process starts are not counted)
    t_cancel=$(psql_db "$DB" -c "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint, pg_cancel_backend($pid)" | cut -d'|' -f1)
    wait "$BGPID"
    BGPID=
    t_end=$(tr -d ' \n' <"$WORK/$name.end" 2>/dev/null)
    t_end=${t_end:-999999999999999}
    echo "# $name: the call ended $((t_end - t_cancel)) ms after pg_cancel_backend"
    grep -q "57014" "$WORK/$name.out"
    ok $? "$name: pg_cancel_backend cancels the KMS call (SQLSTATE 57014)"
    [ $((t_end - t_cancel)) -lt "$CANCEL_LIMIT_MS" ]
    ok $? "$name: the call ended < ${CANCEL_LIMIT_MS} ms after pg_cancel_backend ($((t_end - t_cancel)) ms)"
    grep -q "after:false" "$WORK/$name.out"
    ok $? "$name: the same session makes KMS calls again after the cancel"
    grep -q "after:" "$WORK/$name.out" || sed 's/^/# /' "$WORK/$name.out"
}

hang_before=$(faults_applied hang)
cancel_during hang '{"op":"GenerateDataKey","kind":"hang","count":1}' 700
[ "$(faults_applied hang)" -gt "$hang_before" ]
ok $? "hang: the request really hung in the emulator"

# ------------------------------------------------- 3. cancel in the backoff
# Throttling backs off up to 1 s, 2 s, 4 s ... (full jitter); ten attempts
# keep the session sleeping between retries most of the time.
SESSION_SETUP="SET pgcrypt_kms.kms_timeout = 60000; SET pgcrypt_kms.kms_max_attempts = 10;"
throttle_before=$(faults_applied throttle)
cancel_during backoff '{"op":"GenerateDataKey","kind":"throttle","count":-1}' 1500
[ "$(faults_applied throttle)" -gt "$throttle_before" ]
ok $? "backoff: the calls were throttled and retried"

# ------------------------------------------------- 4. a cancel ends a drill
# kms_verify loads each key version in a subtransaction so that one bad
# version is a result, not the end of the drill; a cancel must still end it.
# Three versions whose Decrypt hangs: statement_timeout = 500ms must end the
# statement (57014), not be recorded as the first version's error while the
# drill goes on to hang on the next one (kms_timeout 4 s each).
ctl clear-faults
psql_db "$DB" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE drill (id int, v enc_text);
SELECT kms_create_key('drill_' || i, 'aws-kms:alias/pgck-test') FROM generate_series(1, 3) i;
INSERT INTO drill SELECT i, kms_encrypt('value ' || i, 'drill_' || i) FROM generate_series(1, 3) i;
SQL
ctl set-fault '{"op":"Decrypt","kind":"hang","count":3}'
cat >"$WORK/drill.sql" <<SQL
\\set VERBOSITY verbose
SET pgcrypt_kms.kms_timeout = 4000;
SET statement_timeout = 500;
\\o $WORK/d0
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
SELECT key_name, version, failed, error FROM kms_verify('drill', 'v');
\\o $WORK/d1
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
SQL
chmod 644 "$WORK/drill.sql"
psql_db "$DB" -f "$WORK/drill.sql" >"$WORK/drill.out" 2>&1
ctl clear-faults
elapsed=$(( $(tr -d ' \n' <"$WORK/d1") - $(tr -d ' \n' <"$WORK/d0") ))
echo "# kms_verify with every Decrypt hanging: the statement ended after ${elapsed} ms"
grep -q "57014" "$WORK/drill.out" && ! grep -q "drill_" "$WORK/drill.out"
ok $? "statement_timeout ends kms_verify (SQLSTATE 57014) instead of becoming a version's error"
[ "$elapsed" -lt "$LIMIT_MS" ]
ok $? "kms_verify ended in < ${LIMIT_MS} ms (${elapsed} ms)"
grep -q "57014" "$WORK/drill.out" || sed 's/^/# /' "$WORK/drill.out"

ctl clear-faults
psql_db postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
