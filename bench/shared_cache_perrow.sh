#!/usr/bin/env bash
# bench/shared_cache_perrow.sh: the per-row costs of bench/run.sh's scans
# (kms_encrypt, kms_decrypt, kms_blind_index: ns/row net of the same count()
# over the plain or encrypted column) with the shared key cache off and on,
# in one run: one cluster, restarted between configurations, rounds
# alternating off/on so that a drift in machine load hits both alike; the
# median of the rounds.  The key is served from each backend's own cache
# after the warm-up either way: this shows that the shared cache costs the
# per-row path nothing (issue 13: "the per-row costs must not regress").
#   bash bench/shared_cache_perrow.sh [--rows 200000] [--rounds 3]
# Prints a Markdown report; nothing asserts a timing.
set -u
. "$(cd "$(dirname "$0")" && pwd)/../test/lib.sh"
pgck_require_root "$@"
ROWS=200000 ROUNDS=3
while [ $# -gt 0 ]; do
    case $1 in
        --rows) ROWS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) sed -n '2,11p' "$0"; exit 2 ;;
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
jit = off
max_parallel_workers_per_gather = 0
autovacuum = off
pgcrypt_kms.shared_cache_size = 0"
pgck_start_cluster >/dev/null || { cat "$PGCK_TMP/server.log"; exit 1; }
runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGBIN="$PGBIN" PGCK_PGDATA="$PGCK_PGDATA" \
    BENCH_ROWS=$ROWS BENCH_ROUNDS=$ROUNDS \
    AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
    /usr/bin/python3 "$PGCK_ROOT/bench/shared_cache_perrow.py"
