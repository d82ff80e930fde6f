// SPDX-License-Identifier: MIT
/*
 * elfsym.h - function names from an ELF file's symbol tables, for
 * symbolizing the return addresses of heap-profile samples.
 *
 * elfsym_open reads a 64-bit ELF file: its GNU build ID, and the function
 * symbols of .symtab, or of .dynsym when the file is stripped. When the file
 * has no .symtab but a build ID, the separate debug file
 * /usr/lib/debug/.build-id/xx/yyyy.debug is read for its .symtab as well.
 *
 * The paths come from clients, so:
 *   - only a regular file of at most ELFSYM_MAX_BYTES is read, never a
 *     device or a pipe;
 *   - a file on FUSE, NFS, SMB or 9p is refused once open, before it is
 *     read, so that reading cannot wait on a file server (looking the path
 *     up and opening it still can, on such a file system);
 *   - the file is read, not mapped, into buffers of bounded size, and every
 *     offset, size and index in it is checked against the file's size
 *     before it is used: a garbage file, or one that shrinks while heapctl
 *     reads it, yields an error, not a fault.
 *
 * Errors are -errno, with a sentence in the caller's buffer.
 */
#ifndef HEAPD_TOOLS_HEAPCTL_ELFSYM_H
#define HEAPD_TOOLS_HEAPCTL_ELFSYM_H

#include <stddef.h>
#include <stdint.h>

#define ELFSYM_MAX_BYTES (1ULL << 31)

typedef struct elfsym_fn {
	uint64_t lo, hi;         /* [lo, hi) in the file's virtual addresses */
	const char *name;        /* in elfsym_t.names */
} elfsym_fn_t;

typedef struct elfsym {
	elfsym_fn_t *fns;        /* sorted by lo */
	size_t nfns;
	char *names;             /* the names, one after another */
	uint8_t build_id[32];
	size_t build_id_len;     /* 0: the file has none */
	int from_dynsym;         /* only exported functions were found */
} elfsym_t;

/* Read path's build ID and function symbols. 0 or -errno with why. */
int elfsym_open(const char *path, elfsym_t *e, char *why, size_t whylen);

void elfsym_close(elfsym_t *e);

/* The function holding file virtual address vaddr, or NULL; *off gets vaddr's offset in it. */
const elfsym_fn_t *elfsym_find(const elfsym_t *e, uint64_t vaddr, uint64_t *off);

#endif
