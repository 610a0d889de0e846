#!/usr/bin/env bash
# test/fuzz/run.sh SECONDS [TARGET...]
#
# Builds the libFuzzer targets test/fuzz/fuzz_TARGET.c with clang
# (-fsanitize=fuzzer,address,undefined) into test/fuzz/bin/, replays every
# kept crash input in test/fuzz/regressions/TARGET/, then fuzzes each target
# for SECONDS (-max_total_time) on a temporary copy of
# test/fuzz/corpus/TARGET/ (libFuzzer never writes into the committed corpus).
# Targets run in parallel, FUZZ_JOBS at a time (default: twice the number of
# CPUs, so the usual three targets all run at once even on two CPUs and
# `run.sh 20` takes about 20 s plus a few seconds of build).
#
# With no TARGET, every test/fuzz/fuzz_*.c is a target; kms_json (the KMS
# JSON response parser, test/fuzz/fuzz_kms_json.c) is expected and skipped
# with a note only while its source does not exist yet.
#
# Exit status: 0 when every target built, replayed and fuzzed without a
# crash, leak, timeout or OOM; 1 otherwise (the path of each saved crash input
# is printed, under test/fuzz/bin/artifacts/TARGET/); 2 on usage errors.
#
# Environment: FUZZ_CC (default clang), FUZZ_JOBS, FUZZ_FLAGS (extra libFuzzer
# options), FUZZ_KEEP_CORPUS=DIR (copy the grown corpora there for review).
set -u

usage() {
    echo "usage: $0 SECONDS [TARGET...]   (targets: names of test/fuzz/fuzz_NAME.c)" >&2
    exit 2
}

[ $# -ge 1 ] || usage
SECONDS_EACH=$1
shift
case "$SECONDS_EACH" in
    '' | *[!0-9]*) usage ;;
esac

FUZZ_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$FUZZ_DIR/../.." && pwd)
BIN_DIR=$FUZZ_DIR/bin
ART_ROOT=$BIN_DIR/artifacts
CC=${FUZZ_CC:-clang}
NCPU=$(nproc 2>/dev/null || echo 1)
JOBS=${FUZZ_JOBS:-$((2 * NCPU))}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "run.sh: $CC not found (clang with libFuzzer is needed)" >&2
    exit 1
fi

# Targets: the named ones, or every fuzz_*.c plus the expected kms_json.
TARGETS=()
if [ $# -gt 0 ]; then
    for t in "$@"; do
        t=${t#fuzz_}
        t=${t%.c}
        TARGETS+=("$t")
    done
else
    for src in "$FUZZ_DIR"/fuzz_*.c; do
        [ -e "$src" ] || continue
        t=$(basename "$src" .c)
        TARGETS+=("${t#fuzz_}")
    done
    case " ${TARGETS[*]} " in
        *" kms_json "*) ;;
        *) TARGETS+=(kms_json) ;;
    esac
fi

# Pure modules linked into every target (each must exist: a missing one fails
# the build, never a quietly smaller fuzz run).
SRCS=()
for m in base64 envelope aead keypages kms_json sigv4 kmip_ttlv ore pkcs11_uri vault_json; do
    SRCS+=("$ROOT/src/$m.c")
done

# shellcheck disable=SC2054  # the commas are inside one -fsanitize= list
COMMON=(-g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra
    -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -I"$ROOT/src")
LIBS=(-lcrypto -ljansson)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgck-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$BIN_DIR" "$ART_ROOT"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---------------------------------------------------------------- build
# The pure modules are compiled once (instrumented, no libFuzzer main), then
# each target is compiled and linked against them; all in parallel.
RUN=()
FAILED=0
start=$(date +%s)
for t in "${TARGETS[@]}"; do
    if [ ! -f "$FUZZ_DIR/fuzz_$t.c" ]; then
        echo "run.sh: no such target: test/fuzz/fuzz_$t.c" >&2
        FAILED=1
        continue
    fi
    RUN+=("$t")
done

mkdir -p "$WORK/obj"
OBJS=()
for src in "${SRCS[@]}"; do
    o=$WORK/obj/$(basename "$src" .c).o
    OBJS+=("$o")
    ( "$CC" "${COMMON[@]}" -fsanitize=fuzzer-no-link -c -o "$o" "$src" \
        >"$o.log" 2>&1; echo $? >"$o.rc" ) &
done
wait
OBJS_OK=1
for o in "${OBJS[@]}"; do
    if [ "$(cat "$o.rc")" != 0 ]; then
        OBJS_OK=0
        echo "not ok - build of src/$(basename "$o" .o).c failed"
        sed 's/^/#   /' "$o.log"
    elif [ -s "$o.log" ]; then
        sed 's/^/# (build) /' "$o.log"
    fi
done

BUILT=()
if [ $OBJS_OK = 1 ]; then
    for t in "${RUN[@]}"; do
        ( "$CC" "${COMMON[@]}" -fsanitize=fuzzer -o "$BIN_DIR/fuzz_$t" "$FUZZ_DIR/fuzz_$t.c" \
            "${OBJS[@]}" "${LIBS[@]}" >"$WORK/build_$t.log" 2>&1
          echo $? >"$WORK/build_$t.rc" ) &
    done
    wait
    for t in "${RUN[@]}"; do
        if [ "$(cat "$WORK/build_$t.rc")" != 0 ]; then
            echo "not ok - fuzz_$t: build failed"
            sed 's/^/#   /' "$WORK/build_$t.log"
            FAILED=1
        else
            [ -s "$WORK/build_$t.log" ] && sed 's/^/# (build) /' "$WORK/build_$t.log"
            BUILT+=("$t")
        fi
    done
else
    FAILED=1
fi
echo "# built ${#BUILT[@]} target(s) in $(( $(date +%s) - start ))s with $CC"

# ---------------------------------------------------------------- run
# One target: replay regressions, then fuzz a corpus copy.  Writes
# $WORK/run_$t.rc and $WORK/run_$t.log.
run_target() {
    local t=$1 bin=$BIN_DIR/fuzz_$1 art=$ART_ROOT/$1 log=$WORK/run_$1.log
    local corpus=$WORK/corpus_$1 rc=0 n_reg n_seed
    mkdir -p "$art" "$corpus"
    : >"$log"

    # Kept crash inputs, replayed once each (README* files are notes).
    local reg=()
    if [ -d "$FUZZ_DIR/regressions/$t" ]; then
        while IFS= read -r -d '' f; do
            reg+=("$f")
        done < <(find "$FUZZ_DIR/regressions/$t" -type f ! -name 'README*' -print0 | sort -z)
    fi
    n_reg=${#reg[@]}
    if [ "$n_reg" -gt 0 ]; then
        echo "== replaying $n_reg regression input(s)" >>"$log"
        "$bin" -artifact_prefix="$art/" "${reg[@]}" >>"$log" 2>&1 || rc=1
    fi

    if [ -d "$FUZZ_DIR/corpus/$t" ]; then
        cp -R "$FUZZ_DIR/corpus/$t/." "$corpus/"
    fi
    n_seed=$(find "$corpus" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        echo "== fuzzing ${SECONDS_EACH}s from $n_seed seed(s)" >>"$log"
        # shellcheck disable=SC2086
        "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$art/" ${FUZZ_FLAGS:-} \
            "$corpus" >>"$log" 2>&1 || rc=1
    fi
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        mkdir -p "$FUZZ_KEEP_CORPUS/$t" && cp -R "$corpus/." "$FUZZ_KEEP_CORPUS/$t/"
    fi
    echo "$rc $n_reg $n_seed $(find "$corpus" -type f | wc -l)" >"$WORK/run_$t.rc"
}

# Crash inputs of earlier runs are not this run's; clear them per target.
for t in "${BUILT[@]}"; do
    rm -rf "${ART_ROOT:?}/$t"
done

# At most JOBS targets at once (polled: `wait -n` also returns for jobs
# that ended before it was called).
alive() {
    local n=0 p
    for p in "${PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null && n=$((n + 1))
    done
    echo $n
}
start=$(date +%s)
PIDS=()
for t in "${BUILT[@]}"; do
    while [ "$(alive)" -ge "$JOBS" ]; do
        sleep 0.2
    done
    run_target "$t" &
    PIDS+=($!)
done
wait

for t in "${BUILT[@]}"; do
    read -r rc n_reg n_seed n_after <"$WORK/run_$t.rc"
    log=$WORK/run_$t.log
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    if [ "$rc" = 0 ]; then
        echo "ok - fuzz_$t: ${SECONDS_EACH}s, ${runs:-?} runs, coverage ${cov:-?}, $n_reg regression input(s) replayed, corpus $n_seed -> $n_after"
    else
        FAILED=1
        echo "not ok - fuzz_$t: crash, leak, timeout or OOM"
        grep -E 'ERROR: |runtime error|check failed|SUMMARY|Test unit written|==[0-9]+== ' "$log" | head -20 | sed 's/^/#   /'
        found=0
        for f in "$ART_ROOT/$t"/*; do
            [ -f "$f" ] || continue
            found=1
            echo "# crash input saved to $f"
            echo "#   reproduce: $BIN_DIR/fuzz_$t $f"
            echo "#   keep it:   cp $f $FUZZ_DIR/regressions/$t/"
        done
        if grep -q '^== replaying' "$log" && ! grep -q '^== fuzzing' "$log"; then
            echo "# a kept regression input fails again:"
            grep -E '^Running: ' "$log" | tail -1 | sed 's/^Running: /#   /'
        elif [ $found = 0 ]; then
            echo "# no input was saved; the end of the log:"
            tail -40 "$log" | sed 's/^/#   /'
        fi
    fi
done
echo "# fuzzing took $(( $(date +%s) - start ))s"
exit $FAILED
