#!/usr/bin/env bash
# The extension's LOG reports never bring the running statement's text into the
# server log (audit 4, F1).  The server log ranks LOG above ERROR: with the
# default log_min_error_statement (error) a LOG report made during a statement
# is followed by "STATEMENT: <its text>", literal plaintexts included, although
# the statement succeeds.  The rule (src/pgck_errcodes.h): every ereport(LOG)
# carries errhidestmt(true).
#  1. the sources: every ereport(LOG ...) has errhidestmt(true), no elog(LOG);
#  2. two reports made inside a successful user statement that holds a literal
#     marker, on a cluster of its own (shared key cache on, AWS credentials
#     from the container endpoint, a private emulator):
#     - the shared cache's prefetch unwraps the whole keyring in the backend,
#       and another key, whose KMS key is disabled, fails: "could not unwrap
#       key ... for the shared cache";
#     - temporary credentials with 12 minutes left (the refresh window is 15)
#       and a failing endpoint: "could not refresh AWS credentials";
#     each time the LOG line is in the server log and the marker is not; a
#     failing statement's marker is (positive control: the statement would
#     have been logged).
# Runs (as root) from test/run.sh: PGBIN, PGCK_TMP.
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
PY=/usr/bin/python3

# ---------------------------------------------------------------- 1. sources
# Each ereport(LOG ...) up to the parenthesis that closes it; prints the file:line of
# every one without errhidestmt(true) and of every elog(LOG), then the count
# of LOG reports seen.  A report without the flag written here must be found
# (the scanner's own positive control).
scan_sources() {
    $PY - "$@" <<'PY'
import re, sys
bad, seen = [], 0

def report_end(src, i):
    """The index past the ')' that closes the call opening at src[i:]."""
    depth, quote = 0, None
    while i < len(src):
        c = src[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i

for path in sys.argv[1:]:
    src = open(path, encoding="utf-8").read()
    for m in re.finditer(r"\belog\s*\(\s*LOG(_SERVER_ONLY)?\b", src):
        bad.append("%s:%d: elog(LOG)" % (path, src.count("\n", 0, m.start()) + 1))
    for m in re.finditer(r"\bereport\s*\(\s*LOG(_SERVER_ONLY)?\b", src):
        seen += 1
        end = report_end(src, m.start())
        if "errhidestmt(true)" not in src[m.start():end]:
            bad.append("%s:%d: ereport(LOG) without errhidestmt(true)" % (path, src.count("\n", 0, m.start()) + 1))
for b in bad:
    print(b)
print("seen %d" % seen)
PY
}
W="$PGCK_TMP/log_hides_statement"
rm -rf "$W"; mkdir -p "$W"; chown postgres:postgres "$W"; chmod 700 "$W"
printf '%s\n' 'static void f(void) { ereport(LOG, (errmsg("x"))); }' >"$W/control.c"
out=$(scan_sources "$W/control.c")
echo "$out" | grep -q 'control.c:1: ereport(LOG) without errhidestmt'
check $? "the source scan finds an ereport(LOG) without errhidestmt (control)"
out=$(scan_sources src/*.c)
n=$(echo "$out" | sed -n 's/^seen //p')
problems=$(echo "$out" | grep -v '^seen ')
[ -z "$problems" ] && [ "${n:-0}" -ge 10 ]
check $? "every ereport(LOG) in src/ carries errhidestmt(true), none is elog(LOG) ($n LOG reports)"
[ -n "$problems" ] && echo "$problems"

# ---------------------------------------------------------------- 2. a cluster
EMU_PID=
cleanup() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/data" -m immediate -w stop >/dev/null 2>&1
    [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
}
trap cleanup EXIT

$PY test/kms_emulator/emulator.py --port-file "$W/emu.port" --log "$W/emulator.log" >>"$W/emu.out" 2>&1 &
EMU_PID=$!
for i in $(seq 1 100); do [ -s "$W/emu.port" ] && break; sleep 0.1; done
EMU_PORT=$(cat "$W/emu.port")
emuctl() { $PY test/kms_emulator/emuctl.py "$EMU_PORT" "$@"; }
# the server's credentials: the container endpoint (not the environment's
# static ones the suite exports), 12 minutes left on each
emuctl set-credentials '{"expiration_seconds": 720}' >/dev/null || exit 1

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
runuser -u postgres -- "$PGBIN/initdb" -D "$W/data" -A trust -U postgres --no-sync >"$W/initdb.log" 2>&1 || { cat "$W/initdb.log"; exit 1; }
cat >>"$W/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$W'
fsync = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_error_statement = error
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.shared_cache_size = 16
pgcrypt_kms.aws_region = 'us-east-1'
pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$EMU_PORT'
CONF
runuser -u postgres -- env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$EMU_PORT/ecs/credentials" \
    AWS_CONTAINER_AUTHORIZATION_TOKEN=pgck-test-ecs-token AWS_REGION=us-east-1 \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
    "$PGBIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w -t 60 start >/dev/null || { cat "$W/server.log"; exit 1; }
LOG="$W/server.log"
psql_w() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$W" -p "$PORT" -d postgres "$@"; }

# an emulator key that is disabled after its key was created
KID=$(emuctl create-key '{}' | $PY -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
emuctl create-alias "{\"alias\":\"alias/lhs-bad\",\"key_id\":\"$KID\"}" >/dev/null || exit 1
psql_w -c "CREATE EXTENSION pgcrypt_kms" \
    -c "SELECT 1 FROM kms_create_key('lhs1', 'aws-kms:alias/pgck-test')" \
    -c "SELECT 1 FROM kms_create_key('lhs2', 'aws-kms:alias/pgck-test')" \
    -c "SELECT 1 FROM kms_create_key('lhs3', 'aws-kms:alias/pgck-test')" \
    -c "SELECT 1 FROM kms_create_key('lhsbad', 'aws-kms:alias/lhs-bad')" \
    -c "CREATE TABLE pf (a enc_text, b enc_text, c enc_text)" \
    -c "INSERT INTO pf VALUES (kms_encrypt('x', 'lhs1'), kms_encrypt('y', 'lhs2'), kms_encrypt('z', 'lhs3'))" >/dev/null || exit 1
emuctl disable-key "{\"key_id\":\"$KID\"}" >/dev/null || exit 1

# positive control: a failing statement's marker is logged (STATEMENT:), so
# the log read below is the server's and statements do reach it
psql_w -c "SELECT 'LHSCONTROL-carol@example.com', 1/0" >/dev/null 2>&1
grep -q 'STATEMENT:.*LHSCONTROL-carol@example.com' "$LOG"
check $? "control: a failing statement's literal is in the server log (STATEMENT:)"

# the prefetch: three keys from the KMS start it; the backend works the queue
# alone (unwrap_concurrency = 1) and reports lhsbad's failure at LOG
before=$(grep -c 'could not unwrap key "lhsbad" version 1 for the shared cache' "$LOG")
got=$(psql_w -c "SET pgcrypt_kms.unwrap_concurrency = 1" -c "SELECT kms_flush_cache()" \
    -c "SELECT count(*) FROM pf WHERE kms_decrypt(a) || kms_decrypt(b) || kms_decrypt(c) <> 'LHSPREFETCH-alice@example.com'" 2>&1 | tail -1)
after=$(grep -c 'could not unwrap key "lhsbad" version 1 for the shared cache' "$LOG")
[ "$got" = 1 ]
check $? "prefetch: the statement succeeds (got '$got')"
[ "$after" -gt "$before" ]
check $? "prefetch: the backend logged lhsbad's failure at LOG ($before -> $after lines)"
! grep -q 'LHSPREFETCH' "$LOG"
check $? "prefetch: the statement's literal is not in the server log"
grep -A3 'could not unwrap key "lhsbad"' "$LOG" | grep -m2 'LHSPREFETCH' | cut -c1-200

# the credential refresh: warm up (credentials fetched, 12 minutes left), then
# the endpoint fails; the next KMS call tries to refresh, logs, keeps them
before=$(grep -c 'could not refresh AWS credentials' "$LOG")
got=$(runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$W" -p "$PORT" -d postgres 2>&1 <<SQL
SET pgcrypt_kms.unwrap_concurrency = 1;
SELECT kms_flush_cache();
SELECT kms_decrypt(kms_encrypt('warm-up', 'lhs1')) IS NOT NULL AS warmed;
\\! $PY test/kms_emulator/emuctl.py $EMU_PORT set-fault '{"op":"ecs","kind":"internal","count":100}' >/dev/null
SELECT kms_flush_cache();
SELECT kms_decrypt(kms_encrypt('LHSCRED-alice@example.com', 'lhs1')) IS NOT NULL AS ok;
SQL
)
emuctl clear-faults >/dev/null
after=$(grep -c 'could not refresh AWS credentials' "$LOG")
[ "$(echo "$got" | tail -1)" = t ]
check $? "credential refresh: the statement succeeds with the current credentials (got '$(echo "$got" | tr '\n' ' ')')"
[ "$after" -gt "$before" ]
check $? "credential refresh: the failed refresh is logged at LOG ($before -> $after lines)"
! grep -q 'LHSCRED' "$LOG"
check $? "credential refresh: the statement's literal is not in the server log"
grep -A3 'could not refresh AWS credentials' "$LOG" | grep -m2 'LHSCRED' | cut -c1-200

exit $fail
