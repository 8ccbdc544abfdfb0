/* Unit tests for common/: the error space, secret memory, base64 and name
 * lookups. */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kw_b64.h"
#include "kw_error.h"
#include "kw_nss.h"
#include "kw_secmem.h"
#include "tests/lib/kwt_cunit.h"

static void
test_strerror(void)
{
	CU_ASSERT_STRING_EQUAL(kw_strerror(0), "success");
	CU_ASSERT_STRING_EQUAL(kw_strerror(KW_E_PIN), "PIN rejected");
	CU_ASSERT_STRING_EQUAL(kw_strerror(-ENOENT), "No such file or directory");
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_strerror(-999999), "unknown error"));
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_strerror(KW_E_LAST), "unknown error"));
}

static void
test_detail(void)
{
	int r = kw_fail(KW_E_TOKEN, "token '%s' not found", "kw");

	CU_ASSERT_EQUAL(r, KW_E_TOKEN);
	CU_ASSERT_STRING_EQUAL(kw_errdetail(KW_E_TOKEN), "token 'kw' not found");
	/* Another code than the recorded one: the generic name, not a stale
	 * sentence about something else. */
	CU_ASSERT_STRING_EQUAL(kw_errdetail(KW_E_PIN), "PIN rejected");
	kw_errclear();
	CU_ASSERT_STRING_EQUAL(kw_errdetail(KW_E_TOKEN), "token unavailable");
	/* A success code passed by mistake becomes an internal error. */
	CU_ASSERT_EQUAL(kw_fail(0, "x"), KW_E_INTERNAL);
}

static void
test_secalloc_sizes(void)
{
	size_t sizes[] = { 0, 1, 32, 64, 65, 256, 1000, 4096, 4097, 100000 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *p = kw_secalloc(sizes[i]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		CU_ASSERT(kw_secsize(p) >= sizes[i]);
		for (size_t j = 0; j < sizes[i]; j++)
			CU_ASSERT_EQUAL_FATAL(p[j], 0);
		memset(p, 0xa5, sizes[i]);
		kw_secfree(p);
	}
	kw_secfree(NULL);
}

static void
test_secalloc_reuse_is_zeroed(void)
{
	uint8_t *a = kw_secalloc(32), *b;

	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	memset(a, 0x5a, 32);
	kw_secfree(a);
	b = kw_secalloc(32);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	/* The free list hands the same block back: it must be clean. */
	for (int i = 0; i < 32; i++)
		CU_ASSERT_EQUAL(b[i], 0);
	kw_secfree(b);
}

static void
test_secret(void)
{
	kw_secret s = { 0 };

	CU_ASSERT_EQUAL(kw_secret_dup(&s, "hunter2", 7), 0);
	CU_ASSERT_EQUAL(s.len, 7);
	CU_ASSERT_EQUAL(memcmp(s.data, "hunter2", 7), 0);
	kw_secret_clear(&s);
	CU_ASSERT_PTR_NULL(s.data);
	CU_ASSERT_EQUAL(s.len, 0);
	kw_secret_clear(&s);
	kw_secret_clear(NULL);
	CU_ASSERT_EQUAL(kw_secret_alloc(&s, 0), 0);
	CU_ASSERT_PTR_NOT_NULL(s.data);
	kw_secret_clear(&s);
}

static void
test_memeq_ct(void)
{
	CU_ASSERT_EQUAL(kw_memeq_ct("abcd", "abcd", 4), 0);
	CU_ASSERT_NOT_EQUAL(kw_memeq_ct("abcd", "abce", 4), 0);
	CU_ASSERT_EQUAL(kw_memeq_ct("", "", 0), 0);
}

static void *
churn(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(i % 300) + 1;
		uint8_t *p = kw_secalloc(n);
		if (p == NULL)
			return (void *)1;
		for (size_t j = 0; j < n; j++)
			if (p[j] != 0)
				return (void *)2;
		memset(p, 0xff, n);
		kw_secfree(p);
	}
	return NULL;
}

static void
test_secalloc_threads(void)
{
	pthread_t th[8];
	void *rv;

	for (int i = 0; i < 8; i++)
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, churn, NULL), 0);
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], &rv);
		CU_ASSERT_PTR_NULL(rv);
	}
}

/* ---- base64 ---------------------------------------------------------------- */

static int
dec(const char *s, unsigned flags, char *out, size_t *n)
{
	uint8_t buf[64];
	int r = kwb64_decode(s, strlen(s), flags, buf, n);

	if (r == 0) {
		memcpy(out, buf, *n);
		out[*n] = '\0';
	}
	return r;
}

static void
test_b64(void)
{
	static const struct { const char *in; unsigned flags; const char *want; } ok[] = {
		{ "", 0, "" }, { "QQ==", 0, "A" }, { "QUI=", 0, "AB" }, { "QUJD", 0, "ABC" },
		{ "QUJDRA==", 0, "ABCD" },
		{ "", KWB64_ANY, "" }, { "QQ", KWB64_ANY, "A" }, { "QUI", KWB64_ANY, "AB" },
		{ "QQ==", KWB64_ANY, "A" }, { "QUJDRA", KWB64_ANY, "ABCD" },
		{ "-_-_", KWB64_ANY, "\xfb\xff\xbf" }, { "+/+/", KWB64_ANY, "\xfb\xff\xbf" },
	};
	static const struct { const char *in; unsigned flags; } bad[] = {
		{ "QQ", 0 }, { "QQ=", 0 }, { "Q===", 0 }, { "QU!D", 0 }, { "-_-_", 0 },
		{ "Q", KWB64_ANY }, { "QQ=Q", KWB64_ANY }, { "QU!D", KWB64_ANY }, { "QUJDR", KWB64_ANY },
	};
	char out[64];
	size_t n;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		CU_ASSERT_EQUAL(dec(ok[i].in, ok[i].flags, out, &n), 0);
		CU_ASSERT(n == strlen(ok[i].want) && memcmp(out, ok[i].want, n) == 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_EQUAL(dec(bad[i].in, bad[i].flags, out, &n), -EINVAL);

	/* What OpenSSL encodes decodes back, every length 0..100, both ways
	 * (the URL form without padding). */
	for (size_t len = 0; len <= 100; len++) {
		uint8_t raw[100], enc[160], back[KWB64_MAX(160)];
		int el;

		CU_ASSERT_FATAL(RAND_bytes(raw, sizeof(raw)) == 1);
		el = EVP_EncodeBlock(enc, raw, (int)len);
		CU_ASSERT_EQUAL(kwb64_decode((char *)enc, (size_t)el, 0, back, &n), 0);
		CU_ASSERT(n == len && memcmp(back, raw, len) == 0);
		for (int i = 0; i < el; i++)
			enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
		while (el > 0 && enc[el - 1] == '=')
			el--;
		CU_ASSERT_EQUAL(kwb64_decode((char *)enc, (size_t)el, KWB64_ANY, back, &n), 0);
		CU_ASSERT(n == len && memcmp(back, raw, len) == 0);
	}
}

/* The name service as the tests of kw_nss.h want it.  kw_nss.c is linked
 * into this program, so its calls of getgrgid_r come here: with nss_fail
 * set it fails with that, to a buffer smaller than nss_min_buf it answers
 * ERANGE (as for an entry it cannot hold), and otherwise libc answers.
 * nss_calls counts the calls, nss_last_len is the room the last one was
 * given.  The other lookups go to libc: they share the loop. */
static size_t nss_min_buf, nss_last_len;
static int nss_fail, nss_calls;

static int
nss_fake(size_t len)
{
	nss_calls++;
	nss_last_len = len;
	if (nss_fail != 0)
		return nss_fail;
	return len < nss_min_buf ? ERANGE : 0;
}

int
getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len, struct group **res)
{
	int (*next)(gid_t, struct group *, char *, size_t, struct group **) =
	    (int (*)(gid_t, struct group *, char *, size_t, struct group **))
	    dlsym(RTLD_NEXT, "getgrgid_r");
	int rc = nss_fake(len);

	*res = NULL;
	return rc != 0 || next == NULL ? rc : next(gid, gr, buf, len, res);
}

static void
nss_reset(size_t min_buf, int fail)
{
	nss_min_buf = min_buf;
	nss_fail = fail;
	nss_calls = 0;
	nss_last_len = 0;
}

/* root is found by each lookup, through one buffer; names and ids that do
 * not exist are -ENOENT, and leave the entry as it was. */
static void
test_nss_found_and_not(void)
{
	struct passwd pw;
	struct group gr;
	char *buf = NULL;
	size_t len = 0;

	nss_reset(0, 0);
	CU_ASSERT_EQUAL_FATAL(kwnss_pw_uid(0, &pw, &buf, &len), 0);
	CU_ASSERT_STRING_EQUAL(pw.pw_name, "root");
	CU_ASSERT_EQUAL_FATAL(kwnss_pw_name("root", &pw, &buf, &len), 0);
	CU_ASSERT_EQUAL(pw.pw_uid, 0);
	CU_ASSERT_EQUAL_FATAL(kwnss_gr_gid(0, &gr, &buf, &len), 0);
	CU_ASSERT_STRING_EQUAL(gr.gr_name, "root");
	CU_ASSERT_EQUAL_FATAL(kwnss_gr_name("root", &gr, &buf, &len), 0);
	CU_ASSERT_EQUAL(gr.gr_gid, 0);
	CU_ASSERT_PTR_NOT_NULL(buf);
	CU_ASSERT(len >= 1024);

	pw.pw_uid = 4242;
	gr.gr_gid = 4242;
	CU_ASSERT_EQUAL(kwnss_pw_name("kw-no-such-user", &pw, &buf, &len), -ENOENT);
	CU_ASSERT_EQUAL(kwnss_gr_name("kw-no-such-group", &gr, &buf, &len), -ENOENT);
	CU_ASSERT_EQUAL(kwnss_pw_uid((uid_t)3999999937u, &pw, &buf, &len), -ENOENT);
	CU_ASSERT_EQUAL(kwnss_gr_gid((gid_t)3999999937u, &gr, &buf, &len), -ENOENT);
	CU_ASSERT_EQUAL(pw.pw_uid, 4242);
	CU_ASSERT_EQUAL(gr.gr_gid, 4242);
	free(buf);
}

/* An entry larger than the first buffer: the buffer doubles until it fits,
 * and a later lookup with it starts from its size. */
static void
test_nss_grows(void)
{
	struct passwd pw;
	struct group gr;
	char *buf = NULL;
	size_t len = 0;
	int calls;

	nss_reset(100000, 0);
	CU_ASSERT_EQUAL_FATAL(kwnss_gr_gid(0, &gr, &buf, &len), 0);
	CU_ASSERT_STRING_EQUAL(gr.gr_name, "root");
	CU_ASSERT(len >= 100000 && len < 200000);
	CU_ASSERT_EQUAL(nss_last_len, len);
	CU_ASSERT(nss_calls >= 2);
	calls = nss_calls;
	CU_ASSERT_EQUAL_FATAL(kwnss_gr_gid(0, &gr, &buf, &len), 0);
	CU_ASSERT_EQUAL(nss_calls, calls + 1);
	CU_ASSERT_EQUAL_FATAL(kwnss_pw_name("root", &pw, &buf, &len), 0);
	CU_ASSERT_EQUAL(pw.pw_uid, 0);
	CU_ASSERT(len >= 100000 && len < 200000);
	free(buf);

	/* The same from a buffer of the caller's that is too small. */
	nss_reset(100000, 0);
	len = 10;
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf = malloc(len));
	CU_ASSERT_EQUAL_FATAL(kwnss_gr_gid(0, &gr, &buf, &len), 0);
	CU_ASSERT_STRING_EQUAL(gr.gr_name, "root");
	CU_ASSERT(len >= 100000);
	free(buf);
}

/* An entry that needs more than KWNSS_BUF_MAX is -ERANGE, after a try
 * with that much room; another failure of the name service is its own
 * error at once, not "no such entry"; neither touches the entry. */
static void
test_nss_errors(void)
{
	struct group gr;
	char *buf = NULL;
	size_t len = 0;

	gr.gr_gid = 4242;
	nss_reset(KWNSS_BUF_MAX + 1, 0);
	CU_ASSERT_EQUAL(kwnss_gr_gid(0, &gr, &buf, &len), -ERANGE);
	CU_ASSERT_EQUAL(nss_last_len, KWNSS_BUF_MAX);
	CU_ASSERT_EQUAL(len, KWNSS_BUF_MAX);
	nss_reset(0, EIO);
	CU_ASSERT_EQUAL(kwnss_gr_gid(0, &gr, &buf, &len), -EIO);
	CU_ASSERT_EQUAL(nss_calls, 1);
	nss_reset(0, EMFILE);
	CU_ASSERT_EQUAL(kwnss_gr_gid(0, &gr, &buf, &len), -EMFILE);
	CU_ASSERT_EQUAL(gr.gr_gid, 4242);
	free(buf);
	nss_reset(0, 0);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "kw_strerror names every code", test_strerror },
		{ "kw_fail detail is per code", test_detail },
		{ "secalloc sizes and zeroing", test_secalloc_sizes },
		{ "freed blocks come back zeroed", test_secalloc_reuse_is_zeroed },
		{ "kw_secret dup and clear", test_secret },
		{ "base64: both alphabets, padding, refusals, round trips", test_b64 },
		{ "constant-time compare", test_memeq_ct },
		{ "secalloc from eight threads", test_secalloc_threads },
		{ "name lookups: found, not found", test_nss_found_and_not },
		{ "name lookups: the buffer grows for a large entry", test_nss_grows },
		{ "name lookups: too large, and other errors", test_nss_errors },
		{ NULL, NULL }
	};

	return kwt_cunit_main("common", NULL, NULL, cases);
}
