#!/usr/bin/python3
"""The SQL surface of pgcrypt_kms, generated from the catalog (issue 11).

Every function and procedure that belongs to the extension (pg_proc joined with
pg_depend deptype 'e') is called with a valid baseline (found by trying
type- and name-appropriate candidates as superuser), with the defaults left
out, with every argument NULL (one at a time and all at once), with empty,
10 kB and 200-character strings, an unknown key name, a dropped table's OID,
an OID that names no relation, a catalog and the keyring as the table, odd
integers and JSON, and malformed enc_text in text and binary form, as each of
six roles: no extension role, pgcrypt_kms_encrypt, pgcrypt_kms_decrypt,
pgcrypt_kms_admin, a non-superuser table owner holding encrypt + decrypt, and
the superuser.  Functions run in a transaction that is rolled back;
procedures (they COMMIT) run in autocommit against a table recreated before
each call.  Routines that cannot be called from SQL (internal arguments,
trigger results) are listed as skipped.

Pass criteria (each an "ok"/"not ok" line; exit 0 only if all pass):
  1. the server never restarts: no call loses its connection, the
     postmaster's pid and pg_postmaster_start_time() are unchanged, and the
     server log has no "terminated by signal" / "server process ... was
     terminated" line written during the run;
  2. every error carries a SQLSTATE from the README's SQLSTATE table (parsed
     from README.md at run time);
  3. kms_encrypt / kms_reencrypt / kms_decrypt (and anything returning
     enc_text) never turn a non-NULL first argument into NULL;
  4. EXECUTE is held by exactly the roles the README's functions table names
     ("who may run it"), and a role without EXECUTE gets 42501, never a
     result (a STRICT function folded to NULL by the planner because an
     argument is NULL is never called, and a malformed enc_text argument fails
     in its input function before the privilege check: both are accepted);
  5. the baseline call succeeds for every role that holds EXECUTE (a role
     that does not own the table may get 42501 from a routine that takes a
     table, or from kms_finish_index_rotation, which reads every enc_text
     column as its caller; so may a superuser from a procedure, which runs
     the table owner's code and is for the owner itself), in particular the
     non-superuser table owner (issue 11 defect 5);
  6. no error message echoes an unknown key name (it may be a plaintext);
  7. a NULL context bound from psycopg (Python None) never turns a non-NULL
     plaintext into NULL: it means "no context" or fails with 22004.

Usage: sql_surface.py README.md   (PGHOST, PGPORT, PGCK_TMP from test/run.sh;
run as the postgres OS user, which can reach the socket and trust-connect
as any role.)
"""
import base64
import os
import random
import re
import sys
import time
from collections import OrderedDict

import psycopg
from psycopg import pq

HOST = os.environ["PGHOST"]
PORT = os.environ["PGPORT"]
TMP = os.environ.get("PGCK_TMP", "")
PGDATA = os.environ.get("PGCK_PGDATA", "")
DB = "pgck_surface"
STATEMENT_TIMEOUT = "10s"
MARKER = "SurfaceSecret-4f7a"         # an unknown key name that must never be echoed
R_NOEXT, R_ENC, R_DEC, R_ADM, R_OWNER = ("pgck_surf_noext", "pgck_surf_enc", "pgck_surf_dec",
                                          "pgck_surf_adm", "pgck_surf_owner")
SUPERUSER = "postgres"
# least privileged first: a crash is reported as the first role that can cause it
ROLES = [R_NOEXT, R_ENC, R_DEC, R_ADM, R_OWNER, SUPERUSER]
LOGIN_ROLES = [r for r in ROLES if r != SUPERUSER]
FIXTURE = "surface_t"           # functions (rolled back)
PROC_TABLE = "surface_p"        # procedures (recreated before each call)
TEMPLATE = "surface_template"
SEARCH_CAP = 200                # baseline combinations tried per routine
CRASH_WAIT = 90                 # seconds to wait for the server after a crash

failures = OrderedDict()        # (criterion, text) -> roles it happened as
criteria = OrderedDict((c, 0) for c in ("crash", "sqlstate", "nonnull", "privilege",
                                        "baseline", "echo", "nullctx"))
crash_variants = set()          # (routine, variant) that crashed: not repeated for other roles
skipped_after_crash = 0
calls_made = 0


def out(line):
    print(line, flush=True)


def conninfo(user, autocommit_opts=True):
    opts = "-c statement_timeout=%s -c lock_timeout=5s -c client_min_messages=warning" % STATEMENT_TIMEOUT
    return "host=%s port=%s dbname=%s user=%s options='%s'" % (HOST, PORT, DB, user, opts)


def admin_connect(dbname=DB):
    # after a crash the postmaster refuses connections until recovery ends
    deadline = time.time() + CRASH_WAIT
    while True:
        try:
            return psycopg.connect(host=HOST, port=PORT, dbname=dbname, user=SUPERUSER, autocommit=True)
        except psycopg.OperationalError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


# ----------------------------------------------------------------- README table
def readme_sqlstates(path):
    codes = set()
    in_section = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                in_section = line.strip().lower().startswith("## sqlstate")
                continue
            if in_section:
                m = re.match(r"^\|\s*\**\s*([0-9A-Z]{5})\s*\**\s*\|", line)
                if m:
                    codes.add(m.group(1))
    return codes


EXT_ROLES = {"admin": "pgcrypt_kms_admin", "encrypt": "pgcrypt_kms_encrypt", "decrypt": "pgcrypt_kms_decrypt"}
MEMBERSHIP = {SUPERUSER: None, R_OWNER: {"pgcrypt_kms_encrypt", "pgcrypt_kms_decrypt"},
              R_ADM: {"pgcrypt_kms_admin"}, R_DEC: {"pgcrypt_kms_decrypt"},
              R_ENC: {"pgcrypt_kms_encrypt"}, R_NOEXT: set()}


def readme_functions(path):
    """The README's functions table: [(name, first parameter, roles or {'PUBLIC'}, who)]."""
    rows = []
    in_section = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                in_section = line.strip() == "### Functions"
                continue
            if not in_section or not line.startswith("| `"):
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            m = re.match(r"`(?:CALL\s+)?([a-z_0-9]+)\(([^)]*)\)", cells[0])
            if not m or len(cells) < 3:
                continue
            first = m.group(2).replace("[", " ").split(",")[0].split()
            who = cells[2].lower()
            if "everyone" in who:
                roles = {"PUBLIC"}
            elif "all three" in who:
                roles = set(EXT_ROLES.values())
            else:
                roles = {full for short_, full in EXT_ROLES.items() if short_ in who}
            rows.append((m.group(1), first[0] if first else "", roles, cells[2]))
    return rows


def readme_row(rows, r):
    same = [row for row in rows if row[0] == r.name]
    if len(same) > 1 and r.argtypes:
        same = [row for row in same if row[1] == r.argtypes[0]] or same
    return same[0] if same else None


# ----------------------------------------------------------------- values
class V:
    """One argument: its text (or binary) form, or None for NULL."""

    def __init__(self, data, label, fmt=0, input_error_ok=False, sentinel=None, echo_guard=False):
        self.data = data              # str, bytes (binary format) or None
        self.label = label
        self.fmt = fmt
        self.input_error_ok = input_error_ok   # may fail in the type's input function
        self.sentinel = sentinel      # resolved at call time (the procedure table's OID)
        self.echo_guard = echo_guard  # an unknown key name: no error may repeat it

    def wire(self, ctx):
        if self.sentinel == "table":
            return str(ctx.table_oid()).encode()
        if self.data is None:
            return None
        return self.data if isinstance(self.data, bytes) else self.data.encode()

    def is_null(self):
        return self.data is None and self.sentinel is None


NULL = V(None, "NULL")


def short(s, n=28):
    s = repr(s)
    return s if len(s) <= n else s[:n - 3] + "..."


# ----------------------------------------------------------------- the server
class Server:
    def __init__(self):
        self.log_path = os.path.join(TMP, "server.log") if TMP else ""
        self.log_offset = os.path.getsize(self.log_path) if self.log_path and os.path.exists(self.log_path) else 0

    @staticmethod
    def identity():
        with admin_connect("postgres") as c:
            start = c.execute("SELECT pg_postmaster_start_time()::text").fetchone()[0]
        pid = None
        if PGDATA and os.path.exists(os.path.join(PGDATA, "postmaster.pid")):
            with open(os.path.join(PGDATA, "postmaster.pid")) as f:
                pid = f.readline().strip()
        return pid, start

    @staticmethod
    def wait_up(limit=CRASH_WAIT):
        time.sleep(0.5)         # let the postmaster notice the crash and start recovery
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=SUPERUSER, connect_timeout=3) as c:
                    c.execute("SELECT 1")
                return True
            except psycopg.Error:
                time.sleep(0.3)
        return False

    def log_crash_lines(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return None
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read().decode("utf-8", "replace")
        pat = re.compile(r"terminated by signal|server process .* was terminated|"
                         r"all server processes terminated; reinitializing")
        return [l for l in text.splitlines() if pat.search(l)]


# ----------------------------------------------------------------- fixture
FIXTURE_SQL = """
CREATE EXTENSION pgcrypt_kms;
SELECT kms_create_key('s1', 'local:surface', blind_index => 'email');
SELECT kms_create_key('s2', 'local:surface');
SELECT kms_create_key('s3', 'local:surface3', blind_index => 'exact', index_bits => 64);
SELECT kms_rotate_index_key('s3');
SELECT kms_add_index('s1', 'domain', 'domain');
SELECT kms_add_index('s3', 'order', 'order');
CREATE TABLE {T} (id int PRIMARY KEY, email_enc enc_text, note_plain text NOT NULL);
INSERT INTO {T} VALUES (1, kms_encrypt('alice@example.com', 's1'), 'note one'),
                       (2, kms_encrypt('bob@example.com', 's1'), 'note two');
SELECT kms_rotate_key('s1');
INSERT INTO {T} VALUES (3, kms_encrypt('carol@example.com', 's1'), 'note three'),
                       (4, kms_encrypt('dave', 's2'), 'note four'),
                       (5, kms_encrypt('erin', 's3'), 'note five'),
                       (6, NULL, 'note six');
CREATE TABLE {P} AS SELECT * FROM {T};
ALTER TABLE {P} ALTER COLUMN note_plain SET NOT NULL;
CREATE TABLE surface_dropped (v enc_text);
"""


class Context:
    def __init__(self, readme):
        self.allowed = readme_sqlstates(readme)
        self.server = Server()
        self.adm = None
        self._proc_oid = None

    def admin(self):
        if self.adm is None or self.adm.closed or self.adm.broken:
            self.adm = admin_connect()
        return self.adm

    def q(self, sql, params=None):
        return self.admin().execute(sql, params).fetchall()

    def setup(self):
        with admin_connect("postgres") as c:
            c.execute("SET client_min_messages = warning")
            c.execute("DROP DATABASE IF EXISTS %s" % DB)
            for r in LOGIN_ROLES:
                c.execute("DROP ROLE IF EXISTS %s" % r)
            c.execute("CREATE DATABASE %s" % DB)
        a = self.admin()
        a.execute("SET client_min_messages = warning")
        for stmt in FIXTURE_SQL.format(T=FIXTURE, P=PROC_TABLE).split(";\n"):
            if stmt.strip():
                a.execute(stmt)
        # CREATE EXTENSION made the three extension roles: the login roles get them
        a.execute("CREATE ROLE %s LOGIN" % R_NOEXT)
        a.execute("CREATE ROLE %s LOGIN IN ROLE pgcrypt_kms_encrypt" % R_ENC)
        a.execute("CREATE ROLE %s LOGIN IN ROLE pgcrypt_kms_decrypt" % R_DEC)
        a.execute("CREATE ROLE %s LOGIN IN ROLE pgcrypt_kms_admin" % R_ADM)
        a.execute("CREATE ROLE %s LOGIN IN ROLE pgcrypt_kms_encrypt, pgcrypt_kms_decrypt" % R_OWNER)
        # as if it had created its tables itself (CREATE INDEX needs CREATE on the schema)
        a.execute("GRANT CREATE ON SCHEMA public TO %s" % R_OWNER)
        self.oid_dropped = a.execute("SELECT 'surface_dropped'::regclass::oid").fetchone()[0]
        a.execute("DROP TABLE surface_dropped")
        self.oid_none = a.execute("SELECT max(oid)::int8 + 100000 FROM pg_class").fetchone()[0]
        assert not a.execute("SELECT 1 FROM pg_class WHERE oid = %s::oid", (self.oid_none,)).fetchone()
        self.oid_authid = a.execute("SELECT 'pg_catalog.pg_authid'::regclass::oid").fetchone()[0]
        self.oid_keyring = a.execute("SELECT 'pgcrypt_kms.key_versions'::regclass::oid").fetchone()[0]
        self.fixture_oid = a.execute("SELECT %s::regclass::oid", (FIXTURE,)).fetchone()[0]
        a.execute("ALTER TABLE %s RENAME TO %s" % (PROC_TABLE, TEMPLATE))
        self.own_tables(FIXTURE)
        self.reset_proc_table()
        rows = a.execute("SELECT id, email_enc::text FROM %s WHERE email_enc IS NOT NULL ORDER BY id" % FIXTURE).fetchall()
        self.enc = dict(rows)
        self.enc_ctx = a.execute("SELECT kms_encrypt('frank@example.com', 's1', 'ctx-one')::text").fetchone()[0]
        # typed values (0.3), for kms_decrypt_<type>: (without, with context 'ctx-one')
        self.enc_typed = {}
        for t, v in (("int8", "42"), ("numeric", "1.5"), ("date", "2000-01-01"),
                     ("timestamptz", "2000-01-01 00:00:00+00"), ("bytea", "\\x00")):
            self.enc_typed[t] = a.execute("SELECT kms_encrypt(%%s::%s, 's1')::text, kms_encrypt(%%s::%s, 's1', 'ctx-one')::text"
                                          % (t, t), (v, v)).fetchone()
        self.version_ids = [r[0] for r in a.execute("SELECT version_id FROM kms_keys ORDER BY version_id")]
        # an escrow wrapping (0.3) on s2, for kms_remove_wrapping; its public key for kms_add_escrow_key
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.escrow_pem = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        a.execute("SELECT kms_add_escrow_key('s2', %s)", (self.escrow_pem,))

    def own_tables(self, table):
        a = self.admin()
        a.execute("ALTER TABLE %s OWNER TO %s" % (table, R_OWNER))
        a.execute("GRANT SELECT, INSERT, UPDATE ON %s TO %s, %s, %s, %s" % (table, R_NOEXT, R_ENC, R_DEC, R_ADM))

    def reset_proc_table(self):
        a = self.admin()
        a.execute("SET client_min_messages = warning")
        a.execute("DROP TABLE IF EXISTS %s" % PROC_TABLE)
        a.execute("CREATE TABLE %s (LIKE %s INCLUDING ALL)" % (PROC_TABLE, TEMPLATE))
        a.execute("INSERT INTO %s SELECT * FROM %s" % (PROC_TABLE, TEMPLATE))
        self.own_tables(PROC_TABLE)
        self._proc_oid = a.execute("SELECT %s::regclass::oid", (PROC_TABLE,)).fetchone()[0]

    def table_oid(self):
        return self._proc_oid if self.in_proc else self.fixture_oid

    def proc_table_state(self):
        return self.q("SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '') || "
                      "(SELECT string_agg(attname || ':' || atttypid::regtype, ',' ORDER BY attnum) "
                      "   FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped)) "
                      "FROM " + PROC_TABLE + " t", (PROC_TABLE,))[0][0]

    def teardown(self):
        if self.adm is not None:
            self.adm.close()
        try:
            with admin_connect("postgres") as c:
                c.execute("DROP DATABASE IF EXISTS %s" % DB)
                for r in LOGIN_ROLES:
                    c.execute("DROP ROLE IF EXISTS %s" % r)
        except psycopg.Error as e:
            out("# teardown: %s" % e)


# ----------------------------------------------------------------- routines
UNCALLABLE = {"internal", "trigger", "event_trigger", "language_handler", "fdw_handler",
              "index_am_handler", "tsm_handler", "table_am_handler", "anyelement", "anyarray",
              "anynonarray", "anyenum", "anyrange", "anycompatible", "record"}


class Routine:
    def __init__(self, row):
        (self.oid, self.schema, self.name, self.kind, self.strict, self.argtypes, self.argnames,
         self.ndefaults, self.rettype, self.retset, self.identity) = row
        self.argnames = list(self.argnames or [])
        while len(self.argnames) < len(self.argtypes):
            self.argnames.append("$%d" % (len(self.argnames) + 1))
        self.skip_reason = None
        for t in list(self.argtypes):
            if t in UNCALLABLE:
                self.skip_reason = "takes an argument of type %s, which SQL cannot supply" % t
        if self.rettype in ("trigger", "event_trigger") and self.kind == "f":
            self.skip_reason = "returns %s: PostgreSQL only calls it as a trigger (its callers are covered instead)" % self.rettype
        if re.match(r"(kms_)?citus_", self.name):
            self.skip_reason = "needs a Citus cluster: covered by tap/030_citus"
        self.baseline = None

    def title(self):
        return "%s(%s)" % (self.name, ", ".join(self.argtypes))

    def call_sql(self, n):
        params = ", ".join("$%d" % (i + 1) for i in range(n))
        qn = '%s.%s' % (quote_ident(self.schema), quote_ident(self.name))
        if self.kind == "p":
            return "CALL %s(%s)" % (qn, params)
        if self.retset or self.rettype == "record":
            return "SELECT count(*)::text FROM %s(%s)" % (qn, params)
        return "SELECT (%s(%s))::text" % (qn, params)

    def plaintext_kept(self):
        """Does criterion 3 apply: a non-NULL first argument must not come back NULL?"""
        return self.kind == "f" and (re.fullmatch(r"kms_(re)?(en|de)crypt", self.name) is not None
                                     or self.rettype == "enc_text")

    def takes_table(self):
        return "regclass" in self.argtypes

    def reads_tables(self):
        """Does it read tables as the caller: one it is given, or (kms_finish_index_rotation,
        unless forced) every enc_text column of the database, so that a role which cannot read
        them gets 42501 by design?"""
        return self.takes_table() or self.name == "kms_finish_index_rotation"


def quote_ident(s):
    return s if re.fullmatch(r"[a-z_][a-z0-9_]*", s) else '"' + s.replace('"', '""') + '"'


def load_routines(ctx):
    rows = ctx.q("""
        SELECT p.oid, n.nspname, p.proname, p.prokind, p.proisstrict,
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i) ORDER BY i),
               p.proargnames[1:p.pronargs], p.pronargdefaults, format_type(p.prorettype, NULL), p.proretset,
               p.oid::regprocedure::text
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
         WHERE e.extname = 'pgcrypt_kms'
         ORDER BY p.proname, p.oid""")
    return [Routine(r) for r in rows]


def type_oids(ctx):
    return dict(ctx.q("SELECT format_type(oid, NULL), oid::int FROM pg_type WHERE typname IN "
                      "('text','name','regclass','int4','int8','int2','bool','jsonb','json','cstring',"
                      "'enc_text','bytea','float8','oid','varchar','numeric','date','timestamptz','kms_ore_term')"))


# ---- candidates for a valid baseline (by parameter name, then by type)
def is_key_name(argname):
    return argname.lower() in ("name", "key", "key_name", "confirm_name", "new_name")


def candidates(ctx, r, i):
    t, n = r.argtypes[i], r.argnames[i].lower()
    has_default = i >= len(r.argtypes) - r.ndefaults
    c = []
    if t in ("text", "varchar", "cstring"):
        if t == "cstring" and r.name == "kms_ore_term_in":
            c = [V("ore:010101" + "00" * 8 + "00" * 16, "a valid kms_ore_term literal")]
        elif t == "cstring":
            c = [V(ctx.enc[1], "a valid enc_text literal")]
        elif is_key_name(n) and r.name == "kms_create_key":
            # a new name first: the 0.3 overload's candidate combinations outnumber the search cap
            c = [V(k, repr(k)) for k in ("s_new", "s1", "s2", "s3")]
        elif is_key_name(n):
            c = [V(k, repr(k)) for k in ("s1", "s2", "s3", "s_new")]
        elif "kms_key" in n:
            c = [V("local:surface_other", "'local:surface_other'"), V("local:surface", "'local:surface'")]
        elif n == "plaintext":
            c = [V("alice@example.com", "'alice@example.com'")]
        elif n == "context":
            c = [V("ctx-one", "'ctx-one'")]
        elif n == "state":
            c = [V("retired", "'retired'"), V("decrypt-only", "'decrypt-only'")]
        elif n == "blind_index":
            c = [V("email", "'email'"), V("none", "'none'")]
        elif n == "mode":
            c = [V("encrypt", "'encrypt'"), V("decrypt", "'decrypt'")]
        elif n == "index_name":
            c = [V("domain", "'domain'"), V("order", "'order'"), V("last4", "'last4'")]
        elif n == "transform":
            c = [V("domain", "'domain'"), V("order", "'order'"), V("suffix(4)", "'suffix(4)'")]
        elif n == "public_key":
            c = [V(ctx.escrow_pem, "an RSA-3072 escrow public key (PEM)")]
        else:
            c = [V("s1", "'s1'"), V("alice@example.com", "'alice@example.com'")]
    elif t == "name":
        c = [V("note_plain", "'note_plain'"), V("email_enc", "'email_enc'")]
    elif t == "regclass":
        c = [V(None, "the table", sentinel="table")]
    elif t in ("integer", "bigint", "smallint"):
        if "version_id" in n:
            c = [V(str(v), str(v)) for v in ctx.version_ids[:3]]
        elif n == "version":
            c = [V("1", "1"), V("2", "2")]
        elif "bits" in n:
            c = [V("256", "256"), V("64", "64")]
        elif n == "batch":
            c = [V("2", "2")]
        elif n == "wrapping":
            c = [V("1", "1"), V("2", "2")]
        else:
            c = [V("1", "1"), V("100", "100")]
    elif t == "boolean":
        c = [V("t", "true"), V("f", "false")]
    elif t in ("jsonb", "json"):
        c = [V("{}", "'{}'"), V('{"tenant": "42"}', "'{\"tenant\": \"42\"}'")]
    elif t == "enc_text":
        c = [V(ctx.enc[1], "s1 v1 value"), V(ctx.enc_ctx, "s1 value with context 'ctx-one'"),
             V(ctx.enc[3], "s1 v2 value"), V(ctx.enc[4], "s2 value")]
        typed = r.name[len("kms_decrypt_"):] if r.name.startswith("kms_decrypt_") else None
        if r.name == "kms_blind_index_match" and "bytea" in r.argtypes:
            typed = "bytea"     # the bytea re-check decrypts as bytea (a text value is 42804)
        if typed in ctx.enc_typed:
            c = [V(ctx.enc_typed[typed][0], "s1 %s value" % typed),
                 V(ctx.enc_typed[typed][1], "s1 %s value with context 'ctx-one'" % typed)] + c
    elif t == "bytea":
        c = [V("\\x00", "'\\x00'")]
    elif t == "numeric":
        c = [V("1.5", "1.5"), V("-12.340", "-12.340")]
    elif t == "date":
        c = [V("2000-01-01", "'2000-01-01'"), V("infinity", "'infinity'")]
    elif t == "timestamp with time zone":
        c = [V("2000-01-01 00:00:00+00", "'2000-01-01 00:00:00+00'")]
    elif t == "kms_ore_term":
        # a well-formed int8 term (key id and every trit 0), made without a key
        c = [V("ore:010101" + "00" * 8 + "00" * 16, "an int8 ORE term")]
    if has_default:
        c.append(NULL)
    return c


def raw(v):
    return base64.b64decode(v[len("pgck:"):])


def pgck(b):
    return "pgck:" + base64.b64encode(b).decode()


def variants(ctx, r):
    """[(label, [V...] or None for 'defaults omitted' handled by n)], baseline first."""
    base = r.baseline
    n = len(base)
    out_ = [("baseline", base, n)]
    if r.ndefaults:
        out_.append(("defaults omitted", base[:n - r.ndefaults], n - r.ndefaults))
    if n:
        out_.append(("all NULL", [NULL] * n, n))
    rnd = random.Random(11)
    good = raw(ctx.enc[1])
    for i, t in enumerate(r.argtypes):
        an = r.argnames[i]

        def put(v, label=None):
            args = list(base)
            args[i] = v
            out_.append(("%s=%s" % (an, label or v.label), args, n))
        put(NULL)
        if t in ("text", "varchar", "cstring", "name"):
            put(V("", "''"))
            put(V("x" * 10240, "10 kB string"))
            put(V("k" * 200, "200-char string"))
            if is_key_name(an) and t != "name":
                put(V(MARKER, "unknown key name", echo_guard=True))
            else:
                put(V("no_such_thing", "'no_such_thing'"))
        elif t == "regclass":
            put(V(str(ctx.oid_dropped), "a dropped table's OID"))
            put(V(str(ctx.oid_none), "an OID naming no relation"))
            put(V(str(ctx.oid_authid), "pg_authid"))
            put(V(str(ctx.oid_keyring), "the keyring table"))
        elif t in ("integer", "bigint", "smallint"):
            hi = {"integer": 2147483647, "bigint": 9223372036854775807, "smallint": 32767}[t]
            for x in (0, -1, hi, -hi - 1):
                put(V(str(x), str(x)))
        elif t == "boolean":
            put(V("f" if base[i].data == "t" else "t", "flipped"))
        elif t in ("jsonb", "json"):
            for j, lab in (("[]", "'[]'"), ("null", "JSON null"), ('"s"', "a JSON string"),
                           ('{"a": {"b": 1}, "n": 2}', "nested/non-string JSON"),
                           ('{"k": "%s"}' % ("v" * 10240), "10 kB JSON")):
                put(V(j, lab))
        elif t == "enc_text":
            bad = bytearray(good)
            bad[-20] ^= 1
            unknown_ver = bytearray(good)
            unknown_ver[3:7] = (2147483000).to_bytes(4, "big")
            for v in (V("hello", "plaintext literal", input_error_ok=True),
                      V("pgck:", "'pgck:'", input_error_ok=True),
                      V("pgck:!!!!", "bad base64", input_error_ok=True),
                      V(pgck(good[:20]), "truncated envelope", input_error_ok=True),
                      V(pgck(bytes([1, 1, 0xFF]) + good[3:]), "unknown flags", input_error_ok=True),
                      V(pgck(bytes([9]) + good[1:]), "unknown format version", input_error_ok=True),
                      V(pgck(bytes(bad)), "one ciphertext bit flipped"),
                      V(pgck(bytes(unknown_ver)), "a version id not in the keyring"),
                      V("pgck:" + "QUFB" * 2600, "10 kB of base64", input_error_ok=True),
                      V(b"", "binary: empty", fmt=1, input_error_ok=True),
                      V(bytes(rnd.getrandbits(8) for _ in range(40)), "binary: random bytes", fmt=1,
                        input_error_ok=True),
                      V(good[:30], "binary: truncated", fmt=1, input_error_ok=True),
                      V(bytes(bad), "binary: one bit flipped", fmt=1),
                      V(good, "binary: a valid value", fmt=1)):
                put(v)
    return out_


# ----------------------------------------------------------------- calling
class Outcome:
    def __init__(self):
        self.crashed = False
        self.ok = False
        self.value = None
        self.sqlstate = None
        self.message = ""
        self.full = ""


class Session:
    def __init__(self, role):
        self.role = role
        deadline = time.time() + CRASH_WAIT
        while True:
            self.pg = pq.PGconn.connect(conninfo(role).encode())
            if self.pg.status == pq.ConnStatus.OK or time.time() > deadline:
                break
            self.pg.finish()
            time.sleep(0.3)     # after a crash: until recovery ends
        if self.pg.status != pq.ConnStatus.OK:
            raise RuntimeError("cannot connect as %s: %s" % (role, self.pg.error_message.decode(errors="replace")))
        self.pg.notice_handler = lambda res: None

    def alive(self):
        return self.pg.status == pq.ConnStatus.OK

    def close(self):
        self.pg.finish()


def exec_call(ctx, sess, r, args, n, oids):
    global calls_made
    calls_made += 1
    o = Outcome()
    sql = r.call_sql(n).encode()
    vals = [a.wire(ctx) for a in args[:n]]
    types = [oids.get(t, 0) for t in r.argtypes[:n]]
    fmts = [a.fmt for a in args[:n]]
    try:
        if r.kind != "p":
            sess.pg.exec_(b"BEGIN")
        res = sess.pg.exec_params(sql, vals, types, fmts)
    except psycopg.OperationalError as e:
        o.crashed, o.message = True, str(e)
        return o
    st = res.status
    if st in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        o.ok = True
        if st == pq.ExecStatus.TUPLES_OK and res.ntuples:
            v = res.get_value(0, 0)
            o.value = None if v is None else v.decode(errors="replace")
    else:
        ss = res.error_field(pq.DiagnosticField.SQLSTATE)
        o.sqlstate = ss.decode() if ss else None
        parts = [res.error_field(f) for f in (pq.DiagnosticField.MESSAGE_PRIMARY,
                                               pq.DiagnosticField.MESSAGE_DETAIL,
                                               pq.DiagnosticField.MESSAGE_HINT)]
        o.full = " ".join(p.decode(errors="replace") for p in parts if p)
        o.message = (parts[0] or res.error_message or b"").decode(errors="replace").strip()
        if o.sqlstate is None or not sess.alive():
            o.crashed = True
    if not o.crashed and sess.alive() and r.kind != "p":
        sess.pg.exec_(b"ROLLBACK")
    if not sess.alive():
        o.crashed = True
    return o


def fail(criterion, text, role=None):
    key = (criterion, " ".join(text.split()))
    if key not in failures:
        criteria[criterion] += 1
        failures[key] = []
    if role and role not in failures[key]:
        failures[key].append(role)


def describe(r, label, args, n):
    shown = []
    for i in range(n):
        a = args[i]
        shown.append("%s=%s" % (r.argnames[i], a.label))
    return "%s(%s) [%s]" % (r.name, ", ".join(shown), label)


def judge(ctx, r, role, label, args, n, o, has_exec, owner_like):
    what = describe(r, label, args, n)
    if o.crashed:
        fail("crash", "%s: the connection was lost (backend crash): %s" % (what, o.message[:80]), role)
        return
    if not o.ok:
        if o.sqlstate not in ctx.allowed:
            fail("sqlstate", "%s: SQLSTATE %s is not in the README table: %s" % (what, o.sqlstate, o.message[:140]), role)
        if any(a.echo_guard for a in args[:n]) and MARKER.lower() in o.full.lower():
            fail("echo", "%s: the error (%s) repeats the unknown key name" % (what, o.sqlstate), role)
        if not has_exec:
            if o.sqlstate != "42501" and not (o.sqlstate in ("22P02", "22P03") and any(a.input_error_ok for a in args[:n])):
                fail("privilege", "%s without EXECUTE: expected 42501, got %s: %s" % (what, o.sqlstate, o.message[:120]), role)
        elif label == "baseline":
            if not (o.sqlstate == "42501" and r.reads_tables() and not owner_like):
                fail("baseline", "%s holding EXECUTE: the valid call failed with %s: %s" % (what, o.sqlstate, o.message[:140]), role)
        return
    # success
    if not has_exec:
        folded = r.strict and any(a.is_null() for a in args[:n]) and o.value is None and r.kind == "f"
        if not folded:
            fail("privilege", "%s without EXECUTE: succeeded instead of 42501" % what, role)
        return
    if r.plaintext_kept() and n and not args[0].is_null() and o.value is None:
        fail("nonnull", "%s: a non-NULL %s came back NULL" % (what, r.argnames[0]), role)


def find_baseline(ctx, r, oids):
    """The first candidate combination that succeeds as superuser (for a procedure,
    as the table's owner, preferring one that changes the table)."""
    import itertools
    cands = [candidates(ctx, r, i) for i in range(len(r.argtypes))]
    if any(not c for c in cands):
        return None, "no candidate values for type %s" % r.argtypes[[len(c) for c in cands].index(0)]
    who = R_OWNER if r.kind == "p" else SUPERUSER
    sess = Session(who)
    first_ok = None
    tried = 0
    try:
        for combo in itertools.product(*cands):
            tried += 1
            if tried > SEARCH_CAP:
                break
            combo = list(combo)
            if r.kind == "p":
                ctx.reset_proc_table()
                before = ctx.proc_table_state()
            o = exec_call(ctx, sess, r, combo, len(combo), oids)
            if o.crashed:
                sess = reconnect_after_crash(ctx, sess, who)
                fail("crash", "%s: the connection was lost (backend crash) while looking for a baseline"
                     % describe(r, "baseline search", combo, len(combo)), who)
                continue
            if o.ok:
                if r.kind != "p" or ctx.proc_table_state() != before:
                    return combo, None
                first_ok = first_ok or combo
    finally:
        sess.close()
    if first_ok:
        return first_ok, None
    return None, "no combination of %d tried succeeded as %s" % (min(tried, SEARCH_CAP), who)


def reconnect_after_crash(ctx, sess, role):
    try:
        sess.close()
    except Exception:
        pass
    if not Server.wait_up():
        raise SystemExit("not ok - the server did not come back within %ds after a crash" % CRASH_WAIT)
    ctx.adm = None
    return Session(role)


def exercise(ctx, r, oids, privs):
    global skipped_after_crash
    vs = variants(ctx, r)
    for role in ROLES:
        has_exec = privs[(role, r.oid)]
        # a procedure (its UPDATEs run the owner's triggers) is for the owner
        # itself: a superuser who has not SET ROLE to it gets 42501
        owner_like = role == R_OWNER if r.kind == "p" else role in (SUPERUSER, R_OWNER)
        sess = Session(role)
        try:
            for label, args, n in vs:
                if (r.oid, label, tuple(a.label for a in args)) in crash_variants:
                    skipped_after_crash += 1
                    continue
                if r.kind == "p":
                    ctx.reset_proc_table()
                o = exec_call(ctx, sess, r, args, n, oids)
                judge(ctx, r, role, label, args, n, o, has_exec, owner_like)
                if o.crashed:
                    crash_variants.add((r.oid, label, tuple(a.label for a in args)))
                    sess = reconnect_after_crash(ctx, sess, role)
        finally:
            sess.close()


# ----------------------------------------------------------------- NULL context from psycopg
def null_context_from_driver(ctx):
    """kms_encrypt/kms_decrypt/kms_reencrypt with a context bound as Python None."""
    results = []

    def attempt(conn, sql, params):
        try:
            with conn.transaction():
                return ("value", conn.execute(sql, params).fetchone()[0])
        except psycopg.errors.Error as e:
            if isinstance(e, psycopg.OperationalError) and conn.broken:
                return ("crash", str(e))
            return ("error", e.sqlstate)

    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=R_OWNER, autocommit=True) as conn:
        enc = attempt(conn, "SELECT kms_encrypt(%s, %s, %s)::text", ["secret value", "s1", None])
        results.append(("kms_encrypt('secret value', 's1', None)", enc))
        plain = conn.execute("SELECT kms_encrypt('secret value', 's1')::text").fetchone()[0]
        withctx = conn.execute("SELECT kms_encrypt('secret value', 's1', 'ctx-one')::text").fetchone()[0]
        dec_plain = attempt(conn, "SELECT kms_decrypt(%s::enc_text, %s)", [plain, None])
        results.append(("kms_decrypt(<value without context>, None)", dec_plain))
        dec_ctx = attempt(conn, "SELECT kms_decrypt(%s::enc_text, %s)", [withctx, None])
        results.append(("kms_decrypt(<value with a context>, None)", dec_ctx))
        reenc = attempt(conn, "SELECT kms_reencrypt(%s::enc_text, %s)::text", [plain, None])
        results.append(("kms_reencrypt(<value without context>, None)", reenc))
        roundtrip = None
        if enc[0] == "value" and enc[1] is not None:
            roundtrip = attempt(conn, "SELECT kms_decrypt(%s::enc_text)", [enc[1]])

    bad = False
    for what, (kind, val) in results:
        if kind == "crash":
            fail("crash", "%s from psycopg: the connection was lost: %s" % (what, val))
            bad = True
        elif kind == "value" and val is None:
            fail("nullctx", "%s from psycopg returned NULL: the non-NULL plaintext was lost silently" % what)
            bad = True
        elif kind == "error":
            # 22004: NULL context refused; 22K01: "no context" against a value bound to one
            accepted = ("22004", "22K01") if "with a context" in what else ("22004",)
            if val not in accepted:
                fail("nullctx", "%s from psycopg failed with %s (expected %s)" % (what, val, " or ".join(accepted)))
                bad = True
    # when None means "no context", it must mean it on both sides
    if enc[0] == "value" and enc[1] is not None:
        if roundtrip != ("value", "secret value"):
            fail("nullctx", "kms_encrypt(..., None) gave a value that kms_decrypt(value) does not decrypt: %s" % (roundtrip,))
            bad = True
        if dec_plain != ("value", "secret value"):
            fail("nullctx", "kms_encrypt accepts a None context as 'no context' but kms_decrypt(v, None) gives %s" % (dec_plain,))
            bad = True
    if enc[0] == "value":
        semantics = "means no context" if enc[1] is not None else "returned NULL"
    else:
        semantics = "is refused (%s)" % (enc[1],)
    return not bad, semantics


# ----------------------------------------------------------------- main
def main():
    readme = sys.argv[1]
    ctx = Context(readme)
    ctx.in_proc = False
    if len(ctx.allowed) < 5:
        out("not ok - the README's SQLSTATE table could be parsed (found %s)" % sorted(ctx.allowed))
        return 1
    out("# README SQLSTATE table: %s" % " ".join(sorted(ctx.allowed)))
    pid0, start0 = Server.identity()
    ctx.setup()
    t0 = time.time()
    oids = type_oids(ctx)
    routines = load_routines(ctx)
    callable_ = [r for r in routines if not r.skip_reason]
    out("# %d routines of pgcrypt_kms in pg_proc/pg_depend, %d callable from SQL" % (len(routines), len(callable_)))
    for r in routines:
        if r.skip_reason:
            out("# skipped %s: %s" % (r.identity, r.skip_reason))
    privs = {}
    for role in ROLES:
        for r in routines:
            privs[(role, r.oid)] = ctx.q("SELECT has_function_privilege(%s, %s::oid, 'EXECUTE')", (role, r.oid))[0][0]
    # the catalog grants EXECUTE to exactly the roles the README's functions table names
    doc = readme_functions(readme)
    if len(doc) < 15:
        fail("privilege", "the README's functions table could be parsed (%d rows)" % len(doc))
    for r in callable_:
        row = readme_row(doc, r)
        if row is None:
            out("# %s is not in the README's functions table: EXECUTE held by %s" % (
                r.identity, ", ".join(x for x in ROLES if privs[(x, r.oid)])))
            continue
        for role in ROLES:
            member = MEMBERSHIP[role]
            expected = member is None or "PUBLIC" in row[2] or bool(member & row[2])
            if expected != privs[(role, r.oid)]:
                fail("privilege", "%s: the README says \"%s\" may run it, but the catalog %s EXECUTE"
                     % (r.identity, row[3], "grants" if privs[(role, r.oid)] else "denies"), role)
    nobase = 0
    for r in callable_:
        ctx.in_proc = r.kind == "p"
        base, why = find_baseline(ctx, r, oids)
        if base is None:
            nobase += 1
            out("# %s: %s; its first candidates stand in for a baseline" % (r.identity, why))
            base = [candidates(ctx, r, i)[0] for i in range(len(r.argtypes))]
        r.baseline = base
        exercise(ctx, r, oids, privs)
        out("# %s: %d variants x %d roles from the baseline %s (%.1fs so far)"
            % (r.identity, len(variants(ctx, r)), len(ROLES), describe(r, "", base, len(base)).rsplit(" [", 1)[0],
               time.time() - t0))
    ctx.in_proc = False
    nullctx_ok, semantics = null_context_from_driver(ctx)

    # the server never restarted
    pid1, start1 = Server.identity()
    crash_lines = ctx.server.log_crash_lines()
    ctx.teardown()

    for (crit, text), roles in failures.items():
        out("# FAIL [%s] %s%s" % (crit, text, (" -- as " + ", ".join(roles)) if roles else ""))
    out("# %d calls, %d skipped after the same call crashed for another role, %.1fs" % (calls_made, skipped_after_crash, time.time() - t0))

    results = []

    def check(cond, text):
        results.append(cond)
        out("%s - %s" % ("ok" if cond else "not ok", text))

    # the catalog query found the extension's routines (the README lists over twenty)
    check(len(callable_) >= 20, "the catalog lists the extension's routines: %d callable of %d (%d without a working baseline)"
          % (len(callable_), len(routines), nobase))
    check(criteria["crash"] == 0, "no call lost its connection (%d crashes)" % criteria["crash"])
    check(pid0 == pid1 and start0 == start1,
          "the postmaster did not restart (pid %s -> %s, started %s -> %s)" % (pid0, pid1, start0, start1))
    if crash_lines is None:
        check(False, "the server log %s can be read" % ctx.server.log_path)
    else:
        check(not crash_lines, "the server log has no crashed backend (%d lines%s)"
              % (len(crash_lines), (": " + crash_lines[0][:160]) if crash_lines else ""))
    check(criteria["sqlstate"] == 0, "every error carries a SQLSTATE from the README table (%d outside it)" % criteria["sqlstate"])
    check(criteria["nonnull"] == 0, "no non-NULL plaintext or value came back NULL (%d did)" % criteria["nonnull"])
    check(criteria["privilege"] == 0, "EXECUTE is held as the README's functions table says, and every role without it got 42501 (%d failures)"
          % criteria["privilege"])
    check(criteria["baseline"] == 0, "every role holding EXECUTE (table owner included) ran the valid call (%d failed)" % criteria["baseline"])
    check(criteria["echo"] == 0, "no error echoes an unknown key name (%d did)" % criteria["echo"])
    check(nullctx_ok, "a None context from psycopg never loses a non-NULL plaintext (a None context %s)" % semantics)
    return 0 if all(results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (psycopg.Error, RuntimeError, AssertionError) as e:
        out("not ok - the surface test ran to its end (stopped by %s: %s)" % (type(e).__name__, " ".join(str(e).split())[:300]))
        sys.exit(1)
