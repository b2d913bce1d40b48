/* Unit tests for src/redis.c against a fake Redis server in the same process
 * and libev loop, which answers as each test tells it: URL parsing; the
 * handshake (SELECT, SCRIPT LOAD) pipelined before the first command;
 * EVALSHA replies; NOSCRIPT -> SCRIPT LOAD + retry on the same connection;
 * the deadline (the caller hears "timed out" after `timeout`, the stalled
 * connection is closed); a cancelled command whose reply comes later never
 * calls back (its caller's memory is gone: ASan would see a use after free);
 * fail-fast while down, and reconnecting once the server is back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "redis.h"
#include "core.h"
#include "worker.h"
#include "log.h"
#include "tap.h"

/* ---- the fake server ------------------------------------------------------------------- */

typedef struct {
    int lfd, port;
    ev_io accept_io;
    int cfd[8]; /* client sockets */
    ev_io cio[8];
    char in[8][8192];
    size_t inlen[8];
    int hold;     /* 1: do not answer EVALSHA */
    int noscript; /* answer the next EVALSHA with NOSCRIPT */
    int held[8];  /* EVALSHA commands held, per client */
    int script_loads, evalshas, selects, accepted, eofs;
} fake_t;

static fake_t fk;

static void answer(int i, const char *s)
{
    if (write(fk.cfd[i], s, strlen(s)) < 0) { /* the client went away */
    }
}

/* Parse whole RESP arrays from the buffer; answer each. */
static void serve(int i)
{
    for (;;) {
        char *b = fk.in[i], *end = b + fk.inlen[i], *p = b;
        if (p == end || *p != '*') return;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return;
        int n = atoi(p + 1), complete = 1;
        char args[4][64] = {{0}};
        p = nl + 1;
        for (int k = 0; k < n; k++) {
            nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
            if (!nl) {
                complete = 0;
                break;
            }
            int len = atoi(p + 1);
            p = nl + 1;
            if (end - p < len + 2) {
                complete = 0;
                break;
            }
            if (k < 4) snprintf(args[k], sizeof(args[k]), "%.*s", len < 63 ? len : 63, p);
            p += len + 2;
        }
        if (!complete) return;
        memmove(b, p, (size_t)(end - p));
        fk.inlen[i] = (size_t)(end - p);
        if (strcasecmp(args[0], "SELECT") == 0) {
            fk.selects++;
            answer(i, "+OK\r\n");
        } else if (strcasecmp(args[0], "SCRIPT") == 0) {
            fk.script_loads++;
            answer(i, "$40\r\n0123456789012345678901234567890123456789\r\n");
        } else if (strcasecmp(args[0], "EVALSHA") == 0) {
            fk.evalshas++;
            if (fk.noscript) {
                fk.noscript = 0;
                answer(i, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
            } else if (fk.hold) {
                fk.held[i]++;
            } else {
                answer(i, "*2\r\n:1\r\n:42\r\n");
            }
        } else {
            answer(i, "-ERR unknown\r\n");
        }
    }
}

static void client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    int i = (int)(io - fk.cio);
    ssize_t n = read(io->fd, fk.in[i] + fk.inlen[i], sizeof(fk.in[i]) - fk.inlen[i]);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        ev_io_stop(loop, io);
        close(fk.cfd[i]);
        fk.cfd[i] = -1;
        fk.held[i] = 0;
        fk.eofs++;
        return;
    }
    fk.inlen[i] += (size_t)n;
    serve(i);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK);
    if (fd < 0) return;
    for (int i = 0; i < 8; i++)
        if (fk.cfd[i] < 0) {
            fk.cfd[i] = fd;
            fk.inlen[i] = 0;
            fk.accepted++;
            ev_io_init(&fk.cio[i], client_cb, fd, EV_READ);
            ev_io_start(loop, &fk.cio[i]);
            return;
        }
    close(fd);
}

static void fake_listen(struct ev_loop *loop, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    fk.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(fk.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fk.lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fk.lfd, 16) != 0) {
        perror("fake redis");
        exit(2);
    }
    socklen_t l = sizeof(sa);
    getsockname(fk.lfd, (struct sockaddr *)&sa, &l);
    fk.port = ntohs(sa.sin_port);
    ev_io_init(&fk.accept_io, accept_cb, fk.lfd, EV_READ);
    ev_io_start(loop, &fk.accept_io);
}

/* Server gone: listener and every client closed. */
static void fake_down(struct ev_loop *loop)
{
    ev_io_stop(loop, &fk.accept_io);
    close(fk.lfd);
    for (int i = 0; i < 8; i++)
        if (fk.cfd[i] >= 0) {
            ev_io_stop(loop, &fk.cio[i]);
            close(fk.cfd[i]);
            fk.cfd[i] = -1;
        }
}

/* Answer every held EVALSHA, on the connection it came from. */
static void fake_release(void)
{
    for (int i = 0; i < 8; i++)
        for (; fk.held[i] > 0; fk.held[i]--)
            if (fk.cfd[i] >= 0) answer(i, "*2\r\n:1\r\n:7\r\n");
}

/* ---- the client side -------------------------------------------------------------------- */

typedef struct {
    int calls;
    int ok;
    long long ahead;
    char err[64];
    double at;
} result_t;

static void on_reply(void *data, redisReply *reply, const char *err)
{
    result_t *r = data;
    r->calls++;
    r->at = ev_time();
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        r->ok = 1;
        r->ahead = reply->element[1]->integer;
    } else {
        snprintf(r->err, sizeof(r->err), "%s", err ? err : reply ? reply->str : "?");
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

/* Run the loop until *flag is true or `secs` pass. */
static int run_until(struct ev_loop *loop, int *flag, double secs)
{
    double end = ev_time() + secs;
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    while (!*flag && ev_time() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return *flag;
}

static void run_for(struct ev_loop *loop, double secs)
{
    int never = 0;
    run_until(loop, &never, secs);
}

static tg_redis_cmd_t *eval(tg_redis_t *r, tg_redis_script_t *s, tg_msec_t timeout, result_t *res,
                            const char **err)
{
    const char *argv[3] = {"key", "1000", "5000"};
    size_t len[3] = {3, 4, 4};
    return tg_redis_eval(r, s, 1, 3, argv, len, timeout, on_reply, res, err);
}

static void test_urls(tg_conf_t *cf)
{
    tg_redis_t *r;
    ok(tg_redis_create(cf, TG_STR("redis://127.0.0.1:6380/3"), &r) == NULL, "host:port/db");
    is_str(tg_redis_name(r), "127.0.0.1:6380/3", "name");
    ok(tg_redis_create(cf, TG_STR("redis://127.0.0.1"), &r) == NULL, "default port");
    is_str(tg_redis_name(r), "127.0.0.1:6379", "port 6379");
    ok(tg_redis_create(cf, TG_STR("redis://[::1]:7000"), &r) == NULL, "IPv6");
    is_str(tg_redis_name(r), "[::1]:7000", "IPv6 name");
    ok(tg_redis_create(cf, TG_STR("redis://localhost:7001"), &r) == NULL, "a name, resolved now");
    ok(strstr(tg_redis_name(r), ":7001") != NULL, "resolved: %s", tg_redis_name(r));
    ok(tg_redis_create(cf, TG_STR("http://127.0.0.1"), &r) != NULL, "not redis://");
    ok(tg_redis_create(cf, TG_STR("redis://127.0.0.1:0"), &r) != NULL, "port 0");
    ok(tg_redis_create(cf, TG_STR("redis://127.0.0.1:6379/x"), &r) != NULL, "bad db");
    ok(tg_redis_create(cf, TG_STR("redis://"), &r) != NULL, "no host");
}

int main(void)
{
    static tg_worker_t w;
    tg_worker = &w;
    w.loop = ev_default_loop(0);
    tg_log_level = TG_LOG_CRIT + 1; /* quiet: failures are expected here */
    for (int i = 0; i < 8; i++)
        fk.cfd[i] = -1;

    tg_config_t config = {0};
    tg_arena_init(&config.arena, 0);
    tg_conf_t cf = {.arena = &config.arena, .config = &config, .file = "t.conf", .line = 1};
    test_urls(&cf);

    fake_listen(w.loop, 0);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", fk.port);
    tg_redis_t *r;
    static tg_redis_script_t script = {"return {1, 42}", {0}};
    ok(tg_redis_create(&cf, tg_str_c(url), &r) == NULL, "backend for the fake server");
    ok(tg_redis_add_script(&cf, r, &script) == NULL, "script added");
    is_str(script.sha, "e599d8b4d5bd356b374cd63839baa1ddfa69e82f",
           "SHA-1 of the script, as Redis names it");
    ok(tg_redis_start(r) == 0, "pool started");

    /* a command sent at once rides behind the handshake */
    result_t a = {0};
    const char *err = NULL;
    ok(eval(r, &script, 1000, &a, &err) != NULL, "eval while connecting");
    ok(run_until(w.loop, &a.calls, 2), "answered");
    ok(a.ok && a.ahead == 42, "EVALSHA reply delivered");
    is_int(fk.accepted, TG_REDIS_POOL, "the pool connected");
    is_int(fk.selects, TG_REDIS_POOL, "SELECT 2 on each connection");
    is_int(fk.script_loads, TG_REDIS_POOL, "SCRIPT LOAD on each connection");

    /* NOSCRIPT: loaded again and retried, one answer to the caller */
    result_t b = {0};
    fk.noscript = 1;
    int loads = fk.script_loads, evals = fk.evalshas;
    eval(r, &script, 1000, &b, &err);
    ok(run_until(w.loop, &b.calls, 2) && b.ok, "NOSCRIPT: the caller still gets the result");
    is_int(b.calls, 1, "one callback");
    is_int(fk.script_loads - loads, 1, "SCRIPT LOAD sent again");
    is_int(fk.evalshas - evals, 2, "EVALSHA retried once");

    /* deadline: a stalled server costs the caller the timeout, not more */
    result_t c = {0};
    fk.hold = 1;
    int eofs = fk.eofs;
    double t0 = ev_time();
    eval(r, &script, 100, &c, &err);
    ok(run_until(w.loop, &c.calls, 3), "timed-out command called back");
    ok(!c.ok && strcmp(c.err, "timed out") == 0, "err: %s", c.err);
    ok(c.at - t0 >= 0.09 && c.at - t0 < 0.5, "after about 100 ms (%.3f s)", c.at - t0);
    run_for(w.loop, 0.05);
    is_int(fk.eofs - eofs, 1, "the stalled connection was closed");

    /* cancel: the reply comes later and finds nobody; the caller's memory
     * is gone by then (ASan checks nothing touches it) */
    memset(fk.held, 0, sizeof(fk.held));
    result_t *d = calloc(1, sizeof(*d));
    tg_redis_cmd_t *cmd = NULL;
    for (int i = 0; i < 3 && cmd == NULL; i++) { /* one connection may be reconnecting */
        cmd = eval(r, &script, 5000, d, &err);
        if (!cmd) run_for(w.loop, 0.2);
    }
    ok(cmd != NULL, "command sent");
    run_for(w.loop, 0.05);
    tg_redis_cancel(cmd);
    free(d);
    int nheld = 0;
    for (int i = 0; i < 8; i++)
        nheld += fk.held[i];
    is_int(nheld, 1, "the server holds the cancelled command");
    fk.hold = 0;
    fake_release();
    run_for(w.loop, 0.2);
    ok(1, "late reply to a cancelled command ignored");

    /* down: fail fast; back: reconnect */
    fake_down(w.loop);
    run_for(w.loop, 0.1);
    /* refused at once, or (a reconnect attempt in progress) failed with it */
    result_t e = {0};
    err = NULL;
    t0 = ev_time();
    if (eval(r, &script, 1000, &e, &err) == NULL) {
        ok(err && strcmp(err, "not connected") == 0, "server down: refused at once (%s)", err);
        run_for(w.loop, 0.05);
        is_int(e.calls, 0, "and never calls back");
    } else {
        ok(run_until(w.loop, &e.calls, 1) && !e.ok, "server down: failed (%s)", e.err);
        ok(e.at - t0 < 0.1, "at once, not after the timeout (%.3f s)", e.at - t0);
    }
    err = NULL;
    int refused = 0;
    for (int i = 0; i < 50 && !refused; i++) {
        result_t g = {0};
        tg_redis_cmd_t *x = eval(r, &script, 1000, &g, &err);
        if (x == NULL)
            refused = 1;
        else
            run_until(w.loop, &g.calls, 1);
    }
    ok(refused && strcmp(err, "not connected") == 0, "while down and not retrying: not connected");
    int old_port = fk.port;
    fake_listen(w.loop, old_port);
    result_t f = {0};
    int sent = 0;
    double deadline = ev_time() + 5;
    while (!sent && ev_time() < deadline) {
        run_for(w.loop, 0.05);
        sent = eval(r, &script, 1000, &f, &err) != NULL;
    }
    ok(sent, "reconnected after the server came back");
    ok(run_until(w.loop, &f.calls, 2) && f.ok, "and answers again");

    tg_arena_destroy(&config.arena);
    return done_testing();
}
