// SPDX-License-Identifier: MIT
/*
 * fuzz_session.c - raw frames into one daemon session.
 *
 * The input is a byte stream cut into frames as the server cuts a socket's
 * stream: a 4-byte little-endian length, then that many bytes of payload.
 * An over-long length ends the stream as the server would (the session is
 * failed); a short last frame is dropped, as a peer hanging up mid-frame.
 * If the first byte is odd the session first says a valid Hello, so the
 * request handlers are reached without the fuzzer having to find one.
 *
 * After every input the session is freed (its spans go back to central),
 * every name it bound is unbound again (RootSet, RootCas and Roots are
 * fuzzed like any request; a large object it allocated can be bound, and
 * must not stay pinned into the next input), and the daemon's invariant
 * checker must find nothing, the directory of named roots included; a
 * problem aborts, which the fuzzer reports as a crash. Every crash found
 * becomes a file in tests/fuzz/regressions/, replayed by the regression
 * test.
 *
 * Built two ways: with libFuzzer (HEAPD_FUZZ=ON, clang), and as a plain
 * program that replays the files named on its command line (the regression
 * test and the seed corpus run in every build).
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "rootdir.h"
#include "roots.h"
#include "segment.h"
#include "session.h"
#include "wire.h"

static daemon_t daemon_state;
static char arena_dir[64];

static void remove_arena(void)
{
	char path[128];
	daemon_close(&daemon_state, 1);
	snprintf(path, sizeof(path), "%s/arena", arena_dir);
	segment_remove(path); /* the arena is a directory: meta, data and lock */
	rmdir(arena_dir);
}

static void open_daemon(void)
{
	config_t cfg;
	char err[256];

	log_set_quiet(1);
	snprintf(arena_dir, sizeof(arena_dir), "/tmp/heapd-fuzz-XXXXXX");
	if (!mkdtemp(arena_dir)) {
		perror("mkdtemp");
		abort();
	}
	config_defaults(&cfg);
	snprintf(cfg.arena, sizeof(cfg.arena), "%s/arena", arena_dir);
	cfg.arena_size = 64ULL << 20;
	cfg.client_quota = 16ULL << 20; /* keeps one input from filling the arena */
	if (daemon_open(&daemon_state, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	atexit(remove_arena);
}

static void say_hello(session_t *s)
{
	Heapd__Envelope env = HEAPD__ENVELOPE__INIT;
	Heapd__Hello hello = HEAPD__HELLO__INIT;
	uint8_t buf[64];

	hello.version = HEAPD_PROTOCOL_VERSION;
	env.msg_case = HEAPD__ENVELOPE__MSG_HELLO;
	env.hello = &hello;
	size_t n = wire_frame_size(&env);
	wire_frame_pack(&env, buf);
	session_handle_frame(s, buf + HEAPD_FRAME_HEADER, n - HEAPD_FRAME_HEADER);
}

/* Unbind every name, as heapd would for a client asking it to: each input starts with none. */
static void unbind_all(void)
{
	const segment_t *seg = &daemon_state.seg;
	roots_walk_t w;
	uint32_t e;
	char why[200];

	roots_walk_start(&w, seg, 0);
	while (roots_walk_next(&w, &e)) {
		uint8_t name[ROOTS_NAME_WORDS * 8];
		rootdir_req_t q = { .name = name, .len = roots_name(seg, e, name), .slot = HEAPD_NIL };
		uint64_t id;
		if (rootdir_change(&daemon_state.roots, &q, &id, why, sizeof(why)) < 0) {
			fprintf(stderr, "fuzz_session: cannot unbind a name: %s\n", why);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static check_report_t report;
	struct evbuffer *out;
	session_t *s;

	if (!daemon_state.opened)
		open_daemon();
	out = evbuffer_new();
	s = session_new(&daemon_state, -1, getpid(), getuid(), getgid(), out);
	if (!s)
		abort();
	if (size > 0 && (data[0] & 1))
		say_hello(s);

	size_t off = size > 0 ? 1 : 0;
	while (!s->failed && size - off >= HEAPD_FRAME_HEADER) {
		uint32_t len;
		if (wire_parse_header(data + off, &len) < 0) {
			session_fail(s, EPROTO, "frame of %u bytes is over the limit", len);
			break;
		}
		off += HEAPD_FRAME_HEADER;
		if (len > size - off)
			break; /* the peer hung up mid-frame */
		session_handle_frame(s, data + off, len);
		off += len;
		evbuffer_drain(out, evbuffer_get_length(out));
	}
	/* The input is over, as its process would be: its slot goes back. */
	if (s->slot != HEAPD_NIL) {
		sweep_result_t res = { 0 };
		daemon_bye(&daemon_state, s->slot, &res);
		s->slot = HEAPD_NIL;
	}
	session_free(s);
	evbuffer_free(out);
	unbind_all();

	size_t n = daemon_check(&daemon_state, &report);
	if (n > 0) {
		for (size_t i = 0; i < n && i < CHECK_MAX_PROBLEMS; i++)
			fprintf(stderr, "check: %s\n", report.problems[i]);
		abort();
	}
	if (daemon_state.nsessions != 0 || daemon_state.nclients != 0)
		abort();
	return 0;
}

#ifndef HEAPD_LIBFUZZER
/* Replay: run every file named on the command line once. */
int main(int argc, char **argv)
{
	static uint8_t buf[HEAPD_MAX_FRAME * 2];
	int ran = 0;

	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (!f) {
			perror(argv[i]);
			return 1;
		}
		size_t n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
		ran++;
	}
	printf("fuzz_session: replayed %d inputs, no problems\n", ran);
	return 0;
}
#endif
