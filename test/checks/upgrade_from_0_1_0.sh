#!/usr/bin/env bash
# ALTER EXTENSION pgcrypt_kms UPDATE from 0.1.0 keeps every value and every keyring row (issue 12,
# item 3), and leaves the catalog a fresh CREATE EXTENSION makes:
#  - CREATE EXTENSION pgcrypt_kms VERSION '0.1.0'; keys with and without a blind index, with a
#    KMS context (an aws-kms: key on the suite's emulator and a local: one), a rotated key (three
#    versions), a key whose index-key rotation is in progress, a destroyed key; values with and
#    without a value context; a blind-index btree index;
#  - the expected plaintexts are the ones inserted (kept in a plain column beside each value);
#  - after the update, each in a new backend (cold key cache): every value decrypts to its
#    plaintext, the destroyed key's values are refused with the same SQLSTATE as before, the
#    0.1.0 columns of every keyring row are byte-identical, blind-index lookups (current and, while
#    the index-key rotation is in progress, previous tags) find the same rows through the index,
#    new encryptions work on every live key, extversion is 0.2.0;
#  - the upgraded database equals a fresh CREATE EXTENSION (default_version) in: the extension's
#    member objects, every function's signature, result, kind, volatility, strictness, parallel
#    label, security definer, settings, body and ACL, and the keyring tables' columns,
#    constraints, indexes and triggers, and the ACLs of its tables and views.
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN, PGCK_EMULATOR_PORT).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
OLD=pgck_upg_old
NEW=pgck_upg_fresh
psql_db() { local d=$1; shift; runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d "$d" "$@"; }
sql() { psql_db $OLD "$@"; }
psql_db postgres -c "DROP DATABASE IF EXISTS $OLD" -c "DROP DATABASE IF EXISTS $NEW" \
    -c "CREATE DATABASE $OLD" -c "CREATE DATABASE $NEW" || exit 1

# ---------------------------------------------------------------- 0.1.0 and its data
sql <<'SQL' >/dev/null || { echo "not ok - setting up under 0.1.0"; exit 1; }
CREATE EXTENSION pgcrypt_kms VERSION '0.1.0';
SELECT kms_create_key('u_plain', 'local:upgrade');
SELECT kms_create_key('u_email', 'local:upgrade', blind_index => 'email', index_bits => 64,
                      kms_context => '{"env": "upgrade-test"}');
SELECT kms_create_key('u_aws', 'aws-kms:alias/pgck-test', blind_index => 'lower',
                      kms_context => '{"tenant": "t1", "app": "upgrade"}');
SELECT kms_create_key('u_rot', 'local:upgrade');
SELECT kms_create_key('u_idx', 'local:upgrade', blind_index => 'exact', index_bits => 32);
SELECT kms_create_key('u_gone', 'local:upgrade');

-- every value beside the plaintext it must decrypt to (ctx NULL: no value context)
CREATE TABLE vals (id int PRIMARY KEY, key_name text NOT NULL, ctx text, plain text, v enc_text);
INSERT INTO vals SELECT g, 'u_plain', NULL, 'plain ' || g, kms_encrypt('plain ' || g, 'u_plain')
  FROM generate_series(1, 50) g;
INSERT INTO vals SELECT 100 + g, 'u_plain', 'row:' || g, 'ctx ' || g, kms_encrypt('ctx ' || g, 'u_plain', 'row:' || g)
  FROM generate_series(1, 50) g;
INSERT INTO vals SELECT 200 + g, 'u_aws', 'tenant-' || (g % 3), 'Aws ' || g, kms_encrypt('Aws ' || g, 'u_aws', 'tenant-' || (g % 3))
  FROM generate_series(1, 30) g;
INSERT INTO vals VALUES (300, 'u_plain', NULL, '', kms_encrypt('', 'u_plain')),
                        (301, 'u_plain', NULL, NULL, kms_encrypt(NULL, 'u_plain')),
                        (302, 'u_plain', 'c', E'tab\there \\ ''quoted'' 😀', kms_encrypt(E'tab\there \\ ''quoted'' 😀', 'u_plain', 'c'));
-- three versions of u_rot, each holding values
INSERT INTO vals SELECT 400 + g, 'u_rot', NULL, 'v1 ' || g, kms_encrypt('v1 ' || g, 'u_rot') FROM generate_series(1, 20) g;
SELECT kms_rotate_key('u_rot');
INSERT INTO vals SELECT 420 + g, 'u_rot', 'c2', 'v2 ' || g, kms_encrypt('v2 ' || g, 'u_rot', 'c2') FROM generate_series(1, 20) g;
SELECT kms_rotate_key('u_rot');
INSERT INTO vals SELECT 440 + g, 'u_rot', NULL, 'v3 ' || g, kms_encrypt('v3 ' || g, 'u_rot') FROM generate_series(1, 20) g;

-- a blind-index column with a btree index
CREATE TABLE people (id int PRIMARY KEY, plain text NOT NULL, email enc_text NOT NULL);
INSERT INTO people SELECT g, CASE WHEN g % 500 = 0 THEN 'Alice@Example.com' ELSE 'user' || g || '@example.com' END,
                          kms_encrypt(CASE WHEN g % 500 = 0 THEN 'Alice@Example.com' ELSE 'user' || g || '@example.com' END, 'u_email')
  FROM generate_series(1, 3000) g;
CREATE INDEX people_email_bidx ON people (kms_blind_index(email));
ANALYZE people;

-- an index-key rotation in progress: rows tagged under the old index key and the new one
CREATE TABLE codes (id int PRIMARY KEY, plain text NOT NULL, code enc_text NOT NULL);
INSERT INTO codes SELECT g, 'code-' || (g % 40), kms_encrypt('code-' || (g % 40), 'u_idx') FROM generate_series(1, 1000) g;
SELECT kms_rotate_index_key('u_idx');
INSERT INTO codes SELECT g, 'code-' || (g % 40), kms_encrypt('code-' || (g % 40), 'u_idx') FROM generate_series(1001, 2000) g;
CREATE INDEX codes_code_bidx ON codes (kms_blind_index(code));
ANALYZE codes;

-- a destroyed key and a value under it
CREATE TABLE shredded AS SELECT kms_encrypt('gone', 'u_gone') AS v;
SELECT kms_destroy_key('u_gone', 'u_gone');
SQL
check 0 "0.1.0 installed with keys, values, rotations, a blind index and a destroyed key"

# the 0.1.0 columns of the keyring, row by row (text of every column, bytea in hex)
KEYRING_SQL="SELECT string_agg(r::text, E'\n' ORDER BY r.key_name) FROM
      (SELECT key_name, kms_key, kms_context, blind_index, index_bits, index_key_version,
              index_key_wrapped, index_key_check, prev_index_key_wrapped, prev_index_key_check,
              index_kms_key, created, destroyed FROM pgcrypt_kms.keys) r
  UNION ALL
  SELECT string_agg(r::text, E'\n' ORDER BY r.id) FROM
      (SELECT id, key_name, version, kms_key, wrapped_dek, key_check, state, created
         FROM pgcrypt_kms.key_versions) r"
COUNTS_SQL="SELECT (SELECT count(*) FROM pgcrypt_kms.keys) || '/' || (SELECT count(*) FROM pgcrypt_kms.key_versions)"
# every value against its plaintext: how many decrypt to it
DECRYPT_SQL="SELECT count(*) || '/' || count(*) FILTER (WHERE
      CASE WHEN ctx IS NULL THEN kms_decrypt(v) ELSE kms_decrypt(v, ctx) END IS NOT DISTINCT FROM plain) FROM vals"
# one lookup per distinct plaintext through the blind index, the ids it returns
LOOKUP_SQL="SELECT string_agg(p.plain || ':' || (SELECT string_agg(q.id::text, ',' ORDER BY q.id) FROM people q
                 WHERE kms_blind_index(q.email) = kms_blind_index(p.plain, 'u_email')
                   AND kms_decrypt(q.email) = p.plain), ';' ORDER BY p.plain)
  FROM (SELECT DISTINCT plain FROM people WHERE id % 97 = 0 OR plain LIKE 'Alice%') p"
ROTLOOKUP_SQL="SELECT string_agg(c.plain || ':' || (SELECT count(*) FROM codes q
                 WHERE kms_blind_index(q.code) = ANY (kms_blind_index_all(c.plain, 'u_idx'))), ';' ORDER BY c.plain)
  FROM (SELECT DISTINCT plain FROM codes) c"
GONE_SQL="DO \$\$ BEGIN PERFORM kms_decrypt(v) FROM shredded; RAISE NOTICE 'decrypted';
          EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'sqlstate %', SQLSTATE; END \$\$"
gone_state() { sql -c "SET client_min_messages = notice" -c "$GONE_SQL" 2>&1 | sed -n 's/.*NOTICE:  //p'; }

keyring_before=$(sql -c "$KEYRING_SQL") && counts_before=$(sql -c "$COUNTS_SQL") &&
    decrypt_before=$(sql -c "$DECRYPT_SQL") && lookup_before=$(sql -c "$LOOKUP_SQL") &&
    rotlookup_before=$(sql -c "$ROTLOOKUP_SQL")
check $? "the state under 0.1.0 read back (keyring $counts_before, values $decrypt_before)"
gone_before=$(gone_state)
# 9 versions: u_idx's index-key rotation also made a data key version (this build's library)
[ "$decrypt_before" = "193/193" ] && [ "$counts_before" = "6/9" ]
check $? "under 0.1.0 every value decrypts and the keyring has 6 keys, 9 versions (got $decrypt_before, $counts_before)"
case $gone_before in "sqlstate "*) true ;; *) false ;; esac
check $? "under 0.1.0 the destroyed key's value is refused ($gone_before)"
case $lookup_before in *"Alice@Example.com:500,1000,1500,2000,2500,3000"*) true ;; *) false ;; esac
check $? "under 0.1.0 the blind-index lookup finds the six Alice rows"

# ---------------------------------------------------------------- the update
sql -c "ALTER EXTENSION pgcrypt_kms UPDATE" >/dev/null
check $? "ALTER EXTENSION pgcrypt_kms UPDATE"
want=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pgcrypt_kms.control)
got=$(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'")
[ -n "$want" ] && [ "$got" = "$want" ]; check $? "extversion is the control file's default_version $want (got $got)"

got=$(sql -c "$DECRYPT_SQL")
[ "$got" = "$decrypt_before" ]; check $? "every value decrypts to its plaintext after the update, in a new backend (got $got)"
got=$(gone_state)
[ "$got" = "$gone_before" ]; check $? "the destroyed key's value is refused as before ($got)"
got=$(sql -c "$LOOKUP_SQL")
[ "$got" = "$lookup_before" ]; check $? "blind-index lookups find the same rows"
got=$(sql -c "$ROTLOOKUP_SQL")
[ "$got" = "$rotlookup_before" ] && [ "$(sql -c "SELECT count(DISTINCT plain) FROM codes")" = 40 ]
check $? "during the index-key rotation, lookups by both tags find the same rows"
case $got in *"code-7:50;"*) true ;; *) false ;; esac
check $? "  ... each code's 50 rows, tagged under the old and the new index key"
valid=$(sql -c "SELECT string_agg(indexrelid::regclass || '=' || indisvalid, ',' ORDER BY indexrelid::regclass::text)
                  FROM pg_index WHERE indexrelid IN ('people_email_bidx'::regclass, 'codes_code_bidx'::regclass)")
[ "$valid" = "codes_code_bidx=true,people_email_bidx=true" ]; check $? "the blind indexes survive the update, valid ($valid)"
plan=$(sql -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM people WHERE kms_blind_index(email) = kms_blind_index('alice@example.com', 'u_email')")
echo "$plan" | grep -q 'people_email_bidx'; check $? "the lookup uses people_email_bidx after the update"
plan=$(sql -c "EXPLAIN (COSTS OFF) SELECT id FROM people WHERE kms_blind_index(email) = kms_blind_index('alice@example.com', 'u_email')")
echo "$plan" | grep -q 'people_email_bidx'; check $? "  ... also without enable_seqscan = off"

got=$(sql -c "$COUNTS_SQL")
[ "$got" = "$counts_before" ]; check $? "every keyring row is still there ($got)"
got=$(sql -c "$KEYRING_SQL")
[ "$got" = "$keyring_before" ]; check $? "the 0.1.0 columns of every keyring row (wrapped keys, checks, states, dates) are unchanged"

# new encryptions on every live key, with and without a context, and a new key under 0.2.0
sql -c "SELECT kms_create_key('u_new', 'local:upgrade', blind_index => 'exact')" >/dev/null
got=$(sql -c "SELECT count(*) FILTER (WHERE kms_decrypt(kms_encrypt('n' || k, k)) = 'n' || k
                                        AND kms_decrypt(kms_encrypt('c' || k, k, 'x'), 'x') = 'c' || k)
                FROM unnest(ARRAY['u_plain', 'u_email', 'u_aws', 'u_rot', 'u_idx', 'u_new']) k")
[ "$got" = 6 ]; check $? "new encryptions work on every live key and on a key created after the update (got $got/6)"
got=$(sql -c "INSERT INTO people VALUES (5000, 'alice@example.com', kms_encrypt('alice@example.com', 'u_email'))" \
          -c "SELECT count(*) FROM people WHERE kms_blind_index(email) = kms_blind_index('ALICE@example.com', 'u_email')")
[ "$got" = 7 ]; check $? "a value written after the update is found by the blind index with the old ones (got $got)"
got=$(sql -c "SELECT key_name || ':' || count(*) FROM pgcrypt_kms.key_versions GROUP BY key_name ORDER BY key_name" | tr '\n' ' ')
[ "$got" = "u_aws:1 u_email:1 u_gone:1 u_idx:2 u_new:1 u_plain:1 u_rot:3 " ]
check $? "no key version was added or lost by the update or the new encryptions ($got)"

# ---------------------------------------------------------------- upgraded catalog = fresh install
psql_db $NEW -c "CREATE EXTENSION pgcrypt_kms" >/dev/null; check $? "a fresh CREATE EXTENSION pgcrypt_kms"
CATALOG_SQL="
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid AND d.refclassid = 'pg_extension'::regclass
 WHERE e.extname = 'pgcrypt_kms' AND d.deptype = 'e'
UNION ALL
SELECT format('function %s(%s) returns %s kind=%s volatile=%s strict=%s parallel=%s secdef=%s leakproof=%s config=%s acl=%s body=%s',
              p.oid::regproc, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
              p.prokind, p.provolatile, p.proisstrict, p.proparallel, p.prosecdef, p.proleakproof,
              p.proconfig, p.proacl, md5(p.prosrc))
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON d.refobjid = e.oid AND e.extname = 'pgcrypt_kms'
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s', a.attrelid::regclass, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid))
  FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE a.attrelid IN ('pgcrypt_kms.keys'::regclass, 'pgcrypt_kms.key_versions'::regclass)
   AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT format('constraint %s %s', c.conrelid::regclass, pg_get_constraintdef(c.oid))
  FROM pg_constraint c WHERE c.conrelid IN ('pgcrypt_kms.keys'::regclass, 'pgcrypt_kms.key_versions'::regclass)
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i WHERE i.indrelid IN ('pgcrypt_kms.keys'::regclass, 'pgcrypt_kms.key_versions'::regclass)
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t WHERE t.tgrelid IN ('pgcrypt_kms.keys'::regclass, 'pgcrypt_kms.key_versions'::regclass)
UNION ALL
SELECT format('relation %s kind=%s acl=%s', c.oid::regclass, c.relkind, c.relacl)
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON d.refobjid = e.oid AND e.extname = 'pgcrypt_kms'
UNION ALL
SELECT 'view ' || c.oid::regclass || ' ' || md5(pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace IN (SELECT extnamespace FROM pg_extension WHERE extname = 'pgcrypt_kms')
UNION ALL
SELECT 'extension ' || extversion || ' config=' || extconfig::regclass[]::text FROM pg_extension WHERE extname = 'pgcrypt_kms'
ORDER BY 1"
W=$(mktemp -d /tmp/pgck-upgrade.XXXXXX)
trap 'rm -rf "$W"' EXIT
psql_db $OLD -c "$CATALOG_SQL" >"$W/upgraded" && psql_db $NEW -c "$CATALOG_SQL" >"$W/fresh"
check $? "catalogs read ($(wc -l <"$W/fresh") lines)"
nfun=$(grep -c '^function ' "$W/fresh"); ncol=$(grep -c '^column ' "$W/fresh")
[ "$nfun" -gt 30 ] && [ "$ncol" -gt 20 ]; check $? "  ... the comparison sees the functions ($nfun) and keyring columns ($ncol)"
if diff -u "$W/fresh" "$W/upgraded" >"$W/diff"; then
    check 0 "the upgraded catalog equals a fresh CREATE EXTENSION (members, function labels and ACLs, keyring tables)"
else
    check 1 "the upgraded catalog equals a fresh CREATE EXTENSION (- fresh, + upgraded):"
    head -40 "$W/diff"
fi

psql_db postgres -c "DROP DATABASE $OLD" -c "DROP DATABASE $NEW" >/dev/null
exit $fail
