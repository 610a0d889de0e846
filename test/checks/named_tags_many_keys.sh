#!/usr/bin/env bash
# Named blind-index tags when one statement encrypts under more keys with
# named indexes than enc_typed.c keeps in its per-statement slots (8): each
# kms_encrypt call site remembers its key's slot from row to row (issue 18,
# PgckExtHint), and a slot taken over by another key must not lend that key's
# indexes to a value.  Ten keys, each with its own named index, ten call sites
# in one statement, and one call site whose key changes from row to row: every
# value carries exactly its own key's tag.  Against the cluster of test/run.sh.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" -v ON_ERROR_STOP=1 "$@" 2>&1; }
DB=pgck_named_tags
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
out=$(pg -d $DB <<'SQL'
CREATE EXTENSION pgcrypt_kms;
SELECT count(kms_create_key('h' || i, 'local:named_tags', blind_index => 'exact')) FROM generate_series(1, 10) i \g /dev/null
SELECT count(kms_add_index('h' || i, 'n' || i, 'exact')) FROM generate_series(1, 10) i;
SQL
)
[ "$out" = 10 ]; check $? "ten keys, each with its own named index ($out)"

cols=""; sites=""; bad=""
for i in $(seq 1 10); do
    sites="$sites, kms_encrypt(p, 'h$i') AS e$i"
    bad="$bad + (kms_blind_tag(e$i, 'n$i') IS DISTINCT FROM kms_blind_tag(p, 'h$i', 'n$i'))::int"
    # a tag of another key's index in the value: a slot lent to the wrong key
    for j in $(seq 1 10); do
        [ "$i" = "$j" ] || cols="$cols + (kms_blind_tag(e$i, 'n$j') IS NOT NULL)::int"
    done
done
out=$(pg -d $DB -c "CREATE TABLE t AS SELECT g, p $sites FROM (SELECT g, 'v' || g AS p FROM generate_series(1, 40) g) s" \
    -c "SELECT count(*), sum(0 $bad), sum(0 $cols), count(*) FILTER (WHERE kms_decrypt(e1) = p AND kms_decrypt(e10) = p) FROM t")
[ "$out" = "40|0|0|40" ]
check $? "ten call sites in one statement: every value has its own key's tag and no other (rows|wrong own tag|foreign tags|decrypt: $out)"

out=$(pg -d $DB -c "CREATE TABLE u AS SELECT g, 'w' || g AS p, g % 10 + 1 AS k, kms_encrypt('w' || g, 'h' || (g % 10 + 1)) AS e FROM generate_series(1, 40) g" \
    -c "SELECT count(*), count(*) FILTER (WHERE kms_blind_tag(e, 'n' || k) = kms_blind_tag(p, 'h' || k, 'n' || k)),
               count(*) FILTER (WHERE kms_blind_tag(e, 'n' || (k % 10 + 1)) IS NOT NULL) FROM u")
[ "$out" = "40|40|0" ]; check $? "one call site, the key changing every row: each value its key's tag (rows|right|foreign: $out)"

# within one statement a call site keeps its slot; the next statement sees a new index
out=$(pg -d $DB -c "SELECT kms_add_index('h1', 'm1', 'lower')" \
    -c "SELECT kms_blind_tag(kms_encrypt('Abc', 'h1'), 'm1') = kms_blind_tag('abc', 'h1', 'm1')")
[ "$(echo "$out" | tail -1)" = t ]; check $? "an index added before the statement is in its values ($out)"
pg -d postgres -c "DROP DATABASE $DB" >/dev/null
exit $fail
