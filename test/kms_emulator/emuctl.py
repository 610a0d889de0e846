#!/usr/bin/python3
"""Drive the KMS emulator's control API from a shell: prints the JSON answer.

    emuctl.py <port> <command> [json]
    emuctl.py 41234 set-fault '{"op":"Decrypt","kind":"throttle","count":2}'
    emuctl.py 41234 stats

Exit status 0 on a 2xx answer, 1 otherwise. PGCK_EMULATOR_HOST (default 127.0.0.1) and
PGCK_EMULATOR_SCHEME (http, or https for an emulator started with --tls-cert; the certificate is
then checked against PGCK_EMULATOR_CA when set, and not checked otherwise) pick the server.
Commands: see README.md beside this file, or run with the command "help".
"""

import http.client
import json
import os
import ssl
import sys


def control(port, command, args=None, timeout=30):
    """POST /_emulator/<command>; returns (HTTP status, decoded JSON)."""
    host = os.environ.get("PGCK_EMULATOR_HOST", "127.0.0.1")
    if os.environ.get("PGCK_EMULATOR_SCHEME", "http") == "https":
        ca_file = os.environ.get("PGCK_EMULATOR_CA")
        context = ssl.create_default_context(cafile=ca_file) if ca_file \
            else ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        body = json.dumps(args or {})
        conn.request("POST", "/_emulator/" + command, body,
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def main(argv):
    if len(argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    args = json.loads(argv[3]) if len(argv) == 4 else {}
    status, answer = control(argv[1], argv[2], args)
    print(json.dumps(answer, indent=2, sort_keys=True))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
