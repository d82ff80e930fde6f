// SPDX-License-Identifier: MIT
/*
 * test_large.c - large objects (daemon/large.c) on a real segment, page
 * heap, quota books and client table in a temporary arena: sizes in pages,
 * alignment, zeroing, generations, LargeFree with a stale or wrong
 * generation, twice, or for what is not a live large object, the pending
 * object of a slot whose reply may have been lost (settled either way), the
 * sweep of large objects whose LargeFree never came, and the charges.
 *
 * A free from a client process is its free bit, set with bitmap_mark_free
 * as hc_free does before it sends LargeFree.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "central.h"
#include "clock.h"
#include "clients.h"
#include "large.h"
#include "log.h"
#include "harness/heapfx.h"
#include "quota.h"
#include "sizeclass.h"

typedef struct largefx {
	heapfx_t fx;
	quota_t quota;
	central_t c;
	clients_t cl;
} largefx_t;

#define UID 4242u

static void lfx_open(largefx_t *x, uint64_t arena_bytes)
{
	log_set_quiet(1);
	heapfx_open(&x->fx, arena_bytes, 64);
	ck_assert_int_eq(quota_init(&x->quota, &x->fx.seg, x->fx.seg.hdr->max_clients, 0, 0), 0);
	ck_assert_int_eq(central_init(&x->c, &x->fx.seg, &x->fx.h, &x->quota), 0);
	ck_assert_int_eq(clients_init(&x->cl, &x->fx.seg, 0, 0), 0);
}

static void lfx_close(largefx_t *x)
{
	clients_destroy(&x->cl);
	central_destroy(&x->c);
	quota_destroy(&x->quota);
	heapfx_close(&x->fx);
}

static shm_span_t *span(largefx_t *x, uint32_t id)
{
	return &x->fx.seg.spans[id];
}

/* A large object of npages for slot (HEAPD_NIL: nobody); asserts success. */
static uint32_t alloc(largefx_t *x, uint32_t slot, uint32_t npages, uint32_t align, int zero,
                      int *zeroed, uint32_t *gen)
{
	uint32_t id, g;
	int z;
	int rc = large_alloc(&x->c, &x->cl, slot, UID, npages, align, zero, &id, &z, &g);
	ck_assert_msg(rc == 0, "large_alloc of %u pages: %d", npages, rc);
	if (zeroed)
		*zeroed = z;
	if (gen)
		*gen = g;
	return id;
}

/* What hc_free does to a large object before its LargeFree. */
static void mark_free(largefx_t *x, uint32_t id)
{
	ck_assert_int_eq(bitmap_mark_free(segment_allocbits(&x->fx.seg, id),
	                                  segment_freebits(&x->fx.seg, id, 1), 0), BITMAP_FREED);
}

static int is_object(largefx_t *x, uint32_t id)
{
	return span(x, id)->state == SPAN_LARGE && span(x, id)->start == id &&
	       (bitmap_load(segment_allocbits(&x->fx.seg, id)) & 1);
}

static int freed(largefx_t *x, uint32_t id)
{
	return span(x, id)->state == SPAN_FREE || span(x, id)->start != id ||
	       span(x, id)->state == SPAN_DEAD;
}

static void assert_clean(largefx_t *x)
{
	check_report_t rep;
	size_t n = heapfx_check(&x->fx, &x->fx.h, &rep);
	if (n)
		heapfx_print(&rep);
	ck_assert_msg(n == 0, "%zu problems", n);
}

START_TEST(test_pages_for)
{
	ck_assert_uint_eq(large_pages_for(1), 1);
	ck_assert_uint_eq(large_pages_for(HEAPD_MAX_SMALL + 1), HEAPD_MAX_SMALL / HEAPD_PAGE_SIZE + 1);
	ck_assert_uint_eq(large_pages_for(HEAPD_PAGE_SIZE), 1);
	ck_assert_uint_eq(large_pages_for(HEAPD_PAGE_SIZE + 1), 2);
	ck_assert_uint_eq(large_pages_for(7 * HEAPD_PAGE_SIZE), 7);
	ck_assert_uint_eq(large_pages_for(7 * HEAPD_PAGE_SIZE - 1), 7);
	/* the largest page count there is, and one byte more than it holds */
	uint64_t max = (uint64_t)HEAPD_MAX_PAGES << HEAPD_PAGE_SHIFT;
	ck_assert_uint_eq(large_pages_for(max), HEAPD_MAX_PAGES);
	ck_assert_uint_eq(large_pages_for(max - HEAPD_PAGE_SIZE + 1), HEAPD_MAX_PAGES);
	ck_assert_uint_eq(large_pages_for(max + 1), 0);
	/* no wrap-around near the top of the range */
	ck_assert_uint_eq(large_pages_for(UINT64_MAX), 0);
	ck_assert_uint_eq(large_pages_for(UINT64_MAX - HEAPD_PAGE_SIZE), 0);
	ck_assert_uint_eq(large_pages_for((uint64_t)UINT32_MAX << HEAPD_PAGE_SHIFT), 0);
}
END_TEST

START_TEST(test_alloc)
{
	static largefx_t x;
	uint32_t gen;
	int zeroed = 0;
	lfx_open(&x, 64 * MIB);

	uint32_t id = alloc(&x, HEAPD_NIL, 5, 1, 0, &zeroed, &gen);
	const shm_span_t *s = span(&x, id);
	ck_assert(is_object(&x, id));
	ck_assert_uint_eq(s->npages, 5);
	ck_assert_uint_eq(s->sizeclass, 0);
	ck_assert_uint_eq(s->owner, 0);  /* nobody's reply to wait for */
	ck_assert_uint_eq(s->charge, 0); /* charged to nobody */
	ck_assert_uint_eq(s->gen, gen);
	ck_assert_uint_eq(bitmap_load(segment_freebits(&x.fx.seg, id, 1)), 0);
	ck_assert_int_eq(zeroed, 1); /* fresh pages read as zero even unasked */
	for (uint32_t p = id; p < id + 5; p++)
		ck_assert_uint_eq(x.fx.seg.pagemap[p], heapd_pagemap_entry(id, 0));
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, 5);

	/* a second one does not overlap the first */
	uint32_t b = alloc(&x, HEAPD_NIL, 300, 1, 0, NULL, NULL);
	ck_assert(b >= id + 5 || b + 300 <= id);
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, 305);
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

/* Dirty pages are zeroed when asked, and only said to be zero when they are. */
START_TEST(test_alloc_zero)
{
	static largefx_t x;
	int zeroed;
	lfx_open(&x, 64 * MIB);

	uint32_t keep = alloc(&x, HEAPD_NIL, 1, 1, 0, NULL, NULL); /* keeps the hole in place */
	uint32_t a = alloc(&x, HEAPD_NIL, 4, 1, 0, NULL, NULL);
	alloc(&x, HEAPD_NIL, 1, 1, 0, NULL, NULL);
	(void)keep;
	uint8_t *p = segment_page_addr(&x.fx.seg, a);
	memset(p, 0xab, 4 * HEAPD_PAGE_SIZE);
	central_free_span(&x.c, a);

	/* the same pages again, not zeroed: the reply must not claim they are */
	uint32_t b = alloc(&x, HEAPD_NIL, 4, 1, 0, &zeroed, NULL);
	ck_assert_uint_eq(b, a);
	ck_assert_int_eq(zeroed, 0);
	central_free_span(&x.c, b);

	/* and zeroed, all of them */
	uint32_t c = alloc(&x, HEAPD_NIL, 4, 1, 1, &zeroed, NULL);
	ck_assert_uint_eq(c, a);
	ck_assert_int_eq(zeroed, 1);
	for (size_t i = 0; i < 4 * HEAPD_PAGE_SIZE; i++)
		ck_assert_msg(p[i] == 0, "byte %zu of the object is %#x", i, p[i]);
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

START_TEST(test_alloc_aligned)
{
	static largefx_t x;
	lfx_open(&x, 64 * MIB);
	uint64_t pages_off = x.fx.seg.hdr->pages_off;

	for (uint32_t align = 2; align <= 256; align *= 4) {
		alloc(&x, HEAPD_NIL, 1, 1, 0, NULL, NULL); /* so the next fit is misaligned */
		uint32_t id = alloc(&x, HEAPD_NIL, 3, align, 0, NULL, NULL);
		uint64_t off = pages_off + ((uint64_t)id << HEAPD_PAGE_SHIFT);
		ck_assert_msg(off % ((uint64_t)align << HEAPD_PAGE_SHIFT) == 0,
		              "object at arena offset %#llx, asked for %u pages' alignment",
		              (unsigned long long)off, align);
		ck_assert_uint_eq(span(&x, id)->npages, 3); /* the slack went back to the heap */
	}
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

START_TEST(test_alloc_full)
{
	static largefx_t x;
	uint32_t id, gen;
	int zeroed;
	lfx_open(&x, 4 * MIB);
	uint32_t max = x.fx.seg.npages_max;

	alloc(&x, HEAPD_NIL, max - 3, 1, 0, NULL, NULL);
	pageheap_counts_t before, after;
	pageheap_counts(&x.fx.h, &before);
	ck_assert_int_eq(large_alloc(&x.c, &x.cl, 2, UID, 4, 1, 0, &id, &zeroed, &gen), -ENOMEM);
	pageheap_counts(&x.fx.h, &after);
	heapfx_assert_same_counts(&before, &after);
	ck_assert_uint_eq(x.cl.slots[2].pending_large, 0); /* nothing pending, nothing charged */
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 2), 0);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, UID), 0);
	alloc(&x, 2, 3, 1, 0, NULL, NULL); /* what is left still serves */
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

/* ---- LargeFree and generations ---- */

START_TEST(test_free_generation)
{
	static largefx_t x;
	uint32_t gen, gen2;
	lfx_open(&x, 64 * MIB);

	uint32_t id = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, &gen);
	alloc(&x, HEAPD_NIL, 1, 1, 0, NULL, NULL); /* a neighbour, so the pages come back as they were */

	/* the bit is not set: refused, whatever the generation */
	ck_assert_int_eq(large_free(&x.c, id, gen), -EPERM);
	ck_assert(is_object(&x, id));
	mark_free(&x, id);
	/* another generation: a LargeFree for something else, ignored */
	ck_assert_int_eq(large_free(&x.c, id, gen - 1), -ESTALE);
	ck_assert_int_eq(large_free(&x.c, id, gen + 1), -ESTALE);
	ck_assert(is_object(&x, id));
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, 3);

	ck_assert_int_eq(large_free(&x.c, id, gen), 0);
	ck_assert(freed(&x, id));
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, 1);
	/* twice: the second finds nothing of that generation */
	ck_assert_int_eq(large_free(&x.c, id, gen), -ESTALE);
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, 1);

	/* the span reused for a new object: a late LargeFree for the old one leaves it alone */
	uint32_t again = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, &gen2);
	ck_assert_uint_eq(again, id);
	ck_assert_uint_ne(gen2, gen);
	mark_free(&x, again); /* even with its bit set */
	ck_assert_int_eq(large_free(&x.c, id, gen), -ESTALE);
	ck_assert(is_object(&x, again));
	ck_assert_int_eq(large_free(&x.c, again, gen2), 0);

	/* generations of one span only grow: every old one stays stale */
	uint32_t last = gen2;
	for (int i = 0; i < 5; i++) {
		uint32_t g;
		uint32_t r = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, &g);
		ck_assert_uint_eq(r, id);
		ck_assert_uint_gt(g, last);
		mark_free(&x, r);
		ck_assert_int_eq(large_free(&x.c, r, last), -ESTALE);
		ck_assert_int_eq(large_free(&x.c, r, g), 0);
		last = g;
	}
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

/* A LargeFree naming anything but a live large object changes nothing. */
START_TEST(test_free_not_large)
{
	static largefx_t x;
	uint32_t gen, small;
	int nz;
	lfx_open(&x, 64 * MIB);

	uint32_t id = alloc(&x, HEAPD_NIL, 4, 1, 0, NULL, &gen);
	mark_free(&x, id);
	ck_assert_int_eq(central_carve(&x.c, 3, &small, &nz), 0);
	uint32_t grown = x.fx.seg.hdr->npages_grown;
	uint64_t inuse = x.fx.seg.hdr->pages_inuse;

	ck_assert_int_eq(large_free(&x.c, id + 1, gen), -ESTALE);        /* inside it */
	ck_assert_int_eq(large_free(&x.c, small, x.fx.seg.spans[small].gen), -ESTALE);
	ck_assert_int_eq(large_free(&x.c, grown - 1, 0), -ESTALE);       /* free pages */
	ck_assert_int_eq(large_free(&x.c, grown, 0), -ESTALE);           /* beyond the heap */
	ck_assert_int_eq(large_free(&x.c, x.fx.seg.npages_max, 0), -ESTALE);
	ck_assert_int_eq(large_free(&x.c, HEAPD_NIL, 0), -ESTALE);
	ck_assert_uint_eq(x.fx.seg.hdr->pages_inuse, inuse);
	ck_assert_uint_eq(span(&x, small)->state, SPAN_SMALL);

	/* a large span whose object is not made yet (its alloc bit is still clear) */
	uint32_t bare;
	ck_assert_int_eq(pageheap_alloc(&x.fx.h, 2, 1, &bare), 0);
	bitmap_store(segment_freebits(&x.fx.seg, bare, 1), 1);
	ck_assert_int_eq(large_free(&x.c, bare, span(&x, bare)->gen), -EPERM);
	ck_assert_uint_eq(span(&x, bare)->state, SPAN_LARGE);
	bitmap_store(segment_freebits(&x.fx.seg, bare, 1), 0);

	ck_assert_int_eq(large_free(&x.c, id, gen), 0);
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

/* ---- pending objects and charges ---- */

START_TEST(test_pending_settle)
{
	static largefx_t x;
	uint32_t gen;
	lfx_open(&x, 64 * MIB);
	const uint32_t slot = 3;

	/* allocated for a slot: charged, and pending until the reply is known to have arrived */
	uint32_t a = alloc(&x, slot, 6, 1, 0, NULL, &gen);
	ck_assert_uint_eq(span(&x, a)->owner, slot + 1);
	ck_assert_uint_eq(x.cl.slots[slot].pending_large, a + 1);
	ck_assert_uint_eq(span(&x, a)->charge, slot + 1);
	ck_assert_uint_eq(span(&x, a)->charge_uid, UID);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, slot), 6);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, UID), 6);
	ck_assert_uint_eq(span(&x, a)->gen, gen);

	/* received: the client's like any object; still charged */
	large_settle(&x.c, &x.cl, slot, 1);
	ck_assert_uint_eq(span(&x, a)->owner, 0);
	ck_assert_uint_eq(x.cl.slots[slot].pending_large, 0);
	ck_assert(is_object(&x, a));
	ck_assert_uint_eq(quota_slot_pages(&x.quota, slot), 6);
	/* settling with nothing pending changes nothing */
	large_settle(&x.c, &x.cl, slot, 0);
	ck_assert(is_object(&x, a));

	/* lost: freed and uncharged */
	uint32_t b = alloc(&x, slot, 2, 1, 0, NULL, NULL);
	ck_assert_uint_eq(x.cl.slots[slot].pending_large, b + 1);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, slot), 8);
	large_settle(&x.c, &x.cl, slot, 0);
	ck_assert(freed(&x, b));
	ck_assert_uint_eq(x.cl.slots[slot].pending_large, 0);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, slot), 6);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, UID), 6);

	/* freed meanwhile (its LargeFree came) and the pages now another slot's: left alone */
	uint32_t c = alloc(&x, slot, 2, 1, 0, NULL, &gen);
	mark_free(&x, c);
	ck_assert_int_eq(large_free(&x.c, c, gen), 0);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, slot), 6);
	uint32_t d = alloc(&x, 5, 2, 1, 0, NULL, NULL);
	ck_assert_uint_eq(d, c);
	large_settle(&x.c, &x.cl, slot, 0);
	ck_assert(is_object(&x, d));
	ck_assert_uint_eq(span(&x, d)->owner, 5 + 1);
	ck_assert_uint_eq(x.cl.slots[5].pending_large, d + 1);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 5), 2);
	large_settle(&x.c, &x.cl, 5, 1);

	/* and the pages become a small span the same slot holds meanwhile: left alone too */
	uint32_t e = alloc(&x, slot, 1, 1, 0, NULL, &gen);
	mark_free(&x, e);
	ck_assert_int_eq(large_free(&x.c, e, gen), 0);
	uint32_t small;
	int nz;
	ck_assert_int_eq(central_carve(&x.c, 1, &small, &nz), 0);
	ck_assert_uint_eq(small, e);
	clients_own(&x.cl, slot, small);
	ck_assert_uint_eq(span(&x, small)->owner, slot + 1);
	large_settle(&x.c, &x.cl, slot, 0);
	ck_assert_uint_eq(span(&x, small)->state, SPAN_SMALL);
	ck_assert_uint_eq(span(&x, small)->owner, slot + 1);
	ck_assert_uint_eq(x.cl.slots[slot].pending_large, 0);
	clients_disown(&x.cl, slot, small);

	/* a pending object freed by LargeFree before it settles is uncharged once */
	uint32_t f = alloc(&x, slot, 3, 1, 0, NULL, &gen);
	mark_free(&x, f);
	ck_assert_int_eq(large_free(&x.c, f, gen), 0);
	large_settle(&x.c, &x.cl, slot, 1);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, slot), 6);
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

/* ---- the sweep of lost LargeFrees ---- */

START_TEST(test_sweep)
{
	static largefx_t x;
	uint32_t gen;
	lfx_open(&x, 64 * MIB);

	uint32_t a = alloc(&x, 1, 3, 1, 0, NULL, NULL);         /* freed, LargeFree lost */
	large_settle(&x.c, &x.cl, 1, 1);
	uint32_t b = alloc(&x, 1, 5, 1, 0, NULL, NULL);         /* live */
	large_settle(&x.c, &x.cl, 1, 1);
	uint32_t c = alloc(&x, 2, 7, 1, 0, NULL, NULL);         /* pending and freed */
	uint32_t bare;                                          /* no object yet */
	ck_assert_int_eq(pageheap_alloc(&x.fx.h, 2, 1, &bare), 0);
	bitmap_store(segment_freebits(&x.fx.seg, bare, 1), 1);
	uint32_t small;
	int nz;
	ck_assert_int_eq(central_carve(&x.c, 5, &small, &nz), 0);
	bitmap_store(segment_allocbits(&x.fx.seg, small), 1);  /* a small object, freed */
	bitmap_store(segment_freebits(&x.fx.seg, small, sizeclass_nelems[5]), 1);
	mark_free(&x, a);
	mark_free(&x, c);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, UID), 15);

	uint64_t pages = 100; /* added to, not overwritten */
	ck_assert_uint_eq(large_sweep(&x.c, 0, &pages), 2);
	ck_assert_uint_eq(pages, 110);
	ck_assert(freed(&x, a));
	ck_assert(freed(&x, c));
	ck_assert(is_object(&x, b));
	ck_assert_uint_eq(span(&x, bare)->state, SPAN_LARGE);
	ck_assert_uint_eq(span(&x, small)->state, SPAN_SMALL);
	ck_assert_uint_eq(bitmap_load(segment_allocbits(&x.fx.seg, small)), 1); /* not its to fold */
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 1), 5);
	ck_assert_uint_eq(quota_slot_pages(&x.quota, 2), 0);
	ck_assert_uint_eq(quota_uid_pages(&x.quota, UID), 5);
	ck_assert_uint_eq(large_sweep(&x.c, 0, NULL), 0);

	/* a LargeFree that comes after the sweep freed the object finds nothing */
	ck_assert_int_eq(large_free(&x.c, a, span(&x, a)->gen), -ESTALE);
	bitmap_store(segment_freebits(&x.fx.seg, bare, 1), 0);
	pageheap_free(&x.fx.h, bare);
	bitmap_store(segment_freebits(&x.fx.seg, small, sizeclass_nelems[5]), 0);
	bitmap_store(segment_allocbits(&x.fx.seg, small), 0);
	(void)gen;
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

/*
 * With a grace period, an object is first only noted as freed (its LargeFree
 * may be on the way); it is freed by a sweep once that long has passed since
 * it was first seen.
 */
START_TEST(test_sweep_grace)
{
	static largefx_t x;
	uint32_t gen;
	lfx_open(&x, 64 * MIB);

	uint32_t a = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, &gen);
	uint32_t b = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, NULL);
	mark_free(&x, a);
	ck_assert_uint_eq(span(&x, a)->unusedsince, 0);
	ck_assert_uint_eq(large_sweep(&x.c, LARGE_FREE_GRACE_NS, NULL), 0);
	uint64_t seen = span(&x, a)->unusedsince;
	ck_assert_uint_ne(seen, 0);
	ck_assert(is_object(&x, a));
	ck_assert_uint_eq(span(&x, b)->unusedsince, 0); /* only freed objects are noted */
	ck_assert_uint_eq(large_sweep(&x.c, LARGE_FREE_GRACE_NS, NULL), 0);
	ck_assert_uint_eq(span(&x, a)->unusedsince, seen); /* first seen stays first seen */

	/* its LargeFree arrives within the grace: freed by it, as normal */
	ck_assert_int_eq(large_free(&x.c, a, gen), 0);

	/* a short grace: freed by the first sweep that comes after it has passed */
	uint32_t c = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, NULL);
	mark_free(&x, c);
	ck_assert_uint_eq(large_sweep(&x.c, 1000, NULL), 0);
	ck_assert(is_object(&x, c));
	uint64_t t0 = span(&x, c)->unusedsince;
	while (heapd_now_ns() < t0 + 1000)
		; /* the grace has passed since it was first seen */
	ck_assert_uint_eq(large_sweep(&x.c, 1000, NULL), 1);
	ck_assert(freed(&x, c));

	/* an object reused after a sweep noted its predecessor starts unnoted */
	uint32_t d = alloc(&x, HEAPD_NIL, 2, 1, 0, NULL, NULL);
	ck_assert_uint_eq(span(&x, d)->unusedsince, 0);
	assert_clean(&x);
	lfx_close(&x);
}
END_TEST

static Suite *large_suite(void)
{
	Suite *s = suite_create("large");
	TCase *tc = tcase_create("large");
	tcase_add_unchecked_fixture(tc, heapfx_rundir_make, heapfx_rundir_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_pages_for);
	tcase_add_test(tc, test_alloc);
	tcase_add_test(tc, test_alloc_zero);
	tcase_add_test(tc, test_alloc_aligned);
	tcase_add_test(tc, test_alloc_full);
	tcase_add_test(tc, test_free_generation);
	tcase_add_test(tc, test_free_not_large);
	tcase_add_test(tc, test_pending_settle);
	tcase_add_test(tc, test_sweep);
	tcase_add_test(tc, test_sweep_grace);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(large_suite);
