// SPDX-License-Identifier: MIT
/*
 * check_main.c - main for every Check test program: run the suites the
 * program lists (check_main.h), exit 1 if any test failed, TEST_SKIP if
 * none could run here.
 */
#include <stdlib.h>

#include "harness/check_main.h"

int main(void)
{
	SRunner *sr = NULL;

	for (const test_suite_fn *fn = test_suites; *fn; fn++) {
		Suite *s = (*fn)();
		if (!s)
			continue;
		if (!sr)
			sr = srunner_create(s);
		else
			srunner_add_suite(sr, s);
	}
	if (!sr)
		return TEST_SKIP;
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
