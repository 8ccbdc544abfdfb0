/*
 * fuzz_http.c - the daemon's HTTP/1.1 request parser (daemon/http_parse.h)
 * on arbitrary bytes, as a client of the socket may send them.
 *
 * The input is a request as it arrives: kwh_parse_head over it (and over
 * prefixes of it, as the daemon parses again at every read); when the head
 * says chunked, kwh_chunked_step over the rest, in place, at once and then
 * again in pieces (the resumable state machine must end where the one-shot
 * run ends); kwh_pct_decode over the target and its query's parts.  When
 * no head is accepted the whole input is also taken as a chunked body, so
 * that the decoder is reached without a valid head first.
 *
 * Every input lives in a heap block of exactly its length: a read past the
 * end is an ASan report.  The contracts of http_parse.h are checked with
 * kwf_check(), which aborts.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/http_parse.h"
#include "tests/fuzz/fuzz.h"

KWF_CORPUS("http");

#define MAX_HEAD 16384          /* the daemon's HTTP_MAX_HEAD */
#define MAX_BODY (1u << 20)     /* the default limits.max_body */
#define SMALL_BODY 100          /* a limit the seeds' bodies reach */

static int
status_ok(int r)
{
	return r == -400 || r == -417 || r == -431 || r == -501 || r == -505;
}

/* kwh_parse_head over a copy of data[0..len) of exactly len bytes, with
 * the contracts of its result checked.  *h's target points into the copy,
 * which the caller frees (*copy). */
static int
parse(const uint8_t *data, size_t len, struct kwh_head *h, char **copy)
{
	const char *why = (const char *)1;
	char *b = kwf_dup_exact(data, len);
	int r = kwh_parse_head(b, len, MAX_HEAD, h, &why);

	if (r < 0) {
		kwf_check(status_ok(r));
		kwf_check(why != NULL && why[0] != '\0');
		kwf_check(strcmp(kwh_reason(-r), "Unknown") != 0);
	} else if (r == 0) {
		kwf_check(why == NULL);
		kwf_check(len < MAX_HEAD);
	} else {
		kwf_check(why == NULL);
		kwf_check((size_t)r == h->head_len);
		kwf_check((size_t)r <= len && (size_t)r <= MAX_HEAD);
		kwf_check(b[r - 1] == '\n');
		kwf_check(h->method >= KWH_GET && h->method <= KWH_PATCH);
		kwf_check(h->minor == 0 || h->minor == 1);
		kwf_check(h->target > b && h->target_len > 0 &&
		    h->target + h->target_len < b + r);
		kwf_check(h->target[0] == '/');
		kwf_check(!(h->chunked && h->has_length));
		kwf_check(!h->chunked || h->minor == 1);
		kwf_check(h->keep_alive == 0 || h->keep_alive == 1);
		kwf_check(!h->expect_continue || h->minor == 1);
		for (size_t i = 0; i < h->target_len; i++)
			kwf_check((unsigned char)h->target[i] > 0x20 &&
			    (unsigned char)h->target[i] < 0x7f);
	}
	if (copy != NULL)
		*copy = b;
	else
		free(b);
	return r;
}

/* The daemon parses what it has at every read: a prefix of a request is
 * "more, please" or already the answer the whole gives, never another. */
static void
check_prefix(const uint8_t *data, size_t k, int whole)
{
	struct kwh_head h;
	int r = parse(data, k, &h, NULL);

	if (whole > 0)
		kwf_check(k < (size_t)whole ? r == 0 : r == whole);
	else
		kwf_check(r == 0 || r == whole);
}

static void
check_prefixes(const uint8_t *data, size_t size, int whole)
{
	size_t step = size <= 128 ? 1 : size / 64 + 1;

	for (size_t k = 0; k < size; k += step)
		check_prefix(data, k, whole);
	if (size > 0)
		check_prefix(data, size - 1, whole);
	if (whole > 0)
		check_prefix(data, (size_t)whole - 1, whole);
}

struct run {
	int rc;
	size_t in, out;
	uint64_t total;
	const char *why;
};

/* Decode the body at buf[start..len) in place in one call. */
static struct run
chunked_once(char *buf, size_t len, size_t start, uint64_t max_body)
{
	struct kwh_chunked c;
	struct run x;

	memset(&c, 0, sizeof(c));
	x.in = x.out = start;
	x.rc = kwh_chunked_step(&c, buf, len, &x.in, &x.out, max_body, &x.why);
	x.total = c.total;
	return x;
}

/* The same, the bytes arriving in pieces: before a byte has arrived the
 * buffer holds junk there, and each call sees only what has arrived.
 * Checks the invariants after every call. */
static struct run
chunked_pieces(const uint8_t *data, char *buf, size_t len, size_t start,
    uint64_t max_body, unsigned seed)
{
	struct kwh_chunked c;
	struct run x;
	size_t avail = start, last_in = start;

	memset(&c, 0, sizeof(c));
	memset(buf + start, 0xa5, len - start);
	x.in = x.out = start;
	x.rc = 0;
	x.why = NULL;
	while (avail < len) {
		size_t piece;

		/* Pieces of 1 to 16 bytes, from a small generator seeded by
		 * the input, so that a crash replays. */
		seed = seed * 1103515245u + 12345u;
		piece = 1 + (seed >> 16) % 16;
		if (piece > len - avail)
			piece = len - avail;
		memcpy(buf + avail, data + avail, piece);
		avail += piece;
		x.rc = kwh_chunked_step(&c, buf, avail, &x.in, &x.out, max_body, &x.why);
		kwf_check(x.out <= x.in && x.in <= avail);
		kwf_check(x.in >= last_in);
		kwf_check(x.rc == 1 || x.rc == 0 || x.rc == -400 || x.rc == -413);
		kwf_check((x.rc < 0) == (x.why != NULL));
		kwf_check(c.total == x.out - start);
		kwf_check(c.total <= max_body);
		if (x.rc == 0)
			kwf_check(x.in == avail);
		last_in = x.in;
		if (x.rc != 0)
			break;
	}
	x.total = c.total;
	return x;
}

/* Decode data[start..size) both ways; they must agree, byte for byte. */
static void
check_chunked(const uint8_t *data, size_t size, size_t start, uint64_t max_body)
{
	char *a = kwf_dup_exact(data, size), *b = kwf_dup_exact(data, size);
	struct run x = chunked_once(a, size, start, max_body), y;
	unsigned seed = 2166136261u;

	kwf_check(x.out <= x.in && x.in <= size);
	kwf_check(x.rc == 1 || x.rc == 0 || x.rc == -400 || x.rc == -413);
	kwf_check((x.rc < 0) == (x.why != NULL));
	kwf_check(x.total == x.out - start && x.total <= max_body);
	if (x.rc == 0)
		kwf_check(x.in == size);
	for (size_t i = 0; i < size && i < 64; i++)
		seed = (seed ^ data[i]) * 16777619u;
	if (start < size) {
		y = chunked_pieces(data, b, size, start, max_body, seed);
		kwf_check(y.rc == x.rc);
		kwf_check(y.in == x.in && y.out == x.out && y.total == x.total);
		kwf_check(memcmp(a + start, b + start, x.out - start) == 0);
	}
	free(a);
	free(b);
}

/* kwh_pct_decode into a block of exactly n + 1 bytes. */
static void
check_pct(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	size_t r;

	if (out == NULL)
		kwf_fail("out of memory");
	r = kwh_pct_decode(s, n, out);
	kwf_check(r <= n);
	kwf_check(out[r] == '\0');
	free(out);
}

/* The target, and each key and value of its query, as the router takes
 * them apart. */
static void
check_target(const char *t, size_t n)
{
	const char *q = memchr(t, '?', n);

	check_pct(t, n);
	if (q == NULL)
		return;
	check_pct(t, (size_t)(q - t));
	for (const char *p = q + 1, *end = t + n; p <= end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp != NULL ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));

		if (eq != NULL) {
			check_pct(p, (size_t)(eq - p));
			check_pct(eq + 1, (size_t)(e - eq - 1));
		} else
			check_pct(p, (size_t)(e - p));
		p = e + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kwh_head h;
	char *copy = NULL;
	int r = parse(data, size, &h, &copy);

	check_prefixes(data, size, r);
	if (r > 0) {
		check_target(h.target, h.target_len);
		if (h.chunked) {
			check_chunked(data, size, (size_t)r, MAX_BODY);
			check_chunked(data, size, (size_t)r, SMALL_BODY);
		}
	} else {
		check_chunked(data, size, 0, MAX_BODY);
		check_chunked(data, size, 0, SMALL_BODY);
	}
	free(copy);
	check_pct((const char *)data, size);
	return 0;
}
