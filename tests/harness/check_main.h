// SPDX-License-Identifier: MIT
/*
 * check_main.h - the one main of every Check test program (check_main.c).
 *
 * A test program lists the functions that build its suites:
 *
 *     TEST_SUITES(pageheap_suite);
 *
 * and main runs them all (CK_RUN_SUITE and CK_RUN_CASE pick some, as Check
 * does), exiting 1 if any test failed. test_suite_single builds a suite of
 * one test case in one call. A program that needs to set itself
 * up first (from its environment, say) does it in its suite function, which
 * runs before any test. A suite function that finds its tests cannot run
 * here says why on stderr and returns NULL; if every one does, main exits
 * with TEST_SKIP, which CTest counts as skipped. A single test that cannot
 * run here calls test_skip.
 */
#ifndef HEAPD_TESTS_HARNESS_CHECK_MAIN_H
#define HEAPD_TESTS_HARNESS_CHECK_MAIN_H

#include <check.h>

#define TEST_SKIP 77 /* the exit code CTest takes for a skipped test (SKIP_RETURN_CODE) */

typedef Suite *(*test_suite_fn)(void);

/* NULL-terminated; defined by TEST_SUITES in the test program. */
extern const test_suite_fn test_suites[];

#define TEST_SUITES(...) const test_suite_fn test_suites[] = { __VA_ARGS__, NULL }

/*
 * A suite of one test case, for the programs that need no more: the tests
 * that follow, up to a NULL, each run with setup and teardown as a checked
 * fixture (NULL: none) and timeout seconds at most.
 */
Suite *test_suite_single(const char *name, const char *tcase, double timeout, SFun setup,
                         SFun teardown, ...);

/*
 * A test's precondition does not hold here (why, printf-style). As root,
 * which CI runs as, the test must run: it fails. Otherwise this prints
 * "SKIPPED: <test>: <why>" on stderr, so the log shows it, and returns;
 * the test then returns at once.
 */
void test_skip(const char *test, const char *why, ...) __attribute__((format(printf, 2, 3)));

#endif
