// SPDX-License-Identifier: MIT
/*
 * bitmap.h - a span's alloc bits and free bits.
 *
 * Object i is in use when alloc bit i is set and free bit i is clear.
 *   - Alloc bits are written only by the span's owner: the client cache
 *     holding the span, or the daemon while the span is in central. Other
 *     processes read them (relaxed atomic loads) to validate a free.
 *   - Free bits are set by any process with an atomic OR, and folded into the
 *     alloc bits by the owner's sweep: the bits of each non-zero free word
 *     are cleared from the alloc word, then from the free word. While a
 *     sweep runs, or after one cut short by a kill, an object may have its
 *     free bit without its alloc bit: free, with its fold under way. The
 *     next sweep finishes it, and every span is swept before it changes
 *     hands, so such a slot is never handed out.
 *   - A pinned object (a root names it, roots.h) is never folded: its free
 *     bit stays set with its alloc bit until heapd unpins it, and the fold
 *     after that frees it. A fold reads the free word, then fences, then
 *     reads the pins, the mirror image of heapd's order when it binds
 *     (roots.h says why that suffices).
 * Bits at or beyond nelems are never set.
 *
 * The allocation cache is Go's allocCache: the complement of the 64 alloc
 * bits starting at a multiple of 64, shifted as slots are taken, so that
 * ctz finds the next free slot.
 */
#ifndef HEAPD_SHM_BITMAP_H
#define HEAPD_SHM_BITMAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

/* Results of bitmap_mark_free. */
enum {
	BITMAP_FREED = 0,          /* the free bit is now set */
	BITMAP_DOUBLE_FREE = 1,    /* the free bit was already set */
	BITMAP_NOT_ALLOCATED = 2,  /* the alloc bit is clear: invalid or double free */
};

/* Words in each bitmap of a span of nelems objects. */
static inline uint32_t bitmap_words(uint32_t nelems)
{
	return (nelems + 63) >> 6;
}

static inline uint64_t bitmap_load(const uint64_t *w)
{
	return atomic_load_explicit((_Atomic uint64_t *)w, memory_order_relaxed);
}

static inline void bitmap_store(uint64_t *w, uint64_t v)
{
	atomic_store_explicit((_Atomic uint64_t *)w, v, memory_order_relaxed);
}

/* The bits of word w that stand for objects below nelems. */
static inline uint64_t bitmap_valid_mask(uint32_t w, uint32_t nelems)
{
	uint32_t left = nelems - w * 64;
	return left >= 64 ? ~0ULL : (1ULL << left) - 1;
}

/*
 * Where a span's pins are (roots.h): the page-map entry of its first page,
 * whose HEAPD_PAGEMAP_PINNED says whether any object of it is pinned, and
 * its pin words. Both are metadata that heapd alone writes.
 */
typedef struct bitmap_pins {
	const uint64_t *flag;
	const uint64_t *words;
} bitmap_pins_t;

/*
 * Pin word w of the span (0 when pins is NULL or the span has none). Where
 * it is ordered against a bind, the caller has issued a seq_cst fence.
 */
static inline uint64_t bitmap_pin_word(const bitmap_pins_t *pins, uint32_t w)
{
	if (!pins || !(atomic_load_explicit((_Atomic uint64_t *)pins->flag, memory_order_relaxed) &
	               HEAPD_PAGEMAP_PINNED))
		return 0;
	return atomic_load_explicit((_Atomic uint64_t *)&pins->words[w], memory_order_relaxed);
}

/*
 * The owner's fold of word w: the free bits set now, but those of pinned
 * objects, are cleared from the alloc word first, then from the free word,
 * and only those read. A fold cut short (its process killed) leaves free
 * bits that the next fold applies again; the other order would lose them,
 * and leak their objects for good. Frees that land meanwhile keep their
 * bits, and so do pinned objects (the top of the file). Returns the alloc
 * word after the fold; *freed (if not NULL) gets the bits folded that were
 * allocated (a free bit without its alloc bit is such a cut-short fold's
 * leftover: dropped, not counted). pins may be NULL (nothing is pinned).
 */
static inline uint64_t bitmap_fold_word(uint64_t *alloc, uint64_t *freeb,
                                        const bitmap_pins_t *pins, uint32_t w, uint64_t *freed)
{
	uint64_t a = bitmap_load(&alloc[w]);
	if (!bitmap_load(&freeb[w])) {
		if (freed)
			*freed = 0;
		return a;
	}
	/* acquire: the freeing process's last writes to the objects happen before their reuse */
	uint64_t f = atomic_load_explicit((_Atomic uint64_t *)&freeb[w], memory_order_acquire);
	if (pins) {
		/* the free word before the pins, against a bind (roots.h) */
		atomic_thread_fence(memory_order_seq_cst);
		f &= ~bitmap_pin_word(pins, w);
	}
	if (freed)
		*freed = f & a;
	if (!f)
		return a;
	a &= ~f;
	bitmap_store(&alloc[w], a);
	atomic_fetch_and_explicit((_Atomic uint64_t *)&freeb[w], ~f, memory_order_release);
	return a;
}

/* Mark object idx free from any process. */
static inline int bitmap_mark_free(const uint64_t *alloc, uint64_t *freeb, uint32_t idx)
{
	uint64_t bit = 1ULL << (idx & 63);
	if (!(bitmap_load(&alloc[idx >> 6]) & bit))
		return BITMAP_NOT_ALLOCATED;
	uint64_t old = atomic_fetch_or_explicit((_Atomic uint64_t *)&freeb[idx >> 6], bit,
	                                        memory_order_release);
	return (old & bit) ? BITMAP_DOUBLE_FREE : BITMAP_FREED;
}

/*
 * The owner's sweep: fold free bits into alloc bits, but pinned objects'
 * (pins may be NULL). Returns the number of objects freed.
 */
uint32_t bitmap_sweep(uint64_t *alloc, uint64_t *freeb, const bitmap_pins_t *pins, uint32_t nelems);

/* Objects in use: popcount(alloc & ~free) over nelems bits (a snapshot, racy by nature). */
uint32_t bitmap_count_inuse(const uint64_t *alloc, const uint64_t *freeb, uint32_t nelems);

/* Alloc bits set (objects the owner has handed out, frees not yet folded). */
uint32_t bitmap_count_alloc(const uint64_t *alloc, uint32_t nelems);

/* First index >= from whose alloc bit is clear, or nelems if none. */
uint32_t bitmap_next_free(const uint64_t *alloc, uint32_t from, uint32_t nelems);

/*
 * The allocCache for the 64 slots from idx (a multiple of 64): the complement
 * of that alloc word, with the bits at or beyond nelems cleared.
 */
static inline uint64_t bitmap_alloc_cache(const uint64_t *alloc, uint32_t idx, uint32_t nelems)
{
	return ~bitmap_load(&alloc[idx >> 6]) & bitmap_valid_mask(idx >> 6, nelems);
}

/* Clear both bitmaps of a span of nelems objects (the daemon, on carving a span). */
void bitmap_clear(uint64_t *alloc, uint64_t *freeb, uint32_t nelems);

/*
 * Check bounds: no bit at or beyond nelems in either map, and no free bit
 * without its alloc bit (a span whose owner may be sweeping it can have
 * those). Returns 0, or 1 with a short reason in why.
 */
int bitmap_verify(const uint64_t *alloc, const uint64_t *freeb, uint32_t nelems, const char **why);

#endif
