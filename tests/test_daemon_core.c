// SPDX-License-Identifier: MIT
/*
 * test_daemon_core.c - the daemon's core in-process, on a temporary arena,
 * with no socket: sessions are fed frames directly (session_handle_frame)
 * and their replies read back from the output buffer. Covers the sweepgen
 * protocol, reclaim before growth, recovery of half-done changes and dead
 * owners, large objects whose reply was lost with the daemon, and random
 * frames thrown at a session, and the check's findings on span owners.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bitmap.h"
#include "daemon.h"
#include "harness/check_main.h"
#include "harness/heapfx.h"
#include "harness/inproc.h"
#include "harness/raw.h"
#include "harness/tmpdir.h"
#include "harness/util.h"
#include "large.h"
#include "profile.h"
#include "profrec.h"
#include "proc.h"
#include "session.h"
#include "sizeclass.h"
#include "wire.h"

#define MIB (1024ull * 1024)

static char dir[PATH_MAX];
static char arena[PATH_MAX + 16];

static void open_daemon(daemon_t *d, uint64_t arena_bytes)
{
	char err[512];
	int rc = hin_open(d, arena, arena_bytes, 0, err, sizeof(err));
	ck_assert_msg(rc == 0, "daemon_open: %s", err);
}

static void setup(void)
{
	htmp_make(dir, sizeof(dir), "heapd-core", HTMP_DISK);
	snprintf(arena, sizeof(arena), "%s/arena", dir);
}

static void teardown(void)
{
	htmp_remove(dir);
}

/* A swept span of class k for the daemon itself (owner 0, on no list). */
static uint32_t get_span(daemon_t *d, uint32_t k)
{
	uint32_t id;
	int nz;
	if (central_take(&d->central, k, &id, &nz) < 0)
		ck_assert_int_eq(central_carve(&d->central, k, &id, &nz), 0);
	return id;
}

/* Feed req to s, which must take it; its reply (NULL if none). */
static Heapd__Envelope *call(session_t *s, const Heapd__Envelope *req)
{
	int rc;
	Heapd__Envelope *r = hin_call(s, req, &rc);
	ck_assert_int_eq(rc, 0);
	return r;
}

/* A session of this process after its Hello: a client, naming prev_slot1 and large_received, or control. */
static session_t *hello(daemon_t *d, int control, uint32_t prev_slot1, uint32_t large_received)
{
	hraw_req_t req;
	Heapd__Envelope *r;
	session_t *s = hin_hello(d, getpid(), hraw_req_hello(&req, control, prev_slot1, NULL, 0,
	                                                     large_received), &r);
	ck_assert_ptr_nonnull(s);
	ck_assert_msg(r && r->msg_case == HEAPD__ENVELOPE__MSG_HELLO_REPLY, "Hello: %s",
	              r ? "an Error" : "no reply");
	if (prev_slot1)
		ck_assert_uint_eq(r->hello_reply->slot, prev_slot1 - 1);
	wire_free(r);
	return s;
}

static session_t *client(daemon_t *d, int control)
{
	return hello(d, control, 0, 0);
}

/* Reconnect after a restart with prev_slot and large_received; the new session. */
static session_t *reconnect(daemon_t *d, uint32_t slot, uint32_t large_received)
{
	return hello(d, 0, slot + 1, large_received);
}

static Heapd__Envelope *refill(session_t *s, uint32_t k, uint32_t count, uint32_t *rel, size_t nrel)
{
	hraw_req_t req;
	Heapd__Envelope *r = hin_call(s, hraw_req_refill(&req, k, count, rel, nrel), NULL);
	ck_assert_ptr_nonnull(r);
	return r;
}

static uint32_t large(session_t *s, uint64_t size)
{
	hraw_req_t req;
	Heapd__Envelope *r = call(s, hraw_req_large_alloc(&req, size, 0, 0, NULL, 0));
	ck_assert_msg(r && r->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY, "LargeAlloc");
	uint32_t id = r->large_alloc_reply->span;
	wire_free(r);
	return id;
}

START_TEST(test_sweepgen_cycle)
{
	static daemon_t d;
	open_daemon(&d, 64 * MIB);
	session_t *s = client(&d, 0);
	Heapd__Envelope *r = refill(s, 2, 4, NULL, 0);
	ck_assert_uint_eq(r->refill_reply->n_spans, 4);
	uint32_t ids[4];
	for (int i = 0; i < 4; i++) {
		ids[i] = r->refill_reply->spans[i]->span;
		bitmap_store(segment_allocbits(&d.seg, ids[i]), 0x3); /* two objects each */
	}
	wire_free(r);
	r = refill(s, 0, 0, ids, 4);
	wire_free(r);

	uint32_t sg = atomic_load(&d.seg.hdr->sweepgen);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(atomic_load(&d.seg.spans[ids[i]].sweepgen), sg);
		ck_assert_uint_eq(d.seg.spans[ids[i]].allocount, 2);
	}
	/* free one object of each from "another process": the next cycle sees it */
	for (int i = 0; i < 4; i++)
		bitmap_mark_free(segment_allocbits(&d.seg, ids[i]), hin_freebits(&d, ids[i]), 0);
	sweep_result_t res;
	ck_assert_uint_eq(sweeper_cycle(&d.sweeper, &res), 4);
	ck_assert_uint_eq(res.objects, 4);
	ck_assert_uint_eq(atomic_load(&d.seg.hdr->sweepgen), sg + 2);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(atomic_load(&d.seg.spans[ids[i]].sweepgen), sg + 2);
		ck_assert_uint_eq(d.seg.spans[ids[i]].allocount, 1);
		ck_assert_uint_eq(bitmap_load(hin_freebits(&d, ids[i])), 0);
	}
	/* the rest freed: the spans go back to the page heap */
	for (int i = 0; i < 4; i++)
		bitmap_mark_free(segment_allocbits(&d.seg, ids[i]), hin_freebits(&d, ids[i]), 1);
	sweeper_cycle(&d.sweeper, &res);
	ck_assert_uint_eq(res.spans_freed, 4);
	ck_assert_uint_eq(d.seg.hdr->pages_inuse, 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	hin_end(s);
	daemon_close(&d, 1);
}
END_TEST

START_TEST(test_reclaim_before_growth)
{
	static daemon_t d;
	uint32_t *ids = malloc(sizeof(uint32_t) * 65536);
	size_t n = 0;
	open_daemon(&d, 16 * MIB);
	session_t *s = client(&d, 0);
	/* fill the arena with one-object spans of class 1, handed back to central */
	for (;;) {
		Heapd__Envelope *r = refill(s, 1, 64, NULL, 0);
		if (r->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
			ck_assert_int_eq(r->error->code, ENOMEM);
			wire_free(r);
			break;
		}
		for (size_t i = 0; i < r->refill_reply->n_spans; i++) {
			ids[n] = r->refill_reply->spans[i]->span;
			bitmap_store(segment_allocbits(&d.seg, ids[n]), 1);
			n++;
		}
		wire_free(r);
	}
	ck_assert_uint_gt(n, 100);
	for (size_t i = 0; i < n; i += 64) {
		size_t k = n - i < 64 ? n - i : 64;
		wire_free(refill(s, 0, 0, ids + i, k));
	}
	ck_assert_uint_eq(d.seg.hdr->pages_free, 0);
	uint32_t grown = d.seg.hdr->npages_grown;
	/* other processes free every object, but nobody sweeps yet */
	for (size_t i = 0; i < n; i++)
		bitmap_mark_free(segment_allocbits(&d.seg, ids[i]), hin_freebits(&d, ids[i]), 0);
	/* a refill of another class must reclaim them rather than fail */
	Heapd__Envelope *r = refill(s, 20, 4, NULL, 0);
	ck_assert_int_eq(r->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_eq(r->refill_reply->n_spans, 4);
	wire_free(r);
	ck_assert_uint_eq(d.seg.hdr->npages_grown, grown);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	hin_end(s);
	free(ids);
	daemon_close(&d, 1);
}
END_TEST

START_TEST(test_recovery_repairs)
{
	static daemon_t d;
	uint32_t a, b, small, owned;
	open_daemon(&d, 64 * MIB);
	/* a large allocation cut short: LARGE span, alloc bit 0 never set */
	ck_assert_int_eq(pageheap_alloc(&d.heap, 3, 1, &a), 0);
	/* a freed large object whose LargeFree was lost */
	int zeroed;
	uint32_t gen;
	ck_assert_int_eq(large_alloc(&d.central, &d.clients, HEAPD_NIL, 0, 7, 1, 0, &b, &zeroed, &gen), 0);
	bitmap_mark_free(segment_allocbits(&d.seg, b), hin_freebits(&d, b), 0);
	/* a small span in central with one object */
	small = get_span(&d, 4);
	bitmap_store(segment_allocbits(&d.seg, small), 1);
	central_put(&d.central, small, NULL);
	/* a small span owned by a process that is gone */
	int go[2];
	proc_t p;
	pid_t pid = hin_waiting_child(go, &p);
	uint32_t slot;
	ck_assert_int_eq(clients_alloc(&d.clients, &p, 0, &slot), 0);
	owned = get_span(&d, 6);
	clients_own(&d.clients, slot, owned);
	bitmap_store(segment_allocbits(&d.seg, owned), 0x7);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	waitpid(pid, NULL, 0);
	daemon_close(&d, 0); /* as if killed: no clean shutdown */

	open_daemon(&d, 64 * MIB);
	ck_assert_uint_eq(d.seg.hdr->clean_shutdown, 0);
	ck_assert(d.seg.spans[a].state != SPAN_LARGE || d.seg.spans[a].start != a);
	ck_assert(d.seg.spans[b].state != SPAN_LARGE || d.seg.spans[b].start != b);
	ck_assert_uint_eq(d.seg.spans[small].state, SPAN_SMALL);
	ck_assert_uint_eq(d.seg.spans[owned].state, SPAN_SMALL);
	ck_assert_uint_eq(d.seg.spans[owned].owner, 0);
	ck_assert_uint_eq(d.seg.clients[slot].pid, 0);
	ck_assert_uint_eq(d.seg.hdr->pages_inuse, d.seg.spans[small].npages + d.seg.spans[owned].npages);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	/* a half-carved small span (still LARGE, alloc bit clear) is recovered the same way */
	session_t *s = client(&d, 0);
	Heapd__Envelope *r = refill(s, 6, 1, NULL, 0);
	ck_assert_uint_eq(r->refill_reply->spans[0]->span, owned); /* the partial span comes first */
	wire_free(r);
	hin_end(s);
	daemon_close(&d, 1);
}
END_TEST

/* A small span whose descriptor disagrees with its class is quarantined by recovery. */
START_TEST(test_recovery_quarantines)
{
	static daemon_t d;
	uint32_t bad, empty;
	open_daemon(&d, 64 * MIB);
	bad = get_span(&d, 4);
	bitmap_store(segment_allocbits(&d.seg, bad), 0x6);
	central_put(&d.central, bad, NULL);
	empty = get_span(&d, 4);
	uint32_t npages = d.seg.spans[bad].npages;
	d.seg.spans[bad].sizeclass = SIZECLASS_COUNT; /* no class at all */
	d.seg.spans[empty].sizeclass = 0;             /* a small span of no class, and no object */
	daemon_close(&d, 0);

	open_daemon(&d, 64 * MIB);
	const shm_span_t *q = &d.seg.spans[bad];
	ck_assert_uint_eq(q->state, SPAN_LARGE);
	ck_assert_uint_eq(q->npages, npages);
	ck_assert_uint_eq(q->sizeclass, 0);
	/* holding nothing, the other is simply freed */
	ck_assert(d.seg.spans[empty].state != SPAN_SMALL || d.seg.spans[empty].start != empty);
	ck_assert_uint_eq(q->owner, 0);
	ck_assert_uint_eq(bitmap_load(segment_allocbits(&d.seg, bad)), 1);
	for (uint32_t i = 0; i < npages; i++)
		ck_assert_uint_eq(d.seg.pagemap[bad + i], heapd_pagemap_entry(bad, 0));
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	daemon_close(&d, 1);
}
END_TEST

START_TEST(test_lost_large_free)
{
	static daemon_t d;
	uint32_t id, gen;
	int zeroed;
	open_daemon(&d, 64 * MIB);
	ck_assert_int_eq(large_alloc(&d.central, &d.clients, HEAPD_NIL, 0, 13, 1, 1, &id, &zeroed, &gen), 0);
	ck_assert(zeroed);
	bitmap_mark_free(segment_allocbits(&d.seg, id), hin_freebits(&d, id), 0);
	/* its LargeFree may still be on the way: the first cycle leaves it */
	sweeper_cycle(&d.sweeper, NULL);
	ck_assert_uint_eq(d.seg.spans[id].state, SPAN_LARGE);
	/* once the grace period is over, the sweeper frees it */
	d.seg.spans[id].unusedsince -= LARGE_FREE_GRACE_NS;
	sweep_result_t res;
	sweeper_cycle(&d.sweeper, &res);
	ck_assert_uint_eq(res.spans_freed, 1);
	ck_assert_uint_eq(d.seg.hdr->pages_inuse, 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	daemon_close(&d, 1);
}
END_TEST

/*
 * A process is named by pid, start time and (with pidfs) its pidfd's inode:
 * a name with any of them wrong is another process, and a process is dead
 * once its thread group is, reaped or not.
 */
START_TEST(test_proc_identity)
{
	int go[2];
	proc_t p, q;
	pid_t pid = hin_waiting_child(go, &p);

	ck_assert(proc_alive(&p));
	ck_assert(proc_is(&p, (uint32_t)pid, p.start_time, p.id));
	ck_assert(!proc_is(&p, (uint32_t)pid, p.start_time + 1, p.id));
	ck_assert_int_eq(proc_open(pid, p.start_time + 1, 0, &q), -ESRCH);
	if (p.id != 0) {
		/* this kernel's pidfds are pidfs inodes: the id tells two processes of one pid apart */
		ck_assert(!proc_is(&p, (uint32_t)pid, p.start_time, p.id + 1));
		ck_assert_int_eq(proc_open(pid, p.start_time, p.id + 1, &q), -ESRCH);
		ck_assert_int_eq(proc_open(pid, p.start_time, p.id, &q), 0);
		ck_assert_uint_eq(q.id, p.id);
		proc_close(&q);
	}
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	/* dead before its parent reaps it: the pidfd says so */
	ck_assert(hutil_wait_until(!proc_alive(&p), 10000));
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	proc_close(&p);
	close(go[1]);
}
END_TEST

/*
 * A client may name one live pid with as many start times and mapping sets
 * as it has records: a snapshot asks each (pid, start time) once, after the
 * records are read, and tells the same answer as before.
 */
START_TEST(test_profile_liveness_once)
{
	daemon_t d;
	uint64_t real, frames[1] = { 0x401000 };
	open_daemon(&d, 64 * MIB);
	const prof_view_t *v = &d.profile.v;
	ck_assert_ptr_nonnull(v->recs);
	ck_assert_int_eq(proc_start_time(getpid(), &real), 0);

	for (uint32_t k = 0; k < 1024; k++) {
		prof_sample_t sm = { .off = v->pages_off + 64 * (uint64_t)k, .size = 64, .rate = 1,
		                     .time = 1, .start_time = real + k % 64, .pid = (uint32_t)getpid(),
		                     .slot = HEAPD_NIL, .mapset = k / 64, .nframes = 1, .frames = frames };
		ck_assert_int_ge(prof_record(v, &sm), 0);
	}
	profile_snap_t *s = profile_snapshot(&d);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->nsamples, 1024);
	ck_assert_uint_eq(s->nprocs, 1024);   /* one per (start time, mapping set) */
	ck_assert_uint_eq(s->lookups, 64);    /* one per start time */
	for (size_t k = 0; k < s->nprocs; k++)
		ck_assert_int_eq(s->procs[k].exited, s->procs[k].start_time != real);
	profile_snap_put(s);
	daemon_close(&d, 1);
}
END_TEST

START_TEST(test_held_slot_reaped)
{
	static daemon_t d;
	uint32_t span, slot;
	int go[2];
	proc_t p;
	open_daemon(&d, 64 * MIB);
	pid_t pid = hin_waiting_child(go, &p);
	ck_assert_int_eq(clients_alloc(&d.clients, &p, 0, &slot), 0);
	span = get_span(&d, 3);
	clients_own(&d.clients, slot, span);
	daemon_close(&d, 0);

	/* the owner is alive at restart: its slot and span are held for it */
	open_daemon(&d, 64 * MIB);
	ck_assert_uint_eq(d.seg.clients[slot].pid, (uint32_t)pid);
	ck_assert_uint_eq(d.seg.spans[span].owner, slot + 1);
	ck_assert_uint_eq(daemon_reap(&d, HEAPD_NIL), 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	/* it dies without reconnecting: the next reap takes the span back */
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	waitpid(pid, NULL, 0);
	ck_assert_uint_eq(daemon_reap(&d, HEAPD_NIL), 1);
	ck_assert_uint_eq(d.seg.clients[slot].pid, 0);
	ck_assert_uint_eq(d.clients.inuse, 0);
	ck_assert(d.seg.spans[span].state != SPAN_SMALL || d.seg.spans[span].owner == 0);
	ck_assert_uint_eq(d.seg.hdr->pages_inuse, 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	daemon_close(&d, 1);
}
END_TEST

/*
 * A LargeAlloc whose reply is lost with the daemon: the client never got the
 * object and asks again, so the next daemon frees it; one whose reply did
 * arrive is kept. Until either is known the span is owned by the slot.
 */
START_TEST(test_lost_large_reply)
{
	static daemon_t d;
	open_daemon(&d, 64 * MIB);
	session_t *s = client(&d, 0);
	uint32_t slot = s->slot;

	uint32_t a = large(s, 100000);
	ck_assert_uint_eq(d.seg.spans[a].owner, slot + 1);
	uint32_t b = large(s, 200000); /* the frame proves a's reply arrived */
	ck_assert_uint_eq(d.seg.spans[a].owner, 0);
	ck_assert_uint_eq(d.seg.spans[b].owner, slot + 1);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	/* killed: the session's connection dies with it, its slot stays in the arena */
	hin_lose(s);
	daemon_close(&d, 0);

	/* b's reply never arrived: the client names a, the last one it got */
	open_daemon(&d, 64 * MIB);
	ck_assert_uint_eq(d.clients.slots[slot].pending_large, b + 1);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	s = reconnect(&d, slot, a + 1);
	ck_assert_uint_eq(d.seg.spans[a].state, SPAN_LARGE);
	ck_assert(d.seg.spans[b].state != SPAN_LARGE || d.seg.spans[b].start != b);
	ck_assert_uint_eq(d.clients.slots[slot].pending_large, 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);

	/* the resent request's reply arrives, then the daemon dies: it is kept */
	uint32_t c = large(s, 300000);
	hin_lose(s);
	daemon_close(&d, 0);
	open_daemon(&d, 64 * MIB);
	s = reconnect(&d, slot, c + 1);
	ck_assert_uint_eq(d.seg.spans[c].state, SPAN_LARGE);
	ck_assert_uint_eq(d.seg.spans[c].owner, 0);
	ck_assert_uint_eq(d.seg.hdr->pages_inuse, d.seg.spans[a].npages + d.seg.spans[c].npages);

	/* a client that leaves keeps what it got: the pending object stays allocated */
	uint32_t e = large(s, 50000);
	hin_end(s);
	ck_assert_uint_eq(d.seg.spans[e].state, SPAN_LARGE);
	ck_assert_uint_eq(d.seg.spans[e].owner, 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	daemon_close(&d, 1);
}
END_TEST

/* 1 if the daemon's check reports a problem containing needle; the number found in *n. */
static int check_reports(daemon_t *d, const char *needle, size_t *n)
{
	static check_report_t r;
	*n = daemon_check(d, &r);
	return heapfx_report_has(&r, needle);
}

#define ASSERT_REPORTED(d, needle)                                                        \
	do {                                                                                  \
		size_t n_;                                                                        \
		ck_assert_msg(check_reports((d), (needle), &n_), "no problem \"%s\" reported (%zu others)", \
		              (needle), n_);                                                      \
	} while (0)

/* The check's ownership findings: a span owned or charged by a slot that is not a client's. */
START_TEST(test_check_finds_bad_owners)
{
	static daemon_t d;
	char needle[96];
	open_daemon(&d, 64 * MIB);
	session_t *s = client(&d, 0);
	Heapd__Envelope *r = refill(s, 4, 1, NULL, 0);
	ck_assert_msg(r->msg_case == HEAPD__ENVELOPE__MSG_REFILL_REPLY && r->refill_reply->n_spans == 1,
	              "Refill");
	uint32_t id = r->refill_reply->spans[0]->span;
	wire_free(r);
	ck_assert_uint_eq(d.seg.spans[id].owner, s->slot + 1);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);

	uint32_t nslots = d.clients.nslots, unused = HEAPD_NIL;
	for (uint32_t i = 0; i < nslots && unused == HEAPD_NIL; i++)
		if (d.seg.clients[i].pid == 0)
			unused = i;
	ck_assert_uint_ne(unused, HEAPD_NIL);
	shm_span_t saved = d.seg.spans[id];

	d.seg.spans[id].owner = nslots + 1;
	snprintf(needle, sizeof(needle), "span %u: owner %u names no client slot", id, nslots + 1);
	ASSERT_REPORTED(&d, needle);
	d.seg.spans[id] = saved;

	d.seg.spans[id].owner = unused + 1;
	snprintf(needle, sizeof(needle), "span %u: owned by client slot %u, which is not in use", id,
	         unused);
	ASSERT_REPORTED(&d, needle);
	d.seg.spans[id] = saved;

	d.seg.spans[id].charge = nslots + 1;
	snprintf(needle, sizeof(needle), "span %u: charged to slot %u, which does not exist", id, nslots);
	ASSERT_REPORTED(&d, needle);
	d.seg.spans[id] = saved;

	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	hin_end(s);
	daemon_close(&d, 1);
}
END_TEST

START_TEST(test_random_frames)
{
	static daemon_t d;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	uint8_t buf[512];
	open_daemon(&d, 32 * MIB);
	for (int round = 0; round < 3000; round++) {
		session_t *s = client(&d, round % 7 == 0);
		Heapd__Envelope *r = refill(s, 1 + round % 60, 3, NULL, 0);
		wire_free(r);
		for (int i = 0; i < 8 && !s->failed; i++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			size_t len = seed % sizeof(buf);
			for (size_t j = 0; j < len; j++) {
				seed ^= seed << 13;
				seed ^= seed >> 7;
				seed ^= seed << 17;
				buf[j] = (uint8_t)seed;
			}
			/* a valid envelope tag most of the time, so the handlers are reached */
			if (len > 2 && (seed & 3)) {
				buf[0] = (uint8_t)(((3 + seed % 15) << 3) | 2);
				buf[1] = (uint8_t)(len - 2 > 127 ? 127 : len - 2);
			}
			session_handle_frame(s, buf, len);
			evbuffer_drain(s->out, evbuffer_get_length(s->out));
		}
		hin_end(s);
	}
	ck_assert_uint_eq(d.nsessions, 0);
	/* every session ended with a Bye: slots may stay held for their processes, empty */
	ck_assert_uint_eq(d.nclients, 0);
	for (uint32_t i = 0; i < d.clients.nslots; i++)
		ck_assert_uint_eq(d.clients.slots[i].spans.count, 0);
	ck_assert_uint_eq(hin_problems(&d, NULL), 0);
	daemon_close(&d, 1);
}
END_TEST

Suite *daemon_core_suite(void)
{
	Suite *s = suite_create("daemon-core");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_sweepgen_cycle);
	tcase_add_test(tc, test_reclaim_before_growth);
	tcase_add_test(tc, test_recovery_repairs);
	tcase_add_test(tc, test_recovery_quarantines);
	tcase_add_test(tc, test_lost_large_free);
	tcase_add_test(tc, test_proc_identity);
	tcase_add_test(tc, test_held_slot_reaped);
	tcase_add_test(tc, test_profile_liveness_once);
	tcase_add_test(tc, test_lost_large_reply);
	tcase_add_test(tc, test_check_finds_bad_owners);
	tcase_add_test(tc, test_random_frames);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(daemon_core_suite);
