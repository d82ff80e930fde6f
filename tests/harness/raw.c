// SPDX-License-Identifier: MIT
/*
 * raw.c - requests built field by field, and a raw client that maps the
 * arena. See raw.h.
 */
#include "harness/raw.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "sock.h"

/* r's envelope, cleared, carrying message case msg. */
static Heapd__Envelope *envelope(hraw_req_t *r, Heapd__Envelope__MsgCase msg)
{
	heapd__envelope__init(&r->env);
	r->env.msg_case = msg;
	return &r->env;
}

Heapd__Envelope *hraw_req_hello(hraw_req_t *r, int control, uint32_t prev_slot1,
                                const uint32_t *held,
                                size_t nheld, uint32_t large_received)
{
	Heapd__Envelope *env = envelope(r, HEAPD__ENVELOPE__MSG_HELLO);
	heapd__hello__init(&r->m.hello);
	r->m.hello.version = HEAPD_PROTOCOL_VERSION;
	r->m.hello.control = control != 0;
	r->m.hello.pid = (uint32_t)getpid();
	r->m.hello.prev_slot = prev_slot1;
	r->m.hello.held_spans = (uint32_t *)held;
	r->m.hello.n_held_spans = nheld;
	r->m.hello.large_received = large_received;
	env->hello = &r->m.hello;
	return env;
}

Heapd__Envelope *hraw_req_refill(hraw_req_t *r, uint32_t k, uint32_t count, const uint32_t *release,
                                 size_t nrelease)
{
	Heapd__Envelope *env = envelope(r, HEAPD__ENVELOPE__MSG_REFILL);
	heapd__refill__init(&r->m.refill);
	r->m.refill.sizeclass = k;
	r->m.refill.count = count;
	r->m.refill.release = (uint32_t *)release;
	r->m.refill.n_release = nrelease;
	env->refill = &r->m.refill;
	return env;
}

Heapd__Envelope *hraw_req_large_alloc(hraw_req_t *r, uint64_t size, uint64_t align, int zero,
                                      const uint32_t *release, size_t nrelease)
{
	Heapd__Envelope *env = envelope(r, HEAPD__ENVELOPE__MSG_LARGE_ALLOC);
	heapd__large_alloc__init(&r->m.large_alloc);
	r->m.large_alloc.size = size;
	r->m.large_alloc.align = align;
	r->m.large_alloc.zero = zero != 0;
	r->m.large_alloc.release = (uint32_t *)release;
	r->m.large_alloc.n_release = nrelease;
	env->large_alloc = &r->m.large_alloc;
	return env;
}

Heapd__Envelope *hraw_req_large_free(hraw_req_t *r, uint32_t span, uint32_t gen)
{
	Heapd__Envelope *env = envelope(r, HEAPD__ENVELOPE__MSG_LARGE_FREE);
	heapd__large_free__init(&r->m.large_free);
	r->m.large_free.span = span;
	r->m.large_free.gen = gen;
	env->large_free = &r->m.large_free;
	return env;
}

Heapd__Envelope *hraw_req_empty(hraw_req_t *r, Heapd__Envelope__MsgCase msg)
{
	Heapd__Envelope *env = envelope(r, msg);
	switch (msg) {
	case HEAPD__ENVELOPE__MSG_BYE:
		heapd__bye__init(&r->m.bye);
		env->bye = &r->m.bye;
		break;
	case HEAPD__ENVELOPE__MSG_CLIENTS:
		heapd__clients_request__init(&r->m.clients);
		env->clients = &r->m.clients;
		break;
	default:
		assert(msg == HEAPD__ENVELOPE__MSG_STATS);
		heapd__stats_request__init(&r->m.stats);
		env->stats = &r->m.stats;
		break;
	}
	return env;
}

/*
 * Connect to sock and send Hello; the reply and the descriptors it passes.
 * The connection, or -errno: a failed call, an Error reply's code, or
 * -EPROTO for another reply. Nothing is left open on failure.
 */
static int hello(const char *sock, const Heapd__Envelope *req, Heapd__Envelope **reply,
                 int fds[WIRE_MAX_FDS])
{
	int fd = sock_connect(sock), rc;

	for (int i = 0; i < WIRE_MAX_FDS; i++)
		fds[i] = -1;
	*reply = NULL;
	if (fd < 0)
		return fd;
	rc = wire_call(fd, req, reply, fds);
	if (rc == 0 && (*reply)->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		rc = (*reply)->error->code > 0 ? -(*reply)->error->code : -EPROTO;
	else if (rc == 0 && (*reply)->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY)
		rc = -EPROTO;
	if (rc == 0)
		return fd;
	for (int i = 0; i < WIRE_MAX_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	wire_free(*reply);
	*reply = NULL;
	close(fd);
	return rc;
}

int hraw_hello_fds(const char *sock, int control, uint32_t *slot, int *meta_fd, int *data_fd)
{
	hraw_req_t req;
	Heapd__Envelope *reply;
	int fds[WIRE_MAX_FDS];
	int fd = hello(sock, hraw_req_hello(&req, control, 0, NULL, 0, 0), &reply, fds);

	if (fd < 0)
		return fd;
	if (slot)
		*slot = reply->hello_reply->slot;
	wire_free(reply);
	int *keep[WIRE_MAX_FDS] = { meta_fd, data_fd };
	for (int i = 0; i < WIRE_MAX_FDS; i++) {
		if (keep[i])
			*keep[i] = fds[i];
		else if (fds[i] >= 0)
			close(fds[i]);
	}
	return fd;
}

int hraw_hello_again(const char *sock, hraw_t *c, uint32_t prev_slot1, const uint32_t *held,
                     size_t nheld)
{
	hraw_req_t req;
	Heapd__Envelope *reply;
	char err[256];
	int fds[WIRE_MAX_FDS];

	memset(c, 0, sizeof(*c));
	c->fd = hello(sock, hraw_req_hello(&req, 0, prev_slot1, held, nheld, 0), &reply, fds);
	if (c->fd < 0)
		return c->fd;
	c->slot = reply->hello_reply->slot;
	wire_free(reply);
	int rc = -EPROTO;
	snprintf(err, sizeof(err), "the Hello reply passed no arena");
	if (fds[0] >= 0 && fds[1] >= 0)
		rc = segment_attach(fds[0], fds[1], &c->seg, err,
		                    sizeof(err)); /* takes both, whatever it returns */
	else
		for (int i = 0; i < WIRE_MAX_FDS; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	if (rc < 0) {
		fprintf(stderr, "harness: %s: %s\n", sock, err);
		hraw_close(c);
		return rc;
	}
	c->mapped = 1;
	return 0;
}

int hraw_hello(const char *sock, hraw_t *c)
{
	return hraw_hello_again(sock, c, 0, NULL, 0);
}

void hraw_close(hraw_t *c)
{
	if (c->mapped)
		segment_close(&c->seg);
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int hraw_in_child(const char *sock, int (*fn)(hraw_t *c, void *arg), void *arg)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		hraw_t c;
		if (hraw_hello(sock, &c) < 0)
			_exit(255);
		int rc = fn(&c, arg);
		hraw_close(&c);
		_exit(rc & 0xff);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) == 255)
		return -1;
	return WEXITSTATUS(st);
}

int hraw_refill(int fd, uint32_t k, uint32_t count, const uint32_t *release, size_t nrelease,
                Heapd__Envelope **reply)
{
	hraw_req_t r;
	return wire_call(fd, hraw_req_refill(&r, k, count, release, nrelease), reply, NULL);
}

int hraw_refill_also(int fd, uint32_t k, uint32_t count, const uint32_t *also, size_t nalso,
                     Heapd__Envelope **reply)
{
	hraw_req_t r;
	Heapd__Envelope *env = hraw_req_refill(&r, k, count, NULL, 0);
	r.m.refill.also = (uint32_t *)also;
	r.m.refill.n_also = nalso;
	return wire_call(fd, env, reply, NULL);
}

int hraw_large_alloc(int fd, uint64_t size, uint64_t align, int zero, Heapd__Envelope **reply)
{
	hraw_req_t r;
	return wire_call(fd, hraw_req_large_alloc(&r, size, align, zero, NULL, 0), reply, NULL);
}

int hraw_large_free(int fd, uint32_t span, uint32_t gen)
{
	hraw_req_t r;
	return wire_send(fd, hraw_req_large_free(&r, span, gen));
}

int hraw_error_code(const Heapd__Envelope *reply)
{
	if (reply && reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		return reply->error->code ? reply->error->code : -1;
	return 0;
}

int hraw_closed(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[4096];
	uint64_t left = (uint64_t)timeout_ms;

	for (;;) {
		uint64_t t0 = heapd_now_ms();
		int n = poll(&p, 1, (int)left);
		if (n > 0) {
			ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				return 1;
		}
		uint64_t spent = heapd_now_ms() - t0;
		if (spent >= left)
			return 0;
		left -= spent;
	}
}

int hraw_send(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

void hraw_flood_init(hraw_flood_t *f, uint64_t seq)
{
	hraw_req_t r;
	Heapd__Envelope *env = hraw_req_empty(&r, HEAPD__ENVELOPE__MSG_CLIENTS);
	env->seq = seq;
	size_t one = wire_frame_size(env);
	for (f->len = 0; f->len + one <= sizeof(f->frames); f->len += one)
		wire_frame_pack(env, f->frames + f->len);
	f->off = 0;
}

int hraw_flood(hraw_flood_t *f, int fd)
{
	for (;;) {
		ssize_t w = send(fd, f->frames + f->off, f->len - f->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			f->off = (f->off + (size_t)w) % f->len;
		else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		else if (w < 0 && errno != EINTR)
			return -errno;
	}
}
