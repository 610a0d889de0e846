/*-------------------------------------------------------------------------
 *
 * test_sigv4.c
 *		Unit test of sigv4.c against the AWS SigV4 test suite.
 *
 * Usage: test_sigv4 [DIR]; DIR is the sigv4 vectors folder (default
 * ../shared/vectors/sigv4), or a folder holding it as sigv4/ (the
 * Makefile passes the shared vectors root).
 *
 * Every folder <case>/ (at any depth) holding a <case>.* file is one case.
 * Its raw request <case>.req is parsed (request line, header lines with
 * folded continuation lines, blank line, body), signed with the suite's
 * fixed credentials, and the canonical request (.creq), string to sign
 * (.sts) and Authorization value (.authz) are compared byte for byte, as is
 * the signed request (.sreq) rebuilt from the request and the Authorization
 * value.  A case with a file missing, a request that does not parse or a
 * signing failure is a failing case: nothing found is silently skipped.
 * Two cases need the session token that the suite keeps out of the .req;
 * see special_cases[].
 *
 * Output: "ok N - case" / "not ok N - case: what differed", then
 * "N passed, N failed"; exit 1 on any failure or when nothing ran.
 *
 *-------------------------------------------------------------------------
 */
#include "sigv4.h"
#include "unit.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_HEADERS 64

static int	ncases = 0;			/* case folders found */

/* The suite's fixed inputs (SOURCE.md) */
static const PgckSigv4Params suite_params = {
	.access_key_id = "AKIDEXAMPLE",
	.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	.region = "us-east-1",
	.service = "service",
	.amz_date = "20150830T123600Z",
};

/*
 * Cases whose .req is not the whole story.
 *
 * get-vanilla-with-session-token: the .req has no token; the SDKs add
 * X-Amz-Security-Token from the session credential before signing, and the
 * .creq shows it signed.  Its .sreq is not usable: it lists the token among
 * SignedHeaders but carries get-vanilla's signature (of the request without
 * the token), so it matches no correct signer; .creq/.sts/.authz are
 * consistent and are checked.
 *
 * post-sts-token/post-sts-header-after (see its readme.txt): the token is
 * added after signing, so it is neither in the .req nor signed (.creq and
 * .authz are those of post-vanilla); the .sreq shows it added before the
 * Authorization header.  The token is the one readme.txt gives.
 * (post-sts-header-before needs nothing: its .req holds the token.)
 */
struct special_case
{
	const char *name;
	const char *token_before;	/* added to the request before signing */
	const char *token_after;	/* added to the request after signing */
	bool		sreq_unusable;
};

static const struct special_case special_cases[] = {
	{"get-vanilla-with-session-token",
		"6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
	NULL, true},
	{"post-sts-header-after", NULL,
		"AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
	false},
};

/* A parsed .req; every pointer points into buf (or raw, for head/body). */
struct parsed_req
{
	char	   *raw;			/* the file */
	size_t		raw_len;
	char	   *buf;			/* mutable copy of the head, split in place */
	const char *head;			/* request line + header lines, raw */
	size_t		head_len;
	const unsigned char *body;
	size_t		body_len;
	PgckSigv4Request req;
	PgckSigv4Header headers[MAX_HEADERS + 1];	/* +1: a token_before */
};

/* Whole file, NUL-terminated (for printing), or NULL when unreadable. */
static char *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *data = NULL;
	size_t		n = 0;
	size_t		cap = 0;
	size_t		got;

	if (f == NULL)
		return NULL;
	do
	{
		if (cap - n < 4096)
		{
			char	   *nd = realloc(data, cap + 8192);

			if (nd == NULL)
			{
				free(data);
				fclose(f);
				return NULL;
			}
			data = nd;
			cap += 8192;
		}
		got = fread(data + n, 1, cap - n - 1, f);
		n += got;
	} while (got > 0);
	fclose(f);
	data[n] = '\0';
	*len = n;
	return data;
}

static bool
file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool
is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Parse raw[0..raw_len) into *p; false (with *why set) when it is not a
 * request.  The head ends at the first blank line; without one (most .req
 * files end right after the last header, with no newline; two end it with
 * one) the body is empty.  A line starting with a space or tab continues the previous
 * header's value: its line break is kept in the value, which the signer
 * collapses to one space (get-header-value-multiline).
 */
static bool
parse_req(struct parsed_req *p, const char **why)
{
	const char *blank = strstr(p->raw, "\n\n");
	char	   *line;
	char	   *next;			/* the line after line, found before cutting it */
	char	   *sp1;
	char	   *sp2;
	char	   *q;
	size_t		nh = 0;

	p->head = p->raw;
	p->head_len = blank ? (size_t) (blank - p->raw) : p->raw_len;
	/* two .req files end their last header line with a newline: not a body */
	if (blank == NULL && p->head_len > 0 && p->raw[p->head_len - 1] == '\n')
		p->head_len--;
	p->body = blank ? (const unsigned char *) blank + 2 : NULL;
	p->body_len = blank ? p->raw_len - p->head_len - 2 : 0;
	if (memchr(p->raw, '\0', p->raw_len) != NULL || memchr(p->raw, '\r', p->head_len) != NULL)
		{
		*why = "NUL or CR in request";
		return false;
	}

	p->buf = malloc(p->head_len + 1);
	if (p->buf == NULL)
		{
		*why = "out of memory";
		return false;
	}
	memcpy(p->buf, p->head, p->head_len);
	p->buf[p->head_len] = '\0';

	/* cut into lines, except before a continuation line */
	for (char *c = p->buf; *c; c++)
		if (*c == '\n' && c[1] != ' ' && c[1] != '\t')
			*c = '\0';

	/* request line: METHOD SP target SP HTTP/x (the target may hold spaces) */
	line = p->buf;
	next = line + strlen(line) + 1;
	sp1 = strchr(line, ' ');
	sp2 = strrchr(line, ' ');
	if (sp1 == NULL || sp2 == sp1 || strncmp(sp2 + 1, "HTTP/", 5) != 0)
		{
		*why = "bad request line";
		return false;
	}
	*sp1 = *sp2 = '\0';
	p->req.method = line;
	p->req.path = sp1 + 1;
	q = strchr(sp1 + 1, '?');
	if (q != NULL)
		*q = '\0';
	p->req.query = q ? q + 1 : NULL;

	for (line = next; line < p->buf + p->head_len; line = next)
	{
		char	   *colon = strchr(line, ':');

		next = line + strlen(line) + 1;

		if (colon == NULL || colon == line || nh == MAX_HEADERS)
		{
			*why = "bad header line";
			return false;
		}
		*colon = '\0';
		p->headers[nh].name = line;
		p->headers[nh].value = colon + 1;
		nh++;
	}
	p->req.headers = p->headers;
	p->req.nheaders = nh;
	p->req.payload = p->body;
	p->req.payload_len = p->body_len;
	return true;
}

/* Print s as TAP diagnostics, every line behind "#   ". */
static void
diag_lines(const char *s)
{
	for (;;)
	{
		const char *nl = strchr(s, '\n');

		printf("#   %.*s\n", (int) (nl ? nl - s : (long) strlen(s)), s);
		if (nl == NULL)
			break;
		s = nl + 1;
	}
}

/* Compare got with the file; on a difference, show both and return false. */
static bool
same_as_file(const char *path, const char *got, const char *label)
{
	size_t		len = 0;
	char	   *want = slurp(path, &len);
	bool		same = want != NULL && len == strlen(got) && memcmp(want, got, len) == 0;

	if (!same && want != NULL)
	{
		printf("# %s expected:\n", label);
		diag_lines(want);
		printf("# got:\n");
		diag_lines(got);
	}
	free(want);
	return same;
}

static void
append(char *dst, size_t cap, const char *s)
{
	size_t		n = strlen(dst);

	snprintf(dst + n, cap - n, "%s", s);
}

/* Check one case folder dir (label: its path under the root). */
static void
run_case(const char *dir, const char *name, const char *label)
{
	static const char *const exts[] = {".req", ".creq", ".sts", ".authz", ".sreq"};
	char		path[5][4096];
	bool		have[5];
	bool		any = false;
	const struct special_case *sc = NULL;
	struct parsed_req p = {0};
	PgckSigv4Result res = {0};
	const char *why = NULL;
	char		diff[256] = "";

	for (int i = 0; i < 5; i++)
	{
		snprintf(path[i], sizeof(path[i]), "%s/%s%s", dir, name, exts[i]);
		have[i] = file_exists(path[i]);
		any = any || have[i];
	}
	if (!any)
		return;					/* a folder of cases, not a case */
	ncases++;

	for (size_t i = 0; i < sizeof(special_cases) / sizeof(special_cases[0]); i++)
		if (strcmp(special_cases[i].name, name) == 0)
			sc = &special_cases[i];

	for (int i = 0; i < 5; i++)
		if (!have[i] && !(i == 4 && sc && sc->sreq_unusable))
		{
			append(diff, sizeof(diff), diff[0] ? ", missing " : "missing ");
			append(diff, sizeof(diff), exts[i]);
		}
	if (diff[0])
	{
		unit_check(0, "%s: %s", label, diff);
		return;
	}

	p.raw = slurp(path[0], &p.raw_len);
	if (p.raw == NULL)
		why = "cannot read .req";
	else if (parse_req(&p, &why))
	{
		if (sc && sc->token_before)
		{
			p.headers[p.req.nheaders].name = "X-Amz-Security-Token";
			p.headers[p.req.nheaders].value = sc->token_before;
			p.req.nheaders++;
		}
		if (pgck_sigv4_sign(&p.req, &suite_params, &res) != 0)
			why = "pgck_sigv4_sign failed";
	}
	if (why != NULL)
	{
		unit_check(0, "%s: %s", label, why);
		free(p.raw);
		free(p.buf);
		return;
	}

	if (!same_as_file(path[1], res.canonical_request, ".creq"))
		append(diff, sizeof(diff), " .creq");
	if (!same_as_file(path[2], res.string_to_sign, ".sts"))
		append(diff, sizeof(diff), " .sts");
	if (!same_as_file(path[3], res.authorization, ".authz"))
		append(diff, sizeof(diff), " .authz");

	/* signed request: the head, a header added after signing, Authorization, body */
	if (sc && sc->sreq_unusable)
		printf("# %s: .sreq not compared (its signature is not that of its .creq)\n", label);
	else
	{
		size_t		cap = p.head_len + p.body_len + strlen(res.authorization) + 4096;
		char	   *sreq = malloc(cap);
		int			n;

		if (sreq == NULL)
			append(diff, sizeof(diff), " (out of memory)");
		else
		{
			n = snprintf(sreq, cap, "%.*s%s%s\nAuthorization: %s%s",
						 (int) p.head_len, p.head,
						 sc && sc->token_after ? "\nX-Amz-Security-Token:" : "",
						 sc && sc->token_after ? sc->token_after : "",
						 res.authorization, p.body_len ? "\n\n" : "");
			if (n >= 0 && (size_t) n + p.body_len < cap)
				memcpy(sreq + n, p.body ? (const char *) p.body : "", p.body_len + 1);
			if (!same_as_file(path[4], sreq, ".sreq"))
				append(diff, sizeof(diff), " .sreq");
			free(sreq);
		}
	}

	if (diff[0])
		unit_check(0, "%s: differs:%s", label, diff);
	else
		unit_check(1, "%s", label);

	pgck_sigv4_result_free(&res);
	free(p.raw);
	free(p.buf);
}

/* Depth-first, in name order, so the numbering is stable. */
static void
walk(const char *dir, const char *label)
{
	struct dirent **ents;
	int			n = scandir(dir, &ents, NULL, alphasort);
	const char *base = strrchr(dir, '/');

	if (n < 0)
	{
		unit_check(0, "%s: cannot read folder", label[0] ? label : dir);
		return;
	}
	run_case(dir, base ? base + 1 : dir, label[0] ? label : dir);
	for (int i = 0; i < n; i++)
	{
		char		sub[4096];
		char		sublabel[4096];

		if (ents[i]->d_name[0] != '.')
		{
			snprintf(sub, sizeof(sub), "%s/%s", dir, ents[i]->d_name);
			snprintf(sublabel, sizeof(sublabel), "%s%s%s", label,
					 label[0] ? "/" : "", ents[i]->d_name);
			if (is_dir(sub))
				walk(sub, sublabel);
		}
		free(ents[i]);
	}
	free(ents);
}

/* ------------------------------------------------------------ helper checks */

static void
check_helpers(void)
{
	char		hex[65];
	char		date[17];
	int			bad = 0;

	pgck_sha256_hex((const unsigned char *) "", 0, hex);
	unit_check(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0,
			   "sha256_hex of the empty string");
	pgck_sha256_hex(NULL, 0, hex);
	unit_check(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0,
			   "sha256_hex of NULL, 0");
	pgck_sha256_hex((const unsigned char *) "abc", 3, hex);
	unit_check(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
			   "sha256_hex of \"abc\" (FIPS 180-2)");

	pgck_sigv4_amz_date((time_t) 1440938160, date);
	unit_check(strcmp(date, "20150830T123600Z") == 0, "amz_date of the suite's time");
	pgck_sigv4_amz_date((time_t) 0, date);
	unit_check(strcmp(date, "19700101T000000Z") == 0, "amz_date of the epoch");
	pgck_sigv4_amz_date((time_t) 253402300799, date);
	unit_check(strcmp(date, "99991231T235959Z") == 0, "amz_date of the last four-digit-year second");
	pgck_sigv4_amz_date((time_t) 253402300800, date);
	unit_check(date[0] == '\0', "amz_date of year 10000 is empty");

	/* against strftime over many times (the first failures shown) */
	for (long long t = 0; t < 4102444800LL; t += 7919LL * 3607)
	{
		char		want[32];
		time_t		tt = (time_t) t;
		struct tm	tm;

		gmtime_r(&tt, &tm);
		strftime(want, sizeof(want), "%Y%m%dT%H%M%SZ", &tm);
		pgck_sigv4_amz_date(tt, date);
		if (strcmp(want, date) != 0 && bad++ < 3)
			printf("# amz_date(%lld): %s, strftime: %s\n", t, date, want);
	}
	unit_check(bad == 0, "amz_date agrees with strftime 1970-2100");
}

/* Sign a one-header GET; returns the result code, res filled on success. */
static int
sign_simple(const char *path, const char *query, const char *hname,
			const char *hvalue, const char *amz_date, PgckSigv4Result *res)
{
	PgckSigv4Header h[2] = {{"Host", "example.amazonaws.com"}, {hname, hvalue}};
	PgckSigv4Request req = {"GET", path, query, h, 2, NULL, 0};
	PgckSigv4Params params = suite_params;

	params.amz_date = amz_date;
	return pgck_sigv4_sign(&req, &params, res);
}

static bool
starts_with(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Choices the suite does not pin down, and input the signer must refuse. */
static void
check_edges(void)
{
	PgckSigv4Result res = {0};
	const char *d = suite_params.amz_date;

	unit_check(sign_simple("/%E1%88%B4", "", "X-Amz-Date", d, d, &res) == 0 &&
			   starts_with(res.canonical_request, "GET\n/%25E1%2588%25B4\n\n"),
			   "an encoded wire path is encoded again (non-S3 rule)");
	pgck_sigv4_result_free(&res);
	unit_check(sign_simple("/a/b/../c/./", "b=%e1%88%b4&a+b=&c", "X-Amz-Date", d, d, &res) == 0 &&
			   starts_with(res.canonical_request, "GET\n/a/c/\na%2Bb=&b=%E1%88%B4&c=\n"),
			   "dot segments; query decoded and re-encoded, '+' literal, bare key");
	pgck_sigv4_result_free(&res);
	unit_check(sign_simple("/", NULL, "X-Amz-Date", d, "20150830T123601Z", &res) == -1 &&
			   res.authorization == NULL && res.canonical_request == NULL,
			   "x-amz-date header differing from amz_date is refused");
	unit_check(sign_simple("/", NULL, "X-Amz-Date", d, "2015-08-30T12:36Z", &res) == -1,
			   "malformed amz_date is refused");
	unit_check(sign_simple("/", NULL, "Bad Name", "v", d, &res) == -1,
			   "header name with a space is refused");
	unit_check(sign_simple("relative", NULL, "X-Amz-Date", d, d, &res) == -1,
			   "path not starting with '/' is refused");
	pgck_sigv4_result_free(&res);
	pgck_sigv4_result_free(NULL);
}

/* ---------------------------------------------------------------- wiping */

/*
 * Every block sigv4.c allocates and frees, seen through its test hooks: a
 * block freed with a non-zero byte left in it, freed with another size than
 * it was allocated with, unknown when freed, or never freed, is a failure.
 * A block given up by realloc (or any free that bypasses the module's
 * wiping free) stays "live" here and its successor is "unknown".
 */
#define MAX_BLOCKS 4096

static struct
{
	const void *p;
	size_t		n;
}			blocks[MAX_BLOCKS];
static int	nblocks = 0;
static int	freed = 0;
static int	unwiped = 0;
static int	unknown = 0;
static size_t largest_freed = 0;

static void
on_alloc(void *p, size_t n)
{
	if (nblocks < MAX_BLOCKS)
	{
		blocks[nblocks].p = p;
		blocks[nblocks].n = n;
		nblocks++;
	}
}

static void
on_free(void *p, size_t n)
{
	const unsigned char *b = p;
	int			i;

	for (i = 0; i < nblocks; i++)
		if (blocks[i].p == p)
			break;
	if (i == nblocks || blocks[i].n != n)
		unknown++;
	else
		blocks[i] = blocks[--nblocks];
	freed++;
	if (n > largest_freed)
		largest_freed = n;
	for (size_t j = 0; j < n; j++)
		if (b[j] != 0)
		{
			unwiped++;
			break;
		}
}

static void
reset_blocks(void)
{
	nblocks = freed = unwiped = unknown = 0;
	largest_freed = 0;
}

/*
 * Signing with temporary credentials puts the session token through the
 * module's growing buffers (the token header is signed): nothing that held
 * it may go back to malloc unwiped, on success or on failure.
 */
static void
check_wipes(void)
{
	char		token[3001];
	PgckSigv4Header h[4] = {
		{"Host", "kms.us-east-1.amazonaws.com"},
		{"X-Amz-Date", suite_params.amz_date},
		{"X-Amz-Security-Token", token},
		{"Content-Type", "application/x-amz-json-1.1"},
	};
	PgckSigv4Request req = {"POST", "/a/./b/../c", "Z=1&a=%41&b", h, 4,
	(const unsigned char *) "{\"KeyId\":\"alias/x\"}", 20};
	PgckSigv4Result res = {0};
	int			rc;

	for (size_t i = 0; i < sizeof(token) - 1; i++)
		token[i] = "SessTokFwoGZXIvYXdzEJr"[i % 22];
	token[sizeof(token) - 1] = '\0';

	pgck_sigv4_set_alloc_hooks(on_alloc, on_free);

	reset_blocks();
	rc = pgck_sigv4_sign(&req, &suite_params, &res);
	unit_check(rc == 0 && res.canonical_request != NULL &&
			   strstr(res.canonical_request, token) != NULL,
			   "signing with a session token puts it in the canonical request");
	unit_check(largest_freed > sizeof(token) && freed > 10,
			   "the buffers that held the token grew and were freed while signing (%d blocks, largest %zu bytes)",
			   freed, largest_freed);
	pgck_sigv4_result_free(&res);
	unit_check(unwiped == 0, "every block freed after signing with a token was wiped first (%d of %d were not)",
			   unwiped, freed);
	unit_check(nblocks == 0 && unknown == 0,
			   "every block was freed through the wiping free, at its size (%d never freed, %d unknown)",
			   nblocks, unknown);

	/* a failure after the token went into the canonical headers */
	reset_blocks();
	h[1].value = "20150830T123601Z";	/* disagrees with amz_date */
	rc = pgck_sigv4_sign(&req, &suite_params, &res);
	unit_check(rc == -1 && res.canonical_request == NULL && freed > 0 && unwiped == 0 &&
			   nblocks == 0 && unknown == 0,
			   "a refused signing also wipes and frees every block (%d freed, %d unwiped, %d left)",
			   freed, unwiped, nblocks);

	pgck_sigv4_set_alloc_hooks(NULL, NULL);
}

int
main(int argc, char **argv)
{
	const char *arg = argc > 1 ? argv[1] : "../shared/vectors/sigv4";
	char	   *sub = malloc(strlen(arg) + sizeof("/sigv4"));
	const char *root = arg;
	int			before;
	int			rc;

	(void) unit_count;			/* unit.h helper this test has no use for */

	/* accept the vectors root too (the Makefile passes that) */
	if (sub != NULL)
	{
		strcpy(sub, arg);
		strcat(sub, "/sigv4");
		if (is_dir(sub))
			root = sub;
	}
	printf("# vectors: %s\n", root);

	check_helpers();
	check_edges();
	check_wipes();
	before = unit_failed;
	walk(root, "");
	if (ncases == 0)
		unit_check(0, "no vector case found under %s", root);
	printf("# %d vector cases, %d failed\n", ncases, unit_failed - before);
	rc = unit_finish();
	free(sub);
	return rc;
}
