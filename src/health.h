/* Active health checks of upstream servers (src/health.c): each worker
 * checks every server of the upstreams that have a `health_check` (its
 * settings, tg_health_conf_t, are the upstream block's: upstream.h) and marks
 * them down or up for balancing. A module for the worker's start and stop
 * only: nothing else calls it. */
#ifndef TG_HEALTH_H
#define TG_HEALTH_H

#include "module.h"

extern tg_module_t tg_health_module;

#endif
