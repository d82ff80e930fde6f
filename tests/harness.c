// SPDX-License-Identifier: MIT
/*
 * harness.c - start and stop real daemons for end-to-end tests, and talk to
 * them over control connections (the control module heapctl uses,
 * tools/heapctl/control.h). See harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "sock.h"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

void harness_init(harness_daemon_t *d)
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

int harness_connect_raw(const char *path)
{
	return sock_connect(path);
}

int harness_launch(harness_daemon_t *d)
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

int harness_start(harness_daemon_t *d)
{
	int rc = harness_launch(d);
	if (rc < 0)
		return rc;
	pid_t pid = d->pid;
	for (int waited = 0; waited < 10000; waited += 10) {
		int fd = harness_connect_raw(d->sock);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			d->pid = 0;
			return -ECHILD;
		}
		sleep_ms(10);
	}
	return -ETIMEDOUT;
}

int harness_stop(harness_daemon_t *d, int sig)
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

void harness_cleanup(harness_daemon_t *d)
{
	char cmd[256];
	if (d->pid > 0)
		harness_stop(d, SIGKILL);
	if (d->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "harness: cannot remove %s\n", d->dir);
	}
}

void harness_dump_log(const harness_daemon_t *d)
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

int harness_log_contains(const harness_daemon_t *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[1024];
	int found = 0;
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

int harness_wait_log(const harness_daemon_t *d, const char *needle, int timeout_ms)
{
	for (int waited = 0; waited <= timeout_ms; waited += 10) {
		if (harness_log_contains(d, needle))
			return 1;
		sleep_ms(10);
	}
	return 0;
}

int harness_call(int fd, Heapd__Envelope *req, Heapd__Envelope **reply)
{
	return wire_call(fd, req, reply, NULL);
}

int harness_control(const char *path)
{
	ctl_t c;
	int rc = ctl_open(&c, path, 0, NULL, 0);
	return rc < 0 ? rc : c.fd;
}

/* A request without fields on control connection fd; expect `want` back. */
static int simple_call(int fd, Heapd__Envelope__MsgCase msg, Heapd__Envelope__MsgCase want,
                       Heapd__Envelope **reply)
{
	char why[256];
	ctl_t c;
	ctl_adopt(&c, fd);
	int rc = ctl_simple(&c, msg, want, reply, why, sizeof(why));
	if (rc < 0)
		fprintf(stderr, "harness: %s\n", why);
	return rc;
}

int harness_stats(int fd, Heapd__StatsReply **stats, Heapd__Envelope **owner)
{
	int rc = simple_call(fd, HEAPD__ENVELOPE__MSG_STATS, HEAPD__ENVELOPE__MSG_STATS_REPLY, owner);
	*stats = rc == 0 ? (*owner)->stats_reply : NULL;
	return rc;
}

int harness_sweep(int fd)
{
	Heapd__Envelope *reply = NULL;
	int rc = simple_call(fd, HEAPD__ENVELOPE__MSG_SWEEP, HEAPD__ENVELOPE__MSG_OK, &reply);
	wire_free(reply);
	return rc;
}

int harness_check(int fd, uint64_t *nproblems)
{
	Heapd__Envelope *reply = NULL;
	int rc = simple_call(fd, HEAPD__ENVELOPE__MSG_CHECK, HEAPD__ENVELOPE__MSG_CHECK_REPLY, &reply);
	if (rc == 0) {
		*nproblems = reply->check_reply->nproblems;
		for (size_t i = 0; i < reply->check_reply->n_problems; i++)
			fprintf(stderr, "check: %s\n", reply->check_reply->problems[i]);
	}
	wire_free(reply);
	return rc;
}
