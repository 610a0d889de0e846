/* pgcrypt_kms 0.1.0 → 0.2.0 (ALTER EXTENSION pgcrypt_kms UPDATE; CREATE EXTENSION runs 0.1.0 and then this) */
\echo Use "ALTER EXTENSION pgcrypt_kms UPDATE" to load this file. \quit

-- ---------------------------------------------------------------- function labels and NULL handling (issue 11)

-- ---------------------------------------------------------------- keyring: KMS key ARNs (issue 11, defect 3)

-- ---------------------------------------------------------------- keyring: nonce counts tied to a cluster (issue 11, defect 7)

-- ---------------------------------------------------------------- procedures (issue 11, issue 19)
