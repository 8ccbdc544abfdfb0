/*
 * http_parse.c - request heads and chunked bodies (see http_parse.h).
 *
 * Everything is bounded by the caller's buffer; every length is checked
 * before the byte it covers is read; numbers are parsed without overflow.
 * Anything ambiguous that a proxy or another server could read otherwise
 * (the root of request smuggling) is refused rather than guessed at.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "daemon/http_parse.h"

/* RFC 9110 tchar. */
static int
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Bytes allowed in a header value (field-vchar, SP, HTAB, obs-text). */
static int
is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The end of the line that starts at p: the index of its '\n' in
 * buf[p..len), or -1 if it is not there yet. */
static long
line_end(const char *buf, size_t p, size_t len)
{
	const char *nl = memchr(buf + p, '\n', len - p);
	return nl == NULL ? -1 : (long)(nl - buf);
}

/* Does [s, s+n) equal word, ignoring case? */
static int
eq_ci(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

static int
method_of(const char *s, size_t n)
{
	static const struct { const char *w; int m; } ms[] = {
		{ "GET", KWH_GET }, { "HEAD", KWH_HEAD }, { "PUT", KWH_PUT },
		{ "POST", KWH_POST }, { "DELETE", KWH_DELETE }, { "PATCH", KWH_PATCH },
	};
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
		if (strlen(ms[i].w) == n && memcmp(ms[i].w, s, n) == 0)
			return ms[i].m;
	return 0;
}

/* Trim optional white space from both ends of [*s, *s+*n). */
static void
trim_ows(const char **s, size_t *n)
{
	while (*n > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
}

/* Does the comma-separated list [s, s+n) hold token (ignoring case)? */
static int
list_has(const char *s, size_t n, const char *token)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		const char *e;
		size_t en;

		while (j < n && s[j] != ',')
			j++;
		e = s + i;
		en = j - i;
		trim_ows(&e, &en);
		if (eq_ci(e, en, token))
			return 1;
		i = j + 1;
	}
	return 0;
}

#define REFUSE(st, msg) do { *why = (msg); return -(st); } while (0)

/* The request line in buf[p..eol) (eol at the '\n'). */
static int
request_line(const char *buf, size_t p, size_t eol, struct kwh_head *h, const char **why)
{
	size_t end = eol, i, sp1, sp2;

	if (end > p && buf[end - 1] == '\r')
		end--;
	for (i = p; i < end && buf[i] != ' '; i++)
		if (!is_tchar((unsigned char)buf[i]))
			REFUSE(400, "the request line's method is not a token");
	if (i == p || i == end)
		REFUSE(400, "the request line is not 'METHOD /path HTTP/1.1'");
	sp1 = i;
	for (i = sp1 + 1; i < end && buf[i] != ' '; i++)
		if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f)
			REFUSE(400, "the request target holds a byte that is not visible ASCII");
	if (i == sp1 + 1 || i == end)
		REFUSE(400, "the request line is not 'METHOD /path HTTP/1.1'");
	sp2 = i;
	if (buf[sp1 + 1] != '/')
		REFUSE(400, "the request target is not a path starting with '/'");
	if (end - (sp2 + 1) != 8 || memcmp(buf + sp2 + 1, "HTTP/", 5) != 0 ||
	    buf[sp2 + 6] < '0' || buf[sp2 + 6] > '9' || buf[sp2 + 7] != '.' ||
	    buf[sp2 + 8] < '0' || buf[sp2 + 8] > '9')
		REFUSE(400, "the request line does not end in an HTTP version such as HTTP/1.1");
	if (buf[sp2 + 6] != '1' || buf[sp2 + 8] > '1')
		REFUSE(505, "only HTTP/1.0 and HTTP/1.1 are served");
	h->minor = buf[sp2 + 8] - '0';
	if ((h->method = method_of(buf + p, sp1 - p)) == 0)
		REFUSE(501, "the method is not one this server implements");
	h->target = buf + sp1 + 1;
	h->target_len = sp2 - sp1 - 1;
	return 0;
}

static int
content_length(const char *v, size_t n, struct kwh_head *h, const char **why)
{
	uint64_t x = 0;

	if (n == 0)
		REFUSE(400, "Content-Length is empty");
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			REFUSE(400, "Content-Length is not a decimal number");
		if (x > (UINT64_MAX - 9) / 10)
			REFUSE(400, "Content-Length is too large");
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (h->has_length && h->content_length != x)
		REFUSE(400, "two different Content-Length headers");
	h->has_length = 1;
	h->content_length = x;
	return 0;
}

int
kwh_parse_head(const char *buf, size_t len, size_t max_head, struct kwh_head *h,
    const char **why)
{
	size_t p = 0, lim = len < max_head ? len : max_head;
	long eol;
	int e, hosts = 0, nhdr = 0, te = 0, close_tok = 0, keep_tok = 0;

	memset(h, 0, sizeof(*h));
	*why = NULL;
	/* A server should ignore empty lines before a request (RFC 9112 2.2). */
	while (p < lim && (buf[p] == '\r' || buf[p] == '\n')) {
		if (buf[p] == '\r' && (p + 1 >= lim || buf[p + 1] != '\n'))
			break;
		p += buf[p] == '\r' ? 2 : 1;
	}
	if ((eol = line_end(buf, p, lim)) < 0)
		goto more;
	if ((e = request_line(buf, p, (size_t)eol, h, why)) != 0)
		return e;
	p = (size_t)eol + 1;
	for (;;) {
		size_t end, colon, vstart;
		const char *v;
		size_t vn;

		if ((eol = line_end(buf, p, lim)) < 0)
			goto more;
		end = (size_t)eol;
		if (end > p && buf[end - 1] == '\r')
			end--;
		if (end == p)
			break;   /* the empty line */
		if (buf[p] == ' ' || buf[p] == '\t')
			REFUSE(400, "a header line starts with white space (folding is not accepted)");
		if (++nhdr > KWH_MAX_HEADERS)
			REFUSE(431, "more than 100 header lines");
		for (colon = p; colon < end && buf[colon] != ':'; colon++)
			if (!is_tchar((unsigned char)buf[colon]))
				REFUSE(400, "a header name holds a byte that is not a token character");
		if (colon == end || colon == p)
			REFUSE(400, "a header line has no name or no ':'");
		for (vstart = colon + 1; vstart < end; vstart++)
			if (!is_value_char((unsigned char)buf[vstart]))
				REFUSE(400, "a header value holds a control byte");
		v = buf + colon + 1;
		vn = end - colon - 1;
		trim_ows(&v, &vn);
		if (eq_ci(buf + p, colon - p, "content-length")) {
			if ((e = content_length(v, vn, h, why)) != 0)
				return e;
		} else if (eq_ci(buf + p, colon - p, "transfer-encoding")) {
			if (te++ || !eq_ci(v, vn, "chunked"))
				REFUSE(501, "the only transfer coding accepted is a single 'chunked'");
			h->chunked = 1;
		} else if (eq_ci(buf + p, colon - p, "host")) {
			hosts++;
		} else if (eq_ci(buf + p, colon - p, "connection")) {
			close_tok |= list_has(v, vn, "close");
			keep_tok |= list_has(v, vn, "keep-alive");
		} else if (eq_ci(buf + p, colon - p, "expect")) {
			if (!eq_ci(v, vn, "100-continue"))
				REFUSE(417, "the only expectation met is '100-continue'");
			h->expect_continue = h->minor >= 1;
		}
		p = (size_t)eol + 1;
	}
	if (h->chunked && h->has_length)
		REFUSE(400, "both Content-Length and Transfer-Encoding: refused as ambiguous");
	if (h->chunked && h->minor == 0)
		REFUSE(400, "Transfer-Encoding in an HTTP/1.0 request");
	if (h->minor >= 1 && hosts != 1)
		REFUSE(400, hosts == 0 ? "an HTTP/1.1 request without a Host header" :
		    "more than one Host header");
	h->keep_alive = h->minor >= 1 ? !close_tok : (keep_tok && !close_tok);
	h->head_len = (size_t)eol + 1;
	return (int)h->head_len;
more:
	if (len >= max_head)
		REFUSE(431, "the request head is larger than the server accepts");
	return 0;
}

enum { CH_SIZE = 0, CH_SIZE_WS, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
	CH_TRAILER, CH_TRAILER_LF, CH_TRAILER_NEXT_LF, CH_DONE };

#define CH_LINE_MAX 4096

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
kwh_chunked_step(struct kwh_chunked *c, char *buf, size_t len, size_t *in, size_t *out,
    uint64_t max_body, const char **why)
{
	size_t i = *in, o = *out;
	int r = 0;

	*why = NULL;
	/* c->total <= max_body from here on, so that "max_body - c->total"
	 * below cannot wrap (c->total + c->left could). */
	if (c->total > max_body) {
		*why = "the body is larger than the server accepts";
		return -413;
	}
	while (i < len && c->state != CH_DONE) {
		char ch = buf[i];

		switch (c->state) {
		case CH_SIZE: {
			int v = hexval(ch);
			if (v >= 0) {
				/* 1*HEXDIG (RFC 9112): leading zeros are part of a
				 * size, within the bound of a line; only a value
				 * past 64 bits is too large. */
				if (c->left > (UINT64_MAX >> 4)) {
					*why = "a chunk size is too large";
					r = -413;
					goto out;
				}
				if (++c->digits > CH_LINE_MAX) {
					*why = "a chunk size line is too long";
					r = -400;
					goto out;
				}
				c->left = c->left << 4 | (uint64_t)v;
				i++;
			} else if (c->digits == 0) {
				*why = "a chunk does not start with a hexadecimal size";
				r = -400;
				goto out;
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				c->state = ch == ';' ? CH_EXT : CH_SIZE_WS;
				c->line = 0;
			} else if (ch == '\r') {
				c->state = CH_SIZE_LF;
				i++;
			} else if (ch == '\n') {
				c->state = CH_SIZE_LF;
			} else {
				*why = "a chunk size line holds a byte that is not hexadecimal";
				r = -400;
				goto out;
			}
			if (c->state == CH_SIZE_LF && c->left > max_body - c->total) {
				*why = "the body is larger than the server accepts";
				r = -413;
				goto out;
			}
			break;
		}
		case CH_SIZE_WS:
			/* White space after a size may come only before ';' or
			 * the line's end: "5 6" is not a size of 5. */
			if (ch == ' ' || ch == '\t') {
				if (++c->line > CH_LINE_MAX) {
					*why = "a chunk size line is too long";
					r = -400;
					goto out;
				}
				i++;
			} else if (ch == ';' || ch == '\r' || ch == '\n') {
				c->state = CH_EXT;   /* which ends the line */
			} else {
				*why = "a chunk size is followed by something other than ';' or the line's end";
				r = -400;
				goto out;
			}
			break;
		case CH_EXT:
			/* Chunk extensions are skipped, within a bound. */
			if (ch == '\n' || ch == '\r') {
				c->state = CH_SIZE_LF;
				if (ch == '\r')
					i++;
				if (c->left > max_body - c->total) {
					*why = "the body is larger than the server accepts";
					r = -413;
					goto out;
				}
			} else if (++c->line > CH_LINE_MAX || (ch != '\t' && ((unsigned char)ch < 0x20 || ch == 0x7f))) {
				*why = "a chunk extension is malformed or too long";
				r = -400;
				goto out;
			} else {
				i++;
			}
			break;
		case CH_SIZE_LF:
			if (ch != '\n') {
				*why = "a chunk size line does not end in CRLF";
				r = -400;
				goto out;
			}
			i++;
			c->digits = 0;
			if (c->left == 0) {
				c->state = CH_TRAILER;
				c->line = 0;
			} else {
				c->state = CH_DATA;
			}
			break;
		case CH_DATA: {
			size_t n = len - i;
			if ((uint64_t)n > c->left)
				n = (size_t)c->left;
			if (o != i)
				memmove(buf + o, buf + i, n);
			o += n;
			i += n;
			c->left -= n;
			c->total += n;
			if (c->left == 0)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch == '\r') {
				c->state = CH_DATA_LF;
				i++;
			} else if (ch == '\n') {
				c->state = CH_DATA_LF;
			} else {
				*why = "a chunk's data is longer than its size";
				r = -400;
				goto out;
			}
			break;
		case CH_DATA_LF:
			if (ch != '\n') {
				*why = "a chunk's data does not end in CRLF";
				r = -400;
				goto out;
			}
			i++;
			c->state = CH_SIZE;
			break;
		case CH_TRAILER:
			/* Trailer lines are read and ignored; an empty one ends
			 * the body. */
			if (ch == '\r' || ch == '\n') {
				int empty = c->line == 0;
				if (ch == '\r')
					i++;
				c->state = empty ? CH_TRAILER_LF : CH_TRAILER_NEXT_LF;
			} else if (++c->line > CH_LINE_MAX || (ch != '\t' && ((unsigned char)ch < 0x20 || ch == 0x7f))) {
				*why = "a trailer line is malformed or too long";
				r = -400;
				goto out;
			} else {
				i++;
			}
			break;
		case CH_TRAILER_LF:
		case CH_TRAILER_NEXT_LF:
			if (ch != '\n') {
				*why = "a trailer line does not end in CRLF";
				r = -400;
				goto out;
			}
			i++;
			if (c->state == CH_TRAILER_LF) {
				c->state = CH_DONE;
			} else {
				c->state = CH_TRAILER;
				c->line = 0;
			}
			break;
		}
	}
	if (c->state == CH_DONE)
		r = 1;
out:
	*in = i;
	*out = o;
	return r;
}

size_t
kwh_pct_decode(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0 && (hi | lo) != 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return o;
}

const char *
kwh_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 423: return "Locked";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
