// SPDX-License-Identifier: MIT
/*
 * log.c - one line per event to stderr (see log.h).
 *
 * Entry points: log_msg, log_set_quiet. No lock: each line is formatted into
 * a local buffer and written with one write(2), which the kernel keeps whole
 * for lines this short.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int log_quiet;

void log_set_quiet(int quiet)
{
	atomic_store(&log_quiet, quiet);
}

void log_msg(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (atomic_load(&log_quiet))
		return;
	memcpy(line, "heapd: ", 7);
	va_start(ap, fmt);
	n = vsnprintf(line + 7, sizeof(line) - 8, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += 7;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	for (const char *p = line; n > 0;) {
		ssize_t w = write(STDERR_FILENO, p, (size_t)n);
		if (w <= 0)
			return;
		p += w;
		n -= (int)w;
	}
}
