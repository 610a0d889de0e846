# pgcrypt_kms: PGXS build, pg_regress suite, C unit tests, sanitizer and fuzz targets.
# The whole suite (cluster, KMS emulator, every test) runs from test/run.sh.

EXTENSION = pgcrypt_kms
MODULE_big = pgcrypt_kms
DATA = $(wildcard sql/pgcrypt_kms--*.sql)
PGFILEDESC = "pgcrypt_kms - encrypted columns with KMS-wrapped keys"

# Pure modules: no PostgreSQL headers; shared with the unit tests and fuzzers.
PURE_OBJS = src/base64.o src/envelope.o src/aead.o src/sigv4.o src/kms_json.o src/blind_tag.o src/pkcs11_uri.o
PURE_OBJS += src/vault_json.o
PURE_OBJS += src/kmip_ttlv.o
PURE_OBJS += src/ore.o
PURE_OBJS += src/escrow.o
PURE_OBJS += src/keypages.o

OBJS = \
	src/pgcrypt_kms.o \
	src/guc.o \
	src/enc_text.o \
	src/blind_index.o \
	src/enc_typed.o \
	src/keyring.o \
	src/keycache.o \
	src/keymem.o \
	src/keycache_shared.o \
	src/usage.o \
	src/kms.o \
	src/kms_common.o \
	src/kms_local.o \
	src/http.o \
	src/aws_credentials.o \
	src/kms_aws.o \
	src/kms_pkcs11.o \
	src/kms_vault.o \
	src/kms_kmip.o \
	src/citus.o \
	src/wrappings.o \
	$(PURE_OBJS)

# -z now (with relro): every symbol bound at load, as Debian links PostgreSQL
# and its modules, also where a PostgreSQL built from source does not.  The
# GOT is then read-only, and no lazy binding runs in the middle of a key
# operation: the dynamic linker's resolver saves the vector registers on the
# stack, and they hold copies of the key state just moved through them.
SHLIB_LINK = -lssl -lcrypto -lcurl -ljansson -Wl,-z,relro -Wl,-z,now
# <p11-kit/pkcs11.h> (libp11-kit-dev): the PKCS#11 header of the pkcs11: provider
PG_CPPFLAGS = $(shell pkg-config --cflags p11-kit-1 2>/dev/null || echo -I/usr/include/p11-kit-1)

REGRESS = enc_text keys roundtrip tamper rotation privileges blind_index blind_reference blind_lookup lifecycle security usage tenants reencrypt_progress outside_review ore ore_keys migration_guards
REGRESS_OPTS = --inputdir=. --outputdir=test/results

PG_CONFIG ?= pg_config
# -Wextra's unused-parameter and sign-compare fire inside PostgreSQL's own headers.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers $(PGCK_CFLAGS)
PG_LDFLAGS = $(PGCK_LDFLAGS)

# Before the PGXS include: its clean rule tests "ifdef EXTRA_CLEAN" when it is
# read, so a list set after it was never removed, and the sanitizer stage's
# "make clean" left the uninstrumented unit tests in place.  test/fuzz/bin is
# not in it: a failed fuzz run's crash inputs are kept there (test/fuzz/run.sh
# rebuilds the fuzzers each time).  UNIT_OBJDIR and UNIT_TESTS are set below:
# the list is expanded only when clean runs.
EXTRA_CLEAN = test/results $(UNIT_OBJDIR) $(UNIT_TESTS)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: a changed struct must rebuild every object.
$(OBJS): $(wildcard src/*.h)

# ---------------------------------------------------------------- unit tests
VECTORS ?= test/vectors
UNIT_CC ?= cc
UNIT_CFLAGS = -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Isrc $(PGCK_CFLAGS)
# linked -z now as the extension is (SHLIB_LINK): test_keypages looks for key
# state left anywhere in the process
UNIT_LIBS = -lcrypto -ljansson -Wl,-z,relro -Wl,-z,now $(PGCK_LDFLAGS)
UNIT_TESTS = test/unit/test_envelope test/unit/test_wycheproof test/unit/test_sigv4 test/unit/test_kms_json test/unit/test_blind_tag test/unit/test_pkcs11_uri
UNIT_TESTS += test/unit/test_vault_json
UNIT_TESTS += test/unit/test_kmip_ttlv
UNIT_TESTS += test/unit/test_ore test/unit/test_envelope_ext
UNIT_TESTS += test/unit/test_escrow
UNIT_TESTS += test/unit/test_keypages
PURE_SRCS = $(PURE_OBJS:.o=.c)

# The pure modules are compiled once for all the unit tests (with their flags,
# not PGXS's), then linked into each: twelve tests used to compile every pure
# source twelve times, which was most of a units-only mutant's run.
UNIT_OBJDIR = test/unit/obj
UNIT_PURE_OBJS = $(patsubst src/%.o,$(UNIT_OBJDIR)/%.o,$(PURE_OBJS))

$(UNIT_OBJDIR)/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(UNIT_OBJDIR)
	$(UNIT_CC) $(UNIT_CFLAGS) -c -o $@ $<

$(UNIT_TESTS): test/unit/%: test/unit/%.c $(UNIT_PURE_OBJS) $(wildcard test/unit/*.h)
	$(UNIT_CC) $(UNIT_CFLAGS) -o $@ $< $(UNIT_PURE_OBJS) $(UNIT_LIBS)

.PHONY: unit unit-run check-all sanitize fuzz valgrind
unit: $(UNIT_TESTS)

unit-run: unit
	@for t in $(UNIT_TESTS); do echo "== $$t"; $$t $(VECTORS) || exit 1; done

# The whole suite (what CI runs).
check-all:
	bash test/run.sh

# Only the sanitizer stage of the suite: the extension and unit tests under
# ASan + UBSan (pg_regress and isolation tests against a preloaded server).
sanitize:
	PGCK_SANITIZE_ONLY=1 bash test/run.sh

# pg_regress with the server under valgrind memcheck (slow: minutes).
valgrind:
	bash test/valgrind.sh

# libFuzzer targets over the pure parsers, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz:
	bash test/fuzz/run.sh $(FUZZ_SECONDS)

# ---------------------------------------------------------------- PGXN
# pgcrypt_kms-<default_version>.zip of the committed tree (git archive, so
# nothing untracked or built gets in), with META.json at the top of its folder.
DIST_VERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
.PHONY: dist
dist:
	git archive --format=zip --prefix=$(EXTENSION)-$(DIST_VERSION)/ -o $(EXTENSION)-$(DIST_VERSION).zip HEAD
