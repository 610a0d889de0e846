#!/usr/bin/env bash
# The SQL surface of pgcrypt_kms, generated from the catalog (issue 11): every
# function and procedure of the extension called with NULLs, empty, oversized
# and unknown arguments, dropped and missing table OIDs and malformed enc_text,
# as six roles (none, encrypt, decrypt, admin, table owner, superuser).  Passes
# when the server never restarts, every error carries a SQLSTATE from the
# README's table, no non-NULL plaintext comes back NULL (also with a None
# context from psycopg), and privileges hold.  The work is done by
# sql_surface.py (psycopg 3, /usr/bin/python3); see its header.
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
WORK=$(mktemp -d /tmp/pgck_surface.XXXXXX)
trap 'rm -rf "$WORK"; if declare -F pgck_cleanup >/dev/null; then pgck_cleanup; fi' EXIT
cp "$ROOT/test/checks/sql_surface.py" "$ROOT/README.md" "$WORK/"
chmod 755 "$WORK"; chmod 644 "$WORK"/*

runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGCK_TMP="$PGCK_TMP" PGCK_PGDATA="${PGCK_PGDATA:-}" \
    timeout --kill-after=10 ${PGCK_SURFACE_LIMIT:-600} /usr/bin/python3 "$WORK/sql_surface.py" "$WORK/README.md"
rc=$?
[ $rc -eq 124 ] && echo "not ok - the surface test did not end within ${PGCK_SURFACE_LIMIT:-600} s (a hang guard, not a timing check)"
exit $rc
