// SPDX-License-Identifier: MIT
/*
 * test_client_api.c - libheapclient's API in one process, against a real
 * heapd on a temporary socket: every size class and large sizes, calloc,
 * realloc, aligned_alloc, offsets, emptied spans going back to the daemon,
 * misuse that must abort (death tests), and what happens without a daemon.
 *
 * Each test runs in its own forked process with its own daemon (checked
 * fixture), so library state never leaks from one test to the next.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/child.h"
#include "harness/util.h"
#include "heapclient.h"
#include "sizeclass.h"
#include "sock.h"

typedef struct live {
	uint8_t *p;
	size_t size;
	size_t usable;
} live_t;

static int by_addr(const void *a, const void *b)
{
	const live_t *x = a, *y = b;
	return x->p < y->p ? -1 : x->p > y->p;
}

static void daemon_up(void)
{
	hd_default_start("512M", NULL);
}

static void daemon_down(void)
{
	hd_default_stop();
}

/* Allocate n objects of size, pattern them, and append them to v. */
static size_t alloc_some(live_t *v, size_t at, size_t n, size_t size)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = hc_malloc(size);
		ck_assert_msg(p != NULL, "hc_malloc(%zu): %s", size, strerror(errno));
		v[at].p = p;
		v[at].size = size;
		v[at].usable = hc_usable_size(p);
		ck_assert_uint_ge(v[at].usable, size);
		ck_assert_uint_ne(hc_ptr_to_off(p), 0);
		ck_assert_ptr_eq(hc_off_to_ptr(hc_ptr_to_off(p)), p);
		hutil_fill(p, v[at].usable, (uint64_t)(uintptr_t)p);
		at++;
	}
	return at;
}

START_TEST(test_every_class_and_large)
{
	static const size_t large[] = { HEAPD_MAX_SMALL + 1, 40000, 65536, 100000, 1 << 20, (5 << 20) + 3 };
	size_t cap = 0, n = 0;
	live_t *v;

	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++)
		cap += 2 * (2 * sizeclass_nelems[c] + 1);
	cap += sizeof(large) / sizeof(large[0]) * 3;
	v = calloc(cap, sizeof(*v));
	ck_assert_ptr_nonnull(v);

	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		/* more than two spans' worth, at the class size and just above the class below */
		size_t lo = sizeclass_size[c - 1] + 1;
		n = alloc_some(v, n, 2 * sizeclass_nelems[c] + 1, sizeclass_size[c]);
		n = alloc_some(v, n, 2 * sizeclass_nelems[c] + 1, lo);
		ck_assert_uint_eq(hc_usable_size(v[n - 1].p), sizeclass_size[c]);
	}
	for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++)
		n = alloc_some(v, n, 3, large[i]);
	ck_assert_uint_le(n, cap);

	qsort(v, n, sizeof(*v), by_addr);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(hutil_verify(v[i].p, v[i].usable, (uint64_t)(uintptr_t)v[i].p),
		              "object %p (%zu bytes) was overwritten", (void *)v[i].p, v[i].size);
		if (i + 1 < n)
			ck_assert_msg(v[i].p + v[i].usable <= v[i + 1].p, "%p+%zu overlaps %p",
			              (void *)v[i].p, v[i].usable, (void *)v[i + 1].p);
	}
	for (size_t i = 0; i < n; i++)
		hc_free(v[i].p);
	free(v);
	hc_disconnect();
	ck_assert_msg(hctl_settle(hd_default.sock, 50),
	              "objects or pages still in use after freeing everything");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_malloc_zero_and_alignment)
{
	void *a = hc_malloc(0), *b = hc_malloc(0);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_ne(a, b);
	for (size_t size = 9; size <= 4096; size += 7) {
		void *p = hc_malloc(size);
		ck_assert_uint_eq((uintptr_t)p % 16, 0);
		hc_free(p);
	}
	hc_free(a);
	hc_free(b);
	hc_free(NULL);
}
END_TEST

START_TEST(test_calloc)
{
	enum { N = 3000 };
	static uint8_t *p[N];
	void *q;

	volatile size_t half = SIZE_MAX / 2, big = (size_t)1 << 33;

	errno = 0;
	ck_assert_ptr_null(hc_calloc(half, 3));
	ck_assert_int_eq(errno, ENOMEM);
	errno = 0;
	ck_assert_ptr_null(hc_calloc(big, big));
	ck_assert_int_eq(errno, ENOMEM);

	/* dirty many objects, free them, and calloc again: reused slots must be zeroed */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			p[i] = hc_calloc(1, 100);
			ck_assert_ptr_nonnull(p[i]);
			for (int k = 0; k < 100; k++)
				ck_assert_uint_eq(p[i][k], 0);
			memset(p[i], 0xee, 100);
		}
		for (int i = 0; i < N; i++)
			hc_free(p[i]);
	}
	/* large: dirty, free, calloc */
	q = hc_malloc(300000);
	ck_assert_ptr_nonnull(q);
	memset(q, 0xee, 300000);
	hc_free(q);
	uint8_t *z = hc_calloc(3000, 100);
	ck_assert_ptr_nonnull(z);
	for (int k = 0; k < 300000; k++)
		ck_assert_uint_eq(z[k], 0);
	hc_free(z);
	q = hc_calloc(0, 10);
	ck_assert_ptr_nonnull(q);
	hc_free(q);
}
END_TEST

START_TEST(test_realloc)
{
	uint8_t *p, *q;

	/* NULL: a new object */
	p = hc_realloc(NULL, 40);
	ck_assert_ptr_nonnull(p);
	hutil_fill(p, 40, 1);
	/* within the class: the same object */
	q = hc_realloc(p, 48);
	ck_assert_ptr_eq(q, p);
	/* growing moves and keeps the contents */
	q = hc_realloc(p, 1000);
	ck_assert_ptr_nonnull(q);
	ck_assert(hutil_verify(q, 40, 1));
	ck_assert_uint_ge(hc_usable_size(q), 1000);
	hutil_fill(q, 1000, 2);
	/* shrinking a little keeps it, a lot moves it */
	p = hc_realloc(q, 900);
	ck_assert_ptr_eq(p, q);
	q = hc_realloc(p, 10);
	ck_assert_ptr_ne(q, p);
	ck_assert(hutil_verify(q, 10, 2));
	ck_assert_uint_lt(hc_usable_size(q), 100);
	/* small to large and back */
	p = hc_realloc(q, 200000);
	ck_assert_ptr_nonnull(p);
	ck_assert(hutil_verify(p, 10, 2));
	hutil_fill(p, 200000, 3);
	q = hc_realloc(p, 150000);
	ck_assert_ptr_eq(q, p);
	q = hc_realloc(p, 5000);
	ck_assert_ptr_ne(q, p);
	ck_assert(hutil_verify(q, 5000, 3));
	/* size 0 frees and returns NULL */
	ck_assert_ptr_null(hc_realloc(q, 0));
	ck_assert_uint_eq(hc_usable_size(q), 0);
	hc_disconnect();
	ck_assert(hctl_settle(hd_default.sock, 50));
}
END_TEST

START_TEST(test_aligned_alloc)
{
	static const size_t sizes[] = { 1, 7, 100, 1000, 5000, 20000, 32768 };

	for (size_t a = 8; a <= HEAPD_PAGE_SIZE; a *= 2) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t sz[] = { sizes[i], a - 1, a, a + 1 };
			for (size_t k = 0; k < 4; k++) {
				uint8_t *p = hc_aligned_alloc(a, sz[k]);
				ck_assert_msg(p != NULL, "aligned_alloc(%zu, %zu): %s", a, sz[k], strerror(errno));
				ck_assert_msg((uintptr_t)p % a == 0, "aligned_alloc(%zu, %zu) = %p", a, sz[k], (void *)p);
				ck_assert_uint_ge(hc_usable_size(p), sz[k]);
				memset(p, 0x5a, sz[k]);
				hc_free(p);
			}
		}
	}
	/*
	 * Larger alignments hold when the arena's base in this process is that
	 * aligned: always at the daemon's address hint, which a sanitizer's own
	 * heap may occupy. Otherwise they fail with ENOMEM.
	 */
	uint8_t *obj = hc_malloc(8);
	uintptr_t base = (uintptr_t)obj - hc_ptr_to_off(obj);
	hc_free(obj);
	for (size_t a = 16384; a <= ((size_t)1 << 21); a *= 4) {
		if (base & (a - 1)) {
			errno = 0;
			ck_assert_ptr_null(hc_aligned_alloc(a, 100));
			ck_assert_int_eq(errno, ENOMEM);
			continue;
		}
		uint8_t *p = hc_aligned_alloc(a, 100);
		ck_assert_msg(p != NULL, "aligned_alloc(%zu): %s", a, strerror(errno));
		ck_assert_uint_eq((uintptr_t)p % a, 0);
		memset(p, 1, 100);
		hc_free(p);
		p = hc_aligned_alloc(a, 3 * a + 5);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % a, 0);
		ck_assert_uint_ge(hc_usable_size(p), 3 * a + 5);
		hc_free(p);
	}
	errno = 0;
	ck_assert_ptr_null(hc_aligned_alloc(24, 100));
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_ptr_null(hc_aligned_alloc(0, 100));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_offsets)
{
	int on_stack = 0;
	uint8_t *p = hc_malloc(64);

	ck_assert_ptr_nonnull(p);
	uint64_t off = hc_ptr_to_off(p);
	ck_assert_uint_ne(off, 0);
	ck_assert_ptr_eq(hc_off_to_ptr(off), p);
	ck_assert_ptr_eq(hc_off_to_ptr(off + 8), p + 8);
	ck_assert_uint_eq(hc_ptr_to_off(NULL), 0);
	ck_assert_uint_eq(hc_ptr_to_off(&on_stack), 0);
	ck_assert_ptr_null(hc_off_to_ptr(0));
	ck_assert_ptr_null(hc_off_to_ptr(8));
	ck_assert_ptr_null(hc_off_to_ptr(4096));
	ck_assert_ptr_null(hc_off_to_ptr(UINT64_MAX));
	ck_assert_ptr_null(hc_off_to_ptr((uint64_t)1 << 50));
	ck_assert_uint_eq(hc_usable_size(&on_stack), 0);
	ck_assert_uint_eq(hc_usable_size(p + 8), 0);
	ck_assert_uint_eq(hc_usable_size(NULL), 0);
	hc_free(p);
	ck_assert_uint_eq(hc_usable_size(p), 0);
}
END_TEST

static void *worker(void *arg)
{
	enum { N = 5000 };
	uint64_t rng = (uintptr_t)arg + 1;
	void **objs = calloc(N, sizeof(*objs));
	size_t *sizes = calloc(N, sizeof(*sizes));
	void *ret = NULL;

	for (int round = 0; round < 20 && !ret; round++) {
		for (int i = 0; i < N; i++) {
			sizes[i] = 1 + hutil_rand(&rng) % 3000;
			objs[i] = hc_malloc(sizes[i]);
			if (!objs[i])
				return (void *)1;
			hutil_fill(objs[i], sizes[i] < 64 ? sizes[i] : 64, (uintptr_t)objs[i]);
		}
		for (int i = 0; i < N; i++) {
			if (!hutil_verify(objs[i], sizes[i] < 64 ? sizes[i] : 64, (uintptr_t)objs[i]))
				ret = (void *)2;
			hc_free(objs[i]);
		}
	}
	free(objs);
	free(sizes);
	return ret;
}

/*
 * A thread's first refills bring a span of each of a few neighbouring
 * classes too: a program that touches many sizes once makes a fraction of
 * the refills, and the spans that came unasked serve their classes.
 */
START_TEST(test_first_refills_bring_neighbours)
{
	enum { CLASSES = 20 };
	void *p[CLASSES + 1];
	hc_stats_t st;

	p[1] = hc_malloc(sizeclass_size[1]);
	ck_assert_ptr_nonnull(p[1]);
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_eq(st.refills, 1);
	ck_assert_uint_gt(st.spans_cached, 1); /* class 1's span and some of its neighbours' */
	for (uint32_t k = 2; k <= CLASSES; k++) {
		p[k] = hc_malloc(sizeclass_size[k]);
		ck_assert_ptr_nonnull(p[k]);
		ck_assert_uint_eq(hc_usable_size(p[k]), sizeclass_size[k]);
		memset(p[k], (int)k, sizeclass_size[k]);
	}
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_le(st.refills, CLASSES / 2); /* one per class without the neighbours */
	for (uint32_t k = 1; k <= CLASSES; k++)
		hc_free(p[k]);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_threads_and_exit_flush)
{
	enum { T = 4 };
	pthread_t th[T];
	hc_stats_t st;

	for (int i = 0; i < T; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < T; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		ck_assert_ptr_null(ret);
	}
	/* every thread handed its spans back when it exited */
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_eq(st.spans_cached, 0);
	ck_assert_uint_eq(hctl_client_spans(hd_default.sock, getpid()), 0);
	ck_assert(st.connected);
	hc_disconnect();
	ck_assert(hctl_settle(hd_default.sock, 50));
}
END_TEST

/* The daemon's page counters: the heap's grown pages, those in use, and the most it may grow to. */
static void heap_pages(uint64_t *total, uint64_t *in_use, uint64_t *max)
{
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);

	ck_assert_ptr_nonnull(st);
	*total = st->pages_total;
	*in_use = st->pages_in_use;
	if (max)
		*max = st->pages_max;
	wire_free(owner);
}

START_TEST(test_emptied_spans_go_back)
{
	enum { NSPANS = 512 }; /* under the 1024 spans a class retains: none goes back full */
	const size_t size = 1024, big = 65536;
	uint32_t c = sizeclass_of(size);
	uint64_t span_pages = sizeclass_npages[c], small_pages = NSPANS * span_pages;
	uint64_t total0, total, in_use, max, ballast_pages, large_pages = 0;
	size_t n = NSPANS * sizeclass_nelems[c], nbig = small_pages * HEAPD_PAGE_SIZE / big;
	void **v = malloc(n * sizeof(*v)), **b = malloc(nbig * sizeof(*b)), *ballast;
	hc_stats_t st;

	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_nonnull(b);
	/* the first span grows the heap by its first chunk */
	v[0] = hc_malloc(size);
	ck_assert_ptr_nonnull(v[0]);
	heap_pages(&total0, &in_use, &max);
	ck_assert_uint_lt(total0, max); /* the heap can grow, so the test would see it */
	/* leave room in the chunk for the small objects and half as many bytes again */
	ck_assert_uint_gt(total0, in_use + small_pages * 2);
	ballast = hc_malloc((total0 - in_use - small_pages * 3 / 2) * HEAPD_PAGE_SIZE);
	ck_assert_ptr_nonnull(ballast);
	ballast_pages = hc_usable_size(ballast) >> HEAPD_PAGE_SHIFT;

	/* NSPANS spans of one class, then every object freed: the thread caches empty spans */
	for (size_t i = 1; i < n; i++) {
		v[i] = hc_malloc(size);
		ck_assert_ptr_nonnull(v[i]);
	}
	for (size_t i = 0; i < n; i++)
		hc_free(v[i]);
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_ge(st.spans_cached, NSPANS);

	/*
	 * As many bytes again in large objects: they fit in what is left of the
	 * chunk only if the requests for them handed the emptied spans back.
	 */
	for (size_t i = 0; i < nbig; i++) {
		b[i] = hc_malloc(big);
		ck_assert_ptr_nonnull(b[i]);
		large_pages += hc_usable_size(b[i]) >> HEAPD_PAGE_SHIFT;
	}
	heap_pages(&total, &in_use, NULL);
	ck_assert_int_eq(hc_stats(&st), 0);
	/* the class keeps its current span and a reserve of about a batch */
	ck_assert_uint_le(st.spans_cached, 16);
	ck_assert_msg(in_use <= ballast_pages + large_pages + 16 * span_pages,
	              "%llu pages in use for %llu pages of large objects",
	              (unsigned long long)in_use, (unsigned long long)(ballast_pages + large_pages));
	ck_assert_msg(total == total0, "the heap grew from %llu to %llu pages",
	              (unsigned long long)total0, (unsigned long long)total);

	for (size_t i = 0; i < nbig; i++)
		hc_free(b[i]);
	hc_free(ballast);
	free(b);
	free(v);
	hc_disconnect();
	ck_assert(hctl_settle(hd_default.sock, 50));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/*
 * A large allocation whose connection broke: the spans it was handing back
 * are not named again on the new connection (the daemon took them back when
 * the reconnect's Hello did not list them), so the allocation succeeds.
 */
START_TEST(test_handback_across_restart)
{
	enum { NSPANS = 300 };
	const size_t size = 1024;
	uint32_t c = sizeclass_of(size);
	size_t n = NSPANS * sizeclass_nelems[c];
	void **v = malloc(n * sizeof(*v)), *big;
	hc_stats_t st;

	ck_assert_ptr_nonnull(v);
	for (size_t i = 0; i < n; i++) {
		v[i] = hc_malloc(size);
		ck_assert_ptr_nonnull(v[i]);
	}
	for (size_t i = 0; i < n; i++)
		hc_free(v[i]);
	/* the library learns of the restart only when the request fails */
	hd_stop(&hd_default, SIGKILL);
	ck_assert_int_eq(hd_start(&hd_default), 0);
	big = hc_malloc(65536);
	ck_assert_msg(big != NULL, "hc_malloc(64 KiB) after a restart: %s", strerror(errno));
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_eq(st.reconnects, 1);
	ck_assert_msg(!hd_log_contains(&hd_default, "error:"), "the daemon refused a request");
	hc_free(big);
	free(v);
	hc_disconnect();
	ck_assert(hctl_settle(hd_default.sock, 50));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_disconnect_keeps_objects)
{
	uint8_t *p = hc_malloc(100), *q;
	hc_stats_t st;

	ck_assert_ptr_nonnull(p);
	hutil_fill(p, 100, 9);
	hc_disconnect();
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert(!st.connected);
	ck_assert_uint_eq(st.spans_cached, 0);
	/* the mapping stays: the object is readable and can be freed */
	ck_assert(hutil_verify(p, 100, 9));
	ck_assert_ptr_eq(hc_off_to_ptr(hc_ptr_to_off(p)), p);
	/* and the next allocation connects again */
	q = hc_malloc(100);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert(st.connected);
	hc_free(p);
	hc_free(q);
	ck_assert_int_eq(hc_connect(NULL), 0);
	hc_disconnect();
	ck_assert(hctl_settle(hd_default.sock, 50));
}
END_TEST

START_TEST(test_arena_full)
{
	enum { MAX = 100000 };
	void **v = calloc(MAX, sizeof(*v));
	hc_stats_t st;
	int n = 0;

	hd_default_start("16M", NULL);
	for (; n < MAX; n++) {
		errno = 0;
		v[n] = hc_malloc(1024);
		if (!v[n])
			break;
	}
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_int_gt(n, 8000);
	ck_assert_ptr_null(hc_malloc(1 << 20));
	ck_assert_int_eq(errno, ENOMEM);
	for (int i = 0; i < n; i++)
		hc_free(v[i]);
	/* the freed slots are this thread's to reuse at once */
	void *again = hc_malloc(1024);
	ck_assert_ptr_nonnull(again);
	hc_free(again);
	/* and once handed back, the daemon can give the pages to anyone */
	ck_assert_int_eq(hc_trim(), 0);
	ck_assert_int_eq(hc_stats(&st), 0);
	ck_assert_uint_eq(st.spans_cached, 0);
	ck_assert(hctl_settle(hd_default.sock, 50));
	void *big = hc_malloc(8 << 20);
	ck_assert_msg(big != NULL, "hc_malloc(8 MiB) after freeing everything: %s", strerror(errno));
	hc_free(big);
	free(v);
	hd_default_stop();
}
END_TEST

/* Death tests: misuse aborts with a line naming the pointer. */

static void do_double_free(void *arg)
{
	(void)arg;
	void *p = hc_malloc(48);
	hc_free(p);
	hc_free(p);
}

/* A double free in a span of the thread's own cache, whose frees clear alloc bits directly. */
static void do_owned_double_free(void *arg)
{
	enum { N = 1000 }; /* several spans of 48-byte objects: the first ones are used up */
	static void *v[N];
	(void)arg;
	for (int i = 0; i < N; i++)
		v[i] = hc_malloc(48);
	for (int i = 0; i < N; i++)
		hc_free(v[i]);
	for (int i = 0; i < N; i++)
		v[i] = hc_malloc(48); /* reused slots: the spans are the thread's own now */
	hc_free(v[0]);
	hc_free(v[0]);
}

static void do_large_double_free(void *arg)
{
	(void)arg;
	void *p = hc_malloc(100000);
	hc_free(p);
	hc_free(p);
}

static void do_interior_free(void *arg)
{
	(void)arg;
	char *p = hc_malloc(64);
	hc_free(p + 16);
}

static void do_large_interior_free(void *arg)
{
	(void)arg;
	char *p = hc_malloc(100000);
	hc_free(p + 8192);
}

static void do_stack_free(void *arg)
{
	hc_free(arg);
}

static void do_unused_page_free(void *arg)
{
	hc_free(arg);
}

static void do_realloc_freed(void *arg)
{
	(void)arg;
	void *p = hc_malloc(48);
	hc_free(p);
	hc_realloc(p, 100);
}

START_TEST(test_death_double_free)
{
	hchild_expect_abort(do_double_free, NULL, "hc_free(): double free of 0x");
	hchild_expect_abort(do_owned_double_free, NULL, "hc_free(): double free");
	hchild_expect_abort(do_large_double_free, NULL, "hc_free(): ");
	hchild_expect_abort(do_realloc_freed, NULL, "hc_realloc(): ");
}
END_TEST

static void do_named_double_free(void *arg)
{
	hc_free(arg);
	hc_free(arg);
}

START_TEST(test_death_names_pointer)
{
	char needle[96];
	void *p = hc_malloc(48);   /* allocated before the fork: the children free it for real */
	void *big = hc_malloc(70000);
	int on_stack;

	snprintf(needle, sizeof(needle), "hc_free(): double free of %p", p);
	hchild_expect_abort(do_named_double_free, p, needle);
	/* a large object's pages may already be back in the page heap: "invalid pointer" then */
	snprintf(needle, sizeof(needle), "%p", big);
	hchild_expect_abort(do_named_double_free, big, needle);

	snprintf(needle, sizeof(needle), "hc_free(): pointer %p is not the start of an object", (char *)p + 16);
	hchild_expect_abort(do_interior_free, NULL, "is not the start of an object");
	hchild_expect_abort(do_large_interior_free, NULL, "is not the start of an object");
	void *mid = (char *)p + 16;
	hchild_expect_abort(do_stack_free, mid, needle);

	snprintf(needle, sizeof(needle), "hc_free(): pointer %p is not in the arena", (void *)&on_stack);
	hchild_expect_abort(do_stack_free, &on_stack, needle);
	void *heap = malloc(16);
	snprintf(needle, sizeof(needle), "hc_free(): pointer %p is not in the arena", heap);
	hchild_expect_abort(do_stack_free, heap, needle);
	free(heap);

	/* inside the arena but in pages no span uses (the daemon has not grown the heap that far) */
	void *unused = hc_off_to_ptr(hc_ptr_to_off(p) + (300u << 20));
	ck_assert_ptr_nonnull(unused);
	snprintf(needle, sizeof(needle), "hc_free(): invalid pointer %p", unused);
	hchild_expect_abort(do_unused_page_free, unused, needle);

	/* p and big were freed for real by the first two children: the heap is shared */
	ck_assert_uint_eq(hc_usable_size(p), 0);
	ck_assert_uint_eq(hc_usable_size(big), 0);
}
END_TEST

/* Without a daemon. */

START_TEST(test_no_daemon)
{
	int rc;

	rc = hc_connect("/nonexistent-dir/heapd.sock");
	ck_assert_msg(rc == -ENOENT || rc == -ECONNREFUSED, "hc_connect: %d", rc);

	setenv("HEAPD_SOCKET", "/tmp/heapd-test-no-such-socket", 1);
	errno = 0;
	ck_assert_ptr_null(hc_malloc(16));
	ck_assert_msg(errno == ENOENT || errno == ECONNREFUSED, "errno %d", errno);
	errno = 0;
	ck_assert_ptr_null(hc_malloc(1 << 20));
	ck_assert_int_ne(errno, 0);
	errno = 0;
	ck_assert_ptr_null(hc_calloc(4, 4));
	ck_assert_int_ne(errno, 0);
	ck_assert_ptr_null(hc_off_to_ptr(123456));
	ck_assert_uint_eq(hc_usable_size(&rc), 0);
	ck_assert_uint_eq(hc_ptr_to_off(&rc), 0);
	hc_disconnect();
}
END_TEST

static void do_free_without_arena(void *arg)
{
	hc_free(arg);
}

START_TEST(test_death_no_arena)
{
	int x;
	char needle[96];
	setenv("HEAPD_SOCKET", "/tmp/heapd-test-no-such-socket", 1);
	snprintf(needle, sizeof(needle), "hc_free(): pointer %p is not in the arena", (void *)&x);
	hchild_expect_abort(do_free_without_arena, &x, needle);
}
END_TEST

/*
 * A daemon that dies during a first Hello and comes back: the stand-in
 * takes the first connection and closes it unanswered, then takes the
 * client's next try (it is waiting for the daemon as a reconnect would)
 * and closes that too, and goes away; a real daemon takes the socket. It
 * runs in this thread until the test is done, since a daemon dies with the
 * thread that started it.
 */
typedef struct restart_stage {
	hd_t d;
	int lfd;
	int dropped[2];         /* hd_standin_drop's results: the first Hello, the next try */
	int started;            /* hd_start's result */
	pthread_barrier_t done; /* the test is over: stop the daemon */
} restart_stage_t;

static void *restart_stage_run(void *arg)
{
	restart_stage_t *r = arg;
	for (int i = 0; i < 2; i++)
		r->dropped[i] = hd_standin_drop(r->lfd, 10000);
	close(r->lfd);
	unlink(r->d.sock);
	r->started = hd_start(&r->d);
	pthread_barrier_wait(&r->done);
	if (r->started == 0)
		hd_stop(&r->d, SIGTERM);
	return NULL;
}

/* The first hc_connect waits for a daemon that dies during its Hello, as a reconnect would. */
START_TEST(test_first_hello_survives_restart)
{
	static restart_stage_t r;
	pthread_t t;

	hd_init(&r.d);
	r.lfd = hd_standin_listen(&r.d);
	ck_assert_int_eq(pthread_barrier_init(&r.done, NULL, 2), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, restart_stage_run, &r), 0);

	int rc = hc_connect(r.d.sock);
	void *p = rc == 0 ? hc_malloc(100) : NULL;
	if (p)
		hc_free(p);
	hc_disconnect();
	pthread_barrier_wait(&r.done);
	pthread_join(t, NULL);
	hd_cleanup(&r.d);
	ck_assert_msg(r.dropped[0] == 0 && r.dropped[1] == 0,
	              "the stand-in saw no first Hello (%d) or no next try (%d)", r.dropped[0], r.dropped[1]);
	ck_assert_int_eq(r.started, 0);
	ck_assert_msg(rc == 0, "hc_connect: %s", strerror(-rc));
	ck_assert_ptr_nonnull(p);
}
END_TEST

START_TEST(test_connect_refused)
{
	/* a socket file nobody listens on */
	char path[] = "/tmp/heapd-test-refused-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	int s = sock_connect(path); /* fails: nothing there */
	ck_assert_int_lt(s, 0);
	int rc = hc_connect(path);
	ck_assert_msg(rc == -ENOENT || rc == -ECONNREFUSED, "hc_connect: %d", rc);
}
END_TEST

static Suite *client_api_suite(void)
{
	Suite *s = suite_create("client_api");
	TCase *tc = tcase_create("with_daemon");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_every_class_and_large);
	tcase_add_test(tc, test_malloc_zero_and_alignment);
	tcase_add_test(tc, test_calloc);
	tcase_add_test(tc, test_realloc);
	tcase_add_test(tc, test_aligned_alloc);
	tcase_add_test(tc, test_offsets);
	tcase_add_test(tc, test_first_refills_bring_neighbours);
	tcase_add_test(tc, test_threads_and_exit_flush);
	tcase_add_test(tc, test_emptied_spans_go_back);
	tcase_add_test(tc, test_handback_across_restart);
	tcase_add_test(tc, test_disconnect_keeps_objects);
	tcase_add_test(tc, test_death_double_free);
	tcase_add_test(tc, test_death_names_pointer);
	suite_add_tcase(s, tc);

	TCase *nd = tcase_create("no_daemon");
	tcase_set_timeout(nd, 60);
	tcase_add_test(nd, test_no_daemon);
	tcase_add_test(nd, test_death_no_arena);
	tcase_add_test(nd, test_connect_refused);
	tcase_add_test(nd, test_first_hello_survives_restart);
	tcase_add_test(nd, test_arena_full);
	suite_add_tcase(s, nd);
	return s;
}

TEST_SUITES(client_api_suite);
