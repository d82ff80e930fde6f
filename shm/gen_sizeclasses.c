// SPDX-License-Identifier: MIT
/*
 * gen_sizeclasses.c - build-time generator of the size-class table.
 *
 * Usage: gen_sizeclasses OUT.h OUT.c
 *
 * The rules are Go's:
 *   1. Candidate sizes step by 8 up to 16, by 16 up to 256, then by size/8
 *      from each power of two on (32 from 256, 64 from 512, 128 from 1024),
 *      and by 256 from 2048 up to HEAPD_MAX_SMALL.
 *   2. Each candidate gets the shortest span, in whole pages, whose tail
 *      (span bytes % size) is at most 1/8 of the span.
 *   3. A candidate with the same span length and object count as the class
 *      before it replaces that class's size: the larger size costs nothing.
 *   4. Each class's size then grows, in steps of 128 bytes, as far as its
 *      span still holds the same number of objects.
 * Class 0 stands for large objects and has size 0.
 *
 * The generator checks everything a client relies on (strictly increasing
 * sizes, bounded waste, every power of two from 8 to HEAPD_MAX_SMALL a
 * class, lookup tables that give the smallest fitting class, and division
 * magic that is exact for every offset in every span) and writes nothing
 * unless all of it holds. A failed check is a non-zero exit that stops the
 * build.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layout.h"

#define MAX_CLASSES 256           /* the lookup tables hold class numbers as uint8_t */
#define SMALL8_LEN (1024 / 8 + 1)
#define LARGE128_LEN ((HEAPD_MAX_SMALL - 1024) / 128 + 1)
#define GROW_STEP 128u            /* rule 4 keeps sizes multiples of this */

typedef struct sclass {
	uint32_t size;
	uint32_t npages;
	uint32_t nelems;
	uint32_t divmul;
} sclass_t;

static sclass_t classes[MAX_CLASSES];
static uint32_t nclasses;
static uint8_t small8[SMALL8_LEN];
static uint8_t large128[LARGE128_LEN];

static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("gen_sizeclasses: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Rule 2: the shortest span whose tail waste is at most 1/8 of it. */
static uint32_t span_pages(uint32_t size)
{
	uint32_t npages = 1;
	while ((npages * HEAPD_PAGE_SIZE) % size > npages * HEAPD_PAGE_SIZE / 8)
		npages++;
	return npages;
}

static void make_classes(void)
{
	uint32_t align = 8;

	nclasses = 1; /* class 0: large objects */
	for (uint32_t size = align; size <= HEAPD_MAX_SMALL; size += align) {
		if (is_pow2(size)) {
			if (size >= 2048)
				align = 256;
			else if (size >= 128)
				align = size / 8;
			else if (size >= 16)
				align = 16;
		}
		uint32_t npages = span_pages(size);
		uint32_t nelems = npages * HEAPD_PAGE_SIZE / size;
		sclass_t *prev = &classes[nclasses - 1];
		if (nclasses > 1 && prev->npages == npages && prev->nelems == nelems) {
			prev->size = size;
			continue;
		}
		if (nclasses == MAX_CLASSES)
			die("more than %u classes", MAX_CLASSES);
		classes[nclasses++] = (sclass_t){ .size = size, .npages = npages, .nelems = nelems };
	}

	for (uint32_t c = 1; c < nclasses; c++) {
		sclass_t *k = &classes[c];
		uint32_t grown = k->npages * HEAPD_PAGE_SIZE / k->nelems / GROW_STEP * GROW_STEP;
		if (grown > k->size)
			k->size = grown;
		k->divmul = (uint32_t)(((1ULL << 32) + k->size - 1) / k->size);
	}
}

/* sizeclass_info_t.magic for objects of size bytes (sizeclass_divide). */
static uint64_t divide_magic(uint32_t size)
{
	return UINT64_MAX / size + 1;
}

/* The smallest class whose size is at least size (class 1 for size 0). */
static uint32_t smallest_fit(uint32_t size)
{
	for (uint32_t c = 1; c < nclasses; c++)
		if (classes[c].size >= size)
			return c;
	die("no class holds %u bytes", size);
	return 0;
}

static void make_lookup(void)
{
	for (uint32_t i = 0; i < SMALL8_LEN; i++)
		small8[i] = (uint8_t)smallest_fit(i * 8);
	for (uint32_t i = 0; i < LARGE128_LEN; i++)
		large128[i] = (uint8_t)smallest_fit(1024 + i * 128);
}

/* The same lookup as sizeclass_of() in sizeclass.h. */
static uint32_t lookup(uint32_t size)
{
	if (size <= 1024 - 8)
		return small8[(size + 7) >> 3];
	return large128[(size - 1024 + 127) >> 7];
}

static void verify(void)
{
	if (nclasses < 2)
		die("no classes");
	if (classes[nclasses - 1].size != HEAPD_MAX_SMALL)
		die("largest class is %u bytes, want %u", classes[nclasses - 1].size, HEAPD_MAX_SMALL);
	for (uint32_t c = 1; c < nclasses; c++) {
		const sclass_t *k = &classes[c];
		uint64_t span = (uint64_t)k->npages * HEAPD_PAGE_SIZE;

		if (k->size % 8)
			die("class %u: size %u is not a multiple of 8", c, k->size);
		if (c > 1 && k->size <= classes[c - 1].size)
			die("class %u: size %u does not exceed class %u's %u", c, k->size, c - 1,
			    classes[c - 1].size);
		if (k->nelems == 0 || k->nelems != span / k->size)
			die("class %u: %u objects of %u bytes in %llu bytes", c, k->nelems, k->size,
			    (unsigned long long)span);
		if (k->nelems > HEAPD_SPAN_MAX_OBJECTS)
			die("class %u: %u objects overflow the span's bitmap", c, k->nelems);
		if ((span - (uint64_t)k->nelems * k->size) * 8 > span)
			die("class %u: tail waste %llu of %llu bytes is over 1/8", c,
			    (unsigned long long)(span - (uint64_t)k->nelems * k->size),
			    (unsigned long long)span);
		uint64_t magic = divide_magic(k->size);
		for (uint32_t off = 0; off < span; off++) {
			if (((uint64_t)off * k->divmul) >> 32 != off / k->size)
				die("class %u: divmul %u gives the wrong quotient for offset %u / %u", c,
				    k->divmul, off, k->size);
			unsigned __int128 prod = (unsigned __int128)magic * off;
			if ((uint64_t)(prod >> 64) != off / k->size ||
			    ((uint64_t)prod < magic) != (off % k->size == 0))
				die("class %u: the free path's magic is wrong for offset %u / %u", c, off,
				    k->size);
		}
	}
	for (uint32_t p = 8; p <= HEAPD_MAX_SMALL; p *= 2)
		if (classes[smallest_fit(p)].size != p)
			die("power of two %u is not a class", p);
	for (uint32_t size = 1; size <= HEAPD_MAX_SMALL; size++)
		if (lookup(size) != smallest_fit(size))
			die("lookup maps %u bytes to class %u, want %u", size, lookup(size),
			    smallest_fit(size));
}

static void put_u32_array(FILE *f, const char *name, size_t field)
{
	fprintf(f, "\nconst uint32_t %s[SIZECLASS_COUNT] = {", name);
	for (uint32_t c = 0; c < nclasses; c++) {
		const uint32_t *v = (const uint32_t *)((const char *)&classes[c] + field);
		fprintf(f, "%s%u,", c % 8 ? " " : "\n\t", *v);
	}
	fputs("\n};\n", f);
}

static void put_u8_array(FILE *f, const char *name, const char *len, const uint8_t *v, size_t n)
{
	fprintf(f, "\nconst uint8_t %s[%s] = {", name, len);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%u,", i % 16 ? " " : "\n\t", v[i]);
	fputs("\n};\n", f);
}

static void write_header(FILE *f)
{
	fputs("// SPDX-License-Identifier: MIT\n"
	      "/* Generated by gen_sizeclasses at build time. Do not edit. */\n"
	      "#ifndef HEAPD_SIZECLASSES_GEN_H\n"
	      "#define HEAPD_SIZECLASSES_GEN_H\n\n", f);
	fprintf(f, "#define SIZECLASS_COUNT %u\n\n#endif\n", nclasses);
}

/* FNV-1a over every class's size, pages, objects and magic: arenas record it. */
static uint64_t signature(void)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (uint32_t c = 0; c < nclasses; c++) {
		const uint32_t v[] = { classes[c].size, classes[c].npages, classes[c].nelems,
		                       classes[c].divmul };
		for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
			for (int b = 0; b < 32; b += 8) {
				h ^= (v[i] >> b) & 0xff;
				h *= 0x100000001b3ULL;
			}
	}
	return h;
}

static void write_source(FILE *f)
{
	fputs("// SPDX-License-Identifier: MIT\n"
	      "/*\n"
	      " * Generated by gen_sizeclasses at build time. Do not edit.\n"
	      " *\n"
	      " * class  bytes/obj  bytes/span  objects  tail waste  max waste\n", f);
	for (uint32_t c = 1; c < nclasses; c++) {
		const sclass_t *k = &classes[c];
		uint32_t span = k->npages * HEAPD_PAGE_SIZE;
		uint32_t tail = span - k->nelems * k->size;
		/* worst case: every object one byte over the class below */
		uint32_t prev = classes[c - 1].size;
		double maxwaste = 100.0 * ((double)(k->size - prev - 1) * k->nelems + tail) / span;
		fprintf(f, " * %5u  %9u  %10u  %7u  %10u  %8.2f%%\n", c, k->size, span, k->nelems, tail,
		        maxwaste);
	}
	fputs(" */\n#include <stdint.h>\n\n#include \"sizeclass.h\"\n", f);
	put_u32_array(f, "sizeclass_size", offsetof(sclass_t, size));
	put_u32_array(f, "sizeclass_npages", offsetof(sclass_t, npages));
	put_u32_array(f, "sizeclass_nelems", offsetof(sclass_t, nelems));
	put_u32_array(f, "sizeclass_divmul", offsetof(sclass_t, divmul));
	put_u8_array(f, "sizeclass_small8", "1024 / 8 + 1", small8, SMALL8_LEN);
	put_u8_array(f, "sizeclass_large128", "(HEAPD_MAX_SMALL - 1024) / 128 + 1", large128,
	             LARGE128_LEN);
	fputs("\nconst sizeclass_info_t sizeclass_info[SIZECLASS_COUNT] = {", f);
	for (uint32_t c = 0; c < nclasses; c++) {
		const sclass_t *k = &classes[c];
		uint32_t delta = c ? heapd_freebits_delta(k->nelems) : 0;
		fprintf(f, "\n\t{ 0x%016llxULL, %u, %u, %u, %u, 0 },",
		        c ? (unsigned long long)divide_magic(k->size) : 0ULL, k->size, k->divmul, k->nelems,
		        delta);
	}
	fputs("\n};\n", f);
	fprintf(f, "\nconst uint64_t sizeclass_signature = 0x%016llxULL;\n",
	        (unsigned long long)signature());
}

/* Write path through a temporary file, so a failed run leaves no half output. */
static void emit(const char *path, void (*write)(FILE *))
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		die("path too long: %s", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		die("cannot create %s: %s", tmp, strerror(errno));
	write(f);
	int bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		remove(tmp);
		die("cannot write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		remove(tmp);
		die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s OUT.h OUT.c\n", argv[0]);
		return 2;
	}
	make_classes();
	make_lookup();
	verify();
	emit(argv[1], write_header);
	emit(argv[2], write_source);
	return 0;
}
