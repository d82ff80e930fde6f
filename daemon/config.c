// SPDX-License-Identifier: MIT
/*
 * config.c - options from the command line and the config file.
 *
 * Entry points: config_defaults, config_parse, config_parse_size. Both
 * sources go through one setter, config_set, keyed by the long option name,
 * so a key means the same thing in the file and on the command line.
 * Parsing is two passes over argv: the first finds --config, --help and
 * --version; the file is read next; the second pass applies the flags on top.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"
#include "profrec.h"
#include "roots.h"
#include "wire.h"

static int seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void config_defaults(config_t *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->socket, sizeof(cfg->socket), "%s", HEAPD_DEFAULT_SOCKET);
	snprintf(cfg->arena, sizeof(cfg->arena), "%s", HEAPD_DEFAULT_ARENA);
	cfg->arena_size = HEAPD_DEFAULT_ARENA_SIZE;
	cfg->scavenge_delay = 300;
	cfg->sweep_interval = 1;
	cfg->max_clients = HEAPD_DEFAULT_MAX_CLIENTS;
	cfg->max_clients_per_uid = CONFIG_DEFAULT_CLIENTS_PER_UID;
	cfg->max_connections_per_uid = CONFIG_DEFAULT_CONNECTIONS_PER_UID;
	cfg->hello_timeout = CONFIG_DEFAULT_HELLO_TIMEOUT;
	cfg->profile_records = PROF_DEFAULT_RECORDS;
}

void config_usage(void *out)
{
	fprintf((FILE *)out,
	        "usage: heapd [OPTION]...\n"
	        "Serve a shared-memory heap to cooperating processes over a Unix socket.\n"
	        "\n"
	        "  --socket PATH          listening socket (default %s)\n"
	        "  --arena DIR            arena directory, mode 0700 (default %s)\n"
	        "  --arena-size SIZE      arena size when it is created, e.g. 512M, 4G (default 1G)\n"
	        "  --config FILE          config file (default %s, if it exists)\n"
	        "  --allow-uid UID|USER   also allow this user to connect (repeatable)\n"
	        "  --allow-gid GID|GROUP  also allow this group to connect (repeatable)\n"
	        "  --scavenge-delay SECS  release pages free this long (default 300)\n"
	        "  --sweep-interval SECS  seconds between sweep cycles (default 1)\n"
	        "  --client-quota SIZE    most memory charged to one client, 0 for none (default 0)\n"
	        "  --uid-quota SIZE       most memory charged to one user's clients (default 0)\n"
	        "  --max-clients N        client slots (default %u)\n"
	        "  --max-clients-per-uid N      slots one user may hold (default %u)\n"
	        "  --max-connections-per-uid N  connections one user may open (default %u)\n"
	        "  --hello-timeout SECS   close a connection silent this long after connecting (default %u)\n"
	        "  --profile-rate SIZE    clients sample one allocation per SIZE bytes for heap\n"
	        "                         profiles, unless they set their own rate (default 0: off)\n"
	        "  --profile-records N    heap-profile records a new arena keeps, 0 for none (default %u)\n"
	        "  --max-roots N          names the root directory of a new arena holds (default %u)\n"
	        "  --uid-max-roots N      names one user's clients may bind, 0 for no limit (default 0)\n"
	        "  --reset                lay out an unusable arena anew (destroys its contents)\n"
	        "  --help                 show this help\n"
	        "  --version              show the version\n"
	        "\n"
	        "The config file holds 'key = value' lines named after the long options.\n"
	        "Root, the daemon's own user and the members of its group may always connect.\n",
	        HEAPD_DEFAULT_SOCKET, HEAPD_DEFAULT_ARENA, CONFIG_DEFAULT_FILE,
	        HEAPD_DEFAULT_MAX_CLIENTS, CONFIG_DEFAULT_CLIENTS_PER_UID,
	        CONFIG_DEFAULT_CONNECTIONS_PER_UID, CONFIG_DEFAULT_HELLO_TIMEOUT, PROF_DEFAULT_RECORDS,
	        ROOTS_DEFAULT_MAX);
}

int config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		/* accept 4G, 4GB and 4GiB */
		if ((end[0] == 'i' || end[0] == 'I') && (end[1] == 'B' || end[1] == 'b'))
			end += 2;
		else if (end[0] == 'B' || end[0] == 'b')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_uid(const char *s, uid_t *uid)
{
	uint64_t v;
	if (parse_u64(s, UINT32_MAX - 1, &v) == 0) {
		*uid = (uid_t)v;
		return 0;
	}
	struct passwd pw, *res = NULL;
	char buf[4096];
	if (getpwnam_r(s, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return -EINVAL;
	*uid = res->pw_uid;
	return 0;
}

static int parse_gid(const char *s, gid_t *gid)
{
	uint64_t v;
	if (parse_u64(s, UINT32_MAX - 1, &v) == 0) {
		*gid = (gid_t)v;
		return 0;
	}
	struct group gr, *res = NULL;
	char buf[16384];
	if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) != 0 || !res)
		return -EINVAL;
	*gid = res->gr_gid;
	return 0;
}

static int copy_str(char *dst, size_t dstlen, const char *src)
{
	if (!*src || strlen(src) >= dstlen)
		return -EINVAL;
	memcpy(dst, src, strlen(src) + 1);
	return 0;
}

/* Keys that take a value, in the file and on the command line. */
static const char *const value_keys[] = {
	"socket", "arena", "arena-size", "allow-uid", "allow-gid", "scavenge-delay",
	"sweep-interval", "client-quota", "uid-quota", "max-clients", "max-clients-per-uid",
	"max-connections-per-uid", "hello-timeout", "profile-rate", "profile-records", "max-roots",
	"uid-max-roots", NULL,
};

static int is_value_key(const char *key)
{
	for (int i = 0; value_keys[i]; i++)
		if (strcmp(value_keys[i], key) == 0)
			return 1;
	return 0;
}

/*
 * Set one option. Returns 0, -ENOENT for an unknown key, -EINVAL for a bad
 * value (why says what is wrong with it).
 */
static int config_set(config_t *cfg, const char *key, const char *val, const char **why)
{
	uint64_t v;

	*why = "bad value";
	if (strcmp(key, "socket") == 0) {
		*why = "empty or longer than 107 bytes";
		return copy_str(cfg->socket, sizeof(cfg->socket), val);
	}
	if (strcmp(key, "arena") == 0) {
		*why = "empty or too long";
		return copy_str(cfg->arena, sizeof(cfg->arena), val);
	}
	if (strcmp(key, "arena-size") == 0) {
		*why = "want a size such as 512M or 4G, at least one page";
		if (config_parse_size(val, &v) < 0 || v < HEAPD_PAGE_SIZE ||
		    v / HEAPD_PAGE_SIZE > HEAPD_MAX_PAGES)
			return -EINVAL;
		cfg->arena_size = v;
		return 0;
	}
	if (strcmp(key, "client-quota") == 0 || strcmp(key, "uid-quota") == 0) {
		*why = "want a size such as 64M, or 0 for none";
		if (config_parse_size(val, &v) < 0)
			return -EINVAL;
		if (key[0] == 'c')
			cfg->client_quota = v;
		else
			cfg->uid_quota = v;
		return 0;
	}
	if (strcmp(key, "max-clients-per-uid") == 0 || strcmp(key, "max-connections-per-uid") == 0) {
		*why = "want a number from 1 to 65536";
		if (parse_u64(val, 65536, &v) < 0 || v == 0)
			return -EINVAL;
		if (strcmp(key, "max-clients-per-uid") == 0)
			cfg->max_clients_per_uid = (uint32_t)v;
		else
			cfg->max_connections_per_uid = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "hello-timeout") == 0) {
		*why = "want a number of seconds from 1 to 3600";
		if (parse_u64(val, 3600, &v) < 0 || v == 0)
			return -EINVAL;
		cfg->hello_timeout = v;
		return 0;
	}
	if (strcmp(key, "profile-rate") == 0) {
		*why = "want a size such as 512K, or 0 for off";
		if (config_parse_size(val, &v) < 0)
			return -EINVAL;
		cfg->profile_rate = v;
		return 0;
	}
	if (strcmp(key, "profile-records") == 0) {
		*why = "want a number from 0 to 16777216";
		if (parse_u64(val, PROF_MAX_RECORDS, &v) < 0)
			return -EINVAL;
		cfg->profile_records = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "scavenge-delay") == 0) {
		*why = "want a number of seconds";
		if (parse_u64(val, 100ULL * 365 * 86400, &v) < 0)
			return -EINVAL;
		cfg->scavenge_delay = v;
		return 0;
	}
	if (strcmp(key, "sweep-interval") == 0) {
		*why = "want a number of seconds, at least 1";
		if (parse_u64(val, 86400, &v) < 0 || v == 0)
			return -EINVAL;
		cfg->sweep_interval = v;
		return 0;
	}
	if (strcmp(key, "max-clients") == 0) {
		*why = "want a number from 1 to 65536";
		if (parse_u64(val, 65536, &v) < 0 || v == 0)
			return -EINVAL;
		cfg->max_clients = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "max-roots") == 0) {
		*why = "want a number from 1 to 4194304";
		if (parse_u64(val, ROOTS_MAX_LIMIT, &v) < 0 || v == 0)
			return -EINVAL;
		cfg->max_roots = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "uid-max-roots") == 0) {
		*why = "want a number from 0 (no limit) to 4194304";
		if (parse_u64(val, ROOTS_MAX_LIMIT, &v) < 0)
			return -EINVAL;
		cfg->uid_max_roots = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "allow-uid") == 0) {
		*why = "no such user";
		if (cfg->nallow_uid == CONFIG_MAX_IDS) {
			*why = "too many users";
			return -EINVAL;
		}
		return parse_uid(val, &cfg->allow_uid[cfg->nallow_uid++]) < 0
		               ? (cfg->nallow_uid--, -EINVAL)
		               : 0;
	}
	if (strcmp(key, "allow-gid") == 0) {
		*why = "no such group";
		if (cfg->nallow_gid == CONFIG_MAX_IDS) {
			*why = "too many groups";
			return -EINVAL;
		}
		return parse_gid(val, &cfg->allow_gid[cfg->nallow_gid++]) < 0
		               ? (cfg->nallow_gid--, -EINVAL)
		               : 0;
	}
	return -ENOENT;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Read a config file; -ENOENT if it does not exist, -EINVAL with file:line in err. */
static int config_load_file(config_t *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	unsigned lineno = 0;
	int rc = 0;

	if (!f) {
		rc = -errno;
		if (rc != -ENOENT)
			seterr(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			rc = seterr(err, errlen, "%s:%u: line too long", path, lineno);
			goto out;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			rc = seterr(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
			goto out;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		const char *why;
		int r = config_set(cfg, key, val, &why);
		if (r == -ENOENT) {
			rc = seterr(err, errlen, "%s:%u: unknown key '%s'", path, lineno, key);
			goto out;
		}
		if (r < 0) {
			rc = seterr(err, errlen, "%s:%u: bad value '%s' for %s: %s", path, lineno, val,
			            key, why);
			goto out;
		}
	}
	snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", path);
out:
	fclose(f);
	return rc;
}

/*
 * Split argv[*i] into a name and a value ("--name value" or "--name=value").
 * Returns 0, or -EINVAL with a message.
 */
static int next_option(int argc, char **argv, int *i, char *name, size_t namelen,
                       const char **val, char *err, size_t errlen)
{
	const char *arg = argv[*i];

	*val = NULL;
	if (strcmp(arg, "-h") == 0)
		arg = "--help";
	else if (strcmp(arg, "-V") == 0)
		arg = "--version";
	if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
		return seterr(err, errlen, "unexpected argument '%s'", arg);
	arg += 2;
	const char *eq = strchr(arg, '=');
	size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
	if (n >= namelen)
		return seterr(err, errlen, "unknown option '--%s'", arg);
	memcpy(name, arg, n);
	name[n] = '\0';
	int wants = is_value_key(name) || strcmp(name, "config") == 0;
	int flag = strcmp(name, "help") == 0 || strcmp(name, "version") == 0 ||
	           strcmp(name, "reset") == 0;
	if (!wants && !flag)
		return seterr(err, errlen, "unknown option '--%s'", name);
	if (flag) {
		if (eq)
			return seterr(err, errlen, "option --%s takes no value", name);
		return 0;
	}
	if (eq) {
		*val = eq + 1;
	} else {
		if (*i + 1 >= argc)
			return seterr(err, errlen, "option --%s needs a value", name);
		*val = argv[++*i];
	}
	return 0;
}

int config_parse(config_t *cfg, int argc, char **argv, void *out, char *err, size_t errlen)
{
	const char *config_path = NULL;
	char name[32];
	const char *val;
	int rc;

	config_defaults(cfg);

	/* Pass 1: --help, --version, --config, and the shape of every option. */
	for (int i = 1; i < argc; i++) {
		if ((rc = next_option(argc, argv, &i, name, sizeof(name), &val, err, errlen)) < 0)
			return rc;
		if (strcmp(name, "help") == 0) {
			config_usage(out);
			return CONFIG_EXIT_OK;
		}
		if (strcmp(name, "version") == 0) {
			fprintf((FILE *)out, "heapd %s\n", HEAPD_VERSION);
			return CONFIG_EXIT_OK;
		}
		if (strcmp(name, "config") == 0)
			config_path = val;
	}

	if (config_path) {
		rc = config_load_file(cfg, config_path, err, errlen);
		if (rc == -ENOENT)
			return seterr(err, errlen, "config file %s does not exist", config_path);
		if (rc < 0)
			return -EINVAL;
	} else {
		rc = config_load_file(cfg, CONFIG_DEFAULT_FILE, err, errlen);
		if (rc < 0 && rc != -ENOENT)
			return -EINVAL;
	}

	/* Pass 2: flags override the file; a list on the command line replaces the file's. */
	int uids_set = 0, gids_set = 0;
	for (int i = 1; i < argc; i++) {
		next_option(argc, argv, &i, name, sizeof(name), &val, err, errlen);
		if (strcmp(name, "config") == 0)
			continue;
		if (strcmp(name, "reset") == 0) {
			cfg->reset = 1;
			continue;
		}
		if (strcmp(name, "allow-uid") == 0 && !uids_set++)
			cfg->nallow_uid = 0;
		if (strcmp(name, "allow-gid") == 0 && !gids_set++)
			cfg->nallow_gid = 0;
		const char *why;
		if (config_set(cfg, name, val, &why) < 0)
			return seterr(err, errlen, "bad value '%s' for --%s: %s", val, name, why);
	}
	return CONFIG_RUN;
}
