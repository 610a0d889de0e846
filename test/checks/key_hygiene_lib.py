"""Helpers of test/checks/key_hygiene.sh (run with /usr/bin/python3, as root).

local_unwrap: a key the local provider wrapped, unwrapped here from its master key file (the
format of src/kms_local.c), so the check knows the bytes it must never find.
Session: one psql session as the postgres user, driven statement by statement.
gcore: the core of a live process as gdb writes it (gdb goes by MADV_DONTDUMP, as the kernel
does for a crash), read and deleted.
private_bytes: every readable private mapping of a live process, read through /proc.
sha256_midstate: SHA-256's state after one 64-byte block (FIPS 180-4) in the host-order words
OpenSSL's SHA256_CTX keeps: what an HMAC keyed by precomputed pad states holds.
"""
import glob
import os
import struct
import subprocess

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def local_unwrap(keyfile, wrapped_hex, name=b"hygiene", context=b"{}"):
    master = open(keyfile, 'rb').read()
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms local provider v1",
               info=name).derive(master)
    w = bytes.fromhex(wrapped_hex)
    return AESGCM(kek).decrypt(w[3:15], w[15:], w[:3] + name + b"\0" + context)


class Session:
    def __init__(self, pgbin, host, port, db='pgck_hygiene'):
        self.p = subprocess.Popen(['runuser', '-u', 'postgres', '--', pgbin + '/psql', '-X', '-At',
                                   '-h', host, '-p', port, '-d', db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def q(self, sql):
        """the statement's output lines"""
        self.p.stdin.write(sql + ';\n\\echo __END__\n')
        self.p.stdin.flush()
        out = []
        for line in self.p.stdout:
            line = line.rstrip('\n')
            if line == '__END__':
                return out
            out.append(line)
        return out

    def pid(self):
        return int(self.q('SELECT pg_backend_pid()')[0])

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def gcore(pid, prefix):
    """(core bytes, b'' if gcore failed; gcore's output)"""
    r = subprocess.run(['gcore', '-o', prefix, str(pid)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    cores = glob.glob(prefix + '.*')
    data = open(cores[0], 'rb').read() if r.returncode == 0 and cores else b''
    for c in cores:
        os.unlink(c)
    return data, r.stdout.strip()[-200:]


def private_bytes(pid):
    """every readable private mapping of a live process (heap, stack, anonymous and locked
    mappings; not shared memory), concatenated"""
    data = []
    with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/mem', 'rb') as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split('-'))
            if fields[1][0] != 'r' or fields[1][3] != 'p' or (len(fields) > 5 and fields[5] in ('[vvar]', '[vsyscall]')):
                continue
            try:
                mem.seek(start)
                data.append(mem.read(end - start))
            except OSError:
                pass
    return b''.join(data)


_K = [0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]
_IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]


def sha256_midstate(block):
    def ror(x, n):
        return ((x >> n) | (x << (32 - n))) & 0xffffffff
    w = list(struct.unpack('>16I', block))
    for i in range(16, 64):
        s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & 0xffffffff)
    a, b, c, d, e, f, g, h = _IV
    for i in range(64):
        t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & 0xffffffff
        t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & 0xffffffff
        a, b, c, d, e, f, g, h = (t1 + t2) & 0xffffffff, a, b, c, (d + t1) & 0xffffffff, e, f, g
    return struct.pack('<8I', *[(x + y) & 0xffffffff for x, y in zip(_IV, (a, b, c, d, e, f, g, h))])


def hmac_states(key):
    """the inner and outer states of an HMAC-SHA-256 keyed with key (at most 64 bytes)"""
    pad = key + bytes(64 - len(key))
    return (sha256_midstate(bytes(x ^ 0x36 for x in pad)), sha256_midstate(bytes(x ^ 0x5c for x in pad)))


class Checks:
    def __init__(self):
        self.bad = 0

    def __call__(self, ok, what):
        print(('ok' if ok else 'not ok') + ' - ' + what)
        self.bad |= not ok


def aws_core_checks(check, pgbin, host, port, tmp, endpoint, ca, name, how):
    """Key `name` through AWS KMS at endpoint (the emulator; ca: its CA file for https, or
    None): one session creates it (GenerateDataKey) and encrypts, a new one unwraps it
    (Decrypt); neither backend's core holds the data key or the index key, raw, base64 (as
    the JSON responses carry them) or hex."""
    import base64
    import botocore.session
    marker = ('gcore_probe_' + name).encode()
    a = Session(pgbin, host, port)
    a.q("SET application_name = '%s'" % marker.decode())
    a.q("SELECT kms_create_key('%s', 'aws-kms:alias/pgck-test', blind_index => 'exact')" % name)
    a.q("CREATE TABLE t_%s AS SELECT g AS id, kms_encrypt('HygieneAws' || g, '%s') AS v "
        "FROM generate_series(1, 50) g" % (name, name))
    core_a, _ = gcore(a.pid(), os.path.join(tmp, 'hygiene_core_create'))
    a.close()
    b = Session(pgbin, host, port)
    b.q("SET application_name = '%s'" % marker.decode())
    # the probe unwraps the index key, the projection the data key
    n = b.q("SELECT kms_decrypt(v) FROM t_%s WHERE kms_blind_index(v) = kms_blind_index('HygieneAws7', '%s')"
            % (name, name))
    wrapped = b.q("SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions WHERE key_name = '%s'" % name)
    wrapped_idx = b.q("SELECT encode(index_key_wrapped, 'hex') FROM pgcrypt_kms.keys WHERE key_name = '%s'" % name)
    core_b, _ = gcore(b.pid(), os.path.join(tmp, 'hygiene_core_decrypt'))
    b.close()
    kms = botocore.session.get_session().create_client(
        'kms', region_name='us-east-1', endpoint_url=endpoint, verify=ca if ca else None,
        aws_access_key_id=os.environ.get('AWS_ACCESS_KEY_ID', 'AKIDPGCKTEST000000001'),
        aws_secret_access_key=os.environ.get('AWS_SECRET_ACCESS_KEY', ''))
    keys = {}
    for label, h in (('the DEK', wrapped), ('the index key', wrapped_idx)):
        keys[label] = kms.decrypt(CiphertextBlob=bytes.fromhex(h[0]))['Plaintext'] if len(h) == 1 and h[0] else b''
    check(n == ['HygieneAws7'] and all(len(k) == 32 for k in keys.values()),
          f'{how}: two sessions used an aws-kms key; the emulator gave back its data key and index key')
    for core, who in ((core_a, 'creating (GenerateDataKey)'), (core_b, 'unwrapping (Decrypt)')):
        check(len(core) > 0 and marker in core, f'{how}: gcore of the {who} backend holds its heap ({len(core)} bytes)')
        for label, k in keys.items():
            for form, needle in (('raw', k), ('base64', base64.b64encode(k)), ('hex', k.hex().encode())):
                check(len(k) == 32 and needle not in core, f'{how}: {label} ({form}) is not in the core of the {who} backend')
