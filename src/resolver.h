/* @public Asynchronous DNS in a worker's event loop: c-ares with its sockets
 * watched by libev (src/resolver.c). Nothing here blocks: a query is sent,
 * and its callback runs from the loop when the answer (or the timeout)
 * comes. The `resolver` directive's settings are a tg_resolver_conf_t. */
#ifndef TG_RESOLVER_H
#define TG_RESOLVER_H

#include <stdint.h>
#include <sys/socket.h>
#include <ev.h>
#include "str.h"
#include "conf.h"

#define TG_RESOLVER_MAX_SERVERS 8

/* `resolver ADDR[:PORT]... [valid=TIME] [ipv6=on|off] [timeout=TIME];` */
typedef struct {
    const char *servers; /* "127.0.0.1:53,[::1]:5353" for c-ares; NULL: /etc/resolv.conf */
    tg_msec_t valid;     /* re-resolve after this instead of the answer's TTL; 0: the TTL */
    tg_msec_t timeout;   /* per try (c-ares tries twice) */
    int ipv6;            /* also ask for AAAA records */
    const char *file;    /* where it was written (NULL: the default) */
    int line;
} tg_resolver_conf_t;

/* The defaults: the system's servers, TTLs, IPv6 on, 2 s per try. */
void tg_resolver_conf_default(tg_resolver_conf_t *rc);
/* Parse the directive's arguments (cf->args[1..nargs]) into *rc. Returns
 * NULL or an error message for set() to return. */
const char *tg_resolver_conf_parse(tg_conf_t *cf, tg_resolver_conf_t *rc);

typedef struct tg_resolver_s tg_resolver_t;

/* A channel on `loop` with the settings of `rc` (kept by reference). NULL
 * on failure (logged). Reads /etc/resolv.conf when rc->servers is NULL:
 * call it at worker start, not while serving. */
tg_resolver_t *tg_resolver_create(struct ev_loop *loop, const tg_resolver_conf_t *rc);
/* Cancel what is pending (each callback runs once more with an error) and
 * free the channel. */
void tg_resolver_destroy(tg_resolver_t *res);

/* One address of an answer, port already set. */
typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
} tg_resolver_addr_t;

/* An A/AAAA answer: `err` is NULL on success (n may still be 0 only for an
 * empty answer, which is reported as an error), else what went wrong.
 * `ttl` is the smallest TTL of the records, in seconds. The array is only
 * valid during the call. */
typedef void (*tg_resolver_addrs_cb)(void *data, const char *err, const tg_resolver_addr_t *a,
                                     int n, uint32_t ttl);
/* Resolve `name` (NUL-terminated) to its A (and AAAA when ipv6) records
 * with `port` set in each. Returns 0, or -1 (out of memory: not called). */
int tg_resolver_addrs(tg_resolver_t *res, const char *name, uint16_t port, tg_resolver_addrs_cb cb,
                      void *data);

/* One SRV record. `target` lives only during the callback. */
typedef struct {
    const char *target;
    uint16_t port, priority, weight;
} tg_resolver_srv_t;
typedef void (*tg_resolver_srv_cb)(void *data, const char *err, const tg_resolver_srv_t *s, int n,
                                   uint32_t ttl);
/* Query the SRV records of `name` ("_service._tcp.example.com"). */
int tg_resolver_srv(tg_resolver_t *res, const char *name, tg_resolver_srv_cb cb, void *data);

/* The smallest TTL of the answer records of a DNS message (pure: exported
 * for its unit test). Returns 0 and sets *ttl, or -1 for a malformed
 * message or one without answers. */
int tg_resolver_answer_ttl(const unsigned char *msg, int len, uint32_t *ttl);

#endif
