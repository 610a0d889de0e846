#!/usr/bin/env bash
# pgcrypt_kms benchmark: one command, from a fresh Debian 12 (root or sudo).
#
#   bash bench/run.sh [--rows N] [--runs N] [--heavy-runs N] [--seconds S]
#                     [--clients C] [--no-build] [--out FILE]
#
# Installs what is missing, builds and installs the extension (from a
# snapshot of the tree), starts its own throwaway cluster and the KMS
# emulator, loads N (default 1,000,000) ~20-byte emails and measures, each
# after a warm-up and as the median of several runs:
#   - ns/row of SELECT count(f(x)) net of SELECT count(x), for kms_encrypt,
#     kms_decrypt, kms_blind_index(text,key) and pgcrypto's encrypt, decrypt,
#     hmac (pgsodium's too when it is installed), with the ratios;
#   - the floor: OpenSSL's primitives alone (bench/crypto_micro.c) in the same
#     run, what PostgreSQL charges any per-row function that returns a new
#     value (bench/floor.c's pgck_floor_value, scanned like ours), and how far
#     each of our functions is above their sum; and that floor measured: a
#     function that runs only the primitives, through src/aead.c (floor.c's
#     pgck_floor_seal, pgck_floor_hmac);
#   - bulk INSERT of N rows: encrypted + tagged + blind-indexed vs plain text +
#     B-tree;
#   - pgbench -M prepared point lookups through the blind index vs a plain
#     text B-tree (both sides at once, so other load hits both alike), and the
#     server-side CPU time per lookup as a cross-check;
#   - bytes per stored value, and KMS calls made during the whole run.
# Prints a Markdown report and writes it to bench/results/latest.md (raw
# measurements beside it).  Timings are never asserted: this is not a test.
set -u
. "$(dirname "$0")/bench_lib.sh"
pgck_require_root "$@"

ROWS=1000000
RUNS=5           # scans: runs after the warm-up round
HEAVY_RUNS=5     # bulk inserts and pgbench: runs after the warm-up
SECONDS_PER_RUN=10
CLIENTS=2
NO_BUILD=0
OUT="$BENCH_DIR/results/latest.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --heavy-runs) HEAVY_RUNS=$2; shift 2 ;;
        --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in ROWS RUNS HEAVY_RUNS SECONDS_PER_RUN CLIENTS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || { echo "--${v,,} must be a positive integer" >&2; exit 2; }
done
[ "$RUNS" -ge 3 ] && [ "$HEAVY_RUNS" -ge 3 ] || echo "bench: fewer than 3 runs: medians are not the issue's ≥ 3" >&2

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cd "$PGCK_ROOT"
pgck_install_packages $PGCK_PACKAGES_BUILD python3 python3-cryptography
pgck_make_tmp
RAW="$PGCK_TMP/raw.tsv"
: >"$RAW"
info() { printf 'info\t%s\t0\t%s\n' "$1" "$2" >>"$RAW"; }
phase() { pgck_log "$* ($(($(date +%s) - T_START)) s)"; }

phase "building"
bench_build "$NO_BUILD"

phase "starting a throwaway cluster and the KMS emulator"
MEM_KB=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
SB=256MB; [ "$MEM_KB" -ge 8000000 ] && SB=1GB
bench_start "shared_buffers = $SB
work_mem = 256MB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
jit = off
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 0"
bench_create_key >>"$RAW"
echo "cluster on port $PGPORT; KMS: $BENCH_KMS_NOTE"

PGSODIUM=0
if [ "$(pgck_psql -At -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgsodium'")" = 1 ]; then
    if pgck_psql -q -c "CREATE EXTENSION pgsodium" >/dev/null 2>"$PGCK_TMP/pgsodium.err"; then
        PGSODIUM=1
    else
        info pgsodium "installed, but CREATE EXTENSION pgsodium failed: $(head -1 "$PGCK_TMP/pgsodium.err")"
    fi
else
    info pgsodium "not installed (not packaged in Debian): skipped"
fi

# ------------------------------------------------------------------ load
phase "loading $ROWS rows"
bench_load "$ROWS" load >>"$RAW" || bench_die "loading failed"
if [ "$PGSODIUM" = 1 ]; then
    # pgsodium's counterparts: ChaCha20-Poly1305 (IETF) AEAD and HMAC-SHA-256.
    # One fixed nonce for all rows is fine for timing, never for real data.
    pgck_psql -q <<'SQL' >/dev/null 2>"$PGCK_TMP/pgsodium.err" || { PGSODIUM=0; info pgsodium "setup failed: $(head -1 "$PGCK_TMP/pgsodium.err")"; }
CREATE TABLE bench_sodium_keys AS
    SELECT pgsodium.crypto_aead_ietf_keygen() AS k, pgsodium.crypto_aead_ietf_noncegen() AS n,
           pgsodium.crypto_auth_hmacsha256_keygen() AS hk;
CREATE TABLE bench_sodium AS
    SELECT id, pgsodium.crypto_aead_ietf_encrypt(email_b, NULL, n, k) AS email
      FROM bench_plain, bench_sodium_keys;
VACUUM (FREEZE, ANALYZE) bench_sodium, bench_sodium_keys;
SQL
fi

# bench_t(q): wall-clock ms and this backend's on-CPU ms (/proc/self/schedstat,
# NULL where the kernel lacks it) of one statement.  CPU time is what a per-row
# cost is made of, and it does not count the time the backend waited for a CPU
# that other work on the machine held.
pgck_psql -q <<'SQL' || bench_die "could not create bench_t()"
CREATE FUNCTION bench_cpu_ns() RETURNS int8 LANGUAGE plpgsql AS $f$
BEGIN
    -- the kernel adds a running task's CPU time to schedstat at ticks and when it
    -- sleeps: a 1 ms sleep makes the reading exact instead of a tick late
    PERFORM pg_sleep(0.001);
    RETURN split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::int8;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$f$;
CREATE FUNCTION bench_t(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    t0 timestamptz;
    c0 int8;
    wall float8;
BEGIN
    c0 := bench_cpu_ns();
    t0 := clock_timestamp();
    EXECUTE q;
    wall := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN wall::text || E'\t' || coalesce(((bench_cpu_ns() - c0) / 1e6)::float8::text, '');
END
$f$;
SQL

# The floor of a per-row function inside PostgreSQL: bench/floor.c's
# pgck_floor_value(text, key) reads its arguments and returns a new value the
# size of a tagged one, and nothing else (scanned below as floor_value);
# pgck_floor_seal, pgck_floor_seal_plain, pgck_floor_hmac and pgck_floor_open
# do the same with the primitives of a tagged and an untagged kms_encrypt, of
# kms_blind_index and of kms_decrypt in them, called through the extension's
# own src/aead.c (floor_seal, floor_seal_plain, floor_hmac, floor_open; the
# last over bench_floor_enc, the same emails sealed by pgck_floor_seal, as
# kms_decrypt's runs over bench_enc).  Each is checked to round-trip first.
bench_floor_functions
pgck_psql -q <<SQL >/dev/null || bench_die "could not build bench_floor_enc"
SET client_min_messages = warning;
CREATE TABLE bench_floor_enc AS SELECT id, pgck_floor_seal(email, '$BENCH_KEY') AS email FROM bench_plain;
VACUUM (FREEZE, ANALYZE) bench_floor_enc;
SQL
got=$(pgck_psql -At -c "SELECT (SELECT count(*) FROM bench_floor_enc f JOIN bench_plain p USING (id)
                                 WHERE pgck_floor_open(f.email) = p.email
                                   AND octet_length(f.email) = octet_length(p.email) + 68)
                             || ' ' || (SELECT count(*) FROM bench_plain)
                             || ' ' || (pgck_floor_open(pgck_floor_seal_plain('a@b.c', 'k')) = 'a@b.c'
                                        AND octet_length(pgck_floor_seal_plain('a@b.c', 'k')) = 5 + 35)")
set -- $got
[ "${1:-}" = "${2:-x}" ] && [ "${3:-}" = true ] || bench_die "the floor functions do not round-trip: $got"

# ------------------------------------------------------------------ scans
# label <TAB> SQL; report.py knows which baseline and counterpart each has.
K="$BENCH_PGC_KEY"
SCANS="base_text	SELECT count(email) FROM bench_plain
base_bytea	SELECT count(email_b) FROM bench_plain
base_enc	SELECT count(email) FROM bench_enc
base_pgc	SELECT count(email) FROM bench_pgc
kms_encrypt	SELECT count(kms_encrypt(email, '$BENCH_KEY')) FROM bench_plain
kms_encrypt_noidx	SELECT count(kms_encrypt(email, '$BENCH_KEY_NOIDX')) FROM bench_plain
pgc_encrypt	SELECT count(encrypt(email_b, $K, 'aes')) FROM bench_plain
kms_decrypt	SELECT count(kms_decrypt(email)) FROM bench_enc
pgc_decrypt	SELECT count(decrypt(email, $K, 'aes')) FROM bench_pgc
kms_blind_index	SELECT count(kms_blind_index(email, '$BENCH_KEY')) FROM bench_plain
pgc_hmac	SELECT count(hmac(email_b, $K, 'sha256')) FROM bench_plain
kms_blind_index_value	SELECT count(kms_blind_index(email)) FROM bench_enc
floor_value	SELECT count(pgck_floor_value(email, '$BENCH_KEY')) FROM bench_plain
floor_seal	SELECT count(pgck_floor_seal(email, '$BENCH_KEY')) FROM bench_plain
floor_hmac	SELECT count(pgck_floor_hmac(email, '$BENCH_KEY')) FROM bench_plain
floor_seal_plain	SELECT count(pgck_floor_seal_plain(email, '$BENCH_KEY_NOIDX')) FROM bench_plain
base_floor_enc	SELECT count(email) FROM bench_floor_enc
floor_open	SELECT count(pgck_floor_open(email)) FROM bench_floor_enc"
if [ "$PGSODIUM" = 1 ]; then
    SCANS="$SCANS
base_sodium	SELECT count(email) FROM bench_sodium
sodium_encrypt	SELECT count(pgsodium.crypto_aead_ietf_encrypt(email_b, NULL, n, k)) FROM bench_plain, bench_sodium_keys
sodium_decrypt	SELECT count(pgsodium.crypto_aead_ietf_decrypt(email, NULL, n, k)) FROM bench_sodium, bench_sodium_keys
sodium_hmac	SELECT count(pgsodium.crypto_auth_hmacsha256(email_b, hk)) FROM bench_plain, bench_sodium_keys"
fi

phase "scans: a warm-up round, then $RUNS rounds (one session, rounds interleaved)"
{
    for r in $(seq 0 "$RUNS"); do
        while IFS=$'\t' read -r label sql; do
            printf "SELECT 'scan', '%s', %d, bench_t(\$q\$%s\$q\$);\n" "$label" "$r" "$sql"
        done <<<"$SCANS"
    done
    bench_kms_stats_sql scans
} >"$PGCK_TMP/scans.sql"
pgck_psql -q -At -F $'\t' -f "$PGCK_TMP/scans.sql" >>"$RAW" || bench_die "a scan failed"

# ------------------------------------------------------------------ the floor
# What OpenSSL's primitives alone cost on this machine, now (bench/crypto_micro.c,
# the paths src/aead.c uses and their EVP fallback): the floor each per-row figure
# above is compared with in the report.  Run on the idle cluster, RUNS times
# (each the minimum of 7 measurements of thread CPU time); the report takes
# the median.  A variant producing wrong bytes or accepting a tampered tag
# fails the benchmark.
phase "the floor: OpenSSL's primitives alone (bench/crypto_micro.c), $RUNS runs"
cc -O2 -Wall -o "$PGCK_TMP/crypto_micro" "$BENCH_DIR/crypto_micro.c" -lcrypto 2>"$PGCK_TMP/crypto_micro.log" ||
    { cat "$PGCK_TMP/crypto_micro.log" >&2; bench_die "bench/crypto_micro.c does not build"; }
for r in $(seq 1 "$RUNS"); do
    "$PGCK_TMP/crypto_micro" --tsv 200000 'provider,tag-params,sha256-ctx,4 KiB' 2>>"$PGCK_TMP/crypto_micro.log" |
        awk -v r="$r" 'BEGIN { FS = OFS = "\t" } { $3 = r; print }' >>"$RAW"
    [ "${PIPESTATUS[0]}" = 0 ] || { cat "$PGCK_TMP/crypto_micro.log" >&2; bench_die "bench/crypto_micro.c: a variant failed its check"; }
done

# ------------------------------------------------------------------ bulk insert
phase "bulk INSERT of $ROWS rows: a warm-up, then $HEAVY_RUNS runs of each (interleaved)"
{
    echo "SET client_min_messages = warning;"
    insert_sql() {  # insert_sql plain|enc ROUND
        if [ "$1" = plain ]; then
            cat <<SQL
DROP TABLE IF EXISTS ins_plain;
CREATE TABLE ins_plain (id int4 NOT NULL, email text NOT NULL);
CREATE INDEX ins_plain_email ON ins_plain (email);
CHECKPOINT;
SELECT 'insert', 'plain', $2, bench_t(\$q\$INSERT INTO ins_plain SELECT id, email FROM bench_plain\$q\$);
SQL
        else
            cat <<SQL
DROP TABLE IF EXISTS ins_enc;
CREATE TABLE ins_enc (id int4 NOT NULL, email enc_text NOT NULL);
CREATE INDEX ins_enc_email_bidx ON ins_enc (kms_blind_index(email));
CHECKPOINT;
SELECT 'insert', 'enc', $2, bench_t(\$q\$INSERT INTO ins_enc SELECT id, kms_encrypt(email, '$BENCH_KEY') FROM bench_plain\$q\$);
SQL
        fi
    }
    # pairs in alternating order (plain first, then enc first, ...): a drift in
    # machine load does not favour either side
    for r in $(seq 0 "$HEAVY_RUNS"); do
        if [ $((r % 2)) = 0 ]; then insert_sql plain "$r"; insert_sql enc "$r"
        else insert_sql enc "$r"; insert_sql plain "$r"; fi
    done
    cat <<SQL
VACUUM (FREEZE, ANALYZE) ins_plain, ins_enc;
SELECT 'size', 'plain_table', 0, pg_table_size('ins_plain');
SELECT 'size', 'plain_index', 0, pg_relation_size('ins_plain_email');
SELECT 'size', 'enc_table', 0, pg_table_size('ins_enc');
SELECT 'size', 'enc_index', 0, pg_relation_size('ins_enc_email_bidx');
SELECT 'size', 'avg_plaintext', 0, avg(octet_length(email)) FROM bench_plain;
SELECT 'size', 'col_text', 0, avg(pg_column_size(email)) FROM bench_plain;
SELECT 'size', 'col_enc', 0, avg(pg_column_size(email)) FROM bench_enc;
SELECT 'size', 'col_pgc', 0, avg(pg_column_size(email)) FROM bench_pgc;
SELECT 'size', 'tag', 0, avg(octet_length(kms_blind_index(email))) FROM bench_enc;
$( [ "$PGSODIUM" = 1 ] && echo "SELECT 'size', 'col_sodium', 0, avg(pg_column_size(email)) FROM bench_sodium;" )
SQL
    bench_kms_stats_sql insert
} >"$PGCK_TMP/insert.sql"
pgck_psql -q -At -F $'\t' -f "$PGCK_TMP/insert.sql" >>"$RAW" || bench_die "the bulk insert failed"

# ------------------------------------------------------------------ pgbench
phase "point lookups: pgbench scripts, checks"
PGBENCH="$PGBIN/pgbench"
[ -x "$PGBENCH" ] || bench_die "pgbench not found in $PGBIN"
mkdir -p "$PGCK_TMP/pgbench" && chown postgres:postgres "$PGCK_TMP/pgbench"
write_script() {  # write_script NAME SELECT-LIST-AND-FROM WHERE
    printf '\\set id random(1, %d)\nSELECT %s WHERE %s;\n' "$ROWS" "$2" "$3" >"$PGCK_TMP/pgbench/$1.sql"
}
PLAIN_WHERE="email = 'us' || :id || '@example.com'"
ENC_WHERE="kms_blind_index(email) = kms_blind_index('us' || :id || '@example.com', '$BENCH_KEY')"
write_script lookup_plain "id FROM ins_plain" "$PLAIN_WHERE"
write_script lookup_enc "id FROM ins_enc" "$ENC_WHERE"
write_script read_plain "id, email FROM ins_plain" "$PLAIN_WHERE"
write_script read_enc "id, kms_decrypt(email) FROM ins_enc" "$ENC_WHERE"
chown postgres:postgres "$PGCK_TMP"/pgbench/*.sql

# each finds exactly its row, through an index (one session: its KMS calls are counted)
probe=$((ROWS / 3 + 1))
{
    for s in lookup_plain lookup_enc read_plain read_enc; do
        q=$(sed -n 2p "$PGCK_TMP/pgbench/$s.sql" | sed "s/:id/$probe/")
        echo "SELECT 'rows', '$s', 0, count(*) FROM (${q%;}) q;"
        echo "SELECT 'plan', '$s', 0, string_agg(p, ' ') FROM bench_plan(\$q\$${q%;}\$q\$) p;"
    done
    bench_kms_stats_sql checks
} >"$PGCK_TMP/checks.sql"
pgck_psql -q -At -F $'\t' <<'SQL' || bench_die "could not create bench_plan()"
CREATE FUNCTION bench_plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $f$
BEGIN
    RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || q;
END
$f$;
SQL
pgck_psql -q -At -F $'\t' -f "$PGCK_TMP/checks.sql" >"$PGCK_TMP/checks.tsv" || bench_die "the lookup checks failed"
cat "$PGCK_TMP/checks.tsv" >>"$RAW"
while IFS=$'\t' read -r kind name _ value; do
    case $kind in
        rows) [ "$value" = 1 ] || bench_die "$name: expected 1 row for id $probe, got $value" ;;
        plan) case $value in *Index*) ;; *) bench_die "$name: no index scan: $value" ;; esac ;;
    esac
done <"$PGCK_TMP/checks.tsv"

# Cross-check that other load on the machine cannot skew: the same lookups in
# one backend (plpgsql, cached plans like -M prepared), timed in on-CPU time.
LOOKUPS=$(( ROWS < 200000 ? ROWS : 200000 ))
phase "server-side lookups: $LOOKUPS per run, a warm-up, then $HEAVY_RUNS runs of each (one session)"
pgck_psql -q <<SQL || bench_die "could not create bench_lookups()"
CREATE FUNCTION bench_lookups(kind text, n int, nrows int) RETURNS int LANGUAGE plpgsql AS \$f\$
DECLARE
    hits int := 0;
    got int;
    val text;
    k int;
BEGIN
    FOR i IN 1..n LOOP
        k := 1 + (i::int8 * 7919 % nrows)::int;
        IF kind = 'plain' THEN
            SELECT id INTO got FROM ins_plain WHERE email = 'us' || k || '@example.com';
        ELSIF kind = 'enc' THEN
            SELECT id INTO got FROM ins_enc
             WHERE kms_blind_index(email) = kms_blind_index('us' || k || '@example.com', '$BENCH_KEY');
        ELSIF kind = 'plain_read' THEN
            SELECT id, email INTO got, val FROM ins_plain WHERE email = 'us' || k || '@example.com';
        ELSE
            SELECT id, kms_decrypt(email) INTO got, val FROM ins_enc
             WHERE kms_blind_index(email) = kms_blind_index('us' || k || '@example.com', '$BENCH_KEY');
        END IF;
        IF got IS NOT NULL AND (kind IN ('plain', 'enc') OR val = 'us' || k || '@example.com') THEN
            hits := hits + 1;
        END IF;
    END LOOP;
    IF hits <> n THEN RAISE EXCEPTION 'bench_lookups(%): % of % found', kind, hits, n; END IF;
    RETURN hits;
END
\$f\$;
SQL
{
    for r in $(seq 0 "$HEAVY_RUNS"); do
        order="plain enc plain_read enc_read"; [ $((r % 2)) = 1 ] && order="enc_read plain_read enc plain"
        for k in $order; do
            echo "SELECT 'lookup', '$k', $r, bench_t(\$q\$SELECT bench_lookups('$k', $LOOKUPS, $ROWS)\$q\$);"
        done
    done
    bench_kms_stats_sql lookups
} >"$PGCK_TMP/lookups.sql"
pgck_psql -q -At -F $'\t' -f "$PGCK_TMP/lookups.sql" >>"$RAW" || bench_die "the server-side lookups failed"
info lookups "$LOOKUPS"

# pgbench_run KIND SCRIPT SECONDS ROUND: start one pgbench in the background
# (its result is collected by pgbench_collect).
PB_PIDS=()
pgbench_run() {
    runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" "$PGBENCH" -n -M prepared \
        -c "$CLIENTS" -j "$CLIENTS" -T "$3" -f "$PGCK_TMP/pgbench/$2.sql" postgres \
        >"$PGCK_TMP/pgbench/$1.$2.$4.log" 2>&1 &
    PB_PIDS+=("$!:$1:$2:$4")
    case $2 in *enc) PGBENCH_BACKENDS=$((PGBENCH_BACKENDS + CLIENTS)) ;; esac
}
pgbench_collect() {
    local e pid kind script round log tps
    for e in "${PB_PIDS[@]}"; do
        IFS=: read -r pid kind script round <<<"$e"
        log="$PGCK_TMP/pgbench/$kind.$script.$round.log"
        wait "$pid" || { cat "$log" >&2; bench_die "pgbench $script failed (or a client aborted)"; }
        tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$log")
        [ -n "$tps" ] || { cat "$log" >&2; bench_die "pgbench $script: no tps line"; }
        printf '%s\t%s\t%d\t%s\n' "$kind" "$script" "$round" "$tps" >>"$RAW"
    done
    PB_PIDS=()
}
PGBENCH_BACKENDS=0
phase "pgbench: warm-up (3 s each), then $HEAVY_RUNS runs of ${SECONDS_PER_RUN} s with both sides at once, then one solo run each"
for s in lookup_plain lookup_enc read_plain read_enc; do
    pgbench_run tps "$s" 3 0; pgbench_collect
done
# Both sides at the same time, same clients, same duration: whatever else runs
# on the machine meanwhile slows both alike, and the kernel shares the CPUs
# between their backends, so the tps ratio is the ratio of their costs.
for r in $(seq 1 "$HEAVY_RUNS"); do
    for pair in "lookup_plain lookup_enc" "read_plain read_enc"; do
        for s in $pair; do pgbench_run tpsc "$s" "$SECONDS_PER_RUN" "$r"; done
        pgbench_collect
    done
done
# one at a time: absolute tps with the machine to itself (as far as it is)
for s in lookup_plain lookup_enc read_plain read_enc; do
    pgbench_run tps "$s" "$SECONDS_PER_RUN" 1; pgbench_collect
done

# ------------------------------------------------------------------ KMS calls, machine
phase "collecting KMS call counts and machine facts"
pgck_psql -At -F $'\t' <<SQL >>"$RAW"
SELECT 'keyversions', 'dek', 0, count(*) FROM pgcrypt_kms.key_versions;
SELECT 'keyversions', 'index', 0, count(*) FROM pgcrypt_kms.keys WHERE index_key_wrapped IS NOT NULL;
SELECT 'info', 'pg_version', 0, version();
SELECT 'info', 'collation', 0, datcollate FROM pg_database WHERE datname = current_database();
SELECT 'info', 'preload', 0, current_setting('shared_preload_libraries');
SQL
if [ "$BENCH_KMS_URI" != "local:$BENCH_KEY" ] && [ -n "${PGCK_EMULATOR_PORT:-}" ]; then
    printf 'emulator\tstats\t0\t%s\n' \
        "$(/usr/bin/python3 "$PGCK_ROOT/test/kms_emulator/emuctl.py" "$PGCK_EMULATOR_PORT" stats | tr -d '\n')" >>"$RAW"
fi
info rows "$ROWS"
info runs "$RUNS"
info heavy_runs "$HEAVY_RUNS"
info pgbench_seconds "$SECONDS_PER_RUN"
info pgbench_clients "$CLIENTS"
info pgbench_backends "$PGBENCH_BACKENDS"
info build "$BENCH_BUILD_NOTE"
info kms "$BENCH_KMS_NOTE"
info kms_uri "$BENCH_KMS_URI"
info nproc "$(nproc)"
info cpu "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
info mem "$((MEM_KB / 1024)) MiB"
info openssl "$(openssl version 2>/dev/null || echo unknown)"
info kernel "$(uname -r)"
info date "$(date -u '+%Y-%m-%d %H:%M UTC')"
info shared_buffers "$SB"
info load "1/5/15-min load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews timings)"
info runtime_s "$(($(date +%s) - T_START))"

mkdir -p "$(dirname "$OUT")"
cp "$RAW" "${OUT%.md}.raw.tsv"
/usr/bin/python3 "$BENCH_DIR/report.py" "$RAW" >"$OUT" || bench_die "report failed"
pgck_log "report (also in $OUT)"
cat "$OUT"
