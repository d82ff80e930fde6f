// SPDX-License-Identifier: MIT
/*
 * test_segment.c - the arena: layout of its two files, creation and reopen,
 * the checks on the directory and its files (owner, mode, symlinks), the
 * lock, validation of bad headers, reset, the client's mapping (read-only
 * metadata by every means a client has), the guard against a shrunken data
 * file, and punching.
 *
 * Every arena lives in a temporary directory made for the run, removed at
 * the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/tmpdir.h"
#include "roots.h"
#include "segment.h"
#include "sizeclass.h"

#define MIB (1024ull * 1024)

static char tmpdir[PATH_MAX];

static void make_tmpdir(void)
{
	htmp_make(tmpdir, sizeof(tmpdir), "heapd-segment", HTMP_DISK);
}

static void remove_tmpdir(void)
{
	htmp_remove(tmpdir);
}

/* A file of the arena at path (in one of a few rotating buffers, so two can be used at once). */
static const char *in_arena(const char *path, const char *file)
{
	static char bufs[4][PATH_MAX + 80];
	static unsigned next;
	char *buf = bufs[next++ % 4];
	snprintf(buf, sizeof(bufs[0]), "%s/%s", path, file);
	return buf;
}

static const char *arena_path(const char *name)
{
	static char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static const segment_params_t small_params = { .arena_bytes = 16 * MIB, .max_clients = 16 };

/* Create the arena at path (mapped in *seg; closed again if seg is NULL). */
static void create_arena(const char *path, const segment_params_t *params, segment_t *seg)
{
	char err[256] = "";
	int created = -1;
	segment_t local;
	if (!seg)
		seg = &local;
	int rc = segment_open(path, params, SEGMENT_CREATE, seg, &created, err, sizeof(err));
	ck_assert_msg(rc == 0, "create %s: %d %s", path, rc, err);
	ck_assert_int_eq(created, 1);
	if (seg == &local)
		segment_close(seg);
}

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static off_t file_size(const char *path)
{
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_size;
}

/* An open that must fail with rc, with want in the message, and leave seg empty. */
static void expect_refused(const char *path, int flags, int rc, const char *want)
{
	char err[256] = "";
	segment_t seg;
	int created = -1;
	int got = segment_open(path, &small_params, flags, &seg, &created, err, sizeof(err));
	ck_assert_msg(got == rc, "open %s: got %d (%s), want %d", path, got, err, rc);
	ck_assert_msg(strstr(err, want), "open %s: message \"%s\" lacks \"%s\"", path, err, want);
	ck_assert_ptr_null(seg.base);
	ck_assert_int_eq(seg.meta_fd, -1);
	ck_assert_int_eq(seg.data_fd, -1);
	ck_assert_int_eq(created, 0);
}

/* Fork; the child runs fn and exits with its return value. Returns the wait status. */
static int in_child(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

START_TEST(test_create_layout)
{
	const char *path = arena_path("layout");
	segment_t seg;
	struct stat st;

	create_arena(path, &small_params, &seg);
	const shm_header_t *h = seg.hdr;
	uint32_t npages = (uint32_t)(small_params.arena_bytes / HEAPD_PAGE_SIZE);

	ck_assert_ptr_eq(h, (void *)seg.base);
	ck_assert_uint_eq(h->magic, HEAPD_MAGIC);
	ck_assert_uint_eq(h->version, HEAPD_LAYOUT_VERSION);
	ck_assert_uint_eq(h->page_size, HEAPD_PAGE_SIZE);
	ck_assert_uint_eq(h->npages_max, npages);
	ck_assert_uint_eq(seg.npages_max, npages);
	ck_assert_uint_eq(h->max_clients, 16);
	ck_assert_uint_eq(h->base_hint, HEAPD_DEFAULT_BASE_HINT);
	ck_assert_uint_eq(h->npages_grown, 0);
	ck_assert_uint_eq(h->clean_shutdown, 1);
	ck_assert_int_eq(seg.writable_meta, 1);
	ck_assert_int_ge(seg.meta_fd, 0);
	ck_assert_int_ge(seg.data_fd, 0);
	ck_assert_int_ge(seg.client_meta_fd, 0);
	ck_assert_int_ge(seg.client_data_fd, 0);
	ck_assert_int_eq(fcntl(seg.client_meta_fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	ck_assert_int_eq(fcntl(seg.client_data_fd, F_GETFL) & O_ACCMODE, O_RDWR);

	/* regions: page aligned, in order, back to back; meta ends where data begins */
	const uint64_t offs[] = { h->pagemap_off, h->spans_off, h->roots_off, h->pins_off, h->meta_size,
	                          h->bits_off, h->pages_off, h->map_size };
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		ck_assert_uint_eq(offs[i] % HEAPD_PAGE_SIZE, 0);
		if (i > 0)
			ck_assert_uint_ge(offs[i], offs[i - 1]);
	}
	ck_assert_uint_ge(h->clients_off, sizeof(shm_header_t));
	ck_assert_uint_le(h->clients_off + h->max_clients * sizeof(shm_client_t), h->header_size);
	ck_assert_uint_eq(h->pagemap_off, h->header_size);
	ck_assert_uint_eq(h->pagemap_off + h->pagemap_size, h->spans_off);
	ck_assert_uint_eq(h->spans_off + h->spans_size, h->roots_off);
	ck_assert_uint_eq(h->roots_off + h->roots_size, h->pins_off);
	ck_assert_uint_eq(h->pins_off + h->pins_size, h->meta_size);
	ck_assert_uint_eq(h->roots_max, ROOTS_DEFAULT_MAX);
	ck_assert_uint_ge(h->roots_nslots, 2 * h->roots_max);
	ck_assert_uint_eq(h->roots_nslots & (h->roots_nslots - 1), 0);
	ck_assert_uint_ge(h->roots_size, (uint64_t)h->roots_max * (sizeof(shm_root_t) + sizeof(shm_root_tail_t)) +
	                                  2ULL * h->roots_nslots * 8 +
	                                  h->max_clients * sizeof(shm_root_op_t));
	ck_assert_uint_ge(h->pins_size, (uint64_t)npages * HEAPD_PIN_WORDS_PER_PAGE * 8);
	ck_assert_uint_eq(h->bits_off, h->meta_size);
	ck_assert_uint_eq(h->bits_off + h->bits_size, h->pages_off);
	ck_assert_uint_eq(h->pages_off + (uint64_t)npages * HEAPD_PAGE_SIZE, h->map_size);
	ck_assert_uint_eq(h->meta_size + h->data_size, h->map_size);
	ck_assert_uint_ge(h->pagemap_size, npages * sizeof(uint64_t));
	ck_assert_uint_ge(h->spans_size, npages * sizeof(shm_span_t));
	ck_assert_uint_ge(h->bits_size, (uint64_t)npages * HEAPD_BITS_WORDS_PER_PAGE * 8);
	ck_assert_uint_eq(h->sizeclass_sig, sizeclass_signature);

	/* the directory and the files: ours, no group or other rights */
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	ck_assert_uint_eq(st.st_uid, geteuid());
	ck_assert_uint_eq((uint64_t)file_size(in_arena(path, HEAPD_META_FILE)), h->meta_size);
	ck_assert_uint_eq((uint64_t)file_size(in_arena(path, HEAPD_DATA_FILE)), h->data_size);
	for (const char *f = HEAPD_META_FILE; f; f = strcmp(f, HEAPD_META_FILE) ? NULL : HEAPD_DATA_FILE) {
		ck_assert_int_eq(lstat(in_arena(path, f), &st), 0);
		ck_assert(S_ISREG(st.st_mode));
		ck_assert_uint_eq(st.st_mode & 077, 0);
	}
	uint64_t meta_size, data_size;
	ck_assert_int_eq(segment_sizes(&small_params, &meta_size, &data_size), 0);
	ck_assert_uint_eq(meta_size, h->meta_size);
	ck_assert_uint_eq(data_size, h->data_size);

	/* the mapping */
	ck_assert_uint_eq(seg.size, h->map_size);
	ck_assert_ptr_eq(seg.clients, (void *)(seg.base + h->clients_off));
	ck_assert_ptr_eq(seg.pagemap, (void *)(seg.base + h->pagemap_off));
	ck_assert_ptr_eq(seg.spans, (void *)(seg.base + h->spans_off));
	ck_assert_ptr_eq(seg.bits, (void *)(seg.base + h->bits_off));
	ck_assert_ptr_eq(seg.pages, seg.base + h->pages_off);
	/* page-aligned pages keep power-of-two objects up to a page naturally aligned */
	ck_assert_uint_eq((uintptr_t)seg.pages % HEAPD_PAGE_SIZE, 0);

	/* a new arena: no pages grown, no spans, no bits */
	for (uint32_t p = 0; p < npages; p++) {
		ck_assert_uint_eq(segment_pagemap_span(&seg, p), HEAPD_NIL);
		ck_assert_uint_eq(heapd_pagemap_class(seg.pagemap[p]), 0);
		ck_assert_uint_eq(seg.spans[p].state, SPAN_DEAD);
	}
	for (uint64_t w = 0; w < (uint64_t)npages * HEAPD_BITS_WORDS_PER_PAGE; w++)
		ck_assert(seg.bits[w] == 0);

	char err[200];
	ck_assert_int_eq(segment_validate(h, h->meta_size, h->data_size, err, sizeof(err)), 0);
	segment_close(&seg);
	ck_assert_ptr_null(seg.base);
	ck_assert_int_eq(seg.meta_fd, -1);
}
END_TEST

START_TEST(test_sizes)
{
	segment_params_t p = { .arena_bytes = 0 };
	uint64_t meta, one, data;
	ck_assert_int_eq(segment_sizes(&p, &meta, &data), -EINVAL);
	p.arena_bytes = 1;
	ck_assert_int_eq(segment_sizes(&p, &meta, &one), 0);
	p.arena_bytes = HEAPD_PAGE_SIZE;
	ck_assert_int_eq(segment_sizes(&p, &meta, &data), 0);
	ck_assert_uint_eq(data, one);
	p.arena_bytes = HEAPD_PAGE_SIZE + 1;
	ck_assert_int_eq(segment_sizes(&p, &meta, &data), 0);
	ck_assert_uint_ge(data, one + HEAPD_PAGE_SIZE);
	p.max_clients = 65537;
	ck_assert_int_eq(segment_sizes(&p, &meta, &data), -EINVAL);

	/* creation with a size out of range is refused */
	p = (segment_params_t){ .arena_bytes = 0 };
	char err[256] = "";
	segment_t seg;
	int rc = segment_open(arena_path("nosize"), &p, SEGMENT_CREATE, &seg, NULL, err, sizeof(err));
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "out of range"));
}
END_TEST

START_TEST(test_sparse)
{
	const char *path = arena_path("sparse");
	segment_params_t params = { .arena_bytes = 1024 * MIB, .max_clients = 64 };
	segment_t seg;
	struct stat st;

	create_arena(path, &params, &seg);
	/* only the header is written: every other region means what its zeros say */
	ck_assert_int_eq(stat(in_arena(path, HEAPD_META_FILE), &st), 0);
	uint64_t written = (uint64_t)st.st_blocks * 512;
	ck_assert_int_eq(stat(in_arena(path, HEAPD_DATA_FILE), &st), 0);
	written += (uint64_t)st.st_blocks * 512;
	ck_assert_msg(written <= seg.hdr->header_size + 64 * 1024, "a new arena uses %llu bytes",
	              (unsigned long long)written);
	segment_close(&seg);
}
END_TEST

START_TEST(test_reopen)
{
	const char *path = arena_path("reopen");
	segment_t seg;
	char err[256] = "";
	int created = -1;

	create_arena(path, &small_params, &seg);
	uint64_t id = seg.hdr->arena_id;
	uint32_t last = seg.npages_max - 1;
	memcpy(segment_page_addr(&seg, 0), "first page", 11);
	memcpy(segment_page_addr(&seg, last) + HEAPD_PAGE_SIZE - 10, "last page", 10);
	seg.spans[3] = (shm_span_t){ .start = 3, .npages = 2, .state = SPAN_SMALL, .sizeclass = 5,
	                             .owner = 7 };
	seg.pagemap[3] = heapd_pagemap_entry(3, 5);
	seg.pagemap[4] = heapd_pagemap_entry(3, 5);
	segment_allocbits(&seg, 3)[1] = 0xabcdef;
	seg.hdr->npages_grown = 5;
	segment_close(&seg);

	/* reopen, without and with SEGMENT_CREATE: the same arena */
	for (int flags = 0; flags <= SEGMENT_CREATE; flags += SEGMENT_CREATE) {
		int rc = segment_open(path, NULL, flags, &seg, &created, err, sizeof(err));
		ck_assert_msg(rc == 0, "reopen: %d %s", rc, err);
		ck_assert_int_eq(created, 0);
		ck_assert_uint_eq(seg.hdr->arena_id, id);
		ck_assert_uint_eq(seg.hdr->npages_grown, 5);
		ck_assert_str_eq((char *)segment_page_addr(&seg, 0), "first page");
		ck_assert_str_eq((char *)segment_page_addr(&seg, last) + HEAPD_PAGE_SIZE - 10, "last page");
		ck_assert_uint_eq(seg.spans[3].npages, 2);
		ck_assert_uint_eq(seg.spans[3].state, SPAN_SMALL);
		ck_assert_uint_eq(seg.spans[3].owner, 7);
		ck_assert_uint_eq(segment_pagemap_span(&seg, 4), 3);
		ck_assert_uint_eq(heapd_pagemap_class(seg.pagemap[4]), 5);
		ck_assert_uint_eq(segment_pagemap_span(&seg, 5), HEAPD_NIL);
		ck_assert_uint_eq(segment_allocbits(&seg, 3)[1], 0xabcdef);
		segment_close(&seg);
	}
}
END_TEST

static const char *lock_path;

/* Exit codes of the child that tries the lock. */
enum { LOCK_TAKEN = 0, LOCK_BLOCKED = 1, LOCK_ERROR = 2 };

static int try_lock(void *arg)
{
	char err[256] = "";
	segment_t seg;
	(void)arg;
	int rc = segment_open(lock_path, NULL, SEGMENT_LOCK, &seg, NULL, err, sizeof(err));
	if (rc == 0) {
		segment_close(&seg);
		return LOCK_TAKEN;
	}
	return rc == -EWOULDBLOCK && strstr(err, "in use") ? LOCK_BLOCKED : LOCK_ERROR;
}

static int open_unlocked(void *arg)
{
	segment_t seg;
	(void)arg;
	if (segment_open(lock_path, NULL, 0, &seg, NULL, NULL, 0) < 0)
		return 1;
	segment_close(&seg);
	return 0;
}

START_TEST(test_lock)
{
	segment_t seg;
	char err[256] = "";

	lock_path = arena_path("lock");
	create_arena(lock_path, &small_params, &seg);
	segment_close(&seg);

	int rc = segment_open(lock_path, NULL, SEGMENT_LOCK, &seg, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "lock: %d %s", rc, err);
	int status = in_child(try_lock, NULL);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), LOCK_BLOCKED);
	/* the lock only keeps out other lockers */
	status = in_child(open_unlocked, NULL);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* a forked child does not inherit it: the parent's lock holds while the child lives on */
	segment_close(&seg);

	status = in_child(try_lock, NULL);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), LOCK_TAKEN);
}
END_TEST

/* Create an arena, change its header with fn, and write it back. */
static void corrupt_header(const char *path, void (*fn)(shm_header_t *))
{
	segment_t seg;
	shm_header_t h;

	create_arena(path, &small_params, &seg);
	segment_close(&seg);
	int fd = open(in_arena(path, HEAPD_META_FILE), O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	fn(&h);
	ck_assert_int_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
}

static void bad_magic(shm_header_t *h) { h->magic ^= 1; }
static void newer_version(shm_header_t *h) { h->version = HEAPD_LAYOUT_VERSION + 1; }
static void older_version(shm_header_t *h) { h->version = 2; }
static void bad_page_size(shm_header_t *h) { h->page_size = 4096; }
static void zero_pages(shm_header_t *h) { h->npages_max = 0; }
static void zero_clients(shm_header_t *h) { h->max_clients = 0; }
static void more_pages(shm_header_t *h) { h->npages_max += 1; }
static void moved_pagemap(shm_header_t *h) { h->pagemap_off += HEAPD_PAGE_SIZE; }
static void short_spans(shm_header_t *h) { h->spans_size -= HEAPD_PAGE_SIZE; }
static void short_bits(shm_header_t *h) { h->bits_size -= HEAPD_PAGE_SIZE; }
static void other_classes(shm_header_t *h) { h->sizeclass_sig ^= 1; }
static void moved_pages(shm_header_t *h) { h->pages_off += HEAPD_PAGE_SIZE; }
static void longer_map(shm_header_t *h) { h->map_size += HEAPD_PAGE_SIZE; }
static void overgrown(shm_header_t *h) { h->npages_grown = h->npages_max + 1; }

START_TEST(test_corrupt_headers)
{
	static const struct {
		const char *name;
		void (*fn)(shm_header_t *);
		int rc;
		const char *msg;
	} cases[] = {
		{ "magic", bad_magic, -EINVAL, "bad magic" },
		{ "newer", newer_version, -EPROTO, "newer" },
		{ "older", older_version, -EPROTO, "not supported" },
		{ "pagesize", bad_page_size, -EINVAL, "page size" },
		{ "zeropages", zero_pages, -EINVAL, "impossible" },
		{ "zeroclients", zero_clients, -EINVAL, "impossible" },
		{ "morepages", more_pages, -EINVAL, "inconsistent" },
		{ "pagemap", moved_pagemap, -EINVAL, "inconsistent" },
		{ "spans", short_spans, -EINVAL, "inconsistent" },
		{ "bits", short_bits, -EINVAL, "inconsistent" },
		{ "classes", other_classes, -EPROTO, "other size classes" },
		{ "pages", moved_pages, -EINVAL, "inconsistent" },
		{ "mapsize", longer_map, -EINVAL, "inconsistent" },
		{ "grown", overgrown, -EINVAL, "grown" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "corrupt-%s", cases[i].name);
		const char *path = arena_path(name);
		char meta[PATH_MAX + 80];
		snprintf(meta, sizeof(meta), "%s", in_arena(path, HEAPD_META_FILE));
		corrupt_header(path, cases[i].fn);
		off_t size = file_size(meta);
		expect_refused(path, 0, cases[i].rc, cases[i].msg);
		/* SEGMENT_CREATE never overwrites an arena that is not valid */
		expect_refused(path, SEGMENT_CREATE, cases[i].rc, cases[i].msg);
		expect_refused(path, SEGMENT_LOCK, cases[i].rc, "unusable");
		ck_assert_int_eq(file_size(meta), size);

		/* a client refuses it too, and closes the descriptors */
		char err[256] = "";
		segment_t cli;
		int mfd = open(meta, O_RDONLY | O_CLOEXEC);
		int dfd = open(in_arena(path, HEAPD_DATA_FILE), O_RDWR | O_CLOEXEC);
		ck_assert_int_ge(mfd, 0);
		ck_assert_int_ge(dfd, 0);
		ck_assert_int_eq(segment_attach(mfd, dfd, &cli, err, sizeof(err)), cases[i].rc);
		ck_assert_ptr_nonnull(strstr(err, cases[i].msg));
		ck_assert_ptr_null(cli.base);
		ck_assert_int_eq(fcntl(mfd, F_GETFD), -1);
		ck_assert_int_eq(fcntl(dfd, F_GETFD), -1);
		htmp_remove(path);
	}
}
END_TEST

START_TEST(test_short_files)
{
	const char *path = arena_path("short");
	segment_t seg;
	char err[256] = "";

	create_arena(path, &small_params, &seg);
	uint64_t meta = seg.meta_size, data = seg.data_size;
	memcpy(segment_page_addr(&seg, 0), "before", 7);
	memcpy(segment_page_addr(&seg, seg.npages_max - 1), "cut", 4);
	segment_close(&seg);

	/* a shorter meta is refused: clients cannot write it, so something is wrong */
	ck_assert_int_eq(truncate(in_arena(path, HEAPD_META_FILE), (off_t)(meta - HEAPD_PAGE_SIZE)), 0);
	expect_refused(path, 0, -EINVAL, "meta is");
	expect_refused(path, SEGMENT_CREATE, -EINVAL, "meta is");
	ck_assert_int_eq(truncate(in_arena(path, HEAPD_META_FILE), 100), 0);
	expect_refused(path, 0, -EINVAL, "too short");
	ck_assert_int_eq(file_size(in_arena(path, HEAPD_META_FILE)), 100);
	htmp_remove(path);

	/* a shorter data file was shrunk by a client: re-extended, the cut range reads as zero */
	create_arena(path, &small_params, &seg);
	memcpy(segment_page_addr(&seg, 0), "before", 7);
	memcpy(segment_page_addr(&seg, seg.npages_max - 1), "cut", 4);
	segment_close(&seg);
	ck_assert_int_eq(truncate(in_arena(path, HEAPD_DATA_FILE), (off_t)(data / 2)), 0);
	int rc = segment_open(path, NULL, 0, &seg, NULL, err, sizeof(err));
	ck_assert_msg(rc == 0, "reopen after truncation: %d %s", rc, err);
	ck_assert_int_eq(seg.data_repaired, 1);
	ck_assert_uint_eq((uint64_t)file_size(in_arena(path, HEAPD_DATA_FILE)), data);
	ck_assert_str_eq((char *)segment_page_addr(&seg, 0), "before");
	ck_assert_uint_eq(segment_page_addr(&seg, seg.npages_max - 1)[0], 0);
	segment_close(&seg);

	/* a longer one is fine: the header decides */
	ck_assert_int_eq(truncate(in_arena(path, HEAPD_DATA_FILE), (off_t)(data + MIB)), 0);
	ck_assert_int_eq(segment_open(path, NULL, 0, &seg, NULL, NULL, 0), 0);
	ck_assert_int_eq(seg.data_repaired, 0);
	segment_close(&seg);
}
END_TEST

START_TEST(test_missing)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s", arena_path("missing"));
	segment_t seg;
	int created = -1;
	char err[256] = "";

	/* no directory, or a directory with no arena: refused unless asked to create */
	expect_refused(path, 0, -ENOENT, "cannot open arena directory");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	expect_refused(path, 0, -ENOENT, "no arena");
	/* laying it out needs a size */
	ck_assert_int_eq(segment_open(path, NULL, SEGMENT_CREATE, &seg, &created, err, sizeof(err)),
	                 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no arena size"));
	expect_refused(arena_path("no/such/dir"), SEGMENT_CREATE, -ENOENT, "cannot create arena directory");

	/* leftovers of a creation cut short before its commit do not count as an arena */
	ck_assert_int_eq(access(path, F_OK), 0);
	write_file(in_arena(path, HEAPD_DATA_FILE), "stale", 5);
	write_file(in_arena(path, "meta.new"), "half", 4);
	expect_refused(path, 0, -ENOENT, "no arena");
	ck_assert_int_eq(segment_open(path, &small_params, SEGMENT_CREATE, &seg, &created, err,
	                              sizeof(err)), 0);
	ck_assert_int_eq(created, 1);
	ck_assert_int_ne(access(in_arena(path, "meta.new"), F_OK), 0);
	ck_assert_uint_eq((uint64_t)file_size(in_arena(path, HEAPD_DATA_FILE)), seg.data_size);
	segment_close(&seg);
}
END_TEST

/*
 * Nothing of the arena is followed through a symlink or accepted from
 * another owner, or with rights for the group or others: a local user who
 * planted it could otherwise read and write every object.
 */
START_TEST(test_not_ours)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s", arena_path("planted"));
	char target[PATH_MAX + 64];
	segment_t seg;

	/* the directory is a symlink */
	snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
	ck_assert_int_eq(mkdir(target, 0700), 0);
	ck_assert_int_eq(symlink(target, path), 0);
	expect_refused(path, SEGMENT_CREATE, -ELOOP, "symbolic link");
	ck_assert_int_ne(access(in_arena(target, HEAPD_META_FILE), F_OK), 0);
	unlink(path);

	/* a directory with group or other rights */
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
	expect_refused(path, SEGMENT_CREATE, -EPERM, "group or other permissions");
	ck_assert_int_eq(chmod(path, 0700), 0);

	/* a directory of another user */
	if (geteuid() == 0) {
		ck_assert_int_eq(chown(path, 65534, 65534), 0);
		expect_refused(path, SEGMENT_CREATE, -EPERM, "belongs to uid 65534");
		ck_assert_int_eq(chown(path, 0, 0), 0);
	}

	/* a file where the arena should be (a layout-2 arena, or anything else) */
	write_file(arena_path("file"), "x", 1);
	expect_refused(arena_path("file"), SEGMENT_CREATE, -ENOTDIR, "not a directory");

	/* files planted in the directory: a symlink, another's file, one with rights for others */
	create_arena(path, &small_params, &seg);
	segment_close(&seg);
	ck_assert_int_eq(rename(in_arena(path, HEAPD_DATA_FILE), in_arena(target, "data")), 0);
	ck_assert_int_eq(symlink(in_arena(target, "data"), in_arena(path, HEAPD_DATA_FILE)), 0);
	expect_refused(path, 0, -ELOOP, "cannot open data");
	unlink(in_arena(path, HEAPD_DATA_FILE));
	ck_assert_int_eq(rename(in_arena(target, "data"), in_arena(path, HEAPD_DATA_FILE)), 0);
	ck_assert_int_eq(chmod(in_arena(path, HEAPD_META_FILE), 0644), 0);
	expect_refused(path, 0, -EPERM, "group or other permissions");
	ck_assert_int_eq(chmod(in_arena(path, HEAPD_META_FILE), 0600), 0);
	if (geteuid() == 0) {
		ck_assert_int_eq(chown(in_arena(path, HEAPD_DATA_FILE), 65534, 65534), 0);
		expect_refused(path, 0, -EPERM, "belongs to uid 65534");
		ck_assert_int_eq(chown(in_arena(path, HEAPD_DATA_FILE), 0, 0), 0);
	}
	ck_assert_int_eq(link(in_arena(path, HEAPD_META_FILE), in_arena(target, "meta-link")), 0);
	expect_refused(path, 0, -EPERM, "links");
	unlink(in_arena(target, "meta-link"));
	ck_assert_int_eq(segment_open(path, NULL, 0, &seg, NULL, NULL, 0), 0);
	segment_close(&seg);
}
END_TEST

START_TEST(test_garbage_headers)
{
	static uint8_t buf[1 << 16];
	const char *path = arena_path("garbage");

	create_arena(path, &small_params, NULL);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(getrandom(buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
		int fd = open(in_arena(path, HEAPD_META_FILE), O_RDWR | O_CLOEXEC);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
		close(fd);
		expect_refused(path, 0, -EINVAL, "unusable");
		expect_refused(path, SEGMENT_CREATE, -EINVAL, "unusable");
	}

	/*
	 * Random headers that get past the magic and version checks: the
	 * geometry checks must refuse them all, whatever the numbers.
	 */
	for (int i = 0; i < 2000; i++) {
		shm_header_t h;
		uint64_t msize, dsize;
		char err[200];
		ck_assert_int_eq(getrandom(&h, sizeof(h), 0), (ssize_t)sizeof(h));
		ck_assert_int_eq(getrandom(&msize, sizeof(msize), 0), (ssize_t)sizeof(msize));
		ck_assert_int_eq(getrandom(&dsize, sizeof(dsize), 0), (ssize_t)sizeof(dsize));
		h.magic = HEAPD_MAGIC;
		h.version = HEAPD_LAYOUT_VERSION;
		if (i % 2)
			h.page_size = HEAPD_PAGE_SIZE;
		if (i % 4 == 1) {
			h.npages_max %= 100000;
			h.max_clients %= 2000;
		}
		ck_assert_int_lt(segment_validate(&h, msize, dsize, err, sizeof(err)), 0);
	}
}
END_TEST

START_TEST(test_reset)
{
	const char *path = arena_path("reset");
	static uint8_t buf[1 << 16];
	segment_t seg;
	int created = -1;
	char err[256] = "";

	create_arena(path, &small_params, &seg);
	uint64_t id = seg.hdr->arena_id;
	memcpy(seg.pages, "old data", 9);
	seg.pagemap[0] = heapd_pagemap_entry(0, 0);
	segment_close(&seg);
	ck_assert_int_eq(getrandom(buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	int fd = open(in_arena(path, HEAPD_META_FILE), O_RDWR | O_CLOEXEC);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	close(fd);

	/* reset lays a garbled arena out anew, with new parameters, and nothing old survives */
	segment_params_t bigger = { .arena_bytes = 32 * MIB, .max_clients = 8 };
	int rc = segment_open(path, &bigger, SEGMENT_RESET | SEGMENT_CREATE | SEGMENT_LOCK, &seg,
	                      &created, err, sizeof(err));
	ck_assert_msg(rc == 0, "reset arena: %d %s", rc, err);
	ck_assert_int_eq(created, 1);
	ck_assert_uint_eq(seg.hdr->magic, HEAPD_MAGIC);
	ck_assert_uint_ne(seg.hdr->arena_id, id);
	ck_assert_uint_eq(seg.hdr->npages_max, 32 * MIB / HEAPD_PAGE_SIZE);
	for (uint64_t off = sizeof(shm_header_t); off < seg.hdr->clients_off; off++)
		ck_assert_uint_eq(seg.base[off], 0);
	ck_assert_uint_eq(seg.pages[0], 0);
	ck_assert_uint_eq(segment_pagemap_span(&seg, 0), HEAPD_NIL);
	segment_close(&seg);
}
END_TEST

/* The client mapping used by the children below. */
static segment_t client;
static int client_meta_fd = -1;

static void no_core(void)
{
	struct rlimit rl = { 0, 0 };
	struct sigaction sa = { .sa_handler = SIG_DFL };
	setrlimit(RLIMIT_CORE, &rl);
	sigaction(SIGSEGV, &sa, NULL);
}

static int write_pagemap(void *arg)
{
	(void)arg;
	no_core();
	*(volatile uint64_t *)&client.pagemap[0] = 1;
	return 0;
}

static int write_span(void *arg)
{
	(void)arg;
	no_core();
	*(volatile uint32_t *)&client.spans[0].npages = 1;
	return 0;
}

static int write_header(void *arg)
{
	(void)arg;
	no_core();
	*(volatile uint32_t *)&client.hdr->npages_grown = 0xfffffff0u;
	return 0;
}

static int write_client_table(void *arg)
{
	(void)arg;
	no_core();
	*(volatile uint32_t *)&client.clients[0].pid = 1;
	return 0;
}

/* Every way a client could make the metadata writable: each must fail. 0 if all did. */
static int unlock_meta(void *arg)
{
	(void)arg;
	if (mprotect(client.base, client.meta_size, PROT_READ | PROT_WRITE) == 0)
		return 1;
	if (mmap(NULL, client.meta_size, PROT_READ | PROT_WRITE, MAP_SHARED, client_meta_fd, 0) !=
	    MAP_FAILED)
		return 2;
	if (ftruncate(client_meta_fd, 8192) == 0)
		return 3;
	if (fallocate(client_meta_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0)
		return 4;
	if (pwrite(client_meta_fd, "x", 1, 0) == 1)
		return 5;
	return 0;
}

static int write_pages_and_bits(void *arg)
{
	(void)arg;
	memcpy(client.pages + 100, "from the child", 15);
	client.bits[5] = 0x77;
	client.bits[6] = 0x77;
	return 0;
}

START_TEST(test_attach)
{
	const char *path = arena_path("attach");
	segment_t seg;
	char err[256] = "";

	create_arena(path, &small_params, &seg);
	int mfd = dup(seg.client_meta_fd), dfd = dup(seg.client_data_fd);
	client_meta_fd = dup(seg.client_meta_fd);
	int rc = segment_attach(mfd, dfd, &client, err, sizeof(err));
	ck_assert_msg(rc == 0, "attach: %d %s", rc, err);
	ck_assert_int_eq(fcntl(mfd, F_GETFD), -1); /* attach took meta's descriptor and closed it */
	ck_assert_int_eq(client.data_fd, dfd);     /* and keeps data's, to repair a truncation */
	ck_assert_int_eq(client.meta_fd, -1);
	ck_assert_int_eq(client.writable_meta, 0);
	ck_assert_ptr_ne(client.base, seg.base);
	ck_assert_uint_eq((uintptr_t)client.pages % HEAPD_PAGE_SIZE, 0);
	ck_assert_uint_eq(client.hdr->arena_id, seg.hdr->arena_id);
	ck_assert_uint_eq(client.npages_max, seg.npages_max);
	ck_assert_uint_eq(client.size, seg.size);

	/* every region is the same memory in both mappings */
	seg.pagemap[7] = heapd_pagemap_entry(42, 3);
	seg.spans[7].gen = 99;
	ck_assert_uint_eq(client.pagemap[7], heapd_pagemap_entry(42, 3));
	ck_assert_uint_eq(client.spans[7].gen, 99);
	memcpy(seg.pages + seg.size - seg.hdr->pages_off - 6, "tail!", 6);
	ck_assert_str_eq((char *)client.pages + seg.size - seg.hdr->pages_off - 6, "tail!");
	client.bits[1] = 3;
	client.bits[2] = 4;
	ck_assert_uint_eq(seg.bits[1], 3);
	ck_assert_uint_eq(seg.bits[2], 4);

	/* the metadata is read-only for a client: stores fault... */
	int (*const writers[])(void *) = { write_pagemap, write_span, write_header, write_client_table };
	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++) {
		int status = in_child(writers[i], NULL);
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		              "writer %zu: status 0x%x, want SIGSEGV", i, status);
	}
	/* ... and nothing the descriptor allows makes it writable */
	int status = in_child(unlock_meta, NULL);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "way %d to write meta worked",
	              WEXITSTATUS(status));
	ck_assert_uint_eq(segment_pagemap_span(&seg, 0), HEAPD_NIL);
	ck_assert_uint_eq(seg.spans[0].npages, 0);
	ck_assert_uint_eq(seg.hdr->npages_grown, 0);

	/* pages and bitmaps are writable, and shared with the daemon's mapping */
	status = in_child(write_pages_and_bits, NULL);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_str_eq((char *)seg.pages + 100, "from the child");
	ck_assert_uint_eq(seg.bits[5], 0x77);
	ck_assert_uint_eq(seg.bits[6], 0x77);

	close(client_meta_fd);
	client_meta_fd = -1;
	segment_close(&client);
	segment_close(&seg);
}
END_TEST

/* In a child with the client mapping guarded: shrink data, then touch its last page. */
static int shrink_and_touch(void *arg)
{
	(void)arg;
	if (segment_guard(&client) < 0)
		return 1;
	if (ftruncate(client.data_fd, 8192) < 0)
		return 2;
	uint8_t *last = client.pages + ((uint64_t)(client.npages_max - 1) << HEAPD_PAGE_SHIFT);
	last[10] = 'x'; /* SIGBUS without the guard */
	return last[10] == 'x' && segment_guard_repairs() == 1 ? 0 : 3;
}

/* Touch the data beyond a shrunken file with no guard: the default SIGBUS. */
static int touch_unguarded(void *arg)
{
	(void)arg;
	no_core();
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigaction(SIGBUS, &sa, NULL);
	if (ftruncate(client.data_fd, 8192) < 0)
		return 2;
	client.pages[((uint64_t)(client.npages_max - 1) << HEAPD_PAGE_SHIFT)] = 'x';
	return 0;
}

/*
 * A client that shrinks the data file costs the contents of the cut range,
 * not the life of anyone mapping it: the guard re-extends the file.
 */
START_TEST(test_guard)
{
	const char *path = arena_path("guard");
	segment_t seg;

	create_arena(path, &small_params, &seg);
	seg.bits[1] = 0x1234; /* in the first 8 KiB of data, which the cut keeps */
	ck_assert_int_eq(segment_attach(dup(seg.client_meta_fd), dup(seg.client_data_fd), &client,
	                                NULL, 0), 0);
	int status = in_child(touch_unguarded, NULL);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status 0x%x", status);
	ck_assert_int_eq(ftruncate(seg.data_fd, (off_t)seg.data_size), 0);

	status = in_child(shrink_and_touch, NULL);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
	ck_assert_uint_eq((uint64_t)file_size(in_arena(path, HEAPD_DATA_FILE)), seg.data_size);
	ck_assert_uint_eq(seg.bits[1], 0x1234); /* the first 8 KiB were never cut */
	ck_assert_uint_eq(seg.pages[((uint64_t)(seg.npages_max - 1) << HEAPD_PAGE_SHIFT) + 10], 'x');

	/* a fault that is no truncation is not swallowed: the process dies as it would have */
	ck_assert_int_eq(segment_guard(&seg), 0);
	segment_close(&client);
	segment_close(&seg);
}
END_TEST

/*
 * Wherever a mapping lands, the pages region is page aligned, so objects of
 * a power-of-two class up to a page are naturally aligned. A small arena
 * and odd multiples of 4 KiB mapped in between push the mappings off any
 * larger alignment the kernel might pick by itself.
 */
START_TEST(test_mapping_alignment)
{
	const segment_params_t tiny = { .arena_bytes = HEAPD_PAGE_SIZE, .max_clients = 1 };
	const char *path = arena_path("align");
	enum { N = 8, GAP = 13 * 4096 };
	segment_t seg, cli[N];
	void *gaps[N];

	create_arena(path, &tiny, &seg);
	ck_assert_uint_eq((uintptr_t)seg.pages % HEAPD_PAGE_SIZE, 0);
	for (int i = 0; i < N; i++) {
		gaps[i] = mmap(NULL, GAP, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(gaps[i], MAP_FAILED);
		ck_assert_int_eq(segment_attach(dup(seg.client_meta_fd), dup(seg.client_data_fd), &cli[i],
		                                NULL, 0), 0);
		ck_assert_msg((uintptr_t)cli[i].pages % HEAPD_PAGE_SIZE == 0, "mapping %d: pages at %p", i,
		              (void *)cli[i].pages);
		cli[i].pages[i] = (uint8_t)(i + 1);
		ck_assert_uint_eq(seg.pages[i], i + 1);
	}
	for (int i = 0; i < N; i++) {
		segment_close(&cli[i]);
		munmap(gaps[i], GAP);
	}
	segment_close(&seg);
}
END_TEST

START_TEST(test_punch)
{
	const char *path = arena_path("punch");
	segment_t seg;
	struct stat st;

	create_arena(path, &small_params, &seg);
	uint8_t *page = segment_page_addr(&seg, 3);
	memset(page, 0xab, 4 * HEAPD_PAGE_SIZE);
	ck_assert_int_eq(fstat(seg.data_fd, &st), 0);
	blkcnt_t before = st.st_blocks;

	int rc = segment_punch(&seg, seg.hdr->pages_off + 3 * HEAPD_PAGE_SIZE, 4 * HEAPD_PAGE_SIZE);
	if (rc == -EOPNOTSUPP) {
		segment_close(&seg);
		return; /* the file system cannot punch; nothing to check */
	}
	ck_assert_int_eq(rc, 0);
	for (size_t i = 0; i < 4 * HEAPD_PAGE_SIZE; i++)
		if (page[i] != 0)
			ck_abort_msg("byte %zu reads 0x%x after the punch", i, page[i]);
	ck_assert_int_eq(fstat(seg.data_fd, &st), 0);
	ck_assert_int_lt(st.st_blocks, before);
	ck_assert_uint_eq((uint64_t)st.st_size, seg.data_size);
	/* only the data can be punched */
	ck_assert_int_eq(segment_punch(&seg, 0, HEAPD_PAGE_SIZE), -EINVAL);
	ck_assert_int_eq(segment_punch(&seg, seg.size - HEAPD_PAGE_SIZE, 2 * HEAPD_PAGE_SIZE), -EINVAL);
	segment_close(&seg);
}
END_TEST

static Suite *segment_suite(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = tcase_create("segment");

	tcase_add_unchecked_fixture(tc, make_tmpdir, remove_tmpdir);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_create_layout);
	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_sparse);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_lock);
	tcase_add_test(tc, test_corrupt_headers);
	tcase_add_test(tc, test_short_files);
	tcase_add_test(tc, test_missing);
	tcase_add_test(tc, test_not_ours);
	tcase_add_test(tc, test_garbage_headers);
	tcase_add_test(tc, test_reset);
	tcase_add_test(tc, test_attach);
	tcase_add_test(tc, test_guard);
	tcase_add_test(tc, test_mapping_alignment);
	tcase_add_test(tc, test_punch);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(segment_suite);
