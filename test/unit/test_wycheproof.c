/*-------------------------------------------------------------------------
 *
 * test_wycheproof.c
 *		The AEAD, HMAC and HKDF helpers of src/aead.c against Project
 *		Wycheproof (vectors/wycheproof, see its SOURCE.md).
 *
 * Usage: test_wycheproof [vectors-folder]   (default ../shared/vectors)
 *
 * AES-GCM: every case with the parameters pgcrypt_kms uses (256-bit key,
 * 96-bit nonce, 128-bit tag) is sealed and opened through pgck_aead_seal /
 * pgck_aead_open.  One PgckAead is kept per distinct key and reused across
 * every case with that key, seal and open calls alternate on it, and all
 * valid cases are replayed a second time on the same (by then well-used,
 * failure-seen) objects.  Cases with other parameters are counted and
 * reported, never silently dropped.
 *
 * HMAC-SHA-256: every case through pgck_hmac_new / pgck_hmac_sha256, the
 * first tagSize/8 bytes compared; the object is reused for a second message
 * and then the first again to show the precomputed pads are not consumed.
 *
 * HKDF-SHA-256: every case through pgck_hkdf_sha256.
 *
 * A missing file, a file with zero usable cases, or a case count that does
 * not add up to the file's numberOfTests is a failure.  Individual case
 * results are counted with unit_count (failures print a "#" diagnostic with
 * the tcId); one "ok"/"not ok" summary line is printed per file.
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/provider.h>

#include "aead.h"
#include "unit.h"

/* failures seen in the file being processed, for its summary line */
static int	file_failures;

static void
case_check(bool cond, const char *file, json_int_t tcid, const char *what)
{
	unit_count(cond);
	if (!cond)
	{
		file_failures++;
		printf("# %s tcId %lld: %s\n", file, (long long) tcid, what);
	}
}

static int
hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode a hex string into a malloc'd buffer (always at least one byte, so
 * an empty field still gives a non-NULL pointer).  Returns NULL on bad hex.
 */
static uint8_t *
hex_decode(const char *hex, size_t *out_len)
{
	size_t		n = strlen(hex);
	uint8_t    *out;
	size_t		i;

	if (n % 2 != 0)
		return NULL;
	out = malloc(n / 2 + 1);
	if (out == NULL)
		return NULL;
	for (i = 0; i < n / 2; i++)
	{
		int			hi = hex_nibble(hex[2 * i]);
		int			lo = hex_nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
		{
			free(out);
			return NULL;
		}
		out[i] = (uint8_t) ((hi << 4) | lo);
	}
	*out_len = n / 2;
	return out;
}

/* A hex field of a test object; NULL (and a failure) if absent or bad. */
static uint8_t *
hex_field(json_t *test, const char *name, size_t *len, const char *file)
{
	json_t	   *v = json_object_get(test, name);
	uint8_t    *b = NULL;

	if (json_is_string(v))
		b = hex_decode(json_string_value(v), len);
	if (b == NULL)
	{
		unit_count(0);
		file_failures++;
		printf("# %s tcId %lld: field \"%s\" missing or not hex\n", file,
			   (long long) json_integer_value(json_object_get(test, "tcId")), name);
	}
	return b;
}

static json_t *
load_vectors(const char *dir, const char *name, char *path, size_t pathsz)
{
	json_error_t err;
	json_t	   *root;

	snprintf(path, pathsz, "%s/wycheproof/%s", dir, name);
	root = json_load_file(path, 0, &err);
	if (root == NULL)
		printf("# cannot load %s: %s (line %d)\n", path, err.text, err.line);
	else if (!json_is_array(json_object_get(root, "testGroups")))
	{
		printf("# %s has no testGroups array\n", path);
		json_decref(root);
		root = NULL;
	}
	return root;
}

static bool
is_result(json_t *test, const char *want)
{
	const char *r = json_string_value(json_object_get(test, "result"));

	return r != NULL && strcmp(r, want) == 0;
}

static bool
all_zero(const uint8_t *p, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* ---------------------------------------------------------------- AES-GCM */

#define MAX_KEYS 512

typedef struct KeyedAead
{
	uint8_t		key[PGCK_AES256_KEY_LEN];
	PgckAead   *aead;
} KeyedAead;

static KeyedAead keyed[MAX_KEYS];
static int	nkeyed = 0;
static int	aead_objects_reused = 0;

/* The one PgckAead of this key, created on first use. */
static PgckAead *
aead_for_key(const uint8_t *key)
{
	int			i;

	for (i = 0; i < nkeyed; i++)
		if (memcmp(keyed[i].key, key, PGCK_AES256_KEY_LEN) == 0)
		{
			aead_objects_reused++;
			return keyed[i].aead;
		}
	if (nkeyed == MAX_KEYS)
		return NULL;
	memcpy(keyed[nkeyed].key, key, PGCK_AES256_KEY_LEN);
	keyed[nkeyed].aead = pgck_aead_new(key);
	return keyed[nkeyed++].aead;
}

typedef struct GcmCase
{
	json_int_t	tcid;
	bool		valid;
	uint8_t    *key,
			   *iv,
			   *aad,
			   *msg,
			   *ct,
			   *tag;
	size_t		key_len,
				iv_len,
				aad_len,
				msg_len,
				ct_len,
				tag_len;
} GcmCase;

#define GCM_FILE "aes_gcm"

/*
 * Seal c->msg and compare with the vector.  The AAD is split at aad_split
 * between the two AAD arguments (the product passes header || context).
 */
static void
gcm_seal_check(PgckAead *aead, const GcmCase *c, size_t aad_split)
{
	uint8_t    *ct = malloc(c->msg_len + 1);
	uint8_t		tag[PGCK_GCM_TAGLEN];
	bool		ok;

	ok = pgck_aead_seal(aead, c->iv, c->aad, aad_split,
						c->aad + aad_split, c->aad_len - aad_split,
						c->msg, c->msg_len, ct, tag);
	if (c->valid)
	{
		case_check(ok, GCM_FILE, c->tcid, "seal failed");
		case_check(ok && c->ct_len == c->msg_len &&
				   memcmp(ct, c->ct, c->ct_len) == 0,
				   GCM_FILE, c->tcid, "seal: ciphertext differs");
		case_check(ok && memcmp(tag, c->tag, PGCK_GCM_TAGLEN) == 0,
				   GCM_FILE, c->tcid, "seal: tag differs");
	}
	else
	{
		/*
		 * The vector's ct || tag is not an authentic encryption of msg, so
		 * an honest seal of msg must not reproduce it.
		 */
		case_check(ok, GCM_FILE, c->tcid, "seal of an invalid case's message failed");
		case_check(!ok || c->ct_len != c->msg_len ||
				   memcmp(ct, c->ct, c->ct_len) != 0 ||
				   memcmp(tag, c->tag, PGCK_GCM_TAGLEN) != 0,
				   GCM_FILE, c->tcid, "seal reproduced an invalid ciphertext and tag");
	}
	free(ct);
}

/* Open the vector's ct/tag; a failed open must leave pt all zero. */
static void
gcm_open_check(PgckAead *aead, const GcmCase *c, size_t aad_split)
{
	uint8_t    *pt = malloc(c->ct_len + 1);
	bool		ok;

	memset(pt, 0xA5, c->ct_len + 1);
	ok = pgck_aead_open(aead, c->iv, c->aad, aad_split,
						c->aad + aad_split, c->aad_len - aad_split,
						c->ct, c->ct_len, c->tag, pt);
	if (c->valid)
	{
		case_check(ok, GCM_FILE, c->tcid, "open of a valid case failed");
		case_check(ok && c->ct_len == c->msg_len &&
				   memcmp(pt, c->msg, c->msg_len) == 0,
				   GCM_FILE, c->tcid, "open: plaintext differs");
	}
	else
	{
		case_check(!ok, GCM_FILE, c->tcid, "open of an invalid case succeeded");
		case_check(all_zero(pt, c->ct_len), GCM_FILE, c->tcid,
				   "failed open left plaintext bytes in the output buffer");
	}
	case_check(pt[c->ct_len] == 0xA5, GCM_FILE, c->tcid,
			   "open wrote past the end of the plaintext");
	free(pt);
}

static void
gcm_case_free(GcmCase *c)
{
	free(c->key);
	free(c->iv);
	free(c->aad);
	free(c->msg);
	free(c->ct);
	free(c->tag);
	memset(c, 0, sizeof(*c));
}

static void
test_aes_gcm(const char *dir)
{
	char		path[4096];
	json_t	   *root = load_vectors(dir, "aes_gcm_test.json", path, sizeof(path));
	json_t	   *groups;
	json_t	   *group;
	size_t		gi;
	GcmCase    *cases = NULL;
	int			ncases = 0;
	int			nvalid = 0;
	int			ninvalid = 0;
	int			seen = 0;
	int			skip_key = 0,
				skip_iv = 0,
				skip_tag = 0,
				skipped = 0;
	int			i;

	file_failures = 0;
	if (root == NULL)
	{
		unit_check(0, "aes_gcm: vectors file %s missing or unreadable", path);
		return;
	}
	groups = json_object_get(root, "testGroups");
	json_array_foreach(groups, gi, group)
	{
		json_int_t	key_bits = json_integer_value(json_object_get(group, "keySize"));
		json_int_t	iv_bits = json_integer_value(json_object_get(group, "ivSize"));
		json_int_t	tag_bits = json_integer_value(json_object_get(group, "tagSize"));
		json_t	   *tests = json_object_get(group, "tests");
		json_t	   *test;
		size_t		ti;
		bool		ours = (key_bits == 256 && iv_bits == 96 && tag_bits == 128);

		json_array_foreach(tests, ti, test)
		{
			GcmCase		c;

			seen++;
			if (!ours)
			{
				skipped++;
				if (key_bits != 256)
					skip_key++;
				else if (iv_bits != 96)
					skip_iv++;
				else
					skip_tag++;
				continue;
			}
			memset(&c, 0, sizeof(c));
			c.tcid = json_integer_value(json_object_get(test, "tcId"));
			if (is_result(test, "valid"))
				c.valid = true;
			else if (!is_result(test, "invalid"))
			{
				/* "acceptable" does not occur for these parameters today */
				case_check(false, GCM_FILE, c.tcid, "unexpected result (not valid/invalid)");
				continue;
			}
			c.key = hex_field(test, "key", &c.key_len, GCM_FILE);
			c.iv = hex_field(test, "iv", &c.iv_len, GCM_FILE);
			c.aad = hex_field(test, "aad", &c.aad_len, GCM_FILE);
			c.msg = hex_field(test, "msg", &c.msg_len, GCM_FILE);
			c.ct = hex_field(test, "ct", &c.ct_len, GCM_FILE);
			c.tag = hex_field(test, "tag", &c.tag_len, GCM_FILE);
			if (!c.key || !c.iv || !c.aad || !c.msg || !c.ct || !c.tag ||
				c.key_len != 32 || c.iv_len != 12 || c.tag_len != 16)
			{
				case_check(false, GCM_FILE, c.tcid, "fields do not match the group's sizes");
				gcm_case_free(&c);
				continue;
			}
			cases = realloc(cases, sizeof(GcmCase) * (ncases + 1));
			cases[ncases++] = c;
			if (c.valid)
				nvalid++;
			else
				ninvalid++;
		}
	}

	/*
	 * Pass 1: each case in file order on its key's shared object; the order
	 * of seal and open alternates so both follow each other on one context.
	 */
	for (i = 0; i < ncases; i++)
	{
		GcmCase    *c = &cases[i];
		PgckAead   *aead = aead_for_key(c->key);

		if (aead == NULL)
		{
			case_check(false, GCM_FILE, c->tcid, "pgck_aead_new failed");
			continue;
		}
		if (i % 2 == 0)
		{
			gcm_seal_check(aead, c, c->aad_len);
			gcm_open_check(aead, c, c->aad_len / 2);
		}
		else
		{
			gcm_open_check(aead, c, 0);
			gcm_seal_check(aead, c, c->aad_len / 2);
		}
	}

	/*
	 * Pass 2: the valid cases again, in reverse, on the same objects, which
	 * have now seen failed opens; the AAD is split differently again.
	 */
	for (i = ncases - 1; i >= 0; i--)
	{
		GcmCase    *c = &cases[i];
		PgckAead   *aead;

		if (!c->valid)
			continue;
		aead = aead_for_key(c->key);
		if (aead == NULL)
			continue;
		gcm_open_check(aead, c, c->aad_len);
		gcm_seal_check(aead, c, 0);
		gcm_open_check(aead, c, c->aad_len / 3);
	}

	printf("# skipped %d AES-GCM cases with key/iv/tag sizes pgcrypt_kms never uses "
		   "(%d with 128/192-bit keys, %d with non-96-bit IVs, %d with truncated tags)\n",
		   skipped, skip_key, skip_iv, skip_tag);
	{
		json_int_t	declared = json_integer_value(json_object_get(root, "numberOfTests"));

		unit_check(declared == seen,
				   "aes_gcm: every case accounted for (%d used + %d skipped = %d, file says %lld)",
				   ncases, skipped, seen, (long long) declared);
	}
	unit_check(ncases > 0 && nvalid > 0 && ninvalid > 0 && file_failures == 0,
			   "aes_gcm: %d cases (%d valid, %d invalid) with 256-bit key, 96-bit IV, "
			   "128-bit tag over %d keyed contexts (%d reuses)",
			   ncases, nvalid, ninvalid, nkeyed, aead_objects_reused);

	for (i = 0; i < ncases; i++)
		gcm_case_free(&cases[i]);
	free(cases);
	for (i = 0; i < nkeyed; i++)
		pgck_aead_free(keyed[i].aead);
	nkeyed = 0;
	json_decref(root);
}

/* ------------------------------------------------------------ HMAC-SHA-256 */

#define HMAC_FILE "hmac_sha256"

static void
test_hmac(const char *dir)
{
	char		path[4096];
	json_t	   *root = load_vectors(dir, "hmac_sha256_test.json", path, sizeof(path));
	json_t	   *group;
	size_t		gi;
	int			ncases = 0,
				nvalid = 0,
				ninvalid = 0;
	int			truncated = 0;

	file_failures = 0;
	if (root == NULL)
	{
		unit_check(0, "hmac_sha256: vectors file %s missing or unreadable", path);
		return;
	}
	json_array_foreach(json_object_get(root, "testGroups"), gi, group)
	{
		json_int_t	tag_bits = json_integer_value(json_object_get(group, "tagSize"));
		json_t	   *test;
		size_t		ti;

		json_array_foreach(json_object_get(group, "tests"), ti, test)
		{
			json_int_t	tcid = json_integer_value(json_object_get(test, "tcId"));
			bool		valid = is_result(test, "valid");
			size_t		key_len = 0,
						msg_len = 0,
						tag_len = 0;
			uint8_t    *key,
					   *msg,
					   *tag;
			uint8_t		mac1[PGCK_HMAC_SHA256_LEN];
			uint8_t		mac2[PGCK_HMAC_SHA256_LEN];
			uint8_t		mac3[PGCK_HMAC_SHA256_LEN];
			uint8_t		ref2[EVP_MAX_MD_SIZE];
			unsigned int ref2_len = 0;
			uint8_t    *msg2;
			size_t		msg2_len;
			PgckHmac   *h;
			bool		ok;

			ncases++;
			if (!valid && !is_result(test, "invalid"))
			{
				case_check(false, HMAC_FILE, tcid, "unexpected result (not valid/invalid)");
				continue;
			}
			if (valid)
				nvalid++;
			else
				ninvalid++;
			key = hex_field(test, "key", &key_len, HMAC_FILE);
			msg = hex_field(test, "msg", &msg_len, HMAC_FILE);
			tag = hex_field(test, "tag", &tag_len, HMAC_FILE);
			if (key == NULL || msg == NULL || tag == NULL ||
				tag_bits <= 0 || tag_bits > 256 || tag_bits % 8 != 0 ||
				tag_len != (size_t) tag_bits / 8)
			{
				case_check(false, HMAC_FILE, tcid, "fields do not match the group's sizes");
				free(key);
				free(msg);
				free(tag);
				continue;
			}
			if (tag_len < PGCK_HMAC_SHA256_LEN)
				truncated++;

			h = pgck_hmac_new(key, key_len);
			case_check(h != NULL, HMAC_FILE, tcid, "pgck_hmac_new failed");
			if (h == NULL)
			{
				free(key);
				free(msg);
				free(tag);
				continue;
			}
			ok = pgck_hmac_sha256(h, msg, msg_len, mac1);
			case_check(ok, HMAC_FILE, tcid, "pgck_hmac_sha256 failed");
			if (valid)
				case_check(ok && memcmp(mac1, tag, tag_len) == 0, HMAC_FILE, tcid,
						   "MAC differs from the vector");
			else
				case_check(ok && memcmp(mac1, tag, tag_len) != 0, HMAC_FILE, tcid,
						   "MAC matches an invalid tag");

			/*
			 * Same object, a different message (msg plus one byte), checked
			 * against OpenSSL's one-shot HMAC; then msg again, which must give
			 * the first MAC: the precomputed pads survive use.
			 */
			msg2_len = msg_len + 1;
			msg2 = malloc(msg2_len);
			memcpy(msg2, msg, msg_len);
			msg2[msg_len] = (uint8_t) tcid;
			ok = pgck_hmac_sha256(h, msg2, msg2_len, mac2) &&
				HMAC(EVP_sha256(), key, (int) key_len, msg2, msg2_len, ref2, &ref2_len) != NULL;
			case_check(ok && ref2_len == PGCK_HMAC_SHA256_LEN &&
					   memcmp(mac2, ref2, PGCK_HMAC_SHA256_LEN) == 0,
					   HMAC_FILE, tcid, "second message on the reused object differs from OpenSSL HMAC");
			ok = pgck_hmac_sha256(h, msg, msg_len, mac3);
			case_check(ok && memcmp(mac1, mac3, PGCK_HMAC_SHA256_LEN) == 0,
					   HMAC_FILE, tcid, "first message again on the reused object gives another MAC");

			pgck_hmac_free(h);
			free(msg2);
			free(key);
			free(msg);
			free(tag);
		}
	}
	{
		json_int_t	declared = json_integer_value(json_object_get(root, "numberOfTests"));

		unit_check(declared == ncases,
				   "hmac_sha256: every case accounted for (%d, file says %lld)",
				   ncases, (long long) declared);
	}
	unit_check(ncases > 0 && nvalid > 0 && ninvalid > 0 && file_failures == 0,
			   "hmac_sha256: %d cases (%d valid, %d invalid; %d with truncated tags)",
			   ncases, nvalid, ninvalid, truncated);
	json_decref(root);
}

/* ------------------------------------------------------------ HKDF-SHA-256 */

#define HKDF_FILE "hkdf_sha256"

static void
test_hkdf(const char *dir)
{
	char		path[4096];
	json_t	   *root = load_vectors(dir, "hkdf_sha256_test.json", path, sizeof(path));
	json_t	   *group;
	size_t		gi;
	int			ncases = 0,
				nvalid = 0,
				ninvalid = 0;

	file_failures = 0;
	if (root == NULL)
	{
		unit_check(0, "hkdf_sha256: vectors file %s missing or unreadable", path);
		return;
	}
	json_array_foreach(json_object_get(root, "testGroups"), gi, group)
	{
		json_t	   *test;
		size_t		ti;

		json_array_foreach(json_object_get(group, "tests"), ti, test)
		{
			json_int_t	tcid = json_integer_value(json_object_get(test, "tcId"));
			json_t	   *size_v = json_object_get(test, "size");
			bool		valid = is_result(test, "valid");
			size_t		ikm_len = 0,
						salt_len = 0,
						info_len = 0,
						okm_len = 0;
			uint8_t    *ikm,
					   *salt,
					   *info,
					   *okm;
			uint8_t    *out;
			size_t		size;
			bool		ok;

			ncases++;
			if (!valid && !is_result(test, "invalid"))
			{
				case_check(false, HKDF_FILE, tcid, "unexpected result (not valid/invalid)");
				continue;
			}
			if (valid)
				nvalid++;
			else
				ninvalid++;
			ikm = hex_field(test, "ikm", &ikm_len, HKDF_FILE);
			salt = hex_field(test, "salt", &salt_len, HKDF_FILE);
			info = hex_field(test, "info", &info_len, HKDF_FILE);
			okm = hex_field(test, "okm", &okm_len, HKDF_FILE);
			if (!ikm || !salt || !info || !okm || !json_is_integer(size_v) ||
				json_integer_value(size_v) < 0 || json_integer_value(size_v) > 1 << 20 ||
				(valid && okm_len != (size_t) json_integer_value(size_v)))
			{
				case_check(false, HKDF_FILE, tcid, "fields do not match the declared size");
				free(ikm);
				free(salt);
				free(info);
				free(okm);
				continue;
			}
			size = (size_t) json_integer_value(size_v);
			out = malloc(size + 1);
			memset(out, 0, size + 1);

			/*
			 * Empty salt or info: alternate between NULL and a valid pointer
			 * with length 0, both of which callers may pass.
			 */
			ok = pgck_hkdf_sha256((salt_len == 0 && tcid % 2) ? NULL : salt, salt_len,
								  ikm, ikm_len,
								  (info_len == 0 && tcid % 2) ? NULL : info, info_len,
								  out, size);
			if (valid)
				case_check(ok && memcmp(out, okm, size) == 0, HKDF_FILE, tcid,
						   ok ? "OKM differs from the vector" : "derivation failed");
			else
				case_check(!ok, HKDF_FILE, tcid, "derivation of an invalid case succeeded");
			free(out);
			free(ikm);
			free(salt);
			free(info);
			free(okm);
		}
	}
	{
		json_int_t	declared = json_integer_value(json_object_get(root, "numberOfTests"));

		unit_check(declared == ncases,
				   "hkdf_sha256: every case accounted for (%d, file says %lld)",
				   ncases, (long long) declared);
	}
	unit_check(ncases > 0 && nvalid > 0 && ninvalid > 0 && file_failures == 0,
			   "hkdf_sha256: %d cases (%d valid, %d invalid)", ncases, nvalid, ninvalid);
	json_decref(root);
}

/*
 * Which HMAC path this process took (aead.c's header): the low-level states
 * only for the default provider's SHA-256, never for a FIPS or any other
 * provider's; the environment's overrides, which the test runs use to cover
 * every path with the vectors below, are honoured.
 */
static void
test_hmac_path(void)
{
	EVP_MD	   *md = EVP_MD_fetch(NULL, "SHA256", NULL);
	const char *prov = md != NULL ? OSSL_PROVIDER_get0_name(EVP_MD_get0_provider(md)) : NULL;
	const char *want;

	unit_check(pgck_hmac_lowlevel_for("default"), "the default provider's SHA-256 may run as low-level states");
	unit_check(!pgck_hmac_lowlevel_for("fips"), "a FIPS provider's SHA-256 never does");
	unit_check(!pgck_hmac_lowlevel_for("base") && !pgck_hmac_lowlevel_for("defaults") &&
			   !pgck_hmac_lowlevel_for("") && !pgck_hmac_lowlevel_for(NULL),
			   "nor any other provider's (base, defaults, empty, none)");

	if (getenv("PGCK_AEAD_EVP") != NULL)
		want = "evp";
	else if (getenv("PGCK_HMAC_DISPATCH") != NULL || !pgck_hmac_lowlevel_for(prov))
		want = "provider";
	else
		want = "sha256-ctx";
	unit_check(strcmp(pgck_hmac_path(), want) == 0,
			   "HMAC-SHA-256 runs as \"%s\" (SHA-256 from provider \"%s\"; expected \"%s\")",
			   pgck_hmac_path(), prov ? prov : "?", want);
	EVP_MD_free(md);
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "../shared/vectors";

	setvbuf(stdout, NULL, _IOLBF, 0);
	unit_check(pgck_crypto_init(), "pgck_crypto_init fetches AES-256-GCM, SHA-256 and HKDF");
	test_hmac_path();
	test_aes_gcm(dir);
	test_hmac(dir);
	test_hkdf(dir);
	return unit_finish();
}
