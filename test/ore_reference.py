#!/usr/bin/python3
"""Independent reference of pgcrypt_kms's order-revealing terms.

Written from Chenette, Lewi, Weis, Wu, "Practical Order-Revealing Encryption
with Limited Leakage" (FSE 2016), section 3 (the scheme of Fig. 1), and from
the encodings as FORMAT.md section 10 specifies them, not from src/ore.c:

    u_i = F(k, (i, b_1..b_{i-1})) + b_i  (mod 3)     ORE.Encrypt
    compare: the first i with u_i != u'_i; u'_i = u_i + 1 mod 3 means "<"

F is HMAC-SHA-256 keyed with k = HKDF-SHA-256(index key, salt
"pgcrypt_kms ore v1", info "order"); plaintext order is taken from Python's
int and decimal.Decimal, never from the bit encodings.  A term's header names
its key (the key id, HMAC(k, "pgcrypt_kms ore key id") cut to 8 bytes) and
epoch; terms of different keys or epochs order by header, never by trits.

  ore_reference.py --emit            print the vector table test/unit/ore_vectors.h holds
  ore_reference.py --check FILE      recompute FILE's vectors and compare every pair of
                                     its terms with this file's comparison against the
                                     plaintext order, and the terms of two more keys
                                     against them (one total order, a run per key);
                                     exit 1 on any difference
"""
import decimal
import hashlib
import hmac
import re
import sys

INT8, DATE, TIMESTAMPTZ, NUMERIC = 1, 2, 3, 4
NBITS = {INT8: 64, DATE: 32, TIMESTAMPTZ: 64, NUMERIC: 139}


def hkdf_sha256(ikm, salt, info, length):
    """RFC 5869."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, t, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
        i += 1
    return okm[:length]


def ore_key(index_key):
    return hkdf_sha256(index_key, b"pgcrypt_kms ore v1", b"order", 32)


def key_id(key):
    return hmac.new(key, b"pgcrypt_kms ore key id", hashlib.sha256).digest()[:8]


def bits_of_int(v, n):
    """Two's complement of v in n bits with the sign bit flipped: order-preserving."""
    u = (v + (1 << (n - 1))) % (1 << n)
    return [(u >> (n - 1 - i)) & 1 for i in range(n)]


def bits_of_numeric(text):
    """The 139-bit encoding of FORMAT.md 10.2, from the decimal value."""
    def field(v, n):
        return [(v >> (n - 1 - i)) & 1 for i in range(n)]
    if text == "NaN":
        return field(5, 3) + [0] * 136
    if text == "Infinity":
        return field(4, 3) + [0] * 136
    if text == "-Infinity":
        return field(0, 3) + [0] * 136
    d = decimal.Decimal(text)
    if d == 0:
        return field(2, 3) + [0] * 136
    sign, digits, exp = d.normalize(decimal.Context(prec=200)).as_tuple()
    digits = "".join(map(str, digits)).rstrip("0")
    # value = 0.digits * 10^E
    E = len(d.normalize(decimal.Context(prec=200)).as_tuple().digits) + exp
    if len(digits) > 38 or not -128 <= E <= 127:
        raise ValueError("outside the numeric range of ORE terms")
    m = int(digits.ljust(38, "0"))
    e = E + 128
    if sign:
        return field(1, 3) + field(255 - e, 8) + field((1 << 128) - 1 - m, 128)
    return field(3, 3) + field(e, 8) + field(m, 128)


def prf(key, domain, i, prefix):
    packed = bytearray((len(prefix) + 7) // 8)
    for j, b in enumerate(prefix):
        if b:
            packed[j // 8] |= 0x80 >> (j % 8)
    mac = hmac.new(key, bytes([domain]) + i.to_bytes(2, "big") + bytes(packed), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") % 3


HEADER = 3 + 8   # scheme, domain, epoch, key id


def encrypt(key, domain, bits, epoch=1):
    trits = [(prf(key, domain, i, bits[:i]) + bits[i]) % 3 for i in range(len(bits))]
    body = bytearray((len(trits) + 3) // 4)
    for i, u in enumerate(trits):
        body[i // 4] |= u << (6 - 2 * (i % 4))
    return bytes([1, domain, epoch]) + key_id(key) + bytes(body)


def compare(a, b):
    if a[1] != b[1]:
        raise ValueError("domains differ")
    # epoch, then key id: the trits of two keys mean nothing to each other
    if a[2:HEADER] != b[2:HEADER]:
        return -1 if a[2:HEADER] < b[2:HEADER] else 1
    for i in range(NBITS[a[1]]):
        ua = (a[HEADER + i // 4] >> (6 - 2 * (i % 4))) & 3
        ub = (b[HEADER + i // 4] >> (6 - 2 * (i % 4))) & 3
        if ua != ub:
            return -1 if ub == (ua + 1) % 3 else 1
    return 0


def term(key, domain, value, epoch=1):
    if domain == NUMERIC:
        return encrypt(key, domain, bits_of_numeric(value), epoch)
    return encrypt(key, domain, bits_of_int(int(value), NBITS[domain]), epoch)


def plain(domain, value):
    if domain == NUMERIC:
        return {"NaN": (3, 0), "Infinity": (2, 0), "-Infinity": (0, 0)}.get(value, (1, decimal.Decimal(value)))
    return (0, int(value))


INDEX_KEY = bytes(range(32))
# more keys for the check across keys: another key at the same epoch, and the first key's
# next index key version (another index key, epoch 2)
OTHER_KEYS = [(bytes(range(32, 64)), 1), (bytes(range(64, 96)), 2)]
VECTORS = [
    (INT8, v) for v in ["-9223372036854775808", "-9223372036854775807", "-1", "0", "1", "2", "42",
                        "1000000", "9223372036854775806", "9223372036854775807"]
] + [
    (DATE, v) for v in ["-2147483648", "-2451545", "-1", "0", "1", "3653", "2147483647"]
] + [
    (TIMESTAMPTZ, v) for v in ["-9223372036854775808", "-1", "0", "946684800000000", "9223372036854775807"]
] + [
    (NUMERIC, v) for v in ["-Infinity", "-12345678901234567890123456789012345678", "-1.5", "-1",
                           "-0.001", "0", "0.001", "0.5", "1", "1.5", "1.50", "100",
                           "12345678901234567890123456789012345678", "Infinity", "NaN"]
]


def emit():
    key = ore_key(INDEX_KEY)
    print("/* test/unit/ore_vectors.h: written by test/ore_reference.py --emit; do not edit */")
    print("/* ORE key for the index key 00 01 .. 1f: %s */" % key.hex())
    print("/* its key id (term bytes 3..10): %s */" % key_id(key).hex())
    for domain, value in VECTORS:
        print('{%d, "%s", "%s"},' % (domain, value, term(key, domain, value).hex()))


def check(path):
    key = ore_key(INDEX_KEY)
    rows = re.findall(r'\{(\d+), "([^"]*)", "([0-9a-f]+)"\}', open(path).read())
    bad = 0
    if len(rows) != len(VECTORS):
        print("not ok - %s has %d vectors, the reference %d" % (path, len(rows), len(VECTORS)))
        bad += 1
    for d, v, t in rows:
        mine = term(key, int(d), v).hex()
        if mine != t:
            print("not ok - vector %s/%s: file %s, reference %s" % (d, v, t, mine))
            bad += 1
    pairs = 0
    for d1, v1, t1 in rows:
        for d2, v2, t2 in rows:
            if d1 != d2:
                continue
            p1, p2 = plain(int(d1), v1), plain(int(d2), v2)
            want = (p1 > p2) - (p1 < p2)
            pairs += 1
            if compare(bytes.fromhex(t1), bytes.fromhex(t2)) != want:
                print("not ok - compare %s %s" % (v1, v2))
                bad += 1
    # the file's terms with those of two more keys: per domain one total order (antisymmetric,
    # transitive), each key's terms one run, in plaintext order within it
    cross = 0
    for d in sorted({int(r[0]) for r in rows}):
        terms = [(0, v, bytes.fromhex(t)) for dd, v, t in rows if int(dd) == d]
        for n, (ik, epoch) in enumerate(OTHER_KEYS, 1):
            terms += [(n, v, term(ore_key(ik), d, v, epoch)) for dd, v, t in rows if int(dd) == d]
        for x in terms:
            for y in terms:
                c = compare(x[2], y[2])
                cross += 1
                if c != -compare(y[2], x[2]):
                    print("not ok - not antisymmetric: %s %s" % (x[1], y[1]))
                    bad += 1
                if x[0] != y[0] and (c == 0 or c != (-1 if x[2][2:HEADER] < y[2][2:HEADER] else 1)):
                    print("not ok - terms of two keys not ordered by epoch and key id: %s %s" % (x[1], y[1]))
                    bad += 1
                if x[0] == y[0]:
                    p1, p2 = plain(d, x[1]), plain(d, y[1])
                    if c != (p1 > p2) - (p1 < p2):
                        print("not ok - key %d: compare %s %s" % (x[0], x[1], y[1]))
                        bad += 1
        for x in terms:
            for y in terms:
                if compare(x[2], y[2]) < 0:
                    for z in terms:
                        if compare(y[2], z[2]) < 0 and compare(x[2], z[2]) >= 0:
                            print("not ok - not transitive: %s %s %s" % (x[1], y[1], z[1]))
                            bad += 1
    print("%s - %d vectors recomputed, %d same-domain pairs compared in plaintext order, "
          "%d pairs across three keys in one total order" %
          ("ok" if bad == 0 else "not ok", len(rows), pairs, cross))
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--emit"]:
        emit()
    elif len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2]))
    else:
        sys.exit(__doc__)
