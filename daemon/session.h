// SPDX-License-Identifier: MIT
/*
 * session.h - one client connection: its identity, the Hello handshake, and
 * the dispatch of its requests to the daemon's policy (daemon.h).
 *
 * A session reads decoded frames (session_handle_frame) and appends reply
 * frames to its output buffer. It knows nothing of sockets: the server
 * feeds it, and a test or fuzz target can feed it raw frames directly. The
 * server's hooks do what needs the socket: pass the arena's descriptors with
 * the Hello reply (send_fds), read on after a reply that came later
 * (resume), and close a connection heapd has given up (end).
 *
 * Every reply repeats its request's seq. Every client error queues an Error
 * reply with `fatal` set, logs one line and makes session_handle_frame
 * return -1: the caller then closes the connection. ENOMEM and EDQUOT (the
 * arena is full, a quota is reached) are not client errors: an Error reply,
 * and the connection stays. A LargeFree is never answered: a stale one is
 * ignored. Ending a session never moves its slot's spans: the slot is held
 * for the process (daemon.h).
 *
 * Root changes (RootSet, RootCas) need a client slot; a refused one (a bad
 * name or object, a cas that lost, a full directory, a uid's limit) is an
 * Error the connection survives, with a log line at most once a second.
 * Roots, the listing, is answered in pieces of SESSION_ROOTS_PER_REPLY.
 *
 * Control requests that cost the loop wait for their reply: Sweep and
 * Scavenge run on the sweeper thread; Check, Stats, Clients that counts
 * live bytes per client, and a new Profile snapshot at most once per
 * SESSION_CONTROL_INTERVAL_NS each; requests that wait together share one
 * run. The further pages of a profile come from the connection's snapshot.
 * While a request waits, the session reads nothing further.
 *
 * Threads: event-loop thread only.
 */
#ifndef HEAPD_DAEMON_SESSION_H
#define HEAPD_DAEMON_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SESSION_CONTROL_INTERVAL_NS 100000000ULL /* 100 ms between runs of each expensive request */
#define SESSION_ROOTS_PER_REPLY 256u /* names in one Roots reply */

struct daemon;
struct evbuffer;

/* What a session's request is waiting for. */
enum {
	SESSION_WAIT_NONE = 0,
	SESSION_WAIT_SWEEP,
	SESSION_WAIT_SCAVENGE,
	SESSION_WAIT_CHECK,
	SESSION_WAIT_STATS,
	SESSION_WAIT_PROFILE,   /* a new heap-profile snapshot */
	SESSION_WAIT_CLIENTS,   /* the client list with the live bytes each allocated */
};

typedef struct session {
	struct daemon *d;
	struct session *next, *prev;  /* d->sessions */
	uint32_t id;                  /* for the log */
	pid_t pid;                    /* from SO_PEERCRED */
	uid_t uid;
	gid_t gid;
	int sock;                     /* the connection (for SO_PEERPIDFD), -1 if none */
	int hello;                    /* Hello accepted */
	int control;                  /* heapctl: no slot */
	int failed;                   /* an error closed the session; ignore further input */
	uint32_t slot;                /* client slot, HEAPD_NIL without one */
	uint64_t requests;            /* requests served */
	uint64_t seq;                 /* seq of the request being answered */
	uint64_t last_enomem_log;     /* rate limit for ENOMEM log lines */
	uint64_t last_ignored_log;    /* rate limit for ignored LargeFree lines */
	int wait;                     /* SESSION_WAIT_*: a reply that comes later */
	uint64_t wait_ticket;
	uint64_t wait_seq;
	struct evbuffer *out;         /* reply frames go here */
	struct profile_snap *prof;    /* the heap-profile snapshot being paged out, NULL if none */
	/* Send frame with fds[0..n) as SCM_RIGHTS ahead of anything queued later. 0 or -errno. */
	int (*send_fds)(void *io, const uint8_t *frame, size_t len, const int *fds, int n);
	void (*resume)(void *io);     /* a reply that waited is queued: send it and read on */
	void (*end)(void *io);        /* heapd gave the connection up: close it */
	void *io;
} session_t;

/* A new session for a peer; out receives its replies. NULL on allocation failure. */
session_t *session_new(struct daemon *d, int sock, pid_t pid, uid_t uid, gid_t gid,
                       struct evbuffer *out);

/* Handle one frame's payload. 0: go on; -1: an error was replied, close the connection. */
int session_handle_frame(session_t *s, const uint8_t *payload, size_t len);

/* A protocol error found outside a payload (framing): reply Error, log. Always -1. */
int session_fail(session_t *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * heapd gives this session up (its process re-adopted the slot on another
 * connection, or has exited): it has no slot any more, reads nothing, and
 * is closed through the end hook.
 */
void session_orphan(session_t *s);

/* Answer every waiting request that can be answered now. Returns how many still wait. */
uint32_t session_poll_waiting(struct daemon *d);

/* End a session. Its slot, if any, is held for its process (daemon_detach). */
void session_free(session_t *s);

#endif
