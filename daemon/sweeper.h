// SPDX-License-Identifier: MIT
/*
 * sweeper.h - the background sweeper and scavenger thread, sweep cycles,
 * and the control jobs it runs off the event loop.
 *
 * A sweep cycle bumps hdr->sweepgen by 2 and sweeps every span on the
 * central lists (central.h), then frees large objects whose LargeFree was
 * lost (large.h). Cycles run on a timer (--sweep-interval), when enough span
 * memory has been handed out since the last one (SWEEPER_PACE_BYTES), for a
 * Sweep request, and before the arena would grow (sweeper_reclaim). After
 * each timed cycle the thread releases pages that have been free for longer
 * than --scavenge-delay.
 *
 * Sweep and Scavenge requests are jobs for this thread, so that they never
 * stall the event loop: a request takes a ticket (sweeper_submit); the
 * thread runs one job of a kind at a time, covering every ticket taken
 * before it started, and tells the loop (the notify hook) when one is done;
 * sweeper_done says whether a ticket is covered and with what result. A
 * flood of requests thus costs at most one cycle at a time.
 *
 * Reclaim before growth runs a cycle only if something the daemon saw may
 * have freed memory since the last cycle (a hand-back, a LargeFree, a
 * process gone: sweeper_note_free), or enough time has passed since the
 * last reclaim found nothing: that wait doubles (from SWEEPER_RECLAIM_MIN_NS
 * to SWEEPER_RECLAIM_MAX_NS) while cycles find nothing, so a full arena
 * costs a refill a cycle now and then, not every time. (Frees by clients
 * into spans the daemon holds are seen only by sweeping, hence the wait.)
 * After a cycle that found nothing, even a hand-back does not start the
 * next one for four times as long as that cycle took: a client that hands
 * back a full span and asks for another, over and over at a full arena,
 * keeps the event loop in cycles a fifth of the time at most.
 *
 * Locks: cycle_lock makes cycles one at a time (taken before any class
 * lock); lock/cond carry the thread's wake-ups and the job books.
 */
#ifndef HEAPD_DAEMON_SWEEPER_H
#define HEAPD_DAEMON_SWEEPER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "central.h"

#define SWEEPER_PACE_BYTES (64ULL << 20)
#define SWEEPER_RECLAIM_MIN_NS 1000000ULL     /* 1 ms */
#define SWEEPER_RECLAIM_MAX_NS 1000000000ULL  /* 1 s */

enum {
	SWEEPER_JOB_SWEEP = 0,    /* a whole cycle; result: spans swept */
	SWEEPER_JOB_SCAVENGE = 1, /* release every free page; result: pages released */
	SWEEPER_NJOBS = 2,
};

typedef struct sweeper_job {
	uint64_t taken;     /* tickets taken */
	uint64_t started;   /* tickets the running or last job covers */
	uint64_t done;      /* tickets the last finished job covered */
	uint64_t result;
} sweeper_job_t;

typedef struct sweeper {
	central_t *central;
	uint64_t interval_ns;        /* timed cycles */
	uint64_t scavenge_delay_ns;  /* free this long before release */
	pthread_mutex_t cycle_lock;  /* one cycle at a time */
	pthread_mutex_t lock;        /* guards stop, kicked, jobs, reclaim_* */
	pthread_cond_t cond;
	int stop, kicked;
	int running;
	pthread_t thread;
	_Atomic uint64_t carved;     /* bytes of spans handed out since the last cycle */
	_Atomic int dirty;           /* memory may have been freed since the last cycle began */
	sweeper_job_t jobs[SWEEPER_NJOBS];
	void (*notify)(void *arg);   /* a job finished (called on the sweeper thread) */
	void *notify_arg;
	uint64_t reclaim_after;      /* no reclaim cycle before this time (ns) */
	uint64_t reclaim_wait;       /* the current wait after a cycle that freed nothing */
	uint64_t reclaim_floor;      /* no reclaim cycle before this time, dirty or not (ns) */
} sweeper_t;

int sweeper_init(sweeper_t *sw, central_t *central, uint64_t interval_s, uint64_t scavenge_delay_s);
void sweeper_destroy(sweeper_t *sw);

/* Start or stop the background thread. */
int sweeper_start(sweeper_t *sw);
void sweeper_stop(sweeper_t *sw);

/* Run a whole cycle now, on the calling thread. Returns the spans swept. */
uint64_t sweeper_cycle(sweeper_t *sw, sweep_result_t *res);

/* Something that may free memory happened (reclaim may sweep again). */
static inline void sweeper_note_free(sweeper_t *sw)
{
	atomic_store_explicit(&sw->dirty, 1, memory_order_relaxed);
}

/* Count bytes of spans handed out; wakes the thread every SWEEPER_PACE_BYTES. */
void sweeper_note_alloc(sweeper_t *sw, uint64_t bytes);

/*
 * The heap is about to grow for npages: sweep first if that may free pages
 * (Go's reclaim), within the backoff above. Returns the pages freed.
 */
uint64_t sweeper_reclaim(sweeper_t *sw, uint64_t npages);

/* Release free pages unused since before older_than (ns; UINT64_MAX: all). */
uint64_t sweeper_scavenge(sweeper_t *sw, uint64_t older_than);

/*
 * A ticket for a job of kind. Without the thread running, the job runs here
 * and now. The thread calls notify when it finishes one.
 */
uint64_t sweeper_submit(sweeper_t *sw, int kind);

/* 1 if ticket of kind is done, with the result of the job that covered it. */
int sweeper_done(sweeper_t *sw, int kind, uint64_t ticket, uint64_t *result);

#endif
