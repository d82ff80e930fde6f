// SPDX-License-Identifier: MIT
/*
 * rootdir.c - heapd's writes to the directory of named roots, and its
 * recovery (see rootdir.h for the steps of a change, shm/roots.h for the
 * layout and the rules readers rely on).
 *
 * Entry points: rootdir_init, rootdir_recover, rootdir_change,
 * rootdir_forget_slot, rootdir_check_locked.
 *
 * Writers' rules, for readers that never lock (shm/roots.h):
 *   - an entry is written by entry_write alone: a release fence, then the
 *     name (a free entry only) and the other binding record, then ver + 1
 *     with release, which is the commit;
 *   - the index lookups use changes by single release stores (index_insert,
 *     index_tombstone); the other index is rebuilt behind a release fence
 *     and made the one lookups use by roots_gen + 1 (index_rebuild).
 */
#include "rootdir.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "commit.h"
#include "report.h"

#define NIL HEAPD_NIL

__attribute__((format(printf, 4, 5)))
static int say(char *why, size_t whylen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return rc;
}

int rootdir_init(rootdir_t *d, segment_t *seg, central_t *central, quota_t *quota)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->seg = seg;
	d->quota = quota;
	d->free = malloc((size_t)seg->hdr->roots_max * sizeof(uint32_t));
	if (!d->free)
		return -ENOMEM;
	rc = pins_init(&d->pins, seg, central);
	if (rc < 0) {
		free(d->free);
		d->free = NULL;
	}
	return rc;
}

void rootdir_destroy(rootdir_t *d)
{
	if (!d->seg)
		return;
	pins_destroy(&d->pins);
	free(d->free);
	memset(d, 0, sizeof(*d));
}

/* ---- entries ---- */

/*
 * Entry e's binding becomes off with info, and (k not NULL: e holds no
 * binding now) its name k's. The bump of ver is the commit.
 */
static void entry_write(rootdir_t *d, uint32_t e, const roots_key_t *k, uint64_t off,
                        const shm_root_info_t *info)
{
	segment_t *seg = d->seg;
	shm_root_t *r = &seg->roots[e];
	uint64_t v = atomic_load_explicit(&r->ver, memory_order_relaxed);
	unsigned next = (unsigned)(v + 1) & 1;

	/* A reader of ver v that sees any store below sees ver move too. */
	atomic_thread_fence(memory_order_release);
	if (k) {
		atomic_store_explicit((_Atomic uint8_t *)&r->len, (uint8_t)k->len, memory_order_relaxed);
		r->tag = (uint32_t)(k->hash >> 32);
		for (uint32_t i = 0; i < ROOTS_NAME_WORDS; i++)
			atomic_store_explicit((_Atomic uint64_t *)roots_name_at(seg, e, i),
			                      i < k->nwords ? k->w[i] : 0, memory_order_relaxed);
	}
	atomic_store_explicit((_Atomic uint64_t *)&r->off[next], off, memory_order_relaxed);
	*roots_info(seg, e, next) = *info;
	atomic_store_explicit(&r->ver, v + 1, memory_order_release); /* the commit */
	shm_commit();
}

/* The binding record of entry e now. */
static const shm_root_info_t *entry_info(const rootdir_t *d, uint32_t e)
{
	return roots_info(d->seg, e, roots_cur(&d->seg->roots[e]));
}

static uint64_t entry_off(const rootdir_t *d, uint32_t e)
{
	const shm_root_t *r = &d->seg->roots[e];
	return r->off[roots_cur(r)];
}

/* Entry e loses its binding (recovery's repair). */
static void entry_drop(rootdir_t *d, uint32_t e)
{
	shm_root_info_t none = { .uid = NIL, .slot = NIL };
	entry_write(d, e, NULL, 0, &none);
}

/* A key for entry e's name, from what the entry holds. 0, or -EINVAL for a name no bind writes. */
static int entry_key(const rootdir_t *d, uint32_t e, roots_key_t *k)
{
	const shm_root_t *r = &d->seg->roots[e];
	uint8_t bytes[ROOTS_NAME_WORDS * 8];
	uint32_t len = roots_name(d->seg, e, bytes);

	for (uint32_t i = len; i < sizeof(bytes); i++)
		if (bytes[i])
			return -EINVAL;
	if (roots_key(k, d->seg->hdr->arena_id, bytes, len) < 0)
		return -EINVAL;
	return r->tag == (uint32_t)(k->hash >> 32) ? 0 : -EINVAL;
}

/* ---- the index ---- */

static uint32_t index_mask(const rootdir_t *d)
{
	return d->seg->hdr->roots_nslots - 1;
}

/*
 * Entry e of name k gets a slot of index ix: the first of its probe that
 * holds no entry, or, with dedup, the one of another bound entry of the
 * same name (recovery), whose entry goes to *same. Returns what the slot
 * held.
 */
static uint64_t index_put(rootdir_t *d, _Atomic uint64_t *ix, const roots_key_t *k, uint32_t e,
                          int dedup, uint32_t *same)
{
	uint32_t mask = index_mask(d), i = (uint32_t)k->hash & mask, tag = (uint32_t)(k->hash >> 32);
	uint64_t s;

	while ((s = atomic_load_explicit(&ix[i], memory_order_relaxed)) != ROOTS_SLOT_EMPTY &&
	       s != ROOTS_SLOT_TOMB) {
		if (dedup && (uint32_t)(s >> 32) == tag) {
			uint32_t oe = roots_slot_entry(s);
			int eq = d->seg->roots[oe].len == k->len;
			for (uint32_t w = 0; eq && w < k->nwords; w++)
				eq = roots_name_word(d->seg, oe, w) == k->w[w];
			if (eq) {
				*same = roots_slot_entry(s);
				return s;
			}
		}
		i = (i + 1) & mask;
	}
	/* release: the entry's name and binding before the slot that leads to them */
	atomic_store_explicit(&ix[i], roots_slot(tag, e), memory_order_release);
	return s;
}

/* Empty index ix, which lookups do not use (but a slow one may still read: roots.h). */
static void index_clear(rootdir_t *d, _Atomic uint64_t *ix)
{
	/* A lookup still probing it sees roots_gen move if it reads what follows. */
	atomic_thread_fence(memory_order_release);
	for (uint32_t i = 0; i < d->seg->hdr->roots_nslots; i++)
		if (atomic_load_explicit(&ix[i], memory_order_relaxed) != ROOTS_SLOT_EMPTY)
			atomic_store_explicit(&ix[i], ROOTS_SLOT_EMPTY, memory_order_relaxed);
}

/* Make the other index the one lookups use: the commit of a rebuild. */
static void index_flip(rootdir_t *d)
{
	shm_header_t *hdr = d->seg->hdr;
	atomic_fetch_add_explicit(&hdr->roots_gen, 1, memory_order_release); /* the commit */
	shm_commit();
	d->tombs = 0;
}

/* Rebuild the index lookups do not use from the bound entries, then flip to it. */
static void index_rebuild(rootdir_t *d)
{
	segment_t *seg = d->seg;
	_Atomic uint64_t *ix = roots_index(seg, atomic_load(&seg->hdr->roots_gen) + 1);
	roots_walk_t w;
	roots_key_t k;
	uint32_t e;

	index_clear(d, ix);
	roots_walk_start(&w, seg, 0);
	while (roots_walk_next(&w, &e))
		if (entry_key(d, e, &k) == 0)
			index_put(d, ix, &k, e, 0, NULL);
	index_flip(d);
}

/* A new name's entry e gets its slot; a crowded index is rebuilt instead (e is bound). */
static void index_insert(rootdir_t *d, uint32_t e, const roots_key_t *k)
{
	const shm_header_t *hdr = d->seg->hdr;

	if (((uint64_t)hdr->roots_count + d->tombs + 1) * 4 > (uint64_t)hdr->roots_nslots * 3) {
		index_rebuild(d);
		return;
	}
	_Atomic uint64_t *ix = roots_index(d->seg, atomic_load(&d->seg->hdr->roots_gen));
	if (index_put(d, ix, k, e, 0, NULL) == ROOTS_SLOT_TOMB)
		d->tombs--;
	shm_commit();
}

/* Entry e's name lost its binding: its slot becomes a tombstone. */
static void index_tombstone(rootdir_t *d, uint32_t e, uint64_t hash)
{
	_Atomic uint64_t *ix = roots_index(d->seg, atomic_load(&d->seg->hdr->roots_gen));
	uint32_t mask = index_mask(d), i = (uint32_t)hash & mask;
	uint64_t want = roots_slot((uint32_t)(hash >> 32), e), s;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		s = atomic_load_explicit(&ix[i], memory_order_relaxed);
		if (s == ROOTS_SLOT_EMPTY)
			return;
		if (s == want) {
			atomic_store_explicit(&ix[i], ROOTS_SLOT_TOMB, memory_order_release);
			shm_commit();
			d->tombs++;
			return;
		}
	}
}

/* ---- waking hc_root_wait ---- */

static void wake_waiters(rootdir_t *d)
{
	_Atomic uint32_t *w = &d->seg->hdr->roots_wake;
	atomic_fetch_add_explicit(w, 1, memory_order_release);
	/* not FUTEX_PRIVATE: waiters sleep on their own mappings of the meta file */
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ---- a change ---- */

int rootdir_change(rootdir_t *d, const rootdir_req_t *q, uint64_t *id, char *why, size_t whylen)
{
	segment_t *seg = d->seg;
	shm_header_t *hdr = seg->hdr;
	shm_root_op_t *op = q->token && q->slot < hdr->max_clients ? &seg->roots_ops[q->slot] : NULL;
	uint32_t e = NIL, olduid = NIL;
	uint64_t cur = 0, cur_id = 0;
	roots_key_t k;
	roots_obj_t o = { 0 };
	int rc;

	*id = 0;
	rc = roots_key(&k, hdr->arena_id, q->name, q->len);
	if (rc == -ENAMETOOLONG)
		return say(why, whylen, rc, "a name of %zu bytes; names have at most %u", q->len,
		           ROOTS_NAME_MAX);
	if (rc < 0)
		return say(why, whylen, rc, q->len ? "a name holding a NUL byte" : "an empty name");
	if (op && op->token == q->token && op->done)
		return 0; /* sent again after a reconnect: it was made already */
	int found = roots_lookup(seg, &k, &cur, &e, &cur_id) == 0;
	if (q->cas && cur != q->expected)
		return say(why, whylen, -EAGAIN, "the name is bound to offset %llu, not %llu",
		           (unsigned long long)cur, (unsigned long long)q->expected);
	if (q->cas && q->expected_id && cur_id != q->expected_id)
		return say(why, whylen, -EAGAIN, "the name was bound again since the client looked");
	if (cur == q->off) {
		*id = cur_id;
		return 0; /* bound to it already, or an unbound name removed */
	}
	if (found)
		olduid = entry_info(d, e)->uid;
	if (q->off) {
		if (roots_object(seg, q->off, &o) < 0)
			return say(why, whylen, -EINVAL, "offset %llu is not the start of an object",
			           (unsigned long long)q->off);
		if (!found && d->nfree == 0)
			return say(why, whylen, -ENOSPC, "the directory is full (%u names)", hdr->roots_max);
		if (olduid != q->uid && quota_admit_root(d->quota, q->uid) < 0)
			return say(why, whylen, -EDQUOT, "uid %u has as many names bound as it may (%llu)",
			           q->uid, (unsigned long long)quota_uid_roots(d->quota, q->uid));
		rc = pins_pin(&d->pins, q->off, &o, 1);
		if (rc == -EINVAL)
			return say(why, whylen, rc, "the object at offset %llu is not allocated",
			           (unsigned long long)q->off);
		if (rc < 0)
			return say(why, whylen, rc, "out of memory");
	}

	shm_root_info_t info = {
		.size = o.size, .time_ns = heapd_wall_ns(0), .token = q->token,
		.pid = q->pid, .uid = q->uid, .slot = q->slot,
	};
	if (!found)
		e = d->free[--d->nfree];
	if (op) {
		op->token = q->token;
		op->entry = e;
		op->done = 0;
	}
	entry_write(d, e, found ? NULL : &k, q->off, &info); /* the change is made */
	if (op)
		op->done = 1;
	if (q->off)
		*id = roots_binding_id(e, atomic_load(&seg->roots[e].ver));
	if (!found) {
		index_insert(d, e, &k);
	} else if (!q->off) {
		index_tombstone(d, e, k.hash);
		d->free[d->nfree++] = e;
	}
	if (cur) {
		pins_unpin(&d->pins, cur);
		quota_charge_root(d->quota, olduid, -1);
		hdr->roots_count--;
	}
	if (q->off) {
		quota_charge_root(d->quota, q->uid, 1);
		hdr->roots_count++;
		wake_waiters(d);
	}
	return 0;
}

void rootdir_forget_slot(rootdir_t *d, uint32_t slot)
{
	if (slot < d->seg->hdr->max_clients)
		memset(&d->seg->roots_ops[slot], 0, sizeof(shm_root_op_t));
}

/* ---- recovery ---- */

/* 1 if entry e may stay bound: a sane name, a live object start, which is now pinned. */
static int recover_entry(rootdir_t *d, uint32_t e, roots_key_t *k)
{
	uint64_t off = entry_off(d, e);
	roots_obj_t o;

	return entry_key(d, e, k) == 0 && roots_object(d->seg, off, &o) == 0 &&
	       pins_pin(&d->pins, off, &o, 0) == 0;
}

int rootdir_recover(rootdir_t *d, rootdir_recovery_t *st)
{
	segment_t *seg = d->seg;
	shm_header_t *hdr = seg->hdr;
	uint32_t max = hdr->roots_max, e;
	uint8_t *bound = calloc(((size_t)max + 7) / 8, 1);
	roots_walk_t w;
	roots_key_t k;

	memset(st, 0, sizeof(*st));
	if (!bound)
		return -ENOMEM;

	/* 1. Each bound entry: a sane name, a live object start, pinned. */
	roots_walk_start(&w, seg, 0);
	while (roots_walk_next(&w, &e)) {
		if (!recover_entry(d, e, &k)) {
			entry_drop(d, e);
			st->dropped++;
			continue;
		}
		bound[e / 8] |= (uint8_t)(1u << (e % 8));
		st->bound++;
	}

	/*
	 * 2. The other index, from those; of two entries of one name, the later
	 * binding stays. Then it is the one lookups use. An arena that never
	 * bound a name has nothing to rebuild.
	 */
	uint64_t idx_end, idx_at = hdr->roots_off + roots_entries_size(hdr);
	int used = st->bound || st->dropped ||
	           segment_meta_next_data(seg, idx_at, &idx_end) < idx_at + roots_index_size(hdr);
	if (used) {
		_Atomic uint64_t *ix = roots_index(seg, atomic_load(&hdr->roots_gen) + 1);
		index_clear(d, ix);
		for (e = 0; e < max; e++) {
			uint32_t same = NIL;
			if (!(bound[e / 8] >> (e % 8) & 1) || entry_key(d, e, &k) < 0)
				continue;
			uint64_t s = index_put(d, ix, &k, e, 1, &same);
			if (same == NIL)
				continue;
			uint32_t drop = e;
			if (entry_info(d, e)->time_ns > entry_info(d, same)->time_ns) {
				drop = same;
				/* the later binding takes the slot of the earlier */
				for (uint32_t i = (uint32_t)k.hash & index_mask(d);; i = (i + 1) & index_mask(d))
					if (atomic_load_explicit(&ix[i], memory_order_relaxed) == s) {
						atomic_store_explicit(&ix[i], roots_slot((uint32_t)(k.hash >> 32), e),
						                      memory_order_release);
						break;
					}
			}
			pins_unpin(&d->pins, entry_off(d, drop));
			entry_drop(d, drop);
			bound[drop / 8] &= (uint8_t)~(1u << (drop % 8));
			st->bound--;
			st->dropped++;
		}
		index_flip(d);
	}

	/* 3. The slots' last changes: made if the entry carries the token, else never made. */
	for (uint32_t i = 0; i < hdr->max_clients; i++) {
		shm_root_op_t *op = &seg->roots_ops[i];
		if (!op->token || op->done)
			continue;
		if (op->entry < max && entry_info(d, op->entry)->token == op->token)
			op->done = 1;
		else
			op->token = 0;
	}

	/* 4. heapd's books: free entries (the lowest on top), the count, names per uid. */
	d->nfree = 0;
	hdr->roots_count = st->bound;
	for (e = max; e-- > 0;) {
		if (!(bound[e / 8] >> (e % 8) & 1))
			d->free[d->nfree++] = e;
		else
			quota_charge_root(d->quota, entry_info(d, e)->uid, 1);
	}
	free(bound);

	/* 5. Pins no binding backs; then whoever waits: a bind may have missed its wake-up. */
	st->pins_cleared = pins_clear_stale(&d->pins);
	wake_waiters(d);
	return 0;
}

/* ---- the check ---- */

void rootdir_check_locked(rootdir_t *d, check_report_t *r)
{
	segment_t *seg = d->seg;
	const shm_header_t *hdr = seg->hdr;
	roots_walk_t w;
	uint32_t e, n = 0, tombs = 0;
	uint64_t end;

	pageheap_assert_locked(d->pins.central->heap);
	roots_walk_start(&w, seg, 0);
	while (roots_walk_next(&w, &e)) {
		uint64_t off = entry_off(d, e);
		n++;
		if (pins_count(&d->pins, off) == 0)
			report_add(r, "roots: entry %u names offset %llu, which heapd has not pinned", e,
			           (unsigned long long)off);
	}
	if (n != hdr->roots_count)
		report_add(r, "roots: %u names bound, the header says %u", n, hdr->roots_count);
	if (n + d->nfree != hdr->roots_max)
		report_add(r, "roots: %u names bound and %u entries free, of %u", n, d->nfree,
		           hdr->roots_max);
	if (pins_roots(&d->pins) != n)
		report_add(r, "roots: heapd's pins count %llu roots, the directory has %u",
		           (unsigned long long)pins_roots(&d->pins), n);

	const _Atomic uint64_t *ix = roots_index(seg, atomic_load(&((shm_header_t *)hdr)->roots_gen));
	uint64_t at = (uint64_t)((const uint8_t *)ix - seg->base);
	for (uint32_t i = 0; i < hdr->roots_nslots;) {
		/* only what the file holds: reading a hole of it would allocate it */
		uint64_t data = segment_meta_next_data(seg, at + (uint64_t)i * 8, &end);
		for (i = (uint32_t)((data - at) / 8); i < hdr->roots_nslots && at + (uint64_t)i * 8 < end; i++)
			tombs += atomic_load_explicit(&ix[i], memory_order_relaxed) == ROOTS_SLOT_TOMB;
	}
	if (tombs != d->tombs)
		report_add(r, "roots: the index holds %u tombstones, heapd counts %u", tombs, d->tombs);
	pins_check_locked(&d->pins, r);
}
