// SPDX-License-Identifier: MIT
/*
 * test_central.c - the central span lists and the daemon's sweep
 * (daemon/central.c), on a real segment, page heap and quota books in a
 * temporary arena: carving spans for a class, handing spans back with and
 * without live objects, the partial and full lists of each sweep parity,
 * taking spans for a refill, sweeping a class (free bits folded, empty spans
 * back to the page heap and uncharged), takers and sweepers racing on one
 * class, the list checker finding corrupted lists, and the asserts of the
 * *_locked functions.
 *
 * Objects are "allocated" by setting alloc bits, as the client that held the
 * span did, and freed with bitmap_mark_free, as any process does. The
 * assert cases run where assert() is compiled in: HEAPD_DEBUG builds, such
 * as the sanitizer build of scripts/test.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "central.h"
#include "harness/heapfx.h"
#include "quota.h"
#include "sizeclass.h"

typedef struct centralfx {
	heapfx_t fx;
	quota_t quota;
	central_t c;
} centralfx_t;

#define NSLOTS 16

static void cfx_open(centralfx_t *x, uint64_t arena_bytes)
{
	heapfx_open(&x->fx, arena_bytes, 64);
	ck_assert_int_eq(quota_init(&x->quota, &x->fx.seg, NSLOTS, 0, 0), 0);
	ck_assert_int_eq(central_init(&x->c, &x->fx.seg, &x->fx.h, &x->quota), 0);
}

static void cfx_close(centralfx_t *x)
{
	central_destroy(&x->c);
	central_destroy(&x->c); /* twice is harmless */
	quota_destroy(&x->quota);
	heapfx_close(&x->fx);
}

static shm_span_t *span(centralfx_t *x, uint32_t id)
{
	return &x->fx.seg.spans[id];
}

static uint32_t sg_now(centralfx_t *x)
{
	return atomic_load(&x->fx.seg.hdr->sweepgen);
}

static uint32_t parity(uint32_t sg)
{
	return (sg >> 1) & 1;
}

static uint32_t nelems(uint32_t k)
{
	return sizeclass_nelems[k];
}

static uint64_t *alloc_words(centralfx_t *x, uint32_t id)
{
	return segment_allocbits(&x->fx.seg, id);
}

static uint64_t *free_words(centralfx_t *x, uint32_t id)
{
	return segment_freebits(&x->fx.seg, id, nelems(span(x, id)->sizeclass));
}

/* The first class with at least min objects and npages pages (0: any length). */
static uint32_t class_with(uint32_t min, uint32_t npages)
{
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		if (sizeclass_nelems[k] >= min && (npages == 0 || sizeclass_npages[k] == npages))
			return k;
	ck_abort_msg("no class with %u objects in %u pages", min, npages);
	return 0;
}

static uint32_t carve(centralfx_t *x, uint32_t k)
{
	uint32_t id;
	int nz;
	int rc = central_carve(&x->c, k, &id, &nz);
	ck_assert_msg(rc == 0, "carve class %u: %d", k, rc);
	return id;
}

/* Objects idx (as a client allocated them while it held the span). */
static void set_objects(centralfx_t *x, uint32_t id, const uint32_t *idx, size_t n)
{
	uint64_t *a = alloc_words(x, id);
	for (size_t i = 0; i < n; i++)
		bitmap_store(&a[idx[i] >> 6], bitmap_load(&a[idx[i] >> 6]) | 1ULL << (idx[i] & 63));
}

static void set_all(centralfx_t *x, uint32_t id)
{
	uint32_t n = nelems(span(x, id)->sizeclass);
	uint64_t *a = alloc_words(x, id);
	for (uint32_t w = 0; w < bitmap_words(n); w++)
		bitmap_store(&a[w], bitmap_valid_mask(w, n));
}

/* Another process frees object idx. */
static void free_obj(centralfx_t *x, uint32_t id, uint32_t idx)
{
	ck_assert_int_eq(bitmap_mark_free(alloc_words(x, id), free_words(x, id), idx), BITMAP_FREED);
}

static int alloc_bit(centralfx_t *x, uint32_t id, uint32_t idx)
{
	return (int)(bitmap_load(&alloc_words(x, id)[idx >> 6]) >> (idx & 63)) & 1;
}

static int no_free_bits(centralfx_t *x, uint32_t id)
{
	uint32_t n = nelems(span(x, id)->sizeclass);
	for (uint32_t w = 0; w < bitmap_words(n); w++)
		if (bitmap_load(&free_words(x, id)[w]))
			return 0;
	return 1;
}

/* Span id went back to the page heap: no small span starts there any more. */
static int freed(centralfx_t *x, uint32_t id)
{
	return span(x, id)->state != SPAN_SMALL || span(x, id)->start != id;
}

/* A carved span with objects idx, handed back: the usual way a span reaches central. */
static uint32_t put_with(centralfx_t *x, uint32_t k, const uint32_t *idx, size_t n)
{
	uint32_t id = carve(x, k);
	set_objects(x, id, idx, n);
	central_put(&x->c, id, NULL);
	return id;
}

static uint32_t put_full(centralfx_t *x, uint32_t k)
{
	uint32_t id = carve(x, k);
	set_all(x, id);
	central_put(&x->c, id, NULL);
	return id;
}

/* The segment checker and the list checker find nothing. */
static void assert_clean(centralfx_t *x)
{
	static check_report_t r;
	central_lock_all(&x->c);
	pageheap_enter(&x->fx.h);
	size_t n = check_segment(&x->fx.seg, &x->fx.h, &r);
	n += central_check_locked(&x->c, &r);
	pageheap_leave(&x->fx.h);
	central_unlock_all(&x->c);
	if (n)
		heapfx_print(&r);
	ck_assert_msg(n == 0, "%zu problems", n);
}

/* ---- carving ---- */

START_TEST(test_carve)
{
	static centralfx_t x;
	uint32_t classes[3] = { 1, class_with(1, 3), SIZECLASS_COUNT - 1 };
	uint32_t ids[3];
	cfx_open(&x, 64 * MIB);
	uint32_t sg = sg_now(&x);

	for (int i = 0; i < 3; i++) {
		uint32_t k = classes[i], id;
		int nz = -1;
		ck_assert_int_eq(central_carve(&x.c, k, &id, &nz), 0);
		ids[i] = id;
		const shm_span_t *s = span(&x, id);
		ck_assert_uint_eq(s->state, SPAN_SMALL);
		ck_assert_uint_eq(s->start, id);
		ck_assert_uint_eq(s->sizeclass, k);
		ck_assert_uint_eq(s->npages, sizeclass_npages[k]);
		ck_assert_uint_eq(s->owner, 0);            /* the daemon's until it is granted */
		ck_assert_uint_eq(s->list, SPANLIST_NONE); /* on no list */
		ck_assert_uint_eq(atomic_load(&s->sweepgen), sg);
		ck_assert_int_eq(nz, 0); /* fresh pages of a sparse file */
		ck_assert_uint_eq(nz, s->needzero);
		for (uint32_t p = id; p < id + s->npages; p++)
			ck_assert_uint_eq(x.fx.seg.pagemap[p], heapd_pagemap_entry(id, k));
		for (uint32_t w = 0; w < HEAPD_BITS_WORDS_PER_PAGE; w++)
			ck_assert_uint_eq(bitmap_load(&alloc_words(&x, id)[w]), 0);
		if (i > 0)
			ck_assert_uint_ge(id, ids[i - 1] + span(&x, ids[i - 1])->npages); /* no overlap */
	}
	uint64_t inuse = 0;
	for (int i = 0; i < 3; i++)
		inuse += sizeclass_npages[classes[i]];
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, inuse);
	ck_assert_uint_eq(central_count(&x.c), 0); /* carving files nothing */
	assert_clean(&x);

	/* pages that held objects come back marked dirty, as a new generation */
	uint32_t gen = span(&x, ids[0])->gen;
	set_all(&x, ids[0]);
	central_free_span(&x.c, ids[0]);
	ck_assert(freed(&x, ids[0]));
	uint32_t id;
	int nz = 0;
	ck_assert_int_eq(central_carve(&x.c, classes[0], &id, &nz), 0);
	ck_assert_uint_eq(id, ids[0]); /* the page heap's best fit: the hole it left */
	ck_assert_int_eq(nz, 1);
	ck_assert_uint_gt(span(&x, id)->gen, gen);
	ck_assert_uint_eq(bitmap_load(alloc_words(&x, id)), 0); /* no object carried over */

	/* a span carved in a later cycle is swept for that cycle */
	uint32_t sg2 = central_begin_cycle(&x.c);
	ck_assert_uint_eq(sg2, sg + 2);
	ck_assert_uint_eq(atomic_load(&span(&x, carve(&x, 2))->sweepgen), sg2);
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

START_TEST(test_carve_until_full)
{
	static centralfx_t x;
	uint32_t k = class_with(1, 1), id, n = 0;
	int nz;
	cfx_open(&x, 4 * MIB);
	uint32_t max = x.fx.seg.npages_max;

	while (central_carve(&x.c, k, &id, &nz) == 0)
		n++;
	ck_assert_uint_eq(n, max); /* every page, one span each */
	pageheap_counts_t before, after;
	pageheap_counts(&x.fx.h, &before);
	ck_assert_int_eq(central_carve(&x.c, k, &id, &nz), -ENOMEM);
	ck_assert_int_eq(central_carve(&x.c, class_with(1, 2), &id, &nz), -ENOMEM);
	pageheap_counts(&x.fx.h, &after);
	heapfx_assert_same_counts(&before, &after); /* a refused carve changes nothing */
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), -ENOMEM); /* and central has none */

	/* a span handed back with room is what a refill gets now */
	uint32_t one = 3;
	set_objects(&x, max - 1, &one, 1);
	central_put(&x.c, max - 1, NULL);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, max - 1);
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/* ---- handing spans back ---- */

START_TEST(test_put_files_by_state)
{
	static centralfx_t x;
	uint32_t k = class_with(100, 1); /* two bitmap words at least */
	sweep_result_t res;
	cfx_open(&x, 64 * MIB);
	uint32_t sg = sg_now(&x), p = parity(sg);

	/* room left: the partial list of this cycle */
	uint32_t some[] = { 0, 5, 70 };
	uint32_t a = carve(&x, k);
	set_objects(&x, a, some, 3);
	memset(&res, 0, sizeof(res));
	central_put(&x.c, a, &res);
	ck_assert_uint_eq(span(&x, a)->list, SPANLIST_PARTIAL + p);
	ck_assert_uint_eq(atomic_load(&span(&x, a)->sweepgen), sg);
	ck_assert_uint_eq(span(&x, a)->allocount, 3);
	ck_assert_uint_eq(span(&x, a)->owner, 0);
	ck_assert_uint_eq(res.spans, 1);
	ck_assert_uint_eq(res.objects, 0);
	ck_assert_uint_eq(res.spans_freed, 0);
	ck_assert_uint_eq(x.c.cls[k].partial[p].head, a);

	/* every object allocated: the full list */
	uint32_t b = carve(&x, k);
	set_all(&x, b);
	central_put(&x.c, b, NULL);
	ck_assert_uint_eq(span(&x, b)->list, SPANLIST_FULL + p);
	ck_assert_uint_eq(span(&x, b)->allocount, nelems(k));
	ck_assert_uint_eq(x.c.cls[k].full[p].head, b);

	/* full but for objects freed by others meanwhile: folded, so partial */
	uint32_t c = carve(&x, k);
	set_all(&x, c);
	free_obj(&x, c, 1);
	free_obj(&x, c, 99);
	memset(&res, 0, sizeof(res));
	central_put(&x.c, c, &res);
	ck_assert_uint_eq(res.objects, 2);
	ck_assert_uint_eq(span(&x, c)->allocount, nelems(k) - 2);
	ck_assert_uint_eq(span(&x, c)->list, SPANLIST_PARTIAL + p);
	ck_assert(!alloc_bit(&x, c, 1) && !alloc_bit(&x, c, 99) && alloc_bit(&x, c, 2));
	ck_assert(no_free_bits(&x, c));

	/* every object freed: back to the page heap, uncharged */
	uint32_t two[] = { 4, 100 };
	uint32_t d = carve(&x, k);
	set_objects(&x, d, two, 2);
	free_obj(&x, d, 4);
	free_obj(&x, d, 100);
	quota_charge_span(&x.quota, d, 3, 1000);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 3), sizeclass_npages[k]);
	uint64_t inuse = x.fx.seg.hdr->pages_inuse;
	memset(&res, 0, sizeof(res));
	central_put(&x.c, d, &res);
	ck_assert(freed(&x, d));
	ck_assert_uint_eq(res.spans, 1);
	ck_assert_uint_eq(res.objects, 2);
	ck_assert_uint_eq(res.spans_freed, 1);
	ck_assert_uint_eq(res.pages_freed, sizeclass_npages[k]);
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, inuse - sizeclass_npages[k]);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 3), 0);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, 1000), 0);

	/* no object at all: freed too, with no result asked for */
	uint32_t e = carve(&x, k);
	central_put(&x.c, e, NULL);
	ck_assert(freed(&x, e));

	ck_assert_uint_eq(central_count(&x.c), 3);
	ck_assert_uint_eq(x.c.cls[k].partial[p].count, 2);
	ck_assert_uint_eq(x.c.cls[k].full[p].count, 1);
	ck_assert_uint_eq(x.c.cls[k].partial[p ^ 1].count + x.c.cls[k].full[p ^ 1].count, 0);
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/* ---- taking spans for a refill ---- */

START_TEST(test_take)
{
	static centralfx_t x;
	uint32_t k = class_with(100, 1), other = class_with(100, 1) + 1, id;
	int nz = 0;
	cfx_open(&x, 64 * MIB);

	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), -ENOMEM);

	/* a partial span, with an object freed after it was filed: the fold happens on take */
	uint32_t three[] = { 0, 1, 2 };
	uint32_t a = put_with(&x, k, three, 3);
	free_obj(&x, a, 1);
	put_with(&x, other, three, 3); /* another class's span is never taken for k */
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, a);
	ck_assert_int_eq(nz, 1); /* freed slots hold their old contents */
	ck_assert_uint_eq(span(&x, a)->list, SPANLIST_NONE);
	ck_assert_uint_eq(span(&x, a)->owner, 0);
	ck_assert_uint_eq(atomic_load(&span(&x, a)->sweepgen), sg_now(&x));
	ck_assert_uint_eq(span(&x, a)->allocount, 2);
	ck_assert(!alloc_bit(&x, a, 1) && alloc_bit(&x, a, 0) && alloc_bit(&x, a, 2));
	ck_assert(no_free_bits(&x, a));
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), -ENOMEM);
	ck_assert_uint_eq(central_count(&x.c), 1);

	/* a full span is not looked at again in the cycle that filed it, frees or not */
	uint32_t b = put_full(&x, k);
	free_obj(&x, b, 7);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), -ENOMEM);
	ck_assert_uint_eq(span(&x, b)->list, SPANLIST_FULL + parity(sg_now(&x)));
	/* in the next cycle it is unswept: take sweeps it, finds the room and takes it */
	uint32_t sg = central_begin_cycle(&x.c);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, b);
	ck_assert_uint_eq(span(&x, b)->allocount, nelems(k) - 1);
	ck_assert_uint_eq(atomic_load(&span(&x, b)->sweepgen), sg);
	ck_assert(no_free_bits(&x, b));

	/* swept partial spans before unswept ones */
	uint32_t u = put_with(&x, k, three, 3);
	sg = central_begin_cycle(&x.c);
	ck_assert_uint_eq(atomic_load(&span(&x, u)->sweepgen), sg - 2); /* unswept now */
	uint32_t s = put_with(&x, k, three, 2);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, s);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, u);
	ck_assert_uint_eq(atomic_load(&span(&x, u)->sweepgen), sg);

	/* an unswept span whose objects were all freed is handed out, not freed */
	uint32_t e = put_with(&x, k, three, 1);
	sg = central_begin_cycle(&x.c);
	free_obj(&x, e, 0);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, e);
	ck_assert_uint_eq(span(&x, e)->state, SPAN_SMALL);
	ck_assert_uint_eq(span(&x, e)->allocount, 0);
	ck_assert_uint_eq(central_count(&x.c), 1); /* the other class's span */
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/*
 * An unswept partial span comes before any full one; a refill sweeps only a
 * bounded number of unswept full spans looking for room and leaves the rest
 * to the sweeper, filing the ones it swept as swept.
 */
START_TEST(test_take_bounded)
{
	enum { NFULL = 200 };
	static centralfx_t x;
	static uint32_t full[NFULL];
	uint32_t k = class_with(8, 1), id;
	int nz;
	cfx_open(&x, 64 * MIB);

	for (int i = 0; i < NFULL; i++)
		full[i] = put_full(&x, k);
	uint32_t one = 0, part = put_with(&x, k, &one, 1);
	uint32_t sg = central_begin_cycle(&x.c);
	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), 0);
	ck_assert_uint_eq(id, part);
	for (int i = 0; i < NFULL; i++)
		ck_assert_uint_eq(atomic_load(&span(&x, full[i])->sweepgen), sg - 2); /* none swept */

	ck_assert_int_eq(central_take(&x.c, k, &id, &nz), -ENOMEM);
	uint32_t swept = 0;
	for (int i = 0; i < NFULL; i++) {
		const shm_span_t *s = span(&x, full[i]);
		if (atomic_load(&s->sweepgen) == sg) {
			swept++;
			ck_assert_uint_eq(s->list, SPANLIST_FULL + parity(sg));
		} else {
			ck_assert_uint_eq(atomic_load(&s->sweepgen), sg - 2);
			ck_assert_uint_eq(s->list, SPANLIST_FULL + parity(sg - 2));
		}
	}
	ck_assert_uint_gt(swept, 0);
	ck_assert_uint_lt(swept, NFULL);
	assert_clean(&x);

	sweep_result_t res = { 0 };
	central_sweep_class(&x.c, k, &res);
	ck_assert_uint_eq(res.spans, NFULL - swept);
	for (int i = 0; i < NFULL; i++)
		ck_assert_uint_eq(atomic_load(&span(&x, full[i])->sweepgen), sg);
	ck_assert_uint_eq(x.c.cls[k].full[parity(sg)].count, NFULL);
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/* ---- the sweep ---- */

START_TEST(test_sweep_class)
{
	static centralfx_t x;
	uint32_t k = class_with(100, 1), other = k + 1;
	uint32_t objs[] = { 0, 1, 2, 64, 65 };
	sweep_result_t res;
	cfx_open(&x, 64 * MIB);
	uint32_t sg0 = sg_now(&x);

	uint32_t partial = put_with(&x, k, objs, 5);   /* two frees to fold */
	uint32_t full = put_full(&x, k);               /* one free: becomes partial */
	uint32_t still = put_full(&x, k);              /* no free: stays full */
	uint32_t empty = put_with(&x, k, objs, 2);     /* every object freed */
	uint32_t last = put_with(&x, k, objs, 2);      /* all but one object freed */
	uint32_t o = put_with(&x, other, objs, 3);     /* another class, not swept */
	free_obj(&x, partial, 1);
	free_obj(&x, partial, 64);
	free_obj(&x, full, 33);
	free_obj(&x, empty, 0);
	free_obj(&x, empty, 1);
	free_obj(&x, last, 1);
	free_obj(&x, o, 2);
	quota_charge_span(&x.quota, empty, 2, 77);

	uint32_t sg = central_begin_cycle(&x.c);
	ck_assert_uint_eq(sg, sg0 + 2);
	ck_assert_uint_eq(sg_now(&x), sg);
	uint64_t inuse = x.fx.seg.hdr->pages_inuse;
	memset(&res, 0, sizeof(res));
	central_sweep_class(&x.c, k, &res);
	ck_assert_uint_eq(res.spans, 5);
	ck_assert_uint_eq(res.objects, 6);
	ck_assert_uint_eq(res.spans_freed, 1);
	ck_assert_uint_eq(res.pages_freed, sizeclass_npages[k]);
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, inuse - sizeclass_npages[k]);
	ck_assert(freed(&x, empty));
	ck_assert_uint_eq(quota_uid_pages(&x.quota, 77), 0);

	uint32_t p = parity(sg);
	ck_assert_uint_eq(span(&x, partial)->allocount, 3);
	ck_assert_uint_eq(span(&x, partial)->list, SPANLIST_PARTIAL + p);
	ck_assert_uint_eq(span(&x, full)->allocount, nelems(k) - 1);
	ck_assert_uint_eq(span(&x, full)->list, SPANLIST_PARTIAL + p);
	ck_assert_uint_eq(span(&x, still)->list, SPANLIST_FULL + p);
	ck_assert_uint_eq(span(&x, last)->allocount, 1); /* one object left keeps it */
	ck_assert_uint_eq(span(&x, last)->list, SPANLIST_PARTIAL + p);
	uint32_t kept[] = { partial, full, still, last };
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(atomic_load(&span(&x, kept[i])->sweepgen), sg);
		ck_assert(no_free_bits(&x, kept[i]));
	}
	/* the other class waits for its own sweep */
	ck_assert_uint_eq(atomic_load(&span(&x, o)->sweepgen), sg0);
	ck_assert(!no_free_bits(&x, o));
	ck_assert_uint_eq(span(&x, o)->list, SPANLIST_PARTIAL + parity(sg0));

	/* a second sweep of the class in the same cycle finds nothing to do */
	memset(&res, 0, sizeof(res));
	central_sweep_class(&x.c, k, &res);
	ck_assert_uint_eq(res.spans, 0);
	assert_clean(&x);

	/* the cycle ends when every class is swept (sweeper.c), the other one too */
	memset(&res, 0, sizeof(res));
	central_sweep_class(&x.c, other, &res);
	ck_assert_uint_eq(res.spans, 1);
	ck_assert_uint_eq(res.objects, 1);
	ck_assert_uint_eq(atomic_load(&span(&x, o)->sweepgen), sg);
	ck_assert_uint_eq(span(&x, o)->list, SPANLIST_PARTIAL + p);

	/* the next cycle sweeps them all again */
	sg = central_begin_cycle(&x.c);
	memset(&res, 0, sizeof(res));
	central_sweep_class(&x.c, k, &res);
	ck_assert_uint_eq(res.spans, 4);
	ck_assert_uint_eq(res.objects, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(atomic_load(&span(&x, kept[i])->sweepgen), sg);
	ck_assert_uint_eq(span(&x, partial)->list, SPANLIST_PARTIAL + parity(sg));
	ck_assert_uint_eq(span(&x, still)->list, SPANLIST_FULL + parity(sg));
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/*
 * Takers and sweepers on one class at once: every span is swept and then
 * ends up in exactly one place (taken, filed, or freed), whatever the
 * interleaving; the claim (sg - 2 -> sg - 1) makes each sweep the only one.
 */
enum { RACE_SPANS = 400, RACE_SWEEPERS = 2, RACE_TAKERS = 2 };

typedef struct race {
	centralfx_t *x;
	uint32_t k;
	_Atomic int go;
	sweep_result_t res[RACE_SWEEPERS];
	uint32_t taken[RACE_TAKERS][RACE_SPANS];
	uint32_t ntaken[RACE_TAKERS];
} race_t;

typedef struct race_arg {
	race_t *r;
	int i;
} race_arg_t;

static void *race_sweeper(void *p)
{
	race_arg_t *a = p;
	while (!atomic_load(&a->r->go))
		;
	central_sweep_class(&a->r->x->c, a->r->k, &a->r->res[a->i]);
	return NULL;
}

static void *race_taker(void *p)
{
	race_arg_t *a = p;
	race_t *r = a->r;
	uint32_t id;
	int nz;
	while (!atomic_load(&r->go))
		;
	/* a few rounds: the sweepers file spans on the swept lists meanwhile */
	for (int misses = 0; misses < 3;) {
		if (central_take(&r->x->c, r->k, &id, &nz) == 0)
			r->taken[a->i][r->ntaken[a->i]++] = id;
		else
			misses++;
	}
	return NULL;
}

START_TEST(test_race_take_and_sweep)
{
	static centralfx_t x;
	static race_t r;
	static uint32_t ids[RACE_SPANS];
	static uint8_t seen[1 << 16];
	uint32_t k = class_with(64, 1);
	uint64_t seed = 0x2545f4914f6cdd1dULL, nobjs_freed = 0;
	cfx_open(&x, 64 * MIB);

	for (int i = 0; i < RACE_SPANS; i++) {
		ids[i] = carve(&x, k);
		/* about a third end up empty, some full, the rest partial */
		uint32_t n = nelems(k);
		for (uint32_t j = 0; j < n; j++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			if (i % 3 == 0 || i % 5 == 0 || seed % 4 != 0)
				set_objects(&x, ids[i], &j, 1);
		}
		central_put(&x.c, ids[i], NULL);
	}
	/* frees from other processes; then a new cycle makes every span unswept */
	for (int i = 0; i < RACE_SPANS; i++) {
		if (i % 5 == 0)
			continue;
		for (uint32_t j = 0; j < nelems(k); j++) {
			if (alloc_bit(&x, ids[i], j) && (i % 3 == 0 || j % 3 == 0)) {
				free_obj(&x, ids[i], j);
				nobjs_freed++;
			}
		}
	}
	/* the objects still live in each span: a span with any must survive the sweeps */
	static uint32_t live[RACE_SPANS];
	uint32_t nempty = 0;
	for (int i = 0; i < RACE_SPANS; i++) {
		live[i] = 0;
		for (uint32_t j = 0; j < nelems(k); j++)
			live[i] += alloc_bit(&x, ids[i], j) &&
			           !((bitmap_load(&free_words(&x, ids[i])[j >> 6]) >> (j & 63)) & 1);
		nempty += live[i] == 0;
	}
	ck_assert_uint_gt(nempty, 0);
	ck_assert_uint_lt(nempty, RACE_SPANS);
	uint32_t sg = central_begin_cycle(&x.c);

	memset(&r, 0, sizeof(r));
	r.x = &x;
	r.k = k;
	pthread_t t[RACE_SWEEPERS + RACE_TAKERS];
	race_arg_t args[RACE_SWEEPERS + RACE_TAKERS];
	for (int i = 0; i < RACE_SWEEPERS; i++) {
		args[i] = (race_arg_t){ &r, i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, race_sweeper, &args[i]), 0);
	}
	for (int i = 0; i < RACE_TAKERS; i++) {
		args[RACE_SWEEPERS + i] = (race_arg_t){ &r, i };
		ck_assert_int_eq(pthread_create(&t[RACE_SWEEPERS + i], NULL, race_taker,
		                                &args[RACE_SWEEPERS + i]), 0);
	}
	atomic_store(&r.go, 1);
	for (int i = 0; i < RACE_SWEEPERS + RACE_TAKERS; i++)
		pthread_join(t[i], NULL);

	uint64_t swept = 0, spans_freed = 0, taken = 0;
	for (int i = 0; i < RACE_SWEEPERS; i++) {
		swept += r.res[i].spans;
		spans_freed += r.res[i].spans_freed;
	}
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < RACE_TAKERS; i++) {
		for (uint32_t j = 0; j < r.ntaken[i]; j++) {
			uint32_t id = r.taken[i][j];
			ck_assert_uint_lt(id, sizeof(seen));
			ck_assert_msg(!seen[id], "span %u taken twice", id);
			seen[id] = 1;
			taken++;
			ck_assert_uint_eq(span(&x, id)->list, SPANLIST_NONE);
			ck_assert_uint_eq(atomic_load(&span(&x, id)->sweepgen), sg);
		}
	}
	/* each span is in one place: taken, on a swept list, or back in the page heap */
	ck_assert_uint_eq(taken + central_count(&x.c) + spans_freed, RACE_SPANS);
	ck_assert_uint_le(swept, RACE_SPANS);
	uint64_t in_lists = 0;
	for (int i = 0; i < RACE_SPANS; i++) {
		if (freed(&x, ids[i])) {
			ck_assert_msg(live[i] == 0, "span %u freed with %u live objects", ids[i], live[i]);
			continue;
		}
		ck_assert_uint_eq(span(&x, ids[i])->allocount, live[i]);
		ck_assert(no_free_bits(&x, ids[i])); /* swept once at least, by someone */
		ck_assert_uint_eq(span(&x, ids[i])->allocount,
		                  bitmap_count_alloc(alloc_words(&x, ids[i]), nelems(k)));
		if (!seen[ids[i]]) {
			in_lists++;
			ck_assert_uint_eq(atomic_load(&span(&x, ids[i])->sweepgen), sg);
			ck_assert_uint_ne(span(&x, ids[i])->list, SPANLIST_SWEEPING);
		}
	}
	ck_assert_uint_eq(in_lists, central_count(&x.c));
	ck_assert_uint_eq(x.c.cls[k].partial[parity(sg) ^ 1].count, 0);
	ck_assert_uint_eq(x.c.cls[k].full[parity(sg) ^ 1].count, 0);
	ck_assert_uint_gt(nobjs_freed, 0);
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/* ---- freeing spans ---- */

START_TEST(test_free_span_uncharges)
{
	static centralfx_t x;
	uint32_t k = class_with(1, 2);
	cfx_open(&x, 64 * MIB);

	uint32_t a = carve(&x, k), b = carve(&x, k);
	quota_charge_span(&x.quota, a, 5, 1234);
	quota_charge_span(&x.quota, b, 5, 1234);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 5), 2 * sizeclass_npages[k]);
	ck_assert_uint_eq(span(&x, a)->charge, 6);

	central_free_span(&x.c, a);
	ck_assert(freed(&x, a));
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 5), sizeclass_npages[k]);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, 1234), sizeclass_npages[k]);

	/* the _locked variant, from inside the heap lock (a walk) */
	pageheap_enter(&x.fx.h);
	central_free_span_locked(&x.c, b);
	pageheap_leave(&x.fx.h);
	ck_assert(freed(&x, b));
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 5), 0);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, 1234), 0);
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, 0);
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/* ---- the list checker ---- */

/* 1 if the report holds a problem containing needle. */
static int reported(centralfx_t *x, const char *needle, size_t *n)
{
	static check_report_t r;
	memset(&r, 0, sizeof(r));
	central_lock_all(&x->c);
	pageheap_enter(&x->fx.h);
	*n = central_check_locked(&x->c, &r);
	pageheap_leave(&x->fx.h);
	central_unlock_all(&x->c);
	return heapfx_report_has(&r, needle);
}

#define ASSERT_REPORTED(x, needle)                                                   \
	do {                                                                             \
		size_t n_;                                                                   \
		ck_assert_msg(reported((x), (needle), &n_), "no problem \"%s\" reported (%zu others)", \
		              (needle), n_);                                                 \
		ck_assert_uint_ge(n_, 1);                                                    \
	} while (0)

static void assert_lists_clean(centralfx_t *x)
{
	size_t n;
	reported(x, "", &n);
	ck_assert_uint_eq(n, 0);
}

START_TEST(test_check_finds_corruption)
{
	static centralfx_t x;
	uint32_t k = class_with(100, 1);
	uint32_t objs[] = { 3, 4 };
	cfx_open(&x, 64 * MIB);

	/* partial list: c -> b -> a (new spans go to the head); full list: f */
	uint32_t a = put_with(&x, k, objs, 2);
	uint32_t b = put_with(&x, k, objs, 2);
	uint32_t c = put_with(&x, k, objs, 2);
	uint32_t f = put_full(&x, k);
	uint32_t p = parity(sg_now(&x));
	spanlist_t *pl = &x.c.cls[k].partial[p];
	ck_assert_uint_eq(pl->head, c);
	ck_assert_uint_eq(span(&x, c)->next, b);
	ck_assert_uint_eq(span(&x, b)->prev, c);
	assert_lists_clean(&x);

	shm_span_t saved = *span(&x, b);
	span(&x, b)->list = SPANLIST_FULL + p;
	ASSERT_REPORTED(&x, "is tagged");
	*span(&x, b) = saved;

	span(&x, b)->owner = 4;
	ASSERT_REPORTED(&x, "owned by client slot 3");
	*span(&x, b) = saved;

	span(&x, b)->sizeclass = (uint8_t)(k + 1);
	ASSERT_REPORTED(&x, "has class");
	*span(&x, b) = saved;

	span(&x, b)->state = SPAN_LARGE;
	ASSERT_REPORTED(&x, "is not a small span");
	*span(&x, b) = saved;

	span(&x, a)->prev = c;
	ASSERT_REPORTED(&x, "has prev");
	span(&x, a)->prev = b;

	span(&x, b)->next = c; /* a cycle c -> b -> c */
	ASSERT_REPORTED(&x, "longer than its count");
	*span(&x, b) = saved;

	span(&x, a)->next = x.fx.seg.hdr->npages_grown + 3;
	ASSERT_REPORTED(&x, "beyond the grown heap");
	span(&x, a)->next = HEAPD_NIL;

	pl->count++;
	ASSERT_REPORTED(&x, "count says");
	pl->count--;

	/* a span of the full list on the partial one's tag */
	span(&x, f)->list = SPANLIST_PARTIAL + p;
	ASSERT_REPORTED(&x, "full list: span");
	span(&x, f)->list = SPANLIST_FULL + p;

	assert_lists_clean(&x);

	/* the count it returns is its own, on top of what the report held */
	static check_report_t r;
	memset(&r, 0, sizeof(r));
	r.nproblems = 2;
	span(&x, b)->owner = 9;
	central_lock_all(&x.c);
	pageheap_enter(&x.fx.h);
	size_t n = central_check_locked(&x.c, &r);
	pageheap_leave(&x.fx.h);
	central_unlock_all(&x.c);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(r.nproblems, 3);
	span(&x, b)->owner = 0;
	assert_clean(&x);
	cfx_close(&x);
}
END_TEST

/* ---- the asserts: misuse aborts (where assert() is compiled in) ---- */

#ifndef NDEBUG

START_TEST(test_free_span_locked_needs_lock)
{
	static centralfx_t x;
	cfx_open(&x, 64 * MIB);
	uint32_t id = carve(&x, 1);
	central_free_span_locked(&x.c, id); /* without pageheap_enter */
}
END_TEST

START_TEST(test_check_locked_needs_lock)
{
	static centralfx_t x;
	static check_report_t r;
	cfx_open(&x, 64 * MIB);
	central_lock_all(&x.c); /* the class locks alone are not enough */
	central_check_locked(&x.c, &r);
}
END_TEST

START_TEST(test_put_of_listed_span)
{
	static centralfx_t x;
	uint32_t one = 0;
	cfx_open(&x, 64 * MIB);
	uint32_t id = put_with(&x, 1, &one, 1);
	central_put(&x.c, id, NULL); /* it is on a list already */
}
END_TEST

START_TEST(test_put_of_owned_span)
{
	static centralfx_t x;
	cfx_open(&x, 64 * MIB);
	uint32_t id = carve(&x, 1);
	span_set_owner(&x.fx.seg, id, 3); /* a client's */
	central_put(&x.c, id, NULL);
}
END_TEST

START_TEST(test_carve_class_zero)
{
	static centralfx_t x;
	uint32_t id;
	int nz;
	cfx_open(&x, 64 * MIB);
	central_carve(&x.c, 0, &id, &nz); /* class 0 is large */
}
END_TEST

START_TEST(test_take_class_out_of_range)
{
	static centralfx_t x;
	uint32_t id;
	int nz;
	cfx_open(&x, 64 * MIB);
	central_take(&x.c, SIZECLASS_COUNT, &id, &nz);
}
END_TEST
#endif

static Suite *central_suite(void)
{
	Suite *s = suite_create("central");
	TCase *tc = tcase_create("lists");
	tcase_add_unchecked_fixture(tc, heapfx_rundir_make, heapfx_rundir_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_carve);
	tcase_add_test(tc, test_carve_until_full);
	tcase_add_test(tc, test_put_files_by_state);
	tcase_add_test(tc, test_take);
	tcase_add_test(tc, test_take_bounded);
	tcase_add_test(tc, test_sweep_class);
	tcase_add_test(tc, test_race_take_and_sweep);
	tcase_add_test(tc, test_free_span_uncharges);
	tcase_add_test(tc, test_check_finds_corruption);
	suite_add_tcase(s, tc);

#ifndef NDEBUG
	tc = tcase_create("asserts");
	tcase_add_unchecked_fixture(tc, heapfx_rundir_make, heapfx_rundir_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test_raise_signal(tc, test_free_span_locked_needs_lock, SIGABRT);
	tcase_add_test_raise_signal(tc, test_check_locked_needs_lock, SIGABRT);
	tcase_add_test_raise_signal(tc, test_put_of_listed_span, SIGABRT);
	tcase_add_test_raise_signal(tc, test_put_of_owned_span, SIGABRT);
	tcase_add_test_raise_signal(tc, test_carve_class_zero, SIGABRT);
	tcase_add_test_raise_signal(tc, test_take_class_out_of_range, SIGABRT);
	suite_add_tcase(s, tc);
#else
	fprintf(stderr, "test_central: built without assert(); the assert cases are left out\n");
#endif
	return s;
}

TEST_SUITES(central_suite);
