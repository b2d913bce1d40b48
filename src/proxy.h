/* The proxy: forwards a routed request to an upstream server and streams the
 * response back (proxy.c), with the `proxy_*` directives (tg_proxy_module).
 * Upstream connections and their keep-alive pool are in upstream.c. */
#ifndef TG_PROXY_H
#define TG_PROXY_H

#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <ev.h>
#include "request.h"
#include "upstream.h"
#include "tls.h"
#include "proxy_uri.h"

typedef struct {
    tg_str_t name;
    tg_tpl_t *value; /* empty value: remove the header */
} tg_proxy_header_t;

typedef struct {
    tg_upstream_t *upstream; /* proxy_pass; NULL when not set here */
    tg_proxy_uri_t pass_uri; /* proxy_pass's URI part and the prefix it replaces */
    tg_msec_t connect_timeout, read_timeout, send_timeout;
    int64_t next_upstream_tries; /* 0 = as many as there are servers */
    tg_proxy_header_t *set_headers;
    int nset_headers;
    tg_str_t *remove_headers;
    int nremove_headers;
    int set_headers_given; /* 1 when this scope had its own list */
    tg_msec_t websocket_idle_timeout;
} tg_proxy_conf_t;

/* An upstream connection, active or idle in its upstream's pool. */
struct tg_upconn_s {
    int fd;
    ev_io io;
    ev_timer timer;
    tg_peer_t *peer;
    tg_upstream_t *upstream;
    tg_request_t *r;  /* the request using it; NULL when idle */
    double expires;   /* idle: retire at this ev_now() */
    uint32_t requests; /* served on this connection */
    tg_ssl_t *ssl;     /* TLS upstreams: the session, else NULL */
    unsigned tls_want_write : 1; /* the TLS layer waits for the socket to take bytes */
    unsigned tls_failed : 1;
    struct tg_upconn_s *next;
};

/* Upstream connection I/O, plain or through TLS, with read(2)/writev(2)
 * semantics (as tg_conn_read/tg_conn_writev for clients). */
static inline ssize_t tg_upconn_read(tg_upconn_t *uc, void *buf, size_t len)
{
    return uc->ssl ? tg_tls_up_read(uc, buf, len) : read(uc->fd, buf, len);
}
static inline ssize_t tg_upconn_writev(tg_upconn_t *uc, const struct iovec *iov, int n)
{
    return uc->ssl ? tg_tls_up_writev(uc, iov, n) : writev(uc->fd, iov, n);
}
static inline ssize_t tg_upconn_write(tg_upconn_t *uc, const void *buf, size_t len)
{
    if (uc->ssl) {
        struct iovec v = {(void *)buf, len};
        return tg_tls_up_writev(uc, &v, 1);
    }
    return send(uc->fd, buf, len, MSG_NOSIGNAL);
}
/* Decrypted bytes waiting in the TLS layer (no socket event comes for them). */
static inline int tg_upconn_has_pending(tg_upconn_t *uc)
{
    return uc->ssl && tg_tls_up_pending(uc);
}

/* Pick r->upstream from proxy_pass (before the route hooks may change it). */
void tg_proxy_route(tg_request_t *r);
/* Start proxying r to r->upstream. */
void tg_proxy_start(tg_request_t *r);
/* Called by http.c: the client sent more body bytes / can take more data. */
void tg_proxy_on_client_body(tg_request_t *r);
void tg_proxy_on_client_drained(tg_request_t *r);
/* Called by http.c: the client's socket is full (a batched write went only
 * in part): stop reading the upstream until it drains. */
void tg_proxy_on_client_blocked(tg_request_t *r);
/* Drop the upstream side of r (client gone, or request finished). */
void tg_proxy_abort(tg_request_t *r);
/* A tunneled (upgraded) client connection has an event. */
void tg_proxy_on_tunnel_event(tg_request_t *r);

/* upstream.c: the pool */
tg_upconn_t *tg_upstream_pool_get(tg_upstream_t *u, tg_peer_t *p);
/* Keep an idle connection for reuse for up to `keepalive_ms`. */
void tg_upstream_pool_put(tg_upconn_t *uc, tg_msec_t keepalive_ms);
tg_upconn_t *tg_upconn_create(tg_upstream_t *u, tg_peer_t *p);
void tg_upconn_destroy(tg_upconn_t *uc);
void tg_upstream_close_idle_all(tg_config_t *cf);
/* health.c: start/stop the active health checks of this worker */
void tg_health_start(tg_config_t *cf);
void tg_health_stop(tg_config_t *cf);

extern tg_module_t tg_proxy_module;
extern tg_module_t tg_upstream_module;

#endif
