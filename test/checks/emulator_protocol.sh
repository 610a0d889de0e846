#!/usr/bin/env bash
# The KMS emulator speaks AWS KMS's wire protocol as AWS does: every operation, key id form,
# error type and HTTP status, encryption-context binding, key states, rotation, each SigV4
# refusal, the STS/ECS/IMDS credential endpoints, each fault kind, keep-alive and counters.
# Driven by botocore (test/kms_emulator/selftest.py). Uses the emulator on PGCK_EMULATOR_PORT,
# or starts a private one.
set -eu
cd "$(dirname "$0")/../.."
. test/kms_emulator/lib.sh
pgck_emulator_ensure
echo "# emulator_protocol: botocore against http://127.0.0.1:$PGCK_EMULATOR_PORT"
"$PGCK_PYTHON" test/kms_emulator/selftest.py --port "$PGCK_EMULATOR_PORT"
