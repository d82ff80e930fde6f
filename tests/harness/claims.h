// SPDX-License-Identifier: MIT
/*
 * claims.h - a claim map that catches one piece of the arena handed out
 * twice, in whichever processes the two objects live.
 *
 * One bit per 8 bytes of the arena (the smallest class), in memory shared
 * with every child forked after hclaims_init. A process that gets an object
 * from the library claims its bytes (an atomic OR per word), and gives them
 * up before it frees the object. A claim that finds a bit already set means
 * that two live objects overlap.
 */
#ifndef HEAPD_TESTS_HARNESS_CLAIMS_H
#define HEAPD_TESTS_HARNESS_CLAIMS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct hclaims {
	_Atomic uint64_t *bits;   /* one bit per 8 bytes of the arena */
	uint64_t nbits;
} hclaims_t;

/* A map as large as the arena in directory arena_dir (its header's map_size). Asserts. */
void hclaims_init(hclaims_t *c, const char *arena_dir);

/* Claim [off, off + size). 0, -1 if a byte of it was claimed already, -2 if out of range. */
int hclaims_claim(hclaims_t *c, uint64_t off, uint64_t size);

/* Give [off, off + size) up again. */
void hclaims_unclaim(hclaims_t *c, uint64_t off, uint64_t size);

#endif
