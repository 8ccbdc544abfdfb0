/* Unit tests for common/: the error space and secret memory. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <CUnit/Basic.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kw_b64.h"
#include "kw_error.h"
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
		{ NULL, NULL }
	};

	return kwt_cunit_main("common", NULL, NULL, cases);
}
