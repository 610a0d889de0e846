-- order-revealing terms of several keys in one B-tree (the README's one key per tenant with an
-- index on kms_ore(v); outside audit "input" F1): every key starts at epoch 1, so only the key id
-- in the term header keeps the terms of different keys apart.  Each key's terms (and each index
-- key version's) form their own run: ranges through the index find exactly what a seq scan finds,
-- with or without a filter on the key, and amcheck finds the index consistent.
\set VERBOSITY default
CREATE EXTENSION IF NOT EXISTS amcheck;
SELECT kms_create_key('orek_a', 'local:regress', order_index => true);
SELECT kms_create_key('orek_b', 'local:regress', order_index => true);
SELECT kms_create_key('orek_c', 'local:regress', order_index => true);
-- three keys, one epoch (byte 2 of a term), three key ids (bytes 3..10)
SELECT count(DISTINCT get_byte(t, 2)) AS epochs, count(DISTINCT substr(t, 4, 8)) AS key_ids
  FROM (SELECT kms_ore_term_send(kms_ore(0::int8, k)) AS t
          FROM unnest(ARRAY['orek_a', 'orek_b', 'orek_c']) k) s;
-- a probe carries its key's id: the same header as the values of that key
SELECT substr(kms_ore_term_send(kms_ore(kms_encrypt(5::int8, 'orek_b'))), 1, 11)
     = substr(kms_ore_term_send(kms_ore(-7::int8, 'orek_b')), 1, 11) AS probe_header_is_value_header;

CREATE TABLE ore_mixed (id int PRIMARY KEY, k text, v enc_text, plain int8);
INSERT INTO ore_mixed
SELECT g, k, kms_encrypt(p, k), p
  FROM (SELECT g, (ARRAY['orek_a', 'orek_b', 'orek_c'])[1 + g % 3] AS k,
               ((g::int8 * 7919) % 2001 - 1000) AS p
          FROM generate_series(1, 9000) g) s;
CREATE INDEX ore_mixed_v ON ore_mixed (kms_ore(v));
ANALYZE ore_mixed;
SELECT bt_index_check('ore_mixed_v'::regclass, true) IS NOT NULL AND bt_index_parent_check('ore_mixed_v'::regclass, true, true) IS NOT NULL AS amcheck_ok;

-- terms of different keys compare without an error, antisymmetrically and transitively
SELECT count(*) FILTER (WHERE kms_ore_term_cmp(kms_ore(a.v), kms_ore(b.v)) <> -kms_ore_term_cmp(kms_ore(b.v), kms_ore(a.v)))
       AS not_antisymmetric,
       count(*) FILTER (WHERE a.k <> b.k) > 0 AS across_keys
  FROM (SELECT * FROM ore_mixed WHERE id <= 45) a, (SELECT * FROM ore_mixed WHERE id <= 45) b;
SELECT count(*) AS intransitive_triples
  FROM (SELECT * FROM ore_mixed WHERE id <= 45) a, (SELECT * FROM ore_mixed WHERE id <= 45) b,
       (SELECT * FROM ore_mixed WHERE id <= 45) c
 WHERE kms_ore(a.v) < kms_ore(b.v) AND kms_ore(b.v) < kms_ore(c.v) AND NOT kms_ore(a.v) < kms_ore(c.v);

-- ranges of every key: through the index (with and without a filter on the key), by seq scan, truth
CREATE FUNCTION pg_temp.ranges(scan text) RETURNS TABLE (k text, lo int8, filtered bigint, unfiltered bigint)
LANGUAGE plpgsql AS $$
DECLARE
    lo_ int8;
    k_ text;
BEGIN
    IF scan = 'index' THEN
        SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexscan = on;
    ELSE
        SET LOCAL enable_seqscan = on; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexscan = off;
    END IF;
    FOREACH k_ IN ARRAY ARRAY['orek_a', 'orek_b', 'orek_c'] LOOP
        FOR lo_ IN SELECT x FROM generate_series(-1000, 900, 100) x LOOP
            k := k_; lo := lo_;
            -- EXECUTE: planned each time, under this call's settings (no cached plan)
            EXECUTE 'SELECT count(*) FROM ore_mixed m
                      WHERE m.k = $1 AND kms_ore(m.v) BETWEEN kms_ore($2, $1) AND kms_ore($2 + 149, $1)'
               INTO filtered USING k_, lo_;
            EXECUTE 'SELECT count(*) FROM ore_mixed m
                      WHERE kms_ore(m.v) BETWEEN kms_ore($2, $1) AND kms_ore($2 + 149, $1)'
               INTO unfiltered USING k_, lo_;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;
SET enable_seqscan = off; SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM ore_mixed
 WHERE kms_ore(v) BETWEEN kms_ore(-1000::int8, 'orek_b') AND kms_ore(-851::int8, 'orek_b');
RESET enable_seqscan; RESET enable_bitmapscan;
CREATE TEMP TABLE truth AS
SELECT kk.k, x AS lo, (SELECT count(*) FROM ore_mixed m WHERE m.k = kk.k AND m.plain BETWEEN x AND x + 149) AS n
  FROM unnest(ARRAY['orek_a', 'orek_b', 'orek_c']) kk(k), generate_series(-1000, 900, 100) x;
SELECT count(*) AS ranges, sum(t.n) AS rows_truth,
       sum(i.filtered) AS index_filtered, sum(i.unfiltered) AS index_unfiltered,
       sum(s.filtered) AS seq_filtered, sum(s.unfiltered) AS seq_unfiltered,
       count(*) FILTER (WHERE i.filtered <> t.n OR i.unfiltered <> t.n OR s.filtered <> t.n OR s.unfiltered <> t.n)
       AS ranges_wrong
  FROM truth t JOIN pg_temp.ranges('index') i USING (k, lo) JOIN pg_temp.ranges('seq') s USING (k, lo);
-- ORDER BY the term within one key is ORDER BY the plaintext (through the index)
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT k, (SELECT array_agg(id) FROM (SELECT id FROM ore_mixed m WHERE m.k = kk.k ORDER BY kms_ore(v), id) s)
        = (SELECT array_agg(id) FROM (SELECT id FROM ore_mixed m WHERE m.k = kk.k ORDER BY plain, id) s) AS order_equal
  FROM unnest(ARRAY['orek_a', 'orek_b', 'orek_c']) kk(k) ORDER BY 1;
RESET enable_seqscan; RESET enable_bitmapscan;

-- two index-key versions of one key besides the other keys: rotate orek_c's index key and re-tag
-- half its values; the terms of its previous version stay a run of their own, and the OR of the
-- two probes' ranges finds every row
SELECT kms_rotate_index_key('orek_c') AS index_key_version;
UPDATE ore_mixed SET v = kms_reencrypt(v) WHERE k = 'orek_c' AND id % 2 = 0;
SELECT bt_index_check('ore_mixed_v'::regclass, true) IS NOT NULL AND bt_index_parent_check('ore_mixed_v'::regclass, true, true) IS NOT NULL AS amcheck_ok_in_window;
SET enable_seqscan = off; SET enable_bitmapscan = on;
SELECT count(*) AS found_in_window,
       (SELECT count(*) FROM ore_mixed WHERE k = 'orek_c' AND plain BETWEEN -300 AND 299) AS expected
  FROM ore_mixed
 WHERE kms_ore(v) BETWEEN kms_ore(-300::int8, 'orek_c') AND kms_ore(299::int8, 'orek_c')
    OR kms_ore(v) BETWEEN kms_ore(-300::int8, 'orek_c', true) AND kms_ore(299::int8, 'orek_c', true);
RESET enable_seqscan; RESET enable_bitmapscan;
-- a fresh key at the new epoch (2 after one rotation) still has its own run
SELECT kms_create_key('orek_d', 'local:regress', order_index => true);
SELECT kms_rotate_index_key('orek_d') AS index_key_version;
INSERT INTO ore_mixed SELECT 9000 + g, 'orek_d', kms_encrypt(g::int8 - 500, 'orek_d'), g - 500 FROM generate_series(1, 1000) g;
SELECT bt_index_check('ore_mixed_v'::regclass, true) IS NOT NULL AND bt_index_parent_check('ore_mixed_v'::regclass, true, true) IS NOT NULL AS amcheck_ok_with_same_epoch_keys;
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT count(*) AS found_d, count(*) FILTER (WHERE k = 'orek_d' AND plain BETWEEN -100 AND 99) AS correct
  FROM ore_mixed WHERE kms_ore(v) BETWEEN kms_ore(-100::int8, 'orek_d') AND kms_ore(99::int8, 'orek_d');
RESET enable_seqscan; RESET enable_bitmapscan;
DROP TABLE ore_mixed;
DROP EXTENSION amcheck;
