// SPDX-License-Identifier: MIT
/*
 * test_soak_clients.c - clients killed at random points never leave a span
 * stuck, and never hold up or disturb anyone else.
 *
 * One real daemon. VICTIMS victim processes at a time allocate in storms
 * across many size classes, take large objects, trim their caches and start
 * classes they have no span of (each a refill). Each is killed with SIGKILL
 * 0-20 ms after it starts working (one time in eight, 0-3 ms after its
 * fork, so that some die while connecting) and replaced, $SOAK_KILLS times
 * (default 1000). One victim in four first makes heapd end its session (a
 * malformed frame on the library's connection) and is killed around its
 * reconnect. Meanwhile, for the whole run, two bystander processes allocate,
 * check and free without pause, and so do, with short pauses, the worker
 * threads of ZOMBIES zombie-leader clients: processes whose main thread
 * allocated a few objects, started the workers and called pthread_exit
 * (the daemon must count them alive). One thread of each bystander and
 * zombie-leader client also writes raw frames now and then (hlibraw_t,
 * strict: the daemon stays up): it makes heapd end its session (in a
 * zombie-leader, while the other worker goes on allocating) and checks that
 * the next request re-adopts the same slot; it frees a large object by its
 * bit alone and sends LargeFrees of a wrong generation at once and the
 * right one over heapd's 2 s grace later, twice, and checks that none of
 * them ended the session or freed anything but that object.
 *
 * A victim records each live object (offset, size, seed) in shared memory
 * once the object holds its pattern, and clears the record before freeing
 * it. When a victim is dead, the test checks the pattern of every object it
 * recorded and frees it: memory stays bounded, and frees of a dead process's
 * objects by another process are exercised too. Every live object of every
 * process is claimed in a claim map (harness/claims.h), so an object handed out
 * twice is caught the moment it is.
 *
 * The test fails if a victim, a bystander or a zombie-leader client ever
 * gets NULL or finds a damaged pattern, if a raw frame's check fails, or if
 * a bystander or a zombie-leader's worker goes 5 s without progress. At the
 * end:
 *   - once the daemon has seen every death it lists only live clients,
 *     every zombie-leader client among them, and no small span in the span
 *     table belongs to the slot of a dead client: every span a dead client
 *     cached is back with the daemon;
 *   - check finds no problem;
 *   - the objects of the zombie-leaders' main threads, gone long since, hold
 *     their patterns;
 *   - once the bystanders and the test have freed everything and
 *     disconnected, and the zombie-leader clients have freed everything and
 *     exited without a Bye, the daemon lists no client, no span is owned by
 *     any client, and the objects still in use (swept until the grace of a
 *     LargeFree lost with an ended session has passed) are at most one per
 *     kill that hit a victim inside an allocation or a free (from hc_malloc
 *     to recording the object, or from clearing the record to the end of
 *     hc_free): that one object stays allocated, as the failure model says.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/book.h"
#include "harness/check_main.h"
#include "harness/child.h"
#include "harness/claims.h"
#include "harness/ctl.h"
#include "harness/heapd.h"
#include "harness/libraw.h"
#include "harness/liblock.h"
#include "harness/util.h"
#include "harness/view.h"
#include "heapclient.h"
#include "sizeclass.h"

#define VICTIMS 3
#define BYSTANDERS 2
#define ZOMBIES 2                    /* zombie-leader clients */
#define ZOMBIE_THREADS 2             /* workers of each */
#define MAIN_OBJS 64                 /* objects a zombie-leader's main thread leaves behind */
#define ZOMBIE_PAUSE_US 5000         /* between a zombie-leader worker's rounds: CPU for the victims */
#define END_ONE_IN 4                 /* one victim in four ends its session first */
#define RAW_END_EVERY_MS 250         /* a thread with raw frames ends its session this often */
#define RAW_LATE_EVERY_MS 300        /* and frees a large object by its bit alone this often */
#define LEAK_SETTLE_MS 10000         /* sweeping for lost LargeFrees at the end, at most */
#define VICTIM_RECS 1024
#define VICTIM_LARGE_MAX (8u << 20)  /* live large bytes a victim keeps at most */
#define KILL_WINDOW_US 20000         /* a victim is killed 0-20 ms after it starts working */
#define EARLY_WINDOW_US 3000         /* or 0-3 ms after its fork, while it connects */
#define READY_TIMEOUT_MS 10000       /* a victim that never starts is killed anyway */
#define STALL_LIMIT_MS 5000          /* a steady worker without progress this long fails the test */
#define SEEN_DEAD_MS 30000           /* the daemon sees every death within this */
#define BY_OBJS 512

/* What a victim is doing; read by the test at the moment it kills the victim. */
enum { PH_START, PH_CONNECT, PH_ENDED, PH_STORM, PH_FRESH, PH_LARGE, PH_FREE, PH_TRIM, PH_COUNT };
static const char *const phase_name[PH_COUNT] = {
	"before connecting", "connecting", "its ended session (reconnect, re-adoption)",
	"allocation storm", "fresh classes (refills)", "large allocations", "frees", "trim",
};

typedef struct victim {
	_Atomic int phase;
	_Atomic int in_op;       /* inside an allocation or a free: a kill may leak that one object */
	_Atomic int ended;       /* heapd ended its session (the malformed frame is written) */
	_Atomic int readopted;   /* and its next request re-adopted its slot */
	_Atomic int failed;
	char why[256];
	hbook_rec_t recs[VICTIM_RECS];
} victim_t;

/* A thread that allocates, checks and frees for the whole run: a bystander, or a zombie-leader's worker. */
typedef struct worker {
	_Atomic uint64_t progress;   /* rounds done */
	_Atomic uint64_t verified;   /* objects checked and freed */
	_Atomic int stop;
	_Atomic int failed;
	char why[256];
	hbook_rec_t recs[BY_OBJS];
} worker_t;

/* A client process whose main thread leaves objects behind, starts the workers and exits. */
typedef struct zombie {
	worker_t w[ZOMBIE_THREADS];
	_Atomic int main_done;       /* the main thread is about to call pthread_exit */
	_Atomic int failed;          /* the main thread's failure */
	char why[256];
	hbook_rec_t main_recs[MAIN_OBJS];
} zombie_t;

typedef struct shared {
	victim_t victims[VICTIMS];
	worker_t by[BYSTANDERS];
	zombie_t zombies[ZOMBIES];
	hlibraw_counts_t raw;       /* raw frames of bystanders and zombie-leaders' workers */
} shared_t;

static shared_t *S;
static hclaims_t claims;

static void daemon_up(void)
{
	/*
	 * A kill inside a large allocation leaves its object allocated (its
	 * reply may have reached the victim): about one kill in eleven, some
	 * 60 MiB per thousand kills. $SOAK_ARENA sizes the arena for the run.
	 */
	const char *size = getenv("SOAK_ARENA");
	hd_default_start(size && *size ? size : "1G", NULL);
	S = hutil_shared(sizeof(*S));
	hclaims_init(&claims, hd_default.arena);
}

/* ---- victims ---- */

typedef struct vstate {
	victim_t *v;
	hbook_t book;
	uint64_t rng;
	uint64_t classes_used[(SIZECLASS_COUNT + 63) / 64]; /* since the last trim */
} vstate_t;

#define VFAIL(st, ...) hchild_fail_into((st)->v->why, sizeof((st)->v->why), &(st)->v->failed, __VA_ARGS__)

static size_t small_size(uint64_t *rng)
{
	uint64_t r = hutil_rand(rng);
	switch (r % 16) {
	case 0:
		return 16385 + (r >> 8) % 16384;
	case 1:
	case 2:
		return 4097 + (r >> 8) % 12288;
	case 3:
	case 4:
	case 5:
		return 1025 + (r >> 8) % 3072;
	default:
		return 1 + (r >> 8) % 1024;
	}
}

static void v_alloc(vstate_t *st, size_t size)
{
	char err[200];
	if (st->book.nfree == 0)
		return;
	atomic_store(&st->v->in_op, 1);
	if (!hbook_alloc(&st->book, size, err, sizeof(err)))
		VFAIL(st, "victim: %s", err);
	atomic_store(&st->v->in_op, 0);
	if (size <= HEAPD_MAX_SMALL) {
		uint32_t k = sizeclass_of(size);
		st->classes_used[k / 64] |= 1ULL << (k % 64);
	}
}

static void v_free(vstate_t *st, uint32_t k)
{
	char err[200];
	atomic_store(&st->v->in_op, 1);
	if (hbook_free(&st->book, k, err, sizeof(err)) < 0)
		VFAIL(st, "victim: %s", err);
	atomic_store(&st->v->in_op, 0);
}

static void victim_main(victim_t *v, uint64_t seed)
{
	static vstate_t st;

	memset(&st, 0, sizeof(st));
	st.v = v;
	st.rng = seed;
	hbook_init(&st.book, v->recs, VICTIM_RECS, &claims, (uint64_t)getpid() << 32);
	atomic_store(&v->phase, PH_CONNECT);
	int rc = hc_connect(NULL);
	if (rc < 0)
		VFAIL(&st, "victim %d: hc_connect: %s", (int)getpid(), strerror(-rc));
	if (hutil_rand(&st.rng) % END_ONE_IN == 0) {
		/* heapd ends the session; the first allocation (a refill) reconnects and re-adopts */
		hc_stats_t st0, st1;
		hc_stats(&st0);
		atomic_store(&v->phase, PH_ENDED);
		rc = hlibraw_end_session(hd_default.sock);
		if (rc < 0)
			VFAIL(&st, "victim %d: no malformed frame written: %s", (int)getpid(), strerror(-rc));
		atomic_store(&v->ended, 1);
		v_alloc(&st, small_size(&st.rng));
		hc_stats(&st1);
		if (st1.reconnects != st0.reconnects + 1 || st1.slot != st0.slot)
			VFAIL(&st, "victim %d: after its ended session: reconnects %llu -> %llu, slot %u -> %u",
			      (int)getpid(), (unsigned long long)st0.reconnects,
			      (unsigned long long)st1.reconnects, st0.slot, st1.slot);
		atomic_store(&v->readopted, 1);
	}
	for (;;) {
		uint64_t r = hutil_rand(&st.rng) % 100;
		if (st.book.nlive > VICTIM_RECS * 3 / 4 || r < 12) {
			atomic_store(&v->phase, PH_FREE);
			for (uint32_t n = st.book.nlive / 2 + 1; n > 0 && st.book.nlive > 0; n--)
				v_free(&st, (uint32_t)(hutil_rand(&st.rng) % st.book.nlive));
		} else if (r < 55) {
			atomic_store(&v->phase, PH_STORM);
			for (uint32_t n = 16 + (uint32_t)(hutil_rand(&st.rng) % 240); n > 0; n--)
				v_alloc(&st, small_size(&st.rng));
		} else if (r < 72) {
			/* classes this thread has no span of: each first allocation is a refill */
			atomic_store(&v->phase, PH_FRESH);
			for (int n = 0; n < 6; n++) {
				uint32_t k = 1 + (uint32_t)(hutil_rand(&st.rng) % (SIZECLASS_COUNT - 1));
				for (uint32_t tries = 0; tries < SIZECLASS_COUNT; tries++) {
					if (!(st.classes_used[k / 64] & (1ULL << (k % 64))))
						break;
					k = k + 1 < SIZECLASS_COUNT ? k + 1 : 1;
				}
				v_alloc(&st, sizeclass_size[k]);
			}
		} else if (r < 85) {
			atomic_store(&v->phase, PH_LARGE);
			if (st.book.large_bytes > VICTIM_LARGE_MAX) {
				for (uint32_t k = 0; k < st.book.nlive;) {
					if (hbook_size(&st.book, k) > HEAPD_MAX_SMALL)
						v_free(&st, k);
					else
						k++;
				}
			}
			for (int n = 1 + (int)(hutil_rand(&st.rng) % 3); n > 0; n--) {
				uint64_t x = hutil_rand(&st.rng);
				size_t size = HEAPD_MAX_SMALL + 1 + (x >> 8) % (x % 8 ? 256u << 10 : 2u << 20);
				v_alloc(&st, size);
			}
		} else {
			atomic_store(&v->phase, PH_TRIM);
			rc = hlock_trim();
			if (rc < 0)
				VFAIL(&st, "victim %d: hc_trim: %s", (int)getpid(), strerror(-rc));
			memset(st.classes_used, 0, sizeof(st.classes_used));
		}
	}
}

/* ---- bystanders and zombie-leader clients ---- */

#define WFAIL(w, ...) hchild_fail_into((w)->why, sizeof((w)->why), &(w)->failed, __VA_ARGS__)

/*
 * Allocate, check and free until told to stop, pausing pause_us after each
 * round; then free everything. Raw frames too if raw_seed.
 */
static void worker_loop(worker_t *w, uint64_t seed, uint64_t seedbase, uint64_t raw_seed,
                        unsigned pause_us)
{
	hbook_t book;
	hlibraw_t raw;
	uint64_t rng = seed;
	char err[200];

	hbook_init(&book, w->recs, BY_OBJS, &claims, seedbase);
	if (raw_seed && hlibraw_init(&raw, hd_default.sock, 1, &S->raw, raw_seed, RAW_END_EVERY_MS,
	                             RAW_LATE_EVERY_MS, err, sizeof(err)) < 0)
		WFAIL(w, "%s", err);
	while (!atomic_load(&w->stop)) {
		for (int i = 0; i < 16; i++) {
			if (book.nfree == 0 && hbook_free(&book, (uint32_t)(hutil_rand(&rng) % book.nlive), err,
			                                  sizeof(err)) < 0)
				WFAIL(w, "%s", err);
			uint64_t r = hutil_rand(&rng);
			size_t size = r % 64 == 0 ? HEAPD_MAX_SMALL + 1 + (r >> 8) % (192u << 10) : small_size(&rng);
			if (!hbook_alloc(&book, size, err, sizeof(err)))
				WFAIL(w, "%s", err);
		}
		for (int i = 0; i < 12 && book.nlive > 0; i++) {
			if (hbook_free(&book, (uint32_t)(hutil_rand(&rng) % book.nlive), err,
			               sizeof(err)) < 0)
				WFAIL(w, "%s", err);
			atomic_fetch_add_explicit(&w->verified, 1, memory_order_relaxed);
		}
		if (raw_seed && hlibraw_step(&raw, &book, err, sizeof(err)) < 0)
			WFAIL(w, "%s", err);
		atomic_fetch_add_explicit(&w->progress, 1, memory_order_relaxed);
		if (pause_us)
			hutil_sleep_us(pause_us); /* leaves CPU to the victims; orders nothing */
	}
	if (raw_seed && hlibraw_finish(&raw, &book, err, sizeof(err)) < 0)
		WFAIL(w, "%s", err);
	while (book.nlive > 0) {
		if (hbook_free(&book, book.nlive - 1, err, sizeof(err)) < 0)
			WFAIL(w, "%s", err);
		atomic_fetch_add_explicit(&w->verified, 1, memory_order_relaxed);
	}
}

static void bystander_main(worker_t *w, uint64_t seed)
{
	worker_loop(w, seed, (uint64_t)getpid() << 32, seed ^ 0x7a11, 0);
	hc_disconnect();
	_exit(0);
}

typedef struct zarg {
	zombie_t *z;
	int t;
	uint64_t seed;
	atomic_uint *left;     /* workers still running */
} zarg_t;

static void *zombie_worker(void *arg)
{
	zarg_t *a = arg;
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* per thread: a failed test leaves no worker behind */
	worker_loop(&a->z->w[a->t], a->seed, (uint64_t)getpid() << 32 | (uint64_t)(a->t + 1) << 28,
	            a->t == 0 ? a->seed ^ 0x2077 : 0, ZOMBIE_PAUSE_US);
	hchild_thread_done(a->left); /* the last worker ends the process, with no Bye */
	return NULL;
}

static void zombie_main(zombie_t *z, uint64_t seed)
{
	static zarg_t args[ZOMBIE_THREADS];
	static atomic_uint left = ZOMBIE_THREADS;
	hbook_t book;
	uint64_t rng = seed;
	pthread_t th;
	char err[200];

	/* objects that outlive the thread: its spans go back as it exits, they stay */
	hbook_init(&book, z->main_recs, MAIN_OBJS, &claims, (uint64_t)getpid() << 32);
	for (int i = 0; i < MAIN_OBJS; i++) {
		size_t size = i % 16 == 0 ? HEAPD_MAX_SMALL + 1 + hutil_rand(&rng) % (64u << 10)
		                          : small_size(&rng);
		if (!hbook_alloc(&book, size, err, sizeof(err)))
			hchild_fail_into(z->why, sizeof(z->why), &z->failed, "zombie-leader main: %s", err);
	}
	for (int t = 0; t < ZOMBIE_THREADS; t++) {
		args[t] = (zarg_t){ .z = z, .t = t, .seed = seed + (uint64_t)(t + 1) * 0x9e3779b9ULL,
		                    .left = &left };
		if (pthread_create(&th, NULL, zombie_worker, &args[t]) != 0)
			hchild_fail_into(z->why, sizeof(z->why), &z->failed, "zombie-leader main: pthread_create failed");
		pthread_detach(th);
	}
	atomic_store(&z->main_done, 1);
	pthread_exit(NULL);
}

/* ---- the test ---- */

typedef struct vslot {
	pid_t pid;
	uint64_t spawned;  /* heapd_now_ns() */
	uint64_t deadline; /* when it is killed; 0 until it starts working, unless killed early */
} vslot_t;

static pid_t spawn(void (*fn)(void *, uint64_t), void *arg, uint64_t seed)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no child behind */
		fn(arg, seed);
		_exit(0);
	}
	return pid;
}

static void victim_entry(void *arg, uint64_t seed)
{
	victim_main(arg, seed);
}

static void bystander_entry(void *arg, uint64_t seed)
{
	bystander_main(arg, seed);
}

static void zombie_entry(void *arg, uint64_t seed)
{
	zombie_main(arg, seed);
}

/* Check and free every object a dead victim recorded; the number freed. */
static uint64_t reap_victim(victim_t *v)
{
	char err[200];
	int64_t n = hbook_recs_check(v->recs, VICTIM_RECS, &claims, 1, err, sizeof(err));
	if (n < 0)
		ck_abort_msg("killed victim: %s", err);
	return (uint64_t)n;
}

/* Every thread that works for the whole run, and its process. */
#define NWORKERS (BYSTANDERS + ZOMBIES * ZOMBIE_THREADS)
typedef struct steady {
	worker_t *w[NWORKERS];
	pid_t pid[NWORKERS];
	uint64_t last[NWORKERS];
	uint64_t since[NWORKERS]; /* heapd_now_ms() of its last progress */
} steady_t;

/* Fail the test if a steady worker failed, ended, or made no progress for STALL_LIMIT_MS. */
static void check_steady(steady_t *sd)
{
	uint64_t now = heapd_now_ms();
	for (int z = 0; z < ZOMBIES; z++)
		if (atomic_load(&S->zombies[z].failed))
			ck_abort_msg("%s", S->zombies[z].why);
	for (int i = 0; i < NWORKERS; i++) {
		const char *who = i < BYSTANDERS ? "bystander" : "zombie-leader client";
		if (atomic_load(&sd->w[i]->failed))
			ck_abort_msg("%s: %s", who, sd->w[i]->why);
		int st;
		if (waitpid(sd->pid[i], &st, WNOHANG) == sd->pid[i])
			ck_abort_msg("%s %d ended early (status 0x%x)", who, (int)sd->pid[i], st);
		uint64_t p = atomic_load(&sd->w[i]->progress);
		if (p != sd->last[i]) {
			sd->last[i] = p;
			sd->since[i] = now;
		} else if (now - sd->since[i] > STALL_LIMIT_MS) {
			ck_abort_msg("%s %d made no progress for %.1f s", who, (int)sd->pid[i],
			             (double)(now - sd->since[i]) / 1e3);
		}
	}
}

/* Clients the daemon lists whose pid is not in pids; with show, each is printed. */
static int others_listed(const pid_t *pids, int npids, int show)
{
	hctl_client_t cl[64];
	int n = hctl_clients(hd_default.sock, cl, 64), others = 0;
	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n && i < 64; i++) {
		int known = 0;
		for (int k = 0; k < npids; k++)
			known |= cl[i].pid == (uint32_t)pids[k];
		others += !known;
		if (!known && show)
			fprintf(stderr, "client pid %u slot %u: %llu spans, %llu pages\n",
			        cl[i].pid, cl[i].slot,
			        (unsigned long long)cl[i].spans_cached, (unsigned long long)cl[i].pages_held);
	}
	return others;
}

/* Wait until the daemon lists no client outside pids (timeout_ms at most); how many are left. */
static int wait_only(const pid_t *pids, int npids, uint64_t timeout_ms)
{
	if (hutil_wait_until(others_listed(pids, npids, 0) == 0, timeout_ms))
		return 0;
	return others_listed(pids, npids, 1);
}

/* Sweep; then the objects in use, and in *large the large ones. */
static uint64_t swept_objects(uint64_t *large)
{
	Heapd__Envelope *owner;
	ck_assert_int_eq(hctl_sweep(hd_default.sock), 0);
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_ptr_nonnull(st);
	uint64_t n = st->objects_in_use;
	*large = st->large_objects;
	wire_free(owner);
	return n;
}

/* Objects in use after a sweep, once at most max are, or after timeout_ms of sweeps. */
static uint64_t settle_objects(uint64_t max, uint64_t timeout_ms, uint64_t *large)
{
	uint64_t n;
	/* a LargeFree lost with an ended session waits for the sweeper's grace */
	hutil_wait_until((n = swept_objects(large)) <= max, timeout_ms);
	return n;
}

START_TEST(test_killed_clients)
{
	uint64_t target = hutil_env("SOAK_KILLS", 1000), kills = 0, early = 0, reaped = 0, interrupted = 0;
	uint64_t ended_victims = 0, readopted_victims = 0;
	uint64_t by_phase[PH_COUNT] = { 0 }, rng = 0x50a4c11e475ULL ^ (uint64_t)getpid();
	vslot_t vs[VICTIMS] = { 0 };
	pid_t by[BYSTANDERS], zpid[ZOMBIES], live[BYSTANDERS + ZOMBIES + 1];
	steady_t sd = { 0 };
	uint64_t t0 = heapd_now_ms();

	for (int i = 0; i < BYSTANDERS; i++) {
		by[i] = spawn(bystander_entry, &S->by[i], 0xb1 + (uint64_t)i * 7919);
		live[i] = sd.pid[i] = by[i];
		sd.w[i] = &S->by[i];
	}
	for (int z = 0; z < ZOMBIES; z++) {
		zpid[z] = spawn(zombie_entry, &S->zombies[z], 0x2b1e + (uint64_t)z * 104729);
		live[BYSTANDERS + z] = zpid[z];
		for (int t = 0; t < ZOMBIE_THREADS; t++) {
			sd.pid[BYSTANDERS + z * ZOMBIE_THREADS + t] = zpid[z];
			sd.w[BYSTANDERS + z * ZOMBIE_THREADS + t] = &S->zombies[z].w[t];
		}
	}
	live[BYSTANDERS + ZOMBIES] = getpid(); /* the test frees the victims' objects */
	for (int i = 0; i < NWORKERS; i++)
		sd.since[i] = t0;
	/* The zombie-leaders' main threads are gone (state Z) before the first kill. */
	for (int z = 0; z < ZOMBIES; z++)
		ck_assert_msg(hutil_wait_until((check_steady(&sd),
		                                atomic_load(&S->zombies[z].main_done) &&
		                                hchild_state(zpid[z]) == 'Z'), READY_TIMEOUT_MS),
		              "zombie-leader client %d: its main thread did not exit (state %c)", (int)zpid[z],
		              hchild_state(zpid[z]));

	/* Victims killed at random moments: a deadline picks the moment, it orders nothing. */
	for (;;) {
		uint64_t now = heapd_now_ns();
		int alive = 0;
		for (int i = 0; i < VICTIMS; i++)
			alive += vs[i].pid != 0;
		for (int i = 0; i < VICTIMS; i++) {
			vslot_t *s = &vs[i];
			victim_t *v = &S->victims[i];
			if (s->pid == 0) {
				if (kills + (uint64_t)alive >= target)
					continue;
				memset(v, 0, sizeof(*v));
				s->pid = spawn(victim_entry, v, hutil_rand(&rng));
				s->spawned = now;
				s->deadline = 0;
				if (hutil_rand(&rng) % 8 == 0) {
					s->deadline = now + hutil_rand(&rng) % (EARLY_WINDOW_US + 1) * 1000;
					early++;
				}
				alive++;
				continue;
			}
			int st;
			if (waitpid(s->pid, &st, WNOHANG) == s->pid)
				ck_abort_msg("victim %d ended by itself (status 0x%x): %s", (int)s->pid, st,
				             atomic_load(&v->failed) ? v->why : "no reason recorded");
			int ph = atomic_load(&v->phase);
			if (s->deadline == 0 && ph >= PH_ENDED)
				s->deadline = now + hutil_rand(&rng) % (KILL_WINDOW_US + 1) * 1000;
			if ((s->deadline != 0 && now >= s->deadline) ||
			    now - s->spawned > (uint64_t)READY_TIMEOUT_MS * 1000000) {
				kill(s->pid, SIGKILL);
				int rc = hchild_wait(s->pid);
				ph = atomic_load(&v->phase);
				interrupted += atomic_load(&v->in_op) != 0;
				if (rc != 128 + SIGKILL)
					ck_abort_msg("victim %d: status %d, not killed: %s", (int)s->pid, rc,
					             atomic_load(&v->failed) ? v->why : "no reason recorded");
				by_phase[ph]++;
				kills++;
				ended_victims += atomic_load(&v->ended) != 0;
				readopted_victims += atomic_load(&v->readopted) != 0;
				reaped += reap_victim(v);
				s->pid = 0;
				alive--;
			}
		}
		check_steady(&sd);
		if (kills >= target && alive == 0)
			break;
		hutil_sleep_us(200); /* the next look at the victims: their deadlines time the kills */
	}
	double t_kills = (double)(heapd_now_ms() - t0) / 1e3;

	/* The daemon sees every death: only the bystanders, the zombie-leaders and this process remain. */
	ck_assert_msg(wait_only(live, BYSTANDERS + ZOMBIES + 1, SEEN_DEAD_MS) == 0,
	              "the daemon still lists dead clients");
	check_steady(&sd);
	/* A process whose main thread has exited is alive: the daemon lists it, with its slot. */
	hctl_client_t cl[64];
	int ncl = hctl_clients(hd_default.sock, cl, 64);
	ck_assert_int_ge(ncl, 0);
	for (int z = 0; z < ZOMBIES; z++) {
		int listed = 0;
		for (int i = 0; i < ncl && i < 64; i++)
			listed |= cl[i].pid == (uint32_t)zpid[z];
		ck_assert_msg(listed, "the daemon does not list zombie-leader client %d", (int)zpid[z]);
		ck_assert_msg(hchild_state(zpid[z]) == 'Z', "zombie-leader client %d: state %c",
		              (int)zpid[z], hchild_state(zpid[z]));
	}
	/* Every span a dead victim cached is back: none is owned by a slot that is not a live client. */
	ck_assert_uint_eq(hview_foreign_spans(live, BYSTANDERS + ZOMBIES + 1), 0);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	check_steady(&sd);

	/* The bystanders and the zombie-leaders' workers free everything and go; so does this process. */
	uint64_t by_verified = 0, by_rounds = 0, z_verified = 0, z_rounds = 0;
	for (int i = 0; i < NWORKERS; i++)
		atomic_store(&sd.w[i]->stop, 1);
	for (int i = 0; i < BYSTANDERS; i++) {
		int rc = hchild_wait(by[i]);
		ck_assert_msg(rc == 0, "bystander %d: status %d: %s", (int)by[i], rc,
		              atomic_load(&S->by[i].failed) ? S->by[i].why : "");
		by_verified += atomic_load(&S->by[i].verified);
		by_rounds += atomic_load(&S->by[i].progress);
	}
	uint64_t main_objs = 0;
	char err[200];
	for (int z = 0; z < ZOMBIES; z++) {
		zombie_t *zz = &S->zombies[z];
		int rc = hchild_wait(zpid[z]);
		for (int t = 0; t < ZOMBIE_THREADS; t++) {
			ck_assert_msg(!atomic_load(&zz->w[t].failed), "zombie-leader client %d: %s", (int)zpid[z],
			              zz->w[t].why);
			z_verified += atomic_load(&zz->w[t].verified);
			z_rounds += atomic_load(&zz->w[t].progress);
		}
		ck_assert_msg(rc == 0, "zombie-leader client %d: status %d", (int)zpid[z], rc);
		/* its main thread's objects, left behind long ago, checked and freed here */
		int64_t n = hbook_recs_check(zz->main_recs, MAIN_OBJS, &claims, 1, err, sizeof(err));
		ck_assert_msg(n == MAIN_OBJS, "zombie-leader client %d's main thread: %s", (int)zpid[z],
		              n < 0 ? err : "objects missing");
		main_objs += (uint64_t)n;
	}
	hc_disconnect();
	/*
	 * The zombie-leaders said no Bye: the daemon saw their whole processes
	 * exit. This process said Bye and lives on: its slot stays held.
	 */
	pid_t me = getpid();
	ck_assert_msg(wait_only(&me, 1, SEEN_DEAD_MS) == 0, "clients remain after everyone disconnected");

	uint64_t large_left;
	uint64_t leaked = settle_objects(interrupted, LEAK_SETTLE_MS, &large_left);
	if (leaked > interrupted)
		hview_dump_in_use(20);
	ck_assert_msg(leaked <= interrupted,
	              "%llu objects in use after %llu kills, %llu of them inside an allocation or a free",
	              (unsigned long long)leaked, (unsigned long long)kills, (unsigned long long)interrupted);
	ck_assert_uint_eq(hview_foreign_spans(NULL, 0), 0); /* no span is owned by any client */
	hc_disconnect();
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);

	hlibraw_counts_t *rc = &S->raw;
	fprintf(stderr, "soak_clients: %llu victims killed in %.1f s (%llu of them 0-3 ms after fork), "
	                "all seen dead by the daemon, no span left with a dead owner\n",
	        (unsigned long long)kills, t_kills, (unsigned long long)early);
	for (int i = 0; i < PH_COUNT; i++)
		fprintf(stderr, "soak_clients:   killed during %s: %llu\n", phase_name[i],
		        (unsigned long long)by_phase[i]);
	fprintf(stderr, "soak_clients: %llu victims made heapd end their session, %llu of them lived "
	                "to re-adopt their slot\n",
	        (unsigned long long)ended_victims, (unsigned long long)readopted_victims);
	fprintf(stderr, "soak_clients: %llu objects of killed victims checked and freed by another "
	                "process; "
	                "bystanders: %llu rounds, %llu objects checked, no error, no stall over %.0f s\n",
	        (unsigned long long)reaped, (unsigned long long)by_rounds, (unsigned long long)by_verified,
	        STALL_LIMIT_MS / 1e3);
	fprintf(stderr, "soak_clients: %d zombie-leader clients (%d workers each) listed alive to the "
	                "end: %llu rounds, %llu objects checked; %llu objects of their main threads "
	                "intact; gone without a Bye, their slots released\n",
	        ZOMBIES, ZOMBIE_THREADS, (unsigned long long)z_rounds, (unsigned long long)z_verified,
	        (unsigned long long)main_objs);
	fprintf(stderr, "soak_clients: raw frames of bystanders and zombie-leaders: %llu sessions heapd "
	                "ended, each re-adopted with the same slot; %llu late LargeFrees (%llu after "
	                "heapd had freed the object), %llu repeated or of a wrong generation, %llu held "
	                "back and sent at the end: none ended a session or freed another object\n",
	        (unsigned long long)rc->ended, (unsigned long long)rc->late,
	        (unsigned long long)rc->late_swept, (unsigned long long)rc->stale,
	        (unsigned long long)rc->at_end);
	fprintf(stderr, "soak_clients: %llu objects (%llu large) left allocated by the %llu kills "
	                "inside an allocation or a free, at most one each\n",
	        (unsigned long long)leaked, (unsigned long long)large_left, (unsigned long long)interrupted);
}
END_TEST

static Suite *soak_clients_suite(void)
{
	return test_suite_single("soak_clients", "kills", (double)hutil_env("SOAK_TIMEOUT", 240),
	                         daemon_up, hd_default_stop, test_killed_clients, NULL);
}

TEST_SUITES(soak_clients_suite);
