/* @public A worker's state: the event loop serving its share of every
 * listener (its own SO_REUSEPORT socket per listener, handed down by the
 * master), its slot and config, and everything else per worker. Modules use
 * tg_worker->loop, ->slot and ->config; the rest is the core's. */
#ifndef TG_WORKER_H
#define TG_WORKER_H

#include <sys/types.h>
#include <ev.h>
#include "core.h"

typedef struct tg_conn_s tg_conn_t;

/* The current second in local time, formatted once per second for the
 * $time_* variables and the access log. */
typedef struct {
    char local[32]; /* $time_local: "04/Dec/2026:18:20:05 +0000" */
    char iso8601[32]; /* $time_iso8601: "2026-12-04T18:20:05+00:00" */
    size_t local_len, iso8601_len;
    long sec; /* the second they show, -1 before the first use */
} tg_worker_times_t;

struct tg_worker_s {
    struct ev_loop *loop;
    int slot;
    tg_config_t *config;
    ev_io *accepts; /* one per listener */
    tg_listen_t **listens;
    int nlistens;
    tg_conn_t *conns; /* all open client connections */
    int64_t nconns;
    tg_conn_t *conn_cache; /* closed connection structs kept for reuse */
    int conn_cached;
    void *codec_cache; /* the HTTP/1.1 codec's idle parsers (h1.c) */
    int codec_cached;
    double shutdown_deadline; /* graceful stop: close what is left then */
    pid_t master_pid;         /* our parent: when it is gone, stop */
    uint32_t next_request_id;
    uint64_t next_conn_number; /* $connection: the last client connection's serial */
    /* upgraded connections, for the stats endpoint */
    uint64_t upgrades, tunnel_bytes_up, tunnel_bytes_down;
    int64_t tunnels_open;
    int64_t h2_streams; /* HTTP/2 requests in flight (h2.c), for the stats endpoint */
    unsigned shutting_down : 1;
    unsigned accept_paused : 1;
    ev_signal sig_term, sig_int, sig_quit, sig_usr1, sig_hup;
    ev_timer shutdown_timer, master_check, accept_retry;
    char date[40]; /* "Mon, 23 Nov 2026 09:33:06 GMT" */
    size_t date_len;
    double date_at;
    tg_worker_times_t times; /* tg_worker_times() */
};

/* The worker of this process (NULL in the master). */
extern tg_worker_t *tg_worker;

/* Cached HTTP date, refreshed at most once a second. */
tg_str_t tg_worker_date(void);
/* The loop's current second as $time_local and $time_iso8601, formatted at
 * most once a second (the strings change in place when the second does). */
const tg_worker_times_t *tg_worker_times(void);
/* Stop/restart accepting (worker_connections reached, EMFILE). */
void tg_worker_accept_pause(void);
void tg_worker_accept_resume(void);

#endif
