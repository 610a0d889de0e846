#!/usr/bin/env bash
# The PGXN distribution (issue 12, item 4): `make dist` gives pgcrypt_kms-<version>.zip, whose
# META.json is valid PGXN Meta Spec 1.0.0 (test/checks/pgxn_meta.py), whose version, provides
# version and the control file's default_version agree, which holds what a PGXN client needs
# (META.json, the control file, every install/upgrade script, src/, Makefile, README.md) and
# nothing built or untracked, and which builds and installs with PGXS from an unpacked copy.
# The tree is this run's staged copy, committed into a scratch git repository (so the check
# sees uncommitted work too; `make dist` itself archives HEAD).
# Runs as root from test/run.sh (PGCK_ROOT, PGCK_PG_CONFIG) or alone.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
PG_CONFIG=${PGCK_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
W=$(mktemp -d /tmp/pgck-pgxn.XXXXXX)
trap 'rm -rf "$W"' EXIT

REPO="$W/repo"
mkdir "$REPO" &&
    tar -C "$ROOT" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
        --exclude=./test/results --exclude=./bench/results --exclude=./test/fuzz/bin -cf - . | tar -C "$REPO" --no-same-owner -xf - &&
    git -C "$REPO" init -q && git -C "$REPO" add -A &&
    git -C "$REPO" -c user.name=pgck -c user.email=pgck@invalid commit -q -m snapshot
check $? "a scratch git repository of the tree"
# something untracked and something built must stay out of the zip
echo scratch >"$REPO/untracked.txt"
make -C "$REPO" -s dist PG_CONFIG="$PG_CONFIG" >"$W/dist.log" 2>&1
check $? "make dist"
ver=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pgcrypt_kms.control)
ZIP="$REPO/pgcrypt_kms-$ver.zip"
[ -f "$ZIP" ]; check $? "it made pgcrypt_kms-$ver.zip (default_version $ver)"
[ -f "$ZIP" ] || { cat "$W/dist.log"; exit 1; }

listing=$(unzip -Z1 "$ZIP")
top=$(echo "$listing" | cut -d/ -f1 | sort -u)
[ "$top" = "pgcrypt_kms-$ver" ]; check $? "everything is under one folder pgcrypt_kms-$ver/ (got: $(echo $top))"
for f in META.json pgcrypt_kms.control Makefile README.md src/pgcrypt_kms.c src/keyring.c \
         $(ls sql/pgcrypt_kms--*.sql) expected/enc_text.out sql/enc_text.sql; do
    echo "$listing" | grep -qxF "pgcrypt_kms-$ver/$f"; check $? "the zip holds $f"
done
nsrc=$(ls src/*.c src/*.h | wc -l); nzsrc=$(echo "$listing" | grep -cE "^pgcrypt_kms-$ver/src/[^/]+\.[ch]$")
[ "$nzsrc" -eq "$nsrc" ]; check $? "  ... and every one of the $nsrc files of src/ ($nzsrc)"
! echo "$listing" | grep -qE '\.(o|so|bc|zip)$|/untracked\.txt$'; check $? "nothing built or untracked is in it"

# META.json: the spec, and the versions agree
UNP="$W/unpacked with space"
mkdir "$UNP" && unzip -q "$ZIP" -d "$UNP"; check $? "unzip"
D="$UNP/pgcrypt_kms-$ver"
$PY test/checks/pgxn_meta.py "$D/META.json" "$D"; check $? "META.json is valid PGXN Meta Spec 1.0.0, its provides files exist"
metaver=$($PY -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["version"], m["provides"]["pgcrypt_kms"]["version"], m["name"])' "$D/META.json")
[ "$metaver" = "$ver $ver pgcrypt_kms" ]
check $? "META.json's version and provides.pgcrypt_kms.version are default_version $ver (got: $metaver)"

# builds with PGXS from the unpacked copy, and installs
make -C "$D" -s -j2 PG_CONFIG="$PG_CONFIG" >"$W/build.log" 2>&1
rc=$?; check $rc "the unpacked distribution builds with PGXS ($("$PG_CONFIG" --version))"
[ $rc -ne 0 ] && tail -20 "$W/build.log"
make -C "$D" -s install PG_CONFIG="$PG_CONFIG" DESTDIR="$W/inst" >"$W/install.log" 2>&1
check $? "  ... and installs (DESTDIR)"
ext="$W/inst$("$PG_CONFIG" --sharedir)/extension"
lib="$W/inst$("$PG_CONFIG" --pkglibdir)"
[ -f "$lib/pgcrypt_kms.so" ] && [ -f "$ext/pgcrypt_kms.control" ] && [ -f "$ext/pgcrypt_kms--0.1.0.sql" ] &&
    [ "$(ls "$ext"/pgcrypt_kms--*.sql | wc -l)" -eq "$(ls sql/pgcrypt_kms--*.sql | wc -l)" ]
check $? "  ... the module, the control file and every install/upgrade script"
exit $fail
