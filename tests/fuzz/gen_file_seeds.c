/*
 * gen_file_seeds.c - the seeds of the file harness (tests/fuzz/fuzz_file.c,
 * corpus/file/), made with the library's own writer so that they can be
 * made again:
 *
 *   gen_file_seeds DIR            write them into DIR
 *   gen_file_seeds --check DIR    compare them with DIR (make check)
 *
 * ok-*: files sealed by kwf_seal under the harness's data key (the bytes 0
 * to 31), each with a salt of its own instead of a random one, so that the
 * harness decrypts them and the bytes do not change from run to run;
 * cut-*, extended-*, swapped-*, flipped-*: one of them changed; hdr-*:
 * headers written by hand, one of each refusal and of each odd context,
 * followed by 16 bytes where a tag would be; recipe-*: the six parameter
 * bytes the harness also reads each input as (struct recipe in
 * fuzz_file.c), one for each change, then a plaintext.  --check fails when
 * DIR lacks one of these or holds another that is not a kept crash
 * (crash-*).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client/keywarden.h"
#include "client/kw_file.h"

static const char *dir;
static int checking, bad;
static char made[128][64];
static size_t nmade;

static void
fail(const char *what)
{
	fprintf(stderr, "gen_file_seeds: %s\n", what);
	exit(1);
}

/* Write (or compare) the seed name. */
static void
emit(const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	if (nmade == sizeof(made) / sizeof(made[0]) || strlen(name) >= sizeof(made[0]))
		fail("too many seeds, or a name too long");
	snprintf(made[nmade++], sizeof(made[0]), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!checking) {
		if ((f = fopen(path, "wb")) == NULL || (n > 0 && fwrite(p, 1, n, f) != n) ||
		    fclose(f) != 0)
			fail(path);
		return;
	}
	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "gen_file_seeds: %s is missing\n", path);
		bad = 1;
		return;
	}
	{
		uint8_t *have = malloc(n + 1);
		size_t got = have ? fread(have, 1, n + 1, f) : 0;

		if (have == NULL)
			fail("out of memory");
		if (got != n || (n > 0 && memcmp(have, p, n) != 0)) {
			fprintf(stderr, "gen_file_seeds: %s differs from what this program makes\n", path);
			bad = 1;
		}
		free(have);
	}
	fclose(f);
}

/* ---- files sealed under the harness's key ------------------------------------------ */

struct buf {
	uint8_t *p;
	size_t n, hlen;
};

static kw_secret key;
static const uint8_t wrapped_key[] = "KWK1 a wrapped data key, which only the daemon opens";

/* Seal pt under a header of vault, context (JSON text or NULL), chunk
 * size cs and a salt of salt bytes. */
static struct buf
sealed(const char *vault, const char *ctx_json, const uint8_t *wrapped, size_t wlen, uint32_t cs,
    const void *pt, size_t ptlen, uint8_t salt)
{
	struct kwf_header h;
	struct buf b = { NULL, 0, 0 };
	json_t *ctx = ctx_json ? json_loads(ctx_json, 0, NULL) : NULL;
	char *mem = NULL;
	size_t memlen = 0;
	FILE *in, *out;
	static char none[1];

	if ((ctx_json != NULL && ctx == NULL) ||
	    kwf_header_build(&h, vault, wrapped, wlen, ctx, cs) != 0)
		fail("kwf_header_build");
	memset(h.raw + 10, salt, KWF_SALT);
	if ((in = fmemopen(ptlen ? (void *)(uintptr_t)pt : none, ptlen, "rb")) == NULL ||
	    (out = open_memstream(&mem, &memlen)) == NULL)
		fail("a memory stream");
	if (kwf_seal(&key, &h, in, out) != 0)
		fail("kwf_seal");
	fclose(in);
	fclose(out);
	b.p = (uint8_t *)mem;
	b.n = memlen;
	b.hlen = h.raw_len;
	kwf_header_free(&h);
	json_decref(ctx);
	return b;
}

/* ---- headers by hand ---------------------------------------------------------------- */

static size_t
put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 2;
}

/* magic, format, alg, chunk size, a salt of 0x11, vault (vlen bytes),
 * wrapped (wlen bytes of 0x42), context (clen bytes), then 16 bytes of
 * 0x77 where a tag would be. */
static void
hdr(const char *name, const char *magic, uint8_t format, uint8_t alg, uint32_t cs,
    const char *vault, size_t vlen, size_t wlen, const char *ctx, size_t clen)
{
	uint8_t b[2048];
	size_t o = 0;

	if (4 + 2 + 4 + KWF_SALT + 1 + vlen + 2 + wlen + 2 + clen + 16 > sizeof(b))
		fail("a header too large");
	memcpy(b, magic, 4);
	o = 4;
	b[o++] = format;
	b[o++] = alg;
	b[o++] = (uint8_t)(cs >> 24);
	b[o++] = (uint8_t)(cs >> 16);
	b[o++] = (uint8_t)(cs >> 8);
	b[o++] = (uint8_t)cs;
	memset(b + o, 0x11, KWF_SALT);
	o += KWF_SALT;
	b[o++] = (uint8_t)vlen;
	memcpy(b + o, vault, vlen);
	o += vlen;
	o += put_u16(b + o, wlen);
	memset(b + o, 0x42, wlen);
	o += wlen;
	o += put_u16(b + o, clen);
	memcpy(b + o, ctx, clen);
	o += clen;
	memset(b + o, 0x77, 16);
	o += 16;
	emit(name, b, o);
}

/* A well-formed header by hand, with context ctx. */
static void
hdr_ctx(const char *name, const char *ctx)
{
	hdr(name, KWF_MAGIC, KWF_FORMAT, KWF_ALG_AES256GCM, 64, "prod", 4, 8, ctx, strlen(ctx));
}

/* ---- recipes ---------------------------------------------------------------------- */

static void
recipe(const char *name, uint8_t cs, uint8_t change, uint16_t pos, uint8_t val, uint8_t flags,
    const char *pt)
{
	uint8_t b[600];
	size_t n = strlen(pt);

	if (n + 6 > sizeof(b))
		fail("a recipe too long");
	b[0] = cs;
	b[1] = change;
	b[2] = (uint8_t)(pos >> 8);
	b[3] = (uint8_t)pos;
	b[4] = val;
	b[5] = flags;
	memcpy(b + 6, pt, n);
	emit(name, b, n + 6);
}

/* ---- the seeds ---------------------------------------------------------------------- */

static void
make_seeds(void)
{
	static const char fox[] = "The quick brown fox jumps over the lazy dog.";
	char digits[41], vmax[256];
	uint8_t big[600];
	struct buf b, c;

	for (int i = 0; i < 40; i++)
		digits[i] = "0123456789abcdef"[i % 16];
	digits[40] = '\0';
	memset(vmax, 'v', 255);
	vmax[255] = '\0';
	memset(big, 0x42, sizeof(big));

	/* Files that decrypt. */
	b = sealed("prod", NULL, wrapped_key, sizeof(wrapped_key), KWF_CHUNK, "", 0, 0x01);
	emit("ok-empty", b.p, b.n);
	free(b.p);
	b = sealed("prod", NULL, wrapped_key, sizeof(wrapped_key), KWF_CHUNK, "hello, world\n", 13, 0x02);
	emit("ok-hello", b.p, b.n);
	/* Cut inside the chunk; one byte more; its tag changed; its salt. */
	emit("cut-in-chunk", b.p, b.n - 5);
	emit("cut-after-header", b.p, b.hlen);
	emit("cut-in-header", b.p, 30);
	emit("cut-in-context", b.p, b.hlen - 1);
	{
		uint8_t *x = malloc(b.n + 1);

		if (x == NULL)
			fail("out of memory");
		memcpy(x, b.p, b.n);
		x[b.n] = 'x';
		emit("extended-byte", x, b.n + 1);
		x[b.n - 1] ^= 1;
		emit("flipped-tag", x, b.n);
		x[b.n - 1] ^= 1;
		x[20] ^= 1;
		emit("flipped-salt", x, b.n);
		free(x);
	}
	free(b.p);
	b = sealed("prod", "{\"env\":\"prod\",\"app\":\"billing\"}", wrapped_key, sizeof(wrapped_key),
	    KWF_CHUNK, "attack at dawn", 14, 0x03);
	emit("ok-context", b.p, b.n);
	free(b.p);
	/* The reserved key in a file's context (kw_file_encrypt refuses to
	 * write it; a reader refuses it before asking the daemon). */
	b = sealed("prod", "{\"keywarden.file\":\"v1\"}", wrapped_key, sizeof(wrapped_key), 64,
	    "x", 1, 0x04);
	emit("ok-context-reserved", b.p, b.n);
	free(b.p);
	b = sealed("prod", NULL, wrapped_key, sizeof(wrapped_key), 1, "abc", 3, 0x05);
	emit("ok-chunk-size-1", b.p, b.n);
	free(b.p);
	b = sealed(vmax, NULL, big, sizeof(big), 64, "a long vault name, a large wrapped key", 38, 0x06);
	emit("ok-vault-255-wrapped-600", b.p, b.n);
	free(b.p);

	/* Chunks of 16: 40 bytes are 16 + 16 + 8; 32 are two full chunks,
	 * the second final. */
	b = sealed("prod", NULL, wrapped_key, sizeof(wrapped_key), 16, digits, 40, 0x07);
	emit("ok-chunks", b.p, b.n);
	emit("cut-final-chunk", b.p, b.n - (8 + KWF_TAG));
	emit("cut-two-chunks", b.p, b.n - (8 + KWF_TAG) - (16 + KWF_TAG));
	{
		uint8_t *x = malloc(b.n);
		size_t rec = 16 + KWF_TAG;

		if (x == NULL)
			fail("out of memory");
		memcpy(x, b.p, b.n);
		memcpy(x + b.hlen, b.p + b.hlen + rec, rec);
		memcpy(x + b.hlen + rec, b.p + b.hlen, rec);
		emit("swapped-chunks", x, b.n);
		free(x);
	}
	/* Chunk 1 of another file of the same key and plaintext. */
	c = sealed("prod", NULL, wrapped_key, sizeof(wrapped_key), 16, digits, 40, 0x08);
	memcpy(c.p + c.hlen, b.p + b.hlen, 16 + KWF_TAG);
	emit("foreign-chunk", c.p, c.n);
	free(c.p);
	free(b.p);
	b = sealed("prod", NULL, wrapped_key, sizeof(wrapped_key), 16, digits, 32, 0x09);
	emit("ok-full-chunks", b.p, b.n);
	{
		/* An empty chunk after the final full one. */
		uint8_t *x = malloc(b.n + KWF_TAG);

		if (x == NULL)
			fail("out of memory");
		memcpy(x, b.p, b.n);
		memset(x + b.n, 0, KWF_TAG);
		emit("extended-empty-chunk", x, b.n + KWF_TAG);
		free(x);
	}
	free(b.p);

	/* Headers by hand. */
	hdr("hdr-magic", "KWF2", 1, 1, 64, "prod", 4, 8, "{}", 2);
	hdr("hdr-format-2", "KWF1", 2, 1, 64, "prod", 4, 8, "{}", 2);
	hdr("hdr-alg-2", "KWF1", 1, 2, 64, "prod", 4, 8, "{}", 2);
	hdr("hdr-chunk-size-0", "KWF1", 1, 1, 0, "prod", 4, 8, "{}", 2);
	hdr("hdr-chunk-size-over", "KWF1", 1, 1, KWF_CHUNK_MAX + 1, "prod", 4, 8, "{}", 2);
	hdr("hdr-chunk-size-max", "KWF1", 1, 1, KWF_CHUNK_MAX, "prod", 4, 8, "{}", 2);
	hdr("hdr-vault-empty", "KWF1", 1, 1, 64, "", 0, 8, "{}", 2);
	hdr("hdr-vault-slash", "KWF1", 1, 1, 64, "pr/od", 5, 8, "{}", 2);
	hdr("hdr-vault-nul", "KWF1", 1, 1, 64, "pr\0d", 4, 8, "{}", 2);
	hdr("hdr-wrapped-empty", "KWF1", 1, 1, 64, "prod", 4, 0, "{}", 2);
	hdr("hdr-context-empty", "KWF1", 1, 1, 64, "prod", 4, 8, "", 0);
	hdr("hdr-context-nul", "KWF1", 1, 1, 64, "prod", 4, 8, "{}\0", 3);
	hdr_ctx("hdr-context-ok", "{}");
	hdr_ctx("hdr-context-not-json", "{\"a\":");
	hdr_ctx("hdr-context-array", "[\"a\"]");
	hdr_ctx("hdr-context-number", "{\"a\":1}");
	hdr_ctx("hdr-context-nested", "{\"a\":{\"b\":\"c\"}}");
	hdr_ctx("hdr-context-spaced", "{ \"b\" : \"1\" , \"a\" : \"2\" }");
	hdr_ctx("hdr-context-duplicate", "{\"a\":\"1\",\"a\":\"2\"}");
	hdr_ctx("hdr-context-trailing", "{} {}");
	hdr_ctx("hdr-context-escapes", "{\"caf\\u00e9\":\"\\ud83d\\ude00\"}");
	hdr_ctx("hdr-context-escaped-nul", "{\"a\\u0000\":\"x\"}");
	hdr_ctx("hdr-context-utf8", "{\"caf\xc3\xa9\":\"\xff\"}");
	hdr_ctx("hdr-context-reserved", "{\"keywarden.file\":\"v2\"}");

	/* Recipes: chunks of 7 (6 % 64 + 1), one of each change, at
	 * positions that hit the header and the chunks. */
	recipe("recipe-none", 6, 0, 0, 0, 0, fox);
	recipe("recipe-flip-header", 6, 1, 11, 0x01, 0, fox);
	recipe("recipe-flip-chunk", 6, 1, 200, 0x80, 0, fox);
	recipe("recipe-cut", 6, 2, 190, 0, 0, fox);
	recipe("recipe-delete", 6, 3, 250, 0, 0, fox);
	recipe("recipe-insert", 6, 4, 120, 0x55, 0, fox);
	recipe("recipe-append", 6, 5, 0, 3, 0, fox);
	recipe("recipe-swap", 6, 6, 1, 2, 0, fox);
	recipe("recipe-drop-last", 6, 7, 6, 0, 0, fox);
	recipe("recipe-drop-first", 6, 7, 0, 0, 0, fox);
	recipe("recipe-repeat", 6, 8, 3, 0, 0, fox);
	recipe("recipe-foreign", 6, 9, 2, 0, 0, fox);
	recipe("recipe-context-short-vault", 15, 1, 60, 0x04, 3, fox);
	recipe("recipe-default-chunk", 0xff, 2, 100, 0, 1, fox);
	recipe("recipe-empty", 1, 5, 0, 0, 0, "");
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--check") == 0) {
		checking = 1;
		dir = argv[2];
	} else if (argc == 2 && argv[1][0] != '-') {
		dir = argv[1];
	} else {
		fprintf(stderr, "usage: gen_file_seeds DIR | --check DIR\n");
		return 2;
	}
	if (kw_secret_alloc(&key, 32) != 0)
		fail("out of memory");
	for (int i = 0; i < 32; i++)
		key.data[i] = (uint8_t)i;
	make_seeds();
	if (checking) {
		DIR *d = opendir(dir);
		struct dirent *de;

		if (d == NULL)
			fail(dir);
		while ((de = readdir(d)) != NULL) {
			size_t i;

			if (de->d_name[0] == '.' || strncmp(de->d_name, "crash-", 6) == 0)
				continue;
			for (i = 0; i < nmade && strcmp(made[i], de->d_name) != 0; i++)
				;
			if (i == nmade) {
				fprintf(stderr, "gen_file_seeds: %s/%s is not made here\n", dir, de->d_name);
				bad = 1;
			}
		}
		closedir(d);
	}
	kw_secret_clear(&key);
	return bad;
}
