"""AWS Signature Version 4, the server side: rebuild the canonical request from what arrived.

Pure functions, no I/O. The emulator verifies a request by recomputing its signature from the
request line, headers and body exactly as AWS does for non-S3 services (path normalized, then
URI-encoded once more; query pairs decoded, re-encoded and sorted; header values trimmed with
inner whitespace collapsed, repeated headers joined with ","). selftest.py checks these
functions byte for byte against the AWS SigV4 test suite in test/vectors/sigv4.
"""

import functools
import hashlib
import hmac
from urllib.parse import unquote

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def uri_encode(text, keep_slash=False):
    """Percent-encode every byte of the UTF-8 form except the unreserved set (and "/")."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in _UNRESERVED or (keep_slash and byte == 0x2F):
            out.append(chr(byte))
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def canonical_uri(path):
    """Path as on the request line: drop empty and "." segments, resolve "..", encode."""
    segments = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    uri = "/" + "/".join(segments)
    if segments and path.endswith("/"):
        uri += "/"
    return uri_encode(uri, keep_slash=True)


def canonical_query(query):
    """Raw query string (without "?"): each name and value decoded, re-encoded, pairs sorted."""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((uri_encode(unquote(name)), uri_encode(unquote(value))))
    pairs.sort()
    return "&".join("%s=%s" % pair for pair in pairs)


def canonical_headers(headers, signed_headers):
    """headers: (name, value) pairs in arrival order; signed_headers: lowercase names."""
    values = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    return "".join("%s:%s\n" % (name, ",".join(values.get(name, []))) for name in signed_headers)


def canonical_request(method, path, query, headers, signed_headers, body):
    return "\n".join([
        method.upper(),
        canonical_uri(path),
        canonical_query(query),
        canonical_headers(headers, signed_headers),
        ";".join(signed_headers),
        hashlib.sha256(body).hexdigest(),
    ])


def string_to_sign(amz_date, scope, creq):
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])


@functools.lru_cache(maxsize=64)
def signing_key(secret, date, region, service):
    """Four HMACs that change once a day per credential and scope: cached."""
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(secret, date, region, service, sts):
    key = signing_key(secret, date, region, service)
    return hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()


class MalformedAuthorization(ValueError):
    """The Authorization header cannot be parsed (AWS: IncompleteSignatureException)."""


def parse_authorization(value):
    """Split an Authorization header into algorithm, credential scope parts, headers, signature.

    Returns a dict with keys algorithm, access_key, date, region, service, terminator, scope,
    signed_headers (list) and signature. Raises MalformedAuthorization naming what is missing.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise MalformedAuthorization("Unsupported AWS 'algorithm': '%s'" % algorithm)
    fields = {}
    for item in rest.split(","):
        name, sep, field = item.strip().partition("=")
        if sep:
            fields[name] = field
    problems = ["Authorization header requires '%s' parameter." % name
                for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    if problems:
        raise MalformedAuthorization(" ".join(problems) + " Authorization=" + algorithm)
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise MalformedAuthorization(
            "Credential should be scoped to a valid region, not '%s'. " % fields["Credential"]
            + "Authorization=" + algorithm)
    access_key, date, region, service, terminator = credential
    return {
        "algorithm": algorithm,
        "access_key": access_key,
        "date": date,
        "region": region,
        "service": service,
        "terminator": terminator,
        "scope": "/".join(credential[1:]),
        "signed_headers": fields["SignedHeaders"].split(";"),
        "signature": fields["Signature"],
    }
