// SPDX-License-Identifier: MIT
/*
 * roots.h - the directory of named roots in the metadata, the lock-free
 * lookup every process runs on it, and the pins that keep a named object
 * from being reused.
 *
 * A root binds a name (1..ROOTS_NAME_MAX bytes, no NUL) to the start of a
 * live object. heapd alone writes the directory (daemon/roots.c); clients
 * map it read-only with the rest of the metadata (layout.h) and look names
 * up with no lock and no system call (roots_lookup).
 *
 * The directory (hdr->roots_off; each piece page aligned):
 *   entries  hdr->roots_max of them, each a 64-byte head (shm_root_t: all
 *            a lookup of a name of up to 32 bytes reads) in one array and a
 *            tail (shm_root_tail_t: the rest of a longer name, who bound
 *            it) in another, so that lookups over many names touch a
 *            sixth of the pages they would with whole entries. An entry
 *            holds one name and stays where it is while it does.
 *   index    two open-addressed tables of hdr->roots_nslots 64-bit slots;
 *            lookups use index[roots_gen & 1].
 *   ops      one shm_root_op_t per client slot: the last change the slot
 *            asked for, so that a request resent after a restart of heapd
 *            is answered, not applied a second time.
 * Names are hashed with a key, the arena's id (roots_hash).
 *
 * An entry's binding is double-buffered. off[ver & 1] and info[ver & 1] are
 * the binding (off 0: none); heapd writes the other record, then bumps ver,
 * which is the commit. So a reader never sees half a binding and never
 * waits for a writer, not even one killed in the middle of a write. A
 * reader reads ver, then the name and off[ver & 1], then ver again, and
 * reads again if it moved (roots_lookup). heapd writes a name only into an
 * entry whose binding is 0, so a half-written name is never taken for
 * bound, and it issues a release fence before it writes anything an older
 * ver may be read with (daemon/roots.c).
 *
 * Index slots: ROOTS_SLOT_EMPTY, ROOTS_SLOT_TOMB, or tag << 32 | (entry +
 * 2), the tag being the high half of the name's hash; probes are linear
 * from hash & (nslots - 1). The index lookups use changes by single stores
 * only: empty or tombstone -> entry when a new name is bound, entry ->
 * tombstone when a name loses its binding. No slot moves and no slot
 * becomes empty, so a bound name stays reachable whatever happens to its
 * neighbours while a reader probes past them. Tombstones are cleared by a
 * rebuild into the other index, which no lookup uses, followed by
 * roots_gen++ (the commit). A lookup that found its name trusts the entry's
 * own ver; one that found nothing checks that roots_gen did not move while
 * it probed (the index it read may be the one being rebuilt), else probes
 * again.
 *
 * Pins. While a root names an object, the object's bit in its span's pin
 * words (segment_pins) is set, and, for a small span, every page-map entry
 * of the span carries HEAPD_PAGEMAP_PINNED. A free of a pinned object sets its free bit as any
 * free does, but no fold clears the alloc bit of a pinned object
 * (bitmap_fold_word), and a large one is not given back (daemon/large.c),
 * so its slot is not handed out again while a name can lead to it. When its
 * last root goes, heapd clears the pin and the next fold finishes the free.
 * The order that makes this hold against a free and a fold that run while
 * heapd binds, a Dekker pattern with sequentially consistent fences:
 *   heapd:  set the pin bit and the flag; fence; read the alloc and free
 *           bits: bind only an object whose alloc bit is set and free bit
 *           clear, else clear the pin again;
 *   a fold: read the free word; fence; read the flag and the pin word:
 *           leave pinned objects' bits alone.
 * Either the fold sees the pin, or heapd sees the free bit and refuses. The
 * owner thread's direct clear of its own objects' alloc bits (client/api.c)
 * is kept off pinned spans by the flag; one that raced with a bind is found
 * by the owner's next window load, which fences before it reads the pins
 * and sets such an object's alloc and free bits back (client/mcache.c).
 */
#ifndef HEAPD_SHM_ROOTS_H
#define HEAPD_SHM_ROOTS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bitmap.h"
#include "layout.h"
#include "segment.h"

#define ROOTS_NAME_MAX 255u
#define ROOTS_NAME_WORDS 32u        /* a name's bytes, zero-padded, as 64-bit words */
#define ROOTS_HEAD_WORDS 4u         /* of which the head holds the first */
#define ROOTS_DEFAULT_MAX 65536u    /* entries of a new arena unless --max-roots says */
#define ROOTS_MAX_LIMIT (1u << 22)
#define ROOTS_HEAD_SIZE 64u
#define ROOTS_TAIL_SIZE 320u

#define ROOTS_SLOT_EMPTY 0u
#define ROOTS_SLOT_TOMB 1u

/* One binding of an entry: who bound what, for heapctl. */
typedef struct shm_root_info {
	uint64_t size;          /* usable size of the object */
	uint64_t time_ns;       /* CLOCK_REALTIME when bound */
	uint64_t token;         /* the binding request's token (shm_root_op_t) */
	uint32_t pid, uid;      /* of the client that bound it */
	uint32_t slot;          /* its client slot */
	uint32_t pad;
} shm_root_info_t;

/* An entry's head: one cache line, written by heapd only. */
typedef struct shm_root {
	_Atomic uint64_t ver;   /* the binding is record ver & 1; bumping ver is the commit */
	uint64_t off[2];        /* arena offset of the object of each record; 0: unbound */
	uint32_t tag;           /* the name's hash >> 32 */
	uint8_t len;            /* name length, 1..ROOTS_NAME_MAX; 0: never named */
	uint8_t pad[3];
	uint64_t name[ROOTS_HEAD_WORDS]; /* the name's first bytes, then zeros */
} shm_root_t;

/* Its tail, in the same entry's place of the tails' array. */
typedef struct shm_root_tail {
	uint64_t name[ROOTS_NAME_WORDS - ROOTS_HEAD_WORDS]; /* the rest of the name, then zeros */
	shm_root_info_t info[2]; /* who bound record 0 and 1 */
	uint8_t pad[16];
} shm_root_tail_t;

_Static_assert(sizeof(shm_root_t) == ROOTS_HEAD_SIZE, "a root's head is one cache line");
_Static_assert(sizeof(shm_root_tail_t) == ROOTS_TAIL_SIZE, "a root's tail is five cache lines");

/*
 * A client slot's last change: written by heapd before the change's commit
 * (done 0), done set after it, and settled by recovery (an entry whose
 * binding carries the token committed it).
 */
typedef struct shm_root_op {
	uint64_t token;         /* 0: none */
	uint32_t entry;         /* the entry it changed */
	uint32_t done;          /* it committed */
} shm_root_op_t;

static inline uint64_t roots_align(uint64_t v)
{
	return (v + HEAPD_PAGE_SIZE - 1) / HEAPD_PAGE_SIZE * HEAPD_PAGE_SIZE;
}

/* Bytes of each piece of the directory, from the header's geometry. */
static inline uint64_t roots_heads_size(const shm_header_t *hdr)
{
	return roots_align((uint64_t)hdr->roots_max * ROOTS_HEAD_SIZE);
}

static inline uint64_t roots_entries_size(const shm_header_t *hdr)
{
	return roots_heads_size(hdr) + roots_align((uint64_t)hdr->roots_max * ROOTS_TAIL_SIZE);
}

static inline uint64_t roots_index_size(const shm_header_t *hdr)
{
	return roots_align(2ULL * hdr->roots_nslots * sizeof(uint64_t));
}

static inline uint64_t roots_ops_size(const shm_header_t *hdr)
{
	return roots_align((uint64_t)hdr->max_clients * sizeof(shm_root_op_t));
}

/* Index i (0 or 1) of the directory. */
static inline _Atomic uint64_t *roots_index(const segment_t *seg, uint64_t i)
{
	return (_Atomic uint64_t *)seg->roots_index + (i & 1) * seg->hdr->roots_nslots;
}

static inline uint64_t roots_slot(uint32_t tag, uint32_t entry)
{
	return (uint64_t)tag << 32 | (entry + 2);
}

/* The entry of an index slot holding one (>= 2). */
static inline uint32_t roots_slot_entry(uint64_t slot)
{
	return (uint32_t)slot - 2;
}

/* ---- names ---- */

/* A name as lookups compare it: its bytes as zero-padded words, and its hash. */
typedef struct roots_key {
	uint64_t w[ROOTS_NAME_WORDS];
	uint64_t hash;
	uint32_t len;
	uint32_t nwords;
} roots_key_t;

/* The hash of a name of len bytes given as zero-padded words, keyed by seed (the arena id). */
uint64_t roots_hash(uint64_t seed, const uint64_t *w, uint32_t len);

/*
 * Make k from len bytes at name, for the arena with id seed. -EINVAL for an
 * empty name or one holding a NUL, -ENAMETOOLONG beyond ROOTS_NAME_MAX.
 */
int roots_key(roots_key_t *k, uint64_t seed, const void *name, size_t len);

/* The same from a C string, which need not end within ROOTS_NAME_MAX + 1 bytes. */
int roots_key_str(roots_key_t *k, uint64_t seed, const char *name);

/* Where word i of entry e's name is, in its head or its tail. */
static inline uint64_t *roots_name_at(const segment_t *seg, uint32_t e, uint32_t i)
{
	return i < ROOTS_HEAD_WORDS ? &seg->roots[e].name[i]
	                            : &seg->roots_tails[e].name[i - ROOTS_HEAD_WORDS];
}

/* Word i of entry e's name (relaxed: heapd may be writing it). */
static inline uint64_t roots_name_word(const segment_t *seg, uint32_t e, uint32_t i)
{
	return atomic_load_explicit((_Atomic uint64_t *)roots_name_at(seg, e, i), memory_order_relaxed);
}

/* Entry e's name into buf (ROOTS_NAME_WORDS * 8 bytes, zero-padded); returns its length. */
uint32_t roots_name(const segment_t *seg, uint32_t e, uint8_t *buf);

/* Who bound record rec (0 or 1) of entry e. */
static inline shm_root_info_t *roots_info(const segment_t *seg, uint32_t e, unsigned rec)
{
	return &seg->roots_tails[e].info[rec & 1];
}

/*
 * A binding's identity: its entry and the ver that made it. Two bindings of
 * one name to one object, with another in between, differ (no ABA).
 */
static inline uint64_t roots_binding_id(uint32_t entry, uint64_t ver)
{
	return (uint64_t)(entry + 1) << 32 | (uint32_t)ver;
}

/*
 * The object bound to k now, without a lock or a system call: 0 with its
 * arena offset in *off and its entry in *entry and the binding's identity
 * in *id (any may be NULL), or -ENOENT. See the top of the file for why it
 * never blocks and never returns a binding that did not exist at some
 * moment during the call.
 */
int roots_lookup(const segment_t *seg, const roots_key_t *k, uint64_t *off, uint32_t *entry,
                 uint64_t *id);

/* ---- the walk of the entries (heapd, the checker) ---- */

/*
 * Every entry holding a binding, in entry order. With the meta file's
 * descriptor (heapd), runs of entries the file has never held are skipped
 * without reading them. Entries may change under a walk only by heapd's own
 * hand, so its callers are the heapd thread that changes roots, or run when
 * nothing does.
 */
typedef struct roots_walk {
	const segment_t *seg;
	uint32_t next;          /* the entry to look at next */
	uint64_t data_end;      /* offset up to which the file is known to hold data */
} roots_walk_t;

/* Start a walk at entry from (0: the first). */
void roots_walk_start(roots_walk_t *w, const segment_t *seg, uint32_t from);

/* 1 with the next bound entry in *entry, or 0 at the end. */
int roots_walk_next(roots_walk_t *w, uint32_t *entry);

/* The binding record of entry r now (heapd's own view: no concurrent writer). */
static inline unsigned roots_cur(const shm_root_t *r)
{
	return (unsigned)(atomic_load_explicit(&r->ver, memory_order_acquire) & 1);
}

/* ---- objects ---- */

/* Where an object is: what a root may name. */
typedef struct roots_obj {
	uint32_t span;          /* its span's start page */
	uint32_t idx;           /* index in the span (0 for a large object) */
	uint32_t nelems;        /* objects in the span (1 for a large object) */
	int large;
	uint64_t size;          /* usable size */
} roots_obj_t;

/*
 * The object starting at arena offset off, per the span table: an object
 * start of an in-use span, whether allocated or not. 0, or -EINVAL.
 */
int roots_object(const segment_t *seg, uint64_t off, roots_obj_t *o);

/* Its alloc bit and free bit now, as 0 or 1. */
void roots_object_bits(const segment_t *seg, const roots_obj_t *o, int *alloc, int *freed);

/* The pins of the span starting at page span, as a fold reads them (bitmap.h). */
static inline bitmap_pins_t roots_pins_of(const segment_t *seg, uint32_t span)
{
	bitmap_pins_t p = { &seg->pagemap[span], segment_pins(seg, span) };
	return p;
}

/* Its pin bit (read after a fence where the order matters: see the top of the file). */
static inline int roots_object_pinned(const segment_t *seg, const roots_obj_t *o)
{
	return (int)(atomic_load_explicit((_Atomic uint64_t *)&segment_pins(seg, o->span)[o->idx >> 6],
	                                  memory_order_relaxed) >> (o->idx & 63) & 1);
}

#endif
