// SPDX-License-Identifier: MIT
/*
 * test_bitmap.c - alloc bits, free bits, the owner's sweep and the
 * allocation cache, including frees from several processes at once.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "layout.h"

#define MAXW HEAPD_BITMAP_WORDS_MAX /* a span's worth: up to 1024 objects */

/* Bitmaps of one span, with a guard word after each to catch overruns. */
typedef struct span_bits {
	uint64_t alloc[MAXW + 1];
	uint64_t freeb[MAXW + 1];
} span_bits_t;

#define GUARD 0x5a5a5a5a5a5a5a5aULL

static void bits_init(span_bits_t *b, uint32_t nelems)
{
	memset(b, 0, sizeof(*b));
	b->alloc[bitmap_words(nelems)] = GUARD;
	b->freeb[bitmap_words(nelems)] = GUARD;
}

static void guards_intact(const span_bits_t *b, uint32_t nelems)
{
	ck_assert_uint_eq(b->alloc[bitmap_words(nelems)], GUARD);
	ck_assert_uint_eq(b->freeb[bitmap_words(nelems)], GUARD);
}

static void set_alloc(span_bits_t *b, uint32_t idx)
{
	b->alloc[idx >> 6] |= 1ULL << (idx & 63);
}

static int alloc_bit(const span_bits_t *b, uint32_t idx)
{
	return (b->alloc[idx >> 6] >> (idx & 63)) & 1;
}

static int free_bit(const span_bits_t *b, uint32_t idx)
{
	return (b->freeb[idx >> 6] >> (idx & 63)) & 1;
}

/*
 * The owner's allocation loop, as the client cache runs it: take slots from
 * the allocation cache, refill it every 64 slots. Returns nelems when full.
 */
typedef struct cursor {
	uint32_t freeindex; /* slots below it are taken or were skipped */
	uint64_t cache;     /* bitmap_alloc_cache of the word holding freeindex, shifted */
} cursor_t;

static void cursor_reset(cursor_t *cur, const uint64_t *alloc, uint32_t nelems)
{
	cur->freeindex = 0;
	cur->cache = bitmap_alloc_cache(alloc, 0, nelems);
}

static uint32_t take(cursor_t *cur, uint64_t *alloc, uint32_t nelems)
{
	while (cur->freeindex < nelems) {
		if (cur->cache) {
			uint32_t skip = (uint32_t)__builtin_ctzll(cur->cache);
			uint32_t idx = cur->freeindex + skip;
			/* past the slot just taken; a shift by 64 is undefined, so split it */
			cur->cache = (cur->cache >> skip) >> 1;
			cur->freeindex = idx + 1;
			bitmap_store(&alloc[idx >> 6], bitmap_load(&alloc[idx >> 6]) | 1ULL << (idx & 63));
			if ((cur->freeindex & 63) == 0 && cur->freeindex < nelems)
				cur->cache = bitmap_alloc_cache(alloc, cur->freeindex, nelems);
			return idx;
		}
		cur->freeindex = (cur->freeindex + 64) & ~63u;
		if (cur->freeindex < nelems)
			cur->cache = bitmap_alloc_cache(alloc, cur->freeindex, nelems);
	}
	return nelems;
}

START_TEST(test_words)
{
	ck_assert_uint_eq(bitmap_words(0), 0);
	ck_assert_uint_eq(bitmap_words(1), 1);
	ck_assert_uint_eq(bitmap_words(64), 1);
	ck_assert_uint_eq(bitmap_words(65), 2);
	ck_assert_uint_eq(bitmap_words(1024), 16);
}
END_TEST

START_TEST(test_mark_free)
{
	span_bits_t b;
	uint32_t nelems = 170; /* the 48-byte class: 3 words, 42 bits in the last */

	bits_init(&b, nelems);
	set_alloc(&b, 0);
	set_alloc(&b, 63);
	set_alloc(&b, 64);
	set_alloc(&b, 169);
	ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), 4);
	ck_assert_uint_eq(bitmap_count_inuse(b.alloc, b.freeb, nelems), 4);

	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 63), BITMAP_FREED);
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 169), BITMAP_FREED);
	ck_assert(free_bit(&b, 63) && free_bit(&b, 169));
	/* a free only sets a free bit; the alloc bit waits for the owner's sweep */
	ck_assert(alloc_bit(&b, 63));
	ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), 4);
	ck_assert_uint_eq(bitmap_count_inuse(b.alloc, b.freeb, nelems), 2);

	/* the same object again before a sweep: its free bit is already set */
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 63), BITMAP_DOUBLE_FREE);
	/* an object never handed out */
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 1), BITMAP_NOT_ALLOCATED);
	ck_assert(!free_bit(&b, 1));

	ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, NULL, nelems), 2);
	ck_assert(!alloc_bit(&b, 63) && !free_bit(&b, 63));
	ck_assert(!alloc_bit(&b, 169) && !free_bit(&b, 169));
	ck_assert(alloc_bit(&b, 0) && alloc_bit(&b, 64));
	ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), 2);
	ck_assert_uint_eq(bitmap_count_inuse(b.alloc, b.freeb, nelems), 2);

	/* the same object again after a sweep: its alloc bit is clear */
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 63), BITMAP_NOT_ALLOCATED);
	ck_assert(!free_bit(&b, 63));
	ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, NULL, nelems), 0);
	guards_intact(&b, nelems);
}
END_TEST

START_TEST(test_sweep)
{
	static const uint32_t sizes[] = { 1, 7, 63, 64, 65, 73, 170, 1000, 1024 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint32_t nelems = sizes[s], expect = 0;
		span_bits_t b;

		bits_init(&b, nelems);
		for (uint32_t i = 0; i < nelems; i++)
			set_alloc(&b, i);
		for (uint32_t i = 0; i < nelems; i += 3) {
			ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, i), BITMAP_FREED);
			expect++;
		}
		ck_assert_uint_eq(bitmap_count_inuse(b.alloc, b.freeb, nelems), nelems - expect);
		ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, NULL, nelems), expect);
		for (uint32_t i = 0; i < nelems; i++) {
			ck_assert_int_eq(alloc_bit(&b, i), i % 3 != 0);
			ck_assert(!free_bit(&b, i));
		}
		ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), nelems - expect);
		ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, NULL, nelems), 0);
		ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, NULL), 0);
		guards_intact(&b, nelems);
	}
}
END_TEST

/* A free bit whose alloc bit is already clear (left by a sweep cut short). */
START_TEST(test_sweep_drops_stray_bits)
{
	span_bits_t b;
	uint32_t nelems = 100;

	bits_init(&b, nelems);
	set_alloc(&b, 5);
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 5), BITMAP_FREED);
	b.freeb[1] |= 1ULL << (70 - 64); /* object 70 was never allocated */
	ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, NULL, nelems), 1);
	ck_assert_uint_eq(b.freeb[0], 0);
	ck_assert_uint_eq(b.freeb[1], 0);
	ck_assert_uint_eq(b.alloc[0], 0);
	ck_assert_uint_eq(b.alloc[1], 0);
}
END_TEST

/* A pinned object's free waits: no fold clears its bits until its pin goes, and then one does. */
START_TEST(test_sweep_keeps_pinned)
{
	span_bits_t b;
	uint32_t nelems = 170;
	uint64_t flag = HEAPD_PAGEMAP_PINNED, pins[HEAPD_BITMAP_WORDS_MAX] = { 0 };
	bitmap_pins_t p = { &flag, pins };

	bits_init(&b, nelems);
	for (uint32_t i = 60; i < 70; i++)
		set_alloc(&b, i);
	pins[0] = 1ULL << 62;
	pins[1] = 1ULL << (65 - 64);
	for (uint32_t i = 60; i < 70; i++)
		ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, i), BITMAP_FREED);
	ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, &p, nelems), 8);
	ck_assert(alloc_bit(&b, 62) && free_bit(&b, 62));
	ck_assert(alloc_bit(&b, 65) && free_bit(&b, 65));
	ck_assert(!alloc_bit(&b, 61) && !free_bit(&b, 61));
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, NULL), 0);
	/* freed while pinned is freed: freeing it again is a double free */
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 62), BITMAP_DOUBLE_FREE);
	/* the flag off says the span holds no pins, whatever its words say */
	flag = 0;
	uint64_t folded;
	bitmap_fold_word(b.alloc, b.freeb, &p, 0, &folded);
	ck_assert_uint_eq(folded, 1ULL << 62);
	flag = HEAPD_PAGEMAP_PINNED;
	pins[1] = 0;
	ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, &p, nelems), 1);
	ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), 0);
	guards_intact(&b, nelems);
}
END_TEST

START_TEST(test_next_free)
{
	span_bits_t b;
	uint32_t nelems = 170;

	bits_init(&b, nelems);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 0, nelems), 0);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 169, nelems), 169);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 170, nelems), nelems);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 5000, nelems), nelems);

	for (uint32_t i = 0; i < nelems; i++)
		set_alloc(&b, i);
	/* the clear bits beyond nelems in the last word are not slots */
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 0, nelems), nelems);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 130, nelems), nelems);

	b.alloc[0] &= ~(1ULL << 10);
	b.alloc[1] &= ~(1ULL << 0);  /* object 64 */
	b.alloc[2] &= ~(1ULL << 41); /* object 169, the last */
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 0, nelems), 10);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 10, nelems), 10);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 11, nelems), 64);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 63, nelems), 64);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 65, nelems), 169);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 169, nelems), 169);

	/* a multiple of 64: the search ends at the last word */
	nelems = 128;
	bits_init(&b, nelems);
	b.alloc[0] = b.alloc[1] = ~0ULL;
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 0, nelems), nelems);
	b.alloc[1] &= ~(1ULL << 63);
	ck_assert_uint_eq(bitmap_next_free(b.alloc, 3, nelems), 127);
	guards_intact(&b, nelems);
}
END_TEST

START_TEST(test_alloc_cache)
{
	span_bits_t b;
	uint32_t nelems = 170;

	bits_init(&b, nelems);
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 0, nelems), ~0ULL);
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 64, nelems), ~0ULL);
	/* the last word: only the 42 slots below nelems */
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 128, nelems), (1ULL << 42) - 1);

	set_alloc(&b, 0);
	set_alloc(&b, 2);
	set_alloc(&b, 130);
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 0, nelems), ~0ULL & ~5ULL);
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 128, nelems), ((1ULL << 42) - 1) & ~4ULL);

	/* a full 64-slot word at the end */
	bits_init(&b, 128);
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 64, 128), ~0ULL);
	/* nelems 1 */
	bits_init(&b, 1);
	ck_assert_uint_eq(bitmap_alloc_cache(b.alloc, 0, 1), 1);
}
END_TEST

/* Allocate a whole span through the cache, free some, sweep, allocate again. */
START_TEST(test_alloc_cycle)
{
	static const uint32_t sizes[] = { 1, 3, 64, 73, 128, 170, 1024 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint32_t nelems = sizes[s];
		span_bits_t b;
		cursor_t cur;

		bits_init(&b, nelems);
		cursor_reset(&cur, b.alloc, nelems);
		for (uint32_t i = 0; i < nelems; i++)
			ck_assert_uint_eq(take(&cur, b.alloc, nelems), i);
		ck_assert_uint_eq(take(&cur, b.alloc, nelems), nelems);
		ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), nelems);
		ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, NULL), 0);

		/* free the odd objects and the last one, from "another process" */
		uint32_t nfree = 0;
		for (uint32_t i = 0; i < nelems; i++)
			if (i % 2 == 1 || i == nelems - 1) {
				ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, i), BITMAP_FREED);
				nfree++;
			}
		ck_assert_uint_eq(bitmap_sweep(b.alloc, b.freeb, NULL, nelems), nfree);

		/* the next round hands out exactly the freed slots, in order */
		cursor_reset(&cur, b.alloc, nelems);
		uint32_t prev = 0, got = 0;
		for (uint32_t idx; (idx = take(&cur, b.alloc, nelems)) < nelems; got++) {
			ck_assert(idx % 2 == 1 || idx == nelems - 1);
			ck_assert(got == 0 || idx > prev);
			prev = idx;
		}
		ck_assert_uint_eq(got, nfree);
		ck_assert_uint_eq(bitmap_count_alloc(b.alloc, nelems), nelems);
		guards_intact(&b, nelems);
	}
}
END_TEST

START_TEST(test_clear)
{
	span_bits_t b;
	uint32_t nelems = 100;

	bits_init(&b, nelems);
	memset(b.alloc, 0xff, bitmap_words(nelems) * sizeof(uint64_t));
	memset(b.freeb, 0xff, bitmap_words(nelems) * sizeof(uint64_t));
	bitmap_clear(b.alloc, b.freeb, nelems);
	for (uint32_t w = 0; w < bitmap_words(nelems); w++) {
		ck_assert_uint_eq(b.alloc[w], 0);
		ck_assert_uint_eq(b.freeb[w], 0);
	}
	guards_intact(&b, nelems);
}
END_TEST

START_TEST(test_verify)
{
	span_bits_t b;
	uint32_t nelems = 100;
	const char *why = "unset";

	bits_init(&b, nelems);
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, &why), 0);
	ck_assert_ptr_null(why);

	set_alloc(&b, 99);
	ck_assert_int_eq(bitmap_mark_free(b.alloc, b.freeb, 99), BITMAP_FREED);
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, &why), 0);

	/* an alloc bit at nelems */
	bits_init(&b, nelems);
	set_alloc(&b, 100);
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, &why), 1);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "alloc"));

	/* a free bit beyond nelems, its alloc bit set too */
	bits_init(&b, nelems);
	b.alloc[1] = b.freeb[1] = 1ULL << 63;
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, &why), 1);
	ck_assert_ptr_nonnull(strstr(why, "beyond"));

	/* a free bit without its alloc bit */
	bits_init(&b, nelems);
	b.freeb[0] = 1ULL << 7;
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, &why), 1);
	ck_assert_ptr_nonnull(strstr(why, "without"));

	/* a NULL why is allowed */
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, nelems, NULL), 1);

	/* a full multiple of 64 has no out-of-range bits */
	bits_init(&b, 128);
	b.alloc[0] = b.alloc[1] = ~0ULL;
	ck_assert_int_eq(bitmap_verify(b.alloc, b.freeb, 128, &why), 0);
}
END_TEST

/*
 * Several processes free the objects of one span at once, interleaved so
 * that they hit the same words, while the owner sweeps. Every object must
 * be freed exactly once and no free may be misreported. Halfway through,
 * the children wait until the owner has swept: by then exactly half of the
 * objects must have been swept, however the frees and sweeps interleaved.
 */
#define CONC_NELEMS 1024u
#define CONC_CHILDREN 4
#define CONC_ROUNDS 25

typedef struct shared_span {
	uint64_t alloc[MAXW];
	uint64_t freeb[MAXW];
	_Atomic uint32_t ready;   /* children waiting at the start line */
	_Atomic uint32_t go;
	_Atomic uint32_t halfway; /* children done with their first half */
	_Atomic uint32_t resume;
} shared_span_t;

static void conc_child(shared_span_t *sh, uint32_t k)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
	atomic_fetch_add(&sh->ready, 1);
	while (!atomic_load(&sh->go))
		sched_yield();
	for (uint32_t i = k; i < CONC_NELEMS; i += CONC_CHILDREN) {
		if (i == k + CONC_NELEMS / 2) {
			atomic_fetch_add(&sh->halfway, 1);
			while (!atomic_load(&sh->resume))
				sched_yield();
		}
		if (bitmap_mark_free(sh->alloc, sh->freeb, i) != BITMAP_FREED)
			_exit(10 + (int)k);
		/* a little work between frees, so that the owner's sweeps fall among them */
		for (volatile int spin = 0; spin < 200; spin++)
			;
	}
	_exit(0);
}

START_TEST(test_concurrent_frees)
{
	shared_span_t *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	                         -1, 0);
	ck_assert_ptr_ne(sh, MAP_FAILED);

	for (int round = 0; round < CONC_ROUNDS; round++) {
		uint32_t swept = 0, at_halfway = 0;
		int live = CONC_CHILDREN, failed = 0;

		memset(sh, 0, sizeof(*sh));
		memset(sh->alloc, 0xff, sizeof(sh->alloc));
		for (uint32_t k = 0; k < CONC_CHILDREN; k++) {
			pid_t pid = fork();
			ck_assert_int_ge(pid, 0);
			if (pid == 0)
				conc_child(sh, k);
		}
		while (atomic_load(&sh->ready) < CONC_CHILDREN)
			sched_yield();
		atomic_store(&sh->go, 1);

		while (live > 0) {
			swept += bitmap_sweep(sh->alloc, sh->freeb, NULL, CONC_NELEMS);
			if (!atomic_load(&sh->resume) && atomic_load(&sh->halfway) == CONC_CHILDREN) {
				swept += bitmap_sweep(sh->alloc, sh->freeb, NULL, CONC_NELEMS);
				at_halfway = swept;
				atomic_store(&sh->resume, 1);
			}
			int status;
			if (waitpid(-1, &status, WNOHANG) > 0) {
				live--;
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					failed++;
			}
			sched_yield(); /* on few CPUs, let the children also run side by side */
		}
		swept += bitmap_sweep(sh->alloc, sh->freeb, NULL, CONC_NELEMS);

		ck_assert_msg(failed == 0, "round %d: %d children saw a misreported free", round, failed);
		ck_assert_uint_eq(at_halfway, CONC_NELEMS / 2);
		ck_assert_uint_eq(swept, CONC_NELEMS);
		ck_assert_uint_eq(bitmap_count_alloc(sh->alloc, CONC_NELEMS), 0);
		for (uint32_t w = 0; w < MAXW; w++)
			ck_assert_uint_eq(sh->freeb[w], 0);
	}
	munmap(sh, sizeof(*sh));
}
END_TEST

static Suite *bitmap_suite(void)
{
	Suite *s = suite_create("bitmap");
	TCase *tc = tcase_create("bits");
	tcase_add_test(tc, test_words);
	tcase_add_test(tc, test_mark_free);
	tcase_add_test(tc, test_sweep);
	tcase_add_test(tc, test_sweep_drops_stray_bits);
	tcase_add_test(tc, test_sweep_keeps_pinned);
	tcase_add_test(tc, test_next_free);
	tcase_add_test(tc, test_alloc_cache);
	tcase_add_test(tc, test_alloc_cycle);
	tcase_add_test(tc, test_clear);
	tcase_add_test(tc, test_verify);
	suite_add_tcase(s, tc);

	tc = tcase_create("processes");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_concurrent_frees);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(bitmap_suite);
