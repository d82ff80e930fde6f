// SPDX-License-Identifier: MIT
/*
 * server.c - the event loop, the listener and the connections (see server.h).
 *
 * Entry points: server_listen, server_run, server_close.
 *
 * A connection's life: accept -> SO_PEERCRED check (refused peers get an
 * Error and are closed before anything is read) -> session_new -> frames
 * (conn_read: 4-byte length, then the payload; a length over HEAPD_MAX_FRAME
 * is a protocol error) -> EOF, error, or a protocol error, after which the
 * queued Error reply is flushed (at most CONN_LINGER_S seconds) and the
 * connection closed. The session is ended (its spans taken back) the moment
 * the connection is condemned, not when the flush completes.
 *
 * The arena's descriptor rides with the Hello reply (conn_send_fd), sent
 * directly with sendmsg while the output buffer is still empty, so no
 * queued byte can overtake it.
 */
#include "server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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
#include "wire.h"

#define CONN_LINGER_S 5
#define SERVER_INPUT_HIGH (HEAPD_FRAME_HEADER + HEAPD_MAX_FRAME + 65536u)

typedef struct conn {
	server_t *srv;
	struct bufferevent *bev;
	session_t *s;            /* NULL once the session has ended */
	int closing;             /* flushing a last reply before closing */
	struct conn *next, *prev;
} conn_t;

/* ---- connections ---- */

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
	bufferevent_free(c->bev);
	free(c);
}

static void conn_drained(struct bufferevent *bev, void *arg)
{
	conn_t *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_destroy(c);
}

static void conn_linger_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	conn_destroy(arg);
}

/* End the session; with flush, deliver what is queued (the Error) before closing. */
static void conn_close(conn_t *c, int flush)
{
	if (c->s) {
		session_free(c->s, 0);
		c->s = NULL;
	}
	if (flush && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		struct timeval tv = { CONN_LINGER_S, 0 };
		c->closing = 1;
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_setcb(c->bev, NULL, conn_drained, conn_linger_event, c);
		bufferevent_set_timeouts(c->bev, NULL, &tv);
		bufferevent_enable(c->bev, EV_WRITE);
		return;
	}
	conn_destroy(c);
}

static int conn_send_fd(void *io, const uint8_t *frame, size_t len, int fd)
{
	conn_t *c = io;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)frame, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (evbuffer_get_length(out) != 0)
		return -EPROTO; /* cannot keep the descriptor with its frame */
	memset(&ctl, 0, sizeof(ctl));
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));

	ssize_t n;
	do
		n = sendmsg(bufferevent_getfd(c->bev), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n < len && evbuffer_add(out, frame + n, len - (size_t)n) < 0)
		return -ENOMEM;
	return 0;
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	conn_t *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	static const uint8_t empty[1];

	while (!c->closing && c->s) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[HEAPD_FRAME_HEADER];
		uint32_t len;

		if (avail < HEAPD_FRAME_HEADER) {
			bufferevent_setwatermark(bev, EV_READ, HEAPD_FRAME_HEADER, SERVER_INPUT_HIGH);
			return;
		}
		evbuffer_copyout(in, hdr, sizeof(hdr));
		if (wire_parse_header(hdr, &len) < 0) {
			session_fail(c->s, EPROTO, "frame of %u bytes is over the %u-byte limit", len,
			             HEAPD_MAX_FRAME);
			conn_close(c, 1);
			return;
		}
		if (avail < HEAPD_FRAME_HEADER + (size_t)len) {
			/* wake up only once the whole frame is here */
			bufferevent_setwatermark(bev, EV_READ, HEAPD_FRAME_HEADER + len, SERVER_INPUT_HIGH);
			return;
		}
		evbuffer_drain(in, HEAPD_FRAME_HEADER);
		const uint8_t *payload = len ? evbuffer_pullup(in, len) : empty;
		int rc = payload ? session_handle_frame(c->s, payload, len)
		                 : session_fail(c->s, ENOMEM, "out of memory for a frame");
		evbuffer_drain(in, len);
		if (rc < 0) {
			conn_close(c, 1);
			return;
		}
		size_t queued = evbuffer_get_length(bufferevent_get_output(bev));
		if (queued > SERVER_OUTPUT_LIMIT) {
			log_msg("client %u (pid %d) does not read its replies (%zu bytes queued); dropped",
			        c->s->id, (int)c->s->pid, queued);
			conn_close(c, 0);
			return;
		}
	}
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	conn_t *c = arg;
	size_t pending = evbuffer_get_length(bufferevent_get_input(bev));

	if (c->s && pending && (what & BEV_EVENT_EOF))
		log_msg("client %u (pid %d) hung up in the middle of a frame (%zu bytes unread)",
		        c->s->id, (int)c->s->pid, pending);
	else if (c->s && (what & BEV_EVENT_ERROR) && errno != ECONNRESET && errno != EPIPE)
		log_msg("client %u (pid %d): connection error: %s", c->s->id, (int)c->s->pid,
		        strerror(errno));
	conn_close(c, 0);
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
	if (srv->nconns >= srv->max_conns) {
		log_msg("refused connection from pid %d uid %u: %u connections open", (int)cr.pid,
		        (unsigned)cr.uid, srv->nconns);
		refuse(fd, EUSERS, "too many connections");
		return;
	}

	conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->srv = srv;
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev)
		goto fail_conn;
	c->s = session_new(srv->d, cr.pid, cr.uid, cr.gid, bufferevent_get_output(c->bev));
	if (!c->s)
		goto fail_bev;
	c->s->send_fd = conn_send_fd;
	c->s->io = c;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, HEAPD_FRAME_HEADER, SERVER_INPUT_HIGH);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return;

fail_bev:
	bufferevent_free(c->bev);
	fd = -1;
fail_conn:
	free(c);
fail:
	log_msg("out of memory for a connection from pid %d", (int)cr.pid);
	if (fd >= 0)
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
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
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
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
		return rc;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "another heapd is serving %s", path);
		return -EADDRINUSE;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe socket %s: %s", path, strerror(e));
		return -e;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
		return rc;
	}
	log_msg("removed stale socket %s", path);
	return 0;
}

static int bind_socket(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
		return rc;
	}
	mode_t old = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, 0660) < 0 || listen(fd, 512) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

int server_listen(server_t *srv, daemon_t *d, const char *path, char *err, size_t errlen)
{
	int fd = -1, rc;

	memset(srv, 0, sizeof(*srv));
	srv->d = d;
	srv->listen_fd = -1;
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
		fd = bind_socket(path, err, errlen);
		if (fd < 0)
			return fd;
		srv->bound = 1;
	}
	srv->listen_fd = fd;
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

	daemon_reap_held(d);
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
	if (!srv->relisten || !srv->sigterm || !srv->sigint || !srv->tick)
		goto fail;
	if (evsignal_add(srv->sigterm, NULL) < 0 || evsignal_add(srv->sigint, NULL) < 0 ||
	    event_add(srv->tick, &tick) < 0)
		goto fail;

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
			session_free(c->s, 1);
			c->s = NULL;
		}
		conn_destroy(c);
	}
	if (srv->listener)
		evconnlistener_free(srv->listener);
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	if (srv->relisten)
		event_free(srv->relisten);
	if (srv->sigterm)
		event_free(srv->sigterm);
	if (srv->sigint)
		event_free(srv->sigint);
	if (srv->tick)
		event_free(srv->tick);
	if (srv->base)
		event_base_free(srv->base);
	if (srv->bound && unlink(srv->path) < 0 && errno != ENOENT)
		log_msg("cannot remove socket %s: %s", srv->path, strerror(errno));
	srv->listener = NULL;
	srv->base = NULL;
	srv->listen_fd = -1;
}
