// SPDX-License-Identifier: MIT
/*
 * test_systemd.c - heapd under socket activation and the notify protocol,
 * end to end, without a running systemd.
 *
 * systemd-socket-activate binds a socket and, on the first connection,
 * execs heapd with it as an inherited listener (LISTEN_FDS), the way
 * heapd.socket starts heapd.service. This test plays the service manager's
 * other half: it binds the NOTIFY_SOCKET datagram socket and reads what
 * heapd reports. It asserts that
 *
 *   1. heapctl stats, connecting to the activated socket, is served;
 *   2. heapd sends READY=1 and a STATUS= line;
 *   3. heapd used the inherited socket rather than binding its own (the
 *      socket file is the same inode before and after);
 *   4. on SIGTERM heapd sends STOPPING=1 and exits 0.
 *
 * Exits 77 (skipped) when systemd-socket-activate is not installed.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/check_main.h"
#include "harness/child.h"
#include "harness/tmpdir.h"
#include "harness/util.h"

static const char *activate_bin(void)
{
	const char *bin = getenv("SOCKET_ACTIVATE_BIN");
	return bin && *bin && access(bin, X_OK) == 0 ? bin : NULL;
}

/* What the notify listener has seen so far. */
typedef struct notify_log {
	int fd;
	char text[16384]; /* every datagram, one assignment per line */
	size_t len;
} notify_log_t;

static void notify_open(notify_log_t *n, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memset(n, 0, sizeof(*n));
	ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
	strcpy(sa.sun_path, path);
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(n->fd, 0);
	ck_assert_int_eq(bind(n->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

/* 1 if some line of the log starts with prefix. */
static int notify_has(const notify_log_t *n, const char *prefix)
{
	size_t plen = strlen(prefix);
	for (const char *line = n->text; *line;) {
		if (strncmp(line, prefix, plen) == 0)
			return 1;
		const char *nl = strchr(line, '\n');
		if (!nl)
			break;
		line = nl + 1;
	}
	return 0;
}

/* Read datagrams until a line starting with prefix has arrived, or timeout_ms. 1 if it did. */
static int notify_wait(notify_log_t *n, const char *prefix, int timeout_ms)
{
	uint64_t end = heapd_now_ms() + (uint64_t)timeout_ms;
	while (!notify_has(n, prefix)) {
		int64_t left = (int64_t)(end - heapd_now_ms());
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = n->fd, .events = POLLIN };
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		char buf[4096];
		ssize_t len = recv(n->fd, buf, sizeof(buf) - 1, 0);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		if (n->len + (size_t)len + 2 < sizeof(n->text)) {
			memcpy(n->text + n->len, buf, (size_t)len);
			n->len += (size_t)len;
			if (buf[len - 1] != '\n')
				n->text[n->len++] = '\n';
			n->text[n->len] = '\0';
		}
	}
	return 1;
}

/* 1 if a unix socket bound at path listens (/proc/net/unix: the flag __SO_ACCEPTCON). */
static int listening(const char *path)
{
	char line[512];
	int found = 0;
	FILE *f = fopen("/proc/net/unix", "re");
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long flags;
		char name[256] = "";
		if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %255s", &flags, name) == 2)
			found = (flags & 0x10000) && strcmp(name, path) == 0;
	}
	fclose(f);
	return found;
}

START_TEST(test_socket_activation)
{
	char dir[64], sock[128], notify[128], arena[128], logpath[128], listen_arg[160], notify_env[160];
	const char *heapd = getenv("HEAPD_BIN");
	notify_log_t n;
	struct stat before, after;

	ck_assert_ptr_nonnull(heapd);
	htmp_make(dir, sizeof(dir), "heapd-activate", HTMP_DISK);
	snprintf(sock, sizeof(sock), "%s/heapd.sock", dir);
	snprintf(notify, sizeof(notify), "%s/notify", dir);
	snprintf(arena, sizeof(arena), "%s/arena", dir);
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	snprintf(listen_arg, sizeof(listen_arg), "--listen=%s", sock);
	snprintf(notify_env, sizeof(notify_env), "--setenv=NOTIFY_SOCKET=%s", notify);
	notify_open(&n, notify);

	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* If this test dies on a failed assertion, heapd goes with it (the setting survives exec). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		FILE *log = freopen(logpath, "a", stderr);
		if (!log)
			_exit(126);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execl(activate_bin(), "systemd-socket-activate", listen_arg, notify_env, heapd, "--socket", sock,
		      "--arena", arena, "--arena-size", "64M", (char *)NULL);
		_exit(127);
	}

	/*
	 * The activator listens on the socket first; heapd starts on the first
	 * connection, so no connection may test whether it listens yet.
	 */
	ck_assert_msg(hutil_wait_until(listening(sock), 10000),
	              "systemd-socket-activate does not listen on %s", sock);
	ck_assert_int_eq(stat(sock, &before), 0);
	ck_assert_msg(!notify_has(&n, "READY=1"), "READY=1 before anything started");

	hchild_run_t r;
	hchild_run_heapctl(&r, 30000, "--socket", sock, "stats", "--json", (const char *)NULL);
	ck_assert_msg(r.status == 0, "heapctl stats through the activated socket: exit %d: %s", r.status, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "\"pages_total\""));
	hchild_run_free(&r);

	ck_assert_msg(notify_wait(&n, "READY=1", 10000), "no READY=1; got:\n%s", n.text);
	ck_assert_msg(notify_wait(&n, "STATUS=", 10000), "no STATUS= line; got:\n%s", n.text);

	ck_assert_int_eq(stat(sock, &after), 0);
	ck_assert_msg(before.st_ino == after.st_ino, "heapd replaced the activated socket with its own");

	/* systemd-socket-activate execs heapd in place, so pid is heapd now. */
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_msg(notify_wait(&n, "STOPPING=1", 10000), "no STOPPING=1 after SIGTERM; got:\n%s", n.text);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "heapd exited with status 0x%x", st);

	close(n.fd);
	htmp_remove(dir);
}
END_TEST

static Suite *systemd_suite(void)
{
	if (!activate_bin()) {
		fprintf(stderr, "systemd-socket-activate not found ($SOCKET_ACTIVATE_BIN); skipping\n");
		return NULL;
	}
	return test_suite_single("systemd", "activation", 90, NULL, NULL, test_socket_activation, NULL);
}

TEST_SUITES(systemd_suite);
