// SPDX-License-Identifier: MIT
/*
 * transport.h - the client's one connection to heapd: frames on a Unix
 * socket, each request's seq checked against its reply, and reconnecting.
 *
 * Above request.h (which builds what goes out) and proc.h (the slot and
 * the mapping a Hello sets up), below the caches. Every function here runs
 * under proc_g.lock, except transport_connected.
 *
 * Connecting (transport_connect_locked): open the socket, say Hello
 * (request_hello), receive the arena's two descriptors with the reply and
 * hand them to proc_adopt_arena_locked. When no daemon serves the socket,
 * the first connection fails at once; when one accepts it and goes away
 * during the Hello (it is restarting), the transport waits for it as a
 * reconnect does.
 *
 * Reconnecting: when a request finds the connection broken (the daemon
 * died, restarted, or closed it after a fatal Error), the transport
 * reconnects with exponential backoff (TRANSPORT_BACKOFF_MIN_MS doubling to
 * _MAX_MS, for at most $HEAPD_RECONNECT_TIMEOUT_MS, default 10 s; then
 * -ECONNREFUSED), naming our slot so that the daemon re-adopts it, and sends
 * the request again (request_on_new_connection first). The lock is dropped
 * while it sleeps between attempts, so that fork() (whose prepare handler
 * takes it) and other threads are not held up; only the calling thread's
 * own state may be assumed unchanged across a call that reconnects.
 *
 * Replies: a reply whose seq is not its request's (a stale one) breaks the
 * connection as an EOF would; an Error with `fatal` set means the daemon
 * closes the connection after it, so the transport closes its end too, and
 * the next request reconnects. The daemon keeps our slot and spans either
 * way.
 */
#ifndef HEAPD_CLIENT_TRANSPORT_H
#define HEAPD_CLIENT_TRANSPORT_H

#include <stdatomic.h>

#include "request.h"
#include "wire.h"

#define TRANSPORT_BACKOFF_MIN_MS 5
#define TRANSPORT_BACKOFF_MAX_MS 250
#define TRANSPORT_RECONNECT_TIMEOUT_MS 10000 /* default of $HEAPD_RECONNECT_TIMEOUT_MS */
/*
 * How long a request polls for its reply before the thread sleeps: a
 * Refill's round trip is about 20 us, and a reply that finds the thread
 * still running saves waking its CPU (wire.h).
 */
#define TRANSPORT_REPLY_SPIN_US 50

/* transport_call_locked flags. */
enum {
	TRANSPORT_NO_CONNECT = 1, /* fail with -ENOTCONN rather than connect or reconnect */
};

/*
 * Connect (path NULL: $HEAPD_SOCKET or the default) if not connected, and
 * map the arena if not mapped yet. 0 or -errno.
 */
int transport_connect_locked(const char *path);

/*
 * Send r and wait for its reply, connecting first if needed (see the top of
 * the file). 0 with *reply, which is of the kind r wants (wire_free it), or
 * -errno (an Error's code). r must have no reply (a LargeFree): use
 * transport_send_locked.
 */
int transport_call_locked(request_t *r, Heapd__Envelope **reply, int flags);

/*
 * Make sure the arena is mapped, connecting (default socket) if this process
 * never did. No lock held; takes proc_g.lock only to connect. 0 or -errno.
 */
int transport_ensure_mapped(void);

/* Send r, which has no reply, if connected; never connects. */
void transport_send_locked(request_t *r);

/* Close the connection (the slot stays as proc.h says). */
void transport_close_locked(void);

/* 1 while a connection is open; no lock. */
int transport_connected(void);

#endif
