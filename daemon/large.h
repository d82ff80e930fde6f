// SPDX-License-Identifier: MIT
/*
 * large.h - large objects: one SPAN_LARGE span each, alloc bit 0 set while
 * the object lives, free bit 0 set by whichever process frees it.
 *
 * Entry points: large_alloc (LargeAlloc, after the daemon's policy has
 * admitted it), large_free (LargeFree), large_settle (a pending reply's
 * fate), and large_sweep, which frees the large spans whose free bit is set
 * but whose LargeFree never came (the freeing client died). A span whose
 * bit has been seen set for less than LARGE_FREE_GRACE_NS is left for its
 * LargeFree, which may still be in flight. A LargeFree names the span's
 * generation, so one that comes late, twice, or for a span freed and
 * reused since, changes nothing. A pinned object (a root names it) is not
 * freed: its free bit waits until its pin goes (large_unpinned_locked).
 *
 * Locks: the heap lock, through the page heap's entry points.
 */
#ifndef HEAPD_DAEMON_LARGE_H
#define HEAPD_DAEMON_LARGE_H

#include <stdint.h>
#include <sys/types.h>

#include "central.h"
#include "clients.h"

#define LARGE_FREE_GRACE_NS 2000000000ULL

/* Pages a large object of size bytes takes, or 0 if that cannot fit any arena. */
uint64_t large_pages_for(uint64_t size);

/*
 * Allocate a large object of npages, its arena offset aligned to
 * align_pages pages, for slot of uid (slot HEAPD_NIL: charge nobody). The
 * pages are zeroed if zero is set and they may hold old data. -ENOMEM when
 * the arena has no room. *zeroed: the object reads as zero; *gen: its
 * generation.
 */
int large_alloc(central_t *c, clients_t *cl, uint32_t slot, uid_t uid, uint32_t npages,
                uint32_t align_pages, int zero, uint32_t *span, int *zeroed, uint32_t *gen);

/*
 * Free the large object at span of generation gen, whose free bit must be
 * set. -ESTALE when span is no longer that object (freed already, or
 * reused), -EPERM when its free bit is not set; nothing changes then.
 */
int large_free(central_t *c, uint32_t span, uint32_t gen);

/*
 * Settle slot's pending large object (slots[slot].pending_large), if any:
 * received, it is the client's like any other (owner 0); not received, the
 * reply was lost, and it is freed.
 */
void large_settle(central_t *c, clients_t *cl, uint32_t slot, int received);

/* Free large spans whose LargeFree was lost. grace_ns: 0 frees every one now. */
uint64_t large_sweep(central_t *c, uint64_t grace_ns, uint64_t *pages_freed);

/*
 * A root named the large object at span (its pin kept a free of it from
 * giving the pages back: shm/roots.h); its pin is gone now. Free it if it
 * was freed meanwhile. The caller holds the heap lock.
 */
void large_unpinned_locked(central_t *c, uint32_t span);

#endif
