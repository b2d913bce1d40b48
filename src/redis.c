/* Redis connection pools for workers (see redis.h).
 *
 * Ownership: a command record (tg_redis_cmd_t) belongs to hiredis from the
 * moment it is sent until hiredis calls reply_cb for it, which it always
 * does: with the reply, or with NULL when the connection goes away (hiredis
 * runs every pending callback with NULL when it frees a context). The caller
 * holds the record through `cb` until the answer is delivered, the deadline
 * passes, or it cancels; after that `cb` is NULL and the record only waits
 * for hiredis to let it go, then returns to the backend's free list.
 *
 * A connection forgets its hiredis context (conn->ac = NULL) as soon as the
 * context is known to be going: in the NULL-reply callbacks, the connect and
 * disconnect callbacks, and before we free it ourselves. So a request that
 * resumes inside one of those callbacks and sends its next command never
 * picks a dying context.
 *
 * Commands are formatted here (RESP) into a buffer the record keeps, so a
 * NOSCRIPT retry can send the same bytes again and the steady state
 * allocates nothing of ours per command. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include "redis.h"
#include "core.h"
#include "worker.h"
#include "log.h"

#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 2.0
#define FREE_CMDS_MAX 256 /* records kept for reuse per backend and worker */
#define MAX_SCRIPTS 8
#define URL_EXPECTED "invalid redis URL \"%.*s\", expected redis://[:PASSWORD@]HOST[:PORT][/DB]"

typedef enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP } conn_state_t;

typedef struct {
    tg_redis_t *r;
    redisAsyncContext *ac; /* NULL while down */
    conn_state_t state;
    int handshake; /* handshake replies still expected */
    double backoff;
    ev_timer retry;
} conn_t;

struct tg_redis_cmd_s {
    tg_redis_t *r;
    conn_t *conn;
    tg_redis_cb cb; /* NULL once the caller is done with it */
    void *data;
    tg_redis_script_t *script;
    ev_timer timer;
    char *buf; /* the formatted command */
    size_t len, cap;
    unsigned retried : 1; /* NOSCRIPT already handled once */
    tg_redis_cmd_t *next_free;
};

struct tg_redis_s {
    char name[96];        /* "host:port" or "host:port/db", for messages and sharing */
    const char *url;      /* as written in the config (config arena) */
    const char *password; /* AUTH on connect, or NULL */
    char ip[INET6_ADDRSTRLEN];
    int port, db;
    tg_redis_script_t *scripts[MAX_SCRIPTS];
    int nscripts;
    tg_redis_t *next; /* the config's backends (tg_config_t.redis) */
    /* per worker, from tg_redis_start on */
    int started;
    conn_t conns[TG_REDIS_POOL];
    unsigned rr;
    int down_logged; /* a failure was logged; the next recovery is logged too */
    tg_redis_cmd_t *free_cmds;
    int nfree;
};

static void conn_connect(conn_t *c);

/* ---- config ------------------------------------------------------------------------- */

const char *tg_redis_create(tg_conf_t *cf, tg_str_t url, tg_redis_t **out)
{
    char host[256];
    if (tg_str_has_caseprefix(url, "rediss://"))
        return tg_conf_errf(cf,
                            "\"%.*s\": rediss:// (TLS) needs hiredis_ssl, which this "
                            "build's hiredis %d.%d does not have",
                            TG_STR_FMT(url), HIREDIS_MAJOR, HIREDIS_MINOR);
    if (!tg_str_has_caseprefix(url, "redis://"))
        return tg_conf_errf(cf, URL_EXPECTED, TG_STR_FMT(url));
    const char *p = url.p + 8, *end = url.p + url.len, *h, *he;
    /* [:PASSWORD@] (no ACL user name): sent with AUTH on connect */
    const char *pass = NULL, *at = memrchr(p, '@', (size_t)(end - p));
    size_t passlen = 0;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL || colon != p || at == colon + 1) goto bad;
        pass = colon + 1;
        passlen = (size_t)(at - pass);
        p = at + 1;
    }
    if (p < end && *p == '[') { /* [v6]:port */
        h = p + 1;
        he = memchr(h, ']', (size_t)(end - h));
        if (he == NULL) goto bad;
        p = he + 1;
    } else {
        h = p;
        while (p < end && *p != ':' && *p != '/')
            p++;
        he = p;
    }
    if (he == h || (size_t)(he - h) >= sizeof(host)) goto bad;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    int64_t port = 6379, db = 0;
    if (p < end && *p == ':') {
        const char *ps = ++p;
        while (p < end && *p != '/')
            p++;
        if (tg_parse_int((tg_str_t){ps, (size_t)(p - ps)}, &port) != 0 || port < 1 || port > 65535)
            goto bad;
    }
    if (p < end && *p == '/') {
        p++;
        if (p < end &&
            (tg_parse_int((tg_str_t){p, (size_t)(end - p)}, &db) != 0 || db < 0 || db > 1000000))
            goto bad;
    } else if (p != end) {
        goto bad;
    }

    /* one backend (one pool per worker) per URL, whoever declares it */
    for (tg_redis_t *k = cf->config->redis; k; k = k->next)
        if (tg_str_eq(tg_str_c(k->url), url)) {
            *out = k;
            return NULL;
        }
    tg_redis_t *r = tg_arena_alloc(cf->arena, sizeof(*r));
    if (r == NULL) return "out of memory";
    r->url = tg_arena_strdup(cf->arena, url);
    r->password = pass ? tg_arena_strdup(cf->arena, (tg_str_t){pass, passlen}) : NULL;
    if (r->url == NULL || (pass && r->password == NULL)) return "out of memory";
    /* resolved now, in the master: a worker must not block in getaddrinfo */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0)
        return tg_conf_errf(cf, "cannot resolve redis host \"%s\": %s", host, gai_strerror(rc));
    const void *addr = ai->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    inet_ntop(ai->ai_family, addr, r->ip, sizeof(r->ip));
    int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    r->port = (int)port;
    r->db = (int)db;
    snprintf(r->name, sizeof(r->name), v6 ? "[%s]:%d" : "%s:%d", r->ip, r->port);
    if (db) snprintf(r->name + strlen(r->name), sizeof(r->name) - strlen(r->name), "/%d", r->db);
    r->next = cf->config->redis;
    cf->config->redis = r;
    *out = r;
    return NULL;
bad:
    return tg_conf_errf(cf, URL_EXPECTED, TG_STR_FMT(url));
}

tg_redis_t *tg_redis_find(const tg_config_t *config, tg_str_t name_or_url)
{
    for (tg_redis_t *k = config->redis; k; k = k->next)
        if (tg_str_eq(tg_str_c(k->url), name_or_url)) return k;
    for (tg_redis_t *k = config->redis; k; k = k->next)
        if (tg_str_eq(tg_str_c(k->name), name_or_url)) return k;
    return NULL;
}

const char *tg_redis_add_script(tg_conf_t *cf, tg_redis_t *r, tg_redis_script_t *s)
{
    for (int i = 0; i < r->nscripts; i++)
        if (r->scripts[i] == s) return NULL;
    if (r->nscripts == MAX_SCRIPTS) return "too many redis scripts";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(s->text, strlen(s->text), md, &n, EVP_sha1(), NULL) || n != 20)
        return tg_conf_errf(cf, "cannot hash a redis script");
    for (unsigned i = 0; i < n; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    r->scripts[r->nscripts++] = s;
    return NULL;
}

const char *tg_redis_name(const tg_redis_t *r)
{
    return r->name;
}

/* ---- commands ------------------------------------------------------------------------- */

static int fmt_reserve(tg_redis_cmd_t *c, size_t more)
{
    if (c->len + more <= c->cap) return 0;
    size_t cap = c->cap ? c->cap : 256;
    while (cap < c->len + more)
        cap *= 2;
    char *b = realloc(c->buf, cap);
    if (b == NULL) return -1;
    c->buf = b;
    c->cap = cap;
    return 0;
}

static int fmt_add(tg_redis_cmd_t *c, const char *s, size_t n)
{
    char hdr[32];
    int h = snprintf(hdr, sizeof(hdr), "$%zu\r\n", n);
    if (fmt_reserve(c, (size_t)h + n + 2) != 0) return -1;
    memcpy(c->buf + c->len, hdr, (size_t)h);
    memcpy(c->buf + c->len + h, s, n);
    memcpy(c->buf + c->len + h + n, "\r\n", 2);
    c->len += (size_t)h + n + 2;
    return 0;
}

static tg_redis_cmd_t *cmd_get(tg_redis_t *r)
{
    tg_redis_cmd_t *c = r->free_cmds;
    if (c) {
        r->free_cmds = c->next_free;
        r->nfree--;
    } else if ((c = calloc(1, sizeof(*c))) == NULL) {
        return NULL;
    }
    c->r = r;
    c->len = 0;
    c->retried = 0;
    c->cb = NULL;
    return c;
}

static void cmd_put(tg_redis_cmd_t *c)
{
    tg_redis_t *r = c->r;
    ev_timer_stop(tg_worker->loop, &c->timer);
    if (r->nfree >= FREE_CMDS_MAX) {
        free(c->buf);
        free(c);
        return;
    }
    c->next_free = r->free_cmds;
    r->free_cmds = c;
    r->nfree++;
}

/* Deliver once: the caller's callback, then it is out of the picture. */
static void cmd_deliver(tg_redis_cmd_t *c, redisReply *reply, const char *err)
{
    tg_redis_cb cb = c->cb;
    c->cb = NULL;
    ev_timer_stop(tg_worker->loop, &c->timer);
    if (cb) cb(c->data, reply, err);
}

/* ---- connections ---------------------------------------------------------------------- */

static void log_down(conn_t *c, const char *why)
{
    tg_redis_t *r = c->r;
    if (!r->down_logged) {
        r->down_logged = 1;
        tg_log(TG_LOG_ERROR, "redis %s: %s; retrying in %.1fs", r->name, why, c->backoff);
    } else {
        tg_log(TG_LOG_DEBUG, "redis %s: %s; retrying in %.1fs", r->name, why, c->backoff);
    }
}

/* The context is gone or going (hiredis frees it, or we are about to):
 * forget it and schedule a reconnect. */
static void conn_lost(conn_t *c, const char *why)
{
    if (c->state == CONN_DOWN) return;
    c->ac = NULL;
    c->state = CONN_DOWN;
    c->backoff = c->backoff < BACKOFF_MIN ? BACKOFF_MIN : c->backoff;
    log_down(c, why);
    ev_timer_set(&c->retry, c->backoff, 0.);
    ev_timer_start(tg_worker->loop, &c->retry);
    c->backoff = c->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : c->backoff * 2;
}

/* Close on our own initiative (a stalled connection, a failed handshake). */
static void conn_close(conn_t *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    conn_lost(c, why);
    if (ac) redisAsyncFree(ac); /* pending callbacks run now, with NULL */
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_connect(t->data);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    if (status != REDIS_OK && c->ac == ac)
        conn_lost(c, ac->errstr[0] ? ac->errstr : "cannot connect"); /* hiredis frees it */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    conn_t *c = ac->data;
    if (c->ac == ac) conn_lost(c, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void handshake_cb(redisAsyncContext *ac, void *reply_, void *data)
{
    (void)data;
    conn_t *c = ac->data;
    redisReply *reply = reply_;
    if (c->ac != ac) return;
    if (reply == NULL) {
        conn_lost(c, ac->errstr[0] ? ac->errstr : "connection closed");
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof(why), "handshake failed: %s", reply->str);
        conn_close(c, why);
        return;
    }
    if (--c->handshake == 0) {
        c->state = CONN_UP;
        c->backoff = 0;
        if (c->r->down_logged) {
            c->r->down_logged = 0;
            tg_log(TG_LOG_INFO, "redis %s: connected", c->r->name);
        }
    }
}

static void conn_connect(conn_t *c)
{
    tg_redis_t *r = c->r;
    redisAsyncContext *ac = redisAsyncConnect(r->ip, r->port);
    if (ac == NULL || ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "cannot connect: %s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        c->state = CONN_CONNECTING; /* so that conn_lost schedules the retry */
        conn_lost(c, why);
        return;
    }
    ac->data = c;
    /* pipelined commands go out as they come, not behind Nagle */
    int one = 1;
    setsockopt(ac->c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (redisLibevAttach(tg_worker->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        c->state = CONN_CONNECTING;
        conn_lost(c, "cannot attach to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = CONN_CONNECTING;
    c->handshake = 0;
    /* pipelined behind the connect: commands sent meanwhile queue after them */
    if (r->password &&
        redisAsyncCommand(ac, handshake_cb, NULL, "AUTH %s", r->password) == REDIS_OK)
        c->handshake++;
    if (r->db && redisAsyncCommand(ac, handshake_cb, NULL, "SELECT %d", r->db) == REDIS_OK)
        c->handshake++;
    for (int i = 0; i < r->nscripts; i++)
        if (redisAsyncCommand(ac, handshake_cb, NULL, "SCRIPT LOAD %s", r->scripts[i]->text) ==
            REDIS_OK)
            c->handshake++;
    if (c->handshake == 0) c->state = CONN_UP;
}

int tg_redis_start(tg_redis_t *r)
{
    if (r->started) return 0; /* shared by several modules */
    r->started = 1;
    r->rr = 0;
    r->down_logged = 0;
    r->free_cmds = NULL;
    r->nfree = 0;
    for (int i = 0; i < TG_REDIS_POOL; i++) {
        conn_t *c = &r->conns[i];
        c->r = r;
        c->ac = NULL;
        c->state = CONN_DOWN;
        c->backoff = 0;
        ev_timer_init(&c->retry, retry_cb, 0., 0.);
        c->retry.data = c;
        conn_connect(c);
    }
    return 0;
}

/* ---- running commands ------------------------------------------------------------------ */

static void reply_cb(redisAsyncContext *ac, void *reply_, void *data);

static int send_cmd(tg_redis_cmd_t *cmd)
{
    return redisAsyncFormattedCommand(cmd->conn->ac, reply_cb, cmd, cmd->buf, cmd->len);
}

static void reply_cb(redisAsyncContext *ac, void *reply_, void *data)
{
    tg_redis_cmd_t *cmd = data;
    redisReply *reply = reply_;
    conn_t *c = ac->data;
    if (reply == NULL) {
        /* the context is being freed: this connection is down */
        if (c->ac == ac) conn_lost(c, ac->errstr[0] ? ac->errstr : "connection closed");
        cmd_deliver(cmd, NULL, ac->errstr[0] ? ac->errstr : "connection closed");
        cmd_put(cmd);
        return;
    }
    if (cmd->cb && cmd->script && !cmd->retried && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && c->ac == ac) {
        /* the server lost the script: load it and run again, pipelined */
        cmd->retried = 1;
        tg_log(TG_LOG_INFO, "redis %s: script not cached (NOSCRIPT), loading it again",
               cmd->r->name);
        if (redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", cmd->script->text) == REDIS_OK &&
            send_cmd(cmd) == REDIS_OK)
            return; /* the record goes back to hiredis */
    }
    cmd_deliver(cmd, reply, NULL);
    cmd_put(cmd);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    tg_redis_cmd_t *cmd = t->data;
    tg_redis_cb cb = cmd->cb;
    void *data = cmd->data;
    cmd->cb = NULL;
    /* a reply this late means the connection is stalled: close it; the
     * commands behind it fail now, and this record is released by hiredis */
    if (cmd->conn->ac) conn_close(cmd->conn, "timed out");
    if (cb) cb(data, NULL, "timed out");
}

/* The connection for a command: the one *pin names if it is still usable,
 * else the next usable one in turn (its index stored in *pin). NULL when
 * none is usable. */
static conn_t *pick_conn(tg_redis_t *r, int *pin)
{
    if (pin && *pin >= 0 && *pin < TG_REDIS_POOL && r->conns[*pin].ac) return &r->conns[*pin];
    conn_t *c = NULL;
    for (int i = 0; i < TG_REDIS_POOL && c == NULL; i++) {
        conn_t *k = &r->conns[(r->rr + (unsigned)i) % TG_REDIS_POOL];
        if (k->ac) c = k;
    }
    r->rr++;
    if (c && pin) *pin = (int)(c - r->conns);
    return c;
}

/* Send the formatted command; on success the caller's callback and deadline
 * are armed. Returns cmd, or NULL with *err (the record is back in the
 * free list). */
static tg_redis_cmd_t *submit(tg_redis_cmd_t *cmd, int bad, tg_msec_t timeout, tg_redis_cb cb,
                              void *data, const char **err)
{
    if (bad || send_cmd(cmd) != REDIS_OK) {
        cmd_put(cmd);
        *err = bad ? "out of memory" : "connection closing";
        return NULL;
    }
    cmd->cb = cb;
    cmd->data = data;
    ev_timer_init(&cmd->timer, timeout_cb, (double)timeout / 1000.0, 0.);
    cmd->timer.data = cmd;
    ev_timer_start(tg_worker->loop, &cmd->timer);
    return cmd;
}

static int fmt_count(tg_redis_cmd_t *cmd, int n)
{
    char hdr[32];
    int h = snprintf(hdr, sizeof(hdr), "*%d\r\n", n);
    if (fmt_reserve(cmd, (size_t)h) != 0) return -1;
    memcpy(cmd->buf + cmd->len, hdr, (size_t)h);
    cmd->len += (size_t)h;
    return 0;
}

tg_redis_cmd_t *tg_redis_command(tg_redis_t *r, int *pin, int argc, const char **argv,
                                 const size_t *argvlen, tg_msec_t timeout, tg_redis_cb cb,
                                 void *data, const char **err)
{
    conn_t *c = pick_conn(r, pin);
    if (c == NULL) {
        *err = "not connected";
        return NULL;
    }
    tg_redis_cmd_t *cmd = cmd_get(r);
    if (cmd == NULL) {
        *err = "out of memory";
        return NULL;
    }
    int bad = fmt_count(cmd, argc) != 0;
    for (int i = 0; i < argc && !bad; i++)
        bad = fmt_add(cmd, argv[i], argvlen[i]);
    cmd->conn = c;
    cmd->script = NULL;
    return submit(cmd, bad, timeout, cb, data, err);
}

tg_redis_cmd_t *tg_redis_eval(tg_redis_t *r, tg_redis_script_t *s, int nkeys, int argc,
                              const char **argv, const size_t *argvlen, tg_msec_t timeout,
                              tg_redis_cb cb, void *data, const char **err)
{
    conn_t *c = pick_conn(r, NULL);
    if (c == NULL) {
        *err = "not connected";
        return NULL;
    }
    tg_redis_cmd_t *cmd = cmd_get(r);
    if (cmd == NULL) {
        *err = "out of memory";
        return NULL;
    }
    char nk[16];
    int nkl = snprintf(nk, sizeof(nk), "%d", nkeys);
    int bad = fmt_count(cmd, argc + 3) || fmt_add(cmd, "EVALSHA", 7) || fmt_add(cmd, s->sha, 40) ||
              fmt_add(cmd, nk, (size_t)nkl);
    for (int i = 0; i < argc && !bad; i++)
        bad = fmt_add(cmd, argv[i], argvlen[i]);
    cmd->conn = c;
    cmd->script = s;
    return submit(cmd, bad, timeout, cb, data, err);
}

void tg_redis_cancel(tg_redis_cmd_t *c)
{
    c->cb = NULL;
    ev_timer_stop(tg_worker->loop, &c->timer);
}
