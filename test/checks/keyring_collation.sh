#!/usr/bin/env bash
# The key cache reads a key's keyring rows through the tables' btree indexes
# (keyring.c, keyring_scan), not SQL.  A text index is ordered by its
# collation, so the scan must compare key names under the index's collation:
# in a database whose default collation is ICU en-US, 'b' sorts before 'C'
# (under C it is after), and a scan comparing under another collation walks
# to the wrong place and misses keys that exist.  200 key names of mixed case
# and punctuation, each used to encrypt and decrypt (the key row, its active
# version), one rotated (the active version among two) and one destroyed (its
# version row found, as destroyed).  Against the cluster of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
DB=pgck_icu_keys
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null
out=$(pg -d postgres -c "CREATE DATABASE $DB TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
[ -z "$out" ]; check $? "a database with the ICU en-US collation (${out:-created})"
[ -z "$out" ] || exit 1
pg -d "$DB" -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION pgcrypt_kms;
CREATE TABLE names AS
SELECT g, (ARRAY['k', 'K', 'key.', 'Key-', 'KEY_', 'b', 'C', 'a:', 'Z'])[1 + g % 9] || g AS name
  FROM generate_series(1, 200) g;
SELECT count(kms_create_key(name, 'local:coll' || g, blind_index => CASE WHEN g % 2 = 0 THEN 'exact' ELSE 'none' END))
  FROM names;
SQL
out=$(pg -d "$DB" -c "SELECT (SELECT string_agg(key_name, ',' ORDER BY key_name) FROM pgcrypt_kms.keys)
                          <> (SELECT string_agg(key_name, ',' ORDER BY key_name COLLATE \"C\") FROM pgcrypt_kms.keys)")
[ "$out" = "t" ]; check $? "positive control: the keyring's key names sort differently under en-US and C ($out)"
# a new session: every key read from the keyring, none from a cache
out=$(pg -d "$DB" -c "SELECT count(*) FILTER (WHERE kms_decrypt(kms_encrypt('value ' || g, name)) = 'value ' || g),
                              count(*)
                         FROM names")
[ "$out" = "200|200" ]; check $? "each of the 200 keys encrypts and decrypts in a new session (ok|all: $out)"
out=$(pg -d "$DB" -c "SELECT count(*) FROM names
                       WHERE g % 2 = 0 AND kms_blind_index('x' || g, name) IS NOT NULL")
[ "$out" = "100" ]; check $? "each of the 100 keys with a blind index tags a value ($out)"
pg -d "$DB" -c "CREATE TABLE old AS SELECT kms_encrypt('before', 'b41') AS v" -c "SELECT kms_rotate_key('b41')" >/dev/null
out=$(pg -d "$DB" -c "SELECT (SELECT version FROM kms_keys WHERE version_id = kms_version_id(kms_encrypt('after', 'b41'))),
                              (SELECT version FROM kms_keys WHERE version_id = kms_version_id(v)), kms_decrypt(v)
                         FROM old")
[ "$out" = "2|1|before" ]; check $? "a rotated key's new session encrypts under its active version 2 and decrypts version 1 ($out)"
pg -d "$DB" -c "CREATE TABLE gone AS SELECT kms_encrypt('shredded', 'C69') AS v" -c "SELECT kms_destroy_key('C69', 'C69')" >/dev/null
out=$(pg -d "$DB" -v VERBOSITY=verbose -c "SELECT kms_decrypt(v) FROM gone")
echo "$out" | grep -q 'ERROR:  42704: key "C69" version 1 was destroyed'
check $? "a destroyed key's value is refused as destroyed (its version row found), not as missing ($(echo "$out" | head -1))"
pg -d postgres -c "DROP DATABASE $DB" >/dev/null
exit $fail
