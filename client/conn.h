// SPDX-License-Identifier: MIT
/*
 * conn.h - the process's one connection to heapd and its view of the arena.
 *
 * conn_g is the process state shared by every thread:
 *   - the connection (socket, slot, seq), guarded by conn_g.lock, which
 *     only slow paths take: requests, connecting, the cache registry;
 *   - the arena mapping (conn_g.seg), made once by the first connection and
 *     kept for the life of the process, so pointers stay valid across
 *     disconnects and daemon restarts. Every path reads it without a lock.
 *
 * Entry points: conn_init (fork handlers), conn_connect,
 * conn_disconnect_locked, conn_call_locked (one request and its reply,
 * reconnecting with backoff when the connection broke) and conn_large_free
 * (fire-and-forget).
 */
#ifndef HEAPD_CLIENT_CONN_H
#define HEAPD_CLIENT_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "segment.h"
#include "wire.h"

#define CONN_BACKOFF_MIN_MS 5
#define CONN_BACKOFF_MAX_MS 250
#define CONN_RECONNECT_TIMEOUT_MS 10000 /* default of $HEAPD_RECONNECT_TIMEOUT_MS */
/*
 * How long a request polls for its reply before the thread sleeps: a
 * Refill's round trip is about 20 us, and a reply that finds the thread
 * still running saves waking its CPU (wire.h).
 */
#define CONN_REPLY_SPIN_US 50

/* conn_call_locked flags. */
enum {
	CONN_NO_CONNECT = 1, /* fail with -ENOTCONN rather than connect or reconnect */
};

typedef struct conn_state {
	pthread_mutex_t lock;
	pthread_t holder;          /* the thread holding lock, for the _locked asserts */
	int sock;                  /* -1 when not connected; lock */
	_Atomic int connected;     /* sock >= 0, for readers without the lock; written under lock */
	int have_slot;             /* slot names a slot of ours the daemon holds for us; lock */
	uint32_t slot;             /* our slot in the client table; lock */
	uint64_t seq;              /* seq of the last request sent; lock */
	_Atomic uint32_t flags_slot; /* slot whose flags the slow path polls, UINT32_MAX: none */
	_Atomic uint64_t epoch;    /* bumped whenever cached spans stop being ours; written under lock */
	_Atomic uint32_t large_received; /* span + 1 of the last LargeAlloc reply, 0 once that
	                                  * object is freed here; named in a reconnect's Hello */
	char path[108];            /* socket path of the last connect; lock */

	/* The arena. Mapped once; never unmapped while the process may hold pointers. */
	_Atomic int mapped;        /* seg is valid; set under lock after the mapping is complete */
	segment_t seg;             /* written under lock before mapped is set, then read-only */
	uint64_t arena_id;         /* the mapped arena's id; lock */

	/* Counters for hc_stats; lock. */
	uint64_t requests, refills, large_allocs, reconnects;
} conn_state_t;

extern conn_state_t conn_g;

/*
 * Connect (path NULL: $HEAPD_SOCKET or the default) and map the arena if not
 * yet mapped. A no-op when connected. 0 or -errno. Takes the lock.
 */
int conn_connect(const char *path);

/* Connect if not connected, with the lock held. 0 or -errno. */
int conn_connect_locked(const char *path);

/* Close the connection and forget the slot. The caller released the spans. */
void conn_disconnect_locked(void);

/*
 * Send req (with the next seq) and wait for its reply, connecting first if
 * needed. A connection that breaks (the daemon died or restarted), or
 * answers with another request's seq, is closed, re-established with
 * backoff, and req is sent again. Whenever it sends on a connection it made
 * itself, the release list of a Refill or LargeAlloc is dropped: the spans
 * named there were unlinked from the caches, so that connection's Hello did
 * not list them and the daemon took them back. A reply that is Error
 * becomes its -code; a fatal one closes the connection first (the next
 * request reconnects). On success *reply is the reply of the expected
 * kind; free it with wire_free. The caller holds the lock; while waiting
 * for a restarted daemon it is dropped between attempts (so that fork and
 * other threads carry on), so only the calling thread's own state may be
 * assumed unchanged across the call.
 */
int conn_call_locked(Heapd__Envelope *req, Heapd__Envelope__MsgCase want,
                     Heapd__Envelope **reply, int flags);

/*
 * Tell the daemon a large object's free bit is set (span of generation
 * gen), if connected; never blocks on a reconnect.
 */
void conn_large_free(uint32_t span, uint32_t gen);

/* hc_disconnect: give the slot up (Bye) if connected, and close the connection. */
void conn_bye_locked(void);

/* The flags heapd raised in our slot (HEAPD_CLIENT_*), 0 when we have none. No lock. */
static inline uint32_t conn_slot_flags(void)
{
	uint32_t slot = atomic_load_explicit(&conn_g.flags_slot, memory_order_relaxed);
	if (slot == UINT32_MAX)
		return 0;
	return atomic_load_explicit(&conn_g.seg.clients[slot].flags, memory_order_relaxed);
}

static inline void conn_lock(void)
{
	pthread_mutex_lock(&conn_g.lock);
	conn_g.holder = pthread_self();
}

static inline void conn_unlock(void)
{
	conn_g.holder = 0;
	pthread_mutex_unlock(&conn_g.lock);
}

/* For asserts in *_locked functions. */
static inline int conn_held(void)
{
	return pthread_equal(conn_g.holder, pthread_self());
}

/*
 * Once per process: install the fork handlers (the lock is held across
 * fork; the child starts unconnected with empty caches).
 */
void conn_init(void);

#endif
