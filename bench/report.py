#!/usr/bin/python3
"""Render bench/run.sh's raw measurements (TSV: kind, name, run, value) as Markdown.

    /usr/bin/python3 bench/report.py RAW.tsv > bench/results/latest.md

Run 0 of every measurement is the warm-up and is dropped; the rest give a median.
Standard library only (Debian's python3).
"""

import json
import statistics
import sys
from collections import defaultdict

# op label -> (display, baseline label)
SCANS = {
    "kms_encrypt": ("`kms_encrypt(text, key)`, key with blind index (AES-GCM + HMAC tag)", "base_text"),
    "kms_encrypt_noidx": ("`kms_encrypt(text, key)`, key without blind index (AES-GCM only)", "base_text"),
    "kms_decrypt": ("`kms_decrypt(enc_text)`", "base_enc"),
    "kms_blind_index": ("`kms_blind_index(text, key)`", "base_text"),
    "kms_blind_index_value": ("`kms_blind_index(enc_text)`", "base_enc"),
    "floor_value": ("`pgck_floor_value(text, key)` (bench/floor.c: reads its arguments, returns a new "
                    "value of a tagged value's size, nothing else)", "base_text"),
    "floor_seal": ("`pgck_floor_seal(text, key)` (bench/floor.c: the HMAC, a nonce and the GCM seal through "
                   "src/aead.c into a tagged value's size, nothing else)", "base_text"),
    "floor_hmac": ("`pgck_floor_hmac(text, key)` (bench/floor.c: the HMAC through src/aead.c, nothing else)",
                   "base_text"),
    "floor_seal_plain": ("`pgck_floor_seal_plain(text, key)` (bench/floor.c: a nonce and the GCM seal through "
                         "src/aead.c into an untagged value's size, nothing else)", "base_text"),
    "floor_open": ("`pgck_floor_open(bytea)` (bench/floor.c: the header's length, the GCM open through "
                   "src/aead.c into a new text, nothing else)", "base_floor_enc"),
    "pgc_encrypt": ("`encrypt(bytea, key, 'aes')`", "base_bytea"),
    "pgc_decrypt": ("`decrypt(bytea, key, 'aes')`", "base_pgc"),
    "pgc_hmac": ("`hmac(bytea, key, 'sha256')`", "base_bytea"),
    "sodium_encrypt": ("`crypto_aead_ietf_encrypt`", "base_text"),
    "sodium_decrypt": ("`crypto_aead_ietf_decrypt`", "base_sodium"),
    "sodium_hmac": ("`crypto_auth_hmacsha256`", "base_text"),
}
BASELINES = {
    "base_text": "`count(email)`, text column",
    "base_bytea": "`count(email_b)`, bytea column",
    "base_enc": "`count(email)`, enc_text column",
    "base_pgc": "`count(email)`, pgcrypto bytea column",
    "base_sodium": "`count(email)`, pgsodium bytea column",
    "base_floor_enc": "`count(email)`, bytea column of pgck_floor_seal's values",
}
# ours -> (pgcrypto counterpart, pgsodium counterpart, target ratio)
PAIRS = [
    ("kms_encrypt", "pgc_encrypt", "sodium_encrypt", 0.3),
    ("kms_encrypt_noidx", "pgc_encrypt", "sodium_encrypt", 0.3),
    ("kms_decrypt", "pgc_decrypt", "sodium_decrypt", 0.25),
    ("kms_blind_index", "pgc_hmac", "sodium_hmac", 0.15),
    ("kms_blind_index_value", None, None, None),
]
INFO_ONLY = {"kms_encrypt_noidx"}   # shown with its ratio, not one of the targets
TARGET_INSERT = 1.5
TARGET_LOOKUP = 0.9
TARGET_READ = 0.95     # issue 18: the lookup that returns the decrypted value


def kind_has_cpu(kind):
    return kind in ("scan", "insert", "lookup")


def load(path):
    runs = defaultdict(dict)    # (kind, name) -> {run: value}
    info = {}
    kms = {}                    # session -> (kms_calls, Decrypt, GenerateDataKey, errors)
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) == 5 and kind_has_cpu(parts[0]):
                # <kind> <name> <run> <wall ms> <cpu ms>: cpu filed under <kind>cpu
                if parts[4]:
                    runs[(parts[0] + "cpu", parts[1])][int(parts[2])] = parts[4]
                parts = parts[:4]
            if len(parts) < 4:
                continue
            kind, name, run, value = parts[0], parts[1], parts[2], "\t".join(parts[3:])
            if kind == "kms":
                # kms <session> <kms_calls> <Decrypt>,<GenerateDataKey>,<errors>
                kms[name] = tuple([int(run)] + [int(x) for x in value.split(",")])
            elif kind == "info":
                info[name] = value
            else:
                runs[(kind, name)][int(run)] = value
    return runs, info, kms


def med(runs, kind, name):
    """Median and (min, max) of runs >= 1, as floats; None when absent."""
    vals = [float(v) for r, v in runs.get((kind, name), {}).items() if r >= 1]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def paired(runs, kind, num, den):
    """Median over measured runs of num/den taken in the same round (back to back, order
    alternating), and the per-round ratios: robust to load that drifts over the run."""
    a, b = runs.get((kind, num), {}), runs.get((kind, den), {})
    ratios = [float(a[r]) / float(b[r]) for r in sorted(a) if r >= 1 and r in b and float(b[r])]
    if not ratios:
        return None, []
    return statistics.median(ratios), ratios


def one(runs, kind, name, default=None):
    v = runs.get((kind, name), {})
    return v.get(0, default)


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def met(ok):
    return "**met**" if ok else "**missed**"


MICRO_SIZE = 20         # bytes of plaintext the floor is read at (the emails are ~20)
# ours -> (what it cannot avoid, the crypto_micro sections it adds up)
FLOORS = {
    "kms_decrypt": ("GCM open", ("open",)),
    "kms_blind_index": ("HMAC-SHA-256", ("hmac",)),
    "kms_encrypt": ("GCM seal + HMAC-SHA-256 + nonce", ("seal", "hmac", "nonce")),
    "kms_encrypt_noidx": ("GCM seal + nonce", ("seal", "nonce")),
}


# ours -> the bench/floor.c function that runs its primitives as src/aead.c calls them, and
# nothing else, scanned in the same rounds: the floor measured inside PostgreSQL
INSITU = {
    "kms_encrypt": "floor_seal",
    "kms_encrypt_noidx": "floor_seal_plain",
    "kms_decrypt": "floor_open",
    "kms_blind_index": "floor_hmac",
}


def micro_floor(runs, section):
    """The cheapest variant of one primitive at MICRO_SIZE bytes, from bench/crypto_micro.c's
    lines (micro, SECTION/VARIANT/SIZE, run, ns): (median ns over the runs, variant), or None.
    The gcm128 reference (no provider, so no FIPS) is never a floor."""
    best = None
    for kind, name in runs:
        if kind != "micro":
            continue
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != section or parts[2] != str(MICRO_SIZE) or parts[1].startswith("gcm128"):
            continue
        m = med(runs, kind, name)
        if m is not None and (best is None or m[0] < best[0]):
            best = (m[0], parts[1])
    return best


def main():
    runs, info, kms = load(sys.argv[1])
    rows = int(info.get("rows", "0"))
    out = []
    w = out.append

    w("# pgcrypt_kms benchmark results\n")
    w(f"- date: {info.get('date', '?')}; total runtime of `bench/run.sh`: "
      f"{int(info.get('runtime_s', '0')) // 60} min {int(info.get('runtime_s', '0')) % 60} s")
    w(f"- machine: {info.get('nproc', '?')} CPUs (`nproc`), {info.get('cpu', '?')}, "
      f"{info.get('mem', '?')} RAM, Linux {info.get('kernel', '?')}; {info.get('load', '')}")
    w(f"- {info.get('pg_version', 'PostgreSQL ?')}")
    w(f"- {info.get('openssl', 'OpenSSL ?')}")
    w(f"- extension: {info.get('build', '?')}")
    w(f"- KMS: {info.get('kms', '?')}")
    w(f"- data: {rows:,} rows of ~{float(one(runs, 'size', 'avg_plaintext', 0)):.1f}-byte emails "
      f"(`us<n>@example.com`, random order); key `bench` with blind index `email`, 256-bit tags")
    w(f"- cluster: throwaway, `shared_preload_libraries` = the run's own copy of pgcrypt_kms.so "
      f"({'preloaded' if 'pgcrypt_kms' in info.get('preload', '') else 'NOT preloaded'}, as the README recommends), "
      f"shared_buffers {info.get('shared_buffers', '?')}, fsync off, "
      f"jit off, no parallel workers, autovacuum off (tables vacuumed before measuring), "
      f"database collation {info.get('collation', '?')}")
    w(f"- each figure: median of {info.get('runs', '?')} runs (scans) or "
      f"{info.get('heavy_runs', '?')} runs (inserts, pgbench) after a warm-up run that is dropped")
    for k in ("pgsodium",):
        if k in info:
            w(f"- pgsodium: {info[k]}")
    w("")

    # ------------------------------------------------------------ scans
    cpu = any(k == "scancpu" for k, _ in runs)
    skind = "scancpu" if cpu else "scan"

    def net(label):
        m = med(runs, skind, label)
        if m is None or label not in SCANS:
            return None
        b = med(runs, skind, SCANS[label][1])
        if b is None:
            return None
        return (m[0] - b[0]) * 1e6 / rows

    have_sodium = med(runs, "scan", "sodium_decrypt") is not None
    w("## Per-row cost: `SELECT count(f(x))`, ns per row net of `SELECT count(x)`\n")
    if cpu:
        w("ns/row from the backend's on-CPU time (`/proc/self/schedstat`), which other work on the machine "
          "does not inflate; wall-clock times are in the table below it.\n")
    else:
        w("ns/row from wall-clock time (this kernel has no `/proc/self/schedstat`).\n")
    def net_paired(ours, pgc):
        """Per round: ours net of its baseline over pgcrypto net of its baseline, all four
        scans of one round (run back to back): median, min and max over the rounds."""
        o, ob = runs.get((skind, ours), {}), runs.get((skind, SCANS[ours][1]), {})
        q, qb = runs.get((skind, pgc), {}), runs.get((skind, SCANS[pgc][1]), {})
        rs = []
        for r in sorted(o):
            if r >= 1 and r in ob and r in q and r in qb:
                d = float(q[r]) - float(qb[r])
                if d > 0:
                    rs.append((float(o[r]) - float(ob[r])) / d)
        if not rs:
            return None
        return statistics.median(rs), min(rs), max(rs)

    head = "| ours | ns/row | pgcrypto | ns/row | ours / pgcrypto | per round: median (min–max) | target | |"
    sep = "|---|---:|---|---:|---:|---:|---:|---|"
    if have_sodium:
        head = head[:-3] + " pgsodium | ns/row | ours / pgsodium |"
        sep += "---|---:|---:|"
    w(head)
    w(sep)
    targets = []
    prim = {sec: micro_floor(runs, sec) for sec in ("seal", "open", "hmac", "nonce")}

    def floor_ns(ours):
        secs = FLOORS.get(ours, (None, ()))[1]
        if not secs or any(prim[x] is None for x in secs):
            return None
        return sum(prim[x][0] for x in secs)

    def sql_floor(ours):
        """The floor as a SQL function: the primitives plus what this run's scan of
        pgck_floor_value (a function that only reads its arguments and returns a new value of
        a tagged value's size) costs per row; None when either is missing."""
        f, fn = floor_ns(ours), net("floor_value")
        if f is None or fn is None:
            return None
        return f + fn

    def insitu_floor(ours):
        """The floor measured inside PostgreSQL: this run's scan of the bench/floor.c function
        that runs ours' primitives and nothing else (INSITU); None when there is none."""
        return net(INSITU[ours]) if ours in INSITU else None

    def floor_note(ours, n_pgc):
        """For a missed target: the floor, alone and inside the cheapest SQL function."""
        f = floor_ns(ours)
        if f is None or not n_pgc:
            return ""
        note = f"; floor: the primitives alone {f / n_pgc:.2f}×"
        z = sql_floor(ours)
        if z is not None:
            note += f", inside the cheapest SQL function {z / n_pgc:.2f}×"
        m = insitu_floor(ours)
        if m is not None:
            note += f", measured in a function that runs only them {m / n_pgc:.2f}×"
        return note
    for ours, pgc, sod, target in PAIRS:
        n_ours = net(ours)
        if n_ours is None:
            continue
        row = f"| {SCANS[ours][0]} | {fmt(n_ours)} |"
        if pgc:
            n_pgc = net(pgc)
            ratio = n_ours / n_pgc if n_pgc else None
            ok = ratio is not None and ratio <= target
            pr = net_paired(ours, pgc)
            prs = f"{pr[0]:.2f}× ({pr[1]:.2f}–{pr[2]:.2f})" if pr else "n/a"
            if ours in INFO_ONLY:
                row += f" {SCANS[pgc][0]} | {fmt(n_pgc)} | {fmt(ratio, 2)}× | {prs} | (for comparison) | |"
            else:
                row += f" {SCANS[pgc][0]} | {fmt(n_pgc)} | {fmt(ratio, 2)}× | {prs} | ≤ {target}× | {met(ok)} |"
            if ours not in INFO_ONLY:
                targets.append((f"{SCANS[ours][0]} vs pgcrypto", f"≤ {target}×",
                            f"{fmt(ratio, 2)}×", ok,
                            "" if ok or ratio is None else
                            f"{(ratio / target - 1) * 100:.0f}% over: {n_ours - target * n_pgc:,.0f} ns/row "
                            f"to cut (to ≤ {target * n_pgc:,.0f}){floor_note(ours, n_pgc)}"))
        else:
            row += " (none: reads the tag in the value, no key) | | | | | |"
        if have_sodium:
            if sod:
                n_sod = net(sod)
                r2 = n_ours / n_sod if n_sod else None
                row += f" {SCANS[sod][0]} | {fmt(n_sod)} | {fmt(r2, 2)}× |"
            else:
                row += " | | |"
        w(row)
    w("")
    if any(prim.values()):
        w("### The floor: OpenSSL's primitives alone, in this run\n")
        used = ", ".join(f"{sec} `{prim[sec][1]}`" for sec in ("seal", "open", "hmac", "nonce") if prim[sec])
        w(f"`bench/crypto_micro.c`, run {info.get('runs', '?')} times on the idle cluster after the scans (each run "
          f"the minimum of 7 × 200,000 calls in thread CPU time; median over the runs), {MICRO_SIZE}-byte plaintext "
          f"(this run's emails average {float(one(runs, 'size', 'avg_plaintext', 0)):.1f} bytes), AAD of 52 bytes "
          f"(a header with a 256-bit tag), keyed contexts set up once, the cheapest path of each primitive "
          f"that stays on OpenSSL's provider interface (so a FIPS provider still serves it): {used}. "
          f"No SQL function can cost less than the primitives it must run.\n")
        fn = net("floor_value")
        if fn is not None:
            w(f"A SQL function adds its own cost to the primitives: {SCANS['floor_value'][0]}, scanned in "
              f"the same rounds as ours, costs **{fmt(fn)} ns** per row net of `count(email)`. The floor "
              f"*inside a SQL function* is the primitives plus that.\n")
        if any(net(x) is not None for x in INSITU.values()):
            w("Measured rather than added up: " + "; ".join(
                f"{SCANS[x][0]} costs **{fmt(net(x))} ns**" for x in INSITU.values() if net(x) is not None) +
              " per row net of `count(email)`, in the same rounds as ours. Each runs its primitives as "
              "the extension does (its own copy of `src/aead.c`) and nothing of the extension's per-row work, "
              "so it is the floor that function can reach inside PostgreSQL, with the primitives costing "
              "what they cost inside a scan.\n")
        w("| ours | what it cannot avoid | primitives ns | / pgcrypto | inside a function ns | / pgcrypto | "
          "measured in a function ns | / pgcrypto | ours ns | ours / pgcrypto | ours − floor inside a function | "
          "ours − measured floor |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for ours, pgc, _sod, _t in PAIRS:
            f, n_ours = floor_ns(ours), net(ours)
            if f is None or n_ours is None:
                continue
            n_pgc = net(pgc)
            z = sql_floor(ours)
            m = insitu_floor(ours)
            def ratio(x):
                return f"{x / n_pgc:.2f}×" if x is not None and n_pgc else "n/a"
            w(f"| {SCANS[ours][0]} | {FLOORS[ours][0]} | {fmt(f)} | {ratio(f)} | {fmt(z)} | {ratio(z)} | "
              f"{fmt(m)} | {ratio(m)} | {fmt(n_ours)} | {ratio(n_ours)} | "
              f"{fmt(n_ours - z if z is not None else None)} | {fmt(n_ours - m if m is not None else None)} |")
        w("")
        w("ours − the floor inside a function is our own per-row work: finding the key's cache entry "
          "and version, the nonce bound's count, the tag's normalization, writing the header.\n")
    w("Raw timings (ms for the whole scan of all rows; median and min–max over the measured runs):\n")
    w("| query | baseline | wall ms | wall min–max | CPU ms | CPU min–max | gross CPU ns/row |")
    w("|---|---|---:|---:|---:|---:|---:|")
    for label in list(BASELINES) + list(SCANS):
        m = med(runs, "scan", label)
        if m is None:
            continue
        c = med(runs, "scancpu", label)
        name = BASELINES.get(label) or SCANS[label][0]
        base = "" if label in BASELINES else SCANS[label][1]
        cc = (f"{fmt(c[0], 1)} | {fmt(c[1], 1)}–{fmt(c[2], 1)} | {fmt(c[0] * 1e6 / rows)}" if c
              else "n/a | | ")
        w(f"| {name} | {base} | {fmt(m[0], 1)} | {fmt(m[1], 1)}–{fmt(m[2], 1)} | {cc} |")
    w("")

    # ------------------------------------------------------------ bulk insert
    p, e = med(runs, "insert", "plain"), med(runs, "insert", "enc")
    if p and e:
        ratio, per_round = paired(runs, "insert", "enc", "plain")
        ok = ratio <= TARGET_INSERT
        w(f"## Bulk INSERT of {rows:,} rows (`INSERT … SELECT` from the source table)\n")
        w("| table | median s | min–max s | rows/s | table + index bytes/row |")
        w("|---|---:|---:|---:|---:|")
        sz = {k: float(one(runs, "size", k, 0)) for k in
              ("plain_table", "plain_index", "enc_table", "enc_index")}
        w(f"| plain: `email text` + B-tree on `email` | {p[0] / 1000:.2f} | "
          f"{p[1] / 1000:.2f}–{p[2] / 1000:.2f} | {fmt(rows / p[0] * 1000)} | "
          f"{fmt((sz['plain_table'] + sz['plain_index']) / rows)} "
          f"({fmt(sz['plain_table'] / rows)} + {fmt(sz['plain_index'] / rows)}) |")
        w(f"| encrypted: `kms_encrypt(email, 'bench')` (tag inside) + B-tree on `kms_blind_index(email)` | "
          f"{e[0] / 1000:.2f} | {e[1] / 1000:.2f}–{e[2] / 1000:.2f} | {fmt(rows / e[0] * 1000)} | "
          f"{fmt((sz['enc_table'] + sz['enc_index']) / rows)} "
          f"({fmt(sz['enc_table'] / rows)} + {fmt(sz['enc_index'] / rows)}) |")
        w("")
        w(f"Encrypted / plain, elapsed: **{ratio:.2f}×** (target ≤ {TARGET_INSERT}×: {met(ok)}): the median of "
          f"the per-run ratios ({', '.join(f'{x:.2f}' for x in per_round)}; each run inserts both tables back "
          f"to back, order alternating); the ratio of the medians above is {e[0] / p[0]:.2f}×.")
        cr, cper = paired(runs, "insertcpu", "enc", "plain")
        if cr is not None:
            pc, ec = med(runs, "insertcpu", "plain"), med(runs, "insertcpu", "enc")
            w(f"On-CPU time of the inserting backend: plain {pc[0] / 1000:.2f} s, encrypted {ec[0] / 1000:.2f} s, "
              f"ratio **{cr:.2f}×** (per run: {', '.join(f'{x:.2f}' for x in cper)}); the rest of the elapsed "
              f"time is WAL and buffer writes by other processes, I/O waits and waiting for a CPU.")
        w("")
        targets.append(("bulk insert, encrypted / plain", f"≤ {TARGET_INSERT}×", f"{ratio:.2f}×", ok,
                        "" if ok else f"{(ratio / TARGET_INSERT - 1) * 100:.0f}% over the target"))

    # ------------------------------------------------------------ pgbench
    lp, le = med(runs, "tpsc", "lookup_plain"), med(runs, "tpsc", "lookup_enc")
    rp, re_ = med(runs, "tpsc", "read_plain"), med(runs, "tpsc", "read_enc")
    if lp and le:
        ratio, per_round = paired(runs, "tpsc", "lookup_enc", "lookup_plain")
        ok = ratio >= TARGET_LOOKUP
        clients = info.get("pgbench_clients")
        w(f"## Point lookups: pgbench -M prepared, {clients} clients per side, "
          f"{info.get('pgbench_seconds')} s per run\n")
        w(f"Both sides run **at the same time** ({clients} + {clients} clients, two pgbench processes), "
          f"{info.get('heavy_runs')} times: other work on the machine then slows both alike, and the kernel "
          f"shares the CPUs between their backends, so the ratio of their tps is the ratio of their costs "
          f"per lookup. The solo column is one run of each side alone, for absolute numbers (it moves with "
          f"whatever else the machine does).\n")
        sp, se = med(runs, "tps", "lookup_plain"), med(runs, "tps", "lookup_enc")
        sr, sre = med(runs, "tps", "read_plain"), med(runs, "tps", "read_enc")
        w("| query | plain text B-tree, tps | blind index, tps | blind / plain | solo tps, plain / blind |")
        w("|---|---:|---:|---:|---:|")
        w(f"| `SELECT id … WHERE email = $1` vs `… WHERE kms_blind_index(email) = kms_blind_index($1, 'bench')` "
          f"| {fmt(lp[0])} ({fmt(lp[1])}–{fmt(lp[2])}) | {fmt(le[0])} ({fmt(le[1])}–{fmt(le[2])}) "
          f"| **{ratio:.2f}×** | {fmt(sp[0] if sp else None)} / {fmt(se[0] if se else None)} |")
        r2 = None
        if rp and re_:
            r2, r2_per = paired(runs, "tpsc", "read_enc", "read_plain")
            w(f"| the same, also returning the email (`email` vs `kms_decrypt(email)`) "
              f"| {fmt(rp[0])} ({fmt(rp[1])}–{fmt(rp[2])}) | {fmt(re_[0])} ({fmt(re_[1])}–{fmt(re_[2])}) "
              f"| {r2:.2f}× | {fmt(sr[0] if sr else None)} / {fmt(sre[0] if sre else None)} |")
        w("")
        w("tps: median (min–max) over the runs; ratio: median of the per-run ratios.\n")
        w(f"Blind-index lookups / plain B-tree lookups: **{ratio:.2f}×** "
          f"(target ≥ {TARGET_LOOKUP}×: {met(ok)}); per run: {', '.join(f'{x:.2f}' for x in per_round)}.\n")
        for s in ("lookup_plain", "lookup_enc"):
            if f"plan_{s}" in info or ("plan", s) in runs:
                w(f"- plan of `{s}`: `{info.get('plan_' + s) or one(runs, 'plan', s)}`")
        w("")
        lc_p, lc_e = med(runs, "lookupcpu", "plain"), med(runs, "lookupcpu", "enc")
        if lc_p and lc_e:
            n = int(info.get("lookups", "1"))
            lr, lper = paired(runs, "lookupcpu", "plain", "enc")
            w(f"Server side only: {n:,} lookups in one backend (plpgsql, cached plans), on-CPU time per "
              f"lookup: plain B-tree **{lc_p[0] * 1000 / n:.2f} µs**, blind index **{lc_e[0] * 1000 / n:.2f} µs** "
              f"(+{(lc_e[0] - lc_p[0]) * 1000 / n:.2f} µs: the probe's HMAC and key lookup, the longer index "
              f"entries); lookups per CPU-second, blind / plain: **{lr:.2f}×** "
              f"(per run: {', '.join(f'{x:.2f}' for x in lper)}). pgbench adds the same protocol and client "
              f"cost to both sides, which brings its ratio closer to 1.\n")
        rc_p, rc_e = med(runs, "lookupcpu", "plain_read"), med(runs, "lookupcpu", "enc_read")
        if rc_p and rc_e:
            n = int(info.get("lookups", "1"))
            rr, rper = paired(runs, "lookupcpu", "plain_read", "enc_read")
            w(f"The same returning the email (`email` vs `kms_decrypt(email)`), server side only: "
              f"plain **{rc_p[0] * 1000 / n:.2f} µs**, blind index + decrypt **{rc_e[0] * 1000 / n:.2f} µs** "
              f"per lookup (+{(rc_e[0] - rc_p[0]) * 1000 / n:.2f} µs); lookups per CPU-second, encrypted / plain: "
              f"**{rr:.2f}×** (per run: {', '.join(f'{x:.2f}' for x in rper)}).\n")
        targets.append(("point lookups, blind index / plain B-tree (pgbench)", f"≥ {TARGET_LOOKUP}×",
                        f"{ratio:.2f}×", ok,
                        "" if ok else f"{(TARGET_LOOKUP - ratio) / TARGET_LOOKUP * 100:.0f}% short"))
        if r2 is not None:
            targets.append(("point lookups returning the decrypted value / plain (pgbench)",
                            f"≥ {TARGET_READ}×", f"{r2:.2f}× (per run: {', '.join(f'{x:.2f}' for x in r2_per)})",
                            r2 >= TARGET_READ,
                            "" if r2 >= TARGET_READ else f"{(TARGET_READ - r2) / TARGET_READ * 100:.0f}% short"))

    # ------------------------------------------------------------ bytes
    w("## Bytes per stored value (`avg(pg_column_size(x))`)\n")
    w("| column | bytes |")
    w("|---|---:|")
    w(f"| plaintext (`octet_length`) | {float(one(runs, 'size', 'avg_plaintext', 0)):.1f} |")
    w(f"| `text` | {float(one(runs, 'size', 'col_text', 0)):.1f} |")
    w(f"| `enc_text` (1-byte varlena header + header 19 + tag length 1 + tag {float(one(runs, 'size', 'tag', 0)):.0f} "
      f"+ ciphertext + GCM tag 16) | {float(one(runs, 'size', 'col_enc', 0)):.1f} |")
    w(f"| pgcrypto `encrypt(…, 'aes')` bytea (AES-CBC, PKCS padding, no IV, no MAC) | "
      f"{float(one(runs, 'size', 'col_pgc', 0)):.1f} |")
    if one(runs, "size", "col_sodium") is not None:
        w(f"| pgsodium `crypto_aead_ietf_encrypt` bytea (nonce not stored) | "
          f"{float(one(runs, 'size', 'col_sodium', 0)):.1f} |")
    w("")

    # ------------------------------------------------------------ KMS calls
    versions = int(one(runs, "keyversions", "dek", 0)) + int(one(runs, "keyversions", "index", 0))
    w("## KMS calls\n")
    w(f"Key material in play: {one(runs, 'keyversions', 'dek', '?')} data key version(s) + "
      f"{one(runs, 'keyversions', 'index', '?')} blind-index key(s) = {versions}. "
      f"Target: at most one unwrap (KMS Decrypt) per key version per backend.\n")
    w("| session (one backend each) | KMS calls | Decrypt | GenerateDataKey | errors | Decrypt per key version | |")
    w("|---|---:|---:|---:|---:|---:|---|")
    session_names = {
        "setup": "key creation (`kms_create_key`)",
        "load": "loading: kms_encrypt of all rows",
        "scans": "scans: every round of every query",
        "insert": "bulk inserts",
        "checks": "lookup checks and plans",
        "lookups": "server-side lookups (cross-check)",
    }
    observed = 0
    all_ok = True
    for s, label in session_names.items():
        if s not in kms:
            continue
        calls, dec, gdk, err = kms[s]
        observed += calls
        per = dec / versions if versions else 0
        ok = per <= 1
        all_ok = all_ok and ok
        w(f"| {label} | {calls} | {dec} | {gdk} | {err} | {per:.1f} | {'ok' if ok else '**over**'} |")
    backends = int(info.get("pgbench_backends", "0"))
    emu = one(runs, "emulator", "stats")
    if emu:
        stats = json.loads(emu)
        calls = stats.get("calls", {})
        total = sum(int(v) for v in calls.values() if isinstance(v, (int, float)))
        by_op = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        rest = total - observed
        ok = rest <= backends * versions
        all_ok = all_ok and ok
        w(f"| pgbench backends ({backends} connections to the encrypted table) | {rest} | | | | "
          f"{rest / backends / versions if backends and versions else 0:.1f} | {'ok' if ok else '**over**'} |")
        w("")
        w(f"Whole run, as counted by the KMS emulator: **{total} KMS calls** ({by_op}).\n")
    else:
        w(f"| pgbench backends ({backends} connections to the encrypted table) | not observable | | | | | |")
        w("")
        w(f"Whole run: **{observed} KMS calls** in the sessions above. With the `local:` provider the "
          f"pgbench backends' counters die with them (kms_cache_stats() is per backend); by the "
          f"per-backend bound they made at most {backends * versions}. Run with the emulator to "
          f"have it count every call.\n")
    targets.append(("KMS calls per key version per backend", "≤ 1", "see table", all_ok, ""))

    # ------------------------------------------------------------ summary
    w("## Targets\n")
    w("| target | goal | measured | | by how much |")
    w("|---|---|---|---|---|")
    for name, goal, got, ok, miss in targets:
        w(f"| {name} | {goal} | {got} | {met(ok)} | {miss} |")
    w("")
    print("\n".join(out))



if __name__ == "__main__":
    main()
