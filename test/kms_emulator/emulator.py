#!/usr/bin/python3
"""AWS KMS emulator for pgcrypt_kms tests: one loopback port serves KMS, credentials and control.

    /usr/bin/python3 test/kms_emulator/emulator.py --port-file FILE [--host 127.0.0.1] [--port 0]
        [--tls-cert CERT --tls-key KEY] [--state FILE.json] [--log FILE]

Served on the one port (README.md beside this file has the details):
  POST /  X-Amz-Target: TrentService.<Op>      KMS JSON 1.1, SigV4-verified (kms_ops.py)
  POST /  form Action=AssumeRoleWithWebIdentity  STS web identity, unsigned (credentials.py)
  POST /  form Action=AssumeRole               STS AssumeRole, SigV4-verified (service sts)
  GET  /federation/credentials                  SSO portal GetRoleCredentials (bearer token)
  GET  /ecs/...                                 ECS container credentials (credentials.py)
  PUT  /latest/api/token, GET /latest/meta-data/...  EC2 IMDSv2 (credentials.py)
  /_emulator/<command>                          control API, plain JSON, no auth (control.py)

This file holds the HTTP server, SigV4 verification, fault injection and the counters.
Invariants: listens on loopback only; never writes a secret, a key or a plaintext to its log;
all shared state (keys, credentials, faults, counters) is changed under a lock; every response
carries Content-Length so connections stay alive across calls.
"""

import argparse
import base64
import calendar
import collections
import email.parser
import email.utils
import functools
import hmac
import http.client
import ipaddress
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import credentials
import sigv4
from control import handle_control
from keystore import ACCOUNT, KeyStore, KmsError
from kms_ops import KMS_OPERATIONS, Call, Params
from wire import JSON_11, Response, iso8601, json_response, text_response

MAX_SKEW = 15 * 60          # seconds a request's X-Amz-Date may be off the server clock
HANG_LIMIT = 120.0          # a "hang" fault lets go after this many seconds
MAX_BODY = 1 << 20

# HTTP status of each error type; everything else is 400 (AWS front-end errors included).
ERROR_STATUS = {
    "NotFoundException": 404,
    "DisabledException": 409,
    "KMSInvalidStateException": 409,
    "DryRunOperationException": 412,
    "KMSInternalException": 500,
    "KeyUnavailableException": 500,
    "DependencyTimeoutException": 503,
}

# Fault kinds that answer with an error, and the error for a KMS call.
FAULT_ERRORS = {
    "throttle": ("ThrottlingException", "Rate exceeded"),
    "internal": ("KMSInternalException",
                 "The request was rejected because an internal exception occurred. "
                 "The request can be retried."),
    "unavailable": ("KeyUnavailableException",
                    "The request was rejected because the specified KMS key was not available. "
                    "You can retry the request."),
    "dependency_timeout": ("DependencyTimeoutException",
                           "The system timed out while trying to fulfill the request. "
                           "You can retry the request."),
    "access_denied": ("AccessDeniedException",
                      "User: arn:aws:iam::%s:user/pgck-test is not authorized to perform: "
                      "kms:{op} because no identity-based policy allows the kms:{op} action"
                      % ACCOUNT),
}
FAULT_KINDS = set(FAULT_ERRORS) | {"delay", "hang", "reset", "forged_key_id", "huge_body"}
# forged_key_id: answers normally, but the response's KeyId names another key
# (a stand-in for a malicious or broken endpoint)
# huge_body: answers normally, its JSON followed by HUGE_BODY_PAD bytes of whitespace (still
# valid JSON): past pgcrypt_kms's response size limits (256 KiB for KMS, 1 MiB for any HTTP)
HUGE_BODY_PAD = 2 << 20
FORGED_KEY_ARN = "arn:aws:kms:us-east-1:%s:key/00000000-0000-4000-8000-0000000f0e9d" % ACCOUNT


@functools.lru_cache(maxsize=64)
def _amz_epoch(amz_date):
    """X-Amz-Date in seconds since the epoch, or None if it is not ISO 8601 basic format.
    Cached: the concurrent requests of one second carry the same stamp, and strptime is
    most of what checking one costs."""
    try:
        return calendar.timegm(time.strptime(amz_date, sigv4.TIMESTAMP_FORMAT))
    except ValueError:
        return None


class ResetConnection(Exception):
    """Raised by a "reset" fault: the handler closes the TCP connection with an RST."""


# ====================================================================== shared state
class Clock:
    """The server's clock: real time plus a skew set through the control API."""

    def __init__(self):
        self.skew = 0.0

    def now(self):
        return time.time() + self.skew


class Fault:
    def __init__(self, op, kind, count, delay_ms, released, key_id=None):
        self.op = op
        self.kind = kind
        self.remaining = count
        self.delay_ms = delay_ms
        self.released = released
        self.key_id = key_id        # only requests that involve this key (uuid), or None

    def describe(self):
        d = {"op": self.op, "kind": self.kind, "remaining": self.remaining,
             "delay_ms": self.delay_ms}
        if self.key_id is not None:
            d["key_id"] = self.key_id
        return d


class Faults:
    """Count-limited faults, matched by operation ("*": every KMS operation)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults = []
        self._released = threading.Event()

    def add(self, spec, key_id=None):
        """key_id: the canonical uuid of the key the fault is limited to (or None)."""
        op = spec.get("op", "*")
        kind = spec.get("kind")
        count = spec.get("count", 1)
        delay_ms = spec.get("delay_ms", 0)
        if op != "*" and op not in KMS_OPERATIONS and op not in credentials.ENDPOINTS:
            raise ValueError("unknown op %r" % op)
        if kind not in FAULT_KINDS:
            raise ValueError("kind must be one of %s" % ", ".join(sorted(FAULT_KINDS)))
        if not isinstance(count, int) or isinstance(count, bool) or (count < 1 and count != -1):
            raise ValueError("count must be a positive integer, or -1 for no limit")
        if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms < 0:
            raise ValueError("delay_ms must be a non-negative integer")
        if kind == "delay" and delay_ms == 0:
            raise ValueError("a delay fault needs delay_ms")
        with self._lock:
            fault = Fault(op, kind, count, delay_ms, self._released, key_id)
            self._faults.append(fault)
            return fault.describe()

    def take(self, op, key_ids=None):
        """The first armed fault for this operation (and, for a fault limited to a key, a
        request involving it: key_ids, a function returning the request's key uuids, called
        only when such a fault is armed, outside the lock), counted down; None if there is
        none."""
        involved = ()
        if key_ids is not None:
            with self._lock:
                keyed = any(fault.key_id is not None for fault in self._faults)
            if keyed:
                involved = key_ids()
        with self._lock:
            for fault in self._faults:
                if fault.key_id is not None and fault.key_id not in involved:
                    continue
                if fault.op == op or (fault.op == "*" and op in KMS_OPERATIONS):
                    if fault.remaining > 0:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def clear(self):
        """Drop every fault and let go of every hung request."""
        with self._lock:
            self._faults = []
            self._released.set()
            self._released = threading.Event()

    def listing(self):
        with self._lock:
            return [f.describe() for f in self._faults]


class Stats:
    """Counters and the call log; one lock, so concurrent requests never lose a count."""

    LOG_LIMIT = 10000

    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self._calls = collections.Counter()
            self._errors = collections.Counter()
            self._faults = collections.Counter()
            self._fetches = collections.Counter()
            self._connections = 0
            self._connections_total = 0
            self._requests = 0
            self._log = collections.deque(maxlen=self.LOG_LIMIT)

    def connection(self, total_only=False):
        with self._lock:
            if total_only:
                self._connections_total += 1
            else:
                self._connections += 1

    def request(self):
        with self._lock:
            self._requests += 1

    def call(self, op):
        with self._lock:
            self._calls[op] += 1

    def error(self, error_type):
        with self._lock:
            self._errors[error_type] += 1

    def fault(self, kind):
        with self._lock:
            self._faults[kind] += 1

    def fetch(self, endpoint):
        with self._lock:
            self._fetches[endpoint] += 1

    def log_call(self, entry):
        with self._lock:
            self._log.append(entry)

    def snapshot(self):
        with self._lock:
            return {
                "calls": dict(self._calls),
                "errors": dict(self._errors),
                "faults": dict(self._faults),
                "connections": self._connections,
                "connections_total": self._connections_total,
                "requests": self._requests,
                "credential_fetches": dict(self._fetches),
            }

    def fetches(self):
        with self._lock:
            return dict(self._fetches)

    def call_log(self, last=None):
        with self._lock:
            entries = list(self._log)
        return entries[-last:] if last else entries


class RequestLog:
    """--log: one line per request, with no secret, key or plaintext in it."""

    def __init__(self, path):
        # One write(2) per line on an O_APPEND descriptor: lines from concurrent requests do
        # not mix, and no lock is held while the write lets go of the GIL.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666) if path \
            else None

    def write(self, method, path, op, status, error_type, request_id, started):
        if self._fd is None:
            return
        line = "%s %s %s op=%s status=%d error=%s request_id=%s ms=%d\n" % (
            iso8601(time.time()), method, path, op or "-", status, error_type or "-",
            request_id or "-", (time.monotonic() - started) * 1000)
        data = line.encode("utf-8")
        fd = self._fd
        while data and fd is not None:
            data = data[os.write(fd, data):]

    def close(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


# ====================================================================== the server
class Emulator:
    """Everything the request handlers share."""

    def __init__(self, state_path=None, log_path=None):
        self.clock = Clock()
        self.keys = KeyStore(state_path)
        self.credentials = credentials.Credentials(self.clock)
        self.faults = Faults()
        self.stats = Stats()
        self.request_log = RequestLog(log_path)

    def authenticate(self, request, service):
        """Verify the request's SigV4 signature as AWS does; returns the scope's region."""
        authorization = request.header("Authorization")
        if authorization is None:
            raise KmsError("MissingAuthenticationTokenException", "Missing Authentication Token")
        try:
            auth = sigv4.parse_authorization(authorization)
        except sigv4.MalformedAuthorization as e:
            raise KmsError("IncompleteSignatureException", str(e)) from None
        amz_date = request.header("X-Amz-Date")
        if amz_date is None:
            raise KmsError("IncompleteSignatureException",
                           "Authorization header requires existence of either a 'X-Amz-Date' or "
                           "a 'Date' header. Authorization=" + sigv4.ALGORITHM)
        signed_at = _amz_epoch(amz_date)
        if signed_at is None:
            raise KmsError("IncompleteSignatureException",
                           "Date must be in ISO-8601 'basic format'. Got '%s'. See "
                           "http://en.wikipedia.org/wiki/ISO_8601" % amz_date) from None
        invalid = "InvalidSignatureException"
        if auth["terminator"] != sigv4.TERMINATOR:
            raise KmsError(invalid, "Credential should be scoped with a valid terminator: "
                                    "'aws4_request', not '%s'." % auth["terminator"])
        if auth["service"] != service:
            raise KmsError(invalid, "Credential should be scoped to correct service: '%s'. "
                           % service)
        if auth["date"] != amz_date[:8]:
            raise KmsError(invalid, "Date in Credential scope does not match YYYYMMDD from "
                                    "ISO-8601 version of date from HTTP: '%s' != '%s', from "
                                    "'%s'." % (auth["date"], amz_date[:8], amz_date))
        token = request.header("X-Amz-Security-Token")
        secret = self.credentials.secret_for(auth["access_key"], token)
        signed = auth["signed_headers"]
        for header, shown in (("host", "'Host' or ':authority'"), ("x-amz-date", "'X-Amz-Date'"),
                              ("x-amz-security-token", "'X-Amz-Security-Token'")):
            if header not in signed and (header != "x-amz-security-token" or token is not None):
                raise KmsError(invalid, "%s must be a 'SignedHeader' in the AWS Authorization."
                               % shown)
        now = self.clock.now()
        if signed_at < now - MAX_SKEW:
            raise KmsError(invalid, "Signature expired: %s is now earlier than %s (%s - 15 min.)"
                           % (amz_date, time.strftime(sigv4.TIMESTAMP_FORMAT,
                                                      time.gmtime(now - MAX_SKEW)),
                              time.strftime(sigv4.TIMESTAMP_FORMAT, time.gmtime(now))))
        if signed_at > now + MAX_SKEW:
            raise KmsError(invalid, "Signature not yet current: %s is still later than %s "
                                    "(%s + 15 min.)" % (amz_date, time.strftime(
                                        sigv4.TIMESTAMP_FORMAT, time.gmtime(now + MAX_SKEW)),
                                        time.strftime(sigv4.TIMESTAMP_FORMAT, time.gmtime(now))))
        creq = sigv4.canonical_request(request.method, request.path, request.query,
                                       request.headers, signed, request.body)
        expected = sigv4.signature(secret, auth["date"], auth["region"], auth["service"],
                                   sigv4.string_to_sign(amz_date, auth["scope"], creq))
        if not hmac.compare_digest(expected, auth["signature"]):
            raise KmsError(invalid, "The request signature we calculated does not match the "
                                    "signature you provided. Check your AWS Secret Access Key "
                                    "and signing method. Consult the service documentation for "
                                    "details.")
        return auth["region"]

    def credential_fault(self, endpoint):
        """Act out a fault armed for a credential endpoint: None, or the kind of an error
        fault, which the endpoint answers in its own format."""
        fault = self.faults.take(endpoint)
        if fault is None:
            return None
        try:
            self.apply_fault(fault, endpoint)
        except KmsError:
            return fault.kind
        return None

    def apply_fault(self, fault, op):
        """Act out a fault taken for op; returns normally if the request should then proceed."""
        self.stats.fault(fault.kind)
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000.0)
        if fault.kind == "hang":
            fault.released.wait(HANG_LIMIT)
        elif fault.kind == "reset":
            raise ResetConnection()
        elif fault.kind in FAULT_ERRORS:
            error_type, message = FAULT_ERRORS[fault.kind]
            raise KmsError(error_type, message.format(op=op))

    def keys_involved(self, body, region):
        """The uuids of the keys a KMS request names or whose ciphertext it carries (for
        faults limited to a key: a key "in an unreachable region", "denied to us")."""
        ids = set()
        for member in ("KeyId", "SourceKeyId", "DestinationKeyId"):
            ref = body.get(member)
            if isinstance(ref, str):
                try:
                    ids.add(self.keys.resolve(ref, region).key_id)
                except KmsError:
                    pass
        blob = body.get("CiphertextBlob")
        if isinstance(blob, str):
            try:
                ids.add(self.keys.key_of(base64.b64decode(blob, validate=True)).key_id)
            except (KmsError, ValueError):
                pass
        return ids

    # ------------------------------------------------------------------ KMS
    def handle_kms(self, request):
        # A request id only has to be unique: a version 4 uuid from the random module's
        # generator (seeded by the OS) costs no getrandom call, which lets go of the GIL.
        request_id = str(uuid.UUID(int=random.getrandbits(128), version=4))
        target = request.header("X-Amz-Target") or ""
        op = target[len("TrentService."):] if target.startswith("TrentService.") else target
        entry = {"time": iso8601(time.time()), "request_id": request_id, "op": op or None,
                 "key_arn": None, "encryption_context": None, "error": None}
        self.stats.call(op or "-")
        try:
            region = self.authenticate(request, "kms")
            if op not in KMS_OPERATIONS or not target.startswith("TrentService."):
                raise KmsError("UnknownOperationException", "Unknown operation %s" % target)
            if request.path != "/":
                raise KmsError("UnknownOperationException",
                               "KMS operations are served at path '/', not '%s'" % request.path)
            content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
            if content_type not in (JSON_11, "application/x-amz-json-1.0"):
                raise KmsError("UnknownOperationException",
                               "Content-Type must be %s, not '%s'" % (JSON_11, content_type))
            try:
                body = json.loads(request.body) if request.body.strip() else {}
            except ValueError:
                raise KmsError("SerializationException", "Request body is not valid JSON") \
                    from None
            if not isinstance(body, dict):
                raise KmsError("SerializationException", "Request body must be a JSON object")
            fault = self.faults.take(op, lambda: self.keys_involved(body, region))
            if fault is not None:
                self.apply_fault(fault, op)
            result = KMS_OPERATIONS[op](Call(self.keys, region, entry), Params(body))
            if fault is not None and fault.kind == "forged_key_id" and isinstance(result, dict) \
                    and "KeyId" in result:
                result["KeyId"] = FORGED_KEY_ARN
            response = json_response(200, result, JSON_11) if result is not None \
                else Response(200, "", JSON_11)
            if fault is not None and fault.kind == "huge_body":
                response.body += b" " * HUGE_BODY_PAD
        except KmsError as e:
            entry["error"] = e.error_type
            response = json_response(ERROR_STATUS.get(e.error_type, 400),
                                     {"__type": e.error_type, "message": e.message}, JSON_11,
                                     error_type=e.error_type)
        except ResetConnection:
            entry["error"] = "connection reset"
            raise
        finally:
            self.stats.log_call(entry)
        response.request_id = request_id
        return response, op


# ====================================================================== HTTP plumbing
# The limits of http.client.parse_headers, which BaseHTTPRequestHandler reads headers with.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
# A header line the email package (behind http.client.parse_headers) reads as just "name:
# value": a name of the characters it allows, printable ASCII after the colon. Each header a
# KMS client sends looks like this; any other line sends the whole block to the email package.
_PLAIN_HEADER = re.compile(rb"([!-9;-~]+):[ \t]*([\t -~]*)\r?\n\Z")


class Headers:
    """What the handler uses of http.client.HTTPMessage: get (first value, any case of the
    name) and items (every (name, value) pair in arrival order)."""

    def __init__(self, items):
        self._items = items
        self._first = {}
        for name, value in items:
            self._first.setdefault(name.lower(), value)

    def get(self, name, failobj=None):
        return self._first.get(name.lower(), failobj)

    def items(self):
        return list(self._items)


def read_headers(rfile):
    """http.client.parse_headers(rfile), with the same limits and exceptions, without the
    email package's ~50 us for a block of plain lines (see parse_header_lines)."""
    lines = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException("got more than %d headers" % MAX_HEADERS)
        if line in (b"\r\n", b"\n", b""):
            return parse_header_lines(lines)


def parse_header_lines(lines):
    """The lines of a header block, its end included, as http.client.parse_headers reads
    them: a Headers if every line is plain (_PLAIN_HEADER), else the email package's own
    HTTPMessage. selftest.py compares the two on odd blocks."""
    items = []
    for line in lines[:-1]:
        match = _PLAIN_HEADER.match(line)
        if match is None:
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
                b"".join(lines).decode("iso-8859-1"))
        items.append((match.group(1).decode("ascii"), match.group(2).decode("ascii")))
    return Headers(items)


_date_cache = (None, "")


def http_date(epoch):
    """email.utils.formatdate(epoch, usegmt=True), formatted once per second."""
    global _date_cache
    second = int(epoch)
    if not 0 <= epoch - second < 0.999999:  # negative, or rounds up to the next second
        return email.utils.formatdate(epoch, usegmt=True)
    cached = _date_cache
    if cached[0] != second:
        cached = _date_cache = (second, email.utils.formatdate(epoch, usegmt=True))
    return cached[1]


class Request:
    def __init__(self, method, path, query, headers, body):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers          # (name, value) pairs in arrival order
        self.body = body
        self._lookup = {}
        for name, value in headers:
            self._lookup.setdefault(name.lower(), value)

    def header(self, name):
        return self._lookup.get(name.lower())


class _TimedSocketIO(socket.SocketIO):
    """The SocketIO of a blocking socket with SO_RCVTIMEO: a receive that runs out of time
    raises TimeoutError, as it does on a socket with a Python timeout (plain SocketIO would
    return None, and a request cut short would be read as a whole one)."""

    def readinto(self, b):
        n = super().readinto(b)
        if n is None:
            raise TimeoutError("timed out")
        return n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 600  # an idle keep-alive connection is dropped after this

    def setup(self):
        """A plain connection is a blocking socket with the kernel's SO_RCVTIMEO/SO_SNDTIMEO:
        with a Python timeout every receive and send is a poll plus the call, each letting go
        of the GIL, which the threads of 32 busy connections then fight over. TLS keeps the
        Python timeout (the ssl module reads through it)."""
        limit = self.timeout
        if limit is not None and not isinstance(self.request, ssl.SSLSocket):
            self.timeout = None  # StreamRequestHandler.setup leaves the socket blocking
        self.setup_stock()
        if self.timeout is None and limit is not None:
            interval = struct.pack("ll", int(limit), int(limit % 1 * 1000000))
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                self.connection.setsockopt(socket.SOL_SOCKET, option, interval)
            self.rfile.raw.__class__ = _TimedSocketIO

    def setup_stock(self):
        super().setup()
        # A 100 Continue and its response go out in separate writes: without this, Nagle's
        # algorithm and the client's delayed ACK would add ~40 ms to such a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counted = False

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except BlockingIOError:
            # SO_SNDTIMEO ran out in send_error or a 100 Continue; a Python timeout's
            # TimeoutError is handled so by BaseHTTPRequestHandler
            self.close_connection = True

    def version_string(self):
        return "pgck-kms-emulator"

    def log_message(self, format, *args):
        pass  # --log has one line per request; the default would print to stderr

    def date_time_string(self, timestamp=None):
        return http_date(self.server.emulator.clock.now() if timestamp is None else timestamp)

    def parse_request(self):
        """BaseHTTPRequestHandler.parse_request, for a request line "METHOD PATH HTTP/1.1" (or
        1.0), with headers read by read_headers; any other line goes to the original."""
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.requestline = requestline
        self.command, path, self.request_version = words
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        self.close_connection = self.request_version != "HTTP/1.1"
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long",
                            str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers",
                            str(err))
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        if self.headers.get("Expect", "").lower() == "100-continue" \
                and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def do_POST(self):
        self.dispatch()

    do_GET = do_PUT = do_DELETE = do_POST

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    def dispatch(self):
        emu = self.server.emulator
        started = time.monotonic()
        url = urlsplit(self.path)
        try:
            body = self.read_body()
        except ValueError:
            self.close_connection = True
            self.send_response_obj(text_response(413, "bad or too large body\n"))
            return
        request = Request(self.command, url.path, url.query, self.headers.items(), body)
        if url.path.startswith("/_emulator/"):
            response, op = handle_control(emu, request)
        else:
            if not self.counted:
                self.counted = True
                emu.stats.connection()
            emu.stats.request()
            try:
                response, op = self.route(emu, request)
            except ResetConnection:
                emu.request_log.write(self.command, url.path, request.header("X-Amz-Target"),
                                      0, "connection-reset", None, started)
                self.reset_connection()
                return
            if response.error_type:
                emu.stats.error(response.error_type)
        emu.request_log.write(self.command, url.path, op, response.status, response.error_type,
                              response.request_id, started)
        self.send_response_obj(response)

    def route(self, emu, request):
        path = request.path
        """Which service a request is for: (Response, op name for the log)."""
        path = request.path
        if path == "/ecs" or path.startswith("/ecs/"):
            return credentials.handle_ecs(emu, request)
        if path.startswith("/latest/"):
            return credentials.handle_imds(emu, request)
        if path == "/federation/credentials":
            return credentials.handle_sso(emu, request)
        content_type = (request.header("Content-Type") or "").lower()
        if request.method == "POST" and path == "/" and request.header("X-Amz-Target") is None \
                and content_type.startswith("application/x-www-form-urlencoded"):
            return credentials.handle_sts(emu, request)
        if path == "/" or request.header("X-Amz-Target") is not None:
            return emu.handle_kms(request)
        return text_response(404, "Not Found\n"), None

    def send_response_obj(self, response):
        """The status line, headers and body in one write (what send_response_obj_stock
        sends, in one packet instead of two)."""
        if self.request_version == "HTTP/0.9":  # a body alone
            return self.send_response_obj_stock(response)
        status = response.status
        head = ["%s %d %s\r\n" % (self.protocol_version, status,
                                   self.responses[status][0] if status in self.responses else ""),
                "Server: %s\r\n" % self.version_string(),
                "Date: %s\r\n" % self.date_time_string(),
                "Content-Type: %s\r\n" % response.content_type,
                "Content-Length: %d\r\n" % len(response.body)]
        if response.request_id:
            head.append("x-amzn-RequestId: %s\r\n" % response.request_id)
        for name, value in response.headers:
            head.append("%s: %s\r\n" % (name, value))
            if name.lower() == "connection":
                if value.lower() == "close":
                    self.close_connection = True
                elif value.lower() == "keep-alive":
                    self.close_connection = False
        head.append("\r\n")
        data = "".join(head).encode("latin-1", "strict")
        if self.command != "HEAD":
            data += response.body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client went away (a timed-out hang, say)

    def send_response_obj_stock(self, response):
        """send_response_obj through BaseHTTPRequestHandler's own methods."""
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if response.request_id:
                self.send_header("x-amzn-RequestId", response.request_id)
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the client went away (a timed-out hang, say)

    def reset_connection(self):
        """Close with SO_LINGER 0, so the peer gets an RST instead of a FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.rfile.close()  # the makefile reference would otherwise defer the close
            self.connection.close()
        except OSError:
            pass


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address, emulator, tls_context=None):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.emulator = emulator
        self.tls_context = tls_context
        super().__init__(address, Handler)

    def verify_request(self, request, client_address):
        return ipaddress.ip_address(client_address[0].split("%")[0]).is_loopback

    def finish_request(self, request, client_address):
        self.emulator.stats.connection(total_only=True)
        if self.tls_context is None:
            return super().finish_request(request, client_address)
        try:
            request.settimeout(10)
            conn = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return None
        try:
            return super().finish_request(conn, client_address)
        finally:
            self.shutdown_request(conn)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="AWS KMS emulator for pgcrypt_kms tests")
    parser.add_argument("--port-file", required=True,
                        help="written (atomically) with the port once the server accepts")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (127.x, ::1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    parser.add_argument("--state", help="JSON file that keeps keys and aliases across restarts")
    parser.add_argument("--log", help="append one line per request to this file")
    args = parser.parse_args(argv)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        parser.error("refusing to listen on %r: only loopback addresses are allowed" % args.host)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    tls_context = None
    if args.tls_cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)
    emulator = Emulator(args.state, args.log)
    server = EmulatorServer((args.host, args.port), emulator, tls_context)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, args=(0.1,), name="serve",
                               daemon=True)
    serving.start()
    write_port_file(args.port_file, server.server_address[1])
    while not stop.wait(0.5):
        pass
    emulator.faults.clear()  # lets hung requests go
    server.shutdown()
    server.server_close()
    emulator.request_log.close()
    try:
        os.unlink(args.port_file)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
