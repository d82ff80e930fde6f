// SPDX-License-Identifier: MIT
/*
 * span.c - every write to a span descriptor's geometry, to the page map and
 * to a span's bitmap words, in commit order; and the walk of the span
 * table (see span.h for the state diagram and the rules).
 *
 * Why each order is safe, given that a restarted heapd trusts only a walk
 * of the descriptors from page 0 (pageheap.c, rebuild) and recovery's
 * reading of each span (daemon/recovery.c):
 *   - span_carve: the free pieces' descriptors are whole before f shrinks,
 *     and the new in-use span's fields are written before its state. Cut
 *     short before the commit, the walk sees f as it was, and the new
 *     descriptors inside it are stale (the rebuild makes them DEAD); after
 *     it, f and the pieces tile the same pages. Until its state is LARGE
 *     the new span is a stale descriptor inside free pages. A LARGE span
 *     without alloc bit 0 is no object: recovery frees it.
 *   - span_absorb: needzero first (a kill then leaves a free span that
 *     says "dirty", which is merely cautious), then a's npages, which is
 *     the commit; b's descriptor dies last (before that, the walk jumps over
 *     it; after, it is dead).
 *   - span_make_small: the class is in the page map before the state says
 *     SMALL, so a free never finds a small span's page without its class.
 *   - span_large_object: alloc bit 0 is the commit; before it, the span is
 *     no object and recovery frees it.
 *   - span_make_free: the records of sampled objects still in it are
 *     marked freed (shm/profrec.h); then the bitmaps, and every page's
 *     entry loses its class, so a kill leaves an in-use span with no
 *     object, which recovery frees (a record already marked freed is right
 *     either way; the rebuild maps the pages of in-use spans again); then
 *     the state, and only then are the class and owner cleared in the
 *     descriptor (a small span without its class would look impossible to
 *     recovery).
 *   - span_quarantine: everything but the state, then the state.
 */
#include "span.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "profrec.h"

#define NIL HEAPD_NIL

_Atomic uint64_t shm_commit_kill_at;
_Atomic uint64_t shm_commits;

void shm_commit_count(void)
{
	uint64_t n = atomic_fetch_add_explicit(&shm_commits, 1, memory_order_relaxed) + 1;
	if (n == atomic_load_explicit(&shm_commit_kill_at, memory_order_relaxed))
		_exit(SHM_COMMIT_KILLED);
}

void shm_commit_arm_from_env(void)
{
	const char *s = getenv("HEAPD_TEST_KILL_AFTER_COMMITS");
	char *end;
	if (!s || !*s)
		return;
	unsigned long long n = strtoull(s, &end, 10);
	if (*end == '\0')
		atomic_store(&shm_commit_kill_at, (uint64_t)n);
}

/* Every bitmap of span id (alloc, free, sampled): all of its first page's words. */
static void clear_bits(segment_t *seg, uint32_t id)
{
	uint64_t *w = segment_allocbits(seg, id);
	for (uint32_t i = 0; i < HEAPD_BITS_WORDS_PER_PAGE; i++)
		bitmap_store(&w[i], 0);
}

static void set_pagemap(segment_t *seg, uint32_t page, uint32_t span, uint32_t sizeclass)
{
	seg->pagemap[page] = heapd_pagemap_entry(span, sizeclass);
}

/* Every field but the state, for a span that is not free. */
static void fill_inuse(shm_span_t *s, uint32_t id, uint32_t npages, uint8_t needzero,
                       uint32_t sweepgen)
{
	s->start = id;
	s->npages = npages;
	s->sizeclass = 0;
	s->needzero = needzero;
	s->list = 0;
	s->owner = 0;
	atomic_store_explicit(&s->sweepgen, sweepgen, memory_order_relaxed);
	s->npreleased = 0;
	s->allocount = 0;
	s->unusedsince = 0;
	s->next = s->prev = s->left = s->right = NIL;
	s->charge = 0;
	s->charge_uid = NIL;
}

void span_init_free(segment_t *seg, uint32_t id, uint32_t npages, uint8_t needzero,
                    uint32_t npreleased, uint64_t unusedsince)
{
	shm_span_t *s = &seg->spans[id];

	fill_inuse(s, id, npages, needzero, 0);
	s->npreleased = npreleased;
	s->unusedsince = unusedsince;
	s->state = SPAN_FREE;
	set_pagemap(seg, id, id, 0);
	set_pagemap(seg, id + npages - 1, id, 0);
}

uint32_t span_carve(segment_t *seg, uint32_t f, uint32_t off, uint32_t n, uint32_t sweepgen)
{
	shm_span_t *sf = &seg->spans[f];
	uint32_t total = sf->npages, id = f + off, tail = id + n, ntail = total - off - n;
	uint8_t needzero = sf->needzero;
	uint64_t unusedsince = sf->unusedsince;
	uint32_t head_rel = 0, tail_rel = 0, dropped;

	assert(sf->state == SPAN_FREE && off + n <= total);
	if (sf->npreleased == total) {
		/* fully released: the pieces stay so, and only the carved pages leave the count */
		head_rel = off;
		tail_rel = ntail;
		dropped = n;
	} else {
		/* which pages are punched is unknown: the count forgets them all */
		dropped = sf->npreleased;
	}

	if (ntail)
		span_init_free(seg, tail, ntail, needzero, tail_rel, unusedsince);
	if (off)
		span_init_free(seg, id, n, needzero, 0, unusedsince); /* stale until retyped below */
	shm_commit();
	if (off) {
		sf->npreleased = head_rel;
		sf->npages = off; /* the commit */
		shm_commit();
		set_pagemap(seg, f + off - 1, f, 0);
	} else if (ntail) {
		sf->npages = n; /* the commit: the tail is a span of its own */
	}
	shm_commit();

	shm_span_t *s = &seg->spans[id];
	clear_bits(seg, id);
	fill_inuse(s, id, n, needzero, sweepgen);
	s->gen++;
	shm_commit();
	s->state = SPAN_LARGE;
	for (uint32_t i = 0; i < n; i++)
		set_pagemap(seg, id + i, id, 0);
	shm_commit();
	return dropped;
}

void span_absorb(segment_t *seg, uint32_t a, uint32_t b)
{
	shm_span_t *sa = &seg->spans[a], *sb = &seg->spans[b];

	sa->needzero |= sb->needzero;
	shm_commit();
	sa->npages += sb->npages;
	shm_commit();
	set_pagemap(seg, a + sa->npages - 1, a, 0);
	sa->npreleased += sb->npreleased;
	sb->state = SPAN_DEAD;
	shm_commit();
}

void span_make_small(segment_t *seg, uint32_t id, uint32_t sizeclass, uint32_t sweepgen)
{
	shm_span_t *s = &seg->spans[id];

	assert(s->state == SPAN_LARGE);
	clear_bits(seg, id);
	for (uint32_t i = 0; i < s->npages; i++)
		set_pagemap(seg, id + i, id, sizeclass);
	fill_inuse(s, id, s->npages, s->needzero, sweepgen);
	s->sizeclass = (uint8_t)sizeclass;
	s->gen++;
	shm_commit();
	s->state = SPAN_SMALL; /* the commit: from here on it is a small span */
	shm_commit();
}

void span_large_object(segment_t *seg, uint32_t id, uint32_t owner)
{
	shm_span_t *s = &seg->spans[id];

	assert(s->state == SPAN_LARGE);
	bitmap_store(segment_freebits(seg, id, 1), 0);
	s->unusedsince = 0; /* when large_sweep first saw the free bit; 0: not yet */
	s->owner = owner;
	s->gen++;
	shm_commit();
	bitmap_store(segment_allocbits(seg, id), 1); /* the object exists from here on */
	shm_commit();
}

void span_make_free(segment_t *seg, uint32_t id, uint64_t now)
{
	shm_span_t *s = &seg->spans[id];
	uint32_t n = s->npages;

	prof_span_gone(seg, id); /* sampled objects still marked: their records are freed */
	clear_bits(seg, id);
	/*
	 * No page keeps its class: a stale class on an inner page would lead a
	 * free's fast path, which reads only the page map, into the bitmaps of
	 * whatever span starts here next (a double free of an old object
	 * would free a new one). Class 0 sends such a free to the slow path,
	 * which reads the descriptor. Killed here, the span is still in use
	 * with no object; the rebuild maps its pages again. A large span's
	 * pages have no class already (span_carve), unless a span_make_small
	 * was cut short, which writes its first page first.
	 */
	if (s->state == SPAN_SMALL || heapd_pagemap_class(seg->pagemap[id]))
		for (uint32_t i = 0; i < n; i++)
			set_pagemap(seg, id + i, id, 0);
	s->needzero = 1;
	s->npreleased = 0;
	s->unusedsince = now;
	s->next = s->prev = s->left = s->right = NIL;
	shm_commit();
	/*
	 * The commit comes before the class and owner are cleared: killed
	 * before it, this is still a whole in-use span of its class with no
	 * object, which recovery frees; a small span with class 0 would look
	 * impossible, and be quarantined for good.
	 */
	s->state = SPAN_FREE;
	shm_commit();
	fill_inuse(s, id, n, 1, 0);
	s->unusedsince = now;
	shm_commit();
}

void span_quarantine(segment_t *seg, uint32_t p, uint32_t npages)
{
	shm_span_t *s = &seg->spans[p];

	clear_bits(seg, p);
	bitmap_store(segment_allocbits(seg, p), 1);
	for (uint32_t i = 0; i < npages; i++)
		set_pagemap(seg, p + i, p, 0); /* no class for a free to find */
	fill_inuse(s, p, npages, 1, 0);
	s->gen++;
	shm_commit();
	s->state = SPAN_LARGE;
	shm_commit();
}

void span_mark_released(segment_t *seg, uint32_t id)
{
	shm_span_t *s = &seg->spans[id];

	s->npreleased = s->npages;
	shm_commit();
	s->needzero = 0; /* punched pages read as zero */
}

void span_map_pages(segment_t *seg, uint32_t id)
{
	const shm_span_t *s = &seg->spans[id];

	if (s->state == SPAN_FREE) {
		/* every page without a class (see span_make_free), the ends exact */
		for (uint32_t i = 0; i < s->npages; i++)
			if (i == 0 || i + 1 == s->npages || heapd_pagemap_class(seg->pagemap[id + i]))
				set_pagemap(seg, id + i, id, 0);
		return;
	}
	uint32_t k = s->state == SPAN_SMALL ? s->sizeclass : 0;
	uint64_t pinned = seg->pagemap[id] & HEAPD_PAGEMAP_PINNED;
	for (uint32_t i = 0; i < s->npages; i++)
		seg->pagemap[id + i] = heapd_pagemap_entry(id, k) | pinned;
}

void span_set_pinned(segment_t *seg, uint32_t id, int on)
{
	const shm_span_t *s = &seg->spans[id];
	uint32_t k = s->state == SPAN_SMALL ? s->sizeclass : 0;
	uint64_t e = heapd_pagemap_entry(id, k) | (on ? HEAPD_PAGEMAP_PINNED : 0);

	assert(s->state == SPAN_SMALL || s->state == SPAN_LARGE);
	for (uint32_t i = 0; i < s->npages; i++)
		atomic_store_explicit((_Atomic uint64_t *)&seg->pagemap[id + i], e, memory_order_relaxed);
}

void span_repair(segment_t *seg, uint64_t now)
{
	uint32_t grown = seg->hdr->npages_grown, prev_free = NIL, p, n;
	span_walk_t w;
	int kind;

	span_walk_start(&w, seg, 0);
	while ((kind = span_walk_next(&w, &p, &n)) != SPAN_WALK_END) {
		shm_span_t *s = &seg->spans[p];
		if (kind == SPAN_WALK_GAP) {
			if (s->state == SPAN_SMALL || s->state == SPAN_LARGE)
				span_quarantine(seg, p, n);
			else
				span_init_free(seg, p, n, 1, 0, now);
		} else if (s->start != p) {
			s->start = p; /* a wrong start is forgiven, so that no in-use span is swallowed */
		}
		for (uint32_t i = p + 1; i < p + n && i < grown; i++)
			if (seg->spans[i].state != SPAN_DEAD)
				seg->spans[i].state = SPAN_DEAD;
		if (s->state != SPAN_FREE) {
			s->npreleased = 0;
			prev_free = NIL;
			continue;
		}
		/* a free cut short after its commit may have left in-use fields */
		s->sizeclass = 0;
		s->owner = 0;
		s->list = 0;
		s->allocount = 0;
		s->charge = 0;
		s->charge_uid = NIL;
		s->next = s->prev = s->left = s->right = NIL;
		if (s->npreleased > n)
			s->npreleased = n;
		if (s->unusedsince > now)
			s->unusedsince = now;
		if (prev_free == NIL) {
			prev_free = p;
			continue;
		}
		shm_span_t *pf = &seg->spans[prev_free];
		if (s->unusedsince > pf->unusedsince)
			pf->unusedsince = s->unusedsince;
		span_absorb(seg, prev_free, p);
	}
}

int span_walk_next(span_walk_t *w, uint32_t *id, uint32_t *n)
{
	const segment_t *seg = w->seg;
	const shm_span_t *spans = seg->spans;
	uint32_t grown = seg->hdr->npages_grown, p = w->p;

	if (grown > seg->npages_max)
		grown = seg->npages_max;
	if (w->n) {
		if (w->kind == SPAN_WALK_GAP) {
			p += w->n;
		} else if (p < grown && span_plausible(&spans[p], p, grown)) {
			p += spans[p].npages; /* as it is now: it may have absorbed its successor */
		} else {
			/*
			 * The span we stood on is gone: merged into the free span before it,
			 * whose last page (the page before ours, then) still maps to it.
			 */
			uint32_t b = p > 0 ? heapd_pagemap_span(seg->pagemap[p - 1]) : NIL;
			if (b < p && span_plausible(&spans[b], b, grown) && b + spans[b].npages > p) {
				p = b + spans[b].npages;
			} else {
				/* the tiling changed more than that: the next descriptor that starts a span */
				for (p++; p < grown && !span_plausible(&spans[p], p, grown); p++)
					;
			}
		}
	}
	w->p = p;
	w->n = 0;
	if (p >= grown) {
		w->kind = SPAN_WALK_END;
		return SPAN_WALK_END;
	}
	if (span_plausible(&spans[p], p, grown)) {
		w->n = spans[p].npages;
		w->kind = SPAN_WALK_SPAN;
	} else {
		uint32_t q = p + 1;
		while (q < grown && !span_plausible(&spans[q], q, grown))
			q++;
		w->n = q - p;
		w->kind = SPAN_WALK_GAP;
	}
	*id = p;
	*n = w->n;
	return w->kind;
}
