-- blind indexes: transforms, tags carried by values, index scans
\set VERBOSITY default
SELECT kms_create_key('bi_exact', 'local:regress', blind_index => 'exact');
SELECT kms_create_key('bi_lower', 'local:regress', blind_index => 'lower');
SELECT kms_create_key('bi_email', 'local:regress', blind_index => 'email');
SELECT kms_create_key('bi_digits', 'local:regress', blind_index => 'digits');
SELECT kms_create_key('bi_short', 'local:regress', blind_index => 'lower', index_bits => 12);

-- transforms
SELECT kms_blind_index('Alice@Example.com', 'bi_exact') = kms_blind_index('alice@example.com', 'bi_exact') AS exact_folds_case,
       kms_blind_index('Alice@Example.com', 'bi_lower') = kms_blind_index('alice@example.com', 'bi_lower') AS lower_folds_case,
       kms_blind_index(' Alice@Example.com ', 'bi_lower') = kms_blind_index('alice@example.com', 'bi_lower') AS lower_trims,
       kms_blind_index(E' Alice@Example.COM\n', 'bi_email') = kms_blind_index('alice@example.com', 'bi_email') AS email_trims_and_folds,
       kms_blind_index('alice+tag@example.com', 'bi_email') = kms_blind_index('alice@example.com', 'bi_email') AS email_folds_plus_tags,
       kms_blind_index('+1 (555) 010-9999', 'bi_digits') = kms_blind_index('15550109999', 'bi_digits') AS digits_keeps_digits;
-- tags are independent per key; deterministic; the requested length
SELECT kms_blind_index('x', 'bi_exact') = kms_blind_index('x', 'bi_lower') AS same_tag_across_keys,
       kms_blind_index('x', 'bi_exact') = kms_blind_index('x', 'bi_exact') AS deterministic,
       length(kms_blind_index('x', 'bi_exact')) AS full_bytes,
       length(kms_blind_index('x', 'bi_short')) AS short_bytes,
       get_byte(kms_blind_index('x', 'bi_short'), 1) & 15 AS unused_bits;

-- values carry the tag of their plaintext; keys without a blind index carry none
SELECT kms_blind_index(kms_encrypt('Bob@Example.com', 'bi_lower')) = kms_blind_index('bob@example.com', 'bi_lower') AS value_carries_probe;
SELECT kms_create_key('bi_none', 'local:regress');
SELECT kms_blind_index(kms_encrypt('x', 'bi_none')) IS NULL AS no_tag;
SELECT provolatile, proparallel FROM pg_proc WHERE oid = 'kms_blind_index(enc_text)'::regprocedure;

-- index scan through an expression index, exact rows back
CREATE TABLE users (id int PRIMARY KEY, email enc_text NOT NULL);
INSERT INTO users SELECT g, kms_encrypt(CASE WHEN g % 1000 = 0 THEN 'Alice@Example.com'
                                             WHEN g % 1000 = 1 THEN 'ALICE@example.COM'
                                             ELSE 'user' || g || '@example.com' END, 'bi_email')
  FROM generate_series(1, 5000) g;
CREATE INDEX users_email_bidx ON users (kms_blind_index(email));
ANALYZE users;
EXPLAIN (COSTS OFF) SELECT id FROM users WHERE kms_blind_index(email) = kms_blind_index('alice@example.com', 'bi_email');
SELECT id, kms_decrypt(email) FROM users
 WHERE kms_blind_index(email) = kms_blind_index('alice@example.com', 'bi_email') ORDER BY id;
SELECT kms_blind_index(email) AS tag, count(*) FROM users GROUP BY 1 HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 1 \gset
SELECT :'tag'::bytea = kms_blind_index('alice@example.com', 'bi_email') AS most_frequent_is_alice;
DROP TABLE users;
