#!/usr/bin/env bash
# Typed values through real drivers (psycopg 3 and psycopg2):
# Python ints (bound as int2, int4 or int8), Decimals, dates, aware datetimes,
# bytes and str encrypted as parameters by an application role, decrypted in
# text and binary result format, ranges through kms_ore with bound parameters
# against a plaintext shadow, and the refusal of a wrong typed decrypt (42804).
# The work is done by driver_typed.py (/usr/bin/python3); see its header.
#
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN,
# PGCK_TMP); otherwise starts its own (test/lib.sh).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

if [ -z "${PGHOST:-}" ] || [ -z "${PGPORT:-}" ] || [ -z "${PGBIN:-}" ] || [ -z "${PGCK_TMP:-}" ]; then
    . test/lib.sh
    pgck_require_root "$@"
    pgck_make_tmp
    pgck_stage || exit 1
    pgck_build_install || exit 1
    export PGCK_EXTRA_CONF="shared_preload_libraries = 'pgcrypt_kms'"
    pgck_start_cluster || { cat "$PGCK_TMP/server.log"; exit 1; }
    ROOT=$PGCK_ROOT
fi

# the postgres OS user runs the driver: it alone can reach the socket directory
WORK=$(mktemp -d /tmp/pgck_driver.XXXXXX)
trap 'rm -rf "$WORK"; if declare -F pgck_cleanup >/dev/null; then pgck_cleanup; fi' EXIT
cp "$ROOT/test/checks/driver_typed.py" "$WORK/"
chmod 755 "$WORK"; chmod 644 "$WORK"/*

runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
    timeout --kill-after=10 300 /usr/bin/python3 "$WORK/driver_typed.py"
rc=$?
[ $rc -eq 124 ] && echo "not ok - the driver test did not end within 300 s (a hang guard, not a timing check)"
exit $rc
