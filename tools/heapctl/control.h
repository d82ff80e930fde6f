// SPDX-License-Identifier: MIT
/*
 * control.h - a control connection to heapd: the one small module that
 * heapctl and the tests use to talk to a daemon as a control client (a
 * Hello with control set: no slot, no arena descriptors).
 *
 * A request gets the connection's next seq and its reply must carry it
 * back; a connection whose replies are out of step is useless, and is
 * reported as -EPROTO.
 */
#ifndef HEAPD_TOOLS_CONTROL_H
#define HEAPD_TOOLS_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

typedef struct ctl {
	int fd;              /* -1 when closed */
	uint64_t seq;        /* of the last request */
	uint32_t page_size;  /* from the HelloReply; 0 if the daemon did not say */
} ctl_t;

/*
 * Connect to path and say Hello as a control client. timeout_s > 0 bounds
 * every later send and receive (a daemon that stops answering). 0, or
 * -errno with a sentence in why (the daemon's own reason when it refused).
 */
int ctl_open(ctl_t *c, const char *path, int timeout_s, char *why, size_t whylen);

/* Adopt an open, already introduced connection (tests). */
void ctl_adopt(ctl_t *c, int fd);

void ctl_close(ctl_t *c);

/*
 * Send req and read its reply. 0 with *reply (wire_free it) when it is of
 * kind want; an Error reply is -code with its message in why (and *reply
 * NULL); -EPROTO for another kind or seq; -errno when the connection fails.
 */
int ctl_call(ctl_t *c, Heapd__Envelope *req, Heapd__Envelope__MsgCase want,
             Heapd__Envelope **reply, char *why, size_t whylen);

/* Requests without fields: Stats, Clients, Sweep, Scavenge, Check. */
int ctl_simple(ctl_t *c, Heapd__Envelope__MsgCase msg, Heapd__Envelope__MsgCase want,
               Heapd__Envelope **reply, char *why, size_t whylen);

#endif
