#!/usr/bin/env bash
# The pgcrypt_kms demo, from a fresh Debian 12 (root or sudo): installs what is
# missing, builds and installs the extension, starts a throwaway cluster and
# the KMS emulator (the real AWS code path: SigV4, HTTP, JSON 1.1) on
# loopback, shows encrypted columns at work, and stops everything again.
set -u
. "$(dirname "$0")/lib.sh"
pgck_require_root "$@"
cd "$PGCK_ROOT"

pgck_install_packages $PGCK_PACKAGES_BUILD python3 python3-cryptography python3-botocore
pgck_build_install
pgck_make_tmp
pgck_emulator_env
pgck_start_emulator
pgck_start_cluster
pgck_log "cluster on port $PGPORT, KMS emulator at http://127.0.0.1:$PGCK_EMULATOR_PORT"

pgck_psql -q <<'SQL'
\pset footer off
\echo
\echo '-- CREATE EXTENSION pgcrypt_kms, and two column keys whose data keys come from KMS'
CREATE EXTENSION pgcrypt_kms;
\o /dev/null
SELECT kms_create_key('email', 'aws-kms:alias/pgck-demo', blind_index => 'email');
SELECT kms_create_key('account', 'aws-kms:alias/pgck-demo', blind_index => 'exact');
\o
SELECT key_name, kms_key, blind_index FROM kms_keys ORDER BY 1;

CREATE TABLE users (
  id         bigint PRIMARY KEY,
  email      enc_text NOT NULL,
  account_id enc_text
);
CREATE INDEX users_email_bidx   ON users (kms_blind_index(email));
CREATE INDEX users_account_bidx ON users (kms_blind_index(account_id));
INSERT INTO users VALUES
  (1, kms_encrypt('Alice@Example.com', 'email'), kms_encrypt('ACC-0001', 'account')),
  (2, kms_encrypt('bob@example.org',   'email'), kms_encrypt('ACC-0002', 'account')),
  (3, kms_encrypt('carol@example.net', 'email'), NULL);

\echo
\echo '-- SELECT * FROM users: what a dump, a replica or a stolen disk holds (ciphertext)'
SELECT id, left(email::text, 60) || '...' AS email, left(account_id::text, 40) || '...' AS account_id FROM users ORDER BY id;

\echo
\echo '-- SELECT id, kms_decrypt(email), kms_decrypt(account_id): what a role with pgcrypt_kms_decrypt sees'
SELECT id, kms_decrypt(email) AS email, kms_decrypt(account_id) AS account_id FROM users ORDER BY id;

\echo
\echo '-- a lookup by email through the blind index (case-insensitive key: email)'
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM users WHERE kms_blind_index(email) = kms_blind_index('alice@example.com', 'email');
SELECT id, kms_decrypt(email) AS email FROM users
 WHERE kms_blind_index(email) = kms_blind_index('ALICE@example.com', 'email');
RESET enable_seqscan;

\echo
\echo '-- rotation: a new data key version, old rows untouched and still readable'
SELECT kms_rotate_key('email') AS new_version;
INSERT INTO users VALUES (4, kms_encrypt('dave@example.com', 'email'), NULL);
SELECT id, kms_decrypt(email) AS email FROM users ORDER BY id;

\echo
\echo '-- the keys view (never key material)'
SELECT key_name, version, state, kms_key, blind_index, created::timestamp(0) FROM kms_keys ORDER BY key_name, version;

\echo
\echo '-- KMS calls this session made (each data key version unwrapped at most once)'
SELECT kms_calls, kms_errors, by_operation -> 'GenerateDataKey' -> 'calls' AS generate_data_key,
       by_operation -> 'Decrypt' -> 'calls' AS decrypt, round(kms_ms_avg::numeric, 2) AS avg_ms
  FROM kms_cache_stats();
SQL
rc=$?
pgck_log "demo finished; stopping the cluster and the emulator"
exit $rc
