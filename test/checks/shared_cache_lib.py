#!/usr/bin/python3
"""Helpers of the shared key cache checks (shared_cache.py, shared_cache_claims.py),
which test/checks/shared_cache.sh runs as root against the cluster it starts
(PGHOST, PGPORT, PGCK_PGDATA, EMU_PORT, PGCK_LOCAL_KEY; database pgck_shared).
check() prints a TAP-ish "ok - ..." / "not ok - ..." line; status() is the exit
status: 1 if any check failed."""
import json, os, re, subprocess
import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes

HOST, PORT = os.environ['PGHOST'], os.environ['PGPORT']
EMU = os.environ['EMU_PORT']
failed = 0


def check(ok, what):
    global failed
    print(('ok' if ok else 'not ok') + ' - ' + what, flush=True)
    if not ok:
        failed = 1


def connect(db='pgck_shared', autocommit=True):
    return psycopg.connect(host=HOST, port=PORT, dbname=db, user='postgres', autocommit=autocommit)


def one(conn, sql, args=None):
    return conn.execute(sql, args).fetchone()[0]


def sqlstate_of(conn, sql):
    try:
        conn.execute(sql).fetchall()
        return None
    except psycopg.Error as e:
        return e.sqlstate


def emuctl(*args):
    out = subprocess.run(['/usr/bin/python3', 'test/kms_emulator/emuctl.py', EMU] + list(args),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip().startswith('{') else out


def postmaster_pid():
    return int(open(os.path.join(os.environ['PGCK_PGDATA'], 'postmaster.pid')).readline())


def mappings(pid):
    """(start, end, flags) of every mapping of pid."""
    out, cur = [], None
    for line in open(f'/proc/{pid}/smaps'):
        m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) ', line)
        if m:
            cur = (int(m.group(1), 16), int(m.group(2), 16))
        elif line.startswith('VmFlags:'):
            out.append((cur[0], cur[1], set(line.split()[1:])))
    return out


def region_of_postmaster():
    """The shared key cache: the postmaster's shared, locked, non-dumpable mapping."""
    return [(s, e) for s, e, f in mappings(postmaster_pid()) if {'sh', 'lo', 'dd'} <= f]


def region_bytes():
    data = b''
    with open(f'/proc/{postmaster_pid()}/mem', 'rb') as mem:
        for s, e in region_of_postmaster():
            mem.seek(s)
            data += mem.read(e - s)
    return data


def main_segment_bytes():
    """The postmaster's other shared mappings: the main shared memory segment."""
    data = []
    with open(f'/proc/{postmaster_pid()}/mem', 'rb') as mem:
        for s, e, f in mappings(postmaster_pid()):
            if 'sh' in f and not {'lo', 'dd'} <= f:
                try:
                    mem.seek(s)
                    data.append(mem.read(e - s))
                except OSError:
                    pass
    return b''.join(data)


MAT_WRAPPED_OFF = 256 + 1024        # ShMaterial: kms_key[256], context[1024], then wrapped


def material_copies(wrapped, kms_key):
    """How many ShMaterial slots of the main segment hold this wrapped key of this KMS key
    (a heap page in shared_buffers may hold the bytes too: not counted)."""
    data, n, i = main_segment_bytes(), 0, -1
    while True:
        i = data.find(wrapped, i + 1)
        if i < 0:
            return n
        k = i - MAT_WRAPPED_OFF
        n += k >= 0 and data[k:k + len(kms_key) + 1] == kms_key.encode() + b'\0'


def local_dek(conn, key, version=None):
    """Unwrap a version of a local:sc key here, from the local provider's file."""
    w = bytes.fromhex(one(conn, "SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions"
                                " WHERE key_name = %s ORDER BY (version = %s) DESC, version DESC LIMIT 1",
                          (key, version or 0)))
    master = open(os.environ['PGCK_LOCAL_KEY'], 'rb').read()   # made by the first local: key
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms local provider v1",
               info=b"sc").derive(master)
    return AESGCM(kek).decrypt(w[3:15], w[15:], w[:3] + b"sc\0{}")


def make_key(conn, name, kms='local:sc', rows=5):
    conn.execute("SELECT kms_create_key(%s, %s)", (name, kms))
    conn.execute(f"CREATE TABLE t_{name} AS SELECT g AS id, kms_encrypt('v' || g, %s) AS v"
                 " FROM generate_series(1, %s) g", (name, rows))


def decrypt_all(conn, name):
    return one(conn, f"SELECT count(*) FROM t_{name} WHERE kms_decrypt(v) = 'v' || id")


def status():
    return failed
