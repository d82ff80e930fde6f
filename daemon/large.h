// SPDX-License-Identifier: MIT
/*
 * large.h - large objects: one SPAN_LARGE span each, alloc bit 0 set while
 * the object lives, free bit 0 set by whichever process frees it.
 *
 * Entry points: large_alloc (LargeAlloc), large_free (LargeFree), and
 * large_sweep, which frees the large spans whose free bit is set but whose
 * LargeFree never came (the freeing client died). A span whose bit has been
 * seen set for less than LARGE_FREE_GRACE_NS is left for its LargeFree, which
 * may still be in flight, so a late LargeFree never names a span that has
 * been freed and reused.
 *
 * Locks: the heap lock, for the span and the charge to the allocating slot.
 */
#ifndef HEAPD_DAEMON_LARGE_H
#define HEAPD_DAEMON_LARGE_H

#include <stdint.h>

#include "central.h"
#include "clients.h"

#define LARGE_FREE_GRACE_NS 2000000000ULL

/*
 * Allocate a large object of size bytes, aligned to align (0 or a power of
 * two), for slot (HEAPD_NIL: charge nobody), within quota_pages (0: none).
 * -EINVAL for a size or alignment the arena can never satisfy, -ENOMEM when
 * it is full or the quota is reached. *zeroed: the object reads as zero.
 */
int large_alloc(central_t *c, clients_t *cl, uint32_t slot, uint64_t size, uint64_t align,
                int zero, uint64_t quota_pages, uint32_t *span, int *zeroed);

/* Pages a large object of size bytes takes, or 0 if that cannot fit any arena. */
uint64_t large_pages_for(uint64_t size);

/*
 * Free a large object whose free bit is set. -EINVAL if span is not a large
 * object, -EPERM if its free bit is not set; *npages gets its size.
 */
int large_free(central_t *c, clients_t *cl, uint32_t span, uint32_t *npages);

/*
 * Settle slot's pending large object (slots[slot].pending_large), if any:
 * received, it is the client's like any other (owner 0); not received, the
 * reply was lost, and it is freed. Takes the heap lock.
 */
void large_settle(central_t *c, clients_t *cl, uint32_t slot, int received);

/* Free large spans whose LargeFree was lost. grace_ns: 0 frees every one now. */
uint64_t large_sweep(central_t *c, clients_t *cl, uint64_t grace_ns, uint64_t *pages_freed);

#endif
