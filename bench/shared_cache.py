#!/usr/bin/python3
"""Driver of bench/shared_cache.sh (run as the postgres OS user against its cluster)."""
import json, os, sys, threading, time
from shared_cache_lib import PGDATA, decrypts, emuctl, restart
import shared_cache_lib

DELAY = int(os.environ['BENCH_DELAY'])
TENANTS = [int(t) for t in os.environ['BENCH_TENANTS'].split()]
SHARED = int(os.environ['BENCH_SHARED_SIZE'])


def connect(db='bench_shared'):
    return shared_cache_lib.connect(db)


def cpu_seconds(pid, children=False):
    """utime+stime (or, with children, cutime+cstime: reaped children) of pid, in seconds."""
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    ticks = int(f[11]) + int(f[12]) if not children else int(f[13]) + int(f[14])
    return ticks / os.sysconf('SC_CLK_TCK')


def postmaster_pid():
    return int(open(os.path.join(PGDATA, 'postmaster.pid')).readline())


EMU_PID = int(os.environ['BENCH_EMU_PID'])
LOAD0 = os.getloadavg()[0]
# One database, so one keyring, per tenant count: a cold scan's prefetch reads the whole
# keyring, so a 500-tenant scan must not find 5,000 keys there.
t0 = time.time()
with connect('postgres') as c:
    c.execute("CREATE DATABASE bench_shared")
    for n in TENANTS:
        c.execute(f"CREATE DATABASE bench_{n}")
setup = connect()
setup.execute("CREATE EXTENSION pgcrypt_kms")
setup.execute("SELECT kms_create_key('one', 'aws-kms:alias/pgck-demo')")
setup.execute("CREATE TABLE t_one AS SELECT g AS id, kms_encrypt('v' || g, 'one') AS v FROM generate_series(1, 100) g")
setup.close()
for n in TENANTS:
    with connect(f'bench_{n}') as setup:
        setup.execute("CREATE EXTENSION pgcrypt_kms")
        setup.execute(f"CREATE TABLE t_{n} (id int, v enc_text)")
        for i in range(n):
            setup.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-demo')", (f'tenant{i}',))
        setup.execute(f"INSERT INTO t_{n} SELECT i, kms_encrypt('row of tenant ' || i, 'tenant' || i)"
                      f" FROM generate_series(0, {n - 1}) i")
print(f"setup: {sum(TENANTS)} tenant keys in {time.time() - t0:.1f} s", file=sys.stderr)
emuctl('set-fault', json.dumps({"op": "Decrypt", "kind": "delay", "delay_ms": DELAY, "count": -1}))


def fresh_backends(n):
    gate = connect()
    gate.execute("SELECT pg_advisory_lock(1)")
    errs = []

    def client():
        try:
            with connect() as c:
                c.execute("SELECT pg_advisory_lock_shared(1)")
                c.execute("SELECT count(kms_decrypt(v)) FROM t_one").fetchone()
        except Exception as e:
            errs.append(str(e))
    ts = [threading.Thread(target=client) for _ in range(n)]
    for t in ts:
        t.start()
    while gate.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0] < n:
        time.sleep(0.05)
    before = decrypts()
    gate.execute("SELECT pg_advisory_unlock(1)")
    for t in ts:
        t.join()
    gate.close()
    return decrypts() - before, errs


def first_scan(n, warm):
    """Time, Decrypt calls, rows, and CPU seconds of the emulator and of the cluster."""
    pm = postmaster_pid()
    emu0, pg0 = cpu_seconds(EMU_PID), cpu_seconds(pm, True)
    with connect(f'bench_{n}') as c:
        before = decrypts()
        t = time.time()
        if warm:
            c.execute(f"SELECT kms_warm_cache('t_{n}', 'v')").fetchone()
        got = c.execute(f"SELECT count(*) FROM t_{n} WHERE kms_decrypt(v) = 'row of tenant ' || id").fetchone()[0]
        secs = time.time() - t
        calls = decrypts() - before
    time.sleep(0.5)  # the backend and the unwrap workers exit and are reaped
    return secs, calls, got, cpu_seconds(EMU_PID) - emu0, cpu_seconds(pm, True) - pg0


rows = []
configs = [("per-backend caches only (shared_cache_size = 0)", 0),
           (f"shared key cache (shared_cache_size = {SHARED})", SHARED)]
if os.environ.get('BENCH_SHARED_ONLY') == '1':
    configs = configs[1:]
for label, size in configs:
    restart(size)
    calls, errs = fresh_backends(64)
    rows.append((label, "64 fresh backends, one key version", "", calls, f"{len(errs)} errors", "", ""))
    for n in TENANTS:
        restart(size)
        secs, calls, got, emu, pg = first_scan(n, False)
        rows.append((label, f"first scan, {n} tenant keys", f"{secs:.2f} s", calls, f"{got} rows",
                     f"{emu:.2f} s", f"{pg:.2f} s"))
        if size:
            restart(size)
            secs, calls, got, emu, pg = first_scan(n, True)
            rows.append((label, f"kms_warm_cache + first scan, {n} tenant keys", f"{secs:.2f} s", calls,
                         f"{got} rows", f"{emu:.2f} s", f"{pg:.2f} s"))

cpus = os.cpu_count()
model = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
print(f"## Shared key cache benchmark ({time.strftime('%Y-%m-%d')}, {cpus} cores, {model}, "
      f"emulator Decrypt delay {DELAY} ms, unwrap_concurrency {os.environ.get('BENCH_CONC', 'see config')})\n")
print(f"load average at the start: {LOAD0:.1f}; CPU = seconds used by the emulator process and by PostgreSQL (the scanning backend and the unwrap workers) during the scenario\n")
print("| configuration | scenario | time | Decrypt calls | | emulator CPU | PostgreSQL CPU |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")
