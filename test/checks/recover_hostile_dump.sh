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

# ---------------------------------------------------------------- a cut or damaged plain dump (audit R2)
# pg_dump killed, a full disk, a partial copy: exit 2 ("dump format"), nothing written, never
# exit 0 with rows or tables missing; a row with too few or too many fields is refused by line
R() { /usr/bin/python3 tools/pgck_recover.py "$@" --local-key-file "$PGCK_TMP/local_master.key"; }
cut_refused() {  # cut_refused NAME FILE WANT
    rm -rf "$W/cut"
    R "$2" --csv-dir "$W/cut" --keep-going --force >/dev/null 2>"$W/cut.err"
    local rc=$?
    [ $rc = 2 ] && [ -z "$(ls -A "$W/cut" 2>/dev/null)" ] && grep -q -- "$3" "$W/cut.err"
    check $? "$1: refused, exit 2, nothing written (exit $rc: $(tr '\n' '|' <"$W/cut.err" | cut -c1-250))"
}
u=$(grep -n '^COPY public.users ' "$W/dump.sql" | cut -d: -f1)
head -n $((u + 2)) "$W/dump.sql" >"$W/cut_rows.sql"                    # 2 of 3 rows, no "\."
{ head -n $((u + 2)) "$W/dump.sql"; sed -n "$((u + 3))p" "$W/dump.sql" | head -c 40; } >"$W/cut_inrow.sql"
last=$(grep -n '^\\\.$' "$W/dump.sql" | tail -1 | cut -d: -f1)
head -n "$last" "$W/dump.sql" >"$W/cut_trailer.sql"                    # every COPY closed, no trailer
awk -v u=$u 'NR == u + 2 {sub(/\t[^\t]*$/, "")} {print}' "$W/dump.sql" >"$W/row_short.sql"
awk -v u=$u 'NR == u + 2 {$0 = $0 "\tx"} {print}' "$W/dump.sql" >"$W/row_long.sql"
cut_refused "a plain dump cut between two rows of a COPY block" "$W/cut_rows.sql" 'ends inside the COPY data of public.users'
cut_refused "a plain dump cut inside a row" "$W/cut_inrow.sql" 'ends inside the COPY data of public.users'
cut_refused "a plain dump without pg_dump's last line" "$W/cut_trailer.sql" 'does not end with pg_dump.s last line'
cut_refused "a COPY row with a field missing" "$W/row_short.sql" "dump line $((u + 2)): a row of the COPY data of public.users has 1 fields where its COPY column list has 2"
cut_refused "a COPY row with a field too many" "$W/row_long.sql" "dump line $((u + 2)): a row of the COPY data of public.users has 3 fields"

# ---------------------------------------------------------------- --csv-dir file names (audit R5)
# U+1234 followed by "5" and U+12345 gave the same file; with --force one table's CSV was
# overwritten by and mixed with the other's.  The names are injective now, and a file name used
# twice in one run is refused even with --force.
pg -d $DB -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE TABLE public."ሴ5" (id int, x enc_text);
CREATE TABLE public."𒍅" (id int, x enc_text);
INSERT INTO public."ሴ5" SELECT g, kms_encrypt('first-' || g, 'k') FROM generate_series(1, 3) g;
INSERT INTO public."𒍅" SELECT g, kms_encrypt('second-' || g, 'k') FROM generate_series(1, 3) g;
SQL
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d $DB >"$W/names.sql"
rm -rf "$W/names"; mkdir -m 700 "$W/names"
R "$W/names.sql" --csv-dir "$W/names" --force >/dev/null 2>"$W/names.err"
rc=$?
a=$(cat "$W/names/public.%u12345.csv" 2>/dev/null | tr '\n' ' ')
b=$(cat "$W/names/public.%U012345.csv" 2>/dev/null | tr '\n' ' ')
[ $rc = 0 ] && [ "$a" = '"id","x" "1","first-1" "2","first-2" "3","first-3" ' ] &&
    [ "$b" = '"id","x" "1","second-1" "2","second-2" "3","second-3" ' ]
check $? "tables \"ሴ5\" and \"𒍅\" go to two files, public.%u12345.csv and public.%U012345.csv, each with its own rows (exit $rc; $a | $b)"
/usr/bin/python3 - "$W/names.sql" "$W/twice.sql" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
i = d.index(b"--\n-- Data for Name: users; Type: TABLE DATA")
j = d.index(b"\n\\.\n", i) + 4
open(sys.argv[2], "wb").write(d[:j] + d[i:j] + d[j:])
PY
cut_refused "the same table's COPY data twice, with --force" "$W/twice.sql" 'the COPY data of public.users appears twice in the dump (file public.users.csv)'

# ---------------------------------------------------------------- no core dump (audit note)
# The tool holds the escrow key and every DEK: RLIMIT_CORE 0 and not dumpable.  Run it as
# postgres with a core limit set, its dump a FIFO: once this shell's open of the FIFO returns,
# the tool is past its start and waits for the dump; its /proc/PID/status then belongs to root (not
# dumpable) and its core limit is 0.  A plain python3 started the same way is the control.
H=$(mktemp -d /tmp/pgck-rcore.XXXXXX); chmod 755 "$H"
cp tools/pgck_recover.py "$H/t.py"; chmod 644 "$H/t.py"; mkfifo -m 666 "$H/fifo"
core_state() {  # core_state CMD...: "<core limit soft> <owner of /proc/PID/status>", then kills it
    (ulimit -c unlimited; exec setpriv --reuid=postgres --regid=postgres --clear-groups "$@") 2>/dev/null &
    local pid=$!
    exec 3>"$H/fifo"
    echo "$(awk '/^Max core file size/ {print $5}' /proc/$pid/limits) $(stat -c %U /proc/$pid/status)"
    kill $pid 2>/dev/null; exec 3>&-; wait $pid 2>/dev/null
}
ctl=$(core_state /usr/bin/python3 -c 'import sys; open(sys.argv[1], "rb").read(1)' "$H/fifo")
got=$(core_state /usr/bin/python3 "$H/t.py" "$H/fifo" --list)
[ "$ctl" = "unlimited postgres" ] && [ "$got" = "0 root" ]
check $? "the tool runs with core size 0 and not dumpable (tool: $got; control python3: $ctl)"
rm -rf "$H"

pg -d postgres -c "DROP DATABASE $DB" -c "DROP ROLE pgck_mallory" >/dev/null
exit $fail
