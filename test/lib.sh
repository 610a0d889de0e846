# test/lib.sh: shared by test/run.sh, test/demo.sh and bench/run.sh.
#
# Installs what is missing (Debian packages), builds and installs the
# extension, and runs a throwaway PostgreSQL cluster and the KMS emulator on
# loopback, as the unprivileged "postgres" OS user, in a temp dir of its own.
# Everything started here is stopped by pgck_cleanup (registered on EXIT), by
# pid, also when a step fails.

set -o pipefail

PGCK_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The PostgreSQL the suite builds against and runs: its pg_config.  Debian 12's
# 15 by default; test/matrix.sh sets it to a 17 or 18 built by test/pg_build.sh
# (/opt/pgck/pgNN/bin/pg_config).  Everything below derives from it.
PGCK_PG_CONFIG=${PGCK_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PGCK_PG_CONFIG
PGCK_PACKAGES_BUILD="make gcc libc6-dev pkg-config postgresql-15 postgresql-server-dev-15 libssl-dev libcurl4-openssl-dev libjansson-dev libp11-kit-dev"
PGCK_PACKAGES_TEST="python3 python3-cryptography python3-botocore python3-psycopg python3-psycopg2 python3-hvac python3-pykmip softhsm2 awscli openssl curl procps gdb libipc-run-perl clang libclang-rt-14-dev"
# building Citus for tap/030_citus (test/citus_build.sh; columnar includes zstd.h and lz4.h)
PGCK_PACKAGES_TEST="$PGCK_PACKAGES_TEST bison flex liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev xz-utils patch"

pgck_log() { printf '\n== %s\n' "$*"; }

# Re-run the calling script as root (through sudo) when it is not.
pgck_require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            exec sudo -E bash "$0" "$@"
        fi
        echo "run this as root (or install sudo)" >&2
        exit 1
    fi
}

# Install the Debian packages that are missing; nothing if all are there.
pgck_install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    pgck_log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build in $PGCK_ROOT and install: into the private installation of
# pgck_stage ($PGCK_INST) when there is one, else into the system's.
pgck_build_install() {
    export PG_CONFIG=$PGCK_PG_CONFIG
    pgck_log "building and installing pgcrypt_kms for PostgreSQL $($PG_CONFIG --version | sed 's/^PostgreSQL //')${PGCK_INST:+ into $PGCK_INST}"
    make -C "$PGCK_ROOT" -s clean >/dev/null 2>&1 || true
    make -C "$PGCK_ROOT" -s -j2 PG_CONFIG="$PG_CONFIG" ${PGCK_CFLAGS:+PGCK_CFLAGS="$PGCK_CFLAGS"} ${PGCK_LDFLAGS:+PGCK_LDFLAGS="$PGCK_LDFLAGS"}
    make -C "$PGCK_ROOT" -s install PG_CONFIG="$PG_CONFIG" ${PGCK_INST:+DESTDIR="$PGCK_INST"} >/dev/null
}

# pgck_build_install_other PG_CONFIG: stage another PostgreSQL installation
# into $PGCK_INST beside the suite's (after pgck_stage) and build and install
# pgcrypt_kms for it from a copy of the staged tree (the pg_upgrade test).
pgck_build_install_other() {
    local src="$PGCK_TMP/src_other_$(basename "$(dirname "$(dirname "$1")")")"
    pgck_stage_pg "$1" || return 1
    rm -rf "$src" && mkdir -p "$src" || return 1
    tar -C "$PGCK_ROOT" --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./test/results -cf - . |
        tar -C "$src" -xf - || return 1
    make -C "$src" -s clean >/dev/null 2>&1 || true
    make -C "$src" -s -j2 PG_CONFIG="$1" || return 1
    make -C "$src" -s install PG_CONFIG="$1" DESTDIR="$PGCK_INST" >/dev/null
}

# The server binaries the suite runs: the private installation's, if staged.
pgck_pgbin() {
    echo "${PGCK_INST:-}$("$PGCK_PG_CONFIG" --bindir)"
}

# pgck_stage_pg PG_CONFIG: copy that PostgreSQL installation into $PGCK_INST
# at the same paths (Debian's: /usr/lib/postgresql/NN and /usr/share/
# postgresql/NN; a prefix install such as /opt/pgck/pgNN: the whole prefix).
pgck_stage_pg() {
    local pgbindir pgshare top
    pgbindir=$("$1" --bindir) && pgshare=$("$1" --sharedir) || return 1
    top=$(dirname "$pgbindir")
    [ -d "$PGCK_INST$top" ] && return 0
    mkdir -p "$PGCK_INST$(dirname "$top")" || return 1
    cp -a "$top" "$PGCK_INST$(dirname "$top")/" || return 1
    case $pgshare in
        "$top"/*) ;;
        *) mkdir -p "$PGCK_INST$(dirname "$pgshare")" && cp -a "$pgshare" "$PGCK_INST$(dirname "$pgshare")/" || return 1 ;;
    esac
}

# Stage the run in $PGCK_TMP (after pgck_make_tmp): a copy of the source tree
# that the postgres user can read (the clone may sit in a directory only root
# can enter, or in a path with spaces), and a private copy of the PostgreSQL
# installation (PostgreSQL finds its share/ and lib/ relative to its binaries)
# that the extension is installed into.  Nothing is built in the clone and
# nothing is installed into the system, so runs from several trees, or a run
# while someone builds, never disturb each other.  Sets PGCK_ROOT to the copy
# (PGCK_SOURCE keeps the clone) and PGCK_INST to the installation's root.
pgck_stage() {
    local pgbindir pgshare
    PGCK_SOURCE=$PGCK_ROOT
    mkdir -p "$PGCK_TMP/src"
    tar -C "$PGCK_SOURCE" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
        --exclude=./test/results --exclude=./bench/results --exclude=./test/fuzz/bin -cf - . |
        tar -C "$PGCK_TMP/src" -xf - || return 1
    PGCK_ROOT="$PGCK_TMP/src"
    PGCK_INST="$PGCK_TMP/inst"
    pgck_stage_pg "$PGCK_PG_CONFIG" || return 1
    chown -R postgres:postgres "$PGCK_TMP/src"
    export PGCK_SOURCE PGCK_ROOT PGCK_INST
}

PGCK_PIDS=()
PGCK_SERVER_RUNUSER=""
PGCK_TMP=""
PGCK_PGDATA=""

pgck_cleanup() {
    local pid
    if [ -n "$PGCK_PGDATA" ] && [ -f "$PGCK_PGDATA/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    # a postmaster started directly that never wrote its pid file
    if [ -n "${PGCK_SERVER_RUNUSER:-}" ]; then
        pkill -P "$PGCK_SERVER_RUNUSER" 2>/dev/null || true
        kill "$PGCK_SERVER_RUNUSER" 2>/dev/null || true
    fi
    for pid in "${PGCK_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PGCK_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PGCK_PIDS=()
    if [ -n "$PGCK_TMP" ] && [ -z "${PGCK_KEEP_TMP:-}" ]; then
        rm -rf "$PGCK_TMP"
    fi
}

# A temp dir that the postgres user owns.
pgck_make_tmp() {
    PGCK_TMP=$(mktemp -d /tmp/pgcrypt_kms.XXXXXX)
    chown postgres:postgres "$PGCK_TMP"
    chmod 700 "$PGCK_TMP"
    export PGCK_TMP
    trap pgck_cleanup EXIT
    trap 'exit 130' INT TERM
}

pgck_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Start the KMS emulator on a free loopback port: sets PGCK_EMULATOR_PORT.
pgck_start_emulator() {
    local portfile="$PGCK_TMP/emulator.port" i
    /usr/bin/python3 "$PGCK_ROOT/test/kms_emulator/emulator.py" --port-file "$portfile" \
        --log "$PGCK_TMP/emulator.log" >>"$PGCK_TMP/emulator.out" 2>&1 &
    PGCK_PIDS+=($!)
    for i in $(seq 1 100); do
        [ -s "$portfile" ] && break
        sleep 0.1
    done
    [ -s "$portfile" ] || { echo "KMS emulator did not start" >&2; cat "$PGCK_TMP/emulator.out" >&2; return 1; }
    PGCK_EMULATOR_PORT=$(cat "$portfile")
    export PGCK_EMULATOR_PORT
    export PGCK_EMULATOR_URL="http://127.0.0.1:$PGCK_EMULATOR_PORT"
}

# The emulator's static test identity (a test credential, not a secret).
pgck_emulator_env() {
    export AWS_ACCESS_KEY_ID=AKIDPGCKTEST000000001
    export AWS_SECRET_ACCESS_KEY=pgck-test-secret-0000000000000000000000
    export AWS_REGION=us-east-1
    unset AWS_SESSION_TOKEN AWS_PROFILE
    export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
    export AWS_EC2_METADATA_DISABLED=true
}

# initdb + start a cluster in $PGCK_TMP/data, socket in $PGCK_TMP, free port.
# Extra postgresql.conf lines come from $PGCK_EXTRA_CONF.
pgck_start_cluster() {
    PGBIN=$(pgck_pgbin)
    PGCK_PGDATA="$PGCK_TMP/data"
    PGPORT=$(pgck_free_port)
    PGHOST="$PGCK_TMP"
    export PGBIN PGPORT PGHOST PGCK_PGDATA
    export PGUSER=postgres PGDATABASE=postgres
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGCK_PGDATA" -A trust -U postgres --no-sync >"$PGCK_TMP/initdb.log" 2>&1
    cat >>"$PGCK_PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$PGCK_TMP'
fsync = off
max_connections = 40
log_line_prefix = '%m [%p] %q%u@%d '
pgcrypt_kms.local_key_file = '$PGCK_TMP/local_master.key'
pgcrypt_kms.aws_region = 'us-east-1'
${PGCK_EMULATOR_PORT:+pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$PGCK_EMULATOR_PORT'}
${PGCK_EXTRA_CONF:-}
CONF
    if [ -z "${PGCK_SERVER_ENV:-}" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" \
            -l "$PGCK_TMP/server.log" -w -t 60 start >/dev/null
        return
    fi
    # an environment for the server alone (sanitizer options): start the
    # postmaster itself, so that pg_ctl never runs with it
    runuser -u postgres -- env $PGCK_SERVER_ENV "$PGBIN/postgres" -D "$PGCK_PGDATA" \
        >>"$PGCK_TMP/server.log" 2>&1 &
    PGCK_SERVER_RUNUSER=$!
    local i
    for i in $(seq 1 120); do
        runuser -u postgres -- "$PGBIN/pg_isready" -q -h "$PGHOST" -p "$PGPORT" && return 0
        sleep 0.5
    done
    echo "the server did not start" >&2
    return 1
}

pgck_psql() {
    runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" "$PGBIN/psql" -X -v ON_ERROR_STOP=1 "$@"
}
