#!/usr/bin/env bash
# The extension's roles are cluster-wide and CREATE EXTENSION takes them over
# when they exist.  One made or changed by someone else is refused (42501):
# a role that can log in, and ADMIN OPTION held by a role that is not a
# superuser (on PostgreSQL 16+ a role's creator holds it: a CREATEROLE user
# who made pgcrypt_kms_decrypt first could grant decryption to anyone).
# Against the cluster of test/run.sh; every role change is undone.
set -u
fail=0
check() { if [ "$1" -eq 0 ]; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
pg() { runuser -u postgres -- "$PGBIN/psql" -X -At -q -v VERBOSITY=verbose -h "$PGHOST" -p "$PGPORT" "$@" 2>&1; }
DB=pgck_takeover
ROLES="pgcrypt_kms_admin pgcrypt_kms_encrypt pgcrypt_kms_decrypt"
# the extension's roles this check made (none existed yet): dropped at the end
MADE=$(pg -d postgres -c "SELECT string_agg(r, ' ') FROM unnest('{$(echo $ROLES | tr ' ' ,)}'::name[]) r WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)")
undo() {
    local r
    pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP ROLE IF EXISTS pgck_taker" >/dev/null
    for r in $ROLES; do
        if [[ " $MADE " == *" $r "* ]]; then pg -d postgres -c "DROP ROLE IF EXISTS $r" >/dev/null
        else pg -d postgres -c "ALTER ROLE $r NOLOGIN" >/dev/null; fi
    done
}
trap undo EXIT
pg -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP ROLE IF EXISTS pgck_taker" \
   -c "CREATE DATABASE $DB" -c "CREATE ROLE pgck_taker LOGIN" >/dev/null
# the role made ahead of the extension (its creator's ADMIN OPTION, as 16+ grants it)
for r in $MADE; do pg -d postgres -c "CREATE ROLE $r NOLOGIN" >/dev/null; done

# ADMIN OPTION held by a role that is not a superuser (what a squatter keeps on 16+)
pg -d postgres -c "GRANT pgcrypt_kms_decrypt TO pgck_taker WITH ADMIN OPTION" >/dev/null
out=$(pg -d $DB -c "CREATE EXTENSION pgcrypt_kms")
echo "$out" | grep -q 'ERROR:  42501: role "pgck_taker" holds ADMIN OPTION on role "pgcrypt_kms_decrypt"'
check $? "ADMIN OPTION on pgcrypt_kms_decrypt held by a non-superuser: CREATE EXTENSION refuses with 42501 ($(echo "$out" | head -1))"
out=$(pg -d $DB -c "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypt_kms'")
[ "$out" = 0 ]; check $? "... and nothing was installed ($out)"
pg -d postgres -c "REVOKE ADMIN OPTION FOR pgcrypt_kms_decrypt FROM pgck_taker" >/dev/null
out=$(pg -d $DB -c "CREATE EXTENSION pgcrypt_kms" -c "SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'")
echo "$out" | grep -qx "0.3.0"; check $? "a plain member (no ADMIN OPTION) is the DBA's grant: CREATE EXTENSION proceeds ($out)"
pg -d $DB -c "DROP EXTENSION pgcrypt_kms CASCADE" >/dev/null

# a role of the extension's that can log in
pg -d postgres -c "ALTER ROLE pgcrypt_kms_encrypt LOGIN" >/dev/null
out=$(pg -d $DB -c "CREATE EXTENSION pgcrypt_kms")
echo "$out" | grep -q 'ERROR:  42501: role "pgcrypt_kms_encrypt" can log in or is a superuser'
check $? "pgcrypt_kms_encrypt WITH LOGIN: CREATE EXTENSION refuses with 42501 ($(echo "$out" | head -1))"
# and the update from 0.2.0 checks the same
pg -d postgres -c "ALTER ROLE pgcrypt_kms_encrypt NOLOGIN" >/dev/null
pg -d $DB -c "CREATE EXTENSION pgcrypt_kms VERSION '0.2.0'" >/dev/null
pg -d postgres -c "ALTER ROLE pgcrypt_kms_encrypt LOGIN" >/dev/null
out=$(pg -d $DB -c "ALTER EXTENSION pgcrypt_kms UPDATE TO '0.3.0'")
echo "$out" | grep -q 'ERROR:  42501: role "pgcrypt_kms_encrypt" can log in'
check $? "... and ALTER EXTENSION UPDATE from 0.2.0 refuses the same ($(echo "$out" | head -1))"
pg -d postgres -c "ALTER ROLE pgcrypt_kms_encrypt NOLOGIN" >/dev/null
out=$(pg -d $DB -c "ALTER EXTENSION pgcrypt_kms UPDATE TO '0.3.0'" -c "SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'")
echo "$out" | grep -qx "0.3.0"; check $? "put back NOLOGIN, the update proceeds ($out)"
exit $fail
