/*
 * kw_auditchain.c - the audit log's line format, hash chain and seals, and
 * the verifier.  See kw_auditchain.h for the format.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "kw_auditchain.h"
#include "kw_error.h"
#include "kw_secmem.h"

static const uint8_t zero_hash[KWAC_HASH_LEN];

/* SHA-256 fetched once: SHA256() looks the algorithm up by name at every
 * call, which was most of its cost on the audit writer (0.8 against 0.4 us
 * for a 500-byte line). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void
sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void
kwac_hash(const void *line, size_t len, uint8_t out[KWAC_HASH_LEN])
{
	pthread_once(&sha256_once, sha256_fetch);
	if (sha256_md == NULL || EVP_Digest(line, len, out, NULL, sha256_md, NULL) != 1)
		SHA256(line, len, out);   /* the slow way still gives the same hash */
}

void
kwac_hex(const uint8_t in[KWAC_HASH_LEN], char out[KWAC_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < KWAC_HASH_LEN; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[KWAC_HEX_LEN] = '\0';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
kwac_unhex(const char *hex, uint8_t out[KWAC_HASH_LEN])
{
	uint8_t tmp[KWAC_HASH_LEN];

	if (hex == NULL || strlen(hex) != KWAC_HEX_LEN)
		return KW_E_FORMAT;
	for (size_t i = 0; i < KWAC_HASH_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return KW_E_FORMAT;
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(out, tmp, sizeof(tmp));
	return 0;
}

int
kwac_seal_input(uint64_t seq, const uint8_t hash[KWAC_HASH_LEN], char *buf,
    size_t buflen)
{
	char hex[KWAC_HEX_LEN + 1];
	int n;

	kwac_hex(hash, hex);
	n = snprintf(buf, buflen, "%s %" PRIu64 " %s", KWAC_SEAL_CONTEXT, seq, hex);
	if (n < 0 || (size_t)n >= buflen)
		return -ENOBUFS;
	return n;
}

int
kwac_segment_name(unsigned index, char *buf, size_t buflen)
{
	int n = snprintf(buf, buflen, KWAC_SEGMENT_PREFIX "%010u" KWAC_SEGMENT_SUFFIX, index);

	if (n < 0 || (size_t)n >= buflen)
		return -ENAMETOOLONG;
	return 0;
}

int
kwac_segment_index(const char *name, unsigned *index)
{
	size_t plen = strlen(KWAC_SEGMENT_PREFIX), slen = strlen(KWAC_SEGMENT_SUFFIX);
	unsigned long v = 0;

	if (strlen(name) != plen + 10 + slen ||
	    strncmp(name, KWAC_SEGMENT_PREFIX, plen) != 0 ||
	    strcmp(name + plen + 10, KWAC_SEGMENT_SUFFIX) != 0)
		return -EINVAL;
	for (size_t i = plen; i < plen + 10; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(name[i] - '0');
	}
	if (v == 0 || v > 0xffffffffUL)
		return -EINVAL;
	*index = (unsigned)v;
	return 0;
}

static int
cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

int
kwac_segments_list(const char *dir, unsigned **idx, size_t *n)
{
	DIR *d;
	struct dirent *de;
	unsigned *v = NULL, *nv, ix;
	size_t cnt = 0, cap = 0;
	int r;

	if ((d = opendir(dir)) == NULL)
		return kw_fail(-errno, "cannot list the audit directory %s: %s", dir,
		    strerror(errno));
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (kwac_segment_index(de->d_name, &ix) != 0)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			if ((nv = reallocarray(v, cap, sizeof(*v))) == NULL) {
				r = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		v[cnt++] = ix;
	}
	if (errno != 0) {
		r = kw_fail(-errno, "cannot list the audit directory %s: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), cmp_unsigned);
	*idx = v;
	*n = cnt;
	v = NULL;
	r = 0;
out:
	free(v);
	closedir(d);
	return r;
}

/* ---- one line ------------------------------------------------------------ */

static int
why_set(char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
why_set(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && whylen > 0) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return KW_E_FORMAT;
}

static int
get_seq(json_t *o, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static int
get_hash(json_t *o, const char *key, uint8_t out[KWAC_HASH_LEN])
{
	return kwac_unhex(json_string_value(json_object_get(o, key)), out);
}

static void
get_str(json_t *o, const char *key, char *buf, size_t len)
{
	const char *s = json_string_value(json_object_get(o, key));

	snprintf(buf, len, "%s", s ? s : "");
}

/* ---- the writer's own line shapes, read without a JSON parser ------------- */

/* keywardend writes three shapes of line, always with the same leading
 * fields in the same order:
 *
 *   {"type":"segment","segment":I,"first_seq":N,"prev":"H","time":"T"}
 *   {"type":"seal","seq":N,"hash":"H","hmac":"M"}
 *   {"seq":N,"time":"T","prev":"H"<,the event's own fields>}
 *
 * Scanning a segment at start-up reads every line, and a JSON parse per line
 * made that take a second for a 64 MiB segment.  fast_parse() reads these
 * shapes directly; anything else (another order, an escape in a string)
 * goes to jansson as before.  It takes nothing on trust that jansson would
 * check: a line's bytes are bound by the chain hash and the seal, so a line
 * that passes verification is a line the daemon wrote, whichever parser
 * read it. */
struct cur {
	const char *p, *end;
};

static int
lit(struct cur *c, const char *s)
{
	size_t n = strlen(s);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
		return -1;
	c->p += n;
	return 0;
}

/* A JSON non-negative integer of at most INT64_MAX (as jansson takes it). */
static int
num(struct cur *c, uint64_t *v)
{
	uint64_t x = 0;
	const char *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		unsigned d = (unsigned)(*c->p - '0');
		if (x > (uint64_t)(INT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
		c->p++;
	}
	if (c->p == start || (c->p - start > 1 && *start == '0'))
		return -1;
	*v = x;
	return 0;
}

/* A string without escapes or control bytes, copied (cut) into buf. */
static int
plain_str(struct cur *c, char *buf, size_t len)
{
	const char *start;
	size_t n;

	if (lit(c, "\"") != 0)
		return -1;
	for (start = c->p; c->p < c->end && *c->p != '"'; c->p++)
		if (*c->p == '\\' || (unsigned char)*c->p < 0x20)
			return -1;
	if (c->p == c->end)
		return -1;
	n = (size_t)(c->p - start);
	if (buf != NULL && len > 0) {
		if (n >= len)
			n = len - 1;
		memcpy(buf, start, n);
		buf[n] = '\0';
	}
	c->p++;
	return 0;
}

static int
hash_str(struct cur *c, uint8_t out[KWAC_HASH_LEN])
{
	char hex[KWAC_HEX_LEN + 1];

	if ((size_t)(c->end - c->p) < KWAC_HEX_LEN + 2 || c->p[0] != '"' ||
	    c->p[KWAC_HEX_LEN + 1] != '"')
		return -1;
	memcpy(hex, c->p + 1, KWAC_HEX_LEN);
	hex[KWAC_HEX_LEN] = '\0';
	if (kwac_unhex(hex, out) != 0)
		return -1;
	c->p += KWAC_HEX_LEN + 2;
	return 0;
}

/* 1 when line has one of the writer's shapes (*out filled), 0 when not. */
static int
fast_parse(const char *line, size_t len, struct kwac_line *out)
{
	struct kwac_line l;
	struct cur c = { line, line + len };
	uint64_t v;

	memset(&l, 0, sizeof(l));
	if (len < 2 || line[len - 1] != '}')
		return 0;
	if (lit(&c, "{\"seq\":") == 0) {
		l.type = KWAC_LINE_EVENT;
		if (num(&c, &l.seq) != 0 || l.seq == 0 ||
		    lit(&c, ",\"time\":") != 0 || plain_str(&c, l.time, sizeof(l.time)) != 0 ||
		    l.time[0] == '\0' ||
		    lit(&c, ",\"prev\":") != 0 || hash_str(&c, l.prev) != 0)
			return 0;
		if (c.end - c.p == 1) {                  /* "}": no fields of its own */
			*out = l;
			return 1;
		}
		/* The event's type is its first field, or jansson finds it.
		 * A type that names another kind of line makes the line that
		 * kind, a header or a seal: jansson reads it so. */
		if (lit(&c, ",\"type\":") != 0 || plain_str(&c, l.event, sizeof(l.event)) != 0 ||
		    c.p >= c.end || (*c.p != ',' && *c.p != '}') ||
		    strcmp(l.event, "segment") == 0 || strcmp(l.event, "seal") == 0)
			return 0;
		*out = l;
		return 1;
	}
	if (lit(&c, "{\"type\":\"seal\",\"seq\":") == 0) {
		l.type = KWAC_LINE_SEAL;
		if (num(&c, &l.seq) != 0 || l.seq == 0 ||
		    lit(&c, ",\"hash\":") != 0 || hash_str(&c, l.hash) != 0 ||
		    lit(&c, ",\"hmac\":") != 0 || hash_str(&c, l.mac) != 0 ||
		    lit(&c, "}") != 0 || c.p != c.end)
			return 0;
		*out = l;
		return 1;
	}
	if (lit(&c, "{\"type\":\"segment\",\"segment\":") == 0) {
		l.type = KWAC_LINE_HEADER;
		if (num(&c, &v) != 0 || v == 0 || v > 0xffffffffULL ||
		    lit(&c, ",\"first_seq\":") != 0 || num(&c, &l.seq) != 0 || l.seq == 0 ||
		    lit(&c, ",\"prev\":") != 0 || hash_str(&c, l.prev) != 0 ||
		    lit(&c, ",\"time\":") != 0 || plain_str(&c, l.time, sizeof(l.time)) != 0 ||
		    lit(&c, "}") != 0 || c.p != c.end)
			return 0;
		l.segment = (unsigned)v;
		*out = l;
		return 1;
	}
	return 0;
}

int
kwac_line_parse(const char *line, size_t len, struct kwac_line *out,
    char *why, size_t whylen)
{
	struct kwac_line l;
	json_error_t jerr;
	json_t *o;
	const char *type;
	uint64_t v;
	int r = KW_E_FORMAT;

	if (fast_parse(line, len, out))
		return 0;
	memset(&l, 0, sizeof(l));
	if ((o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return why_set(why, whylen, "not valid JSON (column %d: %s)", jerr.column, jerr.text);
	if (!json_is_object(o)) {
		why_set(why, whylen, "not a JSON object");
		goto out;
	}
	type = json_string_value(json_object_get(o, "type"));
	if (type != NULL && strcmp(type, "segment") == 0) {
		l.type = KWAC_LINE_HEADER;
		if (get_seq(o, "segment", &v) != 0 || v == 0 || v > 0xffffffffULL) {
			why_set(why, whylen, "segment header without a valid \"segment\" index");
			goto out;
		}
		l.segment = (unsigned)v;
		if (get_seq(o, "first_seq", &l.seq) != 0 || l.seq == 0) {
			why_set(why, whylen, "segment header without a valid \"first_seq\"");
			goto out;
		}
		if (get_hash(o, "prev", l.prev) != 0) {
			why_set(why, whylen, "segment header without a valid \"prev\" hash");
			goto out;
		}
		get_str(o, "time", l.time, sizeof(l.time));
	} else if (type != NULL && strcmp(type, "seal") == 0) {
		l.type = KWAC_LINE_SEAL;
		if (get_seq(o, "seq", &l.seq) != 0 || l.seq == 0) {
			why_set(why, whylen, "seal without a valid \"seq\"");
			goto out;
		}
		if (get_hash(o, "hash", l.hash) != 0) {
			why_set(why, whylen, "seal without a valid \"hash\"");
			goto out;
		}
		if (get_hash(o, "hmac", l.mac) != 0) {
			why_set(why, whylen, "seal without a valid \"hmac\"");
			goto out;
		}
	} else {
		l.type = KWAC_LINE_EVENT;
		if (get_seq(o, "seq", &l.seq) != 0 || l.seq == 0) {
			why_set(why, whylen, "event without a valid \"seq\"");
			goto out;
		}
		if (get_hash(o, "prev", l.prev) != 0) {
			why_set(why, whylen, "event without a valid \"prev\" hash");
			goto out;
		}
		get_str(o, "time", l.time, sizeof(l.time));
		if (l.time[0] == '\0') {
			why_set(why, whylen, "event without a \"time\"");
			goto out;
		}
		get_str(o, "type", l.event, sizeof(l.event));
	}
	*out = l;
	r = 0;
out:
	json_decref(o);
	return r;
}

/* ---- lines of a file ----------------------------------------------------- */

int
kwac_lines_open(struct kwac_lines *r, const char *path)
{
	int fd;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return kw_fail(-errno, "cannot open %s: %s", path, strerror(errno));
	r->fd = fd;
	return 0;
}

int
kwac_lines_next(struct kwac_lines *r, const char **line, size_t *len,
    uint64_t *off)
{
	char *nl, *nb, *z;
	ssize_t n;

	r->at_zero = 0;
	for (;;) {
		if (r->end > r->start &&
		    (nl = memchr(r->buf + r->start, '\n', r->end - r->start)) != NULL) {
			size_t l = (size_t)(nl - (r->buf + r->start));
			*line = r->buf + r->start;
			*len = l;
			*off = r->off;
			r->start += l + 1;
			r->off += l + 1;
			return 1;
		}
		if (r->zero_held) {
			/* Nothing written past here yet: read again next time. */
			r->zero_held = 0;
			r->at_zero = 1;
			return 0;
		}
		if (r->end - r->start > KWAC_LINE_MAX)
			return kw_fail(KW_E_TOO_LARGE, "a line of the audit log is longer than %d bytes",
			    KWAC_LINE_MAX);
		/* Make room: move the partial line to the front, grow if full. */
		if (r->start > 0) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		if (r->cap - r->end < 4096) {
			size_t ncap = r->cap ? r->cap * 2 : 65536;
			if ((nb = realloc(r->buf, ncap)) == NULL)
				return -ENOMEM;
			r->buf = nb;
			r->cap = ncap;
		}
		do
			n = read(r->fd, r->buf + r->end, r->cap - r->end);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return kw_fail(-errno, "cannot read the audit log: %s", strerror(errno));
		if (n == 0) {
			r->eof = 1;
			return 0;
		}
		if ((z = memchr(r->buf + r->end, '\0', (size_t)n)) != NULL) {
			/* Keep what comes before the zero byte; the next read
			 * starts at it. */
			size_t keep = (size_t)(z - (r->buf + r->end));
			if (lseek(r->fd, -(off_t)((size_t)n - keep), SEEK_CUR) < 0)
				return kw_fail(-errno, "cannot read the audit log: %s", strerror(errno));
			n = (ssize_t)keep;
			r->zero_held = 1;
		}
		r->end += (size_t)n;
	}
}

int
kwac_lines_skip_zeros(struct kwac_lines *r, uint64_t *zero_from, uint64_t *data_at)
{
	char buf[65536];
	uint64_t from = r->off + (r->end - r->start), pos = from;
	ssize_t n;

	for (;;) {
		do
			n = pread(r->fd, buf, sizeof(buf), (off_t)pos);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return kw_fail(-errno, "cannot read the audit log: %s", strerror(errno));
		if (n == 0)
			return 0;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != '\0') {
				pos += (uint64_t)i;
				if (lseek(r->fd, (off_t)pos, SEEK_SET) < 0)
					return kw_fail(-errno, "cannot read the audit log: %s",
					    strerror(errno));
				r->start = r->end = 0;
				r->off = pos;
				r->at_zero = r->zero_held = 0;
				if (zero_from != NULL)
					*zero_from = from;
				if (data_at != NULL)
					*data_at = pos;
				return 1;
			}
		pos += (uint64_t)n;
	}
}

int
kwac_data_end(int fd, uint64_t *end)
{
	char buf[65536];
	struct stat st;
	uint64_t pos;
	ssize_t n;

	if (fstat(fd, &st) != 0)
		return -errno;
	pos = (uint64_t)st.st_size;
	while (pos > 0) {
		size_t want = pos < sizeof(buf) ? (size_t)pos : sizeof(buf);
		do
			n = pread(fd, buf, want, (off_t)(pos - want));
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return -errno;
		if ((size_t)n != want)
			return -EIO;   /* it shrank meanwhile */
		for (size_t i = want; i > 0; i--)
			if (buf[i - 1] != '\0') {
				*end = pos - want + i;
				return 0;
			}
		pos -= want;
	}
	*end = 0;
	return 0;
}

size_t
kwac_lines_partial(const struct kwac_lines *r)
{
	return r->end - r->start;
}

void
kwac_lines_close(struct kwac_lines *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

/* ---- the anchor ------------------------------------------------------------ */

void
kwac_anchor_label(const char *dir, char buf[KWAC_ANCHOR_LABEL_MAX])
{
	uint8_t h[KWAC_HASH_LEN];
	char hex[KWAC_HEX_LEN + 1];
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	kwac_hash(dir, n, h);
	kwac_hex(h, hex);
	snprintf(buf, KWAC_ANCHOR_LABEL_MAX, "%s%.16s", KWAC_ANCHOR_LABEL_PREFIX, hex);
}

int
kwac_anchor_format(const struct kwac_anchor *a, char *buf, size_t len)
{
	char hex[KWAC_HEX_LEN + 1], mhex[KWAC_HEX_LEN + 1];
	int n;

	kwac_hex(a->hash, hex);
	kwac_hex(a->mac, mhex);
	n = snprintf(buf, len, "%s %" PRIu64 " %s %s", KWAC_ANCHOR_CONTEXT, a->seq, hex, mhex);
	if (n < 0 || (size_t)n >= len)
		return -ENOBUFS;
	return n;
}

int
kwac_anchor_parse(const char *s, size_t len, struct kwac_anchor *out)
{
	char buf[KWAC_ANCHOR_TEXT_MAX], hex[KWAC_HEX_LEN + 1], mhex[KWAC_HEX_LEN + 1];
	const char *p;
	char *end;
	struct kwac_anchor a;
	size_t cl = strlen(KWAC_ANCHOR_CONTEXT);
	unsigned long long seq;

	if (len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
		return kw_fail(KW_E_FORMAT, "the audit anchor is not one line of text");
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (strncmp(buf, KWAC_ANCHOR_CONTEXT " ", cl + 1) != 0)
		return kw_fail(KW_E_FORMAT, "the audit anchor does not start with \"%s\"",
		    KWAC_ANCHOR_CONTEXT);
	p = buf + cl + 1;
	if (*p < '1' || *p > '9')
		return kw_fail(KW_E_FORMAT, "the audit anchor's seq is not a number from 1");
	errno = 0;
	seq = strtoull(p, &end, 10);
	if (errno != 0 || *end != ' ' || seq > INT64_MAX)
		return kw_fail(KW_E_FORMAT, "the audit anchor's seq is out of range");
	p = end + 1;
	if (strlen(p) != 2 * KWAC_HEX_LEN + 1 || p[KWAC_HEX_LEN] != ' ')
		return kw_fail(KW_E_FORMAT, "the audit anchor's hash and HMAC are not 64 hex digits each");
	memcpy(hex, p, KWAC_HEX_LEN);
	hex[KWAC_HEX_LEN] = '\0';
	memcpy(mhex, p + KWAC_HEX_LEN + 1, KWAC_HEX_LEN);
	mhex[KWAC_HEX_LEN] = '\0';
	a.seq = seq;
	if (kwac_unhex(hex, a.hash) != 0 || kwac_unhex(mhex, a.mac) != 0)
		return kw_fail(KW_E_FORMAT, "the audit anchor's hash and HMAC are not 64 hex digits each");
	*out = a;
	return 0;
}

int
kwac_segment_first_seq(const char *path, uint64_t *first)
{
	struct kwac_lines lr;
	struct kwac_line l;
	const char *text;
	size_t len;
	uint64_t off;
	int r;

	if ((r = kwac_lines_open(&lr, path)) != 0)
		return kw_fail(r, "cannot read %s: %s", path, strerror(-r));
	r = kwac_lines_next(&lr, &text, &len, &off);
	if (r == 1 && kwac_line_parse(text, len, &l, NULL, 0) == 0 &&
	    l.type == KWAC_LINE_HEADER) {
		*first = l.seq;
		r = 0;
	} else if (r >= 0)
		r = kw_fail(KW_E_FORMAT, "%s does not start with a segment header", path);
	else
		r = kw_fail(r, "cannot read %s: %s", path, kw_errdetail(r));
	kwac_lines_close(&lr);
	return r;
}

int
kwac_event_hash(const char *dir, uint64_t seq, uint8_t out[KWAC_HASH_LEN])
{
	unsigned *idx = NULL;
	size_t n = 0, i;
	char path[1024], name[64];
	struct kwac_lines lr;
	struct kwac_line l;
	const char *text;
	size_t len;
	uint64_t off, first = 0;
	int r;

	memset(&lr, 0, sizeof(lr));
	lr.fd = -1;
	if ((r = kwac_segments_list(dir, &idx, &n)) != 0)
		return kw_fail(r, "cannot list the audit directory %s: %s", dir, strerror(-r));
	/* The last segment whose header starts at or before seq. */
	for (i = n; i > 0; i--) {
		kwac_segment_name(idx[i - 1], name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		r = kwac_segment_first_seq(path, &first);
		if (r == KW_E_FORMAT && i == n)
			continue;       /* a last segment without its header yet */
		if (r != 0)
			goto out;
		if (first <= seq)
			break;
	}
	if (i == 0) {
		r = kw_fail(KW_E_NOT_FOUND, "no segment of %s holds seq %" PRIu64, dir, seq);
		goto out;
	}
	if ((r = kwac_lines_open(&lr, path)) != 0) {
		r = kw_fail(r, "cannot read %s: %s", path, strerror(-r));
		goto out;
	}
	for (;;) {
		if ((r = kwac_lines_next(&lr, &text, &len, &off)) < 0) {
			r = kw_fail(r, "cannot read %s: %s", path, kw_errdetail(r));
			goto out;
		}
		if (r == 0)
			break;
		if (kwac_line_parse(text, len, &l, NULL, 0) != 0 || l.type != KWAC_LINE_EVENT)
			continue;
		if (l.seq == seq) {
			kwac_hash(text, len, out);
			r = 0;
			goto out;
		}
		if (l.seq > seq)
			break;
	}
	r = i == n ? kw_fail(KW_E_NOT_FOUND, "the audit log in %s ends before seq %" PRIu64, dir, seq) :
	    kw_fail(KW_E_FORMAT, "segment %s should hold seq %" PRIu64 " but does not", path, seq);
out:
	kwac_lines_close(&lr);
	free(idx);
	return r;
}

/* ---- the chain ----------------------------------------------------------- */

/* Where a line is, for reports. */
struct where {
	char file[512];
	unsigned long line;
	uint64_t seq;
	int header;
};

struct chain {
	const struct kwac_verify_opts *opt;
	struct kwac_result *res;
	int started;
	int anywhere;            /* accept the first header's prev and first_seq */
	uint8_t last[KWAC_HASH_LEN];
	uint64_t last_seq;       /* seq of the last event (first_seq - 1 before any) */
	struct where last_at;    /* the last chained line */
	const char *file;        /* current file */
	unsigned index;          /* current segment (0: any) */
	enum kwac_line_type step;   /* type of the line chain_step() passed last */
	uint8_t step_mac[KWAC_MAC_LEN];  /* its HMAC, when it was a seal */
	/* The chain as it stood after the last header or seal of the file:
	 * where a writer may go on from, everything after being unacknowledged. */
	uint64_t cut_off, cut_next;
	unsigned long cut_lines;
	uint8_t cut_last[KWAC_HASH_LEN];
	int cut_sealed;          /* the cut is after a seal, not the header */
	uint8_t cut_mac[KWAC_MAC_LEN];
	struct where unsealed_at;   /* the first event after the last seal (line 0: none) */
};

static int
broke(struct chain *c, enum kwac_problem p, const char *file, unsigned long line,
    uint64_t seq, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static int
broke(struct chain *c, enum kwac_problem p, const char *file, unsigned long line,
    uint64_t seq, const char *fmt, ...)
{
	struct kwac_result *res = c->res;
	va_list ap;

	res->ok = 0;
	res->problem = p;
	snprintf(res->file, sizeof(res->file), "%s", file);
	res->line = line;
	res->seq = seq;
	va_start(ap, fmt);
	vsnprintf(res->what, sizeof(res->what), fmt, ap);
	va_end(ap);
	return KW_E_AUTH;
}

static void
chained(struct chain *c, const uint8_t hash[KWAC_HASH_LEN], unsigned long lineno,
    uint64_t seq, int header)
{
	memcpy(c->last, hash, KWAC_HASH_LEN);
	snprintf(c->last_at.file, sizeof(c->last_at.file), "%s", c->file);
	c->last_at.line = lineno;
	c->last_at.seq = seq;
	c->last_at.header = header;
}

/* Check one whole line against the chain so far.  0, or KW_E_AUTH with the
 * break recorded in c->res. */
static int
chain_step(struct chain *c, const char *text, size_t len, unsigned long lineno)
{
	struct kwac_result *res = c->res;
	struct kwac_line l;
	uint8_t h[KWAC_HASH_LEN];
	char why[200], in[128];
	uint64_t expect = c->last_seq + 1;
	int n, r;

	if (kwac_line_parse(text, len, &l, why, sizeof(why)) != 0)
		return broke(c, KWAC_P_JSON, c->file, lineno, c->started ? expect : 0,
		    "%s", why);
	if (lineno == 1 && l.type != KWAC_LINE_HEADER)
		return broke(c, KWAC_P_HEADER, c->file, lineno, l.type == KWAC_LINE_EVENT ? l.seq : 0,
		    "the segment does not start with its header line");
	kwac_hash(text, len, h);
	res->lines++;
	c->step = l.type;

	switch (l.type) {
	case KWAC_LINE_HEADER:
		if (lineno != 1)
			return broke(c, KWAC_P_HEADER, c->file, lineno, expect,
			    "a segment header in the middle of a segment: lines were moved here from another segment");
		if (c->index != 0 && l.segment != c->index)
			return broke(c, KWAC_P_HEADER, c->file, lineno, l.seq,
			    "the header names segment %u but the file is segment %u: segment files were renamed or swapped",
			    l.segment, c->index);
		if (!c->started && c->anywhere) {
			c->started = 1;
		} else if (!c->started) {
			c->started = 1;
			if (memcmp(l.prev, zero_hash, KWAC_HASH_LEN) != 0 || l.seq != 1)
				return broke(c, KWAC_P_LINK, c->file, lineno, l.seq,
				    "the first segment's header links to an earlier segment (first_seq %" PRIu64 "): the start of the log is missing",
				    l.seq);
		} else {
			if (memcmp(l.prev, c->last, KWAC_HASH_LEN) != 0)
				return broke(c, KWAC_P_LINK, c->file, lineno, l.seq,
				    "the header does not link to the last line of the previous segment (%s line %lu): a segment was removed, replaced or reordered",
				    c->last_at.file, c->last_at.line);
			if (l.seq != expect)
				return broke(c, KWAC_P_SEQ, c->file, lineno, l.seq,
				    "the header says the segment starts at seq %" PRIu64 " but the previous one ended at seq %" PRIu64,
				    l.seq, c->last_seq);
		}
		c->last_seq = l.seq - 1;
		chained(c, h, lineno, 0, 1);
		return 0;

	case KWAC_LINE_EVENT:
		if (l.seq != expect) {
			if (l.seq > expect)
				return broke(c, KWAC_P_SEQ, c->file, lineno, l.seq,
				    "seq %" PRIu64 " where %" PRIu64 " was expected: the events %" PRIu64 "..%" PRIu64 " are missing here (deleted, or moved further down)",
				    l.seq, expect, expect, l.seq - 1);
			return broke(c, KWAC_P_SEQ, c->file, lineno, l.seq,
			    "seq %" PRIu64 " where %" PRIu64 " was expected: this line was inserted, repeated or moved",
			    l.seq, expect);
		}
		if (memcmp(l.prev, c->last, KWAC_HASH_LEN) != 0) {
			if (c->last_at.header)
				return broke(c, KWAC_P_LINK, c->last_at.file, c->last_at.line, l.seq,
				    "the segment header was altered: its hash is not the prev recorded by the next line (line %lu, seq %" PRIu64 ")",
				    lineno, l.seq);
			return broke(c, KWAC_P_LINK, c->last_at.file, c->last_at.line, c->last_at.seq,
			    "this line was altered: its hash is not the prev recorded by the next event (line %lu, seq %" PRIu64 "), or that event's prev was altered",
			    lineno, l.seq);
		}
		if (c->opt != NULL && c->opt->anchor != NULL && l.seq == c->opt->anchor->seq) {
			if (memcmp(h, c->opt->anchor->hash, KWAC_HASH_LEN) != 0)
				return broke(c, KWAC_P_ANCHOR, c->file, lineno, l.seq,
				    "this is not the event the token's audit anchor records at seq %" PRIu64 ": the log was rewritten or replaced from here back",
				    l.seq);
			res->anchor_checked = 1;
		}
		c->last_seq = l.seq;
		chained(c, h, lineno, l.seq, 0);
		if (c->unsealed_at.line == 0)
			c->unsealed_at = c->last_at;
		res->events++;
		if (res->first_seq == 0)
			res->first_seq = l.seq;
		res->last_seq = l.seq;
		if (strcmp(l.event, KWAC_TORN_EVENT) == 0) {
			res->torn_events++;
			res->torn_seq = l.seq;
		}
		return 0;

	case KWAC_LINE_SEAL:
		if (c->last_at.header || l.seq != c->last_seq)
			return broke(c, KWAC_P_SEAL, c->file, lineno, l.seq,
			    "a seal for seq %" PRIu64 " follows %s: seals must follow the event they seal",
			    l.seq, c->last_at.header ? "the segment header" : "another event");
		if (memcmp(l.hash, c->last, KWAC_HASH_LEN) != 0)
			return broke(c, KWAC_P_LINK, c->last_at.file, c->last_at.line, c->last_at.seq,
			    "this line was altered: its hash is not the one the seal on line %lu records",
			    lineno);
		if (c->opt != NULL && c->opt->check != NULL) {
			if ((n = kwac_seal_input(l.seq, l.hash, in, sizeof(in))) < 0)
				return broke(c, KWAC_P_SEAL, c->file, lineno, l.seq, "seal input too long");
			r = c->opt->check(c->opt->arg, (const uint8_t *)in, (size_t)n, l.mac);
			if (r == KW_E_AUTH)
				return broke(c, KWAC_P_SEAL_MAC, c->file, lineno, l.seq,
				    "the seal's HMAC is wrong: the chain up to seq %" PRIu64 " was rewritten without the audit key, or the seal was forged",
				    l.seq);
			if (r != 0)
				return broke(c, KWAC_P_SEAL_UNCHECKED, c->file, lineno, l.seq,
				    "the seal's HMAC could not be checked: %s", kw_errdetail(r));
			res->seals_checked = 1;
		}
		res->seals++;
		res->sealed_seq = l.seq;
		memcpy(c->step_mac, l.mac, KWAC_MAC_LEN);
		c->unsealed_at.line = 0;
		return 0;
	}
	return broke(c, KWAC_P_JSON, c->file, lineno, 0, "unknown line type");
}

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* Walk one segment file through the chain.  *good_end gets the offset after
 * the last line that passed.  0 or KW_E_AUTH (break in c->res). */
static int
chain_file(struct chain *c, const char *path, int last, uint64_t *good_end,
    unsigned long *nlines)
{
	struct kwac_lines lr;
	const char *text;
	size_t len;
	uint64_t off;
	unsigned long lineno = 0;
	int r;

	*good_end = 0;
	*nlines = 0;
	c->file = path;
	if ((r = kwac_lines_open(&lr, path)) != 0)
		return broke(c, KWAC_P_IO, path, 0, 0, "cannot open: %s", strerror(-r));
	for (;;) {
		r = kwac_lines_next(&lr, &text, &len, &off);
		if (r < 0) {
			r = broke(c, KWAC_P_IO, path, lineno + 1, 0, "%s", kw_errdetail(r));
			break;
		}
		if (r == 0 && lr.at_zero) {
			/* Zero bytes: the active segment's preallocated tail
			 * when nothing but zeros follows; anything else was
			 * overwritten or damaged. */
			uint64_t zfrom = 0, dat = 0;
			int z = kwac_lines_skip_zeros(&lr, &zfrom, &dat);
			if (z < 0) {
				r = broke(c, KWAC_P_IO, path, lineno + 1, 0, "%s", kw_errdetail(z));
				break;
			}
			if (z == 1) {
				r = broke(c, KWAC_P_TORN, path, lineno + 1, c->last_seq + 1,
				    "zero bytes from offset %" PRIu64 " to %" PRIu64 " with data after them: a torn write or overwritten data",
				    zfrom, dat);
				break;
			}
			if (!last) {
				struct stat zst;
				r = broke(c, KWAC_P_TORN, path, lineno + 1, c->last_seq + 1,
				    "the segment ends in %" PRIu64 " zero bytes: only the last segment, still being written, may",
				    fstat(lr.fd, &zst) == 0 ? (uint64_t)zst.st_size - zfrom : 0);
				break;
			}
		}
		if (r == 0) {
			if (kwac_lines_partial(&lr) > 0 && last && c->res->live)
				c->res->pending_bytes = kwac_lines_partial(&lr);
			else if (kwac_lines_partial(&lr) > 0)
				r = broke(c, KWAC_P_TORN, path, lineno + 1, c->last_seq + 1,
				    "the last line is cut short (%zu bytes without an end of line): a torn write",
				    kwac_lines_partial(&lr));
			else if (lineno == 0 && !last)
				r = broke(c, KWAC_P_TORN, path, 1, c->last_seq + 1,
				    "the segment is empty: its header was never written");
			/* An empty last segment: created, its first write
			 * failed or is under way.  Nothing to check. */
			break;
		}
		lineno++;
		if ((r = chain_step(c, text, len, lineno)) != 0)
			break;
		*good_end = off + len + 1;
		*nlines = lineno;
		if (c->step != KWAC_LINE_EVENT) {
			c->cut_off = off + len + 1;
			c->cut_lines = lineno;
			c->cut_next = c->last_seq + 1;
			memcpy(c->cut_last, c->last, KWAC_HASH_LEN);
			c->cut_sealed = c->step == KWAC_LINE_SEAL;
			if (c->cut_sealed)
				memcpy(c->cut_mac, c->step_mac, KWAC_MAC_LEN);
		}
	}
	kwac_lines_close(&lr);
	return r;
}

int
kwac_segment_scan(const char *path, unsigned index, struct kwac_scan *out)
{
	struct kwac_result res;
	struct chain c;
	struct kwac_scan s;
	struct kwac_lines lr;
	const char *text;
	size_t len;
	uint64_t off;
	struct kwac_line l;
	int fd, r;

	memset(&s, 0, sizeof(s));
	memset(&res, 0, sizeof(res));
	memset(&c, 0, sizeof(c));
	c.res = &res;
	c.anywhere = 1;
	c.index = index;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return kw_fail(-errno, "cannot read %s: %s", path, strerror(errno));
	r = kwac_data_end(fd, &s.size);
	close(fd);
	if (r != 0)
		return kw_fail(r, "cannot read %s: %s", path, strerror(-r));
	r = chain_file(&c, path, 1, &s.good_end, &s.lines);
	if (res.problem == KWAC_P_IO)
		return kw_fail(-EIO, "cannot read %s: %s", path, res.what);
	if (r != 0)
		snprintf(s.why, sizeof(s.why), "line %lu: %s", res.line, res.what);
	else if (c.cut_off < s.good_end)
		snprintf(s.why, sizeof(s.why),
		    "line %lu: events after the last seal: their write was cut short before its seal, so they were never acknowledged",
		    c.cut_lines + 1);
	/* Go on from the last seal (or the header): a batch ends with its
	 * seal, so events after it belong to a write that never completed. */
	s.good_end = c.cut_off;
	s.lines = c.cut_lines;
	s.torn = s.good_end < s.size;
	if (s.lines > 0) {
		/* The header is line 1 and passed: read it back for its fields. */
		if ((r = kwac_lines_open(&lr, path)) != 0)
			return r;
		r = kwac_lines_next(&lr, &text, &len, &off);
		if (r == 1 && kwac_line_parse(text, len, &l, NULL, 0) == 0 &&
		    l.type == KWAC_LINE_HEADER) {
			s.has_header = 1;
			s.segment = l.segment;
			s.first_seq = l.seq;
			memcpy(s.header_prev, l.prev, KWAC_HASH_LEN);
			memcpy(s.header_time, l.time, sizeof(s.header_time));
		}
		kwac_lines_close(&lr);
		if (!s.has_header)
			return kw_fail(-EIO, "%s changed while it was read", path);
	}
	s.next_seq = c.cut_next;
	memcpy(s.last, c.cut_last, KWAC_HASH_LEN);
	s.sealed = c.cut_sealed;
	memcpy(s.seal_mac, c.cut_mac, KWAC_MAC_LEN);
	*out = s;
	return 0;
}

/* ---- verification -------------------------------------------------------- */

int
kwac_dir_writer_active(const char *dir)
{
	int fd, active = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) != 0)
		active = errno == EWOULDBLOCK;
	close(fd);       /* drops the lock, if taken */
	return active;
}

/* The directory of a segment file, for its writer's lock. */
static int
writer_active_for(const char *path)
{
	char dir[1024];
	const char *s = strrchr(path, '/');

	if (s == NULL)
		return kwac_dir_writer_active(".");
	if ((size_t)(s - path) >= sizeof(dir))
		return 0;
	if (s == path)
		return kwac_dir_writer_active("/");
	memcpy(dir, path, (size_t)(s - path));
	dir[s - path] = '\0';
	return kwac_dir_writer_active(dir);
}

static int
verify_files(const char *const *paths, size_t n, const struct kwac_verify_opts *opt,
    int live, struct kwac_result *res)
{
	struct chain c;
	unsigned idx, prev_idx = 0;
	uint64_t good_end;
	unsigned long nlines;
	char hex[KWAC_HEX_LEN + 1];
	int r = 0;

	memset(res, 0, sizeof(*res));
	memset(&c, 0, sizeof(c));
	c.opt = opt;
	c.res = res;
	c.anywhere = opt != NULL && opt->partial;
	res->ok = 1;
	res->live = live;
	if (opt != NULL && opt->anchor != NULL) {
		res->anchor_seq = opt->anchor->seq;
		if (opt->check != NULL) {
			char in[128];
			int k = kwac_seal_input(opt->anchor->seq, opt->anchor->hash, in, sizeof(in));

			if (k < 0)
				return broke(&c, KWAC_P_ANCHOR, "", 0, opt->anchor->seq, "seal input too long");
			r = opt->check(opt->arg, (const uint8_t *)in, (size_t)k, opt->anchor->mac);
			if (r == KW_E_AUTH)
				return broke(&c, KWAC_P_ANCHOR, "the token's anchor", 0, opt->anchor->seq,
				    "the token's audit anchor (seq %" PRIu64 ") was not made by the audit key",
				    opt->anchor->seq);
			if (r != 0)
				return broke(&c, KWAC_P_SEAL_UNCHECKED, "the token's anchor", 0,
				    opt->anchor->seq, "the audit anchor's HMAC could not be checked: %s",
				    kw_errdetail(r));
		}
	}
	if (n == 0 && (opt == NULL || opt->anchor == NULL)) {
		broke(&c, KWAC_P_EMPTY, "", 0, 0, "no audit segment to verify");
		return KW_E_AUTH;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		if (kwac_segment_index(base_name(paths[i]), &idx) != 0) {
			r = broke(&c, KWAC_P_HEADER, paths[i], 0, 0,
			    "not a segment file name (expected audit-NNNNNNNNNN.jsonl)");
			break;
		}
		if (i == 0 && idx != 1 && !c.anywhere) {
			r = broke(&c, KWAC_P_SEGMENT_MISSING, paths[i], 0, 0,
			    "the log starts at segment %u: segments 1..%u are missing (verify with the partial option if retention removed them)",
			    idx, idx - 1);
			break;
		}
		if (i > 0 && idx != prev_idx + 1) {
			r = broke(&c, KWAC_P_SEGMENT_MISSING, paths[i], 0, c.last_seq + 1,
			    idx > prev_idx + 1 ?
			    "segment %u follows segment %u: the segment(s) between were deleted" :
			    "segment %u follows segment %u: the segments are out of order",
			    idx, prev_idx);
			break;
		}
		c.index = idx;
		r = chain_file(&c, paths[i], i + 1 == n, &good_end, &nlines);
		res->segments++;
		if (res->first_segment == 0)
			res->first_segment = idx;
		res->last_segment = idx;
		prev_idx = idx;
	}
	if (res->last_seq >= res->sealed_seq && res->events > 0)
		res->unsealed = res->last_seq - (res->sealed_seq ? res->sealed_seq : res->first_seq - 1);
	if (r == 0 && opt != NULL && opt->anchor != NULL && !res->anchor_checked &&
	    (res->events == 0 || res->last_seq < opt->anchor->seq)) {
		/* The anchor was written after its event was durable: a log
		 * that ends before it lost its tail, whatever its seals say. */
		r = broke(&c, KWAC_P_CUT, n > 0 ? paths[n - 1] : "", 0,
		    res->events > 0 ? res->last_seq + 1 : 1,
		    "the log ends at seq %" PRIu64 ", but the token's audit anchor records seq %" PRIu64 " as sealed: events %" PRIu64 "..%" PRIu64 " were cut off, or an older copy of the log was put back",
		    res->last_seq, opt->anchor->seq, res->last_seq + 1, opt->anchor->seq);
	}
	if (r == 0 && res->unsealed > 0 && !live) {
		/* Every commit ends with its seal, and a crash mid-commit is cut
		 * off and recorded at the next start: at rest, the log ends with
		 * a seal.  Reported where the unsealed events begin. */
		char sealed[64];
		if (res->sealed_seq > 0)
			snprintf(sealed, sizeof(sealed), "the last seal at seq %" PRIu64, res->sealed_seq);
		else
			snprintf(sealed, sizeof(sealed), "the start of the log (it holds no seal)");
		r = broke(&c, KWAC_P_UNSEALED, c.unsealed_at.file, c.unsealed_at.line,
		    c.unsealed_at.seq,
		    "%" PRIu64 " event(s) after %s are not sealed: the log was cut or forged after its last seal, or the daemon crashed mid-commit and has not been started since",
		    res->unsealed, sealed);
	}
	kwac_hex(c.last, hex);
	memcpy(res->last_hash, hex, sizeof(hex));
	return r == 0 ? 0 : KW_E_AUTH;
}

int
kwac_verify_files(const char *const *paths, size_t n,
    const struct kwac_verify_opts *opt, struct kwac_result *res)
{
	int live = opt != NULL ? opt->live : KWAC_LIVE_NO, r;

	if (live == KWAC_LIVE_AUTO)
		live = n > 0 && writer_active_for(paths[n - 1]) ? KWAC_LIVE_YES : KWAC_LIVE_NO;
	else
		live = live != KWAC_LIVE_NO;
	r = verify_files(paths, n, opt, live, res);
	/* A daemon that started while the log was read may have been
	 * writing its end: what looked cut there is its write under way. */
	if (r == KW_E_AUTH && !live && opt != NULL && opt->live == KWAC_LIVE_AUTO &&
	    (res->problem == KWAC_P_UNSEALED || res->problem == KWAC_P_TORN) &&
	    writer_active_for(paths[n - 1]))
		r = verify_files(paths, n, opt, KWAC_LIVE_YES, res);
	return r;
}

static int
verify_dir_once(const char *dir, const struct kwac_verify_opts *opt,
    struct kwac_result *res)
{
	unsigned *idx = NULL;
	size_t n = 0, i;
	char **paths = NULL, name[64];
	int r;

	memset(res, 0, sizeof(*res));
	if ((r = kwac_segments_list(dir, &idx, &n)) != 0) {
		res->problem = KWAC_P_IO;
		snprintf(res->file, sizeof(res->file), "%s", dir);
		snprintf(res->what, sizeof(res->what), "%s", kw_errdetail(r));
		return r;
	}
	if ((paths = calloc(n ? n : 1, sizeof(*paths))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		kwac_segment_name(idx[i], name, sizeof(name));
		if (asprintf(&paths[i], "%s/%s", dir, name) < 0) {
			paths[i] = NULL;
			r = -ENOMEM;
			goto out;
		}
	}
	r = kwac_verify_files((const char *const *)paths, n, opt, res);
out:
	for (i = 0; paths != NULL && i < n; i++)
		free(paths[i]);
	free(paths);
	free(idx);
	return r;
}

int
kwac_verify_dir(const char *dir, const struct kwac_verify_opts *opt,
    struct kwac_result *res)
{
	int r = verify_dir_once(dir, opt, res);

	/* While the writer works, a read can catch a batch half copied into
	 * the preallocated zeros (a later page already written, an earlier
	 * one not yet): zeros with data after them, that a moment later are
	 * a whole batch.  Look again once before calling it torn. */
	if (r != 0 && res->live && res->problem == KWAC_P_TORN) {
		usleep(50 * 1000);
		r = verify_dir_once(dir, opt, res);
	}
	return r;
}

const char *
kwac_problem_name(enum kwac_problem p)
{
	switch (p) {
	case KWAC_OK: return "ok";
	case KWAC_P_IO: return "io";
	case KWAC_P_EMPTY: return "empty";
	case KWAC_P_JSON: return "json";
	case KWAC_P_HEADER: return "header";
	case KWAC_P_SEGMENT_MISSING: return "segment-missing";
	case KWAC_P_SEQ: return "seq";
	case KWAC_P_LINK: return "link";
	case KWAC_P_SEAL: return "seal";
	case KWAC_P_SEAL_MAC: return "seal-mac";
	case KWAC_P_SEAL_UNCHECKED: return "seal-unchecked";
	case KWAC_P_TORN: return "torn";
	case KWAC_P_UNSEALED: return "unsealed";
	case KWAC_P_CUT: return "cut";
	case KWAC_P_ANCHOR: return "anchor";
	}
	return "unknown";
}

int
kwac_result_format(const struct kwac_result *res, char *buf, size_t len)
{
	char tail[200] = "", torn[120] = "", anchor[200] = "";
	int n;

	if (res->unsealed > 0 && res->ok)
		snprintf(tail, sizeof(tail),
		    "\n  %" PRIu64 " event(s) after the last seal (seq %" PRIu64 "..%" PRIu64 ") are not sealed yet: the daemon is writing them",
		    res->unsealed, res->last_seq - res->unsealed + 1, res->last_seq);
	if (res->torn_events > 0)
		snprintf(torn, sizeof(torn),
		    "\n  %" PRIu64 " torn tail(s) recorded after a crash (last at seq %" PRIu64 ")",
		    res->torn_events, res->torn_seq);
	if (res->anchor_seq > 0 && res->anchor_checked)
		snprintf(anchor, sizeof(anchor),
		    "\n  the token's anchor (seq %" PRIu64 ") is in the log: its end was not cut before that",
		    res->anchor_seq);
	else if (res->anchor_seq > 0)
		snprintf(anchor, sizeof(anchor),
		    "\n  the token's anchor (seq %" PRIu64 ") is older than the segments kept: not checked",
		    res->anchor_seq);
	if (res->ok)
		n = snprintf(buf, len,
		    "audit log intact: %u segment(s) %u..%u, %" PRIu64 " event(s) seq %" PRIu64 "..%" PRIu64
		    ", %" PRIu64 " seal(s)%s%s%s%s%s\n",
		    res->segments, res->first_segment, res->last_segment, res->events,
		    res->first_seq, res->last_seq, res->seals,
		    res->seals_checked ? " with their HMACs checked" :
		    res->seals > 0 ? " (HMACs NOT checked: no audit key given)" : "",
		    res->live ? "\n  read while a daemon writes it: its unfinished last write is not a break" : "",
		    tail, torn, anchor);
	else {
		char at[40] = "";
		if (res->seq)
			snprintf(at, sizeof(at), ", seq %" PRIu64, res->seq);
		n = snprintf(buf, len,
		    "audit log BROKEN (%s) at %s line %lu%s: %s\n"
		    "  read before the break: %u segment(s), %" PRIu64 " event(s), %" PRIu64 " seal(s)%s\n",
		    kwac_problem_name(res->problem), res->file[0] ? res->file : "-", res->line,
		    at, res->what, res->segments, res->events, res->seals, torn);
	}
	return n;
}

json_t *
kwac_result_json(const struct kwac_result *res)
{
	json_t *o, *brk = json_null();

	if (!res->ok)
		brk = json_pack("{s:s,s:s,s:I,s:I,s:s}", "problem", kwac_problem_name(res->problem),
		    "file", res->file, "line", (json_int_t)res->line, "seq", (json_int_t)res->seq,
		    "what", res->what);
	o = json_pack("{s:b,s:o*,s:b,s:i,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I,s:I,s:s}",
	    "ok", res->ok, "break", brk, "live", res->live, "segments", (int)res->segments,
	    "lines", (json_int_t)res->lines, "events", (json_int_t)res->events,
	    "seals", (json_int_t)res->seals, "first_seq", (json_int_t)res->first_seq,
	    "last_seq", (json_int_t)res->last_seq, "seals_checked", res->seals_checked,
	    "sealed_seq", (json_int_t)res->sealed_seq, "unsealed", (json_int_t)res->unsealed,
	    "torn_tails", (json_int_t)res->torn_events, "last_hash", res->last_hash);
	if (o != NULL && res->anchor_seq > 0 &&
	    json_object_set_new(o, "anchor", json_pack("{s:I,s:b}", "seq",
	    (json_int_t)res->anchor_seq, "checked", res->anchor_checked)) != 0) {
		json_decref(o);
		o = NULL;
	}
	return o;
}
