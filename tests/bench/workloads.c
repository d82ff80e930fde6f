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
 *   wl_memory     7. live bytes against resident bytes.
 *
 * An operation is one allocation or one free, except in 3 and 4, where it is
 * one object passed from producer to consumer. Every object written is
 * written by the workload (its first word at least), so an allocator cannot
 * gain by handing out memory nobody touches.
 */
#include "workloads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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

static void record(wl_sync_t *s, int id, uint64_t start, uint64_t ops)
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
	record(s, id, start, n * 2 * WL_BATCH);

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

static void larson_map(larson_t *l, uint64_t seed, int touch)
{
	uint64_t r = seed * 0x9E3779B97F4A7C15ULL + 1;
	memset(l, 0, sizeof(*l));
	l->slot = bench_map(WL_SLOTS * sizeof(void *));
	l->size = bench_map(WL_SLOTS * sizeof(uint32_t));
	l->plan = bench_map(LARSON_PLAN * sizeof(uint32_t));
	l->touch = touch;
	for (uint32_t i = 0; i < LARSON_PLAN; i++) {
		uint32_t slot = (uint32_t)(bench_rand(&r) % WL_SLOTS);
		uint32_t size = WL_MIN_SIZE + (uint32_t)(bench_rand(&r) % (WL_MAX_SIZE - WL_MIN_SIZE + 1));
		l->plan[i] = slot | size << 16;
	}
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
	record(s, t->slot, start, n * 2);
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
	record(s, id, start, seq);
	return 0;
}

int wl_consumer(wl_sync_t *s, int id, void *arg)
{
	wl_ring_t *r = arg;
	uint64_t tail = 0, head_seen = 0, seq = 0;
	int bad = 0;

	uint64_t start = wl_ready(s);
	for (;;) {
		while (tail == head_seen) {
			head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
			if (tail == head_seen)
				sched_yield();
		}
		uint64_t off = r->slot[tail & (WL_RING - 1)];
		atomic_store_explicit(&r->tail, ++tail, memory_order_release);
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
	record(s, id, start, seq);
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

/* p50 and p99 of ns[0..n) into the worker's values. */
static void percentiles(wl_slot_t *w, uint64_t *ns, int n)
{
	int k99 = (int)((int64_t)n * 99 / 100);
	qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
	w->value[0] = (double)ns[n / 2];
	w->value[1] = (double)ns[k99 < n ? k99 : n - 1];
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
	record(s, id, start, n > 0 ? (uint64_t)n : 0);
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
	record(s, id, start, (uint64_t)n);
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
	record(s, id, start, 1);

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
