// SPDX-License-Identifier: MIT
/*
 * ctl.h - what a test asks heapd over a control connection (the module
 * heapctl uses, tools/heapctl/control.h): stats, the client list, check,
 * sweep and scavenge, and waits on them.
 *
 * Each call opens a control connection to the socket at sock and closes it
 * again, so that it can be made from any process at any time; a failure is
 * said on stderr. hctl_open keeps one open, for tests of the connection
 * itself.
 */
#ifndef HEAPD_TESTS_HARNESS_CTL_H
#define HEAPD_TESTS_HARNESS_CTL_H

#include <stdint.h>
#include <sys/types.h>

#include "wire.h"

/* A control connection (a Hello with control set) to sock. The descriptor, or -errno. */
int hctl_open(const char *sock);

/* The Stats reply, or NULL if the call failed; wire_free *owner, its envelope, either way. */
Heapd__StatsReply *hctl_stats(const char *sock, Heapd__Envelope **owner);

/* Counters of a Stats reply; UINT64_MAX if the call failed. */
uint64_t hctl_objects_in_use(const char *sock);
uint64_t hctl_pages_in_use(const char *sock);
uint64_t hctl_sweep_cycles(const char *sock);

/* One client slot as the Clients reply lists it (control connections left out). */
typedef struct hctl_client {
	uint32_t pid, uid, slot;
	int connected;         /* 0: the slot is held for a process with no connection */
	uint64_t spans_cached;
	uint64_t pages_held;
} hctl_client_t;

/* The client slots: at most max into out; how many there are, or -errno. */
int hctl_clients(const char *sock, hctl_client_t *out, int max);

/* Spans cached by the slots of pid (0: of every client); UINT64_MAX if the call failed. */
uint64_t hctl_client_spans(const char *sock, pid_t pid);

/* The slot listed for pid (*connected: whether it has a connection, if not NULL); -1 if none. */
int hctl_slot_of(const char *sock, pid_t pid, int *connected);

/* Wait (timeout_ms at most) until no slot of pid is listed as connected. 1 if so. */
int hctl_wait_unconnected(const char *sock, pid_t pid, int timeout_ms);

/* Wait (timeout_ms at most) until stats show `clients` clients. 1 if so. */
int hctl_wait_clients(const char *sock, uint32_t clients, int timeout_ms);

/* The problems heapd's check finds (each printed on stderr), or -1 if the call failed. */
int64_t hctl_check(const char *sock);

/*
 * hctl_check, and in *ndata how many of the problems are in the data
 * (bitmaps, profile records, a root's object not allocated), which clients
 * write: the reply's count (check.h, ndata).
 */
int64_t hctl_check_data(const char *sock, int64_t *ndata);

/* A sweep cycle, or a scavenge, done before the reply. 0 or -errno. */
int hctl_sweep(const char *sock);
int hctl_scavenge(const char *sock);

/* Sweep until no object and no page is in use, at most max_sweeps times. 1 if it got there. */
int hctl_settle(const char *sock, int max_sweeps);

#endif
