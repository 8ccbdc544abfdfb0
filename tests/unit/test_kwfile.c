/*
 * Unit tests for the chunk layer of keywarden's file encryption
 * (client/kw_file.c), on data keys of the test's own: no daemon.  What the
 * daemon adds (making and unwrapping the data key) is for the integration
 * tests.  Every rejection is checked for its code and for what reached the
 * output: nothing of a chunk that did not authenticate.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "client/keywarden.h"
#include "client/kw_file.h"
#include "tests/lib/kwt_cunit.h"

#define CS KWF_CHUNK
#define REC (CS + KWF_TAG)

static const uint8_t wrapped[] = "not really a wrapped key, the chunk layer only carries it";

static kw_secret
new_key(void)
{
	kw_secret k = { NULL, 0 };

	CU_ASSERT_FATAL(kw_secret_alloc(&k, 32) == 0);
	CU_ASSERT_FATAL(RAND_bytes(k.data, 32) == 1);
	return k;
}

/* A file holding n bytes of p, rewound. */
static FILE *
file_of(const void *p, size_t n)
{
	FILE *f = tmpfile();

	CU_ASSERT_FATAL(f != NULL);
	if (n > 0)
		CU_ASSERT_FATAL(fwrite(p, 1, n, f) == n);
	rewind(f);
	return f;
}

/* All of f (from the start) into a malloc'd buffer. */
static uint8_t *
slurp(FILE *f, size_t *n)
{
	long len;
	uint8_t *p;

	CU_ASSERT_FATAL(fflush(f) == 0);
	CU_ASSERT_FATAL(fseek(f, 0, SEEK_END) == 0);
	len = ftell(f);
	CU_ASSERT_FATAL(len >= 0);
	p = malloc((size_t)len + 1);
	CU_ASSERT_FATAL(p != NULL);
	rewind(f);
	CU_ASSERT_FATAL(fread(p, 1, (size_t)len, f) == (size_t)len);
	*n = (size_t)len;
	return p;
}

/* Encrypt n bytes of pt under dk; *hlen gets the header's length. */
static uint8_t *
seal(const kw_secret *dk, const json_t *ctx, const void *pt, size_t n, size_t *len,
    size_t *hlen)
{
	struct kwf_header h;
	FILE *in = file_of(pt, n), *out = tmpfile();
	uint8_t *ct;

	CU_ASSERT_FATAL(out != NULL);
	CU_ASSERT_FATAL(kwf_header_build(&h, "prod", wrapped, sizeof(wrapped), ctx, CS) == 0);
	CU_ASSERT_FATAL(kwf_seal(dk, &h, in, out) == 0);
	if (hlen != NULL)
		*hlen = h.raw_len;
	ct = slurp(out, len);
	kwf_header_free(&h);
	fclose(in);
	fclose(out);
	return ct;
}

/* Decrypt; returns the code, and in *pt and *ptlen what reached the output. */
static int
open_buf(const kw_secret *dk, const uint8_t *ct, size_t n, uint8_t **pt, size_t *ptlen)
{
	struct kwf_header h;
	FILE *in = file_of(ct, n), *out = tmpfile();
	int r;

	CU_ASSERT_FATAL(out != NULL);
	if ((r = kwf_header_read(in, &h)) == 0) {
		r = kwf_open(dk, &h, in, out);
		kwf_header_free(&h);
	}
	*pt = slurp(out, ptlen);
	fclose(in);
	fclose(out);
	return r;
}

static uint8_t *
random_bytes(size_t n)
{
	uint8_t *p = malloc(n + 1);

	CU_ASSERT_FATAL(p != NULL);
	CU_ASSERT_FATAL(RAND_bytes(p, (int)n + 1) == 1);
	return p;
}

/* ---- round trips -------------------------------------------------------------- */

static void
round_trip(size_t n)
{
	kw_secret dk = new_key();
	uint8_t *pt = random_bytes(n), *ct, *back;
	size_t ctlen, hlen, backlen, chunks = n / CS + 1;

	ct = seal(&dk, NULL, pt, n, &ctlen, &hlen);
	/* Full chunks, then a final one of 0..CS bytes; a file of exactly k
	 * full chunks ends with its last full chunk as the final one. */
	if (n > 0 && n % CS == 0)
		chunks--;
	CU_ASSERT_EQUAL(ctlen, hlen + n + chunks * KWF_TAG);
	CU_ASSERT_EQUAL(open_buf(&dk, ct, ctlen, &back, &backlen), 0);
	CU_ASSERT_EQUAL(backlen, n);
	CU_ASSERT(backlen == n && memcmp(back, pt, n) == 0);
	free(pt);
	free(ct);
	free(back);
	kw_secret_clear(&dk);
}

static void test_rt_0(void) { round_trip(0); }
static void test_rt_1(void) { round_trip(1); }
static void test_rt_cs_minus_1(void) { round_trip(CS - 1); }
static void test_rt_cs(void) { round_trip(CS); }
static void test_rt_cs_plus_1(void) { round_trip(CS + 1); }
static void test_rt_3cs(void) { round_trip(3 * CS + 17); }

static void
test_header_layout(void)
{
	kw_secret dk = new_key();
	json_t *ctx = json_pack("{s:s,s:s}", "team", "core", "app", "billing");
	const char *want = "{\"app\":\"billing\",\"team\":\"core\"}";
	uint8_t *ct;
	size_t len, hlen, off;
	struct kwf_header h;
	FILE *in;

	ct = seal(&dk, ctx, "x", 1, &len, &hlen);
	CU_ASSERT(memcmp(ct, "KWF1", 4) == 0);
	CU_ASSERT_EQUAL(ct[4], 1);
	CU_ASSERT_EQUAL(ct[5], 1);
	CU_ASSERT(ct[6] == 0 && ct[7] == 1 && ct[8] == 0 && ct[9] == 0);   /* 65536 */
	off = 10 + 32;
	CU_ASSERT_EQUAL(ct[off], 4);
	CU_ASSERT(memcmp(ct + off + 1, "prod", 4) == 0);
	off += 5;
	CU_ASSERT_EQUAL((size_t)ct[off] << 8 | ct[off + 1], sizeof(wrapped));
	CU_ASSERT(memcmp(ct + off + 2, wrapped, sizeof(wrapped)) == 0);
	off += 2 + sizeof(wrapped);
	CU_ASSERT_EQUAL((size_t)ct[off] << 8 | ct[off + 1], strlen(want));
	CU_ASSERT(memcmp(ct + off + 2, want, strlen(want)) == 0);
	CU_ASSERT_EQUAL(off + 2 + strlen(want), hlen);
	CU_ASSERT_EQUAL(len, hlen + 1 + KWF_TAG);

	/* Read back: the same fields. */
	in = file_of(ct, len);
	CU_ASSERT_FATAL(kwf_header_read(in, &h) == 0);
	CU_ASSERT_STRING_EQUAL(h.vault, "prod");
	CU_ASSERT_EQUAL(h.chunk_size, CS);
	CU_ASSERT_EQUAL(h.wrapped_len, sizeof(wrapped));
	CU_ASSERT(json_equal(h.context, ctx));
	CU_ASSERT_EQUAL(h.raw_len, hlen);
	kwf_header_free(&h);
	fclose(in);

	/* Two files of the same plaintext and key differ (the salt). */
	{
		uint8_t *ct2;
		size_t len2;
		ct2 = seal(&dk, ctx, "x", 1, &len2, NULL);
		CU_ASSERT(len2 == len && memcmp(ct, ct2, len) != 0);
		free(ct2);
	}
	free(ct);
	json_decref(ctx);
	kw_secret_clear(&dk);
}

static void
test_not_a_file(void)
{
	kw_secret dk = new_key();
	uint8_t *out, junk[200] = "KWF2 no";
	size_t outlen, len, hlen;
	uint8_t *ct;

	CU_ASSERT_EQUAL(open_buf(&dk, junk, sizeof(junk), &out, &outlen), KW_E_FORMAT);
	free(out);
	CU_ASSERT_EQUAL(open_buf(&dk, junk, 0, &out, &outlen), KW_E_FORMAT);
	free(out);
	/* A header cut short. */
	ct = seal(&dk, NULL, "abc", 3, &len, &hlen);
	for (size_t cut = 1; cut < hlen; cut += 7) {
		CU_ASSERT_EQUAL(open_buf(&dk, ct, cut, &out, &outlen), KW_E_FORMAT);
		CU_ASSERT_EQUAL(outlen, 0);
		free(out);
	}
	free(ct);
	kw_secret_clear(&dk);
}

/* ---- 100 MiB, streamed --------------------------------------------------------------- */

#define BIG ((uint64_t)100 * 1024 * 1024)

/* A stream of BIG pseudo-random bytes (xorshift) that hashes what it gives. */
struct gen {
	uint64_t left, x;
	EVP_MD_CTX *md;
};

static ssize_t
gen_read(void *cookie, char *buf, size_t size)
{
	struct gen *g = cookie;
	size_t n = size < g->left ? size : (size_t)g->left;

	for (size_t i = 0; i < n; i++) {
		g->x ^= g->x << 13;
		g->x ^= g->x >> 7;
		g->x ^= g->x << 17;
		buf[i] = (char)(g->x >> 24);
	}
	g->left -= n;
	EVP_DigestUpdate(g->md, buf, n);
	return (ssize_t)n;
}

struct sink {
	uint64_t total;
	EVP_MD_CTX *md;
};

static ssize_t
sink_write(void *cookie, const char *buf, size_t size)
{
	struct sink *s = cookie;

	s->total += size;
	EVP_DigestUpdate(s->md, buf, size);
	return (ssize_t)size;
}

static void
test_rt_100mib(void)
{
	kw_secret dk = new_key();
	struct gen g = { BIG, 0x9e3779b97f4a7c15ull, EVP_MD_CTX_new() };
	struct sink s = { 0, EVP_MD_CTX_new() };
	cookie_io_functions_t gio = { .read = gen_read }, sio = { .write = sink_write };
	uint8_t want[32], got[32];
	struct kwf_header h;
	FILE *in, *ct, *out;
	long ctlen;

	CU_ASSERT_FATAL(g.md != NULL && s.md != NULL);
	CU_ASSERT_FATAL(EVP_DigestInit_ex(g.md, EVP_sha256(), NULL) == 1);
	CU_ASSERT_FATAL(EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) == 1);
	CU_ASSERT_FATAL((in = fopencookie(&g, "r", gio)) != NULL);
	CU_ASSERT_FATAL((ct = tmpfile()) != NULL);
	CU_ASSERT_FATAL(kwf_header_build(&h, "prod", wrapped, sizeof(wrapped), NULL, CS) == 0);
	CU_ASSERT_FATAL(kwf_seal(&dk, &h, in, ct) == 0);
	fclose(in);
	CU_ASSERT_EQUAL(g.left, 0);
	ctlen = ftell(ct);
	/* 1600 full chunks, the last of them final. */
	CU_ASSERT_EQUAL((uint64_t)ctlen, h.raw_len + BIG + (BIG / CS) * KWF_TAG);
	kwf_header_free(&h);

	rewind(ct);
	CU_ASSERT_FATAL((out = fopencookie(&s, "w", sio)) != NULL);
	CU_ASSERT_FATAL(kwf_header_read(ct, &h) == 0);
	CU_ASSERT_EQUAL(kwf_open(&dk, &h, ct, out), 0);
	fclose(out);
	CU_ASSERT_EQUAL(s.total, BIG);
	CU_ASSERT_FATAL(EVP_DigestFinal_ex(g.md, want, NULL) == 1);
	CU_ASSERT_FATAL(EVP_DigestFinal_ex(s.md, got, NULL) == 1);
	CU_ASSERT(memcmp(want, got, 32) == 0);
	kwf_header_free(&h);
	fclose(ct);
	EVP_MD_CTX_free(g.md);
	EVP_MD_CTX_free(s.md);
	kw_secret_clear(&dk);
}

/* ---- rejections ----------------------------------------------------------------- */

/* A file of 2 full chunks and a short final one. */
struct three {
	kw_secret dk;
	uint8_t *pt, *ct;
	size_t ptlen, ctlen, hlen;
};

static void
three_new(struct three *t)
{
	t->dk = new_key();
	t->ptlen = 2 * CS + 100;
	t->pt = random_bytes(t->ptlen);
	t->ct = seal(&t->dk, NULL, t->pt, t->ptlen, &t->ctlen, &t->hlen);
	CU_ASSERT_FATAL(t->ctlen == t->hlen + 2 * REC + 100 + KWF_TAG);
}

static void
three_free(struct three *t)
{
	free(t->pt);
	free(t->ct);
	kw_secret_clear(&t->dk);
}

/* Expect ct to be refused with KW_E_AUTH, a detail containing what, and
 * exactly the first good_chunks chunks of plaintext written. */
static void
expect_refused(const struct three *t, const uint8_t *ct, size_t len, const char *what,
    size_t good_chunks)
{
	uint8_t *out;
	size_t outlen;
	int r = open_buf(&t->dk, ct, len, &out, &outlen);

	CU_ASSERT_EQUAL(r, KW_E_AUTH);
	if (r != 0 && what != NULL && strstr(kw_errdetail(r), what) == NULL) {
		fprintf(stderr, "\n  detail \"%s\" lacks \"%s\"\n", kw_errdetail(r), what);
		CU_FAIL("the detail does not say what failed");
	}
	CU_ASSERT_EQUAL(outlen, good_chunks * CS);
	CU_ASSERT(outlen == good_chunks * CS && memcmp(out, t->pt, outlen) == 0);
	free(out);
}

static void
test_truncated(void)
{
	struct three t;
	uint8_t *ct;
	size_t len;

	three_new(&t);
	/* The final chunk dropped. */
	expect_refused(&t, t.ct, t.hlen + 2 * REC, "chunk 1: the file ends after it", 1);
	/* Cut inside the final chunk, inside a middle one, inside a tag. */
	expect_refused(&t, t.ct, t.ctlen - 1, "chunk 2: authentication failed", 2);
	expect_refused(&t, t.ct, t.hlen + REC + 1000, "chunk 1: authentication failed", 1);
	expect_refused(&t, t.ct, t.hlen + REC + 5, "chunk 1: truncated", 1);
	/* Only the header. */
	expect_refused(&t, t.ct, t.hlen, "chunk 0: missing", 0);
	three_free(&t);

	/* A file of exactly two full chunks: its second is the final one;
	 * without it the first is not final. */
	t.dk = new_key();
	t.pt = random_bytes(2 * CS);
	ct = seal(&t.dk, NULL, t.pt, 2 * CS, &len, &t.hlen);
	CU_ASSERT_EQUAL(len, t.hlen + 2 * REC);
	expect_refused(&t, ct, t.hlen + REC, "chunk 0: the file ends after it", 0);
	free(ct);
	t.ct = NULL;
	three_free(&t);
}

static void
test_reordered(void)
{
	struct three t;
	uint8_t *ct;

	three_new(&t);
	ct = malloc(t.ctlen);
	CU_ASSERT_FATAL(ct != NULL);
	memcpy(ct, t.ct, t.ctlen);
	/* Chunks 0 and 1 swapped. */
	memcpy(ct + t.hlen, t.ct + t.hlen + REC, REC);
	memcpy(ct + t.hlen + REC, t.ct + t.hlen, REC);
	expect_refused(&t, ct, t.ctlen, "chunk 0: authentication failed", 0);
	/* Chunk 0 twice (chunk 1 replaced by a copy of it). */
	memcpy(ct, t.ct, t.ctlen);
	memcpy(ct + t.hlen + REC, t.ct + t.hlen, REC);
	expect_refused(&t, ct, t.ctlen, "chunk 1: authentication failed", 1);
	free(ct);
	three_free(&t);
}

static void
test_spliced(void)
{
	struct three t;
	struct kwf_header hb;
	FILE *in, *out;
	uint8_t *other, *ct, *pb = random_bytes(2 * CS + 100);
	size_t olen;

	three_new(&t);
	/* Another file under the same data key: its chunk 1 into ours. */
	other = seal(&t.dk, NULL, pb, 2 * CS + 100, &olen, NULL);
	CU_ASSERT_FATAL(olen == t.ctlen);
	ct = malloc(t.ctlen);
	CU_ASSERT_FATAL(ct != NULL);
	memcpy(ct, t.ct, t.ctlen);
	memcpy(ct + t.hlen + REC, other + t.hlen + REC, REC);
	expect_refused(&t, ct, t.ctlen, "chunk 1: authentication failed", 1);
	/* Its final chunk in place of ours. */
	memcpy(ct, t.ct, t.ctlen);
	memcpy(ct + t.hlen + 2 * REC, other + t.hlen + 2 * REC, 100 + KWF_TAG);
	expect_refused(&t, ct, t.ctlen, "chunk 2: authentication failed", 2);
	free(other);

	/* Even with our salt, so the same file key: the header hash (here a
	 * context that differs) keeps its chunks out. */
	{
		json_t *ctx = json_pack("{s:s}", "x", "y");
		CU_ASSERT_FATAL(kwf_header_build(&hb, "prod", wrapped, sizeof(wrapped), ctx, CS) == 0);
		memcpy(hb.raw + 10, t.ct + 10, KWF_SALT);
		in = file_of(pb, 2 * CS + 100);
		out = tmpfile();
		CU_ASSERT_FATAL(out != NULL && kwf_seal(&t.dk, &hb, in, out) == 0);
		other = slurp(out, &olen);
		fclose(in);
		fclose(out);
		memcpy(ct, t.ct, t.ctlen);
		memcpy(ct + t.hlen + REC, other + hb.raw_len + REC, REC);
		expect_refused(&t, ct, t.ctlen, "chunk 1: authentication failed", 1);
		/* And the control: with its own header it opens. */
		{
			uint8_t *back;
			size_t blen;
			CU_ASSERT_EQUAL(open_buf(&t.dk, other, olen, &back, &blen), 0);
			CU_ASSERT(blen == 2 * CS + 100 && memcmp(back, pb, blen) == 0);
			free(back);
		}
		free(other);
		kwf_header_free(&hb);
		json_decref(ctx);
	}
	free(ct);
	free(pb);
	three_free(&t);
}

static void
test_flipped(void)
{
	struct three t;
	uint8_t *ct, *out;
	size_t outlen;
	int r;

	three_new(&t);
	ct = malloc(t.ctlen);
	CU_ASSERT_FATAL(ct != NULL);
	/* Every byte of the header, one at a time: refused, nothing out. */
	for (size_t i = 0; i < t.hlen; i++) {
		memcpy(ct, t.ct, t.ctlen);
		ct[i] ^= 0x01;
		r = open_buf(&t.dk, ct, t.ctlen, &out, &outlen);
		CU_ASSERT(r == KW_E_AUTH || r == KW_E_FORMAT);
		if (r == 0)
			fprintf(stderr, "\n  a flip of header byte %zu went unnoticed\n", i);
		CU_ASSERT_EQUAL(outlen, 0);
		free(out);
	}
	/* A byte of the body of chunk 0, of chunk 1, of the final chunk. */
	memcpy(ct, t.ct, t.ctlen);
	ct[t.hlen + 7] ^= 0x80;
	expect_refused(&t, ct, t.ctlen, "chunk 0: authentication failed", 0);
	memcpy(ct, t.ct, t.ctlen);
	ct[t.hlen + REC + CS / 2] ^= 0x80;
	expect_refused(&t, ct, t.ctlen, "chunk 1: authentication failed", 1);
	memcpy(ct, t.ct, t.ctlen);
	ct[t.hlen + 2 * REC + 3] ^= 0x80;
	expect_refused(&t, ct, t.ctlen, "chunk 2: authentication failed", 2);
	/* A byte of a tag. */
	memcpy(ct, t.ct, t.ctlen);
	ct[t.hlen + REC - 1] ^= 0x01;
	expect_refused(&t, ct, t.ctlen, "chunk 0: authentication failed", 0);
	memcpy(ct, t.ct, t.ctlen);
	ct[t.ctlen - KWF_TAG] ^= 0x01;
	expect_refused(&t, ct, t.ctlen, "chunk 2: authentication failed", 2);
	free(ct);

	/* Another data key. */
	kw_secret_clear(&t.dk);
	t.dk = new_key();
	expect_refused(&t, t.ct, t.ctlen, "chunk 0: authentication failed", 0);
	three_free(&t);
}

static void
test_appended(void)
{
	struct three t;
	uint8_t *ct;
	static const size_t extra[] = { 1, KWF_TAG, 100 + KWF_TAG, REC };

	three_new(&t);
	ct = malloc(t.ctlen + REC);
	CU_ASSERT_FATAL(ct != NULL);
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		memcpy(ct, t.ct, t.ctlen);
		/* Garbage, and (for the larger ones) a copy of real chunks. */
		if (extra[i] == 100 + KWF_TAG)
			memcpy(ct + t.ctlen, t.ct + t.hlen + 2 * REC, extra[i]);
		else if (extra[i] == REC)
			memcpy(ct + t.ctlen, t.ct + t.hlen, REC);
		else
			memset(ct + t.ctlen, 0x5a, extra[i]);
		expect_refused(&t, ct, t.ctlen + extra[i], "chunk 2: authentication failed", 2);
	}
	free(ct);
	three_free(&t);

	/* After the one empty chunk of an empty file. */
	{
		uint8_t *e, *out;
		size_t elen, hlen, outlen;
		t.dk = new_key();
		e = seal(&t.dk, NULL, "", 0, &elen, &hlen);
		CU_ASSERT_FATAL(elen == hlen + KWF_TAG);
		ct = malloc(elen + 1);
		CU_ASSERT_FATAL(ct != NULL);
		memcpy(ct, e, elen);
		ct[elen] = 0;
		CU_ASSERT_EQUAL(open_buf(&t.dk, ct, elen + 1, &out, &outlen), KW_E_AUTH);
		CU_ASSERT_EQUAL(outlen, 0);
		free(out);
		free(ct);
		free(e);
		kw_secret_clear(&t.dk);
	}
}

/* ---- reseal (rewrap-file) ------------------------------------------------------ */

static const uint8_t wrapped2[] = "another wrapped form of the same data key";

/* Reseal ct (made by seal()) under a new header carrying wrapped2; the code,
 * and the new file in *out. */
static int
reseal_buf(const kw_secret *dk, const uint8_t *ct, size_t n, uint8_t **out, size_t *outlen)
{
	struct kwf_header h, nh;
	FILE *in = file_of(ct, n), *o = tmpfile();
	int r;

	CU_ASSERT_FATAL(o != NULL);
	if ((r = kwf_header_read(in, &h)) == 0) {
		CU_ASSERT_FATAL(kwf_header_build(&nh, h.vault, wrapped2, sizeof(wrapped2),
		    h.context, h.chunk_size) == 0);
		r = kwf_reseal(dk, &h, in, &nh, o);
		kwf_header_free(&nh);
		kwf_header_free(&h);
	}
	*out = slurp(o, outlen);
	fclose(in);
	fclose(o);
	return r;
}

static void
reseal_round_trip(size_t n)
{
	kw_secret dk = new_key();
	uint8_t *pt = random_bytes(n), *ct, *re, *back;
	size_t ctlen, relen, backlen;
	struct kwf_header h;
	FILE *f;

	ct = seal(&dk, NULL, pt, n, &ctlen, NULL);
	CU_ASSERT_EQUAL_FATAL(reseal_buf(&dk, ct, ctlen, &re, &relen), 0);
	/* Same layout, other bytes: new wrapped key and salt, new tags. */
	CU_ASSERT_EQUAL(relen, ctlen - sizeof(wrapped) + sizeof(wrapped2));
	f = file_of(re, relen);
	CU_ASSERT_EQUAL_FATAL(kwf_header_read(f, &h), 0);
	CU_ASSERT(h.wrapped_len == sizeof(wrapped2) && memcmp(h.wrapped, wrapped2, sizeof(wrapped2)) == 0);
	kwf_header_free(&h);
	fclose(f);
	CU_ASSERT_EQUAL(open_buf(&dk, re, relen, &back, &backlen), 0);
	CU_ASSERT(backlen == n && memcmp(back, pt, n) == 0);
	free(pt);
	free(ct);
	free(re);
	free(back);
	kw_secret_clear(&dk);
}

static void test_reseal_0(void) { reseal_round_trip(0); }
static void test_reseal_cs(void) { reseal_round_trip(CS); }
static void test_reseal_3cs(void) { reseal_round_trip(3 * CS + 17); }

/* A damaged or truncated file is refused by reseal as by open, at the same
 * chunk; the chunks before it were already written and the caller throws
 * the output away.  Under another key nothing opens. */
static void
test_reseal_refuses(void)
{
	kw_secret dk = new_key(), other = new_key();
	uint8_t *pt = random_bytes(3 * CS + 17), *ct, *re;
	size_t ctlen, hlen, relen;

	ct = seal(&dk, NULL, pt, 3 * CS + 17, &ctlen, &hlen);
	ct[hlen + REC + 100] ^= 1;
	CU_ASSERT_EQUAL(reseal_buf(&dk, ct, ctlen, &re, &relen), KW_E_AUTH);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "chunk 1: authentication failed"));
	free(re);
	ct[hlen + REC + 100] ^= 1;
	CU_ASSERT_EQUAL(reseal_buf(&dk, ct, hlen + 2 * REC, &re, &relen), KW_E_AUTH);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "chunk 1: the file ends after it"));
	free(re);
	CU_ASSERT_EQUAL(reseal_buf(&other, ct, ctlen, &re, &relen), KW_E_AUTH);
	CU_ASSERT_PTR_NOT_NULL(strstr(kw_errdetail(KW_E_AUTH), "chunk 0:"));
	free(re);
	free(pt);
	free(ct);
	kw_secret_clear(&dk);
	kw_secret_clear(&other);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "round trip: 0 bytes", test_rt_0 },
		{ "round trip: 1 byte", test_rt_1 },
		{ "round trip: chunk size - 1", test_rt_cs_minus_1 },
		{ "round trip: chunk size", test_rt_cs },
		{ "round trip: chunk size + 1", test_rt_cs_plus_1 },
		{ "round trip: 3 chunks and a bit", test_rt_3cs },
		{ "round trip: 100 MiB streamed", test_rt_100mib },
		{ "the header as documented", test_header_layout },
		{ "not a keywarden file, header cut short", test_not_a_file },
		{ "truncated: last chunk dropped, cut mid-chunk", test_truncated },
		{ "reordered and repeated chunks", test_reordered },
		{ "chunks spliced from another file, same key", test_spliced },
		{ "one flipped byte: header, body, tag; other key", test_flipped },
		{ "garbage and chunks appended", test_appended },
		{ "reseal under a new header: 0 bytes", test_reseal_0 },
		{ "reseal under a new header: chunk size", test_reseal_cs },
		{ "reseal under a new header: 3 chunks and a bit", test_reseal_3cs },
		{ "reseal refuses what open refuses", test_reseal_refuses },
		{ NULL, NULL }
	};

	return kwt_cunit_main("kw_file", NULL, NULL, cases);
}
