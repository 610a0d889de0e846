#!/usr/bin/env bash
# Re-pointing a KMS alias must not orphan existing key versions (issue 11, defect 3).
#
# AWS's manual key rotation is `aws kms update-alias`: the alias then names another key, and
# Decrypt naming the alias is refused (IncorrectKeyException) for every blob made under the
# old key. The keyring therefore stores the key ARN KMS reported for every wrapped key and
# unwraps with it. Checked here against the emulator, with the alias re-pointed by the real
# AWS CLI:
#  1. a key created through an alias, values encrypted, rotated, more values, then the alias
#     re-pointed: after kms_flush_cache() every value still decrypts and blind-index lookups
#     still work; the next rotation goes to the new key; kms_rewrap_key to another alias
#     re-wraps everything and values still decrypt with both earlier keys disabled;
#     kms_keys shows the ARNs;
#  2. upgrade: keys made under 0.1.0 (CREATE EXTENSION ... VERSION '0.1.0'), ALTER EXTENSION
#     UPDATE, then (a) decrypt, re-point, decrypt again; (b) re-point before any decrypt
#     after the upgrade; in both the old values decrypt and the ARN of the key they were
#     wrapped under is recorded at the first writable unwrap (not in a read-only one).
# Runs (as root) against the cluster of test/run.sh (PGHOST, PGPORT, PGBIN), on the suite's
# emulator (PGCK_EMULATOR_PORT) or a private one.
set -u
cd "$(dirname "$0")/../.."
. test/kms_emulator/lib.sh
pgck_emulator_ensure || exit 1

AWS=${PGCK_AWS_CLI:-/usr/bin/aws}
[ -x "$AWS" ] || { echo "not ok - no AWS CLI at $AWS (Debian package awscli)"; exit 1; }
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
emuctl() { "$PGCK_PYTHON" test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }
jfield() { "$PGCK_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# aws ARGS...: the AWS CLI with only the emulator's static test identity in its environment
aws() {
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_REGION \
        -u AWS_DEFAULT_REGION -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_KMS -u AWS_CA_BUNDLE \
        -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE \
        HOME="$PGCK_EMULATOR_TMP" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_PAGER="" AWS_ACCESS_KEY_ID=AKIDPGCKTEST000000001 \
        AWS_SECRET_ACCESS_KEY=pgck-test-secret-0000000000000000000000 \
        AWS_MAX_ATTEMPTS=1 AWS_EC2_METADATA_DISABLED=true \
        "$AWS" "$@" --endpoint-url "http://127.0.0.1:$PGCK_EMULATOR_PORT" --region us-east-1 \
        --output json
}
# new_key VAR: a fresh emulator key; sets VAR_ID and VAR_ARN
new_key() {
    local out
    out=$(emuctl create-key '{"description":"aws_alias check"}') || return 1
    printf -v "$1_ID" '%s' "$(echo "$out" | jfield key_id)"
    printf -v "$1_ARN" '%s' "$(echo "$out" | jfield arn)"
}
suffix="$$-$RANDOM"
new_key A && new_key B && new_key C && new_key UA && new_key UB && new_key VA && new_key VB ||
    { echo "not ok - could not create emulator keys"; exit 1; }
ALIAS=alias/pgck-app-$suffix
OTHER=alias/pgck-other-$suffix
UALIAS=alias/pgck-upg-$suffix
VALIAS=alias/pgck-upg2-$suffix
for pair in "$ALIAS $A_ID" "$OTHER $C_ID" "$UALIAS $UA_ID" "$VALIAS $VA_ID"; do
    set -- $pair
    aws kms create-alias --alias-name "$1" --target-key-id "$2" >/dev/null ||
        { echo "not ok - aws kms create-alias $1"; exit 1; }
done
# repoint ALIAS KEY_ID: `aws kms update-alias`, checked with describe-key
repoint() {
    aws kms update-alias --alias-name "$1" --target-key-id "$2" >/dev/null &&
        aws kms describe-key --key-id "$1" | grep -q "\"KeyId\": \"$2\""
}

sql_in() { # DB ARGS...: psql as postgres, one session for all -c
    local db=$1
    shift
    runuser -u postgres -- "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d "$db" "$@"
}
# flushed SQL: in one session, kms_flush_cache() and then SQL; SQL's output only
flushed() { sql -c "SELECT kms_flush_cache()" -c "$1" | tail -n 1; }
newdb() {
    sql_in postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" \
        -c "ALTER DATABASE $1 SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$PGCK_EMULATOR_PORT'" \
        -c "ALTER DATABASE $1 SET pgcrypt_kms.aws_region = 'us-east-1'" >/dev/null
}
# queries: how many values of TABLE (ids 1..n, plaintext 'v' || id) decrypt, and how many are
# found (exactly once) through their blind index under KEY
all_ok() { echo "SELECT count(*) FROM $1 WHERE kms_decrypt(v) = 'v' || id"; }
lookups() {
    echo "SELECT count(*) FROM generate_series(1, (SELECT max(id) FROM $1)) g
           WHERE (SELECT count(*) FROM $1 WHERE kms_blind_index(v) = kms_blind_index('v' || g, '$2')) = 1"
}

# ---------------------------------------------------------------- 1. re-pointed alias
DB=pgck_alias
newdb $DB
sql() { sql_in $DB "$@"; }
sql -c "CREATE EXTENSION pgcrypt_kms" \
    -c "SELECT kms_create_key('k', 'aws-kms:$ALIAS', blind_index => 'exact')" \
    -c "CREATE TABLE t AS SELECT g AS id, kms_encrypt('v' || g, 'k') AS v FROM generate_series(1, 50) g" \
    -c "SELECT kms_rotate_key('k')" \
    -c "INSERT INTO t SELECT g, kms_encrypt('v' || g, 'k') FROM generate_series(51, 100) g" >/dev/null
got=$(sql -c "SELECT string_agg(version || '=' || kms_key_arn || ',' || index_kms_key_arn, ' ' ORDER BY version) FROM kms_keys WHERE key_name = 'k'")
[ "$got" = "1=$A_ARN,$A_ARN 2=$A_ARN,$A_ARN" ]
check $? "kms_keys shows the key ARN GenerateDataKey reported for each version and the index key (got '$got')"

repoint "$ALIAS" "$B_ID"; check $? "aws kms update-alias re-pointed $ALIAS to key B"
n=$(flushed "$(all_ok t)")
[ "$n" = "100" ]; check $? "after re-pointing the alias and kms_flush_cache(), all 100 old values decrypt (got $n)"
n=$(flushed "$(lookups t k)")
[ "$n" = "100" ]; check $? "after re-pointing, every value is found through its blind index (got $n)"

v=$(sql -c "SELECT kms_rotate_key('k')")
got=$(sql -c "SELECT kms_key_arn FROM kms_keys WHERE key_name = 'k' AND version = $v")
[ "$got" = "$B_ARN" ]; check $? "the next rotation (version $v) goes to the key the alias names now (got '$got')"
sql -c "INSERT INTO t SELECT g, kms_encrypt('v' || g, 'k') FROM generate_series(101, 150) g" >/dev/null
n=$(flushed "$(all_ok t)")
[ "$n" = "150" ]; check $? "values under both keys decrypt (got $n of 150)"
[ "$(sql -c "SELECT count(DISTINCT kms_version_id(v)) FROM t")" = "3" ]
check $? "the table holds values of three versions"

before=$(sql -c "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM t")
n=$(sql -c "SELECT kms_rewrap_key('k', 'aws-kms:$OTHER')")
[ "$n" = "4" ]; check $? "kms_rewrap_key to another alias re-wrapped 3 versions and the index key (got '$n')"
[ "$before" = "$(sql -c "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM t")" ]
check $? "no row was touched by the re-wrap"
got=$(sql -c "SELECT string_agg(DISTINCT kms_key || ' ' || kms_key_arn || ' ' || index_kms_key_arn, '|') FROM kms_keys WHERE key_name = 'k'")
[ "$got" = "aws-kms:$OTHER $C_ARN $C_ARN" ]
check $? "after the re-wrap kms_keys names the new alias and the ARN of its key for all (got '$got')"
emuctl disable-key "{\"key_id\":\"$A_ID\"}" >/dev/null && emuctl disable-key "{\"key_id\":\"$B_ID\"}" >/dev/null
n=$(flushed "$(all_ok t)")
[ "$n" = "150" ]; check $? "with keys A and B disabled, all 150 values decrypt after the re-wrap (got $n)"
n=$(sql -c "$(lookups t k)")
[ "$n" = "150" ]; check $? "and every value is found through its blind index (got $n)"
# the alias of the re-wrap is re-pointed too: still fine
repoint "$OTHER" "$A_ID" >/dev/null 2>&1 || true  # A is disabled: UpdateAlias accepts a disabled key
n=$(flushed "$(all_ok t)")
[ "$n" = "150" ]; check $? "re-pointing the re-wrap's alias (to a disabled key) changes nothing (got $n)"
emuctl enable-key "{\"key_id\":\"$A_ID\"}" >/dev/null && emuctl enable-key "{\"key_id\":\"$B_ID\"}" >/dev/null

# ---------------------------------------------------------------- 2. upgrade from 0.1.0
DB=pgck_alias_upgrade
newdb $DB
sql -c "CREATE EXTENSION pgcrypt_kms VERSION '0.1.0'" \
    -c "SELECT kms_create_key('u', 'aws-kms:$UALIAS', blind_index => 'exact')" \
    -c "SELECT kms_create_key('w', 'aws-kms:$VALIAS', blind_index => 'exact')" \
    -c "CREATE TABLE tu AS SELECT g AS id, kms_encrypt('v' || g, 'u') AS v FROM generate_series(1, 30) g" \
    -c "CREATE TABLE tw AS SELECT g AS id, kms_encrypt('v' || g, 'w') AS v FROM generate_series(1, 30) g" \
    -c "SELECT kms_rotate_key('u'), kms_rotate_key('w')" \
    -c "INSERT INTO tu SELECT g, kms_encrypt('v' || g, 'u') FROM generate_series(31, 60) g" \
    -c "INSERT INTO tw SELECT g, kms_encrypt('v' || g, 'w') FROM generate_series(31, 60) g" >/dev/null
check $? "0.1.0 installed; keys, values and a rotation made under it"
sql -c "ALTER EXTENSION pgcrypt_kms UPDATE" >/dev/null
check $? "ALTER EXTENSION pgcrypt_kms UPDATE"
[ "$(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'")" = "0.3.0" ]
check $? "the extension is at 0.3.0"
want=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pgcrypt_kms.control)
[ "$(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'")" = "$want" ]
check $? "the extension is at the control file's default_version $want"
got=$(sql -c "SELECT count(*) FILTER (WHERE kms_key_arn IS NULL) || '/' || count(*) FROM kms_keys")
[ "$got" = "4/4" ]; check $? "after the update the old versions have no ARN yet (got $got NULL)"

# (a) decrypt once, then re-point
n=$(sql -c "$(all_ok tu)")
[ "$n" = "60" ]; check $? "key u: every old value decrypts after the update (got $n)"
got=$(sql -c "SELECT string_agg(kms_key_arn, ' ' ORDER BY version) FROM kms_keys WHERE key_name = 'u'")
[ "$got" = "$UA_ARN $UA_ARN" ]
check $? "key u: the first decryption recorded the ARN of every version (got '$got')"
repoint "$UALIAS" "$UB_ID"; check $? "re-pointed $UALIAS"
n=$(sql -c "$(all_ok tu)")
[ "$n" = "60" ]; check $? "key u: every old value decrypts after re-pointing (got $n)"
n=$(sql -c "$(lookups tu u)")
[ "$n" = "60" ]; check $? "key u: every value is found through its blind index (got $n)"
got=$(sql -c "SELECT DISTINCT index_kms_key_arn FROM kms_keys WHERE key_name = 'u'")
[ "$got" = "$UA_ARN" ]
check $? "key u: the first use of the index key recorded the ARN it was wrapped under, not the alias's new key (got '$got')"

# (b) re-point before any decryption after the update; a read-only transaction first
repoint "$VALIAS" "$VB_ID"; check $? "re-pointed $VALIAS before any decryption"
n=$(sql -c "BEGIN READ ONLY" -c "$(all_ok tw)" -c "COMMIT")
[ "$n" = "60" ]; check $? "key w: old values decrypt in a read-only transaction (got $n)"
got=$(sql -c "SELECT count(*) FROM kms_keys WHERE key_name = 'w' AND kms_key_arn IS NULL")
[ "$got" = "2" ]; check $? "key w: a read-only transaction records nothing (got $got versions without ARN)"
n=$(sql -c "$(all_ok tw)")
[ "$n" = "60" ]; check $? "key w: old values decrypt (got $n)"
got=$(sql -c "SELECT string_agg(kms_key_arn, ' ' ORDER BY version) FROM kms_keys WHERE key_name = 'w'")
[ "$got" = "$VA_ARN $VA_ARN" ]
check $? "key w: the ARN recorded is the key the values were wrapped under, not the alias's new one (got '$got')"
n=$(sql -c "$(lookups tw w)")
[ "$n" = "60" ]; check $? "key w: every value is found through its blind index (got $n)"
got=$(sql -c "SELECT DISTINCT index_kms_key_arn FROM kms_keys WHERE key_name = 'w'")
[ "$got" = "$VA_ARN" ]; check $? "key w: the index key's ARN recorded at its first use (got '$got')"
v=$(sql -c "SELECT kms_rotate_key('w')")
got=$(sql -c "SELECT kms_key_arn FROM kms_keys WHERE key_name = 'w' AND version = $v")
[ "$got" = "$VB_ARN" ]; check $? "key w: a rotation after the update stores the new key's ARN (got '$got')"

for db in pgck_alias pgck_alias_upgrade; do sql_in postgres -c "DROP DATABASE $db" >/dev/null; done
exit $fail
