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
 * the segment; the lists and tree are indexes threaded through the span
 * descriptors' link fields, rebuilt by pageheap_rebuild.
 *
 * Locking: one mutex, h->lock. Public functions take it; *_locked functions
 * expect the caller to hold it.
 */
#ifndef HEAPD_SHM_PAGEHEAP_H
#define HEAPD_SHM_PAGEHEAP_H

#include <pthread.h>
#include <stdint.h>

#include "segment.h"

#define PAGEHEAP_GROW_PAGES 8192u /* grow the heap by at least 64 MiB at a time */

typedef struct pageheap {
	segment_t *seg;               /* the arena; geometry and counters live there */
	pthread_mutex_t lock;         /* guards everything below and the span geometry */
	uint32_t free[HEAPD_MAX_LIST]; /* head span of the free list of each length; [0] unused */
	uint64_t nonempty[HEAPD_MAX_LIST / 64]; /* bit n: free[n] is not empty */
	uint32_t large;               /* root of the tree of free spans >= HEAPD_MAX_LIST pages */
	uint32_t grow_pages;          /* growth chunk in pages */
} pageheap_t;

/*
 * Attach to a segment. A fresh segment (npages_grown == 0) starts empty; an
 * existing one has its indexes and counters rebuilt from the span table
 * (pageheap_rebuild). Returns 0 or -errno.
 */
int pageheap_init(pageheap_t *h, segment_t *seg);
void pageheap_destroy(pageheap_t *h);

/*
 * Allocate a span of npages. On success *span is its start page; its state is
 * SPAN_LARGE with sizeclass 0 (the caller retypes it), every page maps to it,
 * and span->needzero says whether the pages may hold old data.
 * -ENOMEM when the reservation is exhausted.
 */
int pageheap_alloc(pageheap_t *h, uint32_t npages, uint32_t *span);
int pageheap_alloc_locked(pageheap_t *h, uint32_t npages, uint32_t *span);

/* Allocate npages starting at a multiple of align_pages (a power of two). */
int pageheap_alloc_aligned(pageheap_t *h, uint32_t npages, uint32_t align_pages, uint32_t *span);

/* Return an in-use span to the heap, coalescing with free neighbours. */
void pageheap_free(pageheap_t *h, uint32_t span);
void pageheap_free_locked(pageheap_t *h, uint32_t span);

/*
 * Punch the pages of free spans that have been free since before
 * `older_than` (CLOCK_MONOTONIC ns; UINT64_MAX releases every free page)
 * out of the file. Returns the number of pages newly released.
 */
uint64_t pageheap_release(pageheap_t *h, uint64_t older_than);

/*
 * Make pages [p, p + npages) one large span that nobody owns, holding one
 * object, so that nothing hands them out until someone frees it: what the
 * rebuild and recovery do with a span they cannot trust. Its bitmaps are
 * cleared but for that object and its page map names no class; the state is
 * written last. Caller holds the lock (or the heap is not running yet).
 */
void pageheap_quarantine(segment_t *seg, uint32_t p, uint32_t npages);

/* Rebuild the free lists, tree and header counters from the span table. Caller holds the lock. */
void pageheap_rebuild_locked(pageheap_t *h);

/* Current monotonic time in ns. */
uint64_t pageheap_now(void);

#endif
