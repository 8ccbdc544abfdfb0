/*
 * keyops.c - data keys and small-payload encryption under a vault's master
 * keys, as a cloud KMS offers them, with the token doing every master-key
 * operation.
 *
 * The encryption context (a JSON object of strings) is bound as AAD in its
 * canonical form: keys sorted, compact JSON.  Each operation has its own
 * AAD prefix, so a blob made by one can never be fed to another:
 *
 *   data keys       "keywarden/v1:datakey\n" <context>
 *   encrypt's key   "keywarden/v1:encrypt\n" <context>
 *
 * (':' cannot appear in a vault name, so neither collides with the
 * "keywarden/v1/<vault>/<name>/<version>" AAD of secret records.)  The
 * token layer binds the vault name as well.  Every blob names itself: a
 * wrapped data key is
 *
 *   "KWK1" | u8 format (1) | u8 vault_len | vault | token blob
 *
 * (the token blob, pkcs11/README.md, names its format, mechanism and
 * master-key version), and a ciphertext of encrypt is
 *
 *   "KWE1" | u8 format (1) | u8 alg (1: AES-256-GCM) | u8 vault_len | vault |
 *   u16 wrapped_len | token blob | 12-byte nonce | ciphertext | 16-byte tag
 *
 * with the payload's AAD = every byte before the nonce || the context.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "kw_b64.h"
#include "kw_error.h"
#include "kw_secmem.h"
#include "pkcs11/p11.h"
#include "daemon/kwd.h"
#include "daemon/seal.h"

#define CTX_MAX_ENTRIES 32
#define CTX_MAX_BYTES 4096
#define ENCRYPT_MAX 4096
#define KWE_MAGIC "KWE1"
#define KWE_FORMAT 1
#define KWE_ALG_AES256GCM 1
#define KWE_HDR_FIXED 6      /* magic, format, alg; then the vault, u16 wrapped_len */
#define KWK_MAGIC "KWK1"
#define KWK_FORMAT 1
#define KWK_HDR_FIXED 5      /* magic, format; then the vault */
#define VAULT_FIELD_MAX (1 + 64)
#define KWK_MAX (KWK_HDR_FIXED + VAULT_FIELD_MAX + P11_WRAPPED_MAX)

/* ---- helpers ---------------------------------------------------------------------- */

/* AAD = prefix || canonical context.  *aad malloc'd.  0, or a 400 reply. */
static int
context_aad(struct kwd_req *r, const char *prefix, char **aad, size_t *aadlen)
{
	json_t *ctx = r->body ? json_object_get(r->body, "context") : NULL;
	char *canon = NULL;
	const char *k;
	json_t *v;
	size_t plen = strlen(prefix), clen = 0;

	if (ctx != NULL && !json_is_null(ctx)) {
		if (!json_is_object(ctx)) {
			kwd_reply_error(r, 400, "invalid_parameter", "context must be a JSON object of strings");
			return -1;
		}
		if (json_object_size(ctx) > CTX_MAX_ENTRIES) {
			kwd_reply_error(r, 400, "invalid_parameter", "context has %zu entries; at most %d are allowed",
			    json_object_size(ctx), CTX_MAX_ENTRIES);
			return -1;
		}
		json_object_foreach(ctx, k, v) {
			if (!json_is_string(v)) {
				kwd_reply_error(r, 400, "invalid_parameter", "context entry \"%.64s\" is not a string", k);
				return -1;
			}
		}
		if (json_object_size(ctx) > 0) {
			canon = json_dumps(ctx, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
			if (canon == NULL) {
				kwd_reply_error(r, 500, "internal", "cannot encode the context");
				return -1;
			}
			clen = strlen(canon);
			if (clen > CTX_MAX_BYTES) {
				free(canon);
				kwd_reply_error(r, 400, "invalid_parameter", "context is %zu bytes as JSON; at most %d are allowed",
				    clen, CTX_MAX_BYTES);
				return -1;
			}
		}
	}
	if ((*aad = malloc(plen + clen + 1)) == NULL) {
		free(canon);
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		return -1;
	}
	memcpy(*aad, prefix, plen);
	if (clen > 0)
		memcpy(*aad + plen, canon, clen);
	(*aad)[plen + clen] = '\0';
	*aadlen = plen + clen;
	free(canon);
	return 0;
}

/* Decode the base64 string field into *out (kw_secalloc'd when secret,
 * else malloc'd); the JSON copy of a secret is wiped.  max: largest decoded
 * length.  0, or a 400/413 reply. */
static int
body_b64(struct kwd_req *r, const char *field, int secret, size_t max, uint8_t **out, size_t *outlen)
{
	json_t *v = r->body ? json_object_get(r->body, field) : NULL;
	char *s;
	size_t len, n;
	uint8_t *buf = NULL;
	int e = -1;

	if (v == NULL || !json_is_string(v)) {
		kwd_reply_error(r, 400, "invalid_parameter", "the body needs \"%s\", a base64 string", field);
		return -1;
	}
	s = (char *)(uintptr_t)json_string_value(v);
	len = json_string_length(v);
	if (len % 4 != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "\"%s\" is not base64 (length not a multiple of 4)", field);
		goto out;
	}
	if (len / 4 * 3 > max + 2) {
		kwd_reply_error(r, 413, "too_large", "\"%s\" is larger than %zu bytes", field, max);
		goto out;
	}
	buf = secret ? kw_secalloc(KWB64_MAX(len)) : malloc(KWB64_MAX(len));
	if (buf == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		goto out;
	}
	if (kwb64_decode(s, len, 0, buf, &n) != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "\"%s\" is not valid base64", field);
		goto out;
	}
	if (n > max) {
		kwd_reply_error(r, 413, "too_large", "\"%s\" is %zu bytes; at most %zu are allowed", field,
		    n, max);
		goto out;
	}
	*out = buf;
	*outlen = n;
	buf = NULL;
	e = 0;
out:
	if (secret) {
		kw_wipe(s, len);
		kw_secfree(buf);
	} else {
		free(buf);
	}
	return e;
}

void
kwd_reply_json_secret(struct kwd_req *r, int status, json_t *obj, const char *field,
    const uint8_t *bin, size_t len)
{
	char *txt = json_dumps(obj, JSON_COMPACT);
	size_t tl, fl = strlen(field), outlen, o;
	uint8_t *out = NULL;

	json_decref(obj);
	if (txt == NULL || (tl = strlen(txt)) < 2) {
		free(txt);
		kwd_reply_error(r, 500, "internal", "cannot encode the reply");
		return;
	}
	outlen = tl + fl + 8 + 4 * ((len + 2) / 3) + 2;
	if ((out = kw_secalloc(outlen)) == NULL) {
		free(txt);
		kwd_reply_error(r, 503, "unavailable", "out of secure memory");
		return;
	}
	memcpy(out, txt, tl - 1);           /* without the closing '}' */
	o = tl - 1;
	if (tl > 2)
		out[o++] = ',';
	out[o++] = '"';
	memcpy(out + o, field, fl);
	o += fl;
	memcpy(out + o, "\":\"", 3);
	o += 3;
	o += (size_t)EVP_EncodeBlock(out + o, bin, (int)len);
	out[o++] = '"';
	out[o++] = '}';
	out[o++] = '\n';
	free(txt);
	kw_secret_clear(&r->reply_secret);
	r->reply_secret.data = out;
	r->reply_secret.len = o;
	r->status = status;
	r->content_type = "application/json";
}

/* Write the vault as u8 length | name at p; the bytes written. */
static size_t
vault_field_put(uint8_t *p, const char *vault)
{
	size_t n = strlen(vault);

	p[0] = (uint8_t)n;
	memcpy(p + 1, vault, n);
	return 1 + n;
}

/* Read the vault field at p (avail bytes); it must name r's vault.  The
 * bytes it takes in *used; else a 400 reply and -1. */
static int
vault_field_check(struct kwd_req *r, const uint8_t *p, size_t avail, size_t *used, const char *what)
{
	size_t n = avail > 0 ? p[0] : 0;

	if (avail < 1 || n == 0 || 1 + n > avail) {
		kwd_reply_error(r, 400, "invalid_ciphertext", "%s: the blob is truncated", what);
		return -1;
	}
	if (n != strlen(r->vault) || memcmp(p + 1, r->vault, n) != 0) {
		char other[65];
		size_t k = n < sizeof(other) - 1 ? n : sizeof(other) - 1;
		for (size_t i = 0; i < k; i++)
			other[i] = (p[1 + i] >= 0x20 && p[1 + i] < 0x7f) ? (char)p[1 + i] : '?';
		other[k] = '\0';
		kwd_reply_error(r, 400, "invalid_ciphertext", "%s: the blob was made in vault '%s', not '%s'",
		    what, other, r->vault);
		return -1;
	}
	*used = 1 + n;
	return 0;
}

/* A wrapped data key as the API gives it: KWK1 | vault | token blob. */
static json_t *
kwk_json(const char *vault, const uint8_t *tblob, size_t tl)
{
	uint8_t k[KWK_MAX];
	size_t o;

	memcpy(k, KWK_MAGIC, 4);
	k[4] = KWK_FORMAT;
	o = KWK_HDR_FIXED + vault_field_put(k + KWK_HDR_FIXED, vault);
	memcpy(k + o, tblob, tl);
	return kwd_b64_json(k, o + tl, 0);
}

/* The token blob inside a KWK1 of r's vault; else a 400 reply and -1. */
static int
kwk_open(struct kwd_req *r, const uint8_t *k, size_t kl, const uint8_t **tblob, size_t *tl, const char *what)
{
	size_t used;

	if (kl < KWK_HDR_FIXED || memcmp(k, KWK_MAGIC, 4) != 0 || k[4] != KWK_FORMAT) {
		kwd_reply_error(r, 400, "invalid_ciphertext", "%s: not a keywarden wrapped key of a known format", what);
		return -1;
	}
	if (vault_field_check(r, k + KWK_HDR_FIXED, kl - KWK_HDR_FIXED, &used, what) != 0)
		return -1;
	*tblob = k + KWK_HDR_FIXED + used;
	*tl = kl - KWK_HDR_FIXED - used;
	return 0;
}

/* Map an unwrap failure: a blob that does not open is the caller's
 * problem (400), never an integrity alarm of ours. */
static void
reply_unwrap_error(struct kwd_req *r, int e, const char *what)
{
	if (e == KW_E_AUTH || e == KW_E_FORMAT)
		kwd_reply_error(r, 400, "invalid_ciphertext", "%s: the blob does not open under this vault and context",
		    what);
	else if (e == KW_E_KEY_NOT_FOUND)
		kwd_reply_error(r, 400, "invalid_ciphertext", "%s: the blob names a master key version vault '%s' does not have",
		    what, r->vault);
	else
		kwd_reply_kwerr(r, e, what);
}

/* Unwrap a data key blob after checking its version may be used. */
static int
unwrap_checked(struct kwd_req *r, const uint8_t *blob, size_t bloblen, const char *aad, size_t aadlen,
    uint8_t *dek, size_t *deklen, const char *what)
{
	enum p11_wrap_mech mech;
	unsigned ver = 0;
	int e;

	if ((e = p11_blob_info(blob, bloblen, &ver, &mech)) != 0) {
		reply_unwrap_error(r, KW_E_FORMAT, what);
		return -1;
	}
	r->key_version = ver;
	if ((e = kwd_keys_usable(r->d, r->vault, ver)) != 0) {
		reply_unwrap_error(r, e, what);
		return -1;
	}
	if ((e = p11_unwrap(r->d->p11, r->vault, blob, bloblen, aad, aadlen, dek, deklen)) != 0) {
		reply_unwrap_error(r, e, what);
		return -1;
	}
	return 0;
}

/* ---- what a key operation reads of its request ------------------------------------ */

void
kwd_keyop_clear(struct kwd_keyop *k)
{
	free(k->blob);
	kw_secfree(k->pt);
	free(k->aad);
	memset(k, 0, sizeof(*k));
}

int
kwd_keyop_parse(struct kwd_req *r, struct kwd_keyop *k)
{
	struct kwd_keyop n;
	const char *what;
	size_t vf;

	memset(&n, 0, sizeof(n));
	memset(k, 0, sizeof(*k));
	switch (r->action) {
	case KWD_A_KEY_DATAKEY: {
		json_t *jb = r->body ? json_object_get(r->body, "bytes") : NULL;
		json_t *jp = r->body ? json_object_get(r->body, "plaintext") : NULL;

		n.bytes = 32;
		n.want_plaintext = 1;
		if (jb != NULL) {
			if (!json_is_integer(jb) || json_integer_value(jb) < 16 || json_integer_value(jb) > P11_DEK_MAX) {
				kwd_reply_error(r, 400, "invalid_parameter", "bytes must be a whole number from 16 to %d", P11_DEK_MAX);
				goto fail;
			}
			n.bytes = (size_t)json_integer_value(jb);
		}
		if (jp != NULL) {
			if (!json_is_boolean(jp)) {
				kwd_reply_error(r, 400, "invalid_parameter", "plaintext must be true or false");
				goto fail;
			}
			n.want_plaintext = json_is_true(jp);
		}
		if (context_aad(r, "keywarden/v1:datakey\n", &n.aad, &n.aad_len) != 0)
			goto fail;
		break;
	}
	case KWD_A_KEY_UNWRAP:
	case KWD_A_KEY_WRAP:
		what = r->action == KWD_A_KEY_UNWRAP ? "unwrap" : "rewrap";
		if (body_b64(r, "wrapped", 0, KWK_MAX, &n.blob, &n.blob_len) != 0 ||
		    kwk_open(r, n.blob, n.blob_len, &n.tblob, &n.tblob_len, what) != 0 ||
		    context_aad(r, "keywarden/v1:datakey\n", &n.aad, &n.aad_len) != 0)
			goto fail;
		break;
	case KWD_A_KEY_ENCRYPT:
		if (body_b64(r, "plaintext", 1, ENCRYPT_MAX, &n.pt, &n.pt_len) != 0 ||
		    context_aad(r, "keywarden/v1:encrypt\n", &n.aad, &n.aad_len) != 0)
			goto fail;
		break;
	case KWD_A_KEY_DECRYPT:
		if (body_b64(r, "ciphertext", 0, KWE_HDR_FIXED + VAULT_FIELD_MAX + 2 + P11_WRAPPED_MAX + SEAL_NONCE_LEN +
		    ENCRYPT_MAX + SEAL_TAG_LEN,
		    &n.blob, &n.blob_len) != 0 ||
		    context_aad(r, "keywarden/v1:encrypt\n", &n.aad, &n.aad_len) != 0)
			goto fail;
		if (n.blob_len < KWE_HDR_FIXED || memcmp(n.blob, KWE_MAGIC, 4) != 0 || n.blob[4] != KWE_FORMAT ||
		    n.blob[5] != KWE_ALG_AES256GCM) {
			kwd_reply_error(r, 400, "invalid_ciphertext", "decrypt: not a keywarden ciphertext of a known format");
			goto fail;
		}
		if (vault_field_check(r, n.blob + KWE_HDR_FIXED, n.blob_len - KWE_HDR_FIXED, &vf, "decrypt") != 0)
			goto fail;
		vf += KWE_HDR_FIXED;
		if (n.blob_len < vf + 2) {
			kwd_reply_error(r, 400, "invalid_ciphertext", "decrypt: the ciphertext is truncated");
			goto fail;
		}
		n.tblob = n.blob + vf + 2;
		n.tblob_len = (size_t)n.blob[vf] << 8 | n.blob[vf + 1];
		n.head_len = vf + 2 + n.tblob_len;
		if (n.tblob_len == 0 || n.tblob_len > P11_WRAPPED_MAX ||
		    n.blob_len < n.head_len + SEAL_NONCE_LEN + SEAL_TAG_LEN) {
			kwd_reply_error(r, 400, "invalid_ciphertext", "decrypt: the ciphertext is truncated");
			goto fail;
		}
		break;
	default:
		kwd_reply_error(r, 500, "internal", "%s is not a key operation", kwd_action_name(r->action));
		goto fail;
	}
	*k = n;
	return 0;
fail:
	kwd_keyop_clear(&n);
	return -1;
}

/* ---- handlers ----------------------------------------------------------------------- */

void
h_key_datakey(struct kwd_req *r)
{
	struct kwd_keyop k;
	uint8_t *dek = NULL, wrapped[P11_WRAPPED_MAX];
	size_t wl = 0;
	uint32_t kv;
	json_t *o;
	int e;

	if (kwd_keyop_parse(r, &k) != 0)
		return;
	if ((dek = kw_secalloc(P11_DEK_MAX)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of secure memory");
		goto out;
	}
	if ((e = kwd_keys_current(r->d, r->vault, &kv)) != 0 ||
	    (e = p11_random(r->d->p11, dek, k.bytes)) != 0 ||
	    (e = p11_wrap(r->d->p11, r->vault, kv, dek, k.bytes, k.aad, k.aad_len, wrapped, &wl)) != 0) {
		kwd_reply_kwerr(r, e, "datakey");
		goto out;
	}
	r->key_version = kv;
	r->extra = json_pack("{s:i,s:b}", "bytes", (int)k.bytes, "with_plaintext", k.want_plaintext);
	o = json_pack("{s:o,s:i}", "wrapped", kwk_json(r->vault, wrapped, wl), "key_version", (int)kv);
	if (k.want_plaintext)
		kwd_reply_json_secret(r, 200, o, "plaintext", dek, k.bytes);
	else
		kwd_reply_json(r, 200, o);
out:
	kw_secfree(dek);
	kwd_keyop_clear(&k);
}

void
h_key_unwrap(struct kwd_req *r)
{
	struct kwd_keyop k;
	uint8_t *dek = NULL;
	size_t dl = 0;

	if (kwd_keyop_parse(r, &k) != 0)
		return;
	if ((dek = kw_secalloc(P11_DEK_MAX)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of secure memory");
		goto out;
	}
	if (unwrap_checked(r, k.tblob, k.tblob_len, k.aad, k.aad_len, dek, &dl, "unwrap") != 0)
		goto out;
	kwd_reply_json_secret(r, 200, json_pack("{s:i}", "key_version", (int)r->key_version),
	    "plaintext", dek, dl);
out:
	kw_secfree(dek);
	kwd_keyop_clear(&k);
}

void
h_key_rewrap(struct kwd_req *r)
{
	struct kwd_keyop k;
	uint8_t *dek = NULL, wrapped[P11_WRAPPED_MAX];
	size_t dl = 0, wl = 0;
	uint32_t kv, prev;
	int e;

	if (kwd_keyop_parse(r, &k) != 0)
		return;
	if ((dek = kw_secalloc(P11_DEK_MAX)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of secure memory");
		goto out;
	}
	if (unwrap_checked(r, k.tblob, k.tblob_len, k.aad, k.aad_len, dek, &dl, "rewrap") != 0)
		goto out;
	prev = r->key_version;
	if ((e = kwd_keys_current(r->d, r->vault, &kv)) != 0 ||
	    (e = p11_wrap(r->d->p11, r->vault, kv, dek, dl, k.aad, k.aad_len, wrapped, &wl)) != 0) {
		kwd_reply_kwerr(r, e, "rewrap");
		goto out;
	}
	r->key_version = kv;
	r->extra = json_pack("{s:i}", "previous_key_version", (int)prev);
	kwd_reply_json(r, 200, json_pack("{s:o,s:i,s:i}", "wrapped", kwk_json(r->vault, wrapped, wl),
	    "key_version", (int)kv, "previous_key_version", (int)prev));
out:
	kw_secfree(dek);
	kwd_keyop_clear(&k);
}

void
h_key_encrypt(struct kwd_req *r)
{
	struct kwd_keyop k;
	uint8_t *dek = NULL, *blob = NULL, *payload_aad = NULL;
	size_t wl = 0, hl, bl, vf;
	uint32_t kv;
	int e;

	if (kwd_keyop_parse(r, &k) != 0)
		return;
	if ((dek = kw_secalloc(SEAL_KEY_LEN)) == NULL ||
	    (blob = malloc(KWE_HDR_FIXED + VAULT_FIELD_MAX + 2 + P11_WRAPPED_MAX + SEAL_NONCE_LEN + k.pt_len +
	    SEAL_TAG_LEN)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		goto out;
	}
	memcpy(blob, KWE_MAGIC, 4);
	blob[4] = KWE_FORMAT;
	blob[5] = KWE_ALG_AES256GCM;
	vf = KWE_HDR_FIXED + vault_field_put(blob + KWE_HDR_FIXED, r->vault);
	if ((e = kwd_keys_current(r->d, r->vault, &kv)) != 0 ||
	    (e = p11_random(r->d->p11, dek, SEAL_KEY_LEN)) != 0 ||
	    (e = p11_wrap(r->d->p11, r->vault, kv, dek, SEAL_KEY_LEN, k.aad, k.aad_len,
	    blob + vf + 2, &wl)) != 0) {
		kwd_reply_kwerr(r, e, "encrypt");
		goto out;
	}
	blob[vf] = (uint8_t)(wl >> 8);
	blob[vf + 1] = (uint8_t)wl;
	hl = vf + 2 + wl;
	/* payload AAD: the header, then the context (after the prefix) */
	if ((payload_aad = malloc(hl + k.aad_len)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		goto out;
	}
	memcpy(payload_aad, blob, hl);
	memcpy(payload_aad + hl, k.aad, k.aad_len);
	if ((e = seal_encrypt(dek, payload_aad, hl + k.aad_len, k.pt, k.pt_len, blob + hl,
	    blob + hl + SEAL_NONCE_LEN)) != 0) {
		kwd_reply_kwerr(r, e, "encrypt");
		goto out;
	}
	bl = hl + SEAL_NONCE_LEN + k.pt_len + SEAL_TAG_LEN;
	r->key_version = kv;
	r->extra = json_pack("{s:i}", "bytes", (int)k.pt_len);
	kwd_reply_json(r, 200, json_pack("{s:o,s:i}", "ciphertext", kwd_b64_json(blob, bl, 0), "key_version", (int)kv));
out:
	kw_secfree(dek);
	free(blob);
	free(payload_aad);
	kwd_keyop_clear(&k);
}

void
h_key_decrypt(struct kwd_req *r)
{
	struct kwd_keyop k;
	uint8_t *dek = NULL, *pt = NULL, *payload_aad = NULL;
	size_t dl = 0, ctl, hl;
	int e;

	if (kwd_keyop_parse(r, &k) != 0)
		return;
	hl = k.head_len;
	ctl = k.blob_len - hl - SEAL_NONCE_LEN;
	if ((dek = kw_secalloc(P11_DEK_MAX)) == NULL || (pt = kw_secalloc(ctl)) == NULL ||
	    (payload_aad = malloc(hl + k.aad_len)) == NULL) {
		kwd_reply_error(r, 503, "unavailable", "out of memory");
		goto out;
	}
	if (unwrap_checked(r, k.tblob, k.tblob_len, k.aad, k.aad_len, dek, &dl, "decrypt") != 0)
		goto out;
	if (dl != SEAL_KEY_LEN) {
		kwd_reply_error(r, 400, "invalid_ciphertext", "decrypt: the blob does not open under this vault and context");
		goto out;
	}
	memcpy(payload_aad, k.blob, hl);
	memcpy(payload_aad + hl, k.aad, k.aad_len);
	e = seal_decrypt(dek, payload_aad, hl + k.aad_len, k.blob + hl, k.blob + hl + SEAL_NONCE_LEN, ctl, pt);
	if (e != 0) {
		kwd_reply_error(r, 400, "invalid_ciphertext", "decrypt: the blob does not open under this vault and context");
		goto out;
	}
	r->extra = json_pack("{s:i}", "bytes", (int)(ctl - SEAL_TAG_LEN));
	kwd_reply_json_secret(r, 200, json_pack("{s:i}", "key_version", (int)r->key_version),
	    "plaintext", pt, ctl - SEAL_TAG_LEN);
out:
	kw_secfree(pt);
	kw_secfree(dek);
	free(payload_aad);
	kwd_keyop_clear(&k);
}
