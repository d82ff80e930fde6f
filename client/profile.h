// SPDX-License-Identifier: MIT
/*
 * profile.h - heap-profile sampling in libheapclient, as Go's
 * MemProfileRate: one allocation per `rate` bytes allocated on average is
 * sampled, and its record (the stack, the size, this process, the time)
 * goes into the arena's profile region (shm/profrec.h), where it outlives
 * the process.
 *
 * The rate in force: the process's own, set by hc_profile_rate or else
 * $HEAPD_PROFILE_RATE, else heapd's profile-rate (sent with each Hello
 * reply), else 0 (off). profile_gen() changes whenever it does.
 *
 * Where the countdowns live: the thread caches keep one per size class, in
 * allocations of that class (profile_draw_skip), and hide the sampled slot
 * from the fast path (mcache.c); independent exponential countdowns per
 * class add up to one exponential countdown per byte, as Go's. Large
 * objects count down here, per thread (profile_large_due). With the rate at
 * 0 nothing counts and the fast path is what it was.
 *
 * A sample's stack is walked by frame pointers (libheapclient is built
 * with them), from the sampler up to the API function whose return
 * address is the allocation site, then through the caller's frames for as
 * long as each frame lies on the thread's stack and each return address in
 * a loaded object: code built without frame pointers ends the stack there.
 *
 * Layer: above proc.h (the slot and the mapping), below the transport
 * (which hands over heapd's rate) and the caches.
 */
#ifndef HEAPD_CLIENT_PROFILE_H
#define HEAPD_CLIENT_PROFILE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "profrec.h" /* shm/: records and sampled bits */

#define PROFILE_SKIP_OFF UINT64_MAX /* a countdown that never ends: sampling is off */

/* Changes whenever the rate in force does; countdowns drawn under another are redrawn. */
uint32_t profile_gen(void);

/* The rate in force, bytes (0: off). */
uint64_t profile_rate(void);

/* hc_profile_rate: this process's own rate (0: off). Returns the rate in force before. */
uint64_t profile_set_rate(uint64_t bytes);

/* A Hello reply: heapd's rate, and the arena's profile region (the arena is mapped). Lock held. */
void profile_connected_locked(uint64_t daemon_rate);

/*
 * Allocations of elemsize bytes before the next sampled one, drawn from
 * the exponential distribution of mean rate bytes (0 when the rate is 1,
 * PROFILE_SKIP_OFF when sampling is off or the arena keeps no profile).
 */
uint64_t profile_draw_skip(uint64_t elemsize);

/* A large allocation of bytes: 1 if it is to be sampled (counts it down otherwise). */
int profile_large_due(uint64_t bytes);

/* The arena's profile region (a view with no records before the first Hello). */
const prof_view_t *profile_view(void);

/*
 * Record a sample of the object at arena offset off, of size bytes, just
 * allocated; ra is the return address of the API function that allocated
 * it. If a record was written, the object's bit is set in *sampled (the
 * caller owns the span). 1 if recorded, 0 if not (dropped, or no region).
 */
int profile_sample(uint64_t off, uint64_t size, uint64_t *sampled, uint64_t bit, const void *ra);

#endif
