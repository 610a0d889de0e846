#!/usr/bin/env bash
# Code that runs with more privileges than its caller never resolves a name
# through the caller's search_path (found by the adversarial review of 0.2):
#  - the keyring's statements run as the keyring owner (a superuser): a role
#    with only pgcrypt_kms_encrypt puts a trojan "=" operator first on its
#    search_path and triggers the ARN recording of a 0.1.0 keyring updated to
#    0.2.0 (its first unwrap); it must not become superuser;
#  - kms_encrypt_column runs as the table owner: another role's
#    public.left(name, int4) must not run inside it;
#  - kms_migrate_column refuses a NULL finish (it went on with the swap).
# Runs (as root) against the cluster and emulator of test/run.sh.
set -u
cd "$(dirname "$0")/../.."
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
DB=pgck_hostile
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
for r in pgck_h_alice pgck_h_vic pgck_h_adm pgck_h_low; do pg -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null; done
sql() { pg -d $DB "$@"; }
as() { local who=$1; shift; pg -d $DB -v ON_ERROR_STOP=0 -c "SET ROLE $who" "$@"; }

# ---- a 0.1.0 keyring with an aws-kms key, updated: the ARNs are still to be recorded
sql -c "CREATE EXTENSION pgcrypt_kms VERSION '0.1.0'" \
    -c "SELECT kms_create_key('hk', 'aws-kms:alias/pgck-test', blind_index => 'email')" \
    -c "ALTER EXTENSION pgcrypt_kms UPDATE" \
    -c "CREATE ROLE pgck_h_alice LOGIN IN ROLE pgcrypt_kms_encrypt" \
    -c "CREATE SCHEMA mal AUTHORIZATION pgck_h_alice" >/dev/null
n=$(sql -c "SELECT count(*) FROM pgcrypt_kms.key_versions WHERE kms_key_arn IS NULL")
[ "$n" = "1" ]; check $? "positive control: the updated 0.1.0 keyring has a version without its ARN ($n)"
out=$(as pgck_h_alice -f - <<'SQL'
CREATE FUNCTION mal.evil(int4, int4) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'ALTER ROLE pgck_h_alice SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION mal.evilt(text, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'ALTER ROLE pgck_h_alice SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION mal.evilb(bytea, bytea) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN EXECUTE 'ALTER ROLE pgck_h_alice SUPERUSER'; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR mal.= (leftarg = int4, rightarg = int4, function = mal.evil);
CREATE OPERATOR mal.= (leftarg = text, rightarg = text, function = mal.evilt);
CREATE OPERATOR mal.= (leftarg = bytea, rightarg = bytea, function = mal.evilb);
SET search_path = mal, public, pg_catalog;
SELECT public.kms_version_id(public.kms_encrypt('x', 'hk')) IS NOT NULL AS encrypted;
SQL
)
echo "$out" | grep -q "^t$"; check $? "the encrypt role encrypts with a hostile search_path ($(echo "$out" | tail -1))"
super=$(sql -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'pgck_h_alice'")
[ "$super" = "f" ]; check $? "a trojan = operator on the caller's search_path never runs as the keyring owner (rolsuper = $super)"
n=$(sql -c "SELECT count(*) FROM pgcrypt_kms.key_versions WHERE kms_key_arn IS NULL")
[ "$n" = "0" ]; check $? "the ARN was recorded all the same ($n versions left without one)"

# ---- kms_encrypt_column runs no function of another role's schema
sql -c "CREATE ROLE pgck_h_vic LOGIN IN ROLE pgcrypt_kms_encrypt" -c "GRANT CREATE ON SCHEMA public TO pgck_h_alice, pgck_h_vic" \
    -c "SELECT kms_create_key('hm', 'local:hostile')" >/dev/null
as pgck_h_alice -c 'CREATE FUNCTION public.left(name, int4) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING $w$trojan left() runs as %$w$, current_user; RETURN pg_catalog.left($1::text, $2); END $$' >/dev/null
out=$(as pgck_h_vic -c "CREATE TABLE vt (id int PRIMARY KEY, email text)" -c "INSERT INTO vt VALUES (1, 'x@y.z')" \
    -c "CALL kms_encrypt_column('vt', 'email', 'hm')" -c "SELECT kms_decrypt(email) FROM vt" 2>&1)
echo "$out" | grep -q "trojan"; [ $? -ne 0 ]; check $? "kms_encrypt_column never calls another role's public.left() ($(echo "$out" | grep -c trojan) calls)"
sql -c "SET ROLE pgck_h_vic" -c "SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'vt'::regclass AND attname = 'email'" | grep -q "enc_text"
check $? "... and the column was migrated"

# ---- kms_migrate_column: a NULL finish is refused, not a swap
sql -c "CREATE TABLE vt2 (e text)" -c "INSERT INTO vt2 VALUES ('a')" >/dev/null
out=$(sql -v VERBOSITY=sqlstate -c "CALL kms_migrate_column('vt2', 'e', 'hm', 'encrypt', 10, NULL, false)")
echo "$out" | grep -q "ERROR:  22004"; check $? "kms_migrate_column(finish => NULL) is refused with 22004 ($out)"

# ---- the keyring's triggers fire also under session_replication_role = replica
# (the row triggers are what a logical-replication apply worker fires: test/t/015)
n=$(sql -c "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('pgcrypt_kms.keys'::regclass, 'pgcrypt_kms.key_versions'::regclass) AND tgname IN ('keys_changed', 'key_versions_changed', 'keys_changed_row', 'key_versions_changed_row') AND tgenabled = 'A'")
[ "$n" = "4" ]; check $? "the four keyring invalidation triggers are ENABLE ALWAYS ($n)"
# ... and the subscriber guard does not: the apply worker writes a subscribed keyring
n=$(sql -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'subscriber_guard' AND tgenabled = 'O'")
[ "$n" = "5" ]; check $? "the subscriber guard is on the five keyring tables, for origin sessions only ($n)"

# ---- kms_reencrypt_table by the admin on another role's table with a trigger: refused
sql -c "CREATE ROLE pgck_h_adm LOGIN IN ROLE pgcrypt_kms_admin" -c "SELECT kms_create_key('victimkey', 'local:hostile')" \
    -c "GRANT pgcrypt_kms_admin TO pgck_h_vic" >/dev/null
as pgck_h_vic -c "CREATE TABLE maltab AS SELECT kms_encrypt('x', 'hm') AS v" \
    -c 'CREATE FUNCTION public.maltrig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM kms_destroy_key($k$victimkey$k$, $k$victimkey$k$); RETURN NEW; END $$' \
    -c "CREATE TRIGGER maltrig BEFORE UPDATE ON maltab FOR EACH ROW EXECUTE FUNCTION public.maltrig()" \
    -c "GRANT SELECT, UPDATE ON maltab TO pgck_h_adm" -c "REVOKE pgcrypt_kms_admin FROM pgck_h_vic" >/dev/null 2>&1
sql -c "REVOKE pgcrypt_kms_admin FROM pgck_h_vic" -c "SELECT kms_rotate_key('hm')" >/dev/null
out=$(as pgck_h_adm -v VERBOSITY=sqlstate -c "CALL kms_reencrypt_table('public.maltab', 'v')")
echo "$out" | grep -q "ERROR:  42501"; check $? "the admin's kms_reencrypt_table on another role's table with a trigger is refused (42501: $out)"
# the same with the owner's code in an index expression instead of a trigger
as pgck_h_vic -c 'CREATE FUNCTION public.evil_idx(enc_text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN IF current_user = $u$pgck_h_adm$u$ THEN PERFORM kms_destroy_key($k$victimkey$k$, $k$victimkey$k$); END IF; RETURN 1; END $$' \
    -c "CREATE TABLE maltab_i AS SELECT kms_encrypt('x', 'hm') AS v" -c "CREATE INDEX ON maltab_i (public.evil_idx(v))" \
    -c "GRANT SELECT, UPDATE ON maltab_i TO pgck_h_adm" >/dev/null 2>&1
out=$(as pgck_h_adm -v VERBOSITY=sqlstate -c "CALL kms_reencrypt_table('public.maltab_i', 'v')")
echo "$out" | grep -q "ERROR:  42501"; check $? "... and on another role's table with an index expression (42501: $out)"
st=$(sql -c "SELECT state FROM kms_keys WHERE key_name = 'victimkey'")
[ "$st" = "active" ]; check $? "the table owner's trigger did not run with the admin's privileges (victimkey is $st)"
out=$(sql -v VERBOSITY=sqlstate -c "CALL kms_reencrypt_table('public.maltab', 'v')" 2>&1; sql -c "SELECT state FROM kms_keys WHERE key_name = 'victimkey'")
echo "$out" | head -1 | grep -q "ERROR:  42501"; check $? "a superuser's kms_reencrypt_table on another role's table is refused too (42501: $(echo "$out" | head -1))"
echo "$out" | tail -1 | grep -q "active"; check $? "... and the owner's trigger did not run as the superuser (victimkey is $(echo "$out" | tail -1))"

# ---- only the owner itself: not a superuser, not another member of the owner's role
sql -c "CREATE TABLE public.trig_log (who text)" -c "GRANT INSERT ON public.trig_log TO PUBLIC" \
    -c "CREATE TABLE public.vic_plain (id int, e text)" -c "INSERT INTO public.vic_plain VALUES (1, 'a@b.c')" \
    -c "ALTER TABLE public.vic_plain OWNER TO pgck_h_vic" >/dev/null
as pgck_h_vic -c "CREATE TABLE own_t AS SELECT kms_encrypt('x', 'hm') AS v" \
    -c 'CREATE FUNCTION public.log_trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.trig_log VALUES (current_user); IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE $x$ALTER ROLE pgck_h_vic SUPERUSER$x$; END IF; RETURN NEW; END $$' \
    -c "CREATE TRIGGER log_trig BEFORE UPDATE ON own_t FOR EACH ROW EXECUTE FUNCTION public.log_trig()" \
    -c "CREATE TRIGGER log_trig BEFORE UPDATE ON vic_plain FOR EACH ROW EXECUTE FUNCTION public.log_trig()" >/dev/null 2>&1
sql -c "SELECT kms_rotate_key('hm')" >/dev/null
out=$(sql -v VERBOSITY=sqlstate -c "CALL kms_reencrypt_table('public.own_t', 'v')" 2>&1)
echo "$out" | grep -q "ERROR:  42501"; check $? "a superuser's kms_reencrypt_table on a non-superuser's table is refused (42501: $out)"
out=$(sql -v VERBOSITY=sqlstate -c "CALL kms_encrypt_column('public.vic_plain', 'e', 'hm')" 2>&1)
echo "$out" | grep -q "ERROR:  42501"; check $? "a superuser's kms_encrypt_column on a non-superuser's table is refused (42501: $out)"
sql -c "GRANT pgck_h_vic TO pgck_h_adm" >/dev/null
out=$(as pgck_h_adm -v VERBOSITY=sqlstate -c "CALL kms_reencrypt_table('public.own_t', 'v')" 2>&1)
echo "$out" | grep -q "ERROR:  42501"; check $? "... and a member of the owner's role, by the same rule (42501: $out)"
sql -c "REVOKE pgck_h_vic FROM pgck_h_adm" >/dev/null
n=$(sql -c "SELECT count(*) FROM public.trig_log")
[ "$n" = "0" ]; check $? "the owner's trigger never ran for the refused callers ($n runs)"
super=$(sql -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'pgck_h_vic'")
[ "$super" = "f" ]; check $? "the owner never became superuser (rolsuper = $super)"
out=$(sql -c "SET ROLE pgck_h_vic" -c "CALL kms_reencrypt_table('public.own_t', 'v')" -c "CALL kms_encrypt_column('public.vic_plain', 'e', 'hm')" \
    -c "RESET ROLE" -c "SELECT pg_catalog.string_agg(DISTINCT who, ',') FROM public.trig_log" 2>&1)
echo "$out" | tail -1 | grep -qx "pgck_h_vic"; check $? "positive control: a superuser who SET ROLE to the owner re-encrypts and migrates, the trigger running as the owner ($(echo "$out" | tail -1))"
n=$(sql -c "SELECT count(*) FROM public.own_t WHERE kms_version_id(v) <> ALL (SELECT version_id FROM kms_keys WHERE current)")
[ "$n" = "0" ]; check $? "... and the value moved to the current version ($n left)"

# ---- a superuser-only endpoint is not shown to a role that triggers an error with it
out=$(pg -d $DB -v VERBOSITY=verbose -c "SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:1/kms?X-Amz-Security-Token=HIDDENTOKEN'" \
    -c "SELECT kms_flush_cache()" -c "SET ROLE pgck_h_alice" -c "SELECT kms_encrypt('x', 'hk')" 2>&1)
echo "$out" | grep -q "invalid pgcrypt_kms.aws_endpoint URL"; check $? "positive control: the bad endpoint is refused ($(echo "$out" | grep ERROR | head -1))"
echo "$out" | grep -q "HIDDENTOKEN"; [ $? -ne 0 ]; check $? "the error does not show the superuser-only endpoint"

# ---- an overload of kms_version_id for another role's domain over enc_text,
# in the extension's schema: the extension's scans of user columns never call
# it (kms_finish_index_rotation reads every enc_text column of the database as
# its caller, the admin or a superuser)
sql -c "CREATE ROLE pgck_h_low LOGIN" -c "GRANT CREATE ON SCHEMA public TO pgck_h_low" \
    -c "SELECT kms_create_key('hr', 'local:hostile', blind_index => 'exact')" >/dev/null
lit=$(sql -c "SELECT kms_encrypt('x', 'hr')::text")
as pgck_h_low -f - >/dev/null 2>&1 <<SQL
CREATE TABLE public.loot (who text);
GRANT INSERT, SELECT ON public.loot TO PUBLIC;
CREATE DOMAIN public.evil_enc AS public.enc_text;
CREATE FUNCTION public.kms_version_id(public.evil_enc) RETURNS int4 LANGUAGE plpgsql AS \$f\$
BEGIN
  INSERT INTO public.loot VALUES (current_user);
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'ALTER ROLE pgck_h_low SUPERUSER'; END IF;
  RETURN 0;
END \$f\$;
CREATE TABLE public.mal_t (v public.evil_enc);
INSERT INTO public.mal_t VALUES ('$lit');
GRANT SELECT ON public.mal_t TO PUBLIC;
SQL
out=$(as pgck_h_low -c "SELECT public.kms_version_id(v) FROM public.mal_t" -c "SELECT who FROM public.loot" 2>&1)
echo "$out" | tail -1 | grep -qx "pgck_h_low"; check $? "positive control: a call by name on the domain column runs the overload ($(echo "$out" | tail -1))"
sql -c "TRUNCATE public.loot" -c "SELECT kms_rotate_index_key('hr')" -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgck_h_adm" >/dev/null
out=$(as pgck_h_adm -v VERBOSITY=sqlstate -c "SELECT kms_finish_index_rotation('hr')" 2>&1)
echo "$out" | grep -q "ERROR:  55000"; check $? "the admin's kms_finish_index_rotation counts the domain column's old value (55000: $out)"
out=$(sql -v VERBOSITY=sqlstate -c "SELECT kms_finish_index_rotation('hr')" 2>&1)
echo "$out" | grep -q "ERROR:  55000"; check $? "... and so does a superuser's (55000: $out)"
as pgck_h_adm -c "SELECT kms_warm_cache('public.mal_t', 'v')" >/dev/null 2>&1
sql -c "SELECT kms_warm_cache('public.mal_t', 'v')" >/dev/null 2>&1
# an owner whose column is of that domain re-encrypts it: the procedure's calls
# are the extension's own too (also with a context expression)
as pgck_h_vic -c "CREATE TABLE vic_dom (id int, v public.evil_enc)" -c "INSERT INTO vic_dom VALUES (1, '$lit')" \
    -c "CALL kms_reencrypt_table('vic_dom', 'v')" >/dev/null 2>&1
n=$(sql -c "SELECT count(*) FROM public.vic_dom WHERE kms_version_id(v::enc_text) <> ALL (SELECT version_id FROM kms_keys WHERE current)")
[ "$n" = "0" ]; check $? "the owner re-encrypted its column of the other role's domain ($n values left behind)"
n=$(sql -c "SELECT count(*) FROM public.loot")
[ "$n" = "0" ]; check $? "the overload never ran as the admin, the superuser or the table owner ($n runs: $(sql -c "SELECT string_agg(who, ',') FROM public.loot"))"
super=$(sql -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'pgck_h_low'")
[ "$super" = "f" ]; check $? "the overload's owner did not become superuser (rolsuper = $super)"

# ---- crypto-shredding reaches every wrapping (another KMS key, an escrow key)
# also in replica mode (logical replication apply, restore tools)
n=$(sql -c "SELECT count(*) FROM pg_trigger WHERE tgname IN ('wrapped_keys_prune', 'wrapped_keys_truncate') AND tgenabled = 'A'")
[ "$n" = "5" ]; check $? "the wrappings' prune triggers are ENABLE ALWAYS ($n of 5)"
W=$(mktemp -d)
openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$W/escrow.pem" 2>/dev/null &&
    openssl pkey -in "$W/escrow.pem" -pubout -out "$W/escrow.pub" 2>/dev/null
pub=$(cat "$W/escrow.pub")
rm -rf "$W"
for k in hs hh ht; do
    sql -c "SELECT kms_create_key('$k', 'local:hostile', blind_index => 'exact')" -c "SELECT kms_rotate_key('$k')" \
        -c "SELECT kms_add_wrapping('$k', 'local:hostile-second')" -c "SELECT kms_add_escrow_key('$k', \$p\$$pub\$p\$)" >/dev/null
done
n=$(sql -c "SELECT count(*) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'hs'")
[ "$n" = "6" ]; check $? "positive control: the KMS and escrow wrappings hold the key's secrets ($n blobs)"
out=$(sql -c "SET session_replication_role = replica" -c "SELECT kms_destroy_key('hs', 'hs')" \
    -c "RESET session_replication_role" -c "SELECT count(*) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'hs'" 2>&1)
echo "$out" | tail -1 | grep -qx "0"; check $? "kms_destroy_key under session_replication_role = replica leaves no wrapped secret ($(echo "$out" | tail -1) left)"
# a destroy made by hand (or replicated): the triggers alone
out=$(sql -c "SET session_replication_role = replica" \
    -c "UPDATE pgcrypt_kms.keys SET destroyed = now(), index_key_wrapped = NULL, prev_index_key_wrapped = NULL WHERE key_name = 'hh'" \
    -c "UPDATE pgcrypt_kms.key_versions SET state = 'destroyed', wrapped_dek = NULL WHERE key_name = 'hh'" \
    -c "RESET session_replication_role" -c "SELECT count(*) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'hh'" 2>&1)
echo "$out" | tail -1 | grep -qx "0"; check $? "a destroy made by hand in replica mode leaves no wrapped secret either, escrow included ($(echo "$out" | tail -1) left)"
# kms_destroy_key deletes them itself, triggers or not
out=$(sql -c "BEGIN" -c "ALTER TABLE pgcrypt_kms.keys DISABLE TRIGGER wrapped_keys_prune" \
    -c "ALTER TABLE pgcrypt_kms.key_versions DISABLE TRIGGER wrapped_keys_prune" -c "SELECT kms_destroy_key('ht', 'ht')" \
    -c "SELECT count(*) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'ht'" -c "ROLLBACK" 2>&1)
echo "$out" | tail -1 | grep -qx "0"; check $? "kms_destroy_key deletes the wrapped secrets itself, with the prune triggers disabled ($(echo "$out" | tail -1) left)"

pg -d postgres -c "DROP DATABASE $DB" >/dev/null
for r in pgck_h_alice pgck_h_vic pgck_h_adm pgck_h_low; do pg -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null; done
exit $fail
