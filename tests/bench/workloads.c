// SPDX-License-Identifier: MIT
/*
 * workloads.c - the benchmark's workloads, as bodies of worker processes.
 * See workloads.h for the protocol between workers and the driver.
 *
 *   wl_batch      1. batches of WL_BATCH objects of one size, allocated then
 *                    freed in the same order;
 *   wl_larson     2. and 5. a Larson-like churn: WL_SLOTS live slots, sizes
 *                    WL_MIN_SIZE..WL_MAX_SIZE, a random slot replaced at each step;
 *   wl_producer,  3. and 4. one process allocates WL_PC_SIZE objects and passes
 *   wl_consumer      their offsets through a ring; another checks and frees them;
 *   wl_refill     6. the allocator's refill round trip, and
 *   wl_socketpair    the raw round trip of a small message between two processes;
 *   wl_memory     7. live bytes against resident bytes;
 *   wl_larson_shared
 *                 8. workload 2's churn in 2, 4 or 8 threads of one process
 *                    through one array of WL_SLOTS slots: each step swaps its
 *                    new object into the slot atomically and frees the old one,
 *                    which another thread allocated more often than not;
 *   wl_handoff    9. one thread allocates objects of WL_HANDOFF_MIN..
 *                    WL_HANDOFF_MAX bytes and passes them through a ring to a
 *                    second thread of the same process, which checks and frees
 *                    them;
 *   wl_procs,    10. WL_PROCS new programs, one after another, each
 *   wl_proc_child    allocating WL_PROC_OBJECTS objects of WL_PROC_MIN..
 *                    WL_PROC_MAX bytes, writing them and exiting without freeing
 *                    them: the cost of a process that uses the allocator
 *                    briefly, connecting included, and of its first allocation.
 *
 * An operation is one allocation or one free, except in 3, 4 and 9, where it
 * is one object passed from producer to consumer, and in 10, one program.
 * Every object written is written by the workload (its first word at least),
 * so an allocator cannot gain by handing out memory nobody touches.
 */
#include "workloads.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LARSON_PLAN (1u << 18)   /* precomputed steps, replayed cyclically */
#define LARSON_WARM 200000u      /* untimed steps before the timed loop */
#define LARSON_CHUNK 1024u       /* steps between clock reads */
#define BATCH_WARM 20            /* untimed batches */
#define MEM_STEPS 1000000u       /* workload 7: churn steps before the first measurement */
#define MEM_EXTRA 100000u        /* workload 7: small objects added before the phase change */
#define MEM_RUN 1000u            /* workload 7: the added objects are freed in runs of this many */
#define MEM_KEEP 10u             /* workload 7: one run in MEM_KEEP survives */
#define MEM_LARGE 65536u         /* workload 7: size of the objects after the phase change */
#define RTT_MAX 20000            /* most round-trip samples per measurement */
#define RTT_MSG 64               /* bytes each way */
#define HANDOFF_WARM 20000u      /* workload 9: objects passed untimed first */

static const bench_alloc_t *A = &bench_alloc;

/* --- the driver side ---------------------------------------------------- */

int wl_spawn(wl_sync_t *s, int n, wl_fn fn, void **args, int timeout_s)
{
	pid_t pid[WL_MAX_WORKERS];
	int failed = 0, running = 0;

	memset(s->w, 0, sizeof(s->w));
	atomic_store(&s->ready, 0);
	atomic_store(&s->go, 0);
	fflush(NULL);
	for (int i = 0; i < n; i++) {
		pid[i] = fork();
		if (pid[i] < 0) {
			bench_note("fork: %s", strerror(errno));
			failed = 1;
			break;
		}
		if (pid[i] == 0) {
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			alarm((unsigned)timeout_s);
			int rc = A->attach();
			if (rc < 0) {
				bench_note("attach: %s", strerror(-rc));
				_exit(2);
			}
			rc = fn(s, i, args ? args[i] : NULL);
			A->detach();
			fflush(NULL);
			_exit(rc ? 1 : 0);
		}
		running++;
	}

	/* Release the workers together, unless one of them died first. */
	while (!failed && atomic_load(&s->ready) < (uint32_t)running) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p > 0) {
			for (int i = 0; i < running; i++)
				if (pid[i] == p)
					pid[i] = 0;
			bench_note("a worker exited before the start (status 0x%x)", st);
			failed = 1;
			break;
		}
		usleep(200);
	}
	atomic_store(&s->go, 1);

	for (int i = 0; i < running; i++) {
		int st;
		if (pid[i] == 0)
			continue;
		if (failed)
			kill(pid[i], SIGKILL);
		while (waitpid(pid[i], &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (!failed) {
				if (WIFSIGNALED(st))
					bench_note("worker %d killed by signal %d", i, WTERMSIG(st));
				else
					bench_note("worker %d failed (exit %d)", i, WEXITSTATUS(st));
			}
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

uint64_t wl_ready(wl_sync_t *s)
{
	atomic_fetch_add(&s->ready, 1);
	while (!atomic_load_explicit(&s->go, memory_order_acquire))
		sched_yield();
	return bench_now();
}

void wl_record(wl_sync_t *s, int id, uint64_t start, uint64_t ops)
{
	s->w[id].start = start;
	s->w[id].end = bench_now();
	s->w[id].ops = ops;
}

/* --- 1. batches ---------------------------------------------------------- */

static int batch_once(void **obj, size_t size)
{
	for (int i = 0; i < WL_BATCH; i++) {
		obj[i] = A->malloc(size);
		if (!obj[i])
			return -1;
		*(uint64_t *)obj[i] = (uint64_t)i;
	}
	for (int i = 0; i < WL_BATCH; i++)
		A->free(obj[i]);
	return 0;
}

int wl_batch(wl_sync_t *s, int id, void *arg)
{
	size_t size = *(size_t *)arg;
	void **obj = bench_map(WL_BATCH * sizeof(void *));
	uint64_t n = 0, req0 = 0, req1 = 0;

	for (int i = 0; i < BATCH_WARM; i++)
		if (batch_once(obj, size) < 0)
			goto oom;
	if (A->refills && A->refills(&req0) < 0)
		req0 = UINT64_MAX;

	uint64_t start = wl_ready(s), deadline = start + s->duration_ns;
	do {
		if (batch_once(obj, size) < 0)
			goto oom;
		n++;
	} while (bench_now() < deadline);
	wl_record(s, id, start, n * 2 * WL_BATCH);

	if (A->refills && req0 != UINT64_MAX && A->refills(&req1) == 0) {
		s->w[id].value[0] = (double)(req1 - req0);
		s->w[id].nvalues = 1;
	}
	bench_unmap(obj, WL_BATCH * sizeof(void *));
	return 0;
oom:
	bench_note("batch of %zu B: allocation failed", size);
	return 1;
}

/* --- 2. and 5. Larson-like churn ----------------------------------------- */

typedef struct larson {
	void **slot;       /* WL_SLOTS live objects */
	uint32_t *size;    /* requested size of each slot */
	uint32_t *plan;    /* LARSON_PLAN steps: slot | size << 16 */
	uint64_t step;     /* next step, taken modulo LARSON_PLAN */
	uint64_t live;     /* bytes requested by the live slots */
	int touch;         /* write whole objects, not only their first word */
} larson_t;

/* LARSON_PLAN steps of a random slot and size each, from seed; free with bench_unmap. */
static uint32_t *larson_plan(uint64_t seed)
{
	uint64_t r = seed * 0x9E3779B97F4A7C15ULL + 1;
	uint32_t *plan = bench_map(LARSON_PLAN * sizeof(uint32_t));
	for (uint32_t i = 0; i < LARSON_PLAN; i++) {
		uint32_t slot = (uint32_t)(bench_rand(&r) % WL_SLOTS);
		uint32_t size = WL_MIN_SIZE + (uint32_t)(bench_rand(&r) % (WL_MAX_SIZE - WL_MIN_SIZE + 1));
		plan[i] = slot | size << 16;
	}
	return plan;
}

static void larson_map(larson_t *l, uint64_t seed, int touch)
{
	memset(l, 0, sizeof(*l));
	l->slot = bench_map(WL_SLOTS * sizeof(void *));
	l->size = bench_map(WL_SLOTS * sizeof(uint32_t));
	l->plan = larson_plan(seed);
	l->touch = touch;
}

static void *larson_new(larson_t *l, uint32_t size, uint64_t tag)
{
	void *p = A->malloc(size);
	if (!p)
		return NULL;
	if (l->touch)
		memset(p, (int)(tag & 0xff), size);
	*(uint64_t *)p = tag;
	l->live += size;
	return p;
}

static int larson_fill(larson_t *l)
{
	for (uint32_t i = 0; i < WL_SLOTS; i++) {
		uint32_t size = l->plan[i] >> 16;
		l->slot[i] = larson_new(l, size, i);
		if (!l->slot[i])
			return -1;
		l->size[i] = size;
	}
	return 0;
}

static int larson_steps(larson_t *l, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++, l->step++) {
		uint32_t e = l->plan[l->step & (LARSON_PLAN - 1)];
		uint32_t i = e & 0xffff, size = e >> 16;
		A->free(l->slot[i]);
		l->live -= l->size[i];
		l->slot[i] = larson_new(l, size, l->step);
		l->size[i] = size;
		if (!l->slot[i])
			return -1;
	}
	return 0;
}

static void larson_unmap(larson_t *l, int free_objects)
{
	for (uint32_t i = 0; free_objects && i < WL_SLOTS; i++)
		if (l->slot[i])
			A->free(l->slot[i]);
	bench_unmap(l->slot, WL_SLOTS * sizeof(void *));
	bench_unmap(l->size, WL_SLOTS * sizeof(uint32_t));
	bench_unmap(l->plan, LARSON_PLAN * sizeof(uint32_t));
}

typedef struct larson_thread {
	wl_sync_t *s;
	int slot;                  /* its wl_slot_t */
	int lead;                  /* the thread that meets the driver */
	int nthreads;
	pthread_barrier_t *bar;
	int rc;
} larson_thread_t;

static void *larson_run(void *arg)
{
	larson_thread_t *t = arg;
	wl_sync_t *s = t->s;
	larson_t l;
	uint64_t start, deadline, n = 0;

	larson_map(&l, (uint64_t)t->slot + 1, 0);
	t->rc = larson_fill(&l) < 0 || larson_steps(&l, LARSON_WARM) < 0;
	if (t->nthreads > 1)
		pthread_barrier_wait(t->bar);
	if (t->lead)
		wl_ready(s);
	if (t->nthreads > 1)
		pthread_barrier_wait(t->bar);
	start = bench_now();
	deadline = start + s->duration_ns;
	while (!t->rc) {
		if (larson_steps(&l, LARSON_CHUNK) < 0)
			t->rc = 1;
		n += LARSON_CHUNK;
		if (bench_now() >= deadline)
			break;
	}
	wl_record(s, t->slot, start, n * 2);
	if (t->rc)
		bench_note("Larson: allocation failed");
	larson_unmap(&l, !t->rc);
	return NULL;
}

int wl_larson(wl_sync_t *s, int id, void *arg)
{
	int nthreads = arg ? *(int *)arg : 1;
	larson_thread_t t[WL_MAX_WORKERS];
	pthread_t tid[WL_MAX_WORKERS];
	pthread_barrier_t bar;
	int rc = 0;

	if (nthreads == 1) {
		t[0] = (larson_thread_t){ .s = s, .slot = id, .lead = 1, .nthreads = 1 };
		larson_run(&t[0]);
		return t[0].rc;
	}
	if (id + nthreads > WL_MAX_WORKERS)
		return 1;
	pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
	for (int i = 0; i < nthreads; i++) {
		t[i] = (larson_thread_t){ .s = s, .slot = id + i, .lead = i == 0, .nthreads = nthreads, .bar = &bar };
		if (pthread_create(&tid[i], NULL, larson_run, &t[i]) != 0) {
			bench_note("pthread_create failed");
			abort();
		}
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		rc |= t[i].rc;
	}
	pthread_barrier_destroy(&bar);
	return rc;
}

/* --- 3. and 4. producer/consumer through a ring -------------------------- */

static void pc_fill(uint64_t *w, uint64_t seq)
{
	for (unsigned i = 0; i < WL_PC_SIZE / 8; i++)
		w[i] = seq ^ ((uint64_t)i << 56);
}

static int pc_check(const uint64_t *w, uint64_t seq)
{
	for (unsigned i = 0; i < WL_PC_SIZE / 8; i++)
		if (w[i] != (seq ^ ((uint64_t)i << 56)))
			return -1;
	return 0;
}

static void ring_push(wl_ring_t *r, uint64_t *head, uint64_t *tail_seen, uint64_t off)
{
	while (*head - *tail_seen >= WL_RING) {
		*tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (*head - *tail_seen >= WL_RING)
			sched_yield();
	}
	r->slot[*head & (WL_RING - 1)] = off;
	atomic_store_explicit(&r->head, ++*head, memory_order_release);
}

static uint64_t ring_pop(wl_ring_t *r, uint64_t *tail, uint64_t *head_seen)
{
	while (*tail == *head_seen) {
		*head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
		if (*tail == *head_seen)
			sched_yield();
	}
	uint64_t off = r->slot[*tail & (WL_RING - 1)];
	atomic_store_explicit(&r->tail, ++*tail, memory_order_release);
	return off;
}

int wl_producer(wl_sync_t *s, int id, void *arg)
{
	wl_ring_t *r = arg;
	uint64_t head = 0, tail_seen = 0, seq = 0;
	void **obj = bench_map(WL_BATCH * sizeof(void *));

	/* Warm the allocator's caches for this size, untimed. */
	for (int k = 0; k < BATCH_WARM; k++)
		if (batch_once(obj, WL_PC_SIZE) < 0)
			return 1;
	bench_unmap(obj, WL_BATCH * sizeof(void *));
	uint64_t start = wl_ready(s), deadline = start + s->duration_ns;
	for (;;) {
		if ((seq & 255) == 0 && bench_now() >= deadline)
			break;
		void *p = A->malloc(WL_PC_SIZE);
		if (!p) {
			bench_note("producer: allocation failed");
			ring_push(r, &head, &tail_seen, WL_RING_END);
			return 1;
		}
		pc_fill(p, seq);
		ring_push(r, &head, &tail_seen, A->ptr_to_off(p));
		seq++;
	}
	ring_push(r, &head, &tail_seen, WL_RING_END);
	wl_record(s, id, start, seq);
	return 0;
}

int wl_consumer(wl_sync_t *s, int id, void *arg)
{
	wl_ring_t *r = arg;
	uint64_t tail = 0, head_seen = 0, seq = 0;
	int bad = 0;

	uint64_t start = wl_ready(s);
	for (;;) {
		uint64_t off = ring_pop(r, &tail, &head_seen);
		if (off == WL_RING_END)
			break;
		uint64_t *p = A->off_to_ptr(off);
		if (!p || pc_check(p, seq) < 0) {
			if (!bad++)
				bench_note("consumer: object %llu at offset 0x%llx is corrupt",
					   (unsigned long long)seq, (unsigned long long)off);
		} else {
			A->free(p);
		}
		seq++;
	}
	wl_record(s, id, start, seq);
	return bad != 0;
}

int wl_pair(wl_sync_t *s, int id, void *arg)
{
	return id % 2 ? wl_consumer(s, id, arg) : wl_producer(s, id, arg);
}

/* --- 6. round trips ------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void wl_p50_p99(uint64_t *ns, int n, double *v)
{
	int k99 = (int)((int64_t)n * 99 / 100);
	qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
	v[0] = (double)ns[n / 2];
	v[1] = (double)ns[k99 < n ? k99 : n - 1];
}

/* p50 and p99 of ns[0..n) into the worker's values. */
static void percentiles(wl_slot_t *w, uint64_t *ns, int n)
{
	wl_p50_p99(ns, n, w->value);
	w->value[2] = n;
	w->nvalues = 3;
}

int wl_refill(wl_sync_t *s, int id, void *arg)
{
	uint64_t *ns = bench_map(RTT_MAX * sizeof(uint64_t));
	const char *method = NULL;
	(void)arg;

	uint64_t start = wl_ready(s);
	int n = A->refill_rtt ? A->refill_rtt(ns, RTT_MAX, &method) : -ENOTSUP;
	wl_record(s, id, start, n > 0 ? (uint64_t)n : 0);
	if (n <= 0) {
		bench_note("refill round trip: %s", n < 0 ? strerror(-n) : "no samples");
		return 1;
	}
	if (method)
		snprintf(s->w[id].note, sizeof(s->w[id].note), "measured %s", method);
	percentiles(&s->w[id], ns, n);
	bench_unmap(ns, RTT_MAX * sizeof(uint64_t));
	return 0;
}

int wl_socketpair(wl_sync_t *s, int id, void *arg)
{
	uint64_t *ns = bench_map(RTT_MAX * sizeof(uint64_t));
	char msg[RTT_MSG];
	int sv[2], n = 0, rc = 0;
	(void)arg;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	pid_t echo = fork();
	if (echo < 0)
		return 1;
	if (echo == 0) {
		close(sv[0]);
		while (bench_full_io(sv[1], msg, sizeof(msg), 0) == 0 && bench_full_io(sv[1], msg, sizeof(msg), 1) == 0)
			;
		_exit(0);
	}
	close(sv[1]);
	memset(msg, 'x', sizeof(msg));
	for (int i = 0; i < 1000 && rc == 0; i++)
		rc = bench_full_io(sv[0], msg, sizeof(msg), 1) || bench_full_io(sv[0], msg, sizeof(msg), 0);

	uint64_t start = wl_ready(s), deadline = start + s->duration_ns;
	while (rc == 0 && n < RTT_MAX && (n < 1000 || bench_now() < deadline)) {
		uint64_t t0 = bench_now();
		rc = bench_full_io(sv[0], msg, sizeof(msg), 1) || bench_full_io(sv[0], msg, sizeof(msg), 0);
		ns[n++] = bench_now() - t0;
	}
	wl_record(s, id, start, (uint64_t)n);
	close(sv[0]);
	waitpid(echo, NULL, 0);
	if (rc)
		return 1;
	percentiles(&s->w[id], ns, n);
	bench_unmap(ns, RTT_MAX * sizeof(uint64_t));
	return 0;
}

/* --- 7. memory ------------------------------------------------------------ */

/*
 * After workload 2 (with whole objects written), compare the bytes the
 * program asked for with the bytes the allocator holds in memory. Then change
 * phase: add MEM_EXTRA small objects, free them in runs of MEM_RUN
 * consecutive allocations, all runs but one in MEM_KEEP, and allocate
 * MEM_LARGE objects until the live bytes are back at their peak. Compare
 * again. The freed runs leave whole pages free, which an allocator can
 * reuse for the large objects or give back; the 10,000 slots of workload 2
 * stay live throughout. resident() forces trimming or scavenging first.
 */
int wl_memory(wl_sync_t *s, int id, void *arg)
{
	size_t nlarge_max = (size_t)MEM_EXTRA * WL_MAX_SIZE / MEM_LARGE + 1;
	void **extra = bench_map(MEM_EXTRA * sizeof(void *));
	uint32_t *extra_size = bench_map(MEM_EXTRA * sizeof(uint32_t));
	void **large = bench_map(nlarge_max * sizeof(void *));
	uint64_t base = 0, res = 0, r = 12345, extra_live = 0, peak;
	size_t nlarge = 0;
	larson_t l;
	wl_slot_t *w = &s->w[id];
	(void)arg;

	larson_map(&l, 7, 1);
	uint64_t start = wl_ready(s);
	if (A->resident_base(&base) < 0)
		goto fail;
	if (larson_fill(&l) < 0 || larson_steps(&l, MEM_STEPS) < 0)
		goto fail;
	if (A->resident(base, &res) < 0)
		goto fail;
	w->value[0] = (double)l.live;
	w->value[1] = (double)res;

	for (uint32_t i = 0; i < MEM_EXTRA; i++) {
		uint32_t size = WL_MIN_SIZE + (uint32_t)(bench_rand(&r) % (WL_MAX_SIZE - WL_MIN_SIZE + 1));
		extra[i] = A->malloc(size);
		if (!extra[i])
			goto fail;
		memset(extra[i], (int)(i & 0xff), size);
		extra_size[i] = size;
		extra_live += size;
	}
	peak = l.live + extra_live;
	for (uint32_t i = 0; i < MEM_EXTRA; i++) {
		if (i / MEM_RUN % MEM_KEEP == 0)
			continue;
		extra_live -= extra_size[i];
		A->free(extra[i]);
		extra[i] = NULL;
	}
	uint64_t live = l.live + extra_live;
	while (live < peak && nlarge < nlarge_max) {
		large[nlarge] = A->malloc(MEM_LARGE);
		if (!large[nlarge])
			goto fail;
		memset(large[nlarge++], 0x5a, MEM_LARGE);
		live += MEM_LARGE;
	}
	if (A->resident(base, &res) < 0)
		goto fail;
	w->value[2] = (double)live;
	w->value[3] = (double)res;
	w->nvalues = 4;
	wl_record(s, id, start, 1);

	for (size_t i = 0; i < nlarge; i++)
		A->free(large[i]);
	for (uint32_t i = 0; i < MEM_EXTRA; i++)
		if (extra[i])
			A->free(extra[i]);
	larson_unmap(&l, 1);
	bench_unmap(extra, MEM_EXTRA * sizeof(void *));
	bench_unmap(extra_size, MEM_EXTRA * sizeof(uint32_t));
	bench_unmap(large, nlarge_max * sizeof(void *));
	return 0;
fail:
	bench_note("memory workload: allocation or measurement failed");
	return 1;
}

/* --- 8. Larson-like through slots shared by threads ----------------------- */

typedef struct shared_thread {
	wl_sync_t *s;
	_Atomic(void *) *slot;     /* WL_SLOTS live objects, shared by every thread */
	int id;                    /* its wl_slot_t, and its plan's seed */
	int lead;                  /* the thread that meets the driver */
	int nthreads;
	pthread_barrier_t *bar;
	int rc;
} shared_thread_t;

/*
 * n steps of plan from *step: allocate and write a new object, swap it into
 * its slot and free the object it replaced. An object leaves its slot once,
 * by the exchange, so exactly one thread frees it; acq_rel orders its
 * writer's stores before the free of the thread that takes it out.
 */
static int shared_steps(_Atomic(void *) *slot, const uint32_t *plan, uint64_t *step, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++, ++*step) {
		uint32_t e = plan[*step & (LARSON_PLAN - 1)];
		void *p = A->malloc(e >> 16);
		if (!p)
			return -1;
		*(uint64_t *)p = *step;
		A->free(atomic_exchange_explicit(&slot[e & 0xffff], p, memory_order_acq_rel));
	}
	return 0;
}

static void *shared_run(void *arg)
{
	shared_thread_t *t = arg;
	wl_sync_t *s = t->s;
	uint32_t *plan = larson_plan((uint64_t)t->id + 1);
	uint64_t step = 0, start, deadline, n = 0;

	/* Together the threads warm up as long as workload 2 does alone. */
	t->rc = shared_steps(t->slot, plan, &step, LARSON_WARM / (unsigned)t->nthreads) < 0;
	pthread_barrier_wait(t->bar);
	if (t->lead)
		wl_ready(s);
	pthread_barrier_wait(t->bar);
	start = bench_now();
	deadline = start + s->duration_ns;
	while (!t->rc) {
		if (shared_steps(t->slot, plan, &step, LARSON_CHUNK) < 0)
			t->rc = 1;
		n += LARSON_CHUNK;
		if (bench_now() >= deadline)
			break;
	}
	wl_record(s, t->id, start, n * 2);
	if (t->rc)
		bench_note("shared Larson: allocation failed");
	bench_unmap(plan, LARSON_PLAN * sizeof(uint32_t));
	return NULL;
}

int wl_larson_shared(wl_sync_t *s, int id, void *arg)
{
	int nthreads = *(int *)arg, rc = 0;
	shared_thread_t t[WL_MAX_WORKERS];
	pthread_t tid[WL_MAX_WORKERS];
	pthread_barrier_t bar;
	uint32_t i;

	if (nthreads < 1 || id + nthreads > WL_MAX_WORKERS)
		return 1;
	_Atomic(void *) *slot = bench_map(WL_SLOTS * sizeof(*slot));
	uint32_t *fill = larson_plan(0);
	/* This thread fills the slots and frees what is left, so each of its objects is freed by another. */
	for (i = 0; i < WL_SLOTS; i++) {
		void *p = A->malloc(fill[i] >> 16);
		if (!p) {
			bench_note("shared Larson: allocation failed");
			rc = 1;
			goto out;
		}
		*(uint64_t *)p = i;
		atomic_init(&slot[i], p);
	}
	pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
	for (int k = 0; k < nthreads; k++) {
		t[k] = (shared_thread_t){ .s = s, .slot = slot, .id = id + k, .lead = k == 0, .nthreads = nthreads,
		                          .bar = &bar };
		if (pthread_create(&tid[k], NULL, shared_run, &t[k]) != 0) {
			bench_note("pthread_create failed");
			abort();
		}
	}
	for (int k = 0; k < nthreads; k++) {
		pthread_join(tid[k], NULL);
		rc |= t[k].rc;
	}
	pthread_barrier_destroy(&bar);
out:
	while (i-- > 0)
		A->free(atomic_load_explicit(&slot[i], memory_order_relaxed));
	bench_unmap(fill, LARSON_PLAN * sizeof(uint32_t));
	bench_unmap(slot, WL_SLOTS * sizeof(*slot));
	return rc;
}

/* --- 9. producer/consumer threads in one process -------------------------- */

#define HANDOFF_SEED 0x5eed    /* both threads draw the objects' sizes from it, in step */

typedef struct handoff {
	wl_sync_t *s;
	wl_ring_t *ring;           /* pointers, producer to consumer */
	int id;                    /* the producer's wl_slot_t; the consumer's is id + 1 */
	pthread_barrier_t bar;     /* both threads: the untimed objects are through */
	int rc;                    /* the consumer's: 1 if an object was corrupt */
} handoff_t;

static size_t handoff_size(uint64_t *r)
{
	return WL_HANDOFF_MIN + (size_t)(bench_rand(r) % (WL_HANDOFF_MAX - WL_HANDOFF_MIN + 1));
}

/* Object seq carries seq in its first word and ~seq in its last. */
static void handoff_fill(uint64_t *w, size_t size, uint64_t seq)
{
	w[0] = seq;
	w[size / 8 - 1] = ~seq;
}

static int handoff_check(const uint64_t *w, size_t size, uint64_t seq)
{
	return w[0] == seq && w[size / 8 - 1] == ~seq ? 0 : -1;
}

static void *handoff_consume(void *arg)
{
	handoff_t *h = arg;
	uint64_t tail = 0, head_seen = 0, seq = 0, r = HANDOFF_SEED, start = 0;
	int bad = 0;

	for (;; seq++) {
		if (seq == HANDOFF_WARM) {
			pthread_barrier_wait(&h->bar);
			start = bench_now();
		}
		uint64_t v = ring_pop(h->ring, &tail, &head_seen);
		if (v == WL_RING_END)
			break;
		uint64_t *p = (uint64_t *)(uintptr_t)v;
		size_t size = handoff_size(&r);
		if (handoff_check(p, size, seq) < 0) {
			if (!bad++)
				bench_note("handoff: object %llu is corrupt", (unsigned long long)seq);
		} else {
			A->free(p);
		}
	}
	if (seq > HANDOFF_WARM)
		wl_record(h->s, h->id + 1, start, seq - HANDOFF_WARM);
	h->rc = bad != 0;
	return NULL;
}

/*
 * This thread produces; the consumer is a thread of its own. HANDOFF_WARM
 * objects go through untimed, then the producer waits for the driver's go.
 */
int wl_handoff(wl_sync_t *s, int id, void *arg)
{
	handoff_t h = { .s = s, .ring = bench_map(sizeof(wl_ring_t)), .id = id };
	uint64_t head = 0, tail_seen = 0, seq = 0, r = HANDOFF_SEED, start = 0, deadline = 0;
	pthread_t tid;
	int rc = 0;
	(void)arg;

	if (id + 2 > WL_MAX_WORKERS)
		return 1;
	pthread_barrier_init(&h.bar, NULL, 2);
	if (pthread_create(&tid, NULL, handoff_consume, &h) != 0) {
		bench_note("pthread_create failed");
		abort();
	}
	for (;; seq++) {
		if (seq == HANDOFF_WARM) {
			pthread_barrier_wait(&h.bar);
			start = wl_ready(s);
			deadline = start + s->duration_ns;
		}
		if (seq > HANDOFF_WARM && (seq & 255) == 0 && bench_now() >= deadline)
			break;
		size_t size = handoff_size(&r);
		uint64_t *p = A->malloc(size);
		if (!p) {
			bench_note("handoff: allocation failed");
			rc = 1;
			break;
		}
		handoff_fill(p, size, seq);
		ring_push(h.ring, &head, &tail_seen, (uint64_t)(uintptr_t)p);
	}
	ring_push(h.ring, &head, &tail_seen, WL_RING_END);
	if (!rc)
		wl_record(s, id, start, seq - HANDOFF_WARM);
	pthread_join(tid, NULL);
	pthread_barrier_destroy(&h.bar);
	bench_unmap(h.ring, sizeof(wl_ring_t));
	return rc || h.rc;
}

/* --- 10. new programs ------------------------------------------------------ */

/*
 * WL_PROCS children, one after another, each started by posix_spawn and
 * waited for before the next. A child sends the time its main() began and
 * the time its first allocation returned through a pipe; the parent also
 * notes the time just before it spawned the child. ops counts programs.
 */
int wl_procs(wl_sync_t *s, int id, void *arg)
{
	uint64_t *from_main = bench_map(WL_PROCS * sizeof(uint64_t));
	uint64_t *from_spawn = bench_map(WL_PROCS * sizeof(uint64_t));
	char exe[PATH_MAX], fd_arg[16], index_arg[16];
	char *argv[] = { exe, WL_PROC_CHILD, fd_arg, index_arg, NULL };
	int pfd[2], n = 0, rc = 0;
	(void)arg;

	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len < 0 || pipe(pfd) < 0) {
		bench_note("new programs: %s", strerror(errno));
		return 1;
	}
	exe[len] = '\0';
	/* The children inherit the write end; the read end is ours, and never blocks. */
	fcntl(pfd[0], F_SETFD, FD_CLOEXEC);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	snprintf(fd_arg, sizeof(fd_arg), "%d", pfd[1]);

	uint64_t start = wl_ready(s);
	for (; n < WL_PROCS; n++) {
		uint64_t t[2], t_spawn;
		pid_t pid;
		int st = 0, err;

		snprintf(index_arg, sizeof(index_arg), "%d", n);
		t_spawn = bench_now();
		err = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
		if (err) {
			bench_note("posix_spawn %s: %s", exe, strerror(err));
			rc = 1;
			break;
		}
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || bench_full_io(pfd[0], t, sizeof(t), 0) < 0) {
			bench_note("new program %d failed (status 0x%x)", n, st);
			rc = 1;
			break;
		}
		from_main[n] = t[1] - t[0];
		from_spawn[n] = t[1] - t_spawn;
	}
	wl_record(s, id, start, (uint64_t)n);
	close(pfd[0]);
	close(pfd[1]);
	if (!rc) {
		wl_p50_p99(from_main, n, &s->w[id].value[0]);
		wl_p50_p99(from_spawn, n, &s->w[id].value[2]);
		s->w[id].nvalues = 4;
		snprintf(s->w[id].note, sizeof(s->w[id].note),
			 "first allocation timed from the child's main(), and from just before its spawn");
	}
	bench_unmap(from_main, WL_PROCS * sizeof(uint64_t));
	bench_unmap(from_spawn, WL_PROCS * sizeof(uint64_t));
	return rc;
}

/*
 * A child of wl_procs: argv is the pipe's fd and the child's index (the
 * seed of its sizes). It opens the allocator as a new program of its users
 * would (attach_new, if the allocator needs that step), allocates and
 * writes WL_PROC_OBJECTS objects, reports, and returns from main() without
 * freeing them. t[0] and t[1]: main()'s start and the first allocation's
 * return, CLOCK_MONOTONIC, comparable with the parent's clock.
 */
int wl_proc_child(uint64_t t_main, int argc, char **argv)
{
	uint64_t t[2] = { t_main, 0 }, r;

	if (argc != 2)
		return 2;
	r = strtoull(argv[1], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
	if (A->attach_new) {
		int rc = A->attach_new();
		if (rc < 0) {
			bench_note("new program: attach: %s", strerror(-rc));
			return 1;
		}
	}
	for (int i = 0; i < WL_PROC_OBJECTS; i++) {
		size_t size = WL_PROC_MIN + (size_t)(bench_rand(&r) % (WL_PROC_MAX - WL_PROC_MIN + 1));
		void *p = A->malloc(size);
		if (!p) {
			bench_note("new program: allocation failed");
			return 1;
		}
		if (i == 0)
			t[1] = bench_now();
		memset(p, i, size);
	}
	return bench_full_io(atoi(argv[0]), t, sizeof(t), 1) < 0;
}
