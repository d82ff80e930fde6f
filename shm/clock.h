// SPDX-License-Identifier: MIT
/*
 * clock.h - the one clock: CLOCK_MONOTONIC in nanoseconds, for every
 * timestamp, deadline and interval in heapd, libheapclient and heapctl.
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

#endif
