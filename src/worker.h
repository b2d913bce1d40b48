/* A worker process: one event loop serving its share of every listener
 * (its own SO_REUSEPORT socket per listener, handed down by the master),
 * with per-worker state only. */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <ev.h>
#include "core.h"

typedef struct tg_conn_s tg_conn_t;

struct tg_worker_s {
    struct ev_loop *loop;
    int slot;
    tg_config_t *config;
    ev_io *accepts; /* one per listener */
    tg_listen_t **listens;
    int nlistens;
    tg_conn_t *conns; /* all open client connections */
    int64_t nconns;
    uint32_t next_request_id;
    /* upgraded connections, for the stats endpoint */
    uint64_t upgrades, tunnel_bytes_up, tunnel_bytes_down;
    int64_t tunnels_open;
    unsigned shutting_down : 1;
    unsigned accept_paused : 1;
    ev_signal sig_term, sig_int, sig_quit, sig_usr1, sig_hup;
    ev_timer shutdown_timer, master_check, accept_retry;
    char date[40]; /* "Mon, 23 Nov 2026 09:33:06 GMT" */
    size_t date_len;
    double date_at;
};

/* The worker of this process (NULL in the master). */
extern tg_worker_t *tg_worker;

/* Run the worker: never returns (exits the process). */
void tg_worker_run(tg_config_t *config, int slot);
/* Cached HTTP date, refreshed at most once a second. */
tg_str_t tg_worker_date(void);
/* This worker's client connections by what they are doing (the stats
 * gauges; src/stats.c reads them through tg_stats_gauges_collect). */
typedef struct {
    int64_t reading;  /* TLS handshake or reading a request head */
    int64_t writing;  /* a request in progress, or draining input before close */
    int64_t idle;     /* keep-alive, waiting for the next request */
    int64_t upgraded; /* tunnels (WebSocket) */
} tg_worker_conn_states_t;
/* Count w's open client connections by state (a walk of w->conns). */
void tg_worker_conn_states(const tg_worker_t *w, tg_worker_conn_states_t *out);
/* Stop/restart accepting (worker_connections reached, EMFILE). */
void tg_worker_accept_pause(void);
void tg_worker_accept_resume(void);

#endif
