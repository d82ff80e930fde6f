// SPDX-License-Identifier: MIT
/*
 * heapd.h - a real heapd for a test: its own temporary directory with the
 * socket, the arena and the daemon's log; start, stop and restart it, read
 * its log, run heapd in the foreground, and stand in for it.
 *
 * The binary is $HEAPD_BIN (set by CTest). A daemon dies with the thread
 * that started it (PR_SET_PDEATHSIG), so a failed test never leaves one
 * behind: start and restart daemons from the test's main thread.
 *
 * Suites that want one daemon per test use hd_default: hd_default_start
 * gives it a fresh directory, removed even when the test fails, and points
 * $HEAPD_SOCKET at it, so that libheapclient connects to it implicitly, in
 * the test and in its children.
 */
#ifndef HEAPD_TESTS_HARNESS_HEAPD_H
#define HEAPD_TESTS_HARNESS_HEAPD_H

#include <stddef.h>
#include <sys/types.h>

typedef struct hd {
	pid_t pid;             /* 0 when not running */
	char dir[128];         /* temporary directory */
	char sock[192];        /* socket path */
	char arena[192];       /* arena directory */
	char log[192];         /* the daemon's stdout and stderr, every life of it */
	const char *size;      /* --arena-size, default "256M" */
	const char *extra[16]; /* more heapd arguments, NULL-terminated */
} hd_t;

/* Prepare d (a fresh temporary directory) without starting anything. Aborts on failure. */
void hd_init(hd_t *d);

/* Start heapd and wait until its socket accepts (10 s at most). 0 or -errno. */
int hd_start(hd_t *d);

/* hd_start, or print the log, remove the directory and fail the test. */
void hd_must_start(hd_t *d);

/* Start heapd without waiting for it (d->pid is set). 0 or -errno. */
int hd_launch(hd_t *d);

/* Send sig and wait for the daemon to exit; its wait status, -1 if it was not running. */
int hd_stop(hd_t *d, int sig);

/* 1 while the daemon process is running. */
int hd_alive(const hd_t *d);

/* Stop if running, then remove the directory and everything in it. */
void hd_cleanup(hd_t *d);

/* A file of d's arena directory (one of a few rotating buffers). */
const char *hd_arena_file(const hd_t *d, const char *name);

/*
 * Let another user reach the socket, so that heapd's own check decides:
 * the directory 0711, the socket 0666. Asserts.
 */
void hd_open_up(const hd_t *d);

/* Copy the daemon's log to stderr. */
void hd_dump_log(const hd_t *d);

/* Lines of the log that contain needle. */
int hd_log_count(const hd_t *d, const char *needle);

/* 1 if the log contains needle. */
int hd_log_contains(const hd_t *d, const char *needle);

/* Wait until the log contains needle (timeout_ms at most). 1 if it did. */
int hd_wait_log(const hd_t *d, const char *needle, int timeout_ms);

/*
 * Run $HEAPD_BIN with args (NULL-terminated) in the foreground for at most
 * timeout_ms, its stdout and then its stderr into buf. Its exit code (128 +
 * signal if a signal ended it), -ETIMEDOUT if it still ran at the timeout
 * (it is killed then), or -errno if it could not be started.
 */
int hd_run_heapd(const char *const *args, char *buf, size_t buflen, int timeout_ms);

/*
 * A stand-in for a daemon that is going away: a listener on d's socket path
 * (a stale socket there is replaced). hd_standin_drop takes the next
 * connection (timeout_ms at most) and closes it unanswered: 0, or
 * -ETIMEDOUT if none came. The caller closes the listener and unlinks the
 * socket when the stand-in goes.
 */
int hd_standin_listen(const hd_t *d);
int hd_standin_drop(int lfd, int timeout_ms);

/* ---- the default daemon ---- */

extern hd_t hd_default;

/* A fresh directory for hd_default (hd_init), removed when the test's processes are gone. */
void hd_default_init(void);

/*
 * Start hd_default on a fresh directory with an arena of size bytes (NULL:
 * the default) and the heapd options that follow, up to a NULL; export
 * $HEAPD_SOCKET. Fails the test if heapd does not start.
 */
void hd_default_start(const char *size, ...) __attribute__((sentinel));

/*
 * Start hd_default again on its directory and arena (after hd_stop). Fails
 * the test if it does not start.
 */
void hd_default_restart(void);

/*
 * Stop hd_default and remove its directory (a teardown);
 * $HEAPD_TEST_DUMP_LOG=1 prints its log first.
 */
void hd_default_stop(void);

#endif
