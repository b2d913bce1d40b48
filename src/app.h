/* @public Node apps that Tollgate runs: the `app NAME { }` block (src/app_conf.c), the
 * master's supervisor (src/app.c), its readiness probe (src/app_probe.c) and
 * the control channel of `tollgate -s status|restart-app` (src/app_ctl.c).
 *
 * An app is also an upstream of the same name. Its peers are the instance
 * slots: `instances` + 1 addresses from the `listen` template (one slot is
 * the spare a rolling restart starts the next instance in). Each slot has a
 * record in the app's shared memory zone ("app:NAME"), written by the master
 * only; workers read its gate (tg_peer_gate_t, upstream.h) to route to ready
 * instances only and count their requests in flight on it, so the master can
 * drain an instance before it stops it. The zone has a fixed size, so it is
 * the same mapping across reloads. */
#ifndef TG_APP_H
#define TG_APP_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include "conf.h"
#include "str.h"
#include "upstream.h"
#include "user.h"

#define TG_APP_MAX_INSTANCES (TG_UPSTREAM_MAX_PEERS - 1) /* + the spare slot */
#define TG_APP_MAX_SLOTS TG_UPSTREAM_MAX_PEERS
#define TG_APP_MAX_ENV 128

typedef enum {
    TG_APP_FREE = 0,  /* no process */
    TG_APP_STARTING,  /* running, not ready yet: no traffic */
    TG_APP_READY,     /* gets traffic */
    TG_APP_UNHEALTHY, /* was ready, now fails its health check: no traffic */
    TG_APP_DRAINING,  /* no new traffic, waiting for its requests in flight */
    TG_APP_STOPPING,  /* SIGTERM sent, SIGKILL after stop_timeout */
    TG_APP_CRASHED    /* exited; restarted after the backoff delay */
} tg_app_state_t;

/* "stopped", "starting", "ready", ... */
static inline const char *tg_app_state_name(int state)
{
    static const char *const names[] = {"stopped",  "starting", "ready",  "unhealthy",
                                        "draining", "stopping", "crashed"};
    return state >= 0 && state <= TG_APP_CRASHED ? names[state] : "?";
}

typedef enum {
    TG_APP_RESTART_ALWAYS = 0,
    TG_APP_RESTART_ON_FAILURE,
    TG_APP_RESTART_NO
} tg_app_restart_t;

/* One instance slot in shared memory: the master writes, workers read. */
typedef struct {
    tg_peer_gate_t gate;
    _Atomic int32_t pid;      /* 0: none */
    _Atomic int32_t state;    /* tg_app_state_t */
    _Atomic int32_t restarts; /* unplanned restarts of this slot (crashes, memory) */
    _Atomic int64_t started;  /* wall clock, ms, of the current process's start */
    _Atomic int64_t rss;      /* bytes, sampled by the master every second */
    _Atomic int64_t cpu_ms;   /* user + system CPU time of the process, sampled likewise */
} tg_app_slot_t;

typedef struct {
    tg_app_slot_t slots[TG_APP_MAX_SLOTS];
    _Atomic int32_t rollouts;  /* rolling restarts completed */
    _Atomic int32_t rollbacks; /* rolling restarts stopped: a new instance failed */
} tg_app_shm_t;

/* An app block (config arena). */
typedef struct tg_app_s {
    tg_str_t name;
    const char *command;             /* run as `/bin/sh -c "exec COMMAND"` */
    const char *cwd;                 /* NULL: the master's */
    const char *env[TG_APP_MAX_ENV]; /* "KEY=VALUE": env_file's first, then env's */
    int nenv;
    int nenv_file;  /* the first nenv_file of env[] come from env_file */
    tg_user_t user; /* default: the workers' `user`; name NULL: the master's credentials */
    const tg_user_t *workers_user; /* whose workers connect to its unix sockets */
    int instances;                 /* >= 1 */
    int unix_listen;               /* 1: slots are unix sockets, path_tpl with %i */
    const char *path_tpl;
    struct sockaddr_storage base; /* TCP: the address of slot 0, slot i on port + i */
    socklen_t base_len;
    tg_msec_t ready_timeout, stop_timeout;
    int64_t max_memory; /* RSS bytes, 0: no limit */
    tg_app_restart_t restart;
    tg_msec_t backoff_min, backoff_max;
    const char *log;         /* NULL: the instances write to the master's stdout/stderr */
    tg_health_conf_t health; /* enabled 0: ready once the address accepts a connection */
    uint64_t hash;           /* of the block's app directives: a reload with another one
                              * restarts the app (rolling) */
    tg_upstream_t *upstream; /* the upstream of the same name */
    tg_app_shm_t *shm;       /* its zone */
    const char *file;
    int line;
    struct tg_app_s *next;
} tg_app_t;

/* The address of slot i, in *ss; with a unix socket also its path in `path`
 * (size bytes). */
void tg_app_slot_addr(const tg_app_t *a, int i, struct sockaddr_storage *ss, socklen_t *len,
                      char *path, size_t size);
extern tg_module_t tg_app_module;

#endif
