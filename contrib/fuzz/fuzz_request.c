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
#include "h1.h"
#include "fuzz_conn.h"

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

static void setup(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/tg-fuzz-req-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fwrite(conf_text, 1, sizeof(conf_text) - 1, f);
    fclose(f);
    fuzz_worker_init(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        setup();
        init = 1;
    }
    /* the whole input, then EOF: what a client sends and closes */
    fuzz_run_conn(data, size, tg_h1_start);
    return 0;
}
