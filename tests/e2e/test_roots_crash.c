// SPDX-License-Identifier: MIT
/*
 * test_roots_crash.c - heapd killed at every commit write of a sequence of
 * binds, replaces and unbinds, and at every commit write of the recovery
 * that follows, by the real code (shm/commit.h: HEAPD_TEST_KILL_AFTER_COMMITS
 * makes heapd _exit(86) right after its Nth commit).
 *
 * Each round N starts from the same state: a fresh arena where a setup
 * client bound five names, two of them to objects it then freed (their
 * frees wait for the roots to go). heapd is restarted armed to die at its
 * Nth commit, and an actor process makes the changes of the script one at
 * a time, on the test's word. When heapd dies in the middle of change i:
 *   1. the actor is stopped (SIGSTOP), so nothing but recovery runs;
 *   2. heapd is started armed at its 1st, 2nd, ... commit in turn until one
 *      gets through its recovery (each killed recovery leaves what the next
 *      one must repair), then killed idle, and started unarmed;
 *   3. every name must be bound to its old or its new object (the ones
 *      before i changed, the ones after i not, i either way), each object
 *      intact, and heapd's check clean;
 *   4. the actor goes on: its request for change i is sent again on its new
 *      connection and must succeed once, and so must every change after.
 * At the end of every round the names hold the script's final state; then
 * everything is unbound and freed, and nothing may stay in use. Rounds end
 * when heapd gets through the script without reaching its Nth commit.
 *
 * Random scripts over the same names and objects follow the fixed one:
 * ROOTS_CRASH_SEEDS of them (1 by default, 40 in the long run).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/child.h"
#include "harness/util.h"
#include "sock.h"
#include "commit.h"
#include "heapclient.h"

#define MIB (1024 * 1024)
#define MAX_OPS 64

/*
 * The objects the setup allocates: A, B and C small, L1, L2 and L3 large.
 * It frees B and L3 after binding them: their frees wait for their roots.
 */
enum { A, B, L1, L2, L3, C, NOBJ };
static const size_t obj_size[NOBJ] = { 64, 64, 3 * MIB, 3 * MIB, 2 * MIB, 48 };
static const int freed_in_setup[NOBJ] = { [B] = 1, [L3] = 1 };

static const char *const names[] = { "s", "n", "l", "x", "gone", "big" };
#define NNAMES ((int)(sizeof(names) / sizeof(names[0])))
static const int initial[NNAMES] = { A, -1, L1, A, B, L3 };

typedef struct op {
	int name;               /* index in names[] */
	int cas;                /* a cas from the binding the name has, else a set */
	int obj;                /* the object to bind, -1: remove the binding */
} op_t;

/*
 * Replace a small object (still named by another root), bind a new name to
 * a large one, replace a large one by cas, unbind, unbind an object freed
 * while rooted (small, then large by cas: heapd frees it then), and bind a
 * name to an object that lost its last root.
 */
static const op_t script[] = {
	{ 0, 0, C }, { 1, 0, L2 }, { 2, 1, L2 }, { 3, 0, -1 }, { 4, 0, -1 }, { 5, 1, -1 }, { 1, 1, A },
};
#define NSCRIPT ((int)(sizeof(script) / sizeof(script[0])))

/* ---- the daemon ---- */

static hd_t hd;

static void prepare(void)
{
	hd_init(&hd);
	hd.size = "64M";
	hd.extra[0] = "--sweep-interval";
	hd.extra[1] = "86400";
	setenv("HEAPD_SOCKET", hd.sock, 1);
	setenv("HEAPD_RECONNECT_TIMEOUT_MS", "120000", 1);
	hd_default = hd; /* for hctl_check and the counters */
}

/*
 * Start heapd, armed to die after its nth commit (0: not armed). 1 if it
 * serves, 0 if it died of the hook first (any other end fails the test).
 */
static int start(uint64_t n)
{
	char arm[32];
	snprintf(arm, sizeof(arm), "%llu", (unsigned long long)n);
	if (n)
		setenv("HEAPD_TEST_KILL_AFTER_COMMITS", arm, 1);
	int rc = hd_launch(&hd);
	unsetenv("HEAPD_TEST_KILL_AFTER_COMMITS");
	ck_assert_int_eq(rc, 0);
	for (int waited = 0; waited < 20000; waited += 5) {
		int st, fd = sock_connect(hd.sock);
		if (fd >= 0) {
			close(fd);
			hd_default.pid = hd.pid;
			return 1;
		}
		if (waitpid(hd.pid, &st, WNOHANG) == hd.pid) {
			hd.pid = 0;
			if (!(WIFEXITED(st) && WEXITSTATUS(st) == SHM_COMMIT_KILLED))
				hd_dump_log(&hd);
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == SHM_COMMIT_KILLED,
			              "heapd ended with status %d before it served", st);
			return 0;
		}
		hutil_sleep_us(5000);
	}
	ck_abort_msg("heapd neither served nor died");
	return 0;
}

/* heapd died of the hook (1), or is still running (0); any other end fails. */
static int died(void)
{
	int st;
	if (hd.pid <= 0 || waitpid(hd.pid, &st, WNOHANG) != hd.pid)
		return 0;
	hd.pid = 0;
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == SHM_COMMIT_KILLED))
		hd_dump_log(&hd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == SHM_COMMIT_KILLED, "heapd ended with status %d",
	              st);
	return 1;
}

/* After a kill: recoveries killed at their 1st, 2nd, ... commit until one gets through; then unarmed. */
static int recover_under_kills(void)
{
	int kills = 0;
	for (uint64_t m = 1;; m++) {
		if (start(m)) {
			hd_stop(&hd, SIGKILL); /* through recovery: killed idle */
			break;
		}
		kills++;
	}
	ck_assert_int_eq(start(0), 1);
	return kills;
}

/* ---- the processes ---- */

typedef struct world {
	uint64_t off[NOBJ];     /* arena offsets of the objects */
	int state[NNAMES];      /* name -> object index, -1: unbound, as the script has it so far */
} world_t;

static uint64_t seed_of(int obj)
{
	return 1000 + (uint64_t)obj;
}

/* The setup client: allocate and fill the objects, bind the initial names, free two of them. */
static void setup(world_t *w)
{
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint64_t off[NOBJ];
		for (int i = 0; i < NOBJ; i++) {
			char *o = hc_malloc(obj_size[i]);
			if (!o)
				_exit(1);
			hutil_fill(o, obj_size[i], seed_of(i));
			off[i] = hc_ptr_to_off(o);
		}
		for (int n = 0; n < NNAMES; n++)
			if (initial[n] >= 0 && hc_root_set(names[n], hc_off_to_ptr(off[initial[n]])) != 0)
				_exit(2);
		for (int i = 0; i < NOBJ; i++)
			if (freed_in_setup[i])
				hc_free(hc_off_to_ptr(off[i]));
		hutil_write_full(p[1], off, sizeof(off));
		_exit(0); /* its objects stay allocated: another process frees them at the end */
	}
	close(p[1]);
	ck_assert_int_eq(hutil_read_full(p[0], w->off, sizeof(w->off)), 0);
	close(p[0]);
	ck_assert_int_eq(hchild_wait(pid), 0);
	memcpy(w->state, initial, sizeof(initial));
}

typedef struct actor {
	pid_t pid;
	int cmd, res;           /* pipes: op indexes in, results out */
} actor_t;

/* The actor: change i of ops on the test's word; a cas expects what the script says the name holds. */
static void actor_main(const world_t *w0, const op_t *ops, int cmd, int res)
{
	world_t w = *w0;
	int i;
	while (hutil_read_full(cmd, &i, sizeof(i)) == 0) {
		const op_t *o = &ops[i];
		void *obj = o->obj >= 0 ? hc_off_to_ptr(w.off[o->obj]) : NULL;
		int was = w.state[o->name], rc;
		if (o->cas)
			rc = hc_root_cas(names[o->name], was >= 0 ? hc_off_to_ptr(w.off[was]) : NULL, obj);
		else
			rc = hc_root_set(names[o->name], obj);
		w.state[o->name] = o->obj;
		if (hutil_write_full(res, &rc, sizeof(rc)) < 0)
			break;
	}
	_exit(0);
}

static void actor_start(actor_t *a, const world_t *w, const op_t *ops)
{
	int c[2], r[2];
	/* close-on-exec: a heapd started later must not hold the actor's pipes open */
	ck_assert_int_eq(pipe2(c, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(r, O_CLOEXEC), 0);
	a->pid = fork();
	ck_assert_int_ge(a->pid, 0);
	if (a->pid == 0) {
		close(c[1]);
		close(r[0]);
		actor_main(w, ops, c[0], r[1]);
	}
	close(c[0]);
	close(r[1]);
	a->cmd = c[1];
	a->res = r[0];
}

static void actor_stop(actor_t *a)
{
	close(a->cmd);
	close(a->res);
	ck_assert_int_eq(hchild_wait(a->pid), 0);
}

/* ---- checks ---- */

/*
 * Every name bound as w says, but name `either`, which may be on old or
 * new; every object behind a name intact; heapd's check clean. The lookups
 * run in a child: this process never maps an arena, since every round has
 * its own.
 */
static void check_names(const world_t *w, int either, int old, int new)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int bad = 0;
		for (int n = 0; n < NNAMES; n++) {
			char *p = hc_root_get(names[n]);
			int got = -1;
			for (int i = 0; i < NOBJ && p; i++)
				if (hc_ptr_to_off(p) == w->off[i])
					got = i;
			if (p && got < 0) {
				fprintf(stderr, "name %s leads to offset %llu, no object of ours\n", names[n],
				        (unsigned long long)hc_ptr_to_off(p));
				bad = 1;
			} else if (n == either ? got != old && got != new : got != w->state[n]) {
				fprintf(stderr, "name %s is bound to object %d, not %d (or %d)\n", names[n], got,
				        n == either ? old : w->state[n], n == either ? new : w->state[n]);
				bad = 1;
			} else if (got >= 0 && !hutil_verify(p, obj_size[got], seed_of(got))) {
				fprintf(stderr, "object %d behind %s is not intact\n", got, names[n]);
				bad = 1;
			}
		}
		_exit(bad);
	}
	ck_assert_msg(hchild_wait(pid) == 0, "names after a kill are not as they were or were to be");
	uint64_t problems = hctl_check(hd_default.sock);
	ck_assert_msg(problems == 0, "heapd's check found %llu problems", (unsigned long long)problems);
}

/* Wait for the actor's result of its current op, or for heapd's death (-1). */
static int await(actor_t *a, int *rc)
{
	for (;;) {
		struct pollfd pfd = { .fd = a->res, .events = POLLIN };
		if (poll(&pfd, 1, 5) == 1) {
			ck_assert_int_eq(hutil_read_full(a->res, rc, sizeof(*rc)), 0);
			return 0;
		}
		if (died())
			return -1;
	}
}

/*
 * One round: the script under a kill at heapd's nth commit. 1 if heapd was
 * killed (there may be more kill points), 0 if it got through.
 */
static int round_at(uint64_t n, const op_t *ops, int nops, int *recovery_kills)
{
	world_t w;
	actor_t a;
	int killed = 0, rc;

	prepare();
	ck_assert_int_eq(start(0), 1);
	setup(&w);
	ck_assert_int_eq(hd_stop(&hd, SIGTERM), 0);

	if (!start(n)) {
		/* killed in the recovery of a clean start */
		killed = 1;
		*recovery_kills += recover_under_kills();
		check_names(&w, -1, -1, -1);
	}
	actor_start(&a, &w, ops);
	for (int i = 0; i < nops; i++) {
		const op_t *o = &ops[i];
		ck_assert_int_eq(hutil_write_full(a.cmd, &i, sizeof(i)), 0);
		if (await(&a, &rc) < 0) {
			killed = 1;
			kill(a.pid, SIGSTOP);
			*recovery_kills += recover_under_kills();
			check_names(&w, o->name, w.state[o->name], o->obj);
			kill(a.pid, SIGCONT);
			ck_assert_int_eq(await(&a, &rc), 0);
		}
		ck_assert_msg(rc == 0, "change %d (%s) after a kill at commit %llu: %s", i, names[o->name],
		              (unsigned long long)n, strerror(-rc));
		w.state[o->name] = o->obj;
	}
	actor_stop(&a);
	if (hd.pid <= 0 || died()) { /* killed by the last change's last commit */
		killed = 1;
		*recovery_kills += recover_under_kills();
	} else {
		/* still armed: what follows must not reach its nth commit */
		hd_stop(&hd, SIGTERM);
		ck_assert_int_eq(start(0), 1);
	}
	check_names(&w, -1, -1, -1);

	/* Everything unbound and freed: nothing may stay in use. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (int nm = 0; nm < NNAMES; nm++)
			if (hc_root_set(names[nm], NULL) != 0)
				_exit(1);
		for (int i = 0; i < NOBJ; i++)
			if (!freed_in_setup[i])
				hc_free(hc_off_to_ptr(w.off[i]));
		hc_disconnect();
		_exit(0);
	}
	ck_assert_int_eq(hchild_wait(pid), 0);
	ck_assert_msg(hctl_settle(hd_default.sock, 200), "round %llu: %llu objects and %llu pages still in use",
	              (unsigned long long)n, (unsigned long long)hctl_objects_in_use(hd_default.sock),
	              (unsigned long long)hctl_pages_in_use(hd_default.sock));
	ck_assert_uint_eq(hctl_check(hd_default.sock), 0);
	hd_cleanup(&hd);
	return killed;
}

/* Rounds of one script, at every kill point; how many rounds were killed. */
static int all_kill_points(const op_t *ops, int nops, int *recovery_kills)
{
	int rounds = 0;
	for (uint64_t n = 1; round_at(n, ops, nops, recovery_kills); n++)
		rounds++;
	return rounds;
}

START_TEST(test_kill_at_every_commit)
{
	int recovery_kills = 0;
	int rounds = all_kill_points(script, NSCRIPT, &recovery_kills);
	printf("roots crash: %d kill points in the script, %d more in recoveries\n", rounds, recovery_kills);
	/* every change commits at least twice: the kills reached into the script, and into recovery */
	ck_assert_int_ge(rounds, 2 * NSCRIPT);
	ck_assert_int_gt(recovery_kills, 0);
}
END_TEST

/* A random script over the same names and objects (never binding a freed one). */
static int random_script(op_t *ops, uint64_t *seed)
{
	static const int live[] = { A, L1, L2, C };
	int state[NNAMES], n = 4 + (int)(hutil_rand(seed) % 8);
	memcpy(state, initial, sizeof(state));
	for (int i = 0; i < n; i++) {
		op_t *o = &ops[i];
		o->name = (int)(hutil_rand(seed) % NNAMES);
		o->cas = (int)(hutil_rand(seed) % 2);
		o->obj = hutil_rand(seed) % 4 == 0 ? -1 : live[hutil_rand(seed) % 4];
		if (o->obj == state[o->name])
			o->obj = -1;
		state[o->name] = o->obj;
	}
	return n;
}

START_TEST(test_kill_random_scripts)
{
	uint64_t seeds = strtoull(getenv("ROOTS_CRASH_SEEDS") ? getenv("ROOTS_CRASH_SEEDS") : "1", NULL, 10);
	int recovery_kills = 0, rounds = 0;
	op_t ops[MAX_OPS];
	for (uint64_t s = 1; s <= seeds; s++) {
		uint64_t seed = s * 0x9e3779b97f4a7c15ULL;
		int n = random_script(ops, &seed);
		rounds += all_kill_points(ops, n, &recovery_kills);
	}
	printf("roots crash: %llu random scripts, %d kill points, %d in recoveries\n",
	       (unsigned long long)seeds, rounds, recovery_kills);
}
END_TEST

static Suite *roots_crash_suite(void)
{
	Suite *s = suite_create("roots_crash");
	TCase *tc = tcase_create("crash");
	tcase_set_timeout(tc, 3000);
	tcase_add_test(tc, test_kill_at_every_commit);
	tcase_add_test(tc, test_kill_random_scripts);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(roots_crash_suite);
