// SPDX-License-Identifier: MIT
/*
 * span.h - the life cycle of a span: every write to a span descriptor, to
 * the page map and to a span's bitmap words, in commit order, and the one
 * walk of the span table.
 *
 *            span_carve            span_make_small
 *   FREE ───────────────> LARGE ─────────────────> SMALL
 *    ^  \                (no object)                  │
 *    │   \ span_absorb      │ span_large_object       │
 *    │    (coalesce)        v                         │
 *    │                    LARGE (object) ───┐         │
 *    └──────────── span_make_free <─────────┴─────────┘
 *
 * plus span_quarantine (a range of pages recovery cannot trust becomes a
 * LARGE span holding one object that nobody owns) and span_mark_released.
 *
 * Each function writes every field its state defines, and separates its
 * steps with shm_commit() (commit.h) so that a process killed at any point
 * leaves a state the rebuild repairs (pageheap.c) and recovery understands
 * (daemon/recovery.c): a new descriptor is complete before the write that
 * lets a walk reach it, and a state is written last. The callers provide
 * the locking: the page heap's lock for geometry; the owner, charge,
 * sweepgen, allocount and list fields belong to whoever holds the span (a
 * central list's lock, or the event-loop thread for a client slot's list).
 *
 * The walk (span_walk_*) goes from a page to the end of the grown heap,
 * jumping by npages. Where no valid descriptor starts a span it yields a
 * gap up to the next descriptor that could (the rebuild repairs gaps; the
 * checker reports them; everyone else skips them). It re-reads the
 * descriptor it stopped at, so the span it just yielded may change between
 * steps (be freed, merged with a neighbour, or handed out) and the walk
 * still lands on the next span.
 */
#ifndef HEAPD_SHM_SPAN_H
#define HEAPD_SHM_SPAN_H

#include <stdatomic.h>
#include <stdint.h>

#include "commit.h"
#include "segment.h"

/* A descriptor at page p could start a span of a heap grown to `grown` pages. */
static inline int span_plausible(const shm_span_t *s, uint32_t p, uint32_t grown)
{
	return (s->state == SPAN_FREE || s->state == SPAN_SMALL || s->state == SPAN_LARGE) &&
	       s->npages >= 1 && s->npages <= grown - p;
}

/* Write a whole free-span descriptor at id, which no walk reaches yet, and its page map ends. */
void span_init_free(segment_t *seg, uint32_t id, uint32_t npages, uint8_t needzero,
                    uint32_t npreleased, uint64_t unusedsince);

/*
 * Pages [f + off, f + off + n) of free span f become an in-use LARGE span
 * with no object (alloc bit 0 clear); the pieces before and after stay free
 * with f's needzero and unusedsince. Order: the pieces' descriptors and page
 * map ends, then f shrinks (the commit), then the new span's fields, its
 * state and its page map. Returns the pages that leave hdr->pages_released.
 */
uint32_t span_carve(segment_t *seg, uint32_t f, uint32_t off, uint32_t n, uint32_t sweepgen);

/* Free span b, just after free span a, joins a: needzero, then a grows (the commit), then b dies. */
void span_absorb(segment_t *seg, uint32_t a, uint32_t b);

/*
 * A LARGE span with no object becomes a small span of class sizeclass:
 * bitmaps cleared, every page mapped with the class, fields, then state.
 */
void span_make_small(segment_t *seg, uint32_t id, uint32_t sizeclass, uint32_t sweepgen);

/*
 * A LARGE span with no object gets its object: owner (slot + 1 while the
 * reply may be lost, else 0), a new generation, then alloc bit 0 (the
 * commit: the object exists from here on). Its charge is set before, by
 * the quota books (daemon/quota.h).
 */
void span_large_object(segment_t *seg, uint32_t id, uint32_t owner);

/*
 * An in-use span nobody uses any more becomes free: its bitmap words are
 * cleared first (so a kill leaves an in-use span with no object, which
 * recovery frees), then its fields, then the state, then its page map ends.
 * The caller coalesces.
 */
void span_make_free(segment_t *seg, uint32_t id, uint64_t now);

/*
 * Pages [p, p + npages) become one LARGE span that nobody owns, holding one
 * object, so that nothing hands them out until someone frees it: what the
 * rebuild and recovery do with pages they cannot trust. Its bitmaps are
 * cleared but for that object and its page map names no class; the state is
 * written last.
 */
void span_quarantine(segment_t *seg, uint32_t p, uint32_t npages);

/*
 * The rebuild's repair of the walk (pass 1 of pageheap_init's rebuild):
 * pages no valid descriptor claims (a gap) become a quarantined span if the
 * descriptor at the gap's start says it is in use (whatever the pages hold
 * is kept, and nothing hands them out until someone frees it), else a free
 * span; stale descriptors inside a span become DEAD; adjacent free spans
 * merge; impossible npreleased values are clamped and times from before a
 * reboot (later than now) become now. Afterwards every descriptor the walk
 * meets starts a span and every other one is DEAD.
 */
void span_repair(segment_t *seg, uint64_t now);

/*
 * Write span id's page-map entries as its state says (a free span: its
 * first and last page). An in-use span keeps the HEAPD_PAGEMAP_PINNED flag
 * of its first page's entry: the rebuild must not unpin what clients are
 * folding meanwhile (roots.h).
 */
void span_map_pages(segment_t *seg, uint32_t id);

/*
 * In-use span id holds pinned objects (on) or none any more: every page-map
 * entry of it carries HEAPD_PAGEMAP_PINNED, or none does. The caller
 * (daemon/pins.c) writes the pin words and orders the rest.
 */
void span_set_pinned(segment_t *seg, uint32_t id, int on);

/* Free span id's pages were punched out of the file: npreleased, then needzero = 0. */
void span_mark_released(segment_t *seg, uint32_t id);

/* Fields whose writers hold the span (see the top of the file): one store each. */
static inline void span_set_owner(segment_t *seg, uint32_t id, uint32_t owner)
{
	seg->spans[id].owner = owner;
	shm_commit();
}

static inline void span_set_charge(segment_t *seg, uint32_t id, uint32_t charge, uint32_t uid)
{
	seg->spans[id].charge = charge;
	seg->spans[id].charge_uid = uid;
}

static inline void span_set_sweepgen(segment_t *seg, uint32_t id, uint32_t sg)
{
	atomic_store_explicit(&seg->spans[id].sweepgen, sg, memory_order_release);
}

static inline int span_claim_sweep(segment_t *seg, uint32_t id, uint32_t from, uint32_t to)
{
	return atomic_compare_exchange_strong(&seg->spans[id].sweepgen, &from, to);
}

static inline void span_set_allocount(segment_t *seg, uint32_t id, uint32_t n)
{
	seg->spans[id].allocount = n;
}

static inline void span_set_unusedsince(segment_t *seg, uint32_t id, uint64_t t)
{
	seg->spans[id].unusedsince = t;
}

/* List membership and links (daemon indexes, rebuilt at start). */
static inline void span_set_list(segment_t *seg, uint32_t id, uint8_t list)
{
	seg->spans[id].list = list;
}

static inline void span_set_links(segment_t *seg, uint32_t id, uint32_t next, uint32_t prev)
{
	seg->spans[id].next = next;
	seg->spans[id].prev = prev;
}

/* ---- the walk ---- */

enum {
	SPAN_WALK_END = 0,  /* past the grown heap */
	SPAN_WALK_SPAN = 1, /* a span: [id, id + n) */
	SPAN_WALK_GAP = 2,  /* no valid descriptor starts a span in [id, id + n) */
};

typedef struct span_walk {
	const segment_t *seg;
	uint32_t p;         /* the item last yielded starts here */
	uint32_t n;         /* and was this long (0: nothing yielded yet) */
	int kind;           /* what it was */
} span_walk_t;

/* Start a walk at page `from` (a span start, normally 0). */
static inline void span_walk_start(span_walk_t *w, const segment_t *seg, uint32_t from)
{
	w->seg = seg;
	w->p = from;
	w->n = 0;
	w->kind = SPAN_WALK_END;
}

/* The next item: SPAN_WALK_SPAN or _GAP with *id and *n, or SPAN_WALK_END. */
int span_walk_next(span_walk_t *w, uint32_t *id, uint32_t *n);

#endif
