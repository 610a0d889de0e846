#!/usr/bin/env bash
# Online migration of a plaintext column to enc_text and back, under concurrent
# INSERT/UPDATE/DELETE (pgbench), with an interruption and a resume: nothing is
# lost (decrypted checksum = plaintext shadow), the column ends as enc_text with
# its blind index and without the old plaintext index, and the reverse restores text.
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_migration
SECS=${PGCK_MIGRATION_SECONDS:-15}
psql_db() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB "$@"; }
pgbench_run() {  # script seconds log
    runuser -u postgres -- "$PGBIN/pgbench" -n -c 4 -j 2 -T "$2" -h "$PGHOST" -p "$PGPORT" -f "$1" $DB >"$3" 2>&1
}
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
TMPD=$(mktemp -d /tmp/pgck-mig.XXXXXX); chmod 755 "$TMPD"
trap 'rm -rf "$TMPD"' EXIT
psql_db <<'SQL'
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('mig', 'local:migration', blind_index => 'email');
CREATE TABLE mig_users (id serial PRIMARY KEY, email text NOT NULL, shadow text NOT NULL);
INSERT INTO mig_users (email, shadow) SELECT 'user' || g || '@example.com', 'user' || g || '@example.com' FROM generate_series(1, 100000) g;
CREATE INDEX mig_users_email_plain ON mig_users (email);
SQL

# ---- text → enc_text, with writers, interrupted and resumed
pgbench_run test/checks/pgbench/mig_plain.sql "$SECS" "$TMPD/pgbench1.log" &
bench=$!
sleep 1
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_encrypt_column('mig_users', 'email', 'mig', batch => 500, finish => false)" >"$TMPD/call1.log" 2>&1 &
call=$!
# interrupt it once the backfill is visibly partial
for i in $(seq 1 200); do
    n=$(psql_db -c "SELECT count(*) FROM mig_users WHERE email_pgck_new IS NOT NULL" 2>/dev/null)
    if [ -n "$n" ] && [ "$n" -gt 0 ]; then
        psql_db -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CALL kms_encrypt_column%' AND pid <> pg_backend_pid()" >/dev/null
        break
    fi
    sleep 0.05
done
wait $call
grep -q "canceling statement" "$TMPD/call1.log"; check $? "the migration was interrupted mid-way"
partial=$(psql_db -c "SELECT count(*) FILTER (WHERE email_pgck_new IS NOT NULL) || '/' || count(*) FROM mig_users")
[ "${partial%%/*}" -lt "${partial##*/}" ]; check $? "the interruption left the backfill partial ($partial rows carry ciphertext)"
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_encrypt_column('mig_users', 'email', 'mig', batch => 500, finish => false)" >"$TMPD/call2.log" 2>&1
check $? "resumed and backfilled while writers ran"
wait $bench
grep -q "number of failed transactions: 0" "$TMPD/pgbench1.log" || ! grep -q "failed transactions" "$TMPD/pgbench1.log"
check $? "writers had no failed transactions ($(grep -E 'number of transactions actually processed' "$TMPD/pgbench1.log"))"
grep -qiE "^pgbench: error|aborted" "$TMPD/pgbench1.log"; [ $? -ne 0 ]; check $? "no writer aborted"
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_encrypt_column('mig_users', 'email', 'mig', batch => 500)" >"$TMPD/call3.log" 2>&1
check $? "the swap completed"
[ "$(psql_db -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'mig_users'::regclass AND attname = 'email'")" = "enc_text" ]
check $? "the column is enc_text"
psql_db -c "SELECT indexdef FROM pg_indexes WHERE tablename = 'mig_users'" | grep -q "kms_blind_index(email)"
check $? "the blind index exists"
[ "$(psql_db -c "SELECT count(*) FROM pg_indexes WHERE indexname = 'mig_users_email_plain'")" = "0" ]
check $? "the index on the old plaintext is gone"
r=$(psql_db -c "SELECT (count(*) = count(*) FILTER (WHERE kms_decrypt(email) = shadow)) || ' ' || count(*) FROM mig_users")
[ "${r%% *}" = "true" ]; check $? "every row decrypts to its plaintext shadow ($r rows)"
r=$(psql_db -c "SELECT md5(string_agg(kms_decrypt(email), ',' ORDER BY id)) = md5(string_agg(shadow, ',' ORDER BY id)) FROM mig_users")
[ "$r" = "t" ]; check $? "decrypted checksum equals the plaintext shadow's"
psql_db -c "SET enable_seqscan = off; SELECT count(*) FROM mig_users WHERE kms_blind_index(email) = kms_blind_index('USER2@example.com', 'mig')" | grep -qE '^[01]$'
check $? "lookups go through the blind index"

# ---- enc_text → text, with writers
pgbench_run test/checks/pgbench/mig_enc.sql "$SECS" "$TMPD/pgbench2.log" &
bench=$!
sleep 1
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_decrypt_column('mig_users', 'email', batch => 500, finish => false)" >"$TMPD/call4.log" 2>&1
check $? "kms_decrypt_column backfilled while writers ran"
wait $bench
grep -q "number of failed transactions: 0" "$TMPD/pgbench2.log" || ! grep -q "failed transactions" "$TMPD/pgbench2.log"
check $? "writers had no failed transactions ($(grep -E 'number of transactions actually processed' "$TMPD/pgbench2.log"))"
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_decrypt_column('mig_users', 'email', batch => 500)" >"$TMPD/call5.log" 2>&1
check $? "the reverse swap completed"
r=$(psql_db -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'mig_users'::regclass AND attname = 'email'")
[ "$r" = "text" ]; check $? "the column is text again"
r=$(psql_db -c "SELECT (count(*) = count(*) FILTER (WHERE email = shadow)) || ' ' || count(*) FROM mig_users")
[ "${r%% *}" = "true" ]; check $? "every row equals its shadow after leaving the extension ($r rows)"

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE $DB"
exit $fail
