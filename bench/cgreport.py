#!/usr/bin/python3
"""Summarise bench/profile.sh's callgrind dumps as Markdown (standard library only).

    /usr/bin/python3 bench/cgreport.py ROWS HEADER.md LABEL=FILE [LABEL=FILE ...]

Each FILE is the callgrind dump of one `SELECT count(f(x))` scan over ROWS rows (collection on
inside standard_ExecutorRun only, so parsing, planning and the warm-up are not in it).  The
callgrind format (name compression, calls= lines carrying inclusive costs) is parsed here, so
the report can show, per SQL function, where its instructions go: a call tree from the C entry
point with instructions per row and their share of the scan, and the top functions by self cost.
"""

import os
import re
import sys
from collections import defaultdict

# label -> (title, C entry point of the SQL function, baseline label)
QUERIES = {
    "kms_decrypt": ("`SELECT count(kms_decrypt(email)) FROM bench_enc`", "pgck_kms_decrypt", "base_enc"),
    "kms_encrypt": ("`SELECT count(kms_encrypt(email, 'bench')) FROM bench_plain`", "pgck_kms_encrypt",
                    "base_text"),
    "kms_encrypt_noidx": ("`SELECT count(kms_encrypt(email, 'bench_noidx')) FROM bench_plain` (key without blind index)",
                          "pgck_kms_encrypt", "base_text"),
    "kms_blind_index": ("`SELECT count(kms_blind_index(email, 'bench')) FROM bench_plain`",
                        "pgck_kms_blind_index_text", "base_text"),
    "pgc_decrypt": ("`SELECT count(decrypt(email, key, 'aes')) FROM bench_pgc` (pgcrypto)", "pg_decrypt", "base_pgc"),
    "pgc_encrypt": ("`SELECT count(encrypt(email_b, key, 'aes')) FROM bench_plain` (pgcrypto)", "pg_encrypt",
                    "base_bytea"),
    "pgc_hmac": ("`SELECT count(hmac(email_b, key, 'sha256')) FROM bench_plain` (pgcrypto)", "pg_hmac",
                 "base_bytea"),
}
PAIRS = [("kms_decrypt", "pgc_decrypt"), ("kms_encrypt", "pgc_encrypt"), ("kms_encrypt_noidx", "pgc_encrypt"),
         ("kms_blind_index", "pgc_hmac")]
ORDER = ["kms_decrypt", "kms_encrypt", "kms_encrypt_noidx", "kms_blind_index", "pgc_decrypt", "pgc_encrypt",
         "pgc_hmac"]


def perf_rows(path):
    """(percent, object, kernel?, symbol) rows of a `perf report --stdio --sort dso,sym` file."""
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"^\s*([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.+?)\s*$", line)
                if m:
                    rows.append((float(m.group(1)), m.group(2), m.group(3) == "k", m.group(4)))
    except OSError:
        pass
    return rows


def unnamed_function(profiles, obj, addr):
    """Name a stripped sample address by the unnamed function (entry address) that callgrind saw
    in the same object just below it, and that function's main caller."""
    try:
        a = int(addr, 16)
    except ValueError:
        return addr
    best, best_p = None, None
    for p in profiles.values():
        for fn, o in p.obj.items():
            if o != obj or not fn.startswith("0x"):
                continue
            m = re.match(r"0x([0-9a-fA-F]+)", fn)
            if not m:
                continue
            start = int(m.group(1), 16)
            if start <= a < start + 8192 and (best is None or start > best):
                best, best_p = start, p
    if best is None:
        return "unnamed code"
    fn = "0x%016x [%s]" % (best, obj)
    callers = best_p.callers(fn)
    via = (", called from " + callers[0][0].split(" [")[0]) if callers else ""
    return "unnamed function at 0x%x%s" % (best, via)


def perf_dso(path):
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"^\s*([\d.]+)%\s+(\S+)\s*$", line)
                if m:
                    out.append((float(m.group(1)), m.group(2)))
    except OSError:
        pass
    return out


def entry_point(p, name):
    """The C symbol of a SQL function as this build names it: pgck_kms_x, or an older kms_x."""
    for cand in (name, name[len("pgck_"):] if name.startswith("pgck_") else "pgck_" + name):
        if p.inclusive(cand) > 0:
            return cand
    return name


class Profile:
    def __init__(self, path):
        self.self_cost = defaultdict(int)        # fn -> Ir
        self.calls = defaultdict(int)            # (caller, callee) -> inclusive Ir
        self.ncalls = defaultdict(int)           # (caller, callee) -> count
        self.obj = {}                            # fn -> object basename
        self.total = 0
        self._parse(path)

    def _parse(self, path):
        names = {"ob": {}, "fl": {}, "fn": {}}
        space = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl",
                 "fn": "fn", "cfn": "fn"}

        def resolve(kind, rest):
            m = re.match(r"\((\d+)\)\s*(.*)$", rest)
            if not m:
                return rest
            ident, name = m.groups()
            if name:
                names[space[kind]][ident] = name
            return names[space[kind]].get(ident, "?" + ident)

        ob = cob = None
        fn = None
        pending_call = None
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                c = line[0]
                if c.isdigit() or c in "+-*":
                    parts = line.split()
                    ir = int(parts[1]) if len(parts) > 1 else 0
                    if pending_call is not None:
                        callee, count = pending_call
                        self.calls[(fn, callee)] += ir
                        self.ncalls[(fn, callee)] += count
                        pending_call = None
                    elif fn is not None:
                        self.self_cost[fn] += ir
                        self.total += ir
                    continue
                key, _, rest = line.partition("=")
                if key == "ob":
                    ob = resolve("ob", rest)
                elif key == "cob":
                    cob = resolve("cob", rest)
                elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                    resolve(key, rest)
                elif key == "fn":
                    fn = self._key(resolve("fn", rest), ob)
                    self.obj.setdefault(fn, os.path.basename(ob or "?"))
                elif key == "cfn":
                    cfn_name = resolve("cfn", rest)
                    callee_ob = cob if cob is not None else ob
                    pending_callee = self._key(cfn_name, callee_ob)
                    self.obj.setdefault(pending_callee, os.path.basename(callee_ob or "?"))
                    self._callee = pending_callee
                elif key == "calls":
                    pending_call = (self._callee, int(rest.split()[0]))
                    cob = None

    @staticmethod
    def _key(name, ob):
        # unnamed code (stripped libraries) is named by address: keep its object with it
        if name.startswith("0x"):
            return "%s [%s]" % (name, os.path.basename(ob or "?"))
        return name

    def inclusive(self, fn):
        return self.self_cost.get(fn, 0) + sum(v for (a, b), v in self.calls.items() if a == fn and b != fn)

    def children(self, fn):
        return sorted(((b, v, self.ncalls[(a, b)]) for (a, b), v in self.calls.items() if a == fn and b != fn),
                      key=lambda t: -t[1])

    def callers(self, fn, hops=2):
        """Callers by inclusive cost of their calls; unnamed stubs (PLT entries, object '???')
        are looked through to their own callers."""
        found = defaultdict(int)
        for (a, b), v in self.calls.items():
            if b != fn or a == fn:
                continue
            if hops > 0 and a.startswith("0x") and self.obj.get(a) in ("???", None):
                up = self.callers(a, hops - 1)
                tot = sum(x for _, x in up) or 1
                for c, x in up:
                    found[c] += v * x / tot
            else:
                found[a] += v
        return sorted(found.items(), key=lambda t: -t[1])


def label_of(p, fn):
    if fn.startswith("0x"):
        callers = p.callers(fn)
        via = (", called from %s" % callers[0][0]) if callers else ""
        return "%s (unnamed: library stripped%s)" % (fn, via)
    return "%s [%s]" % (fn, p.obj.get(fn, "?"))


def tree(p, root, rows, out, depth=0, scale=1.0, max_depth=5, min_share=0.015, seen=None):
    """Callees of root, inclusive, recursively.  Callgrind's call graph is not context
    sensitive: a function called from several places has one set of callee edges, so below
    the root each edge is scaled by (cost of the call we came through / callee's inclusive)."""
    seen = set() if seen is None else seen
    for callee, cost, n in p.children(root):
        cost *= scale
        if cost < min_share * p.total or callee in seen:
            continue
        out.append("%s- %s: %s Ir/row, %.1f%% of the scan (%s calls/row)" % (
            "  " * depth, label_of(p, callee), f"{cost / rows:,.0f}", 100.0 * cost / p.total,
            f"{n * scale / rows:.2g}"))
        if depth + 1 < max_depth:
            incl = p.inclusive(callee)
            tree(p, callee, rows, out, depth + 1, cost / incl if incl else 0.0, max_depth, min_share,
                 seen | {callee})
    selfc = p.self_cost.get(root, 0) * scale
    if depth == 0 or selfc >= min_share * p.total:
        out.append("%s- (self) %s: %s Ir/row, %.1f%% of the scan" % (
            "  " * depth, root.split(" [")[0], f"{selfc / rows:,.0f}", 100.0 * selfc / p.total))


def main():
    rows = int(sys.argv[1])
    header = open(sys.argv[2], encoding="utf-8").read()
    profiles = {}
    perf = {}
    for arg in sys.argv[3:]:
        label, _, path = arg.partition("=")
        if label.startswith("perf:"):
            perf[label[5:]] = path
        else:
            profiles[label] = Profile(path)

    out = [header.rstrip("\n"), ""]
    w = out.append

    def per_row(label):
        return profiles[label].total / rows if label in profiles else None

    w("## Instructions per row (callgrind Ir inside the executor, scan of %s rows)\n" % f"{rows:,}")
    w("| query | Ir/row | baseline `count(x)` Ir/row | net Ir/row | in the SQL function itself (inclusive) |")
    w("|---|---:|---:|---:|---:|")
    for label in ORDER:
        if label not in profiles:
            continue
        title, entry, base = QUERIES[label]
        p = profiles[label]
        entry = entry_point(p, entry)
        b = per_row(base) or 0
        w("| %s | %s | %s | %s | %s (%.0f%%) |" % (
            title, f"{p.total / rows:,.0f}", f"{b:,.0f}", f"{p.total / rows - b:,.0f}",
            f"{p.inclusive(entry) / rows:,.0f}", 100.0 * p.inclusive(entry) / p.total))
    w("")
    w("Net instruction ratios (ours / pgcrypto): " + "; ".join(
        "%s %.2f×" % (a, (per_row(a) - per_row(QUERIES[a][2])) / (per_row(b) - per_row(QUERIES[b][2])))
        for a, b in PAIRS if a in profiles and b in profiles and QUERIES[a][2] in profiles
        and QUERIES[b][2] in profiles) + ". Instructions are not time (AES-NI and PCLMULQDQ are few, slow-ish"
      " instructions; cache misses are free here): the ns/row in results/latest.md are the measure, this is"
      " where the work is.\n")

    if perf:
        w("## Where the time goes: perf (cpu-clock samples of one backend, user + kernel)\n")
        w("The same scans on the live cluster, repeated in one backend; shares of all its samples. "
          "The tables are in shared buffers, so kernel time is system calls (`do_syscall_64`, "
          "`__x64_sys_*`, `__task_pid_nr_ns` = getpid) plus, on a busy machine, interrupts and "
          "preemption (`irqentry_exit_to_user_mode`, `finish_task_switch`), which are not the scan's "
          "doing.\n")
        for label in ORDER:
            if label not in perf:
                continue
            dso = perf_dso(perf[label].replace(".txt", ".dso.txt"))
            w("### %s\n" % QUERIES[label][0])
            if dso:
                w("By object: " + ", ".join("%s %.1f%%" % (o, pct) for pct, o in dso if pct >= 0.5) + "\n")
            w("| share | object | function |")
            w("|---:|---|---|")
            # perf names stripped code by sample address: fold those into the function callgrind
            # found them in (its entry address, and who calls it)
            merged = defaultdict(float)
            for pct, obj, kernel, sym in perf_rows(perf[label]):
                if sym.startswith("0x"):
                    sym = unnamed_function(profiles, obj, sym)
                merged[(obj, sym + (" (kernel)" if kernel else ""))] += pct
            for (obj, sym), pct in sorted(merged.items(), key=lambda t: -t[1])[:14]:
                w("| %.1f%% | %s | %s |" % (pct, obj, sym))
            w("")

    for label in ORDER:
        if label not in profiles:
            continue
        title, entry, _ = QUERIES[label]
        p = profiles[label]
        entry = entry_point(p, entry)
        w("## %s\n" % title)
        w("Call tree from `%s` (inclusive instructions; children under 1.5%% of the scan are left out):\n" % entry)
        lines = ["- %s: %s Ir/row, %.1f%% of the scan" % (
            label_of(p, entry), f"{p.inclusive(entry) / rows:,.0f}", 100.0 * p.inclusive(entry) / p.total)]
        sub = []
        tree(p, entry, rows, sub, depth=0)
        lines += ["  " + s for s in sub]
        w("\n".join(lines))
        w("")
        w("Top functions by self cost (instructions executed in the function itself):\n")
        w("| function | object | Ir/row | share of the scan | called from (inclusive Ir/row of the call) |")
        w("|---|---|---:|---:|---|")
        for fn, cost in sorted(p.self_cost.items(), key=lambda t: -t[1])[:15]:
            name = fn.split(" [")[0]
            if name.startswith("0x"):
                name += " (unnamed: stripped)"
            callers = ", ".join("%s %s" % (a.split(" [")[0], f"{v / rows:,.0f}") for a, v in p.callers(fn)[:3])
            w("| %s | %s | %s | %.1f%% | %s |" % (name, p.obj.get(fn, "?"), f"{cost / rows:,.0f}",
                                                 100.0 * cost / p.total, callers))
        byobj = defaultdict(int)
        for fn, cost in p.self_cost.items():
            byobj[p.obj.get(fn, "?")] += cost
        w("")
        w("By object: " + ", ".join("%s %.1f%%" % (o, 100.0 * c / p.total)
                                    for o, c in sorted(byobj.items(), key=lambda t: -t[1]) if c >= 0.005 * p.total))
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
