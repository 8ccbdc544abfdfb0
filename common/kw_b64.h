/*
 * kw_b64.h - one base64 decoder for the daemon and the client library,
 * on OpenSSL's EVP_DecodeBlock.
 *
 * Not kw_-prefixed: libkeywarden exports only kw_ symbols, and this is
 * internal.
 */
#ifndef KW_B64_H
#define KW_B64_H

#include <stddef.h>
#include <stdint.h>

/* Also accept the URL alphabet ('-' and '_') and missing padding. */
#define KWB64_ANY 1u

/* The room kwb64_decode needs for len characters. */
#define KWB64_MAX(len) (((len) + 3) / 4 * 3 + 3)

/* Decode len characters of s into out, which has room for KWB64_MAX(len)
 * bytes: standard base64 with its padding (a length that is a multiple of
 * four), or with KWB64_ANY either alphabet, padded or not.  0 and *outlen,
 * or -EINVAL for anything else.  Wipes its own copies: s may be a secret,
 * and out then should be secure memory. */
int kwb64_decode(const char *s, size_t len, unsigned flags, uint8_t *out, size_t *outlen);

#endif
