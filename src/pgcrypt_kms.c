/*-------------------------------------------------------------------------
 *
 * pgcrypt_kms.c
 *		Module entry point: _PG_init only calls each module's init.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "guc.h"
#include "keycache.h"
#include "keycache_shared.h"
#include "kms.h"
#include "usage.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	pgck_guc_init();
	pgck_keycache_init();
	pgck_usage_init();
	pgck_shcache_init();
	pgck_kms_local_init();
	pgck_kms_aws_init();
	pgck_kms_pkcs11_init();
	pgck_kms_kmip_init();
}
