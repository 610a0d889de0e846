# bench/bench_lib.sh: shared by bench/run.sh and bench/profile.sh.
#
# On top of test/lib.sh (packages, throwaway cluster, KMS emulator, cleanup
# on EXIT): builds the extension from a snapshot of the tree (so a running
# benchmark never races an edit, and never runs `make clean` in the working
# tree), falls back to the build already installed when this tree does not
# build, and creates the benchmark's column key: aws-kms:alias/pgck-demo
# through the KMS emulator when that works, else local:bench (said so in the
# output).  Everything it starts is stopped by test/lib.sh's EXIT trap.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../test/lib.sh"

# PGCK_PG_CONFIG (the PostgreSQL to build against) comes from test/lib.sh
BENCH_KEY=bench              # blind index 'email': encrypt = AES-GCM + HMAC tag
BENCH_KEY_NOIDX=bench_noidx  # no blind index: encrypt = AES-GCM only
BENCH_BUILD_NOTE=""
BENCH_KMS_NOTE=""
BENCH_KMS_URI=""
BENCH_SO=""      # the pgcrypt_kms.so this run pins its functions to (see bench_pin_library)

bench_die() { echo "bench: $*" >&2; exit 1; }

# bench_build NO_BUILD: build + install a snapshot of the tree (needs PGCK_TMP).
bench_build() {
    local no_build=$1 snap="$PGCK_TMP/build" installed rev err
    installed="$($PGCK_PG_CONFIG --pkglibdir)/pgcrypt_kms.so"
    rev=$(git -C "$PGCK_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$PGCK_ROOT" status --porcelain --untracked-files=no -- src sql Makefile 2>/dev/null)" ] ||
       [ -n "$(git -C "$PGCK_ROOT" ls-files --others --exclude-standard -- src sql 2>/dev/null)" ]; then
        rev="$rev+uncommitted"
    fi
    if [ "$no_build" = 1 ]; then
        [ -f "$installed" ] || bench_die "--no-build, but pgcrypt_kms is not installed"
        BENCH_BUILD_NOTE="not rebuilt (--no-build): the installed pgcrypt_kms.so of $(date -r "$installed" '+%Y-%m-%d %H:%M')"
        bench_keep_library "$installed"
        return 0
    fi
    mkdir -p "$snap"
    tar -C "$PGCK_ROOT" --exclude=./.git --exclude=./bench --exclude='*.o' --exclude='*.bc' \
        --exclude='*.so' --exclude=./test/results -cf - . | tar -C "$snap" -xf -
    # a second try: another `make install` running at the same moment can make one fail
    if (PGCK_ROOT=$snap; pgck_build_install) >"$PGCK_TMP/build.log" 2>&1 ||
       (PGCK_ROOT=$snap; pgck_build_install) >"$PGCK_TMP/build.log" 2>&1; then
        BENCH_BUILD_NOTE="built and installed from this tree ($rev)"
        bench_keep_library "$snap/pgcrypt_kms.so"
    else
        err=$(grep -m1 -E 'error:|cannot|No rule' "$PGCK_TMP/build.log" || grep -E 'Error' "$PGCK_TMP/build.log" | tail -1)
        err=$(echo "$err" | cut -c1-200)
        tail -15 "$PGCK_TMP/build.log" | sed 's/^/bench: build: /' >&2
        [ -f "$installed" ] || { cat "$PGCK_TMP/build.log" >&2; bench_die "the build failed and no pgcrypt_kms is installed"; }
        BENCH_BUILD_NOTE="WARNING: this tree ($rev) does not build (${err:-see build log}); benchmarked the installed pgcrypt_kms.so of $(date -r "$installed" '+%Y-%m-%d %H:%M')"
        echo "bench: $BENCH_BUILD_NOTE" >&2
        bench_keep_library "$installed"
    fi
}

# A private copy of the library this run measures: every backend of the run
# loads exactly it, even if pgcrypt_kms is re-installed meanwhile.
bench_keep_library() {
    mkdir -p "$PGCK_TMP/lib"
    chmod 755 "$PGCK_TMP/lib"
    install -m 755 "$1" "$PGCK_TMP/lib/pgcrypt_kms.so"
    BENCH_SO="$PGCK_TMP/lib/pgcrypt_kms.so"
}

# Point the extension's C functions at the private copy and preload it, as the
# README's Operations section recommends (shared_preload_libraries: the
# per-DEK encryption counter is then kept in shared memory).  A throwaway
# cluster, so a catalog update is fine; CREATE EXTENSION itself loaded
# $libdir's copy, which is why the server restarts here before any key is used.
bench_pin_library() {
    [ -n "$BENCH_SO" ] || return 0
    pgck_psql -q -c "UPDATE pg_catalog.pg_proc SET probin = '$BENCH_SO' WHERE probin = '\$libdir/pgcrypt_kms'" \
        -c "ALTER SYSTEM SET shared_preload_libraries = '$BENCH_SO'" >/dev/null ||
        bench_die "could not pin the library"
    runuser -u postgres -- env ${PGCK_SERVER_ENV:-} "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" \
        -l "$PGCK_TMP/server.log" -w -t 60 restart >/dev/null ||
        { tail -20 "$PGCK_TMP/server.log" >&2; bench_die "the cluster did not restart with the library preloaded"; }
}

# bench_start CONF: emulator (when present) + cluster with extra postgresql.conf lines.
bench_start() {
    if [ -f "$PGCK_ROOT/test/kms_emulator/emulator.py" ]; then
        pgck_emulator_env
        pgck_start_emulator || { unset PGCK_EMULATOR_PORT; echo "bench: the KMS emulator did not start" >&2; }
    fi
    PGCK_EXTRA_CONF="$1"
    export PGCK_EXTRA_CONF
    pgck_start_cluster || { cat "$PGCK_TMP/server.log" >&2; bench_die "the cluster did not start"; }
}

# bench_create_key: extensions + the column key; sets BENCH_KMS_URI/_NOTE.
# The key is created in a session of its own, whose KMS counters it prints as
# a raw line (see bench_kms_stats_sql); call it without a subshell.
bench_create_key() {
    local out
    pgck_psql -q -c "CREATE EXTENSION pgcrypt_kms; CREATE EXTENSION pgcrypto;" >/dev/null ||
        bench_die "CREATE EXTENSION failed"
    bench_pin_library
    if [ -n "${PGCK_EMULATOR_PORT:-}" ]; then
        if out=$(pgck_psql -q -At -F $'\t' -c "$(bench_keys_sql aws-kms:alias/pgck-demo) $(bench_kms_stats_sql setup)" 2>&1); then
            BENCH_KMS_URI="aws-kms:alias/pgck-demo"
            BENCH_KMS_NOTE="aws-kms:alias/pgck-demo through the KMS emulator on loopback (the real AWS path: SigV4, HTTP, JSON 1.1)"
            echo "$out"
            return 0
        fi
        out=$(echo "$out" | grep -m1 ERROR | sed 's/^ERROR: *//')
        BENCH_KMS_NOTE="local:$BENCH_KEY (FALLBACK: aws-kms:alias/pgck-demo through the KMS emulator failed: ${out:-unknown error})"
    else
        BENCH_KMS_NOTE="local:$BENCH_KEY (FALLBACK: no KMS emulator at test/kms_emulator/emulator.py)"
    fi
    echo "bench: key: $BENCH_KMS_NOTE" >&2
    pgck_psql -q -At -F $'\t' -c "$(bench_keys_sql local:$BENCH_KEY) $(bench_kms_stats_sql setup)" ||
        bench_die "kms_create_key with local:$BENCH_KEY failed too"
    BENCH_KMS_URI="local:$BENCH_KEY"
}

# bench_floor_functions: bench/floor.c built with PGXS into the run's temporary
# directory (where the postgres user can read it; never installed), with its
# own copy of the extension's pure crypto module (src/aead.c, src/keypages.c;
# -Bsymbolic so that it calls its copy, not the preloaded extension's), and
# its functions created: pgck_floor(text), which returns its argument;
# pgck_floor_value(text, key), which only allocates and fills a result the
# size of a tagged value; pgck_floor_seal(text, key), pgck_floor_seal_plain(text,
# key), pgck_floor_hmac(text, key) and pgck_floor_open(bytea), the same with
# the primitives in them, called as src/aead.c calls them (see floor.c).
bench_floor_functions() {
    local f="$PGCK_TMP/floor"
    mkdir -p "$f" && chmod 755 "$f"
    cp "$BENCH_DIR/floor.c" "$BENCH_DIR/../src/aead.c" "$BENCH_DIR/../src/aead.h" "$BENCH_DIR/../src/envelope.h" \
        "$BENCH_DIR/../src/keypages.c" "$BENCH_DIR/../src/keypages.h" "$f/"
    printf '%s\n' 'MODULE_big = floor' 'OBJS = floor.o aead.o keypages.o' \
        'PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare' \
        'SHLIB_LINK = -lcrypto -Wl,-Bsymbolic' "PG_CONFIG = $PGCK_PG_CONFIG" \
        'PGXS := $(shell $(PG_CONFIG) --pgxs)' 'include $(PGXS)' >"$f/Makefile"
    make -C "$f" >"$f/build.log" 2>&1 || { cat "$f/build.log" >&2; bench_die "could not build bench/floor.c"; }
    chmod 755 "$f/floor.so"
    pgck_psql -q <<SQL >/dev/null || bench_die "could not create the floor functions"
CREATE FUNCTION pgck_floor(text) RETURNS text AS '$f/floor.so', 'pgck_floor'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION pgck_floor_value(text, text) RETURNS bytea AS '$f/floor.so', 'pgck_floor_value'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION pgck_floor_seal(text, text) RETURNS bytea AS '$f/floor.so', 'pgck_floor_seal'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION pgck_floor_hmac(text, text) RETURNS bytea AS '$f/floor.so', 'pgck_floor_hmac'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION pgck_floor_seal_plain(text, text) RETURNS bytea AS '$f/floor.so', 'pgck_floor_seal_plain'
    LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION pgck_floor_open(bytea) RETURNS text AS '$f/floor.so', 'pgck_floor_open'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
SQL
}

bench_keys_sql() {
    echo "SELECT kms_create_key('$BENCH_KEY', '$1', blind_index => 'email');"
    echo "SELECT kms_create_key('$BENCH_KEY_NOIDX', '$1');"
}

# SQL that prints this session's KMS counters as one raw line:
#   kms <session> <kms_calls> <Decrypt>,<GenerateDataKey>,<errors>
bench_kms_stats_sql() {
    cat <<SQL
SELECT 'kms', '$1', kms_calls,
       coalesce(by_operation->'Decrypt'->>'calls', '0') || ',' ||
       coalesce(by_operation->'GenerateDataKey'->>'calls', '0') || ',' || kms_errors
  FROM kms_cache_stats();
SQL
}

# bench_load ROWS: the source table (~20-byte emails us<n>@example.com, 19.9
# bytes on average for 1M rows, in random order), the same
# values under kms_encrypt and under pgcrypto's encrypt(); frozen, analyzed.
BENCH_PGC_KEY="'\\x$(printf '42%.0s' $(seq 1 32))'::bytea"
bench_load() {
    local rows=$1 session=${2:-load}
    pgck_psql -q -At -F $'\t' -v rows="$rows" <<SQL
SET client_min_messages = warning;
SELECT setseed(0.5);
CREATE TABLE bench_plain (id int4 NOT NULL, email text NOT NULL, email_b bytea NOT NULL);
INSERT INTO bench_plain
SELECT i, e, convert_to(e, 'UTF8')
  FROM (SELECT i, 'us' || i || '@example.com' AS e
          FROM generate_series(1, :rows) i ORDER BY random()) s;
CREATE TABLE bench_enc AS SELECT id, kms_encrypt(email, '$BENCH_KEY') AS email FROM bench_plain;
CREATE TABLE bench_pgc AS SELECT id, encrypt(email_b, $BENCH_PGC_KEY, 'aes') AS email FROM bench_plain;
VACUUM (FREEZE, ANALYZE) bench_plain, bench_enc, bench_pgc;
$(bench_kms_stats_sql "$session")
SQL
}
