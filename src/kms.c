/*-------------------------------------------------------------------------
 *
 * kms.c
 *		Choose the KMS provider of a key reference URI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "kms.h"
#include "pgck_errcodes.h"

static const PgckKmsProvider *const providers[] = {
	&pgck_kms_aws_provider,
	&pgck_kms_local_provider,
	&pgck_kms_pkcs11_provider,
	&pgck_kms_vault_provider,
	&pgck_kms_kmip_provider,
};

const PgckKmsProvider *
pgck_kms_provider_for(const char *uri, const char **rest)
{
	const char *colon = strchr(uri, ':');
	size_t		i;

	if (colon != NULL && colon[1] != '\0')
	{
		for (i = 0; i < lengthof(providers); i++)
		{
			const char *scheme = providers[i]->scheme;

			if (strlen(scheme) == (size_t) (colon - uri) &&
				strncmp(uri, scheme, colon - uri) == 0)
			{
				*rest = colon + 1;
				return providers[i];
			}
		}
	}
	ereport(ERROR,
			(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
			 errmsg("invalid KMS key reference \"%s\"", uri),
			 errhint("Use \"aws-kms:<key id, key ARN, alias/name or alias ARN>\", \"vault-transit:<mount>/<key>\", \"kmip:<unique identifier or name=...>\", \"pkcs11:<RFC 7512 URI>\", or \"local:<name>\" for development.")));
	return NULL;				/* keep compiler quiet */
}
