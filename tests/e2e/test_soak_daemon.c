// SPDX-License-Identifier: MIT
/*
 * test_soak_daemon.c - restart without loss: heapd is killed with SIGKILL at
 * random moments under working clients and restarted on the same arena.
 *
 * CLIENTS processes (the last two with two threads) allocate small and large
 * objects, write a pattern over each, check it before freeing it, and now
 * and then trim their caches. The last one is a zombie-leader client: its
 * main thread allocates a few objects, starts the workers and calls
 * pthread_exit, and the process works on, through every restart, with its
 * main thread gone. The first thread of each client also writes raw frames
 * now and then (hlibraw_t): it makes heapd end its session (in a client
 * with two threads, while the other goes on allocating) and checks that
 * the next request reconnects to the same slot; and it frees a large
 * object by its bit alone, sends LargeFrees of a wrong generation at once,
 * and its LargeFree, twice, over heapd's 2 s grace later (by then the
 * sweeper or a recovery has often freed the object, and its span may be
 * another's). Meanwhile the test kills the daemon $SOAK_RESTARTS times
 * (default 60), 0-300 ms into each of its lives, and restarts it 0-20 ms
 * later on the same arena and socket; one restart in six is itself killed
 * 0-6 ms in, while it opens and recovers the arena. The clients are never
 * restarted: the library reconnects by itself, with backoff
 * ($HEAPD_RECONNECT_TIMEOUT_MS is 20 s here), and they carry on.
 *
 * Each worker thread keeps a book of its live objects (harness/book.h) whose
 * records are in shared memory, so that the test can check every object at
 * the end; every live object of every process is claimed in the claim map,
 * so an object handed out twice is caught the moment it is. The test fails
 * if an allocation returns NULL, a pattern is damaged, or a reconnect after
 * an ended session changes the slot. At the end, with the daemon up:
 *   - every worker has made progress since the last restart, and every
 *     client has the slot it started with: the zombie-leader was never
 *     taken for dead;
 *   - every live object holds its pattern, and no two live objects overlap
 *     (the records of all workers and of the zombie-leader's main thread,
 *     sorted by offset);
 *   - check finds no problem;
 *   - once the clients have freed everything and gone (the zombie-leader
 *     without a Bye), no object and no page is in use: nothing leaked
 *     across the restarts.
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
#include "layout.h"

#define CLIENTS 4
#define MAX_THREADS 2
#define ZOMBIE 3                     /* the client whose main thread exits */
#define MAIN_OBJS 64                 /* objects its main thread leaves behind */
#define RAW_END_EVERY_MS 300         /* a client's first thread ends its session this often */
#define RAW_LATE_EVERY_MS 500        /* and frees a large object by its bit alone this often */
#define WORKER_RECS 2048
#define WORKER_LARGE_MAX (16u << 20) /* live large bytes a worker keeps at most */
#define LIFE_MAX_US 300000           /* the daemon lives 0-300 ms */
#define DOWN_MAX_US 20000            /* and stays dead 0-20 ms */
#define STARTUP_KILL_US 6000         /* one start in six is killed 0-6 ms in: during recovery */
#define PROGRESS_AFTER 200           /* operations each worker does after the last restart */
#define START_MS 60000               /* the clients are all at work within this */
#define RELEASE_MS 600000            /* a stopped worker waits this long for the word to free */

static const int threads_of[CLIENTS] = { 1, 1, 2, 2 };

typedef struct worker {
	_Atomic uint64_t ops;
	_Atomic uint64_t allocs;
	_Atomic int failed;
	_Atomic int stopped;     /* stopped working and checked its objects */
	char why[256];
	hbook_rec_t recs[WORKER_RECS];
} worker_t;

typedef struct shared {
	_Atomic int stop;        /* workers: stop and check everything */
	_Atomic int release;     /* workers: free everything and end */
	_Atomic uint64_t reconnects[CLIENTS];
	_Atomic uint32_t first_slot[CLIENTS]; /* the slot a client's first thread started with, + 1 */
	_Atomic uint32_t last_slot[CLIENTS];  /* and the one it had when it stopped, + 1 */
	worker_t w[CLIENTS][MAX_THREADS];
	_Atomic int main_done;   /* the zombie-leader's main thread is about to call pthread_exit */
	_Atomic int main_failed;
	char main_why[256];
	hbook_rec_t main_recs[MAIN_OBJS];
	hlibraw_counts_t raw;   /* the first threads' raw frames */
} shared_t;

static shared_t *S;
static hclaims_t claims;

static void daemon_up(void)
{
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "20000", 1);
	hd_default_start("512M", NULL);
	S = hutil_shared(sizeof(*S));
	hclaims_init(&claims, hd_default.arena);
}

/* ---- clients ---- */

/* A worker's failure, recorded; the whole client exits: its other thread stops too. */
#define worker_fail(w, ...) hchild_fail_into((w)->why, sizeof((w)->why), &(w)->failed, __VA_ARGS__)

typedef struct warg {
	int c, t;
	uint64_t seed;
} warg_t;

static size_t small_size(uint64_t *rng)
{
	uint64_t r = hutil_rand(rng);
	switch (r % 8) {
	case 0:
		return 4097 + (r >> 8) % 28672;
	case 1:
	case 2:
		return 1025 + (r >> 8) % 3072;
	default:
		return 1 + (r >> 8) % 1024;
	}
}

/* Keep the larger of *v and x. */
static void store_max(_Atomic uint64_t *v, uint64_t x)
{
	uint64_t old = atomic_load(v);
	while (old < x && !atomic_compare_exchange_weak(v, &old, x))
		;
}

static atomic_uint zombie_left; /* the zombie-leader client's workers still running */

static void *worker_main(void *arg)
{
	warg_t *a = arg;
	worker_t *w = &S->w[a->c][a->t];
	hbook_t book;
	hlibraw_t raw;
	hc_stats_t st;
	uint64_t rng = a->seed;
	char err[200];

	if (a->c == ZOMBIE)
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* per thread: a failed test leaves no worker behind */
	hbook_init(&book, w->recs, WORKER_RECS, &claims, a->seed << 24);
	if (a->t == 0) {
		if (hlibraw_init(&raw, hd_default.sock, 0, &S->raw, a->seed ^ 0x7a11,
		                 RAW_END_EVERY_MS,
		                 RAW_LATE_EVERY_MS, err, sizeof(err)) < 0)
			worker_fail(w, "%s", err);
		hc_stats(&st);
		atomic_store(&S->first_slot[a->c], st.slot + 1);
	}
	while (!atomic_load(&S->stop)) {
		uint64_t r = hutil_rand(&rng) % 100;
		if (book.nlive > 0 && (book.nfree == 0 || r < 38)) {
			if (hbook_free(&book, (uint32_t)(hutil_rand(&rng) % book.nlive), err,
			               sizeof(err)) < 0)
				worker_fail(w, "%s", err);
		} else if (r < 93) {
			if (!hbook_alloc(&book, small_size(&rng), err, sizeof(err)))
				worker_fail(w, "%s", err);
			atomic_fetch_add_explicit(&w->allocs, 1, memory_order_relaxed);
		} else if (r < 98) {
			for (uint32_t k = 0; book.large_bytes > WORKER_LARGE_MAX && k < book.nlive;) {
				if (hbook_size(&book, k) > HEAPD_MAX_SMALL) {
					if (hbook_free(&book, k, err, sizeof(err)) < 0)
						worker_fail(w, "%s", err);
				} else {
					k++;
				}
			}
			size_t size = HEAPD_MAX_SMALL + 1 + hutil_rand(&rng) % (480u << 10);
			if (!hbook_alloc(&book, size, err, sizeof(err)))
				worker_fail(w, "%s", err);
			atomic_fetch_add_explicit(&w->allocs, 1, memory_order_relaxed);
		} else {
			int rc = hlock_trim();
			if (rc < 0)
				worker_fail(w, "pid %d: hc_trim: %s", (int)getpid(), strerror(-rc));
		}
		if (a->t == 0 && hlibraw_step(&raw, &book, err, sizeof(err)) < 0)
			worker_fail(w, "%s", err);
		atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
	}
	/* The daemon is up for good now: the held-back LargeFrees go, and every object is checked. */
	if (a->t == 0 && hlibraw_finish(&raw, &book, err, sizeof(err)) < 0)
		worker_fail(w, "%s", err);
	if (hbook_recs_check(w->recs, WORKER_RECS, &claims, 0, err, sizeof(err)) < 0)
		worker_fail(w, "pid %d: %s", (int)getpid(), err);
	if (a->t == 0) {
		hc_stats(&st);
		atomic_store(&S->last_slot[a->c], st.slot + 1);
	}
	atomic_store(&w->stopped, 1);
	if (!hutil_wait_until(atomic_load(&S->release), RELEASE_MS))
		worker_fail(w, "pid %d: no word to free everything", (int)getpid());
	while (book.nlive > 0)
		if (hbook_free(&book, book.nlive - 1, err, sizeof(err)) < 0)
			worker_fail(w, "%s", err);
	if (hc_stats(&st) == 0)
		store_max(&S->reconnects[a->c], st.reconnects);
	if (a->c == ZOMBIE)
		hchild_thread_done(&zombie_left); /* the last worker ends the process, with no Bye */
	return NULL;
}

static void client_main(int c, uint64_t seed)
{
	static warg_t args[MAX_THREADS];
	pthread_t th[MAX_THREADS];

	if (c == ZOMBIE) {
		/* objects that outlive the main thread: its spans go back as it exits, they stay */
		hbook_t book;
		uint64_t rng = seed;
		char err[200];
		hbook_init(&book, S->main_recs, MAIN_OBJS, &claims, (uint64_t)getpid() << 32);
		for (int i = 0; i < MAIN_OBJS; i++) {
			size_t size = i % 16 == 0 ? HEAPD_MAX_SMALL + 1 + hutil_rand(&rng) % (64u << 10)
			                          : small_size(&rng);
			if (!hbook_alloc(&book, size, err, sizeof(err)))
				hchild_fail_into(S->main_why, sizeof(S->main_why), &S->main_failed,
				                 "zombie-leader main: %s", err);
		}
	}
	atomic_store(&zombie_left, (unsigned)threads_of[c]);
	for (int t = 0; t < threads_of[c]; t++) {
		args[t] = (warg_t){ .c = c, .t = t, .seed = seed + (uint64_t)t * 0x9e3779b9ULL };
		if (pthread_create(&th[t], NULL, worker_main, &args[t]) != 0)
			worker_fail(&S->w[c][t], "pthread_create failed");
	}
	if (c == ZOMBIE) {
		/* The workers go on without it; the last one ends the process, with no Bye. */
		atomic_store(&S->main_done, 1);
		pthread_exit(NULL);
	}
	for (int t = 0; t < threads_of[c]; t++)
		pthread_join(th[t], NULL);
	hc_disconnect();
	_exit(0);
}

/* ---- the test ---- */

static void check_workers(const pid_t *pids)
{
	if (atomic_load(&S->main_failed))
		ck_abort_msg("%s", S->main_why);
	for (int c = 0; c < CLIENTS; c++) {
		for (int t = 0; t < threads_of[c]; t++)
			if (atomic_load(&S->w[c][t].failed))
				ck_abort_msg("client %d thread %d: %s", c, t, S->w[c][t].why);
		int st;
		if (waitpid(pids[c], &st, WNOHANG) == pids[c])
			ck_abort_msg("client %d ended early (status 0x%x)", c, st);
	}
}

static uint64_t total_ops(int c, int t)
{
	return atomic_load(&S->w[c][t].ops);
}

typedef struct span_ref {
	uint64_t off, size;
	int client;
} span_ref_t;

static int cmp_ref(const void *a, const void *b)
{
	const span_ref_t *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

START_TEST(test_daemon_restarts)
{
	uint64_t restarts = hutil_env("SOAK_RESTARTS", 60), rng = 0xdead5eedULL ^ (uint64_t)getpid();
	uint64_t at_last[CLIENTS][MAX_THREADS], startup_kills = 0;
	pid_t pids[CLIENTS];
	uint64_t t0 = heapd_now_ms();

	for (int c = 0; c < CLIENTS; c++) {
		pids[c] = fork();
		ck_assert_int_ge(pids[c], 0);
		if (pids[c] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no client behind */
			client_main(c, 0x5eed0000ULL + (uint64_t)c * 104729);
		}
	}
	/* Everyone is working before the first kill, the zombie-leader without its main thread. */
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			ck_assert_msg(hutil_wait_until((check_workers(pids), total_ops(c, t) > 0),
			                               START_MS),
			              "client %d thread %d never started", c, t);
	ck_assert_msg(hutil_wait_until((check_workers(pids), atomic_load(&S->main_done) &&
	                                hchild_state(pids[ZOMBIE]) == 'Z'), START_MS),
	              "client %d: its main thread did not exit (state %c)", ZOMBIE,
	              hchild_state(pids[ZOMBIE]));

	/* Kill points at random: a pause of 0-300 ms orders nothing, it only picks the moment. */
	for (uint64_t k = 0; k < restarts; k++) {
		hutil_sleep_us(hutil_rand(&rng) % LIFE_MAX_US);
		check_workers(pids);
		hd_stop(&hd_default, SIGKILL);
		hutil_sleep_us(hutil_rand(&rng) % DOWN_MAX_US);
		if (hutil_rand(&rng) % 6 == 0) {
			ck_assert_int_eq(hd_launch(&hd_default), 0);
			hutil_sleep_us(hutil_rand(&rng) % STARTUP_KILL_US);
			hd_stop(&hd_default, SIGKILL);
			startup_kills++;
		}
		int rc = hd_start(&hd_default);
		ck_assert_msg(rc == 0, "restart %llu: heapd did not start (%s); log in %s",
		              (unsigned long long)k + 1, strerror(-rc), hd_default.log);
	}
	double t_kills = (double)(heapd_now_ms() - t0) / 1e3;

	/* The clients carry on with the last daemon, with no restart of theirs. */
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			at_last[c][t] = total_ops(c, t);
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			ck_assert_msg(hutil_wait_until((check_workers(pids),
			                                total_ops(c, t) >= at_last[c][t] + PROGRESS_AFTER), 60000),
			              "client %d thread %d stopped after the last restart", c, t);

	/* Stop; each worker checks its own objects. */
	atomic_store(&S->stop, 1);
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			ck_assert_msg(hutil_wait_until((check_workers(pids),
			                                atomic_load(&S->w[c][t].stopped)),
			                               120000),
			              "client %d thread %d did not stop", c, t);

	/* The zombie-leader was alive to every daemon: every client kept its slot. */
	ck_assert_msg(hchild_state(pids[ZOMBIE]) == 'Z', "client %d: state %c", ZOMBIE,
	              hchild_state(pids[ZOMBIE]));
	for (int c = 0; c < CLIENTS; c++)
		ck_assert_msg(atomic_load(&S->first_slot[c]) == atomic_load(&S->last_slot[c]),
		              "client %d started with slot %u and ended with slot %u", c,
		              atomic_load(&S->first_slot[c]) - 1, atomic_load(&S->last_slot[c]) - 1);

	/* Every live object, checked again from this process; no two overlap. */
	static span_ref_t refs[CLIENTS * MAX_THREADS * WORKER_RECS + MAIN_OBJS];
	size_t nrefs = 0;
	uint64_t allocs = 0, ops = 0;
	char err[200];
	ck_assert_msg(hbook_recs_check(S->main_recs, MAIN_OBJS, &claims, 0, err,
	                               sizeof(err)) == MAIN_OBJS, "the zombie-leader's main thread: %s", err);
	for (uint32_t i = 0; i < MAIN_OBJS; i++) {
		refs[nrefs].off = atomic_load(&S->main_recs[i].off);
		refs[nrefs].size = S->main_recs[i].size;
		refs[nrefs].client = ZOMBIE;
		nrefs++;
	}
	for (int c = 0; c < CLIENTS; c++) {
		for (int t = 0; t < threads_of[c]; t++) {
			worker_t *w = &S->w[c][t];
			ck_assert_msg(hbook_recs_check(w->recs, WORKER_RECS, &claims, 0, err,
			                               sizeof(err)) >= 0,
			              "client %d thread %d: %s", c, t, err);
			for (uint32_t i = 0; i < WORKER_RECS; i++) {
				uint64_t off = atomic_load(&w->recs[i].off);
				if (off == 0)
					continue;
				refs[nrefs].off = off;
				refs[nrefs].size = w->recs[i].size;
				refs[nrefs].client = c;
				nrefs++;
			}
			allocs += atomic_load(&w->allocs);
			ops += atomic_load(&w->ops);
		}
	}
	qsort(refs, nrefs, sizeof(refs[0]), cmp_ref);
	for (size_t i = 1; i < nrefs; i++)
		ck_assert_msg(refs[i - 1].off + refs[i - 1].size <= refs[i].off,
		              "objects at %llu (%llu bytes, client %d) and %llu (client %d) overlap",
		              (unsigned long long)refs[i - 1].off, (unsigned long long)refs[i - 1].size,
		              refs[i - 1].client, (unsigned long long)refs[i].off, refs[i].client);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);

	/* Free everything; then nothing may be in use. */
	atomic_store(&S->release, 1);
	uint64_t reconnects = 0;
	for (int c = 0; c < CLIENTS; c++) {
		int rc = hchild_wait(pids[c]);
		for (int t = 0; t < threads_of[c]; t++)
			ck_assert_msg(!atomic_load(&S->w[c][t].failed), "client %d thread %d: %s", c, t, S->w[c][t].why);
		ck_assert_msg(rc == 0, "client %d: status %d", c, rc);
		reconnects += atomic_load(&S->reconnects[c]);
		ck_assert_msg(atomic_load(&S->reconnects[c]) > 0, "client %d never reconnected", c);
	}
	/* The zombie-leader's main thread's objects, left behind long ago, are freed here. */
	ck_assert_msg(hbook_recs_check(S->main_recs, MAIN_OBJS, &claims, 1, err,
	                               sizeof(err)) == MAIN_OBJS, "the zombie-leader's main thread: %s", err);
	hc_disconnect();
	int settled = hctl_settle(hd_default.sock, 200);
	if (!settled)
		hview_dump_in_use(20);
	ck_assert_msg(settled, "after %llu restarts and every free: %llu objects, %llu pages in use",
	              (unsigned long long)restarts, (unsigned long long)hctl_objects_in_use(hd_default.sock),
	              (unsigned long long)hctl_pages_in_use(hd_default.sock));
	ck_assert_uint_eq(hctl_client_spans(hd_default.sock, 0), 0);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);

	fprintf(stderr, "soak_daemon: %llu more SIGKILLs 0-6 ms into a start, %d of them before recovery "
	                "was done\n", (unsigned long long)startup_kills,
	        (int)(restarts + startup_kills + 1) - hd_log_count(&hd_default, "reopened") - 1);
	int nthreads = 0;
	for (int c = 0; c < CLIENTS; c++)
		nthreads += threads_of[c];
	hlibraw_counts_t *rc = &S->raw;
	fprintf(stderr, "soak_daemon: %llu SIGKILLs and restarts in %.1f s under %d clients (%d threads), "
	                "one of them a zombie-leader (its main thread exited before the first kill); "
	                "%llu reconnects, %d slots re-adopted, every client kept its slot, "
	                "%d lost large replies freed\n",
	        (unsigned long long)restarts, t_kills, CLIENTS, nthreads,
	        (unsigned long long)reconnects, hd_log_count(&hd_default, "re-adopted with"),
	        hd_log_count(&hd_default, "never got the reply"));
	fprintf(stderr, "soak_daemon: raw frames: %llu sessions heapd ended, each reconnected to the same "
	                "slot; %llu late LargeFrees (%llu after heapd had freed the object), %llu repeated "
	                "or of a wrong generation, %llu held back and sent at the end, %llu frames not "
	                "sent (heapd down)\n",
	        (unsigned long long)rc->ended, (unsigned long long)rc->late,
	        (unsigned long long)rc->late_swept, (unsigned long long)rc->stale,
	        (unsigned long long)rc->at_end, (unsigned long long)rc->unsent);
	fprintf(stderr, "soak_daemon: %llu operations, %llu allocations; %zu live objects checked twice "
	                "at the end, none overlapping; nothing in use once all was freed\n",
	        (unsigned long long)ops, (unsigned long long)allocs, nrefs);
}
END_TEST

static Suite *soak_daemon_suite(void)
{
	return test_suite_single("soak_daemon", "restarts", (double)hutil_env("SOAK_TIMEOUT", 300),
	                         daemon_up, hd_default_stop, test_daemon_restarts, NULL);
}

TEST_SUITES(soak_daemon_suite);
