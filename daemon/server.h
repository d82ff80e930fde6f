// SPDX-License-Identifier: MIT
/*
 * server.h - the event loop: the listening Unix socket, connections with
 * their framing, signals and the housekeeping timer.
 *
 * Each connection is a socket with a read event, an input buffer and an
 * output buffer, carrying one session (session.h). Peers are checked with SO_PEERCRED before anything is read. Input frames are
 * capped at HEAPD_MAX_FRAME; output is capped at SERVER_OUTPUT_LIMIT, past
 * which a client that does not read its replies is dropped, so a stuck
 * client costs bounded memory and delays nobody.
 *
 * Threads: everything here runs on the event-loop thread.
 */
#ifndef HEAPD_DAEMON_SERVER_H
#define HEAPD_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon.h"

#define SERVER_OUTPUT_LIMIT (4u << 20)
#define SERVER_CONTROL_CONNS 64u /* connections beyond --max-clients, for heapctl */

struct event_base;
struct evconnlistener;
struct event;

typedef struct server {
	daemon_t *d;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *sigterm, *sigint, *tick, *relisten;
	int listen_fd;           /* -1 until server_listen */
	int bound;               /* we bound path (and unlink it at exit), not socket activation */
	char path[108];
	uint32_t nconns;
	uint32_t max_conns;
	struct conn *conns;      /* every open connection */
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
