// SPDX-License-Identifier: MIT
/*
 * child.h - processes of a test: children that report why they failed,
 * bounded waits on what they do, a child with a chosen pid, death tests,
 * and programs run with their output captured.
 *
 * Children never use Check's asserts (they would report from the wrong
 * process): they call hchild_fail, which records the first failure in
 * memory shared with the test (hchild_sync) and exits 1, and the test
 * asserts with hchild_expect_ok or hchild_expect_step. Processes wait for
 * each other through the shared counters of hchild_sync, polled with a
 * bound (hchild_wait_at_least, hchild_expect_step), never by sleeping a
 * fixed time.
 */
#ifndef HEAPD_TESTS_HARNESS_CHILD_H
#define HEAPD_TESTS_HARNESS_CHILD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HCHILD_NOBODY 65534   /* the uid and gid of another user */
#define HCHILD_WAIT_MS 10000  /* bound of a wait for another process */

/* Shared between the test and its children; set up by hchild_sync_init. */
typedef struct hchild_sync {
	_Atomic int failed;
	char why[1024];            /* the first failure, "pid N: ..." */
	_Atomic int64_t step[32];  /* counters the processes of a test agree on */
	_Atomic int64_t val[64];   /* values they hand each other */
} hchild_sync_t;

extern hchild_sync_t *hchild_sync;

/* Fresh shared state for the running test (call before forking). */
void hchild_sync_init(void);

/* In a child: record why (the first failure wins), print it and _exit(1). */
void hchild_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * The same into a record of the caller's in shared memory: why[0..len)
 * and *failed, for tests that keep a failure per worker. Not prefixed
 * with the pid.
 */
void hchild_fail_into(char *why, size_t len, _Atomic int *failed, const char *fmt, ...)
        __attribute__((format(printf, 4, 5), noreturn));

/* Fork; the child runs fn(arg) and exits with its return value. The pid. Asserts. */
pid_t hchild_spawn(int (*fn)(void *), void *arg);

/*
 * Fork a child whose pid is want (root only: through
 * /proc/sys/kernel/ns_last_pid, under its flock), which runs fn(arg) and
 * exits with its return value. The pid, or -errno if the kernel would not
 * hand that pid out (it is in use, or we may not set ns_last_pid).
 */
pid_t hchild_spawn_as_pid(pid_t want, int (*fn)(void *), void *arg);

/* Wait for pid: its exit status, 128 + the signal that killed it, or -1. */
int hchild_wait(pid_t pid);

/* Wait for pid and assert that it exited 0, naming what and any recorded failure. */
void hchild_expect_ok(pid_t pid, const char *what);

/* Wait (at most timeout_ms) until *v >= want. 1 if it got there. */
int hchild_wait_at_least(_Atomic int64_t *v, int64_t want, int timeout_ms);

/*
 * In the test: assert that *v reaches want within timeout_ms while child
 * pid (doing what) runs; if pid ends first, or time runs out, the assertion
 * names how it ended and any recorded failure.
 */
void hchild_expect_step(_Atomic int64_t *v, int64_t want, int timeout_ms, pid_t pid,
                        const char *what);

/*
 * Death test: run fn(arg) in a child with stderr captured. Asserts that the
 * child died of SIGABRT and that its stderr contains needle.
 */
void hchild_expect_abort(void (*fn)(void *), void *arg, const char *needle);

/* The state letter of process pid in /proc (Z: its main thread has exited), or 0 if none. */
char hchild_state(pid_t pid);

/*
 * Wait (at most timeout_ms) until a process started now would start in a
 * later clock tick than pid did (start times as heapd reads them,
 * daemon/proc.h): the pid reused from then on names another process. 1 if
 * so, 0 if time ran out or pid is gone.
 */
int hchild_wait_new_tick(pid_t pid, int timeout_ms);

/* setgroups, setgid and setuid to HCHILD_NOBODY. 0 or -1. */
int hchild_become_nobody(void);

/*
 * For the threads of a process whose main thread has exited: the last of
 * the *left threads to call this ends the process with _exit(0), as a
 * process ends without a Bye. Returning instead would run the exit
 * handlers, and the leak checker of a sanitizer build would count what
 * only the main thread's stack held.
 */
void hchild_thread_done(atomic_uint *left);

/* ---- programs ---- */

typedef struct hchild_run {
	int status;      /* exit code, or 128 + signal number if killed */
	int stopped;     /* 1 if the run was ended from here (timeout, or HCHILD_RUN_STOP) */
	char *out;       /* everything written to stdout, NUL-terminated */
	char *err;       /* everything written to stderr, NUL-terminated */
	size_t outlen, errlen;
} hchild_run_t;

/* What a watcher of a run (hchild_run_watch) says after new output. */
enum { HCHILD_RUN_GO_ON, HCHILD_RUN_STOP };

/*
 * Fork and exec argv[0] (found in PATH when it has no slash) with stdout
 * and stderr captured, until it exits. A program still running after
 * timeout_ms gets SIGTERM, then SIGKILL two seconds later; stopped records
 * that. 0, or -errno if it could not be started.
 */
int hchild_run(hchild_run_t *r, int timeout_ms, const char *const argv[]);

/*
 * The same, calling watch(r, arg) whenever output has arrived (r->out and
 * r->err hold all of it so far); HCHILD_RUN_STOP ends the program as the
 * timeout would.
 */
int hchild_run_watch(hchild_run_t *r, int timeout_ms, const char *const argv[],
                     int (*watch)(const hchild_run_t *r, void *arg), void *arg);

/* Run $HEAPCTL_BIN with the arguments that follow, up to a NULL, as hchild_run does. Asserts. */
void hchild_run_heapctl(hchild_run_t *r, int timeout_ms, ...) __attribute__((sentinel));

/* Free what a run captured. */
void hchild_run_free(hchild_run_t *r);

/* Number of lines in s (a final line without '\n' counts). */
size_t hchild_count_lines(const char *s);

#endif
