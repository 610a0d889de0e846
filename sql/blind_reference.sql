-- blind-index transforms and truncation against independent references, through SQL
--
-- The same index key under another transform or index_bits: as superuser,
-- change pgcrypt_kms.keys.blind_index / index_bits of one key between
-- statements, and flush this backend's cache so that the next statement
-- re-reads the row (the index key stays the same).  Then, for the transform T under test and a reference fold R
-- written here from explicit alphabets (the README's table):
--   kms_blind_index(s) under T  =  kms_blind_index(R(s)) under exact
-- for every input, which holds exactly when T(s) = R(s) (HMAC-SHA-256).
-- Truncation: the tag under index_bits b is compared bit by bit (bit strings,
-- no byte masks) with the first b bits of the full 256-bit tag.
--
-- A SQL_ASCII database, so that every byte 1..255 is a valid text character
-- (text cannot hold byte 0: test/unit/test_blind_tag.c covers it in C).
SELECT current_database() AS regress_db \gset
CREATE DATABASE pgck_blind_ref ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c pgck_blind_ref
SET client_min_messages = warning;
CREATE EXTENSION pgcrypt_kms;
RESET client_min_messages;
SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = current_database();

-- reference folds (byte-wise in SQL_ASCII)
CREATE FUNCTION pg_temp.ref_lower(s text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT translate(s, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') $$;
-- white space: space, \t, \n, \v, \f, \r
CREATE FUNCTION pg_temp.ref_email(s text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT pg_temp.ref_lower(btrim(s, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))) $$;
CREATE FUNCTION pg_temp.ref_digits(s text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT coalesce(string_agg(c, '' ORDER BY i), '')
            FROM (SELECT i, substr(s, i, 1) AS c FROM generate_series(1, length(s)) i) x
           WHERE strpos('0123456789', c) > 0 $$;
-- positive controls of the references themselves
SELECT pg_temp.ref_lower('AZaz@[`09') AS lower, pg_temp.ref_email(E' \t A.B+Z@X.COM \n\r') AS email,
       pg_temp.ref_digits('+1 (555) 010-9999 x') AS digits;

-- inputs: every byte 1..255 alone, embedded, leading and trailing, and random
-- strings (fixed seed; half of them biased to white space, letters, digits)
CREATE TABLE inputs (id serial PRIMARY KEY, what text, s text);
INSERT INTO inputs (what, s) SELECT 'byte alone', chr(b) FROM generate_series(1, 255) b;
INSERT INTO inputs (what, s) SELECT 'byte embedded', 'aZ' || chr(b) || '7 ' FROM generate_series(1, 255) b;
INSERT INTO inputs (what, s) SELECT 'byte leading and trailing', repeat(chr(b), 2) || 'xQ5' || repeat(chr(b), 2) FROM generate_series(1, 255) b;
SELECT setseed(0.19);
INSERT INTO inputs (what, s)
SELECT 'random', coalesce(string_agg(CASE WHEN g % 2 = 0 THEN chr(1 + floor(random() * 255)::int)
                                          ELSE substr(E' \t\n\013\f\rAZaz@.+-09YBbyMm', 1 + floor(random() * 23)::int, 1) END,
                                     '' ORDER BY i) FILTER (WHERE i IS NOT NULL), '')
  FROM generate_series(1, 2000) g
  LEFT JOIN LATERAL generate_series(1, floor(random() * 41)::int + g * 0) i ON true
 GROUP BY g;
SELECT what, count(*), max(length(s)) <= 41 AS short FROM inputs GROUP BY what ORDER BY what;
SELECT count(DISTINCT s) > 1900 AS random_strings_mostly_distinct, count(*) FILTER (WHERE s = '') > 0 AS some_empty
  FROM inputs WHERE what = 'random';
SELECT count(*) = 255 AS every_byte_1_255_present
  FROM (SELECT DISTINCT ascii(s) FROM inputs WHERE what = 'byte alone') b;

SELECT kms_create_key('ref', 'local:regress', blind_index => 'exact');
CREATE FUNCTION pg_temp.reconfigure(transform text, bits int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    UPDATE pgcrypt_kms.keys SET blind_index = transform, index_bits = bits WHERE key_name = 'ref';
    PERFORM kms_flush_cache();
    RETURN format('%s, %s bits', transform, bits);
END $$;
-- reference tags: the exact tag of each reference fold
CREATE TABLE ref_tags AS
SELECT id, kms_blind_index(s, 'ref') AS exact, kms_blind_index(pg_temp.ref_lower(s), 'ref') AS lower,
       kms_blind_index(pg_temp.ref_email(s), 'ref') AS email, kms_blind_index(pg_temp.ref_digits(s), 'ref') AS digits
  FROM inputs;
-- exact: distinct strings have distinct tags (nothing folded), and values carry the probe
SELECT count(DISTINCT s) = count(DISTINCT exact) AS exact_folds_nothing,
       count(*) FILTER (WHERE kms_blind_index(kms_encrypt(s, 'ref')) IS DISTINCT FROM exact) AS carried_tag_differs
  FROM inputs JOIN ref_tags USING (id);

-- the same index key under each transform
SELECT pg_temp.reconfigure('lower', 256);
SELECT what, count(*) FILTER (WHERE kms_blind_index(s, 'ref') IS DISTINCT FROM lower) AS lower_differs_from_reference,
       count(*) FILTER (WHERE kms_blind_index(kms_encrypt(s, 'ref')) IS DISTINCT FROM lower) AS carried_tag_differs,
       bool_or(kms_blind_index(s, 'ref') <> exact) AS fold_changes_some
  FROM inputs JOIN ref_tags USING (id) GROUP BY what ORDER BY what;
SELECT pg_temp.reconfigure('email', 256);
SELECT what, count(*) FILTER (WHERE kms_blind_index(s, 'ref') IS DISTINCT FROM email) AS email_differs_from_reference,
       count(*) FILTER (WHERE kms_blind_index(kms_encrypt(s, 'ref')) IS DISTINCT FROM email) AS carried_tag_differs,
       bool_or(kms_blind_index(s, 'ref') <> exact) AS fold_changes_some
  FROM inputs JOIN ref_tags USING (id) GROUP BY what ORDER BY what;
SELECT pg_temp.reconfigure('digits', 256);
SELECT what, count(*) FILTER (WHERE kms_blind_index(s, 'ref') IS DISTINCT FROM digits) AS digits_differs_from_reference,
       count(*) FILTER (WHERE kms_blind_index(kms_encrypt(s, 'ref')) IS DISTINCT FROM digits) AS carried_tag_differs,
       bool_or(kms_blind_index(s, 'ref') <> exact) AS fold_changes_some
  FROM inputs JOIN ref_tags USING (id) GROUP BY what ORDER BY what;
-- which single bytes each transform changes, by the tags alone
SELECT string_agg(chr(ascii(s)), '' ORDER BY ascii(s)) AS bytes_lower_changes
  FROM inputs JOIN ref_tags USING (id) WHERE what = 'byte alone' AND lower <> exact;
SELECT array_agg(ascii(s) ORDER BY ascii(s)) AS bytes_digits_keeps
  FROM inputs JOIN ref_tags USING (id) WHERE what = 'byte alone' AND digits = exact;
SELECT array_agg(ascii(s) ORDER BY ascii(s)) AS bytes_email_trims
  FROM inputs JOIN ref_tags USING (id) WHERE what = 'byte alone' AND email = kms_blind_index('', 'ref');

-- truncation: every index_bits 8..256 (the SQL range; 1..256 in the C unit
-- test), 200 values each, against the first index_bits bits of the full tag
SELECT pg_temp.reconfigure('exact', 256);
CREATE TABLE full_tags AS
SELECT g, 'value ' || g AS s, ('x' || encode(kms_blind_index('value ' || g, 'ref'), 'hex'))::varbit AS bits
  FROM generate_series(1, 200) g;
SELECT count(*) AS values, min(length(bits)) AS full_bits FROM full_tags;
CREATE TABLE trunc_results (index_bits int PRIMARY KEY, checked int, differ int);
\set ECHO none
SELECT format('DO $d$BEGIN PERFORM pg_temp.reconfigure(%L, %s); END$d$', 'exact', b),
       format($q$INSERT INTO trunc_results
                 SELECT %1$s, count(*),
                        count(*) FILTER (WHERE ('x' || encode(kms_blind_index(s, 'ref'), 'hex'))::varbit
                                               IS DISTINCT FROM substring(bits FROM 1 FOR %1$s) || repeat('0', (8 - %1$s %% 8) %% 8)::varbit)
                   FROM full_tags$q$, b)
  FROM generate_series(8, 256) b ORDER BY b
\gexec
\set ECHO all
SELECT count(*) AS index_bits_checked, min(index_bits), max(index_bits), sum(checked) AS tags_checked,
       coalesce(array_agg(index_bits ORDER BY index_bits) FILTER (WHERE differ > 0), '{}') AS index_bits_differing
  FROM trunc_results;
-- a tag under 12 bits: 2 bytes, the low 4 bits of the second zero
SELECT length(kms_blind_index('x', 'ref')) AS bytes_at_256 \gset
SELECT pg_temp.reconfigure('exact', 12);
SELECT :bytes_at_256 AS bytes_at_256, length(kms_blind_index('x', 'ref')) AS bytes_at_12,
       get_byte(kms_blind_index('x', 'ref'), 1) & 15 AS unused_bits;

\c :regress_db
DROP DATABASE pgck_blind_ref WITH (FORCE);
