#!/usr/bin/env bash
# Key lifecycle against the KMS emulator (issue: rotation, re-wrap, revocation, outage):
#  - kms_rewrap_key re-wraps every DEK version and the index key through ReEncrypt only
#    (no Decrypt/GenerateDataKey/Encrypt in the emulator's call log), touches no row, and
#    after the old master key is disabled everything still decrypts;
#  - revocation: once KMS refuses the key, a backend stops decrypting within cache_ttl, and
#    kms_flush_cache() makes it immediate;
#  - outage: with the emulator stopped, cached key versions keep encrypting and decrypting,
#    uncached ones fail with 58000 within kms_timeout, and when it is back the same session
#    works again.
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN), with a private,
# restartable emulator that this script starts and stops by pid.
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
PY=/usr/bin/python3
EMU_DIR=$(mktemp -d /tmp/pgck-lifecycle.XXXXXX)
chmod 755 "$EMU_DIR"
EMU_PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
EMU_PID=
PSQL_BG=
emu_start() {
    rm -f "$EMU_DIR/port"
    $PY test/kms_emulator/emulator.py --port "$EMU_PORT" --port-file "$EMU_DIR/port" \
        --state "$EMU_DIR/state.json" --log "$EMU_DIR/emulator.log" >>"$EMU_DIR/out" 2>&1 &
    EMU_PID=$!
    for i in $(seq 1 100); do [ -s "$EMU_DIR/port" ] && return 0; sleep 0.05; done
    echo "emulator did not start"; cat "$EMU_DIR/out"; return 1
}
emu_stop() { [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null; EMU_PID=; }
emuctl() { $PY test/kms_emulator/emuctl.py "$EMU_PORT" "$@"; }
cleanup() {
    [ -n "$PSQL_BG" ] && kill "$PSQL_BG" 2>/dev/null
    emu_stop
    rm -rf "$EMU_DIR"
}
trap cleanup EXIT
emu_start || exit 1

DB=pgck_lifecycle
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" -c "ALTER DATABASE $DB SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$EMU_PORT'" -c "ALTER DATABASE $DB SET pgcrypt_kms.aws_region = 'us-east-1'"
sql() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB "$@"; }
sql -c "CREATE EXTENSION pgcrypt_kms"

# one long-lived session, driven statement by statement
coproc PSQL { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -v VERBOSITY=sqlstate 2>&1; }
PSQL_BG=$PSQL_PID
# q SQL: run in the session; the output (errors as "ERROR:  <SQLSTATE>") lands in $R.
# (Not called as $(q ...): bash closes coprocess descriptors in subshells.)
q() {
    local line
    R=""
    printf '%s;\n\\echo __END__\n' "$1" >&"${PSQL[1]}"
    while IFS= read -r line <&"${PSQL[0]}"; do
        [ "$line" = "__END__" ] && break
        R+="${R:+$'\n'}$line"
    done
}

# ---------------------------------------------------------------- re-wrap
sql -c "SELECT kms_create_key('rw', 'aws-kms:alias/pgck-test', blind_index => 'exact')" >/dev/null
sql -c "CREATE TABLE rw AS SELECT g AS id, kms_encrypt('rw' || g, 'rw') AS v FROM generate_series(1, 100) g" \
    -c "SELECT kms_rotate_key('rw')" -c "INSERT INTO rw SELECT g, kms_encrypt('rw' || g, 'rw') FROM generate_series(101, 200) g" >/dev/null
before=$(sql -c "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM rw")
emuctl reset-stats >/dev/null
n=$(sql -c "SELECT kms_rewrap_key('rw', 'aws-kms:alias/pgck-test-2')")
[ "$n" = "3" ]; check $? "kms_rewrap_key re-wrapped 2 DEK versions and the index key (got $n)"
stats=$(emuctl stats)
echo "$stats" | $PY -c 'import json,sys; c=json.load(sys.stdin)["calls"]; sys.exit(0 if c.get("ReEncrypt")==3 and not any(c.get(o) for o in ("Decrypt","GenerateDataKey","Encrypt")) else 1)'
check $? "the emulator saw only ReEncrypt, no Decrypt/GenerateDataKey/Encrypt: $(echo "$stats" | $PY -c 'import json,sys; print(json.load(sys.stdin)["calls"])')"
after=$(sql -c "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM rw")
[ "$before" = "$after" ]; check $? "no row was touched"
sql -c "SELECT DISTINCT kms_key FROM kms_keys WHERE key_name = 'rw'" | grep -qx "aws-kms:alias/pgck-test-2"
check $? "kms_keys names the new master key"
emuctl disable-key '{"key_id":"alias/pgck-test"}' >/dev/null
ok=$(sql -c "SELECT count(*) FROM rw WHERE kms_decrypt(v) = 'rw' || id AND kms_blind_index(v) = kms_blind_index('rw' || id, 'rw')")
[ "$ok" = "200" ]; check $? "with the old master key disabled, a new session decrypts and probes all 200 rows (got $ok)"
emuctl enable-key '{"key_id":"alias/pgck-test"}' >/dev/null

# ---------------------------------------------------------------- KMS encryption context
sql -c "SELECT kms_create_key('tenant42', 'aws-kms:alias/pgck-test', kms_context => '{\"tenant\": \"42\"}')" >/dev/null
sql -c "CREATE TABLE tc AS SELECT kms_encrypt('tenant 42 data', 'tenant42') AS v" -c "SELECT kms_flush_cache()" >/dev/null
emuctl reset-stats >/dev/null
r=$(sql -c "SELECT kms_decrypt(v) FROM tc"); [ "$r" = "tenant 42 data" ]; check $? "a key with a KMS context decrypts"
emuctl call-log | $PY -c 'import json,sys; log=json.load(sys.stdin); log=log.get("calls", log) if isinstance(log, dict) else log; ok=[e for e in log if e.get("op")=="Decrypt" and e.get("encryption_context")=={"tenant":"42"} and not e.get("error")]; sys.exit(0 if ok else 1)'
check $? "the Decrypt carried EncryptionContext {\"tenant\": \"42\"}"
# the wrapped key is bound to its context in KMS: with another context, KMS refuses to unwrap it
sql -c "UPDATE pgcrypt_kms.keys SET kms_context = '{\"tenant\": \"43\"}' WHERE key_name = 'tenant42'" >/dev/null
r=$(runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -v VERBOSITY=verbose -c "SELECT kms_decrypt(v) FROM tc" 2>&1)
echo "$r" | grep -q "58000" && echo "$r" | grep -q "InvalidCiphertextException"
check $? "with another context KMS refuses the Decrypt (58000, InvalidCiphertextException in errdetail)"
sql -c "UPDATE pgcrypt_kms.keys SET kms_context = '{\"tenant\": \"42\"}' WHERE key_name = 'tenant42'" >/dev/null
r=$(sql -c "SELECT kms_decrypt(v) FROM tc"); [ "$r" = "tenant 42 data" ]; check $? "with its own context again it decrypts"

# ---------------------------------------------------------------- revocation
emuctl create-key '{"alias":"alias/pgck-revoke"}' >/dev/null
# a TTL of 6 s: the decrypt "right after" disabling comes after an emuctl process start, which a
# loaded machine can stretch past a shorter TTL
q "SET pgcrypt_kms.cache_ttl = 6"
q "SELECT kms_create_key('rv', 'aws-kms:alias/pgck-revoke')"
q "CREATE TABLE rv AS SELECT kms_encrypt('revocable', 'rv') AS v"
q "SELECT kms_flush_cache()"
q "SELECT kms_decrypt(v) FROM rv"; r=$R; [ "$r" = "revocable" ]; check $? "decrypts while the key is enabled"
emuctl disable-key '{"key_id":"alias/pgck-revoke"}' >/dev/null
q "SELECT kms_decrypt(v) FROM rv"; r=$R; [ "$r" = "revocable" ]; check $? "still decrypts from the cache right after KMS disabled the key (within cache_ttl)"
q "SELECT pg_sleep(6.2)"
q "SELECT kms_decrypt(v) FROM rv"; r=$R; echo "$r" | grep -q "ERROR:  55000"; check $? "stops decrypting once cache_ttl has passed (55000): $r"
emuctl enable-key '{"key_id":"alias/pgck-revoke"}' >/dev/null
q "SET pgcrypt_kms.cache_ttl = 900"
q "SELECT kms_decrypt(v) FROM rv"; r=$R; [ "$r" = "revocable" ]; check $? "decrypts again once the key is enabled"
emuctl disable-key '{"key_id":"alias/pgck-revoke"}' >/dev/null
q "SELECT kms_decrypt(v) FROM rv"; r=$R; [ "$r" = "revocable" ]; check $? "cached under a 15 min TTL after disabling"
q "SELECT kms_flush_cache()"
q "SELECT kms_decrypt(v) FROM rv"; r=$R; echo "$r" | grep -q "ERROR:  55000"; check $? "kms_flush_cache() makes revocation immediate: $r"
emuctl enable-key '{"key_id":"alias/pgck-revoke"}' >/dev/null

# ---------------------------------------------------------------- outage
q "SELECT kms_create_key('cached', 'aws-kms:alias/pgck-test'); SELECT kms_create_key('cold', 'aws-kms:alias/pgck-test')"
q "CREATE TABLE ot AS SELECT 1 AS id, kms_encrypt('warm value', 'cached') AS a, kms_encrypt('cold value', 'cold') AS b"
q "SELECT kms_flush_cache()"
q "SELECT kms_decrypt(a) FROM ot"
q "SET pgcrypt_kms.kms_timeout = 1500; SET pgcrypt_kms.kms_connect_timeout = 500"
emu_stop
q "SELECT kms_decrypt(a) || '/' || kms_decrypt(kms_encrypt('new', 'cached')) FROM ot"; r=$R
[ "$r" = "warm value/new" ]; check $? "with KMS down, a cached key version still decrypts and encrypts: $r"
t0=$(date +%s%N)
q "SELECT kms_decrypt(b) FROM ot"; r=$R
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "$r" | grep -q "ERROR:  58000"; check $? "an uncached version fails with 58000: $r"
[ "$ms" -lt 3000 ]; check $? "within the configured timeout (${ms} ms for kms_timeout 1500 ms)"
emu_start || exit 1
q "SELECT kms_decrypt(b) FROM ot"; r=$R; [ "$r" = "cold value" ]
check $? "when KMS is back the same session works without reconnecting: $r"

printf '\\q\n' >&"${PSQL[1]}"
wait "$PSQL_BG" 2>/dev/null; PSQL_BG=
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE $DB"
exit $fail
