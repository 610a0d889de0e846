#!/usr/bin/env bash
# A statement that runs for a long time still takes in a key destroyed
# elsewhere (within about a second, not at its end): a function that decrypts
# one row a second for 8 seconds, while another session destroys the key after
# 2 seconds, must fail with 42704 before it reaches its last rows (0.2.0
# development decrypted them all: the cache only looked at the keyring at
# the statement's start).  Against the cluster of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_long
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
pg -d $DB -c "CREATE EXTENSION pgcrypt_kms" -c "SELECT kms_create_key('kl', 'local:long')" \
    -c "CREATE TABLE q AS SELECT g AS id, kms_encrypt('row ' || g, 'kl') AS v FROM generate_series(1, 8) g" \
    -c 'CREATE FUNCTION drain() RETURNS SETOF text LANGUAGE plpgsql VOLATILE AS $$
        DECLARE r record;
        BEGIN
          FOR r IN SELECT id, v FROM q ORDER BY id LOOP
            RETURN NEXT pg_catalog.concat(r.id, $s$: $s$, kms_decrypt(r.v));
            PERFORM pg_sleep(1);
          END LOOP;
        END $$' >/dev/null
out_file=$(mktemp /tmp/pgck-long.XXXXXX); chmod 644 "$out_file"
pg -d $DB -v VERBOSITY=sqlstate -c "SELECT * FROM drain()" >"$out_file" 2>&1 &
bg=$!
sleep 2
pg -d $DB -c "SELECT kms_destroy_key('kl', 'kl')" >/dev/null
wait $bg
out=$(cat "$out_file"); rm -f "$out_file"
echo "$out" | grep -q "ERROR:  42704"; check $? "the running statement fails with 42704 after the destroy ($(echo "$out" | tail -1))"
echo "$out" | grep -q "row 8"; [ $? -ne 0 ]; check $? "it never decrypts the last rows (rows decrypted: $(echo "$out" | grep -c ': row'))"
pg -d postgres -c "DROP DATABASE $DB" >/dev/null
exit $fail
