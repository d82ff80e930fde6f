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
 * A sample's stack is walked by frame pointers, from the sampler up to the
 * API function whose return address is the allocation site, then through
 * the caller's frames for as long as each frame lies on the thread's stack
 * and each return address in a loaded object: code built without frame
 * pointers ends the stack there. The sampler (profile.c) and the API
 * functions with a frame of their own keep frame pointers (api.c, HC_FRAME);
 * the caches and hc_malloc do not, because that was measured to cost their
 * fast and slow paths (w1 at 4096 bytes took 15% longer). hc_malloc
 * tail-calls the caches' slow path, which tail-calls the recording of a
 * sample it took (profile_finish): no frame without a frame pointer lies
 * between the sampler and the allocation site's.
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

/* Bumped whenever the rate in force changes (profile.c writes it). */
extern _Atomic uint32_t profile_gen_g;

/* Changes whenever the rate in force does; countdowns drawn under another are redrawn. */
static inline uint32_t profile_gen(void)
{
	return atomic_load_explicit(&profile_gen_g, memory_order_relaxed);
}

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
extern _Atomic(const prof_view_t *) profile_view_p;

static inline const prof_view_t *profile_view(void)
{
	return atomic_load_explicit(&profile_view_p, memory_order_acquire);
}

/*
 * Record a sample of the object at arena offset off, of size bytes, just
 * allocated; ra is the return address of the API function that allocated
 * it, and the caller of this is that function (the walk starts from its
 * frame). If a record was written, the object's bit is set in *sampled
 * (the caller owns the span). 1 if recorded, 0 if not (dropped, no region).
 */
int profile_sample(uint64_t off, uint64_t size, uint64_t *sampled, uint64_t bit, const void *ra);

/*
 * A sample the thread cache took deep in its slow path, waiting to be
 * recorded on the way out (profile_finish), so that no frame of the cache's
 * is on the stack the walk goes up. sampled is NULL when none waits.
 */
typedef struct profile_pending {
	uint64_t off, size, bit;
	uint64_t *sampled;       /* the object's sampled word */
	uint32_t *flag;          /* set to 1 once recorded: the span has sampled objects */
} profile_pending_t;

extern __thread profile_pending_t profile_pending_tls __attribute__((tls_model("initial-exec")));

static inline void profile_defer(uint64_t off, uint64_t size, uint64_t *sampled, uint64_t bit,
                                 uint32_t *flag)
{
	profile_pending_t *p = &profile_pending_tls;
	p->off = off;
	p->size = size;
	p->bit = bit;
	p->flag = flag;
	p->sampled = sampled;
}

/*
 * Record the waiting sample (profile_sample) and return p. The cache's slow
 * path tail-calls it, so the frame above is the API function's (or the
 * allocation site's, when the API function tail-called the slow path); ra
 * is the API function's return address.
 */
void *profile_finish(void *p, const void *ra);

#endif
