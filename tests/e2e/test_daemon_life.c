// SPDX-License-Identifier: MIT
/*
 * test_daemon_life.c - heapd's command line, config file, start-up and
 * shutdown: exit codes, one daemon per arena and socket, stale sockets,
 * restarts on an existing arena, and unusable arenas.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "bitmap.h"
#include "harness/heapd.h"
#include "harness/ctl.h"
#include "harness/raw.h"
#include "harness/util.h"

#define RUN_MS 20000 /* heapd in the foreground exits at once on these errors */

static char out[8192];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(test_help_version)
{
	const char *help[] = { "--help", NULL };
	const char *version[] = { "--version", NULL };
	int st = hd_run_heapd(help, out, sizeof(out), RUN_MS);
	ck_assert(st == 0);
	ck_assert_ptr_nonnull(strstr(out, "--arena-size"));
	ck_assert_ptr_nonnull(strstr(out, "--client-quota"));
	st = hd_run_heapd(version, out, sizeof(out), RUN_MS);
	ck_assert(st == 0);
	ck_assert_str_eq(out, "heapd " HEAPD_VERSION "\n");
}
END_TEST

START_TEST(test_usage_errors)
{
	const char *cases[][4] = {
		{ "--bogus", NULL },
		{ "--arena-size", "12X", NULL },
		{ "--arena-size", "0", NULL },
		{ "--arena-size", "99999999T", NULL },
		{ "--socket", NULL },
		{ "--max-clients", "0", NULL },
		{ "--sweep-interval", "-1", NULL },
		{ "--allow-uid", "no-such-user-here", NULL },
		{ "--config", "/nonexistent/heapd.conf", NULL },
		{ "stray", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = hd_run_heapd(cases[i], out, sizeof(out), RUN_MS);
		ck_assert_msg(st == 2, "%s: status %d", cases[i][0], st);
		ck_assert_msg(strstr(out, "heapd: ") != NULL, "%s: no message", cases[i][0]);
	}
}
END_TEST

START_TEST(test_config_errors_name_the_line)
{
	char conf[256], arg[300];
	hd_default_init();
	snprintf(conf, sizeof(conf), "%s/heapd.conf", hd_default.dir);
	const char *args[] = { "--config", conf, NULL };

	write_file(conf, "# heapd\n\nsocket = /tmp/x.sock\nfrobnicate = 3\n");
	int st = hd_run_heapd(args, out, sizeof(out), RUN_MS);
	ck_assert(st == 2);
	snprintf(arg, sizeof(arg), "%s:4:", conf);
	ck_assert_msg(strstr(out, arg) && strstr(out, "frobnicate"), "got: %s", out);

	write_file(conf, "arena-size = 12 apples\n");
	st = hd_run_heapd(args, out, sizeof(out), RUN_MS);
	ck_assert(st == 2);
	snprintf(arg, sizeof(arg), "%s:1:", conf);
	ck_assert_msg(strstr(out, arg) && strstr(out, "arena-size"), "got: %s", out);

	write_file(conf, "just words\n");
	st = hd_run_heapd(args, out, sizeof(out), RUN_MS);
	ck_assert(st == 2);
	ck_assert_msg(strstr(out, arg), "got: %s", out);
	hd_default_stop();
}
END_TEST

START_TEST(test_config_file_and_override)
{
	char conf[256], text[1024], other[256];
	hd_default_init();
	snprintf(conf, sizeof(conf), "%s/heapd.conf", hd_default.dir);
	snprintf(other, sizeof(other), "%s/other.sock", hd_default.dir);
	/* the file names a socket and a size; the command line (harness) overrides both */
	snprintf(text, sizeof(text),
	         "# comment\nsocket = %s\narena-size = 64M\nsweep-interval = 2\n"
	         "scavenge-delay = 10\nmax-clients = 16\nclient-quota = 0\nallow-uid = 0\n"
	         "allow-gid = root\n",
	         other);
	write_file(conf, text);
	hd_default.extra[0] = "--config";
	hd_default.extra[1] = conf;
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(access(other, F_OK) != 0);
	ck_assert(hd_log_contains(&hd_default, "read config file"));
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_ptr_nonnull(st);
	ck_assert_uint_eq(st->arena_bytes, 256ULL << 20);
	wire_free(owner);
	hd_default_stop();
}
END_TEST

START_TEST(test_sigterm_clean)
{
	hraw_t c;
	hd_default_init();
	ck_assert_int_eq(hd_start(&hd_default), 0);
	struct stat sb;
	ck_assert_int_eq(stat(hd_default.sock, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0660);
	ck_assert_int_eq(stat(hd_default.arena, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0700);
	ck_assert_int_eq(stat(hd_arena_file(&hd_default, HEAPD_META_FILE), &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	ck_assert_int_eq(stat(hd_arena_file(&hd_default, HEAPD_DATA_FILE), &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_uint_eq(c.seg.hdr->clean_shutdown, 0);
	uint32_t gen = c.seg.hdr->generation;
	int status = hd_stop(&hd_default, SIGTERM);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert(access(hd_default.sock, F_OK) != 0);
	ck_assert_uint_eq(c.seg.hdr->clean_shutdown, 1);
	ck_assert(hd_log_contains(&hd_default, "shutting down"));
	hraw_close(&c);

	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(hd_log_contains(&hd_default, "clean shutdown"));
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	ck_assert_uint_eq(c.seg.hdr->generation, gen + 1);
	hraw_close(&c);
	status = hd_stop(&hd_default, SIGINT);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	hd_default_stop();
}
END_TEST

START_TEST(test_second_daemon_refused)
{
	char sock2[256], arena2[256];
	hd_default_init();
	ck_assert_int_eq(hd_start(&hd_default), 0);
	snprintf(sock2, sizeof(sock2), "%s/sock2", hd_default.dir);
	snprintf(arena2, sizeof(arena2), "%s/arena2", hd_default.dir);

	/* same arena, other socket */
	const char *same_arena[] = { "--socket", sock2, "--arena", hd_default.arena, NULL };
	int st = hd_run_heapd(same_arena, out, sizeof(out), RUN_MS);
	ck_assert(st == 1);
	ck_assert_msg(strstr(out, "in use by another heapd"), "got: %s", out);
	ck_assert(access(sock2, F_OK) != 0);

	/* same socket, other arena */
	const char *same_sock[] = { "--socket", hd_default.sock, "--arena", arena2, "--arena-size",
	                           "16M", NULL };
	st = hd_run_heapd(same_sock, out, sizeof(out), RUN_MS);
	ck_assert(st == 1);
	ck_assert_msg(strstr(out, "another heapd is serving"), "got: %s", out);

	/* the first one is untouched */
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hd_default_stop();
}
END_TEST

START_TEST(test_stale_socket)
{
	hd_default_init();
	ck_assert_int_eq(hd_start(&hd_default), 0);
	hd_stop(&hd_default, SIGKILL);
	ck_assert_int_eq(access(hd_default.sock, F_OK), 0); /* left behind */
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(hd_log_contains(&hd_default, "removed stale socket"));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hd_default_stop();
}
END_TEST

START_TEST(test_not_a_socket_refused)
{
	hd_default_init();
	write_file(hd_default.sock, "precious\n");
	const char *args[] = { "--socket", hd_default.sock, "--arena", hd_default.arena,
	                      "--arena-size", "16M", NULL };
	int st = hd_run_heapd(args, out, sizeof(out), RUN_MS);
	ck_assert(st == 1);
	ck_assert_msg(strstr(out, "not a socket"), "got: %s", out);
	hd_default_stop();
}
END_TEST

START_TEST(test_restart_keeps_objects)
{
	hraw_t c;
	Heapd__Envelope *reply;
	uint32_t large[4];
	hd_default_init();
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(hraw_large_alloc(c.fd, 100000 + i * 50000, 0, 0, &reply), 0);
		ck_assert_int_eq(reply->msg_case, HEAPD__ENVELOPE__MSG_LARGE_ALLOC_REPLY);
		large[i] = reply->large_alloc_reply->span;
		wire_free(reply);
		hutil_fill(segment_page_addr(&c.seg, large[i]), 100000 + i * 50000, large[i]);
	}
	/* a small span with objects, handed back to central */
	ck_assert_int_eq(hraw_refill(c.fd, 3, 1, NULL, 0, &reply), 0);
	uint32_t small = reply->refill_reply->spans[0]->span;
	wire_free(reply);
	bitmap_store(segment_allocbits(&c.seg, small), 0x5);
	hutil_fill(segment_page_addr(&c.seg, small), HEAPD_PAGE_SIZE, 99);
	ck_assert_int_eq(hraw_refill(c.fd, 0, 0, &small, 1, &reply), 0);
	wire_free(reply);
	/* one large object freed, its LargeFree lost with the daemon */
	bitmap_mark_free(segment_allocbits(&c.seg, large[3]), segment_freebits(&c.seg, large[3], 1), 0);
	hraw_close(&c);

	hd_stop(&hd_default, SIGKILL);
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(hd_log_contains(&hd_default, "unclean shutdown"));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	ck_assert_int_eq(hraw_hello(hd_default.sock, &c), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(c.seg.spans[large[i]].state, SPAN_LARGE);
		ck_assert(hutil_verify(segment_page_addr(&c.seg, large[i]), 100000 + i * 50000, large[i]));
	}
	ck_assert(hutil_verify(segment_page_addr(&c.seg, small), HEAPD_PAGE_SIZE, 99));
	ck_assert_uint_eq(c.seg.spans[small].state, SPAN_SMALL);
	Heapd__Envelope *owner;
	Heapd__StatsReply *st = hctl_stats(hd_default.sock, &owner);
	ck_assert_uint_eq(st->large_objects, 3);
	ck_assert_uint_eq(st->objects_in_use, 3 + 2);
	wire_free(owner);
	/* new allocations never overlap what survived */
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(hraw_large_alloc(c.fd, 70000, 0, 0, &reply), 0);
		uint32_t id = reply->large_alloc_reply->span;
		wire_free(reply);
		for (int j = 0; j < 3; j++)
			ck_assert(id + c.seg.spans[id].npages <= large[j] ||
			          large[j] + c.seg.spans[large[j]].npages <= id);
		ck_assert(id != small);
	}
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hraw_close(&c);
	hd_default_stop();
}
END_TEST

START_TEST(test_unusable_arena)
{
	char buf[4096];
	hd_default_init();
	memset(buf, 'G', sizeof(buf));
	ck_assert_int_eq(mkdir(hd_default.arena, 0700), 0);
	int fd = open(hd_arena_file(&hd_default, HEAPD_META_FILE), O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	fd = open(hd_arena_file(&hd_default, HEAPD_DATA_FILE), O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);

	const char *args[] = { "--socket", hd_default.sock, "--arena", hd_default.arena,
	                      "--arena-size", "16M", NULL };
	int st = hd_run_heapd(args, out, sizeof(out), RUN_MS);
	ck_assert(st == 1);
	ck_assert_msg(strstr(out, "unusable") && strstr(out, "--reset"), "got: %s", out);
	/* untouched */
	struct stat sb;
	ck_assert_int_eq(stat(hd_arena_file(&hd_default, HEAPD_META_FILE), &sb), 0);
	ck_assert_int_eq(sb.st_size, (off_t)sizeof(buf));
	fd = open(hd_arena_file(&hd_default, HEAPD_META_FILE), O_RDONLY);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_int_eq(buf[i], 'G');
	ck_assert(access(hd_default.sock, F_OK) != 0);

	/* --reset lays it out anew */
	hd_default.extra[0] = "--reset";
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(hd_log_contains(&hd_default, "laying it out anew"));
	ck_assert_int_eq(hctl_check(hd_default.sock), 0);
	hd_stop(&hd_default, SIGTERM);
	/* --reset on a valid arena leaves it alone */
	ck_assert_int_eq(hd_start(&hd_default), 0);
	ck_assert(hd_log_contains(&hd_default, "--reset left it as it is"));
	hd_default_stop();
}
END_TEST

Suite *daemon_life_suite(void)
{
	return test_suite_single("daemon-life", "life", 60, NULL, NULL,
	                         test_help_version,
	                         test_usage_errors,
	                         test_config_errors_name_the_line,
	                         test_config_file_and_override,
	                         test_sigterm_clean,
	                         test_second_daemon_refused,
	                         test_stale_socket,
	                         test_not_a_socket_refused,
	                         test_restart_keeps_objects,
	                         test_unusable_arena,
	                         NULL);
}

TEST_SUITES(daemon_life_suite);
