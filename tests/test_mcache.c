// SPDX-License-Identifier: MIT
/*
 * test_mcache.c - the per-thread span caches (client/mcache.c) against a real
 * heapd on a temporary socket: allocation in slot order from a granted span,
 * the fold of free bits set by another process (word_room), frees by the
 * owning thread straight into its own spans, refills in growing batches,
 * emptied spans beyond the reserve going back with the next Refill or
 * LargeAlloc, hc_trim and thread exit, a daemon restart (the caches keep
 * their spans), a reconnect under another slot (the caches drop theirs at
 * their next slow path), and a forked child starting afresh.
 *
 * What a cache holds is read from its own records (mcache_tls, mcache.h)
 * and checked against the span table through the read-only mapping: a span
 * a cache holds must be a small span of its class owned by our slot. Each
 * test runs in its own process with its own daemon.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/child.h"
#include "harness/util.h"
#include "heapclient.h"
#include "mcache.h"
#include "proc.h"
#include "sizeclass.h"

static void daemon_up(void)
{
	/* The tests count spans: refills bring only what they ask for, but where a test says otherwise. */
	heapclient_debug_extra_refills(0);
	hd_default_start("256M", NULL);
}

static void daemon_down(void)
{
	hd_default_stop();
}

static hc_stats_t stats(void)
{
	hc_stats_t st;
	ck_assert_int_eq(hc_stats(&st), 0);
	return st;
}

/* The first class with at least min objects in spans of npages (0: any) pages. */
static uint32_t class_with(uint32_t min, uint32_t max, uint32_t npages)
{
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		if (sizeclass_nelems[k] >= min && sizeclass_nelems[k] <= max &&
		    (npages == 0 || sizeclass_npages[k] == npages))
			return k;
	ck_abort_msg("no class of %u..%u objects in %u pages", min, max, npages);
	return 0;
}

/* The documented batch limit: 64 KiB of spans, at least 2 and at most 8. */
static uint32_t batch_limit(uint32_t k)
{
	uint32_t n = (64u << 10) / (sizeclass_npages[k] << HEAPD_PAGE_SHIFT);
	return n < 2 ? 2 : n > 8 ? 8 : n;
}

static void *alloc_class(uint32_t k)
{
	void *p = hc_malloc(sizeclass_size[k]);
	ck_assert_msg(p != NULL, "hc_malloc(%u): %s", sizeclass_size[k], strerror(errno));
	return p;
}

static uint32_t span_of(const void *p)
{
	uint32_t s = segment_span_of(&proc_g.seg, p);
	ck_assert_uint_ne(s, HEAPD_NIL);
	return s;
}

static const shm_span_t *desc(uint32_t span)
{
	return &proc_g.seg.spans[span];
}

static uint32_t index_in(const void *p)
{
	uint32_t s = span_of(p);
	size_t off = (size_t)((const uint8_t *)p - segment_page_addr(&proc_g.seg, s));
	return (uint32_t)(off / sizeclass_size[desc(s)->sizeclass]);
}

static int alloc_bit(uint32_t span, uint32_t idx)
{
	return (int)(bitmap_load(&segment_allocbits(&proc_g.seg, span)[idx >> 6]) >> (idx & 63)) & 1;
}

static int free_bit(uint32_t span, uint32_t idx)
{
	const uint64_t *f = segment_freebits(&proc_g.seg, span, sizeclass_nelems[desc(span)->sizeclass]);
	return (int)(bitmap_load(&f[idx >> 6]) >> (idx & 63)) & 1;
}

static int ours(uint32_t span)
{
	return desc(span)->state == SPAN_SMALL && desc(span)->owner == proc_g.slot + 1;
}

/* Every span of the calling thread's class k: in the span table as a small span of k, ours. */
static uint32_t check_cache(uint32_t k)
{
	mcache_t *mc = mcache_tls;
	uint32_t n = 0;
	for (mc_span_t *s = mc->lists[k].spans; s; s = s->next, n++) {
		ck_assert_msg(ours(s->span), "span %u in the cache is owned by %u, we are slot %u", s->span,
		              desc(s->span)->owner, proc_g.slot);
		ck_assert_uint_eq(desc(s->span)->sizeclass, k);
		ck_assert_ptr_eq(s->base, segment_page_addr(&proc_g.seg, s->span));
	}
	ck_assert_uint_eq(n, mc->lists[k].nspans);
	return n;
}

/* Spans of class k the span table says our slot owns. */
static uint32_t owned_in_table(uint32_t k)
{
	uint32_t n = 0;
	for (uint32_t p = 0; p < proc_g.seg.hdr->npages_grown; p++) {
		const shm_span_t *s = desc(p);
		if (s->start == p && s->state == SPAN_SMALL && s->sizeclass == k && s->owner == proc_g.slot + 1)
			n++;
	}
	return n;
}

/* Run fn(arg) on a thread of its own and wait for it. */
static void on_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, fn, arg), 0);
	pthread_join(t, NULL);
}

/* ---- allocation ---- */

START_TEST(test_alloc_from_span)
{
	uint32_t k = class_with(100, 1024, 1), n = sizeclass_nelems[k];
	void **p = calloc(n + 1, sizeof(void *));

	p[0] = alloc_class(k);
	hc_stats_t st = stats();
	ck_assert_uint_eq(st.refills, 1);
	ck_assert_uint_eq(st.spans_cached, 1);
	ck_assert_int_eq(st.connected, 1);
	ck_assert_uint_eq(check_cache(k), 1);
	uint32_t span = span_of(p[0]);
	ck_assert_uint_eq(mcache_tls->lists[k].cur->span, span);
	ck_assert(ours(span));

	/* the whole span, slot after slot, with no request */
	for (uint32_t i = 1; i < n; i++)
		p[i] = alloc_class(k);
	for (uint32_t i = 0; i < n; i++) {
		ck_assert_uint_eq(span_of(p[i]), span);
		ck_assert_uint_eq(index_in(p[i]), i); /* the lowest free slot first */
		ck_assert(alloc_bit(span, i));
	}
	ck_assert_uint_eq(bitmap_count_alloc(segment_allocbits(&proc_g.seg, span), n), n);
	ck_assert_uint_eq(stats().refills, 1);
	ck_assert_uint_eq(stats().requests, st.requests);

	/* full: the next object needs a refill, which asks for a bigger batch */
	p[n] = alloc_class(k);
	ck_assert_uint_ne(span_of(p[n]), span);
	ck_assert_uint_eq(stats().refills, 2);
	ck_assert_uint_eq(check_cache(k), 1 + 2);
	ck_assert_uint_eq(stats().spans_cached, 3);
	ck_assert_uint_eq(owned_in_table(k), 3);
	for (uint32_t i = 0; i <= n; i++)
		hc_free(p[i]);
	free(p);
}
END_TEST

/* Spans per Refill: 1, then doubling up to the batch limit of the class. */
START_TEST(test_refill_batches)
{
	uint32_t classes[2] = { class_with(1, 8, 1), class_with(1, 1024, 4) };

	for (int c = 0; c < 2; c++) {
		uint32_t k = classes[c], want = 0, batch = 1;
		uint64_t refills = stats().refills;
		for (int round = 0; round < 6; round++) {
			/* allocate until the next Refill, then see what it brought */
			while (stats().refills == refills)
				alloc_class(k);
			refills++;
			want += batch;
			ck_assert_msg(check_cache(k) == want, "class %u after refill %d: %u spans, want %u", k,
			              round + 1, check_cache(k), want);
			batch = batch * 2 < batch_limit(k) ? batch * 2 : batch_limit(k);
		}
		ck_assert_uint_eq(owned_in_table(k), want);
	}
}
END_TEST

/* A child process frees objects of our full span; the owner's sweep reuses exactly those. */
START_TEST(test_fold_frees_of_others)
{
	uint32_t k = class_with(129, 1024, 1), n = sizeclass_nelems[k];
	uint32_t victims[3] = { 3, 70, n - 1 };
	void **p = calloc(n, sizeof(void *));

	for (uint32_t i = 0; i < n; i++)
		p[i] = alloc_class(k);
	uint32_t span = span_of(p[0]);
	ck_assert_uint_eq(span_of(p[n - 1]), span);
	uint64_t refills = stats().refills;
	ck_assert(!mcache_owns(mcache_tls, span)); /* fresh pages: frees by us go through the free bits too */

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (int i = 0; i < 3; i++)
			hc_free(p[victims[i]]);
		_exit(0);
	}
	ck_assert_int_eq(hchild_wait(pid), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert(free_bit(span, victims[i]));
		ck_assert(alloc_bit(span, victims[i])); /* not folded until the owner sweeps */
	}

	for (int i = 0; i < 3; i++) {
		void *q = alloc_class(k);
		ck_assert_ptr_eq(q, p[victims[i]]);
		ck_assert(alloc_bit(span, victims[i]));
		ck_assert(!free_bit(span, victims[i]));
	}
	ck_assert_uint_eq(stats().refills, refills); /* all from the fold, no request */
	/* its slots were reused: old data, and this thread may now free into it directly */
	ck_assert(mcache_owns(mcache_tls, span));
	ck_assert_uint_eq(mcache_tls->lists[k].cur->needzero, 1);
	/* nothing more is free: the next one takes a refill */
	void *q = alloc_class(k);
	ck_assert_uint_ne(span_of(q), span);
	ck_assert_uint_eq(stats().refills, refills + 1);
	free(p);
}
END_TEST

typedef struct free_arg {
	void *p;
	int owns;
} free_arg_t;

static void *free_elsewhere(void *arg)
{
	free_arg_t *a = arg;
	a->owns = mcache_owns(mcache_tls, span_of(a->p));
	hc_free(a->p);
	return NULL;
}

/*
 * The owning thread frees into a span of its cache by clearing the alloc
 * bit (release builds; debug builds check every free and set the free bit);
 * another thread of the same process, which does not hold the span, sets
 * the free bit. Either way the owner gets the slot back without a request.
 */
START_TEST(test_own_span_frees)
{
	uint32_t k = class_with(16, 64, 1), n = sizeclass_nelems[k];
	void **p = calloc(n, sizeof(void *));

	for (uint32_t i = 0; i < n; i++)
		p[i] = alloc_class(k);
	uint32_t span = span_of(p[0]);
	ck_assert(!mcache_owns(mcache_tls, span)); /* fresh pages, not all handed out yet */
	hc_free(p[0]);
	ck_assert(free_bit(span, 0)); /* so not ours to clear: the free bit */
	p[0] = alloc_class(k);       /* the window went over every slot, and the fold reused one */
	ck_assert_uint_eq(index_in(p[0]), 0);
	ck_assert(mcache_owns(mcache_tls, span));

	/* a span the window has been all over holds old data, even with no fold */
	void *next = alloc_class(k); /* a Refill */
	uint32_t span2 = span_of(next);
	ck_assert_uint_ne(span2, span);
	for (uint32_t i = 1; i < n; i++)
		alloc_class(k);
	ck_assert(!mcache_owns(mcache_tls, span2));
	uint64_t refills = stats().refills;
	void *more = alloc_class(k); /* span2 is passed: the next comes from the batch's other span */
	ck_assert(mcache_owns(mcache_tls, span2));
	ck_assert_uint_eq(stats().refills, refills);

	hc_free(p[5]);
#ifdef HEAPD_DEBUG
	ck_assert(free_bit(span, 5));
	ck_assert(alloc_bit(span, 5));
#else
	ck_assert(!alloc_bit(span, 5));
	ck_assert(!free_bit(span, 5));
#endif
	free_arg_t a = { .p = p[9] };
	on_thread(free_elsewhere, &a);
	ck_assert_int_eq(a.owns, 0);
	ck_assert(free_bit(span, 9));
	ck_assert(alloc_bit(span, 9));

	/* both slots come back to the owner before it asks for more */
	int got5 = 0, got9 = 0;
	uint32_t room = n - 1 + 2; /* the rest of the current span, and the two freed slots */
	for (uint32_t i = 0; i < room; i++) {
		void *q = alloc_class(k);
		got5 |= q == p[5];
		got9 |= q == p[9];
	}
	ck_assert(got5 && got9);
	ck_assert(!free_bit(span, 9));
	ck_assert_uint_eq(stats().refills, refills);

	/* trimmed: the span left the cache, and with it the right to clear its bits */
	ck_assert_int_eq(hc_trim(), 0);
	ck_assert(!mcache_owns(mcache_tls, span));
	hc_free(p[7]);
	ck_assert(free_bit(span, 7));
	hc_free(more);
	free(p);
}
END_TEST

/* ---- handing spans back ---- */

static void *fill_and_empty(uint32_t k, uint32_t nspans)
{
	uint32_t n = sizeclass_nelems[k] * nspans;
	void **p = calloc(n, sizeof(void *));
	for (uint32_t i = 0; i < n; i++)
		p[i] = alloc_class(k);
	for (uint32_t i = 0; i < n; i++)
		hc_free(p[i]);
	free(p);
	return NULL;
}

/*
 * Spans that empty go back to the daemon with the thread's next Refill (of
 * another class) or LargeAlloc, but for the current span and a reserve of
 * a batch's worth per class; spans with live objects stay.
 */
START_TEST(test_handback_emptied)
{
	uint32_t a = class_with(2, 8, 1), b = class_with(9, 16, 1), c = class_with(17, 32, 1);

	/* a's own refills never hand a's spans back */
	fill_and_empty(a, 20);
	uint32_t held = check_cache(a);
	ck_assert_uint_ge(held, 20);
	ck_assert_uint_eq(owned_in_table(a), held);

	/* a Refill of class c carries the empty spans of a beyond its reserve */
	uint64_t requests = stats().requests;
	alloc_class(c);
	ck_assert_uint_eq(stats().requests, requests + 1);
	ck_assert_uint_eq(check_cache(a), 1 + batch_limit(a));
	ck_assert_uint_eq(owned_in_table(a), 1 + batch_limit(a));

	/* a LargeAlloc carries them too; a span with a live object stays */
	void *live = alloc_class(b);
	uint32_t live_span = span_of(live);
	fill_and_empty(b, 12);
	ck_assert_uint_ge(check_cache(b), 13);
	void *big = hc_malloc(200000);
	ck_assert_ptr_nonnull(big);
	ck_assert_uint_eq(stats().large_allocs, 1);
	ck_assert_uint_ne(mcache_tls->lists[b].cur->span, live_span);
	ck_assert_uint_eq(check_cache(b), 2 + batch_limit(b)); /* current, live, reserve */
	ck_assert_uint_eq(owned_in_table(b), 2 + batch_limit(b));
	ck_assert(ours(live_span));
	int found = 0;
	for (mc_span_t *s = mcache_tls->lists[b].spans; s; s = s->next)
		found |= s->span == live_span;
	ck_assert(found);
	ck_assert_uint_eq(check_cache(a), 1 + batch_limit(a)); /* the reserve stays */
	ck_assert_uint_eq(stats().spans_cached, check_cache(a) + check_cache(b) + check_cache(c));
	hc_free(big);
	hc_free(live);
}
END_TEST

typedef struct trim_arg {
	uint32_t k[3];
	void *objs[3];
	uint32_t spans[3];
	uint32_t left;
	uint64_t refills_before, refills_after;
	int rc;
} trim_arg_t;

static void *trim_thread(void *arg)
{
	trim_arg_t *t = arg;
	for (int i = 0; i < 3; i++) {
		t->objs[i] = alloc_class(t->k[i]);
		t->spans[i] = span_of(t->objs[i]);
	}
	t->rc = hc_trim();
	t->left = 0;
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		t->left += mcache_tls->lists[k].nspans;
	t->refills_before = stats().refills;
	void *again = alloc_class(t->k[0]);
	t->refills_after = stats().refills;
	hc_free(again);
	return NULL;
}

/* hc_trim hands back the calling thread's spans, and only its; their objects stay. */
START_TEST(test_trim)
{
	trim_arg_t t = { .k = { 1, class_with(20, 64, 1), class_with(1, 1024, 3) } };
	void *mine = alloc_class(t.k[0]);
	uint32_t my_span = span_of(mine);
	ck_assert_int_eq(hc_trim(), 0);
	ck_assert_uint_eq(stats().spans_cached, 0);
	ck_assert(!ours(my_span));
	ck_assert_uint_gt(hc_usable_size(mine), 0); /* the object lives on in a span heapd holds */

	mine = alloc_class(t.k[0]);
	my_span = span_of(mine);
	on_thread(trim_thread, &t);
	ck_assert_int_eq(t.rc, 0);
	ck_assert_uint_eq(t.left, 0);
	ck_assert_uint_eq(t.refills_after, t.refills_before + 1); /* asks again afterwards */
	for (int i = 0; i < 3; i++) {
		ck_assert(!ours(t.spans[i]));
		ck_assert_uint_eq(hc_usable_size(t.objs[i]), sizeclass_size[t.k[i]]);
		hc_free(t.objs[i]); /* still freeable, by anyone */
	}
	ck_assert(ours(my_span)); /* this thread's cache is untouched */
	ck_assert_uint_eq(check_cache(t.k[0]), 1);
	ck_assert_uint_eq(stats().spans_cached, 1);
	/* a thread with nothing cached trims nothing */
	ck_assert_int_eq(hc_trim(), 0);
	ck_assert_int_eq(hc_trim(), 0);
	hc_free(mine);
}
END_TEST

static void *alloc_and_exit(void *arg)
{
	uint32_t *span = arg;
	span[0] = span_of(alloc_class(span[1]));
	return NULL;
}

/* A thread that exits hands its spans back. */
START_TEST(test_thread_exit)
{
	uint32_t arg[2] = { 0, class_with(20, 64, 1) };
	alloc_class(1);
	on_thread(alloc_and_exit, arg);
	ck_assert(!ours(arg[0]));
	ck_assert_uint_eq(desc(arg[0])->state, SPAN_SMALL); /* its object is alive */
	ck_assert_uint_eq(stats().spans_cached, 1);
}
END_TEST

/* ---- the connection changes under the caches ---- */

/* heapd restarts: the slot is re-adopted, and the caches keep their spans. */
START_TEST(test_daemon_restart_keeps_cache)
{
	uint32_t k = class_with(2, 8, 1), n = sizeclass_nelems[k];
	uint32_t others[2] = { 1, class_with(1, 1024, 2) };
	for (uint32_t i = 0; i < 3 * n; i++)
		alloc_class(k);
	for (int i = 0; i < 2; i++)
		alloc_class(others[i]);
	uint32_t held = check_cache(k);
	uint32_t slot = proc_g.slot;
	uint64_t epoch = proc_epoch();
	ck_assert_uint_eq(held, 3); /* batches of 1 and 2, all full now */

	ck_assert_int_ge(hd_stop(&hd_default, SIGKILL), 0);
	ck_assert_int_eq(hd_start(&hd_default), 0);

	alloc_class(k); /* a Refill: reconnect, name every cached span, go on */
	hc_stats_t st = stats();
	ck_assert_uint_eq(st.reconnects, 1);
	ck_assert_uint_eq(st.slot, slot);
	ck_assert_uint_eq(proc_epoch(), epoch);
	/* nothing dropped or taken back, and the next batch (1, 2, then 4) came */
	ck_assert_uint_eq(check_cache(k), held + 4);
	ck_assert_uint_eq(owned_in_table(k), held + 4);
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_eq(check_cache(others[i]), 1);
		ck_assert_uint_eq(owned_in_table(others[i]), 1);
	}
	ck_assert_uint_eq(st.spans_cached, held + 4 + 2);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* A thread that waits for jobs, for a cache that outlives one call. */
typedef struct worker {
	pthread_t t;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	void (*job)(struct worker *);
	int done;
	uint32_t k;
	uint32_t spans[64];
	uint32_t nspans;
	uint32_t cur;            /* the span of the window after the job */
	uint32_t objs[256];      /* the span of each object the job allocated */
	uint32_t nobjs;
	uint64_t epoch;
} worker_t;

static void job_two_refills(worker_t *w);

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) { /* until the process exits */
		while (!w->job)
			pthread_cond_wait(&w->cond, &w->lock);
		void (*job)(worker_t *) = w->job;
		pthread_mutex_unlock(&w->lock);
		job(w);
		pthread_mutex_lock(&w->lock);
		w->job = NULL;
		w->done++;
		pthread_cond_broadcast(&w->cond);
	}
	return NULL;
}

/* Run job on the worker and wait until it is done. */
static void worker_run(worker_t *w, void (*job)(worker_t *))
{
	pthread_mutex_lock(&w->lock);
	int done = w->done;
	w->job = job;
	pthread_cond_broadcast(&w->cond);
	while (w->done == done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

static void worker_start(worker_t *w, uint32_t k)
{
	memset(w, 0, sizeof(*w));
	w->k = k;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	ck_assert_int_eq(pthread_create(&w->t, NULL, worker_main, w), 0);
}

/* Allocate until the calling thread's cache makes a Refill; note the spans it holds then. */
static void job_alloc_until_refill(worker_t *w)
{
	uint64_t refills = stats().refills;
	w->nobjs = 0;
	while (stats().refills == refills) {
		void *p = alloc_class(w->k);
		if (w->nobjs < sizeof(w->objs) / sizeof(w->objs[0]))
			w->objs[w->nobjs++] = span_of(p);
	}
	w->cur = mcache_tls->lists[w->k].cur->span;
	w->nspans = 0;
	for (mc_span_t *s = mcache_tls->lists[w->k].spans; s && w->nspans < 64; s = s->next)
		w->spans[w->nspans++] = s->span;
	w->epoch = mcache_tls->reg.epoch;
}

static void job_two_refills(worker_t *w)
{
	job_alloc_until_refill(w);
	job_alloc_until_refill(w);
}

/*
 * A reconnect that gets another slot (here the process's uid changed, so heapd
 * will not re-adopt the old slot and holds it for the process meanwhile):
 * every cache's spans belong to the old slot, and each thread's cache drops
 * them at its next slow path and takes spans of the new slot.
 */
START_TEST(test_new_slot_drops_caches)
{
	static hd_t d;
	static worker_t w;
	if (geteuid() != 0) {
		test_skip("test_new_slot_drops_caches", "needs root to change its uid");
		return;
	}
	hd_init(&d);
	d.extra[0] = "--allow-uid";
	d.extra[1] = "65534";
	ck_assert_int_eq(hd_start(&d), 0);
	ck_assert_int_eq(chmod(d.dir, 0750), 0); /* reachable through our group, 0, as uid 65534 */
	setenv("HEAPD_SOCKET", d.sock, 1);

	uint32_t k = class_with(2, 8, 1);
	worker_start(&w, k);
	/* the worker's cache: a full span, the window's, and a fresh one of the same batch */
	worker_run(&w, job_two_refills);
	ck_assert_uint_ge(w.nspans, 3);
	uint32_t old_worker[64], nold = w.nspans, old_cur = w.cur;
	memcpy(old_worker, w.spans, sizeof(old_worker));
	job_alloc_until_refill(&(worker_t){ .k = k });
	uint32_t old_slot = proc_g.slot;
	uint32_t mine_before = check_cache(k);
	ck_assert_uint_eq(stats().spans_cached, mine_before + nold);

	ck_assert_int_ge(hd_stop(&d, SIGKILL), 0);
	ck_assert_int_eq(hd_start(&d), 0);
	ck_assert_int_eq(seteuid(65534), 0);
	uint64_t epoch = proc_epoch();
	job_alloc_until_refill(&(worker_t){ .k = k }); /* reconnects on the way */
	ck_assert_int_eq(seteuid(0), 0);

	hc_stats_t st = stats();
	ck_assert_uint_eq(st.reconnects, 1);
	ck_assert_uint_ne(st.slot, old_slot);
	ck_assert_uint_gt(proc_epoch(), epoch);
	/* this thread's cache holds only spans of the new slot, none of the old ones */
	uint32_t mine = check_cache(k);
	ck_assert_uint_ge(mine, 1);
	ck_assert_uint_eq(mcache_tls->reg.epoch, proc_epoch());
	/* the other thread has not been through its slow path: its cache is stale, not counted */
	ck_assert_uint_ne(w.epoch, proc_epoch());
	ck_assert_uint_eq(stats().spans_cached, mine);
	for (uint32_t i = 0; i < nold; i++)
		ck_assert_uint_eq(desc(old_worker[i])->owner, old_slot + 1); /* held for us still */

	/* its window still serves; past it, nothing of the old slot, though a span has room */
	worker_run(&w, job_alloc_until_refill);
	ck_assert_uint_eq(w.epoch, proc_epoch());
	for (uint32_t i = 0; i < w.nobjs; i++)
		ck_assert_msg(w.objs[i] == old_cur || ours(w.objs[i]),
		              "object %u of the worker came from span %u of the old slot", i, w.objs[i]);
	for (uint32_t i = 0; i < w.nspans; i++) {
		ck_assert(ours(w.spans[i]));
		for (uint32_t j = 0; j < nold; j++)
			ck_assert_uint_ne(w.spans[i], old_worker[j]);
	}
	ck_assert_uint_eq(stats().spans_cached, mine + w.nspans);
	hd_cleanup(&d);
}
END_TEST

/* What a forked child found, as its exit status: 0, or the number of the check that failed. */
static int child_checks(void **parent_objs, uint32_t nobjs, const hc_stats_t *parent, uint32_t k)
{
	hc_stats_t st;
	if (hc_stats(&st) != 0 || st.spans_cached != 0 || st.connected)
		return 1;
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++)
		if (mcache_tls->lists[c].nspans != 0 || mcache_tls->cls[c].cache != 0)
			return 2;
	for (uint32_t i = 0; i < nobjs; i++)
		if (mcache_owns(mcache_tls, span_of(parent_objs[i])))
			return 3;
	void *p = hc_malloc(sizeclass_size[k]);
	if (!p || hc_stats(&st) != 0 || st.slot == parent->slot || st.refills != parent->refills + 1)
		return 4;
	if (!ours(span_of(p)) || proc_g.slot != st.slot)
		return 5;
	for (uint32_t i = 0; i < nobjs; i++)
		if (span_of(p) == span_of(parent_objs[i]))
			return 6;
	if (!hutil_verify(parent_objs[0], sizeclass_size[k], 99))
		return 7;
	hc_free(parent_objs[0]); /* objects of the parent are freed through their free bits */
	hc_free(p);
	return 0;
}

START_TEST(test_fork_child)
{
	uint32_t k = class_with(20, 64, 1);
	void *objs[4];
	for (int i = 0; i < 4; i++)
		objs[i] = alloc_class(k);
	hutil_fill(objs[0], sizeclass_size[k], 99);
	hc_stats_t before = stats();
	uint32_t span = span_of(objs[0]);
	uint32_t idx = index_in(objs[0]);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_checks(objs, 4, &before, k));
	int st = hchild_wait(pid);
	ck_assert_msg(st == 0, "the child's check %d failed", st);

	/* the parent goes on as before, on its own slot and spans */
	hc_stats_t after = stats();
	ck_assert_uint_eq(after.slot, before.slot);
	ck_assert_uint_eq(after.spans_cached, before.spans_cached);
	ck_assert_uint_eq(after.requests, before.requests);
	ck_assert(ours(span));
	ck_assert(free_bit(span, idx)); /* the child's free */
	alloc_class(k);
	ck_assert_uint_eq(stats().refills, before.refills);
	for (int i = 1; i < 4; i++)
		hc_free(objs[i]);
}
END_TEST

/*
 * A thread's first refills of classes it holds nothing of bring a span of
 * some neighbouring classes too: filed under their own classes, ours in the
 * span table, serving those classes without a refill of their own, and
 * only for the first MC_EXTRA_REFILLS such refills.
 */
START_TEST(test_refill_brings_neighbours)
{
	uint32_t k = class_with(100, 1024, 1);
	uint32_t neighbours = 0;

	heapclient_debug_extra_refills(1);
	void *p = alloc_class(k);
	ck_assert_uint_eq(stats().refills, 1);
	ck_assert_uint_eq(check_cache(k), 1);
	for (uint32_t j = 1; j < SIZECLASS_COUNT; j++) {
		if (j == k || !check_cache(j))
			continue;
		neighbours++;
		ck_assert_uint_eq(check_cache(j), 1);
		ck_assert_uint_eq(owned_in_table(j), 1);
		ck_assert_uint_eq(sizeclass_npages[j], 1);
		ck_assert_uint_le(j > k ? j - k : k - j, 6);
		void *q = alloc_class(j);
		ck_assert_uint_eq(span_of(q), mcache_tls->lists[j].spans->span);
		hc_free(q);
	}
	ck_assert_uint_ge(neighbours, 1);
	ck_assert_uint_le(neighbours, 4);
	ck_assert_uint_eq(stats().refills, 1); /* the neighbours served without one */
	ck_assert_uint_eq(stats().spans_cached, 1 + neighbours);
	/* the budget of one such refill is spent: the next class comes alone */
	uint32_t far = k + 10 < SIZECLASS_COUNT ? k + 10 : k - 10;
	void *r = alloc_class(far);
	ck_assert_uint_eq(stats().refills, 2);
	ck_assert_uint_eq(stats().spans_cached, 2 + neighbours);
	hc_free(r);
	hc_free(p);
}
END_TEST

static Suite *mcache_suite(void)
{
	Suite *s = suite_create("mcache");
	TCase *tc = tcase_create("mcache");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_alloc_from_span);
	tcase_add_test(tc, test_refill_batches);
	tcase_add_test(tc, test_refill_brings_neighbours);
	tcase_add_test(tc, test_fold_frees_of_others);
	tcase_add_test(tc, test_own_span_frees);
	tcase_add_test(tc, test_handback_emptied);
	tcase_add_test(tc, test_trim);
	tcase_add_test(tc, test_thread_exit);
	tcase_add_test(tc, test_daemon_restart_keeps_cache);
	tcase_add_test(tc, test_new_slot_drops_caches);
	tcase_add_test(tc, test_fork_child);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(mcache_suite);
