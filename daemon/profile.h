// SPDX-License-Identifier: MIT
/*
 * profile.h - heapd's side of heap profiles: snapshots of the records that
 * clients write (shm/profrec.h), checked and repaired, served page by page
 * (the Profile request, proto/heap.proto); and the live bytes each client
 * allocated, for the Clients request.
 *
 * A snapshot (profile_snapshot), over every record the data file holds:
 *   1. reads it through the checked reader; garbage is counted, skipped and
 *      cleared, and so is a record left BUSY by a writer that died mid-way
 *      (the same BUSY state a second or more after the last snapshot saw it);
 *   2. checks a LIVE record against the bitmaps, under the heap lock so that
 *      the span cannot change shape meanwhile: its object must still be
 *      allocated (alloc bit set, free bit clear) and sampled. One that is
 *      not is reported freed and marked so, as the fold to come would have
 *      (a missing sampled bit alone waits PROFILE_SETTLE_NS: its writer may
 *      be between its two stores);
 *   3. groups the samples by process (pid, start time and mapping set),
 *      copies each mapping set through its checked reader, and tells whether
 *      each process has exited: a live slot names it, or else its pid has
 *      that start time and a pidfd says it runs. This is asked after the
 *      records are read, without the heap lock, once per (pid, start time);
 *   4. clears the mapping sets of exited processes that no record names, so
 *      that new processes find room.
 * Profile pages (profile_page) then send the processes, then the samples,
 * each page under PROFILE_PAGE_BYTES packed.
 *
 * Attribution (profile_attribute): per slot, the live bytes of large
 * objects charged to it (exact: a large object is charged to the client
 * that allocated it) and of the objects in the small spans charged to it;
 * per process, the live sampled bytes scaled by the sampling rate (Go's
 * estimate, scale = 1 / (1 - exp(-size / rate))).
 *
 * Threads: the event-loop thread; the heap lock is taken in chunks.
 */
#ifndef HEAPD_DAEMON_PROFILE_H
#define HEAPD_DAEMON_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "heap.pb-c.h"
#include "profrec.h"

#define PROFILE_PAGE_BYTES (512u << 10)    /* packed bytes of processes and samples per page */
#define PROFILE_SETTLE_NS 10000000000ULL    /* 10 s: a sample's writer has set its sampled bit */
#define PROFILE_BUSY_NS 1000000000ULL       /* a record BUSY this long has lost its writer */

struct daemon;

/* The daemon's private profile state. */
typedef struct profile {
	prof_view_t v;             /* the arena's region; v.recs NULL without one */
	uint32_t *busy_seen;       /* per record: its state when the last snapshot saw it BUSY, else 0 */
	uint32_t *set_busy_seen;   /* the same for mapping sets */
	uint64_t busy_ns;          /* when that snapshot was (CLOCK_MONOTONIC) */
} profile_t;

/* One process of a snapshot. */
typedef struct profile_proc {
	uint32_t pid, uid, slot, mapset;
	uint64_t start_time;
	int exited;
	prof_mapset_t *set;        /* its checked mapping set, NULL if none */
} profile_proc_t;

/* One sample of a snapshot. */
typedef struct profile_sample {
	uint32_t proc;             /* index into procs */
	uint32_t nframes;
	int live;
	uint64_t off, size, rate, time;
	uint64_t frames[PROF_FRAMES];
} profile_sample_t;

typedef struct profile_snap {
	uint32_t refs;             /* sessions holding it */
	Heapd__ProfileSummary summary;
	profile_proc_t *procs;
	size_t nprocs;
	profile_sample_t *samples;
	size_t nsamples;
	uint32_t lookups;          /* liveness questions asked: one per distinct (pid, start time) */
} profile_snap_t;

/* Set up p for d's arena (logs when the arena's record count is not the configured one). */
int profile_open(profile_t *p, struct daemon *d);
void profile_close(profile_t *p);

/* Take a snapshot (steps 1-4 above); refs 1. NULL if out of memory. */
profile_snap_t *profile_snapshot(struct daemon *d);

/* Drop a reference; the last frees it. NULL is fine. */
void profile_snap_put(profile_snap_t *s);

/*
 * Fill r with the page of s that starts at cursor (0: the first, with the
 * summary). Its messages live in *storage until profile_page_free.
 * -EINVAL for a cursor past the end, -ENOMEM.
 */
int profile_page(const profile_snap_t *s, uint32_t cursor, Heapd__ProfileReply *r, void **storage);
void profile_page_free(void *storage);

/* Live bytes per client (see the top). */
typedef struct profile_attr_proc {
	uint32_t pid, uid, slot;
	uint64_t start_time;
	int exited;
	double bytes, objects;     /* scaled estimates */
} profile_attr_proc_t;

typedef struct profile_attr {
	uint32_t nslots;
	uint64_t *large_bytes;     /* per slot */
	uint64_t *small_bytes;     /* per slot */
	profile_attr_proc_t *procs;
	size_t nprocs;
} profile_attr_t;

/* Count them now. NULL if out of memory. */
profile_attr_t *profile_attribute(struct daemon *d);
void profile_attr_free(profile_attr_t *a);

/* The estimate for the process in slot's entry, or NULL if it has no live samples. */
const profile_attr_proc_t *profile_attr_find(const profile_attr_t *a, uint32_t pid,
                                             uint64_t start_time);

#endif
