// SPDX-License-Identifier: MIT
/*
 * server.c - the event loop, the listener and the connections (see server.h).
 *
 * Entry points: server_listen, server_run, server_close.
 *
 * A connection's life: accept -> SO_PEERCRED check and the connection
 * limits (refused peers get an Error and are closed before anything is
 * read) -> session_new -> Hello within --hello-timeout -> frames -> EOF,
 * error, or a protocol error, after which the queued Error reply is flushed
 * (at most CONN_LINGER_S seconds) and the connection closed. The session
 * ends the moment the connection is condemned; its slot is held for the
 * process, whose pidfd watch releases it when the process has exited.
 * While a request waits for its reply (a control job, session.h) the
 * connection reads nothing more; the reply resumes it (conn_resume).
 *
 * A request costs the loop three system calls: the wakeup, one recv into
 * the connection's input buffer (conn_on_read), and one sendmsg of the
 * replies (conn_push). Whole frames are handed to the session where they
 * lie in the buffer; a frame's 4-byte length over HEAPD_MAX_FRAME is a
 * protocol error, and the buffer grows to hold the largest frame and shrinks
 * back after it. Replies queue in c->out and are sent at once; only bytes the
 * socket will not take wait for EV_WRITE. Past SERVER_OUTPUT_LIMIT queued
 * bytes the client is dropped.
 *
 * The arena's descriptors ride with the Hello reply (conn_send_fds), sent
 * directly with sendmsg once the output buffer is flushed, so no queued
 * byte can overtake them.
 */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef HEAPD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"
#include "notify.h"
#include "session.h"
#include "sock.h"
#include "wire.h"

#define CONN_LINGER_S 5
#define CONN_INPUT_MIN 16384u    /* input buffer to start with; grows to a whole frame */
#define CONN_INPUT_MAX (HEAPD_FRAME_HEADER + HEAPD_MAX_FRAME)
#define CONN_IOV 16              /* output chunks one send takes */

/*
 * The output buffer is written only by the session (replies) and drained
 * only by conn_flush. wev is pending exactly while out holds bytes the
 * socket would not take.
 */
typedef struct conn {
	server_t *srv;
	int fd;
	uid_t uid;               /* the peer's, for the per-uid count */
	struct event *rev;       /* EV_READ | EV_PERSIST, from accept until the session ends */
	struct event *wev;       /* EV_WRITE | EV_PERSIST, while output is held up */
	struct event *tev;       /* timer: the Hello deadline, then closing on request (conn_end) */
	struct evbuffer *out;    /* queued reply frames */
	uint8_t *in;             /* input: in[0, inlen) read, not yet handled */
	size_t inlen, incap;     /* incap <= CONN_INPUT_MAX */
	session_t *s;            /* NULL once the session has ended */
	int closing;             /* flushing a last reply before closing */
	struct conn *next, *prev;
} conn_t;

static void server_arm_poll(server_t *srv);

/* ---- connections per uid ---- */

static server_uid_t *uid_entry(server_t *srv, uid_t uid, int add)
{
	for (uint32_t i = 0; i < srv->nuids; i++)
		if (srv->uids[i].uid == uid)
			return &srv->uids[i];
	if (!add)
		return NULL;
	if (srv->nuids == srv->capuids) {
		uint32_t ncap = srv->capuids ? srv->capuids * 2 : 16;
		server_uid_t *grown = realloc(srv->uids, ncap * sizeof(*grown));
		if (!grown)
			return NULL;
		srv->uids = grown;
		srv->capuids = ncap;
	}
	srv->uids[srv->nuids] = (server_uid_t){ .uid = uid, .conns = 0 };
	return &srv->uids[srv->nuids++];
}

/* One connection of uid fewer; the entry goes with its last connection. */
static void uid_release(server_t *srv, uid_t uid)
{
	server_uid_t *e = uid_entry(srv, uid, 0);
	if (!e)
		return;
	if (e->conns > 0)
		e->conns--;
	if (e->conns == 0)
		*e = srv->uids[--srv->nuids];
}

/* An entry made for a connection that was not opened after all. */
static void uid_forget_idle(server_t *srv, uid_t uid)
{
	server_uid_t *e = uid_entry(srv, uid, 0);
	if (e && e->conns == 0)
		*e = srv->uids[--srv->nuids];
}

/* ---- connections ---- */

/* Free a connection's events and buffers and close its socket. */
static void conn_free(conn_t *c)
{
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	if (c->tev)
		event_free(c->tev);
	if (c->out)
		evbuffer_free(c->out);
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c);
}

static void conn_destroy(conn_t *c)
{
	server_t *srv = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	uid_release(srv, c->uid);
	conn_free(c);
}

/*
 * Send what the socket takes now. 0 when out is empty, -EAGAIN when bytes
 * remain, other -errno when the connection is broken.
 */
static int conn_flush(conn_t *c)
{
	struct evbuffer_iovec v[CONN_IOV];
	struct iovec iov[CONN_IOV];

	while (evbuffer_get_length(c->out) > 0) {
		int n = evbuffer_peek(c->out, -1, NULL, v, CONN_IOV);
		if (n > CONN_IOV)
			n = CONN_IOV;
		for (int i = 0; i < n; i++) {
			iov[i].iov_base = v[i].iov_base;
			iov[i].iov_len = v[i].iov_len;
		}
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		evbuffer_drain(c->out, (size_t)w);
	}
	return 0;
}

static void conn_io_error(conn_t *c, int err)
{
	if (c->s && err != ECONNRESET && err != EPIPE)
		log_msg("client %u (pid %d): connection error: %s", c->s->id, (int)c->s->pid,
		        strerror(err));
}

/* End the session; with flush, deliver what is queued (the Error) before closing. */
static void conn_close(conn_t *c, int flush)
{
	if (c->s) {
		session_free(c->s);
		c->s = NULL;
	}
	event_del(c->tev);
	if (flush && conn_flush(c) == -EAGAIN) {
		struct timeval tv = { CONN_LINGER_S, 0 };
		c->closing = 1;
		event_del(c->rev);
		if (event_add(c->wev, &tv) == 0)
			return;
	}
	conn_destroy(c);
}

/* Flush after handling input; wait for EV_WRITE if the socket is full. 0, or -1 if c is gone. */
static int conn_push(conn_t *c)
{
	int rc = conn_flush(c);
	if (rc == 0) {
		if (event_pending(c->wev, EV_WRITE, NULL))
			event_del(c->wev);
		return 0;
	}
	if (rc == -EAGAIN) {
		if (!event_pending(c->wev, EV_WRITE, NULL) && event_add(c->wev, NULL) < 0) {
			conn_close(c, 0);
			return -1;
		}
		return 0;
	}
	conn_io_error(c, -rc);
	conn_close(c, 0);
	return -1;
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	conn_t *c = arg;
	(void)fd;

	if (what & EV_TIMEOUT) { /* a last reply nobody collects */
		conn_destroy(c);
		return;
	}
	if (conn_push(c) < 0)
		return;
	if (c->closing && evbuffer_get_length(c->out) == 0)
		conn_destroy(c);
}

static int conn_send_fds(void *io, const uint8_t *frame, size_t len, const int *fds, int nfds)
{
	conn_t *c = io;
	wire_fdctl_t ctl;
	struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (conn_flush(c) < 0)
		return -EPROTO; /* cannot keep the descriptors with their frame */
	wire_attach_fds(&msg, &ctl, fds, nfds);

	ssize_t n;
	do
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n < len && evbuffer_add(c->out, frame + n, len - (size_t)n) < 0)
		return -ENOMEM;
	return 0;
}

/* Room for need bytes of input in all. 0 or -ENOMEM. */
static int conn_reserve(conn_t *c, size_t need)
{
	size_t cap = c->incap ? c->incap : CONN_INPUT_MIN;

	while (cap < need)
		cap *= 2;
	if (cap > CONN_INPUT_MAX)
		cap = CONN_INPUT_MAX;
	if (cap <= c->incap)
		return 0;
	uint8_t *in = realloc(c->in, cap);
	if (!in)
		return -ENOMEM;
	c->in = in;
	c->incap = cap;
	return 0;
}

/*
 * Handle every whole frame in the input and keep the partial rest. 0, or -1
 * if the connection was closed (c may be gone).
 */
static int conn_frames(conn_t *c)
{
	size_t off = 0, need = 0; /* need: the whole of a frame that is not all here */
	int rc = 0;

	while (c->s && c->s->wait == SESSION_WAIT_NONE && c->inlen - off >= HEAPD_FRAME_HEADER) {
		uint32_t len;
		if (wire_parse_header(c->in + off, &len) < 0) {
			session_fail(c->s, EPROTO, "frame of %u bytes is over the %u-byte limit", len,
			             HEAPD_MAX_FRAME);
			conn_close(c, 1);
			return -1;
		}
		size_t whole = HEAPD_FRAME_HEADER + (size_t)len;
		if (c->inlen - off < whole) {
			if (conn_reserve(c, whole) < 0) {
				session_fail(c->s, ENOMEM, "out of memory for a frame");
				conn_close(c, 1);
				return -1;
			}
			need = whole;
			break;
		}
		rc = session_handle_frame(c->s, c->in + off + HEAPD_FRAME_HEADER, len);
		off += whole;
		if (rc < 0) {
			conn_close(c, 1);
			return -1;
		}
		if (c->s->failed)
			break; /* heapd ended the session (a Bye): conn_end's timer closes it */
		if (c->s->hello)
			event_del(c->tev); /* the Hello deadline is met */
		if (evbuffer_get_length(c->out) <= SERVER_OUTPUT_LIMIT)
			continue;
		rc = conn_flush(c);
		if (rc < 0 && rc != -EAGAIN) {
			conn_io_error(c, -rc);
			conn_close(c, 0);
			return -1;
		}
		size_t queued = evbuffer_get_length(c->out);
		if (queued > SERVER_OUTPUT_LIMIT) {
			log_msg("client %u (pid %d) does not read its replies (%zu bytes queued); dropped",
			        c->s->id, (int)c->s->pid, queued);
			conn_close(c, 0);
			return -1;
		}
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->inlen - off);
		c->inlen -= off;
	}
	if (c->s && c->s->wait != SESSION_WAIT_NONE) {
		/* A reply comes later: read nothing more until it has (conn_resume). */
		event_del(c->rev);
		server_arm_poll(c->srv);
		return 0;
	}
	if (c->incap > CONN_INPUT_MIN && c->inlen < CONN_INPUT_MIN && need <= CONN_INPUT_MIN) {
		uint8_t *in = realloc(c->in, CONN_INPUT_MIN); /* give back a large frame's room */
		if (in) {
			c->in = in;
			c->incap = CONN_INPUT_MIN;
		}
	}
	return 0;
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	conn_t *c = arg;
	(void)what;

	if (!c->s || c->closing || c->s->wait != SESSION_WAIT_NONE)
		return;
	assert(c->inlen < c->incap); /* conn_frames leaves room for the rest of a frame */
	ssize_t n = recv(fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		conn_io_error(c, errno);
		conn_close(c, 0);
		return;
	}
	if (n == 0) {
		if (c->inlen > 0)
			log_msg("client %u (pid %d) hung up in the middle of a frame (%zu bytes unread)",
			        c->s->id, (int)c->s->pid, c->inlen);
		conn_close(c, 0);
		return;
	}
	c->inlen += (size_t)n;
	if (conn_frames(c) < 0)
		return;
	conn_push(c);
}

/* A reply that waited has been queued: send it, handle what arrived meanwhile, read on. */
static void conn_resume(void *io)
{
	conn_t *c = io;

	if (!c->s || c->closing)
		return;
	if (c->s->failed) {
		/* the reply that waited is an Error that ends the session (session.h) */
		conn_close(c, 1);
		return;
	}
	if (conn_frames(c) < 0)
		return;
	if (conn_push(c) < 0)
		return;
	if (c->s && c->s->wait == SESSION_WAIT_NONE && !event_pending(c->rev, EV_READ, NULL))
		event_add(c->rev, NULL);
}

/* The timer: the Hello deadline passed, or heapd has given the connection up (conn_end). */
static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	conn_t *c = arg;
	(void)fd;
	(void)what;

	if (c->s && !c->s->hello && !c->s->failed) {
		log_msg("client %u (pid %d) sent no Hello within %llu s; closed", c->s->id,
		        (int)c->s->pid, (unsigned long long)c->srv->d->cfg.hello_timeout);
		session_fail(c->s, ETIMEDOUT, "no Hello within %llu s",
		             (unsigned long long)c->srv->d->cfg.hello_timeout);
		conn_close(c, 1);
		return;
	}
	conn_close(c, 1); /* a Bye's Ok may be queued still */
}

/* heapd gave the session up (session_orphan): close the connection from the loop, soon. */
static void conn_end(void *io)
{
	conn_t *c = io;
	struct timeval now = { 0, 0 };

	event_del(c->rev);
	event_add(c->tev, &now);
}

/* ---- accepting ---- */

static int peer_allowed(const server_t *srv, int fd, const struct ucred *cr)
{
	const config_t *cfg = &srv->d->cfg;

	if (cr->uid == 0 || cr->uid == geteuid())
		return 1;
	for (size_t i = 0; i < cfg->nallow_uid; i++)
		if (cfg->allow_uid[i] == cr->uid)
			return 1;
	/* Members of our own group are admitted too: under systemd that is the
	 * heapd group, which heapd.socket lets reach the socket. */
	gid_t own = getegid();
	gid_t groups[256];
	socklen_t glen = sizeof(groups) - sizeof(gid_t);
	int ngroups = 0;
	groups[ngroups++] = cr->gid;
#ifdef SO_PEERGROUPS
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups + 1, &glen) == 0)
		ngroups += (int)(glen / sizeof(gid_t));
#else
	(void)fd;
	(void)glen;
#endif
	for (int g = 0; g < ngroups; g++) {
		if (own != 0 && groups[g] == own)
			return 1;
		for (size_t i = 0; i < cfg->nallow_gid; i++)
			if (cfg->allow_gid[i] == groups[g])
				return 1;
	}
	return 0;
}

/* Tell a refused peer why, without waiting on it, and close. */
static void refuse(int fd, int code, const char *msg)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Error err = HEAPD__ERROR__INIT;
	uint8_t buf[512];

	err.code = code;
	err.message = (char *)msg;
	env.msg_case = HEAPD__ENVELOPE__MSG_ERROR;
	env.error = &err;
	size_t n = wire_frame_size(&env);
	if (n <= sizeof(buf)) {
		wire_frame_pack(&env, buf);
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)w;
	}
	close(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	server_t *srv = arg;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	(void)l;
	(void)sa;
	(void)salen;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0) {
		log_msg("cannot read peer credentials: %s; connection closed", strerror(errno));
		close(fd);
		return;
	}
	if (!peer_allowed(srv, fd, &cr)) {
		log_msg("refused connection from pid %d uid %u gid %u: not allowed", (int)cr.pid,
		        (unsigned)cr.uid, (unsigned)cr.gid);
		refuse(fd, EACCES, "permission denied: uid/gid not allowed by heapd");
		return;
	}
	int admin = cr.uid == 0 || cr.uid == geteuid();
	if (srv->nconns >= srv->max_conns + (admin ? SERVER_ADMIN_CONNS : 0)) {
		log_msg("refused connection from pid %d uid %u: %u connections open", (int)cr.pid,
		        (unsigned)cr.uid, srv->nconns);
		refuse(fd, EUSERS, "too many connections");
		return;
	}
	server_uid_t *u = uid_entry(srv, cr.uid, 1);
	if (!u)
		goto fail;
	if (u->conns >= srv->d->cfg.max_connections_per_uid && !(admin && u->conns <
	                                                              srv->d->cfg.max_connections_per_uid + SERVER_ADMIN_CONNS)) {
		log_msg("refused connection from pid %d uid %u: the user has %u connections open",
		        (int)cr.pid, (unsigned)cr.uid, u->conns);
		refuse(fd, EUSERS, "too many connections from this user");
		uid_forget_idle(srv, cr.uid);
		return;
	}

	conn_t *c = calloc(1, sizeof(*c));
	if (!c) {
		uid_forget_idle(srv, cr.uid);
		goto fail;
	}
	c->srv = srv;
	c->fd = fd;
	c->uid = cr.uid;
	u->conns++;
	c->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	c->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	c->tev = evtimer_new(srv->base, conn_on_timer, c);
	c->out = evbuffer_new();
	if (!c->rev || !c->wev || !c->tev || !c->out || conn_reserve(c, CONN_INPUT_MIN) < 0)
		goto fail_conn;
	c->s = session_new(srv->d, fd, cr.pid, cr.uid, cr.gid, c->out);
	if (!c->s)
		goto fail_conn;
	c->s->send_fds = conn_send_fds;
	c->s->resume = conn_resume;
	c->s->end = conn_end;
	c->s->io = c;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	struct timeval hello = { (time_t)srv->d->cfg.hello_timeout, 0 };
	if (event_add(c->rev, NULL) < 0 || event_add(c->tev, &hello) < 0) {
		log_msg("cannot watch the connection from pid %d; closed", (int)cr.pid);
		conn_close(c, 0);
	}
	return;

fail_conn:
	uid_release(srv, cr.uid);
	c->fd = -1; /* closed below */
	conn_free(c);
fail:
	log_msg("out of memory for a connection from pid %d", (int)cr.pid);
	close(fd);
}

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
	server_t *srv = arg;
	(void)fd;
	(void)what;
	evconnlistener_enable(srv->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	server_t *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, 100000 };

	/* Out of descriptors: pause accepting rather than spin on the listener. */
	log_msg("accept failed: %s; pausing for 100 ms", strerror(err));
	evconnlistener_disable(l);
	evtimer_add(srv->relisten, &tv);
}

/* ---- the socket ---- */

/* Refuse a socket path a live daemon answers on; remove a stale one. */
static int check_socket_path(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		snprintf(err, errlen, "cannot stat socket %s: %s", path, strerror(errno));
		return rc;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket; not touching it", path);
		return -EEXIST;
	}
	fd = sock_connect(path);
	if (fd >= 0) {
		close(fd);
		snprintf(err, errlen, "another heapd is serving %s", path);
		return -EADDRINUSE;
	}
	if (fd != -ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe socket %s: %s", path, strerror(-fd));
		return fd;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
		return rc;
	}
	log_msg("removed stale socket %s", path);
	return 0;
}

/* ---- watches on client processes ---- */

typedef struct watch {
	server_t *srv;
	uint32_t slot;
	struct event *ev;
} watch_t;

static void on_proc_exit(evutil_socket_t fd, short what, void *arg)
{
	watch_t *w = arg;
	(void)fd;
	(void)what;

	daemon_t *d = w->srv->d;

	/* Frees w (unwatch_proc) when the process is gone; else watch on. */
	if (daemon_reap(d, w->slot) == 0)
		event_add(w->ev, NULL);
	else
		daemon_debug_check(d, "a process exit");
}

static void *watch_proc(void *arg, uint32_t slot, int pidfd)
{
	server_t *srv = arg;
	watch_t *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->srv = srv;
	w->slot = slot;
	w->ev = event_new(srv->base, pidfd, EV_READ, on_proc_exit, w);
	if (!w->ev || event_add(w->ev, NULL) < 0) {
		if (w->ev)
			event_free(w->ev);
		free(w);
		return NULL; /* the tick's daemon_reap still finds the process gone */
	}
	return w;
}

static void unwatch_proc(void *arg, void *watch)
{
	watch_t *w = watch;
	(void)arg;
	event_free(w->ev);
	free(w);
}

/* ---- requests waiting for their reply ---- */

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	server_t *srv = arg;
	(void)fd;
	(void)what;
	if (session_poll_waiting(srv->d))
		server_arm_poll(srv);
}

static void server_arm_poll(server_t *srv)
{
	struct timeval tv = { 0, SERVER_POLL_MS * 1000 };
	if (srv->poll && !event_pending(srv->poll, EV_TIMEOUT, NULL))
		event_add(srv->poll, &tv);
}

/* The sweeper finished a job: answer the requests waiting for it. */
static void on_jobs(evutil_socket_t fd, short what, void *arg)
{
	server_t *srv = arg;
	uint64_t n;
	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_msg("cannot read the job eventfd: %s", strerror(errno));
	on_poll(-1, 0, srv);
}

/* Called on the sweeper thread. */
static void notify_jobs(void *arg)
{
	server_t *srv = arg;
	uint64_t one = 1;
	if (write(srv->jobfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_msg("cannot write the job eventfd: %s", strerror(errno));
}

int server_listen(server_t *srv, daemon_t *d, const char *path, char *err, size_t errlen)
{
	int fd = -1, rc;

	memset(srv, 0, sizeof(*srv));
	srv->d = d;
	srv->listen_fd = -1;
	srv->jobfd = -1;
	srv->max_conns = d->clients.limit + SERVER_CONTROL_CONNS;
	snprintf(srv->path, sizeof(srv->path), "%s", path);

#ifdef HEAPD_HAVE_SYSTEMD
	int n = sd_listen_fds(1);
	if (n > 0) {
		fd = SD_LISTEN_FDS_START;
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			snprintf(err, errlen, "the socket passed by the service manager is not a "
			                      "listening Unix stream socket");
			return -EINVAL;
		}
		if (n > 1)
			log_msg("%d sockets passed; serving the first", n);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		log_msg("serving the socket passed by the service manager");
	}
#endif
	if (fd < 0) {
		rc = check_socket_path(path, err, errlen);
		if (rc < 0)
			return rc;
		/* mode 0660 through the umask at bind time: nothing follows the path afterwards */
		fd = sock_listen(path, 0660, 512);
		if (fd < 0) {
			snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(-fd));
			return fd;
		}
		srv->bound = 1;
	}
	srv->listen_fd = fd;
	srv->jobfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->jobfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create an eventfd: %s", strerror(errno));
		return rc;
	}
	/* Set before the sweeper thread starts (main.c). */
	d->sweeper.notify = notify_jobs;
	d->sweeper.notify_arg = srv;
	return 0;
}

/* ---- the loop ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	server_t *srv = arg;
	(void)what;
	srv->stop_signal = (int)sig;
	event_base_loopbreak(srv->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	server_t *srv = arg;
	daemon_t *d = srv->d;
	(void)fd;
	(void)what;

	/* Slots whose process could not be watched (no pidfd) are found here. */
	if (daemon_reap(d, HEAPD_NIL))
		daemon_debug_check(d, "a process exit");
	uint64_t repairs = segment_guard_repairs();
	if (repairs != srv->guard_repairs) {
		log_msg("the arena's data file was shrunk and re-extended %llu times (by a client); "
		        "the cut ranges read as zero", (unsigned long long)(repairs - srv->guard_repairs));
		srv->guard_repairs = repairs;
	}
	notify_status("%llu of %u pages in use, %u clients",
	              (unsigned long long)__atomic_load_n(&d->seg.hdr->pages_inuse, __ATOMIC_RELAXED),
	              d->seg.hdr->npages_max, d->nclients);
}

int server_run(server_t *srv)
{
	struct timeval tick = { (time_t)srv->d->cfg.sweep_interval, 0 };
	int rc = -ENOMEM;

	srv->base = event_base_new();
	if (!srv->base)
		goto fail;
	srv->listener = evconnlistener_new(srv->base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE, -1,
	                                   srv->listen_fd);
	if (!srv->listener)
		goto fail;
	srv->listen_fd = -1; /* the listener owns it now */
	evconnlistener_set_error_cb(srv->listener, on_accept_error);
	srv->relisten = evtimer_new(srv->base, on_relisten, srv);
	srv->sigterm = evsignal_new(srv->base, SIGTERM, on_signal, srv);
	srv->sigint = evsignal_new(srv->base, SIGINT, on_signal, srv);
	srv->tick = event_new(srv->base, -1, EV_PERSIST, on_tick, srv);
	srv->jobs = event_new(srv->base, srv->jobfd, EV_READ | EV_PERSIST, on_jobs, srv);
	srv->poll = evtimer_new(srv->base, on_poll, srv);
	if (!srv->relisten || !srv->sigterm || !srv->sigint || !srv->tick || !srv->jobs || !srv->poll)
		goto fail;
	if (evsignal_add(srv->sigterm, NULL) < 0 || evsignal_add(srv->sigint, NULL) < 0 ||
	    event_add(srv->tick, &tick) < 0 || event_add(srv->jobs, NULL) < 0)
		goto fail;
	/* Watch the processes of the slots recovery kept, and of every slot from now on. */
	srv->d->watch_proc = watch_proc;
	srv->d->unwatch_proc = unwatch_proc;
	srv->d->watch_arg = srv;
	daemon_watch_slots(srv->d);
	/* main.c held these until now; one that is pending stops the loop at once */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &stop, NULL);

	log_msg("heapd %s serving %s (arena %s, %llu MiB, pid %d)", HEAPD_VERSION, srv->path,
	        srv->d->cfg.arena,
	        (unsigned long long)(((uint64_t)srv->d->seg.npages_max << HEAPD_PAGE_SHIFT) >> 20),
	        (int)getpid());
	notify_ready();
	on_tick(-1, 0, srv);
	if (event_base_dispatch(srv->base) < 0)
		return -EIO;
	return 0;
fail:
	return rc;
}

void server_close(server_t *srv)
{
	while (srv->conns) {
		conn_t *c = srv->conns;
		if (c->s) {
			session_free(c->s);
			c->s = NULL;
		}
		conn_destroy(c);
	}
	if (srv->d && srv->d->watch_proc) {
		daemon_unwatch_slots(srv->d);
		srv->d->watch_proc = NULL;
		srv->d->unwatch_proc = NULL;
	}
	if (srv->listener)
		evconnlistener_free(srv->listener);
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	struct event *evs[] = { srv->relisten, srv->sigterm, srv->sigint, srv->tick, srv->jobs,
	                        srv->poll };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	if (srv->base)
		event_base_free(srv->base);
	if (srv->jobfd >= 0)
		close(srv->jobfd);
	if (srv->bound && unlink(srv->path) < 0 && errno != ENOENT)
		log_msg("cannot remove socket %s: %s", srv->path, strerror(errno));
	free(srv->uids);
	srv->uids = NULL;
	srv->listener = NULL;
	srv->base = NULL;
	srv->listen_fd = -1;
	srv->jobfd = -1;
}
