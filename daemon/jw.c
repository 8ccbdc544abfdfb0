/*
 * jw.c - see jw.h.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/jw.h"

static int
grow(struct jw *w, size_t more)
{
	char *nb;
	size_t cap;

	if (w->oom)
		return -1;
	if (w->n + more + 1 <= w->cap)
		return 0;
	/* A request's audit event fits, mostly.  Under 1,024 bytes on
	 * purpose: glibc serves a request of 1,024 or more from its large
	 * bins, consolidating the fast bins first, and this buffer is freed
	 * on the audit thread, so it rarely comes back from the tcache. */
	cap = w->cap ? w->cap : 1000;
	while (cap < w->n + more + 1)
		cap *= 2;
	if ((nb = realloc(w->b, cap)) == NULL) {
		w->oom = 1;
		return -1;
	}
	w->b = nb;
	w->cap = cap;
	return 0;
}

static void
put(struct jw *w, const char *s, size_t n)
{
	if (grow(w, n) != 0)
		return;
	memcpy(w->b + w->n, s, n);
	w->n += n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t k, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (k > n)
		return 0;
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

static void
put_string(struct jw *w, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run, k;

	/* Worst case 6 bytes out per byte in. */
	if (grow(w, n * 6 + 2) != 0)
		return;
	w->b[w->n++] = '"';
	while (i < n) {
		/* Copy a run of plain ASCII at once. */
		for (run = i; run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' &&
		    s[run] != '\\'; run++)
			;
		memcpy(w->b + w->n, s + i, run - i);
		w->n += run - i;
		if ((i = run) >= n)
			break;
		if (s[i] == '"' || s[i] == '\\') {
			w->b[w->n++] = '\\';
			w->b[w->n++] = (char)s[i++];
		} else if (s[i] < 0x20) {
			char *o = w->b + w->n;
			o[0] = '\\'; o[1] = 'u'; o[2] = '0'; o[3] = '0';
			o[4] = hex[s[i] >> 4]; o[5] = hex[s[i] & 15];
			w->n += 6;
			i++;
		} else if ((k = utf8_seq(s + i, n - i)) != 0) {
			memcpy(w->b + w->n, s + i, k);
			w->n += k;
			i += k;
		} else {
			memcpy(w->b + w->n, "\\ufffd", 6);
			w->n += 6;
			i++;
		}
	}
	w->b[w->n++] = '"';
}

static void
key(struct jw *w, const char *k)
{
	if (!w->first)
		put(w, ",", 1);
	w->first = 0;
	put_string(w, k, strlen(k));
	put(w, ":", 1);
}

void
jw_open(struct jw *w)
{
	memset(w, 0, sizeof(*w));
	w->first = 1;
	put(w, "{", 1);
}

void
jw_strn(struct jw *w, const char *k, const char *val, size_t len)
{
	key(w, k);
	if (val == NULL)
		put(w, "null", 4);
	else
		put_string(w, val, len);
}

void
jw_str(struct jw *w, const char *k, const char *val)
{
	jw_strn(w, k, val, val ? strlen(val) : 0);
}

void
jw_int(struct jw *w, const char *k, int64_t val)
{
	/* Digits from the end of the buffer, without snprintf: this runs
	 * several times for every event and every reply. */
	char num[24], *p = num + sizeof(num);
	uint64_t u = val < 0 ? (uint64_t)0 - (uint64_t)val : (uint64_t)val;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (val < 0)
		*--p = '-';
	key(w, k);
	put(w, p, (size_t)(num + sizeof(num) - p));
}

void
jw_null(struct jw *w, const char *k)
{
	key(w, k);
	put(w, "null", 4);
}

void
jw_bool(struct jw *w, const char *k, int val)
{
	key(w, k);
	if (val)
		put(w, "true", 4);
	else
		put(w, "false", 5);
}

void
jw_raw(struct jw *w, const char *k, const char *json, size_t len)
{
	key(w, k);
	put(w, json, len);
}

void
jw_begin_obj(struct jw *w, const char *k)
{
	key(w, k);
	put(w, "{", 1);
	w->first = 1;
}

void
jw_end_obj(struct jw *w)
{
	put(w, "}", 1);
	w->first = 0;
}

char *
jw_finish(struct jw *w, size_t *len)
{
	char *b;

	put(w, "}", 1);
	if (w->oom) {
		jw_free(w);
		return NULL;
	}
	w->b[w->n] = '\0';
	b = w->b;
	*len = w->n;
	w->b = NULL;
	w->n = w->cap = 0;
	return b;
}

void
jw_free(struct jw *w)
{
	free(w->b);
	w->b = NULL;
	w->n = w->cap = 0;
}

void
jw_printable(char *s)
{
	unsigned char *r = (unsigned char *)s, *w = r;
	size_t n = strlen(s), i = 0, k;

	while (i < n) {
		if (r[i] < 0x20 || r[i] == 0x7f) {
			*w++ = '?';
			i++;
		} else if (r[i] < 0x80) {
			*w++ = r[i++];
		} else if ((k = utf8_seq(r + i, n - i)) == 0) {
			*w++ = '?';
			i++;
		} else if (k == 2 && r[i] == 0xc2 && r[i + 1] <= 0x9f) {
			*w++ = '?';             /* C1 */
			i += 2;
		} else {
			memmove(w, r + i, k);
			w += k;
			i += k;
		}
	}
	*w = '\0';
}
