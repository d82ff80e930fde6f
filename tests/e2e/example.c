// SPDX-License-Identifier: MIT
/*
 * example.c - the README's example: allocate in one process, free in another.
 *
 *   $ off=$(example put "hello, other process")   # allocates, prints the offset, exits
 *   $ example get "$off"                          # another process reads and frees it
 *   hello, other process
 *
 * The object outlives the process that allocated it. Both processes find
 * heapd at $HEAPD_SOCKET (default /run/heapd/heapd.sock).
 */
#include <heapclient.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "put") == 0) {
		char *s = hc_malloc(strlen(argv[2]) + 1);          /* in the shared arena */
		if (!s)
			return perror("hc_malloc"), 1;
		strcpy(s, argv[2]);
		printf("%llu\n", (unsigned long long)hc_ptr_to_off(s)); /* a handle for any process */
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "get") == 0) {
		char *s = hc_off_to_ptr(strtoull(argv[2], NULL, 10));
		if (!s)
			return perror("hc_off_to_ptr"), 1;
		puts(s);
		hc_free(s);                                         /* any process may free it */
		return 0;
	}
	fprintf(stderr, "usage: example put TEXT | example get OFFSET\n");
	return 2;
}
