/* @public The loaded configuration: main settings, listeners, servers, locations and
 * upstreams, as built by the parser (src/conf.c) through the core directives
 * (src/core.c). One tg_config_t is one generation: the master builds a new one
 * on reload and only replaces the running one when it loaded without error.
 * Everything in it lives in config->arena. Workers get their copy by fork. */
#ifndef TG_CORE_H
#define TG_CORE_H

#include <stdint.h>
#include <sys/socket.h>
#include <pcre2.h>
#include "str.h"
#include "arena.h"
#include "conf.h"
#include "module.h"
#include "user.h"

#define TG_MAX_WORKERS 64
#define TG_VERSION "0.1.0"

typedef struct tg_server_s tg_server_t;
typedef struct tg_upstream_s tg_upstream_t;
typedef struct tg_location_s tg_location_t;
typedef struct tg_stats_s tg_stats_t;

/* One address:port the gateway listens on, shared by the server blocks that
 * name it. The master owns one SO_REUSEPORT socket per worker slot. */
typedef struct tg_listen_s {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[80]; /* "127.0.0.1:8080" */
    unsigned tls : 1;
    unsigned proxy_protocol : 1; /* connections start with a PROXY header */
    unsigned http2 : 1;          /* cleartext: HTTP/2 with prior knowledge too (h2c) */
    void *tls_ctx; /* tls: the default server's SSL_CTX (set by the tls module) */
    int backlog;
    tg_server_t **servers; /* servers on this address, config order */
    int nservers;
    tg_server_t *default_server; /* default_server flag, else the first */
    int fds[TG_MAX_WORKERS];     /* per worker slot; -1 until opened by the master */
    const char *file;
    int line;
    struct tg_listen_s *next;
} tg_listen_t;

typedef enum {
    TG_LOC_PREFIX = 0,
    TG_LOC_EXACT,     /* = /path */
    TG_LOC_PREFIX_NOREGEX, /* ^~ /path */
    TG_LOC_REGEX,     /* ~ re, ~* re (caseless) */
    TG_LOC_NAMED,     /* @name: never matched by a request path, only reached by an
                       * internal redirect (error_page, try_files) */
} tg_loc_kind_t;

struct tg_location_s {
    tg_loc_kind_t kind;
    tg_str_t path;           /* prefix/exact path, the regex source, or "@name" */
    pcre2_code *re;          /* regex locations (JIT compiled) */
    tg_server_t *server;
    void **mconf;            /* per-module configs, merged with the server's */
    tg_hook_t *hooks[TG_PHASE_COUNT]; /* NULL-terminated (module == NULL) */
    const char *file;
    int line;
};

/* A server block. Its own location list plus an implicit "location /" made
 * from the server level when the config has none, so every request lands in a
 * location. */
struct tg_server_s {
    tg_str_t *names; /* server_name list: exact, "*.suffix", or "" */
    int nnames;
    tg_listen_t **listens;
    int nlistens;
    void **mconf;              /* server-level module configs, merged with main */
    tg_location_t **locations; /* config order */
    int nlocations;
    tg_location_t *root;       /* used when no location matches (404 unless set) */
    const char *file;
    int line;
};

/* Core settings per scope (tg_core_module's config): client limits and
 * timeouts, read by the codecs and the request layer. */
typedef struct {
    int64_t client_max_body_size; /* 0 = unlimited */
    int64_t client_max_uri;
    int64_t client_max_headers; /* header count */
    tg_msec_t header_timeout, idle_timeout, send_timeout, body_timeout;
    int64_t body_min_rate;     /* client_body_min_rate: bytes/s, 0 = off */
    tg_msec_t body_rate_grace; /* its grace= */
    int64_t keepalive_requests;
    int server_tokens;
} tg_core_conf_t;

/* Core settings of the main scope (the tg_core_module's main config). */
typedef struct {
    int64_t workers; /* 0 = auto (CPU count) */
    const char *pid_file;
    const char *error_log; /* NULL = stderr */
    int error_level;
    tg_msec_t shutdown_timeout;
    tg_msec_t stall_timeout; /* worker_stall_timeout: the watchdog's (0: off) */
    int64_t worker_connections;
    int64_t header_buffer_size; /* client_header_buffer_size: the 431 limit */
    int io_uring;               /* batch hot-path writes (src/sendq.c) */
    tg_user_t user;             /* workers' credentials (src/user.c) */
} tg_main_conf_t;

struct tg_config_s {
    tg_arena_t arena;
    const char *file; /* main config file */
    tg_main_conf_t *main;
    void **mconf; /* main-scope module configs, by module index */
    tg_listen_t *listens;
    tg_server_t **servers;
    int nservers;
    tg_upstream_t *upstreams;
    struct tg_app_s *apps; /* app blocks (src/app_conf.c), run by the master (src/app.c) */
    struct tg_shm_zone_s *shm_zones; /* shared memory zones (src/shm.c), declaration order */
    int generation; /* 1 for the first load, +1 per reload */
    tg_stats_t *stats; /* the stats zone and slots (src/stats.h) */
    struct tg_var_defined_s *vars; /* variables the config defines (map): src/var.c */
    struct tg_redis_s *redis;      /* Redis backends, one per URL (src/redis.c) */
};

/* Parse, merge and check `path` into a new config. Returns NULL after
 * printing every `file:line:` error to stderr. */
tg_config_t *tg_config_load(const char *path, int generation);
void tg_config_destroy(tg_config_t *c);

/* Server for a Host value on a listener: exact name, then the longest
 * "*.suffix" wildcard, then the listener's default server. */
tg_server_t *tg_core_find_server(tg_listen_t *ls, tg_str_t host);
/* Location for a normalized path, with nginx's precedence: exact match; else
 * the longest prefix; a "^~" longest prefix stops there; else the first
 * matching regex in config order; else the longest prefix; else NULL. */
tg_location_t *tg_core_find_location(tg_server_t *s, tg_str_t path);
/* The pieces of those two lookups, for --explain (src/explain.c) to show
 * why each candidate won or lost by the same rules. How `host` matches a
 * server's names: -1 an exact name, N > 0 a "*.suffix" wildcard whose
 * suffix is N bytes long (the longest of the server's), 0 none; *name is
 * the name that matched. */
int tg_core_server_name_match(const tg_server_t *s, tg_str_t host, tg_str_t *name);
/* Does location l match `path` by its own rule alone (exact: equal; prefix
 * and ^~: starts with; regex: matches)? 1, 0, or -1 (no memory). Named
 * locations never match a path. */
int tg_core_location_matches(const tg_location_t *l, tg_str_t path);
/* The named location "@name" of a server, or NULL. */
tg_location_t *tg_core_find_named(tg_server_t *s, tg_str_t name);

/* Config-time checks shared by the directives that take header names. */
int tg_conf_is_token(tg_str_t s);
/* NULL, or an error message when `name` is not a token or `value` has CTLs. */
const char *tg_conf_check_header(tg_conf_t *cf, tg_str_t name, tg_str_t value);

extern tg_module_t tg_core_module;

/* The core settings in a scope's module configs (mconf of a server or
 * location, r->loc_conf). */
static inline tg_core_conf_t *tg_core_conf(void **mconf)
{
    return mconf[tg_core_module.index];
}

#endif
