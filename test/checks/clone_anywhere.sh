#!/usr/bin/env bash
# Cloned anywhere (issue 12, item 1): the suite passes from a clone whose path has spaces, inside
# a directory the postgres user cannot enter (mode 0700, as Debian 12 makes home directories):
#  - git clone of the clone the suite runs from ($PGCK_SOURCE, or this tree), else a copy of the
#    tree, into "/root/pgck test/clone with spaces <pid>" ("/root/pgck test" mode 0700);
#  - PGCK_ONLY='^(units|regress)$' bash "<clone>/test/run.sh", in a clean environment (nothing of
#    the outer run leaks in: no PGCK_VECTORS, PGCK_ROOT, PG*), must end "N passed, 0 failed"
#    with the unit tests and every pg_regress and isolation test among the N;
#  - the postgres user really cannot read the clone (else the check proves nothing).
# Runs as root, from test/run.sh or alone.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
SOURCE=${PGCK_SOURCE:-$ROOT}
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
[ "$(id -u)" -eq 0 ] || { echo "not ok - must run as root"; exit 1; }

PARENT="/root/pgck test"
CLONE="$PARENT/clone with spaces $$"
LOG=$(mktemp /tmp/pgck-clone-anywhere.XXXXXX)
cleanup() { rm -rf "$CLONE" "$LOG"; rmdir "$PARENT" 2>/dev/null; true; }
trap cleanup EXIT
mkdir -p "$PARENT" && chmod 0700 "$PARENT" && chmod 0700 /root
if git -C "$SOURCE" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -c safe.directory='*' clone -q "$SOURCE" "$CLONE"
    check $? "git clone $SOURCE (HEAD $(git -c safe.directory='*' -C "$SOURCE" rev-parse --short HEAD)) into \"$CLONE\""
else
    mkdir -p "$CLONE" &&
        tar -C "$ROOT" --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./test/results -cf - . | tar -C "$CLONE" -xf -
    check $? "a copy of $ROOT (not a git checkout) in \"$CLONE\""
fi
[ -f "$CLONE/test/run.sh" ] || exit 1

! runuser -u postgres -- test -r "$CLONE/Makefile" && ! runuser -u postgres -- ls "$CLONE" >/dev/null 2>&1
check $? "the postgres user cannot read the clone"

# a clean environment: only what a user's shell would have
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    ${PGCK_PG_CONFIG:+PGCK_PG_CONFIG="$PGCK_PG_CONFIG"} PGCK_ONLY='^(units|regress)$' \
    timeout --kill-after=15 840 bash "$CLONE/test/run.sh" >"$LOG" 2>&1
rc=$?
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -1)
check $rc "PGCK_ONLY='^(units|regress)\$' bash \"<clone>/test/run.sh\" passes (${summary:-no summary line}, exit $rc)"
if [ $rc -ne 0 ]; then grep -E '^not ok|TIMEOUT|rror' "$LOG" | head -30; tail -20 "$LOG"; fi
nreg=$(sed -n 's/^REGRESS = //p' "$CLONE/Makefile" | wc -w)
niso=$(ls "$CLONE"/test/isolation/specs/*.spec | wc -l)
nunit=$(ls "$CLONE"/test/unit/test_*.c | wc -l)
got_reg=$(grep -cE '^ok - regress/' "$LOG"); got_iso=$(grep -cE '^ok - isolation/' "$LOG"); got_unit=$(grep -cE '^ok - test_[a-z0-9_]+ \([0-9]+ passed' "$LOG")
[ "$got_reg" -eq "$nreg" ] && [ "$got_iso" -eq "$niso" ] && [ "$got_unit" -eq "$nunit" ]
check $? "  ... with all $nreg pg_regress, $niso isolation and $nunit unit test programs passing ($got_reg, $got_iso, $got_unit)"
exit $fail
