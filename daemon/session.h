// SPDX-License-Identifier: MIT
/*
 * session.h - one client connection: its identity, the Hello handshake, and
 * the dispatch of its requests.
 *
 * A session reads decoded frames (session_handle_frame) and appends reply
 * frames to its output buffer. It knows nothing of sockets: the server
 * feeds it, and a test or fuzz target can feed it raw frames directly. The
 * only socket-level act, passing the arena's descriptor with the Hello
 * reply, goes through the send_fd hook; without one, the frame is queued and
 * no descriptor passed.
 *
 * Every client error queues an Error reply, logs one line and makes
 * session_handle_frame return -1: the caller then closes the connection.
 * ENOMEM (arena full, quota) is the exception: an Error reply, and the
 * connection stays open.
 *
 * Threads: event-loop thread only.
 */
#ifndef HEAPD_DAEMON_SESSION_H
#define HEAPD_DAEMON_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct daemon;
struct evbuffer;

typedef struct session {
	struct daemon *d;
	struct session *next, *prev;  /* d->sessions */
	uint32_t id;                  /* for the log */
	pid_t pid;                    /* from SO_PEERCRED */
	uid_t uid;
	gid_t gid;
	int hello;                    /* Hello accepted */
	int control;                  /* heapctl: no slot */
	int failed;                   /* an error closed the session; ignore further input */
	uint32_t slot;                /* client slot, HEAPD_NIL without one */
	uint64_t requests;            /* requests served */
	uint64_t last_enomem_log;     /* rate limit for ENOMEM log lines */
	struct evbuffer *out;         /* reply frames go here */
	/* Send frame with fd as SCM_RIGHTS ahead of anything queued later. 0 or -errno. */
	int (*send_fd)(void *io, const uint8_t *frame, size_t len, int fd);
	void *io;
} session_t;

/* A new session for a peer; out receives its replies. NULL on allocation failure. */
session_t *session_new(struct daemon *d, pid_t pid, uid_t uid, gid_t gid, struct evbuffer *out);

/* Handle one frame's payload. 0: go on; -1: an error was replied, close the connection. */
int session_handle_frame(session_t *s, const uint8_t *payload, size_t len);

/* A protocol error found outside a payload (framing): reply Error, log. Always -1. */
int session_fail(session_t *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * End a session. keep_slot = 0 (the client went away): every span it holds
 * goes back to central and its slot is freed. keep_slot = 1 (the daemon is
 * shutting down): the slot and spans stay, for the next daemon to hold.
 */
void session_free(session_t *s, int keep_slot);

#endif
