#!/usr/bin/env bash
# Fidelity of the Vault emulator (test/vault_emulator): python3-hvac, Debian's
# Vault client, drives it unmodified (Transit keys, data keys, decrypt,
# rewrap, encrypt, rotation, min_decryption_version, derived keys, AppRole and
# Kubernetes login, token renewal, namespaces, faults) and checks that its
# ciphertexts are real AES-256-GCM / ChaCha20-Poly1305 with an exported key.
# A private emulator, stopped by pid.
set -u
cd "$(dirname "$0")/../.."
. test/vault_emulator/lib.sh
trap pgck_vault_stop EXIT
pgck_vault_start || { echo "not ok - Vault emulator start"; exit 1; }
/usr/bin/python3 test/vault_emulator/hvac_check.py "$PGCK_VAULT_PORT"
