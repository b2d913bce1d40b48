/* The master process (master.c): listeners, workers, signals, reload. */
#ifndef TG_MASTER_H
#define TG_MASTER_H

#include "core.h"

/* Run until stopped; `config` was loaded from `path` (re-read on HUP).
 * Returns the process exit code. */
int tg_master_run(tg_config_t *config, const char *path);

#endif
