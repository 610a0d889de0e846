/*-------------------------------------------------------------------------
 *
 * kms_common.c
 *		Retry backoff, interruptible sleep, call deadlines and secret files
 *		for every KMS provider.  See kms_common.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

#include "guc.h"
#include "http.h"
#include "kms_common.h"
#include "pgck_errcodes.h"

#define MAX_BACKOFF_MS			20000.0
#define THROTTLE_SCALE_MS		1000.0
#define TRANSIENT_SCALE_MS		50.0

double
pgck_kms_backoff_ms(int retry, bool throttling)
{
	double		scale = throttling ? THROTTLE_SCALE_MS : TRANSIENT_SCALE_MS;
	double		cap = scale * ldexp(1.0, Min(Max(retry, 1) - 1, 30));

	return pg_prng_double(&pg_global_prng_state) * Min(cap, MAX_BACKOFF_MS);
}

void
pgck_kms_sleep_ms(double ms)
{
	double		end = pgck_http_now_ms() + ms;

	for (;;)
	{
		double		left = end - pgck_http_now_ms();

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) ceil(left), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

double
pgck_kms_call_deadline_ms(void)
{
	return pgck_http_now_ms() + pgck_kms_timeout;
}

bool
pgck_kms_wait_before_retry(PgckKmsOp op, int attempt, bool throttling, double deadline_ms)
{
	double		delay = pgck_kms_backoff_ms(attempt, throttling);
	double		now = pgck_http_now_ms();

	if (now >= deadline_ms - 1)
		return false;
	if (now + delay >= deadline_ms)
		delay = Max(deadline_ms - now - 1, 0);
	pgck_stats_kms_retry(op);
	pgck_kms_sleep_ms(delay);
	return true;
}

char *
pgck_kms_read_secret_file(const char *path, size_t maxlen, int flags, const char *what)
{
	int			fd;
	struct stat st;
	char	   *buf;
	size_t		len = 0;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if ((flags & PGCK_SECRET_MISSING_OK) && (errno == ENOENT || errno == ENOTDIR))
			return NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the configured %s: %m", what),
				 errdetail_log("The file is \"%s\".", path)));
	}
	if (fstat(fd, &st) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat the configured %s: %m", what),
				 errdetail_log("The file is \"%s\".", path)));
	}
	/* a shared AWS file may be /dev/null (the SDKs' way to say "none") */
	if ((flags & PGCK_SECRET_PRIVATE) && !S_ISREG(st.st_mode))
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the configured %s is not a regular file", what),
				 errdetail_log("The file is \"%s\".", path)));
	}
	if ((flags & PGCK_SECRET_PRIVATE) && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_PRIVILEGE),
				 errmsg("the configured %s is accessible to other users", what),
				 errdetail("Its permissions are %04o; a file holding a secret must not be readable by its group or others.",
						   (unsigned int) (st.st_mode & 07777)),
				 errdetail_log("The file \"%s\" has permissions %04o; a file holding a secret must not be readable by its group or others.",
							   path, (unsigned int) (st.st_mode & 07777)),
				 errhint("Run chmod 600 on the file; it must belong to the database server's operating system user.")));
	}

	buf = palloc(maxlen + 2);
	for (;;)
	{
		ssize_t		n = read(fd, buf + len, maxlen + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			int			save_errno = errno;

			explicit_bzero(buf, maxlen + 2);
			pfree(buf);
			CloseTransientFile(fd);
			errno = save_errno;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read the configured %s: %m", what),
					 errdetail_log("The file is \"%s\".", path)));
		}
		if (n == 0)
			break;
		len += n;
		if (len > maxlen)
			break;
	}
	CloseTransientFile(fd);
	if (len > maxlen)
	{
		explicit_bzero(buf, maxlen + 2);
		pfree(buf);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the configured %s is too large", what),
				 errdetail("The limit is %zu bytes.", maxlen),
				 errdetail_log("The file \"%s\" is over the limit of %zu bytes.", path, maxlen)));
	}
	buf[len] = '\0';
	if (strlen(buf) != len)
	{
		explicit_bzero(buf, len);
		pfree(buf);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the configured %s contains a NUL byte", what),
				 errdetail_log("The file is \"%s\".", path)));
	}
	return buf;
}

void
pgck_kms_wipe_pfree(char *p)
{
	if (p != NULL)
	{
		explicit_bzero(p, strlen(p));
		pfree(p);
	}
}

/*
 * Calling a provider (see kms.h): the one place that times a provider call
 * and counts it in kms_cache_stats(), for the providers whose entry points
 * are a whole call each (count_calls), and that wipes the caller's data key
 * buffer when a call that fills it fails.
 */
typedef struct KmsCall
{
	PgckKmsOp	op;
	const char *key_ref;
	const char *new_key_ref;
	const char *kms_context;
	const bytea *wrapped;
	const uint8 *dek;
	uint8	   *dek_out;
	size_t		key_len;
	char	  **key_arn_out;
	bytea	   *result;
} KmsCall;

static void
kms_call(const PgckKmsProvider *provider, KmsCall *c)
{
	double		start = pgck_http_now_ms();
	volatile bool ok = false;

	if (c->key_arn_out != NULL)
		*c->key_arn_out = NULL;
	PG_TRY();
	{
		switch (c->op)
		{
			case PGCK_OP_GENERATE_DATA_KEY:
				c->result = provider->generate_data_key(c->key_ref, c->kms_context, c->dek_out,
														c->key_len, c->key_arn_out);
				break;
			case PGCK_OP_DECRYPT:
				provider->decrypt_data_key(c->key_ref, c->kms_context, c->wrapped, c->dek_out,
										   c->key_len, c->key_arn_out);
				break;
			case PGCK_OP_REENCRYPT:
				c->result = provider->reencrypt_data_key(c->key_ref, c->new_key_ref, c->kms_context,
														 c->wrapped, c->key_arn_out);
				break;
			case PGCK_OP_ENCRYPT:
				c->result = provider->wrap_data_key(c->key_ref, c->kms_context, c->dek,
													c->key_len, c->key_arn_out);
				break;
			case PGCK_OP_DESCRIBE_KEY:
				provider->check_key(c->key_ref);
				break;
			default:
				elog(ERROR, "unexpected KMS operation %d", (int) c->op);
		}
		ok = true;
	}
	PG_FINALLY();
	{
		if (!ok && c->dek_out != NULL)
			explicit_bzero(c->dek_out, c->key_len);
		if (provider->count_calls)
			pgck_stats_kms_call(c->op, pgck_http_now_ms() - start, ok);
	}
	PG_END_TRY();
}

bytea *
pgck_kms_generate_data_key(const PgckKmsProvider *provider, const char *key_ref,
						   const char *kms_context, uint8 *dek_out, size_t key_len,
						   char **key_arn_out)
{
	KmsCall		c = {.op = PGCK_OP_GENERATE_DATA_KEY, .key_ref = key_ref,
	.kms_context = kms_context, .dek_out = dek_out, .key_len = key_len, .key_arn_out = key_arn_out};

	kms_call(provider, &c);
	return c.result;
}

void
pgck_kms_decrypt_data_key(const PgckKmsProvider *provider, const char *key_ref,
						  const char *kms_context, const bytea *wrapped, uint8 *dek_out,
						  size_t key_len, char **key_arn_out)
{
	KmsCall		c = {.op = PGCK_OP_DECRYPT, .key_ref = key_ref, .kms_context = kms_context,
	.wrapped = wrapped, .dek_out = dek_out, .key_len = key_len, .key_arn_out = key_arn_out};

	kms_call(provider, &c);
}

bytea *
pgck_kms_reencrypt_data_key(const PgckKmsProvider *provider, const char *old_key_ref,
							const char *new_key_ref, const char *kms_context,
							const bytea *wrapped, char **key_arn_out)
{
	KmsCall		c = {.op = PGCK_OP_REENCRYPT, .key_ref = old_key_ref, .new_key_ref = new_key_ref,
	.kms_context = kms_context, .wrapped = wrapped, .key_arn_out = key_arn_out};

	kms_call(provider, &c);
	return c.result;
}

bytea *
pgck_kms_wrap_data_key(const PgckKmsProvider *provider, const char *key_ref,
					   const char *kms_context, const uint8 *dek, size_t key_len,
					   char **key_arn_out)
{
	KmsCall		c = {.op = PGCK_OP_ENCRYPT, .key_ref = key_ref, .kms_context = kms_context,
	.dek = dek, .key_len = key_len, .key_arn_out = key_arn_out};

	kms_call(provider, &c);
	return c.result;
}

void
pgck_kms_check_key(const PgckKmsProvider *provider, const char *key_ref)
{
	KmsCall		c = {.op = PGCK_OP_DESCRIBE_KEY, .key_ref = key_ref};

	kms_call(provider, &c);
}
