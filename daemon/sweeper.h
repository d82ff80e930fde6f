// SPDX-License-Identifier: MIT
/*
 * sweeper.h - the background sweeper and scavenger thread, and sweep cycles.
 *
 * A sweep cycle bumps hdr->sweepgen by 2 and sweeps every span on the
 * central lists (central.h), then frees large objects whose LargeFree was
 * lost (large.h). Cycles run on a timer (--sweep-interval), when enough span
 * memory has been handed out since the last one (SWEEPER_PACE_BYTES), on a
 * Sweep request, and before the arena would grow (sweeper_reclaim). After
 * each timed cycle the thread releases pages that have been free for longer
 * than --scavenge-delay.
 *
 * Locks: cycle_lock makes cycles one at a time (taken before any class
 * lock); lock/cond carry the thread's wake-ups.
 */
#ifndef HEAPD_DAEMON_SWEEPER_H
#define HEAPD_DAEMON_SWEEPER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "central.h"
#include "clients.h"

#define SWEEPER_PACE_BYTES (64ULL << 20)

typedef struct sweeper {
	central_t *central;
	clients_t *clients;
	uint64_t interval_ns;        /* timed cycles */
	uint64_t scavenge_delay_ns;  /* free this long before release */
	pthread_mutex_t cycle_lock;  /* one cycle at a time */
	pthread_mutex_t lock;        /* guards stop, kicked */
	pthread_cond_t cond;
	int stop, kicked;
	int running;
	pthread_t thread;
	_Atomic uint64_t carved;     /* bytes of spans handed out since the last cycle */
} sweeper_t;

int sweeper_init(sweeper_t *sw, central_t *central, clients_t *clients, uint64_t interval_s,
                 uint64_t scavenge_delay_s);
void sweeper_destroy(sweeper_t *sw);

/* Start or stop the background thread. */
int sweeper_start(sweeper_t *sw);
void sweeper_stop(sweeper_t *sw);

/* Run a whole cycle now, on the calling thread. Returns the spans swept. */
uint64_t sweeper_cycle(sweeper_t *sw, sweep_result_t *res);

/* Count bytes of spans handed out; wakes the thread every SWEEPER_PACE_BYTES. */
void sweeper_note_alloc(sweeper_t *sw, uint64_t bytes);

/*
 * The heap is about to grow for npages: sweep first if that may free pages
 * (Go's reclaim). Returns the pages the sweep freed.
 */
uint64_t sweeper_reclaim(sweeper_t *sw, uint64_t npages);

/* Release free pages unused since before older_than (ns; UINT64_MAX: all). */
uint64_t sweeper_scavenge(sweeper_t *sw, uint64_t older_than);

#endif
