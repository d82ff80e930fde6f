// SPDX-License-Identifier: MIT
/*
 * test_hostile.c - clients that attack heapd and the processes they share
 * the arena with, each against a real heapd and real client processes
 * (issue "Trust boundary and ownership"). The suites are listed in
 * hostile_suites.h. Run one alone with CK_RUN_SUITE=trust (or sessions,
 * limits).
 */
#include <stdlib.h>

#include "hostile_suites.h"

int main(void)
{
	SRunner *sr = srunner_create(hostile_trust_suite());
	srunner_add_suite(sr, hostile_sessions_suite());
	srunner_add_suite(sr, hostile_limits_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
