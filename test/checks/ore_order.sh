#!/usr/bin/env bash
# Order under the ORE term equals plaintext order (issue 14 item 2), through
# SQL: per type (int8, date, timestamptz, numeric), PGCK_ORE_N random values
# (default 1,000,000 per type, the issue's count) with the type's minimum and
# maximum, zero, negatives, -infinity/infinity (date, timestamptz, numeric)
# and NaN (numeric), numerics of scales 0..37 and of 38 significant digits,
# the extremes of the numeric encoding (1e-129, 38 nines times 1e88), many
# equal values (also 1.5 = 1.50 = 1.500) and NULLs.
# The term is the probe kms_ore(value, key); for a sample of 2,000 values
# per type the term stored inside kms_encrypt(value, key) must be the same
# bytes.  Then the position of every row under ORDER BY term, id and under
# ORDER BY plaintext, id (NULLs last in both) must be the same: any term that
# sorts a pair otherwise, or makes equal values unequal or unequal ones
# equal, moves a row.
# Cost: one HMAC per plaintext bit (32 to 139 per value, 299 per row of all
# four types), so the values are generated first (random() is parallel
# restricted) and their terms computed by one parallel CREATE TABLE AS per
# type (PGCK_ORE_WORKERS, default 2), then compared in two window sorts in
# memory: no per-row round trip, one pass per type.
# Runs (as root) against the cluster test/run.sh started: PGHOST, PGPORT, PGBIN.
set -u
N=${PGCK_ORE_N:-1000000}
WORKERS=${PGCK_ORE_WORKERS:-2}
DB=pgck_ore_order
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
psql_db() { runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d $DB "$@"; }

runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" || exit 1
psql_db -q <<'SQL' || exit 1
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('ore_order', 'local:ore_order', order_index => true);
SET TIME ZONE 'UTC';
SQL

start=$(date +%s)
# value generators: $1 is the row number g (1..N); edge values first
declare -A GEN EDGES
GEN[int8]="CASE g % 4
    WHEN 0 THEN ((floor(random() * 4294967296)::int8 << 32) | floor(random() * 4294967296)::int8)
    WHEN 1 THEN floor(random() * 2001)::int8 - 1000
    WHEN 2 THEN floor(random() * 50)::int8 * 1000000007
    ELSE -floor(random() * 9.2e18)::int8 END"
EDGES[int8]="'-9223372036854775808', '-9223372036854775807', '-1', '0', '1', '9223372036854775806', '9223372036854775807', '0', NULL"
GEN[date]="CASE g % 3
    WHEN 0 THEN date '2000-01-01' + (floor(random() * 2147483495)::int8 - 2451545)::int4
    WHEN 1 THEN date '1970-01-01' + floor(random() * 36500)::int4
    ELSE date '2000-01-01' + floor(random() * 100)::int4 END"
EDGES[date]="'-infinity', 'infinity', '4713-01-01 BC', '4713-01-02 BC', '5874897-12-31', '2000-01-01', '1999-12-31', NULL, 'infinity'"
GEN[timestamptz]="CASE g % 3
    WHEN 0 THEN to_timestamp(-210000000000 + random() * 9400000000000)
    WHEN 1 THEN timestamptz '2000-01-01 00:00:00+00' + floor(random() * 2000000 - 1000000)::int8 * interval '1 microsecond'
    ELSE timestamptz '2024-06-01 00:00:00+00' + floor(random() * 1000)::int8 * interval '1 second' END"
EDGES[timestamptz]="'-infinity', 'infinity', '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00', '2000-01-01 00:00:00+00', '1999-12-31 23:59:59.999999+00', '2000-01-01 00:00:00.000001+00', NULL"
GEN[numeric]="CASE g % 5
    WHEN 0 THEN round(((random() - 0.5) * 2)::numeric * power(10::numeric, floor(random() * 60)::int - 30), floor(random() * 38)::int)
    WHEN 1 THEN round((random() * 200 - 100)::numeric, floor(random() * 4)::int)
    WHEN 2 THEN (floor(random() * 1e15)::numeric * 1e23 + floor(random() * 1e15)::numeric * 1e8 + floor(random() * 1e8)::numeric) * (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END)
    WHEN 3 THEN round(floor(random() * 20)::numeric / 4, floor(random() * 5)::int)
    ELSE (floor(random() * 2e6) - 1e6)::numeric / power(10::numeric, floor(random() * 20)::int) END"
EDGES[numeric]="'NaN', 'Infinity', '-Infinity', '0', '-0.0', '0.000', '1.5', '1.50', '1.500', '-1.5',
    '0.$(printf '0%.0s' $(seq 128))1', '-0.$(printf '0%.0s' $(seq 128))1',
    '$(printf '9%.0s' $(seq 38))$(printf '0%.0s' $(seq 88))', '-$(printf '9%.0s' $(seq 38))$(printf '0%.0s' $(seq 88))',
    '$(printf '1%.0s' $(seq 38))', '-$(printf '1%.0s' $(seq 38))', NULL, 'NaN'"

for t in int8 date timestamptz numeric; do
    t0=$(date +%s)
    out=$(psql_db <<SQL 2>&1
SET TIME ZONE 'UTC';
SET work_mem = '512MB';
SELECT clock_timestamp() AS start \gset
CREATE UNLOGGED TABLE v_$t (id serial, plain $t);
INSERT INTO v_$t (plain) SELECT v::$t FROM unnest(ARRAY[${EDGES[$t]}]::text[]) v;
-- about 1% NULLs and 1% copies of one value besides the generators' own repeats
INSERT INTO v_$t (plain)
SELECT CASE WHEN g % 97 = 0 THEN NULL WHEN g % 101 = 0 THEN (SELECT plain FROM v_$t WHERE id = 2)
            ELSE ${GEN[$t]} END
  FROM generate_series(1, $N) g;
ANALYZE v_$t;
SELECT 'gen=' || round(extract(epoch FROM clock_timestamp() - :'start'::timestamptz));
-- the terms, by parallel workers (the probe is PARALLEL SAFE)
SET max_parallel_workers_per_gather = $WORKERS;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
CREATE TEMP TABLE plan_$t (line text);
DO \$\$ DECLARE l text; BEGIN
  FOR l IN EXPLAIN (COSTS OFF) SELECT id, plain, kms_ore(plain, 'ore_order') FROM v_$t LOOP
    INSERT INTO plan_$t VALUES (l);
  END LOOP; END \$\$;
SELECT 'workers=' || coalesce((SELECT substring(line FROM '[0-9]+') FROM plan_$t WHERE line LIKE '%Workers Planned%'), '0');
CREATE UNLOGGED TABLE o_$t AS SELECT id, plain, kms_ore(plain, 'ore_order') AS term FROM v_$t;
SELECT 'terms=' || round(extract(epoch FROM clock_timestamp() - :'start'::timestamptz));
SET max_parallel_workers_per_gather = 0;
SELECT count(*) FILTER (WHERE plain IS NULL) || '|' || count(DISTINCT plain) || '|' || (count(*) - count(DISTINCT plain)) FROM o_$t;
-- the term stored inside the value is the probe's
SELECT count(*) FROM (SELECT plain, term FROM o_$t WHERE plain IS NOT NULL ORDER BY id LIMIT 2000) s
 WHERE kms_ore_term_send(kms_ore(kms_encrypt(plain, 'ore_order'))) IS DISTINCT FROM kms_ore_term_send(term);
SELECT count(*) FROM (
    SELECT row_number() OVER (ORDER BY term, id) AS by_term, row_number() OVER (ORDER BY plain, id) AS by_plain
      FROM o_$t) s
 WHERE by_term <> by_plain;
SELECT 'compare=' || round(extract(epoch FROM clock_timestamp() - :'start'::timestamptz));
DROP TABLE v_$t, o_$t;
SQL
)
    rc=$?
    t1=$(date +%s)
    phase() { echo "$out" | sed -n "s/^$1=//p"; }
    rest=$(echo "$out" | grep -Ev '^(gen|workers|terms|compare)=')
    nulls_distinct=$(echo "$rest" | sed -n 1p)
    stored=$(echo "$rest" | sed -n 2p)
    moved=$(echo "$rest" | sed -n 3p)
    if [ $rc -ne 0 ]; then
        check 1 "$t: the SQL ran ($out)"
        continue
    fi
    check "$([ "$stored" = 0 ] && echo 0 || echo 1)" "$t: the term inside kms_encrypt's value is the probe's for 2000 values ($stored differ)"
    check "$([ "$moved" = 0 ] && echo 0 || echo 1)" "$t: $N random values plus edges (NULLs|distinct|repeats = $nulls_distinct): ORDER BY the term puts every row where ORDER BY the plaintext does ($moved moved) in $((t1 - t0)) s (values $(phase gen) s, terms by $(phase workers) workers until $(phase terms) s, compared until $(phase compare) s)"
done
echo "# ore_order: $N values per type in $(( $(date +%s) - start )) s"
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$PGHOST" -p "$PGPORT" -d postgres -c "DROP DATABASE $DB"
exit $fail
