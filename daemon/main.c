// SPDX-License-Identifier: MIT
/*
 * main.c - heapd: start up, serve, shut down.
 *
 * Startup: parse options (usage errors exit 2), open and lock the arena and
 * recover its state (daemon_open; a second daemon on the same arena, or an
 * unusable arena, exits 1 with the reason), take the socket (server_listen;
 * a socket a live daemon answers on exits 1), start the sweeper, serve.
 * SIGTERM or SIGINT stop the loop; connections are closed with their client
 * slots held (clients go on using their spans and re-adopt them from the
 * next daemon), the socket is removed if we bound it, the arena is marked
 * cleanly shut down, and heapd exits 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "notify.h"
#include "server.h"

int main(int argc, char **argv)
{
	static daemon_t d;
	config_t cfg;
	server_t srv;
	char err[512];
	int rc;

	rc = config_parse(&cfg, argc, argv, stdout, err, sizeof(err));
	if (rc == CONFIG_EXIT_OK)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "heapd: %s\nTry 'heapd --help' for more information.\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	shm_commit_arm_from_env(); /* crash tests: stop after the Nth commit write (commit.h) */
	/*
	 * Hold SIGTERM and SIGINT until the event loop handles them (server_run
	 * unblocks them), so a stop that arrives while the arena is recovered or
	 * the socket bound still shuts down cleanly. Threads started meanwhile
	 * (the sweeper) keep them blocked for good.
	 */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	if (cfg.config_file[0])
		log_msg("read config file %s", cfg.config_file);

	rc = daemon_open(&d, &cfg, err, sizeof(err));
	if (rc < 0) {
		log_msg("%s", err);
		return 1;
	}
	rc = server_listen(&srv, &d, cfg.socket, err, sizeof(err));
	if (rc < 0) {
		log_msg("%s", err);
		daemon_close(&d, 1);
		return 1;
	}
	rc = sweeper_start(&d.sweeper);
	if (rc < 0) {
		log_msg("cannot start the sweeper thread: %s", strerror(-rc));
		goto out;
	}
	rc = server_run(&srv);
	if (rc < 0)
		log_msg("event loop failed: %s", strerror(-rc));
	else if (srv.stop_signal)
		log_msg("%s received; shutting down", strsignal(srv.stop_signal));
out:
	notify_stopping();
	server_close(&srv);
	daemon_close(&d, 1);
	log_msg("stopped");
	return rc < 0 ? 1 : 0;
}
