/*-------------------------------------------------------------------------
 *
 * kms_aws.h
 *		The AWS KMS provider (pgck_kms_aws_provider, declared in kms.h) and
 *		the region helpers shared with aws_credentials.c (retries, sleeping
 *		and secret files are in kms_common.h, for every provider).
 *
 * Key references (the part after "aws-kms:"): a key id (UUID or mrk-...),
 * a key ARN, "alias/<name>", or an alias ARN.  An ARN fixes the region of
 * the call; otherwise the region is pgcrypt_kms.aws_region, AWS_REGION,
 * AWS_DEFAULT_REGION or the profile's region, and there is no default.
 * The endpoint is pgcrypt_kms.aws_endpoint, AWS_ENDPOINT_URL_KMS,
 * AWS_ENDPOINT_URL (unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true), else
 * https://kms[-fips].<region>.<partition DNS suffix> (FIPS with
 * AWS_USE_FIPS_ENDPOINT=true).
 *
 * Retries: throttling, 5xx and transient network errors, with capped
 * exponential backoff and full jitter, up to pgcrypt_kms.kms_max_attempts
 * attempts and within pgcrypt_kms.kms_timeout for the whole call.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGCK_KMS_AWS_H
#define PGCK_KMS_AWS_H

#include "kms.h"

/* Valid AWS region name ("us-east-1", "cn-north-1", ...). */
extern bool pgck_aws_region_is_valid(const char *region);

/* DNS suffix of the partition of a region ("amazonaws.com", ...). */
extern const char *pgck_aws_dns_suffix(const char *region);

#endif							/* PGCK_KMS_AWS_H */
