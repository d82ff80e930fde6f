// SPDX-License-Identifier: MIT
/*
 * mcache.c - per-thread span caches: the slow path of allocation, refills,
 * hand-backs, and what the process state asks of the caches.
 *
 * See mcache.h for the structures and the fast path. This file holds:
 *   - mcache_alloc_slow: next word, local sweep, batch Refill;
 *   - the retention policy: how many spans a class asks for and keeps;
 *   - the hand-back pass: empty spans beyond a reserve go back with the
 *     thread's next Refill or LargeAlloc;
 *   - thread exit (a pthread key destructor hands the thread's spans back),
 *     and the hooks the process state calls (proc.h): listing a cache's
 *     spans for a reconnect, dropping them all (hc_disconnect), and fork;
 *   - heapclient_debug_refill_ns: the last MC_REFILL_RING Refill round
 *     trips, timed around the request (kept across reconnects);
 *   - heap profiling (profile.h): each class's countdown to its next
 *     sample, counted a window at a time and cut short at the sampled slot
 *     (clip, take_sampled), and the reaping of sampled objects whose alloc
 *     bit a fold or a direct free cleared (word_room, reap).
 *
 * Policy, per class, with S = span bytes:
 *   - batch: a Refill asks for `batch` spans, starting at 1 and doubling to
 *     clamp(64 KiB / S, 2, 8), so that a thread touching a class once costs
 *     one span while a busy class needs a request per >= 64 KiB;
 *   - extras: a thread's first few refills of classes it holds nothing of
 *     also ask for one span of each of a few neighbouring classes it holds
 *     nothing of (MC_EXTRA_REFILLS), which heapd gives when it has them to
 *     spare: a short-lived program touching many sizes makes a round trip
 *     per few classes instead of one per class;
 *   - retain: when a Refill is due, every span of the class is full; those
 *     beyond `retain` are handed back in the same request. retain starts at
 *     twice the batch limit and doubles, up to 1024 spans, each time a
 *     refill would otherwise hand back full spans: a
 *     class whose objects stay live longer (a batch allocated then freed, a
 *     producer whose objects are in flight to a consumer) keeps enough spans
 *     that its own sweep finds room, and it makes no requests. Full spans
 *     hold live objects, so keeping them costs no memory until they empty.
 *   - reserve: spans that empty go back to the daemon, which can then reuse
 *     their pages for any class or a large object. Before every Refill and
 *     LargeAlloc (a round trip is paid anyway, and the fast paths pay
 *     nothing), the hand-back pass visits up to MC_PASS_SPANS spans,
 *     resuming where the last pass stopped and going round the classes. It
 *     folds each span's free bits as the local sweep does, and names in the
 *     request every empty span of a class beyond the first batch_max(c) it
 *     met in this round of the class, never the class's current span: a
 *     class that allocates again finds a batch's worth of room without a
 *     request. A Refill's pass skips the class being refilled: whatever of
 *     it empties meanwhile (another process freeing its objects, as a
 *     consumer does) is room it is about to use, and handing it back would
 *     only cost more refills.
 *   - under memory pressure (HEAPD_CLIENT_FLUSH) a cache keeps only each
 *     class's current span and asks for one span at a time.
 * A thread's spans go back when it exits, on hc_trim and hc_disconnect, and
 * under pressure; emptied ones with its next requests. The daemon takes
 * back the rest when the process disconnects.
 *
 * Locking: the owning thread works on its cache without a lock; changes to
 * the set of spans a cache holds, and the registry, happen under
 * proc_g.lock (mcache.h).
 */
#include "mcache.h"

#if defined(__x86_64__) && !defined(__POPCNT__)
#if __has_include(<sys/platform/x86.h>)
#include <sys/platform/x86.h>
#else
#include <cpuid.h>
#endif
#endif
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "profile.h"
#include "request.h"
#include "roots.h"
#include "transport.h"

#define MC_BATCH_BYTES (64u << 10)
#define MC_BATCH_MIN 2u
#define MC_BATCH_MAX 8u
#define MC_RETAIN_MAX 1024u
#define MC_REFILL_RING 4096u /* round trips hc_debug_refill_latencies remembers */
/*
 * Spans one hand-back pass visits. A visit reads the span's record and its
 * bitmap words up to the first one in use, mostly cache misses: a pass
 * measured 2-15 us, against 25-35 us for the round trip it rides on. It
 * keeps up: one request may hand back 64 spans (512 KiB or more) while it
 * takes at most a batch of 8 spans or one large object, and a thread that
 * stops using a class returns its spans within (spans cached) / 64 requests.
 */
#define MC_PASS_SPANS 64u
/*
 * A thread's first MC_EXTRA_REFILLS refills of a class it holds no span of
 * also ask for one span of each of up to MC_EXTRA_CLASSES neighbouring
 * classes it holds none of either (Refill.also, one-page spans only): a
 * program that allocates a little of many sizes, as a short-lived one does,
 * pays one round trip for several classes instead of one for each. A thread
 * holds at most MC_EXTRA_REFILLS * MC_EXTRA_CLASSES spans (128 KiB) it did
 * not ask for, empty ones each class keeps anyway (the reserve below).
 */
#define MC_EXTRA_REFILLS 4u
#define MC_EXTRA_CLASSES 4u
#define MC_EXTRA_REACH 6u /* classes either side of the one refilled that are looked at */

/* The cache of a thread that has not allocated yet: every window is empty. */
static mcache_t mcache_empty;

__thread mcache_t *mcache_tls __attribute__((tls_model("initial-exec"))) = &mcache_empty;

static uint64_t refill_ns[MC_REFILL_RING]; /* recent Refill round trips, ns; proc_g.lock */
static uint32_t extra_refills_max = MC_EXTRA_REFILLS; /* heapclient_debug_extra_refills */
static uint64_t refill_count;         /* round trips timed so far; proc_g.lock */
static pthread_key_t mcache_key;      /* destructor: mcache_thread_exit */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
#if defined(__x86_64__) && !defined(__POPCNT__)
static int have_popcnt;               /* the CPU has POPCNT; set once (key_init) */
#endif

static uint32_t span_bytes(uint32_t c)
{
	return sizeclass_npages[c] << HEAPD_PAGE_SHIFT;
}

static uint32_t batch_max(uint32_t c)
{
	uint32_t n = MC_BATCH_BYTES / span_bytes(c);
	return n < MC_BATCH_MIN ? MC_BATCH_MIN : n > MC_BATCH_MAX ? MC_BATCH_MAX : n;
}

static void own_add(mcache_t *mc, uint32_t span)
{
	mc->own[span & (MC_OWN_SLOTS - 1)] = span + 1;
}

static void own_del(mcache_t *mc, uint32_t span)
{
	uint32_t *e = &mc->own[span & (MC_OWN_SLOTS - 1)];
	if (*e == span + 1)
		*e = 0;
}

static void own_clear(mcache_t *mc)
{
	memset(mc->own, 0, sizeof(mc->own));
}

/*
 * Span s may hold old data in its free slots from now on: a fold reused
 * slots, or the owner's window has been over every slot once. Only then may
 * this thread's frees clear its alloc bits directly (mcache_t.own).
 */
static void mark_reused(mcache_t *mc, mc_span_t *s)
{
	s->needzero = 1;
	own_add(mc, s->span);
}

static void reset_class(mcache_t *mc, uint32_t c)
{
	memset(&mc->cls[c], 0, sizeof(mc->cls[c]));
	mc->lists[c].cur = NULL;
	mc->lists[c].cachebase = 0;
	mc->lists[c].batch = 1;
	mc->lists[c].retain = 2 * batch_max(c);
	mc->lists[c].prof_hold = 0; /* part of the window; a sample due stays due (prof_skip is 0) */
}

/* Spans were unlinked: the hand-back pass starts its class again from the head. */
static void pass_restart(mcache_t *mc)
{
	mc->pass_prev = NULL;
	mc->pass_kept = 0;
}

/* Append span to *rel, growing it. 0 or -ENOMEM. */
static int rel_push(uint32_t **rel, size_t *n, size_t *cap, uint32_t span)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		uint32_t *grown = realloc(*rel, ncap * sizeof(**rel));
		if (!grown)
			return -ENOMEM;
		*rel = grown;
		*cap = ncap;
	}
	(*rel)[(*n)++] = span;
	return 0;
}

/* Forget every span of mc without handing any back. */
static void drop_spans_locked(mcache_t *mc)
{
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		mc_span_t *s = mc->lists[c].spans, *next;
		for (; s; s = next) {
			next = s->next;
			free(s);
		}
		mc->lists[c].spans = NULL;
		mc->lists[c].nspans = 0;
		reset_class(mc, c);
	}
	mc->nspans = 0;
	own_clear(mc);
	pass_restart(mc);
}

/*
 * Unlink spans of mc into *rel (growing it): all of them, or with
 * keep_current every span but each class's current one. 0 or -ENOMEM.
 */
static int collect_spans_locked(mcache_t *mc, int keep_current, uint32_t **rel, size_t *n, size_t *cap)
{
	pass_restart(mc);
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		mc_list_t *l = &mc->lists[c];
		mc_span_t **pp = &l->spans;
		if (!keep_current)
			reset_class(mc, c); /* empty the window before its span goes */
		while (*pp) {
			mc_span_t *s = *pp;
			if (keep_current && s == l->cur) {
				pp = &s->next;
				continue;
			}
			if (rel_push(rel, n, cap, s->span) < 0)
				return -ENOMEM;
			*pp = s->next;
			l->nspans--;
			mc->nspans--;
			own_del(mc, s->span);
			free(s);
		}
	}
	return 0;
}

/* Send a Refill that only hands spans back; without a connection they are left to the daemon. */
static void release_locked(uint32_t *rel, size_t n)
{
	Heapd__Envelope *reply;
	request_t r;

	if (n == 0)
		return;
	request_refill(&r, 0, 0, rel, n);
	if (transport_call_locked(&r, &reply, TRANSPORT_NO_CONNECT) == 0)
		wire_free(reply);
}

/*
 * Thread exit: hand the thread's spans back (if they are still ours and we
 * are connected; otherwise the daemon takes them back when it sees them
 * unlisted or us gone) and unregister the cache.
 */
static void mcache_thread_exit(void *arg)
{
	mcache_t *mc = arg;
	uint32_t *rel = NULL;
	size_t n = 0, cap = 0;

	mcache_tls = &mcache_empty;
	proc_lock();
	if (mc->reg.epoch == atomic_load(&proc_g.epoch)) {
		collect_spans_locked(mc, 0, &rel, &n, &cap);
		release_locked(rel, n);
	}
	drop_spans_locked(mc);
	proc_unregister_locked(&mc->reg);
	proc_unlock();
	free(rel);
	free(mc);
}

static mcache_t *cache_of(proc_cache_t *c)
{
	return (mcache_t *)((char *)c - offsetof(mcache_t, reg));
}

/* The process state's hooks (proc.h): list a cache's spans, drop them. */
static int hook_list_spans(proc_cache_t *c, uint32_t **spans, size_t *n, size_t *cap)
{
	mcache_t *mc = cache_of(c);
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		for (mc_span_t *s = mc->lists[k].spans; s; s = s->next)
			if (rel_push(spans, n, cap, s->span) < 0)
				return -ENOMEM;
	return 0;
}

static void hook_drop(proc_cache_t *c)
{
	drop_spans_locked(cache_of(c));
}

static const proc_cache_hooks_t hooks = {
	.list_spans = hook_list_spans,
	.drop = hook_drop,
};

/* In the child after fork: forget every cache without handing anything back. */
static void fork_child(void)
{
	mcache_t *self = mcache_tls;

	for (proc_cache_t *c = proc_g.registry, *next; c; c = next) {
		next = c->next;
		mcache_t *mc = cache_of(c);
		drop_spans_locked(mc);
		proc_unregister_locked(c);
		if (mc != self)
			free(mc); /* its thread does not exist in the child */
	}
	if (self != &mcache_empty)
		/*
		 * With the parent's epoch, which the child bumps after the hooks:
		 * the thread's next refill finds it stale and takes the new one.
		 */
		proc_register_locked(&self->reg);
}

#if defined(__x86_64__) && !defined(__POPCNT__)
/*
 * Whether the CPU has POPCNT. The C library has read the CPU's features
 * already; __builtin_cpu_init would run CPUID some thirty times over, and
 * under a hypervisor each one is an exit to it, a cost a short-lived
 * program's first allocation would pay (tens of microseconds).
 */
static int cpu_has_popcnt(void)
{
#if __has_include(<sys/platform/x86.h>)
	return CPU_FEATURE_ACTIVE(POPCNT);
#else
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_POPCNT);
#endif
}
#endif

static void key_init(void)
{
#if defined(__x86_64__) && !defined(__POPCNT__)
	have_popcnt = cpu_has_popcnt();
#endif
	pthread_key_create(&mcache_key, mcache_thread_exit);
	proc_set_cache_hooks(&hooks);
	proc_at_fork_child(fork_child);
}

/* The calling thread's own cache, registered. NULL if out of memory. */
static mcache_t *mcache_create(void)
{
	mcache_t *mc;

	proc_init();
	pthread_once(&key_once, key_init);
	mc = aligned_alloc(64, (sizeof(*mc) + 63) & ~(size_t)63);
	if (!mc)
		return NULL;
	memset(mc, 0, sizeof(*mc));
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++)
		reset_class(mc, c);
	proc_lock();
	proc_register_locked(&mc->reg);
	proc_unlock();
	pthread_setspecific(mcache_key, mc);
	mcache_tls = mc;
	return mc;
}

/*
 * The free slots of word w of s, after folding the word's free bits into its
 * alloc bits (bitmap_fold_word): the owner's sweep, one word at a time, so
 * that each word is read once on its way to the window. A pinned slot is
 * never room. One whose alloc bit is clear is an object this thread freed
 * directly (hc_free) while heapd bound it: the pin is seen here, after a
 * fence that follows the clear, and the object becomes what any other
 * free of a pinned object leaves, allocated with its free bit set
 * (roots.h).
 */
/*
 * Heap profiles: word w of s, alloc word a, may hold sampled objects just
 * freed. Once the span has none left, its folds stop looking.
 */
static __attribute__((noinline)) void reap(mc_span_t *s, uint32_t w, uint64_t a)
{
	uint64_t *sampled = prof_sampled_words(&proc_g.seg, s->span);
	prof_reap_word(profile_view(), sampled, w, a, (uint64_t)(s->base - proc_g.seg.base), s->elemsize);
	if (!bitmap_load(&sampled[w]) && !prof_any_sampled(sampled, s->nwords))
		s->sampled = 0;
}

static inline __attribute__((always_inline)) uint64_t word_room(mcache_t *mc, mc_span_t *s, uint32_t w)
{
	uint64_t folded;
	uint64_t a = bitmap_fold_word(s->alloc, s->freeb, &s->pins, w, &folded);

	if (folded)
		mark_reused(mc, s); /* reused slots hold old data */
	if (mc->cleared) {
		mc->cleared = 0;
		atomic_thread_fence(memory_order_seq_cst); /* our direct clears before the pins */
	}
	uint64_t lost = bitmap_pin_word(&s->pins, w) & ~a & bitmap_valid_mask(w, s->nelems);
	if (lost) {
		a |= lost;
		bitmap_store(&s->alloc[w], a);
		atomic_fetch_or_explicit((_Atomic uint64_t *)&s->freeb[w], lost, memory_order_release);
	}
	if (__builtin_expect(s->sampled, 0))
		reap(s, w, a); /* sampled objects freed by the fold or by this thread's direct frees */
	return ~a & bitmap_valid_mask(w, s->nelems);
}

/*
 * Bits set in x: the CPU's instruction where it has one, else arithmetic,
 * never the library call __builtin_popcountll makes on a baseline x86-64.
 */
static inline uint64_t bits_set(uint64_t x)
{
#if defined(__POPCNT__) || !defined(__x86_64__)
	return (uint64_t)__builtin_popcountll(x);
#else
	if (__builtin_expect(have_popcnt, 1)) {
		uint64_t n;
		__asm__("popcnt %1, %0" : "=r"(n) : "r"(x));
		return n;
	}
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (x * 0x0101010101010101ULL) >> 56;
#endif
}

/* The lowest n set bits of x (n < bits_set(x)). */
static uint64_t lowest_bits(uint64_t x, uint64_t n)
{
	uint64_t out = 0;
	for (; n; n--) {
		out |= x & -x;
		x &= x - 1;
	}
	return out;
}

/*
 * Heap profiling: count the new window of class c against its countdown,
 * and when the sampled slot is in it, keep it and the slots after it back
 * in prof_hold. A countdown to redraw is drawn first.
 */
static void clip(mcache_t *mc, uint32_t c)
{
	mc_class_t *cl = &mc->cls[c];
	mc_list_t *l = &mc->lists[c];

	if (l->prof_skip == MC_SKIP_REDRAW)
		l->prof_skip = profile_draw_skip(sizeclass_size[c]);
	if (l->prof_skip == PROFILE_SKIP_OFF)
		return; /* sampling is off */
	uint64_t k = bits_set(cl->cache);
	if (l->prof_skip >= k) {
		l->prof_skip -= k;
		return;
	}
	uint64_t shown = lowest_bits(cl->cache, l->prof_skip);
	l->prof_hold |= cl->cache & ~shown;
	cl->cache = shown;
	l->prof_skip = 0;
	/* the sample's record is written in a few allocations: fetch its fields and first frames */
	const prof_view_t *v = profile_view();
	if (v->recs && l->cur) {
		uint64_t slot = l->cachebase + (uint64_t)__builtin_ctzll(l->prof_hold);
		uint64_t off = (uint64_t)(l->cur->base - proc_g.seg.base) + slot * sizeclass_size[c];
		const prof_rec_t *r = &v->recs[prof_home(off, v->nrecs)];
		__builtin_prefetch(r, 1);
		__builtin_prefetch(r->frames, 1);
	}
}

/*
 * Point class c's hot window at the first word of s, from word w on, that
 * has a free slot, sweeping the words on the way. 1 if there was one.
 */
static int window_from(mcache_t *mc, uint32_t c, mc_span_t *s, uint32_t w)
{
	mc_class_t *cl = &mc->cls[c];

	for (; w < s->nwords; w++) {
		uint64_t free_slots = word_room(mc, s, w);
		if (!free_slots)
			continue;
		cl->cache = free_slots;
		cl->wordbase = s->base + (size_t)w * 64 * sizeclass_size[c];
		cl->allocword = &s->alloc[w];
		cl->elemsize = sizeclass_size[c];
		cl->needzero = s->needzero;
		mc->lists[c].cur = s;
		mc->lists[c].cachebase = w * 64;
		mc_list_t *l = &mc->lists[c];
		uint64_t skip = l->prof_skip;
		if (__builtin_expect(skip != PROFILE_SKIP_OFF, 0)) {
			/* sampling is on: count the window, or clip it if the sample is in it */
			uint64_t k = bits_set(free_slots);
			if (__builtin_expect(skip >= k && skip < MC_SKIP_REDRAW, 1))
				l->prof_skip = skip - k;
			else
				clip(mc, c);
		}
		return 1;
	}
	return 0;
}

/*
 * Find room in class c without asking the daemon: the rest of the current
 * span, then every span of the class once, swept, starting after the
 * current one so that each pass is fair and costs one visit per span. 1 if
 * the hot window now has a free slot.
 */
static int find_local(mcache_t *mc, uint32_t c)
{
	mc_list_t *l = &mc->lists[c];
	mc_span_t *s = l->cur;

	if (s) {
		if (window_from(mc, c, s, l->cachebase / 64 + 1))
			return 1;
		mark_reused(mc, s); /* every slot has been handed out once */
	}
	s = s ? s->next : l->spans;
	for (uint32_t n = 0; n < l->nspans; n++, s = s->next) {
		if (!s)
			s = l->spans;
		/* the records are scattered: fetch the next while this one's bitmap line comes */
		__builtin_prefetch(s->next);
		if (window_from(mc, c, s, 0))
			return 1;
		mark_reused(mc, s);
	}
	l->cur = NULL;
	return 0;
}

/*
 * 1 if s holds no object. Folds the free bits of each word on the way
 * (word_room) and stops at the first word still in use.
 */
static int span_empty(mcache_t *mc, mc_span_t *s)
{
	for (uint32_t w = 0; w < s->nwords; w++) {
		word_room(mc, s, w);
		if (bitmap_load(&s->alloc[w]))
			return 0;
	}
	return 1;
}

/*
 * The hand-back pass (policy at the top): visit up to MC_PASS_SPANS spans
 * of mc from where the last pass stopped, and move the empty ones beyond
 * each class's reserve from the lists to *rel. Every class at most once per
 * pass, and never class skip (0: none). On -ENOMEM it stops with what it
 * has.
 */
static void handback_empty_locked(mcache_t *mc, uint32_t skip, uint32_t **rel, size_t *n,
                                  size_t *cap)
{
	uint32_t budget = MC_PASS_SPANS;

	assert(proc_held());
	if (mc->pass_class == 0 || mc->pass_class >= SIZECLASS_COUNT) {
		mc->pass_class = 1;
		pass_restart(mc);
	}
	for (uint32_t k = 1; k < SIZECLASS_COUNT && budget > 0; k++) {
		uint32_t c = mc->pass_class;
		mc_list_t *l = &mc->lists[c];
		mc_span_t **pp = mc->pass_prev ? &mc->pass_prev->next : &l->spans;

		if (c == skip) {
			mc->pass_class = c + 1 < SIZECLASS_COUNT ? c + 1 : 1;
			pass_restart(mc);
			continue;
		}

		/* a class without a current span has an empty window: none points into what goes */
		assert(l->cur || mc->cls[c].cache == 0);
		while (*pp && budget > 0) {
			mc_span_t *s = *pp;
			int keep = s == l->cur || !span_empty(mc, s);
			budget--;
			if (!keep && mc->pass_kept < batch_max(c)) {
				mc->pass_kept++; /* the class's reserve */
				keep = 1;
			}
			if (keep) {
				mc->pass_prev = s;
				pp = &s->next;
				continue;
			}
			if (rel_push(rel, n, cap, s->span) < 0)
				return;
			*pp = s->next;
			l->nspans--;
			mc->nspans--;
			own_del(mc, s->span);
			free(s);
		}
		if (*pp)
			return; /* out of budget inside c: the next pass resumes here */
		mc->pass_class = c + 1 < SIZECLASS_COUNT ? c + 1 : 1;
		pass_restart(mc);
	}
}

void mcache_handback_empty_locked(uint32_t **rel, size_t *n, size_t *cap)
{
	mcache_t *mc = mcache_tls;

	assert(proc_held());
	/* stale spans are dropped by the thread's next small allocation */
	if (mc == &mcache_empty || mc->reg.epoch != atomic_load(&proc_g.epoch))
		return;
	handback_empty_locked(mc, 0, rel, n, cap);
}

/* A granted span as a cache record; NULL if the grant is not a span of class c. */
static mc_span_t *span_record(uint32_t c, const Heapd__SpanGrant *g)
{
	const segment_t *seg = &proc_g.seg;
	const shm_span_t *d;
	mc_span_t *s;

	if (g->span >= seg->npages_max)
		return NULL;
	d = &seg->spans[g->span];
	if (d->state != SPAN_SMALL || d->sizeclass != c || d->start != g->span ||
	    d->owner != proc_g.slot + 1)
		return NULL;
	s = malloc(sizeof(*s));
	if (!s)
		return NULL;
	s->span = g->span;
	s->nelems = (uint16_t)sizeclass_nelems[c];
	s->nwords = (uint8_t)bitmap_words(s->nelems);
	s->needzero = g->needzero;
	s->base = segment_page_addr(seg, g->span);
	s->alloc = segment_allocbits(seg, g->span);
	s->freeb = segment_freebits(seg, g->span, s->nelems);
	s->elemsize = sizeclass_size[c];
	/* live sampled objects of earlier owners: their frees are reaped here from now on */
	s->sampled = prof_sampleable(s->nelems) && profile_view()->recs &&
	             prof_any_sampled(prof_sampled_words(seg, g->span), s->nwords);
	s->pins = roots_pins_of(seg, g->span);
	s->next = NULL;
	return s;
}

void heapclient_debug_extra_refills(uint32_t n)
{
	extra_refills_max = n;
}

size_t heapclient_debug_refill_ns(uint64_t *ns, size_t max)
{
	size_t n;

	proc_lock();
	n = refill_count < MC_REFILL_RING ? (size_t)refill_count : MC_REFILL_RING;
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++)
		ns[i] = refill_ns[(refill_count - n + i) % MC_REFILL_RING];
	proc_unlock();
	return n;
}

/*
 * The neighbouring classes a refill of class c asks a span of too
 * (MC_EXTRA_REFILLS): into also[], nearest first; how many.
 */
static size_t extra_classes(const mcache_t *mc, uint32_t c, uint32_t *also)
{
	size_t n = 0;

	if (mc->extra_refills >= extra_refills_max || mc->lists[c].nspans > 0)
		return 0;
	for (uint32_t d = 1; d <= MC_EXTRA_REACH && n < MC_EXTRA_CLASSES; d++) {
		uint32_t near[2] = { c + d, c - d }; /* c - d wraps past 0 to a huge value */
		for (int i = 0; i < 2 && n < MC_EXTRA_CLASSES; i++) {
			uint32_t k = near[i];
			if (k >= 1 && k < SIZECLASS_COUNT && sizeclass_npages[k] == 1 &&
			    mc->lists[k].nspans == 0)
				also[n++] = k;
		}
	}
	return n;
}

/* A granted span's class, if it is c or one of also[0..nalso); else 0. */
static uint32_t grant_class(uint32_t c, const uint32_t *also, size_t nalso, uint32_t span)
{
	const segment_t *seg = &proc_g.seg;

	if (span >= seg->npages_max)
		return 0;
	uint32_t k = seg->spans[span].sizeclass;
	if (k == c)
		return c;
	for (size_t i = 0; i < nalso; i++)
		if (also[i] == k)
			return k;
	return 0;
}

/*
 * Every span of class c is full: ask the daemon for more in one Refill,
 * handing back what is over budget, and under pressure every other class's
 * spare spans too. 0 with the hot window on a new span, or -errno.
 */
static int refill_locked(mcache_t *mc, uint32_t c, int pressure)
{
	Heapd__Envelope *reply = NULL;
	mc_list_t *l = &mc->lists[c];
	uint32_t *rel = NULL, count, also[MC_EXTRA_CLASSES];
	size_t nrel = 0, cap = 0, nalso = 0;
	request_t r;
	int rc;

	assert(proc_held());
	if (mc->reg.epoch != atomic_load(&proc_g.epoch)) {
		drop_spans_locked(mc);
		mc->reg.epoch = atomic_load(&proc_g.epoch);
	}
	if (pressure) {
		count = 1;
		l->batch = 1;
		l->retain = 1;
		l->cur = NULL;
		rc = collect_spans_locked(mc, 1, &rel, &nrel, &cap);
		if (rc < 0)
			goto out;
	} else {
		count = l->batch;
		/*
		 * The pass is for the other classes: c is short of room, and its
		 * spans that another process empties meanwhile (a consumer freeing
		 * this thread's objects) are about to be reused, not handed back.
		 */
		handback_empty_locked(mc, c, &rel, &nrel, &cap);
		/* Full spans in flight elsewhere: keep more of them before handing any back. */
		while (l->nspans + count > l->retain && l->retain < MC_RETAIN_MAX)
			l->retain = l->retain * 2 < MC_RETAIN_MAX ? l->retain * 2 : MC_RETAIN_MAX;
	}
	if (l->nspans + count > l->retain) {
		/* hand back the oldest: the list grows at its head */
		size_t keep = l->retain > count ? l->retain - count : 0, i = 0;
		mc_span_t **pp = &l->spans;
		while (*pp && i < keep) {
			pp = &(*pp)->next;
			i++;
		}
		while (*pp) {
			mc_span_t *s = *pp;
			if (rel_push(&rel, &nrel, &cap, s->span) < 0)
				break; /* keep the rest this time */
			*pp = s->next;
			l->nspans--;
			mc->nspans--;
			own_del(mc, s->span);
			free(s);
		}
		l->cur = NULL;
		pass_restart(mc);
	}

	request_refill(&r, c, count, rel, nrel);
	if (!pressure && (nalso = extra_classes(mc, c, also)) > 0) {
		request_refill_also(&r, also, nalso);
		mc->extra_refills++;
	}
	uint64_t t0 = heapd_now_ns();
	rc = transport_call_locked(&r, &reply, 0);
	refill_ns[refill_count++ % MC_REFILL_RING] = heapd_now_ns() - t0;
	if (mc->reg.epoch != atomic_load(&proc_g.epoch)) {
		/* We reconnected under a new slot: the grants are the new slot's, the rest is not ours. */
		drop_spans_locked(mc);
		mc->reg.epoch = atomic_load(&proc_g.epoch);
	}
	if (rc < 0)
		goto out;

	rc = -EPROTO;
	for (size_t i = 0; i < reply->refill_reply->n_spans; i++) {
		const Heapd__SpanGrant *g = reply->refill_reply->spans[i];
		uint32_t k = grant_class(c, also, nalso, g->span);
		mc_span_t *s = k ? span_record(k, g) : NULL;
		if (!s)
			continue;
		mc_list_t *kl = &mc->lists[k];
		s->next = kl->spans;
		kl->spans = s;
		kl->nspans++;
		mc->nspans++;
		if (s->needzero)
			own_add(mc, s->span); /* old pages: direct frees change nothing it says */
		if (k == c && rc < 0 && window_from(mc, c, s, 0))
			rc = 0;
	}
	if (rc < 0 && find_local(mc, c))
		rc = 0;
	if (!pressure && l->batch < batch_max(c))
		l->batch = l->batch * 2 < batch_max(c) ? l->batch * 2 : batch_max(c);
out:
	wire_free(reply);
	free(rel);
	return rc;
}

/* Take the slot the hot window of class c is known to have. */
static void *take(mcache_t *mc, uint32_t c, int *needzero)
{
	mc_class_t *cl = &mc->cls[c];
	uint64_t cache = cl->cache;
	uint32_t bit = (uint32_t)__builtin_ctzll(cache);

	assert(cache != 0);
	cl->cache = cache & (cache - 1);
	bitmap_store(cl->allocword, bitmap_load(cl->allocword) | (1ULL << bit));
	if (needzero)
		*needzero = (int)cl->needzero;
	return cl->wordbase + (size_t)bit * cl->elemsize;
}

/* Ask the daemon for spans of class c (refill_locked). 0 or -errno. */
static int refill(mcache_t *mc, uint32_t c, int pressure)
{
	proc_lock();
	int rc = refill_locked(mc, c, pressure);
	proc_unlock();
	return rc;
}

/* Make sure class c has a window with a free slot, shown or held back. 0 or -errno. */
static int ensure_window(mcache_t *mc, uint32_t c, int pressure)
{
	if (mc->cls[c].cache | mc->lists[c].prof_hold)
		return 0;
	if (find_local(mc, c))
		return 0;
	return refill(mc, c, pressure);
}

/* Take class c's next slot even if it is held back, leaving the class's countdown as it is. */
static void *take_held(mcache_t *mc, uint32_t c, int *needzero)
{
	mc_class_t *cl = &mc->cls[c];
	mc_list_t *l = &mc->lists[c];

	if (cl->cache)
		return take(mc, c, needzero);
	cl->cache = l->prof_hold;
	l->prof_hold = 0;
	void *p = take(mc, c, needzero);
	l->prof_hold = cl->cache; /* the countdown is still at 0: the rest stays held */
	cl->cache = 0;
	return p;
}

/* An object of class c, unsampled whatever the countdown says; NULL with errno set. */
static void *take_plain(mcache_t *mc, uint32_t c, int *needzero)
{
	int rc = ensure_window(mc, c, 0);
	if (rc < 0) {
		errno = rc == -EDQUOT ? ENOMEM : -rc;
		return NULL;
	}
	return take_held(mc, c, needzero);
}

/*
 * The window of class c shows no slot because its next one is to be
 * sampled (the slow path's part for heap profiling, out of its way): take
 * that slot, leave its sample for profile_finish, draw the next countdown
 * and clip the rest of the window by it. The 8-byte class has no sampled
 * bits (shm/profrec.h): its sampled allocation is served from the next
 * class.
 */
static __attribute__((noinline)) void *take_sampled(mcache_t *mc, uint32_t c, int *needzero)
{
	mc_class_t *cl = &mc->cls[c];
	mc_list_t *l = &mc->lists[c];
	uint32_t k = c;
	void *p;

	cl->cache = l->prof_hold;
	l->prof_hold = 0;
	l->prof_skip = profile_draw_skip(sizeclass_size[c]);
	if (!prof_sampleable(sizeclass_nelems[c])) {
		k = c + 1;
		if (k >= SIZECLASS_COUNT || ensure_window(mc, k, 0) < 0) {
			/* no room in the next class: this allocation goes unsampled */
			p = take_plain(mc, c, needzero);
			clip(mc, c);
			return p;
		}
	}
	p = take_held(mc, k, needzero);
	mc_span_t *s = mc->lists[k].cur;
	uint32_t idx = sizeclass_div((uint32_t)((uint8_t *)p - s->base), sizeclass_info[k].divmul);
	/* recorded on the way out (profile_finish) */
	profile_defer((uint64_t)(s->base - proc_g.seg.base) + (uint64_t)idx * s->elemsize, s->elemsize,
	              prof_sampled_words(&proc_g.seg, s->span) + (idx >> 6), 1ULL << (idx & 63),
	              &s->sampled);
	clip(mc, c); /* what is left of the window, against the new countdown */
	return p;
}

/*
 * The rate in force has changed (profile_gen): every class draws its
 * countdown again at its next window, and a slot held back for a sample
 * is shown again (the rest of that window goes unsampled).
 */
static __attribute__((noinline)) void profile_resync(mcache_t *mc)
{
	mc->prof_gen = profile_gen();
	for (uint32_t c = 1; c < SIZECLASS_COUNT; c++) {
		mc->cls[c].cache |= mc->lists[c].prof_hold;
		mc->lists[c].prof_hold = 0;
		mc->lists[c].prof_skip = MC_SKIP_REDRAW;
	}
}

void *mcache_alloc_slow(mcache_t *mc, uint32_t c, int *needzero, const void *ra)
{
	int pressure, rc;

	if (mc == &mcache_empty && !(mc = mcache_create())) {
		errno = ENOMEM;
		return NULL;
	}
	if (mc->reg.epoch != proc_epoch()) {
		proc_lock();
		drop_spans_locked(mc);
		mc->reg.epoch = atomic_load(&proc_g.epoch);
		proc_unlock();
	}
	if (__builtin_expect(mc->prof_gen != profile_gen(), 0))
		profile_resync(mc);
	pressure = (proc_slot_flags() & HEAPD_CLIENT_FLUSH) != 0;
	if (pressure) {
		/* Memory pressure: keep only each class's current span. */
		uint32_t *rel = NULL;
		size_t n = 0, cap = 0;
		proc_lock();
		collect_spans_locked(mc, 1, &rel, &n, &cap); /* on -ENOMEM, release what it has */
		release_locked(rel, n);
		proc_unlock();
		free(rel);
	}
	/* the common case first: the window is empty, and no slot is held back for a sample */
	if (__builtin_expect(mc->lists[c].prof_hold == 0, 1)) {
		rc = find_local(mc, c) ? 0 : refill(mc, c, pressure);
		if (rc < 0) {
			errno = rc == -EDQUOT ? ENOMEM : -rc; /* a quota reached is out of memory, as for malloc */
			return NULL;
		}
		if (__builtin_expect(mc->cls[c].cache != 0, 1))
			return take(mc, c, needzero);
	}
	/* heap profiling: the window's next slot is the sampled one */
	void *p = take_sampled(mc, c, needzero);
	if (profile_pending_tls.sampled)
		return profile_finish(p, ra); /* a tail call: see mcache_alloc_slow in mcache.h */
	return p;
}

int mcache_trim(void)
{
	mcache_t *mc = mcache_tls;
	uint32_t *rel = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (mc == &mcache_empty)
		return 0;
	proc_lock();
	if (mc->reg.epoch == atomic_load(&proc_g.epoch)) {
		rc = collect_spans_locked(mc, 0, &rel, &n, &cap);
		release_locked(rel, n);
	}
	drop_spans_locked(mc);
	proc_unlock();
	free(rel);
	return rc;
}

uint64_t mcache_count_locked(void)
{
	uint64_t epoch = atomic_load(&proc_g.epoch), n = 0;

	for (proc_cache_t *c = proc_g.registry; c; c = c->next)
		if (c->epoch == epoch)
			n += cache_of(c)->nspans;
	return n;
}
