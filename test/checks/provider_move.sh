#!/usr/bin/env bash
# Moving a key between providers with kms_rewrap_key (issue 16 item 5): local → aws-kms →
# local, for a key with two DEK versions and an index key rotation under way (current and
# previous index key), with a KMS context:
#  - every wrapped key is moved (count), each through the old provider's unwrap and the new
#    one's wrap (the emulator sees Encrypt with the EncryptionContext going to AWS, Decrypt
#    coming back, and never ReEncrypt or GenerateDataKey), and no row is touched;
#  - after each move a new session whose old provider is unusable (local master key file
#    or KMS endpoint pointed nowhere) decrypts every value and every blind-index probe
#    (current and previous index key) still matches;
#  - a stored wrapped key that does not unwrap to its key-check value (here: another
#    version's) is never wrapped anew: the move is refused (58000) and nothing changes;
#  - the local master key file is read only if it is a regular file of mode 0600 that is not
#    a symbolic link: a copy readable by group or others is refused (58000), and so is a
#    symlink to a valid copy (O_NOFOLLOW), with the valid copy itself as positive control.
# Runs (as root) against the cluster and emulator of test/run.sh.
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
PY=/usr/bin/python3
[ -n "${PGCK_EMULATOR_PORT:-}" ] || { echo "not ok - no emulator (PGCK_EMULATOR_PORT)"; exit 1; }
emuctl() { $PY test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }
DB=pgck_provider_move
psql_as() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@"; }
psql_as -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
sql() { psql_as -v ON_ERROR_STOP=1 -d $DB "$@"; }
sql -c "CREATE EXTENSION pgcrypt_kms"

# two DEK versions, index key rotated once (rows 1-40 tagged by the previous index key)
sql -c "SELECT kms_create_key('mv', 'local:mv-a', blind_index => 'exact', kms_context => '{\"tenant\":\"7\"}')" \
    -c "CREATE TABLE mv AS SELECT g AS id, kms_encrypt('mv' || g, 'mv') AS v FROM generate_series(1, 40) g" \
    -c "SELECT kms_rotate_key('mv')" \
    -c "INSERT INTO mv SELECT g, kms_encrypt('mv' || g, 'mv') FROM generate_series(41, 80) g" \
    -c "SELECT kms_rotate_index_key('mv')" \
    -c "INSERT INTO mv SELECT g, kms_encrypt('mv' || g, 'mv') FROM generate_series(81, 120) g" >/dev/null
rows_md5() { sql -c "SELECT md5(string_agg(v::text, ',' ORDER BY id)) FROM mv"; }
before=$(rows_md5)

# all 120 decrypt, each value's tag is among the probes of its plaintext (current and
# previous index key), and a probe of the current key finds the 40 newest rows; $1: SETs
# that make the old provider unusable in this session
verify() {
    sql -c "$1" -c "SELECT count(*) FILTER (WHERE kms_decrypt(v) = 'mv' || id),
                        count(*) FILTER (WHERE kms_blind_index(v) = ANY (kms_blind_index_all('mv' || id, 'mv'))),
                        count(*) FILTER (WHERE kms_blind_index(v) = kms_blind_index('mv' || id, 'mv'))
                   FROM mv" 2>&1 | tail -1
}
calls() {
    emuctl stats | $PY -c 'import json,sys; c=json.load(sys.stdin)["calls"]; print(" ".join("%s=%d" % (o, c.get(o, 0)) for o in ("Encrypt","Decrypt","ReEncrypt","GenerateDataKey")))'
}

r=$(verify "SELECT 1")
[ "$r" = "120|120|40" ]; check $? "under local:mv-a: 120 values decrypt, 120 tags match a probe, 40 the current one (got $r)"

# ---------------------------------------------------------------- local → aws-kms
emuctl reset-stats >/dev/null
n=$(sql -c "SELECT kms_rewrap_key('mv', 'aws-kms:alias/pgck-test')" 2>&1)
# 3 DEK versions: kms_rotate_index_key makes one too
[ "$n" = "5" ]; check $? "local → aws-kms: 3 DEK versions and 2 index keys moved (got $n)"
c=$(calls)
[ "$c" = "Encrypt=5 Decrypt=0 ReEncrypt=0 GenerateDataKey=0" ]; check $? "... five KMS Encrypt calls and nothing else ($c)"
ctx=$(emuctl call-log | $PY -c 'import json,sys; print(sorted(set(json.dumps(e.get("encryption_context"), sort_keys=True) for e in json.load(sys.stdin)["calls"] if e["op"] == "Encrypt")))')
[ "$ctx" = "['{\"tenant\": \"7\"}']" ]; check $? "... each with the key's KMS context as EncryptionContext ($ctx)"
[ "$(rows_md5)" = "$before" ]; check $? "... no row was touched"
k=$(sql -c "SELECT string_agg(DISTINCT kms_key, ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'mv'")
ik=$(sql -c "SELECT kms_key || '|' || index_kms_key FROM pgcrypt_kms.keys WHERE key_name = 'mv'")
arns=$(sql -c "SELECT count(*) FROM pgcrypt_kms.key_versions WHERE key_name = 'mv' AND kms_key_arn LIKE 'arn:aws:kms:%'")
[ "$k" = "aws-kms:alias/pgck-test" ] && [ "$ik" = "aws-kms:alias/pgck-test|aws-kms:alias/pgck-test" ] && [ "$arns" = "3" ]
check $? "... the keyring names the new master key, with the key ARN KMS reported ($k; $ik; $arns ARNs)"
r=$(verify "SET pgcrypt_kms.local_key_file = '/nonexistent/pgck-no-master.key'")
[ "$r" = "120|120|40" ]; check $? "... without the local master key: 120 decrypt, 120 tags match, 40 the current probe (got $r)"

# a wrapped key that is not its version's key is never moved on
emuctl reset-stats >/dev/null
out=$(sql -c "BEGIN" \
    -c "UPDATE pgcrypt_kms.key_versions SET wrapped_dek = (SELECT wrapped_dek FROM pgcrypt_kms.key_versions WHERE key_name = 'mv' AND version = 2), kms_key_arn = (SELECT kms_key_arn FROM pgcrypt_kms.key_versions WHERE key_name = 'mv' AND version = 2) WHERE key_name = 'mv' AND version = 1" \
    -c "SELECT kms_rewrap_key('mv', 'local:mv-b')" -c "COMMIT" 2>&1)
echo "$out" | grep -q "ERROR:  the KMS returned a data key for key \"mv\" version 1 that is not the stored one"
check $? "a version whose wrapped key unwraps to another key: the move is refused ($(echo "$out" | grep ERROR | head -1))"
c=$(calls)
[ "$(sql -c "SELECT count(*) FROM pgcrypt_kms.key_versions WHERE key_name = 'mv' AND kms_key LIKE 'local:%'")" = "0" ]
check $? "... and nothing changed ($c)"

# ---------------------------------------------------------------- aws-kms → local
emuctl reset-stats >/dev/null
n=$(sql -c "SELECT kms_rewrap_key('mv', 'local:mv-b')" 2>&1)
[ "$n" = "5" ]; check $? "aws-kms → local: 5 wrapped keys moved (got $n)"
c=$(calls)
[ "$c" = "Encrypt=0 Decrypt=5 ReEncrypt=0 GenerateDataKey=0" ]; check $? "... five KMS Decrypt calls and nothing else ($c)"
[ "$(rows_md5)" = "$before" ]; check $? "... no row was touched"
k=$(sql -c "SELECT string_agg(DISTINCT kms_key || '/' || coalesce(kms_key_arn, '-'), ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'mv'")
[ "$k" = "local:mv-b/-" ]; check $? "... versions name local:mv-b, with no key ARN left ($k)"
r=$(verify "SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:9'")
[ "$r" = "120|120|40" ]; check $? "... without AWS KMS: 120 decrypt, 120 tags match, 40 the current probe (got $r)"
emuctl reset-stats >/dev/null
n=$(sql -c "SELECT kms_rewrap_key('mv', 'local:mv-c')" 2>&1)
c=$(calls)
r=$(verify "SELECT 1")
[ "$n" = "5" ] && [ "$c" = "Encrypt=0 Decrypt=0 ReEncrypt=0 GenerateDataKey=0" ] && [ "$r" = "120|120|40" ]
check $? "local → local stays within the provider: 5 re-wrapped, no KMS call, all still decrypt ($n; $c; $r)"

# ---------------------------------------------------------------- the master key file itself
# (each kms_create_key wraps a new data key, so it reads the file in that session)
kf="$PGCK_TMP/pm_master_copy.key" kl="$PGCK_TMP/pm_master_link.key"
rm -f "$kf" "$kl"
install -m 0600 -o postgres -g postgres "$PGCK_TMP/local_master.key" "$kf"
ln -s "$kf" "$kl" && chown -h postgres:postgres "$kl"
made() { sql -c "SET pgcrypt_kms.local_key_file = '$1'" -c "SELECT kms_create_key('$2', 'local:mv-file')" 2>&1; }
out=$(made "$kf" kf_ok)
! echo "$out" | grep -q ERROR
check $? "positive control: a 0600 copy of the master key file wraps a new key ($out)"
for mode in 0640 0604 0660; do
    chmod "$mode" "$kf"
    out=$(made "$kf" "kf_$mode")
    echo "$out" | grep -q "ERROR:  the configured local master key file is not usable"
    check $? "a master key file of mode $mode is refused ($out)"
done
chmod 0600 "$kf"
out=$(made "$kl" kf_link)
echo "$out" | grep -q "ERROR:  could not open the configured local master key file"
check $? "a symbolic link to a valid 0600 master key file is refused ($out)"
n=$(sql -c "SELECT string_agg(key_name, ',' ORDER BY key_name) FROM pgcrypt_kms.keys WHERE key_name LIKE 'kf\_%'")
[ "$n" = "kf_ok" ]; check $? "... and only the positive control's key was created ($n)"
rm -f "$kf" "$kl"

psql_as -d postgres -c "DROP DATABASE $DB" >/dev/null
exit $fail
