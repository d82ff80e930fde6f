// SPDX-License-Identifier: MIT
/*
 * util.h - small things every kind of test needs: object patterns, a seeded
 * random number generator, whole reads and writes, memory shared with
 * children, numbers from the environment, and the one way a test waits.
 *
 * Time is heapd's one clock (shm/clock.h: heapd_now_ms, heapd_now_ns),
 * included here. A test never sleeps to let something happen: it waits for
 * a condition with hutil_wait_until, which polls with a bound. hutil_sleep_us
 * is for that polling, and for the random pauses of the soaks (when to kill
 * a process), which order nothing.
 */
#ifndef HEAPD_TESTS_HARNESS_UTIL_H
#define HEAPD_TESTS_HARNESS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* Fill n bytes at p with the pattern of seed; hutil_verify returns 1 if they still hold it. */
void hutil_fill(void *p, size_t n, uint64_t seed);
int hutil_verify(const void *p, size_t n, uint64_t seed);

/* xorshift64*: the next number of *state (seed it with anything; 0 is taken as a fixed seed). */
uint64_t hutil_rand(uint64_t *state);

/* Write or read exactly n bytes, through EINTR. 0 or -1. */
int hutil_write_full(int fd, const void *buf, size_t n);
int hutil_read_full(int fd, void *buf, size_t n);

/* Read fd to its end (len - 1 bytes at most) into buf, NUL-terminated. The length read. */
size_t hutil_read_all(int fd, char *buf, size_t len);

/* Descriptors open in this process (of the first 1024): what a leak check counts. */
int hutil_open_fds(void);

/* size bytes of zeroed memory shared with every child forked afterwards. Aborts on failure. */
void *hutil_shared(size_t size);

/* An unsigned number from the environment, or def if unset or malformed. */
uint64_t hutil_env(const char *name, uint64_t def);

/* Sleep us microseconds (through EINTR). */
void hutil_sleep_us(uint64_t us);

/* The pause between two polls of hutil_wait_until: 1 ms at first, then longer, 20 ms at most. */
void hutil_backoff(unsigned *tries);

/*
 * Evaluate cond until it holds or timeout_ms have passed: 1 if it held.
 * cond is evaluated once more after the deadline's last pause.
 */
#define hutil_wait_until(cond, timeout_ms)                                       \
	({                                                                       \
		uint64_t hutil_end_ = heapd_now_ms() + (uint64_t)(timeout_ms);    \
		unsigned hutil_tries_ = 0;                                        \
		int hutil_ok_;                                                    \
		while (!(hutil_ok_ = !!(cond)) && heapd_now_ms() < hutil_end_)    \
			hutil_backoff(&hutil_tries_);                             \
		hutil_ok_;                                                        \
	})

#endif
