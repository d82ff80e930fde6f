// SPDX-License-Identifier: MIT
/*
 * test_wire.c - the wire format and its sockets (proto/wire.c, proto/sock.c):
 * frame headers, every message kind packed and unpacked, truncated and
 * garbage payloads, descriptors riding on a frame, blocking reads and writes
 * interrupted by signals, the read-ahead reader, wire_call's seq check, and
 * sockets by path (length limit, mode through the umask, paths in use).
 *
 * Peers are the other end of a socketpair, written to before the call when
 * the kernel's buffer holds the whole exchange, else a thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/tmpdir.h"
#include "harness/util.h"
#include "sock.h"
#include "wire.h"

/* ---- helpers ---- */

static void pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}


/* The whole frame for env, malloc'd; *len its size. */
static uint8_t *frame_of(const Heapd__Envelope *env, size_t *len)
{
	*len = wire_frame_size(env);
	uint8_t *buf = malloc(*len);
	ck_assert_ptr_nonnull(buf);
	wire_frame_pack(env, buf);
	return buf;
}

static void write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		ck_assert_msg(n > 0, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Write env's frame with descriptors fds[0..nfds) on its first byte. */
static void send_with_fds(int sock, const Heapd__Envelope *env, const int *fds, int nfds)
{
	size_t len;
	uint8_t *buf = frame_of(env, &len);
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;

	ck_assert_int_le(nfds, 4);
	if (nfds > 0) {
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	ck_assert_int_eq(sendmsg(sock, &msg, 0), (ssize_t)len);
	free(buf);
}

static void header(uint8_t out[HEAPD_FRAME_HEADER], uint32_t len)
{
	out[0] = (uint8_t)len;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 24);
}

/* A Refill envelope with n release entries from storage rel (a frame of about 5 * n bytes). */
static void refill_env(Heapd__Envelope *env, Heapd__Refill *rf, uint32_t *rel, size_t n, uint64_t seq)
{
	heapd__envelope__init(env);
	heapd__refill__init(rf);
	for (size_t i = 0; i < n; i++)
		rel[i] = (uint32_t)(i * 2654435761u) | 0x10000000u; /* five bytes each as a varint */
	rf->sizeclass = 7;
	rf->count = 3;
	rf->release = rel;
	rf->n_release = n;
	env->msg_case = HEAPD__ENVELOPE__MSG_REFILL;
	env->refill = rf;
	env->seq = seq;
}

static void assert_refill(const Heapd__Envelope *env, const uint32_t *rel, size_t n, uint64_t seq)
{
	ck_assert_ptr_nonnull(env);
	ck_assert_int_eq(env->msg_case, HEAPD__ENVELOPE__MSG_REFILL);
	ck_assert_uint_eq(env->seq, seq);
	ck_assert_uint_eq(env->refill->n_release, n);
	ck_assert_uint_eq(env->refill->sizeclass, 7);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(env->refill->release[i], rel[i]);
}

static Heapd__Envelope *ok_env(Heapd__Envelope *env, Heapd__Ok *ok, uint64_t seq, uint64_t value)
{
	heapd__envelope__init(env);
	heapd__ok__init(ok);
	ok->value = value;
	env->msg_case = HEAPD__ENVELOPE__MSG_OK;
	env->ok = ok;
	env->seq = seq;
	return env;
}

/* Bytes waiting to be read on fd right now. */
static ssize_t pending(int fd)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
	return n < 0 && errno == EAGAIN ? 0 : n;
}

/* ---- one sample of every message kind ---- */

typedef struct sample {
	Heapd__Envelope env;
	Heapd__Hello hello;
	Heapd__HelloReply hello_reply;
	Heapd__Refill refill;
	Heapd__RefillReply refill_reply;
	Heapd__SpanGrant grant[3], *grantp[3];
	Heapd__LargeAlloc large_alloc;
	Heapd__LargeAllocReply large_alloc_reply;
	Heapd__LargeFree large_free;
	Heapd__Bye bye;
	Heapd__StatsRequest stats;
	Heapd__StatsReply stats_reply;
	Heapd__ClassStats cls[2], *clsp[2];
	Heapd__ClientsRequest clients;
	Heapd__ClientsReply clients_reply;
	Heapd__ClientInfo ci[2], *cip[2];
	Heapd__SweepRequest sweep;
	Heapd__ScavengeRequest scavenge;
	Heapd__CheckRequest check;
	Heapd__CheckReply check_reply;
	char *problems[2];
	Heapd__Ok ok;
	Heapd__Error error;
	uint32_t list[5];
} sample_t;

#define NKINDS 18 /* HEAPD__ENVELOPE__MSG_HELLO .. HEAPD__ENVELOPE__MSG_BYE */

/* A value for field f of kind k, distinct across kinds and fields, with high bits set. */
static uint64_t v64(int k, int f)
{
	return 0x8000000000000000ULL | (uint64_t)k << 40 | (uint64_t)f << 8 | 0x5a;
}

static uint32_t v32(int k, int f)
{
	return 0x80000000u | (uint32_t)k << 16 | (uint32_t)f << 4 | 0x5;
}

static void build(sample_t *s, int k)
{
	memset(s, 0, sizeof(*s));
	heapd__envelope__init(&s->env);
	s->env.msg_case = (Heapd__Envelope__MsgCase)k;
	s->env.seq = v64(k, 0);
	for (int i = 0; i < 5; i++)
		s->list[i] = v32(k, 10 + i);
	switch (k) {
	case HEAPD__ENVELOPE__MSG_HELLO:
		heapd__hello__init(&s->hello);
		s->hello.version = v32(k, 1);
		s->hello.control = 1;
		s->hello.prev_slot = v32(k, 2);
		s->hello.held_spans = s->list;
		s->hello.n_held_spans = 5;
		s->hello.pid = v32(k, 3);
		s->hello.large_received = v32(k, 4);
		s->env.hello = &s->hello;
		break;
	case HEAPD__ENVELOPE__MSG_HELLO_REPLY:
		heapd__hello_reply__init(&s->hello_reply);
		s->hello_reply.version = v32(k, 1);
		s->hello_reply.slot = v32(k, 2);
		s->hello_reply.arena_id = v64(k, 3);
		s->hello_reply.map_size = v64(k, 4);
		s->hello_reply.base_hint = v64(k, 5);
		s->hello_reply.generation = v32(k, 6);
		s->hello_reply.page_size = v32(k, 7);
		s->env.hello_reply = &s->hello_reply;
		break;
	case HEAPD__ENVELOPE__MSG_REFILL:
		heapd__refill__init(&s->refill);
		s->refill.sizeclass = v32(k, 1);
		s->refill.count = v32(k, 2);
		s->refill.release = s->list;
		s->refill.n_release = 5;
		s->env.refill = &s->refill;
		break;
	case HEAPD__ENVELOPE__MSG_REFILL_REPLY:
		heapd__refill_reply__init(&s->refill_reply);
		for (int i = 0; i < 3; i++) {
			heapd__span_grant__init(&s->grant[i]);
			s->grant[i].span = v32(k, 1 + i);
			s->grant[i].needzero = i != 1;
			s->grantp[i] = &s->grant[i];
		}
		s->refill_reply.spans = s->grantp;
		s->refill_reply.n_spans = 3;
		s->env.refill_reply = &s->refill_reply;
		break;
	case HEAPD__ENVELOPE__MSG_LARGE_ALLOC:
		heapd__large_alloc__init(&s->large_alloc);
		s->large_alloc.size = v64(k, 1);
		s->large_alloc.zero = 1;
		s->large_alloc.align = v64(k, 2);
		s->large_alloc.release = s->list;
		s->large_alloc.n_release = 5;
		s->env.large_alloc = &s->large_alloc;
		break;
	case HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY:
		heapd__large_alloc_reply__init(&s->large_alloc_reply);
		s->large_alloc_reply.span = v32(k, 1);
		s->large_alloc_reply.zeroed = 1;
		s->large_alloc_reply.gen = v32(k, 2);
		s->env.large_alloc_reply = &s->large_alloc_reply;
		break;
	case HEAPD__ENVELOPE__MSG_LARGE_FREE:
		heapd__large_free__init(&s->large_free);
		s->large_free.span = v32(k, 1);
		s->large_free.gen = v32(k, 2);
		s->env.large_free = &s->large_free;
		break;
	case HEAPD__ENVELOPE__MSG_STATS:
		heapd__stats_request__init(&s->stats);
		s->env.stats = &s->stats;
		break;
	case HEAPD__ENVELOPE__MSG_STATS_REPLY: {
		Heapd__StatsReply *r = &s->stats_reply;
		heapd__stats_reply__init(r);
		r->arena_bytes = v64(k, 1);
		r->page_size = v32(k, 2);
		r->pages_total = v64(k, 3);
		r->pages_in_use = v64(k, 4);
		r->pages_free = v64(k, 5);
		r->pages_released = v64(k, 6);
		r->spans_in_use = v64(k, 7);
		r->objects_in_use = v64(k, 8);
		r->bytes_in_use = v64(k, 9);
		r->clients = v32(k, 10);
		r->sweepgen = v32(k, 11);
		r->sweep_cycles = v64(k, 12);
		r->uptime_seconds = v64(k, 13);
		for (int i = 0; i < 2; i++) {
			heapd__class_stats__init(&s->cls[i]);
			s->cls[i].sizeclass = v32(k, 20 + i);
			s->cls[i].size = v32(k, 22 + i);
			s->cls[i].spans = v64(k, 24 + i);
			s->cls[i].objects_in_use = v64(k, 26 + i);
			s->cls[i].free_slots = v64(k, 28 + i);
			s->clsp[i] = &s->cls[i];
		}
		r->classes = s->clsp;
		r->n_classes = 2;
		r->large_objects = v64(k, 14);
		r->large_bytes = v64(k, 15);
		r->pages_max = v64(k, 16);
		s->env.stats_reply = r;
		break;
	}
	case HEAPD__ENVELOPE__MSG_CLIENTS:
		heapd__clients_request__init(&s->clients);
		s->env.clients = &s->clients;
		break;
	case HEAPD__ENVELOPE__MSG_CLIENTS_REPLY:
		heapd__clients_reply__init(&s->clients_reply);
		for (int i = 0; i < 2; i++) {
			Heapd__ClientInfo *c = &s->ci[i];
			heapd__client_info__init(c);
			c->pid = v32(k, 1 + 10 * i);
			c->uid = v32(k, 2 + 10 * i);
			c->spans_cached = v64(k, 3 + 10 * i);
			c->pages_held = v64(k, 4 + 10 * i);
			c->requests = v64(k, 5 + 10 * i);
			c->slot = v32(k, 6 + 10 * i);
			c->control = i == 0;
			c->connected = i == 1;
			s->cip[i] = c;
		}
		s->clients_reply.clients = s->cip;
		s->clients_reply.n_clients = 2;
		s->env.clients_reply = &s->clients_reply;
		break;
	case HEAPD__ENVELOPE__MSG_SWEEP:
		heapd__sweep_request__init(&s->sweep);
		s->env.sweep = &s->sweep;
		break;
	case HEAPD__ENVELOPE__MSG_SCAVENGE:
		heapd__scavenge_request__init(&s->scavenge);
		s->env.scavenge = &s->scavenge;
		break;
	case HEAPD__ENVELOPE__MSG_CHECK:
		heapd__check_request__init(&s->check);
		s->env.check = &s->check;
		break;
	case HEAPD__ENVELOPE__MSG_CHECK_REPLY:
		heapd__check_reply__init(&s->check_reply);
		s->check_reply.nproblems = v64(k, 1);
		s->problems[0] = "span 12: state 9";
		s->problems[1] = "";
		s->check_reply.problems = s->problems;
		s->check_reply.n_problems = 2;
		s->env.check_reply = &s->check_reply;
		break;
	case HEAPD__ENVELOPE__MSG_OK:
		heapd__ok__init(&s->ok);
		s->ok.value = v64(k, 1);
		s->env.ok = &s->ok;
		break;
	case HEAPD__ENVELOPE__MSG_ERROR:
		heapd__error__init(&s->error);
		s->error.code = -(int32_t)v32(k, 1); /* negative on the wire too: int32 keeps the sign */
		s->error.message = "no room: \xc3\xa9t\xc3\xa9";
		s->error.fatal = 1;
		s->env.error = &s->error;
		break;
	case HEAPD__ENVELOPE__MSG_BYE:
		heapd__bye__init(&s->bye);
		s->env.bye = &s->bye;
		break;
	default:
		ck_abort_msg("no sample for kind %d", k);
	}
}

/* got must equal the sample of kind k field by field. */
static void same(const sample_t *want, const Heapd__Envelope *got, int k)
{
	ck_assert_ptr_nonnull(got);
	ck_assert_int_eq(got->msg_case, k);
	ck_assert_uint_eq(got->seq, want->env.seq);
	switch (k) {
	case HEAPD__ENVELOPE__MSG_HELLO:
		ck_assert_uint_eq(got->hello->version, want->hello.version);
		ck_assert_int_eq(got->hello->control, 1);
		ck_assert_uint_eq(got->hello->prev_slot, want->hello.prev_slot);
		ck_assert_uint_eq(got->hello->n_held_spans, 5);
		ck_assert_mem_eq(got->hello->held_spans, want->list, sizeof(want->list));
		ck_assert_uint_eq(got->hello->pid, want->hello.pid);
		ck_assert_uint_eq(got->hello->large_received, want->hello.large_received);
		break;
	case HEAPD__ENVELOPE__MSG_HELLO_REPLY:
		ck_assert_mem_eq((const uint8_t *)got->hello_reply + sizeof(ProtobufCMessage),
		                 (const uint8_t *)&want->hello_reply + sizeof(ProtobufCMessage),
		                 sizeof(Heapd__HelloReply) - sizeof(ProtobufCMessage));
		break;
	case HEAPD__ENVELOPE__MSG_REFILL:
		ck_assert_uint_eq(got->refill->sizeclass, want->refill.sizeclass);
		ck_assert_uint_eq(got->refill->count, want->refill.count);
		ck_assert_uint_eq(got->refill->n_release, 5);
		ck_assert_mem_eq(got->refill->release, want->list, sizeof(want->list));
		break;
	case HEAPD__ENVELOPE__MSG_REFILL_REPLY:
		ck_assert_uint_eq(got->refill_reply->n_spans, 3);
		for (int i = 0; i < 3; i++) {
			ck_assert_uint_eq(got->refill_reply->spans[i]->span, want->grant[i].span);
			ck_assert_int_eq(got->refill_reply->spans[i]->needzero, want->grant[i].needzero);
		}
		break;
	case HEAPD__ENVELOPE__MSG_LARGE_ALLOC:
		ck_assert_uint_eq(got->large_alloc->size, want->large_alloc.size);
		ck_assert_int_eq(got->large_alloc->zero, 1);
		ck_assert_uint_eq(got->large_alloc->align, want->large_alloc.align);
		ck_assert_uint_eq(got->large_alloc->n_release, 5);
		ck_assert_mem_eq(got->large_alloc->release, want->list, sizeof(want->list));
		break;
	case HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY:
		ck_assert_uint_eq(got->large_alloc_reply->span, want->large_alloc_reply.span);
		ck_assert_int_eq(got->large_alloc_reply->zeroed, 1);
		ck_assert_uint_eq(got->large_alloc_reply->gen, want->large_alloc_reply.gen);
		break;
	case HEAPD__ENVELOPE__MSG_LARGE_FREE:
		ck_assert_uint_eq(got->large_free->span, want->large_free.span);
		ck_assert_uint_eq(got->large_free->gen, want->large_free.gen);
		break;
	case HEAPD__ENVELOPE__MSG_STATS:
		ck_assert_ptr_nonnull(got->stats);
		break;
	case HEAPD__ENVELOPE__MSG_STATS_REPLY: {
		const Heapd__StatsReply *g = got->stats_reply, *w = &want->stats_reply;
		ck_assert_uint_eq(g->arena_bytes, w->arena_bytes);
		ck_assert_uint_eq(g->page_size, w->page_size);
		ck_assert_uint_eq(g->pages_total, w->pages_total);
		ck_assert_uint_eq(g->pages_in_use, w->pages_in_use);
		ck_assert_uint_eq(g->pages_free, w->pages_free);
		ck_assert_uint_eq(g->pages_released, w->pages_released);
		ck_assert_uint_eq(g->spans_in_use, w->spans_in_use);
		ck_assert_uint_eq(g->objects_in_use, w->objects_in_use);
		ck_assert_uint_eq(g->bytes_in_use, w->bytes_in_use);
		ck_assert_uint_eq(g->clients, w->clients);
		ck_assert_uint_eq(g->sweepgen, w->sweepgen);
		ck_assert_uint_eq(g->sweep_cycles, w->sweep_cycles);
		ck_assert_uint_eq(g->uptime_seconds, w->uptime_seconds);
		ck_assert_uint_eq(g->large_objects, w->large_objects);
		ck_assert_uint_eq(g->large_bytes, w->large_bytes);
		ck_assert_uint_eq(g->pages_max, w->pages_max);
		ck_assert_uint_eq(g->n_classes, 2);
		for (int i = 0; i < 2; i++) {
			ck_assert_uint_eq(g->classes[i]->sizeclass, want->cls[i].sizeclass);
			ck_assert_uint_eq(g->classes[i]->size, want->cls[i].size);
			ck_assert_uint_eq(g->classes[i]->spans, want->cls[i].spans);
			ck_assert_uint_eq(g->classes[i]->objects_in_use, want->cls[i].objects_in_use);
			ck_assert_uint_eq(g->classes[i]->free_slots, want->cls[i].free_slots);
		}
		break;
	}
	case HEAPD__ENVELOPE__MSG_CLIENTS:
		ck_assert_ptr_nonnull(got->clients);
		break;
	case HEAPD__ENVELOPE__MSG_CLIENTS_REPLY:
		ck_assert_uint_eq(got->clients_reply->n_clients, 2);
		for (int i = 0; i < 2; i++) {
			const Heapd__ClientInfo *g = got->clients_reply->clients[i], *w = &want->ci[i];
			ck_assert_uint_eq(g->pid, w->pid);
			ck_assert_uint_eq(g->uid, w->uid);
			ck_assert_uint_eq(g->spans_cached, w->spans_cached);
			ck_assert_uint_eq(g->pages_held, w->pages_held);
			ck_assert_uint_eq(g->requests, w->requests);
			ck_assert_uint_eq(g->slot, w->slot);
			ck_assert_int_eq(g->control, w->control);
			ck_assert_int_eq(g->connected, w->connected);
		}
		break;
	case HEAPD__ENVELOPE__MSG_SWEEP:
		ck_assert_ptr_nonnull(got->sweep);
		break;
	case HEAPD__ENVELOPE__MSG_SCAVENGE:
		ck_assert_ptr_nonnull(got->scavenge);
		break;
	case HEAPD__ENVELOPE__MSG_CHECK:
		ck_assert_ptr_nonnull(got->check);
		break;
	case HEAPD__ENVELOPE__MSG_CHECK_REPLY:
		ck_assert_uint_eq(got->check_reply->nproblems, want->check_reply.nproblems);
		ck_assert_uint_eq(got->check_reply->n_problems, 2);
		ck_assert_str_eq(got->check_reply->problems[0], want->problems[0]);
		ck_assert_str_eq(got->check_reply->problems[1], "");
		break;
	case HEAPD__ENVELOPE__MSG_OK:
		ck_assert_uint_eq(got->ok->value, want->ok.value);
		break;
	case HEAPD__ENVELOPE__MSG_ERROR:
		ck_assert_int_eq(got->error->code, want->error.code);
		ck_assert_str_eq(got->error->message, want->error.message);
		ck_assert_int_eq(got->error->fatal, 1);
		break;
	case HEAPD__ENVELOPE__MSG_BYE:
		ck_assert_ptr_nonnull(got->bye);
		break;
	}
}

/* ---- frame headers ---- */

START_TEST(test_header_parse)
{
	uint8_t h[HEAPD_FRAME_HEADER];
	uint32_t len = 12345;

	/* little-endian: the low byte first */
	const uint8_t le[HEAPD_FRAME_HEADER] = { 0x04, 0x03, 0x02, 0x00 };
	ck_assert_int_eq(wire_parse_header(le, &len), 0);
	ck_assert_uint_eq(len, 0x020304);

	header(h, 0);
	ck_assert_int_eq(wire_parse_header(h, &len), 0); /* the header is fine; the payload is not */
	ck_assert_uint_eq(len, 0);

	header(h, HEAPD_MAX_FRAME);
	ck_assert_int_eq(wire_parse_header(h, &len), 0);
	ck_assert_uint_eq(len, HEAPD_MAX_FRAME);

	header(h, HEAPD_MAX_FRAME + 1);
	ck_assert_int_eq(wire_parse_header(h, &len), -EPROTO);

	/* a length with only the top byte set must not be read as a small one */
	const uint8_t top[HEAPD_FRAME_HEADER] = { 0, 0, 0, 0x01 };
	ck_assert_int_eq(wire_parse_header(top, &len), -EPROTO);
	const uint8_t all[HEAPD_FRAME_HEADER] = { 0xff, 0xff, 0xff, 0xff };
	ck_assert_int_eq(wire_parse_header(all, &len), -EPROTO);
}
END_TEST

START_TEST(test_frame_pack)
{
	static uint32_t rel[20000];
	static const size_t counts[] = { 0, 1, 60, 1000, 20000 };
	Heapd__Envelope env;
	Heapd__Refill rf;
	uint32_t len;
	size_t n = 0;

	/* payloads of one, two and three bytes of length: every header byte counts */
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		refill_env(&env, &rf, rel, counts[i], 77);
		uint8_t *buf = frame_of(&env, &n);
		ck_assert_uint_eq(n, HEAPD_FRAME_HEADER + heapd__envelope__get_packed_size(&env));
		ck_assert_int_eq(wire_parse_header(buf, &len), 0);
		ck_assert_uint_eq(len, n - HEAPD_FRAME_HEADER);
		Heapd__Envelope *got = wire_unpack(buf + HEAPD_FRAME_HEADER, len);
		assert_refill(got, rel, counts[i], 77);
		wire_free(got);
		free(buf);
	}
	ck_assert_uint_gt(n, 1u << 16);
	wire_free(NULL);
}
END_TEST

START_TEST(test_roundtrip_every_kind)
{
	static sample_t s;
	int kinds = 0;

	for (int k = HEAPD__ENVELOPE__MSG_HELLO; k <= HEAPD__ENVELOPE__MSG_BYE; k++) {
		size_t n;
		uint32_t len;
		build(&s, k);
		uint8_t *buf = frame_of(&s.env, &n);
		ck_assert_int_eq(wire_parse_header(buf, &len), 0);
		ck_assert_uint_eq(len, n - HEAPD_FRAME_HEADER);
		Heapd__Envelope *got = wire_unpack(buf + HEAPD_FRAME_HEADER, len);
		same(&s, got, k);
		wire_free(got);
		free(buf);
		kinds++;
	}
	ck_assert_int_eq(kinds, NKINDS);
}
END_TEST

/*
 * Every prefix of every kind's payload: a cut inside the message decodes to
 * NULL; a cut after it (only seq missing) decodes to the same kind. Nothing
 * reads past the bytes given (the sanitizer build would say so).
 */
START_TEST(test_truncated_payloads)
{
	static sample_t s;

	for (int k = HEAPD__ENVELOPE__MSG_HELLO; k <= HEAPD__ENVELOPE__MSG_BYE; k++) {
		build(&s, k);
		uint64_t seq = s.env.seq;
		s.env.seq = 0; /* proto3: not packed, so this is the message alone */
		size_t msg_len = heapd__envelope__get_packed_size(&s.env);
		s.env.seq = seq;
		size_t full = heapd__envelope__get_packed_size(&s.env);
		uint8_t *buf = malloc(full);
		ck_assert_uint_eq(heapd__envelope__pack(&s.env, buf), full);
		ck_assert_uint_gt(full, msg_len);

		for (size_t cut = 0; cut < full; cut++) {
			/* an exact copy, so that a read past cut is a read past the allocation */
			uint8_t *p = malloc(cut ? cut : 1);
			memcpy(p, buf, cut);
			Heapd__Envelope *got = wire_unpack(p, cut);
			if (cut < msg_len)
				ck_assert_msg(got == NULL, "kind %d cut at %zu of %zu decoded", k, cut, full);
			else if (got)
				ck_assert_int_eq(got->msg_case, k);
			wire_free(got);
			free(p);
		}
		free(buf);
	}
}
END_TEST

START_TEST(test_garbage_payloads)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	uint8_t buf[300];
	int decoded = 0;

	/* an envelope with nothing but seq is no message */
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	env.seq = 42;
	size_t n = heapd__envelope__pack(&env, buf);
	ck_assert_ptr_null(wire_unpack(buf, n));
	ck_assert_ptr_null(wire_unpack(buf, 0));

	/* a known tag with a length beyond the payload */
	const uint8_t longer[] = { (3 << 3) | 2, 0x7f, 0x08, 0x01 };
	ck_assert_ptr_null(wire_unpack(longer, sizeof(longer)));
	/* a varint that never ends */
	memset(buf, 0xff, sizeof(buf));
	ck_assert_ptr_null(wire_unpack(buf, sizeof(buf)));

	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(x % sizeof(buf));
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
		}
		if (len > 2 && (x & 1)) {
			/* a valid oneof tag, so decoding gets into the messages */
			buf[0] = (uint8_t)(((1 + x % NKINDS) << 3) | 2);
			buf[1] = (uint8_t)(len - 2 > 127 ? 127 : len - 2);
		}
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, buf, len);
		Heapd__Envelope *got = wire_unpack(p, len);
		if (got) {
			ck_assert_int_ne(got->msg_case, HEAPD__ENVELOPE__MSG__NOT_SET);
			decoded++;
		}
		wire_free(got);
		free(p);
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	ck_assert_int_gt(decoded, 0); /* the valid-tag half does reach the message decoders */
}
END_TEST

/* ---- wire_send and wire_recv ---- */

START_TEST(test_send_recv)
{
	static sample_t s;
	int sv[2];
	pair(sv);

	for (int k = HEAPD__ENVELOPE__MSG_HELLO; k <= HEAPD__ENVELOPE__MSG_BYE; k++) {
		Heapd__Envelope *got;
		int fds[WIRE_MAX_FDS] = { 7, 7 };
		build(&s, k);
		ck_assert_int_eq(wire_send(sv[0], &s.env), 0);
		ck_assert_int_eq(wire_recv(sv[1], &got, fds), 0);
		ck_assert_int_eq(fds[0], -1); /* none came */
		ck_assert_int_eq(fds[1], -1);
		same(&s, got, k);
		wire_free(got);
	}
	/* wire_recv reads no byte past its frame */
	Heapd__Envelope a, b, *got;
	Heapd__Ok oka, okb;
	ck_assert_int_eq(wire_send(sv[0], ok_env(&a, &oka, 1, 100)), 0);
	ck_assert_int_eq(wire_send(sv[0], ok_env(&b, &okb, 2, 200)), 0);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), 0);
	ck_assert_uint_eq(got->ok->value, 100);
	wire_free(got);
	ck_assert_int_eq(pending(sv[1]) > 0, 1);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), 0);
	ck_assert_uint_eq(got->ok->value, 200);
	wire_free(got);
	ck_assert_int_eq(pending(sv[1]), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* A reader of one frame on another thread, for frames bigger than a socket buffer. */
typedef struct reader_arg {
	int fd;
	int rc;
	Heapd__Envelope *env;
	wire_reader_t *rd;      /* NULL: wire_recv */
	_Atomic pid_t tid;
} reader_arg_t;

static void *reader_main(void *p)
{
	reader_arg_t *a = p;
	atomic_store(&a->tid, (pid_t)syscall(SYS_gettid));
	a->rc = a->rd ? wire_read_frame(a->fd, a->rd, &a->env) : wire_recv(a->fd, &a->env, NULL);
	return NULL;
}

START_TEST(test_large_frames)
{
	/* a frame far over the stack buffer and the socket buffer, and just under the limit */
	static uint32_t rel[200000];
	Heapd__Envelope env;
	Heapd__Refill rf;
	int sv[2];
	pair(sv);

	refill_env(&env, &rf, rel, 200000, 9);
	ck_assert_uint_le(wire_frame_size(&env) - HEAPD_FRAME_HEADER, HEAPD_MAX_FRAME);
	ck_assert_uint_gt(wire_frame_size(&env), 512 * 1024);
	reader_arg_t a = { .fd = sv[1] };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, reader_main, &a), 0);
	ck_assert_int_eq(wire_send(sv[0], &env), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(a.rc, 0);
	assert_refill(a.env, rel, 200000, 9);
	wire_free(a.env);

	/* over the limit: refused before a byte goes out */
	static uint32_t more[260000];
	refill_env(&env, &rf, more, 260000, 10);
	ck_assert_uint_gt(wire_frame_size(&env) - HEAPD_FRAME_HEADER, HEAPD_MAX_FRAME);
	ck_assert_int_eq(wire_send(sv[0], &env), -EMSGSIZE);
	ck_assert_int_eq(pending(sv[1]), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_send_to_closed_peer)
{
	Heapd__Envelope env;
	Heapd__Ok ok;
	int sv[2];
	pair(sv);
	close(sv[1]);
	/* EPIPE, and no SIGPIPE: this process would die of it */
	ck_assert_int_eq(wire_send(sv[0], ok_env(&env, &ok, 1, 1)), -EPIPE);
	close(sv[0]);
}
END_TEST

START_TEST(test_recv_bad_frames)
{
	uint8_t h[HEAPD_FRAME_HEADER];
	Heapd__Envelope env, *got = (Heapd__Envelope *)&env;
	Heapd__Ok ok;
	size_t n;
	int sv[2];

	/* end of stream before a frame, inside the header, inside the payload */
	uint8_t *frame = frame_of(ok_env(&env, &ok, 3, 12345678), &n);
	for (size_t cut = 0; cut < n; cut++) {
		pair(sv);
		write_all(sv[0], frame, cut);
		shutdown(sv[0], SHUT_WR);
		ck_assert_int_eq(wire_recv(sv[1], &got, NULL), -ECONNRESET);
		ck_assert_ptr_null(got);
		close(sv[0]);
		close(sv[1]);
	}
	free(frame);

	/* a length over the limit: nothing more is read */
	pair(sv);
	header(h, HEAPD_MAX_FRAME + 1);
	write_all(sv[0], h, sizeof(h));
	write_all(sv[0], "abc", 3);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), -EPROTO);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(pending(sv[1]), 3);
	close(sv[0]);
	close(sv[1]);

	/* zero length, and a payload that is not an envelope */
	pair(sv);
	header(h, 0);
	write_all(sv[0], h, sizeof(h));
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), -EPROTO);
	header(h, 5);
	write_all(sv[0], h, sizeof(h));
	write_all(sv[0], "\xff\xff\xff\xff\xff", 5);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), -EPROTO);
	ck_assert_ptr_null(got);
	/* and the stream is still in step for a good frame after them */
	ck_assert_int_eq(wire_send(sv[0], ok_env(&env, &ok, 4, 4)), 0);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), 0);
	ck_assert_uint_eq(got->seq, 4);
	wire_free(got);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* Descriptors ride on a frame: at most WIRE_MAX_FDS are kept, close-on-exec; the rest closed. */
START_TEST(test_recv_fds)
{
	Heapd__Envelope env, *got;
	Heapd__Ok ok;
	int sv[2], pipes[2][2], fds[WIRE_MAX_FDS];
	struct stat a, b;

	pair(sv);
	ck_assert_int_eq(pipe(pipes[0]), 0);
	ck_assert_int_eq(pipe(pipes[1]), 0);
	int before = hutil_open_fds();

	int two[2] = { pipes[0][0], pipes[1][1] };
	send_with_fds(sv[0], ok_env(&env, &ok, 5, 5), two, 2);
	ck_assert_int_eq(wire_recv(sv[1], &got, fds), 0);
	ck_assert_uint_eq(got->seq, 5);
	wire_free(got);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_ge(fds[i], 0);
		ck_assert_int_eq(fstat(fds[i], &a), 0);
		ck_assert_int_eq(fstat(two[i], &b), 0);
		ck_assert_uint_eq(a.st_ino, b.st_ino); /* in order */
		ck_assert_int_eq(fcntl(fds[i], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		close(fds[i]);
	}
	ck_assert_int_eq(hutil_open_fds(), before);

	/* more than a frame carries: the extra ones are closed, not leaked */
	int four[4] = { pipes[0][0], pipes[0][1], pipes[1][0], pipes[1][1] };
	send_with_fds(sv[0], ok_env(&env, &ok, 6, 6), four, 4);
	ck_assert_int_eq(wire_recv(sv[1], &got, fds), 0);
	wire_free(got);
	ck_assert_int_eq(hutil_open_fds(), before + 2);
	close(fds[0]);
	close(fds[1]);

	/* a bad frame that carries descriptors: they are closed and fds says none */
	uint8_t h[HEAPD_FRAME_HEADER];
	header(h, 3);
	struct iovec iov = { .iov_base = h, .iov_len = sizeof(h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	wire_fdctl_t ctl;
	wire_attach_fds(&msg, &ctl, two, 2);
	ck_assert_int_eq(sendmsg(sv[0], &msg, 0), (ssize_t)sizeof(h));
	write_all(sv[0], "\xff\xff\xff", 3);
	ck_assert_int_eq(wire_recv(sv[1], &got, fds), -EPROTO);
	ck_assert_int_eq(fds[0], -1);
	ck_assert_int_eq(fds[1], -1);
	ck_assert_int_eq(hutil_open_fds(), before);

	/* descriptors sent to a reader that takes none are not left open either */
	send_with_fds(sv[0], ok_env(&env, &ok, 7, 7), two, 2);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), 0);
	wire_free(got);
	ck_assert_int_eq(hutil_open_fds(), before);
	close(sv[0]);
	close(sv[1]);
	for (int i = 0; i < 2; i++) {
		close(pipes[i][0]);
		close(pipes[i][1]);
	}
}
END_TEST

/* ---- signals: a blocked read or write goes on after EINTR ---- */

static _Atomic int signals_seen;

static void on_signal(int sig)
{
	(void)sig;
	atomic_fetch_add(&signals_seen, 1);
}

/* A handler without SA_RESTART, so that a blocked call returns EINTR. */
static void catch_sigusr1(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

/* Wait until thread tid sleeps in the kernel (state S), i.e. is blocked in its call. */
static void wait_blocked(const _Atomic pid_t *tid)
{
	char path[64], buf[256];
	while (atomic_load(tid) == 0)
		sched_yield();
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)atomic_load(tid));
	for (;;) {
		FILE *f = fopen(path, "r");
		ck_assert_msg(f != NULL, "thread %d is gone: its call returned instead of blocking",
		              (int)atomic_load(tid));
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *st = strrchr(buf, ')');
		if (st && st[1] == ' ' && st[2] == 'S')
			return;
		sched_yield();
	}
}

/* Interrupt the blocked thread once and wait until its handler has run. */
static void interrupt(pthread_t t, const _Atomic pid_t *tid)
{
	int seen = atomic_load(&signals_seen);
	wait_blocked(tid);
	ck_assert_int_eq(pthread_kill(t, SIGUSR1), 0);
	while (atomic_load(&signals_seen) == seen)
		sched_yield();
}

/* wire_recv and wire_read_frame, blocked in the header and in the payload, each interrupted. */
static void recv_through_signals(int use_reader)
{
	static uint32_t rel[300];
	static wire_reader_t rd;
	Heapd__Envelope env;
	Heapd__Refill rf;
	pthread_t t;
	size_t n;
	int sv[2];

	catch_sigusr1();
	pair(sv);
	refill_env(&env, &rf, rel, 300, 11);
	uint8_t *frame = frame_of(&env, &n);
	wire_reader_reset(&rd);
	rd.spin_us = 0;
	reader_arg_t a = { .fd = sv[1], .rd = use_reader ? &rd : NULL };
	ck_assert_int_eq(pthread_create(&t, NULL, reader_main, &a), 0);
	interrupt(t, &a.tid);          /* before any byte */
	write_all(sv[0], frame, 2);
	interrupt(t, &a.tid);          /* inside the header */
	write_all(sv[0], frame + 2, 100);
	interrupt(t, &a.tid);          /* inside the payload */
	write_all(sv[0], frame + 102, n - 102);
	pthread_join(t, NULL);
	ck_assert_int_eq(a.rc, 0);
	assert_refill(a.env, rel, 300, 11);
	wire_free(a.env);
	free(frame);
	close(sv[0]);
	close(sv[1]);
}

START_TEST(test_recv_eintr)
{
	recv_through_signals(0);
}
END_TEST

START_TEST(test_read_frame_eintr)
{
	recv_through_signals(1);
}
END_TEST

typedef struct sender_arg {
	int fd;
	const Heapd__Envelope *env;
	int rc;
	_Atomic pid_t tid;
} sender_arg_t;

static void *sender_main(void *p)
{
	sender_arg_t *a = p;
	atomic_store(&a->tid, (pid_t)syscall(SYS_gettid));
	a->rc = wire_send(a->fd, a->env);
	return NULL;
}

/* A send blocked on a full socket buffer goes on after EINTR (or a partial write). */
START_TEST(test_send_eintr)
{
	static uint32_t rel[100000];
	Heapd__Envelope env, *got;
	Heapd__Refill rf;
	pthread_t t;
	int sv[2];

	catch_sigusr1();
	pair(sv);
	refill_env(&env, &rf, rel, 100000, 12);
	sender_arg_t a = { .fd = sv[0], .env = &env };
	ck_assert_int_eq(pthread_create(&t, NULL, sender_main, &a), 0);
	interrupt(t, &a.tid); /* the frame (~500 KB) is bigger than the buffer: it blocks */
	interrupt(t, &a.tid);
	ck_assert_int_eq(wire_recv(sv[1], &got, NULL), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(a.rc, 0);
	assert_refill(got, rel, 100000, 12);
	wire_free(got);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- the read-ahead reader ---- */

START_TEST(test_reader_frames_in_one_read)
{
	static wire_reader_t rd;
	Heapd__Envelope env, *got;
	Heapd__Ok ok;
	int sv[2];

	pair(sv);
	wire_reader_reset(&rd);
	/* three frames in one write, then end of stream: all three come from the buffer */
	uint8_t all[256];
	size_t at = 0, n;
	for (uint64_t i = 1; i <= 3; i++) {
		uint8_t *f = frame_of(ok_env(&env, &ok, i, i * 1000), &n);
		memcpy(all + at, f, n);
		at += n;
		free(f);
	}
	write_all(sv[0], all, at);
	close(sv[0]);
	for (uint64_t i = 1; i <= 3; i++) {
		ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), 0);
		ck_assert_uint_eq(got->seq, i);
		ck_assert_uint_eq(got->ok->value, i * 1000);
		wire_free(got);
	}
	ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), -ECONNRESET);
	ck_assert_ptr_null(got);
	close(sv[1]);
}
END_TEST

typedef struct writer_arg {
	int fd;
	const uint8_t *p;
	size_t n;
} writer_arg_t;

static void *writer_main(void *arg)
{
	writer_arg_t *w = arg;
	write_all(w->fd, w->p, w->n);
	return NULL;
}

/*
 * Frames of many sizes back to back, so that frames straddle the buffer's
 * end (the reader compacts) and some exceed it (read exactly to their end,
 * leaving the next frame in the socket).
 */
START_TEST(test_reader_sizes)
{
	static uint32_t rel[3000];
	static wire_reader_t rd;
	static const size_t counts[] = { 0, 1, 60, 700, 3, 815, 816, 817, 2000, 1, 250, 3000, 0, 90 };
	enum { N = sizeof(counts) / sizeof(counts[0]) };
	Heapd__Envelope env, *got;
	Heapd__Refill rf;
	pthread_t t;
	int sv[2];

	pair(sv);
	wire_reader_reset(&rd);
	/* one writer thread: the stream is longer than the socket buffer */
	size_t total = 0, n;
	uint8_t *stream = NULL;
	for (int round = 0; round < 4; round++) {
		for (size_t i = 0; i < N; i++) {
			refill_env(&env, &rf, rel, counts[(i + (size_t)round) % N], round * 100 + i);
			uint8_t *f = frame_of(&env, &n);
			stream = realloc(stream, total + n);
			memcpy(stream + total, f, n);
			total += n;
			free(f);
		}
	}
	writer_arg_t w = { sv[0], stream, total };
	ck_assert_int_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	for (int round = 0; round < 4; round++) {
		for (size_t i = 0; i < N; i++) {
			size_t cnt = counts[(i + (size_t)round) % N];
			ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), 0);
			refill_env(&env, &rf, rel, cnt, round * 100 + i); /* the expected values again */
			assert_refill(got, rel, cnt, round * 100 + i);
			wire_free(got);
		}
	}
	pthread_join(t, NULL);
	ck_assert_uint_eq(rd.len - rd.off, 0);
	ck_assert_int_eq(pending(sv[1]), 0);
	free(stream);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_reader_bad_frames)
{
	static wire_reader_t rd;
	Heapd__Envelope env, *got;
	Heapd__Ok ok;
	uint8_t h[HEAPD_FRAME_HEADER];
	size_t n;
	int sv[2];

	/* over the limit */
	pair(sv);
	wire_reader_reset(&rd);
	header(h, HEAPD_MAX_FRAME + 1);
	write_all(sv[0], h, sizeof(h));
	ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), -EPROTO);
	ck_assert_ptr_null(got);
	close(sv[0]);
	close(sv[1]);

	/* zero length, garbage, then a good frame */
	pair(sv);
	wire_reader_reset(&rd);
	header(h, 0);
	write_all(sv[0], h, sizeof(h));
	header(h, 4);
	write_all(sv[0], h, sizeof(h));
	write_all(sv[0], "\x0a\x7f\x01\x02", 4);
	ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), -EPROTO);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), -EPROTO);
	ck_assert_ptr_null(got);
	close(sv[0]);
	close(sv[1]);

	/* end of stream inside a small frame and inside one bigger than the buffer */
	static uint32_t rel[2000];
	Heapd__Refill rf;
	for (int big = 0; big < 2; big++) {
		uint8_t *f = big ? (refill_env(&env, &rf, rel, 2000, 1), frame_of(&env, &n))
		                 : frame_of(ok_env(&env, &ok, 1, 1), &n);
		ck_assert_int_eq(n > WIRE_READER_SIZE, big);
		for (size_t cut = 1; cut < n; cut += big ? 997 : 1) {
			pair(sv);
			wire_reader_reset(&rd);
			write_all(sv[0], f, cut);
			close(sv[0]);
			ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), -ECONNRESET);
			ck_assert_ptr_null(got);
			close(sv[1]);
		}
		free(f);
	}
}
END_TEST

/* A reader that spins finds nothing, then sleeps until the frame comes; without spin a
 * non-blocking socket says EAGAIN. */
START_TEST(test_reader_spin)
{
	static wire_reader_t rd;
	Heapd__Envelope env, *got;
	Heapd__Ok ok;
	pthread_t t;
	int sv[2];

	pair(sv);
	wire_reader_reset(&rd);
	rd.spin_us = 2000;
	reader_arg_t a = { .fd = sv[1], .rd = &rd };
	ck_assert_int_eq(pthread_create(&t, NULL, reader_main, &a), 0);
	wait_blocked(&a.tid); /* asleep in recv: past its spin, which found nothing */
	ck_assert_int_eq(wire_send(sv[0], ok_env(&env, &ok, 21, 21)), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(a.rc, 0);
	ck_assert_uint_eq(a.env->seq, 21);
	wire_free(a.env);

	/* spinning on a frame already there returns it */
	ck_assert_int_eq(wire_send(sv[0], ok_env(&env, &ok, 22, 22)), 0);
	ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), 0);
	ck_assert_uint_eq(got->seq, 22);
	wire_free(got);

	rd.spin_us = 0;
	ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(wire_read_frame(sv[1], &rd, &got), -EAGAIN);
	ck_assert_ptr_null(got);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- wire_call ---- */

START_TEST(test_call)
{
	Heapd__Envelope req, rep, *got, *sent;
	Heapd__Ok okq, okr;
	Heapd__Error err = HEAPD__ERROR__INIT;
	int sv[2], pipes[2], fds[WIRE_MAX_FDS];

	pair(sv);
	ck_assert_int_eq(pipe(pipes), 0);
	int before = hutil_open_fds();

	/* the reply is waiting already: the socket buffer holds the whole exchange */
	ck_assert_int_eq(wire_send(sv[1], ok_env(&rep, &okr, 31, 310)), 0);
	ck_assert_int_eq(wire_call(sv[0], ok_env(&req, &okq, 31, 1), &got, NULL), 0);
	ck_assert_uint_eq(got->ok->value, 310);
	wire_free(got);
	ck_assert_int_eq(wire_recv(sv[1], &sent, NULL), 0); /* the request did go out */
	ck_assert_uint_eq(sent->seq, 31);
	wire_free(sent);

	/* another request's reply, with descriptors: -EPROTO, nothing returned, nothing leaked */
	send_with_fds(sv[1], ok_env(&rep, &okr, 33, 330), pipes, 2);
	ck_assert_int_eq(wire_call(sv[0], ok_env(&req, &okq, 32, 2), &got, fds), -EPROTO);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(fds[0], -1);
	ck_assert_int_eq(fds[1], -1);
	ck_assert_int_eq(hutil_open_fds(), before);
	ck_assert_int_eq(wire_recv(sv[1], &sent, NULL), 0);
	wire_free(sent);

	/* an Error reply is a reply */
	heapd__envelope__init(&rep);
	err.code = ENOMEM;
	err.message = "full";
	rep.msg_case = HEAPD__ENVELOPE__MSG_ERROR;
	rep.error = &err;
	rep.seq = 34;
	ck_assert_int_eq(wire_send(sv[1], &rep), 0);
	ck_assert_int_eq(wire_call(sv[0], ok_env(&req, &okq, 34, 3), &got, NULL), 0);
	ck_assert_int_eq(got->msg_case, HEAPD__ENVELOPE__MSG_ERROR);
	ck_assert_int_eq(got->error->code, ENOMEM);
	wire_free(got);
	ck_assert_int_eq(wire_recv(sv[1], &sent, NULL), 0);
	wire_free(sent);

	/* the peer goes away in the middle of its reply */
	size_t n;
	uint8_t *f = frame_of(ok_env(&rep, &okr, 35, 350), &n);
	write_all(sv[1], f, n - 1);
	shutdown(sv[1], SHUT_WR);
	ck_assert_int_eq(wire_call(sv[0], ok_env(&req, &okq, 35, 4), &got, NULL), -ECONNRESET);
	ck_assert_ptr_null(got);
	free(f);

	/* and before the request could go */
	close(sv[1]);
	ck_assert_int_eq(wire_call(sv[0], ok_env(&req, &okq, 36, 5), &got, NULL), -EPIPE);
	close(sv[0]);
	close(pipes[0]);
	close(pipes[1]);
}
END_TEST

/* ---- sockets by path ---- */

static char sockdir[64];

static void sockdir_make(void)
{
	htmp_make(sockdir, sizeof(sockdir), "heapd-wire", HTMP_DISK);
}

static void sockdir_remove(void)
{
	htmp_remove(sockdir);
}

/* Accept one connection on a non-blocking listener. */
static int accept_one(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, -1), 1);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	return fd;
}

START_TEST(test_sock_connect_listen)
{
	char path[128];
	Heapd__Envelope env, *got;
	Heapd__Ok ok;

	snprintf(path, sizeof(path), "%s/s", sockdir);
	int lfd = sock_listen(path, 0600, 4);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(fcntl(lfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(fcntl(lfd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
	int c = sock_connect(path);
	ck_assert_int_ge(c, 0);
	ck_assert_int_eq(fcntl(c, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(fcntl(c, F_GETFL) & O_NONBLOCK, 0); /* blocking, for wire_send/wire_recv */
	int s = accept_one(lfd);
	ck_assert_int_eq(wire_send(c, ok_env(&env, &ok, 41, 41)), 0);
	ck_assert_int_eq(wire_recv(s, &got, NULL), 0);
	ck_assert_uint_eq(got->ok->value, 41);
	wire_free(got);
	close(s);
	close(c);

	/* a path in use, by a live listener or by a stale socket, is refused and left alone */
	struct stat st0, st1;
	ck_assert_int_eq(stat(path, &st0), 0);
	ck_assert_int_eq(sock_listen(path, 0600, 4), -EADDRINUSE);
	close(lfd);
	ck_assert_int_eq(sock_connect(path), -ECONNREFUSED);
	ck_assert_int_eq(sock_listen(path, 0600, 4), -EADDRINUSE);
	ck_assert_int_eq(stat(path, &st1), 0);
	ck_assert_uint_eq(st0.st_ino, st1.st_ino);
	unlink(path);

	ck_assert_int_eq(sock_connect(path), -ENOENT);
	snprintf(path, sizeof(path), "%s/no/such/dir", sockdir);
	ck_assert_int_eq(sock_listen(path, 0600, 4), -ENOENT);
}
END_TEST

START_TEST(test_sock_path_length)
{
	char path[256];
	struct sockaddr_un sa;
	size_t max = sizeof(sa.sun_path) - 1; /* room for the terminating NUL */
	size_t dirlen = strlen(sockdir) + 1;

	ck_assert_uint_lt(dirlen, max);
	memset(path, 0, sizeof(path));
	snprintf(path, sizeof(path), "%s/", sockdir);
	memset(path + dirlen, 'p', max - dirlen); /* exactly the longest path that fits */
	ck_assert_uint_eq(strlen(path), max);
	int lfd = sock_listen(path, 0600, 1);
	ck_assert_int_ge(lfd, 0);
	int c = sock_connect(path);
	ck_assert_int_ge(c, 0);
	close(c);
	close(lfd);
	unlink(path);

	path[max] = 'p'; /* one more */
	ck_assert_int_eq(sock_listen(path, 0600, 1), -ENAMETOOLONG);
	ck_assert_int_eq(sock_connect(path), -ENAMETOOLONG);
	ck_assert_int_eq(access(path, F_OK), -1); /* nothing was made under a cut name */
	path[max] = '\0';
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

/* The socket's mode is exactly the one asked for whatever the umask, which is restored. */
START_TEST(test_sock_mode)
{
	static const mode_t masks[] = { 0, 022, 077, 0777 };
	static const mode_t modes[] = { 0600, 0660, 0666 };
	char path[128];
	struct stat st;

	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		for (size_t j = 0; j < sizeof(modes) / sizeof(modes[0]); j++) {
			snprintf(path, sizeof(path), "%s/m%zu%zu", sockdir, i, j);
			umask(masks[i]);
			int lfd = sock_listen(path, modes[j], 1);
			ck_assert_int_ge(lfd, 0);
			ck_assert_uint_eq(umask(0), masks[i]); /* restored */
			ck_assert_int_eq(lstat(path, &st), 0);
			ck_assert(S_ISSOCK(st.st_mode));
			ck_assert_uint_eq(st.st_mode & 07777, modes[j]);
			close(lfd);
			unlink(path);
		}
	}
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("frames");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_header_parse);
	tcase_add_test(tc, test_frame_pack);
	tcase_add_test(tc, test_roundtrip_every_kind);
	tcase_add_test(tc, test_truncated_payloads);
	tcase_add_test(tc, test_garbage_payloads);
	suite_add_tcase(s, tc);

	tc = tcase_create("io");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_send_recv);
	tcase_add_test(tc, test_large_frames);
	tcase_add_test(tc, test_send_to_closed_peer);
	tcase_add_test(tc, test_recv_bad_frames);
	tcase_add_test(tc, test_recv_fds);
	tcase_add_test(tc, test_recv_eintr);
	tcase_add_test(tc, test_read_frame_eintr);
	tcase_add_test(tc, test_send_eintr);
	tcase_add_test(tc, test_reader_frames_in_one_read);
	tcase_add_test(tc, test_reader_sizes);
	tcase_add_test(tc, test_reader_bad_frames);
	tcase_add_test(tc, test_reader_spin);
	tcase_add_test(tc, test_call);
	suite_add_tcase(s, tc);

	tc = tcase_create("sock");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, sockdir_make, sockdir_remove);
	tcase_add_test(tc, test_sock_connect_listen);
	tcase_add_test(tc, test_sock_path_length);
	tcase_add_test(tc, test_sock_mode);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(wire_suite);
