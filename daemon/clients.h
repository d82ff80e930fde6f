// SPDX-License-Identifier: MIT
/*
 * clients.h - the client table: slots in the shared header that name the
 * processes holding spans, and the daemon's private books per slot.
 *
 * A slot is in use while seg->clients[i].pid != 0. Spans a client caches
 * carry owner == slot + 1 in the span table and sit on the slot's list.
 * A slot outlives its connection only across a daemon restart: recovery
 * keeps the slots of live processes "held" (no session) until they reconnect
 * and re-adopt them, or until the process is gone.
 *
 * Large objects are charged to the slot that allocated them (for the quota);
 * the charge map (span -> slot + 1), large_pages and pending_large are
 * guarded by the heap lock, because the sweeper thread frees large objects
 * too. Everything else here belongs to the event-loop thread.
 */
#ifndef HEAPD_DAEMON_CLIENTS_H
#define HEAPD_DAEMON_CLIENTS_H

#include <stdint.h>
#include <sys/types.h>

#include "pageheap.h"
#include "segment.h"
#include "spanlist.h"

struct session;

typedef struct slot {
	struct session *session; /* bound connection, NULL if unused or held for a reconnect */
	spanlist_t spans;        /* spans owned by the slot (owner == index + 1) */
	uint64_t span_pages;     /* pages of those spans */
	uint64_t large_pages;    /* pages of large objects charged to the slot (heap lock) */
	uint32_t pending_large;  /* span + 1 of the large object whose reply may not have reached
	                          * the client; its owner is slot + 1 meanwhile. 0: none. Written
	                          * under the heap lock by the event-loop thread only. */
} slot_t;

typedef struct clients {
	segment_t *seg;
	pageheap_t *heap;
	slot_t *slots;           /* hdr->max_clients entries */
	uint32_t nslots;
	uint32_t limit;          /* slots that may be in use at once (--max-clients) */
	uint32_t inuse;          /* slots in use (connected or held) */
	uint32_t cursor;         /* where the search for a free slot starts */
	uint32_t *charge;        /* span -> slot + 1 charged for that large object, 0: none */
} clients_t;

int clients_init(clients_t *cl, segment_t *seg, pageheap_t *heap, uint32_t limit);
void clients_destroy(clients_t *cl);

/* Start time of pid (/proc/PID/stat field 22), 0 or -ESRCH. */
int clients_proc_start_time(pid_t pid, uint64_t *start_time);

/* 1 if the process recorded in slot is still the same live process. */
int clients_alive(const clients_t *cl, uint32_t slot);

/* Take a free slot for a process; a fresh token is written. -EUSERS when full. */
int clients_alloc(clients_t *cl, pid_t pid, uid_t uid, uint64_t start_time, uint32_t *slot);

/* Mark a slot in use at recovery time (its shared entry is already valid). */
void clients_adopt(clients_t *cl, uint32_t slot);

/* Free a slot; its spans must already be handed back and charges dropped. */
void clients_free(clients_t *cl, uint32_t slot);

/* Give a daemon-owned span (on no list) to slot, or take it back (owner 0, on no list). */
void clients_own(clients_t *cl, uint32_t slot, uint32_t span);
void clients_disown(clients_t *cl, uint32_t slot, uint32_t span);

/* 1 if span is a valid, small span owned by slot. */
int clients_owns(const clients_t *cl, uint32_t slot, uint32_t span);

/* Large-object charges; the caller holds the heap lock. */
void clients_charge_large_locked(clients_t *cl, uint32_t slot, uint32_t span, uint32_t npages);
void clients_uncharge_large_locked(clients_t *cl, uint32_t span, uint32_t npages);
/* Forget every charge of slot (its client left; its objects stay allocated). */
void clients_drop_charges(clients_t *cl, uint32_t slot);

/* Pages a slot holds: cached spans plus large objects. */
uint64_t clients_held_pages(clients_t *cl, uint32_t slot);

#endif
