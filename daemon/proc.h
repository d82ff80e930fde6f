// SPDX-License-Identifier: MIT
/*
 * proc.h - client processes: who a peer is, and whether it still lives.
 *
 * A process is named by its pid and its start time (/proc/PID/stat field
 * 22), and, where pidfds live in pidfs (Linux 6.9), by its pidfd's inode
 * number, which no other process of this boot ever has. The start time
 * counts clock ticks, so without the inode a pid reused within the tick its
 * first process started in would pass for it. Its life is that of its
 * whole thread group: a pidfd becomes readable only when every thread has
 * exited, so a process whose main thread called pthread_exit while others
 * run is alive (its leader shows as a zombie in /proc: that is not read).
 * heapd takes the pidfd from the connection (SO_PEERPIDFD, Linux 6.5) where
 * the kernel has it, else from pidfd_open with a start-time check after it;
 * a kernel without pidfds (before 5.3) falls back to reading the start time
 * on every check, where a dead process counts as alive until its parent
 * reaps it.
 *
 * Entry points: proc_from_peer (a new connection), proc_open (a slot found
 * in the arena at recovery), proc_alive, proc_close, proc_start_time.
 */
#ifndef HEAPD_DAEMON_PROC_H
#define HEAPD_DAEMON_PROC_H

#include <stdint.h>
#include <sys/types.h>

typedef struct proc {
	pid_t pid;            /* 0: none */
	uint64_t start_time;
	uint64_t id;          /* the pidfd's pidfs inode number; 0: unknown (older kernels) */
	int pidfd;            /* readable once the whole thread group has exited; -1 without pidfds */
} proc_t;

#define PROC_NONE ((proc_t){ .pid = 0, .start_time = 0, .id = 0, .pidfd = -1 })

/* Start time of pid, in clock ticks since boot. 0 or -ESRCH. */
int proc_start_time(pid_t pid, uint64_t *start_time);

/* The process at the other end of connected socket sock, whose SO_PEERCRED pid is pid. 0 or -ESRCH. */
int proc_from_peer(int sock, pid_t pid, proc_t *p);

/*
 * The process pid if it still lives and is the one named by start_time and
 * id (0: unknown). 0, or -ESRCH if it is gone.
 */
int proc_open(pid_t pid, uint64_t start_time, uint64_t id, proc_t *p);

/* 1 if p is the process named by pid, start_time and id (0: unknown). */
static inline int proc_is(const proc_t *p, uint32_t pid, uint64_t start_time, uint64_t id)
{
	return pid != 0 && (uint32_t)p->pid == pid && p->start_time == start_time &&
	       (id == 0 || p->id == 0 || p->id == id);
}

/* 1 while the process lives. */
int proc_alive(const proc_t *p);

void proc_close(proc_t *p);

#endif
