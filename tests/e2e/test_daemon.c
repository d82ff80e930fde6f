// SPDX-License-Identifier: MIT
/*
 * test_daemon.c - heapd's protocol end to end: a real daemon on a temporary
 * socket, raw clients speaking heap.proto, and the span table read through
 * the client's own mapping.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "sizeclass.h"
#include "control.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/raw.h"
#include "harness/child.h"
#include "harness/util.h"
#include "sock.h"

#define K 5 /* a size class to refill */

/* Start the default heapd, say Hello as c, and ask for count spans of class K: the reply. */
static Heapd__Envelope *start_and_refill(hraw_t *c, uint32_t count)
{
	Heapd__Envelope *reply;
	hd_default_start(NULL, NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, c), 0);
	ck_assert_int_eq(hraw_refill(c->fd, K, count, NULL, 0, &reply), 0);
	return reply;
}

/* The daemon still answers and its invariants hold. */
static void assert_healthy(void)
{
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}

START_TEST(test_hello_maps_arena)
{
	hraw_t c;
	hd_default_start(NULL, NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_uint_lt(c.slot, c.seg.hdr->max_clients);
	ck_assert(c.seg.hdr->magic == HEAPD_MAGIC);
	ck_assert_uint_eq(c.seg.clients[c.slot].pid, (uint32_t)getpid());
	ck_assert_uint_eq(c.seg.clients[c.slot].uid, (uint32_t)getuid());
	ck_assert_uint_ne(c.seg.clients[c.slot].start_time, 0);
	/* the metadata came read-only: the mapping cannot be made writable */
	ck_assert_int_ne(mprotect(c.seg.base, c.seg.meta_size, PROT_READ | PROT_WRITE), 0);
	ck_assert(hd_wait_log(&hd_default, "connected", 1000));
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

/* req, the first frame of a new connection, is refused: an EPROTO Error, then heapd closes it. */
static void first_frame_refused(const Heapd__Envelope *req)
{
	Heapd__Envelope *reply = NULL;
	int fd = sock_connect(hd_default.sock);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(wire_call(fd, req, &reply, NULL), 0);
	ck_assert_int_eq(hraw_error_code(reply), EPROTO);
	wire_free(reply);
	ck_assert(hraw_closed(fd, 2000));
	close(fd);
}

START_TEST(test_wrong_version)
{
	hraw_req_t req;
	hd_default_start(NULL, NULL);
	Heapd__Envelope *hello = hraw_req_hello(&req, 0, 0, NULL, 0, 0);
	req.m.hello.version = HEAPD_PROTOCOL_VERSION + 7;
	first_frame_refused(hello);
	ck_assert(hd_wait_log(&hd_default, "protocol version", 1000));
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_request_before_hello)
{
	hraw_req_t req;
	hd_default_start(NULL, NULL);
	first_frame_refused(hraw_req_empty(&req, HEAPD__ENVELOPE__MSG_STATS));
	hd_default_stop();
}
END_TEST

START_TEST(test_refill_and_release)
{
	hraw_t c;
	Heapd__Envelope *reply;
	uint32_t spans[8];
	reply = start_and_refill(&c, 8);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 8);
	for (int i = 0; i < 8; i++) {
		uint32_t id = reply->refill_reply->spans[i]->span;
		const shm_span_t *s = &c.seg.spans[id];
		spans[i] = id;
		ck_assert_uint_lt(id, c.seg.hdr->npages_grown);
		ck_assert_uint_eq(s->state, SPAN_SMALL);
		ck_assert_uint_eq(s->sizeclass, K);
		ck_assert_uint_eq(s->npages, sizeclass_npages[K]);
		ck_assert_uint_eq(s->owner, c.slot + 1);
		ck_assert_uint_eq(bitmap_count_alloc(segment_allocbits(&c.seg, id), sizeclass_nelems[K]), 0);
		/* the pages are ours to write */
		memset(segment_page_addr(&c.seg, id), 0xab, (size_t)s->npages * HEAPD_PAGE_SIZE);
	}
	wire_free(reply);

	/* allocate two objects in the first span as a client cache would, then hand all back */
	uint64_t *alloc = segment_allocbits(&c.seg, spans[0]);
	bitmap_store(&alloc[0], 0x3);
	ck_assert_int_eq(hraw_refill(c.fd, 0, 0, spans, 8, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 0);
	wire_free(reply);
	/* the span with live objects went to central; the empty ones back to the page heap */
	ck_assert_uint_eq(c.seg.spans[spans[0]].state, SPAN_SMALL);
	ck_assert_uint_eq(c.seg.spans[spans[0]].owner, 0);
	for (int i = 1; i < 8; i++)
		ck_assert(c.seg.spans[spans[i]].state != SPAN_SMALL || c.seg.spans[spans[i]].owner == 0);

	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_ptr_nonnull(st);
	ck_assert_uint_eq(st->objects_in_use, 2);
	ck_assert_uint_eq(st->spans_in_use, 1);
	ck_assert_uint_eq(st->clients, 1);
	wire_free(owner);

	/* a second refill takes the partial span from central first */
	ck_assert_int_eq(hraw_refill(c.fd, K, 1, NULL, 0, &reply), 0);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 1);
	ck_assert_uint_eq(reply->refill_reply->spans[0]->span, spans[0]);
	ck_assert(reply->refill_reply->spans[0]->needzero);
	wire_free(reply);
	assert_healthy();
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

/* As another client: hand back span *arg (someone else's); 0 if refused with EPERM and closed. */
static int release_foreign(hraw_t *b, void *arg)
{
	Heapd__Envelope *reply;
	if (hraw_refill(b->fd, K, 1, arg, 1, &reply) < 0)
		return 1;
	int ok = hraw_error_code(reply) == EPERM && reply->error->fatal;
	wire_free(reply);
	return ok && hraw_closed(b->fd, 2000) ? 0 : 2;
}

START_TEST(test_refill_someone_elses_span)
{
	hraw_t a;
	Heapd__Envelope *reply = start_and_refill(&a, 1);
	uint32_t as = reply->refill_reply->spans[0]->span;
	wire_free(reply);

	ck_assert_int_eq(hraw_in_child(hd_default.sock, release_foreign, &as), 0);
	ck_assert(hd_wait_log(&hd_default, "belongs to another client", 1000));

	/* a keeps its span and carries on */
	ck_assert_uint_eq(a.seg.spans[as].owner, a.slot + 1);
	ck_assert_int_eq(hraw_refill(a.fd, K, 2, &as, 1, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 2);
	wire_free(reply);
	assert_healthy();
	hraw_close(&a);
	hd_default_stop();
}
END_TEST

/* As another client: a LargeAlloc that hands back span *arg (someone else's); 0 if refused. */
static int large_alloc_releasing_foreign(hraw_t *b, void *arg)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply;
	Heapd__LargeAlloc la = HEAPD__LARGE_ALLOC__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_ALLOC;
	env.large_alloc = &la;
	la.size = 100000;
	la.release = arg;
	la.n_release = 1;
	if (wire_call(b->fd, &env, &reply, NULL) < 0)
		return 1;
	int ok = hraw_error_code(reply) == EPERM;
	wire_free(reply);
	return ok && hraw_closed(b->fd, 2000) ? 0 : 2;
}

/* A LargeAlloc hands spans back first, under the same rules as a Refill. */
START_TEST(test_large_alloc_releases)
{
	hraw_t a;
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply;
	Heapd__LargeAlloc la = HEAPD__LARGE_ALLOC__INIT;
	reply = start_and_refill(&a, 2);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 2);
	uint32_t s0 = reply->refill_reply->spans[0]->span, s1 = reply->refill_reply->spans[1]->span;
	wire_free(reply);
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_ALLOC;
	env.large_alloc = &la;
	la.size = 100000;

	/* another client names a's span: refused, and only its connection goes */
	ck_assert_int_eq(hraw_in_child(hd_default.sock, large_alloc_releasing_foreign, &s0), 0);
	ck_assert(hd_wait_log(&hd_default, "large alloc: released span", 1000));
	ck_assert_uint_eq(a.seg.spans[s0].owner, a.slot + 1);

	/* a hands s0 back with its request: the object comes, s0 is the daemon's, s1 still a's */
	la.release = &s0;
	la.n_release = 1;
	ck_assert_int_eq(wire_call(a.fd, &env, &reply, NULL), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	uint32_t big = reply->large_alloc_reply->span;
	wire_free(reply);
	ck_assert_uint_eq(a.seg.spans[big].state, SPAN_LARGE);
	ck_assert_uint_ne(a.seg.spans[s0].owner, a.slot + 1);
	ck_assert_uint_eq(a.seg.spans[s1].owner, a.slot + 1);

	/* naming it again is an error: it is no longer a's */
	ck_assert_int_eq(wire_call(a.fd, &env, &reply, NULL), 0);
	ck_assert_int_ne(hraw_error_code(reply), 0);
	wire_free(reply);
	ck_assert(hraw_closed(a.fd, 2000));
	assert_healthy();
	hraw_close(&a);
	hd_default_stop();
}
END_TEST

START_TEST(test_bad_span_ids)
{
	hraw_t c;
	Heapd__Envelope *reply;
	uint32_t bad[] = { UINT32_MAX, 1u << 30, 0 };
	hd_default_start(NULL, NULL);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
		ck_assert_int_eq(hraw_refill(c.fd, K, 1, &bad[i], 1, &reply), 0);
		ck_assert_int_ne(hraw_error_code(reply), 0);
		wire_free(reply);
		ck_assert(hraw_closed(c.fd, 2000));
		hraw_close(&c);
	}
	/* a large free of a span that is no large object is ignored: no reply, no harm */
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_int_eq(hraw_large_free(c.fd, 12345678, 1), 0);
	ck_assert(hd_wait_log(&hd_default, "ignored", 2000));
	ck_assert_int_eq(hraw_refill(c.fd, K, 1, NULL, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	wire_free(reply);
	hraw_close(&c);
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_refill_count_huge)
{
	hraw_t c;
	Heapd__Envelope *reply = start_and_refill(&c, 1000000);
	ck_assert_int_eq(hraw_error_code(reply), EINVAL);
	wire_free(reply);
	ck_assert(hraw_closed(c.fd, 2000));
	hraw_close(&c);
	/* a class that does not exist */
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_int_eq(hraw_refill(c.fd, SIZECLASS_COUNT, 1, NULL, 0, &reply), 0);
	ck_assert_int_eq(hraw_error_code(reply), EINVAL);
	wire_free(reply);
	hraw_close(&c);
	assert_healthy();
	hd_default_stop();
}
END_TEST

/* A Refill that names other classes gets one span of each, as its own, with the class asked for. */
START_TEST(test_refill_other_classes)
{
	const uint32_t also[] = { K + 1, K - 1, K + 3 };
	Heapd__Envelope *reply;
	hraw_t c;
	int seen[SIZECLASS_COUNT] = { 0 };

	hd_default_start(NULL, NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_int_eq(hraw_refill_also(c.fd, K, 2, also, 3, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 5);
	for (size_t i = 0; i < reply->refill_reply->n_spans; i++) {
		const shm_span_t *s = &c.seg.spans[reply->refill_reply->spans[i]->span];
		ck_assert_uint_eq(s->state, SPAN_SMALL);
		ck_assert_uint_eq(s->owner, c.slot + 1);
		ck_assert_uint_lt(s->sizeclass, SIZECLASS_COUNT);
		seen[s->sizeclass]++;
	}
	wire_free(reply);
	ck_assert_int_eq(seen[K], 2);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(seen[also[i]], 1);
	hraw_close(&c);
	assert_healthy();
	hd_default_stop();
}
END_TEST

/* Each malformed list of other classes is a protocol error that ends the session. */
START_TEST(test_refill_other_classes_bad)
{
	const uint32_t nine[] = { 1, 2, 3, 4, 6, 7, 8, 9, 10 }, zero[] = { 0 }, same[] = { K },
	               twice[] = { 3, 3 }, beyond[] = { SIZECLASS_COUNT };
	struct {
		uint32_t count;
		const uint32_t *also;
		size_t n;
	} bad[] = {
		{ 1, nine, 9 }, { 1, zero, 1 }, { 1, same, 1 }, { 1, twice, 2 }, { 1, beyond, 1 },
		{ 0, twice, 1 }, /* other classes, but no span asked for */
	};
	Heapd__Envelope *reply;
	hraw_t c;

	hd_default_start(NULL, NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
		ck_assert_int_eq(hraw_refill_also(c.fd, K, bad[i].count, bad[i].also, bad[i].n, &reply), 0);
		ck_assert_msg(hraw_error_code(reply) == EINVAL, "case %zu: no EINVAL", i);
		ck_assert(reply->error->fatal);
		wire_free(reply);
		ck_assert(hraw_closed(c.fd, 2000));
		hraw_close(&c);
	}
	ck_assert(hd_wait_log(&hd_default, "names other class 3 twice", 1000));
	assert_healthy();
	hd_default_stop();
}
END_TEST

/* Other classes never take a client's last room under its quota: the class asked for still comes. */
START_TEST(test_refill_other_classes_quota)
{
	const uint32_t also[] = { 2, 3 };
	Heapd__Envelope *reply;
	hraw_t a;

	hd_default_start(NULL, "--client-quota", "1M", NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &a), 0);
	/* 900 KiB of 1 MiB: room for 15 one-page spans, under the 16 an extra span must leave */
	ck_assert_int_eq(hraw_large_alloc(a.fd, 900 << 10, 0, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	wire_free(reply);
	ck_assert_int_eq(hraw_refill_also(a.fd, 1, 1, also, 2, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_eq(reply->refill_reply->n_spans, 1);
	ck_assert_uint_eq(a.seg.spans[reply->refill_reply->spans[0]->span].sizeclass, 1);
	wire_free(reply);
	hraw_close(&a);
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_garbage_frame)
{
	static const uint8_t garbage[] = { 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	hd_default_start(NULL, NULL);
	int fd = sock_connect(hd_default.sock);
	ck_assert_int_eq(write(fd, garbage, sizeof(garbage)), (ssize_t)sizeof(garbage));
	ck_assert(hraw_closed(fd, 2000));
	close(fd);
	ck_assert(hd_wait_log(&hd_default, "malformed", 1000));
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_unknown_message)
{
	/* field 99, varint 1: a message type this daemon does not know */
	static const uint8_t frame[] = { 3, 0, 0, 0, 0x98, 0x06, 0x01 };
	hraw_t c;
	hd_default_start(NULL, NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_int_eq(write(c.fd, frame, sizeof(frame)), (ssize_t)sizeof(frame));
	ck_assert(hraw_closed(c.fd, 2000));
	ck_assert(hd_wait_log(&hd_default, "unknown message", 1000));
	hraw_close(&c);
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_oversized_frame)
{
	uint8_t hdr[4] = { 0, 0, 0x20, 0 }; /* 2 MiB */
	Heapd__Envelope *reply = NULL;
	hd_default_start(NULL, NULL);
	int fd = hctl_open(hd_default.sock);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, hdr, 4), 4);
	ck_assert_int_eq(wire_recv(fd, &reply, NULL), 0);
	ck_assert_int_eq(hraw_error_code(reply), EPROTO);
	wire_free(reply);
	ck_assert(hraw_closed(fd, 2000));
	close(fd);
	ck_assert(hd_wait_log(&hd_default, "over the", 1000));
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_truncated_frame)
{
	uint8_t buf[14] = { 100, 0, 0, 0 };
	hd_default_start(NULL, NULL);
	int fd = hctl_open(hd_default.sock);
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	ck_assert(hd_wait_log(&hd_default, "middle of a frame", 2000));
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_control_cannot_allocate)
{
	Heapd__Envelope *reply;
	hd_default_start(NULL, NULL);
	int fd = hctl_open(hd_default.sock);
	ck_assert_int_eq(hraw_refill(fd, K, 1, NULL, 0, &reply), 0);
	ck_assert_int_eq(hraw_error_code(reply), EPERM);
	wire_free(reply);
	close(fd);
	hd_default_stop();
}
END_TEST

START_TEST(test_large_alloc_free)
{
	hraw_t c;
	Heapd__Envelope *reply, *owner;
	hd_default_start(NULL, NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	uint64_t before = st->pages_in_use;
	wire_free(owner);

	ck_assert_int_eq(hraw_large_alloc(c.fd, 100000, 0, 1, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	uint32_t id = reply->large_alloc_reply->span;
	ck_assert(reply->large_alloc_reply->zeroed);
	wire_free(reply);
	const shm_span_t *s = &c.seg.spans[id];
	ck_assert_uint_eq(s->state, SPAN_LARGE);
	ck_assert_uint_eq(s->npages, (100000 + HEAPD_PAGE_SIZE - 1) / HEAPD_PAGE_SIZE);
	/* owned by the client until its next frame shows that the reply arrived */
	ck_assert_uint_eq(s->owner, c.slot + 1);
	ck_assert_uint_eq(bitmap_load(segment_allocbits(&c.seg, id)) & 1, 1);
	uint8_t *p = segment_page_addr(&c.seg, id);
	for (int i = 0; i < 100000; i++)
		ck_assert_uint_eq(p[i], 0);
	memset(p, 0x5a, 100000);

	st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->pages_in_use, before + s->npages);
	ck_assert_uint_eq(st->large_objects, 1);
	ck_assert_uint_eq(st->objects_in_use, 1);
	wire_free(owner);

	/* a LargeFree without the free bit, or of another generation, is ignored */
	uint32_t gen = s->gen;
	ck_assert_int_eq(hraw_large_free(c.fd, id, gen), 0);
	ck_assert(hd_wait_log(&hd_default, "free bit is not set", 2000));
	ck_assert_int_eq(bitmap_mark_free(segment_allocbits(&c.seg, id), segment_freebits(&c.seg, id, 1), 0),
	                 BITMAP_FREED);
	ck_assert_int_eq(hraw_large_free(c.fd, id, gen + 1), 0);
	/* a round trip orders the LargeFree before the look at the span */
	ck_assert_int_eq(hraw_refill(c.fd, 0, 0, NULL, 0, &reply), 0);
	wire_free(reply);
	ck_assert_uint_eq(s->state, SPAN_LARGE);
	bitmap_store(segment_freebits(&c.seg, id, 1), 0); /* not freed after all */

	/* aligned, 64 KiB */
	ck_assert_int_eq(hraw_large_alloc(c.fd, 40000, 65536, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	uint32_t id2 = reply->large_alloc_reply->span;
	ck_assert_uint_eq(((uint64_t)id2 * HEAPD_PAGE_SIZE + c.seg.hdr->pages_off) % 65536, 0);
	wire_free(reply);
	ck_assert_uint_eq(s->owner, 0);
	ck_assert_uint_eq(c.seg.spans[id2].owner, c.slot + 1);

	/* free both: the free bit, then LargeFree with the generation */
	ck_assert_int_eq(bitmap_mark_free(segment_allocbits(&c.seg, id),
	                                  segment_freebits(&c.seg, id, 1), 0), BITMAP_FREED);
	ck_assert_int_eq(hraw_large_free(c.fd, id, gen), 0);
	ck_assert_int_eq(bitmap_mark_free(segment_allocbits(&c.seg, id2),
	                                  segment_freebits(&c.seg, id2, 1), 0), BITMAP_FREED);
	ck_assert_int_eq(hraw_large_free(c.fd, id2, c.seg.spans[id2].gen), 0);
	/* the same LargeFree again, late: ignored */
	ck_assert_int_eq(hraw_large_free(c.fd, id, gen), 0);
	/* a round trip on the same connection orders the frees before the stats */
	ck_assert_int_eq(hraw_refill(c.fd, 0, 0, NULL, 0, &reply), 0);
	wire_free(reply);
	st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->pages_in_use, before);
	ck_assert_uint_eq(st->large_objects, 0);
	wire_free(owner);
	assert_healthy();
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

START_TEST(test_large_alloc_bad_sizes)
{
	uint64_t sizes[] = { UINT64_MAX, UINT64_MAX - 8191, 0, 1ULL << 40 };
	Heapd__Envelope *reply;
	hraw_t c;
	hd_default_start(NULL, NULL);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
		ck_assert_int_eq(hraw_large_alloc(c.fd, sizes[i], 0, 1, &reply), 0);
		ck_assert_int_eq(hraw_error_code(reply), EINVAL);
		wire_free(reply);
		ck_assert(hraw_closed(c.fd, 2000));
		hraw_close(&c);
	}
	/* alignment that is not a power of two, or beyond the arena */
	uint64_t aligns[] = { 3, 1ULL << 63 };
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
		ck_assert_int_eq(hraw_large_alloc(c.fd, 65536, aligns[i], 0, &reply), 0);
		ck_assert_int_eq(hraw_error_code(reply), EINVAL);
		wire_free(reply);
		hraw_close(&c);
	}
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_arena_full_is_enomem)
{
	Heapd__Envelope *reply;
	hraw_t c;
	hd_default_start("4M", NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_int_eq(hraw_large_alloc(c.fd, 3 << 20, 0, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	uint32_t id = reply->large_alloc_reply->span, gen = reply->large_alloc_reply->gen;
	ck_assert_uint_eq(gen, c.seg.spans[id].gen);
	wire_free(reply);
	ck_assert_int_eq(hraw_large_alloc(c.fd, 2 << 20, 0, 0, &reply), 0);
	ck_assert_int_eq(hraw_error_code(reply), ENOMEM);
	ck_assert(!reply->error->fatal);
	wire_free(reply);
	/* the connection stays; freeing makes room again */
	bitmap_mark_free(segment_allocbits(&c.seg, id), segment_freebits(&c.seg, id, 1), 0);
	ck_assert_int_eq(hraw_large_free(c.fd, id, gen), 0);
	ck_assert_int_eq(hraw_large_alloc(c.fd, 2 << 20, 0, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	wire_free(reply);
	/* small spans too */
	int got = 0;
	for (;;) {
		ck_assert_int_eq(hraw_refill(c.fd, 1, 64, NULL, 0, &reply), 0);
		if (hraw_error_code(reply)) {
			ck_assert_int_eq(hraw_error_code(reply), ENOMEM);
			wire_free(reply);
			break;
		}
		got += (int)reply->refill_reply->n_spans;
		wire_free(reply);
		ck_assert_int_lt(got, 1000);
	}
	ck_assert_int_gt(got, 0);
	assert_healthy();
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

/* As another client: allocate 900 KiB in one large object; 0 if it came. */
static int allocates_900k(hraw_t *b, void *arg)
{
	Heapd__Envelope *reply;
	(void)arg;
	if (hraw_large_alloc(b->fd, 900 << 10, 0, 0, &reply) < 0)
		return 2;
	int got = reply->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY;
	wire_free(reply);
	return got ? 0 : 1;
}

START_TEST(test_quota)
{
	Heapd__Envelope *reply;
	hraw_t a;
	hd_default_start(NULL, "--client-quota", "1M", NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &a), 0);
	ck_assert_int_eq(hraw_large_alloc(a.fd, 900 << 10, 0, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	wire_free(reply);
	ck_assert_int_eq(hraw_large_alloc(a.fd, 200 << 10, 0, 0, &reply), 0);
	ck_assert_int_eq(hraw_error_code(reply), EDQUOT);
	ck_assert(!reply->error->fatal);
	wire_free(reply);
	/* refills past the quota are cut short, then refused */
	ck_assert_int_eq(hraw_refill(a.fd, 1, 64, NULL, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	ck_assert_uint_lt(reply->refill_reply->n_spans, 64);
	uint32_t given[64], n = (uint32_t)reply->refill_reply->n_spans;
	for (uint32_t i = 0; i < n; i++)
		given[i] = reply->refill_reply->spans[i]->span;
	wire_free(reply);
	ck_assert_int_eq(hraw_refill(a.fd, 1, 64, NULL, 0, &reply), 0);
	ck_assert_int_eq(hraw_error_code(reply), EDQUOT);
	wire_free(reply);
	/* handing spans back does not end their charge: the objects in them are still ours */
	for (uint32_t i = 0; i < n; i++)
		bitmap_store(segment_allocbits(&a.seg, given[i]), 1);
	ck_assert_int_eq(hraw_refill(a.fd, 0, 0, given, n, &reply), 0);
	wire_free(reply);
	ck_assert_int_eq(hraw_refill(a.fd, 1, 1, NULL, 0, &reply), 0);
	ck_assert_int_eq(hraw_error_code(reply), EDQUOT);
	wire_free(reply);
	/* another client is unaffected */
	ck_assert_int_eq(hraw_in_child(hd_default.sock, allocates_900k, NULL), 0);
	hraw_close(&a);
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_stats_keys)
{
	Heapd__Envelope *owner, *reply;
	hraw_t c;
	reply = start_and_refill(&c, 2);
	wire_free(reply);
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_ptr_nonnull(st);
	ck_assert_uint_eq(st->arena_bytes, 256ULL << 20);
	ck_assert_uint_eq(st->page_size, HEAPD_PAGE_SIZE);
	ck_assert_uint_eq(st->pages_max, (256ULL << 20) / HEAPD_PAGE_SIZE);
	ck_assert_uint_ge(st->pages_total, st->pages_in_use + st->pages_free);
	ck_assert_uint_eq(st->pages_total, st->pages_in_use + st->pages_free);
	ck_assert_uint_eq(st->pages_in_use, 2 * sizeclass_npages[K]);
	ck_assert_uint_eq(st->spans_in_use, 2);
	ck_assert_uint_eq(st->objects_in_use, 0);
	ck_assert_uint_eq(st->bytes_in_use, 0);
	ck_assert_uint_eq(st->clients, 1);
	ck_assert_uint_eq(st->n_classes, 1);
	ck_assert_uint_eq(st->classes[0]->sizeclass, K);
	ck_assert_uint_eq(st->classes[0]->size, sizeclass_size[K]);
	ck_assert_uint_eq(st->classes[0]->spans, 2);
	ck_assert_uint_eq(st->classes[0]->free_slots, 2 * sizeclass_nelems[K]);
	wire_free(owner);

	/* Clients: pid, spans cached, pages held */
	int fd = hctl_open(hd_default.sock);
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	ck_assert_int_eq(wire_call(fd, &env, &reply, NULL), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_CLIENTS_REPLY);
	int found = 0;
	for (size_t i = 0; i < reply->clients_reply->n_clients; i++) {
		Heapd__ClientInfo *ci = reply->clients_reply->clients[i];
		if (ci->control)
			continue;
		found++;
		ck_assert_uint_eq(ci->pid, (uint32_t)getpid());
		ck_assert_uint_eq(ci->slot, c.slot);
		ck_assert_uint_eq(ci->spans_cached, 2);
		ck_assert_uint_eq(ci->pages_held, 2 * sizeclass_npages[K]);
		ck_assert_uint_ge(ci->requests, 2);
	}
	ck_assert_int_eq(found, 1);
	wire_free(reply);
	close(fd);
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

START_TEST(test_sweep_frees_objects)
{
	Heapd__Envelope *owner, *reply;
	hraw_t c;
	reply = start_and_refill(&c, 1);
	uint32_t id = reply->refill_reply->spans[0]->span;
	wire_free(reply);
	uint64_t *alloc = segment_allocbits(&c.seg, id);
	uint64_t *freeb = segment_freebits(&c.seg, id, sizeclass_nelems[K]);
	bitmap_store(&alloc[0], 0xff); /* 8 objects */
	ck_assert_int_eq(hraw_refill(c.fd, 0, 0, &id, 1, &reply), 0);
	wire_free(reply);
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->objects_in_use, 8);
	uint64_t cycles = st->sweep_cycles;
	uint32_t sg = st->sweepgen;
	wire_free(owner);

	/* another process frees them; the daemon, owning the span, sweeps it */
	for (uint32_t i = 0; i < 8; i++)
		ck_assert_int_eq(bitmap_mark_free(alloc, freeb, i), BITMAP_FREED);
	st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->objects_in_use, 0);
	wire_free(owner);
	ck_assert_int_eq(hctl_sweep(hd_default.sock), 0);
	st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_gt(st->sweep_cycles, cycles);
	ck_assert_uint_ge(st->sweepgen, sg + 2);
	ck_assert_uint_eq(st->sweepgen % 2, 0);
	ck_assert_uint_eq(st->pages_in_use, 0);
	ck_assert_uint_eq(st->spans_in_use, 0);
	wire_free(owner);
	assert_healthy();
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

START_TEST(test_killed_client)
{
	int ready[2];
	hd_default_start(NULL, NULL);
	ck_assert_int_eq(pipe(ready), 0);
	pid_t pid = fork();
	if (pid == 0) {
		hraw_t c;
		Heapd__Envelope *reply;
		if (hraw_hello(hd_default.sock, &c) < 0 || hraw_refill(c.fd, K, 16, NULL, 0, &reply) < 0)
			_exit(1);
		uint32_t id = reply->refill_reply->spans[0]->span;
		bitmap_store(segment_allocbits(&c.seg, id), 0xf);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char x;
	ck_assert_int_eq(read(ready[0], &x, 1), 1);
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->clients, 1);
	ck_assert_uint_eq(st->spans_in_use, 16);
	wire_free(owner);

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert(hctl_wait_clients(hd_default.sock, 0, 5000));
	st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->spans_in_use, 1); /* the span with live objects, in central */
	ck_assert_uint_eq(st->objects_in_use, 4);
	wire_free(owner);
	ck_assert(hd_wait_log(&hd_default, "spans taken back", 1000));
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_thousand_connections)
{
	hd_default_start(NULL, NULL);
	for (int i = 0; i < 1000; i++) {
		if (i % 2) {
			hraw_t c;
			ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
			hraw_close(&c);
		} else {
			int fd = sock_connect(hd_default.sock);
			ck_assert_int_ge(fd, 0);
			close(fd);
		}
	}
	ck_assert(hctl_wait_clients(hd_default.sock, 0, 5000));
	assert_healthy();
	/* still serving clients */
	hraw_t c;
	Heapd__Envelope *reply;
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_int_eq(hraw_refill(c.fd, K, 1, NULL, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	wire_free(reply);
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

START_TEST(test_stuck_client_dropped)
{
	static hraw_flood_t flood;
	hd_default_start(NULL, NULL);
	int fd = hctl_open(hd_default.sock);
	int small = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	/* ask without ever reading the replies, until the daemon gives up on us */
	hraw_flood_init(&flood, 0);
	ck_assert(hutil_wait_until(hraw_flood(&flood, fd) < 0 ||
	                           hd_log_contains(&hd_default, "does not read its replies"), 20000));
	ck_assert(hd_wait_log(&hd_default, "does not read its replies", 5000));
	close(fd);
	/* everyone else is served */
	assert_healthy();
	hd_default_stop();
}
END_TEST

/* As another process: a Hello naming slot *arg (+ 1) as its own; the slot it got goes to *arg. */
static int hello_naming(void *arg)
{
	uint32_t *slot = arg;
	hraw_t c;
	int rc = hraw_hello_again(hd_default.sock, &c, *slot + 1, NULL, 0);
	*slot = rc == 0 ? c.slot : HEAPD_NIL;
	return 0;
}

START_TEST(test_readopt_after_restart)
{
	Heapd__Envelope *reply;
	hraw_t c, c2;
	reply = start_and_refill(&c, 2);
	uint32_t keep = reply->refill_reply->spans[0]->span;
	uint32_t drop = reply->refill_reply->spans[1]->span;
	wire_free(reply);
	bitmap_store(segment_allocbits(&c.seg, keep), 0x1);
	memcpy(segment_page_addr(&c.seg, keep), "kept", 5);

	hd_stop(&hd_default, SIGKILL);
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(hd_wait_log(&hd_default, "kept for 1 live clients", 2000));

	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &c2, c.slot + 1, &keep, 1), 0);
	ck_assert_uint_eq(c2.slot, c.slot);
	ck_assert_uint_eq(c2.seg.spans[keep].owner, c.slot + 1);
	ck_assert_uint_ne(c2.seg.spans[drop].owner, c.slot + 1);
	ck_assert_str_eq((char *)segment_page_addr(&c2.seg, keep), "kept");
	assert_healthy();

	/* another process naming our slot gets one of its own and takes nothing over */
	uint32_t *got = hutil_shared(sizeof(*got));
	*got = c.slot;
	ck_assert_int_eq(hchild_wait(hchild_spawn(hello_naming, got)), 0);
	ck_assert_uint_ne(*got, HEAPD_NIL);
	ck_assert_uint_ne(*got, c.slot);
	ck_assert_uint_eq(c2.seg.spans[keep].owner, c.slot + 1);
	hraw_close(&c2);
	hraw_close(&c);
	assert_healthy();
	hd_default_stop();
}
END_TEST

START_TEST(test_ended_session_keeps_slot)
{
	static const uint8_t garbage[] = { 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	Heapd__Envelope *reply;
	hraw_t c, c2;
	reply = start_and_refill(&c, 3);
	uint32_t spans[3];
	for (int i = 0; i < 3; i++)
		spans[i] = reply->refill_reply->spans[i]->span;
	wire_free(reply);

	/* a protocol error: heapd closes the connection, and the slot stays ours */
	ck_assert_int_eq(write(c.fd, garbage, sizeof(garbage)), (ssize_t)sizeof(garbage));
	ck_assert(hraw_closed(c.fd, 2000));
	ck_assert(hd_wait_log(&hd_default, "held for its process", 2000));
	ck_assert_int_eq(hctl_sweep(hd_default.sock), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(c.seg.spans[spans[i]].owner, c.slot + 1);
	assert_healthy();

	/* one connected slot per process: a second Hello is refused while connected */
	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &c2, c.slot + 1, spans, 3), 0);
	ck_assert_uint_eq(c2.slot, c.slot);
	hraw_t c3;
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c3), -EBUSY);
	/* naming a slot that is not its own does not get it a second one */
	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &c3, c.slot + 2, NULL, 0), -EBUSY);
	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &c3, 0xffffffffu, NULL, 0), -EBUSY);

	/* Bye gives every span back; the slot stays the process's, empty, until it exits */
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Bye bye = HEAPD__BYE__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_BYE;
	env.bye = &bye;
	ck_assert_int_eq(wire_call(c2.fd, &env, &reply, NULL), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_OK);
	ck_assert_uint_eq(reply->ok->value, 3);
	wire_free(reply);
	for (int i = 0; i < 3; i++)
		ck_assert_uint_ne(c.seg.spans[spans[i]].owner, c.slot + 1);
	ck_assert_uint_eq(c.seg.clients[c.slot].pid, (uint32_t)getpid());
	hraw_close(&c2);
	/* the process's next Hello, naming no slot or one not its own, gets the same slot */
	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &c3, 0, NULL, 0), 0);
	ck_assert_uint_eq(c3.slot, c.slot);
	hraw_close(&c3);
	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &c3, c.slot + 2, NULL, 0), 0);
	ck_assert_uint_eq(c3.slot, c.slot);
	hraw_close(&c3);
	hraw_close(&c);
	assert_healthy();
	hd_default_stop();
}
END_TEST

/* As uid/gid 65534: 0 if a control Hello is answered, 1 if refused. */
static int hello_as_nobody(void *arg)
{
	(void)arg;
	if (hchild_become_nobody() < 0)
		return 3;
	ctl_t c;
	char why[256] = "";
	int rc = ctl_open(&c, hd_default.sock, 0, why, sizeof(why));
	/* refused by the daemon (1), not by the file system's modes (4) */
	return rc == 0 ? 0 : strstr(why, "refused") ? 1 : 4;
}

START_TEST(test_peer_not_allowed)
{
	hd_default_start(NULL, NULL);
	hd_open_up(&hd_default);
	ck_assert_int_eq(hchild_wait(hchild_spawn(hello_as_nobody, NULL)), 1);
	ck_assert(hd_wait_log(&hd_default, "refused connection from", 2000));
	assert_healthy();
	hd_default_stop();

	hd_default_start(NULL, "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	ck_assert_int_eq(hchild_wait(hchild_spawn(hello_as_nobody, NULL)), 0);
	hd_default_stop();

	hd_default_start(NULL, "--allow-gid", "65534", NULL);
	hd_open_up(&hd_default);
	ck_assert_int_eq(hchild_wait(hchild_spawn(hello_as_nobody, NULL)), 0);
	hd_default_stop();
}
END_TEST

Suite *daemon_suite(void)
{
	return test_suite_single("daemon", "protocol", 60, NULL, NULL,
	                         test_hello_maps_arena,
	                         test_wrong_version,
	                         test_request_before_hello,
	                         test_refill_and_release,
	                         test_refill_someone_elses_span,
	                         test_large_alloc_releases,
	                         test_bad_span_ids,
	                         test_refill_count_huge,
	                         test_refill_other_classes,
	                         test_refill_other_classes_bad,
	                         test_refill_other_classes_quota,
	                         test_garbage_frame,
	                         test_unknown_message,
	                         test_oversized_frame,
	                         test_truncated_frame,
	                         test_control_cannot_allocate,
	                         test_large_alloc_free,
	                         test_large_alloc_bad_sizes,
	                         test_arena_full_is_enomem,
	                         test_quota,
	                         test_stats_keys,
	                         test_sweep_frees_objects,
	                         test_killed_client,
	                         test_thousand_connections,
	                         test_stuck_client_dropped,
	                         test_readopt_after_restart,
	                         test_ended_session_keeps_slot,
	                         test_peer_not_allowed,
	                         NULL);
}

TEST_SUITES(daemon_suite);
