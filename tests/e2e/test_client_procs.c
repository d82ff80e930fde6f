// SPDX-License-Identifier: MIT
/*
 * test_client_procs.c - libheapclient across processes, against a real heapd:
 *   - producer/consumer: one process allocates 1,000,000 objects and passes
 *     their offsets through a pipe, another checks and frees them; then the
 *     daemon reports nothing in use. Prints the objects per second.
 *   - steady churn makes no requests to the daemon, with the objects in
 *     flight bounded by acknowledged batches, or by a shared ring that the
 *     consumer drains one object at a time while the producer fills it;
 *   - four processes x two threads allocating and freeing at random for ten
 *     seconds, with frees crossing processes; then the daemon's check passes;
 *   - fork: children use the parent's objects and their own;
 *   - a client killed with SIGKILL while it holds spans;
 *   - the daemon killed and restarted under a client that keeps working.
 *
 * Objects carry a pattern derived from their offset (harness/util.h), and
 * every object is checked before it is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/child.h"
#include "harness/util.h"
#include "heapclient.h"

/* An object handed to another process: its offset, and its size above bit 40. */
#define SIZE_SHIFT 40
#define OFF_MASK ((1ULL << SIZE_SHIFT) - 1)

/* No ck_assert here: in a loop its bookkeeping costs a system call each time. */
static uint64_t pack(const void *p, size_t size)
{
	uint64_t off = hc_ptr_to_off(p);
	if (off > OFF_MASK) {
		fprintf(stderr, "offset %llu does not fit a handle\n", (unsigned long long)off);
		_exit(5);
	}
	return off | (uint64_t)size << SIZE_SHIFT;
}

/* Check the object a packed handle names and free it; 0, or 1 if its pattern was damaged. */
static int check_and_free(uint64_t h)
{
	uint64_t off = h & OFF_MASK;
	size_t size = (size_t)(h >> SIZE_SHIFT);
	void *p = hc_off_to_ptr(off);
	int bad = !p || !hutil_verify(p, size, off);
	if (p)
		hc_free(p);
	return bad;
}

static void daemon_up(void)
{
	hd_default_start("1G", NULL);
}

static void daemon_down(void)
{
	hd_default_stop();
}

/* ---- producer / consumer ---- */

#define PC_BATCH 512 /* handles per write: 4 KiB, one atomic pipe write */

typedef struct pc_result {
	size_t pattern_max;                     /* pattern at most this many bytes of each object (0: all) */
	uint64_t produced, consumed, errors;
	uint64_t requests_warm, requests_end;   /* producer's requests after warmup and at the end */
	_Atomic int window_full;                /* the producer has `window` batches unconsumed */
	uint64_t done_ms;                       /* heapd_now_ms() when the consumer finished */
} pc_result_t;

/*
 * With ackfd >= 0 the producer keeps at most `window` batches unconsumed
 * (the consumer acknowledges each batch), so that the objects in flight,
 * and with them the spans the producer needs, are bounded.
 */
static void producer(int wfd, int ackfd, int window, uint64_t n, size_t fixed, uint64_t warmup,
                     pc_result_t *res)
{
	uint64_t rng = 12345, buf[PC_BATCH];
	hc_stats_t st;
	int k = 0, outstanding = 0;
	char ack;

	for (uint64_t i = 0; i < n; i++) {
		size_t size = fixed ? fixed : 8 + hutil_rand(&rng) % (2048 - 8 + 1);
		void *p = hc_malloc(size);
		if (!p) {
			fprintf(stderr, "producer: hc_malloc(%zu): %s\n", size, strerror(errno));
			_exit(1);
		}
		size_t n = res->pattern_max && res->pattern_max < size ? res->pattern_max : size;
		hutil_fill(p, n, hc_ptr_to_off(p));
		buf[k++] = pack(p, n);
		if (k == PC_BATCH) {
			if (ackfd >= 0 && outstanding == window) {
				if (hutil_read_full(ackfd, &ack, 1) < 0)
					_exit(1);
				outstanding--;
			}
			if (hutil_write_full(wfd, buf, sizeof(buf)) < 0)
				_exit(1);
			if (++outstanding == window)
				atomic_store(&res->window_full, 1);
			k = 0;
		}
		if (i + 1 == warmup) {
			hc_stats(&st);
			res->requests_warm = st.requests;
		}
	}
	if (k && hutil_write_full(wfd, buf, (size_t)k * 8) < 0)
		_exit(1);
	close(wfd);
	hc_stats(&st);
	res->requests_end = st.requests;
	res->produced = n;
	hc_disconnect();
	_exit(0);
}

static void consumer(int rfd, int ackfd, pc_result_t *res)
{
	uint64_t buf[PC_BATCH];
	uint64_t consumed = 0, errors = 0;

	/* the producer stops reading acknowledgements once it has sent everything */
	signal(SIGPIPE, SIG_IGN);
	/* with flow control, let the producer fill its window first: the most it ever has in flight */
	if (ackfd >= 0 && !hutil_wait_until(atomic_load(&res->window_full), 60000)) {
		fprintf(stderr, "consumer: the producer never filled its window\n");
		_exit(2);
	}
	for (;;) {
		ssize_t r = read(rfd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (size_t i = 0; i < (size_t)r / 8; i++)
			errors += check_and_free(buf[i]);
		consumed += (uint64_t)r / 8;
		/* a read returns one whole batch: the producer writes each atomically */
		if (ackfd >= 0 && write(ackfd, "a", 1) != 1)
			ackfd = -1;
	}
	hc_disconnect();
	res->consumed = consumed;
	res->errors = errors;
	res->done_ms = heapd_now_ms();
	_exit(errors ? 1 : 0);
}

/* Run a producer and a consumer process (window 0: no flow control); returns the seconds it took. */
static double run_pc(uint64_t n, size_t fixed, int window, uint64_t warmup, pc_result_t *res)
{
	int fds[2], acks[2];
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(pipe(acks), 0);
	uint64_t t0 = heapd_now_ms();
	pid_t prod = fork();
	ck_assert_int_ge(prod, 0);
	if (prod == 0) {
		close(fds[0]);
		close(acks[1]);
		producer(fds[1], window ? acks[0] : -1, window, n, fixed, warmup, res);
	}
	pid_t cons = fork();
	ck_assert_int_ge(cons, 0);
	if (cons == 0) {
		close(fds[1]);
		close(acks[0]);
		consumer(fds[0], window ? acks[1] : -1, res);
	}
	close(fds[0]);
	close(fds[1]);
	close(acks[0]);
	close(acks[1]);
	ck_assert_int_eq(hchild_wait(prod), 0);
	ck_assert_int_eq(hchild_wait(cons), 0);
	ck_assert_uint_eq(res->produced, n);
	ck_assert_uint_eq(res->consumed, n);
	ck_assert_uint_eq(res->errors, 0);
	return (double)(res->done_ms - t0) / 1e3;
}

START_TEST(test_producer_consumer)
{
	const uint64_t n = 1000000;
	pc_result_t *res = hutil_shared(sizeof(*res));

	double secs = run_pc(n, 0, 0, n / 2, res);
	printf("producer/consumer: %llu objects of 8..2048 B in %.3f s: %.0f objects/s end to end, "
	       "every byte patterned and checked (producer made %llu requests)\n",
	       (unsigned long long)n, secs, (double)n / secs, (unsigned long long)res->requests_end);
	fflush(stdout);
	ck_assert(hctl_settle(hd_default.sock, 100));
	/* the same with only each object's first 16 bytes written and checked: the allocator's share */
	memset(res, 0, sizeof(*res));
	res->pattern_max = 16;
	secs = run_pc(n, 0, 0, n / 2, res);
	printf("producer/consumer: %llu objects of 8..2048 B in %.3f s: %.0f objects/s end to end, "
	       "16 bytes of each patterned and checked (producer made %llu requests)\n",
	       (unsigned long long)n, secs, (double)n / secs, (unsigned long long)res->requests_end);
	fflush(stdout);
	ck_assert_msg(hctl_settle(hd_default.sock, 100),
	              "after both disconnected: %llu objects, %llu pages in use",
	              (unsigned long long)hctl_objects_in_use(hd_default.sock),
	              (unsigned long long)hctl_pages_in_use(hd_default.sock));
	ck_assert_uint_eq(hctl_objects_in_use(hd_default.sock), 0);
	ck_assert_uint_eq(hctl_pages_in_use(hd_default.sock), 0);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_steady_churn_makes_no_requests)
{
	const uint64_t n = 1000000;
	pc_result_t *res = hutil_shared(sizeof(*res));

	/* at most 8 batches (4096 objects, 32 spans) in flight */
	double secs = run_pc(n, 64, 8, 100000, res);
	printf("steady churn (64 B, 4096 in flight): %.0f objects/s, %llu requests in the first "
	       "100000 objects, %llu in the next 900000\n", (double)n / secs,
	       (unsigned long long)res->requests_warm,
	       (unsigned long long)(res->requests_end - res->requests_warm));
	ck_assert_uint_eq(res->requests_end, res->requests_warm);
	ck_assert(hctl_settle(hd_default.sock, 100));
}
END_TEST

/* ---- a ring drained while it fills ---- */

#define RING_SLOTS 1024u /* a power of two: 8 spans of 64-byte objects in flight */
#define RING_OBJECTS 2000000u
#define RING_WARMUP 200000u
#define RING_END UINT64_MAX

typedef struct ring {
	_Alignas(64) _Atomic uint64_t head;   /* objects pushed */
	_Alignas(64) _Atomic uint64_t tail;   /* objects taken */
	_Alignas(64) uint64_t slot[RING_SLOTS];
	uint64_t requests_warm, requests_end, errors;
} ring_t;

static void ring_producer(ring_t *r)
{
	uint64_t head = 0;
	hc_stats_t st;

	for (uint64_t i = 0; i <= RING_OBJECTS; i++) {
		uint64_t h = RING_END;
		if (i < RING_OBJECTS) {
			void *p = hc_malloc(64);
			if (!p)
				_exit(1);
			hutil_fill(p, 16, hc_ptr_to_off(p));
			h = pack(p, 16);
		}
		while (head - atomic_load_explicit(&r->tail, memory_order_acquire) == RING_SLOTS)
			sched_yield();
		r->slot[head % RING_SLOTS] = h;
		atomic_store_explicit(&r->head, ++head, memory_order_release);
		if (i + 1 == RING_WARMUP) {
			hc_stats(&st);
			r->requests_warm = st.requests;
		}
	}
	hc_stats(&st);
	r->requests_end = st.requests;
	hc_disconnect();
	_exit(0);
}

static void ring_consumer(ring_t *r)
{
	uint64_t tail = 0, errors = 0;

	/* Let the ring fill once: the most the producer ever has in flight, reached in its warmup. */
	while (atomic_load_explicit(&r->head, memory_order_acquire) < RING_SLOTS)
		sched_yield();
	for (;;) {
		while (atomic_load_explicit(&r->head, memory_order_acquire) == tail)
			sched_yield();
		uint64_t h = r->slot[tail % RING_SLOTS];
		atomic_store_explicit(&r->tail, ++tail, memory_order_release);
		if (h == RING_END)
			break;
		errors += check_and_free(h);
	}
	r->errors = errors;
	hc_disconnect();
	_exit(errors ? 1 : 0);
}

/*
 * The producer's spans empty while it allocates (the consumer frees one
 * object at a time): that is room it is about to reuse, so once it holds
 * enough spans for what is in flight (the consumer lets the ring fill
 * first, so that this happens in the warmup whatever the timing) it asks
 * the daemon for nothing more.
 */
START_TEST(test_ring_makes_no_requests)
{
	ring_t *r = hutil_shared(sizeof(*r));
	uint64_t t0 = heapd_now_ms();
	pid_t prod = fork();
	ck_assert_int_ge(prod, 0);
	if (prod == 0)
		ring_producer(r);
	pid_t cons = fork();
	ck_assert_int_ge(cons, 0);
	if (cons == 0)
		ring_consumer(r);
	ck_assert_int_eq(hchild_wait(prod), 0);
	ck_assert_int_eq(hchild_wait(cons), 0);
	double secs = (double)(heapd_now_ms() - t0) / 1e3;
	printf("ring of %u (64 B): %.0f objects/s, %llu requests in the first %u objects, "
	       "%llu in the next %u\n", RING_SLOTS, RING_OBJECTS / secs,
	       (unsigned long long)r->requests_warm, RING_WARMUP,
	       (unsigned long long)(r->requests_end - r->requests_warm), RING_OBJECTS - RING_WARMUP);
	fflush(stdout);
	ck_assert_uint_eq(r->errors, 0);
	ck_assert_uint_eq(r->requests_end, r->requests_warm);
	ck_assert(hctl_settle(hd_default.sock, 100));
	ck_assert_uint_eq(hctl_objects_in_use(hd_default.sock), 0);
}
END_TEST

/* ---- four processes x two threads, random, frees across processes ---- */

#define RP_PROCS 4
#define RP_THREADS 2
#define RP_LIVE 1500

typedef struct rp_shared {
	_Atomic int stopped;          /* processes that stopped sending */
	_Atomic uint64_t errors;
	_Atomic uint64_t allocs, frees, sent, received;
	int inbox[RP_PROCS][2];       /* pipe per process: handles of objects for it to free */
	uint64_t ms;                  /* how long the threads work */
} rp_shared_t;

typedef struct rp_thread {
	rp_shared_t *sh;
	int proc;
	uint64_t seed;
} rp_thread_t;

static void rp_receive(rp_shared_t *sh, int proc, int max)
{
	uint64_t buf[64];
	ssize_t r = read(sh->inbox[proc][0], buf, (size_t)(max < 64 ? max : 64) * 8);
	if (r <= 0)
		return;
	for (size_t i = 0; i < (size_t)r / 8; i++)
		atomic_fetch_add(&sh->errors, check_and_free(buf[i]));
	atomic_fetch_add(&sh->received, (uint64_t)r / 8);
	atomic_fetch_add(&sh->frees, (uint64_t)r / 8);
}

static void *rp_thread_main(void *arg)
{
	rp_thread_t *t = arg;
	rp_shared_t *sh = t->sh;
	uint64_t *live = calloc(RP_LIVE, sizeof(*live)), rng = t->seed;
	uint64_t allocs = 0, frees = 0, sent = 0;
	size_t nlive = 0;
	uint64_t end = heapd_now_ms() + sh->ms;

	while (heapd_now_ms() < end) {
		for (int burst = 0; burst < 256; burst++) {
			uint64_t r = hutil_rand(&rng) % 100;
			if (r < 45 && nlive < RP_LIVE) {
				size_t size = hutil_rand(&rng) % 200 == 0 ? 32769 + hutil_rand(&rng) % 200000
				                                         : 1 + hutil_rand(&rng) % 4096;
				void *p = hc_malloc(size);
				if (!p) {
					atomic_fetch_add(&sh->errors, 1);
					continue;
				}
				hutil_fill(p, size, hc_ptr_to_off(p));
				live[nlive++] = pack(p, size);
				allocs++;
			} else if (r < 70 && nlive) {
				size_t i = hutil_rand(&rng) % nlive;
				atomic_fetch_add(&sh->errors, check_and_free(live[i]));
				live[i] = live[--nlive];
				frees++;
			} else if (r < 85 && nlive) {
				size_t i = hutil_rand(&rng) % nlive;
				int to = (t->proc + 1 + (int)(hutil_rand(&rng) % (RP_PROCS - 1))) % RP_PROCS;
				if (write(sh->inbox[to][1], &live[i], 8) == 8) {
					sent++;
				} else {
					atomic_fetch_add(&sh->errors, check_and_free(live[i]));
					frees++;
				}
				live[i] = live[--nlive];
			} else {
				rp_receive(sh, t->proc, 1 + (int)(hutil_rand(&rng) % 64));
			}
		}
	}
	while (nlive) {
		atomic_fetch_add(&sh->errors, check_and_free(live[--nlive]));
		frees++;
	}
	atomic_fetch_add(&sh->allocs, allocs);
	atomic_fetch_add(&sh->frees, frees);
	atomic_fetch_add(&sh->sent, sent);
	free(live);
	return NULL;
}

static void rp_process(rp_shared_t *sh, int proc)
{
	pthread_t th[RP_THREADS];
	rp_thread_t args[RP_THREADS];

	for (int i = 0; i < RP_THREADS; i++) {
		args[i] = (rp_thread_t){ sh, proc, (uint64_t)(proc * 7919 + i * 104729 + 1) };
		if (pthread_create(&th[i], NULL, rp_thread_main, &args[i]) != 0)
			_exit(2);
	}
	for (int i = 0; i < RP_THREADS; i++)
		pthread_join(th[i], NULL);
	/* once nobody sends any more, whatever is in the inbox is the last of it */
	atomic_fetch_add(&sh->stopped, 1);
	if (!hutil_wait_until(atomic_load(&sh->stopped) >= RP_PROCS, 60000))
		_exit(3);
	uint64_t before;
	do {
		before = atomic_load(&sh->received);
		rp_receive(sh, proc, 64);
	} while (atomic_load(&sh->received) != before);
	hc_disconnect();
	_exit(0);
}

START_TEST(test_random_four_processes)
{
	rp_shared_t *sh = hutil_shared(sizeof(*sh));
	pid_t pids[RP_PROCS];

	sh->ms = 10000;
	for (int i = 0; i < RP_PROCS; i++) {
		ck_assert_int_eq(pipe2(sh->inbox[i], O_NONBLOCK), 0);
	}
	for (int i = 0; i < RP_PROCS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0)
			rp_process(sh, i);
	}
	for (int i = 0; i < RP_PROCS; i++)
		ck_assert_int_eq(hchild_wait(pids[i]), 0);
	printf("random, %d processes x %d threads, %.0f s: %llu allocations, %llu frees, "
	       "%llu handed to another process\n", RP_PROCS, RP_THREADS, sh->ms / 1e3,
	       (unsigned long long)sh->allocs, (unsigned long long)sh->frees, (unsigned long long)sh->sent);
	fflush(stdout);
	ck_assert_uint_eq(sh->errors, 0);
	ck_assert_uint_eq(sh->allocs, sh->frees);
	ck_assert_uint_eq(sh->sent, sh->received);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	ck_assert_msg(hctl_settle(hd_default.sock, 100), "%llu objects, %llu pages still in use",
	              (unsigned long long)hctl_objects_in_use(hd_default.sock),
	              (unsigned long long)hctl_pages_in_use(hd_default.sock));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- fork ---- */

#define FK_OBJS 2000
#define FK_CHILDREN 2

typedef struct fk_obj {
	uint8_t *p;
	size_t size;
} fk_obj_t;

static void fk_alloc(fk_obj_t *v, int n, uint64_t seed)
{
	for (int i = 0; i < n; i++) {
		v[i].size = i % 100 == 0 ? 50000 + (size_t)i : 1 + hutil_rand(&seed) % 5000;
		v[i].p = hc_malloc(v[i].size);
		ck_assert_msg(v[i].p != NULL, "hc_malloc(%zu): %s", v[i].size, strerror(errno));
		hutil_fill(v[i].p, v[i].size, hc_ptr_to_off(v[i].p));
	}
}

static int fk_overlaps(const fk_obj_t *v, int n, uint64_t off, size_t size)
{
	for (int i = 0; i < n; i++) {
		uint64_t o = hc_ptr_to_off(v[i].p);
		if (off < o + v[i].size && o < off + size)
			return 1;
	}
	return 0;
}

static void *fk_thread(void *arg)
{
	fk_obj_t own[200];
	(void)arg;
	fk_alloc(own, 200, 77);
	for (int i = 0; i < 200; i++) {
		if (!hutil_verify(own[i].p, own[i].size, hc_ptr_to_off(own[i].p)))
			return (void *)1;
		hc_free(own[i].p);
	}
	return NULL;
}

static void fk_child(int k, fk_obj_t *parent, int report, int go)
{
	static fk_obj_t own[FK_OBJS];
	int bad = 0;
	pthread_t th;
	void *ret;

	/*
	 * The parent's objects are here, intact; check and free this child's
	 * share of them (the others' shares may already be freed and reused).
	 */
	for (int i = k; i < FK_OBJS; i += FK_CHILDREN) {
		bad |= !hutil_verify(parent[i].p, parent[i].size, hc_ptr_to_off(parent[i].p));
		hc_free(parent[i].p);
	}
	/* and allocate our own, from our own connection and spans */
	fk_alloc(own, FK_OBJS, (uint64_t)k + 1000);
	for (int i = 0; i < FK_OBJS; i++) {
		uint64_t h[2] = { hc_ptr_to_off(own[i].p), own[i].size };
		if (hutil_write_full(report, h, sizeof(h)) < 0)
			_exit(3);
	}
	close(report);
	char c;
	if (hutil_read_full(go, &c, 1) < 0)
		_exit(4);
	pthread_create(&th, NULL, fk_thread, NULL);
	pthread_join(th, &ret);
	bad |= ret != NULL;
	for (int i = 0; i < FK_OBJS; i++) {
		bad |= !hutil_verify(own[i].p, own[i].size, hc_ptr_to_off(own[i].p));
		hc_free(own[i].p);
	}
	hc_disconnect();
	_exit(bad);
}

START_TEST(test_fork)
{
	static fk_obj_t before[FK_OBJS], after[FK_OBJS];
	int report[FK_CHILDREN][2], go[FK_CHILDREN][2];
	pid_t pids[FK_CHILDREN];

	fk_alloc(before, FK_OBJS, 1);
	for (int k = 0; k < FK_CHILDREN; k++) {
		ck_assert_int_eq(pipe(report[k]), 0);
		ck_assert_int_eq(pipe(go[k]), 0);
		pids[k] = fork();
		ck_assert_int_ge(pids[k], 0);
		if (pids[k] == 0) {
			close(report[k][0]);
			close(go[k][1]);
			fk_child(k, before, report[k][1], go[k][0]);
		}
		close(report[k][1]);
		close(go[k][0]);
	}
	/* the parent keeps allocating while the children run */
	fk_alloc(after, FK_OBJS, 2);
	for (int k = 0; k < FK_CHILDREN; k++) {
		/* a child's objects never overlap the parent's live ones */
		uint64_t h[2];
		int n = 0;
		while (hutil_read_full(report[k][0], h, sizeof(h)) == 0) {
			ck_assert_msg(!fk_overlaps(after, FK_OBJS, h[0], h[1]),
			              "child %d object at offset %llu overlaps a parent object", k,
			              (unsigned long long)h[0]);
			n++;
		}
		ck_assert_int_eq(n, FK_OBJS);
		ck_assert_int_eq(hutil_write_full(go[k][1], "g", 1), 0);
		close(go[k][1]);
		close(report[k][0]);
	}
	for (int k = 0; k < FK_CHILDREN; k++)
		ck_assert_int_eq(hchild_wait(pids[k]), 0);
	for (int i = 0; i < FK_OBJS; i++) {
		ck_assert(hutil_verify(after[i].p, after[i].size, hc_ptr_to_off(after[i].p)));
		hc_free(after[i].p);
	}
	hc_disconnect();
	ck_assert_msg(hctl_settle(hd_default.sock, 100), "%llu objects still in use",
	              (unsigned long long)hctl_objects_in_use(hd_default.sock));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- a client killed while it holds spans ---- */

START_TEST(test_sigkill_client)
{
	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t rng = 5;
		for (int i = 0; i < 20000; i++) {
			void *p = hc_malloc(1 + hutil_rand(&rng) % 3000);
			if (!p)
				_exit(1);
			if (i % 3 == 0)
				hc_free(p);
		}
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	char c;
	close(ready[1]);
	ck_assert_int_eq(hutil_read_full(ready[0], &c, 1), 0);
	uint64_t held = hctl_client_spans(hd_default.sock, pid);
	ck_assert_uint_gt(held, 0);
	ck_assert_uint_ne(held, UINT64_MAX);
	kill(pid, SIGKILL);
	ck_assert_int_eq(hchild_wait(pid), 128 + SIGKILL);
	uint64_t left = UINT64_MAX;
	ck_assert_msg(hutil_wait_until((left = hctl_client_spans(hd_default.sock, 0)) == 0, 5000),
	              "%llu spans still cached by clients", (unsigned long long)left);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- the daemon killed and restarted under a working client ---- */

static fk_obj_t restart_b[6000];

static void *alloc_while_away(void *arg)
{
	(void)arg;
	fk_alloc(restart_b, 6000, 4);
	return NULL;
}

START_TEST(test_daemon_restart)
{
	enum { N = 6000 };
	static fk_obj_t a[N];
	fk_obj_t *b = restart_b;
	pthread_t th;
	hc_stats_t st;

	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "20000", 1);
	fk_alloc(a, N, 3);
	hd_stop(&hd_default, SIGKILL);

	/* with the daemon gone: frees work, and allocation goes on from the cached spans */
	for (int i = 0; i < N; i += 2) {
		ck_assert(hutil_verify(a[i].p, a[i].size, hc_ptr_to_off(a[i].p)));
		hc_free(a[i].p);
	}
	void *p = hc_malloc(a[1].size);
	ck_assert_ptr_nonnull(p);
	hc_free(p);

	/*
	 * Allocations that need the daemon wait for it to come back: a stand-in
	 * on the socket takes the thread's reconnect and drops it, so the thread
	 * is waiting when the daemon starts again.
	 */
	int lfd = hd_standin_listen(&hd_default);
	ck_assert_int_eq(pthread_create(&th, NULL, alloc_while_away, NULL), 0);
	ck_assert_msg(hd_standin_drop(lfd, 20000) == 0, "the library did not try to reconnect");
	close(lfd);
	unlink(hd_default.sock);
	/* from this thread: the harness ties the daemon's life to the thread that started it */
	ck_assert_int_eq(hd_start(&hd_default), 0);
	pthread_join(th, NULL);
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_ge(st.reconnects, 1);

	for (int i = 1; i < N; i += 2) {
		ck_assert(hutil_verify(a[i].p, a[i].size, hc_ptr_to_off(a[i].p)));
		hc_free(a[i].p);
	}
	for (int i = 0; i < N; i++) {
		ck_assert(hutil_verify(b[i].p, b[i].size, hc_ptr_to_off(b[i].p)));
		hc_free(b[i].p);
	}
	hc_disconnect();
	ck_assert_msg(hctl_settle(hd_default.sock, 100), "%llu objects still in use",
	              (unsigned long long)hctl_objects_in_use(hd_default.sock));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_daemon_gone_times_out)
{
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "300", 1);
	void *p = hc_malloc(100);
	ck_assert_ptr_nonnull(p);
	hd_stop(&hd_default, SIGKILL);
	uint64_t t0 = heapd_now_ms();
	errno = 0;
	ck_assert_ptr_null(hc_malloc(1 << 20));
	ck_assert_int_eq(errno, ECONNREFUSED);
	uint64_t ms = heapd_now_ms() - t0;
	ck_assert_msg(ms >= 250 && ms < 5000, "gave up after %llu ms", (unsigned long long)ms);
	hc_free(p); /* small frees need no daemon */
}
END_TEST

static Suite *client_procs_suite(void)
{
	Suite *s = suite_create("client_procs");
	TCase *tc = tcase_create("procs");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, test_producer_consumer);
	tcase_add_test(tc, test_steady_churn_makes_no_requests);
	tcase_add_test(tc, test_ring_makes_no_requests);
	tcase_add_test(tc, test_random_four_processes);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_sigkill_client);
	tcase_add_test(tc, test_daemon_restart);
	tcase_add_test(tc, test_daemon_gone_times_out);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(client_procs_suite);
