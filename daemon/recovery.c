// SPDX-License-Identifier: MIT
/*
 * recovery.c - a restarted daemon rebuilds its indexes from the arena.
 *
 * The page map, the span table, the bitmaps and the client table are the
 * truth; central lists, slot lists and charges are indexes. At start,
 * pageheap_init walks the span table from page 0 and repairs the tiling
 * (pageheap.c); recovery_run then walks it again and puts every in-use span
 * where it belongs:
 *   - LARGE with alloc bit 0 set and free bit 0 clear: a live object, kept;
 *     if its owner is a live slot, its reply may have been lost: pending
 *     for that slot, whose reconnect keeps or frees it (large.c).
 *   - LARGE otherwise: a freed object whose LargeFree was lost, or an
 *     allocation or a carve cut short: freed.
 *   - SMALL owned by nobody: swept into central (or freed if empty).
 *   - SMALL owned by slot k whose process is alive (same pid and start time):
 *     kept on slot k's list for the client to re-adopt (Hello prev_slot).
 *   - SMALL owned by a dead process, or with a bad owner: taken back.
 *   - SMALL with geometry that does not match its class: quarantined as a
 *     large object that nobody owns, never handed out again.
 * Client slots of dead processes are freed; live ones are held (no session)
 * until they reconnect or the sweep timer finds their process gone.
 *
 * Write orders that make each multi-step change recoverable (a killed
 * daemon's stores all reach the shared mapping; a release fence keeps them
 * in program order):
 *   - Split (pageheap carve): the new free tail's descriptor is written in
 *     full, then the page map entries of its ends, and only then is the old
 *     span shortened (the commit); the new in-use span's fields are written
 *     before its state. A walk sees the old tiling or the new one; a stale
 *     descriptor inside a span is made DEAD by the rebuild.
 *   - Coalesce (pageheap free): the surviving lower span's needzero is raised,
 *     then its npages grows (the commit), then the page map and the absorbed
 *     descriptor's death. Cut short, the walk jumps over the absorbed span
 *     or meets two adjacent free spans, which the rebuild merges.
 *   - Growth: the new free span's descriptor, then npages_grown, then the
 *     page map.
 *   - Carving a small span (central_carve): the page heap returns a LARGE
 *     span with clear bitmaps (a free span's bitmaps are cleared before it is
 *     freed); class, sizes, divmul, owner 0 and sweepgen are written, and
 *     state = SMALL last. Cut short, it is a LARGE span with alloc bit 0
 *     clear: freed here.
 *   - Large allocation (large_alloc): span, optional zeroing, owner = slot + 1,
 *     then alloc bit 0. Cut short before the bit: freed here. Owner is reset
 *     to 0 once the client is known to have the reply; cut short before
 *     that, the span is pending for the slot if it lives (the reconnecting
 *     client names the span it got, and the span is kept, or it does not,
 *     and the span is freed), and kept if not. Large free: the object's free
 *     bit is already set by the freeing process; bitmaps are cleared, then
 *     pageheap_free. Cut short: freed here either way.
 *   - Span handover to a client: the span is swept and off every list, then
 *     owner = slot + 1 (one store), then the reply. Cut short before the
 *     reply, the client never saw the span: it reconnects without listing
 *     it in held_spans and the span is taken back; if the client is dead the
 *     span is taken back here.
 *   - Span handback: the client stops using the span before it sends
 *     Release; the daemon stores owner = 0, sweeps and files it. Cut short,
 *     the span is still owned by the slot, and the reconnecting client does
 *     not list it: taken back.
 *   - Client slot: token, start time and uid before pid; pid cleared first.
 */
#include "recovery.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "daemon.h"
#include "log.h"
#include "sizeclass.h"

/* A small span whose fields match its class. */
static int small_geometry_ok(const shm_span_t *s)
{
	uint32_t k = s->sizeclass;
	return k > 0 && k < SIZECLASS_COUNT && s->npages == sizeclass_npages[k] &&
	       s->elemsize == sizeclass_size[k] && s->nelems == sizeclass_nelems[k] &&
	       s->divmul == sizeclass_divmul[k];
}

void recovery_run(daemon_t *d, recovery_stats_t *st)
{
	segment_t *seg = &d->seg;
	clients_t *cl = &d->clients;
	shm_span_t *spans = seg->spans;
	uint32_t nslots = cl->nslots;
	uint8_t *alive = calloc(nslots ? nslots : 1, 1);

	memset(st, 0, sizeof(*st));
	for (uint32_t i = 0; i < nslots; i++)
		if (seg->clients[i].pid != 0 && alive)
			alive[i] = (uint8_t)clients_alive(cl, i);

	uint32_t grown = seg->hdr->npages_grown;
	for (uint32_t p = 0; p < grown;) {
		shm_span_t *s = &spans[p];
		if (s->state == SPAN_DEAD || s->start != p || s->npages == 0 || s->npages > grown - p) {
			p++; /* pageheap_init leaves a clean tiling; this only resynchronises */
			continue;
		}
		uint32_t len = s->npages;
		if (s->state == SPAN_LARGE) {
			uint64_t a = bitmap_load(&segment_allocbits(seg, p)[0]);
			uint64_t f = bitmap_load(&segment_freebits(seg, p, 1)[0]);
			if ((a & 1) && !(f & 1)) {
				st->large_live++;
				s->unusedsince = 0;
				/* A reply that may have been lost: the owner's reconnect settles it. */
				uint32_t owner = s->owner;
				if (owner != 0 && owner <= nslots && alive && alive[owner - 1] &&
				    !cl->slots[owner - 1].pending_large)
					cl->slots[owner - 1].pending_large = p + 1;
				else
					s->owner = 0;
			} else {
				st->large_freed++;
				central_free_span(&d->central, p);
				p = span_next_after_free(seg, p, grown);
				continue;
			}
		} else if (s->state == SPAN_SMALL) {
			s->list = SPANLIST_NONE;
			s->next = s->prev = HEAPD_NIL;
			if (!small_geometry_ok(s)) {
				log_msg("recovery: span %u has class %u with impossible geometry; quarantined", p,
				        s->sizeclass);
				pageheap_quarantine(seg, p, len);
				st->quarantined++;
				p += len;
				continue;
			}
			uint32_t owner = s->owner;
			if (owner != 0 && owner <= nslots && alive && alive[owner - 1]) {
				s->owner = 0;
				clients_own(cl, owner - 1, p);
				st->small_kept++;
				p += len;
				continue;
			}
			if (owner != 0)
				st->small_taken++;
			s->owner = 0;
			sweep_result_t res = { 0 };
			central_put(&d->central, p, &res);
			if (res.spans_freed) {
				st->small_freed++;
				p = span_next_after_free(seg, p, grown);
				continue;
			}
			st->small_central++;
		}
		p += len;
	}

	for (uint32_t i = 0; i < nslots; i++) {
		if (seg->clients[i].pid == 0)
			continue;
		if (alive && alive[i]) {
			clients_adopt(cl, i);
			st->slots_held++;
		} else {
			seg->clients[i].pid = 0;
			st->slots_freed++;
		}
	}
	free(alive);
}
