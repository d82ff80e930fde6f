// SPDX-License-Identifier: MIT
/*
 * mcache.h - per-thread caches of spans, and the allocation fast path.
 *
 * Each thread that allocates gets an mcache_t. For every size class it
 * holds a list of spans that the daemon handed to this process (owner ==
 * our slot + 1); one of them is current. The hot part of a class is a
 * window of 64 slots of the current span: `cache` has bit i set when slot
 * cachebase + i is free, as the complement of the alloc word (Go's
 * allocCache). Allocating takes the lowest set bit, sets that alloc bit with
 * a plain atomic store (only the owner writes alloc bits) and returns
 * wordbase + i * elemsize: no lock, no system call, no atomic
 * read-modify-write.
 *
 * With heap profiling on, a class's window ends before the slot whose
 * allocation is to be sampled (mc_list_t.prof_hold), so that the fast path
 * costs the same either way.
 *
 * Slow path (mcache_alloc_slow), in order:
 *   1. the next word of the current span with a free slot;
 *   2. a local sweep of the class's own spans (free bits set by any process
 *      are folded into the alloc bits) for one with room;
 *   3. one Refill request that asks for a batch of spans and hands back full
 *      spans beyond the class's retention budget, and the empty spans that
 *      a bounded pass over the cache found (the hand-back pass, mcache.c;
 *      a LargeAlloc carries one too).
 * Before that it checks whether the daemon asked this process to flush
 * (HEAPD_CLIENT_FLUSH), and whether its spans still belong to this
 * process's slot (proc_g.epoch). Only the owning thread writes a cache's
 * window, but for two resets that run while no thread allocates:
 * hc_disconnect (proc_drop_all_locked; its caller promises that no other
 * thread is inside the library) and a forked child's hook (the other
 * threads do not exist there). A thread whose slot changed finds out in its
 * own slow path, and until then allocates from spans the daemon keeps
 * reserved for this process (transport.h).
 *
 * Who writes what:
 *   - the owning thread alone reads and writes its mc_class_t and mc_list_t
 *     fields, and the alloc bits of its spans;
 *   - the set of spans a cache holds (the class lists, nspans, and its
 *     registry entry) changes only under proc_g.lock, so a thread that
 *     reconnects can list every cache's spans (proc_held_spans_locked, which
 *     calls this layer's hook).
 * The cache is the top of the client's stack: it builds requests
 * (request.h) and sends them (transport.h) under proc_g.lock (proc.h).
 */
#ifndef HEAPD_CLIENT_MCACHE_H
#define HEAPD_CLIENT_MCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "bitmap.h"
#include "proc.h"
#include "profile.h"
#include "sizeclass.h"

/* One span the cache owns. 48 bytes: the local sweep visits hundreds of them. */
typedef struct mc_span {
	uint32_t span;          /* span id (start page) */
	uint16_t nelems;
	uint8_t nwords;         /* bitmap words */
	uint8_t needzero;       /* its free slots may hold old data */
	uint32_t elemsize;
	uint32_t sampled;       /* its sampled bits may be set: folds reap them (shm/profrec.h) */
	uint8_t *base;          /* first object */
	uint64_t *alloc;        /* alloc bits (we write them) */
	uint64_t *freeb;        /* free bits (any process sets them) */
	bitmap_pins_t pins;     /* its pins (roots.h): objects a fold must leave alone */
	struct mc_span *next;   /* in the class list; proc_g.lock */
} mc_span_t;

/* The fast path's view of a class: the free slots of one alloc word. 32 bytes. */
typedef struct mc_class {
	uint64_t cache;         /* bit i: slot cachebase + i of the current span is free */
	uint8_t *wordbase;      /* address of slot cachebase */
	uint64_t *allocword;    /* the alloc word of slot cachebase */
	uint32_t elemsize;
	uint32_t needzero;      /* the current span's free slots may hold old data */
} mc_class_t;

/* The slow path's view of a class: one cache line. */
typedef struct mc_list {
	mc_span_t *cur;         /* span the hot window is on, NULL if none */
	mc_span_t *spans;       /* every span of the class, cur included; proc_g.lock */
	uint32_t cachebase;     /* slot index of the hot window's first slot */
	uint32_t nspans;        /* proc_g.lock */
	uint32_t batch;         /* spans the next Refill asks for */
	uint32_t retain;        /* spans kept before full ones are handed back */
	/*
	 * Heap-profile sampling (client/profile.h): prof_skip allocations of the
	 * class go unsampled before the next sampled one (PROFILE_SKIP_OFF:
	 * none is; MC_SKIP_REDRAW: draw it at the next window). When the
	 * sampled slot falls inside the hot window, the window shows only the
	 * slots before it and prof_hold keeps the rest, so that the fast path
	 * runs out right there and the slow path samples (mcache.c, clip).
	 */
	uint64_t prof_skip;
	uint64_t prof_hold;
} __attribute__((aligned(64))) mc_list_t;

#define MC_SKIP_REDRAW (PROFILE_SKIP_OFF - 1)

/* Slots of the table of spans a thread may free into directly (a power of two). */
#define MC_OWN_SLOTS 1024u

typedef struct mcache {
	mc_class_t cls[SIZECLASS_COUNT];   /* hot: only this is read on the fast path */
	mc_list_t lists[SIZECLASS_COUNT];
	/*
	 * own[span % MC_OWN_SLOTS] == span + 1: span is in this cache and has
	 * been marked needzero, so a free by this thread may clear its alloc bit
	 * directly (hc_free; the slot's reuse then needs no fold, and needzero
	 * already says it holds old data). Only the owning thread reads or writes
	 * it, and an entry goes before its span leaves the cache. That is what
	 * makes the plain store safe: while a span is in a thread's cache, that
	 * thread is the only writer of its alloc bits (other processes set free
	 * bits), and the daemon never gives the span to anyone else while this
	 * process lives (transport.h). A span not found here is freed through its
	 * free bits.
	 */
	uint32_t own[MC_OWN_SLOTS];
	/*
	 * This thread has cleared an alloc bit directly since its last fence: the
	 * next window load fences before it reads the pins, so that an object
	 * bound while we freed it is seen pinned (roots.h, word_room). Only the
	 * owning thread reads or writes it.
	 */
	uint32_t cleared;
	proc_cache_t reg;                  /* registry entry; reg.epoch is the epoch its spans
	                                    * belong to (proc_g.lock) */
	uint32_t prof_gen;                 /* the profile generation (profile.h) its countdowns follow */
	uint32_t nspans;                   /* proc_g.lock */
	uint32_t extra_refills;            /* refills that asked for other classes too (mcache.c) */
	/*
	 * Where the hand-back pass resumes: after pass_prev (NULL: at the head)
	 * in class pass_class, having kept pass_kept empty spans of it so far.
	 * Whatever unlinks spans restarts the class (pass_restart). proc_g.lock.
	 */
	mc_span_t *pass_prev;
	uint32_t pass_class;
	uint32_t pass_kept;
} mcache_t;

/*
 * The calling thread's cache. It starts as a shared empty cache whose
 * windows are all empty, so the fast path needs no NULL check: the first
 * allocation falls into the slow path, which creates the thread's own.
 */
extern __thread mcache_t *mcache_tls __attribute__((tls_model("initial-exec")));

/*
 * The slow path: returns an object of class c, or NULL with errno set. ra
 * is the return address of the API function allocating: when the object is
 * to be sampled, the slow path ends in a tail call of profile_finish, so
 * that the walk of the stack goes from the sampler to that function's
 * frame with no frame of the cache in between (profile.h).
 */
void *mcache_alloc_slow(mcache_t *mc, uint32_t c, int *needzero, const void *ra);

/*
 * An object of class c. *needzero (if not NULL) says whether it may hold
 * old data. Always inlined, so that the return address it passes down is
 * that of the API function it is in.
 */
static inline __attribute__((always_inline)) void *mcache_alloc(uint32_t c, int *needzero)
{
	mcache_t *mc = mcache_tls;
	mc_class_t *cl = &mc->cls[c];
	uint64_t cache = cl->cache;

	if (__builtin_expect(cache != 0, 1)) {
		uint64_t bit = (uint32_t)__builtin_ctzll(cache);
		cl->cache = cache & (cache - 1);
		bitmap_store(cl->allocword, bitmap_load(cl->allocword) | (1ULL << bit));
		if (needzero)
			*needzero = (int)cl->needzero;
		return cl->wordbase + bit * cl->elemsize;
	}
	return mcache_alloc_slow(mc, c, needzero, __builtin_return_address(0));
}

/* Whether the thread of cache mc may clear span's alloc bits itself (see mcache_t.own). */
static inline int mcache_owns(const mcache_t *mc, uint32_t span)
{
	return mc->own[span & (MC_OWN_SLOTS - 1)] == span + 1;
}

/* The thread of cache mc has just cleared an alloc bit of a span it owns (see mcache_t.cleared). */
static inline void mcache_cleared(mcache_t *mc)
{
	mc->cleared = 1;
}

/*
 * Before a LargeAlloc: the calling thread's hand-back pass. Unlinks the empty
 * spans it finds beyond each class's reserve and appends their ids to *rel
 * (growing it; on -ENOMEM it stops with what it has). Nothing when the
 * thread's spans are not ours any more.
 */
void mcache_handback_empty_locked(uint32_t **rel, size_t *n, size_t *cap);

/* Spans held by all caches (hc_stats). */
uint64_t mcache_count_locked(void);

/* Hand the calling thread's spans back (hc_trim). 0 or -ENOMEM. */
int mcache_trim(void);

/*
 * Debug hook for the benchmark, outside the hc_ namespace and not exported
 * by the shared library (the benchmark links the static one): copy the
 * durations in ns of this process's most recent Refill round trips, oldest
 * first, into ns[0..max); returns how many.
 */
size_t heapclient_debug_refill_ns(uint64_t *ns, size_t max);

/*
 * Debug hook for tests that count what a cache holds, as the one above:
 * how many of each thread's first refills also ask for neighbouring classes
 * (mcache.c, MC_EXTRA_REFILLS by default; 0: none). Set it before any thread
 * allocates.
 */
void heapclient_debug_extra_refills(uint32_t n);

#endif
