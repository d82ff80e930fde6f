// SPDX-License-Identifier: MIT
/*
 * daemon.h - the daemon's whole state in one struct, and the operations
 * that span several modules.
 *
 * A daemon_t owns the arena mapping, the page heap, the central lists, the
 * client table and the sweeper. It does not own a socket or an event loop
 * (server.c does), so a test or a fuzz target can open one on a temporary
 * arena and drive sessions directly (session_handle_frame).
 *
 * Threads: the event-loop thread runs every session and everything here
 * except the sweeper thread's cycles. Lock order, outermost first:
 *   sweeper cycle_lock -> class locks (ascending) -> heap lock.
 * The client table, the slot books (except large charges) and the session
 * list belong to the event-loop thread and take no lock.
 */
#ifndef HEAPD_DAEMON_DAEMON_H
#define HEAPD_DAEMON_DAEMON_H

#include <stdint.h>

#include "central.h"
#include "check.h"
#include "clients.h"
#include "config.h"
#include "pageheap.h"
#include "segment.h"
#include "sweeper.h"

struct session;

typedef struct daemon {
	config_t cfg;                /* options in force */
	segment_t seg;               /* the arena, mapped read-write */
	pageheap_t heap;
	central_t central;
	clients_t clients;
	sweeper_t sweeper;
	uint64_t start_ns;           /* CLOCK_MONOTONIC at start, for uptime */
	uint64_t quota_pages;        /* --client-quota in pages, 0: none */
	int created;                 /* the arena was laid out by this start */
	int opened;                  /* daemon_open succeeded */
	/* event-loop thread only */
	struct session *sessions;    /* every connected session */
	uint32_t nsessions;          /* connections, control ones included */
	uint32_t nclients;           /* sessions that hold a client slot */
	uint32_t next_session_id;
} daemon_t;

/*
 * Open the arena (creating it, and locking it against a second daemon), build
 * the page heap, and recover central lists and client slots from the span
 * table. err gets a sentence on failure. Returns 0 or -errno.
 */
int daemon_open(daemon_t *d, const config_t *cfg, char *err, size_t errlen);

/* Stop the sweeper, mark the arena cleanly shut down if clean, unmap. */
void daemon_close(daemon_t *d, int clean);

/*
 * A swept span of sizeclass for a client, from central or newly carved,
 * sweeping first when the heap would otherwise grow. -ENOMEM when full.
 */
int daemon_get_span(daemon_t *d, uint32_t sizeclass, uint32_t *span, int *needzero);

/* Hand a span a slot owns back to central (swept at once). */
void daemon_take_back(daemon_t *d, uint32_t slot, uint32_t span, sweep_result_t *res);

/* Take back every span of slot, drop its large charges and free the slot. */
void daemon_release_slot(daemon_t *d, uint32_t slot, sweep_result_t *res);

/* Free held slots (no connection since a restart) whose process is gone. Returns how many. */
uint32_t daemon_reap_held(daemon_t *d);

/* Invariant check of the segment, the page heap, central and the client table. */
size_t daemon_check(daemon_t *d, check_report_t *report);

#endif
