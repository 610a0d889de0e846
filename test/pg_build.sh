#!/usr/bin/env bash
# test/pg_build.sh MAJOR: make a PostgreSQL MAJOR (17, 18) installation for
# the test matrix in /opt/pgck/pgMAJOR (PGCK_PG_PREFIX_BASE overrides /opt/pgck)
# and print the path of its pg_config on the last line of stdout.  Progress
# goes to stderr.
#
# 15 is Debian 12's own (postgresql-15 + postgresql-server-dev-15): nothing is
# built, the script prints /usr/lib/postgresql/15/bin/pg_config.
#
# The upstream source tarball postgresql-MAJOR.*.tar.bz2 is looked for in
#   1. $PGCK_THIRD_PARTY
#   2. ../shared/third_party beside the clone (what CI provides, read-only)
#   3. Debian's archive: `apt-get source --download-only postgresql-MAJOR`
#      from a deb-src line for trixie (17) or sid (18), in an apt configuration
#      of its own (the system's sources are not touched)
#   4. Debian's pool: the upstream tarball of a release pinned below, kept only
#      if its sha256 is the pinned one.  apt cannot be used when a suite's
#      index names a release whose files have already left the pool (trixie
#      named 17.12 while the pool held 17.11), and then a clone with nothing
#      beside it had no 17 to test against.
# and when none has it the script fails, naming what is missing.
#
# The build is cached: the prefix holds a stamp with the tarball's sha256 and
# the configure options, and a second run with the same tarball (or with no
# tarball at all but a stamped prefix) builds nothing.
set -eu -o pipefail

MAJOR=${1:?usage: test/pg_build.sh MAJOR | --deps}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLONE=$(cd "$HERE/.." && pwd)
# when run from the staged copy of test/run.sh, the clone is PGCK_SOURCE
[ -n "${PGCK_SOURCE:-}" ] && CLONE=$PGCK_SOURCE
BASE=${PGCK_PG_PREFIX_BASE:-/opt/pgck}
PREFIX=$BASE/pg$MAJOR
STAMP=$PREFIX/.pgck-build-stamp
CONFIGURE_OPTS="--prefix=$PREFIX --with-openssl --without-icu --enable-tap-tests"
# the contrib modules the suite loads (built with PGXS against the installed
# prefix, so a cached prefix that lacks one gets it without a rebuild)
CONTRIB="pgcrypto pg_stat_statements amcheck"
BUILD_DEPS="make gcc libc6-dev pkg-config bison flex libreadline-dev zlib1g-dev libssl-dev libipc-run-perl perl bzip2 dpkg-dev curl"

log() { printf '%s\n' "pg_build $MAJOR: $*" >&2; }
die() { printf '%s\n' "pg_build $MAJOR: FAILED: $*" >&2; exit 1; }

install_deps() {
    local missing=() p
    for p in $BUILD_DEPS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian build dependencies: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "$MAJOR" = --deps ]; then
    # only the Debian build dependencies (test/matrix.sh installs them up front)
    install_deps
    exit 0
fi
if [ "$MAJOR" = 15 ]; then
    # (test/run.sh installs postgresql-server-dev-15 when it is missing)
    log "Debian's package, nothing to build"
    echo /usr/lib/postgresql/15/bin/pg_config
    exit 0
fi
# MAJOR -> "release sha256" of the upstream tarball fetched from Debian's pool
# when nothing else gives a source (step 4 above)
declare -A PINNED=(
    [17]="17.11 dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979"
    [18]="18.6 555610c24d53e4316da5b7d3fc25c279d96856d5e0e23ee308c328c5fa881d9f"
)
case $MAJOR in
    17) SUITE=trixie ;;
    18) SUITE=sid ;;
    *) die "no source for PostgreSQL $MAJOR is known to this script (17 and 18 are)" ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root (it installs build dependencies and writes $PREFIX)"


# find_tarball: prints the path of postgresql-MAJOR.*.tar.bz2, or nothing
find_tarball() {
    local d f
    for d in ${PGCK_THIRD_PARTY:+"$PGCK_THIRD_PARTY"} "$CLONE/../shared/third_party"; do
        [ -d "$d" ] || continue
        f=$(ls -1 "$d"/postgresql-"$MAJOR".*.tar.bz2 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$f" ] && [ -r "$f" ]; then
            log "source tarball: $f"
            echo "$f"
            return 0
        fi
        log "no postgresql-$MAJOR.*.tar.bz2 in $d"
    done
    [ -z "${PGCK_THIRD_PARTY:-}" ] && log "PGCK_THIRD_PARTY is not set"
    # Debian's archive, with an apt configuration of its own
    local cache=$BASE/apt-src-$SUITE opts
    mkdir -p "$cache/lists/partial" "$cache/src"
    echo "deb-src http://deb.debian.org/debian $SUITE main" >"$cache/sources.list"
    opts=(-o "Dir::Etc::SourceList=$cache/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$cache/lists" -o "APT::Get::List-Cleanup=0")
    log "trying Debian's archive: deb-src $SUITE, apt-get source --download-only postgresql-$MAJOR"
    if apt-get "${opts[@]}" -qq update >&2 &&
       (cd "$cache/src" && apt-get "${opts[@]}" -qq source --download-only "postgresql-$MAJOR" >&2); then
        f=$(ls -1 "$cache/src"/postgresql-"$MAJOR"_*.orig.tar.bz2 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$f" ]; then
            log "source tarball from Debian's archive: $f"
            echo "$f"
            return 0
        fi
    fi
    log "Debian's archive did not give postgresql-$MAJOR's source"
    # the pinned release from the pool (the same files as ../shared/third_party's)
    local pin=${PINNED[$MAJOR]} url got
    f="$cache/src/postgresql-${MAJOR}_${pin% *}.orig.tar.bz2"
    url="http://deb.debian.org/debian/pool/main/p/postgresql-$MAJOR/${f##*/}"
    log "trying the pinned release in Debian's pool: $url"
    if curl -fsS --retry 2 -m 600 -o "$f.part" "$url" >&2; then
        got=$(sha256sum "$f.part" | cut -d' ' -f1)
        if [ "$got" = "${pin#* }" ]; then
            mv "$f.part" "$f"
            log "source tarball from Debian's pool, sha256 as pinned: $f"
            echo "$f"
            return 0
        fi
        log "refusing $url: sha256 $got, pinned ${pin#* }"
    fi
    rm -f "$f.part"
    log "Debian's pool did not give postgresql-$MAJOR ${pin% *}"
    return 0
}

TARBALL=$(find_tarball)
if [ -z "$TARBALL" ]; then
    if [ -f "$STAMP" ] && [ -x "$PREFIX/bin/pg_config" ]; then
        log "no source tarball found, using the cached build in $PREFIX ($(head -n 1 "$STAMP"))"
        echo "$PREFIX/bin/pg_config"
        exit 0
    fi
    die "missing the PostgreSQL $MAJOR source: put postgresql-$MAJOR.*.tar.bz2 in \$PGCK_THIRD_PARTY or ../shared/third_party, or give this machine access to Debian's archive ($SUITE deb-src)"
fi

SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)
WANT="$(basename "$TARBALL") sha256=$SHA
$CONFIGURE_OPTS"
# ensure_contrib SRC_OR_EMPTY: build and install the CONTRIB modules missing
# from $PREFIX, from SRC or else from the tarball's contrib/ alone
ensure_contrib() {
    local src=$1 missing=() m tmp=""
    for m in $CONTRIB; do
        [ -e "$PREFIX/lib/postgresql/$m.so" ] || missing+=("$m")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$src" ]; then
        tmp=$(mktemp -d "/tmp/pgck_pg${MAJOR}_contrib.XXXXXX")
        log "installing contrib modules into the cached $PREFIX: ${missing[*]}"
        tar -C "$tmp" -xjf "$TARBALL" $(for m in "${missing[@]}"; do echo "$(basename "$TARBALL" .tar.bz2)/contrib/$m"; done) || return 1
        src=$(ls -d "$tmp"/postgresql-"$MAJOR".*/)
    fi
    for m in "${missing[@]}"; do
        make -s -C "$src/contrib/$m" USE_PGXS=1 PG_CONFIG="$PREFIX/bin/pg_config" -j"${PGCK_BUILD_JOBS:-2}" install >&2 || return 1
    done
    [ -n "$tmp" ] && rm -rf "$tmp"
    return 0
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$PREFIX/bin/pg_config" ]; then
    log "cached build in $PREFIX matches $(basename "$TARBALL") (sha256 $SHA): not rebuilding"
    ensure_contrib "" >/dev/null || die "could not build the contrib modules ($CONTRIB)"
    echo "$PREFIX/bin/pg_config"
    exit 0
fi

install_deps
START=$(date +%s)
BUILD=$(mktemp -d "/tmp/pgck_pg$MAJOR.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
log "building $(basename "$TARBALL") into $PREFIX (log: $BUILD/build.log)"
tar -C "$BUILD" -xjf "$TARBALL"
SRC=$(ls -d "$BUILD"/postgresql-"$MAJOR".*/ | head -n 1)
rm -rf "$PREFIX"
(
    cd "$SRC"
    # shellcheck disable=SC2086
    ./configure $CONFIGURE_OPTS
    make -j"${PGCK_BUILD_JOBS:-2}"
    make install
    # what the suite needs besides the server: the contrib modules it loads,
    # the isolation tester and the TAP modules (PostgreSQL::Test::*)
    for m in $CONTRIB; do make -C "contrib/$m" -j"${PGCK_BUILD_JOBS:-2}" install; done
    make -C src/test/isolation -j"${PGCK_BUILD_JOBS:-2}" install
    make -C src/test/perl install
) >"$BUILD/build.log" 2>&1 || { tail -n 40 "$BUILD/build.log" >&2; die "the build failed (above: the end of its log)"; }
for f in bin/pg_config bin/postgres bin/pg_upgrade lib/postgresql/pgxs/src/test/regress/pg_regress \
         lib/postgresql/pgxs/src/test/isolation/pg_isolation_regress \
         lib/postgresql/pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm $(for m in $CONTRIB; do echo "lib/postgresql/$m.so"; done); do
    [ -e "$PREFIX/$f" ] || die "the build did not install $PREFIX/$f"
done
printf '%s\n' "$WANT" >"$STAMP"
log "built in $(( $(date +%s) - START ))s"
echo "$PREFIX/bin/pg_config"
