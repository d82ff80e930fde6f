// SPDX-License-Identifier: MIT
/*
 * hostile_util.c - support for the hostile-client suite (see
 * hostile_util.h).
 */
#include "hostile_util.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "heapclient.h"
#include "wire.h"

harness_daemon_t hs_daemon;
hs_sync_t *hs_sync;

void hs_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t hs_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the daemon ---- */

/*
 * A failed assertion ends the test process without its teardown, and
 * Check kills the test's process group: a watcher in a session of its own
 * removes dir once the test process, and every child that shares the pipe
 * with it, has exited (the daemon dies with the test: harness.h).
 */
static void remove_dir_when_done(const char *dir)
{
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char buf[1];
		close(p[1]);
		setsid();
		while (read(p[0], buf, 1) < 0 && errno == EINTR)
			;
		execlp("rm", "rm", "-rf", dir, (char *)NULL);
		_exit(127);
	}
	close(p[0]); /* the write end stays open in this process and its forked children */
}

void hs_daemon_init(void)
{
	harness_init(&hs_daemon);
	remove_dir_when_done(hs_daemon.dir);
}

void hs_daemon_start(const char *size, ...)
{
	va_list ap;
	int n = 0;

	hs_daemon_init();
	if (size)
		hs_daemon.size = size;
	va_start(ap, size);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 15;)
		hs_daemon.extra[n++] = a;
	va_end(ap);
	hs_daemon.extra[n] = NULL;
	int rc = harness_start(&hs_daemon);
	if (rc < 0)
		harness_dump_log(&hs_daemon);
	ck_assert_msg(rc == 0, "heapd did not start: %s", strerror(-rc));
	setenv("HEAPD_SOCKET", hs_daemon.sock, 1);
}

void hs_daemon_restart(void)
{
	int rc = harness_start(&hs_daemon);
	if (rc < 0)
		harness_dump_log(&hs_daemon);
	ck_assert_msg(rc == 0, "heapd did not restart: %s", strerror(-rc));
}

void hs_daemon_stop(void)
{
	if (hs_daemon.dir[0] && soak_env("HOSTILE_DUMP_LOG", 0))
		harness_dump_log(&hs_daemon);
	harness_cleanup(&hs_daemon);
}

int hs_daemon_alive(void)
{
	int st;
	return hs_daemon.pid > 0 && waitpid(hs_daemon.pid, &st, WNOHANG) == 0;
}

int hs_run(const char *bin, const char *const *args, char *buf, size_t buflen, int timeout_ms)
{
	const char *argv[64];
	int p[2], n = 0, st = 0;
	size_t off = 0;

	if (!bin || pipe(p) < 0)
		return -2;
	argv[n++] = bin;
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -2;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		close(p[1]);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	uint64_t end = hs_now_ms() + (uint64_t)timeout_ms;
	int eof = 0;
	while (!eof && hs_now_ms() < end) {
		struct pollfd pf = { .fd = p[0], .events = POLLIN };
		if (poll(&pf, 1, 20) <= 0)
			continue;
		ssize_t r = read(p[0], buf + off, buflen - 1 - off);
		if (r <= 0 || (off += (size_t)r) >= buflen - 1)
			eof = 1;
	}
	buf[off] = '\0';
	close(p[0]);
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (hs_now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		hs_sleep_ms(5);
	}
	return st;
}

int hs_run_heapd(const char *const *args, char *buf, size_t buflen, int timeout_ms)
{
	return hs_run(getenv("HEAPD_BIN"), args, buf, buflen, timeout_ms);
}

int hs_heapctl(const char *command, char *buf, size_t buflen)
{
	const char *args[] = { "--socket", hs_daemon.sock, command, NULL };
	return hs_run(getenv("HEAPCTL_BIN"), args, buf, buflen, 10000);
}

void hs_open_up(void)
{
	ck_assert_int_eq(chmod(hs_daemon.dir, 0711), 0);
	ck_assert_int_eq(chmod(hs_daemon.sock, 0666), 0);
}

int hs_become_nobody(void)
{
	return setgroups(0, NULL) == 0 && setgid(HS_NOBODY) == 0 && setuid(HS_NOBODY) == 0 ? 0 : -1;
}

/* ---- processes ---- */

void hs_shared_init(void)
{
	if (!hs_sync)
		hs_sync = soak_shared(sizeof(*hs_sync));
	memset(hs_sync, 0, sizeof(*hs_sync));
}

void hs_fail(const char *fmt, ...)
{
	char msg[sizeof(hs_sync->why)];
	va_list ap;
	int n = snprintf(msg, sizeof(msg), "pid %d: ", (int)getpid());

	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", msg);
	if (hs_sync && atomic_exchange(&hs_sync->failed, 1) == 0)
		memcpy(hs_sync->why, msg, sizeof(msg));
	_exit(1);
}

pid_t hs_spawn(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

#define HS_PID_TRIES 20
#define HS_WRONG_PID 99 /* exit status of a child that did not get the pid asked for */

pid_t hs_spawn_as_pid(pid_t want, int (*fn)(void *), void *arg)
{
	char buf[32];
	int rc = -EAGAIN;

	int fd = open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* the lock CRIU and others take around ns_last_pid */
	if (flock(fd, LOCK_EX) < 0) {
		rc = -errno;
		goto out;
	}
	for (int i = 0; i < HS_PID_TRIES; i++) {
		int n = snprintf(buf, sizeof(buf), "%d", (int)want - 1);
		if (pwrite(fd, buf, (size_t)n, 0) != n) {
			rc = -errno;
			break;
		}
		pid_t pid = fork();
		if (pid < 0) {
			rc = -errno;
			break;
		}
		if (pid == 0) {
			close(fd); /* and with it the lock, which the child's copy would hold */
			_exit(getpid() == want ? fn(arg) : HS_WRONG_PID);
		}
		if (pid == want) {
			rc = pid;
			break;
		}
		int st;
		waitpid(pid, &st, 0); /* someone else took it; again */
	}
out:
	close(fd);
	return rc;
}

int hs_start_time(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -ESRCH;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields resume after the command name's last ')'; each step lands on the space before one */
	char *p = strrchr(buf, ')');
	for (int field = 3; p && field <= 22; field++)
		p = strchr(p + 1, ' ');
	unsigned long long v;
	if (!p || sscanf(p, " %llu", &v) != 1)
		return -ESRCH;
	*ticks = v;
	return 0;
}

int hs_wait_ticks_past(uint64_t ticks, int timeout_ms)
{
	long hz = sysconf(_SC_CLK_TCK);
	uint64_t end = hs_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		struct timespec ts;
		clock_gettime(CLOCK_BOOTTIME, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * (uint64_t)hz +
		               (uint64_t)ts.tv_nsec / (1000000000ULL / (uint64_t)hz);
		if (now > ticks + 1)
			return 1;
		if (hs_now_ms() > end)
			return 0;
		hs_sleep_ms(1);
	}
}

void hs_expect_ok(pid_t pid, const char *what)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		ck_assert_int_eq(errno, EINTR);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s %d; %s", what,
	              WIFSIGNALED(st) ? "killed by signal" : "exit status",
	              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
	              hs_sync && hs_sync->failed ? hs_sync->why : "no failure recorded");
}

int hs_wait_at_least(_Atomic int64_t *v, int64_t want, int timeout_ms)
{
	uint64_t end = hs_now_ms() + (uint64_t)timeout_ms;
	while (atomic_load(v) < want) {
		if (hs_now_ms() > end)
			return 0;
		hs_sleep_ms(1);
	}
	return 1;
}

void hs_expect_step(_Atomic int64_t *v, int64_t want, int timeout_ms, pid_t pid, const char *what)
{
	uint64_t end = hs_now_ms() + (uint64_t)timeout_ms;
	int st;

	while (atomic_load(v) < want) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			ck_abort_msg("%s: %s %d before it got there; %s", what,
			             WIFSIGNALED(st) ? "killed by signal" : "exit status",
			             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
			             hs_sync->failed ? hs_sync->why : "no failure recorded");
		ck_assert_msg(hs_now_ms() <= end, "%s: no progress in %d ms; %s", what, timeout_ms,
		              hs_sync->failed ? hs_sync->why : "no failure recorded");
		hs_sleep_ms(1);
	}
}

/* ---- raw frames ---- */

int hs_send_bytes(int fd, const void *buf, size_t n)
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

int hs_hello_fds(const char *sock, int control, uint32_t *slot, int *meta_fd, int *data_fd)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Hello hello = HEAPD__HELLO__INIT;
	int fds[WIRE_MAX_FDS] = { -1, -1 }, rc;
	int fd = harness_connect_raw(sock);

	if (fd < 0)
		return fd;
	hello.version = HEAPD_PROTOCOL_VERSION;
	hello.control = control != 0;
	hello.pid = (uint32_t)getpid();
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	env.seq = 1;
	rc = wire_send(fd, &env);
	if (rc == 0)
		rc = wire_recv(fd, &reply, fds);
	if (rc == 0 && reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		rc = reply->error->code > 0 ? -reply->error->code : -EPROTO;
	else if (rc == 0 && reply->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY)
		rc = -EPROTO;
	if (rc == 0 && slot)
		*slot = reply->hello_reply->slot;
	wire_free(reply);
	if (meta_fd)
		*meta_fd = fds[0];
	else if (fds[0] >= 0)
		close(fds[0]);
	if (data_fd)
		*data_fd = fds[1];
	else if (fds[1] >= 0)
		close(fds[1]);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int hs_lib_socket(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		memset(&sa, 0, sizeof(sa));
		if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
		    strcmp(sa.sun_path, hs_daemon.sock) == 0)
			found = fd;
	}
	closedir(d);
	return found;
}

/* ---- the arena ---- */

int hs_arena(hs_arena_t *a)
{
	void *p = hc_malloc(8);
	if (!p)
		return -1;
	/* through an integer: the base is not part of the object */
	uintptr_t base = (uintptr_t)p - (uintptr_t)hc_ptr_to_off(p);
	hc_free(p);
	a->base = (const uint8_t *)base;
	a->hdr = (const shm_header_t *)base;
	a->pagemap = (const uint64_t *)(base + a->hdr->pagemap_off);
	a->spans = (const shm_span_t *)(base + a->hdr->spans_off);
	a->clients = (const shm_client_t *)(base + a->hdr->clients_off);
	a->bits = (uint64_t *)(base + a->hdr->bits_off);
	a->pages = (uint8_t *)(base + a->hdr->pages_off);
	return a->hdr->magic == HEAPD_MAGIC ? 0 : -1;
}

uint32_t hs_span_of(const hs_arena_t *a, const void *p)
{
	uintptr_t off = (uintptr_t)p - (uintptr_t)a->pages;
	if ((uintptr_t)p < (uintptr_t)a->pages || (off >> HEAPD_PAGE_SHIFT) >= a->hdr->npages_max)
		return HEAPD_NIL;
	return heapd_pagemap_span(a->pagemap[off >> HEAPD_PAGE_SHIFT]);
}

void hs_read_header(shm_header_t *h)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", hs_daemon.arena, HEAPD_META_FILE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(pread(fd, h, sizeof(*h), 0), (ssize_t)sizeof(*h));
	close(fd);
	ck_assert_uint_eq(h->magic, HEAPD_MAGIC);
}

void hs_claims_init(soak_claims_t *c)
{
	shm_header_t h;
	hs_read_header(&h);
	c->nbits = h.map_size >> 3;
	c->bits = soak_shared((c->nbits + 63) / 64 * sizeof(uint64_t));
}

/* ---- the daemon's view ---- */

int hs_clients(hs_client_t *out, int max)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;
	int fd = harness_control(hs_daemon.sock), n = 0, rc;

	if (fd < 0)
		return fd;
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	rc = harness_call(fd, &env, &reply);
	close(fd);
	if (rc < 0)
		return rc;
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_CLIENTS_REPLY) {
		wire_free(reply);
		return -EPROTO;
	}
	for (size_t i = 0; i < reply->clients_reply->n_clients; i++) {
		const Heapd__ClientInfo *ci = reply->clients_reply->clients[i];
		if (ci->control)
			continue;
		if (n < max) {
			out[n].pid = ci->pid;
			out[n].uid = ci->uid;
			out[n].slot = ci->slot;
			out[n].connected = ci->connected;
			out[n].spans_cached = ci->spans_cached;
			out[n].pages_held = ci->pages_held;
		}
		n++;
	}
	wire_free(reply);
	return n;
}

int hs_slot_of(pid_t pid, int *connected)
{
	hs_client_t cl[256];
	int n = hs_clients(cl, 256);
	for (int i = 0; i < n && i < 256; i++) {
		if (cl[i].pid == (uint32_t)pid) {
			if (connected)
				*connected = cl[i].connected;
			return (int)cl[i].slot;
		}
	}
	return -1;
}

uint64_t hs_sweep_cycles(void)
{
	Heapd__Envelope *owner = NULL;
	Heapd__StatsReply *st;
	uint64_t v = UINT64_MAX;
	int fd = harness_control(hs_daemon.sock);

	if (fd < 0)
		return v;
	if (harness_stats(fd, &st, &owner) == 0)
		v = st->sweep_cycles;
	wire_free(owner);
	close(fd);
	return v;
}

int64_t hs_check(void)
{
	uint64_t n = 0;
	int fd = harness_control(hs_daemon.sock);
	if (fd < 0)
		return -1;
	int rc = harness_check(fd, &n);
	close(fd);
	return rc < 0 ? -1 : (int64_t)n;
}
