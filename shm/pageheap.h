// SPDX-License-Identifier: MIT
/*
 * pageheap.h - Go's page heap on the shared segment: spans of 8 KiB pages.
 *
 * Free spans shorter than HEAPD_MAX_LIST pages sit on a list per length;
 * longer ones sit in a best-fit tree keyed by (npages, start), so the
 * smallest fitting span wins and the lowest address breaks ties. Allocation
 * splits, free coalesces with both neighbours, and the heap grows inside the
 * file's reservation in chunks. Release punches free pages out of the file.
 *
 * The geometry (page map, span descriptors, counters in the header) lives in
 * the segment and changes only through shm/span.c; the lists and tree are
 * indexes threaded through the span descriptors' link fields, rebuilt by
 * pageheap_init.
 *
 * Locking: the heap lock is this module's own. Each public function takes
 * it; a *_locked function asserts that the caller holds it, which a caller
 * gets with pageheap_enter/pageheap_leave for a change of several steps (as
 * SQLite's mem5 has memsys5Enter). Lock order: class locks, then the heap
 * lock, then nothing.
 */
#ifndef HEAPD_SHM_PAGEHEAP_H
#define HEAPD_SHM_PAGEHEAP_H

#include <pthread.h>
#include <stdint.h>

#include "segment.h"

#define PAGEHEAP_GROW_PAGES 8192u /* grow the heap by at least 64 MiB at a time */

typedef struct pageheap {
	segment_t *seg;               /* the arena; geometry and counters live there */
	pthread_mutex_t lock;         /* private: guards everything below and the span geometry */
	uint32_t free[HEAPD_MAX_LIST]; /* head span of the free list of each length; [0] unused */
	uint64_t nonempty[HEAPD_MAX_LIST / 64]; /* bit n: free[n] is not empty */
	uint32_t large;               /* root of the tree of free spans >= HEAPD_MAX_LIST pages */
	uint32_t grow_pages;          /* growth chunk in pages */
} pageheap_t;

/*
 * Attach to a segment. A fresh segment (npages_grown == 0) starts empty; an
 * existing one has its tiling repaired and its indexes and counters rebuilt
 * from the span table. Returns 0 or -errno.
 */
int pageheap_init(pageheap_t *h, segment_t *seg);
void pageheap_destroy(pageheap_t *h);

/* Hold the heap lock across several *_locked calls. */
void pageheap_enter(pageheap_t *h);
void pageheap_leave(pageheap_t *h);

/*
 * Allocate a span of npages whose first byte's arena offset is a multiple
 * of align_pages pages (1: any; a power of two). On success *span is its
 * start page; it is SPAN_LARGE with no object yet (alloc bit 0 clear), every
 * page maps to it, and span->needzero says whether the pages may hold old
 * data. -EINVAL for a bad alignment, -ENOMEM when the reservation is
 * exhausted (nothing changed).
 */
int pageheap_alloc(pageheap_t *h, uint32_t npages, uint32_t align_pages, uint32_t *span);
int pageheap_alloc_locked(pageheap_t *h, uint32_t npages, uint32_t align_pages, uint32_t *span);

/*
 * A new small span of sizeclass (owner 0, on no list, swept for the current
 * sweepgen). *needzero: its pages may hold old data. -ENOMEM when full.
 */
int pageheap_alloc_small(pageheap_t *h, uint32_t sizeclass, uint32_t *span, int *needzero);

/* Give a span with no object yet its object (span_large_object) under the lock. */
void pageheap_large_object(pageheap_t *h, uint32_t span, uint32_t owner);

/* Return an in-use span nobody uses to the heap, coalescing with free neighbours. */
void pageheap_free(pageheap_t *h, uint32_t span);
void pageheap_free_locked(pageheap_t *h, uint32_t span);

/* Make the in-use span at p a quarantined large span (span_quarantine) under the lock. */
void pageheap_quarantine(pageheap_t *h, uint32_t p);

/*
 * Punch the pages of free spans that have been free since before
 * `older_than` (CLOCK_MONOTONIC ns; UINT64_MAX releases every free page)
 * out of the file. Returns the number of pages newly released.
 */
uint64_t pageheap_release(pageheap_t *h, uint64_t older_than);

/*
 * Call fn(arg, id) for every span of the heap, in address order, holding the
 * lock for at most PAGEHEAP_WALK_CHUNK spans at a time so that a long walk
 * never keeps allocations waiting for long. fn runs with the lock held and
 * may change or free the span it is given (with the *_locked functions);
 * the walk still goes on to the next one.
 */
#define PAGEHEAP_WALK_CHUNK 4096u
typedef void (*pageheap_visit_t)(void *arg, uint32_t id);
void pageheap_walk(pageheap_t *h, pageheap_visit_t fn, void *arg);

/* Header counters, read together under the lock. */
typedef struct pageheap_counts {
	uint32_t npages_grown;
	uint64_t pages_inuse, pages_free, pages_released;
} pageheap_counts_t;
void pageheap_counts(pageheap_t *h, pageheap_counts_t *c);

/* Assert (in debug builds) that the calling thread holds the lock. */
void pageheap_assert_locked(pageheap_t *h);

#endif
