#!/usr/bin/env bash
# Every provider to every other provider (issue 16, "Done when": a key can be moved from each
# provider to each other one and still decrypt).
#
# Starts every counterpart in one run: the AWS KMS emulator of test/run.sh (already up), the
# Vault Transit emulator, PyKMIP's server (mutual TLS) and a SoftHSM2 token (test/
# providers_lib.sh, shared with vault_transit.sh, kmip_pykmip.sh and pkcs11_softhsm.sh), and a
# cluster of its own (SoftHSM2 needs SOFTHSM2_CONF in the server's environment) configured for
# all five providers: local, aws-kms, vault-transit (a derived Transit key, so the context is
# required), kmip and pkcs11.  One key, with two DEK versions, a blind index whose index key
# was rotated (current and previous index key) and a KMS context, is moved with
# kms_rewrap_key along an Eulerian circuit of the complete directed graph on the five
# providers: 20 moves, each ordered pair exactly once (the circuit is printed and checked).
# After every move:
#   - the count is 5 (3 DEK versions, 2 index keys) and the keyring names the new master key
#     for every version and for the index keys;
#   - no row changed (md5 of the ciphertexts);
#   - a new session in which the previous provider is made unusable (its key file, endpoint,
#     server port or module pointed nowhere) decrypts all 120 values, every value's stored
#     tag is among the probes of its plaintext (current and previous index key), and the
#     current key's probe finds the 40 rows tagged with it;
#   - control: a new session in which the new provider is unusable decrypts nothing (so the
#     switch really disables a provider, and the key really lives with the new one now);
#   - into aws-kms: the emulator saw Encrypt with the key's context as EncryptionContext.
# A counterpart that is missing is a failure (not ok), never a silent skip.
#
# Runs (as root) from test/run.sh (PGBIN, PGCK_TMP, PGCK_EMULATOR_PORT and the emulator's
# AWS_* test identity exported).
set -u
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
fail=0
n=0
check() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
missing() { echo "not ok - SKIPPED, counted as a failure: $1"; exit 1; }

# ------------------------------------------------------------------ counterparts present?
[ -n "${PGCK_EMULATOR_PORT:-}" ] || missing "no AWS KMS emulator (PGCK_EMULATOR_PORT; run from test/run.sh)"
[ -n "${PGBIN:-}" ] && [ -n "${PGCK_TMP:-}" ] || missing "PGBIN/PGCK_TMP not set (run from test/run.sh)"
$PY -c 'import kmip.services.server' 2>/dev/null || missing "PyKMIP (apt-get install python3-pykmip)"
$PY -c 'import cryptography' 2>/dev/null || missing "python3-cryptography (the Vault emulator)"
. test/providers_lib.sh
[ -f "$PGCK_PROV_SOFTHSM" ] || missing "SoftHSM2 module $PGCK_PROV_SOFTHSM (apt-get install softhsm2)"
command -v softhsm2-util >/dev/null || missing "softhsm2-util (apt-get install softhsm2)"
emuctl() { $PY test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }

W="$PGCK_TMP/matrix"
rm -rf "$W" && mkdir -p "$W/secrets" && chown postgres "$W" "$W/secrets" && chmod 711 "$W" && chmod 700 "$W/secrets"
KD="$W/kmip"
P="$W/p11"
cleanup() {
    pgck_prov_stop_cluster "$W"
    pgck_prov_kmip_stop "$KD"
    declare -F pgck_vault_stop >/dev/null && pgck_vault_stop
}
trap cleanup EXIT
rand() { $PY -c 'import secrets; print(secrets.token_hex(16))'; }

# Vault: a policy-bound token in a private file, a derived Transit key
pgck_prov_vault_start || missing "the Vault emulator did not start"
VTOKEN="hvs.pgck-matrix-$(rand)"
vaultctl POST policy '{"name":"pg","paths":{"transit/datakey/plaintext/*":["update"],"transit/decrypt/*":["update"],"transit/encrypt/*":["update"],"transit/rewrap/*":["update"],"transit/keys/*":["read"]}}' >/dev/null &&
    vaultctl POST token "{\"token\":\"$VTOKEN\",\"policies\":[\"pg\"],\"ttl\":3600,\"renewable\":true}" >/dev/null &&
    pgck_prov_vault_root POST transit/keys/mx '{"derived":true}' >/dev/null
check $? "Vault emulator on port $PGCK_VAULT_PORT, derived Transit key transit/mx, a token with a minimal policy"
VTOKEN_FILE=$(pgck_prov_secret_file "$W/secrets" vault_token "$VTOKEN")

# KMIP: PyKMIP's server over mutual TLS, one AES-256 key
KPORT=$(pgck_prov_free_port)
pgck_prov_kmip_pki "$KD" && pgck_prov_kmip_start "$KD" "$KPORT" || missing "PyKMIP's server did not start ($(tail -3 "$KD/serve.out" 2>/dev/null))"
KUID=$(pgck_prov_kmipc "$KD" "$KPORT" create pgck-matrix)
[ -n "$KUID" ]; check $? "PyKMIP's server on port $KPORT, key kmip:$KUID created with PyKMIP's client"

# PKCS#11: a SoftHSM2 token with a non-extractable AES key
PIN="pgck-matrix-pin-$(rand)"
pgck_prov_softhsm_setup "$P" "$PIN" "so-$PIN" && pgck_prov_softhsm_genkey "$P" "$PIN" master ||
    missing "SoftHSM2 token setup failed"
check 0 "SoftHSM2 token pg with key master"

# the cluster: every provider configured in postgresql.conf
pgck_prov_start_cluster "$W" "shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.kms_max_attempts = 2
pgcrypt_kms.local_key_file = '$W/secrets/local_master.key'
pgcrypt_kms.aws_region = 'us-east-1'
pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$PGCK_EMULATOR_PORT'
pgcrypt_kms.vault_addr = '$PGCK_PROV_VAULT_URL'
pgcrypt_kms.vault_token_file = '$VTOKEN_FILE'
pgcrypt_kms.kmip_host = '127.0.0.1'
pgcrypt_kms.kmip_port = $KPORT
pgcrypt_kms.kmip_ca_file = '$KD/ca.crt'
pgcrypt_kms.kmip_client_cert = '$KD/client.crt'
pgcrypt_kms.kmip_client_key = '$KD/client.key'
pgcrypt_kms.pkcs11_module = '$PGCK_PROV_SOFTHSM'
pgcrypt_kms.pkcs11_pin_file = '$P/pin'" \
    SOFTHSM2_CONF="$P/softhsm2.conf" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-}" \
    AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-}" AWS_REGION=us-east-1 \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true ||
    { cat "$W/server.log" 2>/dev/null | tail -20; missing "the cluster did not start"; }
check 0 "a cluster configured for local, aws-kms, vault-transit, kmip and pkcs11 (port $PGCK_PROV_PGPORT)"

DB=pgck_matrix
psql_as() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$W" -p "$PGCK_PROV_PGPORT" "$@"; }
sql() { psql_as -v ON_ERROR_STOP=1 -d $DB "$@"; }
psql_as -d postgres -c "CREATE DATABASE $DB" >/dev/null && sql -c "CREATE EXTENSION pgcrypt_kms" >/dev/null ||
    missing "CREATE EXTENSION failed"

PROVIDERS="local aws-kms vault-transit kmip pkcs11"
declare -A REF=(
    [local]="local:mx"
    [aws-kms]="aws-kms:alias/pgck-test"
    [vault-transit]="vault-transit:transit/mx"
    [kmip]="kmip:$KUID"
    [pkcs11]="pkcs11:token=pg;object=master"
)
# what makes a provider unusable in a session (a superuser's)
declare -A OFF=(
    [local]="SET pgcrypt_kms.local_key_file = '/nonexistent/pgck-no-master.key'"
    [aws-kms]="SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:9'"
    [vault-transit]="SET pgcrypt_kms.vault_addr = 'http://127.0.0.1:9'"
    [kmip]="SET pgcrypt_kms.kmip_port = 9"
    [pkcs11]="SET pgcrypt_kms.pkcs11_module = '/nonexistent/pgck-no-module.so'"
)

# one key: three DEK versions (the index-key rotation makes the third), the index key rotated
# once (rows 1-80 tagged by the previous index key), a KMS context
sql -c "SELECT kms_create_key('mx', '${REF[local]}', blind_index => 'exact', kms_context => '{\"tenant\":\"7\"}')" \
    -c "CREATE TABLE mx AS SELECT g AS id, kms_encrypt('mx' || g, 'mx') AS v FROM generate_series(1, 40) g" \
    -c "SELECT kms_rotate_key('mx')" \
    -c "INSERT INTO mx SELECT g, kms_encrypt('mx' || g, 'mx') FROM generate_series(41, 80) g" \
    -c "SELECT kms_rotate_index_key('mx')" \
    -c "INSERT INTO mx SELECT g, kms_encrypt('mx' || g, 'mx') FROM generate_series(81, 120) g" >/dev/null
check $? "key mx on ${REF[local]}: 3 DEK versions, index key rotated, context {\"tenant\":\"7\"}, 120 rows"
rows_md5() { sql -c "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM mx"; }
BEFORE=$(rows_md5)
# verify SETTING: a new session; decrypted, tag among the probes, found by the current probe
verify() {
    sql -c "$1" -c "SELECT count(*) FILTER (WHERE kms_decrypt(v) = 'mx' || id),
                        count(*) FILTER (WHERE kms_blind_index(v) = ANY (kms_blind_index_all('mx' || id, 'mx'))),
                        count(*) FILTER (WHERE kms_blind_index(v) = kms_blind_index('mx' || id, 'mx'))
                   FROM mx" 2>&1 | tail -1
}
keyring() {
    sql -c "SELECT (SELECT string_agg(DISTINCT kms_key, ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'mx')
                   || '|' || kms_key || '|' || coalesce(index_kms_key, '-') || '|' || count_v
              FROM pgcrypt_kms.keys, (SELECT count(*) AS count_v FROM pgcrypt_kms.key_versions WHERE key_name = 'mx') c
             WHERE key_name = 'mx'" \
        -c "SELECT (prev_index_key_wrapped IS NOT NULL)::text FROM pgcrypt_kms.keys WHERE key_name = 'mx'" | tr '\n' '|'
}
r=$(verify "SELECT 1")
[ "$r" = "120|120|40" ]; check $? "under ${REF[local]}: 120 decrypt, 120 tags match a probe, 40 the current one (got $r)"

# ------------------------------------------------------------------ the circuit
CIRCUIT=$($PY - $PROVIDERS <<'PY'
import sys
v = sys.argv[1:]
out = {a: [b for b in v if b != a] for a in v}   # K5, directed: every ordered pair
stack, path = [v[0]], []
while stack:                                      # Hierholzer
    a = stack[-1]
    if out[a]:
        stack.append(out[a].pop(0))
    else:
        path.append(stack.pop())
print(" ".join(reversed(path)))
PY
)
echo "# Eulerian circuit: ${CIRCUIT// / → }"
read -r -a C <<<"$CIRCUIT"
edges=$(for ((i = 0; i + 1 < ${#C[@]}; i++)); do echo "${C[i]}>${C[i+1]}"; done)
all=$(for a in $PROVIDERS; do for b in $PROVIDERS; do [ "$a" != "$b" ] && echo "$a>$b"; done; done | sort)
[ "${#C[@]}" -eq 21 ] && [ "${C[0]}" = "${C[20]}" ] && [ "$(echo "$edges" | sort)" = "$all" ]
check $? "the circuit has 20 moves, starts and ends at ${C[0]}, and takes every ordered pair of distinct providers exactly once"

# ------------------------------------------------------------------ the moves
for ((i = 0; i + 1 < ${#C[@]}; i++)); do
    from=${C[i]} to=${C[i+1]}
    tag="move $((i + 1))/20 $from → $to"
    [ "$to" = aws-kms ] && emuctl reset-stats >/dev/null
    got=$(sql -c "SELECT kms_rewrap_key('mx', '${REF[$to]}')" 2>&1)
    [ "$got" = 5 ]; check $? "$tag: 5 wrapped keys moved (3 DEK versions, 2 index keys) (got $got)"
    k=$(keyring)
    want="${REF[$to]}|${REF[$to]}|${REF[$to]}|3|true|"
    [ "$k" = "$want" ]; check $? "$tag: the keyring names ${REF[$to]} for every version and the index keys ($k)"
    [ "$(rows_md5)" = "$BEFORE" ]; check $? "$tag: no row changed (md5 of the ciphertexts)"
    r=$(verify "${OFF[$from]}")
    [ "$r" = "120|120|40" ]; check $? "$tag: with $from unusable, a new session decrypts 120, 120 tags match a probe, 40 the current one (got $r)"
    r=$(sql -c "${OFF[$to]}" -c "SELECT kms_decrypt(v) FROM mx WHERE id = 1" 2>&1 | grep -c "^ERROR")
    [ "$r" = 1 ]; check $? "$tag: control: with $to unusable, a new session cannot decrypt"
    if [ "$to" = aws-kms ]; then
        ctx=$(emuctl call-log | $PY -c 'import json,sys; print(sorted(set(json.dumps(e.get("encryption_context"), sort_keys=True) for e in json.load(sys.stdin)["calls"] if e["op"] == "Encrypt")))')
        [ "$ctx" = "['{\"tenant\": \"7\"}']" ]; check $? "$tag: the emulator's Encrypt calls carried the context as EncryptionContext ($ctx)"
    fi
done

# the secrets of the counterparts never reach the server log
leaks=$(grep -c -F -e "$VTOKEN" -e "$PIN" "$W/server.log")
[ "$leaks" = 0 ]; check $? "no Vault token or PKCS#11 PIN in the server log ($leaks lines)"

psql_as -d postgres -c "DROP DATABASE $DB" >/dev/null
echo "# $n checks"
exit $fail
