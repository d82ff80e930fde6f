// SPDX-License-Identifier: MIT
/*
 * profile.c - heap-profile sampling: the rate, the countdowns' draws, the
 * stack walk, this process's mapping set, and the record of a sample (see
 * profile.h; the records themselves are shm/profrec.h).
 *
 * A sample, step by step (profile_sample):
 *   1. walk the frame pointers from here to the frame whose return address
 *      is the allocation site (ra), then on through the caller's frames
 *      while each frame is on this thread's stack, above the last, and
 *      returns into a loaded object;
 *   2. make sure this process has a mapping set in the arena (its loaded
 *      objects, from dl_iterate_phdr), and take a new one when a return
 *      address falls outside every object it knows and the loader has
 *      loaded something since (dlopen);
 *   3. write the record (prof_record) and, if it was written, set the
 *      object's sampled bit.
 *
 * Process state: the rate settings are atomics; the mapping set and the
 * ranges the walk checks against are built under a mutex of this file and
 * published as an immutable snapshot (old ones are kept: a thread may still
 * read one, and they change only when the loader loads more). Per thread:
 * the random state, the large-object countdown and the stack's bounds.
 */
#include "profile.h"

#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "clock.h"
#include "proc.h"

#define PROFILE_REFRESH_NS 100000000ULL /* at most one look at the loader per 100 ms */
#define PROFILE_SEARCH_FRAMES 8         /* frames inside the library before the API's */
#ifndef NT_GNU_BUILD_ID
#define NT_GNU_BUILD_ID 3
#endif

/* A loaded object's executable range, for the walk's checks. */
typedef struct range {
	uint64_t lo, hi;
} range_t;

/* What the walk knows of this process's objects; never changed once published. */
typedef struct procmaps {
	struct procmaps *older;   /* the snapshot this one replaced (kept: see the top) */
	pid_t pid;
	uint32_t mapset;          /* its mapping set in the arena, HEAPD_NIL if none */
	uint64_t adds;            /* the loader's count of loads it was taken at */
	uint32_t n;
	range_t r[PROF_MAPS];     /* sorted by lo */
} procmaps_t;

_Atomic uint32_t profile_gen_g = 1;
prof_view_t profile_view_g;
_Atomic(const prof_view_t *) profile_view_p = &profile_view_g; /* records NULL until the Hello */
static _Atomic int have_view;

static struct {
	_Atomic uint64_t own;      /* hc_profile_rate's, + 1 (0: never called) */
	_Atomic uint64_t env;      /* $HEAPD_PROFILE_RATE's, + 1 (0: unset or unreadable) */
	_Atomic uint64_t daemon;   /* heapd's */
	pthread_once_t env_once;
	pthread_mutex_t lock;      /* builds maps */
	_Atomic(procmaps_t *) maps;
	_Atomic uint64_t next_refresh; /* CLOCK_MONOTONIC ns before which the loader is not asked */
} pf = {
	.env_once = PTHREAD_ONCE_INIT,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

__thread profile_pending_t profile_pending_tls __attribute__((tls_model("initial-exec")));

static __thread uint64_t rng;              /* xorshift64* state, 0 until seeded */
static __thread uint64_t large_left;       /* bytes of large objects before the next sample */
static __thread uint32_t large_gen;        /* profile_gen_g large_left was drawn under */
static __thread uintptr_t stack_hi;        /* this thread's stack top, 0: unknown */
static __thread int stack_known;           /* stack_hi was looked up */

static void fork_child(void);

/* ---- the rate ---- */

/* "524288", "512K", "1M": bytes; 0 on anything else (the library never complains). */
static uint64_t parse_rate(const char *s)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return 0;
	return (uint64_t)v << shift;
}

static void read_env(void)
{
	const char *s = getenv("HEAPD_PROFILE_RATE");
	if (s && *s) {
		uint64_t v = parse_rate(s);
		if (v || strcmp(s, "0") == 0)
			atomic_store(&pf.env, v + 1);
	}
}

uint64_t profile_rate(void)
{
	pthread_once(&pf.env_once, read_env);
	uint64_t own = atomic_load_explicit(&pf.own, memory_order_relaxed);
	if (own)
		return own - 1;
	uint64_t env = atomic_load_explicit(&pf.env, memory_order_relaxed);
	if (env)
		return env - 1;
	return atomic_load_explicit(&pf.daemon, memory_order_relaxed);
}

uint64_t profile_set_rate(uint64_t bytes)
{
	uint64_t before = profile_rate();
	atomic_store(&pf.own, bytes + 1);
	atomic_fetch_add(&profile_gen_g, 1);
	return before;
}

void profile_connected_locked(uint64_t daemon_rate)
{
	proc_at_fork_child(fork_child);
	if (!atomic_load(&have_view)) {
		prof_view_t v;
		prof_view(&proc_g.seg, &v); /* no region: a view without records */
		profile_view_g = v;
		atomic_store(&have_view, 1);
		atomic_store_explicit(&profile_view_p, &profile_view_g, memory_order_release);
	}
	if (atomic_exchange(&pf.daemon, daemon_rate) != daemon_rate)
		atomic_fetch_add(&profile_gen_g, 1);
}

/* ---- the draws ---- */

static uint64_t next_random(void)
{
	if (!rng) {
		/* any distinct seed per thread will do */
		rng = heapd_now_ns() ^ ((uint64_t)(uintptr_t)&rng * 0x9e3779b97f4a7c15ULL) ^
		      ((uint64_t)getpid() << 32);
		if (!rng)
			rng = 1;
	}
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

/*
 * -ln(u) for u in (0, 1]: u's exponent times ln 2, plus ln of its mantissa
 * m in [1, 2) from a least-squares polynomial in m - 1 (absolute error
 * under 4e-6; no division, no libm).
 */
static double neg_log(double u)
{
	union {
		double d;
		uint64_t i;
	} x = { .d = u };
	int e = (int)((x.i >> 52) & 0x7ff) - 1023;
	x.i = (x.i & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL; /* the mantissa, in [1, 2) */
	double t = x.d - 1;
	double ln_m = t * (0.9998765639 +
	                   t * (-0.4976084744 +
	                        t * (0.3166910856 +
	                             t * (-0.1922463918 + t * (0.0844960312 + t * -0.0180646593)))));
	return -((double)e * 0.6931471805599453 + ln_m);
}

/* Bytes to the next sample, exponentially distributed with mean rate (> 1). */
static double draw_bytes(uint64_t rate)
{
	double u = (double)((next_random() >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
	return neg_log(u) * (double)rate;
}

uint64_t profile_draw_skip(uint64_t elemsize)
{
	uint64_t rate = profile_rate();
	if (rate == 0 || !profile_view()->recs)
		return PROFILE_SKIP_OFF;
	if (rate == 1)
		return 0;
	double skip = draw_bytes(rate) / (double)elemsize;
	return skip >= 1e18 ? (uint64_t)1e18 : (uint64_t)skip;
}

int profile_large_due(uint64_t bytes)
{
	uint32_t gen = profile_gen();
	uint64_t rate = profile_rate();

	if (rate == 0 || !profile_view()->recs)
		return 0;
	if (large_gen != gen) {
		large_gen = gen;
		large_left = rate == 1 ? 0 : (uint64_t)draw_bytes(rate);
	}
	if (bytes < large_left) {
		large_left -= bytes;
		return 0;
	}
	large_left = rate == 1 ? 0 : (uint64_t)draw_bytes(rate);
	return 1;
}

/* ---- this process's objects ---- */

/* The GNU build ID among a loaded object's notes, copied to out; its length (0: none). */
static uint8_t note_build_id(const struct dl_phdr_info *info, const ElfW(Phdr) *ph, uint8_t *out)
{
	const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
	const uint8_t *end = p + ph->p_memsz;

	while (p + sizeof(ElfW(Nhdr)) <= end) {
		const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
		size_t name = (nh->n_namesz + 3) & ~(size_t)3, desc = (nh->n_descsz + 3) & ~(size_t)3;
		const uint8_t *d = p + sizeof(*nh) + name;
		if (d + desc > end || d < p)
			break;
		if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
		    memcmp(p + sizeof(*nh), "GNU", 4) == 0 && nh->n_descsz <= PROF_BUILD_ID_MAX) {
			memcpy(out, d, nh->n_descsz);
			return (uint8_t)nh->n_descsz;
		}
		p = d + desc;
	}
	return 0;
}

typedef struct collect {
	prof_map_t *maps;
	uint32_t n;
	uint64_t adds;
} collect_t;

static int collect_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	collect_t *c = arg;
	const ElfW(Phdr) *text = NULL;
	prof_map_t *m;

	(void)size;
	c->adds = info->dlpi_adds;
	if (c->n == PROF_MAPS)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && ph->p_memsz) {
			text = ph;
			break;
		}
	}
	if (!text)
		return 0;
	m = &c->maps[c->n];
	memset(m, 0, sizeof(*m));
	m->bias = info->dlpi_addr;
	m->lo = info->dlpi_addr + text->p_vaddr;
	m->hi = m->lo + text->p_memsz;
	m->file_off = text->p_offset;
	for (int i = 0; i < info->dlpi_phnum && !m->build_id_len; i++)
		if (info->dlpi_phdr[i].p_type == PT_NOTE)
			m->build_id_len = note_build_id(info, &info->dlpi_phdr[i], m->build_id);
	const char *name = info->dlpi_name;
	if (c->n == 0 && (!name || !*name)) {
		/* the executable: the loader names it "" */
		ssize_t len = readlink("/proc/self/exe", m->path, sizeof(m->path));
		/* one that fills the field may be cut short: no path, not another file's */
		m->path[len > 0 && (size_t)len < sizeof(m->path) ? len : 0] = '\0';
	} else if (name && strlen(name) < sizeof(m->path)) {
		strcpy(m->path, name);
	}
	c->n++;
	return 0;
}

static int by_lo(const void *a, const void *b)
{
	const range_t *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The loader's count of loads so far. */
static int adds_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	*(uint64_t *)arg = info->dlpi_adds;
	return 1;
}

/*
 * Take this process's objects anew, write them to a mapping set in the
 * arena and publish the snapshot. pf.lock held. NULL if out of memory.
 */
static procmaps_t *take_maps_locked(procmaps_t *old)
{
	const prof_view_t *v = profile_view();
	uint32_t slot = atomic_load(&proc_g.flags_slot);
	procmaps_t *pm = calloc(1, sizeof(*pm));
	prof_map_t *maps = malloc(PROF_MAPS * sizeof(*maps));
	collect_t c = { .maps = maps };

	if (!pm || !maps) {
		free(pm);
		free(maps);
		return NULL;
	}
	dl_iterate_phdr(collect_one, &c);
	pm->older = old;
	pm->pid = getpid();
	pm->adds = c.adds;
	pm->n = c.n;
	pm->mapset = HEAPD_NIL;
	for (uint32_t i = 0; i < c.n; i++) {
		pm->r[i].lo = maps[i].lo;
		pm->r[i].hi = maps[i].hi;
	}
	qsort(pm->r, pm->n, sizeof(pm->r[0]), by_lo);

	uint32_t claimed = 0;
	int i = c.n && v->mapsets ? prof_mapset_claim(v, (uint32_t)pm->pid, &claimed) : -ENOSPC;
	if (i >= 0) {
		prof_mapset_t *ms = &v->mapsets[i];
		const shm_client_t *cl = slot < proc_g.seg.hdr->max_clients ? &proc_g.seg.clients[slot] : NULL;
		ms->pid = (uint32_t)pm->pid;
		ms->uid = cl ? cl->uid : (uint32_t)getuid();
		ms->start_time = cl && cl->pid == (uint32_t)pm->pid ? cl->start_time : 0;
		ms->slot = cl ? slot : HEAPD_NIL;
		ms->nmaps = c.n;
		ms->adds = c.adds;
		ms->time = heapd_wall_ns(0);
		memset(ms->pad, 0, sizeof(ms->pad));
		memcpy(ms->maps, maps, c.n * sizeof(*maps));
		if (prof_mapset_publish(v, (uint32_t)i, claimed) == 0)
			pm->mapset = (uint32_t)i;
	}
	free(maps);
#ifdef MADV_POPULATE_WRITE
	if (!old && v->recs) {
		/*
		 * The process's first sample: map the whole table of records now.
		 * Samples land anywhere in it, and a first touch of each page was
		 * a page fault, which measured as the larger part of a sample's
		 * cost in a process's first seconds. (Linux 5.14 and later; the
		 * pages are the arena's, so this allocates them once per arena.)
		 */
		uintptr_t lo = (uintptr_t)v->recs & ~(uintptr_t)4095;
		uintptr_t hi = (uintptr_t)(v->recs + v->nrecs);
		madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
	}
#endif
	atomic_store_explicit(&pf.maps, pm, memory_order_release);
	return pm;
}

/* This process's snapshot, taken at its first sample (and again after a fork). */
static procmaps_t *current_maps(void)
{
	procmaps_t *pm = atomic_load_explicit(&pf.maps, memory_order_acquire);
	if (pm)
		return pm;
	pthread_mutex_lock(&pf.lock);
	pm = atomic_load(&pf.maps);
	if (!pm)
		pm = take_maps_locked(NULL);
	pthread_mutex_unlock(&pf.lock);
	return pm;
}

/* In a forked child: the parent's snapshot names the parent; the lock may have been held. */
static void fork_child(void)
{
	pthread_mutex_init(&pf.lock, NULL);
	atomic_store(&pf.maps, NULL); /* the parent's snapshots stay allocated: a few KiB */
	atomic_store(&pf.next_refresh, 0);
}

static int covered(const procmaps_t *pm, uint64_t a)
{
	uint32_t lo = 0, hi = pm->n;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		if (pm->r[mid].hi <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < pm->n && pm->r[lo].lo <= a;
}

/*
 * a is in no object pm knows: if the loader has loaded something since pm
 * was taken, take a new snapshot (at most once per PROFILE_REFRESH_NS).
 */
static procmaps_t *refresh_for(procmaps_t *pm, uint64_t a)
{
	uint64_t now = heapd_now_ns(), adds = 0;

	if (now < atomic_load_explicit(&pf.next_refresh, memory_order_relaxed))
		return pm;
	atomic_store_explicit(&pf.next_refresh, now + PROFILE_REFRESH_NS, memory_order_relaxed);
	dl_iterate_phdr(adds_one, &adds);
	if (adds == pm->adds)
		return pm;
	pthread_mutex_lock(&pf.lock);
	procmaps_t *cur = atomic_load(&pf.maps);
	if (cur == pm || !covered(cur, a))
		cur = take_maps_locked(cur);
	pthread_mutex_unlock(&pf.lock);
	return cur ? cur : pm;
}

/* ---- the walk ---- */

/* This thread's stack top (0 if unknown), looked up once. */
static uintptr_t thread_stack_hi(void)
{
	if (!stack_known) {
		pthread_attr_t a;
		void *addr;
		size_t size;
		stack_known = 1;
		if (pthread_getattr_np(pthread_self(), &a) == 0) {
			if (pthread_attr_getstack(&a, &addr, &size) == 0)
				stack_hi = (uintptr_t)addr + size;
			pthread_attr_destroy(&a);
		}
	}
	return stack_hi;
}

/*
 * Return addresses from the allocation site outwards into out[0..PROF_FRAMES).
 * The frames below the API function's are the library's own: skipped.
 */
static __attribute__((noinline)) uint32_t walk(uint64_t *out, const void *ra, procmaps_t **pmp)
{
	uintptr_t hi = thread_stack_hi();
	uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
	uint32_t n = 0, steps = 0;
	int found = 0;

	while (hi && n < PROF_FRAMES && steps++ < PROF_FRAMES + PROFILE_SEARCH_FRAMES) {
		if (fp & (sizeof(uintptr_t) - 1) || fp + 2 * sizeof(uintptr_t) > hi)
			break;
		uintptr_t next = ((const uintptr_t *)fp)[0], ret = ((const uintptr_t *)fp)[1];
		if (!found) {
			found = ret == (uintptr_t)ra;
			if (!found && steps >= PROFILE_SEARCH_FRAMES)
				break;
		}
		if (found) {
			if (n > 0 && *pmp && !covered(*pmp, ret)) {
				*pmp = refresh_for(*pmp, ret);
				if (!covered(*pmp, ret))
					break; /* not code: this frame is not a frame */
			}
			out[n++] = ret;
		}
		if (next <= fp)
			break;
		fp = next;
	}
	if (!found) {
		out[0] = (uintptr_t)ra;
		n = 1;
	}
	return n;
}

__attribute__((noinline)) int profile_sample(uint64_t off, uint64_t size, uint64_t *sampled,
                                             uint64_t bit, const void *ra)
{
	const prof_view_t *v = profile_view();
	uint64_t frames[PROF_FRAMES], rate = profile_rate();
	uint32_t slot = atomic_load(&proc_g.flags_slot);

	if (!v->recs)
		return 0;
	procmaps_t *pm = current_maps();
	uint32_t n = walk(frames, ra, &pm);
	if (pm && !covered(pm, frames[0]))
		pm = refresh_for(pm, frames[0]);
	const shm_client_t *cl = slot < proc_g.seg.hdr->max_clients ? &proc_g.seg.clients[slot] : NULL;
	pid_t pid = pm ? pm->pid : getpid();
	prof_sample_t s = {
		.off = off,
		.size = size,
		.rate = rate ? rate : 1,
		.time = heapd_wall_ns(1),
		.start_time = cl && cl->pid == (uint32_t)pid ? cl->start_time : 0,
		.pid = (uint32_t)pid,
		.uid = cl ? cl->uid : (uint32_t)getuid(),
		.slot = cl ? slot : HEAPD_NIL,
		.mapset = pm ? pm->mapset : HEAPD_NIL,
		.nframes = n,
		.frames = frames,
	};
	if (prof_record(v, &s) < 0)
		return 0;
	bitmap_store(sampled, bitmap_load(sampled) | bit);
	return 1;
}

void *profile_finish(void *p, const void *ra)
{
	profile_pending_t w = profile_pending_tls;

	profile_pending_tls.sampled = NULL;
	if (w.sampled && profile_sample(w.off, w.size, w.sampled, w.bit, ra))
		*w.flag = 1;
	return p;
}
