#!/usr/bin/env bash
# The offline disaster-recovery drill (issue 15, items 3 and 4): tools/pgck_recover.py with the
# escrow private key, after the primary KMS key is deleted and the second one unavailable.
#  - a source database: an email key with a blind index and a KMS context, values bound to their
#    row (a value context), a second key without index; two DEK versions each, and a third made
#    after the wrappings were added; a second AWS KMS wrapping (kms_add_wrapping) and an offline
#    escrow wrapping (kms_add_escrow_key, an RSA-3072 key generated here with openssl, PKCS#8
#    encrypted with a passphrase; never committed);
#  - the plaintext md5 computed in the source (kms_decrypt) before the disaster; a plain dump, a
#    custom dump by pg_dump 15 (archive 1.14) and, when /opt/pgck/pg17 or pg18 is there, by
#    their pg_dump (archive 1.16);
#  - disaster: the primary key deleted and the second one disabled in the
#    emulator: the source cannot decrypt any more;
#  - (a) from each dump the tool recovers every value with the escrow key alone (no KMS call
#    succeeds): md5 of its CSV equals the source's; the blind-index tags recompute with the
#    escrow-unwrapped index key; the passphrase from a file, from the environment, the dump on
#    standard input (pg_restore -f - | tool -);
#  - refused, nothing written: another escrow key, a wrong passphrase, a key file group can
#    read, an escrow blob moved to another version (its key check), an unencrypted key file;
#    truncated and corrupted archives give a clean error (no traceback, no plaintext);
#  - (b) --rewrap-to a brand-new emulator key: the dump restored into a fresh database, the
#    generated SQL run as the keyring owner (a second run is refused and changes nothing), and
#    every query answers as before: decrypt (same md5), the blind-index probe (same rows), a new
#    row encrypted and read back; KMS calls only to the new key.
# Runs (as root) against the cluster and emulator of test/run.sh (PGHOST, PGPORT, PGBIN,
# PGCK_EMULATOR_PORT, the emulator's AWS_* test identity in the environment).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
RECOVER=${PGCK_RECOVER_TOOL:-$ROOT/tools/pgck_recover.py}
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
: "${PGCK_EMULATOR_PORT:?the KMS emulator port (PGCK_EMULATOR_PORT) is not set}"
EMU="http://127.0.0.1:$PGCK_EMULATOR_PORT"
W=$(mktemp -d /tmp/pgck-escrow.XXXXXX)
chmod 700 "$W"
SRC=pgck_escrow_src
DST=pgck_escrow_dst
psql_db() { local d=$1; shift; runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d "$d" "$@"; }
cleanup() {
    psql_db postgres -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $DST" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
emuctl() { $PY test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }
jget() { $PY -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
psql_db postgres -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $DST" -c "CREATE DATABASE $SRC" -c "CREATE DATABASE $DST" >/dev/null || exit 1

# ---------------------------------------------------------------- keys
KP=$(emuctl create-key '{"description": "escrow drill primary"}' | jget key_id)
KS=$(emuctl create-key '{"description": "escrow drill second"}' | jget key_id)
[ -n "$KP" ] && [ -n "$KS" ] || { echo "not ok - creating emulator keys"; exit 1; }
# the escrow key pair, made now: an encrypted PKCS#8 private key (mode 0600) and its public half
umask 077
head -c 24 /dev/urandom | base64 >"$W/pass"
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -aes-256-cbc -pass "file:$W/pass" -out "$W/escrow.pem" 2>"$W/ossl.err" &&
    openssl pkey -in "$W/escrow.pem" -passin "file:$W/pass" -pubout -out "$W/escrow.pub" 2>>"$W/ossl.err"
check $? "openssl made an RSA-3072 escrow key, PKCS#8 encrypted ($(head -1 "$W/escrow.pem"))"
head -c 24 /dev/urandom | base64 >"$W/pass2"
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -aes-256-cbc -pass "file:$W/pass2" -out "$W/other.pem" 2>>"$W/ossl.err"
umask 022
FP=$(openssl pkey -pubin -in "$W/escrow.pub" -outform DER | sha256sum | cut -d' ' -f1)

# ---------------------------------------------------------------- the source database
psql_db $SRC -v kp="aws-kms:$KP" -v ks="aws-kms:$KS" -v pub="$(cat "$W/escrow.pub")" <<'SQL' >/dev/null
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('em', :'kp', blind_index => 'email', index_bits => 20, kms_context => '{"tenant": "t1"}');
SELECT kms_create_key('nt', :'kp');
CREATE TABLE users (id int PRIMARY KEY, email enc_text, note enc_text);
CREATE FUNCTION pt(id int, what text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN what = 'email' THEN CASE WHEN id % 5 = 0 THEN 'Alice' ELSE 'bob.o''Neil+x' END || id % 7 || '@Example.COM'
              WHEN id % 11 = 0 THEN NULL
              ELSE E'note "' || id || E'", comma, tab\t, \u00e9\u2709 line\nbreak' END $$;
CREATE PROCEDURE add_rows(lo int, hi int) LANGUAGE sql AS $$
  INSERT INTO users SELECT g, kms_encrypt(pt(g, 'email'), 'em', 'users.email:' || g), kms_encrypt(pt(g, 'note'), 'nt')
    FROM generate_series(lo, hi) g ORDER BY g $$;
COMMENT ON TABLE users IS E'harmless\nCOPY public.users (id) FROM stdin;\n';
CALL add_rows(1, 30);
SELECT kms_rotate_key('em'); SELECT kms_rotate_key('nt');
CALL add_rows(31, 60);
-- the additional wrappings wrap every existing version and index key ...
SELECT kms_add_wrapping('em', :'ks'); SELECT kms_add_escrow_key('em', :'pub');
SELECT kms_add_wrapping('nt', :'ks'); SELECT kms_add_escrow_key('nt', :'pub');
-- ... and a version made afterwards gets them at creation
SELECT kms_rotate_key('em'); SELECT kms_rotate_key('nt');
CALL add_rows(61, 90);
SQL
check $? "source database: two keys, three DEK versions each, a second KMS wrapping and an escrow wrapping"
echo "# wrappings: $(psql_db $SRC -c "SELECT string_agg(key_name || ' #' || wrapping || ' ' || kind || ' deks=' || dek_versions || ' index=' || index_keys, '; ' ORDER BY key_name, wrapping) FROM kms_key_wrappings")"
fp_db=$(psql_db $SRC -c "SELECT string_agg(DISTINCT fingerprint, ',') FROM kms_key_wrappings WHERE kind = 'escrow'")
[ "$fp_db" = "$FP" ]; check $? "the stored escrow fingerprint is SHA-256 of the public key's DER"

# what the source answers before the disaster: the plaintext md5 (as CSV, every field quoted,
# rows by id: what the tool writes for a table filled in id order), a blind-index probe
SELECT_PLAIN="SELECT id, kms_decrypt(email, 'users.email:' || id), kms_decrypt(note) FROM users ORDER BY id"
md5_of_source() { psql_db "$1" -c "COPY ($SELECT_PLAIN) TO STDOUT (FORMAT csv, FORCE_QUOTE *)" | md5sum | cut -d' ' -f1; }
PROBE="SELECT string_agg(id::text, ',' ORDER BY id) FROM users WHERE kms_blind_index(email) = kms_blind_index('ALICE3@example.com ', 'em')"
MD5=$(md5_of_source $SRC)
PROBED=$(psql_db $SRC -c "$PROBE")
rows=$(psql_db $SRC -c "SELECT count(*) || ' ' || count(DISTINCT kms_version_id(email)) || ' ' || count(DISTINCT kms_version_id(note)) FROM users")
[ "$rows" = "90 3 3" ] && [ -n "$PROBED" ] && [ ${#MD5} = 32 ]
check $? "before the disaster: $rows (rows, versions of email, of note), md5 $MD5, probe $PROBED"

# ---------------------------------------------------------------- the dumps
dump() { runuser -u postgres -- "$1" -h "$PGHOST" -p "$PGPORT" -d $SRC "${@:2}"; }
# a function whose body fakes pg_dump's header and COPY line of the users data: the tool must
# read only pg_dump's own lines (outside strings and bodies), in every format
psql_db $SRC -c "CREATE FUNCTION decoy() RETURNS text LANGUAGE sql AS E'SELECT ''x\n--\n-- Data for Name: users; Type: TABLE DATA; Schema: public; Owner: x\n--\n\nCOPY public.users (id, email, note) FROM stdin;\n1\tpgck:AQ==\n''::text'" >/dev/null &&
    dump "$PGBIN/pg_dump" >"$W/plain.sql" && dump "$PGBIN/pg_dump" -Fc >"$W/pipe.dump" &&
    dump "$PGBIN/pg_dump" -Fc >"$W/custom15.dump" && dump "$PGBIN/pg_dump" -Fc -Z0 >"$W/custom15z0.dump"
check $? "pg_dump: plain, custom (gzip), custom uncompressed, of a database with a decoy function"
n=$(grep -c '^COPY public.users ' "$W/plain.sql")
[ "$n" = 3 ]; check $? "positive control: the plain dump has $n lines 'COPY public.users ...': pg_dump's, and one each in the table comment and the decoy's body"
DUMPS=(plain.sql custom15.dump custom15z0.dump)
for v in 17 18; do
    if [ -x /opt/pgck/pg$v/bin/pg_dump ] && dump /opt/pgck/pg$v/bin/pg_dump -Fc >"$W/custom$v.dump" 2>"$W/pgdump$v.err"; then
        DUMPS+=("custom$v.dump")
    else
        echo "SKIPPED - the custom-format dump by pg_dump $v: no /opt/pgck/pg$v/bin/pg_dump, or it failed ($(head -c 200 "$W/pgdump$v.err" 2>/dev/null | tr '\n' ' '))"
    fi
done
for d in "${DUMPS[@]}"; do echo "# $d: $(head -c 8 "$W/$d" | od -An -tx1 | tr -s ' ')"; done
chmod 600 "$W"/*.sql "$W"/*.dump

# ---------------------------------------------------------------- the disaster
emuctl delete-key "{\"key_id\": \"$KP\"}" >/dev/null && emuctl disable-key "{\"key_id\": \"$KS\"}" >/dev/null
check $? "disaster: primary key $KP deleted, second key $KS disabled"
psql_db $SRC -c "SELECT kms_flush_cache()" -c "SELECT count(kms_decrypt(note)) FROM users" >/dev/null 2>"$W/src.err"
rc=$?
[ $rc != 0 ]; check $? "the source cannot decrypt any more (exit $rc: $(grep -m1 ERROR "$W/src.err" | cut -c1-160))"

# ---------------------------------------------------------------- (a) CSV with the escrow key
recover() {
    env -i PATH=/usr/bin:/bin HOME="$W" LANG=C.UTF-8 ${PGCK_EXTRA_ENV:-} \
        AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        AWS_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_EC2_METADATA_DISABLED=true \
        $PY "$RECOVER" --endpoint-url "$EMU" "$@" </dev/null
}
CTX=(--context "users.email=users.email:{id}")
csv_md5() { tail -n +2 "$1" | md5sum | cut -d' ' -f1; }
for d in "${DUMPS[@]}"; do
    rm -rf "$W/out"
    recover "$W/$d" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --csv-dir "$W/out" --verify-tags "${CTX[@]}" >"$W/a.out" 2>"$W/a.err"
    rc=$?
    got=$(csv_md5 "$W/out/public.users.csv" 2>/dev/null)
    [ $rc = 0 ] && [ "$got" = "$MD5" ]
    check $? "$d: every value recovered with the escrow key, CSV md5 $got = source's (exit $rc; $(grep -v '^pgck_recover: public' "$W/a.err" | tr '\n' '|' | cut -c1-400))"
    grep -q 'keys unwrapped through: escrow [0-9]*$' "$W/a.err" && grep -q 'blind-index tags: [1-9][0-9]* match the current index key, 0 the previous one, 0 match neither' "$W/a.err"
    check $? "$d: only the escrow wrapping was used, and every blind-index tag recomputes with the escrow-unwrapped index key"
done
! grep -q -e 'Example.COM' -e 'note "' "$W/a.err" "$W/a.out"; check $? "no plaintext on the tool's standard output or error"

rm -rf "$W/out"
PGCK_EXTRA_ENV="PGCK_DRILL_PASS=$(cat "$W/pass")" recover "$W/custom15.dump" --escrow-key "$W/escrow.pem" --passphrase-env PGCK_DRILL_PASS --csv-dir "$W/out" "${CTX[@]}" 2>"$W/a.err"
rc=$?; got=$(csv_md5 "$W/out/public.users.csv" 2>/dev/null)
[ $rc = 0 ] && [ "$got" = "$MD5" ]; check $? "the passphrase from --passphrase-env (exit $rc)"
rm -rf "$W/out"
runuser -u postgres -- "$PGBIN/pg_restore" -f - <"$W/pipe.dump" 2>/dev/null >"$W/restored.sql"; chmod 600 "$W/restored.sql"
# (by hand: recover's own </dev/null would hide the pipe; no AWS identity at all)
env -i PATH=/usr/bin:/bin HOME="$W" LANG=C.UTF-8 $PY "$RECOVER" - --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --csv-dir "$W/out2" "${CTX[@]}" <"$W/restored.sql" 2>"$W/a.err"
rc=$?; got=$(csv_md5 "$W/out2/public.users.csv" 2>/dev/null)
[ $rc = 0 ] && [ "$got" = "$MD5" ]; check $? "pg_restore -f - | pgck_recover.py - (the dump on standard input, no KMS at all; exit $rc)"

# ---------------------------------------------------------------- refusals
# refused NAME WANT_RC WANT_REGEX ARGS...: that exit status, the reason, no output left behind
refused() {
    local name=$1 want_rc=$2 want=$3; shift 3
    rm -rf "$W/neg"
    recover "$@" --csv-dir "$W/neg" "${CTX[@]}" >"$W/neg.out" 2>"$W/neg.err"
    local rc=$?
    [ $rc = "$want_rc" ] && [ -z "$(ls -A "$W/neg" 2>/dev/null)" ] && grep -q -- "$want" "$W/neg.err" && ! grep -q Traceback "$W/neg.err"
    check $? "$name is refused, nothing written (exit $rc: $(grep -v '^pgck_recover: public' "$W/neg.err" | head -2 | tr '\n' '|' | cut -c1-300))"
}

# ---------------------------------------------------------------- the dump's integrity (audit R1)
# The escrow public key is in the dump: whoever can write to the dump can add a key version
# escrow-wrapped under it and have any value "recovered".  The tool names every key that only
# the escrow wrapping vouched for, and --expect-sha256 refuses a dump that is not the one
# recorded at backup time, before anything is read or written.
rm -rf "$W/out"
recover "$W/plain.sql" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --csv-dir "$W/out" --verify-tags "${CTX[@]}" >/dev/null 2>"$W/a.err"
grep '^pgck_recover:   key "' "$W/a.err" | sed 's/^pgck_recover:   //' | sort >"$W/escrow_only.txt"
psql_db $SRC -c "SELECT format('key \"%s\" version %s (version id %s), key check %s', key_name, version, id,
                        left(encode(key_check, 'hex'), 8)) FROM pgcrypt_kms.key_versions" | sort >"$W/versions.txt"
grep -q 'warning: 7 key(s) unwrapped through the escrow wrapping alone' "$W/a.err" &&
    grep -q '^pgck_recover:   current blind-index key of key "em" (index key number 1), key check [0-9a-f]\{8\}$' "$W/a.err" &&
    [ -s "$W/versions.txt" ] && cmp -s "$W/escrow_only.txt" "$W/versions.txt"
check $? "the summary lists every key version (name, version, id, key check) and index key unwrapped through escrow alone ($(wc -l <"$W/escrow_only.txt") versions)"
$PY - "$W/plain.sql" "$W/forged.sql" <<'PY'
# a forgery with the dump's own escrow public key only: version id 999 of key nt, and users row
# 1's note replaced by a value under it
import base64, hashlib, hmac, os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
lines = open(sys.argv[1], "rb").read().split(b"\n")
def block(prefix):
    i = [i for i, l in enumerate(lines) if l.startswith(prefix)][-1]    # pg_dump's: the decoys come first
    cols = [c.decode() for c in lines[i].split(b" (", 1)[1].split(b")", 1)[0].split(b", ")]
    rows = []
    for j in range(i + 1, len(lines)):
        if lines[j] == b"\\.":
            return i, cols, rows
        rows.append(dict(zip(cols, lines[j].split(b"\t"))))
hx = lambda b: b"\\\\x" + b.hex().encode()
_, _, ws = block(b"COPY pgcrypt_kms.key_wrappings ")
w = next(r for r in ws if r["key_name"] == b"nt" and r["kind"] == b"escrow")
pub = serialization.load_der_public_key(bytes.fromhex(w["public_key"][3:].decode()))
dek = os.urandom(32)
kc = hmac.new(dek, b"pgcrypt_kms key check v1", hashlib.sha256).digest()[:16]
i, cols, rows = block(b"COPY pgcrypt_kms.key_versions ")
d = dict(next(r for r in rows if r["key_name"] == b"nt"))
d.update(id=b"999", version=b"99", wrapped_dek=hx(b"\x01" + os.urandom(80)), key_check=hx(kc), state=b"decrypt-only")
lines.insert(i + 1, b"\t".join(d[c] for c in cols))
i, cols, rows = block(b"COPY pgcrypt_kms.wrapped_keys ")
d = dict(next(r for r in rows if r["key_name"] == b"nt" and r["wrapping"] == w["wrapping"] and r["secret"] == b"dek"))
d.update(version=b"999", key_check=hx(kc), wrapped=hx(pub.encrypt(dek, padding.OAEP(
    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))))
lines.insert(i + 1, b"\t".join(d[c] for c in cols))
i, cols, rows = block(b"COPY public.users ")
j = next(j for j in range(i + 1, len(lines)) if lines[j].split(b"\t")[0] == b"1")
nonce = os.urandom(12)
header = bytes([1, 1, 0]) + (999).to_bytes(4, "big") + nonce
f = lines[j].split(b"\t")
f[cols.index("note")] = b"pgck:" + base64.b64encode(header + AESGCM(dek).encrypt(nonce, b"FORGED-BY-BACKUP-OPERATOR", header))
lines[j] = b"\t".join(f)
with open(os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as o:
    o.write(b"\n".join(lines))
PY
SUM=$(sha256sum "$W/plain.sql" | cut -d' ' -f1)
rm -rf "$W/out"
recover "$W/forged.sql" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --csv-dir "$W/out" "${CTX[@]}" >/dev/null 2>"$W/f.err"
rc=$?
[ $rc = 0 ] && grep -q '"1",".*","FORGED-BY-BACKUP-OPERATOR"' "$W/out/public.users.csv" &&
    grep -q 'warning: 7 key(s) unwrapped through the escrow wrapping alone' "$W/f.err" &&
    grep -q '^pgck_recover:   key "nt" version 99 (version id 999), key check [0-9a-f]\{8\}$' "$W/f.err"
check $? "positive control: a version forged with the dump's escrow public key passes the escrow path (exit $rc), and the summary names it (version id 999)"
refused "the forged dump with --expect-sha256 of the genuine one" 2 "forged.sql: its SHA-256 is [0-9a-f]*, not the $SUM of --expect-sha256" \
    "$W/forged.sql" --expect-sha256 "$SUM" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass"
rm -rf "$W/out"
recover "$W/plain.sql" --expect-sha256 "${SUM^^}" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --csv-dir "$W/out" "${CTX[@]}" >/dev/null 2>"$W/f.err"
rc=$?; got=$(csv_md5 "$W/out/public.users.csv" 2>/dev/null)
[ $rc = 0 ] && [ "$got" = "$MD5" ] && grep -q "plain.sql: SHA-256 $SUM as expected" "$W/f.err" && grep -q 'note: 6 key(s) unwrapped through the escrow wrapping alone' "$W/f.err"
check $? "the genuine dump with its --expect-sha256: recovered, md5 $got (exit $rc)"
for which in forged plain; do
    rm -rf "$W/out"
    env -i PATH=/usr/bin:/bin HOME="$W" LANG=C.UTF-8 $PY "$RECOVER" - --expect-sha256 "$SUM" --escrow-key "$W/escrow.pem" \
        --passphrase-file "$W/pass" --csv-dir "$W/out" "${CTX[@]}" <"$W/$which.sql" >/dev/null 2>"$W/f.err"
    rc=$?; got=$(csv_md5 "$W/out/public.users.csv" 2>/dev/null)
    if [ $which = forged ]; then
        [ $rc = 2 ] && [ -z "$(ls -A "$W/out" 2>/dev/null)" ] && grep -q 'standard input: its SHA-256 is' "$W/f.err"
    else
        [ $rc = 0 ] && [ "$got" = "$MD5" ]
    fi
    check $? "--expect-sha256 with the $which dump on standard input: exit $rc ($(grep -v '^pgck_recover: public' "$W/f.err" | head -1 | cut -c1-200))"
done
refused "--expect-sha256 that is not 64 hex digits" 2 'expect-sha256 takes the 64 hex digits' "$W/plain.sql" --expect-sha256 "${SUM:1}" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass"
refused "another escrow key" 2 'wrong escrow key: its public half' "$W/custom15.dump" --escrow-key "$W/other.pem" --passphrase-file "$W/pass2"
echo "not the passphrase" >"$W/badpass"; chmod 600 "$W/badpass"
refused "a wrong passphrase" 2 'wrong passphrase' "$W/custom15.dump" --escrow-key "$W/escrow.pem" --passphrase-file "$W/badpass"
cp -p "$W/escrow.pem" "$W/open.pem"; chmod 640 "$W/open.pem"
refused "an escrow key file its group can read" 2 'accessible by group or others (mode 0640)' "$W/custom15.dump" --escrow-key "$W/open.pem" --passphrase-file "$W/pass"
openssl pkey -in "$W/escrow.pem" -passin "file:$W/pass" -out "$W/plainkey.pem" 2>/dev/null; chmod 600 "$W/plainkey.pem"
refused "an escrow key file without a passphrase" 2 'not a passphrase-protected PKCS#8' "$W/custom15.dump" --escrow-key "$W/plainkey.pem" --passphrase-file "$W/pass"

# the brand-new key of (b), made after the disaster
KN=$(emuctl create-key '{"description": "escrow drill new"}' | jget key_id)

# the escrow blob of one DEK version moved onto another (both decrypt with the escrow key):
# the key check must catch it before any value is opened with the wrong key
$PY - "$W/plain.sql" "$W/swapped.sql" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
start = next(i for i, l in enumerate(lines) if l.startswith(b"COPY pgcrypt_kms.wrapped_keys "))
cols = lines[start].split(b" (", 1)[1].split(b")", 1)[0].split(b", ")
ci = {c.decode(): i for i, c in enumerate(cols)}
rows = []
for i in range(start + 1, len(lines)):
    if lines[i] == b"\\.":
        break
    f = lines[i].split(b"\t")
    if f[ci["key_name"]] == b"nt" and f[ci["secret"]] == b"dek" and len(f[ci["wrapped"]]) > 600:
        rows.append(i)
a, b = sorted(rows, key=lambda i: int(lines[i].split(b"\t")[ci["version"]]))[:2]
fa, fb = lines[a].split(b"\t"), lines[b].split(b"\t")
fa[ci["wrapped"]], fb[ci["wrapped"]] = fb[ci["wrapped"]], fa[ci["wrapped"]]
lines[a], lines[b] = b"\t".join(fa), b"\t".join(fb)
open(sys.argv[2], "wb").write(b"\n".join(lines))
PY
chmod 600 "$W/swapped.sql"
refused "an escrow blob moved to another key version" 1 'does not match its key-check value' "$W/swapped.sql" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass"
rm -f "$W/neg.sql"
recover "$W/swapped.sql" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --rewrap-to "aws-kms:$KN" --rewrap-sql "$W/neg.sql" >/dev/null 2>"$W/neg.err"
rc=$?
[ $rc = 1 ] && [ ! -e "$W/neg.sql" ] && grep -q 'does not match its key-check value' "$W/neg.err"
check $? "--rewrap-to refuses the moved escrow blob too, no SQL written (exit $rc)"

# unknown compression and versions are refused by name; damaged archives give a clean error
$PY - "$W/custom15.dump" "$W" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
w = sys.argv[2]
open(w + "/v99.dump", "wb").write(d[:5] + bytes([1, 99, 0]) + d[8:])
PY
chmod 600 "$W/v99.dump"
refused "an archive of an unknown version" 2 'archive version 1.99.0 is not one this tool reads.*pg_restore -f -' "$W/v99.dump" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass"
if [ -e "$W/custom17.dump" ] || [ -e "$W/custom18.dump" ]; then
    new=$(ls "$W"/custom1[78].dump | head -1)
    for alg in 2:lz4 3:zstd; do
        $PY -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); assert d[5:7]==b"\x01\x10" and d[11] in (0,1); d[11]=int(sys.argv[2]); open(sys.argv[3],"wb").write(d)' "$new" "${alg%%:*}" "$W/alg.dump"
        chmod 600 "$W/alg.dump"
        refused "a ${alg#*:}-compressed archive" 2 "compressed with ${alg#*:}, which this tool does not decompress.*pg_restore -f -" "$W/alg.dump" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass"
    done
fi
# truncations and random byte changes of the custom archive: exit 0, 1 or 2, never a traceback,
# never a plaintext in the message
$PY - "$W/custom15.dump" "$W/fuzz" <<'PY'
import os, random, sys
d = open(sys.argv[1], "rb").read()
os.makedirs(sys.argv[2], mode=0o700)
rnd = random.Random(15)
cases = [d[:n] for n in sorted(set([5, 8, 20, 100, 600] + [rnd.randrange(len(d)) for _ in range(25)]))]
for _ in range(40):
    m = bytearray(d)
    for _ in range(rnd.randint(1, 3)):
        m[rnd.randrange(len(m))] = rnd.randrange(256)
    cases.append(bytes(m))
for i, c in enumerate(cases):
    with open(os.open("%s/%03d.dump" % (sys.argv[2], i), os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(c)
PY
bad=0 n=0 codes=""
for f in "$W"/fuzz/*.dump; do
    rm -rf "$W/fz"
    recover "$f" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --csv-dir "$W/fz" "${CTX[@]}" >/dev/null 2>"$W/fz.err"
    rc=$?; n=$((n + 1)); codes="$codes $rc"
    if [ $rc -gt 2 ] || grep -q -e Traceback -e 'Example.COM' -e 'note "' "$W/fz.err"; then
        bad=$((bad + 1)); echo "# $(basename "$f"): exit $rc: $(head -c 300 "$W/fz.err")"
    fi
done
[ $bad = 0 ] && [ $n -ge 60 ]
check $? "$n truncated or corrupted archives: a clean exit 0/1/2 each, no traceback, no plaintext ($bad bad; exits: $(echo $codes | tr ' ' '\n' | sort | uniq -c | tr -s ' \n' ' '))"

# ---------------------------------------------------------------- (b) re-wrap under a brand-new key
KN_ARN=$(emuctl list-keys | $PY -c 'import json,sys; print([k["arn"] for k in json.load(sys.stdin)["keys"] if k["key_id"] == sys.argv[1]][0])' "$KN")
recover "$W/custom15.dump" --escrow-key "$W/escrow.pem" --passphrase-file "$W/pass" --rewrap-to "aws-kms:$KN" --rewrap-sql "$W/rewrap.sql" >"$W/b.out" 2>"$W/b.err"
rc=$?
[ $rc = 0 ] && [ "$(stat -c %a "$W/rewrap.sql")" = 600 ] && grep -q 're-wrapped 7 wrapped keys of 2 keys' "$W/b.err" && grep -q 'keys unwrapped through: escrow 7$' "$W/b.err"
check $? "--rewrap-to aws-kms:<new key> through the escrow wrapping: 6 DEK versions and an index key, SQL mode 0600 (exit $rc: $(tr '\n' '|' <"$W/b.err" | cut -c1-300))"
nupd=$(grep -c '^    UPDATE pgcrypt_kms\.' "$W/rewrap.sql")
! grep -q -e 'pgck:' -e 'Example' "$W/rewrap.sql" && [ "$nupd" = 8 ] && [ "$(grep -c "kms_key = 'aws-kms:$KN'" "$W/rewrap.sql")" = 8 ]
check $? "the SQL script: $nupd guarded UPDATEs naming the new key, no value or plaintext in it"

runuser -u postgres -- "$PGBIN/pg_restore" -h "$PGHOST" -p "$PGPORT" -d $DST <"$W/custom15.dump" 2>"$W/restore.err"
check $? "the custom dump restores into a fresh database ($(head -c 200 "$W/restore.err"))"
psql_db $DST -c "SELECT count(kms_decrypt(note)) FROM users" >/dev/null 2>"$W/dst.err"
rc=$?; [ $rc != 0 ]; check $? "before the script the restored database cannot decrypt (exit $rc)"
psql_db $DST -f - <"$W/rewrap.sql" >/dev/null 2>"$W/sql.err"
check $? "the script runs as the keyring owner ($(head -c 300 "$W/sql.err"))"
before=$(psql_db $DST -c "SELECT md5(string_agg(wrapped_dek::text, ',' ORDER BY id)) FROM pgcrypt_kms.key_versions")
psql_db $DST -f - <"$W/rewrap.sql" >/dev/null 2>"$W/sql2.err"
rc=$?
after=$(psql_db $DST -c "SELECT md5(string_agg(wrapped_dek::text, ',' ORDER BY id)) FROM pgcrypt_kms.key_versions")
[ $rc != 0 ] && grep -q 'is not as in the dump this script was made from' "$W/sql2.err" && [ "$before" = "$after" ]
check $? "a second run is refused and changes nothing (exit $rc: $(grep -m1 ERROR "$W/sql2.err" | cut -c1-200))"

emuctl reset-stats >/dev/null
got=$(md5_of_source $DST)
[ "$got" = "$MD5" ]; check $? "restored + re-wrapped: every value decrypts, md5 $got = the source's before the disaster"
probed=$(psql_db $DST -c "$PROBE")
[ "$probed" = "$PROBED" ]; check $? "restored + re-wrapped: the blind-index probe finds the same rows ($probed)"
r=$(psql_db $DST -c "INSERT INTO users VALUES (1000, kms_encrypt('new@example.com', 'em', 'users.email:1000'), kms_encrypt('new note', 'nt'))" \
    -c "SELECT kms_decrypt(email, 'users.email:1000') || ' ' || kms_decrypt(note) || ' ' || (kms_blind_index(email) = kms_blind_index('NEW@example.com', 'em')) FROM users WHERE id = 1000" 2>&1)
[ "$r" = "new@example.com new note true" ]; check $? "restored + re-wrapped: a new row encrypts, decrypts and is found by its probe ($r)"
arns=$(emuctl call-log | $PY -c '
import json, sys
calls = [c for c in json.load(sys.stdin)["calls"] if c.get("op") in ("Decrypt", "Encrypt", "GenerateDataKey", "ReEncrypt")]
print(" ".join(sorted(set("%s:%s" % (c["op"], "new" if c.get("key_arn") == sys.argv[1] else (c.get("key_arn") or "-")) for c in calls))))' "$KN_ARN")
others=$(echo "$arns" | tr ' ' '\n' | grep -v ':new$' | tr '\n' ' ')
[ -n "$arns" ] && [ -z "$others" ]
check $? "the restored cluster's KMS calls all go to the new key ($arns)"

psql_db postgres -c "DROP DATABASE $SRC" -c "DROP DATABASE $DST" >/dev/null
exit $fail
