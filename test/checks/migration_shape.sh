#!/usr/bin/env bash
# kms_encrypt_column / kms_decrypt_column on tables of other shapes than a
# plain one:
#  - purge => true rewrites every leaf of a partitioned table and every
#    inheritance child (and the parent's own rows), each by its own size: after
#    VACUUM no live row of any of them still stores the dropped plaintext
#    (pageinspect reads the tuples' dropped attributes);
#  - the blind index it creates is named from the table's and column's names,
#    unique in the schema, even for long, quoted or multibyte names;
#  - CHECK constraints and foreign keys over the column, and its DEFAULT, are
#    refused (55000, before the backfill and under the swap's lock) rather
#    than dropped with it; its column GRANTs and comment go to the new column;
#    also on a partition attached between the backfill and the swap.
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_migration_shape
psql_db() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB "$@"; }
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql_db <<'SQL'
CREATE EXTENSION pgcrypt_kms;
CREATE EXTENSION pageinspect;
SELECT kms_create_key('shape', 'local:migration', blind_index => 'email');
-- live tuples of ONLY rel that still store a value in a dropped attribute
CREATE FUNCTION live_with_dropped(rel regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint := 0; att int;
BEGIN
    FOR att IN SELECT attnum FROM pg_attribute WHERE attrelid = rel AND attisdropped AND attnum > 0 LOOP
        EXECUTE format($q$
          WITH live AS (SELECT ctid FROM ONLY %s),
               blks AS (SELECT DISTINCT (ctid::text::point)[0]::int AS b FROM live)
          SELECT count(*) FROM blks, LATERAL heap_page_item_attrs(get_raw_page(%L, b), %L::regclass) h
           WHERE h.t_attrs[%s] IS NOT NULL AND format('(%%s,%%s)', b, h.lp)::tid IN (SELECT ctid FROM live)$q$,
          rel, rel::text, rel::text, att) INTO STRICT n;
        EXIT WHEN n > 0;
    END LOOP;
    RETURN n;
END $$;
SQL

# ---- purge => true on a partitioned table (one partition itself partitioned)
# and on an inheritance tree (rows in the parent, a child and a grandchild)
psql_db <<'SQL'
CREATE TABLE pp (id int NOT NULL, email text NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE pp1 PARTITION OF pp FOR VALUES FROM (0) TO (3000);
CREATE TABLE pp2 PARTITION OF pp FOR VALUES FROM (3000) TO (10000) PARTITION BY RANGE (id);
CREATE TABLE pp2a PARTITION OF pp2 FOR VALUES FROM (3000) TO (6000);
CREATE TABLE pp2b PARTITION OF pp2 FOR VALUES FROM (6000) TO (10000);
INSERT INTO pp SELECT g, 'PURGEMARK' || g || repeat('x', 150) || '@x.com' FROM generate_series(1, 8999) g;
CREATE TABLE ip (id int NOT NULL, email text NOT NULL);
CREATE TABLE ic1 () INHERITS (ip);
CREATE TABLE ic2 () INHERITS (ic1);
INSERT INTO ip SELECT g, 'PURGEMARK' || g || repeat('x', 150) || '@x.com' FROM generate_series(1, 1000) g;
INSERT INTO ic1 SELECT g, 'PURGEMARK' || g || repeat('x', 150) || '@x.com' FROM generate_series(1001, 4000) g;
INSERT INTO ic2 SELECT g, 'PURGEMARK' || g || repeat('x', 150) || '@x.com' FROM generate_series(4001, 6000) g;
SQL
out=$(psql_db -c "CALL kms_encrypt_column('pp', 'email', 'shape', batch => 100, purge => true)" 2>&1)
check $? "kms_encrypt_column(purge => true) on a partitioned table completed"
out=$(psql_db -c "CALL kms_encrypt_column('ip', 'email', 'shape', batch => 100, purge => true)" 2>&1)
check $? "kms_encrypt_column(purge => true) on an inheritance parent completed"
psql_db -c "VACUUM pp1, pp2a, pp2b, ip, ic1, ic2"
for rel in pp1 pp2a pp2b ip ic1 ic2; do
    r=$(psql_db -c "SELECT count(*) || ' ' || live_with_dropped('$rel') FROM ONLY $rel")
    [ "${r%% *}" -gt 0 ] && [ "${r##* }" = "0" ]
    check $? "after the purge and VACUUM no live row of $rel keeps the plaintext (rows, live rows with it: $r)"
done
r=$(psql_db -c "SELECT count(*) FILTER (WHERE kms_decrypt(email) LIKE 'PURGEMARK%') || '/' || count(*) FROM pp")
[ "$r" = "8999/8999" ]; check $? "every row of the partitioned table decrypts ($r)"
r=$(psql_db -c "SELECT count(*) FILTER (WHERE kms_decrypt(email) LIKE 'PURGEMARK%') || '/' || count(*) FROM ip")
[ "$r" = "6000/6000" ]; check $? "every row of the inheritance tree decrypts ($r)"

# ---- the blind index's name: from the table's and the column's names, unique
# in the schema (it was cut from the schema-qualified, quoted name: two tables
# of a schema with a long name collided, 42P07)
psql_db <<'SQL'
CREATE SCHEMA "Application Data";
CREATE TABLE "Application Data"."Users" (id int PRIMARY KEY, "E-Mail" text NOT NULL);
CREATE TABLE "Application Data"."Users_Archive" (id int PRIMARY KEY, "E-Mail" text NOT NULL);
CREATE TABLE "Application Data".customer_accounts_archive_2023 (id int PRIMARY KEY, email text);
CREATE TABLE "Application Data".customer_accounts_archive_2024 (id int PRIMARY KEY, email text);
CREATE TABLE "Application Data"."ümläütëëëëëëëëëëëëëëëëëëëëëëë" (id int PRIMARY KEY, "ëëëëëëëëëëëëëëëëëëëëëëëëëë" text);
CREATE TABLE "Application Data"."ümläütëëëëëëëëëëëëëëëëëëëëëëëx" (id int PRIMARY KEY, "ëëëëëëëëëëëëëëëëëëëëëëëëëë" text);
INSERT INTO "Application Data"."Users" SELECT g, 'u' || g || '@x.com' FROM generate_series(1, 50) g;
INSERT INTO "Application Data"."Users_Archive" SELECT g, 'a' || g || '@x.com' FROM generate_series(1, 50) g;
INSERT INTO "Application Data".customer_accounts_archive_2023 SELECT g, 'c' || g || '@x.com' FROM generate_series(1, 50) g;
INSERT INTO "Application Data".customer_accounts_archive_2024 SELECT g, 'd' || g || '@x.com' FROM generate_series(1, 50) g;
INSERT INTO "Application Data"."ümläütëëëëëëëëëëëëëëëëëëëëëëë" SELECT g, 'e' || g || '@x.com' FROM generate_series(1, 50) g;
INSERT INTO "Application Data"."ümläütëëëëëëëëëëëëëëëëëëëëëëëx" SELECT g, 'f' || g || '@x.com' FROM generate_series(1, 50) g;
SQL
for t in '"Application Data"."Users"|E-Mail|u7' '"Application Data"."Users_Archive"|E-Mail|a7' \
         '"Application Data".customer_accounts_archive_2023|email|c7' '"Application Data".customer_accounts_archive_2024|email|d7' \
         '"Application Data"."ümläütëëëëëëëëëëëëëëëëëëëëëëë"|ëëëëëëëëëëëëëëëëëëëëëëëëëë|e7' \
         '"Application Data"."ümläütëëëëëëëëëëëëëëëëëëëëëëëx"|ëëëëëëëëëëëëëëëëëëëëëëëëëë|f7'; do
    IFS='|' read -r tbl col probe <<<"$t"
    out=$(echo "CALL kms_encrypt_column(:'tbl', :'col', 'shape', batch => 7)" | psql_db -v tbl="$tbl" -v col="$col" 2>&1)
    check $? "kms_encrypt_column on $tbl.\"$col\" completed ($(echo "$out" | grep ERROR))"
    r=$(psql_db -v tbl="$tbl" -v col="$col" -v probe="$probe@x.com" <<'SQL'
SELECT count(*) || ' ' || string_agg(c.relname, ',') FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = :'tbl'::regclass AND pg_get_indexdef(i.indexrelid) LIKE '%kms_blind_index%';
SET enable_seqscan = off;
SELECT format('SELECT count(*) FROM %s WHERE kms_blind_index(%I) = kms_blind_index(%L, %L)', :'tbl', :'col', :'probe', 'shape') \gexec
SQL
)
    [ "$(echo "$r" | head -1 | cut -d' ' -f1)" = "1" ] && [ "$(echo "$r" | tail -1)" = "1" ]
    check $? "$tbl has its own blind index and it finds the row ($(echo $r))"
done
r=$(psql_db -c "SELECT count(*) FROM pg_class WHERE relnamespace = '\"Application Data\"'::regnamespace AND relname LIKE '%.%'")
[ "$r" = "0" ]; check $? "no index name carries the schema ($r)"

# ---- what the swap's DROP COLUMN would drop with the old column: CHECK
# constraints (also over other columns), foreign keys from and to it and its
# DEFAULT are refused (55000, named), before the backfill and under the swap's
# lock; its column GRANTs and its comment go to the new column
psql_db <<'SQL'
CREATE ROLE pgck_shape_reader;
CREATE ROLE pgck_shape_writer;
CREATE TABLE parent_emails (e text PRIMARY KEY);
INSERT INTO parent_emails SELECT 'g' || g || '@x.com' FROM generate_series(1, 20) g;
CREATE TABLE g_check (id int PRIMARY KEY, email text NOT NULL CHECK (email LIKE '%@%'));
CREATE TABLE g_multi (id int PRIMARY KEY, email text NOT NULL, other int, CONSTRAINT g_multi_either CHECK (other > 0 OR email <> ''));
CREATE TABLE g_fk (id int PRIMARY KEY, email text REFERENCES parent_emails (e));
CREATE TABLE g_default (id int PRIMARY KEY, email text DEFAULT 'none@x.com');
CREATE TABLE g_referenced (id int PRIMARY KEY, email text UNIQUE);
CREATE TABLE g_referencing (id int PRIMARY KEY, email text CONSTRAINT g_referencing_to_email REFERENCES g_referenced (email));
CREATE TABLE g_part (id int NOT NULL, email text) PARTITION BY RANGE (id);
CREATE TABLE g_part1 PARTITION OF g_part (CONSTRAINT g_part1_email_at CHECK (email LIKE '%@%')) FOR VALUES FROM (0) TO (100);
CREATE TABLE g_late (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE g_keep (id int PRIMARY KEY, email text NOT NULL, other int);
GRANT SELECT (id, email) ON g_keep TO pgck_shape_reader;
GRANT UPDATE (email) ON g_keep TO pgck_shape_writer WITH GRANT OPTION;
GRANT SELECT (email) ON g_keep TO PUBLIC;
COMMENT ON COLUMN g_keep.email IS 'the email, encrypted';
INSERT INTO g_check SELECT g, 'g' || g || '@x.com' FROM generate_series(1, 20) g;
INSERT INTO g_multi SELECT g, 'g' || g || '@x.com', g FROM generate_series(1, 20) g;
INSERT INTO g_fk SELECT g, 'g' || g || '@x.com' FROM generate_series(1, 20) g;
INSERT INTO g_default SELECT g, 'g' || g || '@x.com' FROM generate_series(1, 20) g;
INSERT INTO g_late SELECT g, 'g' || g || '@x.com' FROM generate_series(1, 20) g;
INSERT INTO g_keep SELECT g, 'g' || g || '@x.com', g FROM generate_series(1, 20) g;
SQL
for t in 'g_check|check constraint g_check_email_check on public.g_check' 'g_multi|check constraint g_multi_either on public.g_multi' \
         'g_fk|foreign key constraint g_fk_email_fkey on public.g_fk' 'g_default|the default of public.g_default.email' \
         'g_referenced|foreign key constraint g_referencing_to_email on public.g_referencing' \
         'g_part|check constraint g_part1_email_at on public.g_part1'; do
    tbl=${t%%|*}; named=${t#*|}
    out=$(psql_db -v VERBOSITY=verbose -c "CALL kms_encrypt_column('$tbl', 'email', 'shape', batch => 7)" 2>&1)
    echo "$out" | grep -q "ERROR:  55000" && echo "$out" | grep "DETAIL" | grep -qF "$named" \
        && [ "$(psql_db -c "SELECT count(*) FROM pg_attribute WHERE attrelid = '$tbl'::regclass AND attname = 'email_pgck_new'")" = "0" ]
    check $? "$tbl: refused before any change, naming $named ($(echo "$out" | grep -E 'ERROR|DETAIL' | tr '\n' ' '))"
done
r=$(psql_db -c "SELECT count(*) FROM pg_constraint WHERE conname IN ('g_check_email_check', 'g_multi_either', 'g_fk_email_fkey', 'g_referencing_to_email', 'g_part1_email_at')")
[ "$r" = "5" ]; check $? "the constraints are all still there ($r of 5)"
# a CHECK added after the backfill: refused under the swap's lock, resumable once dropped
out=$(psql_db -c "CALL kms_encrypt_column('g_late', 'email', 'shape', batch => 7, finish => false)" 2>&1)
check $? "g_late backfilled"
psql_db -c "ALTER TABLE g_late ADD CONSTRAINT g_late_at CHECK (email LIKE '%@%')"
out=$(psql_db -v VERBOSITY=verbose -c "CALL kms_encrypt_column('g_late', 'email', 'shape', batch => 7)" 2>&1)
echo "$out" | grep -q "ERROR:  55000" && echo "$out" | grep "DETAIL" | grep -qF "g_late_at" \
    && [ "$(psql_db -c "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'g_late'::regclass AND attname = 'email'")" = "text" ]
check $? "a CHECK added before the swap is refused and the column stays text ($(echo "$out" | grep -E 'ERROR' | tr '\n' ' '))"
psql_db -c "ALTER TABLE g_late DROP CONSTRAINT g_late_at"
out=$(psql_db -c "CALL kms_encrypt_column('g_late', 'email', 'shape', batch => 7)" 2>&1)
check $? "once the CHECK is dropped the swap completes ($(echo "$out" | grep ERROR))"
r=$(psql_db -c "SELECT count(*) FILTER (WHERE kms_decrypt(email) = 'g' || id || '@x.com') FROM g_late")
[ "$r" = "20" ]; check $? "g_late decrypts ($r of 20)"
# column GRANTs and the comment carry over
out=$(psql_db -c "CALL kms_encrypt_column('g_keep', 'email', 'shape', batch => 7)" 2>&1)
check $? "g_keep migrated ($(echo "$out" | grep ERROR))"
r=$(psql_db -c "SELECT col_description('g_keep'::regclass, attnum) FROM pg_attribute WHERE attrelid = 'g_keep'::regclass AND attname = 'email'")
[ "$r" = "the email, encrypted" ]; check $? "the column's comment carried over ($r)"
r=$(psql_db -c "SELECT string_agg(g, ' ' ORDER BY g) FROM (SELECT format('%s:%s:%s', CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END, x.privilege_type, x.is_grantable) AS g
                 FROM pg_attribute a, aclexplode(a.attacl) x WHERE a.attrelid = 'g_keep'::regclass AND a.attname = 'email') s")
[ "$r" = "PUBLIC:SELECT:f pgck_shape_reader:SELECT:f pgck_shape_writer:UPDATE:t" ]
check $? "the column's GRANTs carried over ($r)"
r=$(psql_db -c "SET ROLE pgck_shape_reader" -c "SELECT count(email) FROM g_keep" 2>&1)
[ "$r" = "20" ]; check $? "a role with a column GRANT still reads the column ($r)"
psql_db -c "DROP TABLE g_keep" -c "DROP ROLE pgck_shape_reader" -c "DROP ROLE pgck_shape_writer"

# ---- a partition attached between the backfill and the swap: the swap reads
# the table's tree again under its lock, so the new partition's CHECK over the
# column is refused (55000), and once it is dropped the partition's column
# GRANT carries over, its rows are encrypted and purge => true rewrites them
psql_db <<'SQL'
CREATE ROLE pgck_shape_late;
CREATE TABLE g_att (id int NOT NULL, email text) PARTITION BY RANGE (id);
CREATE TABLE g_att1 PARTITION OF g_att FOR VALUES FROM (0) TO (100);
INSERT INTO g_att SELECT g, 'PURGEMARK' || g || '@x.com' FROM generate_series(1, 40) g;
SQL
out=$(psql_db -c "CALL kms_encrypt_column('g_att', 'email', 'shape', batch => 7, finish => false)" 2>&1)
check $? "g_att backfilled ($(echo "$out" | grep ERROR))"
psql_db <<'SQL'
CREATE TABLE g_att2 (LIKE g_att, CONSTRAINT g_att2_at CHECK (email LIKE '%@%'));
INSERT INTO g_att2 (id, email) SELECT g, 'PURGEMARK' || g || '@x.com' FROM generate_series(100, 119) g;
ALTER TABLE g_att ATTACH PARTITION g_att2 FOR VALUES FROM (100) TO (200);
INSERT INTO g_att SELECT g, 'PURGEMARK' || g || '@x.com' FROM generate_series(120, 129) g;
GRANT SELECT (id, email) ON g_att2 TO pgck_shape_late;
SQL
out=$(psql_db -v VERBOSITY=verbose -c "CALL kms_encrypt_column('g_att', 'email', 'shape', batch => 7)" 2>&1)
echo "$out" | grep -q "ERROR:  55000" && echo "$out" | grep "DETAIL" | grep -qF "check constraint g_att2_at on public.g_att2" \
    && [ "$(psql_db -c "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'g_att2'::regclass AND attname = 'email'")" = "text" ]
check $? "a CHECK of a partition attached after the backfill is refused at the swap ($(echo "$out" | grep -E 'ERROR' | tr '\n' ' '))"
psql_db -c "ALTER TABLE g_att2 DROP CONSTRAINT g_att2_at"
out=$(psql_db -c "CALL kms_encrypt_column('g_att', 'email', 'shape', batch => 7, purge => true)" 2>&1)
check $? "once it is dropped the swap and the purge complete ($(echo "$out" | grep ERROR))"
r=$(psql_db -c "SELECT count(*) FILTER (WHERE kms_decrypt(email) = 'PURGEMARK' || id || '@x.com') || '/' || count(*) FROM g_att")
[ "$r" = "70/70" ]; check $? "every row of g_att, the attached partition's too, decrypts ($r)"
r=$(psql_db -c "SELECT string_agg(x.grantee::regrole::text || ':' || x.privilege_type, ' ')
                 FROM pg_attribute a, aclexplode(a.attacl) x WHERE a.attrelid = 'g_att2'::regclass AND a.attname = 'email'")
[ "$r" = "pgck_shape_late:SELECT" ]; check $? "the attached partition's column GRANT carried over ($r)"
psql_db -c "VACUUM g_att1, g_att2"
r=$(psql_db -c "SELECT count(*) || ' ' || live_with_dropped('g_att2') FROM ONLY g_att2")
[ "$r" = "30 0" ]; check $? "the purge rewrote the attached partition: no live row keeps the plaintext (rows, live rows with it: $r)"
psql_db -c "DROP TABLE g_att" -c "DROP ROLE pgck_shape_late"

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE $DB"
exit $fail
