// SPDX-License-Identifier: MIT
/*
 * json.h - a small JSON reader for tests that check machine-readable
 * output (`heapctl stats --json`). It parses the whole text into a tree and
 * rejects anything that is not exactly one valid JSON value.
 */
#ifndef HEAPD_TESTS_HARNESS_JSON_H
#define HEAPD_TESTS_HARNESS_JSON_H

#include <stddef.h>

enum {
	HJSON_NULL,
	HJSON_BOOL,
	HJSON_NUMBER,
	HJSON_STRING,
	HJSON_ARRAY,
	HJSON_OBJECT,
};

typedef struct hjson hjson_t;

/* A parsed JSON value. For an object, keys[i] names items[i]. */
struct hjson {
	int type;
	double number;       /* HJSON_NUMBER; HJSON_BOOL is 0 or 1 */
	char *string;        /* HJSON_STRING */
	size_t n;            /* items in an array or object */
	hjson_t **items;
	char **keys;
};

/*
 * Parse text, which must hold exactly one JSON value (whitespace around it
 * is allowed). NULL with a message in err if it is not valid JSON.
 */
hjson_t *hjson_parse(const char *text, char *err, size_t errlen);

/* The member key of an object, or NULL. */
const hjson_t *hjson_get(const hjson_t *obj, const char *key);

void hjson_free(hjson_t *v);

#endif
