/* Asynchronous DNS on a worker's libev loop, with c-ares.
 *
 * c-ares tells us which sockets it wants watched through its socket-state
 * callback; each gets an ev_io, and readiness is handed back with
 * ares_process_fd(). c-ares keeps its own timeouts and retries: after every
 * call into it, one ev_timer is set to ares_timeout()'s answer, and when it
 * fires ares_process_fd() with no socket lets c-ares resend or give up.
 * Nothing is cached here: a caller asks again when its answer's TTL ends.
 *
 * Only names go to DNS (lookups "b"): /etc/hosts is not read per query, so
 * no query reads a file after start-up. */
#include <arpa/inet.h>
#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "resolver.h"
#include "log.h"

#define MAX_SOCKETS 16 /* c-ares uses one UDP socket per server, plus TCP on truncation */

typedef struct {
    ev_io io;
    int fd; /* -1: slot free */
} sock_t;

struct tg_resolver_s {
    struct ev_loop *loop;
    ares_channel channel;
    const tg_resolver_conf_t *rc;
    ev_timer timer;
    sock_t socks[MAX_SOCKETS];
};

/* ---- config ---------------------------------------------------------------- */

void tg_resolver_conf_default(tg_resolver_conf_t *rc)
{
    memset(rc, 0, sizeof(*rc));
    rc->timeout = 2000;
    rc->ipv6 = 1;
}

/* "ADDR" or "ADDR:PORT", IPv6 in brackets when it has a port: appended to
 * `csv` in c-ares's syntax. Returns 0 or -1 (not an IP address). */
static int server_csv(tg_str_t s, char *csv, size_t size)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];
    long port = 53;
    const char *end = s.p + s.len, *colon = memrchr(s.p, ':', s.len);
    size_t hlen = s.len;
    int v6 = 0;

    if (s.len && s.p[0] == '[') {
        const char *rb = memchr(s.p, ']', s.len);
        if (rb == NULL || (rb + 1 < s.p + s.len && rb[1] != ':'))
            return -1;
        colon = rb + 1 < end ? rb + 1 : NULL;
        s.p++;
        hlen = (size_t)(rb - s.p);
        v6 = 1;
    } else if (colon && memchr(s.p, ':', (size_t)(colon - s.p)) != NULL) {
        colon = NULL; /* a bare IPv6 address */
        v6 = 1;
    } else if (colon) {
        hlen = (size_t)(colon - s.p);
    }
    if (colon) {
        int64_t n;
        tg_str_t ps = {colon + 1, (size_t)(end - colon - 1)};
        if (tg_parse_int(ps, &n) != 0 || n < 1 || n > 65535)
            return -1;
        port = (long)n;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, s.p, hlen);
    host[hlen] = '\0';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, host, bin) != 1)
        return -1;
    size_t used = strlen(csv);
    int n = snprintf(csv + used, size - used, "%s%s%s%s:%ld", used ? "," : "", v6 ? "[" : "", host,
                     v6 ? "]" : "", port);
    return n > 0 && (size_t)n < size - used ? 0 : -1;
}

const char *tg_resolver_conf_parse(tg_conf_t *cf, tg_resolver_conf_t *rc)
{
    size_t size = TG_RESOLVER_MAX_SERVERS * (INET6_ADDRSTRLEN + 10);
    char *csv = tg_arena_alloc(cf->arena, size);
    int nservers = 0;

    if (csv == NULL)
        return "out of memory";
    if (rc->file)
        return tg_conf_errf(cf, "duplicate \"resolver\", first at %s:%d", rc->file, rc->line);
    tg_resolver_conf_default(rc);
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v, a = tg_conf_arg(cf, i);
        if (tg_conf_arg_kv(cf, i, "valid", &v)) {
            if (tg_parse_msec(v, &rc->valid) != 0 || rc->valid < 1000)
                return tg_conf_errf(cf, "invalid valid \"%.*s\" in \"resolver\", expected a time "
                                        "of at least 1s",
                                    TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "timeout", &v)) {
            if (tg_parse_msec(v, &rc->timeout) != 0 || rc->timeout < 10 || rc->timeout > 60000)
                return tg_conf_errf(cf, "invalid timeout \"%.*s\" in \"resolver\", expected "
                                        "10ms..60s",
                                    TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "ipv6", &v)) {
            if (tg_str_eq_lit(v, "on"))
                rc->ipv6 = 1;
            else if (tg_str_eq_lit(v, "off"))
                rc->ipv6 = 0;
            else
                return tg_conf_errf(cf, "invalid ipv6 \"%.*s\" in \"resolver\", expected on or off",
                                    TG_STR_FMT(v));
        } else if (memchr(a.p, '=', a.len)) {
            return tg_conf_errf(cf, "invalid parameter \"%.*s\" in \"resolver\", expected valid=, "
                                    "ipv6= or timeout=",
                                TG_STR_FMT(a));
        } else {
            if (++nservers > TG_RESOLVER_MAX_SERVERS)
                return tg_conf_errf(cf, "too many servers in \"resolver\" (at most %d)",
                                    TG_RESOLVER_MAX_SERVERS);
            if (server_csv(a, csv, size) != 0)
                return tg_conf_errf(cf, "invalid resolver address \"%.*s\", expected an IP "
                                        "address with an optional port",
                                    TG_STR_FMT(a));
        }
    }
    rc->servers = nservers ? csv : NULL;
    rc->file = cf->file;
    rc->line = cf->line;
    return NULL;
}

/* ---- the channel on the loop ------------------------------------------------ */

static void arm_timer(tg_resolver_t *res)
{
    struct timeval tv, *t = ares_timeout(res->channel, NULL, &tv);
    ev_timer_stop(res->loop, &res->timer);
    if (t == NULL)
        return; /* nothing pending */
    ev_timer_set(&res->timer, (double)t->tv_sec + (double)t->tv_usec / 1e6 + 0.001, 0.);
    ev_timer_start(res->loop, &res->timer);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    tg_resolver_t *res = w->data;
    sock_t *s = (sock_t *)w;
    int fd = s->fd;
    ares_process_fd(res->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    arm_timer(res);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    tg_resolver_t *res = w->data;
    ares_process_fd(res->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(res);
}

/* c-ares opened, changed or closed a socket: watch it for what it wants. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    tg_resolver_t *res = data;
    sock_t *s = NULL, *free_slot = NULL;
    for (int i = 0; i < MAX_SOCKETS; i++) {
        if (res->socks[i].fd == fd)
            s = &res->socks[i];
        else if (res->socks[i].fd < 0 && free_slot == NULL)
            free_slot = &res->socks[i];
    }
    if (s)
        ev_io_stop(res->loop, &s->io);
    if (!readable && !writable) {
        if (s)
            s->fd = -1;
        return;
    }
    if (s == NULL && (s = free_slot) == NULL) {
        tg_log(TG_LOG_ERROR, "resolver: more than %d sockets", MAX_SOCKETS);
        return; /* its queries time out */
    }
    s->fd = fd;
    ev_io_init(&s->io, io_cb, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    s->io.data = res;
    ev_io_start(res->loop, &s->io);
}

static int library_ready;

tg_resolver_t *tg_resolver_create(struct ev_loop *loop, const tg_resolver_conf_t *rc)
{
    if (!library_ready) {
        int st = ares_library_init(ARES_LIB_INIT_ALL);
        if (st != ARES_SUCCESS) {
            tg_log(TG_LOG_ERROR, "resolver: %s", ares_strerror(st));
            return NULL;
        }
        library_ready = 1;
    }
    tg_resolver_t *res = calloc(1, sizeof(*res));
    if (res == NULL)
        return NULL;
    res->loop = loop;
    res->rc = rc;
    for (int i = 0; i < MAX_SOCKETS; i++)
        res->socks[i].fd = -1;
    ev_init(&res->timer, timer_cb);
    res->timer.data = res;

    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = res;
    o.timeout = (int)rc->timeout;
    o.tries = 2;
    o.lookups = (char *)"b";
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    int st = ares_init_options(&res->channel, &o, mask);
    if (st == ARES_SUCCESS && rc->servers)
        st = ares_set_servers_ports_csv(res->channel, rc->servers);
    if (st != ARES_SUCCESS) {
        tg_log(TG_LOG_ERROR, "resolver: cannot start: %s", ares_strerror(st));
        if (res->channel)
            ares_destroy(res->channel);
        free(res);
        return NULL;
    }
    return res;
}

void tg_resolver_destroy(tg_resolver_t *res)
{
    if (res == NULL)
        return;
    ares_destroy(res->channel); /* runs the pending callbacks with ARES_EDESTRUCTION */
    for (int i = 0; i < MAX_SOCKETS; i++)
        if (res->socks[i].fd >= 0)
            ev_io_stop(res->loop, &res->socks[i].io);
    ev_timer_stop(res->loop, &res->timer);
    free(res);
}

/* ---- A/AAAA ---------------------------------------------------------------- */

#define MAX_ANSWER 64

typedef struct {
    tg_resolver_addrs_cb cb;
    void *data;
    uint16_t port;
} addrs_query_t;

static void addrinfo_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    addrs_query_t q = *(addrs_query_t *)arg;
    free(arg);
    if (status != ARES_SUCCESS || ai == NULL || ai->nodes == NULL) {
        q.cb(q.data, status == ARES_SUCCESS ? "empty answer" : ares_strerror(status), NULL, 0, 0);
        if (ai)
            ares_freeaddrinfo(ai);
        return;
    }
    tg_resolver_addr_t a[MAX_ANSWER];
    int n = 0;
    uint32_t ttl = UINT32_MAX;
    for (struct ares_addrinfo_node *nd = ai->nodes; nd && n < MAX_ANSWER; nd = nd->ai_next) {
        if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
            nd->ai_addrlen > sizeof(a[n].addr))
            continue;
        memset(&a[n], 0, sizeof(a[n]));
        memcpy(&a[n].addr, nd->ai_addr, nd->ai_addrlen);
        a[n].addrlen = (socklen_t)nd->ai_addrlen;
        if (nd->ai_family == AF_INET)
            ((struct sockaddr_in *)&a[n].addr)->sin_port = htons(q.port);
        else
            ((struct sockaddr_in6 *)&a[n].addr)->sin6_port = htons(q.port);
        if (nd->ai_ttl >= 0 && (uint32_t)nd->ai_ttl < ttl)
            ttl = (uint32_t)nd->ai_ttl;
        n++;
    }
    ares_freeaddrinfo(ai);
    if (n == 0)
        q.cb(q.data, "no address", NULL, 0, 0);
    else
        q.cb(q.data, NULL, a, n, ttl == UINT32_MAX ? 0 : ttl);
}

int tg_resolver_addrs(tg_resolver_t *res, const char *name, uint16_t port, tg_resolver_addrs_cb cb,
                      void *data)
{
    addrs_query_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    *q = (addrs_query_t){cb, data, port};
    struct ares_addrinfo_hints h;
    memset(&h, 0, sizeof(h));
    h.ai_family = res->rc->ipv6 ? AF_UNSPEC : AF_INET;
    h.ai_flags = ARES_AI_NOSORT;
    h.ai_socktype = SOCK_STREAM;
    ares_getaddrinfo(res->channel, name, NULL, &h, addrinfo_cb, q);
    arm_timer(res);
    return 0;
}

/* ---- SRV ------------------------------------------------------------------- */

/* Skip a (possibly compressed) name at msg[*off]; -1 when it runs off the end. */
static int skip_name(const unsigned char *msg, int len, int *off)
{
    int o = *off;
    while (o < len) {
        unsigned c = msg[o];
        if (c == 0) {
            *off = o + 1;
            return 0;
        }
        if ((c & 0xc0) == 0xc0) {
            if (o + 2 > len)
                return -1;
            *off = o + 2;
            return 0;
        }
        if (c & 0xc0)
            return -1;
        o += 1 + (int)c;
    }
    return -1;
}

int tg_resolver_answer_ttl(const unsigned char *msg, int len, uint32_t *ttl)
{
    if (msg == NULL || len < 12)
        return -1;
    int qd = msg[4] << 8 | msg[5], an = msg[6] << 8 | msg[7], off = 12;
    for (int i = 0; i < qd; i++) {
        if (skip_name(msg, len, &off) != 0 || off + 4 > len)
            return -1;
        off += 4;
    }
    uint32_t best = UINT32_MAX;
    for (int i = 0; i < an; i++) {
        if (skip_name(msg, len, &off) != 0 || off + 10 > len)
            return -1;
        uint32_t t = (uint32_t)msg[off + 4] << 24 | (uint32_t)msg[off + 5] << 16 |
                     (uint32_t)msg[off + 6] << 8 | msg[off + 7];
        int rdlen = msg[off + 8] << 8 | msg[off + 9];
        off += 10 + rdlen;
        if (off > len)
            return -1;
        if (t < best)
            best = t;
    }
    if (best == UINT32_MAX)
        return -1;
    *ttl = best;
    return 0;
}

typedef struct {
    tg_resolver_srv_cb cb;
    void *data;
} srv_query_t;

static void srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    srv_query_t q = *(srv_query_t *)arg;
    free(arg);
    struct ares_srv_reply *reply = NULL;
    if (status == ARES_SUCCESS)
        status = ares_parse_srv_reply(abuf, alen, &reply);
    if (status != ARES_SUCCESS || reply == NULL) {
        q.cb(q.data, status == ARES_SUCCESS ? "empty answer" : ares_strerror(status), NULL, 0, 0);
        if (reply)
            ares_free_data(reply);
        return;
    }
    tg_resolver_srv_t s[MAX_ANSWER];
    int n = 0;
    for (struct ares_srv_reply *r = reply; r && n < MAX_ANSWER; r = r->next)
        s[n++] = (tg_resolver_srv_t){r->host, r->port, r->priority, r->weight};
    uint32_t ttl = 0;
    if (tg_resolver_answer_ttl(abuf, alen, &ttl) != 0)
        ttl = 0;
    q.cb(q.data, NULL, s, n, ttl);
    ares_free_data(reply);
}

int tg_resolver_srv(tg_resolver_t *res, const char *name, tg_resolver_srv_cb cb, void *data)
{
    srv_query_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    *q = (srv_query_t){cb, data};
    ares_query(res->channel, name, 1 /* IN */, 33 /* SRV */, srv_cb, q);
    arm_timer(res);
    return 0;
}
