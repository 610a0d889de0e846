"""Keys, aliases and the ciphertext format of the KMS emulator.

A key has a uuid key id, a state (Enabled, Disabled, PendingDeletion) and one or more versions of
backing key material (AES-256); rotation appends a version and new ciphertexts use the newest.
Keys are not bound to a region: every region sees the same keys, and ARNs are built with the
region of the request that names them.

Ciphertext blob (opaque to clients):
    format(1) = 0x01 | key id (16, uuid bytes) | material version (4, big endian) | nonce (12)
    | AES-256-GCM ciphertext and tag
    AAD = the 21 header bytes || canonical JSON of the encryption context (empty when none)
so a changed byte anywhere, another key, another version or another context fails to open.

Thread safety: every method takes the store's lock; Key objects handed out are only read by
callers after the lock is released, and material lists are append-only.
"""

import base64
import functools
import hashlib
import json
import os
import struct
import threading
import time
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import gcm

ACCOUNT = "111122223333"
PARTITION = "aws"
DEFAULT_ALIASES = ("alias/pgck-test", "alias/pgck-test-2", "alias/pgck-demo")

_FORMAT = 1
_HEADER = struct.Struct(">B16sI")
_NONCE_LEN = 12
_TAG_LEN = 16
_PENDING_WINDOW_DAYS = range(7, 31)


@functools.lru_cache(maxsize=16384)
def _aead(material):
    """The AESGCM object of one version of key material (made once, not per call)."""
    return AESGCM(material)


class KmsError(Exception):
    """An error KMS reports to the caller: its __type and message."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def key_arn(region, key_id):
    return "arn:%s:kms:%s:%s:key/%s" % (PARTITION, region, ACCOUNT, key_id)


def alias_arn(region, alias):
    return "arn:%s:kms:%s:%s:%s" % (PARTITION, region, ACCOUNT, alias)


def canonical_context(context):
    """Bytes bound as AAD: no context and {} are the same, member order does not matter."""
    if not context:
        return b""
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Key:
    def __init__(self, key_id, created, description="", state="Enabled", deletion_date=None,
                 pending_days=None, materials=None):
        self.key_id = key_id
        self.created = created
        self.description = description
        self.state = state
        self.deletion_date = deletion_date
        self.pending_days = pending_days
        self.materials = materials if materials is not None else [AESGCM.generate_key(256)]

    @property
    def current_version(self):
        return len(self.materials)

    def material_id(self, version):
        """KMS's KeyMaterialId: 64 hex characters naming one version of backing material."""
        return hashlib.sha256(("%s:%d" % (self.key_id, version)).encode()).hexdigest()

    def arn(self, region):
        return key_arn(region, self.key_id)

    def check_usable(self, region):
        """Raise what KMS raises when a cryptographic operation uses a key in this state."""
        if self.state == "Disabled":
            raise KmsError("DisabledException", "%s is disabled." % self.arn(region))
        if self.state == "PendingDeletion":
            raise KmsError("KMSInvalidStateException", "%s is pending deletion." % self.arn(region))

    def to_json(self):
        return {
            "key_id": self.key_id,
            "created": self.created,
            "description": self.description,
            "state": self.state,
            "deletion_date": self.deletion_date,
            "pending_days": self.pending_days,
            "materials": [base64.b64encode(m).decode() for m in self.materials],
        }

    @classmethod
    def from_json(cls, data):
        return cls(data["key_id"], data["created"], data.get("description", ""),
                   data.get("state", "Enabled"), data.get("deletion_date"),
                   data.get("pending_days"), [base64.b64decode(m) for m in data["materials"]])


class KeyStore:
    def __init__(self, state_path=None):
        self._lock = threading.RLock()
        self._keys = {}
        self._aliases = {}
        self._state_path = state_path
        if state_path and os.path.exists(state_path):
            self._load()
        if not self._keys:
            for alias in DEFAULT_ALIASES:
                self.create_key(alias=alias, description="pgcrypt_kms test key " + alias)

    # ------------------------------------------------------------------ persistence
    def _load(self):
        with open(self._state_path, encoding="utf-8") as f:
            data = json.load(f)
        for entry in data.get("keys", []):
            key = Key.from_json(entry)
            self._keys[key.key_id] = key
        self._aliases = dict(data.get("aliases", {}))

    def _save(self):
        if not self._state_path:
            return
        data = {"format": 1, "keys": [k.to_json() for k in self._keys.values()],
                "aliases": self._aliases}
        tmp = "%s.tmp.%d" % (self._state_path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self._state_path)

    # ------------------------------------------------------------------ administration
    def create_key(self, alias=None, description=""):
        with self._lock:
            if alias is not None:
                self._check_new_alias(alias)
                if alias in self._aliases:
                    raise ValueError("alias %s already exists (create-alias repoints it)" % alias)
            key = Key(str(uuid.uuid4()), time.time(), description)
            self._keys[key.key_id] = key
            if alias is not None:
                self._aliases[alias] = key.key_id
            self._save()
            return key

    def _check_new_alias(self, alias):
        name = alias[len("alias/"):] if alias.startswith("alias/") else ""
        if not name or name.startswith("aws/") or len(alias) > 256 or \
                any(not (c.isascii() and (c.isalnum() or c in ":/_-")) for c in name):
            raise ValueError("invalid alias name %r" % alias)

    def set_alias(self, alias, key_ref, region):
        """Create the alias, or point an existing one at another key (UpdateAlias)."""
        with self._lock:
            self._check_new_alias(alias)
            key = self.resolve(key_ref, region)
            self._aliases[alias] = key.key_id
            self._save()
            return key

    def delete_alias(self, alias):
        with self._lock:
            if self._aliases.pop(alias, None) is None:
                raise KeyError(alias)
            self._save()

    # ------------------------------------------------------------------ KMS alias operations
    def _alias_target(self, key_ref, region):
        """TargetKeyId of CreateAlias/UpdateAlias: a key id or key ARN, not pending deletion."""
        if key_ref.startswith("alias/") or (key_ref.startswith("arn:") and ":alias/" in key_ref):
            raise KmsError("ValidationException",
                           "TargetKeyId must identify a KMS key by key ID or key ARN, not an alias.")
        key = self.resolve(key_ref, region)
        if key.state == "PendingDeletion":
            raise KmsError("KMSInvalidStateException", "%s is pending deletion." % key.arn(region))
        return key

    def _kms_alias_name(self, alias, region):
        if not alias.startswith("alias/") or alias == "alias/":
            raise KmsError("InvalidAliasNameException",
                           "Alias must start with the prefix \"alias/\".")
        if alias.startswith("alias/aws/"):
            raise KmsError("InvalidAliasNameException",
                           "Alias %s is reserved for AWS managed keys." % alias_arn(region, alias))

    def kms_create_alias(self, alias, key_ref, region):
        """CreateAlias: AlreadyExistsException if the alias exists (UpdateAlias repoints)."""
        with self._lock:
            self._kms_alias_name(alias, region)
            key = self._alias_target(key_ref, region)
            if alias in self._aliases:
                raise KmsError("AlreadyExistsException",
                               "An alias with the name %s already exists" % alias_arn(region, alias))
            self._aliases[alias] = key.key_id
            self._save()

    def kms_update_alias(self, alias, key_ref, region):
        """UpdateAlias: the alias must exist; it names the new key from the next request on."""
        with self._lock:
            self._kms_alias_name(alias, region)
            if alias not in self._aliases:
                raise KmsError("NotFoundException",
                               "Alias %s is not found." % alias_arn(region, alias))
            key = self._alias_target(key_ref, region)
            self._aliases[alias] = key.key_id
            self._save()

    def kms_delete_alias(self, alias, region):
        with self._lock:
            self._kms_alias_name(alias, region)
            if self._aliases.pop(alias, None) is None:
                raise KmsError("NotFoundException",
                               "Alias %s is not found." % alias_arn(region, alias))
            self._save()

    def set_state(self, key_ref, region, state, pending_days=None):
        """enable, disable, schedule deletion (pending_days) or cancel it (back to Disabled)."""
        with self._lock:
            key = self.resolve(key_ref, region)
            if state == "PendingDeletion":
                days = 30 if pending_days is None else pending_days
                if days not in _PENDING_WINDOW_DAYS:
                    raise ValueError("pending window must be 7..30 days")
                key.deletion_date = time.time() + days * 86400
                key.pending_days = days
            else:
                key.deletion_date = key.pending_days = None
            key.state = state
            self._save()
            return key

    def delete_key(self, key_ref, region):
        """Remove a key and its aliases (a completed deletion); returns the removed key."""
        with self._lock:
            key = self.resolve(key_ref, region)
            del self._keys[key.key_id]
            for alias in [a for a, k in self._aliases.items() if k == key.key_id]:
                del self._aliases[alias]
            self._save()
            return key

    def rotate(self, key_ref, region):
        with self._lock:
            key = self.resolve(key_ref, region)
            key.materials.append(AESGCM.generate_key(256))
            self._save()
            return key

    def listing(self, region):
        with self._lock:
            by_key = {}
            for alias, key_id in sorted(self._aliases.items()):
                by_key.setdefault(key_id, []).append(alias)
            return [{
                "key_id": k.key_id,
                "arn": k.arn(region),
                "aliases": by_key.get(k.key_id, []),
                "state": k.state,
                "material_versions": k.current_version,
                "created": k.created,
            } for k in sorted(self._keys.values(), key=lambda k: k.created)]

    # ------------------------------------------------------------------ lookups
    def resolve(self, ref, region):
        """A KeyId in any of its four forms → Key, or NotFoundException as KMS words it."""
        with self._lock:
            if ref.startswith("arn:"):
                parts = ref.split(":", 5)
                if (len(parts) != 6 or parts[1] != PARTITION or parts[2] != "kms"
                        or parts[3] != region or parts[4] != ACCOUNT):
                    raise KmsError("NotFoundException", "Invalid arn %s" % ref)
                resource = parts[5]
                if resource.startswith("alias/"):
                    return self._by_alias(resource, region)
                if resource.startswith("key/"):
                    return self._by_id(resource[len("key/"):], region)
                raise KmsError("NotFoundException", "Invalid arn %s" % ref)
            if ref.startswith("alias/"):
                return self._by_alias(ref, region)
            return self._by_id(ref, region)

    def _by_alias(self, alias, region):
        key_id = self._aliases.get(alias)
        if key_id is None:
            raise KmsError("NotFoundException",
                           "Alias %s is not found." % alias_arn(region, alias))
        return self._keys[key_id]

    def _by_id(self, key_id, region):
        try:
            canonical = str(uuid.UUID(key_id))
        except ValueError:
            raise KmsError("NotFoundException", "Invalid keyId '%s'" % key_id) from None
        key = self._keys.get(key_id) if canonical == key_id else None
        if key is None:
            raise KmsError("NotFoundException",
                           "Key '%s' does not exist" % key_arn(region, key_id))
        return key

    # ------------------------------------------------------------------ ciphertexts
    def seal(self, key, plaintext, context):
        """Encrypt under the key's newest material; returns (blob, material version)."""
        version = key.current_version
        header = _HEADER.pack(_FORMAT, uuid.UUID(key.key_id).bytes, version)
        nonce = os.urandom(_NONCE_LEN)
        sealed = _aead(key.materials[version - 1]).encrypt(
            nonce, plaintext, header + canonical_context(context))
        return header + nonce + sealed, version

    def key_of(self, blob):
        """The key a ciphertext names (not yet authenticated), or InvalidCiphertextException."""
        if len(blob) < _HEADER.size + _NONCE_LEN + _TAG_LEN:
            raise _invalid_ciphertext()
        fmt, key_bytes, _ = _HEADER.unpack_from(blob)
        with self._lock:
            key = self._keys.get(str(uuid.UUID(bytes=key_bytes)))
        if fmt != _FORMAT or key is None:
            raise _invalid_ciphertext()
        return key

    def unseal(self, key, blob, context):
        """Decrypt a blob of this key (see key_of); returns (plaintext, material version)."""
        _, _, version = _HEADER.unpack_from(blob)
        if not 1 <= version <= key.current_version:
            raise _invalid_ciphertext()
        header = blob[:_HEADER.size]
        nonce = blob[_HEADER.size:_HEADER.size + _NONCE_LEN]
        material = key.materials[version - 1]
        sealed = blob[_HEADER.size + _NONCE_LEN:]
        aad = header + canonical_context(context)
        try:
            if gcm.open is not None:  # the same decryption, without letting go of the GIL
                plaintext = gcm.open(material, nonce, sealed, aad)
            else:
                plaintext = _aead(material).decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise _invalid_ciphertext() from None
        return plaintext, version


def _invalid_ciphertext():
    return KmsError("InvalidCiphertextException",
                    "The ciphertext is invalid, was altered, or its encryption context does not "
                    "match the one given.")
