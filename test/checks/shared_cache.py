#!/usr/bin/python3
"""The shared key cache's behaviour; run (as root, to read /proc/<pid>/mem) by
test/checks/shared_cache.sh against the cluster it starts (PGHOST, PGPORT,
PGCK_PGDATA, EMU_PORT, PGCK_LOCAL_KEY; database pgck_shared).  Prints TAP-ish
"ok - ..." / "not ok - ..." lines; exits 1 if any failed."""
import json, os, sys, threading, time
import psycopg

from shared_cache_lib import *          # noqa: F401,F403 (helpers and the connection settings)
import shared_cache_lib

setup = connect()

# ---------------------------------------------------------------- memory flags
reg = region_of_postmaster()
check(len(reg) == 1, f"the postmaster has one shared, locked (lo), non-dumpable (dd) mapping: {len(reg)}")
with connect() as c:
    bpid = one(c, "SELECT pg_backend_pid()")
    bmaps = {(s, e): f for s, e, f in mappings(bpid)}
    check(len(reg) == 1 and 'dd' in bmaps.get(reg[0], set()) and 'sh' in bmaps.get(reg[0], set()),
          "a backend maps the same region, shared and excluded from core dumps (dd)")

# ---------------------------------------------------------------- 64 backends, one Decrypt
make_key(setup, 'k64', kms='aws-kms:alias/pgck-test', rows=10)
N = 64
gate = connect()
gate.execute("SELECT pg_advisory_lock(4242)")
emuctl('reset-stats')
results, errors = [], []


def client():
    try:
        with connect() as c:
            c.execute("SELECT pg_advisory_lock_shared(4242)")
            results.append(decrypt_all(c, 'k64'))
    except Exception as e:          # reported below
        errors.append(str(e))


threads = [threading.Thread(target=client) for _ in range(N)]
for t in threads:
    t.start()
for _ in range(600):
    waiting = one(gate, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    if waiting >= N:
        break
    time.sleep(0.1)
gate.execute("SELECT pg_advisory_unlock(4242)")
for t in threads:
    t.join()
decrypts = emuctl('stats')['calls'].get('Decrypt', 0)
check(not errors and results == [10] * N,
      f"{N} fresh backends released at once each decrypted the 10 values ({len(results)} answered, errors {errors[:1]})")
check(decrypts == 1, f"{N} fresh backends on one key version: {decrypts} Decrypt call(s) to the KMS (want 1)")

# ---------------------------------------------------------------- revocation within cache_ttl
make_key(setup, 'rv', kms='aws-kms:alias/pgck-test-2')
a = connect()
a.execute("SET pgcrypt_kms.cache_ttl = 10")
check(decrypt_all(a, 'rv') == 5, "backend A decrypts under rv (and shares the key)")
emuctl('disable-key', '{"key_id":"alias/pgck-test-2"}')
revoked_at = time.time()
with connect() as b:
    b.execute("SET pgcrypt_kms.cache_ttl = 10")
    emuctl('reset-stats')
    ok = decrypt_all(b, 'rv') == 5
    check(ok and emuctl('stats')['calls'].get('Decrypt', 0) == 0,
          "within cache_ttl a fresh backend B is served from the shared cache, without the KMS")
time.sleep(max(0, revoked_at + 11 - time.time()))
with connect() as c:
    c.execute("SET pgcrypt_kms.cache_ttl = 10")
    st = sqlstate_of(c, "SELECT count(*) FROM t_rv WHERE kms_decrypt(v) IS NOT NULL")
    check(st is not None, f"past cache_ttl a fresh backend C is refused (SQLSTATE {st}): revocation reached the cluster")
st = sqlstate_of(a, "SELECT count(*) FROM t_rv WHERE kms_decrypt(v) IS NOT NULL")
check(st is not None, f"and backend A is refused too (SQLSTATE {st})")
a.close()
emuctl('enable-key', '{"key_id":"alias/pgck-test-2"}')

# ---------------------------------------------------------------- flush by an admin
make_key(setup, 'fl')
dek_fl = local_dek(setup, 'fl')
a = connect()
decrypt_all(a, 'fl')
check(dek_fl in region_bytes(), "while shared, the key's bytes are in the region")
unwraps_before = one(a, "SELECT unwraps FROM kms_cache_stats()")
with connect() as admin:
    admin.execute("SELECT kms_flush_cache()")
check(dek_fl not in region_bytes(), "an admin's kms_flush_cache() wiped them from the region")
decrypt_all(a, 'fl')
check(one(a, "SELECT unwraps FROM kms_cache_stats()") == unwraps_before + 1,
      "and another backend's own cache was flushed at its next statement (it unwrapped again)")
a.close()

# ---------------------------------------------------------------- flush by anyone else
# (README: kms_flush_cache() of a role that is not an admin flushes its own
# backend only; it must not let every reader empty the cluster's cache and
# make every backend unwrap again)
make_key(setup, 'fn')
dek_fn = local_dek(setup, 'fn')
setup.execute("CREATE ROLE pgck_sc_reader")
setup.execute("GRANT pgcrypt_kms_decrypt TO pgck_sc_reader")
setup.execute("GRANT SELECT ON t_fn TO pgck_sc_reader")
a = connect()
decrypt_all(a, 'fn')
check(dek_fn in region_bytes(), "while shared, the key's bytes are in the region")
unwraps_before = one(a, "SELECT unwraps FROM kms_cache_stats()")
with connect() as r:
    r.execute("SET ROLE pgck_sc_reader")
    check(decrypt_all(r, 'fn') == 5, "a reader without the admin role decrypts")
    r.execute("SELECT kms_flush_cache()")
check(dek_fn in region_bytes(), "a non-admin's kms_flush_cache() leaves the shared region as it was")
decrypt_all(a, 'fn')
check(one(a, "SELECT unwraps FROM kms_cache_stats()") == unwraps_before,
      "and another backend's own cache was not flushed (it did not unwrap again)")
a.close()
setup.execute("DROP TABLE t_fn")
setup.execute("DROP OWNED BY pgck_sc_reader")
setup.execute("DROP ROLE pgck_sc_reader")

# ---------------------------------------------------------------- expiry wipes
make_key(setup, 'ex')
make_key(setup, 'ex2')              # before: a keyring commit would wipe the database's entries
dek_ex = local_dek(setup, 'ex')
with connect() as c:
    c.execute("SET pgcrypt_kms.cache_ttl = 6")
    decrypt_all(c, 'ex')
    check(dek_ex in region_bytes(), "a shared key (ttl 6 s) is in the region")
    time.sleep(7)
    with connect() as d:
        d.execute("SET pgcrypt_kms.cache_ttl = 6")
        decrypt_all(d, 'ex2')       # a lookup of another key sweeps expired entries
    check(dek_ex not in region_bytes(), "past cache_ttl it was wiped from the region by another key's lookup")

# ---------------------------------------------------------------- LRU eviction
ENTRIES = int(os.environ['PGCK_ENTRIES'])
names = [f'ev{i}' for i in range(ENTRIES + 4)]
make_key(setup, 'hg', kms='aws-kms:alias/pgck-test', rows=1)
for n in names:
    make_key(setup, n, rows=1)
with connect() as c:
    for n in names:
        decrypt_all(c, n)
data = region_bytes()
deks = {n: local_dek(setup, n) for n in names}
check(deks[names[-1]] in data and deks[names[-2]] in data,
      "after more keys than entries, the most recently used are in the region")
check(deks[names[0]] not in data and deks[names[1]] not in data,
      "and the least recently used were evicted and wiped")

# an eviction wipes at once, also while the slot waits for the KMS to unwrap its next key
victim = deks[names[4]]             # the least recently used now
check(victim in data, "the next victim is in the region")
emuctl('reset-stats')
emuctl('set-fault', '{"op":"Decrypt","kind":"hang","count":1}')
hung = threading.Thread(target=lambda: sqlstate_of(connect(), "SELECT count(kms_decrypt(v)) FROM t_hg"))
hung.start()
for _ in range(100):                # until the unwrap that evicted it hangs in the KMS
    if emuctl('stats')['calls'].get('Decrypt', 0) >= 1:
        break
    time.sleep(0.1)
gone = victim not in region_bytes()
check(gone and hung.is_alive() and emuctl('faults')['faults'] == [],
      "an entry evicted for a key still being unwrapped was wiped before the KMS answered")
emuctl('clear-faults')
hung.join()

# ---------------------------------------------------------------- a committed destroy wipes
make_key(setup, 'ds')
dek_ds = local_dek(setup, 'ds')
wrapped_ds = bytes.fromhex(one(setup, "SELECT encode(wrapped_dek, 'hex') FROM pgcrypt_kms.key_versions"
                                      " WHERE key_name = 'ds'"))
with connect() as c:
    decrypt_all(c, 'ds')
check(dek_ds in region_bytes(), "a key to destroy is shared")
check(material_copies(wrapped_ds, 'local:sc') == 1,
      "and its wrapped key is kept for the refresher in the main shared memory segment")
with connect() as c:
    c.execute("SELECT kms_destroy_key('ds', 'ds')")
check(dek_ds not in region_bytes(), "once kms_destroy_key commits, its bytes are gone from the region")
check(material_copies(wrapped_ds, 'local:sc') == 0,
      "and its wrapped key is gone from the main shared memory segment (the keyring no longer holds it)")
with connect() as c:
    st = sqlstate_of(c, "SELECT count(*) FROM t_ds WHERE kms_decrypt(v) IS NOT NULL")
    check(st == '42704', f"and no backend is served it (SQLSTATE {st})")

# ---------------------------------------------------------------- nothing from a transaction that wrote the keyring
make_key(setup, 'up')
make_key(setup, 'up_other')
with connect(autocommit=False) as c:
    c.execute("SELECT kms_rotate_key('up')")
    c.execute("CREATE TEMP TABLE t_new AS SELECT kms_encrypt('secret', 'up') AS v")
    dek_new = local_dek(c, 'up', 2)
    c.execute("SET LOCAL pgcrypt_kms.cache_max_keys = 1")
    decrypt_all(c, 'up_other')          # evicts the new version from this backend
    got = one(c, "SELECT kms_decrypt(v) FROM t_new")   # unwrapped again, in the writing transaction
    check(got == 'secret', "a transaction that rotated a key unwraps its new version again")
    check(dek_new not in region_bytes(), "but does not publish it while uncommitted")
    c.rollback()
check(dek_new not in region_bytes(), "nor after its rollback")

# ---------------------------------------------------------------- many unwraps at once: kms_warm_cache
TENANTS = 12
print("# before warm: " + str(one(setup, "SELECT row_to_json(s) FROM kms_shared_cache_stats() s")))
setup.execute("CREATE TABLE t_tenants (id int, v enc_text)")
for i in range(TENANTS):
    setup.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-test-2')", (f'tn{i}',))
    setup.execute("INSERT INTO t_tenants SELECT g, kms_encrypt('v' || g, %s) FROM generate_series(%s::int, %s::int) g",
                  (f'tn{i}', i * 10, i * 10 + 9))
emuctl('reset-stats')
emuctl('set-fault', '{"op":"Decrypt","kind":"hang","count":4}')
warmed = []


def warm():
    with connect() as c:
        c.execute("SET pgcrypt_kms.unwrap_concurrency = 4")
        warmed.append(one(c, "SELECT kms_warm_cache('t_tenants', 'v')"))


w = threading.Thread(target=warm)
w.start()
in_flight = 0
for _ in range(80):
    in_flight = emuctl('stats')['calls'].get('Decrypt', 0)
    if in_flight >= 4:
        break
    time.sleep(0.1)
time.sleep(1)
in_flight_later = emuctl('stats')['calls'].get('Decrypt', 0)
check(in_flight == 4 and in_flight_later == 4,
      f"kms_warm_cache had unwrap_concurrency = 4 KMS calls in flight at once, and no more ({in_flight}, then {in_flight_later})")
emuctl('clear-faults')
w.join()
print("# after warm: " + str(one(setup, "SELECT row_to_json(s) FROM kms_shared_cache_stats() s")))
check(warmed == [TENANTS], f"kms_warm_cache unwrapped the column's {TENANTS} key versions (returned {warmed})")
check(emuctl('stats')['calls'].get('Decrypt', 0) == TENANTS, "one Decrypt call per key version")
with connect() as c:
    n = one(c, "SELECT count(*) FROM t_tenants WHERE kms_decrypt(v) = 'v' || id")
    calls = one(c, "SELECT kms_calls FROM kms_cache_stats()")
    check(n == TENANTS * 10 and calls == 0,
          f"then a fresh backend's first scan over the {TENANTS} tenant keys decrypted {n} values with {calls} KMS calls")
    if calls:
        print("# " + str(one(c, "SELECT by_operation FROM kms_cache_stats()")))
        print("# " + str(one(setup, "SELECT row_to_json(s) FROM kms_shared_cache_stats() s")))

# kms_warm_cache counts what it unwrapped, not what it queued: three refused unwraps are a
# WARNING (58000) and missing from the result, and the scan then unwraps them itself
FAILING = 3
setup.execute("CREATE TABLE t_warm_fail (id int, v enc_text)")
for i in range(TENANTS):
    setup.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-test-2')", (f'wf{i}',))
    setup.execute("INSERT INTO t_warm_fail VALUES (%s, kms_encrypt(%s, %s))", (i, f'w{i}', f'wf{i}'))
emuctl('reset-stats')
emuctl('set-fault', json.dumps({"op": "Decrypt", "kind": "access_denied", "count": FAILING}))
with connect() as c:
    notices = []
    c.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.sqlstate, d.message_primary)))
    got = one(c, "SELECT kms_warm_cache('t_warm_fail', 'v')")
    check(got == TENANTS - FAILING,
          f"kms_warm_cache returned the {TENANTS - FAILING} versions it unwrapped when {FAILING} of {TENANTS} were refused (returned {got})")
    check([(s, st) for s, st, _ in notices] == [('WARNING', '58000')] and
          notices[0][2].startswith(f"{FAILING} of the {TENANTS} key versions"),
          f"and said so in one WARNING 58000 ({notices})")
emuctl('clear-faults')
with connect() as c:
    c.execute("SET pgcrypt_kms.prefetch_after = 0")
    n = one(c, "SELECT count(*) FROM t_warm_fail WHERE kms_decrypt(v) = 'w' || id")
    calls = one(c, "SELECT kms_calls FROM kms_cache_stats()")
    check(n == TENANTS and calls == FAILING,
          f"then a fresh backend's scan unwrapped the {FAILING} missing versions itself ({n} rows, {calls} KMS calls)")

# ---------------------------------------------------------------- a cold multi-key scan prefetches
with psycopg.connect(host=HOST, port=PORT, dbname='postgres', user='postgres', autocommit=True) as c:
    c.execute("CREATE DATABASE pgck_prefetch")
pf = connect('pgck_prefetch')
pf.execute("CREATE EXTENSION pgcrypt_kms")
pf.execute("CREATE TABLE t_pf (id int, v enc_text)")
for i in range(10):
    pf.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-test-2')", (f'pf{i}',))
    pf.execute("INSERT INTO t_pf SELECT g, kms_encrypt('v' || g, %s) FROM generate_series(%s::int, %s::int) g",
               (f'pf{i}', i * 10, i * 10 + 9))
with connect() as admin:
    admin.execute("SELECT kms_flush_cache()")   # room: a prefetch never evicts
emuctl('reset-stats')
hits0 = one(setup, "SELECT hits FROM kms_shared_cache_stats()")
with connect('pgck_prefetch') as c:
    c.execute("SET pgcrypt_kms.prefetch_after = 2")
    n = one(c, "SELECT count(*) FROM t_pf WHERE kms_decrypt(v) = 'v' || id")
took = one(setup, "SELECT hits FROM kms_shared_cache_stats()") - hits0
check(n == 100 and took == 8,
      f"a fresh backend's cold scan over 10 keys prefetched at its second cold key: the other {took} of 10 came from the shared cache")
check(emuctl('stats')['calls'].get('Decrypt', 0) == 10, "still one Decrypt call per key version")
pf.close()

# ---------------------------------------------------------------- refresh-ahead
def shared(field):
    return one(setup, f"SELECT {field} FROM kms_shared_cache_stats()")


# a TTL of 15 s: the refresh margin is 5 s, so the refresher (waking every second) has about 4 s
# to fork a worker and unwrap before a fresh backend would find the entry expired (with 9 s and
# its 3 s margin, a loaded 2-core machine had about 2 s)
setup.execute("ALTER SYSTEM SET pgcrypt_kms.cache_ttl = 15")
setup.execute("SELECT pg_reload_conf()")
time.sleep(1.5)
make_key(setup, 'rf', kms='aws-kms:alias/pgck-test', rows=3)
with connect() as c:
    decrypt_all(c, 'rf')            # published now
refreshes0 = shared('refreshes')
calls, answers = [], []
start = time.time()
while time.time() - start < 32:     # two TTLs and more
    with connect() as c:
        answers.append(decrypt_all(c, 'rf'))
        calls.append(one(c, "SELECT kms_calls FROM kms_cache_stats()"))
    time.sleep(0.5)
check(answers and all(a == 3 for a in answers) and all(k == 0 for k in calls),
      f"for two TTLs, none of {len(calls)} fresh backends called the KMS for a key in use (calls {sorted(set(calls))})")
refreshed = shared('refreshes') - refreshes0
check(refreshed >= 2, f"the refresher unwrapped it again before each expiry ({refreshed} refreshes)")

# a refresh that fails leaves the entry to expire at its TTL, logged and counted
failures0 = shared('refresh_failures')
emuctl('disable-key', '{"key_id":"alias/pgck-test"}')
refused, start = None, time.time()
while time.time() - start < 30 and refused is None:     # the TTL and more
    with connect() as c:
        refused = sqlstate_of(c, "SELECT count(*) FROM t_rf WHERE kms_decrypt(v) IS NOT NULL")
    time.sleep(0.5)
check(refused is not None, f"once the KMS refuses the key, a fresh backend is refused within the TTL (SQLSTATE {refused})")
check(shared('refresh_failures') > failures0, "the failed refresh was counted (refresh_failures)")
log = open(os.environ['PGCK_SERVER_LOG'], errors='replace').read()
check('pgcrypt_kms: refresh-ahead of key "rf" version 1 failed' in log, "and logged")
emuctl('enable-key', '{"key_id":"alias/pgck-test"}')

# ---------------------------------------------------------------- many refreshes at once
# Keys due for a refresh together are unwrapped again concurrently by refresh
# workers, exactly unwrap_concurrency in flight: counted at the emulator while
# it holds every call it gets (a TTL long enough that nothing expires while
# held, and a kms_timeout longer than the hold).
RK = 6
setup.execute("ALTER SYSTEM SET pgcrypt_kms.unwrap_concurrency = 3")
setup.execute("ALTER SYSTEM SET pgcrypt_kms.cache_ttl = 24")
setup.execute("ALTER SYSTEM SET pgcrypt_kms.kms_timeout = '60s'")
setup.execute("SELECT pg_reload_conf()")
for i in range(RK):
    make_key(setup, f'rc{i}', kms='aws-kms:alias/pgck-test-2', rows=2)
with connect() as admin:
    admin.execute("SELECT kms_flush_cache()")   # only these keys in the cache now
time.sleep(1.5)
with connect() as c:
    for i in range(RK):
        decrypt_all(c, f'rc{i}')    # published together: due together, 16 s later
emuctl('reset-stats')
emuctl('set-fault', '{"op":"Decrypt","kind":"hang","count":%d}' % RK)
refreshes0 = shared('refreshes')
in_flight, start = 0, time.time()
while time.time() - start < 30 and in_flight < 3:
    in_flight = emuctl('stats')['calls'].get('Decrypt', 0)
    time.sleep(0.2)
time.sleep(2.5)                     # more refresher ticks: no more workers may start
in_flight = emuctl('stats')['calls'].get('Decrypt', 0)
check(in_flight == 3,
      f"{RK} keys due for a refresh at once: unwrap_concurrency = 3 refreshes in flight, no fewer, no more ({in_flight})")
emuctl('clear-faults')
start = time.time()
while time.time() - start < 15 and shared('refreshes') - refreshes0 < RK:
    time.sleep(0.2)
check(shared('refreshes') - refreshes0 == RK and emuctl('stats')['calls'].get('Decrypt', 0) == RK,
      f"then all {RK} were refreshed, one Decrypt call each ({shared('refreshes') - refreshes0} refreshes)")

# pgcrypt_kms.refresh_ahead = off: keys in use expire and are not unwrapped again ahead
setup.execute("ALTER SYSTEM SET pgcrypt_kms.refresh_ahead = off")
setup.execute("ALTER SYSTEM SET pgcrypt_kms.cache_ttl = 9")
setup.execute("SELECT pg_reload_conf()")
time.sleep(1.5)
with connect() as admin:
    admin.execute("SELECT kms_flush_cache()")
with connect() as c:
    for i in range(RK):
        decrypt_all(c, f'rc{i}')    # in use again
refreshes0 = shared('refreshes')
time.sleep(10)                      # past the refresh margin (3 s before the 9 s TTL)
check(shared('refreshes') == refreshes0,
      f"with refresh_ahead = off nothing is refreshed ({shared('refreshes') - refreshes0} refreshes)")
setup.execute("ALTER SYSTEM RESET pgcrypt_kms.kms_timeout")
setup.execute("ALTER SYSTEM RESET pgcrypt_kms.refresh_ahead")
setup.execute("ALTER SYSTEM RESET pgcrypt_kms.unwrap_concurrency")
setup.execute("ALTER SYSTEM RESET pgcrypt_kms.cache_ttl")
setup.execute("SELECT pg_reload_conf()")

# ---------------------------------------------------------------- a flush under the memos
# kms_flush_cache() in another session reaches this one at its next statement, which releases
# its whole backend cache (in statement_now()); the last-key and last-version memos of
# enc_text.c then ask whether the entries their previous statement used are still usable.
# Those entries were just freed: the check must say no from the epoch, before touching them.
# Until 2026-12-05 it read them and moved the freed version in the LRU list, which left the
# list's tail on its head: the next eviction released garbage (a review saw the corrupted list
# in gdb, then a segfault).  Whether that crashes depends on what the freed and neighbouring
# memory holds, so this block does not count on a crash: a hit counted by the first lookups
# after the flush is the check accepting a freed entry, and an eviction that does not take the
# least recently used version (or a count of cached versions that drifts) is the broken list.
setup.execute("CREATE TABLE t_flm AS SELECT g, kms_encrypt('v' || g, 'flm' || g) AS v"
              " FROM generate_series(1, 6) g, LATERAL (SELECT kms_create_key('flm' || g, 'local:sc')) k")
fl = connect()


def fl_stats():
    return fl.execute("SELECT hits, misses, evictions, cached_versions FROM kms_cache_stats()").fetchone()


def fl_dec(g):
    return one(fl, "SELECT kms_decrypt(v) FROM t_flm WHERE g = %s", (g,)) == f'v{g}'


def flush_from_another_session():
    with connect() as admin:
        admin.execute("SELECT kms_flush_cache()")


fl_error = ''
try:
    # the last-key memo: two encryptions under flm1 (the second a memo hit), a flush, a third
    ok = all(one(fl, "SELECT kms_encrypt('x', 'flm1') IS NOT NULL") for _ in range(2))
    h0, m0, _, _ = fl_stats()
    flush_from_another_session()
    ok = ok and one(fl, "SELECT kms_encrypt('x', 'flm1') IS NOT NULL")
    h1, m1, _, _ = fl_stats()
    check(ok and h1 == h0 and m1 > m0,
          "the first encryption after another session's kms_flush_cache() finds nothing cached: its key "
          f"memo's entry was released, and no hit is counted for it (hits +{h1 - h0}, misses +{m1 - m0}; want +0, +1 or more)")
    # the last-version memo: point lookups of flm1 and flm2, a flush, flm2 again
    ok = fl_dec(1) and fl_dec(2)
    h0, m0, e0, _ = fl_stats()
    flush_from_another_session()
    ok = ok and fl_dec(2)
    h1, m1, e1, n1 = fl_stats()
    check(ok and (h1 - h0, m1 - m0, n1) == (0, 1, 1),
          "the first point lookup after another session's kms_flush_cache() is a miss, and one version is "
          f"cached: its version memo's entry was released and not taken for a hit (hits +{h1 - h0}, "
          f"misses +{m1 - m0}, cached {n1}; want +0, +1, 1)")
    # then evictions: with room for 2, flm3 and flm4 evict flm2 (the least recently used), and
    # flm2 again is a miss that evicts flm3
    fl.execute("SET pgcrypt_kms.cache_max_keys = 2")
    ok = fl_dec(3) and fl_dec(4)
    _, m2, e2, n2 = fl_stats()
    ok = ok and fl_dec(2)
    _, m3, e3, n3 = fl_stats()
    check(ok and (e2 - e1, n2, m3 - m2, e3 - e2, n3) == (1, 2, 1, 1, 2),
          "after it, evictions take the least recently used version and the cached count stays at "
          f"cache_max_keys (evictions +{e2 - e1} then +{e3 - e2}, cached {n2} then {n3}, flm2 again: misses "
          f"+{m3 - m2}; want +1 +1, 2 2, +1)")
    for g in (5, 6, 1):
        ok = ok and fl_dec(g)
    for order in ('', ' DESC'):
        ok = ok and one(fl, f"SELECT string_agg(kms_decrypt(v), ',' ORDER BY g{order}) FROM t_flm") == \
            ','.join(f'v{g}' for g in (range(1, 7) if not order else range(6, 0, -1)))
except psycopg.Error as e:          # a crash of the backend: reported below
    ok, fl_error = False, str(e).splitlines()[0]
try:
    fl.close()
except psycopg.Error:
    pass
log = open(os.environ['PGCK_SERVER_LOG'], errors='replace').read()
check(ok and 'terminated by signal' not in log,
      "a point lookup right after another session's kms_flush_cache(), then evictions: right values, "
      f"no crash{' (' + fl_error + ')' if fl_error else ''}")

try:
    print(f"# shared cache: {one(setup, 'SELECT row_to_json(s) FROM kms_shared_cache_stats() s')}")
except psycopg.Error as e:          # a backend crash above ended every session (reported there)
    print(f"# shared cache: no statistics ({str(e).splitlines()[0]})")
sys.exit(shared_cache_lib.status())
