// SPDX-License-Identifier: MIT
/*
 * profrec.h - heap-profile records in the arena: who allocated the sampled
 * objects, with which stack, and whether they are still live (Go's profile
 * specials, kept in shared memory so that they outlive the process).
 *
 * The profile region sits in the data file, between the bitmaps and the
 * pages (layout.h), so every client writes it and nobody trusts it:
 *
 *   [ counters, 4 KiB ][ mapping-set states ][ records ][ mapping sets ]
 *
 *   - A record (prof_rec_t, 320 bytes) is one sampled allocation: the
 *     object's arena offset, its size, the sampling rate, the time, the
 *     allocating process (pid, start time, uid, slot), the mapping set that
 *     describes its loaded objects, and up to PROF_FRAMES return addresses,
 *     innermost first. A record lives at a position near the hash of its
 *     object's offset (prof_home): within PROF_WINDOW positions of it, so
 *     that whoever folds the object's free bit finds it by the offset.
 *   - A mapping set (prof_mapset_t) is one process's loaded objects, as
 *     dl_iterate_phdr reports them: the executable range of each, its load
 *     bias, its path and GNU build ID, which symbolization needs after the
 *     process has gone. Its state word sits in a compact array apart, so
 *     that a search for a free set reads a few lines, not a page per set.
 *   - The counters, of the events a profile should admit to: samples
 *     dropped because every record of their window held a live sample,
 *     freed samples whose record a new sample took over (the alloc view
 *     forgets those), and processes that found no free mapping set. (No
 *     counter moves on every sample: a shared line written at each one
 *     would cost each sample a cache miss of its own.)
 *
 * A state word is seq << 2 | kind: EMPTY (never used, or cleared by heapd),
 * BUSY (being written by whoever moved it there), LIVE (a sampled object
 * not yet known to be freed), FREED. Every claim bumps seq, so a
 * compare-and-swap on a state a reader saw fails once the record is reused.
 * A state word of 0 is a record never used; heapd's clearing bumps seq, so
 * a cleared record is EMPTY but not 0. Since states never return to 0 and
 * a claim takes a record no further than the first EMPTY one, no record of
 * a window past its first never-used one is in use: the searches by offset
 * stop there, and look past records heapd cleared.
 *
 * Life of a sample (client/profile.c, the one writer of records):
 *   1. the owner of the span allocates the object (its alloc bit);
 *   2. prof_record claims the first EMPTY record of the window, or the
 *      first FREED one if there is no EMPTY one among the first few (a LIVE
 *      record of the same offset on the way is a stale one and is marked
 *      FREED), writes every field, then publishes it LIVE by a
 *      compare-and-swap from the state it claimed (a writer that stalled
 *      while heapd cleared its record drops the sample); so a table full
 *      of freed samples keeps the most recent ones;
 *   3. the owner sets the object's sampled bit (below).
 * Killed between 2 and 3, the record stays LIVE for an object that is
 * indeed allocated and that nobody will ever free: a leak, reported as one.
 *
 * Sampled bits: spans of at most PROF_SAMPLED_MAX objects (every class but
 * the 8-byte one, and large spans) keep a third bitmap, PROF_SAMPLED_DELTA
 * words after their alloc words, in words the layout leaves unused
 * (HEAPD_BITS_WORDS_PER_PAGE). Bit i says object i has a LIVE record. Like
 * alloc bits, only the span's owner writes them. The 8-byte class is never
 * sampled: a sampled 8-byte allocation is served from the 16-byte class.
 *
 * Freed: a sampled bit set with its alloc bit clear is a sampled object
 * whose free has been folded (or whose alloc bit its owning thread cleared
 * directly). Every place that clears alloc bits, or makes a slot reusable,
 * reaps such bits first (prof_reap_word): the owner's fold in the client
 * (client/mcache.c), heapd's sweep of a span (daemon/central.c), and the
 * freeing of a whole span (span_make_free: a large object, or an empty
 * span). Reaping marks the object's record FREED and clears the bit, as
 * Go's sweeper calls mProf_Free. A reader (heapd, for heapctl) also checks
 * each LIVE record against the bitmaps, so a free whose fold is still to
 * come already counts as freed in a profile.
 *
 * Readers copy a record or a set out (prof_read_rec, prof_read_mapset) and
 * check every field and index before using any: garbage yields -EINVAL and
 * a reason, never a fault.
 */
#ifndef HEAPD_SHM_PROFREC_H
#define HEAPD_SHM_PROFREC_H

#include <stdatomic.h>
#include <stdint.h>

#include "bitmap.h"
#include "segment.h"

#define PROF_FRAMES 32u          /* return addresses a record keeps */
#define PROF_WINDOW 32u          /* positions from its home a record may take */
#define PROF_MAPS 64u            /* objects one mapping set describes */
#define PROF_PATH_MAX 184u       /* bytes of a path, NUL included */
#define PROF_BUILD_ID_MAX 32u
#define PROF_SAMPLED_DELTA 8u    /* sampled words, counted from the alloc words */
#define PROF_SAMPLED_MAX 512u    /* spans with more objects have no sampled words */
#define PROF_DEFAULT_RECORDS 16384u
#define PROF_MAX_RECORDS (1u << 24)

/* Kinds of a state word (the low two bits). */
enum {
	PROF_EMPTY = 0,
	PROF_BUSY = 1,
	PROF_LIVE = 2,
	PROF_FREED = 3,
};

static inline uint32_t prof_kind(uint32_t state)
{
	return state & 3u;
}

/* The state after a claim of a record last in state old. */
static inline uint32_t prof_claimed(uint32_t old)
{
	return ((old >> 2) + 1) << 2 | PROF_BUSY;
}

/* One sampled allocation. 320 bytes: a line of fields, then the frames. */
typedef struct prof_rec {
	_Atomic uint32_t state;
	uint16_t nframes;        /* <= PROF_FRAMES */
	uint16_t pad;
	uint64_t off;            /* the object's arena offset (hc_ptr_to_off) */
	uint64_t size;           /* bytes it takes: its class's size, or its span's pages */
	uint64_t rate;           /* the sampling rate in force, bytes (1: every allocation) */
	uint64_t time;           /* CLOCK_REALTIME ns of the allocation */
	uint64_t start_time;     /* the allocating process's start time (/proc stat field 22) */
	uint32_t pid, uid;
	uint32_t slot;           /* its client slot (HEAPD_NIL: none known) */
	uint32_t mapset;         /* its mapping set (HEAPD_NIL: none) */
	uint64_t frames[PROF_FRAMES]; /* return addresses, the allocation site first */
} prof_rec_t;

_Static_assert(sizeof(prof_rec_t) == 320, "a record is 5 cache lines");

/* One loaded object of a process. 256 bytes. */
typedef struct prof_map {
	uint64_t lo, hi;         /* its executable segment, [lo, hi) in the process */
	uint64_t bias;           /* load bias: an address minus bias is the file's vaddr */
	uint64_t file_off;       /* file offset of lo */
	uint8_t build_id_len;    /* <= PROF_BUILD_ID_MAX; 0: none found */
	uint8_t pad[7];
	uint8_t build_id[PROF_BUILD_ID_MAX];
	char path[PROF_PATH_MAX]; /* NUL-terminated; "" if the loader gave none */
} prof_map_t;

_Static_assert(sizeof(prof_map_t) == 256, "a mapping is 256 bytes");

/* One process's loaded objects (its state word is prof_region_t.mapset_state[i]). */
typedef struct prof_mapset {
	uint32_t pid;
	uint32_t uid;
	uint64_t start_time;
	uint32_t slot;
	uint32_t nmaps;          /* <= PROF_MAPS; maps[0] is the executable */
	uint64_t adds;           /* dl_iterate_phdr's load count it was taken at */
	uint64_t time;           /* CLOCK_REALTIME ns when it was taken */
	uint64_t pad[3];
	prof_map_t maps[PROF_MAPS];
} prof_mapset_t;

_Static_assert(sizeof(prof_mapset_t) == 64 + PROF_MAPS * 256, "a mapping set is a line and its maps");

/* The counters at the start of the region. Any process adds to them. */
typedef struct prof_counters {
	_Atomic uint64_t dropped;       /* samples not recorded: their window held only live ones */
	_Atomic uint64_t recycled;      /* freed samples whose record a new sample took */
	_Atomic uint64_t mapsets_full;  /* processes that found no free mapping set, or lost theirs */
} prof_counters_t;

#define PROF_COUNTERS_SIZE 4096u

/* A process's view of its arena's profile region (prof_view); all NULL/0 without one. */
typedef struct prof_view {
	prof_counters_t *counters;
	_Atomic uint32_t *mapset_state;
	prof_rec_t *recs;
	prof_mapset_t *mapsets;
	uint32_t nrecs;
	uint32_t nmapsets;
	uint32_t max_clients;    /* slots a record may name */
	uint64_t pages_off;      /* arena offsets of the pages region, for bounds */
	uint64_t pages_end;
} prof_view_t;

/* Mapping sets for a region of nrecs records: one per 64, 16 to 4096. */
uint32_t prof_nmapsets(uint32_t nrecs);

/* Bytes of the region for nrecs records (0 for none), a multiple of HEAPD_PAGE_SIZE. */
uint64_t prof_region_size(uint32_t nrecs);

/* seg's region, as its header says. 0, or -ENOENT when the arena has none. */
int prof_view(const segment_t *seg, prof_view_t *v);

/* The record a sample of the object at off looks for first. */
static inline uint32_t prof_home(uint64_t off, uint32_t nrecs)
{
	uint64_t h = (off >> 3) * 0x9e3779b97f4a7c15ULL;
	return (uint32_t)(((h >> 32) * (uint64_t)nrecs) >> 32);
}

/* ---- sampled bits ---- */

/* Spans of nelems objects (1 for large) have sampled words. */
static inline int prof_sampleable(uint32_t nelems)
{
	return nelems <= PROF_SAMPLED_MAX;
}

/* The sampled words of the span starting at page span (only if prof_sampleable). */
static inline uint64_t *prof_sampled_words(const segment_t *seg, uint32_t span)
{
	return segment_allocbits(seg, span) + PROF_SAMPLED_DELTA;
}

/*
 * The owner's reap of sampled word w of a span whose objects begin at
 * arena offset base, elemsize bytes apart: every sampled object whose alloc
 * bit is clear in alloc_word has been freed; mark its record FREED and clear
 * its sampled bit. Returns the bits reaped. Call it after any fold or
 * direct clear of the word, and before its slots are handed out again.
 */
uint64_t prof_reap_word(const prof_view_t *v, uint64_t *sampled, uint32_t w, uint64_t alloc_word,
                        uint64_t base, uint64_t elemsize);

/*
 * heapd's reap of a small span it holds, after its sweep (daemon/central.c):
 * prof_reap_word over every word. Nothing for a span of the 8-byte class or
 * an arena without a profile.
 */
void prof_reap_span(const segment_t *seg, uint32_t span);

/* 1 if any of the span's nwords sampled words has a bit set. */
int prof_any_sampled(const uint64_t *sampled, uint32_t nwords);

/*
 * A whole span goes back to the page heap (span_make_free): each object
 * whose sampled bit is still set is gone. Marks their records FREED; the
 * caller clears the words.
 */
void prof_span_gone(const segment_t *seg, uint32_t span);

/* ---- writers ---- */

/* What a sample records; prof_record copies it into a record of the region. */
typedef struct prof_sample {
	uint64_t off, size, rate, time, start_time;
	uint32_t pid, uid, slot, mapset;
	uint32_t nframes;
	const uint64_t *frames;
} prof_sample_t;

/*
 * Record a sample: prof_rec_claim, then prof_rec_publish. Returns the
 * record's index, or -ENOSPC (dropped, counted).
 */
int prof_record(const prof_view_t *v, const prof_sample_t *s);

/*
 * Claim a record in the window of off (counting a recycled or dropped
 * one): its index, with the BUSY state it now has in *claimed; -ENOSPC.
 */
int prof_rec_claim(const prof_view_t *v, uint64_t off, uint32_t *claimed);

/*
 * Write every field of claimed record i from s, then publish it LIVE by a
 * compare-and-swap from *claimed. i, or -ENOSPC (counted as dropped) if
 * the record is no longer in that state: heapd cleared it as stuck, and
 * maybe another writer holds it now.
 */
int prof_rec_publish(const prof_view_t *v, uint32_t i, uint32_t claimed, const prof_sample_t *s);

/* Mark the LIVE record of the object at off FREED. 1 if one was found. */
int prof_mark_freed(const prof_view_t *v, uint64_t off);

/*
 * Claim a free mapping set (hint: where to start looking): its index, with
 * its BUSY state in *claimed; or -ENOSPC (counted in mapsets_full).
 */
int prof_mapset_claim(const prof_view_t *v, uint32_t hint, uint32_t *claimed);

/*
 * Publish a claimed mapping set once every field is written, by a
 * compare-and-swap from claimed. 0, or -ENOSPC (counted in mapsets_full)
 * if heapd cleared it meanwhile.
 */
int prof_mapset_publish(const prof_view_t *v, uint32_t i, uint32_t claimed);

/* ---- readers: copy out, then check everything ---- */

/*
 * The walk of the records the data file holds: every index whose record
 * may be in use, in order, jumping over holes (on tmpfs, reading a hole
 * through the mapping would allocate it). Without a descriptor, or where
 * the file system cannot say, every record counts as held.
 */
typedef struct prof_walk {
	const segment_t *seg;
	const prof_view_t *v;
	uint32_t next;           /* the record to yield next */
	uint32_t end;            /* records before it are known to be held */
} prof_walk_t;

static inline void prof_walk_start(prof_walk_t *w, const segment_t *seg, const prof_view_t *v)
{
	w->seg = seg;
	w->v = v;
	w->next = 0;
	w->end = 0;
}

/* The next record index, or v->nrecs at the end. */
uint32_t prof_walk_next(prof_walk_t *w);

/*
 * Copy record i into *out with its state in *state, and check it: a LIVE
 * or FREED record whose fields are all in range and which sits in the
 * window of its offset. 0; -EAGAIN for an EMPTY or BUSY record, or one
 * that changed while it was copied; -EINVAL with a reason for garbage.
 */
int prof_read_rec(const prof_view_t *v, uint32_t i, prof_rec_t *out, uint32_t *state,
                  const char **why);

/* Copy mapping set i and check it the same way: 0, -EAGAIN (not LIVE), -EINVAL with a reason. */
int prof_read_mapset(const prof_view_t *v, uint32_t i, prof_mapset_t *out, uint32_t *state,
                     const char **why);

/*
 * heapd's repairs of what readers found: move record (or set) i from
 * exactly state `seen` to EMPTY or FREED. 1 if it was still in that state.
 */
int prof_rec_reset(const prof_view_t *v, uint32_t i, uint32_t seen, uint32_t kind);
int prof_mapset_reset(const prof_view_t *v, uint32_t i, uint32_t seen);

#endif
