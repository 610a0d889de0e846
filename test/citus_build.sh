#!/usr/bin/env bash
# test/citus_build.sh [PG_CONFIG]: build Citus for the test suite (issue 17)
# and print, on the last line of stdout, a directory that holds its installed
# files as a DESTDIR tree (usr/lib/postgresql/15/lib/citus.so, ...): copy it
# over the suite's private installation ($PGCK_INST) with `cp -a DIR/. $PGCK_INST/`.
# Progress goes to stderr.
#
# PostgreSQL 15 takes Citus 13.2.2 (with citus-13.2.2-pg15.20.patch: 15.20
# exports have_createdb_privilege(), which 13.2.2 also defines); 16, 17 and
# 18 take Citus 14.0.1 (the matrix tests 17 and 18, built by pg_build.sh
# into /opt/pgck/pgNN: the DESTDIR tree is then opt/pgck/pgNN/lib/...).
#
# The source tarball citus-VERSION.tar.xz is looked for in
#   1. $PGCK_THIRD_PARTY
#   2. ../shared/third_party beside the clone (what CI provides, read-only),
#      or beside the main checkout when the clone is a git worktree
# The build is cached in /opt/pgck/citus-VERSION-pgMAJOR (PGCK_PG_PREFIX_BASE
# overrides /opt/pgck) with a stamp holding the tarball's and the patch's
# sha256 and the PostgreSQL version: a second run builds nothing, and a
# stamped cache is used even when the tarball is gone.  Runs for the same
# prefix wait for each other (flock on PREFIX.lock): test/matrix.sh builds
# Citus in the background while a suite may ask for it.
#
# Exit status 2 (with a line "skip: REASON" on stdout) when neither a tarball
# nor a cached build is there: the caller reports the Citus tests as skipped,
# visibly.  Exit 1 when a build was attempted and failed.
set -eu -o pipefail

PG_CONFIG=${1:-${PGCK_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLONE=$(cd "$HERE/.." && pwd)
[ -n "${PGCK_SOURCE:-}" ] && CLONE=$PGCK_SOURCE
BASE=${PGCK_PG_PREFIX_BASE:-/opt/pgck}
PGVER=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9.]+).*/\1/')
MAJOR=${PGVER%%.*}
case $MAJOR in
    15) VERSION=13.2.2 ;;
    # 14.0.1 supports PostgreSQL 16, 17 and 18; the matrix tests 17 and 18
    16|17|18) VERSION=14.0.1 ;;
    *) echo "skip: no Citus release known to this script supports PostgreSQL $MAJOR (13.2.2 is for 15, 14.0.1 for 16 to 18)"; exit 2 ;;
esac
PREFIX=$BASE/citus-$VERSION-pg$MAJOR
STAMP=$PREFIX/.pgck-build-stamp
# the statistics collector's libcurl is not needed by the tests; columnar
# includes zstd.h and lz4.h whenever PostgreSQL was built with them (Debian's is)
CONFIGURE_OPTS="--without-libcurl"
BUILD_DEPS="make gcc bison flex liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev xz-utils patch"

log() { printf '%s\n' "citus_build: $*" >&2; }
die() { printf '%s\n' "citus_build: FAILED: $*" >&2; exit 1; }

# a git worktree's ../shared is its main checkout's
COMMON=$(git -C "$CLONE" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
find_file() {  # find_file NAME: the path of NAME in the third-party directories, or nothing
    local d
    for d in ${PGCK_THIRD_PARTY:+"$PGCK_THIRD_PARTY"} "$CLONE/../shared/third_party" \
             ${COMMON:+"$(dirname "$COMMON")/../shared/third_party"}; do
        [ -r "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 0
}

TARBALL=$(find_file "citus-$VERSION.tar.xz")
PATCH=""
[ "$VERSION" = 13.2.2 ] && [ "$MAJOR" = 15 ] && PATCH=$(find_file citus-13.2.2-pg15.20.patch)
if [ -z "$TARBALL" ]; then
    if [ -f "$STAMP" ] && [ -f "$PREFIX/stage/.complete" ]; then
        log "no source tarball found, using the cached build in $PREFIX ($(head -n 1 "$STAMP"))"
        echo "$PREFIX/stage"
        exit 0
    fi
    echo "skip: the Citus $VERSION source (citus-$VERSION.tar.xz) is not in \$PGCK_THIRD_PARTY or ../shared/third_party, and $PREFIX holds no cached build"
    exit 2
fi
[ "$(id -u)" -eq 0 ] || die "run as root (it writes $PREFIX)"
mkdir -p "$BASE"
exec 9>"$PREFIX.lock"
flock 9

WANT="$(basename "$TARBALL") sha256=$(sha256sum "$TARBALL" | cut -d' ' -f1)
patch=${PATCH:+$(basename "$PATCH") sha256=$(sha256sum "$PATCH" | cut -d' ' -f1)}
PostgreSQL $PGVER ($PG_CONFIG)
$CONFIGURE_OPTS with_llvm=no"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$PREFIX/stage/.complete" ]; then
    log "cached build in $PREFIX matches $(basename "$TARBALL"): not rebuilding"
    echo "$PREFIX/stage"
    exit 0
fi

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
install_deps
START=$(date +%s)
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
log "building Citus $VERSION for PostgreSQL $PGVER in $PREFIX (log: $PREFIX/build.log)"
(
    cd "$PREFIX"
    tar -xJf "$TARBALL"
    cd "citus-$VERSION"
    [ -n "$PATCH" ] && patch -p1 <"$PATCH"
    # shellcheck disable=SC2086
    PG_CONFIG=$PG_CONFIG ./configure $CONFIGURE_OPTS
    # with_llvm=no: no JIT bitcode (it doubles the build time; the tests do not JIT)
    make -j"${PGCK_BUILD_JOBS:-2}" with_llvm=no
    make install with_llvm=no DESTDIR="$PREFIX/stage"
) >"$PREFIX/build.log" 2>&1 || { tail -n 40 "$PREFIX/build.log" >&2; die "the build failed (above: the end of its log)"; }
so=$(find "$PREFIX/stage" -name citus.so | head -n 1)
[ -n "$so" ] || die "the build did not install citus.so"
rm -rf "$PREFIX/citus-$VERSION"   # the object files are not needed again
touch "$PREFIX/stage/.complete"
printf '%s\n' "$WANT" >"$STAMP"
log "built in $(( $(date +%s) - START ))s"
echo "$PREFIX/stage"
