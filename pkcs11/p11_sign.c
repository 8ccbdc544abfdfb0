/*
 * p11_sign.c - the signing key pairs of a vault,
 * "keywarden/<vault>/sign/<name>/v<N>": generated in the token (EC P-256
 * or RSA-3072), listed, exported as a DER SubjectPublicKeyInfo that OpenSSL
 * builds from the public object's attributes, used for ES256, RS256 and
 * PS256 over a digest the caller computed, destroyed.
 *
 * Handles are not cached: every call finds its object by label on the
 * session it holds, so a destroy (by this process or another) is seen at
 * once and no handle outlives a reopen.  The module is called directly
 * through the pool (not through libp11), so it stays loaded once, with
 * one login, per process.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "kw_error.h"
#include "kw_grow.h"
#include "p11_int.h"

#define LABEL_LEN sizeof(((struct p11_skey *)0)->label)
#define RSA_BITS 3072
#define RSA_BYTES (RSA_BITS / 8)
#define DIGEST_LEN 32
#define ES256_LEN 64
#define EC_POINT_MAX 80         /* 65-byte point, DER-wrapped or not */
#define RSA_EXP_MAX 16

/* CKA_EC_PARAMS of P-256: the DER of OID 1.2.840.10045.3.1.7. */
static const uint8_t p256_oid[] = {
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
};

/* DER DigestInfo of SHA-256 up to the digest itself (RFC 8017, 9.2). */
static const uint8_t sha256_info[] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
	0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

static const uint8_t f4[] = { 0x01, 0x00, 0x01 };      /* 65537 */

/* ---- names ---------------------------------------------------------------- */

const char *
p11_skey_type_name(enum p11_skey_type t)
{
	switch (t) {
	case P11_SKEY_EC_P256:
		return "ec-p256";
	case P11_SKEY_RSA_3072:
		return "rsa-3072";
	}
	return "(unknown)";
}

int
p11_skey_type_parse(const char *s, enum p11_skey_type *out)
{
	if (s != NULL && strcmp(s, "ec-p256") == 0)
		*out = P11_SKEY_EC_P256;
	else if (s != NULL && strcmp(s, "rsa-3072") == 0)
		*out = P11_SKEY_RSA_3072;
	else
		return kw_fail(-EINVAL, "signing key type must be \"ec-p256\" or "
		    "\"rsa-3072\"");
	return 0;
}

const char *
p11_sig_alg_name(enum p11_sig_alg a)
{
	switch (a) {
	case P11_SIG_ES256:
		return "ES256";
	case P11_SIG_RS256:
		return "RS256";
	case P11_SIG_PS256:
		return "PS256";
	}
	return "(unknown)";
}

int
p11_sig_alg_parse(const char *s, enum p11_sig_alg *out)
{
	if (s != NULL && strcmp(s, "ES256") == 0)
		*out = P11_SIG_ES256;
	else if (s != NULL && strcmp(s, "RS256") == 0)
		*out = P11_SIG_RS256;
	else if (s != NULL && strcmp(s, "PS256") == 0)
		*out = P11_SIG_PS256;
	else
		return kw_fail(-EINVAL, "signature algorithm must be ES256, RS256 "
		    "or PS256");
	return 0;
}

int
p11_sig_alg_check(enum p11_skey_type t, enum p11_sig_alg a)
{
	if (t == P11_SKEY_EC_P256 && a == P11_SIG_ES256)
		return 0;
	if (t == P11_SKEY_RSA_3072 && (a == P11_SIG_RS256 || a == P11_SIG_PS256))
		return 0;
	return kw_fail(-EINVAL, "%s does not fit a %s signing key: use %s",
	    p11_sig_alg_name(a), p11_skey_type_name(t),
	    t == P11_SKEY_EC_P256 ? "ES256" : "RS256 or PS256");
}

static int
label_make(char *buf, size_t len, const char *vault, const char *name,
    unsigned version)
{
	int n, r;

	if ((r = p11_name_check("vault", vault, P11_VAULT_MAX)) != 0 ||
	    (r = p11_name_check("signing key", name, P11_SKEY_NAME_MAX)) != 0)
		return r;
	if (version == 0)
		return kw_fail(-EINVAL, "signing-key versions start at 1");
	n = snprintf(buf, len, "keywarden/%s/sign/%s/v%u", vault, name, version);
	if (n < 0 || (size_t)n >= len)
		return kw_fail(KW_E_INTERNAL, "signing-key label too long");
	return 0;
}

/* "<prefix><name>/v<N>" exactly (prefix "keywarden/<vault>/sign/"): N, and
 * the name into name; 0 when label is not one of ours. */
static unsigned
label_parse(const char *label, const char *prefix,
    char name[P11_SKEY_NAME_MAX + 1])
{
	size_t pl = strlen(prefix), nl;
	const char *p, *slash;
	unsigned long v = 0;

	if (strncmp(label, prefix, pl) != 0 ||
	    (slash = strchr(label + pl, '/')) == NULL)
		return 0;
	nl = (size_t)(slash - (label + pl));
	if (nl == 0 || nl > P11_SKEY_NAME_MAX)
		return 0;
	for (p = label + pl; p < slash; p++)
		if (!p11_name_byte_ok(*p))
			return 0;
	p = slash + 1;
	if (*p++ != 'v' || *p < '1' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (unsigned long)(*p - '0')) > 0xffffffffUL)
			return 0;
	if (*p != '\0')
		return 0;
	memcpy(name, label + pl, nl);
	name[nl] = '\0';
	return (unsigned)v;
}

/* ---- token objects ---------------------------------------------------------- */

static void
attr_add(CK_ATTRIBUTE *t, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *p,
    CK_ULONG len)
{
	t[*n].type = type;
	t[*n].pValue = (void *)p;
	t[*n].ulValueLen = len;
	(*n)++;
}

/* The type of a key object, which must be P-256 or a 3072-bit modulus.
 * KW_E_FORMAT for anything else carrying our label. */
static int
pair_type(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h,
    const char *label, enum p11_skey_type *out)
{
	CK_KEY_TYPE kt;
	uint8_t params[32];
	CK_ATTRIBUTE a = { CKA_KEY_TYPE, &kt, sizeof(kt) };
	CK_ATTRIBUTE ep = { CKA_EC_PARAMS, params, sizeof(params) };
	CK_ATTRIBUTE mod = { CKA_MODULUS, NULL, 0 };
	CK_RV rv;

	if ((rv = ctx->f->C_GetAttributeValue(s->h, h, &a, 1)) != CKR_OK)
		return p11_sfail(s, "C_GetAttributeValue", rv, "cannot read the "
		    "key type of '%s' in token '%s'", label, TOKNAME(ctx));
	if (kt == CKK_EC) {
		rv = ctx->f->C_GetAttributeValue(s->h, h, &ep, 1);
		if (rv != CKR_OK && p11_rv_retryable(rv))
			return p11_sfail(s, "C_GetAttributeValue", rv, "cannot read "
			    "the curve of '%s' in token '%s'", label, TOKNAME(ctx));
		if (rv == CKR_OK && ep.ulValueLen == sizeof(p256_oid) &&
		    memcmp(params, p256_oid, sizeof(p256_oid)) == 0) {
			*out = P11_SKEY_EC_P256;
			return 0;
		}
	} else if (kt == CKK_RSA) {
		rv = ctx->f->C_GetAttributeValue(s->h, h, &mod, 1);
		if (rv != CKR_OK && p11_rv_retryable(rv))
			return p11_sfail(s, "C_GetAttributeValue", rv, "cannot read "
			    "the modulus length of '%s' in token '%s'", label,
			    TOKNAME(ctx));
		if (rv == CKR_OK && mod.ulValueLen == RSA_BYTES) {
			*out = P11_SKEY_RSA_3072;
			return 0;
		}
	}
	return kw_fail(KW_E_FORMAT, "'%s' in token '%s' is neither an EC P-256 "
	    "nor an RSA-3072 key: it was not made by keywarden", label,
	    TOKNAME(ctx));
}

/* Find the object of class cls labelled label, naming the key in the
 * detail when it is absent. */
static int
find(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_CLASS cls, const char *label,
    CK_OBJECT_HANDLE *out)
{
	int r;

	r = p11_find_one(ctx, s, cls, label, out);
	if (r == KW_E_KEY_NOT_FOUND)
		r = kw_fail(r, "no signing key '%s' (%s) in token '%s'", label,
		    cls == CKO_PRIVATE_KEY ? "private key" : "public key",
		    TOKNAME(ctx));
	return r;
}

/* ---- create --------------------------------------------------------------- */

struct create_arg {
	const char *label;
	enum p11_skey_type type;
	uint8_t id[P11_ID_LEN];
};

static int
op_skey_create(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct create_arg *a = arg;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = RSA_BITS, np = 0, nk = 0;
	CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_ATTRIBUTE pt[12], kt[16];
	CK_OBJECT_HANDLE pub, priv;
	CK_RV rv;
	int r;

	r = p11_find_one(ctx, s, CKO_PRIVATE_KEY, a->label, &priv);
	if (r == KW_E_KEY_NOT_FOUND)
		r = p11_find_one(ctx, s, CKO_PUBLIC_KEY, a->label, &pub);
	if (r == 0)
		return kw_fail(KW_E_KEY_EXISTS, "signing key '%s' already exists "
		    "in token '%s'", a->label, TOKNAME(ctx));
	if (r != KW_E_KEY_NOT_FOUND)
		return r;
	if ((r = p11_sess_rng(ctx, s, a->id, sizeof(a->id))) != 0)
		return r;

	attr_add(pt, &np, CKA_TOKEN, &yes, sizeof(yes));
	attr_add(pt, &np, CKA_PRIVATE, &no, sizeof(no));
	attr_add(pt, &np, CKA_VERIFY, &yes, sizeof(yes));
	attr_add(pt, &np, CKA_ENCRYPT, &no, sizeof(no));
	attr_add(pt, &np, CKA_WRAP, &no, sizeof(no));
	attr_add(pt, &np, CKA_LABEL, a->label, strlen(a->label));
	attr_add(pt, &np, CKA_ID, a->id, sizeof(a->id));
	if (a->type == P11_SKEY_EC_P256)
		attr_add(pt, &np, CKA_EC_PARAMS, p256_oid, sizeof(p256_oid));
	else {
		m.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		attr_add(pt, &np, CKA_MODULUS_BITS, &bits, sizeof(bits));
		attr_add(pt, &np, CKA_PUBLIC_EXPONENT, f4, sizeof(f4));
	}
	attr_add(pt, &np, CKA_MODIFIABLE, &no, sizeof(no));      /* last */

	attr_add(kt, &nk, CKA_TOKEN, &yes, sizeof(yes));
	attr_add(kt, &nk, CKA_PRIVATE, &yes, sizeof(yes));
	attr_add(kt, &nk, CKA_SENSITIVE, &yes, sizeof(yes));
	attr_add(kt, &nk, CKA_EXTRACTABLE, &no, sizeof(no));
	attr_add(kt, &nk, CKA_SIGN, &yes, sizeof(yes));
	attr_add(kt, &nk, CKA_SIGN_RECOVER, &no, sizeof(no));
	attr_add(kt, &nk, CKA_DECRYPT, &no, sizeof(no));
	attr_add(kt, &nk, CKA_UNWRAP, &no, sizeof(no));
	attr_add(kt, &nk, CKA_DERIVE, &no, sizeof(no));
	attr_add(kt, &nk, CKA_LABEL, a->label, strlen(a->label));
	attr_add(kt, &nk, CKA_ID, a->id, sizeof(a->id));
	attr_add(kt, &nk, CKA_MODIFIABLE, &no, sizeof(no));      /* last */

	rv = ctx->f->C_GenerateKeyPair(s->h, &m, pt, np, kt, nk, &pub, &priv);
	if (rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
	    rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_READ_ONLY)
		rv = ctx->f->C_GenerateKeyPair(s->h, &m, pt, np - 1, kt, nk - 1,
		    &pub, &priv);
	if (rv == CKR_MECHANISM_INVALID || rv == CKR_CURVE_NOT_SUPPORTED ||
	    rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_KEY_SIZE_RANGE) {
		s->rv = rv;
		return kw_fail(KW_E_MECHANISM, "C_GenerateKeyPair: %s: token '%s' "
		    "cannot make %s keys", p11_rv_name(rv), TOKNAME(ctx),
		    p11_skey_type_name(a->type));
	}
	if (rv != CKR_OK)
		return p11_sfail(s, "C_GenerateKeyPair", rv, "cannot create %s "
		    "signing key '%s' in token '%s'", p11_skey_type_name(a->type),
		    a->label, TOKNAME(ctx));
	return 0;
}

int
p11_skey_create(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version, enum p11_skey_type type, struct p11_skey *out)
{
	struct create_arg a;
	char label[LABEL_LEN];
	int r;

	if ((r = label_make(label, sizeof(label), vault, name, version)) != 0)
		return r;
	if (type != P11_SKEY_EC_P256 && type != P11_SKEY_RSA_3072)
		return kw_fail(-EINVAL, "unknown signing key type %d", (int)type);
	memset(&a, 0, sizeof(a));
	a.label = label;
	a.type = type;
	if ((r = p11_run_keylocked(ctx, op_skey_create, &a)) != 0)
		return r;
	if (out != NULL) {
		memset(out, 0, sizeof(*out));
		snprintf(out->name, sizeof(out->name), "%s", name);
		out->version = version;
		out->type = type;
		memcpy(out->id, a.id, sizeof(out->id));
		snprintf(out->label, sizeof(out->label), "%s", label);
	}
	return 0;
}

/* ---- list ----------------------------------------------------------------- */

struct list_arg {
	const char *prefix;      /* "keywarden/<vault>/sign/" */
	const char *name;        /* or NULL for all */
	struct p11_skey *v;
	size_t n, cap;
};

static int
skey_cmp(const void *a, const void *b)
{
	const struct p11_skey *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return x->version < y->version ? -1 : x->version > y->version;
}

/* One private key of the search: keep it if its label is one of ours. */
static int
skey_list_one(p11_ctx *ctx, struct p11_sess *s, CK_OBJECT_HANDLE h, void *arg)
{
	struct list_arg *a = arg;
	char label[LABEL_LEN + 1], name[P11_SKEY_NAME_MAX + 1];
	uint8_t id[64];
	enum p11_skey_type type;
	unsigned ver;
	CK_RV rv;
	int r;
	CK_ATTRIBUTE at[] = {
		{ CKA_LABEL, label, sizeof(label) - 1 },
		{ CKA_ID, id, sizeof(id) },
	};

	rv = ctx->f->C_GetAttributeValue(s->h, h, at, 2);
	if (rv != CKR_OK && p11_rv_retryable(rv))
		return p11_sfail(s, "C_GetAttributeValue", rv, "cannot "
		    "read the labels of token '%s'", TOKNAME(ctx));
	if (rv != CKR_OK)
		return 0;       /* not ours: no label, or a long one */
	label[at[0].ulValueLen] = '\0';
	if (strlen(label) >= sizeof(a->v[0].label) ||
	    (ver = label_parse(label, a->prefix, name)) == 0 ||
	    (a->name != NULL && strcmp(name, a->name) != 0))
		return 0;
	if ((r = pair_type(ctx, s, h, label, &type)) != 0)
		return r == KW_E_FORMAT ? 0 : r;
	if (kw_grow((void **)&a->v, &a->cap, a->n, sizeof(*a->v)) != 0)
		return -ENOMEM;
	memset(&a->v[a->n], 0, sizeof(a->v[a->n]));
	memcpy(a->v[a->n].name, name, strlen(name) + 1);
	a->v[a->n].version = ver;
	a->v[a->n].type = type;
	memcpy(a->v[a->n].id, id, at[1].ulValueLen < P11_ID_LEN ?
	    at[1].ulValueLen : P11_ID_LEN);
	memcpy(a->v[a->n].label, label, strlen(label) + 1);
	a->n++;
	return 0;
}

static int
op_skey_list(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct list_arg *a = arg;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };

	a->n = 0;
	return p11_find_each(ctx, s, t, 1, "private keys", skey_list_one, a);
}

int
p11_skey_list(p11_ctx *ctx, const char *vault, const char *name,
    struct p11_skey **out, size_t *n)
{
	struct list_arg a;
	char prefix[P11_VAULT_MAX + 32];
	int r;

	if ((r = p11_name_check("vault", vault, P11_VAULT_MAX)) != 0)
		return r;
	if (name != NULL &&
	    (r = p11_name_check("signing key", name, P11_SKEY_NAME_MAX)) != 0)
		return r;
	snprintf(prefix, sizeof(prefix), "keywarden/%s/sign/", vault);
	memset(&a, 0, sizeof(a));
	a.prefix = prefix;
	a.name = name;
	if ((r = p11_run(ctx, op_skey_list, &a)) != 0) {
		free(a.v);
		return r;
	}
	if (a.n > 1)
		qsort(a.v, a.n, sizeof(*a.v), skey_cmp);
	*out = a.v;
	*n = a.n;
	return 0;
}

/* ---- public key ------------------------------------------------------------- */

struct public_arg {
	const char *label;
	enum p11_skey_type type;
	uint8_t a[RSA_BYTES];    /* EC: CKA_EC_POINT; RSA: CKA_MODULUS */
	CK_ULONG alen;
	uint8_t e[RSA_EXP_MAX];  /* RSA: CKA_PUBLIC_EXPONENT */
	CK_ULONG elen;
};

static int
op_skey_public(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct public_arg *a = arg;
	CK_OBJECT_HANDLE h;
	CK_ATTRIBUTE at[2];
	CK_ULONG n = 0;
	CK_RV rv;
	int r;

	if ((r = find(ctx, s, CKO_PUBLIC_KEY, a->label, &h)) != 0 ||
	    (r = pair_type(ctx, s, h, a->label, &a->type)) != 0)
		return r;
	if (a->type == P11_SKEY_EC_P256)
		attr_add(at, &n, CKA_EC_POINT, a->a, EC_POINT_MAX);
	else {
		attr_add(at, &n, CKA_MODULUS, a->a, sizeof(a->a));
		attr_add(at, &n, CKA_PUBLIC_EXPONENT, a->e, sizeof(a->e));
	}
	if ((rv = ctx->f->C_GetAttributeValue(s->h, h, at, n)) != CKR_OK)
		return p11_sfail(s, "C_GetAttributeValue", rv, "cannot read the "
		    "public key '%s' in token '%s'", a->label, TOKNAME(ctx));
	a->alen = at[0].ulValueLen;
	a->elen = n > 1 ? at[1].ulValueLen : 0;
	return 0;
}

/* CKA_EC_POINT is the DER OCTET STRING of the point by PKCS#11 2.20 (and
 * SoftHSM), the bare point by some tokens: take either, for P-256. */
static int
ec_point(const uint8_t *p, size_t len, const uint8_t **pt, size_t *ptlen)
{
	if ((len == 67 && p[0] == 0x04 && p[1] == 65 && p[2] == 0x04) ||
	    (len == 35 && p[0] == 0x04 && p[1] == 33 &&
	    (p[2] == 0x02 || p[2] == 0x03))) {
		*pt = p + 2;
		*ptlen = len - 2;
		return 0;
	}
	if ((len == 65 && p[0] == 0x04) ||
	    (len == 33 && (p[0] == 0x02 || p[0] == 0x03))) {
		*pt = p;
		*ptlen = len;
		return 0;
	}
	return -1;
}

/* The SubjectPublicKeyInfo of the attributes read by op_skey_public. */
static int
spki_make(const struct public_arg *a, uint8_t **der, size_t *derlen)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pc = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *n = NULL, *e = NULL;
	const uint8_t *pt;
	uint8_t *buf = NULL, *p;
	size_t ptlen;
	int len, r = KW_E_INTERNAL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (a->type == P11_SKEY_EC_P256) {
		if (ec_point(a->a, a->alen, &pt, &ptlen) != 0) {
			r = kw_fail(KW_E_FORMAT, "CKA_EC_POINT of '%s' (%lu bytes) "
			    "is not a P-256 point", a->label,
			    (unsigned long)a->alen);
			goto out;
		}
		if (!OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
		    pt, ptlen)) {
			r = -ENOMEM;
			goto out;
		}
		pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	} else {
		if ((n = BN_bin2bn(a->a, (int)a->alen, NULL)) == NULL ||
		    (e = BN_bin2bn(a->e, (int)a->elen, NULL)) == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
			r = -ENOMEM;
			goto out;
		}
		pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	}
	if (pc == NULL || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		r = kw_fail(KW_E_FORMAT, "OpenSSL refuses the public key '%s' read "
		    "from the token", a->label);
		goto out;
	}
	if ((len = i2d_PUBKEY(pkey, NULL)) <= 0) {
		r = kw_fail(KW_E_INTERNAL, "i2d_PUBKEY cannot encode '%s'",
		    a->label);
		goto out;
	}
	if ((buf = malloc((size_t)len)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	p = buf;
	if (i2d_PUBKEY(pkey, &p) != len) {
		r = kw_fail(KW_E_INTERNAL, "i2d_PUBKEY cannot encode '%s'",
		    a->label);
		goto out;
	}
	*der = buf;             /* the caller's now */
	*derlen = (size_t)len;
	buf = NULL;
	r = 0;
out:
	free(buf);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return r;
}

int
p11_skey_public(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version, uint8_t **der, size_t *derlen)
{
	struct public_arg a;
	char label[LABEL_LEN];
	int r;

	if ((r = label_make(label, sizeof(label), vault, name, version)) != 0)
		return r;
	memset(&a, 0, sizeof(a));
	a.label = label;
	if ((r = p11_run(ctx, op_skey_public, &a)) != 0)
		return r;
	return spki_make(&a, der, derlen);
}

/* ---- sign ----------------------------------------------------------------- */

struct sign_arg {
	const char *label;
	enum p11_sig_alg alg;
	const uint8_t *digest;
	uint8_t sig[P11_SIG_MAX];
	CK_ULONG siglen;
};

static int
op_skey_sign(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	struct sign_arg *a = arg;
	CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, DIGEST_LEN };
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	uint8_t in[sizeof(sha256_info) + DIGEST_LEN];
	CK_ULONG inlen = DIGEST_LEN, want = RSA_BYTES, n = sizeof(a->sig);
	CK_OBJECT_HANDLE h;
	enum p11_skey_type type;
	CK_RV rv;
	int r;

	if ((r = find(ctx, s, CKO_PRIVATE_KEY, a->label, &h)) != 0 ||
	    (r = pair_type(ctx, s, h, a->label, &type)) != 0 ||
	    (r = p11_sig_alg_check(type, a->alg)) != 0)
		return r;
	memcpy(in, a->digest, DIGEST_LEN);
	switch (a->alg) {
	case P11_SIG_ES256:
		want = ES256_LEN;
		break;
	case P11_SIG_RS256:
		m.mechanism = CKM_RSA_PKCS;
		memcpy(in, sha256_info, sizeof(sha256_info));
		memcpy(in + sizeof(sha256_info), a->digest, DIGEST_LEN);
		inlen = sizeof(in);
		break;
	case P11_SIG_PS256:
		m.mechanism = CKM_RSA_PKCS_PSS;
		m.pParameter = &pss;
		m.ulParameterLen = sizeof(pss);
		break;
	}
	if ((rv = ctx->f->C_SignInit(s->h, &m, h)) != CKR_OK)
		return p11_sfail(s, "C_SignInit", rv, "cannot start %s by '%s' in "
		    "token '%s'", p11_sig_alg_name(a->alg), a->label, TOKNAME(ctx));
	if ((rv = ctx->f->C_Sign(s->h, in, inlen, a->sig, &n)) != CKR_OK)
		return p11_sfail(s, "C_Sign", rv, "%s by '%s' in token '%s' "
		    "failed", p11_sig_alg_name(a->alg), a->label, TOKNAME(ctx));
	if (n != want)
		return kw_fail(KW_E_P11, "C_Sign: CKR_OK: token '%s' gave a %lu-byte "
		    "%s signature, not %lu", TOKNAME(ctx), (unsigned long)n,
		    p11_sig_alg_name(a->alg), (unsigned long)want);
	a->siglen = n;
	return 0;
}

int
p11_skey_sign(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version, enum p11_sig_alg alg, const uint8_t digest[32],
    uint8_t *sig, size_t *siglen)
{
	struct sign_arg a;
	char label[LABEL_LEN];
	int r;

	if ((r = label_make(label, sizeof(label), vault, name, version)) != 0)
		return r;
	if (alg != P11_SIG_ES256 && alg != P11_SIG_RS256 && alg != P11_SIG_PS256)
		return kw_fail(-EINVAL, "unknown signature algorithm %d", (int)alg);
	memset(&a, 0, sizeof(a));
	a.label = label;
	a.alg = alg;
	a.digest = digest;
	if ((r = p11_run(ctx, op_skey_sign, &a)) != 0)
		return r;
	memcpy(sig, a.sig, a.siglen);
	*siglen = a.siglen;
	return 0;
}

/* ---- destroy -------------------------------------------------------------- */

static int
op_skey_destroy(p11_ctx *ctx, struct p11_sess *s, void *arg)
{
	const char *label = arg;
	CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
	CK_RV rv;
	int r;

	/* Either half alone is destroyed too: an interrupted creation by
	 * another tool would otherwise block this version forever. */
	r = p11_find_one(ctx, s, CKO_PRIVATE_KEY, label, &priv);
	if (r != 0 && r != KW_E_KEY_NOT_FOUND)
		return r;
	r = p11_find_one(ctx, s, CKO_PUBLIC_KEY, label, &pub);
	if (r != 0 && r != KW_E_KEY_NOT_FOUND)
		return r;
	if (priv == CK_INVALID_HANDLE && pub == CK_INVALID_HANDLE)
		return kw_fail(KW_E_KEY_NOT_FOUND, "no signing key '%s' in token "
		    "'%s'", label, TOKNAME(ctx));
	/* The private key first: if the second call fails, what is left
	 * cannot sign and is no longer listed. */
	if (priv != CK_INVALID_HANDLE &&
	    (rv = ctx->f->C_DestroyObject(s->h, priv)) != CKR_OK)
		return p11_sfail(s, "C_DestroyObject", rv, "cannot destroy the "
		    "private key '%s' in token '%s'", label, TOKNAME(ctx));
	if (pub != CK_INVALID_HANDLE &&
	    (rv = ctx->f->C_DestroyObject(s->h, pub)) != CKR_OK)
		return p11_sfail(s, "C_DestroyObject", rv, "cannot destroy the "
		    "public key '%s' in token '%s'", label, TOKNAME(ctx));
	return 0;
}

int
p11_skey_destroy(p11_ctx *ctx, const char *vault, const char *name,
    unsigned version)
{
	char label[LABEL_LEN];
	int r;

	if ((r = label_make(label, sizeof(label), vault, name, version)) != 0)
		return r;
	return p11_run_keylocked(ctx, op_skey_destroy, label);
}
