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

-- the key name chosen per row: a call site remembers its key between rows,
-- and skips comparing the name only when it is a constant of the query
CREATE TEMP TABLE bi_ref AS
  SELECT 'bi_exact' AS k, kms_blind_index('Mixed', 'bi_exact') AS t
  UNION ALL SELECT 'bi_lower', kms_blind_index('Mixed', 'bi_lower')
  UNION ALL SELECT 'bi_short', kms_blind_index('Mixed', 'bi_short');
SELECT count(DISTINCT t) AS distinct_reference_tags FROM bi_ref;
-- from a column
SELECT count(*) AS rows, count(*) FILTER (WHERE kms_blind_index('Mixed', n.k) = r.t) AS right_tags
  FROM (SELECT (ARRAY['bi_exact', 'bi_lower', 'bi_short'])[g % 3 + 1] AS k FROM generate_series(1, 30) g) n
  JOIN bi_ref r USING (k);
-- computed per row (each row's name is built in the same place)
SELECT count(*) AS rows, count(*) FILTER (WHERE kms_blind_index('Mixed', 'bi_' || n.s) = r.t) AS right_tags
  FROM (SELECT (ARRAY['exact', 'lower', 'short'])[g % 3 + 1] AS s FROM generate_series(1, 30) g) n
  JOIN bi_ref r ON r.k = 'bi_' || n.s;
-- tagged encryption under per-row key names: each value carries its own key's tag
SELECT count(*) AS rows, count(*) FILTER (WHERE kms_blind_index(kms_encrypt('Mixed', n.k)) = r.t) AS right_tags
  FROM (SELECT (ARRAY['bi_exact', 'bi_lower', 'bi_short'])[g % 3 + 1] AS k FROM generate_series(1, 30) g) n
  JOIN bi_ref r USING (k);
-- a PL/pgSQL variable: one call site (a simple expression) run again with a new value; in
-- the second half the old value is freed before the new one is copied in, so that each new name
-- (all three are 8 bytes) lands at the address of the one before: a call site that took a
-- parameter's datum for a constant of the query (compared by address) would keep the first key
DO $$
DECLARE
    n text;
    t bytea;
    bad int := 0;
BEGIN
    FOR i IN 1..60 LOOP
        IF i > 30 THEN
            n := NULL;
        END IF;
        n := (ARRAY['bi_exact', 'bi_lower', 'bi_short'])[i % 3 + 1];
        t := kms_blind_index('Mixed', n);
        IF t <> (SELECT r.t FROM bi_ref r WHERE r.k = n) THEN
            bad := bad + 1;
        END IF;
    END LOOP;
    RAISE NOTICE 'PL/pgSQL variable as the key name: % of 60 tags wrong', bad;
END
$$;
DROP TABLE bi_ref;
