// SPDX-License-Identifier: MIT
/*
 * test_client_layers.c - the client library below its caches: the process
 * state (client/proc.c), requests built and replies read (client/request.c),
 * and the connection to the daemon (client/transport.c).
 *
 * The process state is driven through its entry points, with a stand-in
 * cache layer registered through its hooks. The transport talks to a fake
 * daemon: a thread of the test serving a Unix socket in a temporary
 * directory with the wire format, and a real arena whose descriptors its
 * Hello replies carry. Its scripts send what a real daemon would not: a
 * reply with another seq, a fatal Error, half a frame, garbage, or nothing
 * at all. Each test runs in its own process (Check forks), so the library's
 * process-wide state starts fresh every time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/tmpdir.h"
#include "harness/util.h"
#include "proc.h"
#include "request.h"
#include "segment.h"
#include "sock.h"
#include "transport.h"
#include "wire.h"

/* ---- a temporary directory per test, under one per run ---- */

static char rundir[64];

static void rundir_make(void)
{
	htmp_make(rundir, sizeof(rundir), "heapd-layers", HTMP_DISK);
}

static void rundir_remove(void)
{
	htmp_remove(rundir);
}

/* ---- a stand-in cache layer for the process state's hooks ---- */

typedef struct tcache {
	proc_cache_t reg;
	uint32_t spans[4];
	size_t nspans;
	int drops;
	int fail;       /* list_spans says -ENOMEM */
} tcache_t;

static tcache_t *tcache_of(proc_cache_t *c)
{
	return (tcache_t *)((char *)c - offsetof(tcache_t, reg));
}

static int tc_list(proc_cache_t *c, uint32_t **spans, size_t *n, size_t *cap)
{
	tcache_t *t = tcache_of(c);
	if (t->fail)
		return -ENOMEM;
	for (size_t i = 0; i < t->nspans; i++) {
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 2;
			*spans = realloc(*spans, *cap * sizeof(**spans));
		}
		(*spans)[(*n)++] = t->spans[i];
	}
	return 0;
}

static void tc_drop(proc_cache_t *c)
{
	tcache_t *t = tcache_of(c);
	t->nspans = 0;
	t->drops++;
}

static const proc_cache_hooks_t tc_hooks = { .list_spans = tc_list, .drop = tc_drop };

static void tcache_init(tcache_t *t, uint32_t first, size_t n)
{
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < n; i++)
		t->spans[i] = first + (uint32_t)i;
	t->nspans = n;
}

/* The held spans, as a bit set of span ids below 64. */
static uint64_t held_set(int *rc)
{
	uint32_t *spans;
	size_t n;
	uint64_t set = 0;
	*rc = proc_held_spans_locked(&spans, &n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_lt(spans[i], 64);
		ck_assert_msg(!(set & 1ULL << spans[i]), "span %u listed twice", spans[i]);
		set |= 1ULL << spans[i];
	}
	free(spans);
	return set;
}

static uint64_t bits(uint32_t first, uint32_t n)
{
	return ((1ULL << n) - 1) << first;
}

/* A test arena, mapped read-write as the daemon maps it. */
static void arena_make(const char *dir, segment_t *seg)
{
	segment_params_t params = { .arena_bytes = 16 << 20, .max_clients = 8 };
	char err[256] = "";
	int created = 0;
	int rc = segment_open(dir, &params, SEGMENT_CREATE, seg, &created, err, sizeof(err));
	ck_assert_msg(rc == 0 && created, "arena %s: %s", dir, err);
}

/* ---- the process state ---- */

START_TEST(test_proc_registry)
{
	static tcache_t a, b, c, d;
	int rc;
	proc_set_cache_hooks(&tc_hooks);
	tcache_init(&a, 0, 2);
	tcache_init(&b, 10, 3);
	tcache_init(&c, 20, 1);
	tcache_init(&d, 30, 4);

	proc_lock();
	ck_assert(proc_held());
	ck_assert_uint_eq(held_set(&rc), 0);
	ck_assert_int_eq(rc, 0);
	proc_register_locked(&a.reg);
	proc_register_locked(&b.reg);
	proc_register_locked(&c.reg);
	ck_assert_uint_eq(held_set(&rc), bits(0, 2) | bits(10, 3) | bits(20, 1));
	/* out of the middle, the head and the tail of the registry */
	proc_unregister_locked(&b.reg);
	ck_assert_uint_eq(held_set(&rc), bits(0, 2) | bits(20, 1));
	proc_unregister_locked(&c.reg);
	ck_assert_uint_eq(held_set(&rc), bits(0, 2));
	proc_register_locked(&b.reg);
	proc_unregister_locked(&a.reg);
	ck_assert_uint_eq(held_set(&rc), bits(10, 3));
	proc_unregister_locked(&b.reg);
	ck_assert_ptr_null(proc_g.registry);
	ck_assert_uint_eq(held_set(&rc), 0);

	/* caches of an older epoch hold spans that are not ours to list */
	proc_register_locked(&a.reg);
	uint64_t e = proc_epoch();
	proc_set_slot_locked(2); /* a first slot: a new epoch */
	ck_assert_uint_eq(proc_epoch(), e + 1);
	ck_assert_uint_eq(held_set(&rc), 0);
	proc_register_locked(&d.reg);
	ck_assert_uint_eq(d.reg.epoch, e + 1);
	ck_assert_uint_eq(held_set(&rc), bits(30, 4));

	/* a cache that cannot list: the whole answer is -ENOMEM, with nothing in it, not even
	 * what the caches listed before it gave */
	static tcache_t head;
	tcache_init(&head, 40, 2);
	proc_register_locked(&head.reg); /* the registry's head: listed first */
	d.fail = 1;
	uint32_t *spans = (uint32_t *)&spans;
	size_t n = 99;
	ck_assert_int_eq(proc_held_spans_locked(&spans, &n), -ENOMEM);
	ck_assert_ptr_null(spans);
	ck_assert_uint_eq(n, 0);
	d.fail = 0;
	ck_assert_uint_eq(held_set(&rc), bits(30, 4) | bits(40, 2));

	/* dropping reaches every cache, stale or not */
	proc_drop_all_locked();
	ck_assert_int_eq(a.drops, 1);
	ck_assert_int_eq(d.drops, 1);
	ck_assert_int_eq(head.drops, 1);
	ck_assert_uint_eq(held_set(&rc), 0);
	proc_unlock();
	ck_assert(!proc_held());
}
END_TEST

START_TEST(test_proc_slot_epoch)
{
	proc_lock();
	ck_assert_int_eq(proc_g.have_slot, 0);
	ck_assert_uint_eq(atomic_load(&proc_g.flags_slot), UINT32_MAX);
	ck_assert_uint_eq(proc_slot_flags(), 0);

	uint64_t e = proc_epoch();
	proc_set_slot_locked(3);
	ck_assert_uint_eq(proc_epoch(), e + 1);
	ck_assert_int_eq(proc_g.have_slot, 1);
	ck_assert_uint_eq(proc_g.slot, 3);
	ck_assert_uint_eq(atomic_load(&proc_g.flags_slot), 3);
	/* re-adopted: the same slot keeps the epoch, so the caches keep their spans */
	proc_set_slot_locked(3);
	ck_assert_uint_eq(proc_epoch(), e + 1);
	/* another slot: the caches' spans are the old slot's */
	proc_set_slot_locked(4);
	ck_assert_uint_eq(proc_epoch(), e + 2);
	ck_assert_uint_eq(proc_g.slot, 4);

	atomic_store(&proc_g.large_received, 17);
	proc_forget_slot_locked();
	ck_assert_uint_eq(proc_epoch(), e + 3);
	ck_assert_int_eq(proc_g.have_slot, 0);
	ck_assert_uint_eq(atomic_load(&proc_g.flags_slot), UINT32_MAX);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 0);
	/* a slot with the same number after having none is a new slot all the same */
	proc_set_slot_locked(4);
	ck_assert_uint_eq(proc_epoch(), e + 4);
	proc_unlock();
}
END_TEST

/* Freeing the large object last received forgets it (a reconnect must not claim it); others not. */
START_TEST(test_proc_large_freeing)
{
	atomic_store(&proc_g.large_received, 813); /* span 812 */
	proc_large_freeing(811);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 813);
	proc_large_freeing(813);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 813);
	proc_large_freeing(812);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 0);
	proc_large_freeing(812); /* twice: nothing left to forget */
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 0);
}
END_TEST

START_TEST(test_proc_adopt_arena)
{
	static segment_t seg;
	char dir[128];
	int fds[2];

	snprintf(dir, sizeof(dir), "%s/adopt-%d", rundir, (int)getpid());
	arena_make(dir, &seg);
	proc_lock();

	/* descriptors that are not an arena: refused, consumed, nothing mapped */
	int before = hutil_open_fds();
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_lt(proc_adopt_arena_locked(fds, 1), 0);
	ck_assert_int_eq(fds[0], -1);
	ck_assert_int_eq(fds[1], -1);
	ck_assert_int_eq(atomic_load(&proc_g.mapped), 0);
	ck_assert_int_eq(hutil_open_fds(), before);

	fds[0] = dup(seg.client_meta_fd);
	fds[1] = dup(seg.client_data_fd);
	ck_assert_int_eq(proc_adopt_arena_locked(fds, seg.hdr->arena_id), 0);
	ck_assert_int_eq(fds[0], -1);
	ck_assert_int_eq(fds[1], -1);
	ck_assert_int_eq(atomic_load(&proc_g.mapped), 1);
	ck_assert_uint_eq(proc_g.arena_id, seg.hdr->arena_id);
	ck_assert_uint_eq(proc_g.seg.hdr->arena_id, seg.hdr->arena_id);
	ck_assert_uint_eq(proc_g.seg.npages_max, seg.npages_max);
	ck_assert_int_eq(proc_g.seg.writable_meta, 0);
	/* the same files: the daemon's writes show through the client's mapping */
	segment_page_addr(&seg, 5)[7] = 0x5c;
	ck_assert_uint_eq(segment_page_addr(&proc_g.seg, 5)[7], 0x5c);
	segment_page_addr(&proc_g.seg, 6)[1] = 0x3d; /* and the data is writable */
	ck_assert_uint_eq(segment_page_addr(&seg, 6)[1], 0x3d);

	/* mapped already: the same arena is fine, another is -ESTALE; the descriptors go either way */
	uint8_t *base = proc_g.seg.base;
	before = hutil_open_fds();
	fds[0] = dup(seg.client_meta_fd);
	fds[1] = dup(seg.client_data_fd);
	ck_assert_int_eq(proc_adopt_arena_locked(fds, seg.hdr->arena_id), 0);
	ck_assert_int_eq(hutil_open_fds(), before);
	fds[0] = dup(seg.client_meta_fd);
	fds[1] = dup(seg.client_data_fd);
	ck_assert_int_eq(proc_adopt_arena_locked(fds, seg.hdr->arena_id + 1), -ESTALE);
	ck_assert_int_eq(fds[0], -1);
	ck_assert_int_eq(hutil_open_fds(), before);
	ck_assert_ptr_eq(proc_g.seg.base, base);

	/* the flags heapd raises in our slot, read without the lock */
	ck_assert_uint_eq(proc_slot_flags(), 0);
	proc_set_slot_locked(3);
	atomic_store(&seg.clients[3].flags, HEAPD_CLIENT_FLUSH);
	atomic_store(&seg.clients[2].flags, 0x40);
	ck_assert_uint_eq(proc_slot_flags(), HEAPD_CLIENT_FLUSH);
	proc_forget_slot_locked();
	ck_assert_uint_eq(proc_slot_flags(), 0);
	proc_unlock();
	segment_close(&seg);
}
END_TEST

/* What a forked child saw, sent back through a pipe. */
typedef struct child_view {
	int hook_calls[2];    /* each hook, in the order they ran (1, 2) */
	int held_in_hook;     /* the hooks ran with the lock held */
	int have_slot;
	uint64_t epoch;
	uint32_t flags_slot;
	uint32_t large_received;
	int lock_free;        /* the child can take the lock after fork */
	int connected;
	int peer_sockets;     /* descriptors connected to the fake daemon */
} child_view_t;

static child_view_t view;
static int hook_seq;

static void fork_hook_a(void)
{
	view.hook_calls[0] = ++hook_seq;
	view.held_in_hook = proc_held();
}

static void fork_hook_b(void)
{
	view.hook_calls[1] = ++hook_seq;
	view.held_in_hook &= proc_held();
}

/* Run fn in a forked child that sends back what it saw; returns it. */
static child_view_t in_child(void (*fn)(void))
{
	int p[2];
	child_view_t got;
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		fn();
		view.have_slot = proc_g.have_slot;
		view.epoch = proc_epoch();
		view.flags_slot = atomic_load(&proc_g.flags_slot);
		view.large_received = atomic_load(&proc_g.large_received);
		view.lock_free = pthread_mutex_trylock(&proc_g.lock) == 0;
		if (view.lock_free)
			pthread_mutex_unlock(&proc_g.lock);
		view.connected = transport_connected();
		_exit(write(p[1], &view, sizeof(view)) == sizeof(view) ? 0 : 1);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &got, sizeof(got)), (ssize_t)sizeof(got));
	close(p[0]);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return got;
}

static void nothing(void)
{
}

START_TEST(test_proc_fork_child)
{
	proc_init();
	proc_init();
	proc_at_fork_child(fork_hook_a);
	proc_at_fork_child(fork_hook_b);
	proc_at_fork_child(fork_hook_a); /* once is enough */
	proc_lock();
	proc_set_slot_locked(5);
	atomic_store(&proc_g.large_received, 9);
	proc_unlock();
	uint64_t e = proc_epoch();

	child_view_t v = in_child(nothing);
	ck_assert_int_eq(v.hook_calls[0], 1); /* in registration order, once each */
	ck_assert_int_eq(v.hook_calls[1], 2);
	ck_assert_int_eq(v.held_in_hook, 1);
	ck_assert_int_eq(v.have_slot, 0);     /* the slot is the parent's */
	ck_assert_uint_eq(v.epoch, e + 1);    /* the caches' spans too */
	ck_assert_uint_eq(v.flags_slot, UINT32_MAX);
	ck_assert_uint_eq(v.large_received, 0);
	ck_assert_int_eq(v.lock_free, 1);

	/* the parent keeps everything, and its lock */
	ck_assert_int_eq(hook_seq, 0);
	ck_assert_int_eq(proc_g.have_slot, 1);
	ck_assert_uint_eq(proc_g.slot, 5);
	ck_assert_uint_eq(proc_epoch(), e);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 9);
	ck_assert_int_eq(pthread_mutex_trylock(&proc_g.lock), 0);
	pthread_mutex_unlock(&proc_g.lock);
}
END_TEST

/*
 * Registration races: two threads register at once, as a thread's first
 * allocation (the caches' hook, without the lock) may race another's
 * hc_connect (the transport's, with it). Each trial is a process of its own,
 * with no hooks yet; its forked child reports how often each hook ran. The
 * race is a few instructions wide, so it takes many trials to show.
 */
static atomic_int race_go; /* threads at the start line */
static int race_calls[3]; /* race_hook_a, race_hook_b, race_hook_shared */

static void race_hook_a(void)
{
	race_calls[0]++;
}

static void race_hook_b(void)
{
	race_calls[1]++;
}

static void race_hook_shared(void)
{
	race_calls[2]++;
}

static void *race_register(void *fn)
{
	/* both spin until both are here, so that they leave together */
	atomic_fetch_add(&race_go, 1);
	while (atomic_load(&race_go) < 2)
		;
	proc_at_fork_child((void (*)(void))fn);
	proc_at_fork_child(race_hook_shared);
	return NULL;
}

/* In a trial's process: race, then fork; exit 0 when the child ran each hook once. */
static void race_trial(void)
{
	pthread_t t[2];
	int p[2], got[3], st;

	proc_init();
	pthread_create(&t[0], NULL, race_register, (void *)race_hook_a);
	pthread_create(&t[1], NULL, race_register, (void *)race_hook_b);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	if (pipe(p) < 0)
		_exit(2);
	pid_t pid = fork();
	if (pid == 0)
		_exit(write(p[1], race_calls, sizeof(race_calls)) == sizeof(race_calls) ? 0 : 2);
	if (pid < 0 || read(p[0], got, sizeof(got)) != sizeof(got) ||
	    waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		_exit(2);
	_exit(got[0] == 1 && got[1] == 1 && got[2] == 1 ? 0 : 1);
}

START_TEST(test_proc_fork_hooks_race)
{
	int lost = 0;

	for (int i = 0; i < 2000; i++) {
		int st;
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0)
			race_trial();
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 2);
		lost += WEXITSTATUS(st) == 1;
	}
	ck_assert_int_eq(lost, 0);
}
END_TEST

/* ---- requests ---- */

/* r's envelope, packed and unpacked: what the daemon would read. */
static Heapd__Envelope *wire_view(const request_t *r)
{
	size_t n = wire_frame_size(&r->env);
	uint8_t *buf = malloc(n);
	wire_frame_pack(&r->env, buf);
	Heapd__Envelope *env = wire_unpack(buf + HEAPD_FRAME_HEADER, n - HEAPD_FRAME_HEADER);
	free(buf);
	ck_assert_ptr_nonnull(env);
	return env;
}

START_TEST(test_request_build)
{
	uint32_t rel[3] = { 40, 41, 99 };
	request_t r;
	Heapd__Envelope *w;

	request_refill(&r, 12, 5, rel, 3);
	ck_assert_int_eq(r.want, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	w = wire_view(&r);
	ck_assert_int_eq(w->msg_case, HEAPD__ENVELOPE__MSG_REFILL);
	ck_assert_uint_eq(w->refill->sizeclass, 12);
	ck_assert_uint_eq(w->refill->count, 5);
	ck_assert_uint_eq(w->refill->n_release, 3);
	ck_assert_mem_eq(w->refill->release, rel, sizeof(rel));
	wire_free(w);
	request_free(&r);

	request_refill(&r, 0, 0, rel, 2); /* only hands back */
	w = wire_view(&r);
	ck_assert_uint_eq(w->refill->count, 0);
	ck_assert_uint_eq(w->refill->n_release, 2);
	wire_free(w);

	request_large_alloc(&r, 123456789ULL, 1, 1 << 20, rel + 1, 2);
	ck_assert_int_eq(r.want, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
	w = wire_view(&r);
	ck_assert_int_eq(w->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC);
	ck_assert_uint_eq(w->large_alloc->size, 123456789ULL);
	ck_assert_int_eq(w->large_alloc->zero, 1);
	ck_assert_uint_eq(w->large_alloc->align, 1 << 20);
	ck_assert_uint_eq(w->large_alloc->n_release, 2);
	ck_assert_uint_eq(w->large_alloc->release[0], 41);
	ck_assert_uint_eq(w->large_alloc->release[1], 99);
	wire_free(w);

	request_large_free(&r, 77, 0xfeedu);
	ck_assert_int_eq(r.want, HEAPD__ENVELOPE__MSG__NOT_SET); /* no reply ever comes */
	w = wire_view(&r);
	ck_assert_int_eq(w->msg_case, HEAPD__ENVELOPE__MSG_LARGE_FREE);
	ck_assert_uint_eq(w->large_free->span, 77);
	ck_assert_uint_eq(w->large_free->gen, 0xfeedu);
	wire_free(w);

	request_bye(&r);
	ck_assert_int_eq(r.want, HEAPD__ENVELOPE__MSG_OK);
	w = wire_view(&r);
	ck_assert_int_eq(w->msg_case, HEAPD__ENVELOPE__MSG_BYE);
	wire_free(w);
}
END_TEST

START_TEST(test_request_hello)
{
	static tcache_t a, b;
	request_t r;
	Heapd__Envelope *w;

	proc_set_cache_hooks(&tc_hooks);
	proc_lock();
	/* no slot: nothing to name */
	ck_assert_int_eq(request_hello(&r), 0);
	ck_assert_int_eq(r.want, HEAPD__ENVELOPE__MSG_HELLO_REPLY);
	w = wire_view(&r);
	ck_assert_int_eq(w->msg_case, HEAPD__ENVELOPE__MSG_HELLO);
	ck_assert_uint_eq(w->hello->version, HEAPD_PROTOCOL_VERSION);
	ck_assert_uint_eq(w->hello->pid, (uint32_t)getpid());
	ck_assert_int_eq(w->hello->control, 0);
	ck_assert_uint_eq(w->hello->prev_slot, 0);
	ck_assert_uint_eq(w->hello->n_held_spans, 0);
	ck_assert_uint_eq(w->hello->large_received, 0);
	wire_free(w);
	request_free(&r);

	/* with a slot: it, the spans the caches of this epoch hold, the large object received */
	tcache_init(&a, 1, 3);
	tcache_init(&b, 20, 2);
	proc_register_locked(&a.reg); /* from before the slot: stale */
	proc_set_slot_locked(6);
	proc_register_locked(&b.reg);
	atomic_store(&proc_g.large_received, 301);
	ck_assert_int_eq(request_hello(&r), 0);
	w = wire_view(&r);
	ck_assert_uint_eq(w->hello->prev_slot, 7);
	ck_assert_uint_eq(w->hello->n_held_spans, 2);
	ck_assert_uint_eq(w->hello->held_spans[0] + w->hello->held_spans[1], 41);
	ck_assert_uint_eq(w->hello->large_received, 301);
	wire_free(w);
	request_free(&r);
	ck_assert_ptr_null(r.held);
	request_free(&r); /* twice is harmless */

	b.fail = 1;
	ck_assert_int_eq(request_hello(&r), -ENOMEM);
	proc_unlock();
}
END_TEST

START_TEST(test_request_new_connection)
{
	uint32_t rel[2] = { 5, 6 };
	request_t r;
	Heapd__Envelope *w;

	/* handed-back spans were unlisted from the Hello, so the daemon took them already */
	request_refill(&r, 3, 4, rel, 2);
	request_on_new_connection(&r);
	w = wire_view(&r);
	ck_assert_uint_eq(w->refill->n_release, 0);
	ck_assert_uint_eq(w->refill->sizeclass, 3); /* the rest of the request stands */
	ck_assert_uint_eq(w->refill->count, 4);
	wire_free(w);

	request_large_alloc(&r, 99999, 0, 0, rel, 2);
	request_on_new_connection(&r);
	w = wire_view(&r);
	ck_assert_uint_eq(w->large_alloc->n_release, 0);
	ck_assert_uint_eq(w->large_alloc->size, 99999);
	wire_free(w);

	request_large_free(&r, 8, 9);
	request_on_new_connection(&r);
	w = wire_view(&r);
	ck_assert_uint_eq(w->large_free->span, 8);
	ck_assert_uint_eq(w->large_free->gen, 9);
	wire_free(w);
}
END_TEST

/* A reply of kind k (Error: code, fatal) with seq. */
static void reply_of(Heapd__Envelope *env, int k, int code, int fatal, void *storage)
{
	heapd__envelope__init(env);
	env->msg_case = (Heapd__Envelope__MsgCase)k;
	memset(storage, 0, 64);
	switch (k) {
	case HEAPD__ENVELOPE__MSG_ERROR: {
		Heapd__Error *e = storage;
		heapd__error__init(e);
		e->code = code;
		e->fatal = fatal;
		e->message = "x";
		env->error = e;
		break;
	}
	case HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY: {
		Heapd__LargeAllocReply *l = storage;
		heapd__large_alloc_reply__init(l);
		l->span = (uint32_t)code;
		env->large_alloc_reply = l;
		break;
	}
	case HEAPD__ENVELOPE__MSG_REFILL_REPLY: {
		Heapd__RefillReply *rr = storage;
		heapd__refill_reply__init(rr);
		env->refill_reply = rr;
		break;
	}
	case HEAPD__ENVELOPE__MSG_OK: {
		Heapd__Ok *ok = storage;
		heapd__ok__init(ok);
		env->ok = ok;
		break;
	}
	}
}

START_TEST(test_request_done)
{
	uint64_t storage[16];
	Heapd__Envelope rep;
	request_t r;
	int fatal = -1;

	request_refill(&r, 1, 1, NULL, 0);
	reply_of(&rep, HEAPD__ENVELOPE__MSG_REFILL_REPLY, 0, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), 0);
	ck_assert_int_eq(fatal, 0);

	/* Errors: their code, and whether the daemon closes the connection after them */
	reply_of(&rep, HEAPD__ENVELOPE__MSG_ERROR, ENOMEM, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -ENOMEM);
	ck_assert_int_eq(fatal, 0);
	reply_of(&rep, HEAPD__ENVELOPE__MSG_ERROR, EDQUOT, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -EDQUOT);
	ck_assert_int_eq(fatal, 0);
	reply_of(&rep, HEAPD__ENVELOPE__MSG_ERROR, EINVAL, 1, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -EINVAL);
	ck_assert_int_eq(fatal, 1);
	/* an Error without a usable code is a protocol error, never a success */
	reply_of(&rep, HEAPD__ENVELOPE__MSG_ERROR, 0, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -EPROTO);
	reply_of(&rep, HEAPD__ENVELOPE__MSG_ERROR, -5, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -EPROTO);
	/* another kind of reply: the connection is out of step */
	reply_of(&rep, HEAPD__ENVELOPE__MSG_OK, 0, 0, storage);
	fatal = 0;
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -EPROTO);
	ck_assert_int_eq(fatal, 1);

	/* a LargeAlloc's reply is remembered, for the Hello of a reconnect */
	request_large_alloc(&r, 1 << 20, 0, 0, NULL, 0);
	reply_of(&rep, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY, 812, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), 0);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 813);
	/* an Error to one is not */
	reply_of(&rep, HEAPD__ENVELOPE__MSG_ERROR, ENOMEM, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), -ENOMEM);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 813);
	/* the next one's replaces it */
	reply_of(&rep, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY, 0, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), 0);
	ck_assert_uint_eq(atomic_load(&proc_g.large_received), 1);

	request_bye(&r);
	reply_of(&rep, HEAPD__ENVELOPE__MSG_OK, 0, 0, storage);
	ck_assert_int_eq(request_done(&r, &rep, &fatal), 0);
}
END_TEST

START_TEST(test_request_counts)
{
	request_t r;
	request_counts_t before = request_counts;

	request_refill(&r, 1, 1, NULL, 0);
	request_sent(&r);
	request_sent(&r);
	request_large_alloc(&r, 1 << 20, 0, 0, NULL, 0);
	request_sent(&r);
	request_large_free(&r, 1, 1);
	request_sent(&r);
	request_bye(&r);
	request_sent(&r);
	ck_assert_uint_eq(request_counts.requests, before.requests + 5);
	ck_assert_uint_eq(request_counts.refills, before.refills + 2);
	ck_assert_uint_eq(request_counts.large_allocs, before.large_allocs + 1);
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects);
}
END_TEST

/* ---- the fake daemon ---- */

#define FAKE_SLOT 3u
#define FAKE_MAX 16

typedef struct fake fake_t;
typedef void (*script_t)(fake_t *f);

struct fake {
	char dir[128];
	char path[160];
	char arena[160];
	int lfd;
	int stop[2];               /* a byte here: accept no more */
	segment_t seg;
	pthread_t thread;
	int running;
	script_t script;
	uint32_t slot;             /* the slot Hellos get */
	_Atomic int accepted;
	_Atomic int step;          /* how far the script got, for the test to wait on */
	_Atomic int go;            /* the test lets the script go on past a point */
	Heapd__Envelope *seen[FAKE_MAX]; /* what the script received, in order */
	int nseen;
	int eof[FAKE_MAX];         /* connections the client closed, as the script saw */
	int conns[FAKE_MAX];
	int nconns;
};

static fake_t fk;

static void fake_setup(void)
{
	memset(&fk, 0, sizeof(fk));
	snprintf(fk.dir, sizeof(fk.dir), "%s/t-%d", rundir, (int)getpid());
	ck_assert_int_eq(mkdir(fk.dir, 0700), 0);
	snprintf(fk.path, sizeof(fk.path), "%s/sock", fk.dir);
	snprintf(fk.arena, sizeof(fk.arena), "%s/arena", fk.dir);
	arena_make(fk.arena, &fk.seg);
	fk.lfd = sock_listen(fk.path, 0600, 16);
	ck_assert_int_ge(fk.lfd, 0);
	ck_assert_int_eq(pipe(fk.stop), 0);
	fk.slot = FAKE_SLOT;
	setenv("HEAPD_SOCKET", fk.path, 1);
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "0", 1);
}

static void *fake_main(void *arg)
{
	fake_t *f = arg;
	f->script(f);
	return NULL;
}

static void fake_start(script_t script)
{
	fk.script = script;
	ck_assert_int_eq(pthread_create(&fk.thread, NULL, fake_main, &fk), 0);
	fk.running = 1;
}

/* Tell the script to stop accepting and wait for it. */
static void fake_join(void)
{
	if (!fk.running)
		return;
	ck_assert_int_eq(write(fk.stop[1], "x", 1), 1);
	pthread_join(fk.thread, NULL);
	fk.running = 0;
}

static void fake_teardown(void)
{
	fake_join();
	for (int i = 0; i < fk.nseen; i++)
		wire_free(fk.seen[i]);
	for (int i = 0; i < fk.nconns; i++)
		close(fk.conns[i]);
	close(fk.lfd);
	close(fk.stop[0]);
	close(fk.stop[1]);
	segment_close(&fk.seg);
}

static void wait_step(int n)
{
	while (atomic_load(&fk.step) < n)
		sched_yield();
}

static void wait_go(fake_t *f, int n)
{
	while (atomic_load(&f->go) < n)
		sched_yield();
}

/* The next connection, or -1 once the test says stop. */
static int fk_accept(fake_t *f)
{
	struct pollfd p[2] = { { .fd = f->lfd, .events = POLLIN }, { .fd = f->stop[0], .events = POLLIN } };
	for (;;) {
		ck_assert_int_ge(poll(p, 2, -1), 1);
		if (p[1].revents)
			return -1;
		int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		atomic_fetch_add(&f->accepted, 1);
		ck_assert_int_lt(f->nconns, FAKE_MAX);
		f->conns[f->nconns++] = fd;
		return fd;
	}
}

/* The next request on fd, kept for the test; NULL when the client closed it. */
static Heapd__Envelope *fk_recv(fake_t *f, int fd)
{
	Heapd__Envelope *env;
	int rc = wire_recv(fd, &env, NULL);
	if (rc == -ECONNRESET)
		return NULL;
	ck_assert_msg(rc == 0, "fake daemon: recv %d", rc);
	ck_assert_int_lt(f->nseen, FAKE_MAX);
	f->seen[f->nseen++] = env;
	return env;
}

/* Wait for the client to close fd; note it. */
static void fk_expect_eof(fake_t *f, int fd)
{
	Heapd__Envelope *env = fk_recv(f, fd);
	ck_assert_msg(env == NULL, "fake daemon: a frame where EOF was expected");
	for (int i = 0; i < f->nconns; i++)
		if (f->conns[i] == fd)
			f->eof[i] = 1;
}

static void fk_close(fake_t *f, int fd)
{
	for (int i = 0; i < f->nconns; i++) {
		if (f->conns[i] == fd) {
			close(fd);
			f->conns[i] = f->conns[--f->nconns];
			f->eof[i] = f->eof[f->nconns];
			return;
		}
	}
}

/* Send env on fd with the arena's two descriptors (nfds of them). */
static void fk_send(fake_t *f, int fd, const Heapd__Envelope *env, int nfds)
{
	size_t n = wire_frame_size(env);
	uint8_t *buf = malloc(n);
	int fds[2] = { f->seg.client_meta_fd, f->seg.client_data_fd };
	wire_frame_pack(env, buf);
	struct iovec iov = { .iov_base = buf, .iov_len = n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	wire_fdctl_t ctl;
	if (nfds > 0)
		wire_attach_fds(&msg, &ctl, fds, nfds);
	ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
	ck_assert_msg(sent == (ssize_t)n, "fake daemon: sendmsg %zd of %zu", sent, n);
	free(buf);
}

static void fk_send_raw(int fd, const void *buf, size_t n)
{
	ck_assert_int_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

typedef struct hello_reply_opts {
	int nfds;
	uint32_t version;
	int64_t seq_delta;
	uint64_t arena_delta;
	uint32_t slot;
} hello_reply_opts_t;

static void fk_hello_reply(fake_t *f, int fd, const Heapd__Envelope *hello, hello_reply_opts_t o)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__HelloReply hr = HEAPD__HELLO_REPLY__INIT;
	hr.version = o.version;
	hr.slot = o.slot;
	hr.arena_id = f->seg.hdr->arena_id + o.arena_delta;
	hr.map_size = f->seg.hdr->map_size;
	hr.base_hint = f->seg.hdr->base_hint;
	hr.generation = 1;
	hr.page_size = HEAPD_PAGE_SIZE;
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO_REPLY;
	env.hello_reply = &hr;
	env.seq = hello->seq + (uint64_t)o.seq_delta;
	fk_send(f, fd, &env, o.nfds);
}

/* Accept a connection and answer its Hello as a daemon does; the Hello, or NULL if stopped. */
static Heapd__Envelope *fk_hello(fake_t *f, int *fd)
{
	*fd = fk_accept(f);
	if (*fd < 0)
		return NULL;
	Heapd__Envelope *h = fk_recv(f, *fd);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(h->msg_case, HEAPD__ENVELOPE__MSG_HELLO);
	fk_hello_reply(f, *fd, h, (hello_reply_opts_t){ 2, HEAPD_PROTOCOL_VERSION, 0, 0, f->slot });
	return h;
}

static void fk_error(int fd, uint64_t seq, int code, int fatal)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Error e = HEAPD__ERROR__INIT;
	e.code = code;
	e.fatal = fatal;
	e.message = "refused by the fake daemon";
	env.msg_case = HEAPD__ENVELOPE__MSG_ERROR;
	env.error = &e;
	env.seq = seq;
	ck_assert_int_eq(wire_send(fd, &env), 0);
}

static void fk_refill_reply(int fd, uint64_t seq, uint32_t span)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__RefillReply rr = HEAPD__REFILL_REPLY__INIT;
	Heapd__SpanGrant g = HEAPD__SPAN_GRANT__INIT, *gp = &g;
	g.span = span;
	rr.spans = &gp;
	rr.n_spans = 1;
	env.msg_case = HEAPD__ENVELOPE__MSG_REFILL_REPLY;
	env.refill_reply = &rr;
	env.seq = seq;
	ck_assert_int_eq(wire_send(fd, &env), 0);
}

static void fk_ok(int fd, uint64_t seq)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Ok ok = HEAPD__OK__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_OK;
	env.ok = &ok;
	env.seq = seq;
	ck_assert_int_eq(wire_send(fd, &env), 0);
}

/* Accept connections and close each at once (a daemon that is not there yet) until stopped. */
static int fk_refuse(fake_t *f)
{
	int fd = fk_accept(f);
	if (fd >= 0)
		fk_close(f, fd);
	return fd;
}

/* ---- the client's side ---- */

static int connect_to(const char *path)
{
	proc_lock();
	int rc = transport_connect_locked(path);
	proc_unlock();
	return rc;
}

/* A Refill; the reply's first span (0 if none) or -errno. */
static int64_t refill(uint32_t k, uint32_t count, uint32_t *rel, size_t nrel)
{
	Heapd__Envelope *reply = NULL;
	request_t r;
	proc_lock();
	request_refill(&r, k, count, rel, nrel);
	int rc = transport_call_locked(&r, &reply, 0);
	proc_unlock();
	if (rc < 0) {
		ck_assert_ptr_null(reply);
		return rc;
	}
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	int64_t span = reply->refill_reply->n_spans ? reply->refill_reply->spans[0]->span : 0;
	wire_free(reply);
	return span;
}

static int connected(void)
{
	return transport_connected();
}

/* ---- the transport ---- */

static void sc_hello(fake_t *f)
{
	int fd;
	fk_hello(f, &fd);
	atomic_store(&f->step, 1);
}

START_TEST(test_hello)
{
	request_counts_t before = request_counts;
	fake_start(sc_hello);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(connected(), 1);
	ck_assert_int_eq(atomic_load(&proc_g.mapped), 1);
	ck_assert_uint_eq(proc_g.arena_id, fk.seg.hdr->arena_id);
	ck_assert_uint_eq(proc_g.seg.hdr->arena_id, fk.seg.hdr->arena_id);
	ck_assert_int_eq(proc_g.have_slot, 1);
	ck_assert_uint_eq(proc_g.slot, FAKE_SLOT);
	ck_assert_uint_eq(request_counts.requests, before.requests + 1);
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects);
	/* connected already: nothing more */
	ck_assert_int_eq(connect_to(fk.path), 0);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 1);
	const Heapd__Hello *h = fk.seen[0]->hello;
	ck_assert_uint_eq(h->version, HEAPD_PROTOCOL_VERSION);
	ck_assert_uint_eq(h->pid, (uint32_t)getpid());
	ck_assert_int_eq(h->control, 0);
	ck_assert_uint_eq(h->prev_slot, 0);
	ck_assert_uint_eq(h->n_held_spans, 0);
	ck_assert_uint_ne(fk.seen[0]->seq, 0);
}
END_TEST

/* Hello replies a client must refuse, one per connection, then a good one. */
enum {
	BAD_ONE_FD, BAD_NO_FDS, BAD_VERSION, BAD_SEQ, BAD_KIND, BAD_REFUSED, BAD_BUSY, BAD_GARBAGE,
	BAD_SLOT, BAD_ARENA, GOOD, NVARIANTS
};

static void sc_bad_hellos(fake_t *f)
{
	for (int v = 0; v < NVARIANTS; v++) {
		int fd = fk_accept(f);
		ck_assert_int_ge(fd, 0);
		Heapd__Envelope *h = fk_recv(f, fd);
		ck_assert_ptr_nonnull(h);
		hello_reply_opts_t o = { 2, HEAPD_PROTOCOL_VERSION, 0, 0, f->slot };
		switch (v) {
		case BAD_ONE_FD: o.nfds = 1; break;
		case BAD_NO_FDS: o.nfds = 0; break;
		case BAD_VERSION: o.version = HEAPD_PROTOCOL_VERSION + 1; break;
		case BAD_SEQ: o.seq_delta = 1; break;
		case BAD_SLOT: o.slot = f->seg.hdr->max_clients; break;
		case BAD_ARENA: o.arena_delta = 1; break;
		}
		if (v == BAD_KIND)
			fk_ok(fd, h->seq);
		else if (v == BAD_REFUSED)
			fk_error(fd, h->seq, EACCES, 1);
		else if (v == BAD_BUSY)
			fk_error(fd, h->seq, EBUSY, 0);
		else if (v == BAD_GARBAGE)
			fk_send_raw(fd, "\x03\x00\x00\x00\xff\xff\xff", 7);
		else
			fk_hello_reply(f, fd, h, o);
		if (v != GOOD)
			fk_close(f, fd);
		atomic_store(&f->step, v + 1);
	}
}

START_TEST(test_hello_bad_replies)
{
	static const int want[NVARIANTS] = {
		[BAD_ONE_FD] = -EPROTO, [BAD_NO_FDS] = -EPROTO, [BAD_VERSION] = -EPROTO,
		[BAD_SEQ] = -EPROTO, [BAD_KIND] = -EPROTO, [BAD_REFUSED] = -EACCES,
		[BAD_BUSY] = -EBUSY, [BAD_GARBAGE] = -EPROTO, [BAD_SLOT] = -EPROTO,
		[BAD_ARENA] = -ESTALE, [GOOD] = 0,
	};
	request_counts_t before = request_counts;
	fake_start(sc_bad_hellos);
	int base = hutil_open_fds();
	for (int v = 0; v < NVARIANTS; v++) {
		int rc = connect_to(fk.path);
		ck_assert_msg(rc == want[v], "variant %d: %d, want %d", v, rc, want[v]);
		wait_step(v + 1);
		if (v == GOOD)
			break;
		ck_assert_int_eq(connected(), 0);
		ck_assert_int_eq(proc_g.have_slot, 0);
		if (v == BAD_SLOT) {
			/* the arena got mapped before the slot was found wrong; the mapping stays */
			ck_assert_int_eq(atomic_load(&proc_g.mapped), 1);
			base = hutil_open_fds();
		} else if (v < BAD_SLOT) {
			ck_assert_int_eq(atomic_load(&proc_g.mapped), 0);
		}
		ck_assert_msg(hutil_open_fds() == base, "variant %d leaked a descriptor", v);
	}
	ck_assert_int_eq(connected(), 1);
	ck_assert_uint_eq(proc_g.slot, FAKE_SLOT);
	fake_join();
	/* none of these is a daemon going away: one attempt each, no reconnecting */
	ck_assert_int_eq(atomic_load(&fk.accepted), NVARIANTS);
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects);
}
END_TEST

/* A reply with another request's seq: the connection is out of step; reconnect, resend. */
static void sc_seq_mismatch(fake_t *f)
{
	int fd1, fd2;
	fk_hello(f, &fd1);
	Heapd__Envelope *r1 = fk_recv(f, fd1);
	fk_refill_reply(fd1, r1->seq + 1, 55);
	fk_expect_eof(f, fd1);
	fk_hello(f, &fd2);
	Heapd__Envelope *r2 = fk_recv(f, fd2);
	fk_refill_reply(fd2, r2->seq, 77);
}

START_TEST(test_seq_mismatch)
{
	uint32_t rel[2] = { 11, 12 };
	request_counts_t before = request_counts;
	fake_start(sc_seq_mismatch);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(refill(5, 2, rel, 2), 77);
	ck_assert_int_eq(connected(), 1);
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects + 1);
	fake_join();
	/* seen: Hello, Refill, Hello, Refill */
	ck_assert_int_eq(fk.nseen, 4);
	const Heapd__Envelope *r1 = fk.seen[1], *h2 = fk.seen[2], *r2 = fk.seen[3];
	ck_assert_uint_eq(r1->refill->n_release, 2);
	ck_assert_uint_eq(h2->hello->prev_slot, FAKE_SLOT + 1); /* take my slot up again */
	ck_assert_int_eq(r2->msg_case, HEAPD__ENVELOPE__MSG_REFILL);
	ck_assert_uint_eq(r2->refill->sizeclass, 5);
	ck_assert_uint_eq(r2->refill->count, 2);
	ck_assert_uint_eq(r2->refill->n_release, 0); /* those went with the old connection */
	ck_assert_uint_gt(h2->seq, r1->seq);         /* seqs never repeat */
	ck_assert_uint_gt(r2->seq, h2->seq);
}
END_TEST

/*
 * Errors: ENOMEM and EDQUOT leave the connection open; a fatal one closes it
 * (the daemon closes its end after it), and the next request reconnects; a
 * reply of another kind is out of step, like a fatal Error.
 */
static void sc_errors(fake_t *f)
{
	int fd1, fd2, fd3;
	Heapd__Envelope *r;
	fk_hello(f, &fd1);
	r = fk_recv(f, fd1);
	fk_error(fd1, r->seq, ENOMEM, 0);
	r = fk_recv(f, fd1);
	fk_error(fd1, r->seq, EDQUOT, 0);
	r = fk_recv(f, fd1);
	fk_error(fd1, r->seq, EINVAL, 1);
	fk_expect_eof(f, fd1);
	fk_hello(f, &fd2);
	r = fk_recv(f, fd2);
	fk_ok(fd2, r->seq);
	fk_expect_eof(f, fd2);
	fk_hello(f, &fd3);
	r = fk_recv(f, fd3);
	fk_refill_reply(fd3, r->seq, 9);
}

START_TEST(test_errors)
{
	request_counts_t before = request_counts;
	fake_start(sc_errors);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(refill(1, 1, NULL, 0), -ENOMEM);
	ck_assert_int_eq(connected(), 1);
	ck_assert_int_eq(refill(1, 1, NULL, 0), -EDQUOT);
	ck_assert_int_eq(connected(), 1);
	ck_assert_int_eq(refill(1, 1, NULL, 0), -EINVAL);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(refill(1, 1, NULL, 0), -EPROTO);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(refill(1, 1, NULL, 0), 9);
	ck_assert_int_eq(connected(), 1);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 3);
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects + 2);
	ck_assert_uint_eq(proc_g.slot, FAKE_SLOT);
}
END_TEST

/* The daemon dies in the middle of a reply (in its header, then in its payload). */
static void sc_eof_mid_frame(fake_t *f)
{
	int fd;
	uint8_t frame[64];
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *r;
	Heapd__Ok ok = HEAPD__OK__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_OK;
	env.ok = &ok;
	ck_assert_uint_le(wire_frame_size(&env), sizeof(frame));
	wire_frame_pack(&env, frame);

	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_send_raw(fd, frame, 2);
	fk_close(f, fd);
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_send_raw(fd, "\x20\x00\x00\x00\x20\x05", 6);
	fk_close(f, fd);
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 31);
}

START_TEST(test_eof_mid_frame)
{
	request_counts_t before = request_counts;
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "60000", 1);
	fake_start(sc_eof_mid_frame);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(refill(2, 1, NULL, 0), 31); /* through two broken connections */
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects + 2);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 3);
}
END_TEST

/* A reply that is not a frame: -EPROTO, the connection is closed, and not retried. */
static void sc_garbage(fake_t *f)
{
	int fd;
	Heapd__Envelope *r;
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_send_raw(fd, "\x05\x00\x00\x00\xff\xff\xff\xff\xff", 9);
	fk_expect_eof(f, fd);
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_send_raw(fd, "\xff\xff\xff\x7f", 4); /* a length over the limit */
	fk_expect_eof(f, fd);
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 44);
}

START_TEST(test_garbage_reply)
{
	fake_start(sc_garbage);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(refill(2, 1, NULL, 0), -EPROTO);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(atomic_load(&fk.accepted), 1); /* not retried by itself */
	ck_assert_int_eq(refill(2, 1, NULL, 0), -EPROTO);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(refill(2, 1, NULL, 0), 44);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 3);
}
END_TEST

/* The daemon goes away; with HEAPD_RECONNECT_TIMEOUT_MS=0 the client tries once and gives up. */
static void sc_gone(fake_t *f)
{
	int fd;
	fk_hello(f, &fd);
	fk_close(f, fd);
	atomic_store(&f->step, 1);
	while (fk_refuse(f) >= 0)
		;
}

START_TEST(test_reconnect_timeout)
{
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "0", 1);
	fake_start(sc_gone);
	ck_assert_int_eq(connect_to(fk.path), 0);
	wait_step(1);
	ck_assert_int_eq(refill(1, 1, NULL, 0), -ECONNREFUSED);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(proc_g.have_slot, 1); /* the slot is still ours for the next attempt */
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 2); /* the first and exactly one more */
}
END_TEST

/*
 * The daemon restarts: the client retries with backoff until it answers,
 * and lets go of the process lock while it waits between attempts (this
 * script takes it then; were it held, the next attempt would wait for the
 * script and the script for the lock).
 */
static void sc_restart(fake_t *f)
{
	int fd;
	Heapd__Envelope *r;
	fk_hello(f, &fd);
	fk_close(f, fd);
	atomic_store(&f->step, 1);
	for (int i = 0; i < 3; i++) {
		fk_refuse(f);
		if (i == 1) {
			proc_lock();
			proc_unlock();
		}
	}
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 66);
}

START_TEST(test_reconnect_backoff)
{
	request_counts_t before = request_counts;
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "60000", 1);
	fake_start(sc_restart);
	ck_assert_int_eq(connect_to(fk.path), 0);
	wait_step(1);
	ck_assert_int_eq(refill(1, 1, NULL, 0), 66);
	ck_assert_int_eq(connected(), 1);
	ck_assert_uint_eq(request_counts.reconnects, before.reconnects + 1);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 5);
	/* every attempt named our slot */
	for (int i = 1; i < fk.nseen; i++)
		if (fk.seen[i]->msg_case == HEAPD__ENVELOPE__MSG_HELLO)
			ck_assert_uint_eq(fk.seen[i]->hello->prev_slot, FAKE_SLOT + 1);
}
END_TEST

/* No daemon at a first connection: fail at once, however long a reconnect may wait. */
START_TEST(test_first_connect_no_daemon)
{
	char path[200];
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "600000", 1);
	snprintf(path, sizeof(path), "%s/none", fk.dir);
	ck_assert_int_eq(connect_to(path), -ENOENT);
	ck_assert_int_eq(connected(), 0);
	/* a socket left by a daemon that died */
	int lfd = sock_listen(path, 0600, 1);
	ck_assert_int_ge(lfd, 0);
	close(lfd);
	ck_assert_int_eq(connect_to(path), -ECONNREFUSED);
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(proc_g.have_slot, 0);
	/* a path that cannot be a socket address */
	char longpath[300];
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	ck_assert_int_eq(connect_to(longpath), -ENAMETOOLONG);
}
END_TEST

/* A daemon that accepts the first connection and dies before answering is waited for. */
static void sc_dies_during_hello(fake_t *f)
{
	int fd = fk_accept(f);
	ck_assert_ptr_nonnull(fk_recv(f, fd));
	fk_close(f, fd);
	fk_hello(f, &fd);
}

START_TEST(test_first_connect_daemon_restarting)
{
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "60000", 1);
	fake_start(sc_dies_during_hello);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(connected(), 1);
	ck_assert_uint_eq(proc_g.slot, FAKE_SLOT);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 2);
	ck_assert_uint_eq(fk.seen[1]->hello->prev_slot, 0); /* it never had a slot */
}
END_TEST

static int pending_connection(void)
{
	struct pollfd p = { .fd = fk.lfd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

/* Without a connection, TRANSPORT_NO_CONNECT and a LargeFree never make one. */
START_TEST(test_no_connect)
{
	Heapd__Envelope *reply = (Heapd__Envelope *)&reply;
	request_t r;
	request_counts_t before = request_counts;

	proc_lock();
	request_bye(&r);
	ck_assert_int_eq(transport_call_locked(&r, &reply, TRANSPORT_NO_CONNECT), -ENOTCONN);
	ck_assert_ptr_null(reply);
	request_large_free(&r, 3, 4);
	transport_send_locked(&r);
	proc_unlock();
	ck_assert_int_eq(connected(), 0);
	ck_assert_int_eq(pending_connection(), 0);
	ck_assert_uint_eq(request_counts.requests, before.requests);
}
END_TEST

/*
 * A LargeFree goes out with its own seq and no reply is waited for; the next
 * request's reply is still matched. Sent to a daemon that has gone, it only
 * closes the connection.
 */
static void sc_large_free(fake_t *f)
{
	int fd;
	Heapd__Envelope *r;
	fk_hello(f, &fd);
	r = fk_recv(f, fd); /* the LargeFree */
	ck_assert_int_eq(r->msg_case, HEAPD__ENVELOPE__MSG_LARGE_FREE);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 12);
	fk_close(f, fd);
	atomic_store(&f->step, 1);
}

START_TEST(test_send_no_reply)
{
	request_t r;
	request_counts_t before = request_counts;
	fake_start(sc_large_free);
	ck_assert_int_eq(connect_to(fk.path), 0);
	proc_lock();
	request_large_free(&r, 21, 22);
	transport_send_locked(&r);
	proc_unlock();
	ck_assert_int_eq(refill(3, 1, NULL, 0), 12);
	wait_step(1);
	ck_assert_uint_eq(request_counts.requests, before.requests + 3);
	ck_assert_uint_eq(fk.seen[1]->large_free->span, 21);
	ck_assert_uint_eq(fk.seen[1]->large_free->gen, 22);
	ck_assert_uint_eq(fk.seen[1]->seq, fk.seen[0]->seq + 1);
	ck_assert_uint_eq(fk.seen[2]->seq, fk.seen[1]->seq + 1);

	/* the daemon closed its end: the send finds out and closes ours, without reconnecting */
	proc_lock();
	request_large_free(&r, 23, 24);
	transport_send_locked(&r);
	proc_unlock();
	ck_assert_int_eq(connected(), 0);
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 1);
}
END_TEST

/* Descriptors of this process connected to the fake daemon's socket. */
static int sockets_to_fake(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sun_family == AF_UNIX &&
		    strcmp(sa.sun_path, fk.path) == 0)
			n++;
	}
	return n;
}

static void child_sockets(void)
{
	view.peer_sockets = sockets_to_fake();
}

static void sc_fork(fake_t *f)
{
	int fd;
	Heapd__Envelope *r;
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 8);
}

/* A forked child closes its copy of the connection and has no slot; the parent's lives on. */
START_TEST(test_fork_child)
{
	fake_start(sc_fork);
	ck_assert_int_eq(connect_to(fk.path), 0);
	ck_assert_int_eq(sockets_to_fake(), 1);
	uint64_t e = proc_epoch();

	child_view_t v = in_child(child_sockets);
	ck_assert_int_eq(v.connected, 0);
	ck_assert_int_eq(v.peer_sockets, 0);
	ck_assert_int_eq(v.have_slot, 0);
	ck_assert_uint_eq(v.epoch, e + 1);
	ck_assert_int_eq(v.lock_free, 1);

	ck_assert_int_eq(connected(), 1);
	ck_assert_int_eq(refill(4, 1, NULL, 0), 8); /* on the same connection */
	fake_join();
	ck_assert_int_eq(atomic_load(&fk.accepted), 1);
}
END_TEST

/*
 * A reconnect that gets another slot (the daemon would not re-adopt ours):
 * a new epoch, so the spans of every cache are no longer ours; the Hello of
 * the next reconnect names only what the caches took since.
 */
static void sc_new_slot(fake_t *f)
{
	int fd;
	Heapd__Envelope *r;
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq + 5, 1); /* out of step: the client reconnects */
	fk_expect_eof(f, fd);
	f->slot = FAKE_SLOT + 2;
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 2);
	wait_go(f, 1);
	fk_close(f, fd); /* and once more, to see what the next Hello lists */
	fk_hello(f, &fd);
	r = fk_recv(f, fd);
	fk_refill_reply(fd, r->seq, 3);
}

START_TEST(test_reconnect_new_slot)
{
	static tcache_t old, young;
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "60000", 1);
	proc_set_cache_hooks(&tc_hooks);
	fake_start(sc_new_slot);
	ck_assert_int_eq(connect_to(fk.path), 0);
	tcache_init(&old, 10, 2);
	proc_lock();
	proc_register_locked(&old.reg);
	proc_unlock();
	uint64_t e = proc_epoch();

	ck_assert_int_eq(refill(1, 1, NULL, 0), 2);
	ck_assert_uint_eq(proc_g.slot, FAKE_SLOT + 2);
	ck_assert_uint_eq(proc_epoch(), e + 1);
	tcache_init(&young, 30, 1);
	proc_lock();
	proc_register_locked(&young.reg);
	proc_unlock();

	atomic_store(&fk.go, 1);
	ck_assert_int_eq(refill(1, 1, NULL, 0), 3);
	ck_assert_uint_eq(proc_epoch(), e + 1); /* re-adopted this time */
	fake_join();
	/* seen: Hello, Refill, Hello (old slot, old spans), Refill, Hello, Refill */
	ck_assert_int_eq(fk.nseen, 6);
	const Heapd__Hello *h2 = fk.seen[2]->hello, *h3 = fk.seen[4]->hello;
	ck_assert_uint_eq(h2->prev_slot, FAKE_SLOT + 1);
	ck_assert_uint_eq(h2->n_held_spans, 2);
	ck_assert_uint_eq(h3->prev_slot, FAKE_SLOT + 3);
	ck_assert_uint_eq(h3->n_held_spans, 1); /* the old cache's spans are not the new slot's */
	ck_assert_uint_eq(h3->held_spans[0], 30);
}
END_TEST

static Suite *layers_suite(void)
{
	Suite *s = suite_create("client-layers");
	TCase *tc = tcase_create("proc");
	tcase_add_unchecked_fixture(tc, rundir_make, rundir_remove);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_proc_registry);
	tcase_add_test(tc, test_proc_slot_epoch);
	tcase_add_test(tc, test_proc_large_freeing);
	tcase_add_test(tc, test_proc_adopt_arena);
	tcase_add_test(tc, test_proc_fork_child);
	tcase_add_test(tc, test_proc_fork_hooks_race);
	suite_add_tcase(s, tc);

	tc = tcase_create("request");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_request_build);
	tcase_add_test(tc, test_request_hello);
	tcase_add_test(tc, test_request_new_connection);
	tcase_add_test(tc, test_request_done);
	tcase_add_test(tc, test_request_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("transport");
	tcase_add_unchecked_fixture(tc, rundir_make, rundir_remove);
	tcase_add_checked_fixture(tc, fake_setup, fake_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_hello_bad_replies);
	tcase_add_test(tc, test_seq_mismatch);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_eof_mid_frame);
	tcase_add_test(tc, test_garbage_reply);
	tcase_add_test(tc, test_reconnect_timeout);
	tcase_add_test(tc, test_reconnect_backoff);
	tcase_add_test(tc, test_first_connect_no_daemon);
	tcase_add_test(tc, test_first_connect_daemon_restarting);
	tcase_add_test(tc, test_no_connect);
	tcase_add_test(tc, test_send_no_reply);
	tcase_add_test(tc, test_fork_child);
	tcase_add_test(tc, test_reconnect_new_slot);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(layers_suite);
