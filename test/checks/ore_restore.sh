#!/usr/bin/env bash
# ORE and named-index expression indexes after pg_dump | psql (issue 14,
# "done when": dump/restore serves range queries without KMS calls for the
# index): the restore rebuilds the indexes from the terms and tags the
# values carry, with no key; in the restored database a range query and a
# domain lookup given their probes as literals (computed before the dump)
# return the same rows as before, by index scan, and the session makes no
# KMS call and no unwrap (kms_cache_stats); typed values still decrypt as
# their type, and that decrypt is counted as a KMS call (the counter counts:
# the keys are aws-kms: keys of the emulator, whose calls kms_calls counts;
# a local: key's unwrap is not a KMS call and would make the check vacuous).
# Runs (as root) against the cluster test/run.sh started: PGHOST, PGPORT,
# PGBIN, PGCK_TMP, and its KMS emulator (pgcrypt_kms.aws_endpoint).
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
pg() { runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" "$@"; }
pg -d postgres -c "DROP DATABASE IF EXISTS pgck_ore_src" -c "DROP DATABASE IF EXISTS pgck_ore_dst" \
   -c "CREATE DATABASE pgck_ore_src" -c "CREATE DATABASE pgck_ore_dst" || exit 1
pg -d pgck_ore_src <<'SQL' || exit 1
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('rs_dob', 'aws-kms:alias/pgck-test', order_index => true);
SELECT kms_create_key('rs_mail', 'aws-kms:alias/pgck-test-2', blind_index => 'email');
SELECT kms_add_index('rs_mail', 'domain', 'domain');
CREATE TABLE p (id int PRIMARY KEY, dob enc_text, email enc_text, plain_dob date);
INSERT INTO p SELECT g, kms_encrypt(date '1950-01-01' + (g * 37) % 20000, 'rs_dob'),
                     kms_encrypt('u' || g || CASE WHEN g % 3 = 0 THEN '@example.com' ELSE '@other.org' END, 'rs_mail'),
                     date '1950-01-01' + (g * 37) % 20000
  FROM generate_series(1, 5000) g;
CREATE INDEX p_dob ON p (kms_ore(dob));
CREATE INDEX p_domain ON p (kms_blind_tag(email, 'domain'));
SQL
lo=$(pg -d pgck_ore_src -c "SELECT kms_ore('1980-01-01'::date, 'rs_dob')")
hi=$(pg -d pgck_ore_src -c "SELECT kms_ore('1989-12-31'::date, 'rs_dob')")
dom=$(pg -d pgck_ore_src -c "SELECT kms_blind_tag('example.com', 'rs_mail', 'domain')")
Q="SELECT count(*), sum(id) FROM p WHERE kms_ore(dob) BETWEEN '$lo'::kms_ore_term AND '$hi'::kms_ore_term"
QD="SELECT count(*), sum(id) FROM p WHERE kms_blind_tag(email, 'domain') = '$dom'::bytea"
before=$(pg -d pgck_ore_src -c "$Q")
before_d=$(pg -d pgck_ore_src -c "$QD")
expected=$(pg -d pgck_ore_src -c "SELECT count(*), sum(id) FROM p WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31'")
[ "$before" = "$expected" ]; check $? "before the dump: the range by term returns the plaintext range's rows ($before)"

dump="$PGCK_TMP/ore_restore.sql"
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d pgck_ore_src -f "$dump"; check $? "pg_dump"
grep -q 'COPY pgcrypt_kms.key_indexes' "$dump"; check $? "the dump carries pgcrypt_kms.key_indexes"
# the restore: a fresh session that must not call the KMS while it rebuilds the indexes
STATS="SELECT 'calls=' || kms_calls || ' unwraps=' || unwraps FROM public.kms_cache_stats()"
out=$(pg -d pgck_ore_dst -f "$dump" -c "$STATS" 2>&1)
echo "$out" | grep -qx 'calls=0 unwraps=0'; check $? "the restore (CREATE INDEX on kms_ore and kms_blind_tag included) made no KMS call and no unwrap ($(echo "$out" | grep calls=))"
plan=$(pg -d pgck_ore_dst -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) $Q")
echo "$plan" | grep -q 'p_dob'; check $? "the restored database answers the range by the restored index"
after=$(pg -d pgck_ore_dst -c "$Q" -c "$QD" -c "$STATS")
[ "$after" = "$before
$before_d
calls=0 unwraps=0" ]; check $? "the restored database returns the same range and domain rows with no KMS call ($(echo $after))"
typed=$(pg -d pgck_ore_dst -c "SELECT kms_decrypt_date(dob) = plain_dob FROM p WHERE id = 7" -c "$STATS")
echo "$typed" | head -1 | grep -qx t; check $? "a restored typed value decrypts as its type"
echo "$typed" | grep -Eqx 'calls=[1-9][0-9]* unwraps=[1-9][0-9]*'; check $? "that decrypt is counted as a KMS call and an unwrap (the zero counts above are not vacuous: $(echo "$typed" | grep calls=))"
pg -d postgres -c "DROP DATABASE pgck_ore_src" -c "DROP DATABASE pgck_ore_dst"
exit $fail
