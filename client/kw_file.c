/*
 * kw_file.c - libkeywarden: envelope encryption of files of any size.
 *
 * A file is a header and chunks (docs/file-format.md).  The daemon makes a
 * data key and wraps it under the vault's master key; the file key is
 * HKDF-SHA256 of the data key with the header's random salt, and each chunk
 * is AES-256-GCM with a nonce of its counter and a final flag, and the
 * header's SHA-256 as AAD.  So a chunk cannot move (counter), the file
 * cannot be cut at a chunk boundary (the last chunk must carry the final
 * flag), nor take a chunk from another file (salt and header hash).
 *
 * Plaintext and keys live in kw_secalloc memory and are wiped on every path;
 * a chunk's plaintext is written only after its tag checked.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "keywarden.h"
#include "client/kw_file.h"

#define KWF_FIXED (4 + 1 + 1 + 4 + KWF_SALT + 1)   /* magic .. vault_len */

/* ---- the header ---------------------------------------------------------------- */

void
kwf_header_free(struct kwf_header *h)
{
	if (h == NULL)
		return;
	free(h->raw);
	json_decref(h->context);
	memset(h, 0, sizeof(*h));
}

char *
kwf_context_canonical(const json_t *context)
{
	json_t *empty = NULL;
	char *s;

	if (context == NULL && (context = empty = json_object()) == NULL)
		return NULL;
	s = json_dumps(context, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(empty);
	return s;
}

static int
vault_name_ok(const char *v, size_t n)
{
	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

static int
context_ok(const json_t *context)
{
	const char *k;
	json_t *v;

	if (!json_is_object(context))
		return 0;
	json_object_foreach((json_t *)context, k, v)
		if (!json_is_string(v))
			return 0;
	return 1;
}

static void
put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

int
kwf_header_build(struct kwf_header *h, const char *vault, const uint8_t *wrapped,
    size_t wrapped_len, const json_t *context, uint32_t chunk_size)
{
	struct kwf_header n = { 0 };
	size_t vlen = vault ? strlen(vault) : 0, clen, off;
	char *ctx = NULL;
	int r;

	if (!vault_name_ok(vault, vlen))
		return kw_fail(-EINVAL, "the vault name '%.64s' cannot go in a file header", vault ? vault : "");
	if (wrapped_len == 0 || wrapped_len > 0xffff)
		return kw_fail(-EINVAL, "a wrapped data key of %zu bytes does not fit a file header",
		    wrapped_len);
	if (chunk_size == 0 || chunk_size > KWF_CHUNK_MAX)
		return kw_fail(-EINVAL, "a chunk size of %u is out of range", chunk_size);
	if (context != NULL && !context_ok(context))
		return kw_fail(-EINVAL, "an encryption context is a JSON object of strings");
	if ((ctx = kwf_context_canonical(context)) == NULL)
		return kw_fail(-ENOMEM, "cannot encode the context: out of memory");
	if ((clen = strlen(ctx)) > 0xffff) {
		r = kw_fail(-EINVAL, "the context of %zu bytes does not fit a file header", clen);
		goto out;
	}
	n.raw_len = KWF_FIXED + vlen + 2 + wrapped_len + 2 + clen;
	if ((n.raw = malloc(n.raw_len)) == NULL ||
	    (n.context = context ? json_deep_copy(context) : json_object()) == NULL) {
		r = kw_fail(-ENOMEM, "out of memory");
		goto out;
	}
	memcpy(n.raw, KWF_MAGIC, 4);
	n.raw[4] = KWF_FORMAT;
	n.raw[5] = KWF_ALG_AES256GCM;
	n.raw[6] = (uint8_t)(chunk_size >> 24);
	n.raw[7] = (uint8_t)(chunk_size >> 16);
	n.raw[8] = (uint8_t)(chunk_size >> 8);
	n.raw[9] = (uint8_t)chunk_size;
	if (RAND_bytes(n.raw + 10, KWF_SALT) != 1) {
		r = kw_fail(KW_E_INTERNAL, "the random generator failed");
		goto out;
	}
	n.raw[10 + KWF_SALT] = (uint8_t)vlen;
	off = KWF_FIXED;
	memcpy(n.raw + off, vault, vlen);
	off += vlen;
	put_u16(n.raw + off, wrapped_len);
	memcpy(n.raw + off + 2, wrapped, wrapped_len);
	n.wrapped = n.raw + off + 2;
	off += 2 + wrapped_len;
	put_u16(n.raw + off, clen);
	memcpy(n.raw + off + 2, ctx, clen);
	n.chunk_size = chunk_size;
	n.salt = n.raw + 10;
	memcpy(n.vault, vault, vlen + 1);
	n.wrapped_len = wrapped_len;
	*h = n;
	memset(&n, 0, sizeof(n));   /* handed to the caller */
	r = 0;
 out:
	kwf_header_free(&n);
	free(ctx);
	return r;
}

/* Read n more bytes of the header into h->raw. */
static int
header_more(FILE *in, struct kwf_header *h, size_t n)
{
	uint8_t *np;

	if ((np = realloc(h->raw, h->raw_len + n)) == NULL)
		return kw_fail(-ENOMEM, "out of memory");
	h->raw = np;
	if (fread(h->raw + h->raw_len, 1, n, in) != n) {
		if (ferror(in))
			return kw_fail(-EIO, "cannot read the file header: %s", strerror(errno));
		return kw_fail(KW_E_FORMAT, "the file ends inside its header: it is truncated "
		    "or not a keywarden encrypted file");
	}
	h->raw_len += n;
	return 0;
}

static size_t
get_u16(const uint8_t *p)
{
	return (size_t)p[0] << 8 | p[1];
}

int
kwf_header_read(FILE *in, struct kwf_header *h)
{
	struct kwf_header n = { 0 };
	size_t vlen, wlen, clen, woff;
	json_error_t je;
	int r;

	if ((r = header_more(in, &n, 4)) != 0)
		goto out;
	if (memcmp(n.raw, KWF_MAGIC, 4) != 0) {
		r = kw_fail(KW_E_FORMAT, "not a keywarden encrypted file (it does not start "
		    "with \"" KWF_MAGIC "\")");
		goto out;
	}
	if ((r = header_more(in, &n, KWF_FIXED - 4)) != 0)
		goto out;
	if (n.raw[4] != KWF_FORMAT) {
		r = kw_fail(KW_E_FORMAT, "the file has format %u; this keywarden reads format %u",
		    n.raw[4], KWF_FORMAT);
		goto out;
	}
	if (n.raw[5] != KWF_ALG_AES256GCM) {
		r = kw_fail(KW_E_FORMAT, "the file uses algorithm %u; this keywarden knows "
		    "%u (AES-256-GCM)", n.raw[5], KWF_ALG_AES256GCM);
		goto out;
	}
	n.chunk_size = (uint32_t)n.raw[6] << 24 | (uint32_t)n.raw[7] << 16 |
	    (uint32_t)n.raw[8] << 8 | n.raw[9];
	if (n.chunk_size == 0 || n.chunk_size > KWF_CHUNK_MAX) {
		r = kw_fail(KW_E_FORMAT, "the file's chunk size %u is out of range (1 to %u)",
		    n.chunk_size, KWF_CHUNK_MAX);
		goto out;
	}
	vlen = n.raw[KWF_FIXED - 1];
	if ((r = header_more(in, &n, vlen + 2)) != 0)
		goto out;
	if (!vault_name_ok((const char *)n.raw + KWF_FIXED, vlen)) {
		r = kw_fail(KW_E_FORMAT, "the file's header names no valid vault");
		goto out;
	}
	memcpy(n.vault, n.raw + KWF_FIXED, vlen);
	n.vault[vlen] = '\0';
	woff = KWF_FIXED + vlen + 2;
	if ((wlen = get_u16(n.raw + woff - 2)) == 0) {
		r = kw_fail(KW_E_FORMAT, "the file's header holds no wrapped key");
		goto out;
	}
	if ((r = header_more(in, &n, wlen + 2)) != 0)
		goto out;
	clen = get_u16(n.raw + woff + wlen);
	if ((r = header_more(in, &n, clen)) != 0)
		goto out;
	n.context = json_loadb((const char *)n.raw + woff + wlen + 2, clen, 0, &je);
	if (!context_ok(n.context)) {
		r = kw_fail(KW_E_FORMAT, "the file's context is not a JSON object of strings");
		goto out;
	}
	/* raw does not move any more. */
	n.salt = n.raw + 10;
	n.wrapped = n.raw + woff;
	n.wrapped_len = wlen;
	*h = n;
	memset(&n, 0, sizeof(n));
	r = 0;
 out:
	kwf_header_free(&n);
	return r;
}

/* ---- the chunks ------------------------------------------------------------------ */

struct chunker {
	EVP_CIPHER_CTX *ctx;
	uint8_t *key;           /* secure, 32 bytes */
	uint8_t aad[32];        /* SHA-256 of the header */
	uint8_t *pt;            /* secure, a chunk of plaintext (chunk_size bytes) */
	uint8_t *ct;            /* a record: a chunk of ciphertext and its tag */
};

static void
chunker_free(struct chunker *k)
{
	EVP_CIPHER_CTX_free(k->ctx);
	kw_secfree(k->key);
	kw_secfree(k->pt);   /* wipes */
	free(k->ct);
	memset(k, 0, sizeof(*k));
}

/* The file key: HKDF-SHA256(ikm = data key, salt, info = KWF_INFO); and the
 * buffers of one chunk. */
static int
chunker_init(struct chunker *k, const kw_secret *dk, const struct kwf_header *h, int enc)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[5];
	int r = KW_E_INTERNAL;

	memset(k, 0, sizeof(*k));
	if (dk == NULL || dk->data == NULL || dk->len < 16)
		return kw_fail(-EINVAL, "the data key of a file has at least 16 bytes");
	if ((k->key = kw_secalloc(32)) == NULL) {
		r = kw_fail(-ENOMEM, "out of secure memory for the file key");
		goto out;
	}
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, dk->data, dk->len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	    (void *)h->salt, KWF_SALT);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (void *)KWF_INFO, strlen(KWF_INFO));
	params[4] = OSSL_PARAM_construct_end();
	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL ||
	    (kctx = EVP_KDF_CTX_new(kdf)) == NULL ||
	    EVP_KDF_derive(kctx, k->key, 32, params) != 1) {
		r = kw_fail(KW_E_INTERNAL, "OpenSSL cannot derive the file key (HKDF-SHA256)");
		goto out;
	}
	if (SHA256(h->raw, h->raw_len, k->aad) == NULL ||
	    (k->ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    (enc ? EVP_EncryptInit_ex(k->ctx, EVP_aes_256_gcm(), NULL, k->key, NULL) :
	    EVP_DecryptInit_ex(k->ctx, EVP_aes_256_gcm(), NULL, k->key, NULL)) != 1) {
		r = kw_fail(KW_E_INTERNAL, "OpenSSL cannot set up AES-256-GCM");
		goto out;
	}
	if ((k->pt = kw_secalloc(h->chunk_size)) == NULL ||
	    (k->ct = malloc((size_t)h->chunk_size + KWF_TAG)) == NULL) {
		r = kw_fail(-ENOMEM, "out of memory for a chunk of %zu bytes", (size_t)h->chunk_size);
		goto out;
	}
	r = 0;
 out:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	if (r != 0)
		chunker_free(k);
	return r;
}

/* 11-byte big-endian counter || final flag. */
static void
chunk_nonce(uint64_t counter, int final, uint8_t nonce[12])
{
	memset(nonce, 0, 12);
	for (int i = 10; i >= 3; i--, counter >>= 8)
		nonce[i] = (uint8_t)counter;
	nonce[11] = final ? 1 : 0;
}

/* Seal n bytes of pt into ct (n + KWF_TAG bytes). */
static int
chunk_seal(struct chunker *k, uint64_t counter, int final, const uint8_t *pt, size_t n,
    uint8_t *ct)
{
	uint8_t nonce[12];
	int l;

	chunk_nonce(counter, final, nonce);
	if (EVP_EncryptInit_ex(k->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_EncryptUpdate(k->ctx, NULL, &l, k->aad, sizeof(k->aad)) != 1 ||
	    (n > 0 && EVP_EncryptUpdate(k->ctx, ct, &l, pt, (int)n) != 1) ||
	    EVP_EncryptFinal_ex(k->ctx, ct + n, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(k->ctx, EVP_CTRL_GCM_GET_TAG, KWF_TAG, ct + n) != 1)
		return kw_fail(KW_E_INTERNAL, "OpenSSL failed to encrypt chunk %llu",
		    (unsigned long long)counter);
	return 0;
}

/* Open a record of n bytes (ciphertext and tag) into pt; KW_E_AUTH when the
 * tag does not check (nothing in pt may then be used). */
static int
chunk_open(struct chunker *k, uint64_t counter, int final, const uint8_t *ct, size_t n,
    uint8_t *pt)
{
	uint8_t nonce[12], tag[KWF_TAG];
	size_t m = n - KWF_TAG;
	int l;

	chunk_nonce(counter, final, nonce);
	memcpy(tag, ct + m, KWF_TAG);
	if (EVP_DecryptInit_ex(k->ctx, NULL, NULL, NULL, nonce) != 1 ||
	    EVP_DecryptUpdate(k->ctx, NULL, &l, k->aad, sizeof(k->aad)) != 1 ||
	    (m > 0 && EVP_DecryptUpdate(k->ctx, pt, &l, ct, (int)m) != 1) ||
	    EVP_CIPHER_CTX_ctrl(k->ctx, EVP_CTRL_GCM_SET_TAG, KWF_TAG, tag) != 1)
		return KW_E_INTERNAL;
	if (EVP_DecryptFinal_ex(k->ctx, pt + m, &l) != 1)
		return KW_E_AUTH;
	return 0;
}

/* Whether in is at its end, found by reading one byte ahead and putting it
 * back: 1 at the end, 0 if not, or -EIO ("cannot read <what>"). */
static int
peek_end(FILE *in, const char *what)
{
	int ch = getc(in);

	if (ch != EOF)
		return ungetc(ch, in) == EOF ?
		    kw_fail(-EIO, "cannot read %s: ungetc failed", what) : 0;
	if (ferror(in))
		return kw_fail(-EIO, "cannot read %s: %s", what, strerror(errno));
	return 1;
}

/* Flush out; -EIO ("cannot write <what>") if it or an earlier write failed. */
static int
flush_out(FILE *out, const char *what)
{
	if (fflush(out) != 0 || ferror(out))
		return kw_fail(-EIO, "cannot write %s: %s", what, strerror(errno));
	return 0;
}

int
kwf_seal(const kw_secret *dk, const struct kwf_header *h, FILE *in, FILE *out)
{
	struct chunker k;
	uint64_t counter = 0;
	size_t cs = h->chunk_size;
	int r, final = 0;

	if ((r = chunker_init(&k, dk, h, 1)) != 0)
		return r;
	if (fwrite(h->raw, 1, h->raw_len, out) != h->raw_len) {
		r = kw_fail(-EIO, "cannot write the encrypted file: %s", strerror(errno));
		goto out;
	}
	while (!final) {
		size_t n = fread(k.pt, 1, cs, in);

		if (ferror(in)) {
			r = kw_fail(-EIO, "cannot read the file to encrypt: %s", strerror(errno));
			goto out;
		}
		/* A full chunk is the last one when the input ends right after it. */
		if (n < cs)
			final = 1;
		else if ((final = peek_end(in, "the file to encrypt")) < 0) {
			r = final;
			goto out;
		}
		if ((r = chunk_seal(&k, counter, final, k.pt, n, k.ct)) != 0)
			goto out;
		kw_wipe(k.pt, n);
		if (fwrite(k.ct, 1, n + KWF_TAG, out) != n + KWF_TAG) {
			r = kw_fail(-EIO, "cannot write the encrypted file: %s", strerror(errno));
			goto out;
		}
		if (counter == UINT64_MAX) {
			r = kw_fail(KW_E_TOO_LARGE, "the file has too many chunks");
			goto out;
		}
		counter++;
	}
	r = flush_out(out, "the encrypted file");
 out:
	chunker_free(&k);
	return r;
}

/* What open_chunks does with each chunk's plaintext (in the chunker's
 * secure buffer, wiped after). */
typedef int chunk_sink(void *arg, uint64_t counter, int final, const uint8_t *pt, size_t n);

/* Read the chunks that follow h in in, check each, hand its plaintext on. */
static int
open_chunks(const kw_secret *dk, const struct kwf_header *h, FILE *in, chunk_sink *sink,
    void *arg)
{
	struct chunker k;
	uint64_t counter;
	size_t cs = h->chunk_size, rec = cs + KWF_TAG;
	int r;

	if ((r = chunker_init(&k, dk, h, 0)) != 0)
		return r;
	for (counter = 0;; counter++) {
		size_t n = fread(k.ct, 1, rec, in);
		int final = n < rec;

		if (ferror(in)) {
			r = kw_fail(-EIO, "cannot read the encrypted file: %s", strerror(errno));
			goto out;
		}
		if (!final && (final = peek_end(in, "the encrypted file")) < 0) {
			r = final;
			goto out;
		}
		if (n == 0) {
			r = kw_fail(KW_E_AUTH, "chunk %llu: missing: the file is truncated "
			    "(its final chunk is not there)", (unsigned long long)counter);
			goto out;
		}
		if (n < KWF_TAG) {
			r = kw_fail(KW_E_AUTH, "chunk %llu: truncated: %zu bytes, shorter than "
			    "its tag", (unsigned long long)counter, n);
			goto out;
		}
		if ((r = chunk_open(&k, counter, final, k.ct, n, k.pt)) != 0) {
			if (r == KW_E_AUTH && final && n == rec &&
			    chunk_open(&k, counter, 0, k.ct, n, k.pt) == 0)
				r = kw_fail(KW_E_AUTH, "chunk %llu: the file ends after it, but it is "
				    "not the final chunk: the file is truncated",
				    (unsigned long long)counter);
			else if (r == KW_E_AUTH)
				r = kw_fail(KW_E_AUTH, "chunk %llu: authentication failed (the file "
				    "is damaged, altered, truncated or reordered)",
				    (unsigned long long)counter);
			else
				r = kw_fail(r, "chunk %llu: OpenSSL failed to decrypt it",
				    (unsigned long long)counter);
			kw_wipe(k.pt, cs);
			goto out;
		}
		r = sink(arg, counter, final, k.pt, n - KWF_TAG);
		kw_wipe(k.pt, n - KWF_TAG);
		if (r != 0 || final)
			break;
	}
 out:
	chunker_free(&k);
	return r;
}

static int
sink_write(void *arg, uint64_t counter, int final, const uint8_t *pt, size_t n)
{
	(void)counter;
	(void)final;
	if (fwrite(pt, 1, n, arg) != n)
		return kw_fail(-EIO, "cannot write the decrypted file: %s", strerror(errno));
	return 0;
}

int
kwf_open(const kw_secret *dk, const struct kwf_header *h, FILE *in, FILE *out)
{
	int r = open_chunks(dk, h, in, sink_write, out);

	return r != 0 ? r : flush_out(out, "the decrypted file");
}

struct reseal {
	struct chunker k;
	FILE *out;
};

/* The same chunk, same counter and final flag, sealed under the new header. */
static int
sink_reseal(void *arg, uint64_t counter, int final, const uint8_t *pt, size_t n)
{
	struct reseal *rs = arg;
	int r;

	if ((r = chunk_seal(&rs->k, counter, final, pt, n, rs->k.ct)) != 0)
		return r;
	if (fwrite(rs->k.ct, 1, n + KWF_TAG, rs->out) != n + KWF_TAG)
		return kw_fail(-EIO, "cannot write the rewrapped file: %s", strerror(errno));
	return 0;
}

int
kwf_reseal(const kw_secret *dk, const struct kwf_header *from, FILE *in,
    const struct kwf_header *to, FILE *out)
{
	struct reseal rs;
	int r;

	if (to->chunk_size != from->chunk_size)
		return kw_fail(-EINVAL, "a rewrapped file keeps its chunk size");
	if ((r = chunker_init(&rs.k, dk, to, 1)) != 0)
		return r;
	rs.out = out;
	if (fwrite(to->raw, 1, to->raw_len, out) != to->raw_len)
		r = kw_fail(-EIO, "cannot write the rewrapped file: %s", strerror(errno));
	else if ((r = open_chunks(dk, from, in, sink_reseal, &rs)) == 0)
		r = flush_out(out, "the rewrapped file");
	chunker_free(&rs.k);
	return r;
}

/* ---- with the daemon --------------------------------------------------------------- */

/* The context the data key is wrapped with: the caller's plus ours. */
static int
wrap_context(const json_t *context, json_t **out)
{
	json_t *w;

	if (context != NULL && !context_ok(context))
		return kw_fail(-EINVAL, "an encryption context is a JSON object of strings");
	if (json_object_get(context, KWF_CONTEXT_KEY) != NULL)
		return kw_fail(-EINVAL, "the context key \"" KWF_CONTEXT_KEY "\" is "
		    "keywarden's own");
	if ((w = context ? json_deep_copy(context) : json_object()) == NULL ||
	    json_object_set_new(w, KWF_CONTEXT_KEY, json_string(KWF_CONTEXT_VALUE)) != 0) {
		json_decref(w);
		return kw_fail(-ENOMEM, "out of memory");
	}
	*out = w;
	return 0;
}

int
kw_file_encrypt(kw_client *c, const char *vault, const json_t *context, FILE *in, FILE *out)
{
	struct kwf_header h = { 0 };
	kw_secret dk = { NULL, 0 };
	json_t *wctx = NULL;
	uint8_t *wrapped = NULL;
	size_t wlen = 0;
	int r;

	if (!vault_name_ok(vault, vault ? strlen(vault) : 0))
		return kw_fail(-EINVAL, "'%.64s' is not a vault name", vault ? vault : "");
	if ((r = wrap_context(context, &wctx)) != 0)
		goto out;
	if ((r = kw_datakey(c, vault, 32, wctx, &dk, &wrapped, &wlen, NULL)) != 0)
		goto out;
	if ((r = kwf_header_build(&h, vault, wrapped, wlen, context, KWF_CHUNK)) != 0)
		goto out;
	r = kwf_seal(&dk, &h, in, out);
 out:
	kw_secret_clear(&dk);
	kwf_header_free(&h);
	json_decref(wctx);
	free(wrapped);
	return r;
}

/* See kw_file.h. */
int
kwf_header_open(const json_t *context, FILE *in, struct kwf_header *h, json_t **wctx)
{
	char *want = NULL, *have = NULL;
	int r;

	if ((r = kwf_header_read(in, h)) != 0)
		return r;
	if (context != NULL) {
		if ((want = kwf_context_canonical(context)) == NULL ||
		    (have = kwf_context_canonical(h->context)) == NULL) {
			r = kw_fail(-ENOMEM, "out of memory");
			goto out;
		}
		if (strcmp(want, have) != 0) {
			r = kw_fail(KW_E_AUTH, "the file was encrypted with the context %.1024s, "
			    "not %.1024s", have, want);
			goto out;
		}
	}
	if (json_object_get(h->context, KWF_CONTEXT_KEY) != NULL) {
		r = kw_fail(KW_E_FORMAT, "the file's context uses the reserved key \""
		    KWF_CONTEXT_KEY "\"");
		goto out;
	}
	r = wrap_context(h->context, wctx);
 out:
	free(want);
	free(have);
	return r;
}

int
kw_file_decrypt(kw_client *c, const json_t *context, FILE *in, FILE *out)
{
	struct kwf_header h = { 0 };
	kw_secret dk = { NULL, 0 };
	json_t *wctx = NULL;
	int r;

	if ((r = kwf_header_open(context, in, &h, &wctx)) != 0)
		goto out;
	if ((r = kw_unwrap(c, h.vault, h.wrapped, h.wrapped_len, wctx, &dk, NULL)) != 0)
		goto out;
	r = kwf_open(&dk, &h, in, out);
 out:
	kw_secret_clear(&dk);
	kwf_header_free(&h);
	json_decref(wctx);
	return r;
}

int
kw_file_rewrap(kw_client *c, const json_t *context, FILE *in, FILE *out,
    uint64_t *from_version, uint64_t *to_version)
{
	struct kwf_header h = { 0 }, nh = { 0 };
	kw_secret dk = { NULL, 0 }, check = { NULL, 0 };
	json_t *wctx = NULL;
	uint8_t *nw = NULL;
	size_t nwlen = 0;
	uint64_t v0 = 0, v1 = 0;
	int r;

	if ((r = kwf_header_open(context, in, &h, &wctx)) != 0)
		goto out;
	if ((r = kw_unwrap(c, h.vault, h.wrapped, h.wrapped_len, wctx, &dk, &v0)) != 0 ||
	    (r = kw_rewrap(c, h.vault, h.wrapped, h.wrapped_len, wctx, &nw, &nwlen, &v1)) != 0)
		goto out;
	if (v1 == v0)
		goto out;       /* under the current key already: out stays empty */
	/* The new header must open what the chunks are sealed with, or the
	 * file would be lost once the old version is retired. */
	if ((r = kw_unwrap(c, h.vault, nw, nwlen, wctx, &check, NULL)) != 0)
		goto out;
	if (check.len != dk.len || kw_memeq_ct(check.data, dk.data, dk.len) != 0) {
		r = kw_fail(KW_E_INTERNAL, "the rewrapped data key does not unwrap to the "
		    "file's data key");
		goto out;
	}
	if ((r = kwf_header_build(&nh, h.vault, nw, nwlen, h.context, h.chunk_size)) != 0)
		goto out;
	r = kwf_reseal(&dk, &h, in, &nh, out);
 out:
	if (r == 0 && from_version != NULL)
		*from_version = v0;
	if (r == 0 && to_version != NULL)
		*to_version = v1;
	kw_secret_clear(&dk);
	kw_secret_clear(&check);
	kwf_header_free(&h);
	kwf_header_free(&nh);
	json_decref(wctx);
	free(nw);
	return r;
}
