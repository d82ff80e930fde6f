// SPDX-License-Identifier: MIT
/*
 * hostile_limits.c - what one client, one process or one user can take,
 * and what a flood of requests costs everyone else:
 *   - --client-quota counts everything a client's allocations occupy, so
 *     trimming between batches does not get around it; --uid-quota counts a
 *     user's processes together, the exited ones included;
 *   - a process has one connected slot, and --max-clients-per-uid bounds a
 *     user's slots; a process that reconnects without naming its slot does
 *     not pile up slots either;
 *   - connections that never say Hello are closed after --hello-timeout,
 *     and when another user's idle connections fill the connection limits,
 *     root (heapctl) still gets in; a connection that said Bye stops
 *     counting against them;
 *   - floods of Sweep, Scavenge and Check requests share runs, and a client's
 *     refill is answered meanwhile; refills at a full arena do not each run
 *     a sweep cycle;
 *   - malformed, oversized and nonsensical input gets an Error or is
 *     ignored, and costs no other process anything.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bitmap.h"
#include "harness/child.h"
#include "harness/ctl.h"
#include "harness/heapd.h"
#include "harness/raw.h"
#include "harness/util.h"
#include "harness/view.h"
#include "heapclient.h"
#include "hostile_suites.h"
#include "sock.h"
#include "wire.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* ---- quotas ---- */

/*
 * 1 KiB objects until an allocation fails or cap bytes are live, handing
 * the cache back every trim_every objects (0: never). The live bytes; the
 * failure's errno in *err (0 if none). Nothing is freed.
 */
static size_t fill(size_t cap, int trim_every, int *err, void **keep, size_t nkeep)
{
	size_t live = 0, n = 0;
	*err = 0;
	while (live < cap) {
		errno = 0;
		void *p = hc_malloc(KIB);
		if (!p) {
			*err = errno;
			break;
		}
		memset(p, 0x3c, KIB);
		if (n < nkeep)
			keep[n] = p;
		n++;
		live += KIB;
		if (trim_every && n % (size_t)trim_every == 0)
			hc_trim(); /* the full spans go back; their objects stay this client's */
	}
	return live;
}

static int quota_refused(int err)
{
	return err == EDQUOT || err == ENOMEM;
}

enum { QT_HELD = 0, QT_GO };
enum { QT_LIVE = 0 };
#define QT_CAP (8 * MIB)
#define QT_BOUND (2 * MIB) /* live bytes a 1 MiB quota may let through: itself plus slack */

/* hc_malloc(size); NULL after asking heapd to sweep, for what it holds may have room. */
static void *malloc_or_sweep(size_t size)
{
	void *p = hc_malloc(size);
	if (!p)
		hctl_sweep(hd_default.sock);
	return p;
}

static int quota_trimmer(void *arg)
{
	static void *objs[QT_CAP / KIB];
	int err;
	(void)arg;

	size_t live = fill(QT_CAP, 64, &err, objs, QT_CAP / KIB);
	if (!err)
		hchild_fail("%zu KiB live under a 1 MiB client quota, trimming after every 64 objects",
		            live / KIB);
	if (!quota_refused(err))
		hchild_fail("hc_malloc past the quota failed with %s, not EDQUOT", strerror(err));
	if (live >= QT_BOUND || live < MIB / 2)
		hchild_fail("%zu KiB live at the first refusal under a 1 MiB client quota", live / KIB);
	atomic_store(&hchild_sync->val[QT_LIVE], (int64_t)live);
	atomic_store(&hchild_sync->step[QT_HELD], 1);
	if (!hchild_wait_at_least(&hchild_sync->step[QT_GO], 1, HCHILD_WAIT_MS))
		hchild_fail("no word to go on");

	/* Freeing everything makes room again (once heapd has swept what it holds). */
	for (size_t i = 0; i < live / KIB; i++)
		hc_free(objs[i]);
	hc_trim();
	if (!hutil_wait_until(malloc_or_sweep(512 * KIB) != NULL, HCHILD_WAIT_MS))
		hchild_fail("after freeing everything, hc_malloc(512 KiB) still fails: %s", strerror(errno));
	return 0;
}

static int quota_bystander(void *arg)
{
	(void)arg;
	void *big = hc_malloc(900 * KIB);
	if (!big)
		hchild_fail("another client's hc_malloc(900 KiB): %s", strerror(errno));
	hc_free(big);
	for (int i = 0; i < 1000; i++) {
		void *p = hc_malloc(1 + (size_t)i % 2000);
		if (!p)
			hchild_fail("another client's hc_malloc: %s", strerror(errno));
		hc_free(p);
	}
	return 0;
}

START_TEST(test_client_quota_with_trim)
{
	hctl_client_t cl[16];

	hchild_sync_init();
	hd_default_start("64M", "--client-quota", "1M", NULL);
	pid_t q = hchild_spawn(quota_trimmer, NULL);
	hchild_expect_step(&hchild_sync->step[QT_HELD], 1, 3 * HCHILD_WAIT_MS, q,
	                   "the client filling its quota");
	/* heapd's books agree: the slot is charged at most the quota */
	int n = hctl_clients(hd_default.sock, cl, 16);
	int found = 0;
	for (int i = 0; i < n && i < 16; i++) {
		if (cl[i].pid != (uint32_t)q)
			continue;
		found = 1;
		ck_assert_msg(cl[i].pages_held * HEAPD_PAGE_SIZE <= MIB,
		              "slot %u is charged %llu pages under a 1 MiB quota", cl[i].slot,
		              (unsigned long long)cl[i].pages_held);
	}
	ck_assert(found);
	hchild_expect_ok(hchild_spawn(quota_bystander, NULL), "another client under its own quota");
	atomic_store(&hchild_sync->step[QT_GO], 1);
	hchild_expect_ok(q, "the client trimming between batches");
	ck_assert(hd_log_contains(&hd_default, "quota"));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* Fill the quota, then disconnect (Bye) and connect again, three times over. */
static int quota_reconnector(void *arg)
{
	static void *objs[QT_CAP / KIB];
	size_t live = 0;
	int err;
	(void)arg;

	for (int round = 0; round < 3; round++) {
		live += fill(QT_CAP, 64, &err, objs, QT_CAP / KIB);
		if (!quota_refused(err))
			hchild_fail("round %d: hc_malloc past the quota failed with %s, not EDQUOT", round,
			            err ? strerror(err) : "nothing");
		if (live >= QT_BOUND)
			hchild_fail("%zu KiB live under a 1 MiB client quota after %d Bye and Hello", live / KIB,
			            round);
		hc_disconnect();
		int rc = hc_connect(hd_default.sock);
		if (rc < 0)
			hchild_fail("hc_connect after hc_disconnect: %s", strerror(-rc));
	}
	return 0;
}

START_TEST(test_client_quota_across_bye)
{
	hchild_sync_init();
	hd_default_start("64M", "--client-quota", "1M", NULL);
	hchild_expect_ok(hchild_spawn(quota_reconnector, NULL),
	                 "a client that says Bye and Hello again between batches");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/*
 * Recovery's books: a large object whose free bit was set but whose
 * LargeFree heapd never saw is freed by recovery; that must not take pages
 * the rebuilt books never counted off them, or the client gets more room.
 */
enum { RQ_READY = 0, RQ_RESTARTED };

/* A large object of size bytes; its span, or fails the child. */
static uint32_t raw_large(int fd, uint64_t size)
{
	Heapd__Envelope *reply = NULL;
	int rc = hraw_large_alloc(fd, size, 0, 0, &reply);
	if (rc < 0 || !reply || reply->msg_case != HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY)
		hchild_fail("LargeAlloc of %llu bytes: %s", (unsigned long long)size,
		            rc < 0 ? strerror(-rc) : "no LargeAllocReply");
	uint32_t span = reply->large_alloc_reply->span;
	wire_free(reply);
	return span;
}

static int recovery_quota_client(void *arg)
{
	hraw_t c, again;
	(void)arg;

	int rc = hraw_hello(hd_default.sock, &c);
	if (rc < 0)
		hchild_fail("Hello: %s", strerror(-rc));
	raw_large(c.fd, 512 * KIB);                /* kept */
	uint32_t b = raw_large(c.fd, 256 * KIB);   /* freed without a LargeFree */
	raw_large(c.fd, 64 * KIB);                 /* its reply settles b */
	bitmap_store(segment_freebits(&c.seg, b, 1), 1);
	atomic_store(&hchild_sync->step[RQ_READY], 1);
	if (!hchild_wait_at_least(&hchild_sync->step[RQ_RESTARTED], 1, 3 * HCHILD_WAIT_MS))
		hchild_fail("heapd was not restarted");
	hraw_close(&c);
	rc = hraw_hello_again(hd_default.sock, &again, c.slot + 1, NULL, 0);
	if (rc < 0)
		hchild_fail("Hello after the restart: %s", strerror(-rc));
	/* 512 KiB are still live: no more than 512 KiB more under a 1 MiB quota */
	uint64_t more = 0;
	for (;;) {
		Heapd__Envelope *reply = NULL;
		rc = hraw_large_alloc(again.fd, 64 * KIB, 0, 0, &reply);
		int code = rc < 0 ? -rc : hraw_error_code(reply);
		wire_free(reply);
		if (code == EDQUOT)
			break;
		if (code)
			hchild_fail("LargeAlloc after the restart: %s", strerror(code));
		more += 64 * KIB;
		if (more > MIB)
			break;
	}
	if (512 * KIB + more > MIB)
		hchild_fail("%llu KiB live under a 1 MiB client quota after recovery freed a large object",
		            (unsigned long long)(512 * KIB + more) / KIB);
	hraw_close(&again);
	return 0;
}

START_TEST(test_client_quota_after_recovery)
{
	hchild_sync_init();
	hd_default_start("64M", "--client-quota", "1M", NULL);
	pid_t q = hchild_spawn(recovery_quota_client, NULL);
	hchild_expect_step(&hchild_sync->step[RQ_READY], 1, 2 * HCHILD_WAIT_MS, q,
	                   "the client with a large object freed and not told");
	hd_stop(&hd_default, SIGKILL);
	hd_default_restart();
	atomic_store(&hchild_sync->step[RQ_RESTARTED], 1);
	hchild_expect_ok(q, "the client filling its quota after recovery");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* What a process of the uid does: fill up to cap, expecting (or not) to be refused. */
typedef struct uq_arg {
	size_t cap;
	int nobody;
	int slot;      /* hchild_sync->val index for the live bytes */
} uq_arg_t;

static int uq_process(void *arg)
{
	const uq_arg_t *a = arg;
	int err;
	if (a->nobody && hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	size_t live = fill(a->cap, 0, &err, NULL, 0);
	if (err && !quota_refused(err))
		hchild_fail("hc_malloc failed with %s, not EDQUOT", strerror(err));
	atomic_store(&hchild_sync->val[a->slot], err ? (int64_t)live : -(int64_t)live - 1);
	return 0; /* exits with its objects allocated: they stay the uid's */
}

/* Run one uid process to its end; the live bytes it had when refused, or -1 - live if never. */
static int64_t uq_run(size_t cap, int nobody, int idx)
{
	uq_arg_t a = { .cap = cap, .nobody = nobody, .slot = idx };
	hchild_expect_ok(hchild_spawn(uq_process, &a), "a process under the uid quota");
	return atomic_load(&hchild_sync->val[idx]);
}

START_TEST(test_uid_quota_across_processes)
{
	hchild_sync_init();
	hd_default_start("64M", "--uid-quota", "2M", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	/* the first takes 1 MiB and exits with it allocated */
	int64_t first = uq_run(MIB, 0, 0);
	ck_assert_msg(first < 0, "the first process was refused at %lld KiB of a 2 MiB uid quota",
	              (long long)first / KIB);
	/* the second gets what is left: about 1 MiB */
	int64_t second = uq_run(4 * MIB, 0, 1);
	ck_assert_msg(second >= 0, "the second process got 4 MiB under a 2 MiB uid quota");
	ck_assert_msg(second >= (int64_t)(MIB / 2) && second <= (int64_t)(MIB + MIB / 2),
	              "the second process was refused at %lld KiB (1 MiB of 2 left)",
	              (long long)second / KIB);
	/* the third, after both exited, gets (nearly) nothing */
	int64_t third = uq_run(4 * MIB, 0, 2);
	ck_assert_msg(third >= 0 && third <= (int64_t)(256 * KIB),
	              "a third process got %lld KiB after two exited processes used the 2 MiB uid quota",
	              (long long)(third >= 0 ? third : -third - 1) / KIB);
	/* another user is not charged for them */
	int64_t other = uq_run(MIB, 1, 3);
	ck_assert_msg(other < 0, "uid %d was refused at %lld KiB", HCHILD_NOBODY, (long long)other / KIB);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- slots ---- */

/* In a child: wait until heapd has seen this process's connection close. */
static void wait_closed_seen(void)
{
	if (!hctl_wait_unconnected(hd_default.sock, getpid(), HCHILD_WAIT_MS))
		hchild_fail("heapd still lists a closed connection");
}

/* Slots listed for pid. */
static int slots_of(pid_t pid)
{
	hctl_client_t cl[64];
	int n = hctl_clients(hd_default.sock, cl, 64), k = 0;
	for (int i = 0; i < n && i < 64; i++)
		k += cl[i].pid == (uint32_t)pid;
	return k;
}

static int second_hello(void *arg)
{
	uint32_t s1, s3;
	(void)arg;
	int c1 = hraw_hello_fds(hd_default.sock, 0, &s1, NULL, NULL);
	if (c1 < 0)
		hchild_fail("the first Hello: %s", strerror(-c1));
	for (int i = 0; i < 3; i++) {
		int c2 = hraw_hello_fds(hd_default.sock, 0, NULL, NULL, NULL);
		if (c2 != -EBUSY)
			hchild_fail("Hello %d of a process whose slot is connected: %s, not EBUSY",
			            i + 2,
			            c2 < 0 ? strerror(-c2) : "a slot");
	}
	/* once its first connection has closed, a new one is the process's one connected slot */
	close(c1);
	wait_closed_seen();
	int c3 = hraw_hello_fds(hd_default.sock, 0, &s3, NULL, NULL);
	if (c3 < 0)
		hchild_fail("a Hello after the first connection closed: %s", strerror(-c3));
	int c4 = hraw_hello_fds(hd_default.sock, 0, NULL, NULL, NULL);
	if (c4 != -EBUSY)
		hchild_fail("a Hello while slot %u is connected (slot %u of the closed connection held): %s, "
		            "not EBUSY", s3, s1, c4 < 0 ? strerror(-c4) : "another slot");
	/* naming a slot that is not its own is no way to a second slot either */
	close(c3);
	wait_closed_seen();
	hraw_t c5, c6;
	int rc = hraw_hello_again(hd_default.sock, &c5, 0xffffffffu, NULL, 0);
	if (rc < 0)
		hchild_fail("a Hello naming slot 0xfffffffe: %s", strerror(-rc));
	if (c5.slot != s3)
		hchild_fail("a Hello naming a slot not its own got slot %u; its held slot is %u", c5.slot,
		            s3);
	rc = hraw_hello_again(hd_default.sock, &c6, c5.slot + 2, NULL, 0);
	if (rc != -EBUSY)
		hchild_fail("a Hello naming slot %u while slot %u is connected: %s, not EBUSY",
		            c5.slot + 1, c5.slot, rc < 0 ? strerror(-rc) : "another slot");
	if (slots_of(getpid()) != 1)
		hchild_fail("heapd lists %d slots for one process", slots_of(getpid()));
	hraw_close(&c5);
	return 0;
}

START_TEST(test_second_hello_busy)
{
	hchild_sync_init();
	hd_default_start("64M", "--max-clients", "8", NULL);
	hchild_expect_ok(hchild_spawn(second_hello, NULL), "a process saying Hello on several connections");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* A process that says Hello once and holds the slot until released. */
typedef struct holder {
	int idx;       /* val[idx]: the result (slot, or -errno); step[idx]: done; step[idx + 16]: release */
	int nobody;
} holder_t;

static int hold_slot(void *arg)
{
	const holder_t *h = arg;
	uint32_t slot = 0;
	if (h->nobody && hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	int c = hraw_hello_fds(hd_default.sock, 0, &slot, NULL, NULL);
	atomic_store(&hchild_sync->val[h->idx], c < 0 ? c : (int64_t)slot);
	atomic_store(&hchild_sync->step[h->idx], 1);
	if (!hchild_wait_at_least(&hchild_sync->step[h->idx + 16], 1, 3 * HCHILD_WAIT_MS))
		hchild_fail("holder %d was never released", h->idx);
	return 0;
}

static pid_t start_holder(holder_t *h, int64_t want_error)
{
	pid_t pid = hchild_spawn(hold_slot, h);
	hchild_expect_step(&hchild_sync->step[h->idx], 1, HCHILD_WAIT_MS, pid, "a slot holder");
	int64_t got = atomic_load(&hchild_sync->val[h->idx]);
	if (want_error)
		ck_assert_msg(got == want_error, "holder %d (uid %d): %lld, want -%s", h->idx,
		              h->nobody ? HCHILD_NOBODY : 0, (long long)got, strerror((int)-want_error));
	else
		ck_assert_msg(got >= 0, "holder %d (uid %d): no slot: %s", h->idx,
		              h->nobody ? HCHILD_NOBODY : 0, strerror((int)-got));
	return pid;
}

static void release_holder(holder_t *h, pid_t pid)
{
	atomic_store(&hchild_sync->step[h->idx + 16], 1);
	hchild_expect_ok(pid, "a slot holder");
}

START_TEST(test_slots_per_uid)
{
	holder_t h[7] = {
		{ 0, 0 }, { 1, 0 }, { 2, 0 }, { 3, 1 }, { 4, 1 }, { 5, 1 }, { 6, 0 },
	};
	pid_t pid[7];

	hchild_sync_init();
	hd_default_start("64M", "--max-clients", "4", "--max-clients-per-uid", "2", "--allow-uid",
	                 "65534", NULL);
	hd_open_up(&hd_default);
	pid[0] = start_holder(&h[0], 0);
	pid[1] = start_holder(&h[1], 0);
	pid[2] = start_holder(&h[2], -EUSERS); /* a third root process: over the uid's share */
	pid[3] = start_holder(&h[3], 0);       /* another user has a share of its own */
	pid[4] = start_holder(&h[4], 0);
	pid[5] = start_holder(&h[5], -EUSERS); /* every slot is taken */
	/* a process that exits gives its slot up */
	release_holder(&h[0], pid[0]);
	ck_assert_msg(hutil_wait_until(slots_of(pid[0]) == 0, 5000),
	              "the slot of an exited process is still listed");
	pid[6] = start_holder(&h[6], 0);
	for (int i = 1; i < 7; i++)
		release_holder(&h[i], pid[i]);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* Hello and hang up, again and again, never naming the slot it had. */
static int reconnect_without_slot(void *arg)
{
	int times = (int)(intptr_t)arg;
	for (int i = 0; i < times; i++) {
		uint32_t slot;
		int c = hraw_hello_fds(hd_default.sock, 0, &slot, NULL, NULL);
		if (c < 0)
			hchild_fail("Hello %d: %s", i + 1, strerror(-c));
		close(c);
		wait_closed_seen();
	}
	atomic_store(&hchild_sync->val[0], slots_of(getpid()));
	atomic_store(&hchild_sync->step[0], 1);
	if (!hchild_wait_at_least(&hchild_sync->step[1], 1, HCHILD_WAIT_MS))
		hchild_fail("no word to exit");
	return 0;
}

static int nobody_hello(void *arg)
{
	(void)arg;
	if (hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	int c = hraw_hello_fds(hd_default.sock, 0, NULL, NULL, NULL);
	if (c < 0)
		hchild_fail("another user's Hello: %s", strerror(-c));
	close(c);
	return 0;
}

START_TEST(test_held_slots_do_not_pile_up)
{
	hchild_sync_init();
	hd_default_start("64M", "--max-clients", "4", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	pid_t p = hchild_spawn(reconnect_without_slot, (void *)(intptr_t)4);
	hchild_expect_step(&hchild_sync->step[0], 1, 2 * HCHILD_WAIT_MS, p, "the reconnecting process");
	int64_t held = atomic_load(&hchild_sync->val[0]);
	/* another user's process still gets one of the 4 slots */
	pid_t n = hchild_spawn(nobody_hello, NULL);
	int st;
	ck_assert_int_eq(waitpid(n, &st, 0), n);
	atomic_store(&hchild_sync->step[1], 1);
	hchild_expect_ok(p, "the reconnecting process");
	ck_assert_msg(held <= 1, "one process that reconnected 4 times without naming its slot holds "
	                         "%lld slots of --max-clients 4", (long long)held);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s",
	              hchild_sync->failed ? hchild_sync->why : "another user's Hello failed");
}
END_TEST

/* ---- connections that never say Hello ---- */

enum { ID_SETTLED = 0, ID_CLOSED };
enum { ID_ACCEPTED = 0, ID_REFUSED, ID_CLOSE_MS };
#define ID_MAX 128

/* 1 if fd has something to read or is closed. */
static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

/* As nobody: open n connections, never say Hello, see which heapd keeps and when it closes them. */
static int idler(void *arg)
{
	int n = (int)(intptr_t)arg, fds[ID_MAX + 1], refused = 0;

	if (hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	for (int i = 0; i <= n; i++) {
		fds[i] = sock_connect(hd_default.sock);
		if (fds[i] < 0)
			hchild_fail("connection %d: %s", i, strerror(-fds[i]));
	}
	/*
	 * heapd answers a refused connection at once (an Error, then the close),
	 * and takes connections in the order they came: once the last one, past
	 * every limit, is answered, heapd has kept or refused each of the n.
	 */
	if (!hutil_wait_until(readable(fds[n]), HCHILD_WAIT_MS))
		hchild_fail("connection %d, past the limit, was not refused", n);
	for (int i = 0; i < n; i++)
		refused += readable(fds[i]);
	close(fds[n]);
	atomic_store(&hchild_sync->val[ID_ACCEPTED], n - refused);
	atomic_store(&hchild_sync->val[ID_REFUSED], refused);
	atomic_store(&hchild_sync->step[ID_SETTLED], 1);

	/* the ones it kept are closed when the Hello timeout passes */
	uint64_t t0 = heapd_now_ms();
	for (int i = 0; i < n; i++) {
		uint64_t now = heapd_now_ms(), end = t0 + HCHILD_WAIT_MS;
		if (!hraw_closed(fds[i], end > now ? (int)(end - now) : 0))
			hchild_fail("connection %d without a Hello was not closed", i);
	}
	atomic_store(&hchild_sync->val[ID_CLOSE_MS], (int64_t)(heapd_now_ms() - t0));
	atomic_store(&hchild_sync->step[ID_CLOSED], 1);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	/* and there is room again */
	int c = hctl_open(hd_default.sock);
	if (c < 0)
		hchild_fail("a control connection after the idle ones closed: %s", strerror(-c));
	close(c);
	return 0;
}

/* Root gets in while another user's idle connections fill a limit: control, heapctl, a client. */
static int root_client(void *arg)
{
	(void)arg;
	void *p = hc_malloc(100);
	if (!p)
		hchild_fail("root's hc_malloc while the connections are full: %s", strerror(errno));
	hc_free(p);
	return 0;
}

static void root_gets_in(const char *limit)
{
	hchild_run_t r;
	ck_assert_msg(hctl_check(hd_default.sock) >= 0, "root's control connection with %s filled", limit);
	hchild_run_heapctl(&r, HCHILD_WAIT_MS, "--socket", hd_default.sock, "stats", (const char *)NULL);
	ck_assert_msg(r.status == 0, "heapctl stats with %s filled: status %d: %s%s", limit,
	              r.status,
	              r.out, r.err);
	hchild_run_free(&r);
	hchild_expect_ok(hchild_spawn(root_client, NULL), "a root client");
}

START_TEST(test_idle_connections)
{
	/* The global limit: --max-clients 4 admits 4 + 64 connections; root has a reserve. */
	hchild_sync_init();
	hd_default_start("16M", "--max-clients", "4", "--max-connections-per-uid", "1000",
	                 "--hello-timeout", "3", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	pid_t p = hchild_spawn(idler, (void *)(intptr_t)100);
	hchild_expect_step(&hchild_sync->step[ID_SETTLED], 1, HCHILD_WAIT_MS, p, "the idle connections");
	int64_t accepted = atomic_load(&hchild_sync->val[ID_ACCEPTED]);
	ck_assert_msg(accepted >= 4 && accepted < 100, "%lld of 100 idle connections kept",
	              (long long)accepted);
	root_gets_in("the connection table");
	hchild_expect_step(&hchild_sync->step[ID_CLOSED], 1, 2 * HCHILD_WAIT_MS, p, "the idle connections");
	hchild_expect_ok(p, "a user's idle connections");
	ck_assert(hd_log_contains(&hd_default, "sent no Hello"));
	hd_default_stop();

	/* The per-uid limit. */
	hchild_sync_init();
	hd_default_start("16M", "--max-connections-per-uid", "8", "--hello-timeout", "2",
	                 "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	p = hchild_spawn(idler, (void *)(intptr_t)20);
	hchild_expect_step(&hchild_sync->step[ID_SETTLED], 1, HCHILD_WAIT_MS, p, "the idle connections");
	ck_assert_int_eq(atomic_load(&hchild_sync->val[ID_ACCEPTED]), 8);
	root_gets_in("uid 65534's connections");
	hchild_expect_step(&hchild_sync->step[ID_CLOSED], 1, 2 * HCHILD_WAIT_MS, p, "the idle connections");
	ck_assert_int_le(atomic_load(&hchild_sync->val[ID_CLOSE_MS]), 2000 + 3000);
	hchild_expect_ok(p, "a user's idle connections");
}
END_TEST

/* ---- Bye ---- */

/* As nobody (no reserve for root): connect, allocate, disconnect (Bye), n times. */
static int bye_cycles(void *arg)
{
	int n = (int)(intptr_t)arg;
	if (hchild_become_nobody() < 0)
		hchild_fail("cannot become uid %d", HCHILD_NOBODY);
	for (int i = 0; i < n; i++) {
		int rc = hc_connect(NULL);
		if (rc < 0)
			hchild_fail("hc_connect after %d hc_disconnect calls: %s", i, strerror(-rc));
		void *p = hc_malloc(100);
		if (!p)
			hchild_fail("hc_malloc after %d hc_disconnect calls: %s", i, strerror(errno));
		hc_free(p);
		hc_disconnect();
	}
	return 0;
}

/* After Bye and its Ok, a further request is answered, refused or the connection closed. */
static int bye_then_more(void *arg)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Bye bye = HEAPD__BYE__INIT;
	Heapd__StatsRequest st = HEAPD__STATS_REQUEST__INIT;
	(void)arg;

	int fd = hraw_hello_fds(hd_default.sock, 0, NULL, NULL, NULL);
	if (fd < 0)
		hchild_fail("Hello: %s", strerror(-fd));
	env.msg_case = HEAPD__ENVELOPE__MSG_BYE;
	env.bye = &bye;
	env.seq = 2;
	if (wire_call(fd, &env, &reply, NULL) < 0 || reply->msg_case != HEAPD__ENVELOPE__MSG_OK)
		hchild_fail("Bye was not answered with Ok");
	wire_free(reply);
	env.msg_case = HEAPD__ENVELOPE__MSG_STATS;
	env.stats = &st;
	env.seq = 3;
	if (wire_send(fd, &env) < 0)
		return 0; /* closed already */
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 3000) != 1)
		hchild_fail("after Bye heapd neither answers a request nor closes the connection");
	close(fd);
	return 0;
}

START_TEST(test_bye_ends_connection)
{
	hchild_sync_init();
	hd_default_start("64M", "--max-connections-per-uid", "4", "--allow-uid", "65534", NULL);
	hd_open_up(&hd_default);
	hchild_expect_ok(hchild_spawn(bye_cycles, (void *)(intptr_t)12),
	                 "a client of uid 65534 disconnecting 12 times under --max-connections-per-uid 4");
	hchild_expect_ok(hchild_spawn(bye_then_more, NULL), "a request after Bye");
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- floods of control requests ---- */

#define FL_CONNS 48        /* control connections that each send one request per round */
#define FL_MIN_ROUNDS 3
#define FL_REFILLS 40
enum { FL_GO = 0, FL_REFILLED = 1 };

/*
 * A client whose every allocation is a refill (a new class each time): the
 * flood goes on until it is done, so the loop must serve it meanwhile.
 */
static int flood_refiller(void *arg)
{
	(void)arg;
	if (!hchild_wait_at_least(&hchild_sync->step[FL_GO], 1, HCHILD_WAIT_MS))
		hchild_fail("the flood did not start");
	for (int k = 0; k < FL_REFILLS; k++) {
		void *p = hc_malloc(16 * (size_t)(k + 1) * (k % 2 ? 7 : 1));
		if (!p)
			hchild_fail("hc_malloc during the flood: %s", strerror(errno));
		hc_free(p);
		hc_trim(); /* the next allocation asks heapd again */
	}
	atomic_store(&hchild_sync->step[FL_REFILLED], 1);
	return 0;
}

/* Live objects in many spans, so that a sweep cycle has work. */
static int flood_ballast(void *arg)
{
	(void)arg;
	for (int i = 0; i < 60000; i++) {
		void *p = hc_malloc(16 + (size_t)(i % 50) * 16);
		if (!p)
			hchild_fail("hc_malloc: %s", strerror(errno));
		if (i % 3)
			hc_free(p);
	}
	hc_trim();
	return 0;
}

/*
 * Rounds of one request (kind, and every fourth one alt) on each of fds
 * at once, each round read back before the next, until the refilling
 * client is done and at least FL_MIN_ROUNDS rounds ran. The requests sent.
 */
static int flood_rounds(const int *fds, int kind, int alt, int *rounds)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply;
	Heapd__SweepRequest sw = HEAPD__SWEEP_REQUEST__INIT;
	Heapd__ScavengeRequest sc = HEAPD__SCAVENGE_REQUEST__INIT;
	Heapd__CheckRequest ck = HEAPD__CHECK_REQUEST__INIT;
	int sent = 0;

	env.sweep = &sw;
	env.scavenge = &sc;
	env.check = &ck;
	atomic_store(&hchild_sync->step[FL_GO], 1);
	for (*rounds = 0; *rounds < FL_MIN_ROUNDS || !atomic_load(&hchild_sync->step[FL_REFILLED]);
	     ++*rounds) {
		ck_assert_int_lt(*rounds, 1000);
		for (int i = 0; i < FL_CONNS; i++) {
			/* only the field of the message case set is packed */
			env.msg_case = (Heapd__Envelope__MsgCase)(i % 4 == 3 ? alt : kind);
			env.seq = (uint64_t)*rounds + 1;
			ck_assert_int_eq(wire_send(fds[i], &env), 0);
			sent++;
		}
		for (int i = 0; i < FL_CONNS; i++) {
			reply = NULL;
			ck_assert_int_eq(wire_recv(fds[i], &reply, NULL), 0);
			int want = kind == HEAPD__ENVELOPE__MSG_CHECK ? HEAPD__ENVELOPE__MSG_CHECK_REPLY
			                                              : HEAPD__ENVELOPE__MSG_OK;
			ck_assert_msg(reply->msg_case == (Heapd__Envelope__MsgCase)want,
			              "round %d, connection %d: reply %d", *rounds, i, (int)reply->msg_case);
			ck_assert_uint_eq(reply->seq, (uint64_t)*rounds + 1);
			if (want == HEAPD__ENVELOPE__MSG_CHECK_REPLY)
				ck_assert_uint_eq(reply->check_reply->nproblems, 0);
			wire_free(reply);
		}
	}
	return sent;
}

START_TEST(test_control_floods)
{
	int fds[FL_CONNS], rounds;

	hchild_sync_init();
	hd_default_start("64M", NULL);
	hchild_expect_ok(hchild_spawn(flood_ballast, NULL), "a client leaving live objects");
	for (int i = 0; i < FL_CONNS; i++) {
		fds[i] = hctl_open(hd_default.sock);
		ck_assert_int_ge(fds[i], 0);
	}

	/* Sweeps (and a scavenge on every fourth connection) at once share cycles. */
	uint64_t c0 = hctl_sweep_cycles(hd_default.sock);
	ck_assert_uint_ne(c0, UINT64_MAX);
	pid_t r = hchild_spawn(flood_refiller, NULL);
	int sent = flood_rounds(fds, HEAPD__ENVELOPE__MSG_SWEEP, HEAPD__ENVELOPE__MSG_SCAVENGE, &rounds);
	uint64_t c1 = hctl_sweep_cycles(hd_default.sock);
	hchild_expect_ok(r, "a client refilling during the flood of sweeps");
	int sweeps = sent - sent / 4;
	ck_assert_msg(c1 - c0 <= (uint64_t)sweeps / 3, "%llu sweep cycles for %d Sweep requests",
	              (unsigned long long)(c1 - c0), sweeps);

	/*
	 * Checks at once share a run, and runs are at least 100 ms apart: a
	 * round takes about one interval, never one per request.
	 */
	atomic_store(&hchild_sync->step[FL_GO], 0);
	atomic_store(&hchild_sync->step[FL_REFILLED], 0);
	r = hchild_spawn(flood_refiller, NULL);
	uint64_t t0 = heapd_now_ms();
	flood_rounds(fds, HEAPD__ENVELOPE__MSG_CHECK, HEAPD__ENVELOPE__MSG_CHECK, &rounds);
	uint64_t ms = heapd_now_ms() - t0;
	hchild_expect_ok(r, "a client refilling during the flood of checks");
	ck_assert_msg(ms >= (uint64_t)(rounds - 1) * 100 - 20,
	              "%d rounds of checks took %llu ms: runs are not 100 ms apart", rounds,
	              (unsigned long long)ms);
	ck_assert_msg(ms < (uint64_t)rounds * 100 * FL_CONNS / 4,
	              "%d rounds of %d checks took %llu ms: requests do not share runs", rounds,
	              FL_CONNS, (unsigned long long)ms);
	for (int i = 0; i < FL_CONNS; i++)
		close(fds[i]);
	ck_assert(hd_alive(&hd_default));
}
END_TEST

/* ---- a full arena ---- */

#define FA_FAILS 300
#define FA_LARGE_FAILS 100

static int error_of(int rc, Heapd__Envelope *reply, int *fatal)
{
	*fatal = 0;
	if (rc < 0)
		return rc;
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_ERROR)
		return 0;
	*fatal = reply->error->fatal;
	return reply->error->code;
}

START_TEST(test_full_arena_refills)
{
	static uint32_t spans[2048];
	Heapd__Envelope *reply;
	hraw_t c;
	int n = 0, code = 0, fatal;

	hd_default_start("4M", NULL);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	/* fill it with one-page spans */
	while (n < 2048 - 64) {
		int rc = hraw_refill(c.fd, 1, 64, NULL, 0, &reply);
		code = error_of(rc, reply, &fatal);
		if (code == 0)
			for (size_t i = 0; i < reply->refill_reply->n_spans; i++)
				spans[n++] = reply->refill_reply->spans[i]->span;
		wire_free(reply);
		if (code)
			break;
	}
	ck_assert_msg(code == ENOMEM && !fatal, "filling the arena ended with %d (fatal %d)", code, fatal);
	ck_assert_int_gt(n, 0);

	uint64_t c0 = hctl_sweep_cycles(hd_default.sock);
	for (int i = 0; i < FA_FAILS + FA_LARGE_FAILS; i++) {
		int rc = i < FA_FAILS ? hraw_refill(c.fd, 1 + (uint32_t)i % 8, 8, NULL, 0, &reply)
		                        : hraw_large_alloc(c.fd, 100000, 0, 0, &reply);
		code = error_of(rc, reply, &fatal);
		wire_free(reply);
		ck_assert_msg(code == ENOMEM && !fatal, "request %d at a full arena: %d (fatal %d)", i,
		              code, fatal);
	}
	uint64_t c1 = hctl_sweep_cycles(hd_default.sock);
	ck_assert_msg(c1 - c0 <= (FA_FAILS + FA_LARGE_FAILS) / 10,
	              "%llu sweep cycles for %d requests refused at a full arena",
	              (unsigned long long)(c1 - c0), FA_FAILS + FA_LARGE_FAILS);

	/* The connection is fine and the pages come back when handed back. */
	int rc = hraw_refill(c.fd, 1, 1, spans, (size_t)n, &reply);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(reply->msg_case == HEAPD__ENVELOPE__MSG_REFILL_REPLY, "error %d",
	              hraw_error_code(reply));
	wire_free(reply);
	hraw_close(&c);
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

/* ---- malformed and nonsensical input ---- */

/* The next frame on fd is a fatal Error (of code, unless 0), and heapd then closes fd. */
static void expect_fatal(int fd, int code, const char *what)
{
	Heapd__Envelope *r = NULL;
	int rc = wire_recv(fd, &r, NULL);
	if (rc < 0)
		hchild_fail("%s: no Error came: %s", what, strerror(-rc));
	if (r->msg_case != HEAPD__ENVELOPE__MSG_ERROR || !r->error->fatal || (code && r->error->code != code))
		hchild_fail("%s: reply %d (error %d, fatal %d), want a fatal %s", what,
		            (int)r->msg_case,
		            r->msg_case == HEAPD__ENVELOPE__MSG_ERROR ? r->error->code : 0,
		            r->msg_case == HEAPD__ENVELOPE__MSG_ERROR ? r->error->fatal : 0,
		            code ? strerror(code) : "Error");
	wire_free(r);
	if (!hraw_closed(fd, 3000))
		hchild_fail("%s: heapd kept the connection open after a fatal Error", what);
	close(fd);
}

/* fd is closed by heapd (whatever it said first). */
static void expect_closed(int fd, const char *what)
{
	if (!hraw_closed(fd, 3000))
		hchild_fail("%s: heapd kept the connection open", what);
	close(fd);
}

static uint64_t bad_rng = 0x1234567;

static void random_bytes(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)hutil_rand(&bad_rng);
}

/* A read that waits longer than this for heapd fails (EAGAIN) rather than hanging the test. */
static void read_timeout(int fd)
{
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int connect_or_fail(void)
{
	int fd = sock_connect(hd_default.sock);
	if (fd < 0)
		hchild_fail("connect: %s", strerror(-fd));
	read_timeout(fd);
	return fd;
}

static void send_or_fail(int fd, Heapd__Envelope *env, const char *what)
{
	int rc = wire_send(fd, env);
	if (rc < 0)
		hchild_fail("%s: send: %s", what, strerror(-rc));
}

/* A session of the given kind: a client (with a slot) or a control connection. */
static int session_or_fail(int control)
{
	int fd = hraw_hello_fds(hd_default.sock, control, NULL, NULL, NULL);
	if (fd < 0)
		hchild_fail("Hello: %s", strerror(-fd));
	read_timeout(fd);
	return fd;
}

static int bad_bytes(void *arg)
{
	static uint8_t buf[HEAPD_MAX_FRAME + 16];
	(void)arg;
	/* random bytes before any Hello */
	int fd = connect_or_fail();
	random_bytes(buf, 64 * KIB);
	hraw_send(fd, buf, 64 * KIB);
	expect_closed(fd, "random bytes");
	/* a length over the limit */
	fd = connect_or_fail();
	memset(buf, 0xff, 4);
	hraw_send(fd, buf, 4);
	expect_fatal(fd, EPROTO, "a frame length of 4 GiB");
	/* a frame of exactly the largest size, all garbage */
	fd = connect_or_fail();
	buf[0] = 0, buf[1] = 0, buf[2] = 0x10, buf[3] = 0;
	random_bytes(buf + 4, HEAPD_MAX_FRAME);
	hraw_send(fd, buf, 4 + HEAPD_MAX_FRAME);
	expect_closed(fd, "1 MiB of garbage in one frame");
	/* an empty frame */
	fd = connect_or_fail();
	memset(buf, 0, 4);
	hraw_send(fd, buf, 4);
	expect_fatal(fd, EPROTO, "an empty frame");
	/* half a frame, then hanging up */
	fd = connect_or_fail();
	buf[0] = 0, buf[1] = 0, buf[2] = 0x10, buf[3] = 0;
	hraw_send(fd, buf, 100 * KIB);
	close(fd);
	/* frames of random payload after a good Hello, on a control and on a client session */
	for (int control = 0; control < 2; control++) {
		for (int i = 0; i < 50; i++) {
			fd = session_or_fail(control);
			uint32_t len = 1 + (uint32_t)(hutil_rand(&bad_rng) % 300);
			buf[0] = (uint8_t)len, buf[1] = (uint8_t)(len >> 8), buf[2] = 0, buf[3] = 0;
			random_bytes(buf + 4, len);
			hraw_send(fd, buf, 4 + len);
			close(fd);
			/* heapd has seen the close before the next Hello of this process */
			if (!control)
				wait_closed_seen();
		}
	}
	return 0;
}

static int bad_hellos(void *arg)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Hello h = HEAPD__HELLO__INIT;
	Heapd__StatsRequest st = HEAPD__STATS_REQUEST__INIT;
	static uint32_t held[100000];
	(void)arg;

	/* a request before Hello */
	int fd = connect_or_fail();
	env.msg_case = HEAPD__ENVELOPE__MSG_STATS;
	env.stats = &st;
	send_or_fail(fd, &env, "Stats before Hello");
	expect_fatal(fd, EPROTO, "Stats before Hello");
	/* old and impossible versions */
	const uint32_t versions[] = { 0, 1, HEAPD_PROTOCOL_VERSION + 1, 0xffffffffu };
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		fd = connect_or_fail();
		h.version = versions[i];
		env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
		env.hello = &h;
		send_or_fail(fd, &env, "Hello");
		expect_fatal(fd, EPROTO, "a Hello of another version");
	}
	/* a control Hello naming slots and spans: a control connection has none */
	for (uint32_t i = 0; i < 100000; i++)
		held[i] = (uint32_t)hutil_rand(&bad_rng) % 40000;
	h.version = HEAPD_PROTOCOL_VERSION;
	h.control = 1;
	h.prev_slot = 1;
	h.held_spans = held;
	h.n_held_spans = 100000;
	fd = connect_or_fail();
	send_or_fail(fd, &env, "a control Hello with spans");
	Heapd__Envelope *r = NULL;
	if (wire_recv(fd, &r, NULL) < 0 || r->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY)
		hchild_fail("a control Hello listing spans got no HelloReply");
	wire_free(r);
	close(fd);
	/* a client Hello naming slot 1 and 100000 random spans: a new slot, and nobody loses spans */
	h.control = 0;
	fd = connect_or_fail();
	send_or_fail(fd, &env, "a client Hello with random spans");
	int fds[WIRE_MAX_FDS] = { -1, -1 };
	if (wire_recv(fd, &r, fds) < 0)
		hchild_fail("a client Hello listing random spans: no reply");
	wire_free(r);
	for (int i = 0; i < WIRE_MAX_FDS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(fd);
	return 0;
}

static int bad_requests(void *arg)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Refill rf = HEAPD__REFILL__INIT;
	Heapd__LargeAlloc la = HEAPD__LARGE_ALLOC__INIT;
	Heapd__Bye bye = HEAPD__BYE__INIT;
	Heapd__Ok ok = HEAPD__OK__INIT;
	Heapd__HelloReply hr = HEAPD__HELLO_REPLY__INIT;
	Heapd__StatsRequest st = HEAPD__STATS_REQUEST__INIT;
	(void)arg;

	/* client requests on a control connection */
	int fd = session_or_fail(1);
	rf.sizeclass = 1;
	rf.count = 1;
	env.msg_case = HEAPD__ENVELOPE__MSG_REFILL;
	env.refill = &rf;
	send_or_fail(fd, &env, "Refill on a control connection");
	expect_fatal(fd, EPERM, "Refill on a control connection");
	fd = session_or_fail(1);
	env.msg_case = HEAPD__ENVELOPE__MSG_BYE;
	env.bye = &bye;
	send_or_fail(fd, &env, "Bye on a control connection");
	expect_fatal(fd, EPERM, "Bye on a control connection");

	/* nonsensical refills and large allocations on a client session */
	const struct { uint32_t k, count; } refills[] = { { 1, 100000 }, { 0, 1 }, { 250, 1 },
	                                                  { 0xffffffffu, 64 } };
	for (size_t i = 0; i < sizeof(refills) / sizeof(refills[0]); i++) {
		fd = session_or_fail(0);
		rf.sizeclass = refills[i].k;
		rf.count = refills[i].count;
		env.msg_case = HEAPD__ENVELOPE__MSG_REFILL;
		env.refill = &rf;
		send_or_fail(fd, &env, "a bad Refill");
		expect_fatal(fd, EINVAL, "a Refill of a bad class or count");
		wait_closed_seen();
	}
	const struct { uint64_t size, align; } larges[] = { { 0, 0 }, { 1ULL << 62, 0 }, { 100000, 3 },
	                                                    { 100000, 1ULL << 40 } };
	for (size_t i = 0; i < sizeof(larges) / sizeof(larges[0]); i++) {
		fd = session_or_fail(0);
		la.size = larges[i].size;
		la.align = larges[i].align;
		env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_ALLOC;
		env.large_alloc = &la;
		send_or_fail(fd, &env, "a bad LargeAlloc");
		expect_fatal(fd, EINVAL, "a LargeAlloc of a bad size or alignment");
		wait_closed_seen();
	}
	/* a span handed back twice in one list */
	fd = session_or_fail(0);
	rf.sizeclass = 1;
	rf.count = 1;
	rf.n_release = 0;
	env.msg_case = HEAPD__ENVELOPE__MSG_REFILL;
	env.refill = &rf;
	if (wire_call(fd, &env, &reply, NULL) < 0 || reply->msg_case != HEAPD__ENVELOPE__MSG_REFILL_REPLY)
		hchild_fail("a good Refill was not answered");
	uint32_t twice[2] = { reply->refill_reply->spans[0]->span, reply->refill_reply->spans[0]->span };
	wire_free(reply);
	rf.count = 0;
	rf.release = twice;
	rf.n_release = 2;
	send_or_fail(fd, &env, "a span released twice");
	expect_fatal(fd, 0, "a span released twice"); /* EINVAL once it is free, or EPERM */
	rf.release = NULL;
	rf.n_release = 0;
	wait_closed_seen();
	/* random LargeFrees are ignored: the session goes on */
	fd = session_or_fail(0);
	for (int i = 0; i < 200; i++) {
		Heapd__LargeFree lf = HEAPD__LARGE_FREE__INIT;
		lf.span = (uint32_t)hutil_rand(&bad_rng) % (i % 2 ? 0xffffffffu : 9000);
		lf.gen = (uint32_t)hutil_rand(&bad_rng) % 4;
		env.msg_case = HEAPD__ENVELOPE__MSG_LARGE_FREE;
		env.large_free = &lf;
		send_or_fail(fd, &env, "LargeFree");
	}
	env.msg_case = HEAPD__ENVELOPE__MSG_STATS;
	env.stats = &st;
	env.seq = 77;
	if (wire_call(fd, &env, &reply, NULL) < 0 || reply->msg_case != HEAPD__ENVELOPE__MSG_STATS_REPLY)
		hchild_fail("after random LargeFrees the session does not answer Stats");
	wire_free(reply);
	/* Bye ends the session (test_bye_ends_connection: what comes after it) */
	env.msg_case = HEAPD__ENVELOPE__MSG_BYE;
	env.bye = &bye;
	if (wire_call(fd, &env, &reply, NULL) < 0 || reply->msg_case != HEAPD__ENVELOPE__MSG_OK)
		hchild_fail("Bye was not answered with Ok");
	wire_free(reply);
	close(fd);
	/* messages only heapd sends */
	for (int i = 0; i < 2; i++) {
		fd = session_or_fail(i);
		if (i) {
			env.msg_case = HEAPD__ENVELOPE__MSG_OK;
			env.ok = &ok;
		} else {
			env.msg_case = HEAPD__ENVELOPE__MSG_HELLO_REPLY;
			env.hello_reply = &hr;
		}
		send_or_fail(fd, &env, "a reply from a client");
		expect_fatal(fd, EPROTO, "a reply-only message from a client");
		wait_closed_seen();
	}
	return 0;
}

enum { BI_HELD = 0, BI_GO };

/* A bystander holding objects while the others misbehave: they must not be touched. */
static int bad_bystander(void *arg)
{
	static void *objs[2000];
	hview_t a;
	hc_stats_t st;
	(void)arg;
	if (hview_map(&a) < 0)
		hchild_fail("no arena");
	for (int i = 0; i < 2000; i++) {
		objs[i] = hc_malloc(64);
		if (!objs[i])
			hchild_fail("hc_malloc: %s", strerror(errno));
		hutil_fill(objs[i], 64, (uint64_t)i);
	}
	hc_stats(&st);
	atomic_store(&hchild_sync->step[BI_HELD], 1);
	if (!hchild_wait_at_least(&hchild_sync->step[BI_GO], 1, 6 * HCHILD_WAIT_MS))
		hchild_fail("no word to go on");
	for (int i = 0; i < 2000; i++) {
		uint32_t s = hview_span_of(&a, objs[i]);
		if (!hutil_verify(objs[i], 64, (uint64_t)i))
			hchild_fail("object %d lost its pattern", i);
		if (a.spans[s].owner != st.slot + 1)
			hchild_fail("span %u of slot %u is owned by slot %d now", s, st.slot,
			            (int)a.spans[s].owner - 1);
	}
	hc_stats(&st);
	if (st.reconnects != 0)
		hchild_fail("the bystander's session was ended");
	for (int i = 0; i < 2000; i++)
		hc_free(objs[i]);
	return 0;
}

START_TEST(test_bad_input)
{
	hchild_sync_init();
	hd_default_start("64M", NULL);
	pid_t by = hchild_spawn(bad_bystander, NULL);
	hchild_expect_step(&hchild_sync->step[BI_HELD], 1, HCHILD_WAIT_MS, by, "the bystander");
	hchild_expect_ok(hchild_spawn(bad_bytes, NULL), "malformed frames");
	ck_assert(hd_alive(&hd_default));
	hchild_expect_ok(hchild_spawn(bad_hellos, NULL), "bad Hellos");
	ck_assert(hd_alive(&hd_default));
	hchild_expect_ok(hchild_spawn(bad_requests, NULL), "nonsensical requests");
	ck_assert(hd_alive(&hd_default));
	atomic_store(&hchild_sync->step[BI_GO], 1);
	hchild_expect_ok(by, "a client holding objects meanwhile");
	ck_assert(hd_alive(&hd_default));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
}
END_TEST

Suite *hostile_limits_suite(void)
{
	return test_suite_single("limits", "limits", HOSTILE_TIMEOUT_S, NULL, hd_default_stop,
	                         test_client_quota_with_trim,
	                         test_client_quota_across_bye,
	                         test_client_quota_after_recovery,
	                         test_uid_quota_across_processes,
	                         test_second_hello_busy,
	                         test_slots_per_uid,
	                         test_held_slots_do_not_pile_up,
	                         test_idle_connections,
	                         test_bye_ends_connection,
	                         test_control_floods,
	                         test_full_arena_refills,
	                         test_bad_input,
	                         NULL);
}
