#!/usr/bin/python3
"""A credential_process for the TAP tests (botocore's Version 1 JSON on stdout).

    pgck_credential_process.py MODE [ARGS...]

Each run appends a line to $PGCK_TEST_PROC_RUNS (when set) and writes its pid to
$PGCK_TEST_PROC_PID. Modes:
  ecs      temporary credentials fetched from the emulator's ECS endpoint
           ($PGCK_TEST_PROC_URL, token $PGCK_TEST_PROC_TOKEN), with their Expiration
  static   the emulator's static test identity, no Expiration
  quoted   as static, only if ARGS are exactly ['two words', '\\$HOME;', 'say "hi"'] (split as
           Python's shlex splits, which botocore uses; no shell ran)
  fail     writes a secret-looking line to stderr and exits 3
  sleep    sleeps 60 s (a hung helper)
  garbage  prints something that is not JSON
"""
import json
import os
import sys
import time
import urllib.request

STATIC = {"Version": 1, "AccessKeyId": "AKIDPGCKTEST000000001",
          "SecretAccessKey": "pgck-test-secret-0000000000000000000000"}


def main():
    mode = sys.argv[1]
    if os.environ.get("PGCK_TEST_PROC_RUNS"):
        with open(os.environ["PGCK_TEST_PROC_RUNS"], "a") as f:
            f.write(mode + "\n")
    if os.environ.get("PGCK_TEST_PROC_PID"):
        with open(os.environ["PGCK_TEST_PROC_PID"], "w") as f:
            f.write(str(os.getpid()))
    if mode == "ecs":
        req = urllib.request.Request(os.environ["PGCK_TEST_PROC_URL"],
                                     headers={"Authorization": os.environ["PGCK_TEST_PROC_TOKEN"]})
        c = json.load(urllib.request.urlopen(req, timeout=5))
        print(json.dumps({"Version": 1, "AccessKeyId": c["AccessKeyId"],
                          "SecretAccessKey": c["SecretAccessKey"], "SessionToken": c["Token"],
                          "Expiration": c["Expiration"]}))
    elif mode == "static":
        print(json.dumps(STATIC))
    elif mode == "quoted":
        if sys.argv[2:] != ["two words", "\\$HOME;", 'say "hi"']:
            sys.stderr.write("unexpected arguments %r\n" % sys.argv[2:])
            return 9
        print(json.dumps(STATIC))
    elif mode == "fail":
        sys.stderr.write("pgck-process-stderr-secret-7f3a\n")
        return 3
    elif mode == "sleep":
        time.sleep(60)
    elif mode == "garbage":
        print("this is not json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
