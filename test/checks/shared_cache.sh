#!/usr/bin/env bash
# The shared key cache (issue 13), on a cluster of its own started here with
# shared_preload_libraries = pgcrypt_kms and pgcrypt_kms.shared_cache_size set,
# and a private KMS emulator:
#  - the region is locked (lo) in the postmaster and excluded from core dumps
#    (dd) in the postmaster and in every backend;
#  - 64 fresh backends released at once onto one key version: one Decrypt call
#    in the emulator for all of them;
#  - a key served from the shared cache stops being served cluster-wide within
#    cache_ttl of the KMS refusing it (revocation), and kms_flush_cache() by an
#    admin makes it immediate for every backend;
#  - raw key bytes: in the region while cached; wiped on flush, on expiry, on
#    eviction, and when a destroy commits;
#  - nothing from a transaction that wrote the keyring is published;
#  - the wrapped key kept for the refresher leaves the main shared memory
#    segment with its entry;
#  - claims of backends that exit are given up, stale claims are taken over
#    (and published) or, by parallel workers, no longer waited for, and a
#    cancelled kms_warm_cache leaves nothing queued (shared_cache_claims.py);
#  - nothing is shared while a prepared transaction that wrote the keyring
#    is in progress, also across a crash restart (shared_cache_claims.py);
#  - the cache-coherence model test (cache_model.py) passes against it.
# Runs (as root) from test/run.sh: PGBIN, PGCK_TMP.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
PY=/usr/bin/python3
W="$PGCK_TMP/shared_cache"
rm -rf "$W"; mkdir -p "$W"; chown postgres:postgres "$W"; chmod 700 "$W"
ENTRIES=16
EMU_PID=
cleanup() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/data" -m immediate -w stop >/dev/null 2>&1
    [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
}
trap cleanup EXIT

$PY test/kms_emulator/emulator.py --port-file "$W/emu.port" --log "$W/emulator.log" >>"$W/emu.out" 2>&1 &
EMU_PID=$!
for i in $(seq 1 100); do [ -s "$W/emu.port" ] && break; sleep 0.1; done
EMU_PORT=$(cat "$W/emu.port")
emuctl() { $PY test/kms_emulator/emuctl.py "$EMU_PORT" "$@"; }

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
runuser -u postgres -- "$PGBIN/initdb" -D "$W/data" -A trust -U postgres --no-sync >"$W/initdb.log" 2>&1 || { cat "$W/initdb.log"; exit 1; }
cat >>"$W/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$W'
fsync = off
max_connections = 90
max_worker_processes = 16
max_prepared_transactions = 5
log_line_prefix = '%m [%p] %q%u@%d '
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.shared_cache_size = $ENTRIES
pgcrypt_kms.local_key_file = '$W/local_master.key'
pgcrypt_kms.aws_region = 'us-east-1'
pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$EMU_PORT'
CONF
runuser -u postgres -- env AWS_ACCESS_KEY_ID=AKIDPGCKTEST000000001 \
    AWS_SECRET_ACCESS_KEY=pgck-test-secret-0000000000000000000000 AWS_REGION=us-east-1 \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
    "$PGBIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w -t 60 start >/dev/null || { cat "$W/server.log"; exit 1; }
grep -q "pgcrypt_kms: shared key cache of $ENTRIES entries" "$W/server.log"
check $? "the postmaster mapped the shared key cache ($ENTRIES entries)"

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$W" -p "$PORT" -d postgres -c "CREATE DATABASE pgck_shared" || exit 1
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$W" -p "$PORT" -d pgck_shared -c "CREATE EXTENSION pgcrypt_kms" || exit 1

env PGHOST="$W" PGPORT="$PORT" PGBIN="$PGBIN" EMU_PORT="$EMU_PORT" \
    PGCK_PGDATA="$W/data" PGCK_ENTRIES="$ENTRIES" PGCK_LOCAL_KEY="$W/local_master.key" PGCK_SERVER_LOG="$W/server.log" \
    $PY test/checks/shared_cache.py
check $? "shared cache behaviour (above)"

env PGHOST="$W" PGPORT="$PORT" EMU_PORT="$EMU_PORT" \
    PGCK_PGDATA="$W/data" PGCK_LOCAL_KEY="$W/local_master.key" \
    $PY test/checks/shared_cache_claims.py
check $? "shared cache claims and prepared transactions (above)"

# the coherence model, against the shared cache (small: evictions happen)
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$W" -p "$PORT" -d postgres -c "CREATE DATABASE pgck_model_shared" || exit 1
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$W" -p "$PORT" -d pgck_model_shared -c "CREATE EXTENSION pgcrypt_kms" || exit 1
runuser -u postgres -- env PGHOST="$W" PGPORT="$PORT" PGCK_MODEL_DB=pgck_model_shared \
    ${PGCK_MODEL_SEEDS:+PGCK_MODEL_SEEDS="$PGCK_MODEL_SEEDS"} ${PGCK_MODEL_STEPS:+PGCK_MODEL_STEPS="$PGCK_MODEL_STEPS"} \
    $PY test/checks/cache_model.py
check $? "cache_model against the shared cache"
hits=$(runuser -u postgres -- "$PGBIN/psql" -X -At -h "$W" -p "$PORT" -d pgck_model_shared -c "SELECT hits FROM kms_shared_cache_stats()" 2>/dev/null)
[ "${hits:-0}" -gt 0 ]; check $? "the model's backends took keys from the shared cache ($hits hits)"

if [ $fail -ne 0 ]; then tail -n 40 "$W/server.log"; fi
exit $fail
