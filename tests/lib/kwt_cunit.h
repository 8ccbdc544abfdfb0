/* kwt_cunit.h - register and run CUnit tests the one way every test
 * program does.  A program lists its tests in a table and hands it to
 * kwt_cunit_main() (one suite) or kwt_cunit_main_suites() (several); what
 * it sets up before and tears down after stays in its own main().  The run
 * is verbose, and counts as a failure every failed assertion, every failed
 * test and every suite whose set-up failed (CUnit leaves that suite's tests
 * inactive, not failed).  Header only: not every test program links
 * tests/lib. */
#ifndef KWT_CUNIT_H
#define KWT_CUNIT_H
#include <stdio.h>

#include <CUnit/Basic.h>

/* One test: the name the run prints, and its function. */
struct kwt_case {
	const char *name;
	CU_TestFunc fn;
};

/* One suite: its name, its set-up and clean-up (either may be NULL), and its
 * tests, in the order they run, ending with { NULL, NULL }. */
struct kwt_suite {
	const char *name;
	CU_InitializeFunc init;
	CU_CleanupFunc clean;
	const struct kwt_case *cases;
};

/* tests/lib's check after each test (kwtest.c): the temporary directories
 * the test left behind are removed and fail it; a fatal assertion skips a
 * test's own clean-up, and CUnit still runs this.  Weak: a program that
 * does not link tests/lib has no such directories, and no such function. */
int kwt_tmp_test_end(void) __attribute__((weak));

static inline void
kwt_cunit_test_end(void)
{
	if (kwt_tmp_test_end != NULL)
		(void)kwt_tmp_test_end();
}

/* Run what is registered; the count of failures.  The caller cleans the
 * registry up. */
static inline unsigned
kwt_cunit_run(void)
{
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	return CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
	    CU_get_number_of_suites_failed();
}

/* Register suites (in order, ending with an entry whose name is NULL) and
 * their tests, run them and clean the registry up.  Returns what main()
 * should: 0 when everything passed, 1 when anything failed, or 99 (the
 * automake hard error) when the registry, a suite or a test could not be
 * set up, after saying on stderr which and why. */
static inline int
kwt_cunit_main_suites(const struct kwt_suite *suites)
{
	const struct kwt_suite *su;
	const struct kwt_case *c;
	CU_pSuite s;
	int r = 99;

	if (CU_initialize_registry() != CUE_SUCCESS) {
		fprintf(stderr, "kwt_cunit: cannot initialize the CUnit registry: %s\n",
		    CU_get_error_msg());
		return 99;
	}
	for (su = suites; su->name != NULL; su++) {
		if ((s = CU_add_suite_with_setup_and_teardown(su->name, su->init, su->clean,
		    NULL, kwt_cunit_test_end)) == NULL) {
			fprintf(stderr, "kwt_cunit: cannot add suite \"%s\": %s\n",
			    su->name, CU_get_error_msg());
			goto out;
		}
		for (c = su->cases; c->name != NULL; c++) {
			if (CU_add_test(s, c->name, c->fn) == NULL) {
				fprintf(stderr, "kwt_cunit: cannot add test \"%s\" to suite "
				    "\"%s\": %s\n", c->name, su->name, CU_get_error_msg());
				goto out;
			}
		}
	}
	r = kwt_cunit_run() == 0 ? 0 : 1;
out:
	CU_cleanup_registry();
	return r;
}

/* kwt_cunit_main_suites() with the one suite called name. */
static inline int
kwt_cunit_main(const char *name, CU_InitializeFunc init, CU_CleanupFunc clean,
    const struct kwt_case *cases)
{
	const struct kwt_suite suites[] = {
		{ name, init, clean, cases },
		{ NULL, NULL, NULL, NULL }
	};

	return kwt_cunit_main_suites(suites);
}
#endif
