/*
 * seal.h - encryption of secret bodies under their data keys (in-process,
 * OpenSSL AES-256-GCM).  The AAD is the record's identity, so a record
 * copied under another vault, name or version fails to open.
 */
#ifndef KW_SEAL_H
#define KW_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16

/* The AAD of a record: "keywarden/v1/<vault>/<name>/<version>".  Returns the
 * length written (< buflen) or -ENAMETOOLONG. */
int seal_aad(char *buf, size_t buflen, const char *vault, const char *name,
    uint64_t version);

/* Encrypt pt under key with a fresh random nonce.  out receives len + 16
 * bytes (ciphertext || tag); caller allocates. */
int seal_encrypt(const uint8_t key[SEAL_KEY_LEN], const void *aad, size_t aadlen,
    const uint8_t *pt, size_t len, uint8_t nonce[SEAL_NONCE_LEN], uint8_t *out);

/* Decrypt ct (len >= 16, tag last) into pt (len - 16 bytes, caller's secure
 * memory).  KW_E_AUTH if the tag does not verify (pt is then wiped). */
int seal_decrypt(const uint8_t key[SEAL_KEY_LEN], const void *aad, size_t aadlen,
    const uint8_t nonce[SEAL_NONCE_LEN], const uint8_t *ct, size_t len,
    uint8_t *pt);

#endif
