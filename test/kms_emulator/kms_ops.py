"""The KMS operations the extension uses, and the alias operations its tests use: input checks as AWS's front end does them,
then the operation, answering the members of botocore's model (optional members omitted).

Each op_<name>(call, params) returns the response object or raises KmsError. Input problems are
reported the way AWS reports them: a JSON type mismatch or bad base64 is SerializationException,
a model constraint (required member, length, range, enum) is ValidationException with AWS's
"N validation errors detected: ..." wording.
"""

import base64
import os

from keystore import ACCOUNT, KmsError
from wire import b64

DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}
ENCRYPTION_ALGORITHMS = ("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")


class Params:
    """Type checks (SerializationException) and model constraints (ValidationException)."""

    _TYPES = {"string": str, "integer": int, "boolean": bool, "map": dict, "list": list,
              "blob": str}

    def __init__(self, body):
        self.body = body
        self.problems = []

    def get(self, name, kind, required=False):
        value = self.body.get(name)
        if value is None:
            if required:
                self._problem("Value null at '%s' failed to satisfy constraint: "
                              "Member must not be null" % _camel(name))
            return None
        expected = self._TYPES[kind]
        if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)) \
                or (kind == "map" and not all(isinstance(v, str) for v in value.values())) \
                or (kind == "list" and not all(isinstance(v, str) for v in value)):
            raise KmsError("SerializationException",
                           "Value of member '%s' is not a valid %s" % (name, kind))
        if kind == "blob":
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise KmsError("SerializationException",
                               "Value of member '%s' is not valid base64" % name) from None
        return value

    def _problem(self, text):
        self.problems.append(text)

    def _length(self, name, value, low, high, shown):
        where = ("Value '%s' at '%s'" % (value, _camel(name))) if shown \
            else "Value at '%s'" % _camel(name)
        if len(value) < low:
            self._problem("%s failed to satisfy constraint: Member must have length greater "
                          "than or equal to %d" % (where, low))
        elif len(value) > high:
            self._problem("%s failed to satisfy constraint: Member must have length less than "
                          "or equal to %d" % (where, high))

    def string(self, name, required=False, low=1, high=2048):
        value = self.get(name, "string", required)
        if value is not None:
            self._length(name, value, low, high, True)
        return value

    def blob(self, name, required, high):
        value = self.get(name, "blob", required)
        if value is not None:
            self._length(name, value, 1, high, False)
        return value

    def integer(self, name, low, high, required=False):
        value = self.get(name, "integer", required)
        if value is not None and not low <= value <= high:
            bound = ("greater than or equal to %d" % low) if value < low \
                else ("less than or equal to %d" % high)
            self._problem("Value '%d' at '%s' failed to satisfy constraint: Member must have "
                          "value %s" % (value, _camel(name), bound))
        return value

    def enum(self, name, allowed):
        value = self.get(name, "string")
        if value is not None and value not in allowed:
            self._problem("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy "
                          "enum value set: [%s]" % (value, _camel(name), ", ".join(allowed)))
        return value

    def context(self, name):
        return self.get(name, "map") or {}

    def common(self):
        """GrantTokens and DryRun, accepted by every cryptographic operation."""
        tokens = self.get("GrantTokens", "list")
        if tokens is not None and len(tokens) > 10:
            self._problem("Value '%s' at 'grantTokens' failed to satisfy constraint: Member must "
                          "have length less than or equal to 10" % tokens)
        return bool(self.get("DryRun", "boolean"))

    def check(self):
        if self.problems:
            count = len(self.problems)
            raise KmsError("ValidationException", "%d validation error%s detected: %s" % (
                count, "" if count == 1 else "s", "; ".join(self.problems)))


def _camel(name):
    return name[0].lower() + name[1:]


class Call:
    """One KMS call: its region, the key store, and what goes into the call log."""

    def __init__(self, keys, region, entry):
        self.keys = keys
        self.region = region
        self.entry = entry

    def key(self, ref, log_as="key_arn"):
        key = self.keys.resolve(ref, self.region)
        self.entry[log_as] = key.arn(self.region)
        return key

    def usable_key(self, ref, log_as="key_arn"):
        key = self.key(ref, log_as)
        key.check_usable(self.region)
        return key

    def open(self, blob, key_ref, context):
        """Decrypt a ciphertext blob, checking it belongs to key_ref when one is given."""
        named = self.key(key_ref) if key_ref is not None else None
        key = self.keys.key_of(blob)
        if named is not None and named.key_id != key.key_id:
            raise KmsError("IncorrectKeyException",
                           "The key ID in the request does not identify a CMK that can perform "
                           "this operation.")
        self.entry["key_arn"] = key.arn(self.region)
        key.check_usable(self.region)
        plaintext, version = self.keys.unseal(key, blob, context)
        return key, plaintext, version


def _check_algorithm(name, algorithm):
    if algorithm not in (None, "SYMMETRIC_DEFAULT"):
        raise KmsError("InvalidKeyUsageException",
                       "%s %s is not supported by a symmetric encryption KMS key" %
                       (name, algorithm))


def _dry_run(dry_run):
    if dry_run:
        raise KmsError("DryRunOperationException",
                       "The request would have succeeded, but the DryRun option is set.")


def _no_recipient(params):
    if params.body.get("Recipient") is not None:
        raise KmsError("UnsupportedOperationException",
                       "Recipient (Nitro Enclaves attestation) is not supported by the emulator.")


def _generate_data_key(call, params, with_plaintext):
    key_ref = params.string("KeyId", required=True)
    spec = params.enum("KeySpec", list(DATA_KEY_SPECS))
    size = params.integer("NumberOfBytes", 1, 1024)
    context = params.context("EncryptionContext")
    call.entry["encryption_context"] = context
    dry_run = params.common()
    params.check()
    if (spec is None) == (size is None):
        raise KmsError("ValidationException", "Please specify either number of bytes or key spec.")
    _no_recipient(params)
    key = call.usable_key(key_ref)
    _dry_run(dry_run)
    data_key = os.urandom(size or DATA_KEY_SPECS[spec])
    blob, version = call.keys.seal(key, data_key, context)
    result = {"CiphertextBlob": b64(blob), "KeyId": key.arn(call.region),
              "KeyMaterialId": key.material_id(version)}
    if with_plaintext:
        result["Plaintext"] = b64(data_key)
    return result


def op_generate_data_key(call, params):
    return _generate_data_key(call, params, with_plaintext=True)


def op_generate_data_key_without_plaintext(call, params):
    return _generate_data_key(call, params, with_plaintext=False)


def op_encrypt(call, params):
    key_ref = params.string("KeyId", required=True)
    plaintext = params.blob("Plaintext", True, 4096)
    context = params.context("EncryptionContext")
    call.entry["encryption_context"] = context
    algorithm = params.enum("EncryptionAlgorithm", ENCRYPTION_ALGORITHMS)
    dry_run = params.common()
    params.check()
    key = call.usable_key(key_ref)
    _check_algorithm("EncryptionAlgorithm", algorithm)
    _dry_run(dry_run)
    blob, _ = call.keys.seal(key, plaintext, context)
    return {"CiphertextBlob": b64(blob), "KeyId": key.arn(call.region),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}


def op_decrypt(call, params):
    blob = params.blob("CiphertextBlob", True, 6144)
    key_ref = params.string("KeyId")
    context = params.context("EncryptionContext")
    call.entry["encryption_context"] = context
    algorithm = params.enum("EncryptionAlgorithm", ENCRYPTION_ALGORITHMS)
    dry_run = params.common()
    params.check()
    _no_recipient(params)
    _check_algorithm("EncryptionAlgorithm", algorithm)
    key, plaintext, version = call.open(blob, key_ref, context)
    _dry_run(dry_run)
    return {"KeyId": key.arn(call.region), "Plaintext": b64(plaintext),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "KeyMaterialId": key.material_id(version)}


def op_re_encrypt(call, params):
    blob = params.blob("CiphertextBlob", True, 6144)
    source_ref = params.string("SourceKeyId")
    dest_ref = params.string("DestinationKeyId", required=True)
    source_context = params.context("SourceEncryptionContext")
    dest_context = params.context("DestinationEncryptionContext")
    call.entry["encryption_context"] = source_context
    call.entry["destination_encryption_context"] = dest_context
    source_algorithm = params.enum("SourceEncryptionAlgorithm", ENCRYPTION_ALGORITHMS)
    dest_algorithm = params.enum("DestinationEncryptionAlgorithm", ENCRYPTION_ALGORITHMS)
    dry_run = params.common()
    params.check()
    _check_algorithm("SourceEncryptionAlgorithm", source_algorithm)
    _check_algorithm("DestinationEncryptionAlgorithm", dest_algorithm)
    dest = call.usable_key(dest_ref, log_as="destination_key_arn")
    source, plaintext, source_version = call.open(blob, source_ref, source_context)
    _dry_run(dry_run)
    new_blob, dest_version = call.keys.seal(dest, plaintext, dest_context)
    return {
        "CiphertextBlob": b64(new_blob),
        "SourceKeyId": source.arn(call.region),
        "KeyId": dest.arn(call.region),
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "SourceKeyMaterialId": source.material_id(source_version),
        "DestinationKeyMaterialId": dest.material_id(dest_version),
    }


def op_describe_key(call, params):
    key_ref = params.string("KeyId", required=True)
    params.common()
    params.check()
    key = call.key(key_ref)
    metadata = {
        "AWSAccountId": ACCOUNT,
        "KeyId": key.key_id,
        "Arn": key.arn(call.region),
        "CreationDate": round(key.created, 3),
        "Enabled": key.state == "Enabled",
        "Description": key.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": key.state,
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": False,
        "CurrentKeyMaterialId": key.material_id(key.current_version),
    }
    if key.state == "PendingDeletion":
        metadata["DeletionDate"] = round(key.deletion_date, 3)
        metadata["PendingDeletionWindowInDays"] = key.pending_days
    return {"KeyMetadata": metadata}


def op_generate_random(call, params):
    size = params.integer("NumberOfBytes", 1, 1024, required=True)
    store = params.string("CustomKeyStoreId", high=64)
    params.check()
    _no_recipient(params)
    if store is not None:
        raise KmsError("CustomKeyStoreNotFoundException",
                       "Custom key store '%s' does not exist" % store)
    return {"Plaintext": b64(os.urandom(size))}


_ALIAS_NAME_PATTERN = "^[a-zA-Z0-9:/_-]+$"


def _alias_name(params):
    alias = params.string("AliasName", required=True, high=256)
    if alias is not None and any(not (c.isascii() and (c.isalnum() or c in ":/_-"))
                                 for c in alias):
        params._problem("Value '%s' at 'aliasName' failed to satisfy constraint: Member must "
                        "satisfy regular expression pattern: %s" % (alias, _ALIAS_NAME_PATTERN))
    return alias


def _alias_op(call, params, action):
    alias = _alias_name(params)
    target = params.string("TargetKeyId", required=True) if action != "delete" else None
    params.check()
    call.entry["alias"] = alias
    if action == "create":
        call.keys.kms_create_alias(alias, target, call.region)
    elif action == "update":
        call.keys.kms_update_alias(alias, target, call.region)
    else:
        call.keys.kms_delete_alias(alias, call.region)
    if target is not None:
        call.entry["key_arn"] = call.keys.resolve(target, call.region).arn(call.region)
    return None  # AWS answers these with an empty 200 body


def op_create_alias(call, params):
    return _alias_op(call, params, "create")


def op_update_alias(call, params):
    return _alias_op(call, params, "update")


def op_delete_alias(call, params):
    return _alias_op(call, params, "delete")


KMS_OPERATIONS = {
    "GenerateDataKey": op_generate_data_key,
    "GenerateDataKeyWithoutPlaintext": op_generate_data_key_without_plaintext,
    "Encrypt": op_encrypt,
    "Decrypt": op_decrypt,
    "ReEncrypt": op_re_encrypt,
    "DescribeKey": op_describe_key,
    "GenerateRandom": op_generate_random,
    "CreateAlias": op_create_alias,
    "UpdateAlias": op_update_alias,
    "DeleteAlias": op_delete_alias,
}
