/*
 * signkeys.c - asymmetric signing keys kept in the token: create, rotate,
 * read the public key (PEM, JWK), sign (ES256, RS256, PS256), verify.
 *
 * The token holds the truth: a signing key is the set of key pairs
 * labelled "keywarden/<vault>/sign/<name>/v<N>" (pkcs11/p11.h).  Private
 * keys never leave it; verifying needs only the public key and runs here
 * with OpenSSL.  The key's kid is "<name>.<version>".  The store keeps
 * which versions are disabled (the token's objects are not modifiable): a
 * disabled version neither signs nor verifies here until it is enabled
 * again; its public key stays readable.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "kw_b64.h"
#include "kw_error.h"
#include "pkcs11/p11.h"
#include "daemon/kwd.h"
#include "daemon/log.h"
#include "daemon/store.h"

#define MESSAGE_MAX (1024 * 1024)

/* ---- encodings -------------------------------------------------------------------- */

static json_t *
bn_b64url(const BIGNUM *bn)
{
	int n = BN_num_bytes(bn);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	json_t *j;

	if (b == NULL)
		return NULL;
	BN_bn2bin(bn, b);
	j = kwd_b64_json(b, (size_t)n, 1);
	free(b);
	return j;
}

/* Decode standard base64 or base64url (padding optional) into malloc'd. */
static int
b64_decode_any(const char *s, uint8_t **out, size_t *outlen)
{
	size_t len = strlen(s);

	if ((*out = malloc(KWB64_MAX(len))) == NULL)
		return -ENOMEM;
	if (kwb64_decode(s, len, KWB64_ANY, *out, outlen) != 0) {
		free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/* raw r||s (64 bytes) -> DER ECDSA-Sig-Value; *der malloc'd. */
static int
ecdsa_raw_to_der(const uint8_t *raw, size_t len, uint8_t **der, size_t *derlen)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *rr = BN_bin2bn(raw, (int)len / 2, NULL), *ss = BN_bin2bn(raw + len / 2, (int)len / 2, NULL);
	unsigned char *p = NULL;
	int n = -1;

	if (sig != NULL && rr != NULL && ss != NULL && ECDSA_SIG_set0(sig, rr, ss) == 1) {
		rr = ss = NULL;
		n = i2d_ECDSA_SIG(sig, &p);
	}
	BN_free(rr);
	BN_free(ss);
	ECDSA_SIG_free(sig);
	if (n <= 0)
		return -ENOMEM;
	*der = p;          /* OPENSSL_malloc'd: release with OPENSSL_free */
	*derlen = (size_t)n;
	return 0;
}

/* ---- keys ---------------------------------------------------------------------- */

/* The versions of one signing key; *n 0 if there is none. */
static int
skey_versions(struct kwd_req *r, struct p11_skey **keys, size_t *n)
{
	int e = p11_skey_list(r->d->p11, r->vault, r->name, keys, n);
	if (e != 0)
		kwd_reply_kwerr(r, e, "signing key");
	return e;
}

/* The disabled versions of r's signing key (ascending); on an error the
 * reply says so: the store is down, and a disabled version must not be
 * taken for an enabled one. */
static int
skey_disabled(struct kwd_req *r, uint32_t **dis, size_t *nd)
{
	int e = store_skey_disabled(r->d->store, r->vault, r->name, dis, nd);
	if (e != 0)
		kwd_reply_kwerr(r, e, "signing key state");
	return e;
}

static int
is_disabled(const uint32_t *dis, size_t nd, unsigned version)
{
	for (size_t i = 0; i < nd; i++)
		if (dis[i] == version)
			return 1;
	return 0;
}

/* The versions in vers (a JSON array) that dis lists.  Only versions the
 * token still has: a destroyed one's mark is removed with it, but a crash
 * between the two may leave one. */
static json_t *
disabled_of(const json_t *vers, const uint32_t *dis, size_t nd)
{
	json_t *out = json_array(), *x;
	size_t i;

	json_array_foreach(vers, i, x)
		if (is_disabled(dis, nd, (unsigned)json_integer_value(x)))
			json_array_append_new(out, json_integer(json_integer_value(x)));
	return out;
}

/* 0 if version may sign or verify; else the reply is a 403. */
static int
refuse_disabled(struct kwd_req *r, unsigned version, const char *op)
{
	uint32_t *dis = NULL;
	size_t nd = 0;
	int bad;

	if (skey_disabled(r, &dis, &nd) != 0)
		return -1;
	bad = is_disabled(dis, nd, version);
	free(dis);
	if (bad)
		kwd_reply_error(r, 403, "key_disabled", "version %u of signing key '%s' is disabled: it does "
		    "not %s (enable it, or %s)", version, r->name, op,
		    strcmp(op, "sign") == 0 ? "rotate to a new version" : "verify with another version");
	return bad ? -1 : 0;
}

static EVP_PKEY *
skey_pkey(struct kwd_req *r, unsigned version)
{
	uint8_t *der = NULL;
	size_t dl = 0;
	const unsigned char *p;
	EVP_PKEY *pk = NULL;
	int e = p11_skey_public(r->d->p11, r->vault, r->name, version, &der, &dl);

	if (e != 0) {
		kwd_reply_kwerr(r, e, "public key");
		return NULL;
	}
	p = der;
	pk = d2i_PUBKEY(NULL, &p, (long)dl);
	free(der);
	if (pk == NULL)
		kwd_reply_error(r, 500, "internal", "the token's public key of '%s' version %u does not parse",
		    r->name, version);
	return pk;
}

/* {"name","type","version","enabled","versions","disabled_versions","kid",
 * "public_key_pem","jwk"} */
static json_t *
skey_json(struct kwd_req *r, const struct p11_skey *keys, size_t n, unsigned version)
{
	const struct p11_skey *k = NULL;
	json_t *vers = json_array(), *jwk = NULL, *o;
	EVP_PKEY *pk;
	BIO *bio = NULL;
	char kid[96], *pem = NULL;
	uint32_t *dis = NULL;
	size_t nd = 0;
	long pl;

	for (size_t i = 0; i < n; i++) {
		json_array_append_new(vers, json_integer(keys[i].version));
		if (keys[i].version == version)
			k = &keys[i];
	}
	if (k == NULL) {
		json_decref(vers);
		kwd_reply_error(r, 404, "version_not_found", "signing key '%s' has no version %u", r->name, version);
		return NULL;
	}
	if (skey_disabled(r, &dis, &nd) != 0 || (pk = skey_pkey(r, version)) == NULL) {
		free(dis);
		json_decref(vers);
		return NULL;
	}
	snprintf(kid, sizeof(kid), "%s.%u", k->name, k->version);
	if ((bio = BIO_new(BIO_s_mem())) != NULL && PEM_write_bio_PUBKEY(bio, pk) == 1) {
		char *data;
		pl = BIO_get_mem_data(bio, &data);
		if ((pem = malloc((size_t)pl + 1)) != NULL) {
			memcpy(pem, data, (size_t)pl);
			pem[pl] = '\0';
		}
	}
	if (k->type == P11_SKEY_EC_P256) {
		uint8_t pub[65];
		size_t publen = 0;
		if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &publen) == 1 &&
		    publen == 65)
			jwk = json_pack("{s:s,s:s,s:o,s:o,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256",
			    "x", kwd_b64_json(pub + 1, 32, 1), "y", kwd_b64_json(pub + 33, 32, 1),
			    "kid", kid, "alg", "ES256", "use", "sig");
	} else {
		BIGNUM *nn = NULL, *ee = NULL;
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &nn) == 1 &&
		    EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &ee) == 1)
			jwk = json_pack("{s:s,s:o,s:o,s:s,s:s}", "kty", "RSA", "n", bn_b64url(nn),
			    "e", bn_b64url(ee), "kid", kid, "use", "sig");
		BN_free(nn);
		BN_free(ee);
	}
	BIO_free(bio);
	EVP_PKEY_free(pk);
	if (pem == NULL || jwk == NULL) {
		free(pem);
		free(dis);
		json_decref(jwk);
		json_decref(vers);
		kwd_reply_error(r, 500, "internal", "cannot encode the public key of '%s'", r->name);
		return NULL;
	}
	o = json_pack("{s:s,s:s,s:s,s:i,s:b,s:o,s:o,s:s,s:s,s:o}", "vault", r->vault, "name", k->name,
	    "type", p11_skey_type_name(k->type), "version", (int)k->version,
	    "enabled", !is_disabled(dis, nd, k->version), "versions", vers,
	    "disabled_versions", disabled_of(vers, dis, nd),
	    "kid", kid, "public_key_pem", pem, "jwk", jwk);
	free(pem);
	free(dis);
	return o;
}

static void
skey_make(struct kwd_req *r, int rotate)
{
	struct p11_skey *keys = NULL, made;
	enum p11_skey_type type = P11_SKEY_EC_P256;
	size_t n = 0;
	unsigned next = 1;
	json_t *o;
	int e;

	if (!rotate) {
		const char *ts = r->body ? json_string_value(json_object_get(r->body, "type")) : NULL;
		if (ts == NULL || p11_skey_type_parse(ts, &type) != 0) {
			kwd_reply_error(r, 400, "invalid_parameter", "type must be \"ec-p256\" or \"rsa-3072\"");
			return;
		}
	}
	if (kwd_intent_or_refuse(r, "created") != 0)
		return;
	if (skey_versions(r, &keys, &n) != 0)
		return;
	if (!rotate && n > 0) {
		kwd_reply_error(r, 409, "conflict", "vault '%s' already has a signing key '%s' (rotate it instead)",
		    r->vault, r->name);
		goto out;
	}
	if (rotate && n == 0) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no signing key '%s'", r->vault, r->name);
		goto out;
	}
	if (rotate) {
		next = keys[n - 1].version + 1;
		type = keys[n - 1].type;
	}
	if ((e = p11_skey_create(r->d->p11, r->vault, r->name, next, type, &made)) != 0) {
		if (e == KW_E_KEY_EXISTS)
			kwd_reply_error(r, 409, "conflict", "signing key '%s' version %u exists already", r->name, next);
		else if (e == KW_E_MECHANISM)
			kwd_reply_error(r, 400, "invalid_parameter", "the token cannot make %s keys: %s",
			    p11_skey_type_name(type), kw_errdetail(e));
		else
			kwd_reply_kwerr(r, e, "create signing key");
		goto out;
	}
	free(keys);
	keys = NULL;
	if (skey_versions(r, &keys, &n) != 0)
		goto out;
	r->extra = json_pack("{s:s,s:i}", "key_type", p11_skey_type_name(type), "signing_key_version", (int)next);
	if ((o = skey_json(r, keys, n, next)) != NULL)
		kwd_reply_json(r, 201, o);
out:
	free(keys);
}

void
h_skey_create(struct kwd_req *r)
{
	skey_make(r, 0);
}

void
h_skey_rotate(struct kwd_req *r)
{
	skey_make(r, 1);
}

/* The version of keys asked for; else the reply is a 404. */
static const struct p11_skey *
pick(struct kwd_req *r, const struct p11_skey *keys, size_t n, unsigned version)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i].version == version)
			return &keys[i];
	kwd_reply_error(r, 404, "version_not_found", "signing key '%s' has no version %u", r->name, version);
	return NULL;
}

/* The versions of r's signing key, and the index of r->version among
 * them; else the reply is a 404 (*keys is freed by the caller either
 * way). */
static int
skey_version_at(struct kwd_req *r, struct p11_skey **keys, size_t *n, size_t *at)
{
	const struct p11_skey *k;

	if (skey_versions(r, keys, n) != 0)
		return -1;
	if (*n == 0) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no signing key '%s'", r->vault, r->name);
		return -1;
	}
	if ((k = pick(r, *keys, *n, (unsigned)r->version)) == NULL)
		return -1;
	*at = (size_t)(k - *keys);
	return 0;
}

/* Destroy one version of a signing key: both halves leave the token, so
 * it neither signs nor verifies any more.  Not the newest, the one that
 * signs: rotate first.  Its number is never used again, since the next
 * version counts from the newest. */
void
h_skey_destroy(struct kwd_req *r)
{
	struct p11_skey *keys = NULL;
	unsigned ver = (unsigned)r->version;
	size_t n = 0, i;
	json_t *o;
	int e;

	if (skey_version_at(r, &keys, &n, &i) != 0)
		goto out;
	if (i == n - 1) {
		kwd_reply_error(r, 409, "key_in_use", "version %u is the newest of signing key '%s', the one "
		    "that signs: rotate it first (keywarden sign-key rotate %s %s)", ver, r->name, r->vault,
		    r->name);
		goto out;
	}
	r->extra = json_pack("{s:s,s:i}", "operation", "destroy", "signing_key_version", (int)ver);
	if (kwd_intent_or_refuse(r, "destroyed") != 0)
		goto out;
	/* Gone already (a concurrent destroy): the same outcome. */
	if ((e = p11_skey_destroy(r->d->p11, r->vault, r->name, ver)) != 0 && e != KW_E_KEY_NOT_FOUND) {
		kwd_reply_kwerr(r, e, "destroy signing key");
		goto out;
	}
	log_notice("vault '%s': signing key '%s' version %u destroyed in the token", r->vault, r->name, ver);
	/* Its disabled mark, if any, goes too.  A failure leaves a record for
	 * a version that no longer exists and is never made again (numbers
	 * are not reused): harmless, and skey_json() shows only live ones. */
	if ((e = store_skey_set_enabled(r->d->store, r->vault, r->name, ver, 1, 0)) != 0)
		log_warn("vault '%s': signing key '%s' version %u: cannot clear its state in the store: %s",
		    r->vault, r->name, ver, kw_errdetail(e));
	free(keys);
	keys = NULL;
	if (skey_versions(r, &keys, &n) != 0)
		goto out;
	if (n > 0 && (o = skey_json(r, keys, n, keys[n - 1].version)) != NULL)
		kwd_reply_json(r, 200, o);
	else if (n == 0)
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no signing key '%s'", r->vault, r->name);
out:
	free(keys);
}

/* Disable or enable one version.  Disabling the newest stops all signing
 * with the key until it is enabled again or the key is rotated: signing
 * never falls back to an older version.  Both are idempotent. */
static void
skey_set_enabled(struct kwd_req *r, int enabled)
{
	struct p11_skey *keys = NULL;
	unsigned ver = (unsigned)r->version;
	size_t n = 0, i;
	json_t *o;
	int e;

	if (skey_version_at(r, &keys, &n, &i) != 0)
		goto out;
	r->extra = json_pack("{s:s,s:i}", "operation", enabled ? "enable" : "disable",
	    "signing_key_version", (int)ver);
	if (kwd_intent_or_refuse(r, enabled ? "enabled" : "disabled") != 0)
		goto out;
	if ((e = store_skey_set_enabled(r->d->store, r->vault, r->name, ver, enabled,
	    (int64_t)kwd_now_us())) != 0) {
		kwd_reply_kwerr(r, e, enabled ? "enable signing key" : "disable signing key");
		goto out;
	}
	log_notice("vault '%s': signing key '%s' version %u %s", r->vault, r->name, ver,
	    enabled ? "enabled" : "disabled");
	if ((o = skey_json(r, keys, n, ver)) != NULL)
		kwd_reply_json(r, 200, o);
out:
	free(keys);
}

void
h_skey_disable(struct kwd_req *r)
{
	skey_set_enabled(r, 0);
}

void
h_skey_enable(struct kwd_req *r)
{
	skey_set_enabled(r, 1);
}

void
h_skey_list(struct kwd_req *r)
{
	struct p11_skey *keys = NULL;
	size_t n = 0;
	char kid[96];
	json_t *arr = json_array(), *cur = NULL;
	int e = p11_skey_list(r->d->p11, r->vault, NULL, &keys, &n);

	if (e != 0) {
		json_decref(arr);
		kwd_reply_kwerr(r, e, "list signing keys");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (cur == NULL || strcmp(json_string_value(json_object_get(cur, "name")), keys[i].name) != 0) {
			cur = json_pack("{s:s,s:s,s:[]}", "name", keys[i].name, "type",
			    p11_skey_type_name(keys[i].type), "versions");
			json_array_append_new(arr, cur);
		}
		json_array_append_new(json_object_get(cur, "versions"), json_integer(keys[i].version));
		json_object_set_new(cur, "version", json_integer(keys[i].version));
		snprintf(kid, sizeof(kid), "%s.%u", keys[i].name, keys[i].version);
		json_object_set_new(cur, "kid", json_string(kid));
	}
	free(keys);
	/* Each key's disabled versions, of those the token still has. */
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *k = json_array_get(arr, i);
		uint32_t *dis = NULL;
		size_t nd = 0;

		if ((e = store_skey_disabled(r->d->store, r->vault, json_string_value(json_object_get(k, "name")),
		    &dis, &nd)) != 0) {
			json_decref(arr);
			kwd_reply_kwerr(r, e, "list signing keys");
			return;
		}
		json_object_set_new(k, "disabled_versions",
		    disabled_of(json_object_get(k, "versions"), dis, nd));
		free(dis);
	}
	kwd_reply_json(r, 200, json_pack("{s:s,s:o}", "vault", r->vault, "keys", arr));
}

/* The version asked for in the query or the body (0: newest). */
static int
req_skey_version(struct kwd_req *r, const struct p11_skey *keys, size_t n, unsigned *version)
{
	json_t *q = json_object_get(r->query, "version");
	json_t *b = r->body ? json_object_get(r->body, "key_version") : NULL;
	long long v = 0;

	if (q != NULL) {
		char *end;
		const char *s = json_string_value(q);
		v = s ? strtoll(s, &end, 10) : -1;
		if (s == NULL || *end != '\0' || v < 1 || v > 1000000) {
			kwd_reply_error(r, 400, "invalid_parameter", "version must be a whole number from 1");
			return -1;
		}
	} else if (b != NULL) {
		if (!json_is_integer(b) || json_integer_value(b) < 1 || json_integer_value(b) > 1000000) {
			kwd_reply_error(r, 400, "invalid_parameter", "key_version must be a whole number from 1");
			return -1;
		}
		v = json_integer_value(b);
	}
	*version = v ? (unsigned)v : keys[n - 1].version;
	return 0;
}

void
h_skey_get(struct kwd_req *r)
{
	struct p11_skey *keys = NULL;
	size_t n = 0;
	unsigned version;
	json_t *o;

	if (skey_versions(r, &keys, &n) != 0)
		return;
	if (n == 0) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no signing key '%s'", r->vault, r->name);
		goto out;
	}
	if (req_skey_version(r, keys, n, &version) != 0)
		goto out;
	if ((o = skey_json(r, keys, n, version)) != NULL)
		kwd_reply_json(r, 200, o);
out:
	free(keys);
}

/* The SHA-256 digest to sign or verify, from "message" or "digest". */
static int
req_digest(struct kwd_req *r, uint8_t digest[32])
{
	const char *m = r->body ? json_string_value(json_object_get(r->body, "message")) : NULL;
	const char *dg = r->body ? json_string_value(json_object_get(r->body, "digest")) : NULL;
	uint8_t *bin = NULL;
	size_t bl = 0;
	unsigned dlen = 32;

	if ((m == NULL) == (dg == NULL)) {
		kwd_reply_error(r, 400, "invalid_parameter", "give exactly one of \"message\" and \"digest\" (base64)");
		return -1;
	}
	if (b64_decode_any(m ? m : dg, &bin, &bl) != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "\"%s\" is not valid base64", m ? "message" : "digest");
		return -1;
	}
	if (m != NULL) {
		if (bl > MESSAGE_MAX) {
			free(bin);
			kwd_reply_error(r, 413, "too_large", "the message is %zu bytes; send a digest above %d", bl, MESSAGE_MAX);
			return -1;
		}
		EVP_Digest(bin, bl, digest, &dlen, EVP_sha256(), NULL);
	} else {
		if (bl != 32) {
			free(bin);
			kwd_reply_error(r, 400, "invalid_parameter", "digest must be a SHA-256 digest (32 bytes), not %zu", bl);
			return -1;
		}
		memcpy(digest, bin, 32);
	}
	free(bin);
	return 0;
}

static int
req_alg(struct kwd_req *r, const struct p11_skey *k, enum p11_sig_alg *alg)
{
	const char *as = r->body ? json_string_value(json_object_get(r->body, "alg")) : NULL;

	if (as == NULL) {
		*alg = k->type == P11_SKEY_EC_P256 ? P11_SIG_ES256 : P11_SIG_RS256;
		return 0;
	}
	if (p11_sig_alg_parse(as, alg) != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "alg must be ES256, RS256 or PS256");
		return -1;
	}
	if (p11_sig_alg_check(k->type, *alg) != 0) {
		kwd_reply_error(r, 400, "invalid_parameter", "alg %s does not fit the %s key '%s'", as,
		    p11_skey_type_name(k->type), r->name);
		return -1;
	}
	return 0;
}

void
h_skey_sign(struct kwd_req *r)
{
	struct p11_skey *keys = NULL;
	const struct p11_skey *k;
	enum p11_sig_alg alg;
	uint8_t digest[32], sig[P11_SIG_MAX], *der = NULL;
	size_t n = 0, sl = 0, dl = 0;
	char kid[96];
	json_t *o;
	int e;

	if (skey_versions(r, &keys, &n) != 0)
		return;
	if (n == 0) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no signing key '%s'", r->vault, r->name);
		goto out;
	}
	k = &keys[n - 1];     /* signing always uses the newest version */
	if (req_alg(r, k, &alg) != 0 || req_digest(r, digest) != 0 ||
	    refuse_disabled(r, k->version, "sign") != 0)
		goto out;
	if ((e = p11_skey_sign(r->d->p11, r->vault, r->name, k->version, alg, digest, sig, &sl)) != 0) {
		kwd_reply_kwerr(r, e, "sign");
		goto out;
	}
	snprintf(kid, sizeof(kid), "%s.%u", k->name, k->version);
	r->extra = json_pack("{s:s,s:i}", "alg", p11_sig_alg_name(alg), "signing_key_version", (int)k->version);
	if (alg == P11_SIG_ES256) {
		if (ecdsa_raw_to_der(sig, sl, &der, &dl) != 0) {
			kwd_reply_error(r, 500, "internal", "cannot encode the signature");
			goto out;
		}
		o = json_pack("{s:o,s:o}", "signature", kwd_b64_json(der, dl, 0),
		    "signature_jose", kwd_b64_json(sig, sl, 1));
		OPENSSL_free(der);
	} else {
		o = json_pack("{s:o,s:o}", "signature", kwd_b64_json(sig, sl, 0),
		    "signature_jose", kwd_b64_json(sig, sl, 1));
	}
	json_object_set_new(o, "key_version", json_integer(k->version));
	json_object_set_new(o, "kid", json_string(kid));
	json_object_set_new(o, "alg", json_string(p11_sig_alg_name(alg)));
	kwd_reply_json(r, 200, o);
out:
	free(keys);
}

void
h_skey_verify(struct kwd_req *r)
{
	struct p11_skey *keys = NULL;
	const struct p11_skey *k;
	enum p11_sig_alg alg;
	uint8_t digest[32], *sig = NULL, *der = NULL;
	size_t n = 0, sl = 0, dl = 0;
	unsigned version;
	const char *ss;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pc = NULL;
	int ok = 0;

	if (skey_versions(r, &keys, &n) != 0)
		return;
	if (n == 0) {
		kwd_reply_error(r, 404, "not_found", "vault '%s' has no signing key '%s'", r->vault, r->name);
		goto out;
	}
	if (req_skey_version(r, keys, n, &version) != 0 || (k = pick(r, keys, n, version)) == NULL ||
	    req_alg(r, k, &alg) != 0 || req_digest(r, digest) != 0 ||
	    refuse_disabled(r, version, "verify") != 0)
		goto out;
	ss = r->body ? json_string_value(json_object_get(r->body, "signature")) : NULL;
	if (ss == NULL || b64_decode_any(ss, &sig, &sl) != 0 || sl == 0 || sl > P11_SIG_MAX) {
		kwd_reply_error(r, 400, "invalid_parameter", "the body needs \"signature\", base64 of at most %d bytes",
		    P11_SIG_MAX);
		goto out;
	}
	if (alg == P11_SIG_ES256 && sl == 64) {   /* the JOSE form: make it DER */
		if (ecdsa_raw_to_der(sig, sl, &der, &dl) != 0) {
			kwd_reply_error(r, 500, "internal", "cannot decode the signature");
			goto out;
		}
	}
	if ((pk = skey_pkey(r, version)) == NULL)
		goto out;
	if ((pc = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_verify_init(pc) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) != 1 ||
	    (alg == P11_SIG_PS256 && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32) != 1)) ||
	    (alg == P11_SIG_RS256 && EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) != 1)) {
		kwd_reply_error(r, 500, "internal", "cannot set up the verification");
		goto out;
	}
	ok = EVP_PKEY_verify(pc, der ? der : sig, der ? dl : sl, digest, 32) == 1;
	r->extra = json_pack("{s:s,s:i,s:b}", "alg", p11_sig_alg_name(alg), "signing_key_version", (int)version,
	    "valid", ok);
	kwd_reply_json(r, 200, json_pack("{s:b,s:i,s:s}", "valid", ok, "key_version", (int)version,
	    "alg", p11_sig_alg_name(alg)));
out:
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(pk);
	OPENSSL_free(der);
	free(sig);
	free(keys);
}
