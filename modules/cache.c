/* cache: the response cache (docs/cache.md). Responses from the upstream are
 * kept in a shared-memory zone (src/cache_store.c) that every worker reads,
 * following RFC 9111's rules for a shared cache, and answered from there.
 *
 * A content handler placed before the proxy. A request it may answer looks
 * its key up: a fresh entry is served (hit); an entry being filled by
 * another request, in any worker, is followed as its body comes in
 * (collapsed); a key locked for a fill that has not got its head yet is
 * waited for (polled, up to cache_lock_timeout); anything else takes the
 * key's fill lock and goes on to the proxy (miss). The proxied response
 * passes this module's response-header hook, which decides whether it may
 * be stored and writes its head into the entry, and its body filter, which
 * appends each round (so followers see it at once). The hooks run before
 * the other modules' response hooks (src/modules.c), so what is stored is
 * the upstream's response, identity-coded, without what the gateway adds
 * per request (security headers, CORS, compression), which every hit gets
 * anew; compression once per coding, kept beside the entry as a variant
 * (modules/cache_variant.c).
 *
 * Vary: the entry under the plain key is then a Vary record whose head is
 * the list of header names; the response itself is stored under the key
 * extended with the request's values of those headers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ev.h>
#include <llhttp.h>
#include "module.h"
#include "request.h"
#include "core.h"
#include "var.h"
#include "log.h"
#include "shm.h"
#include "worker.h"
#include "cache_store.h"
#include "cache_disk.h"
#include "cache_policy.h"
#include "request_bg.h"
#include "http_cond.h"
#include "cache_variant.h"

#define CA_POLL 0.002            /* s: a waiter or follower looks at the entry again */
#define CA_MAX_VALID 16          /* cache_valid lines per scope */
#define CA_BUFS 4                /* pool buffers a response is copied into per write */

enum { M_GET = 1, M_HEAD = 2 };

typedef struct ca_zone_s {
    tg_str_t name;
    tg_shm_zone_t *shm;
    tg_cache_store_t *store;
    int64_t max_entries, max_entry;
    const char *path; /* disk storage: the directory, NULL none */
    int64_t max_disk;
    tg_msec_t inactive;
    const char *file;
    int line;
    struct ca_zone_s *next;
} ca_zone_t;

typedef struct {
    int ncodes; /* 0: any of 200 301 302 (nginx's default set) */
    int codes[8];
    double ttl;
} ca_valid_t;

typedef struct {
    ca_zone_t *zones; /* main */
    ca_zone_t *zone;  /* NULL: off */
    int zone_set;
    tg_tpl_t *key;
    int methods; /* M_*; TG_CONF_UNSET */
    tg_tpl_t **bypass;
    int nbypass;
    ca_valid_t *valid;
    int nvalid;
    tg_msec_t lock_timeout;
    int status_header, store_cookie;
    int use_stale; /* U_*; TG_CONF_UNSET */
    ca_zone_t *purge; /* cache_purge ZONE: this location purges, NULL: not */
} ca_conf_t;

/* cache_use_stale: when a stale entry may answer whatever its own
 * stale-while-revalidate / stale-if-error say */
enum { U_ERROR = 1, U_TIMEOUT = 2, U_UPDATING = 4, U_5XX = 8 };

/* What a request did with the cache. */
enum { S_NONE = 0, S_BYPASS, S_MISS, S_EXPIRED, S_HIT, S_COLLAPSED, S_STALE, S_UPDATING,
       S_REVALIDATED };
static const char *const status_names[] = {"",         "BYPASS", "MISS",     "EXPIRED",    "HIT",
                                           "COLLAPSED", "STALE", "UPDATING", "REVALIDATED"};

typedef struct {
    tg_request_t *r;
    ca_conf_t *c;
    int status;        /* S_* */
    tg_str_t key;      /* the plain key (arena) */
    tg_str_t vkey;     /* the key the lock is on (the plain one or a variant's) */
    tg_str_t vary;     /* names of the Vary record the lookup went through ("" none) */
    tg_cache_entry_t e; /* the entry served, or the one being filled */
    unsigned locked : 1;  /* e is our fill lock (LOCKED, then FILLING) */
    unsigned filling : 1; /* the head went in: body rounds go in too */
    unsigned stored : 1;  /* the response is being stored (Cache-Status "stored") */
    unsigned serving : 1; /* the content handler answers from e */
    unsigned may_store : 1; /* a fetch for the cache: its response may be stored */
    unsigned refresh : 1;   /* a background request refreshing `old` */
    tg_cache_entry_t old;   /* the stale entry being refreshed (refresh), or waited for */
    double wait_until;
    ev_timer timer;
    tg_buf_t *buf[CA_BUFS]; /* serving: the round's copies */
    uint64_t off;      /* serving: next byte of the run (head + body) */
    tg_cache_file_t file; /* the entry's file (on disk): read, or written by the fill */
    tg_cache_entry_t ve; /* serving a compressed variant of e: its body (cache_variant.c) */
    unsigned variant : 1;
    unsigned pinned : 1; /* e (and ve when variant) pinned while served: kept if replaced */
    unsigned finishing : 1;
} ca_ctx_t;

extern tg_module_t tg_cache_module;

/* ---- config ---------------------------------------------------------------------- */

static void *ca_create_conf(tg_conf_t *cf)
{
    ca_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->methods = c->status_header = c->store_cookie = TG_CONF_UNSET;
    c->nvalid = c->nbypass = TG_CONF_UNSET;
    c->lock_timeout = TG_CONF_UNSET;
    c->use_stale = TG_CONF_UNSET;
    return c;
}

static const char *ca_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    ca_conf_t *p = parent, *c = child;
    if (!c->zone_set) {
        c->zone = p->zone;
        c->zone_set = p->zone_set;
    }
    TG_CONF_MERGE_PTR(c->key, p->key, NULL);
    TG_CONF_MERGE(c->methods, p->methods, M_GET | M_HEAD);
    if (c->nbypass == TG_CONF_UNSET) {
        c->bypass = p->bypass;
        c->nbypass = p->nbypass == TG_CONF_UNSET ? 0 : p->nbypass;
    }
    if (c->nvalid == TG_CONF_UNSET) {
        c->valid = p->valid;
        c->nvalid = p->nvalid == TG_CONF_UNSET ? 0 : p->nvalid;
    }
    TG_CONF_MERGE(c->lock_timeout, p->lock_timeout, 5000);
    TG_CONF_MERGE(c->status_header, p->status_header, 0);
    TG_CONF_MERGE(c->store_cookie, p->store_cookie, 0);
    TG_CONF_MERGE(c->use_stale, p->use_stale, 0);
    return NULL;
}

static const char *set_zone(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    ca_zone_t *z = tg_arena_alloc(cf->arena, sizeof(*z));
    if (z == NULL)
        return "out of memory";
    z->name = tg_conf_arg(cf, 1);
    int64_t size = -1;
    z->max_entry = -1;
    z->inactive = 600000;
    for (int i = 2; i <= cf->nargs; i++) {
        tg_str_t v;
        if (tg_conf_arg_kv(cf, i, "path", &v)) {
            if (v.len == 0)
                return "empty path= in \"cache_zone\"";
            z->path = tg_conf_path(cf, v);
        } else if (tg_conf_arg_kv(cf, i, "max_disk", &v)) {
            if (tg_parse_size(v, &z->max_disk) != 0 || z->max_disk < 64 * 1024)
                return tg_conf_errf(cf, "invalid size \"%.*s\" in \"cache_zone\" max_disk, "
                                        "expected 64k or more", TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "inactive", &v)) {
            if (tg_parse_msec(v, &z->inactive) != 0 || z->inactive < 1000)
                return tg_conf_errf(cf, "invalid time \"%.*s\" in \"cache_zone\" inactive, "
                                        "expected 1s or more", TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "size", &v)) {
            if (tg_parse_size(v, &size) != 0 || size < 256 * 1024)
                return tg_conf_errf(cf, "invalid size \"%.*s\" in \"cache_zone\", expected 256k "
                                        "or more", TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "max_entries", &v)) {
            if (tg_parse_int(v, &z->max_entries) != 0 || z->max_entries < 1 ||
                z->max_entries > UINT32_MAX - 1)
                return tg_conf_errf(cf, "invalid number \"%.*s\" in \"cache_zone\" max_entries",
                                    TG_STR_FMT(v));
        } else if (tg_conf_arg_kv(cf, i, "max_entry_size", &v)) {
            if (tg_parse_size(v, &z->max_entry) != 0 || z->max_entry < 1024)
                return tg_conf_errf(cf, "invalid size \"%.*s\" in \"cache_zone\" "
                                        "max_entry_size, expected 1k or more", TG_STR_FMT(v));
        } else {
            return tg_conf_errf(cf, "unknown parameter \"%s\" in \"cache_zone\", expected size=, "
                                    "max_entries=, max_entry_size=, path=, max_disk= or "
                                    "inactive=", cf->args[i].text.p);
        }
    }
    if (size < 0)
        return "\"cache_zone\" needs size=";
    if ((z->path == NULL) != (z->max_disk == 0))
        return "\"cache_zone\" path= and max_disk= go together";
    if (z->path && strlen(z->path) > TG_CACHE_DIR_MAX - 32)
        return "\"cache_zone\" path= is too long";
    if (z->max_entry < 0)
        z->max_entry = size / 4 < 1024 * 1024 ? size / 4 : 1024 * 1024;
    if (z->max_entry > size / 2)
        return tg_conf_errf(cf, "\"cache_zone\" max_entry_size is more than half of size=");
    for (ca_zone_t *o = c->zones; o; o = o->next)
        if (tg_str_eq(o->name, z->name))
            return tg_conf_errf(cf, "duplicate cache_zone \"%.*s\"", TG_STR_FMT(z->name));
    const char *err = tg_shm_zone_add(cf, z->name, (size_t)size, TG_CACHE_ZONE_TAG, &z->shm);
    if (err)
        return err;
    z->file = cf->file;
    z->line = cf->line;
    z->next = c->zones;
    c->zones = z;
    return NULL;
}

static ca_zone_t *find_zone(tg_conf_t *cf, tg_str_t name)
{
    ca_conf_t *m = cf->config->mconf[tg_cache_module.index];
    for (ca_zone_t *z = m->zones; z; z = z->next)
        if (tg_str_eq(z->name, name))
            return z;
    return NULL;
}

static const char *set_cache(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->zone_set)
        return "\"cache\" directive is duplicate";
    tg_str_t v = tg_conf_arg(cf, 1);
    c->zone_set = 1;
    if (tg_str_eq_lit(v, "off"))
        return NULL;
    if ((c->zone = find_zone(cf, v)) == NULL)
        return tg_conf_errf(cf, "unknown cache_zone \"%.*s\" in \"cache\" (declare it before)",
                            TG_STR_FMT(v));
    return NULL;
}

static const char *set_key(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->key)
        return "\"cache_key\" directive is duplicate";
    const char *err = NULL;
    if ((c->key = tg_tpl_compile(cf, tg_conf_arg(cf, 1), &err)) == NULL)
        return err ? err : "out of memory";
    return NULL;
}

static const char *set_methods(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->methods != TG_CONF_UNSET)
        return "\"cache_methods\" directive is duplicate";
    c->methods = 0;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        if (tg_str_eq_lit(v, "GET"))
            c->methods |= M_GET;
        else if (tg_str_eq_lit(v, "HEAD"))
            c->methods |= M_HEAD;
        else
            return tg_conf_errf(cf, "invalid method \"%.*s\" in \"cache_methods\", expected GET "
                                    "or HEAD", TG_STR_FMT(v));
    }
    return NULL;
}

static const char *set_bypass(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->nbypass != TG_CONF_UNSET)
        return "\"cache_bypass\" directive is duplicate";
    if ((c->bypass = tg_arena_alloc(cf->arena, (size_t)cf->nargs * sizeof(*c->bypass))) == NULL)
        return "out of memory";
    for (int i = 1; i <= cf->nargs; i++) {
        const char *err = NULL;
        if ((c->bypass[i - 1] = tg_tpl_compile(cf, tg_conf_arg(cf, i), &err)) == NULL)
            return err ? err : "out of memory";
    }
    c->nbypass = cf->nargs;
    return NULL;
}

static const char *set_valid(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->nvalid == TG_CONF_UNSET) {
        c->nvalid = 0;
        if ((c->valid = tg_arena_alloc(cf->arena, CA_MAX_VALID * sizeof(*c->valid))) == NULL)
            return "out of memory";
    }
    if (c->nvalid == CA_MAX_VALID || cf->nargs > 9)
        return "too many \"cache_valid\" lines or codes";
    ca_valid_t *v = &c->valid[c->nvalid];
    tg_msec_t ms;
    if (tg_parse_msec(tg_conf_arg(cf, cf->nargs), &ms) != 0)
        return tg_conf_errf(cf, "invalid time \"%s\" in \"cache_valid\"",
                            cf->args[cf->nargs].text.p);
    v->ttl = (double)ms / 1000.0;
    v->ncodes = 0;
    for (int i = 1; i < cf->nargs; i++) {
        int64_t code;
        tg_str_t a = tg_conf_arg(cf, i);
        if (tg_str_eq_lit(a, "any")) {
            v->codes[v->ncodes++] = 0;
            continue;
        }
        if (tg_parse_int(a, &code) != 0 || code < 200 || code > 599)
            return tg_conf_errf(cf, "invalid status \"%.*s\" in \"cache_valid\", expected 200 to "
                                    "599 or any", TG_STR_FMT(a));
        v->codes[v->ncodes++] = (int)code;
    }
    c->nvalid++;
    return NULL;
}

static const char *set_purge(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->purge)
        return "\"cache_purge\" directive is duplicate";
    if ((c->purge = find_zone(cf, tg_conf_arg(cf, 1))) == NULL)
        return tg_conf_errf(cf, "unknown cache_zone \"%s\" in \"cache_purge\"",
                            cf->args[1].text.p);
    return NULL;
}

static const char *set_use_stale(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    ca_conf_t *c = conf;
    if (c->use_stale != TG_CONF_UNSET)
        return "\"cache_use_stale\" directive is duplicate";
    c->use_stale = 0;
    for (int i = 1; i <= cf->nargs; i++) {
        tg_str_t v = tg_conf_arg(cf, i);
        if (tg_str_eq_lit(v, "off") && cf->nargs == 1)
            break;
        if (tg_str_eq_lit(v, "error"))
            c->use_stale |= U_ERROR;
        else if (tg_str_eq_lit(v, "timeout"))
            c->use_stale |= U_TIMEOUT;
        else if (tg_str_eq_lit(v, "updating"))
            c->use_stale |= U_UPDATING;
        else if (tg_str_eq_lit(v, "http_5xx"))
            c->use_stale |= U_5XX;
        else
            return tg_conf_errf(cf, "invalid value \"%.*s\" in \"cache_use_stale\", expected "
                                    "error, timeout, updating, http_5xx or off", TG_STR_FMT(v));
    }
    return NULL;
}

static const char *ca_init_conf(tg_conf_t *cf, void *conf)
{
    ca_conf_t *m = conf;
    for (ca_zone_t *z = m->zones; z; z = z->next) {
        uint32_t maxe = z->max_entries > 0 ? (uint32_t)z->max_entries : 0;
        if ((z->store = tg_cache_store_init(z->shm->data, z->shm->size, maxe,
                                            (uint64_t)z->max_entry)) == NULL) {
            cf->file = z->file;
            cf->line = z->line;
            tg_conf_error(cf, "cannot set up cache_zone \"%.*s\"", TG_STR_FMT(z->name));
            return TG_CONF_REPORTED;
        }
        char err[TG_CACHE_DIR_MAX + 128];
        const char *e = z->path ? tg_cache_disk_prepare(z->path, &cf->config->main->user, err,
                                                        sizeof(err)) : NULL;
        int rc = e ? 0 : tg_cache_store_options(z->store, (double)z->inactive / 1000.0,
                                                z->path, (uint64_t)z->max_disk);
        if (e || rc != 0) {
            cf->file = z->file;
            cf->line = z->line;
            tg_conf_error(cf, "%s", e ? e : rc == -2 ? "cache_zone path= cannot change while "
                                                        "the zone has entries on disk (change "
                                                        "its size= too: a new zone)"
                                                     : "cache_zone path= is too long");
            return TG_CONF_REPORTED;
        }
        if (z->shm->reused)
            tg_log(TG_LOG_INFO, "cache zone \"%.*s\": entries kept from the running config",
                   TG_STR_FMT(z->name));
    }
    return NULL;
}

/* In the master before workers start: a new zone with disk storage reads
 * its directory back (entries survive a restart). */
static void ca_own_files(tg_config_t *c)
{
    ca_conf_t *m = c->mconf[tg_cache_module.index];
    for (ca_zone_t *z = m->zones; z; z = z->next)
        if (tg_cache_store_claim_index(z->store))
            tg_cache_disk_index(z->store, ev_time());
}

static int ca_is_active(void *conf)
{
    return ((ca_conf_t *)conf)->zone != NULL || ((ca_conf_t *)conf)->purge != NULL;
}

/* ---- keys ------------------------------------------------------------------------ */

static int eval_key(tg_request_t *r, ca_conf_t *c, tg_str_t *out)
{
    if (c->key)
        return tg_tpl_eval(r, c->key, out);
    char *k = tg_arena_printf(r->arena, "%.*s%.*s%.*s", TG_STR_FMT(r->scheme), TG_STR_FMT(r->host),
                              TG_STR_FMT(r->uri));
    if (k == NULL)
        return -1;
    *out = tg_str_c(k);
    return 0;
}

/* ---- serving from an entry ------------------------------------------------------- */

static void serve(tg_request_t *r);

static void ctx_release(void *p)
{
    ca_ctx_t *x = p;
    ev_timer_stop(tg_worker->loop, &x->timer);
    tg_cache_disk_close(&x->file);
    if (x->pinned) {
        tg_cache_unpin(x->c->zone->store, &x->e);
        if (x->variant)
            tg_cache_unpin(x->c->zone->store, &x->ve);
        x->pinned = 0;
    }
    for (int i = 0; i < CA_BUFS; i++) {
        if (x->buf[i])
            tg_buf_put(x->buf[i]);
        x->buf[i] = NULL;
    }
}

static void on_drained(tg_request_t *r)
{
    serve(r);
}

static const tg_handler_events_t serve_events = {.on_drained = on_drained};

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    ca_ctx_t *x = w->data;
    if (x->serving)
        serve(x->r);
    else
        tg_request_resume(x->r);
}

static void poll_later(ca_ctx_t *x)
{
    ev_timer_set(&x->timer, CA_POLL, 0.);
    ev_timer_start(tg_worker->loop, &x->timer);
}

/* Start answering from x->e (READY, or FILLING with its head in): the head,
 * then serve() streams the body. TG_AGAIN (the handler owns the request). */
static tg_rc_t serve_begin(tg_request_t *r, ca_ctx_t *x)
{
    tg_cache_store_t *st = x->c->zone->store;
    double now = ev_now(tg_worker->loop);
    char *head = tg_arena_alloc(r->arena, x->e.hlen + 1);
    /* pinned, a newer response of the key or a purge does not cut this answer */
    if (head == NULL || tg_cache_pin(st, &x->e, now) != 0) {
        tg_request_error(r, 500);
        return TG_AGAIN;
    }
    x->pinned = 1;
    if (tg_cache_read(st, &x->e, 0, head, x->e.hlen) != (long)x->e.hlen) {
        tg_request_error(r, 500);
        return TG_AGAIN;
    }
    r->resp_headers.n = 0;
    if (tg_cache_head_parse(r, head, x->e.hlen) != 0) {
        tg_request_error(r, 500);
        return TG_AGAIN;
    }
    r->status = x->e.meta.status;
    r->resp_content_length = x->e.state == TG_CACHE_READY ? (int64_t)x->e.blen : x->e.clen;
    if (r->status == 200 && x->e.state == TG_CACHE_READY) {
        /* the client's own validators against the stored response (RFC 9111
         * 4.3.2): a 304 from the cache; no Last-Modified never matches a date */
        tg_header_t *et = tg_headers_find(&r->resp_headers, TG_STR("ETag"));
        tg_header_t *lm = tg_headers_find(&r->resp_headers, TG_STR("Last-Modified"));
        time_t mt = lm ? tg_http_date_parse(lm->value) : -1;
        if (tg_http_preconditions(&r->headers, et ? et->value : TG_NULL_STR,
                                  mt >= 0 ? mt : (time_t)INT64_MAX) == 304) {
            r->status = 304;
            r->resp_content_length = -1;
        }
    }
    /* a compressed variant of the entry answers, else this answer may store one */
    int v = r->status == 304 ? 0 : tg_cache_variant_hit(r, st, x->vkey,
                                                        (tg_str_t){head, x->e.hlen}, &x->e,
                                                        (double)x->c->lock_timeout / 1000.0,
                                                        &x->ve);
    if (v < 0 || (v > 0 && tg_cache_pin(st, &x->ve, now) != 0)) {
        tg_request_error(r, 500);
        return TG_AGAIN;
    }
    x->variant = v > 0;
    x->serving = 1;
    x->off = x->variant ? x->ve.hlen : x->e.hlen;
    if (tg_request_send_header(r) != 0) {
        tg_request_finalize(r, 1);
        return TG_AGAIN;
    }
    r->handler = &serve_events;
    r->handler_ctx = x;
    serve(r);
    return TG_AGAIN;
}

/* Copy body bytes out of the entry into up to CA_BUFS pool buffers per
 * round (one writev), as far as they are committed; wait for the fill (a
 * poll) or for the client (on_drained: the buffers are free again). */
static void serve(tg_request_t *r)
{
    ca_ctx_t *x = r->handler_ctx;
    tg_cache_store_t *st = x->c->zone->store;
    tg_cache_entry_t *e = x->variant ? &x->ve : &x->e;
    if (x->finishing) {
        tg_request_finalize(r, 0);
        return;
    }
    for (int rounds = 0; rounds < 16; rounds++) {
        tg_spans_t s = {0};
        for (int i = 0; i < CA_BUFS && !r->resp_no_body; i++) {
            if (x->buf[i] == NULL && (x->buf[i] = tg_buf_get()) == NULL)
                break;
            size_t room = (size_t)(x->buf[i]->end - x->buf[i]->start);
            /* a variant is in memory (it is filled with an unknown length) */
            long n = tg_cache_disk_read(&x->file, st, e, x->off, x->buf[i]->start, room);
            if (n < 0) { /* evicted or the fill failed: the answer cannot be completed */
                tg_request_finalize(r, 1);
                return;
            }
            tg_spans_add(&s, x->buf[i]->start, (size_t)n);
            x->off += (uint64_t)n;
            if ((size_t)n < room)
                break; /* no more committed now */
        }
        int done = r->resp_no_body ||
                   (e->state == TG_CACHE_READY && x->off == e->hlen + e->blen);
        if (s.len == 0 && !done) {
            if (x->buf[0] == NULL)
                tg_request_finalize(r, 1); /* no buffer */
            else
                poll_later(x);
            return;
        }
        x->finishing = done;
        if (tg_request_send_body(r, s.len ? &s : NULL, done) != 0) {
            tg_request_finalize(r, 1);
            return;
        }
        int rc = tg_request_flush(r);
        if (rc < 0) {
            tg_request_finalize(r, 1);
            return;
        }
        if (rc == 0)
            return; /* on_drained */
        if (done) {
            tg_request_finalize(r, 0);
            return;
        }
    }
    /* a long body: let the other connections have the loop */
    ev_timer_set(&x->timer, 0., 0.);
    ev_timer_start(tg_worker->loop, &x->timer);
}

/* ---- stale entries: refresh in the background, serve stale, or wait ------------- */

/* The value of header `name` in a stored head ("Name: value\n" lines). */
static tg_str_t head_value(const char *h, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = h, *end = h + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > nl + 2 && p[nl] == ':' && tg_str_caseeq_n(p, name, nl))
            return (tg_str_t){p + nl + 2, (size_t)(eol - p - nl - 2)};
        p = eol + 1;
    }
    return TG_NULL_STR;
}

/* A background GET for the stale entry x->e: conditional when the entry
 * has a validator, with the client's own conditions and ranges removed.
 * Its response passes this module's hooks as a refresh: a 304 makes the
 * entry fresh again, another storable answer replaces it, a failure marks
 * it (stale-if-error). 0, -1 (not started). */
static int refresh_start(tg_request_t *r, ca_ctx_t *x)
{
    char *head = tg_arena_alloc(r->arena, x->e.hlen + 1);
    if (head == NULL ||
        tg_cache_read(x->c->zone->store, &x->e, 0, head, x->e.hlen) != (long)x->e.hlen)
        return -1;
    tg_request_t *b = tg_request_bg_create(r);
    if (b == NULL)
        return -1;
    static const char *const drop[] = {"If-None-Match", "If-Modified-Since", "If-Match",
                                       "If-Unmodified-Since", "If-Range", "Range", NULL};
    for (int i = 0; drop[i]; i++)
        tg_headers_remove(&b->headers, tg_str_c(drop[i]));
    tg_str_t etag = head_value(head, x->e.hlen, "ETag");
    tg_str_t lm = head_value(head, x->e.hlen, "Last-Modified");
    ca_ctx_t *y = tg_arena_alloc(b->arena, sizeof(*y));
    if (y == NULL || tg_arena_on_reset(b->arena, ctx_release, y) != 0 ||
        (etag.p && tg_headers_add(b->arena, &b->headers, TG_STR("If-None-Match"),
                                  tg_arena_str(b->arena, etag)) != 0) ||
        (lm.p && tg_headers_add(b->arena, &b->headers, TG_STR("If-Modified-Since"),
                                tg_arena_str(b->arena, lm)) != 0)) {
        tg_request_bg_drop(b);
        return -1;
    }
    y->r = b;
    y->c = x->c;
    ev_timer_init(&y->timer, timer_cb, 0., 0.);
    y->timer.data = y;
    y->refresh = y->may_store = 1;
    y->old = x->e;
    y->key = tg_arena_str(b->arena, x->key);
    y->vkey = tg_arena_str(b->arena, x->vkey);
    y->vary = x->vary.p ? tg_arena_str(b->arena, x->vary) : TG_NULL_STR;
    y->status = S_EXPIRED;
    if (y->key.p == NULL || y->vkey.p == NULL || (x->vary.p && y->vary.p == NULL)) {
        tg_request_bg_drop(b);
        return -1;
    }
    tg_module_ctx(b, &tg_cache_module) = y;
    tg_request_bg_run(b);
    return 0;
}

/* May a stale entry answer, given what its last refresh did? RFC 9111
 * 4.2.4: never with must-revalidate or no-cache. */
static int stale_ok(ca_ctx_t *x, double now)
{
    const tg_cache_meta_t *m = &x->e.meta;
    unsigned f = m->flags, u = (unsigned)x->c->use_stale;
    if (f & (TG_CACHE_F_MUST_REVALIDATE | TG_CACHE_F_NO_CACHE))
        return 0;
    if (f & TG_CACHE_F_UPDATING)
        return now < m->swr_until || (u & U_UPDATING);
    if (f & TG_CACHE_F_ERRORS)
        return now < m->sie_until || ((f & TG_CACHE_F_ERR_ERROR) && (u & U_ERROR)) ||
               ((f & TG_CACHE_F_ERR_TIMEOUT) && (u & U_TIMEOUT)) ||
               ((f & TG_CACHE_F_ERR_5XX) && (u & U_5XX));
    return 0;
}

/* A READY entry that is not fresh: start its refresh unless one runs, then
 * answer stale where allowed, else wait for the refresh (a poll, up to
 * cache_lock_timeout), else fetch for ourselves. */
static tg_rc_t ca_content(tg_request_t *r, void *conf);

static tg_rc_t stale(tg_request_t *r, ca_ctx_t *x, double now)
{
    tg_cache_store_t *st = x->c->zone->store;
    double lock_s = (double)x->c->lock_timeout / 1000.0;
    if (tg_headers_find(&r->headers, TG_STR("Authorization")) &&
        !(x->e.meta.flags & TG_CACHE_F_AUTH_OK)) {
        x->status = S_MISS;
        tg_cache_count(st, TG_CACHE_C_MISS);
        return TG_OK;
    }
    if (r->method == HTTP_GET && x->old.ref == 0 &&
        tg_cache_claim_update(st, &x->e, now + lock_s) == 1) {
        x->e.meta.flags = (x->e.meta.flags & ~TG_CACHE_F_ERRORS) | TG_CACHE_F_UPDATING;
        if (refresh_start(r, x) != 0) {
            tg_cache_set_flags(st, &x->e, 0, TG_CACHE_F_UPDATING);
            x->status = S_EXPIRED;
            x->may_store = 1;
            tg_cache_count(st, TG_CACHE_C_MISS);
            return TG_OK;
        }
        /* the refresh may have ended already (a refused connection) */
        long n = tg_cache_read(st, &x->e, 0, NULL, 0);
        if (n < 0)
            return ca_content(r, x->c);
    }
    if (stale_ok(x, now)) {
        x->status = (x->e.meta.flags & TG_CACHE_F_UPDATING) ? S_UPDATING : S_STALE;
        tg_cache_count(st, TG_CACHE_C_STALE);
        return serve_begin(r, x);
    }
    if ((x->e.meta.flags & TG_CACHE_F_UPDATING) && now < x->wait_until) {
        x->old = x->e;
        poll_later(x);
        return TG_AGAIN;
    }
    x->status = S_EXPIRED;
    x->may_store = r->method == HTTP_GET;
    tg_cache_count(st, TG_CACHE_C_MISS);
    return TG_OK;
}

/* ---- the content hook ------------------------------------------------------------ */

static int is_bypassed(tg_request_t *r, ca_conf_t *c)
{
    for (int i = 0; i < c->nbypass; i++) {
        tg_str_t v;
        if (tg_tpl_eval(r, c->bypass[i], &v) == 0 && v.len && !(v.len == 1 && v.p[0] == '0'))
            return 1;
    }
    return 0;
}

/* May this stored response answer this request without going upstream? */
static int usable(tg_request_t *r, const tg_cache_entry_t *e, double now)
{
    if (e->meta.flags & TG_CACHE_F_NO_CACHE)
        return 0;
    if (tg_headers_find(&r->headers, TG_STR("Authorization")) &&
        !(e->meta.flags & TG_CACHE_F_AUTH_OK))
        return 0;
    return now < e->meta.fresh_until;
}

static ca_ctx_t *ctx_get(tg_request_t *r, ca_conf_t *c)
{
    ca_ctx_t *x = tg_module_ctx(r, &tg_cache_module);
    if (x)
        return x;
    if ((x = tg_arena_alloc(r->arena, sizeof(*x))) == NULL ||
        tg_arena_on_reset(r->arena, ctx_release, x) != 0)
        return NULL;
    x->r = r;
    x->c = c;
    ev_timer_init(&x->timer, timer_cb, 0., 0.);
    x->timer.data = x;
    tg_module_ctx(r, &tg_cache_module) = x;
    return x;
}

static int unhex(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0'
           : (ch | 32) >= 'a' && (ch | 32) <= 'f' ? (ch | 32) - 'a' + 10 : -1;
}

/* A query argument, percent-decoded (and '+' as a space) into the arena. */
static int query_arg(tg_request_t *r, const char *name, tg_str_t *out)
{
    tg_str_t v;
    if (tg_var_arg(r, tg_str_c(name), &v) != 0)
        return -1;
    char *b = tg_arena_alloc(r->arena, v.len + 1), *w = b;
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] == '%' && i + 2 < v.len && unhex(v.p[i + 1]) >= 0 &&
            unhex(v.p[i + 2]) >= 0) {
            *w++ = (char)(unhex(v.p[i + 1]) * 16 + unhex(v.p[i + 2]));
            i += 2;
        } else {
            *w++ = v.p[i] == '+' ? ' ' : v.p[i];
        }
    }
    *out = (tg_str_t){b, (size_t)(w - b)};
    return 0;
}

/* cache_purge: PURGE, POST or DELETE with ?key=K (the entry and its Vary
 * variants), ?prefix=P or ?tag=T; answers {"purged": N}. */
static tg_rc_t purge(tg_request_t *r, ca_conf_t *c)
{
    static const char *const how[] = {"key", "prefix", "tag"};
    if (r->method != HTTP_PURGE && r->method != HTTP_POST && r->method != HTTP_DELETE)
        return tg_request_respond(r, 405, "text/plain", TG_STR("405 Method Not Allowed\n"))
                   ? TG_ERROR : TG_DONE;
    for (int i = 0; i < 3; i++) {
        tg_str_t v;
        if (query_arg(r, how[i], &v) != 0 || v.len == 0)
            continue;
        long n = tg_cache_purge(c->purge->store, v, i);
        char *body = tg_arena_printf(r->arena, "{\"purged\": %ld}\n", n);
        if (body == NULL)
            return TG_ERROR;
        tg_log(TG_LOG_INFO, "cache zone \"%.*s\": purged %ld by %s", TG_STR_FMT(c->purge->name),
               n, how[i]);
        return tg_request_respond(r, 200, "application/json", tg_str_c(body)) ? TG_ERROR
                                                                               : TG_DONE;
    }
    return tg_request_respond(r, 400, "text/plain", TG_STR("400 key=, prefix= or tag= expected\n"))
               ? TG_ERROR : TG_DONE;
}

static tg_rc_t ca_content(tg_request_t *r, void *conf)
{
    ca_conf_t *c = conf;
    if (c->purge)
        return purge(r, c);
    if (c->zone == NULL)
        return TG_OK;
    tg_cache_store_t *st = c->zone->store;
    double now = ev_now(tg_worker->loop);
    ca_ctx_t *x = tg_module_ctx(r, &tg_cache_module);
    if (x && x->refresh)
        return TG_OK; /* a background refresh goes upstream */
    if (x == NULL) {
        int m = r->method == HTTP_GET ? M_GET : r->method == HTTP_HEAD ? M_HEAD : 0;
        if (!(c->methods & m))
            return TG_OK;
        if ((x = ctx_get(r, c)) == NULL)
            return TG_ERROR;
        /* a request with a body is never answered from (nor stored as) a GET */
        if (r->has_body || r->content_length > 0 || r->chunked || is_bypassed(r, c)) {
            x->status = S_BYPASS;
            tg_cache_count(st, TG_CACHE_C_BYPASS);
            return TG_OK;
        }
        if (eval_key(r, c, &x->key) != 0)
            return TG_ERROR;
        x->vkey = x->key;
        x->wait_until = now + (double)c->lock_timeout / 1000.0;
    }
    /* HEAD never fills (its response has no body): it reads what GET stored */
    double lock_s = r->method == HTTP_GET ? (double)c->lock_timeout / 1000.0 : 0;
    for (int hops = 0; hops < 2; hops++) {
        int rc = tg_cache_lookup(st, x->vkey, now, lock_s, &x->e);
        if (rc == 0) {
            x->locked = x->may_store = 1;
            x->status = x->status ? x->status : S_MISS;
            tg_cache_count(st, TG_CACHE_C_MISS);
            return TG_OK;
        }
        if (rc < 0) {
            x->status = S_MISS;
            x->may_store = r->method == HTTP_GET;
            tg_cache_count(st, TG_CACHE_C_MISS);
            return TG_OK;
        }
        if (x->e.state == TG_CACHE_READY && (x->e.meta.flags & TG_CACHE_F_VARY) && hops == 0) {
            char *names = tg_arena_alloc(r->arena, x->e.hlen + 1);
            if (names == NULL ||
                tg_cache_read(st, &x->e, 0, names, x->e.hlen) != (long)x->e.hlen)
                return TG_ERROR;
            x->vary = (tg_str_t){names, x->e.hlen};
            if (tg_cache_variant_key(r, x->key, x->vary, &x->vkey) != 0)
                return TG_ERROR;
            continue;
        }
        break;
    }
    if (x->e.state == TG_CACHE_READY && !(x->e.meta.flags & TG_CACHE_F_VARY)) {
        /* after waiting for a refresh: the same entry made fresh by a 304,
         * or the new one; either is the origin's answer for this request,
         * even when it says no-cache */
        if (usable(r, &x->e, now) || (x->old.ref && x->e.meta.stored > x->old.meta.stored)) {
            x->status = x->old.ref == 0 ? S_HIT
                        : x->old.gen == x->e.gen ? S_REVALIDATED : S_EXPIRED;
            tg_cache_count(st, TG_CACHE_C_HIT);
            return serve_begin(r, x);
        }
        return stale(r, x, now);
    }
    if (x->e.state == TG_CACHE_FILLING && r->method == HTTP_GET &&
        !tg_headers_find(&r->headers, TG_STR("Authorization"))) {
        x->status = x->old.ref ? S_EXPIRED : S_COLLAPSED;
        tg_cache_count(st, TG_CACHE_C_COLLAPSED);
        return serve_begin(r, x);
    }
    if (x->e.state == TG_CACHE_LOCKED && now < x->wait_until) {
        poll_later(x);
        return TG_AGAIN;
    }
    /* waited long enough, or a Vary record we went through twice: go on
     * without the cache */
    x->status = S_MISS;
    x->may_store = r->method == HTTP_GET;
    tg_cache_count(st, TG_CACHE_C_MISS);
    return TG_OK;
}

/* ---- storing the upstream's response --------------------------------------------- */

static double valid_ttl(ca_conf_t *c, int st)
{
    for (int i = 0; i < c->nvalid; i++) {
        ca_valid_t *v = &c->valid[i];
        if (v->ncodes == 0 && (st == 200 || st == 301 || st == 302))
            return v->ttl;
        for (int j = 0; j < v->ncodes; j++)
            if (v->codes[j] == st || v->codes[j] == 0)
                return v->ttl;
    }
    return -1;
}

/* Give up the fill lock (nothing stored: waiters fetch for themselves). */
static void unlock_fill(ca_ctx_t *x)
{
    if (x->locked)
        tg_cache_fill_end(x->c->zone->store, &x->e, 0);
    x->locked = x->filling = 0;
}

/* Write a Vary record for the plain key: its head is the names list. */
static int write_vary_record(ca_ctx_t *x, tg_str_t names, double now)
{
    tg_cache_store_t *st = x->c->zone->store;
    tg_cache_entry_t e;
    if (tg_cache_lock(st, x->key, now, 1, &e) != 0)
        return -1;
    tg_cache_meta_t m = {.status = 0, .flags = TG_CACHE_F_VARY, .stored = now,
                         .fresh_until = INFINITY, .swr_until = INFINITY, .sie_until = INFINITY};
    if (tg_cache_fill_head(st, &e, &m, names, 0, now) != 0)
        return -1;
    tg_cache_fill_end(st, &e, 1);
    return 0;
}

static void refresh_end(tg_request_t *r, ca_ctx_t *x);

/* The upstream's response head, for a request that holds (or may take) a
 * fill lock: store it when RFC 9111 allows. */
static void store_head(tg_request_t *r, ca_ctx_t *x)
{
    tg_cache_store_t *st = x->c->zone->store;
    double now = ev_now(tg_worker->loop);
    tg_cache_meta_t m;
    tg_str_t names = TG_NULL_STR, head, target = x->key;
    int vary = tg_cache_response_vary(r, &names);
    /* a refresh that failed leaves the stale entry for stale-if-error */
    if (r->resp_local || r->upstream_status != r->status || vary < 0 ||
        (x->refresh && r->status >= 500) ||
        !tg_cache_storable(r, now, valid_ttl(x->c, r->status), x->c->store_cookie, &m) ||
        tg_cache_head_serialize(r, &head) != 0) {
        unlock_fill(x);
        return;
    }
    if (vary > 0) {
        if (!tg_str_eq(names, x->vary) && write_vary_record(x, names, now) != 0) {
            unlock_fill(x);
            return;
        }
        if (tg_cache_variant_key(r, x->key, names, &target) != 0) {
            unlock_fill(x);
            return;
        }
    }
    if (!x->locked || !tg_str_eq(target, x->vkey)) {
        /* no lock (a refresh, a waiter that gave up), or one on another
         * key than the response belongs to */
        unlock_fill(x);
        x->vkey = target;
        if (tg_cache_lock(st, target, now, (double)x->c->lock_timeout / 1000.0, &x->e) != 0)
            return;
        x->locked = 1;
    }
    if (tg_cache_disk_fill_head(&x->file, st, &x->e, &m, x->vkey, head, r->resp_content_length,
                                now) != 0) {
        x->locked = 0;
        return;
    }
    x->filling = 1;
    x->stored = 1;
    tg_cache_variant_drop(r, st, target);
    if (tg_cache_variant_offer(r, st, x->vkey, head, &x->e,
                               (double)x->c->lock_timeout / 1000.0) != 0)
        tg_log(TG_LOG_WARN, "cache: no compressed variant for this fill (out of memory)");
}

/* A refresh got 304 (RFC 9111 4.3.4): the stale entry takes the 304's
 * header fields and is fresh again, for the lifetime its new head gives
 * (src/cache_policy.c); a new entry of the same body and generation
 * replaces it (its file, on disk, gets a head file: src/cache_disk.c). */
static void revalidated(tg_request_t *r, ca_ctx_t *x)
{
    tg_cache_store_t *st = x->c->zone->store;
    double now = ev_now(tg_worker->loop);
    tg_cache_meta_t m;
    tg_str_t head;
    char *old = tg_arena_alloc(r->arena, x->old.hlen + 1);
    if (old == NULL || tg_cache_read(st, &x->old, 0, old, x->old.hlen) != (long)x->old.hlen ||
        tg_cache_revalidate(r, (tg_str_t){old, x->old.hlen}, &x->old.meta, now, &head, &m) != 0) {
        refresh_end(r, x);
        return;
    }
    /* no room for the copy: the old head, fresh again */
    if (tg_cache_disk_rehead(st, &x->old, x->vkey, &m, head, now) == 0 ||
        tg_cache_update_meta(st, &x->old, &m) == 0)
        tg_cache_count(st, TG_CACHE_C_REVALIDATED);
    x->status = S_REVALIDATED;
}

/* The end of a refresh that neither revalidated nor replaced the entry:
 * clear UPDATING, and say why it failed (stale-if-error, cache_use_stale). */
static void refresh_end(tg_request_t *r, ca_ctx_t *x)
{
    uint32_t err = 0;
    if (r->upstream_status >= 500)
        err = TG_CACHE_F_ERR_5XX;
    else if (r->upstream_status == 0 || r->resp_local)
        err = r->status == 504 ? TG_CACHE_F_ERR_TIMEOUT : TG_CACHE_F_ERR_ERROR;
    tg_cache_set_flags(x->c->zone->store, &x->old, err, TG_CACHE_F_UPDATING);
}

static tg_rc_t ca_response_headers(tg_request_t *r, void *conf)
{
    ca_conf_t *c = conf;
    ca_ctx_t *x = tg_module_ctx(r, &tg_cache_module);
    if (x == NULL)
        return TG_OK;
    if (x->refresh && r->status == 304 && r->upstream_status == 304)
        revalidated(r, x);
    else if (x->may_store && !x->serving)
        store_head(r, x);
    if (x->serving) {
        double now = ev_now(tg_worker->loop);
        double age = x->e.meta.age + (now - x->e.meta.stored);
        char v[32];
        int n = snprintf(v, sizeof(v), "%lld", (long long)(age > 0 ? age : 0));
        if (tg_headers_set(r->arena, &r->resp_headers, TG_STR("Age"),
                           tg_arena_str(r->arena, (tg_str_t){v, (size_t)n})) != 0)
            return TG_ERROR;
    }
    if (!c->status_header)
        return TG_OK;
    char *cs;
    double ttl = x->e.meta.fresh_until - ev_now(tg_worker->loop);
    switch (x->status) {
    case S_HIT:
        cs = tg_arena_printf(r->arena, "tollgate; hit; ttl=%lld", (long long)floor(ttl));
        break;
    case S_COLLAPSED:
        cs = tg_arena_printf(r->arena, "tollgate; hit; collapsed");
        break;
    case S_STALE:
    case S_UPDATING: /* RFC 9211 2.4: a negative ttl is a stale answer */
        cs = tg_arena_printf(r->arena, "tollgate; hit; ttl=%lld; detail=%s",
                             (long long)floor(ttl),
                             x->status == S_UPDATING ? "stale-while-revalidate" : "stale-if-error");
        break;
    case S_REVALIDATED:
        cs = tg_arena_printf(r->arena, "tollgate; fwd=stale; fwd-status=304; ttl=%lld",
                             (long long)floor(ttl));
        break;
    case S_BYPASS:
        cs = tg_arena_printf(r->arena, "tollgate; fwd=bypass");
        break;
    case S_MISS:
    case S_EXPIRED:
        cs = x->stored ? tg_arena_printf(r->arena, "tollgate; fwd=%s; stored; ttl=%lld",
                                         x->status == S_MISS ? "miss" : "stale",
                                         (long long)floor(ttl))
                       : tg_arena_printf(r->arena, "tollgate; fwd=%s",
                                         x->status == S_MISS ? "miss" : "stale");
        break;
    default:
        return TG_OK;
    }
    if (cs == NULL || tg_headers_add(r->arena, &r->resp_headers, TG_STR("Cache-Status"),
                                     tg_str_c(cs)) != 0)
        return TG_ERROR;
    return TG_OK;
}

/* Each body round of a response being stored goes into the entry (and is
 * published to its followers) before it goes on to the client. */
static tg_rc_t ca_response_body(tg_request_t *r, void *conf, tg_chain_t **io)
{
    (void)conf;
    ca_ctx_t *x = tg_module_ctx(r, &tg_cache_module);
    if (x == NULL || !x->filling)
        return TG_OK;
    struct iovec v[TG_SPANS_MAX + 1];
    int n = 0, last = 0;
    for (tg_chain_t *cl = *io; cl; cl = cl->next) {
        if (cl->buf->flags & TG_BUF_F_LAST)
            last = 1;
        size_t l = tg_buf_len(cl->buf);
        if (l == 0)
            continue;
        if (n == (int)(sizeof(v) / sizeof(v[0]))) {
            if (tg_cache_disk_fill_body(&x->file, x->c->zone->store, &x->e, x->vkey, v, n,
                                        ev_now(tg_worker->loop)) != 0)
                goto failed;
            n = 0;
        }
        v[n++] = (struct iovec){cl->buf->pos, l};
    }
    if (n && tg_cache_disk_fill_body(&x->file, x->c->zone->store, &x->e, x->vkey, v, n,
                                     ev_now(tg_worker->loop)) != 0)
        goto failed;
    if (last) {
        tg_cache_disk_fill_end(&x->file, x->c->zone->store, &x->e, 1);
        x->locked = x->filling = 0;
    }
    return TG_OK;
failed: /* too large or no room: the store dropped the entry, the client gets it all */
    x->locked = x->filling = 0;
    x->stored = 0;
    return TG_OK;
}

static void ca_log(tg_request_t *r, void *conf)
{
    (void)conf;
    ca_ctx_t *x = tg_module_ctx(r, &tg_cache_module);
    if (x == NULL)
        return;
    unlock_fill(x); /* a fill that did not end (client gone, upstream failed) */
    if (x->refresh && x->status != S_REVALIDATED)
        refresh_end(r, x);
}

static int var_cache_status(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    (void)arg;
    ca_ctx_t *x = tg_module_ctx(r, &tg_cache_module);
    if (x == NULL || x->status == S_NONE)
        return -1;
    *out = tg_str_c(status_names[x->status]);
    return 0;
}

static const char *ca_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    (void)req;
    ca_conf_t *c = conf;
    if (c->purge)
        return tg_arena_printf(a, "purge zone %.*s", TG_STR_FMT(c->purge->name));
    return tg_arena_printf(a, "zone %.*s key=%s lock_timeout=%llums", TG_STR_FMT(c->zone->name),
                           c->key ? c->key->src.p : "$scheme$host$request_uri",
                           (unsigned long long)c->lock_timeout);
}

static const tg_var_def_t ca_variables[] = {
    {"cache_status", 0, var_cache_status},
    {NULL, 0, NULL},
};

static const tg_directive_t ca_directives[] = {
    {"cache_zone", TG_SCOPE_MAIN, 0, 2, 7, set_zone, 0},
    {"cache", TG_SCOPE_SERVER | TG_SCOPE_LOCATION, 0, 1, 1, set_cache, 0},
    {"cache_key", TG_SCOPE_HTTP, 0, 1, 1, set_key, 0},
    {"cache_methods", TG_SCOPE_HTTP, 0, 1, 2, set_methods, 0},
    {"cache_bypass", TG_SCOPE_HTTP, 0, 1, -1, set_bypass, 0},
    {"cache_valid", TG_SCOPE_HTTP, 0, 1, 9, set_valid, 0},
    {"cache_lock_timeout", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_msec,
     offsetof(ca_conf_t, lock_timeout)},
    {"cache_status_header", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(ca_conf_t, status_header)},
    {"cache_use_stale", TG_SCOPE_HTTP, 0, 1, 4, set_use_stale, 0},
    {"cache_purge", TG_SCOPE_LOCATION, 0, 1, 1, set_purge, 0},
    {"cache_store_set_cookie", TG_SCOPE_HTTP, 0, 1, 1, tg_conf_set_flag,
     offsetof(ca_conf_t, store_cookie)},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_cache_module = {
    .name = "cache",
    .directives = ca_directives,
    .variables = ca_variables,
    .create_conf = ca_create_conf,
    .merge_conf = ca_merge_conf,
    .init_conf = ca_init_conf,
    .own_logs = ca_own_files,
    .is_active = ca_is_active,
    .on_content = ca_content,
    .on_response_headers = ca_response_headers,
    .on_response_body = ca_response_body,
    .on_log = ca_log,
    .explain = ca_explain,
};
