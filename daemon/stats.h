// SPDX-License-Identifier: MIT
/*
 * stats.h - usage figures for the Stats request (heapctl stats) and the
 * service status line.
 *
 * stats_collect walks the span table under the heap lock in chunks and
 * counts objects from the bitmaps without stopping clients, so figures for
 * spans that clients cache are a snapshot; they are exact after a sweep when
 * no client caches spans.
 */
#ifndef HEAPD_DAEMON_STATS_H
#define HEAPD_DAEMON_STATS_H

#include <stdint.h>

#include "heap.pb-c.h"
#include "sizeclass.h"

struct daemon;

typedef struct stats_class {
	uint64_t spans;
	uint64_t objects_in_use;
	uint64_t free_slots;
} stats_class_t;

typedef struct stats {
	uint64_t arena_bytes;     /* pages region: npages_max pages */
	uint32_t page_size;
	uint64_t pages_total;     /* grown */
	uint64_t pages_max;
	uint64_t pages_in_use;
	uint64_t pages_free;
	uint64_t pages_released;
	uint64_t spans_in_use;
	uint64_t objects_in_use;
	uint64_t bytes_in_use;
	uint64_t large_objects;
	uint64_t large_bytes;
	uint32_t clients;
	uint32_t sweepgen;
	uint64_t sweep_cycles;
	uint64_t uptime_seconds;
	uint64_t roots;           /* names bound */
	uint64_t roots_max;       /* names the directory holds */
	stats_class_t cls[SIZECLASS_COUNT];
} stats_t;

void stats_collect(struct daemon *d, stats_t *st);

/*
 * Fill a StatsReply from st; classes with at least one span are listed,
 * using cls and ptrs (SIZECLASS_COUNT entries each) as storage.
 */
void stats_fill_reply(const stats_t *st, Heapd__StatsReply *r, Heapd__ClassStats *cls,
                      Heapd__ClassStats **ptrs);

#endif
