// SPDX-License-Identifier: MIT
/*
 * book.c - books of live objects. See book.h.
 */
#include "harness/book.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "harness/liblock.h"
#include "harness/util.h"
#include "heapclient.h"

void hbook_init(hbook_t *b, hbook_rec_t *recs, uint32_t cap, hclaims_t *claims, uint64_t seedbase)
{
	memset(b, 0, sizeof(*b));
	b->recs = recs;
	b->claims = claims;
	b->cap = cap;
	b->seedbase = seedbase;
	b->live = calloc(cap, sizeof(uint32_t));
	b->spare = calloc(cap, sizeof(uint32_t));
	if (!b->live || !b->spare)
		abort();
	for (uint32_t i = 0; i < cap; i++)
		b->spare[b->nfree++] = cap - 1 - i;
}

void *hbook_alloc(hbook_t *b, size_t size, char *err, size_t errlen)
{
	if (b->nfree == 0) {
		snprintf(err, errlen, "pid %d: the book of live objects is full", (int)getpid());
		return NULL;
	}
	hlock_enter();
	void *p = hc_malloc(size);
	int e = errno;
	hlock_leave();
	if (!p) {
		snprintf(err, errlen, "pid %d: hc_malloc(%zu): %s", (int)getpid(), size, strerror(e));
		return NULL;
	}
	uint64_t off = hc_ptr_to_off(p);
	int rc = hclaims_claim(b->claims, off, size);
	if (rc < 0) {
		snprintf(err, errlen, "pid %d: new object at offset %llu (%zu bytes) %s", (int)getpid(),
		         (unsigned long long)off, size,
		         rc == -1 ? "overlaps a live object" : "is not inside the arena");
		return NULL;
	}
	uint64_t seed = b->seedbase + ++b->serial;
	hutil_fill(p, size, seed);
	uint32_t i = b->spare[--b->nfree];
	hbook_rec_t *r = &b->recs[i];
	r->size = size;
	r->seed = seed;
	atomic_store_explicit(&r->off, off, memory_order_release);
	b->live[b->nlive++] = i;
	if (size > HEAPD_MAX_SMALL)
		b->large_bytes += size;
	return p;
}

uint64_t hbook_size(const hbook_t *b, uint32_t k)
{
	return b->recs[b->live[k]].size;
}

/* The k-th live object, its pattern checked; NULL with err if it lost it. */
static void *checked(hbook_t *b, uint32_t k, char *err, size_t errlen)
{
	hbook_rec_t *r = &b->recs[b->live[k]];
	uint64_t off = atomic_load(&r->off);
	void *p = hc_off_to_ptr(off);
	if (!p || !hutil_verify(p, r->size, r->seed)) {
		snprintf(err, errlen, "pid %d: object at offset %llu (%llu bytes) lost its pattern",
		         (int)getpid(), (unsigned long long)off, (unsigned long long)r->size);
		return NULL;
	}
	return p;
}

/* Unrecord and unclaim the k-th live object, which stays allocated. */
static void forget(hbook_t *b, uint32_t k)
{
	uint32_t i = b->live[k];
	hbook_rec_t *r = &b->recs[i];
	uint64_t off = atomic_load(&r->off);
	atomic_store_explicit(&r->off, 0, memory_order_release);
	hclaims_unclaim(b->claims, off, r->size);
	if (r->size > HEAPD_MAX_SMALL)
		b->large_bytes -= r->size;
	b->live[k] = b->live[--b->nlive];
	b->spare[b->nfree++] = i;
}

int hbook_free(hbook_t *b, uint32_t k, char *err, size_t errlen)
{
	void *p = checked(b, k, err, errlen);
	if (!p)
		return -1;
	forget(b, k);
	hlock_enter();
	hc_free(p);
	hlock_leave();
	return 0;
}

int hbook_free_bit(hbook_t *b, uint32_t k, const hview_t *v, uint32_t *span, uint32_t *gen,
                   char *err, size_t errlen)
{
	void *p = checked(b, k, err, errlen);
	if (!p)
		return -1;
	uint64_t size = hbook_size(b, k);
	uint32_t id = hview_span_of(v, p);
	if (size <= HEAPD_MAX_SMALL || id == HEAPD_NIL || v->spans[id].start != id ||
	    v->spans[id].state != SPAN_LARGE || (uint8_t *)p != v->pages + ((uint64_t)id << HEAPD_PAGE_SHIFT)) {
		snprintf(err, errlen, "pid %d: object at offset %llu (%llu bytes) does not start a large "
		         "span", (int)getpid(), (unsigned long long)hc_ptr_to_off(p), (unsigned long long)size);
		return -1;
	}
	/* Read before the free bit makes the object heapd's, as hc_free reads it. */
	uint32_t g = v->spans[id].gen;
	forget(b, k);
	uint64_t *alloc = v->bits + (uint64_t)id * HEAPD_BITS_WORDS_PER_PAGE;
	int rc = bitmap_mark_free(alloc, alloc + heapd_freebits_delta(1), 0);
	if (rc != BITMAP_FREED) {
		snprintf(err, errlen, "pid %d: large span %u: %s", (int)getpid(), id,
		         rc == BITMAP_DOUBLE_FREE ? "its free bit was set already"
		                                  : "its alloc bit is clear");
		return -1;
	}
	*span = id;
	*gen = g;
	return 0;
}

int64_t hbook_recs_check(hbook_rec_t *recs, uint32_t cap, hclaims_t *claims, int do_free,
                         char *err, size_t errlen)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < cap; i++) {
		hbook_rec_t *r = &recs[i];
		uint64_t off = atomic_load_explicit(&r->off, memory_order_acquire);
		if (off == 0)
			continue;
		void *p = hc_off_to_ptr(off);
		if (!p || !hutil_verify(p, r->size, r->seed)) {
			snprintf(err, errlen, "object at offset %llu (%llu bytes) lost its pattern",
			         (unsigned long long)off, (unsigned long long)r->size);
			return -1;
		}
		if (do_free) {
			hclaims_unclaim(claims, off, r->size);
			hlock_enter();
			hc_free(p);
			hlock_leave();
			atomic_store(&r->off, 0);
		}
		n++;
	}
	return n;
}
