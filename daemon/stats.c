// SPDX-License-Identifier: MIT
/*
 * stats.c - usage figures (see stats.h).
 *
 * Entry points: stats_collect, stats_fill_reply. The walk holds the heap
 * lock for at most STATS_WALK_CHUNK spans at a time, so refills and large
 * allocations wait for a chunk, never for the whole walk; bitmaps are read
 * with relaxed loads while clients keep allocating.
 */
#include "stats.h"

#include <string.h>

#include "bitmap.h"
#include "daemon.h"

#define STATS_WALK_CHUNK 4096u

void stats_collect(daemon_t *d, stats_t *st)
{
	segment_t *seg = &d->seg;
	shm_header_t *hdr = seg->hdr;
	uint32_t p = 0;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->heap.lock);
	for (;;) {
		uint32_t grown = hdr->npages_grown;
		for (uint32_t n = 0; p < grown && n < STATS_WALK_CHUNK; n++) {
			const shm_span_t *s = &seg->spans[p];
			if (s->state == SPAN_DEAD || s->start != p || s->npages == 0 ||
			    s->npages > grown - p) {
				p++;
				continue;
			}
			if (s->state == SPAN_SMALL) {
				uint32_t k = s->sizeclass;
				uint32_t nelems = s->nelems > HEAPD_SPAN_MAX_OBJECTS ? HEAPD_SPAN_MAX_OBJECTS : s->nelems;
				const uint64_t *alloc = segment_allocbits(seg, p), *freeb = segment_freebits(seg, p, nelems);
				uint32_t inuse = bitmap_count_inuse(alloc, freeb, nelems);
				st->spans_in_use++;
				st->objects_in_use += inuse;
				st->bytes_in_use += (uint64_t)inuse * s->elemsize;
				if (k > 0 && k < SIZECLASS_COUNT) {
					st->cls[k].spans++;
					st->cls[k].objects_in_use += inuse;
					st->cls[k].free_slots += nelems - inuse;
				}
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
			p += s->npages;
		}
		if (p >= hdr->npages_grown)
			break;
		pthread_mutex_unlock(&d->heap.lock);
		pthread_mutex_lock(&d->heap.lock);
	}
	st->pages_total = hdr->npages_grown;
	st->pages_in_use = hdr->pages_inuse;
	st->pages_free = hdr->pages_free;
	st->pages_released = hdr->pages_released;
	st->sweep_cycles = hdr->sweep_cycles;
	pthread_mutex_unlock(&d->heap.lock);

	st->page_size = HEAPD_PAGE_SIZE;
	st->pages_max = hdr->npages_max;
	st->arena_bytes = (uint64_t)hdr->npages_max << HEAPD_PAGE_SHIFT;
	st->clients = d->nclients;
	st->sweepgen = atomic_load(&hdr->sweepgen);
	st->uptime_seconds = (pageheap_now() - d->start_ns) / 1000000000ULL;
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
