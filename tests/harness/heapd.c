// SPDX-License-Identifier: MIT
/*
 * heapd.c - a real heapd per test on a temporary directory, its log, heapd
 * in the foreground, a stand-in for a daemon going away, and the default
 * daemon. See heapd.h.
 */
#include "harness/heapd.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/child.h"
#include "harness/util.h"
#include "sock.h"

#define HD_START_MS 10000

hd_t hd_default;

void hd_init(hd_t *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/heapd-test-XXXXXX");
	if (!mkdtemp(d->dir)) {
		perror("mkdtemp");
		abort();
	}
	snprintf(d->sock, sizeof(d->sock), "%s/sock", d->dir);
	snprintf(d->arena, sizeof(d->arena), "%s/arena", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/log", d->dir);
	d->size = "256M";
}

int hd_launch(hd_t *d)
{
	const char *bin = getenv("HEAPD_BIN");
	const char *argv[40];
	int n = 0;

	if (!bin)
		return -ENOENT;
	argv[n++] = bin;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--arena";
	argv[n++] = d->arena;
	argv[n++] = "--arena-size";
	argv[n++] = d->size;
	for (int i = 0; d->extra[i] && n < 38; i++)
		argv[n++] = d->extra[i];
	argv[n] = NULL;

	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* A test that fails skips its teardown; never leave the daemon behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			dup2(fd, STDOUT_FILENO);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	d->pid = pid;
	return 0;
}

/* The daemon answers on its socket (1), has exited (-1), or neither yet (0). */
static int answering(hd_t *d)
{
	int st, fd = sock_connect(d->sock);
	if (fd >= 0) {
		close(fd);
		return 1;
	}
	if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
		d->pid = 0;
		return -1;
	}
	return 0;
}

int hd_start(hd_t *d)
{
	int rc = hd_launch(d), state = 0;
	if (rc < 0)
		return rc;
	if (!hutil_wait_until((state = answering(d)) != 0, HD_START_MS))
		return -ETIMEDOUT;
	return state > 0 ? 0 : -ECHILD;
}

void hd_must_start(hd_t *d)
{
	int rc = hd_start(d);
	if (rc < 0) {
		/* Show why, and clean up here: a teardown does not run after a failed setup. */
		hd_dump_log(d);
		hd_cleanup(d);
		ck_abort_msg("heapd did not start: %s", strerror(-rc));
	}
}

int hd_stop(hd_t *d, int sig)
{
	int st = 0;
	if (d->pid <= 0)
		return -1;
	kill(d->pid, sig);
	while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
	return st;
}

int hd_alive(const hd_t *d)
{
	int st;
	return d->pid > 0 && waitpid(d->pid, &st, WNOHANG) == 0;
}

void hd_cleanup(hd_t *d)
{
	char cmd[256];
	if (d->pid > 0)
		hd_stop(d, SIGKILL);
	if (d->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: cannot remove %s\n", d->dir);
	}
}

const char *hd_arena_file(const hd_t *d, const char *name)
{
	static char path[4][256];
	static unsigned next;
	char *p = path[next++ % 4];
	snprintf(p, sizeof(path[0]), "%s/%s", d->arena, name);
	return p;
}

void hd_open_up(const hd_t *d)
{
	ck_assert_int_eq(chmod(d->dir, 0711), 0);
	ck_assert_int_eq(chmod(d->sock, 0666), 0);
}

void hd_dump_log(const hd_t *d)
{
	FILE *f = fopen(d->log, "r");
	char line[1024];
	if (!f) {
		fprintf(stderr, "(no daemon log at %s)\n", d->log);
		return;
	}
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

int hd_log_count(const hd_t *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[1024];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

int hd_log_contains(const hd_t *d, const char *needle)
{
	return hd_log_count(d, needle) > 0;
}

int hd_wait_log(const hd_t *d, const char *needle, int timeout_ms)
{
	return hutil_wait_until(hd_log_contains(d, needle), timeout_ms);
}

int hd_run_heapd(const char *const *args, char *buf, size_t buflen, int timeout_ms)
{
	const char *argv[64] = { getenv("HEAPD_BIN") };
	hchild_run_t r;
	int n = 1;

	if (!argv[0])
		return -ENOENT;
	for (int i = 0; args[i] && n < 63; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int rc = hchild_run(&r, timeout_ms, argv);
	if (rc < 0)
		return rc;
	snprintf(buf, buflen, "%s%s", r.out, r.err);
	rc = r.stopped ? -ETIMEDOUT : r.status;
	hchild_run_free(&r);
	return rc;
}

int hd_standin_listen(const hd_t *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(d->sock), sizeof(sa.sun_path));
	memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
	unlink(d->sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	return fd;
}

int hd_standin_drop(int lfd, int timeout_ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int n;
	while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return -ETIMEDOUT;
	int c = accept(lfd, NULL, NULL);
	if (c < 0)
		return -errno;
	close(c);
	return 0;
}

/* ---- the default daemon ---- */

/*
 * A failed assertion ends the test process without its teardown, and
 * Check kills the test's process group: a watcher in a session of its own
 * removes dir once the test process, and every child that shares the pipe
 * with it, has exited (the daemon dies with the test).
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

void hd_default_init(void)
{
	hd_init(&hd_default);
	remove_dir_when_done(hd_default.dir);
}

void hd_default_start(const char *size, ...)
{
	va_list ap;
	int n = 0;

	hd_default_init();
	if (size)
		hd_default.size = size;
	va_start(ap, size);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 15;)
		hd_default.extra[n++] = a;
	va_end(ap);
	hd_default.extra[n] = NULL;
	hd_must_start(&hd_default);
	setenv("HEAPD_SOCKET", hd_default.sock, 1);
}

void hd_default_restart(void)
{
	int rc = hd_start(&hd_default);
	if (rc < 0)
		hd_dump_log(&hd_default);
	ck_assert_msg(rc == 0, "heapd did not restart: %s", strerror(-rc));
}

void hd_default_stop(void)
{
	if (hd_default.dir[0] && hutil_env("HEAPD_TEST_DUMP_LOG", 0))
		hd_dump_log(&hd_default);
	hd_cleanup(&hd_default);
}
