// SPDX-License-Identifier: MIT
/*
 * pprof.c - build, write and summarize a pprof heap profile from heapd's
 * samples (see pprof.h for the format's choices).
 *
 * Building, in one pass over the samples kept:
 *   1. each frame becomes a location: the process's mapping that holds the
 *      return address (a pprof Mapping, made once per process and object),
 *      the call's address (return address - 1), and its function, found in
 *      the object's symbols (one elfsym_t per file, read once);
 *   2. the sample's locations, size and rate key a bucket; its four values
 *      add the sample's scaled counts.
 * Tables that deduplicate (strings, mappings, locations, functions,
 * buckets) are one open-addressed table of byte keys (intern_t).
 */
#include "pprof.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "elfsym.h"
#include "format.h"

#define KEY_MAX 4400             /* a path and a build ID, or a name and a path */
#define FRAMES_MAX 32            /* frames of a sample (heapd sends no more) */

/* ---- an intern table: byte strings to dense ids ---- */

typedef struct intern {
	uint32_t *slots;          /* id + 1, 0: empty */
	uint32_t mask;
	char **keys;              /* by id */
	size_t *lens;
	size_t n, cap;
} intern_t;

static uint64_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static int intern_grow(intern_t *t)
{
	uint32_t size = t->mask ? (t->mask + 1) * 2 : 1024;
	uint32_t *slots = calloc(size, sizeof(uint32_t));
	if (!slots)
		return -ENOMEM;
	for (size_t id = 0; id < t->n; id++) {
		uint32_t i = (uint32_t)hash_bytes(t->keys[id], t->lens[id]) & (size - 1);
		while (slots[i])
			i = (i + 1) & (size - 1);
		slots[i] = (uint32_t)id + 1;
	}
	free(t->slots);
	t->slots = slots;
	t->mask = size - 1;
	return 0;
}

/* The id of key (new ones get the next id; *added says so). -ENOMEM on failure. */
static long intern(intern_t *t, const void *key, size_t len, int *added)
{
	if (added)
		*added = 0;
	if ((t->n + 1) * 2 > (size_t)t->mask + 1 && intern_grow(t) < 0)
		return -ENOMEM;
	uint32_t i = (uint32_t)hash_bytes(key, len) & t->mask;
	for (; t->slots[i]; i = (i + 1) & t->mask) {
		uint32_t id = t->slots[i] - 1;
		if (t->lens[id] == len && memcmp(t->keys[id], key, len) == 0)
			return id;
	}
	if (t->n == t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 256;
		char **keys = realloc(t->keys, ncap * sizeof(*keys));
		if (!keys)
			return -ENOMEM;
		t->keys = keys;
		size_t *lens = realloc(t->lens, ncap * sizeof(*lens));
		if (!lens)
			return -ENOMEM;
		t->lens = lens;
		t->cap = ncap;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, key, len);
	copy[len] = '\0';
	t->keys[t->n] = copy;
	t->lens[t->n] = len;
	t->slots[i] = (uint32_t)++t->n;
	if (added)
		*added = 1;
	return (long)t->n - 1;
}

static void intern_free(intern_t *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->keys[i]);
	free(t->keys);
	free(t->lens);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

/* ---- the profile under construction ---- */

/* A symbol table, by file (path and build ID). */
typedef struct objfile {
	elfsym_t syms;
	int ok;                   /* read, and its build ID is the one loaded */
} objfile_t;

/* A bucket: one pprof sample. */
typedef struct bucket {
	double values[4];         /* alloc_objects, alloc_space, inuse_objects, inuse_space */
	uint64_t size;
	uint32_t nlocs;
	uint64_t *locs;           /* location ids */
} bucket_t;

struct pprof {
	Pprof__Profile prof;
	intern_t strings, mappings, locations, functions, files, buckets;
	/* by id - 1 (pprof ids start at 1) */
	Pprof__Mapping *maps;
	Pprof__Location *locs;
	Pprof__Function *fns;
	objfile_t *objs;          /* by files id */
	bucket_t *bks;
	size_t maps_cap, locs_cap, fns_cap, objs_cap, bks_cap;
	int view;
	int oom;
};

/* Grow an array of elements of size `elem` to hold n + 1. */
static int reserve(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 256;
	void *grown = realloc(*arr, ncap * elem);
	if (!grown)
		return -ENOMEM;
	memset((char *)grown + *cap * elem, 0, (ncap - *cap) * elem);
	*arr = grown;
	*cap = ncap;
	return 0;
}

/*
 * The id of key in t, whose records are arr[id] (elements of size elem).
 * The array grows first, to hold the id a new key would get: every id the
 * table gives out indexes the array, which pprof_free and assemble walk to
 * t->n. -1 (p->oom set) when out of memory.
 */
static long intern_rec(pprof_t *p, intern_t *t, const void *key, size_t len, void **arr,
                       size_t *cap, size_t elem, int *added)
{
	long id = -1;

	*added = 0;
	if (reserve(arr, cap, t->n, elem) == 0)
		id = intern(t, key, len, added);
	if (id < 0)
		p->oom = 1;
	return id;
}

static int64_t str(pprof_t *p, const char *s)
{
	long id = intern(&p->strings, s, strlen(s), NULL);
	if (id < 0)
		p->oom = 1;
	return id < 0 ? 0 : id;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

/* The symbols of mapping m, read once per file; NULL if they cannot be used. */
static const elfsym_t *object_syms(pprof_t *p, const Heapd__ProfileMapping *m, FILE *warn)
{
	char key[KEY_MAX];
	size_t plen = strnlen(m->path, 4096);
	int added;

	if (!m->path[0] || plen + m->build_id.len + 1 > sizeof(key))
		return NULL;
	memcpy(key, m->path, plen + 1);
	if (m->build_id.len) /* no data pointer without bytes */
		memcpy(key + plen + 1, m->build_id.data, m->build_id.len);
	long id = intern_rec(p, &p->files, key, plen + 1 + m->build_id.len, (void **)&p->objs,
	                     &p->objs_cap, sizeof(*p->objs), &added);
	if (id < 0)
		return NULL;
	objfile_t *o = &p->objs[id];
	if (added) {
		char why[512];
		if (elfsym_open(m->path, &o->syms, why, sizeof(why)) < 0) {
			if (warn && m->path[0] != '[' && strncmp(m->path, "linux-vdso", 10) != 0) {
				/* why holds the path, which a client wrote */
				fputs("heapctl: ", warn);
				format_text(warn, why, strlen(why));
				fputs("; its frames are not symbolized\n", warn);
			}
		} else if (m->build_id.len && (o->syms.build_id_len != m->build_id.len ||
		                                memcmp(o->syms.build_id, m->build_id.data, m->build_id.len))) {
			if (warn) {
				fputs("heapctl: ", warn);
				format_text(warn, m->path, plen);
				fputs(" is not the file the process loaded (its build ID differs); its "
				      "frames are not symbolized\n", warn);
			}
		} else {
			o->ok = 1;
		}
	}
	return o->ok ? &o->syms : NULL;
}

/* The pprof mapping id (1-based) of object k of process pi. */
static uint64_t mapping_id(pprof_t *p, const heapprof_t *hp, uint32_t pi, uint32_t k, int symbolized)
{
	uint32_t key[2] = { pi, k };
	int added;
	long id = intern_rec(p, &p->mappings, key, sizeof(key), (void **)&p->maps, &p->maps_cap,
	                     sizeof(*p->maps), &added);
	if (id < 0)
		return 0;
	if (added) {
		const Heapd__ProfileMapping *m = hp->procs[pi]->mappings[k];
		char bid[2 * 255 + 1];
		Pprof__Mapping *pm = &p->maps[id];
		pprof__mapping__init(pm);
		pm->id = (uint64_t)id + 1;
		pm->memory_start = m->lo;
		pm->memory_limit = m->hi;
		pm->file_offset = m->file_offset;
		pm->filename = str(p, m->path);
		hex(m->build_id.data, m->build_id.len < 255 ? m->build_id.len : 255, bid);
		pm->build_id = str(p, bid);
		pm->has_functions = symbolized != 0;
	}
	return (uint64_t)id + 1;
}

/* The function id (1-based) named name in file, or 0. */
static uint64_t function_id(pprof_t *p, const char *name, const char *file)
{
	char key[KEY_MAX];
	size_t n = strlen(name), f = strlen(file);
	if (n + f + 1 > sizeof(key))
		return 0;
	memcpy(key, name, n + 1);
	memcpy(key + n + 1, file, f);
	int added;
	long id = intern_rec(p, &p->functions, key, n + 1 + f, (void **)&p->fns, &p->fns_cap,
	                     sizeof(*p->fns), &added);
	if (id < 0)
		return 0;
	if (added) {
		Pprof__Function *fn = &p->fns[id];
		pprof__function__init(fn);
		fn->id = (uint64_t)id + 1;
		fn->name = str(p, name);
		fn->system_name = fn->name;
		fn->filename = str(p, file);
	}
	return (uint64_t)id + 1;
}

/* The location id (1-based) of return address ret of process pi. */
static uint64_t location_id(pprof_t *p, const heapprof_t *hp, uint32_t pi, uint64_t ret, FILE *warn)
{
	const Heapd__ProfileProcess *proc = hp->procs[pi];
	uint64_t addr = ret - 1; /* the call, not the instruction after it */
	uint32_t k = 0;
	uint64_t key[2];
	int added;

	while (k < proc->n_mappings && !(proc->mappings[k]->lo <= addr && addr < proc->mappings[k]->hi))
		k++;
	key[0] = pi;
	key[1] = addr;
	long id = intern_rec(p, &p->locations, key, sizeof(key), (void **)&p->locs, &p->locs_cap,
	                     sizeof(*p->locs), &added);
	if (id < 0)
		return 0;
	if (!added)
		return (uint64_t)id + 1;
	Pprof__Location *loc = &p->locs[id];
	pprof__location__init(loc);
	loc->id = (uint64_t)id + 1;
	loc->address = addr;
	if (k == proc->n_mappings)
		return loc->id; /* in no object the process reported */
	const Heapd__ProfileMapping *m = proc->mappings[k];
	const elfsym_t *syms = object_syms(p, m, warn);
	loc->mapping_id = mapping_id(p, hp, pi, k, syms != NULL);
	uint64_t off;
	const elfsym_fn_t *fn = syms ? elfsym_find(syms, addr - m->bias, &off) : NULL;
	if (fn) {
		uint64_t fid = function_id(p, fn->name, m->path);
		if (fid) {
			/* one line per location: its storage is the location's own */
			Pprof__Line *line = malloc(sizeof(*line));
			Pprof__Line **lines = malloc(sizeof(*lines));
			if (!line || !lines) {
				free(line);
				free(lines);
				p->oom = 1;
				return loc->id;
			}
			pprof__line__init(line);
			line->function_id = fid;
			lines[0] = line;
			loc->line = lines;
			loc->n_line = 1;
		}
	}
	return loc->id;
}

static double sample_scale(uint64_t size, uint64_t rate)
{
	if (rate <= 1)
		return 1;
	return 1 / (1 - exp(-(double)size / (double)rate));
}

/* Step 2: the sample's bucket. */
static void add_sample(pprof_t *p, const uint64_t *locs, uint32_t nlocs, const Heapd__ProfileSample *s)
{
	uint64_t key[FRAMES_MAX + 2];
	int added;

	memcpy(key, locs, nlocs * sizeof(uint64_t));
	key[nlocs] = s->size;
	key[nlocs + 1] = s->rate;
	long id = intern_rec(p, &p->buckets, key, (nlocs + 2) * sizeof(uint64_t), (void **)&p->bks,
	                     &p->bks_cap, sizeof(*p->bks), &added);
	if (id < 0)
		return;
	bucket_t *b = &p->bks[id];
	if (added) {
		b->size = s->size;
		b->nlocs = nlocs;
		b->locs = malloc(nlocs * sizeof(uint64_t));
		if (!b->locs) {
			p->oom = 1;
			return;
		}
		memcpy(b->locs, locs, nlocs * sizeof(uint64_t));
	}
	double sc = sample_scale(s->size, s->rate);
	b->values[0] += sc;
	b->values[1] += sc * (double)s->size;
	if (s->live) {
		b->values[2] += sc;
		b->values[3] += sc * (double)s->size;
	}
}

/* Processes of hp, by pid and start time (heapd sends one entry per mapping set of each). */
static size_t process_count(const heapprof_t *hp)
{
	size_t n = 0;
	for (size_t i = 0; i < hp->nprocs; i++) {
		size_t j = 0;
		while (j < i && (hp->procs[j]->pid != hp->procs[i]->pid ||
		                 hp->procs[j]->start_time != hp->procs[i]->start_time))
			j++;
		n += j == i;
	}
	return n;
}

/* Assemble the Profile message from the tables. */
static int assemble(pprof_t *p, const heapprof_t *hp, uint64_t period)
{
	static const char *const types[4][2] = {
		{ "alloc_objects", "count" }, { "alloc_space", "bytes" },
		{ "inuse_objects", "count" }, { "inuse_space", "bytes" },
	};
	Pprof__Profile *pr = &p->prof;
	char comment[256];

	pprof__profile__init(pr);
	pr->sample_type = calloc(4, sizeof(*pr->sample_type));
	pr->period_type = calloc(1, sizeof(*pr->period_type));
	if (!pr->sample_type || !pr->period_type)
		return -ENOMEM;
	for (int i = 0; i < 4; i++) {
		Pprof__ValueType *vt = calloc(1, sizeof(*vt));
		if (!vt)
			return -ENOMEM;
		pprof__value_type__init(vt);
		vt->type = str(p, types[i][0]);
		vt->unit = str(p, types[i][1]);
		pr->sample_type[pr->n_sample_type++] = vt;
	}
	pprof__value_type__init(pr->period_type);
	pr->period_type->type = str(p, "space");
	pr->period_type->unit = str(p, "bytes");
	pr->period = (int64_t)period;
	pr->time_nanos = (int64_t)hp->summary->time;
	pr->default_sample_type = str(p, p->view == PPROF_ALLOC ? "alloc_space" : "inuse_space");

	snprintf(comment, sizeof(comment),
	         "heapd heap profile: %" PRIu64 " samples in the snapshot (%" PRIu64 " live), from %zu "
	         "process%s", hp->summary->live + hp->summary->freed, hp->summary->live,
	         process_count(hp), process_count(hp) == 1 ? "" : "es");
	int64_t c1 = str(p, comment);
	snprintf(comment, sizeof(comment),
	         "%" PRIu64 " samples dropped (no room for their record), %" PRIu64
	         " freed samples recycled, %" PRIu64 " records of garbage skipped", hp->summary->dropped,
	         hp->summary->recycled, hp->summary->garbage);
	int64_t c2 = str(p, comment);
	pr->comment = malloc(2 * sizeof(int64_t));
	if (!pr->comment)
		return -ENOMEM;
	pr->comment[0] = c1;
	pr->comment[1] = c2;
	pr->n_comment = 2;

	int64_t bytes_key = str(p, "bytes");
	pr->sample = calloc(p->buckets.n + 1, sizeof(*pr->sample));
	if (!pr->sample)
		return -ENOMEM;
	for (size_t i = 0; i < p->buckets.n; i++) {
		bucket_t *b = &p->bks[i];
		Pprof__Sample *s = calloc(1, sizeof(*s));
		Pprof__Label *l = calloc(1, sizeof(*l));
		Pprof__Label **lp = calloc(1, sizeof(*lp));
		int64_t *v = calloc(4, sizeof(int64_t));
		if (!s || !l || !lp || !v) {
			free(s);
			free(l);
			free(lp);
			free(v);
			return -ENOMEM;
		}
		pprof__sample__init(s);
		pprof__label__init(l);
		l->key = bytes_key;
		l->num = (int64_t)b->size;
		lp[0] = l;
		for (int k = 0; k < 4; k++)
			v[k] = (int64_t)llround(b->values[k]);
		s->location_id = b->locs;
		s->n_location_id = b->nlocs;
		b->locs = NULL;
		s->value = v;
		s->n_value = 4;
		s->label = lp;
		s->n_label = 1;
		pr->sample[pr->n_sample++] = s;
	}
	pr->mapping = calloc(p->mappings.n + 1, sizeof(*pr->mapping));
	pr->location = calloc(p->locations.n + 1, sizeof(*pr->location));
	pr->function = calloc(p->functions.n + 1, sizeof(*pr->function));
	if (!pr->mapping || !pr->location || !pr->function)
		return -ENOMEM;
	for (size_t i = 0; i < p->mappings.n; i++)
		pr->mapping[pr->n_mapping++] = &p->maps[i];
	for (size_t i = 0; i < p->locations.n; i++)
		pr->location[pr->n_location++] = &p->locs[i];
	for (size_t i = 0; i < p->functions.n; i++)
		pr->function[pr->n_function++] = &p->fns[i];
	/* the string table last: every string is interned by now */
	pr->string_table = p->strings.keys;
	pr->n_string_table = p->strings.n;
	return p->oom ? -ENOMEM : 0;
}

pprof_t *pprof_build(const heapprof_t *hp, int view, int exited_only, FILE *warn)
{
	pprof_t *p = calloc(1, sizeof(*p));
	uint64_t locs[FRAMES_MAX], period = hp->summary->profile_rate;

	if (!p)
		return NULL;
	p->view = view;
	str(p, ""); /* string 0 */
	for (size_t i = 0; i < hp->nsamples && !p->oom; i++) {
		const Heapd__ProfileSample *s = hp->samples[i];
		if (s->process >= hp->nprocs)
			continue; /* heapd never sends one; a reply is not trusted blindly either */
		if (exited_only && (!s->live || !hp->procs[s->process]->exited))
			continue;
		uint32_t n = s->n_frames < FRAMES_MAX ? (uint32_t)s->n_frames : FRAMES_MAX;
		for (uint32_t k = 0; k < n; k++)
			locs[k] = location_id(p, hp, s->process, s->frames[k], warn);
		add_sample(p, locs, n, s);
		if (period == 0)
			period = s->rate; /* heapd's rate, else the first sample's */
	}
	if (assemble(p, hp, period) < 0) {
		pprof_free(p);
		return NULL;
	}
	return p;
}

void pprof_free(pprof_t *p)
{
	Pprof__Profile *pr;

	if (!p)
		return;
	pr = &p->prof;
	for (size_t i = 0; i < pr->n_sample_type; i++)
		free(pr->sample_type[i]);
	free(pr->sample_type);
	free(pr->period_type);
	free(pr->comment);
	for (size_t i = 0; i < pr->n_sample; i++) {
		Pprof__Sample *s = pr->sample[i];
		free(s->location_id);
		free(s->value);
		free(s->label[0]);
		free(s->label);
		free(s);
	}
	free(pr->sample);
	free(pr->mapping);
	free(pr->location);
	free(pr->function);
	for (size_t i = 0; i < p->locations.n; i++) {
		if (p->locs[i].n_line) {
			free(p->locs[i].line[0]);
			free(p->locs[i].line);
		}
	}
	for (size_t i = 0; i < p->buckets.n; i++)
		free(p->bks[i].locs);
	for (size_t i = 0; i < p->files.n; i++)
		elfsym_close(&p->objs[i].syms);
	free(p->maps);
	free(p->locs);
	free(p->fns);
	free(p->objs);
	free(p->bks);
	intern_free(&p->strings);
	intern_free(&p->mappings);
	intern_free(&p->locations);
	intern_free(&p->functions);
	intern_free(&p->files);
	intern_free(&p->buckets);
	free(p);
}

const Pprof__Profile *pprof_message(const pprof_t *p)
{
	return &p->prof;
}

int pprof_write(const pprof_t *p, int fd)
{
	size_t n = pprof__profile__get_packed_size(&p->prof);
	uint8_t *buf = malloc(n ? n : 1);
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	pprof__profile__pack(&p->prof, buf);
	int dfd = dup(fd);
	gzFile gz = dfd < 0 ? NULL : gzdopen(dfd, "wb");
	if (!gz) {
		if (dfd >= 0)
			close(dfd);
		free(buf);
		return -ENOMEM;
	}
	for (size_t off = 0; off < n && rc == 0;) {
		unsigned chunk = n - off > (1u << 30) ? 1u << 30 : (unsigned)(n - off);
		int w = gzwrite(gz, buf + off, chunk);
		if (w <= 0)
			rc = -EIO;
		else
			off += (size_t)w;
	}
	if (gzclose(gz) != Z_OK && rc == 0)
		rc = -EIO;
	free(buf);
	return rc;
}

/* ---- top sites ---- */

typedef struct site {
	const char *name;         /* function, or the address as text */
	double values[4];
} site_t;

static int by_value(const void *a, const void *b, void *arg)
{
	int k = *(int *)arg;
	const site_t *x = a, *y = b;
	return x->values[k] < y->values[k] ? 1 : x->values[k] > y->values[k] ? -1 : strcmp(x->name, y->name);
}

static const char *human(double bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
	return buf;
}

void pprof_top(const pprof_t *p, const heapprof_t *hp, size_t n, FILE *out)
{
	const Pprof__Profile *pr = &p->prof;
	intern_t names = { 0 };
	site_t *sites = calloc(pr->n_sample + 1, sizeof(*sites));
	char text[64], a[32], b[32];
	size_t nsites = 0, exited = 0;
	int key = p->view == PPROF_ALLOC ? 1 : 3;

	size_t nprocs = process_count(hp);
	for (size_t i = 0; i < hp->nprocs; i++) {
		size_t j = 0;
		while (j < i && (hp->procs[j]->pid != hp->procs[i]->pid ||
		                 hp->procs[j]->start_time != hp->procs[i]->start_time))
			j++;
		exited += j == i && hp->procs[i]->exited;
	}
	fprintf(out, "heap profile: %" PRIu64 " samples (%" PRIu64 " live) from %zu process%s (%zu "
	             "exited); %" PRIu64 " dropped, %" PRIu64 " recycled, %" PRIu64 " garbage\n",
	        hp->summary->live + hp->summary->freed, hp->summary->live, nprocs,
	        nprocs == 1 ? "" : "es", exited, hp->summary->dropped, hp->summary->recycled,
	        hp->summary->garbage);
	if (!sites)
		return;
	for (size_t i = 0; i < pr->n_sample; i++) {
		const Pprof__Sample *s = pr->sample[i];
		const char *name = "?";
		if (s->n_location_id && s->location_id[0]) {
			const Pprof__Location *loc = &p->locs[s->location_id[0] - 1];
			if (loc->n_line) {
				name = pr->string_table[p->fns[loc->line[0]->function_id - 1].name];
			} else {
				snprintf(text, sizeof(text), "0x%" PRIx64, loc->address);
				name = text;
			}
		}
		long id = intern(&names, name, strlen(name), NULL);
		if (id < 0)
			break;
		if ((size_t)id == nsites)
			sites[nsites++].name = names.keys[id];
		for (int k = 0; k < 4; k++)
			sites[id].values[k] += (double)s->value[k];
	}
	qsort_r(sites, nsites, sizeof(*sites), by_value, &key);
	fprintf(out, "%12s %12s %12s %12s  %s\n", "inuse_space", "inuse_objs", "alloc_space",
	        "alloc_objs", "allocation site");
	for (size_t i = 0; i < nsites && i < n; i++) {
		if (sites[i].values[key] <= 0)
			break;
		fprintf(out, "%12s %12.0f %12s %12.0f  ", human(sites[i].values[3], a, sizeof(a)),
		        sites[i].values[2], human(sites[i].values[1], b, sizeof(b)), sites[i].values[0]);
		/* a symbol of a file a client named */
		format_text(out, sites[i].name, strlen(sites[i].name));
		fputc('\n', out);
	}
	free(sites);
	intern_free(&names);
}
