#!/usr/bin/env bash
# Issue 11, defects 8 and 9, against the suite's (preloaded) cluster and emulator:
#  - every KMS refusal to unwrap a key is logged once at LOG and counted like an access
#    denial: DisabledException (55000), PendingDeletion / KMSInvalidStateException (55000),
#    AccessDeniedException (42501), a key the KMS does not know (42704), and an incorrect
#    key / other failure (58000); kms_cache_stats().kms_refusals counts each;
#  - a backend of a cluster that preloads the library wipes its key memory at exit (0.1
#    registered the exit hook in the postmaster, whose forked backends forget it): the
#    backend reports how many key slots it wiped at DEBUG1;
#  - a KMS response past the size limit (the emulator's huge_body fault: 2 MiB) is refused
#    with 58000, "response too large", in one attempt, and the value stays unreadable;
#  - the DEBUG2 line of each HTTP request names the endpoint (a superuser-only setting) only
#    to a client that may read it: a role without pg_read_all_settings that raises
#    client_min_messages sees "the configured endpoint", a superuser sees host and port.
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN, PGCK_TMP,
# PGCK_EMULATOR_PORT).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
PY=/usr/bin/python3
emuctl() { $PY test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }
DB=pgck_refusals
LOG="$PGCK_TMP/server.log"
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
sql() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -v VERBOSITY=sqlstate "$@" 2>&1; }
sql -c "CREATE EXTENSION pgcrypt_kms" >/dev/null

# ---- refusals: one key per kind, each with a value, each refused at its next unwrap
mk() {  # mk ALIAS KEYNAME: a fresh emulator key under ALIAS, a pgcrypt_kms key on it, one value
    emuctl create-key "{\"alias\":\"$1\"}" >/dev/null || return 1
    sql -c "SELECT kms_create_key('$2', 'aws-kms:$1')" >/dev/null &&
    sql -c "CREATE TABLE t_$2 AS SELECT kms_encrypt('refusal test', '$2') AS v" >/dev/null
}
refused() {  # refused KEYNAME SQLSTATE LOGWORDS: a fresh session decrypts; check code, log line, counter
    local out before after n
    before=$(wc -l <"$LOG")
    out=$(sql -c "SELECT kms_decrypt(v) FROM t_$1" -c "SELECT 'refusals=' || kms_refusals FROM kms_cache_stats()")
    echo "$out" | grep -q "ERROR:  $2" ; check $? "key $1: decryption refused with SQLSTATE $2 (got: $(echo "$out" | head -1))"
    echo "$out" | grep -q "^refusals=1$"; check $? "key $1: kms_cache_stats().kms_refusals counts the refusal ($(echo "$out" | grep refusals=))"
    n=$(tail -n +"$((before + 1))" "$LOG" | grep -c "LOG:  .*pgcrypt_kms: KMS $3 key \"$1\" version 1 for role \"postgres\" (SQLSTATE $2)")
    [ "$n" -eq 1 ]; check $? "key $1: one LOG line names key, version, role and SQLSTATE $2 ($n found)"
}
mk alias/pgck-ref-disabled ref_disabled && emuctl disable-key '{"key_id":"alias/pgck-ref-disabled"}' >/dev/null
refused ref_disabled 55000 "refused (key disabled or not in a usable state)"
mk alias/pgck-ref-pending ref_pending && emuctl schedule-deletion '{"key_id":"alias/pgck-ref-pending","days":7}' >/dev/null
refused ref_pending 55000 "refused (key disabled or not in a usable state)"
mk alias/pgck-ref-denied ref_denied && emuctl set-fault '{"op":"Decrypt","kind":"access_denied","count":1}' >/dev/null
refused ref_denied 42501 "denied access to"
# ---- a response naming another key than the one asked for is refused, never recorded
# (the fifth adversarial review of 0.2: a forged KeyId was stored as the version's ARN)
kid=$(emuctl create-key '{}' | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
emuctl set-fault '{"op":"GenerateDataKey","kind":"forged_key_id","count":1}' >/dev/null
out=$(sql -c "SELECT kms_create_key('forged', 'aws-kms:$kid')")
echo "$out" | grep -q "ERROR:  58000"; check $? "a GenerateDataKey answer naming another key is refused with 58000 ($out)"
n=$(sql -c "SELECT count(*) FROM pgcrypt_kms.key_versions WHERE key_name = 'forged'")
[ "$n" = "0" ]; check $? "... and nothing was recorded ($n versions)"
out=$(sql -c "SELECT kms_create_key('forged', 'aws-kms:$kid')" -c "SELECT kms_key_arn LIKE '%key/$kid' FROM pgcrypt_kms.key_versions WHERE key_name = 'forged'")
echo "$out" | tail -1 | grep -q "^t$"; check $? "positive control: without the forgery the key's own ARN is recorded ($(echo "$out" | tail -1))"

# ---- a response body past the size limit is refused, not buffered
mk alias/pgck-ref-huge ref_huge
emuctl set-fault '{"op":"Decrypt","kind":"huge_body","count":-1,"key_id":"alias/pgck-ref-huge"}' >/dev/null
out=$(sql -v VERBOSITY=default -c "SELECT kms_flush_cache()" -c "SELECT kms_decrypt(v) FROM t_ref_huge" 2>&1)
emuctl clear-faults >/dev/null
echo "$out" | grep -q "ERROR:  AWS KMS Decrypt failed for key" &&
    echo "$out" | grep -q "DETAIL:  Could not reach the configured KMS endpoint: response too large: response body exceeds the size limit (1 attempt)"
check $? "a 2 MiB KMS response is refused as too large, in one attempt ($(echo "$out" | grep -E 'ERROR|DETAIL' | tr '\n' ' '))"
out=$(sql -c "SELECT kms_decrypt(v) FROM t_ref_huge" 2>&1)
[ "$out" = "refusal test" ]; check $? "... positive control: the same decryption without the fault ($out)"

# ---- the endpoint in the DEBUG2 HTTP line: only for a client that may read the setting
ep="127.0.0.1:$PGCK_EMULATOR_PORT"
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS pgck_ref_plain" -c "CREATE ROLE pgck_ref_plain IN ROLE pgcrypt_kms_decrypt"
mk alias/pgck-ref-dbg-plain ref_dbg_plain && mk alias/pgck-ref-dbg-super ref_dbg_super
sql -c "GRANT SELECT ON t_ref_dbg_plain TO pgck_ref_plain" >/dev/null
debug2() {  # debug2 KEYNAME [SET ROLE ...]: what the client gets of a first decryption at DEBUG2
    sql -v VERBOSITY=default -c "SELECT kms_flush_cache()" -c "${2:-SELECT 1}" \
        -c "SET client_min_messages = debug2" -c "SELECT kms_decrypt(v) FROM t_$1" 2>&1
}
out=$(debug2 ref_dbg_plain "SET ROLE pgck_ref_plain")
echo "$out" | grep -q "DEBUG:  pgcrypt_kms: HTTP request to the configured endpoint: response received, status 200" &&
    ! echo "$out" | grep -qF "$ep" && echo "$out" | grep -q "^refusal test$"
check $? "a role without pg_read_all_settings at DEBUG2 is told 'the configured endpoint', never $ep ($(echo "$out" | grep -E 'HTTP request|ERROR' | head -2 | tr '\n' ' '))"
out=$(debug2 ref_dbg_super)
echo "$out" | grep -qF "DEBUG:  pgcrypt_kms: HTTP request to $ep: response received, status 200"
check $? "... positive control: a superuser at DEBUG2 sees the endpoint $ep ($(echo "$out" | grep 'HTTP request' | head -1))"
sql -c "DROP OWNED BY pgck_ref_plain" >/dev/null

# ---- the exit wipe: a backend that unwrapped keys logs how many slots it wiped as it exits
mk alias/pgck-ref-wipe ref_wipe
before=$(wc -l <"$LOG")
pid=$(sql -c "SET log_min_messages = debug1" -c "SELECT kms_decrypt(v) FROM t_ref_wipe" -c "SELECT pg_backend_pid()" | tail -1)
for i in $(seq 1 50); do
    tail -n +"$((before + 1))" "$LOG" | grep -q "\[$pid\] .*pgcrypt_kms: wiped [1-9][0-9]* key slots" && break
    sleep 0.1
done
tail -n +"$((before + 1))" "$LOG" | grep -q "\[$pid\] .*pgcrypt_kms: wiped [1-9][0-9]* key slots in [1-9][0-9]* locked chunks at backend exit"
check $? "backend $pid (library preloaded) wiped its key slots at exit"
grep -q "shared_preload_libraries = .*pgcrypt_kms" "$PGCK_TMP/data/postgresql.conf"
check $? "the cluster preloads pgcrypt_kms (positive control for the exit-wipe check)"

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE $DB" \
    -c "DROP ROLE pgck_ref_plain"
exit $fail
