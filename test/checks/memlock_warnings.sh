#!/usr/bin/env bash
# Locked key memory: a backend whose memory lock limit is too low warns once
# for its key arena and once for OpenSSL's keyed contexts (AES-GCM, HMAC), each
# with its own hint.  The two warnings shared one flag until 2026-12-05 (an
# outside review of limits): after the arena's warning, the contexts went to
# swappable memory silently.  The backend's limit is lowered to 0 with
# prlimit(1) from its own session (psql's \!, as the postgres user) before it
# touches a key.  Against the cluster of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_memlock
pg() { runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
pg -d $DB -c "CREATE EXTENSION pgcrypt_kms" -c "SELECT kms_create_key('ml', 'local:memlock', blind_index => 'exact')" >/dev/null
out=$(pg -d $DB -v ON_ERROR_STOP=1 <<'SQL'
SELECT pg_backend_pid() AS pid \gset
\setenv PGCK_BACKEND_PID :pid
\! prlimit --pid "$PGCK_BACKEND_PID" --memlock=0:0 && echo limit-lowered
SELECT kms_decrypt(kms_encrypt('memlock probe', 'ml')) AS roundtrip;
SQL
)
echo "$out" | sed 's/^/# /'
echo "$out" | grep -q "limit-lowered"; check $? "the backend's memory lock limit was lowered to 0"
echo "$out" | grep -q "memlock probe"; check $? "the backend still encrypts and decrypts"
echo "$out" | grep -q "WARNING:  could not lock key cache memory"; check $? "it warns that the key arena could not be locked"
echo "$out" | grep -q "WARNING:  could not lock the memory of OpenSSL's keyed contexts"
check $? "and, separately, that OpenSSL's keyed contexts could not be locked"
[ "$(echo "$out" | grep -c "WARNING:  could not lock")" -eq 2 ]; check $? "each once"
pg -d postgres -c "DROP DATABASE $DB" >/dev/null
exit $fail
