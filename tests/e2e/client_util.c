// SPDX-License-Identifier: MIT
/*
 * client_util.c - helpers for the libheapclient tests. See client_util.h.
 */
#include "client_util.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

harness_daemon_t cu_daemon;

void cu_daemon_start(const char *size)
{
	harness_init(&cu_daemon);
	if (size)
		cu_daemon.size = size;
	int rc = harness_start(&cu_daemon);
	ck_assert_msg(rc == 0, "heapd did not start (%s); log in %s", strerror(-rc), cu_daemon.log);
	setenv("HEAPD_SOCKET", cu_daemon.sock, 1);
}

void cu_daemon_stop(void)
{
	harness_cleanup(&cu_daemon);
}

/* Word i of the pattern seeded with seed; byte i of an object is byte i % 8 of word i / 8. */
static inline uint64_t pattern_word(uint64_t seed, size_t i)
{
	return ((seed ^ i) + 0x632be59bd9b4e019ULL) * 0x9e3779b97f4a7c15ULL;
}

void cu_fill(void *p, size_t n, uint64_t seed)
{
	uint8_t *b = p;
	size_t i;
	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t w = pattern_word(seed, i / 8);
		memcpy(b + i, &w, 8);
	}
	if (i < n) {
		uint64_t w = pattern_word(seed, i / 8);
		memcpy(b + i, &w, n - i);
	}
}

int cu_verify(const void *p, size_t n, uint64_t seed)
{
	const uint8_t *b = p;
	size_t i;
	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t w = pattern_word(seed, i / 8);
		if (memcmp(b + i, &w, 8) != 0)
			return 0;
	}
	if (i < n) {
		uint64_t w = pattern_word(seed, i / 8);
		if (memcmp(b + i, &w, n - i) != 0)
			return 0;
	}
	return 1;
}

uint64_t cu_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x2545f4914f6cdd1dULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

double cu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t stat_field(int pages)
{
	Heapd__StatsReply *st;
	Heapd__Envelope *owner = NULL;
	uint64_t v = UINT64_MAX;
	int fd = harness_control(cu_daemon.sock);

	if (fd < 0)
		return v;
	if (harness_stats(fd, &st, &owner) == 0)
		v = pages ? st->pages_in_use : st->objects_in_use;
	wire_free(owner);
	close(fd);
	return v;
}

uint64_t cu_objects_in_use(void)
{
	return stat_field(0);
}

uint64_t cu_pages_in_use(void)
{
	return stat_field(1);
}

uint64_t cu_client_spans(pid_t pid)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;
	uint64_t n = UINT64_MAX;
	int fd = harness_control(cu_daemon.sock);

	if (fd < 0)
		return n;
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	if (harness_call(fd, &env, &reply) == 0 && reply->msg_case == HEAPD__ENVELOPE__MSG_CLIENTS_REPLY) {
		n = 0;
		for (size_t i = 0; i < reply->clients_reply->n_clients; i++) {
			const Heapd__ClientInfo *c = reply->clients_reply->clients[i];
			if (!c->control && (pid == 0 || c->pid == (uint32_t)pid))
				n += c->spans_cached;
		}
	}
	wire_free(reply);
	close(fd);
	return n;
}

int cu_settle(int max_sweeps)
{
	int fd = harness_control(cu_daemon.sock);
	if (fd < 0)
		return 0;
	for (int i = 0; i < max_sweeps; i++) {
		harness_sweep(fd);
		if (cu_objects_in_use() == 0 && cu_pages_in_use() == 0) {
			close(fd);
			return 1;
		}
		usleep(20000);
	}
	close(fd);
	return 0;
}

uint64_t cu_check(void)
{
	uint64_t n = UINT64_MAX;
	int fd = harness_control(cu_daemon.sock);
	if (fd < 0)
		return n;
	if (harness_check(fd, &n) < 0)
		n = UINT64_MAX;
	close(fd);
	return n;
}

int cu_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

int cu_write_full(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int cu_read_full(int fd, void *buf, size_t n)
{
	char *p = buf;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

void cu_expect_abort(void (*fn)(void *), void *arg, const char *needle)
{
	char buf[4096];
	size_t len = 0;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		struct rlimit nocore = { 0, 0 };
		setrlimit(RLIMIT_CORE, &nocore);
		signal(SIGABRT, SIG_DFL);
		fn(arg);
		_exit(0);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fds[0]);
	int st = cu_wait(pid);
	ck_assert_msg(st == 128 + SIGABRT, "child ended with status %d, not SIGABRT; stderr: %s", st, buf);
	ck_assert_msg(strstr(buf, needle) != NULL, "stderr \"%s\" does not contain \"%s\"", buf, needle);
}
