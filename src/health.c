/* Active health checks: every `interval`, each worker sends
 * `GET path HTTP/1.1` on a fresh connection to every server of upstreams with
 * a health_check, and reads the status line within `timeout`. A 2xx or 3xx
 * answer is a pass, anything else (refused, timeout, other status) a fail.
 * `fails` consecutive fails mark the server down (balancing skips it),
 * `passes` consecutive passes mark it up again. Each worker checks on its
 * own, so a worker never trusts state it cannot see.
 *
 * Upstreams with `tls on` are checked over TLS with the proxied traffic's
 * settings (the upstream's SSL_CTX: trusted CAs, verification, SNI, client
 * certificate; tls_io.c's upstream functions on an embedded tg_upconn_t), so a
 * server whose certificate fails verification fails its checks. The
 * handshake is non-blocking on the loop, within the same `timeout`. A check
 * is a small state machine: connect, handshake (TLS only), send, read.
 *
 * `health_check grpc [service=NAME]`: the standard gRPC health check
 * (grpc.health.v1.Health/Check with HealthCheckRequest{service}) as a stream
 * on the upstream's HTTP/2 connections (src/upstream_h2.c, the pool the
 * traffic uses, TLS included); a pass is HTTP 200, grpc-status 0 and a
 * HealthCheckResponse whose status is SERVING (1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <ev.h>
#include "health.h"
#include "core.h"
#include "upstream.h"
#include "upstream_h2.h"
#include "worker.h"
#include "log.h"

typedef enum { CHECK_CONNECT = 0, CHECK_HANDSHAKE, CHECK_SEND, CHECK_READ } check_state_t;

typedef struct {
    tg_h2up_stream_t st; /* grpc checks: the stream (first: its callbacks get &st) */
    nghttp2_nv nv[6];
    char frame[5 + 2 + 200]; /* the request message, length-prefixed */
    struct iovec body;
    tg_spans_t src;
    char grpc_status[8];     /* the answer's grpc-status field, "" when none */
    unsigned grpc_open : 1;  /* the stream is open */
    ev_timer timer;  /* interval, then the timeout of a check */
    ev_io io;
    int fd;
    check_state_t state;
    tg_upconn_t uc; /* TLS upstreams: fd, peer, upstream and the SSL of this check */
    tg_upstream_t *u;
    tg_peer_t *peer;
    char req[512];
    size_t req_len, sent;
    char resp[64];
    size_t got;
} check_t;

static check_t *checks;
static int nchecks;

static void check_arm(check_t *k, double after)
{
    struct ev_loop *loop = tg_worker->loop;
    ev_io_stop(loop, &k->io);
    tg_upconn_tls_free(&k->uc);
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    ev_timer_stop(loop, &k->timer);
    ev_timer_set(&k->timer, after, 0.);
    ev_timer_start(loop, &k->timer);
}

static void check_result(check_t *k, int ok, const char *why)
{
    tg_peer_t *p = k->peer;
    tg_health_conf_t *h = &k->u->health;
    if (ok) {
        p->hc_fails = 0;
        if (p->health_down && ++p->hc_passes >= h->passes) {
            p->health_down = 0;
            p->hc_passes = 0;
            tg_log(TG_LOG_WARN, "upstream %.*s server %.*s is up (health check passed)",
                   TG_STR_FMT(k->u->name), TG_STR_FMT(p->name));
        }
    } else {
        p->hc_passes = 0;
        if (!p->health_down && ++p->hc_fails >= h->fails) {
            p->health_down = 1;
            p->hc_fails = 0;
            tg_log(TG_LOG_WARN, "upstream %.*s server %.*s is down (health check: %s)",
                   TG_STR_FMT(k->u->name), TG_STR_FMT(p->name), why);
        }
    }
    check_arm(k, (double)h->interval / 1000.0);
}

/* Wait for the socket to be readable or writable. */
static void check_watch(check_t *k, int events)
{
    struct ev_loop *loop = tg_worker->loop;
    if (ev_is_active(&k->io) && (k->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(loop, &k->io);
    ev_io_set(&k->io, k->fd, events);
    ev_io_start(loop, &k->io);
}

/* After EAGAIN: the TLS layer says which way it waits, plain sockets wait
 * for what the state needs. */
static void check_wait(check_t *k, int plain_events)
{
    if (k->uc.ssl)
        check_watch(k, (k->uc.tls_flags & TG_TLS_F_WANT_WRITE) ? EV_WRITE : EV_READ);
    else
        check_watch(k, plain_events);
}

static ssize_t check_send(check_t *k)
{
    const char *p = k->req + k->sent;
    size_t len = k->req_len - k->sent;
    return k->uc.ssl ? tg_upconn_write(&k->uc, p, len) : send(k->fd, p, len, MSG_NOSIGNAL);
}

static ssize_t check_recv(check_t *k)
{
    char *p = k->resp + k->got;
    size_t len = sizeof(k->resp) - 1 - k->got;
    return k->uc.ssl ? tg_upconn_read(&k->uc, p, len) : recv(k->fd, p, len, 0);
}

static void check_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    check_t *k = w->data;
    char why[256];
    if (k->state == CHECK_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
            check_result(k, 0, err ? strerror(err) : "connect failed");
            return;
        }
        k->state = CHECK_SEND;
        if (k->u->tls) {
            k->uc.fd = k->fd;
            if (tg_upconn_tls_start(&k->uc) != 0) {
                check_result(k, 0, "cannot start TLS");
                return;
            }
            k->state = CHECK_HANDSHAKE;
        }
    }
    if (k->state == CHECK_HANDSHAKE) {
        int rc = tg_upconn_tls_handshake(&k->uc, why, sizeof(why));
        if (rc < 0) {
            check_result(k, 0, why);
            return;
        }
        if (rc == 0) {
            check_wait(k, 0);
            return;
        }
        k->state = CHECK_SEND;
    }
    if (k->state == CHECK_SEND) {
        while (k->sent < k->req_len) {
            ssize_t n = check_send(k);
            if (n < 0 && errno == EAGAIN) {
                check_wait(k, EV_WRITE);
                return;
            }
            if (n <= 0) {
                check_result(k, 0, n == 0 ? "connection closed" : strerror(errno));
                return;
            }
            k->sent += (size_t)n;
        }
        k->state = CHECK_READ;
    }
    for (;;) { /* CHECK_READ: until the status line is in */
        ssize_t n = check_recv(k);
        if (n < 0 && errno == EAGAIN) {
            check_wait(k, EV_READ);
            return;
        }
        if (n <= 0) {
            /* TLS: an alert after the handshake, e.g. our client certificate
             * refused under TLS 1.3 (its reason is logged at info) */
            check_result(k, 0, n == 0 ? "connection closed"
                               : k->uc.ssl && errno == EPROTO ? "TLS read failed"
                                                              : strerror(errno));
            return;
        }
        k->got += (size_t)n;
        k->resp[k->got] = '\0';
        if (k->got >= 12 || memchr(k->resp, '\n', k->got))
            break;
    }
    int status = 0;
    if (sscanf(k->resp, "HTTP/1.%*d %3d", &status) != 1) {
        check_result(k, 0, "bad response");
        return;
    }
    snprintf(why, sizeof(why), "status %d", status);
    check_result(k, status >= 200 && status < 400, why);
}

/* ---- grpc.health.v1 --------------------------------------------------------- */

static int grpc_field(tg_h2up_stream_t *st, tg_str_t name, tg_str_t value, int trailer)
{
    (void)trailer;
    check_t *k = (check_t *)st;
    if (tg_str_eq_lit(name, "grpc-status") && value.len < sizeof(k->grpc_status)) {
        memcpy(k->grpc_status, value.p, value.len);
        k->grpc_status[value.len] = '\0';
    }
    return 0;
}

/* The answer's message: 5-byte prefix, then HealthCheckResponse, whose
 * field 1 (status, varint) must be 1, SERVING. */
static int grpc_serving(tg_h2up_stream_t *st)
{
    unsigned char m[16];
    size_t n = 0;
    for (int i = 0; i < st->nin && n < sizeof(m); i++) {
        size_t k = tg_buf_len(st->in[i]);
        if (k > sizeof(m) - n)
            k = sizeof(m) - n;
        memcpy(m + n, st->in[i]->pos, k);
        n += k;
    }
    return n >= 7 && m[0] == 0 && m[5] == 0x08 && m[6] == 1;
}

static void grpc_close(check_t *k)
{
    if (k->grpc_open) {
        k->grpc_open = 0;
        tg_h2up_close(&k->st);
    }
}

static void grpc_event(tg_h2up_stream_t *st)
{
    check_t *k = (check_t *)st;
    if (!k->grpc_open)
        return;
    if (st->closed && !st->ended) {
        grpc_close(k);
        check_result(k, 0, st->conn_failed ? "cannot connect" : "stream reset, no answer");
        return;
    }
    if (!st->ended)
        return; /* the answer is not complete yet */
    int ok = st->status == 200 && strcmp(k->grpc_status, "0") == 0 && grpc_serving(st);
    const char *why = st->status != 200 ? "HTTP status not 200"
                      : strcmp(k->grpc_status, "0") ? "grpc-status not 0"
                                                    : "not SERVING";
    grpc_close(k);
    check_result(k, ok, why);
}

static void grpc_start(check_t *k)
{
    tg_upstream_t *u = k->u;
    size_t sl = u->health.service.len;
    k->frame[0] = 0;
    uint32_t mlen = sl ? (uint32_t)(2 + sl) : 0;
    k->frame[1] = 0, k->frame[2] = 0, k->frame[3] = 0, k->frame[4] = (char)mlen;
    if (sl) {
        k->frame[5] = 0x0a; /* field 1, length-delimited: service */
        k->frame[6] = (char)sl;
        memcpy(k->frame + 7, u->health.service.p, sl);
    }
    k->body = (struct iovec){k->frame, 5 + mlen};
    k->src = (tg_spans_t){.n = 1, .len = 5 + mlen};
    k->src.v[0] = k->body;
#define NV(n, v, vl) (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), \
                                  NGHTTP2_NV_FLAG_NONE}
    k->nv[0] = NV(":method", "POST", 4);
    k->nv[1] = NV(":scheme", u->tls ? "https" : "http", u->tls ? 5 : 4);
    k->nv[2] = NV(":authority", k->peer->name.p, k->peer->name.len);
    k->nv[3] = NV(":path", "/grpc.health.v1.Health/Check", 28);
    k->nv[4] = NV("content-type", "application/grpc", 16);
    k->nv[5] = NV("te", "trailers", 8);
#undef NV
    k->grpc_status[0] = '\0';
    k->st.on_event = grpc_event;
    k->st.on_field = grpc_field;
    k->st.src = &k->src;
    k->st.src_last = 1;
    if (tg_h2up_open(&k->st, u, k->peer, k->nv, 6, 1, u->health.timeout) != 0) {
        check_result(k, 0, strerror(errno));
        return;
    }
    k->grpc_open = 1;
    ev_timer_set(&k->timer, (double)u->health.timeout / 1000.0, 0.);
    ev_timer_start(tg_worker->loop, &k->timer);
}

static void check_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    check_t *k = t->data;
    if (k->fd >= 0 || k->grpc_open) {
        grpc_close(k);
        check_result(k, 0, "timeout");
        return;
    }
    if (k->peer->absent) { /* a resolve server's slot without an address now */
        ev_timer_set(t, (double)k->u->health.interval / 1000.0, 0.);
        ev_timer_start(loop, t);
        return;
    }
    if (k->u->health.grpc) {
        grpc_start(k);
        return;
    }
    /* start a check */
    k->fd = socket(k->peer->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        check_result(k, 0, strerror(errno));
        return;
    }
    if (connect(k->fd, (struct sockaddr *)&k->peer->addr, k->peer->addrlen) != 0 &&
        errno != EINPROGRESS) {
        check_result(k, 0, strerror(errno));
        return;
    }
    k->sent = k->got = 0;
    k->state = CHECK_CONNECT;
    k->uc = (tg_upconn_t){.fd = -1, .peer = k->peer, .upstream = k->u};
    check_watch(k, EV_WRITE);
    ev_timer_set(t, (double)k->u->health.timeout / 1000.0, 0.);
    ev_timer_start(loop, t);
}

static void health_start(tg_config_t *cf)
{
    int n = 0;
    for (tg_upstream_t *u = cf->upstreams; u; u = u->next)
        if (u->health.enabled)
            n += u->npeers;
    if (n == 0)
        return;
    checks = calloc((size_t)n, sizeof(*checks));
    if (checks == NULL)
        return;
    for (tg_upstream_t *u = cf->upstreams; u; u = u->next) {
        if (!u->health.enabled)
            continue;
        for (int i = 0; i < u->npeers; i++) {
            check_t *k = &checks[nchecks++];
            k->fd = -1;
            k->u = u;
            k->peer = &u->peers[i];
            k->uc = (tg_upconn_t){.fd = -1, .peer = k->peer, .upstream = u};
            int len = snprintf(k->req, sizeof(k->req),
                               "GET %.*s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: tollgate-health\r\n"
                               "Connection: close\r\n\r\n",
                               TG_STR_FMT(u->health.path), TG_STR_FMT(k->peer->name));
            k->req_len = len > 0 && (size_t)len < sizeof(k->req) ? (size_t)len : 0;
            ev_init(&k->io, check_io_cb);
            k->io.data = k;
            ev_init(&k->timer, check_timer_cb);
            k->timer.data = k;
            /* first check soon, spread over the interval a little */
            check_arm(k, 0.01 * (double)(nchecks % 50));
        }
    }
}

static void health_stop(tg_config_t *cf)
{
    (void)cf;
    for (int i = 0; i < nchecks; i++) {
        ev_io_stop(tg_worker->loop, &checks[i].io);
        ev_timer_stop(tg_worker->loop, &checks[i].timer);
        tg_upconn_tls_free(&checks[i].uc);
        grpc_close(&checks[i]);
        if (checks[i].fd >= 0)
            close(checks[i].fd);
    }
    free(checks);
    checks = NULL;
    nchecks = 0;
}

static int health_init_worker(tg_worker_t *w)
{
    health_start(w->config);
    return 0;
}

static void health_exit_worker(tg_worker_t *w)
{
    health_stop(w->config);
}

/* A module only for the worker's start and stop: the checks' settings are
 * the upstream block's health_check (src/upstream.c). */
tg_module_t tg_health_module = {
    .name = "health",
    .init_worker = health_init_worker,
    .exit_worker = health_exit_worker,
};
