// SPDX-License-Identifier: MIT
/*
 * json.c - a strict recursive-descent JSON parser for tests (RFC 8259
 * grammar; \u escapes outside ASCII are kept as '?', which is all the tests
 * need). See json.h.
 */
#include "harness/json.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HJSON_MAX_DEPTH 64

typedef struct parser {
	const char *p;
	char *err;
	size_t errlen;
	int failed;
} parser_t;

static void perr(parser_t *ps, const char *fmt, ...)
{
	if (ps->failed)
		return;
	ps->failed = 1;
	if (ps->err && ps->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ps->err, ps->errlen, fmt, ap);
		va_end(ap);
	}
}

static void skip_ws(parser_t *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
		ps->p++;
}

static hjson_t *new_value(int type)
{
	hjson_t *v = calloc(1, sizeof(*v));
	if (v)
		v->type = type;
	return v;
}

/* Append item (and key, for objects) to a container. */
static int append(hjson_t *c, hjson_t *item, char *key)
{
	hjson_t **items = realloc(c->items, (c->n + 1) * sizeof(*items));
	if (!items)
		return -1;
	c->items = items;
	if (c->type == HJSON_OBJECT) {
		char **keys = realloc(c->keys, (c->n + 1) * sizeof(*keys));
		if (!keys)
			return -1;
		c->keys = keys;
		c->keys[c->n] = key;
	}
	c->items[c->n++] = item;
	return 0;
}

static char *parse_string_raw(parser_t *ps)
{
	size_t cap = 16, len = 0;
	char *s = malloc(cap);

	if (!s || *ps->p != '"') {
		free(s);
		perr(ps, "expected a string at '%.16s'", ps->p);
		return NULL;
	}
	ps->p++;
	for (;;) {
		unsigned char c = (unsigned char)*ps->p++;
		if (c < 0x20) { /* NUL ends the text: unterminated */
			free(s);
			perr(ps, "unterminated string or control character in a string");
			return NULL;
		}
		if (c == '"')
			break;
		if (c == '\\') {
			char e = *ps->p++;
			switch (e) {
			case '"': case '\\': case '/': c = (unsigned char)e; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u': {
				unsigned v = 0;
				for (int i = 0; i < 4; i++) {
					if (!isxdigit((unsigned char)ps->p[i])) {
						free(s);
						perr(ps, "bad \\u escape");
						return NULL;
					}
					v = v * 16 + (unsigned)(isdigit((unsigned char)ps->p[i]) ? ps->p[i] - '0'
					                                                  : (tolower((unsigned char)ps->p[i]) - 'a' + 10));
				}
				ps->p += 4;
				c = v < 0x80 ? (unsigned char)v : '?';
				break;
			}
			default:
				free(s);
				perr(ps, "bad escape '\\%c'", e);
				return NULL;
			}
		}
		if (len + 2 > cap) {
			char *ns = realloc(s, cap *= 2);
			if (!ns) {
				free(s);
				perr(ps, "out of memory");
				return NULL;
			}
			s = ns;
		}
		s[len++] = (char)c;
	}
	s[len] = '\0';
	return s;
}

static int parse_number(parser_t *ps, double *out)
{
	const char *start = ps->p;
	const char *q = ps->p;
	if (*q == '-')
		q++;
	if (*q == '0')
		q++;
	else if (*q >= '1' && *q <= '9')
		while (isdigit((unsigned char)*q))
			q++;
	else
		return -1;
	if (*q == '.') {
		q++;
		if (!isdigit((unsigned char)*q))
			return -1;
		while (isdigit((unsigned char)*q))
			q++;
	}
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!isdigit((unsigned char)*q))
			return -1;
		while (isdigit((unsigned char)*q))
			q++;
	}
	*out = strtod(start, NULL);
	ps->p = q;
	return 0;
}

static hjson_t *parse_value(parser_t *ps, int depth)
{
	hjson_t *v = NULL;

	skip_ws(ps);
	if (depth > HJSON_MAX_DEPTH) {
		perr(ps, "nested too deep");
		return NULL;
	}
	switch (*ps->p) {
	case '{':
	case '[': {
		int obj = *ps->p == '{';
		char close = obj ? '}' : ']';
		v = new_value(obj ? HJSON_OBJECT : HJSON_ARRAY);
		if (!v)
			break;
		ps->p++;
		skip_ws(ps);
		if (*ps->p == close) {
			ps->p++;
			return v;
		}
		for (;;) {
			char *key = NULL;
			skip_ws(ps);
			if (obj) {
				key = parse_string_raw(ps);
				if (!key)
					goto fail;
				skip_ws(ps);
				if (*ps->p++ != ':') {
					perr(ps, "expected ':' after key \"%s\"", key);
					free(key);
					goto fail;
				}
			}
			hjson_t *item = parse_value(ps, depth + 1);
			if (!item || append(v, item, key) < 0) {
				hjson_free(item);
				free(key);
				goto fail;
			}
			skip_ws(ps);
			if (*ps->p == ',') {
				ps->p++;
				continue;
			}
			if (*ps->p == close) {
				ps->p++;
				return v;
			}
			perr(ps, "expected ',' or '%c' at '%.16s'", close, ps->p);
			goto fail;
		}
	}
	case '"':
		v = new_value(HJSON_STRING);
		if (v && !(v->string = parse_string_raw(ps)))
			goto fail;
		return v;
	case 't':
	case 'f':
	case 'n': {
		static const struct { const char *word; int type; double val; } lits[] = {
			{ "true", HJSON_BOOL, 1 }, { "false", HJSON_BOOL, 0 }, { "null", HJSON_NULL, 0 },
		};
		for (size_t i = 0; i < 3; i++) {
			size_t len = strlen(lits[i].word);
			if (strncmp(ps->p, lits[i].word, len) == 0) {
				ps->p += len;
				v = new_value(lits[i].type);
				if (v)
					v->number = lits[i].val;
				return v;
			}
		}
		perr(ps, "unexpected '%.8s'", ps->p);
		return NULL;
	}
	default:
		v = new_value(HJSON_NUMBER);
		if (v && parse_number(ps, &v->number) < 0) {
			perr(ps, "unexpected '%.16s'", ps->p);
			goto fail;
		}
		return v;
	}
	perr(ps, "out of memory");
fail:
	hjson_free(v);
	return NULL;
}

hjson_t *hjson_parse(const char *text, char *err, size_t errlen)
{
	parser_t ps = { .p = text, .err = err, .errlen = errlen };
	hjson_t *v = parse_value(&ps, 0);
	if (!v)
		return NULL;
	skip_ws(&ps);
	if (*ps.p) {
		perr(&ps, "trailing text after the value: '%.16s'", ps.p);
		hjson_free(v);
		return NULL;
	}
	return v;
}

const hjson_t *hjson_get(const hjson_t *obj, const char *key)
{
	if (!obj || obj->type != HJSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

void hjson_free(hjson_t *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		hjson_free(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->string);
	free(v);
}
