/* Compressed variants of the response cache's entries (modules/cache_variant.c),
 * called by the cache module (modules/cache.c). */
#ifndef TG_CACHE_VARIANT_H
#define TG_CACHE_VARIANT_H

#include "request.h"
#include "cache_store.h"

/* A hit on entry `id` (stored under `key`, its head `head`), the head in
 * r->resp_headers: when the compress module would compress this answer and
 * the variant made from `id` for that coding is stored, r's response headers
 * become those of the compressed answer (Content-Length: the variant's) and
 * *ve the entry to send the body from: 1. When it would and no such variant
 * is stored, the answer is offered (tg_cache_variant_offer): 0, as when it
 * would not compress. -1 out of memory. */
int tg_cache_variant_hit(tg_request_t *r, tg_cache_store_t *st, tg_str_t key, tg_str_t head,
                         const tg_cache_entry_t *id, double lock_s, tg_cache_entry_t *ve);
/* r answers with entry `id` (a hit without a variant, or the fill of `id`,
 * its stored head `head`): when the compress module compresses the answer,
 * store its output as the variant of `id` for that coding, unless another
 * request does already. `head` and `key` must live as long as r. 0, -1. */
int tg_cache_variant_offer(tg_request_t *r, tg_cache_store_t *st, tg_str_t key, tg_str_t head,
                           const tg_cache_entry_t *id, double lock_s);
/* Remove the variants stored beside `key` (a new response is stored under it). */
void tg_cache_variant_drop(tg_request_t *r, tg_cache_store_t *st, tg_str_t key);

#endif
