// SPDX-License-Identifier: MIT
/*
 * hostile_util.h - support for the hostile-client suite (test_hostile.c):
 * a real heapd per test, child processes that report why they failed, a
 * second user, raw frames on any connection (the library's own included),
 * a read-only look at the arena as a library client maps it, and the
 * daemon's client list.
 *
 * Children never use Check's asserts (they would report from the wrong
 * process): they call hs_fail, which records the first failure in memory
 * shared with the test and exits 1, and the test asserts on hs_expect_ok
 * or hs_expect_step. Processes wait for each other through the shared
 * counters in hs_sync_t, polled with a bound (hs_wait_at_least,
 * hs_expect_step), never by sleeping a fixed time.
 */
#ifndef HEAPD_TESTS_HOSTILE_UTIL_H
#define HEAPD_TESTS_HOSTILE_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "layout.h"
#include "soak_util.h"

#define HS_NOBODY 65534
#define HS_WAIT_MS 10000 /* bound of every wait for another process */

/* The daemon of the running test. */
extern harness_daemon_t hs_daemon;

/* A fresh directory for the test's daemon (harness_init), removed even if the test fails. */
void hs_daemon_init(void);

/*
 * Start heapd on a fresh directory with an arena of size bytes (NULL: the
 * harness default) and the NULL-terminated options that follow; export
 * $HEAPD_SOCKET. Asserts.
 */
void hs_daemon_start(const char *size, ...) __attribute__((sentinel));
/* Restart the daemon on the same directory and arena (after harness_stop). Asserts. */
void hs_daemon_restart(void);
/* Stop it and remove its directory (the suite's teardown); $HOSTILE_DUMP_LOG=1 prints its log first. */
void hs_daemon_stop(void);
/* 1 while the daemon process is running. */
int hs_daemon_alive(void);

/*
 * Run bin with args (NULL-terminated), its output into buf. Its wait
 * status, -1 if it still ran after timeout_ms (it is killed then), or -2
 * if it could not be started (bin NULL, no pipe, no fork).
 */
int hs_run(const char *bin, const char *const *args, char *buf, size_t buflen, int timeout_ms);
/* The same for $HEAPD_BIN. */
int hs_run_heapd(const char *const *args, char *buf, size_t buflen, int timeout_ms);
/* $HEAPCTL_BIN --socket <the daemon's> command; its wait status (-2 without $HEAPCTL_BIN). */
int hs_heapctl(const char *command, char *buf, size_t buflen);

/* Let another user reach the socket: the test directory 0711, the socket 0666. */
void hs_open_up(void);
/* setgroups/setgid/setuid to nobody. 0 or -1. */
int hs_become_nobody(void);

/* Shared between the test and its children; set up by hs_shared_init. */
typedef struct hs_sync {
	_Atomic int failed;
	char why[1024];
	_Atomic int64_t step[32];  /* counters the processes of a test agree on */
	_Atomic int64_t val[64];   /* values they hand each other */
} hs_sync_t;

extern hs_sync_t *hs_sync;

/* Fresh shared state for the running test (call before forking). */
void hs_shared_init(void);

/* In a child: record why (the first failure wins), print it and _exit(1). */
void hs_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Fork; the child runs fn(arg) and exits with its return value. The pid. Asserts. */
pid_t hs_spawn(int (*fn)(void *), void *arg);

/*
 * Fork a child whose pid is want (root only: through
 * /proc/sys/kernel/ns_last_pid, under its flock), which runs fn(arg) and
 * exits with its return value. The pid, or -errno if the kernel would not
 * hand that pid out (it is in use, or we may not set ns_last_pid).
 */
pid_t hs_spawn_as_pid(pid_t want, int (*fn)(void *), void *arg);

/* pid's start time in clock ticks since boot (/proc/PID/stat field 22). 0 or -ESRCH. */
int hs_start_time(pid_t pid, uint64_t *ticks);

/* Wait (at most timeout_ms) until the clock is past tick ticks. 1 if it got there. */
int hs_wait_ticks_past(uint64_t ticks, int timeout_ms);

/* Wait for pid and assert that it exited 0, naming what and any recorded failure. */
void hs_expect_ok(pid_t pid, const char *what);

/* Wait (at most timeout_ms) until *v >= want. 1 if it got there. */
int hs_wait_at_least(_Atomic int64_t *v, int64_t want, int timeout_ms);

/*
 * In the test: assert that *v reaches want within timeout_ms while child
 * pid (doing what) runs; if pid ends first, or time runs out, the assertion
 * names how it ended and any recorded failure.
 */
void hs_expect_step(_Atomic int64_t *v, int64_t want, int timeout_ms, pid_t pid, const char *what);

void hs_sleep_ms(int ms);
uint64_t hs_now_ms(void);

/* ---- raw frames ---- */

/* Write n raw bytes on fd (MSG_NOSIGNAL). 0 or -errno. */
int hs_send_bytes(int fd, const void *buf, size_t n);

/*
 * Connect and say Hello as a client (control: as a control connection),
 * keeping the descriptors the reply passes (meta_fd, data_fd; -1 if none).
 * The connection, or -errno (the code of an Error reply).
 */
int hs_hello_fds(const char *sock, int control, uint32_t *slot, int *meta_fd, int *data_fd);

/* The descriptor of this process's connection to the test's daemon (the library's), or -1. */
int hs_lib_socket(void);

/* ---- the arena as a library client maps it ---- */

typedef struct hs_arena {
	const uint8_t *base;
	const shm_header_t *hdr;
	const uint64_t *pagemap;
	const shm_span_t *spans;
	const shm_client_t *clients;
	uint64_t *bits;
	uint8_t *pages;
} hs_arena_t;

/* The library's mapping, found from one of its objects (hc_malloc'd and freed here). 0 or -1. */
int hs_arena(hs_arena_t *a);

/* The span (start page) holding p, HEAPD_NIL if none. */
uint32_t hs_span_of(const hs_arena_t *a, const void *p);

/* A claim map covering the test daemon's arena (read from its meta file), in shared memory. */
void hs_claims_init(soak_claims_t *c);

/* The header of the test daemon's arena, read from its meta file. Asserts. */
void hs_read_header(shm_header_t *h);

/* ---- the daemon's view ---- */

typedef struct hs_client {
	uint32_t pid, uid, slot;
	int connected;
	uint64_t spans_cached, pages_held;
} hs_client_t;

/* The client slots (control connections left out): at most max into out; how many, or -errno. */
int hs_clients(hs_client_t *out, int max);

/* The slot the Clients reply lists for pid (connected says whether it has a connection); -1 if none. */
int hs_slot_of(pid_t pid, int *connected);

/* sweep_cycles of a Stats reply; UINT64_MAX if the call failed. */
uint64_t hs_sweep_cycles(void);

/* Problems the daemon's check finds; -1 if the call failed. */
int64_t hs_check(void);

#endif
