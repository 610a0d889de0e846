#!/usr/bin/env bash
# Range, ORDER BY and encryption costs of order-revealing terms and named
# blind indexes (issue 14 item 5), each beside its plaintext counterpart in
# the same run.
#
#   bash bench/ore.sh [--rows N] [--runs N] [--insert-rows N] [--no-build] [--out FILE]
#
# Like bench/run.sh (same build from a snapshot, cluster, KMS emulator), on N
# rows (default 1,000,000) of (id, dob date, plain_dob date) where dob is
# kms_encrypt(date, key with an order index) and plain_dob the same date,
# with a B-tree on plain_dob and one on kms_ore(dob):
#   range   SELECT sum(id) WHERE kms_ore(dob) BETWEEN probe AND probe, selecting 1% of
#           the rows, vs the same on plain_dob (both bitmap heap scans)
#   top100  SELECT id ORDER BY kms_ore(dob) LIMIT 100 vs ORDER BY plain_dob LIMIT 100
# each run --runs times, the two alternating, median reported with the
# ratio of medians; EXPLAIN of each shows the index is used.  Then
# INSERT ... SELECT of --insert-rows values (default 100,000): int8 without
# and with an order index, numeric with one, text with the key's email blind
# index only and with three named indexes (domain, suffix(4), prefix(3)), per
# row, and the bytes each adds to a value.  Writes bench/results/ore.md and
# prints it.  Nothing is asserted.
set -u
. "$(dirname "$0")/bench_lib.sh"
pgck_require_root "$@"

ROWS=1000000
RUNS=7
INS=100000
NO_BUILD=0
OUT="$BENCH_DIR/results/ore.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --insert-rows) INS=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in ROWS RUNS INS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || { echo "--${v,,} must be a positive integer" >&2; exit 2; }
done

T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cd "$PGCK_ROOT"
pgck_install_packages $PGCK_PACKAGES_BUILD python3 python3-cryptography
pgck_make_tmp
bench_build "$NO_BUILD"
bench_start "shared_buffers = 256MB
max_connections = 100
autovacuum = off
jit = off
max_parallel_workers_per_gather = 0"
bench_create_key >/dev/null
K=${BENCH_KMS_URI}
pgck_log "loading $ROWS rows"
pgck_psql -q <<SQL >/dev/null || bench_die "could not load the table"
SET client_min_messages = warning;
SELECT kms_create_key('ore_dob', '$K', order_index => true);
SELECT kms_create_key('ore_num', '$K', order_index => true);
SELECT kms_create_key('ore_none', '$K');
SELECT kms_create_key('ore_mail', '$K', blind_index => 'email');
SELECT kms_create_key('ore_mail3', '$K', blind_index => 'email');
SELECT kms_add_index('ore_mail3', 'domain', 'domain', 32);
SELECT kms_add_index('ore_mail3', 'last4', 'suffix(4)', 32);
SELECT kms_add_index('ore_mail3', 'first3', 'prefix(3)', 32);
CREATE TABLE ore_t AS
SELECT g AS id, d AS plain_dob, kms_encrypt(d, 'ore_dob') AS dob
  FROM (SELECT g, date '1930-01-01' + (hashint4(g) & 65535) % 30000 AS d
          FROM generate_series(1, $ROWS) g) s;
CREATE INDEX ON ore_t (plain_dob);
CREATE INDEX ON ore_t (kms_ore(dob));
VACUUM (FREEZE, ANALYZE) ore_t;
SQL

# 1% of the rows: the dates between the 50th and 51st percentile
read -r LO HI <<<"$(pgck_psql -At -F ' ' -c "SELECT percentile_disc(0.50) WITHIN GROUP (ORDER BY plain_dob), percentile_disc(0.51) WITHIN GROUP (ORDER BY plain_dob) - 1 FROM ore_t")"
Q_RANGE_ORE="SELECT sum(id), count(*) FROM ore_t WHERE kms_ore(dob) BETWEEN kms_ore('$LO'::date, 'ore_dob') AND kms_ore('$HI'::date, 'ore_dob')"
Q_RANGE_PLAIN="SELECT sum(id), count(*) FROM ore_t WHERE plain_dob BETWEEN '$LO'::date AND '$HI'::date"
Q_TOP_ORE="SELECT sum(id) FROM (SELECT id FROM ore_t ORDER BY kms_ore(dob) LIMIT 100) s"
Q_TOP_PLAIN="SELECT sum(id) FROM (SELECT id FROM ore_t ORDER BY plain_dob LIMIT 100) s"
same_range=$( [ "$(pgck_psql -At -c "$Q_RANGE_ORE")" = "$(pgck_psql -At -c "$Q_RANGE_PLAIN")" ] && echo yes || echo NO)
selected=$(pgck_psql -At -c "SELECT count(*) FROM ore_t WHERE plain_dob BETWEEN '$LO'::date AND '$HI'::date")
plans=$(for q in "$Q_RANGE_ORE" "$Q_TOP_ORE"; do pgck_psql -At -c "EXPLAIN (COSTS OFF) $q"; echo; done)

pgck_log "timing: $RUNS runs of each query, alternating"
timings=$(pgck_psql -At -F ' ' <<SQL
CREATE TEMP TABLE tm (q text, ms float8);
DO \$\$
DECLARE
    qs text[] := ARRAY[\$q\$$Q_RANGE_ORE\$q\$, \$q\$$Q_RANGE_PLAIN\$q\$, \$q\$$Q_TOP_ORE\$q\$, \$q\$$Q_TOP_PLAIN\$q\$];
    names text[] := ARRAY['range_ore', 'range_plain', 'top_ore', 'top_plain'];
    t0 timestamptz;
    i int;
    r int;
BEGIN
    FOR i IN 1 .. 4 LOOP EXECUTE qs[i]; END LOOP;   -- warm-up
    FOR r IN 1 .. $RUNS LOOP
        FOR i IN 1 .. 4 LOOP
            t0 := clock_timestamp();
            EXECUTE qs[i];
            INSERT INTO tm VALUES (names[i], extract(epoch FROM clock_timestamp() - t0) * 1000);
        END LOOP;
    END LOOP;
END \$\$;
SELECT q, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM tm GROUP BY q ORDER BY q;
SQL
)
med() { echo "$timings" | awk -v q="$1" '$1 == q {print $2}'; }

pgck_log "encryption cost: $INS rows per variant"
ins=$(pgck_psql -At -F ' ' <<SQL
SET client_min_messages = warning;
CREATE TEMP TABLE tm (v text, ms float8, bytes float8);
CREATE TEMP TABLE sink (e enc_text);
CREATE TEMP TABLE sinkp (t text);
CREATE FUNCTION pg_temp.run(name text, q text) RETURNS void LANGUAGE plpgsql AS \$f\$
DECLARE t0 timestamptz; b float8; r int;
BEGIN
    FOR r IN 1 .. 3 LOOP
        TRUNCATE sink; TRUNCATE sinkp;
        t0 := clock_timestamp();
        EXECUTE q;
        SELECT avg(octet_length(decode(substr(e::text, 6), 'base64'))) INTO b FROM sink;
        INSERT INTO tm VALUES (name, extract(epoch FROM clock_timestamp() - t0) * 1000, b);
    END LOOP;
END \$f\$;
SELECT pg_temp.run('plain_text', \$\$INSERT INTO sinkp SELECT 'us' || g || '@example.com' FROM generate_series(1, $INS) g\$\$);
SELECT pg_temp.run('int8', \$\$INSERT INTO sink SELECT kms_encrypt(g::int8 * 7919, 'ore_none') FROM generate_series(1, $INS) g\$\$);
SELECT pg_temp.run('int8_ore', \$\$INSERT INTO sink SELECT kms_encrypt(g::int8 * 7919, 'ore_num') FROM generate_series(1, $INS) g\$\$);
SELECT pg_temp.run('numeric_ore', \$\$INSERT INTO sink SELECT kms_encrypt(g * 1.25, 'ore_num') FROM generate_series(1, $INS) g\$\$);
SELECT pg_temp.run('date_ore', \$\$INSERT INTO sink SELECT kms_encrypt(date '2000-01-01' + g % 30000, 'ore_dob') FROM generate_series(1, $INS) g\$\$);
SELECT pg_temp.run('text_email', \$\$INSERT INTO sink SELECT kms_encrypt('us' || g || '@example.com', 'ore_mail') FROM generate_series(1, $INS) g\$\$);
SELECT pg_temp.run('text_email_3named', \$\$INSERT INTO sink SELECT kms_encrypt('us' || g || '@example.com', 'ore_mail3') FROM generate_series(1, $INS) g\$\$);
SELECT v, round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) * 1000 / $INS)::numeric, 2), round(avg(bytes)::numeric, 1)
  FROM tm GROUP BY v ORDER BY v;
SQL
)
us() { echo "$ins" | awk -v q="$1" '$1 == q {print $2}'; }
by() { echo "$ins" | awk -v q="$1" '$1 == q {print $3}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

mkdir -p "$(dirname "$OUT")"
{
    echo "# ORE and named-index benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$PGCK_ROOT" rev-parse --short HEAD 2>/dev/null))"
    echo
    echo "$ROWS rows, $RUNS alternating runs per query (median); key: ${BENCH_KMS_NOTE}; load average at start $LOAD_START."
    echo
    echo "| query | ORE term (ms) | plaintext B-tree (ms) | ratio |"
    echo "|---|---|---|---|"
    echo "| range selecting $selected rows ($(ratio "$selected" "$ROWS" | awk '{printf "%.1f", $1 * 100}')%), same rows: $same_range | $(med range_ore) | $(med range_plain) | $(ratio "$(med range_ore)" "$(med range_plain)")× |"
    echo "| ORDER BY … LIMIT 100 | $(med top_ore) | $(med top_plain) | $(ratio "$(med top_ore)" "$(med top_plain)")× |"
    echo
    echo "| INSERT … SELECT of $INS values | µs per row | value bytes (binary) |"
    echo "|---|---|---|"
    for v in plain_text int8 int8_ore numeric_ore date_ore text_email text_email_3named; do
        echo "| $v | $(us $v) | $(by $v) |"
    done
    echo
    echo "Plans:"
    echo
    echo '```'
    echo "$plans"
    echo '```'
    echo
    echo "Took $(( $(date +%s) - T_START )) s."
} >"$OUT"
cat "$OUT"
