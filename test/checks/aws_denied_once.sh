#!/usr/bin/env bash
# AccessDeniedException is tried exactly once, never retried; retryable errors
# (ThrottlingException, KMSInternalException 500) are retried up to
# kms_max_attempts.  A fast check (seconds) so that a provider that retries
# denials fails early in the run, not only in tap/020_aws_kms.
#
# Each case: a fresh session (empty key cache) decrypts one value while the
# emulator answers every Decrypt with the fault (count -1, so a retry would be
# answered with the same error and show as a second call).  Counted twice,
# independently: the emulator's per-operation call counter, and
# kms_cache_stats() of the session (calls, retries, errors).
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN),
# with a private emulator this script starts and stops by pid.
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }

unset PGCK_EMULATOR_PORT        # always a private emulator: faults and counters are ours alone
. test/kms_emulator/lib.sh
pgck_emulator_ensure || { echo "not ok - emulator start"; exit 1; }
emuctl() { "$PGCK_PYTHON" test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }
emu_calls() {  # emu_calls OP: requests the emulator received for OP since reset-stats
    emuctl stats | "$PGCK_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["calls"].get(sys.argv[1], 0))' "$1"
}

DB=pgck_denied_once
psql_admin() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" "$@"; }
psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" \
    -c "ALTER DATABASE $DB SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$PGCK_EMULATOR_PORT'" \
    -c "ALTER DATABASE $DB SET pgcrypt_kms.aws_region = 'us-east-1'" >/dev/null || exit 1
pgck_on_exit() { psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1; }
psql_admin -d $DB -c "CREATE EXTENSION pgcrypt_kms" \
    -c "SELECT kms_create_key('denied', 'aws-kms:alias/pgck-test')" \
    -c "CREATE TABLE t AS SELECT kms_encrypt('denied once', 'denied') AS v" >/dev/null || exit 1

# run_case KIND: one fresh session decrypting under a persistent fault of KIND;
# sets SQLSTATE (of the decrypt), EMU (emulator Decrypt requests) and STATS
# ("calls retries errors" of kms_cache_stats() for Decrypt)
run_case() {
    local out
    emuctl clear-faults >/dev/null
    emuctl reset-stats >/dev/null
    emuctl set-fault "{\"op\":\"Decrypt\",\"kind\":\"$1\",\"count\":-1}" >/dev/null
    # no ON_ERROR_STOP: the stats query runs in the same session after the error
    out=$(runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -v VERBOSITY=sqlstate \
        -c "SET pgcrypt_kms.kms_max_attempts = 3" -c "SET pgcrypt_kms.kms_timeout = 20000" \
        -c "SELECT kms_decrypt(v) FROM t" \
        -c "SELECT 'stats ' || concat_ws(' ', by_operation->'Decrypt'->>'calls', by_operation->'Decrypt'->>'retries', by_operation->'Decrypt'->>'errors') FROM kms_cache_stats()" 2>&1)
    emuctl clear-faults >/dev/null
    SQLSTATE=$(echo "$out" | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\).*/\1/p' | head -1)
    STATS=$(echo "$out" | sed -n 's/^stats //p')
    EMU=$(emu_calls Decrypt)
    echo "# $1: SQLSTATE ${SQLSTATE:-none}, emulator Decrypt requests $EMU, kms_cache_stats Decrypt calls/retries/errors ${STATS:-?}"
}

# positive control: without a fault, one uncached decrypt is one request
emuctl reset-stats >/dev/null
got=$(runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -c "SELECT kms_decrypt(v) FROM t" 2>&1)
[ "$got" = "denied once" ] && [ "$(emu_calls Decrypt)" = 1 ]
check $? "no fault: a fresh session decrypts with one Decrypt request (got '$got', $(emu_calls Decrypt) requests)"

run_case access_denied
[ "$SQLSTATE" = 42501 ]; check $? "AccessDeniedException: 42501 (got ${SQLSTATE:-none})"
[ "$EMU" = 1 ]; check $? "AccessDeniedException: the emulator received exactly one Decrypt (got $EMU)"
[ "$STATS" = "1 0 1" ]; check $? "AccessDeniedException: kms_cache_stats counts 1 call, 0 retries, 1 error (got '${STATS:-?}')"

# the contrast: the same setup retries what is retryable, so the counts above
# do distinguish a provider that retries from one that does not
run_case internal
[ "$SQLSTATE" = 58000 ]; check $? "KMSInternalException (500) on every attempt: 58000 (got ${SQLSTATE:-none})"
[ "$EMU" = 3 ]; check $? "KMSInternalException: retried, 3 Decrypt requests with kms_max_attempts = 3 (got $EMU)"
[ "$STATS" = "1 2 1" ]; check $? "KMSInternalException: kms_cache_stats counts 1 call, 2 retries, 1 error (got '${STATS:-?}')"

run_case throttle
[ "$SQLSTATE" = 58000 ]; check $? "ThrottlingException on every attempt: 58000 (got ${SQLSTATE:-none})"
[ "$EMU" = 3 ]; check $? "ThrottlingException: retried, 3 Decrypt requests (got $EMU)"
[ "$STATS" = "1 2 1" ]; check $? "ThrottlingException: kms_cache_stats counts 1 call, 2 retries, 1 error (got '${STATS:-?}')"

exit $fail
