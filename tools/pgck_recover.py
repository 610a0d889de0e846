#!/usr/bin/python3
"""pgck_recover.py: decrypt the enc_text values of a plain pg_dump without pgcrypt_kms.

Reads a plain-format pg_dump (SQL text with COPY blocks) of ONE database that used the
pgcrypt_kms extension.  The keyring comes from the dump's own COPY data for
pgcrypt_kms.keys and pgcrypt_kms.key_versions; each data key version that a value needs
is unwrapped once, with AWS KMS Decrypt (botocore) for aws-kms: keys or with the local
master key file (--local-key-file) for local: keys, and checked against its key-check
value.  Every enc_text value is then opened with AES-256-GCM; a value that fails
authentication (altered, other key, other context) is refused, never turned into
garbage.  No PostgreSQL server and no extension are needed: /usr/bin/python3 with
python3-cryptography and python3-botocore (botocore only for aws-kms: keys).

The format this implements is specified in FORMAT.md at the root of the repository.

Outputs (at least one):
  --csv-dir DIR   one CSV file per table with enc_text columns, named SCHEMA.TABLE.csv
                  (ASCII letters, digits, _ and - as they are, other characters %XX below
                  U+0100, %uXXXX to U+FFFF, %UXXXXXX above): a header row, then every row of
                  the table's COPY data with the enc_text columns decrypted (a typed value as
                  PostgreSQL's text output writes it with DateStyle ISO, TimeZone UTC).  Every non-NULL field is quoted; NULL is an empty
                  unquoted field (PostgreSQL's CSV convention: COPY ... FROM ... CSV HEADER
                  loads it back).
  --out FILE      the dump itself with every decrypted enc_text value replaced by its
                  plaintext in the COPY data ("-" for standard output); everything else is
                  byte for byte the same.  For reading and for loaders: psql cannot restore
                  it as is (the columns are still declared enc_text, which refuses
                  plaintext).
Plaintext files are created with mode 0600; an existing output file is never
overwritten (unless --force, and then only if no group or other permission bit is set),
and standard output is refused when it is a file that others can read.  Keys are never
printed; the summary on standard error holds counts, names and reasons, never a
plaintext.

Contexts: a value encrypted with kms_encrypt(v, key, context) needs the same context.
  --context TABLE.COLUMN=TEMPLATE   (TABLE may be SCHEMA.TABLE)
TEMPLATE is literal text in which {name} is replaced by the text of column "name" of
the same row as it appears in the dump's COPY data ({{ and }} are literal braces).  It
applies to the column's values that were encrypted with a context (the value says so);
values of the column encrypted without one are decrypted without.
The README's example context 'users.email:' || id is --context users.email='users.email:{id}'.

Integrity: the tool trusts the dump.  With --escrow-key, a key version added to the dump
and escrow-wrapped under the dump's own (public) escrow key passes like a genuine one; the
summary lists every key unwrapped through escrow alone, and --expect-sha256 HEX checks the
dump against the SHA-256 recorded at backup time before anything is read or written.  A
plain dump must end with pg_dump's last line and every COPY row must have its column count:
a cut or damaged dump is refused (exit 2), never partly recovered.

Exit status: 0 when every value decrypted, 1 when any value or key failed (the outputs
are then removed unless --keep-going), 2 on a usage error or an unreadable dump.
"""

import argparse
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import re
import stat
import sys
import tempfile
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# ---------------------------------------------------------------- the value format (FORMAT.md §2)

TEXT_PREFIX = b"pgck:"
FORMAT_VERSION = 1
ALG_AES256_GCM = 1
FLAG_BLIND_TAG = 0x01
FLAG_CONTEXT = 0x02
FLAG_EXT = 0x04          # extension fields (0.3.0, FORMAT.md §2.6)
FLAG_MASK = 0x07
PLAIN_TYPES = {1: "bytea", 2: "int8", 3: "numeric", 4: "date", 5: "timestamptz"}
NONCE_LEN = 12
GCM_TAG_LEN = 16
FIXED_HEADER_LEN = 19
BLIND_TAG_MAX = 32
MIN_ENVELOPE_LEN = FIXED_HEADER_LEN + GCM_TAG_LEN

KEY_CHECK_LABEL = b"pgcrypt_kms key check v1"
KEY_CHECK_LEN = 16
DEK_LEN = 32

LOCAL_HKDF_SALT = b"pgcrypt_kms local provider v1"
LOCAL_WRAP_HEADER = b"PL\x01"
LOCAL_MASTER_LEN = 32

B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
B64_INDEX = {c: i for i, c in enumerate(B64)}


def die(msg):
    """A usage error or an unusable dump: exit status 2."""
    print("pgck_recover: " + msg, file=sys.stderr)
    sys.exit(2)


class RecoverError(Exception):
    """A value or key that cannot be recovered; the message never holds key material."""


def b64decode_canonical(s):
    """Strict standard base64 (padding required, zero pad bits), as src/base64.c."""
    if len(s) % 4 != 0:
        raise RecoverError("the text after \"pgck:\" is not canonical base64 (length)")
    out = bytearray()
    pad = (1 if s[-1:] == b"=" else 0) + (1 if s[-2:-1] == b"=" else 0)
    for i in range(0, len(s), 4):
        last = i + 4 == len(s)
        q = s[i:i + 4]
        try:
            a, b = B64_INDEX[q[0]], B64_INDEX[q[1]]
            if last and pad == 2:
                if q[2:4] != b"==" or b & 15:
                    raise KeyError
                out.append((a << 2) | (b >> 4))
                break
            c = B64_INDEX[q[2]]
            if last and pad == 1:
                if q[3:4] != b"=" or c & 3:
                    raise KeyError
                out += bytes(((a << 2) | (b >> 4), ((b & 15) << 4) | (c >> 2)))
                break
            d = B64_INDEX[q[3]]
        except KeyError:
            raise RecoverError("the text after \"pgck:\" is not canonical base64") from None
        out += bytes(((a << 2) | (b >> 4), ((b & 15) << 4) | (c >> 2), ((c & 3) << 6) | d))
    return bytes(out)


# PostgreSQL's date and timestamp arithmetic (src/backend/utils/adt/datetime.c, timestamp.c):
# integers only, proleptic Gregorian calendar, so every value PostgreSQL stores is written
# (4713 BC to 5874897 AD for dates, to 294276 AD for timestamps), as its output does
POSTGRES_EPOCH_JDATE = 2451545          # Julian day of 2000-01-01
USECS_PER_DAY = 86400 * 1000000
DATE_MIN = -POSTGRES_EPOCH_JDATE        # Julian day 0, 4714-11-24 BC
DATE_END = 2147483494 - POSTGRES_EPOCH_JDATE          # 5874898-01-01
TIMESTAMP_MIN = -211813488000000000                   # 4714-11-24 00:00:00 BC
TIMESTAMP_END = 9223371331200000000                   # 294277-01-01 00:00:00


def j2date(jd):
    """(year, month, day) of a Julian day, as PostgreSQL's j2date (year <= 0: BC, 0 is 1 BC)."""
    julian = jd + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    return y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad // 256


def encode_date(y, m, d, bc=True):
    """EncodeDateOnly with DateStyle ISO: at least 4 year digits, " BC" for years <= 0."""
    out = b"%04d-%02d-%02d" % (y if y > 0 else 1 - y, m, d)
    return out + b" BC" if bc and y <= 0 else out


class Envelope:
    """A parsed enc_text value (FORMAT.md §2.2)."""

    __slots__ = ("raw", "flags", "version_id", "nonce", "blind_tag", "header", "sealed", "plain_type")

    def __init__(self, raw):
        if len(raw) < 1:
            raise RecoverError("the value is shorter than its header says")
        if raw[0] != FORMAT_VERSION:
            raise RecoverError("unsupported enc_text format version %d" % raw[0])
        if len(raw) < MIN_ENVELOPE_LEN:
            raise RecoverError("the value is shorter than its header says")
        if raw[1] != ALG_AES256_GCM:
            raise RecoverError("the value names an unknown encryption algorithm (%d)" % raw[1])
        self.flags = raw[2]
        if self.flags & ~FLAG_MASK:
            raise RecoverError("the value has unknown flag bits set (0x%02x)" % self.flags)
        self.version_id = int.from_bytes(raw[3:7], "big")
        if self.version_id == 0 or self.version_id > 0x7FFFFFFF:
            raise RecoverError("the value names an invalid key version id")
        self.nonce = raw[7:19]
        pos = FIXED_HEADER_LEN
        self.blind_tag = None
        if self.flags & FLAG_BLIND_TAG:
            if len(raw) - pos < 1 + GCM_TAG_LEN:
                raise RecoverError("the value is shorter than its header says")
            tlen = raw[pos]
            if tlen < 1 or tlen > BLIND_TAG_MAX:
                raise RecoverError("the value's blind-index tag length is out of range")
            if len(raw) - pos - 1 < tlen + GCM_TAG_LEN:
                raise RecoverError("the value is shorter than its header says")
            self.blind_tag = raw[pos + 1:pos + 1 + tlen]
            pos += 1 + tlen
        self.plain_type = None           # text
        if self.flags & FLAG_EXT:
            if len(raw) - pos < 2 + GCM_TAG_LEN:
                raise RecoverError("the value is shorter than its header says")
            flen = int.from_bytes(raw[pos:pos + 2], "big")
            if flen < 3 or flen > 4096 or len(raw) - pos - 2 < flen + GCM_TAG_LEN:
                raise RecoverError("the value's extension fields are malformed")
            p, end = pos + 2, pos + 2 + flen
            while p < end:
                if end - p < 2 or raw[p + 1] < 1 or end - p - 2 < raw[p + 1] or raw[p] not in (1, 2, 3):
                    raise RecoverError("the value's extension fields are malformed")
                if raw[p] == 1:
                    if raw[p + 1] != 1 or raw[p + 2] not in PLAIN_TYPES:
                        raise RecoverError("the value's plaintext type is malformed")
                    self.plain_type = PLAIN_TYPES[raw[p + 2]]
                p += 2 + raw[p + 1]
            pos = end
        self.raw = raw
        self.header = raw[:pos]          # authenticated as the first part of the AAD
        self.sealed = raw[pos:]          # ciphertext || GCM tag

    def as_text(self, plain):
        """A typed plaintext (FORMAT.md §2.6) as PostgreSQL's text output would write it
        (DateStyle ISO, TimeZone UTC); text values unchanged."""
        t = self.plain_type
        if t is None or t == "numeric":
            return plain
        if t == "bytea":
            return b"\\x" + plain.hex().encode()
        if len(plain) != (4 if t == "date" else 8):
            raise RecoverError("a %s plaintext of %d bytes" % (t, len(plain)))
        v = int.from_bytes(plain, "big", signed=True)
        if t == "int8":
            return str(v).encode()
        if t == "date":
            if v in (-2**31, 2**31 - 1):
                return b"-infinity" if v < 0 else b"infinity"
            if not DATE_MIN <= v < DATE_END:
                raise RecoverError("a date value out of PostgreSQL's range (day %d after 2000-01-01)" % v)
            return encode_date(*j2date(v + POSTGRES_EPOCH_JDATE))
        if v in (-2**63, 2**63 - 1):
            return b"-infinity" if v < 0 else b"infinity"
        if not TIMESTAMP_MIN <= v < TIMESTAMP_END:
            raise RecoverError("a timestamptz value out of PostgreSQL's range")
        day, usec = divmod(v, USECS_PER_DAY)          # floor: usec in [0, one day)
        y, m, d = j2date(day + POSTGRES_EPOCH_JDATE)
        sec, frac = divmod(usec, 1000000)
        out = b"%s %02d:%02d:%02d" % (encode_date(y, m, d, bc=False), sec // 3600, sec // 60 % 60, sec % 60)
        if frac:
            out += b"." + (b"%06d" % frac).rstrip(b"0")
        return out + b"+00" + (b" BC" if y <= 0 else b"")

    @classmethod
    def from_text(cls, text):
        if not text.startswith(TEXT_PREFIX):
            raise RecoverError("not an enc_text value (no \"pgck:\" prefix)")
        return cls(b64decode_canonical(text[len(TEXT_PREFIX):]))

    def open(self, dek, context):
        """The plaintext, or RecoverError; context is bytes or None."""
        has_ctx = bool(self.flags & FLAG_CONTEXT)
        if has_ctx and context is None:
            raise RecoverError("the value was encrypted with a context; pass --context for its column")
        if not has_ctx and context is not None:
            raise RecoverError("the value was encrypted without a context, but one was given")
        aad = self.header + (context if context is not None else b"")
        try:
            return AESGCM(dek).decrypt(self.nonce, self.sealed, aad)
        except InvalidTag:
            raise RecoverError("the value failed authentication: it was altered, or encrypted "
                               "under another key or with another context") from None


def key_check(key):
    """FORMAT.md §4.4: the first 16 bytes of HMAC-SHA-256(key, label)."""
    return hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).digest()[:KEY_CHECK_LEN]


# ---------------------------------------------------------------- blind index (FORMAT.md §3)

_ASCII_SPACE = b" \t\n\r\f\v"
_UPPER = bytes(range(65, 91))
_LOWER = bytes(range(97, 123))
_FOLD = bytes.maketrans(_UPPER, _LOWER)


def normalize(transform, b):
    if transform == "exact":
        return b
    if transform == "lower":
        return b.translate(_FOLD)
    if transform == "email":
        return b.strip(_ASCII_SPACE).translate(_FOLD)
    if transform == "digits":
        return bytes(c for c in b if 0x30 <= c <= 0x39)
    raise RecoverError("unknown blind index transform %r" % transform)


def blind_tag(index_key, transform, bits, plaintext):
    mac = hmac.new(index_key, normalize(transform, plaintext), hashlib.sha256).digest()
    n = (bits + 7) // 8
    tag = bytearray(mac[:n])
    if bits % 8:
        tag[-1] &= (0xFF << (8 - bits % 8)) & 0xFF
    return bytes(tag)


# ---------------------------------------------------------------- COPY text format

_COPY_ESC = {ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("v"): 11}


def copy_unescape(f):
    """One field of COPY's text format: None for \\N, else its bytes."""
    if f == b"\\N":
        return None
    if b"\\" not in f:
        return f
    out = bytearray()
    i, n = 0, len(f)
    while i < n:
        c = f[i]
        i += 1
        if c != 0x5C:
            out.append(c)
            continue
        if i >= n:
            break
        c = f[i]
        i += 1
        if 0x30 <= c <= 0x37:
            v, k = c - 0x30, 0
            while k < 2 and i < n and 0x30 <= f[i] <= 0x37:
                v = v * 8 + f[i] - 0x30
                i += 1
                k += 1
            out.append(v & 0xFF)
        elif c == ord("x") and i < n and chr(f[i]) in "0123456789abcdefABCDEF":
            j = i
            while j < n and j < i + 2 and chr(f[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(f[i:j], 16))
            i = j
        else:
            out.append(_COPY_ESC.get(c, c))
    return bytes(out)


def copy_escape(b):
    if b is None:
        return b"\\N"
    return (b.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
            .replace(b"\t", b"\\t").replace(b"\b", b"\\b").replace(b"\f", b"\\f")
            .replace(b"\v", b"\\v"))


def bytea_value(text):
    """A bytea field's text (hex or escape output format) as bytes."""
    if text is None:
        return None
    if text.startswith(b"\\x"):
        return bytes.fromhex(text[2:].decode("ascii"))
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == 0x5C:
            if text[i + 1:i + 2] == b"\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def csv_field(b):
    if b is None:
        return b""
    return b'"' + b.replace(b'"', b'""') + b'"'


# ---------------------------------------------------------------- custom-format archives (pg_dump -Fc)
#
# The archive format is pg_dump's own (src/bin/pg_dump/pg_backup_archiver.c and
# pg_backup_custom.c): "PGDMP", the archive version (major, minor, revision),
# the integer and offset sizes, the format (1 = custom), the compression, the
# creation date, the database name and the server and pg_dump versions; then
# the table of contents (TOC), one entry per object with its definition and, for
# TABLE DATA, its COPY statement and where its data block is; then the data
# blocks (type byte, dump id, chunks of (compressed) COPY text, a zero length
# ends a block).  An integer is a sign byte and intSize bytes, least significant
# first; a string is an integer length (-1: NULL) and that many bytes.  The
# reader below renders the archive as the lines of a plain dump (a "-- Name: ...;
# Type: ...; Schema: ..." comment before each entry, its definition, and COPY
# data ending with "\."), so everything after it reads both formats alike.

class DumpFormatError(Exception):
    """An archive that cannot be read; the message names no data."""


ARCHIVE_MAGIC = b"PGDMP"
ARCHIVE_VERSIONS = {(1, 12), (1, 13), (1, 14), (1, 15), (1, 16)}   # PG 9.6 .. 18
ARCH_FORMATS = {0: "unknown", 1: "custom", 2: "files", 3: "tar", 4: "null", 5: "directory"}
ARCH_CUSTOM = 1
COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}
K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET, K_OFFSET_NO_DATA = 1, 2, 3
BLK_DATA, BLK_BLOBS = 1, 3
CONVERT_HINT = "convert it with PostgreSQL's own tools first: pg_restore -f - DUMP | pgck_recover.py -"


class _ArchiveReader:
    def __init__(self, f, size):
        self.f, self.size = f, size
        self.int_size = 4
        self.off_size = 8

    def pos(self):
        return self.f.tell()

    def read(self, n, what):
        if n < 0 or n > self.size - self.pos():
            raise DumpFormatError("the archive ends inside %s at byte %d (truncated or corrupted)"
                                  % (what, self.pos()))
        b = self.f.read(n)
        if len(b) != n:
            raise DumpFormatError("the archive ends inside %s (truncated)" % what)
        return b

    def byte(self, what):
        return self.read(1, what)[0]

    def int(self, what):
        sign = self.byte(what)
        if sign not in (0, 1):
            raise DumpFormatError("a corrupted integer (%s) at byte %d" % (what, self.pos() - 1))
        v = int.from_bytes(self.read(self.int_size, what), "little")
        if v > 0x7FFFFFFF:
            raise DumpFormatError("an integer out of range (%s) at byte %d" % (what, self.pos()))
        return -v if sign else v

    def str(self, what):
        n = self.int(what)
        if n < 0:
            if n != -1:
                raise DumpFormatError("a corrupted string length (%s) at byte %d" % (what, self.pos()))
            return None
        return self.read(n, what)

    def offset(self, what):
        flag = self.byte(what)
        if flag not in (K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET, K_OFFSET_NO_DATA):
            raise DumpFormatError("a corrupted data offset (%s) at byte %d" % (what, self.pos() - 1))
        return flag, int.from_bytes(self.read(self.off_size, what), "little")


class TocEntry:
    __slots__ = ("dump_id", "had_dumper", "tag", "desc", "defn", "copy_stmt", "namespace",
                 "owner", "data_state", "data_pos")


class CustomArchive:
    """A pg_dump custom-format archive, read without PostgreSQL."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")
        try:
            self.size = os.fstat(self.f.fileno()).st_size
            self._read_header_and_toc()
            self._index_blocks()
        except BaseException:
            self.f.close()
            raise

    def close(self):
        self.f.close()

    def _read_header_and_toc(self):
        r = self.r = _ArchiveReader(self.f, self.size)
        if r.read(5, "the header") != ARCHIVE_MAGIC:
            raise DumpFormatError("not a pg_dump archive (no PGDMP header)")
        vmaj, vmin, vrev = r.byte("the header"), r.byte("the header"), r.byte("the header")
        self.version = (vmaj, vmin)
        if (vmaj, vmin) not in ARCHIVE_VERSIONS:
            raise DumpFormatError("archive version %d.%d.%d is not one this tool reads (1.12 to 1.16, "
                                  "pg_dump 9.6 to 18); %s" % (vmaj, vmin, vrev, CONVERT_HINT))
        r.int_size = r.byte("the header")
        r.off_size = r.byte("the header")
        if r.int_size not in (4, 8) or r.off_size not in (4, 8):
            raise DumpFormatError("the archive header is corrupted (integer size %d, offset size %d)"
                                  % (r.int_size, r.off_size))
        fmt = r.byte("the header")
        if fmt != ARCH_CUSTOM:
            raise DumpFormatError("the archive is in pg_dump's %s format, not the custom format; %s"
                                  % (ARCH_FORMATS.get(fmt, "unknown (%d)" % fmt), CONVERT_HINT))
        if self.version >= (1, 15):
            alg = r.byte("the header")
        else:
            level = r.int("the header")
            alg = 0 if level == 0 else 1
        if alg not in (0, 1):
            raise DumpFormatError("the archive's data is compressed with %s, which this tool does not "
                                  "decompress (only gzip and none); %s"
                                  % (COMPRESSION_NAMES.get(alg, "an unknown method (%d)" % alg), CONVERT_HINT))
        self.compression = COMPRESSION_NAMES[alg]
        for _ in range(7):               # creation date: sec, min, hour, mday, mon, year, isdst
            r.int("the header's date")
        r.str("the header's database name")
        r.str("the header's server version")
        r.str("the header's pg_dump version")
        count = r.int("the TOC")
        if count < 0 or count > self.size:
            raise DumpFormatError("the archive's TOC count is corrupted")
        self.toc = []
        ids = set()
        for i in range(count):
            what = "TOC entry %d" % (i + 1)
            te = TocEntry()
            te.dump_id = r.int(what)
            if te.dump_id <= 0 or te.dump_id in ids:
                raise DumpFormatError("%s has an invalid dump id (corrupted TOC)" % what)
            ids.add(te.dump_id)
            te.had_dumper = r.int(what)
            r.str(what)                  # catalog table oid
            r.str(what)                  # object oid
            te.tag = r.str(what)
            te.desc = r.str(what)
            if te.tag is None or te.desc is None:
                raise DumpFormatError("%s has no name or type (corrupted TOC)" % what)
            r.int(what)                  # section
            te.defn = r.str(what)
            r.str(what)                  # drop statement
            te.copy_stmt = r.str(what)
            te.namespace = r.str(what)
            r.str(what)                  # tablespace
            r.str(what)                  # table access method (1.14)
            if self.version >= (1, 16):
                r.int(what)              # relkind
            te.owner = r.str(what)
            r.str(what)                  # "false": WITH OIDS
            while r.str(what) is not None:   # dependencies, a NULL ends them
                pass
            te.data_state, te.data_pos = r.offset(what)
            self.toc.append(te)
        self.data_start = r.pos()

    def _skip_chunks(self, what):
        r = self.r
        while True:
            n = r.int(what)
            if n == 0:
                return
            if n < 0:
                raise DumpFormatError("a corrupted chunk length in %s" % what)
            if n > self.size - r.pos():
                raise DumpFormatError("the archive ends inside %s (truncated)" % what)
            self.f.seek(n, 1)

    def _index_blocks(self):
        """Where each TABLE DATA entry's block starts: at the offset the TOC records, else
        found by reading the blocks one after the other from the end of the TOC (pg_dump
        leaves the offsets unset when it writes to a pipe), stopping once every entry is
        found (what follows the last block is not read: the pg_dump 17 and 18 builds here
        append a second copy of the TOC to a file on standard output)."""
        r = self.r
        self.blocks = {}
        wanted = {te.dump_id: te for te in self.toc
                  if te.desc == b"TABLE DATA" and te.data_state != K_OFFSET_NO_DATA}
        for te in list(wanted.values()):
            if te.data_state == K_OFFSET_POS_SET:
                if not self.data_start <= te.data_pos < self.size:
                    raise DumpFormatError("the data offset of %s is outside the archive (corrupted "
                                          "or truncated)" % _toc_name(te))
                self.f.seek(te.data_pos)
                if r.byte("a data block") != BLK_DATA or r.int("a data block") != te.dump_id:
                    raise DumpFormatError("the data offset of %s does not point at its data block "
                                          "(corrupted archive)" % _toc_name(te))
                self.blocks[te.dump_id] = r.pos()
                del wanted[te.dump_id]
        self.f.seek(self.data_start)
        while wanted:
            if r.pos() >= self.size:
                te = next(iter(wanted.values()))
                raise DumpFormatError("the archive ends before the data of %s (truncated)" % _toc_name(te))
            start = r.pos()
            btype = r.byte("a data block")
            bid = r.int("a data block")
            what = "the data block of entry %d" % bid
            if btype == BLK_DATA:
                if bid in wanted:
                    self.blocks[bid] = r.pos()
                    del wanted[bid]
                self._skip_chunks(what)
            elif btype == BLK_BLOBS:
                while r.int(what) != 0:  # large object oids, each with its data
                    self._skip_chunks(what)
            else:
                raise DumpFormatError("an unknown data block type %d at byte %d (corrupted archive)"
                                      % (btype, start))

    def _data(self, te):
        """The entry's data, decompressed, in pieces."""
        r = self.r
        self.f.seek(self.blocks[te.dump_id])
        what = "the data of %s" % _toc_name(te)
        z = zlib.decompressobj() if self.compression == "gzip" else None
        while True:
            n = r.int(what)
            if n == 0:
                break
            if n < 0:
                raise DumpFormatError("a corrupted chunk length in %s" % what)
            chunk = r.read(n, what)
            if z is None:
                yield chunk
                continue
            try:
                while chunk:
                    piece = z.decompress(chunk, 1 << 20)
                    chunk = z.unconsumed_tail
                    if piece:
                        yield piece
                    if z.eof:
                        break
            except zlib.error:
                raise DumpFormatError("%s does not decompress (corrupted archive)" % what) from None
        if z is not None:
            try:
                rest = z.flush()
            except zlib.error:
                raise DumpFormatError("%s does not decompress (corrupted archive)" % what) from None
            if rest:
                yield rest
            if not z.eof:
                raise DumpFormatError("%s ends early (truncated or corrupted archive)" % what)

    def lines(self):
        """The archive as the lines of a plain dump."""
        for te in self.toc:
            ns = te.namespace if te.namespace else b"-"
            yield b"--\n"
            yield (b"-- %sName: %s; Type: %s; Schema: %s; Owner: %s\n"
                   % (b"Data for " if te.desc == b"TABLE DATA" else b"", _sanitize(te.tag),
                      _sanitize(te.desc), _sanitize(ns), _sanitize(te.owner or b"-")))
            yield b"--\n"
            yield b"\n"
            if te.desc == b"TABLE DATA":
                if not te.copy_stmt or te.dump_id not in self.blocks:
                    continue
                yield te.copy_stmt if te.copy_stmt.endswith(b"\n") else te.copy_stmt + b"\n"
                buf = b""
                ended = False
                for piece in self._data(te):
                    buf += piece
                    parts = buf.split(b"\n")
                    buf = parts.pop()
                    for p in parts:
                        if ended:
                            if p:
                                raise DumpFormatError("the data of %s goes on after its end marker "
                                                      "(corrupted archive)" % _toc_name(te))
                            continue
                        if p == b"\\.":
                            ended = True
                        yield p + b"\n"
                if buf and not ended:
                    raise DumpFormatError("the data of %s ends inside a row (corrupted archive)"
                                          % _toc_name(te))
                if not ended:
                    yield b"\\.\n"
                yield b"\n"
                yield b"\n"
            elif te.defn:
                # a definition's later lines may be a string's (a function body, a comment):
                # none of them may pass for the "-- Name: ...; Type: ..." line of an entry
                for i, l in enumerate(te.defn.split(b"\n")):
                    yield (b" " + l if i and l.startswith(b"--") else l) + b"\n"


def _sanitize(b):
    return b.replace(b"\n", b" ").replace(b"\r", b" ")


def _toc_name(te):
    return "%s %s.%s" % (te.desc.decode("ascii", "replace"),
                         (te.namespace or b"-").decode("utf-8", "replace"),
                         te.tag.decode("utf-8", "replace"))


def dump_kind(path):
    """'plain' or 'custom', from the first bytes; anything this tool cannot read is refused."""
    if os.path.isdir(path):
        raise DumpFormatError("a directory (pg_dump -Fd); %s" % CONVERT_HINT)
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(ARCHIVE_MAGIC):
        return "custom"
    if head[257:262] == b"ustar":
        raise DumpFormatError("a tar archive (pg_dump -Ft); %s" % CONVERT_HINT)
    for magic, name in ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4")):
        if head.startswith(magic):
            raise DumpFormatError("%s-compressed; decompress it first (a plain dump), or %s"
                                  % (name, CONVERT_HINT))
    return "plain"


def dump_lines(path):
    """The lines of a plain dump, or of a custom archive rendered as one."""
    if dump_kind(path) == "custom":
        arch = CustomArchive(path)
        try:
            yield from arch.lines()
        finally:
            arch.close()
    else:
        with open(path, "rb") as f:
            yield from f


# ---------------------------------------------------------------- dump structure

_IDENT = re.compile(rb'"((?:[^"]|"")*)"|([A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)')


def parse_ident(s, pos):
    m = _IDENT.match(s, pos)
    if not m:
        raise ValueError("identifier expected")
    if m.group(1) is not None:
        return m.group(1).replace(b'""', b'"').decode("utf-8", "surrogateescape"), m.end()
    return m.group(2).decode("utf-8", "surrogateescape").lower(), m.end()


def parse_qualified(s, pos):
    parts = []
    name, pos = parse_ident(s, pos)
    parts.append(name)
    while s[pos:pos + 1] == b".":
        name, pos = parse_ident(s, pos + 1)
        parts.append(name)
    return tuple(parts), pos


_ENC_TEXT_TYPE = re.compile(rb'(?:(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)\.)?enc_text(?=[ ,]|$)')
_CREATE_TABLE = re.compile(rb"^CREATE (?:UNLOGGED )?TABLE ")
_COPY = re.compile(rb"^COPY ")
_TOC = re.compile(rb"^-- (?:Data for )?Name: .*; Type: ([A-Z ]+); Schema: ")


class TocGate:
    """pg_dump writes every object under a "-- Name: ...; Type: T; Schema: ..."
    comment: a line is read as the start of a CREATE TABLE or a COPY block only
    when it is the first statement under a TABLE or TABLE DATA header.  A
    "COPY ..." or "CREATE TABLE ..." line inside a string (a table comment with
    newlines, a function body, a default) is not one: any role that can comment
    on its own table could otherwise make the tool skip other tables' data."""

    def __init__(self):
        self.pending = None

    def feed(self, line):
        """The TOC type this top-level line may start, or None."""
        s = line.rstrip(b"\n")
        m = _TOC.match(s)
        if m:
            self.pending = m.group(1)
            return None
        if s == b"" or s == b"--":
            return None
        t, self.pending = self.pending, None
        return t


class SqlLexer:
    """Whether a line of the dump's SQL (outside COPY data) starts outside every string,
    quoted identifier, dollar-quoted body and block comment of the text before it.  Only
    such lines can be pg_dump's own "-- Name: ..." headers, CREATE TABLE or COPY lines: a
    function body or a comment (text a table owner controls) can hold lines that look like
    them, and must not make the tool read another table's data."""

    _DOLLAR = re.compile(rb"\$([A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")

    def __init__(self):
        self.state = None         # None, b"'", b"E'", b'"', (b"$", tag) or ("/*", depth)

    def top(self):
        return self.state is None

    def feed(self, line):
        st, i, n = self.state, 0, len(line)
        while i < n:
            if st is None:
                if line.startswith(b"--", i):
                    break
                if line.startswith(b"/*", i):
                    st, i = ("/*", 1), i + 2
                    continue
                c = line[i:i + 1]
                prev = line[i - 1:i] if i else b""
                if c == b"'":
                    esc = prev in (b"E", b"e") and not (i >= 2 and (line[i - 2:i - 1].isalnum()
                                                                 or line[i - 2:i - 1] in b"_$"))
                    st, i = (b"E'" if esc else b"'"), i + 1
                    continue
                if c == b'"':
                    st, i = b'"', i + 1
                    continue
                if c == b"$" and not (prev.isalnum() or prev in (b"_", b"$")):
                    m = self._DOLLAR.match(line, i)
                    if m:
                        st, i = (b"$", m.group(0)), m.end()
                        continue
                i += 1
            elif st in (b"'", b'"'):
                j = line.find(st, i)
                if j < 0:
                    break
                if line[j + 1:j + 2] == st:
                    i = j + 2
                    continue
                st, i = None, j + 1
            elif st == b"E'":
                c = line[i:i + 1]
                if c == b"\\":
                    i += 2
                elif c == b"'":
                    if line[i + 1:i + 2] == b"'":
                        i += 2
                    else:
                        st, i = None, i + 1
                else:
                    i += 1
            elif st[0] == b"$":
                j = line.find(st[1], i)
                if j < 0:
                    break
                st, i = None, j + len(st[1])
            else:
                a, b = line.find(b"/*", i), line.find(b"*/", i)
                if b < 0 and a < 0:
                    break
                if a >= 0 and (b < 0 or a < b):
                    st, i = ("/*", st[1] + 1), a + 2
                else:
                    st, i = (None if st[1] == 1 else ("/*", st[1] - 1)), b + 2
        self.state = st


def qname(parts):
    return ".".join(parts)


class DumpSchema:
    """What pass 1 learns: enc_text columns per table and the keyring rows."""

    def __init__(self):
        self.enc_columns = {}     # (schema, table) -> set of column names
        self.parents = {}         # (schema, table) -> list of (schema, table)
        self.keys = {}            # key_name -> row dict
        self.versions = {}        # id -> row dict
        self.wrappings = {}       # key_name -> {wrapping number: row dict}   (FORMAT.md 11.1)
        self.wrapped = {}         # (key_name, wrapping, secret, version) -> row dict   (11.2)
        self.keyring_blocks = 0
        self.keyring_seen = set()
        self.version_cols = []    # the COPY column list of key_versions
        self.keys_cols = []
        self.tables_seen = []

    def enc_columns_of(self, table, seen=None):
        cols = set(self.enc_columns.get(table, ()))
        seen = seen or set()
        for p in self.parents.get(table, ()):
            if p not in seen:
                seen.add(p)
                cols |= self.enc_columns_of(p, seen)
        return cols


def read_copy_header(line):
    """(schema, table), [columns] of a 'COPY x (a, b) FROM stdin;' line."""
    name, pos = parse_qualified(line, 5)
    if len(name) == 1:
        name = ("public",) + name
    cols = []
    rest = line[pos:].lstrip()
    if rest.startswith(b"("):
        pos = line.index(b"(", pos) + 1
        while True:
            while line[pos:pos + 1] == b" ":
                pos += 1
            col, pos = parse_ident(line, pos)
            cols.append(col)
            while line[pos:pos + 1] == b" ":
                pos += 1
            if line[pos:pos + 1] == b",":
                pos += 1
                continue
            break
    return name[-2:], cols


def copy_row_fields(line, ncols, table, lineno):
    """The raw fields of one COPY data row (its newline stripped); a row with more or fewer
    fields than the COPY column list is refused, never padded with NULL or cut."""
    raw = line.split(b"\t") if ncols or line else []
    if len(raw) != ncols:
        raise DumpFormatError("dump line %d: a row of the COPY data of %s has %d fields where its "
                              "COPY column list has %d (a damaged or cut dump)"
                              % (lineno, qname(table), len(raw), ncols))
    return raw


DUMP_TRAILER = b"-- PostgreSQL database dump complete"


def add_parents(sch, table, names):
    """Record the parents listed in 'INHERITS (a, b)' (their enc_text columns are inherited)."""
    pos = 0
    while pos < len(names):
        p, pos = parse_qualified(names, pos)
        if len(p) == 1:
            p = ("public",) + p
        sch.parents.setdefault(table, []).append(p[-2:])
        while names[pos:pos + 1] in (b",", b" "):
            pos += 1


def scan_schema(path):
    """Pass 1: CREATE TABLE column types, inheritance, and the keyring's COPY data."""
    sch = DumpSchema()
    plain = dump_kind(path) == "plain"
    complete = False              # pg_dump's last line seen (and nothing after it but comments)
    lineno = 0
    with contextlib.closing(dump_lines(path)) as f:
        table = None
        closed = None             # a table whose column list just ended: INHERITS may follow
        copy_target = None
        copy_cols = None
        gate = TocGate()
        lex = SqlLexer()
        for line in f:
            lineno += 1
            line = line.rstrip(b"\n")
            if closed is not None:
                m = re.match(rb"INHERITS \((.*)\)", line)
                if m:
                    add_parents(sch, closed, m.group(1))
                closed = None
            if copy_target is not None:
                if line == b"\\.":
                    copy_target = None
                    continue
                fields = [copy_unescape(x) for x in
                          copy_row_fields(line, len(copy_cols), ("pgcrypt_kms", copy_target), lineno)]
                row = dict(zip(copy_cols, fields))
                try:
                    add_keyring_row(sch, copy_target, row)
                except (KeyError, ValueError, AttributeError, TypeError):
                    raise DumpFormatError("a malformed row in the COPY data of pgcrypt_kms.%s"
                                          % copy_target) from None
                continue
            top = lex.top()
            lex.feed(line)
            if not top:
                continue
            if line == DUMP_TRAILER:
                complete = True
            elif complete and line and not line.startswith((b"--", b"\\unrestrict ")):
                complete = False
            if table is not None:
                if line.startswith(b")"):
                    m = re.search(rb"INHERITS \((.*)\)", line)
                    if m:
                        add_parents(sch, table, m.group(1))
                    closed = table
                    table = None
                    continue
                body = line.strip()
                if body.startswith(b"CONSTRAINT "):
                    continue
                try:
                    col, pos = parse_ident(body, 0)
                except ValueError:
                    continue
                if _ENC_TEXT_TYPE.match(body, pos + 1):
                    sch.enc_columns.setdefault(table, set()).add(col)
                continue
            toc = gate.feed(line)
            if _CREATE_TABLE.match(line) and toc == b"TABLE":
                start = _CREATE_TABLE.match(line).end()
                name, pos = parse_qualified(line, start)
                if len(name) == 1:
                    name = ("public",) + name
                table = name[-2:]
                rest = line[pos:]
                m = re.match(rb" PARTITION OF (.*?)(?: \(| FOR | DEFAULT|$)", rest)
                if m:
                    p, _ = parse_qualified(m.group(1), 0)
                    sch.parents.setdefault(table, []).append(p[-2:])
                if not rest.rstrip().endswith(b"("):
                    table = None
                continue
            if _COPY.match(line) and toc == b"TABLE DATA":
                target, cols = read_copy_header(line)
                if target[0] == "pgcrypt_kms" and target[1] in KEYRING_TABLES:
                    copy_target, copy_cols = target[1], cols
                    if copy_target in sch.keyring_seen:
                        die("the dump holds the keyring of several databases "
                            "(pg_dumpall?); give the dump of one database")
                    sch.keyring_seen.add(copy_target)
                    sch.keyring_blocks += 1
                    if copy_target == "key_versions":
                        sch.version_cols = cols
                    elif copy_target == "keys":
                        sch.keys_cols = cols
                else:
                    # skip the data of other tables in this pass
                    for l2 in f:
                        lineno += 1
                        if l2.rstrip(b"\n") == b"\\.":
                            break
                    else:
                        copy_target, copy_cols = target, cols
                        break
                continue
    if copy_target is not None:
        raise DumpFormatError("the dump ends inside the COPY data of %s (no \"\\.\" line): it is "
                              "truncated" % qname(copy_target if isinstance(copy_target, tuple)
                                                  else ("pgcrypt_kms", copy_target)))
    if plain and not complete:
        raise DumpFormatError("the dump does not end with pg_dump's last line \"%s\": it is "
                              "truncated, or not the whole output of pg_dump"
                              % DUMP_TRAILER.decode())
    return sch


KEYRING_TABLES = ("keys", "key_versions", "key_wrappings", "wrapped_keys")


def add_keyring_row(sch, table, row):
    if table == "keys":
        sch.keys[row["key_name"].decode("utf-8", "surrogateescape")] = row
    elif table == "key_versions":
        sch.versions[int(row["id"])] = row
    elif table == "key_wrappings":
        sch.wrappings.setdefault(_text(row, "key_name"), {})[int(row["wrapping"])] = row
    else:
        sch.wrapped[(_text(row, "key_name"), int(row["wrapping"]), _text(row, "secret"),
                     int(row["version"]))] = row


# ---------------------------------------------------------------- KMS access

def _text(row, col):
    v = row.get(col)
    return None if v is None else v.decode("utf-8", "surrogateescape")


class Unwrapper:
    """Unwraps data keys and index keys; never exposes them outside this process."""

    def __init__(self, args):
        self.args = args
        self._master = None
        self._clients = {}

    def _master_key(self):
        if self._master is None:
            path = self.args.local_key_file
            if not path:
                raise RecoverError("a local: key needs --local-key-file (the master key file "
                                   "named by pgcrypt_kms.local_key_file)")
            try:
                with open(path, "rb") as f:
                    data = f.read(LOCAL_MASTER_LEN + 1)
            except OSError as e:
                raise RecoverError("cannot read the local master key file %s: %s"
                                   % (path, e.strerror)) from None
            if len(data) != LOCAL_MASTER_LEN:
                raise RecoverError("the local master key file %s is not %d bytes long"
                                   % (path, LOCAL_MASTER_LEN))
            self._master = data
        return self._master

    def _local(self, name, kms_context, wrapped):
        if not name or len(name.encode()) > 256:
            raise RecoverError("invalid local key name")
        if (len(wrapped) != len(LOCAL_WRAP_HEADER) + NONCE_LEN + DEK_LEN + GCM_TAG_LEN
                or wrapped[:3] != LOCAL_WRAP_HEADER):
            raise RecoverError("the wrapped key is not a local: provider key of the expected size")
        kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=LOCAL_HKDF_SALT,
                   info=name.encode("utf-8", "surrogateescape")).derive(self._master_key())
        ctx = (kms_context if kms_context is not None else "{}").encode("utf-8", "surrogateescape")
        aad = LOCAL_WRAP_HEADER + name.encode("utf-8", "surrogateescape") + b"\x00" + ctx
        try:
            return AESGCM(kek).decrypt(wrapped[3:15], wrapped[15:], aad)
        except InvalidTag:
            raise RecoverError("could not unwrap with the local master key: another master key "
                               "file, or the wrapped key or its KMS context was changed") from None

    def _aws_client(self, region):
        if region not in self._clients:
            try:
                import botocore.session
                import botocore.config
            except ImportError:
                raise RecoverError("aws-kms: keys need python3-botocore") from None
            endpoint = (self.args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS")
                        or os.environ.get("AWS_ENDPOINT_URL"))
            session = botocore.session.get_session()
            cfg = botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"})
            self._clients[region] = session.create_client(
                "kms", region_name=region, endpoint_url=endpoint or None, config=cfg)
        return self._clients[region]

    def _aws(self, key_id, ref, kms_context, wrapped):
        import botocore.exceptions
        region = None
        m = re.match(r"arn:[^:]+:kms:([^:]+):", key_id or ref)
        if m:
            region = m.group(1)
        region = (region or self.args.region or os.environ.get("AWS_REGION")
                  or os.environ.get("AWS_DEFAULT_REGION"))
        req = {"CiphertextBlob": wrapped}
        if key_id is not None:
            req["KeyId"] = key_id
        ctx = json.loads(kms_context) if kms_context else {}
        if not isinstance(ctx, dict) or not all(isinstance(v, str) for v in ctx.values()):
            raise RecoverError("the key's kms_context is not a JSON object of strings")
        if ctx:
            req["EncryptionContext"] = ctx
        try:
            resp = self._aws_client(region).decrypt(**req)
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            raise RecoverError("AWS KMS Decrypt of key %s refused: %s: %s (request id %s)"
                               % (key_id or ref, err.get("Code"), err.get("Message"),
                                  e.response.get("ResponseMetadata", {}).get("RequestId"))) from None
        except botocore.exceptions.BotoCoreError as e:
            raise RecoverError("AWS KMS Decrypt of key %s failed: %s" % (key_id or ref, e)) from None
        return resp["Plaintext"]

    def unwrap(self, kms_key, kms_key_arn, kms_context, wrapped, check, what):
        """Unwrap a key and verify it against its key-check value (FORMAT.md §4)."""
        if wrapped is None:
            raise RecoverError("%s: no wrapped key is stored (destroyed)" % what)
        if kms_key.startswith("local:"):
            key = self._local(kms_key[len("local:"):], kms_context, wrapped)
        elif kms_key.startswith("aws-kms:"):
            # FORMAT.md §5.1: the stored key ARN when there is one; else the reference,
            # except an alias (it may point elsewhere by now: KMS reads the key from the blob)
            key_id = kms_key[len("aws-kms:"):]
            if kms_key_arn:
                key_id = kms_key_arn[len("aws-kms:"):] if kms_key_arn.startswith("aws-kms:") else kms_key_arn
            elif re.match(r"(arn:[^:]+:kms:[^:]*:[^:]*:)?alias/", key_id):
                key_id = None
            key = self._aws(key_id, kms_key[len("aws-kms:"):], kms_context, wrapped)
        else:
            raise RecoverError("%s: unknown KMS key reference scheme" % what)
        if len(key) != DEK_LEN or check is None or not hmac.compare_digest(key_check(key), check):
            raise RecoverError("%s: the unwrapped key does not match its key-check value; "
                               "it was not used" % what)
        return key


class Keyring:
    """The dump's keyring: unwraps each secret once, through the first wrapping that works
    (FORMAT.md 4 and 11): with --escrow-key the escrow wrapping made for that key, else (or
    when it fails) the primary KMS key, then each additional KMS wrapping in its order."""

    def __init__(self, sch, unwrapper, escrow=None):
        self.sch = sch
        self.unwrapper = unwrapper
        self.escrow = escrow
        self.deks = {}            # version id -> key, or RecoverError
        self.index_keys = {}      # key name -> [(label, number, key)]
        self.sources = {}         # "escrow" / "primary" / "kms wrapping" -> secrets unwrapped
        self.escrow_only = []     # (what, key check) of the secrets only an escrow blob gave

    def describe(self, vid):
        v = self.sch.versions.get(vid)
        if v is None:
            return "version id %d" % vid
        return "key \"%s\" version %s" % (_text(v, "key_name"), _text(v, "version"))

    def dek(self, vid):
        if vid not in self.deks:
            try:
                self.deks[vid] = self._load(vid)
            except RecoverError as e:
                self.deks[vid] = e
        d = self.deks[vid]
        if isinstance(d, RecoverError):
            raise d
        return d

    def _load(self, vid):
        v = self.sch.versions.get(vid)
        if v is None:
            raise RecoverError("key version id %d is not in the dump's keyring" % vid)
        name = _text(v, "key_name")
        k = self.sch.keys.get(name)
        if k is None:
            raise RecoverError("key \"%s\" of version id %d is not in the dump's keyring" % (name, vid))
        what = "key \"%s\" version %s" % (name, _text(v, "version"))
        state = _text(v, "state")
        if state == "destroyed" or v.get("wrapped_dek") is None:
            raise RecoverError("%s was destroyed (kms_destroy_key): its values cannot be recovered" % what)
        if state == "retired":
            print("pgck_recover: note: %s is retired; decrypting its values anyway" % what,
                  file=sys.stderr)
        return self.unwrap_secret(name, "dek", vid, _text(v, "kms_key"), _text(v, "kms_key_arn"),
                                  bytea_value(v["wrapped_dek"]), bytea_value(v.get("key_check")), what)

    def unwrap_secret(self, name, secret, number, ref, arn, wrapped, check, what):
        """One secret of key `name` (FORMAT.md 11.2: secret 'dek' with the version id, or
        'index' with the index key's number), checked against its key-check value."""
        ctx = _text(self.sch.keys[name], "kms_context")
        wrappings = sorted(self.sch.wrappings.get(name, {}).items())
        attempts = []
        if self.escrow is not None:
            for num, w in wrappings:
                if (_text(w, "kind") == "escrow"
                        and bytea_value(w.get("fingerprint")) == self.escrow.fingerprint):
                    attempts.append(("escrow", "escrow wrapping %d" % num,
                                     lambda num=num: self._escrow(name, num, secret, number, check, what)))
        attempts.append(("primary", "primary key %s" % ref,
                         lambda: self.unwrapper.unwrap(ref, arn, ctx, wrapped, check, what)))
        for num, w in wrappings:
            row = self.sch.wrapped.get((name, num, secret, number))
            if _text(w, "kind") == "kms" and row is not None:
                attempts.append(("kms wrapping", "wrapping %d (%s)" % (num, _text(w, "kms_key")),
                                 lambda w=w, row=row: self.unwrapper.unwrap(
                                     _text(w, "kms_key"), _text(row, "kms_key_arn"), ctx,
                                     bytea_value(row["wrapped"]), check, what)))
        reasons = []
        for source, label, fn in attempts:
            try:
                key = fn()
            except RecoverError as e:
                reasons.append("%s: %s" % (label, e))
                continue
            self.sources[source] = self.sources.get(source, 0) + 1
            if source == "escrow":
                # the escrow wrapping is tried first: no KMS blob of this secret was used, and
                # the dump alone vouches for it (its public key, blob and key check)
                self.escrow_only.append(("%s (%s %d)" % (what, "version id" if secret == "dek"
                                                         else "index key number", number), check))
            return key
        if len(reasons) == 1:
            raise RecoverError(reasons[0].split(": ", 1)[1])
        raise RecoverError("%s: no wrapping gave the key (%s)" % (what, "; ".join(reasons)))

    def _escrow(self, name, num, secret, number, check, what):
        row = self.sch.wrapped.get((name, num, secret, number))
        if row is None:
            raise RecoverError("the escrow wrapping holds no blob of this key")
        key = self.escrow.unwrap(bytea_value(row["wrapped"]))
        row_check = bytea_value(row.get("key_check"))
        if (len(key) != DEK_LEN or check is None or row_check is None
                or not hmac.compare_digest(key_check(key), check)
                or not hmac.compare_digest(key_check(key), row_check)):
            raise RecoverError("%s: the key unwrapped with the escrow key does not match its "
                               "key-check value; it was not used" % what)
        return key

    def index_secrets(self, name):
        """[(label, number, ref, arn, wrapped, check)] of the key's stored index keys:
        current first, then previous."""
        k = self.sch.keys.get(name)
        out = []
        if k is None or _text(k, "blind_index") in (None, "none"):
            return out
        ref = _text(k, "index_kms_key") or _text(k, "kms_key")
        current = int(k["index_key_version"]) if k.get("index_key_version") is not None else 1
        for label, number, wcol, ccol, acol in (
                ("current", current, "index_key_wrapped", "index_key_check", "index_kms_key_arn"),
                ("previous", current - 1, "prev_index_key_wrapped", "prev_index_key_check",
                 "prev_index_kms_key_arn")):
            w = bytea_value(k.get(wcol))
            if w is not None:
                out.append((label, number, ref, _text(k, acol), w, bytea_value(k.get(ccol))))
        return out

    def index_keys_of(self, name):
        """[(label, key)] current first, then previous; for --verify-tags."""
        if name not in self.index_keys:
            self.index_keys[name] = [
                (label, self.unwrap_secret(name, "index", number, ref, arn, w, check,
                                           "%s blind-index key of key \"%s\"" % (label, name)))
                for label, number, ref, arn, w, check in self.index_secrets(name)]
        return self.index_keys[name]


# ---------------------------------------------------------------- escrow keys (FORMAT.md 11.4)

ESCROW_MIN_BITS = 3072
SECRET_FILE_MAX = 1 << 20


def read_private_file(path, what):
    """A file holding a secret: a regular file no group or other user can access."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        die("cannot open the %s %s: %s" % (what, path, e.strerror))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            die("the %s %s is not a regular file" % (what, path))
        if st.st_mode & 0o077:
            die("the %s %s is accessible by group or others (mode %04o); refusing to use it: "
                "chmod 600 it" % (what, path, st.st_mode & 0o7777))
        data = f.read(SECRET_FILE_MAX + 1)
    if len(data) > SECRET_FILE_MAX:
        die("the %s %s is too large" % (what, path))
    return data


def escrow_passphrase(args):
    """From --passphrase-file, the variable --passphrase-env names, or a prompt on the
    terminal; never from the command line."""
    if args.passphrase_file and args.passphrase_env:
        die("give --passphrase-file or --passphrase-env, not both")
    if args.passphrase_file:
        data = read_private_file(args.passphrase_file, "passphrase file")
        if data.endswith(b"\n"):
            data = data[:-1]
            if data.endswith(b"\r"):
                data = data[:-1]
        return data
    if args.passphrase_env:
        v = os.environb.get(args.passphrase_env.encode())
        if not v:
            die("the environment variable %s (--passphrase-env) is not set or empty"
                % args.passphrase_env)
        return v
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
    except OSError:
        die("the escrow key's passphrase: no terminal to ask it on; give --passphrase-file or "
            "--passphrase-env")
    import getpass
    return getpass.getpass("Passphrase of the escrow key %s: " % args.escrow_key).encode()


class EscrowKey:
    """The offline escrow private key (RSA, >= 3072 bits, passphrase-protected PKCS#8 PEM)."""

    def __init__(self, path, passphrase):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        pem = read_private_file(path, "escrow key")
        if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in pem:
            die("the escrow key %s is not a passphrase-protected PKCS#8 PEM private key (no "
                "\"BEGIN ENCRYPTED PRIVATE KEY\"); keep it encrypted, e.g. openssl pkcs8 -topk8 "
                "-v2 aes-256-cbc" % path)
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except (ValueError, TypeError):
            die("cannot open the escrow key %s: wrong passphrase, or a damaged key file" % path)
        except Exception:
            die("cannot open the escrow key %s: not a key this tool reads" % path)
        if not isinstance(key, rsa.RSAPrivateKey):
            die("the escrow key %s is not an RSA key" % path)
        if key.key_size < ESCROW_MIN_BITS:
            die("the escrow key %s has %d bits; escrow keys have %d or more"
                % (path, key.key_size, ESCROW_MIN_BITS))
        self.key = key
        self.public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.fingerprint = hashlib.sha256(self.public_der).digest()
        self.modulus_len = (key.key_size + 7) // 8

    def unwrap(self, wrapped):
        """RSAES-OAEP-DECRYPT, SHA-256 and MGF1-SHA-256, empty label (FORMAT.md 11.4)."""
        from cryptography.hazmat.primitives.asymmetric import padding
        if wrapped is None or len(wrapped) != self.modulus_len:
            raise RecoverError("the escrow blob is not %d bytes long (the escrow key's modulus)"
                               % self.modulus_len)
        try:
            return self.key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()),
                                                          algorithm=hashes.SHA256(), label=None))
        except ValueError:
            raise RecoverError("the escrow blob does not decrypt with this escrow key "
                               "(RSA-OAEP-SHA-256)") from None


def check_escrow_matches(sch, escrow):
    """The escrow key must be one the dump's keyring has wrappings for (its public half's
    SHA-256 fingerprint, FORMAT.md 11.1); the stored public key must be that key."""
    stored = []
    matched = 0
    for name, ws in sorted(sch.wrappings.items()):
        for num, w in sorted(ws.items()):
            if _text(w, "kind") != "escrow":
                continue
            fp = bytea_value(w.get("fingerprint"))
            stored.append(fp.hex() if fp else "?")
            if fp == escrow.fingerprint:
                pub = bytea_value(w.get("public_key"))
                if pub != escrow.public_der or hashlib.sha256(pub or b"").digest() != fp:
                    die("escrow wrapping %d of key \"%s\" has this escrow key's fingerprint but "
                        "another public key: the dump's keyring is inconsistent" % (num, name))
                matched += 1
    if not stored:
        die("the dump's keyring has no escrow wrapping (pgcrypt_kms.key_wrappings with kind "
            "escrow); --escrow-key cannot help with this dump")
    if not matched:
        die("wrong escrow key: its public half (SHA-256 fingerprint %s) is not the escrow key of "
            "any key in the dump (their fingerprints: %s)"
            % (escrow.fingerprint.hex(), ", ".join(sorted(set(stored)))))
    return matched


# ---------------------------------------------------------------- re-wrap under a new master key

def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


def sql_bytea(b):
    return "'\\x%s'::bytea" % b.hex()


class Rewrapper:
    """Wraps keys under the new master key exactly as the extension's provider would
    (FORMAT.md 5.1 AWS Encrypt with the key's kms_context as EncryptionContext; 5.2 local:)."""

    def __init__(self, target, unwrapper):
        self.target = target
        self.unwrapper = unwrapper
        if target.startswith("aws-kms:") and len(target) > len("aws-kms:"):
            self.scheme, self.rest = "aws-kms", target[len("aws-kms:"):]
        elif target.startswith("local:") and 0 < len(target[len("local:"):].encode()) <= 256:
            self.scheme, self.rest = "local", target[len("local:"):]
        else:
            raise ValueError("--rewrap-to takes aws-kms:<key id, ARN or alias> or local:<name>, "
                             "got %r" % target)

    def wrap(self, kms_context, key, what):
        """(wrapped blob, key ARN or None), checked by unwrapping it again."""
        if self.scheme == "local":
            name = self.rest.encode("utf-8", "surrogateescape")
            kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=LOCAL_HKDF_SALT,
                       info=name).derive(self.unwrapper._master_key())
            ctx = (kms_context if kms_context is not None else "{}").encode("utf-8", "surrogateescape")
            nonce = os.urandom(NONCE_LEN)
            blob = LOCAL_WRAP_HEADER + nonce + AESGCM(kek).encrypt(
                nonce, key, LOCAL_WRAP_HEADER + name + b"\x00" + ctx)
            arn = None
        else:
            blob, arn = self._aws_encrypt(kms_context, key, what)
        # the new blob must give the key back, as the restored cluster will unwrap it
        back = self.unwrapper.unwrap(self.target, arn, kms_context, blob, key_check(key),
                                     what + " (re-wrapped)")
        if not hmac.compare_digest(back, key):
            raise RecoverError("%s: the re-wrapped key does not unwrap to itself" % what)
        return blob, arn

    def _aws_encrypt(self, kms_context, key, what):
        import botocore.exceptions
        m = re.match(r"arn:[^:]+:kms:([^:]+):", self.rest)
        region = ((m.group(1) if m else None) or self.unwrapper.args.region
                  or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        ctx = json.loads(kms_context) if kms_context else {}
        if not isinstance(ctx, dict) or not all(isinstance(v, str) for v in ctx.values()):
            raise RecoverError("%s: the key's kms_context is not a JSON object of strings" % what)
        req = {"KeyId": self.rest, "Plaintext": key}
        if ctx:
            req["EncryptionContext"] = ctx
        try:
            resp = self.unwrapper._aws_client(region).encrypt(**req)
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            raise RecoverError("%s: AWS KMS Encrypt under %s refused: %s: %s (request id %s)"
                               % (what, self.target, err.get("Code"), err.get("Message"),
                                  e.response.get("ResponseMetadata", {}).get("RequestId"))) from None
        except botocore.exceptions.BotoCoreError as e:
            raise RecoverError("%s: AWS KMS Encrypt under %s failed: %s" % (what, self.target, e)) from None
        arn = resp.get("KeyId")
        return resp["CiphertextBlob"], (arn if arn and arn.startswith("arn:") else None)


def rewrap_sql(sch, keyring, rewrapper, source_name):
    """Every live DEK version and index key of every key, wrapped under the new master key,
    as a SQL script that refuses (and changes nothing) unless the keyring still holds what
    the dump held.  Returns (script text, number of keys, number of wrapped secrets)."""
    target = rewrapper.target
    has_arns = "kms_key_arn" in sch.version_cols
    has_index_arns = "index_kms_key_arn" in sch.keys_cols
    body = []
    nkeys = nsecrets = 0

    def guard(what):
        body.append("    GET DIAGNOSTICS n = ROW_COUNT;\n"
                    "    IF n <> 1 THEN\n"
                    "        RAISE EXCEPTION %s;\n"
                    "    END IF;\n" % sql_literal(
                        "pgck_recover re-wrap: %s is not as in the dump this script was made from "
                        "(already re-wrapped, or another keyring); nothing was changed" % what))

    for name in sorted(sch.keys):
        k = sch.keys[name]
        if k.get("destroyed") is not None:
            print("pgck_recover: note: key \"%s\" was destroyed; nothing to re-wrap" % name,
                  file=sys.stderr)
            continue
        ctx = _text(k, "kms_context")
        nkeys += 1
        for vid in sorted(v for v in sch.versions if _text(sch.versions[v], "key_name") == name):
            v = sch.versions[vid]
            if v.get("wrapped_dek") is None:
                continue
            what = "key \"%s\" version %s (id %d)" % (name, _text(v, "version"), vid)
            blob, arn = rewrapper.wrap(ctx, keyring.dek(vid), what)
            sets = "kms_key = %s, wrapped_dek = %s" % (sql_literal(target), sql_bytea(blob))
            if has_arns:
                sets += ", kms_key_arn = %s" % (sql_literal(arn) if arn else "NULL")
            body.append("    UPDATE pgcrypt_kms.key_versions SET %s\n"
                        "     WHERE id = %d AND key_name = %s\n"
                        "       AND key_check = %s AND wrapped_dek = %s;\n"
                        % (sets, vid, sql_literal(name), sql_bytea(bytea_value(v["key_check"])),
                           sql_bytea(bytea_value(v["wrapped_dek"]))))
            guard(what)
            nsecrets += 1
        index = keyring.index_secrets(name)
        if index:
            sets = ["kms_key = %s" % sql_literal(target), "index_kms_key = %s" % sql_literal(target)]
            conds = ["key_name = %s" % sql_literal(name), "destroyed IS NULL"]
            have_prev = False
            for label, number, ref, arn, w, check in index:
                what = "the %s blind-index key of key \"%s\"" % (label, name)
                key = keyring.unwrap_secret(name, "index", number, ref, arn, w, check, what)
                blob, new_arn = rewrapper.wrap(ctx, key, what)
                col = "index_key" if label == "current" else "prev_index_key"
                sets.append("%s_wrapped = %s" % (col, sql_bytea(blob)))
                if has_index_arns:
                    sets.append("%s = %s" % ("index_kms_key_arn" if label == "current"
                                             else "prev_index_kms_key_arn",
                                             sql_literal(new_arn) if new_arn else "NULL"))
                conds.append("%s_wrapped = %s" % (col, sql_bytea(w)))
                conds.append("%s_check = %s" % (col, sql_bytea(check)))
                have_prev = have_prev or label == "previous"
                nsecrets += 1
            if not have_prev:
                conds.append("prev_index_key_wrapped IS NULL")
            body.append("    UPDATE pgcrypt_kms.keys SET %s\n     WHERE %s;\n"
                        % (", ".join(sets), "\n       AND ".join(conds)))
        else:
            body.append("    UPDATE pgcrypt_kms.keys SET kms_key = %s\n"
                        "     WHERE key_name = %s AND destroyed IS NULL AND kms_key = %s;\n"
                        % (sql_literal(target), sql_literal(name), sql_literal(_text(k, "kms_key"))))
        guard("key \"%s\"" % name)
    head = ("-- pgcrypt_kms keyring re-wrapped under %s by pgck_recover.py from %s (%s UTC):\n"
            "-- %d keys, %d wrapped keys.  No plaintext key is in this script, only blobs wrapped by\n"
            "-- the new master key and the key-check values the dump already held.\n"
            "-- Run it once, as the owner of the pgcrypt_kms keyring (the extension's owner), in the\n"
            "-- database the dump was restored into:  psql -v ON_ERROR_STOP=1 -d DB -f THIS_FILE\n"
            "-- Each UPDATE changes its row only if the row still holds the dump's wrapped key and\n"
            "-- key check; otherwise the whole script is rolled back.  Additional wrappings\n"
            "-- (pgcrypt_kms.key_wrappings) are left as they are.\n"
            % (target.replace("\n", " "), source_name.replace("\n", " "),
               datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S"), nkeys, nsecrets))
    script = (head + "BEGIN;\nSET LOCAL standard_conforming_strings = on;\n"
              "DO $pgck_rewrap$\nDECLARE\n    n int;\nBEGIN\n" + "".join(body)
              + "END\n$pgck_rewrap$;\nCOMMIT;\n")
    return script, nkeys, nsecrets


# ---------------------------------------------------------------- contexts

_TEMPLATE = re.compile(r"\{\{|\}\}|\{([^{}]+)\}|[{}]")


class ContextTemplate:
    def __init__(self, template):
        self.parts = []           # str literal or ("col", name)
        pos = 0
        for m in _TEMPLATE.finditer(template):
            if m.start() > pos:
                self.parts.append(template[pos:m.start()])
            tok = m.group(0)
            if tok == "{{":
                self.parts.append("{")
            elif tok == "}}":
                self.parts.append("}")
            elif m.group(1) is not None:
                self.parts.append(("col", m.group(1)))
            else:
                raise ValueError("unbalanced brace in context template %r" % template)
            pos = m.end()
        if pos < len(template):
            self.parts.append(template[pos:])

    def columns(self):
        return [p[1] for p in self.parts if isinstance(p, tuple)]

    def render(self, row):
        out = bytearray()
        for p in self.parts:
            if isinstance(p, tuple):
                v = row.get(p[1])
                if v is None:
                    raise RecoverError("context column \"%s\" is NULL in this row" % p[1])
                out += v
            else:
                out += p.encode("utf-8", "surrogateescape")
        return bytes(out)


def split_column_spec(spec):
    """'schema.table.col' or 'table.col' -> (schema or None, table, col)."""
    parts, pos = parse_qualified(spec.encode("utf-8", "surrogateescape"), 0)
    if pos != len(spec.encode("utf-8", "surrogateescape")) or len(parts) not in (2, 3):
        raise ValueError("expected TABLE.COLUMN or SCHEMA.TABLE.COLUMN, got %r" % spec)
    return (None,) + parts if len(parts) == 2 else parts


# ---------------------------------------------------------------- output files

def open_private(path, force):
    """A new file, mode 0600; never an existing file others can read."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        if not force:
            die("%s exists; refusing to overwrite it (--force)" % path)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            die("%s is readable or writable by group or others "
                             "(mode %04o): refusing to write plaintext into it"
                             % (path, st.st_mode & 0o7777))
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def open_stdout():
    st = os.fstat(sys.stdout.fileno())
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o044:
        die("standard output is a file that group or others can read "
                         "(mode %04o): refusing to write plaintext into it" % (st.st_mode & 0o7777))
    return os.fdopen(os.dup(sys.stdout.fileno()), "wb")


def safe_file_name(schema, table):
    """SCHEMA.TABLE.csv: ASCII letters, digits, _ and - as they are; every other character
    escaped with a fixed width, so that no two names give one file: %XX below U+0100, %uXXXX
    up to U+FFFF, %UXXXXXX above (hex digits upper case)."""
    def enc(s):
        return "".join(c if (c.isascii() and (c.isalnum() or c in "_-")) else
                       "%%%02X" % ord(c) if ord(c) < 0x100 else
                       "%%u%04X" % ord(c) if ord(c) < 0x10000 else "%%U%06X" % ord(c) for c in s)
    return "%s.%s.csv" % (enc(schema), enc(table))


# ---------------------------------------------------------------- the run

PR_SET_DUMPABLE = 4


def disable_core_dumps():
    """This process holds the escrow private key and every data key it unwraps: no core file
    (RLIMIT_CORE 0) and, on Linux, not dumpable (no core even through a core_pattern pipe, no
    ptrace or /proc/PID/mem by other processes of the same user).  Skipped only where the
    call does not exist; a failure of the call is an error."""
    try:
        import resource
    except ImportError:           # not a Unix
        resource = None
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0)")


class Failure:
    def __init__(self, table, column, line, what):
        self.table, self.column, self.line, self.what = table, column, line, what


def main(argv=None):
    try:
        disable_core_dumps()
    except (OSError, ValueError) as e:
        die("cannot disable core dumps of this process (%s); refusing to unwrap any key" % e)
    ap = argparse.ArgumentParser(
        prog="pgck_recover.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    ap.add_argument("dump", help="pg_dump of one database: plain or custom format (-Fc); "
                    "\"-\" reads a plain dump from standard input")
    ap.add_argument("--csv-dir", help="write SCHEMA.TABLE.csv per table with enc_text columns here "
                    "(created with mode 0700 if missing)")
    ap.add_argument("--out", help="write the dump with plaintext in place of enc_text values "
                    "(\"-\": standard output)")
    ap.add_argument("--all-tables", action="store_true",
                    help="with --csv-dir, write every table's data, not only tables with enc_text columns")
    ap.add_argument("--column", action="append", default=[], metavar="[SCHEMA.]TABLE.COLUMN",
                    help="decrypt only these columns (repeatable); also names a column the dump "
                    "does not declare enc_text")
    ap.add_argument("--context", action="append", default=[], metavar="[SCHEMA.]TABLE.COLUMN=TEMPLATE",
                    help="the context of a column's values: literal text with {col} for the text of "
                    "another column of the same row ({{ }} for braces)")
    ap.add_argument("--local-key-file", help="the master key file of the local: provider "
                    "(pgcrypt_kms.local_key_file)")
    ap.add_argument("--endpoint-url", help="AWS KMS endpoint URL (default: AWS_ENDPOINT_URL_KMS, "
                    "AWS_ENDPOINT_URL, else AWS's)")
    ap.add_argument("--region", help="AWS region for key references that are not ARNs "
                    "(default: AWS_REGION, AWS_DEFAULT_REGION, the profile)")
    ap.add_argument("--verify-tags", action="store_true",
                    help="also recompute every blind-index tag from the plaintext with the key's "
                    "index keys (unwraps them) and count the tags that match")
    ap.add_argument("--keep-going", action="store_true",
                    help="on a value that cannot be decrypted, leave its ciphertext in the output, "
                    "report it, go on, and keep the outputs (exit status 1)")
    ap.add_argument("--force", action="store_true",
                    help="overwrite existing output files that only their owner can access")
    ap.add_argument("--escrow-key", metavar="FILE",
                    help="the offline escrow private key (passphrase-protected PKCS#8 PEM, RSA >= 3072 "
                    "bits, mode 0600): unwrap each key from its escrow wrapping (FORMAT.md 11) first")
    ap.add_argument("--passphrase-file", metavar="FILE",
                    help="file (mode 0600) holding the escrow key's passphrase (one trailing newline "
                    "ignored); default: ask on the terminal")
    ap.add_argument("--passphrase-env", metavar="VAR",
                    help="name of the environment variable holding the escrow key's passphrase")
    ap.add_argument("--rewrap-to", metavar="aws-kms:KEY | local:NAME",
                    help="wrap every DEK version and index key of the keyring under this new master "
                    "key and write the SQL that installs them (--rewrap-sql)")
    ap.add_argument("--rewrap-sql", metavar="FILE",
                    help="where --rewrap-to writes its SQL script (mode 0600; \"-\": standard output)")
    ap.add_argument("--expect-sha256", metavar="HEX",
                    help="the SHA-256 of the dump file (or of the dump on standard input), as recorded "
                    "at backup time: verified before anything is read or written, else the run stops")
    ap.add_argument("--list", action="store_true",
                    help="only list the keyring and the enc_text columns found (no KMS call)")
    args = ap.parse_args(argv)

    if not args.list and not args.csv_dir and not args.out and not args.rewrap_to:
        ap.error("give --csv-dir DIR and/or --out FILE, --rewrap-to (or --list)")
    if bool(args.rewrap_to) != bool(args.rewrap_sql):
        ap.error("--rewrap-to and --rewrap-sql go together")
    if (args.passphrase_file or args.passphrase_env) and not args.escrow_key:
        ap.error("--passphrase-file and --passphrase-env are for --escrow-key")
    expect = None
    if args.expect_sha256 is not None:
        if not re.fullmatch(r"[0-9A-Fa-f]{64}", args.expect_sha256):
            ap.error("--expect-sha256 takes the 64 hex digits of a SHA-256")
        expect = bytes.fromhex(args.expect_sha256)
    rewrapper = None
    if args.rewrap_to:
        try:
            rewrapper = Rewrapper(args.rewrap_to, None)
        except ValueError as e:
            ap.error(str(e))

    shown = "standard input" if args.dump == "-" else args.dump
    pin = None                    # (fd, (size, mtime, ctime)) of a dump file whose SHA-256 was verified
    digest = hashlib.sha256()
    if args.dump == "-":
        # a dump on standard input (pg_restore -f - DUMP | ...) is read twice: spool it to
        # an anonymous file (it holds ciphertext only, like the dump)
        spool = tempfile.TemporaryFile()
        while True:
            chunk = sys.stdin.buffer.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            spool.write(chunk)
        spool.flush()
        args.dump = "/dev/fd/%d" % spool.fileno()
    elif expect is not None:
        # hash the file, then read that same file (this descriptor) in every pass, and stop if
        # it changes meanwhile: what is verified is what is read
        try:
            fd = os.open(args.dump, os.O_RDONLY)
        except OSError as e:
            print("pgck_recover: cannot read %s: %s" % (shown, e.strerror), file=sys.stderr)
            return 2
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            die("%s: --expect-sha256 needs the dump as a file (or on standard input)" % shown)
        pin = (fd, (st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            digest.update(chunk)
        args.dump = "/dev/fd/%d" % fd
    if expect is not None:
        if not hmac.compare_digest(digest.digest(), expect):
            print("pgck_recover: %s: its SHA-256 is %s, not the %s of --expect-sha256: the dump was "
                  "changed, or is another file; nothing read, nothing written"
                  % (shown, digest.hexdigest(), expect.hex()), file=sys.stderr)
            return 2
        print("pgck_recover: %s: SHA-256 %s as expected" % (shown, digest.hexdigest()), file=sys.stderr)

    def check_unchanged():
        if pin is not None:
            st = os.fstat(pin[0])
            if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) != pin[1]:
                raise DumpFormatError("the dump file changed while it was read (after its SHA-256 "
                                      "was verified)")

    try:
        sch = scan_schema(args.dump)
        check_unchanged()
    except OSError as e:
        print("pgck_recover: cannot read %s: %s" % (shown, e.strerror), file=sys.stderr)
        return 2
    except DumpFormatError as e:
        print("pgck_recover: %s: %s" % (shown, e), file=sys.stderr)
        return 2
    if not sch.versions:
        print("pgck_recover: the dump holds no pgcrypt_kms keyring (COPY pgcrypt_kms.key_versions)",
              file=sys.stderr)
        return 2

    # which columns to decrypt: (schema, table) -> set(columns)
    wanted = None
    try:
        if args.column:
            wanted = [split_column_spec(c) for c in args.column]
        contexts = []
        for spec in args.context:
            col, sep, template = spec.partition("=")
            if not sep:
                raise ValueError("--context needs [SCHEMA.]TABLE.COLUMN=TEMPLATE, got %r" % spec)
            contexts.append((split_column_spec(col), ContextTemplate(template)))
    except ValueError as e:
        ap.error(str(e))

    def match(spec, table, col):
        s, t, c = spec
        return (s is None or s == table[0]) and t == table[1] and c == col

    def columns_for(table, copy_cols):
        if wanted is not None:
            return [c for c in copy_cols if any(match(w, table, c) for w in wanted)]
        enc = sch.enc_columns_of(table)
        return [c for c in copy_cols if c in enc]

    def context_for(table, col):
        found = [t for spec, t in contexts if match(spec, table, col)]
        if len(found) > 1:
            die("several --context options name %s.%s" % (qname(table), col))
        return found[0] if found else None

    if args.list:
        for name in sorted(sch.keys):
            k = sch.keys[name]
            print("key %s: kms_key=%s kms_context=%s blind_index=%s index_bits=%s%s"
                  % (name, _text(k, "kms_key"), _text(k, "kms_context"), _text(k, "blind_index"),
                     _text(k, "index_bits"), " destroyed" if k.get("destroyed") else ""))
        for vid in sorted(sch.versions):
            v = sch.versions[vid]
            print("  version id %d: key %s version %s state %s kms_key %s"
                  % (vid, _text(v, "key_name"), _text(v, "version"), _text(v, "state"), _text(v, "kms_key")))
        for t in sorted(set(sch.enc_columns) | set(sch.parents)):
            cols = sch.enc_columns_of(t)
            if cols:
                print("enc_text columns of %s: %s" % (qname(t), ", ".join(sorted(cols))))
        for name, ws in sorted(sch.wrappings.items()):
            for num, w in sorted(ws.items()):
                fp = bytea_value(w.get("fingerprint"))
                print("key %s: wrapping %d: %s %s, %d wrapped keys"
                      % (name, num, _text(w, "kind"),
                         ("fingerprint " + fp.hex()) if fp else _text(w, "kms_key"),
                         sum(1 for (n, x, _s, _v) in sch.wrapped if n == name and x == num)))
        return 0

    escrow = None
    if args.escrow_key:
        escrow = EscrowKey(args.escrow_key, escrow_passphrase(args))
        n = check_escrow_matches(sch, escrow)
        print("pgck_recover: escrow key %s (fingerprint %s): escrow wrapping of %d key(s)"
              % (args.escrow_key, escrow.fingerprint.hex(), n), file=sys.stderr)
    unwrapper = Unwrapper(args)
    keyring = Keyring(sch, unwrapper, escrow)

    if rewrapper is not None:
        rewrapper.unwrapper = unwrapper
        try:
            script, nkeys, nsecrets = rewrap_sql(sch, keyring, rewrapper, os.path.basename(shown))
            check_unchanged()
        except DumpFormatError as e:
            print("pgck_recover: %s: %s; no SQL written" % (shown, e), file=sys.stderr)
            return 2
        except RecoverError as e:
            print("pgck_recover: error: re-wrap: %s" % e, file=sys.stderr)
            print("pgck_recover: no SQL written", file=sys.stderr)
            return 1
        if args.rewrap_sql == "-":
            sqlf = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        else:
            sqlf = open_private(args.rewrap_sql, args.force)
        with sqlf:
            sqlf.write(script.encode("utf-8", "surrogateescape"))
        print("pgck_recover: re-wrapped %d wrapped keys of %d keys under %s; SQL in %s"
              % (nsecrets, nkeys, args.rewrap_to, args.rewrap_sql), file=sys.stderr)
        if not args.csv_dir and not args.out:
            print_sources(keyring, expect is not None)
            return 0
    failures = []
    stats = {}                    # (table, col) -> [decrypted, failed, null]
    tagstats = {"current": 0, "previous": 0, "unmatched": 0}
    created = []
    out = None
    csv_files = {}
    csv_names = {}                # file name -> table: two tables never share one file
    inodes = {}                   # (device, inode) of each output file -> what it holds

    def fail_cleanup():
        for fobj in list(csv_files.values()) + ([out] if out is not None else []):
            try:
                fobj.close()
            except OSError:
                pass
        for p in created:
            try:
                os.unlink(p)
            except OSError:
                pass

    try:
        if args.csv_dir:
            if not os.path.isdir(args.csv_dir):
                os.mkdir(args.csv_dir, 0o700)
        if args.out:
            if args.out == "-":
                out = open_stdout()
            else:
                out = open_private(args.out, args.force)
                created.append(args.out)
                ino = os.fstat(out.fileno())
                inodes[(ino.st_dev, ino.st_ino)] = ("--out",)

        with contextlib.closing(dump_lines(args.dump)) as f:
            lineno = 0
            block = None          # (table, copy_cols, decrypt_cols, csv file)
            gate = TocGate()
            lex = SqlLexer()
            for line in f:
                lineno += 1
                if block is None:
                    if out is not None:
                        out.write(line)
                    top = lex.top()
                    lex.feed(line)
                    if top and gate.feed(line) == b"TABLE DATA" and _COPY.match(line):
                        table, copy_cols = read_copy_header(line.rstrip(b"\n"))
                        if table[0] == "pgcrypt_kms":
                            block = (table, copy_cols, [], None, {})     # copied as it is
                            continue
                        dcols = columns_for(table, copy_cols)
                        csvf = None
                        if args.csv_dir and (dcols or args.all_tables):
                            fname = safe_file_name(*table)
                            if fname in csv_names:
                                die("%s %s; refusing (nothing written)"
                                    % ("the COPY data of %s appears twice in the dump (file" % qname(table)
                                       if csv_names[fname] == table else
                                       "%s and %s would both be written to (file"
                                       % (qname(csv_names[fname]), qname(table)), fname + ")"))
                            csv_names[fname] = table
                            path = os.path.join(args.csv_dir, fname)
                            csvf = open_private(path, args.force)
                            created.append(path)
                            csv_files[table] = csvf
                            ino = os.fstat(csvf.fileno())
                            if (ino.st_dev, ino.st_ino) in inodes:     # e.g. a case-insensitive file system
                                die("%s is a file this run already writes (%s); refusing (nothing written)"
                                    % (path, qname(inodes[(ino.st_dev, ino.st_ino)])))
                            inodes[(ino.st_dev, ino.st_ino)] = table
                            csvf.write(b",".join(csv_field(c.encode("utf-8", "surrogateescape"))
                                                 for c in copy_cols) + b"\n")
                        ctxs = {c: context_for(table, c) for c in dcols}
                        for c, t in ctxs.items():
                            for dep in (t.columns() if t else []):
                                if dep not in copy_cols:
                                    die("the context of %s.%s names column "
                                                     "\"%s\", which %s does not have"
                                                     % (qname(table), c, dep, qname(table)))
                        block = (table, copy_cols, [copy_cols.index(c) for c in dcols], csvf, ctxs)
                    continue
                if line.rstrip(b"\n") == b"\\.":
                    if out is not None:
                        out.write(line)
                    block = None
                    continue
                table, copy_cols, didx, csvf, ctxs = block
                fields = [copy_unescape(x) for x in
                          copy_row_fields(line.rstrip(b"\n"), len(copy_cols), table, lineno)]
                row = dict(zip(copy_cols, fields))
                changed = False
                for i in didx:
                    col = copy_cols[i]
                    st = stats.setdefault((table, col), [0, 0, 0])
                    val = fields[i] if i < len(fields) else None
                    if val is None:
                        st[2] += 1
                        continue
                    try:
                        env = Envelope.from_text(val)
                        tmpl = ctxs.get(col)
                        # the template applies to the values that were encrypted with a
                        # context (flags bit 1, authenticated); others have none
                        ctx = tmpl.render(row) if tmpl is not None and env.flags & FLAG_CONTEXT else None
                        dek = keyring.dek(env.version_id)
                        try:
                            plain = env.open(dek, ctx)
                        except RecoverError as e:
                            raise RecoverError("%s: %s" % (keyring.describe(env.version_id), e)) from None
                        if args.verify_tags and env.blind_tag is not None and env.plain_type is None:
                            vrow = sch.versions[env.version_id]
                            krow = sch.keys[_text(vrow, "key_name")]
                            label = "unmatched"
                            for lab, ikey in keyring.index_keys_of(_text(vrow, "key_name")):
                                if hmac.compare_digest(blind_tag(ikey, _text(krow, "blind_index"),
                                                                 int(krow["index_bits"]), plain),
                                                       env.blind_tag):
                                    label = lab
                                    break
                            tagstats[label] += 1
                        text = env.as_text(plain)
                    except RecoverError as e:
                        st[1] += 1
                        failures.append(Failure(table, col, lineno, str(e)))
                        if not args.keep_going:
                            raise _Abort() from None
                        continue
                    st[0] += 1
                    fields[i] = text
                    changed = True
                if out is not None:
                    if changed:
                        out.write(b"\t".join(copy_escape(x) for x in fields) + b"\n")
                    else:
                        out.write(line)
                if csvf is not None:
                    csvf.write(b",".join(csv_field(x) for x in fields) + b"\n")
            if block is not None:
                raise DumpFormatError("the dump ends inside the COPY data of %s (no \"\\.\" line): "
                                      "it is truncated" % qname(block[0]))
        check_unchanged()
        for fobj in list(csv_files.values()) + ([out] if out is not None else []):
            fobj.close()
    except _Abort:
        fail_cleanup()
    except DumpFormatError as e:
        fail_cleanup()
        print("pgck_recover: %s: %s; nothing written" % (shown, e), file=sys.stderr)
        return 2
    except RecoverError as e:
        failures.append(Failure(("?", "?"), "?", 0, str(e)))
        fail_cleanup()
    except BaseException:
        fail_cleanup()
        raise

    print_sources(keyring, expect is not None)
    for (table, col), (ok, bad, nulls) in sorted(stats.items()):
        print("pgck_recover: %s.%s: %d decrypted, %d failed, %d NULL"
              % (qname(table), col, ok, bad, nulls), file=sys.stderr)
    if args.verify_tags:
        print("pgck_recover: blind-index tags: %d match the current index key, %d the previous one, "
              "%d match neither" % (tagstats["current"], tagstats["previous"], tagstats["unmatched"]),
              file=sys.stderr)
    for fl in failures:
        print("pgck_recover: error: %s.%s (dump line %d): %s"
              % (qname(fl.table), fl.column, fl.line, fl.what), file=sys.stderr)
    if failures:
        if not args.keep_going:
            print("pgck_recover: nothing written (outputs removed); --keep-going leaves "
                  "undecryptable values as ciphertext", file=sys.stderr)
        return 1
    return 0


class _Abort(Exception):
    pass


def print_sources(keyring, verified=False):
    if keyring.sources:
        print("pgck_recover: keys unwrapped through: %s"
              % ", ".join("%s %d" % (k, v) for k, v in sorted(keyring.sources.items())),
              file=sys.stderr)
    if keyring.escrow_only:
        if verified:
            print("pgck_recover: note: %d key(s) unwrapped through the escrow wrapping alone (their "
                  "KMS blobs not used; the dump's SHA-256 was verified):" % len(keyring.escrow_only),
                  file=sys.stderr)
        else:
            print("pgck_recover: warning: %d key(s) unwrapped through the escrow wrapping alone: "
                  "their KMS blobs were not used, and anyone who can write to the dump can add a "
                  "key that passes this way (the escrow key is public); verify the dump with "
                  "--expect-sha256 (its SHA-256 recorded at backup time), or these key versions "
                  "and key checks against a record of the keyring:" % len(keyring.escrow_only),
                  file=sys.stderr)
        for what, check in keyring.escrow_only:
            print("pgck_recover:   %s, key check %s" % (what, check[:4].hex() if check else "-"),
                  file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("pgck_recover: interrupted", file=sys.stderr)
        sys.exit(2)
    except Exception as e:   # never a traceback: it could quote the dump's bytes
        print("pgck_recover: internal error (%s) while reading the dump; nothing written; "
              "a damaged dump is the likely cause" % type(e).__name__, file=sys.stderr)
        sys.exit(2)
