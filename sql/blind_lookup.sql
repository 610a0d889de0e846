-- blind-index lookups on 100,000 rows: plans, exact results, uniqueness,
-- truncation with re-check, DEK rotation, index key rotation, bytea columns
\set VERBOSITY default
SELECT kms_create_key('bl_email', 'local:regress', blind_index => 'email');
SELECT kms_create_key('bl_acct', 'local:regress', blind_index => 'exact');
SELECT kms_create_key('bl_trunc', 'local:regress', blind_index => 'email', index_bits => 8);

CREATE TABLE people (id int PRIMARY KEY, email enc_text NOT NULL, account_id enc_text, plain_email text, plain_acct text);
INSERT INTO people
SELECT g, kms_encrypt(e, 'bl_email'), kms_encrypt(a, 'bl_acct'), e, a
  FROM (SELECT g,
               CASE WHEN g % 10000 = 7 THEN 'Dup.User@Example.com'
                    WHEN g % 10000 = 8 THEN '  dup.user@EXAMPLE.com '
                    ELSE 'user' || g || '@example.com' END AS e,
               CASE WHEN g % 25000 = 3 THEN 'ACC-SHARED' WHEN g % 25000 = 4 THEN 'acc-shared'
                    ELSE 'ACC-' || lpad(g::text, 7, '0') END AS a
          FROM generate_series(1, 100000) g) s;
CREATE INDEX people_email_bidx ON people (kms_blind_index(email));
CREATE INDEX people_acct_bidx ON people (kms_blind_index(account_id));
ANALYZE people;

-- a point lookup is an index scan and returns exactly the row
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE kms_blind_index(email) = kms_blind_index('USER4242@example.com', 'bl_email');
SELECT id, kms_decrypt(email) FROM people WHERE kms_blind_index(email) = kms_blind_index('USER4242@example.com', 'bl_email');
-- duplicates and case/space variants under email: all of them, nothing else
SELECT count(*) AS found, count(*) FILTER (WHERE lower(trim(plain_email)) = 'dup.user@example.com') AS correct
  FROM people WHERE kms_blind_index(email) = kms_blind_index('DUP.USER@example.com', 'bl_email');
SELECT count(*) AS expected FROM people WHERE lower(trim(plain_email)) = 'dup.user@example.com';
-- exact does not fold case
SELECT array_agg(kms_decrypt(account_id) ORDER BY id) AS exact_matches
  FROM people WHERE kms_blind_index(account_id) = kms_blind_index('ACC-SHARED', 'bl_acct');
-- every row is found by its own plaintext (a full sweep through the index)
SET enable_seqscan = off;
SELECT count(*) AS rows_found_by_probe FROM people p
 WHERE EXISTS (SELECT 1 FROM people q WHERE kms_blind_index(q.email) = kms_blind_index(p.plain_email, 'bl_email') AND q.id = p.id);
RESET enable_seqscan;

-- GROUP BY and joins on tags: equal plaintexts, equal tags
SELECT count(*) AS groups, max(n) AS biggest
  FROM (SELECT kms_blind_index(email), count(*) AS n FROM people GROUP BY 1) s;
CREATE TABLE orders (order_id int, customer_email enc_text);
INSERT INTO orders SELECT g, kms_encrypt('user' || (g * 7) || '@Example.COM', 'bl_email') FROM generate_series(1, 1000) g;
SELECT count(*) AS joined, count(*) FILTER (WHERE p.id = o.order_id * 7) AS right_partner
  FROM orders o JOIN people p ON kms_blind_index(p.email) = kms_blind_index(o.customer_email);

-- a UNIQUE blind index rejects a case variant
CREATE TABLE accounts (id int, email enc_text);
CREATE UNIQUE INDEX accounts_email_uniq ON accounts (kms_blind_index(email));
INSERT INTO accounts VALUES (1, kms_encrypt('Carol@Example.com', 'bl_email'));
\set VERBOSITY terse
INSERT INTO accounts VALUES (2, kms_encrypt('carol@example.COM', 'bl_email'));
\set VERBOSITY default
INSERT INTO accounts VALUES (3, kms_encrypt('carol2@example.com', 'bl_email'));
SELECT count(*) FROM accounts;

-- truncated 8-bit tags collide; the documented pattern re-checks by decrypting
CREATE TABLE trunc AS SELECT id, kms_encrypt(plain_email, 'bl_trunc') AS email, plain_email FROM people WHERE id <= 20000;
CREATE INDEX trunc_bidx ON trunc (kms_blind_index(email));
ANALYZE trunc;
SELECT count(*) > 10 AS tag_alone_has_false_positives
  FROM trunc WHERE kms_blind_index(email) = kms_blind_index('dup.user@example.com', 'bl_trunc');
SELECT array_agg(id ORDER BY id) AS rechecked
  FROM trunc WHERE kms_blind_index(email) = kms_blind_index('dup.user@example.com', 'bl_trunc')
               AND kms_blind_index_match(email, 'dup.user@example.com', 'bl_trunc');
SELECT array_agg(id ORDER BY id) AS truth FROM trunc WHERE lower(trim(plain_email)) = 'dup.user@example.com';

-- DEK rotation leaves tags unchanged: a value written after it is found by the same probe
SELECT kms_blind_index('late@example.com', 'bl_email') AS probe_before \gset
SELECT kms_rotate_key('bl_email');
INSERT INTO people VALUES (100001, kms_encrypt('Late@Example.com', 'bl_email'), NULL, 'Late@Example.com', NULL);
SELECT kms_blind_index('late@example.com', 'bl_email') = :'probe_before'::bytea AS probe_unchanged,
       (SELECT id FROM people WHERE kms_blind_index(email) = :'probe_before'::bytea) AS found;

-- index key rotation: new probes; during the transition kms_blind_index_all finds old and new tags;
-- after re-tag (kms_reencrypt) + REINDEX + finish, old tags stop matching
SELECT kms_rotate_index_key('bl_email') AS index_key_version;
SELECT kms_blind_index('user5@example.com', 'bl_email') = (SELECT kms_blind_index(email) FROM people WHERE id = 5) AS new_probe_matches_old_tag;
SELECT kms_blind_index('user5@example.com', 'bl_email') AS probe_new \gset
SELECT count(*) AS found_during_transition FROM people
 WHERE kms_blind_index(email) = ANY (kms_blind_index_all('user5@example.com', 'bl_email'));
SELECT kms_rotate_index_key('bl_email');
-- the rotation also made a new DEK version, so every value still tagged under the previous index
-- key is on an older one: kms_reencrypt_table, which moves exactly those, re-tags them all
SELECT count(*) AS on_older_versions, (SELECT count(*) FROM people) AS all_rows FROM people
 WHERE kms_version_id(email) <> (SELECT version_id FROM kms_keys WHERE key_name = 'bl_email' AND current);
-- finishing now would leave those values with tags no probe matches: refused, naming every
-- column that holds some (the join and uniqueness tables above too), here also a column of a
-- domain over enc_text
CREATE DOMAIN bl_mail AS enc_text;
CREATE TABLE bl_elsewhere (id int, m bl_mail);
INSERT INTO bl_elsewhere SELECT id, email FROM people WHERE id <= 3;
-- and of a domain over that domain (one level was all the check looked at)
CREATE DOMAIN bl_mail_deeper AS bl_mail;
CREATE TABLE bl_deeper (id int, m bl_mail_deeper);
INSERT INTO bl_deeper SELECT id, email FROM people WHERE id <= 1;
-- a partition (its parent has no rows of its own) and a materialized view count too; an
-- unpopulated one cannot be read and holds nothing (the list shows five columns, then "...")
CREATE TABLE bl_parted (id int, m enc_text) PARTITION BY RANGE (id);
CREATE TABLE bl_parted_1 PARTITION OF bl_parted FOR VALUES FROM (0) TO (10);
INSERT INTO bl_parted SELECT id, email FROM people WHERE id <= 2;
CREATE MATERIALIZED VIEW bl_mv AS SELECT id, email FROM people WHERE id <= 4;
CREATE MATERIALIZED VIEW bl_mv_empty AS SELECT id, email FROM people WITH NO DATA;
SELECT kms_finish_index_rotation('bl_email');
SET client_min_messages = warning;   -- one NOTICE per batch
CALL kms_reencrypt_table('people', 'email', batch => 60000);
RESET client_min_messages;
REINDEX INDEX people_email_bidx;
SELECT count(*) AS found_by_new_probe FROM people WHERE kms_blind_index(email) = :'probe_new'::bytea;
SELECT count(*) AS old_tags_left FROM people WHERE kms_blind_index(email) = :'probe_before'::bytea;
SELECT kms_finish_index_rotation('bl_email');   -- still refused: the other tables' values
-- a role that cannot read every row of such a column cannot check it: refused, never skipped
-- (terse: which columns it cannot read depends on the other tests' tables in this database)
CREATE ROLE bl_admin;
GRANT pgcrypt_kms_admin TO bl_admin;
SET ROLE bl_admin;
\set VERBOSITY terse
SELECT kms_finish_index_rotation('bl_email');
\set VERBOSITY default
RESET ROLE;
-- every table readable, but row security would hide bl_elsewhere's rows from it
GRANT pg_read_all_data TO bl_admin;
ALTER TABLE bl_elsewhere ENABLE ROW LEVEL SECURITY;
SET ROLE bl_admin;
SELECT kms_finish_index_rotation('bl_email');
RESET ROLE;
SET client_min_messages = warning;
CALL kms_reencrypt_table('orders', 'customer_email');
CALL kms_reencrypt_table('accounts', 'email');
RESET client_min_messages;
UPDATE bl_elsewhere SET m = kms_reencrypt(m);
SELECT kms_finish_index_rotation('bl_email');   -- the partition, the materialized view, the deeper domain
UPDATE bl_deeper SET m = kms_reencrypt(m);
UPDATE bl_parted SET m = kms_reencrypt(m);
REFRESH MATERIALIZED VIEW bl_mv;
SELECT kms_finish_index_rotation('bl_email');
SELECT array_length(kms_blind_index_all('user5@example.com', 'bl_email'), 1) AS probes_after_finish;
SELECT count(*) FILTER (WHERE kms_decrypt(email) = plain_email) AS all_decrypt_after_retag FROM people;

-- a separate bytea blind-index column beside the ciphertext
CREATE TABLE customers (id int, email enc_text,
                        email_bidx bytea GENERATED ALWAYS AS (kms_blind_index(email)) STORED);
CREATE INDEX customers_bidx ON customers (email_bidx);
INSERT INTO customers (id, email) SELECT g, kms_encrypt('cust' || g || '@example.com', 'bl_email') FROM generate_series(1, 1000) g;
SELECT id FROM customers WHERE email_bidx = kms_blind_index('CUST77@example.com', 'bl_email');
-- or filled by the application from the probe function
CREATE TABLE customers2 (id int, email enc_text, email_bidx bytea);
INSERT INTO customers2 SELECT g, kms_encrypt(e, 'bl_email'), kms_blind_index(e, 'bl_email')
  FROM (SELECT g, 'cust' || g || '@example.com' AS e FROM generate_series(1, 100) g) s;
SELECT count(*) AS column_equals_carried_tag FROM customers2 WHERE email_bidx = kms_blind_index(email);
-- force => true forgets the previous index key without looking (the values it leaves are then
-- found by neither probe)
SELECT kms_create_key('bl_force', 'local:regress', blind_index => 'exact');
CREATE TABLE bl_forced (v enc_text);
INSERT INTO bl_forced VALUES (kms_encrypt('f1', 'bl_force'));
SELECT kms_rotate_index_key('bl_force');
SELECT kms_finish_index_rotation('bl_force');
SELECT kms_finish_index_rotation('bl_force', force => true);
SELECT array_length(kms_blind_index_all('f1', 'bl_force'), 1) AS probes_after_forced_finish,
       (SELECT count(*) FROM bl_forced WHERE kms_blind_index(v) = kms_blind_index('f1', 'bl_force')) AS found_after_forced_finish;
SELECT kms_finish_index_rotation('bl_force', force => true);   -- nothing in progress any more
DROP MATERIALIZED VIEW bl_mv, bl_mv_empty;
DROP TABLE people, orders, accounts, trunc, customers, customers2, bl_elsewhere, bl_deeper, bl_parted, bl_forced;
DROP DOMAIN bl_mail_deeper, bl_mail;
REVOKE pgcrypt_kms_admin, pg_read_all_data FROM bl_admin;
DROP ROLE bl_admin;
