#!/usr/bin/env bash
# kms_reencrypt_table moves 100,000 values off an old key version in committed
# batches while pgbench writers insert, update and delete: afterwards no value
# is on the old version (so it can be retired), and the row count and the
# decrypted checksum equal a plaintext shadow kept by the same transactions.
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN).
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_reencrypt
SECS=${PGCK_REENCRYPT_SECONDS:-15}
psql_db() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB "$@"; }
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
TMPD=$(mktemp -d /tmp/pgck-reenc.XXXXXX); chmod 755 "$TMPD"
trap 'rm -rf "$TMPD"' EXIT
psql_db <<'SQL'
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('re', 'local:reencrypt', blind_index => 'email');
CREATE TABLE re_users (id serial PRIMARY KEY, email enc_text NOT NULL, shadow text NOT NULL);
INSERT INTO re_users (email, shadow) SELECT kms_encrypt('user' || g || '@example.com', 're'), 'user' || g || '@example.com' FROM generate_series(1, 100000) g;
CREATE INDEX re_users_bidx ON re_users (kms_blind_index(email));
SELECT kms_rotate_key('re');
SQL
before=$(psql_db -c "SELECT count(*) || ' ' || md5(string_agg(kms_decrypt(email), ',' ORDER BY id)) = count(*) || ' ' || md5(string_agg(shadow, ',' ORDER BY id)) FROM re_users")
[ "$before" = "t" ]; check $? "before: 100,000 rows, decrypted checksum equals the shadow's"

runuser -u postgres -- "$PGBIN/pgbench" -n -c 4 -j 2 -T "$SECS" -h "$PGHOST" -p "$PGPORT" \
    -f test/checks/pgbench/reenc_writers.sql $DB >"$TMPD/pgbench.log" 2>&1 &
bench=$!
sleep 1
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_reencrypt_table('re_users', 'email', batch => 5000)" >"$TMPD/call.log" 2>&1
check $? "kms_reencrypt_table ran to the end while writers ran ($(grep -c 're-encrypted so far' "$TMPD/call.log") committed batches)"
running=0; kill -0 $bench 2>/dev/null && running=1
wait $bench
[ "$running" = 1 ]; check $? "the writers were still running when it finished"
grep -qiE "^pgbench: error|aborted" "$TMPD/pgbench.log"; [ $? -ne 0 ]; check $? "no writer failed ($(grep -E 'actually processed' "$TMPD/pgbench.log"))"
# writers stopped: whatever they wrote under the old version meanwhile is picked up by a resumed run
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CALL kms_reencrypt_table('re_users', 'email', batch => 5000)" >/dev/null 2>&1
old=$(psql_db -c "SELECT count(*) FROM re_users WHERE kms_version_id(email) <> (SELECT version_id FROM kms_keys WHERE key_name = 're' AND current)")
[ "$old" = "0" ]; check $? "no value is left on the old version"
psql_db -c "SELECT kms_set_key_state('re', 1, 'retired')" >/dev/null
after=$(psql_db -c "SELECT (count(*) = count(*) FILTER (WHERE kms_decrypt(email) = shadow))::text || ' ' || count(*) FROM re_users")
[ "${after%% *}" = "true" ]; check $? "with version 1 retired, every row decrypts to its shadow (${after#* } rows)"
r=$(psql_db -c "SELECT md5(string_agg(kms_decrypt(email), ',' ORDER BY id)) = md5(string_agg(shadow, ',' ORDER BY id)) FROM re_users")
[ "$r" = "t" ]; check $? "decrypted checksum equals the plaintext shadow's"
r=$(psql_db -c "SELECT count(*) FROM re_users WHERE kms_blind_index(email) <> kms_blind_index(shadow, 're')")
[ "$r" = "0" ]; check $? "every tag matches its shadow's probe"
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE $DB"
exit $fail
