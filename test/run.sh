#!/usr/bin/env bash
# The whole pgcrypt_kms test suite, from a fresh Debian 12 (root or sudo):
# installs what is missing, builds, installs, runs C unit tests, starts a
# throwaway cluster and the KMS emulator on loopback, runs pg_regress, the
# check scripts and the TAP tests, fuzzes briefly, stops everything, and ends
# with "N passed, N failed" (exit 1 on any failure).
#
# The last stage rebuilds the extension and the unit tests with AddressSanitizer
# + UBSan and runs the unit tests, pg_regress and the isolation tests again on
# a fresh cluster with the sanitizer runtimes preloaded into the (uninstrumented)
# server; any sanitizer report fails the run. Then the normal build is
# reinstalled. PGCK_SANITIZE_ONLY=1 (make sanitize) runs just that stage.
set -u
. "$(dirname "$0")/lib.sh"
pgck_require_root "$@"
cd "$PGCK_ROOT"

VECTORS=${PGCK_VECTORS:-}
PASSED=0
FAILED=0
FAILURES=()
# what did not run, and why: printed when it happens and again in the summary
# (a check script reports one with a line "SKIPPED - <what>: <why>")
SKIPS=()

record() {  # record NAME STATUS
    if [ "$2" -eq 0 ]; then PASSED=$((PASSED + 1)); echo "ok - $1"
    else FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "not ok - $1"; fi
}

# Add a program's own "N passed, N failed" line to the totals.
record_counts() {  # record_counts NAME LOGFILE STATUS
    local line p f
    line=$(grep -E '^([A-Za-z_]+: )?[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^([A-Za-z_]+: )?([0-9]+) passed.*/\2/')
        f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
        PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
        if [ "$f" -gt 0 ] || [ "$3" -ne 0 ]; then
            FAILURES+=("$1"); [ "$f" -eq 0 ] && FAILED=$((FAILED + 1))
            echo "not ok - $1 ($line, exit $3)"
        else
            echo "ok - $1 ($line)"
        fi
    else
        record "$1 (no summary line)" 1
    fi
}

# PGCK_ONLY=REGEX runs only the steps whose name matches (for development:
# "regress", "isolation", "units", "checks/NAME", "tap/NAME", "fuzz",
# "sanitizers"); CI leaves it unset and runs everything.
want() { [ -z "${PGCK_ONLY:-}" ] || [[ $1 =~ $PGCK_ONLY ]]; }

# Every step runs under a time limit (seconds; PGCK_STEP_TIMEOUT scales them
# all): a step that hangs fails with a message naming it, never the whole run.
STEP_SCALE=${PGCK_STEP_TIMEOUT_SCALE:-1}
step_limit() { echo $(( $1 * STEP_SCALE )); }
# run_limited SECONDS LABEL CMD...: the command's status, or 124 after a
# message when it ran out of time (its whole process group is killed)
run_limited() {
    local secs=$1 label=$2 rc
    shift 2
    timeout --kill-after=15 "$secs" "$@"
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "TIMEOUT: $label did not finish within ${secs}s and was stopped" | tee -a "$PGCK_TMP/timeouts.log" >&2
        return 124
    fi
    return $rc
}

pgck_install_packages $PGCK_PACKAGES_BUILD $PGCK_PACKAGES_TEST

pgck_make_tmp
# build and test a copy in the temp dir, installed into a private PostgreSQL tree
pgck_stage || { echo "could not stage the source tree in $PGCK_TMP"; echo "0 passed, 1 failed"; exit 1; }
cd "$PGCK_ROOT"
[ -n "$VECTORS" ] || VECTORS=$PGCK_ROOT/test/vectors
export PGCK_VECTORS=$VECTORS
pgck_build_install || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

REGRESS=${PGCK_REGRESS:-$(sed -n "s/^REGRESS = //p" Makefile)}
PG_REGRESS=$(dirname "$("$PGCK_PG_CONFIG" --pgxs)")/../test/regress/pg_regress
PG_ISOLATION=$(dirname "$PG_REGRESS")/../isolation/pg_isolation_regress
ISO_TESTS=${PGCK_ISOLATION:-$(cd test/isolation/specs && ls *.spec | sed 's/\.spec$//')}

# run_regress LABEL DIR: pg_regress and the isolation tests against $PGHOST/$PGPORT
run_regress() {
    local label=$1 dir=$2 t
    mkdir -p "$dir/regress" "$dir/isolation" && chown -R postgres:postgres "$dir"
    run_limited "$(step_limit 600)" "${label}pg_regress" runuser -u postgres -- "$PG_REGRESS" --inputdir="$PGCK_ROOT" --outputdir="$dir/regress" \
        --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --dbname=pgck_regress $REGRESS \
        >"$dir/regress.log" 2>&1
    grep -E '^(test|ok|not ok) ' "$dir/regress.log" || true
    for t in $REGRESS; do
        grep -Eq "^test $t +\.\.\. ok|^ok +[0-9]+ +- +$t " "$dir/regress.log"
        record "${label}regress/$t" $?
    done
    [ -f "$dir/regress/regression.diffs" ] && head -150 "$dir/regress/regression.diffs"
    run_limited "$(step_limit 600)" "${label}isolation tests" runuser -u postgres -- "$PG_ISOLATION" --inputdir="$PGCK_ROOT/test/isolation" --outputdir="$dir/isolation" \
        --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" $ISO_TESTS >"$dir/isolation.log" 2>&1
    for t in $ISO_TESTS; do
        grep -Eq "^test $t +\.\.\. ok|^ok +[0-9]+ +- +$t " "$dir/isolation.log"
        record "${label}isolation/$t" $?
    done
    [ -f "$dir/isolation/regression.diffs" ] && head -80 "$dir/isolation/regression.diffs"
}

# run_units LABEL: every C unit test, counting its own "N passed, N failed"
run_units() {
    local t bin name rc log
    for t in test/unit/test_*.c; do
        bin=${t%.c}
        name=$(basename "$bin")
        [ -x "$bin" ] || { record "$1$name (not built)" 1; continue; }
        log="$PGCK_TMP/${1//\//_}$name.log"
        run_limited "$(step_limit 300)" "$1$name" "$bin" "$VECTORS" >"$log" 2>&1
        rc=$?
        record_counts "$1$name" "$log" $rc
        [ $rc -ne 0 ] && grep -E '^not ok|^#|ERROR|runtime error' "$log" | head -20
    done
    # aead.c calls the GCM provider's functions directly when it can and falls
    # back to EVP otherwise: the Wycheproof vectors run on the fallback too.
    # HMAC-SHA-256 has a third path, the SHA-256 provider's functions (what a
    # FIPS provider gets): the vectors, and the locked pages of its keyed
    # contexts, are checked on it with PGCK_HMAC_DISPATCH.
    if [ -x test/unit/test_wycheproof ]; then
        log="$PGCK_TMP/${1//\//_}test_wycheproof_evp.log"
        PGCK_AEAD_EVP=1 run_limited "$(step_limit 300)" "$1test_wycheproof (EVP path)" test/unit/test_wycheproof "$VECTORS" >"$log" 2>&1
        rc=$?
        record_counts "$1test_wycheproof (EVP path, PGCK_AEAD_EVP=1)" "$log" $rc
        log="$PGCK_TMP/${1//\//_}test_wycheproof_dispatch.log"
        PGCK_HMAC_DISPATCH=1 run_limited "$(step_limit 300)" "$1test_wycheproof (HMAC provider path)" test/unit/test_wycheproof "$VECTORS" >"$log" 2>&1
        rc=$?
        record_counts "$1test_wycheproof (HMAC provider path, PGCK_HMAC_DISPATCH=1)" "$log" $rc
    fi
    if [ -x test/unit/test_keypages ]; then
        log="$PGCK_TMP/${1//\//_}test_keypages_dispatch.log"
        PGCK_HMAC_DISPATCH=1 run_limited "$(step_limit 300)" "$1test_keypages (HMAC provider path)" test/unit/test_keypages "$VECTORS" >"$log" 2>&1
        rc=$?
        record_counts "$1test_keypages (HMAC provider path, PGCK_HMAC_DISPATCH=1)" "$log" $rc
        [ $rc -ne 0 ] && grep -E '^not ok|^#|ERROR|runtime error' "$log" | head -20
    fi
}

# The sanitizer stage (see the header).
sanitizer_stage() {
    local asan_dir="$PGCK_TMP/asan_reports" sanflags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    pgck_log "sanitizers: extension and unit tests rebuilt with AddressSanitizer + UBSan"
    if [ -n "$PGCK_PGDATA" ] && [ -f "$PGCK_PGDATA/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" -m fast -w stop >/dev/null
    fi
    rm -rf "$PGCK_TMP/data"
    mkdir -p "$asan_dir" && chown postgres:postgres "$asan_dir"
    make -s clean >/dev/null 2>&1
    # In the server, PostgreSQL's own siglongjmp (ereport) unwinds our frames
    # without ASan's interceptor, leaving stale stack poison: the extension is
    # built without stack instrumentation (heap, globals and UBSan stay on).
    # The unit tests and fuzzers below keep full ASan, stack included.
    if ! make -s -j2 PGCK_CFLAGS="$sanflags --param asan-stack=0" PGCK_LDFLAGS="-fsanitize=address,undefined" >/dev/null ||
       ! make -s install DESTDIR="$PGCK_INST" >/dev/null ||
       ! make -s -j2 unit PGCK_CFLAGS="$sanflags" PGCK_LDFLAGS="-fsanitize=address,undefined" >/dev/null; then
        record "sanitizer build" 1
        return
    fi
    # positive control: every unit test about to run is the instrumented build
    # (a "make clean" that kept the normal binaries once made this stage run
    # those, unnoticed).  ldd's output is read whole: "ldd | grep -q" under
    # pipefail fails at random when grep stops reading and ldd gets SIGPIPE.
    local t libs plain=''
    for t in test/unit/test_*.c; do
        libs=$(ldd "${t%.c}" 2>/dev/null)
        [[ $libs == *libasan.so* && $libs == *libubsan.so* ]] || plain="$plain $(basename "${t%.c}")"
    done
    [ -z "$plain" ] || echo "not linked with the ASan and UBSan runtimes:$plain"
    record "asan/unit tests are the instrumented build (libasan and libubsan linked)" $([ -z "$plain" ]; echo $?)
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_units "asan/"
    # The server is not instrumented, and preloading the ASan runtime into
    # Debian's postgres deadlocks in glibc's bindtextdomain at startup; so the
    # runtimes come in with the extension (verify_asan_link_order=0).  UBSan
    # and ASan's stack and global checks cover all of the extension's code;
    # heap checks cover what it allocates with malloc, not palloc'd memory.
    PGCK_SERVER_ENV="ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:abort_on_error=1:log_path=$asan_dir/asan UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$asan_dir/ubsan"
    export PGCK_SERVER_ENV
    if pgck_start_cluster; then
        # positive control: the server (which preloads the extension) maps it and the ASan runtime
        local ppid
        ppid=$(head -1 "$PGCK_PGDATA/postmaster.pid")
        grep -q libasan "/proc/$ppid/maps" && grep -q pgcrypt_kms "/proc/$ppid/maps"
        record "asan/the server runs the instrumented extension with the ASan runtime (postmaster $ppid)" $?
        run_regress "asan/" "$PGCK_TMP/asan_regress"
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" -m fast -w stop >/dev/null
    else
        record "asan/cluster start" 1
    fi
    unset PGCK_SERVER_ENV
    if ls "$asan_dir"/* >/dev/null 2>&1; then
        record "no AddressSanitizer/UBSan report from the server" 1
        head -60 "$asan_dir"/*
    else
        record "no AddressSanitizer/UBSan report from the server" 0
    fi
    grep -q "ERROR: AddressSanitizer\|runtime error" "$PGCK_TMP/server.log" && record "no sanitizer report in the server log" 1
    # leave the normal build installed
    make -s clean >/dev/null 2>&1
    make -s -j2 >/dev/null && make -s install DESTDIR="$PGCK_INST" >/dev/null
    record "normal build reinstalled after the sanitizer stage" $?
}

if [ -n "${PGCK_SANITIZE_ONLY:-}" ]; then
    pgck_emulator_env
    pgck_start_emulator || record "KMS emulator start" 1
    export PGCK_EXTRA_CONF="shared_preload_libraries = 'pg_stat_statements, pgcrypt_kms'"
    sanitizer_stage
    echo
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit
fi

# ------------------------------------------------------------- C unit tests
if want units; then
    pgck_log "C unit tests (pure modules)"
    make -s -j2 unit || record "unit tests build" 1
    run_units ""
fi

# ------------------------------------------------------------- services
pgck_log "starting the KMS emulator and a throwaway cluster"
pgck_emulator_env
pgck_start_emulator || { record "KMS emulator start" 1; }
export PGCK_EXTRA_CONF="shared_preload_libraries = 'pg_stat_statements, pgcrypt_kms'"
pgck_start_cluster || { record "cluster start" 1; cat "$PGCK_TMP/server.log"; echo "$PASSED passed, $FAILED failed"; exit 1; }
echo "cluster on port $PGPORT (socket $PGHOST), emulator on ${PGCK_EMULATOR_PORT:-none}"

# ------------------------------------------------------------- pg_regress, isolation
if want regress || want isolation; then
    pgck_log "pg_regress and isolation tests"
    run_regress "" "$PGCK_TMP"
fi

# ------------------------------------------------------------- check scripts
pgck_log "check scripts"
for c in test/checks/*.sh; do
    [ -f "$c" ] || continue
    name=$(basename "$c" .sh)
    want "checks/$name" || continue
    run_limited "$(step_limit 900)" "checks/$name" bash "$c" >"$PGCK_TMP/check_$name.log" 2>&1
    rc=$?
    record "checks/$name" $rc
    [ $rc -ne 0 ] && tail -30 "$PGCK_TMP/check_$name.log"
    while IFS= read -r line; do
        echo "$line"; SKIPS+=("checks/$name: ${line#SKIPPED - }")
    done < <(grep -E '^SKIPPED - ' "$PGCK_TMP/check_$name.log")
done

# ------------------------------------------------------------- TAP
pgck_log "TAP tests (PostgreSQL::Test::Cluster)"
PERLLIB=$(dirname "$("$PGCK_PG_CONFIG" --pgxs)")/../test/perl
mkdir -p "$PGCK_TMP/tap" && chown postgres:postgres "$PGCK_TMP/tap"
# run_tap STEP FILE [VAR=VALUE...]: one TAP script, counting its assertions
run_tap() {
    local step=$1 t=$2 name okc nokc skc rc
    shift 2
    name=${step#tap/}; name=${name//\//_}
    mkdir -p "$PGCK_TMP/tap/$name" && chown postgres:postgres "$PGCK_TMP/tap/$name"
    # TESTDIR places tmp_check on 15; 17 and later read TESTDATADIR and TESTLOGDIR
    run_limited "$(step_limit 900)" "$step" runuser -u postgres -- env PATH="$PGBIN:$PATH" PERL5LIB="$PERLLIB" TESTDIR="$PGCK_TMP/tap/$name" \
        TESTDATADIR="$PGCK_TMP/tap/$name/tmp_check" TESTLOGDIR="$PGCK_TMP/tap/$name/tmp_check/log" \
        PG_REGRESS="$PG_REGRESS" PGCK_ROOT="$PGCK_ROOT" PGCK_TMP="$PGCK_TMP" PGCK_INST="$PGCK_INST" "$@" \
        prove -v "$t" >"$PGCK_TMP/tap_$name.log" 2>&1
    rc=$?
    okc=$(grep -cE '^ok [0-9]+' "$PGCK_TMP/tap_$name.log")
    nokc=$(grep -cE '^not ok [0-9]+' "$PGCK_TMP/tap_$name.log")
    # a skipped assertion counts as neither passed nor failed, and says why
    skc=$(grep -ciE '^ok [0-9]+ # skip' "$PGCK_TMP/tap_$name.log")
    okc=$((okc - skc))
    if [ "$skc" -gt 0 ]; then
        echo "SKIPPED in $step: $skc assertion(s):"; grep -iE '^ok [0-9]+ # skip' "$PGCK_TMP/tap_$name.log" | sed 's/^/    /'
        SKIPS+=("$step: $skc assertion(s): $(grep -iE '^ok [0-9]+ # skip' "$PGCK_TMP/tap_$name.log" | sed -E 's/^ok [0-9]+ # [Ss][Kk][Ii][Pp] *//' | sort -u | head -3 | paste -sd ';')")
    fi
    if [ $rc -eq 0 ] && [ "$okc" -gt 0 ]; then
        PASSED=$((PASSED + okc)); echo "ok - $step ($okc assertions$([ "$skc" -gt 0 ] && echo ", $skc skipped"))"
    else
        [ "$nokc" -eq 0 ] && nokc=1
        PASSED=$((PASSED + okc)); FAILED=$((FAILED + nokc)); FAILURES+=("$step")
        echo "not ok - $step ($okc ok, $nokc not ok, exit $rc)"
        grep -E '^not ok|^#' "$PGCK_TMP/tap_$name.log" | head -30; tail -15 "$PGCK_TMP/tap_$name.log"
    fi
}
# Citus (issue 17): test/citus_build.sh builds it once (cached under /opt/pgck) from
# ../shared/third_party; its files are staged into the private installation.  Without its
# source (and no cached build) the Citus test is skipped, visibly: a SKIPPED line now and in
# the summary.
CITUS_SKIP=""
if want tap/030_citus && [ -f test/t/030_citus.pl ]; then
    pgck_log "Citus for the distributed test (test/citus_build.sh)"
    citus_out=$(bash test/citus_build.sh "$PGCK_PG_CONFIG" 2>"$PGCK_TMP/citus_build.log")
    rc=$?
    citus_stage=$(printf '%s\n' "$citus_out" | tail -n 1)
    if [ $rc -eq 2 ]; then
        CITUS_SKIP=${citus_stage#skip: }
    elif [ $rc -ne 0 ] || [ ! -d "$citus_stage" ] || ! cp -a "$citus_stage/." "$PGCK_INST/"; then
        CITUS_SKIP="the Citus build failed (see $PGCK_TMP/citus_build.log)"
        record "Citus build (test/citus_build.sh)" 1
        tail -20 "$PGCK_TMP/citus_build.log"
    fi
fi
for t in test/t/*.pl; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .pl)
    want "tap/$name" || continue
    if [ "$name" = 030_citus ] && [ -n "$CITUS_SKIP" ]; then
        echo "SKIPPED - tap/$name: skip: $CITUS_SKIP"
        SKIPS+=("tap/$name ($CITUS_SKIP)")
        continue
    fi
    run_tap "tap/$name" "$t"
done

# ------------------------------------------------------------- pg_upgrade (two majors)
# PGCK_UPGRADE_FROM_PG_CONFIG names older majors' pg_configs (space-separated;
# test/matrix.sh sets it): each installation is staged beside this one,
# pgcrypt_kms is built for it too, and test/upgrade/*.pl pg_upgrade from it to
# this major.
if [ -z "${PGCK_UPGRADE_FROM_PG_CONFIG:-}" ]; then
    for t in test/upgrade/*.pl; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .pl)
        want "upgrade/$name" || continue
        why="no older major to upgrade from (PGCK_UPGRADE_FROM_PG_CONFIG is unset; test/matrix.sh sets it for 17 and 18)"
        echo "SKIPPED - upgrade/$name: $why"
        SKIPS+=("upgrade/$name ($why)")
    done
fi
for from_pg_config in ${PGCK_UPGRADE_FROM_PG_CONFIG:-}; do
    from=$("$from_pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    for t in test/upgrade/*.pl; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .pl)
        want "upgrade/$name" || continue
        pgck_log "pg_upgrade test $name: from $("$from_pg_config" --version) to $("$PGCK_PG_CONFIG" --version)"
        if pgck_build_install_other "$from_pg_config" >"$PGCK_TMP/upgrade_build_$from.log" 2>&1; then
            run_tap "upgrade/$name/from$from" "$t" PGCK_OLD_INSTALL="$PGCK_INST$(dirname "$("$from_pg_config" --bindir)")"
        else
            record "upgrade/$name/from$from: build pgcrypt_kms for $("$from_pg_config" --version)" 1
            tail -20 "$PGCK_TMP/upgrade_build_$from.log"
        fi
    done
done

# ------------------------------------------------------------- fuzz (bounded)
if [ -f test/fuzz/run.sh ] && want fuzz; then
    pgck_log "fuzzing the pure parsers briefly"
    run_limited "$(step_limit 600)" "fuzz" bash test/fuzz/run.sh "${PGCK_FUZZ_SECONDS:-15}" >"$PGCK_TMP/fuzz.log" 2>&1
    rc=$?
    record "fuzz (${PGCK_FUZZ_SECONDS:-15}s per target)" $rc
    [ $rc -ne 0 ] && tail -30 "$PGCK_TMP/fuzz.log"
fi

# ------------------------------------------------------------- sanitizers
want sanitizers && sanitizer_stage

# ------------------------------------------------------------- mutation (crypto-critical subset)
# (issue 19) The AEAD, nonce, AAD, key-check and invalidation mutants of
# test/mutation/mutants/, each applied to its own scratch copy of this tree and
# run against the suite selection that kills it; a survivor fails the run.  The
# steps that failed so far in this run are its baseline: they never count as
# kills.  Whole catalogue: bash test/mutation/run.sh
if want mutation && [ -z "${PGCK_MUTATION_NESTED:-}" ]; then
    pgck_log "mutation (crypto-critical subset)"
    printf '%s\n' "${FAILURES[@]}" | sed -E 's/ \((no summary line|not built)\)$//' >"$PGCK_TMP/mutation_baseline"
    run_limited "$(step_limit 1800)" "mutation" bash test/mutation/run.sh --tag crypto --quick \
        --baseline-from "$PGCK_TMP/mutation_baseline" >"$PGCK_TMP/mutation.log" 2>&1
    rc=$?
    record_counts "mutation (crypto-critical subset)" "$PGCK_TMP/mutation.log" $rc
    grep -E '^== mutation score' "$PGCK_TMP/mutation.log"
    [ $rc -ne 0 ] && grep -E '^(SURVIVED|STALE|STILLBORN|ERROR) ' "$PGCK_TMP/mutation.log" | head -30
    # the whole catalogue still applies to this tree and compiles: a mutant
    # whose code moved would otherwise never be tried again, unnoticed
    run_limited "$(step_limit 900)" "mutation catalogue (dry run)" bash test/mutation/run.sh --dry-run \
        >"$PGCK_TMP/mutation_dry.log" 2>&1
    rc=$?
    bad=$(grep -cE '^ *(STALE|STILLBORN|ERROR) ' "$PGCK_TMP/mutation_dry.log")
    [ $rc -eq 0 ] && [ "$bad" -eq 0 ] && [ "$(grep -cE '^ *APPLIES ' "$PGCK_TMP/mutation_dry.log")" -gt 0 ]
    st=$?   # (before the message's command substitutions overwrite $?)
    n_all=$(ls test/mutation/mutants | grep -cE '\.(diff|rule)$')
    n_eq=$(grep -l '^Equivalent:' test/mutation/mutants/*.diff test/mutation/mutants/*.rule 2>/dev/null | wc -l)
    record "mutation catalogue: every one of the $((n_all - n_eq)) mutants not declared equivalent applies to this tree and compiles" $st
    [ "$bad" -ne 0 ] && grep -E '^ *(STALE|STILLBORN|ERROR) ' "$PGCK_TMP/mutation_dry.log" | head -30
fi
# ------------------------------------------------------------- end of mutation

# ------------------------------------------------------------- no secrets in logs
pgck_log "server log hygiene"
# PostgreSQL itself dumps the postmaster's environment at DEBUG3 (the README
# warns about it, and 021_aws_credentials provokes it as a positive control):
# those lines are set aside; any other line with the secret fails.
# On 15 each variable is a DEBUG line of its own; from 16 on it is one message,
# "initial environment dump:", whose variables follow on tab-indented lines.
leaks=$(for f in "$PGCK_TMP/server.log" "$PGCK_TMP"/tap/*/tmp_check/log/*.log; do
            [ -f "$f" ] && awk -v s="$AWS_SECRET_ACCESS_KEY" '
                /DEBUG:  (00000: )?initial environment dump:$/ { dump = 1; next }
                dump && /^\t[A-Za-z_][A-Za-z0-9_]*=/ { next }
                { dump = 0 }
                index($0, s) { print }' "$f"
        done | grep -avE 'DEBUG:  (00000: )?[[:space:]]+AWS_[A-Z_]+=' | head -5)
if [ -n "$leaks" ]; then
    record "no secret access key in any server log" 1
    echo "$leaks" | cut -c1-200
else
    record "no secret access key in any server log (outside PostgreSQL's own DEBUG3 environment dump)" 0
fi
# The extension's LOG reports hide the statement (errhidestmt, see
# src/pgck_errcodes.h): a statement's text, and the literal plaintexts it may
# hold, never follows one.  A report is written whole (one write), so its
# DETAIL/HINT/CONTEXT/LOCATION/STATEMENT lines and unprefixed continuation
# lines follow its first line; any other report's line ends it.  The logs:
# the suite's cluster, the TAP clusters and the clusters checks start
# themselves ($PGCK_TMP/<check>/server.log).
stmts=$(for f in "$PGCK_TMP/server.log" "$PGCK_TMP"/*/server.log "$PGCK_TMP"/tap/*/tmp_check/log/*.log; do
            [ -f "$f" ] && awk -v f="$f" '
                / (DEBUG[1-5]|INFO|NOTICE|WARNING|ERROR|LOG|FATAL|PANIC):  / {
                    ours = ($0 ~ / LOG:  ([0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z][0-9A-Z]: )?pgcrypt_kms: /); first = $0; next }
                ours && / STATEMENT:  / { print f ": " first; ours = 0; next }
                ours && / (DETAIL|HINT|CONTEXT|LOCATION|QUERY):  / { next }
                ours && !/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { next }
                { ours = 0 }' "$f"
        done | head -5)
if [ -n "$stmts" ]; then
    record "no statement text after the extension's LOG reports in any server log" 1
    echo "$stmts" | cut -c1-250
else
    record "no statement text after the extension's LOG reports in any server log" 0
fi

if [ ${#FAILURES[@]} -gt 0 ]; then
    echo; echo "failed: ${FAILURES[*]}"
    PGCK_KEEP_TMP=1; echo "logs kept in $PGCK_TMP"
fi
if [ ${#SKIPS[@]} -gt 0 ]; then
    echo; echo "SKIPPED (${#SKIPS[@]}, counted neither passed nor failed):"; printf '    %s\n' "${SKIPS[@]}"
fi
echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
