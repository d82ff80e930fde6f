// SPDX-License-Identifier: MIT
/*
 * test_check.c - the invariant checker: a clean heap passes; each kind of
 * planted corruption is reported; the report is capped but counts
 * everything; garbage in every region never crashes it (nor the rebuild,
 * which must leave a heap that passes).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "harness/heapfx.h"
#include "sizeclass.h"

/* A heap with in-use spans, small free spans on lists and large ones in the tree. */
static void build_heap(heapfx_t *fx, uint32_t *ids)
{
	static const uint32_t lens[] = { 4, 1, 200, 1, 7, 1, 300, 1, 7, 1 };
	heapfx_open(fx, 64 * MIB, 1024);
	for (int i = 0; i < 10; i++)
		ids[i] = heapfx_alloc(fx, lens[i]);
	pageheap_free(&fx->h, ids[2]);
	pageheap_free(&fx->h, ids[4]);
	pageheap_free(&fx->h, ids[6]);
	pageheap_free(&fx->h, ids[8]);
	heapfx_assert_clean(fx);
}

/* Run the checker (with the indexes) and require a line containing needle. */
static void expect_problem(heapfx_t *fx, const char *needle)
{
	check_report_t rep;
	size_t n = heapfx_check(fx, &fx->h, &rep);
	if (n == 0 || !heapfx_report_has(&rep, needle))
		heapfx_print(&rep);
	ck_assert_msg(n > 0, "no problem found, expected \"%s\"", needle);
	ck_assert_msg(heapfx_report_has(&rep, needle), "no problem line contains \"%s\"", needle);
}

START_TEST(test_clean)
{
	heapfx_t fx;
	uint32_t ids[10];
	check_report_t rep;
	heapfx_open(&fx, 16 * MIB, 0);
	ck_assert_uint_eq(heapfx_check(&fx, &fx.h, &rep), 0); /* empty heap */
	heapfx_close(&fx);
	build_heap(&fx, ids);
	ck_assert_uint_eq(heapfx_check(&fx, NULL, &rep), 0);
	ck_assert_uint_eq(check_segment(&fx.seg, &fx.h, NULL), 0); /* no report buffer */
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_overlap)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	shm_span_t *s = heapfx_span(&fx, ids[0] + 2);
	s->start = ids[0] + 2;
	s->npages = 1;
	s->state = SPAN_LARGE;
	expect_problem(&fx, "span 0 (4 pages) overlaps large span 2");
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_counters)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	fx.seg.hdr->pages_free++;
	expect_problem(&fx, "pages_free");
	fx.seg.hdr->pages_free--;
	fx.seg.hdr->pages_inuse--;
	expect_problem(&fx, "pages_inuse");
	fx.seg.hdr->pages_inuse++;
	fx.seg.hdr->pages_released = 5;
	expect_problem(&fx, "pages_released");
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_adjacent_free)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	/* cut the 200-page free span in two, as a crash mid-split could leave it */
	uint32_t f = ids[2];
	shm_span_t *a = heapfx_span(&fx, f), *b = heapfx_span(&fx, f + 50);
	*b = *a;
	b->start = f + 50;
	b->npages = 150;
	a->npages = 50;
	fx.seg.pagemap[f + 49] = heapd_pagemap_entry(f, 0);
	fx.seg.pagemap[f + 50] = heapd_pagemap_entry(f + 50, 0);
	expect_problem(&fx, "is followed by free span");
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_bitmaps)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	/* a large span has one object: bit 3 is out of bounds */
	segment_allocbits(&fx.seg, ids[0])[0] = 1u << 3;
	expect_problem(&fx, "span 0: bitmaps");
	segment_allocbits(&fx.seg, ids[0])[0] = 0;
	segment_freebits(&fx.seg, ids[0], 1)[0] = 1;
	expect_problem(&fx, "free bit set without its alloc bit");
	segment_freebits(&fx.seg, ids[0], 1)[0] = 0;

	/* a small span of a class whose objects do not fill the last bitmap word */
	uint32_t k = 0;
	for (uint32_t c = 1; c < SIZECLASS_COUNT && !k; c++)
		if (sizeclass_nelems[c] % 64 && sizeclass_npages[c] == 1)
			k = c;
	ck_assert_uint_ne(k, 0);
	uint32_t sp = ids[1]; /* one page */
	shm_span_t *s = heapfx_span(&fx, sp);
	s->state = SPAN_SMALL;
	s->sizeclass = k;
	check_report_t rep;
	ck_assert_uint_gt(heapfx_check(&fx, &fx.h, &rep),
	                  0); /* its page map entry has no class yet */
	fx.seg.pagemap[sp] = heapd_pagemap_entry(sp, k);
	ck_assert_uint_eq(heapfx_check(&fx, &fx.h, &rep), 0);
	uint32_t beyond = sizeclass_nelems[k];
	segment_allocbits(&fx.seg, sp)[beyond / 64] |= 1ull << (beyond % 64);
	expect_problem(&fx, "alloc bit set at or beyond nelems");
	segment_allocbits(&fx.seg, sp)[beyond / 64] = 0;

	/* a free bit without its alloc bit: a sweep under way if a client owns the span, else wrong */
	segment_freebits(&fx.seg, sp, sizeclass_nelems[k])[0] = 1;
	expect_problem(&fx, "free bit set without its alloc bit");
	s->owner = 1;
	ck_assert_uint_eq(heapfx_check(&fx, &fx.h, &rep), 0);
	segment_allocbits(&fx.seg, sp)[beyond / 64] |= 1ull << (beyond % 64);
	expect_problem(&fx, "alloc bit set at or beyond nelems"); /* but nothing else passes */
	segment_allocbits(&fx.seg, sp)[beyond / 64] = 0;
	segment_freebits(&fx.seg, sp, sizeclass_nelems[k])[0] = 0;
	s->owner = 0;

	/* a class whose spans are longer than this one */
	uint32_t k2 = 0;
	for (uint32_t c = 1; c < SIZECLASS_COUNT && !k2; c++)
		if (sizeclass_npages[c] > 1)
			k2 = c;
	s->sizeclass = k2;
	expect_problem(&fx, "class");
	s->sizeclass = SIZECLASS_COUNT;
	expect_problem(&fx, "small span with size class");
	s->sizeclass = 3;
	s->state = SPAN_LARGE;
	fx.seg.pagemap[sp] = heapd_pagemap_entry(sp, 0);
	expect_problem(&fx, "large span with size class 3");
	heapfx_close(&fx);
}
END_TEST

/*
 * The page map beyond the grown heap is checked and cleared without reading
 * its holes, which on tmpfs would allocate them: a 4 GiB arena (4 MiB of
 * page map) with a little heap stays a little file through a check and a
 * rebuild.
 */
START_TEST(test_pagemap_holes_stay_holes)
{
	heapfx_t fx;
	struct stat st;
	check_report_t rep;
	heapfx_open(&fx, 4ull << 30, 64);
	heapfx_alloc(&fx, 10);
	ck_assert_uint_eq(heapfx_check(&fx, &fx.h, &rep), 0);
	heapfx_reopen(&fx);
	ck_assert_uint_eq(heapfx_check(&fx, NULL, &rep), 0);
	ck_assert_int_eq(stat(fx.path, &st), 0);
	uint64_t held = (uint64_t)st.st_blocks * 512;
	ck_assert_msg(held < fx.seg.hdr->pagemap_size / 4,
	              "the arena file holds %llu bytes after a check and a rebuild; the page map is %llu",
	              (unsigned long long)held, (unsigned long long)fx.seg.hdr->pagemap_size);
	/* and a stray entry far beyond the heap is still found, and cleared by a rebuild */
	fx.seg.pagemap[fx.seg.npages_max - 1] = heapd_pagemap_entry(5, 2);
	expect_problem(&fx, "beyond npages_grown");
	heapfx_reopen(&fx);
	ck_assert_uint_eq(fx.seg.pagemap[fx.seg.npages_max - 1], 0);
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_pagemap)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	segment_t *seg = &fx.seg;
	seg->pagemap[ids[6] + 10] = heapd_pagemap_entry(12345, 0); /* inside a free span: any span, */
	check_report_t rep;
	ck_assert_uint_eq(heapfx_check(&fx, &fx.h, &rep), 0);
	seg->pagemap[ids[6] + 10] = heapd_pagemap_entry(12345, 7); /* but no class */
	expect_problem(&fx, "page map gives class 7 inside free span");
	seg->pagemap[ids[6] + 10] = heapd_pagemap_entry(12345, 0);
	seg->pagemap[ids[0] + 3] = heapd_pagemap_entry(ids[1], 0);
	expect_problem(&fx, "page 3: page map says 4 (class 0), in large span 0");
	seg->pagemap[ids[0] + 3] = heapd_pagemap_entry(ids[0], 5);
	expect_problem(&fx, "page 3: page map says 0 (class 5), in large span 0 of class 0");
	seg->pagemap[ids[0] + 3] = heapd_pagemap_entry(ids[0], 0);
	seg->pagemap[ids[6] + 299] = heapd_pagemap_entry(0, 0);
	expect_problem(&fx, "last page of free span");
	seg->pagemap[ids[6] + 299] = heapd_pagemap_entry(ids[6], 3);
	expect_problem(&fx, "last page of free span");
	seg->pagemap[ids[6] + 299] = heapd_pagemap_entry(ids[6], 0);
	seg->pagemap[seg->npages_max - 1] = heapd_pagemap_entry(0, 0);
	expect_problem(&fx, "beyond npages_grown");
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_descriptors)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	shm_span_t *s = heapfx_span(&fx, ids[1]);
	s->start = 99;
	expect_problem(&fx, "starts at page 99");
	s->start = ids[1];
	s->npreleased = 1;
	expect_problem(&fx, "in use with 1 released pages");
	s->npreleased = 0;
	heapfx_span(&fx, ids[4])->npreleased = 8;
	expect_problem(&fx, "free span of 7 pages has 8 released");
	heapfx_span(&fx, ids[4])->npreleased = 0;
	s->state = 9;
	expect_problem(&fx, "garbage descriptor");
	s->state = SPAN_DEAD;
	expect_problem(&fx, "dead descriptor");
	s->state = SPAN_LARGE;
	/* the last span runs past the grown heap */
	uint32_t grown = fx.seg.hdr->npages_grown, last = segment_pagemap_span(&fx.seg, grown - 1);
	heapfx_span(&fx, last)->npages += 10;
	expect_problem(&fx, "runs past npages_grown");
	heapfx_span(&fx, last)->npages -= 10;
	fx.seg.hdr->npages_grown = fx.seg.npages_max + 1;
	expect_problem(&fx, "exceeds npages_max");
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_index)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	pageheap_t *h = &fx.h;
	uint32_t seven = h->free[7];
	ck_assert_uint_ne(seven, HEAPD_NIL);
	shm_span_t *s7 = heapfx_span(&fx, seven);
	ck_assert_uint_ne(s7->next, HEAPD_NIL); /* both 7-page spans are on the list */

	/* a broken prev link */
	uint32_t second = s7->next;
	heapfx_span(&fx, second)->prev = HEAPD_NIL;
	expect_problem(&fx, "has prev");
	heapfx_span(&fx, second)->prev = seven;

	/* a span left out of the index */
	h->free[7] = second;
	heapfx_span(&fx, second)->prev = HEAPD_NIL;
	expect_problem(&fx, "is on no list and not in the tree");
	h->free[7] = seven;
	heapfx_span(&fx, second)->prev = seven;

	/* a list that loops */
	heapfx_span(&fx, second)->next = seven;
	expect_problem(&fx, "a cycle?");
	heapfx_span(&fx, second)->next = HEAPD_NIL;

	/* an in-use span on a list; a span of the wrong length */
	h->free[4] = ids[0];
	expect_problem(&fx, "span 0 is large, not a free span");
	h->free[4] = HEAPD_NIL;
	h->free[6] = seven;
	expect_problem(&fx, "list 6: span");
	h->free[6] = HEAPD_NIL;
	h->free[0] = seven;
	expect_problem(&fx, "list 0: not empty");
	h->free[0] = HEAPD_NIL;
	h->nonempty[0] ^= 1u << 9;
	expect_problem(&fx, "list 9: nonempty bit is 1");
	h->nonempty[0] ^= 1u << 9;
	h->nonempty[0] ^= 1u << 7;
	expect_problem(&fx, "list 7: nonempty bit is 0");
	h->nonempty[0] ^= 1u << 7;

	/* the tree: two nodes (200 and 300 pages) and the tail */
	uint32_t root = h->large;
	ck_assert_uint_ne(root, HEAPD_NIL);
	shm_span_t *r = heapfx_span(&fx, root);
	uint32_t l = r->left, rt = r->right;
	r->left = rt;
	r->right = l;
	expect_problem(&fx, "out of order");
	r->left = l;
	r->right = rt;
	uint32_t child = l != HEAPD_NIL ? l : rt;
	uint32_t *back = &heapfx_span(&fx, child)->left;
	uint32_t saved = *back;
	*back = root;
	expect_problem(&fx, "a cycle?");
	*back = saved;
	h->large = fx.seg.hdr->npages_grown + 3;
	expect_problem(&fx, "beyond the grown heap");
	h->large = root;
	/* a 7-page span in the tree */
	heapfx_span(&fx, seven)->left = heapfx_span(&fx, seven)->right = HEAPD_NIL;
	h->large = seven;
	expect_problem(&fx, "below 128");
	h->large = root;
	check_report_t rep;
	ck_assert_uint_eq(heapfx_check(&fx, &fx.h, &rep), 0);
	heapfx_close(&fx);
}
END_TEST

START_TEST(test_cap)
{
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	/* 150 stale descriptors inside the 200-page free span */
	uint32_t f = ids[2];
	for (uint32_t i = 1; i <= 150; i++) {
		shm_span_t *s = heapfx_span(&fx, f + i);
		s->start = f + i;
		s->npages = 1;
		s->state = SPAN_FREE;
	}
	check_report_t rep;
	size_t n = heapfx_check(&fx, &fx.h, &rep);
	ck_assert_uint_eq(n, 150);
	ck_assert_uint_eq(rep.nproblems, 150);
	ck_assert(strstr(rep.problems[CHECK_MAX_PROBLEMS - 1], "overlaps") != NULL);
	heapfx_close(&fx);
}
END_TEST

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Random bytes over the span table, the page map, the counters and the
 * heap's roots: the checker must survive and complain; the rebuild must
 * survive and leave tiling, page map, indexes and counters right (the
 * insides of in-use spans, class geometry and bitmaps, are recovery's job,
 * so they are made plausible before the final check).
 */
START_TEST(test_garbage)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(_i + 1);
	heapfx_t fx;
	uint32_t ids[10];
	build_heap(&fx, ids);
	segment_t *seg = &fx.seg;
	uint32_t grown = seg->hdr->npages_grown;

	/* many small-valued fields, so that some descriptors look almost right */
	uint8_t *spans = (uint8_t *)seg->spans;
	for (size_t i = 0; i < (size_t)grown * sizeof(shm_span_t); i++) {
		uint64_t r = xorshift(&seed);
		spans[i] = (r & 3) == 0 ? (uint8_t)(r >> 8) : (uint8_t)((r >> 8) & 3);
	}
	for (uint32_t i = 0; i < grown; i++) {
		if (xorshift(&seed) % 3 == 0)
			seg->spans[i].npages = (uint32_t)(xorshift(&seed) % 400);
		if (xorshift(&seed) % 4 == 0)
			seg->spans[i].start = i;
	}
	for (uint32_t i = 0; i < seg->npages_max; i += 1 + xorshift(&seed) % 50)
		seg->pagemap[i] = xorshift(&seed);
	seg->hdr->pages_inuse = xorshift(&seed);
	fx.h.large = (uint32_t)xorshift(&seed) % (grown + 10);
	for (uint32_t n = 0; n < HEAPD_MAX_LIST; n++)
		if (xorshift(&seed) % 2)
			fx.h.free[n] = (uint32_t)xorshift(&seed) % (grown + 10);
	fx.h.nonempty[0] = xorshift(&seed);

	check_report_t rep;
	ck_assert_uint_gt(heapfx_check(&fx, &fx.h, &rep), 0);
	ck_assert_uint_gt(heapfx_check(&fx, NULL, &rep), 0);

	heapfx_reopen(&fx);
	seg = &fx.seg;
	for (uint32_t p = 0; p < grown; p += seg->spans[p].npages) {
		shm_span_t *s = &seg->spans[p];
		ck_assert_uint_ne(s->npages, 0);
		if (s->state == SPAN_FREE)
			continue;
		s->state = SPAN_LARGE;
		s->sizeclass = 0;
		memset(segment_allocbits(seg, p), 0, HEAPD_BITS_WORDS_PER_PAGE * sizeof(uint64_t));
		for (uint32_t i = 0; i < s->npages; i++)
			seg->pagemap[p + i] = heapd_pagemap_entry(p, 0);
	}
	heapfx_assert_clean(&fx);

	/* and the heap works on: free everything in use, allocate it all again */
	uint32_t *inuse = malloc(grown * sizeof(uint32_t)), ninuse = 0;
	ck_assert(inuse);
	for (uint32_t p = 0; p < grown; p += seg->spans[p].npages)
		if (seg->spans[p].state != SPAN_FREE)
			inuse[ninuse++] = p;
	for (uint32_t i = 0; i < ninuse; i++)
		pageheap_free(&fx.h, inuse[i]);
	free(inuse);
	heapfx_assert_clean(&fx);
	ck_assert_uint_eq(seg->spans[0].npages, grown);
	ck_assert_uint_eq(heapfx_alloc(&fx, grown), 0);
	heapfx_close(&fx);
}
END_TEST

static Suite *check_suite(void)
{
	Suite *s = suite_create("check");
	TCase *tc = tcase_create("check");
	tcase_add_unchecked_fixture(tc, heapfx_rundir_make, heapfx_rundir_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_clean);
	tcase_add_test(tc, test_overlap);
	tcase_add_test(tc, test_counters);
	tcase_add_test(tc, test_adjacent_free);
	tcase_add_test(tc, test_bitmaps);
	tcase_add_test(tc, test_pagemap);
	tcase_add_test(tc, test_pagemap_holes_stay_holes);
	tcase_add_test(tc, test_descriptors);
	tcase_add_test(tc, test_index);
	tcase_add_test(tc, test_cap);
	tcase_add_loop_test(tc, test_garbage, 0, 20);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(check_suite);
