// SPDX-License-Identifier: MIT
/*
 * child.c - children that report why they failed, bounded waits on them, a
 * child with a chosen pid, death tests, and programs run with their output
 * captured. See child.h.
 */
#include "harness/child.h"

#include <check.h>
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/proc.h"
#include "harness/util.h"

hchild_sync_t *hchild_sync;

void hchild_sync_init(void)
{
	if (!hchild_sync)
		hchild_sync = hutil_shared(sizeof(*hchild_sync));
	memset(hchild_sync, 0, sizeof(*hchild_sync));
}

/* Record msg into why and *failed unless a failure is there already; print it; _exit(1). */
static _Noreturn void record_failure(char *why, size_t len, _Atomic int *failed, const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	if (atomic_exchange(failed, 1) == 0)
		snprintf(why, len, "%s", msg);
	_exit(1);
}

void hchild_fail(const char *fmt, ...)
{
	static hchild_sync_t unshared; /* before hchild_sync_init: printed, not recorded */
	hchild_sync_t *sync = hchild_sync ? hchild_sync : &unshared;
	char msg[sizeof(sync->why)];
	va_list ap;
	int n = snprintf(msg, sizeof(msg), "pid %d: ", (int)getpid());

	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	record_failure(sync->why, sizeof(sync->why), &sync->failed, msg);
}

void hchild_fail_into(char *why, size_t len, _Atomic int *failed, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	record_failure(why, len, failed, msg);
}

pid_t hchild_spawn(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

#define PID_TRIES 20
#define WRONG_PID 99 /* exit status of a child that did not get the pid asked for */

pid_t hchild_spawn_as_pid(pid_t want, int (*fn)(void *), void *arg)
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
	for (int i = 0; i < PID_TRIES; i++) {
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
			_exit(getpid() == want ? fn(arg) : WRONG_PID);
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

int hchild_wait(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

static const char *recorded(void)
{
	return hchild_sync && hchild_sync->failed ? hchild_sync->why : "no failure recorded";
}

void hchild_expect_ok(pid_t pid, const char *what)
{
	int st = hchild_wait(pid);
	ck_assert_msg(st == 0, "%s: %s %d; %s", what, st > 128 ? "killed by signal" : "exit status",
	              st > 128 ? st - 128 : st, recorded());
}

int hchild_wait_at_least(_Atomic int64_t *v, int64_t want, int timeout_ms)
{
	return hutil_wait_until(atomic_load(v) >= want, timeout_ms);
}

/* pid has ended (how in *info); it is left to be waited for. */
static int ended(pid_t pid, siginfo_t *info)
{
	memset(info, 0, sizeof(*info));
	int rc = waitid(P_PID, (id_t)pid, info, WEXITED | WNOHANG | WNOWAIT);
	return rc == 0 && info->si_pid == pid;
}

void hchild_expect_step(_Atomic int64_t *v, int64_t want, int timeout_ms, pid_t pid,
                        const char *what)
{
	siginfo_t info;
	int gone = 0;
	int reached = hutil_wait_until(atomic_load(v) >= want || (gone = ended(pid, &info)), timeout_ms);
	if (gone && atomic_load(v) < want)
		ck_abort_msg("%s: %s %d before it got there; %s", what,
		             info.si_code == CLD_EXITED ? "exit status" : "killed by signal",
		             info.si_status, recorded());
	ck_assert_msg(reached, "%s: no progress in %d ms; %s", what, timeout_ms, recorded());
}

void hchild_expect_abort(void (*fn)(void *), void *arg, const char *needle)
{
	char buf[4096];
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
	hutil_read_all(fds[0], buf, sizeof(buf));
	close(fds[0]);
	int st = hchild_wait(pid);
	ck_assert_msg(st == 128 + SIGABRT, "child ended with status %d, not SIGABRT; stderr: %s", st, buf);
	ck_assert_msg(strstr(buf, needle) != NULL, "stderr \"%s\" does not contain \"%s\"", buf, needle);
}

char hchild_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* 1 if a process forked now starts in a tick after start_time. */
static int new_tick(uint64_t start_time)
{
	uint64_t st = 0;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid < 0)
		return 0;
	int rc = proc_start_time(pid, &st); /* a zombie keeps its /proc entry until reaped */
	waitpid(pid, NULL, 0);
	return rc == 0 && st > start_time;
}

int hchild_wait_new_tick(pid_t pid, int timeout_ms)
{
	uint64_t born;
	if (proc_start_time(pid, &born) < 0)
		return 0;
	return hutil_wait_until(new_tick(born), timeout_ms);
}

int hchild_become_nobody(void)
{
	return setgroups(0, NULL) == 0 && setgid(HCHILD_NOBODY) == 0 && setuid(HCHILD_NOBODY) == 0
	               ? 0
	               : -1;
}

void hchild_thread_done(atomic_uint *left)
{
	if (atomic_fetch_sub(left, 1) == 1)
		_exit(0);
}

/* ---- programs ---- */

#define KILL_GRACE_MS 2000

size_t hchild_count_lines(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		if (*p == '\n' || p[1] == '\0')
			n++;
	return n;
}

/* Append what fd has to *buf; 0 at end of file, 1 if more may come, -errno. */
static int drain(int fd, char **buf, size_t *len, size_t *cap)
{
	char chunk[4096];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -errno;
	if (n == 0)
		return 0;
	if (*len + (size_t)n + 1 > *cap) {
		size_t ncap = (*cap ? *cap * 2 : 8192) + (size_t)n;
		char *nb = realloc(*buf, ncap);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, chunk, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
	return 1;
}

/* pid has exited and is reaped (its wait status in *st), or cannot be waited for. */
static int exited(pid_t pid, int *st)
{
	pid_t w = waitpid(pid, st, WNOHANG);
	return w == pid || (w < 0 && errno != EINTR);
}

int hchild_run_watch(hchild_run_t *r, int timeout_ms, const char *const argv[],
                     int (*watch)(const hchild_run_t *r, void *arg), void *arg)
{
	int outp[2], errp[2];
	size_t outcap = 0, errcap = 0;

	memset(r, 0, sizeof(*r));
	r->out = strdup("");
	r->err = strdup("");
	if (!r->out || !r->err || pipe2(outp, O_CLOEXEC) < 0) {
		hchild_run_free(r);
		return -ENOMEM;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		int rc = -errno;
		close(outp[0]);
		close(outp[1]);
		hchild_run_free(r);
		return rc;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int rc = -errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		hchild_run_free(r);
		return rc;
	}
	if (pid == 0) {
		dup2(outp[1], STDOUT_FILENO);
		dup2(errp[1], STDERR_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(outp[1]);
	close(errp[1]);

	struct pollfd pfd[2] = { { .fd = outp[0], .events = POLLIN }, { .fd = errp[0],
	                                                               .events = POLLIN } };
	uint64_t deadline = heapd_now_ms() + (uint64_t)timeout_ms;
	int open_fds = 2, signals = 0, st = 0, reaped = 0, stop = 0;
	for (;;) {
		if (stop || heapd_now_ms() >= deadline) {
			/* SIGTERM first, SIGKILL after the grace period, then stop waiting for output. */
			if (signals == 2)
				break;
			kill(pid, signals == 0 ? SIGTERM : SIGKILL);
			r->stopped = 1;
			signals++;
			stop = 0;
			deadline = heapd_now_ms() + KILL_GRACE_MS;
		}
		if (open_fds == 0) {
			/* the output is closed: wait for the exit, to the deadline */
			uint64_t now = heapd_now_ms(), left = deadline > now ? deadline - now : 0;
			if (hutil_wait_until(exited(pid, &st), left)) {
				reaped = 1;
				break;
			}
			continue;
		}
		if (poll(pfd, 2, 50) < 0 && errno != EINTR)
			break;
		int more = 0;
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int rc = i == 0 ? drain(pfd[i].fd, &r->out, &r->outlen, &outcap)
			                : drain(pfd[i].fd, &r->err, &r->errlen, &errcap);
			if (rc <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
			} else {
				more = 1;
			}
		}
		if (more && watch && signals == 0 && watch(r, arg) == HCHILD_RUN_STOP)
			stop = 1;
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	if (!reaped) {
		/* The deadline ran out with output still open: make sure it is gone, then reap it. */
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

int hchild_run(hchild_run_t *r, int timeout_ms, const char *const argv[])
{
	return hchild_run_watch(r, timeout_ms, argv, NULL, NULL);
}

void hchild_run_heapctl(hchild_run_t *r, int timeout_ms, ...)
{
	const char *argv[16] = { getenv("HEAPCTL_BIN") };
	size_t n = 1;
	va_list ap;

	ck_assert_msg(argv[0] != NULL, "HEAPCTL_BIN is not set");
	va_start(ap, timeout_ms);
	for (const char *a; n < 15 && (a = va_arg(ap, const char *)) != NULL;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	int rc = hchild_run(r, timeout_ms, argv);
	ck_assert_msg(rc == 0, "cannot run %s: %s", argv[0], strerror(-rc));
}

void hchild_run_free(hchild_run_t *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}
