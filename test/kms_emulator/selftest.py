#!/usr/bin/python3
"""Protocol self-test of the KMS emulator, driven by botocore (the AWS SDK for Python).

    /usr/bin/python3 test/kms_emulator/selftest.py [--port N] [--only NAME[,NAME]]

Talks to the emulator on PGCK_EMULATOR_PORT (or --port); without either it starts a private one
and stops it at the end. Every test restores what it changes (faults, clock, credential
settings, key states of the keys it made), so a shared emulator stays usable. Counters are
compared as before/after deltas, so do not run another client against the same emulator at the
same time. Also starts short-lived emulators of its own (TLS, --state, --log, --host refusal).

Prints one "ok"/"not ok" line per test and exits non-zero if any failed.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import uuid
from unittest import mock

import botocore.auth
import botocore.exceptions
try:
    import botocore.crt.auth as botocore_crt_auth   # present when awscrt is installed
except ImportError:
    botocore_crt_auth = None
import botocore.session
from botocore import UNSIGNED
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import (ContainerProvider, Credentials, InstanceMetadataProvider)
from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError, \
    ReadTimeoutError
from botocore.utils import InstanceMetadataFetcher

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import emuctl  # noqa: E402
import sigv4  # noqa: E402

# The emulator's documented constants (README.md).
ACCESS_KEY = "AKIDPGCKTEST000000001"
SECRET_KEY = "pgck-test-secret-0000000000000000000000"
ACCOUNT = "111122223333"
WEB_IDENTITY_TOKEN = "pgck-test-web-identity-token"
ECS_TOKEN = "pgck-test-ecs-token"
IMDS_ROLE = "pgck-test-role"
JSON_11 = "application/x-amz-json-1.1"
STATIC = Credentials(ACCESS_KEY, SECRET_KEY)
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ARN_RE = re.compile(r"^arn:aws:kms:([a-z0-9-]+):111122223333:key/([0-9a-f-]{36})$")
DEFAULT_VECTORS = os.path.join(HERE, "..", "vectors", "sigv4")
SCRATCH = None  # this run's scratch directory (main() makes and removes it)


class Failure(AssertionError):
    pass


def check(condition, message, *args):
    if not condition:
        raise Failure(message % args if args else message)


def equal(actual, expected, what):
    check(actual == expected, "%s: expected %r, got %r", what, expected, actual)


# ====================================================================== clients
class Emu:
    """One emulator: botocore clients, raw signed requests and the control API."""

    def __init__(self, port, scheme="http", verify=None):
        self.port = port
        self.url = "%s://127.0.0.1:%d" % (scheme, port)
        self.verify = verify
        self.session = botocore.session.get_session()
        self._clients = {}

    def client(self, service="kms", region="us-east-1", creds=STATIC, attempts=1, **config):
        """A botocore client; attempts=1 turns retries off so each call is one request."""
        key = (service, region, creds and (creds.access_key, creds.secret_key, creds.token),
               attempts, tuple(sorted(config.items())))
        if key not in self._clients:
            extra = {"signature_version": UNSIGNED} if creds is None else {}
            cfg = Config(retries={"mode": "standard", "total_max_attempts": attempts},
                         connect_timeout=5, read_timeout=config.pop("read_timeout", 30),
                         **extra, **config)
            kwargs = {}
            if creds is not None:
                kwargs = {"aws_access_key_id": creds.access_key,
                          "aws_secret_access_key": creds.secret_key,
                          "aws_session_token": creds.token}
            self._clients[key] = self.session.create_client(
                service, endpoint_url=self.url, region_name=region, config=cfg,
                verify=self.verify, **kwargs)
        return self._clients[key]

    def fresh_client(self, **kwargs):
        """A client with a connection pool of its own (for connection counting)."""
        kwargs.setdefault("region", "us-east-1")
        return self.session.create_client(
            "kms", endpoint_url=self.url, region_name=kwargs["region"],
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, verify=self.verify)

    @property
    def kms(self):
        return self.client()

    @property
    def raw_kms(self):
        """No client-side parameter validation: lets invalid input reach the server."""
        return self.client(parameter_validation=False)

    def ctl(self, command, args=None):
        status, answer = emuctl.control(self.port, command, args)
        check(status == 200, "control %s %s: HTTP %d %s", command, args, status, answer)
        return answer

    def stats(self):
        return self.ctl("stats")

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def signed(self, op, body, creds=STATIC, region="us-east-1", service="kms", headers=None):
        """A KMS request signed by botocore: (headers dict, body bytes)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = AWSRequest(method="POST", url=self.url + "/", data=data, headers=dict(
            {"Content-Type": JSON_11, "X-Amz-Target": "TrentService." + op}, **(headers or {})))
        botocore.auth.SigV4Auth(creds, service, region).add_auth(request)
        return dict(request.headers.items()), data

    def send(self, headers, body, method="POST", path="/", conn=None):
        """Send one raw request; returns (status, response headers, parsed body)."""
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            return response.status, response, parsed
        finally:
            if own:
                conn.close()

    def raw(self, op, body, **kwargs):
        return self.send(*self.signed(op, body, **kwargs))


def expect_error(call, error_type, status, message_part=None):
    """Run call(); it must fail with this __type and HTTP status. Returns the message."""
    try:
        call()
    except ClientError as e:
        error = e.response["Error"]
        equal(error["Code"], error_type, "error type")
        equal(e.response["ResponseMetadata"]["HTTPStatusCode"], status, "HTTP status of " +
              error_type)
        check(UUID_RE.match(e.response["ResponseMetadata"]["HTTPHeaders"].get(
            "x-amzn-requestid", "")), "error without an x-amzn-RequestId uuid")
        if message_part is not None:
            check(message_part in error.get("Message", ""), "message %r lacks %r",
                  error.get("Message"), message_part)
        return error.get("Message", "")
    raise Failure("expected %s, the call succeeded" % error_type)


def expect_raw_error(result, error_type, status):
    code, response, body = result
    equal(code, status, "HTTP status of " + error_type)
    check(isinstance(body, dict), "error body is not JSON: %r" % (body,))
    equal(body.get("__type"), error_type, "__type")
    check(isinstance(body.get("message"), str), "error without a message: %r", body)
    equal(response.getheader("Content-Type"), JSON_11, "error Content-Type")
    check(UUID_RE.match(response.getheader("x-amzn-RequestId") or ""), "no request id")
    return body["message"]


def ctx_key(emu, alias):
    """(key id, key ARN in us-east-1) of an alias."""
    metadata = emu.kms.describe_key(KeyId=alias)["KeyMetadata"]
    return metadata["KeyId"], metadata["Arn"]


class TempKey:
    """A key made for one test, scheduled for deletion afterwards so it cannot be reused."""

    def __init__(self, emu):
        self.emu = emu

    def __enter__(self):
        made = self.emu.ctl("create-key", {"description": "selftest"})
        self.key_id, self.arn = made["key_id"], made["arn"]
        return self

    def __exit__(self, *exc):
        self.emu.ctl("enable-key", {"key_id": self.key_id})
        self.emu.ctl("schedule-deletion", {"key_id": self.key_id, "days": 7})


class Faults:
    """Arm faults for the body of a with-block; always cleared afterwards."""

    def __init__(self, emu, *specs):
        self.emu = emu
        self.specs = specs

    def __enter__(self):
        for spec in self.specs:
            self.emu.ctl("set-fault", spec)

    def __exit__(self, *exc):
        self.emu.ctl("clear-faults")


def delta(before, after, section, name):
    return after[section].get(name, 0) - before[section].get(name, 0)


# ====================================================================== tests
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def sigv4_module_matches_aws_test_suite(emu):
    """The emulator's canonicalization reproduces every case of the AWS SigV4 suite."""
    root = os.environ.get("PGCK_SIGV4_VECTORS") or (
        os.path.join(os.environ["PGCK_VECTORS"], "sigv4") if os.environ.get("PGCK_VECTORS") else DEFAULT_VECTORS)
    check(os.path.isdir(root), "no SigV4 vectors at %s (set PGCK_SIGV4_VECTORS)", root)
    cases = 0
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(f for f in files if f.endswith(".sreq")):
            base = os.path.join(dirpath, name[:-len(".sreq")])
            raw = open(base + ".sreq", encoding="utf-8").read()
            head, _, body = raw.partition("\n\n")
            lines = head.split("\n")
            method, _, rest = lines[0].partition(" ")
            target = rest.rsplit(" ", 1)[0]
            headers = []
            for line in lines[1:]:
                if line[:1] in (" ", "\t"):
                    headers[-1] = (headers[-1][0], headers[-1][1] + "\n" + line)
                else:
                    header, _, value = line.partition(":")
                    headers.append((header, value))
            # The server's view: the signed request without its Authorization header, which
            # is checked against the suite's .authz.
            headers = [(h, v) for h, v in headers if h.lower() != "authorization"]
            auth = sigv4.parse_authorization(open(base + ".authz", encoding="utf-8").read())
            path, _, query = target.partition("?")
            creq = sigv4.canonical_request(method, path, query, headers,
                                           auth["signed_headers"], body.encode())
            equal(creq, open(base + ".creq", encoding="utf-8").read(), name + " creq")
            amz_date = dict((h.lower(), v) for h, v in headers)["x-amz-date"]
            sts = sigv4.string_to_sign(amz_date, auth["scope"], creq)
            equal(sts, open(base + ".sts", encoding="utf-8").read(), name + " sts")
            signature = sigv4.signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", auth["date"],
                                        auth["region"], auth["service"], sts)
            equal(signature, auth["signature"], name + " signature")
            cases += 1
    check(cases >= 30, "only %d vector cases found", cases)
    return "%d cases" % cases


@test
def every_operation_wire_shape(emu):
    """Exact JSON members, base64 blobs, ARNs, headers of each operation (raw HTTP)."""
    key_id, arn = ctx_key(emu, "alias/pgck-test")
    _, arn2 = ctx_key(emu, "alias/pgck-test-2")

    def ok(op, body, members):
        status, response, result = emu.raw(op, body)
        equal(status, 200, op + " status")
        equal(response.getheader("Content-Type"), JSON_11, op + " Content-Type")
        check(UUID_RE.match(response.getheader("x-amzn-RequestId") or ""), "%s request id", op)
        equal(sorted(result), sorted(members), op + " members")
        for name, value in result.items():
            if name in ("CiphertextBlob", "Plaintext"):
                check(base64.b64encode(base64.b64decode(value, validate=True)).decode() == value,
                      "%s %s is not padded standard base64", op, name)
        return result

    context = {"tenant": "42", "purpose": "selftest"}
    gdk = ok("GenerateDataKey", {"KeyId": "alias/pgck-test", "KeySpec": "AES_256",
                                 "EncryptionContext": context},
             ["CiphertextBlob", "Plaintext", "KeyId", "KeyMaterialId"])
    equal(gdk["KeyId"], arn, "GenerateDataKey KeyId")
    equal(len(base64.b64decode(gdk["Plaintext"])), 32, "AES_256 data key length")
    check(re.match(r"^[0-9a-f]{64}$", gdk["KeyMaterialId"]), "KeyMaterialId not 64 hex")
    gdk128 = ok("GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_128"},
                ["CiphertextBlob", "Plaintext", "KeyId", "KeyMaterialId"])
    equal(len(base64.b64decode(gdk128["Plaintext"])), 16, "AES_128 data key length")
    gdk7 = ok("GenerateDataKey", {"KeyId": key_id, "NumberOfBytes": 7},
              ["CiphertextBlob", "Plaintext", "KeyId", "KeyMaterialId"])
    equal(len(base64.b64decode(gdk7["Plaintext"])), 7, "NumberOfBytes data key length")
    wp = ok("GenerateDataKeyWithoutPlaintext", {"KeyId": arn, "KeySpec": "AES_256"},
            ["CiphertextBlob", "KeyId", "KeyMaterialId"])
    equal(wp["KeyId"], arn, "GenerateDataKeyWithoutPlaintext KeyId")
    dec = ok("Decrypt", {"CiphertextBlob": gdk["CiphertextBlob"], "EncryptionContext": context},
             ["KeyId", "Plaintext", "EncryptionAlgorithm", "KeyMaterialId"])
    equal(dec["Plaintext"], gdk["Plaintext"], "Decrypt plaintext")
    equal(dec["KeyId"], arn, "Decrypt KeyId")
    equal(dec["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT", "Decrypt EncryptionAlgorithm")
    ok("Decrypt", {"CiphertextBlob": wp["CiphertextBlob"]},
       ["KeyId", "Plaintext", "EncryptionAlgorithm", "KeyMaterialId"])
    enc = ok("Encrypt", {"KeyId": "alias/pgck-test", "Plaintext": base64.b64encode(b"x" * 4096)
                         .decode()}, ["CiphertextBlob", "KeyId", "EncryptionAlgorithm"])
    equal(enc["KeyId"], arn, "Encrypt KeyId")
    re_enc = ok("ReEncrypt", {"CiphertextBlob": gdk["CiphertextBlob"],
                              "SourceEncryptionContext": context,
                              "DestinationKeyId": "alias/pgck-test-2"},
                ["CiphertextBlob", "SourceKeyId", "KeyId", "SourceEncryptionAlgorithm",
                 "DestinationEncryptionAlgorithm", "SourceKeyMaterialId",
                 "DestinationKeyMaterialId"])
    equal(re_enc["SourceKeyId"], arn, "ReEncrypt SourceKeyId")
    equal(re_enc["KeyId"], arn2, "ReEncrypt KeyId")
    back = ok("Decrypt", {"CiphertextBlob": re_enc["CiphertextBlob"]},
              ["KeyId", "Plaintext", "EncryptionAlgorithm", "KeyMaterialId"])
    equal((back["KeyId"], back["Plaintext"]), (arn2, gdk["Plaintext"]), "re-encrypted decrypt")
    metadata = ok("DescribeKey", {"KeyId": "alias/pgck-test"}, ["KeyMetadata"])["KeyMetadata"]
    equal(sorted(metadata), sorted([
        "AWSAccountId", "KeyId", "Arn", "CreationDate", "Enabled", "Description", "KeyUsage",
        "KeyState", "Origin", "KeyManager", "CustomerMasterKeySpec", "KeySpec",
        "EncryptionAlgorithms", "MultiRegion", "CurrentKeyMaterialId"]), "KeyMetadata members")
    equal((metadata["AWSAccountId"], metadata["KeyId"], metadata["Arn"], metadata["Enabled"],
           metadata["KeyState"], metadata["KeyUsage"], metadata["KeySpec"],
           metadata["EncryptionAlgorithms"], metadata["Origin"], metadata["KeyManager"],
           metadata["MultiRegion"]),
          (ACCOUNT, key_id, arn, True, "Enabled", "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT",
           ["SYMMETRIC_DEFAULT"], "AWS_KMS", "CUSTOMER", False), "KeyMetadata values")
    check(isinstance(metadata["CreationDate"], (int, float)), "CreationDate is not a number")
    for size in (1, 1024):
        rnd = ok("GenerateRandom", {"NumberOfBytes": size}, ["Plaintext"])
        equal(len(base64.b64decode(rnd["Plaintext"])), size, "GenerateRandom length")
    # An empty body is accepted like {} (then fails validation, not parsing).
    expect_raw_error(emu.raw("DescribeKey", b""), "ValidationException", 400)


@test
def key_id_forms(emu):
    """key id, key ARN, alias name and alias ARN name the same key in every operation."""
    key_id, arn = ctx_key(emu, "alias/pgck-test")
    forms = [key_id, arn, "alias/pgck-test",
             "arn:aws:kms:us-east-1:%s:alias/pgck-test" % ACCOUNT]
    blob = emu.kms.encrypt(KeyId=key_id, Plaintext=b"forms")["CiphertextBlob"]
    for form in forms:
        equal(emu.kms.describe_key(KeyId=form)["KeyMetadata"]["Arn"], arn, "DescribeKey " + form)
        equal(emu.kms.generate_data_key(KeyId=form, KeySpec="AES_256")["KeyId"], arn,
              "GenerateDataKey " + form)
        equal(emu.kms.generate_data_key_without_plaintext(KeyId=form, NumberOfBytes=32)["KeyId"],
              arn, "GenerateDataKeyWithoutPlaintext " + form)
        equal(emu.kms.encrypt(KeyId=form, Plaintext=b"p")["KeyId"], arn, "Encrypt " + form)
        equal(emu.kms.decrypt(CiphertextBlob=blob, KeyId=form)["Plaintext"], b"forms",
              "Decrypt KeyId=" + form)
        out = emu.kms.re_encrypt(CiphertextBlob=blob, SourceKeyId=form, DestinationKeyId=form)
        equal((out["SourceKeyId"], out["KeyId"]), (arn, arn), "ReEncrypt " + form)
    # ARNs carry the region the request was signed for.
    west = emu.client(region="eu-west-3")
    equal(west.describe_key(KeyId="alias/pgck-test")["KeyMetadata"]["Arn"],
          arn.replace("us-east-1", "eu-west-3"), "ARN region follows the signing region")


@test
def unknown_keys_are_not_found(emu):
    key_id, _ = ctx_key(emu, "alias/pgck-test")
    for ref, part in [
            ("alias/pgck-no-such-alias",
             "Alias arn:aws:kms:us-east-1:111122223333:alias/pgck-no-such-alias is not found."),
            (str(uuid.uuid4()), "does not exist"),
            ("not-a-key-id", "Invalid keyId"),
            ("arn:aws:kms:us-west-2:%s:key/%s" % (ACCOUNT, key_id), "arn"),
            ("arn:aws:kms:us-east-1:999999999999:key/%s" % key_id, "arn"),
            ("arn:aws:kms:us-east-1:%s:alias/pgck-no-such-alias" % ACCOUNT, "not found")]:
        expect_error(lambda: emu.kms.describe_key(KeyId=ref), "NotFoundException", 404, part)
        expect_error(lambda: emu.kms.generate_data_key(KeyId=ref, KeySpec="AES_256"),
                     "NotFoundException", 404)
        expect_error(lambda: emu.kms.encrypt(KeyId=ref, Plaintext=b"x"),
                     "NotFoundException", 404)


@test
def input_validation(emu):
    kms = emu.raw_kms
    cases = [
        (lambda: kms.generate_data_key(KeyId="alias/pgck-test"), "neither KeySpec nor bytes"),
        (lambda: kms.generate_data_key(KeyId="alias/pgck-test", KeySpec="AES_256",
                                       NumberOfBytes=32), "both KeySpec and bytes"),
        (lambda: kms.generate_data_key_without_plaintext(KeyId="alias/pgck-test"), "neither"),
        (lambda: kms.generate_data_key(KeyId="alias/pgck-test", KeySpec="AES_512"), "KeySpec"),
        (lambda: kms.generate_data_key(KeyId="alias/pgck-test", NumberOfBytes=0), "0 bytes"),
        (lambda: kms.generate_data_key(KeyId="alias/pgck-test", NumberOfBytes=1025), "1025"),
        (lambda: kms.generate_data_key(KeySpec="AES_256"), "no KeyId"),
        (lambda: kms.generate_data_key(KeyId="", KeySpec="AES_256"), "empty KeyId"),
        (lambda: kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"x" * 4097), "4097 bytes"),
        (lambda: kms.encrypt(KeyId="alias/pgck-test", Plaintext=b""), "empty plaintext"),
        (lambda: kms.encrypt(KeyId="alias/pgck-test"), "no plaintext"),
        (lambda: kms.decrypt(), "no CiphertextBlob"),
        (lambda: kms.decrypt(CiphertextBlob=b"x" * 6145), "6145-byte ciphertext"),
        (lambda: kms.re_encrypt(CiphertextBlob=b"x" * 64), "no DestinationKeyId"),
        (lambda: kms.describe_key(), "DescribeKey without KeyId"),
        (lambda: kms.generate_random(NumberOfBytes=0), "0 random bytes"),
        (lambda: kms.generate_random(NumberOfBytes=1025), "1025 random bytes"),
        (lambda: kms.generate_random(), "GenerateRandom without NumberOfBytes"),
        (lambda: kms.decrypt(CiphertextBlob=b"x" * 64, GrantTokens=["t"] * 11), "11 tokens"),
    ]
    for call, what in cases:
        try:
            expect_error(call, "ValidationException", 400)
        except Failure as e:
            raise Failure("%s: %s" % (what, e)) from None
    message = expect_error(lambda: kms.generate_random(NumberOfBytes=0),
                           "ValidationException", 400)
    equal(message, "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy "
                   "constraint: Member must have value greater than or equal to 1", "message")
    expect_raw_error(emu.raw("Decrypt", {"CiphertextBlob": "not base64!"}),
                     "SerializationException", 400)
    expect_raw_error(emu.raw("Decrypt", b"{not json"), "SerializationException", 400)
    expect_raw_error(emu.raw("GenerateRandom", {"NumberOfBytes": "8"}),
                     "SerializationException", 400)
    expect_raw_error(emu.raw("Encrypt", {"KeyId": "alias/pgck-test", "Plaintext": "eA==",
                                         "EncryptionContext": {"a": 1}}),
                     "SerializationException", 400)
    expect_error(lambda: kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"x",
                                     EncryptionAlgorithm="RSAES_OAEP_SHA_256"),
                 "InvalidKeyUsageException", 400)
    # DryRun is newer than this botocore's model: raw request.
    expect_raw_error(emu.raw("GenerateDataKey", {"KeyId": "alias/pgck-test", "KeySpec": "AES_256",
                                                 "DryRun": True}), "DryRunOperationException", 412)


@test
def encryption_context_is_bound(emu):
    context = {"table": "users", "column": "email"}
    blob = emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"ctx",
                           EncryptionContext=context)["CiphertextBlob"]
    equal(emu.kms.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(
        list(context.items()))))["Plaintext"], b"ctx", "member order does not matter")
    for wrong in [None, {}, {"table": "users"}, {"table": "users", "column": "Email"},
                  {"Table": "users", "column": "email"}, dict(context, extra="x")]:
        kwargs = {} if wrong is None else {"EncryptionContext": wrong}
        expect_error(lambda: emu.kms.decrypt(CiphertextBlob=blob, **kwargs),
                     "InvalidCiphertextException", 400)
        expect_error(lambda: emu.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=
                                                "alias/pgck-test-2", **(
                                                    {} if wrong is None else
                                                    {"SourceEncryptionContext": wrong})),
                     "InvalidCiphertextException", 400)
    # No context and an empty context are the same thing.
    plain = emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"none")["CiphertextBlob"]
    equal(emu.kms.decrypt(CiphertextBlob=plain, EncryptionContext={})["Plaintext"], b"none",
          "{} == no context")
    # ReEncrypt binds the destination context.
    moved = emu.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=context,
                               DestinationKeyId="alias/pgck-test-2",
                               DestinationEncryptionContext={"row": "7"})["CiphertextBlob"]
    equal(emu.kms.decrypt(CiphertextBlob=moved, EncryptionContext={"row": "7"})["Plaintext"],
          b"ctx", "destination context")
    expect_error(lambda: emu.kms.decrypt(CiphertextBlob=moved, EncryptionContext=context),
                 "InvalidCiphertextException", 400)


@test
def incorrect_key(emu):
    blob = emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"k")["CiphertextBlob"]
    expect_error(lambda: emu.kms.decrypt(CiphertextBlob=blob, KeyId="alias/pgck-test-2"),
                 "IncorrectKeyException", 400)
    expect_error(lambda: emu.kms.re_encrypt(CiphertextBlob=blob, SourceKeyId="alias/pgck-demo",
                                            DestinationKeyId="alias/pgck-test"),
                 "IncorrectKeyException", 400)
    expect_error(lambda: emu.kms.decrypt(CiphertextBlob=blob, KeyId="alias/pgck-nope"),
                 "NotFoundException", 404)


@test
def alias_operations_and_repointing(emu):
    """CreateAlias/UpdateAlias/DeleteAlias as AWS does them, and what re-pointing an alias does to
    ciphertexts made through it: Decrypt naming the alias resolves it now (IncorrectKeyException
    once it names another key), Decrypt naming the key ARN or no KeyId still works, and every
    response carries the key ARN."""
    kms = emu.kms
    a = emu.ctl("create-key", {})
    b = emu.ctl("create-key", {})
    alias = "alias/pgck-selftest-%s" % uuid.uuid4().hex[:8]
    equal(kms.create_alias(AliasName=alias, TargetKeyId=a["key_id"])["ResponseMetadata"]
          ["HTTPStatusCode"], 200, "CreateAlias status")
    expect_error(lambda: kms.create_alias(AliasName=alias, TargetKeyId=b["key_id"]),
                 "AlreadyExistsException", 400)
    expect_error(lambda: kms.create_alias(AliasName="pgck-no-prefix", TargetKeyId=a["key_id"]),
                 "InvalidAliasNameException", 400)
    expect_error(lambda: kms.create_alias(AliasName="alias/aws/pgck", TargetKeyId=a["key_id"]),
                 "InvalidAliasNameException", 400)
    expect_error(lambda: kms.create_alias(AliasName="alias/bad name", TargetKeyId=a["key_id"]),
                 "ValidationException", 400)
    expect_error(lambda: kms.create_alias(AliasName=alias + "-x", TargetKeyId="alias/pgck-test"),
                 "ValidationException", 400)
    expect_error(lambda: kms.create_alias(AliasName=alias + "-x",
                                          TargetKeyId=str(uuid.uuid4())),
                 "NotFoundException", 404)
    expect_error(lambda: kms.update_alias(AliasName=alias + "-none", TargetKeyId=b["key_id"]),
                 "NotFoundException", 404)

    made = kms.generate_data_key(KeyId=alias, KeySpec="AES_256")
    equal(made["KeyId"], a["arn"], "GenerateDataKey through an alias reports the key ARN")
    blob = made["CiphertextBlob"]

    kms.update_alias(AliasName=alias, TargetKeyId=b["arn"])
    equal(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"], b["arn"], "alias re-pointed")
    expect_error(lambda: kms.decrypt(CiphertextBlob=blob, KeyId=alias),
                 "IncorrectKeyException", 400)
    expect_error(lambda: kms.re_encrypt(CiphertextBlob=blob, SourceKeyId=alias,
                                        DestinationKeyId=b["arn"]),
                 "IncorrectKeyException", 400)
    for how, extra in (("key ARN", {"KeyId": a["arn"]}), ("no KeyId", {})):
        out = kms.decrypt(CiphertextBlob=blob, **extra)
        equal(out["Plaintext"], made["Plaintext"], "Decrypt by %s after re-pointing" % how)
        equal(out["KeyId"], a["arn"], "Decrypt by %s reports the key ARN" % how)
    moved = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=alias)
    equal((moved["SourceKeyId"], moved["KeyId"]), (a["arn"], b["arn"]),
          "ReEncrypt without SourceKeyId reports both ARNs")
    equal(kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], KeyId=alias)["Plaintext"],
          made["Plaintext"], "re-wrapped blob decrypts through the re-pointed alias")

    emu.ctl("schedule-deletion", {"key_id": a["key_id"], "days": 7})
    expect_error(lambda: kms.update_alias(AliasName=alias, TargetKeyId=a["key_id"]),
                 "KMSInvalidStateException", 409)
    kms.delete_alias(AliasName=alias)
    expect_error(lambda: kms.delete_alias(AliasName=alias), "NotFoundException", 404)
    expect_error(lambda: kms.describe_key(KeyId=alias), "NotFoundException", 404)


@test
def tampered_ciphertext(emu):
    blob = emu.kms.generate_data_key(KeyId="alias/pgck-test", KeySpec="AES_256",
                                     EncryptionContext={"a": "b"})["CiphertextBlob"]
    kms = emu.raw_kms
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        expect_error(lambda: kms.decrypt(CiphertextBlob=bytes(bad), EncryptionContext={"a": "b"}),
                     "InvalidCiphertextException", 400)
    for bad in (blob[:-1], blob[:20], blob + b"\0", b"\x01" * 80, os.urandom(184)):
        expect_error(lambda: kms.decrypt(CiphertextBlob=bad, EncryptionContext={"a": "b"}),
                     "InvalidCiphertextException", 400)
    return "%d single-byte flips" % len(blob)


@test
def disabled_and_pending_deletion(emu):
    with TempKey(emu) as key:
        blob = emu.kms.encrypt(KeyId=key.key_id, Plaintext=b"d")["CiphertextBlob"]
        other = emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"o")["CiphertextBlob"]

        def crypto_ops_fail(error_type, status):
            for call in (
                    lambda: emu.kms.generate_data_key(KeyId=key.key_id, KeySpec="AES_256"),
                    lambda: emu.kms.generate_data_key_without_plaintext(KeyId=key.arn,
                                                                        KeySpec="AES_128"),
                    lambda: emu.kms.encrypt(KeyId=key.key_id, Plaintext=b"x"),
                    lambda: emu.kms.decrypt(CiphertextBlob=blob),
                    lambda: emu.kms.re_encrypt(CiphertextBlob=blob,
                                               DestinationKeyId="alias/pgck-test"),
                    lambda: emu.kms.re_encrypt(CiphertextBlob=other,
                                               DestinationKeyId=key.key_id)):
                expect_error(call, error_type, status, key.arn)

        emu.ctl("disable-key", {"key_id": key.key_id})
        crypto_ops_fail("DisabledException", 409)
        metadata = emu.kms.describe_key(KeyId=key.key_id)["KeyMetadata"]
        equal((metadata["Enabled"], metadata["KeyState"]), (False, "Disabled"), "disabled")
        emu.ctl("enable-key", {"key_id": key.key_id})
        equal(emu.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"d", "after enable")
        emu.ctl("schedule-deletion", {"key_id": key.key_id, "days": 7})
        crypto_ops_fail("KMSInvalidStateException", 409)
        metadata = emu.kms.describe_key(KeyId=key.key_id)["KeyMetadata"]
        equal((metadata["Enabled"], metadata["KeyState"], metadata["PendingDeletionWindowInDays"]),
              (False, "PendingDeletion", 7), "pending deletion")
        check("DeletionDate" in metadata, "no DeletionDate")
        emu.ctl("cancel-deletion", {"key_id": key.key_id})
        equal(emu.kms.describe_key(KeyId=key.key_id)["KeyMetadata"]["KeyState"], "Disabled",
              "a cancelled deletion leaves the key disabled, as in AWS")


def raw_ok(emu, op, body):
    status, _, result = emu.raw(op, body)
    equal(status, 200, "%s status (%s)" % (op, result))
    return result


@test
def rotation_keeps_old_ciphertexts(emu):
    """Raw requests: KeyMaterialId members are newer than this botocore's model."""
    with TempKey(emu) as key:
        old = raw_ok(emu, "GenerateDataKey", {"KeyId": key.key_id, "KeySpec": "AES_256",
                                              "EncryptionContext": {"v": "1"}})

        def current():
            return raw_ok(emu, "DescribeKey", {"KeyId": key.key_id})["KeyMetadata"][
                "CurrentKeyMaterialId"]
        before = current()
        equal(old["KeyMaterialId"], before, "KeyMaterialId of a new key")
        rotated = emu.ctl("rotate-key", {"key_id": key.key_id})
        equal(rotated["material_version"], 2, "material version after rotation")
        after = current()
        check(after != before, "CurrentKeyMaterialId did not change")
        dec = raw_ok(emu, "Decrypt", {"CiphertextBlob": old["CiphertextBlob"],
                                      "EncryptionContext": {"v": "1"}})
        equal((dec["Plaintext"], dec["KeyMaterialId"]), (old["Plaintext"], before),
              "old ciphertext after rotation")
        new = raw_ok(emu, "GenerateDataKey", {"KeyId": key.key_id, "KeySpec": "AES_256"})
        equal(new["KeyMaterialId"], after, "new ciphertexts use the new material")
        dec = raw_ok(emu, "Decrypt", {"CiphertextBlob": new["CiphertextBlob"]})
        equal((dec["Plaintext"], dec["KeyMaterialId"]), (new["Plaintext"], after),
              "new ciphertext")
        moved = raw_ok(emu, "ReEncrypt", {"CiphertextBlob": old["CiphertextBlob"],
                                          "SourceEncryptionContext": {"v": "1"},
                                          "DestinationKeyId": key.key_id})
        equal((moved["SourceKeyMaterialId"], moved["DestinationKeyMaterialId"]), (before, after),
              "ReEncrypt onto the new material")


@test
def unknown_operation_and_routing(emu):
    expect_raw_error(emu.raw("CreateKey", {}), "UnknownOperationException", 400)
    expect_raw_error(emu.send(*emu.signed("x", {}, headers={"X-Amz-Target": "Bogus.Op"})),
                     "UnknownOperationException", 400)
    equal(emu.send({}, b"", method="GET", path="/no/such/path")[0], 404, "unknown path")


@test
def sigv4_refusals(emu):
    body = {"KeyId": "alias/pgck-test"}
    headers, data = emu.signed("DescribeKey", body)
    equal(emu.send(headers, data)[0], 200, "a correctly signed raw request")

    def variant(**changes):
        h = dict(headers)
        for name, value in changes.items():
            name = name.replace("_", "-")
            if value is None:
                h.pop(name, None)
            else:
                h[name] = value
        return h

    expect_raw_error(emu.send(variant(Authorization=None), data),
                     "MissingAuthenticationTokenException", 400)
    auth = headers["Authorization"]
    for broken in (auth.split(", Signature=")[0], "AWS4-HMAC-SHA256 garbage", "Bearer x",
                   auth.replace("/us-east-1/kms/aws4_request", "/us-east-1/kms")):
        expect_raw_error(emu.send(variant(Authorization=broken), data),
                         "IncompleteSignatureException", 400)
    expect_raw_error(emu.send(variant(X_Amz_Date="2025-01-01T00:00:00Z"), data),
                     "IncompleteSignatureException", 400)
    expect_raw_error(emu.send(variant(X_Amz_Date=None), data), "IncompleteSignatureException",
                     400)
    # Changed after signing: body, a signed header, the signature itself.
    expect_raw_error(emu.send(headers, json.dumps({"KeyId": "alias/pgck-demo"}).encode()),
                     "InvalidSignatureException", 400)
    expect_raw_error(emu.send(variant(X_Amz_Target="TrentService.GenerateRandom"), data),
                     "InvalidSignatureException", 400)
    expect_raw_error(emu.send(variant(Authorization=auth[:-4] + "0000"), data),
                     "InvalidSignatureException", 400)
    # Wrong service in the scope; host not signed.
    expect_raw_error(emu.send(*emu.signed("DescribeKey", body, service="s3")),
                     "InvalidSignatureException", 400)
    unsigned_host = re.sub(r"SignedHeaders=[^,]*", "SignedHeaders=content-type;x-amz-date", auth)
    message = expect_raw_error(emu.send(variant(Authorization=unsigned_host), data),
                               "InvalidSignatureException", 400)
    check("Host" in message, "host-not-signed message: %s", message)
    # Through botocore: unknown access key, wrong secret.
    stranger = Credentials("AKIDPGCKUNKNOWN000000", SECRET_KEY)
    message = expect_error(lambda: emu.client(creds=stranger).describe_key(KeyId="alias/pgck-test"),
                           "UnrecognizedClientException", 400)
    equal(message, "The security token included in the request is invalid.", "message")
    expect_error(lambda: emu.client(creds=Credentials(ACCESS_KEY, SECRET_KEY + "x"))
                 .describe_key(KeyId="alias/pgck-test"), "InvalidSignatureException", 400,
                 "does not match")
    # A static key with a session token is not a valid token.
    expect_error(lambda: emu.client(creds=Credentials(ACCESS_KEY, SECRET_KEY, "sometoken"))
                 .describe_key(KeyId="alias/pgck-test"), "UnrecognizedClientException", 400)


class _shifted_botocore:
    """botocore signing with its clock moved by this many minutes. This botocore signs with
    the AWS CRT (C) signer when awscrt is installed, else in Python: both are moved."""

    def __init__(self, minutes):
        shift = datetime.timedelta(minutes=minutes)

        class Shifted(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return datetime.datetime.utcnow() + shift

        fake = types.SimpleNamespace(datetime=Shifted, timezone=datetime.timezone,
                                     timedelta=datetime.timedelta)
        modules = [botocore.auth] + ([botocore_crt_auth] if botocore_crt_auth else [])
        self.patches = [mock.patch.object(m, "datetime", fake) for m in modules]

    def __enter__(self):
        for patch in self.patches:
            patch.start()

    def __exit__(self, *exc):
        for patch in self.patches:
            patch.stop()


@test
def clock_skew(emu):
    kms = emu.fresh_client()
    for minutes, outcome in ((-16, "Signature expired"), (16, "Signature not yet current"),
                             (-14, None), (14, None)):
        with _shifted_botocore(minutes):
            if outcome is None:
                kms.describe_key(KeyId="alias/pgck-test")
            else:
                expect_error(lambda: kms.describe_key(KeyId="alias/pgck-test"),
                             "InvalidSignatureException", 400, outcome)
    # The server's own clock, moved through the control API.
    try:
        emu.ctl("set-clock", {"skew_seconds": 20 * 60})
        expect_error(lambda: kms.describe_key(KeyId="alias/pgck-test"),
                     "InvalidSignatureException", 400, "Signature expired")
        status, response, _ = emu.raw("DescribeKey", {"KeyId": "alias/pgck-test"})
        server_date = email_date(response.getheader("Date"))
        check(abs(server_date - time.time() - 1200) < 5, "Date header does not show the skew")
    finally:
        emu.ctl("set-clock", {"skew_seconds": 0})
    kms.describe_key(KeyId="alias/pgck-test")


def email_date(value):
    import email.utils
    return email.utils.parsedate_to_datetime(value).timestamp()


def _sts_credentials(emu, token=WEB_IDENTITY_TOKEN, **extra):
    sts = emu.client("sts", creds=None)
    answer = sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::%s:role/pgck-test-role" % ACCOUNT, RoleSessionName="selftest",
        WebIdentityToken=token, **extra)
    c = answer["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]), c


@test
def sts_web_identity(emu):
    before = emu.ctl("credential-fetches")["credential_fetches"]
    creds, raw = _sts_credentials(emu)
    check(creds.access_key.startswith("ASIA") and len(creds.access_key) == 20, "AKID %s",
          creds.access_key)
    remaining = raw["Expiration"].timestamp() - time.time()
    check(3500 < remaining <= 3601, "default expiration is %d s away, not 1 h", remaining)
    kms = emu.client(creds=creds)
    equal(kms.describe_key(KeyId="alias/pgck-test")["KeyMetadata"]["KeyState"], "Enabled",
          "KMS call with STS credentials")
    expect_error(lambda: _sts_credentials(emu, token="wrong"), "InvalidIdentityToken", 400)
    sts = emu.client("sts", creds=None, parameter_validation=False)
    expect_error(lambda: sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::1:role/x",
                                                           RoleSessionName="s"),
                 "ValidationError", 400)
    try:
        emu.ctl("set-credentials", {"expiration_seconds": 120})
        _, short = _sts_credentials(emu)
        remaining = short["Expiration"].timestamp() - time.time()
        check(100 < remaining <= 121, "set expiration 120 s, got %d s", remaining)
    finally:
        emu.ctl("set-credentials", {"expiration_seconds": None})
    after = emu.ctl("credential-fetches")["credential_fetches"]
    equal(after.get("sts", 0) - before.get("sts", 0), 2, "sts fetch count")
    # Raw: the XML document and its error form.
    form = ("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A"
            "111122223333%3Arole%2Fr&RoleSessionName=s&WebIdentityToken=")
    status, response, text = emu.send({"Content-Type": "application/x-www-form-urlencoded"},
                                      (form + WEB_IDENTITY_TOKEN).encode())
    equal(status, 200, "raw STS status")
    check("<AssumeRoleWithWebIdentityResponse" in text and "<SessionToken>" in text,
          "raw STS body")
    status, _, text = emu.send({"Content-Type": "application/x-www-form-urlencoded"},
                               (form + "bad").encode())
    check(status == 400 and "<Code>InvalidIdentityToken</Code>" in text, "raw STS error")


@test
def temporary_credentials_rules(emu):
    creds, _ = _sts_credentials(emu)
    kms = emu.client(creds=creds)
    kms.describe_key(KeyId="alias/pgck-test")
    # No token, a wrong token, an unsigned token.
    expect_error(lambda: emu.client(creds=Credentials(creds.access_key, creds.secret_key))
                 .describe_key(KeyId="alias/pgck-test"), "UnrecognizedClientException", 400)
    expect_error(lambda: emu.client(creds=Credentials(creds.access_key, creds.secret_key,
                                                      creds.token[:-2] + "xx"))
                 .describe_key(KeyId="alias/pgck-test"), "UnrecognizedClientException", 400)
    headers, data = emu.signed("DescribeKey", {"KeyId": "alias/pgck-test"},
                               creds=Credentials(creds.access_key, creds.secret_key))
    headers["X-Amz-Security-Token"] = creds.token
    message = expect_raw_error(emu.send(headers, data), "InvalidSignatureException", 400)
    check("X-Amz-Security-Token" in message, "unsigned token message: %s", message)
    # Expired, then revoked.
    expired = emu.ctl("expire-credentials", {"access_key_id": creds.access_key})["expired"]
    equal(expired, [creds.access_key], "expired list")
    expect_error(lambda: kms.describe_key(KeyId="alias/pgck-test"), "ExpiredTokenException", 400,
                 "expired")
    emu.ctl("revoke-credentials", {"access_key_id": creds.access_key})
    expect_error(lambda: kms.describe_key(KeyId="alias/pgck-test"),
                 "UnrecognizedClientException", 400)
    # Credentials issued already expired.
    try:
        emu.ctl("set-credentials", {"expiration_seconds": -60})
        stale, _ = _sts_credentials(emu)
    finally:
        emu.ctl("set-credentials", {"expiration_seconds": None})
    expect_error(lambda: emu.client(creds=stale).describe_key(KeyId="alias/pgck-test"),
                 "ExpiredTokenException", 400)
    # A server clock moved past the expiration expires them too.
    fresh, _ = _sts_credentials(emu)
    try:
        emu.ctl("set-clock", {"skew_seconds": 3700})
        with _shifted_botocore(3700 / 60):
            expect_error(lambda: emu.client(creds=fresh).describe_key(KeyId="alias/pgck-test"),
                         "ExpiredTokenException", 400)
    finally:
        emu.ctl("set-clock", {"skew_seconds": 0})


@test
def ecs_container_credentials(emu):
    before = emu.ctl("credential-fetches")["credential_fetches"].get("ecs", 0)
    provider = ContainerProvider(environ={
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": emu.url + "/ecs/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": ECS_TOKEN})
    creds = provider.load().get_frozen_credentials()
    check(creds.access_key.startswith("ASIA") and creds.token, "ECS credentials")
    emu.client(creds=Credentials(creds.access_key, creds.secret_key, creds.token)) \
        .describe_key(KeyId="alias/pgck-test")
    status, _, body = emu.send({"Authorization": ECS_TOKEN}, None, method="GET",
                               path="/ecs/v2/credentials/abc")
    equal(status, 200, "any path under /ecs/")
    equal(sorted(body), sorted(["AccessKeyId", "SecretAccessKey", "Token", "Expiration",
                                "RoleArn"]), "ECS members")
    check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body["Expiration"]), "ISO 8601")
    equal(emu.send({}, None, method="GET", path="/ecs/credentials")[0], 401, "no Authorization")
    equal(emu.send({"Authorization": "wrong"}, None, method="GET", path="/ecs/credentials")[0],
          401, "wrong Authorization")
    after = emu.ctl("credential-fetches")["credential_fetches"].get("ecs", 0)
    equal(after - before, 2, "ecs fetch count")


@test
def imds_v2_credentials(emu):
    before = emu.ctl("credential-fetches")["credential_fetches"]
    fetcher = InstanceMetadataFetcher(timeout=5, num_attempts=1, base_url=emu.url + "/")
    creds = InstanceMetadataProvider(fetcher).load().get_frozen_credentials()
    check(creds.access_key.startswith("ASIA") and creds.token, "IMDS credentials")
    emu.client(creds=Credentials(creds.access_key, creds.secret_key, creds.token)) \
        .describe_key(KeyId="alias/pgck-test")
    base = "/latest/meta-data/iam/security-credentials/"
    equal(emu.send({}, None, method="GET", path=base)[0], 401, "IMDSv1 (no token) refused")
    equal(emu.send({}, None, method="PUT", path="/latest/api/token")[0], 400, "PUT without TTL")
    status, _, token = emu.send({"X-aws-ec2-metadata-token-ttl-seconds": "60"}, None,
                                method="PUT", path="/latest/api/token")
    equal(status, 200, "token status")
    equal(emu.send({"X-aws-ec2-metadata-token": "bogus"}, None, method="GET", path=base)[0], 401,
          "bad token")
    status, _, role = emu.send({"X-aws-ec2-metadata-token": token}, None, method="GET", path=base)
    equal((status, role), (200, IMDS_ROLE), "role name")
    status, _, body = emu.send({"X-aws-ec2-metadata-token": token}, None, method="GET",
                               path=base + IMDS_ROLE)
    equal(status, 200, "credentials status")
    equal(sorted(body), sorted(["Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey",
                                "Token", "Expiration"]), "IMDS members")
    equal((body["Code"], body["Type"]), ("Success", "AWS-HMAC"), "Code/Type")
    equal(emu.send({"X-aws-ec2-metadata-token": token}, None, method="GET",
                   path=base + "other-role")[0], 404, "unknown role")
    after = emu.ctl("credential-fetches")["credential_fetches"]
    equal(after.get("imds", 0) - before.get("imds", 0), 2, "imds fetch count")
    equal(after.get("imds_token", 0) - before.get("imds_token", 0), 2, "imds token count")


@test
def error_faults(emu):
    blob = emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"f")["CiphertextBlob"]
    cases = [("throttle", "ThrottlingException", 400), ("internal", "KMSInternalException", 500),
             ("unavailable", "KeyUnavailableException", 500),
             ("dependency_timeout", "DependencyTimeoutException", 503),
             ("access_denied", "AccessDeniedException", 400)]
    for kind, error_type, status in cases:
        before = emu.stats()
        with Faults(emu, {"op": "Decrypt", "kind": kind, "count": 2}):
            emu.kms.describe_key(KeyId="alias/pgck-test")      # other operations unaffected
            for _ in range(2):
                expect_error(lambda: emu.kms.decrypt(CiphertextBlob=blob), error_type, status)
            equal(emu.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"f", kind + " exhausted")
            equal(emu.ctl("faults")["faults"], [], "count-limited fault removed")
        after = emu.stats()
        equal(delta(before, after, "errors", error_type), 2, error_type + " error count")
        equal(delta(before, after, "faults", kind), 2, kind + " fault count")
    with Faults(emu, {"op": "*", "kind": "throttle", "count": 3}):
        for call in (lambda: emu.kms.generate_random(NumberOfBytes=8),
                     lambda: emu.kms.describe_key(KeyId="alias/pgck-test"),
                     lambda: emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"x")):
            expect_error(call, "ThrottlingException", 400, "Rate exceeded")
        emu.kms.generate_random(NumberOfBytes=8)
    with Faults(emu, {"op": "Encrypt", "kind": "access_denied", "count": -1}):
        for _ in range(3):
            expect_error(lambda: emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"x"),
                         "AccessDeniedException", 400, "kms:Encrypt")
    status, answer = emuctl.control(emu.port, "set-fault", {"op": "Decrypt", "kind": "nope"})
    equal(status, 400, "unknown fault kind refused")


@test
def sdk_retries_through_throttling(emu):
    """botocore standard mode (3 attempts) gets through 2 throttles; 3 calls reach the server."""
    kms = emu.client(attempts=3)
    before = emu.stats()
    with Faults(emu, {"op": "GenerateDataKey", "kind": "throttle", "count": 2}):
        kms.generate_data_key(KeyId="alias/pgck-test", KeySpec="AES_256")
    equal(delta(before, emu.stats(), "calls", "GenerateDataKey"), 3, "calls incl. retries")


@test
def delay_fault(emu):
    with Faults(emu, {"op": "DescribeKey", "kind": "delay", "delay_ms": 300}):
        started = time.monotonic()
        emu.kms.describe_key(KeyId="alias/pgck-test")
        elapsed = time.monotonic() - started
    check(elapsed >= 0.3, "delay of 300 ms took %.3f s", elapsed)
    return "%.2f s" % elapsed


@test
def hang_fault(emu):
    kms = emu.client(read_timeout=1)
    with Faults(emu, {"op": "Decrypt", "kind": "hang", "count": 1}):
        started = time.monotonic()
        try:
            kms.decrypt(CiphertextBlob=b"x" * 64)
            raise Failure("a hung call answered")
        except ReadTimeoutError:
            pass
        elapsed = time.monotonic() - started
        check(0.9 < elapsed < 5, "client timeout after %.2f s", elapsed)
    # A hung request is answered once the fault is cleared.
    emu.ctl("set-fault", {"op": "DescribeKey", "kind": "hang"})
    answer = {}

    def hung_call():
        answer["result"] = emu.raw("DescribeKey", {"KeyId": "alias/pgck-test"})
    thread = threading.Thread(target=hung_call)
    thread.start()
    time.sleep(0.5)
    check(thread.is_alive(), "the hung request was answered before the fault was cleared")
    emu.ctl("clear-faults")
    thread.join(10)
    equal(answer["result"][0], 200, "answer after clear-faults")


@test
def reset_fault(emu):
    with Faults(emu, {"op": "Decrypt", "kind": "reset", "count": 1}):
        try:
            emu.kms.decrypt(CiphertextBlob=b"x" * 64)
            raise Failure("a reset call answered")
        except (ConnectionClosedError, HTTPClientError) as e:
            error = e
    # The same on a bare socket: an RST (ECONNRESET), not an orderly close.
    with Faults(emu, {"op": "Decrypt", "kind": "reset", "count": 1}):
        headers, data = emu.signed("Decrypt", {"CiphertextBlob": "eA=="})
        sock = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
        try:
            request = "POST / HTTP/1.1\r\n" + "".join(
                "%s: %s\r\n" % item for item in headers.items()) + \
                "Host: 127.0.0.1:%d\r\nContent-Length: %d\r\n\r\n" % (emu.port, len(data))
            sock.sendall(request.encode() + data)
            try:
                got = sock.recv(100)
                raise Failure("expected a reset, read %r" % got)
            except ConnectionResetError:
                pass
        finally:
            sock.close()
    emu.kms.describe_key(KeyId="alias/pgck-test")
    return type(error).__name__


@test
def credential_endpoint_faults(emu):
    with Faults(emu, {"op": "imds", "kind": "internal", "count": 1}):
        _, _, token = emu.send({"X-aws-ec2-metadata-token-ttl-seconds": "60"}, None,
                               method="PUT", path="/latest/api/token")
        path = "/latest/meta-data/iam/security-credentials/" + IMDS_ROLE
        equal(emu.send({"X-aws-ec2-metadata-token": token}, None, method="GET", path=path)[0],
              500, "IMDS internal fault")
        equal(emu.send({"X-aws-ec2-metadata-token": token}, None, method="GET", path=path)[0],
              200, "IMDS after the fault")
    with Faults(emu, {"op": "sts", "kind": "throttle", "count": 1}):
        try:
            _sts_credentials(emu)
            raise Failure("sts fault did not fire")
        except ClientError as e:
            equal((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]),
                  ("Throttling", 400), "sts throttle")


@test
def keep_alive(emu):
    kms = emu.fresh_client()
    kms.describe_key(KeyId="alias/pgck-test")   # opens the connection
    before = emu.stats()
    calls = 25
    for i in range(calls):
        kms.generate_random(NumberOfBytes=8)
    after = emu.stats()
    equal(after["connections"] - before["connections"], 0, "new connections for %d calls" % calls)
    equal(after["requests"] - before["requests"], calls, "requests")
    # A fresh client: one connection for all its calls.
    kms = emu.fresh_client()
    before = emu.stats()
    for i in range(calls):
        kms.describe_key(KeyId="alias/pgck-test")
    after = emu.stats()
    equal(after["connections"] - before["connections"], 1, "connections of a fresh client")
    return "%d calls, 1 connection" % calls


@test
def key_limited_faults(emu):
    """A fault limited to a key fires for requests naming it (any form) or carrying its
    ciphertext, and only for those; the request's keys are looked at only when such a fault
    is armed, so this also checks that path."""
    kms = emu.kms
    mine = TempKey(emu)
    other_blob = kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"o")["CiphertextBlob"]
    with mine:
        blob = kms.encrypt(KeyId=mine.key_id, Plaintext=b"m")["CiphertextBlob"]
        with Faults(emu, {"op": "*", "kind": "throttle", "count": -1, "key_id": mine.arn}):
            equal(kms.decrypt(CiphertextBlob=other_blob)["Plaintext"], b"o", "another key")
            kms.generate_random(NumberOfBytes=8)
            for call in (lambda: kms.decrypt(CiphertextBlob=blob),
                         lambda: kms.encrypt(KeyId=mine.arn, Plaintext=b"x"),
                         lambda: kms.describe_key(KeyId=mine.key_id),
                         lambda: kms.re_encrypt(CiphertextBlob=other_blob,
                                                DestinationKeyId=mine.key_id)):
                expect_error(call, "ThrottlingException", 400, "Rate exceeded")
        with Faults(emu, {"op": "Decrypt", "kind": "access_denied", "count": 1,
                          "key_id": mine.key_id},
                    {"op": "Decrypt", "kind": "throttle", "count": 1}):
            expect_error(lambda: kms.decrypt(CiphertextBlob=other_blob), "ThrottlingException",
                         400)
            expect_error(lambda: kms.decrypt(CiphertextBlob=blob), "AccessDeniedException", 400)
            equal(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"m", "both faults used up")


def _exchange(port, data):
    """Send raw bytes, half-close, and read everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        out = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(out)
            out.append(chunk)


def _idle_exchange(port, parts):
    """Send parts 0.1 s apart, then nothing: what the server answers until it drops us."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for part in parts:
            conn.sendall(part)
            time.sleep(0.1)
        started, out = time.monotonic(), []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                check(time.monotonic() - started < 5, "dropped only after %.1f s",
                      time.monotonic() - started)
                return b"".join(out)
            out.append(chunk)


@test
def gcm_opens_as_aesgcm(emu):
    """gcm.open (libcrypto through ctypes, the GIL held) answers as AESGCM.decrypt, tampered
    and short inputs included."""
    import gcm
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    if gcm.open is None:
        return "libcrypto not loadable: keystore uses AESGCM"
    cases = 0
    for size in (16, 24, 32):
        for n in range(150):
            key, nonce = os.urandom(size), os.urandom(12)
            plaintext, aad = os.urandom(n % 70), os.urandom(n % 45)
            sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
            flip = n % len(sealed)
            variants = [(key, nonce, sealed, aad),
                        (key, nonce, sealed[:flip] + bytes([sealed[flip] ^ 0x20])
                         + sealed[flip + 1:], aad),
                        (key, nonce, sealed, aad + b"x"), (key, os.urandom(12), sealed, aad),
                        (os.urandom(size), nonce, sealed, aad), (key, nonce, sealed[:n % 16], aad)]
            for args in variants:
                results = []
                for fn in (gcm.open, lambda *a: AESGCM(a[0]).decrypt(*a[1:])):
                    try:
                        results.append(fn(*args))
                    except InvalidTag:
                        results.append("InvalidTag")
                equal(results[0], results[1], "gcm.open vs AESGCM")
                cases += 1
    return "%d cases" % cases


_VOLATILE = re.compile(rb"Date: [^\r]*|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                       rb"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# Header blocks the email package reads in its own ways (continuations, odd names, a unix-from
# line, no separator, non-ASCII, a bare CR) next to plain ones.
_HEADER_BLOCKS = [
    b"\r\n", b"", b"\n",
    b"Host: a\r\nContent-Type: x/y; charset=utf-8\r\nX-Amz-Target: T.Op\r\n\r\n",
    b"host:a\r\nHOST:  b \t\r\nHost:\r\nX:\t\tv\tw\r\n\n",
    b"A: 1\nB: 2\n\n", b"A: 1\r\nB: 2",
    b"A: 1\r\n folded\r\n\tmore\r\nB: 2\r\n\r\n", b" lead: x\r\nA: 1\r\n\r\n",
    b"From someone\r\nA: 1\r\n\r\n", b"A: 1\r\nFrom x\r\n\r\n", b": empty\r\nA: 1\r\n\r\n",
    b"No colon\r\nA: 1\r\n\r\n", b"Bad name: 1\r\n\r\n", b"A: caf\xe9\r\n\r\n",
    b"A: x\ry\r\n\r\n", b"A: x\r\r\n\r\n", b"A: \x7f\x0b\r\n\r\n", b"A:: b\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=z\r\n\r\n",
]

# Raw request sequences for the wire comparison (each connection half-closed after them).
_HTTP_CASES = [
    b"GET /_emulator/faults HTTP/1.1\r\nHost: h\r\n\r\nGET /_emulator/faults HTTP/1.1\r\n"
    b"Connection: close\r\n\r\nGET /_emulator/faults HTTP/1.1\r\n\r\n",
    b"GET /_emulator/faults HTTP/1.0\r\n\r\nGET /_emulator/faults HTTP/1.0\r\n\r\n",
    b"GET /_emulator/faults HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    b"GET //_emulator/faults HTTP/1.1\r\n\r\n",
    b"POST /_emulator/faults HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /_emulator/faults HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /_emulator/faults HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
    b"1;x=y\r\n}\r\n0\r\nTrailer: t\r\n\r\nGET /_emulator/faults HTTP/1.1\r\n\r\n",
    b"POST /_emulator/faults HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}POST / HTTP/1.1\r\n"
    b"X-Amz-Target: TrentService.Decrypt\r\n Folded: x\r\nContent-Length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=a/b/c/d/e, "
    b"SignedHeaders=host, Signature=0\r\nX-Amz-Date: 2026-01-01\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\n\r\nPATCH / HTTP/1.1\r\n\r\n",
    b"GARBAGE\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n", b"GET / HTTP/1.x\r\n\r\n",
    b"GET /_emulator/faults\r\n", b"POST /\r\n", b"\r\n", b"GET /_emulator/faults  HTTP/1.1 \r\n\r\n",
    b"GET /_emulator/faults HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /_emulator/faults HTTP/1.1\r\n" + b"X: a\r\n" * 100 + b"\r\n",
    b"GET /_emulator/faults HTTP/1.1\r\n" + b"X: a\r\n" * 99 + b"\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"GET /_emulator/faults HTTP/1.1\r\nHost: h",
]


@test
def http_parsing_matches_the_standard_library(emu):
    """The handler's own request-line and header reading and its one-write responses answer
    byte for byte as BaseHTTPRequestHandler's (and http.client.parse_headers') do."""
    import io
    from http.server import BaseHTTPRequestHandler
    import emulator
    fast = 0
    for block in _HEADER_BLOCKS:
        lines = io.BytesIO(block).readlines() or [b""]
        if lines[-1] not in (b"\r\n", b"\n", b""):
            lines.append(b"")
        ours = emulator.parse_header_lines(lines)
        stock = http.client.parse_headers(io.BytesIO(block))
        fast += isinstance(ours, emulator.Headers)
        equal(ours.items(), stock.items(), "headers of %r" % block)
        for name, _ in stock.items() + [("missing", None)]:
            for form in (name, name.lower(), name.upper()):
                equal(ours.get(form), stock.get(form), "get(%r) of %r" % (form, block))
    check(fast >= 6, "only %d header blocks took the fast path", fast)

    class FastHandler(emulator.Handler):
        timeout = 0.5

    class StockHandler(emulator.Handler):
        timeout = 0.5   # a Python socket timeout, as BaseHTTPRequestHandler has it
        setup = emulator.Handler.setup_stock
        parse_request = BaseHTTPRequestHandler.parse_request
        send_response_obj = emulator.Handler.send_response_obj_stock

    servers, answered = [], 0
    try:
        for handler in (FastHandler, StockHandler):
            server = emulator.EmulatorServer(("127.0.0.1", 0), emulator.Emulator())
            server.RequestHandlerClass = handler
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            servers.append(server)
        for data in _HTTP_CASES:
            ours, stock = (_VOLATILE.sub(b"*", _exchange(s.server_address[1], data))
                           for s in servers)
            equal(ours, stock, "answer to %r" % data[:120])
            answered += bool(stock)
        # idle past the limit: before a request, in its headers, in its body; then one in time
        for parts in ([b""], [b"GET /_emulator/faults HTTP/1.1\r\nHost: h"],
                      [b"POST /_emulator/faults HTTP/1.1\r\nContent-Length: 2\r\n\r\n{"],
                      [b"GET /_emulator/faults HTTP/1.1\r\n\r\n", b"GET /_emulator/faults"]):
            ours, stock = (_VOLATILE.sub(b"*", _idle_exchange(s.server_address[1], parts))
                           for s in servers)
            equal(ours, stock, "answer to %r, then nothing" % parts)
        check(b"200 OK" in ours, "no answer before the idle limit: %r", ours)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    check(answered == len(_HTTP_CASES) - 1, "%d exchanges answered", answered)  # not b"\r\n"
    return "%d header blocks (%d plain), %d exchanges" % (len(_HEADER_BLOCKS), fast,
                                                        len(_HTTP_CASES))


@test
def stats_and_call_log(emu):
    before = emu.stats()
    blob = emu.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"s",
                           EncryptionContext={"k": "v"})["CiphertextBlob"]
    emu.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "v"})
    expect_error(lambda: emu.kms.decrypt(CiphertextBlob=blob), "InvalidCiphertextException", 400)
    emu.kms.generate_random(NumberOfBytes=4)
    after = emu.stats()
    for op, n in (("Encrypt", 1), ("Decrypt", 2), ("GenerateRandom", 1)):
        equal(delta(before, after, "calls", op), n, op + " calls")
    equal(delta(before, after, "errors", "InvalidCiphertextException"), 1, "errors")
    equal(after["requests"] - before["requests"], 4, "requests")
    log = emu.ctl("call-log", {"last": 4})["calls"]
    _, arn = ctx_key(emu, "alias/pgck-test")
    equal([(e["op"], e["key_arn"], e["encryption_context"], e["error"]) for e in log],
          [("Encrypt", arn, {"k": "v"}, None), ("Decrypt", arn, {"k": "v"}, None),
           ("Decrypt", arn, {}, "InvalidCiphertextException"), ("GenerateRandom", None, None,
                                                                None)], "call log")
    check("s" not in json.dumps(log).replace('"', " ").split(), "plaintext in call log")
    reset = emu.ctl("reset-stats")
    equal((reset["calls"], reset["errors"], reset["requests"], reset["connections"]),
          ({}, {}, 0, 0), "after reset-stats")
    equal(emu.ctl("call-log")["calls"], [], "call log after reset")


@test
def concurrent_counting(emu):
    threads, per_thread = 8, 25
    before = emu.stats()
    errors = []

    def worker(kms):
        try:
            for _ in range(per_thread):
                kms.generate_data_key(KeyId="alias/pgck-test", KeySpec="AES_256")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    # Clients are made here: botocore's create_client is not thread-safe.
    workers = [threading.Thread(target=worker, args=(emu.fresh_client(),))
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    check(not errors, "worker errors: %s", errors[:3])
    after = emu.stats()
    equal(delta(before, after, "calls", "GenerateDataKey"), threads * per_thread, "calls")
    equal(after["connections"] - before["connections"], threads, "connections")


@test
def control_api(emu):
    made = emu.ctl("create-key", {"alias": "alias/pgck-selftest-%s" % uuid.uuid4().hex[:8]})
    check(UUID_RE.match(made["key_id"]) and ARN_RE.match(made["arn"]), "create-key %s", made)
    alias = "alias/pgck-selftest-%s" % uuid.uuid4().hex[:8]
    emu.ctl("create-alias", {"alias": alias, "key_id": made["key_id"]})
    equal(emu.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"], made["key_id"], "alias")
    other, _ = ctx_key(emu, "alias/pgck-demo")
    emu.ctl("create-alias", {"alias": alias, "key_id": other})
    equal(emu.kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"], other, "repointed alias")
    emu.ctl("delete-alias", {"alias": alias})
    expect_error(lambda: emu.kms.describe_key(KeyId=alias), "NotFoundException", 404)
    emu.ctl("schedule-deletion", {"key_id": made["key_id"], "days": 7})
    listed = {k["key_id"]: k for k in emu.ctl("list-keys")["keys"]}
    equal(listed[made["key_id"]]["state"], "PendingDeletion", "list-keys state")
    for command, args, status in (("no-such-command", {}, 404), ("disable-key", {}, 400),
                                  ("disable-key", {"key_id": "alias/none"}, 404),
                                  ("create-alias", {"alias": "bad name", "key_id": other}, 400),
                                  ("set-clock", {"skew_seconds": "x"}, 400)):
        equal(emuctl.control(emu.port, command, args)[0], status, command + " " + str(args))
    out = subprocess.run([sys.executable, os.path.join(HERE, "emuctl.py"), str(emu.port),
                          "health"], capture_output=True, text=True, timeout=30)
    equal((out.returncode, json.loads(out.stdout)["ok"]), (0, True), "emuctl.py health")


# ---------------------------------------------------------------------- private emulators
class Spawned:
    """An emulator process of this test's own, stopped with SIGTERM by pid."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(dir=SCRATCH)
        self.port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "emulator.py"), "--port-file", self.port_file]
            + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Failure("emulator did not start: %s" % self.stop()[1])
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, err


def _self_signed(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgck test emulator")])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


@test
def tls_mode(emu):
    directory = tempfile.mkdtemp(dir=SCRATCH)
    cert, key = _self_signed(directory)
    spawned = Spawned("--tls-cert", cert, "--tls-key", key)
    try:
        tls = Emu(spawned.port, "https", verify=cert)
        blob = tls.kms.encrypt(KeyId="alias/pgck-test", Plaintext=b"tls")["CiphertextBlob"]
        equal(tls.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"tls", "over TLS")
        untrusted = Emu(spawned.port, "https", verify=True)
        try:
            untrusted.kms.generate_random(NumberOfBytes=1)
            raise Failure("an untrusted certificate was accepted")
        except botocore.exceptions.SSLError:
            pass
        tls.kms.generate_random(NumberOfBytes=1)
    finally:
        code, err = spawned.stop()
    equal(code, 0, "exit status after SIGTERM (%s)" % err.strip())


@test
def state_file_and_log(emu):
    directory = tempfile.mkdtemp(dir=SCRATCH)
    state, log = os.path.join(directory, "state.json"), os.path.join(directory, "emu.log")
    first = Spawned("--state", state, "--log", log)
    try:
        one = Emu(first.port)
        made = one.ctl("create-key", {"alias": "alias/pgck-persisted"})
        gdk = one.kms.generate_data_key(KeyId="alias/pgck-persisted", KeySpec="AES_256")
        one.ctl("rotate-key", {"key_id": made["key_id"]})
        sts_creds, _ = _sts_credentials(one)
        one.client(creds=sts_creds).generate_random(NumberOfBytes=8)
    finally:
        code, err = first.stop()
    equal(code, 0, "exit status after SIGTERM (%s)" % err.strip())
    check(not os.path.exists(first.port_file), "port file left behind")
    equal(os.stat(state).st_mode & 0o777, 0o600, "state file mode")
    second = Spawned("--state", state, "--log", log)
    try:
        two = Emu(second.port)
        equal(two.kms.decrypt(CiphertextBlob=gdk["CiphertextBlob"])["Plaintext"],
              gdk["Plaintext"], "decrypt after a restart")
        aliases = sorted(a for k in two.ctl("list-keys")["keys"] for a in k["aliases"])
        equal(aliases, ["alias/pgck-demo", "alias/pgck-persisted", "alias/pgck-test",
                        "alias/pgck-test-2"], "aliases after restart")
    finally:
        second.stop()
    text = open(log, encoding="utf-8").read()
    check("op=GenerateDataKey status=200" in text and "op=sts:AssumeRoleWithWebIdentity" in text,
          "log lines missing:\n%s", text)
    for secret in (SECRET_KEY, base64.b64encode(gdk["Plaintext"]).decode(),
                   sts_creds.secret_key, sts_creds.token, WEB_IDENTITY_TOKEN):
        check(secret not in text, "the log contains a secret or a plaintext")
    return "%d log lines" % len(text.splitlines())


@test
def refuses_non_loopback(emu):
    directory = tempfile.mkdtemp(dir=SCRATCH)
    port_file = os.path.join(directory, "port")
    for host in ("0.0.0.0", "192.0.2.1", "localhost", "::"):
        out = subprocess.run([sys.executable, os.path.join(HERE, "emulator.py"), "--port-file",
                              port_file, "--host", host], capture_output=True, text=True,
                             timeout=30)
        check(out.returncode != 0 and "loopback" in out.stderr, "host %s accepted", host)
        check(not os.path.exists(port_file), "port file written for %s", host)


# ====================================================================== runner
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PGCK_EMULATOR_PORT")
                                                        or 0))
    parser.add_argument("--only", help="comma-separated test names")
    args = parser.parse_args()
    global SCRATCH
    SCRATCH = tempfile.mkdtemp(prefix="pgck-emu-selftest-")
    spawned = None
    if not args.port:
        spawned = Spawned()
        args.port = spawned.port
        print("# started a private emulator on port %d" % args.port)
    emu = Emu(args.port)
    emu.ctl("health")
    selected = [t for t in TESTS if not args.only or t.__name__ in args.only.split(",")]
    failed = 0
    started_all = time.monotonic()
    try:
        for n, fn in enumerate(selected, 1):
            started = time.monotonic()
            try:
                note = fn(emu)
                print("ok %d - %s (%.2fs)%s" % (n, fn.__name__, time.monotonic() - started,
                                                " " + note if note else ""))
            except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
                failed += 1
                print("not ok %d - %s: %s" % (n, fn.__name__, e))
                if not isinstance(e, Failure):
                    traceback.print_exc(file=sys.stdout)
                emuctl.control(args.port, "clear-faults")
                emuctl.control(args.port, "set-clock", {"skew_seconds": 0})
                emuctl.control(args.port, "set-credentials", {"expiration_seconds": None})
    finally:
        if spawned:
            spawned.stop()
        shutil.rmtree(SCRATCH, ignore_errors=True)
    print("1..%d" % len(selected))
    print("# %d of %d failed, %.1f s" % (failed, len(selected), time.monotonic() - started_all))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
