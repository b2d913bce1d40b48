/* Active health checks of upstream servers (src/health.c), per worker. The
 * settings are the upstream's `health_check` (tg_health_conf_t in
 * upstream.h); the upstream module starts and stops them with the worker. */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include "upstream.h"

typedef struct tg_config_s tg_config_t;

/* Start this worker's checks of every upstream with a health_check. */
void tg_health_start(tg_config_t *cf);
/* Stop them (the worker exits). */
void tg_health_stop(tg_config_t *cf);

#endif
