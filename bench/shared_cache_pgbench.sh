#!/usr/bin/env bash
# bench/shared_cache_pgbench.sh: pgbench over many tenant keys through the
# shared key cache, across many cache_ttl expiries (issue 13), with the KMS
# emulator answering each Decrypt after a delay (default 10 ms).
#
# The simulation: expiry is the only clock that matters here, so the TTL is
# shortened and the run is shortened by the same factor.  With the defaults,
# cache_ttl = 20 s and 300 s of pgbench make 15 TTL periods: as many expiries
# (and refreshes) as 15 minutes at cache_ttl = 60 s, with the same 1,000 keys
# and 32 clients.  Reported per TTL period: statements, p50/p99/max statement
# latency, KMS Decrypt calls (per wall minute and per simulated minute).
#
# Runs, one cluster, the shared cache warmed by kms_warm_cache before each:
#   1. warm single backend (1 client, cache_ttl long: no expiry): the baseline;
#   2. 32 clients, refresh_ahead = on (the design);
#   3. 32 clients, refresh_ahead = off (shows what a spike at expiry looks like).
#
#   bash bench/shared_cache_pgbench.sh [--ttl 20] [--periods 15] [--off-periods 5]
#        [--clients 32] [--tenants 1000] [--delay-ms 10] [--concurrency 32]
# Prints a Markdown report; nothing asserts a timing.
set -u
. "$(cd "$(dirname "$0")" && pwd)/../test/lib.sh"
pgck_require_root "$@"
TTL=20 PERIODS=15 OFF_PERIODS=5 CLIENTS=32 TENANTS=1000 DELAY=10 CONC=32
while [ $# -gt 0 ]; do
    case $1 in
        --ttl) TTL=$2; shift 2 ;;
        --periods) PERIODS=$2; shift 2 ;;
        --off-periods) OFF_PERIODS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --tenants) TENANTS=$2; shift 2 ;;
        --delay-ms) DELAY=$2; shift 2 ;;
        --concurrency) CONC=$2; shift 2 ;;
        *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done
pgck_install_packages $PGCK_PACKAGES_BUILD python3-psycopg python3-cryptography
pgck_make_tmp
pgck_stage || exit 1
cd "$PGCK_ROOT"
pgck_build_install >"$PGCK_TMP/build.log" 2>&1 || { cat "$PGCK_TMP/build.log"; exit 1; }
pgck_emulator_env
pgck_start_emulator || exit 1
export PGCK_EXTRA_CONF="shared_preload_libraries = 'pgcrypt_kms'
max_connections = $((CLIENTS + 40))
max_worker_processes = $((CONC + 8))
pgcrypt_kms.unwrap_concurrency = $CONC
pgcrypt_kms.shared_cache_size = $((TENANTS + 200))
pgcrypt_kms.cache_max_keys = $((TENANTS * 2))
pgcrypt_kms.cache_ttl = $TTL"
pgck_start_cluster >/dev/null || { cat "$PGCK_TMP/server.log"; exit 1; }
runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGBIN="$PGBIN" PGCK_PGDATA="$PGCK_PGDATA" \
    PGCK_EMULATOR_PORT="$PGCK_EMULATOR_PORT" PGCK_ROOT="$PGCK_ROOT" PGCK_TMP="$PGCK_TMP" \
    BENCH_TTL=$TTL BENCH_PERIODS=$PERIODS BENCH_OFF_PERIODS=$OFF_PERIODS BENCH_CLIENTS=$CLIENTS \
    BENCH_TENANTS=$TENANTS BENCH_DELAY=$DELAY BENCH_CONC=$CONC \
    /usr/bin/python3 "$PGCK_ROOT/bench/shared_cache_pgbench.py"
