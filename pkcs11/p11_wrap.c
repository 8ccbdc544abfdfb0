/*
 * p11_wrap.c - wrapping data keys under a vault's master key, in one of
 * three ways (see README.md for the blob format):
 *
 *   AES-GCM    C_Encrypt/C_Decrypt of the DEK, 12-byte IV, 128-bit tag;
 *   AES-KWP    C_WrapKey/C_UnwrapKey (RFC 5649) of DEK || SHA-256(AD) held
 *              as an extractable session object that is destroyed at once;
 *   ECB+HMAC   for tokens (and remoting layers) with neither: a CTR key
 *              stream made by CKM_AES_ECB under the master key, then
 *              HMAC-SHA256 by the companion key "<label>/mac" over the blob
 *              and the AD (encrypt-then-MAC, compared in constant time).
 *
 * AD, the data every blob authenticates, is
 *   header(8) || len(vault)(1) || vault || caller's AAD.
 *
 * A blob that does not authenticate is KW_E_AUTH; a token that cannot
 * decrypt is its own error.  Where the token's answer could mean either,
 * a canary decides (see "A bad blob, or a token at fault" below).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "p11_int.h"

#define FMT_V1 1
#define HDR_LEN 8
#define GCM_IV 12
#define GCM_TAG 16
#define CTR_NONCE 12
#define HMAC_LEN 32
#define DIGEST_LEN 32
#define SCRATCH 160             /* secure scratch for plaintext material */
#define AD_STACK 512
/* Tokens differ on unwrapping RFC 5649 padding of odd lengths, so the
 * plaintext is DEK || zeros to a multiple of 8 || SHA-256(AD). */
#define KWP_PAD(n) ((((n) + 7) / 8) * 8)

struct wrap_arg {
	const char *vault;
	unsigned version;
	enum p11_wrap_mech mech;
	const uint8_t *dek;     /* wrap: in;  unwrap: out (P11_DEK_MAX) */
	uint8_t *dekout;
	size_t deklen;
	const uint8_t *aad;
	size_t aadlen;
	uint8_t *blob;          /* wrap: out; unwrap: in */
	size_t bloblen;
	uint8_t *scratch;       /* SCRATCH bytes of kw_secalloc memory */
	int canary;             /* this is the canary itself (canary_judge) */
	int again;              /* the canary opened: this is the blob's one
	                         * more try (canary_judge) */
};

static int canary_judge(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const char *fn, CK_RV rv);

/* The answers that PKCS#11 gives for a failed call in general, and some
 * tokens (SoftHSM) also for a tag or an RFC 5649 check that fails. */
static int
rv_ambiguous(CK_RV rv)
{
	return rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED;
}

static size_t
blob_len(enum p11_wrap_mech m, size_t deklen)
{
	switch (m) {
	case P11_WRAP_AES_GCM:
		return HDR_LEN + GCM_IV + deklen + GCM_TAG;
	case P11_WRAP_AES_KWP:
		return HDR_LEN + KWP_PAD(deklen) + DIGEST_LEN + 8;
	case P11_WRAP_ECB_HMAC:
		return HDR_LEN + CTR_NONCE + deklen + HMAC_LEN;
	default:
		return 0;
	}
}

static void
hdr_put(uint8_t *h, enum p11_wrap_mech m, unsigned version, size_t deklen)
{
	h[0] = FMT_V1;
	h[1] = (uint8_t)m;
	h[2] = (uint8_t)(version >> 24);
	h[3] = (uint8_t)(version >> 16);
	h[4] = (uint8_t)(version >> 8);
	h[5] = (uint8_t)version;
	h[6] = (uint8_t)deklen;
	h[7] = 0;
}

int
p11_blob_info(const uint8_t *blob, size_t bloblen, unsigned *version,
    enum p11_wrap_mech *mech)
{
	unsigned v;
	size_t deklen;

	if (blob == NULL || bloblen < HDR_LEN)
		return kw_fail(KW_E_FORMAT, "wrapped key of %zu bytes is too short "
		    "to be one", bloblen);
	if (blob[0] != FMT_V1 || blob[7] != 0)
		return kw_fail(KW_E_FORMAT, "wrapped key has format %u, this "
		    "keywarden reads format %d", blob[0], FMT_V1);
	if (blob[1] < P11_WRAP_AES_GCM || blob[1] > P11_WRAP_ECB_HMAC)
		return kw_fail(KW_E_FORMAT, "wrapped key names unknown mechanism "
		    "%u", blob[1]);
	v = (unsigned)blob[2] << 24 | (unsigned)blob[3] << 16 |
	    (unsigned)blob[4] << 8 | blob[5];
	deklen = blob[6];
	if (v == 0 || deklen == 0 || deklen > P11_DEK_MAX ||
	    blob_len((enum p11_wrap_mech)blob[1], deklen) != bloblen)
		return kw_fail(KW_E_FORMAT, "wrapped key header is inconsistent "
		    "(version %u, key of %zu bytes, blob of %zu bytes)", v, deklen,
		    bloblen);
	if (version != NULL)
		*version = v;
	if (mech != NULL)
		*mech = (enum p11_wrap_mech)blob[1];
	return 0;
}

/* pre || len(vault) || vault || aad, in stack when it fits, else in a
 * malloc'd buffer (returned; the caller frees it when != stack). */
static uint8_t *
ad_build(uint8_t *stack, const uint8_t *pre, size_t prelen, const char *vault,
    const uint8_t *aad, size_t aadlen, size_t *outlen)
{
	size_t vl = strlen(vault), n = prelen + 1 + vl + aadlen;
	uint8_t *b = stack;

	if (n > AD_STACK && (b = malloc(n)) == NULL)
		return NULL;
	memcpy(b, pre, prelen);
	b[prelen] = (uint8_t)vl;
	memcpy(b + prelen + 1, vault, vl);
	if (aadlen > 0)
		memcpy(b + prelen + 1 + vl, aad, aadlen);
	*outlen = n;
	return b;
}

static int
mech_check(p11_ctx *ctx, enum p11_wrap_mech m)
{
	if ((m == P11_WRAP_AES_GCM && !ctx->has_gcm) ||
	    (m == P11_WRAP_AES_KWP && !ctx->has_kwp) ||
	    (m == P11_WRAP_ECB_HMAC && (!ctx->has_ecb || !ctx->has_hmac)))
		return kw_fail(KW_E_MECHANISM, "C_GetMechanismInfo: token '%s' "
		    "cannot do %s, which this wrapped key needs: use the token "
		    "that wrapped it", TOKNAME(ctx), p11_wrap_mech_name(m));
	return 0;
}

/* ---- AES-GCM ------------------------------------------------------------ */

static int
gcm_wrap(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const uint8_t *ad, size_t adlen)
{
	uint8_t *iv = a->blob + HDR_LEN;
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_ULONG n = a->deklen + GCM_TAG;
	CK_RV rv;

	int r;

	if ((r = p11_sess_nonce(ctx, s, iv, GCM_IV)) != 0)
		return r;
	memset(&gp, 0, sizeof(gp));
	gp.pIv = iv;
	gp.ulIvLen = GCM_IV;
	gp.ulIvBits = GCM_IV * 8;
	gp.pAAD = (CK_BYTE_PTR)ad;
	gp.ulAADLen = adlen;
	gp.ulTagBits = GCM_TAG * 8;
	if ((rv = ctx->f->C_EncryptInit(s->h, &m, key)) != CKR_OK)
		return p11_sfail(s, "C_EncryptInit", rv, "cannot start AES-GCM "
		    "under the master key of vault '%s' in token '%s'", a->vault,
		    TOKNAME(ctx));
	if ((rv = ctx->f->C_Encrypt(s->h, (CK_BYTE_PTR)a->dek, a->deklen,
	    iv + GCM_IV, &n)) != CKR_OK)
		return p11_sfail(s, "C_Encrypt", rv, "AES-GCM wrap under vault "
		    "'%s' failed in token '%s'", a->vault, TOKNAME(ctx));
	if (n != a->deklen + GCM_TAG)
		return kw_fail(KW_E_P11, "C_Encrypt: CKR_OK: token '%s' gave %lu "
		    "bytes of AES-GCM, not %zu", TOKNAME(ctx), (unsigned long)n,
		    a->deklen + GCM_TAG);
	return 0;
}

static int
gcm_unwrap(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const uint8_t *ad, size_t adlen)
{
	uint8_t *iv = a->blob + HDR_LEN;
	CK_GCM_PARAMS gp;
	CK_MECHANISM m = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_ULONG n = SCRATCH;
	CK_RV rv;
	int r;

	memset(&gp, 0, sizeof(gp));
	gp.pIv = iv;
	gp.ulIvLen = GCM_IV;
	gp.ulIvBits = GCM_IV * 8;
	gp.pAAD = (CK_BYTE_PTR)ad;
	gp.ulAADLen = adlen;
	gp.ulTagBits = GCM_TAG * 8;
	if ((rv = ctx->f->C_DecryptInit(s->h, &m, key)) != CKR_OK)
		return p11_sfail(s, "C_DecryptInit", rv, "cannot start AES-GCM "
		    "under the master key of vault '%s' in token '%s'", a->vault,
		    TOKNAME(ctx));
	rv = ctx->f->C_Decrypt(s->h, iv + GCM_IV, a->deklen + GCM_TAG,
	    a->scratch, &n);
	if (rv_ambiguous(rv) && !a->again) {
		if ((r = canary_judge(ctx, s, a, key, "C_Decrypt", rv)) != 0)
			return r;       /* the token is at fault, not the blob */
		a->again = 1;
		return gcm_unwrap(ctx, s, a, key, ad, adlen);
	}
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv_ambiguous(rv) ||
	    rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
		return kw_fail(KW_E_AUTH, "C_Decrypt: %s: the wrapped key does not "
		    "authenticate under vault '%s' master key v%u: it was changed, "
		    "or belongs to another record or vault", p11_rv_name(rv),
		    a->vault, a->version);
	if (rv != CKR_OK)
		return p11_sfail(s, "C_Decrypt", rv, "AES-GCM unwrap under vault "
		    "'%s' failed in token '%s'", a->vault, TOKNAME(ctx));
	if (n != a->deklen)
		return kw_fail(KW_E_AUTH, "C_Decrypt: CKR_OK: unwrapped %lu bytes, "
		    "expected %zu", (unsigned long)n, a->deklen);
	memcpy(a->dekout, a->scratch, n);
	return 0;
}

/* ---- AES key wrap with padding -------------------------------------------- */

static int
kwp_wrap(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const uint8_t *ad, size_t adlen)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &gen, sizeof(gen) },
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
		{ CKA_VALUE, a->scratch, KWP_PAD(a->deklen) + DIGEST_LEN },
	};
	CK_OBJECT_HANDLE tmp = CK_INVALID_HANDLE;
	CK_ULONG n = P11_WRAPPED_MAX - HDR_LEN;
	size_t want = blob_len(P11_WRAP_AES_KWP, a->deklen) - HDR_LEN;
	CK_RV rv;
	int r = KW_E_INTERNAL;

	memcpy(a->scratch, a->dek, a->deklen);
	memset(a->scratch + a->deklen, 0, KWP_PAD(a->deklen) - a->deklen);
	SHA256(ad, adlen, a->scratch + KWP_PAD(a->deklen));
	rv = ctx->f->C_CreateObject(s->h, t, sizeof(t) / sizeof(t[0]), &tmp);
	if (rv != CKR_OK) {
		r = p11_sfail(s, "C_CreateObject", rv, "cannot hold the data key "
		    "as a session object in token '%s' for AES-KWP", TOKNAME(ctx));
		goto out;
	}
	rv = ctx->f->C_WrapKey(s->h, &m, key, tmp, a->blob + HDR_LEN, &n);
	if (rv != CKR_OK) {
		r = p11_sfail(s, "C_WrapKey", rv, "AES-KWP wrap under vault '%s' "
		    "failed in token '%s'", a->vault, TOKNAME(ctx));
		goto out;
	}
	if (n != want) {
		r = kw_fail(KW_E_P11, "C_WrapKey: CKR_OK: token '%s' gave %lu "
		    "bytes of AES-KWP, not %zu", TOKNAME(ctx), (unsigned long)n,
		    want);
		goto out;
	}
	r = 0;
out:
	if (tmp != CK_INVALID_HANDLE)
		ctx->f->C_DestroyObject(s->h, tmp);
	return r;
}

static int
kwp_unwrap(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const uint8_t *ad, size_t adlen)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &gen, sizeof(gen) },
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
	};
	CK_ATTRIBUTE v = { CKA_VALUE, a->scratch, SCRATCH - DIGEST_LEN };
	uint8_t *digest = a->scratch + SCRATCH - DIGEST_LEN, pad;
	CK_OBJECT_HANDLE tmp = CK_INVALID_HANDLE;
	size_t i;
	CK_RV rv;
	int r = KW_E_INTERNAL;

	rv = ctx->f->C_UnwrapKey(s->h, &m, key, a->blob + HDR_LEN,
	    a->bloblen - HDR_LEN, t, sizeof(t) / sizeof(t[0]), &tmp);
	if (rv != CKR_OK)
		tmp = CK_INVALID_HANDLE;
	if (rv_ambiguous(rv) && !a->again) {
		if ((r = canary_judge(ctx, s, a, key, "C_UnwrapKey", rv)) != 0)
			goto out;       /* the token is at fault, not the blob */
		a->again = 1;
		r = kwp_unwrap(ctx, s, a, key, ad, adlen);
		goto out;
	}
	if (rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_WRAPPED_KEY_LEN_RANGE ||
	    rv == CKR_ENCRYPTED_DATA_INVALID || rv_ambiguous(rv)) {
		r = kw_fail(KW_E_AUTH, "C_UnwrapKey: %s: the wrapped key does not "
		    "authenticate under vault '%s' master key v%u: it was changed "
		    "or belongs to another vault", p11_rv_name(rv), a->vault,
		    a->version);
		goto out;
	}
	if (rv != CKR_OK) {
		r = p11_sfail(s, "C_UnwrapKey", rv, "AES-KWP unwrap under vault "
		    "'%s' failed in token '%s'", a->vault, TOKNAME(ctx));
		goto out;
	}
	if ((rv = ctx->f->C_GetAttributeValue(s->h, tmp, &v, 1)) != CKR_OK) {
		r = p11_sfail(s, "C_GetAttributeValue", rv, "cannot read the "
		    "unwrapped data key from token '%s'", TOKNAME(ctx));
		goto out;
	}
	SHA256(ad, adlen, digest);
	for (i = a->deklen, pad = 0; i < KWP_PAD(a->deklen); i++)
		pad |= a->scratch[i];
	if (v.ulValueLen != KWP_PAD(a->deklen) + DIGEST_LEN || pad != 0 ||
	    kw_memeq_ct(a->scratch + KWP_PAD(a->deklen), digest,
	    DIGEST_LEN) != 0) {
		r = kw_fail(KW_E_AUTH, "C_UnwrapKey: CKR_OK: the AAD bound into "
		    "the wrapped key differs: it belongs to another record or "
		    "vault, or its header was changed");
		goto out;
	}
	memcpy(a->dekout, a->scratch, a->deklen);
	r = 0;
out:
	if (tmp != CK_INVALID_HANDLE)
		ctx->f->C_DestroyObject(s->h, tmp);
	return r;
}

/* ---- CTR from AES-ECB, then HMAC-SHA256 ------------------------------------ */

/* XOR a->deklen bytes of key stream (ECB of nonce || counter) into out. */
static int
ctr_xor(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const uint8_t *nonce, const uint8_t *in,
    uint8_t *out)
{
	CK_MECHANISM m = { CKM_AES_ECB, NULL, 0 };
	size_t nb = (a->deklen + 15) / 16, i;
	uint8_t *ctr = a->scratch, *ks = a->scratch + 64;
	CK_ULONG n = nb * 16;
	CK_RV rv;

	for (i = 0; i < nb; i++) {
		memcpy(ctr + 16 * i, nonce, CTR_NONCE);
		memset(ctr + 16 * i + CTR_NONCE, 0, 3);
		ctr[16 * i + 15] = (uint8_t)i;
	}
	if ((rv = ctx->f->C_EncryptInit(s->h, &m, key)) != CKR_OK)
		return p11_sfail(s, "C_EncryptInit", rv, "cannot start AES-ECB "
		    "under the master key of vault '%s' in token '%s'", a->vault,
		    TOKNAME(ctx));
	if ((rv = ctx->f->C_Encrypt(s->h, ctr, nb * 16, ks, &n)) != CKR_OK)
		return p11_sfail(s, "C_Encrypt", rv, "AES-ECB under vault '%s' "
		    "failed in token '%s'", a->vault, TOKNAME(ctx));
	if (n != nb * 16)
		return kw_fail(KW_E_P11, "C_Encrypt: CKR_OK: token '%s' gave %lu "
		    "bytes of AES-ECB, not %zu", TOKNAME(ctx), (unsigned long)n,
		    nb * 16);
	for (i = 0; i < a->deklen; i++)
		out[i] = in[i] ^ ks[i];
	return 0;
}

static int
hmac_sign(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE mac, const uint8_t *data, size_t len, uint8_t *out)
{
	CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
	CK_ULONG n = HMAC_LEN;
	CK_RV rv;

	if ((rv = ctx->f->C_SignInit(s->h, &m, mac)) != CKR_OK)
		return p11_sfail(s, "C_SignInit", rv, "cannot start HMAC-SHA256 by "
		    "the companion key of vault '%s' in token '%s'", a->vault,
		    TOKNAME(ctx));
	if ((rv = ctx->f->C_Sign(s->h, (CK_BYTE_PTR)data, len, out, &n)) != CKR_OK)
		return p11_sfail(s, "C_Sign", rv, "HMAC-SHA256 under vault '%s' "
		    "failed in token '%s'", a->vault, TOKNAME(ctx));
	if (n != HMAC_LEN)
		return kw_fail(KW_E_P11, "C_Sign: CKR_OK: token '%s' gave a %lu-byte "
		    "HMAC-SHA256", TOKNAME(ctx), (unsigned long)n);
	return 0;
}

static int
mac_missing(p11_ctx *ctx, struct wrap_arg *a)
{
	return kw_fail(KW_E_KEY_NOT_FOUND, "vault '%s' master key v%u has no "
	    "companion HMAC key 'keywarden/%s/v%u/mac' in token '%s', which "
	    "the ECB+HMAC wrap needs", a->vault, a->version, a->vault,
	    a->version, TOKNAME(ctx));
}

/* AES-GCM or AES-KWP (a->mech): wrap a->dek into a->blob, whose header is
 * written, or unwrap a->blob into a->dekout, binding the AD. */
static int
aead_run(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, int wrap)
{
	uint8_t adstack[AD_STACK], *ad;
	size_t adlen = 0;
	int r;

	if ((ad = ad_build(adstack, a->blob, HDR_LEN, a->vault, a->aad,
	    a->aadlen, &adlen)) == NULL)
		return -ENOMEM;
	if (a->mech == P11_WRAP_AES_GCM)
		r = wrap ? gcm_wrap(ctx, s, a, key, ad, adlen) :
		    gcm_unwrap(ctx, s, a, key, ad, adlen);
	else
		r = wrap ? kwp_wrap(ctx, s, a, key, ad, adlen) :
		    kwp_unwrap(ctx, s, a, key, ad, adlen);
	if (ad != adstack)
		free(ad);
	return r;
}

/* ---- a bad blob, or a token at fault -------------------------------------- */

/*
 * PKCS#11 answers ciphertext that does not authenticate with
 * CKR_ENCRYPTED_DATA_INVALID (C_Decrypt) or CKR_WRAPPED_KEY_INVALID
 * (C_UnwrapKey): KW_E_AUTH.  Some tokens answer it with CKR_GENERAL_ERROR
 * or CKR_FUNCTION_FAILED instead (SoftHSM does, for a bad AES-GCM tag),
 * which is also what any token answers when it fails.  Taken for
 * tampering, a token fault would raise an integrity alarm and make a
 * rotation leave good records behind; taken for a fault, tampering would
 * pass for an outage.  So after one of those two answers the token is
 * asked to open a canary: a blob it wrapped itself under the same key, by
 * the same mechanism (made when first needed, then kept with the key's
 * cached handle).  If the canary opens, the token decrypts under that key
 * and the blob is at fault, unless the token's fault cleared just before
 * the canary's turn: so the blob is tried once more, and only a second
 * failure is KW_E_AUTH.  If the canary does not open, the token is at
 * fault: its error (KW_E_P11, which the daemon answers 503 and a rotation
 * retries), or, when the canary's own failure is one a reopen may cure,
 * that failure, so that the pool reopens and tries the blob again.
 */
#define CANARY_DEK 32
#define CANARY_AAD "keywarden/canary"

/* Make a canary in c->blob: a random key wrapped under key by c->mech. */
static int
canary_make(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *c,
    CK_OBJECT_HANDLE key, uint8_t *dek)
{
	int r;

	if ((r = p11_sess_rng(ctx, s, dek, CANARY_DEK)) != 0)
		return r;
	c->dek = dek;
	hdr_put(c->blob, c->mech, c->version, c->deklen);
	r = aead_run(ctx, s, c, key, 1);
	kw_wipe(dek, CANARY_DEK);
	return r;
}

/* fn failed with rv, an ambiguous answer, for a's blob under key: 0 when
 * the token still opens its canary (the blob is at fault), else the
 * token's failure. */
static int
canary_judge(p11_ctx *ctx, struct p11_sess *s, struct wrap_arg *a,
    CK_OBJECT_HANDLE key, const char *fn, CK_RV rv)
{
	struct wrap_arg c;
	uint8_t blob[P11_WRAPPED_MAX];
	size_t len = 0;
	int r, made = 0;

	if (a->canary)
		return p11_sfail(s, fn, rv, "the canary under vault '%s' master "
		    "key v%u did not open in token '%s'", a->vault, a->version,
		    TOKNAME(ctx));
	memset(&c, 0, sizeof(c));
	c.vault = a->vault;
	c.version = a->version;
	c.mech = a->mech;
	c.deklen = CANARY_DEK;
	c.aad = (const uint8_t *)CANARY_AAD;
	c.aadlen = sizeof(CANARY_AAD) - 1;
	c.blob = blob;
	c.bloblen = blob_len(c.mech, CANARY_DEK);
	c.scratch = a->scratch;
	c.dekout = a->dekout;   /* a's unwrap failed: nothing of it is there */
	c.canary = 1;
	if (!p11_canary_get(ctx, a->vault, a->version, a->mech, blob, &len)) {
		if ((r = canary_make(ctx, s, &c, key, a->dekout)) != 0)
			return r;
		made = 1;
	} else if (len != c.bloblen) {
		return kw_fail(KW_E_INTERNAL, "the canary under vault '%s' master "
		    "key v%u has %zu bytes, not %zu", a->vault, a->version, len,
		    c.bloblen);
	}
	r = aead_run(ctx, s, &c, key, 0);
	kw_wipe(a->dekout, P11_DEK_MAX);
	if (r != 0) {
		if (p11_rv_retryable(s->rv))
			return r;
		return p11_sfail(s, fn, rv, "vault '%s' master key v%u: token "
		    "'%s' opens neither this wrapped key nor a canary it wrapped "
		    "itself under that key: the token is at fault, not the "
		    "record", a->vault, a->version, TOKNAME(ctx));
	}
	if (made)
		p11_canary_put(ctx, a->vault, a->version, a->mech, blob, c.bloblen);
	kw_errclear();
	return 0;
}

/* ---- the operations ------------------------------------------------------- */

static int
op_wrap(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct wrap_arg *a = arg;
	CK_OBJECT_HANDLE key, mac;
	uint8_t adstack[AD_STACK], *ad = NULL, *nonce, *ct;
	size_t adlen = 0, body;
	int r;

	if ((r = p11_key_get(ctx, s, a->vault, a->version, &key, &mac)) != 0)
		return r;
	hdr_put(a->blob, a->mech, a->version, a->deklen);
	switch (a->mech) {
	case P11_WRAP_AES_GCM:
	case P11_WRAP_AES_KWP:
		r = aead_run(ctx, s, a, key, 1);
		break;
	case P11_WRAP_ECB_HMAC:
		if (mac == CK_INVALID_HANDLE) {
			r = mac_missing(ctx, a);
			goto out;
		}
		nonce = a->blob + HDR_LEN;
		ct = nonce + CTR_NONCE;
		body = HDR_LEN + CTR_NONCE + a->deklen;
		if ((r = p11_sess_nonce(ctx, s, nonce, CTR_NONCE)) != 0)
			goto out;
		if ((r = ctr_xor(ctx, s, a, key, nonce, a->dek, ct)) != 0)
			goto out;
		if ((ad = ad_build(adstack, a->blob, body, a->vault, a->aad,
		    a->aadlen, &adlen)) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		r = hmac_sign(ctx, s, a, mac, ad, adlen, a->blob + body);
		break;
	default:
		r = kw_fail(KW_E_INTERNAL, "no wrap mechanism chosen");
		break;
	}
out:
	if (ad != NULL && ad != adstack)
		free(ad);
	return r;
}

static int
op_unwrap(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct wrap_arg *a = arg;
	CK_OBJECT_HANDLE key, mac;
	uint8_t adstack[AD_STACK], *ad = NULL, want[HMAC_LEN];
	size_t adlen = 0, body;
	int r;

	if ((r = p11_key_get(ctx, s, a->vault, a->version, &key, &mac)) != 0)
		return r;
	a->again = 0;           /* the pool may run an op again after a reopen */
	switch (a->mech) {
	case P11_WRAP_AES_GCM:
	case P11_WRAP_AES_KWP:
		r = aead_run(ctx, s, a, key, 0);
		break;
	case P11_WRAP_ECB_HMAC:
		if (mac == CK_INVALID_HANDLE) {
			r = mac_missing(ctx, a);
			goto out;
		}
		body = HDR_LEN + CTR_NONCE + a->deklen;
		if ((ad = ad_build(adstack, a->blob, body, a->vault, a->aad,
		    a->aadlen, &adlen)) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		if ((r = hmac_sign(ctx, s, a, mac, ad, adlen, want)) != 0)
			goto out;
		if (kw_memeq_ct(want, a->blob + body, HMAC_LEN) != 0) {
			r = kw_fail(KW_E_AUTH, "the HMAC of the wrapped key does not "
			    "match under vault '%s' master key v%u: it was changed, "
			    "or belongs to another record or vault", a->vault,
			    a->version);
			goto out;
		}
		r = ctr_xor(ctx, s, a, key, a->blob + HDR_LEN,
		    a->blob + HDR_LEN + CTR_NONCE, a->dekout);
		break;
	default:
		r = kw_fail(KW_E_INTERNAL, "unknown wrap mechanism");
		break;
	}
out:
	if (ad != NULL && ad != adstack)
		free(ad);
	return r;
}

int
p11_wrap(p11_ctx *ctx, const char *vault, unsigned version,
    const uint8_t *dek, size_t deklen, const void *aad, size_t aadlen,
    uint8_t *out, size_t *outlen)
{
	struct wrap_arg a;
	uint8_t blob[P11_WRAPPED_MAX];
	int r;

	if (ctx == NULL)
		return kw_fail(KW_E_INTERNAL, "PKCS#11 layer used before p11_open");
	/* A valid name and version always make a label that fits. */
	if ((r = p11_name_check("vault", vault, P11_VAULT_MAX)) != 0)
		return r;
	if (version == 0)
		return kw_fail(-EINVAL, "master-key versions start at 1");
	if (dek == NULL || deklen == 0 || deklen > P11_DEK_MAX)
		return kw_fail(-EINVAL, "a data key must be 1 to %d bytes, not %zu",
		    P11_DEK_MAX, deklen);
	if (aad == NULL && aadlen > 0)
		return kw_fail(-EINVAL, "AAD of %zu bytes given as NULL", aadlen);
	memset(&a, 0, sizeof(a));
	a.vault = vault;
	a.version = version;
	a.mech = ctx->wrap;
	a.dek = dek;
	a.deklen = deklen;
	a.aad = aad;
	a.aadlen = aadlen;
	a.blob = blob;
	a.bloblen = blob_len(a.mech, deklen);
	if ((a.scratch = kw_secalloc(SCRATCH)) == NULL)
		return -ENOMEM;
	r = p11_run(ctx, op_wrap, &a);
	kw_secfree(a.scratch);
	if (r != 0)
		return r;
	memcpy(out, blob, a.bloblen);
	*outlen = a.bloblen;
	return 0;
}

int
p11_unwrap(p11_ctx *ctx, const char *vault, const uint8_t *blob,
    size_t bloblen, const void *aad, size_t aadlen, uint8_t *dek,
    size_t *deklen)
{
	struct wrap_arg a;
	uint8_t *out = NULL;
	int r;

	if (ctx == NULL)
		return kw_fail(KW_E_INTERNAL, "PKCS#11 layer used before p11_open");
	if (aad == NULL && aadlen > 0)
		return kw_fail(-EINVAL, "AAD of %zu bytes given as NULL", aadlen);
	memset(&a, 0, sizeof(a));
	if ((r = p11_blob_info(blob, bloblen, &a.version, &a.mech)) != 0)
		return r;
	if ((r = p11_name_check("vault", vault, P11_VAULT_MAX)) != 0 ||
	    (r = mech_check(ctx, a.mech)) != 0)
		return r;
	a.vault = vault;
	a.deklen = blob[6];
	a.aad = aad;
	a.aadlen = aadlen;
	a.blob = (uint8_t *)blob;
	a.bloblen = bloblen;
	if ((a.scratch = kw_secalloc(SCRATCH + P11_DEK_MAX)) == NULL)
		return -ENOMEM;
	out = a.scratch + SCRATCH;
	a.dekout = out;
	if ((r = p11_run(ctx, op_unwrap, &a)) == 0) {
		memcpy(dek, out, a.deklen);
		*deklen = a.deklen;
	}
	kw_secfree(a.scratch);
	return r;
}
