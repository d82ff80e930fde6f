// SPDX-License-Identifier: MIT
/*
 * heapctl.c - the operator's command line for heapd.
 *
 *   heapctl [--socket PATH] stats [--json] | clients [--json] | sweep |
 *           scavenge | check | watch [--interval SECONDS]
 *
 * heapctl is a control client of the protocol in proto/heap.proto: it
 * connects, sends a Hello with control = true (no client slot, no arena
 * descriptor), then sends one request per sample and prints the reply.
 * Rendering lives in heapctl_format.c.
 *
 * Data goes to stdout, diagnostics to stderr. The exit codes are part of the
 * interface, since scripts test them:
 *   0  success
 *   1  `check` found problems, or the daemon answered a request with Error
 *   2  usage error
 *   3  the daemon cannot be reached (connect, Hello, or a lost connection)
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "heapctl_format.h"
#include "wire.h"

enum {
	EXIT_PROBLEMS = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
};

#define CTL_TIMEOUT_S 60 /* a daemon that does not answer in this time counts as unreachable */
#define STR_(x) #x
#define STR(x) STR_(x)

/* One control connection. */
typedef struct ctl {
	const char *socket;  /* path, for messages */
	int fd;
	uint32_t page_size;  /* from HelloReply; 0 if the daemon did not say */
} ctl_t;

static volatile sig_atomic_t stop_requested;

static const char usage_text[] =
	"Usage: heapctl [--socket PATH] COMMAND [OPTIONS]\n"
	"\n"
	"Inspect and steer a running heapd.\n"
	"\n"
	"Commands:\n"
	"  stats [--json]              arena, page and object counts, per size class\n"
	"  clients [--json]            connected clients and what they hold\n"
	"  sweep                       run a sweep cycle now\n"
	"  scavenge                    release every free page to the OS now\n"
	"  check                       run the daemon's invariant checker\n"
	"  watch [--interval SECONDS]  live view, redrawn every SECONDS (default 1)\n"
	"\n"
	"Options:\n"
	"  -s, --socket PATH  daemon socket (default: $HEAPD_SOCKET, else " HEAPD_DEFAULT_SOCKET ")\n"
	"  -h, --help         show this help\n"
	"  -V, --version      show the version\n"
	"\n"
	"Exit status: 0 ok, 1 problems found or request refused, 2 usage error,\n"
	"3 daemon unreachable.\n";

static void usage_error(const char *fmt, ...)
{
	if (fmt) {
		va_list ap;
		fputs("heapctl: ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputs("\n", stderr);
	}
	fputs("Try 'heapctl --help' for more information.\n", stderr);
	exit(EXIT_USAGE);
}

static void die(int code, const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("heapctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	exit(code);
}

/* ---- the connection ---- */

static int ctl_connect_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = CTL_TIMEOUT_S };

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Name a transport error for a message; timeouts show as such rather than as EAGAIN. */
static const char *ctl_strerror(int rc)
{
	if (rc == -EAGAIN || rc == -EWOULDBLOCK)
		return "no reply within " STR(CTL_TIMEOUT_S) " seconds";
	if (rc == -ECONNRESET)
		return "connection closed by the daemon";
	if (rc == -EPROTO)
		return "malformed reply";
	return strerror(-rc);
}

/* Connect and introduce ourselves as a control client, or exit 3. */
static void ctl_open(ctl_t *c, const char *socket)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT, *reply = NULL;
	Heapd__Hello hello = HEAPD__HELLO__INIT;

	c->socket = socket;
	c->fd = ctl_connect_socket(socket);
	if (c->fd < 0)
		die(EXIT_UNREACHABLE, "cannot connect to %s: %s", socket, strerror(-c->fd));
	hello.version = HEAPD_PROTOCOL_VERSION;
	hello.control = 1;
	hello.pid = (uint32_t)getpid();
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	/*
	 * A daemon that refuses us writes an Error and closes, perhaps before
	 * our Hello arrives; read its reason even when the send failed.
	 */
	int send_rc = wire_send(c->fd, &env);
	int rc = wire_recv(c->fd, &reply, NULL);
	if (rc < 0)
		die(EXIT_UNREACHABLE, "%s: hello failed: %s", socket, ctl_strerror(send_rc < 0 ? send_rc : rc));
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		die(EXIT_UNREACHABLE, "%s: daemon refused the connection: %s", socket, reply->error->message);
	if (reply->msg_case != HEAPD__ENVELOPE__MSG_HELLO_REPLY)
		die(EXIT_UNREACHABLE, "%s: unexpected reply to hello", socket);
	c->page_size = reply->hello_reply->page_size;
	wire_free(reply);
}

/*
 * Send req and return the reply, which must be of case `want`. A lost
 * connection exits 3; an Error reply prints the daemon's message and exits 1.
 */
static Heapd__Envelope *ctl_call(ctl_t *c, const char *what, Heapd__Envelope *req, Heapd__Envelope__MsgCase want)
{
	Heapd__Envelope *reply = NULL;
	int rc = wire_call(c->fd, req, &reply, NULL);
	if (rc < 0)
		die(EXIT_UNREACHABLE, "%s: %s: %s", c->socket, what, ctl_strerror(rc));
	if (reply->msg_case == HEAPD__ENVELOPE__MSG_ERROR)
		die(EXIT_PROBLEMS, "%s: %s (%s)", what, reply->error->message, strerror(reply->error->code));
	if (reply->msg_case != want)
		die(EXIT_PROBLEMS, "%s: unexpected reply from the daemon", what);
	return reply;
}

static Heapd__Envelope *ctl_stats(ctl_t *c)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__StatsRequest req = HEAPD__STATS_REQUEST__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_STATS;
	env.stats = &req;
	return ctl_call(c, "stats", &env, HEAPD__ENVELOPE__MSG_STATS_REPLY);
}

/* ---- commands ---- */

typedef struct cmd_opts {
	int json;
	double interval;
} cmd_opts_t;

static int cmd_stats(ctl_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope *reply = ctl_stats(c);
	if (o->json)
		format_json(stdout, &reply->stats_reply->base);
	else
		format_stats(stdout, reply->stats_reply);
	wire_free(reply);
	return 0;
}

static int cmd_clients(ctl_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	Heapd__Envelope *reply = ctl_call(c, "clients", &env, HEAPD__ENVELOPE__MSG_CLIENTS_REPLY);
	if (o->json)
		format_json(stdout, &reply->clients_reply->base);
	else
		format_clients(stdout, reply->clients_reply);
	wire_free(reply);
	return 0;
}

static int cmd_sweep(ctl_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__SweepRequest req = HEAPD__SWEEP_REQUEST__INIT;
	(void)o;
	env.msg_case = HEAPD__ENVELOPE__MSG_SWEEP;
	env.sweep = &req;
	Heapd__Envelope *reply = ctl_call(c, "sweep", &env, HEAPD__ENVELOPE__MSG_OK);
	printf("swept %" PRIu64 " spans\n", reply->ok->value);
	wire_free(reply);
	return 0;
}

static int cmd_scavenge(ctl_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ScavengeRequest req = HEAPD__SCAVENGE_REQUEST__INIT;
	char mib[32];
	(void)o;
	env.msg_case = HEAPD__ENVELOPE__MSG_SCAVENGE;
	env.scavenge = &req;
	Heapd__Envelope *reply = ctl_call(c, "scavenge", &env, HEAPD__ENVELOPE__MSG_OK);
	uint64_t pages = reply->ok->value;
	if (c->page_size)
		printf("released %" PRIu64 " pages (%s)\n", pages,
		       format_mib(pages * c->page_size, mib, sizeof(mib)));
	else
		printf("released %" PRIu64 " pages\n", pages);
	wire_free(reply);
	return 0;
}

static int cmd_check(ctl_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__CheckRequest req = HEAPD__CHECK_REQUEST__INIT;
	(void)o;
	env.msg_case = HEAPD__ENVELOPE__MSG_CHECK;
	env.check = &req;
	Heapd__Envelope *reply = ctl_call(c, "check", &env, HEAPD__ENVELOPE__MSG_CHECK_REPLY);
	const Heapd__CheckReply *r = reply->check_reply;
	uint64_t n = r->nproblems > r->n_problems ? r->nproblems : r->n_problems;
	if (n == 0) {
		puts("ok");
		wire_free(reply);
		return 0;
	}
	for (size_t i = 0; i < r->n_problems; i++)
		puts(r->problems[i]);
	if (n > r->n_problems)
		printf("(%" PRIu64 " more problems not listed)\n", n - r->n_problems);
	fflush(stdout);
	fprintf(stderr, "heapctl: check found %" PRIu64 " problem%s\n", n, n == 1 ? "" : "s");
	wire_free(reply);
	return EXIT_PROBLEMS;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep until `until` (CLOCK_MONOTONIC seconds) or a stop signal. */
static void sleep_until(double until)
{
	while (!stop_requested) {
		double left = until - now_seconds();
		if (left <= 0)
			return;
		struct timespec ts = { (time_t)left, (long)((left - floor(left)) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

static int terminal_rows(void)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0)
		return ws.ws_row;
	return 0;
}

static int cmd_watch(ctl_t *c, const cmd_opts_t *o)
{
	struct sigaction sa = { .sa_handler = on_stop_signal };
	Heapd__Envelope *prev = NULL;
	double prev_t = 0;
	int tty = isatty(STDOUT_FILENO);

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	double next = now_seconds();
	while (!stop_requested) {
		Heapd__Envelope *cur = ctl_stats(c);
		double t = now_seconds();
		if (tty)
			format_watch_frame(stdout, c->socket, o->interval, cur->stats_reply,
			                   prev ? prev->stats_reply : NULL, t - prev_t, terminal_rows());
		else
			format_watch_line(stdout, cur->stats_reply);
		fflush(stdout);
		wire_free(prev);
		prev = cur;
		prev_t = t;
		next += o->interval;
		if (next < t)
			next = t; /* a slow daemon: do not try to catch up */
		sleep_until(next);
	}
	wire_free(prev);
	return 0;
}

/* ---- command line ---- */

typedef struct command {
	const char *name;
	int (*run)(ctl_t *c, const cmd_opts_t *o);
	int json;       /* accepts --json */
	int interval;   /* accepts --interval */
} command_t;

static const command_t commands[] = {
	{ "stats", cmd_stats, 1, 0 },
	{ "clients", cmd_clients, 1, 0 },
	{ "sweep", cmd_sweep, 0, 0 },
	{ "scavenge", cmd_scavenge, 0, 0 },
	{ "check", cmd_check, 0, 0 },
	{ "watch", cmd_watch, 0, 1 },
};

enum { OPT_JSON = 256, OPT_INTERVAL };

static double parse_interval(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0.01 || v > 86400)
		usage_error("invalid interval '%s' (seconds, at least 0.01)", s);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option global_opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const struct option cmd_opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "interval", required_argument, NULL, OPT_INTERVAL },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket = NULL;
	cmd_opts_t o = { .interval = 1.0 };
	const command_t *cmd = NULL;
	int opt;

	/* Global options stop at the command name ('+'). */
	while ((opt = getopt_long(argc, argv, "+s:hV", global_opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (!*optarg)
				usage_error("--socket needs a path");
			socket = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("heapctl %s\n", HEAPD_VERSION);
			return 0;
		default:
			usage_error(NULL);
		}
	}
	if (optind >= argc)
		usage_error("no command given");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd)
		usage_error("unknown command '%s'", argv[optind]);

	/* The command's own options; --socket is accepted here too. */
	int cargc = argc - optind;
	char **cargv = argv + optind;
	optind = 1;
	while ((opt = getopt_long(cargc, cargv, "s:h", cmd_opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (!*optarg)
				usage_error("--socket needs a path");
			socket = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case OPT_JSON:
			if (!cmd->json)
				usage_error("%s does not take --json", cmd->name);
			o.json = 1;
			break;
		case OPT_INTERVAL:
			if (!cmd->interval)
				usage_error("%s does not take --interval", cmd->name);
			o.interval = parse_interval(optarg);
			break;
		default:
			usage_error(NULL);
		}
	}
	if (optind < cargc)
		usage_error("unexpected argument '%s'", cargv[optind]);

	if (!socket)
		socket = getenv("HEAPD_SOCKET");
	if (!socket || !*socket)
		socket = HEAPD_DEFAULT_SOCKET;

	ctl_t c;
	ctl_open(&c, socket);
	int rc = cmd->run(&c, &o);
	close(c.fd);
	if (fflush(stdout) != 0 || ferror(stdout))
		die(EXIT_PROBLEMS, "cannot write output: %s", strerror(errno));
	return rc;
}
