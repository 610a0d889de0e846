#!/usr/bin/env bash
# Recovery without the extension (issue 11, defect 15): tools/pgck_recover.py decrypts a plain
# pg_dump with only KMS access and FORMAT.md's rules.
#  - a database with aws-kms: keys (the emulator) and local: keys, KMS contexts, value contexts
#    (a template over the row, and a literal), three DEK versions, a retired version, an index
#    key rotation in progress, truncated tags (13 and 20 bits: not byte multiples), awkward
#    plaintexts (empty, NULL, tabs, newlines, backslashes, quotes, 4-byte UTF-8, 10 kB) and
#    quoted schema/table/column names;
#  - the expected plaintexts come from kms_decrypt in the database, taken before the dump;
#  - pg_dump (plain), then the script, run with a bare environment (no PG* variables, the
#    server untouched), must give exactly those plaintexts, as CSV and as a rewritten dump, and
#    recompute every blind-index tag (--verify-tags: FORMAT.md's transforms and truncation);
#  - refused, with nothing written: a tampered value, a value swapped to another row (its
#    context binds the row), a wrong or missing context, a destroyed key, and plaintext into a
#    file others can read;
#  - the check can fail: a copy of the script whose AAD leaves out the context must not pass.
# Runs (as root) against the cluster and emulator of test/run.sh (PGHOST, PGPORT, PGBIN,
# PGCK_EMULATOR_PORT, and the emulator's AWS_* test identity in the environment).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
RECOVER="$ROOT/tools/pgck_recover.py"
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
W=$(mktemp -d /tmp/pgck-recover.XXXXXX)
chmod 700 "$W"
trap 'rm -rf "$W"' EXIT
: "${PGCK_EMULATOR_PORT:?the KMS emulator port (PGCK_EMULATOR_PORT) is not set}"
EMU="http://127.0.0.1:$PGCK_EMULATOR_PORT"

DB=pgck_recover
CMP=pgck_recover_cmp
psql_db() { local d=$1; shift; runuser -u postgres -- env PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d "$d" "$@"; }
sql() { psql_db $DB "$@"; }
psql_db postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS $CMP" \
    -c "CREATE DATABASE $DB" -c "CREATE DATABASE $CMP" || exit 1
LOCAL_KEY_FILE=$(sql -c "SHOW pgcrypt_kms.local_key_file")
# two fresh emulator keys: one behind an alias that is re-pointed before the dump (so the alias
# no longer names the key that wrapped the DEK), one named by its bare key id
emuctl() { $PY test/kms_emulator/emuctl.py "$PGCK_EMULATOR_PORT" "$@"; }
ALIAS="alias/pgck-recover-$$-$RANDOM"
K1=$(emuctl create-key "{\"alias\": \"$ALIAS\"}" | $PY -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
K2=$(emuctl create-key '{}' | $PY -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
[ -n "$K1" ] && [ -n "$K2" ] || { echo "not ok - creating emulator keys"; exit 1; }

# ---------------------------------------------------------------- the data
sql -v alias="$ALIAS" -v k2="$K2" <<'SQL' >/dev/null || { echo "not ok - setting up the database"; exit 1; }
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('ax', 'aws-kms:alias/pgck-test', blind_index => 'email', index_bits => 13,
                      kms_context => '{"tenant": "t1", "app": "recover"}');
SELECT kms_create_key('an', 'aws-kms:alias/pgck-test-2');
SELECT kms_create_key('lp', 'local:recover-dev', blind_index => 'digits', index_bits => 20,
                      kms_context => '{"env": "test"}');
SELECT kms_create_key('ll', 'local:recover-dev2', blind_index => 'lower');
SELECT kms_create_key('aa', 'aws-kms:' || :'alias', kms_context => '{"k": "v"}');
SELECT kms_create_key('ak', 'aws-kms:' || :'k2', blind_index => 'exact', index_bits => 9);
CREATE TABLE users (id int PRIMARY KEY, email enc_text, note enc_text, phone enc_text, name enc_text);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Acc Table" (k int, "Acct No" enc_text, "Ref" enc_text, kid enc_text, plain_copy text);
-- plaintexts: awkward bytes on purpose; NULL and empty ones
CREATE FUNCTION pt(id int, what text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN id = 7 THEN NULL
    WHEN id = 8 THEN ''
    WHEN what = 'email' THEN E' \t\013' || CASE WHEN id % 3 = 0 THEN 'Alice' ELSE 'BOB.o''Neil+x' END
                             || id || '@Example.COM' || CASE WHEN id % 4 = 0 THEN E'\u00a0' ELSE '' END || E'\f\r\n\013 '
    WHEN what = 'note' AND id = 9 THEN repeat('long note ', 1000)
    WHEN what = 'note' THEN E'line1\nline2\ttab \\ backslash "q", comma \u2709 \U0001D11E #' || id
    WHEN what = 'phone' THEN '+1 (555) 01-' || lpad(id::text, 3, '0') || E' ext\\' || (id % 10)
    ELSE 'Name ' || chr(65 + id % 26) || E'\u00c9\u00e9 ' || id
  END $$;
CREATE PROCEDURE add_rows(lo int, hi int) LANGUAGE sql AS $$
  INSERT INTO users SELECT g,
      kms_encrypt(pt(g, 'email'), 'ax', 'users.email:' || g),
      kms_encrypt(pt(g, 'note'), 'an'),
      kms_encrypt(pt(g, 'phone'), 'lp', 'tenant-7'),
      kms_encrypt(pt(g, 'name'), 'll')
    FROM generate_series(lo, hi) g;
  INSERT INTO "Odd Schema"."Acc Table" SELECT g, kms_encrypt('ACC-' || g, 'lp', 'acct:' || g),
      kms_encrypt('ref ' || g, 'aa'), kms_encrypt('kid ' || g, 'ak'), 'x' || g
    FROM generate_series(lo, hi) g $$;
CALL add_rows(1, 40);
SELECT kms_rotate_key('ax'); SELECT kms_rotate_key('lp'); SELECT kms_rotate_key('an');
CALL add_rows(41, 80);
SELECT kms_rotate_key('ax'); SELECT kms_rotate_key('ll'); SELECT kms_rotate_key('ak');
SELECT kms_rotate_index_key('lp');       -- in progress: rows 1-80 keep tags under the previous index key (and lp gets version 3)
CALL add_rows(81, 120);
SQL

# expected plaintexts, from the extension itself, before retiring a version
sql -c "COPY (SELECT id, kms_decrypt(email, 'users.email:' || id), kms_decrypt(note), kms_decrypt(phone, 'tenant-7'), kms_decrypt(name) FROM users ORDER BY id) TO STDOUT (FORMAT csv)" >"$W/expected_users.csv"
sql -c "COPY (SELECT k, kms_decrypt(\"Acct No\", 'acct:' || k), kms_decrypt(\"Ref\"), kms_decrypt(kid), plain_copy FROM \"Odd Schema\".\"Acc Table\" ORDER BY k) TO STDOUT (FORMAT csv)" >"$W/expected_acc.csv"
sql -c "SELECT kms_set_key_state('ax', 1, 'retired')" >/dev/null
emuctl create-alias "{\"alias\": \"$ALIAS\", \"key_id\": \"$K2\"}" >/dev/null   # re-point the alias
versions=$(sql -c "SELECT string_agg(key_name || ':' || count, ' ' ORDER BY key_name) FROM (SELECT key_name, count(*) FROM kms_keys GROUP BY 1) s")
rows=$(sql -c "SELECT count(*) FROM users")
[ "$rows" = 120 ] && [ -s "$W/expected_users.csv" ] && [ "$versions" = "aa:1 ak:2 an:2 ax:3 ll:2 lp:3" ]
check $? "database: $rows rows, key versions $versions, expected plaintexts from kms_decrypt"

runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d $DB >"$W/dump.sql"
rc=$?
chmod 600 "$W/dump.sql"
grep -q '^COPY pgcrypt_kms.key_versions ' "$W/dump.sql" && grep -q '^COPY public.users ' "$W/dump.sql"
check $(( rc + $? )) "pg_dump (plain) holds the keyring and the table data"
echo "# keyring columns in the dump: $(grep -m1 '^COPY pgcrypt_kms.key_versions ' "$W/dump.sql" | cut -c1-300)"
echo "# versions with a stored key ARN: $(sql -c "SELECT count(*) FILTER (WHERE to_jsonb(v) ->> 'kms_key_arn' IS NOT NULL) || ' of ' || count(*) FROM pgcrypt_kms.key_versions v")"

# The script runs with a bare environment: no PG* variable, only the KMS identity.
recover() {
    env -i PATH=/usr/bin:/bin HOME="$W" LANG=C.UTF-8 \
        AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        AWS_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        AWS_EC2_METADATA_DISABLED=true \
        $PY "${SCRIPT:-$RECOVER}" --endpoint-url "$EMU" --local-key-file "$LOCAL_KEY_FILE" "$@"
}
CTX=(--context "users.email=users.email:{id}" --context "users.phone=tenant-7"
     --context '"Odd Schema"."Acc Table"."Acct No"=acct:{k}')

# compare a recovered users CSV (header, every column) and acc CSV with the expected ones
compare() {
    local users_csv=$1 acc_csv=$2
    psql_db $CMP -c "DROP TABLE IF EXISTS e_users, g_users, e_acc, g_acc" \
        -c "CREATE TABLE e_users (id int, email text, note text, phone text, name text)" \
        -c "CREATE TABLE g_users (LIKE e_users)" \
        -c "CREATE TABLE e_acc (k int, acct text, ref text, kid text, plain_copy text)" -c "CREATE TABLE g_acc (LIKE e_acc)" >/dev/null || return 1
    psql_db $CMP -c "COPY e_users FROM STDIN (FORMAT csv)" <"$W/expected_users.csv" || return 1
    psql_db $CMP -c "COPY e_acc FROM STDIN (FORMAT csv)" <"$W/expected_acc.csv" || return 1
    psql_db $CMP -c "COPY g_users FROM STDIN (FORMAT csv, HEADER)" <"$users_csv" || return 1
    psql_db $CMP -c "COPY g_acc FROM STDIN (FORMAT csv, HEADER)" <"$acc_csv" || return 1
    psql_db $CMP -c "SELECT (SELECT count(*) FROM e_users e FULL JOIN g_users g USING (id)
                              WHERE e.id IS NULL OR g.id IS NULL OR (e.email, e.note, e.phone, e.name)
                                    IS DISTINCT FROM (g.email, g.note, g.phone, g.name))
                          + (SELECT count(*) FROM e_acc e FULL JOIN g_acc g USING (k)
                              WHERE e.k IS NULL OR g.k IS NULL OR (e.acct, e.ref, e.kid, e.plain_copy) IS DISTINCT FROM (g.acct, g.ref, g.kid, g.plain_copy))
                          || ' ' || (SELECT count(*) FROM g_users) || ' ' || (SELECT count(*) FROM g_acc)
                          || ' ' || (SELECT count(*) FROM g_users WHERE email IS NULL) || ' ' || (SELECT count(*) FROM g_users WHERE email = '')"
}

# ---------------------------------------------------------------- recovery
recover "$W/dump.sql" --csv-dir "$W/csv" --out "$W/plain.sql" --verify-tags "${CTX[@]}" >"$W/run.out" 2>"$W/run.err"
rc=$?
check $rc "pgck_recover.py exits 0 on the dump (stderr: $(tr '\n' '|' <"$W/run.err" | cut -c1-600))"
r=$(compare "$W/csv/public.users.csv" "$W/csv/Odd%20Schema.Acc%20Table.csv")
[ "$r" = "0 120 120 1 1" ]; check $? "CSV: every recovered plaintext equals kms_decrypt's (mismatches, rows, rows, NULL, empty: $r)"

# the rewritten dump: the two COPY blocks, loaded as text
for t in users acc; do
    if [ $t = users ]; then hdr='^COPY public.users '; else hdr='^COPY "Odd Schema"."Acc Table" '; fi
    awk -v h="$hdr" '$0 ~ h {on=1; next} on && $0 == "\\." {exit} on {print}' "$W/plain.sql" >"$W/block_$t.txt"
done
psql_db $CMP -c "CREATE TABLE IF NOT EXISTS g2_users (id int, email text, note text, phone text, name text)" \
    -c "CREATE TABLE IF NOT EXISTS g2_acc (k int, acct text, ref text, kid text, plain_copy text)" -c "TRUNCATE g2_users, g2_acc" >/dev/null
psql_db $CMP -c "COPY g2_users FROM STDIN" <"$W/block_users.txt" && psql_db $CMP -c "COPY g2_acc FROM STDIN" <"$W/block_acc.txt"
r=$(psql_db $CMP -c "SELECT (SELECT count(*) FROM e_users e FULL JOIN g2_users g USING (id)
                              WHERE (e.email, e.note, e.phone, e.name) IS DISTINCT FROM (g.email, g.note, g.phone, g.name))
                          + (SELECT count(*) FROM e_acc e FULL JOIN g2_acc g USING (k) WHERE (e.acct, e.ref, e.kid) IS DISTINCT FROM (g.acct, g.ref, g.kid))
                          || ' ' || (SELECT count(*) FROM g2_users)")
[ "$r" = "0 120" ]; check $? "rewritten dump: its COPY data holds the same plaintexts (mismatches, rows: $r)"
n_pgck=$(grep -c 'pgck:' "$W/plain.sql")
n_keyring=$(awk '/^COPY pgcrypt_kms\./{on=1; next} on && $0=="\\."{on=0} on' "$W/dump.sql" | grep -c 'pgck:')
[ "$n_pgck" = "$n_keyring" ]; check $? "rewritten dump: no ciphertext left in it ($n_pgck lines with pgck:)"
[ "$(stat -c %a "$W/plain.sql")" = 600 ] && [ "$(stat -c %a "$W/csv/public.users.csv")" = 600 ] && [ "$(stat -c %a "$W/csv")" = 700 ]
check $? "plaintext outputs are mode 0600 (directory 0700)"

grep -q 'blind-index tags: [1-9][0-9]* match the current index key, [1-9][0-9]* the previous one, 0 match neither' "$W/run.err"
check $? "every blind-index tag recomputed from the plaintext (13- and 20-bit truncation, email/digits/lower, previous index key): $(grep 'blind-index tags' "$W/run.err")"
grep -q 'public.users.email: 119 decrypted, 0 failed, 1 NULL' "$W/run.err" && grep -q 'Odd Schema.Acc Table.Acct No: 120 decrypted' "$W/run.err"
check $? "the summary counts every value of every enc_text column"
! grep -q -e 'Example.COM' -e 'long note' -e 'ACC-' "$W/run.err" "$W/run.out"
check $? "no plaintext on the script's standard output or error"

# the same dump as 0.1.0 would have written it: the keyring without the 0.2.0 columns (no stored
# key ARNs: the re-pointed alias is then sent without KeyId)
$PY - "$W/dump.sql" "$W/dump_010.sql" <<'PY'
import sys
new = {b"kms_key_arn", b"index_kms_key_arn", b"prev_index_kms_key_arn",
       b"writer_system_id", b"writer_timeline", b"nonce_space"}
out, keep = [], None
for l in open(sys.argv[1], "rb").read().split(b"\n"):
    if keep is None and l.startswith((b"COPY pgcrypt_kms.keys (", b"COPY pgcrypt_kms.key_versions (")):
        head, cols = l.split(b" (", 1)
        cols = cols.split(b") FROM", 1)[0].split(b", ")
        keep = [i for i, c in enumerate(cols) if c not in new]
        l = head + b" (" + b", ".join(cols[i] for i in keep) + b") FROM stdin;"
    elif keep is not None:
        if l == b"\\.":
            keep = None
        else:
            f = l.split(b"\t")
            l = b"\t".join(f[i] for i in keep)
    out.append(l)
open(sys.argv[2], "wb").write(b"\n".join(out))
PY
rm -rf "$W/csv010"
recover "$W/dump_010.sql" --csv-dir "$W/csv010" "${CTX[@]}" >/dev/null 2>"$W/run010.err"
rc=$?
r=$(compare "$W/csv010/public.users.csv" "$W/csv010/Odd%20Schema.Acc%20Table.csv")
[ $rc = 0 ] && [ "$r" = "0 120 120 1 1" ] && ! grep -q '_arn' <(grep -m2 '^COPY pgcrypt_kms' "$W/dump_010.sql")
check $? "a keyring without the 0.2.0 columns (as 0.1.0 dumped it) recovers the same plaintexts (exit $rc, $r)"

# ---------------------------------------------------------------- typed values (audit R3, R4)
# dates and timestamptz of every year PostgreSQL stores (4713 BC .. 5874897 AD, timestamps to
# 294276 AD), infinities, fractional seconds: written exactly as PostgreSQL's text output writes
# them with DateStyle ISO and TimeZone UTC (the expected text comes from the server)
sql <<'SQL' >/dev/null || check 1 "setting up the typed values"
SET TimeZone = 'UTC';
CREATE TABLE ty (id int PRIMARY KEY, x enc_text);
INSERT INTO ty SELECT row_number() OVER (), kms_encrypt(v, 'lp') FROM unnest(ARRAY[
    '4713-01-01 BC', '4714-11-24 BC', '0044-03-15 BC', '0001-12-31 BC', '0001-01-01', '0099-01-01',
    '2026-02-28', '9999-12-31', '10000-01-01', '12345-06-07', '5874897-12-31', 'infinity', '-infinity']::date[]) v;
INSERT INTO ty SELECT 100 + row_number() OVER (), kms_encrypt(v, 'lp') FROM unnest(ARRAY[
    '4714-11-24 00:00:00 BC', '0044-03-15 12:00:00 BC', '0001-12-31 23:59:59.25 BC', '0001-01-01 00:00:00',
    '0900-01-01 00:00:00', '1999-12-31 23:59:59+05', '2000-01-01 00:00:00', '2026-01-01 00:00:00.5',
    '2026-01-01 00:00:00.000001', '2026-01-01 00:00:00.120', '2026-12-05 01:02:03.456789',
    '9999-12-31 23:59:59.999999', '10000-01-01 00:00:00', '294276-12-31 23:59:59.999999',
    'infinity', '-infinity']::timestamptz[]) v;
INSERT INTO ty VALUES (201, kms_encrypt('-9223372036854775808'::int8, 'lp')), (202, kms_encrypt('-12.340'::numeric, 'lp')),
    (203, kms_encrypt('\x00ff0a5c'::bytea, 'lp'));
SQL
sql -c "SET DateStyle = ISO" -c "SET TimeZone = UTC" -c "COPY (SELECT id, CASE kms_plaintext_type(x) WHEN 'date' THEN kms_decrypt_date(x)::text
        WHEN 'timestamptz' THEN kms_decrypt_timestamptz(x)::text WHEN 'int8' THEN kms_decrypt_int8(x)::text
        WHEN 'numeric' THEN kms_decrypt_numeric(x)::text WHEN 'bytea' THEN kms_decrypt_bytea(x)::text END
        FROM ty ORDER BY id) TO STDOUT (FORMAT csv, FORCE_QUOTE *)" >"$W/expected_ty.csv"
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d $DB >"$W/dump_ty.sql"
chmod 600 "$W/dump_ty.sql"
rm -rf "$W/ty"
recover "$W/dump_ty.sql" "${CTX[@]}" --csv-dir "$W/ty" >/dev/null 2>"$W/ty.err"
rc=$?
n=$(grep -c . "$W/expected_ty.csv")
diff "$W/expected_ty.csv" <(tail -n +2 "$W/ty/public.ty.csv" 2>/dev/null) >"$W/ty.diff"
r=$?
[ $rc = 0 ] && [ $r = 0 ] && [ "$n" = 32 ] && grep -q '"4713-01-01 BC"' "$W/expected_ty.csv" && grep -q '"294276-12-31 23:59:59.999999+00"' "$W/expected_ty.csv"
check $? "$n typed values (BC, years 1 and >= 10000 to the types' ends, infinities, microseconds) written as the server's ::text writes them (exit $rc: $(grep error "$W/ty.err" | head -1 | cut -c1-200); diff: $(head -6 "$W/ty.diff" | tr '\n' '|'))"

# a date out of PostgreSQL's range (made here with the local key): refused as that value's failure,
# attributed to its column and dump line; --keep-going keeps every other value
$PY - "$RECOVER" "$W/dump_ty.sql" "$W/dump_ty_bad.sql" "$LOCAL_KEY_FILE" <<'PY' || check 1 "making an out-of-range date value"
import base64, importlib.util, os, sys, types
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
spec = importlib.util.spec_from_file_location("r", sys.argv[1])
r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)
keyring = r.Keyring(r.scan_schema(sys.argv[2]), r.Unwrapper(types.SimpleNamespace(
    local_key_file=sys.argv[4], endpoint_url=None, region=None)))
lines = open(sys.argv[2], "rb").read().split(b"\n")
i = next(i for i, l in enumerate(lines) if l.startswith(b"COPY public.ty "))
f = lines[i + 1].split(b"\t")
vid = r.Envelope.from_text(f[1]).version_id
nonce = os.urandom(12)
header = bytes([1, 1, 0x04]) + vid.to_bytes(4, "big") + nonce + bytes([0, 3, 1, 1, 4])
f[1] = b"pgck:" + base64.b64encode(header + AESGCM(keyring.dek(vid)).encrypt(nonce, (2**31 - 2).to_bytes(4, "big"), header))
lines[i + 1] = b"\t".join(f)
with open(os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as o:
    o.write(b"\n".join(lines))
PY
badline=$(grep -n '^COPY public.ty ' "$W/dump_ty_bad.sql" | cut -d: -f1); badline=$((badline + 1))
rm -rf "$W/ty"
recover "$W/dump_ty_bad.sql" "${CTX[@]}" --csv-dir "$W/ty" --keep-going >/dev/null 2>"$W/ty.err"
rc=$?
d=$(diff "$W/expected_ty.csv" <(tail -n +2 "$W/ty/public.ty.csv" 2>/dev/null) | grep -c '^[<>]')
[ $rc = 1 ] && grep -q "error: public.ty.x (dump line $badline): .*a date value out of PostgreSQL's range" "$W/ty.err" &&
    grep -q 'public.ty.x: 31 decrypted, 1 failed, 0 NULL' "$W/ty.err" && [ "$d" = 2 ] &&
    [ "$(sed -n 2p "$W/ty/public.ty.csv" | cut -c1-10)" = '"1","pgck:' ]
check $? "an out-of-range date is that value's failure (table.column, dump line $badline), --keep-going keeps the other 31 (exit $rc; $(grep -e error -e 'public.ty' "$W/ty.err" | tr '\n' '|' | cut -c1-300))"
sql -c "DROP TABLE ty" >/dev/null

# ---------------------------------------------------------------- refusals
# r_refused NAME ARGS...: exit 1, no output left behind, reason on stderr matches $WANT
r_refused() {
    local name=$1; shift
    rm -rf "$W/neg"
    recover "$@" --csv-dir "$W/neg" --out "$W/neg.sql" >"$W/neg.out" 2>"$W/neg.err"
    local rc=$?
    [ $rc = 1 ] && [ ! -e "$W/neg.sql" ] && [ -z "$(ls -A "$W/neg" 2>/dev/null)" ] && grep -q -- "$WANT" "$W/neg.err"
    check $? "$name is refused, nothing written (exit $rc: $(grep 'error:' "$W/neg.err" | head -1 | cut -c1-300))"
}

# tamper one base64 character of the ciphertext of users row 5's email
$PY - "$W/dump.sql" "$W/tampered.sql" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
on = False
for i, l in enumerate(lines):
    if l.startswith(b"COPY public.users "):
        on = True
        continue
    if on and l.split(b"\t")[0] == b"5":
        f = l.split(b"\t")
        v = bytearray(f[1])
        p = len(v) - 30           # inside the ciphertext / GCM tag, away from the padding
        v[p] = ord("B") if v[p] != ord("B") else ord("C")
        f[1] = bytes(v)
        lines[i] = b"\t".join(f)
        break
open(sys.argv[2], "wb").write(b"\n".join(lines))
PY
WANT='failed authentication' r_refused "a tampered value" "$W/tampered.sql" "${CTX[@]}"

# move row 1's email ciphertext into row 2 (its context names row 1)
$PY - "$W/dump.sql" "$W/swapped.sql" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
start = next(i for i, l in enumerate(lines) if l.startswith(b"COPY public.users "))
rows = {l.split(b"\t")[0]: i for i, l in enumerate(lines[start + 1:], start + 1) if l and l != b"\\."}
r1, r2 = lines[rows[b"1"]].split(b"\t"), lines[rows[b"2"]].split(b"\t")
r2[1] = r1[1]
lines[rows[b"2"]] = b"\t".join(r2)
open(sys.argv[2], "wb").write(b"\n".join(lines))
PY
WANT='failed authentication' r_refused "a value moved to another row" "$W/swapped.sql" "${CTX[@]}"

WANT='failed authentication' r_refused "a wrong context" "$W/dump.sql" --context "users.email=users.email:{id}x" \
    --context "users.phone=tenant-7" --context '"Odd Schema"."Acc Table"."Acct No"=acct:{k}'
WANT='encrypted with a context' r_refused "a missing context" "$W/dump.sql" --context "users.phone=tenant-7" \
    --context '"Odd Schema"."Acc Table"."Acct No"=acct:{k}'

# a wrong local master key file
head -c 32 /dev/urandom >"$W/other.key"; chmod 600 "$W/other.key"
WANT='could not unwrap with the local master key' r_refused "another local master key" "$W/dump.sql" "${CTX[@]}" --local-key-file "$W/other.key"

# a destroyed key: its values are not recoverable, and the script says so
sql -c "SELECT kms_destroy_key('ll', 'll')" >/dev/null
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d $DB >"$W/dump_destroyed.sql"
WANT='was destroyed' r_refused "a destroyed key's values" "$W/dump_destroyed.sql" "${CTX[@]}"

# --keep-going: the undecryptable values stay ciphertext, the others are recovered
rm -rf "$W/kg"
recover "$W/tampered.sql" "${CTX[@]}" --csv-dir "$W/kg" --keep-going >/dev/null 2>"$W/kg.err"
rc=$?
r=$(compare "$W/kg/public.users.csv" "$W/kg/Odd%20Schema.Acc%20Table.csv" 2>/dev/null)
bad=$(psql_db $CMP -c "SELECT string_agg(id || ':' || left(g.email, 5), ',') FROM e_users e JOIN g_users g USING (id) WHERE e.email IS DISTINCT FROM g.email")
[ $rc = 1 ] && [ "$r" = "1 120 120 1 1" ] && [ "$bad" = "5:pgck:" ]
check $? "--keep-going: exit 1, the tampered value stays ciphertext, every other value recovered ($rc, $r, $bad)"

# plaintext never goes into a file that others can read
touch "$W/open.csv.sql"; chmod 644 "$W/open.csv.sql"
recover "$W/dump.sql" "${CTX[@]}" --out "$W/open.csv.sql" --force >/dev/null 2>"$W/perm.err"
rc=$?
[ $rc != 0 ] && [ ! -s "$W/open.csv.sql" ] && grep -q 'readable or writable by group or others' "$W/perm.err"
check $? "--force into a mode 0644 file is refused (exit $rc)"
rm -f "$W/stdout.sql"; (umask 022; : >"$W/stdout.sql")
recover "$W/dump.sql" "${CTX[@]}" --out - >"$W/stdout.sql" 2>"$W/perm.err"
rc=$?
[ $rc != 0 ] && [ ! -s "$W/stdout.sql" ] && grep -q 'standard output is a file that group or others can read' "$W/perm.err"
check $? "standard output redirected to a mode 0644 file is refused (exit $rc)"

# ---------------------------------------------------------------- FORMAT.md's test vectors
# Every intermediate of section 7 recomputed from the master key with FORMAT.md's rules (as
# implemented by the script, whose output the checks above hold against the extension).
$PY - "$ROOT/FORMAT.md" "$RECOVER" <<'PY' >"$W/vec.out" 2>&1
import hashlib, hmac, importlib.util, re, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
text = open(sys.argv[1], encoding="utf-8").read()
block = text[text.index("<!-- vector:"):text.index("<!-- end vector -->")]
v = dict(re.findall(r"^(\w+)\s+= (.*)$", block, re.M))
spec = importlib.util.spec_from_file_location("r", sys.argv[2])
r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)
h = bytes.fromhex
ctx = v["kms_context"].encode()
kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"pgcrypt_kms local provider v1",
           info=b"vec").derive(h(v["master_key"]))
assert kek == h(v["kek"]), "kek"
aad = b"PL\x01" + b"vec\x00" + ctx
assert aad == h(v["wrap_aad"]), "wrap aad"
def unwrap(w):
    return AESGCM(kek).decrypt(w[3:15], w[15:], aad)
dek, ikey = unwrap(h(v["wrapped_dek"])), unwrap(h(v["index_key_wrapped"]))
assert dek == h(v["dek"]) and ikey == h(v["index_key"]), "unwrap"
assert r.key_check(dek) == h(v["key_check"]) and r.key_check(ikey) == h(v["index_key_check"]), "key check"
for n in ("value1", "value2"):
    e = r.Envelope.from_text(v[n + "_text"].encode())
    assert e.version_id == int(v["version_id"]) and e.header == h(v[n + "_header"]), n + " header"
    c = v.get(n + "_context")
    pt = e.open(dek, c.encode() if c else None)
    assert pt == h(v[n + "_plaintext"]), n + " plaintext"
    assert hmac.new(ikey, r.normalize("email", pt), hashlib.sha256).digest() == h(v[n + "_hmac"]), n + " hmac"
    assert r.blind_tag(ikey, "email", 13, pt) == e.blind_tag == h(v[n + "_tag"]), n + " tag"
    if n == "value1":
        assert e.nonce == h(v["value1_nonce"]) and e.sealed == h(v["value1_ciphertext"]) + h(v["value1_gcm_tag"])
        assert e.header + c.encode() == h(v["value1_aad"]) and r.normalize("email", pt) == h(v["value1_normalized"])
print("vectors ok: %d fields" % len(v))
PY
check $? "FORMAT.md's test vectors hold: $(tail -1 "$W/vec.out")"

# ... and the extension reads them: the vector's keyring rows and master key in a fresh database
VD=$(mktemp -d /tmp/pgck-recover-vec.XXXXXX)
chown postgres "$VD"; chmod 700 "$VD"
vec() { sed -n "/<!-- vector:/,/<!-- end vector -->/s/^$1 *= //p" FORMAT.md; }
$PY -c "import sys; sys.stdout.buffer.write(bytes.fromhex('$(vec master_key)'))" >"$VD/master.key"
chown postgres "$VD/master.key"; chmod 600 "$VD/master.key"
psql_db postgres -c "DROP DATABASE IF EXISTS ${DB}_vec" -c "CREATE DATABASE ${DB}_vec" >/dev/null
r=$(psql_db ${DB}_vec <<SQL 2>&1
CREATE EXTENSION pgcrypt_kms;
SET pgcrypt_kms.local_key_file = '$VD/master.key';
INSERT INTO pgcrypt_kms.keys (key_name, kms_key, kms_context, blind_index, index_bits, index_key_wrapped, index_key_check, index_kms_key)
  VALUES ('vec', 'local:vec', '$(vec kms_context)', 'email', 13, '\\x$(vec index_key_wrapped)', '\\x$(vec index_key_check)', 'local:vec');
INSERT INTO pgcrypt_kms.key_versions (id, key_name, version, kms_key, wrapped_dek, key_check)
  VALUES ($(vec version_id), 'vec', 1, 'local:vec', '\\x$(vec wrapped_dek)', '\\x$(vec key_check)');
SELECT kms_decrypt('$(vec value1_text)', '$(vec value1_context)') = convert_from('\\x$(vec value1_plaintext)', 'UTF8')
   AND kms_decrypt('$(vec value2_text)') = convert_from('\\x$(vec value2_plaintext)', 'UTF8')
   AND kms_blind_index('alice@example.com', 'vec') = '\\x$(vec value1_tag)'
   AND kms_blind_index('$(vec value2_text)'::enc_text) = '\\x$(vec value2_tag)';
SQL
)
[ "$r" = t ]; check $? "the extension decrypts FORMAT.md's vectors from their keyring rows and master key (got: $(echo "$r" | head -3 | tr '\n' ' '))"
psql_db postgres -c "DROP DATABASE ${DB}_vec" >/dev/null
rm -rf "$VD"

# ---------------------------------------------------------------- the check can fail
# A copy of the script whose AAD leaves out the context must not reproduce the plaintexts.
sed 's/aad = self.header + (context if context is not None else b"")/aad = self.header/' "$RECOVER" >"$W/mutant.py"
if cmp -s "$RECOVER" "$W/mutant.py"; then
    check 1 "mutant: the AAD line to break was not found in the script"
else
    rm -rf "$W/mut"
    SCRIPT="$W/mutant.py" recover "$W/dump.sql" "${CTX[@]}" --csv-dir "$W/mut" >/dev/null 2>&1
    rc=$?
    r=$(compare "$W/mut/public.users.csv" "$W/mut/Odd%20Schema.Acc%20Table.csv" 2>/dev/null)
    [ $rc != 0 ] && [ "$r" != "0 120 120 1 1" ]
    check $? "a mutant without the context in the AAD fails this check (exit $rc, comparison '${r:-no output}')"
fi

psql_db postgres -c "DROP DATABASE $DB" -c "DROP DATABASE $CMP" >/dev/null
exit $fail
