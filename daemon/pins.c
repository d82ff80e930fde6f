// SPDX-License-Identifier: MIT
/*
 * pins.c - heapd's pins (see pins.h; the protocol is in shm/roots.h).
 *
 * Entry points: pins_init, pins_pin, pins_unpin, pins_count,
 * pins_clear_stale, pins_check_locked. The book is an open-addressed map
 * from arena offset to count with linear probing; removals shift the run
 * after them back, so the map keeps no tombstones.
 *
 * Write order of a first pin, under the heap lock: the pin bit, then (small
 * spans) the flag on every page of the span, the commit; a seq_cst fence;
 * then the object's bits are read. Of a last unpin: the pin bit, then the
 * flag if the span holds no other pin, the commit; then a large object
 * freed while it was pinned is freed.
 */
#include "pins.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "large.h"
#include "log.h"
#include "report.h"
#include "span.h"

#define PINS_MIN_CAP 64u

int pins_init(pins_t *p, segment_t *seg, central_t *central)
{
	memset(p, 0, sizeof(*p));
	p->seg = seg;
	p->central = central;
	p->cap = PINS_MIN_CAP;
	p->keys = calloc(p->cap, sizeof(*p->keys));
	p->counts = calloc(p->cap, sizeof(*p->counts));
	if (!p->keys || !p->counts) {
		pins_destroy(p);
		return -ENOMEM;
	}
	return 0;
}

void pins_destroy(pins_t *p)
{
	free(p->keys);
	free(p->counts);
	memset(p, 0, sizeof(*p));
}

/* ---- the book ---- */

static uint32_t home(const pins_t *p, uint64_t off)
{
	uint64_t h = off * 0x9e3779b97f4a7c15ULL;
	return (uint32_t)(h >> 32) & (p->cap - 1);
}

/* The slot of off, or of the empty slot where it would go. */
static uint32_t book_find(const pins_t *p, uint64_t off)
{
	uint32_t i = home(p, off);
	while (p->keys[i] != 0 && p->keys[i] != off)
		i = (i + 1) & (p->cap - 1);
	return i;
}

static int book_grow(pins_t *p)
{
	pins_t bigger = *p;
	bigger.cap = p->cap * 2;
	bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
	bigger.counts = calloc(bigger.cap, sizeof(*bigger.counts));
	if (!bigger.keys || !bigger.counts) {
		free(bigger.keys);
		free(bigger.counts);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->cap; i++) {
		if (!p->keys[i])
			continue;
		uint32_t j = book_find(&bigger, p->keys[i]);
		bigger.keys[j] = p->keys[i];
		bigger.counts[j] = p->counts[i];
	}
	free(p->keys);
	free(p->counts);
	*p = bigger;
	return 0;
}

/* Remove the key at slot i, shifting back the entries of the run after it. */
static void book_remove(pins_t *p, uint32_t i)
{
	uint32_t mask = p->cap - 1, j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (p->keys[j] == 0)
			break;
		uint32_t h = home(p, p->keys[j]);
		/* the entry at j may fill i if its home is not in (i, j] (cyclically) */
		if (((j - h) & mask) >= ((j - i) & mask)) {
			p->keys[i] = p->keys[j];
			p->counts[i] = p->counts[j];
			i = j;
		}
	}
	p->keys[i] = 0;
	p->counts[i] = 0;
	p->n--;
}

uint32_t pins_count(const pins_t *p, uint64_t off)
{
	uint32_t i = book_find(p, off);
	return p->keys[i] == off ? p->counts[i] : 0;
}

uint64_t pins_roots(const pins_t *p)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < p->cap; i++)
		n += p->keys[i] ? p->counts[i] : 0;
	return n;
}

/* ---- pin words and flags ---- */

static _Atomic uint64_t *pin_word(const segment_t *seg, uint32_t span, uint32_t idx)
{
	return (_Atomic uint64_t *)&segment_pins(seg, span)[idx >> 6];
}

/* 1 if any object of span (nelems objects) is pinned. */
static int span_has_pins(const segment_t *seg, uint32_t span, uint32_t nelems)
{
	const uint64_t *w = segment_pins(seg, span);
	for (uint32_t i = 0; i < bitmap_words(nelems); i++)
		if (atomic_load_explicit((_Atomic uint64_t *)&w[i], memory_order_relaxed))
			return 1;
	return 0;
}

static int span_flagged(const segment_t *seg, uint32_t span)
{
	return (seg->pagemap[span] & HEAPD_PAGEMAP_PINNED) != 0;
}

/* Clear o's pin bit and, for a small span left without pins, its flag; the commit. Heap lock. */
static void clear_pin_locked(pins_t *p, const roots_obj_t *o)
{
	segment_t *seg = p->seg;
	uint64_t bit = 1ULL << (o->idx & 63);

	pageheap_assert_locked(p->central->heap);
	atomic_fetch_and_explicit(pin_word(seg, o->span, o->idx), ~bit, memory_order_relaxed);
	if (!o->large && span_flagged(seg, o->span) && !span_has_pins(seg, o->span, o->nelems))
		span_set_pinned(seg, o->span, 0);
	shm_commit();
}

/* The object at off is still o, allocated, and (live) not freed. */
static int qualifies(const segment_t *seg, uint64_t off, const roots_obj_t *o, int live)
{
	roots_obj_t now;
	int alloc, freed;

	if (roots_object(seg, off, &now) < 0 || now.span != o->span || now.idx != o->idx ||
	    now.nelems != o->nelems || now.large != o->large)
		return 0;
	roots_object_bits(seg, o, &alloc, &freed);
	return alloc && !(live && freed);
}

int pins_pin(pins_t *p, uint64_t off, const roots_obj_t *o, int live)
{
	segment_t *seg = p->seg;
	pageheap_t *heap = p->central->heap;
	uint64_t bit = 1ULL << (o->idx & 63);
	uint32_t i = book_find(p, off);
	int ok;

	if (p->keys[i] == off) {
		/* pinned already: its alloc bit cannot go, but it may have been freed since */
		pageheap_enter(heap);
		ok = qualifies(seg, off, o, live);
		pageheap_leave(heap);
		if (!ok)
			return -EINVAL;
		p->counts[i]++;
		return 0;
	}
	if ((p->n + 1) * 2 > p->cap) {
		if (book_grow(p) < 0)
			return -ENOMEM;
		i = book_find(p, off);
	}

	pageheap_enter(heap);
	roots_obj_t now;
	ok = roots_object(seg, off, &now) == 0 && now.span == o->span && now.idx == o->idx &&
	     now.large == o->large;
	if (ok) {
		_Atomic uint64_t *w = pin_word(seg, o->span, o->idx);
		int changed = 0;
		if (!(atomic_load_explicit(w, memory_order_relaxed) & bit)) {
			atomic_fetch_or_explicit(w, bit, memory_order_relaxed);
			changed = 1;
		}
		if (!o->large && !span_flagged(seg, o->span)) {
			span_set_pinned(seg, o->span, 1);
			changed = 1;
		}
		if (changed)
			shm_commit();
		/* the pin before the bits: a fold reads them the other way round (shm/roots.h) */
		atomic_thread_fence(memory_order_seq_cst);
		ok = qualifies(seg, off, o, live);
		if (!ok)
			clear_pin_locked(p, o);
	}
	pageheap_leave(heap);
	if (!ok)
		return -EINVAL;
	p->keys[i] = off;
	p->counts[i] = 1;
	p->n++;
	return 0;
}

void pins_unpin(pins_t *p, uint64_t off)
{
	segment_t *seg = p->seg;
	uint32_t i = book_find(p, off);
	roots_obj_t o;

	if (p->keys[i] != off) {
		assert(!"pins_unpin: the object is not pinned");
		return;
	}
	if (--p->counts[i] > 0)
		return;
	book_remove(p, i);
	pageheap_enter(p->central->heap);
	/* A pinned object's span is never freed, so it is still there. */
	if (roots_object(seg, off, &o) == 0) {
		clear_pin_locked(p, &o);
		if (o.large)
			large_unpinned_locked(p->central, o.span);
	}
	pageheap_leave(p->central->heap);
}

/* ---- recovery ---- */

/*
 * The pin bits of word w at page pg that the book backs: none unless pg
 * starts an in-use span whose object idx the book counts.
 */
static uint64_t backed_bits(const pins_t *p, uint32_t pg, uint32_t w, uint64_t bits)
{
	const segment_t *seg = p->seg;
	uint64_t keep = 0;

	for (uint64_t b = bits; b; b &= b - 1) {
		uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(b);
		uint64_t off = 0;
		roots_obj_t o;
		const shm_span_t *s = &seg->spans[pg];
		if (pg < seg->hdr->npages_grown && s->start == pg && s->state == SPAN_LARGE)
			off = idx == 0 ? seg->hdr->pages_off + ((uint64_t)pg << HEAPD_PAGE_SHIFT) : 0;
		else if (pg < seg->hdr->npages_grown && s->start == pg && s->state == SPAN_SMALL &&
		         s->sizeclass > 0 && s->sizeclass < SIZECLASS_COUNT)
			off = seg->hdr->pages_off + ((uint64_t)pg << HEAPD_PAGE_SHIFT) +
			      (uint64_t)idx * sizeclass_size[s->sizeclass];
		if (off && roots_object(seg, off, &o) == 0 && o.span == pg && o.idx == idx &&
		    pins_count(p, off) > 0)
			keep |= b & -b;
	}
	return keep;
}

uint64_t pins_clear_stale(pins_t *p)
{
	segment_t *seg = p->seg;
	const shm_header_t *hdr = seg->hdr;
	uint64_t cleared = 0, end, words = (uint64_t)seg->npages_max * HEAPD_PIN_WORDS_PER_PAGE;
	uint64_t i = 0;

	pageheap_enter(p->central->heap);
	/* 1. Every pin bit the book does not back, reading only what the file holds. */
	while (i < words) {
		uint64_t at = hdr->pins_off + i * sizeof(uint64_t);
		uint64_t d = segment_meta_next_data(seg, at, &end);
		if (d >= hdr->pins_off + hdr->pins_size)
			break;
		i = (d - hdr->pins_off) / sizeof(uint64_t);
		uint64_t stop = (end - hdr->pins_off) / sizeof(uint64_t);
		for (; i < words && i < stop; i++) {
			uint64_t v = atomic_load_explicit((_Atomic uint64_t *)&seg->pins[i], memory_order_relaxed);
			if (!v)
				continue;
			uint32_t pg = (uint32_t)(i / HEAPD_PIN_WORDS_PER_PAGE);
			uint64_t keep = backed_bits(p, pg, (uint32_t)(i % HEAPD_PIN_WORDS_PER_PAGE), v);
			if (keep == v)
				continue;
			atomic_store_explicit((_Atomic uint64_t *)&seg->pins[i], keep, memory_order_relaxed);
			shm_commit();
			cleared += (uint64_t)__builtin_popcountll(v & ~keep);
		}
	}
	/* 2. Every small span's flag says whether it holds pins. */
	span_walk_t w;
	uint32_t pg, n;
	int kind;
	span_walk_start(&w, seg, 0);
	while ((kind = span_walk_next(&w, &pg, &n)) != SPAN_WALK_END) {
		const shm_span_t *s = &seg->spans[pg];
		/* A span the book pins an object of was flagged by pins_pin; others may be stale. */
		if (kind != SPAN_WALK_SPAN || s->state == SPAN_FREE || !span_flagged(seg, pg))
			continue;
		if (s->state == SPAN_SMALL && s->sizeclass > 0 && s->sizeclass < SIZECLASS_COUNT &&
		    span_has_pins(seg, pg, sizeclass_nelems[s->sizeclass]))
			continue;
		span_set_pinned(seg, pg, 0);
		shm_commit();
	}
	pageheap_leave(p->central->heap);
	return cleared;
}

/* ---- the check ---- */

void pins_check_locked(const pins_t *p, check_report_t *r)
{
	const segment_t *seg = p->seg;
	uint32_t n = 0;

	pageheap_assert_locked(p->central->heap);
	for (uint32_t i = 0; i < p->cap; i++) {
		uint64_t off = p->keys[i];
		roots_obj_t o;
		if (!off)
			continue;
		n++;
		if (roots_object(seg, off, &o) < 0) {
			report_add(r, "pins: offset %llu is pinned but is no object start",
			           (unsigned long long)off);
			continue;
		}
		if (!roots_object_pinned(seg, &o))
			report_add(r, "pins: object at offset %llu (span %u, object %u) has %u roots but no "
			              "pin bit", (unsigned long long)off, o.span, o.idx, p->counts[i]);
	}
	if (n != p->n)
		report_add(r, "pins: the book holds %u objects, its count says %u", n, p->n);
}
