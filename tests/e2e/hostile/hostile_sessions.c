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
 * Objects are claimed in a map shared by every process (soak_util.h), so
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

#include "client_util.h"
#include "heapclient.h"
#include "hostile_suites.h"
#include "hostile_util.h"
#include "test_daemon_util.h"
#include "wire.h"

/* The seq of frames written behind the library's back: far from any seq the library uses. */
#define HOSTILE_SEQ 0x7eadbeefcafeULL
#define OBJ 64 /* the class the victim and the other process share */

static soak_claims_t claims;

static void teardown(void)
{
	hs_daemon_stop();
}

static uint64_t env_rounds(uint64_t def, uint64_t long_def)
{
	return soak_env("HOSTILE_LONG", 0) ? long_def : def;
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
	return hs_send_bytes(sock, frame, sizeof(frame));
}

static int end_oversized(int sock)
{
	/* a length of 2 MiB, over HEAPD_MAX_FRAME */
	static const uint8_t frame[] = { 0, 0, 0x20, 0, 0x0a, 0x00 };
	return hs_send_bytes(sock, frame, sizeof(frame));
}

static int end_bad_release(int sock)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Refill rf = HEAPD__REFILL__INIT;
	uint32_t bogus = 0xfffffff0u;
	rf.sizeclass = 1;
	rf.release = &bogus;
	rf.n_release = 1;
	env.msg_case = HEAPD__ENVELOPE__MSG_REFILL;
	env.refill = &rf;
	return send_env(sock, &env);
}

static int end_second_hello(int sock)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Hello h = HEAPD__HELLO__INIT;
	h.version = HEAPD_PROTOCOL_VERSION;
	h.pid = (uint32_t)getpid();
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &h;
	return send_env(sock, &env);
}

/* Clients requests, never reading a reply, until heapd drops the connection. */
static int end_output_cap(int sock)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;
	static uint8_t burst[1000 * 16];
	size_t one, n = 0;

	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	env.seq = HOSTILE_SEQ;
	one = wire_frame_size(&env);
	for (; n + one <= sizeof(burst); n += one)
		wire_frame_pack(&env, burst + n);
	for (uint64_t sent = 0; sent < (256u << 20);) {
		ssize_t w = send(sock, burst, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EPIPE || errno == ECONNRESET ? 0 : -errno;
		sent += (uint64_t)w;
	}
	return -EMSGSIZE; /* 256 MiB of requests and still connected */
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
	int sock = hs_lib_socket();
	if (sock < 0)
		hs_fail("no connection of the library to heapd found");
	int rc = w->end(sock);
	if (rc < 0)
		hs_fail("writing %s: %s", w->name, strerror(-rc));
}

/* Every object in book b is in a span slot owns. */
static void owns_all(const hs_arena_t *a, const soak_book_t *b, uint32_t slot, const char *when)
{
	for (uint32_t k = 0; k < b->nlive; k++) {
		uint64_t off = atomic_load(&b->recs[b->live[k]].off);
		uint32_t s = hs_span_of(a, hc_off_to_ptr(off));
		if (s == HEAPD_NIL || a->spans[s].owner != slot + 1)
			hs_fail("%s: the object at offset %llu is in span %u, owned by slot %d, not by ours (%u)",
			        when, (unsigned long long)off, s, s == HEAPD_NIL ? -2 : (int)a->spans[s].owner - 1,
			        slot);
	}
}

static void book_alloc(soak_book_t *b, int n, size_t size, const char *when)
{
	char err[300];
	for (int i = 0; i < n; i++)
		if (!soak_book_alloc(b, size, err, sizeof(err)))
			hs_fail("%s: %s", when, err);
}

static void book_check(soak_rec_t *recs, uint32_t cap, const char *who)
{
	char err[300];
	if (soak_recs_check(recs, cap, &claims, 0, err, sizeof(err)) < 0)
		hs_fail("%s: %s", who, err);
}

static int64_t wait_or_fail(int step, int64_t want, int timeout_ms, const char *what)
{
	if (!hs_wait_at_least(&hs_sync->step[step], want, timeout_ms))
		hs_fail("waited in vain for %s", what);
	return want;
}

/* Until the daemon lists pid's slot with connected == want (bounded). The slot, or -1. */
static int wait_slot_state(pid_t pid, int want, int timeout_ms)
{
	for (uint64_t end = hs_now_ms() + (uint64_t)timeout_ms; hs_now_ms() <= end; hs_sleep_ms(10)) {
		int connected = -1, slot = hs_slot_of(pid, &connected);
		if (slot >= 0 && connected == want)
			return slot;
	}
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
	soak_rec_t a[ES_CAP];
	soak_rec_t b[ES_CAP];
} es_books_t;

static es_books_t *ES;

/* The process whose session heapd ends while it holds cached spans. */
static int es_victim(void *arg)
{
	const way_t *w = arg;
	hs_arena_t a;
	soak_book_t b;
	hc_stats_t st0, st1;

	if (hs_arena(&a) < 0)
		hs_fail("no arena: %s", strerror(errno));
	soak_book_init(&b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(&b, ES_A1, OBJ, "before the session ended");
	hc_stats(&st0);
	owns_all(&a, &b, st0.slot, "before the session ended");
	end_session(w);
	atomic_store(&hs_sync->step[ES_ENDED], 1);
	wait_or_fail(ES_B_DONE, 1, HS_WAIT_MS, "the other process");

	/* From the cached spans: none of it may be the other process's. */
	book_alloc(&b, ES_CACHED, OBJ, "from the cached spans after the session ended");
	/* The first request after heapd closed the connection (issue defect 8). */
	errno = 0;
	void *big = hc_malloc(100000);
	if (!big)
		hs_fail("the first request after %s: hc_malloc(100000) failed: %s", w->name,
		        strerror(errno));
	hc_stats(&st1);
	if (st1.slot != st0.slot)
		hs_fail("after %s the process has slot %u, not its own %u", w->name, st1.slot, st0.slot);
	if (st1.reconnects < st0.reconnects + 1)
		hs_fail("after %s: %llu reconnects", w->name, (unsigned long long)st1.reconnects);
	book_alloc(&b, ES_A2, OBJ, "after the reconnect");
	book_check(ES->a, ES_CAP, "the victim");
	owns_all(&a, &b, st0.slot, "after the session ended");
	hc_free(big);
	atomic_store(&hs_sync->step[ES_A_DONE], 1);
	return 0;
}

/* Another process allocating the same class while the victim has no session. */
static int es_other(void *arg)
{
	soak_book_t b;
	(void)arg;
	soak_book_init(&b, ES->b, ES_CAP, &claims, 2ULL << 40);
	book_alloc(&b, ES_B, OBJ, "the other process");
	atomic_store(&hs_sync->step[ES_B_DONE], 1);
	wait_or_fail(ES_A_DONE, 1, HS_WAIT_MS, "the victim");
	book_check(ES->b, ES_CAP, "the other process");
	return 0;
}

START_TEST(test_ended_session_keeps_spans)
{
	char what[128];

	hs_shared_init();
	hs_daemon_start("64M", NULL);
	hs_claims_init(&claims);
	ES = soak_shared(sizeof(*ES));
	for (size_t k = 0; k < NWAYS * env_rounds(1, 20); k++) {
		memset(ES, 0, sizeof(*ES));
		memset((void *)hs_sync->step, 0, sizeof(hs_sync->step));
		const way_t *w = &ways[k % NWAYS];
		pid_t a = hs_spawn(es_victim, (void *)w);
		hs_expect_step(&hs_sync->step[ES_ENDED], 1, HS_WAIT_MS, a, w->name);
		/* heapd has ended the session: the slot is held for the process, unconnected */
		int slot = wait_slot_state(a, 0, 5000);
		ck_assert_msg(slot >= 0, "after %s the slot of pid %d is not listed as held", w->name,
		              (int)a);
		ck_assert_msg(harness_log_contains(&hs_daemon, w->log), "log lacks \"%s\"", w->log);
		pid_t b = hs_spawn(es_other, NULL);
		snprintf(what, sizeof(what), "the process whose session heapd ended after %s", w->name);
		hs_expect_ok(a, what);
		hs_expect_ok(b, "the other process");
	}
	ck_assert(hs_daemon_alive());
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

/* ---- the first request after a close (no waiting for heapd at all) ---- */

static int first_request(void *arg)
{
	uint64_t rounds = (uint64_t)(uintptr_t)arg;
	hc_stats_t st0, st;

	void *p = hc_malloc(OBJ);
	if (!p)
		hs_fail("hc_malloc: %s", strerror(errno));
	hc_stats(&st0);
	for (uint64_t r = 0; r < rounds; r++) {
		const way_t *w = &ways[r % NWAYS];
		end_session(w);
		errno = 0;
		void *big = hc_malloc(100000);
		if (!big)
			hs_fail("round %llu: the first request after %s: hc_malloc(100000): %s",
			        (unsigned long long)r, w->name, strerror(errno));
		hc_free(big);
		hc_stats(&st);
		if (st.slot != st0.slot)
			hs_fail("round %llu: slot %u after %s, not %u", (unsigned long long)r, st.slot, w->name,
			        st0.slot);
	}
	if (st.reconnects < st0.reconnects + rounds)
		hs_fail("%llu reconnects for %llu ended sessions", (unsigned long long)st.reconnects,
		        (unsigned long long)rounds);
	hc_free(p);
	return 0;
}

START_TEST(test_first_request_after_close)
{
	hs_shared_init();
	hs_daemon_start("64M", NULL);
	uint64_t rounds = env_rounds(3 * NWAYS, 60 * NWAYS);
	hs_expect_ok(hs_spawn(first_request, (void *)(uintptr_t)rounds),
	             "a process whose session heapd ends again and again");
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

/* ---- late and bogus LargeFree ---- */

enum { LF_FREED = 0, LF_B_DONE, LF_A_DONE };
enum { LF_SPAN = 0, LF_GEN, LF_B_SPAN, LF_B_GEN };

static int send_large_free(int sock, uint32_t span, uint32_t gen)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__LargeFree lf = HEAPD__LARGE_FREE__INIT;
	lf.span = span;
	lf.gen = gen;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_FREE;
	env.large_free = &lf;
	return send_env(sock, &env);
}

static int lf_victim(void *arg)
{
	hs_arena_t a;
	soak_book_t b;
	hc_stats_t st0, st1;
	(void)arg;

	if (hs_arena(&a) < 0)
		hs_fail("no arena");
	soak_book_init(&b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(&b, ES_A1, OBJ, "before");
	hc_stats(&st0);
	char *big = hc_malloc(100000);
	if (!big)
		hs_fail("hc_malloc(100000): %s", strerror(errno));
	uint32_t span = hs_span_of(&a, big), gen = a.spans[span].gen;
	if (span == HEAPD_NIL || a.spans[span].state != SPAN_LARGE)
		hs_fail("the large object is not in a large span");
	/* A request of a new class: heapd learns that the large object's reply arrived. */
	if (!hc_malloc(3000))
		hs_fail("hc_malloc(3000): %s", strerror(errno));
	/*
	 * hc_free's first step alone: the free bit. Its LargeFree comes late,
	 * after the sweeper has freed the object (the thread was descheduled).
	 */
	atomic_fetch_or((_Atomic uint64_t *)&a.bits[(uint64_t)span * HEAPD_BITS_WORDS_PER_PAGE +
	                                             heapd_freebits_delta(1)],
	                1);
	for (uint64_t end = hs_now_ms() + 3 * HS_WAIT_MS / 2;
	     a.spans[span].state == SPAN_LARGE && a.spans[span].gen == gen; hs_sleep_ms(10))
		if (hs_now_ms() > end)
			hs_fail("the sweeper did not free large span %u, whose free bit is set", span);
	atomic_store(&hs_sync->val[LF_SPAN], span);
	atomic_store(&hs_sync->val[LF_GEN], gen);
	atomic_store(&hs_sync->step[LF_FREED], 1);
	wait_or_fail(LF_B_DONE, 1, HS_WAIT_MS, "the other process");

	uint32_t bspan = (uint32_t)atomic_load(&hs_sync->val[LF_B_SPAN]);
	uint32_t bgen = (uint32_t)atomic_load(&hs_sync->val[LF_B_GEN]);
	uint32_t small = hs_span_of(&a, hc_off_to_ptr(atomic_load(&ES->a[0].off)));
	int sock = hs_lib_socket();
	if (sock < 0)
		hs_fail("no connection to heapd");
	const uint32_t bogus[][2] = {
		{ span, gen },            /* late: the sweeper freed it */
		{ bspan, bgen },          /* another process's live object, its free bit clear */
		{ bspan, bgen + 1 },      /* a generation that never was */
		{ 0xfffffff0u, 0 },       /* no span at all */
		{ small, a.spans[small].gen }, /* a small span of our own */
	};
	for (size_t i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++)
		if (send_large_free(sock, bogus[i][0], bogus[i][1]) < 0)
			hs_fail("sending LargeFree: %s", strerror(errno));
	/* a request on the same connection: heapd has read the LargeFrees when it answers */
	errno = 0;
	void *big2 = hc_malloc(100000);
	if (!big2)
		hs_fail("hc_malloc(100000) after stale LargeFrees: %s", strerror(errno));
	hc_stats(&st1);
	if (st1.reconnects != st0.reconnects || !st1.connected || st1.slot != st0.slot)
		hs_fail("stale LargeFrees ended the session (reconnects %llu -> %llu, slot %u -> %u)",
		        (unsigned long long)st0.reconnects, (unsigned long long)st1.reconnects, st0.slot,
		        st1.slot);
	book_alloc(&b, ES_A2, OBJ, "after the stale LargeFrees");
	book_check(ES->a, ES_CAP, "the victim");
	owns_all(&a, &b, st0.slot, "after the stale LargeFrees");
	atomic_store(&hs_sync->step[LF_A_DONE], 1);
	return 0;
}

static int lf_other(void *arg)
{
	hs_arena_t a;
	soak_book_t b;
	(void)arg;

	if (hs_arena(&a) < 0)
		hs_fail("no arena");
	char *big = hc_malloc(100000);
	if (!big)
		hs_fail("hc_malloc(100000): %s", strerror(errno));
	cu_fill(big, 100000, 99);
	uint32_t span = hs_span_of(&a, big), gen = a.spans[span].gen;
	atomic_store(&hs_sync->val[LF_B_SPAN], span);
	atomic_store(&hs_sync->val[LF_B_GEN], gen);
	soak_book_init(&b, ES->b, ES_CAP, &claims, 2ULL << 40);
	book_alloc(&b, ES_B, OBJ, "the other process");
	atomic_store(&hs_sync->step[LF_B_DONE], 1);
	wait_or_fail(LF_A_DONE, 1, 2 * HS_WAIT_MS, "the victim");
	if (a.spans[span].state != SPAN_LARGE || a.spans[span].gen != gen)
		hs_fail("a LargeFree of another process freed our large object (span %u)", span);
	if (!cu_verify(big, 100000, 99))
		hs_fail("our large object lost its pattern");
	book_check(ES->b, ES_CAP, "the other process");
	hc_free(big);
	return 0;
}

START_TEST(test_stale_large_free_ignored)
{
	hs_shared_init();
	hs_daemon_start("64M", NULL);
	hs_claims_init(&claims);
	ES = soak_shared(sizeof(*ES));
	pid_t a = hs_spawn(lf_victim, NULL);
	hs_expect_step(&hs_sync->step[LF_FREED], 1, 2 * HS_WAIT_MS, a, "the victim");
	pid_t b = hs_spawn(lf_other, NULL);
	hs_expect_ok(a, "the process that sent stale LargeFrees");
	hs_expect_ok(b, "the other process");
	ck_assert(harness_log_contains(&hs_daemon, "ignored"));
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

/* ---- threads allocating and freeing while their session ends again and again ---- */

enum { CH_STOP = 0 };
enum { CH_SLOT = 0, CH_PROGRESS = 1 };
#define CH_WORKERS 2
#define CH_BATCH 64

static hs_arena_t ch_arena;

/* Allocate, claim, check the owner, fill; then verify, unclaim, free; until told to stop. */
static void churn(int id, int check_owner)
{
	void *objs[CH_BATCH];
	size_t size = id % 2 ? 48 : 16;
	uint64_t seed = ((uint64_t)getpid() << 20) + (uint64_t)id * 1000003;

	while (atomic_load(&hs_sync->step[CH_STOP]) == 0) {
		uint32_t slot = (uint32_t)atomic_load(&hs_sync->val[CH_SLOT]);
		for (int i = 0; i < CH_BATCH; i++) {
			objs[i] = hc_malloc(size);
			if (!objs[i])
				hs_fail("worker %d: hc_malloc(%zu): %s", id, size, strerror(errno));
			uint64_t off = hc_ptr_to_off(objs[i]);
			if (check_owner) {
				uint32_t s = hs_span_of(&ch_arena, objs[i]);
				uint32_t owner = s == HEAPD_NIL ? 0 : ch_arena.spans[s].owner;
				if (owner != slot + 1)
					hs_fail("worker %d: a new object is in span %u, owned by slot %d, not ours (%u)",
					        id, s, (int)owner - 1, slot);
			}
			if (soak_claim(&claims, off, size) != 0)
				hs_fail("worker %d: the new object at offset %llu overlaps a live object", id,
				        (unsigned long long)off);
			cu_fill(objs[i], size, seed + (uint64_t)i);
		}
		for (int i = 0; i < CH_BATCH; i++) {
			if (!cu_verify(objs[i], size, seed + (uint64_t)i))
				hs_fail("worker %d: the object at offset %llu lost its pattern", id,
				        (unsigned long long)hc_ptr_to_off(objs[i]));
			soak_unclaim(&claims, hc_ptr_to_off(objs[i]), size);
			hc_free(objs[i]);
		}
		seed += CH_BATCH;
		atomic_fetch_add(&hs_sync->val[CH_PROGRESS + id], 1);
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

	if (hs_arena(&ch_arena) < 0)
		hs_fail("no arena");
	hc_stats(&st0);
	atomic_store(&hs_sync->val[CH_SLOT], st0.slot);
	for (intptr_t i = 0; i < CH_WORKERS; i++)
		pthread_create(&t[i], NULL, ch_worker, (void *)i);
	for (uint64_t r = 0; r < rounds; r++) {
		/* the workers go on between rounds, through the window after each close */
		for (int i = 0; i < CH_WORKERS; i++)
			if (!hs_wait_at_least(&hs_sync->val[CH_PROGRESS + i], (int64_t)(r + 1) * 4, HS_WAIT_MS))
				hs_fail("worker %d makes no progress", i);
		const way_t *w = &ways[r % (NWAYS - 1)];
		end_session(w);
		errno = 0;
		void *big = hc_malloc(100000);
		if (!big)
			hs_fail("round %llu: hc_malloc(100000) after %s: %s", (unsigned long long)r, w->name,
			        strerror(errno));
		hc_free(big);
		hc_stats(&st);
		if (st.slot != st0.slot)
			hs_fail("round %llu: slot %u, not %u", (unsigned long long)r, st.slot, st0.slot);
	}
	atomic_store(&hs_sync->step[CH_STOP], 1);
	for (int i = 0; i < CH_WORKERS; i++)
		pthread_join(t[i], NULL);
	hc_stats(&st);
	if (st.reconnects < st0.reconnects + rounds)
		hs_fail("%llu reconnects in %llu rounds", (unsigned long long)st.reconnects,
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
	hs_shared_init();
	hs_daemon_start("64M", NULL);
	hs_claims_init(&claims);
	uint64_t rounds = env_rounds(12, 3000);
	pid_t b = hs_spawn(ch_other, NULL);
	pid_t a = hs_spawn(ch_victim, (void *)(uintptr_t)rounds);
	hs_expect_ok(a, "the process whose sessions heapd ends under its working threads");
	hs_expect_ok(b, "the other process");
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

/* ---- a zombie leader across restarts of heapd ---- */

enum { ZL_READY = 0, ZL_GO, ZL_DONE, ZL_EXIT, ZL_B_DONE };
enum { ZL_SLOT = 0, ZL_ROUNDS = 1 };
#define ZL_PER_ROUND 300 /* objects the process allocates after each restart */

/* The main thread has exited: /proc shows the process's leader as a zombie. */
static int leader_is_zombie(void)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)getpid());
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'Z';
}

static void *zl_worker(void *arg)
{
	int64_t rounds = atomic_load(&hs_sync->val[ZL_ROUNDS]);
	hs_arena_t a;
	soak_book_t b;
	hc_stats_t st;
	(void)arg;

	for (uint64_t end = hs_now_ms() + HS_WAIT_MS; !leader_is_zombie(); hs_sleep_ms(1))
		if (hs_now_ms() > end)
			hs_fail("the main thread did not exit");
	/* The first Hello of this process comes from here. */
	if (hs_arena(&a) < 0)
		hs_fail("the first allocation of a process whose main thread has exited: %s",
		        strerror(errno));
	soak_book_init(&b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(&b, ES_A1, OBJ, "with a zombie leader");
	hc_stats(&st);
	uint32_t slot = st.slot;
	atomic_store(&hs_sync->val[ZL_SLOT], slot);
	atomic_store(&hs_sync->step[ZL_READY], 1);

	for (int64_t r = 1; r <= rounds; r++) {
		/* heapd is killed and restarted meanwhile, and another process allocates */
		wait_or_fail(ZL_GO, r, 3 * HS_WAIT_MS, "the restart");
		book_alloc(&b, ZL_PER_ROUND, OBJ, "after a restart");
		book_check(ES->a, ES_CAP, "the zombie-led process");
		hc_stats(&st);
		if (st.slot != slot)
			hs_fail("after restart %lld the process has slot %u, not its own %u", (long long)r,
			        st.slot, slot);
		owns_all(&a, &b, slot, "after a restart");
		atomic_store(&hs_sync->step[ZL_DONE], r);
	}
	wait_or_fail(ZL_EXIT, 1, HS_WAIT_MS, "the word to exit");
	static atomic_uint left = 1;
	soak_thread_done(&left); /* the last thread: the process exits, with no Bye */
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
	soak_book_t b;
	soak_book_init(&b, ES->b, ES_CAP, &claims, (2ULL + (uint64_t)round) << 40);
	book_alloc(&b, ES_B, OBJ, "the other process after a restart");
	atomic_store(&hs_sync->step[ZL_B_DONE], round);
	wait_or_fail(ZL_DONE, round, 2 * HS_WAIT_MS, "the zombie-led process");
	book_check(ES->b, ES_CAP, "the other process");
	return 0;
}

START_TEST(test_zombie_leader)
{
	int64_t rounds = (int64_t)env_rounds(1, 10);
	int connected;

	hs_shared_init();
	hs_daemon_start("64M", NULL);
	hs_claims_init(&claims);
	ES = soak_shared(sizeof(*ES));
	ck_assert_int_le(ES_A1 + rounds * ZL_PER_ROUND, ES_CAP);
	atomic_store(&hs_sync->val[ZL_ROUNDS], rounds);
	pid_t z = hs_spawn(zl_process, NULL);
	hs_expect_step(&hs_sync->step[ZL_READY], 1, 2 * HS_WAIT_MS, z, "the zombie-led process");
	int slot = (int)atomic_load(&hs_sync->val[ZL_SLOT]);
	ck_assert_int_eq(hs_slot_of(z, &connected), slot);
	ck_assert(connected);

	for (int64_t r = 1; r <= rounds; r++) {
		/* heapd dies while the process holds cached spans; the next heapd keeps them for it */
		harness_stop(&hs_daemon, SIGKILL);
		hs_daemon_restart();
		ck_assert_int_eq(hs_slot_of(z, &connected), slot);
		ck_assert(!connected);
		memset(ES->b, 0, sizeof(ES->b)); /* the last one's objects stay allocated and claimed */
		pid_t b = hs_spawn(zl_other, (void *)(intptr_t)r);
		hs_expect_step(&hs_sync->step[ZL_B_DONE], r, 2 * HS_WAIT_MS, b, "the other process");
		atomic_store(&hs_sync->step[ZL_GO], r);
		hs_expect_step(&hs_sync->step[ZL_DONE], r, 3 * HS_WAIT_MS, z, "the zombie-led process");
		hs_expect_ok(b, "the other process");
		/* while any thread of it lives, the process keeps its slot */
		ck_assert_int_eq(hs_slot_of(z, &connected), slot);
	}
	atomic_store(&hs_sync->step[ZL_EXIT], 1);
	hs_expect_ok(z, "the process whose main thread exited");
	/* once all of it has exited, the slot is released */
	int gone = 0;
	for (uint64_t end = hs_now_ms() + 5000; !gone && hs_now_ms() <= end; hs_sleep_ms(10))
		gone = hs_slot_of(z, NULL) < 0;
	ck_assert_msg(gone, "the slot of pid %d is still listed after it exited", (int)z);
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

/* ---- a Hello naming another process's slot ---- */

enum { RA_READY = 0, RA_GO, RA_DONE };
enum { RA_SLOT = 0, RA_NSPANS = 1, RA_SPANS = 2, RA_MAXSPANS = 60 };

/* Allocate the owner's objects and publish its slot and spans (val[RA_*]). */
static void ra_publish(hs_arena_t *a, soak_book_t *b, hc_stats_t *st)
{
	uint32_t n = 0;

	if (hs_arena(a) < 0)
		hs_fail("no arena");
	soak_book_init(b, ES->a, ES_CAP, &claims, 1ULL << 40);
	book_alloc(b, ES_A1, OBJ, "before");
	hc_stats(st);
	for (uint32_t k = 0; k < b->nlive; k++) {
		uint32_t s = hs_span_of(a, hc_off_to_ptr(atomic_load(&b->recs[b->live[k]].off)));
		int seen = 0;
		for (uint32_t j = 0; j < n; j++)
			seen |= (uint32_t)atomic_load(&hs_sync->val[RA_SPANS + j]) == s;
		if (!seen && n < RA_MAXSPANS)
			atomic_store(&hs_sync->val[RA_SPANS + n++], s);
	}
	atomic_store(&hs_sync->val[RA_NSPANS], n);
	atomic_store(&hs_sync->val[RA_SLOT], st->slot);
}

/* The published spans, into spans[]; their number. */
static uint32_t ra_spans(uint32_t *spans)
{
	uint32_t n = (uint32_t)atomic_load(&hs_sync->val[RA_NSPANS]);
	for (uint32_t i = 0; i < n; i++)
		spans[i] = (uint32_t)atomic_load(&hs_sync->val[RA_SPANS + i]);
	return n;
}

static int ra_owner(void *arg)
{
	hs_arena_t a;
	soak_book_t b;
	hc_stats_t st0, st1;
	(void)arg;

	ra_publish(&a, &b, &st0);
	atomic_store(&hs_sync->step[RA_READY], 1);
	wait_or_fail(RA_GO, 1, 3 * HS_WAIT_MS, "the impostors");
	book_alloc(&b, ES_A2, OBJ, "after the impostors");
	book_check(ES->a, ES_CAP, "the owner");
	hc_stats(&st1);
	if (st1.slot != st0.slot || st1.reconnects != st0.reconnects)
		hs_fail("the impostors moved this process (slot %u -> %u, reconnects %llu -> %llu)",
		        st0.slot, st1.slot, (unsigned long long)st0.reconnects,
		        (unsigned long long)st1.reconnects);
	owns_all(&a, &b, st0.slot, "after the impostors");
	atomic_store(&hs_sync->step[RA_DONE], 1);
	return 0;
}

/* Every span the owner listed is still its slot's, as c's mapping shows. */
static void spans_still_owned(const tclient_t *c, uint32_t slot, const uint32_t *spans, uint32_t n,
                              const char *after)
{
	for (uint32_t i = 0; i < n; i++)
		if (c->seg.spans[spans[i]].owner != slot + 1)
			hs_fail("after %s, span %u of slot %u is owned by slot %d", after, spans[i], slot,
			        (int)c->seg.spans[spans[i]].owner - 1);
}

/* Close c and wait until heapd has seen it: no connected slot of this process is listed. */
static void close_and_wait(tclient_t *c)
{
	hs_client_t cl[64];
	tc_close(c);
	for (uint64_t end = hs_now_ms() + HS_WAIT_MS;; hs_sleep_ms(5)) {
		int n = hs_clients(cl, 64), connected = 0;
		for (int i = 0; i < n && i < 64; i++)
			connected |= cl[i].pid == (uint32_t)getpid() && cl[i].connected;
		if (n >= 0 && !connected)
			return;
		if (hs_now_ms() > end)
			hs_fail("heapd still lists a connection of this process");
	}
}

/* A process of the same uid (or nobody) naming the owner's slot in its Hello. */
static int ra_impostor(void *arg)
{
	int as_nobody = arg != NULL;
	uint32_t spans[RA_MAXSPANS], slot = (uint32_t)atomic_load(&hs_sync->val[RA_SLOT]);
	uint32_t n = ra_spans(spans);
	Heapd__Envelope *reply = NULL;
	tclient_t c;
	int rc;

	if (as_nobody && hs_become_nobody() < 0)
		hs_fail("cannot become uid %d", HS_NOBODY);
	rc = tc_hello_again(hs_daemon.sock, &c, slot + 1, spans, n);
	if (rc < 0)
		hs_fail("a Hello naming slot %u: %s", slot, strerror(-rc));
	if (c.slot == slot)
		hs_fail("a Hello of pid %d naming slot %u, another process's, got that slot", (int)getpid(),
		        slot);
	spans_still_owned(&c, slot, spans, n, "a Hello listing them");
	if (as_nobody) {
		tc_close(&c);
		return 0;
	}
	/* handing them back as if they were ours */
	rc = tc_refill(c.fd, 1, 0, spans, 1, &reply);
	if (rc < 0 || tc_error_code(reply) != EPERM)
		hs_fail("releasing another slot's span: rc %d, error %d (want EPERM)", rc,
		        rc < 0 ? 0 : tc_error_code(reply));
	wire_free(reply);
	spans_still_owned(&c, slot, spans, n, "a release of one");
	close_and_wait(&c);
	/* listing none of them: re-adoption would take back what is not listed */
	rc = tc_hello_again(hs_daemon.sock, &c, slot + 1, NULL, 0);
	if (rc < 0 || c.slot == slot)
		hs_fail("a second Hello naming slot %u: rc %d, slot %u", slot, rc, c.slot);
	spans_still_owned(&c, slot, spans, n, "a Hello listing none");
	uint32_t max = c.seg.hdr->max_clients;
	close_and_wait(&c);
	const uint32_t wild[] = { 0xffffffffu, max + 7, max };
	for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++) {
		rc = tc_hello_again(hs_daemon.sock, &c, wild[i], spans, n);
		if (rc < 0)
			hs_fail("a Hello naming slot %u - 1: %s", wild[i], strerror(-rc));
		spans_still_owned(&c, slot, spans, n, "a Hello naming no slot");
		close_and_wait(&c);
	}
	return 0;
}

START_TEST(test_readopt_needs_same_process)
{
	int connected;

	hs_shared_init();
	hs_daemon_start("64M", "--allow-uid", "65534", NULL);
	hs_open_up();
	hs_claims_init(&claims);
	ES = soak_shared(sizeof(*ES));
	pid_t a = hs_spawn(ra_owner, NULL);
	hs_expect_step(&hs_sync->step[RA_READY], 1, HS_WAIT_MS, a, "the owner");
	int slot = (int)atomic_load(&hs_sync->val[RA_SLOT]);
	hs_expect_ok(hs_spawn(ra_impostor, NULL), "a process of the same uid naming another's slot");
	hs_expect_ok(hs_spawn(ra_impostor, (void *)1), "a process of uid 65534 naming another's slot");
	ck_assert_int_eq(hs_slot_of(a, &connected), slot);
	ck_assert(connected);
	atomic_store(&hs_sync->step[RA_GO], 1);
	hs_expect_ok(a, "the process whose slot was named");
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

/* ---- a Hello from a process that inherited a dead client's pid ---- */

enum { PR_READY = 0, PR_GO };

/* The client that dies: objects in cached spans, then nothing more. */
static int pr_victim(void *arg)
{
	hs_arena_t a;
	soak_book_t b;
	hc_stats_t st;
	(void)arg;
	ra_publish(&a, &b, &st);
	atomic_store(&hs_sync->step[PR_READY], 1);
	wait_or_fail(PR_GO, 1, 3 * HS_WAIT_MS, "the kill"); /* it comes first */
	return 0;
}

/* Same pid, another process: naming the dead client's slot and spans adopts none of them. */
static int pr_heir(void *arg)
{
	uint32_t spans[RA_MAXSPANS], slot = (uint32_t)atomic_load(&hs_sync->val[RA_SLOT]);
	uint32_t n = ra_spans(spans);
	tclient_t c;
	(void)arg;

	wait_or_fail(PR_GO, 1, HS_WAIT_MS, "the restart");
	int rc = tc_hello_again(hs_daemon.sock, &c, slot + 1, spans, n);
	if (rc < 0)
		hs_fail("a Hello naming the dead client's slot %u: %s", slot, strerror(-rc));
	for (uint32_t i = 0; i < n; i++)
		if (c.seg.spans[spans[i]].owner == c.slot + 1)
			hs_fail("pid %d, which a dead client had, got that client's span %u (slot %u)",
			        (int)getpid(), spans[i], c.slot);
	tc_close(&c);
	return 0;
}

START_TEST(test_readopt_pid_reuse)
{
	int st;

	/* Choosing the next pid takes CAP_SYS_ADMIN in this pid namespace. */
	if (access("/proc/sys/kernel/ns_last_pid", W_OK) != 0) {
		fprintf(stderr, "test_readopt_pid_reuse: skipped, /proc/sys/kernel/ns_last_pid is not "
		                "writable here (%s)\n", strerror(errno));
		return;
	}
	hs_shared_init();
	hs_daemon_start("64M", NULL);
	hs_claims_init(&claims);
	ES = soak_shared(sizeof(*ES));
	/*
	 * The client dies and its pid goes to another process at once: while
	 * heapd runs (restart 0), while heapd is down (1), or after heapd came
	 * back and recovery kept the slot for the live client (2). Neither
	 * heapd's books nor recovery may keep the slot for the new process, nor
	 * may its Hello adopt the dead client's spans.
	 */
	for (int restart = 0; restart < 3; restart++) {
		memset(ES, 0, sizeof(*ES));
		memset((void *)hs_sync->step, 0, sizeof(hs_sync->step));
		pid_t a = hs_spawn(pr_victim, NULL);
		hs_expect_step(&hs_sync->step[PR_READY], 1, HS_WAIT_MS, a, "the client that dies");
		uint64_t born;
		ck_assert_int_eq(hs_start_time(a, &born), 0);
		/*
		 * A process is named by pid and start time, which counts clock
		 * ticks: the heir starts in a later tick than the dead client did (a
		 * pid reused within the tick a process started in is beyond that
		 * name).
		 */
		ck_assert_msg(hs_wait_ticks_past(born, 5000), "the clock does not tick");
		if (restart) {
			harness_stop(&hs_daemon, SIGKILL);
			if (restart == 2)
				hs_daemon_restart();
		}
		kill(a, SIGKILL);
		ck_assert_int_eq(waitpid(a, &st, 0), a);
		pid_t heir = hs_spawn_as_pid(a, pr_heir, NULL);
		ck_assert_msg(heir == a, "cannot fork a process with pid %d again: %s", (int)a,
		              heir < 0 ? strerror((int)-heir) : "another pid");
		if (restart == 1)
			hs_daemon_restart();
		atomic_store(&hs_sync->step[PR_GO], 1);
		static const char *const when[] = {
			"a process with a dead client's pid",
			"a process with the pid of a client that died while heapd was down",
			"a process with the pid of a client that died after heapd's restart",
		};
		hs_expect_ok(heir, when[restart]);
	}
	ck_assert_int_eq(hs_check(), 0);
}
END_TEST

Suite *hostile_sessions_suite(void)
{
	Suite *s = suite_create("sessions");
	TCase *tc = tcase_create("sessions");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, soak_env("HOSTILE_LONG", 0) ? 1800 : HOSTILE_TIMEOUT_S);
	tcase_add_test(tc, test_ended_session_keeps_spans);
	tcase_add_test(tc, test_first_request_after_close);
	tcase_add_test(tc, test_stale_large_free_ignored);
	tcase_add_test(tc, test_session_end_churn);
	tcase_add_test(tc, test_zombie_leader);
	tcase_add_test(tc, test_readopt_needs_same_process);
	tcase_add_test(tc, test_readopt_pid_reuse);
	suite_add_tcase(s, tc);
	return s;
}
