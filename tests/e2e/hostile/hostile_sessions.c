// SPDX-License-Identifier: MIT
/*
 * hostile_sessions.c - ownership never moves under a live process's
 * threads (DESIGN.md, "Failure model"), whatever ends its session:
 *   - heapd ends a session (a malformed or oversized frame, a release of a
 *     span the client does not own, a second Hello, replies the client does
 *     not read): the slot is held, another process allocating meanwhile gets
 *     none of its spans, and the process re-adopts the same slot with its
 *     first request, which succeeds (no stale Error answers it);
 *   - a late or bogus LargeFree is ignored: it ends nothing and frees no
 *     other object;
 *   - threads that allocate and free while their session is ended over and
 *     over only ever allocate from spans their slot owns;
 *   - a process whose main thread has exited is alive: it gets a slot, and
 *     across a SIGKILL and restart of heapd it keeps its spans, then its
 *     slot, until the whole process has exited;
 *   - a Hello naming another live process's slot gets a slot of its own,
 *     and the other process's spans stay where they are; a process that got
 *     a dead client's pid (while heapd ran, was down, or had just
 *     recovered the slot) adopts none of the dead client's spans either.
 * Objects are claimed in a map shared by every process (harness/claims.h), so
 * one piece of the arena handed out twice is caught where it happens.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bitmap.h"
#include "harness/book.h"
#include "harness/check_main.h"
#include "harness/child.h"
#include "harness/claims.h"
#include "harness/ctl.h"
#include "harness/heapd.h"
#include "harness/libraw.h"
#include "harness/raw.h"
#include "harness/util.h"
#include "harness/view.h"
#include "heapclient.h"
#include "hostile_suites.h"
#include "wire.h"

/* The seq of frames written behind the library's back: far from any seq the library uses. */
#define HOSTILE_SEQ 0x7eadbeefcafeULL
#define OBJ 64 /* the class the victim and the other process share */

static hclaims_t claims;

static uint64_t env_rounds(uint64_t def, uint64_t long_def)
{
	return hutil_env("HOSTILE_LONG", 0) ? long_def : def;
}

/* ---- ways to make heapd end a session, written on its socket ---- */

static int send_env(int sock, Heapd__Envelope *env)
{
	env->seq = HOSTILE_SEQ;
	return wire_send(sock, env);
}

static int end_malformed(int sock)
{
	static const uint8_t frame[] = { 3, 0, 0, 0, 0xff, 0xff, 0xff };
	return hraw_send(sock, frame, sizeof(frame));
}

static int end_oversized(int sock)
{
	/* a length of 2 MiB, over HEAPD_MAX_FRAME */
	static const uint8_t frame[] = { 0, 0, 0x20, 0, 0x0a, 0x00 };
	return hraw_send(sock, frame, sizeof(frame));
}

static int end_bad_release(int sock)
{
	static const uint32_t bogus = 0xfffffff0u;
	hraw_req_t r;
	return send_env(sock, hraw_req_refill(&r, 1, 0, &bogus, 1));
}

static int end_second_hello(int sock)
{
	hraw_req_t r;
	return send_env(sock, hraw_req_hello(&r, 0, 0, NULL, 0, 0));
}

/* Clients requests, never reading a reply, until heapd drops the connection. */
static int end_output_cap(int sock)
{
	static hraw_flood_t flood;
	int rc = 0;
	hraw_flood_init(&flood, HOSTILE_SEQ);
	if (!hutil_wait_until((rc = hraw_flood(&flood, sock)) < 0, HCHILD_WAIT_MS))
		return -ETIMEDOUT; /* still connected */
	return rc == -EPIPE || rc == -ECONNRESET ? 0 : rc;
}

typedef struct way {
	const char *name;
	int (*end)(int sock);
	const char *log;      /* what heapd's log says about it */
} way_t;

static const way_t ways[] = {
	{ "a malformed frame", end_malformed, "malformed or unknown message" },
	{ "an oversized frame", end_oversized, "over the" },
	{ "a release of a span it does not own", end_bad_release, "released span" },
	{ "a second Hello", end_second_hello, "second Hello" },
	{ "replies it does not read", end_output_cap, "does not read its replies" },
};
#define NWAYS (sizeof(ways) / sizeof(ways[0]))

/* End this process's session the given way, on the library's own connection. */
static void end_session(const way_t *w)
{
	int sock = hlibraw_socket(hd_default.sock);
	if (sock < 0)
		hchild_fail("no connection of the library to heapd found");
	int rc = w->end(sock);
	if (rc < 0)
		hchild_fail("writing %s: %s", w->name, strerror(-rc));
}

/* Every object in book b is in a span slot owns. */
static void owns_all(const hview_t *a, const hbook_t *b, uint32_t slot, const char *when)
{
	for (uint32_t k = 0; k < b->nlive; k++) {
		uint64_t off = atomic_load(&b->recs[b->live[k]].off);
		uint32_t s = hview_span_of(a, hc_off_to_ptr(off));
		if (s == HEAPD_NIL || a->spans[s].owner != slot + 1)
			hchild_fail("%s: the object at offset %llu is in span %u, owned by slot %d, "
			            "not by ours (%u)", when, (unsigned long long)off, s,
			            s == HEAPD_NIL ? -2 : (int)a->spans[s].owner - 1, slot);
	}
}

static void book_alloc(hbook_t *b, int n, size_t size, const char *when)
{
	char err[300];
	for (int i = 0; i < n; i++)
		if (!hbook_alloc(b, size, err, sizeof(err)))
			hchild_fail("%s: %s", when, err);
}

static void book_check(hbook_rec_t *recs, uint32_t cap, const char *who)
{
	char err[300];
	if (hbook_recs_check(recs, cap, &claims, 0, err, sizeof(err)) < 0)
		hchild_fail("%s: %s", who, err);
}

static int64_t wait_or_fail(int step, int64_t want, int timeout_ms, const char *what)
{
	if (!hchild_wait_at_least(&hchild_sync->step[step], want, timeout_ms))
		hchild_fail("waited in vain for %s", what);
	return want;
}

/* Until the daemon lists pid's slot with connected == want (bounded). The slot, or -1. */
static int wait_slot_state(pid_t pid, int want, int timeout_ms)
{
	int connected = -1, slot = -1;
	if (hutil_wait_until((slot = hctl_slot_of(hd_default.sock, pid, &connected)) >= 0 &&
	                     connected == want, timeout_ms))
		return slot;
	return -1;
}

/* ---- sessions heapd ends ---- */

enum {
	ES_A1 = 400,      /* the victim's objects before its session ends (some 7 spans' worth) */
	ES_CACHED = 300,  /* after it, from the spans it caches (no request) */
	ES_A2 = 600,      /* and after its first request */
	ES_B = 3000,      /* the other process's */
	ES_CAP = 4096,
};

enum { ES_ENDED = 0, ES_B_DONE, ES_A_DONE };

typedef struct es_books {
	hbook_rec_t a[ES_CAP];
	hbook_rec_t b[ES_CAP];
} es_books_t;

static es_books_t *ES;

/* The process whose session heapd ends while it holds cached spans. */
static int es_victim(void *arg)
{
	const way_t *w = arg;
	hview_t a;
	hbook_t b;
	hc_stats_t st0, st1;

	if (hview_map(&a) < 0)
		hchild_fail("no arena: %s", strerror(errno));
	hbook_init(&b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(&b, ES_A1, OBJ, "before the session ended");
	hc_stats(&st0);
	owns_all(&a, &b, st0.slot, "before the session ended");
	end_session(w);
	atomic_store(&hchild_sync->step[ES_ENDED], 1);
	wait_or_fail(ES_B_DONE, 1, HCHILD_WAIT_MS, "the other process");

	/* From the cached spans: none of it may be the other process's. */
	book_alloc(&b, ES_CACHED, OBJ, "from the cached spans after the session ended");
	/* The first request after heapd closed the connection reconnects and succeeds,
	 * keeping the process's slot. */
	errno = 0;
	void *big = hc_malloc(100000);
	if (!big)
		hchild_fail("the first request after %s: hc_malloc(100000) failed: %s", w->name,
		            strerror(errno));
	hc_stats(&st1);
	if (st1.slot != st0.slot)
		hchild_fail("after %s the process has slot %u, not its own %u", w->name, st1.slot, st0.slot);
	if (st1.reconnects < st0.reconnects + 1)
		hchild_fail("after %s: %llu reconnects", w->name, (unsigned long long)st1.reconnects);
	book_alloc(&b, ES_A2, OBJ, "after the reconnect");
	book_check(ES->a, ES_CAP, "the victim");
	owns_all(&a, &b, st0.slot, "after the session ended");
	hc_free(big);
	atomic_store(&hchild_sync->step[ES_A_DONE], 1);
	return 0;
}

/* Another process allocating the same class while the victim has no session. */
static int es_other(void *arg)
{
	hbook_t b;
	(void)arg;
	hbook_init(&b, ES->b, ES_CAP, &claims, 2ULL << 40);
	book_alloc(&b, ES_B, OBJ, "the other process");
	atomic_store(&hchild_sync->step[ES_B_DONE], 1);
	wait_or_fail(ES_A_DONE, 1, HCHILD_WAIT_MS, "the victim");
	book_check(ES->b, ES_CAP, "the other process");
	return 0;
}

START_TEST(test_ended_session_keeps_spans)
{
	char what[128];

	hchild_sync_init();
	hd_default_start("64M", NULL);
	hclaims_init(&claims, hd_default.arena);
	ES = hutil_shared(sizeof(*ES));
	for (size_t k = 0; k < NWAYS * env_rounds(1, 20); k++) {
		memset(ES, 0, sizeof(*ES));
		memset((void *)hchild_sync->step, 0, sizeof(hchild_sync->step));
		const way_t *w = &ways[k % NWAYS];
		pid_t a = hchild_spawn(es_victim, (void *)w);
		hchild_expect_step(&hchild_sync->step[ES_ENDED], 1, HCHILD_WAIT_MS, a, w->name);
		/* heapd has ended the session: the slot is held for the process, unconnected */
		int slot = wait_slot_state(a, 0, 5000);
		ck_assert_msg(slot >= 0, "after %s the slot of pid %d is not listed as held", w->name,
		              (int)a);
		ck_assert_msg(hd_log_contains(&hd_default, w->log), "log lacks \"%s\"", w->log);
		pid_t b = hchild_spawn(es_other, NULL);
		snprintf(what, sizeof(what), "the process whose session heapd ended after %s", w->name);
		hchild_expect_ok(a, what);
		hchild_expect_ok(b, "the other process");
	}
	ck_assert(hd_alive(&hd_default));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- the first request after a close (no waiting for heapd at all) ---- */

/*
 * Round r: end the session in way w; the next request (a large object)
 * reconnects at once and the process keeps its slot (st0's).
 */
static void end_and_request(const way_t *w, uint64_t r, const hc_stats_t *st0)
{
	hc_stats_t st;

	end_session(w);
	errno = 0;
	void *big = hc_malloc(100000);
	if (!big)
		hchild_fail("round %llu: the first request after %s: hc_malloc(100000): %s",
		            (unsigned long long)r, w->name, strerror(errno));
	hc_free(big);
	hc_stats(&st);
	if (st.slot != st0->slot)
		hchild_fail("round %llu: slot %u after %s, not %u", (unsigned long long)r, st.slot,
		            w->name, st0->slot);
}


static int first_request(void *arg)
{
	uint64_t rounds = (uint64_t)(uintptr_t)arg;
	hc_stats_t st0, st;

	void *p = hc_malloc(OBJ);
	if (!p)
		hchild_fail("hc_malloc: %s", strerror(errno));
	hc_stats(&st0);
	for (uint64_t r = 0; r < rounds; r++)
		end_and_request(&ways[r % NWAYS], r, &st0);
	hc_stats(&st);
	if (st.reconnects < st0.reconnects + rounds)
		hchild_fail("%llu reconnects for %llu ended sessions",
		            (unsigned long long)st.reconnects, (unsigned long long)rounds);
	hc_free(p);
	return 0;
}

START_TEST(test_first_request_after_close)
{
	hchild_sync_init();
	hd_default_start("64M", NULL);
	uint64_t rounds = env_rounds(3 * NWAYS, 60 * NWAYS);
	hchild_expect_ok(hchild_spawn(first_request, (void *)(uintptr_t)rounds),
	                 "a process whose session heapd ends again and again");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- late and bogus LargeFree ---- */

enum { LF_FREED = 0, LF_B_DONE, LF_A_DONE };
enum { LF_SPAN = 0, LF_GEN, LF_B_SPAN, LF_B_GEN };

static int send_large_free(int sock, uint32_t span, uint32_t gen)
{
	hraw_req_t r;
	return send_env(sock, hraw_req_large_free(&r, span, gen));
}

static int lf_victim(void *arg)
{
	hview_t a;
	hbook_t b;
	hc_stats_t st0, st1;
	(void)arg;

	if (hview_map(&a) < 0)
		hchild_fail("no arena");
	hbook_init(&b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(&b, ES_A1, OBJ, "before");
	hc_stats(&st0);
	char *big = hc_malloc(100000);
	if (!big)
		hchild_fail("hc_malloc(100000): %s", strerror(errno));
	uint32_t span = hview_span_of(&a, big), gen = a.spans[span].gen;
	if (span == HEAPD_NIL || a.spans[span].state != SPAN_LARGE)
		hchild_fail("the large object is not in a large span");
	/* A request of a new class: heapd learns that the large object's reply arrived. */
	if (!hc_malloc(3000))
		hchild_fail("hc_malloc(3000): %s", strerror(errno));
	/*
	 * hc_free's first step alone: the free bit. Its LargeFree comes late,
	 * after the sweeper has freed the object (the thread was descheduled).
	 */
	atomic_fetch_or((_Atomic uint64_t *)&a.bits[(uint64_t)span * HEAPD_BITS_WORDS_PER_PAGE +
	                                             heapd_freebits_delta(1)], 1);
	if (!hutil_wait_until(a.spans[span].state != SPAN_LARGE || a.spans[span].gen != gen,
	                      3 * HCHILD_WAIT_MS / 2))
		hchild_fail("the sweeper did not free large span %u, whose free bit is set", span);
	atomic_store(&hchild_sync->val[LF_SPAN], span);
	atomic_store(&hchild_sync->val[LF_GEN], gen);
	atomic_store(&hchild_sync->step[LF_FREED], 1);
	wait_or_fail(LF_B_DONE, 1, HCHILD_WAIT_MS, "the other process");

	uint32_t bspan = (uint32_t)atomic_load(&hchild_sync->val[LF_B_SPAN]);
	uint32_t bgen = (uint32_t)atomic_load(&hchild_sync->val[LF_B_GEN]);
	uint32_t small = hview_span_of(&a, hc_off_to_ptr(atomic_load(&ES->a[0].off)));
	int sock = hlibraw_socket(hd_default.sock);
	if (sock < 0)
		hchild_fail("no connection to heapd");
	const uint32_t bogus[][2] = {
		{ span, gen },            /* late: the sweeper freed it */
		{ bspan, bgen },          /* another process's live object, its free bit clear */
		{ bspan, bgen + 1 },      /* a generation that never was */
		{ 0xfffffff0u, 0 },       /* no span at all */
		{ small, a.spans[small].gen }, /* a small span of our own */
	};
	for (size_t i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++)
		if (send_large_free(sock, bogus[i][0], bogus[i][1]) < 0)
			hchild_fail("sending LargeFree: %s", strerror(errno));
	/* a request on the same connection: heapd has read the LargeFrees when it answers */
	errno = 0;
	void *big2 = hc_malloc(100000);
	if (!big2)
		hchild_fail("hc_malloc(100000) after stale LargeFrees: %s", strerror(errno));
	hc_stats(&st1);
	if (st1.reconnects != st0.reconnects || !st1.connected || st1.slot != st0.slot)
		hchild_fail("stale LargeFrees ended the session (reconnects %llu -> %llu, slot %u -> %u)",
		            (unsigned long long)st0.reconnects, (unsigned long long)st1.reconnects, st0.slot,
		            st1.slot);
	book_alloc(&b, ES_A2, OBJ, "after the stale LargeFrees");
	book_check(ES->a, ES_CAP, "the victim");
	owns_all(&a, &b, st0.slot, "after the stale LargeFrees");
	atomic_store(&hchild_sync->step[LF_A_DONE], 1);
	return 0;
}

static int lf_other(void *arg)
{
	hview_t a;
	hbook_t b;
	(void)arg;

	if (hview_map(&a) < 0)
		hchild_fail("no arena");
	char *big = hc_malloc(100000);
	if (!big)
		hchild_fail("hc_malloc(100000): %s", strerror(errno));
	hutil_fill(big, 100000, 99);
	uint32_t span = hview_span_of(&a, big), gen = a.spans[span].gen;
	atomic_store(&hchild_sync->val[LF_B_SPAN], span);
	atomic_store(&hchild_sync->val[LF_B_GEN], gen);
	hbook_init(&b, ES->b, ES_CAP, &claims, 2ULL << 40);
	book_alloc(&b, ES_B, OBJ, "the other process");
	atomic_store(&hchild_sync->step[LF_B_DONE], 1);
	wait_or_fail(LF_A_DONE, 1, 2 * HCHILD_WAIT_MS, "the victim");
	if (a.spans[span].state != SPAN_LARGE || a.spans[span].gen != gen)
		hchild_fail("a LargeFree of another process freed our large object (span %u)", span);
	if (!hutil_verify(big, 100000, 99))
		hchild_fail("our large object lost its pattern");
	book_check(ES->b, ES_CAP, "the other process");
	hc_free(big);
	return 0;
}

START_TEST(test_stale_large_free_ignored)
{
	hchild_sync_init();
	hd_default_start("64M", NULL);
	hclaims_init(&claims, hd_default.arena);
	ES = hutil_shared(sizeof(*ES));
	pid_t a = hchild_spawn(lf_victim, NULL);
	hchild_expect_step(&hchild_sync->step[LF_FREED], 1, 2 * HCHILD_WAIT_MS, a, "the victim");
	pid_t b = hchild_spawn(lf_other, NULL);
	hchild_expect_ok(a, "the process that sent stale LargeFrees");
	hchild_expect_ok(b, "the other process");
	ck_assert(hd_log_contains(&hd_default, "ignored"));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- threads allocating and freeing while their session ends again and again ---- */

enum { CH_STOP = 0 };
enum { CH_SLOT = 0, CH_PROGRESS = 1 };
#define CH_WORKERS 2
#define CH_BATCH 64

static hview_t ch_arena;

/* Allocate, claim, check the owner, fill; then verify, unclaim, free; until told to stop. */
static void churn(int id, int check_owner)
{
	void *objs[CH_BATCH];
	size_t size = id % 2 ? 48 : 16;
	uint64_t seed = ((uint64_t)getpid() << 20) + (uint64_t)id * 1000003;

	while (atomic_load(&hchild_sync->step[CH_STOP]) == 0) {
		uint32_t slot = (uint32_t)atomic_load(&hchild_sync->val[CH_SLOT]);
		for (int i = 0; i < CH_BATCH; i++) {
			objs[i] = hc_malloc(size);
			if (!objs[i])
				hchild_fail("worker %d: hc_malloc(%zu): %s", id, size, strerror(errno));
			uint64_t off = hc_ptr_to_off(objs[i]);
			if (check_owner) {
				uint32_t s = hview_span_of(&ch_arena, objs[i]);
				uint32_t owner = s == HEAPD_NIL ? 0 : ch_arena.spans[s].owner;
				if (owner != slot + 1)
					hchild_fail("worker %d: a new object is in span %u, owned by slot %d, "
					            "not ours (%u)", id, s, (int)owner - 1, slot);
			}
			if (hclaims_claim(&claims, off, size) != 0)
				hchild_fail("worker %d: the new object at offset %llu overlaps a live object", id,
				            (unsigned long long)off);
			hutil_fill(objs[i], size, seed + (uint64_t)i);
		}
		for (int i = 0; i < CH_BATCH; i++) {
			if (!hutil_verify(objs[i], size, seed + (uint64_t)i))
				hchild_fail("worker %d: the object at offset %llu lost its pattern",
				            id,
				            (unsigned long long)hc_ptr_to_off(objs[i]));
			hclaims_unclaim(&claims, hc_ptr_to_off(objs[i]), size);
			hc_free(objs[i]);
		}
		seed += CH_BATCH;
		atomic_fetch_add(&hchild_sync->val[CH_PROGRESS + id], 1);
	}
}

static void *ch_worker(void *arg)
{
	churn((int)(intptr_t)arg, 1);
	return NULL;
}

static int ch_victim(void *arg)
{
	uint64_t rounds = (uint64_t)(uintptr_t)arg;
	pthread_t t[CH_WORKERS];
	hc_stats_t st0, st;

	if (hview_map(&ch_arena) < 0)
		hchild_fail("no arena");
	hc_stats(&st0);
	atomic_store(&hchild_sync->val[CH_SLOT], st0.slot);
	for (intptr_t i = 0; i < CH_WORKERS; i++)
		pthread_create(&t[i], NULL, ch_worker, (void *)i);
	for (uint64_t r = 0; r < rounds; r++) {
		/* the workers go on between rounds, through the window after each close */
		for (int i = 0; i < CH_WORKERS; i++)
			if (!hchild_wait_at_least(&hchild_sync->val[CH_PROGRESS + i],
			                          (int64_t)(r + 1) * 4, HCHILD_WAIT_MS))
				hchild_fail("worker %d makes no progress", i);
		end_and_request(&ways[r % (NWAYS - 1)], r, &st0);
	}
	atomic_store(&hchild_sync->step[CH_STOP], 1);
	for (int i = 0; i < CH_WORKERS; i++)
		pthread_join(t[i], NULL);
	hc_stats(&st);
	if (st.reconnects < st0.reconnects + rounds)
		hchild_fail("%llu reconnects in %llu rounds", (unsigned long long)st.reconnects,
		            (unsigned long long)rounds);
	return 0;
}

static int ch_other(void *arg)
{
	(void)arg;
	churn(2 + (int)(getpid() % 2), 0);
	return 0;
}

START_TEST(test_session_end_churn)
{
	hchild_sync_init();
	hd_default_start("64M", NULL);
	hclaims_init(&claims, hd_default.arena);
	uint64_t rounds = env_rounds(12, 3000);
	pid_t b = hchild_spawn(ch_other, NULL);
	pid_t a = hchild_spawn(ch_victim, (void *)(uintptr_t)rounds);
	hchild_expect_ok(a, "the process whose sessions heapd ends under its working threads");
	hchild_expect_ok(b, "the other process");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- a zombie leader across restarts of heapd ---- */

enum { ZL_READY = 0, ZL_GO, ZL_DONE, ZL_EXIT, ZL_B_DONE };
enum { ZL_SLOT = 0, ZL_ROUNDS = 1 };
#define ZL_PER_ROUND 300 /* objects the process allocates after each restart */

static void *zl_worker(void *arg)
{
	int64_t rounds = atomic_load(&hchild_sync->val[ZL_ROUNDS]);
	hview_t a;
	hbook_t b;
	hc_stats_t st;
	(void)arg;

	/* The main thread has exited: /proc shows the process's leader as a zombie. */
	if (!hutil_wait_until(hchild_state(getpid()) == 'Z', HCHILD_WAIT_MS))
		hchild_fail("the main thread did not exit");
	/* The first Hello of this process comes from here. */
	if (hview_map(&a) < 0)
		hchild_fail("the first allocation of a process whose main thread has exited: %s",
		            strerror(errno));
	hbook_init(&b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(&b, ES_A1, OBJ, "with a zombie leader");
	hc_stats(&st);
	uint32_t slot = st.slot;
	atomic_store(&hchild_sync->val[ZL_SLOT], slot);
	atomic_store(&hchild_sync->step[ZL_READY], 1);

	for (int64_t r = 1; r <= rounds; r++) {
		/* heapd is killed and restarted meanwhile, and another process allocates */
		wait_or_fail(ZL_GO, r, 3 * HCHILD_WAIT_MS, "the restart");
		book_alloc(&b, ZL_PER_ROUND, OBJ, "after a restart");
		book_check(ES->a, ES_CAP, "the zombie-led process");
		hc_stats(&st);
		if (st.slot != slot)
			hchild_fail("after restart %lld the process has slot %u, not its own %u",
			            (long long)r, st.slot, slot);
		owns_all(&a, &b, slot, "after a restart");
		atomic_store(&hchild_sync->step[ZL_DONE], r);
	}
	wait_or_fail(ZL_EXIT, 1, HCHILD_WAIT_MS, "the word to exit");
	static atomic_uint left = 1;
	hchild_thread_done(&left); /* the last thread: the process exits, with no Bye */
	return NULL;
}

static int zl_process(void *arg)
{
	pthread_t t;
	(void)arg;
	if (pthread_create(&t, NULL, zl_worker, NULL) != 0)
		return 2;
	pthread_exit(NULL);
}

static int zl_other(void *arg)
{
	int64_t round = (int64_t)(intptr_t)arg;
	hbook_t b;
	hbook_init(&b, ES->b, ES_CAP, &claims, (2ULL + (uint64_t)round) << 40);
	book_alloc(&b, ES_B, OBJ, "the other process after a restart");
	atomic_store(&hchild_sync->step[ZL_B_DONE], round);
	wait_or_fail(ZL_DONE, round, 2 * HCHILD_WAIT_MS, "the zombie-led process");
	book_check(ES->b, ES_CAP, "the other process");
	return 0;
}

START_TEST(test_zombie_leader)
{
	int64_t rounds = (int64_t)env_rounds(1, 10);
	int connected;

	hchild_sync_init();
	hd_default_start("64M", NULL);
	hclaims_init(&claims, hd_default.arena);
	ES = hutil_shared(sizeof(*ES));
	ck_assert_int_le(ES_A1 + rounds * ZL_PER_ROUND, ES_CAP);
	atomic_store(&hchild_sync->val[ZL_ROUNDS], rounds);
	pid_t z = hchild_spawn(zl_process, NULL);
	hchild_expect_step(&hchild_sync->step[ZL_READY], 1, 2 * HCHILD_WAIT_MS, z, "the zombie-led process");
	int slot = (int)atomic_load(&hchild_sync->val[ZL_SLOT]);
	ck_assert_int_eq(hctl_slot_of(hd_default.sock, z, &connected), slot);
	ck_assert(connected);

	for (int64_t r = 1; r <= rounds; r++) {
		/* heapd dies while the process holds cached spans; the next heapd keeps them for it */
		hd_stop(&hd_default, SIGKILL);
		hd_default_restart();
		ck_assert_int_eq(hctl_slot_of(hd_default.sock, z, &connected), slot);
		ck_assert(!connected);
		memset(ES->b, 0, sizeof(ES->b)); /* the last one's objects stay allocated and claimed */
		pid_t b = hchild_spawn(zl_other, (void *)(intptr_t)r);
		hchild_expect_step(&hchild_sync->step[ZL_B_DONE], r, 2 * HCHILD_WAIT_MS, b,
		                   "the other process");
		atomic_store(&hchild_sync->step[ZL_GO], r);
		hchild_expect_step(&hchild_sync->step[ZL_DONE], r, 3 * HCHILD_WAIT_MS, z,
		                   "the zombie-led process");
		hchild_expect_ok(b, "the other process");
		/* while any thread of it lives, the process keeps its slot */
		ck_assert_int_eq(hctl_slot_of(hd_default.sock, z, &connected), slot);
	}
	atomic_store(&hchild_sync->step[ZL_EXIT], 1);
	hchild_expect_ok(z, "the process whose main thread exited");
	/* once all of it has exited, the slot is released */
	ck_assert_msg(hutil_wait_until(hctl_slot_of(hd_default.sock, z, NULL) < 0, 5000),
	              "the slot of pid %d is still listed after it exited", (int)z);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- a Hello naming another process's slot ---- */

enum { RA_READY = 0, RA_GO, RA_DONE };
enum { RA_SLOT = 0, RA_NSPANS = 1, RA_SPANS = 2, RA_MAXSPANS = 60 };

/* Allocate the owner's objects and publish its slot and spans (val[RA_*]). */
static void ra_publish(hview_t *a, hbook_t *b, hc_stats_t *st)
{
	uint32_t n = 0;

	if (hview_map(a) < 0)
		hchild_fail("no arena");
	hbook_init(b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(b, ES_A1, OBJ, "before");
	hc_stats(st);
	for (uint32_t k = 0; k < b->nlive; k++) {
		uint32_t s = hview_span_of(a, hc_off_to_ptr(atomic_load(&b->recs[b->live[k]].off)));
		int seen = 0;
		for (uint32_t j = 0; j < n; j++)
			seen |= (uint32_t)atomic_load(&hchild_sync->val[RA_SPANS + j]) == s;
		if (!seen && n < RA_MAXSPANS)
			atomic_store(&hchild_sync->val[RA_SPANS + n++], s);
	}
	atomic_store(&hchild_sync->val[RA_NSPANS], n);
	atomic_store(&hchild_sync->val[RA_SLOT], st->slot);
}

/* The published spans, into spans[]; their number. */
static uint32_t ra_spans(uint32_t *spans)
{
	uint32_t n = (uint32_t)atomic_load(&hchild_sync->val[RA_NSPANS]);
	for (uint32_t i = 0; i < n; i++)
		spans[i] = (uint32_t)atomic_load(&hchild_sync->val[RA_SPANS + i]);
	return n;
}

static int ra_owner(void *arg)
{
	hview_t a;
	hbook_t b;
	hc_stats_t st0, st1;
	(void)arg;

	ra_publish(&a, &b, &st0);
	atomic_store(&hchild_sync->step[RA_READY], 1);
	wait_or_fail(RA_GO, 1, 3 * HCHILD_WAIT_MS, "the impostors");
	book_alloc(&b, ES_A2, OBJ, "after the impostors");
	book_check(ES->a, ES_CAP, "the owner");
	hc_stats(&st1);
	if (st1.slot != st0.slot || st1.reconnects != st0.reconnects)
		hchild_fail("the impostors moved this process (slot %u -> %u, reconnects %llu -> %llu)",
		            st0.slot, st1.slot, (unsigned long long)st0.reconnects,
		            (unsigned long long)st1.reconnects);
	owns_all(&a, &b, st0.slot, "after the impostors");
	atomic_store(&hchild_sync->step[RA_DONE], 1);
	return 0;
}

/* Every span the owner listed is still its slot's, as c's mapping shows. */
static void spans_still_owned(const hraw_t *c, uint32_t slot, const uint32_t *spans, uint32_t n,
                              const char *after)
{
	for (uint32_t i = 0; i < n; i++)
		if (c->seg.spans[spans[i]].owner != slot + 1)
			hchild_fail("after %s, span %u of slot %u is owned by slot %d", after,
			            spans[i], slot,
			            (int)c->seg.spans[spans[i]].owner - 1);
}

/* Close c and wait until heapd has seen it: no connected slot of this process is listed. */
static void close_and_wait(hraw_t *c)
{
	hraw_close(c);
	if (!hctl_wait_unconnected(hd_default.sock, getpid(), HCHILD_WAIT_MS))
		hchild_fail("heapd still lists a connection of this process");
}

/* A process of the same uid (or nobody) naming the owner's slot in its Hello. */
static int ra_impostor(void *arg)
{
	int as_nobody = arg != NULL;
	uint32_t spans[RA_MAXSPANS], slot = (uint32_t)atomic_load(&hchild_sync->val[RA_SLOT]);
	uint32_t n = ra_spans(spans);
	Heapd__Envelope *reply = NULL;
	hraw_t c;
	int rc;

	if (as_nobody && hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	rc = hraw_hello_again(hd_default.sock, &c, slot + 1, spans, n);
	if (rc < 0)
		hchild_fail("a Hello naming slot %u: %s", slot, strerror(-rc));
	if (c.slot == slot)
		hchild_fail("a Hello of pid %d naming slot %u, another process's, got that slot",
		            (int)getpid(), slot);
	spans_still_owned(&c, slot, spans, n, "a Hello listing them");
	if (as_nobody) {
		hraw_close(&c);
		return 0;
	}
	/* handing them back as if they were ours */
	rc = hraw_refill(c.fd, 1, 0, spans, 1, &reply);
	if (rc < 0 || hraw_error_code(reply) != EPERM)
		hchild_fail("releasing another slot's span: rc %d, error %d (want EPERM)", rc,
		            rc < 0 ? 0 : hraw_error_code(reply));
	wire_free(reply);
	spans_still_owned(&c, slot, spans, n, "a release of one");
	close_and_wait(&c);
	/* listing none of them: re-adoption would take back what is not listed */
	rc = hraw_hello_again(hd_default.sock, &c, slot + 1, NULL, 0);
	if (rc < 0 || c.slot == slot)
		hchild_fail("a second Hello naming slot %u: rc %d, slot %u", slot, rc, c.slot);
	spans_still_owned(&c, slot, spans, n, "a Hello listing none");
	uint32_t max = c.seg.hdr->max_clients;
	close_and_wait(&c);
	const uint32_t wild[] = { 0xffffffffu, max + 7, max };
	for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++) {
		rc = hraw_hello_again(hd_default.sock, &c, wild[i], spans, n);
		if (rc < 0)
			hchild_fail("a Hello naming slot %u - 1: %s", wild[i], strerror(-rc));
		spans_still_owned(&c, slot, spans, n, "a Hello naming no slot");
		close_and_wait(&c);
	}
	return 0;
}

START_TEST(test_readopt_needs_same_process)
{
	int connected;

	hchild_sync_init();
	hd_default_start("64M", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	hclaims_init(&claims, hd_default.arena);
	ES = hutil_shared(sizeof(*ES));
	pid_t a = hchild_spawn(ra_owner, NULL);
	hchild_expect_step(&hchild_sync->step[RA_READY], 1, HCHILD_WAIT_MS, a, "the owner");
	int slot = (int)atomic_load(&hchild_sync->val[RA_SLOT]);
	hchild_expect_ok(hchild_spawn(ra_impostor, NULL), "a process of the same uid naming another's slot");
	hchild_expect_ok(hchild_spawn(ra_impostor, (void *)1),
	                 "a process of uid 65534 naming another's slot");
	ck_assert_int_eq(hctl_slot_of(hd_default.sock, a, &connected), slot);
	ck_assert(connected);
	atomic_store(&hchild_sync->step[RA_GO], 1);
	hchild_expect_ok(a, "the process whose slot was named");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- a Hello from a process that inherited a dead client's pid ---- */

enum { PR_READY = 0, PR_GO };

/* The client that dies: objects in cached spans, then nothing more. */
static int pr_victim(void *arg)
{
	hview_t a;
	hbook_t b;
	hc_stats_t st;
	(void)arg;
	ra_publish(&a, &b, &st);
	atomic_store(&hchild_sync->step[PR_READY], 1);
	wait_or_fail(PR_GO, 1, 3 * HCHILD_WAIT_MS, "the kill"); /* it comes first */
	return 0;
}

/* Same pid, another process: naming the dead client's slot and spans adopts none of them. */
static int pr_heir(void *arg)
{
	uint32_t spans[RA_MAXSPANS], slot = (uint32_t)atomic_load(&hchild_sync->val[RA_SLOT]);
	uint32_t n = ra_spans(spans);
	hraw_t c;
	(void)arg;

	wait_or_fail(PR_GO, 1, HCHILD_WAIT_MS, "the restart");
	int rc = hraw_hello_again(hd_default.sock, &c, slot + 1, spans, n);
	if (rc < 0)
		hchild_fail("a Hello naming the dead client's slot %u: %s", slot, strerror(-rc));
	for (uint32_t i = 0; i < n; i++)
		if (c.seg.spans[spans[i]].owner == c.slot + 1)
			hchild_fail("pid %d, which a dead client had, got that client's span %u (slot %u)",
			            (int)getpid(), spans[i], c.slot);
	hraw_close(&c);
	return 0;
}

START_TEST(test_readopt_pid_reuse)
{
	int st;

	/* Choosing the next pid takes CAP_SYS_ADMIN in this pid namespace. */
	if (access("/proc/sys/kernel/ns_last_pid", W_OK) != 0) {
		test_skip("test_readopt_pid_reuse", "/proc/sys/kernel/ns_last_pid is not writable here (%s)",
		          strerror(errno));
		return;
	}
	hchild_sync_init();
	hd_default_start("64M", NULL);
	hclaims_init(&claims, hd_default.arena);
	ES = hutil_shared(sizeof(*ES));
	/*
	 * The client dies and its pid goes to another process at once: while
	 * heapd runs (restart 0), while heapd is down (1), or after heapd came
	 * back and recovery kept the slot for the live client (2). Neither
	 * heapd's books nor recovery may keep the slot for the new process, nor
	 * may its Hello adopt the dead client's spans.
	 */
	for (int restart = 0; restart < 3; restart++) {
		memset(ES, 0, sizeof(*ES));
		memset((void *)hchild_sync->step, 0, sizeof(hchild_sync->step));
		pid_t a = hchild_spawn(pr_victim, NULL);
		hchild_expect_step(&hchild_sync->step[PR_READY], 1, HCHILD_WAIT_MS, a,
		                   "the client that dies");
		/*
		 * A process is named by pid and start time, which counts clock
		 * ticks: the heir starts in a later tick than the dead client did (a
		 * pid reused within the tick a process started in is beyond that
		 * name).
		 */
		ck_assert_msg(hchild_wait_new_tick(a, 5000), "the clock does not tick");
		if (restart) {
			hd_stop(&hd_default, SIGKILL);
			if (restart == 2)
				hd_default_restart();
		}
		kill(a, SIGKILL);
		ck_assert_int_eq(waitpid(a, &st, 0), a);
		pid_t heir = hchild_spawn_as_pid(a, pr_heir, NULL);
		ck_assert_msg(heir == a, "cannot fork a process with pid %d again: %s", (int)a,
		              heir < 0 ? strerror((int)-heir) : "another pid");
		if (restart == 1)
			hd_default_restart();
		atomic_store(&hchild_sync->step[PR_GO], 1);
		static const char *const when[] = {
			"a process with a dead client's pid",
			"a process with the pid of a client that died while heapd was down",
			"a process with the pid of a client that died after heapd's restart",
		};
		hchild_expect_ok(heir, when[restart]);
	}
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/*
 * A process that got a large object and then, without another frame, said
 * Hello again naming no slot (what the new image after an exec does): the
 * object may have been passed on before the exec, so it stays allocated.
 */
static int large_then_new_image(void *arg)
{
	Heapd__Envelope *reply = NULL;
	hraw_t c, again;
	(void)arg;

	int rc = hraw_hello(hd_default.sock, &c);
	if (rc < 0)
		hchild_fail("Hello: %s", strerror(-rc));
	rc = hraw_large_alloc(c.fd, 300000, 0, 0, &reply);
	if (rc < 0 || !reply || reply->msg_case != HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY)
		hchild_fail("LargeAlloc: %s", rc < 0 ? strerror(-rc) : "no LargeAllocReply");
	uint32_t span = reply->large_alloc_reply->span;
	wire_free(reply);
	close_and_wait(&c);
	rc = hraw_hello_again(hd_default.sock, &again, 0, NULL, 0);
	if (rc < 0)
		hchild_fail("the Hello of the new image: %s", strerror(-rc));
	if (hctl_sweep(hd_default.sock) < 0)
		hchild_fail("sweep failed");
	const shm_span_t *s = &again.seg.spans[span];
	if (s->state != SPAN_LARGE || !(bitmap_load(segment_allocbits(&again.seg, span)) & 1))
		hchild_fail("the large object at span %u was freed by the new image's Hello (state %u)",
		            span, s->state);
	hraw_close(&again);
	return 0;
}

START_TEST(test_new_image_keeps_large_object)
{
	hchild_sync_init();
	hd_default_start("64M", NULL);
	hchild_expect_ok(hchild_spawn(large_then_new_image, NULL),
	                 "a process saying Hello anew after a LargeAlloc");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

Suite *hostile_sessions_suite(void)
{
	double timeout = hutil_env("HOSTILE_LONG", 0) ? 1800 : HOSTILE_TIMEOUT_S;
	return test_suite_single("sessions", "sessions", timeout, NULL, hd_default_stop,
	                         test_ended_session_keeps_spans,
	                         test_first_request_after_close,
	                         test_stale_large_free_ignored,
	                         test_session_end_churn,
	                         test_zombie_leader,
	                         test_readopt_needs_same_process,
	                         test_readopt_pid_reuse,
	                         test_new_image_keeps_large_object,
	                         NULL);
}
