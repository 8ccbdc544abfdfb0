/*
 * kw_b64.c - see kw_b64.h.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "kw_b64.h"
#include "kw_secmem.h"

/* Bytes of padding at the end of a padded quartet sequence. */
static size_t
pad_of(const char *s, size_t len)
{
	return (len > 0 && s[len - 1] == '=') + (len > 1 && s[len - 2] == '=');
}

int
kwb64_decode(const char *s, size_t len, unsigned flags, uint8_t *out, size_t *outlen)
{
	unsigned char q[4];
	size_t o = 0, i, k, pad;
	int n;

	if (!(flags & KWB64_ANY)) {
		if (len % 4 != 0 || len > INT_MAX)
			return -EINVAL;
		pad = pad_of(s, len);
		/* Padding only at the end: EVP_DecodeBlock would take "Q===". */
		if (memchr(s, '=', len - pad) != NULL)
			return -EINVAL;
		n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
		if (n < 0 || (size_t)n < pad)
			return -EINVAL;
		*outlen = (size_t)n - pad;
		return 0;
	}
	/* Either alphabet, padding optional: a quartet at a time, translated
	 * and padded in q. */
	while (len > 0 && s[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return -EINVAL;
	for (i = 0; i < len; i += 4) {
		for (k = 0; k < 4; k++) {
			char c = i + k < len ? s[i + k] : '=';
			if (c == '=' && i + k < len)
				return -EINVAL;
			q[k] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
		}
		pad = pad_of((const char *)q, 4);
		n = EVP_DecodeBlock(out + o, q, 4);
		kw_wipe(q, sizeof(q));
		if (n != 3 || (size_t)n < pad)
			return -EINVAL;
		o += 3 - pad;
	}
	*outlen = o;
	return 0;
}
