#!/usr/bin/env bash
# A value encrypted in a LATIN1 database and restored (pg_dump) into a UTF8
# one decrypts to bytes that are not UTF8: kms_decrypt refuses with 22021
# naming the key version, never returns invalid text, never quotes the bytes
# (found by the adversarial review of 0.2), and wipes the refused plaintext: a core of
# the backend (gcore) taken after the refusal does not hold it.  Then: the extension installs in
# EUC_*, LATIN1 and SQL_ASCII databases, round-trips there, and its named
# prefix/suffix indexes count that encoding's characters.  Against the cluster
# of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS pgck_latin1" -c "DROP DATABASE IF EXISTS pgck_utf8" \
   -c "CREATE DATABASE pgck_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'" \
   -c "CREATE DATABASE pgck_utf8 TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'" >/dev/null
pg -d pgck_latin1 -c "CREATE EXTENSION pgcrypt_kms" -c "SELECT kms_create_key('enc', 'local:encoding')" \
   -c "CREATE TABLE t AS SELECT kms_encrypt(convert_from('\\x436166e9'::bytea, 'LATIN1'), 'enc') AS v, 'Caf' || chr(233) AS plain" \
   -c "CREATE TABLE m AS SELECT kms_encrypt(repeat('WipeMarker5173' || chr(233), 4), 'enc') AS v" >/dev/null
out=$(pg -d pgck_latin1 -c "SELECT kms_decrypt(v) = plain FROM t")
[ "$out" = "t" ]; check $? "positive control: the LATIN1 database decrypts its own value ($out)"
runuser -u postgres -- "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -d pgck_latin1 | pg -d pgck_utf8 -v ON_ERROR_STOP=1 >/dev/null
out=$(pg -d pgck_utf8 -v VERBOSITY=verbose -c "SELECT kms_decrypt(v) FROM t")
echo "$out" | grep -q "ERROR:  22021: a value under key version id 1 is not valid in the database encoding \"UTF8\""
check $? "the UTF8 database refuses the LATIN1 plaintext with 22021 naming the version ($(echo "$out" | head -1))"
echo "$out" | grep -qi "0xe9"; [ $? -ne 0 ]; check $? "the error does not quote the plaintext's bytes"
# the refused plaintext is wiped before the error: the backend's core (its heap, where the
# decrypted bytes were) no longer holds it; a setting the backend holds proves the heap is there
PYTHONPATH="$(cd "$(dirname "$0")" && pwd)" /usr/bin/python3 - "$PGBIN" "$PGHOST" "$PGPORT" "$PGCK_TMP" <<'PY'
import os, sys
from key_hygiene_lib import Checks, Session, gcore
pgbin, host, port, tmp = sys.argv[1:]
marker, plaintext = b'gcore_probe_encoding', b'WipeMarker5173\xe9' * 4
s = Session(pgbin, host, port, db='pgck_utf8')
s.q("SET application_name = '%s'" % marker.decode())
refused = s.q("SELECT kms_decrypt(v) FROM m")
data, out = gcore(s.pid(), os.path.join(tmp, 'encoding_core'))
s.close()
check = Checks()
check(refused == [] and len(data) > 0 and marker in data,
      f'gcore of the backend after its refused decryption holds its heap ({len(data)} bytes; {out if not data else "ok"})')
check(len(data) > 0 and plaintext not in data, 'the refused plaintext is not in the core (wiped before the error)')
sys.exit(check.bad)
PY
check $? "the refused plaintext was wiped"
out=$(pg -d pgck_utf8 -c "SELECT plain = 'Café' FROM t")
[ "$out" = "t" ]; check $? "positive control: the plaintext column was converted by the restore ($out)"
pg -d postgres -c "DROP DATABASE pgck_latin1" -c "DROP DATABASE pgck_utf8" >/dev/null

# The install scripts are ASCII, so CREATE EXTENSION (which runs 0.1.0,
# 0.1.0--0.2.0 and 0.2.0--0.3.0) works in every server encoding: UTF-8 such
# as an arrow (E2 86 92) is invalid in EUC_*, and declaring the scripts UTF8
# in the control file would fail in LATIN1 instead (found by the audit of the
# SQL surface); a value round-trips and prefix(n)/suffix(n) count
# characters as the database encoding does (left()/right()): in LATIN1 the
# bytes 0x80-0xBF are characters, not UTF-8 continuation bytes.
sqldir=$(cd "$(dirname "$0")/../../sql" && pwd)
bad=$(LC_ALL=C grep -lP '[^\x00-\x7F]' "$sqldir"/pgcrypt_kms--*.sql)
[ -z "$bad" ]; check $? "the install and upgrade scripts are ASCII (not: $(basename -a $bad 2>/dev/null | tr '\n' ' '))"
# encoding, a plaintext in it (hex), its first three / last two characters (hex)
while read -r enc hex first3 last2; do
    db="pgck_enc_$(echo "$enc" | tr 'A-Z' 'a-z')"
    pg -d postgres -c "DROP DATABASE IF EXISTS $db" \
       -c "CREATE DATABASE $db TEMPLATE template0 ENCODING '$enc' LC_COLLATE 'C' LC_CTYPE 'C'" >/dev/null
    out=$(pg -d "$db" -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pgcrypt_kms" \
             -c "SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'")
    [ "$out" = "$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$sqldir/../pgcrypt_kms.control")" ]
    check $? "CREATE EXTENSION in a $enc database ($out)"
    pg -d "$db" -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT kms_create_key('enc', 'local:enc_$enc', blind_index => 'exact');
SELECT kms_add_index('enc', 'first3', 'prefix(3)');
SELECT kms_add_index('enc', 'last2', 'suffix(2)');
CREATE TABLE t (id int, v enc_text, plain text);
INSERT INTO t SELECT id, kms_encrypt(p, 'enc'), p FROM (VALUES
    (1, convert_from('\\x$hex'::bytea, '$enc')), (2, convert_from('\\x$hex'::bytea, '$enc') || 'x'),
    (3, 'abcdef')) s(id, p);
CREATE TABLE tb AS SELECT kms_encrypt('\\x$hex'::bytea, 'enc') AS v;
SQL
    out=$(pg -d "$db" -c "SELECT string_agg(format('%s:%s', id, kms_decrypt(v) = plain AND kms_blind_index_match(v, plain, 'enc')), ' ' ORDER BY id) FROM t")
    [ "$out" = "1:t 2:t 3:t" ]
    check $? "a $enc database decrypts and matches its own values ($out)"
    # the probes are the first three / last two characters as left() / right() count them
    out=$(pg -d "$db" <<SQL
SELECT left(plain, 3) = convert_from('\\x$first3'::bytea, '$enc') AND right(plain, 2) = convert_from('\\x$last2'::bytea, '$enc') FROM t WHERE id = 1;
SELECT array_agg(id ORDER BY id) FROM t WHERE kms_blind_tag(v, 'first3') = kms_blind_tag(convert_from('\\x$first3'::bytea, '$enc'), 'enc', 'first3');
SELECT array_agg(id ORDER BY id) FROM t WHERE kms_blind_tag(v, 'last2') = kms_blind_tag(convert_from('\\x$last2'::bytea, '$enc'), 'enc', 'last2');
SQL
)
    [ "$(echo $out)" = "t {1,2} {1}" ]
    check $? "prefix(3)/suffix(2) find the rows sharing the first three / last two $enc characters ($(echo $out))"
    # bytea has no encoding: its tags follow the UTF-8 rule in every database, and its probes too
    out=$(pg -d "$db" -c "SELECT kms_blind_tag(v, 'first3') = kms_blind_tag('\\x$hex'::bytea, 'enc', 'first3') AND
                                 kms_blind_tag(v, 'last2') = kms_blind_tag('\\x$hex'::bytea, 'enc', 'last2') FROM tb")
    [ "$out" = "t" ]
    check $? "a bytea value's prefix(3)/suffix(2) tags equal its probes in a $enc database ($out)"
    pg -d postgres -c "DROP DATABASE $db" >/dev/null
done <<'ENCODINGS'
EUC_JP a4a2a4a4a4a6a4a8a4aa a4a2a4a4a4a6 a4a8a4aa
EUC_KR b0a1b3aab4d9b6f3b8b6 b0a1b3aab4d9 b6f3b8b6
EUC_CN c4e3bac3cac0bde7b0a1 c4e3bac3cac0 bde7b0a1
LATIN1 b1b2b3343536 b1b2b3 3536
SQL_ASCII e282ace282ac41 e282ac ac41
ENCODINGS
exit $fail
