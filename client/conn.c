// SPDX-License-Identifier: MIT
/*
 * conn.c - the connection to heapd: connect, Hello, the arena mapping,
 * requests, reconnecting after a daemon restart, and fork.
 *
 * A process has one connection, used by every thread under conn_g.lock.
 * Requests are blocking calls: send one frame, read its reply (through a
 * read-ahead buffer, so a small reply is one read). LargeFree is the one
 * frame without a reply.
 *
 * Connecting (hello_locked): open the socket, send Hello, receive HelloReply
 * with the arena's two descriptors (meta read-only, data read-write). The
 * first connection maps the arena (segment_attach, guarded against a
 * shrunken data file by segment_guard) and the mapping stays for the life
 * of the process; later connections to the same arena close the new
 * descriptors. A different arena is refused with -ESTALE: the objects this
 * process holds are not in it.
 * When no daemon serves the socket, the first connection fails at once; when
 * one accepts it and goes away during the Hello (it is restarting), the
 * library waits for it as a reconnect does.
 *
 * Reconnecting (reconnect_locked): when a request finds the connection
 * broken, the library reconnects with exponential backoff (5 ms doubling to
 * 250 ms, for at most $HEAPD_RECONNECT_TIMEOUT_MS, default 10 s; then
 * -ECONNREFUSED). Its Hello names the slot we had, every span our caches
 * hold, and the large object of the last LargeAlloc reply we got (unless we
 * freed it since), so that the daemon frees a large object whose reply was
 * lost with it, and keeps one we hold. The daemon re-adopts the slot (it is
 * ours: same process) and the caches carry on. Should it give us a new slot
 * instead, conn_g.epoch is bumped and each thread drops its spans unused at
 * its next slow path (mcache.h); until then a thread may allocate from its
 * current window, which is safe: the daemon keeps the old slot, and every
 * span of it, for this process until the process has exited. Threads keep
 * allocating from their cached spans while the daemon is away. The lock is
 * dropped while sleeping between attempts, so that fork() (whose prepare
 * handler takes it) and other threads are not held up; a thread that finds
 * the connection back when it wakes is done.
 *
 * Replies: each request carries the next seq and its reply must repeat it.
 * A reply with another seq (a stale one) breaks the connection as an EOF
 * would; an Error with `fatal` set means the daemon closes it after the
 * reply, so the library closes its end too, and the next request
 * reconnects. Either way the daemon keeps our slot and spans.
 *
 * fork: the prepare handler takes the lock, so the child inherits a quiet
 * state. The child closes its copy of the parent's socket, forgets the slot
 * (the parent still uses it) and every cache, and connects afresh on first
 * use. The mapping is inherited, so objects stay valid.
 */
#include "conn.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mcache.h"
#include "sock.h"

conn_state_t conn_g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.sock = -1,
	.flags_slot = UINT32_MAX,
	.seg = { .dir_fd = -1, .lock_fd = -1, .meta_fd = -1, .client_meta_fd = -1, .client_data_fd = -1, .data_fd = -1 },
};

static pthread_once_t conn_once = PTHREAD_ONCE_INIT;
/* read-ahead on conn_g.sock; conn_g.lock. Replies are polled for before the thread sleeps. */
static wire_reader_t conn_rd = { .spin_us = CONN_REPLY_SPIN_US };

static void atfork_prepare(void)
{
	conn_lock();
}

static void atfork_parent(void)
{
	conn_unlock();
}

static void atfork_child(void)
{
	pthread_mutex_init(&conn_g.lock, NULL);
	conn_g.holder = pthread_self();
	if (conn_g.sock >= 0)
		close(conn_g.sock); /* our copy only: the parent's connection lives on */
	conn_g.sock = -1;
	wire_reader_reset(&conn_rd);
	atomic_store(&conn_g.connected, 0);
	conn_g.have_slot = 0;
	atomic_store(&conn_g.flags_slot, UINT32_MAX);
	atomic_fetch_add(&conn_g.epoch, 1);
	atomic_store(&conn_g.large_received, 0);
	conn_g.requests = conn_g.refills = conn_g.large_allocs = conn_g.reconnects = 0;
	mcache_atfork_child();
	conn_unlock();
}

static void init_once(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void conn_init(void)
{
	pthread_once(&conn_once, init_once);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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
		return CONN_RECONNECT_TIMEOUT_MS;
	unsigned long long v = strtoull(s, &end, 10);
	return *end ? CONN_RECONNECT_TIMEOUT_MS : v;
}

/* Errors that mean the daemon is gone or not (yet) listening. */
static int is_broken(int rc)
{
	return rc == -EPIPE || rc == -ECONNRESET || rc == -ECONNREFUSED || rc == -ENOENT ||
	       rc == -ENOTCONN || rc == -ECONNABORTED || rc == -EAGAIN;
}

/* Remember the socket path: the argument, else $HEAPD_SOCKET, else the default. */
static int set_path_locked(const char *path)
{
	if (!path && conn_g.path[0])
		return 0;
	if (!path)
		path = getenv("HEAPD_SOCKET");
	if (!path || !*path)
		path = HEAPD_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(conn_g.path))
		return -ENAMETOOLONG;
	strcpy(conn_g.path, path);
	return 0;
}

static void close_socket_locked(void)
{
	if (conn_g.sock >= 0)
		close(conn_g.sock);
	conn_g.sock = -1;
	wire_reader_reset(&conn_rd);
	atomic_store(&conn_g.connected, 0);
}

/* An Error reply as -errno (never 0). */
static int error_code(const Heapd__Envelope *reply)
{
	int code = reply->error ? reply->error->code : 0;
	return code > 0 ? -code : -EPROTO;
}

/*
 * Map the arena from the descriptors fds (consumed) or check that it is the
 * arena already mapped.
 */
static int adopt_arena_locked(int *fds, const Heapd__HelloReply *hr)
{
	char why[256];
	int rc;

	if (atomic_load(&conn_g.mapped)) {
		close(fds[0]);
		close(fds[1]);
		fds[0] = fds[1] = -1;
		return hr->arena_id == conn_g.arena_id ? 0 : -ESTALE;
	}
	rc = segment_attach(fds[0], fds[1], &conn_g.seg, why, sizeof(why));
	fds[0] = fds[1] = -1;
	if (rc < 0)
		return rc;
	/* A client that shrinks the data file must not kill this process (shm/layout.h). */
	segment_guard(&conn_g.seg);
	conn_g.arena_id = hr->arena_id;
	atomic_store_explicit(&conn_g.mapped, 1, memory_order_release);
	return 0;
}

/*
 * Open a connection and say Hello; if we had a slot, ask to keep it. On
 * success the connection is conn_g.sock. 0 or -errno.
 */
/* Say Hello on a new connection; *reached (if not NULL) says whether a daemon accepted it. */
static int hello_locked(int *reached)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Hello hello = HEAPD__HELLO__INIT;
	const Heapd__HelloReply *hr;
	uint32_t *held = NULL;
	size_t nheld = 0;
	int fd, passed[WIRE_MAX_FDS] = { -1, -1 }, rc;

	fd = sock_connect(conn_g.path);
	if (fd < 0)
		return fd;
	if (reached)
		*reached = 1;
	hello.version = HEAPD_PROTOCOL_VERSION;
	hello.pid = (uint32_t)getpid();
	if (conn_g.have_slot) {
		rc = mcache_held_spans_locked(&held, &nheld);
		if (rc < 0)
			goto fail;
		hello.prev_slot = conn_g.slot + 1;
		hello.held_spans = held;
		hello.n_held_spans = nheld;
		hello.large_received = atomic_load(&conn_g.large_received);
	}
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	env.seq = ++conn_g.seq;
	rc = wire_send(fd, &env);
	/* A refused peer may find the socket closed before it sends: the Error saying why is still there. */
	if (rc == 0 || rc == -EPIPE || rc == -ECONNRESET) {
		int sent = rc;
		rc = wire_recv(fd, &reply, passed);
		if (rc < 0 && sent < 0)
			rc = sent;
	}
	conn_g.requests++;
	if (rc < 0)
		goto fail;
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		rc = error_code(reply);
		goto fail;
	}
	hr = reply->hello_reply;
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY || reply->seq != env.seq ||
	    hr->version != HEAPD_PROTOCOL_VERSION || passed[0] < 0 || passed[1] < 0) {
		rc = -EPROTO;
		goto fail;
	}
	rc = adopt_arena_locked(passed, hr);
	if (rc < 0)
		goto fail;
	if (hr->slot >= conn_g.seg.hdr->max_clients) {
		rc = -EPROTO;
		goto fail;
	}
	if (!conn_g.have_slot || hr->slot != conn_g.slot) {
		/*
		 * A new slot: our caches' spans are no longer ours to hand back or
		 * list; each thread drops them at its next slow path (the old slot
		 * keeps them for this process meanwhile).
		 */
		atomic_fetch_add(&conn_g.epoch, 1);
	}
	conn_g.slot = hr->slot;
	conn_g.have_slot = 1;
	atomic_store(&conn_g.flags_slot, hr->slot);
	conn_g.sock = fd;
	atomic_store(&conn_g.connected, 1);
	wire_free(reply);
	free(held);
	return 0;
fail:
	for (int i = 0; i < WIRE_MAX_FDS; i++)
		if (passed[i] >= 0)
			close(passed[i]);
	wire_free(reply);
	free(held);
	close(fd);
	return rc;
}

/*
 * The daemon went away: say Hello again with backoff until it answers or time
 * runs out. The lock is dropped while sleeping; the caller must not rely on
 * anything but its own thread's state across this call.
 */
static int reconnect_locked(void)
{
	uint64_t timeout = reconnect_timeout_ms(), start = now_ms(), delay = CONN_BACKOFF_MIN_MS;

	for (;;) {
		int rc = hello_locked(NULL);
		if (rc == 0) {
			conn_g.reconnects++;
			return 0;
		}
		if (!is_broken(rc))
			return rc;
		uint64_t elapsed = now_ms() - start;
		if (elapsed >= timeout)
			return -ECONNREFUSED;
		/* Sleep without the lock, so that fork() and other threads are not held up. */
		conn_unlock();
		sleep_ms(delay < timeout - elapsed ? delay : timeout - elapsed);
		conn_lock();
		if (conn_g.sock >= 0)
			return 0; /* another thread got there first */
		delay = delay * 2 < CONN_BACKOFF_MAX_MS ? delay * 2 : CONN_BACKOFF_MAX_MS;
	}
}

int conn_connect_locked(const char *path)
{
	int rc, reached = 0;

	assert(conn_held());
	conn_init();
	if (conn_g.sock >= 0)
		return 0;
	rc = set_path_locked(path);
	if (rc < 0)
		return rc;
	if (conn_g.have_slot)
		return reconnect_locked();
	/*
	 * No daemon at all fails at once; one that took the connection and went
	 * away during the Hello is restarting: wait for it as a reconnect does.
	 */
	rc = hello_locked(&reached);
	if (rc < 0 && reached && is_broken(rc))
		rc = reconnect_locked();
	return rc;
}

int conn_connect(const char *path)
{
	conn_lock();
	int rc = conn_connect_locked(path);
	conn_unlock();
	return rc;
}

void conn_bye_locked(void)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Bye bye = HEAPD__BYE__INIT;

	assert(conn_held());
	env.msg_case = HEAPD__ENVELOPE__MSG_BYE;
	env.bye = &bye;
	/* Not connected: the slot stays held, and goes back when this process exits. */
	if (conn_g.have_slot &&
	    conn_call_locked(&env, HEAPD__ENVELOPE__MSG_OK, &reply, CONN_NO_CONNECT) == 0)
		wire_free(reply);
	conn_disconnect_locked();
}

void conn_disconnect_locked(void)
{
	assert(conn_held());
	close_socket_locked();
	conn_g.have_slot = 0;
	atomic_store(&conn_g.flags_slot, UINT32_MAX);
	atomic_fetch_add(&conn_g.epoch, 1);
	atomic_store(&conn_g.large_received, 0);
}

int conn_call_locked(Heapd__Envelope *req, Heapd__Envelope__MsgCase want,
                     Heapd__Envelope **reply, int flags)
{
	int rc;

	assert(conn_held());
	*reply = NULL;
	for (;;) {
		if (conn_g.sock < 0) {
			if (flags & CONN_NO_CONNECT)
				return -ENOTCONN;
			rc = conn_connect_locked(NULL);
			if (rc < 0)
				return rc;
			/*
			 * The spans the request hands back were unlinked from the caches,
			 * so the new connection's Hello did not list them: the daemon has
			 * taken them back already, and naming them would be an error.
			 */
			if (req->msg_case == HEAPD__ENVELOPE__MSG_REFILL)
				req->refill->n_release = 0;
			else if (req->msg_case == HEAPD__ENVELOPE__MSG_LARGE_ALLOC)
				req->large_alloc->n_release = 0;
		}
		req->seq = ++conn_g.seq;
		rc = wire_send(conn_g.sock, req);
		if (rc == -ENOMEM || rc == -EMSGSIZE)
			return rc; /* nothing was sent: the connection is still in step */
		conn_g.requests++;
		if (rc == 0)
			rc = wire_read_frame(conn_g.sock, &conn_rd, reply);
		if (rc == 0 && (*reply)->seq != req->seq) {
			/* Another request's reply: this connection is out of step. */
			wire_free(*reply);
			*reply = NULL;
			rc = -ECONNABORTED;
		}
		if (rc == 0)
			break;
		/* Broken, or out of step with its replies: either way this connection is done. */
		close_socket_locked();
		if (!is_broken(rc) || (flags & CONN_NO_CONNECT))
			return rc;
	}
	if ((*reply)->msg_case == want) {
		if (want == HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY)
			atomic_store(&conn_g.large_received, (*reply)->large_alloc_reply->span + 1);
		return 0;
	}
	if ((*reply)->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		rc = error_code(*reply);
		if ((*reply)->error->fatal)
			close_socket_locked(); /* the daemon closes its end; the next request reconnects */
	} else {
		rc = -EPROTO;
		close_socket_locked();
	}
	wire_free(*reply);
	*reply = NULL;
	return rc;
}

void conn_large_free(uint32_t span, uint32_t gen)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__LargeFree msg = HEAPD__LARGE_FREE__INIT;
	uint32_t mine = span + 1;

	/* Freed here: a reconnect must not name it, lest its pages come back to us in a lost reply. */
	atomic_compare_exchange_strong(&conn_g.large_received, &mine, 0);
	if (!atomic_load_explicit(&conn_g.connected, memory_order_relaxed))
		return;
	msg.span = span;
	msg.gen = gen;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_FREE;
	env.large_free = &msg;
	conn_lock();
	/* No reply comes. A broken connection is left for the next request to re-establish. */
	if (conn_g.sock >= 0) {
		env.seq = ++conn_g.seq;
		int rc = wire_send(conn_g.sock, &env);
		if (rc == 0)
			conn_g.requests++;
		else if (is_broken(rc))
			close_socket_locked();
	}
	conn_unlock();
}
