// SPDX-License-Identifier: MIT
/*
 * test_sizeclass.c - the generated size-class table and sizeclass_of().
 *
 * The generator checks these properties before it writes the table; this
 * suite checks them again on the table the library was built with, through
 * the same header the allocator uses.
 */
#include <stdlib.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "sizeclass.h"

/* The smallest class (1..) whose objects hold size bytes, by linear search. */
static uint32_t smallest_fit(uint32_t size)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++)
		if (sizeclass_size[c] >= size)
			return c;
	return 0;
}

START_TEST(test_count)
{
	/* Go's table has 67 entries, class 0 included. */
	ck_assert_uint_ge(SIZECLASS_COUNT, 40);
	ck_assert_uint_le(SIZECLASS_COUNT, 100);
	/* the lookup tables store class numbers in a byte */
	ck_assert_uint_le(SIZECLASS_COUNT, 256);
}
END_TEST

START_TEST(test_class0_is_large)
{
	ck_assert_uint_eq(sizeclass_size[0], 0);
	ck_assert_uint_eq(sizeclass_npages[0], 0);
	ck_assert_uint_eq(sizeclass_nelems[0], 0);
}
END_TEST

START_TEST(test_sizes_increase)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		ck_assert_uint_gt(sizeclass_size[c], sizeclass_size[c - 1]);
		ck_assert_uint_eq(sizeclass_size[c] % 8, 0);
	}
	ck_assert_uint_eq(sizeclass_size[1], 8);
	ck_assert_uint_eq(sizeclass_size[SIZECLASS_COUNT - 1], HEAPD_MAX_SMALL);
}
END_TEST

START_TEST(test_spans)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		uint64_t span = (uint64_t)sizeclass_npages[c] * HEAPD_PAGE_SIZE;
		uint64_t used = (uint64_t)sizeclass_nelems[c] * sizeclass_size[c];

		ck_assert_uint_ge(sizeclass_npages[c], 1);
		ck_assert_uint_ge(sizeclass_nelems[c], 1);
		ck_assert_uint_le(used, span);
		/* as many objects as fit */
		ck_assert_uint_eq(sizeclass_nelems[c], span / sizeclass_size[c]);
		/* tail waste at most 12.5% */
		ck_assert_msg((span - used) * 8 <= span, "class %u (%u bytes): tail %llu of %llu", c,
		              sizeclass_size[c], (unsigned long long)(span - used),
		              (unsigned long long)span);
		/* the span's bitmaps hold a bit per object */
		ck_assert_uint_le(sizeclass_nelems[c], HEAPD_SPAN_MAX_OBJECTS);
		ck_assert_uint_le(bitmap_words(sizeclass_nelems[c]), HEAPD_BITMAP_WORDS_MAX);
		ck_assert_uint_le(heapd_freebits_delta(sizeclass_nelems[c]) + bitmap_words(sizeclass_nelems[c]),
		                  HEAPD_BITS_WORDS_PER_PAGE);
	}
}
END_TEST

/* The free path's table says what the separate tables say. */
START_TEST(test_info_table)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		const sizeclass_info_t *k = &sizeclass_info[c];
		ck_assert_uint_eq(k->size, sizeclass_size[c]);
		ck_assert_uint_eq(k->divmul, sizeclass_divmul[c]);
		ck_assert_uint_eq(k->nelems, sizeclass_nelems[c]);
		ck_assert_uint_eq(k->freebits_delta, heapd_freebits_delta(sizeclass_nelems[c]));
		/* free words never overlap alloc words, and stay in the span's words */
		ck_assert_uint_ge(k->freebits_delta, bitmap_words(k->nelems));
	}
	ck_assert_uint_eq(sizeof(sizeclass_info_t), 32);
}
END_TEST

/* The free path's one multiply: the quotient, and whether the offset is an object's start. */
START_TEST(test_divide_exact)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		uint32_t span = sizeclass_npages[c] * HEAPD_PAGE_SIZE, size = sizeclass_size[c];
		for (uint32_t off = 0; off < span; off++) {
			int exact;
			uint32_t q = sizeclass_divide(off, sizeclass_info[c].magic, &exact);
			if (q != off / size || exact != (off % size == 0))
				ck_abort_msg("class %u: offset %u gives %u (exact %d), want %u (exact %d)", c,
				             off, q, exact, off / size, off % size == 0);
		}
	}
}
END_TEST

START_TEST(test_divmul_exact)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		uint32_t span = sizeclass_npages[c] * HEAPD_PAGE_SIZE;
		for (uint32_t off = 0; off < span; off++)
			if (sizeclass_div(off, sizeclass_divmul[c]) != off / sizeclass_size[c])
				ck_abort_msg("class %u: offset %u divides to %u, want %u", c, off,
				             sizeclass_div(off, sizeclass_divmul[c]), off / sizeclass_size[c]);
	}
}
END_TEST

START_TEST(test_powers_of_two)
{
	for (uint32_t p = 8; p <= HEAPD_MAX_SMALL; p *= 2) {
		uint32_t c = sizeclass_of(p);
		ck_assert_msg(sizeclass_size[c] == p, "%u bytes map to class %u of %u bytes", p, c,
		              sizeclass_size[c]);
	}
}
END_TEST

START_TEST(test_lookup_every_size)
{
	for (uint32_t size = 1; size <= HEAPD_MAX_SMALL; size++) {
		uint32_t c = sizeclass_of(size);
		if (c != smallest_fit(size))
			ck_abort_msg("%u bytes map to class %u (%u bytes), want class %u (%u bytes)", size,
			             c, sizeclass_size[c], smallest_fit(size),
			             sizeclass_size[smallest_fit(size)]);
	}
}
END_TEST

START_TEST(test_lookup_tables)
{
	/* size 0 gets the smallest class rather than "large" */
	ck_assert_uint_eq(sizeclass_small8[0], 1);
	for (uint32_t i = 1; i < sizeof(sizeclass_small8); i++)
		ck_assert_uint_eq(sizeclass_small8[i], smallest_fit(i * 8));
	for (uint32_t i = 0; i < sizeof(sizeclass_large128); i++)
		ck_assert_uint_eq(sizeclass_large128[i], smallest_fit(1024 + i * 128));
	ck_assert_uint_eq(sizeof(sizeclass_small8), 129);
	ck_assert_uint_eq(sizeof(sizeclass_large128), 249);
}
END_TEST

static Suite *sizeclass_suite(void)
{
	Suite *s = suite_create("sizeclass");
	TCase *tc = tcase_create("table");
	tcase_set_timeout(tc, 60);

	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_class0_is_large);
	tcase_add_test(tc, test_sizes_increase);
	tcase_add_test(tc, test_spans);
	tcase_add_test(tc, test_info_table);
	tcase_add_test(tc, test_divmul_exact);
	tcase_add_test(tc, test_divide_exact);
	tcase_add_test(tc, test_powers_of_two);
	tcase_add_test(tc, test_lookup_every_size);
	tcase_add_test(tc, test_lookup_tables);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(sizeclass_suite);
