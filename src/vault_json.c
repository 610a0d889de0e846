/*-------------------------------------------------------------------------
 *
 * vault_json.c
 *		Vault / OpenBao response parsing, kms_context canonical form, Transit
 *		reference and ciphertext shapes.  See vault_json.h.
 *
 *-------------------------------------------------------------------------
 */
#include "vault_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base64.h"
#include "kms_json.h"

const char *
pgck_vj_parse_fields(const char *body, size_t len, const char *section, PgckVjField *f, int n)
{
	json_t	   *root;
	json_t	   *obj;
	json_error_t jerr;
	const char *problem = NULL;
	int			i;

	for (i = 0; i < n; i++)
		f[i].found = false;
	if (body == NULL || len == 0)
		return "The response has no body.";
	pgck_kj_install_wiping_allocator();
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return "The response is not JSON.";
	obj = json_object_get(root, section);
	if (!json_is_object(obj))
		problem = strcmp(section, "auth") == 0 ? "The response has no \"auth\" object." :
			"The response has no \"data\" object.";
	for (i = 0; problem == NULL && i < n; i++)
	{
		json_t	   *v = json_object_get(obj, f[i].name);

		if (v == NULL || json_is_null(v))
		{
			if (f[i].required)
				problem = "A required member is missing from the response.";
			continue;
		}
		switch (f[i].type)
		{
			case 's':
				if (!json_is_string(v))
					problem = "A member of the response has the wrong type.";
				else if (json_string_length(v) + 1 > f[i].strsize ||
						 strlen(json_string_value(v)) != json_string_length(v))
					problem = "A member of the response is too long or holds a NUL.";
				else
					memcpy(f[i].str, json_string_value(v), json_string_length(v) + 1);
				break;
			case 'i':
				if (!json_is_integer(v))
					problem = "A member of the response has the wrong type.";
				else
					*f[i].num = (int64_t) json_integer_value(v);
				break;
			default:
				if (!json_is_boolean(v))
					problem = "A member of the response has the wrong type.";
				else
					*f[i].flag = json_is_true(v);
				break;
		}
		f[i].found = problem == NULL;
	}
	json_decref(root);
	return problem;
}

void
pgck_vj_parse_errors(const char *body, size_t len, char *out, size_t outsize)
{
	json_t	   *root = NULL;
	json_t	   *errs;
	json_error_t jerr;
	size_t		i;
	char	   *p;

	if (outsize == 0)
		return;
	out[0] = '\0';
	if (body != NULL && len > 0)
	{
		pgck_kj_install_wiping_allocator();
		root = json_loadb(body, len, 0, &jerr);
	}
	errs = json_object_get(root, "errors");
	if (json_is_array(errs))
	{
		for (i = 0; i < json_array_size(errs); i++)
		{
			const char *s = json_string_value(json_array_get(errs, i));
			size_t		used = strlen(out);

			if (s == NULL || used + 1 >= outsize)
				continue;
			snprintf(out + used, outsize - used, "%s%s", used ? "; " : "", s);
		}
	}
	if (root != NULL)
		json_decref(root);
	for (p = out; *p; p++)
	{
		if (*p == '\n' || *p == '\t' || *p == '\r')
			*p = ' ';
		else if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
			*p = '?';
	}
}

bool
pgck_vj_is_ciphertext(const char *s, size_t len)
{
	size_t		i = 7;
	size_t		start;

	if (s == NULL || len < 10 || len > PGCK_VJ_MAX_CIPHERTEXT || strncmp(s, "vault:v", 7) != 0)
		return false;
	while (i < len && isdigit((unsigned char) s[i]))
		i++;
	if (i == 7 || i - 7 > 9 || i >= len || s[i] != ':' || s[7] == '0')
		return false;
	start = ++i;
	for (; i < len; i++)
	{
		if (!isalnum((unsigned char) s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
			return false;
	}
	return i > start;
}

bool
pgck_vj_decode_key(const char *b64, uint8_t *dek_out, size_t key_len)
{
	size_t		len = b64 ? strlen(b64) : 0;
	size_t		max = PGCK_BASE64_DEC_MAX(len);
	uint8_t    *raw;
	size_t		got = 0;
	bool		ok;

	if (len == 0 || len != PGCK_BASE64_ENC_LEN(key_len) || (raw = malloc(max)) == NULL)
	{
		memset(dek_out, 0, key_len);
		return false;
	}
	ok = pgck_base64_decode(b64, len, raw, &got) && got == key_len;
	if (ok)
		memcpy(dek_out, raw, key_len);
	else
		memset(dek_out, 0, key_len);
	explicit_bzero(raw, max);
	free(raw);
	return ok;
}

char *
pgck_vj_context_b64(const char *context_json, const char **problem)
{
	json_t	   *root;
	json_error_t jerr;
	char	   *canon;
	char	   *out;
	size_t		n;

	*problem = NULL;
	if (context_json == NULL || context_json[0] == '\0')
		return NULL;
	pgck_kj_install_wiping_allocator();
	root = json_loads(context_json, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root))
	{
		if (root != NULL)
			json_decref(root);
		*problem = "The kms_context is not a JSON object.";
		return NULL;
	}
	if (json_object_size(root) == 0)
	{
		json_decref(root);
		return NULL;
	}
	canon = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(root);
	if (canon == NULL)
	{
		*problem = "out of memory";
		return NULL;
	}
	n = strlen(canon);
	out = malloc(PGCK_BASE64_ENC_LEN(n) + 1);
	if (out == NULL)
		*problem = "out of memory";
	else
		out[pgck_base64_encode((const uint8_t *) canon, n, out)] = '\0';
	free(canon);
	return out;
}

static bool
name_char(char c)
{
	return isalnum((unsigned char) c) || c == '_' || c == '-' || c == '.';
}

static bool
word_char(char c)
{
	return isalnum((unsigned char) c) || c == '_';
}

bool
pgck_vj_check_ref(const char *ref, size_t *mount_len)
{
	size_t		len = ref ? strlen(ref) : 0;
	const char *slash;
	const char *seg;
	const char *p;

	if (len == 0 || len > PGCK_VJ_MAX_REF || (slash = strrchr(ref, '/')) == NULL)
		return false;
	/* the key */
	if (slash[1] == '\0' || !word_char(slash[1]) || !word_char(ref[len - 1]))
		return false;
	for (p = slash + 1; *p; p++)
		if (!name_char(*p))
			return false;
	/* the mount: segments */
	seg = ref;
	for (p = ref; p <= slash; p++)
	{
		if (*p == '/')
		{
			size_t		n = p - seg;

			if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return false;
			seg = p + 1;
		}
		else if (!name_char(*p))
			return false;
	}
	*mount_len = slash - ref;
	return true;
}
