/* libFuzzer target: the request path — llhttp with Tollgate's callbacks,
 * validation, URI normalisation, server and location choice, `return`,
 * the response-header modules (security headers, CORS, add_header,
 * compression) and the response writer — on arbitrary client bytes. Each
 * input is written to one end of a socketpair whose other end a real
 * connection (tg_conn_accept) reads, and the event loop runs until the
 * connection is done. Nothing goes upstream: the config only answers with
 * `return`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <ev.h>
#include "core.h"
#include "conn.h"
#include "h1.h"
#include "worker.h"
#include "log.h"

static const char conf_text[] =
    "workers 1;\n"
    "server {\n"
    "  listen 127.0.0.1:1;\n"
    "  server_name a.test *.b.test;\n"
    "  security_headers on;\n"
    "  cors origins=https://o.test credentials=on;\n"
    "  compress gzip br zstd;\n"
    "  compress_min_length 1;\n"
    "  add_header X-T $uri always;\n"
    "  location = /x { return 200 \"exact $arg_a $http_x_y $cookie_c\"; }\n"
    "  location /p/ { return 301 https://$host$request_uri; }\n"
    "  location ~* \\.(js|css)$ { return 404; }\n"
    "  location / { return 200 \"root $request_uri $remote_addr\"; }\n"
    "}\n"
    "server { listen 127.0.0.1:1; server_name c.test; return 204; }\n";

static tg_worker_t worker;

static void setup(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/tg-fuzz-req-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fwrite(conf_text, 1, sizeof(conf_text) - 1, f);
    fclose(f);
    tg_conf_prefix = "/tmp";
    tg_log_level = TG_LOG_CRIT; /* client errors are logged at info */
    tg_modules_init();
    tg_config_t *c = tg_config_load(path, 1);
    unlink(path);
    if (c == NULL)
        abort();
    worker.loop = ev_default_loop(0);
    worker.config = c;
    tg_worker = &worker;
    tg_buf_pool_init(16384, 64);
    tg_arena_blocks_init(256);
    for (int i = 0; i < tg_nmodules; i++)
        if (tg_modules[i]->init_worker)
            tg_modules[i]->init_worker(&worker);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        setup();
        init = 1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return 0;
    /* the whole input first, then EOF: what a client sends and closes */
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(sv[1], data + off, size - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(sv[1], SHUT_WR);
    struct sockaddr_storage ss = {0};
    ss.ss_family = AF_UNIX;
    tg_conn_t *c = tg_conn_accept(worker.config->listens, sv[0], (struct sockaddr *)&ss, sizeof(ss));
    if (c)
        tg_h1_start(c);
    /* run until the connection is gone; drain what it answers */
    char sink[65536];
    for (int i = 0; i < 200 && worker.nconns > 0; i++) {
        ev_run(worker.loop, EVRUN_NOWAIT);
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
    }
    while (worker.conns) /* a linger or keep-alive wait: end it */
        tg_conn_close(worker.conns);
    close(sv[1]);
    return 0;
}
