// SPDX-License-Identifier: MIT
/*
 * harness.h - end-to-end test support: a real heapd on a temporary socket
 * and arena, and a raw control connection to it.
 *
 * The daemon binary comes from $HEAPD_BIN (set by CTest). Each daemon gets
 * its own directory under /tmp holding the socket, the arena and its log.
 * A daemon dies with the thread that started it (so a failed test never
 * leaves one behind): start and restart daemons from the test's main thread.
 */
#ifndef HEAPD_TESTS_HARNESS_H
#define HEAPD_TESTS_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

typedef struct harness_daemon {
	pid_t pid;           /* 0 when not running */
	char dir[128];       /* temporary directory */
	char sock[192];      /* socket path */
	char arena[192];     /* arena file */
	char log[192];       /* daemon's stderr */
	const char *size;    /* --arena-size, default "256M" */
	const char *extra[16]; /* more heapd arguments, NULL-terminated */
} harness_daemon_t;

/* Prepare d (a fresh temporary directory) without starting anything. */
void harness_init(harness_daemon_t *d);

/* Start heapd and wait until its socket accepts (10 s at most). 0 or -errno. */
int harness_start(harness_daemon_t *d);

/* Start heapd without waiting for it (d->pid is set). 0 or -errno. */
int harness_launch(harness_daemon_t *d);

/* Send sig and wait for the daemon to exit; returns its wait status. */
int harness_stop(harness_daemon_t *d, int sig);

/* Stop if running, then remove the directory and everything in it. */
void harness_cleanup(harness_daemon_t *d);

/* Copy the daemon's log to stderr (to show why it failed). */
void harness_dump_log(const harness_daemon_t *d);

/* 1 if the daemon's log contains needle. */
int harness_log_contains(const harness_daemon_t *d, const char *needle);

/* Wait until the log contains needle (timeout_ms at most). 1 if it did. */
int harness_wait_log(const harness_daemon_t *d, const char *needle, int timeout_ms);

/* A connected socket to path, no Hello sent. -errno on failure. */
int harness_connect_raw(const char *path);

/* A control connection (Hello with control = true) to path. -errno on failure. */
int harness_control(const char *path);

/* One request on a control connection; the reply must be free'd with wire_free. */
int harness_call(int fd, Heapd__Envelope *req, Heapd__Envelope **reply);

/* Convenience requests on a control connection. 0 or -errno. */
int harness_stats(int fd, Heapd__StatsReply **stats, Heapd__Envelope **owner);
int harness_sweep(int fd);
int harness_check(int fd, uint64_t *nproblems); /* problems are printed to stderr */

#endif
