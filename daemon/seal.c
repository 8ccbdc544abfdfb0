#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "kw_error.h"
#include "kw_secmem.h"
#include "daemon/seal.h"

int
seal_aad(char *buf, size_t buflen, const char *vault, const char *name,
    uint64_t version)
{
	/* "keywarden/v1/<vault>/<name>/<version>", by hand: once per read. */
	static const char pre[] = "keywarden/v1/";
	size_t vl = strlen(vault), nl = strlen(name), dl = 0, n;
	char digits[24];

	do {
		digits[sizeof(digits) - 1 - dl++] = (char)('0' + version % 10);
		version /= 10;
	} while (version != 0);
	n = sizeof(pre) - 1 + vl + 1 + nl + 1 + dl;
	if (n >= buflen || n > INT_MAX)
		return -ENAMETOOLONG;
	memcpy(buf, pre, sizeof(pre) - 1);
	memcpy(buf + sizeof(pre) - 1, vault, vl);
	buf[sizeof(pre) - 1 + vl] = '/';
	memcpy(buf + sizeof(pre) + vl, name, nl);
	buf[sizeof(pre) + vl + nl] = '/';
	memcpy(buf + sizeof(pre) + vl + nl + 1, digits + sizeof(digits) - dl, dl);
	buf[n] = '\0';
	return (int)n;
}

/* AES-256-GCM fetched once: an implicit fetch at every init costs a
 * lookup in OpenSSL's provider tables (about 3 % of a read). */
static EVP_CIPHER *gcm_cipher;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;

static void
gcm_fetch(void)
{
	gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *
gcm(void)
{
	pthread_once(&gcm_once, gcm_fetch);
	return gcm_cipher != NULL ? gcm_cipher : EVP_aes_256_gcm();
}

int
seal_encrypt(const uint8_t key[SEAL_KEY_LEN], const void *aad, size_t aadlen,
    const uint8_t *pt, size_t len, uint8_t nonce[SEAL_NONCE_LEN], uint8_t *out)
{
	EVP_CIPHER_CTX *ctx;
	int r = KW_E_INTERNAL, n;

	if (len > INT32_MAX || aadlen > INT32_MAX)
		return -EINVAL;
	if (RAND_bytes(nonce, SEAL_NONCE_LEN) != 1)
		return kw_fail(KW_E_INTERNAL, "OpenSSL RAND_bytes failed");
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return -ENOMEM;
	if (EVP_EncryptInit_ex(ctx, gcm(), NULL, key, nonce) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1 ||
	    (len > 0 && EVP_EncryptUpdate(ctx, out, &n, pt, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(ctx, out + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, out + len) != 1) {
		r = kw_fail(KW_E_INTERNAL, "OpenSSL AES-256-GCM encryption failed");
		goto out;
	}
	r = 0;
out:
	EVP_CIPHER_CTX_free(ctx);   /* cleanses the key schedule */
	return r;
}

int
seal_decrypt(const uint8_t key[SEAL_KEY_LEN], const void *aad, size_t aadlen,
    const uint8_t nonce[SEAL_NONCE_LEN], const uint8_t *ct, size_t len,
    uint8_t *pt)
{
	EVP_CIPHER_CTX *ctx;
	size_t ptlen;
	int r = KW_E_INTERNAL, n;

	if (len < SEAL_TAG_LEN || len > INT32_MAX || aadlen > INT32_MAX)
		return kw_fail(KW_E_FORMAT, "sealed body is too short or too long");
	ptlen = len - SEAL_TAG_LEN;
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return -ENOMEM;
	if (EVP_DecryptInit_ex(ctx, gcm(), NULL, key, nonce) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1 ||
	    (ptlen > 0 && EVP_DecryptUpdate(ctx, pt, &n, ct, (int)ptlen) != 1) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
		(void *)(uintptr_t)(ct + ptlen)) != 1) {
		r = kw_fail(KW_E_INTERNAL, "OpenSSL AES-256-GCM decryption failed");
		goto out;
	}
	if (EVP_DecryptFinal_ex(ctx, pt + ptlen, &n) != 1) {
		kw_wipe(pt, ptlen);
		r = kw_fail(KW_E_AUTH, "the secret body does not authenticate under its data key and identity");
		goto out;
	}
	r = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	return r;
}
