#!/usr/bin/env bash
# Profile of the per-row cost of kms_decrypt (and kms_encrypt, kms_blind_index,
# and pgcrypto's counterparts for comparison) under callgrind.
#
#   bash bench/profile.sh [--rows N] [--no-build] [--no-perf] [--out FILE]
#
# Starts its own cluster and the KMS emulator like bench/run.sh, loads N
# (default 50,000) rows, stops the server, then runs each scan in a
# single-user backend (`postgres --single`) under valgrind --tool=callgrind:
# a warm-up statement unwraps the keys, then the measured
# `SELECT count(f(x))`.  Collection is on only inside standard_ExecutorRun
# and a dump is written after each, so the last dump holds exactly the
# measured scan (no startup, parsing, planning or KMS traffic).  Writes the
# summary (instructions per row; call tree from each SQL function; top
# functions by self cost) to bench/results/profile.md and prints it.
# When perf works on the machine, it first samples where the *time* goes too
# (cpu-clock, user + kernel) in a backend repeating each scan on the live
# cluster: instruction counts hide the cost of system calls.
set -u
. "$(dirname "$0")/bench_lib.sh"
pgck_require_root "$@"

ROWS=50000
NO_BUILD=0
NO_PERF=0
OUT="$BENCH_DIR/results/profile.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        --no-perf) NO_PERF=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $ROWS =~ ^[0-9]+$ ]] && [ "$ROWS" -gt 0 ] || { echo "--rows must be a positive integer" >&2; exit 2; }

T_START=$(date +%s)
cd "$PGCK_ROOT"
pgck_install_packages $PGCK_PACKAGES_BUILD python3 python3-cryptography valgrind
pgck_make_tmp
pgck_log "building"
bench_build "$NO_BUILD"
pgck_log "starting a throwaway cluster and the KMS emulator, loading $ROWS rows"
bench_start "shared_buffers = 256MB
work_mem = 64MB
autovacuum = off
jit = off
max_parallel_workers_per_gather = 0"
bench_create_key >/dev/null
bench_load "$ROWS" load >/dev/null || bench_die "loading failed"

K="$BENCH_PGC_KEY"
# ------------------------------------------------------------------ perf (time)
# Callgrind counts instructions; a system call (or a cache miss) costs far more
# time than its instruction count says.  So, when perf works here, also sample
# where the *time* goes: cpu-clock samples of one backend (user and kernel)
# running each scan repeatedly on the live cluster.
PERF_ARGS=()
PF="$PGCK_TMP/perf"
mkdir -p "$PF" && chown postgres:postgres "$PF"
if [ "$NO_PERF" = 0 ] && command -v perf >/dev/null && perf record -q -o "$PF/probe.data" -- true >/dev/null 2>&1; then
    reps=$(( (4000000 + ROWS - 1) / ROWS ))
    while IFS=$'\t' read -r label sql; do
        pgck_log "perf: $label ($reps scans)"
        {
            echo "COPY (SELECT pg_backend_pid()) TO '$PF/$label.pid';"
            echo "SELECT pg_sleep(0.5);"
            echo "$sql;"        # warm-up: keys unwrapped before the samples that count
            for _ in $(seq 1 "$reps"); do echo "$sql;"; done
        } >"$PF/$label.sql"
        pgck_psql -q -At -f "$PF/$label.sql" >/dev/null 2>"$PF/$label.err" &
        qpid=$!
        for _ in $(seq 1 100); do [ -s "$PF/$label.pid" ] && break; sleep 0.05; done
        [ -s "$PF/$label.pid" ] || bench_die "perf: no backend pid for $label"
        perf record -q -F 999 -p "$(cat "$PF/$label.pid")" -o "$PF/$label.data" >/dev/null 2>&1 &
        ppid=$!
        wait "$qpid" || { cat "$PF/$label.err" >&2; bench_die "perf: $label failed"; }
        wait "$ppid" 2>/dev/null
        perf report -i "$PF/$label.data" --stdio --no-children --sort dso,sym --percent-limit 0.5 \
            >"$PF/$label.txt" 2>/dev/null
        perf report -i "$PF/$label.data" --stdio --no-children --sort dso >"$PF/$label.dso.txt" 2>/dev/null
        PERF_ARGS+=("perf:$label=$PF/$label.txt")
    done <<PERFQ
kms_decrypt	SELECT count(kms_decrypt(email)) FROM bench_enc
kms_encrypt	SELECT count(kms_encrypt(email, '$BENCH_KEY')) FROM bench_plain
kms_encrypt_noidx	SELECT count(kms_encrypt(email, '$BENCH_KEY_NOIDX')) FROM bench_plain
kms_blind_index	SELECT count(kms_blind_index(email, '$BENCH_KEY')) FROM bench_plain
pgc_decrypt	SELECT count(decrypt(email, $K, 'aes')) FROM bench_pgc
PERFQ
else
    echo "bench: perf is not usable here (or --no-perf): time profile skipped" >&2
fi

runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" -m fast -w stop >/dev/null ||
    bench_die "could not stop the cluster"

QUERIES="base_enc	SELECT count(email) FROM bench_enc
kms_decrypt	SELECT count(kms_decrypt(email)) FROM bench_enc
base_text	SELECT count(email) FROM bench_plain
kms_encrypt	SELECT count(kms_encrypt(email, '$BENCH_KEY')) FROM bench_plain
kms_encrypt_noidx	SELECT count(kms_encrypt(email, '$BENCH_KEY_NOIDX')) FROM bench_plain
kms_blind_index	SELECT count(kms_blind_index(email, '$BENCH_KEY')) FROM bench_plain
base_pgc	SELECT count(email) FROM bench_pgc
pgc_decrypt	SELECT count(decrypt(email, $K, 'aes')) FROM bench_pgc
base_bytea	SELECT count(email_b) FROM bench_plain
pgc_encrypt	SELECT count(encrypt(email_b, $K, 'aes')) FROM bench_plain
pgc_hmac	SELECT count(hmac(email_b, $K, 'sha256')) FROM bench_plain"
WARMUP="SELECT count(kms_decrypt(e)), count(kms_blind_index(p, '$BENCH_KEY')), count(kms_encrypt(p, '$BENCH_KEY')), count(kms_encrypt(p, '$BENCH_KEY_NOIDX')), count(decrypt(c, $K, 'aes')), count(hmac(b, $K, 'sha256')) FROM (SELECT e.email AS e, p.email AS p, p.email_b AS b, c.email AS c FROM bench_enc e JOIN bench_plain p USING (id) JOIN bench_pgc c USING (id) LIMIT 10) s"

CG="$PGCK_TMP/callgrind"
mkdir -p "$CG" && chown postgres:postgres "$CG"
ARGS=()
while IFS=$'\t' read -r label sql; do
    pgck_log "callgrind: $label"
    printf '%s\n%s\n' "$WARMUP" "$sql" >"$CG/$label.sql"
    # stdin of a single-user backend: one statement per line
    runuser -u postgres -- env ${AWS_ACCESS_KEY_ID:+AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID} \
        ${AWS_SECRET_ACCESS_KEY:+AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY} \
        valgrind --tool=callgrind --callgrind-out-file="$CG/$label.out" \
        --collect-atstart=no --toggle-collect=standard_ExecutorRun \
        --dump-after=standard_ExecutorRun \
        "$PGBIN/postgres" --single -D "$PGCK_PGDATA" postgres <"$CG/$label.sql" >"$CG/$label.log" 2>&1 ||
        { tail -20 "$CG/$label.log" >&2; bench_die "callgrind run of $label failed"; }
    grep -q "ERROR" "$CG/$label.log" && { grep ERROR "$CG/$label.log" >&2; bench_die "$label: a statement failed"; }
    last=$(ls "$CG/$label.out".* | sort -t. -k3 -n | tail -1)
    ARGS+=("$label=$last")
done <<<"$QUERIES"

{
    echo "# pgcrypt_kms profile: callgrind, one backend, ${ROWS} rows"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); runtime of \`bench/profile.sh\`: $(($(date +%s) - T_START)) s"
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $($PGBIN/postgres --version); $(openssl version)"
    echo "- extension: $BENCH_BUILD_NOTE"
    echo "- KMS: $BENCH_KMS_NOTE"
    echo "- method: \`postgres --single\` under \`valgrind --tool=callgrind --collect-atstart=no"
    echo "  --toggle-collect=standard_ExecutorRun --dump-after=standard_ExecutorRun\`; a warm-up statement"
    echo "  unwraps the keys, the last dump is the measured \`SELECT count(f(x))\` alone. Ir = instructions"
    echo "  executed. The Debian postgres binary and libcrypto are stripped: their internal (static)"
    echo "  functions show as addresses, named here by the exported function that calls them."
} >"$CG/header.md"
mkdir -p "$(dirname "$OUT")"
/usr/bin/python3 "$BENCH_DIR/cgreport.py" "$ROWS" "$CG/header.md" "${ARGS[@]}" ${PERF_ARGS[@]+"${PERF_ARGS[@]}"} >"$OUT" || bench_die "cgreport failed"
pgck_log "profile (also in $OUT)"
cat "$OUT"
