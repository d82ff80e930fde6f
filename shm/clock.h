// SPDX-License-Identifier: MIT
/*
 * clock.h - the clocks: CLOCK_MONOTONIC in nanoseconds for every deadline
 * and interval in heapd, libheapclient and heapctl, and the wall clock
 * (CLOCK_REALTIME) for the times the arena records for people to read:
 * when a name was bound, when a sample was taken.
 */
#ifndef HEAPD_SHM_CLOCK_H
#define HEAPD_SHM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t heapd_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t heapd_now_ms(void)
{
	return heapd_now_ns() / 1000000u;
}

/* Wall-clock time in ns since the epoch; coarse: to the kernel's tick, and cheaper. */
static inline uint64_t heapd_wall_ns(int coarse)
{
	struct timespec ts;
	clock_gettime(coarse ? CLOCK_REALTIME_COARSE : CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
