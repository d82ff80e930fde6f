// SPDX-License-Identifier: MIT
/*
 * sweeper.c - sweep cycles and the background sweeper/scavenger thread
 * (see sweeper.h).
 *
 * Entry points: sweeper_start/stop, sweeper_cycle (Sweep request, tests),
 * sweeper_reclaim (refill and large allocation before the heap grows),
 * sweeper_note_alloc (pacing), sweeper_scavenge (Scavenge request).
 *
 * A cycle: take cycle_lock; central_begin_cycle (sg += 2 under every class
 * lock, so no span is filed against a stale sg); sweep each class's unswept
 * lists to empty; then large_sweep. Everything filed after the bump goes on
 * swept lists, so the unswept lists are empty when the cycle ends and the
 * next bump never leaves a span two generations behind.
 */
#include "sweeper.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "large.h"
#include "log.h"

int sweeper_init(sweeper_t *sw, central_t *central, clients_t *clients, uint64_t interval_s,
                 uint64_t scavenge_delay_s)
{
	pthread_condattr_t ca;

	memset(sw, 0, sizeof(*sw));
	sw->central = central;
	sw->clients = clients;
	sw->interval_ns = (interval_s ? interval_s : 1) * 1000000000ULL;
	sw->scavenge_delay_ns = scavenge_delay_s * 1000000000ULL;
	pthread_mutex_init(&sw->cycle_lock, NULL);
	pthread_mutex_init(&sw->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sw->cond, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void sweeper_destroy(sweeper_t *sw)
{
	if (!sw->central)
		return;
	sweeper_stop(sw);
	pthread_cond_destroy(&sw->cond);
	pthread_mutex_destroy(&sw->lock);
	pthread_mutex_destroy(&sw->cycle_lock);
	sw->central = NULL;
}

uint64_t sweeper_cycle(sweeper_t *sw, sweep_result_t *res)
{
	sweep_result_t local;
	central_t *c = sw->central;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&sw->cycle_lock);
	atomic_store(&sw->carved, 0);
	central_begin_cycle(c);
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		central_sweep_class(c, k, res);
	res->spans_freed += large_sweep(c, sw->clients, LARGE_FREE_GRACE_NS, &res->pages_freed);
	pthread_mutex_lock(&c->heap->lock);
	c->seg->hdr->sweep_cycles++;
	pthread_mutex_unlock(&c->heap->lock);
	pthread_mutex_unlock(&sw->cycle_lock);
	return res->spans;
}

void sweeper_note_alloc(sweeper_t *sw, uint64_t bytes)
{
	uint64_t before = atomic_fetch_add(&sw->carved, bytes);
	if (before < SWEEPER_PACE_BYTES && before + bytes >= SWEEPER_PACE_BYTES) {
		pthread_mutex_lock(&sw->lock);
		sw->kicked = 1;
		pthread_cond_signal(&sw->cond);
		pthread_mutex_unlock(&sw->lock);
	}
}

uint64_t sweeper_reclaim(sweeper_t *sw, uint64_t npages)
{
	shm_header_t *hdr = sw->central->seg->hdr;
	sweep_result_t res;

	/* Only when growing is what the heap would do next. */
	if (__atomic_load_n(&hdr->pages_free, __ATOMIC_RELAXED) >= npages)
		return 0;
	/*
	 * Frees by clients are invisible until a sweep, so there is no cheap way
	 * to know a cycle would find nothing: with the arena full, every refill
	 * that would grow pays one cycle (it stops at the first span it cannot get).
	 */
	sweeper_cycle(sw, &res);
	return res.pages_freed;
}

uint64_t sweeper_scavenge(sweeper_t *sw, uint64_t older_than)
{
	return pageheap_release(sw->central->heap, older_than);
}

static void *sweeper_main(void *arg)
{
	sweeper_t *sw = arg;
	struct timespec deadline;

	pthread_mutex_lock(&sw->lock);
	while (!sw->stop) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		uint64_t ns = (uint64_t)deadline.tv_nsec + sw->interval_ns;
		deadline.tv_sec += (time_t)(ns / 1000000000ULL);
		deadline.tv_nsec = (long)(ns % 1000000000ULL);
		while (!sw->stop && !sw->kicked) {
			if (pthread_cond_timedwait(&sw->cond, &sw->lock, &deadline) == ETIMEDOUT)
				break;
		}
		if (sw->stop)
			break;
		sw->kicked = 0;
		pthread_mutex_unlock(&sw->lock);

		sweeper_cycle(sw, NULL);
		uint64_t now = pageheap_now();
		if (now > sw->scavenge_delay_ns) {
			uint64_t released = sweeper_scavenge(sw, now - sw->scavenge_delay_ns);
			if (released)
				log_msg("scavenger released %llu pages", (unsigned long long)released);
		}

		pthread_mutex_lock(&sw->lock);
	}
	pthread_mutex_unlock(&sw->lock);
	return NULL;
}

int sweeper_start(sweeper_t *sw)
{
	int rc;
	if (sw->running)
		return 0;
	sw->stop = 0;
	rc = pthread_create(&sw->thread, NULL, sweeper_main, sw);
	if (rc != 0)
		return -rc;
	sw->running = 1;
	return 0;
}

void sweeper_stop(sweeper_t *sw)
{
	if (!sw->running)
		return;
	pthread_mutex_lock(&sw->lock);
	sw->stop = 1;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(sw->thread, NULL);
	sw->running = 0;
}
