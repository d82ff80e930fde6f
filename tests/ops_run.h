// SPDX-License-Identifier: MIT
/*
 * ops_run.h - run a program from a test and capture what it prints (used by
 * the operations tests: heapctl, systemd).
 *
 * ops_run forks and execs argv[0] (found in PATH when it has no slash) with
 * stdout and stderr captured. A program still running after timeout_ms gets
 * SIGTERM, then SIGKILL two seconds later; `stopped` records that, which is
 * how the tests end a `heapctl watch`.
 */
#ifndef HEAPD_TESTS_OPS_RUN_H
#define HEAPD_TESTS_OPS_RUN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ops_run {
	int status;      /* exit code, or 128 + signal number if killed */
	int stopped;     /* 1 if the timeout ended it */
	char *out;       /* everything written to stdout, NUL-terminated */
	char *err;       /* everything written to stderr, NUL-terminated */
	size_t outlen, errlen;
} ops_run_t;

/* Run argv (NULL-terminated) to completion or timeout. 0, or -errno if it could not be started. */
int ops_run(ops_run_t *r, int timeout_ms, const char *const argv[]);

/* Free what ops_run captured. */
void ops_run_free(ops_run_t *r);

/* Number of lines in s (a final line without '\n' counts). */
size_t ops_count_lines(const char *s);

/* Sleep for ms milliseconds. */
void ops_sleep_ms(int ms);

/* Milliseconds on CLOCK_MONOTONIC. */
long long ops_now_ms(void);

#endif
