#!/usr/bin/env bash
# test/mutation/run.sh: mutation testing of pgcrypt_kms (issue 19).
#
#   bash test/mutation/run.sh [options] [MUTANT...]
#
# Each mutant of test/mutation/mutants/ (NAME.diff: a header and a unified
# diff; NAME.rule: a header and "Rule: FILE[|FILE...] PERL" lines applied with
# perl -0777 to the first listed file they change) is applied to a scratch
# copy of this tree (no .git).  The copy must take it (else the mutant is
# STALE) and the changed C files must still compile (else STILLBORN, not
# killed).  Then the copy's own test/run.sh runs, which stages yet another
# copy with a private PostgreSQL installation, so runs never disturb others:
#
#   1. the mutant's declared selection (its Only: PGCK_ONLY regex and
#      Regress: PGCK_REGRESS list), the fastest layer that kills it;
#   2. if it survives and that selection is narrower: the fast layers
#      (PGCK_ONLY='^(units|regress|isolation)$'), and the declared selection
#      is reported as a MISS;
#   3. if it still survives: its Slow: steps if it names some, else the full
#      suite (unless --no-full).
#
# A mutant is killed by a step that fails under it and passed on the unmutated
# tree (baseline runs of each selection used, once each).  A run that exceeds
# its time limit counts as killed, "by timeout", and says so.  Mutants with an
# Equivalent: line are not run and not in the score's denominator.
#
# Options:
#   --tag TAG       only mutants whose Tags: contain TAG (crypto: the subset CI runs)
#   --module MOD    only mutants of module MOD
#   --quick         only the declared selection (CI); a survivor fails
#   --no-full       never run the full suite (survivors without Slow: stay survivors)
#   --no-baseline   trust the unmutated tree (do not run the baselines)
#   --baseline-from FILE  the unmutated tree's failing steps, one per line,
#                   for every selection, instead of baseline runs (test/run.sh
#                   passes the steps that failed before its mutation step)
#   --source REV    mutate git revision REV of this clone (git archive; the
#                   catalogue and this script still come from the work tree)
#                   instead of the work tree as it is
#   --dry-run       only apply and compile each mutant (catalogue upkeep)
#   --list          print the catalogue and exit
# Environment: PGCK_MUTATION_TIMEOUT (seconds per selection run, default 900;
# the full suite gets three times as much), PGCK_MUTATION_KEEP=1 keeps the
# scratch directory and logs.
#
# Exit 0 only if every non-equivalent mutant was killed, none is stale or
# stillborn, and (outside --quick) every declared selection killed its mutant.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CATALOGUE=$HERE/mutants
FAST='^(units|regress|isolation)$'
LIMIT=${PGCK_MUTATION_TIMEOUT:-900}
PG_CONFIG=${PGCK_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

basefrom='' dry=0 source='' tag='' module='' quick=0 nofull=0 nobaseline=0 list=0 names=()
while [ $# -gt 0 ]; do
    case $1 in
        --tag) tag=$2; shift 2 ;;
        --module) module=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --no-full) nofull=1; shift ;;
        --no-baseline) nobaseline=1; shift ;;
        --baseline-from) basefrom=$2; shift 2 ;;
        --list) list=1; shift ;;
        --dry-run) dry=1; shift ;;
        --source) source=$2; shift 2 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) names+=("$1"); shift ;;
    esac
done

if [ "$(id -u)" -ne 0 ] && [ $list -eq 0 ]; then
    echo "run this as root (the suite it runs needs root)" >&2
    exit 2
fi

field() {  # field FILE NAME: the header field's value ('' if absent)
    sed -n "/^--- a\//q; s/^$2: *//p" "$1" | head -n 1
}

# ------------------------------------------------------------- the selection
MUTANTS=()
for f in "$CATALOGUE"/*.diff "$CATALOGUE"/*.rule; do
    [ -f "$f" ] || continue
    n=$(field "$f" Mutant)
    if [ ${#names[@]} -gt 0 ]; then
        printf '%s\n' "${names[@]}" | grep -qxF "$n" || continue
    fi
    [ -z "$tag" ] || [[ " $(field "$f" Tags) " == *" $tag "* ]] || continue
    [ -z "$module" ] || [ "$(field "$f" Module)" = "$module" ] || continue
    MUTANTS+=("$f")
done
[ ${#MUTANTS[@]} -gt 0 ] || { echo "no mutant selected" >&2; exit 2; }

if [ $list -eq 1 ]; then
    for f in "${MUTANTS[@]}"; do
        printf '%-34s %-12s %-7s %s\n' "$(field "$f" Mutant)" "$(field "$f" Module)" "$(field "$f" Tags)" "$(field "$f" Description)"
    done
    exit 0
fi

WORK=$(mktemp -d /tmp/pgck_mutation.XXXXXX)
chmod 755 "$WORK"
SUITE_PID=''
stop_suite() {  # the running suite: its run.sh and the step it waits for
    local child
    [ -n "$SUITE_PID" ] || return 0
    child=$(pgrep -P "$SUITE_PID")
    kill -TERM "$SUITE_PID" 2>/dev/null
    [ -n "$child" ] && pkill -TERM -P "$child" 2>/dev/null
    wait "$SUITE_PID" 2>/dev/null
}
cleanup() {
    stop_suite
    [ -n "${PGCK_MUTATION_KEEP:-}" ] && { echo "scratch kept in $WORK"; return; }
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A pristine copy; each mutant gets its own copy of it.
mkdir -p "$WORK/pristine"
if [ -n "$source" ]; then
    git -C "$ROOT" archive "$source" | tar -C "$WORK/pristine" -xf - ||
        { echo "could not export $source" >&2; exit 2; }
    rm -rf "$WORK/pristine/test/mutation" && cp -a "$HERE" "$WORK/pristine/test/mutation"
else tar -C "$ROOT" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude='*.tmp' \
    --exclude=./test/results --exclude=./bench/results --exclude=./test/fuzz/bin -cf - . |
    tar -C "$WORK/pristine" -xf - || { echo "could not copy $ROOT" >&2; exit 2; }
fi

# run_suite TREE LOG ONLY REGRESS SECONDS: the tree's test/run.sh with a
# clean environment (nothing of an enclosing suite run leaks in); its status,
# 124 on timeout.  A postmaster left behind by a killed run is stopped.
run_suite() {
    local tree=$1 log=$2 only=$3 regress=$4 secs=$5 rc tmp
    env -u PGCK_TMP -u PGCK_ROOT -u PGCK_SOURCE -u PGCK_INST -u PGCK_VECTORS -u PGHOST -u PGPORT \
        -u PGBIN -u PGCK_PGDATA -u PGCK_EMULATOR_PORT -u PGCK_EMULATOR_URL -u PGCK_EXTRA_CONF \
        -u PGCK_SERVER_ENV -u PGCK_KEEP_TMP -u PGCK_SANITIZE_ONLY -u PGUSER -u PGDATABASE \
        -u PGCK_ONLY -u PGCK_REGRESS PGCK_MUTATION_NESTED=1 \
        ${only:+PGCK_ONLY="$only"} ${regress:+PGCK_REGRESS="$regress"} \
        timeout --kill-after=30 "$secs" bash "$tree/test/run.sh" >"$log" 2>&1 &
    SUITE_PID=$!
    wait $SUITE_PID
    rc=$?
    SUITE_PID=''
    if grep -qE '^(grep: )?/tmp/pgcrypt_kms\.[A-Za-z0-9]{6}/[^ ]*: No such file or directory' "$log" && [ -z "${6:-}" ]; then
        echo "   (the run's temp dir vanished under it: running it again)" >&2
        mv "$log" "$log.vanished"
        run_suite "$@" again
        return
    fi
    # a failed run keeps its temp dir (120 MB); a killed one may leave its postmaster
    for tmp in $(grep -oE '/tmp/pgcrypt_kms\.[A-Za-z0-9]{6}' "$log" | sort -u); do
        [ -d "$tmp" ] || continue
        if [ -f "$tmp/data/postmaster.pid" ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; }; then
            runuser -u postgres -- "$tmp/inst$($PG_CONFIG --bindir)/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1
        fi
        [ -n "${PGCK_MUTATION_KEEP:-}" ] || rm -rf "$tmp"
    done
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && return 124
    return $rc
}

# failing steps of a run's log, one per line
failed_steps() {
    sed -n 's/^not ok - //p' "$1" | sed -E 's/ \((no summary line|[0-9]+ (passed|ok)).*$//'
}

# The unmutated tree's failing steps for a selection (run once per selection),
# in the file named by BASEFILE.
declare -A BASE_DONE=()
BASEFILE=''
baseline_failures() {  # baseline_failures ONLY REGRESS SECONDS
    local key="$1|$2" f
    f="$WORK/baseline.$(echo "$key" | md5sum | cut -c1-12)"
    BASEFILE=$f
    if [ -z "${BASE_DONE[$key]:-}" ]; then
        : >"$f"
        if [ -n "$basefrom" ]; then
            cp "$basefrom" "$f"
        elif [ $nobaseline -eq 0 ]; then
            echo "   baseline: PGCK_ONLY='${1:-<all>}'${2:+ PGCK_REGRESS='$2'} on the unmutated tree" >&2
            run_suite "$WORK/pristine" "$f.log" "$1" "$2" "$3"
            grep -q '^build failed' "$f.log" && { echo "the unmutated tree does not build (see $f.log)" >&2; exit 2; }
            failed_steps "$f.log" >"$f"
            if [ -s "$f" ]; then
                # failures of the unmutated tree are excluded; a second run keeps
                # only those that repeat, so one flaky run excludes nothing
                run_suite "$WORK/pristine" "$f.2.log" "$1" "$2" "$3"
                failed_steps "$f.2.log" | grep -xF -f - "$f" >"$f.both"
                mv "$f.both" "$f"
                cat "$f.log" "$f.2.log" >"$f.all.log"
            else
                cp "$f.log" "$f.all.log"
            fi
            [ -s "$f" ] && { echo "   baseline failures (their own failing assertions never count as kills):" >&2; sed 's/^/     /' "$f" >&2; }
        fi
        BASE_DONE[$key]=1
    fi
}

# TAP assertions that failed in LOG and not in the baseline: "not ok N - text"
# and "#   Failed test 'text'" lines (the suite shows the first 30 of both)
assertions() {
    sed -n -e 's/^not ok [0-9]* - //p' -e "s/^#   Failed test '\(.*\)'\$/\1/p" "$1" 2>/dev/null |
        sed 's/^#   Failed test //' | sort -u
}
new_assertions() {  # new_assertions LOG BASELOG
    comm -23 <(assertions "$1") <(assertions "$2")
}

# apply MUTANT TREE: applies it; prints the files it changed; 1 if it does not apply
apply() {
    local m=$1 tree=$2 line files spec expr f done
    if [[ $m == *.diff ]]; then
        patch -s -p1 -d "$tree" --no-backup-if-mismatch -r - <"$m" >"$tree/.patch.log" 2>&1 || return 1
        sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$m"
        return 0
    fi
    while IFS= read -r line; do
        spec=${line%% *} expr=${line#* } done=0
        for f in ${spec//|/ }; do
            [ -f "$tree/$f" ] || continue
            cp "$tree/$f" "$tree/.orig"
            perl -0777 -i -pe "$expr" "$tree/$f" || return 1
            if ! cmp -s "$tree/.orig" "$tree/$f"; then done=1; echo "$f"; break; fi
        done
        rm -f "$tree/.orig"
        [ $done -eq 1 ] || return 1
    done < <(sed -n 's/^Rule: //p' "$m")
    return 0
}

T=$'\x1f'
RESULTS=()   # outcome, name, module, stage, steps, seconds (separated by \x1f: read splits runs of tabs)
MISSES=()
note() { RESULTS+=("$1$T$2$T$3$T$4$T$5$T$6"); printf '%-10s %-34s %s\n' "$1" "$2" "${4:+[$4] }$5 (${6}s)"; }

# One stage; sets STEPS to the killing steps.  Status 0 = killed,
# 1 = survived, 2 = stillborn (the suite's build failed), 3 = the suite
# failed without naming a step (an error of the harness, never a kill).
STEPS=''
try_stage() {  # try_stage TREE LOG ONLY REGRESS SECONDS
    local rc
    baseline_failures "$3" "$4" "$5"
    run_suite "$1" "$2" "$3" "$4" "$5"
    rc=$?
    STEPS=''
    if [ $rc -eq 124 ]; then STEPS="timeout after ${5}s (the suite hung; killed by timeout)"; return 0; fi
    grep -qE '^build failed|^not ok - (unit tests build|sanitizer build)' "$2" && return 2
    STEPS=$(failed_steps "$2" | grep -vxF -f "$BASEFILE" | paste -sd ' ' -)
    # a step that fails on the unmutated tree too kills by assertions of its own
    if [ -z "$STEPS" ] && [ -s "$BASEFILE" ]; then
        STEPS=$(new_assertions "$2" "$BASEFILE.all.log" | head -3 | sed 's/^/"/; s/$/"/' | paste -sd ' ' -)
        [ -n "$STEPS" ] && STEPS="new failing assertions in $(failed_steps "$2" | grep -xF -f "$BASEFILE" | paste -sd ' ' -): $STEPS"
    fi
    if [ -n "$STEPS" ] && grep -q '^TIMEOUT: ' "$2"; then
        STEPS="$STEPS (step time limit: $(sed -n 's/^TIMEOUT: \(.*\) did not finish.*/\1/p' "$2" | paste -sd ' ' -))"
    fi
    [ -n "$STEPS" ] && return 0
    if [ $rc -ne 0 ] && ! grep -q '^not ok - ' "$2"; then
        STEPS="the suite exited $rc without a failing step (see $2): $(tail -n 2 "$2" | paste -sd ' ' -)"; return 3
    fi
    return 1
}

echo "mutation testing: ${#MUTANTS[@]} mutants, scratch in $WORK"
for m in "${MUTANTS[@]}"; do
    name=$(field "$m" Mutant) mod=$(field "$m" Module)
    only=$(field "$m" Only) regress=$(field "$m" Regress) slow=$(field "$m" Slow)
    equiv=$(field "$m" Equivalent)
    [ -n "$only" ] || only=$FAST
    if [ -n "$equiv" ]; then note EQUIVALENT "$name" "$mod" "" "$equiv" 0; continue; fi
    start=$SECONDS
    tree="$WORK/m"
    rm -rf "$tree" && cp -a "$WORK/pristine" "$tree"
    if ! changed=$(apply "$m" "$tree"); then
        note STALE "$name" "$mod" "" "does not apply to this tree: regenerate it (test/mutation/new.sh)" $((SECONDS - start))
        continue
    fi
    bad=''
    for f in $changed; do
        [[ $f == src/*.c ]] || continue
        make -s -C "$tree" PG_CONFIG=$PG_CONFIG "${f%.c}.o" >"$tree/.compile.log" 2>&1 || bad="$bad $f"
    done
    if [ -n "$bad" ]; then
        note STILLBORN "$name" "$mod" "" "does not compile:$bad: $(grep -m1 'error' "$tree/.compile.log")" $((SECONDS - start))
        continue
    fi
    if [ $dry -eq 1 ]; then note APPLIES "$name" "$mod" "" "applies and compiles" $((SECONDS - start)); continue; fi
    (cd "$tree" && make -s clean >/dev/null 2>&1)
    chmod -R a+rX "$tree"

    stages=("selection${T}$only${T}$regress${T}$LIMIT")
    if [ $quick -eq 0 ]; then
        [ "$only" = "$FAST" ] && [ -z "$regress" ] || stages+=("fast${T}$FAST${T}${T}$LIMIT")
        if [ -n "$slow" ]; then stages+=("slow${T}$slow${T}${T}$LIMIT")
        elif [ $nofull -eq 0 ]; then stages+=("full${T}${T}${T}$((LIMIT * 3))"); fi
    fi
    outcome=SURVIVED steps='' where='' ran=''
    for s in "${stages[@]}"; do
        IFS=$T read -r sname sonly sregress ssecs <<<"$s"
        # a stage that selects what an earlier one ran is not run again
        [[ $ran == *"<$sonly|$sregress>"* ]] && continue
        ran="$ran<$sonly|$sregress>"
        try_stage "$tree" "$WORK/$name.$sname.log" "$sonly" "$sregress" "$ssecs"
        rc=$?
        steps=$STEPS where=$sname
        if [ $rc -eq 0 ]; then outcome=KILLED; break; fi
        if [ $rc -eq 2 ]; then
            outcome=STILLBORN
            steps="the suite's build failed: $(grep -m1 -E 'error' "$WORK/$name.$sname.log")"
            break
        fi
        if [ $rc -eq 3 ]; then outcome=ERROR; break; fi
    done
    if [ $outcome = KILLED ] && [ "$where" != selection ]; then
        MISSES+=("$name: declared selection PGCK_ONLY='$only'${regress:+ PGCK_REGRESS='$regress'} let it survive; killed at stage $where by $steps")
    fi
    [ $outcome = SURVIVED ] && steps="survived: $(printf '%s ' "${stages[@]%%$T*}")"
    note $outcome "$name" "$mod" "$where" "$steps" $((SECONDS - start))
    rm -rf "$tree"
done

# ------------------------------------------------------------- summary
killed=0 survived=0 equivalent=0 broken=0
for r in "${RESULTS[@]}"; do
    case ${r%%$T*} in
        KILLED) killed=$((killed + 1)) ;;
        SURVIVED) survived=$((survived + 1)) ;;
        EQUIVALENT) equivalent=$((equivalent + 1)) ;;
        APPLIES) ;;
        *) broken=$((broken + 1)) ;;
    esac
done
denom=$((killed + survived))
echo
echo "== mutation score: $killed/$denom killed$([ $denom -gt 0 ] && echo " ($((100 * killed / denom))%)")," \
     "$equivalent equivalent (excluded), $broken stale, stillborn or in error (excluded, to fix)"
for r in "${RESULTS[@]}"; do
    IFS=$T read -r o n mo st sp se <<<"$r"
    printf '  %-10s %-34s %-12s %s\n' "$o" "$n" "$mo" "${st:+[$st] }$sp"
done
if [ $survived -gt 0 ]; then
    echo; echo "survivors:"
    for r in "${RESULTS[@]}"; do
        [ "${r%%$T*}" = SURVIVED ] || continue
        IFS=$T read -r o n mo st sp se <<<"$r"
        echo "  $n ($mo): $(field "$CATALOGUE/$n.diff" Description 2>/dev/null || true)$(field "$CATALOGUE/$n.rule" Description 2>/dev/null || true)"
    done
fi
if [ ${#MISSES[@]} -gt 0 ]; then
    echo; echo "declared selections that did not kill their mutant (fix the Only:/Regress: line):"
    printf '  %s\n' "${MISSES[@]}"
fi
echo
echo "$killed passed, $((survived + broken + ${#MISSES[@]})) failed"
[ $survived -eq 0 ] && [ $broken -eq 0 ] && [ ${#MISSES[@]} -eq 0 ]
