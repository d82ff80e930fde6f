// SPDX-License-Identifier: MIT
/*
 * daemon.h - the daemon's whole state in one struct, and its policy: who
 * gets a slot, which spans and large objects a client may have (quota,
 * reclaim before growth), and when a slot's spans go back.
 *
 * A daemon_t owns the arena mapping, the page heap, the quota books, the
 * central lists, the client table and the sweeper. It does not own a
 * socket or an event loop (server.c does), so a test or a fuzz target can
 * open one on a temporary arena and drive sessions directly
 * (session_handle_frame). Sessions parse requests and call the functions
 * here; every decision is made here, once.
 *
 * The ownership rule: a slot's spans move only when its process gives them
 * back (a release list, Bye) or when the whole process has exited
 * (daemon_reap). Ending a connection, for any reason, never moves them.
 *
 * Threads: the event-loop thread runs every session and everything here
 * except the sweeper thread's cycles and jobs. Lock order, outermost first:
 *   sweeper cycle_lock -> class locks (ascending) -> heap lock -> quota lock.
 * The client table, the slot books and the session list belong to the
 * event-loop thread and take no lock.
 */
#ifndef HEAPD_DAEMON_DAEMON_H
#define HEAPD_DAEMON_DAEMON_H

#include <stdint.h>
#include <sys/types.h>

#include "central.h"
#include "check.h"
#include "clients.h"
#include "config.h"
#include "pageheap.h"
#include "proc.h"
#include "profile.h"
#include "quota.h"
#include "rootdir.h"
#include "segment.h"
#include "sweeper.h"

struct session;

typedef struct daemon {
	config_t cfg;                /* options in force */
	segment_t seg;               /* the arena, mapped read-write */
	pageheap_t heap;
	quota_t quota;
	central_t central;
	clients_t clients;
	sweeper_t sweeper;
	profile_t profile;           /* heap-profile snapshots (event-loop thread) */
	rootdir_t roots;             /* the directory of named roots (event-loop thread) */
	uint64_t start_ns;           /* CLOCK_MONOTONIC at start, for uptime */
	int created;                 /* the arena was laid out by this start */
	int opened;                  /* daemon_open succeeded */
	/* event-loop thread only */
	struct session *sessions;    /* every connected session */
	uint32_t nsessions;          /* connections, control ones included */
	uint32_t nclients;           /* sessions that hold a client slot */
	uint32_t next_session_id;
	uint64_t last_check_ns;      /* when the last Check ran (session.c rate limit) */
	uint64_t root_changes;       /* root binds and CASes seen (debug checks, session.c) */
	uint64_t last_stats_ns;      /* and the last Stats */
	uint64_t last_profile_ns;    /* and the last Profile snapshot */
	uint64_t last_clients_ns;    /* and the last Clients (it counts live bytes) */
	/* The server's hooks: watch a slot's process, and stop watching (NULL: none). */
	void *(*watch_proc)(void *arg, uint32_t slot, int pidfd);
	void (*unwatch_proc)(void *arg, void *watch);
	void *watch_arg;
} daemon_t;

/*
 * Open the arena (creating it, and locking it against a second daemon), build
 * the page heap, and recover central lists, quota books and client slots
 * from the span table. err gets a sentence on failure. Returns 0 or -errno.
 */
int daemon_open(daemon_t *d, const config_t *cfg, char *err, size_t errlen);

/* Stop the sweeper, mark the arena cleanly shut down if clean, unmap. */
void daemon_close(daemon_t *d, int clean);

/*
 * A client says Hello on session s: give process p (of uid) its slot.
 *   - prev_slot (slot + 1) names a slot of this very process (same pid,
 *     start time and uid): re-adopt it. An older session still bound to it
 *     is orphaned (session_orphan: the process has given that connection
 *     up), spans the slot owns that held[0..nheld) does not list are taken
 *     back, and its pending large object is kept if large_received names it.
 *   - no prev_slot, and the process has a slot with no connection: that
 *     slot, emptied (the process says it holds nothing: a new image after
 *     exec). With a connection: -EBUSY, one connected slot per process.
 *   - otherwise a new slot (a slot the process had stays held until it
 *     exits, so nothing it may still use goes to anyone else).
 * p's pidfd goes to the slot. 0 with *slot, or -EBUSY, -EUSERS (no slot for
 * it), -ENOMEM, with a reason in *why.
 */
int daemon_attach(daemon_t *d, struct session *s, proc_t *p, uid_t uid, uint32_t prev_slot,
                  const uint32_t *held, size_t nheld, uint32_t large_received, uint32_t *slot,
                  const char **why);

/*
 * Spans handed back by slot (a Refill's or LargeAlloc's release list). Each
 * must be a small span the slot owns; the first that is not stops the list
 * with -EINVAL or -EPERM and a reason (the spans before it are back).
 */
int daemon_release(daemon_t *d, uint32_t slot, const uint32_t *spans, size_t n, uint32_t *bad,
                   const char **why);

/*
 * Up to count swept spans of sizeclass for slot, into spans[] (needzero[]
 * says whether free slots may hold old data). Fewer if the quota or the
 * arena runs out: *n is how many, and with none the return is -EDQUOT or
 * -ENOMEM with a reason.
 */
int daemon_grant_spans(daemon_t *d, uint32_t slot, uint32_t sizeclass, uint32_t count,
                       uint32_t *spans, int *needzero, uint32_t *n, char *why, size_t whylen);

/*
 * Spans of this many times an extra span's pages must stay within slot's
 * quota, and free in the arena, for daemon_grant_extra to give one.
 */
#define DAEMON_EXTRA_ROOM 16u

/*
 * One span of sizeclass for slot that nobody needs yet (a Refill's other
 * classes, Refill.also): only from the central list or free pages, never
 * by a reclaim, and never within DAEMON_EXTRA_ROOM spans of slot's quota.
 * 0, or -EDQUOT or -ENOMEM without a reason: the caller goes on without it.
 */
int daemon_grant_extra(daemon_t *d, uint32_t slot, uint32_t sizeclass, uint32_t *span,
                       int *needzero);

/*
 * A large object for slot. -EINVAL for a size or alignment no arena can
 * hold, -EDQUOT or -ENOMEM; a reason in why.
 */
int daemon_large_alloc(daemon_t *d, uint32_t slot, uint64_t size, uint64_t align, int zero,
                       uint32_t *span, int *zeroed, uint32_t *gen, char *why, size_t whylen);

/* A LargeFree: free the object if it is still that one and marked free. 0 or -ESTALE/-EPERM. */
int daemon_large_free(daemon_t *d, uint32_t span, uint32_t gen);

/* The client of slot has read its last reply: its pending large object is its own. */
void daemon_settle(daemon_t *d, uint32_t slot);

/* A connection bound to slot has ended; the slot is held for its process. */
void daemon_detach(daemon_t *d, uint32_t slot);

/* Bye: slot's process gives every span back; the slot stays held until it exits. */
void daemon_bye(daemon_t *d, uint32_t slot, sweep_result_t *res);

/*
 * Free the slots whose process has exited (all of them, or just slot if it
 * is not HEAPD_NIL): their spans go back to central, their charges stay
 * with the uid. A session still bound to one is orphaned. Returns how many.
 */
uint32_t daemon_reap(daemon_t *d, uint32_t slot);

/* Watch the process of every slot in use (the server's hooks are set), or stop watching. */
void daemon_watch_slots(daemon_t *d);
void daemon_unwatch_slots(daemon_t *d);

/* Invariant check of the segment, the page heap, central and the client table. */
size_t daemon_check(daemon_t *d, check_report_t *report);

/*
 * Debug builds (HEAPD_DEBUG): run daemon_check after a mutation, named by
 * `after`, and abort with every problem logged if the daemon's own state is
 * wrong (problems in the bitmaps, which clients write, are logged only).
 * Release builds: nothing.
 */
#ifdef HEAPD_DEBUG
void daemon_debug_check(daemon_t *d, const char *after);
#else
static inline void daemon_debug_check(daemon_t *d, const char *after)
{
	(void)d;
	(void)after;
}
#endif

#endif
