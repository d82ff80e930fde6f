// SPDX-License-Identifier: MIT
/*
 * heapctl.c - the operator's command line for heapd.
 *
 *   heapctl [--socket PATH] stats [--json] | clients [--json] | sweep |
 *           scavenge | check | watch [--interval SECONDS] |
 *           profile [--live | --alloc] [--exited] [-o FILE] [--top [N]]
 *           roots [--json] [PREFIX]
 *
 * heapctl is a control client of the protocol in proto/heap.proto, through
 * the control-connection module it shares with the tests (control.h): it
 * connects, sends a Hello with control = true (no client slot, no arena
 * descriptors), then sends one request per sample and prints the reply.
 * Rendering lives in format.c; the pprof profile and its symbols in pprof.c
 * and elfsym.c.
 *
 * Data goes to stdout, diagnostics to stderr. The exit codes are part of the
 * interface, since scripts test them:
 *   0  success
 *   1  `check` found problems, or the daemon answered a request with Error
 *   2  usage error
 *   3  the daemon cannot be reached (connect, Hello, or a lost connection)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "format.h"
#include "pprof.h"

enum {
	EXIT_PROBLEMS = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
};

#define CTL_TIMEOUT_S 60 /* a daemon that does not answer in this time counts as unreachable */
#define STR_(x) #x
#define STR(x) STR_(x)

/* The control connection, and the socket path for messages. */
typedef struct cli {
	ctl_t ctl;
	const char *socket;
} cli_t;

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
	"  profile [--live | --alloc] [--exited] [-o FILE] [--top [N]]\n"
	"                              heap profile of the sampled allocations, gzip'd pprof\n"
	"                              format to FILE, else to stdout if it is not a terminal\n"
	"                              and --top is not given; --live (default) and --alloc\n"
	"                              choose the default sample type (inuse_space or\n"
	"                              alloc_space); --exited keeps the live samples of\n"
	"                              processes that have exited (leaks); --top prints the\n"
	"                              N (default 10) top allocation sites\n"
	"  roots [--json] [PREFIX]     named roots (those starting with PREFIX), by name\n"
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

/* Connect and introduce ourselves as a control client, or exit 3. */
static void cli_open(cli_t *c, const char *socket)
{
	char why[512];

	c->socket = socket;
	if (ctl_open(&c->ctl, socket, CTL_TIMEOUT_S, why, sizeof(why)) < 0)
		die(EXIT_UNREACHABLE, "%s", why);
}

/* A request's outcome: a lost connection exits 3, an Error reply prints its message and exits 1. */
static void cli_result(cli_t *c, const char *what, int rc, const char *why)
{
	if (rc == -EPROTO || rc == -ECONNRESET || rc == -EPIPE || rc == -EAGAIN)
		die(EXIT_UNREACHABLE, "%s: %s: %s", c->socket, what, why);
	if (rc < 0)
		die(EXIT_PROBLEMS, "%s: %s (%s)", what, why, strerror(-rc));
}

/* Send env; the reply, of case `want`, or exit (cli_result). */
static Heapd__Envelope *cli_call(cli_t *c, const char *what, Heapd__Envelope *env,
                                 Heapd__Envelope__MsgCase want)
{
	Heapd__Envelope *reply = NULL;
	char why[512];
	cli_result(c, what, ctl_call(&c->ctl, env, want, &reply, why, sizeof(why)), why);
	return reply;
}

/* cli_call of a request without fields. */
static Heapd__Envelope *cli_simple(cli_t *c, const char *what, Heapd__Envelope__MsgCase msg,
                                   Heapd__Envelope__MsgCase want)
{
	Heapd__Envelope *reply = NULL;
	char why[512];
	cli_result(c, what, ctl_simple(&c->ctl, msg, want, &reply, why, sizeof(why)), why);
	return reply;
}

static Heapd__Envelope *cli_stats(cli_t *c)
{
	return cli_simple(c, "stats", HEAPD__ENVELOPE__MSG_STATS, HEAPD__ENVELOPE__MSG_STATS_REPLY);
}

/* ---- commands ---- */

typedef struct cmd_opts {
	int json;
	double interval;
	int view;              /* profile: PPROF_LIVE or PPROF_ALLOC */
	int exited;            /* profile: leak view */
	const char *out;       /* profile: -o FILE, NULL if none */
	long top;              /* profile: sites to print, 0: none */
	const char *arg;    /* the command's operand, NULL if none */
} cmd_opts_t;

static int cmd_stats(cli_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope *reply = cli_stats(c);
	if (o->json)
		format_json(stdout, &reply->stats_reply->base);
	else
		format_stats(stdout, reply->stats_reply);
	wire_free(reply);
	return 0;
}

static int cmd_clients(cli_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ClientsRequest req = HEAPD__CLIENTS_REQUEST__INIT;

	req.bytes = 1; /* with the live bytes each allocated */
	env.msg_case = HEAPD__ENVELOPE__MSG_CLIENTS;
	env.clients = &req;
	Heapd__Envelope *reply = cli_call(c, "clients", &env, HEAPD__ENVELOPE__MSG_CLIENTS_REPLY);
	if (o->json)
		format_json(stdout, &reply->clients_reply->base);
	else
		format_clients(stdout, reply->clients_reply);
	wire_free(reply);
	return 0;
}

static int cmd_sweep(cli_t *c, const cmd_opts_t *o)
{
	(void)o;
	Heapd__Envelope *reply = cli_simple(c, "sweep", HEAPD__ENVELOPE__MSG_SWEEP, HEAPD__ENVELOPE__MSG_OK);
	printf("swept %" PRIu64 " spans\n", reply->ok->value);
	wire_free(reply);
	return 0;
}

static int cmd_scavenge(cli_t *c, const cmd_opts_t *o)
{
	char mib[32];
	(void)o;
	Heapd__Envelope *reply = cli_simple(c, "scavenge", HEAPD__ENVELOPE__MSG_SCAVENGE,
	                                    HEAPD__ENVELOPE__MSG_OK);
	uint64_t pages = reply->ok->value;
	if (c->ctl.page_size)
		printf("released %" PRIu64 " pages (%s)\n", pages,
		       format_mib(pages * c->ctl.page_size, mib, sizeof(mib)));
	else
		printf("released %" PRIu64 " pages\n", pages);
	wire_free(reply);
	return 0;
}

static int cmd_check(cli_t *c, const cmd_opts_t *o)
{
	(void)o;
	Heapd__Envelope *reply = cli_simple(c, "check", HEAPD__ENVELOPE__MSG_CHECK,
	                                    HEAPD__ENVELOPE__MSG_CHECK_REPLY);
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

/* ---- profile ---- */

/* Every page of a new snapshot; *pages holds the replies (free each with wire_free). */
static void fetch_profile(cli_t *c, Heapd__Envelope ***pages, size_t *npages, heapprof_t *hp)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__ProfileRequest req = HEAPD__PROFILE_REQUEST__INIT;
	size_t cap = 0, pcap = 0, scap = 0;

	memset(hp, 0, sizeof(*hp));
	*pages = NULL;
	*npages = 0;
	env.msg_case = HEAPD__ENVELOPE__MSG_PROFILE;
	env.profile = &req;
	do {
		Heapd__Envelope *reply = cli_call(c, "profile", &env, HEAPD__ENVELOPE__MSG_PROFILE_REPLY);
		const Heapd__ProfileReply *r = reply->profile_reply;
		if (*npages == cap) {
			cap = cap ? cap * 2 : 8;
			*pages = realloc(*pages, cap * sizeof(**pages));
		}
		if (hp->nprocs + r->n_processes > pcap) {
			pcap = (hp->nprocs + r->n_processes) * 2;
			hp->procs = realloc(hp->procs, pcap * sizeof(*hp->procs));
		}
		if (hp->nsamples + r->n_samples > scap) {
			scap = (hp->nsamples + r->n_samples) * 2;
			hp->samples = realloc(hp->samples, scap * sizeof(*hp->samples));
		}
		if (!*pages || (pcap && !hp->procs) || (scap && !hp->samples))
			die(EXIT_PROBLEMS, "profile: out of memory");
		(*pages)[(*npages)++] = reply;
		if (r->summary)
			hp->summary = r->summary;
		for (size_t i = 0; i < r->n_processes; i++)
			hp->procs[hp->nprocs++] = r->processes[i];
		for (size_t i = 0; i < r->n_samples; i++)
			hp->samples[hp->nsamples++] = r->samples[i];
		/* as in roots: a cursor that does not move forward would page forever */
		if (r->next && r->next <= req.cursor)
			die(EXIT_UNREACHABLE, "%s: profile: the daemon's cursor went back", c->socket);
		req.cursor = r->next;
	} while (req.cursor != 0);
	if (!hp->summary)
		die(EXIT_UNREACHABLE, "%s: profile: the first reply had no summary", c->socket);
}

static int cmd_profile(cli_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope **pages;
	size_t npages;
	heapprof_t hp;
	int fd = -1, rc = 0;

	if (!o->out && !o->top && isatty(STDOUT_FILENO))
		usage_error("profile: the profile is binary; give -o FILE, or --top for text");
	if (o->out && strcmp(o->out, "-") != 0) {
		fd = open(o->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die(EXIT_PROBLEMS, "cannot write %s: %s", o->out, strerror(errno));
	} else if (o->out || !o->top) {
		fd = STDOUT_FILENO;
	}
	fetch_profile(c, &pages, &npages, &hp);
	if (hp.summary->records == 0)
		fprintf(stderr, "heapctl: the arena keeps no heap profile (heapd's profile-records is 0)\n");
	pprof_t *p = pprof_build(&hp, o->view, o->exited, stderr);
	if (!p)
		die(EXIT_PROBLEMS, "profile: out of memory");
	if (fd >= 0) {
		rc = pprof_write(p, fd);
		if (rc < 0)
			die(EXIT_PROBLEMS, "cannot write the profile: %s", strerror(-rc));
		if (fd != STDOUT_FILENO && close(fd) < 0)
			die(EXIT_PROBLEMS, "cannot write %s: %s", o->out, strerror(errno));
	}
	if (o->top)
		pprof_top(p, &hp, (size_t)o->top, stdout);
	pprof_free(p);
	for (size_t i = 0; i < npages; i++)
		wire_free(pages[i]);
	free(pages);
	free(hp.procs);
	free(hp.samples);
	return 0;
}

/* ---- roots ---- */

static int cmp_root_name(const void *a, const void *b)
{
	const ProtobufCBinaryData *x = &(*(Heapd__RootInfo *const *)a)->name;
	const ProtobufCBinaryData *y = &(*(Heapd__RootInfo *const *)b)->name;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n ? memcmp(x->data, y->data, n) : 0;
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Every bound name (that starts with the operand), a reply at a time, sorted by name. */
static int cmd_roots(cli_t *c, const cmd_opts_t *o)
{
	Heapd__Envelope **replies = NULL;
	Heapd__RootInfo **all = NULL;
	size_t nreplies = 0, n = 0;
	uint32_t cursor = 0;

	do {
		Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
		Heapd__RootsRequest rq = HEAPD__ROOTS_REQUEST__INIT;
		rq.prefix.data = (uint8_t *)(o->arg ? o->arg : "");
		rq.prefix.len = o->arg ? strlen(o->arg) : 0;
		rq.cursor = cursor;
		env.msg_case = HEAPD__ENVELOPE__MSG_ROOTS;
		env.roots = &rq;
		Heapd__Envelope *reply = cli_call(c, "roots", &env, HEAPD__ENVELOPE__MSG_ROOTS_REPLY);
		const Heapd__RootsReply *r = reply->roots_reply;
		Heapd__Envelope **rs = realloc(replies, (nreplies + 1) * sizeof(*rs));
		Heapd__RootInfo **grown = realloc(all, (n + r->n_roots + 1) * sizeof(*grown));
		if (!rs || !grown)
			die(EXIT_PROBLEMS, "out of memory");
		replies = rs;
		all = grown;
		replies[nreplies++] = reply;
		for (size_t i = 0; i < r->n_roots; i++)
			all[n++] = r->roots[i];
		/* the cursor only moves forward: a daemon that says otherwise is broken */
		if (r->next && r->next <= cursor)
			die(EXIT_UNREACHABLE, "%s: roots: the daemon's cursor went back", c->socket);
		cursor = r->next;
	} while (cursor);
	qsort(all, n, sizeof(*all), cmp_root_name);
	format_roots(stdout, all, n, o->json);
	for (size_t i = 0; i < nreplies; i++)
		wire_free(replies[i]);
	free(replies);
	free(all);
	return 0;
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_seconds(void)
{
	return (double)heapd_now_ns() / 1e9;
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

static int cmd_watch(cli_t *c, const cmd_opts_t *o)
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
		Heapd__Envelope *cur = cli_stats(c);
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
	int (*run)(cli_t *c, const cmd_opts_t *o);
	int json;       /* accepts --json */
	int interval;   /* accepts --interval */
	int operand;    /* accepts one operand */
} command_t;

static const command_t commands[] = {
	{ "stats", cmd_stats, 1, 0, 0 },
	{ "clients", cmd_clients, 1, 0, 0 },
	{ "sweep", cmd_sweep, 0, 0, 0 },
	{ "scavenge", cmd_scavenge, 0, 0, 0 },
	{ "check", cmd_check, 0, 0, 0 },
	{ "watch", cmd_watch, 0, 1, 0 },
	{ "profile", cmd_profile, 0, 0, 0 },
	{ "roots", cmd_roots, 1, 0, 1 },
};

enum { OPT_JSON = 256, OPT_INTERVAL, OPT_LIVE, OPT_ALLOC, OPT_EXITED, OPT_TOP };

static long parse_top(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 1000000)
		usage_error("invalid --top count '%s'", s);
	return v;
}

static double parse_interval(const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0.01 || v > 86400)
		usage_error("invalid interval '%s' (seconds, at least 0.01)", s);
	return v;
}

/* --socket and --help, which the options before and after the command both take. */
static int common_option(int opt, const char **socket)
{
	if (opt == 's') {
		if (!*optarg)
			usage_error("--socket needs a path");
		*socket = optarg;
		return 1;
	}
	if (opt == 'h') {
		fputs(usage_text, stdout);
		exit(0);
	}
	return 0;
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
		{ "live", no_argument, NULL, OPT_LIVE },
		{ "alloc", no_argument, NULL, OPT_ALLOC },
		{ "exited", no_argument, NULL, OPT_EXITED },
		{ "top", optional_argument, NULL, OPT_TOP },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket = NULL;
	cmd_opts_t o = { .interval = 1.0, .view = PPROF_LIVE };
	int views = 0;
	const command_t *cmd = NULL;
	int opt;

	/* Global options stop at the command name ('+'). */
	while ((opt = getopt_long(argc, argv, "+s:hV", global_opts, NULL)) != -1) {
		if (common_option(opt, &socket))
			continue;
		switch (opt) {
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
	int profile = cmd->run == cmd_profile;
	while ((opt = getopt_long(cargc, cargv, profile ? "s:ho:" : "s:h", cmd_opts, NULL)) != -1) {
		if (common_option(opt, &socket))
			continue;
		switch (opt) {
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
		case OPT_LIVE:
		case OPT_ALLOC:
		case OPT_EXITED:
		case OPT_TOP:
		case 'o':
			if (!profile)
				usage_error("%s does not take that option", cmd->name);
			if (opt == OPT_LIVE || opt == OPT_ALLOC) {
				if (views++)
					usage_error("profile: --live and --alloc exclude each other");
				o.view = opt == OPT_LIVE ? PPROF_LIVE : PPROF_ALLOC;
			} else if (opt == OPT_EXITED) {
				o.exited = 1;
			} else if (opt == 'o') {
				if (!*optarg)
					usage_error("-o needs a file name");
				o.out = optarg;
			} else if (optarg) {
				o.top = parse_top(optarg);
			} else if (optind < cargc && cargv[optind][0] >= '0' && cargv[optind][0] <= '9') {
				o.top = parse_top(cargv[optind++]); /* --top N */
			} else {
				o.top = 10;
			}
			break;
		default:
			usage_error(NULL);
		}
	}
	if (o.exited && o.view == PPROF_ALLOC)
		usage_error("profile: --exited is a view of live samples; it excludes --alloc");
	if (cmd->operand && optind < cargc)
		o.arg = cargv[optind++];
	if (optind < cargc)
		usage_error("unexpected argument '%s'", cargv[optind]);

	if (!socket)
		socket = getenv("HEAPD_SOCKET");
	if (!socket || !*socket)
		socket = HEAPD_DEFAULT_SOCKET;

	cli_t c;
	cli_open(&c, socket);
	int rc = cmd->run(&c, &o);
	ctl_close(&c.ctl);
	if (fflush(stdout) != 0 || ferror(stdout))
		die(EXIT_PROBLEMS, "cannot write output: %s", strerror(errno));
	return rc;
}
