#!/usr/bin/python3
"""A HashiCorp Vault / OpenBao emulator for pgcrypt_kms's tests: the Transit
secrets engine and the token, AppRole and Kubernetes auth methods, over plain
HTTP on loopback.  Standard library plus python3-cryptography (real
AES-256-GCM and ChaCha20-Poly1305, so the ciphertexts are real).

Its fidelity is checked by hvac_check.py with python3-hvac (Debian's Vault
client), unmodified: request shapes and response parsing must agree.

What it emulates (paths under /v1/, relative to a namespace):
  <mount>/keys/<name>            POST create (type, derived, exportable), GET read
  <mount>/keys/<name>/rotate     POST
  <mount>/keys/<name>/config     POST (min_decryption_version, min_encryption_version, ...)
  <mount>/datakey/<plaintext|wrapped>/<name>   POST (bits, context)
  <mount>/encrypt/<name>, decrypt/<name>, rewrap/<name>   POST (context, key_version)
  <mount>/export/encryption-key/<name>[/<version>]        GET (exportable keys)
  auth/token/lookup-self (GET), auth/token/renew-self (POST)
  auth/<approle mount>/login {role_id, secret_id}
  auth/<kubernetes mount>/login {role, jwt}
Key versions ("vault:v<N>:" + base64(nonce || ciphertext || tag)), derived
keys (HKDF-SHA-256 of the version key with the context as info, as Vault's
hkdf_sha256 kdf), min_decryption_version, namespaces (X-Vault-Namespace:
every object lives in one namespace), ACL policies (path globs with '*'
suffix and '+' segments; capabilities create/read/update/delete/list),
token TTLs, max TTLs and renewal.  Errors are {"errors": [...]} with Vault's
status codes and strings.

Control API (no auth; loopback only), JSON bodies:
  POST /_emu/policy      {name, namespace, paths: {glob: [caps]}}
  POST /_emu/token       {token, namespace, policies, ttl, max_ttl, renewable}
  POST /_emu/approle     {mount, namespace, role_id, secret_id, policies, ttl, max_ttl, renewable}
  POST /_emu/kubernetes  {mount, namespace, role, jwt, policies, ttl, max_ttl, renewable}
  POST /_emu/mount       {path, namespace}          a Transit mount
  POST /_emu/revoke-all  {}                         every token a login issued
  POST /_emu/fault       {path, kind, count, delay} path: a regex on "<namespace>|<path>";
                         kind: 500, 503, 429, 403, slow (delay s, then answer); count -1 = always
  POST /_emu/clear-faults, POST /_emu/reset-stats, GET /_emu/stats
Stats: {"calls": {"<what>": n}, "namespaces": {"<ns>": n}, "faults": {kind: n}}, where what
is datakey, decrypt, encrypt, rewrap, keys-read, keys-write, login-approle,
login-kubernetes, lookup-self, renew-self, denied.
"""
import argparse
import base64
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LOCK = threading.RLock()
STATE = {}
ROOT_TOKEN = None
LOG = None

DERIVE_ERR = ("missing 'context' for key derivation; the key was created using a derived key, "
              "which means additional, per-request information must be included in order to "
              "perform operations with the key")
INVALID_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"


def log(msg):
    if LOG:
        LOG.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
        LOG.flush()


def reset_state():
    STATE.clear()
    STATE.update(policies={}, tokens={}, approles={}, kubernetes={}, mounts={("", "transit")},
                 keys={}, faults=[], stats={"calls": {}, "namespaces": {}, "faults": {}})
    STATE["tokens"][ROOT_TOKEN] = {"namespace": "", "policies": ["root"], "ttl": 0, "max_ttl": 0,
                                   "renewable": False, "issued": time.time(),
                                   "expires": None, "root": True}


def count(what, ns=None):
    c = STATE["stats"]["calls"]
    c[what] = c.get(what, 0) + 1
    if ns is not None:
        n = STATE["stats"]["namespaces"]
        n[ns] = n.get(ns, 0) + 1


class VaultError(Exception):
    def __init__(self, status, errors):
        super().__init__(status)
        self.status = status
        self.errors = errors


def denied():
    count("denied")
    return VaultError(403, ["1 error occurred:\n\t* permission denied\n\n"])


# ------------------------------------------------------------------ crypto

def cipher_for(key_type, key):
    return AESGCM(key) if key_type == "aes256-gcm96" else ChaCha20Poly1305(key)


def version_key(k, version, context):
    raw = k["versions"][version]
    if not k["derived"]:
        return raw
    if not context:
        raise VaultError(400, [DERIVE_ERR])
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(raw)


def encrypt(k, plaintext, context, version=None):
    v = version or k["latest"]
    if v < k["min_encryption_version"] or v > k["latest"]:
        raise VaultError(400, ["requested version for encryption is not valid"])
    nonce = os.urandom(12)
    ct = cipher_for(k["type"], version_key(k, v, context)).encrypt(nonce, plaintext, None)
    return "vault:v%d:%s" % (v, base64.b64encode(nonce + ct).decode()), v


def decrypt(k, ciphertext, context):
    m = re.fullmatch(r"vault:v(\d+):([A-Za-z0-9+/=]+)", ciphertext or "")
    if not m:
        raise VaultError(400, ["invalid ciphertext: no prefix"])
    v = int(m.group(1))
    if v < k["min_decryption_version"]:
        raise VaultError(400, ["ciphertext or signature version is disallowed by policy (too old)"])
    if v not in k["versions"]:
        raise VaultError(400, ["invalid key version"])
    try:
        raw = base64.b64decode(m.group(2), validate=True)
    except Exception:
        raise VaultError(400, ["invalid ciphertext: could not decode base64"])
    try:
        return cipher_for(k["type"], version_key(k, v, context)).decrypt(raw[:12], raw[12:], None)
    except VaultError:
        raise
    except Exception:
        raise VaultError(400, ["cipher: message authentication failed"])


# ------------------------------------------------------------------ ACL

def glob_match(pattern, path):
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        if "+" not in prefix:
            return path.startswith(prefix)
        parts = prefix.split("/")
        got = path.split("/")
        if len(got) < len(parts):
            return False
        for i, p in enumerate(parts):
            if i == len(parts) - 1:
                return got[i].startswith(p) or (p == "" and True)
            if p != "+" and p != got[i]:
                return False
        return True
    parts = pattern.split("/")
    got = path.split("/")
    return len(parts) == len(got) and all(p == "+" or p == g for p, g in zip(parts, got))


def allowed(tok, ns, path, cap):
    if tok.get("root"):
        return True
    # the default policy: a token may look itself up and renew itself
    if path in ("auth/token/lookup-self", "auth/token/renew-self"):
        return True
    for name in tok["policies"]:
        pol = STATE["policies"].get((tok["namespace"], name))
        if not pol:
            continue
        for pat, caps in pol.items():
            if glob_match(pat, path) and cap in caps and "deny" not in caps:
                return True
    return False


def resolve_token(headers, ns):
    t = headers.get("X-Vault-Token")
    if not t:
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            t = auth[7:]
    if not t:
        raise denied()
    tok = STATE["tokens"].get(t)
    if tok is None or (tok["expires"] is not None and time.time() >= tok["expires"]):
        count("invalid-token")
        raise VaultError(403, [INVALID_TOKEN])
    # a token of a namespace works there (the root token everywhere)
    if not tok.get("root") and tok["namespace"] != ns:
        raise denied()
    return t, tok


def issue_token(ns, spec, meta):
    t = "hvs." + secrets.token_urlsafe(24)
    now = time.time()
    ttl = int(spec.get("ttl", 0))
    STATE["tokens"][t] = {"namespace": ns, "policies": list(spec.get("policies", [])), "ttl": ttl,
                          "max_ttl": int(spec.get("max_ttl", 0)),
                          "renewable": bool(spec.get("renewable", True)) and ttl > 0,
                          "issued": now, "expires": now + ttl if ttl else None, "login": True}
    tok = STATE["tokens"][t]
    return {"client_token": t, "accessor": secrets.token_urlsafe(12), "policies":
            ["default"] + tok["policies"], "token_policies": ["default"] + tok["policies"],
            "metadata": meta, "lease_duration": ttl, "renewable": tok["renewable"],
            "entity_id": "", "token_type": "service", "orphan": True}


def envelope(data=None, auth=None):
    return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
            "lease_duration": 0, "data": data, "wrap_info": None, "warnings": None,
            "auth": auth}


def key_info(name, k):
    return {"name": name, "type": k["type"], "derived": k["derived"],
            "kdf": "hkdf_sha256" if k["derived"] else None,
            "exportable": k["exportable"], "deletion_allowed": False,
            "allow_plaintext_backup": False, "convergent_encryption": False,
            "latest_version": k["latest"], "min_available_version": 0,
            "min_decryption_version": k["min_decryption_version"],
            "min_encryption_version": k["min_encryption_version"],
            "supports_encryption": True, "supports_decryption": True,
            "supports_derivation": True, "supports_signing": False,
            "keys": {str(v): int(k["created"][v]) for v in k["versions"]}}


def b64arg(body, name):
    v = body.get(name)
    if v in (None, ""):
        return b""
    try:
        return base64.b64decode(v, validate=True)
    except Exception:
        raise VaultError(400, ["failed to base64-decode %s" % name])


# ------------------------------------------------------------------ routes

def handle_vault(method, ns, path, body, headers):
    # logins: no token
    m = re.fullmatch(r"auth/(.+)/login", path)
    if m and method in ("POST", "PUT"):
        mount = m.group(1)
        if (ns, mount) in STATE["approles"]:
            count("login-approle", ns)
            for spec in STATE["approles"][(ns, mount)].values():
                if body.get("role_id") == spec["role_id"] and body.get("secret_id") == spec["secret_id"]:
                    return 200, envelope(auth=issue_token(ns, spec, {"role_name": spec.get("role", "r")}))
            if not body.get("role_id"):
                raise VaultError(400, ["missing role_id"])
            raise VaultError(400, ["invalid role or secret ID"])
        if (ns, mount) in STATE["kubernetes"]:
            count("login-kubernetes", ns)
            spec = STATE["kubernetes"][(ns, mount)].get(body.get("role"))
            if spec is None:
                raise VaultError(400, ['invalid role name "%s"' % body.get("role")])
            if body.get("jwt") != spec["jwt"]:
                raise VaultError(403, ["permission denied"])
            return 200, envelope(auth=issue_token(ns, spec, {"role": spec["role"]}))
        raise VaultError(404, ["no handler for route \"%s\". route entry not found." % path])

    t, tok = resolve_token(headers, ns)
    if path == "auth/token/lookup-self" and method in ("GET", "POST"):
        count("lookup-self", ns)
        left = int(tok["expires"] - time.time()) if tok["expires"] else 0
        return 200, envelope(data={"id": t, "policies": ["default"] + tok["policies"],
                                   "ttl": max(left, 0), "creation_ttl": tok["ttl"],
                                   "renewable": tok["renewable"], "namespace_path": ns,
                                   "explicit_max_ttl": tok["max_ttl"], "type": "service"})
    if path == "auth/token/renew-self" and method in ("POST", "PUT"):
        count("renew-self", ns)
        if not tok["renewable"]:
            raise VaultError(400, ["lease is not renewable"])
        now = time.time()
        ttl = tok["ttl"]
        if body.get("increment"):
            inc = body["increment"]
            ttl = int(str(inc).rstrip("s"))
        if tok["max_ttl"]:
            ttl = max(0, min(ttl, int(tok["issued"] + tok["max_ttl"] - now)))
        tok["expires"] = now + ttl
        return 200, envelope(auth={"client_token": t, "accessor": "", "policies":
                                   ["default"] + tok["policies"], "token_policies":
                                   ["default"] + tok["policies"], "lease_duration": ttl,
                                   "renewable": True, "metadata": None})

    mount = None
    for (mns, mp) in STATE["mounts"]:
        if mns == ns and path.startswith(mp + "/") and (mount is None or len(mp) > len(mount)):
            mount = mp
    if mount is None:
        if not allowed(tok, ns, path, "read" if method == "GET" else "update"):
            raise denied()
        raise VaultError(404, ["no handler for route \"%s\". route entry not found." % path])
    rest = path[len(mount) + 1:]
    parts = rest.split("/")
    keys = STATE["keys"]

    def need(cap):
        if not allowed(tok, ns, path, cap):
            raise denied()

    def get_key(name):
        return keys.get((ns, mount, name))

    if parts[0] == "keys" and len(parts) == 2:
        name = parts[1]
        if method == "GET":
            need("read")
            count("keys-read", ns)
            k = get_key(name)
            if k is None:
                raise VaultError(404, [])
            return 200, envelope(data=key_info(name, k))
        if method in ("POST", "PUT"):
            need("create" if get_key(name) is None else "update")
            count("keys-write", ns)
            if get_key(name) is None:
                ktype = body.get("type", "aes256-gcm96")
                if ktype not in ("aes256-gcm96", "chacha20-poly1305", "aes128-gcm96"):
                    raise VaultError(400, ["unknown key type %s" % ktype])
                size = 16 if ktype == "aes128-gcm96" else 32
                keys[(ns, mount, name)] = {"type": ktype, "derived": bool(body.get("derived", False)),
                                           "exportable": bool(body.get("exportable", False)),
                                           "size": size, "versions": {1: os.urandom(size)},
                                           "created": {1: time.time()}, "latest": 1,
                                           "min_decryption_version": 1, "min_encryption_version": 0}
            return 204, None
    if parts[0] == "keys" and len(parts) == 3 and parts[2] in ("rotate", "config") and method in ("POST", "PUT"):
        need("update")
        count("keys-write", ns)
        k = get_key(parts[1])
        if k is None:
            raise VaultError(400, ["encryption key not found"])
        if parts[2] == "rotate":
            k["latest"] += 1
            k["versions"][k["latest"]] = os.urandom(k["size"])
            k["created"][k["latest"]] = time.time()
        else:
            for f in ("min_decryption_version", "min_encryption_version"):
                if body.get(f) is not None:
                    v = int(body[f])
                    if v > k["latest"]:
                        raise VaultError(400, ["cannot set %s to a value greater than the latest version" % f])
                    k[f] = max(v, 1) if f == "min_decryption_version" else v
            if body.get("exportable") is not None:
                k["exportable"] = bool(body["exportable"])
        return 204, None
    if parts[0] == "export" and len(parts) in (3, 4) and method == "GET":
        need("read")
        k = get_key(parts[2])
        if k is None:
            raise VaultError(404, [])
        if not k["exportable"]:
            raise VaultError(400, ["key is not exportable"])
        vs = [int(parts[3])] if len(parts) == 4 and parts[3] != "latest" else (
            [k["latest"]] if len(parts) == 4 else list(k["versions"]))
        return 200, envelope(data={"name": parts[2], "type": k["type"], "keys": {
            str(v): base64.b64encode(k["versions"][v]).decode() for v in vs}})
    if parts[0] == "datakey" and len(parts) == 3 and method in ("POST", "PUT"):
        need("update")
        count("datakey", ns)
        if parts[1] not in ("plaintext", "wrapped"):
            raise VaultError(400, ["invalid type"])
        k = get_key(parts[2])
        if k is None:
            raise VaultError(400, ["encryption key not found"])
        bits = int(body.get("bits", 256))
        if bits not in (128, 256, 512):
            raise VaultError(400, ["invalid bits length"])
        dk = os.urandom(bits // 8)
        ct, v = encrypt(k, dk, b64arg(body, "context"))
        data = {"ciphertext": ct, "key_version": v}
        if parts[1] == "plaintext":
            data["plaintext"] = base64.b64encode(dk).decode()
        return 200, envelope(data=data)
    if parts[0] in ("encrypt", "decrypt", "rewrap") and len(parts) == 2 and method in ("POST", "PUT"):
        k = get_key(parts[1])
        if parts[0] == "encrypt" and k is None:
            # Vault upserts: encrypting under a missing key creates it, with "create"
            need("create")
            keys[(ns, mount, parts[1])] = k = {
                "type": body.get("type", "aes256-gcm96"), "derived": False, "exportable": False,
                "size": 32, "versions": {1: os.urandom(32)}, "created": {1: time.time()},
                "latest": 1, "min_decryption_version": 1, "min_encryption_version": 0}
        need("update")
        count(parts[0], ns)
        if k is None:
            raise VaultError(400, ["encryption key not found"])
        ctx = b64arg(body, "context")
        if "batch_input" in body:
            raise VaultError(400, ["batch_input is not emulated"])
        if parts[0] == "encrypt":
            ct, v = encrypt(k, b64arg(body, "plaintext"), ctx, body.get("key_version"))
            return 200, envelope(data={"ciphertext": ct, "key_version": v})
        if parts[0] == "decrypt":
            pt = decrypt(k, body.get("ciphertext"), ctx)
            return 200, envelope(data={"plaintext": base64.b64encode(pt).decode()})
        pt = decrypt(k, body.get("ciphertext"), ctx)
        ct, v = encrypt(k, pt, ctx, body.get("key_version"))
        return 200, envelope(data={"ciphertext": ct, "key_version": v})
    need("read" if method == "GET" else "update")
    raise VaultError(405, ["unsupported operation"])


def handle_control(method, path, body):
    with LOCK:
        if path == "stats":
            return 200, STATE["stats"]
        if path == "reset-stats":
            STATE["stats"] = {"calls": {}, "namespaces": {}, "faults": {}}
        elif path == "clear-faults":
            STATE["faults"] = []
        elif path == "fault":
            STATE["faults"].append({"path": body.get("path", ".*"), "kind": str(body["kind"]),
                                    "count": int(body.get("count", 1)),
                                    "delay": float(body.get("delay", 0))})
        elif path == "policy":
            STATE["policies"][(body.get("namespace", ""), body["name"])] = body["paths"]
        elif path == "token":
            now = time.time()
            ttl = int(body.get("ttl", 0))
            STATE["tokens"][body["token"]] = {
                "namespace": body.get("namespace", ""), "policies": body.get("policies", []),
                "ttl": ttl, "max_ttl": int(body.get("max_ttl", 0)),
                "renewable": bool(body.get("renewable", True)) and ttl > 0,
                "issued": now, "expires": now + ttl if ttl else None}
        elif path == "approle":
            ns, mount = body.get("namespace", ""), body.get("mount", "approle")
            STATE["approles"].setdefault((ns, mount), {})[body.get("role", "r")] = body
        elif path == "kubernetes":
            ns, mount = body.get("namespace", ""), body.get("mount", "kubernetes")
            STATE["kubernetes"].setdefault((ns, mount), {})[body["role"]] = body
        elif path == "mount":
            STATE["mounts"].add((body.get("namespace", ""), body["path"]))
        elif path == "revoke-all":
            for t in [t for t, v in STATE["tokens"].items() if v.get("login")]:
                del STATE["tokens"][t]
        elif path == "reset":
            reset_state()
        else:
            return 404, {"error": "unknown control path"}
        return 200, {"ok": True}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pgck-vault-emulator"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, obj):
        data = b"" if obj is None or status == 204 else json.dumps(obj).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def dispatch(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = self.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self.send(400, {"errors": ["failed to parse JSON input"]})
        if url.startswith("/_emu/"):
            status, obj = handle_control(method, url[6:], body)
            return self.send(status, obj)
        if not url.startswith("/v1/"):
            return self.send(404, {"errors": []})
        ns = (self.headers.get("X-Vault-Namespace") or "").strip("/")
        path = url[4:].strip("/")
        delay = 0.0
        with LOCK:
            for f in STATE["faults"]:
                if f["count"] != 0 and re.search(f["path"], "%s|%s" % (ns, path)):
                    if f["count"] > 0:
                        f["count"] -= 1
                    fs = STATE["stats"]["faults"]
                    fs[f["kind"]] = fs.get(f["kind"], 0) + 1
                    log("fault %s on %s|%s" % (f["kind"], ns, path))
                    if f["kind"] == "slow":
                        delay = f["delay"]
                        break
                    if f["kind"] == "403":
                        count("denied")
                        return self.send(403, {"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
                    if f["kind"] == "429":
                        return self.send(429, {"errors": ["request path \"%s\": rate limit quota exceeded" % path]})
                    return self.send(int(f["kind"]), {"errors": ["emulated internal error"]})
        if delay:
            time.sleep(delay)
        try:
            with LOCK:
                status, obj = handle_vault(method, ns, path, body, self.headers)
        except VaultError as e:
            status, obj = e.status, {"errors": e.errors}
        except Exception as e:  # an emulator bug: say so, as Vault would with a 500
            status, obj = 500, {"errors": ["emulator error: %s" % type(e).__name__]}
        log("%s %s|%s -> %d" % (method, ns, path, status))
        try:
            self.send(status, obj)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_LIST(self):
        self.dispatch("LIST")


def main():
    global ROOT_TOKEN, LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log")
    ap.add_argument("--root-token", default="root")
    a = ap.parse_args()
    ROOT_TOKEN = a.root_token
    if a.log:
        LOG = open(a.log, "a")
    reset_state()
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(srv.server_address[1]))
        os.rename(tmp, a.port_file)
    log("listening on %d" % srv.server_address[1])
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
