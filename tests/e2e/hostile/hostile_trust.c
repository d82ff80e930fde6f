// SPDX-License-Identifier: MIT
/*
 * hostile_trust.c - the trust boundary (shm/layout.h), attacked by a client
 * that runs as another user (root could reopen any file through
 * /proc/self/fd, so the attacker is nobody, let in with --allow-uid):
 *   - the metadata cannot be written: not through the descriptor heapd
 *     passes (mmap, mprotect, ftruncate, fallocate, write, a reopen through
 *     /proc), not through the library's mapping, and not by name;
 *   - shrinking or punching the data file costs the contents of the cut
 *     range and nothing else: heapd and the other clients keep running;
 *   - an arena path or socket path another user prepared is refused, and
 *     nothing is written through a symlink there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness/child.h"
#include "harness/ctl.h"
#include "harness/heapd.h"
#include "harness/raw.h"
#include "harness/util.h"
#include "harness/view.h"
#include "heapclient.h"
#include "hostile_suites.h"

/* ---- the metadata ---- */

/* Every way a client could write the metadata must fail. Runs as nobody. */
static int attack_meta(void *arg)
{
	char path[256];
	uint32_t slot;
	int meta = -1, data = -1;
	struct stat st;
	(void)arg;

	if (hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d: %s", HCHILD_NOBODY, strerror(errno));
	int sock = hraw_hello_fds(hd_default.sock, 0, &slot, &meta, &data);
	if (sock < 0)
		hchild_fail("Hello as uid %d: %s", HCHILD_NOBODY, strerror(-sock));
	if (meta < 0 || data < 0)
		hchild_fail("the Hello reply passed descriptors %d and %d", meta, data);
	int acc = fcntl(meta, F_GETFL) & O_ACCMODE;
	if (acc != O_RDONLY)
		hchild_fail("the meta descriptor has access mode %d, not O_RDONLY", acc);
	if ((fcntl(data, F_GETFL) & O_ACCMODE) != O_RDWR)
		hchild_fail("the data descriptor is not read-write");
	if (fstat(meta, &st) < 0 || st.st_size < (off_t)sizeof(shm_header_t))
		hchild_fail("fstat of the meta descriptor: %s", strerror(errno));
	size_t len = (size_t)st.st_size;

	void *w = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, meta, 0);
	if (w != MAP_FAILED)
		hchild_fail("mmap(meta, PROT_READ | PROT_WRITE, MAP_SHARED) succeeded");
	uint8_t *r = mmap(NULL, len, PROT_READ, MAP_SHARED, meta, 0);
	if (r == MAP_FAILED)
		hchild_fail("a read-only mapping of meta: %s", strerror(errno));
	if (mprotect(r, len, PROT_READ | PROT_WRITE) == 0)
		hchild_fail("mprotect of a read-only mapping of meta to PROT_WRITE succeeded");
	if (madvise(r, HEAPD_PAGE_SIZE, MADV_REMOVE) == 0)
		hchild_fail("madvise(MADV_REMOVE) punched meta through a read-only mapping");
	if (ftruncate(meta, HEAPD_PAGE_SIZE) == 0)
		hchild_fail("ftruncate of the meta descriptor succeeded");
	if (fallocate(meta, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, HEAPD_PAGE_SIZE) == 0)
		hchild_fail("fallocate(PUNCH_HOLE) of the meta descriptor succeeded");
	if (fallocate(meta, 0, 0, (off_t)len + HEAPD_PAGE_SIZE) == 0)
		hchild_fail("fallocate of the meta descriptor succeeded");
	uint32_t junk = 0xfffffff0u;
	if (pwrite(meta, &junk, sizeof(junk), offsetof(shm_header_t, npages_grown)) >= 0)
		hchild_fail("pwrite to the meta descriptor succeeded");
	if (write(meta, &junk, sizeof(junk)) >= 0)
		hchild_fail("write to the meta descriptor succeeded");
	if (fchmod(meta, 0666) == 0)
		hchild_fail("fchmod of the meta descriptor succeeded");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", meta);
	int fd = open(path, O_RDWR);
	if (fd >= 0)
		hchild_fail("reopening the meta descriptor read-write through %s succeeded", path);
	fd = open(path, O_WRONLY);
	if (fd >= 0)
		hchild_fail("reopening the meta descriptor write-only through %s succeeded", path);
	for (int i = 0; i < 2; i++) {
		const char *file = hd_arena_file(&hd_default, i ? HEAPD_DATA_FILE : HEAPD_META_FILE);
		if ((fd = open(file, O_RDONLY)) >= 0)
			hchild_fail("%s opens by name for uid %d", file, HCHILD_NOBODY);
	}
	/* A private writable mapping is the process's own copy: write it, nobody else sees it. */
	shm_header_t *priv = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, meta, 0);
	if (priv != MAP_FAILED) {
		priv->npages_grown = junk;
		priv->magic = 0;
		munmap(priv, len);
	}
	munmap(r, len);
	close(meta);
	close(data);
	close(sock);

	/* The library's own mapping of the metadata, found from an object's address. */
	hview_t a;
	if (hview_map(&a) < 0)
		hchild_fail("no arena through the library: %s", strerror(errno));
	void *base = (void *)(uintptr_t)a.base;
	if (mprotect(base, a.hdr->meta_size, PROT_READ | PROT_WRITE) == 0)
		hchild_fail("mprotect of the library's metadata mapping to PROT_WRITE succeeded");
	if (mprotect(base, HEAPD_PAGE_SIZE, PROT_READ | PROT_WRITE) == 0)
		hchild_fail("mprotect of the library's header page to PROT_WRITE succeeded");
	if (madvise(base, HEAPD_PAGE_SIZE, MADV_REMOVE) == 0)
		hchild_fail("madvise(MADV_REMOVE) of the library's header page succeeded");
	if (a.hdr->npages_grown > a.hdr->npages_max)
		hchild_fail("the header says %u grown pages of %u", a.hdr->npages_grown, a.hdr->npages_max);

	/* The data stays writable, and the library works on. */
	char *p = hc_malloc(1000);
	if (!p)
		hchild_fail("hc_malloc after the attack: %s", strerror(errno));
	hutil_fill(p, 1000, 7);
	if (!hutil_verify(p, 1000, 7))
		hchild_fail("an object lost its pattern");
	hc_free(p);
	hc_disconnect();
	return 0;
}

START_TEST(test_meta_read_only_for_other_users)
{
	shm_header_t before, after;
	struct stat st;

	hchild_sync_init();
	hd_default_start("64M", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	hview_read_header(hd_default.arena, &before);
	hchild_expect_ok(hchild_spawn(attack_meta, NULL), "a client of uid 65534 attacking the metadata");

	hview_read_header(hd_default.arena, &after);
	/* The geometry is fixed at creation; every byte of it must be as it was. */
	ck_assert_msg(memcmp(&before, &after, offsetof(shm_header_t, npages_grown)) == 0,
	              "the header's geometry changed");
	ck_assert_uint_le(after.npages_grown, after.npages_max);
	ck_assert_uint_eq(after.generation, before.generation);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(stat(hd_arena_file(&hd_default,
		                                    i ? HEAPD_DATA_FILE : HEAPD_META_FILE), &st), 0);
		ck_assert_uint_eq(st.st_mode & 07777, 0600);
		ck_assert_uint_eq(st.st_uid, geteuid());
		ck_assert_uint_eq((uint64_t)st.st_size, i ? after.data_size : after.meta_size);
	}
	ck_assert_int_eq(stat(hd_default.arena, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	ck_assert(hd_alive(&hd_default));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hchild_run_t r;
	hchild_run_heapctl(&r, HCHILD_WAIT_MS, "--socket", hd_default.sock, "check", (const char *)NULL);
	ck_assert_msg(r.status == 0, "heapctl check: status %d: %s%s", r.status, r.out, r.err);
	hchild_run_free(&r);
}
END_TEST

/* ---- the data file ---- */

enum {
	TR_OBJECTS = 8000,     /* objects the working client allocates after the cut */
	TR_SEEDS = 1u << 20,
};

/* step[] of the truncation test */
enum {
	TR_READY = 0,          /* the worker holds objects, some in spans heapd sweeps */
	TR_GO = 1,             /* heapd has re-extended the file: allocate on */
	TR_BUSY = 2,           /* the worker is writing over its objects */
	TR_CUT = 3,            /* the file was cut again while it wrote */
	TR_PAUSED = 4,         /* the worker verified what it allocated after that */
	TR_PUNCHED = 5,        /* a hole was punched in the data */
};

typedef struct tr_obj {
	void *p;
	size_t size;
} tr_obj_t;

/* Allocate n objects of assorted sizes (a large one now and then), each with its pattern. */
static void tr_allocate(tr_obj_t *objs, int from, int n)
{
	for (int i = from; i < from + n; i++) {
		size_t size = i % 97 == 0 ? 40000 + (size_t)(i % 5) * 8192 : 16 + (size_t)(i * 37) % 2000;
		void *p = hc_malloc(size);
		if (!p)
			hchild_fail("hc_malloc(%zu) after the cut: %s", size, strerror(errno));
		hutil_fill(p, size, TR_SEEDS + (uint64_t)i);
		objs[i].p = p;
		objs[i].size = size;
	}
}

static void tr_verify(const tr_obj_t *objs, int from, int to, const char *when)
{
	for (int i = from; i < to; i++)
		if (!hutil_verify(objs[i].p, objs[i].size, TR_SEEDS + (uint64_t)i))
			hchild_fail("object %d (%zu bytes at offset %llu), allocated after %s, lost its "
			            "pattern", i, objs[i].size, (unsigned long long)hc_ptr_to_off(objs[i].p), when);
}

/*
 * A client that works through every cut. Objects allocated before a cut may
 * read as zero or be handed out again (their bits went with the cut); the
 * ones allocated after the last cut must all hold their patterns.
 */
static int tr_worker(void *arg)
{
	static tr_obj_t objs[2 * TR_OBJECTS];
	void *old[6000];
	(void)arg;

	/* spans that go back to heapd with live objects: its sweeper reads their bitmaps */
	for (int i = 0; i < 6000; i++) {
		old[i] = hc_malloc(i % 3 ? 64 : 1024);
		if (!old[i])
			hchild_fail("hc_malloc: %s", strerror(errno));
		memset(old[i], 0x11, i % 3 ? 64 : 1024);
	}
	for (int i = 0; i < 6000; i += 2)
		hc_free(old[i]);
	hc_trim();
	atomic_store(&hchild_sync->step[TR_READY], 1);
	if (!hchild_wait_at_least(&hchild_sync->step[TR_GO], 1, HCHILD_WAIT_MS))
		hchild_fail("no word to go on");

	tr_allocate(objs, 0, TR_OBJECTS / 2);
	tr_verify(objs, 0, TR_OBJECTS / 2, "the first cut");
	atomic_store(&hchild_sync->step[TR_BUSY], 1);
	/* write over every object until the second cut is made: the writes meet it */
	int n = TR_OBJECTS / 2;
	uint64_t end = heapd_now_ms() + 3 * HCHILD_WAIT_MS;
	while (atomic_load(&hchild_sync->step[TR_CUT]) == 0) {
		if (heapd_now_ms() > end)
			hchild_fail("the second cut did not come");
		for (int i = 0; i < n; i++)
			memset(objs[i].p, 0x22, objs[i].size);
	}
	int after_cut = n;
	tr_allocate(objs, n, TR_OBJECTS / 2);
	n += TR_OBJECTS / 2;
	tr_verify(objs, after_cut, n, "the second cut");
	atomic_store(&hchild_sync->step[TR_PAUSED], 1);

	if (!hchild_wait_at_least(&hchild_sync->step[TR_PUNCHED], 1, HCHILD_WAIT_MS))
		hchild_fail("no word after the hole");
	int after_hole = n;
	tr_allocate(objs, n, TR_OBJECTS / 4);
	n += TR_OBJECTS / 4;
	tr_verify(objs, after_hole, n, "the hole");
	hc_trim();
	return 0;
}

/* As nobody: cut the data file through the descriptor heapd passes (ftruncate, or a hole). */
static int tr_cut(void *arg)
{
	int punch = arg != NULL;
	int meta = -1, data = -1;

	if (hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	int sock = hraw_hello_fds(hd_default.sock, 0, NULL, &meta, &data);
	if (sock < 0 || data < 0)
		hchild_fail("Hello as uid %d: %s", HCHILD_NOBODY, strerror(-sock));
	if (punch) {
		/* bitmaps and pages from 64 KiB on, over 16 MiB */
		if (fallocate(data, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 << 10, 16 << 20) < 0)
			hchild_fail("fallocate(PUNCH_HOLE) of the data descriptor: %s", strerror(errno));
	} else if (ftruncate(data, HEAPD_PAGE_SIZE) < 0) {
		hchild_fail("ftruncate of the data descriptor: %s", strerror(errno));
	}
	return 0;
}

/* 1 if the data file has its whole size. */
static int data_whole(const shm_header_t *h)
{
	struct stat st;
	return stat(hd_arena_file(&hd_default, HEAPD_DATA_FILE), &st) == 0 &&
	       (uint64_t)st.st_size == h->data_size;
}

static int tr_bystander(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3000; i++) {
		size_t size = 1 + (size_t)(i * 131) % 5000;
		char *p = hc_malloc(size);
		if (!p)
			hchild_fail("hc_malloc(%zu) after the attacks: %s", size, strerror(errno));
		hutil_fill(p, size, (uint64_t)i);
		if (!hutil_verify(p, size, (uint64_t)i))
			hchild_fail("an object lost its pattern");
		hc_free(p);
	}
	return 0;
}

START_TEST(test_data_truncation_survived)
{
	shm_header_t h;

	hchild_sync_init();
	hd_default_start("128M", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	hview_read_header(hd_default.arena, &h);
	pid_t worker = hchild_spawn(tr_worker, NULL);
	hchild_expect_step(&hchild_sync->step[TR_READY], 1, HCHILD_WAIT_MS, worker, "the worker");

	/* Cut while the worker waits: heapd's sweeper is the first to meet the cut. */
	hchild_expect_ok(hchild_spawn(tr_cut, NULL), "a client of uid 65534 truncating the data file");
	ck_assert_msg(hd_wait_log(&hd_default, "shrunk and re-extended", 5000),
	              "heapd did not say that it re-extended the data file");
	ck_assert(hd_alive(&hd_default));
	ck_assert(hutil_wait_until(data_whole(&h), 1000));
	atomic_store(&hchild_sync->step[TR_GO], 1);

	/* Cut while the worker allocates: whichever process meets it first mends it. */
	hchild_expect_step(&hchild_sync->step[TR_BUSY], 1, 3 * HCHILD_WAIT_MS, worker, "the worker");
	hchild_expect_ok(hchild_spawn(tr_cut, NULL), "the second truncation");
	atomic_store(&hchild_sync->step[TR_CUT], 1);
	hchild_expect_step(&hchild_sync->step[TR_PAUSED], 1, 3 * HCHILD_WAIT_MS, worker, "the worker");

	hchild_expect_ok(hchild_spawn(tr_cut, (void *)1), "a client of uid 65534 punching the data file");
	atomic_store(&hchild_sync->step[TR_PUNCHED], 1);
	hchild_expect_ok(worker, "the client allocating through the cuts");

	ck_assert(hd_alive(&hd_default));
	ck_assert(hutil_wait_until(data_whole(&h), 1000));
	ck_assert_uint_ne(hctl_sweep_cycles(hd_default.sock), UINT64_MAX);
	hchild_expect_ok(hchild_spawn(tr_bystander, NULL), "a client after the attacks");

	/* The cuts zeroed bitmaps and objects, which check may report; the metadata must be whole. */
	int64_t ndata;
	int64_t n = hctl_check_data(hd_default.sock, &ndata);
	ck_assert_int_ge(n, 0);
	ck_assert_msg(n == ndata, "check after the cuts: %lld problems, of which %lld in the data "
	              "(the rest in the metadata; see the lines above)", (long long)n, (long long)ndata);
}
END_TEST

/* ---- paths another user prepared ---- */

#define TAKEOVER_RUN_MS 5000
#define PLANTED "planted by another user\n"

/* What the test plants at the arena path, and what heapd must say about it. */
enum {
	PLANT_DIR_OF_OTHER,   /* a directory of uid 65534, mode 0777 */
	PLANT_DIR_OPEN,       /* our own directory, mode 0755 */
	PLANT_FILE_OF_OTHER,  /* an empty file of uid 65534, mode 0666 */
	PLANT_SYMLINK,        /* a symlink to an empty directory of ours */
	PLANT_META_SYMLINK,   /* our directory, with meta a symlink to a file */
	PLANT_META_OF_OTHER,  /* our directory, with meta a file of uid 65534 */
	PLANT_META_OPEN,      /* our directory, with meta mode 0644 */
	PLANT_COUNT,
};

static const char *const plant_needle[PLANT_COUNT] = {
	"belongs to uid 65534",
	"group or other permissions",
	"not a directory",
	"symbolic link",
	"cannot open meta",
	"belongs to uid 65534",
	"group or other permissions",
};

/* A file holding text (which may be empty), owned by uid, mode mode. */
static void make_file(const char *path, const char *text, uid_t uid, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	ck_assert_int_eq(chown(path, uid, uid), 0);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* The file is as make_file left it. */
static void file_untouched(const char *path, const char *text, uid_t uid, mode_t mode)
{
	char buf[64];
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_msg(S_ISREG(st.st_mode), "%s is no longer a regular file", path);
	ck_assert_uint_eq(st.st_uid, uid);
	ck_assert_uint_eq(st.st_mode & 07777, mode);
	ck_assert_int_eq(st.st_size, (off_t)strlen(text));
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	ck_assert_int_eq(n, (ssize_t)strlen(text));
	ck_assert(memcmp(buf, text, strlen(text)) == 0);
}

/* Nothing but . and .. in dir. */
static void dir_empty(const char *dir)
{
	char cmd[400], out[256];
	snprintf(cmd, sizeof(cmd), "ls -A '%s'", dir);
	FILE *f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	pclose(f);
	out[n] = '\0';
	ck_assert_msg(n == 0, "%s is not empty: %s", dir, out);
}

START_TEST(test_arena_takeover_refused)
{
	char out[8192], other[256];

	for (int k = 0; k < PLANT_COUNT; k++) {
		hd_default_init();
		const char *arena = hd_default.arena, *meta = hd_arena_file(&hd_default, HEAPD_META_FILE);
		snprintf(other, sizeof(other), "%s/elsewhere", hd_default.dir);
		switch (k) {
		case PLANT_DIR_OF_OTHER:
			ck_assert_int_eq(mkdir(arena, 0777), 0);
			ck_assert_int_eq(chown(arena, HCHILD_NOBODY, HCHILD_NOBODY), 0);
			ck_assert_int_eq(chmod(arena, 0777), 0);
			break;
		case PLANT_DIR_OPEN:
			ck_assert_int_eq(mkdir(arena, 0755), 0);
			ck_assert_int_eq(chmod(arena, 0755), 0);
			break;
		case PLANT_FILE_OF_OTHER:
			make_file(arena, "", HCHILD_NOBODY,
			          0666); /* empty, as another user would leave it */
			break;
		case PLANT_SYMLINK:
			ck_assert_int_eq(mkdir(other, 0700), 0);
			ck_assert_int_eq(symlink(other, arena), 0);
			break;
		default:
			ck_assert_int_eq(mkdir(arena, 0700), 0);
			if (k == PLANT_META_SYMLINK) {
				make_file(other, PLANTED, geteuid(), 0600);
				ck_assert_int_eq(symlink(other, meta), 0);
			} else {
				make_file(meta, PLANTED,
				          k == PLANT_META_OF_OTHER ? HCHILD_NOBODY : geteuid(),
				          k == PLANT_META_OF_OTHER ? 0600 : 0644);
			}
			break;
		}
		const char *args[] = { "--socket", hd_default.sock, "--arena", arena,
		                      "--arena-size", "16M",
		                       NULL };
		int st = hd_run_heapd(args, out, sizeof(out), TAKEOVER_RUN_MS);
		ck_assert_msg(st != -ETIMEDOUT, "case %d: heapd started on a planted arena path: %s", k, out);
		ck_assert_msg(st > 0 && st < 128, "case %d: heapd status %d: %s", k, st, out);
		ck_assert_msg(strstr(out, plant_needle[k]) != NULL, "case %d: \"%s\" not in: %s", k,
		              plant_needle[k], out);
		ck_assert_msg(access(hd_default.sock, F_OK) != 0, "case %d: heapd made its socket", k);
		switch (k) {
		case PLANT_FILE_OF_OTHER:
			file_untouched(arena, "", HCHILD_NOBODY, 0666);
			break;
		case PLANT_SYMLINK:
			dir_empty(other);
			break;
		case PLANT_META_SYMLINK:
			file_untouched(other, PLANTED, geteuid(), 0600);
			break;
		case PLANT_META_OF_OTHER:
			file_untouched(meta, PLANTED, HCHILD_NOBODY, 0600);
			break;
		case PLANT_META_OPEN:
			file_untouched(meta, PLANTED, geteuid(), 0644);
			break;
		default: {
			/* heapd laid nothing out in a directory it refused */
			ck_assert(access(meta, F_OK) != 0 &&
			          access(hd_arena_file(&hd_default, HEAPD_DATA_FILE), F_OK) != 0);
			break;
		}
		}
		hd_default_stop();
	}
}
END_TEST

START_TEST(test_socket_path_not_followed)
{
	char out[8192], victim[256];
	struct stat st;

	for (int k = 0; k < 2; k++) {
		hd_default_init();
		snprintf(victim, sizeof(victim), "%s/victim", hd_default.dir);
		make_file(victim, PLANTED, HCHILD_NOBODY, 0600);
		if (k == 0)
			ck_assert_int_eq(symlink(victim, hd_default.sock), 0);
		else
			make_file(hd_default.sock, PLANTED, HCHILD_NOBODY, 0600);
		const char *args[] = { "--socket", hd_default.sock, "--arena", hd_default.arena,
		                       "--arena-size", "16M", NULL };
		int st2 = hd_run_heapd(args, out, sizeof(out), TAKEOVER_RUN_MS);
		ck_assert_msg(st2 > 0 && st2 < 128, "heapd on a planted socket path: status %d: %s",
		              st2, out);
		ck_assert_msg(strstr(out, "not a socket") != NULL, "%s", out);
		file_untouched(victim, PLANTED, HCHILD_NOBODY, 0600);
		if (k == 1)
			file_untouched(hd_default.sock, PLANTED, HCHILD_NOBODY, 0600);
		else
			ck_assert(lstat(hd_default.sock, &st) == 0 && S_ISLNK(st.st_mode));
		hd_default_stop();
	}

	/* What heapd makes itself: a socket of mode 0660, an arena directory 0700 with files 0600. */
	hd_default_start("16M", NULL);
	ck_assert_int_eq(lstat(hd_default.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0660);
	ck_assert_int_eq(lstat(hd_default.arena, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	ck_assert_uint_eq(st.st_uid, geteuid());
	ck_assert_int_eq(lstat(hd_arena_file(&hd_default, HEAPD_META_FILE), &st), 0);
	ck_assert(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600 && st.st_nlink == 1);
}
END_TEST

Suite *hostile_trust_suite(void)
{
	return test_suite_single("trust", "trust", HOSTILE_TIMEOUT_S, NULL, hd_default_stop,
	                         test_meta_read_only_for_other_users,
	                         test_data_truncation_survived,
	                         test_arena_takeover_refused,
	                         test_socket_path_not_followed,
	                         NULL);
}
