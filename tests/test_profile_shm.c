// SPDX-License-Identifier: MIT
/*
 * test_profile_shm.c - the heap-profile region (shm/profrec.h) on a real
 * arena file: its place in the layout, records claimed in the window of
 * their offset, marked freed by offset, recycled and dropped when the
 * window is full, sampled bits reaped, a freed span's records, and the
 * checked readers and the checker on garbage.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "check.h"
#include "pageheap.h"
#include "profrec.h"
#include "segment.h"
#include "sizeclass.h"

#define MIB (1024ull * 1024)

typedef struct fx {
	char dir[PATH_MAX];
	char path[PATH_MAX + 16];
	segment_t seg;
	pageheap_t h;
	prof_view_t v;
} fx_t;

static void fx_open(fx_t *f, uint32_t nrecs)
{
	segment_params_t p = { .arena_bytes = 64 * MIB, .max_clients = 16, .profile_records = nrecs };
	char err[256] = "";
	int created = 0;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/heapd-profshm-XXXXXX");
	ck_assert(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/arena", f->dir);
	int rc = segment_open(f->path, &p, SEGMENT_CREATE, &f->seg, &created, err, sizeof(err));
	ck_assert_msg(rc == 0 && created, "create: %d %s", rc, err);
	ck_assert_int_eq(pageheap_init(&f->h, &f->seg), 0);
	if (nrecs)
		ck_assert_int_eq(prof_view(&f->seg, &f->v), 0);
}

static void fx_close(fx_t *f)
{
	pageheap_destroy(&f->h);
	segment_close(&f->seg);
	segment_remove(f->path);
	rmdir(f->dir);
}

static uint64_t page_off(const fx_t *f, uint32_t page)
{
	return f->seg.hdr->pages_off + ((uint64_t)page << HEAPD_PAGE_SHIFT);
}

/* A sample of the object at off with nframes frames (1, 2, 3, ...). */
static int record(const fx_t *f, uint64_t off, uint64_t size, uint32_t nframes)
{
	static uint64_t frames[PROF_FRAMES];
	for (uint32_t i = 0; i < PROF_FRAMES; i++)
		frames[i] = 0x400000 + i;
	prof_sample_t s = { .off = off, .size = size, .rate = 1, .time = 42, .start_time = 7,
	                    .pid = (uint32_t)getpid(), .uid = 0, .slot = 3, .mapset = HEAPD_NIL,
	                    .nframes = nframes, .frames = frames };
	return prof_record(&f->v, &s);
}

static uint32_t kind_of(const fx_t *f, int i)
{
	return prof_kind(atomic_load(&f->v.recs[i].state));
}

START_TEST(test_layout)
{
	fx_t f;
	fx_open(&f, 1000);
	const shm_header_t *h = f.seg.hdr;
	ck_assert_uint_eq(h->version, HEAPD_LAYOUT_VERSION);
	ck_assert_uint_eq(h->prof_off, h->bits_off + h->bits_size);
	ck_assert_uint_eq(h->pages_off, h->prof_off + h->prof_size);
	ck_assert_uint_eq(h->prof_size, prof_region_size(1000));
	ck_assert_uint_eq(h->prof_size % HEAPD_PAGE_SIZE, 0);
	ck_assert_uint_eq(h->prof_records, 1000);
	ck_assert_uint_eq(h->prof_mapsets, prof_nmapsets(1000));
	ck_assert_uint_ge(h->prof_size, 1000 * sizeof(prof_rec_t) + 16 * sizeof(prof_mapset_t));
	ck_assert_ptr_eq(f.v.recs + 0, (prof_rec_t *)(f.v.recs));
	ck_assert((uint8_t *)(f.v.mapsets + f.v.nmapsets) <= f.seg.base + h->pages_off);
	fx_close(&f);

	/* no region: none in the layout, and prof_view says so */
	fx_open(&f, 0);
	ck_assert_uint_eq(f.seg.hdr->prof_size, 0);
	ck_assert_uint_eq(f.seg.hdr->pages_off, f.seg.hdr->bits_off + f.seg.hdr->bits_size);
	prof_view_t v;
	ck_assert_int_eq(prof_view(&f.seg, &v), -ENOENT);
	fx_close(&f);
}
END_TEST

START_TEST(test_validate_header)
{
	fx_t f;
	char why[200];
	fx_open(&f, 512);
	shm_header_t h = *f.seg.hdr;
	ck_assert_int_eq(segment_validate(&h, h.meta_size, h.data_size, why, sizeof(why)), 0);
	h.prof_records = 4096; /* another region size than the file was laid out with */
	ck_assert_int_eq(segment_validate(&h, h.meta_size, h.data_size, why, sizeof(why)), -EINVAL);
	h = *f.seg.hdr;
	h.prof_off += HEAPD_PAGE_SIZE;
	ck_assert_int_eq(segment_validate(&h, h.meta_size, h.data_size, why, sizeof(why)), -EINVAL);
	h = *f.seg.hdr;
	h.prof_records = PROF_MAX_RECORDS + 1;
	ck_assert_int_eq(segment_validate(&h, h.meta_size, h.data_size, why, sizeof(why)), -EINVAL);
	fx_close(&f);
}
END_TEST

START_TEST(test_record_and_free)
{
	fx_t f;
	prof_rec_t r;
	uint32_t st;
	const char *why;
	fx_open(&f, 1024);
	uint64_t off = page_off(&f, 10) + 64;

	int i = record(&f, off, 64, 3);
	ck_assert_int_ge(i, 0);
	ck_assert_uint_eq((uint32_t)i, prof_home(off, 1024)); /* an empty window: its home */
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), 0);
	ck_assert_uint_eq(prof_kind(st), PROF_LIVE);
	ck_assert_uint_eq(r.off, off);
	ck_assert_uint_eq(r.size, 64);
	ck_assert_uint_eq(r.nframes, 3);
	ck_assert_uint_eq(r.frames[2], 0x400002);
	ck_assert_uint_eq(r.slot, 3);

	ck_assert_int_eq(prof_mark_freed(&f.v, off + 64), 0); /* another object: nothing */
	ck_assert_int_eq(prof_mark_freed(&f.v, off), 1);
	ck_assert_uint_eq(kind_of(&f, i), PROF_FREED);
	ck_assert_int_eq(prof_mark_freed(&f.v, off), 0); /* once */
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), 0);
	ck_assert_uint_eq(prof_kind(st), PROF_FREED);

	/* a record left LIVE for an earlier object at the same offset is freed by the next sample */
	int a = record(&f, off + 128, 64, 1);
	int b = record(&f, off + 128, 96, 2);
	ck_assert_uint_eq(kind_of(&f, b), PROF_LIVE);
	if (a == b) /* it took the stale record over */
		ck_assert_uint_eq(atomic_load(&f.v.counters->recycled), 1);
	else
		ck_assert_uint_eq(kind_of(&f, a), PROF_FREED);
	ck_assert_int_eq(prof_mark_freed(&f.v, off + 128), 1); /* the new one, once */
	ck_assert_int_eq(prof_mark_freed(&f.v, off + 128), 0);
	fx_close(&f);
}
END_TEST

/* Offsets whose home is the same record, from start on. */
static int same_home(const fx_t *f, uint64_t *offs, int want)
{
	uint32_t home = prof_home(page_off(f, 0), f->v.nrecs);
	int n = 0;
	for (uint64_t off = page_off(f, 0); n < want && off < f->v.pages_end; off += 16)
		if (prof_home(off, f->v.nrecs) == home)
			offs[n++] = off;
	return n;
}

START_TEST(test_window_full)
{
	fx_t f;
	uint64_t offs[PROF_WINDOW + 2];
	fx_open(&f, 4096);
	ck_assert_int_eq(same_home(&f, offs, PROF_WINDOW + 2), PROF_WINDOW + 2);

	for (uint32_t k = 0; k < PROF_WINDOW; k++)
		ck_assert_int_ge(record(&f, offs[k], 16, 1), 0);
	/* every record of the window is live: dropped, and counted */
	ck_assert_int_eq(record(&f, offs[PROF_WINDOW], 16, 1), -ENOSPC);
	ck_assert_uint_eq(atomic_load(&f.v.counters->dropped), 1);
	/* each is still found by its offset, wherever in the window it went */
	for (uint32_t k = 0; k < PROF_WINDOW; k += 7)
		ck_assert_int_eq(prof_mark_freed(&f.v, offs[k]), 1);
	/* a freed one is taken over */
	ck_assert_int_ge(record(&f, offs[PROF_WINDOW + 1], 16, 1), 0);
	ck_assert_uint_eq(atomic_load(&f.v.counters->recycled), 1);
	ck_assert_int_eq(prof_mark_freed(&f.v, offs[PROF_WINDOW + 1]), 1);
	fx_close(&f);
}
END_TEST

/* heapd clears a record in place (garbage, or a writer that died): the ones after it are still found */
START_TEST(test_cleared_record_not_an_end)
{
	fx_t f;
	uint64_t offs[3];
	fx_open(&f, 4096);
	ck_assert_int_eq(same_home(&f, offs, 3), 3);
	int a = record(&f, offs[0], 16, 1);
	int b = record(&f, offs[1], 16, 1);
	int c = record(&f, offs[2], 16, 1); /* a sample whose free is never reaped: stale */
	ck_assert_int_eq(b, (a + 1) % 4096);
	ck_assert_int_eq(c, (a + 2) % 4096);
	uint32_t st = atomic_load(&f.v.recs[a].state);
	ck_assert_int_eq(prof_rec_reset(&f.v, (uint32_t)a, st, PROF_EMPTY), 1);
	ck_assert_uint_eq(kind_of(&f, a), PROF_EMPTY);

	/* the free of b's object finds b behind the cleared record */
	ck_assert_int_eq(prof_mark_freed(&f.v, offs[1]), 1);
	ck_assert_uint_eq(kind_of(&f, b), PROF_FREED);

	/* a new sample at c's offset takes the cleared record, and frees c on the way */
	ck_assert_int_eq(record(&f, offs[2], 16, 2), a);
	ck_assert_uint_eq(kind_of(&f, c), PROF_FREED);
	ck_assert_int_eq(prof_mark_freed(&f.v, offs[2]), 1); /* the new one, once */
	ck_assert_int_eq(prof_mark_freed(&f.v, offs[2]), 0);
	fx_close(&f);
}
END_TEST

/*
 * A writer stalled past PROFILE_BUSY_NS: heapd clears its BUSY record (or
 * set) and another writer claims it. The stalled publish must fail and
 * leave the new owner's BUSY state, and the sample counts as dropped.
 */
START_TEST(test_stalled_publish_loses)
{
	fx_t f;
	uint64_t frames[1] = { 0x400000 };
	uint32_t mine, theirs;
	fx_open(&f, 1024);
	uint64_t off = page_off(&f, 4) + 32;
	prof_sample_t s = { .off = off, .size = 32, .rate = 1, .time = 42, .pid = 1,
	                    .slot = HEAPD_NIL, .mapset = HEAPD_NIL, .nframes = 1, .frames = frames };

	int i = prof_rec_claim(&f.v, off, &mine);
	ck_assert_int_ge(i, 0);
	ck_assert_uint_eq(atomic_load(&f.v.recs[i].state), mine);
	ck_assert_int_eq(prof_rec_reset(&f.v, (uint32_t)i, mine, PROF_EMPTY), 1); /* heapd: stuck */
	ck_assert_int_eq(prof_rec_claim(&f.v, off, &theirs), i);                 /* another writer */
	ck_assert_int_eq(prof_rec_publish(&f.v, (uint32_t)i, mine, &s), -ENOSPC);
	ck_assert_uint_eq(atomic_load(&f.v.recs[i].state), theirs);
	ck_assert_uint_eq(atomic_load(&f.v.counters->dropped), 1);
	ck_assert_int_eq(prof_mark_freed(&f.v, off), 0); /* nothing was published LIVE */
	ck_assert_int_eq(prof_rec_publish(&f.v, (uint32_t)i, theirs, &s), i);
	ck_assert_uint_eq(kind_of(&f, i), PROF_LIVE);
	ck_assert_int_eq(prof_mark_freed(&f.v, off), 1);

	int m = prof_mapset_claim(&f.v, 0, &mine);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(prof_mapset_reset(&f.v, (uint32_t)m, mine), 1);
	ck_assert_int_eq(prof_mapset_claim(&f.v, 0, &theirs), m);
	ck_assert_int_eq(prof_mapset_publish(&f.v, (uint32_t)m, mine), -ENOSPC);
	ck_assert_uint_eq(atomic_load(&f.v.mapset_state[m]), theirs);
	ck_assert_uint_eq(atomic_load(&f.v.counters->mapsets_full), 1);
	ck_assert_int_eq(prof_mapset_publish(&f.v, (uint32_t)m, theirs), 0);
	ck_assert_uint_eq(prof_kind(atomic_load(&f.v.mapset_state[m])), PROF_LIVE);
	fx_close(&f);
}
END_TEST

START_TEST(test_reap_word)
{
	fx_t f;
	uint64_t sampled[1] = { 0 };
	fx_open(&f, 1024);
	uint64_t base = page_off(&f, 20);
	/* objects 3, 9 and 40 sampled (elemsize 48) */
	uint32_t idx[] = { 3, 9, 40 };
	for (int k = 0; k < 3; k++) {
		ck_assert_int_ge(record(&f, base + idx[k] * 48, 48, 1), 0);
		sampled[0] |= 1ULL << idx[k];
	}
	uint64_t alloc = ~0ULL;
	ck_assert_uint_eq(prof_reap_word(&f.v, sampled, 0, alloc, base, 48), 0);
	alloc &= ~(1ULL << 9) & ~(1ULL << 11); /* object 9 (sampled) and 11 (not) freed */
	ck_assert_uint_eq(prof_reap_word(&f.v, sampled, 0, alloc, base, 48), 1ULL << 9);
	ck_assert_uint_eq(sampled[0], (1ULL << 3) | (1ULL << 40));
	ck_assert_int_eq(prof_mark_freed(&f.v, base + 9 * 48), 0);   /* already freed */
	ck_assert_int_eq(prof_mark_freed(&f.v, base + 40 * 48), 1);  /* still live until now */
	ck_assert(prof_any_sampled(sampled, 1));
	fx_close(&f);
}
END_TEST

START_TEST(test_span_gone)
{
	fx_t f;
	uint32_t span;
	fx_open(&f, 1024);
	ck_assert_int_eq(pageheap_alloc(&f.h, 5, 1, &span), 0);
	pageheap_large_object(&f.h, span, 0);
	uint64_t off = page_off(&f, span);
	int i = record(&f, off, 5 * HEAPD_PAGE_SIZE, 2);
	ck_assert_int_ge(i, 0);
	bitmap_store(prof_sampled_words(&f.seg, span), 1);

	check_report_t rep;
	pageheap_enter(&f.h);
	ck_assert_uint_eq(check_segment(&f.seg, &f.h, &rep), 0);
	pageheap_leave(&f.h);

	ck_assert_uint_eq(kind_of(&f, i), PROF_LIVE);
	pageheap_free(&f.h, span); /* the large object goes: its record is freed */
	ck_assert_uint_eq(kind_of(&f, i), PROF_FREED);
	ck_assert_int_eq(prof_mark_freed(&f.v, off), 0);
	ck_assert_uint_eq(bitmap_load(prof_sampled_words(&f.seg, span)), 0);
	fx_close(&f);
}
END_TEST

START_TEST(test_readers_refuse_garbage)
{
	fx_t f;
	prof_rec_t r;
	prof_mapset_t *set = malloc(sizeof(*set));
	uint32_t st;
	const char *why;
	fx_open(&f, 1024);
	uint64_t off = page_off(&f, 3);
	int i = record(&f, off, 32, 2);
	ck_assert_int_ge(i, 0);
	prof_rec_t *live = &f.v.recs[i];

	live->nframes = 33;
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), -EINVAL);
	ck_assert_str_eq(why, "frame count out of range");
	live->nframes = 2;
	live->off = 5;
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), -EINVAL);
	live->off = off + 8; /* in range, but another offset's window */
	if (prof_home(off + 8, 1024) != prof_home(off, 1024)) {
		ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), -EINVAL);
		ck_assert_str_eq(why, "record is not in the window of its object's offset");
	}
	live->off = off;
	live->mapset = 99999;
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), -EINVAL);
	live->mapset = HEAPD_NIL;
	live->slot = 17;
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), -EINVAL);
	live->slot = 1;
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)i, &r, &st, &why), 0);
	/* EMPTY and BUSY records are not read */
	ck_assert_int_eq(prof_read_rec(&f.v, (uint32_t)(i + 1) % 1024, &r, &st, &why), -EAGAIN);

	uint32_t claimed;
	int m = prof_mapset_claim(&f.v, 0, &claimed);
	ck_assert_int_ge(m, 0);
	ck_assert_int_eq(prof_read_mapset(&f.v, (uint32_t)m, set, &st, &why), -EAGAIN); /* BUSY */
	prof_mapset_t *ms = &f.v.mapsets[m];
	ms->pid = 1;
	ms->slot = HEAPD_NIL;
	ms->nmaps = 1;
	ms->maps[0].lo = 0x1000;
	ms->maps[0].hi = 0x2000;
	strcpy(ms->maps[0].path, "/bin/true");
	ck_assert_int_eq(prof_mapset_publish(&f.v, (uint32_t)m, claimed), 0);
	ck_assert_int_eq(prof_read_mapset(&f.v, (uint32_t)m, set, &st, &why), 0);
	memset(ms->maps[0].path, 'x', sizeof(ms->maps[0].path));
	ck_assert_int_eq(prof_read_mapset(&f.v, (uint32_t)m, set, &st, &why), -EINVAL);
	ck_assert_str_eq(why, "path not terminated");
	ck_assert_int_eq(prof_mapset_reset(&f.v, (uint32_t)m, st), 1);
	ck_assert_int_eq(prof_read_mapset(&f.v, (uint32_t)m, set, &st, &why), -EAGAIN);
	free(set);
	fx_close(&f);
}
END_TEST

START_TEST(test_checker_on_garbage)
{
	fx_t f;
	check_report_t rep;
	fx_open(&f, 2048);
	for (uint32_t k = 0; k < 100; k++)
		ck_assert_int_ge(record(&f, page_off(&f, k) + 16 * k, 16, 1 + k % 32), 0);
	pageheap_enter(&f.h);
	ck_assert_uint_eq(check_segment(&f.seg, &f.h, &rep), 0);
	pageheap_leave(&f.h);

	/* random bytes over the whole region: problems, never a crash */
	uint8_t *base = f.seg.base + f.seg.hdr->prof_off;
	for (uint64_t o = 0; o < f.seg.hdr->prof_size; o += 256)
		ck_assert_int_eq(getrandom(base + o, 256, 0), 256);
	pageheap_enter(&f.h);
	size_t n = check_segment(&f.seg, &f.h, &rep);
	pageheap_leave(&f.h);
	ck_assert_uint_gt(n, 0);
	int found = 0;
	for (size_t k = 0; k < rep.nproblems && k < CHECK_MAX_PROBLEMS; k++)
		found |= strstr(rep.problems[k], "profile: ") != NULL;
	ck_assert(found);
	/* and the writers cope: every index they follow comes from the header */
	for (uint32_t k = 0; k < 200; k++) {
		record(&f, page_off(&f, k), 16, 4);
		prof_mark_freed(&f.v, page_off(&f, k));
	}
	uint32_t claimed;
	prof_mapset_claim(&f.v, 5, &claimed);
	fx_close(&f);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("profile_shm");
	TCase *tc = tcase_create("region");
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_validate_header);
	tcase_add_test(tc, test_record_and_free);
	tcase_add_test(tc, test_window_full);
	tcase_add_test(tc, test_cleared_record_not_an_end);
	tcase_add_test(tc, test_stalled_publish_loses);
	tcase_add_test(tc, test_reap_word);
	tcase_add_test(tc, test_span_gone);
	tcase_add_test(tc, test_readers_refuse_garbage);
	tcase_add_test(tc, test_checker_on_garbage);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(suite);
