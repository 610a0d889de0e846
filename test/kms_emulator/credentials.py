"""Test identities and the credential endpoints: STS (AssumeRoleWithWebIdentity, and AssumeRole
signed with SigV4 by any identity the emulator knows), the IAM Identity Center (SSO) portal's
GetRoleCredentials, ECS container, EC2 IMDSv2.

The static identity never expires. Each fetch from an endpoint issues a fresh temporary
credential (AKID "ASIA…", secret, session token, Expiration = now + expiration_seconds, 1 h
unless set through the control API); it is valid for SigV4 until it expires or is revoked.
Lookups follow AWS: an unknown key, a missing or wrong session token, or a token sent with the
static key → UnrecognizedClientException; past its Expiration → ExpiredTokenException.

Handlers take the Emulator (for its clock, counters and faults) and the Request, and return
(Response, op name for the log). Secrets never reach the log or counters.
"""

import base64
import hmac
import os
import threading
import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape as xml_escape

from keystore import ACCOUNT, KmsError
from wire import Response, b64, iso8601, json_response, text_response

STATIC_ACCESS_KEY = "AKIDPGCKTEST000000001"
STATIC_SECRET_KEY = "pgck-test-secret-0000000000000000000000"
WEB_IDENTITY_TOKEN = "pgck-test-web-identity-token"
ECS_AUTH_TOKEN = "pgck-test-ecs-token"
IMDS_ROLE = "pgck-test-role"
ROLE_ARN = "arn:aws:iam::%s:role/%s" % (ACCOUNT, IMDS_ROLE)
DEFAULT_EXPIRATION = 3600
SSO_ACCESS_TOKEN = "pgck-test-sso-access-token"
ENDPOINTS = ("sts", "ecs", "imds", "sso")   # fault "op" names of the credential endpoints

# What an error fault on an endpoint answers: STS (status, Code); ECS and IMDS, a status.
STS_FAULTS = {"throttle": (400, "Throttling"), "internal": (500, "InternalFailure"),
              "unavailable": (503, "ServiceUnavailable"),
              "dependency_timeout": (400, "IDPCommunicationError"),
              "access_denied": (403, "AccessDenied")}
METADATA_FAULT_STATUS = {"throttle": 429, "internal": 500, "unavailable": 503,
                         "dependency_timeout": 504, "access_denied": 403}


def _invalid_token():
    return KmsError("UnrecognizedClientException",
                    "The security token included in the request is invalid.")


class TempCredential:
    def __init__(self, source, expiration):
        self.source = source
        self.access_key = "ASIA" + base64.b32encode(os.urandom(10)).decode()[:16]
        self.secret_key = b64(os.urandom(30))
        # Real session tokens are long and use the whole base64 alphabet, "+", "/", "=" included.
        self.token = "IQoJb3JpZ2luX2VjEPGCK" + b64(os.urandom(299))
        self.expiration = expiration


class Credentials:
    """The static test identity, temporary credentials and the endpoints' settings."""

    def __init__(self, clock):
        self._lock = threading.Lock()
        self._clock = clock
        self._temps = {}
        self._imds_tokens = {}
        self.expiration_override = None
        self.web_identity_token = WEB_IDENTITY_TOKEN
        self.ecs_token = ECS_AUTH_TOKEN
        self.sso_token = SSO_ACCESS_TOKEN
        self.external_id = None      # when set, AssumeRole must send this ExternalId
        self.assume_role_log = []    # what each AssumeRole asked for (no secret)

    def issue(self, source, duration=None):
        seconds = self.expiration_override
        if seconds is None:
            seconds = duration or DEFAULT_EXPIRATION
        cred = TempCredential(source, int(self._clock.now()) + seconds)
        with self._lock:
            self._temps[cred.access_key] = cred
        return cred

    def secret_for(self, access_key, token):
        """The secret to check a signature with, or the error AWS gives for this credential."""
        if access_key == STATIC_ACCESS_KEY:
            if token is not None:
                raise _invalid_token()
            return STATIC_SECRET_KEY
        with self._lock:
            cred = self._temps.get(access_key)
        if cred is None or token is None or not hmac.compare_digest(token.encode(),
                                                                    cred.token.encode()):
            raise _invalid_token()
        if self._clock.now() >= cred.expiration:
            raise KmsError("ExpiredTokenException",
                           "The security token included in the request is expired")
        return cred.secret_key

    def _select(self, access_key):
        if access_key is None:
            return list(self._temps.values())
        if access_key not in self._temps:
            raise ValueError("no temporary credential %s" % access_key)
        return [self._temps[access_key]]

    def expire(self, access_key=None):
        """Make one temporary credential (all when None) expired as of now."""
        with self._lock:
            creds = self._select(access_key)
            for cred in creds:
                cred.expiration = min(cred.expiration, int(self._clock.now()) - 1)
            return [c.access_key for c in creds]

    def revoke(self, access_key=None):
        """Forget one temporary credential (all when None): it becomes unknown."""
        with self._lock:
            creds = self._select(access_key)
            for cred in creds:
                del self._temps[cred.access_key]
            return [c.access_key for c in creds]

    def listing(self):
        with self._lock:
            return [{"access_key_id": c.access_key, "source": c.source,
                     "expiration": iso8601(c.expiration)} for c in self._temps.values()]

    def new_imds_token(self, ttl):
        token = b64(os.urandom(42))
        with self._lock:
            self._imds_tokens[token] = self._clock.now() + ttl
        return token

    def imds_token_valid(self, token):
        with self._lock:
            expiry = self._imds_tokens.get(token)
        return expiry is not None and self._clock.now() < expiry


def _metadata_fault(emu, endpoint):
    """An error Response if an error fault fires for this ECS/IMDS endpoint, else None."""
    kind = emu.credential_fault(endpoint)
    if kind is None:
        return None
    return json_response(METADATA_FAULT_STATUS[kind],
                         {"code": kind, "message": "fault injected by the emulator"},
                         error_type="%s:%s" % (endpoint, kind))


# ---------------------------------------------------------------------- STS
_STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"

_STS_ANSWER = """<AssumeRoleWithWebIdentityResponse xmlns="%(xmlns)s">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>pgck-test-subject</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::%(account)s:assumed-role/%(role)s/%(session)s</Arn>
      <AssumedRoleId>AROAPGCKTEST00000000:%(session)s</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>%(token)s</SessionToken>
      <SecretAccessKey>%(secret)s</SecretAccessKey>
      <Expiration>%(expiration)s</Expiration>
      <AccessKeyId>%(akid)s</AccessKeyId>
    </Credentials>
    <Provider>pgck-test-idp</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>%(request_id)s</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"""

_ASSUME_ROLE_ANSWER = """<AssumeRoleResponse xmlns="%(xmlns)s">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAPGCKTEST00000000:%(session)s</AssumedRoleId>
      <Arn>arn:aws:sts::%(account)s:assumed-role/%(role)s/%(session)s</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>%(akid)s</AccessKeyId>
      <SecretAccessKey>%(secret)s</SecretAccessKey>
      <SessionToken>%(token)s</SessionToken>
      <Expiration>%(expiration)s</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>%(request_id)s</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
"""

_STS_ERROR = """<ErrorResponse xmlns="%(xmlns)s">
  <Error>
    <Type>%(type)s</Type>
    <Code>%(code)s</Code>
    <Message>%(message)s</Message>
  </Error>
  <RequestId>%(request_id)s</RequestId>
</ErrorResponse>
"""


def _sts_error(code, message, request_id, status=400):
    body = _STS_ERROR % {"xmlns": _STS_XMLNS, "type": "Receiver" if status >= 500 else "Sender",
                         "code": code, "message": xml_escape(message), "request_id": request_id}
    return Response(status, body, "text/xml", error_type=code)


def handle_sts(emu, request):
    """POST / (form-encoded, unsigned) Action=AssumeRoleWithWebIdentity."""
    request_id = str(uuid.uuid4())
    response, op = _sts(emu, request, request_id)
    response.request_id = request_id
    return response, op


def _sts(emu, request, request_id):
    form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace"),
                                          keep_blank_values=True).items()}
    op = "sts:" + form.get("Action", "-")
    kind = emu.credential_fault("sts")
    if kind is not None:
        status, code = STS_FAULTS[kind]
        return _sts_error(code, "fault injected by the emulator", request_id, status), op
    if form.get("Action") == "AssumeRole":
        return _assume_role(emu, request, form, request_id), op
    if form.get("Action") != "AssumeRoleWithWebIdentity":
        return _sts_error("InvalidAction", "Could not find operation %s for version %s" %
                          (form.get("Action"), form.get("Version")), request_id), op
    missing = [n for n in ("RoleArn", "RoleSessionName", "WebIdentityToken") if not form.get(n)]
    if missing:
        return _sts_error("ValidationError", "1 validation error detected: Value null at '%s' "
                          "failed to satisfy constraint: Member must not be null" %
                          (missing[0][0].lower() + missing[0][1:]), request_id), op
    role_arn, session = form["RoleArn"], form["RoleSessionName"]
    if not role_arn.startswith("arn:aws:iam::") or ":role/" not in role_arn:
        return _sts_error("ValidationError", "Request ARN is invalid", request_id), op
    duration = form.get("DurationSeconds")
    if duration is not None and not (duration.isdigit() and 900 <= int(duration) <= 43200):
        return _sts_error("ValidationError", "DurationSeconds must be between 900 and 43200",
                          request_id), op
    if not hmac.compare_digest(form["WebIdentityToken"].encode(),
                               emu.credentials.web_identity_token.encode()):
        return _sts_error("InvalidIdentityToken", "The web identity token that was passed could "
                          "not be validated by AWS. Get a new identity token from the identity "
                          "provider and then retry the request.", request_id), op
    emu.stats.fetch("sts")
    cred = emu.credentials.issue("sts", int(duration) if duration else None)
    body = _STS_ANSWER % {
        "xmlns": _STS_XMLNS, "account": ACCOUNT,
        "role": xml_escape(role_arn.split(":role/", 1)[1]), "session": xml_escape(session),
        "token": cred.token, "secret": cred.secret_key, "akid": cred.access_key,
        "expiration": iso8601(cred.expiration), "request_id": request_id}
    return Response(200, body, "text/xml"), op


def _assume_role(emu, request, form, request_id):
    """AssumeRole: SigV4-signed (service sts) by the static identity or a temporary credential."""
    try:
        emu.authenticate(request, "sts")
    except KmsError as e:
        code = {"UnrecognizedClientException": "InvalidClientTokenId",
                "InvalidSignatureException": "SignatureDoesNotMatch",
                "MissingAuthenticationTokenException": "MissingAuthenticationToken",
                "ExpiredTokenException": "ExpiredToken"}.get(
                    e.error_type, e.error_type)
        return _sts_error(code, e.message, request_id, 403)
    missing = [n for n in ("RoleArn", "RoleSessionName") if not form.get(n)]
    if missing:
        return _sts_error("ValidationError", "1 validation error detected: Value null at '%s' "
                          "failed to satisfy constraint: Member must not be null" %
                          (missing[0][0].lower() + missing[0][1:]), request_id)
    role_arn, session = form["RoleArn"], form["RoleSessionName"]
    if not role_arn.startswith("arn:aws:iam::") or ":role/" not in role_arn:
        return _sts_error("ValidationError", "Request ARN is invalid", request_id)
    if not 2 <= len(session) <= 64:
        return _sts_error("ValidationError", "RoleSessionName must have 2 to 64 characters",
                          request_id)
    duration = form.get("DurationSeconds")
    if duration is not None and not (duration.isdigit() and 900 <= int(duration) <= 43200):
        return _sts_error("ValidationError", "DurationSeconds must be between 900 and 43200",
                          request_id)
    if form.get("SerialNumber") or form.get("TokenCode"):
        if not (form.get("SerialNumber") and form.get("TokenCode")):
            return _sts_error("ValidationError", "SerialNumber and TokenCode go together",
                              request_id)
    creds = emu.credentials
    creds.assume_role_log.append({
        "RoleArn": role_arn, "RoleSessionName": session,
        "ExternalId": form.get("ExternalId"), "DurationSeconds": duration,
        "SerialNumber": form.get("SerialNumber"),
        "signed_by": request.header("X-Amz-Security-Token") and "temporary" or "static"})
    if creds.external_id is not None and not hmac.compare_digest(
            (form.get("ExternalId") or "").encode(), creds.external_id.encode()):
        return _sts_error("AccessDenied", "User: arn:aws:iam::%s:user/pgck-test is not "
                          "authorized to perform: sts:AssumeRole on resource: %s"
                          % (ACCOUNT, role_arn), request_id, 403)
    emu.stats.fetch("assume_role")
    cred = creds.issue("assume_role", int(duration) if duration else None)
    body = _ASSUME_ROLE_ANSWER % {
        "xmlns": _STS_XMLNS, "account": ACCOUNT,
        "role": xml_escape(role_arn.split(":role/", 1)[1]), "session": xml_escape(session),
        "token": cred.token, "secret": cred.secret_key, "akid": cred.access_key,
        "expiration": iso8601(cred.expiration), "request_id": request_id}
    return Response(200, body, "text/xml")


# ---------------------------------------------------------------------- SSO portal
def handle_sso(emu, request):
    """GET /federation/credentials?role_name=&account_id= with x-amz-sso_bearer_token."""
    request_id = str(uuid.uuid4())
    response = _sso(emu, request)
    response.request_id = request_id
    return response, "sso:GetRoleCredentials"


def _sso(emu, request):
    response = _sso_answer(emu, request)
    if response.error_type and ":" not in response.error_type:
        # as the portal (restJson1): the error type in a header
        response.headers.append(("x-amzn-ErrorType", response.error_type))
    return response


def _sso_answer(emu, request):
    if request.method != "GET":
        return text_response(405, "Method Not Allowed\n")
    query = {k: v[0] for k, v in parse_qs(request.query, keep_blank_values=True).items()}
    missing = [n for n in ("role_name", "account_id") if not query.get(n)]
    if missing:
        return json_response(400, {"message": "%s is required" % missing[0]},
                             error_type="InvalidRequestException")
    if not hmac.compare_digest((request.header("x-amz-sso_bearer_token") or "").encode(),
                               emu.credentials.sso_token.encode()):
        return json_response(401, {"message": "Session token not found or invalid"},
                             error_type="UnauthorizedException")
    if not (query["account_id"].isdigit() and len(query["account_id"]) == 12):
        return json_response(403, {"message": "No access"}, error_type="ForbiddenException")
    kind = emu.credential_fault("sso")
    if kind is not None:
        status = METADATA_FAULT_STATUS[kind]
        return json_response(status, {"message": "fault injected by the emulator"},
                             error_type="sso:%s" % kind)
    emu.stats.fetch("sso")
    cred = emu.credentials.issue("sso")
    return json_response(200, {"roleCredentials": {
        "accessKeyId": cred.access_key, "secretAccessKey": cred.secret_key,
        "sessionToken": cred.token, "expiration": int(cred.expiration) * 1000}})


# ---------------------------------------------------------------------- ECS
def handle_ecs(emu, request):
    """GET /ecs/<anything> with header Authorization: <ECS token>."""
    if request.method != "GET":
        return text_response(405, "Method Not Allowed\n"), "ecs"
    if not hmac.compare_digest((request.header("Authorization") or "").encode(),
                               emu.credentials.ecs_token.encode()):
        return json_response(401, {"code": "Unauthorized",
                                   "message": "Authorization header is missing or wrong"},
                             error_type="ecs:Unauthorized"), "ecs"
    response = _metadata_fault(emu, "ecs")
    if response is None:
        emu.stats.fetch("ecs")
        cred = emu.credentials.issue("ecs")
        response = json_response(200, {
            "AccessKeyId": cred.access_key, "SecretAccessKey": cred.secret_key,
            "Token": cred.token, "Expiration": iso8601(cred.expiration), "RoleArn": ROLE_ARN})
    return response, "ecs"


# ---------------------------------------------------------------------- IMDSv2
_IMDS_CREDENTIALS = "/latest/meta-data/iam/security-credentials"


def handle_imds(emu, request):
    """PUT /latest/api/token, then GET /latest/meta-data/... with the token (IMDSv1 refused)."""
    path = request.path
    if path == "/latest/api/token":
        if request.method != "PUT":
            return text_response(405, "Method Not Allowed\n"), "imds:token"
        ttl = request.header("X-aws-ec2-metadata-token-ttl-seconds") or ""
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return text_response(400, "Bad Request\n"), "imds:token"
        emu.stats.fetch("imds_token")
        response = text_response(200, emu.credentials.new_imds_token(int(ttl)))
        response.headers.append(("X-aws-ec2-metadata-token-ttl-seconds", ttl))
        return response, "imds:token"
    if request.method != "GET":
        return text_response(405, "Method Not Allowed\n"), "imds"
    if not emu.credentials.imds_token_valid(request.header("X-aws-ec2-metadata-token")):
        response = text_response(401, "Unauthorized\n")
        response.error_type = "imds:Unauthorized"
        return response, "imds"
    if path in (_IMDS_CREDENTIALS, _IMDS_CREDENTIALS + "/"):
        return text_response(200, IMDS_ROLE), "imds:role"
    if path == _IMDS_CREDENTIALS + "/" + IMDS_ROLE:
        response = _metadata_fault(emu, "imds")
        if response is None:
            emu.stats.fetch("imds")
            cred = emu.credentials.issue("imds")
            response = json_response(200, {
                "Code": "Success", "LastUpdated": iso8601(emu.clock.now()), "Type": "AWS-HMAC",
                "AccessKeyId": cred.access_key, "SecretAccessKey": cred.secret_key,
                "Token": cred.token, "Expiration": iso8601(cred.expiration)}, "text/plain")
        return response, "imds:credentials"
    if path == "/latest/meta-data/placement/region":
        return text_response(200, "us-east-1"), "imds:region"
    return text_response(404, "Not Found\n"), "imds"
