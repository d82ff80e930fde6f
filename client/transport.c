// SPDX-License-Identifier: MIT
/*
 * transport.c - the client's connection to heapd (see transport.h).
 *
 * A request costs the client one sendmsg and, usually, one recv: replies
 * are read through a read-ahead buffer (wire_read_frame), which polls for
 * TRANSPORT_REPLY_SPIN_US before it sleeps.
 */
#include "transport.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "proc.h"
#include "profile.h"
#include "sock.h"

/* The connection; proc_g.lock. */
static struct {
	int sock;                  /* -1 when not connected */
	_Atomic int connected;     /* sock >= 0, for readers without the lock */
	uint64_t seq;              /* seq of the last request sent */
	char path[108];            /* socket path of the last connect */
	wire_reader_t rd;          /* read-ahead on sock */
} tp = { .sock = -1, .rd = { .spin_us = TRANSPORT_REPLY_SPIN_US } };

static void close_socket(void)
{
	if (tp.sock >= 0)
		close(tp.sock);
	tp.sock = -1;
	wire_reader_reset(&tp.rd);
	atomic_store(&tp.connected, 0);
}

/* In a forked child: our copy of the parent's socket goes; the parent's connection lives on. */
static void fork_child(void)
{
	close_socket();
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t reconnect_timeout_ms(void)
{
	const char *s = getenv("HEAPD_RECONNECT_TIMEOUT_MS");
	char *end;
	if (!s || !*s)
		return TRANSPORT_RECONNECT_TIMEOUT_MS;
	unsigned long long v = strtoull(s, &end, 10);
	return *end ? TRANSPORT_RECONNECT_TIMEOUT_MS : v;
}

/* Errors that mean the daemon is gone, not (yet) listening, or out of step with us. */
static int is_broken(int rc)
{
	return rc == -EPIPE || rc == -ECONNRESET || rc == -ECONNREFUSED || rc == -ENOENT ||
	       rc == -ENOTCONN || rc == -ECONNABORTED || rc == -EAGAIN;
}

/* Remember the socket path: the argument, else $HEAPD_SOCKET, else the default. */
static int set_path(const char *path)
{
	if (!path && tp.path[0])
		return 0;
	if (!path)
		path = getenv("HEAPD_SOCKET");
	if (!path || !*path)
		path = HEAPD_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(tp.path))
		return -ENAMETOOLONG;
	strcpy(tp.path, path);
	return 0;
}

/* Say Hello on a new connection; *reached (if not NULL) says whether a daemon accepted it. */
static int hello(int *reached)
{
	Heapd__Envelope *reply = NULL;
	int fd, fds[WIRE_MAX_FDS] = { -1, -1 }, rc, fatal;
	request_t r;

	fd = sock_connect(tp.path);
	if (fd < 0)
		return fd;
	if (reached)
		*reached = 1;
	rc = request_hello(&r);
	if (rc < 0)
		goto fail;
	r.env.seq = ++tp.seq;
	rc = wire_send(fd, &r.env);
	/* A refused peer may find the socket closed before it sends: the Error saying why is still there. */
	if (rc == 0 || rc == -EPIPE || rc == -ECONNRESET) {
		int sent = rc;
		rc = wire_recv(fd, &reply, fds);
		if (rc < 0 && sent < 0)
			rc = sent;
	}
	request_sent(&r);
	if (rc < 0)
		goto fail;
	rc = request_done(&r, reply, &fatal);
	if (rc < 0)
		goto fail;
	const Heapd__HelloReply *hr = reply->hello_reply;
	if (reply->seq != r.env.seq || hr->version != HEAPD_PROTOCOL_VERSION || fds[0] < 0 ||
	    fds[1] < 0) {
		rc = -EPROTO;
		goto fail;
	}
	rc = proc_adopt_arena_locked(fds, hr->arena_id);
	if (rc < 0)
		goto fail;
	if (hr->slot >= proc_g.seg.hdr->max_clients) {
		rc = -EPROTO;
		goto fail;
	}
	proc_set_slot_locked(hr->slot);
	profile_connected_locked(hr->profile_rate);
	tp.sock = fd;
	atomic_store(&tp.connected, 1);
	wire_free(reply);
	request_free(&r);
	return 0;
fail:
	for (int i = 0; i < WIRE_MAX_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	wire_free(reply);
	request_free(&r);
	close(fd);
	return rc;
}

/* The daemon went away: say Hello again with backoff until it answers or time runs out. */
static int reconnect(void)
{
	uint64_t timeout = reconnect_timeout_ms(), start = heapd_now_ms();
	uint64_t delay = TRANSPORT_BACKOFF_MIN_MS;

	for (;;) {
		int rc = hello(NULL);
		if (rc == 0) {
			request_counts.reconnects++;
			return 0;
		}
		if (!is_broken(rc))
			return rc;
		uint64_t elapsed = heapd_now_ms() - start;
		if (elapsed >= timeout)
			return -ECONNREFUSED;
		/* Sleep without the lock, so that fork() and other threads are not held up. */
		proc_unlock();
		sleep_ms(delay < timeout - elapsed ? delay : timeout - elapsed);
		proc_lock();
		if (tp.sock >= 0)
			return 0; /* another thread got there first */
		delay = delay * 2 < TRANSPORT_BACKOFF_MAX_MS ? delay * 2 : TRANSPORT_BACKOFF_MAX_MS;
	}
}

int transport_connect_locked(const char *path)
{
	int rc, reached = 0;

	assert(proc_held());
	proc_init();
	proc_at_fork_child(fork_child);
	if (tp.sock >= 0)
		return 0;
	rc = set_path(path);
	if (rc < 0)
		return rc;
	if (proc_g.have_slot)
		return reconnect();
	/*
	 * No daemon at all fails at once; one that took the connection and went
	 * away during the Hello is restarting: wait for it as a reconnect does.
	 */
	rc = hello(&reached);
	if (rc < 0 && reached && is_broken(rc))
		rc = reconnect();
	return rc;
}

int transport_call_locked(request_t *r, Heapd__Envelope **reply, int flags)
{
	int rc, fatal;

	assert(proc_held());
	*reply = NULL;
	for (;;) {
		if (tp.sock < 0) {
			if (flags & TRANSPORT_NO_CONNECT)
				return -ENOTCONN;
			rc = transport_connect_locked(NULL);
			if (rc < 0)
				return rc;
			request_on_new_connection(r);
		}
		r->env.seq = ++tp.seq;
		rc = wire_send(tp.sock, &r->env);
		if (rc == -ENOMEM || rc == -EMSGSIZE)
			return rc; /* nothing was sent: the connection is still in step */
		request_sent(r);
		if (rc == 0)
			rc = wire_read_frame(tp.sock, &tp.rd, reply);
		if (rc == 0 && (*reply)->seq != r->env.seq) {
			/* Another request's reply: this connection is out of step. */
			wire_free(*reply);
			*reply = NULL;
			rc = -ECONNABORTED;
		}
		if (rc == 0)
			break;
		/* Broken, or out of step with its replies: either way this connection is done. */
		close_socket();
		if (!is_broken(rc) || (flags & TRANSPORT_NO_CONNECT))
			return rc;
	}
	rc = request_done(r, *reply, &fatal);
	if (rc < 0) {
		if (fatal)
			close_socket(); /* the daemon closes its end; the next request reconnects */
		wire_free(*reply);
		*reply = NULL;
	}
	return rc;
}

int transport_ensure_mapped(void)
{
	if (__builtin_expect(atomic_load_explicit(&proc_g.mapped, memory_order_acquire), 1))
		return 0;
	proc_lock();
	int rc = transport_connect_locked(NULL);
	proc_unlock();
	return rc;
}

void transport_send_locked(request_t *r)
{
	assert(proc_held());
	/* No reply comes. A broken connection is left for the next request to re-establish. */
	if (tp.sock < 0)
		return;
	r->env.seq = ++tp.seq;
	int rc = wire_send(tp.sock, &r->env);
	if (rc == 0)
		request_sent(r);
	else if (is_broken(rc))
		close_socket();
}

void transport_close_locked(void)
{
	assert(proc_held());
	close_socket();
}

int transport_connected(void)
{
	return atomic_load_explicit(&tp.connected, memory_order_relaxed);
}
