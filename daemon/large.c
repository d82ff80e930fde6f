// SPDX-License-Identifier: MIT
/*
 * large.c - large objects (see large.h).
 *
 * Write order of an allocation: the page heap hands out a SPAN_LARGE span
 * with clear bitmaps; the pages are zeroed if asked; owner = slot + 1 (the
 * reply is pending); only then is alloc bit 0 set. A daemon killed before
 * that leaves a large span with alloc bit 0 clear, which recovery frees.
 * Freeing clears the bitmaps before the span goes back to the page heap
 * (central_free_span_locked).
 *
 * A reply lost with the daemon must not leak the object: the client, which
 * resends its request to the next daemon, never got it. So the span keeps
 * owner = slot + 1 until the client is known to have the reply
 * (large_settle): its next frame on the connection, or the span it names in
 * the Hello of its reconnect. Recovery keeps such a span pending for a live
 * slot; the reconnect then keeps or frees it.
 *
 * large_sweep walks the span table under the heap lock in chunks, so a long
 * walk never keeps refills waiting for long.
 */
#include "large.h"

#include <errno.h>
#include <string.h>

#include "bitmap.h"
#include "lock.h"
#include "log.h"

#define LARGE_WALK_CHUNK 4096u

uint64_t large_pages_for(uint64_t size)
{
	uint64_t n = size >> HEAPD_PAGE_SHIFT;
	if (size & (HEAPD_PAGE_SIZE - 1))
		n++;
	return n > HEAPD_MAX_PAGES ? 0 : n;
}

/*
 * Cut the first pad pages off in-use large span s (state LARGE, clear
 * bitmaps) and free them; the rest becomes span s + pad. Same write order as
 * the page heap's split: the new descriptor in full, then the commit
 * (s->npages shrinks), then the page map. Cut short, recovery finds one or
 * two large spans with alloc bit 0 clear and frees them. Heap lock held.
 */
static uint32_t split_head_locked(central_t *c, uint32_t s, uint32_t pad)
{
	lock_assert_held(&c->heap->lock);
	segment_t *seg = c->seg;
	shm_span_t *hs = &seg->spans[s];
	uint32_t t = s + pad, n = hs->npages - pad;
	shm_span_t *ts = &seg->spans[t];

	ts->start = t;
	ts->npages = n;
	ts->sizeclass = 0;
	ts->needzero = hs->needzero;
	ts->list = 0;
	ts->elemsize = 0;
	ts->nelems = 1;
	ts->divmul = 0;
	atomic_store_explicit(&ts->sweepgen, atomic_load(&hs->sweepgen), memory_order_relaxed);
	ts->owner = 0;
	ts->npreleased = 0;
	ts->allocount = 0;
	ts->unusedsince = 0;
	ts->next = ts->prev = ts->left = ts->right = HEAPD_NIL;
	bitmap_store(&segment_allocbits(seg, t)[0], 0);
	bitmap_store(&segment_freebits(seg, t, 1)[0], 0);
	atomic_thread_fence(memory_order_release);
	ts->state = SPAN_LARGE;
	atomic_thread_fence(memory_order_release);
	hs->npages = pad; /* the commit */
	atomic_thread_fence(memory_order_release);
	for (uint32_t i = 0; i < n; i++)
		segment_pagemap_set(seg, t + i, t, 0);
	central_free_span_locked(c, s);
	return t;
}

/*
 * npages whose file offset (and so a client's pointer, mapped at an aligned
 * base) is a multiple of align_pages pages. The page heap aligns page
 * numbers; the pages region itself starts at pages_off, so the phase between
 * the two is padded away.
 */
static int alloc_aligned(central_t *c, uint32_t npages, uint32_t align_pages, uint32_t *span)
{
	uint32_t phase = (uint32_t)(c->seg->hdr->pages_off >> HEAPD_PAGE_SHIFT) & (align_pages - 1);
	uint32_t pad = (align_pages - phase) & (align_pages - 1);
	uint32_t s;
	int rc;

	if (pad == 0)
		return pageheap_alloc_aligned(c->heap, npages, align_pages, span);
	if ((uint64_t)npages + pad + align_pages - 1 > c->seg->npages_max)
		return -ENOMEM;
	rc = pageheap_alloc_aligned(c->heap, npages + pad, align_pages, &s);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&c->heap->lock);
	*span = split_head_locked(c, s, pad);
	pthread_mutex_unlock(&c->heap->lock);
	return 0;
}

int large_alloc(central_t *c, clients_t *cl, uint32_t slot, uint64_t size, uint64_t align,
                int zero, uint64_t quota_pages, uint32_t *span, int *zeroed)
{
	segment_t *seg = c->seg;
	uint64_t npages = large_pages_for(size);
	uint64_t align_pages = 1;
	uint32_t id;
	int rc;

	if (size == 0 || npages == 0 || npages > seg->npages_max)
		return -EINVAL;
	if (align & (align - 1))
		return -EINVAL;
	if (align > HEAPD_PAGE_SIZE) {
		align_pages = align >> HEAPD_PAGE_SHIFT;
		if (align_pages > seg->npages_max || 2 * align_pages + npages > seg->npages_max)
			return -EINVAL;
	}
	if (slot != HEAPD_NIL && quota_pages &&
	    clients_held_pages(cl, slot) + npages > quota_pages)
		return -EDQUOT;

	if (align_pages > 1)
		rc = alloc_aligned(c, (uint32_t)npages, (uint32_t)align_pages, &id);
	else
		rc = pageheap_alloc(c->heap, (uint32_t)npages, &id);
	if (rc < 0)
		return rc;

	shm_span_t *s = &seg->spans[id];
	int needzero = s->needzero;
	if (zero && needzero)
		memset(segment_page_addr(seg, id), 0, (size_t)npages << HEAPD_PAGE_SHIFT);
	*zeroed = zero || !needzero;

	pthread_mutex_lock(&c->heap->lock);
	uint64_t *alloc = segment_allocbits(seg, id), *freeb = segment_freebits(seg, id, 1);
	bitmap_store(&freeb[0], 0);
	s->unusedsince = 0; /* when large_sweep first saw the free bit; 0: not yet */
	if (slot != HEAPD_NIL) {
		s->owner = slot + 1; /* until the client is known to have the reply */
		cl->slots[slot].pending_large = id + 1;
	}
	atomic_thread_fence(memory_order_release);
	bitmap_store(&alloc[0], 1); /* the object exists from here on */
	if (slot != HEAPD_NIL)
		clients_charge_large_locked(cl, slot, id, (uint32_t)npages);
	pthread_mutex_unlock(&c->heap->lock);
	*span = id;
	return 0;
}

void large_settle(central_t *c, clients_t *cl, uint32_t slot, int received)
{
	segment_t *seg = c->seg;
	int lost = 0;

	pthread_mutex_lock(&c->heap->lock);
	uint32_t id = cl->slots[slot].pending_large - 1;
	cl->slots[slot].pending_large = 0;
	/* The sweeper may have freed it (its LargeFree was lost) and the pages gone to another. */
	if (id < seg->hdr->npages_grown && seg->spans[id].start == id &&
	    seg->spans[id].state == SPAN_LARGE && seg->spans[id].owner == slot + 1) {
		shm_span_t *s = &seg->spans[id];
		if (received) {
			s->owner = 0;
		} else {
			clients_uncharge_large_locked(cl, id, s->npages);
			central_free_span_locked(c, id);
			lost = 1;
		}
	}
	pthread_mutex_unlock(&c->heap->lock);
	if (lost)
		log_msg("slot %u never got the reply for large object %u; freed", slot, id);
}

/* A live large object whose free bit is set; the heap lock is held. */
static int freeable_locked(const segment_t *seg, uint32_t id)
{
	/* callers hold the heap lock (large_free, large_sweep) */
	const shm_span_t *s = &seg->spans[id];
	return s->state == SPAN_LARGE && s->start == id &&
	       (bitmap_load(&segment_allocbits(seg, id)[0]) & 1) &&
	       (bitmap_load(&segment_freebits(seg, id, 1)[0]) & 1);
}

int large_free(central_t *c, clients_t *cl, uint32_t id, uint32_t *npages)
{
	segment_t *seg = c->seg;
	int rc = 0;

	pthread_mutex_lock(&c->heap->lock);
	if (id >= seg->hdr->npages_grown || seg->spans[id].start != id ||
	    seg->spans[id].state != SPAN_LARGE) {
		rc = -EINVAL;
		goto out;
	}
	if (!freeable_locked(seg, id)) {
		rc = -EPERM;
		goto out;
	}
	*npages = seg->spans[id].npages;
	clients_uncharge_large_locked(cl, id, *npages);
	central_free_span_locked(c, id);
out:
	pthread_mutex_unlock(&c->heap->lock);
	return rc;
}

uint64_t large_sweep(central_t *c, clients_t *cl, uint64_t grace_ns, uint64_t *pages_freed)
{
	segment_t *seg = c->seg;
	uint64_t now = pageheap_now(), freed = 0;
	uint32_t p = 0;

	pthread_mutex_lock(&c->heap->lock);
	for (;;) {
		uint32_t grown = seg->hdr->npages_grown;
		for (uint32_t n = 0; p < grown && n < LARGE_WALK_CHUNK; n++) {
			shm_span_t *s = &seg->spans[p];
			if (s->state == SPAN_DEAD || s->start != p || s->npages == 0) {
				p++; /* the tiling changed since the last chunk: resynchronise */
				continue;
			}
			uint32_t len = s->npages;
			if (freeable_locked(seg, p)) {
				if (s->unusedsince == 0 && grace_ns)
					s->unusedsince = now ? now : 1;
				if (!grace_ns || now - s->unusedsince >= grace_ns) {
					clients_uncharge_large_locked(cl, p, len);
					central_free_span_locked(c, p);
					freed++;
					if (pages_freed)
						*pages_freed += len;
					p = span_next_after_free(seg, p, grown);
					continue;
				}
			}
			p += len;
		}
		if (p >= seg->hdr->npages_grown)
			break;
		pthread_mutex_unlock(&c->heap->lock);
		pthread_mutex_lock(&c->heap->lock);
	}
	pthread_mutex_unlock(&c->heap->lock);
	return freed;
}
