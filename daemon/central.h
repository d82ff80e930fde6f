// SPDX-License-Identifier: MIT
/*
 * central.h - the central span lists: per size class, the spans no client
 * holds, and the sweep of those spans (Go's mcentral and sweepgen).
 *
 * Each class has a mutex and four lists: partial (room left) and full, each
 * in two generations. With sg = hdr->sweepgen, the lists of parity
 * (sg / 2) % 2 hold spans swept in this cycle (sweepgen == sg) and the other
 * two hold spans still to sweep (sweepgen == sg - 2). Bumping sg by 2 swaps
 * the roles, so starting a cycle is O(1) per class. A span being swept is on
 * no list and has sweepgen == sg - 1; whoever moves it sg - 2 -> sg - 1
 * (compare-and-swap) is its only sweeper.
 *
 * Sweeping a span the daemon owns folds its free bits into its alloc bits
 * (bitmap_sweep), marks the heap-profile records of the sampled objects
 * among them freed (prof_reap_span, shm/profrec.h) and recounts allocount
 * from the bitmap; an empty span goes back to the page heap, one with room
 * to partial, a full one to full.
 *
 * Locks: a class lock guards its lists and the list links of its spans.
 * Lock order: class locks in ascending class order, then the heap lock, then
 * the quota lock; the heap lock is never held while a class lock is taken.
 * Sweeping happens with no lock held (the CAS protocol protects it).
 */
#ifndef HEAPD_DAEMON_CENTRAL_H
#define HEAPD_DAEMON_CENTRAL_H

#include <pthread.h>
#include <stdint.h>

#include "check.h"
#include "pageheap.h"
#include "quota.h"
#include "segment.h"
#include "sizeclass.h"
#include "spanlist.h"

typedef struct central_class {
	pthread_mutex_t lock;
	spanlist_t partial[2];   /* by sweep parity: room left */
	spanlist_t full[2];      /* by sweep parity: no room at the last sweep */
} central_class_t;

typedef struct central {
	segment_t *seg;
	pageheap_t *heap;
	quota_t *quota;          /* spans going back to the page heap are uncharged */
	central_class_t cls[SIZECLASS_COUNT]; /* [0] unused (class 0 is large) */
} central_t;

/* Result of sweeping one span. */
typedef struct sweep_result {
	uint64_t spans;          /* spans swept */
	uint64_t objects;        /* objects freed */
	uint64_t spans_freed;    /* empty spans returned to the page heap */
	uint64_t pages_freed;
} sweep_result_t;

int central_init(central_t *c, segment_t *seg, pageheap_t *heap, quota_t *quota);
void central_destroy(central_t *c);

/*
 * Take a swept span of sizeclass with room, off every list, for a client:
 * from the swept partial list, else an unswept one (sweeping it here, like
 * Go's cacheSpan). -ENOMEM if central has none. *needzero: free slots may
 * hold old data.
 */
int central_take(central_t *c, uint32_t sizeclass, uint32_t *span, int *needzero);

/*
 * Carve a new span of sizeclass from the page heap, for a client (on no
 * list, owner 0, swept). -ENOMEM when the arena is full.
 */
int central_carve(central_t *c, uint32_t sizeclass, uint32_t *span, int *needzero);

/*
 * A daemon-owned small span on no list (handed back by a client, or found
 * at recovery): sweep it now and file it, or free it if empty.
 */
void central_put(central_t *c, uint32_t span, sweep_result_t *res);

/* Start a sweep cycle: hdr->sweepgen += 2 under every class lock. Returns the new sg. */
uint32_t central_begin_cycle(central_t *c);

/* Sweep every unswept span of sizeclass. */
void central_sweep_class(central_t *c, uint32_t sizeclass, sweep_result_t *res);

/*
 * Return a span the daemon owns and nobody uses to the page heap: its
 * charge is dropped, then the page heap frees it. The _locked variant is for
 * a caller inside pageheap_enter (a walk).
 */
void central_free_span(central_t *c, uint32_t span);
void central_free_span_locked(central_t *c, uint32_t span);

/* Lock or unlock every class (ascending), e.g. for a consistent check. */
void central_lock_all(central_t *c);
void central_unlock_all(central_t *c);

/*
 * Consistency of the lists, with every class lock and the heap lock held:
 * spans on class lists are small, owned by the daemon, of that class and
 * tagged with their list. Adds problems to report; returns how many.
 */
size_t central_check_locked(central_t *c, check_report_t *report);

/* Spans on central lists (a racy sum for stats). */
uint64_t central_count(central_t *c);

#endif
