/*-------------------------------------------------------------------------
 *
 * pkcs11_uri.c
 *		Strict RFC 7512 PKCS#11 URI parser.  See pkcs11_uri.h.
 *
 * Pure C (no PostgreSQL, no allocation): shared by kms_pkcs11.c and
 * test/unit/test_pkcs11_uri.c.  Attribute names are matched exactly as RFC
 * 7512 spells them (lowercase).
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pkcs11_uri.h"

/* RFC 3986 unreserved */
static bool
is_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* pk11-pchar (path) or pk11-qchar (query) without pct-encoded */
static bool
is_value_char(unsigned char c, bool query)
{
	if (c >= 0x80)
		return false;
	if (is_unreserved(c))
		return true;
	if (strchr(":[]@!$'()*+,=", c) != NULL)
		return true;
	return query && (c == '/' || c == '?' || c == '|');
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* digits only, at least one */
static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

typedef struct AttrSlot
{
	const char *name;
	bool		query;			/* a query attribute (after '?') */
	size_t		offset;			/* of the const char * field in PgckP11Uri */
} AttrSlot;

#define SLOT(n, q, f) {n, q, offsetof(PgckP11Uri, f)}
static const AttrSlot attrs[] = {
	SLOT("token", false, token),
	SLOT("manufacturer", false, manufacturer),
	SLOT("model", false, model),
	SLOT("serial", false, serial),
	SLOT("object", false, object),
	SLOT("id", false, id),
	SLOT("type", false, type),
	SLOT("library-manufacturer", false, library_manufacturer),
	SLOT("library-description", false, library_description),
	SLOT("library-version", false, library_version),
	SLOT("slot-description", false, slot_description),
	SLOT("slot-manufacturer", false, slot_manufacturer),
	SLOT("slot-id", false, slot_id),
	SLOT("pin-source", true, pin_source),
	SLOT("pin-value", true, pin_value),
	SLOT("module-name", true, module_name),
	SLOT("module-path", true, module_path),
};

/*
 * One attribute "name=value" of [s, end): decode the value into *bufp and
 * store it.  Returns false with *err set.
 */
static bool
parse_attr(const char *s, const char *end, bool query, PgckP11Uri *out,
		   char **bufp, const char **err)
{
	const char *eq = memchr(s, '=', end - s);
	size_t		nlen;
	const AttrSlot *slot = NULL;
	char	   *val = *bufp;
	size_t		vlen = 0;
	const char *p;
	size_t		i;

	if (s == end)
	{
		*err = "The URI has an empty attribute.";
		return false;
	}
	if (eq == NULL)
	{
		*err = "An attribute of the URI has no \"=\".";
		return false;
	}
	nlen = eq - s;
	if (nlen == 0)
	{
		*err = "An attribute of the URI has an empty name.";
		return false;
	}
	for (p = s; p < eq; p++)
		if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '_'))
		{
			*err = "An attribute name of the URI holds a character other than letters, digits, \"-\" and \"_\".";
			return false;
		}
	for (i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
		if (strlen(attrs[i].name) == nlen && memcmp(attrs[i].name, s, nlen) == 0)
			slot = &attrs[i];

	/* decode the value */
	for (p = eq + 1; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '%')
		{
			int			hi,
						lo;

			if (end - p < 3 || (hi = hexval(p[1])) < 0 || (lo = hexval(p[2])) < 0)
			{
				*err = "The URI has a \"%\" not followed by two hexadecimal digits.";
				return false;
			}
			val[vlen++] = (char) (hi * 16 + lo);
			p += 2;
		}
		else if (is_value_char(c, query))
			val[vlen++] = (char) c;
		else
		{
			*err = query ? "The URI's query holds a character that must be percent-encoded."
				: "The URI's path holds a character that must be percent-encoded.";
			return false;
		}
	}
	val[vlen] = '\0';
	*bufp = val + vlen + 1;

	if (slot == NULL)
	{
		/* vendor-specific: "<vendor prefix>-<name>" */
		if (memchr(s, '-', nlen) == NULL)
		{
			*err = "The URI has an attribute that RFC 7512 does not define.";
			return false;
		}
		out->n_vendor++;
		return true;
	}
	if (slot->query != query)
	{
		*err = query ? "The URI has a path attribute in its query."
			: "The URI has a query attribute in its path.";
		return false;
	}
	{
		const char **field = (const char **) ((char *) out + slot->offset);

		if (*field != NULL)
		{
			*err = "An attribute appears twice in the URI.";
			return false;
		}
		*field = val;
	}
	if (slot->offset == offsetof(PgckP11Uri, id))
	{
		out->id_len = vlen;
		return true;
	}
	if (strlen(val) != vlen)
	{
		*err = "An attribute value of the URI holds a NUL byte.";
		return false;
	}
	if (slot->offset == offsetof(PgckP11Uri, type) &&
		strcmp(val, "cert") != 0 && strcmp(val, "data") != 0 &&
		strcmp(val, "private") != 0 && strcmp(val, "public") != 0 &&
		strcmp(val, "secret-key") != 0)
	{
		*err = "The URI's type is not one of cert, data, private, public and secret-key.";
		return false;
	}
	if (slot->offset == offsetof(PgckP11Uri, slot_id))
	{
		if (!all_digits(val) || vlen > 19)
		{
			*err = "The URI's slot-id is not a decimal number.";
			return false;
		}
		out->slot_id_value = strtoul(val, NULL, 10);
	}
	if (slot->offset == offsetof(PgckP11Uri, library_version))
	{
		char		major[8],
					minor[8];
		const char *dot = strchr(val, '.');
		size_t		mlen = dot ? (size_t) (dot - val) : vlen;

		if (mlen == 0 || mlen >= sizeof(major) || (dot && strlen(dot + 1) >= sizeof(minor)))
		{
			*err = "The URI's library-version is not M or M.N with decimal numbers.";
			return false;
		}
		memcpy(major, val, mlen);
		major[mlen] = '\0';
		strcpy(minor, dot ? dot + 1 : "0");
		if (!all_digits(major) || !all_digits(minor))
		{
			*err = "The URI's library-version is not M or M.N with decimal numbers.";
			return false;
		}
		out->library_version_major = atoi(major);
		out->library_version_minor = atoi(minor);
	}
	return true;
}

bool
pgck_p11_uri_parse(const char *uri, PgckP11Uri *out, char *buf, size_t buflen,
				   const char **err)
{
	static const char scheme[] = "pkcs11:";
	const char *p;
	const char *q;
	const char *end;
	char	   *bufp = buf;

	memset(out, 0, sizeof(*out));
	*err = NULL;
	if (buflen < strlen(uri) + 1)
	{
		*err = "The decoding buffer is too small.";
		return false;
	}
	if (strncasecmp(uri, scheme, sizeof(scheme) - 1) != 0)
	{
		*err = "A PKCS#11 URI starts with \"pkcs11:\".";
		return false;
	}
	p = uri + sizeof(scheme) - 1;
	q = strchr(p, '?');
	end = q ? q : p + strlen(p);
	/* path: attributes separated by ';' (an empty path is allowed) */
	while (p < end)
	{
		const char *semi = memchr(p, ';', end - p);
		const char *aend = semi ? semi : end;

		if (!parse_attr(p, aend, false, out, &bufp, err))
			return false;
		if (semi && semi + 1 == end)
		{
			*err = "The URI's path ends with \";\".";
			return false;
		}
		p = semi ? semi + 1 : end;
	}
	if (q == NULL)
		return true;
	/* query: attributes separated by '&' */
	p = q + 1;
	end = p + strlen(p);
	if (p == end)
	{
		*err = "The URI has an empty query after \"?\".";
		return false;
	}
	while (p < end)
	{
		const char *amp = memchr(p, '&', end - p);
		const char *aend = amp ? amp : end;

		if (!parse_attr(p, aend, true, out, &bufp, err))
			return false;
		if (amp && amp + 1 == end)
		{
			*err = "The URI's query ends with \"&\".";
			return false;
		}
		p = amp ? amp + 1 : end;
	}
	return true;
}
