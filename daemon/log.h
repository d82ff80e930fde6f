// SPDX-License-Identifier: MIT
/*
 * log.h - the daemon's log: one line per event, to stderr.
 *
 * Every line starts with "heapd: " and is written with a single write(2), so
 * lines from the event loop and the sweeper thread never interleave.
 * log_set_quiet() silences everything (the fuzz target uses it).
 */
#ifndef HEAPD_DAEMON_LOG_H
#define HEAPD_DAEMON_LOG_H

void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_set_quiet(int quiet);

#endif
