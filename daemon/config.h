// SPDX-License-Identifier: MIT
/*
 * config.h - heapd's options, from the command line and the config file.
 *
 * The config file (default /etc/heapd/heapd.conf, read only if it exists;
 * an explicit --config must exist) holds "key = value" lines named after the
 * long options, '#' comments and blank lines. Command-line flags override the
 * file; a list option (allow-uid, allow-gid) given on the command line
 * replaces the file's list.
 */
#ifndef HEAPD_DAEMON_CONFIG_H
#define HEAPD_DAEMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_DEFAULT_FILE "/etc/heapd/heapd.conf"
#define CONFIG_MAX_IDS 64
#define CONFIG_DEFAULT_CLIENTS_PER_UID 256u
#define CONFIG_DEFAULT_CONNECTIONS_PER_UID 512u
#define CONFIG_DEFAULT_HELLO_TIMEOUT 5u

typedef struct config {
	char socket[108];         /* listening socket path */
	char arena[256];          /* arena file, or shm:NAME */
	char config_file[256];    /* the file read, "" if none */
	uint64_t arena_size;      /* bytes of pages, used when the arena is created */
	uid_t allow_uid[CONFIG_MAX_IDS];
	size_t nallow_uid;
	gid_t allow_gid[CONFIG_MAX_IDS];
	size_t nallow_gid;
	uint64_t scavenge_delay;  /* seconds a free page waits before it is released */
	uint64_t sweep_interval;  /* seconds between timed sweep cycles (>= 1) */
	uint64_t client_quota;    /* bytes charged to one client's slot at most, 0: none (quota.h) */
	uint64_t uid_quota;       /* bytes charged to one uid's clients, live or gone, 0: none */
	uint32_t max_clients;     /* client slots (and the table size of a new arena) */
	uint32_t max_clients_per_uid;     /* slots one uid may hold at once */
	uint32_t max_connections_per_uid; /* connections one uid may have open at once */
	uint64_t hello_timeout;   /* seconds a connection may go without its Hello */
	uint32_t profile_records; /* heap-profile records of a new arena (shm/profrec.h), 0: none */
	uint64_t profile_rate;    /* sampling rate, bytes, clients use unless they set their own; 0: off */
	uint32_t max_roots;       /* names the directory of a new arena holds; 0: the default */
	uint32_t uid_max_roots;   /* names one uid's clients may have bound, 0: no limit */
	int reset;                /* lay an unusable arena out anew */
} config_t;

/* What config_parse asks the caller to do. */
enum {
	CONFIG_RUN = 0,           /* start the daemon */
	CONFIG_EXIT_OK = 1,       /* --help or --version was printed: exit 0 */
};

/* Defaults for everything. */
void config_defaults(config_t *cfg);

/*
 * Parse argv (and the config file it names, or the default one). Returns
 * CONFIG_RUN, CONFIG_EXIT_OK, or -EINVAL with a message in err (usage error,
 * exit 2). --help and --version print to out.
 */
int config_parse(config_t *cfg, int argc, char **argv, void *out, char *err, size_t errlen);

/* Parse "512M", "4G", "1073741824" (K/M/G/T, powers of 1024). 0 or -EINVAL/-ERANGE. */
int config_parse_size(const char *s, uint64_t *out);

/* Print the usage text to out (a FILE *). */
void config_usage(void *out);

#endif
