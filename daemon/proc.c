// SPDX-License-Identifier: MIT
/*
 * proc.c - client processes by pidfd (see proc.h).
 *
 * The order that makes a pidfd name the right process: take the pidfd
 * first, then read the start time, then check that the pidfd is not yet
 * readable. If the pid was reused between the first two steps, the start
 * time is another process's and the pidfd's process is dead; either way
 * the third step or the start-time comparison tells.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
#define PROC_PIDFS_MAGIC 0x50494446u /* "PIDF": pidfds as pidfs inodes, one per process */

int proc_start_time(pid_t pid, uint64_t *start_time)
{
	char path[64], buf[1024];
	size_t n = 0;
	int fd;

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	/* One read, no stdio: every Hello comes here, and a new program waits for its reply. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	while (n < sizeof(buf) - 1) {
		ssize_t got = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields resume after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -ESRCH;
	/*
	 * Field 3 (state) is the first after ') '; each step lands on the space
	 * before the next field, so after the step for field 22 p is just before
	 * starttime (field 21, before it, is always 0).
	 */
	for (int field = 3; field <= 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -ESRCH;
	}
	unsigned long long st;
	if (sscanf(p, " %llu", &st) != 1)
		return -ESRCH;
	*start_time = st;
	return 0;
}

static int pidfd_open_pid(pid_t pid)
{
#ifdef SYS_pidfd_open
	long fd = syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : (int)fd;
#else
	(void)pid;
	return -ENOSYS;
#endif
}

static int pidfd_exited(int pidfd)
{
	struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
	int n;
	do
		n = poll(&pfd, 1, 0);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

/* The pidfd's inode number if pidfds are pidfs inodes (unique per process), else 0. */
static uint64_t pidfd_id(int pidfd)
{
	struct statfs fs;
	struct stat st;

	if (pidfd < 0 || fstatfs(pidfd, &fs) < 0 || (uint32_t)fs.f_type != PROC_PIDFS_MAGIC ||
	    fstat(pidfd, &st) < 0)
		return 0;
	return (uint64_t)st.st_ino;
}

/* Finish p from a pidfd (or none): the start time and the id, then the pidfd is checked. */
static int finish(proc_t *p, pid_t pid, int pidfd, const uint64_t *want_start, uint64_t want_id)
{
	uint64_t st, id = pidfd_id(pidfd);

	if (proc_start_time(pid, &st) < 0 || (want_start && st != *want_start) ||
	    (want_id && id && id != want_id) || (pidfd >= 0 && pidfd_exited(pidfd))) {
		if (pidfd >= 0)
			close(pidfd);
		return -ESRCH;
	}
	p->pid = pid;
	p->start_time = st;
	p->id = id;
	p->pidfd = pidfd;
	return 0;
}

int proc_from_peer(int sock, pid_t pid, proc_t *p)
{
	int pidfd = -1;
	socklen_t len = sizeof(pidfd);

	*p = PROC_NONE;
	if (pid <= 0)
		return -ESRCH;
	if (sock < 0 || getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
		pidfd = -1;
	if (pidfd < 0)
		pidfd = pidfd_open_pid(pid);
	if (pidfd < 0 && pidfd != -ENOSYS)
		return -ESRCH;
	return finish(p, pid, pidfd < 0 ? -1 : pidfd, NULL, 0);
}

int proc_open(pid_t pid, uint64_t start_time, uint64_t id, proc_t *p)
{
	*p = PROC_NONE;
	if (pid <= 0)
		return -ESRCH;
	int pidfd = pidfd_open_pid(pid);
	if (pidfd < 0 && pidfd != -ENOSYS)
		return -ESRCH;
	return finish(p, pid, pidfd < 0 ? -1 : pidfd, &start_time, id);
}

int proc_alive(const proc_t *p)
{
	uint64_t st;

	if (p->pid <= 0)
		return 0;
	if (p->pidfd >= 0)
		return !pidfd_exited(p->pidfd);
	return proc_start_time(p->pid, &st) == 0 && st == p->start_time;
}

void proc_close(proc_t *p)
{
	if (p->pidfd >= 0)
		close(p->pidfd);
	*p = PROC_NONE;
}
