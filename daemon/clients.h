// SPDX-License-Identifier: MIT
/*
 * clients.h - the client table: slots in the shared header that name the
 * processes holding spans, and the daemon's private books per slot.
 *
 * A slot is in use while seg->clients[i].pid != 0, and belongs to one
 * process (pid, start time and pidfs inode, proc.h) until that whole
 * process has exited, even after a Bye (its quota charges stay). Spans a client caches carry owner == slot +
 * 1 in the span table and sit on the slot's list; nothing moves them while
 * the process lives, except its own hand-backs. A slot is "held" while no
 * connection is bound to it: the client's connection ended (it closed it,
 * heapd ended it, or heapd restarted), and the process may reconnect and
 * re-adopt it.
 *
 * Threads: the event-loop thread owns the slots; the sweeper thread never
 * touches them.
 */
#ifndef HEAPD_DAEMON_CLIENTS_H
#define HEAPD_DAEMON_CLIENTS_H

#include <stdint.h>
#include <sys/types.h>

#include "proc.h"
#include "segment.h"
#include "spanlist.h"

struct session;

typedef struct slot {
	struct session *session; /* bound connection, NULL if unused or held */
	spanlist_t spans;        /* spans owned by the slot (owner == index + 1) */
	uint64_t span_pages;     /* pages of those spans */
	uint32_t pending_large;  /* span + 1 of the large object whose reply may not have reached
	                          * the client; its owner is slot + 1 meanwhile. 0: none. */
	proc_t proc;             /* the process; its pidfd tells when it has exited */
	void *watch;             /* the server's watch on proc.pidfd, NULL if none */
} slot_t;

typedef struct clients {
	segment_t *seg;
	slot_t *slots;           /* hdr->max_clients entries */
	uint32_t nslots;
	uint32_t limit;          /* slots that may be in use at once (--max-clients) */
	uint32_t per_uid;        /* slots one uid may hold (--max-clients-per-uid) */
	uint32_t inuse;          /* slots in use (connected or held) */
	uint32_t cursor;         /* where the search for a free slot starts */
} clients_t;

int clients_init(clients_t *cl, segment_t *seg, uint32_t limit, uint32_t per_uid);
void clients_destroy(clients_t *cl);

/* The slot in use by process p, or HEAPD_NIL (the lowest, if it has several). */
uint32_t clients_find(const clients_t *cl, const proc_t *p);

/* Slots in use by uid. */
uint32_t clients_count_uid(const clients_t *cl, uid_t uid);

/* 1 if slot is in use by process p of uid. */
int clients_is(const clients_t *cl, uint32_t slot, const proc_t *p, uid_t uid);

/*
 * Take a free slot for process p (the slot takes over p's pidfd; *p becomes
 * PROC_NONE). -EUSERS when every slot is taken or uid holds its share.
 */
int clients_alloc(clients_t *cl, proc_t *p, uid_t uid, uint32_t *slot);

/* Recovery: slot's shared entry names live process p; hold it (takes over p's pidfd). */
void clients_adopt(clients_t *cl, uint32_t slot, proc_t *p);

/* Free a slot; its spans must already be handed back. The caller removed its watch. */
void clients_free(clients_t *cl, uint32_t slot);

/*
 * Give a daemon-owned span (on no list, owner 0) to slot: owner = slot + 1
 * (one store: the handover's commit), then onto the slot's list. Or take
 * it back (off the list, owner 0).
 */
void clients_own(clients_t *cl, uint32_t slot, uint32_t span);
void clients_disown(clients_t *cl, uint32_t slot, uint32_t span);

/* Recovery: span already has owner == slot + 1; put it on the slot's list. */
void clients_keep(clients_t *cl, uint32_t slot, uint32_t span);

/* 1 if span is a valid, small span owned by slot. */
int clients_owns(const clients_t *cl, uint32_t slot, uint32_t span);

#endif
