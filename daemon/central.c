// SPDX-License-Identifier: MIT
/*
 * central.c - central span lists per size class and the daemon's sweep of
 * the spans on them (see central.h for the lists and the sweepgen states).
 *
 * Entry points: central_take (a span for a client's refill), central_carve
 * (a new span from the page heap), central_put (a span handed back),
 * central_begin_cycle and central_sweep_class (the sweeper), and
 * central_free_span.
 *
 * Carving a span is one heap-locked step (pageheap_alloc_small) whose last
 * write is state = SPAN_SMALL: until then it is a SPAN_LARGE span with no
 * object, which recovery frees (shm/span.c).
 */
#include "central.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "bitmap.h"
#include "lock.h"
#include "profrec.h"
#include "report.h"
#include "roots.h"

/* How many full unswept spans a refill sweeps looking for room before carving. */
#define CENTRAL_TAKE_FULL_TRIES 64

int central_init(central_t *c, segment_t *seg, pageheap_t *heap, quota_t *quota)
{
	memset(c, 0, sizeof(*c));
	c->seg = seg;
	c->heap = heap;
	c->quota = quota;
	for (uint32_t k = 0; k < SIZECLASS_COUNT; k++) {
		central_class_t *cc = &c->cls[k];
		int rc = pthread_mutex_init(&cc->lock, NULL);
		if (rc != 0) {
			while (k-- > 0)
				pthread_mutex_destroy(&c->cls[k].lock);
			return -rc;
		}
		for (int i = 0; i < 2; i++) {
			spanlist_init(&cc->partial[i]);
			spanlist_init(&cc->full[i]);
		}
	}
	return 0;
}

void central_destroy(central_t *c)
{
	if (!c->seg)
		return;
	for (uint32_t k = 0; k < SIZECLASS_COUNT; k++)
		pthread_mutex_destroy(&c->cls[k].lock);
	c->seg = NULL;
}

static inline uint32_t load_sg(const central_t *c)
{
	return atomic_load_explicit(&c->seg->hdr->sweepgen, memory_order_acquire);
}

static inline uint32_t parity(uint32_t sg)
{
	return (sg >> 1) & 1;
}

/* Objects in a span of class k (the class was checked when the span was made or recovered). */
static uint32_t nelems_of(const shm_span_t *s)
{
	return sizeclass_nelems[s->sizeclass];
}

/*
 * Fold a daemon-owned span's free bits into its alloc bits; recount.
 * Objects freed. Clients write the bitmaps, so counts are bounded by nelems
 * and nothing else is trusted. Pinned objects stay allocated (bitmap.h), so
 * a span holding one is never empty: their alloc bits are set again here,
 * whatever the span's last owner wrote (the pins are heapd's own).
 */
static uint32_t sweep_span(central_t *c, uint32_t id)
{
	uint32_t nelems = nelems_of(&c->seg->spans[id]);
	uint64_t *alloc = segment_allocbits(c->seg, id);
	bitmap_pins_t pins = roots_pins_of(c->seg, id);
	uint32_t freed = bitmap_sweep(alloc, segment_freebits(c->seg, id, nelems), &pins, nelems);
	for (uint32_t w = 0; w < (nelems + 63) / 64; w++) {
		uint64_t pinned = bitmap_pin_word(&pins, w);
		if (pinned & ~bitmap_load(&alloc[w]))
			bitmap_store(&alloc[w], bitmap_load(&alloc[w]) | pinned);
	}
	prof_reap_span(c->seg, id); /* records of sampled objects just freed (shm/profrec.h) */
	span_set_allocount(c->seg, id, bitmap_count_alloc(alloc, nelems));
	return freed;
}

/* Claim a span just popped from an unswept list: sg - 2 -> sg - 1. */
static void claim_locked(central_t *c, uint32_t id, uint32_t sg)
{
	lock_assert_held(&c->cls[c->seg->spans[id].sizeclass].lock);
	if (!span_claim_sweep(c->seg, id, sg - 2, sg - 1)) {
		/* Only a popped span can be claimed, so this is a stale value (a restart). */
		span_set_sweepgen(c->seg, id, sg - 1);
	}
	span_set_list(c->seg, id, SPANLIST_SWEEPING);
}

/* File a swept span on the swept list of its state; the class lock is held. */
static void file_locked(central_t *c, central_class_t *cc, uint32_t id)
{
	const shm_span_t *s = &c->seg->spans[id];
	uint32_t sg = load_sg(c), p = parity(sg);

	lock_assert_held(&cc->lock);
	span_set_sweepgen(c->seg, id, sg);
	if (s->allocount >= nelems_of(s))
		spanlist_push(c->seg, &cc->full[p], id, (uint8_t)(SPANLIST_FULL + p));
	else
		spanlist_push(c->seg, &cc->partial[p], id, (uint8_t)(SPANLIST_PARTIAL + p));
}

int central_take(central_t *c, uint32_t sizeclass, uint32_t *span, int *needzero)
{
	central_class_t *cc = &c->cls[sizeclass];
	segment_t *seg = c->seg;
	const shm_span_t *spans = seg->spans;
	uint32_t id;
	int tries = 0;

	assert(sizeclass > 0 && sizeclass < SIZECLASS_COUNT);
	pthread_mutex_lock(&cc->lock);
	for (;;) {
		uint32_t sg = load_sg(c), cur = parity(sg);

		/* 1. A span swept this cycle with room: fold the frees since, and take it. */
		id = spanlist_pop(seg, &cc->partial[cur]);
		if (id != HEAPD_NIL) {
			span_set_list(seg, id, SPANLIST_SWEEPING);
			pthread_mutex_unlock(&cc->lock);
			sweep_span(c, id);
			goto found;
		}
		/* 2. An unswept span, partial first, then full ones that may have room by now. */
		id = spanlist_pop(seg, &cc->partial[cur ^ 1]);
		if (id == HEAPD_NIL && tries < CENTRAL_TAKE_FULL_TRIES)
			id = spanlist_pop(seg, &cc->full[cur ^ 1]);
		if (id == HEAPD_NIL)
			break;
		claim_locked(c, id, sg);
		pthread_mutex_unlock(&cc->lock);
		sweep_span(c, id);
		if (spans[id].allocount < nelems_of(&spans[id]))
			goto found;
		pthread_mutex_lock(&cc->lock);
		file_locked(c, cc, id);
		tries++;
	}
	pthread_mutex_unlock(&cc->lock);
	return -ENOMEM;
found:
	span_set_sweepgen(seg, id, load_sg(c));
	span_set_list(seg, id, SPANLIST_NONE);
	*span = id;
	*needzero = 1; /* freed slots hold their old contents */
	return 0;
}

int central_carve(central_t *c, uint32_t sizeclass, uint32_t *span, int *needzero)
{
	assert(sizeclass > 0 && sizeclass < SIZECLASS_COUNT);
	return pageheap_alloc_small(c->heap, sizeclass, span, needzero);
}

void central_free_span_locked(central_t *c, uint32_t id)
{
	pageheap_assert_locked(c->heap);
	quota_uncharge_span(c->quota, id);
	pageheap_free_locked(c->heap, id);
}

void central_free_span(central_t *c, uint32_t id)
{
	quota_uncharge_span(c->quota, id);
	pageheap_free(c->heap, id);
}

void central_put(central_t *c, uint32_t id, sweep_result_t *res)
{
	const shm_span_t *s = &c->seg->spans[id];
	central_class_t *cc = &c->cls[s->sizeclass];

	assert(s->state == SPAN_SMALL && s->owner == 0 && s->list == SPANLIST_NONE);
	uint32_t freed = sweep_span(c, id);
	if (res) {
		res->spans++;
		res->objects += freed;
	}
	if (s->allocount == 0) {
		if (res) {
			res->spans_freed++;
			res->pages_freed += s->npages;
		}
		central_free_span(c, id);
		return;
	}
	pthread_mutex_lock(&cc->lock);
	file_locked(c, cc, id);
	pthread_mutex_unlock(&cc->lock);
}

void central_lock_all(central_t *c)
{
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		pthread_mutex_lock(&c->cls[k].lock);
}

void central_unlock_all(central_t *c)
{
	for (uint32_t k = SIZECLASS_COUNT; k-- > 1;)
		pthread_mutex_unlock(&c->cls[k].lock);
}

uint32_t central_begin_cycle(central_t *c)
{
	central_lock_all(c);
	uint32_t sg = atomic_fetch_add(&c->seg->hdr->sweepgen, 2) + 2;
	central_unlock_all(c);
	return sg;
}

void central_sweep_class(central_t *c, uint32_t sizeclass, sweep_result_t *res)
{
	central_class_t *cc = &c->cls[sizeclass];
	segment_t *seg = c->seg;
	const shm_span_t *spans = seg->spans;

	for (;;) {
		pthread_mutex_lock(&cc->lock);
		uint32_t sg = load_sg(c), old = parity(sg) ^ 1;
		uint32_t id = spanlist_pop(seg, &cc->partial[old]);
		if (id == HEAPD_NIL)
			id = spanlist_pop(seg, &cc->full[old]);
		if (id == HEAPD_NIL) {
			pthread_mutex_unlock(&cc->lock);
			return;
		}
		claim_locked(c, id, sg);
		pthread_mutex_unlock(&cc->lock);

		uint32_t freed = sweep_span(c, id);
		res->spans++;
		res->objects += freed;
		if (spans[id].allocount == 0) {
			res->spans_freed++;
			res->pages_freed += spans[id].npages;
			central_free_span(c, id); /* still tagged SWEEPING, so a check never sees it orphaned */
			continue;
		}
		pthread_mutex_lock(&cc->lock);
		file_locked(c, cc, id);
		pthread_mutex_unlock(&cc->lock);
	}
}

uint64_t central_count(central_t *c)
{
	uint64_t n = 0;
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++) {
		central_class_t *cc = &c->cls[k];
		n += __atomic_load_n(&cc->partial[0].count, __ATOMIC_RELAXED) +
		     __atomic_load_n(&cc->partial[1].count, __ATOMIC_RELAXED) +
		     __atomic_load_n(&cc->full[0].count, __ATOMIC_RELAXED) +
		     __atomic_load_n(&cc->full[1].count, __ATOMIC_RELAXED);
	}
	return n;
}

static size_t check_list(central_t *c, uint32_t k, const spanlist_t *l, uint8_t tag,
                         const char *name, check_report_t *r)
{
	const segment_t *seg = c->seg;
	uint32_t grown = seg->hdr->npages_grown, prev = HEAPD_NIL, steps = 0;
	size_t before = r->nproblems;

	for (uint32_t id = l->head; id != HEAPD_NIL; prev = id, id = seg->spans[id].next) {
		if (id >= grown) {
			report_add(r, "class %u %s list: link to page %u beyond the grown heap", k, name, id);
			break;
		}
		if (++steps > l->count) {
			report_add(r, "class %u %s list: longer than its count %u (a cycle?)", k, name,
			           l->count);
			break;
		}
		const shm_span_t *s = &seg->spans[id];
		if (s->start != id || s->state != SPAN_SMALL)
			report_add(r, "class %u %s list: span %u is not a small span (state %u)", k, name, id,
			           s->state);
		else if (s->sizeclass != k)
			report_add(r, "class %u %s list: span %u has class %u", k, name, id, s->sizeclass);
		if (s->owner != 0)
			report_add(r, "class %u %s list: span %u is owned by client slot %u", k, name, id,
			           s->owner - 1);
		if (s->list != tag)
			report_add(r, "class %u %s list: span %u is tagged %u", k, name, id, s->list);
		if (s->prev != prev)
			report_add(r, "class %u %s list: span %u has prev %u, expected %u", k, name, id,
			           s->prev, prev);
	}
	if (steps < l->count && r->nproblems == before)
		report_add(r, "class %u %s list: %u spans, count says %u", k, name, steps, l->count);
	return r->nproblems - before;
}

size_t central_check_locked(central_t *c, check_report_t *r)
{
	size_t before = r->nproblems;

	pageheap_assert_locked(c->heap);
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++) {
		central_class_t *cc = &c->cls[k];
		for (int p = 0; p < 2; p++) {
			check_list(c, k, &cc->partial[p], (uint8_t)(SPANLIST_PARTIAL + p), "partial", r);
			check_list(c, k, &cc->full[p], (uint8_t)(SPANLIST_FULL + p), "full", r);
		}
	}
	return r->nproblems - before;
}
