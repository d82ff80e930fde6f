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
 * (default 1000). Meanwhile two bystander processes allocate, check and free
 * without pause.
 *
 * A victim records each live object (offset, size, seed) in shared memory
 * once the object holds its pattern, and clears the record before freeing
 * it. When a victim is dead, the test checks the pattern of every object it
 * recorded and frees it: memory stays bounded, and frees of a dead process's
 * objects by another process are exercised too. Every live object of every
 * process is claimed in a claim map (soak_util.h), so an object handed out
 * twice is caught the moment it is.
 *
 * The test fails if a victim or a bystander ever gets NULL or finds a
 * damaged pattern, or if a bystander goes 5 s without progress. At the end:
 *   - once the daemon has seen every death it lists only live clients, and
 *     no small span in the span table belongs to the slot of a dead client:
 *     every span a dead client cached is back with the daemon;
 *   - check finds no problem;
 *   - once the bystanders and the test have freed everything and
 *     disconnected, no span is owned by any client, and the objects still in
 *     use are at most one per kill that hit a victim inside an allocation or
 *     a free (from hc_malloc to recording the object, or from clearing the
 *     record to the end of hc_free): that one object stays allocated, as the
 *     failure model says.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e/client_util.h"
#include "heapclient.h"
#include "sizeclass.h"
#include "soak_util.h"

#define VICTIMS 3
#define BYSTANDERS 2
#define VICTIM_RECS 1024
#define VICTIM_LARGE_MAX (8u << 20)  /* live large bytes a victim keeps at most */
#define KILL_WINDOW_US 20000         /* a victim is killed 0-20 ms after it starts working */
#define EARLY_WINDOW_US 3000         /* or 0-3 ms after its fork, while it connects */
#define READY_TIMEOUT_S 10.0         /* a victim that never starts is killed anyway */
#define STALL_LIMIT_S 5.0            /* a bystander without progress this long fails the test */
#define BY_OBJS 512

/* What a victim is doing; read by the test at the moment it kills the victim. */
enum { PH_START, PH_CONNECT, PH_STORM, PH_FRESH, PH_LARGE, PH_FREE, PH_TRIM, PH_COUNT };
static const char *const phase_name[PH_COUNT] = {
	"before connecting", "connecting", "allocation storm", "fresh classes (refills)",
	"large allocations", "frees", "trim",
};

typedef struct victim {
	_Atomic int phase;
	_Atomic int in_op;       /* inside an allocation or a free: a kill may leak that one object */
	_Atomic int failed;
	char why[256];
	soak_rec_t recs[VICTIM_RECS];
} victim_t;

typedef struct bystander {
	_Atomic uint64_t progress;   /* rounds done */
	_Atomic uint64_t verified;   /* objects checked and freed */
	_Atomic int stop;
	_Atomic int failed;
	char why[256];
	soak_rec_t recs[BY_OBJS];
} bystander_t;

typedef struct shared {
	victim_t victims[VICTIMS];
	bystander_t by[BYSTANDERS];
} shared_t;

static shared_t *S;
static soak_claims_t claims;

static void daemon_up(void)
{
	cu_daemon_start("1G");
	S = soak_shared(sizeof(*S));
	soak_claims_init(&claims, cu_daemon.arena);
}

static void daemon_down(void)
{
	cu_daemon_stop();
}

/* Record why a child failed and end it. */
static _Noreturn void child_fail(char *why, _Atomic int *failed, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, 256, fmt, ap);
	va_end(ap);
	atomic_store(failed, 1);
	_exit(1);
}

/* ---- victims ---- */

typedef struct vstate {
	victim_t *v;
	soak_book_t book;
	uint64_t rng;
	uint64_t classes_used[(SIZECLASS_COUNT + 63) / 64]; /* since the last trim */
} vstate_t;

#define VFAIL(st, ...) child_fail((st)->v->why, &(st)->v->failed, __VA_ARGS__)

static size_t small_size(uint64_t *rng)
{
	uint64_t r = cu_rand(rng);
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
	if (!soak_book_alloc(&st->book, size, err, sizeof(err)))
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
	if (soak_book_free(&st->book, k, err, sizeof(err)) < 0)
		VFAIL(st, "victim: %s", err);
	atomic_store(&st->v->in_op, 0);
}

static void victim_main(victim_t *v, uint64_t seed)
{
	static vstate_t st;

	memset(&st, 0, sizeof(st));
	st.v = v;
	st.rng = seed;
	soak_book_init(&st.book, v->recs, VICTIM_RECS, &claims, (uint64_t)getpid() << 32);
	atomic_store(&v->phase, PH_CONNECT);
	int rc = hc_connect(NULL);
	if (rc < 0)
		VFAIL(&st, "victim %d: hc_connect: %s", (int)getpid(), strerror(-rc));
	for (;;) {
		uint64_t r = cu_rand(&st.rng) % 100;
		if (st.book.nlive > VICTIM_RECS * 3 / 4 || r < 12) {
			atomic_store(&v->phase, PH_FREE);
			for (uint32_t n = st.book.nlive / 2 + 1; n > 0 && st.book.nlive > 0; n--)
				v_free(&st, (uint32_t)(cu_rand(&st.rng) % st.book.nlive));
		} else if (r < 55) {
			atomic_store(&v->phase, PH_STORM);
			for (uint32_t n = 16 + (uint32_t)(cu_rand(&st.rng) % 240); n > 0; n--)
				v_alloc(&st, small_size(&st.rng));
		} else if (r < 72) {
			/* classes this thread has no span of: each first allocation is a refill */
			atomic_store(&v->phase, PH_FRESH);
			for (int n = 0; n < 6; n++) {
				uint32_t k = 1 + (uint32_t)(cu_rand(&st.rng) % (SIZECLASS_COUNT - 1));
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
					if (soak_book_size(&st.book, k) > HEAPD_MAX_SMALL)
						v_free(&st, k);
					else
						k++;
				}
			}
			for (int n = 1 + (int)(cu_rand(&st.rng) % 3); n > 0; n--) {
				uint64_t x = cu_rand(&st.rng);
				size_t size = HEAPD_MAX_SMALL + 1 + (x >> 8) % (x % 8 ? 256u << 10 : 2u << 20);
				v_alloc(&st, size);
			}
		} else {
			atomic_store(&v->phase, PH_TRIM);
			rc = hc_trim();
			if (rc < 0)
				VFAIL(&st, "victim %d: hc_trim: %s", (int)getpid(), strerror(-rc));
			memset(st.classes_used, 0, sizeof(st.classes_used));
		}
	}
}

/* ---- bystanders ---- */

static void bystander_main(bystander_t *b, uint64_t seed)
{
	soak_book_t book;
	uint64_t rng = seed;
	char err[200];

	soak_book_init(&book, b->recs, BY_OBJS, &claims, (uint64_t)getpid() << 32);
	while (!atomic_load(&b->stop)) {
		for (int i = 0; i < 16; i++) {
			if (book.nfree == 0 && soak_book_free(&book, (uint32_t)(cu_rand(&rng) % book.nlive), err,
			                                      sizeof(err)) < 0)
				child_fail(b->why, &b->failed, "bystander: %s", err);
			uint64_t r = cu_rand(&rng);
			size_t size = r % 64 == 0 ? HEAPD_MAX_SMALL + 1 + (r >> 8) % (192u << 10) : small_size(&rng);
			if (!soak_book_alloc(&book, size, err, sizeof(err)))
				child_fail(b->why, &b->failed, "bystander: %s", err);
		}
		for (int i = 0; i < 12 && book.nlive > 0; i++) {
			if (soak_book_free(&book, (uint32_t)(cu_rand(&rng) % book.nlive), err, sizeof(err)) < 0)
				child_fail(b->why, &b->failed, "bystander: %s", err);
			atomic_fetch_add_explicit(&b->verified, 1, memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&b->progress, 1, memory_order_relaxed);
	}
	while (book.nlive > 0) {
		if (soak_book_free(&book, book.nlive - 1, err, sizeof(err)) < 0)
			child_fail(b->why, &b->failed, "bystander: %s", err);
		atomic_fetch_add_explicit(&b->verified, 1, memory_order_relaxed);
	}
	hc_disconnect();
	_exit(0);
}

/* ---- the test ---- */

typedef struct vslot {
	pid_t pid;
	double spawned;
	double deadline;   /* 0 until the victim starts working, unless killed early */
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

/* Check and free every object a dead victim recorded; the number freed. */
static uint64_t reap_victim(victim_t *v)
{
	char err[200];
	int64_t n = soak_recs_check(v->recs, VICTIM_RECS, &claims, 1, err, sizeof(err));
	if (n < 0)
		ck_abort_msg("killed victim: %s", err);
	return (uint64_t)n;
}

static void check_bystanders(const pid_t *by, uint64_t *last, double *since, double now)
{
	for (int i = 0; i < BYSTANDERS; i++) {
		if (atomic_load(&S->by[i].failed))
			ck_abort_msg("%s", S->by[i].why);
		int st;
		if (waitpid(by[i], &st, WNOHANG) == by[i])
			ck_abort_msg("bystander %d ended early (status 0x%x)", (int)by[i], st);
		uint64_t p = atomic_load(&S->by[i].progress);
		if (p != last[i]) {
			last[i] = p;
			since[i] = now;
		} else if (now - since[i] > STALL_LIMIT_S) {
			ck_abort_msg("bystander %d made no progress for %.1f s", (int)by[i], now - since[i]);
		}
	}
}

/* Poll the daemon until it lists no client outside pids (timeout_s at most); how many are left. */
static int wait_only(const pid_t *pids, int npids, double timeout_s)
{
	soak_client_t cl[64];
	double t0 = cu_now();
	for (;;) {
		int n = soak_clients(cu_daemon.sock, cl, 64), others = 0;
		ck_assert_int_ge(n, 0);
		for (int i = 0; i < n && i < 64; i++) {
			int known = 0;
			for (int k = 0; k < npids; k++)
				known |= cl[i].pid == (uint32_t)pids[k];
			others += !known;
		}
		if (others == 0 || cu_now() - t0 > timeout_s) {
			for (int i = 0; others && i < n && i < 64; i++)
				fprintf(stderr, "client pid %u slot %u: %llu spans, %llu pages\n", cl[i].pid, cl[i].slot,
				        (unsigned long long)cl[i].spans_cached, (unsigned long long)cl[i].pages_held);
			return others;
		}
		usleep(20000);
	}
}

static void sweep(int times)
{
	int fd = harness_control(cu_daemon.sock);
	ck_assert_int_ge(fd, 0);
	for (int i = 0; i < times; i++)
		ck_assert_int_eq(harness_sweep(fd), 0);
	close(fd);
}

START_TEST(test_killed_clients)
{
	uint64_t target = soak_env("SOAK_KILLS", 1000), kills = 0, early = 0, reaped = 0, interrupted = 0;
	uint64_t by_phase[PH_COUNT] = { 0 }, rng = 0x50a4c11e475ULL ^ (uint64_t)getpid();
	vslot_t vs[VICTIMS] = { 0 };
	pid_t by[BYSTANDERS], live[BYSTANDERS + 1];
	uint64_t last[BYSTANDERS] = { 0 };
	double since[BYSTANDERS], t0 = cu_now();

	for (int i = 0; i < BYSTANDERS; i++) {
		by[i] = spawn(bystander_entry, &S->by[i], 0xb1 + (uint64_t)i * 7919);
		live[i] = by[i];
		since[i] = cu_now();
	}
	live[BYSTANDERS] = getpid(); /* the test frees the victims' objects */

	for (;;) {
		double now = cu_now();
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
				s->pid = spawn(victim_entry, v, cu_rand(&rng));
				s->spawned = now;
				s->deadline = 0;
				if (cu_rand(&rng) % 8 == 0) {
					s->deadline = now + (double)(cu_rand(&rng) % (EARLY_WINDOW_US + 1)) / 1e6;
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
			if (s->deadline == 0 && ph >= PH_STORM)
				s->deadline = now + (double)(cu_rand(&rng) % (KILL_WINDOW_US + 1)) / 1e6;
			if ((s->deadline != 0 && now >= s->deadline) || now - s->spawned > READY_TIMEOUT_S) {
				kill(s->pid, SIGKILL);
				int rc = cu_wait(s->pid);
				ph = atomic_load(&v->phase);
				interrupted += atomic_load(&v->in_op) != 0;
				if (rc != 128 + SIGKILL)
					ck_abort_msg("victim %d: status %d, not killed: %s", (int)s->pid, rc,
					             atomic_load(&v->failed) ? v->why : "no reason recorded");
				by_phase[ph]++;
				kills++;
				reaped += reap_victim(v);
				s->pid = 0;
				alive--;
			}
		}
		check_bystanders(by, last, since, cu_now());
		if (kills >= target && alive == 0)
			break;
		usleep(200);
	}
	double t_kills = cu_now() - t0;

	/* The daemon sees every death: only the bystanders and this process remain. */
	ck_assert_msg(wait_only(live, BYSTANDERS + 1, 30.0) == 0, "the daemon still lists dead clients");
	check_bystanders(by, last, since, cu_now());
	/* Every span a dead victim cached is back: none is owned by a slot that is not a live client. */
	ck_assert_uint_eq(soak_foreign_spans(live, BYSTANDERS + 1), 0);
	ck_assert_uint_eq(cu_check(), 0);
	check_bystanders(by, last, since, cu_now());

	/* The bystanders free everything and go; so does this process. */
	uint64_t by_verified = 0, by_rounds = 0;
	for (int i = 0; i < BYSTANDERS; i++)
		atomic_store(&S->by[i].stop, 1);
	for (int i = 0; i < BYSTANDERS; i++) {
		int rc = cu_wait(by[i]);
		ck_assert_msg(rc == 0, "bystander %d: status %d: %s", (int)by[i], rc,
		              atomic_load(&S->by[i].failed) ? S->by[i].why : "");
		by_verified += atomic_load(&S->by[i].verified);
		by_rounds += atomic_load(&S->by[i].progress);
	}
	hc_disconnect();
	ck_assert_msg(wait_only(NULL, 0, 30.0) == 0, "clients remain after everyone disconnected");
	sweep(3);

	Heapd__StatsReply *st;
	Heapd__Envelope *owner = NULL;
	int fd = harness_control(cu_daemon.sock);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(harness_stats(fd, &st, &owner), 0);
	uint64_t leaked = st->objects_in_use, large_left = st->large_objects;
	wire_free(owner);
	close(fd);
	if (leaked > interrupted)
		soak_dump_in_use(20);
	ck_assert_msg(leaked <= interrupted,
	              "%llu objects in use after %llu kills, %llu of them inside an allocation or a free",
	              (unsigned long long)leaked, (unsigned long long)kills,
	              (unsigned long long)interrupted);
	ck_assert_uint_eq(soak_foreign_spans(NULL, 0), 0); /* no span is owned by any client */
	hc_disconnect();
	ck_assert_uint_eq(cu_check(), 0);

	fprintf(stderr, "soak_clients: %llu victims killed in %.1f s (%llu of them 0-3 ms after fork), "
	                "all seen dead by the daemon, no span left with a dead owner\n",
	        (unsigned long long)kills, t_kills, (unsigned long long)early);
	for (int i = 0; i < PH_COUNT; i++)
		fprintf(stderr, "soak_clients:   killed during %s: %llu\n", phase_name[i],
		        (unsigned long long)by_phase[i]);
	fprintf(stderr, "soak_clients: %llu objects of killed victims checked and freed by another "
	                "process; "
	                "bystanders: %llu rounds, %llu objects checked, no error, no stall over %.0f s\n",
	        (unsigned long long)reaped, (unsigned long long)by_rounds, (unsigned long long)by_verified,
	        STALL_LIMIT_S);
	fprintf(stderr, "soak_clients: %llu objects (%llu large) left allocated by the %llu kills "
	                "inside an allocation or a free, at most one each\n",
	        (unsigned long long)leaked, (unsigned long long)large_left,
	        (unsigned long long)interrupted);
}
END_TEST

static Suite *soak_clients_suite(void)
{
	Suite *s = suite_create("soak_clients");
	TCase *tc = tcase_create("kills");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, (double)soak_env("SOAK_TIMEOUT", 240));
	tcase_add_test(tc, test_killed_clients);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(soak_clients_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
