// SPDX-License-Identifier: MIT
/*
 * client_util.h - helpers for the libheapclient tests: a daemon per test,
 * object patterns, the daemon's counters, and death tests.
 *
 * A test calls cu_daemon_start() (usually from a checked fixture, so it runs
 * in the forked test process); it points $HEAPD_SOCKET at the new daemon, so
 * the library connects to it implicitly, in the test and in its children.
 */
#ifndef HEAPD_TESTS_CLIENT_UTIL_H
#define HEAPD_TESTS_CLIENT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

/* The daemon of the running test. */
extern harness_daemon_t cu_daemon;

/* Start a daemon (arena size, NULL: the harness default) and export $HEAPD_SOCKET. Asserts. */
void cu_daemon_start(const char *size);
void cu_daemon_stop(void);

/* Fill n bytes at p with a pattern derived from seed; check it. cu_verify returns 1 if intact. */
void cu_fill(void *p, size_t n, uint64_t seed);
int cu_verify(const void *p, size_t n, uint64_t seed);

/* A small PRNG (xorshift64*), one state per thread. */
uint64_t cu_rand(uint64_t *state);

double cu_now(void);

/* Daemon counters through a control connection; UINT64_MAX if the call failed. */
uint64_t cu_objects_in_use(void);
uint64_t cu_pages_in_use(void);

/* Spans cached by clients (pid 0: all clients); UINT64_MAX if the call failed. */
uint64_t cu_client_spans(pid_t pid);

/* Sweep until no object and no page is in use, at most max_sweeps times. 1 if it got there. */
int cu_settle(int max_sweeps);

/* Invariant problems found by the daemon's check (UINT64_MAX if the call failed). */
uint64_t cu_check(void);

/*
 * Death test: run fn(arg) in a child with stderr captured. Asserts that the
 * child died of SIGABRT and that its stderr contains needle.
 */
void cu_expect_abort(void (*fn)(void *), void *arg, const char *needle);

/* Wait for a child; its exit status, or 128 + signal. */
int cu_wait(pid_t pid);

/* Write or read exactly n bytes (0 or -1). */
int cu_write_full(int fd, const void *buf, size_t n);
int cu_read_full(int fd, void *buf, size_t n);

#endif
