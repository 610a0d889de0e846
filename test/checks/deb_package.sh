#!/usr/bin/env bash
# The Debian package (issue 12, item 4): debian/ builds postgresql-15-pgcrypt-kms the way
# PostgreSQL extensions are packaged in Debian (pg_buildext, dh --with pgxs_loop), and the
# INSTALLED package works:
#  - dpkg-buildpackage -us -uc -b in a copy of the tree under /tmp (never in the clone);
#  - the .deb holds the module, the control file and every install/upgrade script, and depends on
#    postgresql-15, libcurl4, libjansson4 and libssl3;
#  - apt-get install ./the.deb; dpkg --verify; the system's files are the package's;
#  - debian/tests/installcheck (the autopkgtest): CREATE EXTENSION and the whole pg_regress suite
#    on a throwaway cluster of the SYSTEM PostgreSQL 15 (/usr/lib/postgresql/15, pg_virtualenv,
#    as the postgres user), with nothing from the suite's private installation;
#  - apt-get purge -y, and the machine is left as it was: files of an earlier unpackaged
#    "make install" into the system tree are set aside before and put back after.
# Installing writes to the system's PostgreSQL 15 tree, so runs are serialized on a lock
# (/tmp/pgck-deb.lock); the rest of the suite runs from its private copy ($PGCK_INST) and is not
# disturbed.  Runs as root, from test/run.sh or alone: bash test/checks/deb_package.sh
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PKG=postgresql-15-pgcrypt-kms
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
[ "$(id -u)" -eq 0 ] || { echo "not ok - must run as root"; exit 1; }
export DEBIAN_FRONTEND=noninteractive

exec 9>/tmp/pgck-deb.lock
flock -w 900 9 || { echo "not ok - another run held /tmp/pgck-deb.lock for 15 minutes"; exit 1; }

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'install ok installed'; then
    echo "not ok - $PKG is already installed on this machine: not touching it (apt-get purge $PKG)"
    exit 1
fi

W=$(mktemp -d /tmp/pgck-deb.XXXXXX)
chmod 755 "$W"
installed=0
restore() {
    if [ $installed -eq 1 ]; then
        apt-get purge -y -qq "$PKG" >"$W/purge.log" 2>&1 || cat "$W/purge.log"
    fi
    if [ -s "$W/unowned.tar" ]; then tar -C / -xpf "$W/unowned.tar"; fi
    rm -rf "$W"
}
trap restore EXIT

# build dependencies (debian/control's Build-Depends)
missing=()
for p in debhelper dpkg-dev fakeroot postgresql-server-dev-all postgresql-server-dev-15 libssl-dev libcurl4-openssl-dev libjansson-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$W/builddeps.log" 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$W/builddeps.log" 2>&1; }
    check $? "build dependencies installed: ${missing[*]}"
fi

# ---------------------------------------------------------------- build
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
upstream=${version%-*}
ctl=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pgcrypt_kms.control)
[ "$upstream" = "$ctl" ]; check $? "debian/changelog's upstream version $upstream is the control file's default_version $ctl"
SRC="$W/pgcrypt-kms-$upstream"
mkdir "$SRC" &&
    tar -C "$ROOT" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
        --exclude=./test/results --exclude=./bench/results --exclude=./test/fuzz/bin -cf - . | tar -C "$SRC" -xf -
check $? "a copy of the tree in $SRC"
(cd "$SRC" && timeout 900 dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1
rc=$?
check $rc "dpkg-buildpackage -us -uc -b"
[ $rc -ne 0 ] && tail -30 "$W/build.log"
deb=$(ls "$W"/${PKG}_"$version"_*.deb 2>/dev/null | head -1)
[ -n "$deb" ]; check $? "built $(basename "${deb:-$PKG (none)}")"
[ -n "$deb" ] || exit 1

contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/lib/postgresql/15/lib/pgcrypt_kms.so ./usr/share/postgresql/15/extension/pgcrypt_kms.control \
         $(cd sql && ls pgcrypt_kms--*.sql | sed 's|^|./usr/share/postgresql/15/extension/|'); do
    echo "$contents" | grep -qxF "$f"; check $? "the package holds $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
for d in postgresql-15 libcurl4 libjansson4 libssl3 libc6; do
    echo "$depends" | tr ',' '\n' | sed 's/^ *//' | grep -qE "^$d( |$)"; check $? "it depends on $d"
done
echo "  Depends: $depends"

# ---------------------------------------------------------------- install
# files an unpackaged "make install" left in the system tree: set aside, put back at the end
(cd / && ls -d usr/lib/postgresql/15/lib/pgcrypt_kms.so usr/lib/postgresql/15/lib/bitcode/pgcrypt_kms* \
    usr/share/postgresql/15/extension/pgcrypt_kms* 2>/dev/null) >"$W/unowned.list"
if [ -s "$W/unowned.list" ]; then
    tar -C / -cpf "$W/unowned.tar" -T "$W/unowned.list" && (cd / && xargs rm -rf <"$W/unowned.list")
    check $? "set aside $(wc -l <"$W/unowned.list") unpackaged pgcrypt_kms files in the system tree"
fi
installed=1
apt-get install -y -qq "$deb" >"$W/install.log" 2>&1
rc=$?
check $rc "apt-get install -y ./$(basename "$deb")"
[ $rc -ne 0 ] && tail -20 "$W/install.log"
dpkg --verify "$PKG"; check $? "dpkg --verify $PKG"
owner=$(dpkg -S /usr/lib/postgresql/15/lib/pgcrypt_kms.so 2>/dev/null | cut -d: -f1)
[ "$owner" = "$PKG" ]; check $? "the system's pgcrypt_kms.so belongs to $PKG (${owner:-none})"

# ---------------------------------------------------------------- CREATE EXTENSION + pg_regress
(cd "$SRC" && timeout 900 debian/tests/installcheck) >"$W/installcheck.log" 2>&1
rc=$?
grep -E '^ *(0\.[0-9]|[0-9]+\.[0-9]+\.[0-9]+)$|^(ok|not ok) +[0-9]+|^# |^test ' "$W/installcheck.log" | head -40
check $rc "debian/tests/installcheck: CREATE EXTENSION and pg_regress against the installed package on PostgreSQL 15"
[ $rc -ne 0 ] && { grep -E '^test .*(FAILED|failed)|^not ok' "$W/installcheck.log"; sed -n '/^diff -U3/,/^[0-9-]* [0-9:.]* UTC \[/p' "$W/installcheck.log" | head -80; tail -5 "$W/installcheck.log"; }
nreg=$(sed -n 's/^REGRESS = //p' Makefile | wc -w)
nok=$(grep -cE '^ok +[0-9]+ +- |^test .* \.\.\. ok' "$W/installcheck.log")
[ "$nok" -eq "$nreg" ]; check $? "  ... all $nreg regress tests passed ($nok)"
grep -q "$ctl" "$W/installcheck.log"; check $? "  ... CREATE EXTENSION installed version $ctl"

# ---------------------------------------------------------------- purge
apt-get purge -y -qq "$PKG" >"$W/purge.log" 2>&1
check $? "apt-get purge -y $PKG"
installed=0
! dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'install ok installed' &&
    [ ! -e /usr/lib/postgresql/15/lib/pgcrypt_kms.so ] && ! ls /usr/share/postgresql/15/extension/pgcrypt_kms* >/dev/null 2>&1
check $? "nothing of the package is left"
if [ -s "$W/unowned.tar" ]; then
    tar -C / -xpf "$W/unowned.tar" && rm -f "$W/unowned.tar"
    check $? "the unpackaged files set aside are back"
fi
exit $fail
