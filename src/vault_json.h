/*-------------------------------------------------------------------------
 *
 * vault_json.h
 *		Strict parsing of Vault / OpenBao Transit and auth responses, the
 *		canonical form of a kms_context, and the shape of Transit key
 *		references and ciphertexts.
 *
 * Pure C (no PostgreSQL headers): jansson and base64.h only, so every
 * parser here is unit-tested (test/unit/test_vault_json.c) and fuzzed
 * (test/fuzz/fuzz_vault_json.c) on its own.  Response bodies are untrusted
 * network input: members are type-checked, strings bounded and NUL-free,
 * plaintext keys strictly base64-decoded to exactly the length asked for.
 *
 * Rules a caller keeps:
 *	- Nothing here allocates what it returns except pgck_vj_context_b64
 *	  (malloc'd, free()); outputs go into caller buffers.
 *	- Errors are a static English string (never a value from the body, so
 *	  never a secret).  jansson's own buffers are wiped on free
 *	  (pgck_kj_install_wiping_allocator, called by every parser).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_VAULT_JSON_H
#define PGCK_VAULT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGCK_VJ_MAX_CIPHERTEXT	8192
#define PGCK_VJ_MAX_REF			512

/* One member of body.<section> to extract. */
typedef struct PgckVjField
{
	const char *name;
	char		type;			/* 's' string, 'i' integer, 'b' boolean */
	bool		required;
	char	   *str;			/* 's': out buffer of strsize bytes */
	size_t		strsize;
	int64_t    *num;			/* 'i' */
	bool	   *flag;			/* 'b' */
	bool		found;			/* set: present and taken */
} PgckVjField;

/*
 * Fill fields from the object body.<section> ("data" or "auth"); NULL on
 * success, else a static description.  Absent or null members leave their
 * output alone (found false), unless required.  A string must fit strsize
 * with its NUL and hold no NUL.  Duplicate members refuse the body.
 */
extern const char *pgck_vj_parse_fields(const char *body, size_t len, const char *section,
										PgckVjField *f, int n);

/*
 * Vault's "errors" array joined with "; " into out (outsize bytes), printable
 * ASCII only: newlines and tabs become spaces, other bytes '?'.  Never fails
 * ("" for a body without errors).
 */
extern void pgck_vj_parse_errors(const char *body, size_t len, char *out, size_t outsize);

/* Is s[0..len) a Transit ciphertext "vault:v<N>:<base64>" (N > 0)? */
extern bool pgck_vj_is_ciphertext(const char *s, size_t len);

/*
 * Decode a base64 plaintext key of exactly key_len bytes into dek_out; false
 * (dek_out zeroed) on anything else.  Temporary copies are wiped.
 */
extern bool pgck_vj_decode_key(const char *b64, uint8_t *dek_out, size_t key_len);

/*
 * The Transit "context" of a kms_context JSON object text: base64 of the
 * object re-serialized canonically (compact, keys sorted by byte value,
 * UTF-8 as is), malloc'd.  NULL with *problem NULL for no context (NULL,
 * "", "{}"); NULL with *problem set when the text is not a JSON object
 * (or is out of memory).
 */
extern char *pgck_vj_context_b64(const char *context_json, const char **problem);

/*
 * Check a reference "<mount>/<key>": the key follows the last '/', and is
 * a Vault name (word characters, '-' and '.', starting and ending with a
 * word character); the mount is one or more segments of [A-Za-z0-9_.-],
 * none "." or "..".  At most PGCK_VJ_MAX_REF bytes.  On true, *mount_len is
 * the length of the mount (the key starts at ref + *mount_len + 1).
 */
extern bool pgck_vj_check_ref(const char *ref, size_t *mount_len);

#endif							/* PGCK_VAULT_JSON_H */
