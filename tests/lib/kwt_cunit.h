/* kwt_cunit.h - run the CUnit registry the one way every test program
 * does: verbose, and counting as a failure every failed assertion, every
 * failed test and every suite whose set-up failed (CUnit leaves that
 * suite's tests inactive, not failed).  Header only: not every test
 * program links tests/lib. */
#ifndef KWT_CUNIT_H
#define KWT_CUNIT_H
#include <CUnit/Basic.h>

/* Run what is registered, clean the registry up; the count of failures. */
static inline unsigned
kwt_cunit_run(void)
{
	unsigned failed;

	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed() +
	    CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return failed;
}
#endif
