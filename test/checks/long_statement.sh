#!/usr/bin/env bash
# A statement that runs for a long time still takes in a key destroyed
# elsewhere (within about a second, not at its end): a function that decrypts
# one row a second for 8 seconds, while another session destroys the key after
# 2.5 seconds, must fail with 42704 before it reaches its last rows (0.2.0
# development decrypted them all: the cache only looked at the keyring at the
# statement's start) — also in a session whose previous statement failed
# (error recovery cancels every timeout; the once-a-second recheck must be
# armed again).  Against the cluster of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_long
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
pg -d $DB -c "CREATE EXTENSION pgcrypt_kms" \
    -c 'CREATE FUNCTION drain(tbl regclass) RETURNS SETOF text LANGUAGE plpgsql VOLATILE AS $$
        DECLARE r record;
        BEGIN
          FOR r IN EXECUTE format($q$SELECT id, v FROM %s ORDER BY id$q$, tbl) LOOP
            RETURN NEXT pg_catalog.concat(r.id, $s$: $s$, kms_decrypt(r.v));
            PERFORM pg_sleep(1);
          END LOOP;
        END $$' >/dev/null

# drain_case N LABEL [FIRST-STATEMENT]: key kN and table qN; drain(qN) in one
# session (after FIRST in the same session, if given); kN destroyed after 2.5 s
drain_case() {
    local n=$1 label=$2 first=${3:-} out_file out bg
    pg -d $DB -c "SELECT kms_create_key('k$n', 'local:long')" \
        -c "CREATE TABLE q$n AS SELECT g AS id, kms_encrypt('row ' || g, 'k$n') AS v FROM generate_series(1, 8) g" >/dev/null
    out_file=$(mktemp /tmp/pgck-long.XXXXXX); chmod 644 "$out_file"
    if [ -n "$first" ]; then
        pg -d $DB -v VERBOSITY=sqlstate -c "$first" -c "SELECT * FROM drain('q$n')" >"$out_file" 2>&1 &
    else
        pg -d $DB -v VERBOSITY=sqlstate -c "SELECT * FROM drain('q$n')" >"$out_file" 2>&1 &
    fi
    bg=$!
    sleep 2.5
    pg -d $DB -c "SELECT kms_destroy_key('k$n', 'k$n')" >/dev/null
    wait $bg
    out=$(cat "$out_file"); rm -f "$out_file"
    echo "$out" | grep -q "ERROR:  42704"; check $? "$label: the running statement fails with 42704 after the destroy ($(echo "$out" | tail -1))"
    echo "$out" | grep -q "row 8"; [ $? -ne 0 ]; check $? "$label: it never decrypts the last rows"
}
drain_case 1 "a fresh session"
drain_case 2 "after an error in the same session" "SELECT length(kms_decrypt(v)), 1 / (id - 1) FROM q2 ORDER BY id"
pg -d postgres -c "DROP DATABASE $DB" >/dev/null
exit $fail
