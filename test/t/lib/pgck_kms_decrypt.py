#!/usr/bin/python3
"""Decrypt a wrapped data key at the KMS emulator with botocore, for the TAP tests' log greps.

    pgck_kms_decrypt.py ENDPOINT_URL REGION KEY_ID CONTEXT_JSON < wrapped-blob-base64-lines

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY [/ AWS_SESSION_TOKEN]. Prints,
for each base64 line read, the plaintext data key as base64 on its own line. Only for tests:
the point is to know what must never show up in a server log.
"""

import base64
import json
import os
import sys

import botocore.session


def main(argv):
    endpoint, region, key_id, context_json = argv[1:5]
    session = botocore.session.get_session()
    client = session.create_client(
        "kms", region_name=region, endpoint_url=endpoint,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None)
    context = json.loads(context_json) if context_json else {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        args = {"CiphertextBlob": base64.b64decode(line), "KeyId": key_id}
        if context:
            args["EncryptionContext"] = context
        answer = client.decrypt(**args)
        print(base64.b64encode(answer["Plaintext"]).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
