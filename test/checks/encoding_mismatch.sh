#!/usr/bin/env bash
# A value encrypted in a LATIN1 database and restored (pg_dump) into a UTF8
# one decrypts to bytes that are not UTF8: kms_decrypt refuses with 22021
# naming the key version, never returns invalid text, never quotes the bytes
# (found by the adversarial review of 0.2).  Against the cluster of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS pgck_latin1" -c "DROP DATABASE IF EXISTS pgck_utf8" \
   -c "CREATE DATABASE pgck_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'" \
   -c "CREATE DATABASE pgck_utf8 TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'" >/dev/null
pg -d pgck_latin1 -c "CREATE EXTENSION pgcrypt_kms" -c "SELECT kms_create_key('enc', 'local:encoding')" \
   -c "CREATE TABLE t AS SELECT kms_encrypt(convert_from('\\x436166e9'::bytea, 'LATIN1'), 'enc') AS v, 'Caf' || chr(233) AS plain" >/dev/null
out=$(pg -d pgck_latin1 -c "SELECT kms_decrypt(v) = plain FROM t")
[ "$out" = "t" ]; check $? "positive control: the LATIN1 database decrypts its own value ($out)"
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d pgck_latin1 | pg -d pgck_utf8 -v ON_ERROR_STOP=1 >/dev/null
out=$(pg -d pgck_utf8 -v VERBOSITY=verbose -c "SELECT kms_decrypt(v) FROM t")
echo "$out" | grep -q "ERROR:  22021: a value under key version id 1 is not valid in the database encoding \"UTF8\""
check $? "the UTF8 database refuses the LATIN1 plaintext with 22021 naming the version ($(echo "$out" | head -1))"
echo "$out" | grep -qi "0xe9"; [ $? -ne 0 ]; check $? "the error does not quote the plaintext's bytes"
out=$(pg -d pgck_utf8 -c "SELECT plain = 'Café' FROM t")
[ "$out" = "t" ]; check $? "positive control: the plaintext column was converted by the restore ($out)"
pg -d postgres -c "DROP DATABASE pgck_latin1" -c "DROP DATABASE pgck_utf8" >/dev/null
exit $fail
