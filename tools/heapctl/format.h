// SPDX-License-Identifier: MIT
/*
 * format.h - how heapctl renders daemon replies: human tables, JSON,
 * and the frames and lines of `heapctl watch`.
 *
 * Every function writes to the stream it is given and nothing else; heapctl.c
 * decides where output goes and what the exit code is.
 */
#ifndef HEAPD_TOOLS_HEAPCTL_FORMAT_H
#define HEAPD_TOOLS_HEAPCTL_FORMAT_H

#include <stdint.h>
#include <stdio.h>

#include "heap.pb-c.h"

/*
 * Write msg as one JSON object, every field of its descriptor included, so a
 * field added to heap.proto shows up without a change here. ClassStats'
 * `sizeclass` is written as `class`.
 */
void format_json(FILE *out, const ProtobufCMessage *msg);

/* The `heapctl stats` table: totals, then one row per size class that has spans. */
void format_stats(FILE *out, const Heapd__StatsReply *s);

/* The `heapctl clients` table. */
void format_clients(FILE *out, const Heapd__ClientsReply *c);

/*
 * One screen of `heapctl watch` for a terminal of `rows` lines (0: unknown).
 * prev is the previous sample (NULL on the first) and dt the seconds between
 * them, for rates.
 */
void format_watch_frame(FILE *out, const char *socket, double interval, const Heapd__StatsReply *s,
                        const Heapd__StatsReply *prev, double dt, int rows);

/* One line of `heapctl watch` when stdout is not a terminal: a timestamp and key=value pairs. */
void format_watch_line(FILE *out, const Heapd__StatsReply *s);

/*
 * The `heapctl roots` table, or (json) a JSON array, of roots[0..n): one
 * row per name, name last, its bytes escaped (printable ASCII as is, the
 * rest as \xHH; in JSON as \u00XX escapes, with the exact bytes in hex in
 * name_hex).
 */
void format_roots(FILE *out, Heapd__RootInfo *const *roots, size_t n, int json);

/*
 * Bytes a client chose (a root's name, a path, a symbol), for a terminal:
 * printable ASCII as is, a backslash doubled, any other byte as \xHH, so
 * that no control byte reaches it.
 */
void format_text(FILE *out, const void *bytes, size_t len);

/* "12.5 MiB" for a byte count, into buf. */
const char *format_mib(uint64_t bytes, char *buf, size_t len);

/* "512 B", "3.5 KiB", "1.2 GiB": the largest unit that keeps the number at 1 or more. */
const char *format_bytes(uint64_t bytes, char *buf, size_t len);

/* "3d 04:05:06" for a number of seconds, into buf. */
const char *format_uptime(uint64_t seconds, char *buf, size_t len);

#endif
