/* @public Upstream groups: their servers (peers), balancing state, passive and active
 * health, and each worker's pool of idle keep-alive connections.
 *
 * Config-time fields are filled by the `upstream` block (or implicitly by
 * `proxy_pass HOST:PORT`). Runtime fields are per worker: every worker owns
 * its copy of the config after fork, so it may write them without locks. */
#ifndef TG_UPSTREAM_H
#define TG_UPSTREAM_H

#include <stdint.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <ev.h>
#include "str.h"
#include "conf.h"
#include "tls_io.h"

#define TG_UPSTREAM_MAX_PEERS 64 /* one bit each in a request's "tried" mask */

typedef struct tg_tpl_s tg_tpl_t;
typedef struct tg_hash_ring_s tg_hash_ring_t;
typedef struct tg_upconn_s tg_upconn_t;

/* A peer whose traffic the master switches on and off: an app instance
 * (src/app.c). It lives in shared memory, so every worker sees one truth:
 * `open` 1 = route to it; `inflight` counts attempts in flight to it from all
 * workers, so the master knows when a draining instance is idle. */
typedef struct {
    _Atomic uint32_t open;
    _Atomic int32_t inflight;
} tg_peer_gate_t;

typedef struct tg_peer_s {
    /* config */
    tg_str_t name; /* "127.0.0.1:3000" as written in the config */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int weight;             /* >= 1 */
    int max_fails;          /* 0 disables passive health */
    tg_msec_t fail_timeout; /* window for max_fails, and how long it stays down */
    unsigned backup : 1;
    int index; /* position in the upstream's peers[] */
    char sticky_id[17]; /* its value in the sticky cookie: hex of a hash of name */
    char *tls_host;     /* TLS upstreams: the host as written (no port, no brackets) */
    unsigned tls_host_is_ip : 1; /* an IP literal: checked as an IP, no SNI */
    /* A slot of a `resolve` server (src/upstream_dyn.c): its address comes
     * from DNS and changes at run time; `absent` while the slot holds no
     * address of the current answer (a removed address drains: requests in
     * flight finish, balancing skips it, its idle connections close). */
    unsigned dynamic : 1;
    unsigned absent : 1;
    /* The runtime API (the admin endpoint): `drained` takes no new requests
     * (drain, down or delete), as `absent`; base_weight is the configured or
     * resolved weight, `weight` the one in effect (an API weight wins). */
    unsigned drained : 1;
    int base_weight;
    char text[56];      /* dynamic: the address as text, which name points at */
    char host[64];      /* dynamic SRV: the target's name, which tls_host points at */
    tg_peer_gate_t *gate; /* app instances: shared switch; NULL: always eligible */

    /* runtime, per worker */
    int current_weight; /* smooth weighted round robin */
    int conns;          /* requests in flight to this peer from this worker */
    int fails;          /* failures counted in the current window */
    tg_msec_t fail_start; /* start of the current failure window */
    tg_msec_t down_until; /* passive health: unavailable before this time */
    unsigned health_down : 1; /* active health: marked down by checks */
    int hc_fails, hc_passes;  /* consecutive active check results */
    void *tls_session;        /* SSL_SESSION of the last TLS connection, for resumption */
} tg_peer_t;

typedef enum {
    TG_BALANCE_ROUND_ROBIN = 0,
    TG_BALANCE_LEAST_CONN,
    TG_BALANCE_HASH,
    TG_BALANCE_RANDOM
} tg_balance_t;

typedef struct {
    int enabled;
    tg_str_t path; /* default "/" */
    tg_msec_t interval, timeout;
    int fails, passes; /* thresholds to mark down / up */
    int grpc;          /* `grpc`: grpc.health.v1.Health/Check over HTTP/2 instead of GET path */
    tg_str_t service;  /* its service=NAME (empty: the server as a whole) */
} tg_health_conf_t;

typedef struct tg_upstream_dyn_s tg_upstream_dyn_t;

typedef struct tg_upstream_s {
    tg_str_t name;
    tg_peer_t *peers;
    int npeers;
    tg_upstream_dyn_t *dyn; /* its `resolve` servers (src/upstream_dyn.c), NULL: none */
    struct tg_upstream_overrides_s *ovr; /* the runtime API's changes (upstream_dyn.c) */
    uint32_t ovr_seen;    /* per worker: ovr->seq last applied */
    int index;            /* position among the config's upstreams (its row in ovr) */
    int nconf;            /* servers at load: the slots after them take servers added by the API */
    tg_balance_t balance;
    tg_tpl_t *hash_key;   /* balance hash $VAR */
    tg_hash_ring_t *ring; /* consistent-hash ring, built by tg_balance_init */
    int keepalive;        /* idle connections kept per worker (default 32) */
    unsigned http2 : 1;   /* protocol http2: requests go as streams of HTTP/2 connections
                           * (h2c with prior knowledge, or h2 by ALPN over tls) */
    int h2_streams;       /* http2_streams_per_connection (default 100) */
    tg_health_conf_t health;
    tg_str_t sticky_cookie; /* sticky cookie NAME; empty when off */
    unsigned implicit : 1; /* made by proxy_pass HOST:PORT */
    struct tg_app_s *app;  /* the app block that defined it (src/app_conf.c), else NULL */
    unsigned tls : 1;      /* tls on: connections go through TLS */
    int tls_verify;        /* tls_verify (default on) */
    const char *tls_ca;    /* tls_trusted_ca, NULL: the system store */
    const char *tls_cert, *tls_key; /* client certificate (tls_certificate[_key]) */
    const char *tls_cert_file; /* where tls_certificate was written */
    int tls_cert_line;
    void *tls_ctx;         /* SSL_CTX built at config load (tls_conf.c), freed with the arena */
    const char *file;      /* where it was defined */
    int line;
    /* The first proxy_pass that named it with "http://" and with "https://"
     * (file NULL: none), checked against `tls` once the config is read. */
    const char *http_ref_file, *https_ref_file;
    int http_ref_line, https_ref_line;

    /* runtime, per worker */
    tg_upconn_t *idle; /* idle keep-alive connections (LIFO list) */
    int nidle;
    struct tg_h2up_s *h2conns; /* protocol http2: this worker's connections (upstream_h2.c) */
    uint32_t rr_seed; /* random balancing, least_conn tie start */
    struct tg_upstream_s *next;
} tg_upstream_t;

/* Choose a peer for one attempt (the caller has brought a dynamic
 * upstream's servers up to date with tg_upstream_dyn_sync first). `key` is the evaluated hash key (hash
 * balancing only). `tried` has bit i set for peers already tried by this
 * request; the chosen peer's bit is set before returning. Unavailable peers
 * (passive down, active down) are skipped; backups are used only when no
 * primary is available. Returns NULL when nothing is left. Increments
 * peer->conns; the caller calls tg_balance_done() when the attempt ends. */
tg_peer_t *tg_balance_pick(tg_upstream_t *u, tg_str_t key, uint64_t *tried, tg_msec_t now);
/* End of an attempt: decrements conns; a failure counts toward max_fails
 * within fail_timeout and marks the peer down for fail_timeout when reached;
 * a success resets the count. */
void tg_balance_done(tg_upstream_t *u, tg_peer_t *p, int failed, tg_msec_t now);
/* A pick that bypassed tg_balance_pick (the sticky cookie): count it in flight. */
void tg_balance_take(tg_peer_t *p);
/* Is the peer usable now (not down by passive or active health, and its gate,
 * if it has one, open)? */
int tg_balance_is_available(const tg_peer_t *p, tg_msec_t now);
/* A peer as this worker's balancer sees it (for the stats gauges). */
typedef enum {
    TG_PEER_UP = 0,       /* picked when its turn comes */
    TG_PEER_DOWN_PASSIVE, /* skipped: max_fails reached within fail_timeout */
    TG_PEER_DOWN_ACTIVE   /* skipped: marked down by active health checks */
} tg_peer_health_t;
typedef struct {
    int64_t active;          /* attempts in flight to it from this worker */
    tg_peer_health_t health; /* why this worker skips it, if it does */
} tg_peer_gauge_t;
tg_peer_gauge_t tg_balance_peer_gauge(const tg_peer_t *p, tg_msec_t now);
/* Build the hash ring and reset runtime state; call once per loaded config.
 * Returns 0 or -1 (out of memory). Memory comes from `a`. */
int tg_balance_init(tg_upstream_t *u, tg_arena_t *a);

/* The upstream `name` refers to: an upstream block (possibly defined later
 * in the file) or, at the end, an implicit one-server upstream HOST:PORT. */
tg_upstream_t *tg_upstream_reference(tg_conf_t *cf, tg_str_t name);
/* A proxy_pass named u with a scheme: note where, for the upstream module's
 * init_conf (https:// needs `tls on`, http:// needs it off; an implicit
 * HOST:PORT upstream named with https:// gets TLS). */
void tg_upstream_note_scheme(tg_conf_t *cf, tg_upstream_t *u, int https);
/* Start defining the upstream `name` (an `upstream` or `app` block): NULL and
 * *err set when one of that name is defined already. */
tg_upstream_t *tg_upstream_define(tg_conf_t *cf, tg_str_t name, const char **err);
/* The arguments of a `health_check` directive into *h (enabled, defaults
 * for what is not given). NULL or an error message. */
const char *tg_upstream_parse_health(tg_conf_t *cf, tg_health_conf_t *h);
/* Find an upstream by name (NULL if none). */
tg_upstream_t *tg_config_find_upstream(tg_config_t *c, tg_str_t name);

/* One line saying what the loaded upstream is: balancing, keepalive, TLS,
 * health checks and each server with its settings (tollgate -T, --explain).
 * An arena string, NULL when out of memory. */
const char *tg_upstream_describe(tg_arena_t *a, const tg_upstream_t *u);

/* An upstream connection, active or idle in its upstream's pool. */
struct tg_upconn_s {
    int fd;
    ev_io io;
    ev_timer timer;
    tg_peer_t *peer;
    tg_upstream_t *upstream;
    struct tg_request_s *r; /* the request using it; NULL when idle */
    double expires;   /* idle: retire at this ev_now() */
    uint32_t requests; /* served on this connection */
    tg_ssl_t *ssl;     /* TLS upstreams: the session, else NULL */
    uint8_t tls_flags; /* TG_TLS_F_* (tls_io.h) */
    int rbatch;        /* a read of it in the send batch (tg_sendq_read); 0: none */
    struct tg_upconn_s *next;
};

/* TLS to the upstream (tls on): start the session (0, or -1: no memory),
 * advance the handshake (1 done, 0 wait: TG_TLS_F_WANT_WRITE says which way,
 * -1 failed: logged at error, a verification failure with its reason; the
 * health checks pass `why` to get the reason instead of a log line), free
 * it. Through TLS, read and write like read(2)/writev(2) with failures
 * logged. */
int tg_upconn_tls_start(tg_upconn_t *uc);
int tg_upconn_tls_handshake(tg_upconn_t *uc, char *why, size_t size);
void tg_upconn_tls_free(tg_upconn_t *uc);
ssize_t tg_upconn_tls_read(tg_upconn_t *uc, void *buf, size_t len);
ssize_t tg_upconn_tls_writev(tg_upconn_t *uc, const struct iovec *iov, int n);

/* Upstream connection I/O, plain or through TLS, with read(2)/writev(2)
 * semantics (as tg_conn_read/tg_conn_writev for clients). */
static inline ssize_t tg_upconn_read(tg_upconn_t *uc, void *buf, size_t len)
{
    return uc->ssl ? tg_upconn_tls_read(uc, buf, len) : read(uc->fd, buf, len);
}
static inline ssize_t tg_upconn_writev(tg_upconn_t *uc, const struct iovec *iov, int n)
{
    return uc->ssl ? tg_upconn_tls_writev(uc, iov, n) : writev(uc->fd, iov, n);
}
static inline ssize_t tg_upconn_write(tg_upconn_t *uc, const void *buf, size_t len)
{
    if (uc->ssl) {
        struct iovec v = {(void *)buf, len};
        return tg_upconn_tls_writev(uc, &v, 1);
    }
    return send(uc->fd, buf, len, MSG_NOSIGNAL);
}
/* Bytes waiting in the TLS layer (no socket event comes for them). */
static inline int tg_upconn_has_pending(tg_upconn_t *uc)
{
    return uc->ssl && tg_tls_pending(uc->ssl, uc->tls_flags);
}

/* upstream_dyn.c, for the upstream block (declared here so that upstream.c
 * needs nothing else of it): the `server` directive with `resolve`, and the
 * reservation of those servers' peer slots, made before tg_balance_init.
 * The latter returns the number of errors it printed. */
const char *tg_upstream_dyn_server(tg_conf_t *cf, tg_upstream_t *u);
int tg_upstream_dyn_reserve(tg_upstream_t *u);
/* `s` with u's resolve servers appended ("; server NAME:PORT resolve ..."),
 * for tg_upstream_describe. An arena string, NULL when out of memory. */
char *tg_upstream_dyn_describe(tg_arena_t *a, const tg_upstream_t *u, char *s);

/* upstream.c: the pool */
tg_upconn_t *tg_upstream_pool_get(tg_upstream_t *u, tg_peer_t *p);
/* Keep an idle connection for reuse for up to `keepalive_ms`. */
void tg_upstream_pool_put(tg_upconn_t *uc, tg_msec_t keepalive_ms);
tg_upconn_t *tg_upconn_create(tg_upstream_t *u, tg_peer_t *p);
void tg_upconn_destroy(tg_upconn_t *uc);
void tg_upstream_close_idle_all(tg_config_t *cf);
/* upstream_h2.c: close u's HTTP/2 connections that carry no stream; the
 * others take no new stream and close when their last one ends. */
void tg_h2up_close_idle(tg_upstream_t *u);
typedef struct tg_module_s tg_module_t;
extern tg_module_t tg_upstream_module;

#endif
