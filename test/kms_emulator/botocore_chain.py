#!/usr/bin/python3
"""botocore's own credential providers against the emulator, reading the same kind of files the
extension reads (test/t/022): an assume-role profile (source_profile with static keys,
external_id, role_session_name, duration_seconds), a credential_process profile (the TAP
tests' helper) and an sso_session profile with a token in ~/.aws/sso/cache/<sha1>.json.

    HOME=<scratch dir> /usr/bin/python3 botocore_chain.py --port PORT
    /usr/bin/python3 botocore_chain.py --port PORT --profiles P1,P2   (the environment's files)

botocore resolves each profile itself (AssumeRoleProvider, ProcessProvider, SSOProvider); only
the endpoints are pointed at the emulator. The credentials it gets must then sign a KMS call
the emulator accepts, and what reached STS must be what the profile says. HOME must be set
before botocore is imported (it fixes the SSO cache directory at import time).
"""
import argparse
import datetime
import hashlib
import json
import os
import sys
import urllib.request

import botocore.session

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER = os.path.join(HERE, "..", "t", "lib", "pgck_credential_process.py")
STATIC_AKID = "AKIDPGCKTEST000000001"
STATIC_SECRET = "pgck-test-secret-0000000000000000000000"
ROLE = "arn:aws:iam::111122223333:role/pgck-botocore"
SSO_TOKEN = "pgck-test-sso-access-token"

failed = 0
n = 0


def check(cond, what):
    global failed, n
    n += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, what))
    if not cond:
        failed += 1


def ctl(url, command, args=None):
    req = urllib.request.Request(url + "/_emulator/" + command,
                                 data=json.dumps(args or {}).encode(), method="POST")
    return json.load(urllib.request.urlopen(req, timeout=10))


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def session_for(profile, url):
    session = botocore.session.Session(profile=profile)
    plain = session.create_client

    def create_client(service, *args, **kwargs):
        kwargs["endpoint_url"] = kwargs.get("endpoint_url") or url
        kwargs["region_name"] = kwargs.get("region_name") or "us-east-1"
        return plain(service, *args, **kwargs)

    session.create_client = create_client    # every provider's client goes to the emulator
    return session


def kms_works(session, url):
    creds = session.get_credentials()
    if creds is None:
        return None, False
    frozen = creds.get_frozen_credentials()
    kms = session.create_client("kms", aws_access_key_id=frozen.access_key,
                                aws_secret_access_key=frozen.secret_key,
                                aws_session_token=frozen.token)
    out = kms.generate_random(NumberOfBytes=16)
    return creds.method, len(out["Plaintext"]) == 16


def resolve_given_profiles(url, profiles):
    """--profiles: resolve these profiles from the files the environment names (the very files
    a test gave the server), print "<profile> <botocore method>" for each that signs a KMS call
    the emulator accepts, "<profile> FAILED <error>" otherwise."""
    bad = 0
    for profile in profiles:
        try:
            method, ok = kms_works(session_for(profile, url), url)
            print("%s %s" % (profile, method if ok else "FAILED no credentials"))
            bad += 0 if ok else 1
        except Exception as e:      # the test reads the line
            print("%s FAILED %s" % (profile, type(e).__name__))
            bad += 1
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--profiles", help="comma-separated profiles to resolve from the "
                    "files in AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE / ~/.aws/sso")
    a = ap.parse_args()
    url = "http://127.0.0.1:%d" % a.port
    if a.profiles:
        return resolve_given_profiles(url, a.profiles.split(","))
    home = os.path.expanduser("~")
    cache = os.path.join(home, ".aws", "sso", "cache")
    os.makedirs(cache, exist_ok=True)
    expires = (datetime.datetime.utcnow() + datetime.timedelta(hours=8)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    write(os.path.join(cache, hashlib.sha1(b"pgck-sso").hexdigest() + ".json"), json.dumps(
        {"startUrl": "https://pgck-example.awsapps.com/start", "region": "us-east-1",
         "accessToken": SSO_TOKEN, "expiresAt": expires}))
    write(os.path.join(home, "credentials"), "[base]\naws_access_key_id = %s\n"
          "aws_secret_access_key = %s\n" % (STATIC_AKID, STATIC_SECRET))
    write(os.path.join(home, "config"), """[profile role]
role_arn = %(role)s
source_profile = base
external_id = pgck-ext-botocore
role_session_name = pgck-botocore-session
duration_seconds = 1800

[profile proc]
credential_process = /usr/bin/python3 %(helper)s static

[profile proc-temp]
credential_process = /usr/bin/python3 %(helper)s ecs

[profile sso]
sso_session = pgck-sso
sso_account_id = 111122223333
sso_role_name = pgck-sso-role

[sso-session pgck-sso]
sso_start_url = https://pgck-example.awsapps.com/start
sso_region = us-east-1
""" % {"role": ROLE, "helper": HELPER})
    os.environ.update({"AWS_CONFIG_FILE": os.path.join(home, "config"),
                       "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials"),
                       "AWS_EC2_METADATA_DISABLED": "true",
                       "PGCK_TEST_PROC_URL": url + "/ecs/credentials",
                       "PGCK_TEST_PROC_TOKEN": "pgck-test-ecs-token"})
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(k, None)

    # assume role, with the ExternalId the role demands
    ctl(url, "set-credentials", {"external_id": "pgck-ext-botocore"})
    try:
        before = len(ctl(url, "assume-role-log")["assume_role"])
        method, ok = kms_works(session_for("role", url), url)
        check(method == "assume-role" and ok,
              "botocore's AssumeRoleProvider gets credentials from the emulator's STS that sign a "
              "KMS call (%s)" % method)
        log = ctl(url, "assume-role-log")["assume_role"][before:]
        check(len(log) == 1 and log[0]["RoleArn"] == ROLE and
              log[0]["ExternalId"] == "pgck-ext-botocore" and
              log[0]["RoleSessionName"] == "pgck-botocore-session" and
              log[0]["DurationSeconds"] == "1800" and log[0]["signed_by"] == "static",
              "... one SigV4-signed AssumeRole with the profile's RoleArn, ExternalId, "
              "RoleSessionName and DurationSeconds: %r" % log)
        ctl(url, "set-credentials", {"external_id": "another-external-id"})
        try:
            kms_works(session_for("role", url), url)
            check(False, "a wrong ExternalId is refused")
        except botocore.exceptions.ClientError as e:
            check(e.response["Error"]["Code"] == "AccessDenied" and
                  e.response["ResponseMetadata"]["HTTPStatusCode"] == 403,
                  "a wrong ExternalId: botocore reads AccessDenied (403) from the emulator's STS")
    finally:
        ctl(url, "set-credentials", {"external_id": None})

    # credential_process: the TAP tests' helper, through botocore's ProcessProvider
    for profile, expect_token in (("proc", False), ("proc-temp", True)):
        session = session_for(profile, url)
        method, ok = kms_works(session, url)
        token = session.get_credentials().get_frozen_credentials().token
        check(method == "custom-process" and ok and (token is not None) == expect_token,
              "botocore's ProcessProvider reads the helper's %s output (%s)"
              % ("temporary" if expect_token else "long-term", method))

    # SSO: the token cache file named by the SHA-1 of the session name, GetRoleCredentials
    before = ctl(url, "credential-fetches")["credential_fetches"].get("sso", 0)
    method, ok = kms_works(session_for("sso", url), url)
    after = ctl(url, "credential-fetches")["credential_fetches"].get("sso", 0)
    check(method == "sso" and ok and after - before == 1,
          "botocore's SSOProvider finds ~/.aws/sso/cache/<sha1 of the session name>.json and "
          "the emulator's GetRoleCredentials answers it (%s, %d call)" % (method, after - before))
    ctl(url, "set-credentials", {"sso_token": "another-token"})
    try:
        kms_works(session_for("sso", url), url)
        check(False, "a token the portal does not know is refused")
    except Exception as e:
        check(type(e).__name__ == "UnauthorizedSSOTokenError",
              "an unknown token: botocore reads the portal's UnauthorizedException (%s)"
              % type(e).__name__)
    finally:
        ctl(url, "set-credentials", {"sso_token": SSO_TOKEN})
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
