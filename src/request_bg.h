/* @public Requests with no client (docs/architecture.md, "A request with no
 * client"): a copy of a client's GET that runs from the route phase in the
 * same location, through the content handler (the proxy) and the response
 * hooks, while the client's request goes on or ends. Its carrier takes the
 * response and drops it: what the request is for happens in the modules'
 * hooks (the cache stores the response it sees). Used for the cache's
 * background refreshes (stale-while-revalidate) and revalidations. */
#ifndef TG_REQUEST_BG_H
#define TG_REQUEST_BG_H

#include "request.h"

#define TG_REQUEST_BG_MAX 256 /* background requests in flight per worker */

/* A GET for the same server, location, host and URI as `parent`, with a
 * copy of its headers (the caller edits r->headers before running it), in
 * an arena of its own; its module contexts are empty. NULL when
 * TG_REQUEST_BG_MAX are in flight or memory ran out. */
tg_request_t *tg_request_bg_create(tg_request_t *parent);
/* Run it: the route phase, the content handler, the response hooks, the
 * log hooks; then its arena is released. The request may be over when
 * this returns. */
void tg_request_bg_run(tg_request_t *r);
/* Release one created and never run. */
void tg_request_bg_drop(tg_request_t *r);

#endif
