#!/usr/bin/env bash
# Key hygiene: the key cache's memory is locked and excluded from core dumps
# (smaps VmFlags lo + dd), and so are OpenSSL's keyed contexts: a gcore of a
# backend holding keys holds none; the unwrapped DEK never appears in the server log,
# a dump, or pg_stat_statements; failed decryptions are logged once per
# statement with key, version, role and SQLSTATE, never the value; plaintext
# refused by enc_text's input (COPY, literals) stays out of the server log.
# Runs (as root) against the cluster test/run.sh started: PGHOST, PGPORT,
# PGBIN, PGCK_TMP, PGCK_PGDATA.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
psql_db() { runuser -u postgres -- "$PGBIN/psql" -X -At -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d pgck_hygiene "$@"; }
# the Python parts share test/checks/key_hygiene_lib.py
export PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE IF EXISTS pgck_hygiene" -c "CREATE DATABASE pgck_hygiene"
psql_db -q <<'SQL'
CREATE EXTENSION pgcrypt_kms;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SELECT kms_create_key('hyg', 'local:hygiene', blind_index => 'exact');
CREATE TABLE t (id int, v enc_text);
INSERT INTO t SELECT g, kms_encrypt('HygieneMarker' || g, 'hyg') FROM generate_series(1, 200) g;
SELECT count(kms_decrypt(v)) FROM t;
SQL

# 1. smaps of a backend holding unwrapped keys
out="$PGCK_TMP/hygiene_backend.out"
runuser -u postgres -- "$PGBIN/psql" -X -At -h "$PGHOST" -p "$PGPORT" -d pgck_hygiene \
    -c "SELECT count(kms_decrypt(v)) FROM t" -c "SELECT 'pid=' || pg_backend_pid()" -c "SELECT pg_sleep(5)" >"$out" 2>&1 &
bg=$!
pid=""
for i in $(seq 1 50); do pid=$(sed -n 's/^pid=//p' "$out"); [ -n "$pid" ] && break; sleep 0.1; done
if [ -n "$pid" ] && [ -r "/proc/$pid/smaps" ]; then
    flags=$(awk '/^[0-9a-f]+-[0-9a-f]+ /{size=0} /^Size:/{size=$2} /^VmFlags:/{ if (size == 64) print }' "/proc/$pid/smaps")
    echo "$flags" | grep -Eq '( |^VmFlags:.* )lo( |$)' && echo "$flags" | grep -Eq ' dd( |$)'
    check $? "key cache mapping is locked (lo) and excluded from core dumps (dd): $(echo "$flags" | grep ' lo' | head -1)"
else
    check 1 "found the backend holding keys (pid '$pid')"
fi
wait $bg

# 2. the DEK, unwrapped here from the local provider's file, appears nowhere
dump="$PGCK_TMP/hygiene.dump"
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d pgck_hygiene -f "$dump"
psql_db -c "SELECT query FROM pg_stat_statements" >"$PGCK_TMP/hygiene_pgss.txt"
wrapped=$(psql_db -c "SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions WHERE key_name = 'hyg'")
keyfile=$(psql_db -c "SHOW pgcrypt_kms.local_key_file")
/usr/bin/python3 - "$keyfile" "$wrapped" "$PGCK_TMP/server.log" "$dump" "$PGCK_TMP/hygiene_pgss.txt" <<'PY'
import base64, sys
from key_hygiene_lib import local_unwrap
keyfile, wrapped_hex, *files = sys.argv[1:]
master = open(keyfile, 'rb').read()
dek = local_unwrap(keyfile, wrapped_hex)
assert len(dek) == 32
forms = {"raw": dek, "hex": dek.hex().encode(), "HEX": dek.hex().upper().encode(),
         "base64": base64.b64encode(dek), "master raw": master, "master hex": master.hex().encode()}
bad = 0
for f in files:
    data = open(f, 'rb').read()
    for name, needle in forms.items():
        if needle in data:
            print(f"not ok - {name} key bytes found in {f}"); bad = 1
    if b"HygieneMarker" in data:
        print(f"not ok - plaintext found in {f}"); bad = 1
print("ok - unwrapped DEK (raw, hex, base64) and master key absent from server log, dump, pg_stat_statements" if not bad else "")
sys.exit(bad)
PY
check $? "no key bytes or plaintext in server log, dump or pg_stat_statements"

# 3. the unwrapped DEK sits in the locked mapping while cached, and is wiped by kms_flush_cache()
/usr/bin/python3 - "$keyfile" "$wrapped" "$PGBIN" "$PGHOST" "$PGPORT" <<'PY'
import re, sys
from key_hygiene_lib import Checks, Session, local_unwrap
keyfile, wrapped_hex, pgbin, host, port = sys.argv[1:]
dek = local_unwrap(keyfile, wrapped_hex)
def locked_mappings(pid):
    maps, cur = [], None
    for line in open(f'/proc/{pid}/smaps'):
        m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) ', line)
        if m:
            cur = (int(m.group(1), 16), int(m.group(2), 16))
        elif line.startswith('VmFlags:') and ' lo' in line and ' dd' in line:
            maps.append(cur)
    return maps
def locked_bytes(pid):
    data = b''
    with open(f'/proc/{pid}/mem', 'rb') as mem:
        for start, end in locked_mappings(pid):
            mem.seek(start); data += mem.read(end - start)
    return data
s = Session(pgbin, host, port)
pid = s.pid()
s.q('SELECT count(kms_decrypt(v)) FROM t')
before = locked_bytes(pid)
s.q('SELECT kms_flush_cache()')
after = locked_bytes(pid)
s.close()
check = Checks()
check(dek in before, 'while cached, the DEK is in the locked, non-dumpable mapping')
check(len(after) > 0 and dek not in after, 'after kms_flush_cache() the mapping no longer holds it (wiped)')
sys.exit(check.bad)
PY
check $? "key memory holds the DEK only while cached and is wiped on flush"

# 3b. a core dump of a backend holding keys (gdb's gcore, which goes by the kernel's
# MADV_DONTDUMP flags as a crash's core does) holds no key: not the DEK (the AES-256
# key schedule of a keyed GCM context begins with it), not the index key, not the
# HMAC's keyed SHA-256 states, not the local master key (the kms_create_key that comes
# last wraps a new key under local:; this finds a copy left in the heap, not the stack
# copy wrapping_aead wipes: the calls that follow reuse that frame, see the equivalent
# mutant local-master-not-wiped); a marker the backend does hold proves the heap is there
wrapped_idx=$(psql_db -c "SELECT encode(index_key_wrapped, 'hex') FROM pgcrypt_kms.keys WHERE key_name = 'hyg'")
/usr/bin/python3 - "$keyfile" "$wrapped" "$wrapped_idx" "$PGBIN" "$PGHOST" "$PGPORT" "$PGCK_TMP" <<'PY'
import os, sys
from key_hygiene_lib import Checks, Session, gcore, hmac_states, local_unwrap
keyfile, wrapped_hex, wrapped_idx_hex, pgbin, host, port, tmp = sys.argv[1:]
dek, ikey = local_unwrap(keyfile, wrapped_hex), local_unwrap(keyfile, wrapped_idx_hex)
inner, outer = hmac_states(ikey)
needles = {'the DEK': dek, 'the index key': ikey,
           "the HMAC's inner state": inner, "the HMAC's outer state": outer,
           'the local master key': open(keyfile, 'rb').read()}
marker = b'gcore_probe_5173'
s = Session(pgbin, host, port)
s.q("SET application_name = '%s'" % marker.decode())
n = s.q("SELECT count(kms_decrypt(v)) FROM t WHERE id > 50")
tag = s.q("SELECT count(*) FROM t WHERE kms_blind_index(v) = kms_blind_index('HygieneMarker77', 'hyg')")
made = s.q("SELECT count(*) FROM (SELECT kms_create_key('hyg_master', 'local:hygiene-master')) k")
data, out = gcore(s.pid(), os.path.join(tmp, 'hygiene_core'))
s.close()
check = Checks()
check(len(data) > 0 and n == ['150'] and tag == ['1'] and made == ['1'],
      f'gcore of a backend that decrypted 150 values, probed the blind index and wrapped a new local key ({len(data)} bytes; {out if not data else "ok"})')
check(marker in data, 'the core holds the heap (a setting the backend holds is in it)')
for name, needle in needles.items():
    check(len(data) > 0 and needle not in data, f'{name} is not in the core')
sys.exit(check.bad)
PY
check $? "a core dump of a backend holding keys holds no key material"

# 3e. Keys derived from a key's index key (a named index's HMAC key here; an order key is
# released the same way) do not outlive a statement by much: kms_flush_cache() wipes them, and
# so does the sweep at commit (at most once a second). Before 2026-12-05 a backend kept them
# until their memo slot was reused. Read from all of the backend's private memory, not only
# the locked mapping, with a positive control inside the transaction that derived them.
psql_db -q <<'SQL'
SELECT kms_create_key('hyg_named', 'local:hygiene', blind_index => 'exact');
SELECT kms_add_index('hyg_named', 'first3', 'prefix(3)');
CREATE TABLE tn (id int, v enc_text);
INSERT INTO tn SELECT g, kms_encrypt('NamedMarker' || g, 'hyg_named') FROM generate_series(1, 20) g;
SQL
wrapped_nidx=$(psql_db -c "SELECT encode(index_key_wrapped, 'hex') FROM pgcrypt_kms.keys WHERE key_name = 'hyg_named'")
/usr/bin/python3 - "$keyfile" "$wrapped_nidx" "$PGBIN" "$PGHOST" "$PGPORT" <<'PY'
import sys, time
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from key_hygiene_lib import Checks, Session, hmac_states, local_unwrap, private_bytes
keyfile, wrapped_idx_hex, pgbin, host, port = sys.argv[1:]
ikey = local_unwrap(keyfile, wrapped_idx_hex)
# src/enc_typed.c named_mac_of: HKDF-SHA-256(index key, salt, info = name NUL transform)
nkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms named index v1",
            info=b"first3\0prefix(3)").derive(ikey)
inner, outer = hmac_states(nkey)
probe = "SELECT count(*) FROM tn WHERE kms_blind_tag(v, 'first3') = kms_blind_tag('Nam', 'hyg_named', 'first3')"
def held(mem):
    return inner in mem or outer in mem
check = Checks()
s = Session(pgbin, host, port)
pid = s.pid()
s.q('BEGIN')
n = s.q(probe)
check(n == ['20'] and held(private_bytes(pid)), "positive control: inside the probe's transaction the backend holds the named index's HMAC states")
s.q('SELECT kms_flush_cache()')
check(not held(private_bytes(pid)), 'kms_flush_cache() wipes them')
s.q('COMMIT')
s.q('BEGIN')
n = s.q(probe)
check(n == ['20'] and held(private_bytes(pid)), 'derived again by the next probe')
time.sleep(1.2)
s.q('COMMIT')
check(not held(private_bytes(pid)), 'the sweep at the next commit (a second later) wipes them')
s.close()
sys.exit(check.bad)
PY
check $? "keys derived from an index key are wiped by kms_flush_cache() and at commit"

# 3c. the same through AWS KMS (the emulator): the data key arrives base64 in a JSON
# response (GenerateDataKey when the key is created, Decrypt in a new session), through
# libcurl's buffers and jansson's strings; neither backend's core holds it in any form.
# (The raw DEK fails this on a tree whose GCM contexts are dumpable. The base64 and hex
# forms guard against a long-lived copy; with the response wipes of http.c and kms_json.c
# disabled they still passed, since later requests reuse those freed buffers.)
if [ -n "${PGCK_EMULATOR_PORT:-}" ]; then
    /usr/bin/python3 - "$PGBIN" "$PGHOST" "$PGPORT" "$PGCK_TMP" "http://127.0.0.1:$PGCK_EMULATOR_PORT" <<'PY'
import sys
from key_hygiene_lib import Checks, aws_core_checks
check = Checks()
aws_core_checks(check, *sys.argv[1:5], sys.argv[5], None, 'hyg_aws', 'http')
sys.exit(check.bad)
PY
    check $? "cores of backends that unwrapped through AWS KMS hold no key in any form"
else
    check 1 "the KMS emulator is running (PGCK_EMULATOR_PORT) for the AWS core-dump check"
fi

# 3d. the same over TLS (a private emulator with a test CA), as with AWS itself: the
# responses' plaintext also passes through OpenSSL's record buffers, which libcurl frees
# without SSL_OP_CLEANSE_PLAINTEXT; in this sequence they were reused before the cores were
# taken, so as in 3c only the raw DEK is known to fail here on an unprotected tree
TLS_DIR="$PGCK_TMP/hygiene_tls"
mkdir -p "$TLS_DIR" && chmod 755 "$TLS_DIR"
O=/usr/bin/openssl
$O req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pgcrypt_kms hygiene CA" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1
$O req -newkey rsa:2048 -nodes -subj "/CN=server" -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/server.ext"
$O x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial -days 2 \
    -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.pem" >/dev/null 2>&1
chmod 644 "$TLS_DIR/ca.pem"
/usr/bin/python3 "$(dirname "$0")/../kms_emulator/emulator.py" --port 0 --port-file "$TLS_DIR/port" --tls-cert "$TLS_DIR/server.pem" \
    --tls-key "$TLS_DIR/server.key" --log "$TLS_DIR/emulator.log" >"$TLS_DIR/emulator.out" 2>&1 &
TLS_EMU=$!
for i in $(seq 1 100); do [ -s "$TLS_DIR/port" ] && break; sleep 0.05; done
TLS_PORT=$(cat "$TLS_DIR/port" 2>/dev/null)
if [ -n "$TLS_PORT" ]; then
    psql_db -q -c "ALTER DATABASE pgck_hygiene SET pgcrypt_kms.aws_endpoint = 'https://127.0.0.1:$TLS_PORT'" \
        -c "ALTER DATABASE pgck_hygiene SET pgcrypt_kms.ca_file = '$TLS_DIR/ca.pem'"
    /usr/bin/python3 - "$PGBIN" "$PGHOST" "$PGPORT" "$PGCK_TMP" "https://127.0.0.1:$TLS_PORT" "$TLS_DIR/ca.pem" <<'PY'
import sys
from key_hygiene_lib import Checks, aws_core_checks
check = Checks()
aws_core_checks(check, *sys.argv[1:5], sys.argv[5], sys.argv[6], 'hyg_tls', 'https')
sys.exit(check.bad)
PY
    check $? "the same over TLS"
    psql_db -q -c "ALTER DATABASE pgck_hygiene RESET pgcrypt_kms.aws_endpoint" -c "ALTER DATABASE pgck_hygiene RESET pgcrypt_kms.ca_file"
else
    check 1 "a TLS emulator started ($(tail -3 "$TLS_DIR/emulator.out"))"
fi
kill "$TLS_EMU" 2>/dev/null; wait "$TLS_EMU" 2>/dev/null

# 4. failed decryptions: one LOG line per statement, naming key/version/role/SQLSTATE
psql_db -q -c "UPDATE t SET v = ('pgck:' || replace(encode(set_byte(decode(substr(v::text, 6), 'base64'), 30, get_byte(decode(substr(v::text, 6), 'base64'), 30) # 1), 'base64'), E'\n', ''))::enc_text WHERE id <= 50"
before=$(grep -c 'pgcrypt_kms: decryption failed under key "hyg"' "$PGCK_TMP/server.log")
for i in 1 2 3; do
    psql_db -c "SELECT count(*) FROM t WHERE kms_decrypt(v) IS NOT NULL" >/dev/null 2>&1
done
sleep 0.5
after=$(grep -c 'pgcrypt_kms: decryption failed under key "hyg"' "$PGCK_TMP/server.log")
[ $((after - before)) -eq 3 ]
check $? "three failing statements over 50 bad values each log exactly three lines (got $((after - before)))"
grep 'pgcrypt_kms: decryption failed under key "hyg"' "$PGCK_TMP/server.log" | tail -1 | grep -q 'version 1 for role "postgres" (SQLSTATE 22K01)'
check $? "the line names key, version, role and SQLSTATE"
n=$(psql_db -c "SELECT decrypt_failures FROM kms_cache_stats()")
echo "# decrypt_failures counted in a fresh session: $n"

# 5. plaintext sent to enc_text by mistake (a COPY of a plaintext file, a
# literal) is refused with 22P02; the client still sees where
# (CONTEXT), but the server log holds neither the COPY context quoting the
# field nor the statement holding the literal (found by the audit of the SQL
# surface)
psql_db -q -c "CREATE TABLE ct (id int, v enc_text)"
before=$(grep -c 'invalid input syntax for type enc_text' "$PGCK_TMP/server.log")
out=$(printf '1\tCopyMarker@example.com\n' | runuser -u postgres -- "$PGBIN/psql" -X -At -v VERBOSITY=verbose \
        -h "$PGHOST" -p "$PGPORT" -d pgck_hygiene -c "COPY ct FROM STDIN" 2>&1)
echo "$out" | grep -q "ERROR:  22P02: invalid input syntax for type enc_text" &&
    echo "$out" | grep -q 'CONTEXT:  COPY ct, line 1, column v: "CopyMarker@example.com"'
check $? "COPY of a plaintext into enc_text: 22P02, the client sees the line ($(echo "$out" | grep CONTEXT))"
out=$(psql_db -v VERBOSITY=verbose -c "INSERT INTO ct VALUES (2, 'LiteralMarker@example.com')" 2>&1)
echo "$out" | grep -q "ERROR:  22P02: invalid input syntax for type enc_text"
check $? "a plaintext literal: 22P02 ($(echo "$out" | head -1))"
after=$(grep -c 'invalid input syntax for type enc_text' "$PGCK_TMP/server.log")
[ $((after - before)) -ge 2 ]
check $? "positive control: the server log has the refusals ($((after - before)) lines)"
! grep -n 'CopyMarker\|LiteralMarker' "$PGCK_TMP/server.log"
check $? "the server log holds none of the refused plaintexts"

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE pgck_hygiene"
exit $fail
