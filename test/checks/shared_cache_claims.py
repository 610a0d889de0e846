#!/usr/bin/python3
"""The shared key cache's claims and prepared transactions; run (as root, to
read /proc/<pid>/mem) by test/checks/shared_cache.sh after shared_cache.py,
against the same cluster (PGHOST, PGPORT, PGCK_PGDATA, EMU_PORT,
PGCK_LOCAL_KEY; database pgck_shared; max_prepared_transactions > 0):
 - a backend that exits while it unwraps (pg_terminate_backend) gives its
   claim up: the next backend does not wait for it;
 - a parallel worker stops waiting for a claim that outlived kms_timeout + 5 s
   and unwraps alone (it may not take claims over);
 - a claim taken over from a stalled kms_warm_cache is published by the
   taker, and a cancelled kms_warm_cache leaves nothing queued to wait for;
 - a keyring change finished by COMMIT PREPARED leaves nothing published
   between PREPARE and COMMIT PREPARED in the shared cache, also across a
   crash restart; after ROLLBACK PREPARED the cache shares again.
Prints TAP-ish "ok - ..." / "not ok - ..." lines; exits 1 if any failed."""
import os, signal, sys, threading, time
import psycopg

from shared_cache_lib import *          # noqa: F401,F403 (helpers and the connection settings)
import shared_cache_lib


def shared(conn, field):
    return one(conn, f"SELECT {field} FROM kms_shared_cache_stats()")


def hang_decrypts():
    """Make the KMS hold the next Decrypt call (released by clear-faults)."""
    emuctl('reset-stats')
    emuctl('set-fault', '{"op":"Decrypt","kind":"hang","count":1}')


def until_decrypt_calls(n):
    for _ in range(100):
        if emuctl('stats')['calls'].get('Decrypt', 0) >= n:
            return True
        time.sleep(0.1)
    return False


def flush():
    with connect() as admin:
        admin.execute("SELECT kms_flush_cache()")


def backend_in_thread(sql, settings):
    """A backend running sql in a thread: (its pid, the thread, its result list)."""
    c = connect()
    for s in settings:
        c.execute(s)
    pid = one(c, "SELECT pg_backend_pid()")
    out = []
    t = threading.Thread(target=lambda: out.append(sqlstate_of(c, sql)))
    t.start()
    return pid, t, out


setup = connect()

# ---------------------------------------------------------------- a parallel worker and a hung claim
make_key(setup, 'pw', kms='aws-kms:alias/pgck-test')
flush()
hang_decrypts()
apid, at, _ = backend_in_thread("SELECT count(kms_decrypt(v)) FROM t_pw", ["SET pgcrypt_kms.kms_timeout = '60s'"])
until_decrypt_calls(1)
with connect() as p:
    p.execute("SET force_parallel_mode = on")
    p.execute("SET parallel_setup_cost = 0")
    p.execute("SET parallel_tuple_cost = 0")
    p.execute("SET pgcrypt_kms.kms_timeout = '1s'")
    p.execute("SET statement_timeout = '30s'")
    plan = ' '.join(r[0] for r in p.execute(
        "EXPLAIN (COSTS OFF) SELECT count(*) FROM t_pw WHERE kms_decrypt(v) = 'v' || id").fetchall())
    st = sqlstate_of(p, "SELECT count(*) FROM t_pw WHERE kms_decrypt(v) = 'v' || id")
check('Gather' in plan and st is None,
      f"a parallel worker stopped waiting for a claim held past kms_timeout + 5 s and unwrapped alone (SQLSTATE {st})")
one(setup, "SELECT pg_terminate_backend(%s, 10000)", (apid,))
emuctl('clear-faults')
at.join()

# ---------------------------------------------------------------- a loader that exits gives its claim up
make_key(setup, 'tm', kms='aws-kms:alias/pgck-test')
flush()
hang_decrypts()
apid, at, _ = backend_in_thread("SELECT count(kms_decrypt(v)) FROM t_tm", ["SET pgcrypt_kms.kms_timeout = '60s'"])
until_decrypt_calls(1)
waits0, unwraps0 = shared(setup, 'waits'), shared(setup, 'unwraps')
gone = one(setup, "SELECT pg_terminate_backend(%s, 10000)", (apid,))
at.join()
emuctl('clear-faults')
with connect() as q:
    q.execute("SET pgcrypt_kms.kms_timeout = '20s'")
    n = decrypt_all(q, 'tm')
check(gone and n == 5 and shared(setup, 'waits') == waits0,
      f"a backend terminated while it unwrapped gave its claim up: the next one did not wait ({shared(setup, 'waits') - waits0} waits)")
check(shared(setup, 'unwraps') == unwraps0 + 1, "and the next one published the key")

# ---------------------------------------------------------------- kms_warm_cache stalled: a takeover publishes
setup.execute("CREATE TABLE t_wt (id int, v enc_text)")
for i in range(3):
    setup.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-test-2')", (f'wt{i}',))
    setup.execute("INSERT INTO t_wt VALUES (%s, kms_encrypt(%s, %s))", (i, f'v{i}', f'wt{i}'))
flush()
hang_decrypts()
# unwrap_concurrency = 1: no worker, the backend works its queue alone and hangs on the first key
wpid, wt, wout = backend_in_thread("SELECT kms_warm_cache('t_wt', 'v')",
                                   ["SET pgcrypt_kms.unwrap_concurrency = 1", "SET pgcrypt_kms.kms_timeout = '60s'"])
until_decrypt_calls(1)
with connect() as q:
    q.execute("SET pgcrypt_kms.kms_timeout = '1s'")
    q.execute("SET pgcrypt_kms.prefetch_after = 0")     # a prefetch would work the queue too
    n = one(q, "SELECT count(*) FROM t_wt WHERE kms_decrypt(v) = 'v' || id")
with connect() as z:
    z.execute("SET pgcrypt_kms.kms_timeout = '1s'")
    z.execute("SET pgcrypt_kms.prefetch_after = 0")
    nz = one(z, "SELECT count(*) FROM t_wt WHERE kms_decrypt(v) = 'v' || id")
    calls = one(z, "SELECT kms_calls FROM kms_cache_stats()")
check(n == 3 and nz == 3 and calls == 0,
      f"entries of a stalled kms_warm_cache taken over past kms_timeout + 5 s were published by the taker ({calls} KMS calls after)")
one(setup, "SELECT pg_cancel_backend(%s)", (wpid,))
emuctl('clear-faults')
wt.join()

# ---------------------------------------------------------------- kms_warm_cache cancelled: nothing stays queued
setup.execute("CREATE TABLE t_wc (id int, v enc_text)")
for i in range(3):
    setup.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-test-2')", (f'wc{i}',))
    setup.execute("INSERT INTO t_wc VALUES (%s, kms_encrypt(%s, %s))", (i, f'v{i}', f'wc{i}'))
flush()
hang_decrypts()
with connect() as w:
    w.execute("SET pgcrypt_kms.unwrap_concurrency = 1")
    w.execute("SET statement_timeout = '2s'")
    st = sqlstate_of(w, "SELECT kms_warm_cache('t_wc', 'v')")
    emuctl('clear-faults')
    waits0 = shared(setup, 'waits')
    with connect() as x:
        x.execute("SET pgcrypt_kms.kms_timeout = '20s'")
        n = one(x, "SELECT count(*) FROM t_wc WHERE kms_decrypt(v) = 'v' || id")
    check(st == '57014' and n == 3 and shared(setup, 'waits') == waits0,
          f"a cancelled kms_warm_cache (SQLSTATE {st}) left no entry queued: the next backend did not wait "
          f"({shared(setup, 'waits') - waits0} waits)")

# ---------------------------------------------------------------- a keyring change finished by COMMIT PREPARED
make_key(setup, 'px')
dek_px = local_dek(setup, 'px')
flush()
s1 = connect(autocommit=False)
s1.execute("SELECT kms_destroy_key('px', 'px')")
s1.execute("PREPARE TRANSACTION 'pgck_px'")
s1.close()
with connect() as s2:
    n = decrypt_all(s2, 'px')            # the destroy is not visible yet
check(n == 5 and dek_px not in region_bytes(),
      "while a destroy is prepared, a backend still decrypts but the shared cache does not take the key")
setup.execute("COMMIT PREPARED 'pgck_px'")
with connect() as s3:
    st = sqlstate_of(s3, "SELECT count(*) FROM t_px WHERE kms_decrypt(v) IS NOT NULL")
check(st == '42704' and dek_px not in region_bytes(),
      f"after COMMIT PREPARED the key is refused (SQLSTATE {st}) and not in the region")

make_key(setup, 'pr')
dek_pr = local_dek(setup, 'pr')
s1 = connect(autocommit=False)
s1.execute("SELECT kms_rotate_key('pr')")
s1.execute("PREPARE TRANSACTION 'pgck_pr'")
s1.close()
with connect() as s2:
    decrypt_all(s2, 'pr')
held = dek_pr in region_bytes()
setup.execute("ROLLBACK PREPARED 'pgck_pr'")
with connect() as s2:
    n = decrypt_all(s2, 'pr')
check(not held and n == 5 and dek_pr in region_bytes(),
      "after ROLLBACK PREPARED of a keyring change the shared cache takes keys again")

# a crash restart forgets which prepared transactions wrote a keyring; they survive it
make_key(setup, 'pc')
dek_pc = local_dek(setup, 'pc')
s1 = connect(autocommit=False)
s1.execute("SELECT kms_destroy_key('pc', 'pc')")
s1.execute("PREPARE TRANSACTION 'pgck_pc'")
s1.close()
victim = connect()
os.kill(one(victim, "SELECT pg_backend_pid()"), signal.SIGKILL)
# the crash restart has begun once the postmaster has ended the other sessions
# (setup among them); only a connection made after that is to the new server
for _ in range(300):
    try:
        setup.execute("SELECT 1")
        time.sleep(0.1)
    except psycopg.Error:
        break
setup.close()
setup = None
for _ in range(300):
    try:
        c = connect()
        one(c, "SELECT 1")
        setup = c
        break
    except psycopg.Error:
        time.sleep(0.2)
check(setup is not None and one(setup, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'pgck_pc'") == 1,
      "after a crash restart the prepared destroy is still there")
with connect() as s2:
    n = decrypt_all(s2, 'pc')
check(n == 5 and dek_pc not in region_bytes(),
      "and while it is prepared the shared cache does not take the key")
setup.execute("COMMIT PREPARED 'pgck_pc'")
with connect() as s3:
    st = sqlstate_of(s3, "SELECT count(*) FROM t_pc WHERE kms_decrypt(v) IS NOT NULL")
check(st == '42704' and dek_pc not in region_bytes(),
      f"after its COMMIT PREPARED the key is refused (SQLSTATE {st}) and not in the region")

sys.exit(shared_cache_lib.status())
