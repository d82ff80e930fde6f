// SPDX-License-Identifier: MIT
/*
 * control.c - a control connection to heapd (see control.h).
 */
#include "control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sock.h"

__attribute__((format(printf, 3, 4)))
static void say(char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
}

int ctl_open(ctl_t *c, const char *path, int timeout_s, char *why, size_t whylen)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Hello hello = HEAPD__HELLO__INIT;

	c->fd = -1;
	c->seq = 0;
	c->page_size = 0;
	int fd = sock_connect(path);
	if (fd < 0) {
		say(why, whylen, "cannot connect to %s: %s", path, strerror(-fd));
		return fd;
	}
	if (timeout_s > 0) {
		struct timeval tv = { .tv_sec = timeout_s };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	hello.version = HEAPD_PROTOCOL_VERSION;
	hello.control = 1;
	hello.pid = (uint32_t)getpid();
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	env.seq = 1;
	/*
	 * A daemon that refuses us writes an Error and closes, perhaps before
	 * our Hello arrives: read its reason even when the send failed.
	 */
	int sent = wire_send(fd, &env);
	int rc = wire_recv(fd, &reply, NULL);
	if (rc < 0) {
		rc = sent < 0 ? sent : rc;
		say(why, whylen, "%s: hello failed: %s", path,
		    rc == -EAGAIN ? "no reply in time" : strerror(-rc));
		goto fail;
	}
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		rc = reply->error->code > 0 ? -reply->error->code : -EPROTO;
		say(why, whylen, "%s: the daemon refused the connection: %s", path,
		    reply->error->message);
		goto fail;
	}
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY || reply->seq != env.seq) {
		rc = -EPROTO;
		say(why, whylen, "%s: unexpected reply to hello", path);
		goto fail;
	}
	c->fd = fd;
	c->seq = 1;
	c->page_size = reply->hello_reply->page_size;
	wire_free(reply);
	return 0;
fail:
	wire_free(reply);
	close(fd);
	return rc;
}

void ctl_adopt(ctl_t *c, int fd)
{
	c->fd = fd;
	c->seq = 1;
	c->page_size = 0;
}

void ctl_close(ctl_t *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

int ctl_call(ctl_t *c, Heapd__Envelope *req, Heapd__Envelope__MsgCase want,
             Heapd__Envelope **reply, char *why, size_t whylen)
{
	*reply = NULL;
	req->seq = ++c->seq;
	int rc = wire_call(c->fd, req, reply, NULL);
	if (rc < 0) {
		say(why, whylen, "%s", rc == -EAGAIN ? "no reply in time" : strerror(-rc));
		return rc;
	}
	if ((*reply)->msg_case == want)
		return 0;
	if ((*reply)->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		rc = (*reply)->error->code > 0 ? -(*reply)->error->code : -EPROTO;
		say(why, whylen, "%s", (*reply)->error->message);
	} else {
		rc = -EPROTO;
		say(why, whylen, "%s", "unexpected reply from the daemon");
	}
	wire_free(*reply);
	*reply = NULL;
	return rc;
}

int ctl_simple(ctl_t *c, Heapd__Envelope__MsgCase msg, Heapd__Envelope__MsgCase want,
               Heapd__Envelope **reply, char *why, size_t whylen)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	union {
		Heapd__StatsRequest stats;
		Heapd__ClientsRequest clients;
		Heapd__SweepRequest sweep;
		Heapd__ScavengeRequest scavenge;
		Heapd__CheckRequest check;
	} u;

	env.msg_case = msg;
	switch (msg) {
	case HEAPD__ENVELOPE__MSG_STATS:
		heapd__stats_request__init(&u.stats);
		env.stats = &u.stats;
		break;
	case HEAPD__ENVELOPE__MSG_CLIENTS:
		heapd__clients_request__init(&u.clients);
		env.clients = &u.clients;
		break;
	case HEAPD__ENVELOPE__MSG_SWEEP:
		heapd__sweep_request__init(&u.sweep);
		env.sweep = &u.sweep;
		break;
	case HEAPD__ENVELOPE__MSG_SCAVENGE:
		heapd__scavenge_request__init(&u.scavenge);
		env.scavenge = &u.scavenge;
		break;
	case HEAPD__ENVELOPE__MSG_CHECK:
		heapd__check_request__init(&u.check);
		env.check = &u.check;
		break;
	default:
		return -EINVAL;
	}
	return ctl_call(c, &env, want, reply, why, whylen);
}
