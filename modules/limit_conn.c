/* limit_conn: concurrent connections per key, shared by all workers.
 *
 *   limit_conn_zone NAME key=TEMPLATE size=SIZE;     (main scope)
 *   limit_conn NAME N;                               (server scope, several allowed)
 *   limit_conn_status CODE;                          (main, server; default 503)
 *
 * What is counted: connections, not requests. A connection takes its place
 * in each zone of its server at its first request there (the key, usually
 * $remote_addr, is only known then: after the PROXY header and real_ip) and
 * keeps it until it closes, idle keep-alive time included. Over the limit,
 * the request is answered 503 (limit_conn_status) with Connection: close.
 * An empty key is not counted.
 *
 * The zone is a table of src/shm_table.c. An entry is a 128-bit keyed hash
 * of the key (SipHash, random key per table, as in src/gcra_table.c: keys
 * are not stored and cannot be made to collide) and one 16-bit count per
 * worker slot; the key's count is their sum. Counting
 * per slot is what makes a crash harmless: the master drops the column of a
 * worker that died (its on_worker_gone hook) before it respawns it,
 * so the dead worker's connections do not hold places forever. (Workers of
 * two generations share a slot's column during a reload; a crash then also
 * drops its sibling's counts, which errs on the generous side for a moment
 * and never leaks: a release never takes a column below zero.) An entry
 * whose counts are all zero goes back to the free list. When the table is
 * full, a new key is refused, as nginx does (nothing is evicted: the
 * recency list only serves to walk the entries).
 *
 * The table's process-shared robust mutex guards it. A worker that dies
 * holding it leaves the table suspect: the next locker clears it and bumps
 * the epoch, and holds taken before the clear are then ignored on release. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>
#include "limit_conn.h"
#include "log.h"
#include "request.h"
#include "shm.h"
#include "shm_table.h"
#include "var.h"
#include "worker.h"

#define LC_MAGIC 0x6e6f636c67740002ULL
#define LC_COUNT_MAX UINT16_MAX

typedef struct {
    uint64_t h[2];                  /* the key's hash: the table key */
    uint16_t count[TG_MAX_WORKERS]; /* open connections, per worker slot */
} entry_t;

struct tg_limit_conn_table_s {
    tg_shm_table_t t; /* first: the shared table */
    uint32_t epoch;   /* bumped when the table is cleared after a crash */
    uint64_t refused; /* connections refused, all time */
    int64_t log_sec;  /* monotonic second of the last "refused" line */
};
typedef struct tg_limit_conn_table_s table_t;

static entry_t *E(table_t *t, uint32_t ref)
{
    return tg_shm_table_data(&t->t, ref);
}

typedef struct {
    tg_str_t name;
    tg_tpl_t *key;
    tg_shm_zone_t *shm;
    table_t *table;
    const char *file;
    int line;
} lc_zone_t;

typedef struct {
    tg_str_t name; /* as written, resolved at merge time */
    lc_zone_t *zone;
    int64_t limit;
    const char *file;
    int line;
} lc_use_t;

typedef struct {
    lc_zone_t **zones; /* main scope: declared zones */
    int nzones;
    lc_use_t *use;     /* server scope */
    int nuse;
    int64_t status;
} lc_conf_t;

tg_module_t tg_limit_conn_module;

/* ---- the shared table ------------------------------------------------------- */

static table_t *table_init(void *mem, size_t size)
{
    if (tg_shm_table_init(mem, size, sizeof(table_t), sizeof(entry_t), 16, LC_MAGIC) < 0)
        return NULL;
    return mem;
}

/* 0 locked; 1 locked after a crash cleared the table; -1 failed. */
static int table_lock(table_t *t)
{
    int rc = tg_shm_table_lock(&t->t);
    if (rc == 1) {
        t->epoch++;
        tg_log(TG_LOG_WARN, "limit_conn: a worker died holding the zone lock; counts cleared");
    }
    return rc;
}

static unsigned entry_sum(const entry_t *e)
{
    unsigned n = 0;
    for (int i = 0; i < TG_MAX_WORKERS; i++)
        n += e->count[i];
    return n;
}

enum { TAKE_OK = 0, TAKE_OVER, TAKE_FULL, TAKE_ERROR };

/* Count one connection for `key` in `slot`'s column unless the key already
 * has `limit`. Fills *hold on success; *refused gets the running total of
 * refusals and *log whether this one should be logged (once a second). */
static int table_take(table_t *t, tg_str_t key, int64_t limit, int slot, tg_limit_conn_hold_t *hold,
                      uint64_t *refused, int *log)
{
    uint64_t h[2];
    tg_siphash128(t->t.seed, key.p, key.len, h);
    if (table_lock(t) < 0)
        return TAKE_ERROR;
    int rc = TAKE_OK;
    uint32_t ref = tg_shm_table_find(&t->t, h[1], h, NULL, NULL);
    if (ref == 0 && (ref = tg_shm_table_add(&t->t, h[1], h)) == 0)
        rc = TAKE_FULL;
    if (rc == TAKE_OK) {
        entry_t *e = E(t, ref);
        if (entry_sum(e) >= (uint64_t)limit || e->count[slot] == LC_COUNT_MAX) {
            rc = TAKE_OVER;
            if (entry_sum(e) == 0)
                tg_shm_table_remove(&t->t, ref);
        } else {
            e->count[slot]++;
            *hold = (tg_limit_conn_hold_t){t, ref, t->epoch, h[0]};
        }
    }
    if (rc != TAKE_OK) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        *refused = ++t->refused;
        *log = t->log_sec != (int64_t)ts.tv_sec;
        t->log_sec = (int64_t)ts.tv_sec;
    }
    tg_shm_table_unlock(&t->t);
    return rc;
}

static void table_release(tg_limit_conn_hold_t *hold, int slot)
{
    table_t *t = hold->table;
    hold->table = NULL;
    if (table_lock(t) < 0)
        return;
    if (hold->epoch == t->epoch && hold->entry <= t->t.capacity) {
        entry_t *e = E(t, hold->entry);
        /* the entry may have been dropped (the master cleared this column
         * after a crash) and even reused for another key: check both */
        if (e->h[0] == hold->hash && e->count[slot] > 0 && --e->count[slot] == 0 &&
            entry_sum(e) == 0)
            tg_shm_table_remove(&t->t, hold->entry);
    }
    tg_shm_table_unlock(&t->t);
}

static void table_drop_slot(table_t *t, int slot)
{
    if (table_lock(t) < 0)
        return;
    uint32_t ref = tg_shm_table_oldest(&t->t);
    while (ref) {
        uint32_t next = tg_shm_table_newer(&t->t, ref);
        entry_t *e = E(t, ref);
        e->count[slot] = 0;
        if (entry_sum(e) == 0)
            tg_shm_table_remove(&t->t, ref);
        ref = next;
    }
    tg_shm_table_unlock(&t->t);
}

/* ---- connections -------------------------------------------------------------- */

/* The connection closes: give back every place it holds. */
static void holds_release(void *data)
{
    tg_limit_conn_holds_t *holds = data;
    for (int i = 0; i < TG_LIMIT_CONN_HOLDS; i++)
        if (holds->h[i].table)
            table_release(&holds->h[i], tg_worker->slot);
    free(holds);
}

/* In the master, when the worker of `slot` died without closing its
 * connections: drop that slot's counts in every zone. */
static void lc_worker_gone(tg_config_t *c, int slot)
{
    lc_conf_t *m = c->mconf[tg_limit_conn_module.index];
    for (int i = 0; i < m->nzones; i++)
        if (m->zones[i]->table)
            table_drop_slot(m->zones[i]->table, slot);
}

static tg_rc_t lc_access(tg_request_t *r, void *conf)
{
    lc_conf_t *lc = conf;
    tg_limit_conn_holds_t *holds = tg_request_conn_ext(r, &tg_limit_conn_module);
    if (lc->nuse > 0 && holds == NULL) {
        if ((holds = calloc(1, sizeof(*holds))) == NULL)
            return TG_ERROR;
        if (tg_request_set_conn_ext(r, &tg_limit_conn_module, holds, holds_release) != 0) {
            free(holds);
            return TG_ERROR;
        }
    }
    for (int u = 0; u < lc->nuse; u++) {
        lc_zone_t *z = lc->use[u].zone;
        tg_limit_conn_hold_t *free_hold = NULL;
        int held = 0;
        for (int i = 0; i < TG_LIMIT_CONN_HOLDS; i++) {
            if (holds->h[i].table == z->table)
                held = 1;
            else if (holds->h[i].table == NULL && free_hold == NULL)
                free_hold = &holds->h[i];
        }
        if (held)
            continue;
        tg_str_t key;
        if (tg_tpl_eval(r, z->key, &key) != 0)
            return TG_ERROR;
        if (key.len == 0)
            continue;
        if (free_hold == NULL) {
            tg_log(TG_LOG_WARN, "limit_conn zone \"%.*s\": a connection counts in at most %d zones",
                   TG_STR_FMT(z->name), TG_LIMIT_CONN_HOLDS);
            continue;
        }
        uint64_t refused = 0;
        int log = 0;
        int rc = table_take(z->table, key, lc->use[u].limit, tg_worker->slot, free_hold, &refused,
                            &log);
        if (rc == TAKE_OK)
            continue;
        if (rc == TAKE_ERROR)
            return TG_ERROR;
        if (log)
            tg_log(TG_LOG_WARN,
                   "limit_conn zone \"%.*s\": %s for \"%.*s\" (limit %lld), %llu refused so far",
                   TG_STR_FMT(z->name), rc == TAKE_FULL ? "zone full" : "too many connections",
                   TG_STR_FMT(key), (long long)lc->use[u].limit, (unsigned long long)refused);
        r->keepalive = 0;
        int st = (int)lc->status;
        char *body = tg_arena_printf(r->arena, "%d %s\n", st, tg_status_reason(st));
        if (tg_request_respond(r, st, "text/plain", body ? tg_str_c(body) : TG_NULL_STR) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    return TG_OK;
}

/* ---- config --------------------------------------------------------------------- */

static void *lc_create_conf(tg_conf_t *cf)
{
    lc_conf_t *c = tg_arena_alloc(cf->arena, sizeof(*c));
    if (c) {
        c->nuse = TG_CONF_UNSET;
        c->status = TG_CONF_UNSET;
    }
    return c;
}

static lc_conf_t *main_conf(tg_conf_t *cf)
{
    return cf->config->mconf[tg_limit_conn_module.index];
}

static lc_zone_t *zone_find(lc_conf_t *m, tg_str_t name)
{
    for (int i = 0; i < m->nzones; i++)
        if (tg_str_eq(m->zones[i]->name, name))
            return m->zones[i];
    return NULL;
}

static const char *lc_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    lc_conf_t *p = parent, *c = child;
    TG_CONF_MERGE(c->status, p->status, 503);
    if (c->nuse == TG_CONF_UNSET) {
        c->use = p->use;
        c->nuse = p->nuse == TG_CONF_UNSET ? 0 : p->nuse;
        return NULL;
    }
    /* resolved here, after the whole file: zones may be declared anywhere */
    lc_conf_t *m = main_conf(cf);
    const char *file = cf->file;
    int line = cf->line;
    for (int i = 0; i < c->nuse; i++) {
        if (c->use[i].zone)
            continue;
        if ((c->use[i].zone = zone_find(m, c->use[i].name)) == NULL) {
            cf->file = c->use[i].file;
            cf->line = c->use[i].line;
            tg_conf_error(cf, "unknown limit_conn_zone \"%.*s\" in \"limit_conn\"",
                          TG_STR_FMT(c->use[i].name));
        }
    }
    cf->file = file;
    cf->line = line;
    return NULL;
}

static const char *set_zone(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lc_conf_t *m = conf;
    tg_str_t name = tg_conf_arg(cf, 1), v;
    if (zone_find(m, name))
        return tg_conf_errf(cf, "duplicate limit_conn_zone \"%.*s\"", TG_STR_FMT(name));
    lc_zone_t *z = tg_arena_alloc(cf->arena, sizeof(*z));
    if (z == NULL)
        return "out of memory";
    z->name = name;
    z->file = cf->file;
    z->line = cf->line;
    int64_t size = 0;
    for (int i = 2; i <= cf->nargs; i++) {
        const char *err = NULL;
        if (tg_conf_arg_kv(cf, i, "key", &v)) {
            if ((z->key = tg_tpl_compile(cf, v, &err)) == NULL)
                return err;
        } else if (tg_conf_arg_kv(cf, i, "size", &v)) {
            if (tg_parse_size(v, &size) != 0 || size <= 0)
                return tg_conf_errf(cf, "invalid size \"%.*s\" in \"limit_conn_zone\"",
                                    TG_STR_FMT(v));
        } else {
            return tg_conf_errf(cf, "invalid parameter \"%s\" in \"limit_conn_zone\", expected "
                                    "key= or size=",
                                cf->args[i].text.p);
        }
    }
    if (z->key == NULL || size == 0)
        return "\"limit_conn_zone\" needs key= and size=";
    const char *err = tg_shm_zone_add(cf, name, (size_t)size, "limit_conn", &z->shm);
    if (err)
        return err;
    lc_zone_t **zs = tg_arena_grow(cf->arena, m->zones, (size_t)m->nzones, 1, sizeof(*zs));
    if (zs == NULL)
        return "out of memory";
    zs[m->nzones++] = z;
    m->zones = zs;
    return NULL;
}

static const char *set_limit_conn(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lc_conf_t *c = conf;
    int n = c->nuse == TG_CONF_UNSET ? 0 : c->nuse;
    tg_str_t name = tg_conf_arg(cf, 1);
    int64_t limit;
    if (tg_parse_int(tg_conf_arg(cf, 2), &limit) != 0 || limit < 1 || limit > 1000000000)
        return tg_conf_errf(cf, "invalid number \"%s\" in \"limit_conn\"", cf->args[2].text.p);
    for (int i = 0; i < n; i++)
        if (tg_str_eq(c->use[i].name, name))
            return tg_conf_errf(cf, "limit_conn zone \"%.*s\" is listed twice", TG_STR_FMT(name));
    if (n == TG_LIMIT_CONN_HOLDS)
        return tg_conf_errf(cf, "at most %d \"limit_conn\" zones per server", TG_LIMIT_CONN_HOLDS);
    lc_use_t *u = tg_arena_grow(cf->arena, c->use, (size_t)n, 1, sizeof(*u));
    if (u == NULL)
        return "out of memory";
    u[n] = (lc_use_t){name, NULL, limit, cf->file, cf->line};
    c->use = u;
    c->nuse = n + 1;
    return NULL;
}

static const char *set_status(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    lc_conf_t *c = conf;
    int64_t st;
    if (tg_parse_int(tg_conf_arg(cf, 1), &st) != 0 || st < 400 || st > 599)
        return tg_conf_errf(cf, "invalid status \"%s\" in \"limit_conn_status\", expected 400-599",
                            cf->args[1].text.p);
    c->status = st;
    return NULL;
}

/* In the master, once per config load: lay out (or find again after a
 * reload) each zone's table. */
static const char *lc_init_conf(tg_conf_t *cf, void *conf)
{
    lc_conf_t *m = conf;
    for (int i = 0; i < m->nzones; i++) {
        lc_zone_t *z = m->zones[i];
        if ((z->table = table_init(z->shm->data, z->shm->size)) == NULL) {
            cf->file = z->file;
            cf->line = z->line;
            tg_conf_error(cf, "cannot set up the table of limit_conn_zone \"%.*s\"",
                          TG_STR_FMT(z->name));
        }
    }
    return NULL;
}

static int lc_is_active(void *conf)
{
    return ((lc_conf_t *)conf)->nuse > 0;
}

static const tg_directive_t lc_directives[] = {
    {"limit_conn_zone", TG_SCOPE_MAIN, 0, 3, 3, set_zone, 0},
    {"limit_conn", TG_SCOPE_SERVER, 0, 2, 2, set_limit_conn, 0},
    {"limit_conn_status", TG_SCOPE_MAIN | TG_SCOPE_SERVER, 0, 1, 1, set_status, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_limit_conn_module = {
    .name = "limit_conn",
    .directives = lc_directives,
    .create_conf = lc_create_conf,
    .merge_conf = lc_merge_conf,
    .init_conf = lc_init_conf,
    .is_active = lc_is_active,
    .on_worker_gone = lc_worker_gone,
    .on_access = lc_access,
};
