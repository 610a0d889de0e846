#!/usr/bin/python3
"""Fidelity of the Vault emulator, checked with python3-hvac (Debian's Vault
client), unmodified: hvac shapes the requests and parses the responses; the
emulator must answer as Vault does.  Also checks that the ciphertexts are
real: an exported key decrypts them with AES-256-GCM / ChaCha20-Poly1305 and
HKDF-SHA-256 derivation done here, independently of the emulator.

    /usr/bin/python3 hvac_check.py PORT
Prints TAP lines; exit status 0 when all pass.
"""
import base64
import json
import sys
import urllib.request

import hvac
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PORT = sys.argv[1]
URL = "http://127.0.0.1:%s" % PORT
n = 0
failed = 0


def ok(cond, what):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, what))


def ctl(path, body):
    req = urllib.request.Request("%s/_emu/%s" % (URL, path), data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def raises(exc, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except exc as e:
        return str(e) or True
    except Exception as e:  # the wrong exception type is a failure
        return False if not isinstance(e, exc) else True
    return False


def b64(b):
    return base64.b64encode(b).decode()


def real_decrypt(key_type, key, ct, context=None):
    raw = base64.b64decode(ct.split(":", 2)[2])
    if context is not None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(key)
    c = AESGCM(key) if key_type == "aes256-gcm96" else ChaCha20Poly1305(key)
    return c.decrypt(raw[:12], raw[12:], None)


root = hvac.Client(url=URL, token="root")
tr = root.secrets.transit
ok(root.is_authenticated(), "hvac: the root token is authenticated (lookup-self)")

tr.create_key(name="app", exportable=True)
tr.create_key(name="derived", derived=True, exportable=True)
tr.create_key(name="cc", key_type="chacha20-poly1305", exportable=True)
info = tr.read_key(name="app")["data"]
ok(info["type"] == "aes256-gcm96" and info["latest_version"] == 1 and info["supports_encryption"],
   "read_key: type aes256-gcm96, latest_version 1, supports_encryption")

dk = tr.generate_data_key(name="app", key_type="plaintext", bits=256)["data"]
pt = base64.b64decode(dk["plaintext"])
ok(len(pt) == 32 and dk["ciphertext"].startswith("vault:v1:") and dk["key_version"] == 1,
   "generate_data_key plaintext 256 bits: 32-byte key, vault:v1: ciphertext")
wrapped = tr.generate_data_key(name="app", key_type="wrapped")["data"]
ok("plaintext" not in wrapped and wrapped["ciphertext"].startswith("vault:v1:"),
   "generate_data_key wrapped: no plaintext")
ok(base64.b64decode(tr.decrypt_data(name="app", ciphertext=dk["ciphertext"])["data"]["plaintext"]) == pt,
   "decrypt_data returns the data key")
exported = root.secrets.transit.export_key(name="app", key_type="encryption-key")["data"]["keys"]
ok(real_decrypt("aes256-gcm96", base64.b64decode(exported["1"]), dk["ciphertext"]) == pt,
   "the ciphertext is real AES-256-GCM: the exported key decrypts it here")

enc = tr.encrypt_data(name="cc", plaintext=b64(b"chacha"))["data"]["ciphertext"]
ccx = root.secrets.transit.export_key(name="cc", key_type="encryption-key")["data"]["keys"]
ok(real_decrypt("chacha20-poly1305", base64.b64decode(ccx["1"]), enc) == b"chacha",
   "chacha20-poly1305 key: real ChaCha20-Poly1305 ciphertext")

tr.rotate_key(name="app")
ok(tr.read_key(name="app")["data"]["latest_version"] == 2, "rotate_key: latest_version 2")
rw = tr.rewrap_data(name="app", ciphertext=dk["ciphertext"])["data"]
ok(rw["ciphertext"].startswith("vault:v2:") and
   base64.b64decode(tr.decrypt_data(name="app", ciphertext=rw["ciphertext"])["data"]["plaintext"]) == pt,
   "rewrap_data moves a v1 ciphertext to v2, same plaintext")
ok(base64.b64decode(tr.decrypt_data(name="app", ciphertext=dk["ciphertext"])["data"]["plaintext"]) == pt,
   "after rotation the v1 ciphertext still decrypts")
tr.update_key_configuration(name="app", min_decryption_version=2)
msg = raises(hvac.exceptions.InvalidRequest, tr.decrypt_data, name="app", ciphertext=dk["ciphertext"])
ok(msg and "disallowed by policy" in str(msg), "min_decryption_version 2: v1 refused (InvalidRequest, disallowed by policy)")

ctx = b64(b'{"tenant":"a"}')
d = tr.generate_data_key(name="derived", key_type="plaintext", context=ctx)["data"]
ok(base64.b64decode(tr.decrypt_data(name="derived", ciphertext=d["ciphertext"], context=ctx)["data"]["plaintext"])
   == base64.b64decode(d["plaintext"]), "derived key: decrypts with its context")
ok(raises(hvac.exceptions.InvalidRequest, tr.decrypt_data, name="derived", ciphertext=d["ciphertext"],
          context=b64(b'{"tenant":"b"}')), "derived key: another context is refused (InvalidRequest)")
msg = raises(hvac.exceptions.InvalidRequest, tr.generate_data_key, name="derived", key_type="plaintext")
ok(msg and "missing 'context'" in str(msg), "derived key: no context is refused (missing 'context')")
dx = root.secrets.transit.export_key(name="derived", key_type="encryption-key")["data"]["keys"]
ok(real_decrypt("aes256-gcm96", base64.b64decode(dx["1"]), d["ciphertext"], b'{"tenant":"a"}')
   == base64.b64decode(d["plaintext"]), "derived key: HKDF-SHA-256 with the context as info, verified here")
ok(raises(hvac.exceptions.InvalidRequest, tr.decrypt_data, name="nope", ciphertext=d["ciphertext"]),
   "decrypt under a missing key: InvalidRequest (encryption key not found)")
ok(raises(hvac.exceptions.InvalidPath, tr.read_key, name="nope"), "read_key of a missing key: 404 (InvalidPath)")

# auth methods
ctl("policy", {"name": "app", "paths": {"transit/datakey/plaintext/app": ["update"],
                                        "transit/decrypt/app": ["update"]}})
ctl("approle", {"role_id": "rid-1", "secret_id": "sid-1", "policies": ["app"], "ttl": 60})
c = hvac.Client(url=URL)
r = c.auth.approle.login(role_id="rid-1", secret_id="sid-1")
ok(r["auth"]["client_token"] and c.token == r["auth"]["client_token"] and r["auth"]["lease_duration"] == 60,
   "auth.approle.login: a token with lease_duration 60, adopted by the client")
ok(c.secrets.transit.generate_data_key(name="app", key_type="plaintext")["data"]["ciphertext"].startswith("vault:v2:"),
   "the AppRole token may use datakey on app (its policy)")
ok(raises(hvac.exceptions.Forbidden, c.secrets.transit.read_key, name="app"),
   "the AppRole token may not read the key (no policy): Forbidden")
ok(raises(hvac.exceptions.InvalidRequest, hvac.Client(url=URL).auth.approle.login, role_id="rid-1", secret_id="x"),
   "AppRole login with a wrong secret id: InvalidRequest")
rn = c.auth.token.renew_self()
ok(rn["auth"]["lease_duration"] == 60 and rn["auth"]["renewable"], "auth.token.renew_self renews the lease")
ok(c.auth.token.lookup_self()["data"]["ttl"] <= 60, "auth.token.lookup_self reports the ttl")

ctl("kubernetes", {"role": "pg", "jwt": "eyJhbGciOi.jwt.sig", "policies": ["app"], "ttl": 30})
k = hvac.Client(url=URL)
r = k.auth.kubernetes.login(role="pg", jwt="eyJhbGciOi.jwt.sig")
ok(r["auth"]["lease_duration"] == 30 and k.is_authenticated(), "auth.kubernetes.login: a token with lease 30")
ok(raises(hvac.exceptions.Forbidden, hvac.Client(url=URL).auth.kubernetes.login, role="pg", jwt="other"),
   "Kubernetes login with another JWT: Forbidden")

# namespaces
ctl("mount", {"path": "transit", "namespace": "team1"})
ns_root = hvac.Client(url=URL, token="root", namespace="team1")
ns_root.secrets.transit.create_key(name="nskey")
ok(ns_root.secrets.transit.read_key(name="nskey")["data"]["name"] == "nskey",
   "namespace team1 (X-Vault-Namespace): a key created there is read there")
ok(raises(hvac.exceptions.InvalidPath, root.secrets.transit.read_key, name="nskey"),
   "without the namespace header the key is not found")
ctl("approle", {"namespace": "team1", "role_id": "rid-ns", "secret_id": "sid-ns", "policies": [], "ttl": 60})
ok(raises(hvac.exceptions.InvalidRequest, hvac.Client(url=URL).auth.approle.login, role_id="rid-ns", secret_id="sid-ns"),
   "an AppRole of namespace team1 cannot log in without the header")
nsc = hvac.Client(url=URL, namespace="team1")
ok(nsc.auth.approle.login(role_id="rid-ns", secret_id="sid-ns")["auth"]["client_token"] != "",
   "with the header it logs in")

# faults
ctl("fault", {"path": "decrypt/app", "kind": "500", "count": 1})
ok(raises(hvac.exceptions.InternalServerError, tr.decrypt_data, name="app", ciphertext=rw["ciphertext"]),
   "fault 500: InternalServerError")
ok(base64.b64decode(tr.decrypt_data(name="app", ciphertext=rw["ciphertext"])["data"]["plaintext"]) == pt,
   "fault count 1: the next call succeeds")
ctl("revoke-all", {})
ok(raises(hvac.exceptions.Forbidden, c.secrets.transit.generate_data_key, name="app", key_type="plaintext"),
   "a revoked token: Forbidden")

print("1..%d" % n)
sys.exit(1 if failed else 0)
