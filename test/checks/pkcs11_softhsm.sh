#!/usr/bin/env bash
# Issue 16 item 3: the pkcs11: provider against SoftHSM2 (Debian's softhsm2), end to end.
#
# Makes a SoftHSM2 token directory in $PGCK_TMP/p11 (owned by postgres), a token "pg" and
# three AES-256 keys made inside it by test/pkcs11/p11_helper.c (built here from the same
# <p11-kit/pkcs11.h>): "master" and "master2" sensitive and non-extractable, "loose"
# extractable.  A second cluster is started here, because SOFTHSM2_CONF must be in the
# server's environment; its pgcrypt_kms.pkcs11_module is test/pkcs11/p11_logwrap.c, a PKCS#11
# module that logs every call (attribute types, mechanisms, IVs; a PIN only by its length) and
# forwards it to SoftHSM2's libsofthsm2.so, so the log proves what the provider asked the token.
#
# Checks: create/encrypt/decrypt/blind index/rotate on pkcs11:token=pg;object=master and by
# id=; kms_rewrap_key to master2; a key moved local → pkcs11 → local (issue 16 item 5); wrong PIN 42501 (one C_Login, never retried, never logged);
# group-readable PIN file 42501; extractable key 55000; unknown object/token 42704; a URI
# with a PIN 22023; a tampered wrapped key and a wrapped key moved to another context 58000
# "does not unwrap"; a token reset (the module really closes the backend's sessions) then a
# decrypt that succeeds on a reopened session; a slow token and statement_timeout: interrupts
# served between module calls; the master key is non-extractable and sensitive (its CKA_VALUE
# read gives CKR_ATTRIBUTE_SENSITIVE) and the provider never asked for CKA_VALUE nor called
# C_WrapKey (the log; the detector itself shown to fire on a probe that does read CKA_VALUE);
# fresh, non-zero IVs and AAD on every wrap; C_Initialize with CKF_OS_LOCKING_OK and
# C_Finalize at backend exit; settings superuser-only; no PIN in the server log.
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }

. test/providers_lib.sh
D="$PGCK_TMP/p11"
PIN=pgck-test-pin-5501
SOPIN=pgck-test-so-pin-7702
SOFTHSM=$PGCK_PROV_SOFTHSM
[ -f "$SOFTHSM" ] || { echo "not ok - SoftHSM2 module $SOFTHSM missing (apt-get install softhsm2)"; exit 1; }
pgck_prov_softhsm_setup "$D" "$PIN" "$SOPIN"
check $? "test helpers built from <p11-kit/pkcs11.h>, token pg initialised"
printf '%s\n' "wrong-$PIN" >"$D/pin.wrong"
printf '%s\n' "$PIN" >"$D/pin.shared"
chown postgres:postgres "$D/pin.wrong" "$D/pin.shared"
chmod 600 "$D/pin.wrong"
chmod 640 "$D/pin.shared"
asp() { pgck_prov_as_hsm "$D" "$@"; }
pgck_prov_softhsm_genkey "$D" "$PIN" master &&
    pgck_prov_softhsm_genkey "$D" "$PIN" master2 &&
    pgck_prov_softhsm_genkey "$D" "$PIN" loose extractable
check $? "keys master, master2 (non-extractable) and loose (extractable) generated in the token"

mechs=$(asp "$D/p11_helper" "$SOFTHSM" mechs pg "$PIN" -)
echo "$mechs" | grep -q "^CKM_AES_GCM: encrypt decrypt"
check $? "the token does CKM_AES_GCM encrypt and decrypt ($(echo "$mechs" | tr '\n' ';'))"

# ---- the master key cannot leave the token (SoftHSM2's own answer)
probe=$(asp "$D/p11_helper" "$SOFTHSM" probe pg "$PIN" master)
echo "$probe" | grep -q "CKA_EXTRACTABLE=0 CKA_SENSITIVE=1 CKA_NEVER_EXTRACTABLE=1"
check $? "master key: CKA_EXTRACTABLE false, CKA_SENSITIVE true, CKA_NEVER_EXTRACTABLE true ($(echo "$probe" | head -1))"
echo "$probe" | grep -q "CKA_VALUE read: CKR_ATTRIBUTE_SENSITIVE"
check $? "master key: reading its CKA_VALUE gives CKR_ATTRIBUTE_SENSITIVE ($(echo "$probe" | tail -1))"
probe=$(asp "$D/p11_helper" "$SOFTHSM" probe pg "$PIN" loose)
echo "$probe" | grep -q "CKA_VALUE read: CKR_OK"
check $? "positive control: the extractable key's CKA_VALUE can be read ($(echo "$probe" | tail -1))"

# ---- a cluster whose environment reaches SoftHSM2 and the logging wrapper
CALLS="$D/calls.log"
TRIGGER="$D/reset"
SLOG="$D/server.log"
stop_cluster() { pgck_prov_stop_cluster "$D"; }
trap stop_cluster EXIT
pgck_prov_start_cluster "$D" "log_min_messages = debug1
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.pkcs11_module = '$D/p11_logwrap.so'
pgcrypt_kms.pkcs11_pin_file = '$D/pin'" \
    SOFTHSM2_CONF="$D/softhsm2.conf" PGCK_P11_REAL="$SOFTHSM" PGCK_P11_LOG="$CALLS" PGCK_P11_TRIGGER="$TRIGGER"
check $? "a cluster with SOFTHSM2_CONF in its environment started"
PPORT=$PGCK_PROV_PGPORT

sql() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$D" -p "$PPORT" -d postgres -v VERBOSITY=sqlstate "$@" 2>&1 | tee -a "$D/all.out"; }
sqlv() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$D" -p "$PPORT" -d postgres -v VERBOSITY=verbose "$@" 2>&1 | tee -a "$D/all.out"; }
sql -c "CREATE EXTENSION pgcrypt_kms" >/dev/null

# ---- the life of a key
out=$(sql -c "SELECT kms_create_key('p', 'pkcs11:token=pg;object=master', blind_index => 'exact')")
check $? "kms_create_key on pkcs11:token=pg;object=master ($out)"
sql -c "CREATE TABLE t AS SELECT kms_encrypt('hsm secret one', 'p') AS v" >/dev/null
out=$(sql -c "SELECT kms_flush_cache()" -c "SELECT kms_decrypt(v) FROM t" | tail -1)
[ "$out" = "hsm secret one" ]; check $? "encrypt, then decrypt in a new session after a cache flush ($out)"
out=$(sql -c "SELECT kms_blind_index(v) = kms_blind_index('hsm secret one', 'p') FROM t")
[ "$out" = "t" ]; check $? "blind index: the probe matches the stored tag ($out)"
out=$(sql -c "SELECT kms_rotate_key('p')" -c "INSERT INTO t SELECT kms_encrypt('hsm secret two', 'p')" \
    -c "SELECT kms_flush_cache()" -c "SELECT string_agg(kms_decrypt(v), ',' ORDER BY 1) FROM t" | tail -1)
[ "$out" = "hsm secret one,hsm secret two" ]; check $? "rotate: both versions decrypt ($out)"
out=$(sql -c "SELECT kms_rewrap_key('p', 'pkcs11:token=pg;object=master2')" | tail -1)
[ "$out" -ge 3 ] 2>/dev/null; check $? "kms_rewrap_key to object master2 re-wrapped every DEK and index key ($out)"
out=$(sql -c "SELECT string_agg(DISTINCT kms_key, ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'p'")
[ "$out" = "pkcs11:token=pg;object=master2" ]; check $? "... and the keyring names master2 ($out)"
out=$(sql -c "SELECT string_agg(kms_decrypt(v), ',' ORDER BY 1) FROM t")
[ "$out" = "hsm secret one,hsm secret two" ]; check $? "... and a new session decrypts both versions under master2 ($out)"
out=$(sql -c "SELECT sum(decrypted) || '/' || sum(failed) FROM kms_verify('t', 'v')")
[ "$out" = "2/0" ]; check $? "the decryption drill (kms_verify) over both versions under master2 ($out decrypted/failed)"
out=$(sql -c "SELECT kms_create_key('byid', 'pkcs11:token=pg;id=%6d%61%73%74%65%72;type=secret-key')" \
    -c "SELECT kms_decrypt(kms_encrypt('by id', 'byid'))" | tail -1)
[ "$out" = "by id" ]; check $? "a key named by id= (percent-encoded) and type=secret-key ($out)"

# ---- moving a key between providers (issue 16 item 5): local → pkcs11 → local
L="SET pgcrypt_kms.local_key_file = '$D/local_master.key'"
out=$(sql -c "$L" -c "SELECT kms_create_key('mvp', 'local:mvp', blind_index => 'exact')" \
    -c "CREATE TABLE mvp AS SELECT kms_encrypt('moved ' || g, 'mvp') AS v, g FROM generate_series(1, 5) g" \
    -c "SELECT kms_rotate_key('mvp')" -c "INSERT INTO mvp SELECT kms_encrypt('moved ' || g, 'mvp'), g FROM generate_series(6, 10) g" \
    -c "SELECT kms_rewrap_key('mvp', 'pkcs11:token=pg;object=master')" | tail -1)
[ "$out" = "3" ]; check $? "local → pkcs11: 2 DEK versions and the index key moved ($out)"
out=$(sql -c "SET pgcrypt_kms.local_key_file = '/nonexistent/pgck-no.key'" \
    -c "SELECT count(*) FROM mvp WHERE kms_decrypt(v) = 'moved ' || g AND kms_blind_index(v) = kms_blind_index('moved ' || g, 'mvp')" | tail -1)
[ "$out" = "10" ]; check $? "... without the local master key all 10 values decrypt and match their probes under pkcs11 ($out)"
out=$(sql -c "$L" -c "SELECT kms_rewrap_key('mvp', 'local:mvp-back')" | tail -1)
out2=$(sql -c "$L" -c "SELECT count(*) FROM mvp WHERE kms_decrypt(v) = 'moved ' || g AND kms_blind_index(v) = kms_blind_index('moved ' || g, 'mvp')" | tail -1)
[ "$out" = "3" ] && [ "$out2" = "10" ]; check $? "pkcs11 → local: 3 moved back, all 10 decrypt and match ($out, $out2)"

# ---- refusals
out=$(sql -c "SELECT kms_create_key('loose', 'pkcs11:token=pg;object=loose')")
echo "$out" | grep -q "ERROR:  55000"; check $? "an extractable, non-sensitive master key is refused with 55000 ($out)"
out=$(sqlv -c "SELECT kms_create_key('loose2', 'pkcs11:token=pg;object=loose')")
echo "$out" | grep -q "CKA_EXTRACTABLE true"; check $? "... and the error says why ($(echo "$out" | grep DETAIL))"
out=$(sql -c "SELECT kms_create_key('nokey', 'pkcs11:token=pg;object=nothere')")
echo "$out" | grep -q "ERROR:  42704"; check $? "an unknown object: 42704 ($out)"
out=$(sql -c "SELECT kms_create_key('notoken', 'pkcs11:token=other;object=master')")
echo "$out" | grep -q "ERROR:  42704"; check $? "an unknown token: 42704 ($out)"
out=$(sql -c "SELECT kms_create_key('pinuri', 'pkcs11:token=pg;object=master?pin-value=1234')")
echo "$out" | grep -q "ERROR:  22023"; check $? "a reference carrying a PIN: 22023 ($(echo "$out" | cut -c1-60)...)"
out=$(sql -c "SELECT kms_create_key('bad', 'pkcs11:token=pg;object=mas ter')")
echo "$out" | grep -q "ERROR:  22023"; check $? "a malformed RFC 7512 path: 22023 ($out)"

# ---- wrong PIN, never retried; group-readable PIN file
before=$(grep -c "C_Login" "$CALLS")
out=$(sql -c "SET pgcrypt_kms.pkcs11_pin_file = '$D/pin.wrong'" -c "SELECT pg_backend_pid()" -c "SELECT kms_decrypt(v) FROM t LIMIT 1")
pid=$(echo "$out" | head -1)
echo "$out" | grep -q "ERROR:  42501"; check $? "a wrong PIN: 42501 ($(echo "$out" | tail -1))"
n=$(grep -c "^$pid C_Login .*= 0xa0$" "$CALLS")
[ "$n" -eq 1 ]; check $? "... after exactly one C_Login (CKR_PIN_INCORRECT), never retried ($n)"
out=$(sql -c "SET pgcrypt_kms.pkcs11_pin_file = '$D/pin.shared'" -c "SELECT kms_decrypt(v) FROM t LIMIT 1")
echo "$out" | grep -q "ERROR:  42501"; check $? "a PIN file readable by its group: 42501 ($out)"
out=$(sqlv -c "SET pgcrypt_kms.pkcs11_pin_file = '$D/pin.shared'" -c "SELECT kms_decrypt(v) FROM t LIMIT 1")
echo "$out" | grep -q "accessible to other users"; check $? "... because of its permissions ($(echo "$out" | grep ERROR | cut -c1-90))"
sql -c "CREATE ROLE p11_plain LOGIN" >/dev/null
out=$(sql -c "SET ROLE p11_plain" -c "SET pgcrypt_kms.pkcs11_module = '/tmp/evil.so'")
echo "$out" | grep -q "ERROR:  42501"; check $? "a non-superuser cannot set pgcrypt_kms.pkcs11_module ($out)"
out=$(sql -c "SET ROLE p11_plain" -c "SHOW pgcrypt_kms.pkcs11_pin_file")
echo "$out" | grep -q "ERROR:  42501"; check $? "... nor read pgcrypt_kms.pkcs11_pin_file ($out)"

# ---- tampered and moved wrapped keys
sql -c "SELECT kms_create_key('tam', 'pkcs11:token=pg;object=master')" -c "CREATE TABLE tt AS SELECT kms_encrypt('tamper me', 'tam') AS v" >/dev/null
sql -c "UPDATE pgcrypt_kms.key_versions SET wrapped_dek = set_byte(wrapped_dek, 30, get_byte(wrapped_dek, 30) # 1) WHERE key_name = 'tam'" >/dev/null
out=$(sqlv -c "SELECT kms_decrypt(v) FROM tt")
echo "$out" | grep -q "ERROR:  58000: wrapped data key does not unwrap"; check $? "a wrapped key with one flipped bit: 58000 does not unwrap ($(echo "$out" | grep ERROR))"
echo "$out" | grep -q -E "PKCS#11 error CKR_(ENCRYPTED_DATA_INVALID|GENERAL_ERROR) in C_Decrypt"; check $? "... the token refused it at C_Decrypt (SoftHSM2 2.6 says CKR_GENERAL_ERROR for a GCM tag mismatch: $(echo "$out" | grep DETAIL | tail -1))"
sql -c "SELECT kms_create_key('ctx1', 'pkcs11:token=pg;object=master', kms_context => '{\"tenant\":\"1\"}')" \
    -c "SELECT kms_create_key('ctx2', 'pkcs11:token=pg;object=master', kms_context => '{\"tenant\":\"2\"}')" \
    -c "CREATE TABLE tc AS SELECT kms_encrypt('context two', 'ctx2') AS v" >/dev/null
out=$(sql -c "SELECT kms_decrypt(v) FROM tc")
[ "$out" = "context two" ]; check $? "positive control: a key with a KMS context decrypts ($out)"
sql -c "UPDATE pgcrypt_kms.key_versions SET wrapped_dek = (SELECT wrapped_dek FROM pgcrypt_kms.key_versions WHERE key_name = 'ctx1') WHERE key_name = 'ctx2'" >/dev/null
out=$(sqlv -c "SELECT kms_decrypt(v) FROM tc")
echo "$out" | grep -q "ERROR:  58000: wrapped data key does not unwrap"; check $? "a wrapped key moved to a key of another KMS context does not unwrap: the context is bound ($(echo "$out" | grep ERROR))"

# ---- token reset: the module closes every session of the backend between two statements
out=$(runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$D" -p "$PPORT" -d postgres -v VERBOSITY=sqlstate 2>&1 <<SQL
SELECT pg_backend_pid();
SELECT kms_decrypt(v) FROM t ORDER BY 1 LIMIT 1;
\! touch $TRIGGER
SELECT kms_flush_cache();
SELECT kms_decrypt(v) FROM t ORDER BY 1 LIMIT 1;
SQL
)
pid=$(echo "$out" | head -1)
[ "$(echo "$out" | tail -1)" = "hsm secret one" ]; check $? "after a token reset the next decrypt succeeds ($(echo "$out" | tr '\n' ' '))"
grep -A30 "^$pid RESET" "$CALLS" | grep -q "^$pid C_FindObjectsInit = 0xb3$"
check $? "... the reset really invalidated the backend's session (CKR_SESSION_HANDLE_INVALID in the call log)"
n=$(grep -A30 "^$pid RESET" "$CALLS" | grep -c "^$pid C_Login .*= 0x0$")
[ "$n" -eq 1 ]; check $? "... and the provider opened and logged in a new session ($n C_Login after the reset)"
grep -q "\[$pid\] .*PKCS#11 session lost (CKR_SESSION_HANDLE_INVALID" "$SLOG"
check $? "... and logged why"

# ---- interrupts are served between module calls (a call itself cannot be interrupted)
touch "$TRIGGER.slow" && chown postgres "$TRIGGER.slow"
out=$(sql -c "SET statement_timeout = '1s'" -c "SELECT pg_backend_pid()" -c "SELECT kms_decrypt(v) FROM t LIMIT 1")
rm -f "$TRIGGER.slow"
pid=$(echo "$out" | head -1)
echo "$out" | grep -q "ERROR:  57014"; check $? "a slow token (300 ms per call): statement_timeout cancels the unwrap ($(echo "$out" | tail -1))"
n=$(grep -c "^$pid C_Decrypt " "$CALLS")
[ "$n" -eq 0 ]; check $? "... between module calls, before it reached C_Decrypt ($n C_Decrypt calls)"
out=$(sql -c "SELECT kms_decrypt(v) FROM t ORDER BY 1 LIMIT 1")
[ "$out" = "hsm secret one" ]; check $? "... and the next session decrypts ($out)"
touch "$TRIGGER.slow" && chown postgres "$TRIGGER.slow"
runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$D" -p "$PPORT" -d postgres -v VERBOSITY=sqlstate \
    -c "SET application_name = 'pgck_p11_cancel'" -c "SELECT kms_decrypt(v) FROM t LIMIT 1" >"$D/cancel.out" 2>&1 &
bg=$!
for i in $(seq 1 100); do
    [ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgck_p11_cancel' AND state = 'active'")" = 1 ] && break
    sleep 0.05
done
sleep 0.5
t0=$(date +%s%3N)
sql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgck_p11_cancel'" >/dev/null
wait "$bg"
el=$(( $(date +%s%3N) - t0 ))
rm -f "$TRIGGER.slow"
grep -q "ERROR:  57014" "$D/cancel.out" && [ "$el" -lt 1000 ]
check $? "a slow token: pg_cancel_backend ends the unwrap between module calls, 57014 within $el ms of the cancel (< 1000; one module call takes 300 ms) ($(tail -1 "$D/cancel.out"))"
out=$(sql -c "SET pgcrypt_kms.pkcs11_module = '/nonexistent/pgck-no-module.so'" -c "SELECT kms_decrypt(v) FROM t LIMIT 1")
echo "$out" | grep -q "ERROR:  58000"; check $? "a module that cannot be loaded: 58000, not class 08 ($out)"

# ---- what the provider asked the token
n_enc=$(grep -c " C_Encrypt = 0x0$" "$CALLS")
n_dec=$(grep -c " C_Decrypt = 0x0$" "$CALLS")
[ "$n_enc" -ge 8 ] && [ "$n_dec" -ge 5 ]; check $? "positive control: the log holds the provider's calls ($n_enc C_Encrypt, $n_dec C_Decrypt)"
# reads_secret LOG: does LOG show a C_WrapKey, a CKA_VALUE (0x11) read, or another export path?
reads_secret() { grep -E " C_WrapKey | C_CopyObject | C_DigestKey | C_DeriveKey | C_SetAttributeValue |C_GetAttributeValue .*types=([^ ]*,)?0x11(,| )" "$1"; }
hits=$(reads_secret "$CALLS")
[ -z "$hits" ]; check $? "the provider never read CKA_VALUE, never called C_WrapKey, C_CopyObject, C_DigestKey, C_DeriveKey or C_SetAttributeValue (${hits:-none})"
grep -q "C_GetAttributeValue .*types=0x100,0x104,0x105,0x162,0x103 " "$CALLS"
check $? "it read only CKA_KEY_TYPE, CKA_ENCRYPT, CKA_DECRYPT, CKA_EXTRACTABLE and CKA_SENSITIVE"
rm -f "$D/probe.log"
asp env PGCK_P11_REAL="$SOFTHSM" PGCK_P11_LOG="$D/probe.log" "$D/p11_helper" "$D/p11_logwrap.so" probe pg "$PIN" master >/dev/null
[ -n "$(reads_secret "$D/probe.log")" ]; check $? "the detector fires on a client that does read CKA_VALUE (the helper's probe through the wrapper)"
ivs=$(grep " C_EncryptInit mech=0x1087 " "$CALLS" | sed 's/.* iv=\([0-9a-f]*\) .*/\1/')
n=$(echo "$ivs" | grep -c .)
u=$(echo "$ivs" | sort -u | grep -c .)
[ "$n" -ge 8 ] && [ "$n" -eq "$u" ] && ! echo "$ivs" | grep -q "^0*$" && [ "$(echo "$ivs" | awk '{print length($0)}' | sort -u)" = 24 ]
check $? "every wrap is CKM_AES_GCM with a fresh, non-zero 12-byte IV ($n wraps, $u distinct IVs)"
bad=$(grep -E " C_(En|De)cryptInit mech=" "$CALLS" | grep -v -E "mech=0x1087 .* aadlen=([7-9]|[1-9][0-9]+) tagbits=128$")
[ -z "$bad" ]; check $? "every wrap and unwrap binds AAD (header and context) with a 128-bit tag (${bad:-all do})"
grep -q " C_Initialize flags=0x2 = 0x0$" "$CALLS"; check $? "C_Initialize with CKF_OS_LOCKING_OK"
pids=$(grep " C_Initialize " "$CALLS" | awk '{print $1}' | sort -u)
missing=""
for p in $pids; do
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null || grep -q "^$p C_Finalize " "$CALLS" || missing="$missing $p"
done
[ -z "$missing" ]; check $? "every backend that initialised the module called C_Finalize at exit (missing:${missing:- none})"
n=$(grep -c -F -e "$PIN" "$SLOG" "$CALLS" "$PGCK_TMP/server.log" 2>/dev/null | awk -F: '{s+=$2} END {print s+0}')
[ "$n" -eq 0 ]; check $? "no PIN in the server logs or the call log ($n lines; log_min_messages = debug1)"
grep -q "pinlen=${#PIN} " "$CALLS"; check $? "positive control: the PIN was used (C_Login with a PIN of ${#PIN} characters)"

# never class 08 (README, SQLSTATEs): every error this check provoked through psql
errs=$(grep -c "^ERROR:  [0-9A-Z]\{5\}" "$D/all.out")
c08=$(grep "^ERROR:  08" "$D/all.out" | head -3)
[ "$errs" -ge 5 ] && [ -z "$c08" ]
check $? "none of the $errs errors provoked here has a class 08 SQLSTATE (${c08:-none})"

stop_cluster
exit $fail
