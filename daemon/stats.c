// SPDX-License-Identifier: MIT
/*
 * stats.c - usage figures (see stats.h).
 *
 * Entry points: stats_collect, stats_fill_reply. The walk (pageheap_walk)
 * holds the heap lock for a chunk of spans at a time, so refills and large
 * allocations wait for a chunk, never for the whole walk; bitmaps are read
 * with relaxed loads while clients keep allocating, and bounded by each
 * class's object count.
 */
#include "stats.h"

#include <string.h>

#include "bitmap.h"
#include "clock.h"
#include "daemon.h"

/* What count_span adds to, and where it reads. */
typedef struct count_ctx {
	stats_t *st;
	const segment_t *seg;
} count_ctx_t;

static void count_span(void *arg, uint32_t p)
{
	count_ctx_t *ctx = arg;
	stats_t *st = ctx->st;
	const segment_t *seg = ctx->seg;
	const shm_span_t *s = &seg->spans[p];

	if (s->state == SPAN_SMALL) {
		uint32_t k = s->sizeclass;
		if (k == 0 || k >= SIZECLASS_COUNT)
			return; /* recovery quarantines such a span; nothing to count */
		uint32_t nelems = sizeclass_nelems[k];
		const uint64_t *alloc = segment_allocbits(seg, p);
		uint32_t inuse = bitmap_count_inuse(alloc, segment_freebits(seg, p, nelems), nelems);
		st->spans_in_use++;
		st->objects_in_use += inuse;
		st->bytes_in_use += (uint64_t)inuse * sizeclass_size[k];
		st->cls[k].spans++;
		st->cls[k].objects_in_use += inuse;
		st->cls[k].free_slots += nelems - inuse;
	} else if (s->state == SPAN_LARGE) {
		const uint64_t *alloc = segment_allocbits(seg, p), *freeb = segment_freebits(seg, p, 1);
		st->spans_in_use++;
		if ((bitmap_load(&alloc[0]) & 1) && !(bitmap_load(&freeb[0]) & 1)) {
			uint64_t bytes = (uint64_t)s->npages << HEAPD_PAGE_SHIFT;
			st->objects_in_use++;
			st->bytes_in_use += bytes;
			st->large_objects++;
			st->large_bytes += bytes;
		}
	}
}

void stats_collect(daemon_t *d, stats_t *st)
{
	shm_header_t *hdr = d->seg.hdr;
	pageheap_counts_t c;
	count_ctx_t ctx = { st, &d->seg };

	memset(st, 0, sizeof(*st));
	pageheap_walk(&d->heap, count_span, &ctx);
	pageheap_counts(&d->heap, &c);
	st->pages_total = c.npages_grown;
	st->pages_in_use = c.pages_inuse;
	st->pages_free = c.pages_free;
	st->pages_released = c.pages_released;
	st->sweep_cycles = __atomic_load_n(&hdr->sweep_cycles, __ATOMIC_RELAXED);
	st->page_size = HEAPD_PAGE_SIZE;
	st->pages_max = hdr->npages_max;
	st->arena_bytes = (uint64_t)hdr->npages_max << HEAPD_PAGE_SHIFT;
	st->clients = d->nclients;
	st->sweepgen = atomic_load(&hdr->sweepgen);
	st->uptime_seconds = (heapd_now_ns() - d->start_ns) / 1000000000ULL;
	st->roots = hdr->roots_count;
	st->roots_max = hdr->roots_max;
}

void stats_fill_reply(const stats_t *st, Heapd__StatsReply *r, Heapd__ClassStats *cls,
                      Heapd__ClassStats **ptrs)
{
	heapd__stats_reply__init(r);
	r->arena_bytes = st->arena_bytes;
	r->page_size = st->page_size;
	r->pages_total = st->pages_total;
	r->pages_in_use = st->pages_in_use;
	r->pages_free = st->pages_free;
	r->pages_released = st->pages_released;
	r->spans_in_use = st->spans_in_use;
	r->objects_in_use = st->objects_in_use;
	r->bytes_in_use = st->bytes_in_use;
	r->clients = st->clients;
	r->sweepgen = st->sweepgen;
	r->sweep_cycles = st->sweep_cycles;
	r->uptime_seconds = st->uptime_seconds;
	r->large_objects = st->large_objects;
	r->large_bytes = st->large_bytes;
	r->pages_max = st->pages_max;
	r->roots = st->roots;
	r->roots_max = st->roots_max;
	r->n_classes = 0;
	r->classes = ptrs;
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++) {
		if (st->cls[k].spans == 0)
			continue;
		Heapd__ClassStats *c = &cls[r->n_classes];
		heapd__class_stats__init(c);
		c->sizeclass = k;
		c->size = sizeclass_size[k];
		c->spans = st->cls[k].spans;
		c->objects_in_use = st->cls[k].objects_in_use;
		c->free_slots = st->cls[k].free_slots;
		ptrs[r->n_classes++] = c;
	}
}
