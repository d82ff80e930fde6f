// SPDX-License-Identifier: MIT
/*
 * pageheap.c - the page heap: spans of pages carved from the arena, in the
 * daemon.
 *
 * Structures. The truth lives in the segment: span descriptors (spans[start]),
 * the page map and the counters in the header, all written through
 * shm/span.c. The daemon keeps two indexes of the free spans, threaded
 * through the descriptors' link fields:
 *   - h->free[n], n < HEAPD_MAX_LIST: a doubly linked list (next/prev) of the
 *     free spans of exactly n pages. New entries go at the head (LIFO), so a
 *     recently freed span, whose pages are still warm and unreleased, is
 *     reused first. Lists are not kept in address order: that would cost a
 *     walk of the list on every insert under the heap lock.
 *   - h->large: a treap (left/right) of the free spans of HEAPD_MAX_LIST pages
 *     or more, ordered by (npages, start). A node's priority is a hash of its
 *     start page, so the tree needs no extra field and its shape depends only
 *     on the set of keys. There are no parent links: insert splits the
 *     subtree where the new node belongs, remove merges the node's children,
 *     both walking down with a pointer to the link being rewritten.
 *
 * Allocating n pages (pageheap_alloc_locked):
 *   1. Take the head of the first non-empty list h->free[n..127] (a bitmap
 *      of the non-empty lists finds it); failing that, the smallest span of
 *      the tree with npages >= n, lowest start among equals. So the smallest
 *      fitting span always wins. An aligned request looks for n + align - 1.
 *   2. Nothing fits: grow the heap into the file's reservation (grow_locked)
 *      and search again. When even the whole remaining reservation cannot
 *      satisfy the request, fail with -ENOMEM before changing anything.
 *   3. Carve the span (span_carve): the pieces before and after go back to
 *      the heap as free spans; the n pages become an in-use SPAN_LARGE span
 *      with no object, every page mapped to it.
 *
 * Freeing a span (pageheap_free_locked):
 *   1. span_make_free: bitmaps cleared, needzero = 1, unusedsince = now.
 *   2. Coalesce with a free span ending just before it (found through the
 *      page map entry of the page before) and one starting just after it
 *      (span_absorb). The lower span's descriptor survives.
 *   3. Put the result on its list or in the tree.
 *
 * Crash safety. A restarted daemon trusts only a walk of the descriptors
 * from page 0, jumping by npages (pageheap_init, rebuild_locked). span.c
 * orders each change so that the walk sees the old tiling or the new one,
 * possibly with two adjacent free spans or a stale descriptor inside a span,
 * both of which the rebuild repairs. Growth writes the new free span's
 * descriptor and its page-map ends, then npages_grown (the commit); a kill
 * in between leaves those beyond npages_grown, where no walk looks: the
 * rebuild clears their page-map entries, and the next growth writes the
 * descriptor again.
 *
 * Released pages: npreleased counts a free span's pages punched out of the
 * file. When a fully released span is split, every piece stays fully
 * released and only the pages handed out leave hdr->pages_released; when a
 * partly released span is split, which pages are punched is unknown, so its
 * npreleased is dropped from the count and the pieces start at 0.
 *
 * Locks: h->lock guards the indexes, the span geometry and the header
 * counters. Public functions take it; *_locked functions assert it is held.
 */
#include "pageheap.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "clock.h"
#include "sizeclass.h"
#include "span.h"

#define NIL HEAPD_NIL

static __thread pageheap_t *lock_holder; /* the heap this thread holds the lock of, for asserts */

void pageheap_enter(pageheap_t *h)
{
	pthread_mutex_lock(&h->lock);
	lock_holder = h;
}

void pageheap_leave(pageheap_t *h)
{
	assert(lock_holder == h);
	lock_holder = NULL;
	pthread_mutex_unlock(&h->lock);
}

void pageheap_assert_locked(pageheap_t *h)
{
	assert(lock_holder == h);
	(void)h;
}

static inline shm_span_t *S(const pageheap_t *h, uint32_t id)
{
	return &h->seg->spans[id];
}

/* ---- free lists ---- */

static void list_push(pageheap_t *h, uint32_t id)
{
	shm_span_t *s = S(h, id);
	uint32_t n = s->npages, head = h->free[n];
	s->prev = NIL;
	s->next = head;
	if (head != NIL)
		S(h, head)->prev = id;
	h->free[n] = id;
	h->nonempty[n >> 6] |= 1ULL << (n & 63);
}

static void list_remove(pageheap_t *h, uint32_t id)
{
	shm_span_t *s = S(h, id);
	uint32_t n = s->npages;
	if (s->prev != NIL)
		S(h, s->prev)->next = s->next;
	else if ((h->free[n] = s->next) == NIL)
		h->nonempty[n >> 6] &= ~(1ULL << (n & 63));
	if (s->next != NIL)
		S(h, s->next)->prev = s->prev;
	s->next = s->prev = NIL;
}

/* The shortest non-empty list of at least want pages, or 0. */
static uint32_t list_first_fit(const pageheap_t *h, uint32_t want)
{
	for (uint32_t w = want >> 6; w < HEAPD_MAX_LIST / 64; w++) {
		uint64_t bits = h->nonempty[w];
		if (w == want >> 6)
			bits &= ~0ULL << (want & 63);
		if (bits)
			return w * 64 + (uint32_t)__builtin_ctzll(bits);
	}
	return 0;
}

/* ---- the treap of large free spans ---- */

/* A node's priority: a hash of its start page (ties broken by the page). */
static inline uint32_t prio(uint32_t id)
{
	uint32_t x = id;
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

/* a belongs above b in the treap. */
static inline int above(uint32_t a, uint32_t b)
{
	uint32_t pa = prio(a), pb = prio(b);
	return pa > pb || (pa == pb && a < b);
}

/* Key order: (npages, start). */
static inline int key_less(const pageheap_t *h, uint32_t a, uint32_t b)
{
	uint32_t na = S(h, a)->npages, nb = S(h, b)->npages;
	return na < nb || (na == nb && a < b);
}

static void tree_insert(pageheap_t *h, uint32_t id)
{
	uint32_t *link = &h->large;
	while (*link != NIL && above(*link, id))
		link = key_less(h, id, *link) ? &S(h, *link)->left : &S(h, *link)->right;

	/* Split the subtree at *link into keys below id and keys above it. */
	shm_span_t *x = S(h, id);
	uint32_t t = *link, *lo = &x->left, *hi = &x->right;
	while (t != NIL) {
		if (key_less(h, t, id)) {
			*lo = t;
			lo = &S(h, t)->right;
			t = *lo;
		} else {
			*hi = t;
			hi = &S(h, t)->left;
			t = *hi;
		}
	}
	*lo = *hi = NIL;
	x->next = x->prev = NIL;
	*link = id;
}

static void tree_remove(pageheap_t *h, uint32_t id)
{
	uint32_t *link = &h->large;
	while (*link != id) {
		assert(*link != NIL);
		link = key_less(h, id, *link) ? &S(h, *link)->left : &S(h, *link)->right;
	}
	/* Merge the two children in place of the node. */
	shm_span_t *x = S(h, id);
	uint32_t a = x->left, b = x->right;
	while (a != NIL && b != NIL) {
		if (above(a, b)) {
			*link = a;
			link = &S(h, a)->right;
			a = *link;
		} else {
			*link = b;
			link = &S(h, b)->left;
			b = *link;
		}
	}
	*link = a != NIL ? a : b;
	x->left = x->right = NIL;
}

/* The smallest span with npages >= want, lowest start among equals, or NIL. */
static uint32_t tree_best_fit(const pageheap_t *h, uint32_t want)
{
	uint32_t best = NIL;
	for (uint32_t t = h->large; t != NIL;) {
		if (S(h, t)->npages >= want) {
			best = t;
			t = S(h, t)->left;
		} else {
			t = S(h, t)->right;
		}
	}
	return best;
}

/* ---- both indexes ---- */

static void index_insert(pageheap_t *h, uint32_t id)
{
	if (S(h, id)->npages < HEAPD_MAX_LIST)
		list_push(h, id);
	else
		tree_insert(h, id);
}

static void index_remove(pageheap_t *h, uint32_t id)
{
	if (S(h, id)->npages < HEAPD_MAX_LIST)
		list_remove(h, id);
	else
		tree_remove(h, id);
}

/* Take the smallest free span of at least want pages out of the index, or NIL. */
static uint32_t index_take(pageheap_t *h, uint32_t want)
{
	uint32_t n = want < HEAPD_MAX_LIST ? list_first_fit(h, want) : 0;
	if (n) {
		uint32_t id = h->free[n];
		list_remove(h, id);
		return id;
	}
	uint32_t id = tree_best_fit(h, want);
	if (id != NIL)
		tree_remove(h, id);
	return id;
}

/* ---- geometry changes ---- */

/* The free span ending just before page p, or NIL. */
static uint32_t free_before(const pageheap_t *h, uint32_t p)
{
	if (p == 0)
		return NIL;
	uint32_t id = segment_pagemap_span(h->seg, p - 1);
	if (id >= p)
		return NIL;
	const shm_span_t *s = S(h, id);
	if (s->state != SPAN_FREE || s->start != id || id + s->npages != p)
		return NIL;
	return id;
}

/* The free span starting at page p, or NIL. */
static uint32_t free_at(const pageheap_t *h, uint32_t p)
{
	if (p >= h->seg->hdr->npages_grown)
		return NIL;
	const shm_span_t *s = S(h, p);
	return s->state == SPAN_FREE && s->start == p ? p : NIL;
}

/* Free span b (out of the index), just after free span a (out of it too), joins a. */
static void absorb_locked(pageheap_t *h, uint32_t a, uint32_t b)
{
	span_absorb(h->seg, a, b);
}

/*
 * Add at least enough pages to the heap for a span of want pages, counting a
 * free span at the end of the heap that the new pages join. -ENOMEM, with
 * nothing changed, when the reservation cannot cover it.
 */
static int grow_locked(pageheap_t *h, uint32_t want)
{
	shm_header_t *hdr = h->seg->hdr;
	uint32_t grown = hdr->npages_grown;
	uint32_t room = h->seg->npages_max - grown;
	uint32_t last = free_before(h, grown);
	uint32_t trail = last != NIL ? S(h, last)->npages : 0;
	uint32_t need = want > trail ? want - trail : 1;

	if (need > room)
		return -ENOMEM;
	uint32_t g = need > h->grow_pages ? need : h->grow_pages;
	if (g > room)
		g = room;

	/* Descriptor (and its page map ends), then npages_grown: the commit. */
	span_init_free(h->seg, grown, g, 0, 0, heapd_now_ns());
	shm_commit();
	hdr->npages_grown = grown + g;
	shm_commit();
	hdr->pages_free += g;

	uint32_t id = grown;
	if (last != NIL) {
		index_remove(h, last);
		absorb_locked(h, last, grown);
		id = last;
	}
	index_insert(h, id);
	return 0;
}

/* ---- public entry points ---- */

static void rebuild_locked(pageheap_t *h);

int pageheap_init(pageheap_t *h, segment_t *seg)
{
	int rc;

	memset(h, 0, sizeof(*h));
	if (!seg || !seg->hdr || !seg->writable_meta)
		return -EINVAL;
	h->seg = seg;
	h->grow_pages = PAGEHEAP_GROW_PAGES;
	for (uint32_t i = 0; i < HEAPD_MAX_LIST; i++)
		h->free[i] = NIL;
	h->large = NIL;
	rc = pthread_mutex_init(&h->lock, NULL);
	if (rc != 0)
		return -rc;

	/* Even a heap that never grew: its first growth may have been cut short (grow_locked). */
	pageheap_enter(h);
	rebuild_locked(h);
	pageheap_leave(h);
	return 0;
}

void pageheap_destroy(pageheap_t *h)
{
	if (!h->seg)
		return;
	pthread_mutex_destroy(&h->lock);
	h->seg = NULL;
}

int pageheap_alloc_locked(pageheap_t *h, uint32_t npages, uint32_t align_pages, uint32_t *span)
{
	shm_header_t *hdr = h->seg->hdr;

	pageheap_assert_locked(h);
	if (npages == 0 || align_pages == 0 || (align_pages & (align_pages - 1)) != 0)
		return -EINVAL;
	uint64_t want = (uint64_t)npages + align_pages - 1;
	if (want > h->seg->npages_max)
		return -ENOMEM;
	uint32_t f = index_take(h, (uint32_t)want);
	if (f == NIL) {
		int rc = grow_locked(h, (uint32_t)want);
		if (rc < 0)
			return rc;
		f = index_take(h, (uint32_t)want);
		assert(f != NIL);
	}
	/*
	 * The arena offset of page p is pages_off + p pages: align p + phase,
	 * where phase is pages_off in pages, to align_pages.
	 */
	uint32_t off = 0;
	if (align_pages > 1) {
		uint32_t phase = (uint32_t)(hdr->pages_off >> HEAPD_PAGE_SHIFT);
		off = (align_pages - ((f + phase) & (align_pages - 1))) & (align_pages - 1);
	}
	uint32_t total = S(h, f)->npages, ntail = total - off - npages;
	uint32_t sg = atomic_load_explicit(&hdr->sweepgen, memory_order_relaxed);
	hdr->pages_released -= span_carve(h->seg, f, off, npages, sg);
	if (off)
		index_insert(h, f);
	if (ntail)
		index_insert(h, f + off + npages);
	hdr->pages_inuse += npages;
	hdr->pages_free -= npages;
	*span = f + off;
	return 0;
}

int pageheap_alloc(pageheap_t *h, uint32_t npages, uint32_t align_pages, uint32_t *span)
{
	pageheap_enter(h);
	int rc = pageheap_alloc_locked(h, npages, align_pages, span);
	pageheap_leave(h);
	return rc;
}

int pageheap_alloc_small(pageheap_t *h, uint32_t sizeclass, uint32_t *span, int *needzero)
{
	uint32_t id;
	int rc;

	if (sizeclass == 0 || sizeclass >= SIZECLASS_COUNT)
		return -EINVAL;
	pageheap_enter(h);
	rc = pageheap_alloc_locked(h, sizeclass_npages[sizeclass], 1, &id);
	if (rc == 0) {
		uint32_t sg = atomic_load_explicit(&h->seg->hdr->sweepgen, memory_order_relaxed);
		span_make_small(h->seg, id, sizeclass, sg);
		*span = id;
		*needzero = S(h, id)->needzero;
	}
	pageheap_leave(h);
	return rc;
}

void pageheap_large_object(pageheap_t *h, uint32_t span, uint32_t owner)
{
	pageheap_enter(h);
	span_large_object(h->seg, span, owner);
	pageheap_leave(h);
}

void pageheap_free_locked(pageheap_t *h, uint32_t span)
{
	shm_header_t *hdr = h->seg->hdr;
	pageheap_assert_locked(h);
	if (span >= hdr->npages_grown) {
		assert(!"pageheap_free: span outside the heap");
		return;
	}
	shm_span_t *s = S(h, span);
	uint32_t n = s->npages;
	if ((s->state != SPAN_SMALL && s->state != SPAN_LARGE) || s->start != span || n == 0 ||
	    n > hdr->npages_grown - span) {
		assert(!"pageheap_free: not an in-use span");
		return;
	}

	uint64_t now = heapd_now_ns();
	span_make_free(h->seg, span, now);
	hdr->pages_inuse -= n;
	hdr->pages_free += n;

	uint32_t id = span;
	uint32_t before = free_before(h, span);
	if (before != NIL) {
		index_remove(h, before);
		S(h, before)->unusedsince = now;
		absorb_locked(h, before, span);
		id = before;
	}
	uint32_t after = free_at(h, id + S(h, id)->npages);
	if (after != NIL) {
		index_remove(h, after);
		absorb_locked(h, id, after);
	}
	index_insert(h, id);
}

void pageheap_free(pageheap_t *h, uint32_t span)
{
	pageheap_enter(h);
	pageheap_free_locked(h, span);
	pageheap_leave(h);
}

void pageheap_quarantine(pageheap_t *h, uint32_t p)
{
	pageheap_enter(h);
	shm_span_t *s = S(h, p);
	if (s->state == SPAN_SMALL || s->state == SPAN_LARGE)
		span_quarantine(h->seg, p, s->npages);
	pageheap_leave(h);
}

/* Punch one free span out of the file; the pages newly released. */
static uint64_t release_span(pageheap_t *h, uint32_t id, uint64_t older_than)
{
	segment_t *seg = h->seg;
	shm_span_t *s = S(h, id);
	if (s->unusedsince >= older_than || s->npreleased >= s->npages)
		return 0;
	uint64_t off = seg->hdr->pages_off + ((uint64_t)id << HEAPD_PAGE_SHIFT);
	if (segment_punch(seg, off, (uint64_t)s->npages << HEAPD_PAGE_SHIFT) < 0)
		return 0;
	uint64_t fresh = s->npages - s->npreleased;
	seg->hdr->pages_released += fresh;
	span_mark_released(seg, id);
	return fresh;
}

static uint64_t release_tree(pageheap_t *h, uint32_t t, uint64_t older_than)
{
	uint64_t n = 0;
	while (t != NIL) {
		n += release_tree(h, S(h, t)->left, older_than);
		n += release_span(h, t, older_than);
		t = S(h, t)->right;
	}
	return n;
}

uint64_t pageheap_release(pageheap_t *h, uint64_t older_than)
{
	uint64_t n = 0;
	pageheap_enter(h);
	for (uint32_t len = 1; len < HEAPD_MAX_LIST; len++)
		for (uint32_t id = h->free[len]; id != NIL; id = S(h, id)->next)
			n += release_span(h, id, older_than);
	n += release_tree(h, h->large, older_than);
	pageheap_leave(h);
	return n;
}

void pageheap_walk(pageheap_t *h, pageheap_visit_t fn, void *arg)
{
	span_walk_t w;
	uint32_t id, n;

	span_walk_start(&w, h->seg, 0);
	pageheap_enter(h);
	for (uint32_t steps = 0;; steps++) {
		if (steps == PAGEHEAP_WALK_CHUNK) {
			/* let allocations in between chunks; the walk re-reads where it stands */
			pageheap_leave(h);
			pageheap_enter(h);
			steps = 0;
		}
		int kind = span_walk_next(&w, &id, &n);
		if (kind == SPAN_WALK_END)
			break;
		if (kind == SPAN_WALK_SPAN)
			fn(arg, id);
	}
	pageheap_leave(h);
}

void pageheap_counts(pageheap_t *h, pageheap_counts_t *c)
{
	pageheap_enter(h);
	c->npages_grown = h->seg->hdr->npages_grown;
	c->pages_inuse = h->seg->hdr->pages_inuse;
	c->pages_free = h->seg->hdr->pages_free;
	c->pages_released = h->seg->hdr->pages_released;
	pageheap_leave(h);
}

/* ---- rebuild ---- */

/* Page-map entries from page `from` on become nil, reading only what the file holds. */
static void pagemap_clear_beyond(segment_t *seg, uint32_t from)
{
	uint32_t p = from;

	while ((p = segment_pagemap_next(seg, p)) < seg->npages_max) {
		uint64_t end = ((uint64_t)p / SEGMENT_PAGEMAP_BLOCK + 1) * SEGMENT_PAGEMAP_BLOCK;
		for (; p < end && p < seg->npages_max; p++)
			if (seg->pagemap[p] != 0)
				seg->pagemap[p] = 0;
	}
}

/*
 * The walk of the descriptors from page 0 is the truth: span_repair makes
 * it clean (span.h); then the page map, the lists, the tree and the header
 * counters are rebuilt from it.
 */
static void rebuild_locked(pageheap_t *h)
{
	segment_t *seg = h->seg;
	shm_header_t *hdr = seg->hdr;
	span_walk_t w;
	uint32_t p, n;

	pageheap_assert_locked(h);
	for (uint32_t i = 0; i < HEAPD_MAX_LIST; i++)
		h->free[i] = NIL;
	memset(h->nonempty, 0, sizeof(h->nonempty));
	h->large = NIL;
	if (hdr->npages_grown > seg->npages_max)
		hdr->npages_grown = seg->npages_max;
	span_repair(seg, heapd_now_ns());

	uint64_t inuse = 0, nfree = 0, released = 0;
	int kind;
	span_walk_start(&w, seg, 0);
	while ((kind = span_walk_next(&w, &p, &n)) != SPAN_WALK_END) {
		shm_span_t *s = S(h, p);
		if (kind == SPAN_WALK_GAP)
			continue; /* span_repair leaves none */
		span_map_pages(seg, p);
		if (s->state == SPAN_FREE) {
			s->list = 0;
			index_insert(h, p);
			nfree += n;
			released += s->npreleased;
		} else {
			inuse += n;
		}
	}
	pagemap_clear_beyond(seg, hdr->npages_grown);
	hdr->pages_inuse = inuse;
	hdr->pages_free = nfree;
	hdr->pages_released = released;
}
