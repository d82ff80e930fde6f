// SPDX-License-Identifier: MIT
/*
 * server.h - the event loop: the listening Unix socket, connections with
 * their framing, signals, the watches on client processes, and the
 * housekeeping timer.
 *
 * Each connection is a socket with a read event, an input buffer and an
 * output buffer, carrying one session (session.h). Peers are checked with
 * SO_PEERCRED before anything is read. Input frames are capped at
 * HEAPD_MAX_FRAME; output is capped at SERVER_OUTPUT_LIMIT, past which a
 * client that does not read its replies is dropped, so a stuck client costs
 * bounded memory and delays nobody. A connection that has not said Hello
 * within --hello-timeout is closed. One uid may have at most
 * --max-connections-per-uid connections; beyond the global limit, only
 * root and heapd's own user get in (SERVER_ADMIN_CONNS more), so heapctl
 * works when everyone else has filled the table.
 *
 * Each client slot's process is watched through its pidfd: when the whole
 * process has exited, its slot is released (daemon_reap).
 *
 * Threads: everything here runs on the event-loop thread; the sweeper
 * thread only writes to the job eventfd.
 */
#ifndef HEAPD_DAEMON_SERVER_H
#define HEAPD_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"

#define SERVER_OUTPUT_LIMIT (4u << 20)
#define SERVER_CONTROL_CONNS 64u /* connections beyond --max-clients (any peer may use them) */
#define SERVER_ADMIN_CONNS 16u   /* beyond those, for root and heapd's own user */
#define SERVER_POLL_MS 20        /* how often requests waiting for a Check or Stats run are looked at */

struct event_base;
struct evconnlistener;
struct event;

typedef struct server_uid {
	uid_t uid;
	uint32_t conns;
} server_uid_t;

typedef struct server {
	daemon_t *d;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *sigterm, *sigint, *tick, *relisten;
	struct event *jobs;      /* the sweeper finished a job (jobfd) */
	struct event *poll;      /* requests wait for a Check or Stats run */
	int jobfd;               /* eventfd the sweeper writes to, -1 if none */
	server_uid_t *uids;      /* connections per uid (few uids: a small array) */
	uint32_t nuids, capuids;
	int listen_fd;           /* -1 until server_listen */
	int bound;               /* we bound path (and unlink it at exit), not socket activation */
	char path[108];
	uint32_t nconns;
	uint32_t max_conns;
	struct conn *conns;      /* every open connection */
	uint64_t guard_repairs;  /* truncations of the data file logged so far */
	int stop_signal;         /* the signal that stopped the loop, 0 if none */
} server_t;

/*
 * Get a listening socket: the one the service manager passed, else bind
 * path (mode 0660), refusing if a live daemon answers there and removing a
 * stale socket file. 0 or -errno with a sentence in err.
 */
int server_listen(server_t *srv, daemon_t *d, const char *path, char *err, size_t errlen);

/* Serve until SIGTERM or SIGINT. 0 or -errno. */
int server_run(server_t *srv);

/* Close every connection (client slots are kept for the next daemon) and the socket. */
void server_close(server_t *srv);

#endif
