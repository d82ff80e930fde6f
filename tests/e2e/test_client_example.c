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

#include "client_util.h"

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
	Heapd__StatsReply *st;
	Heapd__Envelope *owner = NULL;
	uint64_t n = UINT64_MAX;
	int fd = harness_control(cu_daemon.sock);
	if (fd >= 0 && harness_stats(fd, &st, &owner) == 0)
		n = st->roots;
	wire_free(owner);
	if (fd >= 0)
		close(fd);
	return n;
}

START_TEST(test_example)
{
	char out[256];

	cu_daemon_start(NULL);
	ck_assert_int_eq(run_example("put 'hello, other process'", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	ck_assert_uint_eq(roots_bound(), 1);
	ck_assert_int_eq(run_example("get", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "hello, other process\n");
	ck_assert(cu_settle(50));
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_uint_eq(cu_check(), 0);
	cu_daemon_stop();
}
END_TEST

/* The reader first: it waits for the name, and the writer's bind wakes it. */
START_TEST(test_example_reader_first)
{
	char cmd[512], out[256];

	cu_daemon_start(NULL);
	snprintf(cmd, sizeof(cmd), "'%s' get", EXAMPLE_BIN);
	FILE *reader = popen(cmd, "r");
	ck_assert_ptr_nonnull(reader);
	ck_assert_int_eq(run_example("put 'you waited'", out, sizeof(out)), 0);
	size_t n = fread(out, 1, sizeof(out) - 1, reader);
	out[n] = '\0';
	ck_assert_int_eq(pclose(reader), 0);
	ck_assert_str_eq(out, "you waited\n");
	ck_assert(cu_settle(50));
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_uint_eq(cu_check(), 0);
	cu_daemon_stop();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client_example");
	TCase *tc = tcase_create("example");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_example);
	tcase_add_test(tc, test_example_reader_first);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
