// SPDX-License-Identifier: MIT
/*
 * large.c - large objects (see large.h).
 *
 * Write order of an allocation: the page heap hands out a SPAN_LARGE span
 * with no object (alloc bit 0 clear); the pages are zeroed if asked, with no
 * lock held; the span is charged; then span_large_object writes owner =
 * slot + 1 (the reply is pending), a new generation and, last, alloc bit 0.
 * A daemon killed before that bit leaves a large span with no object, which
 * recovery frees. Freeing goes through central_free_span (uncharge, then
 * the page heap clears the bitmaps and frees).
 *
 * A reply lost with the daemon must not leak the object: the client, which
 * resends its request to the next daemon, never got it. So the span keeps
 * owner = slot + 1 until the client is known to have the reply
 * (large_settle): its next frame on the connection, or the span it names in
 * the Hello of its reconnect. Recovery keeps such a span pending for a live
 * slot; the reconnect then keeps or frees it.
 */
#include "large.h"

#include <errno.h>
#include <string.h>

#include "bitmap.h"
#include "clock.h"
#include "log.h"
#include "span.h"

/* A root names the object of large span id (its pin bit, shm/roots.h); the heap lock orders it. */
static int large_pinned(const segment_t *seg, uint32_t id)
{
	return (int)(atomic_load_explicit((_Atomic uint64_t *)segment_pins(seg, id), memory_order_relaxed) & 1);
}

uint64_t large_pages_for(uint64_t size)
{
	uint64_t n = size >> HEAPD_PAGE_SHIFT;
	if (size & (HEAPD_PAGE_SIZE - 1))
		n++;
	return n > HEAPD_MAX_PAGES ? 0 : n;
}

int large_alloc(central_t *c, clients_t *cl, uint32_t slot, uid_t uid, uint32_t npages,
                uint32_t align_pages, int zero, uint32_t *span, int *zeroed, uint32_t *gen)
{
	segment_t *seg = c->seg;
	uint32_t id;
	int rc;

	rc = pageheap_alloc(c->heap, npages, align_pages, &id);
	if (rc < 0)
		return rc;
	int needzero = seg->spans[id].needzero;
	if (zero && needzero)
		memset(segment_page_addr(seg, id), 0, (size_t)npages << HEAPD_PAGE_SHIFT);
	*zeroed = zero || !needzero;

	uint32_t owner = 0;
	if (slot != HEAPD_NIL) {
		quota_charge_span(c->quota, id, slot, (uint32_t)uid);
		owner = slot + 1; /* until the client is known to have the reply */
		cl->slots[slot].pending_large = id + 1;
	}
	pageheap_large_object(c->heap, id, owner);
	*span = id;
	*gen = seg->spans[id].gen;
	return 0;
}

/* A live large object whose free bit is set, and no root names it; the heap lock is held. */
static int freeable_locked(const segment_t *seg, uint32_t id)
{
	const shm_span_t *s = &seg->spans[id];
	return s->state == SPAN_LARGE && s->start == id &&
	       (bitmap_load(&segment_allocbits(seg, id)[0]) & 1) &&
	       (bitmap_load(&segment_freebits(seg, id, 1)[0]) & 1) && !large_pinned(seg, id);
}

void large_settle(central_t *c, clients_t *cl, uint32_t slot, int received)
{
	segment_t *seg = c->seg;
	uint32_t id = cl->slots[slot].pending_large - 1;
	int lost = 0;

	cl->slots[slot].pending_large = 0;
	pageheap_enter(c->heap);
	/* The sweeper may have freed it (its LargeFree was lost) and the pages gone to another. */
	if (id < seg->hdr->npages_grown && seg->spans[id].start == id &&
	    seg->spans[id].state == SPAN_LARGE && seg->spans[id].owner == slot + 1) {
		/* a root names it: some process has it, whatever became of the reply */
		if (received || large_pinned(seg, id)) {
			span_set_owner(seg, id, 0);
		} else {
			central_free_span_locked(c, id);
			lost = 1;
		}
	}
	pageheap_leave(c->heap);
	if (lost)
		log_msg("slot %u never got the reply for large object %u; freed", slot, id);
}

int large_free(central_t *c, uint32_t id, uint32_t gen)
{
	segment_t *seg = c->seg;
	int rc = 0;

	pageheap_enter(c->heap);
	if (id >= seg->hdr->npages_grown || seg->spans[id].start != id ||
	    seg->spans[id].state != SPAN_LARGE || seg->spans[id].gen != gen)
		rc = -ESTALE;
	else if (large_pinned(seg, id))
		rc = -EBUSY; /* freed when its last root goes */
	else if (!freeable_locked(seg, id))
		rc = -EPERM;
	else
		central_free_span_locked(c, id);
	pageheap_leave(c->heap);
	return rc;
}

typedef struct sweep_walk {
	central_t *c;
	uint64_t now, grace_ns, freed, pages;
} sweep_walk_t;

static void sweep_one(void *arg, uint32_t id)
{
	sweep_walk_t *w = arg;
	segment_t *seg = w->c->seg;
	shm_span_t *s = &seg->spans[id];

	if (!freeable_locked(seg, id))
		return;
	if (s->unusedsince == 0 && w->grace_ns)
		span_set_unusedsince(seg, id, w->now ? w->now : 1);
	if (w->grace_ns && w->now - s->unusedsince < w->grace_ns)
		return;
	w->pages += s->npages;
	w->freed++;
	central_free_span_locked(w->c, id);
}

uint64_t large_sweep(central_t *c, uint64_t grace_ns, uint64_t *pages_freed)
{
	sweep_walk_t w = { .c = c, .now = heapd_now_ns(), .grace_ns = grace_ns };

	pageheap_walk(c->heap, sweep_one, &w);
	if (pages_freed)
		*pages_freed += w.pages;
	return w.freed;
}

void large_unpinned_locked(central_t *c, uint32_t id)
{
	pageheap_assert_locked(c->heap);
	if (freeable_locked(c->seg, id))
		central_free_span_locked(c, id);
}
