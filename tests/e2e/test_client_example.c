// SPDX-License-Identifier: MIT
/*
 * test_client_example.c - runs the README's example program (example.c)
 * against a real heapd, so the example stays true: one process allocates
 * and exits, another reads and frees the object, and then nothing is in use.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

START_TEST(test_example)
{
	char out[256], args[64];

	hd_default_start(NULL, NULL);
	ck_assert_int_eq(run_example("put 'hello, other process'", out, sizeof(out)), 0);
	unsigned long long off = strtoull(out, NULL, 10);
	ck_assert_uint_ne(off, 0);
	snprintf(args, sizeof(args), "get %llu", off);
	ck_assert_int_eq(run_example(args, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "hello, other process\n");
	ck_assert(hctl_settle(hd_default.sock, 50));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hd_default_stop();
}
END_TEST

static Suite *client_example_suite(void)
{
	return test_suite_single("client_example", "example", 60, NULL, NULL, test_example, NULL);
}

TEST_SUITES(client_example_suite);
