/*
 * http_parse.h - the request side of HTTP/1.1 (RFC 9112) as the daemon
 * speaks it: a request head, and a chunked body decoded in place.
 *
 * Pure functions over a caller's buffer: no allocation, no I/O, so that
 * they are tested, and fuzzed, alone.  What they accept is deliberately
 * narrow: origin-form targets of visible ASCII, no header folding, no
 * white space before a header's colon, one Content-Length or
 * "Transfer-Encoding: chunked" and never both, a Host in HTTP/1.1.  A
 * refusal is an HTTP status and a sentence saying what was wrong.
 */
#ifndef KW_HTTP_PARSE_H
#define KW_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

enum kwh_method {
	KWH_GET = 1, KWH_HEAD, KWH_PUT, KWH_POST, KWH_DELETE, KWH_PATCH,
};

#define KWH_MAX_HEADERS 100

struct kwh_head {
	int method;                 /* enum kwh_method */
	const char *target;         /* into the caller's buffer; not terminated */
	size_t target_len;
	int minor;                  /* HTTP/1.<minor>: 0 or 1 */
	int keep_alive;             /* the connection stays open after the reply */
	int expect_continue;        /* "Expect: 100-continue" */
	int chunked;                /* "Transfer-Encoding: chunked" */
	int has_length;             /* a Content-Length was given */
	uint64_t content_length;
	size_t head_len;            /* bytes up to and including the empty line */
};

/* Parse the request head at the start of buf[0..len).  Returns:
 *   0      more bytes are needed (and fewer than max_head are there);
 *   > 0    the head's length, with *h filled in;
 *   < 0    minus the HTTP status to refuse it with (400, 417, 431, 501,
 *          505), with *why saying why (a static sentence). */
int kwh_parse_head(const char *buf, size_t len, size_t max_head, struct kwh_head *h,
    const char **why);

/* A chunked body, decoded in place: the data of each chunk is moved down
 * over the framing, so that the body ends up whole at the start of the
 * region.  Start with the struct zeroed. */
struct kwh_chunked {
	int state;
	uint64_t left;              /* bytes of the current chunk still to come */
	uint64_t total;             /* body bytes so far */
	unsigned line;              /* length of the size or trailer line so far */
	int digits;
};

/* Decode from buf[*in .. len), writing data at buf[*out ..) (*out <= *in
 * always).  Returns 1 when the body and its trailers are complete (*in is
 * then just past them), 0 when more bytes are needed, or minus a status
 * (400 bad framing, 413 body over max_body) with *why set. */
int kwh_chunked_step(struct kwh_chunked *c, char *buf, size_t len, size_t *in, size_t *out,
    uint64_t max_body, const char **why);

/* Percent-decode a query string's key or value: %XX and '+' (a space)
 * from s[0..n) into out, which has room for n + 1 bytes; a '%' not
 * followed by two hex digits, or one that would decode to NUL, stays as it
 * is.  Returns the decoded length; out is NUL-terminated. */
size_t kwh_pct_decode(const char *s, size_t n, char *out);

/* The reason phrase of a status ("OK", "Not Found"), or "Unknown". */
const char *kwh_reason(int status);

#endif
