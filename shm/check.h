// SPDX-License-Identifier: MIT
/*
 * check.h - the invariant checker: walk a segment and list what is wrong.
 *
 * It verifies that the spans tile the grown heap (every page belongs to
 * exactly one span), that the page map agrees, that no two free spans are
 * adjacent, that the header counters match a recount, that each in-use span's
 * bitmaps are within bounds, and, given the page heap, that its free lists
 * and tree hold exactly the free spans. It never aborts: problems are
 * collected as lines of text. Problems in the bitmaps are counted apart
 * (ndata): clients write them, so a client can cause those, and only those.
 */
#ifndef HEAPD_SHM_CHECK_H
#define HEAPD_SHM_CHECK_H

#include <stddef.h>

#include "pageheap.h"
#include "segment.h"

#define CHECK_MAX_PROBLEMS 64

typedef struct check_report {
	size_t nproblems;                 /* problems found, may exceed what is kept */
	size_t ndata;                     /* of which in the data (bitmaps, profile records), which clients write */
	char problems[CHECK_MAX_PROBLEMS][160]; /* the first CHECK_MAX_PROBLEMS, one line each */
} check_report_t;

/*
 * Check seg, and h's indexes if h is not NULL. The caller holds h->lock (or
 * knows nobody changes the heap). Returns the number of problems found.
 */
size_t check_segment(const segment_t *seg, const pageheap_t *h, check_report_t *report);

#endif
