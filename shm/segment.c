// SPDX-License-Identifier: MIT
/*
 * segment.c - the arena file: lay it out, reopen it, validate it, map it.
 *
 * Creation writes the geometry first and the magic last, so a file whose
 * creation was cut short is empty or has no magic; an empty file is laid out
 * anew, anything else without a valid header is refused (the daemon's
 * --reset overrides). The file is sized with ftruncate and never written in
 * full: untouched pages cost no memory.
 *
 * The one-daemon-per-arena lock is a POSIX record lock (F_SETLK), which
 * belongs to the process, so the descriptor passed to clients never carries
 * it and the lock goes away with the daemon, however it dies.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_FIXED_NOREPLACE, fallocate; the build defines it too */
#endif
#include "segment.h"
#include "sizeclass.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_ALIGN ((uint64_t)HEAPD_PAGE_SIZE)
#define SEG_CLIENTS_OFF 4096u

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Fill the geometry part of hdr for npages pages and max_clients slots. */
static void layout_geometry(shm_header_t *hdr, uint32_t npages, uint32_t max_clients)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->version = HEAPD_LAYOUT_VERSION;
	hdr->page_size = HEAPD_PAGE_SIZE;
	hdr->npages_max = npages;
	hdr->max_clients = max_clients;
	hdr->clients_off = SEG_CLIENTS_OFF;
	hdr->header_size = align_up(SEG_CLIENTS_OFF + (uint64_t)max_clients * sizeof(shm_client_t), SEG_ALIGN);
	hdr->pagemap_off = hdr->header_size;
	hdr->pagemap_size = align_up((uint64_t)npages * sizeof(uint64_t), SEG_ALIGN);
	hdr->spans_off = hdr->pagemap_off + hdr->pagemap_size;
	hdr->spans_size = align_up((uint64_t)npages * sizeof(shm_span_t), SEG_ALIGN);
	hdr->bits_off = hdr->spans_off + hdr->spans_size;
	hdr->bits_size = align_up((uint64_t)npages * HEAPD_BITS_WORDS_PER_PAGE * 8, SEG_ALIGN);
	hdr->sizeclass_sig = sizeclass_signature;
	hdr->pages_off = hdr->bits_off + hdr->bits_size;
	hdr->file_size = hdr->pages_off + ((uint64_t)npages << HEAPD_PAGE_SHIFT);
}

static int params_pages(const segment_params_t *params, uint32_t *npages, uint32_t *max_clients)
{
	uint64_t n = align_up(params->arena_bytes, HEAPD_PAGE_SIZE) >> HEAPD_PAGE_SHIFT;
	if (n == 0 || n > HEAPD_MAX_PAGES)
		return -EINVAL;
	*npages = (uint32_t)n;
	*max_clients = params->max_clients ? params->max_clients : HEAPD_DEFAULT_MAX_CLIENTS;
	if (*max_clients > 65536)
		return -EINVAL;
	return 0;
}

uint64_t segment_file_size(const segment_params_t *params)
{
	shm_header_t hdr;
	uint32_t npages, max_clients;
	if (params_pages(params, &npages, &max_clients) < 0)
		return 0;
	layout_geometry(&hdr, npages, max_clients);
	return hdr.file_size;
}

int segment_validate(const shm_header_t *hdr, uint64_t file_size, char *err, size_t errlen)
{
	shm_header_t want;

	if (file_size < sizeof(*hdr))
		return fail(err, errlen, -EINVAL, "file is %llu bytes, too short to be an arena",
		            (unsigned long long)file_size);
	if (hdr->magic != HEAPD_MAGIC)
		return fail(err, errlen, -EINVAL, "not a heapd arena (bad magic)");
	if (hdr->version > HEAPD_LAYOUT_VERSION)
		return fail(err, errlen, -EPROTO, "arena layout version %u is newer than this heapd's %u",
		            hdr->version, HEAPD_LAYOUT_VERSION);
	if (hdr->version != HEAPD_LAYOUT_VERSION)
		return fail(err, errlen, -EPROTO, "arena layout version %u is not supported (want %u)",
		            hdr->version, HEAPD_LAYOUT_VERSION);
	if (hdr->page_size != HEAPD_PAGE_SIZE)
		return fail(err, errlen, -EINVAL, "arena page size %u, want %u", hdr->page_size,
		            HEAPD_PAGE_SIZE);
	if (hdr->npages_max == 0 || hdr->npages_max > HEAPD_MAX_PAGES || hdr->max_clients == 0 ||
	    hdr->max_clients > 65536)
		return fail(err, errlen, -EINVAL, "arena header has impossible sizes");
	layout_geometry(&want, hdr->npages_max, hdr->max_clients);
	if (hdr->clients_off != want.clients_off || hdr->header_size != want.header_size ||
	    hdr->pagemap_off != want.pagemap_off || hdr->pagemap_size != want.pagemap_size ||
	    hdr->spans_off != want.spans_off || hdr->spans_size != want.spans_size ||
	    hdr->bits_off != want.bits_off || hdr->bits_size != want.bits_size ||
	    hdr->pages_off != want.pages_off || hdr->file_size != want.file_size)
		return fail(err, errlen, -EINVAL, "arena header regions are inconsistent");
	if (hdr->sizeclass_sig != want.sizeclass_sig)
		return fail(err, errlen, -EPROTO,
		            "arena was laid out with other size classes (signature %016llx, want %016llx)",
		            (unsigned long long)hdr->sizeclass_sig, (unsigned long long)want.sizeclass_sig);
	if (file_size < hdr->file_size)
		return fail(err, errlen, -EINVAL, "arena is truncated: %llu bytes, header says %llu",
		            (unsigned long long)file_size, (unsigned long long)hdr->file_size);
	if (hdr->npages_grown > hdr->npages_max)
		return fail(err, errlen, -EINVAL, "arena header has %u grown pages of %u",
		            hdr->npages_grown, hdr->npages_max);
	return 0;
}

static void set_pointers(segment_t *seg)
{
	shm_header_t *hdr = (shm_header_t *)seg->base;
	seg->hdr = hdr;
	seg->clients = (shm_client_t *)(seg->base + hdr->clients_off);
	seg->pagemap = (uint64_t *)(seg->base + hdr->pagemap_off);
	seg->spans = (shm_span_t *)(seg->base + hdr->spans_off);
	seg->bits = (uint64_t *)(seg->base + hdr->bits_off);
	seg->pages = seg->base + hdr->pages_off;
	seg->npages_max = hdr->npages_max;
}

/*
 * Map len bytes of fd at the hint if that range is free, else anywhere
 * aligned to SEG_ALIGN. The regions are SEG_ALIGN multiples, so the pages
 * region is page aligned too and power-of-two objects up to a page are
 * naturally aligned; a plain mmap only promises 4 KiB.
 */
static void *map_at_hint(uint64_t hint, uint64_t len, int prot, int fd)
{
	void *p = MAP_FAILED;
	if (hint && hint % SEG_ALIGN == 0) {
		p = mmap((void *)(uintptr_t)hint, len, prot, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
		if (p != MAP_FAILED && p != (void *)(uintptr_t)hint) {
			/* a kernel without MAP_FIXED_NOREPLACE took it as a plain hint */
			munmap(p, len);
			p = MAP_FAILED;
		}
	}
	if (p != MAP_FAILED)
		return p;

	/* Reserve a page more than needed, map the file over its aligned part, trim the rest. */
	uint64_t rlen = len + SEG_ALIGN;
	uint8_t *r = mmap(NULL, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r == MAP_FAILED)
		return MAP_FAILED;
	uint8_t *a = (uint8_t *)(uintptr_t)align_up((uintptr_t)r, SEG_ALIGN);
	p = mmap(a, len, prot, MAP_SHARED | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		munmap(r, rlen);
		errno = e;
		return MAP_FAILED;
	}
	if (a > r)
		munmap(r, (size_t)(a - r));
	if (a + len < r + rlen)
		munmap(a + len, (size_t)(r + rlen - (a + len)));
	return p;
}

static int open_name(const char *name, int create)
{
	int oflags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
	if (strncmp(name, "shm:", 4) == 0) {
		char buf[256];
		if (snprintf(buf, sizeof(buf), "/%s", name + 4) >= (int)sizeof(buf) || name[4] == '\0' ||
		    strchr(name + 4, '/'))
			return -EINVAL;
		int fd = shm_open(buf, oflags, 0600);
		return fd < 0 ? -errno : fd;
	}
	int fd = open(name, oflags, 0600);
	return fd < 0 ? -errno : fd;
}

int segment_unlink(const char *name)
{
	if (strncmp(name, "shm:", 4) == 0) {
		char buf[256];
		snprintf(buf, sizeof(buf), "/%s", name + 4);
		return shm_unlink(buf) < 0 ? -errno : 0;
	}
	return unlink(name) < 0 ? -errno : 0;
}

static int lock_file(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	if (fcntl(fd, F_SETLK, &fl) < 0)
		return (errno == EACCES || errno == EAGAIN) ? -EWOULDBLOCK : -errno;
	return 0;
}

/* Lay out a new arena in fd. The magic is written last. */
static int layout_new(int fd, const segment_params_t *params, char *err, size_t errlen)
{
	shm_header_t hdr;
	uint32_t npages, max_clients;

	if (!params)
		return fail(err, errlen, -EINVAL, "no arena size given to lay it out");
	if (params_pages(params, &npages, &max_clients) < 0)
		return fail(err, errlen, -EINVAL, "arena size %llu is out of range",
		            (unsigned long long)params->arena_bytes);
	layout_geometry(&hdr, npages, max_clients);
	hdr.base_hint = params->base_hint ? params->base_hint : HEAPD_DEFAULT_BASE_HINT;
	if (getrandom(&hdr.arena_id, sizeof(hdr.arena_id), 0) != sizeof(hdr.arena_id))
		hdr.arena_id = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	hdr.clean_shutdown = 1;

	/* Drop any old contents, then size the file sparsely. */
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)hdr.file_size) < 0)
		return fail(err, errlen, -errno, "cannot size arena to %llu bytes: %s",
		            (unsigned long long)hdr.file_size, strerror(errno));
	if (pwrite(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return fail(err, errlen, -EIO, "cannot write arena header: %s", strerror(errno));

	/* Every other region starts as zeros, which is what they mean: no spans (layout.h). */
	uint64_t magic = HEAPD_MAGIC;
	if (pwrite(fd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic))
		return fail(err, errlen, -EIO, "cannot write arena header: %s", strerror(errno));
	return 0;
}

int segment_open(const char *name, const segment_params_t *params, int flags, segment_t *seg,
                 int *created, char *err, size_t errlen)
{
	shm_header_t hdr;
	struct stat st;
	int rc, fd;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	if (created)
		*created = 0;

	fd = open_name(name, flags & SEGMENT_CREATE);
	if (fd < 0)
		return fail(err, errlen, fd, "cannot open arena %s: %s", name, strerror(-fd));
	if ((flags & SEGMENT_LOCK) && (rc = lock_file(fd)) < 0) {
		fail(err, errlen, rc, rc == -EWOULDBLOCK ? "arena %s is in use by another heapd"
		                                         : "cannot lock arena %s", name);
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		rc = fail(err, errlen, -errno, "cannot stat arena %s: %s", name, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = fail(err, errlen, -EINVAL, "arena %s is not a regular file", name);
		goto fail;
	}

	int fresh = st.st_size == 0 || (flags & SEGMENT_RESET);
	if (!fresh) {
		char why[200];
		memset(&hdr, 0, sizeof(hdr));
		if (pread(fd, &hdr, sizeof(hdr), 0) < 0) {
			rc = fail(err, errlen, -errno, "cannot read arena %s: %s", name, strerror(errno));
			goto fail;
		}
		rc = segment_validate(&hdr, (uint64_t)st.st_size, why, sizeof(why));
		if (rc < 0) {
			fail(err, errlen, rc, "arena %s is unusable: %s", name, why);
			goto fail;
		}
	} else {
		if (!(flags & (SEGMENT_CREATE | SEGMENT_RESET)) && st.st_size == 0) {
			rc = fail(err, errlen, -EINVAL, "arena %s is empty", name);
			goto fail;
		}
		char why[200];
		rc = layout_new(fd, params, why, sizeof(why));
		if (rc < 0) {
			fail(err, errlen, rc, "cannot create arena %s: %s", name, why);
			goto fail;
		}
		if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
			rc = fail(err, errlen, -EIO, "cannot read back arena %s", name);
			goto fail;
		}
		if (created)
			*created = 1;
	}

	void *p = map_at_hint(hdr.base_hint, hdr.file_size, PROT_READ | PROT_WRITE, fd);
	if (p == MAP_FAILED) {
		rc = fail(err, errlen, -errno, "cannot map arena %s: %s", name, strerror(errno));
		goto fail;
	}
	seg->fd = fd;
	seg->base = p;
	seg->size = hdr.file_size;
	seg->writable_meta = 1;
	set_pointers(seg);
	return 0;
fail:
	close(fd);
	return rc;
}

int segment_attach(int fd, segment_t *seg, char *err, size_t errlen)
{
	shm_header_t hdr;
	struct stat st;
	char why[200];
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
	if (fstat(fd, &st) < 0) {
		rc = fail(err, errlen, -errno, "cannot stat arena descriptor: %s", strerror(errno));
		goto fail;
	}
	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		rc = fail(err, errlen, -EINVAL, "arena descriptor is too short");
		goto fail;
	}
	rc = segment_validate(&hdr, (uint64_t)st.st_size, why, sizeof(why));
	if (rc < 0) {
		fail(err, errlen, rc, "arena is unusable: %s", why);
		goto fail;
	}
	uint8_t *p = map_at_hint(hdr.base_hint, hdr.file_size, PROT_READ, fd);
	if (p == MAP_FAILED) {
		rc = fail(err, errlen, -errno, "cannot map arena: %s", strerror(errno));
		goto fail;
	}
	/* Bitmaps and pages are the only regions a client writes. */
	uint64_t rw = hdr.bits_off;
	if (mmap(p + rw, hdr.file_size - rw, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
	         (off_t)rw) == MAP_FAILED) {
		rc = fail(err, errlen, -errno, "cannot map arena pages: %s", strerror(errno));
		munmap(p, hdr.file_size);
		goto fail;
	}
	close(fd); /* the mapping keeps the file; a client never needs the descriptor again */
	seg->base = p;
	seg->size = hdr.file_size;
	set_pointers(seg);
	return 0;
fail:
	close(fd);
	return rc;
}

void segment_close(segment_t *seg)
{
	if (seg->base)
		munmap(seg->base, seg->size);
	if (seg->fd >= 0)
		close(seg->fd);
	memset(seg, 0, sizeof(*seg));
	seg->fd = -1;
}

uint32_t segment_pagemap_next(const segment_t *seg, uint64_t p)
{
	uint64_t off = seg->hdr->pagemap_off + p * sizeof(uint64_t);
	off_t d;

	if (p >= seg->npages_max)
		return seg->npages_max;
	if (seg->fd < 0)
		return (uint32_t)p;
	d = lseek(seg->fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? seg->npages_max : (uint32_t)p; /* ENXIO: only a hole follows */
	if ((uint64_t)d <= off)
		return (uint32_t)p;
	uint64_t q = ((uint64_t)d - seg->hdr->pagemap_off) / sizeof(uint64_t);
	return q < seg->npages_max ? (uint32_t)q : seg->npages_max;
}

int segment_punch(segment_t *seg, uint64_t off, uint64_t len)
{
	if (seg->fd < 0)
		return -EBADF;
	if (fallocate(seg->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}
