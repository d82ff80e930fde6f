// SPDX-License-Identifier: MIT
/*
 * alloc_malloc.c - the per-process malloc peers: glibc, jemalloc, mimalloc
 * and tcmalloc.
 *
 * One source, built once per peer with BENCH_GLIBC, BENCH_JEMALLOC,
 * BENCH_MIMALLOC or BENCH_TCMALLOC defined, and linked against that peer's
 * library, which replaces malloc and free for the whole binary. setup()
 * checks that the replacement took effect, so a link that silently fell
 * back to glibc cannot pass for another allocator.
 *
 * Objects cannot leave the process, so these peers run workloads 1, 2, 5
 * and 7 only. Resident memory is the process's RSS above the baseline,
 * measured after asking the peer to return its free memory to the OS.
 */
#include "bench.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#if defined(BENCH_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define PEER_NAME "jemalloc"
#elif defined(BENCH_MIMALLOC)
#include <mimalloc.h>
#define PEER_NAME "mimalloc"
#elif defined(BENCH_TCMALLOC)
#include <gperftools/malloc_extension_c.h>
#define PEER_NAME "tcmalloc"
#else
#define PEER_NAME "glibc"
#endif

/* 1 if p came from the peer this binary is meant to measure. */
static int peer_owns(void *p)
{
#if defined(BENCH_JEMALLOC)
	uint64_t before = 0, after = 0;
	size_t len = sizeof(uint64_t);
	void *volatile q; /* volatile: the compiler may not elide the pair */
	if (mallctl("thread.allocated", &before, &len, NULL, 0) != 0)
		return 0;
	q = malloc(4096);
	if (mallctl("thread.allocated", &after, &len, NULL, 0) != 0)
		after = before;
	free(q);
	(void)p;
	return after > before;
#elif defined(BENCH_MIMALLOC)
	return mi_check_owned(p);
#elif defined(BENCH_TCMALLOC)
	return MallocExtension_GetOwnership(p) == MallocExtension_kOwned;
#else
	(void)p;
	return 1;
#endif
}

/* Give free memory back to the OS, as far as the peer allows. */
static void peer_trim(void)
{
#if defined(BENCH_JEMALLOC)
	mallctl("arena." "4096" ".purge", NULL, NULL, NULL, 0);
#elif defined(BENCH_MIMALLOC)
	mi_collect(true);
#elif defined(BENCH_TCMALLOC)
	MallocExtension_ReleaseFreeMemory();
#else
	malloc_trim(0);
#endif
}

static int peer_setup(void)
{
	void *p = calloc(1, 64);
	int ok = p && peer_owns(p);
	free(p);
	if (!ok) {
		bench_note("malloc is not %s's in this binary; check how it was linked", PEER_NAME);
		return -ENOENT;
	}
	return 0;
}

static void peer_teardown(void)
{
}

static int peer_attach(void)
{
	return 0;
}

static void peer_detach(void)
{
}

static uint64_t peer_ptr_to_off(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static void *peer_off_to_ptr(uint64_t off)
{
	return (void *)(uintptr_t)off;
}

static int peer_resident_base(uint64_t *baseline)
{
	peer_trim();
	return bench_rss(baseline);
}

static int peer_resident(uint64_t baseline, uint64_t *bytes)
{
	uint64_t rss;
	peer_trim();
	int rc = bench_rss(&rss);
	if (rc < 0)
		return rc;
	*bytes = rss > baseline ? rss - baseline : 0;
	return 0;
}

const bench_alloc_t bench_alloc = {
	.name = PEER_NAME,
	.flags = 0,
	.setup = peer_setup,
	.teardown = peer_teardown,
	.attach = peer_attach,
	.detach = peer_detach,
	.malloc = malloc,
	.free = free,
	.ptr_to_off = peer_ptr_to_off,
	.off_to_ptr = peer_off_to_ptr,
	.resident_base = peer_resident_base,
	.resident = peer_resident,
};
