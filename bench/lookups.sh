#!/usr/bin/env bash
# Point lookups that return the row, with 1 and with 16 clients, and a perf
# profile of the single-row path.
#
#   bash bench/lookups.sh [--rows N] [--runs N] [--seconds S] [--clients "1 16"]
#                         [--sequential] [--no-build] [--no-perf] [--no-callgrind]
#                         [--no-floor] [--sessions N] [--shared-cache N] [--perf-rounds N]
#                         [--app-role] [--out FILE]
#
# Like bench/run.sh (same build from a snapshot, cluster, KMS emulator and
# key), on N rows (default 200,000):
#   read_plain  SELECT id, email FROM ins_plain WHERE email = 'us'||:id||'@example.com'
#   read_enc    SELECT id, kms_decrypt(email) FROM ins_enc
#                WHERE kms_blind_index(email) = kms_blind_index('us'||:id||'@example.com', 'bench')
#   lookup_*    the same returning only id
#   read_floor  SELECT id, pgck_floor(email) FROM ins_floor
#                WHERE pgck_floor(email) = pgck_floor('us'||:id||'@example.com')
#               where pgck_floor (bench/floor.c, compiled into the temporary
#               directory, never installed) is a C function that returns its
#               argument: the same four extension call sites as read_enc
#               (projection, index condition, its recheck copy, runtime key)
#               with no work in them, i.e. the floor of any lookup through
#               extension functions (unless --no-floor)
# --shared-cache N sets pgcrypt_kms.shared_cache_size (default 0: off, the
# extension's default; the library is always preloaded).
# --app-role runs every measured statement (new sessions, pgbench, perf,
# callgrind) as what an application is: a login role, not a superuser, that
# holds only what the README grants a reader of the column (pgcrypt_kms_decrypt,
# which has kms_decrypt and kms_blind_index(text, key); kms_blind_index(enc_text)
# is PUBLIC) and SELECT on the three tables.  Every function call site then pays
# PostgreSQL's EXECUTE privilege check through role membership, and the table's
# SELECT check; the floor's function is revoked from PUBLIC and granted to
# pgcrypt_kms_decrypt, so that it pays the same.  Without it, as the superuser
# (those checks short-cut).
# First, the first statement of a new session: N (--sessions, default 25;
# 0 skips) rounds of one new psql session per read script (order rotating,
# each round a new :id), timed by psql's \timing; reported as median and
# 90th percentile.  Without the shared cache a new session unwraps its keys
# through the KMS, with it from shared memory.
# Then pgbench -n -M prepared, for each client count: a 3 s warm-up, then --runs
# rounds in which the plain and encrypted script run at the same time with the
# same clients for S seconds (other load hits both alike; the ratio reported is
# the median of the per-round tps ratios).  With --sequential (for a quiet
# machine) each round runs them one after the other instead, in alternating
# order: two workloads at once on 2 cores share the CPU, so the ratio then
# measures CPU per statement rather than the latency a client sees, which is
# what a 1-client tps is.  Then, unless --no-perf, perf samples (cpu-clock,
# call graphs) of the one backend of a 1-client pgbench running read_plain,
# read_floor and read_enc, --perf-rounds N (default 3) rounds of 10 s each in
# rotating order, while pgbench logs each transaction: the backend's on-CPU
# time per statement, by DSO (the server's cost of a statement, which the
# host's noise moves far less than tps), and where each spends its time;
# and unless --no-callgrind, instructions per statement of each under
# callgrind in a single-user backend, by function (see below).  Writes
# bench/results/lookups.md and prints it.  Nothing is asserted.
set -u
. "$(dirname "$0")/bench_lib.sh"
pgck_require_root "$@"

ROWS=200000
RUNS=5
SECS=10
CLIENT_LIST="1 16"
NO_BUILD=0
NO_PERF=0
NO_CALLGRIND=0
SEQUENTIAL=0
FLOOR=1
SESSIONS=25
SHARED_CACHE=0
PERF_ROUNDS=3
APP_ROLE=0
OUT="$BENCH_DIR/results/lookups.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --clients) CLIENT_LIST=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        --no-perf) NO_PERF=1; shift ;;
        --no-callgrind) NO_CALLGRIND=1; shift ;;
        --sequential) SEQUENTIAL=1; shift ;;
        --no-floor) FLOOR=0; shift ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        --shared-cache) SHARED_CACHE=$2; shift 2 ;;
        --perf-rounds) PERF_ROUNDS=$2; shift 2 ;;
        --app-role) APP_ROLE=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,55p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in ROWS RUNS SECS PERF_ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || { echo "--${v,,} must be a positive integer" >&2; exit 2; }
done
for v in SESSIONS SHARED_CACHE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "--$(echo "${v,,}" | tr _ -) must be an integer >= 0" >&2; exit 2; }
done
for c in $CLIENT_LIST; do
    [[ $c =~ ^[0-9]+$ ]] && [ "$c" -gt 0 ] || { echo "--clients: positive integers" >&2; exit 2; }
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
max_parallel_workers_per_gather = 0
pgcrypt_kms.shared_cache_size = $SHARED_CACHE"
bench_create_key >/dev/null
pgck_log "loading $ROWS rows"
bench_load "$ROWS" load >/dev/null || bench_die "loading failed"
pgck_psql -q <<SQL >/dev/null || bench_die "could not build the lookup tables"
SET client_min_messages = warning;
CREATE TABLE ins_plain (id int4 NOT NULL, email text NOT NULL);
CREATE INDEX ins_plain_email ON ins_plain (email);
INSERT INTO ins_plain SELECT id, email FROM bench_plain;
CREATE TABLE ins_enc (id int4 NOT NULL, email enc_text NOT NULL);
CREATE INDEX ins_enc_email_bidx ON ins_enc (kms_blind_index(email));
INSERT INTO ins_enc SELECT id, kms_encrypt(email, '$BENCH_KEY') FROM bench_plain;
VACUUM (FREEZE, ANALYZE) ins_plain, ins_enc;
SQL
if [ "$FLOOR" = 1 ]; then
    bench_floor_functions
    pgck_psql -q <<SQL >/dev/null || bench_die "could not build the floor table"
SET client_min_messages = warning;
CREATE TABLE ins_floor (id int4 NOT NULL, email text NOT NULL);
CREATE INDEX ins_floor_email ON ins_floor (pgck_floor(email));
INSERT INTO ins_floor SELECT id, email FROM bench_plain;
VACUUM (FREEZE, ANALYZE) ins_floor;
SQL
fi

# --app-role: the application's login role (see the header)
APP_USER=""
ROLE_NOTE="the bootstrap superuser (postgres)"
if [ "$APP_ROLE" = 1 ]; then
    APP_USER=bench_app
    ROLE_NOTE="$APP_USER, a login role (not a superuser) with pgcrypt_kms_decrypt and SELECT on the tables; the floor's function revoked from PUBLIC and granted to pgcrypt_kms_decrypt"
    pgck_psql -q <<SQL >/dev/null || bench_die "could not create the application role"
SET client_min_messages = warning;
CREATE ROLE $APP_USER LOGIN IN ROLE pgcrypt_kms_decrypt;
GRANT SELECT ON ins_plain, ins_enc TO $APP_USER;
SQL
    if [ "$FLOOR" = 1 ]; then
        pgck_psql -q <<SQL >/dev/null || bench_die "could not grant the floor to the application role"
GRANT SELECT ON ins_floor TO $APP_USER;
REVOKE EXECUTE ON FUNCTION pgck_floor(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgck_floor(text) TO pgcrypt_kms_decrypt;
SQL
    fi
    [ "$(pgck_psql -At -c "SELECT rolsuper FROM pg_roles WHERE rolname = '$APP_USER'")" = f ] ||
        bench_die "$APP_USER is a superuser"
fi
# as_app ARGS...: psql as the role the statements run as
as_app() { pgck_psql ${APP_USER:+-U "$APP_USER"} "$@"; }

PGBENCH="$PGBIN/pgbench"
D="$PGCK_TMP/lookups"
mkdir -p "$D" && chown postgres:postgres "$D"
PLAIN_WHERE="email = 'us' || :id || '@example.com'"
ENC_WHERE="kms_blind_index(email) = kms_blind_index('us' || :id || '@example.com', '$BENCH_KEY')"
script() { printf '\\set id random(1, %d)\nSELECT %s WHERE %s;\n' "$ROWS" "$2" "$3" >"$D/$1.sql"; }
script lookup_plain "id FROM ins_plain" "$PLAIN_WHERE"
script lookup_enc "id FROM ins_enc" "$ENC_WHERE"
script read_plain "id, email FROM ins_plain" "$PLAIN_WHERE"
script read_enc "id, kms_decrypt(email) FROM ins_enc" "$ENC_WHERE"
script read_floor "id, pgck_floor(email) FROM ins_floor" "pgck_floor(email) = pgck_floor('us' || :id || '@example.com')"
# stmt NAME ID: a script's statement with ID for :id (no trailing semicolon)
stmt() { local q; q=$(sed -n 2p "$D/$1.sql" | sed "s/:id/$2/"); echo "${q%;}"; }
chown postgres:postgres "$D"/*.sql
# each script finds its one row, and returns the plaintext
probe=$((ROWS / 3 + 1))
got=$(as_app -At -F ' ' -c "$(stmt read_enc "$probe")")
[ "$got" = "$probe us$probe@example.com" ] || bench_die "read_enc did not return the plaintext for id $probe: '$got'"
PAIRS=("lookup_plain lookup_enc" "read_plain read_enc")
if [ "$FLOOR" = 1 ]; then
    q=$(stmt read_floor "$probe")
    got=$(as_app -At -c "EXPLAIN (COSTS OFF) $q")
    case $got in *ins_floor_email*) ;; *) bench_die "read_floor does not use its index: $got" ;; esac
    got=$(as_app -At -F ' ' -c "$q")
    [ "$got" = "$probe us$probe@example.com" ] || bench_die "read_floor did not return its row for id $probe: '$got'"
    PAIRS+=("read_plain read_floor" "read_floor read_enc")
fi

# pb NAME CLIENTS SECONDS: start a pgbench in the background; its log is
# $D/NAME.CLIENTS.log.  pbwait: wait for those started (only those: the KMS
# emulator is a background job of this shell too).
PB=()
pb() {
    runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" "$PGBENCH" -n -M prepared ${APP_USER:+-U "$APP_USER"} \
        ${PB_LOG:+-l --log-prefix="$D/tx.$1"} -c "$2" -j "$(( $2 < 2 ? $2 : 2 ))" -T "$3" -f "$D/$1.sql" postgres >"$D/$1.$2.log" 2>&1 &
    PB+=("$!")
}
pbwait() {
    local p
    for p in "${PB[@]}"; do wait "$p"; done
    PB=()
}
# rotated K WORD...: the words rotated left by K (modulo their number): the
# order of round K when each round starts with the next script
rotated() { local k=$(( $1 % ($# - 1) )); shift; echo "${@:k+1}" "${@:1:k}"; }
tps() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$D/$1.$2.log"; }

# the first statement of new sessions (see the header)
FIRST="$D/first.tsv"
: >"$FIRST"
FIRST_SCRIPTS="read_plain read_enc"
[ "$FLOOR" = 1 ] && FIRST_SCRIPTS="read_plain read_floor read_enc"
set -- $FIRST_SCRIPTS
if [ "$SESSIONS" -gt 0 ]; then
    pgck_log "the first statement of $SESSIONS new sessions per read script"
    for r in $(seq 1 "$SESSIONS"); do
        id=$(( (r * 7919) % ROWS + 1 ))
        order=($(rotated "$r" "$@"))
        for s in "${order[@]}"; do
            q=$(stmt "$s" "$id")
            ms=$(as_app -At -c '\timing on' -c "$q" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | head -1)
            [ -n "$ms" ] || bench_die "new session: $s gave no timing"
            printf '%s\t%s\n' "$s" "$ms" >>"$FIRST"
        done
    done
fi

RES="$D/results.tsv"
: >"$RES"
for c in $CLIENT_LIST; do
    for pair in "${PAIRS[@]}"; do
        set -- $pair
        if [ "$SEQUENTIAL" = 1 ]; then
            pgck_log "$c client(s): $1 vs $2, warm-up then $RUNS x ${SECS} s each, one after the other"
            pb "$1" "$c" 3; pbwait; pb "$2" "$c" 3; pbwait
        else
            pgck_log "$c client(s): $1 vs $2, warm-up then $RUNS x ${SECS} s at once"
            pb "$1" "$c" 3; pb "$2" "$c" 3; pbwait
        fi
        for r in $(seq 1 "$RUNS"); do
            if [ "$SEQUENTIAL" = 0 ]; then
                pb "$1" "$c" "$SECS"; pb "$2" "$c" "$SECS"
            elif [ $((r % 2)) = 1 ]; then
                pb "$1" "$c" "$SECS"; pbwait; pb "$2" "$c" "$SECS"
            else
                pb "$2" "$c" "$SECS"; pbwait; pb "$1" "$c" "$SECS"
            fi
            pbwait
            a=$(tps "$1" "$c"); b=$(tps "$2" "$c")
            [ -n "$a" ] && [ -n "$b" ] || { cat "$D/$1.$c.log" "$D/$2.$c.log" >&2; bench_die "pgbench failed"; }
            printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$1" "$2" "$a" "$b" >>"$RES"
        done
    done
done

# perf: one 1-client pgbench backend per read script, PERF_ROUNDS rounds in
# rotating order.  Each round samples the backend (cpu-clock, 999 Hz, call
# graphs) for 10 s while pgbench logs every transaction (-l), and divides the
# backend's sampled on-CPU time by the transactions that ended inside the
# window: on-CPU µs per statement, split by DSO.  Unlike tps, which the
# client, the scheduler and the host's other tenants move by ±10 % a round,
# this is what the statement costs the server.  The symbol lists are from the
# first round.
PERF_NOTE="skipped (--no-perf or perf unusable)"
PERF_SCRIPTS="read_plain read_enc"
[ "$FLOOR" = 1 ] && PERF_SCRIPTS="read_plain read_floor read_enc"
CPU="$D/cpu.tsv"
: >"$CPU"
# pgbench_backend [running]: the pid of a pgbench backend, if one is
# connected; with "running", only one that has run a statement (pgbench first
# opens a connection of its own, runs nothing on it and closes it: sampling
# that pid would sample nothing)
pgbench_backend() {
    pgck_psql -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'
                      ${1:+AND query <> ''} LIMIT 1"
}
if [ "$NO_PERF" = 0 ] && command -v perf >/dev/null && perf record -q -o "$D/probe.data" -- true >/dev/null 2>&1; then
    PERF_NOTE="cpu-clock at 999 Hz with call graphs, one backend serving a 1-client pgbench, 10 s per round, $PERF_ROUNDS rounds per script in rotating order"
    set -- $PERF_SCRIPTS
    for r in $(seq 1 "$PERF_ROUNDS"); do
        order=($(rotated $((r - 1)) "$@"))
        for s in "${order[@]}"; do
            pgck_log "perf: $s, round $r"
            rm -f "$D/tx.$s".*
            # the last round's backend may still be exiting: never sample it
            for _ in $(seq 1 50); do
                [ -z "$(pgbench_backend)" ] && break
                sleep 0.1
            done
            PB_LOG=1 pb "$s" 1 14
            pid=""
            for _ in $(seq 1 50); do
                pid=$(pgbench_backend running)
                [ -n "$pid" ] && break
                sleep 0.1
            done
            [ -n "$pid" ] || bench_die "perf: no pgbench backend"
            sleep 1
            t0=$(date +%s.%N)
            perf record -q -F 999 -g -p "$pid" -o "$D/$s.$r.data" -- sleep 10 >"$D/perf.$s.$r.log" 2>&1
            t1=$(date +%s.%N)
            pbwait
            # pgbench -l: client, transaction, latency, script, epoch s, µs
            n=$(cat "$D/tx.$s".* | awk -v a="$t0" -v b="$t1" '{t = $5 + $6 / 1e6; if (t >= a && t < b) n++} END {print n + 0}')
            [ "$n" -gt 0 ] || bench_die "perf: no $s transaction inside the sampled window"
            ns=$(perf script -i "$D/$s.$r.data" -F period 2>/dev/null | awk '{t += $1} END {printf "%.0f", t}')
            [ "${ns:-0}" -gt 0 ] || { cat "$D/perf.$s.$r.log" >&2; bench_die "perf: no sample of the $s backend (pid $pid) in round $r"; }
            dso=$(perf report -i "$D/$s.$r.data" --stdio --no-children --sort dso -g none 2>/dev/null |
                  awk '/^ *[0-9.]+%/ {gsub("%", "", $1); d = $2; sub(/\.so.*/, "", d); gsub(/[][]/, "", d); printf "%s=%s ", d, $1}')
            printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$r" "$n" "$ns" "$dso" >>"$CPU"
            if [ "$r" = 1 ]; then
                perf report -i "$D/$s.$r.data" --stdio --no-children --sort dso,sym --percent-limit 0.7 -g none \
                    2>/dev/null | grep -v '^#' | grep -v '^$' >"$D/$s.self.txt"
                perf report -i "$D/$s.$r.data" --stdio --children --sort sym --percent-limit 0.5 -g none \
                    2>/dev/null | grep -v '^#' | grep -v '^$' >"$D/$s.children.txt"
                echo "$(tps "$s" 1)" >"$D/$s.perf_tps"
            fi
            rm -f "$D/tx.$s".* "$D/$s.$r.data" "$D/perf.$s.$r.log"
        done
    done
fi

# callgrind: instructions per statement of each read script, as the
# difference between a single-user backend executing it CG_LO and CG_HI times
# (so start-up, the key unwrap and the warm-up cancel out), by function
# (inclusive), from `postgres --single` under callgrind with collection on
# inside ProcessUtility only: all of EXECUTE (plan cache, executor start, run
# and end, sending the row), not the parsing of the EXECUTE line itself
# (Debian's postgres is stripped: exec_simple_query has no symbol).
CG_NOTE="skipped (--no-callgrind or valgrind missing)"
CG_LO=100
CG_HI=600
if [ "$NO_CALLGRIND" = 0 ] && command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" -m fast -w stop >/dev/null ||
        bench_die "could not stop the cluster"
    CG_NOTE="postgres --single under callgrind, collection inside ProcessUtility (all of EXECUTE); (Ir of $CG_HI statements - Ir of $CG_LO) / $((CG_HI - CG_LO))"
    CG_SCRIPTS="read_plain read_enc"
    [ "$FLOOR" = 1 ] && CG_SCRIPTS="$CG_SCRIPTS read_floor"
    for s in $CG_SCRIPTS; do
        # the pgbench script's statement, its :id as the parameter
        prep="PREPARE q(int) AS $(stmt "$s" '$1')"
        for n in $CG_LO $CG_HI; do
            pgck_log "callgrind: $s x $n"
            {
                [ -n "$APP_USER" ] && echo "SET ROLE $APP_USER"
                echo "$prep"
                for i in $(seq 1 "$n"); do echo "EXECUTE q($(( (i * 7919) % ROWS + 1 )))"; done
            } >"$D/$s.$n.sql"
            runuser -u postgres -- env ${AWS_ACCESS_KEY_ID:+AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID} \
                ${AWS_SECRET_ACCESS_KEY:+AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY} \
                valgrind --tool=callgrind --callgrind-out-file="$D/$s.$n.cg" \
                --collect-atstart=no --toggle-collect=ProcessUtility \
                "$PGBIN/postgres" --single -D "$PGCK_PGDATA" postgres <"$D/$s.$n.sql" >"$D/$s.$n.cglog" 2>&1 ||
                { tail -20 "$D/$s.$n.cglog" >&2; bench_die "callgrind run of $s failed"; }
            grep -q ERROR "$D/$s.$n.cglog" && { grep -m3 ERROR "$D/$s.$n.cglog" >&2; bench_die "callgrind: $s: a statement failed"; }
            callgrind_annotate --inclusive=yes --threshold=100 "$D/$s.$n.cg" >"$D/$s.$n.ann" 2>/dev/null
        done
    done
    /usr/bin/python3 - "$D" "$CG_LO" "$CG_HI" >"$D/callgrind.md" <<'PY'
import os, re, sys
d, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(path):
    total, fns = 0, {}
    for line in open(path):
        m = re.match(r'\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(?:\S+:)?(\S.*?)(?:\s+\[[^\]]*\])?\s*$', line)
        if not m:
            continue
        ir = int(m.group(1).replace(',', ''))
        name = m.group(2)
        if 'PROGRAM TOTALS' in line:
            total = ir
        elif name not in fns:
            fns[name] = ir
    return total, fns
per = {}
for s in ('read_plain', 'read_enc', 'read_floor'):
    if not os.path.exists(f'{d}/{s}.{lo}.ann'):
        continue
    tl, fl = load(f'{d}/{s}.{lo}.ann')
    th, fh = load(f'{d}/{s}.{hi}.ann')
    n = hi - lo
    per[s] = ((th - tl) / n, {k: (fh[k] - fl.get(k, 0)) / n for k in fh})
p, e = per['read_plain'][0], per['read_enc'][0]
if p <= 0 or e <= 0:
    print('callgrind collected nothing (no ProcessUtility symbol?)')
    sys.exit(0)
print(f'Instructions per statement: read_plain {p:,.0f}, read_enc {e:,.0f} (+{e - p:,.0f}, {e / p:.2f}x).')
if 'read_floor' in per and per['read_floor'][0] > 0:
    f = per['read_floor'][0]
    print(f'The floor (read_floor: the same call sites, a no-op C function): {f:,.0f} (+{f - p:,.0f} over '
          f'read_plain); read_enc is +{e - f:,.0f} over the floor.')
print()
keys = ['pgck_kms_decrypt', 'pgck_kms_blind_index_text', 'key_for', 'version_for', 'decrypt_value',
        'pgck_keycache_key', 'pgck_keycache_version', 'statement_now', 'AcceptInvalidationMessages',
        'pgck_blind_index_tag', 'pgck_hmac_sha256', 'pgck_aead_open', 'gcm_direct', 'pgck_envelope_parse',
        'text_to_cstring', 'MemoryContextAlloc', 'standard_ExecutorStart', 'ExecInitNode', 'ExecInitExprRec',
        'ExecBuildProjectionInfo', 'ExecInitQual', 'ExecIndexBuildScanKeys', 'fmgr_info',
        'fmgr_info_cxt_security', 'object_aclcheck', 'pg_proc_aclcheck', 'pg_proc_aclmask', 'aclmask',
        'has_privs_of_role', 'SysCacheGetAttr', 'nocachegetattr', 'pg_detoast_datum', 'SearchCatCache1',
        'PortalRun', 'standard_ExecutorRun', 'standard_ExecutorEnd', 'index_getnext_slot', 'printtup',
        'exec_simple_query', 'GetCachedPlan', 'pg_plan_queries', 'pgck_floor']
fl = 'read_floor' in per
def ir(s, k):
    return next((v for n, v in per[s][1].items() if n == k or n.endswith(' ' + k) or n.startswith(k + "'")), 0)
print('| function (inclusive Ir per statement) | read_plain | read_enc | difference |' + (' read_floor |' if fl else ''))
print('|---|---:|---:|---:|' + ('---:|' if fl else ''))
for k in keys:
    a, b = ir('read_plain', k), ir('read_enc', k)
    c = ir('read_floor', k) if fl else 0
    if a or b or c:
        print(f'| `{k}` | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |' + (f' {c:,.0f} |' if fl else ''))
PY
fi

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print ""; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
{
    echo "# pgcrypt_kms point lookups: plain text B-tree vs blind index"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); runtime $(($(date +%s) - T_START)) s; $ROWS rows"
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $("$PGBIN/postgres" --version); $(openssl version)"
    echo "- load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- extension: $BENCH_BUILD_NOTE"
    echo "- KMS: $BENCH_KMS_NOTE"
    echo "- statements run as: $ROLE_NOTE"
    if [ "$SEQUENTIAL" = 1 ]; then
        echo "- method: pgbench -n -M prepared, plain and encrypted script one after the other (order alternating), $RUNS rounds of ${SECS} s each;"
    else
        echo "- method: pgbench -n -M prepared, plain and encrypted script at the same time, $RUNS rounds of ${SECS} s;"
    fi
    echo "  ratio = median of the per-round tps ratios (encrypted / plain)"
    echo
    echo "| clients | query | plain tps (median) | encrypted tps (median) | ratio | per-round ratios |"
    echo "|---:|---|---:|---:|---:|---|"
    for c in $CLIENT_LIST; do
        for pair in "${PAIRS[@]}"; do
            set -- $pair
            rows=$(awk -F'\t' -v c="$c" -v a="$1" -v b="$2" '$1 == c && $2 == a && $3 == b' "$RES")
            pm=$(echo "$rows" | cut -f4 | median)
            em=$(echo "$rows" | cut -f5 | median)
            ratios=$(echo "$rows" | awk -F'\t' '{printf "%.3f\n", $5 / $4}')
            rm_=$(echo "$ratios" | median)
            case $pair in
                "lookup_plain lookup_enc") label="id only" ;;
                "read_plain read_enc") label="id + email (kms_decrypt)" ;;
                "read_plain read_floor") label="floor: id + pgck_floor(email), no-op C function (as \"encrypted\")" ;;
                *) label="ours against the floor: read_enc (as \"encrypted\") / read_floor (as \"plain\")" ;;
            esac
            printf '| %s | %s | %.0f | %.0f | **%.2f×** | %s |\n' "$c" "$label" "$pm" "$em" "$rm_" "$(echo "$ratios" | paste -sd' ')"
        done
    done
    if [ -s "$FIRST" ]; then
        echo
        echo "## The first statement of a new session"
        echo
        echo "$SESSIONS new sessions per script (psql, \\timing of its first statement, order rotating); pgcrypt_kms.shared_cache_size = $SHARED_CACHE."
        echo
        echo "| script | median ms | 90th percentile ms |"
        echo "|---|---:|---:|"
        for s in $FIRST_SCRIPTS; do
            v=$(awk -F'\t' -v s="$s" '$1 == s {print $2}' "$FIRST" | sort -g)
            p90=$(echo "$v" | awk '{a[NR]=$1} END {i = int(NR * 0.9 + 0.5); if (i < 1) i = 1; print a[i]}')
            printf '| %s | %.2f | %.2f |\n' "$s" "$(echo "$v" | median)" "$p90"
        done
    fi
    echo
    echo "## callgrind: instructions per statement ($CG_NOTE)"
    echo
    [ -f "$D/callgrind.md" ] && cat "$D/callgrind.md"
    echo
    echo "## perf: the single-row path ($PERF_NOTE)"
    if [ -s "$CPU" ]; then
        echo
        echo "The backend's on-CPU time per statement (sampled on-CPU time / statements that ended in the window):"
        echo
        /usr/bin/python3 - "$CPU" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    s, r, n, ns, dso = (line.rstrip('\n').split('\t') + [''])[:5]
    shares = dict(kv.split('=') for kv in dso.split())
    rows.setdefault(s, []).append((int(r), int(ns) / int(n) / 1000, {k: float(v) for k, v in shares.items()}))
groups = [('kernel', 'kernel.kallsyms'), ('postgres', 'postgres'), ('libc', 'libc'),
          ('libcrypto', 'libcrypto'), ('pgcrypt_kms.so', 'pgcrypt_kms'), ('floor.so', 'floor')]
user = ('postgres', 'libc', 'libcrypto', 'pgcrypt_kms', 'floor', 'vdso')
def med(xs):
    return statistics.median(xs) if xs else 0.0
def user_us(u, sh):
    return u * sum(v for k, v in sh.items() if k in user) / 100
plain = med([u for _, u, _ in rows.get('read_plain', [])])
plain_user = med([user_us(u, sh) for _, u, sh in rows.get('read_plain', [])])
print('| script | on-CPU µs per statement (median) | per round | against read_plain | '
      + ' | '.join(g for g, _ in groups) + ' | user space: median (per round) | against read_plain, user space |')
print('|---|---:|---|---:|' + '---:|' * len(groups) + '---:|---:|')
for s in ('read_plain', 'read_floor', 'read_enc'):
    if s not in rows:
        continue
    rs = sorted(rows[s])
    m = med([u for _, u, _ in rs])
    parts = [m * statistics.mean(sh.get(d, 0.0) for _, _, sh in rs) / 100 for _, d in groups]
    mu = med([user_us(u, sh) for _, u, sh in rs])
    rel = f'{plain / m:.2f}×' if plain > 0 and m > 0 else ''
    relu = f'{plain_user / mu:.2f}×' if plain_user > 0 and mu > 0 else ''
    print(f'| {s} | {m:.1f} | ' + ' '.join(f'{u:.1f}' for _, u, _ in rs) + f' | {rel} | '
          + ' | '.join(f'{p:.2f}' for p in parts) + f' | {mu:.2f} ('
          + ' '.join(f'{user_us(u, sh):.1f}' for _, u, sh in rs) + f') | {relu} |')
print()
print('("against read_plain" is read_plain\'s µs over the script\'s: the tps ratio a workload bound by this '
      'backend\'s CPU would see. The DSO columns split the median by each DSO\'s mean share over the rounds. '
      'The kernel\'s part (the socket, the wake-ups) is the same work for every script but moves the most '
      'with the host; "user space" leaves it out.)')
PY
    fi
    for s in read_plain read_enc; do
        [ -f "$D/$s.self.txt" ] || continue
        echo
        echo "### $s (1 client alone: $(cat "$D/$s.perf_tps") tps)"
        echo
        echo "Self time, top entries (dso, symbol):"
        echo
        echo '```'
        head -30 "$D/$s.self.txt"
        echo '```'
        echo
        echo "Inclusive time of the extension's and OpenSSL's entry points and the executor:"
        echo
        echo '```'
        grep -E 'pgck_|EVP_|ossl_gcm|SHA256|exec_execute_message|PortalRun|ExecutorStart|ExecutorEnd|ExecInitNode|index_getnext|printtup|ExecIndexScan|ReadyForQuery|pq_getbyte|secure_read|secure_write|AcceptInvalidation|palloc|MemoryContext' \
            "$D/$s.children.txt" | head -40
        echo '```'
    done
} >"$D/report.md"
mkdir -p "$(dirname "$OUT")"
cp "$D/report.md" "$OUT"
cp "$RES" "${OUT%.md}.raw.tsv"
[ -s "$FIRST" ] && cp "$FIRST" "${OUT%.md}.first.tsv"
cat "$OUT"
