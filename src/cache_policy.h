/* @public RFC 9111 decisions for the response cache (src/cache_policy.c). */
#ifndef TG_CACHE_POLICY_H
#define TG_CACHE_POLICY_H

#include "request.h"
#include "cache_store.h"

/* May the upstream's response (r->status, r->resp_headers) to r be stored,
 * and until when is it fresh? `valid`: cache_valid's lifetime for this
 * status (-1: none); `store_cookie`: responses with Set-Cookie may be
 * stored (their cookies are not). Returns 1 and *m, or 0. */
int tg_cache_storable(tg_request_t *r, double now, double valid, int store_cookie,
                      tg_cache_meta_t *m);
/* The response's Vary as a lowercase comma list: 0 none, 1 *out set, -1 not
 * storable (Vary: *, too many names). */
int tg_cache_response_vary(tg_request_t *r, tg_str_t *out);
/* The key of r's variant: `key` extended with r's values of each header of
 * `names` (a list as above). 0, -1 out of memory. */
int tg_cache_variant_key(tg_request_t *r, tg_str_t key, tg_str_t names, tg_str_t *out);
/* The response head as stored (the framing, hop-by-hop, Age and Set-Cookie
 * lines left out), and back into r->resp_headers. 0, -1. */
int tg_cache_head_serialize(tg_request_t *r, tg_str_t *out);
int tg_cache_head_parse(tg_request_t *r, char *p, size_t len);
/* A refresh got 304 (r->resp_headers its fields) for a stored response of
 * head `old` (as stored) and metadata `om` (RFC 9111 4.3.4). *head: the
 * stored head with the 304's fields in (RFC 9111 3.2: each field the 304
 * carries replaces the stored ones of its name; not the framing and
 * hop-by-hop ones, Age, Set-Cookie, nor Content-Encoding, which describes
 * the stored body); *m: its freshness computed from that head, else (it
 * gives none) the lifetime it had counted from now. 0, -1 out of memory. */
int tg_cache_revalidate(tg_request_t *r, tg_str_t old, const tg_cache_meta_t *om, double now,
                        tg_str_t *head, tg_cache_meta_t *m);

#endif
