/* tg.http.request: an HTTP/1.1 call from a script to a configured upstream
 * or to any http(s) URL, without blocking the worker (docs/lua.md).
 *
 *   local res, err = tg.http.request{ upstream = "auth", method = "POST",
 *       path = "/introspect", headers = {...}, body = "...", timeout = 2 }
 *   -- or url = "http://auth/introspect" (the host names an upstream)
 *   res.status, res.headers (lowercase name -> value), res.body
 *
 * upstream= (or a url whose HOST[:PORT] names an upstream of the config):
 * its balancing, passive health, keep-alive pool (shared with the proxy)
 * and TLS settings apply. Any other url goes to its host directly: a
 * "target" per scheme+host+port in this worker (at most MAX_TARGETS) with
 * its own keep-alive pool, the host resolved through src/resolver.c (never
 * blocking; the address kept for the answer's TTL), https verified against
 * lua_http_ca or the system CAs with the host as SNI. The script's
 * coroutine waits (tg_lua_vm_wait: the request parked, or the timer's run;
 * in the log phase the call is detached) while a small state machine on
 * the worker's loop resolves, connects, shakes hands, sends the request
 * and reads the answer with llhttp; everything lives in the wait's arena,
 * the body is bounded by lua_http_body_max, and the whole call by its
 * timeout. A cancelled call closes its connection. A connection taken
 * from the pool that turns out closed before any answer byte is replaced
 * by a new one, once. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <ev.h>
#include <llhttp.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "core.h"
#include "request.h"
#include "upstream.h"
#include "upstream_dyn.h"
#include "worker.h"
#include "resolver.h"
#include "tls_conf.h"
#include "log.h"

#define HEADER_SPACE (16 * 1024) /* response header names and values */
#define MAX_HEADERS 100
#define DEFAULT_TIMEOUT 10.0
#define POOL_KEEP_MS 30000 /* idle time a connection this module returns may stay pooled */
#define MAX_TARGETS 64     /* url hosts per worker (each with its pool) */
#define TARGET_KEEPALIVE 8 /* idle connections kept per url host */
#define MIN_TTL 1.0        /* seconds an address is kept at least */

/* A host called by url: an upstream of one server, made in this worker
 * (never in the config), for its pool and TLS settings. */
typedef struct target_s {
    tg_upstream_t u;
    tg_peer_t p;
    char key[280]; /* "https://host:port", the peer's name */
    char host[256];
    uint16_t port;
    double expires; /* the address is good until this ev_now(); 0: none yet */
    struct target_s *next;
} target_t;

/* A DNS query of a call, malloc'd: the answer may come after the call was
 * cancelled (call NULL then). */
typedef struct {
    struct call_s *c;
} query_t;

static struct {
    void *ctx; /* TLS client context of url calls (config arena) */
    tg_resolver_t *res;
    target_t *targets;
    int ntargets;
} direct;

typedef enum { H_CONNECT = 0, H_HANDSHAKE, H_SEND, H_READ } hstate_t;

typedef struct call_s {
    tg_lua_wait_t wait;
    tg_arena_t *arena;
    target_t *t; /* a url call, else NULL */
    query_t *q;  /* its DNS query in flight */
    tg_upstream_t *u;
    tg_peer_t *peer;
    tg_upconn_t *uc;
    hstate_t state;
    ev_io io;
    ev_timer timer;
    int reused, retried, got_bytes, done;
    int head; /* a HEAD request: the answer has no body whatever it says */
    const char *err; /* static text; NULL on success */
    char *out;       /* the request bytes */
    size_t out_len, sent;
    llhttp_t parser;
    /* response: headers as "name\0value\0" pairs in hbuf */
    char *hbuf;
    size_t hlen;
    int nheaders, in_value;
    char *body;
    size_t body_len, body_cap, body_max;
} call_t;

static llhttp_settings_t settings;

/* ---- response parsing ---- */

static int hput(call_t *c, const char *p, size_t n)
{
    if (c->hlen + n + 1 > HEADER_SPACE) {
        c->err = "response headers too large";
        return -1;
    }
    memcpy(c->hbuf + c->hlen, p, n);
    c->hlen += n;
    return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    call_t *c = p->data;
    if (c->in_value || c->nheaders == 0) {
        if (c->nheaders == MAX_HEADERS) {
            c->err = "too many response headers";
            return -1;
        }
        if (c->nheaders && hput(c, "", 1) != 0) /* ends the previous value */
            return -1;
        c->nheaders++;
        c->in_value = 0;
    }
    return hput(c, at, n);
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    call_t *c = p->data;
    if (!c->in_value) {
        if (hput(c, "", 1) != 0) /* ends the name */
            return -1;
        c->in_value = 1;
    }
    return hput(c, at, n);
}

static int on_headers_complete(llhttp_t *p)
{
    call_t *c = p->data;
    if (c->nheaders && (c->in_value ? hput(c, "", 1) : hput(c, "\0", 2)) != 0)
        return -1;
    return c->head ? 1 : 0; /* 1: llhttp expects no body */
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    call_t *c = p->data;
    if (c->body_len + n > c->body_max) {
        c->err = "body too large";
        return -1;
    }
    if (c->body_len + n > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + n)
            cap *= 2;
        if (cap > c->body_max)
            cap = c->body_max;
        char *nb = tg_arena_alloc_nz(c->arena, cap);
        if (nb == NULL) {
            c->err = "out of memory";
            return -1;
        }
        if (c->body_len)
            memcpy(nb, c->body, c->body_len);
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    call_t *c = p->data;
    c->done = 1;
    return HPE_PAUSED;
}

/* ---- the call ---- */

static void watch(call_t *c, int events)
{
    struct ev_loop *loop = tg_worker->loop;
    if (ev_is_active(&c->io) && c->io.events == events)
        return;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->uc->fd, events);
    ev_io_start(loop, &c->io);
}

/* Done, well or not: the connection goes back to the pool or is closed,
 * the peer's health is told, and the script is woken. */
static void finish(call_t *c, const char *err, int reuse)
{
    struct ev_loop *loop = tg_worker->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    if (err && c->err == NULL)
        c->err = err;
    if (c->uc) {
        if (reuse && c->err == NULL) {
            c->uc->requests++;
            tg_upstream_pool_put(c->uc, POOL_KEEP_MS);
        } else {
            tg_upconn_destroy(c->uc);
        }
        c->uc = NULL;
    }
    if (c->peer && c->t == NULL) {
        /* a failure to connect or to get an answer counts against the
         * server; an answer too large for the script does not */
        int failed = c->err && !c->got_bytes;
        tg_balance_done(c->u, c->peer, failed, (tg_msec_t)(ev_now(loop) * 1000));
        c->peer = NULL;
    }
    c->peer = NULL;
    tg_lua_vm_wake(&c->wait); /* the last thing done with c */
}

static void start_connection(call_t *c);

static void send_some(call_t *c)
{
    while (c->sent < c->out_len) {
        ssize_t n = tg_upconn_write(c->uc, c->out + c->sent, c->out_len - c->sent);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* through TLS a write may wait for the socket to be readable */
            watch(c, c->uc->ssl && !(c->uc->tls_flags & TG_TLS_F_WANT_WRITE) ? EV_READ : EV_WRITE);
            return;
        }
        if (n <= 0) {
            if (c->reused && !c->retried) {
                start_connection(c); /* a pooled connection the upstream had closed */
                return;
            }
            finish(c, "send failed", 0);
            return;
        }
        c->sent += (size_t)n;
    }
    c->state = H_READ;
    watch(c, EV_READ);
}

static void read_some(call_t *c)
{
    char buf[16384];
    for (;;) {
        ssize_t n = tg_upconn_read(c->uc, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(c, (c->uc->tls_flags & TG_TLS_F_WANT_WRITE) ? EV_WRITE : EV_READ);
            return;
        }
        if (n <= 0) {
            if (!c->got_bytes && c->reused && !c->retried) {
                start_connection(c);
                return;
            }
            /* an answer delimited by the close is complete now */
            if (n == 0 && c->got_bytes && llhttp_finish(&c->parser) == HPE_OK && c->done) {
                finish(c, NULL, 0);
                return;
            }
            finish(c, n == 0 ? "connection closed" : "read failed", 0);
            return;
        }
        c->got_bytes = 1;
        llhttp_errno_t e = llhttp_execute(&c->parser, buf, (size_t)n);
        if (c->done) {
            /* reused only when the answer ended exactly at the bytes read */
            int rest = e == HPE_PAUSED && llhttp_get_error_pos(&c->parser) + 1 < buf + n;
            finish(c, NULL, llhttp_should_keep_alive(&c->parser) && !rest);
            return;
        }
        if (e != HPE_OK) {
            finish(c, c->err ? c->err : "invalid response", 0);
            return;
        }
    }
}

static void handshake(call_t *c)
{
    int rc = tg_upconn_tls_handshake(c->uc, NULL, 0);
    if (rc == 0) {
        watch(c, (c->uc->tls_flags & TG_TLS_F_WANT_WRITE) ? EV_WRITE : EV_READ);
        return;
    }
    if (rc < 0) { /* logged with the reason */
        finish(c, "TLS handshake failed", 0);
        return;
    }
    c->state = H_SEND;
    send_some(c);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    call_t *c = w->data;
    switch (c->state) {
    case H_CONNECT: {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->uc->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            finish(c, "connect failed", 0);
            return;
        }
        if (c->u->tls) {
            if (tg_upconn_tls_start(c->uc) != 0) {
                finish(c, "out of memory", 0);
                return;
            }
            c->state = H_HANDSHAKE;
            handshake(c);
            return;
        }
        c->state = H_SEND;
        send_some(c);
        return;
    }
    case H_HANDSHAKE: handshake(c); return;
    case H_SEND: send_some(c); return;
    case H_READ: read_some(c); return;
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    call_t *c = t->data;
    c->got_bytes = 0; /* a server that does not answer in time counts as failed */
    finish(c, "timeout", 0);
}

/* A connection for the call: a pooled one (reused) or a new one. On a
 * retry (a pooled connection was closed) always a new one. */
static void start_connection(call_t *c)
{
    if (c->uc) {
        ev_io_stop(tg_worker->loop, &c->io);
        tg_upconn_destroy(c->uc);
        c->uc = NULL;
        c->retried = 1;
    }
    c->reused = 0;
    c->sent = 0;
    c->got_bytes = 0;
    c->hlen = 0;
    c->nheaders = c->in_value = 0;
    c->body_len = 0;
    c->done = 0;
    llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
    c->parser.data = c;
    if (!c->retried && (c->uc = tg_upstream_pool_get(c->u, c->peer)) != NULL) {
        c->reused = 1;
        c->state = H_SEND;
        ev_io_stop(tg_worker->loop, &c->uc->io); /* the pool's watcher */
        send_some(c);
        return;
    }
    if ((c->uc = tg_upconn_create(c->u, c->peer)) == NULL) {
        finish(c, "connect failed", 0);
        return;
    }
    c->state = H_CONNECT;
    watch(c, EV_WRITE);
}

/* ---- the wait, seen from the script runner ---- */

static void on_resolved(void *data, const char *err, const tg_resolver_addr_t *a, int n,
                        uint32_t ttl)
{
    query_t *q = data;
    call_t *c = q->c;
    free(q);
    if (c == NULL) return; /* cancelled meanwhile */
    c->q = NULL;
    if (err || n == 0) {
        c->err = tg_arena_printf(c->arena, "cannot resolve \"%s\": %s", c->t->host,
                                 err ? err : "no address");
        finish(c, "cannot resolve", 0);
        return;
    }
    target_t *t = c->t;
    memcpy(&t->p.addr, &a[0].addr, a[0].addrlen);
    t->p.addrlen = a[0].addrlen;
    t->expires = ev_now(tg_worker->loop) + (ttl < MIN_TTL ? MIN_TTL : ttl);
    start_connection(c);
}

static void start_call(void *data)
{
    call_t *c = data;
    if (c->t && c->t->expires && ev_now(tg_worker->loop) >= c->t->expires) {
        /* a new address may come: the pooled connections go to the old one */
        tg_upconn_t *uc;
        while ((uc = tg_upstream_pool_get(&c->t->u, &c->t->p)) != NULL)
            tg_upconn_destroy(uc);
        c->t->expires = 0;
    }
    if (c->t && c->t->expires == 0) {
        query_t *q = malloc(sizeof(*q));
        if (q == NULL || direct.res == NULL) {
            free(q);
            finish(c, direct.res ? "out of memory" : "no resolver", 0);
            return;
        }
        q->c = c;
        c->q = q;
        if (tg_resolver_addrs(direct.res, c->t->host, c->t->port, on_resolved, q) != 0) {
            free(q);
            c->q = NULL;
            finish(c, "out of memory", 0);
        }
        return;
    }
    start_connection(c);
}

static int push_result(lua_State *co, void *data)
{
    call_t *c = data;
    if (c->err) {
        lua_pushnil(co);
        lua_pushstring(co, c->err);
        return 2;
    }
    lua_createtable(co, 0, 3);
    lua_pushinteger(co, c->parser.status_code);
    lua_setfield(co, -2, "status");
    lua_pushlstring(co, c->body ? c->body : "", c->body_len);
    lua_setfield(co, -2, "body");
    lua_createtable(co, 0, c->nheaders);
    const char *p = c->hbuf;
    for (int i = 0; i < c->nheaders; i++) {
        size_t nl = strlen(p);
        const char *v = p + nl + 1;
        size_t vl = strlen(v);
        luaL_Buffer b;
        luaL_buffinit(co, &b);
        for (size_t k = 0; k < nl; k++)
            luaL_addchar(&b, (p[k] >= 'A' && p[k] <= 'Z') ? (char)(p[k] + 32) : p[k]);
        luaL_pushresult(&b);
        lua_pushvalue(co, -1);
        lua_rawget(co, -3);
        if (lua_isnil(co, -1)) {
            lua_pop(co, 1);
            lua_pushlstring(co, v, vl);
        } else {
            lua_pushliteral(co, ", ");
            lua_pushlstring(co, v, vl);
            lua_concat(co, 3);
        }
        lua_rawset(co, -3);
        p = v + vl + 1;
    }
    lua_setfield(co, -2, "headers");
    return 1;
}

/* The request ended while the call was on: stop it, close the connection
 * (it is in the middle of an exchange). */
static void cancel(void *data)
{
    call_t *c = data;
    struct ev_loop *loop = tg_worker->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    if (c->uc) {
        tg_upconn_destroy(c->uc);
        c->uc = NULL;
    }
    if (c->q) {
        c->q->c = NULL; /* the answer finds no call */
        c->q = NULL;
    }
    if (c->peer && c->t == NULL)
        tg_balance_done(c->u, c->peer, 0, (tg_msec_t)(ev_now(loop) * 1000));
    c->peer = NULL;
}

/* ---- tg.http.request ---- */

static const char *opt_string(lua_State *L, const char *name, size_t *n)
{
    lua_getfield(L, 1, name);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        s = lua_tolstring(L, -1, n);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "tg.http.request: %s must be a string", name);
    lua_pop(L, 1); /* the options table keeps it */
    return s;
}

/* Appends s[0..n) to the request being built in the arena. */
typedef struct {
    char *p;
    size_t len, cap;
    tg_arena_t *a;
} out_t;

static void out_add(lua_State *L, out_t *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        while (cap < o->len + n)
            cap *= 2;
        char *np = tg_arena_alloc_nz(o->a, cap);
        if (np == NULL)
            luaL_error(L, "tg.http.request: out of memory");
        if (o->len)
            memcpy(np, o->p, o->len);
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void out_header(lua_State *L, out_t *o, tg_str_t name, const char *v, size_t vn)
{
    if (!tg_conf_is_token(name))
        luaL_error(L, "tg.http.request: invalid header name \"%s\"", name.p);
    for (size_t k = 0; k < vn; k++)
        if (v[k] == '\r' || v[k] == '\n' || v[k] == '\0')
            luaL_error(L, "tg.http.request: invalid character in the value of \"%s\"", name.p);
    out_add(L, o, name.p, name.len);
    out_add(L, o, ": ", 2);
    out_add(L, o, v, vn);
    out_add(L, o, "\r\n", 2);
}

/* The worker's target for scheme://authority (authority "host[:port]" or
 * "[v6][:port]"), made on first use. NULL with *err. */
static target_t *find_target(int tls, tg_str_t auth, const char **err)
{
    char host[256];
    const char *p = auth.p, *end = auth.p + auth.len, *hs, *he;
    if (p < end && *p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL) goto bad;
        p = he + 1;
    } else {
        hs = p;
        while (p < end && *p != ':')
            p++;
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(host) || memchr(hs, '@', (size_t)(he - hs)))
        goto bad;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    int64_t port = tls ? 443 : 80;
    if (p < end &&
        (*p != ':' || tg_parse_int((tg_str_t){p + 1, (size_t)(end - p - 1)}, &port) != 0 ||
         port < 1 || port > 65535))
        goto bad;
    char key[sizeof(((target_t *)0)->key)];
    snprintf(key, sizeof(key), "%s://%s%s%s:%d", tls ? "https" : "http",
             auth.p[0] == '[' ? "[" : "", host, auth.p[0] == '[' ? "]" : "", (int)port);
    for (target_t *t = direct.targets; t; t = t->next)
        if (strcmp(t->key, key) == 0) return t;
    if (direct.ntargets >= MAX_TARGETS) {
        *err = "too many hosts called by url in this worker";
        return NULL;
    }
    target_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        *err = "out of memory";
        return NULL;
    }
    memcpy(t->key, key, sizeof(key));
    memcpy(t->host, host, sizeof(host));
    t->port = (uint16_t)port;
    t->p.name = tg_str_c(t->key);
    t->p.tls_host = t->host;
    t->u.name = t->p.name;
    t->u.tls = tls;
    t->u.tls_ctx = direct.ctx;
    t->u.tls_verify = 1;
    t->u.keepalive = TARGET_KEEPALIVE;
    /* an address literal needs no DNS and never expires */
    struct sockaddr_in *v4 = (struct sockaddr_in *)&t->p.addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&t->p.addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(t->port);
        t->p.addrlen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(t->port);
        t->p.addrlen = sizeof(*v6);
    }
    if (t->p.addrlen) {
        t->p.tls_host_is_ip = 1;
        t->expires = HUGE_VAL;
    }
    t->next = direct.targets;
    direct.targets = t;
    direct.ntargets++;
    return t;
bad:
    *err = "invalid host in url";
    return NULL;
}

static int l_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t un = 0, urln = 0, pn = 0, mn = 0, bn = 0;
    const char *uname = opt_string(L, "upstream", &un);
    const char *url = opt_string(L, "url", &urln);
    const char *path = opt_string(L, "path", &pn);
    const char *method = opt_string(L, "method", &mn);
    const char *body = opt_string(L, "body", &bn);
    lua_getfield(L, 1, "timeout");
    double timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : DEFAULT_TIMEOUT;
    lua_pop(L, 1);
    if (!(timeout > 0 && timeout <= 3600))
        return luaL_error(L, "tg.http.request: invalid timeout");

    /* the target: upstream=NAME, or the host of url=scheme://HOST[:PORT]/path */
    tg_str_t host = {uname, un};
    int want_tls = -1;
    if (url) {
        const char *rest;
        if (urln >= 7 && strncmp(url, "http://", 7) == 0)
            rest = url + 7, want_tls = 0;
        else if (urln >= 8 && strncmp(url, "https://", 8) == 0)
            rest = url + 8, want_tls = 1;
        else
            return luaL_error(L, "tg.http.request: url must start with http:// or https://");
        const char *slash = memchr(rest, '/', (size_t)(url + urln - rest));
        if (uname == NULL)
            host = (tg_str_t){rest, (size_t)((slash ? slash : url + urln) - rest)};
        if (path == NULL) {
            path = slash ? slash : "/";
            pn = slash ? (size_t)(url + urln - slash) : 1;
        }
    }
    if (host.p == NULL)
        return luaL_error(L, "tg.http.request: no upstream and no url");
    if (path == NULL)
        path = "/", pn = 1;
    if (pn == 0 || path[0] != '/' || memchr(path, ' ', pn) || memchr(path, '\r', pn) ||
        memchr(path, '\n', pn))
        return luaL_error(L, "tg.http.request: invalid path");
    if (method == NULL)
        method = body ? "POST" : "GET", mn = strlen(method);
    if (!tg_conf_is_token((tg_str_t){method, mn}))
        return luaL_error(L, "tg.http.request: invalid method");
    tg_upstream_t *u = tg_config_find_upstream(tg_worker->config, host);
    target_t *tgt = NULL;
    if (u == NULL && uname == NULL) { /* a url to any host */
        const char *terr = NULL;
        if ((tgt = find_target(want_tls, host, &terr)) == NULL) {
            lua_pushnil(L);
            lua_pushstring(L, terr);
            return 2;
        }
        u = &tgt->u;
    }
    if (u == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "no upstream \"");
        lua_pushlstring(L, host.p, host.len);
        lua_pushliteral(L, "\"");
        lua_concat(L, 3);
        return 2;
    }
    if (want_tls >= 0 && want_tls != (int)u->tls) {
        lua_pushnil(L);
        lua_pushstring(L, want_tls ? "https:// to an upstream without tls"
                                   : "http:// to an upstream with tls on");
        return 2;
    }

    tg_arena_t *arena = tg_lua_vm_wait_arena(L, "tg.http.request");
    call_t *c = arena ? tg_arena_alloc(arena, sizeof(*c)) : NULL;
    char *hbuf = c ? tg_arena_alloc_nz(arena, HEADER_SPACE) : NULL;
    if (hbuf == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory or too many waiting calls (lua_max_timers)");
        return 2;
    }
    c->arena = arena;
    c->t = tgt;
    c->u = u;
    c->hbuf = hbuf;
    c->head = mn == 4 && memcmp(method, "HEAD", 4) == 0;
    c->body_max = (size_t)tg_lua_vm_http_body_max();

    out_t o = {NULL, 0, 0, arena};
    out_add(L, &o, method, mn);
    out_add(L, &o, " ", 1);
    out_add(L, &o, path, pn);
    out_add(L, &o, " HTTP/1.1\r\nHost: ", 17);
    out_add(L, &o, host.p, host.len);
    out_add(L, &o, "\r\n", 2);
    lua_getfield(L, 1, "headers");
    if (lua_type(L, -1) == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "tg.http.request: header names must be strings");
            size_t nl;
            const char *n = lua_tolstring(L, -2, &nl);
            tg_str_t name = {n, nl};
            if (tg_str_caseeq(name, TG_STR("Host")) || tg_str_caseeq(name, TG_STR("Content-Length")) ||
                tg_str_caseeq(name, TG_STR("Transfer-Encoding")) || tg_str_caseeq(name, TG_STR("Connection")))
                return luaL_error(L, "tg.http.request: header \"%s\" is set by the client", n);
            if (lua_type(L, -1) == LUA_TTABLE) {
                for (int i = 1;; i++) {
                    lua_rawgeti(L, -1, i);
                    if (lua_isnil(L, -1)) {
                        lua_pop(L, 1);
                        break;
                    }
                    size_t vl;
                    const char *v = luaL_checklstring(L, -1, &vl);
                    out_header(L, &o, name, v, vl);
                    lua_pop(L, 1);
                }
            } else {
                size_t vl;
                const char *v = lua_tolstring(L, -1, &vl);
                if (v == NULL)
                    return luaL_error(L, "tg.http.request: bad value of header \"%s\"", n);
                out_header(L, &o, name, v, vl);
            }
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "tg.http.request: headers must be a table");
    }
    lua_pop(L, 1);
    if (body || (mn == 4 && memcmp(method, "POST", 4) == 0) ||
        (mn == 3 && memcmp(method, "PUT", 3) == 0) || (mn == 5 && memcmp(method, "PATCH", 5) == 0)) {
        char cl[48];
        int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", body ? bn : 0);
        out_add(L, &o, cl, (size_t)n);
    }
    out_add(L, &o, "\r\n", 2);
    if (body)
        out_add(L, &o, body, bn);
    c->out = o.p;
    c->out_len = o.len;

    tg_msec_t now = (tg_msec_t)(ev_now(tg_worker->loop) * 1000);
    uint64_t tried = 0;
    if (tgt) {
        c->peer = &tgt->p;
    } else {
        tg_upstream_dyn_sync(u); /* resolved servers and the runtime API's changes */
        c->peer = tg_balance_pick(u, TG_NULL_STR, &tried, now);
    }
    if (c->peer == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "no live server in upstream \"");
        lua_pushlstring(L, u->name.p, u->name.len);
        lua_pushliteral(L, "\"");
        lua_concat(L, 3);
        return 2;
    }
    ev_init(&c->io, io_cb);
    c->io.data = c;
    ev_timer_init(&c->timer, timer_cb, timeout, 0);
    c->timer.data = c;
    ev_timer_start(tg_worker->loop, &c->timer);
    c->wait.push = push_result;
    c->wait.start = start_call;
    c->wait.cancel = cancel;
    c->wait.data = c;
    return tg_lua_vm_wait(L, &c->wait, "tg.http.request");
}

const char *tg_lua_http_init_conf(tg_conf_t *cf, tg_lua_main_t *m)
{
    m->http_tls_ctx = tg_tls_client_ctx(cf, m->http_ca, "lua_http_ca");
    return NULL; /* an error is reported already */
}

void tg_lua_http_open(lua_State *L, tg_lua_main_t *m)
{
    llhttp_settings_init(&settings);
    settings.on_header_field = on_field;
    settings.on_header_value = on_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    memset(&direct, 0, sizeof(direct));
    direct.ctx = m->http_tls_ctx;
    /* the `resolver` directive's servers (or /etc/resolv.conf, read now at
     * worker start) for hosts called by url */
    if (tg_worker)
        direct.res = tg_resolver_create(tg_worker->loop,
                                        tg_worker->config->mconf[tg_upstream_dyn_module.index]);
    lua_pushcfunction(L, l_request);
    lua_setfield(L, -2, "request");
}

void tg_lua_http_exit(void)
{
    if (direct.res) tg_resolver_destroy(direct.res); /* pending queries answer with an error */
    while (direct.targets) {
        target_t *t = direct.targets;
        direct.targets = t->next;
        tg_upconn_t *uc;
        while ((uc = tg_upstream_pool_get(&t->u, &t->p)) != NULL)
            tg_upconn_destroy(uc);
        free(t);
    }
    memset(&direct, 0, sizeof(direct));
}
