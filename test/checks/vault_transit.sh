#!/usr/bin/env bash
# The vault-transit: provider end to end, against the Vault emulator of
# test/vault_emulator (whose fidelity vault_hvac_fidelity.sh checks with
# python3-hvac): data keys, unwrap, blind index, pgcrypt-side and Vault-side
# rotation, min_decryption_version (55000), kms_rewrap_key within a key
# (Transit rewrap) and between two keys, derived keys bound to kms_context,
# token / AppRole / Kubernetes auth, namespaces, token renewal, re-login
# after a revoked token, 403 asked once (42501), 500 retried,
# statement_timeout and pg_cancel_backend on a hung Vault (57014), a token
# file readable by others (42501), no token, secret id or JWT in the server
# log; from psql and from psycopg.
#
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN,
# PGCK_TMP for server.log), with a private emulator stopped by pid.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
DB=pgck_vault
fail=0
n=0
check() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }

. test/providers_lib.sh
WORK=$(mktemp -d /tmp/pgck_vault_check.XXXXXX)
chmod 711 "$WORK"
mkdir "$WORK/secrets" && chown postgres "$WORK/secrets" && chmod 700 "$WORK/secrets"
BGPID=
cleanup() {
    if [ -n "$BGPID" ]; then kill "$BGPID" 2>/dev/null; wait "$BGPID" 2>/dev/null; fi
    psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    pgck_vault_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
pgck_prov_vault_start || { echo "not ok - Vault emulator start"; exit 1; }
echo "# Vault emulator on port $PGCK_VAULT_PORT (pid $PGCK_VAULT_PID)"
VURL=$PGCK_PROV_VAULT_URL
vault_root() { pgck_prov_vault_root "$@"; }
secret_file() { pgck_prov_secret_file "$WORK/secrets" "$@"; }
psql_admin() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" "$@"; }
# q SQL...: one fresh session (empty key cache) in $DB; output and errors with SQLSTATE
q() {
    local args=() s
    for s in "$@"; do args+=(-c "$s"); done
    runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -v VERBOSITY=verbose \
        -c "SET log_min_messages = debug1" "${args[@]}" 2>&1 | tee -a "$WORK/all.out"
}
sqlstate() { echo "$1" | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\).*/\1/p' | head -1; }

# ------------------------------------------------------------------ Vault side
rand() { $PY -c 'import secrets; print(secrets.token_hex(16))'; }
TOKEN="hvs.pgck-$(rand)"
DENY_TOKEN="hvs.pgck-deny-$(rand)"
RENEW_TOKEN="hvs.pgck-renew-$(rand)"
NS_TOKEN="hvs.pgck-ns-$(rand)"
SECRET_ID="sid-$(rand)"
JWT="eyJhbGciOiJSUzI1NiJ9.$(rand).$(rand)"
vaultctl POST policy '{"name":"pg","paths":{"transit/datakey/plaintext/*":["update"],"transit/decrypt/*":["update"],"transit/encrypt/*":["update"],"transit/rewrap/*":["update"],"transit/keys/*":["read"]}}' >/dev/null
vaultctl POST policy '{"name":"nodecrypt","paths":{"transit/datakey/plaintext/*":["update"]}}' >/dev/null
vaultctl POST policy '{"name":"pg","namespace":"team1","paths":{"transit/datakey/plaintext/*":["update"],"transit/decrypt/*":["update"]}}' >/dev/null
vaultctl POST token "{\"token\":\"$TOKEN\",\"policies\":[\"pg\"],\"ttl\":3600,\"renewable\":true}" >/dev/null
vaultctl POST token "{\"token\":\"$DENY_TOKEN\",\"policies\":[\"nodecrypt\"],\"ttl\":3600}" >/dev/null
vaultctl POST token "{\"token\":\"$NS_TOKEN\",\"namespace\":\"team1\",\"policies\":[\"pg\"],\"ttl\":3600}" >/dev/null
vaultctl POST approle "{\"role\":\"pg\",\"role_id\":\"role-pg\",\"secret_id\":\"$SECRET_ID\",\"policies\":[\"pg\"],\"ttl\":3600}" >/dev/null
vaultctl POST kubernetes "{\"role\":\"pg\",\"jwt\":\"$JWT\",\"policies\":[\"pg\"],\"ttl\":3600}" >/dev/null
vaultctl POST mount '{"path":"transit","namespace":"team1"}' >/dev/null
for k in app app2; do vault_root POST transit/keys/$k '{}'; done
vault_root POST transit/keys/derived '{"derived":true}'
vault_root POST transit/keys/nsapp '{}' team1
TOKEN_FILE=$(secret_file token "$TOKEN")
DENY_FILE=$(secret_file deny "$DENY_TOKEN")
NS_FILE=$(secret_file ns "$NS_TOKEN")
SECRET_FILE=$(secret_file secret_id "$SECRET_ID")
JWT_FILE=$(secret_file jwt "$JWT" 644)
OPEN_FILE=$(secret_file open "$TOKEN" 644)

psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" \
    -c "ALTER DATABASE $DB SET pgcrypt_kms.vault_addr = '$VURL'" \
    -c "ALTER DATABASE $DB SET pgcrypt_kms.vault_token_file = '$TOKEN_FILE'" \
    -c "ALTER DATABASE $DB SET pgcrypt_kms.kms_timeout = 20000" >/dev/null || exit 1
psql_admin -d $DB -c "CREATE EXTENSION pgcrypt_kms" >/dev/null || exit 1

# ------------------------------------------------------------------ basics
vaultctl POST reset-stats >/dev/null
out=$(q "SELECT kms_create_key('v1', 'vault-transit:transit/app', blind_index => 'lower')" \
        "CREATE TABLE t (id int, v enc_text)" \
        "INSERT INTO t SELECT 1, kms_encrypt('first secret', 'v1')" \
        "SELECT substr(encode(wrapped_dek, 'escape'), 1, 9) FROM pgcrypt_kms.key_versions WHERE key_name = 'v1'" | tail -1)
[ "$out" = "vault:v1:" ] && [ "$(vault_calls datakey)" -ge 1 ]
check $? "kms_create_key on vault-transit:transit/app: datakey called, the wrapped DEK is Transit's vault:v1: ciphertext (got '$out')"
out=$(q "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$out" = "first secret" ] && [ "$(vault_calls decrypt)" = 1 ]
check $? "a fresh session decrypts with one Transit decrypt (got '$out', $(vault_calls decrypt) decrypts)"
out=$(q "SELECT count(*) FROM t WHERE kms_blind_index(v) = kms_blind_index('FIRST SECRET', 'v1')")
[ "$out" = 1 ]; check $? "blind index under a Vault-wrapped index key finds the row (got '$out')"

# ------------------------------------------------------------------ rotation
out=$(q "SELECT kms_rotate_key('v1')" "INSERT INTO t SELECT 2, kms_encrypt('second secret', 'v1')" \
        "SELECT string_agg(kms_decrypt(v), ',' ORDER BY id) FROM t")
[ "$(echo "$out" | tail -1)" = "first secret,second secret" ]
check $? "kms_rotate_key: new rows under version 2, old rows decrypt (got '$(echo "$out" | tail -1)')"
vault_root POST transit/keys/app/rotate '{}'
out=$(q "SELECT kms_rotate_key('v1')" "INSERT INTO t SELECT 3, kms_encrypt('third secret', 'v1')" \
        "SELECT string_agg(substr(encode(wrapped_dek, 'escape'), 1, 9), ',' ORDER BY version) FROM pgcrypt_kms.key_versions WHERE key_name = 'v1'")
[ "$(echo "$out" | tail -1)" = "vault:v1:,vault:v1:,vault:v2:" ]
check $? "after Vault rotates the Transit key, a new DEK is wrapped under vault:v2: (got '$(echo "$out" | tail -1)')"
out=$(q "SELECT string_agg(kms_decrypt(v), ',' ORDER BY id) FROM t")
[ "$out" = "first secret,second secret,third secret" ]
check $? "rows whose DEKs are wrapped under Transit v1 and v2 all decrypt in a fresh session (got '$out')"

vault_root POST transit/keys/app/config '{"min_decryption_version":2}'
out=$(q "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$(sqlstate "$out")" = 55000 ]
check $? "min_decryption_version 2 refuses a DEK wrapped under v1: 55000 (got $(sqlstate "$out"))"
vault_root POST transit/keys/app/config '{"min_decryption_version":1}'
vaultctl POST reset-stats >/dev/null
out=$(q "SELECT kms_rewrap_key('v1', 'vault-transit:transit/app')" \
        "SELECT string_agg(DISTINCT substr(encode(wrapped_dek, 'escape'), 1, 9), ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'v1'")
[ "$(echo "$out" | tail -1)" = "vault:v2:" ] && [ "$(vault_calls rewrap)" -ge 3 ] && [ "$(vault_calls decrypt)" = 0 ]
check $? "kms_rewrap_key to the same Transit key uses rewrap (no plaintext here): every DEK now vault:v2: (got '$(echo "$out" | tail -1)', $(vault_calls rewrap) rewraps, $(vault_calls decrypt) decrypts)"
vault_root POST transit/keys/app/config '{"min_decryption_version":2}'
out=$(q "SELECT string_agg(kms_decrypt(v), ',' ORDER BY id) FROM t")
[ "$out" = "first secret,second secret,third secret" ]
check $? "after that, min_decryption_version 2 keeps every row decrypting (got '$out')"

vaultctl POST reset-stats >/dev/null
out=$(q "SELECT kms_rewrap_key('v1', 'vault-transit:transit/app2')" \
        "SELECT string_agg(DISTINCT kms_key, ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'v1'")
[ "$(echo "$out" | tail -1)" = "vault-transit:transit/app2" ] && [ "$(vault_calls encrypt)" -ge 3 ]
check $? "kms_rewrap_key to another Transit key: decrypt + encrypt under transit/app2 ($(vault_calls encrypt) encrypts; got '$(echo "$out" | tail -1)')"
vault_root POST transit/keys/app/config '{"min_decryption_version":3}' >/dev/null
vaultctl POST reset-stats >/dev/null
out=$(q "SELECT string_agg(kms_decrypt(v), ',' ORDER BY id) FROM t")
[ "$out" = "first secret,second secret,third secret" ] && [ "$(vault_calls decrypt)" -ge 1 ]
check $? "moved to transit/app2, every row decrypts there (got '$out')"

# ------------------------------------------------------------------ derived keys
vaultctl POST reset-stats >/dev/null
out=$(q "SELECT kms_create_key('vd', 'vault-transit:transit/derived', kms_context => '{\"tenant\": \"42\", \"app\": \"x\"}')" \
        "CREATE TABLE td AS SELECT kms_encrypt('derived secret', 'vd') AS v" "SELECT 'ok'")
[ "$(echo "$out" | tail -1)" = ok ] && ! echo "$out" | grep -q ERROR
check $? "a key on a derived Transit key with a kms_context is created ($(echo "$out" | grep ERROR | head -1))"
blob=$(q "SELECT encode(wrapped_dek, 'escape') FROM pgcrypt_kms.key_versions WHERE key_name = 'vd'" | tail -1)
got=$($PY - "$VURL" "$blob" <<'PY'
import base64, sys, hvac
c = hvac.Client(url=sys.argv[1], token="root")
ctx = base64.b64encode(b'{"app":"x","tenant":"42"}').decode()
print(len(base64.b64decode(c.secrets.transit.decrypt_data(name="derived", ciphertext=sys.argv[2], context=ctx)["data"]["plaintext"])))
PY
)
[ "$got" = 32 ]; check $? "the context sent is the canonical form {\"app\":\"x\",\"tenant\":\"42\"}: hvac decrypts the stored blob with it (got '$got')"
out=$(q "SELECT kms_decrypt(v) FROM td")
[ "$out" = "derived secret" ]; check $? "derived key: decrypts in a fresh session (got '$out')"
psql_admin -d $DB -c "UPDATE pgcrypt_kms.keys SET kms_context = '{\"tenant\": \"43\", \"app\": \"x\"}' WHERE key_name = 'vd'" >/dev/null
out=$(q "SELECT kms_decrypt(v) FROM td")
[ "$(sqlstate "$out")" = 58000 ] && echo "$out" | grep -q "message authentication failed"
echo "$out" | sed 's/^/# /'
check $? "derived key under another kms_context does not unwrap: 58000, Vault's error in the detail (got $(sqlstate "$out"))"
out=$(q "SELECT kms_create_key('vd0', 'vault-transit:transit/derived')")
[ "$(sqlstate "$out")" = 22023 ]; check $? "derived Transit key without kms_context: 22023 (got $(sqlstate "$out"))"

# ------------------------------------------------------------------ auth methods
vaultctl POST reset-stats >/dev/null
out=$(q "SET pgcrypt_kms.vault_auth = approle" "SET pgcrypt_kms.vault_approle_role_id = 'role-pg'" \
        "SET pgcrypt_kms.vault_approle_secret_id_file = '$SECRET_FILE'" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$out" = "first secret" ] && [ "$(vault_calls login-approle)" = 1 ]
check $? "AppRole: one login, then decrypt (got '$out', $(vault_calls login-approle) logins)"
out=$(q "SET pgcrypt_kms.vault_auth = kubernetes" "SET pgcrypt_kms.vault_kubernetes_role = 'pg'" \
        "SET pgcrypt_kms.vault_kubernetes_token_file = '$JWT_FILE'" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$out" = "first secret" ] && [ "$(vault_calls login-kubernetes)" = 1 ]
check $? "Kubernetes: one login with the service-account JWT, then decrypt (got '$out', $(vault_calls login-kubernetes) logins)"
vaultctl POST reset-stats >/dev/null
out=$(q "SET pgcrypt_kms.vault_namespace = 'team1'" "SET pgcrypt_kms.vault_token_file = '$NS_FILE'" \
        "SELECT kms_create_key('vns', 'vault-transit:transit/nsapp')" "SELECT kms_flush_cache()" \
        "SELECT kms_decrypt(kms_encrypt('ns secret', 'vns'))")
ns_calls=$(vaultctl GET stats | $PY -c 'import json,sys; print(json.load(sys.stdin)["namespaces"].get("team1", 0))')
[ "$(echo "$out" | tail -1)" = "ns secret" ] && [ "$ns_calls" -ge 2 ]
check $? "namespace team1: X-Vault-Namespace sent, the key of that namespace used ($ns_calls calls in team1; got '$(echo "$out" | tail -1)')"

# renewal: the token's lease is 12 s (11 as lookup-self rounds it); after 2/3 of it
# (and before its end, with 2.5 s to spare) the next call renews first
vaultctl POST token "{\"token\":\"$RENEW_TOKEN\",\"policies\":[\"pg\"],\"ttl\":12,\"renewable\":true}" >/dev/null
RENEW_FILE=$(secret_file renew "$RENEW_TOKEN")
vaultctl POST reset-stats >/dev/null
out=$(runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB \
    -c "SET pgcrypt_kms.vault_token_file = '$RENEW_FILE'" -c "SELECT kms_decrypt(v) FROM t WHERE id = 1" -c "SELECT pg_sleep(8.5)" -c "SELECT kms_flush_cache()" \
    -c "SELECT kms_decrypt(v) FROM t WHERE id = 1" 2>&1 | grep -c "first secret")
[ "$out" = 2 ] && [ "$(vault_calls renew-self)" = 1 ] && [ "$(vault_calls lookup-self)" = 1 ]
check $? "token renewed before expiry: 1 lookup-self, then 1 renew-self after 2/3 of the lease ($(vault_calls renew-self) renewals)"

# a revoked token: one new login, the call once more
vaultctl POST reset-stats >/dev/null
out=$($PY - "$PGBIN" "$PGHOST" "$PGPORT" "$DB" "$SECRET_FILE" "$PGCK_VAULT_PORT" <<'PY' 2>&1
import subprocess, sys, urllib.request
pgbin, host, port, db, sfile, vport = sys.argv[1:]
p = subprocess.Popen(["runuser", "-u", "postgres", "--", pgbin + "/psql", "-X", "-At", "-q", "-h", host,
                      "-p", port, "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
def send(sql):
    p.stdin.write(sql + "\n\\echo __done\n"); p.stdin.flush()
    out = []
    for line in p.stdout:
        if line.strip() == "__done":
            return "".join(out).strip()
        out.append(line)
send("SET pgcrypt_kms.vault_auth = approle; SET pgcrypt_kms.vault_approle_role_id = 'role-pg';")
send("SET pgcrypt_kms.vault_approle_secret_id_file = '%s';" % sfile)
a = send("SELECT kms_decrypt(v) FROM t WHERE id = 1;")
urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%s/_emu/revoke-all" % vport, data=b"{}", method="POST"))
send("SELECT kms_flush_cache();")
b = send("SELECT kms_decrypt(v) FROM t WHERE id = 1;")
p.stdin.close(); p.wait()
print(a + "|" + b)
PY
)
[ "$out" = "first secret|first secret" ] && [ "$(vault_calls login-approle)" = 2 ] && [ "$(vault_calls invalid-token)" = 1 ]
check $? "a revoked token: 403 invalid token, one new AppRole login, the call succeeds (got '$out', $(vault_calls login-approle) logins)"

# ------------------------------------------------------------------ errors
vaultctl POST reset-stats >/dev/null
out=$(q "SET pgcrypt_kms.vault_token_file = '$DENY_FILE'" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$(sqlstate "$out")" = 42501 ] && [ "$(vault_calls denied)" = 1 ]
check $? "403 permission denied: 42501, asked exactly once (got $(sqlstate "$out"), $(vault_calls denied) denied requests)"
vaultctl POST reset-stats >/dev/null
vaultctl POST fault '{"path":"decrypt/app2","kind":"500","count":1}' >/dev/null
out=$(q "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$out" = "first secret" ] && [ "$(vault_calls decrypt)" = 1 ]
check $? "500 once: retried, the second attempt decrypts (got '$out')"
vaultctl POST reset-stats >/dev/null
vaultctl POST fault '{"path":"decrypt/app2","kind":"503","count":-1}' >/dev/null
out=$(q "SET pgcrypt_kms.kms_max_attempts = 3" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
faults=$(vaultctl GET stats | $PY -c 'import json,sys; print(json.load(sys.stdin)["faults"].get("503", 0))')
[ "$(sqlstate "$out")" = 58000 ] && [ "$faults" = 3 ]
check $? "503 on every attempt: 58000 after kms_max_attempts = 3 requests (got $(sqlstate "$out"), $faults requests)"
vaultctl POST clear-faults >/dev/null

out=$(q "SELECT kms_create_key('nokey', 'vault-transit:transit/no-such-key')")
[ "$(sqlstate "$out")" = 42704 ]; check $? "a Transit key that does not exist: 42704 (got $(sqlstate "$out"))"
vaultctl POST reset-stats >/dev/null
out=$(q "SET pgcrypt_kms.vault_addr = 'http://127.0.0.1:9'" "SET pgcrypt_kms.kms_max_attempts = 2" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$(sqlstate "$out")" = 58000 ]; check $? "an unreachable Vault (connection refused): 58000, not class 08 (got $(sqlstate "$out"))"
! echo "$out" | grep -qE "127\.0\.0\.1|port 9\b"
check $? "... and the client's error names neither Vault's address nor its port (pgcrypt_kms.vault_addr is superuser-only): $(echo "$out" | grep -E '^(ERROR|DETAIL)' | tr '\n' ' ')"

out=$(q "SET pgcrypt_kms.vault_token_file = '$OPEN_FILE'" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$(sqlstate "$out")" = 42501 ] && echo "$out" | grep -q "accessible to other users"
check $? "a token file readable by others is refused: 42501 (got $(sqlstate "$out"))"
! echo "$out" | grep -qF "$OPEN_FILE"
check $? "... without the file's path (a superuser-only setting) in the client's error: $(echo "$out" | grep '^ERROR')"
BREAK_FILE=$(secret_file broken "$(printf 'hvs.pgck-broken\nX-Injected: 1')")
out=$(q "SET pgcrypt_kms.vault_token_file = '$BREAK_FILE'" "SELECT kms_decrypt(v) FROM t WHERE id = 1")
[ "$(sqlstate "$out")" = 58000 ] && echo "$out" | grep -q "characters a Vault credential does not have" &&
    ! echo "$out" | grep -qF -e "hvs.pgck-broken" -e "$BREAK_FILE"
check $? "a token file with a line break inside is refused before any request: 58000, naming neither the token nor the file (got $(echo "$out" | grep '^ERROR'))"

# a hung Vault: statement_timeout and pg_cancel_backend end the call
vaultctl POST fault '{"path":"decrypt/","kind":"slow","count":-1,"delay":30}' >/dev/null
out=$(q "SET statement_timeout = '500ms'" '\timing on' "SELECT kms_decrypt(v) FROM t WHERE id = 1")
el=$(echo "$out" | sed -n 's/^Time: \([0-9]*\)\..*/\1/p' | tail -1)
[ "$(sqlstate "$out")" = 57014 ] && [ -n "$el" ] && [ "$el" -lt 1500 ]
check $? "hung Vault + statement_timeout 500ms: 57014 after ${el:-?} ms (psql's timing; < 1500)"
runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -d $DB -v VERBOSITY=verbose \
    -c "SET application_name = 'pgck_vault_hang'" -c "SELECT kms_decrypt(v) FROM t WHERE id = 1" >"$WORK/bg.out" 2>&1 &
BGPID=$!
for i in $(seq 1 100); do
    [ "$(psql_admin -d $DB -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgck_vault_hang' AND state = 'active'")" = 1 ] && break
    sleep 0.05
done
sleep 0.3
t0=$(date +%s%3N)
psql_admin -d $DB -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgck_vault_hang'" >/dev/null
wait "$BGPID"; BGPID=
el=$(( $(date +%s%3N) - t0 ))
[ "$(sqlstate "$(cat "$WORK/bg.out")")" = 57014 ] && [ "$el" -lt 1000 ]
check $? "hung Vault + pg_cancel_backend: 57014 within $el ms of the cancel (< 1000)"
vaultctl POST clear-faults >/dev/null

# never class 08 (README, SQLSTATEs): every error this check provoked through psql
errs=$(grep -c "^ERROR:  [0-9A-Z]\{5\}:" "$WORK/all.out")
c08=$(grep "^ERROR:  08" "$WORK/all.out" | head -3)
[ "$errs" -ge 5 ] && [ -z "$c08" ]
check $? "none of the $errs errors provoked here has a class 08 SQLSTATE (${c08:-none})"

# ------------------------------------------------------------------ psycopg
out=$(runuser -u postgres -- $PY - "$PGHOST" "$PGPORT" "$DB" <<'PY' 2>&1
import sys, psycopg
with psycopg.connect(host=sys.argv[1], port=sys.argv[2], dbname=sys.argv[3]) as c:
    r = c.execute("SELECT kms_decrypt(kms_encrypt(%s, 'v1'))", ("from psycopg",)).fetchone()[0]
    try:
        c.execute("SET pgcrypt_kms.vault_auth = approle")
        c.execute("SET pgcrypt_kms.vault_approle_role_id = 'nobody'")
        c.execute("SET pgcrypt_kms.vault_approle_secret_id_file = '/nonexistent/x'")
        c.execute("SELECT kms_flush_cache()")
        c.execute("SELECT kms_decrypt(v) FROM t WHERE id = 1")
        print(r, "no error")
    except psycopg.Error as e:
        print(r, e.sqlstate)
PY
)
[ "$out" = "from psycopg 58P01" ]
check $? "psycopg: round trip through Vault; a missing secret id file is 58P01 (got '$out')"

# ------------------------------------------------------------------ no secrets in the log
LOGF="${PGCK_TMP:-/nonexistent}/server.log"
if [ -r "$LOGF" ]; then
    leaks=0
    for s in "$TOKEN" "$DENY_TOKEN" "$RENEW_TOKEN" "$NS_TOKEN" "$SECRET_ID" "$JWT"; do
        grep -qF -- "$s" "$LOGF" && leaks=$((leaks + 1))
    done
    grep -q "Vault" "$LOGF"; seen=$?
    [ "$leaks" = 0 ] && [ "$seen" = 0 ]
    check $? "no token, secret id or JWT in the server log ($leaks found; the log does hold Vault errors)"
else
    check 1 "server log $LOGF readable"
fi
exit $fail
