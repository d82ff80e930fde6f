// SPDX-License-Identifier: MIT
/*
 * test_profile.c - heap profiles end to end: real client processes
 * (profile_prog) sampling every allocation into a real heapd, `heapctl
 * profile` writing pprof files that are decoded here and read by `go tool
 * pprof`, and what must survive: frees by another process, the exit of the
 * allocating process (the leak view), a daemon killed and restarted, a
 * client that writes garbage over every record, samplers killed at random.
 *
 * $PROFILE_KILLS sets how many samplers test_killed_samplers kills (the
 * long run, label "long", kills many more).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "harness/check_main.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "sock.h"
#include "harness/child.h"
#include "harness/json.h"
#include "harness/util.h"
#include "pprof.pb-c.h"
#include "sizeclass.h"

#define RUN_MS 120000
#define N_SITES 400   /* objects per site in `profile_prog sites` */

static hd_t D;

static const char *env_or_fail(const char *name)
{
	const char *v = getenv(name);
	ck_assert_msg(v != NULL, "%s is not set", name);
	return v;
}

static void start_daemon(const char *extra0, const char *extra1)
{
	hd_init(&D);
	D.extra[0] = extra0;
	D.extra[1] = extra0 ? extra1 : NULL;
	int rc = hd_start(&D);
	if (rc < 0) {
		hd_dump_log(&D);
		hd_cleanup(&D);
		ck_abort_msg("heapd did not start: %s", strerror(-rc));
	}
	setenv("HEAPD_SOCKET", D.sock, 1);
	setenv("HEAPD_PROFILE_RATE", "1", 1); /* every allocation is sampled */
	setenv("HOME", D.dir, 1);             /* for go tool pprof */
}

static void daemon_up(void)
{
	start_daemon(NULL, NULL);
}

static void daemon_down(void)
{
	hd_cleanup(&D);
}

/* ---- client processes ---- */

typedef struct prog {
	pid_t pid;
	int in;                  /* its stdin, -1 once closed */
	FILE *out;               /* its stdout */
} prog_t;

/* Start profile_prog with args (up to a NULL). */
static void prog_start(prog_t *p, ...)
{
	const char *argv[8] = { env_or_fail("PROFILE_PROG") };
	int in[2], out[2];
	size_t n = 1;
	va_list ap;
	va_start(ap, p);
	for (const char *a; n < 7 && (a = va_arg(ap, const char *)) != NULL;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	/* close-on-exec: a daemon (re)started meanwhile must not hold its stdin open */
	ck_assert_int_eq(pipe2(in, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = fdopen(out[0], "r");
	ck_assert_ptr_nonnull(p->out);
}

static int prog_wait(prog_t *p)
{
	int st;
	if (p->in >= 0)
		close(p->in);
	p->in = -1;
	while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
		;
	if (p->out)
		fclose(p->out);
	p->out = NULL;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* `sites`: its offsets of site a's surviving objects, up to "ready". Returns how many. */
static size_t read_offsets(prog_t *p, char *buf, size_t cap)
{
	char line[64];
	size_t n = 0, len = 0;
	while (fgets(line, sizeof(line), p->out) && strcmp(line, "ready\n") != 0) {
		size_t l = strlen(line);
		ck_assert_uint_lt(len + l, cap);
		memcpy(buf + len, line, l + 1);
		len += l;
		n++;
	}
	return n;
}

/* Another process frees the objects at these offsets. */
static void free_elsewhere(const char *offsets)
{
	prog_t f;
	prog_start(&f, "free", NULL);
	size_t len = strlen(offsets);
	ck_assert_int_eq(write(f.in, offsets, len), (ssize_t)len);
	ck_assert_int_eq(prog_wait(&f), 0);
}

/* ---- heapctl and the profiles it writes ---- */

static int heapctl(hchild_run_t *r, const char *a0, const char *a1, const char *a2, const char *a3,
                   const char *a4)
{
	const char *argv[] = { env_or_fail("HEAPCTL_BIN"), "--socket", D.sock, a0, a1, a2, a3, a4, NULL };
	int rc = hchild_run(r, RUN_MS, argv);
	ck_assert_msg(rc == 0, "cannot run heapctl: %s", strerror(-rc));
	return r->status;
}

/* The pprof profile `heapctl profile [view] -o FILE` writes, decoded. */
static Pprof__Profile *fetch(const char *view)
{
	char path[256];
	hchild_run_t r;
	snprintf(path, sizeof(path), "%s/profile.pb.gz", D.dir);
	int st = heapctl(&r, "profile", view ? view : "--live", "-o", path, NULL);
	ck_assert_msg(st == 0, "heapctl profile: exit %d: %s", st, r.err);
	hchild_run_free(&r);

	static uint8_t buf[32 << 20];
	gzFile gz = gzopen(path, "rb");
	ck_assert_ptr_nonnull(gz);
	int n = gzread(gz, buf, sizeof(buf));
	gzclose(gz);
	ck_assert_int_gt(n, 0);
	Pprof__Profile *p = pprof__profile__unpack(NULL, (size_t)n, buf);
	ck_assert_msg(p != NULL, "heapctl wrote something that is not a profile");
	return p;
}

/* Totals of the samples whose first frame is in function fn: alloc_objects, alloc_space, inuse_*. */
static void site_totals(const Pprof__Profile *p, const char *fn, int64_t v[4])
{
	memset(v, 0, 4 * sizeof(int64_t));
	ck_assert_uint_eq(p->n_sample_type, 4);
	ck_assert_str_eq(p->string_table[p->sample_type[3]->type], "inuse_space");
	for (size_t i = 0; i < p->n_sample; i++) {
		const Pprof__Sample *s = p->sample[i];
		if (!s->n_location_id)
			continue;
		const Pprof__Location *loc = NULL;
		for (size_t k = 0; k < p->n_location && !loc; k++)
			if (p->location[k]->id == s->location_id[0])
				loc = p->location[k];
		ck_assert_ptr_nonnull(loc);
		if (!loc->n_line)
			continue;
		const Pprof__Function *f = NULL;
		for (size_t k = 0; k < p->n_function && !f; k++)
			if (p->function[k]->id == loc->line[0]->function_id)
				f = p->function[k];
		ck_assert_ptr_nonnull(f);
		if (strcmp(p->string_table[f->name], fn) != 0)
			continue;
		for (int k = 0; k < 4; k++)
			v[k] += s->value[k];
	}
}

static uint64_t size_of(size_t n)
{
	return sizeclass_size[sizeclass_of(n)];
}

/* The profile of `sites`, once the second half of site a's objects were freed elsewhere. */
static void expect_sites(const Pprof__Profile *p, int a_freed)
{
	int64_t a[4], b[4];
	site_totals(p, "alloc_site_a", a);
	site_totals(p, "alloc_site_b", b);
	ck_assert_int_eq(b[0], N_SITES);
	ck_assert_int_eq(b[1], N_SITES * (int64_t)size_of(200));
	ck_assert_int_eq(b[2], N_SITES);
	ck_assert_int_eq(b[3], N_SITES * (int64_t)size_of(200));
	ck_assert_int_eq(a[0], N_SITES);
	ck_assert_int_eq(a[1], N_SITES * (int64_t)size_of(48));
	ck_assert_int_eq(a[2], a_freed ? 0 : N_SITES / 2);
	ck_assert_int_eq(a[3], a_freed ? 0 : N_SITES / 2 * (int64_t)size_of(48));
}

/* Run `sites`: returns it running, with its surviving site-a offsets in offs. */
static void run_sites(prog_t *p, char *offs, size_t cap)
{
	char n[16];
	snprintf(n, sizeof(n), "%d", N_SITES);
	prog_start(p, "sites", n, NULL);
	ck_assert_uint_eq(read_offsets(p, offs, cap), N_SITES / 2);
}

static char offsets[256 << 10];

START_TEST(test_live_sites_and_leaks)
{
	prog_t p;
	hchild_run_t r;

	run_sites(&p, offsets, sizeof(offsets));
	Pprof__Profile *prof = fetch(NULL);
	expect_sites(prof, 0);
	ck_assert_str_eq(prof->string_table[prof->default_sample_type], "inuse_space");
	pprof__profile__free_unpacked(prof, NULL);

	/* the rest of site a's objects, freed by another process: only site b is live */
	free_elsewhere(offsets);
	prof = fetch(NULL);
	expect_sites(prof, 1);
	pprof__profile__free_unpacked(prof, NULL);
	ck_assert_int_eq(heapctl(&r, "profile", "--top", NULL, NULL, NULL), 0);
	ck_assert_msg(strstr(r.out, "alloc_site_b") && !strstr(r.out, "alloc_site_a"), "%s", r.out);
	ck_assert_ptr_nonnull(strstr(r.out, "400 live"));
	hchild_run_free(&r);
	prof = fetch("--alloc");
	ck_assert_str_eq(prof->string_table[prof->default_sample_type], "alloc_space");
	pprof__profile__free_unpacked(prof, NULL);

	/* live: not a leak yet */
	ck_assert_int_eq(heapctl(&r, "profile", "--exited", "--top", NULL, NULL), 0);
	ck_assert_msg(!strstr(r.out, "alloc_site_b"), "%s", r.out);
	hchild_run_free(&r);

	/* the process exits without freeing site b's objects: the leak view shows them */
	ck_assert_int_eq(prog_wait(&p), 0);
	ck_assert_int_eq(heapctl(&r, "profile", "--exited", "--top", "3", NULL), 0);
	ck_assert_msg(strstr(r.out, "alloc_site_b"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "(1 exited)"), "%s", r.out);
	hchild_run_free(&r);
	prof = fetch("--exited");
	int64_t b[4];
	site_totals(prof, "alloc_site_b", b);
	ck_assert_int_eq(b[2], N_SITES);
	pprof__profile__free_unpacked(prof, NULL);

	/* heapctl clients lists the exited process by its estimate */
	char pid[32];
	snprintf(pid, sizeof(pid), " %d ", (int)p.pid);
	ck_assert_int_eq(heapctl(&r, "clients", NULL, NULL, NULL, NULL), 0);
	char *row = strstr(r.out, pid);
	ck_assert_msg(row && strstr(r.out, "exited"), "%s", r.out);
	ck_assert_msg(strstr(row, "81.2 KiB") != NULL, "%s", r.out); /* 400 * 208 bytes */
	hchild_run_free(&r);
}
END_TEST

/*
 * `heapctl clients` attributes live bytes to the process that allocated
 * them, exactly: `profile_prog hold`'s large objects by the pages of their
 * spans (1 MiB and a byte takes 129 pages of 8 KiB), its small ones at
 * their class's size (the small spans charged to it hold nothing else).
 */
START_TEST(test_clients_live_bytes)
{
	const uint64_t large = 3 * 129 * 8192ull, small = 100 * size_of(1000);
	prog_t p;
	hchild_run_t r;
	char err[128];

	prog_start(&p, "hold", NULL);
	ck_assert_uint_eq(read_offsets(&p, offsets, sizeof(offsets)), 0);
	ck_assert_int_eq(heapctl(&r, "clients", "--json", NULL, NULL, NULL), 0);
	hjson_t *j = hjson_parse(r.out, err, sizeof(err));
	ck_assert_msg(j != NULL, "heapctl clients --json: %s: %s", err, r.out);
	const hjson_t *list = hjson_get(j, "clients"), *me = NULL;
	ck_assert_msg(list && list->type == HJSON_ARRAY, "%s", r.out);
	for (size_t i = 0; i < list->n && !me; i++) {
		const hjson_t *pid = hjson_get(list->items[i], "pid");
		if (pid && pid->number == (double)p.pid)
			me = list->items[i];
	}
	ck_assert_msg(me != NULL, "pid %d is not listed: %s", (int)p.pid, r.out);
	const hjson_t *live_large = hjson_get(me, "live_large_bytes");
	const hjson_t *live_small = hjson_get(me, "live_small_bytes");
	ck_assert_msg(live_large && live_small, "%s", r.out);
	ck_assert_msg(live_large->number == (double)large, "live_large_bytes %.0f, want %llu: %s",
	              live_large->number, (unsigned long long)large, r.out);
	ck_assert_msg(live_small->number == (double)small, "live_small_bytes %.0f, want %llu: %s",
	              live_small->number, (unsigned long long)small, r.out);
	hjson_free(j);
	hchild_run_free(&r);
	ck_assert_int_eq(prog_wait(&p), 0);
}
END_TEST

START_TEST(test_go_pprof_reads_it)
{
	prog_t p;
	char path[256];
	hchild_run_t r;

	run_sites(&p, offsets, sizeof(offsets));
	ck_assert_int_eq(prog_wait(&p), 0);
	snprintf(path, sizeof(path), "%s/leaks.pb.gz", D.dir);
	ck_assert_int_eq(heapctl(&r, "profile", "--exited", "-o", path, NULL), 0);
	hchild_run_free(&r);
	const char *argv[] = { "go", "tool", "pprof", "-top", "-sample_index=inuse_space", path, NULL };
	int rc = hchild_run(&r, RUN_MS, argv);
	ck_assert_msg(rc == 0, "cannot run go (scripts/deps installs golang-go): %s", strerror(-rc));
	ck_assert_msg(r.status == 0, "go tool pprof: exit %d\n%s\n%s", r.status, r.out, r.err);
	ck_assert_msg(strstr(r.out, "alloc_site_b") != NULL, "go tool pprof -top:\n%s", r.out);
	ck_assert_msg(strstr(r.out, "main") != NULL, "no caller of the site:\n%s", r.out);
	hchild_run_free(&r);
}
END_TEST

START_TEST(test_restart_keeps_profile)
{
	prog_t p;

	run_sites(&p, offsets, sizeof(offsets));
	free_elsewhere(offsets);
	Pprof__Profile *before = fetch(NULL);
	expect_sites(before, 1);

	/* heapd killed, and started again on the same arena: the records are in its data file */
	hd_stop(&D, SIGKILL);
	ck_assert_int_eq(hd_start(&D), 0);
	Pprof__Profile *after = fetch(NULL);
	expect_sites(after, 1);
	ck_assert_uint_eq(after->n_sample, before->n_sample);
	pprof__profile__free_unpacked(before, NULL);
	pprof__profile__free_unpacked(after, NULL);

	hchild_run_t r;
	ck_assert_int_eq(heapctl(&r, "check", NULL, NULL, NULL, NULL), 0);
	hchild_run_free(&r);
	ck_assert_int_eq(prog_wait(&p), 0);
}
END_TEST

START_TEST(test_garbage_records)
{
	prog_t p;
	hchild_run_t r;

	run_sites(&p, offsets, sizeof(offsets));
	ck_assert_int_eq(prog_wait(&p), 0);
	prog_start(&p, "scribble", NULL);
	ck_assert_int_eq(prog_wait(&p), 0);

	/* the checker reports the garbage; heapd and heapctl carry on */
	ck_assert_int_eq(heapctl(&r, "check", NULL, NULL, NULL, NULL), 1);
	ck_assert_msg(strstr(r.out, "profile: ") != NULL, "%s", r.out);
	hchild_run_free(&r);
	ck_assert_int_eq(heapctl(&r, "stats", NULL, NULL, NULL, NULL), 0);
	hchild_run_free(&r);
	ck_assert_int_eq(heapctl(&r, "profile", "--top", NULL, NULL, NULL), 0);
	ck_assert_msg(strstr(r.out, "heap profile:") != NULL, "%s", r.out);
	hchild_run_free(&r);
	char path[256];
	snprintf(path, sizeof(path), "%s/garbage.pb.gz", D.dir);
	ck_assert_int_eq(heapctl(&r, "profile", "-o", path, NULL, NULL), 0);
	hchild_run_free(&r);
	ck_assert_int_eq(heapctl(&r, "clients", NULL, NULL, NULL, NULL), 0);
	hchild_run_free(&r);
	ck_assert_int_eq(kill(D.pid, 0), 0);
	ck_assert(hd_wait_log(&D, "held garbage", 1000));

	/* heapd cleared what it could not use: the check passes, and sampling works again */
	ck_assert_int_eq(heapctl(&r, "check", NULL, NULL, NULL, NULL), 0);
	hchild_run_free(&r);
	run_sites(&p, offsets, sizeof(offsets));
	Pprof__Profile *prof = fetch(NULL);
	int64_t b[4];
	site_totals(prof, "alloc_site_b", b);
	ck_assert_int_ge(b[2], N_SITES); /* the new process's, and whatever survived the scribbling */
	pprof__profile__free_unpacked(prof, NULL);
	ck_assert_int_eq(prog_wait(&p), 0);
}
END_TEST

START_TEST(test_pages_and_dropped)
{
	prog_t p;
	hchild_run_t r;

	/* 30000 samples: a snapshot of several pages */
	hd_cleanup(&D);
	start_daemon("--profile-records", "65536");
	prog_start(&p, "sites", "15000", NULL);
	ck_assert_uint_eq(read_offsets(&p, offsets, sizeof(offsets)), 7500);
	ck_assert_int_eq(prog_wait(&p), 0);
	Pprof__Profile *prof = fetch("--alloc");
	int64_t a[4], b[4];
	site_totals(prof, "alloc_site_a", a);
	site_totals(prof, "alloc_site_b", b);
	ck_assert_int_eq(a[0], 15000);
	ck_assert_int_eq(b[0], 15000);
	ck_assert_int_eq(a[2], 7500);
	pprof__profile__free_unpacked(prof, NULL);

	/* too few records: samples are dropped, and the profile says how many */
	hd_cleanup(&D);
	start_daemon("--profile-records", "64");
	prog_start(&p, "sites", "200", NULL);
	ck_assert_uint_eq(read_offsets(&p, offsets, sizeof(offsets)), 100);
	ck_assert_int_eq(heapctl(&r, "profile", "--top", NULL, NULL, NULL), 0);
	ck_assert_msg(strstr(r.out, " 0 dropped") == NULL && strstr(r.out, "dropped"), "%s", r.out);
	hchild_run_free(&r);
	prof = fetch(NULL);
	ck_assert_uint_eq(prof->n_comment, 2);
	ck_assert_msg(strstr(prof->string_table[prof->comment[1]], "dropped") &&
	              prof->string_table[prof->comment[1]][0] != '0',
	              "%s", prof->string_table[prof->comment[1]]);
	pprof__profile__free_unpacked(prof, NULL);
	ck_assert_int_eq(prog_wait(&p), 0);
}
END_TEST

START_TEST(test_killed_samplers)
{
	const char *s = getenv("PROFILE_KILLS");
	int kills = s ? atoi(s) : 12;
	hchild_run_t r;
	unsigned seed = (unsigned)getpid();

	for (int k = 0; k < kills; k++) {
		prog_t p[2];
		for (int i = 0; i < 2; i++)
			prog_start(&p[i], "churn", NULL);
		hutil_sleep_us(1000 * (5 + (int)(rand_r(&seed) % 60)));
		for (int i = 0; i < 2; i++) {
			kill(p[i].pid, SIGKILL);
			prog_wait(&p[i]);
		}
	}
	ck_assert_int_eq(heapctl(&r, "sweep", NULL, NULL, NULL, NULL), 0);
	hchild_run_free(&r);
	ck_assert_int_eq(heapctl(&r, "check", NULL, NULL, NULL, NULL), 0);
	hchild_run_free(&r);
	ck_assert_int_eq(heapctl(&r, "profile", "--exited", "--top", NULL, NULL), 0);
	ck_assert_msg(strstr(r.out, " 0 garbage") != NULL, "%s", r.out);
	hchild_run_free(&r);
	/* every live sample is a live object: the leak view's total is at most what is allocated */
	Pprof__Profile *prof = fetch("--exited");
	int64_t live = 0;
	for (size_t i = 0; i < prof->n_sample; i++)
		live += prof->sample[i]->value[3];
	pprof__profile__free_unpacked(prof, NULL);
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(D.sock, &owner);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_le(live, (int64_t)st->bytes_in_use);
	wire_free(owner);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("profile");
	TCase *tc = tcase_create("e2e");
	tcase_add_checked_fixture(tc, daemon_up, daemon_down);
	tcase_add_test(tc, test_live_sites_and_leaks);
	tcase_add_test(tc, test_clients_live_bytes);
	tcase_add_test(tc, test_go_pprof_reads_it);
	tcase_add_test(tc, test_restart_keeps_profile);
	tcase_add_test(tc, test_garbage_records);
	tcase_add_test(tc, test_pages_and_dropped);
	tcase_add_test(tc, test_killed_samplers);
	tcase_set_timeout(tc, 600);
	suite_add_tcase(s, tc);
	return s;
}

TEST_SUITES(suite);
