// SPDX-License-Identifier: MIT
/*
 * rootdir.h - heapd's side of the directory of named roots: every write to
 * it, in commit order, the limits, and its recovery. The layout and the
 * lookup are shm/roots.h (this file's name differs only so that the two
 * headers never shadow each other).
 *
 * A change (rootdir_change) is one request's bind, replace or removal, in
 * steps each ending with one commit (shm/commit.h):
 *   1. bind or replace: pin the new object (pins.h), which must be live;
 *   2. the entry: a free entry gets the name (a new name), the other
 *      binding record gets the object, the slot's last-op record the
 *      request's token; then ver is bumped: the commit of the change;
 *   3. a new name: its index slot; a removal: a tombstone in its place;
 *   4. replace or removal: unpin the old object.
 * Killed after step 1, the pin has no root and recovery clears it; after
 * step 2, the change is made and recovery rebuilds the index and clears the
 * old object's pin. So after a restart a name is bound to its old object or
 * its new one, and a request resent on a new connection is answered from
 * the slot's last-op record instead of being applied twice.
 *
 * Limits: the directory's capacity (hdr->roots_max, -ENOSPC), and names per
 * uid (the quota books, -EDQUOT).
 *
 * Recovery (rootdir_recover, first thing recovery.c does): every bound
 * entry must have a sane name and name a live object start (allocated;
 * freed while pinned is fine) and be the only entry of its name; anything
 * else loses its binding. Then the slots' last ops are settled, the index is
 * rebuilt, pins no root backs are cleared, the uid books recounted, and
 * whoever waits in hc_root_wait is woken (a bind whose wake-up heapd did
 * not live to send is seen then).
 *
 * Threads: the event-loop thread (and recovery, before it serves). The
 * free list and the tombstone count are its own; pins take the heap lock.
 */
#ifndef HEAPD_DAEMON_ROOTDIR_H
#define HEAPD_DAEMON_ROOTDIR_H

#include <stddef.h>
#include <stdint.h>

#include "central.h"
#include "check.h"
#include "pins.h"
#include "quota.h"
#include "roots.h"
#include "segment.h"

typedef struct rootdir {
	segment_t *seg;
	quota_t *quota;          /* names per uid */
	pins_t pins;
	uint32_t *free;          /* entries holding no binding, a stack whose top is reused first */
	uint32_t nfree;
	uint32_t tombs;          /* tombstones in the index lookups use */
} rootdir_t;

/* One change asked for. */
typedef struct rootdir_req {
	const uint8_t *name;     /* not NUL-terminated */
	size_t len;
	uint64_t off;            /* the object to bind (an arena offset); 0: remove the binding */
	int cas;                 /* only if the binding is `expected` now */
	uint64_t expected;       /* 0: unbound */
	uint64_t expected_id;    /* cas: and it is this binding (roots_binding_id); 0: any */
	uint64_t token;          /* the client's number for the change; 0: none */
	uint32_t slot, pid, uid; /* who asks */
} rootdir_req_t;

typedef struct rootdir_recovery {
	uint32_t bound;          /* bindings kept */
	uint32_t dropped;        /* bindings dropped: a bad name, no live object, a duplicate */
	uint64_t pins_cleared;   /* pin bits no binding backed */
} rootdir_recovery_t;

int rootdir_init(rootdir_t *d, segment_t *seg, central_t *central, quota_t *quota);
void rootdir_destroy(rootdir_t *d);

/* Validate and repair the directory after a start (see above). 0 or -ENOMEM. */
int rootdir_recover(rootdir_t *d, rootdir_recovery_t *st);

/*
 * Make the change q asks for (see above). 0 with the binding's identity in
 * *id (0: none, or not known); -EAGAIN for a cas whose name is bound to
 * another object or another binding; -EINVAL for a bad name or an object
 * that is not the start of a live object; -ENAMETOOLONG; -ENOSPC when the
 * directory is full; -EDQUOT past the uid's limit; -ENOMEM. Nothing changes
 * on an error, and why gets a sentence.
 */
int rootdir_change(rootdir_t *d, const rootdir_req_t *q, uint64_t *id, char *why, size_t whylen);

/* Slot was freed (its process has gone): forget its last op. */
void rootdir_forget_slot(rootdir_t *d, uint32_t slot);

/*
 * heapd's own books against the directory: the count, the free list, the
 * tombstones, the pins' book, the uids' counts. The caller holds the heap
 * lock (and nothing changes roots meanwhile).
 */
void rootdir_check_locked(rootdir_t *d, check_report_t *r);

#endif
