// SPDX-License-Identifier: MIT
/*
 * sweeper.c - sweep cycles, the background sweeper/scavenger thread, and
 * the control jobs it runs (see sweeper.h).
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

#include "clock.h"
#include "large.h"
#include "log.h"

int sweeper_init(sweeper_t *sw, central_t *central, uint64_t interval_s, uint64_t scavenge_delay_s)
{
	pthread_condattr_t ca;

	memset(sw, 0, sizeof(*sw));
	sw->central = central;
	sw->interval_ns = (interval_s ? interval_s : 1) * 1000000000ULL;
	sw->scavenge_delay_ns = scavenge_delay_s * 1000000000ULL;
	sw->reclaim_wait = SWEEPER_RECLAIM_MIN_NS;
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
	atomic_store(&sw->dirty, 0);
	central_begin_cycle(c);
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		central_sweep_class(c, k, res);
	res->spans_freed += large_sweep(c, LARGE_FREE_GRACE_NS, &res->pages_freed);
	pageheap_enter(c->heap);
	c->seg->hdr->sweep_cycles++;
	pageheap_leave(c->heap);
	pthread_mutex_unlock(&sw->cycle_lock);
	return res->spans;
}

static void kick(sweeper_t *sw)
{
	pthread_mutex_lock(&sw->lock);
	sw->kicked = 1;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
}

void sweeper_note_alloc(sweeper_t *sw, uint64_t bytes)
{
	uint64_t before = atomic_fetch_add(&sw->carved, bytes);
	if (before < SWEEPER_PACE_BYTES && before + bytes >= SWEEPER_PACE_BYTES)
		kick(sw);
}

uint64_t sweeper_reclaim(sweeper_t *sw, uint64_t npages)
{
	shm_header_t *hdr = sw->central->seg->hdr;
	sweep_result_t res;
	uint64_t now = heapd_now_ns();

	/* Only when growing is what the heap would do next. */
	if (__atomic_load_n(&hdr->pages_free, __ATOMIC_RELAXED) >= npages)
		return 0;
	/*
	 * Frees by clients are invisible until a sweep, so there is no cheap way
	 * to know that a cycle would find nothing; after one that did, wait.
	 */
	pthread_mutex_lock(&sw->lock);
	int wait = now < sw->reclaim_floor || (now < sw->reclaim_after && !atomic_load(&sw->dirty));
	pthread_mutex_unlock(&sw->lock);
	if (wait)
		return 0;
	sweeper_cycle(sw, &res);
	uint64_t end = heapd_now_ns();
	pthread_mutex_lock(&sw->lock);
	if (res.pages_freed) {
		sw->reclaim_wait = SWEEPER_RECLAIM_MIN_NS;
		sw->reclaim_after = 0;
		sw->reclaim_floor = 0;
	} else {
		sw->reclaim_floor = end + 4 * (end - now);
		sw->reclaim_after = end + sw->reclaim_wait;
		if (sw->reclaim_wait < SWEEPER_RECLAIM_MAX_NS)
			sw->reclaim_wait *= 2;
	}
	pthread_mutex_unlock(&sw->lock);
	return res.pages_freed;
}

uint64_t sweeper_scavenge(sweeper_t *sw, uint64_t older_than)
{
	return pageheap_release(sw->central->heap, older_than);
}

static uint64_t run_job(sweeper_t *sw, int kind)
{
	if (kind == SWEEPER_JOB_SWEEP)
		return sweeper_cycle(sw, NULL);
	return sweeper_scavenge(sw, UINT64_MAX);
}

/* Run the jobs asked for; sw->lock held, dropped while each runs. 1 if any ran. */
static int run_jobs_locked(sweeper_t *sw)
{
	int ran = 0;
	for (int k = 0; k < SWEEPER_NJOBS; k++) {
		sweeper_job_t *j = &sw->jobs[k];
		if (j->taken == j->started)
			continue;
		j->started = j->taken;
		pthread_mutex_unlock(&sw->lock);
		uint64_t r = run_job(sw, k);
		pthread_mutex_lock(&sw->lock);
		j->result = r;
		j->done = j->started;
		ran = 1;
	}
	return ran;
}

uint64_t sweeper_submit(sweeper_t *sw, int kind)
{
	pthread_mutex_lock(&sw->lock);
	uint64_t ticket = ++sw->jobs[kind].taken;
	if (sw->running) {
		sw->kicked = 1;
		pthread_cond_signal(&sw->cond);
	} else {
		run_jobs_locked(sw);
	}
	pthread_mutex_unlock(&sw->lock);
	return ticket;
}

int sweeper_done(sweeper_t *sw, int kind, uint64_t ticket, uint64_t *result)
{
	pthread_mutex_lock(&sw->lock);
	int done = sw->jobs[kind].done >= ticket;
	if (done)
		*result = sw->jobs[kind].result;
	pthread_mutex_unlock(&sw->lock);
	return done;
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
		int kicked = sw->kicked;
		sw->kicked = 0;
		if (run_jobs_locked(sw)) {
			if (sw->notify) {
				pthread_mutex_unlock(&sw->lock);
				sw->notify(sw->notify_arg);
				pthread_mutex_lock(&sw->lock);
			}
			if (kicked && atomic_load(&sw->carved) < SWEEPER_PACE_BYTES)
				continue; /* woken for the jobs alone */
		}
		pthread_mutex_unlock(&sw->lock);

		sweeper_cycle(sw, NULL);
		uint64_t now = heapd_now_ns();
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
	pthread_mutex_lock(&sw->lock);
	sw->running = 1;
	pthread_mutex_unlock(&sw->lock);
	return 0;
}

void sweeper_stop(sweeper_t *sw)
{
	pthread_mutex_lock(&sw->lock);
	if (!sw->running) {
		pthread_mutex_unlock(&sw->lock);
		return;
	}
	sw->stop = 1;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(sw->thread, NULL);
	pthread_mutex_lock(&sw->lock);
	sw->running = 0;
	/* Jobs asked for meanwhile still get their answer. */
	run_jobs_locked(sw);
	pthread_mutex_unlock(&sw->lock);
}
