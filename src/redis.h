/* @public Redis from a worker, without ever blocking it: a few hiredis async
 * connections per backend and worker, driven by the worker's libev loop.
 *
 * A backend (tg_redis_t) is created at config time from a URL
 * "redis://[:PASSWORD@]HOST[:PORT][/DB]" (the host is resolved then, in the
 * master, so a worker never calls getaddrinfo); one URL is one backend for
 * the whole config, whichever module declares it (the rate-limit zones and
 * Lua share its pool). A password is sent with AUTH, and the DB chosen with
 * SELECT, on every connect, before anything else. Each worker connects its pool in its
 * init_worker (tg_redis_start). Commands are pipelined on the pool's
 * connections in turn. Lua scripts registered with a backend are sent with
 * SCRIPT LOAD on every (re)connect and run with EVALSHA; a NOSCRIPT answer
 * (the server lost its script cache) loads the script again and retries
 * once, on the same connection, so it costs no extra round trip.
 *
 * Failure handling, so a sick Redis costs each request at most `timeout`:
 *  - every command has a deadline; when it passes, the caller is told
 *    ("timed out") and the connection is closed: a connection that holds a
 *    reply this late is stalled, and closing it fails the commands queued
 *    behind it at once instead of one timeout each;
 *  - a closed or refused connection is retried after 100 ms, doubling to
 *    2 s while it keeps failing; in between, commands fail at once ("not
 *    connected") when no connection of the pool is usable;
 *  - the first failure of a connection is logged as an error, repeated
 *    failures while it stays down at debug, the recovery at info.
 *
 * The callback runs exactly once per command, unless the caller cancelled
 * it before; after tg_redis_cancel the caller's data may be freed. */
#ifndef TG_REDIS_H
#define TG_REDIS_H

#include <hiredis/hiredis.h>
#include "str.h"
#include "conf.h"

#define TG_REDIS_POOL 2 /* connections per backend and worker */

typedef struct tg_redis_s tg_redis_t;
typedef struct tg_redis_cmd_s tg_redis_cmd_t;

typedef struct {
    const char *text; /* the Lua source */
    char sha[41];     /* its SHA-1 in hex, filled by tg_redis_add_script */
} tg_redis_script_t;

/* reply: the server's answer (valid during the call only; may be an error
 * reply), or NULL with `err` saying why there is none. */
typedef void (*tg_redis_cb)(void *data, redisReply *reply, const char *err);

/* Config time: the backend for `url` (its memory is the config's): the one
 * made for the same URL before, or a new one. NULL or an error message (bad
 * URL, unknown host, rediss:// without TLS support in hiredis). */
const char *tg_redis_create(tg_conf_t *cf, tg_str_t url, tg_redis_t **out);
/* The config's backend whose URL (as written) or name ("127.0.0.1:6379/2")
 * is `name_or_url`, or NULL. */
tg_redis_t *tg_redis_find(const tg_config_t *config, tg_str_t name_or_url);
/* Config time: send this script on every connect of `r` (once per script). */
const char *tg_redis_add_script(tg_conf_t *cf, tg_redis_t *r, tg_redis_script_t *s);
/* "127.0.0.1:6379" (and "/DB"), for messages. */
const char *tg_redis_name(const tg_redis_t *r);

/* Worker start: connect the pool (once: later calls do nothing). Returns 0 (a refused connection is
 * not an error: it is retried) or -1 (out of memory). */
int tg_redis_start(tg_redis_t *r);

/* Run `s` with `nkeys` keys followed by the other arguments (argv[0..argc)).
 * Returns the command, or NULL with *err set when no connection can take it
 * now (the callback is then never called). */
tg_redis_cmd_t *tg_redis_eval(tg_redis_t *r, tg_redis_script_t *s, int nkeys, int argc,
                              const char **argv, const size_t *argvlen, tg_msec_t timeout,
                              tg_redis_cb cb, void *data, const char **err);
/* Any command: argv[0] is its name. `pin` (may be NULL) keeps commands on
 * one connection, so a pipeline's replies come in order from one place:
 * *pin < 0 picks a connection in turn and stores its index, *pin >= 0
 * uses that one while it is usable. Same return and callback as above. */
tg_redis_cmd_t *tg_redis_command(tg_redis_t *r, int *pin, int argc, const char **argv,
                                 const size_t *argvlen, tg_msec_t timeout, tg_redis_cb cb,
                                 void *data, const char **err);
/* The caller no longer wants the answer: its callback will not be called. */
void tg_redis_cancel(tg_redis_cmd_t *c);

#endif
