// SPDX-License-Identifier: MIT
/*
 * example.c - the README's example: one process puts a string in the
 * shared arena under a name, another finds it by that name, reads it and
 * frees it.
 *
 *   $ example put "hello, other process"   # allocates, binds a name to it, exits
 *   $ example get                          # finds it by name, prints and frees it
 *   hello, other process
 *
 * get waits (up to 10 s) for the name to be bound, so the two may start in
 * either order. Both processes find heapd at $HEAPD_SOCKET (default
 * /run/heapd/heapd.sock).
 */
#include <heapclient.h>
#include <stdio.h>
#include <string.h>

#define NAME "example/greeting"

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "put") == 0) {
		char *s = hc_malloc(strlen(argv[2]) + 1);          /* in the shared arena */
		if (!s)
			return perror("hc_malloc"), 1;
		strcpy(s, argv[2]);
		int rc = hc_root_set(NAME, s);                      /* a name any process can look up */
		if (rc < 0)
			return fprintf(stderr, "hc_root_set: %s\n", strerror(-rc)), 1;
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "get") == 0) {
		char *s = hc_root_wait(NAME, 10000);                /* waits for the name to be bound */
		if (!s)
			return perror("hc_root_wait"), 1;
		puts(s);
		hc_root_set(NAME, NULL);                            /* unbind it, */
		hc_free(s);                                         /* and free it: any process may */
		return 0;
	}
	fprintf(stderr, "usage: example put TEXT | example get\n");
	return 2;
}
