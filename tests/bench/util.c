// SPDX-License-Identifier: MIT
/*
 * util.c - clocks, memory outside the allocators under test, and the
 * resident-memory probes the benchmark drivers share. See bench.h.
 */
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *map(size_t bytes, int flags)
{
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		bench_note("mmap of %zu bytes failed", bytes);
		abort();
	}
	return p;
}

void *bench_map(size_t bytes)
{
	return map(bytes, MAP_PRIVATE | MAP_POPULATE);
}

void *bench_map_shared(size_t bytes)
{
	return map(bytes, MAP_SHARED);
}

int bench_full_io(int fd, void *buf, size_t len, int wr)
{
	for (size_t done = 0; done < len;) {
		ssize_t k = wr ? write(fd, (char *)buf + done, len - done) : read(fd, (char *)buf + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		done += (size_t)k;
	}
	return 0;
}

void bench_unmap(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes ? bytes : 1);
}

int bench_rss(uint64_t *bytes)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -errno;
	int n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	if (n != 2)
		return -EIO;
	*bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

int bench_file_bytes(const char *path, uint64_t *bytes)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	*bytes = (uint64_t)st.st_blocks * 512u;
	return 0;
}

void bench_note(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "bench %s: %s\n", bench_alloc.name, buf);
}
