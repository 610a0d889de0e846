#!/usr/bin/env bash
# Key hygiene: the key cache's memory is locked and excluded from core dumps
# (smaps VmFlags lo + dd), and so are OpenSSL's keyed contexts: a gcore of a
# backend holding keys holds none; the unwrapped DEK never appears in the server log,
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

# 3b. a core dump of a backend holding keys (gdb's gcore, which goes by the kernel's
# MADV_DONTDUMP flags as a crash's core does) holds no key: not the DEK (the AES-256
# key schedule of a keyed GCM context begins with it), not the index key, not the
# HMAC's keyed SHA-256 states; a marker the backend does hold proves the heap is there
wrapped_idx=$(psql_db -c "SELECT encode(index_key_wrapped, 'hex') FROM pgcrypt_kms.keys WHERE key_name = 'hyg'")
/usr/bin/python3 - "$keyfile" "$wrapped" "$wrapped_idx" "$PGBIN" "$PGHOST" "$PGPORT" "$PGCK_TMP" <<'PY'
import glob, os, struct, subprocess, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
keyfile, wrapped_hex, wrapped_idx_hex, pgbin, host, port, tmp = sys.argv[1:]
master = open(keyfile, 'rb').read()
kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms local provider v1", info=b"hygiene").derive(master)
def unwrap(h):
    w = bytes.fromhex(h)
    return AESGCM(kek).decrypt(w[3:15], w[15:], w[:3] + b"hygiene\0{}")
dek, ikey = unwrap(wrapped_hex), unwrap(wrapped_idx_hex)
K = [0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
     0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
     0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
     0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
     0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
     0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
     0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
     0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]
IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
def midstate(block):
    """SHA-256 state after one 64-byte block (FIPS 180-4), as SHA256_CTX keeps it (host order)"""
    ror = lambda x, n: ((x >> n) | (x << (32 - n))) & 0xffffffff
    w = list(struct.unpack('>16I', block))
    for i in range(16, 64):
        s0 = ror(w[i-15], 7) ^ ror(w[i-15], 18) ^ (w[i-15] >> 3)
        s1 = ror(w[i-2], 17) ^ ror(w[i-2], 19) ^ (w[i-2] >> 10)
        w.append((w[i-16] + s0 + w[i-7] + s1) & 0xffffffff)
    a, b, c, d, e, f, g, h = IV
    for i in range(64):
        t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) & 0xffffffff
        t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & 0xffffffff
        a, b, c, d, e, f, g, h = (t1 + t2) & 0xffffffff, a, b, c, (d + t1) & 0xffffffff, e, f, g
    return struct.pack('<8I', *[(x + y) & 0xffffffff for x, y in zip(IV, (a, b, c, d, e, f, g, h))])
pad = ikey + bytes(32)
needles = {'the DEK': dek, 'the index key': ikey,
           "the HMAC's inner state": midstate(bytes(x ^ 0x36 for x in pad)),
           "the HMAC's outer state": midstate(bytes(x ^ 0x5c for x in pad))}
marker = b'gcore_probe_5173'
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
pid = int(q('SELECT pg_backend_pid()')[0])
q("SET application_name = '%s'" % marker.decode())
n = q("SELECT count(kms_decrypt(v)) FROM t WHERE id > 50")
tag = q("SELECT count(*) FROM t WHERE kms_blind_index(v) = kms_blind_index('HygieneMarker77', 'hyg')")
prefix = os.path.join(tmp, 'hygiene_core')
r = subprocess.run(['gcore', '-o', prefix, str(pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
cores = glob.glob(prefix + '.*')
data = open(cores[0], 'rb').read() if r.returncode == 0 and cores else b''
p.stdin.close(); p.wait()
for c in cores:
    os.unlink(c)
bad = 0
def check(ok, what):
    global bad
    print(('ok' if ok else 'not ok') + ' - ' + what)
    bad |= not ok
check(len(data) > 0 and n == ['150'] and tag == ['1'],
      f'gcore of a backend that decrypted 150 values and probed the blind index ({len(data)} bytes; {r.stdout.strip()[-200:] if r.returncode else "ok"})')
check(marker in data, 'the core holds the heap (a setting the backend holds is in it)')
for name, needle in needles.items():
    check(len(data) > 0 and needle not in data, f'{name} is not in the core')
sys.exit(bad)
PY
check $? "a core dump of a backend holding keys holds no key material"

# 3c. the same through AWS KMS (the emulator): the data key arrives base64 in a JSON
# response (GenerateDataKey when the key is created, Decrypt in a new session), through
# libcurl's buffers and jansson's strings; neither backend's core holds it in any form.
# (The raw DEK fails this on a tree whose GCM contexts are dumpable. The base64 and hex
# forms guard against a long-lived copy; with the response wipes of http.c and kms_json.c
# disabled they still passed, since later requests reuse those freed buffers.)
if [ -n "${PGCK_EMULATOR_PORT:-}" ]; then
/usr/bin/python3 - "$PGBIN" "$PGHOST" "$PGPORT" "$PGCK_TMP" "$PGCK_EMULATOR_PORT" <<'PY'
import base64, glob, os, subprocess, sys
import botocore.session
pgbin, host, port, tmp, emu = sys.argv[1:]
marker = b'gcore_probe_aws_6607'
def session():
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
    return p, q
def core_of(q, name):
    pid = q('SELECT pg_backend_pid()')[0]
    prefix = os.path.join(tmp, 'hygiene_core_' + name)
    r = subprocess.run(['gcore', '-o', prefix, pid], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cores = glob.glob(prefix + '.*')
    data = open(cores[0], 'rb').read() if r.returncode == 0 and cores else b''
    for c in cores:
        os.unlink(c)
    return data
bad = 0
def check(ok, what):
    global bad
    print(('ok' if ok else 'not ok') + ' - ' + what)
    bad |= not ok
# A: creates the key (GenerateDataKey) and encrypts
pa, qa = session()
qa("SET application_name = '%s'" % marker.decode())
qa("SELECT kms_create_key('hyg_aws', 'aws-kms:alias/pgck-test', blind_index => 'exact')")
qa("CREATE TABLE t_aws AS SELECT g AS id, kms_encrypt('HygieneAws' || g, 'hyg_aws') AS v FROM generate_series(1, 50) g")
core_a = core_of(qa, 'aws_create')
pa.stdin.close(); pa.wait()
# B: a new session unwraps through Decrypt
pb, qb = session()
qb("SET application_name = '%s'" % marker.decode())
n = qb("SELECT count(kms_decrypt(v)) FROM t_aws WHERE kms_blind_index(v) IS NOT NULL")
wrapped = qb("SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions WHERE key_name = 'hyg_aws'")
wrapped_idx = qb("SELECT encode(index_key_wrapped, 'hex') FROM pgcrypt_kms.keys WHERE key_name = 'hyg_aws'")
core_b = core_of(qb, 'aws_decrypt')
pb.stdin.close(); pb.wait()
kms = botocore.session.get_session().create_client(
    'kms', region_name='us-east-1', endpoint_url='http://127.0.0.1:' + emu,
    aws_access_key_id=os.environ.get('AWS_ACCESS_KEY_ID', 'AKIDPGCKTEST000000001'),
    aws_secret_access_key=os.environ.get('AWS_SECRET_ACCESS_KEY', ''))
keys = {}
for label, h in (('the DEK', wrapped), ('the index key', wrapped_idx)):
    keys[label] = kms.decrypt(CiphertextBlob=bytes.fromhex(h[0]))['Plaintext'] if len(h) == 1 and h[0] else b''
check(n == ['50'] and all(len(k) == 32 for k in keys.values()),
      'two sessions used an aws-kms key; the emulator gave back its data key and index key')
for core, who in ((core_a, 'creating (GenerateDataKey)'), (core_b, 'unwrapping (Decrypt)')):
    check(len(core) > 0 and marker in core, f'gcore of the {who} backend holds its heap ({len(core)} bytes)')
    for label, k in keys.items():
        for form, needle in (('raw', k), ('base64', base64.b64encode(k)), ('hex', k.hex().encode())):
            check(len(k) == 32 and needle not in core, f'{label} ({form}) is not in the core of the {who} backend')
sys.exit(bad)
PY
check $? "cores of backends that unwrapped through AWS KMS hold no key in any form"
else
check 1 "the KMS emulator is running (PGCK_EMULATOR_PORT) for the AWS core-dump check"
fi

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
