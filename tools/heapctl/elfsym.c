// SPDX-License-Identifier: MIT
/*
 * elfsym.c - function symbols and the build ID of an ELF file (see
 * elfsym.h). The file is mapped read-only and walked through bounds-checked
 * accessors: section headers, the string tables they name, the symbol
 * tables and the notes.
 */
#include "elfsym.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEBUG_DIR "/usr/lib/debug/.build-id"

/* A mapped file. */
typedef struct image {
	const uint8_t *p;
	uint64_t len;
} image_t;

static int fail(char *why, size_t whylen, int rc, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* [off, off + n) lies inside the image. */
static int inside(const image_t *im, uint64_t off, uint64_t n)
{
	return off <= im->len && n <= im->len - off;
}

/* Map a regular file read-only. 0 or -errno. */
static int map_file(const char *path, image_t *im, char *why, size_t whylen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return fail(why, whylen, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr) ||
	    (uint64_t)st.st_size > ELFSYM_MAX_BYTES) {
		close(fd);
		return fail(why, whylen, -EINVAL, "%s is not a regular file of a plausible size", path);
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return fail(why, whylen, -errno, "cannot map %s: %s", path, strerror(errno));
	im->p = p;
	im->len = (uint64_t)st.st_size;
	return 0;
}

static void unmap_file(image_t *im)
{
	if (im->p)
		munmap((void *)im->p, (size_t)im->len);
	im->p = NULL;
}

/* The ELF header, if the image is a 64-bit little-endian ELF file with sane section headers. */
static const Elf64_Ehdr *elf_header(const image_t *im)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)im->p;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    !inside(im, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)))
		return NULL;
	return eh;
}

static const Elf64_Shdr *section(const image_t *im, const Elf64_Ehdr *eh, uint32_t i)
{
	if (i >= eh->e_shnum)
		return NULL;
	return (const Elf64_Shdr *)(im->p + eh->e_shoff) + i;
}

/* The GNU build ID of the image's SHT_NOTE sections, into e. */
static void read_build_id(const image_t *im, const Elf64_Ehdr *eh, elfsym_t *e)
{
	for (uint32_t i = 0; i < eh->e_shnum && !e->build_id_len; i++) {
		const Elf64_Shdr *sh = section(im, eh, i);
		if (sh->sh_type != SHT_NOTE || !inside(im, sh->sh_offset, sh->sh_size))
			continue;
		uint64_t off = sh->sh_offset, end = sh->sh_offset + sh->sh_size;
		while (off + sizeof(Elf64_Nhdr) <= end) {
			const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(im->p + off);
			uint64_t name = ((uint64_t)nh->n_namesz + 3) & ~3ULL;
			uint64_t desc = ((uint64_t)nh->n_descsz + 3) & ~3ULL;
			uint64_t d = off + sizeof(*nh) + name;
			if (d > end || desc > end - d)
				break;
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
			    memcmp(im->p + off + sizeof(*nh), "GNU", 4) == 0 &&
			    nh->n_descsz <= sizeof(e->build_id)) {
				memcpy(e->build_id, im->p + d, nh->n_descsz);
				e->build_id_len = nh->n_descsz;
				break;
			}
			off = d + desc;
		}
	}
}

/* The index of the first section of type, or -1. */
static int find_section(const image_t *im, const Elf64_Ehdr *eh, uint32_t type)
{
	for (uint32_t i = 0; i < eh->e_shnum; i++)
		if (section(im, eh, i)->sh_type == type)
			return (int)i;
	return -1;
}

static int by_lo(const void *a, const void *b)
{
	const elfsym_fn_t *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi > y->hi ? -1 : x->hi < y->hi; /* the widest first */
}

/* The function symbols of symbol table section i into e (replacing what it has). 0 or -errno. */
static int read_symbols(const image_t *im, const Elf64_Ehdr *eh, int i, elfsym_t *e)
{
	const Elf64_Shdr *sh = section(im, eh, (uint32_t)i);
	const Elf64_Shdr *str = sh ? section(im, eh, sh->sh_link) : NULL;

	if (!sh || !str || sh->sh_entsize != sizeof(Elf64_Sym) || !inside(im, sh->sh_offset, sh->sh_size) ||
	    !inside(im, str->sh_offset, str->sh_size) || str->sh_size == 0)
		return -EINVAL;
	const Elf64_Sym *syms = (const Elf64_Sym *)(im->p + sh->sh_offset);
	const char *strs = (const char *)(im->p + str->sh_offset);
	uint64_t nsyms = sh->sh_size / sizeof(Elf64_Sym), nfns = 0, bytes = 0;

	for (uint64_t k = 0; k < nsyms; k++) {
		const Elf64_Sym *s = &syms[k];
		int type = ELF64_ST_TYPE(s->st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
		    s->st_size == 0 || s->st_name >= str->sh_size)
			continue;
		size_t len = strnlen(strs + s->st_name, str->sh_size - s->st_name);
		if (len == str->sh_size - s->st_name || len == 0)
			continue; /* not terminated inside the table */
		nfns++;
		bytes += len + 1;
	}
	elfsym_fn_t *fns = calloc(nfns ? nfns : 1, sizeof(*fns));
	char *names = malloc(bytes ? bytes : 1);
	if (!fns || !names) {
		free(fns);
		free(names);
		return -ENOMEM;
	}
	uint64_t n = 0, at = 0;
	for (uint64_t k = 0; k < nsyms && n < nfns; k++) {
		const Elf64_Sym *s = &syms[k];
		int type = ELF64_ST_TYPE(s->st_info);
		if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
		    s->st_size == 0 || s->st_name >= str->sh_size)
			continue;
		size_t len = strnlen(strs + s->st_name, str->sh_size - s->st_name);
		if (len == str->sh_size - s->st_name || len == 0)
			continue;
		memcpy(names + at, strs + s->st_name, len + 1);
		fns[n].lo = s->st_value;
		fns[n].hi = s->st_value + s->st_size;
		fns[n].name = names + at;
		at += len + 1;
		n++;
	}
	qsort(fns, n, sizeof(*fns), by_lo);
	free(e->fns);
	free(e->names);
	e->fns = fns;
	e->nfns = n;
	e->names = names;
	return 0;
}

/* The separate debug file's .symtab, if the build ID names one. */
static void read_debug_file(elfsym_t *e)
{
	char path[sizeof(DEBUG_DIR) + 4 + 2 * sizeof(e->build_id) + 8];
	image_t im = { 0 };
	size_t n;

	if (e->build_id_len < 2)
		return;
	n = (size_t)snprintf(path, sizeof(path), "%s/%02x/", DEBUG_DIR, e->build_id[0]);
	for (size_t i = 1; i < e->build_id_len; i++)
		n += (size_t)snprintf(path + n, sizeof(path) - n, "%02x", e->build_id[i]);
	snprintf(path + n, sizeof(path) - n, ".debug");
	if (map_file(path, &im, NULL, 0) < 0)
		return;
	const Elf64_Ehdr *eh = elf_header(&im);
	int i = eh ? find_section(&im, eh, SHT_SYMTAB) : -1;
	if (i >= 0 && read_symbols(&im, eh, i, e) == 0)
		e->from_dynsym = 0;
	unmap_file(&im);
}

int elfsym_open(const char *path, elfsym_t *e, char *why, size_t whylen)
{
	image_t im = { 0 };
	int rc;

	memset(e, 0, sizeof(*e));
	rc = map_file(path, &im, why, whylen);
	if (rc < 0)
		return rc;
	const Elf64_Ehdr *eh = elf_header(&im);
	if (!eh) {
		unmap_file(&im);
		return fail(why, whylen, -EINVAL, "%s is not a 64-bit ELF file this heapctl reads", path);
	}
	read_build_id(&im, eh, e);
	int i = find_section(&im, eh, SHT_SYMTAB);
	if (i < 0) {
		i = find_section(&im, eh, SHT_DYNSYM);
		e->from_dynsym = 1;
	}
	rc = i < 0 ? 0 : read_symbols(&im, eh, i, e);
	unmap_file(&im);
	if (rc < 0)
		return fail(why, whylen, rc, "%s: its symbol table is damaged", path);
	if (e->from_dynsym)
		read_debug_file(e);
	return 0;
}

void elfsym_close(elfsym_t *e)
{
	free(e->fns);
	free(e->names);
	memset(e, 0, sizeof(*e));
}

const elfsym_fn_t *elfsym_find(const elfsym_t *e, uint64_t vaddr, uint64_t *off)
{
	size_t lo = 0, hi = e->nfns;

	/* the last function starting at or before vaddr */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (e->fns[mid].lo <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* a nested or overlapping symbol may start later than one that covers vaddr: look back a little */
	for (size_t k = lo, tries = 0; k > 0 && tries < 8; k--, tries++) {
		const elfsym_fn_t *f = &e->fns[k - 1];
		if (vaddr < f->hi) {
			if (off)
				*off = vaddr - f->lo;
			return f;
		}
	}
	return NULL;
}
