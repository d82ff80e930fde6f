// SPDX-License-Identifier: MIT
/* main.c - placeholder until the daemon lands. */
#include <stdio.h>
int main(void)
{
	fprintf(stderr, "heapd: not serving yet\n");
	return 1;
}
