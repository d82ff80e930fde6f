// SPDX-License-Identifier: MIT
/*
 * util.c - patterns, a seeded generator, whole reads and writes, shared
 * memory, numbers from the environment and the polling pause. See util.h.
 */
#include "harness/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Word i of the pattern of seed: byte i of an object is byte i % 8 of word i / 8. */
static inline uint64_t pattern_word(uint64_t seed, size_t i)
{
	return ((seed ^ i) + 0x632be59bd9b4e019ULL) * 0x9e3779b97f4a7c15ULL;
}

void hutil_fill(void *p, size_t n, uint64_t seed)
{
	uint8_t *b = p;
	size_t i;
	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t w = pattern_word(seed, i / 8);
		memcpy(b + i, &w, 8);
	}
	if (i < n) {
		uint64_t w = pattern_word(seed, i / 8);
		memcpy(b + i, &w, n - i);
	}
}

int hutil_verify(const void *p, size_t n, uint64_t seed)
{
	const uint8_t *b = p;
	size_t i;
	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t w = pattern_word(seed, i / 8);
		if (memcmp(b + i, &w, 8) != 0)
			return 0;
	}
	if (i < n) {
		uint64_t w = pattern_word(seed, i / 8);
		if (memcmp(b + i, &w, n - i) != 0)
			return 0;
	}
	return 1;
}

uint64_t hutil_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x2545f4914f6cdd1dULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

int hutil_write_full(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int hutil_read_full(int fd, void *buf, size_t n)
{
	char *p = buf;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

size_t hutil_read_all(int fd, char *buf, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, len - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return n;
}

int hutil_open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

void *hutil_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("hutil_shared: mmap");
		abort();
	}
	return p;
}

uint64_t hutil_env(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	char *end;
	if (!s || !*s)
		return def;
	unsigned long long v = strtoull(s, &end, 10);
	return *end ? def : v;
}

void hutil_sleep_us(uint64_t us)
{
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#define BACKOFF_FAST_TRIES 20  /* polls 1 ms apart before the pause grows */
#define BACKOFF_MAX_US 20000

void hutil_backoff(unsigned *tries)
{
	uint64_t us = 1000;
	if (*tries >= BACKOFF_FAST_TRIES) {
		unsigned shift = *tries - BACKOFF_FAST_TRIES;
		us = shift < 5 ? 1000u << shift : BACKOFF_MAX_US;
		if (us > BACKOFF_MAX_US)
			us = BACKOFF_MAX_US;
	}
	(*tries)++;
	hutil_sleep_us(us);
}
