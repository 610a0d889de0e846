-- typed values, order-revealing terms and named blind indexes (issue 14):
-- round trips per type, type refusals, range and ORDER BY by index scan with
-- EXPLAIN, the term and the tags inside the AAD, old values still decrypting
\set VERBOSITY default
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- flip one byte of a value's binary form at offset off (0-based)
CREATE FUNCTION pg_temp.flip(v enc_text, off int) RETURNS enc_text LANGUAGE sql AS $$
    SELECT ('pgck:' || pg_catalog.translate(pg_catalog.encode(pg_catalog.set_byte(b, off, pg_catalog.get_byte(b, off) # 1), 'base64'), E'\n', ''))::enc_text
      FROM (SELECT pg_catalog.decode(pg_catalog.substr(v::text, 6), 'base64') AS b) s $$;

SELECT kms_create_key('ore_dob', 'local:regress', order_index => true);
SELECT kms_create_key('ore_amt', 'local:regress', order_index => true, blind_index => 'exact', index_bits => 64);
SELECT kms_create_key('ore_plain', 'local:regress');                      -- no index at all
SELECT kms_create_key('ore_mail', 'local:regress', blind_index => 'email');
SELECT key_name, index_name, transform, index_bits FROM kms_key_indexes WHERE key_name LIKE 'ore\_%' ORDER BY 1, 2;
-- order_index => false switches nothing on (no blind index, no order index)
SELECT kms_create_key('ore_off', 'local:regress', order_index => false);
SELECT DISTINCT blind_index, (SELECT count(*) FROM kms_key_indexes i WHERE i.key_name = 'ore_off') AS indexes
  FROM kms_keys WHERE key_name = 'ore_off';

-- every option is off unless asked: a key without an order index carries no term
SELECT kms_ore(kms_encrypt(42::int8, 'ore_plain')) IS NULL AS no_term_without_order_index,
       kms_ore(kms_encrypt(42::int8, 'ore_mail')) IS NULL AS no_term_with_blind_index_only,
       kms_ore(kms_encrypt(42::int8, 'ore_amt')) IS NOT NULL AS term_with_order_index,
       kms_ore(kms_encrypt('text', 'ore_amt')) IS NULL AS no_term_for_text;
SELECT pg_temp.sqlstate_of($$SELECT kms_ore(1::int8, 'ore_plain')$$) AS probe_without_order_index,
       pg_temp.sqlstate_of($$SELECT kms_add_index('ore_plain', 'order', 'order')$$) AS order_needs_index_key,
       pg_temp.sqlstate_of($$SELECT kms_add_index('ore_amt', 'order', 'order')$$) AS duplicate_index,
       pg_temp.sqlstate_of($$SELECT kms_add_index('ore_mail', 'x', 'upper')$$) AS unknown_transform,
       pg_temp.sqlstate_of($$SELECT kms_add_index('ore_mail', 'x', 'prefix(0)')$$) AS prefix_zero,
       pg_temp.sqlstate_of($$SELECT kms_add_index('ore_mail', 'Bad Name', 'domain')$$) AS bad_name,
       pg_temp.sqlstate_of($$SELECT kms_add_index('ore_nokey', 'x', 'domain')$$) AS unknown_key;

-- typed round trips, each type recorded and refused as another
CREATE TEMP TABLE typed AS
SELECT kms_encrypt('-9223372036854775808'::int8, 'ore_amt') AS i_min,
       kms_encrypt(9223372036854775807::int8, 'ore_amt') AS i_max,
       kms_encrypt(-12345678901234567890.123456789::numeric, 'ore_amt') AS n,
       kms_encrypt(1.50::numeric, 'ore_amt') AS n_scale,
       kms_encrypt('NaN'::numeric, 'ore_amt') AS n_nan,
       kms_encrypt('-infinity'::date, 'ore_dob') AS d_ninf,
       kms_encrypt('1984-02-29'::date, 'ore_dob') AS d,
       kms_encrypt('infinity'::timestamptz, 'ore_dob') AS ts_inf,
       kms_encrypt('2001-09-09 01:46:40.123456+00'::timestamptz, 'ore_dob', 'ctx') AS ts_ctx,
       kms_encrypt('\x00ff10'::bytea, 'ore_plain') AS b,
       kms_encrypt('plain text', 'ore_amt') AS t;
SELECT kms_decrypt_int8(i_min) AS i_min, kms_decrypt_int8(i_max) AS i_max, kms_decrypt_numeric(n) AS n,
       kms_decrypt_numeric(n_scale) AS n_scale, kms_decrypt_numeric(n_nan) AS n_nan,
       kms_decrypt_date(d_ninf) AS d_ninf, kms_decrypt_date(d) AS d,
       kms_decrypt_timestamptz(ts_inf) AS ts_inf, kms_decrypt_timestamptz(ts_ctx, 'ctx') = '2001-09-09 01:46:40.123456+00' AS ts_ctx,
       kms_decrypt_bytea(b) AS b, kms_decrypt(t) AS t
  FROM typed;
SELECT kms_plaintext_type(i_min), kms_plaintext_type(n), kms_plaintext_type(d), kms_plaintext_type(ts_inf),
       kms_plaintext_type(b), kms_plaintext_type(t) FROM typed;
SELECT pg_temp.sqlstate_of($$SELECT kms_decrypt(i_min) FROM typed$$) AS int8_as_text,
       pg_temp.sqlstate_of($$SELECT kms_decrypt_date(i_min) FROM typed$$) AS int8_as_date,
       pg_temp.sqlstate_of($$SELECT kms_decrypt_timestamptz(i_min) FROM typed$$) AS int8_as_timestamptz,
       pg_temp.sqlstate_of($$SELECT kms_decrypt_int8(t) FROM typed$$) AS text_as_int8,
       pg_temp.sqlstate_of($$SELECT kms_decrypt_bytea(t) FROM typed$$) AS text_as_bytea,
       pg_temp.sqlstate_of($$SELECT kms_decrypt_timestamptz(ts_ctx) FROM typed$$) AS missing_context,
       pg_temp.sqlstate_of($$SELECT kms_decrypt_int8(i_min, NULL) FROM typed$$) AS null_context;
\set VERBOSITY terse
SELECT kms_decrypt(i_min) FROM typed;
\set VERBOSITY default
-- NULL in, NULL out; a NULL key is refused
SELECT kms_encrypt(NULL::int8, 'ore_amt') IS NULL AS null_value, kms_decrypt_int8(NULL) IS NULL AS null_decrypt,
       pg_temp.sqlstate_of($$SELECT kms_encrypt(1::int8, NULL)$$) AS null_key;
-- numerics outside the ORE encoding are refused under an order index, accepted without one
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt(1.00000000000000000000000000000000000001::numeric, 'ore_amt')$$) AS too_precise,
       pg_temp.sqlstate_of($$SELECT kms_encrypt(1e130::numeric, 'ore_amt')$$) AS too_large,
       pg_temp.sqlstate_of($$SELECT kms_ore(1e-140::numeric, 'ore_amt')$$) AS probe_too_small,
       kms_decrypt_numeric(kms_encrypt(1e130::numeric, 'ore_plain')) = 1e130 AS fine_without_order_index;
-- terms of different types do not compare
SELECT pg_temp.sqlstate_of($$SELECT kms_ore(1::int8, 'ore_amt') < kms_ore(1.5, 'ore_amt')$$) AS int8_vs_numeric,
       kms_ore(1, 'ore_amt') = kms_ore(1::int8, 'ore_amt') AS int4_probes_int8,
       kms_ore(-3::int2, 'ore_amt') = kms_ore(-3::int8, 'ore_amt') AS int2_probes_int8;
-- integer and smallint plaintexts resolve to one kms_encrypt (int8 and numeric
-- alone were equally good candidates) and are recorded as int8: same type,
-- same order term, found by an int8 probe, read back by kms_decrypt_int8
CREATE TEMP TABLE narrow (i int4, s int2);
INSERT INTO narrow VALUES (2147483647, -32768);
SELECT kms_decrypt_int8(kms_encrypt(42, 'ore_amt')) AS int4_literal,
       kms_decrypt_int8(kms_encrypt(i, 'ore_amt')) AS int4_column,
       kms_decrypt_int8(kms_encrypt(s, 'ore_amt')) AS int2_column,
       kms_decrypt_int8(kms_encrypt(i, 'ore_amt', 'ctx'), 'ctx') AS int4_context,
       kms_decrypt_int8(kms_encrypt(s, 'ore_amt', 'ctx'), 'ctx') AS int2_context,
       kms_plaintext_type(kms_encrypt(s, 'ore_amt')) AS int2_type,
       kms_ore(kms_encrypt(i, 'ore_amt')) = kms_ore(2147483647::int8, 'ore_amt') AS int4_term,
       kms_ore(kms_encrypt(s, 'ore_amt')) = kms_ore(-32768::int8, 'ore_amt') AS int2_term,
       kms_encrypt(NULL::int4, 'ore_amt') IS NULL AS null_int4,
       pg_temp.sqlstate_of($$SELECT kms_encrypt(1::int2, NULL)$$) AS int2_null_key
  FROM narrow;
-- the key's blind-index tag is for text and bytea values only: a typed value is found by its
-- order term (equal numerics of different scales, 1.5 and 1.50, have one term and no tags that
-- would tell them apart; the text transforms mean nothing over an int8's bytes)
SELECT kms_blind_index(kms_encrypt(1.5, 'ore_amt')) IS NULL AS numeric_untagged,
       kms_blind_index(kms_encrypt(7::int8, 'ore_amt')) IS NULL AS int8_untagged,
       kms_blind_index(kms_encrypt(current_date, 'ore_dob')) IS NULL AS date_untagged,
       kms_blind_index(kms_encrypt(now(), 'ore_dob')) IS NULL AS timestamptz_untagged,
       kms_ore(kms_encrypt(1.5, 'ore_amt')) = kms_ore(kms_encrypt(1.50, 'ore_amt')) AS equal_scales_one_term,
       kms_blind_index(kms_encrypt('\x0102'::bytea, 'ore_amt')) = kms_blind_index(kms_encrypt('\x0102'::bytea, 'ore_amt')) AS bytea_tagged,
       kms_blind_index(kms_encrypt('x', 'ore_amt')) = kms_blind_index('x', 'ore_amt') AS text_tagged;
-- a term is 11 + ceil(bits / 4) bytes (scheme, domain, epoch, 8-byte key id, trits): int8 27, date 19, numeric 46
SELECT octet_length(kms_ore_term_send(kms_ore(1::int8, 'ore_amt'))) AS int8_term,
       octet_length(kms_ore_term_send(kms_ore(current_date, 'ore_dob'))) AS date_term,
       octet_length(kms_ore_term_send(kms_ore(1.5, 'ore_amt'))) AS numeric_term;
-- literals: a term's text form round-trips; malformed ones are refused
SELECT (kms_ore(7::int8, 'ore_amt')::text::kms_ore_term) = kms_ore(7::int8, 'ore_amt') AS text_round_trip,
       pg_temp.sqlstate_of($$SELECT 'ore:01'::kms_ore_term$$) AS short_term,
       pg_temp.sqlstate_of($$SELECT 'xyz'::kms_ore_term$$) AS not_a_term;

-- the term and the tags are authenticated: a flipped bit in the extension fails decryption
-- (a typed value has no blind-index tag: its fields start at byte 19, their length first)
SELECT pg_temp.sqlstate_of(format($$SELECT kms_decrypt_int8(%L::enc_text)$$, pg_temp.flip(i_max, 19 + 2 + 3 + 2 + 12)))
       AS term_bit_flipped,
       pg_temp.sqlstate_of(format($$SELECT kms_decrypt_int8(%L::enc_text)$$, pg_temp.flip(i_max, 19 + 2 + 2)))
       AS type_byte_flipped,
       -- int8 (2) flipped to numeric (3), decrypted as numeric: the AEAD refuses it
       pg_temp.sqlstate_of(format($$SELECT kms_decrypt_numeric(%L::enc_text)$$, pg_temp.flip(i_max, 19 + 2 + 2)))
       AS type_byte_forged
  FROM typed;

-- range and ORDER BY through an expression index
CREATE TABLE people_ore (id int PRIMARY KEY, dob enc_text, amount enc_text, plain_dob date, plain_amount numeric);
INSERT INTO people_ore
SELECT g, kms_encrypt(d, 'ore_dob'), kms_encrypt(a, 'ore_amt'), d, a
  FROM (SELECT g, date '1950-01-01' + (g * 7919) % 25000 AS d,
               round(((g * 104729) % 2000001 - 1000000) / 100.0, 2) AS a
          FROM generate_series(1, 20000) g) s;
INSERT INTO people_ore VALUES (0, NULL, NULL, NULL, NULL);
CREATE INDEX people_ore_dob ON people_ore (kms_ore(dob));
CREATE INDEX people_ore_amount ON people_ore (kms_ore(amount));
ANALYZE people_ore;
EXPLAIN (COSTS OFF) SELECT id FROM people_ore
 WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob') AND kms_ore('1989-12-31'::date, 'ore_dob');
SELECT count(*) AS found,
       count(*) FILTER (WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS correct,
       (SELECT count(*) FROM people_ore WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS expected
  FROM people_ore
 WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob') AND kms_ore('1989-12-31'::date, 'ore_dob');
EXPLAIN (COSTS OFF) SELECT id FROM people_ore ORDER BY kms_ore(amount) LIMIT 100;
-- ORDER BY the term is ORDER BY the plaintext (ties broken by id on both sides; NULLs last)
SELECT (SELECT array_agg(id) FROM (SELECT id FROM people_ore ORDER BY kms_ore(amount), id) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM people_ore ORDER BY plain_amount, id) s) AS amount_order_equal,
       (SELECT array_agg(id) FROM (SELECT id FROM people_ore ORDER BY kms_ore(dob) DESC, id) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM people_ore ORDER BY plain_dob DESC, id) s) AS dob_desc_order_equal;
SELECT id, kms_decrypt_numeric(amount) FROM people_ore ORDER BY kms_ore(amount) LIMIT 3;
SELECT count(*) AS negative_amounts, (SELECT count(*) FROM people_ore WHERE plain_amount < 0) AS expected
  FROM people_ore WHERE kms_ore(amount) < kms_ore(0::numeric, 'ore_amt');

-- index key rotation, as for blind indexes: a transition window in which a range is the OR of a
-- range under the new order key and one under the previous (kms_ore(value, key, previous => true)),
-- re-tag, REINDEX, finish.  Outside a rotation there is no previous probe.
SELECT kms_ore('1980-01-01'::date, 'ore_dob', true) IS NULL AS no_previous_probe_outside_rotation;
SELECT kms_ore('1980-01-01'::date, 'ore_dob') AS lo_before \gset
SELECT kms_rotate_index_key('ore_dob') AS index_key_version;
SELECT kms_ore_term_send(kms_ore('1980-01-01'::date, 'ore_dob', true)) = kms_ore_term_send(:'lo_before'::kms_ore_term)
       AS previous_probe_is_the_old_probe,
       kms_ore_term_send(kms_ore('1980-01-01'::date, 'ore_dob')) <> kms_ore_term_send(:'lo_before'::kms_ore_term)
       AS new_probe_differs,
       kms_ore(1::int8, 'ore_amt', true) IS NULL AS other_key_not_in_rotation;
-- re-tag half the rows (as a batch of kms_reencrypt_table would), the window still open
UPDATE people_ore SET dob = kms_reencrypt(dob) WHERE id % 2 = 0;
EXPLAIN (COSTS OFF) SELECT id FROM people_ore
 WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob') AND kms_ore('1989-12-31'::date, 'ore_dob')
    OR kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob', true) AND kms_ore('1989-12-31'::date, 'ore_dob', true);
SELECT count(*) AS found_in_window,
       count(*) FILTER (WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS correct,
       (SELECT count(*) FROM people_ore WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS expected
  FROM people_ore
 WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob') AND kms_ore('1989-12-31'::date, 'ore_dob')
    OR kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob', true) AND kms_ore('1989-12-31'::date, 'ore_dob', true);
-- each probe alone finds only the rows tagged under its key
SELECT count(*) FILTER (WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob') AND kms_ore('1989-12-31'::date, 'ore_dob'))
     = count(*) FILTER (WHERE id % 2 = 0 AND plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS new_probe_finds_retagged,
       count(*) FILTER (WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob', true) AND kms_ore('1989-12-31'::date, 'ore_dob', true))
     = count(*) FILTER (WHERE id % 2 = 1 AND plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS previous_probe_finds_the_rest
  FROM people_ore;
-- kms_reencrypt_table moves values off old DEK versions; kms_rotate_index_key made a new DEK version
-- too, so the values not yet re-tagged (the odd half) are exactly those left on an older version
SELECT count(*) FILTER (WHERE kms_version_id(dob) <> (SELECT version_id FROM kms_keys WHERE key_name = 'ore_dob' AND current))
     = count(*) FILTER (WHERE id % 2 = 1) AS old_tags_are_on_older_versions,
       count(*) FILTER (WHERE id % 2 = 1) AS odd_rows
  FROM people_ore WHERE dob IS NOT NULL;
CALL kms_reencrypt_table('people_ore', 'dob', batch => 7000);
SELECT count(*) FILTER (WHERE get_byte(kms_ore_term_send(kms_ore(dob)), 2)
                           <> get_byte(kms_ore_term_send(kms_ore(0::int8, 'ore_dob')), 2)) AS terms_under_previous_order_key,
       count(*) FILTER (WHERE kms_decrypt_date(dob) = plain_dob) AS decrypt_after_retag
  FROM people_ore WHERE dob IS NOT NULL;
REINDEX INDEX people_ore_dob;
-- the temp table of typed round trips holds values of this key too (kms_finish_index_rotation
-- counts the session's own temp tables and would refuse): re-tag them as well
UPDATE typed SET d_ninf = kms_reencrypt(d_ninf), d = kms_reencrypt(d), ts_inf = kms_reencrypt(ts_inf),
                 ts_ctx = kms_reencrypt(ts_ctx, 'ctx');
SELECT kms_finish_index_rotation('ore_dob');
SELECT kms_ore('1980-01-01'::date, 'ore_dob', true) IS NULL AS no_previous_probe_after_finish;
SELECT count(*) AS found_after_retag,
       count(*) FILTER (WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31') AS correct
  FROM people_ore
 WHERE kms_ore(dob) BETWEEN kms_ore('1980-01-01'::date, 'ore_dob') AND kms_ore('1989-12-31'::date, 'ore_dob');
SELECT (SELECT array_agg(id) FROM (SELECT id FROM people_ore ORDER BY kms_ore(dob), id) s)
     = (SELECT array_agg(id) FROM (SELECT id FROM people_ore ORDER BY plain_dob, id) s) AS dob_order_equal_after_retag;
SELECT kms_plaintext_type(dob) AS type_kept_by_reencrypt FROM people_ore WHERE id = 1;
-- a key with only the order option: blind_index defaults to exact (the order key is derived from
-- the index key); asking for an order index and no blind index is refused, no key left behind
SELECT pg_temp.sqlstate_of($$SELECT kms_create_key('ore_nobidx', 'local:regress', order_index => true, blind_index => 'none')$$)
       AS order_without_index_key,
       (SELECT count(*) FROM kms_keys WHERE key_name = 'ore_nobidx') AS keys_left;

-- named blind indexes: domain, suffix(4), prefix(3), each its own expression index
SELECT kms_add_index('ore_mail', 'domain', 'domain', index_bits => 32);
SELECT kms_add_index('ore_mail', 'last4', 'suffix(4)');
SELECT kms_add_index('ore_mail', 'first3', 'prefix(3)');
CREATE TABLE users_ore (id int PRIMARY KEY, email enc_text, plain text);
INSERT INTO users_ore
SELECT g, kms_encrypt(e, 'ore_mail'), e
  FROM (SELECT g, CASE g % 4 WHEN 0 THEN 'user' || g || '@Example.com' WHEN 1 THEN 'u' || g || '@other.org'
                             WHEN 2 THEN ' Ann' || g || '@EXAMPLE.COM ' ELSE 'x' || g || '@example.co' END AS e
          FROM generate_series(1, 20000) g) s;
CREATE INDEX users_ore_domain ON users_ore (kms_blind_tag(email, 'domain'));
CREATE INDEX users_ore_last4 ON users_ore (kms_blind_tag(email, 'last4'));
ANALYZE users_ore;
EXPLAIN (COSTS OFF) SELECT id FROM users_ore WHERE kms_blind_tag(email, 'domain') = kms_blind_tag('example.com', 'ore_mail', 'domain');
SELECT count(*) AS found,
       count(*) FILTER (WHERE lower(trim(plain)) LIKE '%@example.com') AS correct,
       (SELECT count(*) FROM users_ore WHERE lower(trim(plain)) LIKE '%@example.com') AS expected
  FROM users_ore WHERE kms_blind_tag(email, 'domain') = kms_blind_tag('example.com', 'ore_mail', 'domain');
SELECT count(*) AS found_last4, count(*) FILTER (WHERE right(plain, 4) = '.org') AS correct
  FROM users_ore WHERE kms_blind_tag(email, 'last4') = kms_blind_tag('.org', 'ore_mail', 'last4');
SELECT kms_blind_tag(email, 'first3') = kms_blind_tag('use', 'ore_mail', 'first3') AS prefix_matches
  FROM users_ore WHERE id = 4;
-- each index has its own key: equal transformed bytes give unrelated tags
SELECT kms_blind_tag('abcd', 'ore_mail', 'last4') <> kms_blind_tag('abcd', 'ore_mail', 'first3')
   AND kms_blind_tag('abcd', 'ore_mail', 'last4') <> kms_blind_index('abcd', 'ore_mail') AS tags_unlinkable,
       octet_length(kms_blind_tag('a@b.c', 'ore_mail', 'domain')) AS domain_tag_bytes;
SELECT pg_temp.sqlstate_of($$SELECT kms_blind_tag('x', 'ore_mail', 'nosuch')$$) AS unknown_index,
       kms_blind_tag(email, 'nosuch') IS NULL AS absent_tag_is_null FROM users_ore WHERE id = 1;
-- the tags are authenticated: flip a byte inside the named tags
SELECT pg_temp.sqlstate_of(format($$SELECT kms_decrypt(%L::enc_text)$$,
       pg_temp.flip(email, octet_length(pg_catalog.decode(pg_catalog.substr(email::text, 6), 'base64')) - 16 - octet_length(plain) - 2)))
       AS tag_byte_flipped
  FROM users_ore WHERE id = 5;
-- an index key rotation re-keys the named indexes too: during the window the probe under the
-- previous index key (previous => true; NULL outside a rotation) finds the values not yet re-tagged
SELECT kms_blind_tag('example.com', 'ore_mail', 'domain', true) IS NULL AS no_previous_tag_outside_rotation;
SELECT kms_rotate_index_key('ore_mail') AS index_key_version;
UPDATE users_ore SET email = kms_reencrypt(email) WHERE id % 4 = 0;   -- half the example.com rows
SELECT count(*) AS found_in_window, count(*) FILTER (WHERE lower(trim(plain)) LIKE '%@example.com') AS correct,
       count(*) FILTER (WHERE kms_blind_tag(email, 'domain') = kms_blind_tag('example.com', 'ore_mail', 'domain')) AS by_new_probe,
       count(*) FILTER (WHERE kms_blind_tag(email, 'domain') = kms_blind_tag('example.com', 'ore_mail', 'domain', true)) AS by_previous_probe
  FROM users_ore
 WHERE kms_blind_tag(email, 'domain') = ANY (ARRAY[kms_blind_tag('example.com', 'ore_mail', 'domain'),
                                                   kms_blind_tag('example.com', 'ore_mail', 'domain', true)]);
UPDATE users_ore SET email = kms_reencrypt(email) WHERE id % 4 <> 0;
REINDEX INDEX users_ore_domain;
SELECT kms_finish_index_rotation('ore_mail');
SELECT count(*) AS found_after_retag, kms_blind_tag('example.com', 'ore_mail', 'domain', true) IS NULL AS no_previous_tag_after_finish
  FROM users_ore WHERE kms_blind_tag(email, 'domain') = kms_blind_tag('example.com', 'ore_mail', 'domain');
-- dropping an index stops new values carrying it; old values keep theirs
SELECT kms_drop_index('ore_mail', 'first3');
SELECT kms_blind_tag(kms_encrypt('new@example.com', 'ore_mail'), 'first3') IS NULL AS new_value_without_dropped,
       kms_blind_tag(email, 'first3') IS NOT NULL AS old_value_keeps FROM users_ore WHERE id = 1;
-- the name added again with another transform gets another key: the old values' prefix(3) tags
-- (of 'use' for 'user4@Example.com') never match the new suffix(3) probes of the same bytes
SELECT kms_add_index('ore_mail', 'first3', 'suffix(3)');
SELECT kms_blind_tag(email, 'first3') = kms_blind_tag('use', 'ore_mail', 'first3') AS old_prefix_tag_matches_new_probe,
       kms_blind_tag(kms_encrypt('abcuse', 'ore_mail'), 'first3') = kms_blind_tag('use', 'ore_mail', 'first3') AS new_suffix_tag_matches
  FROM users_ore WHERE id = 4;

-- an index added to a key that already has values: kms_add_index gives the key a new data key
-- version, so kms_reencrypt_table (which re-encrypts the values off their key's current version)
-- re-tags every one of them; kms_create_key(..., order_index => true) makes version 1 only
SELECT kms_create_key('ore_late', 'local:regress', blind_index => 'exact');
SELECT kms_create_key('ore_fresh', 'local:regress', order_index => true);
SELECT count(*) AS fresh_versions FROM kms_keys WHERE key_name = 'ore_fresh';
CREATE TABLE late_ore (id int PRIMARY KEY, v enc_text, n enc_text, plain text);
INSERT INTO late_ore SELECT g, kms_encrypt('abc' || g, 'ore_late'), kms_encrypt(g::int8, 'ore_late'), 'abc' || g
  FROM generate_series(1, 50) g;
SELECT kms_add_index('ore_late', 'p3', 'prefix(3)');
SELECT kms_add_index('ore_late', 'order', 'order');
SELECT count(*) AS late_versions, count(*) FILTER (WHERE current) AS current_versions FROM kms_keys WHERE key_name = 'ore_late';
SELECT count(*) FILTER (WHERE kms_blind_tag(v, 'p3') IS NULL) AS untagged_before,
       count(*) FILTER (WHERE kms_ore(n) IS NULL) AS without_term_before FROM late_ore;
CALL kms_reencrypt_table('late_ore', 'v');
CALL kms_reencrypt_table('late_ore', 'n');
SELECT count(*) FILTER (WHERE kms_blind_tag(v, 'p3') = kms_blind_tag('abc', 'ore_late', 'p3')) AS prefix_found,
       count(*) FILTER (WHERE kms_ore(n) BETWEEN kms_ore(10, 'ore_late') AND kms_ore(19, 'ore_late')) AS range_found,
       count(*) FILTER (WHERE kms_decrypt(v) = plain AND kms_decrypt_int8(n) = id) AS intact,
       count(*) AS rows FROM late_ore;
DROP TABLE late_ore;

-- values written before 0.3.0's fields still decrypt (flag 0x04 clear): an enc_text written without extension
SELECT kms_decrypt(kms_encrypt('old style', 'ore_plain')) AS without_fields,
       kms_plaintext_type(kms_encrypt('old style', 'ore_plain')) AS type;
DROP TABLE people_ore, users_ore;

-- the key's own blind index over bytea: kms_encrypt(bytea, key) stores the key's tag, and
-- kms_blind_index(bytea, key) probes it with the same bytes through the same transform, under
-- every key transform and tag length, bytes that are not valid UTF-8 included
SELECT kms_create_key('ore_bx_lower', 'local:regress', blind_index => 'lower');
SELECT kms_create_key('ore_bx_mail', 'local:regress', blind_index => 'email', index_bits => 8);
SELECT kms_create_key('ore_bx_digits', 'local:regress', blind_index => 'digits', index_bits => 100);
CREATE TEMP TABLE bx AS
SELECT k.key, b.bytes, kms_encrypt(b.bytes, k.key) AS v
  FROM (VALUES ('ore_amt'), ('ore_bx_lower'), ('ore_bx_mail'), ('ore_bx_digits')) k(key),
       (VALUES ('\x09416c6963654045784d504c452e636f6d3132200a'::bytea), ('\xff00'), ('\x'),
               ('\x4142c3a931ff32')) b(bytes);
SELECT key, count(*) AS values,
       count(*) FILTER (WHERE kms_blind_index(v) = kms_blind_index(bytes, key)) AS probe_is_tag,
       count(*) FILTER (WHERE kms_blind_index(v) = ANY (kms_blind_index_all(bytes, key))) AS found_by_all,
       count(*) FILTER (WHERE kms_blind_index_match(v, bytes, key)) AS rechecked,
       min(octet_length(kms_blind_index(bytes, key))) AS tag_bytes
  FROM bx GROUP BY key ORDER BY key;
-- the transform applies to bytea as to text: the probe of other bytes that normalize alike finds
-- the value and re-checks true; bytes that do not, under exact, neither
SELECT key, kms_blind_index(v) = kms_blind_index(n, key) AS probe_normalized,
       kms_blind_index_match(v, n, key) AS recheck_normalized,
       kms_blind_index(n, key) = kms_blind_index(convert_from(n, 'UTF8'), key) AS same_as_text_probe
  FROM bx, (VALUES ('ore_bx_lower', '\x09616c6963654065786d706c652e636f6d3132200a'::bytea),
                   ('ore_bx_mail', '\x616c6963654065786d706c652e636f6d3132')) t(tkey, n)
 WHERE bytes = '\x09416c6963654045784d504c452e636f6d3132200a' AND key = tkey
 ORDER BY key;
SELECT kms_blind_index(v) = kms_blind_index('\x3132'::bytea, key) AS digits_probe,
       kms_blind_index_match(v, '\x3132'::bytea, key) AS digits_recheck
  FROM bx WHERE bytes = '\x09416c6963654045784d504c452e636f6d3132200a' AND key = 'ore_bx_digits';
SELECT kms_blind_index(v) = kms_blind_index('\x616c6963654065786d706c652e636f6d3132'::bytea, key) AS exact_probe_folds,
       kms_blind_index_match(v, '\x616c6963654065786d706c652e636f6d3132'::bytea, key) AS exact_recheck_folds,
       kms_blind_index_match(v, bytes, key) AS exact_recheck_same
  FROM bx WHERE bytes = '\x09416c6963654045784d504c452e636f6d3132200a' AND key = 'ore_amt';
-- a lookup through an expression index with a bytea parameter; the 8-bit tags collide, so the
-- tag alone finds other rows too and the re-check keeps exactly the one (invalid UTF-8 bytes)
CREATE TABLE bx_lookup (id int PRIMARY KEY, v enc_text);
INSERT INTO bx_lookup SELECT g, kms_encrypt('\xff00'::bytea || int4send(g), 'ore_bx_mail') FROM generate_series(1, 5000) g;
CREATE INDEX bx_lookup_bidx ON bx_lookup (kms_blind_index(v));
ANALYZE bx_lookup;
PREPARE bx_find AS SELECT count(*) > 1 AS tag_alone_has_false_positives, bool_or(id = 42) AS row_found
  FROM bx_lookup WHERE kms_blind_index(v) = kms_blind_index($1::bytea, 'ore_bx_mail');
PREPARE bx_recheck AS SELECT array_agg(id) AS rechecked FROM bx_lookup
 WHERE kms_blind_index(v) = kms_blind_index($1::bytea, 'ore_bx_mail') AND kms_blind_index_match(v, $1::bytea, 'ore_bx_mail');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) EXECUTE bx_find('\xff000000002a');
EXECUTE bx_find('\xff000000002a');
RESET enable_seqscan;
RESET enable_bitmapscan;
EXECUTE bx_recheck('\xff000000002a');
-- re-check false: a collision (same 8-bit tag, other bytes) and a probe whose tag differs
SELECT count(*) > 0 AS collisions, bool_or(kms_blind_index_match(v, '\xff000000002a'::bytea, 'ore_bx_mail')) AS collision_rechecked
  FROM bx_lookup WHERE kms_blind_index(v) = kms_blind_index('\xff000000002a'::bytea, 'ore_bx_mail') AND id <> 42;
SELECT kms_blind_index(v) <> kms_blind_index(p, 'ore_bx_mail') AS tags_differ,
       kms_blind_index_match(v, p, 'ore_bx_mail') AS rechecked
  FROM bx_lookup, (SELECT '\xff000000002a'::bytea AS p) p
 WHERE kms_blind_index(v) <> kms_blind_index(p, 'ore_bx_mail') ORDER BY id LIMIT 1;
-- a value under another key with the same bytes and the same transform is no match
SELECT kms_blind_index_match(kms_encrypt('\xff00'::bytea, 'ore_bx_lower'), '\xff00'::bytea, 'ore_bx_mail') AS other_key,
       kms_blind_index_match(kms_encrypt('\xff00'::bytea, 'ore_bx_mail'), '\xff00'::bytea, 'ore_bx_mail') AS own_key;
-- nor is a value under another key, read from the keyring before anything of that key is loaded
-- or decrypted: a value with a context re-checked without one, a retired version and a destroyed
-- key are false under another key's probe (decrypting them would fail), and fail under their own
SELECT kms_create_key('ore_bx_gone', 'local:regress', blind_index => 'lower');
CREATE TEMP TABLE bx_other AS
SELECT kms_encrypt('\xff00'::bytea, 'ore_bx_gone') AS gone, kms_encrypt('abc', 'ore_bx_gone') AS gone_text,
       kms_encrypt('\xff00'::bytea, 'ore_bx_gone', 'ctx') AS gone_ctx, kms_encrypt('abc', 'ore_bx_lower', 'ctx') AS own_ctx;
SELECT kms_blind_index_match(gone_ctx, '\xff00'::bytea, 'ore_bx_lower') AS other_key_context,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(gone_ctx, '\xff00'::bytea, 'ore_bx_gone') FROM bx_other$$) AS own_key_context,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(own_ctx, 'abc', 'ore_bx_lower') FROM bx_other$$) AS own_text_context
  FROM bx_other;
SELECT kms_rotate_key('ore_bx_gone') AS gone_version;
SELECT kms_set_key_state('ore_bx_gone', 1, 'retired');
SELECT kms_blind_index_match(gone, '\xff00'::bytea, 'ore_bx_lower') AS other_key_retired,
       kms_blind_index_match(gone_text, 'abc', 'ore_bx_lower') AS other_key_retired_text,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(gone, '\xff00'::bytea, 'ore_bx_gone') FROM bx_other$$) AS own_key_retired,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(gone_text, 'abc', 'ore_bx_gone') FROM bx_other$$) AS own_key_retired_text
  FROM bx_other;
SELECT kms_destroy_key('ore_bx_gone', 'ore_bx_gone') > 0 AS destroyed;
SELECT kms_blind_index_match(gone, '\xff00'::bytea, 'ore_bx_lower') AS other_key_destroyed,
       kms_blind_index_match(gone_text, 'abc', 'ore_bx_lower') AS other_key_destroyed_text,
       kms_blind_index_match(gone_ctx, '\xff00'::bytea, 'ore_bx_lower', 'ctx') AS other_key_destroyed_context
  FROM bx_other;
DROP TABLE bx_other;
-- the re-check compares plaintexts of its probe's type: a text value is not these bytes, nor a
-- bytea value that text, so either is false, read from the value's header (nothing is decrypted:
-- even the missing context is not reached); a key without a blind index is refused
SELECT kms_blind_index_match(kms_encrypt('abc', 'ore_bx_lower'), '\x616263'::bytea, 'ore_bx_lower') AS text_value,
       kms_blind_index_match(kms_encrypt('abc', 'ore_bx_lower', 'ctx'), '\x616263'::bytea, 'ore_bx_lower') AS text_value_context,
       kms_blind_index_match(kms_encrypt('\x616263'::bytea, 'ore_bx_lower'), 'abc', 'ore_bx_lower') AS bytea_value_text_probe,
       kms_blind_index_match(kms_encrypt('\x616263'::bytea, 'ore_bx_lower', 'ctx'), 'abc', 'ore_bx_lower') AS bytea_value_context,
       pg_temp.sqlstate_of($$SELECT kms_blind_index('\x00'::bytea, 'ore_plain')$$) AS no_blind_index,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(kms_encrypt('\x00'::bytea, 'ore_plain'), '\x00'::bytea, 'ore_plain')$$) AS no_blind_index_recheck;
-- a column holding text and bytea values under one key with 8-bit tags: a lookup of either
-- type with its re-check finds its row, in a sequential scan (where the re-check meets every
-- row whose tag matches, values of the other type included) and through the index; the re-check
-- (COST 100) comes after the tag comparison in the filter, so a sequential scan decrypts only
-- the rows whose tag matches. A bytea value is \xfe and then g's bits, seven to a byte, each
-- byte's high bit set: the email transform lowercases and trims ASCII, so the bytes of 65 (\x41)
-- and 97 (\x61) would normalize alike, and a lookup of either would rightly find both
CREATE FUNCTION pg_temp.bx_bytes(g int) RETURNS bytea LANGUAGE sql IMMUTABLE
  RETURN '\xfe'::bytea || int4send(x'80808080'::int | ((g >> 7) << 8) | (g & 127));
CREATE TABLE bx_mixed (id int PRIMARY KEY, v enc_text);
INSERT INTO bx_mixed SELECT g, CASE WHEN g % 2 = 0 THEN kms_encrypt('m' || g || '@x.example', 'ore_bx_mail')
                                    ELSE kms_encrypt(pg_temp.bx_bytes(g), 'ore_bx_mail') END
  FROM generate_series(1, 2000) g;
CREATE INDEX bx_mixed_bidx ON bx_mixed (kms_blind_index(v));
ANALYZE bx_mixed;
PREPARE bx_mixed_text AS SELECT array_agg(id) AS found FROM bx_mixed
 WHERE kms_blind_index(v) = kms_blind_index($1::text, 'ore_bx_mail') AND kms_blind_index_match(v, $1::text, 'ore_bx_mail');
PREPARE bx_mixed_bytea AS SELECT array_agg(id) AS found FROM bx_mixed
 WHERE kms_blind_index(v) = kms_blind_index($1::bytea, 'ore_bx_mail') AND kms_blind_index_match(v, $1::bytea, 'ore_bx_mail');
-- a text row and a bytea row sharing a tag (with 1,000 of each and 256 tags there is one; the
-- keys are new in every run, so the pair is found, not written down)
SELECT t.id AS mixed_text_id, 'm' || t.id || '@x.example' AS mixed_text_probe,
       b.id AS mixed_bytea_id, pg_temp.bx_bytes(b.id) AS mixed_bytea_probe
  FROM bx_mixed t JOIN bx_mixed b ON kms_blind_index(t.v) = kms_blind_index(b.v)
 WHERE t.id % 2 = 0 AND b.id % 2 = 1 ORDER BY t.id, b.id LIMIT 1 \gset
SET enable_indexscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) EXECUTE bx_mixed_bytea('\xfe00000001');
EXECUTE bx_mixed_text(:'mixed_text_probe') \gset seq_text_
EXECUTE bx_mixed_bytea(:'mixed_bytea_probe') \gset seq_bytea_
RESET enable_indexscan;
RESET enable_bitmapscan;
SET enable_seqscan = off;
EXECUTE bx_mixed_text(:'mixed_text_probe') \gset idx_text_
EXECUTE bx_mixed_bytea(:'mixed_bytea_probe') \gset idx_bytea_
SELECT :'seq_text_found' = ARRAY[:mixed_text_id]::text AS seq_text_finds_its_row,
       :'seq_bytea_found' = ARRAY[:mixed_bytea_id]::text AS seq_bytea_finds_its_row,
       :'idx_text_found' = ARRAY[:mixed_text_id]::text AS index_text_finds_its_row,
       :'idx_bytea_found' = ARRAY[:mixed_bytea_id]::text AS index_bytea_finds_its_row;
RESET enable_seqscan;
DEALLOCATE bx_mixed_text;
DEALLOCATE bx_mixed_bytea;
DROP TABLE bx_mixed;
SELECT kms_blind_index_match(kms_encrypt('\x414243'::bytea, 'ore_bx_lower', 'row 1'), '\x616263'::bytea, 'ore_bx_lower', 'row 1') AS with_context,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(kms_encrypt('\x414243'::bytea, 'ore_bx_lower', 'row 1'), '\x616263'::bytea, 'ore_bx_lower', 'row 2')$$) AS other_context,
       kms_blind_index_match(NULL, '\x00'::bytea, 'ore_bx_lower') IS NULL AS null_value,
       kms_blind_index_match(kms_encrypt('\x00'::bytea, 'ore_bx_lower'), NULL::bytea, 'ore_bx_lower') IS NULL AS null_probe,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(kms_encrypt('\x00'::bytea, 'ore_bx_lower'), '\x00'::bytea, NULL)$$) AS null_key,
       pg_temp.sqlstate_of($$SELECT kms_blind_index_match(kms_encrypt('\x00'::bytea, 'ore_bx_lower', 'c'), '\x00'::bytea, 'ore_bx_lower', NULL)$$) AS null_context,
       kms_blind_index(NULL::bytea, 'ore_bx_lower') IS NULL AS null_probe_tag;
-- during an index key rotation kms_blind_index_all(bytea, key) gives the probes under the current
-- and the previous index key, as the text form
SELECT kms_encrypt('\x414243ff'::bytea, 'ore_bx_lower') AS bx_before \gset
SELECT kms_rotate_index_key('ore_bx_lower') AS index_key_version;
SELECT cardinality(kms_blind_index_all('\x616263ff'::bytea, 'ore_bx_lower')) AS probes,
       (kms_blind_index_all('\x616263ff'::bytea, 'ore_bx_lower'))[1] = kms_blind_index(kms_encrypt('\x616263ff'::bytea, 'ore_bx_lower')) AS current_finds_new,
       (kms_blind_index_all('\x616263ff'::bytea, 'ore_bx_lower'))[2] = kms_blind_index(:'bx_before'::enc_text) AS previous_finds_old,
       kms_blind_index(:'bx_before'::enc_text) <> kms_blind_index('\x616263ff'::bytea, 'ore_bx_lower') AS current_misses_old,
       kms_blind_index_all('\x414243'::bytea, 'ore_bx_lower') = kms_blind_index_all('abc', 'ore_bx_lower') AS as_text_form;
-- existing callers keep the text forms: an unknown literal, NULL, varchar and an untyped
-- parameter resolve to text (PostgreSQL prefers the string category), a bytea to bytea
CREATE TEMP VIEW bx_resolution AS
SELECT kms_blind_index('a@b.c', 'ore_bx_mail') AS literal, kms_blind_index(NULL, 'ore_bx_mail') AS null_arg,
       kms_blind_index('a@b.c'::varchar, 'ore_bx_mail') AS varchar_arg, kms_blind_index('\x00'::bytea, 'ore_bx_mail') AS bytea_arg,
       kms_blind_index_all('a@b.c', 'ore_bx_mail') AS all_literal, kms_blind_index_all(NULL, 'ore_bx_mail') AS all_null,
       kms_blind_index_match(NULL, 'a@b.c', 'ore_bx_mail') AS match_literal, kms_blind_index_match(NULL, NULL, 'ore_bx_mail') AS match_null;
SELECT pg_get_viewdef('bx_resolution'::regclass);
PREPARE bx_untyped AS SELECT kms_blind_index($1, 'ore_bx_mail'), kms_blind_index_all($2, 'ore_bx_mail'),
                             kms_blind_index_match(NULL, $3, 'ore_bx_mail');
SELECT parameter_types FROM pg_prepared_statements WHERE name = 'bx_untyped';
DEALLOCATE bx_untyped;
DEALLOCATE bx_find;
DEALLOCATE bx_recheck;
DROP VIEW bx_resolution;
DROP TABLE bx_lookup;

-- at most 16 named indexes: the 17th is refused (22023); a keyring that holds more anyway
-- (written by hand, or by two sessions before kms_add_index locked the key) makes the key
-- refuse to encrypt with 55000 and a hint, not an internal error
SELECT kms_create_key('ore_16', 'local:regress', blind_index => 'exact');
SELECT count(kms_add_index('ore_16', 'i' || g, 'exact')) AS added FROM generate_series(1, 16) g;
SELECT pg_temp.sqlstate_of($$SELECT kms_add_index('ore_16', 'i17', 'exact')$$) AS seventeenth;
INSERT INTO pgcrypt_kms.key_indexes (key_name, index_name, transform, param, index_bits)
VALUES ('ore_16', 'i17', 'exact', NULL, 256);
SELECT pg_temp.sqlstate_of($$SELECT kms_encrypt('x', 'ore_16')$$) AS encrypt_with_17;
DELETE FROM pgcrypt_kms.key_indexes WHERE key_name = 'ore_16' AND index_name = 'i17';
SELECT kms_decrypt(kms_encrypt('x', 'ore_16')) AS with_16;
