// SPDX-License-Identifier: MIT
/*
 * test_daemon_util.c - raw protocol clients for the daemon's tests (see
 * test_daemon_util.h).
 */
#include "test_daemon_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void tc_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int tc_error_code(const Heapd__Envelope *reply)
{
	if (reply && reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		return reply->error->code ? reply->error->code : -1;
	return 0;
}

int tc_hello_again(const char *sock, tclient_t *c, uint32_t prev_slot1, const uint32_t *held,
                   size_t nheld)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Hello hello = HEAPD__HELLO__INIT;
	char err[256];
	int rc, fds[WIRE_MAX_FDS] = { -1, -1 };

	memset(c, 0, sizeof(*c));
	c->fd = harness_connect_raw(sock);
	if (c->fd < 0)
		return c->fd;
	hello.version = HEAPD_PROTOCOL_VERSION;
	hello.pid = (uint32_t)getpid();
	hello.prev_slot = prev_slot1;
	hello.held_spans = (uint32_t *)held;
	hello.n_held_spans = nheld;
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	rc = wire_send(c->fd, &env);
	if (rc == 0)
		rc = wire_recv(c->fd, &reply, fds);
	if (rc < 0)
		goto fail;
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		rc = -reply->error->code;
		goto fail;
	}
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY || fds[0] < 0 || fds[1] < 0) {
		rc = -EPROTO;
		goto fail;
	}
	c->slot = reply->hello_reply->slot;
	rc = segment_attach(fds[0], fds[1], &c->seg, err, sizeof(err));
	fds[0] = fds[1] = -1;
	if (rc < 0) {
		fprintf(stderr, "segment_attach: %s\n", err);
		goto fail;
	}
	c->mapped = 1;
	wire_free(reply);
	return 0;
fail:
	for (int i = 0; i < WIRE_MAX_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	wire_free(reply);
	close(c->fd);
	c->fd = -1;
	return rc;
}

int tc_hello(const char *sock, tclient_t *c)
{
	return tc_hello_again(sock, c, 0, NULL, 0);
}

void tc_close(tclient_t *c)
{
	if (c->mapped)
		segment_close(&c->seg);
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int tc_in_child(const char *sock, int (*fn)(tclient_t *c, void *arg), void *arg)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		tclient_t c;
		if (tc_hello(sock, &c) < 0)
			_exit(255);
		int rc = fn(&c, arg);
		tc_close(&c);
		_exit(rc & 0xff);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) == 255)
		return -1;
	return WEXITSTATUS(st);
}

int tc_refill(int fd, uint32_t k, uint32_t count, const uint32_t *release, size_t nrelease,
              Heapd__Envelope **reply)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Refill rf = HEAPD__REFILL__INIT;
	rf.sizeclass = k;
	rf.count = count;
	rf.release = (uint32_t *)release;
	rf.n_release = nrelease;
	env.msg_case = HEAPD__ENVELOPE__MSG_REFILL;
	env.refill = &rf;
	return wire_call(fd, &env, reply, NULL);
}

int tc_large_alloc(int fd, uint64_t size, uint64_t align, int zero, Heapd__Envelope **reply)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__LargeAlloc la = HEAPD__LARGE_ALLOC__INIT;
	la.size = size;
	la.align = align;
	la.zero = zero;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_ALLOC;
	env.large_alloc = &la;
	return wire_call(fd, &env, reply, NULL);
}

int tc_large_free(int fd, uint32_t span, uint32_t gen)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__LargeFree lf = HEAPD__LARGE_FREE__INIT;
	lf.span = span;
	lf.gen = gen;
	env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_FREE;
	env.large_free = &lf;
	return wire_send(fd, &env);
}

int tc_closed(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[4096];

	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if (poll(&p, 1, 10) > 0) {
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return 1;
		}
	}
	return 0;
}

Heapd__StatsReply *tc_stats(const char *sock, Heapd__Envelope **owner)
{
	Heapd__StatsReply *st = NULL;
	int fd = harness_control(sock);
	*owner = NULL;
	if (fd < 0)
		return NULL;
	if (harness_stats(fd, &st, owner) < 0)
		st = NULL;
	close(fd);
	return st;
}

int64_t tc_check(const char *sock)
{
	uint64_t n = 0;
	int fd = harness_control(sock);
	if (fd < 0)
		return -1;
	int rc = harness_check(fd, &n);
	close(fd);
	return rc < 0 ? -1 : (int64_t)n;
}

int tc_sweep(const char *sock)
{
	int fd = harness_control(sock);
	if (fd < 0)
		return fd;
	int rc = harness_sweep(fd);
	close(fd);
	return rc;
}

int tc_wait_clients(const char *sock, uint32_t clients, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 20) {
		Heapd__Envelope *owner;
		Heapd__StatsReply *st = tc_stats(sock, &owner);
		int ok = st && st->clients == clients;
		wire_free(owner);
		if (ok)
			return 1;
		tc_sleep_ms(20);
	}
	return 0;
}

int tc_run_heapd(const char *const *args, char *buf, size_t buflen)
{
	const char *bin = getenv("HEAPD_BIN");
	const char *argv[64];
	int p[2], n = 0, st = 0;

	if (!bin || pipe(p) < 0)
		return -1;
	argv[n++] = bin;
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		close(p[1]);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	size_t off = 0;
	ssize_t r;
	while ((r = read(p[0], buf + off, buflen - 1 - off)) > 0 && off < buflen - 1)
		off += (size_t)r;
	buf[off] = '\0';
	close(p[0]);
	waitpid(pid, &st, 0);
	return st;
}
