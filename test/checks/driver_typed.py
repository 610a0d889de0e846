#!/usr/bin/python3
"""Typed values through real drivers: psycopg 3 and psycopg2.

An application passes Python values as query parameters and gets Python values
back.  psycopg 3 binds a Python int as int2, int4 or int8 by its size, a
Decimal as numeric, a date as date, an aware datetime as timestamptz, bytes as
bytea and str as text (or unknown); psycopg2 interpolates literals.  For each,
as a login role holding only pgcrypt_kms_encrypt and pgcrypt_kms_decrypt:

  1. kms_encrypt(%s, key) resolves to one function (an int bound as int2 was
     refused as "not unique" before kms_encrypt(int2 | int4)) and records the
     type kms_plaintext_type names;
  2. the typed decrypt gives back the same Python value, in text and in binary
     result format (psycopg 3 cursor(binary=True)), numeric scale included;
  3. a range and an equality through kms_ore(col) with the bounds bound as
     parameters return exactly the rows the same predicate over a plaintext
     shadow column returns, through an index scan;
  4. decrypting as another type gives SQLSTATE 42804 (e.sqlstate), never a
     converted value, and no error text repeats a plaintext;
  5. a blind-index probe bound as str resolves to kms_blind_index(text, key)
     and one bound as bytes to kms_blind_index(bytea, key) (bytes that are not
     UTF-8 included), each finds its row through the index, also once psycopg
     has prepared the statement, and kms_blind_index_match re-checks both.

Usage: driver_typed.py   (PGHOST, PGPORT from test/run.sh; run as the postgres
OS user, which trust-connects as any role.)  Prints TAP-like "ok"/"not ok"
lines; exits 1 if any is "not ok".
"""
import datetime
import decimal
import os
import sys

import psycopg

HOST = os.environ["PGHOST"]
PORT = os.environ["PGPORT"]
DB = "pgck_driver"
ROLE = "pgck_driver_app"
KEY = "drv_amount"
BIDX_KEY = "drv_email"
failures = 0
count = 0


def check(cond, what):
    global failures, count
    count += 1
    print(("ok" if cond else "not ok") + " %d - %s" % (count, what))
    if not cond:
        failures += 1


def setup():
    with psycopg.connect(host=HOST, port=PORT, dbname="postgres", user="postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS %s" % DB)
        c.execute("CREATE DATABASE %s" % DB)
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user="postgres", autocommit=True) as c:
        c.execute("CREATE EXTENSION pgcrypt_kms")      # creates the extension's roles if need be
        c.execute("DROP ROLE IF EXISTS %s" % ROLE)
        c.execute("CREATE ROLE %s LOGIN IN ROLE pgcrypt_kms_encrypt, pgcrypt_kms_decrypt" % ROLE)
        c.execute("SELECT kms_create_key(%s, 'local:driver', order_index => true)", (KEY,))
        c.execute("CREATE TABLE amounts (id int PRIMARY KEY, v enc_text, n enc_text, plain numeric, plain_n int8)")
        c.execute("CREATE INDEX ON amounts (kms_ore(v))")
        c.execute("CREATE INDEX ON amounts (kms_ore(n))")
        c.execute("GRANT SELECT, INSERT ON amounts TO %s" % ROLE)
        c.execute("SELECT kms_create_key(%s, 'local:driver', blind_index => 'email', index_bits => 16)",
                  (BIDX_KEY,))
        c.execute("CREATE TABLE tagged (id int PRIMARY KEY, e enc_text)")
        c.execute("CREATE INDEX ON tagged (kms_blind_index(e))")
        c.execute("GRANT SELECT, INSERT ON tagged TO %s" % ROLE)


def teardown():
    with psycopg.connect(host=HOST, port=PORT, dbname="postgres", user="postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS %s" % DB)
        c.execute("DROP ROLE IF EXISTS %s" % ROLE)


UTC = datetime.timezone.utc
# (Python value, recorded type, typed decrypt)
VALUES = [
    (7, "int8", "kms_decrypt_int8"),                       # bound as int2
    (-40000, "int8", "kms_decrypt_int8"),                  # int4
    (2 ** 40, "int8", "kms_decrypt_int8"),                 # int8
    (-(2 ** 63), "int8", "kms_decrypt_int8"),
    (decimal.Decimal("1.50"), "numeric", "kms_decrypt_numeric"),
    (decimal.Decimal("-0.000120"), "numeric", "kms_decrypt_numeric"),
    (decimal.Decimal("NaN"), "numeric", "kms_decrypt_numeric"),
    (datetime.date(1984, 2, 29), "date", "kms_decrypt_date"),
    (datetime.datetime(2026, 12, 5, 3, 4, 5, 678901, tzinfo=UTC), "timestamptz", "kms_decrypt_timestamptz"),
    (b"\x00\x01\xfe\xff", "bytea", "kms_decrypt_bytea"),
    ("caf\u00e9 \u2709", "text", "kms_decrypt"),
]


def same(a, b):
    if isinstance(a, decimal.Decimal) and a.is_nan():
        return isinstance(b, decimal.Decimal) and b.is_nan()
    if isinstance(a, decimal.Decimal):
        return isinstance(b, decimal.Decimal) and a == b and str(a) == str(b)   # scale kept
    if isinstance(a, (bytes, bytearray, memoryview)):
        return bytes(a) == bytes(b)
    return a == b and type(a) is type(b)


def psycopg3_round_trips():
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=ROLE, autocommit=True) as c:
        c.execute("SET TimeZone = 'UTC'")
        for val, typ, fn in VALUES:
            for binary in (False, True):
                fmt = "binary" if binary else "text"
                try:
                    with c.cursor(binary=binary) as cur:
                        cur.execute("SELECT kms_plaintext_type(e), " + fn + "(e)"
                                    "  FROM (SELECT kms_encrypt(%s, %s) AS e OFFSET 0) s", (val, KEY))
                        got_type, got = cur.fetchone()
                    check(got_type == typ and same(val, got),
                          "psycopg 3, %s results: %r (%s) round-trips as %s" % (fmt, val, type(val).__name__, typ))
                except psycopg.Error as e:
                    check(False, "psycopg 3, %s results: %r: SQLSTATE %s %s" % (fmt, val, e.sqlstate, str(e).splitlines()[0]))
        # the wrong typed decrypt: 42804, nothing converted, no plaintext in the error
        with c.cursor() as cur:
            cur.execute("SELECT kms_encrypt(%s, %s)", (123456789, KEY))
            enc = cur.fetchone()[0]
            try:
                cur.execute("SELECT kms_decrypt_numeric(%s::enc_text)", (enc,))
                check(False, "an int8 value decrypted as numeric is refused (got %r)" % (cur.fetchone(),))
            except psycopg.Error as e:
                check(e.sqlstate == "42804" and "123456789" not in str(e),
                      "an int8 value decrypted as numeric: SQLSTATE %s, no plaintext in the error" % e.sqlstate)


def psycopg3_ranges():
    rows = [(i, decimal.Decimal(i * 7 % 1000) / 4, (i * 7919) % 100000 - 50000) for i in range(1, 401)]
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=ROLE, autocommit=True) as c:
        with c.cursor() as cur:
            cur.executemany("INSERT INTO amounts VALUES (%s, kms_encrypt(%s, %s), kms_encrypt(%s, %s), %s, %s)",
                            [(i, a, KEY, n, KEY, a, n) for i, a, n in rows])
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user="postgres", autocommit=True) as c:
        c.execute("ANALYZE amounts")
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=ROLE, autocommit=True) as c:
        c.execute("SET enable_seqscan = off")
        D = decimal.Decimal
        # numeric column, Decimal bounds; int8 column, int bounds (psycopg binds them as int2,
        # int4 or int8 by size: every one probes the int8 terms)
        for col, plain, lo, hi in (("v", "plain", D("10"), D("60.5")), ("v", "plain", D("12.25"), D("12.250")),
                                   ("v", "plain", D("0"), D("3")), ("n", "plain_n", -300, 300),
                                   ("n", "plain_n", -50000, -20000), ("n", "plain_n", 10000, 2 ** 40)):
            q = ("SELECT id FROM amounts WHERE kms_ore(%s) BETWEEN kms_ore(%%s, %%s) AND kms_ore(%%s, %%s) ORDER BY id" % col)
            got = [r[0] for r in c.execute(q, (lo, KEY, hi, KEY))]
            want = [r[0] for r in c.execute("SELECT id FROM amounts WHERE %s BETWEEN %%s AND %%s ORDER BY id" % plain,
                                            (lo, hi))]
            plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + q, (lo, KEY, hi, KEY)))
            check(got == want and len(want) > 0 and "Index" in plan,
                  "psycopg 3: kms_ore(%s) range [%s, %s] bound as %s: %d rows through the index, as the plaintext (%d)"
                  % (col, lo, hi, type(lo).__name__, len(got), len(want)))
        # an int bound against numeric terms: refused (42804), never a silently empty range
        try:
            c.execute("SELECT count(*) FROM amounts WHERE kms_ore(v) > kms_ore(%s, %s)", (5, KEY)).fetchone()
            check(False, "an int probe of a numeric column is refused")
        except psycopg.Error as e:
            check(e.sqlstate == "42804", "an int probe of a numeric column is refused: SQLSTATE %s" % e.sqlstate)


def psycopg2_round_trips():
    try:
        import psycopg2
    except ImportError:
        check(False, "psycopg2 is installed (Debian python3-psycopg2, in test/lib.sh's packages)")
        return
    c = psycopg2.connect(host=HOST, port=PORT, dbname=DB, user=ROLE)
    c.autocommit = True
    cur = c.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    for val, typ, fn in VALUES:
        if isinstance(val, bytes):
            val = psycopg2.Binary(val)
        try:
            cur.execute("SELECT kms_plaintext_type(e), " + fn + "(e)"
                        "  FROM (SELECT kms_encrypt(%s, %s) AS e OFFSET 0) s", (val, KEY))
            got_type, got = cur.fetchone()
            orig = val.adapted if isinstance(val, psycopg2.Binary) else val
            check(got_type == typ and same(orig, got), "psycopg2: %r round-trips as %s" % (orig, typ))
        except psycopg2.Error as e:
            check(False, "psycopg2: %r: SQLSTATE %s %s" % (val, e.pgcode, str(e).splitlines()[0]))
    c.close()


def psycopg3_blind_probes():
    # (stored, probe that must find it, probe that must not); the key's transform is email
    cases = [
        ("Alice@Example.COM", "alice@example.com", "alice@example.org"),
        (b"\xff\x00Bob@Example.COM", b"\xff\x00bob@example.com", b"\xfe\x00bob@example.com"),
    ]
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=ROLE, autocommit=True) as c:
        with c.cursor() as cur:
            for i, (stored, _, _) in enumerate(cases, start=1):
                cur.execute("INSERT INTO tagged VALUES (%s, kms_encrypt(%s, %s))", (i, stored, BIDX_KEY))
            # rows of other values, so that the index is worth using and a wrong probe finds nothing
            cur.executemany("INSERT INTO tagged VALUES (%s, kms_encrypt(%s, %s))",
                            [(i, "user%d@example.com" % i, BIDX_KEY) for i in range(10, 400)])
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user="postgres", autocommit=True) as c:
        c.execute("ANALYZE tagged")
    q = ("SELECT id FROM tagged WHERE kms_blind_index(e) = kms_blind_index(%s, %s)"
         "   AND kms_blind_index_match(e, %s, %s) ORDER BY id")
    with psycopg.connect(host=HOST, port=PORT, dbname=DB, user=ROLE, autocommit=True) as c:
        c.execute("SET enable_seqscan = off")
        for i, (stored, hit, miss) in enumerate(cases, start=1):
            kind = type(stored).__name__
            try:
                plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + q, (hit, BIDX_KEY, hit, BIDX_KEY)))
                got = [c.execute(q, (hit, BIDX_KEY, hit, BIDX_KEY), prepare=prep).fetchall() for prep in (False, True, True)]
                check(all(g == [(i,)] for g in got) and "Index" in plan,
                      "psycopg 3: a %s probe finds its row through the index, also prepared" % kind)
                got = c.execute(q, (miss, BIDX_KEY, miss, BIDX_KEY), prepare=True).fetchall()
                check(got == [], "psycopg 3: a %s probe of another value finds nothing" % kind)
                same_tag = c.execute("SELECT kms_blind_index(e) = kms_blind_index(%s, %s) FROM tagged WHERE id = %s",
                                     (stored, BIDX_KEY, i)).fetchone()[0]
                check(same_tag is True, "psycopg 3: the %s probe of the stored value equals its tag" % kind)
                match = [c.execute("SELECT kms_blind_index_match(e, %s, %s) FROM tagged WHERE id = %s",
                                   (p, BIDX_KEY, i)).fetchone()[0] for p in (hit, miss)]
                check(match == [True, False], "psycopg 3: kms_blind_index_match re-checks a %s value: %r" % (kind, match))
            except psycopg.Error as e:
                check(False, "psycopg 3, %s probe: SQLSTATE %s %s" % (kind, e.sqlstate, str(e).splitlines()[0]))


def main():
    setup()
    try:
        psycopg3_round_trips()
        psycopg3_ranges()
        psycopg2_round_trips()
        psycopg3_blind_probes()
    finally:
        teardown()
    print("1..%d" % count)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
