// SPDX-License-Identifier: MIT
/*
 * check_main.c - main for every Check test program: run the suites the
 * program lists (check_main.h), exit 1 if any test failed, TEST_SKIP if
 * none could run here; the one-call suite of one test case; and a single
 * test's skip.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness/check_main.h"

Suite *test_suite_single(const char *name, const char *tcase, double timeout, SFun setup,
                         SFun teardown, ...)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(tcase);
	va_list ap;

	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	va_start(ap, teardown);
	for (const TTest *t; (t = va_arg(ap, const TTest *)) != NULL;)
		tcase_add_test(tc, t);
	va_end(ap);
	suite_add_tcase(s, tc);
	return s;
}

void test_skip(const char *test, const char *why, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, why);
	vsnprintf(text, sizeof(text), why, ap);
	va_end(ap);
	if (geteuid() == 0)
		ck_abort_msg("%s cannot run, as root: %s", test, text);
	fprintf(stderr, "SKIPPED: %s: %s\n", test, text);
}

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
