/*-------------------------------------------------------------------------
 *
 * kms_local.c
 *		The development-only "local:<name>" KMS provider.
 *
 * One master key of 32 random bytes lives in the file named by
 * pgcrypt_kms.local_key_file, created with mode 0600 on first use (written
 * to a temporary file and linked into place, so a concurrent backend never
 * reads half a key).  A file readable by group or others is refused.  Each
 * <name> gets its own wrapping key, HKDF-SHA-256(master, salt, info = name),
 * and data keys are wrapped with AES-256-GCM under it, binding the name and
 * the key's KMS context as AAD:
 *
 *	 'P' 'L' 1 | nonce(12) | wrapped key(32) | GCM tag(16)
 *
 * Anyone who can read the master key file can decrypt everything: this
 * provider exists so the extension can be tried and tested without a KMS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aead.h"
#include "guc.h"
#include "kms.h"
#include "pgck_errcodes.h"
#include "portability/instr_time.h"
#if PG_VERSION_NUM >= 160000
#include "varatt.h"				/* VARDATA and friends left postgres.h in 16 */
#endif

#define MASTER_LEN		32
#define WRAP_MAGIC0		'P'
#define WRAP_MAGIC1		'L'
#define WRAP_VERSION	1
#define WRAP_HDR_LEN	3
#define WRAPPED_LEN(n)	(WRAP_HDR_LEN + PGCK_GCM_NONCE_LEN + (n) + PGCK_GCM_TAGLEN)

static const char hkdf_salt[] = "pgcrypt_kms local provider v1";

static void
local_error(const char *what)
{
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not %s the configured local master key file: %m", what),
			 errdetail_log("pgcrypt_kms.local_key_file is \"%s\".", pgck_local_key_file)));
}

/* Create the master key file if it does not exist yet. */
static void
create_master_file(void)
{
	char		tmp[MAXPGPATH];
	uint8		key[MASTER_LEN];
	int			fd;
	bool		ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", pgck_local_key_file, (int) getpid());
	if (!pgck_random_bytes(key, sizeof(key)))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate a local master key")));
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		pgck_wipe(key, sizeof(key));
		local_error("create");
	}
	ok = write(fd, key, sizeof(key)) == sizeof(key) && fsync(fd) == 0;
	pgck_wipe(key, sizeof(key));
	if (close(fd) != 0)
		ok = false;
	if (!ok)
	{
		unlink(tmp);
		local_error("write");
	}
	/* link() fails if another backend won the race: use its key */
	if (link(tmp, pgck_local_key_file) != 0 && errno != EEXIST)
	{
		int			save = errno;

		unlink(tmp);
		errno = save;
		local_error("create");
	}
	unlink(tmp);
	ereport(LOG,
			(errmsg("pgcrypt_kms: created local master key file \"%s\"", pgck_local_key_file),
			 errdetail("The local: provider is for development only."),
			 errhidestmt(true)));
}

/* Read the master key into key[MASTER_LEN]; the caller wipes it. */
static void
read_master_key(uint8 *key)
{
	int			fd;
	struct stat st;
	ssize_t		n;

	if (pgck_local_key_file == NULL || pgck_local_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("pgcrypt_kms.local_key_file is not set"),
				 errhint("Set it to an absolute path to use local: keys (development only).")));

	fd = open(pgck_local_key_file, O_RDONLY | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
	{
		create_master_file();
		fd = open(pgck_local_key_file, O_RDONLY | O_NOFOLLOW);
	}
	if (fd < 0)
		local_error("open");
	if (fstat(fd, &st) != 0)
	{
		close(fd);
		local_error("stat");
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0 ||
		st.st_size != MASTER_LEN)
	{
		close(fd);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("the configured local master key file is not usable"),
				 errdetail("It must be a regular file of %d bytes that only its owner can access (mode 0600).",
						   MASTER_LEN),
				 errdetail_log("pgcrypt_kms.local_key_file \"%s\" must be a regular file of %d bytes that only its owner can access (mode 0600).",
							   pgck_local_key_file, MASTER_LEN)));
	}
	n = read(fd, key, MASTER_LEN);
	close(fd);
	if (n != MASTER_LEN)
	{
		pgck_wipe(key, MASTER_LEN);
		local_error("read");
	}
}

/* The AES key that wraps data keys of <name>. */
static PgckAead *
wrapping_aead(const char *name)
{
	uint8		master[MASTER_LEN];
	uint8		kek[PGCK_AES256_KEY_LEN];
	PgckAead   *aead;
	bool		ok;

	if (name[0] == '\0' || strlen(name) > 256)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_BAD_ARGUMENT),
				 errmsg("invalid local key name \"%s\"", name)));
	read_master_key(master);
	ok = pgck_hkdf_sha256((const uint8 *) hkdf_salt, strlen(hkdf_salt), master, sizeof(master),
						  (const uint8 *) name, strlen(name), kek, sizeof(kek));
	pgck_wipe(master, sizeof(master));
	aead = ok ? pgck_aead_new(kek) : NULL;
	pgck_wipe(kek, sizeof(kek));
	if (aead == NULL)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not derive the wrapping key of local key \"%s\"", name)));
	return aead;
}

/* AAD: the name, a NUL, and the key's KMS context. */
static char *
wrap_aad(const char *name, const char *kms_context, size_t *len)
{
	const char *ctx = kms_context ? kms_context : "{}";
	size_t		nlen = strlen(name);
	char	   *aad = palloc(nlen + 1 + strlen(ctx) + 1);

	memcpy(aad, name, nlen + 1);
	strcpy(aad + nlen + 1, ctx);
	*len = nlen + 1 + strlen(ctx);
	return aad;
}

/*
 * The keyed context is made last and freed (cleansed) before anything can
 * raise an error: whatever may ereport (allocations, the master key file)
 * comes before it.
 */
static bytea *
local_wrap(const char *name, const char *kms_context, const uint8 *key, size_t key_len)
{
	bytea	   *out = palloc(VARHDRSZ + WRAPPED_LEN(key_len));
	uint8	   *p = (uint8 *) VARDATA(out);
	size_t		aad_len;
	char	   *aad = wrap_aad(name, kms_context, &aad_len);
	PgckAead   *aead;
	bool		ok;

	SET_VARSIZE(out, VARHDRSZ + WRAPPED_LEN(key_len));
	aead = wrapping_aead(name);
	p[0] = WRAP_MAGIC0;
	p[1] = WRAP_MAGIC1;
	p[2] = WRAP_VERSION;
	ok = pgck_random_bytes(p + WRAP_HDR_LEN, PGCK_GCM_NONCE_LEN) &&
		pgck_aead_seal(aead, p + WRAP_HDR_LEN, p, WRAP_HDR_LEN,
					   (const uint8 *) aad, aad_len, key, key_len,
					   p + WRAP_HDR_LEN + PGCK_GCM_NONCE_LEN,
					   p + WRAP_HDR_LEN + PGCK_GCM_NONCE_LEN + key_len);
	pgck_aead_free(aead);
	if (!ok)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not wrap a data key under local key \"%s\"", name)));
	return out;
}

static bytea *
local_generate_data_key(const char *key_ref, const char *kms_context,
						uint8 *dek_out, size_t key_len, char **key_arn_out)
{
	instr_time	start,
				end;
	bytea	   *out;

	*key_arn_out = NULL;		/* a local key has no ARN */
	INSTR_TIME_SET_CURRENT(start);
	if (!pgck_random_bytes(dek_out, key_len))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not generate a data key")));
	out = local_wrap(key_ref, kms_context, dek_out, key_len);
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	pgck_stats_kms_call(PGCK_OP_GENERATE_DATA_KEY, INSTR_TIME_GET_MILLISEC(end), true);
	return out;
}

static void
local_decrypt_data_key(const char *key_ref, const char *kms_context,
					   const bytea *wrapped, uint8 *dek_out, size_t key_len,
					   char **key_arn_out)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(wrapped);
	size_t		len = VARSIZE_ANY_EXHDR(wrapped);
	PgckAead   *aead;
	size_t		aad_len;
	char	   *aad;
	bool		ok;
	instr_time	start,
				end;

	*key_arn_out = NULL;
	INSTR_TIME_SET_CURRENT(start);
	if (len != WRAPPED_LEN(key_len) || p[0] != WRAP_MAGIC0 || p[1] != WRAP_MAGIC1 ||
		p[2] != WRAP_VERSION)
	{
		pgck_stats_kms_call(PGCK_OP_DECRYPT, 0, false);
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("wrapped data key is not a local: provider key of the expected size"),
				 errdetail_internal("KMS error type: InvalidCiphertextException")));
	}
	/* nothing that can raise an error between making the keyed context and freeing it */
	aad = wrap_aad(key_ref, kms_context, &aad_len);
	aead = wrapping_aead(key_ref);
	ok = pgck_aead_open(aead, p + WRAP_HDR_LEN, p, WRAP_HDR_LEN,
						(const uint8 *) aad, aad_len,
						p + WRAP_HDR_LEN + PGCK_GCM_NONCE_LEN, key_len,
						p + WRAP_HDR_LEN + PGCK_GCM_NONCE_LEN + key_len, dek_out);
	pgck_aead_free(aead);
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	pgck_stats_kms_call(PGCK_OP_DECRYPT, INSTR_TIME_GET_MILLISEC(end), ok);
	if (!ok)
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("could not unwrap a data key with local key \"%s\"", key_ref),
				 errdetail("The master key file is not the one the key was wrapped with, or the wrapped key or its context was changed."),
				 errdetail_internal("KMS error type: InvalidCiphertextException")));
}

static bytea *
local_reencrypt_data_key(const char *old_key_ref, const char *new_key_ref,
						 const char *kms_context, const bytea *wrapped, char **key_arn_out)
{
	uint8		dek[PGCK_DEK_LEN];
	bytea	   *volatile out = NULL;
	char	   *no_arn;

	*key_arn_out = NULL;
	/* a local provider has no boundary to keep: unwrap and wrap in-process */
	if (VARSIZE_ANY_EXHDR(wrapped) != WRAPPED_LEN(PGCK_DEK_LEN))
		ereport(ERROR,
				(errcode(PGCK_ERRCODE_KMS_FAILURE),
				 errmsg("wrapped data key is not a local: provider key of the expected size")));
	PG_TRY();
	{
		local_decrypt_data_key(old_key_ref, kms_context, wrapped, dek, sizeof(dek), &no_arn);
		out = local_wrap(new_key_ref, kms_context, dek, sizeof(dek));
		pgck_stats_kms_call(PGCK_OP_REENCRYPT, 0, true);
	}
	PG_FINALLY();
	{
		pgck_wipe(dek, sizeof(dek));
	}
	PG_END_TRY();
	return out;
}

/* Wrap a data key moved here from another provider. */
static bytea *
local_wrap_data_key(const char *key_ref, const char *kms_context, const uint8 *dek,
					size_t key_len, char **key_arn_out)
{
	instr_time	start,
				end;
	bytea	   *out;

	*key_arn_out = NULL;
	INSTR_TIME_SET_CURRENT(start);
	out = local_wrap(key_ref, kms_context, dek, key_len);
	INSTR_TIME_SET_CURRENT(end);
	INSTR_TIME_SUBTRACT(end, start);
	pgck_stats_kms_call(PGCK_OP_ENCRYPT, INSTR_TIME_GET_MILLISEC(end), true);
	return out;
}

static void
local_check_key(const char *key_ref)
{
	PgckAead   *aead = wrapping_aead(key_ref);

	pgck_aead_free(aead);
}

const PgckKmsProvider pgck_kms_local_provider = {
	.scheme = "local",
	.generate_data_key = local_generate_data_key,
	.decrypt_data_key = local_decrypt_data_key,
	.reencrypt_data_key = local_reencrypt_data_key,
	.wrap_data_key = local_wrap_data_key,
	.check_key = local_check_key,
};

void
pgck_kms_local_init(void)
{
	/* nothing to set up: the master key file is read on each (rare) use */
}
