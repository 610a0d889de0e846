/*-------------------------------------------------------------------------
 *
 * test_pkcs11_uri.c
 *		Unit tests of src/pkcs11_uri.c: the example URIs of RFC 7512
 *		section 3.3, percent-decoding, and what a strict parser refuses.
 *
 * Usage: test_pkcs11_uri [vectors-folder]   (the argument is not used).
 * Each parse gets a malloc'd buffer of exactly strlen(uri) + 1 bytes, the
 * size the API promises to stay within (ASan catches an overrun).
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11_uri.h"
#include "unit.h"

static char *buf = NULL;

static bool
parse(const char *uri, PgckP11Uri *u, const char **err)
{
	free(buf);
	buf = malloc(strlen(uri) + 1);
	return pgck_p11_uri_parse(uri, u, buf, strlen(uri) + 1, err);
}

static bool
eq(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void
accepts(const char *uri)
{
	PgckP11Uri	u;
	const char *err = NULL;
	bool		ok = parse(uri, &u, &err);

	unit_check(ok, "accepted: %s%s%s", uri, err ? " -- " : "", err ? err : "");
}

static void
refuses(const char *uri, const char *why)
{
	PgckP11Uri	u;
	const char *err = NULL;
	bool		ok = parse(uri, &u, &err);

	unit_check(!ok && err != NULL, "refused (%s): %s%s%s", why, uri, err ? " -- " : "", err ? err : "");
}

int
main(int argc, char **argv)
{
	PgckP11Uri	u;
	const char *err;

	/* RFC 7512 section 3.3, every example */
	accepts("pkcs11:");
	accepts("pkcs11:object=my-pubkey;type=public");
	accepts("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
	accepts("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;"
			"manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;"
			"type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin");
	accepts("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
	accepts("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
	accepts("pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin");
	accepts("pkcs11:slot-description=Sun%20Metaslot");
	accepts("pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23");
	accepts("pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;"
			"id=%01%02%03%Ba%dd%Ef%fe%06;object=my-certificate");
	accepts("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert");
	accepts("pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert");
	accepts("pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a?pin-source=file:/etc/token_pin&vendor-bbb=value-b");

	/* decoded values */
	unit_check(parse("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;"
					 "model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
					 &u, &err) &&
			   eq(u.token, "The Software PKCS#11 Softtoken") && eq(u.manufacturer, "Snake Oil, Inc.") &&
			   eq(u.model, "1.0") && eq(u.object, "my-certificate") && eq(u.type, "cert") &&
			   u.id_len == 8 && memcmp(u.id, "\x69\x95\x3E\x5C\xF4\xBD\xEC\x91", 8) == 0 &&
			   eq(u.serial, "") && eq(u.pin_source, "file:/etc/token_pin") && u.pin_value == NULL &&
			   u.n_vendor == 0,
			   "RFC 7512 full example decodes attribute by attribute");
	unit_check(parse("pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ef%fe%06", &u, &err) &&
			   eq(u.token, "My token% created by Joe") && u.library_version_major == 3 &&
			   u.library_version_minor == 0 && u.id_len == 8 &&
			   memcmp(u.id, "\x01\x02\x03\xba\xdd\xef\xfe\x06", 8) == 0,
			   "hex digits of either case; library-version M means M.0");
	unit_check(parse("pkcs11:library-version=1.23", &u, &err) && u.library_version_major == 1 &&
			   u.library_version_minor == 23, "library-version M.N");
	unit_check(parse("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=x", &u, &err) &&
			   eq(u.token, "A name with a substring %;"), "%25 and %3B decode to %% and ;");
	unit_check(parse("pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1", &u, &err) &&
			   eq(u.token, "Name with a small A with acute: \xc3\xa1"), "UTF-8 by percent-encoding");
	unit_check(parse("pkcs11:token=my-token;vendor-aaa=value-a?pin-source=file:/x&vendor-bbb=value-b", &u, &err) &&
			   u.n_vendor == 2 && eq(u.pin_source, "file:/x"), "vendor-specific attributes counted");
	unit_check(parse("pkcs11:token=pg;object=master", &u, &err) && eq(u.token, "pg") &&
			   eq(u.object, "master") && u.id == NULL && u.serial == NULL,
			   "pkcs11:token=pg;object=master");
	unit_check(parse("PKCS11:token=pg", &u, &err) && eq(u.token, "pg"), "the scheme is case-insensitive");
	unit_check(parse("pkcs11:id=%00%01", &u, &err) && u.id_len == 2 && u.id[0] == 0 && u.id[1] == 1,
			   "id may hold NUL bytes");
	unit_check(parse("pkcs11:slot-id=42;object=a=b", &u, &err) && u.slot_id_value == 42 &&
			   eq(u.object, "a=b"), "slot-id decimal; '=' inside a value");
	unit_check(parse("pkcs11:object=x?module-path=/a/b?c|d", &u, &err) && eq(u.module_path, "/a/b?c|d"),
			   "'/', '?' and '|' allowed in the query");

	/* refusals */
	refuses("pkcs11", "no colon");
	refuses("pkcs12:token=pg", "other scheme");
	refuses("token=pg", "no scheme");
	refuses("pkcs11:token=pg;token=pg", "attribute twice");
	refuses("pkcs11:token=pg;;object=a", "empty attribute");
	refuses("pkcs11:token=pg;", "trailing ';'");
	refuses("pkcs11:token", "no '='");
	refuses("pkcs11:=pg", "empty name");
	refuses("pkcs11:tokn=pg", "unknown standard-looking name without '-'");
	refuses("pkcs11:Token=pg", "names are lowercase");
	refuses("pkcs11:token=p g", "space not encoded");
	refuses("pkcs11:token=p/g", "'/' in the path");
	refuses("pkcs11:token=p&g", "'&' in the path");
	refuses("pkcs11:token=p#g", "'#'");
	refuses("pkcs11:token=p%2", "truncated %");
	refuses("pkcs11:token=p%zz", "% not hex");
	refuses("pkcs11:token=p%00g", "NUL in a string attribute");
	refuses("pkcs11:token=\xc3\xa1", "raw non-ASCII");
	refuses("pkcs11:type=key", "unknown type");
	refuses("pkcs11:slot-id=1a", "slot-id not decimal");
	refuses("pkcs11:slot-id=", "slot-id empty");
	refuses("pkcs11:library-version=1.", "library-version 1.");
	refuses("pkcs11:library-version=.1", "library-version .1");
	refuses("pkcs11:library-version=1.2.3", "library-version 1.2.3");
	refuses("pkcs11:pin-value=1234", "query attribute in the path");
	refuses("pkcs11:object=x?token=pg", "path attribute in the query");
	refuses("pkcs11:object=x?", "empty query");
	refuses("pkcs11:object=x?pin-source=a&", "trailing '&'");
	refuses("pkcs11:object=x?pin-source=a;b", "';' in the query");
	refuses("pkcs11:object=x?pin-value=a&pin-value=b", "query attribute twice");

	free(buf);
	(void) argc;
	(void) argv;
	return unit_finish();
}
