// SPDX-License-Identifier: MIT
/*
 * test_crash.c - the daemon killed at every commit of a change to the arena's
 * metadata, and at every commit of its own recovery.
 *
 * Each test is one scenario: a setup and one operation under test. This
 * process is the scenario's client (its sessions carry its pid): it opens the
 * daemon in-process on a fresh arena, runs the setup, then forks a copy of
 * the daemon that runs the operation with the commit hook (shm/commit.h)
 * armed at N. The copy _exits at its Nth commit, which leaves the arena as a
 * SIGKILL there would. N runs from 1 until the operation completes (a first
 * run, counted but never killed, says how far that is). After each run this
 * process drops its stale view, reopens the arena (daemon_open: the rebuild
 * and recovery) and checks:
 *   1. daemon_check finds no problem;
 *   2. every object live before the operation still has its alloc bit, no
 *      free bit, and the pattern written into it;
 *   3. the spans the client held are still its own unless it handed them
 *      back; a dead process's slot and spans are taken back;
 *   4. the client reconnects as libheapclient does (its slot, the spans it
 *      still holds, the last large object it got), and what the daemon hands
 *      out next (spans, large objects) overlaps no live object: every free
 *      slot of each granted span is allocated and written, and the old
 *      objects read back unchanged;
 *   5. once every object it knows of is freed, the slot given up and a sweep
 *      cycle run (large_sweep with no grace), no page is in use and no object
 *      is counted: the operation cut short leaked nothing and left nothing in
 *      quarantine.
 * Recovery is killed too. After a kill at N, a forked daemon_open runs with
 * the hook at M, for every M until one completes, each from the same state
 * (the scenario run again up to the kill at N); and once as a chain, M = 1,
 * 2, ... each on what the last one left. Then the arena is reopened and
 * checked as above. By default this is done for the few N whose recovery
 * commits most. With CRASH_LONG=1 (test_crash_long) it is done for every N,
 * the recovery that follows each killed recovery is killed at every commit
 * too, and the scenarios are bigger.
 *
 * Code that runs in a forked copy never asserts: it reports through a pipe,
 * and this process judges.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bitmap.h"
#include "commit.h"
#include "daemon.h"
#include "harness/check_main.h"
#include "harness/inproc.h"
#include "harness/raw.h"
#include "harness/tmpdir.h"
#include "large.h"
#include "session.h"
#include "sizeclass.h"
#include "span.h"
#include "stats.h"
#include "wire.h"

#define MAX_OBJS 4096
#define MAX_SPANS 512
#define COUNT_ONLY UINT64_MAX /* the hook armed but never reached: commits are counted */
#define CHILD_FAILED 3        /* a forked copy's exit status when its work went wrong */
#define RECOVERY_PICKS 3      /* kill points whose recovery is killed, by default */

/* ---- the world: the daemon, and what its client knows ---- */

/* An object the client made live: a slot of a small span, or a large object (k == 0). */
typedef struct obj {
	uint32_t span;
	uint32_t k;       /* size class; 0: a large object */
	uint32_t idx;     /* slot in a small span */
	uint32_t npages;  /* a large object's pages */
	uint32_t gen;     /* a large object's generation (for LargeFree) */
	uint64_t seed;    /* its contents: pattern(seed) */
} obj_t;

typedef struct world {
	daemon_t d;
	session_t *s;                 /* the client's session (NULL: none open) */
	pid_t client;                 /* the client's process: this one */
	uint32_t slot;
	obj_t objs[MAX_OBJS];         /* live before the operation */
	size_t nobjs;
	obj_t extra[MAX_OBJS];        /* made live after recovery; freed at the end, not checked */
	size_t nextra;
	uint32_t held[MAX_SPANS];     /* spans the client holds before the operation */
	size_t nheld;
	uint32_t gone[MAX_SPANS];     /* of those, the ones the operation hands back */
	size_t ngone;
	int bye;                      /* the operation is a Bye: every span goes back */
	uint32_t large_received;      /* span + 1 of the last LargeAlloc reply */
	uint32_t dead_slot;           /* slot of a process that exits before the operation */
	pid_t dead_pid;
	uint32_t target;              /* a span the scenario's own checks look at */
	uint32_t target_gen;
	uint32_t marks[8];            /* spans a scenario's checks look at */
	uint64_t expect;              /* what a scenario's operation should return */
	uint64_t seed;                /* next object's pattern */
} world_t;

/* What a forked copy reports. */
typedef struct outcome {
	int32_t status;               /* 0, or its work went wrong (why) */
	char why[160];
	uint64_t commits;             /* commits it made, as its hook counted them */
	uint32_t nspans;              /* spans a Refill granted */
	uint32_t spans[HEAPD_MAX_REFILL_SPANS];
	uint32_t large;               /* span + 1 of a LargeAlloc's object, 0: none */
	uint64_t value[2];            /* what the operation returned */
} outcome_t;

typedef struct scenario {
	const char *name;
	void (*setup)(world_t *w);                     /* here, unarmed: may assert */
	int (*op)(world_t *w, outcome_t *o);           /* in the forked copy, armed */
	void (*after)(world_t *w, int completed, const outcome_t *o); /* its own checks */
	int setup_checks;                              /* setup runs daemon_check itself */
} scenario_t;

/* One run of a scenario. */
typedef struct run {
	uint64_t op_at;       /* the operation's hook: kill at this commit, or COUNT_ONLY */
	uint64_t rec_at[2];   /* then recoveries killed at these commits (0: none) */
	int chain;            /* then recoveries killed at 1, 2, ... until one completes */
	int op_killed;
	int rec_killed[2];
	uint32_t chain_kills;
	outcome_t out;
	uint64_t rec_commits; /* commits of the recovery the final reopen ran */
} run_t;

static world_t W;
static char dir[PATH_MAX];
static char arena[PATH_MAX + 16];
static char where[256];      /* the run under way, for failure messages */
static int long_run;         /* CRASH_LONG: every N's recovery killed, bigger scenarios */
static uint32_t scale = 1;
static uint32_t k_one, k_two; /* size classes of 1-page and 2-page spans */

/* An assertion that costs nothing when it holds (ck_assert_msg records every one that passes). */
#define CHECK(cond, ...)                                                    \
	do {                                                                \
		if (!(cond))                                                \
			ck_abort_msg("%s: %s", where, fmtmsg(__VA_ARGS__)); \
	} while (0)

static const char *fmtmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *fmtmsg(const char *fmt, ...)
{
	static char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

static int contains(const uint32_t *a, size_t n, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] == x)
			return 1;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* ---- patterns ---- */

static inline uint64_t pattern_word(uint64_t seed, size_t i)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ULL + i;
	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ULL;
}

static uint8_t *obj_addr(const world_t *w, const obj_t *o)
{
	uint8_t *p = segment_page_addr(&w->d.seg, o->span);
	return o->k ? p + (size_t)o->idx * sizeclass_size[o->k] : p;
}

static size_t obj_size(const obj_t *o)
{
	return o->k ? sizeclass_size[o->k] : (size_t)o->npages << HEAPD_PAGE_SHIFT;
}

static uint32_t obj_npages(const obj_t *o)
{
	return o->k ? sizeclass_npages[o->k] : o->npages;
}

static void pattern_write(const world_t *w, const obj_t *o)
{
	uint64_t *q = (uint64_t *)obj_addr(w, o);
	for (size_t i = 0; i < obj_size(o) / 8; i++)
		q[i] = pattern_word(o->seed, i);
}

/* The first word of o that lost its pattern, or SIZE_MAX. */
static size_t pattern_bad(const world_t *w, const obj_t *o)
{
	const uint64_t *q = (const uint64_t *)obj_addr(w, o);
	for (size_t i = 0; i < obj_size(o) / 8; i++)
		if (q[i] != pattern_word(o->seed, i))
			return i;
	return SIZE_MAX;
}

/* ---- the daemon in-process ---- */

static int open_arena(daemon_t *d, char *err, size_t errlen)
{
	return hin_open(d, arena, (long_run ? 64ULL : 16ULL) << 20, 8, err, errlen);
}

static size_t problems(daemon_t *d)
{
	return hin_problems(d, where);
}


/* A large object is live: LARGE span starting there, alloc bit 0 set, free bit 0 clear. */
static int large_live(const daemon_t *d, uint32_t id)
{
	const shm_span_t *s = &d->seg.spans[id];
	return id < d->seg.hdr->npages_grown && s->state == SPAN_LARGE && s->start == id &&
	       hin_alloc_bit(d, id, 0) && !hin_free_bit(d, id, 0);
}

/* The in-use spans, on stderr: what a failed leak check found. */
static void dump_inuse(const daemon_t *d)
{
	span_walk_t wk;
	uint32_t p, n, shown = 0;
	int kind;
	span_walk_start(&wk, &d->seg, 0);
	while ((kind = span_walk_next(&wk, &p, &n)) != SPAN_WALK_END && shown < 16) {
		const shm_span_t *s = &d->seg.spans[p];
		if (kind != SPAN_WALK_SPAN || s->state == SPAN_FREE)
			continue;
		fprintf(stderr, "%s: in use: span %u pages %u state %u class %u owner %u list %u "
		                "alloc0 %#llx free0 %#llx\n",
		        where, p, n, s->state, s->sizeclass, s->owner, s->list,
		        (unsigned long long)bitmap_load(segment_allocbits(&d->seg, p)),
		        (unsigned long long)bitmap_load(hin_freebits(d, p)));
		shown++;
	}
}

/* ---- frames ---- */

static const char *reply_text(const Heapd__Envelope *r)
{
	if (!r)
		return "no reply";
	if (r->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		return r->error->message;
	return "an unexpected reply";
}

/* ---- the client's side, here (asserts) ---- */

/* A session of this process; with prev_slot + 1, a reconnect to that slot. */
static session_t *connect_client(world_t *w, uint32_t prev, uint32_t *held, size_t nheld,
                                 uint32_t large_received)
{
	hraw_req_t req;
	Heapd__Envelope *r;
	session_t *s = hin_hello(&w->d, getpid(), hraw_req_hello(&req, 0, prev, held, nheld,
	                                                         large_received), &r);
	CHECK(s != NULL, "session_new");
	CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_HELLO_REPLY, "Hello: %s", reply_text(r));
	if (prev)
		CHECK(r->hello_reply->slot == prev - 1, "reconnect to slot %u got slot %u", prev - 1,
		      r->hello_reply->slot);
	wire_free(r);
	return s;
}

/* The client hands every span back with a Bye frame, and goes. */
static void bye(session_t *s)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(s, hraw_req_empty(&req, HEAPD__ENVELOPE__MSG_BYE), NULL);
	CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_OK, "Bye: %s", reply_text(r));
	wire_free(r);
	hin_lose(s);
}

static void held_add(world_t *w, uint32_t id)
{
	CHECK(w->nheld < MAX_SPANS, "more than %d spans held", MAX_SPANS);
	w->held[w->nheld++] = id;
}

static void held_del(world_t *w, uint32_t id)
{
	for (size_t i = 0; i < w->nheld; i++)
		if (w->held[i] == id) {
			w->held[i] = w->held[--w->nheld];
			return;
		}
	CHECK(0, "span %u is not held", id);
}

/* A Refill of count spans of class k; they are held, and in ids in address order. */
static void take(world_t *w, uint32_t k, uint32_t count, uint32_t *ids)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_refill(&req, k, count, NULL, 0), NULL);
	CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_REFILL_REPLY, "refill: %s", reply_text(r));
	CHECK(r->refill_reply->n_spans == count, "refill of %u got %zu", count,
	      r->refill_reply->n_spans);
	for (uint32_t i = 0; i < count; i++) {
		ids[i] = r->refill_reply->spans[i]->span;
		held_add(w, ids[i]);
	}
	wire_free(r);
	qsort(ids, count, sizeof(uint32_t), cmp_u32);
}

/* The spans ids[0..n) lie one after the other (the scenario's layout depends on it). */
static void contiguous(const world_t *w, const uint32_t *ids, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		CHECK(ids[i] + w->d.seg.spans[ids[i]].npages == ids[i + 1],
		      "spans %u and %u are not neighbours", ids[i], ids[i + 1]);
}

/* Hand spans back (a Refill's release list). */
static void give_back(world_t *w, uint32_t *ids, size_t n)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_refill(&req, 0, 0, ids, n), NULL);
	CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_REFILL_REPLY, "release: %s", reply_text(r));
	wire_free(r);
	for (size_t i = 0; i < n; i++)
		held_del(w, ids[i]);
}

static obj_t *obj_add(obj_t *a, size_t *n)
{
	CHECK(*n < MAX_OBJS, "more than %d objects", MAX_OBJS);
	memset(&a[*n], 0, sizeof(obj_t));
	return &a[(*n)++];
}

/* The span's holder allocates objects [from, to) of small span id and writes them. */
static void alloc_objs(world_t *w, uint32_t id, uint32_t from, uint32_t to)
{
	const shm_span_t *s = &w->d.seg.spans[id];
	uint32_t k = s->sizeclass;
	uint64_t *a = segment_allocbits(&w->d.seg, id);
	CHECK(s->state == SPAN_SMALL && to <= sizeclass_nelems[k], "objects up to %u of span %u", to,
	      id);
	for (uint32_t i = from; i < to; i++) {
		uint64_t bit = 1ULL << (i & 63);
		CHECK(!(bitmap_load(&a[i >> 6]) & bit), "object %u of span %u is taken", i, id);
		bitmap_store(&a[i >> 6], bitmap_load(&a[i >> 6]) | bit);
		obj_t *o = obj_add(w->objs, &w->nobjs);
		o->span = id;
		o->k = k;
		o->idx = i;
		o->seed = ++w->seed;
		pattern_write(w, o);
	}
}

/* Another process frees the known objects [from, to) of small span id. */
static void free_objs(world_t *w, uint32_t id, uint32_t from, uint32_t to)
{
	for (size_t i = 0; i < w->nobjs;) {
		obj_t *o = &w->objs[i];
		if (o->k && o->span == id && o->idx >= from && o->idx < to) {
			CHECK(bitmap_mark_free(segment_allocbits(&w->d.seg, id), hin_freebits(&w->d, id),
			                       o->idx) == BITMAP_FREED, "free of object %u of span %u", o->idx, id);
			*o = w->objs[--w->nobjs];
		} else {
			i++;
		}
	}
}

/* A LargeAlloc; the object is written and known. Returns its span. */
static uint32_t large_obj(world_t *w, uint64_t size, uint64_t align)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_large_alloc(&req, size, align, 0, NULL, 0), NULL);
	CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY, "large alloc: %s",
	      reply_text(r));
	obj_t *o = obj_add(w->objs, &w->nobjs);
	o->span = r->large_alloc_reply->span;
	o->gen = r->large_alloc_reply->gen;
	o->npages = w->d.seg.spans[o->span].npages;
	o->seed = ++w->seed;
	wire_free(r);
	pattern_write(w, o);
	w->large_received = o->span + 1;
	return o->span;
}

static obj_t *find_large(world_t *w, uint32_t span)
{
	for (size_t i = 0; i < w->nobjs; i++)
		if (w->objs[i].k == 0 && w->objs[i].span == span)
			return &w->objs[i];
	ck_abort_msg("no large object at span %u", span);
	return NULL;
}

/* The client frees large object span: its free bit, then (send) its LargeFree. Returns its gen. */
static uint32_t free_large(world_t *w, uint32_t span, int send)
{
	obj_t *o = find_large(w, span);
	uint32_t gen = o->gen;
	CHECK(bitmap_mark_free(segment_allocbits(&w->d.seg, span), hin_freebits(&w->d, span), 0) ==
	      BITMAP_FREED, "free of the large object at span %u", span);
	*o = w->objs[--w->nobjs];
	if (send) {
		hraw_req_t req;
		Heapd__Envelope *r = hin_call(w->s, hraw_req_large_free(&req, span, gen), NULL);
		CHECK(r == NULL, "LargeFree answered: %s", reply_text(r));
	}
	return gen;
}

/* ---- forked copies ---- */

static void arm(uint64_t at)
{
	atomic_store(&shm_commits, 0);
	atomic_store(&shm_commit_kill_at, at);
}

static uint64_t disarm(void)
{
	atomic_store(&shm_commit_kill_at, 0);
	return atomic_load(&shm_commits);
}

static int child_failed(outcome_t *o, Heapd__Envelope *r, const char *what)
{
	snprintf(o->why, sizeof(o->why), "%s: %s", what, reply_text(r));
	wire_free(r);
	return -1;
}

typedef int (*child_fn_t)(const void *arg, outcome_t *o);

/*
 * Run fn in a forked copy of this process with the hook armed at `at`.
 * Returns 1 if the hook killed it; 0 if fn completed, with its outcome in
 * *out; anything else fails the test.
 */
static int run_child(uint64_t at, child_fn_t fn, const void *arg, outcome_t *out, const char *what)
{
	int p[2];
	CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		static outcome_t o;
		close(p[0]);
		arm(at);
		o.status = fn(arg, &o);
		o.commits = disarm();
		ssize_t n = write(p[1], &o, sizeof(o));
		_exit(n == (ssize_t)sizeof(o) && o.status == 0 ? 0 : CHILD_FAILED);
	}
	close(p[1]);
	memset(out, 0, sizeof(*out));
	size_t got = 0;
	while (got < sizeof(*out)) {
		ssize_t n = read(p[0], (char *)out + got, sizeof(*out) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == SHM_COMMIT_KILLED && got == 0)
		return 1;
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && got == sizeof(*out),
	      "%s: the forked daemon %s %d: %s", what, WIFSIGNALED(st) ? "died of signal" : "exited",
	      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), got ? out->why : "(no report)");
	return 0;
}

static int child_op(const void *arg, outcome_t *o)
{
	const scenario_t *sc = arg;
	return sc->op(&W, o);
}

static int child_reopen(const void *arg, outcome_t *o)
{
	(void)arg;
	return open_arena(&W.d, o->why, sizeof(o->why)); /* killed, or done: never closed */
}

/* ---- after recovery: the checks ---- */

static void check_obj(world_t *w, const obj_t *o)
{
	const daemon_t *d = &w->d;
	const shm_span_t *s = &d->seg.spans[o->span];
	if (o->k) {
		CHECK(s->state == SPAN_SMALL && s->start == o->span && s->sizeclass == o->k,
		      "object %u of span %u (class %u) lost its span: state %u, start %u, class %u",
		      o->idx, o->span, o->k, s->state, s->start, s->sizeclass);
		CHECK(hin_alloc_bit(d, o->span, o->idx), "object %u of span %u: alloc bit clear", o->idx,
		      o->span);
		CHECK(!hin_free_bit(d, o->span, o->idx), "object %u of span %u: free bit set", o->idx, o->span);
	} else {
		CHECK(s->state == SPAN_LARGE && s->start == o->span && s->npages == o->npages,
		      "large object at span %u (%u pages) lost its span: state %u, start %u, %u pages",
		      o->span, o->npages, s->state, s->start, s->npages);
		CHECK(hin_alloc_bit(d, o->span, 0) && !hin_free_bit(d, o->span, 0),
		      "large object at span %u: alloc bit %d, free bit %d", o->span,
		      hin_alloc_bit(d, o->span, 0), hin_free_bit(d, o->span, 0));
	}
	size_t bad = pattern_bad(w, o);
	CHECK(bad == SIZE_MAX, "object %u of span %u (class %u) overwritten at byte %zu", o->idx,
	      o->span, o->k, bad * 8);
}

/* Spans the client holds, and a dead process's slot (check 3). */
static void check_owners(world_t *w, int completed, const outcome_t *o)
{
	const segment_t *seg = &w->d.seg;
	uint32_t me = w->slot + 1;
	int mine = seg->clients[w->slot].pid == (uint32_t)getpid();

	/* Bye too leaves the slot the process's (with no span), until it exits */
	CHECK(mine, "the client's slot %u was freed, and its process lives", w->slot);
	for (size_t i = 0; i < w->nheld; i++) {
		uint32_t id = w->held[i];
		const shm_span_t *s = &seg->spans[id];
		int owned = s->state == SPAN_SMALL && s->start == id && s->owner == me;
		int granted = completed && contains(o->spans, o->nspans, id);
		if (w->bye || contains(w->gone, w->ngone, id)) {
			if (completed && !granted)
				CHECK(!owned, "span %u was handed back, and it is still the client's", id);
		} else {
			CHECK(owned && s->list == SPANLIST_CLIENT,
			      "span %u, which the client holds, is not its own: state %u, owner %u, list %u",
			      id, s->state, s->owner, s->list);
		}
	}
	if (completed)
		for (uint32_t i = 0; i < o->nspans; i++) {
			const shm_span_t *s = &seg->spans[o->spans[i]];
			CHECK(s->state == SPAN_SMALL && s->owner == me,
			      "span %u, granted, is not the client's: state %u, owner %u", o->spans[i],
			      s->state, s->owner);
		}
	span_walk_t wk;
	uint32_t p, n;
	int kind;
	span_walk_start(&wk, seg, 0);
	while ((kind = span_walk_next(&wk, &p, &n)) != SPAN_WALK_END) {
		const shm_span_t *s = &seg->spans[p];
		if (kind == SPAN_WALK_SPAN && s->state != SPAN_FREE && s->owner != 0)
			CHECK(mine && s->owner == me, "span %u is owned by slot %u", p, s->owner - 1);
	}
	if (w->dead_slot != HEAPD_NIL) {
		CHECK(seg->clients[w->dead_slot].pid == 0, "slot %u of the exited process %d is in use",
		      w->dead_slot, (int)w->dead_pid);
		CHECK(w->d.clients.slots[w->dead_slot].spans.count == 0,
		      "slot %u of the exited process lists %u spans", w->dead_slot,
		      w->d.clients.slots[w->dead_slot].spans.count);
	}
}

/* Pages [a, a + na) and [b, b + nb) overlap. */
static int overlap(uint32_t a, uint32_t na, uint32_t b, uint32_t nb)
{
	return a < b + nb && b < a + na;
}

/* A span or large object handed out now overlaps no live object, but shares a span with its class. */
static void check_fresh(world_t *w, uint32_t id, uint32_t k)
{
	uint32_t np = w->d.seg.spans[id].npages;
	for (size_t i = 0; i < w->nobjs; i++) {
		const obj_t *o = &w->objs[i];
		if (!overlap(id, np, o->span, obj_npages(o)))
			continue;
		CHECK(k != 0 && o->k == k && o->span == id,
		      "%s at span %u (%u pages) overlaps the live object %u of span %u (class %u)",
		      k ? "a granted span" : "a new large object", id, np, o->idx, o->span, o->k);
		CHECK(hin_alloc_bit(&w->d, id, o->idx), "span %u was granted with live object %u free", id,
		      o->idx);
	}
}

/* The client allocates every free slot of granted span id and writes it. */
static void fill_span(world_t *w, uint32_t id, uint32_t k)
{
	uint64_t *a = segment_allocbits(&w->d.seg, id);
	for (uint32_t i = 0; i < sizeclass_nelems[k]; i++) {
		uint64_t bit = 1ULL << (i & 63);
		if (bitmap_load(&a[i >> 6]) & bit)
			continue;
		CHECK(!hin_free_bit(&w->d, id, i), "granted span %u: slot %u has a free bit", id, i);
		bitmap_store(&a[i >> 6], bitmap_load(&a[i >> 6]) | bit);
		obj_t *o = obj_add(w->extra, &w->nextra);
		o->span = id;
		o->k = k;
		o->idx = i;
		o->seed = ++w->seed;
		pattern_write(w, o);
	}
}

/* Check 4: what the daemon hands out next overlaps nothing live. */
static void check_handouts(world_t *w, session_t *s, const uint32_t *held, size_t nheld)
{
	uint32_t classes[16], nk = 0;
	classes[nk++] = k_one;
	classes[nk++] = k_two;
	for (size_t i = 0; i < w->nobjs && nk < 16; i++)
		if (w->objs[i].k && !contains(classes, nk, w->objs[i].k))
			classes[nk++] = w->objs[i].k;
	for (uint32_t c = 0; c < nk; c++) {
		uint32_t k = classes[c];
		hraw_req_t req;
		Heapd__Envelope *r = hin_call(s, hraw_req_refill(&req, k, 3, NULL, 0), NULL);
		CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_REFILL_REPLY &&
		      r->refill_reply->n_spans > 0, "refill of class %u after recovery: %s", k,
		      reply_text(r));
		for (size_t i = 0; i < r->refill_reply->n_spans; i++) {
			uint32_t id = r->refill_reply->spans[i]->span;
			const shm_span_t *sp = &w->d.seg.spans[id];
			CHECK(!contains(held, nheld, id), "span %u granted while the client holds it", id);
			CHECK(sp->state == SPAN_SMALL && sp->sizeclass == k && sp->owner == s->slot + 1,
			      "granted span %u: state %u, class %u, owner %u", id, sp->state, sp->sizeclass,
			      sp->owner);
			check_fresh(w, id, k);
			fill_span(w, id, k);
		}
		wire_free(r);
	}
	const uint64_t sizes[2][2] = { { 3 * HEAPD_PAGE_SIZE, 0 }, { 65536, 65536 } };
	for (int i = 0; i < 2; i++) {
		hraw_req_t req;
		Heapd__Envelope *r = hin_call(s, hraw_req_large_alloc(&req, sizes[i][0], sizes[i][1], 0,
		                                                      NULL, 0), NULL);
		CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY,
		      "large alloc after recovery: %s", reply_text(r));
		uint32_t id = r->large_alloc_reply->span;
		wire_free(r);
		check_fresh(w, id, 0);
		obj_t *o = obj_add(w->extra, &w->nextra);
		o->span = id;
		o->npages = w->d.seg.spans[id].npages;
		o->seed = ++w->seed;
		pattern_write(w, o);
	}
	for (size_t i = 0; i < w->nobjs; i++)
		check_obj(w, &w->objs[i]);
}

/* Check 5: with every known object freed and the slot given up, nothing is left in use. */
static void check_no_leak(world_t *w, session_t *s)
{
	daemon_t *d = &w->d;
	for (int pass = 0; pass < 2; pass++) {
		obj_t *a = pass ? w->extra : w->objs;
		size_t n = pass ? w->nextra : w->nobjs;
		for (size_t i = 0; i < n; i++)
			CHECK(bitmap_mark_free(segment_allocbits(&d->seg, a[i].span), hin_freebits(d, a[i].span),
			                       a[i].k ? a[i].idx : 0) == BITMAP_FREED,
			      "object %u of span %u could not be freed", a[i].idx, a[i].span);
	}
	bye(s);
	sweeper_cycle(&d->sweeper, NULL);
	large_sweep(&d->central, 0, NULL); /* the LargeFrees were never sent: no grace */
	if (d->seg.hdr->pages_inuse != 0)
		dump_inuse(d);
	CHECK(d->seg.hdr->pages_inuse == 0, "%llu pages still in use after everything was freed",
	      (unsigned long long)d->seg.hdr->pages_inuse);
	stats_t st;
	stats_collect(d, &st);
	CHECK(st.objects_in_use == 0 && st.spans_in_use == 0,
	      "stats count %llu objects in %llu spans after everything was freed",
	      (unsigned long long)st.objects_in_use, (unsigned long long)st.spans_in_use);
	CHECK(problems(d) == 0, "daemon_check after freeing everything");
}

static void verify(const scenario_t *sc, world_t *w, const run_t *r)
{
	int completed = !r->op_killed;
	const outcome_t *o = &r->out;
	daemon_t *d = &w->d;

	CHECK(problems(d) == 0, "daemon_check after recovery");
	for (size_t i = 0; i < w->nobjs; i++)
		check_obj(w, &w->objs[i]);
	check_owners(w, completed, o);
	if (sc->after)
		sc->after(w, completed, o);

	/* The client reconnects with what it knows it holds. */
	uint32_t held[MAX_SPANS + HEAPD_MAX_REFILL_SPANS];
	size_t nheld = 0;
	if (!w->bye)
		for (size_t i = 0; i < w->nheld; i++)
			if (!contains(w->gone, w->ngone, w->held[i]))
				held[nheld++] = w->held[i];
	if (completed)
		for (uint32_t i = 0; i < o->nspans; i++)
			held[nheld++] = o->spans[i];
	uint32_t large_received = completed && o->large ? o->large : w->large_received;
	session_t *s;
	if (d->seg.clients[w->slot].pid == (uint32_t)getpid()) {
		s = connect_client(w, w->slot + 1, held, nheld, large_received);
		CHECK(d->clients.slots[w->slot].spans.count == nheld,
		      "reconnected with %zu spans, the slot lists %u", nheld,
		      d->clients.slots[w->slot].spans.count);
		for (size_t i = 0; i < nheld; i++)
			CHECK(clients_owns(&d->clients, w->slot, held[i]),
			      "span %u, held across the restart, is not the client's", held[i]);
	} else {
		s = connect_client(w, 0, NULL, 0, 0);
	}
	if (completed && o->large) {
		uint32_t id = o->large - 1;
		CHECK(large_live(d, id) && d->seg.spans[id].owner == 0,
		      "the large object at span %u, whose reply arrived, is not the client's", id);
		obj_t *x = obj_add(w->extra, &w->nextra);
		x->span = id;
		x->npages = d->seg.spans[id].npages;
	}
	CHECK(problems(d) == 0, "daemon_check after the reconnect");
	check_handouts(w, s, held, nheld);
	check_no_leak(w, s);
}

/* ---- the driver ---- */

static void world_reset(world_t *w)
{
	w->s = NULL;
	w->client = getpid();
	w->nobjs = w->nextra = w->nheld = w->ngone = 0;
	w->bye = 0;
	w->large_received = 0;
	w->dead_slot = HEAPD_NIL;
	w->dead_pid = 0;
	w->target = HEAPD_NIL;
	w->target_gen = 0;
	memset(w->marks, 0xff, sizeof(w->marks));
	w->seed = 0;
	w->expect = 0;
}

static const char *at_text(uint64_t at, char *buf, size_t len)
{
	if (at == COUNT_ONLY)
		snprintf(buf, len, "never");
	else
		snprintf(buf, len, "%llu", (unsigned long long)at);
	return buf;
}

/* One run: setup, the operation killed (or not), recovery killed (or not), reopen, checks. */
static void one_run(const scenario_t *sc, run_t *r)
{
	world_t *w = &W;
	char a[24], err[512];
	outcome_t ro;

	int n = snprintf(where, sizeof(where), "%s, operation killed at commit %s", sc->name,
	                 at_text(r->op_at, a, sizeof(a)));
	for (int i = 0; i < 2 && r->rec_at[i]; i++)
		n += snprintf(where + n, sizeof(where) - (size_t)n, "%s at %llu",
		              i ? ", the next recovery" : ", its recovery", (unsigned long long)r->rec_at[i]);
	if (r->chain)
		snprintf(where + n, sizeof(where) - (size_t)n, ", then recoveries killed at 1, 2, ...");
	world_reset(w);
	segment_remove(arena); /* what a failed test left */
	int rc = open_arena(&w->d, err, sizeof(err));
	CHECK(rc == 0, "daemon_open: %s", err);
	w->s = connect_client(w, 0, NULL, 0, 0);
	w->slot = w->s->slot;
	sc->setup(w);
	if (!sc->setup_checks)
		CHECK(problems(&w->d) == 0, "daemon_check after the setup");

	r->op_killed = run_child(r->op_at, child_op, sc, &r->out, "the operation");
	/* this process's view of the daemon is stale now: drop it without a write */
	if (w->s)
		hin_lose(w->s);
	w->s = NULL;
	daemon_close(&w->d, 0);

	for (int i = 0; i < 2; i++)
		if (r->rec_at[i])
			r->rec_killed[i] = run_child(r->rec_at[i], child_reopen, NULL, &ro, "recovery");
	if (r->chain)
		for (uint64_t m = 1; run_child(m, child_reopen, NULL, &ro, "recovery"); m++) {
			r->chain_kills++;
			CHECK(m < 100000, "recovery never completes");
		}

	arm(COUNT_ONLY);
	rc = open_arena(&w->d, err, sizeof(err));
	r->rec_commits = disarm();
	CHECK(rc == 0, "reopen: %s", err);
	verify(sc, w, r);
	daemon_close(&w->d, 1);
	CHECK(segment_remove(arena) == 0, "segment_remove");
}

/* What a scenario covered, for its summary line. */
typedef struct tally {
	uint64_t rec_points;     /* recoveries killed, each from a kill of the operation */
	uint64_t second_points;  /* recoveries killed after a killed recovery */
	uint64_t chain_kills;    /* recoveries killed in chains */
	uint64_t chains;
} tally_t;

/*
 * After a kill of the operation at op_at, kill its recovery at every commit m
 * (it makes `commits`) and, with deeper, the recovery after each of those at
 * every commit too; then one chain.
 */
static void kill_recovery(const scenario_t *sc, uint64_t op_at, uint64_t commits, int deeper,
                          tally_t *t)
{
	for (uint64_t m = 1; m <= commits + 1; m++) {
		run_t r = { .op_at = op_at, .rec_at = { m, 0 } };
		one_run(sc, &r);
		CHECK(r.rec_killed[0] == (m <= commits), "the recovery made %llu commits when counted",
		      (unsigned long long)commits);
		if (!r.rec_killed[0])
			break;
		t->rec_points++;
		uint64_t next = r.rec_commits;
		for (uint64_t m2 = 1; deeper && m2 <= next + 1; m2++) {
			run_t r2 = { .op_at = op_at, .rec_at = { m, m2 } };
			one_run(sc, &r2);
			CHECK(r2.rec_killed[1] == (m2 <= next),
			      "the recovery after a killed one made %llu commits when counted",
			      (unsigned long long)next);
			t->second_points += r2.rec_killed[1];
		}
	}
	run_t c = { .op_at = op_at, .chain = 1 };
	one_run(sc, &c);
	t->chain_kills += c.chain_kills;
	t->chains++;
}

static void run_scenario(const scenario_t *sc)
{
	run_t first = { .op_at = COUNT_ONLY };
	one_run(sc, &first);
	uint64_t total = first.out.commits;
	CHECK(total > 0, "the operation made no commit");

	/* rec[n]: commits of the recovery after a kill at n (total + 1: after the completed operation) */
	uint64_t *rec = calloc(total + 2, sizeof(uint64_t));
	ck_assert_ptr_nonnull(rec);
	rec[total + 1] = first.rec_commits;
	for (uint64_t n = 1; n <= total; n++) {
		run_t r = { .op_at = n };
		one_run(sc, &r);
		CHECK(r.op_killed, "the operation made %llu commits when counted",
		      (unsigned long long)total);
		rec[n] = r.rec_commits;
	}

	/* Whose recovery is killed: every kill point's, or those of the few whose recovery commits most. */
	uint64_t *picks = calloc(total + 1, sizeof(uint64_t)), npicks = 0, max_rec = 0;
	ck_assert_ptr_nonnull(picks);
	for (uint64_t n = 1; n <= total + 1; n++)
		if (rec[n] > max_rec)
			max_rec = rec[n];
	for (uint64_t i = 0; i < (long_run ? total + 1 : RECOVERY_PICKS); i++) {
		uint64_t best = 0;
		for (uint64_t n = 1; n <= total + 1; n++) {
			int taken = 0;
			for (uint64_t j = 0; j < npicks; j++)
				taken |= picks[j] == n;
			if (!taken && (long_run || rec[n] > 0) && (best == 0 || rec[n] > rec[best]))
				best = n;
		}
		if (best)
			picks[npicks++] = best;
	}

	tally_t t = { 0 };
	for (uint64_t i = 0; i < npicks; i++)
		kill_recovery(sc, picks[i] > total ? COUNT_ONLY : picks[i], rec[picks[i]], long_run, &t);
	fprintf(stderr, "test_crash: %s: the operation killed at each of its %llu commits; recovery "
	                "(up to %llu commits) killed at %llu points after %llu of them, %llu more "
	                "after a killed recovery, %llu in %llu chains\n",
	        sc->name, (unsigned long long)total, (unsigned long long)max_rec,
	        (unsigned long long)t.rec_points, (unsigned long long)npicks,
	        (unsigned long long)t.second_points, (unsigned long long)t.chain_kills,
	        (unsigned long long)t.chains);
	free(picks);
	free(rec);
}

/* ---- scenarios ---- */

static int op_refill(world_t *w, outcome_t *o, uint32_t k, uint32_t count, uint32_t *rel,
                     size_t nrel)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_refill(&req, k, count, rel, nrel), NULL);
	if (!r || r->msg_case != HEAPD__ENVELOPE__MSG_REFILL_REPLY)
		return child_failed(o, r, "refill");
	o->nspans = (uint32_t)r->refill_reply->n_spans;
	for (uint32_t i = 0; i < o->nspans; i++)
		o->spans[i] = r->refill_reply->spans[i]->span;
	wire_free(r);
	return count && o->nspans != count ? child_failed(o, NULL, "refill: too few spans") : 0;
}

static int op_large(world_t *w, outcome_t *o, uint64_t size, uint64_t align, uint32_t *rel,
                    size_t nrel)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_large_alloc(&req, size, align, 0, rel, nrel), NULL);
	if (!r || r->msg_case != HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY)
		return child_failed(o, r, "large alloc");
	o->large = r->large_alloc_reply->span + 1;
	wire_free(r);
	return 0;
}

/* a. A refill that carves new spans from a fresh heap: growth, carve, make_small. */
static void setup_nothing(world_t *w)
{
	(void)w;
}

static int op_refill_fresh(world_t *w, outcome_t *o)
{
	return op_refill(w, o, k_one, 4 * scale, NULL, 0);
}

/*
 * a. The same beside live objects, in a heap grown in small chunks whose
 * free tail is too short: growth absorbs the tail into the new pages.
 */
static void setup_refill_grow(world_t *w)
{
	uint32_t ids[8];
	w->d.heap.grow_pages = 16;
	take(w, k_one, 8, ids);
	for (uint32_t i = 0; i < 8; i++)
		alloc_objs(w, ids[i], 0, 3 * (i + 1));
	large_obj(w, 7 * HEAPD_PAGE_SIZE, 0);
	CHECK(w->d.seg.hdr->npages_grown == 16 && w->d.seg.hdr->pages_free == 1,
	      "the setup wants a 16-page heap with a 1-page free tail: %u grown, %llu free",
	      w->d.seg.hdr->npages_grown, (unsigned long long)w->d.seg.hdr->pages_free);
}

static int op_refill_grow(world_t *w, outcome_t *o)
{
	return op_refill(w, o, k_two, 3 * scale, NULL, 0);
}

/*
 * a. Reclaim before growth: the heap (grown 16 pages at a time) is full of
 * spans in central, and P6, P7 and P12 are empty by now; a refill sweeps
 * them back to the page heap and carves from their pages instead of growing.
 */
static void setup_reclaim(world_t *w)
{
	uint32_t p[16];
	w->d.heap.grow_pages = 16;
	take(w, k_one, 16, p);
	for (uint32_t i = 0; i < 16; i++)
		alloc_objs(w, p[i], 0, 1 + i);
	give_back(w, p, 16);
	free_objs(w, p[6], 0, 7);
	free_objs(w, p[7], 0, 8);
	free_objs(w, p[12], 0, 13);
	CHECK(w->d.seg.hdr->npages_grown == 16 && w->d.seg.hdr->pages_free == 0,
	      "the setup wants a full 16-page heap: %u grown, %llu free", w->d.seg.hdr->npages_grown,
	      (unsigned long long)w->d.seg.hdr->pages_free);
}

static int op_reclaim(world_t *w, outcome_t *o)
{
	return op_refill(w, o, k_two, 1, NULL, 0);
}

static void after_reclaim(world_t *w, int completed, const outcome_t *o)
{
	(void)completed;
	(void)o;
	CHECK(w->d.seg.hdr->npages_grown == 16, "the heap grew to %u pages instead of reclaiming",
	      w->d.seg.hdr->npages_grown);
}

/*
 * a. A refill served from central: spans swept this cycle with room, spans
 * still to sweep (partial, and full ones that gained room), then carving.
 */
static void setup_refill_central(world_t *w)
{
	const uint32_t k = 7;
	uint32_t ids[6], n = sizeclass_nelems[k];
	take(w, k, 6, ids);
	alloc_objs(w, ids[0], 0, 10);
	alloc_objs(w, ids[1], 0, n);
	alloc_objs(w, ids[2], 0, 3);
	alloc_objs(w, ids[3], 0, n);
	alloc_objs(w, ids[4], 0, 5);
	alloc_objs(w, ids[5], 0, 20);
	give_back(w, ids, 3);
	free_objs(w, ids[0], 0, 5);
	free_objs(w, ids[1], 20, 30);
	free_objs(w, ids[2], 0, 3);
	central_begin_cycle(&w->d.central); /* those three are unswept now */
	give_back(w, ids + 3, 3);
	free_objs(w, ids[4], 1, 3);
}

static int op_refill_central(world_t *w, outcome_t *o)
{
	return op_refill(w, o, 7, 4 + 4 * scale, NULL, 0);
}

/* Spans the client holds besides a scenario's own, with objects in most: more for Bye to give back. */
static void hold_more(world_t *w, uint32_t n)
{
	uint32_t ids[MAX_SPANS];
	if (n == 0)
		return;
	take(w, k_two, n, ids);
	for (uint32_t i = 0; i < n; i++)
		alloc_objs(w, ids[i], 0, i % sizeclass_nelems[k_two]);
}

/*
 * b. Hand-backs. Seven 1-page spans P0..P6 in a row: P0 partial (kept), P1
 * full, P5 partial, the rest empty; P2 and P4 handed back first, so P3 has
 * free neighbours on both sides, and P6 a free tail after it.
 */
static void setup_handback(world_t *w)
{
	uint32_t p[7];
	hold_more(w, 4 * (scale - 1));
	take(w, k_one, 7, p);
	contiguous(w, p, 7);
	alloc_objs(w, p[0], 0, 10);
	alloc_objs(w, p[1], 0, sizeclass_nelems[k_one]);
	alloc_objs(w, p[5], 0, 7);
	uint32_t holes[2] = { p[2], p[4] };
	give_back(w, holes, 2);
	CHECK(w->d.seg.spans[p[2]].state == SPAN_FREE && w->d.seg.spans[p[4]].state == SPAN_FREE,
	      "the empty spans handed back are not free");
	w->gone[0] = p[3];
	w->gone[1] = p[1];
	w->gone[2] = p[5];
	w->gone[3] = p[6];
	w->ngone = 4;
	w->marks[0] = p[2];
	w->marks[1] = p[3];
}

static int op_release(world_t *w, outcome_t *o)
{
	return op_refill(w, o, 0, 0, w->gone, w->ngone);
}

/* P2 stays free; once P3 is no longer the client's, P2, P3 and P4 are one free span. */
static void after_release(world_t *w, int completed, const outcome_t *o)
{
	const shm_span_t *s = &w->d.seg.spans[w->marks[0]], *p3 = &w->d.seg.spans[w->marks[1]];
	int kept = p3->start == w->marks[1] && p3->state == SPAN_SMALL;
	(void)o;
	CHECK(!(completed && kept), "P3, handed back empty, is still a span");
	CHECK(s->state == SPAN_FREE && s->start == w->marks[0] && s->npages == (kept ? 1u : 3u),
	      "P2 is not a free span of %u pages: state %u, %u pages", kept ? 1u : 3u, s->state,
	      s->npages);
}

static void setup_bye(world_t *w)
{
	setup_handback(w);
	w->ngone = 0;
	w->bye = 1;
}

static int op_bye(world_t *w, outcome_t *o)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_empty(&req, HEAPD__ENVELOPE__MSG_BYE), NULL);
	if (!r || r->msg_case != HEAPD__ENVELOPE__MSG_OK)
		return child_failed(o, r, "Bye");
	wire_free(r);
	return 0;
}

/*
 * b. A reconnect after a restart (readopt): the client lists the spans it
 * still holds, not P1 and P4, and names A as the last large object it got.
 * P1 (empty) and P4 (two live objects) are taken back, and B, whose reply
 * was lost with the daemon, is freed.
 */
static void setup_reconnect(world_t *w)
{
	uint32_t p[5];
	char err[512];
	take(w, k_one, 5, p);
	alloc_objs(w, p[0], 0, 6);
	alloc_objs(w, p[2], 0, 40);
	alloc_objs(w, p[4], 0, 2);
	large_obj(w, 2 * HEAPD_PAGE_SIZE, 0);
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_large_alloc(&req, 3 * HEAPD_PAGE_SIZE, 0, 0, NULL, 0),
	                              NULL);
	CHECK(r && r->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY, "large alloc: %s",
	      reply_text(r));
	w->target = r->large_alloc_reply->span; /* B: this reply never reaches the client */
	wire_free(r);
	hin_lose(w->s);
	w->s = NULL;
	daemon_close(&w->d, 0);
	CHECK(open_arena(&w->d, err, sizeof(err)) == 0, "restart: %s", err);
	CHECK(w->d.clients.slots[w->slot].pending_large == w->target + 1,
	      "B is not pending after the restart");
	w->gone[0] = p[1];
	w->gone[1] = p[4];
	w->ngone = 2;
}

static int op_reconnect(world_t *w, outcome_t *o)
{
	uint32_t held[MAX_SPANS];
	size_t n = 0;
	for (size_t i = 0; i < w->nheld; i++)
		if (!contains(w->gone, w->ngone, w->held[i]))
			held[n++] = w->held[i];
	hraw_req_t req;
	Heapd__Envelope *r;
	w->s = hin_hello(&w->d, w->client, hraw_req_hello(&req, 0, w->slot + 1, held, n,
	                                                  w->large_received), &r);
	if (!w->s)
		return child_failed(o, NULL, "session_new");
	if (!r || r->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY || r->hello_reply->slot != w->slot)
		return child_failed(o, r, "reconnect");
	wire_free(r);
	return 0;
}

static void after_reconnect(world_t *w, int completed, const outcome_t *o)
{
	(void)o;
	const shm_span_t *b = &w->d.seg.spans[w->target];
	if (completed)
		CHECK(!large_live(&w->d, w->target), "B, whose reply was lost, is live");
	else if (large_live(&w->d, w->target))
		CHECK(b->owner == w->slot + 1 &&
		      w->d.clients.slots[w->slot].pending_large == w->target + 1,
		      "B, whose reply was lost, is live and no longer pending: owner %u", b->owner);
}

/*
 * c. A LargeAlloc whose release list frees an empty span first, while the
 * last large object's reply is settled by the frame.
 */
static void setup_large_alloc(world_t *w)
{
	uint32_t s[3];
	take(w, k_one, 3, s);
	alloc_objs(w, s[0], 0, 5);
	alloc_objs(w, s[2], 0, 3);
	large_obj(w, 4 * HEAPD_PAGE_SIZE, 0);
	w->gone[w->ngone++] = s[1];
}

static int op_large_alloc(world_t *w, outcome_t *o)
{
	return op_large(w, o, 5 * HEAPD_PAGE_SIZE + 100, 0, w->gone, w->ngone);
}

/* c. A 64 KiB-aligned LargeAlloc from a free span that is not aligned: head and tail pieces. */
static void setup_large_aligned(world_t *w)
{
	uint32_t s[2];
	take(w, k_one, 2, s);
	alloc_objs(w, s[0], 0, 4);
	uint32_t phase = (uint32_t)(w->d.seg.hdr->pages_off >> HEAPD_PAGE_SHIFT);
	uint32_t l = large_obj(w, HEAPD_PAGE_SIZE, 0);
	if ((l + 1 + phase) % 8 == 0)
		large_obj(w, HEAPD_PAGE_SIZE, 0);
	const shm_header_t *h = w->d.seg.hdr;
	CHECK((h->npages_grown - h->pages_free + phase) % 8 != 0,
	      "the free tail starts 64 KiB-aligned: no head piece to carve");
}

static int op_large_aligned(world_t *w, outcome_t *o)
{
	return op_large(w, o, 100000, 65536, NULL, 0);
}

static void after_large_aligned(world_t *w, int completed, const outcome_t *o)
{
	if (!completed)
		return;
	uint64_t off = w->d.seg.hdr->pages_off + ((uint64_t)(o->large - 1) << HEAPD_PAGE_SHIFT);
	CHECK(off % 65536 == 0, "the aligned large object is at arena offset %#llx",
	      (unsigned long long)off);
}

/* c. A LargeFree of L2 between the freed L1 and L3: it coalesces on both sides. */
static void setup_large_free(world_t *w)
{
	uint32_t s[1], l[5];
	const uint32_t pages[5] = { 3, 2, 4, 2, 3 };
	take(w, k_one, 1, s);
	alloc_objs(w, s[0], 0, 9);
	for (int i = 0; i < 5; i++)
		l[i] = large_obj(w, (uint64_t)pages[i] * HEAPD_PAGE_SIZE, 0);
	contiguous(w, l, 5);
	free_large(w, l[1], 1);
	free_large(w, l[3], 1);
	w->target = l[2];
	w->target_gen = free_large(w, l[2], 0);
	w->marks[0] = l[1];
}

static int op_large_free(world_t *w, outcome_t *o)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(w->s, hraw_req_large_free(&req, w->target, w->target_gen), NULL);
	if (r)
		return child_failed(o, r, "LargeFree");
	return 0;
}

static void after_large_free(world_t *w, int completed, const outcome_t *o)
{
	(void)completed;
	(void)o;
	const shm_span_t *s = &w->d.seg.spans[w->marks[0]];
	CHECK(!large_live(&w->d, w->target), "the large object at %u, freed, is live", w->target);
	CHECK(s->state == SPAN_FREE && s->start == w->marks[0] && s->npages == 8,
	      "L1..L3 are not one free span: span %u state %u, %u pages", w->marks[0], s->state,
	      s->npages);
}

/*
 * d. A sweep cycle: of six 1-page spans in central P0..P5 (after a large
 * object M), P1, P2, P4 and P5 become empty (freed and coalesced: P1 with P2,
 * P4 with P5 and the free tail), P3 loses some objects; and large_sweep frees
 * M, marked free but its LargeFree lost.
 */
static void setup_sweep(world_t *w)
{
	uint32_t p[6], more[MAX_SPANS], nmore = 4 * (scale - 1);
	w->expect = 4;
	if (nmore) {
		/* more spans in central before M: every other one becomes empty */
		take(w, 7, nmore, more);
		for (uint32_t i = 0; i < nmore; i++)
			alloc_objs(w, more[i], 0, 1 + i % 30);
		give_back(w, more, nmore);
		for (uint32_t i = 0; i < nmore; i += 2)
			free_objs(w, more[i], 0, 30);
		w->expect += nmore / 2;
	}
	uint32_t m = large_obj(w, 3 * HEAPD_PAGE_SIZE, 0);
	take(w, k_one, 6, p);
	contiguous(w, p, 6);
	CHECK(p[0] == m + 3, "span P0 is at %u, M at %u", p[0], m);
	const uint32_t objs[6] = { 4, 6, 2, 10, 3, 1 };
	for (int i = 0; i < 6; i++)
		alloc_objs(w, p[i], 0, objs[i]);
	give_back(w, p, 6);
	free_objs(w, p[1], 0, 6);
	free_objs(w, p[2], 0, 2);
	free_objs(w, p[3], 0, 5);
	free_objs(w, p[4], 0, 3);
	free_objs(w, p[5], 0, 1);
	free_large(w, m, 0);
	w->target = m;
	w->marks[0] = p[1];
	w->marks[1] = p[4];
}

static int op_sweep(world_t *w, outcome_t *o)
{
	sweep_result_t res;
	sweeper_cycle(&w->d.sweeper, &res);
	o->value[0] = res.spans_freed;
	o->value[1] = large_sweep(&w->d.central, 0, NULL);
	return 0;
}

static void after_sweep(world_t *w, int completed, const outcome_t *o)
{
	const segment_t *seg = &w->d.seg;
	const shm_span_t *a = &seg->spans[w->marks[0]], *b = &seg->spans[w->marks[1]];
	if (completed)
		CHECK(o->value[0] == w->expect && o->value[1] == 1,
		      "the cycle freed %llu small spans and %llu large ones, not %llu and 1",
		      (unsigned long long)o->value[0], (unsigned long long)o->value[1],
		      (unsigned long long)w->expect);
	CHECK(!large_live(&w->d, w->target), "M, marked free, is live");
	CHECK(seg->spans[w->target].state == SPAN_FREE && seg->spans[w->target].npages == 3,
	      "M's pages are not one free span: state %u, %u pages", seg->spans[w->target].state,
	      seg->spans[w->target].npages);
	CHECK(a->state == SPAN_FREE && a->npages == 2, "P1 and P2 are not one free span: state %u, "
	      "%u pages", a->state, a->npages);
	CHECK(b->state == SPAN_FREE && w->marks[1] + b->npages == seg->hdr->npages_grown,
	      "P4, P5 and the tail are not one free span: state %u, %u pages", b->state, b->npages);
}

/* e. Scavenging: every free span's pages punched out and marked released. */
static void setup_scavenge(world_t *w)
{
	uint32_t p[6];
	take(w, k_one, 6, p);
	contiguous(w, p, 6);
	alloc_objs(w, p[0], 0, 3);
	alloc_objs(w, p[2], 0, 30);
	alloc_objs(w, p[4], 0, 1);
	uint32_t holes[3] = { p[1], p[3], p[5] };
	give_back(w, holes, 3);
	large_obj(w, 5 * HEAPD_PAGE_SIZE, 0);
}

static int op_scavenge(world_t *w, outcome_t *o)
{
	o->value[0] = sweeper_scavenge(&w->d.sweeper, UINT64_MAX);
	return o->value[0] ? 0 : child_failed(o, NULL, "scavenge released nothing");
}

static void after_scavenge(world_t *w, int completed, const outcome_t *o)
{
	const shm_header_t *h = w->d.seg.hdr;
	(void)o;
	CHECK(h->pages_released <= h->pages_free, "%llu pages released of %llu free",
	      (unsigned long long)h->pages_released, (unsigned long long)h->pages_free);
	if (completed)
		CHECK(h->pages_released == h->pages_free, "scavenged, %llu pages released of %llu free",
		      (unsigned long long)h->pages_released, (unsigned long long)h->pages_free);
}

/* e. Carving an aligned object from fully released spans: the pieces stay released. */
static void setup_carve_released(world_t *w)
{
	setup_scavenge(w);
	sweeper_scavenge(&w->d.sweeper, UINT64_MAX);
	CHECK(w->d.seg.hdr->pages_released == w->d.seg.hdr->pages_free, "the setup's scavenge");
}

static int op_carve_released(world_t *w, outcome_t *o)
{
	return op_large(w, o, 3 * HEAPD_PAGE_SIZE, 65536, NULL, 0);
}

/* f. A process dies: daemon_reap gives its spans back (its objects stay live). */
static void setup_reap(world_t *w)
{
	uint32_t mine[2], theirs[HEAPD_MAX_REFILL_SPANS], n, count = 4 * scale;
	int nz[HEAPD_MAX_REFILL_SPANS], go[2];
	char why[160];
	proc_t p;

	take(w, k_one, 2, mine);
	alloc_objs(w, mine[0], 0, 12);
	w->dead_pid = hin_waiting_child(go, &p);
	ck_assert_int_eq(clients_alloc(&w->d.clients, &p, getuid(), &w->dead_slot), 0);
	ck_assert_int_eq(daemon_grant_spans(&w->d, w->dead_slot, 9, count, theirs, nz, &n, why,
	                                    sizeof(why)), 0);
	ck_assert_uint_eq(n, count);
	/* one span empty, one full, the others partly used */
	alloc_objs(w, theirs[1], 0, sizeclass_nelems[9]);
	for (uint32_t i = 2; i < count; i++)
		alloc_objs(w, theirs[i], i % 10, 20);
	CHECK(problems(&w->d) == 0, "daemon_check with the other process alive");
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	close(go[1]);
	ck_assert_int_eq(waitpid(w->dead_pid, NULL, 0), w->dead_pid);
}

static int op_reap(world_t *w, outcome_t *o)
{
	o->value[0] = daemon_reap(&w->d, HEAPD_NIL);
	return o->value[0] == 1 ? 0 : child_failed(o, NULL, "daemon_reap reaped no slot");
}

static const scenario_t sc_refill_fresh = {
	"refill from a fresh heap", setup_nothing, op_refill_fresh, NULL, 0 };
static const scenario_t sc_refill_grow = {
	"refill that grows the heap", setup_refill_grow, op_refill_grow, NULL, 0 };
static const scenario_t sc_refill_central = {
	"refill from central", setup_refill_central, op_refill_central, NULL, 0 };
static const scenario_t sc_release = {
	"refill with a release list", setup_handback, op_release, after_release, 0 };
static const scenario_t sc_bye = { "bye", setup_bye, op_bye, NULL, 0 };
static const scenario_t sc_reclaim = {
	"refill that reclaims before growing", setup_reclaim, op_reclaim, after_reclaim, 0 };
static const scenario_t sc_reconnect = {
	"reconnect after a restart", setup_reconnect, op_reconnect, after_reconnect, 0 };
static const scenario_t sc_large_alloc = {
	"large alloc with a release list", setup_large_alloc, op_large_alloc, NULL, 0 };
static const scenario_t sc_large_aligned = {
	"aligned large alloc", setup_large_aligned, op_large_aligned, after_large_aligned, 0 };
static const scenario_t sc_large_free = {
	"large free", setup_large_free, op_large_free, after_large_free, 0 };
static const scenario_t sc_sweep = { "sweep cycle", setup_sweep, op_sweep, after_sweep, 0 };
static const scenario_t sc_scavenge = {
	"scavenge", setup_scavenge, op_scavenge, after_scavenge, 0 };
static const scenario_t sc_carve_released = {
	"carve from released pages", setup_carve_released, op_carve_released, after_scavenge, 0 };
static const scenario_t sc_reap = { "reap of an exited process", setup_reap, op_reap, NULL, 1 };

START_TEST(test_refill_fresh)
{
	run_scenario(&sc_refill_fresh);
}
END_TEST

START_TEST(test_refill_grow)
{
	run_scenario(&sc_refill_grow);
}
END_TEST

START_TEST(test_reclaim)
{
	run_scenario(&sc_reclaim);
}
END_TEST

START_TEST(test_reconnect)
{
	run_scenario(&sc_reconnect);
}
END_TEST

START_TEST(test_refill_central)
{
	run_scenario(&sc_refill_central);
}
END_TEST

START_TEST(test_release)
{
	run_scenario(&sc_release);
}
END_TEST

START_TEST(test_bye)
{
	run_scenario(&sc_bye);
}
END_TEST

START_TEST(test_large_alloc)
{
	run_scenario(&sc_large_alloc);
}
END_TEST

START_TEST(test_large_aligned)
{
	run_scenario(&sc_large_aligned);
}
END_TEST

START_TEST(test_large_free)
{
	run_scenario(&sc_large_free);
}
END_TEST

START_TEST(test_sweep)
{
	run_scenario(&sc_sweep);
}
END_TEST

START_TEST(test_scavenge)
{
	run_scenario(&sc_scavenge);
}
END_TEST

START_TEST(test_carve_released)
{
	run_scenario(&sc_carve_released);
}
END_TEST

START_TEST(test_reap)
{
	run_scenario(&sc_reap);
}
END_TEST

/* ---- fixture ---- */

static uint32_t class_with_pages(uint32_t npages)
{
	for (uint32_t k = 1; k < SIZECLASS_COUNT; k++)
		if (sizeclass_npages[k] == npages)
			return k;
	ck_abort_msg("no size class of %u pages", npages);
	return 0;
}

static void setup(void)
{
	htmp_make(dir, sizeof(dir), "heapd-crash", HTMP_MEMORY);
	snprintf(arena, sizeof(arena), "%s/arena", dir);
	k_one = 5;
	ck_assert_uint_eq(sizeclass_npages[k_one], 1);
	k_two = class_with_pages(2);
}

static void teardown(void)
{
	htmp_remove(dir);
}

static Suite *crash_suite(void)
{
	const char *l = getenv("CRASH_LONG");
	long_run = l && *l && strcmp(l, "0") != 0;
	scale = long_run ? 4 : 1;

	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("crash points");
	/* unchecked: the runner's own process removes the arena even after a failed test */
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, long_run ? 3600 : 300);
	tcase_add_test(tc, test_refill_fresh);
	tcase_add_test(tc, test_refill_grow);
	tcase_add_test(tc, test_reclaim);
	tcase_add_test(tc, test_refill_central);
	tcase_add_test(tc, test_release);
	tcase_add_test(tc, test_bye);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_large_alloc);
	tcase_add_test(tc, test_large_aligned);
	tcase_add_test(tc, test_large_free);
	tcase_add_test(tc, test_sweep);
	tcase_add_test(tc, test_scavenge);
	tcase_add_test(tc, test_carve_released);
	tcase_add_test(tc, test_reap);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(crash_suite);
