// SPDX-License-Identifier: MIT
/*
 * test_heapctl.c - heapctl against a real heapd: the command-line contract
 * (help, version, exit codes 0/1/2/3), every command's output, the JSON of
 * `stats --json`, and `watch` in both of its modes of output.
 *
 * heapctl is run as a program ($HEAPCTL_BIN) with its output captured
 * (harness/child.h); the daemons come from harness/heapd.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "layout.h"
#include "harness/json.h"
#include "harness/raw.h"
#include "harness/child.h"
#include "harness/util.h"
#include "sock.h"
#include "wire.h"

#define RUN_MS 20000

static hd_t daemon_;

static const char *heapctl_bin(void)
{
	const char *bin = getenv("HEAPCTL_BIN");
	ck_assert_msg(bin != NULL, "HEAPCTL_BIN is not set");
	return bin;
}

/* Run heapctl with the arguments that follow; its exit status. */
#define HEAPCTL(r, ...) (hchild_run_heapctl(r, RUN_MS, __VA_ARGS__, (const char *)NULL), (r)->status)

static void daemon_setup(void)
{
	hd_init(&daemon_);
	hd_must_start(&daemon_);
}

static void daemon_teardown(void)
{
	hd_cleanup(&daemon_);
}

/* ---- without a daemon ---- */

START_TEST(test_help_and_version)
{
	hchild_run_t r;
	ck_assert_int_eq(HEAPCTL(&r, "--help"), 0);
	ck_assert_ptr_nonnull(strstr(r.out, "Usage: heapctl"));
	ck_assert_ptr_nonnull(strstr(r.out, "watch"));
	hchild_run_free(&r);

	ck_assert_int_eq(HEAPCTL(&r, "stats", "--help"), 0);
	ck_assert_ptr_nonnull(strstr(r.out, "Usage: heapctl"));
	hchild_run_free(&r);

	ck_assert_int_eq(HEAPCTL(&r, "--version"), 0);
	ck_assert_str_eq(r.out, "heapctl " HEAPD_VERSION "\n");
	ck_assert_str_eq(r.err, "");
	hchild_run_free(&r);
}
END_TEST

START_TEST(test_usage_errors)
{
	static const char *const cases[][3] = {
		{ NULL, NULL, NULL },             /* no command */
		{ "frobnicate", NULL, NULL },     /* unknown command */
		{ "--bogus", "stats", NULL },     /* unknown global option */
		{ "stats", "--bogus", NULL },     /* unknown command option */
		{ "stats", "extra", NULL },       /* stray argument */
		{ "sweep", "--json", NULL },      /* option of another command */
		{ "stats", "--interval", "1" },
		{ "watch", "--interval", "0" },
		{ "watch", "--interval", "soon" },
		{ "--socket", "", "stats" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hchild_run_t r;
		int st = HEAPCTL(&r, cases[i][0], cases[i][1], cases[i][2]);
		ck_assert_msg(st == 2, "case %zu (%s %s %s): exit %d, want 2", i, cases[i][0], cases[i][1],
		              cases[i][2], st);
		ck_assert_str_eq(r.out, "");
		ck_assert_msg(r.errlen > 0, "case %zu: no message on stderr", i);
		hchild_run_free(&r);
	}
}
END_TEST

START_TEST(test_unreachable)
{
	char dir[] = "/tmp/heapctl-test-XXXXXX", sock[64];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/no.sock", dir);

	hchild_run_t r;
	ck_assert_int_eq(HEAPCTL(&r, "--socket", sock, "stats"), 3);
	ck_assert_msg(strstr(r.err, sock) != NULL, "stderr does not name the socket: %s", r.err);
	ck_assert_str_eq(r.out, "");
	hchild_run_free(&r);

	/* $HEAPD_SOCKET is the default, and the message names it. */
	setenv("HEAPD_SOCKET", sock, 1);
	ck_assert_int_eq(HEAPCTL(&r, "check"), 3);
	ck_assert_msg(strstr(r.err, sock) != NULL, "stderr does not name $HEAPD_SOCKET: %s", r.err);
	hchild_run_free(&r);
	unsetenv("HEAPD_SOCKET");

	/* A socket nobody listens on. */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "touch %s", sock);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(HEAPCTL(&r, "--socket", sock, "watch"), 3);
	ck_assert_ptr_nonnull(strstr(r.err, "cannot connect to"));
	hchild_run_free(&r);
	unlink(sock);
	rmdir(dir);
}
END_TEST

/* ---- with a daemon ---- */

static const char *const stats_keys[] = {
	"arena_bytes", "page_size", "pages_total", "pages_in_use", "pages_free", "pages_released",
	"spans_in_use", "objects_in_use", "bytes_in_use", "clients", "sweepgen", "sweep_cycles",
	"uptime_seconds",
};
static const char *const class_keys[] = { "class", "size", "spans", "objects_in_use", "free_slots" };

START_TEST(test_stats_json)
{
	hchild_run_t r;
	char err[256] = "";
	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "stats", "--json"), 0);
	hjson_t *j = hjson_parse(r.out, err, sizeof(err));
	ck_assert_msg(j != NULL, "stats --json is not JSON (%s):\n%s", err, r.out);
	ck_assert_int_eq(j->type, HJSON_OBJECT);
	for (size_t i = 0; i < sizeof(stats_keys) / sizeof(stats_keys[0]); i++) {
		const hjson_t *v = hjson_get(j, stats_keys[i]);
		ck_assert_msg(v != NULL, "stats --json has no \"%s\":\n%s", stats_keys[i], r.out);
		ck_assert_msg(v->type == HJSON_NUMBER && v->number >= 0, "\"%s\" is not a count",
		              stats_keys[i]);
	}
	ck_assert(hjson_get(j, "arena_bytes")->number >= 256.0 * 1024 * 1024);
	ck_assert(hjson_get(j, "page_size")->number > 0);

	const hjson_t *classes = hjson_get(j, "classes");
	ck_assert_msg(classes && classes->type == HJSON_ARRAY, "no \"classes\" array");
	for (size_t c = 0; c < classes->n; c++) {
		ck_assert_int_eq(classes->items[c]->type, HJSON_OBJECT);
		for (size_t i = 0; i < sizeof(class_keys) / sizeof(class_keys[0]); i++) {
			const hjson_t *v = hjson_get(classes->items[c], class_keys[i]);
			ck_assert_msg(v && v->type == HJSON_NUMBER, "class entry %zu has no \"%s\"",
			              c, class_keys[i]);
		}
	}
	hjson_free(j);
	ck_assert_str_eq(r.err, "");
	hchild_run_free(&r);
}
END_TEST

START_TEST(test_stats_table)
{
	hchild_run_t r;
	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "stats"), 0);
	static const char *const rows[] = { "arena", "pages total", "pages in use", "pages free",
	                                    "pages released", "objects in use", "bytes in use",
	                                    "clients", "sweepgen", "sweep cycles", "uptime", "MiB" };
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		ck_assert_msg(strstr(r.out, rows[i]) != NULL, "stats has no \"%s\":\n%s", rows[i], r.out);
	hchild_run_free(&r);

	/* The socket also comes from $HEAPD_SOCKET. */
	setenv("HEAPD_SOCKET", daemon_.sock, 1);
	ck_assert_int_eq(HEAPCTL(&r, "stats"), 0);
	hchild_run_free(&r);
	unsetenv("HEAPD_SOCKET");
}
END_TEST

/* A data client (not control): a Hello that takes a slot. Returns the socket. */
static int open_data_client(void)
{
	int fd = hraw_hello_fds(daemon_.sock, 0, NULL, NULL, NULL);
	ck_assert_msg(fd >= 0, "Hello: %s", strerror(-fd));
	return fd;
}

START_TEST(test_clients)
{
	int fd = open_data_client();
	char pid[32], err[256] = "";
	snprintf(pid, sizeof(pid), "%d", (int)getpid());

	hchild_run_t r;
	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "clients"), 0);
	ck_assert_ptr_nonnull(strstr(r.out, "pid"));
	ck_assert_msg(strstr(r.out, pid) != NULL, "clients does not list pid %s:\n%s", pid, r.out);
	hchild_run_free(&r);

	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "clients", "--json"), 0);
	hjson_t *j = hjson_parse(r.out, err, sizeof(err));
	ck_assert_msg(j != NULL, "clients --json is not JSON (%s):\n%s", err, r.out);
	const hjson_t *list = hjson_get(j, "clients");
	ck_assert_msg(list && list->type == HJSON_ARRAY, "no \"clients\" array:\n%s", r.out);
	int found = 0;
	for (size_t i = 0; i < list->n; i++) {
		static const char *const keys[] = { "pid", "uid", "spans_cached", "pages_held", "requests" };
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			ck_assert_msg(hjson_get(list->items[i], keys[k]) != NULL,
			              "client has no \"%s\"", keys[k]);
		if (hjson_get(list->items[i], "pid")->number == (double)getpid())
			found = 1;
	}
	ck_assert_msg(found, "clients --json does not list pid %s:\n%s", pid, r.out);
	hjson_free(j);
	hchild_run_free(&r);
	close(fd);
}
END_TEST

START_TEST(test_sweep_scavenge_check)
{
	hchild_run_t r;
	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "sweep"), 0);
	ck_assert_msg(strncmp(r.out, "swept ", 6) == 0, "sweep said: %s", r.out);
	hchild_run_free(&r);

	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "scavenge"), 0);
	ck_assert_msg(strncmp(r.out, "released ", 9) == 0, "scavenge said: %s", r.out);
	hchild_run_free(&r);

	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "check"), 0);
	ck_assert_str_eq(r.out, "ok\n");
	hchild_run_free(&r);
}
END_TEST

/*
 * A user the daemon does not admit: heapctl exits 3 and passes on the
 * daemon's reason. Needs root, to become nobody (setpriv, of util-linux).
 */
START_TEST(test_refused)
{
	if (getuid() != 0) {
		test_skip("test_refused", "needs root to become nobody");
		return;
	}
	/* Let nobody reach the socket at the file-system level; the daemon still says no. */
	hd_open_up(&daemon_);

	const char *argv[] = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		               heapctl_bin(), "--socket", daemon_.sock, "stats", NULL };
	hchild_run_t r;
	ck_assert_int_eq(hchild_run(&r, RUN_MS, argv), 0);
	const char *err = r.err;
	if (r.status == 126) { /* setpriv could not exec it: a build tree nobody may enter */
		hchild_run_free(&r);
		test_skip("test_refused", "nobody cannot run %s", heapctl_bin());
		return;
	}
	ck_assert_msg(r.status == 3, "exit %d, want 3: %s", r.status, err);
	ck_assert_msg(strstr(err, "refused") != NULL, "no reason given: %s", err);
	ck_assert_msg(strstr(err, daemon_.sock) != NULL, "socket not named: %s", err);
	hchild_run_free(&r);
}
END_TEST

/*
 * Corrupt the shared header's page counter behind the daemon's back: the
 * checker recounts and must report it, and heapctl must exit 1.
 */
START_TEST(test_check_finds_problems)
{
	char meta[256];
	snprintf(meta, sizeof(meta), "%s/%s", daemon_.arena, HEAPD_META_FILE);
	int fd = open(meta, O_RDWR); /* heapd's own uid: the trust boundary does not stand in its way */
	ck_assert_int_ge(fd, 0);
	shm_header_t *hdr = mmap(NULL, sizeof(*hdr), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(hdr, MAP_FAILED);
	hdr->pages_inuse += 3;
	munmap(hdr, sizeof(*hdr));
	close(fd);

	hchild_run_t r;
#ifdef HEAPD_DEBUG
	/* A debug heapd checks after every request and aborts on the first problem of its own. */
	ck_assert_int_ne(HEAPCTL(&r, "--socket", daemon_.sock, "check"), 0);
	ck_assert(hd_wait_log(&daemon_, "header: pages_inuse", 10000));
	ck_assert(hd_log_contains(&daemon_, "debug check after"));
#else
	ck_assert_int_eq(HEAPCTL(&r, "--socket", daemon_.sock, "check"), 1);
	ck_assert_msg(r.outlen > 0 && strcmp(r.out, "ok\n") != 0, "check printed no problem: %s", r.out);
	ck_assert_ptr_nonnull(strstr(r.err, "problem"));
#endif
	hchild_run_free(&r);
}
END_TEST

/* heapctl watch on the daemon, sampling every interval seconds, watched as hchild_run_watch does. */
static void run_watch(hchild_run_t *r, const char *interval, int (*watch)(const hchild_run_t *, void *),
                      void *arg)
{
	const char *argv[] = { heapctl_bin(), "--socket", daemon_.sock, "watch", "--interval", interval,
		               NULL };
	int rc = hchild_run_watch(r, RUN_MS, argv, watch, arg);
	ck_assert_msg(rc == 0, "cannot run %s: %s", argv[0], strerror(-rc));
}

/* When watch's first and third lines came; stop it at the third. */
typedef struct samples {
	uint64_t first_ms, third_ms;
} samples_t;

static int stop_at_third(const hchild_run_t *r, void *arg)
{
	samples_t *t = arg;
	size_t lines = hchild_count_lines(r->out);
	if (lines >= 1 && !t->first_ms)
		t->first_ms = heapd_now_ms();
	if (lines < 3)
		return HCHILD_RUN_GO_ON;
	t->third_ms = heapd_now_ms();
	return HCHILD_RUN_STOP;
}

START_TEST(test_watch_lines)
{
	hchild_run_t r;
	samples_t t = { 0, 0 };
	/* Not a terminal: one line per sample, 0.2 s apart; SIGTERM ends it cleanly. */
	run_watch(&r, "0.2", stop_at_third, &t);
	ck_assert_int_eq(r.stopped, 1);
	ck_assert_int_eq(r.status, 0);
	size_t lines = hchild_count_lines(r.out);
	ck_assert_msg(lines >= 3, "watch printed %zu lines in %d ms:\n%s", lines, RUN_MS, r.out);
	/* the samples keep the interval: two from the first line to the third, less a late read */
	ck_assert_msg(t.third_ms - t.first_ms >= 200, "the third line came %llu ms after the first",
	              (unsigned long long)(t.third_ms - t.first_ms));
	ck_assert_ptr_nonnull(strstr(r.out, "pages_in_use="));
	ck_assert_ptr_null(strstr(r.out, "\033["));
	hchild_run_free(&r);
}
END_TEST

/* Screens watch has drawn into buf. */
static int frames_in(const char *buf)
{
	int frames = 0;
	for (const char *p = buf; (p = strstr(p, "\033[H\033[2J")) != NULL; p++)
		frames++;
	return frames;
}

/* Read what the terminal shows into buf (len bytes at most) until watch has drawn `want` screens. */
static void read_frames(int master, char *buf, size_t len, int want)
{
	size_t got = 0;
	uint64_t end = heapd_now_ms() + RUN_MS;
	buf[0] = '\0';
	while (frames_in(buf) < want && got < len - 1 && heapd_now_ms() < end) {
		struct pollfd p = { .fd = master, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(master, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
	}
}

START_TEST(test_watch_terminal)
{
	/* On a terminal it redraws the screen; script(1) is not assumed, so use a pty directly. */
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	ck_assert_int_ge(master, 0);
	ck_assert_int_eq(grantpt(master), 0);
	ck_assert_int_eq(unlockpt(master), 0);
	const char *slave_name = ptsname(master);
	ck_assert_ptr_nonnull(slave_name);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int slave = open(slave_name, O_RDWR);
		if (slave < 0)
			_exit(126);
		dup2(slave, STDOUT_FILENO);
		execl(heapctl_bin(), "heapctl", "--socket", daemon_.sock, "watch", "--interval", "0.2", (char *)NULL);
		_exit(127);
	}
	static char buf[65536];
	read_frames(master, buf, sizeof(buf), 3);
	kill(pid, SIGINT);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	close(master);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "watch did not exit cleanly on SIGINT");

	int frames = frames_in(buf);
	ck_assert_msg(frames >= 3, "watch drew %d frames in %d ms", frames, RUN_MS);
	ck_assert_ptr_nonnull(strstr(buf, "pages"));
	ck_assert_ptr_nonnull(strstr(buf, "objects"));
}
END_TEST

/* Kill the daemon once watch has printed two lines. */
static int kill_at_second(const hchild_run_t *r, void *arg)
{
	int *killed = arg;
	if (!*killed && hchild_count_lines(r->out) >= 2) {
		kill(daemon_.pid, SIGKILL);
		*killed = 1;
	}
	return HCHILD_RUN_GO_ON;
}

START_TEST(test_watch_daemon_dies)
{
	hchild_run_t r;
	int killed = 0;
	run_watch(&r, "0.1", kill_at_second, &killed);
	ck_assert(killed);
	ck_assert_int_eq(r.stopped, 0);
	ck_assert_int_eq(r.status, 3);
	ck_assert_msg(strstr(r.err, daemon_.sock) != NULL, "stderr does not name the socket: %s", r.err);
	ck_assert_uint_ge(hchild_count_lines(r.out), 2);
	hchild_run_free(&r);
}
END_TEST

/*
 * A stand-in daemon that answers heapctl's Hello, then every profile request
 * with a page whose next cursor is 1: the cursor never moves forward.
 */
static void *stuck_cursor_daemon(void *arg)
{
	int lfd = *(int *)arg, fd;
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	Heapd__Envelope *req;

	/* the listener does not block: wait for heapctl to connect */
	if (poll(&pfd, 1, RUN_MS) != 1 || (fd = accept(lfd, NULL, NULL)) < 0)
		return NULL;
	while (wire_recv(fd, &req, NULL) == 0) {
		Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
		Heapd__HelloReply hello = HEAPD__HELLO_REPLY__INIT;
		Heapd__ProfileReply page = HEAPD__PROFILE_REPLY__INIT;
		Heapd__ProfileSummary sum = HEAPD__PROFILE_SUMMARY__INIT;
		env.seq = req->seq;
		if (req->msg_case == HEAPD__ENVELOPE__MSG_HELLO) {
			hello.page_size = 4096;
			env.msg_case = HEAPD__ENVELOPE__MSG_HELLO_REPLY;
			env.hello_reply = &hello;
		} else {
			page.summary = &sum;
			page.next = 1;
			env.msg_case = HEAPD__ENVELOPE__MSG_PROFILE_REPLY;
			env.profile_reply = &page;
		}
		wire_free(req);
		if (wire_send(fd, &env) < 0)
			break;
	}
	close(fd);
	return NULL;
}

START_TEST(test_profile_cursor_stuck)
{
	char dir[] = "/tmp/heapctl-test-XXXXXX", sock[64];
	pthread_t t;
	hchild_run_t r;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/stuck.sock", dir);
	int lfd = sock_listen(sock, 0600, 1);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(pthread_create(&t, NULL, stuck_cursor_daemon, &lfd), 0);
	/* the old loop asked for page 1 until it was killed */
	ck_assert_int_eq(HEAPCTL(&r, "--socket", sock, "profile", "--top"), 3);
	ck_assert_msg(strstr(r.err, "cursor went back") != NULL, "stderr: %s", r.err);
	hchild_run_free(&r);
	pthread_join(t, NULL);
	close(lfd);
	unlink(sock);
	rmdir(dir);
}
END_TEST

/*
 * Daemons are started by unchecked fixtures, in the runner process: Check
 * skips a checked teardown when a test fails, which would leave the daemon
 * running. Tests that break their daemon get a tcase (and daemon) of their own.
 */
static TCase *daemon_tcase(const char *name)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, daemon_setup, daemon_teardown);
	return tc;
}

static Suite *heapctl_suite(void)
{
	Suite *s = suite_create("heapctl");
	TCase *tc = tcase_create("cli");
	tcase_add_test(tc, test_help_and_version);
	tcase_add_test(tc, test_usage_errors);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_profile_cursor_stuck);
	suite_add_tcase(s, tc);

	tc = daemon_tcase("daemon");
	tcase_add_test(tc, test_stats_json);
	tcase_add_test(tc, test_stats_table);
	tcase_add_test(tc, test_clients);
	tcase_add_test(tc, test_sweep_scavenge_check);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_watch_lines);
	tcase_add_test(tc, test_watch_terminal);
	suite_add_tcase(s, tc);

	tc = daemon_tcase("corrupt");
	tcase_add_test(tc, test_check_finds_problems);
	suite_add_tcase(s, tc);

	tc = daemon_tcase("daemon dies");
	tcase_add_test(tc, test_watch_daemon_dies);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(heapctl_suite);
