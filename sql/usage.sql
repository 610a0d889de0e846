-- the AES-GCM bound: encryptions per data key version are counted across
-- backends (shared memory; the suite's cluster preloads pgcrypt_kms), the key
-- rotates itself at pgcrypt_kms.dek_rotate_after (test-only, lowered here
-- from 2^31) and refuses at twice that; keys also rotate by age
\set VERBOSITY default
SET pgcrypt_kms.dek_rotate_after = 1000;
SELECT kms_create_key('use', 'local:regress');
CREATE TABLE u AS SELECT g AS id, kms_encrypt('x' || g, 'use') AS v FROM generate_series(1, 2500) g;
-- the 1000th use of a version rotates the key and is encrypted under the new one
SELECT k.version, count(*) AS values_under_version FROM u JOIN kms_keys k ON k.version_id = kms_version_id(u.v)
 GROUP BY 1 ORDER BY 1;
SELECT version, state, encryptions FROM kms_keys WHERE key_name = 'use' ORDER BY version;
SELECT count(*) AS all_decrypt FROM u WHERE kms_decrypt(v) = 'x' || id;
-- the count is shared: another session's encryptions add to it
\c
SET pgcrypt_kms.dek_rotate_after = 1000;
SELECT count(kms_encrypt('y', 'use')) FROM generate_series(1, 100);
SELECT version, encryptions FROM kms_keys WHERE key_name = 'use' AND current;
-- where the key cannot be rotated (read-only transaction) encryption goes on to twice the bound, then stops
BEGIN READ ONLY;
SELECT count(kms_encrypt('y', 'use')) FROM generate_series(1, 2000);
ROLLBACK;
SELECT version, state, encryptions FROM kms_keys WHERE key_name = 'use' ORDER BY version;
-- the next writable statement rotates
SELECT kms_version_id(kms_encrypt('z', 'use')) AS vid \gset
SELECT version AS encrypted_under FROM kms_keys WHERE version_id = :vid;
RESET pgcrypt_kms.dek_rotate_after;
-- rotation by age
SET pgcrypt_kms.dek_max_age = 1;
SELECT pg_sleep(1.1);
SELECT kms_version_id(kms_encrypt('old', 'use')) AS vid \gset
SELECT version AS encrypted_under_after_max_age FROM kms_keys WHERE version_id = :vid;
SELECT version, state FROM kms_keys WHERE key_name = 'use' ORDER BY version;
RESET pgcrypt_kms.dek_max_age;
DROP TABLE u;
