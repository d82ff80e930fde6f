// SPDX-License-Identifier: MIT
/*
 * book.h - a book of live objects, kept by one thread of a soak or hostile
 * client: each object's record (offset, size, pattern seed) in shared
 * memory, so that the test can check the objects of a process that died
 * or stopped, and the indexes in private memory. An object is recorded
 * only once it holds its pattern (its offset is written last), and its
 * record is cleared before it is freed. Every live object is claimed in a
 * claim map (claims.h).
 *
 * The book's calls into the library hold the library lock (liblock.h).
 */
#ifndef HEAPD_TESTS_HARNESS_BOOK_H
#define HEAPD_TESTS_HARNESS_BOOK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "harness/claims.h"
#include "harness/view.h"

typedef struct hbook_rec {
	_Atomic uint64_t off;   /* 0: empty */
	uint64_t size;
	uint64_t seed;
} hbook_rec_t;

typedef struct hbook {
	hbook_rec_t *recs;      /* shared, cap entries */
	hclaims_t *claims;
	uint32_t cap, nlive, nfree;
	uint32_t *live;         /* record indexes in use */
	uint32_t *spare;        /* record indexes free */
	uint64_t seedbase;      /* seeds are seedbase + a serial number: unique per book */
	uint64_t serial;
	uint64_t large_bytes;   /* live bytes in large objects */
} hbook_t;

/* Start an empty book over recs[0..cap) (zeroed). Aborts if out of memory. */
void hbook_init(hbook_t *b, hbook_rec_t *recs, uint32_t cap, hclaims_t *claims, uint64_t seedbase);

/*
 * hc_malloc(size), claim it, fill it with its pattern and record it. The
 * object, or NULL with the reason in err (allocation failed, or it overlaps
 * a live object, or the book is full).
 */
void *hbook_alloc(hbook_t *b, size_t size, char *err, size_t errlen);

/* Check the pattern of the k-th live object, unrecord, unclaim and free it. 0, or -1 with err. */
int hbook_free(hbook_t *b, uint32_t k, char *err, size_t errlen);

/* The size of the k-th live object. */
uint64_t hbook_size(const hbook_t *b, uint32_t k);

/*
 * Free the k-th live object, a large one, the way hc_free begins: check its
 * pattern, unrecord and unclaim it, read its generation and set its free
 * bit through v; but send no LargeFree. Its span and generation go to
 * *span, *gen. 0, or -1 with err.
 */
int hbook_free_bit(hbook_t *b, uint32_t k, const hview_t *v, uint32_t *span, uint32_t *gen,
                   char *err, size_t errlen);

/*
 * Check every object recorded in recs[0..cap), a book whose thread is gone
 * or stopped. With do_free, unclaim, free and unrecord each too. The number
 * of objects, or -1 with err at the first damaged pattern.
 */
int64_t hbook_recs_check(hbook_rec_t *recs, uint32_t cap, hclaims_t *claims, int do_free,
                         char *err, size_t errlen);

#endif
