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

uint32_t bitmap_sweep(uint64_t *alloc, uint64_t *freeb, const bitmap_pins_t *pins, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems), freed = 0;

	for (uint32_t w = 0; w < nwords; w++) {
		uint64_t bits;
		bitmap_fold_word(alloc, freeb, pins, w, &bits);
		freed += (uint32_t)__builtin_popcountll(bits & bitmap_valid_mask(w, nelems));
	}
	return freed;
}

uint32_t bitmap_count_inuse(const uint64_t *alloc, const uint64_t *freeb, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems), n = 0;

	for (uint32_t w = 0; w < nwords; w++) {
		uint64_t live = bitmap_load(&alloc[w]) & ~bitmap_load(&freeb[w]);
		n += (uint32_t)__builtin_popcountll(live & bitmap_valid_mask(w, nelems));
	}
	return n;
}

uint32_t bitmap_count_alloc(const uint64_t *alloc, uint32_t nelems)
{
	uint32_t nwords = bitmap_words(nelems), n = 0;

	for (uint32_t w = 0; w < nwords; w++)
		n += (uint32_t)__builtin_popcountll(bitmap_load(&alloc[w]) & bitmap_valid_mask(w, nelems));
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
		uint64_t outside = ~bitmap_valid_mask(w, nelems);
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
