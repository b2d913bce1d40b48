/* What the connection-level fuzz targets share (fuzz_request.c for HTTP/1.1,
 * fuzz_h2.c for HTTP/2): a worker set up on a config as worker_main.c does,
 * and one client connection that sends the input, closes, and is served to
 * the end. Static functions: each target includes it once. */
#ifndef TG_FUZZ_CONN_H
#define TG_FUZZ_CONN_H

#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <ev.h>
#include "conn.h"
#include "core.h"
#include "log.h"
#include "worker.h"

static tg_worker_t worker;

/* Load the config the caller wrote at `path` (removed here) and set the
 * worker up: its loop, the buffer and arena pools, each module's init_worker. */
static void fuzz_worker_init(const char *path)
{
    tg_conf_prefix = "/tmp";
    tg_log_level = TG_LOG_CRIT; /* client errors are logged at info */
    tg_modules_init();
    worker.loop = ev_default_loop(0);
    tg_worker = &worker;
    tg_config_t *c = tg_config_load(path, 1);
    unlink(path);
    if (c == NULL)
        abort();
    worker.config = c;
    tg_buf_pool_init(16384, 64);
    tg_arena_blocks_init(256);
    for (int i = 0; i < tg_nmodules; i++)
        if (tg_modules[i]->init_worker)
            tg_modules[i]->init_worker(&worker);
}

/* One client connection on the first listener: all of `bytes`, then EOF (what
 * a client sends and closes), given to the codec `start` begins; the loop runs
 * until the connection is gone (at most 200 rounds), its answers drained, and
 * what still waits on a timer (linger, keep-alive, streams) is closed. */
static void fuzz_run_conn(const uint8_t *bytes, size_t n, void (*start)(tg_conn_t *))
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(sv[1], bytes + off, n - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    struct sockaddr_storage ss = {0};
    ss.ss_family = AF_UNIX;
    tg_conn_t *c = tg_conn_accept(worker.config->listens, sv[0], (struct sockaddr *)&ss, sizeof(ss));
    if (c)
        start(c);
    char sink[65536];
    for (int i = 0; i < 200 && worker.nconns > 0; i++) {
        ev_run(worker.loop, EVRUN_NOWAIT);
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
    }
    while (worker.conns)
        tg_conn_close(worker.conns);
    close(sv[1]);
}

#endif
