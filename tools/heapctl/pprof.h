// SPDX-License-Identifier: MIT
/*
 * pprof.h - heap-profile samples (as heapd serves them, proto/heap.proto)
 * turned into a pprof profile (pprof.proto), symbolized, gzip'd; and the
 * top allocation sites as text.
 *
 * The profile is Go's heap profile, so that pprof's tools read it as they
 * read Go's: four sample types, alloc_objects/count, alloc_space/bytes,
 * inuse_objects/count and inuse_space/bytes, where a sample stands for
 * 1 / (1 - exp(-size / rate)) allocations of its size (Go's scaling; 1 at
 * rate 1), and a numeric label "bytes" gives the object size. Samples with
 * the same stack, size and rate are one pprof sample, as Go's buckets are.
 * Each process's loaded objects are its mappings (memory range, file
 * offset, path, build ID), and each return address a location at the call
 * (the return address minus 1) in the mapping that holds it, symbolized
 * with the function of the object's ELF symbol table (elfsym.h) when the
 * file can be read and its build ID is the one the process loaded.
 *
 * Which samples: every one, with inuse_space the default type (view
 * PPROF_LIVE), or with alloc_space the default (PPROF_ALLOC); exited_only
 * keeps only live samples of processes that have exited (the leak view).
 *
 * Warnings (a binary that cannot be read, or has changed) go to the stream
 * the caller gives; nothing else is printed. Paths and symbol names are
 * clients' bytes: what is printed of them is escaped (format_text).
 */
#ifndef HEAPD_TOOLS_HEAPCTL_PPROF_H
#define HEAPD_TOOLS_HEAPCTL_PPROF_H

#include <stddef.h>
#include <stdio.h>

#include "heap.pb-c.h"
#include "pprof.pb-c.h"

enum {
	PPROF_LIVE = 0,
	PPROF_ALLOC = 1,
};

/* What heapd sent, all pages of one snapshot together. */
typedef struct heapprof {
	const Heapd__ProfileSummary *summary;
	const Heapd__ProfileProcess **procs;
	size_t nprocs;
	const Heapd__ProfileSample **samples;
	size_t nsamples;
} heapprof_t;

typedef struct pprof pprof_t;

/* Build the profile of hp. NULL if out of memory; warnings go to warn (NULL: none). */
pprof_t *pprof_build(const heapprof_t *hp, int view, int exited_only, FILE *warn);

void pprof_free(pprof_t *p);

/* The profile, packed and gzip'd, to fd. 0 or -errno. */
int pprof_write(const pprof_t *p, int fd);

/* The protobuf message itself (for tests and callers that read it). */
const Pprof__Profile *pprof_message(const pprof_t *p);

/*
 * The top n allocation sites (the function, or the address, of each
 * sample's first frame) by the default sample type, with a header saying
 * what the snapshot holds (samples, live, dropped, processes).
 */
void pprof_top(const pprof_t *p, const heapprof_t *hp, size_t n, FILE *out);

#endif
