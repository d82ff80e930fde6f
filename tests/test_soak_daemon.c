// SPDX-License-Identifier: MIT
/*
 * test_soak_daemon.c - restart without loss: heapd is killed with SIGKILL at
 * random moments under working clients and restarted on the same arena.
 *
 * CLIENTS processes (the last one with two threads) allocate small and large
 * objects, write a pattern over each, check it before freeing it, and now
 * and then trim their caches. Meanwhile the test kills the daemon
 * $SOAK_RESTARTS times (default 60), 0-300 ms into each of its lives, and
 * restarts it 0-20 ms later on the same arena and socket; one restart in six
 * is itself killed 0-6 ms in, while it opens and recovers the arena. The clients are
 * never restarted: the library reconnects by itself, with backoff
 * ($HEAPD_RECONNECT_TIMEOUT_MS is 20 s here), and they carry on.
 *
 * Each worker thread keeps a book of its live objects (soak_util.h) whose
 * records are in shared memory, so that the test can check every object at
 * the end; every live object of every process is claimed in the claim map,
 * so an object handed out twice is caught the moment it is. The test fails
 * if an allocation returns NULL or a pattern is damaged. At the end, with
 * the daemon up:
 *   - every worker has made progress since the last restart;
 *   - every live object holds its pattern, and no two live objects overlap
 *     (the records of all workers, sorted by offset);
 *   - check finds no problem;
 *   - once the clients have freed everything and disconnected, no object
 *     and no page is in use: nothing leaked across the restarts.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e/client_util.h"
#include "heapclient.h"
#include "layout.h"
#include "soak_util.h"

#define CLIENTS 3
#define MAX_THREADS 2
#define WORKER_RECS 2048
#define WORKER_LARGE_MAX (16u << 20) /* live large bytes a worker keeps at most */
#define LIFE_MAX_US 300000           /* the daemon lives 0-300 ms */
#define DOWN_MAX_US 20000            /* and stays dead 0-20 ms */
#define STARTUP_KILL_US 6000         /* one start in six is killed 0-6 ms in: during recovery */
#define PROGRESS_AFTER 200           /* operations each worker does after the last restart */

static const int threads_of[CLIENTS] = { 1, 1, 2 };

typedef struct worker {
	_Atomic uint64_t ops;
	_Atomic uint64_t allocs;
	_Atomic int failed;
	_Atomic int stopped;     /* stopped working and checked its objects */
	char why[256];
	soak_rec_t recs[WORKER_RECS];
} worker_t;

typedef struct shared {
	_Atomic int stop;        /* workers: stop and check everything */
	_Atomic int release;     /* workers: free everything and end */
	_Atomic uint64_t reconnects[CLIENTS];
	worker_t w[CLIENTS][MAX_THREADS];
} shared_t;

static shared_t *S;
static soak_claims_t claims;

static void daemon_up(void)
{
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "20000", 1);
	cu_daemon_start("512M");
	S = soak_shared(sizeof(*S));
	soak_claims_init(&claims, cu_daemon.arena);
}

static void daemon_down(void)
{
	cu_daemon_stop();
}

/* ---- clients ---- */

static _Noreturn void worker_fail(worker_t *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	atomic_store(&w->failed, 1);
	_exit(1); /* the whole client: its other thread stops too */
}

typedef struct warg {
	worker_t *w;
	uint64_t seed;
} warg_t;

static size_t small_size(uint64_t *rng)
{
	uint64_t r = cu_rand(rng);
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

static void *worker_main(void *arg)
{
	warg_t *a = arg;
	worker_t *w = a->w;
	soak_book_t book;
	uint64_t rng = a->seed;
	char err[200];

	soak_book_init(&book, w->recs, WORKER_RECS, &claims, a->seed << 24);
	while (!atomic_load(&S->stop)) {
		uint64_t r = cu_rand(&rng) % 100;
		if (book.nlive > 0 && (book.nfree == 0 || r < 38)) {
			if (soak_book_free(&book, (uint32_t)(cu_rand(&rng) % book.nlive), err, sizeof(err)) < 0)
				worker_fail(w, "%s", err);
		} else if (r < 93) {
			if (!soak_book_alloc(&book, small_size(&rng), err, sizeof(err)))
				worker_fail(w, "%s", err);
			atomic_fetch_add_explicit(&w->allocs, 1, memory_order_relaxed);
		} else if (r < 98) {
			for (uint32_t k = 0; book.large_bytes > WORKER_LARGE_MAX && k < book.nlive;) {
				if (soak_book_size(&book, k) > HEAPD_MAX_SMALL) {
					if (soak_book_free(&book, k, err, sizeof(err)) < 0)
						worker_fail(w, "%s", err);
				} else {
					k++;
				}
			}
			size_t size = HEAPD_MAX_SMALL + 1 + cu_rand(&rng) % (480u << 10);
			if (!soak_book_alloc(&book, size, err, sizeof(err)))
				worker_fail(w, "%s", err);
			atomic_fetch_add_explicit(&w->allocs, 1, memory_order_relaxed);
		} else {
			int rc = hc_trim();
			if (rc < 0)
				worker_fail(w, "pid %d: hc_trim: %s", (int)getpid(), strerror(-rc));
		}
		atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
	}
	/* The daemon is up for good now: check everything, and wait to be told to free it. */
	if (soak_recs_check(w->recs, WORKER_RECS, &claims, 0, err, sizeof(err)) < 0)
		worker_fail(w, "pid %d: %s", (int)getpid(), err);
	atomic_store(&w->stopped, 1);
	while (!atomic_load(&S->release))
		usleep(1000);
	while (book.nlive > 0)
		if (soak_book_free(&book, book.nlive - 1, err, sizeof(err)) < 0)
			worker_fail(w, "%s", err);
	return NULL;
}

static void client_main(int c, uint64_t seed)
{
	pthread_t th[MAX_THREADS];
	warg_t args[MAX_THREADS];
	hc_stats_t st;

	for (int t = 0; t < threads_of[c]; t++) {
		args[t].w = &S->w[c][t];
		args[t].seed = seed + (uint64_t)t * 0x9e3779b9ULL;
		if (pthread_create(&th[t], NULL, worker_main, &args[t]) != 0)
			worker_fail(&S->w[c][t], "pthread_create failed");
	}
	for (int t = 0; t < threads_of[c]; t++)
		pthread_join(th[t], NULL);
	if (hc_stats(&st) == 0)
		atomic_store(&S->reconnects[c], st.reconnects);
	hc_disconnect();
	_exit(0);
}

/* ---- the test ---- */

static void check_workers(const pid_t *pids)
{
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

/* Lines of the daemon's log (every life of it) that contain needle. */
static int log_count(const char *needle)
{
	FILE *f = fopen(cu_daemon.log, "r");
	char line[1024];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
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
	uint64_t restarts = soak_env("SOAK_RESTARTS", 60), rng = 0xdead5eedULL ^ (uint64_t)getpid();
	uint64_t at_last[CLIENTS][MAX_THREADS], startup_kills = 0;
	pid_t pids[CLIENTS];
	double t0 = cu_now();

	for (int c = 0; c < CLIENTS; c++) {
		pids[c] = fork();
		ck_assert_int_ge(pids[c], 0);
		if (pids[c] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no client behind */
			client_main(c, 0x5eed0000ULL + (uint64_t)c * 104729);
		}
	}
	/* Everyone is working before the first kill. */
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			while (total_ops(c, t) == 0) {
				check_workers(pids);
				ck_assert_msg(cu_now() - t0 < 60, "client %d thread %d never started", c, t);
				usleep(1000);
			}

	for (uint64_t k = 0; k < restarts; k++) {
		usleep((useconds_t)(cu_rand(&rng) % LIFE_MAX_US));
		check_workers(pids);
		harness_stop(&cu_daemon, SIGKILL);
		usleep((useconds_t)(cu_rand(&rng) % DOWN_MAX_US));
		if (cu_rand(&rng) % 6 == 0) {
			ck_assert_int_eq(harness_launch(&cu_daemon), 0);
			usleep((useconds_t)(cu_rand(&rng) % STARTUP_KILL_US));
			harness_stop(&cu_daemon, SIGKILL);
			startup_kills++;
		}
		int rc = harness_start(&cu_daemon);
		ck_assert_msg(rc == 0, "restart %llu: heapd did not start (%s); log in %s",
		              (unsigned long long)k + 1, strerror(-rc), cu_daemon.log);
	}
	double t_kills = cu_now() - t0;

	/* The clients carry on with the last daemon, with no restart of theirs. */
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			at_last[c][t] = total_ops(c, t);
	double t1 = cu_now();
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			while (total_ops(c, t) < at_last[c][t] + PROGRESS_AFTER) {
				check_workers(pids);
				ck_assert_msg(cu_now() - t1 < 60, "client %d thread %d stopped after the last restart",
				              c, t);
				usleep(1000);
			}

	/* Stop; each worker checks its own objects. */
	atomic_store(&S->stop, 1);
	for (int c = 0; c < CLIENTS; c++)
		for (int t = 0; t < threads_of[c]; t++)
			while (!atomic_load(&S->w[c][t].stopped)) {
				check_workers(pids);
				ck_assert_msg(cu_now() - t1 < 120, "client %d thread %d did not stop", c, t);
				usleep(1000);
			}

	/* Every live object, checked again from this process; no two overlap. */
	static span_ref_t refs[CLIENTS * MAX_THREADS * WORKER_RECS];
	size_t nrefs = 0;
	uint64_t allocs = 0, ops = 0;
	char err[200];
	for (int c = 0; c < CLIENTS; c++) {
		for (int t = 0; t < threads_of[c]; t++) {
			worker_t *w = &S->w[c][t];
			ck_assert_msg(soak_recs_check(w->recs, WORKER_RECS, &claims, 0, err, sizeof(err)) >= 0,
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
	ck_assert_uint_eq(cu_check(), 0);

	/* Free everything; then nothing may be in use. */
	atomic_store(&S->release, 1);
	uint64_t reconnects = 0;
	for (int c = 0; c < CLIENTS; c++) {
		int rc = cu_wait(pids[c]);
		for (int t = 0; t < threads_of[c]; t++)
			ck_assert_msg(!atomic_load(&S->w[c][t].failed), "client %d thread %d: %s", c, t, S->w[c][t].why);
		ck_assert_msg(rc == 0, "client %d: status %d", c, rc);
		reconnects += atomic_load(&S->reconnects[c]);
		ck_assert_msg(atomic_load(&S->reconnects[c]) > 0, "client %d never reconnected", c);
	}
	hc_disconnect();
	int settled = cu_settle(200);
	if (!settled)
		soak_dump_in_use(20);
	ck_assert_msg(settled, "after %llu restarts and every free: %llu objects, %llu pages in use",
	              (unsigned long long)restarts, (unsigned long long)cu_objects_in_use(),
	              (unsigned long long)cu_pages_in_use());
	ck_assert_uint_eq(cu_client_spans(0), 0);
	ck_assert_uint_eq(cu_check(), 0);

	fprintf(stderr, "soak_daemon: %llu more SIGKILLs 0-6 ms into a start, %d of them before recovery "
	                "was done\n", (unsigned long long)startup_kills,
	        (int)(restarts + startup_kills + 1) - log_count("reopened") - 1);
	fprintf(stderr, "soak_daemon: %llu SIGKILLs and restarts in %.1f s under %d clients (%d threads); "
	                "%llu reconnects, %d slots re-adopted, %d given a new slot, "
	                "%d lost large replies freed\n",
	        (unsigned long long)restarts, t_kills, CLIENTS, CLIENTS + 1,
	        (unsigned long long)reconnects,
	        log_count("re-adopted slot"), log_count("new slot follows"),
	        log_count("never got the reply"));
	fprintf(stderr, "soak_daemon: %llu operations, %llu allocations; %zu live objects checked twice "
	                "at the end, none overlapping; nothing in use once all was freed\n",
	        (unsigned long long)ops, (unsigned long long)allocs, nrefs);
}
END_TEST

static Suite *soak_daemon_suite(void)
{
	Suite *s = suite_create("soak_daemon");
	TCase *tc = tcase_create("restarts");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, (double)soak_env("SOAK_TIMEOUT", 300));
	tcase_add_test(tc, test_daemon_restarts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(soak_daemon_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
