#!/usr/bin/python3
"""Driver of bench/shared_cache_perrow.sh (run as the postgres OS user against its cluster)."""
import os, statistics, sys, time
from shared_cache_lib import restart
import shared_cache_lib

ROWS, ROUNDS = int(os.environ['BENCH_ROWS']), int(os.environ['BENCH_ROUNDS'])
SCANS = [  # label, SQL, baseline label
    ('base_text', "SELECT count(email) FROM bench_plain", None),
    ('base_enc', "SELECT count(email) FROM bench_enc", None),
    ('kms_encrypt', "SELECT count(kms_encrypt(email, 'bk')) FROM bench_plain", 'base_text'),
    ('kms_decrypt', "SELECT count(kms_decrypt(email)) FROM bench_enc", 'base_enc'),
    ('kms_blind_index', "SELECT count(kms_blind_index(email, 'bk')) FROM bench_plain", 'base_text'),
]


def connect():
    return shared_cache_lib.connect('postgres')


with connect() as c:
    c.execute("CREATE EXTENSION pgcrypt_kms")
    c.execute("SELECT kms_create_key('bk', 'aws-kms:alias/pgck-demo', blind_index => 'email')")
    c.execute("SELECT setseed(0.5)")
    c.execute(f"CREATE TABLE bench_plain AS SELECT i AS id, 'us' || i || '@example.com' AS email"
              f" FROM generate_series(1, {ROWS}) i ORDER BY random()")
    c.execute("CREATE TABLE bench_enc AS SELECT id, kms_encrypt(email, 'bk') AS email FROM bench_plain")
    c.execute("VACUUM (FREEZE, ANALYZE) bench_plain, bench_enc")

ns = {}   # (config, label) -> [ns/row]
load0 = os.getloadavg()
for r in range(ROUNDS):
    order = [0, 1000] if r % 2 == 0 else [1000, 0]
    for size in order:
        restart(size)
        with connect() as c:
            enabled = c.execute("SELECT enabled FROM kms_shared_cache_stats()").fetchone()[0]
            assert enabled == (size > 0), (size, enabled)
            for _, sql, _ in SCANS:        # warm-up: keys unwrapped, pages cached
                c.execute(sql).fetchone()
            t = {}
            for label, sql, _ in SCANS:
                t0 = time.perf_counter()
                c.execute(sql).fetchone()
                t[label] = time.perf_counter() - t0
            for label, _, base in SCANS:
                if base:
                    ns.setdefault((size, label), []).append((t[label] - t[base]) * 1e9 / ROWS)
load1 = os.getloadavg()
cpus = os.cpu_count()
model = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
print(f"## Per-row costs with the shared key cache off and on ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
      f"{cpus} cores, {model}, load average {load0[0]:.1f} at start, {load1[0]:.1f} at end)\n")
print(f"{ROWS} rows, median of {ROUNDS} rounds per configuration (alternating), ns/row net of the plain count()\n")
print("| function | shared cache off (shared_cache_size = 0) | on (shared_cache_size = 1000) | on/off |")
print("|---|---|---|---|")
for label, _, base in SCANS:
    if base:
        off, on = statistics.median(ns[(0, label)]), statistics.median(ns[(1000, label)])
        print(f"| {label} | {off:.0f} | {on:.0f} | {on / off:.2f} |")
