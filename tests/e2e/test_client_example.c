// SPDX-License-Identifier: MIT
/*
 * test_client_example.c - runs the README's example program (example.c)
 * against a real heapd, so the example stays true: one process puts a
 * string under a name and exits, another finds it by name, reads and frees
 * it, and then nothing is in use and no name is bound; and the same with
 * the reader started first, waiting for the name.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"

/* Run the example with args; its stdout into out. Returns its exit status. */
static int run_example(const char *args, char *out, size_t outlen)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "'%s' %s", EXAMPLE_BIN, args);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	return pclose(f);
}

/* Names bound, through a control connection. */
static uint64_t roots_bound(void)
{
	Heapd__Envelope *owner = NULL;
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	uint64_t n = st ? st->roots : UINT64_MAX;
	wire_free(owner);
	return n;
}

START_TEST(test_example)
{
	char out[256];

	hd_default_start(NULL, NULL);
	ck_assert_int_eq(run_example("put 'hello, other process'", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	ck_assert_uint_eq(roots_bound(), 1);
	ck_assert_int_eq(run_example("get", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "hello, other process\n");
	ck_assert(hctl_settle(hd_default.sock, 50));
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hd_default_stop();
}
END_TEST

/* The reader first: it waits for the name, and the writer's bind wakes it. */
START_TEST(test_example_reader_first)
{
	char cmd[512], out[256];

	hd_default_start(NULL, NULL);
	snprintf(cmd, sizeof(cmd), "'%s' get", EXAMPLE_BIN);
	FILE *reader = popen(cmd, "r");
	ck_assert_ptr_nonnull(reader);
	ck_assert_int_eq(run_example("put 'you waited'", out, sizeof(out)), 0);
	size_t n = fread(out, 1, sizeof(out) - 1, reader);
	out[n] = '\0';
	ck_assert_int_eq(pclose(reader), 0);
	ck_assert_str_eq(out, "you waited\n");
	ck_assert(hctl_settle(hd_default.sock, 50));
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hd_default_stop();
}
END_TEST

static Suite *client_example_suite(void)
{
	Suite *s = suite_create("client_example");
	TCase *tc = tcase_create("example");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_example);
	tcase_add_test(tc, test_example_reader_first);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(client_example_suite);
