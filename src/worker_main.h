/* The worker process (src/worker_main.c): its loop, signals, accept and
 * graceful stop. The master forks it. */
#ifndef TG_WORKER_MAIN_H
#define TG_WORKER_MAIN_H

#include "core.h"

/* Run the worker of `slot`: never returns (exits the process). */
void tg_worker_main(tg_config_t *config, int slot);

#endif
