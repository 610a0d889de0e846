#!/usr/bin/env bash
# Cache coherence as a model test (issue 11): three sessions run random
# sequences of key administration, encryption, decryption and blind-index
# probes with BEGIN/SAVEPOINT/ROLLBACK/COMMIT from fixed seeds, and after
# every answer a backend that never ran a statement must answer the same
# (see the header of cache_model.py for the oracle and why it is sound).
# Runs (as root) against the cluster test/run.sh started: PGHOST, PGPORT,
# PGBIN. PGCK_MODEL_SEEDS / PGCK_MODEL_STEPS change the seeds and the steps
# per seed.
set -u
DB=pgck_cache_model
psql_pg() { runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d postgres "$@"; }
psql_pg -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" || exit 1
runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "CREATE EXTENSION pgcrypt_kms" || exit 1
runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGCK_MODEL_DB=$DB \
    ${PGCK_MODEL_SEEDS:+PGCK_MODEL_SEEDS="$PGCK_MODEL_SEEDS"} ${PGCK_MODEL_STEPS:+PGCK_MODEL_STEPS="$PGCK_MODEL_STEPS"} \
    /usr/bin/python3 "$(dirname "$0")/cache_model.py"
rc=$?
psql_pg -c "DROP DATABASE $DB"
exit $rc
