#!/usr/bin/env bash
# pg_regress under valgrind memcheck (make valgrind): the server and every
# backend run under memcheck, the regression suite runs against it, and any
# memcheck error whose stack passes through pgcrypt_kms fails the run.
# Debian's PostgreSQL is built without its valgrind annotations, so reports
# that lie wholly inside PostgreSQL (uninitialised struct padding written to
# disk, for example) are counted and shown but are not ours to fail on.
set -u
. "$(dirname "$0")/lib.sh"
pgck_require_root "$@"
cd "$PGCK_ROOT"
pgck_install_packages $PGCK_PACKAGES_BUILD valgrind python3 python3-cryptography
pgck_build_install
pgck_make_tmp
VG="$PGCK_TMP/valgrind"
mkdir -p "$VG" && chown postgres:postgres "$VG"
export PGCK_EXTRA_CONF="shared_preload_libraries = 'pgcrypt_kms'
max_connections = 10"
# start the postmaster under valgrind ourselves (pg_ctl would start it plain)
PGBIN=$("$PGCK_PG_CONFIG" --bindir)
PGCK_PGDATA="$PGCK_TMP/data"; PGPORT=$(pgck_free_port); PGHOST="$PGCK_TMP"
export PGBIN PGCK_PGDATA PGPORT PGHOST
runuser -u postgres -- "$PGBIN/initdb" -D "$PGCK_PGDATA" -A trust -U postgres --no-sync >/dev/null
cat >>"$PGCK_PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$PGCK_TMP'
fsync = off
pgcrypt_kms.local_key_file = '$PGCK_TMP/local_master.key'
$PGCK_EXTRA_CONF
CONF
runuser -u postgres -- valgrind --quiet --tool=memcheck --trace-children=yes --track-origins=${PGCK_VALGRIND_ORIGINS:-no} \
    --error-limit=no --num-callers=30 --log-file="$VG/vg.%p" \
    "$PGBIN/postgres" -D "$PGCK_PGDATA" >"$PGCK_TMP/server.log" 2>&1 &
for i in $(seq 1 240); do
    runuser -u postgres -- "$PGBIN/pg_isready" -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 1
done
PG_REGRESS=$(dirname "$("$PGCK_PG_CONFIG" --pgxs)")/../test/regress/pg_regress
REGRESS=${PGCK_VALGRIND_TESTS:-$(sed -n 's/^REGRESS = //p' Makefile)}
mkdir -p "$PGCK_TMP/regress" && chown postgres:postgres "$PGCK_TMP/regress"
runuser -u postgres -- "$PG_REGRESS" --inputdir="$PGCK_ROOT" --outputdir="$PGCK_TMP/regress" \
    --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --dbname=pgck_regress $REGRESS | grep -E '^(test|ok|not ok) '
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGCK_PGDATA" -m fast -w -t 300 stop >/dev/null
sleep 2
ours=0; theirs=0
for f in "$VG"/vg.*; do
    [ -s "$f" ] || continue
    # an error report is a block starting with "==pid== <Kind>" and ending at a blank "==pid== " line
    n_ours=$(awk '/^==[0-9]+== [A-Z]/{blk=$0; next} /^==[0-9]+==    (at|by) /{blk=blk"\n"$0; next} /^==[0-9]+== $/{if (blk ~ /pgcrypt_kms|pgck_/) c++; blk=""} END{print c+0}' "$f")
    n_all=$(grep -c '^==[0-9]*== [A-Z][a-z]' "$f")
    ours=$((ours + n_ours)); theirs=$((theirs + n_all - n_ours))
    [ "$n_ours" -gt 0 ] && { echo "--- $f"; grep -B2 -A25 'pgcrypt_kms\|pgck_' "$f" | head -80; }
done
echo "# memcheck reports through pgcrypt_kms: $ours; inside PostgreSQL alone: $theirs"
if [ "$ours" -eq 0 ]; then echo "1 passed, 0 failed"; exit 0; else echo "0 passed, 1 failed"; exit 1; fi
