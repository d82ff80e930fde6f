// SPDX-License-Identifier: MIT
/*
 * sizeclass.h - size classes for small objects (<= HEAPD_MAX_SMALL bytes).
 *
 * The table is generated at build time by gen_sizeclasses.c, with Go's
 * rules: classes up to 32 KiB, each class's span wastes at most 12.5% in its
 * tail, and each class has the magic that turns division by its size into a
 * multiply and shift. Class 0 means "large object".
 */
#ifndef HEAPD_SHM_SIZECLASS_H
#define HEAPD_SHM_SIZECLASS_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "sizeclasses_gen.h" /* SIZECLASS_COUNT and the tables, in the build directory */

/*
 * The tables are the library's own, never another shared object's: hidden,
 * so that code reaches them without a load of their address.
 */
#pragma GCC visibility push(hidden)

/* class_size[c]: object size; class_npages[c]: span length; class_nelems[c]: objects per span;
 * class_divmul[c]: (off * divmul) >> 32 == off / size for every offset inside a span. */
extern const uint32_t sizeclass_size[SIZECLASS_COUNT];
extern const uint32_t sizeclass_npages[SIZECLASS_COUNT];
extern const uint32_t sizeclass_nelems[SIZECLASS_COUNT];
extern const uint32_t sizeclass_divmul[SIZECLASS_COUNT];

/* The same figures for the free path, one class to a 32-byte entry. */
typedef struct sizeclass_info {
	uint64_t magic;          /* UINT64_MAX / size + 1, for sizeclass_divide */
	uint32_t size;
	uint32_t divmul;
	uint32_t nelems;
	uint32_t freebits_delta; /* heapd_freebits_delta(nelems) */
	uint64_t pad;
} sizeclass_info_t;

extern const sizeclass_info_t sizeclass_info[SIZECLASS_COUNT];

/* A hash of the four tables above; an arena records the one it was laid out with. */
extern const uint64_t sizeclass_signature;

/* Lookup tables: size -> class, as Go's size_to_class8 / size_to_class128. */
extern const uint8_t sizeclass_small8[1024 / 8 + 1];
extern const uint8_t sizeclass_large128[(HEAPD_MAX_SMALL - 1024) / 128 + 1];

#pragma GCC visibility pop

/* The smallest class whose objects hold size bytes; size must be 1..HEAPD_MAX_SMALL. */
static inline uint32_t sizeclass_of(size_t size)
{
	if (size <= 1024 - 8)
		return sizeclass_small8[(size + 7) >> 3];
	return sizeclass_large128[(size - 1024 + 127) >> 7];
}

static inline uint32_t sizeclass_div(uint32_t off, uint32_t divmul)
{
	return (uint32_t)(((uint64_t)off * divmul) >> 32);
}

/*
 * off / size for a class's magic (sizeclass_info_t), and whether size
 * divides off, from one multiply: the high half of magic * off is the
 * quotient, and the low half is below magic exactly when the remainder is
 * 0 (direct computation of the remainder, after Lemire, Kaser and Kurz;
 * gen_sizeclasses checks both for every offset of every class's span).
 */
static inline uint32_t sizeclass_divide(uint32_t off, uint64_t magic, int *exact)
{
	unsigned __int128 prod = (unsigned __int128)magic * off;
	*exact = (uint64_t)prod < magic;
	return (uint32_t)(prod >> 64);
}

#endif
