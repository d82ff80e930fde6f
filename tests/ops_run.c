// SPDX-License-Identifier: MIT
/*
 * ops_run.c - run a program with its output captured and a deadline.
 * See ops_run.h.
 */
#include "ops_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OPS_KILL_GRACE_MS 2000

void ops_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

long long ops_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t ops_count_lines(const char *s)
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

int ops_run(ops_run_t *r, int timeout_ms, const char *const argv[])
{
	int outp[2], errp[2];
	size_t outcap = 0, errcap = 0;

	memset(r, 0, sizeof(*r));
	if (pipe2(outp, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(errp, O_CLOEXEC) < 0) {
		int rc = -errno;
		close(outp[0]);
		close(outp[1]);
		return rc;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int rc = -errno;
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
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

	struct pollfd pfd[2] = { { .fd = outp[0], .events = POLLIN }, { .fd = errp[0], .events = POLLIN } };
	long long deadline = ops_now_ms() + timeout_ms;
	int open_fds = 2, signals = 0, st = 0, reaped = 0;
	for (;;) {
		if (ops_now_ms() >= deadline) {
			/* SIGTERM first, SIGKILL after the grace period, then stop waiting for output. */
			if (signals == 2)
				break;
			kill(pid, signals == 0 ? SIGTERM : SIGKILL);
			r->stopped = 1;
			signals++;
			deadline = ops_now_ms() + OPS_KILL_GRACE_MS;
		}
		if (open_fds == 0) {
			pid_t w = waitpid(pid, &st, WNOHANG);
			if (w == pid || (w < 0 && errno != EINTR)) {
				reaped = 1;
				break;
			}
			ops_sleep_ms(5);
			continue;
		}
		if (poll(pfd, 2, 50) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int rc = i == 0 ? drain(pfd[i].fd, &r->out, &r->outlen, &outcap)
			                : drain(pfd[i].fd, &r->err, &r->errlen, &errcap);
			if (rc <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
			}
		}
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
	if (!r->out)
		r->out = strdup("");
	if (!r->err)
		r->err = strdup("");
	return 0;
}

void ops_run_free(ops_run_t *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}
