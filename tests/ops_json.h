// SPDX-License-Identifier: MIT
/*
 * ops_json.h - a small JSON reader for tests that check machine-readable
 * output (`heapctl stats --json`). It parses the whole text into a tree and
 * rejects anything that is not exactly one valid JSON value.
 */
#ifndef HEAPD_TESTS_OPS_JSON_H
#define HEAPD_TESTS_OPS_JSON_H

#include <stddef.h>

enum {
	OPS_JSON_NULL,
	OPS_JSON_BOOL,
	OPS_JSON_NUMBER,
	OPS_JSON_STRING,
	OPS_JSON_ARRAY,
	OPS_JSON_OBJECT,
};

typedef struct ops_json ops_json_t;

/* A parsed JSON value. For an object, keys[i] names items[i]. */
struct ops_json {
	int type;
	double number;       /* OPS_JSON_NUMBER; OPS_JSON_BOOL is 0 or 1 */
	char *string;        /* OPS_JSON_STRING */
	size_t n;            /* items in an array or object */
	ops_json_t **items;
	char **keys;
};

/*
 * Parse text, which must hold exactly one JSON value (whitespace around it
 * is allowed). NULL with a message in err if it is not valid JSON.
 */
ops_json_t *ops_json_parse(const char *text, char *err, size_t errlen);

/* The member key of an object, or NULL. */
const ops_json_t *ops_json_get(const ops_json_t *obj, const char *key);

void ops_json_free(ops_json_t *v);

#endif
