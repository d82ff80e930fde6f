// SPDX-License-Identifier: MIT
/*
 * pins.h - heapd's pins: an object a root names is pinned, so that its
 * slot is not handed out again before its last root goes (shm/roots.h).
 *
 * The pin words and the page-map flag in the metadata are what clients and
 * the sweeper fold by; how many roots name each object is heapd's own book
 * (a map from arena offset to count), rebuilt at start from the directory.
 * A pin is set once, by the first root of an object, and cleared by its
 * last. Small spans carry HEAPD_PAGEMAP_PINNED while any object of them is
 * pinned; a large object's pin is read by heapd alone (its free goes
 * through heapd: daemon/large.c), so its span carries no flag.
 *
 * Each pin change is one commit. Killed between a pin and the directory
 * write it was for, heapd leaves a pin no root backs, which recovery clears
 * (pins_clear_stale); a pin is never missing under a root, because it is
 * set before the root is written and cleared after the root is gone.
 *
 * Threads: the event-loop thread pins and unpins (and recovery, before it
 * runs). Every change takes the heap lock, so that no span is freed,
 * carved or rewritten in the page map while its pins change; the lock also
 * orders a large object's pin against large_free and large_sweep. The book
 * belongs to the event-loop thread.
 */
#ifndef HEAPD_DAEMON_PINS_H
#define HEAPD_DAEMON_PINS_H

#include <stdint.h>

#include "central.h"
#include "check.h"
#include "roots.h"
#include "segment.h"

typedef struct pins {
	segment_t *seg;
	central_t *central;      /* its page heap's lock; large objects freed at their last unpin */
	uint64_t *keys;          /* open addressing: arena offsets, 0 for an empty slot */
	uint32_t *counts;        /* roots naming keys[i] */
	uint32_t cap;            /* a power of two */
	uint32_t n;              /* objects pinned */
} pins_t;

int pins_init(pins_t *p, segment_t *seg, central_t *central);
void pins_destroy(pins_t *p);

/*
 * One more root will name the object at arena offset off (o: roots_object's
 * answer for it). The first pins it: bit and flag, fence, then the object
 * must still be that object with its alloc bit set and, with live, its free
 * bit clear (a bind names only a live object; recovery keeps a pinned one
 * that was freed since). 0; -EINVAL when the object does not qualify, the
 * pin undone; -ENOMEM.
 */
int pins_pin(pins_t *p, uint64_t off, const roots_obj_t *o, int live);

/*
 * One root fewer names the object at off. The last unpins it: a small
 * object freed meanwhile goes back with its span's next fold, a large one
 * is freed now.
 */
void pins_unpin(pins_t *p, uint64_t off);

/* Roots naming the object at off, per the book. */
uint32_t pins_count(const pins_t *p, uint64_t off);

/* Roots naming any object, per the book (the check). */
uint64_t pins_roots(const pins_t *p);

/*
 * Recovery, once pins_pin has been called for every root the directory
 * holds: clear the pin bits no root backs (and those at pages that start
 * no span), and make every span's flag say whether it holds pins. Returns
 * the pin bits cleared.
 */
uint64_t pins_clear_stale(pins_t *p);

/* The check: the book against the pin words (the caller holds the heap lock). */
void pins_check_locked(const pins_t *p, check_report_t *r);

#endif
