#!/usr/bin/env bash
# The KMS emulator speaks AWS KMS's wire protocol as AWS does: every operation, key id form,
# error type and HTTP status, encryption-context binding, key states, rotation, each SigV4
# refusal, the STS/ECS/IMDS credential endpoints, each fault kind, keep-alive and counters.
# Driven by botocore (test/kms_emulator/selftest.py). Then botocore's own credential providers
# resolve an assume-role, a credential_process and an SSO profile from files like the ones
# test/t/022 gives the server, against the emulator's STS AssumeRole and SSO portal
# (test/kms_emulator/botocore_chain.py). Uses the emulator on PGCK_EMULATOR_PORT, or starts a
# private one.
set -eu
cd "$(dirname "$0")/../.."
. test/kms_emulator/lib.sh
pgck_emulator_ensure
echo "# emulator_protocol: botocore against http://127.0.0.1:$PGCK_EMULATOR_PORT"
# the suite exports AWS_EC2_METADATA_DISABLED etc. for the server; botocore here must not see them
env -u AWS_EC2_METADATA_DISABLED -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    "$PGCK_PYTHON" test/kms_emulator/selftest.py --port "$PGCK_EMULATOR_PORT"
home=$(mktemp -d "${TMPDIR:-/tmp}/pgck-botocore-home.XXXXXX")
rc=0
env -u AWS_EC2_METADATA_DISABLED -u AWS_CONFIG_FILE -u AWS_SHARED_CREDENTIALS_FILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    HOME="$home" "$PGCK_PYTHON" test/kms_emulator/botocore_chain.py --port "$PGCK_EMULATOR_PORT" || rc=$?
rm -rf "$home"
exit $rc
