// SPDX-License-Identifier: MIT
/*
 * recovery.h - rebuild the daemon's indexes from an existing arena at start.
 */
#ifndef HEAPD_DAEMON_RECOVERY_H
#define HEAPD_DAEMON_RECOVERY_H

#include <stdint.h>

#include "rootdir.h"

struct daemon;

typedef struct recovery_stats {
	uint64_t small_central;   /* small spans swept into central */
	uint64_t small_freed;     /* empty small spans returned to the page heap */
	uint64_t small_kept;      /* small spans kept for live clients to re-adopt */
	uint64_t small_taken;     /* small spans of dead clients taken back */
	uint64_t large_live;      /* large objects kept */
	uint64_t large_freed;     /* large spans freed (freed object, or allocation cut short) */
	uint64_t quarantined;     /* spans with impossible geometry, kept out of use */
	uint32_t slots_held;      /* client slots of live processes, held for reconnect */
	uint32_t slots_freed;     /* client slots of dead processes, freed */
	rootdir_recovery_t roots; /* the directory of named roots */
} recovery_stats_t;

/*
 * Repair the directory of named roots and its pins (rootdir_recover), then
 * rebuild central lists, client slots and the quota books from the span
 * table and the client table. Runs once, after pageheap_init and before the
 * sweeper thread and the listener start, so nothing in heapd runs
 * concurrently with it. 0 or -ENOMEM.
 */
int recovery_run(struct daemon *d, recovery_stats_t *st);

#endif
