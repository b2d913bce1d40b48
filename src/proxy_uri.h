/* The request-target sent upstream, by nginx's proxy_pass rule (proxy_uri.c).
 *
 * `proxy_pass http://api/remote/;` has a URI part ("/remote/"): the part of
 * the normalized path that matched the location prefix is replaced by it, and
 * the rest of the path is percent-encoded again; the query string follows as
 * the client sent it. Without a URI part (`proxy_pass api;`,
 * `proxy_pass http://api;`) the client's target goes unchanged. A URI part
 * with variables is sent as it evaluates. A path changed after routing
 * (tg.req.set_path in access, rewrite ... break) goes as it is. */
#ifndef TG_PROXY_URI_H
#define TG_PROXY_URI_H

#include "str.h"
#include "conf.h"
#include "module.h"

typedef struct tg_tpl_s tg_tpl_t; /* var.h */

typedef struct {
    tg_tpl_t *uri;   /* the URI part, NULL: none */
    tg_str_t prefix; /* the location prefix it replaces ("/" at server level) */
} tg_proxy_uri_t;

/* Split a proxy_pass argument: [scheme "://"] authority [URI part]. The
 * authority ends at the first '/' or '$' (so "http://api$request_uri" has
 * the URI part "$request_uri"). *scheme is "http", "https" or empty.
 * Returns 0, or -1 for another scheme. */
int tg_proxy_uri_split(tg_str_t arg, tg_str_t *scheme, tg_str_t *authority, tg_str_t *uri);

/* The target for r (in r->arena, or r->uri itself): see the file comment.
 * Returns 0, or -1 out of memory. */
int tg_proxy_uri_target(tg_request_t *r, const tg_proxy_uri_t *pu, tg_str_t *out);

#endif
