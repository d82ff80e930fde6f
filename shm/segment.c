// SPDX-License-Identifier: MIT
/*
 * segment.c - the arena's directory and files: lay them out, reopen them,
 * validate them, map them, and guard the mapping against a shrunken data
 * file.
 *
 * Creating an arena (create_files): both files are created with
 * O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, under the names meta.new and
 * data.new, sized sparsely with ftruncate, and the header is written with
 * the magic last; then data.new is renamed to data and meta.new to meta,
 * which is the commit. A directory without meta holds no arena, whatever
 * else is in it. --reset replaces both files the same way.
 *
 * Reopening: the directory and both files must belong to the effective uid
 * and have no group or other permission bits (so nobody else can have
 * planted or read them), and nothing is followed through a symlink. The
 * header must agree with the sizes of both files. A data file that is
 * shorter than the header says was shrunk by a client: it is re-extended
 * (the cut range reads as zero; see layout.h).
 *
 * The one-daemon-per-arena lock is a POSIX record lock on the file "lock"
 * in the directory, which belongs to the process: the descriptors passed to
 * clients never carry it, a child forked by a test does not inherit it, and
 * it goes away with the daemon, however it dies.
 *
 * Mapping: one range of meta_size + data_size bytes is reserved at the
 * header's address hint (MAP_FIXED_NOREPLACE; anywhere aligned if that is
 * taken), and the two files are mapped over it, meta first.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_FIXED_NOREPLACE, fallocate; the build defines it too */
#endif
#include "segment.h"
#include "profrec.h"
#include "roots.h"
#include "sizeclass.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_ALIGN ((uint64_t)HEAPD_PAGE_SIZE)
#define SEG_CLIENTS_OFF 4096u
#define META_NEW HEAPD_META_FILE ".new"
#define DATA_NEW HEAPD_DATA_FILE ".new"

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

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Index slots for max_roots entries: a power of two, at least twice as many. */
static uint32_t roots_nslots_for(uint32_t max_roots)
{
	uint32_t n = 64;
	while (n < 2 * max_roots)
		n *= 2;
	return n;
}

/*
 * Fill the geometry part of hdr for npages pages, max_clients slots,
 * max_roots roots and prof_records heap-profile records.
 */
static void layout_geometry(shm_header_t *hdr, uint32_t npages, uint32_t max_clients,
                            uint32_t max_roots, uint32_t prof_records)
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
	hdr->roots_max = max_roots;
	hdr->roots_nslots = roots_nslots_for(max_roots);
	hdr->roots_off = hdr->spans_off + hdr->spans_size;
	hdr->roots_size = roots_entries_size(hdr) + roots_index_size(hdr) + roots_ops_size(hdr);
	hdr->pins_off = hdr->roots_off + hdr->roots_size;
	hdr->pins_size = align_up((uint64_t)npages * HEAPD_PIN_WORDS_PER_PAGE * 8, SEG_ALIGN);
	hdr->meta_size = hdr->pins_off + hdr->pins_size;
	hdr->bits_off = hdr->meta_size;
	hdr->bits_size = align_up((uint64_t)npages * HEAPD_BITS_WORDS_PER_PAGE * 8, SEG_ALIGN);
	hdr->prof_size = prof_region_size(prof_records);
	hdr->prof_off = hdr->prof_size ? hdr->bits_off + hdr->bits_size : 0;
	hdr->prof_records = hdr->prof_size ? prof_records : 0;
	hdr->prof_mapsets = prof_nmapsets(hdr->prof_records);
	hdr->pages_off = hdr->bits_off + hdr->bits_size + hdr->prof_size;
	hdr->data_size = hdr->bits_size + hdr->prof_size + ((uint64_t)npages << HEAPD_PAGE_SHIFT);
	hdr->map_size = hdr->meta_size + hdr->data_size;
	hdr->sizeclass_sig = sizeclass_signature;
}

static int params_geometry(const segment_params_t *params, shm_header_t *hdr)
{
	uint64_t n = align_up(params->arena_bytes, HEAPD_PAGE_SIZE) >> HEAPD_PAGE_SHIFT;
	uint32_t max_clients = params->max_clients ? params->max_clients : HEAPD_DEFAULT_MAX_CLIENTS;
	uint32_t max_roots = params->max_roots ? params->max_roots : ROOTS_DEFAULT_MAX;
	if (n == 0 || n > HEAPD_MAX_PAGES || max_clients > 65536 || max_roots > ROOTS_MAX_LIMIT ||
	    params->profile_records > PROF_MAX_RECORDS)
		return -EINVAL;
	layout_geometry(hdr, (uint32_t)n, max_clients, max_roots, params->profile_records);
	return 0;
}

int segment_sizes(const segment_params_t *params, uint64_t *meta_size, uint64_t *data_size)
{
	shm_header_t hdr;
	if (params_geometry(params, &hdr) < 0)
		return -EINVAL;
	*meta_size = hdr.meta_size;
	*data_size = hdr.data_size;
	return 0;
}

int segment_validate(const shm_header_t *hdr, uint64_t meta_len, uint64_t data_len, char *err,
                     size_t errlen)
{
	shm_header_t want;

	if (meta_len < sizeof(*hdr))
		return fail(err, errlen, -EINVAL, "meta is %llu bytes, too short to be an arena",
		            (unsigned long long)meta_len);
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
	    hdr->max_clients > 65536 || hdr->roots_max == 0 || hdr->roots_max > ROOTS_MAX_LIMIT ||
	    hdr->prof_records > PROF_MAX_RECORDS)
		return fail(err, errlen, -EINVAL, "arena header has impossible sizes");
	layout_geometry(&want, hdr->npages_max, hdr->max_clients, hdr->roots_max, hdr->prof_records);
	if (hdr->clients_off != want.clients_off || hdr->header_size != want.header_size ||
	    hdr->pagemap_off != want.pagemap_off || hdr->pagemap_size != want.pagemap_size ||
	    hdr->spans_off != want.spans_off || hdr->spans_size != want.spans_size ||
	    hdr->meta_size != want.meta_size || hdr->data_size != want.data_size ||
	    hdr->bits_off != want.bits_off || hdr->bits_size != want.bits_size ||
	    hdr->pages_off != want.pages_off || hdr->map_size != want.map_size ||
	    hdr->prof_off != want.prof_off || hdr->prof_size != want.prof_size ||
	    hdr->prof_mapsets != want.prof_mapsets || hdr->roots_off != want.roots_off ||
	    hdr->roots_size != want.roots_size || hdr->roots_nslots != want.roots_nslots ||
	    hdr->pins_off != want.pins_off || hdr->pins_size != want.pins_size)
		return fail(err, errlen, -EINVAL, "arena header regions are inconsistent");
	if (hdr->sizeclass_sig != want.sizeclass_sig)
		return fail(err, errlen, -EPROTO,
		            "arena was laid out with other size classes (signature %016llx, want %016llx)",
		            (unsigned long long)hdr->sizeclass_sig, (unsigned long long)want.sizeclass_sig);
	if (meta_len != hdr->meta_size)
		return fail(err, errlen, -EINVAL, "arena meta is %s: %llu bytes, its header says %llu",
		            meta_len < hdr->meta_size ? "truncated" : "too long",
		            (unsigned long long)meta_len, (unsigned long long)hdr->meta_size);
	if (data_len < hdr->data_size)
		return fail(err, errlen, -EINVAL, "arena data is %llu bytes, its header says %llu",
		            (unsigned long long)data_len, (unsigned long long)hdr->data_size);
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
	seg->roots = (shm_root_t *)(seg->base + hdr->roots_off);
	seg->roots_tails = (shm_root_tail_t *)(seg->base + hdr->roots_off + roots_heads_size(hdr));
	seg->roots_index = (uint64_t *)(seg->base + hdr->roots_off + roots_entries_size(hdr));
	seg->roots_ops = (shm_root_op_t *)(seg->base + hdr->roots_off + roots_entries_size(hdr) +
	                                   roots_index_size(hdr));
	seg->pins = (uint64_t *)(seg->base + hdr->pins_off);
	seg->bits = (uint64_t *)(seg->base + hdr->bits_off);
	seg->pages = seg->base + hdr->pages_off;
	seg->npages_max = hdr->npages_max;
	seg->meta_size = hdr->meta_size;
	seg->data_size = hdr->data_size;
	seg->size = hdr->map_size;
}

/*
 * Reserve len bytes at the hint if that range is free, else anywhere
 * aligned to SEG_ALIGN. The regions are SEG_ALIGN multiples, so the pages
 * region is page aligned too and power-of-two objects up to a page are
 * naturally aligned; a plain mmap only promises 4 KiB.
 */
static uint8_t *reserve(uint64_t hint, uint64_t len)
{
	void *p = MAP_FAILED;
	const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;

	if (hint && hint % SEG_ALIGN == 0) {
		p = mmap((void *)(uintptr_t)hint, len, PROT_NONE, flags | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && p != (void *)(uintptr_t)hint) {
			/* a kernel without MAP_FIXED_NOREPLACE took it as a plain hint */
			munmap(p, len);
			p = MAP_FAILED;
		}
	}
	if (p != MAP_FAILED)
		return p;

	uint64_t rlen = len + SEG_ALIGN;
	uint8_t *r = mmap(NULL, rlen, PROT_NONE, flags, -1, 0);
	if (r == MAP_FAILED)
		return MAP_FAILED;
	uint8_t *a = (uint8_t *)(uintptr_t)align_up((uintptr_t)r, SEG_ALIGN);
	if (a > r)
		munmap(r, (size_t)(a - r));
	if (a + len < r + rlen)
		munmap(a + len, (size_t)(r + rlen - (a + len)));
	return a;
}

/* Map meta (with meta_prot) and data (read-write) over a reservation for hdr. 0 or -errno. */
static int map_files(const shm_header_t *hdr, int meta_fd, int meta_prot, int data_fd,
                     uint8_t **base)
{
	uint8_t *b = reserve(hdr->base_hint, hdr->map_size);
	if (b == MAP_FAILED)
		return -errno;
	if (mmap(b, hdr->meta_size, meta_prot, MAP_SHARED | MAP_FIXED, meta_fd, 0) == MAP_FAILED ||
	    mmap(b + hdr->meta_size, hdr->data_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
	         data_fd, 0) == MAP_FAILED) {
		int rc = -errno;
		munmap(b, hdr->map_size);
		return rc;
	}
	*base = b;
	return 0;
}

/* A file of the arena (or its directory) may only be ours, with no group or other rights. */
static int check_owned(int fd, const char *dir, const char *what, int want_dir, char *err,
                       size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return fail(err, errlen, -errno, "cannot stat %s of arena %s: %s", what, dir,
		            strerror(errno));
	if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return fail(err, errlen, -EINVAL, "%s of arena %s is not a %s", what, dir,
		            want_dir ? "directory" : "regular file");
	if (st.st_uid != geteuid())
		return fail(err, errlen, -EPERM, "%s of arena %s belongs to uid %u, not to heapd's uid %u",
		            what, dir, (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 077)
		return fail(err, errlen, -EPERM,
		            "%s of arena %s has group or other permissions (mode %04o); it must have none",
		            what, dir, (unsigned)(st.st_mode & 07777));
	if (!want_dir && st.st_nlink != 1)
		return fail(err, errlen, -EPERM, "%s of arena %s has %lu links; it must have one", what,
		            dir, (unsigned long)st.st_nlink);
	return 0;
}

/* Open (creating if asked, mode 0700) and check the arena directory. The descriptor or -errno. */
static int open_dir(const char *dir, int create, char *err, size_t errlen)
{
	const int oflags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	struct stat st;
	int fd, rc;

	fd = open(dir, oflags);
	if (fd < 0 && errno == ENOENT && create) {
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return fail(err, errlen, -errno, "cannot create arena directory %s: %s", dir,
			            strerror(errno));
		fd = open(dir, oflags);
	}
	if (fd < 0) {
		rc = -errno;
		if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
			return fail(err, errlen, -ELOOP, "arena %s is a symbolic link; heapd does not follow one",
			            dir);
		if (rc == -ENOTDIR && lstat(dir, &st) == 0 && S_ISREG(st.st_mode))
			return fail(err, errlen, -ENOTDIR,
			            "arena %s is a file, not a directory (an arena of layout 2 or older, or "
			            "something else); this heapd keeps an arena in a directory of its own",
			            dir);
		return fail(err, errlen, rc, "cannot open arena directory %s: %s", dir, strerror(-rc));
	}
	rc = check_owned(fd, dir, "directory", 1, err, errlen);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* Take the arena's lock (its descriptor in *lock_fd). -EWOULDBLOCK when another process has it. */
static int lock_dir(int dfd, int *lock_fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	int fd = openat(dfd, HEAPD_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		int rc = (errno == EACCES || errno == EAGAIN) ? -EWOULDBLOCK : -errno;
		close(fd);
		return rc;
	}
	*lock_fd = fd;
	return 0;
}

/* Lay a new arena out in dfd (see the top of the file). Returns the two descriptors. */
static int create_files(int dfd, const char *dir, const segment_params_t *params, int *meta_fd,
                        int *data_fd, char *err, size_t errlen)
{
	const int oflags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	shm_header_t hdr;
	int mfd = -1, dfd2 = -1, rc;

	if (!params)
		return fail(err, errlen, -EINVAL, "no arena size given to lay arena %s out", dir);
	if (params_geometry(params, &hdr) < 0)
		return fail(err, errlen, -EINVAL, "arena size %llu is out of range",
		            (unsigned long long)params->arena_bytes);
	hdr.base_hint = params->base_hint ? params->base_hint : HEAPD_DEFAULT_BASE_HINT;
	if (getrandom(&hdr.arena_id, sizeof(hdr.arena_id), 0) != sizeof(hdr.arena_id))
		hdr.arena_id = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	hdr.clean_shutdown = 1;

	/* Leftovers of a creation cut short. */
	unlinkat(dfd, META_NEW, 0);
	unlinkat(dfd, DATA_NEW, 0);
	dfd2 = openat(dfd, DATA_NEW, oflags, 0600);
	mfd = dfd2 < 0 ? -1 : openat(dfd, META_NEW, oflags, 0600);
	if (dfd2 < 0 || mfd < 0) {
		rc = fail(err, errlen, -errno, "cannot create the files of arena %s: %s", dir,
		          strerror(errno));
		goto fail;
	}
	if (ftruncate(dfd2, (off_t)hdr.data_size) < 0 || ftruncate(mfd, (off_t)hdr.meta_size) < 0) {
		rc = fail(err, errlen, -errno, "cannot size arena %s (%llu + %llu bytes): %s", dir,
		          (unsigned long long)hdr.meta_size, (unsigned long long)hdr.data_size,
		          strerror(errno));
		goto fail;
	}
	/* Every other region starts as zeros, which is what they mean: no spans (layout.h). */
	uint64_t magic = HEAPD_MAGIC;
	hdr.magic = 0;
	if (pwrite(mfd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    pwrite(mfd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic)) {
		rc = fail(err, errlen, -EIO, "cannot write the header of arena %s: %s", dir,
		          strerror(errno));
		goto fail;
	}
	if (renameat(dfd, DATA_NEW, dfd, HEAPD_DATA_FILE) < 0 ||
	    renameat(dfd, META_NEW, dfd, HEAPD_META_FILE) < 0) {
		rc = fail(err, errlen, -errno, "cannot put the files of arena %s in place: %s", dir,
		          strerror(errno));
		goto fail;
	}
	*meta_fd = mfd;
	*data_fd = dfd2;
	return 0;
fail:
	close_fd(&mfd);
	close_fd(&dfd2);
	unlinkat(dfd, META_NEW, 0);
	unlinkat(dfd, DATA_NEW, 0);
	return rc;
}

/* Open one existing file of the arena, checked. The descriptor or -errno. */
static int open_file(int dfd, const char *dir, const char *name, int oflags, char *err,
                     size_t errlen)
{
	int fd = openat(dfd, name, oflags | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, -errno, "cannot open %s of arena %s: %s", name, dir,
		            strerror(errno));
	int rc = check_owned(fd, dir, name, 0, err, errlen);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/*
 * Reopen the arena in dfd: check both files and the header. A shrunken data
 * file is re-extended. 0 with the descriptors and the header, or -errno.
 */
static int reopen_files(int dfd, const char *dir, segment_t *seg, shm_header_t *hdr, char *err,
                        size_t errlen)
{
	struct stat ms, ds;
	char why[200];
	int rc;

	seg->meta_fd = open_file(dfd, dir, HEAPD_META_FILE, O_RDWR, err, errlen);
	if (seg->meta_fd < 0)
		return seg->meta_fd;
	seg->data_fd = open_file(dfd, dir, HEAPD_DATA_FILE, O_RDWR, err, errlen);
	if (seg->data_fd < 0)
		return seg->data_fd;
	if (fstat(seg->meta_fd, &ms) < 0 || fstat(seg->data_fd, &ds) < 0)
		return fail(err, errlen, -errno, "cannot stat arena %s: %s", dir, strerror(errno));
	memset(hdr, 0, sizeof(*hdr));
	if (pread(seg->meta_fd, hdr, sizeof(*hdr), 0) < 0)
		return fail(err, errlen, -errno, "cannot read arena %s: %s", dir, strerror(errno));
	/* A short data file is checked after the header has said how long it should be. */
	rc = segment_validate(hdr, (uint64_t)ms.st_size, UINT64_MAX, why, sizeof(why));
	if (rc < 0)
		return fail(err, errlen, rc, "arena %s is unusable: %s", dir, why);
	if ((uint64_t)ds.st_size < hdr->data_size) {
		if (ftruncate(seg->data_fd, (off_t)hdr->data_size) < 0)
			return fail(err, errlen, -errno, "cannot re-extend the shrunken data of arena %s: %s",
			            dir, strerror(errno));
		seg->data_repaired = 1;
	}
	return 0;
}

int segment_open(const char *dir, const segment_params_t *params, int flags, segment_t *seg,
                 int *created, char *err, size_t errlen)
{
	shm_header_t hdr;
	struct stat a, b;
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->dir_fd = seg->lock_fd = seg->meta_fd = seg->client_meta_fd = seg->client_data_fd = seg->data_fd = -1;
	if (created)
		*created = 0;

	seg->dir_fd = open_dir(dir, flags & (SEGMENT_CREATE | SEGMENT_RESET), err, errlen);
	if (seg->dir_fd < 0) {
		rc = seg->dir_fd;
		goto fail;
	}
	if ((flags & SEGMENT_LOCK) && (rc = lock_dir(seg->dir_fd, &seg->lock_fd)) < 0) {
		fail(err, errlen, rc, rc == -EWOULDBLOCK ? "arena %s is in use by another heapd"
		                                         : "cannot lock arena %s", dir);
		goto fail;
	}

	int exists = faccessat(seg->dir_fd, HEAPD_META_FILE, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	if (exists && !(flags & SEGMENT_RESET)) {
		rc = reopen_files(seg->dir_fd, dir, seg, &hdr, err, errlen);
		if (rc < 0)
			goto fail;
	} else {
		if (!exists && !(flags & (SEGMENT_CREATE | SEGMENT_RESET))) {
			rc = fail(err, errlen, -ENOENT, "there is no arena in %s", dir);
			goto fail;
		}
		rc = create_files(seg->dir_fd, dir, params, &seg->meta_fd, &seg->data_fd, err, errlen);
		if (rc < 0)
			goto fail;
		if (pread(seg->meta_fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
			rc = fail(err, errlen, -EIO, "cannot read back arena %s", dir);
			goto fail;
		}
		if (created)
			*created = 1;
	}

	/*
	 * The descriptors clients get: meta opened again read-only, and data
	 * opened again, so that nothing a client does to its open file (fcntl
	 * flags, say) reaches heapd's own.
	 */
	seg->client_meta_fd = open_file(seg->dir_fd, dir, HEAPD_META_FILE, O_RDONLY, err, errlen);
	if (seg->client_meta_fd < 0) {
		rc = seg->client_meta_fd;
		goto fail;
	}
	seg->client_data_fd = open_file(seg->dir_fd, dir, HEAPD_DATA_FILE, O_RDWR, err, errlen);
	if (seg->client_data_fd < 0) {
		rc = seg->client_data_fd;
		goto fail;
	}
	if (fstat(seg->meta_fd, &a) < 0 || fstat(seg->client_meta_fd, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		rc = fail(err, errlen, -EIO, "the meta file of arena %s changed while it was opened", dir);
		goto fail;
	}
	rc = map_files(&hdr, seg->meta_fd, PROT_READ | PROT_WRITE, seg->data_fd, &seg->base);
	if (rc < 0) {
		fail(err, errlen, rc, "cannot map arena %s: %s", dir, strerror(-rc));
		goto fail;
	}
	seg->writable_meta = 1;
	set_pointers(seg);
	return 0;
fail:
	close_fd(&seg->client_data_fd);
	close_fd(&seg->client_meta_fd);
	close_fd(&seg->meta_fd);
	close_fd(&seg->data_fd);
	close_fd(&seg->lock_fd);
	close_fd(&seg->dir_fd);
	return rc;
}

int segment_attach(int meta_fd, int data_fd, segment_t *seg, char *err, size_t errlen)
{
	shm_header_t hdr;
	struct stat ms, ds;
	char why[200];
	int rc;

	memset(seg, 0, sizeof(*seg));
	seg->dir_fd = seg->lock_fd = seg->meta_fd = seg->client_meta_fd = seg->client_data_fd = seg->data_fd = -1;
	if (fstat(meta_fd, &ms) < 0 || fstat(data_fd, &ds) < 0) {
		rc = fail(err, errlen, -errno, "cannot stat the arena descriptors: %s", strerror(errno));
		goto fail;
	}
	if (pread(meta_fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		rc = fail(err, errlen, -EINVAL, "arena meta descriptor is too short");
		goto fail;
	}
	rc = segment_validate(&hdr, (uint64_t)ms.st_size, UINT64_MAX, why, sizeof(why));
	if (rc < 0) {
		fail(err, errlen, rc, "arena is unusable: %s", why);
		goto fail;
	}
	/* Clients never write the metadata: PROT_READ, and the descriptor is read-only besides. */
	rc = map_files(&hdr, meta_fd, PROT_READ, data_fd, &seg->base);
	if (rc < 0) {
		fail(err, errlen, rc, "cannot map arena: %s", strerror(-rc));
		goto fail;
	}
	close(meta_fd); /* the mapping keeps the file */
	seg->data_fd = data_fd;
	set_pointers(seg);
	return 0;
fail:
	close(meta_fd);
	close(data_fd);
	return rc;
}

/* ---- the SIGBUS guard ---- */

typedef struct guard {
	_Atomic uintptr_t lo, hi;  /* the data range; lo == 0: entry unused */
	_Atomic int fd;
	_Atomic uint64_t size;
} guard_t;

static guard_t guards[SEGMENT_GUARD_MAX];
static struct sigaction guard_prev;
static _Atomic int guard_state;          /* 0: not installed, 1: installing, 2: installed */
static _Atomic uint64_t guard_count;

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	int saved = errno;

	for (int i = 0; i < SEGMENT_GUARD_MAX; i++) {
		uintptr_t lo = atomic_load(&guards[i].lo), hi = atomic_load(&guards[i].hi);
		if (!lo || a < lo || a >= hi)
			continue;
		int fd = atomic_load(&guards[i].fd);
		uint64_t size = atomic_load(&guards[i].size);
		struct stat st;
		/* Only a file shorter than its size is ours to fix; anything else is a real fault. */
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < size &&
		    ftruncate(fd, (off_t)size) == 0) {
			atomic_fetch_add(&guard_count, 1);
			errno = saved;
			return; /* the access is retried and finds the page */
		}
		break;
	}
	if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction) {
		guard_prev.sa_sigaction(sig, si, uc);
	} else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
		guard_prev.sa_handler(sig);
	} else {
		/* Put the default action back: the access faults again and ends the process. */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(SIGBUS, &dfl, NULL);
	}
	errno = saved;
}

static int guard_install(void)
{
	int expect = 0;
	if (atomic_compare_exchange_strong(&guard_state, &expect, 1)) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = guard_handler;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &guard_prev) < 0) {
			atomic_store(&guard_state, 0);
			return -errno;
		}
		atomic_store(&guard_state, 2);
	}
	while (atomic_load(&guard_state) == 1)
		;
	return atomic_load(&guard_state) == 2 ? 0 : -EAGAIN;
}

int segment_guard(segment_t *seg)
{
	uintptr_t lo = (uintptr_t)seg->base + seg->meta_size;
	int rc;

	if (!seg->base || seg->data_fd < 0)
		return -EINVAL;
	rc = guard_install();
	if (rc < 0)
		return rc;
	for (int i = 0; i < SEGMENT_GUARD_MAX; i++) {
		uintptr_t expect = 0;
		if (atomic_load(&guards[i].lo) != 0)
			continue;
		/* claim with a value no address takes, fill in, then publish the range */
		if (!atomic_compare_exchange_strong(&guards[i].lo, &expect, (uintptr_t)1))
			continue;
		atomic_store(&guards[i].hi, 0);
		atomic_store(&guards[i].fd, seg->data_fd);
		atomic_store(&guards[i].size, seg->data_size);
		atomic_store(&guards[i].hi, lo + seg->data_size);
		atomic_store(&guards[i].lo, lo);
		return 0;
	}
	return -ENOSPC;
}

uint64_t segment_guard_repairs(void)
{
	return atomic_load(&guard_count);
}

static void guard_remove(const segment_t *seg)
{
	uintptr_t lo = (uintptr_t)seg->base + seg->meta_size;
	for (int i = 0; i < SEGMENT_GUARD_MAX; i++) {
		if (atomic_load(&guards[i].lo) == lo && atomic_load(&guards[i].fd) == seg->data_fd) {
			atomic_store(&guards[i].hi, 0);
			atomic_store(&guards[i].lo, 0);
		}
	}
}

void segment_close(segment_t *seg)
{
	if (seg->base) {
		guard_remove(seg);
		munmap(seg->base, seg->size);
	}
	close_fd(&seg->client_data_fd);
	close_fd(&seg->client_meta_fd);
	close_fd(&seg->meta_fd);
	close_fd(&seg->data_fd);
	close_fd(&seg->lock_fd);
	close_fd(&seg->dir_fd);
	memset(seg, 0, sizeof(*seg));
	seg->dir_fd = seg->lock_fd = seg->meta_fd = seg->client_meta_fd = seg->client_data_fd = seg->data_fd = -1;
}

int segment_remove(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	const char *names[] = { HEAPD_META_FILE, HEAPD_DATA_FILE, META_NEW, DATA_NEW, HEAPD_LOCK_FILE };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlinkat(dfd, names[i], 0);
	close(dfd);
	return rmdir(dir) < 0 ? -errno : 0;
}

uint32_t segment_pagemap_next(const segment_t *seg, uint64_t p)
{
	uint64_t off = seg->hdr->pagemap_off + p * sizeof(uint64_t);
	off_t d;

	if (p >= seg->npages_max)
		return seg->npages_max;
	if (seg->meta_fd < 0)
		return (uint32_t)p;
	d = lseek(seg->meta_fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? seg->npages_max : (uint32_t)p; /* ENXIO: only a hole follows */
	if ((uint64_t)d <= off)
		return (uint32_t)p;
	uint64_t q = ((uint64_t)d - seg->hdr->pagemap_off) / sizeof(uint64_t);
	return q < seg->npages_max ? (uint32_t)q : seg->npages_max;
}

uint64_t segment_meta_next_data(const segment_t *seg, uint64_t off, uint64_t *end)
{
	off_t d, h;

	*end = seg->meta_size;
	if (off >= seg->meta_size)
		return seg->meta_size;
	if (seg->meta_fd < 0)
		return off;
	d = lseek(seg->meta_fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? seg->meta_size : off; /* ENXIO: only a hole follows */
	if ((uint64_t)d >= seg->meta_size)
		return seg->meta_size;
	h = lseek(seg->meta_fd, d, SEEK_HOLE);
	if (h > d && (uint64_t)h < seg->meta_size)
		*end = (uint64_t)h;
	return (uint64_t)d;
}

int segment_punch(segment_t *seg, uint64_t off, uint64_t len)
{
	if (seg->data_fd < 0 || off < seg->meta_size || off - seg->meta_size + len > seg->data_size)
		return -EINVAL;
	if (fallocate(seg->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	              (off_t)(off - seg->meta_size), (off_t)len) < 0)
		return -errno;
	return 0;
}
