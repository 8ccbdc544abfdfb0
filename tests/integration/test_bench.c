/*
 * keywarden-bench's smoke test: the real keywardend on a real SoftHSM token
 * made for this run, driven by the real bench for about a second per
 * workload.  The bench must finish, report no errors, and report figures
 * that hang together; how high they are is reported, never asserted.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <jansson.h>

#include "tests/lib/kwtest.h"
#include "tests/lib/kwt_cunit.h"

static struct kwt_token tok;
static struct kwt_daemon dmn;
static char bench[512];
static char out[1 << 16];

static int
suite_init(void)
{
	snprintf(bench, sizeof(bench), "%s/bench/keywarden-bench", kwt_require("KW_TOP_BUILDDIR"));
	if (kwt_token_new(&tok, "kw-bench") != 0)
		return -1;
	return kwt_daemon_start(&dmn, &tok, NULL);
}

static int
suite_clean(void)
{
	kwt_daemon_free(&dmn);
	kwt_token_free(&tok);
	return 0;
}

/* The last line of out, parsed; NULL if it is not a JSON object. */
static json_t *
last_json_line(void)
{
	size_t n = strlen(out);
	char *p;

	while (n > 0 && out[n - 1] == '\n')
		out[--n] = '\0';
	p = strrchr(out, '\n');
	return json_loads(p ? p + 1 : out, 0, NULL);
}

/* Run the bench on workload w for one second against the test daemon and
 * return its JSON line (NULL, with the output printed, if it failed). */
static json_t *
bench_run(const char *w, const char *secrets)
{
	char *argv[] = {
		bench, "--config", dmn.conf, "--vault", "dev", "--workload", (char *)w,
		"--clients", "8", "--seconds", "1", "--secrets", (char *)secrets,
		"--raw-seconds", "0.3", "--json", NULL,
	};
	int st = kwt_run(argv, out, sizeof(out));
	json_t *j = last_json_line();

	if (st != 0 || j == NULL)
		fprintf(stderr, "keywarden-bench --workload %s: exit %d, output:\n%s\n", w, st, out);
	CU_ASSERT_EQUAL(st, 0);
	return j;
}

/* What every run must show: work done, no errors, figures that agree. */
static void
check_figures(json_t *j, const char *w, long long secrets)
{
	double ops_per_s, raw, p50, p99, max;

	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "workload")), w);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "errors")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "clients")), 8);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "secrets")), secrets);
	ops_per_s = json_number_value(json_object_get(j, "ops_per_s"));
	raw = json_number_value(json_object_get(j, "raw_token_ops_per_s"));
	p50 = json_number_value(json_object_get(j, "p50_us"));
	p99 = json_number_value(json_object_get(j, "p99_us"));
	max = json_number_value(json_object_get(j, "max_us"));
	CU_ASSERT(json_integer_value(json_object_get(j, "ops")) > 0);
	CU_ASSERT(ops_per_s > 0);
	CU_ASSERT(raw > 0);
	CU_ASSERT(p50 > 0);
	CU_ASSERT(p99 >= p50);
	CU_ASSERT(max >= p99);
	CU_ASSERT_DOUBLE_EQUAL(json_number_value(json_object_get(j, "ratio")), ops_per_s / raw, 0.01);
	/* The daemon was found through the socket, and measured from /proc. */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "daemon_pid")), dmn.pid);
	CU_ASSERT(json_number_value(json_object_get(j, "cpu_us_per_op")) >= 0);
	CU_ASSERT(json_integer_value(json_object_get(j, "rss_kib")) > 0);
	fprintf(stderr, "  %s: %.0f ops/s, p50 %.0f us, p99 %.0f us, raw token %.0f/s\n",
	    w, ops_per_s, p50, p99, raw);
}

static void
test_get(void)
{
	json_t *j = bench_run("get", "300");
	long st;
	char *resp = NULL, path[128];

	check_figures(j, "get", 300);
	json_decref(j);
	/* The secrets it read exist for real, made through the API. */
	snprintf(path, sizeof(path), "/v1/vaults/dev/secrets/bench/s%07d", 299);
	st = kwt_http(dmn.sock, "GET", path, NULL, &resp);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(resp ? resp : "", "\"value\""));
	free(resp);
}

static void
test_set(void)
{
	json_t *j = bench_run("set", "300");
	long st;
	json_t *v;

	check_figures(j, "set", 300);
	json_decref(j);
	/* Writes land: some name got versions beyond the one the get run made. */
	v = kwt_http_json(dmn.sock, "GET", "/v1/vaults/dev/secrets?prefix=bench/", NULL, &st);
	CU_ASSERT_EQUAL(st, 200);
	{
		json_t *s, *list = json_object_get(v, "secrets");
		size_t i;
		json_int_t newest = 0;

		json_array_foreach(list, i, s)
			if (json_integer_value(json_object_get(s, "version")) > newest)
				newest = json_integer_value(json_object_get(s, "version"));
		CU_ASSERT_EQUAL(json_array_size(list), 300);
		CU_ASSERT(newest > 2);
	}
	json_decref(v);
}

static void
test_mixed(void)
{
	json_t *j = bench_run("mixed", "300");

	check_figures(j, "mixed", 300);
	CU_ASSERT(json_integer_value(json_object_get(j, "gets")) > json_integer_value(json_object_get(j, "sets")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "gets")) + json_integer_value(json_object_get(j, "sets")),
	    json_integer_value(json_object_get(j, "ops")));
	json_decref(j);
}

static void
test_datakey(void)
{
	json_t *j = bench_run("datakey", "300");

	check_figures(j, "datakey", 300);
	json_decref(j);
}

int
main(void)
{
	static const struct kwt_case cases[] = {
		{ "get: 1 s, no errors, figures agree", test_get },
		{ "set: 1 s, no errors, versions written", test_set },
		{ "mixed: 1 s, 90/10", test_mixed },
		{ "datakey: 1 s, no errors", test_datakey },
		{ NULL, NULL }
	};

	return kwt_cunit_main("bench", suite_init, suite_clean, cases);
}
