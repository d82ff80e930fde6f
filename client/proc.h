// SPDX-License-Identifier: MIT
/*
 * proc.h - the client process's state, shared by every thread: the lock
 * that slow paths take, the slot and its epoch, the arena mapping, the
 * registry of thread caches, and fork.
 *
 * The bottom of the client's stack (proc -> request -> transport -> mcache
 * -> api): it calls nothing above it. What it must ask of the layers above
 * (the spans a cache holds, how to forget a cache, what a forked child must
 * reset) it asks through hooks they register (proc_set_cache_hooks,
 * proc_at_fork_child).
 *
 * Who writes what:
 *   - under proc_g.lock: the slot, the registry, the mapping's setup;
 *   - epoch, flags_slot, large_received and mapped are atomics, read on
 *     fast paths without the lock and written under it;
 *   - the mapping (proc_g.seg) is made once and never unmapped while the
 *     process may hold pointers, so every path reads it without a lock.
 */
#ifndef HEAPD_CLIENT_PROC_H
#define HEAPD_CLIENT_PROC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "segment.h"

/* A thread cache's place in the registry; embedded in the cache (mcache.h). */
typedef struct proc_cache {
	struct proc_cache *next, *prev; /* proc_g.lock */
	uint64_t epoch;                 /* the epoch whose spans the cache holds; proc_g.lock */
} proc_cache_t;

/* What the cache layer does for the process state (registered once). */
typedef struct proc_cache_hooks {
	/* Append every span c holds to spans[0..*n) (growing it, *cap). 0 or -ENOMEM. */
	int (*list_spans)(proc_cache_t *c, uint32_t **spans, size_t *n, size_t *cap);
	/* Forget every span c holds, handing none back. */
	void (*drop)(proc_cache_t *c);
} proc_cache_hooks_t;

typedef struct proc_state {
	pthread_mutex_t lock;
	pthread_t holder;          /* the thread holding lock, for the _locked asserts */
	int have_slot;             /* slot names a slot of ours the daemon holds for us; lock */
	uint32_t slot;             /* our slot in the client table; lock */
	_Atomic uint32_t flags_slot; /* slot whose flags the slow path polls, UINT32_MAX: none */
	_Atomic uint64_t epoch;    /* bumped whenever cached spans stop being ours; written under lock */
	_Atomic uint32_t large_received; /* span + 1 of the last LargeAlloc reply, 0 once that
	                                  * object is freed here; named in a reconnect's Hello */
	_Atomic int mapped;        /* seg is valid; set under lock after the mapping is complete */
	segment_t seg;             /* written under lock before mapped is set, then read-only */
	uint64_t arena_id;         /* the mapped arena's id; lock */
	proc_cache_t *registry;    /* every thread's cache; lock */
	const proc_cache_hooks_t *hooks;
} proc_state_t;

extern proc_state_t proc_g;

/* Once per process: the fork handlers (the lock is held across fork). */
void proc_init(void);

/* The cache layer's hooks; set once, before any cache registers. */
void proc_set_cache_hooks(const proc_cache_hooks_t *hooks);

/*
 * A layer's reset for a forked child, run (in registration order) with the
 * lock held. Any thread may register, holding the lock or not; registering
 * fn again changes nothing. At most 4.
 */
void proc_at_fork_child(void (*fn)(void));

static inline void proc_lock(void)
{
	pthread_mutex_lock(&proc_g.lock);
	proc_g.holder = pthread_self();
}

static inline void proc_unlock(void)
{
	proc_g.holder = 0;
	pthread_mutex_unlock(&proc_g.lock);
}

/* For asserts in *_locked functions. */
static inline int proc_held(void)
{
	return pthread_equal(proc_g.holder, pthread_self());
}

/* Add or remove a thread's cache (its epoch is set to the current one). */
void proc_register_locked(proc_cache_t *c);
void proc_unregister_locked(proc_cache_t *c);

/*
 * Every span of every cache whose spans are still ours (for the Hello of a
 * reconnect), in a malloc'd array. 0 or -ENOMEM.
 */
int proc_held_spans_locked(uint32_t **spans, size_t *n);

/* Every cache forgets its spans (hc_disconnect, whose Bye gives them back). */
void proc_drop_all_locked(void);

/*
 * Map the arena from the descriptors heapd passed (meta, data; consumed), or
 * check that arena_id is the arena mapped already. 0, -ESTALE for another
 * arena, or -errno.
 */
int proc_adopt_arena_locked(int fds[2], uint64_t arena_id);

/* The daemon gave us slot: a new one (not the one we had) bumps the epoch. */
void proc_set_slot_locked(uint32_t slot);

/* We gave our slot up, or never had one: no slot, a new epoch. */
void proc_forget_slot_locked(void);

/* The flags heapd raised in our slot (HEAPD_CLIENT_*), 0 when we have none. No lock. */
static inline uint32_t proc_slot_flags(void)
{
	uint32_t slot = atomic_load_explicit(&proc_g.flags_slot, memory_order_relaxed);
	if (slot == UINT32_MAX)
		return 0;
	return atomic_load_explicit(&proc_g.seg.clients[slot].flags, memory_order_relaxed);
}

/*
 * The large object of span is being freed here. Called before its free bit
 * is set: from then on heapd may free the span and hand it to us again in
 * a reply that gets lost, and a reconnect must not name it as received. No
 * lock.
 */
static inline void proc_large_freeing(uint32_t span)
{
	uint32_t mine = span + 1;
	atomic_compare_exchange_strong(&proc_g.large_received, &mine, 0);
}

static inline uint64_t proc_epoch(void)
{
	return atomic_load_explicit(&proc_g.epoch, memory_order_relaxed);
}

#endif
