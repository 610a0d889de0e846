#!/usr/bin/env bash
# Key hygiene: the key cache's memory is locked and excluded from core dumps
# (smaps VmFlags lo + dd); the unwrapped DEK never appears in the server log,
# a dump, or pg_stat_statements; failed decryptions are logged once per
# statement with key, version, role and SQLSTATE, never the value.
# Runs (as root) against the cluster test/run.sh started: PGHOST, PGPORT,
# PGBIN, PGCK_TMP, PGCK_PGDATA.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
psql_db() { runuser -u postgres -- "$PGBIN/psql" -X -At -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d pgck_hygiene "$@"; }

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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
keyfile, wrapped_hex, *files = sys.argv[1:]
master = open(keyfile, 'rb').read()
w = bytes.fromhex(wrapped_hex)
kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms local provider v1", info=b"hygiene").derive(master)
dek = AESGCM(kek).decrypt(w[3:15], w[15:], w[:3] + b"hygiene\0{}")
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
import re, subprocess, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
keyfile, wrapped_hex, pgbin, host, port = sys.argv[1:]
master = open(keyfile, 'rb').read()
w = bytes.fromhex(wrapped_hex)
kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms local provider v1", info=b"hygiene").derive(master)
dek = AESGCM(kek).decrypt(w[3:15], w[15:], w[:3] + b"hygiene\0{}")
p = subprocess.Popen(['runuser', '-u', 'postgres', '--', pgbin + '/psql', '-X', '-At', '-h', host, '-p', port,
                      '-d', 'pgck_hygiene'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
def q(sql):
    p.stdin.write(sql + ';\n\\echo __END__\n'); p.stdin.flush()
    out = []
    for line in p.stdout:
        line = line.rstrip('\n')
        if line == '__END__':
            return out
        out.append(line)
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
pid = int(q('SELECT pg_backend_pid()')[0])
q('SELECT count(kms_decrypt(v)) FROM t')
before = locked_bytes(pid)
q('SELECT kms_flush_cache()')
after = locked_bytes(pid)
p.stdin.close(); p.wait()
ok1 = dek in before
ok2 = len(after) > 0 and dek not in after
print(('ok' if ok1 else 'not ok') + ' - while cached, the DEK is in the locked, non-dumpable mapping')
print(('ok' if ok2 else 'not ok') + ' - after kms_flush_cache() the mapping no longer holds it (wiped)')
sys.exit(0 if ok1 and ok2 else 1)
PY
check $? "key memory holds the DEK only while cached and is wiped on flush"

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

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE pgck_hygiene"
exit $fail
