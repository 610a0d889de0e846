#!/usr/bin/env bash
# bench/shared_cache.sh: the shared key cache's benchmarks (issue 13), with the
# KMS emulator answering each Decrypt after a delay (default 10 ms, a real
# in-region KMS round trip):
#   - 64 fresh backends at once reading one key version: Decrypt calls;
#   - one fresh backend's first scan over rows of 500 and 5,000 tenant keys:
#     time and Decrypt calls, without the shared cache, with it (the scan
#     alone), and with it after kms_warm_cache(tbl, col).
# Builds a snapshot of the tree into a private PostgreSQL installation (as
# test/run.sh does), one throwaway cluster restarted between configurations.
#   bash bench/shared_cache.sh [--delay-ms 10] [--tenants "500 5000"] [--concurrency 32] [--shared-only]
# --shared-only skips the per-backend-caches-only configuration (minutes at 5,000 keys).
# Prints a Markdown report; nothing asserts a timing.
set -u
. "$(cd "$(dirname "$0")" && pwd)/../test/lib.sh"
pgck_require_root "$@"
DELAY=10 TENANTS="500 5000" CONC=32 SHARED_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --delay-ms) DELAY=$2; shift 2 ;;
        --tenants) TENANTS=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        --shared-only) SHARED_ONLY=1; shift ;;
        *) sed -n '2,14p' "$0"; exit 2 ;;
    esac
done
pgck_install_packages $PGCK_PACKAGES_BUILD python3-psycopg python3-cryptography
pgck_make_tmp
pgck_stage || exit 1
cd "$PGCK_ROOT"
pgck_build_install >"$PGCK_TMP/build.log" 2>&1 || { cat "$PGCK_TMP/build.log"; exit 1; }
pgck_emulator_env
pgck_start_emulator || exit 1
EMU_PID=${PGCK_PIDS[${#PGCK_PIDS[@]}-1]}
MAX=$(echo $TENANTS | tr ' ' '\n' | sort -n | tail -1)
export PGCK_EXTRA_CONF="shared_preload_libraries = 'pgcrypt_kms'
max_connections = 100
max_worker_processes = $((CONC + 8))
pgcrypt_kms.unwrap_concurrency = $CONC
pgcrypt_kms.shared_cache_size = 0"
pgck_start_cluster >/dev/null || { cat "$PGCK_TMP/server.log"; exit 1; }
runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGBIN="$PGBIN" PGCK_PGDATA="$PGCK_PGDATA" \
    PGCK_EMULATOR_PORT="$PGCK_EMULATOR_PORT" BENCH_DELAY="$DELAY" BENCH_TENANTS="$TENANTS" \
    BENCH_SHARED_SIZE=$((MAX + 100)) BENCH_CONC=$CONC BENCH_SHARED_ONLY=$SHARED_ONLY BENCH_EMU_PID=$EMU_PID PGCK_ROOT="$PGCK_ROOT" \
    /usr/bin/python3 "$PGCK_ROOT/bench/shared_cache.py"
