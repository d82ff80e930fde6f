// SPDX-License-Identifier: MIT
/*
 * elfsym.c - function symbols and the build ID of an ELF file (see
 * elfsym.h). Only what is used is read, with pread into buffers of bounded
 * size: the ELF header, the section headers, the notes, one symbol table
 * and its string table. The file is never mapped: a client may truncate it
 * while heapctl reads, and a short read is an error where a mapping would
 * fault. Every offset, size and index is checked against the size fstat
 * gave before it is used.
 */
#include "elfsym.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define DEBUG_DIR "/usr/lib/debug/.build-id"
#define NOTE_MAX (64u << 10)   /* a note section bigger than this holds no build ID we want */
#define TABLE_MAX (256u << 20) /* a symbol or string table: the biggest seen are tens of MiB */

/* File systems whose reads may wait on a server (f_type, statfs(2)). */
#define FS_FUSE 0x65735546
#define FS_NFS 0x6969
#define FS_CIFS 0xFF534D42
#define FS_SMB2 0xFE534D42
#define FS_V9FS 0x01021997

/* An open file, and its size when it was opened. */
typedef struct image {
	int fd;
	uint64_t len;
	Elf64_Ehdr eh;
	Elf64_Shdr *sh;          /* eh.e_shnum section headers, malloc'd */
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

/* [off, off + n) lies inside the file as fstat saw it. */
static int inside(const image_t *im, uint64_t off, uint64_t n)
{
	return off <= im->len && n <= im->len - off;
}

/*
 * Read [off, off + n) into buf. 0, -EINVAL for a range outside the file,
 * -EIO when the file ends early (it shrank since it was opened), or -errno.
 */
static int read_at(const image_t *im, uint64_t off, uint64_t n, void *buf)
{
	uint64_t done = 0;

	if (!inside(im, off, n))
		return -EINVAL;
	while (done < n) {
		ssize_t r = pread(im->fd, (char *)buf + done, (size_t)(n - done), (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		done += (uint64_t)r;
	}
	return 0;
}

/* [off, off + n) in a malloc'd buffer, n at most max. 0 or -errno. */
static int load(const image_t *im, uint64_t off, uint64_t n, uint64_t max, void **out)
{
	int rc;

	*out = NULL;
	if (n > max)
		return -EFBIG;
	void *buf = malloc(n ? (size_t)n : 1);
	if (!buf)
		return -ENOMEM;
	rc = read_at(im, off, n, buf);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

static const char *fs_name(long type)
{
	switch (type) {
	case FS_FUSE: return "FUSE";
	case FS_NFS: return "NFS";
	case FS_CIFS: return "CIFS";
	case FS_SMB2: return "SMB";
	case FS_V9FS: return "9p";
	default: return NULL;
	}
}

/* Open a regular file on a local file system, of a plausible size. 0 or -errno. */
static int open_file(const char *path, image_t *im, char *why, size_t whylen)
{
	struct stat st;
	struct statfs sf;
	const char *fs;
	int rc;

	memset(im, 0, sizeof(*im));
	im->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (im->fd < 0)
		return fail(why, whylen, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(im->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr) ||
	    (uint64_t)st.st_size > ELFSYM_MAX_BYTES) {
		rc = fail(why, whylen, -EINVAL, "%s is not a regular file of a plausible size", path);
		goto fail;
	}
	if (fstatfs(im->fd, &sf) < 0) {
		rc = fail(why, whylen, -errno, "cannot stat the file system of %s: %s", path,
		          strerror(errno));
		goto fail;
	}
	fs = fs_name((long)sf.f_type);
	if (fs) {
		rc = fail(why, whylen, -EREMOTE, "%s is on a %s file system, which heapctl does not read",
		          path, fs);
		goto fail;
	}
	im->len = (uint64_t)st.st_size;
	return 0;
fail:
	close(im->fd);
	im->fd = -1;
	return rc;
}

static void close_file(image_t *im)
{
	if (im->fd >= 0)
		close(im->fd);
	free(im->sh);
	im->fd = -1;
	im->sh = NULL;
}

/*
 * The ELF header and the section headers: 0 if the file is a 64-bit
 * little-endian ELF file with sane section headers, -EINVAL if it is not,
 * or the read's error.
 */
static int read_headers(image_t *im)
{
	Elf64_Ehdr *eh = &im->eh;
	int rc = read_at(im, 0, sizeof(*eh), eh);

	if (rc < 0)
		return rc;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_shentsize != sizeof(Elf64_Shdr) ||
	    !inside(im, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)))
		return -EINVAL;
	/* at most 65535 headers: 4 MiB */
	return load(im, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr), UINT64_MAX,
	            (void **)&im->sh);
}

static const Elf64_Shdr *section(const image_t *im, uint32_t i)
{
	return i < im->eh.e_shnum ? &im->sh[i] : NULL;
}

/* The GNU build ID of the file's SHT_NOTE sections, into e. 0 or the read's error. */
static int read_build_id(const image_t *im, elfsym_t *e)
{
	for (uint32_t i = 0; i < im->eh.e_shnum && !e->build_id_len; i++) {
		const Elf64_Shdr *sh = section(im, i);
		uint8_t *notes;
		if (sh->sh_type != SHT_NOTE || !inside(im, sh->sh_offset, sh->sh_size) ||
		    sh->sh_size > NOTE_MAX)
			continue;
		int rc = load(im, sh->sh_offset, sh->sh_size, NOTE_MAX, (void **)&notes);
		if (rc < 0)
			return rc;
		uint64_t off = 0, end = sh->sh_size;
		while (off + sizeof(Elf64_Nhdr) <= end) {
			Elf64_Nhdr nh;
			memcpy(&nh, notes + off, sizeof(nh));
			uint64_t name = ((uint64_t)nh.n_namesz + 3) & ~3ULL;
			uint64_t desc = ((uint64_t)nh.n_descsz + 3) & ~3ULL;
			uint64_t d = off + sizeof(nh) + name;
			if (d > end || desc > end - d)
				break;
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    memcmp(notes + off + sizeof(nh), "GNU", 4) == 0 &&
			    nh.n_descsz <= sizeof(e->build_id)) {
				memcpy(e->build_id, notes + d, nh.n_descsz);
				e->build_id_len = nh.n_descsz;
				break;
			}
			off = d + desc;
		}
		free(notes);
	}
	return 0;
}

/* The index of the first section of type, or -1. */
static int find_section(const image_t *im, uint32_t type)
{
	for (uint32_t i = 0; i < im->eh.e_shnum; i++)
		if (section(im, i)->sh_type == type)
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

/*
 * The length of symbol s's name in the string table strs of n bytes if it
 * is a defined function with a size and a name terminated inside the table;
 * 0 if it is to be left out.
 */
static size_t fn_name_len(const Elf64_Sym *s, const char *strs, uint64_t n)
{
	int type = ELF64_ST_TYPE(s->st_info);
	if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
	    s->st_size == 0 || s->st_name >= n)
		return 0;
	size_t len = strnlen(strs + s->st_name, n - s->st_name);
	return len == n - s->st_name ? 0 : len;
}

/* The function symbols of symbol table section i into e (replacing what it has). 0 or -errno. */
static int read_symbols(const image_t *im, int i, elfsym_t *e)
{
	const Elf64_Shdr *sh = section(im, (uint32_t)i);
	const Elf64_Shdr *str = sh ? section(im, sh->sh_link) : NULL;
	Elf64_Sym *syms = NULL;
	char *strs = NULL;
	int rc;

	if (!sh || !str || sh->sh_entsize != sizeof(Elf64_Sym) || !inside(im, sh->sh_offset, sh->sh_size) ||
	    !inside(im, str->sh_offset, str->sh_size) || str->sh_size == 0)
		return -EINVAL;
	uint64_t nsyms = sh->sh_size / sizeof(Elf64_Sym), nfns = 0, bytes = 0;
	rc = load(im, sh->sh_offset, nsyms * sizeof(Elf64_Sym), TABLE_MAX, (void **)&syms);
	if (rc == 0)
		rc = load(im, str->sh_offset, str->sh_size, TABLE_MAX, (void **)&strs);
	if (rc < 0)
		goto out;

	for (uint64_t k = 0; k < nsyms; k++) {
		size_t len = fn_name_len(&syms[k], strs, str->sh_size);
		if (len) {
			nfns++;
			bytes += len + 1;
		}
	}
	elfsym_fn_t *fns = calloc(nfns ? nfns : 1, sizeof(*fns));
	char *names = malloc(bytes ? bytes : 1);
	if (!fns || !names) {
		free(fns);
		free(names);
		rc = -ENOMEM;
		goto out;
	}
	uint64_t n = 0, at = 0;
	for (uint64_t k = 0; k < nsyms && n < nfns; k++) {
		const Elf64_Sym *s = &syms[k];
		size_t len = fn_name_len(s, strs, str->sh_size);
		if (!len)
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
out:
	free(syms);
	free(strs);
	return rc;
}

/* The separate debug file's .symtab, if the build ID names one. */
static void read_debug_file(elfsym_t *e)
{
	char path[sizeof(DEBUG_DIR) + 4 + 2 * sizeof(e->build_id) + 8];
	image_t im;
	size_t n;

	if (e->build_id_len < 2)
		return;
	n = (size_t)snprintf(path, sizeof(path), "%s/%02x/", DEBUG_DIR, e->build_id[0]);
	for (size_t i = 1; i < e->build_id_len; i++)
		n += (size_t)snprintf(path + n, sizeof(path) - n, "%02x", e->build_id[i]);
	snprintf(path + n, sizeof(path) - n, ".debug");
	if (open_file(path, &im, NULL, 0) < 0)
		return;
	int i = read_headers(&im) == 0 ? find_section(&im, SHT_SYMTAB) : -1;
	if (i >= 0 && read_symbols(&im, i, e) == 0)
		e->from_dynsym = 0;
	close_file(&im);
}

static const char *read_error(int rc)
{
	return rc == -EIO ? "it is shorter than when it was opened" :
	       rc == -EFBIG ? "a table is too big" :
	       rc == -ENOMEM ? "out of memory" : "it is damaged";
}

int elfsym_open(const char *path, elfsym_t *e, char *why, size_t whylen)
{
	image_t im;
	int rc;

	memset(e, 0, sizeof(*e));
	rc = open_file(path, &im, why, whylen);
	if (rc < 0)
		return rc;
	rc = read_headers(&im);
	if (rc == -EINVAL) {
		close_file(&im);
		return fail(why, whylen, rc, "%s is not a 64-bit ELF file this heapctl reads", path);
	}
	if (rc == 0)
		rc = read_build_id(&im, e);
	if (rc == 0) {
		int i = find_section(&im, SHT_SYMTAB);
		if (i < 0) {
			i = find_section(&im, SHT_DYNSYM);
			e->from_dynsym = 1;
		}
		rc = i < 0 ? 0 : read_symbols(&im, i, e);
	}
	close_file(&im);
	if (rc < 0) {
		elfsym_close(e);
		return fail(why, whylen, rc, "%s: cannot read its symbols: %s", path, read_error(rc));
	}
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
