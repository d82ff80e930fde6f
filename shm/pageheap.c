// SPDX-License-Identifier: MIT
/*
 * pageheap.c - the page heap: spans of pages carved from the arena, in the
 * daemon.
 *
 * Structures. The truth lives in the segment: span descriptors (spans[start]),
 * the page map and the counters in the header. The daemon keeps two indexes
 * of the free spans, threaded through the descriptors' link fields:
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
 *      fitting span always wins.
 *   2. Nothing fits: grow the heap into the file's reservation (grow_locked)
 *      and search again. When even the whole remaining reservation cannot
 *      satisfy the request, fail with -ENOMEM before changing anything.
 *   3. Split the span (carve_locked): the tail goes back to the heap as a
 *      free span; the front n pages become an in-use SPAN_LARGE span with
 *      every page mapped to it.
 *
 * Freeing a span (pageheap_free_locked):
 *   1. Mark it free: needzero = 1, unusedsince = now.
 *   2. Coalesce with a free span ending just before it (found through the
 *      page map entry of the page before) and one starting just after it.
 *      The lower span's descriptor survives; the absorbed one becomes DEAD.
 *   3. Put the result on its list or in the tree.
 *
 * Crash safety. A restarted daemon trusts only a walk of the descriptors
 * from page 0, jumping by npages (pageheap_rebuild_locked). Each change is
 * ordered so that the walk sees either the old or the new tiling, possibly
 * with two adjacent free spans or a stale descriptor inside a span, both of
 * which the rebuild repairs:
 *   - a new descriptor is written in full before the commit that lets the
 *     walk reach it: the span in front of it shrinking, or npages_grown
 *     growing (so nothing beyond npages_grown is ever written);
 *   - a span absorbing its neighbour grows its npages in one write;
 *   - needzero is raised before a commit that would make dirty pages part of
 *     a span, and npreleased only after one (an undercount is harmless, an
 *     overcount is clamped);
 *   - the page map is derived and rebuilt, but an in-use span's entries are
 *     all written before the span is handed out.
 * A compiler and release fence separates the steps (commit_fence): a killed
 * process has all of its earlier stores in the shared mapping.
 *
 * Released pages: npreleased counts a free span's pages punched out of the
 * file. When a fully released span is split, every piece stays fully
 * released and only the pages handed out leave hdr->pages_released; when a
 * partly released span is split, which pages are punched is unknown, so its
 * npreleased is dropped from the count and the pieces start at 0.
 *
 * Locks: h->lock guards the indexes, the span geometry and the header
 * counters. Public functions take it; *_locked functions expect it held.
 */
#include "pageheap.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define NIL HEAPD_NIL

/* Order the steps of a multi-step change, for crash recovery and for readers. */
static inline void commit_fence(void)
{
	atomic_thread_fence(memory_order_release);
}

/* Debug builds check that the caller holds the lock (a failed trylock is cheap). */
static inline void assert_locked(pageheap_t *h)
{
#ifndef NDEBUG
	if (pthread_mutex_trylock(&h->lock) == 0) {
		pthread_mutex_unlock(&h->lock);
		assert(!"pageheap: *_locked function called without h->lock");
	}
#else
	(void)h;
#endif
}

uint64_t pageheap_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline shm_span_t *S(const pageheap_t *h, uint32_t id)
{
	return &h->seg->spans[id];
}

/* Write a whole free-span descriptor (before the walk can reach it). */
static void span_init_free(pageheap_t *h, uint32_t id, uint32_t npages, uint8_t needzero,
                           uint32_t npreleased, uint64_t unusedsince)
{
	shm_span_t *s = S(h, id);
	s->start = id;
	s->npages = npages;
	s->sizeclass = 0;
	s->needzero = needzero;
	s->list = 0;
	s->elemsize = 0;
	s->nelems = 0;
	s->divmul = 0;
	s->owner = 0;
	s->npreleased = npreleased;
	s->allocount = 0;
	s->unusedsince = unusedsince;
	s->next = s->prev = s->left = s->right = NIL;
	s->state = SPAN_FREE;
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

/*
 * Free span b, just after free span a, joins a. Both are out of the index.
 * Order: needzero first, then the commit (a->npages), then the page map,
 * npreleased and b's death.
 */
static void absorb(pageheap_t *h, uint32_t a, uint32_t b)
{
	shm_span_t *sa = S(h, a), *sb = S(h, b);
	sa->needzero |= sb->needzero;
	commit_fence();
	sa->npages += sb->npages;
	commit_fence();
	segment_pagemap_set(h->seg, a + sa->npages - 1, a, 0);
	sa->npreleased += sb->npreleased;
	sb->state = SPAN_DEAD;
}

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

/*
 * Turn pages [f+off, f+off+n) of free span f (out of the index) into an in-use
 * span; the pieces before and after stay free, inherit needzero and
 * unusedsince, and go back into the index. Returns the new span's id.
 */
static uint32_t carve_locked(pageheap_t *h, uint32_t f, uint32_t off, uint32_t n)
{
	shm_header_t *hdr = h->seg->hdr;
	segment_t *seg = h->seg;
	shm_span_t *sf = S(h, f);
	uint32_t total = sf->npages, id = f + off, tail = id + n, ntail = total - off - n;
	uint8_t needzero = sf->needzero;
	uint64_t unusedsince = sf->unusedsince;
	uint32_t head_rel = 0, tail_rel = 0;

	assert(sf->state == SPAN_FREE && off + n <= total);
	if (sf->npreleased == total) {
		/* fully released: the pieces stay so */
		head_rel = off;
		tail_rel = ntail;
		hdr->pages_released -= n;
	} else {
		hdr->pages_released -= sf->npreleased;
	}

	/* New descriptors in full, then their page map entries, then the commit. */
	if (ntail) {
		span_init_free(h, tail, ntail, needzero, tail_rel, unusedsince);
		segment_pagemap_set(seg, tail, tail, 0);
		segment_pagemap_set(seg, tail + ntail - 1, tail, 0);
	}
	if (off) {
		span_init_free(h, id, n, needzero, 0, unusedsince);
		segment_pagemap_set(seg, id, id, 0);
		segment_pagemap_set(seg, id + n - 1, id, 0);
		sf->npreleased = head_rel;
	}
	commit_fence();
	if (off) {
		sf->npages = off;
		commit_fence();
		segment_pagemap_set(seg, f + off - 1, f, 0);
	} else if (ntail) {
		sf->npages = n;
	}
	commit_fence();

	shm_span_t *s = S(h, id);
	s->sizeclass = 0;
	s->elemsize = 0;
	s->nelems = 1;
	s->divmul = 0;
	s->owner = 0;
	s->list = 0;
	s->npreleased = 0;
	s->allocount = 0;
	s->unusedsince = 0;
	s->needzero = needzero;
	s->next = s->prev = s->left = s->right = NIL;
	atomic_store_explicit(&s->sweepgen, atomic_load_explicit(&hdr->sweepgen, memory_order_relaxed),
	                      memory_order_relaxed);
	commit_fence();
	s->state = SPAN_LARGE;
	for (uint32_t i = 0; i < n; i++)
		segment_pagemap_set(seg, id + i, id, 0);

	if (off)
		index_insert(h, f);
	if (ntail)
		index_insert(h, tail);
	hdr->pages_inuse += n;
	hdr->pages_free -= n;
	return id;
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

	/* Descriptor, then npages_grown (the commit), then the page map. */
	span_init_free(h, grown, g, 0, 0, pageheap_now());
	commit_fence();
	hdr->npages_grown = grown + g;
	commit_fence();
	segment_pagemap_set(h->seg, grown, grown, 0);
	segment_pagemap_set(h->seg, grown + g - 1, grown, 0);
	hdr->pages_free += g;

	uint32_t id = grown;
	if (last != NIL) {
		index_remove(h, last);
		absorb(h, last, grown);
		id = last;
	}
	index_insert(h, id);
	return 0;
}

/* ---- public entry points ---- */

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

	pthread_mutex_lock(&h->lock);
	if (seg->hdr->npages_grown == 0) {
		seg->hdr->pages_inuse = 0;
		seg->hdr->pages_free = 0;
		seg->hdr->pages_released = 0;
	} else {
		pageheap_rebuild_locked(h);
	}
	pthread_mutex_unlock(&h->lock);
	return 0;
}

void pageheap_destroy(pageheap_t *h)
{
	if (!h->seg)
		return;
	pthread_mutex_destroy(&h->lock);
	h->seg = NULL;
}

int pageheap_alloc_locked(pageheap_t *h, uint32_t npages, uint32_t *span)
{
	assert_locked(h);
	if (npages == 0)
		return -EINVAL;
	if (npages > h->seg->npages_max)
		return -ENOMEM;
	uint32_t f = index_take(h, npages);
	if (f == NIL) {
		int rc = grow_locked(h, npages);
		if (rc < 0)
			return rc;
		f = index_take(h, npages);
		assert(f != NIL);
	}
	*span = carve_locked(h, f, 0, npages);
	return 0;
}

int pageheap_alloc(pageheap_t *h, uint32_t npages, uint32_t *span)
{
	pthread_mutex_lock(&h->lock);
	int rc = pageheap_alloc_locked(h, npages, span);
	pthread_mutex_unlock(&h->lock);
	return rc;
}

/*
 * Take a span of npages + align_pages - 1, which surely holds an aligned run
 * of npages, and carve that run out of it; the head and tail stay free.
 */
int pageheap_alloc_aligned(pageheap_t *h, uint32_t npages, uint32_t align_pages, uint32_t *span)
{
	if (align_pages == 0 || (align_pages & (align_pages - 1)) != 0)
		return -EINVAL;
	if (align_pages == 1)
		return pageheap_alloc(h, npages, span);
	if (npages == 0)
		return -EINVAL;
	if ((uint64_t)npages + align_pages - 1 > h->seg->npages_max)
		return -ENOMEM;

	uint32_t want = npages + align_pages - 1;
	int rc = 0;
	pthread_mutex_lock(&h->lock);
	uint32_t f = index_take(h, want);
	if (f == NIL) {
		rc = grow_locked(h, want);
		if (rc < 0)
			goto out;
		f = index_take(h, want);
		assert(f != NIL);
	}
	uint32_t off = (uint32_t)(((uint64_t)f + align_pages - 1) / align_pages * align_pages) - f;
	*span = carve_locked(h, f, off, npages);
out:
	pthread_mutex_unlock(&h->lock);
	return rc;
}

void pageheap_free_locked(pageheap_t *h, uint32_t span)
{
	shm_header_t *hdr = h->seg->hdr;
	assert_locked(h);
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

	uint64_t now = pageheap_now();
	s->sizeclass = 0;
	s->elemsize = 0;
	s->nelems = 0;
	s->divmul = 0;
	s->owner = 0;
	s->list = 0;
	s->allocount = 0;
	s->npreleased = 0;
	s->needzero = 1;
	s->unusedsince = now;
	s->next = s->prev = s->left = s->right = NIL;
	commit_fence();
	s->state = SPAN_FREE;
	/* a free span's ends map to it with no class (layout.h) */
	segment_pagemap_set(h->seg, span, span, 0);
	segment_pagemap_set(h->seg, span + n - 1, span, 0);
	hdr->pages_inuse -= n;
	hdr->pages_free += n;

	uint32_t id = span;
	uint32_t before = free_before(h, span);
	if (before != NIL) {
		index_remove(h, before);
		S(h, before)->unusedsince = now;
		absorb(h, before, span);
		id = before;
	}
	uint32_t after = free_at(h, id + S(h, id)->npages);
	if (after != NIL) {
		index_remove(h, after);
		absorb(h, id, after);
	}
	index_insert(h, id);
}

void pageheap_free(pageheap_t *h, uint32_t span)
{
	pthread_mutex_lock(&h->lock);
	pageheap_free_locked(h, span);
	pthread_mutex_unlock(&h->lock);
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
	s->npreleased = s->npages;
	commit_fence();
	s->needzero = 0; /* punched pages read as zero */
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
	pthread_mutex_lock(&h->lock);
	for (uint32_t len = 1; len < HEAPD_MAX_LIST; len++)
		for (uint32_t id = h->free[len]; id != NIL; id = S(h, id)->next)
			n += release_span(h, id, older_than);
	n += release_tree(h, h->large, older_than);
	pthread_mutex_unlock(&h->lock);
	return n;
}

/* ---- rebuild ---- */

/* Where the walk stands at p, the descriptor there is a span inside [0, grown). */
static int walk_valid(const shm_span_t *s, uint32_t p, uint32_t grown)
{
	return (s->state == SPAN_FREE || s->state == SPAN_SMALL || s->state == SPAN_LARGE) &&
	       s->npages >= 1 && s->npages <= grown - p;
}


void pageheap_quarantine(segment_t *seg, uint32_t p, uint32_t npages)
{
	shm_span_t *s = &seg->spans[p];

	memset(segment_allocbits(seg, p), 0, HEAPD_BITS_WORDS_PER_PAGE * sizeof(uint64_t));
	segment_allocbits(seg, p)[0] = 1;
	for (uint32_t i = 0; i < npages; i++)
		segment_pagemap_set(seg, p + i, p, 0); /* no class for a free to find */
	s->start = p;
	s->npages = npages;
	s->sizeclass = 0;
	s->elemsize = 0;
	s->nelems = 1;
	s->divmul = 0;
	s->owner = 0;
	s->npreleased = 0;
	s->allocount = 0;
	s->unusedsince = 0;
	s->needzero = 1;
	s->list = 0;
	s->next = s->prev = s->left = s->right = NIL;
	atomic_thread_fence(memory_order_release);
	s->state = SPAN_LARGE;
}

/*
 * The walk found no valid span at p. The pages up to the next descriptor that
 * could start a span (walk_valid; a wrong start field is forgiven, so that no
 * in-use span is swallowed) become one span: a free one (needzero) if the
 * descriptor at p does not claim them, else a quarantined large span that
 * keeps whatever the pages hold and is not handed out until someone frees it.
 * Returns its length.
 */
static uint32_t repair_gap(pageheap_t *h, uint32_t p, uint32_t grown)
{
	segment_t *seg = h->seg;
	shm_span_t *s = S(h, p);
	uint32_t q = p + 1;
	while (q < grown && !walk_valid(S(h, q), q, grown))
		q++;
	uint32_t n = q - p;

	if (s->state == SPAN_SMALL || s->state == SPAN_LARGE)
		pageheap_quarantine(seg, p, n);
	else
		span_init_free(h, p, n, 1, 0, pageheap_now());
	return n;
}

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
 * The walk of the descriptors from page 0 is the truth. Repair, in order:
 * invalid descriptors (repair_gap), stale descriptors inside a span (made
 * DEAD), adjacent free spans (merged), impossible npreleased values (clamped),
 * the page map (rewritten, NIL beyond npages_grown); then rebuild the lists,
 * the tree and the header counters.
 */
void pageheap_rebuild_locked(pageheap_t *h)
{
	segment_t *seg = h->seg;
	shm_header_t *hdr = seg->hdr;
	uint64_t now = pageheap_now();

	assert_locked(h);
	for (uint32_t i = 0; i < HEAPD_MAX_LIST; i++)
		h->free[i] = NIL;
	memset(h->nonempty, 0, sizeof(h->nonempty));
	h->large = NIL;
	if (hdr->npages_grown > seg->npages_max)
		hdr->npages_grown = seg->npages_max;
	uint32_t grown = hdr->npages_grown;

	/* Pass 1: make the walk clean. */
	uint32_t prev_free = NIL;
	for (uint32_t p = 0; p < grown;) {
		shm_span_t *s = S(h, p);
		uint32_t n;
		if (walk_valid(s, p, grown)) {
			s->start = p;
			n = s->npages;
		} else {
			n = repair_gap(h, p, grown);
		}
		for (uint32_t i = p + 1; i < p + n; i++)
			if (S(h, i)->state != SPAN_DEAD)
				S(h, i)->state = SPAN_DEAD;
		if (s->state == SPAN_FREE) {
			if (s->npreleased > n)
				s->npreleased = n;
			if (s->unusedsince > now)
				s->unusedsince = now; /* a time from before a reboot */
			if (prev_free != NIL) {
				shm_span_t *pf = S(h, prev_free);
				if (s->unusedsince > pf->unusedsince)
					pf->unusedsince = s->unusedsince;
				absorb(h, prev_free, p);
			} else {
				prev_free = p;
			}
		} else {
			s->npreleased = 0;
			prev_free = NIL;
		}
		p += n;
	}

	/* Pass 2: page map, indexes, counters. */
	uint64_t inuse = 0, nfree = 0, released = 0;
	for (uint32_t p = 0; p < grown;) {
		shm_span_t *s = S(h, p);
		uint32_t n = s->npages;
		if (s->state == SPAN_FREE) {
			segment_pagemap_set(seg, p, p, 0);
			segment_pagemap_set(seg, p + n - 1, p, 0);
			s->list = 0;
			s->next = s->prev = s->left = s->right = NIL;
			index_insert(h, p);
			nfree += n;
			released += s->npreleased;
		} else {
			uint32_t k = s->state == SPAN_SMALL ? s->sizeclass : 0;
			for (uint32_t i = 0; i < n; i++)
				segment_pagemap_set(seg, p + i, p, k);
			inuse += n;
		}
		p += n;
	}
	pagemap_clear_beyond(seg, grown);
	hdr->pages_inuse = inuse;
	hdr->pages_free = nfree;
	hdr->pages_released = released;
}
