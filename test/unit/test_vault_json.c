/*-------------------------------------------------------------------------
 *
 * test_vault_json.c
 *		Unit tests of vault_json.c: Vault response members, error strings,
 *		Transit ciphertext and reference shapes, plaintext key decoding, the
 *		canonical form of kms_context.
 *
 * Usage: test_vault_json [vectors-dir]   (the argument is ignored)
 * Prints "ok N - ..." / "not ok N - ..." and a last line
 * "N passed, N failed"; exits 1 on any failure.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "unit.h"
#include "vault_json.h"

static const char *
fields(const char *body, const char *section, char *str, size_t strsize, int64_t *num,
	   bool *flag, bool required)
{
	PgckVjField f[3] = {
		{.name = "s", .type = 's', .required = required, .str = str, .strsize = strsize},
		{.name = "i", .type = 'i', .num = num},
		{.name = "b", .type = 'b', .flag = flag},
	};

	return pgck_vj_parse_fields(body, body ? strlen(body) : 0, section, f, 3);
}

/* base64 of the canonical context of json, or "(none)" / "(error)" */
static const char *
ctx(const char *json, char *out, size_t outsize)
{
	const char *problem;
	char	   *b64 = pgck_vj_context_b64(json, &problem);
	uint8_t		raw[512];
	size_t		got = 0;

	if (b64 == NULL)
		return problem ? "(error)" : "(none)";
	if (!pgck_base64_decode(b64, strlen(b64), raw, &got) || got >= outsize)
	{
		free(b64);
		return "(bad base64)";
	}
	memcpy(out, raw, got);
	out[got] = '\0';
	free(b64);
	return out;
}

int
main(int argc, char **argv)
{
	char		s[16];
	int64_t		i = 0;
	bool		b = false;
	char		err[64];
	char		buf[256];
	size_t		ml = 0;
	uint8_t		key[32];
	char		b64[64];
	uint8_t		raw[32];
	const char *p;

	/* members */
	p = fields("{\"data\":{\"s\":\"abc\",\"i\":42,\"b\":true}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p == NULL && strcmp(s, "abc") == 0 && i == 42 && b, "fields: string, integer, boolean taken");
	p = fields("{\"auth\":{\"s\":\"t\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: no data object refused");
	p = fields("{\"data\":{\"i\":1}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: a required string missing refused");
	i = 7;
	p = fields("{\"data\":{\"s\":\"x\",\"i\":null}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p == NULL && i == 7, "fields: a null optional member leaves the output alone");
	p = fields("{\"data\":{\"s\":1}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: a number where a string is wanted refused");
	p = fields("{\"data\":{\"s\":\"x\",\"i\":\"42\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: a string where an integer is wanted refused");
	p = fields("{\"data\":{\"s\":\"x\",\"b\":\"true\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: a string where a boolean is wanted refused");
	p = fields("{\"data\":{\"s\":\"0123456789abcdef\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: a string of 16 bytes does not fit 16 with its NUL: refused");
	p = fields("{\"data\":{\"s\":\"0123456789abcde\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p == NULL && strlen(s) == 15, "fields: 15 bytes fit");
	p = fields("{\"data\":{\"s\":\"a\\u0000b\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: a string holding a NUL refused");
	p = fields("{\"data\":{\"s\":\"a\",\"s\":\"b\"}}", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: duplicate members refused");
	p = fields("<html>", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: not JSON refused");
	p = fields("", "data", s, sizeof(s), &i, &b, true);
	unit_check(p != NULL, "fields: empty body refused");
	p = fields("{\"auth\":{\"s\":\"tok\",\"i\":3600,\"b\":false}}", "auth", s, sizeof(s), &i, &b, true);
	unit_check(p == NULL && strcmp(s, "tok") == 0 && i == 3600 && !b, "fields: the auth section");

	/* errors */
	p = "{\"errors\":[\"permission denied\"]}";
	pgck_vj_parse_errors(p, strlen(p), err, sizeof(err));
	unit_check(strcmp(err, "permission denied") == 0, "errors: one");
	p = "{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}";
	pgck_vj_parse_errors(p, strlen(p), err, sizeof(err));
	unit_check(strcmp(err, "2 errors occurred:  * permission denied  * invalid token  ") == 0,
			   "errors: newlines and tabs become spaces (got '%s')", err);
	p = "{\"errors\":[\"a\",7,\"b\"]}";
	pgck_vj_parse_errors(p, strlen(p), err, sizeof(err));
	unit_check(strcmp(err, "a; b") == 0, "errors: joined with '; ', non-strings skipped");
	p = "{\"errors\":[\"caf\xc3\xa9\"]}";
	pgck_vj_parse_errors(p, strlen(p), err, sizeof(err));
	unit_check(strcmp(err, "caf??") == 0, "errors: non-ASCII bytes become '?'");
	p = "{\"errors\":[\"0123456789012345678901234567890123456789012345678901234567890123456789\"]}";
	pgck_vj_parse_errors(p, strlen(p), err, sizeof(err));
	unit_check(strlen(err) == sizeof(err) - 1, "errors: truncated to the buffer");
	pgck_vj_parse_errors("<html>", 6, err, sizeof(err));
	unit_check(err[0] == '\0', "errors: a body that is not JSON gives none");
	pgck_vj_parse_errors("{\"errors\":[]}", 13, err, sizeof(err));
	unit_check(err[0] == '\0', "errors: an empty array gives none");

	/* ciphertexts */
	unit_check(pgck_vj_is_ciphertext("vault:v1:AAAA", 13), "ciphertext: vault:v1:AAAA");
	unit_check(pgck_vj_is_ciphertext("vault:v12:ab+/=", 15), "ciphertext: version 12, base64 characters");
	unit_check(!pgck_vj_is_ciphertext("vault:v0:AAAA", 13), "ciphertext: version 0 refused");
	unit_check(!pgck_vj_is_ciphertext("vault:v:AAAA", 12), "ciphertext: no version refused");
	unit_check(!pgck_vj_is_ciphertext("vault:v1:", 9), "ciphertext: empty payload refused");
	unit_check(!pgck_vj_is_ciphertext("vault:v1:AA\"A", 13), "ciphertext: a quote refused");
	unit_check(!pgck_vj_is_ciphertext("vault:v1:AA A", 13), "ciphertext: a space refused");
	unit_check(!pgck_vj_is_ciphertext("vaulx:v1:AAAA", 13), "ciphertext: another prefix refused");
	unit_check(!pgck_vj_is_ciphertext("vault:v1234567890:AAAA", 22), "ciphertext: a 10-digit version refused");

	/* plaintext keys */
	memset(raw, 0xa5, sizeof(raw));
	b64[pgck_base64_encode(raw, 32, b64)] = '\0';
	unit_check(pgck_vj_decode_key(b64, key, 32) && memcmp(key, raw, 32) == 0, "key: 32 bytes decoded");
	unit_check(!pgck_vj_decode_key(b64, key, 16) && key[0] == 0, "key: 32 bytes where 16 are asked refused, output zeroed");
	b64[pgck_base64_encode(raw, 31, b64)] = '\0';
	unit_check(!pgck_vj_decode_key(b64, key, 32), "key: 31 bytes where 32 are asked refused");
	unit_check(!pgck_vj_decode_key("", key, 32), "key: empty refused");
	b64[pgck_base64_encode(raw, 32, b64)] = '\0';
	b64[42] = 'B';				/* non-zero pad bits */
	unit_check(!pgck_vj_decode_key(b64, key, 32), "key: non-canonical base64 refused");

	/* kms_context */
	unit_check(strcmp(ctx("{\"tenant\": \"42\", \"app\": \"x\"}", buf, sizeof(buf)),
					  "{\"app\":\"x\",\"tenant\":\"42\"}") == 0, "context: compact, keys sorted");
	unit_check(strcmp(ctx("{\"b\":\"1\",\"a\":\"2\",\"B\":\"3\"}", buf, sizeof(buf)),
					  "{\"B\":\"3\",\"a\":\"2\",\"b\":\"1\"}") == 0, "context: sorted by byte value");
	unit_check(strcmp(ctx("{\"k\": \"caf\\u00e9\"}", buf, sizeof(buf)), "{\"k\":\"caf\xc3\xa9\"}") == 0,
			   "context: escapes become UTF-8");
	unit_check(strcmp(ctx("{\"k\": \"a/b\\\"c\"}", buf, sizeof(buf)), "{\"k\":\"a/b\\\"c\"}") == 0,
			   "context: '/' not escaped, '\"' escaped");
	unit_check(strcmp(ctx("{}", buf, sizeof(buf)), "(none)") == 0, "context: {} is none");
	unit_check(strcmp(ctx("", buf, sizeof(buf)), "(none)") == 0, "context: empty is none");
	unit_check(strcmp(ctx(NULL, buf, sizeof(buf)), "(none)") == 0, "context: NULL is none");
	unit_check(strcmp(ctx("[1]", buf, sizeof(buf)), "(error)") == 0, "context: an array refused");
	unit_check(strcmp(ctx("{\"a\":\"1\",\"a\":\"2\"}", buf, sizeof(buf)), "(error)") == 0,
			   "context: duplicate keys refused");

	/* references */
	unit_check(pgck_vj_check_ref("transit/app", &ml) && ml == 7, "ref: transit/app");
	unit_check(pgck_vj_check_ref("team-a/transit/app.v2", &ml) && ml == 14, "ref: nested mount");
	unit_check(pgck_vj_check_ref("t/a", &ml) && ml == 1, "ref: one-character names");
	unit_check(!pgck_vj_check_ref("app", &ml), "ref: no mount refused");
	unit_check(!pgck_vj_check_ref("transit/", &ml), "ref: no key refused");
	unit_check(!pgck_vj_check_ref("/app", &ml), "ref: empty mount refused");
	unit_check(!pgck_vj_check_ref("transit//app", &ml), "ref: empty segment refused");
	unit_check(!pgck_vj_check_ref("transit/../app", &ml), "ref: '..' segment refused");
	unit_check(!pgck_vj_check_ref("./app", &ml), "ref: '.' segment refused");
	unit_check(!pgck_vj_check_ref("transit/.app", &ml), "ref: key starting with '.' refused");
	unit_check(!pgck_vj_check_ref("transit/app-", &ml), "ref: key ending with '-' refused");
	unit_check(!pgck_vj_check_ref("transit/a?b", &ml), "ref: '?' refused");
	unit_check(!pgck_vj_check_ref("tran sit/app", &ml), "ref: a space in the mount refused");
	unit_check(!pgck_vj_check_ref("", &ml), "ref: empty refused");

	(void) argc;
	(void) argv;
	return unit_finish();
}
