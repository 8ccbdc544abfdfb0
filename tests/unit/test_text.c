/*
 * test_text.c - the text the daemon writes by hand on its hot paths instead
 * of through a library: the JSON writer (jw), the RFC 3339 timestamps and
 * the AAD of a sealed value.  Each is checked against the library it
 * replaces (jansson, gmtime_r + snprintf, snprintf).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CUnit/Basic.h>
#include <jansson.h>

#include "daemon/jw.h"
#include "daemon/kwtime.h"
#include "daemon/seal.h"
#include "tests/lib/kwt_cunit.h"

static void
test_jw_roundtrip(void)
{
	/* Quotes, backslashes, every control byte, DEL, multi-byte UTF-8. */
	char ctl[40];
	const char *vals[] = {
		"", "plain", "a\"b\\c/d", "tab\there\nnew\rline\b\f",
		"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "\x7f", ctl,
	};
	struct jw w;
	json_t *j;
	json_error_t je;
	char *out, key[16];
	size_t len, i;

	for (i = 0; i < 31; i++)
		ctl[i] = (char)(i + 1);
	ctl[31] = '\0';
	jw_open(&w);
	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		snprintf(key, sizeof(key), "k%zu", i);
		jw_str(&w, key, vals[i]);
	}
	jw_int(&w, "neg", -9007199254740991LL);
	jw_int(&w, "zero", 0);
	jw_int(&w, "min", INT64_MIN);
	jw_int(&w, "max", INT64_MAX);
	jw_null(&w, "nothing");
	jw_bool(&w, "yes", 1);
	jw_bool(&w, "no", 0);
	jw_begin_obj(&w, "inner");
	jw_int(&w, "a", 1);
	jw_str(&w, "b", NULL);
	jw_end_obj(&w);
	jw_raw(&w, "raw", "[1,2]", 5);
	out = jw_finish(&w, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL(len, strlen(out));
	j = json_loadb(out, len, JSON_REJECT_DUPLICATES, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		snprintf(key, sizeof(key), "k%zu", i);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, key)), vals[i]);
	}
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "neg")), -9007199254740991LL);
	CU_ASSERT(json_is_integer(json_object_get(j, "zero")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "zero")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "min")), INT64_MIN);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "max")), INT64_MAX);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"min\":-9223372036854775808,"));
	CU_ASSERT(json_is_null(json_object_get(j, "nothing")));
	CU_ASSERT(json_is_true(json_object_get(j, "yes")));
	CU_ASSERT(json_is_false(json_object_get(j, "no")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(j, "inner"), "a")), 1);
	CU_ASSERT(json_is_null(json_object_get(json_object_get(j, "inner"), "b")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "raw")), 2);
	json_decref(j);
	free(out);

	/* An empty object. */
	jw_open(&w);
	out = jw_finish(&w, &len);
	CU_ASSERT_STRING_EQUAL(out, "{}");
	free(out);
}

static void
test_jw_invalid_utf8(void)
{
	/* Each byte that is not part of valid UTF-8 becomes U+FFFD; the text
	 * stays valid JSON, the valid parts survive. */
	const struct { const char *in, *want; } cases[] = {
		{ "a\xff" "b", "a\xef\xbf\xbd" "b" },
		{ "\xc3", "\xef\xbf\xbd" },                       /* cut short */
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },         /* overlong */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* surrogate */
		{ "\xf4\x90\x80\x80x", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx" },
		{ "ok\xc3\xa9", "ok\xc3\xa9" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct jw w;
		json_t *j;
		size_t len;
		char *out;

		jw_open(&w);
		jw_str(&w, "s", cases[i].in);
		out = jw_finish(&w, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(out);
		j = json_loads(out, 0, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "s")), cases[i].want);
		json_decref(j);
		free(out);
	}
}

static void
test_jw_printable(void)
{
	/* Controls (C0, DEL, C1) and bytes outside valid UTF-8 become one
	 * '?' each; everything else stays, and jansson takes the result. */
	const struct { const char *in, *want; } cases[] = {
		{ "", "" },
		{ "plain text: 'quoted' \"too\"", "plain text: 'quoted' \"too\"" },
		{ "a\nb\tc\rd\x01" "e\x1b[2Jf\x7f", "a?b?c?d?e?[2Jf?" },
		{ "\xc2\x9b" "31m \xc2\x80 \xc2\x9f \xc2\xa0", "?31m ? ? \xc2\xa0" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91" },
		{ "cut \xc3", "cut ?" },                        /* a "%.64s" in the middle */
		{ "cut \xe2\x82", "cut ??" },
		{ "\xff\xfe", "??" },
		{ "\xc0\xaf", "??" },                             /* overlong */
		{ "\xed\xa0\x80", "???" },                         /* surrogate */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[128];
		json_t *j;

		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		jw_printable(buf);
		CU_ASSERT_STRING_EQUAL(buf, cases[i].want);
		j = json_string(buf);
		CU_ASSERT_PTR_NOT_NULL(j);
		json_decref(j);
	}
}

static void
libc_time(char *buf, size_t len, int64_t us)
{
	time_t s = (time_t)(us / 1000000);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(us % 1000000));
}

static void
test_time_str(void)
{
	const int64_t fixed[] = {
		0, 1, 999999, 1000000, 86399999999LL, 86400000000LL,
		951782400000000LL,        /* 2000-02-29 */
		951868800000000LL,        /* 2000-03-01 */
		4107542400000000LL,       /* 2100-03-01 */
		1795910400123456LL,       /* 2026-11-29 */
		253402300799999999LL,     /* 9999-12-31T23:59:59.999999 */
	};
	char a[40], b[96];
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	int64_t back;
	int bad = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		kwd_time_str(a, sizeof(a), fixed[i]);
		libc_time(b, sizeof(b), fixed[i]);
		CU_ASSERT_STRING_EQUAL(a, b);
		CU_ASSERT_EQUAL(kwd_time_parse(a, &back), 0);
		CU_ASSERT_EQUAL(back, fixed[i]);
	}
	/* 200,000 instants spread over 1970..9999. */
	for (int i = 0; i < 200000; i++) {
		int64_t us;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		us = (int64_t)(x % 253402300800000000ULL);
		kwd_time_str(a, sizeof(a), us);
		libc_time(b, sizeof(b), us);
		if (strcmp(a, b) != 0 && bad++ < 3)
			fprintf(stderr, "\n  %lld: %s, libc %s\n", (long long)us, a, b);
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* A short buffer is cut, still terminated. */
	kwd_time_str(a, 11, 0);
	CU_ASSERT_STRING_EQUAL(a, "1970-01-01");
}

static void
test_seal_aad(void)
{
	char buf[64], want[64];
	const uint64_t versions[] = { 0, 1, 9, 10, 42, 18446744073709551615ULL };

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		int n = seal_aad(buf, sizeof(buf), "prod", "db/pass", versions[i]);
		int m = snprintf(want, sizeof(want), "keywarden/v1/prod/db/pass/%llu",
		    (unsigned long long)versions[i]);

		CU_ASSERT_EQUAL(n, m);
		CU_ASSERT_STRING_EQUAL(buf, want);
	}
	/* "keywarden/v1/v/n/7" is 18 bytes: 19 fit, 18 do not. */
	CU_ASSERT_EQUAL(seal_aad(buf, 19, "v", "n", 7), 18);
	CU_ASSERT_STRING_EQUAL(buf, "keywarden/v1/v/n/7");
	CU_ASSERT_EQUAL(seal_aad(buf, 18, "v", "n", 7), -ENAMETOOLONG);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "jw: every kind of member, read back by jansson", test_jw_roundtrip },
		{ "jw: bytes that are not UTF-8", test_jw_invalid_utf8 },
		{ "jw_printable: controls and broken UTF-8", test_jw_printable },
		{ "kwd_time_str against gmtime_r, and back", test_time_str },
		{ "seal_aad against snprintf", test_seal_aad },
		{ NULL, NULL }
	};

	return kwt_cunit_main("hand-written text", NULL, NULL, cases);
}
