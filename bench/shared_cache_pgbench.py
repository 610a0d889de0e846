#!/usr/bin/python3
"""Driver of bench/shared_cache_pgbench.sh (run as the postgres OS user against its cluster)."""
import glob, json, os, statistics, subprocess, sys, threading, time
from shared_cache_lib import HOST, PGBIN, PORT, decrypts, emuctl
import shared_cache_lib

TMP, ROOT = os.environ['PGCK_TMP'], os.environ['PGCK_ROOT']
TTL, PERIODS, OFF_PERIODS, CLIENTS, TENANTS, DELAY = (int(os.environ[k]) for k in (
    'BENCH_TTL', 'BENCH_PERIODS', 'BENCH_OFF_PERIODS', 'BENCH_CLIENTS', 'BENCH_TENANTS', 'BENCH_DELAY'))
SIM_TTL = 60                        # the TTL the run stands for: 1 wall second = SIM_TTL/TTL simulated
ROWS_PER_TENANT = 10
DB = 'bench_pgb'


def connect(db=DB):
    return shared_cache_lib.connect(db)


def setup():
    with connect('postgres') as c:
        c.execute(f"CREATE DATABASE {DB}")
    with connect() as c:
        c.execute("CREATE EXTENSION pgcrypt_kms")
        c.execute("CREATE TABLE t (id int PRIMARY KEY, tenant int, v enc_text)")

    def make(lo):
        with connect() as c:
            for i in range(lo, TENANTS, 6):
                c.execute("SELECT kms_create_key(%s, 'aws-kms:alias/pgck-demo')", (f'tenant{i}',))
                c.execute("INSERT INTO t SELECT %s * %s + g, %s, kms_encrypt('row ' || g, %s)"
                          " FROM generate_series(1, %s) g",
                          (i, ROWS_PER_TENANT, i, f'tenant{i}', ROWS_PER_TENANT))
    ts = [threading.Thread(target=make, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with connect() as c:
        c.execute("VACUUM ANALYZE t")


def set_refresh(on):
    with connect() as c:
        c.execute(f"ALTER SYSTEM SET pgcrypt_kms.refresh_ahead = {'on' if on else 'off'}")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(2)


def warm():
    with connect() as c:
        c.execute("SELECT kms_flush_cache()")
        t = time.time()
        n = c.execute("SELECT kms_warm_cache('t', 'v')").fetchone()[0]
        return n, time.time() - t


def pgbench(name, clients, seconds, options=''):
    """Run pgbench, sampling the emulator's Decrypt count each second; returns
    (per-transaction (end epoch s, latency ms), [(epoch s, cumulative Decrypt calls)], start)."""
    script = os.path.join(TMP, 'pgb_select.sql')
    with open(script, 'w') as f:
        f.write(f"\\set id random(1, {TENANTS * ROWS_PER_TENANT})\n"
                "SELECT kms_decrypt(v) FROM t WHERE id = :id;\n")
    prefix = os.path.join(TMP, f'pgb_{name}')
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.time(), decrypts()))
            stop.wait(1.0)
    s = threading.Thread(target=sample)
    s.start()
    start = time.time()
    env = dict(os.environ, PGOPTIONS=options)
    r = subprocess.run([f'{PGBIN}/pgbench', '-n', '-M', 'prepared', '-c', str(clients),
                        '-j', str(min(clients, 4)), '-T', str(seconds), '-f', script,
                        '-l', f'--log-prefix={prefix}', '-h', HOST, '-p', PORT, DB],
                       capture_output=True, text=True, env=env)
    stop.set()
    s.join()
    samples.append((time.time(), decrypts()))
    if r.returncode != 0:
        print(r.stdout, r.stderr, file=sys.stderr)
        sys.exit(1)
    tx = []
    for path in glob.glob(prefix + '.*'):
        for line in open(path):
            f = line.split()
            # client_id transaction_no time(us) script_no time_epoch time_us
            tx.append((int(f[4]) + int(f[5]) / 1e6, int(f[2]) / 1000.0))
        os.unlink(path)
    tx.sort()
    return tx, samples, start


def pct(xs, p):
    if not xs:
        return float('nan')
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def calls_between(samples, a, b):
    def at(t):
        best = samples[0][1]
        for ts, n in samples:
            if ts <= t:
                best = n
        return best
    return at(b) - at(a)


def report(label, tx, samples, start, periods, skip=0):
    print(f"\n### {label}\n")
    print(f"| TTL period ({TTL} s) | statements | p50 ms | p99 ms | worst 1-s p99 ms | max ms "
          f"| Decrypt calls | calls/min (wall) | calls/min (simulated, TTL {SIM_TTL} s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    allp99 = []
    for p in range(periods):
        a, b = start + skip + p * TTL, start + skip + (p + 1) * TTL
        lat = [l for t, l in tx if a <= t < b]
        secs = {}
        for t, l in tx:
            if a <= t < b:
                secs.setdefault(int(t - a), []).append(l)
        worst = max((pct(v, 99) for v in secs.values() if len(v) >= 20), default=float('nan'))
        calls = calls_between(samples, a, b)
        per_min = calls * 60.0 / TTL
        allp99.append(pct(lat, 99))
        print(f"| {p + 1} | {len(lat)} | {pct(lat, 50):.2f} | {pct(lat, 99):.2f} | {worst:.2f} "
              f"| {max(lat) if lat else float('nan'):.1f} | {calls} | {per_min:.0f} "
              f"| {per_min * TTL / SIM_TTL:.0f} |")
    lat = [l for t, l in tx if start + skip <= t < start + skip + periods * TTL]
    print(f"| all | {len(lat)} | {pct(lat, 50):.2f} | {pct(lat, 99):.2f} | | "
          f"{max(lat) if lat else float('nan'):.1f} | "
          f"{calls_between(samples, start + skip, start + skip + periods * TTL)} | | |")
    return pct(lat, 50), pct(lat, 99)


t0 = time.time()
setup()
print(f"setup: {TENANTS} tenant keys, {TENANTS * ROWS_PER_TENANT} rows in {time.time() - t0:.1f} s",
      file=sys.stderr)
emuctl('set-fault', json.dumps({"op": "Decrypt", "kind": "delay", "delay_ms": DELAY, "count": -1}))
load0 = os.getloadavg()
cpus = os.cpu_count()
model = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
print(f"## Shared key cache under pgbench ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
      f"{cpus} cores, {model}, load average at start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f})\n")
print(f"{TENANTS} tenant keys, {ROWS_PER_TENANT} rows each; each statement decrypts one random row "
      f"(`SELECT kms_decrypt(v) FROM t WHERE id = :id`, pgbench -M prepared); emulator Decrypt delay "
      f"{DELAY} ms; cache_ttl = {TTL} s: {PERIODS} TTL periods in {PERIODS * TTL} s stand for "
      f"{PERIODS * SIM_TTL // 60} minutes at cache_ttl = {SIM_TTL} s (time scaled by {SIM_TTL // TTL}). "
      f"The shared cache is flushed and warmed (kms_warm_cache) before each run.")

# 1. warm single backend: its own cache never expires (cache_ttl 1 h for that session)
set_refresh(True)
n, secs = warm()
print(f"\nkms_warm_cache before the baseline: {n} keys in {secs:.2f} s", file=sys.stderr)
tx, samples, start = pgbench('single', 1, 2 * TTL + 10, '-c pgcrypt_kms.cache_ttl=3600')
b50, b99 = report("warm single backend (1 client; first 10 s, its own cache filling, left out)",
                  tx, samples, start, 2, skip=10)

# 2. 32 clients, refresh-ahead on
n, secs = warm()
print(f"kms_warm_cache before refresh on: {n} keys in {secs:.2f} s", file=sys.stderr)
tx, samples, start = pgbench('on', CLIENTS, PERIODS * TTL)
on50, on99 = report(f"{CLIENTS} clients, refresh_ahead = on", tx, samples, start, PERIODS)
with connect() as c:
    st = c.execute("SELECT refreshes, refresh_failures, misses, unwraps FROM kms_shared_cache_stats()").fetchone()
print(f"\nshared cache after the run: refreshes {st[0]}, refresh failures {st[1]}, misses {st[2]}, unwraps {st[3]}")

# 3. 32 clients, refresh-ahead off
set_refresh(False)
n, secs = warm()
print(f"kms_warm_cache before refresh off: {n} keys in {secs:.2f} s", file=sys.stderr)
tx, samples, start = pgbench('off', CLIENTS, OFF_PERIODS * TTL)
off50, off99 = report(f"{CLIENTS} clients, refresh_ahead = off (to show what a spike at expiry looks like)",
                      tx, samples, start, OFF_PERIODS)
with connect() as c:
    st = c.execute("SELECT refreshes, refresh_failures, misses, unwraps FROM kms_shared_cache_stats()").fetchone()
print(f"\nshared cache after the run (cumulative): refreshes {st[0]}, refresh failures {st[1]}, misses {st[2]}, unwraps {st[3]}")
load1 = os.getloadavg()
print(f"\nSummary: p50/p99 ms — warm single backend {b50:.2f}/{b99:.2f}; {CLIENTS} clients refresh on "
      f"{on50:.2f}/{on99:.2f}; refresh off {off50:.2f}/{off99:.2f}. Load average at the end "
      f"{load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}.")
