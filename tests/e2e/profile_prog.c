// SPDX-License-Identifier: MIT
/*
 * profile_prog.c - the client program of the heap-profile tests and of the
 * README's "Finding leaks" walk-through. It allocates at named sites,
 * kept out of line so that a sample's first frame is theirs:
 *
 *   profile_prog sites N   N objects of 48 bytes at alloc_site_a and N of
 *                          200 bytes at alloc_site_b; frees the first half of
 *                          site a's itself, prints the offsets of the other
 *                          half (one per line), then "ready", and waits for
 *                          its stdin to close before it exits (site b's stay
 *                          allocated: a leak once it has gone)
 *   profile_prog free      frees the objects whose offsets its stdin lists
 *   profile_prog hold      HOLD_LARGE objects of HOLD_LARGE_SIZE bytes and
 *                          HOLD_SMALL of HOLD_SMALL_SIZE (test_profile.c
 *                          knows the numbers); prints "ready", waits for its
 *                          stdin to close and exits without freeing them
 *   profile_prog leak N    a cache that forgets to evict: N requests, each
 *                          allocating through handle_request -> cache_insert,
 *                          half of them freed again; exits without freeing
 *                          the rest
 *   profile_prog churn     allocates and frees at two sites until killed
 *   profile_prog scribble  writes random bytes over the arena's whole
 *                          heap-profile region (a hostile or broken client)
 *
 * The heap profile's sampling rate comes from $HEAPD_PROFILE_RATE.
 */
#include <heapclient.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proc.h"
#include "profrec.h"

__attribute__((noinline)) void *alloc_site_a(size_t size)
{
	void *p = hc_malloc(size);
	__asm__ volatile("" ::: "memory");
	return p;
}

__attribute__((noinline)) void *alloc_site_b(size_t size)
{
	void *p = hc_malloc(size);
	__asm__ volatile("" ::: "memory");
	return p;
}

static int sites(long n)
{
	void **a = calloc((size_t)n, sizeof(void *));
	if (!a)
		return 1;
	for (long i = 0; i < n; i++) {
		a[i] = alloc_site_a(48);
		if (!a[i] || !alloc_site_b(200))
			return perror("hc_malloc"), 1;
	}
	for (long i = 0; i < n / 2; i++)
		hc_free(a[i]);
	for (long i = n / 2; i < n; i++)
		printf("%" PRIu64 "\n", hc_ptr_to_off(a[i]));
	printf("ready\n");
	fflush(stdout);
	free(a);
	char buf[64];
	while (fgets(buf, sizeof(buf), stdin))
		;
	return 0;
}

#define HOLD_LARGE 3
#define HOLD_LARGE_SIZE ((1u << 20) + 1) /* a page more than 1 MiB */
#define HOLD_SMALL 100
#define HOLD_SMALL_SIZE 1000

static int hold(void)
{
	for (int i = 0; i < HOLD_LARGE; i++)
		if (!alloc_site_a(HOLD_LARGE_SIZE))
			return perror("hc_malloc"), 1;
	for (int i = 0; i < HOLD_SMALL; i++)
		if (!alloc_site_b(HOLD_SMALL_SIZE))
			return perror("hc_malloc"), 1;
	printf("ready\n");
	fflush(stdout);
	char buf[64];
	while (fgets(buf, sizeof(buf), stdin))
		;
	return 0;
}

static int free_listed(void)
{
	char line[64];
	while (fgets(line, sizeof(line), stdin)) {
		void *p = hc_off_to_ptr(strtoull(line, NULL, 10));
		if (!p)
			return perror("hc_off_to_ptr"), 1;
		hc_free(p);
	}
	return 0;
}

/* The leak: entries go into the cache and only some come out again. */
typedef struct entry {
	struct entry *next;
	char key[32];
	char value[200];
} entry_t;

static entry_t *cache;

__attribute__((noinline)) static entry_t *cache_insert(const char *key)
{
	entry_t *e = hc_malloc(sizeof(*e));
	if (!e)
		return NULL;
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->next = cache;
	cache = e;
	return e;
}

__attribute__((noinline)) static char *format_reply(long i)
{
	char *reply = hc_malloc(128);
	if (reply)
		snprintf(reply, 128, "reply %ld", i);
	return reply;
}

__attribute__((noinline)) static int handle_request(long i)
{
	char key[32];
	snprintf(key, sizeof(key), "key-%ld", i);
	if (!cache_insert(key))
		return -1;
	char *reply = format_reply(i);
	if (!reply)
		return -1;
	hc_free(reply); /* replies are freed: no leak there */
	if (i % 2 == 0 && cache) {
		entry_t *e = cache; /* every other entry is evicted */
		cache = e->next;
		hc_free(e);
	}
	return 0;
}

static int leak(long n)
{
	for (long i = 0; i < n; i++)
		if (handle_request(i) < 0)
			return perror("hc_malloc"), 1;
	return 0; /* the cache is never freed */
}

static int churn(void)
{
	void *keep[256] = { 0 };
	for (uint64_t i = 0;; i++) {
		size_t k = i % 256;
		hc_free(keep[k]);
		keep[k] = (i & 1) ? alloc_site_a(16 + i % 500) : alloc_site_b(40000 * (i % 7 == 0) + 64);
		if (!keep[k])
			return perror("hc_malloc"), 1;
	}
}

static int scribble(void)
{
	prof_view_t v;
	void *p = hc_malloc(16); /* connects and maps the arena */
	if (!p || prof_view(&proc_g.seg, &v) < 0)
		return fprintf(stderr, "scribble: no profile region\n"), 1;
	uint8_t *start = (uint8_t *)v.counters;
	uint64_t len = proc_g.seg.hdr->prof_size;
	for (uint64_t off = 0; off < len; off += 4096) {
		size_t n = len - off < 4096 ? (size_t)(len - off) : 4096;
		if (getrandom(start + off, n, 0) != (ssize_t)n)
			return perror("getrandom"), 1;
	}
	printf("scribbled %" PRIu64 " bytes\n", len);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "sites") == 0)
		return sites(atol(argv[2]));
	if (argc == 2 && strcmp(argv[1], "free") == 0)
		return free_listed();
	if (argc == 2 && strcmp(argv[1], "hold") == 0)
		return hold();
	if (argc == 3 && strcmp(argv[1], "leak") == 0)
		return leak(atol(argv[2]));
	if (argc == 2 && strcmp(argv[1], "churn") == 0)
		return churn();
	if (argc == 2 && strcmp(argv[1], "scribble") == 0)
		return scribble();
	fprintf(stderr, "usage: profile_prog sites N | free | hold | leak N | churn | scribble\n");
	return 2;
}
