/* The worker process (src/worker_main.c): its loop, signals, accept and
 * graceful stop. The master forks it. */
#ifndef TG_WORKER_MAIN_H
#define TG_WORKER_MAIN_H

#include "core.h"

/* In a new worker, the write end of its pipe to the master (-1: none): the
 * worker writes one byte on it and closes it once it is about to accept,
 * which the master counts for systemd's READY=1 (src/master.c). */
extern int tg_worker_ready_fd;

/* Run the worker of `slot`: never returns (exits the process). */
void tg_worker_main(tg_config_t *config, int slot);

#endif
