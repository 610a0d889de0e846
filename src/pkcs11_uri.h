/*-------------------------------------------------------------------------
 *
 * pkcs11_uri.h
 *		Parse a PKCS#11 URI (RFC 7512) strictly.  Pure C, no PostgreSQL.
 *
 * "pkcs11:token=pg;object=master" names a key on a token; the path holds
 * ';'-separated attributes, the query (after '?') '&'-separated ones.
 * Values are percent-decoded (RFC 3986 pct-encoding, hex digits of either
 * case); a character outside RFC 7512's pk11-pchar / pk11-qchar sets is
 * refused, as are an attribute given twice, an empty attribute name, an
 * attribute without '=', an unknown standard attribute name, a type other
 * than cert/data/private/public/secret-key, a slot-id or library-version
 * that is not a number, and a NUL byte (%00) in any value but id.
 * Vendor-specific attributes (names with a '-' in them that RFC 7512 does
 * not define) are accepted and counted: a consumer that does not know them
 * must not treat the URI as matching anything (the provider refuses them).
 *
 * Decoded values point into the caller's buffer, which must hold at least
 * strlen(uri) + 1 bytes; they are NUL-terminated (id too, though it may
 * hold NUL bytes: use id_len).  NULL means the attribute was absent; ""
 * that it was present and empty (RFC 7512's "serial=").
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_PKCS11_URI_H
#define PGCK_PKCS11_URI_H

#include <stdbool.h>
#include <stddef.h>

typedef struct PgckP11Uri
{
	/* path attributes: token */
	const char *token;
	const char *manufacturer;
	const char *model;
	const char *serial;
	/* object */
	const char *object;
	const char *id;
	size_t		id_len;
	const char *type;			/* "cert", "data", "private", "public", "secret-key" */
	/* library and slot */
	const char *library_manufacturer;
	const char *library_description;
	const char *library_version;
	int			library_version_major;
	int			library_version_minor;
	const char *slot_description;
	const char *slot_manufacturer;
	const char *slot_id;
	unsigned long slot_id_value;
	/* query attributes */
	const char *pin_source;
	const char *pin_value;
	const char *module_name;
	const char *module_path;
	/* vendor-specific attributes seen (path and query) */
	int			n_vendor;
} PgckP11Uri;

/*
 * Parse uri (with its "pkcs11:" scheme, case-insensitive) into *out, decoded
 * values into buf (buflen >= strlen(uri) + 1).  Returns true on success; on
 * failure false and *err points to a static English sentence.
 */
extern bool pgck_p11_uri_parse(const char *uri, PgckP11Uri *out, char *buf,
							   size_t buflen, const char **err);

#endif							/* PGCK_PKCS11_URI_H */
