// SPDX-License-Identifier: MIT
/*
 * test_roots.c - named roots end to end: a real heapd on a temporary
 * socket, real client processes, and heapctl.
 *
 *   api       binding, lookup, replace, removal, cas, names, objects that
 *             may not be bound, large objects, the counts;
 *   procs     no dangling names (a rooted object freed by its owner or by
 *             another process is not handed out again until it is unbound),
 *             cas against another process's fresh binding, a counter
 *             incremented by cas from several processes, hc_root_wait (and
 *             across a restart of heapd), a process binding and unbinding
 *             as fast as it can while another gets its work done;
 *   limits    100,000 bindings from one client against the capacity, and
 *             against --uid-max-roots; a small directory whose index is
 *             rebuilt again and again under a reader;
 *   wire      hostile requests on the raw protocol: bad names (NUL, empty,
 *             256 and 100,000 bytes), bad objects, a connection without a
 *             slot, a request sent twice;
 *   heapctl   roots (names escaped, JSON, a prefix), stats, check.
 *
 * ROOTS_COUNTER_K and ROOTS_HAMMER_OPS scale the counter and the hammer
 * test (the long runs set them higher).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/child.h"
#include "harness/util.h"
#include "harness/view.h"
#include "harness/raw.h"
#include "sock.h"
#include "heapclient.h"
#include "roots.h"
#include "sizeclass.h"

#define MIB (1024 * 1024)

/* ---- helpers ---- */

/* Start heapd with extra arguments (NULL-terminated, NULL for none) and point the library at it. */
static void start_daemon(const char *const *extra)
{
	hd_init(&hd_default);
	for (int i = 0; extra && extra[i] && i < 15; i++)
		hd_default.extra[i] = extra[i];
	int rc = hd_start(&hd_default);
	ck_assert_msg(rc == 0, "heapd did not start (%s); log in %s", strerror(-rc), hd_default.log);
	setenv("HEAPD_SOCKET", hd_default.sock, 1);
}

static void daemon_up(void)
{
	start_daemon(NULL);
}

static void daemon_down(void)
{
	hd_default_stop();
}

static void *shared_map(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

/* Sleep a little while a condition is polled (never a timed assertion). */
/* The daemon's Stats, through a control connection; the reply is freed by the caller via *owner. */
static Heapd__StatsReply *stats(Heapd__Envelope **owner)
{
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, owner);
	ck_assert_ptr_nonnull(st);
	return st;
}

static uint64_t roots_bound(void)
{
	Heapd__Envelope *owner = NULL;
	uint64_t n = stats(&owner)->roots;
	wire_free(owner);
	return n;
}

static int read_proc(pid_t pid, const char *what, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

/* 1 when process pid sleeps on a futex (or, where wchan says nothing, sleeps at all). */
static int sleeping(pid_t pid)
{
	char buf[512];
	if (read_proc(pid, "wchan", buf, sizeof(buf)) == 0 && buf[0] && strcmp(buf, "0") != 0)
		return strstr(buf, "futex") != NULL;
	if (read_proc(pid, "stat", buf, sizeof(buf)) < 0)
		return 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

static void wait_sleeping(pid_t pid)
{
	ck_assert_msg(hutil_wait_until(sleeping(pid), 30000), "process %d never went to sleep",
	              (int)pid);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, NULL, 10) : dflt;
}

/* ---- api ---- */

START_TEST(test_bind_lookup_replace_remove)
{
	char *a = hc_malloc(40), *b = hc_malloc(100), *big = hc_malloc(100000);
	ck_assert(a && b && big);

	ck_assert_int_eq(hc_root_set("alpha", a), 0);
	ck_assert_ptr_eq(hc_root_get("alpha"), a);
	errno = 0;
	ck_assert_ptr_null(hc_root_get("beta"));
	ck_assert_int_eq(errno, ENOENT);

	/* replace, one object under two names, a large object */
	ck_assert_int_eq(hc_root_set("alpha", b), 0);
	ck_assert_ptr_eq(hc_root_get("alpha"), b);
	ck_assert_int_eq(hc_root_set("beta", b), 0);
	ck_assert_int_eq(hc_root_set("big", big), 0);
	ck_assert_ptr_eq(hc_root_get("beta"), b);
	ck_assert_ptr_eq(hc_root_get("big"), big);
	ck_assert_int_eq(hc_root_set("alpha", b), 0); /* the same binding again: no change */
	ck_assert_uint_eq(roots_bound(), 3);

	/* removal, twice */
	ck_assert_int_eq(hc_root_set("alpha", NULL), 0);
	errno = 0;
	ck_assert_ptr_null(hc_root_get("alpha"));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(hc_root_set("alpha", NULL), 0);
	ck_assert_ptr_eq(hc_root_get("beta"), b); /* the other name keeps the object */
	ck_assert_uint_eq(roots_bound(), 2);

	/* a name bound again after its removal, many times over: no tombstones pile up */
	for (int i = 0; i < 20000; i++) {
		ck_assert_int_eq(hc_root_set("again", (i & 1) ? a : b), 0);
		ck_assert_int_eq(hc_root_set("again", NULL), 0);
	}
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);

	ck_assert_int_eq(hc_root_set("beta", NULL), 0);
	ck_assert_int_eq(hc_root_set("big", NULL), 0);
	ck_assert_uint_eq(roots_bound(), 0);
	hc_free(a);
	hc_free(b);
	hc_free(big);
	hc_disconnect();
	ck_assert_msg(hctl_settle(hd_default.sock, 100), "%llu objects in use", (unsigned long long)hctl_objects_in_use(hd_default.sock));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_cas)
{
	char *a = hc_malloc(16), *b = hc_malloc(16);

	ck_assert_int_eq(hc_root_cas("c", NULL, a), 0);          /* only if unbound: it was */
	ck_assert_int_eq(hc_root_cas("c", NULL, b), -EAGAIN);    /* it is not any more */
	ck_assert_int_eq(hc_root_cas("c", b, b), -EAGAIN);       /* bound to a, not b */
	ck_assert_ptr_eq(hc_root_get("c"), a);
	ck_assert_int_eq(hc_root_cas("c", a, b), 0);
	ck_assert_ptr_eq(hc_root_get("c"), b);
	ck_assert_int_eq(hc_root_cas("c", b, b), 0);             /* expected == desired: no change */
	ck_assert_int_eq(hc_root_cas("c", a, NULL), -EAGAIN);
	ck_assert_int_eq(hc_root_cas("c", b, NULL), 0);          /* removal */
	errno = 0;
	ck_assert_ptr_null(hc_root_get("c"));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(hc_root_cas("c", NULL, NULL), 0);       /* unbound, stays unbound */
	int on_stack;
	ck_assert_int_eq(hc_root_cas("c", &on_stack, a), -EINVAL); /* no binding could be to it */
	ck_assert_uint_eq(roots_bound(), 0);
	hc_free(a);
	hc_free(b);
}
END_TEST

START_TEST(test_names)
{
	char *a = hc_malloc(32);
	char name[300];

	/* any byte but NUL, compared exactly */
	const char *odd = "\xff\xfe\x80 not utf-8 \x01\x7f";
	ck_assert_int_eq(hc_root_set(odd, a), 0);
	ck_assert_ptr_eq(hc_root_get(odd), a);
	ck_assert_ptr_null(hc_root_get("\xff\xfe\x80 not utf-8 \x01"));
	ck_assert_int_eq(hc_root_set(odd, NULL), 0);

	memset(name, 'n', 255);
	name[255] = '\0';
	ck_assert_int_eq(hc_root_set(name, a), 0);
	ck_assert_ptr_eq(hc_root_get(name), a);
	name[254] = 'm'; /* differs in the last byte only */
	ck_assert_ptr_null(hc_root_get(name));
	name[254] = 'n';
	ck_assert_int_eq(hc_root_set(name, NULL), 0);

	memset(name, 'n', 256);
	name[256] = '\0';
	ck_assert_int_eq(hc_root_set(name, a), -ENAMETOOLONG);
	errno = 0;
	ck_assert_ptr_null(hc_root_get(name));
	ck_assert_int_eq(errno, ENAMETOOLONG);
	char *huge = malloc(100001);
	memset(huge, 'h', 100000);
	huge[100000] = '\0';
	ck_assert_int_eq(hc_root_set(huge, a), -ENAMETOOLONG);
	ck_assert_int_eq(hc_root_cas(huge, NULL, a), -ENAMETOOLONG);
	errno = 0;
	ck_assert_ptr_null(hc_root_wait(huge, 10));
	ck_assert_int_eq(errno, ENAMETOOLONG);
	free(huge);
	ck_assert_int_eq(hc_root_set("", a), -EINVAL);
	ck_assert_int_eq(hc_root_set(NULL, a), -EINVAL);
	errno = 0;
	ck_assert_ptr_null(hc_root_get(""));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(roots_bound(), 0);
	hc_free(a);
}
END_TEST

START_TEST(test_bad_objects)
{
	char *a = hc_malloc(64), *b = hc_malloc(64);
	int on_stack = 0;

	ck_assert_int_eq(hc_root_set("x", a + 8), -EINVAL);            /* interior */
	ck_assert_int_eq(hc_root_set("x", &on_stack), -EINVAL);        /* outside the arena */
	ck_assert_int_eq(hc_root_set("x", a - hc_ptr_to_off(a) + 4096), -EINVAL); /* metadata */
	hc_free(b);
	ck_assert_int_eq(hc_root_set("x", b), -EINVAL);                /* freed */
	ck_assert_int_eq(hc_root_cas("x", NULL, b), -EINVAL);
	/* a large object given back: its pages are a free span */
	char *big = hc_malloc(4 * MIB);
	ck_assert_ptr_nonnull(big);
	hc_free(big);
	ck_assert(hutil_wait_until(hc_usable_size(big) == 0, 5000));
	ck_assert_int_eq(hc_root_set("x", big), -EINVAL);
	ck_assert_int_eq(hc_root_set("x", big + 3 * MIB), -EINVAL);
	errno = 0;
	ck_assert_ptr_null(hc_root_get("x"));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_int_eq(hc_root_set("x", a), 0);
	ck_assert_int_eq(hc_root_set("x", NULL), 0);
	hc_free(a);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* A large object freed while it is bound keeps its pages until it is unbound. */
START_TEST(test_large_object_kept)
{
	char *big = hc_malloc(2 * MIB);
	ck_assert_ptr_nonnull(big);
	hutil_fill(big, 2 * MIB, 77);
	ck_assert_int_eq(hc_root_set("big", big), 0);
	uint64_t before = hctl_pages_in_use(hd_default.sock);
	hc_free(big); /* its LargeFree reaches heapd, which keeps it */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(hctl_sweep(hd_default.sock), 0);
	ck_assert_uint_eq(hctl_pages_in_use(hd_default.sock), before);
	ck_assert_ptr_eq(hc_root_get("big"), big);
	ck_assert(hutil_verify(big, 2 * MIB, 77));
	/* a new object of the same size does not get its pages */
	char *other = hc_malloc(2 * MIB);
	ck_assert_ptr_nonnull(other);
	ck_assert_ptr_ne(other, big);
	hc_free(other);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);

	ck_assert_int_eq(hc_root_set("big", NULL), 0);
	hc_disconnect();
	ck_assert_msg(hctl_settle(hd_default.sock, 100), "%llu pages in use", (unsigned long long)hctl_pages_in_use(hd_default.sock));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- procs ---- */

typedef struct watch {
	_Atomic int stop;
	_Atomic uint64_t lookups;
	_Atomic int bad;
} watch_t;

/* Child: look the name up until told to stop; it must always lead to the intact object. */
static int watch_root(watch_t *w, const char *name, void *want, size_t size, uint64_t seed)
{
	while (!atomic_load(&w->stop)) {
		char *p = hc_root_get(name);
		if (p != want || !hutil_verify(p, size, seed)) {
			atomic_store(&w->bad, 1);
			return 1;
		}
		atomic_fetch_add(&w->lookups, 1);
	}
	return 0;
}

/*
 * The object at x is rooted and freed; allocate n objects of its size a few
 * rounds over (each written with a pattern of its own) and check that x is
 * never among them.
 */
static void churn_around(char *x, size_t size, int rounds, int n)
{
	char **objs = malloc((size_t)n * sizeof(*objs));
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < n; i++) {
			objs[i] = hc_malloc(size);
			ck_assert_ptr_nonnull(objs[i]);
			ck_assert_msg(objs[i] != x, "the rooted object was handed out again (round %d)", r);
			memset(objs[i], 0xee, size);
		}
		for (int i = 0; i < n; i++)
			hc_free(objs[i]);
	}
	free(objs);
}

/* Allocate objects of size until one is x (1), or give up after n (0); frees what it took. */
static int reused(char *x, size_t size, int n)
{
	char **objs = malloc((size_t)n * sizeof(*objs));
	int found = 0, i;
	for (i = 0; i < n && !found; i++) {
		objs[i] = hc_malloc(size);
		found = objs[i] == x;
	}
	while (i-- > 0)
		hc_free(objs[i]);
	free(objs);
	return found;
}

enum { FREED_BY_OWNER, FREED_BY_OTHER, CLEARED_BY_OWNER };

static void no_dangling(int how)
{
	const size_t size = 64;
	watch_t *w = shared_map(sizeof(*w));
	char *x = hc_malloc(size);
	ck_assert_ptr_nonnull(x);
	hutil_fill(x, size, 4242);
	ck_assert_int_eq(hc_root_set("pinned", x), 0);

	pid_t watcher = fork();
	ck_assert_int_ge(watcher, 0);
	if (watcher == 0)
		_exit(watch_root(w, "pinned", x, size, 4242));
	if (how == FREED_BY_OWNER) {
		hc_free(x);
	} else if (how == CLEARED_BY_OWNER) {
		/*
		 * A hostile owner: its alloc bit cleared by a plain store into the
		 * bitmap (not through the library), and every span handed back.
		 */
		hview_t v;
		ck_assert_int_eq(hview_map(&v), 0);
		uint32_t span = hview_span_of(&v, x);
		ck_assert_uint_ne(span, HEAPD_NIL);
		uint64_t idx = (uint64_t)((const uint8_t *)x - (v.pages + ((uint64_t)span << HEAPD_PAGE_SHIFT))) / size;
		uint64_t *a = &v.bits[(uint64_t)span * HEAPD_BITS_WORDS_PER_PAGE + idx / 64];
		__atomic_and_fetch(a, ~(1ull << (idx % 64)), __ATOMIC_SEQ_CST);
		hc_disconnect();
		ck_assert_int_eq(hctl_sweep(hd_default.sock), 0);
	} else {
		pid_t freer = fork();
		ck_assert_int_ge(freer, 0);
		if (freer == 0) {
			hc_free(x); /* another process: its free bit, not the owner's direct clear */
			_exit(0);
		}
		ck_assert_int_eq(hchild_wait(freer), 0);
	}
	/* the freed object reads as freed (or, cleared, allocated again); the name leads to it, intact */
	if (how != CLEARED_BY_OWNER)
		ck_assert_uint_eq(hc_usable_size(x), 0);
	churn_around(x, size, 8, 20000);
	ck_assert(hutil_wait_until(atomic_load(&w->lookups) >= 1000 || atomic_load(&w->bad), 60000));
	atomic_store(&w->stop, 1);
	ck_assert_int_eq(hchild_wait(watcher), 0);
	ck_assert(!atomic_load(&w->bad));
	ck_assert(hutil_verify(x, size, 4242));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);

	/* unbound, its free completes: the slot is handed out again */
	if (how == CLEARED_BY_OWNER)
		hc_free(x); /* heapd set its alloc bit again: it is still an object to free */
	ck_assert_int_eq(hc_root_set("pinned", NULL), 0);
	ck_assert_msg(reused(x, size, 100000), "the unbound object's slot never came back");
	hc_disconnect();
	ck_assert_msg(hctl_settle(hd_default.sock, 100), "%llu objects in use", (unsigned long long)hctl_objects_in_use(hd_default.sock));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}

START_TEST(test_no_dangling_owner_frees)
{
	no_dangling(FREED_BY_OWNER);
}
END_TEST

START_TEST(test_no_dangling_other_frees)
{
	no_dangling(FREED_BY_OTHER);
}
END_TEST

START_TEST(test_no_dangling_owner_clears_bit)
{
	no_dangling(CLEARED_BY_OWNER);
}
END_TEST

/* B saw the binding to X; A replaces it with Y; B's cas from X fails, and B then sees Y. */
START_TEST(test_cas_against_replaced)
{
	int to_b[2], to_a[2];
	char *x = hc_malloc(24), *y = hc_malloc(24);
	ck_assert_int_eq(hc_root_set("shared", x), 0);
	ck_assert_int_eq(pipe(to_b), 0);
	ck_assert_int_eq(pipe(to_a), 0);

	pid_t b = fork();
	ck_assert_int_ge(b, 0);
	if (b == 0) {
		char go;
		char *seen = hc_root_get("shared");
		char *z = hc_malloc(24);
		int ok = seen == x;
		hutil_write_full(to_a[1], "1", 1);
		hutil_read_full(to_b[0], &go, 1); /* A has replaced it */
		ok = ok && hc_root_cas("shared", seen, z) == -EAGAIN;
		ok = ok && hc_root_get("shared") == y;
		ok = ok && hc_root_cas("shared", y, z) == 0;
		_exit(ok ? 0 : 1);
	}
	char c;
	ck_assert_int_eq(hutil_read_full(to_a[0], &c, 1), 0);
	ck_assert_int_eq(hc_root_set("shared", y), 0);
	ck_assert_int_eq(hutil_write_full(to_b[1], "1", 1), 0);
	ck_assert_int_eq(hchild_wait(b), 0);
	ck_assert_int_eq(hc_root_cas("shared", y, x), -EAGAIN); /* B bound its z */

	/* The object we saw, bound again after something else: another binding, no ABA. */
	char *seen = hc_root_get("shared");
	ck_assert_ptr_nonnull(seen);
	pid_t again = fork();
	ck_assert_int_ge(again, 0);
	if (again == 0)
		_exit(hc_root_set("shared", x) == 0 && hc_root_set("shared", seen) == 0 ? 0 : 1);
	ck_assert_int_eq(hchild_wait(again), 0);
	ck_assert_int_eq(hc_root_cas("shared", seen, y), -EAGAIN);
	ck_assert_ptr_eq(hc_root_get("shared"), seen); /* looked at afresh, it may go */
	ck_assert_int_eq(hc_root_cas("shared", seen, y), 0);
	ck_assert_int_eq(hc_root_set("shared", NULL), 0);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* Named roots under contention: N processes increment a counter K times each through hc_root_cas. */
typedef struct counter {
	uint64_t value;
	uint64_t check;  /* ~value: a torn or reused object shows */
} counter_t;

static int increment(int k)
{
	for (int i = 0; i < k; i++) {
		for (;;) {
			counter_t *old = hc_root_get("counter");
			if (!old)
				return 1;
			uint64_t value = old->value, check = old->check;
			if (check != ~value) {
				/*
				 * Replaced and freed since the get (a debug build fills
				 * a freed object at once): the name leads elsewhere now.
				 * An object the name still leads to must be intact.
				 */
				if (hc_root_get("counter") != old)
					continue;
				value = old->value;
				if (old->check != ~value)
					return 1;
			}
			counter_t *next = hc_malloc(sizeof(*next));
			if (!next)
				return 2;
			next->value = value + 1;
			next->check = ~next->value;
			int rc = hc_root_cas("counter", old, next);
			if (rc == 0) {
				hc_free(old);
				break;
			}
			hc_free(next);
			if (rc != -EAGAIN)
				return 3;
		}
	}
	hc_disconnect();
	return 0;
}

START_TEST(test_linearizable_counter)
{
	const int n = 4, k = (int)env_u64("ROOTS_COUNTER_K", 400);
	pid_t pids[16];

	counter_t *c = hc_malloc(sizeof(*c));
	c->value = 0;
	c->check = ~0ULL;
	ck_assert_int_eq(hc_root_set("counter", c), 0);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0)
			_exit(increment(k));
	}
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(hchild_wait(pids[i]), 0);
	counter_t *end = hc_root_get("counter");
	ck_assert_ptr_nonnull(end);
	ck_assert_uint_eq(end->value, (uint64_t)n * k);
	ck_assert_uint_eq(end->check, ~end->value);

	/* nothing leaked: the final counter is the one object left */
	ck_assert(hutil_wait_until((hctl_sweep(hd_default.sock), hctl_objects_in_use(hd_default.sock) == 1),
	                           5000));
	ck_assert_int_eq(hc_root_set("counter", NULL), 0);
	hc_free(end);
	hc_disconnect();
	ck_assert(hctl_settle(hd_default.sock, 100));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

START_TEST(test_wait)
{
	int to_parent[2];
	ck_assert_int_eq(pipe(to_parent), 0);
	char *obj = hc_malloc(48);
	hutil_fill(obj, 48, 9);

	errno = 0;
	ck_assert_ptr_null(hc_root_wait("later", 30));
	ck_assert_int_eq(errno, ETIMEDOUT);
	errno = 0;
	ck_assert_ptr_null(hc_root_wait("later", 0));
	ck_assert_int_eq(errno, ETIMEDOUT);

	pid_t waiter = fork();
	ck_assert_int_ge(waiter, 0);
	if (waiter == 0) {
		hc_connect(NULL);
		char *p = hc_root_wait("later", -1);
		uint64_t off = p && hutil_verify(p, 48, 9) ? hc_ptr_to_off(p) : 0;
		hutil_write_full(to_parent[1], &off, sizeof(off));
		_exit(0);
	}
	wait_sleeping(waiter);
	ck_assert_int_eq(hc_root_set("other name", obj), 0); /* wakes it, but not for its name */
	ck_assert_int_eq(hc_root_set("later", obj), 0);
	uint64_t got;
	ck_assert_int_eq(hutil_read_full(to_parent[0], &got, sizeof(got)), 0);
	ck_assert_uint_eq(got, hc_ptr_to_off(obj));
	ck_assert_int_eq(hchild_wait(waiter), 0);
	ck_assert_ptr_eq(hc_root_wait("later", 0), obj); /* bound: no wait at all */
	ck_assert_int_eq(hc_root_set("later", NULL), 0);
	ck_assert_int_eq(hc_root_set("other name", NULL), 0);
}
END_TEST

/* A waiter outlives a SIGKILL of heapd; the next heapd's bind wakes it. */
START_TEST(test_wait_rides_out_restart)
{
	int to_parent[2];
	ck_assert_int_eq(pipe(to_parent), 0);
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "30000", 1);
	ck_assert_int_eq(hc_connect(NULL), 0);

	pid_t waiter = fork();
	ck_assert_int_ge(waiter, 0);
	if (waiter == 0) {
		hc_connect(NULL);
		char *p = hc_root_wait("after restart", 60000);
		uint64_t off = p && hutil_verify(p, 100, 5) ? hc_ptr_to_off(p) : 0;
		hutil_write_full(to_parent[1], &off, sizeof(off));
		_exit(0);
	}
	wait_sleeping(waiter);
	hd_stop(&hd_default, SIGKILL);
	ck_assert_int_eq(hd_start(&hd_default), 0);
	/* the waiter may wake for the new heapd's start; it finds nothing and sleeps again */
	wait_sleeping(waiter);
	char *obj = hc_malloc(100); /* reconnects to the new heapd */
	ck_assert_ptr_nonnull(obj);
	hutil_fill(obj, 100, 5);
	ck_assert_int_eq(hc_root_set("after restart", obj), 0);
	uint64_t got;
	ck_assert_int_eq(hutil_read_full(to_parent[0], &got, sizeof(got)), 0);
	ck_assert_uint_eq(got, hc_ptr_to_off(obj));
	ck_assert_int_eq(hchild_wait(waiter), 0);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/*
 * A process binds and unbinds as fast as it can, a fixed number of times,
 * while another refills and changes roots in a loop. Progress, not speed:
 * the hammer notes the other's count after each slice of its operations,
 * and in every slice the other must have done a round for each
 * HAMMER_SHARE rounds of the hammer (3 requests each; a fair loop serves
 * about one of the other's 5-request rounds per hammer round). Counts, not
 * time, so a slow machine slows both alike.
 */
enum { HAMMER_SLICES = 8, HAMMER_SHARE = 16 };

typedef struct hammer {
	_Atomic int stop;                 /* the parent: the worker ends */
	_Atomic uint64_t work;            /* the worker's rounds (5 requests each) */
	uint64_t seen[HAMMER_SLICES + 1]; /* work when the hammer started, and after each slice */
} hammer_t;

START_TEST(test_hammer_does_not_starve)
{
	hammer_t *h = shared_map(sizeof(*h));
	const uint64_t rounds = env_u64("ROOTS_HAMMER_OPS", 24000) / 3 / HAMMER_SLICES * HAMMER_SLICES;
	const uint64_t slice = rounds / HAMMER_SLICES;
	ck_assert_uint_gt(slice, 0);

	pid_t worker = fork();
	ck_assert_int_ge(worker, 0);
	if (worker == 0) {
		char *obj = hc_malloc(64);
		for (uint64_t i = 0; !atomic_load(&h->stop); i++) {
			/* a refill each time: hand every span back, then allocate */
			if (hc_trim() < 0)
				_exit(1);
			void *p = hc_malloc(64 + (size_t)(i % 8) * 512);
			if (!p)
				_exit(2);
			hc_free(p);
			if (hc_root_set("worker", obj) || hc_root_set("worker", NULL))
				_exit(3);
			atomic_fetch_add(&h->work, 1);
		}
		_exit(0);
	}
	/* The hammer starts once the worker runs, and stops before it does. */
	ck_assert(hutil_wait_until(atomic_load(&h->work) > 0, 60000));
	pid_t hammer = fork();
	ck_assert_int_ge(hammer, 0);
	if (hammer == 0) {
		char *a = hc_malloc(32), *b = hc_malloc(32);
		h->seen[0] = atomic_load(&h->work);
		for (uint64_t done = 1; done <= rounds; done++) {
			if (hc_root_set("hammer", a) || hc_root_set("hammer", b) || hc_root_set("hammer", NULL))
				_exit(1);
			if (done % slice == 0)
				h->seen[done / slice] = atomic_load(&h->work);
		}
		_exit(0);
	}
	ck_assert_int_eq(hchild_wait(hammer), 0);
	atomic_store(&h->stop, 1);
	ck_assert_int_eq(hchild_wait(worker), 0);

	for (int i = 1; i <= HAMMER_SLICES; i++)
		ck_assert_msg(h->seen[i] - h->seen[i - 1] >= slice / HAMMER_SHARE,
		              "slice %d of the hammer's %d (%llu rounds each): the other process did %llu "
		              "rounds, want %llu at least", i, HAMMER_SLICES, (unsigned long long)slice,
		              (unsigned long long)(h->seen[i] - h->seen[i - 1]),
		              (unsigned long long)(slice / HAMMER_SHARE));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_100000_bindings)
{
	char name[32], *obj = hc_malloc(16);
	int bound = 0, full = 0;

	for (int i = 0; i < 100000; i++) {
		snprintf(name, sizeof(name), "name-%06d", i);
		int rc = hc_root_set(name, obj);
		if (rc == 0)
			bound++;
		else if (rc == -ENOSPC)
			full++;
		else
			ck_abort_msg("binding %d: %s", i, strerror(-rc));
	}
	ck_assert_int_eq(bound, (int)ROOTS_DEFAULT_MAX);
	ck_assert_int_eq(full, 100000 - (int)ROOTS_DEFAULT_MAX);
	ck_assert_uint_eq(roots_bound(), ROOTS_DEFAULT_MAX);
	/* heapd is healthy, and lookups find every bound name */
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
	for (int i = 0; i < 100000; i += 997) {
		snprintf(name, sizeof(name), "name-%06d", i);
		ck_assert_ptr_eq(hc_root_get(name), i < (int)ROOTS_DEFAULT_MAX ? obj : NULL);
	}
	pid_t other = fork();
	if (other == 0) {
		char *p = hc_malloc(100);
		_exit(p && hc_root_set("name-000000", p) == 0 ? 0 : 1); /* a replace needs no room */
	}
	ck_assert_int_eq(hchild_wait(other), 0);
	/* room again once one goes */
	ck_assert_int_eq(hc_root_set("name-000001", NULL), 0);
	ck_assert_int_eq(hc_root_set("one more", obj), 0);
	ck_assert_int_eq(hc_root_set("and another", obj), -ENOSPC);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

static void daemon_up_capped(void)
{
	static const char *const extra[] = { "--uid-max-roots", "1000", NULL };
	start_daemon(extra);
}

START_TEST(test_uid_cap)
{
	char name[32], *obj = hc_malloc(16), *other = hc_malloc(16);

	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "mine-%d", i);
		ck_assert_int_eq(hc_root_set(name, obj), 0);
	}
	for (int i = 1000; i < 1100; i++) {
		snprintf(name, sizeof(name), "mine-%d", i);
		ck_assert_int_eq(hc_root_set(name, obj), -EDQUOT);
	}
	/* replacing one of the uid's own names takes nothing more */
	ck_assert_int_eq(hc_root_set("mine-0", other), 0);
	ck_assert_int_eq(hc_root_cas("mine-1", obj, other), 0);
	ck_assert_int_eq(hc_root_set("mine-0", NULL), 0);
	ck_assert_int_eq(hc_root_set("mine-1000", obj), 0);
	ck_assert_int_eq(hc_root_set("mine-1001", obj), -EDQUOT);
	ck_assert_uint_eq(roots_bound(), 1000);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

static void daemon_up_small(void)
{
	static const char *const extra[] = { "--max-roots", "64", NULL };
	start_daemon(extra);
}

/*
 * Binds and unbinds of ever new names leave tombstones in the index, which
 * heapd clears by rebuilding it behind the lookups' backs: a process looking
 * names up all the while finds each one bound that must be.
 */
START_TEST(test_index_rebuilds)
{
	watch_t *w = shared_map(sizeof(*w));
	char name[32], *obj = hc_malloc(16);
	ck_assert_int_eq(hc_root_set("steady", obj), 0);

	pid_t reader = fork();
	ck_assert_int_ge(reader, 0);
	if (reader == 0)
		_exit(watch_root(w, "steady", obj, 0, 0));
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "churn-%d", i);
		ck_assert_int_eq(hc_root_set(name, obj), 0);
		if (i >= 40) { /* keep 40 bound, and the directory nearly full */
			snprintf(name, sizeof(name), "churn-%d", i - 40);
			ck_assert_int_eq(hc_root_set(name, NULL), 0);
		}
	}
	atomic_store(&w->stop, 1);
	ck_assert_int_eq(hchild_wait(reader), 0);
	ck_assert_uint_gt(atomic_load(&w->lookups), 0);
	for (int i = 2960; i < 3000; i++) {
		snprintf(name, sizeof(name), "churn-%d", i);
		ck_assert_ptr_eq(hc_root_get(name), obj);
	}
	ck_assert_ptr_null(hc_root_get("churn-2959"));
	/* 41 bound of 64: 23 more, then the directory is full */
	for (int i = 0; i < 23; i++) {
		snprintf(name, sizeof(name), "fill-%d", i);
		ck_assert_int_eq(hc_root_set(name, obj), 0);
	}
	ck_assert_int_eq(hc_root_set("one too many", obj), -ENOSPC);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- wire ---- */

/* A RootSet or RootCas on fd; the reply's Error code, 0 for Ok, -1 for anything else. */
static int wire_root(int fd, const void *name, size_t len, int cas, uint64_t expected,
                     uint64_t off, uint64_t token, int *fatal)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__RootSet set = HEAPD__ROOT_SET__INIT;
	Heapd__RootCas rc = HEAPD__ROOT_CAS__INIT;
	int code = -1;

	if (cas) {
		rc.name.data = (uint8_t *)name;
		rc.name.len = len;
		rc.expected = expected;
		rc.desired = off;
		rc.token = token;
		env.msg_case = HEAPD__ENVELOPE__MSG_ROOT_CAS;
		env.root_cas = &rc;
	} else {
		set.name.data = (uint8_t *)name;
		set.name.len = len;
		set.off = off;
		set.token = token;
		env.msg_case = HEAPD__ENVELOPE__MSG_ROOT_SET;
		env.root_set = &set;
	}
	static uint64_t seq = 100;
	env.seq = ++seq;
	if (fatal)
		*fatal = 0;
	if (wire_call(fd, &env, &reply, NULL) < 0)
		return -1;
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_OK)
		code = 0;
	else if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR) {
		code = reply->error->code;
		if (fatal)
			*fatal = reply->error->fatal;
	}
	wire_free(reply);
	return code;
}

#define WIRE_CLASS 4u

/* An object of our own: a span of WIRE_CLASS from a refill, with its object 0 marked allocated. */
static uint64_t wire_object(hraw_t *c, uint32_t k, uint32_t *span)
{
	Heapd__Envelope *reply = NULL;
	ck_assert_int_eq(hraw_refill(c->fd, k, 1, NULL, 0, &reply), 0);
	ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_REFILL_REPLY);
	*span = reply->refill_reply->spans[0]->span;
	wire_free(reply);
	bitmap_store(segment_allocbits(&c->seg, *span), 1);
	return c->seg.hdr->pages_off + ((uint64_t)*span << HEAPD_PAGE_SHIFT);
}

START_TEST(test_wire_bad_names)
{
	hraw_t c;
	uint32_t span;
	int fatal;
	char *big = malloc(100000);

	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	uint64_t obj = wire_object(&c, WIRE_CLASS, &span);
	memset(big, 'b', 100000);
	ck_assert_int_eq(wire_root(c.fd, "a\0b", 3, 0, 0, obj, 1, &fatal), EINVAL);
	ck_assert(!fatal);
	ck_assert_int_eq(wire_root(c.fd, "", 0, 0, 0, obj, 2, NULL), EINVAL);
	ck_assert_int_eq(wire_root(c.fd, big, 256, 0, 0, obj, 3, NULL), ENAMETOOLONG);
	ck_assert_int_eq(wire_root(c.fd, big, 100000, 1, 0, obj, 4, NULL), ENAMETOOLONG);
	ck_assert_int_eq(wire_root(c.fd, "\xc3\x28\xff", 3, 0, 0, obj, 5, NULL), 0); /* not UTF-8: fine */
	ck_assert_int_eq(wire_root(c.fd, big, 255, 0, 0, obj, 6, NULL), 0);
	/* the connection is still good, and nothing half done is left */
	ck_assert_int_eq(wire_root(c.fd, "\xc3\x28\xff", 3, 0, 0, 0, 7, NULL), 0);
	ck_assert_int_eq(wire_root(c.fd, big, 255, 0, 0, 0, 8, NULL), 0);
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
	free(big);
	hraw_close(&c);
}
END_TEST

START_TEST(test_wire_bad_objects)
{
	hraw_t c;
	uint32_t span;

	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	uint64_t obj = wire_object(&c, WIRE_CLASS, &span);
	const shm_header_t *hdr = c.seg.hdr;
	uint64_t size = sizeclass_size[WIRE_CLASS];
	uint32_t nelems = sizeclass_nelems[WIRE_CLASS];
	uint64_t bad[] = {
		obj + 8,                                  /* interior */
		obj + size,                               /* a slot never allocated */
		1,                                        /* the header */
		hdr->spans_off,                           /* the span table */
		hdr->pages_off - 8,                       /* the bitmaps */
		hdr->map_size + 4096,                     /* past the arena */
		UINT64_MAX,
		hdr->pages_off + ((uint64_t)(hdr->npages_max - 1) << HEAPD_PAGE_SHIFT), /* ungrown pages */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(wire_root(c.fd, "n", 1, 0, 0, bad[i], 10 + i, NULL) == EINVAL,
		              "offset %llu was not refused", (unsigned long long)bad[i]);
	/* a freed object: our alloc bit with its free bit set */
	bitmap_store(segment_freebits(&c.seg, span, nelems), 1);
	ck_assert_int_eq(wire_root(c.fd, "n", 1, 0, 0, obj, 30, NULL), EINVAL);
	bitmap_store(segment_freebits(&c.seg, span, nelems), 0);
	ck_assert_int_eq(wire_root(c.fd, "n", 1, 0, 0, obj, 31, NULL), 0);
	ck_assert_int_eq(wire_root(c.fd, "n", 1, 1, obj + size, 0, 32, NULL), EAGAIN);
	ck_assert_int_eq(wire_root(c.fd, "n", 1, 1, obj, 0, 33, NULL), 0);
	ck_assert_uint_eq(roots_bound(), 0);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
	hraw_close(&c);
}
END_TEST

START_TEST(test_wire_control_refused)
{
	int fatal;
	int fd = hctl_open(hd_default.sock);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(wire_root(fd, "ctl", 3, 0, 0, 12345, 1, &fatal), EPERM);
	ck_assert(fatal);
	ck_assert(hraw_closed(fd, 5000));
	close(fd);
	fd = hctl_open(hd_default.sock);
	ck_assert_int_eq(wire_root(fd, "ctl", 3, 1, 0, 12345, 2, &fatal), EPERM);
	ck_assert(fatal);
	close(fd);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* A change sent again with its token takes effect once; a new token is a new change. */
START_TEST(test_wire_resend_once)
{
	hraw_t c;
	uint32_t span;

	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	uint64_t obj = wire_object(&c, WIRE_CLASS, &span);
	ck_assert_int_eq(wire_root(c.fd, "once", 4, 1, 0, obj, 777, NULL), 0);
	ck_assert_int_eq(wire_root(c.fd, "once", 4, 1, 0, obj, 777, NULL), 0);   /* the same one */
	ck_assert_int_eq(wire_root(c.fd, "once", 4, 1, 0, obj, 778, NULL), EAGAIN); /* a new one */
	/* over a new connection of the same process, after the reply was "lost" */
	uint32_t slot = c.slot;
	ck_assert_int_eq(wire_root(c.fd, "once", 4, 1, obj, 0, 779, NULL), 0);
	close(c.fd);
	c.fd = -1;
	hraw_t again;
	ck_assert_int_eq(hraw_hello_again(hd_default.sock, &again, slot + 1, &span, 1), 0);
	ck_assert_uint_eq(again.slot, slot);
	ck_assert_int_eq(wire_root(again.fd, "once", 4, 1, obj, 0, 779, NULL), 0);
	ck_assert_int_eq(wire_root(again.fd, "once", 4, 1, obj, 0, 780, NULL), EAGAIN);
	ck_assert_uint_eq(roots_bound(), 0);
	hraw_close(&again);
	hraw_close(&c);
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- heapctl ---- */

static void heapctl(hchild_run_t *r, const char *a1, const char *a2, const char *a3)
{
	const char *argv[] = { getenv("HEAPCTL_BIN"), "--socket", hd_default.sock, a1, a2, a3, NULL };
	ck_assert_ptr_nonnull(argv[0]);
	ck_assert_int_eq(hchild_run(r, 60000, argv), 0);
}

START_TEST(test_heapctl_roots)
{
	hchild_run_t r;
	char *a = hc_malloc(40), *b = hc_malloc(70000);

	ck_assert_int_eq(hc_root_set("app/config", a), 0);
	ck_assert_int_eq(hc_root_set("app/\x1b[31mred\\\xff", b), 0);
	ck_assert_int_eq(hc_root_set("other", a), 0);

	heapctl(&r, "roots", NULL, NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_eq(hchild_count_lines(r.out), 4);
	ck_assert_ptr_nonnull(strstr(r.out, "app/config"));
	ck_assert_ptr_nonnull(strstr(r.out, "app/\\x1b[31mred\\\\\\xff")); /* no raw escape reaches a terminal */
	ck_assert_ptr_null(strchr(r.out, '\x1b'));
	char off[32];
	snprintf(off, sizeof(off), "%llu", (unsigned long long)hc_ptr_to_off(b));
	ck_assert_ptr_nonnull(strstr(r.out, off));
	ck_assert(strstr(r.out, "app/config") < strstr(r.out, "other")); /* sorted by name */
	hchild_run_free(&r);

	heapctl(&r, "roots", "--json", "app/");
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "\"name\": \"app/config\""));
	ck_assert_ptr_nonnull(strstr(r.out, "\"name\": \"app/\\u001b[31mred\\\\\\u00ff\""));
	ck_assert_ptr_nonnull(strstr(r.out, "\"name_hex\": \"6170702f1b5b33316d7265645cff\""));
	ck_assert_ptr_null(strstr(r.out, "other"));
	ck_assert_ptr_nonnull(strstr(r.out, "\"pid\": "));
	hchild_run_free(&r);

	heapctl(&r, "stats", NULL, NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "roots"));
	ck_assert_ptr_nonnull(strstr(r.out, "of 65536"));
	hchild_run_free(&r);
	heapctl(&r, "check", NULL, NULL);
	ck_assert_int_eq(r.status, 0);
	hchild_run_free(&r);
	heapctl(&r, "roots", "a", "b");
	ck_assert_int_eq(r.status, 2);
	hchild_run_free(&r);
}
END_TEST

/* More names than one reply holds come in pieces, all of them. */
START_TEST(test_heapctl_many_roots)
{
	hchild_run_t r;
	char name[32], *a = hc_malloc(8);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "n%04d", i);
		ck_assert_int_eq(hc_root_set(name, a), 0);
	}
	heapctl(&r, "roots", NULL, NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_uint_eq(hchild_count_lines(r.out), 1001);
	ck_assert_ptr_nonnull(strstr(r.out, "n0000\n"));
	ck_assert_ptr_nonnull(strstr(r.out, "n0999\n"));
	hchild_run_free(&r);
	heapctl(&r, "roots", "n09", NULL);
	ck_assert_uint_eq(hchild_count_lines(r.out), 101);
	hchild_run_free(&r);
}
END_TEST

static Suite *roots_suite(void)
{
	Suite *s = suite_create("roots");
	TCase *tc = tcase_create("api");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_bind_lookup_replace_remove);
	tcase_add_test(tc, test_cas);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_bad_objects);
	tcase_add_test(tc, test_large_object_kept);
	suite_add_tcase(s, tc);

	tc = tcase_create("procs");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_no_dangling_owner_frees);
	tcase_add_test(tc, test_no_dangling_other_frees);
	tcase_add_test(tc, test_no_dangling_owner_clears_bit);
	tcase_add_test(tc, test_cas_against_replaced);
	tcase_add_test(tc, test_linearizable_counter);
	tcase_add_test(tc, test_wait);
	tcase_add_test(tc, test_wait_rides_out_restart);
	tcase_add_test(tc, test_hammer_does_not_starve);
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_100000_bindings);
	suite_add_tcase(s, tc);
	tc = tcase_create("small");
	tcase_add_checked_fixture(tc, daemon_up_small, daemon_down);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_index_rebuilds);
	suite_add_tcase(s, tc);
	tc = tcase_create("uid_cap");
	tcase_add_checked_fixture(tc, daemon_up_capped, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_uid_cap);
	suite_add_tcase(s, tc);

	tc = tcase_create("wire");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_wire_bad_names);
	tcase_add_test(tc, test_wire_bad_objects);
	tcase_add_test(tc, test_wire_control_refused);
	tcase_add_test(tc, test_wire_resend_once);
	suite_add_tcase(s, tc);

	tc = tcase_create("heapctl");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_heapctl_roots);
	tcase_add_test(tc, test_heapctl_many_roots);
	suite_add_tcase(s, tc);

	return s;
}

TEST_SUITES(roots_suite);
