// SPDX-License-Identifier: MIT
/*
 * test_pageheap.c - the page heap: allocation, split and coalesce, best fit,
 * growth up to the reservation, release, aligned allocation, rebuild after a
 * restart and its repairs, and a randomized differential test against a
 * reference model of the heap's pages.
 *
 * The randomized test runs fixed seeds plus $HEAPD_SEED when set; a failure
 * names the seed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "clock.h"
#include "sizeclass.h"
#include "harness/heapfx.h"

static uint32_t span_end(heapfx_t *fx, uint32_t id)
{
	return id + heapfx_span(fx, id)->npages;
}

static void free_span(heapfx_t *fx, uint32_t id)
{
	pageheap_free(&fx->h, id);
}

START_TEST(test_alloc_free)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 64);
	shm_header_t *hdr = fx.seg.hdr;
	ck_assert_uint_eq(hdr->npages_grown, 0);
	heapfx_assert_clean(&fx);

	uint32_t a = heapfx_alloc(&fx, 1);
	ck_assert_uint_eq(a, 0);
	ck_assert_uint_eq(hdr->npages_grown, 64);
	shm_span_t *s = heapfx_span(&fx, a);
	ck_assert_uint_eq(s->state, SPAN_LARGE);
	ck_assert_uint_eq(s->start, 0);
	ck_assert_uint_eq(s->npages, 1);
	ck_assert_uint_eq(s->sizeclass, 0);
	ck_assert_uint_eq(s->owner, 0);
	ck_assert_uint_eq(bitmap_load(segment_allocbits(&fx.seg, a)), 0); /* no object yet */
	ck_assert_uint_eq(s->needzero, 0); /* fresh pages of a sparse file */
	ck_assert_uint_eq(segment_pagemap_span(&fx.seg, 0), 0);
	ck_assert_uint_eq(hdr->pages_inuse, 1);
	ck_assert_uint_eq(hdr->pages_free, 63);
	heapfx_assert_clean(&fx);

	uint32_t b = heapfx_alloc(&fx, 5);
	ck_assert_uint_eq(b, 1);
	for (uint32_t p = b; p < b + 5; p++)
		ck_assert_uint_eq(segment_pagemap_span(&fx.seg, p), b);
	ck_assert_uint_eq(hdr->pages_inuse, 6);
	heapfx_assert_clean(&fx);

	free_span(&fx, a);
	ck_assert_uint_eq(heapfx_span(&fx, a)->state, SPAN_FREE);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 1);
	ck_assert_uint_ne(heapfx_span(&fx, a)->unusedsince, 0);
	ck_assert_uint_eq(hdr->pages_inuse, 5);
	ck_assert_uint_eq(hdr->pages_free, 59);
	heapfx_assert_clean(&fx);

	/* the used page comes back first (list of 1 page) and may be dirty */
	ck_assert_uint_eq(heapfx_alloc(&fx, 1), a);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 1);
	free_span(&fx, a);
	free_span(&fx, b);
	ck_assert_uint_eq(hdr->pages_inuse, 0);
	ck_assert_uint_eq(hdr->pages_free, 64);
	ck_assert_uint_eq(heapfx_span(&fx, 0)->npages, 64);
	heapfx_assert_clean(&fx);

	uint32_t x;
	ck_assert_int_eq(pageheap_alloc(&fx.h, 0, 1, &x), -EINVAL);
	heapfx_close(&fx);
}
END_TEST

/*
 * A small span's pages keep no class once it is freed: otherwise a double
 * free of an object on an inner page, which the fast path resolves by the
 * page map alone, would land in the bitmaps of the next span carved there
 * (span_make_free, layout.h).
 */
START_TEST(test_free_clears_classes)
{
	heapfx_t fx;
	uint32_t big = 0, one = 0, a, b;
	int needzero;

	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++) {
		if (!big && sizeclass_npages[k] >= 4)
			big = k;
		if (!one && sizeclass_npages[k] == 1)
			one = k;
	}
	ck_assert(big && one);
	heapfx_open(&fx, 64 * MIB, 64);
	ck_assert_int_eq(pageheap_alloc_small(&fx.h, big, &a, &needzero), 0);
	uint32_t n = heapfx_span(&fx, a)->npages;
	pageheap_free(&fx.h, a);
	for (uint32_t p = a; p < a + n; p++)
		ck_assert_msg(heapd_pagemap_class(fx.seg.pagemap[p]) == 0,
		              "page %u of the freed span keeps class %u", p,
		              heapd_pagemap_class(fx.seg.pagemap[p]));
	/* a one-page span where the big one began: the pages after it stay classless */
	ck_assert_int_eq(pageheap_alloc_small(&fx.h, one, &b, &needzero), 0);
	ck_assert_uint_eq(b, a);
	for (uint32_t p = b + 1; p < a + n; p++)
		ck_assert_uint_eq(heapd_pagemap_class(fx.seg.pagemap[p]), 0);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_split_coalesce)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 1024);
	shm_header_t *hdr = fx.seg.hdr;
	uint32_t a = heapfx_alloc(&fx, 10), b = heapfx_alloc(&fx, 10), c = heapfx_alloc(&fx, 10);
	uint32_t d = heapfx_alloc(&fx, 10), e = heapfx_alloc(&fx, 10);
	ck_assert_uint_eq(b, a + 10);
	ck_assert_uint_eq(c, b + 10);
	ck_assert_uint_eq(d, c + 10);
	/* the remainder is one free span after e */
	uint32_t tail = span_end(&fx, e);
	ck_assert_uint_eq(heapfx_span(&fx, tail)->state, SPAN_FREE);
	ck_assert_uint_eq(heapfx_span(&fx, tail)->npages, 1024 - 50);

	/* free a and c: no free neighbours, nothing merges */
	free_span(&fx, a);
	free_span(&fx, c);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npages, 10);
	ck_assert_uint_eq(heapfx_span(&fx, c)->npages, 10);
	heapfx_assert_clean(&fx);

	/* b joins both neighbours: a survives, b and c die */
	free_span(&fx, b);
	ck_assert_uint_eq(heapfx_span(&fx, a)->state, SPAN_FREE);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npages, 30);
	ck_assert_uint_eq(heapfx_span(&fx, b)->state, SPAN_DEAD);
	ck_assert_uint_eq(heapfx_span(&fx, c)->state, SPAN_DEAD);
	ck_assert_uint_eq(segment_pagemap_span(&fx.seg, a + 29), a);
	ck_assert_uint_eq(hdr->pages_inuse, 20);
	ck_assert_uint_eq(hdr->pages_free, 1004);
	heapfx_assert_clean(&fx);

	/* only the predecessor: free d next to the 30-page span */
	free_span(&fx, d);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npages, 40);
	ck_assert_uint_eq(heapfx_span(&fx, d)->state, SPAN_DEAD);
	heapfx_assert_clean(&fx);

	/* an exact fit splits nothing */
	uint32_t f = heapfx_alloc(&fx, 40);
	ck_assert_uint_eq(f, a);
	ck_assert_uint_eq(heapfx_span(&fx, f)->npages, 40);
	ck_assert_uint_eq(heapfx_span(&fx, f)->needzero, 1);
	heapfx_assert_clean(&fx);

	/* only the successor: e joins the tail */
	free_span(&fx, e);
	ck_assert_uint_eq(heapfx_span(&fx, e)->npages, 1024 - 40);
	ck_assert_uint_eq(heapfx_span(&fx, tail)->state, SPAN_DEAD);
	ck_assert_uint_eq(heapfx_span(&fx, e)->needzero, 1); /* ORed with the clean tail */
	heapfx_assert_clean(&fx);

	/* a split's tail inherits needzero and unusedsince */
	uint64_t since = heapfx_span(&fx, e)->unusedsince;
	uint32_t g = heapfx_alloc(&fx, 200);
	ck_assert_uint_eq(g, e);
	ck_assert_uint_eq(heapfx_span(&fx, g)->needzero, 1);
	ck_assert_uint_eq(heapfx_span(&fx, e + 200)->state, SPAN_FREE);
	ck_assert_uint_eq(heapfx_span(&fx, e + 200)->needzero, 1);
	ck_assert_uint_eq(heapfx_span(&fx, e + 200)->unusedsince, since);
	heapfx_assert_clean(&fx);

	free_span(&fx, g);
	free_span(&fx, f);
	ck_assert_uint_eq(heapfx_span(&fx, 0)->npages, 1024);
	ck_assert_uint_eq(hdr->pages_inuse, 0);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

/* Allocate spans of the given lengths back to back, from page 0. */
static void carve_row(heapfx_t *fx, const uint32_t *lens, uint32_t n, uint32_t *ids)
{
	for (uint32_t i = 0; i < n; i++) {
		ids[i] = heapfx_alloc(fx, lens[i]);
		if (i)
			ck_assert_uint_eq(ids[i], ids[i - 1] + lens[i - 1]);
	}
}

/* Carve a row of eight spans of lens[] into id[], then free the four that order[] names, in that order. */
static void row_with_holes(heapfx_t *fx, const uint32_t lens[8], const int order[4], uint32_t id[8])
{
	carve_row(fx, lens, 8, id);
	for (int i = 0; i < 4; i++)
		free_span(fx, id[order[i]]);
	heapfx_assert_clean(fx);
}

/* An allocation of npages that must land offset pages into the hole left by span id[hole]. */
typedef struct fit {
	uint32_t npages;
	int hole;
	uint32_t offset;
} fit_t;

static void expect_fits(heapfx_t *fx, const uint32_t id[8], const fit_t *fits, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t got = heapfx_alloc(fx, fits[i].npages);
		ck_assert_msg(got == id[fits[i].hole] + fits[i].offset, "%u pages went to page %u, not %u",
		              fits[i].npages, got, id[fits[i].hole] + fits[i].offset);
	}
	heapfx_assert_clean(fx);
}

START_TEST(test_best_fit)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 2048);
	/* free 400 at a low address, 250 above it, a big tail above both */
	const uint32_t lens[] = { 400, 1, 250, 1, 5, 1, 3, 1 };
	const int holes[] = { 0, 2, 4, 6 };
	const fit_t fits[] = {
		{ 200, 2, 0 }, /* 250 beats 400 and the tail */
		{ 300, 0, 0 }, /* 400 beats the tail */
		{ 2, 6, 0 },   /* 3 beats 5 */
		{ 4, 4, 0 },
		/* leftovers: 50 after id[2], 100 after id[0], 1 after id[6], 1 after id[4] */
		{ 60, 0, 300 },
		{ 50, 2, 200 },
	};
	uint32_t id[8];
	row_with_holes(&fx, lens, holes, id);
	expect_fits(&fx, id, fits, sizeof(fits) / sizeof(fits[0]));
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_lowest_address_among_equals)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 4096);
	const uint32_t lens[] = { 200, 1, 200, 1, 200, 1, 200, 1 };
	/* freed in an order that is neither ascending nor descending */
	const int holes[] = { 4, 0, 6, 2 };
	const fit_t fits[] = { { 150, 0, 0 }, { 150, 2, 0 }, { 200, 4, 0 }, { 128, 6, 0 } };
	uint32_t id[8];
	row_with_holes(&fx, lens, holes, id);
	expect_fits(&fx, id, fits, sizeof(fits) / sizeof(fits[0]));
	heapfx_close(&fx);
}
END_TEST

/* A copy of everything the heap owns, to prove a failed call changed nothing. */
typedef struct snapshot {
	shm_header_t hdr;
	uint64_t *pagemap;
	shm_span_t *spans;
	uint32_t free[HEAPD_MAX_LIST];
	uint32_t large;
} snapshot_t;

static void snap_take(heapfx_t *fx, snapshot_t *s)
{
	size_t n = fx->seg.npages_max;
	s->hdr = *fx->seg.hdr;
	s->pagemap = malloc(n * sizeof(uint64_t));
	s->spans = malloc(n * sizeof(shm_span_t));
	ck_assert(s->pagemap && s->spans);
	memcpy(s->pagemap, fx->seg.pagemap, n * sizeof(uint64_t));
	memcpy(s->spans, fx->seg.spans, n * sizeof(shm_span_t));
	memcpy(s->free, fx->h.free, sizeof(s->free));
	s->large = fx->h.large;
}

static void snap_assert_same(heapfx_t *fx, snapshot_t *s)
{
	size_t n = fx->seg.npages_max;
	ck_assert(memcmp(&s->hdr, fx->seg.hdr, sizeof(s->hdr)) == 0);
	ck_assert(memcmp(s->pagemap, fx->seg.pagemap, n * sizeof(uint64_t)) == 0);
	ck_assert(memcmp(s->spans, fx->seg.spans, n * sizeof(shm_span_t)) == 0);
	ck_assert(memcmp(s->free, fx->h.free, sizeof(s->free)) == 0);
	ck_assert_uint_eq(s->large, fx->h.large);
	free(s->pagemap);
	free(s->spans);
}

START_TEST(test_grow_to_limit)
{
	heapfx_t fx;
	uint32_t x;
	snapshot_t snap;
	heapfx_open(&fx, 8 * MIB, 512); /* 1024 pages */
	shm_header_t *hdr = fx.seg.hdr;
	ck_assert_uint_eq(fx.seg.npages_max, 1024);

	uint32_t a = heapfx_alloc(&fx, 400);
	ck_assert_uint_eq(hdr->npages_grown, 512);
	/* 112 free pages end the heap; 488 more are enough and 512 remain */
	uint32_t b = heapfx_alloc(&fx, 600);
	ck_assert_uint_eq(b, a + 400);
	ck_assert_uint_eq(hdr->npages_grown, 1024);
	ck_assert_uint_eq(hdr->pages_free, 24);
	heapfx_assert_clean(&fx);

	snap_take(&fx, &snap);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 25, 1, &x), -ENOMEM);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 5000, 1, &x), -ENOMEM);
	ck_assert_int_eq(pageheap_alloc(&fx.h, UINT32_MAX, 1, &x), -ENOMEM);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 20, 8, &x), -ENOMEM);
	snap_assert_same(&fx, &snap);
	heapfx_assert_clean(&fx);

	uint32_t c = heapfx_alloc(&fx, 24);
	ck_assert_uint_eq(c, 1000);
	ck_assert_uint_eq(hdr->pages_free, 0);
	snap_take(&fx, &snap);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 1, 1, &x), -ENOMEM);
	snap_assert_same(&fx, &snap);
	heapfx_assert_clean(&fx);

	free_span(&fx, b);
	free_span(&fx, a);
	free_span(&fx, c);
	ck_assert_uint_eq(heapfx_alloc(&fx, 1024), 0);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 1, 1, &x), -ENOMEM);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_grow_sizes)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 64);
	shm_header_t *hdr = fx.seg.hdr;
	/* a request above the chunk grows by what it needs */
	uint32_t a = heapfx_alloc(&fx, 1000);
	ck_assert_uint_eq(hdr->npages_grown, 1000);
	ck_assert_uint_eq(hdr->pages_free, 0);
	uint32_t b = heapfx_alloc(&fx, 1);
	ck_assert_uint_eq(b, 1000);
	ck_assert_uint_eq(hdr->npages_grown, 1064);
	free_span(&fx, a);
	/* the free 1000 pages serve this; no growth */
	ck_assert_uint_eq(heapfx_alloc(&fx, 700), 0);
	ck_assert_uint_eq(hdr->npages_grown, 1064);
	/* the last growth may be cut short by the reservation */
	fx.h.grow_pages = 100000;
	heapfx_alloc(&fx, 500);
	ck_assert_uint_eq(hdr->npages_grown, fx.seg.npages_max);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

static uint64_t file_blocks(heapfx_t *fx)
{
	struct stat st;
	ck_assert_int_eq(fstat(fx->seg.data_fd, &st), 0);
	return (uint64_t)st.st_blocks;
}

static int pages_are_zero(heapfx_t *fx, uint32_t span, uint32_t npages)
{
	const uint64_t *w = (const uint64_t *)segment_page_addr(&fx->seg, span);
	for (size_t i = 0; i < (size_t)npages * HEAPD_PAGE_SIZE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

START_TEST(test_release)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 256);
	shm_header_t *hdr = fx.seg.hdr;
	uint32_t a = heapfx_alloc(&fx, 64), guard = heapfx_alloc(&fx, 1);
	memset(segment_page_addr(&fx.seg, a), 0xab, 64 * HEAPD_PAGE_SIZE);
	free_span(&fx, a);
	heapfx_assert_clean(&fx); /* reads, and so backs, all the metadata of the grown heap */
	uint64_t blocks_used = file_blocks(&fx);
	uint32_t tail = guard + 1;
	ck_assert_uint_eq(heapfx_span(&fx, tail)->npages, 191);

	/* only spans free since before the limit go: the tail, not a */
	uint64_t since = heapfx_span(&fx, a)->unusedsince;
	ck_assert_uint_lt(heapfx_span(&fx, tail)->unusedsince, since);
	ck_assert_uint_eq(pageheap_release(&fx.h, since), 191);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npreleased, 0);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 1);
	ck_assert_uint_eq(hdr->pages_released, 191);
	heapfx_assert_clean(&fx);

	ck_assert_uint_eq(pageheap_release(&fx.h, UINT64_MAX), 64);
	ck_assert_uint_eq(hdr->pages_released, 255);
	ck_assert_uint_eq(hdr->pages_free, 255);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npreleased, 64);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 0);
	ck_assert_uint_le(file_blocks(&fx) + 64 * HEAPD_PAGE_SIZE / 512, blocks_used);
	ck_assert_uint_eq(pageheap_release(&fx.h, UINT64_MAX), 0);
	heapfx_assert_clean(&fx);

	/* reused released pages read as zero and need no clearing */
	ck_assert_uint_eq(heapfx_alloc(&fx, 64), a);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 0);
	ck_assert(pages_are_zero(&fx, a, 64));
	ck_assert_uint_eq(hdr->pages_released, 191);
	heapfx_assert_clean(&fx);

	/* a piece of a fully released span leaves the rest fully released */
	uint32_t b = heapfx_alloc(&fx, 10);
	ck_assert_uint_eq(b, tail);
	ck_assert_uint_eq(hdr->pages_released, 181);
	ck_assert_uint_eq(heapfx_span(&fx, tail + 10)->npreleased, 181);
	ck_assert_uint_eq(heapfx_span(&fx, tail + 10)->needzero, 0);
	heapfx_assert_clean(&fx);

	/* merged with a dirty span, it is partly released; splitting it drops the count */
	memset(segment_page_addr(&fx.seg, b), 0xcd, 10 * HEAPD_PAGE_SIZE);
	free_span(&fx, b);
	ck_assert_uint_eq(heapfx_span(&fx, tail)->npages, 191);
	ck_assert_uint_eq(heapfx_span(&fx, tail)->npreleased, 181);
	ck_assert_uint_eq(heapfx_span(&fx, tail)->needzero, 1);
	heapfx_assert_clean(&fx);
	ck_assert_uint_eq(heapfx_alloc(&fx, 5), tail);
	ck_assert_uint_eq(hdr->pages_released, 0);
	ck_assert_uint_eq(heapfx_span(&fx, tail + 5)->npreleased, 0);
	heapfx_assert_clean(&fx);

	/* a span freed next to an old free span makes the whole span young */
	free_span(&fx, a);
	pageheap_release(&fx.h, UINT64_MAX);
	uint64_t t = heapd_now_ns();
	free_span(&fx, guard);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npages, 65);
	ck_assert_uint_ge(heapfx_span(&fx, a)->unusedsince, t);
	ck_assert_uint_eq(pageheap_release(&fx.h, t), 0);
	ck_assert_uint_eq(heapfx_span(&fx, a)->npreleased, 64);
	heapfx_assert_clean(&fx);
	ck_assert_uint_eq(pageheap_release(&fx.h, UINT64_MAX), 1);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 0);
	ck_assert_uint_eq(heapfx_alloc(&fx, 65), a);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 0);
	memset(segment_page_addr(&fx.seg, a), 0xef, HEAPD_PAGE_SIZE);

	/* a span whose punch fails is skipped and left as it was */
	free_span(&fx, a);
	uint64_t released = hdr->pages_released;
	int fd = fx.seg.data_fd;
	fx.seg.data_fd = -1;
	ck_assert_uint_eq(pageheap_release(&fx.h, UINT64_MAX), 0);
	fx.seg.data_fd = fd;
	ck_assert_uint_eq(heapfx_span(&fx, a)->npreleased, 0);
	ck_assert_uint_eq(heapfx_span(&fx, a)->needzero, 1);
	ck_assert_uint_eq(hdr->pages_released, released);
	heapfx_assert_clean(&fx);

	/* then everything free is released */
	ck_assert_uint_eq(pageheap_release(&fx.h, UINT64_MAX), hdr->pages_free - released);
	ck_assert_uint_eq(hdr->pages_released, hdr->pages_free);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

/* The page heap aligns arena offsets: page p is at pages_off + p pages (the phase). */
static uint32_t phase(heapfx_t *fx)
{
	return (uint32_t)(fx->seg.hdr->pages_off >> HEAPD_PAGE_SHIFT);
}

static int aligned(heapfx_t *fx, uint32_t span, uint32_t align)
{
	return (span + phase(fx)) % align == 0;
}

START_TEST(test_aligned)
{
	heapfx_t fx;
	uint32_t x;
	heapfx_open(&fx, 64 * MIB, 1024);
	ck_assert_uint_eq(heapfx_alloc(&fx, 3), 0);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 10, 16, &x), 0);
	ck_assert(aligned(&fx, x, 16));
	ck_assert_uint_ge(x, 3);
	ck_assert_uint_lt(x, 3 + 16);
	ck_assert_uint_eq(heapfx_span(&fx, x)->npages, 10);
	ck_assert_uint_eq(heapfx_span(&fx, x)->state, SPAN_LARGE);
	if (x > 3) {
		ck_assert_uint_eq(heapfx_span(&fx, 3)->state, SPAN_FREE); /* the head went back */
		ck_assert_uint_eq(heapfx_span(&fx, 3)->npages, x - 3);
	}
	ck_assert_uint_eq((uint64_t)(segment_page_addr(&fx.seg, x) - fx.seg.base) % (16 * HEAPD_PAGE_SIZE), 0);
	heapfx_assert_clean(&fx);

	ck_assert_int_eq(pageheap_alloc(&fx.h, 5, 64, &x), 0);
	ck_assert(aligned(&fx, x, 64));
	ck_assert_int_eq(pageheap_alloc(&fx.h, 1, 1, &x), 0);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 300, 512, &x), 0);
	ck_assert(aligned(&fx, x, 512));
	ck_assert_int_eq(pageheap_alloc(&fx.h, 4, 3, &x), -EINVAL);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 4, 0, &x), -EINVAL);
	ck_assert_int_eq(pageheap_alloc(&fx.h, 0, 4, &x), -EINVAL);
	heapfx_assert_clean(&fx);

	/* carved out of a fully released span, head and tail stay released */
	pageheap_release(&fx.h, UINT64_MAX);
	uint64_t released = fx.seg.hdr->pages_released;
	ck_assert_int_eq(pageheap_alloc(&fx.h, 7, 32, &x), 0);
	ck_assert_uint_eq(fx.seg.hdr->pages_released, released - 7);
	ck_assert_uint_eq(heapfx_span(&fx, x)->needzero, 0);
	heapfx_assert_clean(&fx);

	/* many aligned spans of random sizes, then give them all back */
	uint32_t ids[200], n = 0;
	srand(7);
	for (; n < 200; n++) {
		uint32_t align = 1u << (rand() % 8), np = 1 + rand() % 40;
		ck_assert_int_eq(pageheap_alloc(&fx.h, np, align, &ids[n]), 0);
		ck_assert(aligned(&fx, ids[n], align));
		ck_assert_uint_eq(heapfx_span(&fx, ids[n])->npages, np);
	}
	heapfx_assert_clean(&fx);
	for (uint32_t i = 0; i < n; i++)
		free_span(&fx, ids[i]);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

/* The spans of the walk, as (start, npages, state, needzero, npreleased). */
typedef struct span_rec {
	uint32_t start, npages, npreleased;
	uint8_t state, needzero;
} span_rec_t;

static uint32_t walk_spans(heapfx_t *fx, span_rec_t *out, uint32_t max)
{
	uint32_t n = 0;
	for (uint32_t p = 0; p < fx->seg.hdr->npages_grown; p += heapfx_span(fx, p)->npages) {
		shm_span_t *s = heapfx_span(fx, p);
		ck_assert_uint_lt(n, max);
		out[n++] = (span_rec_t){ p, s->npages, s->npreleased, s->state, s->needzero };
	}
	return n;
}

START_TEST(test_rebuild_roundtrip)
{
	heapfx_t fx;
	uint32_t live[400], nlive = 0;
	heapfx_open(&fx, 64 * MIB, 512);
	srand(11);
	for (int op = 0; op < 600; op++) {
		if (nlive < 400 && (nlive == 0 || rand() % 3)) {
			uint32_t x;
			if (pageheap_alloc(&fx.h, 1 + rand() % (rand() % 4 ? 20 : 300), 1, &x) == 0)
				live[nlive++] = x;
		} else {
			uint32_t i = rand() % nlive;
			free_span(&fx, live[i]);
			live[i] = live[--nlive];
		}
		if (op == 300)
			pageheap_release(&fx.h, UINT64_MAX);
	}
	heapfx_assert_clean(&fx);

	static span_rec_t before[8192], after[8192];
	shm_header_t hb = *fx.seg.hdr;
	uint32_t nb = walk_spans(&fx, before, 8192);
	heapfx_reopen(&fx);
	shm_header_t *ha = fx.seg.hdr;
	uint32_t na = walk_spans(&fx, after, 8192);
	ck_assert_uint_eq(na, nb);
	ck_assert(memcmp(before, after, nb * sizeof(before[0])) == 0);
	ck_assert_uint_eq(ha->pages_inuse, hb.pages_inuse);
	ck_assert_uint_eq(ha->pages_free, hb.pages_free);
	ck_assert_uint_eq(ha->pages_released, hb.pages_released);
	ck_assert_uint_eq(ha->npages_grown, hb.npages_grown);
	heapfx_assert_clean(&fx);

	/* the rebuilt heap works on */
	for (uint32_t i = 0; i < nlive; i++)
		free_span(&fx, live[i]);
	ck_assert_uint_eq(ha->pages_inuse, 0);
	ck_assert_uint_eq(heapfx_span(&fx, 0)->npages, ha->npages_grown);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

/* The rebuild runs when a page heap is opened on an arena: as after a restart. */
static void rebuild(heapfx_t *fx)
{
	heapfx_reopen(fx);
}

/* Plant the kinds of damage a crash between steps (or a bug) leaves; rebuild repairs them. */
START_TEST(test_rebuild_repairs)
{
	heapfx_t fx;
	check_report_t rep;
	heapfx_open(&fx, 64 * MIB, 1024);
	shm_header_t *hdr = fx.seg.hdr;
	segment_t *seg = &fx.seg;
	const uint32_t lens[] = { 20, 20, 20, 30, 10 };
	uint32_t id[5];
	carve_row(&fx, lens, 5, id);
	uint32_t x = id[1], y = id[2], z = id[3];

	/* x: two adjacent free spans */
	shm_span_t *sx = heapfx_span(&fx, x), *sx2 = heapfx_span(&fx, x + 8);
	*sx2 = *sx;
	sx->state = SPAN_FREE;
	sx->npages = 8;
	sx2->start = x + 8;
	sx2->npages = 12;
	sx2->state = SPAN_FREE;
	sx2->needzero = 1;
	sx->needzero = 0;
	/* y: a stale descriptor inside an in-use span */
	shm_span_t *sy = heapfx_span(&fx, y + 3);
	sy->start = y + 3;
	sy->npages = 2;
	sy->state = SPAN_FREE;
	/* z: a wrong page map entry; id[4]: released pages while in use */
	seg->pagemap[z + 5] = heapd_pagemap_entry(7, 0);
	heapfx_span(&fx, id[4])->npreleased = 3;
	/* counters and the page map beyond the heap */
	hdr->pages_inuse = 12345;
	hdr->pages_released = 99;
	seg->pagemap[hdr->npages_grown + 5] = heapd_pagemap_entry(3, 0);

	ck_assert_uint_gt(heapfx_check(&fx, NULL, &rep), 0);
	ck_assert(heapfx_report_has(&rep, "is followed by free span"));
	ck_assert(heapfx_report_has(&rep, "overlaps"));
	ck_assert(heapfx_report_has(&rep, "page map says 7"));
	ck_assert(heapfx_report_has(&rep, "pages_inuse"));
	ck_assert(heapfx_report_has(&rep, "beyond npages_grown"));
	ck_assert(heapfx_report_has(&rep, "released pages"));

	rebuild(&fx);
	hdr = fx.seg.hdr;
	seg = &fx.seg;
	sx = heapfx_span(&fx, x);
	sx2 = heapfx_span(&fx, x + 8);
	sy = heapfx_span(&fx, y + 3);
	heapfx_assert_clean(&fx);
	ck_assert_uint_eq(sx->state, SPAN_FREE);
	ck_assert_uint_eq(sx->npages, 20);
	ck_assert_uint_eq(sx->needzero, 1);
	ck_assert_uint_eq(sx2->state, SPAN_DEAD);
	ck_assert_uint_eq(sy->state, SPAN_DEAD);
	ck_assert_uint_eq(segment_pagemap_span(seg, z + 5), z);
	ck_assert_uint_eq(hdr->pages_inuse, 20 + 20 + 30 + 10);
	ck_assert_uint_eq(hdr->pages_free, 1024 - 80);
	ck_assert_uint_eq(hdr->pages_released, 0);
	ck_assert_uint_eq(heapfx_alloc(&fx, 20), x);
	heapfx_assert_clean(&fx);
	heapfx_close(&fx);
}
END_TEST

/* Descriptors that cannot be right: the walk repairs them conservatively. */
START_TEST(test_rebuild_garbage_descriptors)
{
	heapfx_t fx;
	heapfx_open(&fx, 64 * MIB, 1024);
	shm_header_t *hdr = fx.seg.hdr;
	const uint32_t lens[] = { 10, 10, 10, 10, 10, 10 };
	uint32_t id[6];
	carve_row(&fx, lens, 6, id);
	heapfx_alloc(&fx, 1024 - 60); /* the heap is full; the last span is in use */
	uint32_t last = 60;

	heapfx_span(&fx, id[1])->state = SPAN_DEAD;  /* lost: its pages become free */
	heapfx_span(&fx, id[3])->state = 77;         /* garbage state: free as well */
	heapfx_span(&fx, id[3])->npages = 0;
	heapfx_span(&fx, id[4])->start = 12345;      /* only the start is wrong: kept */
	heapfx_span(&fx, last)->npages = 1000000;   /* claims pages beyond the heap */
	segment_allocbits(&fx.seg, last)[3] = 5; /* stale bits of what it was */

	rebuild(&fx);
	hdr = fx.seg.hdr;
	heapfx_assert_clean(&fx);
	ck_assert_uint_eq(heapfx_span(&fx, id[1])->state, SPAN_FREE);
	ck_assert_uint_eq(heapfx_span(&fx, id[1])->npages, 10);
	ck_assert_uint_eq(heapfx_span(&fx, id[1])->needzero, 1);
	ck_assert_uint_eq(heapfx_span(&fx, id[3])->state, SPAN_FREE);
	ck_assert_uint_eq(heapfx_span(&fx, id[4])->state, SPAN_LARGE);
	ck_assert_uint_eq(heapfx_span(&fx, id[4])->start, id[4]);
	/* quarantined: still in use, up to the end of the heap, one object */
	ck_assert_uint_eq(heapfx_span(&fx, last)->state, SPAN_LARGE);
	ck_assert_uint_eq(heapfx_span(&fx, last)->npages, 1024 - 60);
	ck_assert_uint_eq(segment_allocbits(&fx.seg, last)[0], 1);
	ck_assert_uint_eq(segment_allocbits(&fx.seg, last)[3], 0);
	ck_assert_uint_eq(hdr->pages_free, 20);
	heapfx_close(&fx);
}
END_TEST

/* ---- randomized differential test ---- */

/*
 * The reference model knows each page as used or free and whether it may
 * hold data; its free spans are the maximal runs of free pages, since the
 * heap never leaves two free spans side by side. It predicts growth from
 * the same policy and checks each allocation against the rule: the span
 * taken is a free run of the smallest length that fits, and among runs of
 * HEAPD_MAX_LIST pages or more of that length, the lowest. (Runs shorter
 * than that sit on LIFO lists, where any run of the right length may come
 * first.)
 */
typedef struct model {
	uint32_t max, grown, grow;
	uint8_t *used, *dirty;
	uint32_t *live, *live_n, nlive;
} model_t;

typedef struct rng {
	uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t rng_below(rng_t *r, uint32_t n)
{
	return (uint32_t)(rng_next(r) % n);
}

/* Smallest free run >= n, lowest start among equals; *len = UINT32_MAX if none. */
static void model_fit(const model_t *m, uint32_t n, uint32_t *start, uint32_t *len)
{
	*len = UINT32_MAX;
	*start = UINT32_MAX;
	for (uint32_t p = 0; p < m->grown;) {
		if (m->used[p]) {
			p++;
			continue;
		}
		uint32_t q = p;
		while (q < m->grown && !m->used[q])
			q++;
		if (q - p >= n && q - p < *len) {
			*len = q - p;
			*start = p;
		}
		p = q;
	}
}

static int model_is_run(const model_t *m, uint32_t s, uint32_t len)
{
	if (s + len > m->grown || (s > 0 && !m->used[s - 1]) || (s + len < m->grown && !m->used[s + len]))
		return 0;
	for (uint32_t p = s; p < s + len; p++)
		if (m->used[p])
			return 0;
	return 1;
}

/* Grow as the heap does; 0, or -ENOMEM when the reservation cannot cover n. */
static int model_grow(model_t *m, uint32_t n)
{
	uint32_t trail = 0;
	while (trail < m->grown && !m->used[m->grown - 1 - trail])
		trail++;
	uint32_t need = n > trail ? n - trail : 1, room = m->max - m->grown;
	if (need > room)
		return -ENOMEM;
	uint32_t g = need > m->grow ? need : m->grow;
	m->grown += g < room ? g : room;
	return 0;
}

static uint64_t marker(uint32_t span, uint32_t page)
{
	return ((uint64_t)span << 32 | page) + 1;
}

/*
 * An allocation, aligned now and then. An aligned one takes the run that a
 * plain allocation of npages + align - 1 would, and the aligned pages in it.
 */
static void diff_alloc(heapfx_t *fx, model_t *m, rng_t *r, uint64_t seed, int op)
{
	uint32_t k = rng_below(r, 10), n, align = 1;
	if (k < 5)
		n = 1 + rng_below(r, 8);
	else if (k < 8)
		n = 1 + rng_below(r, 127);
	else
		n = 128 + rng_below(r, 173);
	if (rng_below(r, 20) == 0)
		align = 2u << rng_below(r, 6);
	uint32_t want = n + align - 1;

	uint32_t want_start, want_len;
	int want_rc = 0;
	model_fit(m, want, &want_start, &want_len);
	if (want_len == UINT32_MAX) {
		want_rc = model_grow(m, want);
		if (want_rc == 0)
			model_fit(m, want, &want_start, &want_len);
	}

	uint32_t s = HEAPD_NIL;
	int rc = pageheap_alloc(&fx->h, n, align, &s);
	ck_assert_msg(rc == want_rc, "seed %llu op %d: alloc %u pages (align %u): rc %d, model %d",
	              (unsigned long long)seed, op, n, align, rc, want_rc);
	ck_assert_msg(fx->seg.hdr->npages_grown == m->grown, "seed %llu op %d: grown %u, model %u",
	              (unsigned long long)seed, op, fx->seg.hdr->npages_grown, m->grown);
	if (rc)
		return;
	uint32_t run = s;
	while (run > 0 && !m->used[run - 1])
		run--;
	uint32_t ph = phase(fx);
	ck_assert_msg(model_is_run(m, run, want_len) && s + ph == (run + ph + align - 1) / align * align,
	              "seed %llu op %d: alloc %u pages (align %u) took %u, not in a free run of %u pages",
	              (unsigned long long)seed, op, n, align, s, want_len);
	if (want_len >= HEAPD_MAX_LIST)
		ck_assert_msg(run == want_start, "seed %llu op %d: alloc %u pages took run %u, model %u",
		              (unsigned long long)seed, op, n, run, want_start);
	shm_span_t *d = heapfx_span(fx, s);
	ck_assert_uint_eq(d->npages, n);
	ck_assert_uint_eq(d->state, SPAN_LARGE);

	for (uint32_t p = s; p < s + n; p++) {
		uint64_t *w = (uint64_t *)segment_page_addr(&fx->seg, p);
		if (!d->needzero)
			ck_assert_msg(!m->dirty[p] && w[0] == 0 && w[HEAPD_PAGE_SIZE / 16] == 0,
			              "seed %llu op %d: span %u says clean but page %u may hold data",
			              (unsigned long long)seed, op, s, p);
		w[0] = marker(s, p);
		m->used[p] = 1;
		m->dirty[p] = 1;
	}
	m->live[m->nlive] = s;
	m->live_n[m->nlive++] = n;
}

static void diff_free(heapfx_t *fx, model_t *m, rng_t *r, uint64_t seed, int op)
{
	uint32_t i = rng_below(r, m->nlive), s = m->live[i], n = m->live_n[i];
	for (uint32_t p = s; p < s + n; p++) {
		uint64_t *w = (uint64_t *)segment_page_addr(&fx->seg, p);
		ck_assert_msg(w[0] == marker(s, p), "seed %llu op %d: page %u of span %u was overwritten",
		              (unsigned long long)seed, op, p, s);
		m->used[p] = 0;
	}
	pageheap_free(&fx->h, s);
	m->live[i] = m->live[m->nlive - 1];
	m->live_n[i] = m->live_n[--m->nlive];
}

static void diff_run(uint64_t seed, uint32_t grow)
{
	heapfx_t fx;
	model_t m = { 0 };
	rng_t r = { seed };
	heapfx_open(&fx, 64 * MIB, grow);
	m.max = fx.seg.npages_max;
	m.grow = grow;
	m.used = calloc(m.max, 1);
	m.dirty = calloc(m.max, 1);
	m.live = calloc(m.max, sizeof(uint32_t));
	m.live_n = calloc(m.max, sizeof(uint32_t));
	ck_assert(m.used && m.dirty && m.live && m.live_n);

	for (int op = 1; op <= 6000; op++) {
		/* phases that fill the heap up to the reservation and drain it again */
		uint32_t bias = (op / 750) % 2 ? 35 : 65;
		if (m.nlive == 0 || rng_below(&r, 100) < bias)
			diff_alloc(&fx, &m, &r, seed, op);
		else
			diff_free(&fx, &m, &r, seed, op);

		if (rng_below(&r, 100) == 0) {
			shm_header_t *hdr = fx.seg.hdr;
			uint64_t expect = hdr->pages_free - hdr->pages_released;
			uint64_t got = pageheap_release(&fx.h, UINT64_MAX);
			ck_assert_msg(got == expect, "seed %llu op %d: released %llu, expected %llu",
			              (unsigned long long)seed, op, (unsigned long long)got,
			              (unsigned long long)expect);
			ck_assert_uint_eq(hdr->pages_released, hdr->pages_free);
			for (uint32_t p = 0; p < m.grown; p++)
				if (!m.used[p])
					m.dirty[p] = 0;
		}
		if (op % 100 == 0) {
			check_report_t rep;
			size_t np = heapfx_check(&fx, &fx.h, &rep);
			if (np)
				heapfx_print(&rep);
			ck_assert_msg(np == 0, "seed %llu op %d: check found %zu problems",
			              (unsigned long long)seed, op, np);
		}
		if (op % 1000 == 0)
			heapfx_reopen(&fx);
	}
	free(m.used);
	free(m.dirty);
	free(m.live);
	free(m.live_n);
	heapfx_close(&fx);
}

START_TEST(test_differential)
{
	static const uint32_t grows[] = { 8192, 16, 100, 1000 };
	uint64_t seed = (uint64_t)_i + 1;
	diff_run(seed, grows[_i]);
}
END_TEST

START_TEST(test_differential_env_seed)
{
	const char *env = getenv("HEAPD_SEED");
	if (!env || !*env)
		return;
	uint64_t seed = strtoull(env, NULL, 0);
	fprintf(stderr, "test_differential: HEAPD_SEED=%llu\n", (unsigned long long)seed);
	diff_run(seed, 16 + (uint32_t)(seed % 1000));
}
END_TEST

static Suite *pageheap_suite(void)
{
	Suite *s = suite_create("pageheap");
	TCase *tc = tcase_create("pageheap");
	tcase_add_unchecked_fixture(tc, heapfx_rundir_make, heapfx_rundir_remove);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_alloc_free);
	tcase_add_test(tc, test_free_clears_classes);
	tcase_add_test(tc, test_split_coalesce);
	tcase_add_test(tc, test_best_fit);
	tcase_add_test(tc, test_lowest_address_among_equals);
	tcase_add_test(tc, test_grow_to_limit);
	tcase_add_test(tc, test_grow_sizes);
	tcase_add_test(tc, test_release);
	tcase_add_test(tc, test_aligned);
	tcase_add_test(tc, test_rebuild_roundtrip);
	tcase_add_test(tc, test_rebuild_repairs);
	tcase_add_test(tc, test_rebuild_garbage_descriptors);
	tcase_add_loop_test(tc, test_differential, 0, 4);
	tcase_add_test(tc, test_differential_env_seed);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(pageheap_suite);
