/*
 * fuzz_file.c - the encrypted-file format (KWF1, docs/file-format.md) as
 * kw_file_decrypt and kw_file_rewrap read it (client/kw_file.c), on
 * arbitrary bytes, without a daemon: the data key, which the daemon would
 * unwrap, is the harness's own (KWFZ_KEY, the bytes 0 to 31).
 *
 * Each input is used twice.
 *
 * As a file: kwf_header_read, kwf_header_open and kwf_open with the key,
 * and kwf_reseal.  A header that reads is exactly the input's first
 * raw_len bytes, the stream stands just after it, and its fields hold what
 * the format allows (chunk size 1 to 16 MiB, a vault name of
 * [A-Za-z0-9._-], a wrapped key, a context that is an object of strings,
 * lengths that add up); a refusal is KW_E_FORMAT with a sentence, and
 * leaves the caller's header as it was.  kwf_header_open agrees with it,
 * refuses the reserved context key, and builds the wrapping context.
 * kwf_open either succeeds, and then the plaintext sealed again under
 * the same header is the input, byte for byte (the reader accepts only
 * what the writer writes), or fails with KW_E_AUTH and "chunk N: ..."
 * having released exactly the N whole chunks before (a chunk's plaintext
 * only after its tag checked).  kwf_reseal fails as kwf_open does, or
 * writes a file that opens under its new header to the same plaintext.
 *
 * As the recipe of a change: a file sealed by kwf_seal from the input's
 * parameters and plaintext (see struct recipe), which must come back
 * through kwf_open and kwf_reseal the same, and then one change to it (a
 * flipped byte, a cut, a byte deleted or inserted, data appended, chunks
 * swapped, dropped, repeated, or taken from another file of the same key
 * and plaintext).  The changed file must be refused, having released a
 * strict prefix of the plaintext in whole chunks: never a truncated,
 * extended, reordered or altered file taken for whole.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client/keywarden.h"
#include "client/kw_file.h"
#include "kw_error.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("file");

#define KWFZ_PT_MAX 512          /* plaintext of a recipe, at most */
#define KWFZ_FIXED (4 + 1 + 1 + 4 + KWF_SALT + 1)

static kw_secret key;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (kw_secret_alloc(&key, 32) != 0)
		kwf_fail("out of memory");
	for (int i = 0; i < 32; i++)
		key.data[i] = (uint8_t)i;
	return 0;
}

/* ---- streams ------------------------------------------------------------------- */

static FILE *
mem_in(const void *p, size_t n)
{
	static char none[1];
	FILE *f = fmemopen(n > 0 ? (void *)(uintptr_t)p : none, n, "rb");

	if (f == NULL)
		kwf_fail("fmemopen");
	return f;
}

struct sink {
	char *p;
	size_t n;
	FILE *f;
};

static void
sink_open(struct sink *s)
{
	s->p = NULL;
	s->n = 0;
	if ((s->f = open_memstream(&s->p, &s->n)) == NULL)
		kwf_fail("open_memstream");
}

static void
sink_close(struct sink *s)
{
	if (fclose(s->f) != 0)
		kwf_fail("closing a memory stream");
	s->f = NULL;
}

static void
sink_free(struct sink *s)
{
	free(s->p);
	s->p = NULL;
	s->n = 0;
}

/* ---- checks ---------------------------------------------------------------------- */

static int
vault_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '-';
}

/* A refusal: its code, and a sentence of its own for it. */
static void
check_refusal(int r, int want)
{
	const char *d = kw_errdetail(r);

	kwf_check(r == want || r == -ENOMEM);
	kwf_check(d != NULL && d[0] != '\0' && strlen(d) < 4096);
}

/* A header that read from the first bytes of data[0..n). */
static void
check_header(const struct kwf_header *h, const uint8_t *data, size_t n)
{
	const char *k;
	json_t *v;
	size_t vlen = strlen(h->vault), off;

	kwf_check(h->raw != NULL && h->raw_len <= n);
	kwf_check(memcmp(h->raw, data, h->raw_len) == 0);
	kwf_check(memcmp(h->raw, KWF_MAGIC, 4) == 0);
	kwf_check(h->raw[4] == KWF_FORMAT && h->raw[5] == KWF_ALG_AES256GCM);
	kwf_check(h->chunk_size >= 1 && h->chunk_size <= KWF_CHUNK_MAX);
	kwf_check(h->chunk_size == ((uint32_t)h->raw[6] << 24 | (uint32_t)h->raw[7] << 16 |
	    (uint32_t)h->raw[8] << 8 | h->raw[9]));
	kwf_check(h->salt == h->raw + 10);
	kwf_check(vlen >= 1 && vlen <= 255 && vlen == h->raw[KWFZ_FIXED - 1]);
	kwf_check(memcmp(h->vault, h->raw + KWFZ_FIXED, vlen) == 0);
	for (size_t i = 0; i < vlen; i++)
		kwf_check(vault_char_ok(h->vault[i]));
	off = KWFZ_FIXED + vlen;
	kwf_check(h->wrapped_len >= 1 &&
	    h->wrapped_len == ((size_t)h->raw[off] << 8 | h->raw[off + 1]));
	kwf_check(h->wrapped == h->raw + off + 2);
	off += 2 + h->wrapped_len;
	kwf_check(off + 2 <= h->raw_len);
	kwf_check(h->raw_len == off + 2 + ((size_t)h->raw[off] << 8 | h->raw[off + 1]));
	kwf_check(json_is_object(h->context));
	json_object_foreach(h->context, k, v)
		kwf_check(json_is_string(v));
}

/* The wrapping context: the header's plus keywarden.file. */
static void
check_wctx(const struct kwf_header *h, const json_t *wctx)
{
	json_t *want = json_deep_copy(h->context);

	if (want == NULL || json_object_set_new(want, KWF_CONTEXT_KEY,
	    json_string(KWF_CONTEXT_VALUE)) != 0)
		kwf_fail("out of memory");
	kwf_check(json_equal(want, (json_t *)(uintptr_t)wctx));
	json_decref(want);
}

/* kwf_header_open of data with the caller's context ctx (NULL: none)
 * against what kwf_header_read said (hr, h). */
static void
check_header_open(const uint8_t *data, size_t n, int hr, const struct kwf_header *h,
    const json_t *ctx)
{
	struct kwf_header h2 = { 0 };
	json_t *wctx = NULL;
	FILE *in = mem_in(data, n);
	int r = kwf_header_open(ctx, in, &h2, &wctx);

	if (hr != 0) {
		kwf_check(r == hr);
		kwf_check(wctx == NULL);
	} else if (ctx != NULL && !json_equal((json_t *)(uintptr_t)ctx, h->context)) {
		check_refusal(r, KW_E_AUTH);
		kwf_check(wctx == NULL);
	} else if (json_object_get(h->context, KWF_CONTEXT_KEY) != NULL) {
		check_refusal(r, KW_E_FORMAT);
		kwf_check(wctx == NULL);
	} else {
		kwf_check(r == 0 || r == -ENOMEM);
		if (r == 0) {
			kwf_check(h2.raw_len == h->raw_len && memcmp(h2.raw, h->raw, h->raw_len) == 0);
			check_wctx(h, wctx);
		}
	}
	json_decref(wctx);
	kwf_header_free(&h2);
	fclose(in);
}

/* What kwf_open released before it failed with r: the whole chunks
 * before the one its sentence names, each a full chunk_size. */
static void
check_open_failure(int r, const struct kwf_header *h, size_t released)
{
	unsigned long long n;

	if (r == -ENOMEM) {
		kwf_check(released % h->chunk_size == 0);
		return;
	}
	check_refusal(r, KW_E_AUTH);
	kwf_check(sscanf(kw_errdetail(r), "chunk %llu: ", &n) == 1);
	kwf_check(released % h->chunk_size == 0);
	kwf_check(released / h->chunk_size == n);
}

/* Seal pt[0..n) under h with the key into a new buffer (*len). */
static uint8_t *
seal(const struct kwf_header *h, const void *pt, size_t n, size_t *len)
{
	FILE *in = mem_in(pt, n);
	struct sink out;
	int r;

	sink_open(&out);
	r = kwf_seal(&key, h, in, out.f);
	sink_close(&out);
	fclose(in);
	if (r != 0) {
		sink_free(&out);
		return NULL;
	}
	*len = out.n;
	return (uint8_t *)out.p;
}

/* A header for a rewrap: the same fields as h under a salt of its own
 * (fill), like kw_file_rewrap's. */
static int
header_again(const struct kwf_header *h, uint8_t fill, struct kwf_header *to)
{
	int r = kwf_header_build(to, h->vault, h->wrapped, h->wrapped_len, h->context,
	    h->chunk_size);

	if (r == 0)
		memset(to->raw + 10, fill, KWF_SALT);   /* deterministic */
	return r;
}

/* ---- the input as a file ---------------------------------------------------------- */

static void
as_file(const uint8_t *data, size_t size)
{
	struct kwf_header h, before;
	struct sink out;
	FILE *in = mem_in(data, size);
	int hr, r;

	/* A refusal leaves the caller's header as it was. */
	memset(&h, 0xa5, sizeof(h));
	before = h;
	kw_errclear();
	hr = kwf_header_read(in, &h);
	if (hr != 0) {
		check_refusal(hr, KW_E_FORMAT);
		kwf_check(memcmp(&h, &before, sizeof(h)) == 0);
		fclose(in);
		check_header_open(data, size, hr, NULL, NULL);
		return;
	}
	check_header(&h, data, size);
	kwf_check(ftell(in) == (long)h.raw_len);
	check_header_open(data, size, 0, &h, NULL);
	check_header_open(data, size, 0, &h, h.context);
	{
		json_t *other = json_pack("{s:s}", "fuzz", "other");

		check_header_open(data, size, 0, &h, other);
		json_decref(other);
	}

	sink_open(&out);
	kw_errclear();
	r = kwf_open(&key, &h, in, out.f);
	sink_close(&out);
	fclose(in);
	if (r != 0) {
		check_open_failure(r, &h, out.n);
	} else {
		/* Accepted: sealing the plaintext again under this header
		 * makes the input, byte for byte. */
		size_t len = 0;
		uint8_t *again = seal(&h, out.p, out.n, &len);

		if (again != NULL) {
			kwf_check(len == size && memcmp(again, data, size) == 0);
			free(again);
		}
	}

	/* kwf_reseal fails as kwf_open did, or its file opens under the
	 * new header to the same plaintext. */
	{
		struct kwf_header to;
		struct sink re;
		int rr;

		if (header_again(&h, 0x3c, &to) != 0)
			goto out;
		in = mem_in(data, size);
		if (fseek(in, (long)h.raw_len, SEEK_SET) != 0)
			kwf_fail("fseek");
		sink_open(&re);
		kw_errclear();
		rr = kwf_reseal(&key, &h, in, &to, re.f);
		sink_close(&re);
		fclose(in);
		kwf_check(rr == r || rr == -ENOMEM || r == -ENOMEM);
		if (rr == KW_E_AUTH && r == KW_E_AUTH)
			/* The new header, then the chunks that checked. */
			kwf_check(re.n == to.raw_len + out.n / h.chunk_size *
			    ((size_t)h.chunk_size + KWF_TAG));
		if (rr == 0 && r == 0) {
			struct kwf_header h3;
			struct sink back;

			kwf_check(re.n >= to.raw_len && memcmp(re.p, to.raw, to.raw_len) == 0);
			in = mem_in(re.p, re.n);
			kwf_check(kwf_header_read(in, &h3) == 0);
			kwf_check(h3.raw_len == to.raw_len);
			sink_open(&back);
			rr = kwf_open(&key, &h3, in, back.f);
			sink_close(&back);
			kwf_check(rr == 0 || rr == -ENOMEM);
			if (rr == 0)
				kwf_check(back.n == out.n && memcmp(back.p, out.p, out.n) == 0);
			sink_free(&back);
			kwf_header_free(&h3);
			fclose(in);
		}
		sink_free(&re);
		kwf_header_free(&to);
	}
out:
	sink_free(&out);
	kwf_header_free(&h);
}

/* ---- the input as the recipe of a change ------------------------------------------- */

/* The first bytes of the input (0 past its end), then the plaintext:
 *   [0] chunk size: 0xff KWF_CHUNK, else 1 + [0] % 64
 *   [1] the change: [1] % CHANGES
 *   [2] [3] a position (big-endian), taken modulo what it indexes
 *   [4] a byte value or count
 *   [5] bit 0: a context {"app":"billing","env":"prod"}; bit 1: vault "v"
 *       instead of "prod"
 *   [6..] the plaintext, at most KWFZ_PT_MAX bytes */
struct recipe {
	uint32_t cs;
	unsigned change;
	size_t pos;
	uint8_t val;
	int ctx, short_vault;
	const uint8_t *pt;
	size_t ptlen;
};

enum { CH_NONE, CH_FLIP, CH_CUT, CH_DELETE, CH_INSERT, CH_APPEND, CH_SWAP, CH_DROP,
	CH_REPEAT, CH_FOREIGN, CHANGES };

static void
recipe_read(const uint8_t *data, size_t size, struct recipe *rc)
{
	uint8_t p[6] = { 0 };

	memcpy(p, data, size < 6 ? size : 6);
	rc->cs = p[0] == 0xff ? KWF_CHUNK : 1 + p[0] % 64u;
	rc->change = p[1] % CHANGES;
	rc->pos = (size_t)p[2] << 8 | p[3];
	rc->val = p[4];
	rc->ctx = p[5] & 1;
	rc->short_vault = (p[5] & 2) != 0;
	rc->pt = size > 6 ? data + 6 : NULL;
	rc->ptlen = size > 6 ? size - 6 : 0;
	if (rc->ptlen > KWFZ_PT_MAX)
		rc->ptlen = KWFZ_PT_MAX;
}

/* A file: its bytes, and where its chunks start and how long each record
 * is (the last may be shorter). */
struct file {
	uint8_t *b;
	size_t n, hlen, rec, nrec;
};

static void
file_chunks(struct file *f, uint32_t cs)
{
	f->rec = (size_t)cs + KWF_TAG;
	f->nrec = (f->n - f->hlen + f->rec - 1) / f->rec;
}

/* Record i of f: its offset and length. */
static void
record_at(const struct file *f, size_t i, size_t *off, size_t *len)
{
	*off = f->hlen + i * f->rec;
	*len = f->n - *off < f->rec ? f->n - *off : f->rec;
}

/* g = f with [off, off+del) replaced by ins[0..nins). */
static void
splice(const struct file *f, size_t off, size_t del, const uint8_t *ins, size_t nins,
    struct file *g)
{
	g->n = f->n - del + nins;
	if ((g->b = malloc(g->n > 0 ? g->n : 1)) == NULL)   /* exact, for ASan */
		kwf_fail("out of memory");
	memcpy(g->b, f->b, off);
	if (nins > 0)
		memcpy(g->b + off, ins, nins);
	memcpy(g->b + off + nins, f->b + off + del, f->n - off - del);
	g->hlen = f->hlen;
}

/* Apply the recipe's change to f (sealed from rc->pt; other is another
 * file of the same plaintext and key, under another salt).  0 when the
 * change does not apply to this file. */
static int
change(const struct recipe *rc, const struct file *f, const struct file *other, struct file *g)
{
	size_t pos = rc->pos % f->n, off, len, off2, len2;
	uint8_t b[32];

	switch (rc->change) {
	case CH_FLIP:
		splice(f, 0, 0, NULL, 0, g);
		g->b[pos] ^= rc->val ? rc->val : 0x80;
		return 1;
	case CH_CUT:
		splice(f, pos, f->n - pos, NULL, 0, g);
		return 1;
	case CH_DELETE:
		splice(f, pos, 1, NULL, 0, g);
		return 1;
	case CH_INSERT:
		b[0] = rc->val;
		splice(f, rc->pos % (f->n + 1), 0, b, 1, g);
		return 1;
	case CH_APPEND:
		memset(b, rc->val, sizeof(b));
		splice(f, f->n, 0, b, 1 + rc->val % sizeof(b), g);
		return 1;
	case CH_SWAP: {
		/* Two records of the same length (all but the last are full). */
		size_t i = rc->pos % f->nrec, j = rc->val % f->nrec;

		record_at(f, i, &off, &len);
		record_at(f, j, &off2, &len2);
		if (i == j || len != len2 || memcmp(f->b + off, f->b + off2, len) == 0)
			return 0;
		splice(f, 0, 0, NULL, 0, g);
		memcpy(g->b + off, f->b + off2, len);
		memcpy(g->b + off2, f->b + off, len);
		return 1;
	}
	case CH_DROP:
		record_at(f, rc->pos % f->nrec, &off, &len);
		splice(f, off, len, NULL, 0, g);
		return 1;
	case CH_REPEAT:
		record_at(f, rc->pos % f->nrec, &off, &len);
		splice(f, off + len, 0, f->b + off, len, g);
		return 1;
	case CH_FOREIGN:
		/* Record i of the other file in place of f's (same counter,
		 * same plaintext, same data key: only the salt differs). */
		record_at(f, rc->pos % f->nrec, &off, &len);
		if (other->n != f->n || other->hlen != f->hlen)
			return 0;
		splice(f, 0, 0, NULL, 0, g);
		memcpy(g->b + off, other->b + off, len);
		return 1;
	default:
		return 0;
	}
}

/* Open the file b[0..n) whole: the code, what reached the output in
 * *out, and the chunk size its header says (0 when it does not read). */
static int
open_file(const uint8_t *b, size_t n, struct sink *out, uint32_t *cs)
{
	struct kwf_header h;
	FILE *in = mem_in(b, n);
	int r;

	*cs = 0;
	sink_open(out);
	kw_errclear();
	if ((r = kwf_header_read(in, &h)) == 0) {
		*cs = h.chunk_size;
		r = kwf_open(&key, &h, in, out->f);
		kwf_header_free(&h);
	} else {
		check_refusal(r, KW_E_FORMAT);
	}
	sink_close(out);
	fclose(in);
	return r;
}

static void
as_recipe(const uint8_t *data, size_t size)
{
	struct recipe rc;
	struct kwf_header h = { 0 }, h2 = { 0 };
	struct file f = { 0 }, other = { 0 }, g = { 0 };
	struct sink out = { 0 };
	json_t *ctx = NULL;
	static const uint8_t wrapped[] = "KWK1 a wrapped data key, which only the daemon opens";
	size_t chunks;
	uint32_t cs = 0;
	int r;

	recipe_read(data, size, &rc);
	if (rc.ctx && (ctx = json_pack("{s:s,s:s}", "env", "prod", "app", "billing")) == NULL)
		kwf_fail("out of memory");
	if (kwf_header_build(&h, rc.short_vault ? "v" : "prod", wrapped, sizeof(wrapped), ctx,
	    rc.cs) != 0)
		kwf_fail("kwf_header_build");
	memset(h.raw + 10, 0x5a, KWF_SALT);   /* deterministic */
	if ((f.b = seal(&h, rc.pt, rc.ptlen, &f.n)) == NULL)
		goto out;
	f.hlen = h.raw_len;
	file_chunks(&f, rc.cs);

	/* The file as the format says: its length, and a round trip. */
	chunks = rc.ptlen == 0 ? 1 : (rc.ptlen + rc.cs - 1) / rc.cs;
	kwf_check(f.n == h.raw_len + rc.ptlen + chunks * KWF_TAG);
	kwf_check(f.nrec == chunks);
	r = open_file(f.b, f.n, &out, &cs);
	kwf_check(r == 0 || r == -ENOMEM);
	if (r == 0)
		kwf_check(out.n == rc.ptlen && (rc.ptlen == 0 || memcmp(out.p, rc.pt, rc.ptlen) == 0));
	sink_free(&out);
	check_header_open(f.b, f.n, 0, &h, ctx);

	/* The same plaintext under another salt: another file. */
	if (header_again(&h, 0xa6, &h2) != 0 || (other.b = seal(&h2, rc.pt, rc.ptlen, &other.n)) == NULL)
		goto out;
	other.hlen = h2.raw_len;
	kwf_check(other.n == f.n && memcmp(other.b + f.hlen, f.b + f.hlen, f.n - f.hlen) != 0);

	if (!change(&rc, &f, &other, &g) || (g.n == f.n && memcmp(g.b, f.b, f.n) == 0))
		goto out;
	/* A changed file is refused, having released whole chunks of the
	 * plaintext only, and never all of it. */
	r = open_file(g.b, g.n, &out, &cs);
	kwf_check(r != 0);
	if (cs != 0) {
		/* The header read (changed or not): the chunks did not. */
		struct kwf_header hc = { .chunk_size = cs };

		check_open_failure(r, &hc, out.n);
		kwf_check(out.n <= rc.ptlen && (out.n == 0 || memcmp(out.p, rc.pt, out.n) == 0));
		kwf_check(out.n < rc.ptlen || rc.ptlen == 0);
		kwf_check(cs == rc.cs || out.n == 0);
	} else {
		kwf_check(out.n == 0);
	}
out:
	sink_free(&out);
	free(f.b);
	free(other.b);
	free(g.b);
	kwf_header_free(&h);
	kwf_header_free(&h2);
	json_decref(ctx);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (key.data == NULL)
		LLVMFuzzerInitialize(NULL, NULL);
	as_file(data, size);
	as_recipe(data, size);
	return 0;
}
