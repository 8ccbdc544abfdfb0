/*
 * pkcs11/ signing keys on a throwaway SoftHSM token: names and checks,
 * creating EC P-256 and RSA-3072 pairs and their versions, listing, the
 * private key's protection (read through the pool's own module handle and
 * by pkcs11-tool), ES256/RS256/PS256 signatures verified by OpenSSL from
 * the exported public key (by the library and by the `openssl` command),
 * refusals, destroy, and recovery through the interposer (tests/shim).
 *
 * The "recovery" suite runs first with no other context open, as in
 * test_p11 (login is per process in PKCS#11).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "kw_error.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_int.h"
#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

#define LABEL "kwsign"
#define VAULT "signvault"

static struct kwt_token tok;
static char shim[600];
static p11_ctx *ctx;

static const char *msg = "header.payload of a JWT, signed in the token";

static int
contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) != NULL)
		return 1;
	fprintf(stderr, "\n  \"%s\" lacks \"%s\"\n", hay, needle);
	return 0;
}

static int
open_with(const char *module, p11_ctx **out)
{
	struct p11_options o;

	memset(&o, 0, sizeof(o));
	o.module = module;
	o.token = LABEL;
	o.pin_file = tok.pin_file;
	return p11_open(&o, out);
}

static void
digest_of(const char *m, uint8_t dg[32])
{
	SHA256((const unsigned char *)m, strlen(m), dg);
}

/* Raw r||s (64 bytes) as a DER ECDSA-Sig-Value; *der from OPENSSL_malloc. */
static int
ecdsa_der(const uint8_t *sig, size_t len, uint8_t **der, int *derlen)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, (int)len / 2, NULL);
	BIGNUM *s = BN_bin2bn(sig + len / 2, (int)len / 2, NULL);

	*der = NULL;
	if (es == NULL || r == NULL || s == NULL || len != 64 ||
	    ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return -1;
	}
	*derlen = i2d_ECDSA_SIG(es, der);
	ECDSA_SIG_free(es);
	return *derlen > 0 ? 0 : -1;
}

/* 1 when OpenSSL verifies sig over the message m (SHA-256 computed by
 * OpenSSL itself) with the SubjectPublicKeyInfo der, else 0.  pad is
 * RSA_PKCS1_PADDING or RSA_PKCS1_PSS_PADDING for RSA keys. */
static int
openssl_verifies(const uint8_t *der, size_t derlen, int pad, const char *m,
    const uint8_t *sig, size_t siglen)
{
	const uint8_t *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)derlen);
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	uint8_t *es = NULL;
	int eslen = 0, ok = 0;

	if (k == NULL || mc == NULL ||
	    EVP_DigestVerifyInit(mc, &pc, EVP_sha256(), NULL, k) != 1)
		goto out;
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
		if (ecdsa_der(sig, siglen, &es, &eslen) != 0)
			goto out;
		sig = es;
		siglen = (size_t)eslen;
	} else {
		if (EVP_PKEY_CTX_set_rsa_padding(pc, pad) != 1)
			goto out;
		if (pad == RSA_PKCS1_PSS_PADDING &&
		    (EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256()) != 1))
			goto out;
	}
	ok = EVP_DigestVerify(mc, sig, siglen, (const uint8_t *)m,
	    strlen(m)) == 1;
out:
	OPENSSL_free(es);
	EVP_MD_CTX_free(mc);
	EVP_PKEY_free(k);
	return ok;
}

/* ---- names ---------------------------------------------------------------- */

static void
test_names(void)
{
	enum p11_skey_type t = 0;
	enum p11_sig_alg a = 0;

	CU_ASSERT_EQUAL(p11_skey_type_parse("ec-p256", &t), 0);
	CU_ASSERT_EQUAL(t, P11_SKEY_EC_P256);
	CU_ASSERT_EQUAL(p11_skey_type_parse("rsa-3072", &t), 0);
	CU_ASSERT_EQUAL(t, P11_SKEY_RSA_3072);
	CU_ASSERT_EQUAL(p11_skey_type_parse("rsa-2048", &t), -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_type_parse("EC-P256", &t), -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_type_parse(NULL, &t), -EINVAL);
	CU_ASSERT_EQUAL(t, P11_SKEY_RSA_3072);   /* untouched on failure */
	CU_ASSERT_STRING_EQUAL(p11_skey_type_name(P11_SKEY_EC_P256), "ec-p256");
	CU_ASSERT_STRING_EQUAL(p11_skey_type_name(P11_SKEY_RSA_3072), "rsa-3072");

	CU_ASSERT_EQUAL(p11_sig_alg_parse("ES256", &a), 0);
	CU_ASSERT_EQUAL(a, P11_SIG_ES256);
	CU_ASSERT_EQUAL(p11_sig_alg_parse("RS256", &a), 0);
	CU_ASSERT_EQUAL(a, P11_SIG_RS256);
	CU_ASSERT_EQUAL(p11_sig_alg_parse("PS256", &a), 0);
	CU_ASSERT_EQUAL(a, P11_SIG_PS256);
	CU_ASSERT_EQUAL(p11_sig_alg_parse("HS256", &a), -EINVAL);
	CU_ASSERT_EQUAL(p11_sig_alg_parse("es256", &a), -EINVAL);
	CU_ASSERT_EQUAL(a, P11_SIG_PS256);
	CU_ASSERT_STRING_EQUAL(p11_sig_alg_name(P11_SIG_ES256), "ES256");
	CU_ASSERT_STRING_EQUAL(p11_sig_alg_name(P11_SIG_RS256), "RS256");
	CU_ASSERT_STRING_EQUAL(p11_sig_alg_name(P11_SIG_PS256), "PS256");

	CU_ASSERT_EQUAL(p11_sig_alg_check(P11_SKEY_EC_P256, P11_SIG_ES256), 0);
	CU_ASSERT_EQUAL(p11_sig_alg_check(P11_SKEY_RSA_3072, P11_SIG_RS256), 0);
	CU_ASSERT_EQUAL(p11_sig_alg_check(P11_SKEY_RSA_3072, P11_SIG_PS256), 0);
	CU_ASSERT_EQUAL(p11_sig_alg_check(P11_SKEY_RSA_3072, P11_SIG_ES256),
	    -EINVAL);
	CU_ASSERT(contains(kw_errdetail(-EINVAL), "ES256 does not fit a rsa-3072"));
	CU_ASSERT_EQUAL(p11_sig_alg_check(P11_SKEY_EC_P256, P11_SIG_RS256),
	    -EINVAL);
	CU_ASSERT_EQUAL(p11_sig_alg_check(P11_SKEY_EC_P256, P11_SIG_PS256),
	    -EINVAL);
}

/* ---- recovery (shim) ------------------------------------------------------ */

static void
test_recovery(void)
{
	static const char *const faults[] = {
		"C_SignInit:1:CKR_SESSION_CLOSED",
		"C_FindObjectsInit:1:CKR_DEVICE_REMOVED",
		"C_FindObjectsInit:1:CKR_TOKEN_NOT_PRESENT",
		"C_SignInit:1:CKR_USER_NOT_LOGGED_IN",
	};
	p11_ctx *c = NULL;
	struct p11_skey *v = NULL;
	uint8_t dg[32], sig[P11_SIG_MAX], *der = NULL;
	size_t sl = 0, dl = 0, n = 0, i;
	unsigned long gen;
	int r;

	digest_of(msg, dg);
	CU_ASSERT_EQUAL_FATAL(open_with(shim, &c), 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_create(c, "rec", "k", 1, P11_SKEY_EC_P256,
	    NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_public(c, "rec", "k", 1, &der, &dl), 0);
	for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		gen = c->gen;
		setenv("KW_SHIM_FAIL", faults[i], 1);
		r = p11_skey_sign(c, "rec", "k", 1, P11_SIG_ES256, dg, sig, &sl);
		if (r == 0 && !openssl_verifies(der, dl, 0, msg, sig, sl))
			r = KW_E_INTERNAL;
		if (r == 0)
			r = p11_skey_list(c, "rec", NULL, &v, &n);
		if (r == 0 && n != 1)
			r = KW_E_INTERNAL;
		free(v);
		v = NULL;
		if (r != 0)
			fprintf(stderr, "\n  %s: %s\n", faults[i], kw_errdetail(r));
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT_EQUAL(c->gen, gen + 1);       /* the fault was met */
		unsetenv("KW_SHIM_FAIL");
	}
	gen = c->gen;
	setenv("KW_SHIM_FAIL", "C_GenerateRandom:1:CKR_DEVICE_ERROR", 1);
	CU_ASSERT_EQUAL(p11_skey_create(c, "rec", "k", 2, P11_SKEY_EC_P256,
	    NULL), 0);
	CU_ASSERT_EQUAL(c->gen, gen + 1);
	unsetenv("KW_SHIM_FAIL");
	CU_ASSERT_EQUAL(p11_skey_sign(c, "rec", "k", 2, P11_SIG_ES256, dg, sig,
	    &sl), 0);
	CU_ASSERT_EQUAL(p11_skey_destroy(c, "rec", "k", 2), 0);
	/* Two failures in a row: the one retry fails, the next call works. */
	setenv("KW_SHIM_FAIL", "C_SignInit:2:CKR_DEVICE_REMOVED", 1);
	r = p11_skey_sign(c, "rec", "k", 1, P11_SIG_ES256, dg, sig, &sl);
	CU_ASSERT_EQUAL(r, KW_E_TOKEN);
	CU_ASSERT(contains(kw_errdetail(r), "C_SignInit"));
	CU_ASSERT(contains(kw_errdetail(r), "CKR_DEVICE_REMOVED"));
	CU_ASSERT_EQUAL(p11_skey_sign(c, "rec", "k", 1, P11_SIG_ES256, dg, sig,
	    &sl), 0);
	unsetenv("KW_SHIM_FAIL");
	/* A failure that no reopen cures is not retried. */
	setenv("KW_SHIM_FAIL", "C_SignInit:1:CKR_GENERAL_ERROR", 1);
	r = p11_skey_sign(c, "rec", "k", 1, P11_SIG_ES256, dg, sig, &sl);
	CU_ASSERT_EQUAL(r, KW_E_P11);
	CU_ASSERT(contains(kw_errdetail(r), "CKR_GENERAL_ERROR"));
	unsetenv("KW_SHIM_FAIL");
	CU_ASSERT_EQUAL(p11_skey_destroy(c, "rec", "k", 1), 0);
	free(der);
	p11_close(c);
}

/* ---- keys ----------------------------------------------------------------- */

static int
keys_init(void)
{
	if (open_with(tok.module, &ctx) != 0) {
		fprintf(stderr, "p11_open: %s\n", kw_errdetail(KW_E_P11));
		return -1;
	}
	return 0;
}

static int
keys_clean(void)
{
	p11_close(ctx);
	ctx = NULL;
	return 0;
}

static void
test_create_list(void)
{
	struct p11_skey k, *v = NULL;
	struct p11_mkey *mv = NULL;
	uint8_t zero[P11_ID_LEN];
	char longname[P11_SKEY_NAME_MAX + 2];
	size_t n = 0;

	memset(zero, 0, sizeof(zero));
	CU_ASSERT_EQUAL_FATAL(p11_skey_create(ctx, VAULT, "jwt", 1,
	    P11_SKEY_EC_P256, &k), 0);
	CU_ASSERT_STRING_EQUAL(k.name, "jwt");
	CU_ASSERT_EQUAL(k.version, 1);
	CU_ASSERT_EQUAL(k.type, P11_SKEY_EC_P256);
	CU_ASSERT_STRING_EQUAL(k.label, "keywarden/" VAULT "/sign/jwt/v1");
	CU_ASSERT(memcmp(k.id, zero, P11_ID_LEN) != 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_create(ctx, VAULT, "code.sign-2_x", 1,
	    P11_SKEY_RSA_3072, &k), 0);
	CU_ASSERT_EQUAL(k.type, P11_SKEY_RSA_3072);
	CU_ASSERT_EQUAL_FATAL(p11_skey_create(ctx, VAULT, "jwt", 2,
	    P11_SKEY_EC_P256, NULL), 0);
	/* another vault, and a master key in this one: neither is listed */
	CU_ASSERT_EQUAL_FATAL(p11_skey_create(ctx, "other", "jwt", 1,
	    P11_SKEY_EC_P256, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_mkey_create(ctx, VAULT, 1, NULL), 0);

	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "jwt", 1, P11_SKEY_EC_P256,
	    &k), KW_E_KEY_EXISTS);
	CU_ASSERT(contains(kw_errdetail(KW_E_KEY_EXISTS),
	    "keywarden/" VAULT "/sign/jwt/v1"));
	/* an existing version refuses another type as well */
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "jwt", 2, P11_SKEY_RSA_3072,
	    NULL), KW_E_KEY_EXISTS);

	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "a/b", 1, P11_SKEY_EC_P256,
	    NULL), -EINVAL);
	CU_ASSERT(contains(kw_errdetail(-EINVAL), "0x2f"));
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "", 1, P11_SKEY_EC_P256,
	    NULL), -EINVAL);
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, longname, 1,
	    P11_SKEY_EC_P256, NULL), -EINVAL);
	longname[P11_SKEY_NAME_MAX] = '\0';     /* 64 bytes: allowed */
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, longname, 1,
	    P11_SKEY_EC_P256, NULL), 0);
	CU_ASSERT_EQUAL(p11_skey_create(ctx, "bad vault", "x", 1,
	    P11_SKEY_EC_P256, NULL), -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "x", 0, P11_SKEY_EC_P256,
	    NULL), -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "x", 1, 7, NULL), -EINVAL);

	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, VAULT, NULL, &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	CU_ASSERT_STRING_EQUAL(v[0].name, "code.sign-2_x");
	CU_ASSERT_EQUAL(v[0].version, 1);
	CU_ASSERT_EQUAL(v[0].type, P11_SKEY_RSA_3072);
	CU_ASSERT_STRING_EQUAL(v[1].name, "jwt");
	CU_ASSERT_EQUAL(v[1].version, 1);
	CU_ASSERT_EQUAL(v[1].type, P11_SKEY_EC_P256);
	CU_ASSERT_STRING_EQUAL(v[1].label, "keywarden/" VAULT "/sign/jwt/v1");
	CU_ASSERT_STRING_EQUAL(v[2].name, "jwt");
	CU_ASSERT_EQUAL(v[2].version, 2);
	CU_ASSERT(memcmp(v[1].id, v[2].id, P11_ID_LEN) != 0);
	CU_ASSERT(memcmp(v[1].id, zero, P11_ID_LEN) != 0);
	CU_ASSERT_STRING_EQUAL(v[3].name, longname);
	CU_ASSERT_EQUAL(p11_skey_destroy(ctx, VAULT, longname, 1), 0);
	free(v);
	v = NULL;

	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, VAULT, "jwt", &v, &n), 0);
	CU_ASSERT_EQUAL(n, 2);
	if (n == 2)
		CU_ASSERT(v[0].version == 1 && v[1].version == 2);
	free(v);
	v = NULL;
	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, "other", NULL, &v, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	free(v);
	v = NULL;
	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, "empty", NULL, &v, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(v);
	v = NULL;
	CU_ASSERT_EQUAL(p11_skey_list(ctx, "a/b", NULL, &v, &n), -EINVAL);

	/* the master-key list does not see signing keys */
	CU_ASSERT_EQUAL_FATAL(p11_mkey_list(ctx, VAULT, &mv, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	free(mv);
}

/* Sorted by name, then by version as a number (v9 before v10), whatever
 * order the token returns them in. */
static void
test_list_order(void)
{
	static const char *const names[] = { "c", "b", "a" };
	static const unsigned vers[] = { 10, 1, 9 }, sorted[] = { 1, 9, 10 };
	struct p11_skey *v = NULL;
	size_t i, j, n = 0;

	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			CU_ASSERT_EQUAL_FATAL(p11_skey_create(ctx, "order", names[i],
			    vers[j], P11_SKEY_EC_P256, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, "order", NULL, &v, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 9);
	for (i = 0; i < 9; i++) {
		CU_ASSERT_STRING_EQUAL(v[i].name, names[2 - i / 3]);
		CU_ASSERT_EQUAL(v[i].version, sorted[i % 3]);
	}
	free(v);
	for (i = 0; i < 3; i++)
		for (j = 0; j < 3; j++)
			CU_ASSERT_EQUAL(p11_skey_destroy(ctx, "order", names[i],
			    vers[j]), 0);
}

static void
test_public_keys(void)
{
	uint8_t *der = NULL;
	const uint8_t *p;
	size_t dl = 0;
	EVP_PKEY *k;
	BIGNUM *e = NULL;

	CU_ASSERT_EQUAL_FATAL(p11_skey_public(ctx, VAULT, "jwt", 1, &der, &dl), 0);
	p = der;
	k = d2i_PUBKEY(NULL, &p, (long)dl);
	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	CU_ASSERT(p == der + dl);
	CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
	CU_ASSERT_EQUAL(EVP_PKEY_get_bits(k), 256);
	{
		char group[32];
		size_t gl = 0;

		CU_ASSERT_EQUAL(EVP_PKEY_get_utf8_string_param(k, "group", group,
		    sizeof(group), &gl), 1);
		CU_ASSERT_STRING_EQUAL(group, "prime256v1");
	}
	EVP_PKEY_free(k);
	free(der);
	der = NULL;

	CU_ASSERT_EQUAL_FATAL(p11_skey_public(ctx, VAULT, "code.sign-2_x", 1,
	    &der, &dl), 0);
	p = der;
	k = d2i_PUBKEY(NULL, &p, (long)dl);
	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	CU_ASSERT_EQUAL(EVP_PKEY_get_base_id(k), EVP_PKEY_RSA);
	CU_ASSERT_EQUAL(EVP_PKEY_get_bits(k), 3072);
	CU_ASSERT_EQUAL(EVP_PKEY_get_bn_param(k, "e", &e), 1);
	CU_ASSERT(e != NULL && BN_is_word(e, 65537));
	BN_free(e);
	EVP_PKEY_free(k);
	free(der);
	der = NULL;

	CU_ASSERT_EQUAL(p11_skey_public(ctx, VAULT, "jwt", 9, &der, &dl),
	    KW_E_KEY_NOT_FOUND);
	CU_ASSERT(contains(kw_errdetail(KW_E_KEY_NOT_FOUND), "sign/jwt/v9"));
	CU_ASSERT_PTR_NULL(der);
}

static void
test_sign_verify(void)
{
	static const struct {
		const char *name;
		unsigned version;
		enum p11_sig_alg alg;
		int pad;
		size_t len;
	} c[] = {
		{ "jwt", 1, P11_SIG_ES256, 0, 64 },
		{ "jwt", 2, P11_SIG_ES256, 0, 64 },
		{ "code.sign-2_x", 1, P11_SIG_RS256, RSA_PKCS1_PADDING, 384 },
		{ "code.sign-2_x", 1, P11_SIG_PS256, RSA_PKCS1_PSS_PADDING, 384 },
	};
	uint8_t dg[32], sig[P11_SIG_MAX], sig2[P11_SIG_MAX], *der = NULL,
	    *other = NULL;
	size_t sl, sl2, dl, ol, i;

	digest_of(msg, dg);
	CU_ASSERT_EQUAL_FATAL(p11_skey_public(ctx, VAULT, "jwt", 2, &other,
	    &ol), 0);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		sl = sl2 = 0;
		CU_ASSERT_EQUAL_FATAL(p11_skey_sign(ctx, VAULT, c[i].name,
		    c[i].version, c[i].alg, dg, sig, &sl), 0);
		CU_ASSERT_EQUAL(sl, c[i].len);
		CU_ASSERT_EQUAL_FATAL(p11_skey_public(ctx, VAULT, c[i].name,
		    c[i].version, &der, &dl), 0);
		CU_ASSERT(openssl_verifies(der, dl, c[i].pad, msg, sig, sl));
		/* another message, a changed signature */
		CU_ASSERT(!openssl_verifies(der, dl, c[i].pad,
		    "header.payload of a JWT, signed in the tokeN", sig, sl));
		sig[sl / 2] ^= 0x01;
		CU_ASSERT(!openssl_verifies(der, dl, c[i].pad, msg, sig, sl));
		sig[sl / 2] ^= 0x01;

		CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, c[i].name, c[i].version,
		    c[i].alg, dg, sig2, &sl2), 0);
		CU_ASSERT(openssl_verifies(der, dl, c[i].pad, msg, sig2, sl2));
		if (c[i].alg == P11_SIG_RS256) {
			/* PKCS#1 v1.5 is deterministic and is not PSS */
			CU_ASSERT(sl == sl2 && memcmp(sig, sig2, sl) == 0);
			CU_ASSERT(!openssl_verifies(der, dl, RSA_PKCS1_PSS_PADDING,
			    msg, sig, sl));
		} else {
			/* ECDSA and PSS are randomised */
			CU_ASSERT(memcmp(sig, sig2, sl) != 0);
		}
		if (c[i].alg == P11_SIG_PS256)
			CU_ASSERT(!openssl_verifies(der, dl, RSA_PKCS1_PADDING, msg,
			    sig, sl));
		if (c[i].alg == P11_SIG_ES256 && c[i].version == 1)
			/* v1's signature is not v2's */
			CU_ASSERT(!openssl_verifies(other, ol, 0, msg, sig, sl));
		free(der);
		der = NULL;
	}
	free(other);
}

static void
test_sign_refused(void)
{
	uint8_t dg[32], sig[P11_SIG_MAX];
	size_t sl = 12345;

	digest_of(msg, dg);
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "code.sign-2_x", 1,
	    P11_SIG_ES256, dg, sig, &sl), -EINVAL);
	CU_ASSERT(contains(kw_errdetail(-EINVAL), "ES256"));
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 1, P11_SIG_RS256, dg,
	    sig, &sl), -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 1, P11_SIG_PS256, dg,
	    sig, &sl), -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 1, 9, dg, sig, &sl),
	    -EINVAL);
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 3, P11_SIG_ES256, dg,
	    sig, &sl), KW_E_KEY_NOT_FOUND);
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, "other", "code.sign-2_x", 1,
	    P11_SIG_RS256, dg, sig, &sl), KW_E_KEY_NOT_FOUND);
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "../jwt", 1, P11_SIG_ES256, dg,
	    sig, &sl), -EINVAL);
	CU_ASSERT_EQUAL(sl, 12345);     /* outputs untouched on failure */
}

/* What the token itself says of a pair, read on a pooled session through
 * the same module handle as the layer uses. */
struct flags_arg {
	const char *label;
	int is_ec;
	CK_BBOOL priv[8], pub[4];
	CK_RV secret_rv;
	uint8_t priv_id[P11_ID_LEN], pub_id[P11_ID_LEN];
};

static int
op_flags(p11_ctx *c, struct p11_sess *s, void *arg)
{
	struct flags_arg *a = arg;
	CK_OBJECT_HANDLE k, p;
	uint8_t buf[512];
	CK_ATTRIBUTE secret = { a->is_ec ? CKA_VALUE : CKA_PRIVATE_EXPONENT, buf,
	    sizeof(buf) };
	CK_ATTRIBUTE fk[] = {
		{ CKA_SENSITIVE, &a->priv[0], 1 },
		{ CKA_EXTRACTABLE, &a->priv[1], 1 },
		{ CKA_ALWAYS_SENSITIVE, &a->priv[2], 1 },
		{ CKA_NEVER_EXTRACTABLE, &a->priv[3], 1 },
		{ CKA_SIGN, &a->priv[4], 1 },
		{ CKA_DECRYPT, &a->priv[5], 1 },
		{ CKA_PRIVATE, &a->priv[6], 1 },
		{ CKA_TOKEN, &a->priv[7], 1 },
		{ CKA_ID, a->priv_id, P11_ID_LEN },
	};
	CK_ATTRIBUTE fp[] = {
		{ CKA_VERIFY, &a->pub[0], 1 },
		{ CKA_PRIVATE, &a->pub[1], 1 },
		{ CKA_TOKEN, &a->pub[2], 1 },
		{ CKA_ENCRYPT, &a->pub[3], 1 },
		{ CKA_ID, a->pub_id, P11_ID_LEN },
	};
	int r;

	if ((r = p11_find_one(c, s, CKO_PRIVATE_KEY, a->label, &k)) != 0 ||
	    (r = p11_find_one(c, s, CKO_PUBLIC_KEY, a->label, &p)) != 0)
		return r;
	a->secret_rv = c->f->C_GetAttributeValue(s->h, k, &secret, 1);
	memset(buf, 0, sizeof(buf));
	if (c->f->C_GetAttributeValue(s->h, k, fk, 9) != CKR_OK ||
	    c->f->C_GetAttributeValue(s->h, p, fp, 5) != CKR_OK)
		return kw_fail(KW_E_P11, "cannot read the flags of '%s'", a->label);
	return 0;
}

static void
check_flags(const char *label, int is_ec)
{
	struct flags_arg a;

	memset(&a, 0xff, sizeof(a));
	a.label = label;
	a.is_ec = is_ec;
	CU_ASSERT_EQUAL_FATAL(p11_run(ctx, op_flags, &a), 0);
	CU_ASSERT_EQUAL(a.secret_rv, CKR_ATTRIBUTE_SENSITIVE);
	CU_ASSERT_EQUAL(a.priv[0], CK_TRUE);     /* sensitive */
	CU_ASSERT_EQUAL(a.priv[1], CK_FALSE);    /* extractable */
	CU_ASSERT_EQUAL(a.priv[2], CK_TRUE);     /* always sensitive */
	CU_ASSERT_EQUAL(a.priv[3], CK_TRUE);     /* never extractable */
	CU_ASSERT_EQUAL(a.priv[4], CK_TRUE);     /* sign */
	CU_ASSERT_EQUAL(a.priv[5], CK_FALSE);    /* decrypt */
	CU_ASSERT_EQUAL(a.priv[6], CK_TRUE);     /* private */
	CU_ASSERT_EQUAL(a.priv[7], CK_TRUE);     /* token */
	CU_ASSERT_EQUAL(a.pub[0], CK_TRUE);      /* verify */
	CU_ASSERT_EQUAL(a.pub[1], CK_FALSE);     /* private */
	CU_ASSERT_EQUAL(a.pub[2], CK_TRUE);      /* token */
	CU_ASSERT_EQUAL(a.pub[3], CK_FALSE);     /* encrypt */
	CU_ASSERT(memcmp(a.priv_id, a.pub_id, P11_ID_LEN) == 0);
}

static void
test_private_protected(void)
{
	const char *tool = kwt_require("PKCS11_TOOL");
	char out[65536], line[256];
	char *argv[] = {
		(char *)tool, "--module", tok.module, "--token-label", LABEL,
		"--login", "--pin", "env:KWT_PIN", "--list-objects", "--type",
		"privkey", NULL,
	};
	const char *pin_env[] = { "KWT_PIN", KWT_USER_PIN, NULL };
	const char *p, *acc, *eol;

	check_flags("keywarden/" VAULT "/sign/jwt/v1", 1);
	check_flags("keywarden/" VAULT "/sign/code.sign-2_x/v1", 0);

	/* OpenSC's pkcs11-tool, another process, agrees. */
	CU_ASSERT_EQUAL_FATAL(kwt_run_env(argv, pin_env, out, sizeof(out)), 0);
	p = strstr(out, "label:      keywarden/" VAULT "/sign/jwt/v1\n");
	acc = p != NULL ? strstr(p, "Access:") : NULL;
	eol = acc != NULL ? strchr(acc, '\n') : NULL;
	CU_ASSERT_PTR_NOT_NULL(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(eol);
	snprintf(line, sizeof(line), "%.*s", (int)(eol - acc), acc);
	CU_ASSERT(contains(line, "sensitive"));
	CU_ASSERT(contains(line, "never extractable"));
	CU_ASSERT(contains(line, "local"));
}

static int
write_bin(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ok;

	if (f == NULL)
		return -1;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* `openssl dgst -sha256 -verify pub.pem -signature sig msg [sigopts]`:
 * its exit status and stdout. */
static int
openssl_cli(const char *dir, int pss, char *out, size_t outlen)
{
	char pub[400], sig[400], m[400];
	char *argv[16];
	int n = 0;

	snprintf(pub, sizeof(pub), "%s/pub.pem", dir);
	snprintf(sig, sizeof(sig), "%s/sig.der", dir);
	snprintf(m, sizeof(m), "%s/msg", dir);
	argv[n++] = (char *)kwt_require("OPENSSL");
	argv[n++] = "dgst";
	argv[n++] = "-sha256";
	argv[n++] = "-verify";
	argv[n++] = pub;
	argv[n++] = "-signature";
	argv[n++] = sig;
	if (pss) {
		argv[n++] = "-sigopt";
		argv[n++] = "rsa_padding_mode:pss";
		argv[n++] = "-sigopt";
		argv[n++] = "rsa_pss_saltlen:32";
	}
	argv[n++] = m;
	argv[n] = NULL;
	return kwt_run(argv, out, outlen);
}

static void
test_openssl_command(void)
{
	static const struct {
		const char *name;
		enum p11_sig_alg alg;
	} c[] = {
		{ "jwt", P11_SIG_ES256 },
		{ "code.sign-2_x", P11_SIG_RS256 },
		{ "code.sign-2_x", P11_SIG_PS256 },
	};
	char dir[256], path[400], out[512];
	uint8_t dg[32], sig[P11_SIG_MAX], *der = NULL, *es = NULL;
	const uint8_t *p;
	size_t sl, dl, i;
	int eslen, st;
	EVP_PKEY *k;
	FILE *f;

	CU_ASSERT_FATAL(kwt_tmpdir(dir, sizeof(dir), "kwsign") == 0);
	digest_of(msg, dg);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		CU_ASSERT_EQUAL_FATAL(p11_skey_public(ctx, VAULT, c[i].name, 1,
		    &der, &dl), 0);
		p = der;
		k = d2i_PUBKEY(NULL, &p, (long)dl);
		CU_ASSERT_PTR_NOT_NULL_FATAL(k);
		snprintf(path, sizeof(path), "%s/pub.pem", dir);
		CU_ASSERT_FATAL((f = fopen(path, "w")) != NULL);
		CU_ASSERT(PEM_write_PUBKEY(f, k) == 1);
		fclose(f);
		EVP_PKEY_free(k);
		free(der);
		der = NULL;

		CU_ASSERT_EQUAL_FATAL(p11_skey_sign(ctx, VAULT, c[i].name, 1,
		    c[i].alg, dg, sig, &sl), 0);
		snprintf(path, sizeof(path), "%s/sig.der", dir);
		if (c[i].alg == P11_SIG_ES256) {
			CU_ASSERT_FATAL(ecdsa_der(sig, sl, &es, &eslen) == 0);
			CU_ASSERT(write_bin(path, es, (size_t)eslen) == 0);
			OPENSSL_free(es);
			es = NULL;
		} else
			CU_ASSERT(write_bin(path, sig, sl) == 0);
		snprintf(path, sizeof(path), "%s/msg", dir);
		CU_ASSERT(write_bin(path, msg, strlen(msg)) == 0);

		st = openssl_cli(dir, c[i].alg == P11_SIG_PS256, out, sizeof(out));
		if (st != 0)
			fprintf(stderr, "\n  openssl (%s): %d: %s\n",
			    p11_sig_alg_name(c[i].alg), st, out);
		CU_ASSERT_EQUAL(st, 0);
		CU_ASSERT(contains(out, "Verified OK"));

		/* one changed byte of the message */
		{
			char changed[128];

			snprintf(changed, sizeof(changed), "%s", msg);
			changed[0] ^= 0x20;
			CU_ASSERT(write_bin(path, changed, strlen(changed)) == 0);
		}
		st = openssl_cli(dir, c[i].alg == P11_SIG_PS256, out, sizeof(out));
		CU_ASSERT_EQUAL(st, 1);
		CU_ASSERT(contains(out, "Verification failure"));
	}
	kwt_rmtree(dir);
}

static void
test_destroy(void)
{
	struct p11_skey *v = NULL;
	uint8_t dg[32], sig[P11_SIG_MAX], *der = NULL;
	size_t n = 0, sl, dl;

	digest_of(msg, dg);
	/* sign once, so that a stale handle would show */
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 1, P11_SIG_ES256, dg,
	    sig, &sl), 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_destroy(ctx, VAULT, "jwt", 1), 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, VAULT, NULL, &v, &n), 0);
	CU_ASSERT_EQUAL(n, 2);
	if (n == 2) {
		CU_ASSERT_STRING_EQUAL(v[0].name, "code.sign-2_x");
		CU_ASSERT_STRING_EQUAL(v[1].name, "jwt");
		CU_ASSERT_EQUAL(v[1].version, 2);
	}
	free(v);
	v = NULL;
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 1, P11_SIG_ES256, dg,
	    sig, &sl), KW_E_KEY_NOT_FOUND);
	/* the public half went too */
	CU_ASSERT_EQUAL(p11_skey_public(ctx, VAULT, "jwt", 1, &der, &dl),
	    KW_E_KEY_NOT_FOUND);
	CU_ASSERT_EQUAL(p11_skey_destroy(ctx, VAULT, "jwt", 1),
	    KW_E_KEY_NOT_FOUND);
	/* v2 still signs; v1 can be made again */
	CU_ASSERT_EQUAL(p11_skey_sign(ctx, VAULT, "jwt", 2, P11_SIG_ES256, dg,
	    sig, &sl), 0);
	CU_ASSERT_EQUAL(p11_skey_create(ctx, VAULT, "jwt", 1, P11_SKEY_EC_P256,
	    NULL), 0);

	CU_ASSERT_EQUAL(p11_skey_destroy(ctx, VAULT, "jwt", 1), 0);
	CU_ASSERT_EQUAL(p11_skey_destroy(ctx, VAULT, "jwt", 2), 0);
	CU_ASSERT_EQUAL(p11_skey_destroy(ctx, VAULT, "code.sign-2_x", 1), 0);
	CU_ASSERT_EQUAL(p11_skey_destroy(ctx, "other", "jwt", 1), 0);
	CU_ASSERT_EQUAL_FATAL(p11_skey_list(ctx, VAULT, NULL, &v, &n), 0);
	CU_ASSERT_EQUAL(n, 0);
	free(v);
	CU_ASSERT_EQUAL(p11_mkey_destroy(ctx, VAULT, 1), 0);
}

int
main(void)
{
	static const struct kwt_case name_tests[] = {
		{ "type and algorithm names", test_names },
		{ NULL, NULL }
	};
	static const struct kwt_case recovery_tests[] = {
		{ "reopen after injected faults (shim)", test_recovery },
		{ NULL, NULL }
	};
	static const struct kwt_case key_tests[] = {
		{ "create, versions, list", test_create_list },
		{ "list order", test_list_order },
		{ "public keys as SubjectPublicKeyInfo", test_public_keys },
		{ "ES256, RS256, PS256 verified by OpenSSL", test_sign_verify },
		{ "refused signatures", test_sign_refused },
		{ "private keys sensitive, non-extractable",
		    test_private_protected },
		{ "openssl dgst -verify", test_openssl_command },
		{ "destroy", test_destroy },
		{ NULL, NULL }
	};
	static const struct kwt_suite suites[] = {
		{ "p11_sign_names", NULL, NULL, name_tests },
		{ "p11_sign_recovery", NULL, NULL, recovery_tests },
		{ "p11_sign_keys", keys_init, keys_clean, key_tests },
		{ NULL, NULL, NULL, NULL }
	};
	int r;
	const char *top;

	kwt_require("SOFTHSM2_MODULE");
	kwt_require("SOFTHSM2_UTIL");
	kwt_require("PKCS11_TOOL");
	top = kwt_require("KW_TOP_BUILDDIR");
	snprintf(shim, sizeof(shim), "%s/tests/shim/.libs/libkwshim.so", top);
	if (access(shim, R_OK) != 0) {
		fprintf(stderr, "test_p11_sign: %s missing: build tests/shim\n",
		    shim);
		return 99;
	}
	if (kwt_token_new(&tok, LABEL) != 0)
		return 99;
	setenv("KW_SHIM_MODULE", tok.module, 1);
	r = kwt_cunit_main_suites(suites);
	kwt_token_free(&tok);
	return r;
}
