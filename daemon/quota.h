// SPDX-License-Identifier: MIT
/*
 * quota.h - what each client and each user is charged for, and the limits
 * (--client-quota, --uid-quota).
 *
 * What is charged: the pages of every span a client's allocations occupy.
 *   - A small span is charged to the client that last took it from heapd,
 *     from the moment it is granted until it is empty again and goes back
 *     to the page heap, or until another client takes it. Handing it back
 *     (a trim, a thread's exit, a disconnect) does not end the charge: the
 *     objects in it are still the client's.
 *   - A large object is charged to the client that allocated it until it is
 *     freed.
 * Charges follow the slot across reconnects. When the process has exited,
 * its charges leave the slot but stay with its uid, so the uid quota also
 * bounds what a user's exited programs left allocated.
 *
 * The charge of each span lives in its descriptor (charge: slot + 1,
 * charge_uid), so a restarted heapd recounts the books from the span table
 * (quota_rebuild_span). The books and those two fields are guarded by this
 * module's own lock, which nests inside the heap lock and takes nothing
 * after it.
 *
 * Roots (--uid-max-roots): each uid's book also counts the names bound by
 * its clients, a name counting against the uid of whoever bound it last.
 * The directory records that uid, so recovery recounts these too.
 */
#ifndef HEAPD_DAEMON_QUOTA_H
#define HEAPD_DAEMON_QUOTA_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "segment.h"

typedef struct quota_uid {
	uint32_t uid;          /* HEAPD_NIL: entry unused */
	uint64_t pages;
	uint64_t roots;        /* names bound by the uid's clients */
} quota_uid_t;

typedef struct quota {
	segment_t *seg;
	pthread_mutex_t lock;
	uint64_t slot_limit;   /* pages, 0: none */
	uint64_t uid_limit;    /* pages, 0: none */
	uint64_t root_limit;   /* names bound per uid, 0: none */
	uint64_t *slot_pages;  /* per slot */
	uint32_t nslots;
	quota_uid_t *uids;     /* open addressing, a power of two entries */
	uint32_t nuids, cap;
} quota_t;

int quota_init(quota_t *q, segment_t *seg, uint32_t nslots, uint64_t slot_limit_bytes,
               uint64_t uid_limit_bytes);
void quota_destroy(quota_t *q);

/*
 * Would npages more for slot (of uid) stay within both limits? 0, or
 * -EDQUOT with which limit in *which ("client" or "uid").
 */
int quota_admit(quota_t *q, uint32_t slot, uint32_t uid, uint64_t npages, const char **which);

/* Charge span id's pages to slot and uid, uncharging whoever had them. */
void quota_charge_span(quota_t *q, uint32_t id, uint32_t slot, uint32_t uid);

/* Span id is about to go back to the page heap: uncharge it. */
void quota_uncharge_span(quota_t *q, uint32_t id);

/*
 * Slot's process has exited: its charges stay with the uid only. Called for
 * each span by a walk (heap lock held, quota_forget_slot_span), then
 * quota_forget_slot to zero the slot's book.
 */
void quota_forget_slot_span(quota_t *q, uint32_t id, uint32_t slot);
void quota_forget_slot(quota_t *q, uint32_t slot);

/* Recovery: count span id's charge (live: the slot it names is held). */
void quota_rebuild_span(quota_t *q, uint32_t id, int slot_live);

/* Pages charged to a slot, and to a uid. */
uint64_t quota_slot_pages(quota_t *q, uint32_t slot);
uint64_t quota_uid_pages(quota_t *q, uint32_t uid);

/* Names one uid's clients may have bound at once (0: no limit). */
void quota_set_root_limit(quota_t *q, uint64_t limit);

/* May uid bind one more name? 0, or -EDQUOT. */
int quota_admit_root(quota_t *q, uint32_t uid);

/* uid has bound a name (delta 1), or one it bound lost its binding (-1). */
void quota_charge_root(quota_t *q, uint32_t uid, int delta);

/* Names bound by uid's clients. */
uint64_t quota_uid_roots(quota_t *q, uint32_t uid);

#endif
