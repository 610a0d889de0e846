#!/usr/bin/env bash
# tools/pgck_recover.py on a dump that a database user shaped (the fifth
# adversarial review of 0.2): a table comment whose text holds newlines and a
# "COPY ..." line made the tool skip the next tables' data and exit 0 with
# their values still encrypted.  It must read only pg_dump's own statements.
# Against the cluster of test/run.sh (local: key file in $PGCK_TMP).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_recover_hostile
W=$(mktemp -d /tmp/pgck-rhostile.XXXXXX); chmod 755 "$W"
trap '[ -n "${PGCK_KEEP_W:-}" ] || rm -rf "$W"' EXIT
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP ROLE IF EXISTS pgck_mallory" -c "CREATE DATABASE $DB" >/dev/null
pg -d $DB -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('k', 'local:hostile');
CREATE TABLE public.users (id int, email enc_text);
INSERT INTO public.users SELECT g, kms_encrypt('user' || g || '@example.com', 'k') FROM generate_series(1, 3) g;
CREATE ROLE pgck_mallory LOGIN;
CREATE SCHEMA m AUTHORIZATION pgck_mallory;
SET ROLE pgck_mallory;
CREATE TABLE m.aaa (x int);
COMMENT ON TABLE m.aaa IS E'harmless\nCOPY m.zzz (x) FROM stdin;\n';
CREATE FUNCTION m.f() RETURNS text LANGUAGE sql AS E'SELECT ''1\n-- Data for Name: zzz; Type: TABLE DATA; Schema: m; Owner: x\n\nCOPY m.zzz (x) FROM stdin;\n2''::text';
SQL
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d $DB >"$W/dump.sql"
[ "$(grep -c "^COPY m.zzz" "$W/dump.sql")" = 2 ]; check $? "positive control: the dump has two lines 'COPY m.zzz' that pg_dump did not write as a statement (the comment, the function body)"
/usr/bin/python3 tools/pgck_recover.py "$W/dump.sql" --local-key-file "$PGCK_TMP/local_master.key" --csv-dir "$W/csv" >"$W/out" 2>"$W/err"
rc=$?
[ $rc -eq 0 ]; check $? "pgck_recover.py exits 0 ($(tr '\n' '|' <"$W/err" | cut -c1-300))"
n=$(grep -c "^\"[0-9]\",\"user[0-9]@example.com\"$" "$W/csv/public.users.csv" 2>/dev/null)
[ "$n" = "3" ]; check $? "every value of public.users is recovered despite the hostile comment and function body ($n of 3)"
pg -d postgres -c "DROP DATABASE $DB" -c "DROP ROLE pgck_mallory" >/dev/null
exit $fail
