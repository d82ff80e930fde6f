// SPDX-License-Identifier: MIT
/*
 * report.h - add a line to an invariant-check report (check.h), for the
 * daemon's own checks that run after check_segment.
 */
#ifndef HEAPD_DAEMON_REPORT_H
#define HEAPD_DAEMON_REPORT_H

#include <stdarg.h>
#include <stdio.h>

#include "check.h"

static inline void report_add(check_report_t *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void report_add(check_report_t *r, const char *fmt, ...)
{
	if (r->nproblems < CHECK_MAX_PROBLEMS) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->problems[r->nproblems], sizeof(r->problems[0]), fmt, ap);
		va_end(ap);
	}
	r->nproblems++;
}

#endif
