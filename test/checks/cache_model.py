#!/usr/bin/python3
"""Cache coherence as a model test: three sessions against a brand-new backend.

Run by test/checks/cache_model.sh (as the postgres OS user, with PGHOST and
PGPORT of the suite's cluster and PGCK_MODEL_DB naming a database that has
the extension).  For each fixed seed, three long-lived sessions A, B and C
perform a random sequence of statements on keys of the development-only
`local:` provider:

  key administration  kms_create_key (with and without a blind index),
                      kms_rotate_key, kms_set_key_state (retired /
                      decrypt-only), kms_destroy_key, kms_rewrap_key,
                      kms_rotate_index_key, kms_finish_index_rotation
  questions           kms_encrypt, kms_decrypt (of any value produced
                      earlier, including values encrypted in transactions
                      or savepoints that were rolled back), kms_blind_index
                      and kms_blind_index_all of a plaintext
  transaction control BEGIN (READ COMMITTED or REPEATABLE READ), SAVEPOINT,
                      RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT, ROLLBACK,
                      COMMIT; outside a transaction block every statement
                      commits on its own (autocommit)

The oracle.  After every question a session answers, the same question is
asked of a backend that has never run a statement (a connection opened by a
helper thread and used for one step only, so its key cache is empty and it
reads the keyring as committed).  The two answers must be equal: the same
plaintext, or the same SQLSTATE, or, for kms_encrypt, a value under the same
key version id carrying the same blind-index tag as the new backend's own
encryption, which the new backend decrypts back to the plaintext.
A decryption that succeeds must also return the plaintext that was encrypted.

Why this comparison is sound.  A new backend cannot see a session's
uncommitted keyring changes, so a session's answer about key K is compared
only when the session's open transaction has not changed (or tried to
change) K: such an answer depends only on the committed keyring, exactly as
the new backend's does.  Keyring reads use the latest snapshot (README,
"Key hierarchy"), so this holds inside REPEATABLE READ and for commits that
other sessions made after this transaction began.  Other sessions' open
transactions are invisible to both sides.  A question about a value counts
as about the key the value was encrypted under.  Per session the test keeps
the set of keys its open transaction touched; SAVEPOINT saves that set,
ROLLBACK TO SAVEPOINT restores it, COMMIT and ROLLBACK empty it.  So after a
ROLLBACK (or ROLLBACK TO SAVEPOINT) the session's next answers about the
keys it touched are compared at once, and must show nothing of the aborted
work; after a COMMIT every session's answers must show the change at its
next statement.  Statements that change the keyring or control
transactions have no side-effect-free twin to ask a new backend; they are
checked by probes: right after a transaction that touched keys ends (COMMIT,
ROLLBACK, ROLLBACK TO SAVEPOINT, an autocommit administration statement that
succeeded or failed), the session itself and, after a commit, the other
sessions are asked to encrypt, decrypt the latest value, and blind-index
under each touched key, and each answer is compared as above.

A session whose transaction failed issues only ROLLBACK TO SAVEPOINT or
ROLLBACK next.  Administration statements take row locks on a key's rows;
a session never administers a key that another session's open transaction
has administered (the driver is single-threaded: a lock wait would never
end; lock_timeout turns a mistake in this rule into a reported failure).

Output: "ok - seed N: ..." or "not ok - seed N: ..." with the first
divergence (step, session, statement, what the new backend answered, what the
session answered) and the statements before it; exit 1 on any divergence.
Only the test's own dummy strings appear as plaintext.
"""
import base64
import os
import queue
import random
import sys
import threading
import time
from collections import deque

import psycopg

SEEDS = [int(s) for s in os.environ.get('PGCK_MODEL_SEEDS', '11 23 37 41 53').split()]
STEPS = int(os.environ.get('PGCK_MODEL_STEPS', '1500'))
DB = os.environ.get('PGCK_MODEL_DB', 'pgck_cache_model')
CONNINFO = dict(host=os.environ['PGHOST'], port=os.environ['PGPORT'], dbname=DB, user='postgres')

PLAINTEXTS = ['alice@example.com', '  Alice@Example.COM ', 'bob+tag@example.org',
              '+1 (555) 010-2030', '5550102030', 'model test value', '', 'Zo\u00eb']
CONTEXTS = [None, None, 'ctx-a', 'ctx-b']
TRANSFORMS = ['exact', 'lower', 'email', 'digits']
PROVIDERS = ['local:model-r0', 'local:model-r1', 'local:model-r2']


class HarnessError(Exception):
    """The test itself could not go on (lost connection, lock wait)."""


def show(v):
    """A parameter as it would appear in SQL; ciphertexts abbreviated."""
    if v is None:
        return 'NULL'
    if isinstance(v, int):
        return str(v)
    if v.startswith('pgck:'):
        return "'%s…'(version id %s)" % (v[:14], version_id(v))
    return "'" + v.replace("'", "''") + "'"


def version_id(value):
    """The key version id a value names (README, value format), or None."""
    try:
        raw = base64.b64decode(value[5:])
        return int.from_bytes(raw[3:7], 'big')
    except Exception:
        return None


def summary(ans):
    kind, v = ans
    if kind == 'err':
        return 'error SQLSTATE ' + v
    if isinstance(v, str) and v.startswith('pgck:'):
        return 'a value under version id %s' % version_id(v)
    if isinstance(v, bytes):
        return 'tag %s' % v.hex()[:16]
    if isinstance(v, list):
        return 'tags [%s]' % ', '.join((t.hex()[:16] if t is not None else 'NULL') for t in v)
    return 'ok ' + show(v) if v is not None else 'ok'


def run(conn, query, params=()):
    """('ok', first column of the first row) or ('err', SQLSTATE)."""
    try:
        cur = conn.execute(query, params)
        row = cur.fetchone() if cur.description else None
        return ('ok', row[0] if row else None)
    except psycopg.Error as e:
        if e.sqlstate is None or e.sqlstate.startswith('08') or e.sqlstate.startswith('57P'):
            raise HarnessError('connection lost or server restarted: %s' % e)
        if e.sqlstate == '55P03':
            raise HarnessError('a statement waited for a lock another test session holds '
                               '(the test\'s lock model is incomplete): %s' % query)
        return ('err', e.sqlstate)


class FreshBackends:
    """Connections opened ahead by a thread; each is used for one question."""

    def __init__(self):
        self.q = queue.Queue(maxsize=3)
        self.stop = False
        self.t = threading.Thread(target=self._fill, daemon=True)
        self.t.start()

    def _fill(self):
        while not self.stop:
            try:
                c = psycopg.connect(**CONNINFO, autocommit=True)
            except Exception as e:  # reported by get()
                c = e
            while not self.stop:
                try:
                    self.q.put(c, timeout=0.5)
                    break
                except queue.Full:
                    pass

    def get(self):
        c = self.q.get(timeout=60)
        if isinstance(c, Exception):
            raise HarnessError('could not open a new backend: %s' % c)
        return c

    def close(self):
        self.stop = True
        while True:
            try:
                c = self.q.get_nowait()
            except queue.Empty:
                break
            if not isinstance(c, Exception):
                c.close()
        self.t.join(timeout=5)


class Session:
    def __init__(self, label):
        self.label = label
        self.conn = psycopg.connect(**CONNINFO, autocommit=True)
        self.conn.execute("SET lock_timeout = '10s'")
        self.in_txn = False
        self.aborted = False
        self.touched = set()   # keys the open transaction changed or tried to change
        self.locked = set()    # keys whose rows it may hold locks on (until it ends)
        self.savepoints = []   # [(name, touched at the savepoint)]
        self.sp_counter = 0
        self.created = set()   # keys created / destroyed in the open transaction
        self.destroyed = set()  # (they steer the choice of keys, nothing else)

    def end_txn(self):
        self.in_txn = False
        self.aborted = False
        self.touched = set()
        self.locked = set()
        self.savepoints = []
        self.created = set()
        self.destroyed = set()


class Divergence(Exception):
    pass


class Model:
    def __init__(self, seed, fresh):
        self.seed = seed
        self.rng = random.Random(seed)
        self.fresh = fresh
        self.sessions = [Session(c) for c in 'ABC']
        self.keys = {}          # name -> {'bidx': transform or None, 'maxv': int}
        self.live = set()       # keys probably committed and not destroyed (steers choices only)
        self.recent = []        # key names, most recently used last
        self.n_keys = 0
        self.pool = []          # {'value','key','plain','ctx'}
        self.probes = deque()   # (session, kind, key)
        self.history = deque(maxlen=15)
        self.step = 0
        self.compared = 0
        self.skipped = 0
        self.stats = {}

    def close(self):
        for s in self.sessions:
            try:
                s.conn.close()
            except Exception:
                pass

    # ------------------------------------------------------------ choices

    def new_name(self):
        self.n_keys += 1
        return 'm%d_k%d' % (self.seed, self.n_keys)

    def use(self, name):
        if name in self.recent:
            self.recent.remove(name)
        self.recent.append(name)

    def question_key(self):
        r = self.rng.random()
        if r < 0.04 or not self.keys:
            return 'm%d_nokey' % self.seed
        if r < 0.75 and self.recent:
            return self.rng.choice(self.recent[-5:])
        if r < 0.9 and self.live:
            return self.rng.choice(sorted(self.live))
        return self.rng.choice(sorted(self.keys))

    def admin_key(self, s):
        others = set()
        for o in self.sessions:
            if o is not s:
                others |= o.locked
        names = [k for k in self.keys if k not in others]
        if not names:
            return None
        live = [k for k in names if k in self.live or k in s.created]
        recent = [k for k in self.recent[-6:] if k in live]
        r = self.rng.random()
        if recent and r < 0.6:
            return self.rng.choice(recent)
        if live and r < 0.9:
            return self.rng.choice(sorted(live))
        return self.rng.choice(sorted(names))

    # ------------------------------------------------------------ statements

    def record(self, s, text, ans):
        self.history.append('step %d %s: %s -> %s' % (self.step, s.label, text, summary(ans)))

    def execute(self, s, query, params, text):
        self.step += 1
        ans = run(s.conn, query, params)
        self.record(s, text, ans)
        if ans[0] == 'err' and s.in_txn:
            s.aborted = True
        return ans

    def check_txn_status(self, s):
        """The driver's idea of the session's transaction must be the server's."""
        status = s.conn.info.transaction_status
        want = {(False, False): psycopg.pq.TransactionStatus.IDLE,
                (True, False): psycopg.pq.TransactionStatus.INTRANS,
                (True, True): psycopg.pq.TransactionStatus.INERROR}.get((s.in_txn, s.aborted))
        if status != want:
            raise HarnessError('after step %d session %s is %s, the test thought %s'
                               % (self.step, s.label, status.name, want.name if want else 'aborted outside a block'))

    def diverge(self, s, text, expected, got):
        raise Divergence('step %d, session %s: %s\n#   a new backend: %s\n#   session %s: %s'
                         % (self.step, s.label, text, expected, s.label, got))

    def comparable(self, s, key):
        ok = key not in s.touched
        if ok:
            self.compared += 1
        else:
            self.skipped += 1
        return ok

    def q_encrypt(self, s, key, plain=None, ctx=None):
        if plain is None:
            plain = self.rng.choice(PLAINTEXTS)
            ctx = self.rng.choice(CONTEXTS)
        if ctx is None:
            query, params = 'SELECT kms_encrypt(%s::text, %s::text)', (plain, key)
        else:
            query, params = 'SELECT kms_encrypt(%s::text, %s::text, %s::text)', (plain, key, ctx)
        text = 'SELECT kms_encrypt(%s)' % ', '.join(show(p) for p in params)
        got = self.execute(s, query, params, text)
        if got[0] == 'ok':
            self.pool.append({'value': got[1], 'key': key, 'plain': plain, 'ctx': ctx})
        if not self.comparable(s, key):
            return
        c = self.fresh.get()
        try:
            exp = run(c, query, params)
            if exp[0] != got[0] or (exp[0] == 'err' and exp[1] != got[1]):
                self.diverge(s, text, summary(exp), summary(got))
            if exp[0] == 'ok':
                chk = c.execute('SELECT kms_version_id(%s::enc_text), kms_blind_index(%s::enc_text),'
                                ' kms_version_id(%s::enc_text), kms_blind_index(%s::enc_text)',
                                (exp[1], exp[1], got[1], got[1])).fetchone()
                if chk[0] != chk[2]:
                    self.diverge(s, text, 'encrypts under version id %s' % chk[0],
                                 'encrypted under version id %s' % chk[2])
                if chk[1] != chk[3]:
                    self.diverge(s, text, 'blind-index tag %s' % (chk[1].hex() if chk[1] else None),
                                 'blind-index tag %s' % (chk[3].hex() if chk[3] else None))
                dq = 'SELECT kms_decrypt(%s::enc_text)' if ctx is None else 'SELECT kms_decrypt(%s::enc_text, %s::text)'
                back = run(c, dq, (got[1],) if ctx is None else (got[1], ctx))
                if back != ('ok', plain):
                    self.diverge(s, text, 'decrypts the session\'s value: %s' % summary(back),
                                 'wrote a value for %s' % show(plain))
        finally:
            c.close()

    def q_decrypt(self, s, item=None):
        if item is None:
            if not self.pool:
                return self.q_encrypt(s, self.question_key())
            if self.rng.random() < 0.6:
                item = self.rng.choice(self.pool[-15:])
            else:
                item = self.rng.choice(self.pool)
        ctx = item['ctx']
        if self.rng.random() < 0.1:
            ctx = self.rng.choice([c for c in CONTEXTS if c != ctx])
        if ctx is None:
            query, params = 'SELECT kms_decrypt(%s::enc_text)', (item['value'],)
        else:
            query, params = 'SELECT kms_decrypt(%s::enc_text, %s::text)', (item['value'], ctx)
        text = 'SELECT kms_decrypt(%s) -- a value of key %s' % (', '.join(show(p) for p in params), item['key'])
        got = self.execute(s, query, params, text)
        if got[0] == 'ok' and (got[1] != item['plain'] or ctx != item['ctx']):
            self.diverge(s, text, 'the plaintext %s (or error 22K01 under another context)' % show(item['plain']),
                         summary(got))
        if not self.comparable(s, item['key']):
            return
        c = self.fresh.get()
        try:
            exp = run(c, query, params)
        finally:
            c.close()
        if exp != got:
            self.diverge(s, text, summary(exp), summary(got))

    def q_blind_index(self, s, key, plain=None):
        if plain is None:
            plain = self.rng.choice(PLAINTEXTS)
        fn = 'kms_blind_index' if self.rng.random() < 0.7 else 'kms_blind_index_all'
        query = 'SELECT %s(%%s::text, %%s::text)' % fn
        text = 'SELECT %s(%s, %s)' % (fn, show(plain), show(key))
        got = self.execute(s, query, (plain, key), text)
        if not self.comparable(s, key):
            return
        c = self.fresh.get()
        try:
            exp = run(c, query, (plain, key))
        finally:
            c.close()
        if exp != got:
            self.diverge(s, text, summary(exp), summary(got))

    # ------------------------------------------------------------ administration

    def admin(self, s, name=None):
        r = self.rng.random()
        if name is None:
            name = self.admin_key(s)
        elif r < 0.2:
            r = 0.2 + 0.8 * self.rng.random()   # a follow-up: not a create
        if r < 0.2 or name is None:
            name = self.new_name()
            if self.rng.random() < 0.05 and self.keys:
                # an existing name: 42710 if committed, allowed again if rolled back
                cand = self.admin_key(s)
                name = cand if cand is not None else name
            t = self.rng.choice(TRANSFORMS) if self.rng.random() < 0.6 else 'none'
            bits = self.rng.choice([256, 256, 128, 16])
            prov = self.rng.choice(PROVIDERS)
            ans = self.admin_stmt(s, 'create', name,
                                  'SELECT kms_create_key(%s::text, %s::text, blind_index => %s::text, index_bits => %s)',
                                  (name, prov, t, bits))
            if ans[0] == 'ok':
                if name not in self.keys:
                    self.keys[name] = {'bidx': None if t == 'none' else t, 'maxv': 1}
                s.created.add(name)
                s.destroyed.discard(name)
            self.end_autocommit(s, name, ans)
            return
        info = self.keys[name]
        if r < 0.42:
            ans = self.admin_stmt(s, 'rotate', name, 'SELECT kms_rotate_key(%s::text)', (name,))
            if ans[0] == 'ok' and isinstance(ans[1], int):
                info['maxv'] = max(info['maxv'], ans[1])
        elif r < 0.58:
            if self.rng.random() < 0.8:     # mostly a version that is not the active one
                version = self.rng.randint(1, max(1, info['maxv'] - 1))
            else:
                version = self.rng.randint(1, info['maxv'] + 1)
            state = 'retired' if self.rng.random() < 0.6 else 'decrypt-only'
            ans = self.admin_stmt(s, 'set_state', name, 'SELECT kms_set_key_state(%s::text, %s, %s::text)',
                            (name, version, state))
        elif r < 0.63:
            ans = self.admin_stmt(s, 'destroy', name, 'SELECT kms_destroy_key(%s::text, %s::text)', (name, name))
            if ans[0] == 'ok':
                s.destroyed.add(name)
                s.created.discard(name)
        elif r < 0.72:
            ans = self.admin_stmt(s, 'rewrap', name, 'SELECT kms_rewrap_key(%s::text, %s::text)',
                            (name, self.rng.choice(PROVIDERS)))
        elif self.rng.random() < (0.8 if info.get('irot') else 0.15):
            # forced: the model is about which index keys each session probes with, and its
            # tables keep values on older versions, which the unforced call would refuse over
            ans = self.admin_stmt(s, 'finish_index', name, 'SELECT kms_finish_index_rotation(%s::text, true)', (name,))
            if ans[0] == 'ok':
                info['irot'] = False
        else:
            ans = self.admin_stmt(s, 'rotate_index', name, 'SELECT kms_rotate_index_key(%s::text)', (name,))
            if ans[0] == 'ok':
                info['irot'] = True
        self.end_autocommit(s, name, ans)

    def admin_stmt(self, s, kind, name, query, params):
        self.stats[kind] = self.stats.get(kind, 0) + 1
        self.use(name)
        text = query.replace('::text', '').replace('%s', '{}').format(*(show(p) for p in params))
        s.touched.add(name)
        s.locked.add(name)
        ans = self.execute(s, query, params, text)
        if ans[0] == 'ok':
            self.stats[kind + ' ok'] = self.stats.get(kind + ' ok', 0) + 1
        return ans

    def end_autocommit(self, s, name, ans):
        """Outside a transaction block the statement was its own transaction."""
        if s.in_txn:
            return
        if ans[0] == 'ok':
            self.live |= s.created
            self.live -= s.destroyed
        s.end_txn()
        self.schedule_probes(s, {name}, committed=(ans[0] == 'ok'))

    # ------------------------------------------------------------ transactions

    def txn(self, s, stmt):
        kind = 'ROLLBACK TO' if stmt.startswith('ROLLBACK TO') else stmt.split()[0]
        self.stats[kind] = self.stats.get(kind, 0) + 1
        ans = self.execute(s, stmt, (), stmt)
        if ans[0] == 'err':
            raise Divergence('step %d, session %s: %s failed with SQLSTATE %s'
                             % (self.step, s.label, stmt, ans[1]))
        return ans

    def begin(self, s):
        iso = ' ISOLATION LEVEL REPEATABLE READ' if self.rng.random() < 0.3 else ''
        self.txn(s, 'BEGIN' + iso)
        s.in_txn = True

    def savepoint(self, s):
        s.sp_counter += 1
        sp = 'sp%d' % s.sp_counter
        self.txn(s, 'SAVEPOINT ' + sp)
        s.savepoints.append((sp, set(s.touched)))

    def rollback_to(self, s):
        i = self.rng.randrange(len(s.savepoints))
        sp, saved = s.savepoints[i]
        del s.savepoints[i + 1:]
        undone = s.touched - saved
        s.aborted = False       # before execute: this statement cannot fail
        self.txn(s, 'ROLLBACK TO SAVEPOINT ' + sp)
        s.touched = set(saved)
        self.schedule_probes(s, undone, committed=False)

    def release(self, s):
        i = self.rng.randrange(len(s.savepoints))
        sp = s.savepoints[i][0]
        del s.savepoints[i:]
        self.txn(s, 'RELEASE SAVEPOINT ' + sp)

    def commit(self, s):
        touched = s.touched
        self.txn(s, 'COMMIT')
        self.live |= s.created
        self.live -= s.destroyed
        s.end_txn()
        self.schedule_probes(s, touched, committed=True)

    def rollback(self, s):
        touched = s.touched
        s.aborted = False
        self.txn(s, 'ROLLBACK')
        s.end_txn()
        self.schedule_probes(s, touched, committed=False)

    def schedule_probes(self, s, keys, committed):
        for k in sorted(keys)[:3]:
            self.probes.append((s, 'encrypt', k))
            self.probes.append((s, 'decrypt', k))
            self.probes.append((s, 'bidx', k))
            if committed:
                for o in self.sessions:
                    if o is not s:
                        self.probes.append((o, self.rng.choice(['encrypt', 'decrypt', 'bidx']), k))
                if self.rng.random() < 0.4:
                    # another session changes the key the others just used
                    o = self.rng.choice([o for o in self.sessions if o is not s])
                    self.probes.append((o, 'admin', k))

    def probe(self, s, kind, key):
        if s.aborted:
            return False
        self.stats['probe'] = self.stats.get('probe', 0) + 1
        if kind == 'admin':
            if key not in self.keys or any(key in o.locked for o in self.sessions if o is not s):
                return False
            self.admin(s, key)
            return True
        if kind == 'decrypt':
            items = [it for it in self.pool if it['key'] == key]
            if items:
                self.q_decrypt(s, items[-1])
                return True
            kind = 'encrypt'
        if kind == 'bidx':
            self.q_blind_index(s, key)
        else:
            self.q_encrypt(s, key)
        return True

    # ------------------------------------------------------------ the walk

    def one_step(self):
        while self.probes:
            s, kind, key = self.probes.popleft()
            if self.probe(s, kind, key):
                return
        s = self.rng.choice(self.sessions)
        r = self.rng.random()
        if s.aborted:
            if s.savepoints and r < 0.8:
                self.rollback_to(s)
            else:
                self.rollback(s)
            return
        if not s.in_txn and r < 0.2:
            self.begin(s)
            return
        if s.in_txn:
            if r < 0.08:
                self.savepoint(s)
                return
            if r < 0.12 and s.savepoints:
                self.rollback_to(s)
                return
            if r < 0.14 and s.savepoints:
                self.release(s)
                return
            if r < 0.22:
                self.commit(s)
                return
            if r < 0.25:
                self.rollback(s)
                return
        r = self.rng.random()
        if r < 0.3:
            self.admin(s)
        elif r < 0.6:
            key = self.question_key()
            if key in self.keys:
                self.use(key)
            self.q_encrypt(s, key)
        elif r < 0.85:
            self.q_decrypt(s)
        else:
            self.q_blind_index(s, self.question_key())

    def walk(self):
        while self.step < STEPS:
            self.one_step()
            for s in self.sessions:
                self.check_txn_status(s)


def main():
    fresh = FreshBackends()
    failed = []
    t0 = time.monotonic()
    try:
        for seed in SEEDS:
            m = Model(seed, fresh)
            t1 = time.monotonic()
            try:
                m.walk()
                admin = ', '.join('%s %d/%d' % (k, m.stats.get(k + ' ok', 0), m.stats[k])
                                  for k in ['create', 'rotate', 'set_state', 'destroy', 'rewrap',
                                            'rotate_index', 'finish_index'] if k in m.stats)
                print('ok - seed %d: %d statements, %d answers equal to a new backend\'s, %d not comparable '
                      '(own uncommitted keyring change), %d values; %d ROLLBACK, %d ROLLBACK TO, %d COMMIT; '
                      'admin ok/tried: %s (%.1fs)'
                      % (seed, m.step, m.compared, m.skipped, len(m.pool), m.stats.get('ROLLBACK', 0),
                         m.stats.get('ROLLBACK TO', 0), m.stats.get('COMMIT', 0), admin,
                         time.monotonic() - t1))
            except (Divergence, HarnessError) as e:
                failed.append('seed %d: %s' % (seed, e))
                print('not ok - seed %d: %s' % (seed, e))
                print('#   the statements before it (all sessions):')
                for h in m.history:
                    print('#     ' + h)
            finally:
                m.close()
            sys.stdout.flush()
    finally:
        fresh.close()
    print('# %d seeds of %d steps in %.1fs' % (len(SEEDS), STEPS, time.monotonic() - t0))
    if failed:
        print('# first divergence of each failing seed (its statements before it are above):')
        for f in failed:
            print('# ' + f)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
