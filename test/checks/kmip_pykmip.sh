#!/usr/bin/env bash
# The kmip: provider end to end against PyKMIP's server (python3-pykmip), a
# KMIP implementation this project did not write, over mutually
# authenticated TLS on loopback:
#   - a throwaway CA, server and client certificates (openssl), PyKMIP's
#     server with its sqlite database in a temp dir, AES-256 keys created
#     and activated with PyKMIP's own client;
#   - kms_create_key on kmip:<uid> and kmip:name=<name>, encrypt/decrypt
#     after a cache flush (a real Decrypt), blind index, rotate, retire,
#     kms_rewrap_key to another KMIP key;
#   - the data key in a stored blob unwraps with PyKMIP's client and its
#     check value is bound to the key id and context (blob format);
#   - the server restarted mid-session: the backend reconnects;
#   - refusals: a client certificate from another CA (58000), another
#     client identity (42501), a server certificate from an untrusted CA
#     or for another host name (58000), a group-readable client key
#     (42501), a revoked or deactivated key (55000), a Pre-Active key at
#     kms_create_key (55000), a tampered blob;
#   - a server that accepts TCP and never answers: statement_timeout and
#     pg_cancel_backend end the call promptly (57014);
#   - the master key never leaves the server: PyKMIP's log shows Encrypt,
#     Decrypt, Get Attributes and Locate and no Get; no data key appears in
#     PyKMIP's or PostgreSQL's log.
#
# Uses the cluster of test/run.sh when PGHOST, PGPORT and PGBIN are set;
# otherwise starts its own (root, test/lib.sh).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

if [ -z "${PGHOST:-}" ] || [ -z "${PGPORT:-}" ] || [ -z "${PGBIN:-}" ]; then
    . test/lib.sh
    pgck_require_root "$@"
    pgck_make_tmp
    pgck_start_cluster || { cat "$PGCK_TMP/server.log"; exit 1; }
fi

. test/providers_lib.sh
PY=/usr/bin/python3
HELPER="$ROOT/test/checks/kmip_pykmip.py"
DB=pgck_kmip
LIMIT_MS=1500
CANCEL_LIMIT_MS=1000
PASS=0
FAIL=0
BGPID=
MUTEPID=
CLOSEPID=
WORK=$(mktemp -d /tmp/pgck_kmip.XXXXXX)
chmod 755 "$WORK"
K=$WORK/kmip            # the server's directory (run as postgres, so psql's \! can restart it)
mkdir -p "$K"

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_stop() { pgck_prov_kmip_stop "$K"; }

cleanup() {
    server_stop
    if [ -n "$BGPID" ]; then kill "$BGPID" 2>/dev/null; wait "$BGPID" 2>/dev/null; fi
    if [ -n "$MUTEPID" ]; then kill "$MUTEPID" 2>/dev/null; wait "$MUTEPID" 2>/dev/null; fi
    if [ -n "$CLOSEPID" ]; then kill "$CLOSEPID" 2>/dev/null; wait "$CLOSEPID" 2>/dev/null; fi
    rm -rf "$WORK"
    if declare -F pgck_cleanup >/dev/null; then pgck_cleanup; fi
}
trap cleanup EXIT

ok() {  # ok STATUS DESCRIPTION
    if [ "$1" -eq 0 ]; then PASS=$((PASS + 1)); echo "ok $((PASS + FAIL)) - $2"
    else FAIL=$((FAIL + 1)); echo "not ok $((PASS + FAIL)) - $2"; fi
}

PORT=$(pgck_prov_free_port)
MUTE_PORT=$(pgck_prov_free_port)

# ------------------------------------------------------------ certificates
pgck_prov_kmip_pki "$K" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$K/rogueca.key" -out "$K/rogueca.crt" -days 2 -subj "/CN=pgck rogue CA" 2>/dev/null &&
    pgck_prov_kmip_cert "$K" intruder ca "/CN=intruder" "$K/client.ext" &&
    pgck_prov_kmip_cert "$K" rogue rogueca "/CN=pgcrypt_kms" "$K/client.ext"
ok $? "throwaway CA, server and client certificates"
cp "$K/client.key" "$K/client_grp.key"

# ------------------------------------------------------------ PyKMIP's server
pgck_prov_kmip_start "$K" "$PORT"
ok $? "PyKMIP's server listens on 127.0.0.1:$PORT"
chmod 640 "$K/client_grp.key"

kmipc() { pgck_prov_kmipc "$K" "$PORT" "$@"; }
K1=$(kmipc create pgck-master-1)
K2=$(kmipc create pgck-master-2)
KR=$(kmipc create pgck-revoked)
KD=$(kmipc create pgck-deactivated)
KP=$(kmipc create-noactivate pgck-preactive)
[ -n "$K1" ] && [ -n "$K2" ] && [ -n "$KR" ] && [ -n "$KD" ] && [ -n "$KP" ]
ok $? "AES-256 keys created and activated with PyKMIP's client ($K1 $K2 $KR $KD $KP)"
[ -n "$K1" ] || { tail -20 "$K/client.err" "$K/serve.out" | sed 's/^/# /'; exit 1; }

# ------------------------------------------------------------ SQL
BASE="-c pgcrypt_kms.kmip_host=127.0.0.1 -c pgcrypt_kms.kmip_port=$PORT -c pgcrypt_kms.kmip_ca_file=$K/ca.crt -c pgcrypt_kms.kmip_client_cert=$K/client.crt -c pgcrypt_kms.kmip_client_key=$K/client.key"
sqlo() {  # sqlo "EXTRA PGOPTIONS" SQL...: output and errors (SQLSTATE shown)
    local extra=$1
    shift
    as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" PGOPTIONS="$BASE $extra" \
        "$PGBIN/psql" -X -q -A -t -U postgres -d "$DB" -v VERBOSITY=verbose "$@" 2>&1 | tee -a "$WORK/all.out"
}
sql() { sqlo "" -c "$1"; }

as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$PGBIN/psql" -X -q -U postgres -d postgres \
    -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
sql "CREATE EXTENSION pgcrypt_kms" >/dev/null

r=$(sql "SELECT kms_create_key('kmip1', 'kmip:$K1', blind_index => 'exact')")
ok $? "kms_create_key on kmip:<uid>: $r"
r=$(sql "CREATE TABLE t AS SELECT g AS id, kms_encrypt('secret ' || g, 'kmip1') AS v FROM generate_series(1, 20) g; SELECT count(*) FROM t")
[ "$r" = "20" ]; ok $? "kms_encrypt under a kmip: key ($r)"
r=$(sql "SELECT kms_flush_cache(); SELECT count(*) FROM t WHERE kms_decrypt(v) = 'secret ' || id")
echo "$r" | tail -1 | grep -qx 20; ok $? "decrypts after a cache flush (Decrypt on the server): $(echo "$r" | tail -1)"
r=$(sql "SELECT id FROM t WHERE kms_blind_index(v) = kms_blind_index('secret 7', 'kmip1')")
[ "$r" = "7" ]; ok $? "blind index lookup ($r)"
r=$(sql "SELECT kms_create_key('byname', 'kmip:name=pgck-master-2'); SELECT kms_flush_cache(); SELECT kms_decrypt(kms_encrypt('by name', 'byname'))")
echo "$r" | tail -1 | grep -qx "by name"; ok $? "kmip:name=<name> (Locate) encrypts and decrypts: $(echo "$r" | tail -1)"
r=$(sql "SELECT kms_key_arn FROM pgcrypt_kms.key_versions WHERE key_name = 'byname'")
[ "$r" = "$K2" ]; ok $? "the unique identifier the name resolved to is recorded ($r)"
r=$(sql "SELECT kms_create_key('bad', 'kmip:name=no-such-key')")
echo "$r" | grep -q "ERROR:  42704"; ok $? "an unknown name is 42704: $r"
r=$(sql "SELECT kms_create_key('bad', 'kmip:no-such-uid-999')")
echo "$r" | grep -q "ERROR:  42[57]0[14]"; ok $? "an unknown unique identifier is refused (42704/42501): $r"

# cost of a call (measured, reported, not asserted)
r=$(sql "SELECT kms_flush_cache() FROM generate_series(1, 1); DO \$\$ BEGIN FOR i IN 1..20 LOOP PERFORM kms_flush_cache(); PERFORM kms_decrypt(v) FROM t WHERE id = 1; END LOOP; END \$\$; SELECT kms_calls || ' calls, avg ' || round(kms_ms_avg::numeric, 1) || ' ms, max ' || round(kms_ms_max::numeric, 1) || ' ms' FROM kms_cache_stats()")
echo "# 20 unwraps after a cache flush, one TLS connection: $(echo "$r" | tail -1)"

# rotation and retirement
r=$(sql "SELECT kms_rotate_key('kmip1'); INSERT INTO t SELECT g, kms_encrypt('secret ' || g, 'kmip1') FROM generate_series(21, 30) g; SELECT kms_flush_cache(); SELECT count(*) FROM t WHERE kms_decrypt(v) = 'secret ' || id")
echo "$r" | tail -1 | grep -qx 30; ok $? "after kms_rotate_key both versions decrypt ($(echo "$r" | tail -1))"
r=$(sql "SELECT kms_set_key_state('kmip1', 1, 'retired'); SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 1")
echo "$r" | grep -q "ERROR:  55000"; ok $? "a retired version refuses to decrypt (55000)"
sql "SELECT kms_set_key_state('kmip1', 1, 'decrypt-only')" >/dev/null

# the blob: PyKMIP's own client unwraps it, and the check value binds key and context
HEX=$(sql "SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions WHERE key_name = 'kmip1' AND version = 1")
DEK=$(kmipc unwrap "$HEX" '{}')
[ ${#DEK} -eq 64 ]; ok $? "the stored blob unwraps with PyKMIP's client and its check value matches (format of README's KMIP section)"
kmipc unwrap "$HEX" '{"tenant":"1"}' >/dev/null
[ $? -ne 0 ]; ok $? "the check value is bound to the key's context (another context mismatches)"
sql "SELECT kms_create_key('tenant', 'kmip:$K1', kms_context => '{\"tenant\": \"42\"}')" >/dev/null
THEX=$(sql "SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions WHERE key_name = 'tenant'")
TCTX=$(sql "SELECT kms_context::text FROM pgcrypt_kms.keys WHERE key_name = 'tenant'")
TDEK=$(kmipc unwrap "$THEX" "$TCTX")
[ ${#TDEK} -eq 64 ]; ok $? "a key with a KMS context: its blob's check value binds that context ($TCTX)"
r=$(sql "SELECT kms_flush_cache(); SELECT kms_decrypt(kms_encrypt('t42', 'tenant'))")
echo "$r" | tail -1 | grep -qx t42; ok $? "and it encrypts and decrypts"
# the unwrapped data key is in no core dump of the backend: neither in the key
# cache (locked, MADV_DONTDUMP) nor in OpenSSL's buffer of the TLS record that
# carried the Decrypt response (SSL_OP_CLEANSE_PLAINTEXT); gdb's gcore goes by
# MADV_DONTDUMP as the kernel does.  The connection stays open after the call.
r=$(PGOPTIONS="$BASE" PYTHONPATH="$ROOT/test/checks" $PY - "$PGBIN" "$PGHOST" "$PGPORT" "$DB" "$DEK" "$WORK" <<'PY'
import os, sys
from key_hygiene_lib import Session, gcore
pgbin, host, port, db, dek, work = sys.argv[1:]
s = Session(pgbin, host, port, db)
s.q('SELECT kms_flush_cache()')
got = s.q('SELECT kms_decrypt(v) FROM t WHERE id = 1')
data, out = gcore(s.pid(), os.path.join(work, 'kmip_core'))
s.close()
for f in os.listdir(work):
    if f.startswith('kmip_core'):
        os.unlink(os.path.join(work, f))
print('decrypted=%s core=%d hits=%d' % (','.join(got), len(data), data.count(bytes.fromhex(dek)) if data else -1))
PY
)
echo "$r" | grep -qx "decrypted=secret 1 core=[1-9][0-9]* hits=0"
ok $? "after a KMIP Decrypt the data key is nowhere in a core dump of the backend ($r)"

r=$(sql "SELECT encode(key_check, 'hex') FROM pgcrypt_kms.key_versions WHERE key_name = 'kmip1' AND version = 1")
[ -n "$r" ]; ok $? "the keyring holds the key check value of that version"

# tampering: a flipped ciphertext byte, a flipped IV byte
tamper() {  # tamper OFFSET-FROM-END: flip one byte of version 1's blob and try to decrypt
    sql "UPDATE pgcrypt_kms.key_versions SET wrapped_dek = set_byte(wrapped_dek, length(wrapped_dek) - $1, get_byte(wrapped_dek, length(wrapped_dek) - $1) # 1) WHERE key_name = 'kmip1' AND version = 1" >/dev/null
    sql "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 1"
    sql "UPDATE pgcrypt_kms.key_versions SET wrapped_dek = decode('$HEX', 'hex') WHERE key_name = 'kmip1' AND version = 1" >/dev/null
}
r=$(tamper 1); echo "$r" | grep -q "ERROR:  58000.*could not unwrap"; ok $? "a changed last ciphertext byte is refused: $(echo "$r" | grep ERROR)"
r=$(tamper 40); echo "$r" | grep -q "ERROR:  58000.*could not unwrap"; ok $? "a changed middle ciphertext byte is refused: $(echo "$r" | grep ERROR)"
r=$(tamper 70); echo "$r" | grep -q "ERROR:  58000.*could not unwrap"; ok $? "a changed IV byte is refused: $(echo "$r" | grep ERROR)"
r=$(sql "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 1")
echo "$r" | tail -1 | grep -qx "secret 1"; ok $? "restored, it decrypts again"

# rewrap to another KMIP key
r=$(sql "SELECT kms_rewrap_key('kmip1', 'kmip:$K2')")
[ "$r" -ge 2 ] 2>/dev/null; ok $? "kms_rewrap_key to another KMIP key re-wraps every wrapped key ($r)"
r=$(sql "SELECT kms_flush_cache(); SELECT count(*) FROM t WHERE kms_decrypt(v) = 'secret ' || id")
echo "$r" | tail -1 | grep -qx 30; ok $? "after the rewrap every value decrypts ($(echo "$r" | tail -1))"
r=$(sql "SELECT DISTINCT kms_key FROM pgcrypt_kms.key_versions WHERE key_name = 'kmip1'")
[ "$r" = "kmip:$K2" ]; ok $? "the versions now name the new key ($r)"

# the server restarted in the middle of a session
# (one attempt per call: only the provider's immediate reconnect can save the call)
cat >"$WORK/restart.sql" <<SQL
SET pgcrypt_kms.kms_max_attempts = 1;
SELECT kms_flush_cache();
SELECT 'before:' || kms_decrypt(v) FROM t WHERE id = 2;
\\! $K/restart.sh
SELECT kms_flush_cache();
SELECT 'after:' || kms_decrypt(v) FROM t WHERE id = 2;
SQL
chmod 644 "$WORK/restart.sql"
r=$(sqlo "" -f "$WORK/restart.sql")
echo "$r" | grep -qx "before:secret 2" && echo "$r" | grep -qx "after:secret 2"
ok $? "the server restarted mid-session: the backend reconnects ($(echo "$r" | grep -E 'after|ERROR' | head -2 | tr '\n' ' '))"

# refusals
r=$(sqlo "-c pgcrypt_kms.kmip_client_cert=$K/rogue.crt -c pgcrypt_kms.kmip_client_key=$K/rogue.key" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | grep -q "ERROR:  58000"; ok $? "a client certificate from another CA is refused (58000): $(echo "$r" | grep ERROR)"
ndec() { grep -c "Processing operation: Decrypt$" "$K/server.log"; }
before=$(ndec)
r=$(sqlo "-c pgcrypt_kms.kmip_client_cert=$K/intruder.crt -c pgcrypt_kms.kmip_client_key=$K/intruder.key" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | grep -q "ERROR:  42501"; ok $? "another client identity gets Permission Denied (42501): $(echo "$r" | grep ERROR)"
[ $(( $(ndec) - before )) -eq 1 ]; ok $? "Permission Denied is not retried (Decrypt requests: $(( $(ndec) - before )))"
r=$(sqlo "-c pgcrypt_kms.kmip_ca_file=$K/rogueca.crt" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | grep -q "ERROR:  58000.*certificate"; ok $? "a server certificate from an untrusted CA is refused: $(echo "$r" | grep ERROR)"
r=$(sqlo "-c pgcrypt_kms.kmip_host=localhost" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | grep -q "ERROR:  58000.*certificate"; ok $? "a server certificate for another host name is refused: $(echo "$r" | grep ERROR)"
r=$(sqlo "-c pgcrypt_kms.kmip_client_key=$K/client_grp.key" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | grep -q "ERROR:  42501"; ok $? "a group-readable client key file is refused (42501): $(echo "$r" | grep ERROR)"
! echo "$r" | grep -qF "$K/"; ok $? "... without the file's path (a superuser-only setting) in the client's error"
r=$(sqlo "-c pgcrypt_kms.kmip_client_cert=" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | grep -q "ERROR:  22023"; ok $? "no client certificate configured is 22023: $(echo "$r" | grep ERROR)"
r=$(sql "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 3")
echo "$r" | tail -1 | grep -qx "secret 3"; ok $? "with the right settings again it decrypts"

# key states
r=$(sql "SELECT kms_create_key('pre', 'kmip:$KP')")
echo "$r" | grep -q "ERROR:  55000"; ok $? "a Pre-Active key is refused at kms_create_key (55000): $(echo "$r" | grep ERROR)"
sql "SELECT kms_create_key('rv', 'kmip:$KR'); SELECT kms_create_key('dv', 'kmip:$KD'); CREATE TABLE s AS SELECT kms_encrypt('r', 'rv') AS r, kms_encrypt('d', 'dv') AS d" >/dev/null
kmipc revoke "$KR" && kmipc deactivate "$KD"
ok $? "keys revoked (compromise) and deactivated with PyKMIP's client"
r=$(sql "SELECT kms_flush_cache(); SELECT kms_decrypt(r) FROM s")
echo "$r" | grep -q "ERROR:  55000"; ok $? "a compromised key refuses to unwrap (55000): $(echo "$r" | grep ERROR)"
r=$(sql "SELECT kms_flush_cache(); SELECT kms_decrypt(d) FROM s")
echo "$r" | grep -q "ERROR:  55000"; ok $? "a deactivated key refuses to unwrap (55000): $(echo "$r" | grep ERROR)"
r=$(sql "SELECT kms_rotate_key('dv')")
echo "$r" | grep -q "ERROR:  55000"; ok $? "a deactivated key wraps no new version (55000): $(echo "$r" | grep ERROR)"

# a server that accepts TCP and never answers
$PY "$HELPER" mute "$MUTE_PORT" &
MUTEPID=$!
sleep 0.5
cat >"$WORK/timeout.sql" <<SQL
SET pgcrypt_kms.kms_timeout = 60000;
SELECT kms_flush_cache();
SET statement_timeout = 500;
\\o $WORK/t0
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
SELECT kms_decrypt(v) FROM t WHERE id = 4;
\\o $WORK/t1
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
\\o
SQL
chmod 644 "$WORK/timeout.sql"; chown postgres "$WORK"
r=$(sqlo "-c pgcrypt_kms.kmip_port=$MUTE_PORT" -f "$WORK/timeout.sql")
elapsed=$(( $(tr -d ' \n' <"$WORK/t1") - $(tr -d ' \n' <"$WORK/t0") ))
echo "$r" | grep -q "57014" && [ "$elapsed" -lt "$LIMIT_MS" ]
ok $? "statement_timeout=500ms ends a call to a silent server (57014) in < ${LIMIT_MS} ms (${elapsed} ms)"

cat >"$WORK/cancel.sql" <<SQL
SET pgcrypt_kms.kms_timeout = 60000;
SET application_name = 'pgck_kmip_cancel';
SELECT kms_flush_cache();
SELECT kms_decrypt(v) FROM t WHERE id = 5;
\\o $WORK/t3
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
SQL
chmod 644 "$WORK/cancel.sql"
sqlo "-c pgcrypt_kms.kmip_port=$MUTE_PORT" -f "$WORK/cancel.sql" >"$WORK/cancel.out" 2>&1 &
BGPID=$!
pid=
for _ in $(seq 1 100); do
    pid=$(sql "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgck_kmip_cancel' AND state = 'active' AND query LIKE '%kms_decrypt%'")
    [ -n "$pid" ] && break
    sleep 0.05
done
sleep 0.3
t2=$(sql "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint FROM (SELECT pg_cancel_backend($pid)) c")
wait "$BGPID"; BGPID=
elapsed=$(( $(tr -d ' \n' <"$WORK/t3" 2>/dev/null || echo 999999) - t2 ))
grep -q "57014" "$WORK/cancel.out" && [ "$elapsed" -lt "$CANCEL_LIMIT_MS" ]
ok $? "pg_cancel_backend ends a call to a silent server (57014) within ${CANCEL_LIMIT_MS} ms of the cancel (${elapsed} ms)"
kill "$MUTEPID" 2>/dev/null; wait "$MUTEPID" 2>/dev/null; MUTEPID=

# a transient failure (the connection closed at once) is retried, up to kms_max_attempts
CLOSE_PORT=$(pgck_prov_free_port)
$PY "$HELPER" closer "$CLOSE_PORT" "$WORK/closer.count" &
CLOSEPID=$!
for _ in $(seq 1 50); do $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$CLOSE_PORT" 2>/dev/null && break; sleep 0.1; done
sleep 0.2
closed() { tr -d ' \n' <"$WORK/closer.count"; }
c0=$(closed)
r=$(sqlo "-c pgcrypt_kms.kmip_port=$CLOSE_PORT -c pgcrypt_kms.kms_max_attempts=3" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 6")
c3=$(( $(closed) - c0 ))
r1=$(sqlo "-c pgcrypt_kms.kmip_port=$CLOSE_PORT -c pgcrypt_kms.kms_max_attempts=1" -c "SELECT kms_flush_cache(); SELECT kms_decrypt(v) FROM t WHERE id = 6")
c1=$(( $(closed) - c0 - c3 ))
echo "$r" | grep -q "ERROR:  58000" && echo "$r1" | grep -q "ERROR:  58000" && [ "$c3" -eq 3 ] && [ "$c1" -eq 1 ]
ok $? "a server that closes every connection: retried up to kms_max_attempts (3 → $c3 connections, 1 → $c1), then 58000, not class 08: $(echo "$r" | grep ERROR)"
! echo "$r" | grep -qE "127\.0\.0\.1|$CLOSE_PORT"
ok $? "... the client's error names neither the KMIP host nor its port (superuser-only settings): $(echo "$r" | grep -E 'ERROR|DETAIL' | tr '\n' ' ')"
if [ -n "${PGCK_TMP:-}" ] && [ -f "$PGCK_TMP/server.log" ]; then
    grep -qF "pgcrypt_kms.kmip_host \"127.0.0.1\", port $CLOSE_PORT" "$PGCK_TMP/server.log"
    ok $? "... the server log has them"
fi
kill "$CLOSEPID" 2>/dev/null; wait "$CLOSEPID" 2>/dev/null; CLOSEPID=

# never class 08 (README, SQLSTATEs): every error this check provoked through psql
errs=$(grep -c "^ERROR:  [0-9A-Z]\{5\}:" "$WORK/all.out")
c08=$(grep "^ERROR:  08" "$WORK/all.out" | head -3)
[ "$errs" -ge 5 ] && [ -z "$c08" ]
ok $? "none of the $errs errors provoked here has a class 08 SQLSTATE (${c08:-none})"

# the master key never left the server; no data key in any log
ops=$(grep -o "Processing operation: [A-Za-z ]*" "$K/server.log" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
echo "# PyKMIP operations: $ops"
grep -q "Processing operation: Encrypt" "$K/server.log" && grep -q "Processing operation: Decrypt" "$K/server.log"
ok $? "PyKMIP's log shows the provider's Encrypt and Decrypt"
# Get = 'Processing operation: Get' alone on the line (Get Attributes is another)
! grep -qE "Processing operation: Get$" "$K/server.log"
ok $? "no Get was ever issued: the master key never left the server"
B64=$($PY -c "import base64,sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())" "$DEK")
LOGS="$K/server.log $K/serve.out"
[ -n "${PGCK_TMP:-}" ] && [ -f "$PGCK_TMP/server.log" ] && LOGS="$LOGS $PGCK_TMP/server.log"
[ -n "$DEK" ] && [ -n "$B64" ] && ! grep -qiF -e "$DEK" -e "$B64" $LOGS
ok $? "the data key (hex or base64) appears in no log ($LOGS)"
# the client's private key: no line of its PEM body (64 base64 characters each) in any log
KEYLINES=$(grep -v "^-----" "$K/client.key" | awk 'length($0) >= 40')
[ -n "$KEYLINES" ] && ! grep -qF -f <(echo "$KEYLINES") $LOGS
ok $? "no line of the client's private key file appears in any log ($(echo "$KEYLINES" | wc -l) lines looked for)"
cat "$K/server.log" "$K/client.key" >"$WORK/leaky.log"
grep -qF -f <(echo "$KEYLINES") "$WORK/leaky.log"
ok $? "positive control: the same search finds the key in a log that holds it"

echo "# $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
