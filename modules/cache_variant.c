/* cache_variant: compressed variants of the response cache's entries
 * (docs/cache.md, "Compression and caching together").
 *
 * The cache stores the upstream's identity response; the compress module
 * compresses what goes to each client. So that a hit is not compressed again
 * every time, the compress module's output for an entry is kept in the same
 * zone beside it, once per coding, under the entry's key + "\x01\x03" + the
 * coding ("gzip", "br" or "zstd"):
 *
 * - A hit (modules/cache.c) asks tg_cache_variant_hit: when the compress
 *   module would compress this answer (its own decision: types, min length,
 *   levels, Accept-Encoding, Range, HEAD, no-transform) and the variant for
 *   that coding made from this very entry is stored, the answer is the
 *   variant's bytes, with the compressed answer's headers and a known
 *   Content-Length; the compress module leaves an encoded answer alone.
 * - Otherwise the hit (when the answer will be compressed), or the fill of
 *   the entry, is offered (tg_cache_variant_offer): this module's body
 *   filter, after the compress
 *   module's, takes the variant key's fill lock once the compress module
 *   compresses, and stores its output as the variant. A variant locked or
 *   being filled by another request is left to it: one fill per variant.
 *
 * A variant holds a copy of its entry's head (a purge by tag finds it too)
 * and the entry's generation in its metadata's `age`: it is served with the
 * entry it was made from only. A new response stored under the key drops the
 * variants (tg_cache_variant_drop), a purge of the key takes them (the
 * entry's TG_CACHE_F_VARIANTS flag), and one whose entry was evicted is
 * never served and goes by the next fill or LRU. An answer the upstream
 * encoded itself is stored as it is: the compress module does not compress
 * it, so no variant is made. */
#include <string.h>
#include <ev.h>
#include "module.h"
#include "request.h"
#include "worker.h"
#include "cache_store.h"
#include "cache_variant.h"
#include "compress.h"

#define CV_MARK "\x01\x03"
#define CV_IOV 16

static const char *const cv_codings[] = {"gzip", "br", "zstd"}; /* modules/compress.c's */

typedef struct {
    tg_cache_store_t *st;
    tg_str_t key, head;
    tg_cache_entry_t id; /* the entry the variant is made from */
    tg_cache_entry_t e;  /* the variant being filled */
    double lock_s;
    unsigned locked : 1;
    unsigned done : 1; /* stored, given up or left to another request */
} cv_ctx_t;

extern tg_module_t tg_cache_variant_module;

static tg_str_t variant_key(tg_arena_t *a, tg_str_t key, const char *coding)
{
    size_t cl = strlen(coding);
    char *k = tg_arena_alloc(a, key.len + sizeof(CV_MARK) - 1 + cl);
    if (k == NULL)
        return TG_NULL_STR;
    memcpy(k, key.p, key.len);
    memcpy(k + key.len, CV_MARK, sizeof(CV_MARK) - 1);
    memcpy(k + key.len + sizeof(CV_MARK) - 1, coding, cl);
    return (tg_str_t){k, key.len + sizeof(CV_MARK) - 1 + cl};
}

static int made_from(const tg_cache_entry_t *v, const tg_cache_entry_t *id)
{
    return v->meta.age == (double)id->gen;
}

int tg_cache_variant_hit(tg_request_t *r, tg_cache_store_t *st, tg_str_t key, tg_str_t head,
                         const tg_cache_entry_t *id, double lock_s, tg_cache_entry_t *ve)
{
    const char *coding = tg_compress_choice(r);
    if (coding == NULL)
        return 0;
    tg_str_t k = variant_key(r->arena, key, coding);
    if (k.p == NULL)
        return -1;
    if (tg_cache_lookup(st, k, ev_now(tg_worker->loop), 0, ve) != 1 ||
        ve->state != TG_CACHE_READY || !made_from(ve, id))
        return tg_cache_variant_offer(r, st, key, head, id, lock_s);
    if (tg_compress_mark(r, coding) != 0)
        return -1;
    r->resp_content_length = (int64_t)ve->blen;
    tg_cache_count(st, TG_CACHE_C_VARIANT_SERVED);
    return 1;
}

static void cv_release(void *p)
{
    cv_ctx_t *x = p;
    if (x->locked) /* the answer did not end (client gone, upstream failed) */
        tg_cache_fill_end(x->st, &x->e, 0);
    x->locked = 0;
}

int tg_cache_variant_offer(tg_request_t *r, tg_cache_store_t *st, tg_str_t key, tg_str_t head,
                           const tg_cache_entry_t *id, double lock_s)
{
    cv_ctx_t *x = tg_arena_alloc(r->arena, sizeof(*x));
    if (x == NULL || tg_arena_on_reset(r->arena, cv_release, x) != 0)
        return -1;
    x->st = st;
    x->key = key;
    x->head = head;
    x->id = *id;
    x->lock_s = lock_s;
    tg_module_ctx(r, &tg_cache_variant_module) = x;
    return 0;
}

void tg_cache_variant_drop(tg_request_t *r, tg_cache_store_t *st, tg_str_t key)
{
    for (size_t i = 0; i < sizeof(cv_codings) / sizeof(cv_codings[0]); i++) {
        tg_str_t k = variant_key(r->arena, key, cv_codings[i]);
        if (k.p)
            tg_cache_purge(st, k, TG_CACHE_PURGE_KEY);
    }
}

/* The compress module compresses with `coding`: take the variant's fill
 * lock and write its head. 0, -1 (no fill: stored, being filled, no room). */
static int fill_begin(tg_request_t *r, cv_ctx_t *x, const char *coding)
{
    double now = ev_now(tg_worker->loop);
    tg_str_t k = variant_key(r->arena, x->key, coding);
    if (k.p == NULL)
        return -1;
    int rc = tg_cache_lookup(x->st, k, now, x->lock_s, &x->e);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        /* one made from an older response of the key is replaced */
        if (x->e.state != TG_CACHE_READY || made_from(&x->e, &x->id) ||
            tg_cache_lock(x->st, k, now, x->lock_s, &x->e) != 0)
            return -1;
    }
    x->locked = 1;
    tg_cache_meta_t m = x->id.meta;
    m.flags = 0;
    m.age = (double)x->id.gen;
    if (tg_cache_fill_head(x->st, &x->e, &m, x->head, -1, now) != 0) {
        x->locked = 0; /* removed */
        return -1;
    }
    return 0;
}

static tg_rc_t cv_response_body(tg_request_t *r, void *conf, tg_chain_t **io)
{
    (void)conf;
    cv_ctx_t *x = tg_module_ctx(r, &tg_cache_variant_module);
    if (x == NULL || x->done)
        return TG_OK;
    if (!x->locked) {
        const char *coding = NULL;
        int s = tg_compress_state(r, &coding);
        if (s == 0)
            return TG_OK; /* not decided yet */
        if (s < 0 || fill_begin(r, x, coding) != 0) {
            x->done = 1;
            return TG_OK;
        }
    }
    double now = ev_now(tg_worker->loop);
    struct iovec v[CV_IOV];
    int n = 0, last = 0;
    for (tg_chain_t *cl = *io; cl; cl = cl->next) {
        last |= (cl->buf->flags & TG_BUF_F_LAST) != 0;
        size_t l = tg_buf_len(cl->buf);
        if (l == 0)
            continue;
        if (n == CV_IOV) {
            if (tg_cache_fill_body(x->st, &x->e, v, n, now) != 0)
                goto failed;
            n = 0;
        }
        v[n++] = (struct iovec){cl->buf->pos, l};
    }
    if (n && tg_cache_fill_body(x->st, &x->e, v, n, now) != 0)
        goto failed;
    if (last) {
        tg_cache_fill_end(x->st, &x->e, 1);
        x->locked = 0;
        x->done = 1;
        tg_cache_count(x->st, TG_CACHE_C_VARIANT_STORED);
        tg_cache_set_flags(x->st, &x->id, TG_CACHE_F_VARIANTS, 0);
    }
    return TG_OK;
failed: /* too large or no room: the store dropped it */
    x->locked = 0;
    x->done = 1;
    return TG_OK;
}

tg_module_t tg_cache_variant_module = {
    .name = "cache_variant",
    .on_response_body = cv_response_body,
};
