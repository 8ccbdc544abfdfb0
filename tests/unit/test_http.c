/*
 * test_http.c - the HTTP/1.1 request parser (daemon/http_parse.h): request
 * heads, chunked bodies decoded in place, and reason phrases.
 *
 * Every input is handed to the parser in a heap block of exactly its
 * length, with no terminating NUL, so that a read past the end shows
 * under ASan or valgrind; the chunked decoder is also fed byte by byte
 * with the bytes not yet "arrived" filled with junk.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "daemon/http_parse.h"
#include "tests/lib/kwt_cunit.h"

#define MAX_HEAD 8192
#define ACCEPT 1            /* in a table of cases: the head is accepted whole */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A copy of s[0..n) in a heap block of exactly n bytes. */
static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	if (n > 0)
		memcpy(p, s, n);
	return p;
}

/* Print s[0..n) with its control and non-ASCII bytes escaped. */
static void
show(const char *s, size_t n)
{
	for (size_t i = 0; i < n && i < 200; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n", stderr);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	if (n > 200)
		fputs("...", stderr);
}

/* kwh_parse_head over a copy of req[0..len).  A refusal must come with a
 * sentence, and be one of the statuses the header promises; an acceptance
 * must return head_len.  h->target points into freed memory afterwards. */
static int
parse_n(const char *req, size_t len, size_t max_head, struct kwh_head *h)
{
	const char *why = NULL;
	char *b = dup_exact(req, len);
	int r = kwh_parse_head(b, len, max_head, h, &why);

	if (r < 0) {
		CU_ASSERT_PTR_NOT_NULL(why);
		CU_ASSERT(why != NULL && why[0] != '\0');
		CU_ASSERT(r == -400 || r == -417 || r == -431 || r == -501 || r == -505);
	} else if (r > 0) {
		CU_ASSERT_EQUAL(h->head_len, (size_t)r);
		CU_ASSERT(h->minor == 0 || h->minor == 1);
		CU_ASSERT(h->method >= KWH_GET && h->method <= KWH_PATCH);
	}
	free(b);
	return r;
}

static int
parse(const char *req, struct kwh_head *h)
{
	return parse_n(req, strlen(req), MAX_HEAD, h);
}

/* The status of req alone: the head's length, 0, or minus a status. */
static int
status(const char *req)
{
	struct kwh_head h;

	return parse(req, &h);
}

struct head_case {
	const char *req;
	int want;               /* ACCEPT, or minus a status */
};

static void
check_cases(const struct head_case *cs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int r = status(cs[i].req);
		int ok = cs[i].want == ACCEPT ? r == (int)strlen(cs[i].req) : r == cs[i].want;

		if (!ok) {
			fputs("\n  \"", stderr);
			show(cs[i].req, strlen(cs[i].req));
			fprintf(stderr, "\": got %d, want %s%d\n", r,
			    cs[i].want == ACCEPT ? "the length " : "",
			    cs[i].want == ACCEPT ? (int)strlen(cs[i].req) : cs[i].want);
		}
		CU_ASSERT(ok);
	}
}

/* ---- request heads ---- */

static void
test_head_minimal(void)
{
	const char *req = "GET /v1/secrets/db%2Fpass?version=3 HTTP/1.1\r\nHost: localhost\r\n\r\n";
	size_t len = strlen(req);
	char *b = dup_exact(req, len);
	struct kwh_head h;
	const char *why;
	int r;

	memset(&h, 0xa5, sizeof(h));
	r = kwh_parse_head(b, len, MAX_HEAD, &h, &why);
	CU_ASSERT_EQUAL(r, (int)len);
	CU_ASSERT_EQUAL(h.head_len, len);
	CU_ASSERT_EQUAL(h.method, KWH_GET);
	CU_ASSERT_PTR_EQUAL(h.target, b + 4);
	CU_ASSERT_EQUAL(h.target_len, strlen("/v1/secrets/db%2Fpass?version=3"));
	CU_ASSERT_EQUAL(memcmp(h.target, "/v1/secrets/db%2Fpass?version=3", h.target_len), 0);
	CU_ASSERT_EQUAL(h.minor, 1);
	CU_ASSERT_EQUAL(h.keep_alive, 1);
	CU_ASSERT_EQUAL(h.expect_continue, 0);
	CU_ASSERT_EQUAL(h.chunked, 0);
	CU_ASSERT_EQUAL(h.has_length, 0);
	CU_ASSERT_EQUAL(h.content_length, 0);
	free(b);

	/* The shortest target. */
	req = "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n";
	len = strlen(req);
	b = dup_exact(req, len);
	r = kwh_parse_head(b, len, MAX_HEAD, &h, &why);
	CU_ASSERT_EQUAL(r, (int)len);
	CU_ASSERT_PTR_EQUAL(h.target, b + 7);
	CU_ASSERT_EQUAL(h.target_len, 1);
	free(b);
}

static void
test_head_methods(void)
{
	const struct { const char *name; int m; } ms[] = {
		{ "GET", KWH_GET }, { "HEAD", KWH_HEAD }, { "PUT", KWH_PUT },
		{ "POST", KWH_POST }, { "DELETE", KWH_DELETE }, { "PATCH", KWH_PATCH },
	};
	const struct head_case cs[] = {
		{ "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", -501 },
		{ "get / HTTP/1.1\r\nHost: x\r\n\r\n", -501 },
		{ "Get / HTTP/1.1\r\nHost: x\r\n\r\n", -501 },
		{ "GETS / HTTP/1.1\r\nHost: x\r\n\r\n", -501 },
		{ "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", -501 },
		{ "CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n", -501 },
		{ "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GE\"T / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "G\xc3\x89T / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ " / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },        /* no method */
		{ " GET / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },    /* leading space */
		{ "GET\r\nHost: x\r\n\r\n", -400 },                 /* the method alone */
	};
	char req[128];
	struct kwh_head h;

	for (size_t i = 0; i < NELEM(ms); i++) {
		int n = snprintf(req, sizeof(req), "%s /k HTTP/1.1\r\nHost: x\r\n\r\n", ms[i].name);

		CU_ASSERT_EQUAL(parse(req, &h), n);
		CU_ASSERT_EQUAL(h.method, ms[i].m);
		CU_ASSERT_EQUAL(h.target_len, 2);
	}
	/* A NUL inside the method. */
	{
		static const char nul[] = "G\0T / HTTP/1.1\r\nHost: x\r\n\r\n";

		CU_ASSERT_EQUAL(parse_n(nul, sizeof(nul) - 1, MAX_HEAD, &h), -400);
	}
	check_cases(cs, NELEM(cs));
}

static void
test_head_target(void)
{
	const struct head_case cs[] = {
		{ "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET * HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET x/y HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /a\x1f HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", -400 },     /* two spaces */
		{ "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", -400 },     /* space after the version */
		{ "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", -400 },   /* space inside */
		{ "GET HTTP/1.1\r\nHost: x\r\n\r\n", -400 },        /* no target */
		{ "GET /~a!$&'()*+,;=:@-._?/b HTTP/1.1\r\nHost: x\r\n\r\n", ACCEPT },
	};
	struct kwh_head h;

	/* Every byte outside visible ASCII, in the middle of a target. */
	for (int c = 0; c < 256; c++) {
		char req[64];
		int n = snprintf(req, sizeof(req), "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
		int r;

		req[6] = (char)c;
		r = parse_n(req, (size_t)n, MAX_HEAD, &h);
		if (c > 0x20 && c < 0x7f) {
			CU_ASSERT_EQUAL(r, n);
		} else if (c == '\n') {
			/* The request line ends after "/a": no version there. */
			CU_ASSERT_EQUAL(r, -400);
		} else if (r != -400) {
			fprintf(stderr, "\n  byte 0x%02x in a target: got %d\n", c, r);
			CU_FAIL("a byte that is not visible ASCII in a target is not refused");
		}
	}
	check_cases(cs, NELEM(cs));
}

static void
test_head_version(void)
{
	const struct head_case cs[] = {
		{ "GET / HTTP/2.0\r\nHost: x\r\n\r\n", -505 },
		{ "GET / HTTP/1.2\r\nHost: x\r\n\r\n", -505 },
		{ "GET / HTTP/1.9\r\nHost: x\r\n\r\n", -505 },
		{ "GET / HTTP/0.9\r\nHost: x\r\n\r\n", -505 },
		{ "GET / HTTP/3.0\r\nHost: x\r\n\r\n", -505 },
		{ "GET / HTP/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET / http/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/1.10\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/11\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/1,1\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/a.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/1.x\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTPS/1.1\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\r\nHost: x\r\n\r\n", -400 },
		{ "GET /\r\nHost: x\r\n\r\n", -400 },               /* HTTP/0.9 style */
		/* The version is checked before the method. */
		{ "BREW / HTTP/2.0\r\nHost: x\r\n\r\n", -505 },
	};
	struct kwh_head h;

	CU_ASSERT(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &h) > 0);
	CU_ASSERT_EQUAL(h.minor, 1);
	CU_ASSERT(parse("GET / HTTP/1.0\r\n\r\n", &h) > 0);
	CU_ASSERT_EQUAL(h.minor, 0);
	check_cases(cs, NELEM(cs));
}

static void
test_head_keep_alive(void)
{
	const struct { const char *req; int keep; } cs[] = {
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1 },
		{ "GET / HTTP/1.0\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1 },
		{ "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1 },
		{ "GET / HTTP/1.0\r\nconnection:keep-alive\r\n\r\n", 1 },
		{ "GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", 1 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0 },
		{ "GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo,close\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: close , foo\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: \tclose\t\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo\r\nConnection: close\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection: foo-close\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-Connection: close\r\n\r\n", 1 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nConnection:\r\n\r\n", 1 },
	};

	for (size_t i = 0; i < NELEM(cs); i++) {
		struct kwh_head h;
		int r = parse(cs[i].req, &h);

		CU_ASSERT_EQUAL(r, (int)strlen(cs[i].req));
		if (r > 0 && h.keep_alive != cs[i].keep) {
			fputs("\n  \"", stderr);
			show(cs[i].req, strlen(cs[i].req));
			fprintf(stderr, "\": keep_alive %d, want %d\n", h.keep_alive, cs[i].keep);
		}
		CU_ASSERT(r > 0 && h.keep_alive == cs[i].keep);
	}
}

static void
test_head_content_length(void)
{
	const struct head_case bad[] = {
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\ncontent-length: 05x\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5,5\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5.0\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: five\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: \t \r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa5\r\n\r\n", -400 },
		/* 2^64, and far more. */
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: "
		  "1000000000000000000000000000000000000000\r\n\r\n", -400 },
		/* Two lengths that agree modulo 2^64 do not agree. */
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
		  "Content-Length: 18446744073709551616\r\n\r\n", -400 },
	};
	struct kwh_head h;
	const char *req;

	req = "PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 42\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.has_length, 1);
	CU_ASSERT_EQUAL(h.content_length, 42);
	CU_ASSERT_EQUAL(h.chunked, 0);

	req = "PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.has_length, 1);
	CU_ASSERT_EQUAL(h.content_length, 0);

	/* White space around the value; the name in any case; leading zeros. */
	req = "PUT /k HTTP/1.1\r\nHost: x\r\ncontent-LENGTH:\t 007 \t\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.has_length, 1);
	CU_ASSERT_EQUAL(h.content_length, 7);

	/* The same length twice, even spelt differently. */
	req = "PUT /k HTTP/1.1\r\nContent-Length: 5\r\nHost: x\r\nContent-Length: 05\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.has_length, 1);
	CU_ASSERT_EQUAL(h.content_length, 5);

	/* Large values that fit in 64 bits are read exactly. */
	req = "PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.content_length, 9999999999999999999ULL);
	req = "PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551609\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.content_length, 18446744073709551609ULL);

	/* In HTTP/1.0 too. */
	req = "POST /k HTTP/1.0\r\nContent-Length: 3\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.content_length, 3);

	/* No Content-Length at all. */
	req = "PUT /k HTTP/1.1\r\nHost: x\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.has_length, 0);

	check_cases(bad, NELEM(bad));
}

static void
test_head_transfer_encoding(void)
{
	const char *chunked[] = {
		"PUT /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"PUT /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
		"PUT /k HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\n\r\n",
		"PUT /k HTTP/1.1\r\nTRANSFER-ENCODING:chunked\t\r\nHost: x\r\n\r\n",
	};
	const struct head_case bad[] = {
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
		  "Transfer-Encoding: chunked\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
		  "Transfer-Encoding: chunked\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunkedx\r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", -501 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
		  "Content-Length: 5\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		  "Transfer-Encoding: chunked\r\n\r\n", -400 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
		  "Transfer-Encoding: chunked\r\n\r\n", -400 },
		{ "PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400 },
		{ "PUT / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", -400 },
	};
	struct kwh_head h;

	for (size_t i = 0; i < NELEM(chunked); i++) {
		CU_ASSERT_EQUAL(parse(chunked[i], &h), (int)strlen(chunked[i]));
		CU_ASSERT_EQUAL(h.chunked, 1);
		CU_ASSERT_EQUAL(h.has_length, 0);
	}
	check_cases(bad, NELEM(bad));
}

static void
test_head_host(void)
{
	const struct head_case cs[] = {
		{ "GET / HTTP/1.1\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nX-Host: x\r\nHosts: x\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHOST: x\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.1\r\nhost:x\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.1\r\nHost: \r\n\r\n", ACCEPT },      /* empty is allowed */
		{ "GET / HTTP/1.0\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.0\r\nHost: x\r\n\r\n", ACCEPT },
	};

	check_cases(cs, NELEM(cs));
}

static void
test_head_expect(void)
{
	const struct head_case bad[] = {
		{ "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", -417 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, foo\r\n\r\n", -417 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100\r\n\r\n", -417 },
		{ "PUT / HTTP/1.1\r\nHost: x\r\nExpect: \r\n\r\n", -417 },
		{ "PUT / HTTP/1.0\r\nExpect: foo\r\n\r\n", -417 },
	};
	struct kwh_head h;
	const char *req;

	req = "PUT /k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.expect_continue, 1);
	req = "PUT /k HTTP/1.1\r\nExpect:100-Continue \r\nHost: x\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.expect_continue, 1);
	/* An HTTP/1.0 client does not wait for 100 Continue. */
	req = "PUT /k HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.expect_continue, 0);
	req = "PUT /k HTTP/1.1\r\nHost: x\r\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	CU_ASSERT_EQUAL(h.expect_continue, 0);
	check_cases(bad, NELEM(bad));
}

static void
test_head_header_syntax(void)
{
	const struct head_case cs[] = {
		/* Folding. */
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\n Host: x\r\n\r\n", -400 },
		/* White space before the colon, or in the name. */
		{ "GET / HTTP/1.1\r\nHost : x\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", -400 },
		/* No colon, or no name. */
		{ "GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\n: value\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\n:\r\n\r\n", -400 },
		/* Bytes that are not token characters in a name. */
		{ "GET / HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX\x01: b\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX\xc3\xa9: b\r\n\r\n", -400 },
		/* Control bytes in a value. */
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01" "b\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x1b[0m\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x0b\r\n\r\n", -400 },
		{ "GET / HTTP/1.1\r\nHost: x\x0c\r\n\r\n", -400 },
		/* A line that is a lone CR. */
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n\r\n", -400 },
		/* What is accepted: tabs, obs-text, an empty value, odd names. */
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.1\r\nHost: x\r\nX-A: : : :\r\n\r\n", ACCEPT },
		{ "GET / HTTP/1.1\r\nHost: x\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", ACCEPT },
	};
	struct kwh_head h;

	/* A NUL in a value. */
	{
		static const char nul[] = "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n";
		static const char ok[] = "GET / HTTP/1.1\r\nHost: x y\r\n\r\n";

		CU_ASSERT_EQUAL(parse_n(nul, sizeof(nul) - 1, MAX_HEAD, &h), -400);
		CU_ASSERT_EQUAL(parse_n(ok, sizeof(ok) - 1, MAX_HEAD, &h), (int)sizeof(ok) - 1);
	}
	check_cases(cs, NELEM(cs));
}

/* A request with Host and n - 1 other headers, in buf. */
static size_t
many_headers(char *buf, size_t size, int n)
{
	size_t len = (size_t)snprintf(buf, size, "GET / HTTP/1.1\r\nHost: x\r\n");

	for (int i = 1; i < n; i++)
		len += (size_t)snprintf(buf + len, size - len, "X-%d: %d\r\n", i, i);
	len += (size_t)snprintf(buf + len, size - len, "\r\n");
	CU_ASSERT_FATAL(len < size);
	return len;
}

static void
test_head_header_count(void)
{
	static char buf[8192];
	struct kwh_head h;
	size_t len;

	len = many_headers(buf, sizeof(buf), KWH_MAX_HEADERS);
	CU_ASSERT_EQUAL(parse_n(buf, len, MAX_HEAD, &h), (int)len);
	len = many_headers(buf, sizeof(buf), KWH_MAX_HEADERS + 1);
	CU_ASSERT_EQUAL(parse_n(buf, len, MAX_HEAD, &h), -431);
	len = many_headers(buf, sizeof(buf), 500);
	CU_ASSERT_EQUAL(parse_n(buf, len, sizeof(buf), &h), -431);
}

/* Every proper prefix of a valid request needs more; the whole is taken. */
static void
test_head_incomplete(void)
{
	const char *reqs[] = {
		"GET /v1/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
		"PUT /v1/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
		"Expect: 100-continue\r\nConnection: close\r\n\r\n",
		"\r\n\r\nPOST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
		"\n\nGET / HTTP/1.1\nHost: x\nX-A: b\n\n",
		"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\n",
	};

	for (size_t i = 0; i < NELEM(reqs); i++) {
		size_t len = strlen(reqs[i]);
		int bad = 0;

		for (size_t k = 0; k < len; k++) {
			struct kwh_head h;
			int r = parse_n(reqs[i], k, MAX_HEAD, &h);

			if (r != 0 && bad++ < 3) {
				fprintf(stderr, "\n  prefix %zu of \"", k);
				show(reqs[i], len);
				fprintf(stderr, "\": got %d\n", r);
			}
		}
		CU_ASSERT_EQUAL(bad, 0);
		/* The whole, and the whole with a body behind it. */
		{
			struct kwh_head h;
			char *more = malloc(len + 4);

			CU_ASSERT_EQUAL(parse_n(reqs[i], len, MAX_HEAD, &h), (int)len);
			CU_ASSERT_PTR_NOT_NULL_FATAL(more);
			memcpy(more, reqs[i], len);
			memcpy(more + len, "abc\n", 4);
			CU_ASSERT_EQUAL(parse_n(more, len + 4, MAX_HEAD, &h), (int)len);
			CU_ASSERT_EQUAL(h.head_len, len);
			free(more);
		}
	}
}

static void
test_head_max(void)
{
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	size_t len = strlen(req);
	static char big[MAX_HEAD + 64];
	struct kwh_head h;
	size_t n;

	/* A head of exactly max_head bytes fits; one byte over does not. */
	CU_ASSERT_EQUAL(parse_n(req, len, len, &h), (int)len);
	CU_ASSERT_EQUAL(parse_n(req, len, len - 1, &h), -431);
	/* Without its empty line: below max_head it waits, at it is refused. */
	CU_ASSERT_EQUAL(parse_n(req, len - 2, len - 1, &h), 0);
	CU_ASSERT_EQUAL(parse_n(req, len - 2, len - 2, &h), -431);
	CU_ASSERT_EQUAL(parse_n(req, len - 2, len - 3, &h), -431);
	CU_ASSERT_EQUAL(parse_n(req, 5, 5, &h), -431);
	CU_ASSERT_EQUAL(parse_n(req, 0, 0, &h), -431);
	/* A body behind a head that fits does not count against max_head. */
	n = (size_t)snprintf(big, sizeof(big), "%sbody bytes", req);
	CU_ASSERT_EQUAL(parse_n(big, n, len, &h), (int)len);

	/* A request line that never ends. */
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /", 5);
	CU_ASSERT_EQUAL(parse_n(big, MAX_HEAD - 1, MAX_HEAD, &h), 0);
	CU_ASSERT_EQUAL(parse_n(big, MAX_HEAD, MAX_HEAD, &h), -431);
	CU_ASSERT_EQUAL(parse_n(big, sizeof(big), MAX_HEAD, &h), -431);
	/* A header that never ends. */
	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX-Long: ");
	memset(big + n, 'b', sizeof(big) - n);
	CU_ASSERT_EQUAL(parse_n(big, MAX_HEAD - 1, MAX_HEAD, &h), 0);
	CU_ASSERT_EQUAL(parse_n(big, MAX_HEAD, MAX_HEAD, &h), -431);
	/* Nothing but empty lines. */
	for (n = 0; n + 1 < sizeof(big); n += 2)
		memcpy(big + n, "\r\n", 2);
	CU_ASSERT_EQUAL(parse_n(big, MAX_HEAD - 2, MAX_HEAD, &h), 0);
	CU_ASSERT_EQUAL(parse_n(big, MAX_HEAD, MAX_HEAD, &h), -431);
}

static void
test_head_leading_crlf(void)
{
	const char *reqs[] = {
		"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"\n\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n",
	};

	for (size_t i = 0; i < NELEM(reqs); i++) {
		size_t len = strlen(reqs[i]);
		char *b = dup_exact(reqs[i], len);
		size_t skip = strcspn(reqs[i], "G");
		struct kwh_head h;
		const char *why;

		CU_ASSERT_EQUAL(kwh_parse_head(b, len, MAX_HEAD, &h, &why), (int)len);
		CU_ASSERT_EQUAL(h.head_len, len);
		CU_ASSERT_EQUAL(h.method, KWH_GET);
		CU_ASSERT_PTR_EQUAL(h.target, b + skip + 4);
		CU_ASSERT_EQUAL(h.target_len, 2);
		free(b);
	}
	/* A CR that is not part of a CRLF is not an empty line. */
	CU_ASSERT_EQUAL(status("\rGET / HTTP/1.1\r\nHost: x\r\n\r\n"), -400);
	CU_ASSERT_EQUAL(status(" \r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), -400);
}

static void
test_head_bare_lf(void)
{
	const char *req = "PUT /k HTTP/1.1\nHost: x\nContent-Length: 4\nConnection: close\n\nbody";
	size_t head = strlen(req) - 4;
	struct kwh_head h;

	CU_ASSERT_EQUAL(parse(req, &h), (int)head);
	CU_ASSERT_EQUAL(h.method, KWH_PUT);
	CU_ASSERT_EQUAL(h.minor, 1);
	CU_ASSERT_EQUAL(h.content_length, 4);
	CU_ASSERT_EQUAL(h.keep_alive, 0);
	/* Mixed endings. */
	req = "GET / HTTP/1.1\nHost: x\r\nX-A: b\n\r\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
	req = "GET / HTTP/1.1\r\nHost: x\n\n";
	CU_ASSERT_EQUAL(parse(req, &h), (int)strlen(req));
}

static void
test_head_body_not_counted(void)
{
	const char *head = "POST /v1/k HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n";
	char req[256];
	struct kwh_head h;
	int n = snprintf(req, sizeof(req), "%shello\r\n\r\nxx", head);

	CU_ASSERT_EQUAL(parse_n(req, (size_t)n, MAX_HEAD, &h), (int)strlen(head));
	CU_ASSERT_EQUAL(h.head_len, strlen(head));
	CU_ASSERT_EQUAL(h.content_length, 11);
	/* A body that looks like more headers, or like a bad one. */
	n = snprintf(req, sizeof(req), "%sHost: y\r\n\x01\r\n", head);
	CU_ASSERT_EQUAL(parse_n(req, (size_t)n, MAX_HEAD, &h), (int)strlen(head));
	/* A pipelined second request is not read either. */
	n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\n\r\nBREW / HTTP/9.9\r\n\r\n");
	CU_ASSERT_EQUAL(parse_n(req, (size_t)n, MAX_HEAD, &h), 27);
}

/* ---- chunked bodies ---- */

#define BODY "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

/* Decode s[0..n) with one call over a copy; the copy is left in *bufp. */
static int
dechunk(const char *s, size_t n, uint64_t max_body, char **bufp, size_t *in, size_t *out,
    const char **why)
{
	struct kwh_chunked c;
	int r;

	memset(&c, 0, sizeof(c));
	*bufp = dup_exact(s, n);
	*in = 0;
	*out = 0;
	*why = NULL;
	r = kwh_chunked_step(&c, *bufp, n, in, out, max_body, why);
	CU_ASSERT(*out <= *in);
	CU_ASSERT(*in <= n);
	if (r < 0) {
		CU_ASSERT_PTR_NOT_NULL(*why);
		CU_ASSERT(r == -400 || r == -413);
	}
	return r;
}

/* The status of decoding s whole. */
static int
dechunk_status(const char *s, uint64_t max_body)
{
	char *b;
	size_t in, out;
	const char *why;
	int r = dechunk(s, strlen(s), max_body, &b, &in, &out, &why);

	free(b);
	return r;
}

static void
test_chunked_whole(void)
{
	char *b;
	size_t in, out;
	const char *why;

	CU_ASSERT_EQUAL(dechunk(BODY, strlen(BODY), 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, strlen(BODY));
	CU_ASSERT_EQUAL(out, 11);
	CU_ASSERT_EQUAL(memcmp(b, "hello world", 11), 0);
	free(b);

	/* An empty body. */
	CU_ASSERT_EQUAL(dechunk("0\r\n\r\n", 5, 0, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, 5);
	CU_ASSERT_EQUAL(out, 0);
	free(b);

	/* A body of exactly max_body. */
	CU_ASSERT_EQUAL(dechunk(BODY, strlen(BODY), 11, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(out, 11);
	free(b);

	/* Bare LF line endings. */
	CU_ASSERT_EQUAL(dechunk("5\nhello\n0\n\n", 11, 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, 11);
	CU_ASSERT_EQUAL(out, 5);
	CU_ASSERT_EQUAL(memcmp(b, "hello", 5), 0);
	free(b);
}

/* Feed s as it would arrive from a socket: len grows from 0 to n (the
 * bytes not yet arrived are junk), *in and *out carried between calls.
 * Returns the last status; the decoded body is checked against want. */
static int
dechunk_bytewise(const char *s, size_t n, uint64_t max_body, const char *want,
    size_t want_len, size_t *in_end)
{
	struct kwh_chunked c;
	char *b = malloc(n > 0 ? n : 1);
	size_t in = 0, out = 0;
	int r = 0, bad = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	memset(&c, 0, sizeof(c));
	memset(b, 0xee, n);
	for (size_t len = 0; len <= n; len++) {
		const char *why = NULL;
		size_t in0 = in, out0 = out;

		if (len > 0)
			b[len - 1] = s[len - 1];
		r = kwh_chunked_step(&c, b, len, &in, &out, max_body, &why);
		if (!(out <= in && in <= len && in >= in0 && out >= out0) && bad++ < 3)
			fprintf(stderr, "\n  at %zu: in %zu -> %zu, out %zu -> %zu\n",
			    len, in0, in, out0, out);
		if (out > want_len || memcmp(b, want, out) != 0) {
			if (bad++ < 3)
				fprintf(stderr, "\n  at %zu: decoded bytes differ\n", len);
		}
		if (r != 0) {
			if (r < 0)
				CU_ASSERT_PTR_NOT_NULL(why);
			if (r == 1 && len != n && bad++ < 3)
				fprintf(stderr, "\n  done (%d) after %zu of %zu bytes\n", r, len, n);
			break;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	if (r == 1) {
		CU_ASSERT_EQUAL(out, want_len);
		CU_ASSERT_EQUAL(memcmp(b, want, want_len), 0);
	}
	*in_end = in;
	free(b);
	return r;
}

static void
test_chunked_bytewise(void)
{
	const struct { const char *s, *want; } cs[] = {
		{ BODY, "hello world" },
		{ "1;a=b;c=\"d e\"\r\nx\r\n10 \t;ext\r\n0123456789abcdef\r\n0\r\nT: v\r\nU:\r\n\r\n",
		  "x0123456789abcdef" },
		{ "5\nhello\n0\n\n", "hello" },
		{ "0\r\n\r\n", "" },
	};

	for (size_t i = 0; i < NELEM(cs); i++) {
		size_t n = strlen(cs[i].s), in;

		CU_ASSERT_EQUAL(dechunk_bytewise(cs[i].s, n, 1024, cs[i].want,
		    strlen(cs[i].want), &in), 1);
		CU_ASSERT_EQUAL(in, n);
	}

	/* Split in two at every point, with a fresh state, as a reader
	 * that gets two segments would. */
	for (size_t k = 0; k <= strlen(BODY); k++) {
		size_t n = strlen(BODY), in = 0, out = 0;
		char *b = dup_exact(BODY, n);
		struct kwh_chunked c;
		const char *why;
		int r1, r2;

		memset(&c, 0, sizeof(c));
		r1 = kwh_chunked_step(&c, b, k, &in, &out, 1024, &why);
		CU_ASSERT_EQUAL(r1, k == n ? 1 : 0);
		CU_ASSERT(out <= in && in <= k);
		r2 = kwh_chunked_step(&c, b, n, &in, &out, 1024, &why);
		CU_ASSERT_EQUAL(r2, 1);
		CU_ASSERT_EQUAL(in, n);
		CU_ASSERT_EQUAL(out, 11);
		CU_ASSERT_EQUAL(memcmp(b, "hello world", 11), 0);
		free(b);
	}
}

static void
test_chunked_ext_trailers(void)
{
	const char *s = "5;a=b\r\nhello\r\n6 ; name=\"quoted;value\" ; x\r\n world\r\n"
	    "0;last=1\r\nX-Checksum: abc\r\nX-Other:\tdef\r\n\r\n";
	char *b;
	size_t in, out;
	const char *why;

	CU_ASSERT_EQUAL(dechunk(s, strlen(s), 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, strlen(s));
	CU_ASSERT_EQUAL(out, 11);
	CU_ASSERT_EQUAL(memcmp(b, "hello world", 11), 0);
	free(b);

	/* Uppercase, lowercase and mixed hex sizes. */
	s = "A\r\n0123456789\r\na\r\nabcdefghij\r\n1B\r\nABCDEFGHIJKLMNOPQRSTUVWXYZ!\r\n"
	    "000002\r\n..\r\n0000\r\n\r\n";
	CU_ASSERT_EQUAL(dechunk(s, strlen(s), 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, strlen(s));
	CU_ASSERT_EQUAL(out, 10 + 10 + 27 + 2);
	CU_ASSERT_EQUAL(memcmp(b, "0123456789abcdefghijABCDEFGHIJKLMNOPQRSTUVWXYZ!..", 49), 0);
	free(b);

	/* A chunk the size of a buffer, with a 16-digit size. */
	{
		char big[300];
		int n = snprintf(big, sizeof(big), "00000000000000fF\r\n");

		memset(big + n, 'z', 255);
		memcpy(big + n + 255, "\r\n0\r\n\r\n", 7);
		n += 255 + 7;
		CU_ASSERT_EQUAL(dechunk(big, (size_t)n, 255, &b, &in, &out, &why), 1);
		CU_ASSERT_EQUAL(in, (size_t)n);
		CU_ASSERT_EQUAL(out, 255);
		CU_ASSERT(out == 255 && b[0] == 'z' && b[254] == 'z');
		free(b);
	}
}

static void
test_chunked_limits(void)
{
	static char s[8192];
	char *b;
	size_t in, out, n;
	const char *why;

	/* A size over max_body is refused from its size line, before any data. */
	CU_ASSERT_EQUAL(dechunk_status("401\r\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("401;x\r\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("401\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("1\r\n", 0), -413);
	CU_ASSERT_EQUAL(dechunk_status("400\r\n", 1024), 0);
	/* Every byte of it. */
	CU_ASSERT_EQUAL(dechunk_bytewise("401\r\n", 5, 1024, "", 0, &in), -413);

	/* The total over max_body, each chunk under it. */
	n = (size_t)snprintf(s, sizeof(s), "200\r\n");
	memset(s + n, 'a', 512);
	n += 512;
	n += (size_t)snprintf(s + n, sizeof(s) - n, "\r\n200\r\n");
	memset(s + n, 'b', 512);
	n += 512;
	n += (size_t)snprintf(s + n, sizeof(s) - n, "\r\n0\r\n\r\n");
	CU_ASSERT_EQUAL(dechunk(s, n, 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(out, 1024);
	free(b);
	CU_ASSERT_EQUAL(dechunk(s, n, 1023, &b, &in, &out, &why), -413);
	/* Refused at the second size line, with the first chunk's data out. */
	CU_ASSERT_EQUAL(out, 512);
	CU_ASSERT(in <= 5 + 512 + 2 + 5);
	free(b);
	n = (size_t)snprintf(s, sizeof(s), "3\r\nabc\r\n3\r\ndef\r\n2\r\n");
	CU_ASSERT_EQUAL(dechunk(s, n, 7, &b, &in, &out, &why), -413);
	CU_ASSERT_EQUAL(out, 6);
	free(b);

	/* 17 significant hex digits, even with no limit. */
	CU_ASSERT_EQUAL(dechunk_status("10000000000000000\r\n", UINT64_MAX), -413);
	CU_ASSERT_EQUAL(dechunk_status("000010000000000000000\r\n", UINT64_MAX), -413);
	CU_ASSERT_EQUAL(dechunk_status("fffffffffffffffffffffffffff", UINT64_MAX), -413);
	/* 16 hex digits are read. */
	CU_ASSERT_EQUAL(dechunk_status("FFFFFFFFFFFFFFFF\r\n", UINT64_MAX), 0);
	CU_ASSERT_EQUAL(dechunk_status("FFFFFFFFFFFFFFFF\r\n", 1024), -413);
	/* Leading zeros are part of a size (RFC 9112: 1*HEXDIG), however
	 * many, up to the bound of a line (4096 digits). */
	CU_ASSERT_EQUAL(dechunk_status("00000000000000001\r\n", UINT64_MAX), 0);
	CU_ASSERT_EQUAL(dechunk_status("0000000000000000FFFFFFFFFFFFFFFF\r\n", UINT64_MAX), 0);
	CU_ASSERT_EQUAL(dechunk_status("0000000000000000FFFFFFFFFFFFFFFF\r\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("00000000000000000000000000000000001\r\n", 1), 0);
	{
		static const char tail[] = "5\r\nhello\r\n00000000000000000000\r\n\r\n";

		memset(s, '0', 4095);
		memcpy(s + 4095, tail, sizeof(tail));
		n = strlen(s);
		CU_ASSERT_EQUAL(dechunk(s, n, 1024, &b, &in, &out, &why), 1);
		CU_ASSERT_EQUAL(in, n);
		CU_ASSERT(out == 5 && memcmp(b, "hello", 5) == 0);
		free(b);
		CU_ASSERT_EQUAL(dechunk_bytewise(s, n, 1024, "hello", 5, &in), 1);
		CU_ASSERT_EQUAL(in, n);
		/* One zero more is a line too long. */
		memset(s, '0', 4096);
		memcpy(s + 4096, tail, sizeof(tail));
		CU_ASSERT_EQUAL(dechunk_status(s, UINT64_MAX), -400);
		memset(s, '0', 4096);
		s[4096] = '\0';
		CU_ASSERT_EQUAL(dechunk_status(s, UINT64_MAX), 0);
		s[4096] = '0';
		s[4097] = '\0';
		CU_ASSERT_EQUAL(dechunk_status(s, UINT64_MAX), -400);
	}

	/* The total must not wrap around 2^64 and slip under max_body. */
	CU_ASSERT_EQUAL(dechunk_status("1\r\na\r\nFFFFFFFFFFFFFFFF\r\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("2\r\nab\r\nFFFFFFFFFFFFFFFF\r\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("2\r\nab\r\nFFFFFFFFFFFFFFFE;x\r\n", 1024), -413);
	CU_ASSERT_EQUAL(dechunk_status("1\r\na\r\nFFFFFFFFFFFFFFFF\r\nbbbbbbbb", 1024), -413);
}

static void
test_chunked_bad_framing(void)
{
	static char s[8192];
	const struct { const char *s; int want; } cs[] = {
		{ "g\r\nhello\r\n0\r\n\r\n", -400 },          /* not hex */
		{ "\r\n", -400 },                             /* no size */
		{ ";a\r\n", -400 },
		{ " 5\r\nhello\r\n0\r\n\r\n", -400 },
		{ "-5\r\n", -400 },
		{ "+5\r\n", -400 },
		{ "0x5\r\n", -400 },
		{ "5g\r\n", -400 },
		{ "5\r", 0 },                                   /* waits for the LF */
		{ "5\rX", -400 },
		{ "5;a\x01\r\n", -400 },                      /* control byte in an extension */
		{ "5;a\x7f\r\n", -400 },
		{ "5\r\nhelloX\r\n0\r\n\r\n", -400 },         /* no CRLF after the data */
		{ "5\r\nhello world\r\n0\r\n\r\n", -400 },    /* data longer than its size */
		{ "3\r\nhello\r\n0\r\n\r\n", -400 },
		{ "5\r\nhello\rX", -400 },                    /* CR, then not LF */
		{ "5\r\nhello\r\r\n", -400 },
		{ "0\r\nX: a\x01\r\n\r\n", -400 },            /* control byte in a trailer */
		{ "0\r\nX: a\rb\r\n\r\n", -400 },
		{ "0\r\n\rX", -400 },
		{ "0\r\nX: a\r\r\n", -400 },
		{ "5 6\r\nhello\r\n0\r\n\r\n", -400 },      /* white space, then not ';' */
		{ "5 garbage\r\nhello\r\n0\r\n\r\n", -400 },
		{ "5 \t\r\nhello\r\n0\r\n\r\n", 1 },          /* white space before the end */
		{ "5\t;x\r\nhello\r\n0\r\n\r\n", 1 },
	};
	size_t n;

	for (size_t i = 0; i < NELEM(cs); i++) {
		int r = dechunk_status(cs[i].s, 1024);

		if (r != cs[i].want) {
			fputs("\n  \"", stderr);
			show(cs[i].s, strlen(cs[i].s));
			fprintf(stderr, "\": got %d, want %d\n", r, cs[i].want);
		}
		CU_ASSERT_EQUAL(r, cs[i].want);
	}

	/* An extension, or a trailer, that does not end. */
	n = (size_t)snprintf(s, sizeof(s), "1;");
	memset(s + n, 'e', sizeof(s) - n - 1);
	s[sizeof(s) - 1] = '\0';
	CU_ASSERT_EQUAL(dechunk_status(s, 1024), -400);
	n = (size_t)snprintf(s, sizeof(s), "0\r\nX: ");
	memset(s + n, 't', sizeof(s) - n - 1);
	s[sizeof(s) - 1] = '\0';
	CU_ASSERT_EQUAL(dechunk_status(s, 1024), -400);
}

static void
test_chunked_leftover(void)
{
	const char *next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
	char s[256];
	char *b;
	size_t in, out, n;
	const char *why;

	n = (size_t)snprintf(s, sizeof(s), "%s%s", BODY, next);
	CU_ASSERT_EQUAL(dechunk(s, n, 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, strlen(BODY));
	CU_ASSERT_EQUAL(out, 11);
	CU_ASSERT_EQUAL(memcmp(b, "hello world", 11), 0);
	CU_ASSERT_EQUAL(memcmp(b + in, next, strlen(next)), 0);
	free(b);

	/* With trailers; and the leftover looking like more chunks. */
	n = (size_t)snprintf(s, sizeof(s), "2\r\nok\r\n0\r\nT: 1\r\n\r\n5\r\nextra\r\n0\r\n\r\n");
	CU_ASSERT_EQUAL(dechunk(s, n, 1024, &b, &in, &out, &why), 1);
	CU_ASSERT_EQUAL(in, strlen("2\r\nok\r\n0\r\nT: 1\r\n\r\n"));
	CU_ASSERT_EQUAL(out, 2);
	CU_ASSERT_EQUAL(memcmp(b + in, "5\r\nextra", 8), 0);
	free(b);

	/* Called again once complete, it stays complete and takes nothing. */
	{
		struct kwh_chunked c;
		size_t n2 = strlen(BODY) + 3;
		char *b2 = dup_exact(BODY "xyz", n2);

		memset(&c, 0, sizeof(c));
		in = out = 0;
		CU_ASSERT_EQUAL(kwh_chunked_step(&c, b2, n2, &in, &out, 1024, &why), 1);
		CU_ASSERT_EQUAL(in, strlen(BODY));
		CU_ASSERT_EQUAL(kwh_chunked_step(&c, b2, n2, &in, &out, 1024, &why), 1);
		CU_ASSERT_EQUAL(in, strlen(BODY));
		CU_ASSERT_EQUAL(out, 11);
		free(b2);
	}
}

/* ---- reason phrases ---- */

static void
test_pct_decode(void)
{
	static const struct { const char *in, *out; size_t len; } cs[] = {
		{ "", "", 0 },
		{ "abc", "abc", 3 },
		{ "a+b", "a b", 3 },
		{ "db%2Fpw", "db/pw", 5 },
		{ "%41%62", "Ab", 2 },
		{ "%e2%82%ac", "\xe2\x82\xac", 3 },
		{ "%", "%", 1 },            /* a '%' without two hex digits stays */
		{ "%4", "%4", 2 },
		{ "%4g", "%4g", 3 },
		{ "%%41", "%A", 2 },
		{ "%00x", "%00x", 4 },      /* never a NUL */
		{ "x%41", "xA", 2 },
	};
	char out[32];

	for (size_t i = 0; i < NELEM(cs); i++) {
		memset(out, 'Z', sizeof(out));
		CU_ASSERT_EQUAL(kwh_pct_decode(cs[i].in, strlen(cs[i].in), out), cs[i].len);
		CU_ASSERT_EQUAL(memcmp(out, cs[i].out, cs[i].len + 1), 0);
	}
	/* Only the n bytes given are read. */
	CU_ASSERT_EQUAL(kwh_pct_decode("%41", 2, out), 2);
	CU_ASSERT_STRING_EQUAL(out, "%4");
}

static void
test_reason(void)
{
	const int parser_statuses[] = { 400, 413, 417, 431, 501, 505 };

	CU_ASSERT_STRING_EQUAL(kwh_reason(200), "OK");
	CU_ASSERT_STRING_EQUAL(kwh_reason(404), "Not Found");
	CU_ASSERT_STRING_EQUAL(kwh_reason(413), "Content Too Large");
	CU_ASSERT_STRING_EQUAL(kwh_reason(431), "Request Header Fields Too Large");
	CU_ASSERT_STRING_EQUAL(kwh_reason(505), "HTTP Version Not Supported");
	CU_ASSERT_STRING_EQUAL(kwh_reason(400), "Bad Request");
	CU_ASSERT_STRING_EQUAL(kwh_reason(100), "Continue");
	CU_ASSERT_STRING_EQUAL(kwh_reason(299), "Unknown");
	CU_ASSERT_STRING_EQUAL(kwh_reason(418), "Unknown");
	CU_ASSERT_STRING_EQUAL(kwh_reason(0), "Unknown");
	CU_ASSERT_STRING_EQUAL(kwh_reason(-400), "Unknown");
	/* Every status the parser refuses with has its phrase. */
	for (size_t i = 0; i < NELEM(parser_statuses); i++)
		CU_ASSERT_STRING_NOT_EQUAL(kwh_reason(parser_statuses[i]), "Unknown");
}

/* ---- random mutations ------------------------------------------------------- */

/* Seeds the mutations start from: what clients send, and what the
 * parsers are most particular about. */
static const char *const seeds[] = {
	"GET /v1/vaults/prod/secrets/db HTTP/1.1\r\nHost: x\r\n\r\n",
	"PUT /v1/vaults/prod/secrets/db HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n"
	    "Content-Type: application/json\r\n\r\n{\"value\":\"hunter\"}",
	"POST /v1/vaults/v/keys/datakey HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "Expect: 100-continue\r\n\r\n5\r\n{\"a\":\r\n3;ext=1\r\n1}\n\r\n0\r\nT: v\r\n\r\n",
	"GET /v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"\r\nDELETE /v1/vaults/a/secrets/b?x=%41&y=+ HTTP/1.1\nHost: h\nConnection: close\n\n",
};

static const char *const dict[] = {
	"\r\n", "\n", ":", " ", "\t", "0", "1", "f", "F", ";", "chunked", "Content-Length",
	"Transfer-Encoding", "Host", "Expect", "100-continue", "HTTP/1.1", "HTTP/1.0", "\r\n\r\n",
	"18446744073709551616", "ffffffffffffffff", "%", "?", "#", "\x00", "\x7f", "\xff",
};

/* xorshift64*: the same inputs on every run and every machine. */
static uint64_t
rnd(uint64_t *st)
{
	*st ^= *st >> 12;
	*st ^= *st << 25;
	*st ^= *st >> 27;
	return *st * 2685821657736338717ULL;
}

/* One to eight mutations of buf[0..*n) (capacity cap): flip, set, insert
 * from the dictionary, delete, duplicate a run. */
static void
mutate(uint64_t *st, char *buf, size_t *n, size_t cap)
{
	for (int k = (int)(rnd(st) % 8) + 1; k > 0; k--) {
		size_t at = *n > 0 ? rnd(st) % (*n + 1) : 0, m;
		const char *w;

		switch (rnd(st) % 5) {
		case 0:
			if (at < *n)
				buf[at] ^= (char)(1u << (rnd(st) % 8));
			break;
		case 1:
			if (at < *n)
				buf[at] = (char)rnd(st);
			break;
		case 2:
			w = dict[rnd(st) % NELEM(dict)];
			m = strlen(w) > 0 ? strlen(w) : 1;   /* "\x00" has length 0: one NUL */
			if (*n + m <= cap) {
				memmove(buf + at + m, buf + at, *n - at);
				memcpy(buf + at, w, m);
				*n += m;
			}
			break;
		case 3:
			m = rnd(st) % 16;
			if (at + m > *n)
				m = *n - at;
			memmove(buf + at, buf + at + m, *n - at - m);
			*n -= m;
			break;
		default:
			m = rnd(st) % 32;
			if (at + m > *n)
				m = *n - at;
			if (*n + m <= cap) {
				memmove(buf + at + m, buf + at, *n - at);
				*n += m;
			}
			break;
		}
	}
}

/* The properties of one input: what a parse accepts it accepts from the
 * head alone, and the same whatever follows; fed whole or byte by byte, a
 * chunked body gives the same answer and the same bytes; nothing is read
 * or written outside the buffer (ASan, heap blocks of exact size). */
static int
check_one(const char *in, size_t n)
{
	struct kwh_head h, h2;
	int r, r2, bad = 0;

	r = parse_n(in, n, MAX_HEAD, &h);
	if (r > 0) {
		bad |= (size_t)r > n;
		r2 = parse_n(in, (size_t)r, MAX_HEAD, &h2);
		bad |= r2 != r || h2.method != h.method || h2.content_length != h.content_length ||
		    h2.chunked != h.chunked || h2.target_len != h.target_len;
	} else if (r == 0) {
		bad |= n >= MAX_HEAD;
	}
	if (r > 0 && h.chunked) {
		size_t len = n - (size_t)r, in1 = 0, out1 = 0, in2 = 0, out2 = 0;
		char *a = dup_exact(in + r, len), *b = dup_exact(in + r, len);
		struct kwh_chunked c1, c2;
		const char *why = NULL;
		int s1, s2 = 0;

		memset(&c1, 0, sizeof(c1));
		memset(&c2, 0, sizeof(c2));
		s1 = kwh_chunked_step(&c1, a, len, &in1, &out1, 1 << 20, &why);
		bad |= out1 > in1 || in1 > len || (s1 < 0 && why == NULL);
		for (size_t avail = 1; avail <= len && s2 == 0; avail++)
			s2 = kwh_chunked_step(&c2, b, avail, &in2, &out2, 1 << 20, &why);
		bad |= s1 != s2 || out2 > in2;
		if (s1 == 1 && s2 == 1)
			bad |= in1 != in2 || out1 != out2 || memcmp(a, b, out1) != 0;
		free(a);
		free(b);
	}
	if (bad) {
		fprintf(stderr, "\n  property failed on: ");
		show(in, n);
		fputc('\n', stderr);
	}
	return bad;
}

static void
test_mutations(void)
{
	enum { CAP = 2048, ROUNDS = 60000 };
	char buf[CAP];
	uint64_t st = 0x6b657977617264ULL;   /* "keyward" */
	int failed = 0, accepted = 0;

	for (int i = 0; i < ROUNDS && failed < 5; i++) {
		const char *seed = seeds[i % NELEM(seeds)];
		size_t n = strlen(seed);
		struct kwh_head h;

		memcpy(buf, seed, n);
		mutate(&st, buf, &n, CAP);
		failed += check_one(buf, n);
		accepted += parse_n(buf, n, MAX_HEAD, &h) > 0;
	}
	CU_ASSERT_EQUAL(failed, 0);
	/* The mutations must reach both sides, or this tests little. */
	CU_ASSERT(accepted > ROUNDS / 20 && accepted < ROUNDS - ROUNDS / 20);
	printf("\n  %d mutated requests, %d heads accepted\n", ROUNDS, accepted);
}

int
main(void)
{
	static const struct kwt_case head_tests[] = {
		{ "a minimal GET: length, method, target, defaults", test_head_minimal },
		{ "methods: the six, unknown, lowercase, not tokens", test_head_methods },
		{ "targets: origin-form of visible ASCII only", test_head_target },
		{ "versions: 1.0 and 1.1 only", test_head_version },
		{ "keep-alive by version and Connection", test_head_keep_alive },
		{ "Content-Length: values, duplicates, junk, overflow",
		    test_head_content_length },
		{ "Transfer-Encoding: chunked only, never with a length",
		    test_head_transfer_encoding },
		{ "Host: exactly one in HTTP/1.1", test_head_host },
		{ "Expect: 100-continue only", test_head_expect },
		{ "header syntax: folding, colons, control bytes", test_head_header_syntax },
		{ "at most 100 headers", test_head_header_count },
		{ "every prefix of a request needs more", test_head_incomplete },
		{ "a head at and over max_head", test_head_max },
		{ "empty lines before the request line", test_head_leading_crlf },
		{ "bare LF line endings", test_head_bare_lf },
		{ "the body is not part of the head", test_head_body_not_counted },
		{ NULL, NULL }
	};
	static const struct kwt_case chunked_tests[] = {
		{ "a body decoded in place in one call", test_chunked_whole },
		{ "a body fed byte by byte, and split in two", test_chunked_bytewise },
		{ "extensions, trailers, hex in any case", test_chunked_ext_trailers },
		{ "max_body: per chunk, in total, 17 digits, leading zeros, wrap-around",
		    test_chunked_limits },
		{ "bad framing", test_chunked_bad_framing },
		{ "bytes after the body are left alone", test_chunked_leftover },
		{ NULL, NULL }
	};
	static const struct kwt_case decoding_tests[] = {
		{ "kwh_pct_decode", test_pct_decode },
		{ "kwh_reason", test_reason },
		{ "60,000 seeded mutations: the parsers' properties hold", test_mutations },
		{ NULL, NULL }
	};
	static const struct kwt_suite suites[] = {
		{ "http request head", NULL, NULL, head_tests },
		{ "http chunked body", NULL, NULL, chunked_tests },
		{ "http reason phrases and query decoding", NULL, NULL, decoding_tests },
		{ NULL, NULL, NULL, NULL }
	};

	return kwt_cunit_main_suites(suites);
}
