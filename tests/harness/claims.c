// SPDX-License-Identifier: MIT
/*
 * claims.c - the claim map. See claims.h.
 */
#include "harness/claims.h"

#include "harness/util.h"
#include "harness/view.h"

#define GRAIN_SHIFT 3 /* 8 bytes per claim bit: the smallest class */

void hclaims_init(hclaims_t *c, const char *arena_dir)
{
	shm_header_t h;
	hview_read_header(arena_dir, &h);
	c->nbits = h.map_size >> GRAIN_SHIFT;
	c->bits = hutil_shared((c->nbits + 63) / 64 * sizeof(uint64_t));
}

/* The mask of word w's bits among grains [g0, g1). */
static uint64_t word_mask(uint64_t w, uint64_t g0, uint64_t g1)
{
	uint64_t lo = g0 > w * 64 ? g0 - w * 64 : 0;
	uint64_t hi = g1 < (w + 1) * 64 ? g1 - w * 64 : 64;
	uint64_t m = hi == 64 ? ~0ULL : (1ULL << hi) - 1;
	return m & ~((1ULL << lo) - 1);
}

int hclaims_claim(hclaims_t *c, uint64_t off, uint64_t size)
{
	uint64_t g0 = off >> GRAIN_SHIFT, g1 = (off + size + (1u << GRAIN_SHIFT) - 1) >> GRAIN_SHIFT;
	int clash = 0;

	if (size == 0 || g1 > c->nbits || g1 < g0)
		return -2;
	for (uint64_t w = g0 / 64; w * 64 < g1; w++) {
		uint64_t m = word_mask(w, g0, g1);
		if (atomic_fetch_or(&c->bits[w], m) & m)
			clash = 1;
	}
	return clash ? -1 : 0;
}

void hclaims_unclaim(hclaims_t *c, uint64_t off, uint64_t size)
{
	uint64_t g0 = off >> GRAIN_SHIFT, g1 = (off + size + (1u << GRAIN_SHIFT) - 1) >> GRAIN_SHIFT;

	if (size == 0 || g1 > c->nbits)
		return;
	for (uint64_t w = g0 / 64; w * 64 < g1; w++)
		atomic_fetch_and(&c->bits[w], ~word_mask(w, g0, g1));
}
