// SPDX-License-Identifier: MIT
/*
 * bitmap.c - walks over a span's alloc bits and free bits.
 *
 * The per-object operations (mark free, allocation cache) are inline in
 * bitmap.h; this file holds the loops over a whole span: the owner's sweep,
 * counts, the next free slot, clearing and the bounds check.
 *
 * Concurrency: any process may set free bits at any time. Only the span's
 * owner calls bitmap_sweep and writes alloc bits, so the alloc words need no
 * read-modify-write atomics; they are stored atomically only so that other
 * processes' relaxed loads never see a torn word. The counts and
 * bitmap_verify read a moving target unless the span is quiet.
 */
#include "bitmap.h"

#include <stddef.h>

/* The bits of word w that stand for objects below nelems. */
static uint64_t valid_mask(uint32_t w, uint32_t nelems)
{
	uint32_t left = nelems - w * 64;
	return left >= 64 ? ~0ULL : (1ULL << left) - 1;
}

uint32_t bitmap_sweep(uint64_t *alloc, uint64_t *freeb, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems), freed = 0;

	for (uint32_t w = 0; w < nwords; w++) {
		/* acquire: the freeing process's last writes to the objects happen before their reuse */
		uint64_t f = atomic_load_explicit((_Atomic uint64_t *)&freeb[w], memory_order_acquire);
		if (!f)
			continue;
		uint64_t a = bitmap_load(&alloc[w]);
		/*
		 * A free bit without its alloc bit is left by a sweep cut short (below);
		 * the object is already free, and the bit is dropped and not counted.
		 */
		freed += (uint32_t)__builtin_popcountll(f & a & valid_mask(w, nelems));
		/*
		 * The alloc bits first, then the free bits, and only those read: a
		 * sweep cut short (its process killed) leaves free bits that the next
		 * sweep folds again. The other order would lose them, and leak their
		 * objects for good. Frees that land meanwhile keep their bits.
		 */
		bitmap_store(&alloc[w], a & ~f);
		atomic_fetch_and_explicit((_Atomic uint64_t *)&freeb[w], ~f, memory_order_release);
	}
	return freed;
}

uint32_t bitmap_count_inuse(const uint64_t *alloc, const uint64_t *freeb, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems), n = 0;

	for (uint32_t w = 0; w < nwords; w++) {
		uint64_t live = bitmap_load(&alloc[w]) & ~bitmap_load(&freeb[w]);
		n += (uint32_t)__builtin_popcountll(live & valid_mask(w, nelems));
	}
	return n;
}

uint32_t bitmap_count_alloc(const uint64_t *alloc, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems), n = 0;

	for (uint32_t w = 0; w < nwords; w++)
		n += (uint32_t)__builtin_popcountll(bitmap_load(&alloc[w]) & valid_mask(w, nelems));
	return n;
}

uint32_t bitmap_next_free(const uint64_t *alloc, uint32_t from, uint32_t nelems)
{
	if (from >= nelems)
		return nelems;
	uint32_t nwords = bitmap_words(nelems);
	uint32_t w = from >> 6;
	/* the clear bits of word w at or after from */
	uint64_t clear = ~bitmap_load(&alloc[w]) & (~0ULL << (from & 63));

	for (;;) {
		if (clear) {
			uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(clear);
			return idx < nelems ? idx : nelems;
		}
		if (++w == nwords)
			return nelems;
		clear = ~bitmap_load(&alloc[w]);
	}
}

void bitmap_clear(uint64_t *alloc, uint64_t *freeb, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems);

	for (uint32_t w = 0; w < nwords; w++) {
		bitmap_store(&alloc[w], 0);
		bitmap_store(&freeb[w], 0);
	}
}

int bitmap_verify(const uint64_t *alloc, const uint64_t *freeb, uint32_t nelems, const char **why)
{
	uint32_t nwords = bitmap_words(nelems);
	const char *reason = NULL;

	for (uint32_t w = 0; w < nwords && !reason; w++) {
		uint64_t a = bitmap_load(&alloc[w]), f = bitmap_load(&freeb[w]);
		uint64_t outside = ~valid_mask(w, nelems);
		if (a & outside)
			reason = "alloc bit set at or beyond nelems";
		else if (f & outside)
			reason = "free bit set at or beyond nelems";
		else if (f & ~a)
			reason = "free bit set without its alloc bit";
	}
	if (why)
		*why = reason;
	return reason != NULL;
}
