// SPDX-License-Identifier: MIT
/*
 * tmpdir.c - temporary directories, made and removed. See tmpdir.h.
 */
#include "harness/tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void htmp_make(char *dir, size_t len, const char *prefix, int where)
{
	const char *base = getenv("TMPDIR");
	if (where == HTMP_MEMORY && access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";
	else if (!base || !*base)
		base = "/tmp";
	snprintf(dir, len, "%s/%s-XXXXXX", base, prefix);
	if (!mkdtemp(dir)) {
		perror(dir);
		exit(EXIT_FAILURE);
	}
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		perror(path);
	return 0;
}

void htmp_remove(const char *dir)
{
	if (dir[0])
		nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
