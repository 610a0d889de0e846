#!/usr/bin/env bash
# test/matrix.sh [MAJOR...]: the test suite on every supported PostgreSQL
# major (default: 15 17 18), as root on Debian 12.
#
# 15 is Debian's own; 17 and 18 are built from source by test/pg_build.sh into
# /opt/pgck/pgNN once (cached; see that script for where the source comes
# from, and a missing source fails that major's step with a message naming
# it).  Each major runs test/run.sh with PGCK_PG_CONFIG set to its pg_config;
# every major newer than 15 also runs the pg_upgrade test (test/upgrade/) from
# 15 and from each newer major tested before it (18: from 15 and from 17);
# PGCK_MATRIX_UPGRADE=0 leaves it out.  Citus 14.0.1 for 17 and 18
# (test/citus_build.sh, cached in /opt/pgck/citus-14.0.1-pgNN) is built in
# the background after them, for tap/030_citus.
#
# PGCK_MATRIX_ONLY: a PGCK_ONLY regex (see test/run.sh) for the majors other
# than 15; by default '^(units|regress|isolation|tap/|upgrade/)' (the C unit
# tests, pg_regress, the isolation tests, every TAP test and the pg_upgrade
# test), PGCK_MATRIX_ONLY=. runs the whole suite there too (check scripts,
# fuzzing, sanitizers and mutation have been run on 15 only so far).  .ci/run
# narrows it to '^(regress|isolation|upgrade/|tap/030_citus)'.  A PGCK_ONLY in the
# environment applies to every major.
#
# The last line is "N passed, N failed" over all majors; exit 1 on any failure.
set -u -o pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && exec sudo -E bash "$0" "$@"
    echo "run this as root (or install sudo)" >&2; exit 1
fi
MAJORS=("$@")
[ ${#MAJORS[@]} -gt 0 ] || MAJORS=(15 17 18)
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
LOGDIR=$(mktemp -d /tmp/pgck_matrix.XXXXXX)
MATRIX_ONLY=${PGCK_MATRIX_ONLY:-^(units|regress|isolation|tap/|upgrade/)}
OLDER=""    # the pg_configs of the majors above 15 tested so far: upgrade sources for the next
PASSED=0
FAILED=0
SUMMARY=()
START_ALL=$(date +%s)

# Every Debian package first (apt cannot run twice at once), then the majors
# to build are built in the background while 15's suite runs: that suite
# mostly waits (on servers, the emulator, timeouts), the compiler does not.
# PGCK_MATRIX_PREBUILD=0 builds each major just before its turn instead.
. "$HERE/lib.sh"
pgck_install_packages $PGCK_PACKAGES_BUILD $PGCK_PACKAGES_TEST
bash "$HERE/pg_build.sh" --deps || echo "pg_build: installing the build dependencies failed (the builds will say more)"
BUILD_PID=""
if [ "${PGCK_MATRIX_PREBUILD:-1}" = 1 ]; then
    setsid bash -c 'here=$1 logdir=$2; shift 2
        for m in "$@"; do
            [ "$m" = 15 ] && continue
            bash "$here/pg_build.sh" "$m" >"$logdir/pg_config_$m" 2>"$logdir/build_$m.log"
            echo $? >"$logdir/build_$m.rc"
        done
        # then Citus for them (test/citus_build.sh; a suite that asks for it
        # meanwhile waits on its lock, a cached one is a no-op)
        for m in "$@"; do
            [ "$m" = 15 ] && continue
            [ "$(cat "$logdir/build_$m.rc" 2>/dev/null)" = 0 ] || continue
            bash "$here/citus_build.sh" "$(tail -n 1 "$logdir/pg_config_$m")" >/dev/null 2>"$logdir/citus_build_$m.log"
        done' prebuild "$HERE" "$LOGDIR" "${MAJORS[@]}" </dev/null &
    BUILD_PID=$!
    trap '[ -n "$BUILD_PID" ] && kill -- -"$BUILD_PID" 2>/dev/null' EXIT
fi

# pg_config_for MAJOR: print the major's pg_config (building it if needed)
pg_config_for() {
    local m=$1
    if [ -z "$BUILD_PID" ] || [ "$m" = 15 ]; then
        bash "$HERE/pg_build.sh" "$m" 2> >(tee "$LOGDIR/build_$m.log" >&2) | tail -n 1
        return "${PIPESTATUS[0]}"
    fi
    while [ ! -f "$LOGDIR/build_$m.rc" ]; do
        kill -0 "$BUILD_PID" 2>/dev/null || { echo "pg_build $m: FAILED: the background build stopped" >>"$LOGDIR/build_$m.log"; break; }
        sleep 5
    done
    cat "$LOGDIR/build_$m.log" >&2
    [ -f "$LOGDIR/build_$m.rc" ] && [ "$(cat "$LOGDIR/build_$m.rc")" = 0 ] || return 1
    tail -n 1 "$LOGDIR/pg_config_$m"
}

for major in "${MAJORS[@]}"; do
    printf '\n######## PostgreSQL %s\n' "$major"
    t0=$(date +%s)
    if ! pg_config=$(pg_config_for "$major") || [ -z "$pg_config" ]; then
        echo "not ok - pg$major: no PostgreSQL $major to test against ($(grep 'FAILED' "$LOGDIR/build_$major.log" | tail -n 1))"
        FAILED=$((FAILED + 1))
        SUMMARY+=("pg$major: not built, see above")
        continue
    fi
    t1=$(date +%s)
    envs=(PGCK_PG_CONFIG="$pg_config")
    if [ "$major" != 15 ]; then
        [ -z "${PGCK_ONLY:-}" ] && envs+=(PGCK_ONLY="$MATRIX_ONLY")
        [ "${PGCK_MATRIX_UPGRADE:-1}" = 1 ] && envs+=(PGCK_UPGRADE_FROM_PG_CONFIG="$PG15_CONFIG${OLDER:+ $OLDER}")
    fi
    env "${envs[@]}" bash "$HERE/run.sh" 2>&1 | sed -u "s/^/pg$major: /" | tee "$LOGDIR/run_$major.log"
    t2=$(date +%s)
    [ "$major" != 15 ] && OLDER="${OLDER:+$OLDER }$pg_config"
    line=$(grep -E "^pg$major: [0-9]+ passed, [0-9]+ failed\$" "$LOGDIR/run_$major.log" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^pg[0-9]+: ([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
    else
        p=0; f=1; echo "not ok - pg$major: the suite ended without a summary line"
    fi
    PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
    SUMMARY+=("pg$major ($("$pg_config" --version)): $p passed, $f failed; $(grep -ohE "built in [0-9]+s|cached build|Debian's package" "$LOGDIR/build_$major.log" 2>/dev/null | head -n 1 | sed 's/^built/PostgreSQL built/') waited $((t1 - t0))s for it, suite $((t2 - t1))s$([ "$major" != 15 ] && [ -z "${PGCK_ONLY:-}" ] && echo " (steps $MATRIX_ONLY)")")
    grep -E "^pg$major: SKIPPED|^pg$major:     ok [0-9]+ # skip" "$LOGDIR/run_$major.log" >>"$LOGDIR/skips.log"
done

printf '\n######## matrix (logs in %s)\n' "$LOGDIR"
printf '%s\n' "${SUMMARY[@]}"
[ -s "$LOGDIR/skips.log" ] && { echo "skipped (counted neither passed nor failed):"; cat "$LOGDIR/skips.log"; }
echo "total $(( $(date +%s) - START_ALL ))s"
echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
