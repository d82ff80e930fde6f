// SPDX-License-Identifier: MIT
/*
 * format.c - render daemon replies for people (tables, the watch
 * screen) and for programs (JSON, key=value lines). See format.h.
 *
 * JSON is produced from the protobuf-c descriptors rather than by hand, so
 * `stats --json` and `clients --json` always carry every field the daemon
 * sends, with the field names of heap.proto as keys.
 */
#include "format.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB (1024.0 * 1024.0)

const char *format_mib(uint64_t bytes, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f MiB", (double)bytes / MIB);
	return buf;
}

const char *format_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned u = 0;
	while (v >= 1024.0 && u < sizeof(units) / sizeof(units[0]) - 1) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

const char *format_uptime(uint64_t seconds, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64 "d %02u:%02u:%02u", seconds / 86400, (unsigned)(seconds / 3600 % 24),
	         (unsigned)(seconds / 60 % 60), (unsigned)(seconds % 60));
	return buf;
}

/* ---- JSON ---- */

static void json_indent(FILE *out, int depth)
{
	for (int i = 0; i < depth; i++)
		fputs("  ", out);
}

static void json_string(FILE *out, const char *s, size_t len)
{
	fputc('"', out);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", out);
		else if (c == '\t')
			fputs("\\t", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* The JSON key for a field: the proto name, except where the CLI's documented name differs. */
static const char *json_key(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
	if (d == &heapd__class_stats__descriptor && strcmp(f->name, "sizeclass") == 0)
		return "class";
	return f->name;
}

/* Bytes one element of a repeated field of this type takes in its array. */
static size_t json_elem_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return sizeof(uint32_t);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static void json_double(FILE *out, double v)
{
	if (isfinite(v))
		fprintf(out, "%.17g", v);
	else
		fputs("null", out);
}

static void json_message(FILE *out, const ProtobufCMessage *msg, int depth);

/* Write the value of one field element stored at p. */
static void json_value(FILE *out, const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(out, "%" PRId32, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(out, "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(out, "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(out, "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		json_double(out, *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		json_double(out, *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", out);
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		if (ev)
			json_string(out, ev->name, strlen(ev->name));
		else
			fprintf(out, "%d", v);
		break;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		json_string(out, s ? s : "", s ? strlen(s) : 0);
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		fputc('"', out);
		for (size_t i = 0; i < b->len; i++)
			fprintf(out, "%02x", b->data[i]);
		fputc('"', out);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
		if (m)
			json_message(out, m, depth);
		else
			fputs("null", out);
		break;
	}
	}
}

/* 1 if a singular field is present: oneof members only when selected, optional ones when set. */
static int json_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)msg;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
	    f->type != PROTOBUF_C_TYPE_STRING)
		return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
	return 1;
}

static void json_message(FILE *out, const ProtobufCMessage *msg, int depth)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const char *base = (const char *)msg;
	int first = 1;

	fputs("{", out);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label != PROTOBUF_C_LABEL_REPEATED && !json_present(msg, f))
			continue;
		fputs(first ? "\n" : ",\n", out);
		first = 0;
		json_indent(out, depth + 1);
		const char *key = json_key(d, f);
		json_string(out, key, strlen(key));
		fputs(": ", out);
		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			json_value(out, f, base + f->offset, depth + 1);
			continue;
		}
		size_t n = *(const size_t *)(base + f->quantifier_offset);
		const char *arr = *(char *const *)(base + f->offset);
		size_t sz = json_elem_size(f->type);
		fputs("[", out);
		for (size_t j = 0; j < n; j++) {
			fputs(j ? ",\n" : "\n", out);
			json_indent(out, depth + 2);
			json_value(out, f, arr + j * sz, depth + 2);
		}
		if (n) {
			fputs("\n", out);
			json_indent(out, depth + 1);
		}
		fputs("]", out);
	}
	if (!first) {
		fputs("\n", out);
		json_indent(out, depth);
	}
	fputs("}", out);
}

void format_json(FILE *out, const ProtobufCMessage *msg)
{
	json_message(out, msg, 0);
	fputs("\n", out);
}

/* ---- tables ---- */

static void row_count(FILE *out, const char *label, uint64_t v)
{
	fprintf(out, "%-16s %14" PRIu64 "\n", label, v);
}

static void row_bytes(FILE *out, const char *label, uint64_t v, uint64_t bytes)
{
	char mib[32];
	fprintf(out, "%-16s %14" PRIu64 "  %12s\n", label, v, format_mib(bytes, mib, sizeof(mib)));
}

static void class_header(FILE *out)
{
	fprintf(out, "%5s %7s %8s %12s %12s %12s\n", "class", "size", "spans", "objects", "free slots",
	        "bytes");
}

static void class_row(FILE *out, const Heapd__ClassStats *c)
{
	char mib[32];
	fprintf(out, "%5" PRIu32 " %7" PRIu32 " %8" PRIu64 " %12" PRIu64 " %12" PRIu64 " %12s\n", c->sizeclass,
	        c->size, c->spans, c->objects_in_use, c->free_slots,
	        format_bytes(c->objects_in_use * c->size, mib, sizeof(mib)));
}

void format_stats(FILE *out, const Heapd__StatsReply *s)
{
	uint64_t ps = s->page_size;
	char buf[64];

	row_bytes(out, "arena bytes", s->arena_bytes, s->arena_bytes);
	row_count(out, "page size", s->page_size);
	if (s->pages_max)
		row_bytes(out, "pages max", s->pages_max, s->pages_max * ps);
	row_bytes(out, "pages total", s->pages_total, s->pages_total * ps);
	row_bytes(out, "pages in use", s->pages_in_use, s->pages_in_use * ps);
	row_bytes(out, "pages free", s->pages_free, s->pages_free * ps);
	row_bytes(out, "pages released", s->pages_released, s->pages_released * ps);
	row_count(out, "spans in use", s->spans_in_use);
	row_count(out, "objects in use", s->objects_in_use);
	row_bytes(out, "bytes in use", s->bytes_in_use, s->bytes_in_use);
	row_bytes(out, "large objects", s->large_objects, s->large_bytes);
	row_count(out, "clients", s->clients);
	if (s->roots_max)
		fprintf(out, "%-16s %14" PRIu64 "  of %" PRIu64 "\n", "roots", s->roots, s->roots_max);
	row_count(out, "sweepgen", s->sweepgen);
	row_count(out, "sweep cycles", s->sweep_cycles);
	fprintf(out, "%-16s %14s\n", "uptime", format_uptime(s->uptime_seconds, buf, sizeof(buf)));

	int header = 0;
	for (size_t i = 0; i < s->n_classes; i++) {
		if (s->classes[i]->spans == 0)
			continue;
		if (!header) {
			fputs("\n", out);
			class_header(out);
			header = 1;
		}
		class_row(out, s->classes[i]);
	}
}

/* ---- roots ---- */

void format_text(FILE *out, const void *bytes, size_t len)
{
	const unsigned char *p = bytes;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		if (c == '\\')
			fputs("\\\\", out);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, out);
		else
			fprintf(out, "\\x%02x", c);
	}
}

/* A name as a JSON string: printable ASCII as is (but " and \), any other byte as \u00XX. */
static void json_name(FILE *out, const ProtobufCBinaryData *name)
{
	fputc('"', out);
	for (size_t i = 0; i < name->len; i++) {
		unsigned char c = name->data[i];
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, out);
		else
			fprintf(out, "\\u%04x", c);
	}
	fputc('"', out);
}

static const char *format_time(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ULL);
	struct tm tm;
	if (!localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "?");
	return buf;
}

void format_roots(FILE *out, Heapd__RootInfo *const *roots, size_t n, int json)
{
	char when[32];

	if (json) {
		fputs("[", out);
		for (size_t i = 0; i < n; i++) {
			const Heapd__RootInfo *r = roots[i];
			fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", out);
			json_name(out, &r->name);
			fputs(", \"name_hex\": \"", out);
			for (size_t j = 0; j < r->name.len; j++)
				fprintf(out, "%02x", r->name.data[j]);
			fprintf(out, "\", \"offset\": %" PRIu64 ", \"size\": %" PRIu64 ", \"pid\": %" PRIu32
			             ", \"uid\": %" PRIu32 ", \"slot\": %" PRIu32 ", \"time_ns\": %" PRIu64 "}",
			        r->offset, r->size, r->pid, r->uid, r->slot, r->time_ns);
		}
		fputs(n ? "\n]\n" : "]\n", out);
		return;
	}
	fprintf(out, "%14s %10s %8s %8s %19s  %s\n", "offset", "size", "pid", "uid", "bound", "name");
	for (size_t i = 0; i < n; i++) {
		const Heapd__RootInfo *r = roots[i];
		fprintf(out, "%14" PRIu64 " %10" PRIu64 " %8" PRIu32 " %8" PRIu32 " %19s  ", r->offset, r->size,
		        r->pid, r->uid, format_time(r->time_ns, when, sizeof(when)));
		format_text(out, r->name.data, r->name.len);
		fputc('\n', out);
	}
}

void format_clients(FILE *out, const Heapd__ClientsReply *c)
{
	char a[32], b[32], e[32];

	fputs("live bytes each client allocated:\n"
	      "  live large  exact: each large object counts for the client that allocated it\n"
	      "  live small  exact: the objects live in the small spans charged to the client\n"
	      "              (to the last client each span was granted to)\n"
	      "  sampled     estimate from its live heap-profile samples (- without samples)\n", out);
	fprintf(out, "%5s %8s %8s %8s %10s %10s %12s %12s %12s %12s\n", "slot", "kind", "pid", "uid",
	        "spans", "pages", "requests", "live large", "live small", "sampled");
	for (size_t i = 0; i < c->n_clients; i++) {
		const Heapd__ClientInfo *ci = c->clients[i];
		if (ci->control || ci->exited)
			fprintf(out, "%5s", "-");
		else
			fprintf(out, "%5" PRIu32, ci->slot);
		const char *kind = ci->control ? "control" : ci->exited ? "exited" : "client";
		fprintf(out, " %8s %8" PRIu32 " %8" PRIu32, kind, ci->pid, ci->uid);
		if (ci->control) {
			fprintf(out, " %10s %10s %12" PRIu64 "\n", "-", "-", ci->requests);
			continue;
		}
		if (ci->exited) {
			fprintf(out, " %10s %10s %12s %12s %12s %12s\n", "-", "-", "-", "-", "-",
			        format_bytes(ci->sampled_live_bytes, e, sizeof(e)));
			continue;
		}
		fprintf(out, " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12s %12s %12s\n", ci->spans_cached,
		        ci->pages_held, ci->requests, format_bytes(ci->live_large_bytes, a, sizeof(a)),
		        format_bytes(ci->live_small_bytes, b, sizeof(b)),
		        ci->profiled ? format_bytes(ci->sampled_live_bytes, e, sizeof(e)) : "-");
	}
}

/* ---- watch ---- */

static int cmp_class_bytes(const void *a, const void *b)
{
	const Heapd__ClassStats *x = *(Heapd__ClassStats *const *)a, *y = *(Heapd__ClassStats *const *)b;
	uint64_t bx = x->objects_in_use * x->size, by = y->objects_in_use * y->size;
	if (bx != by)
		return bx < by ? 1 : -1;
	return x->sizeclass < y->sizeclass ? -1 : x->sizeclass > y->sizeclass;
}

/* Per-second change of a counter between two samples; 0 on the first. */
static double rate(uint64_t now, uint64_t before, double dt, int have_prev)
{
	if (!have_prev || dt <= 0)
		return 0;
	return ((double)now - (double)before) / dt;
}

void format_watch_frame(FILE *out, const char *socket, double interval, const Heapd__StatsReply *s,
                        const Heapd__StatsReply *prev, double dt, int rows)
{
	uint64_t ps = s->page_size;
	int p = prev != NULL;
	char up[32], a[32], b[32], c[32], d[32];

	fputs("\033[H\033[2J", out);
	fprintf(out, "heapd %s   up %s   every %gs\n", socket, format_uptime(s->uptime_seconds, up, sizeof(up)),
	        interval);
	fprintf(out, "clients %" PRIu32 "   sweepgen %" PRIu32 "   sweep cycles %" PRIu64 " (%+.1f/s)\n\n",
	        s->clients, s->sweepgen, s->sweep_cycles, rate(s->sweep_cycles, p ? prev->sweep_cycles : 0, dt, p));
	fprintf(out, "pages    total %s   in use %s   free %s   released %s\n",
	        format_mib(s->pages_total * ps, a, sizeof(a)), format_mib(s->pages_in_use * ps, b, sizeof(b)),
	        format_mib(s->pages_free * ps, c, sizeof(c)), format_mib(s->pages_released * ps, d, sizeof(d)));
	fprintf(out, "objects  %" PRIu64 " (%+.0f/s)   bytes %s (%+.2f MiB/s)   large %" PRIu64 " (%s)\n\n",
	        s->objects_in_use, rate(s->objects_in_use, p ? prev->objects_in_use : 0, dt, p),
	        format_mib(s->bytes_in_use, a, sizeof(a)),
	        rate(s->bytes_in_use, p ? prev->bytes_in_use : 0, dt, p) / MIB, s->large_objects,
	        format_mib(s->large_bytes, b, sizeof(b)));

	/* The busiest classes, as many as the terminal has room for. */
	Heapd__ClassStats **cls = calloc(s->n_classes ? s->n_classes : 1, sizeof(*cls));
	size_t n = 0;
	if (!cls)
		return;
	for (size_t i = 0; i < s->n_classes; i++)
		if (s->classes[i]->spans)
			cls[n++] = s->classes[i];
	qsort(cls, n, sizeof(*cls), cmp_class_bytes);
	size_t room = rows > 8 ? (size_t)rows - 8 : 16;
	if (n) {
		class_header(out);
		for (size_t i = 0; i < n && i < room; i++)
			class_row(out, cls[i]);
		if (n > room)
			fprintf(out, "(%zu more classes)\n", n - room);
	}
	free(cls);
}

void format_watch_line(FILE *out, const Heapd__StatsReply *s)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	fprintf(out,
	        "%s pages_total=%" PRIu64 " pages_in_use=%" PRIu64 " pages_free=%" PRIu64 " pages_released=%" PRIu64
	        " objects_in_use=%" PRIu64 " bytes_in_use=%" PRIu64 " clients=%" PRIu32 " sweepgen=%" PRIu32
	        " sweep_cycles=%" PRIu64 "\n",
	        ts, s->pages_total, s->pages_in_use, s->pages_free, s->pages_released, s->objects_in_use,
	        s->bytes_in_use, s->clients, s->sweepgen, s->sweep_cycles);
}
