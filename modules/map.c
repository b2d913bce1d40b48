/* `map $SOURCE $NAME { default VALUE; KEY VALUE; ~REGEX VALUE; ~*REGEX VALUE; }`
 * (main scope): a variable whose value is chosen by another's, as nginx's.
 *
 * SOURCE is a template ("$host", "$method:$uri"). The value is chosen in
 * nginx's order: the exact key (case-sensitive, binary search over the sorted
 * keys), else the first regex in config order that matches (its captures
 * are $1..$9 and named groups in VALUE), else `default` (empty when none).
 * VALUE is a template too. Evaluated the first time a request reads $NAME
 * (lazily: a request that never reads it pays nothing), then kept for the
 * request (in its module context; an internal redirect starts afresh). A map
 * whose value reads itself, directly or through another, is cut off: the
 * inner read is empty and logged. $NAME is known to templates compiled after
 * the block: define maps before the directives that use them. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "module.h"
#include "request.h"
#include "var.h"
#include "log.h"
#include "core.h"

typedef struct {
    tg_str_t key;        /* exact key, or the regex source */
    pcre2_code *re;      /* NULL: exact */
    pcre2_match_data *md;
    tg_tpl_t *value;
} map_entry_t;

typedef struct map_main_s map_main_t;

typedef struct {
    const map_main_t *main;
    int index;           /* slot in the request's cache */
    tg_tpl_t *source;
    map_entry_t *exact;  /* sorted by key once the block is read */
    int nexact;
    map_entry_t *regex;  /* config order */
    int nregex;
    tg_tpl_t *dflt;      /* NULL: empty */
    int has_default;
    size_t name_len;
    char name[];         /* the variable's name without '$': what the getter is given */
} map_t;

struct map_main_s {
    int nmaps;
};

typedef struct {
    uint8_t state; /* 0: not yet; 1: being evaluated; 2: value */
    tg_str_t value;
} map_slot_t;

extern tg_module_t tg_map_module;

static void *map_create_conf(tg_conf_t *cf)
{
    return tg_arena_alloc(cf->arena, sizeof(map_main_t));
}

static void re_free(void *re)
{
    pcre2_code_free(re);
}

static void md_free(void *md)
{
    pcre2_match_data_free(md);
}

static int entry_cmp(const void *a, const void *b)
{
    const map_entry_t *x = a, *y = b;
    size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
    int c = n ? memcmp(x->key.p, y->key.p, n) : 0;
    return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

/* One "KEY VALUE;" statement of a map block (the parser hands every
 * statement of the block here: see set_map). */
static const char *map_entry(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    (void)conf;
    map_t *m = cf->ctx;
    tg_str_t key = cf->args[0].text;
    if (cf->nargs != 1) {
        if (!cf->args[0].quoted && (tg_str_eq_lit(key, "hostnames") ||
                                    tg_str_eq_lit(key, "volatile") || tg_str_eq_lit(key, "include")))
            return tg_conf_errf(cf, "\"%.*s\" is not supported in \"map\"", TG_STR_FMT(key));
        return tg_conf_errf(cf, "invalid map entry \"%.*s\", expected KEY VALUE;",
                            TG_STR_FMT(key));
    }
    tg_str_t val = tg_conf_arg(cf, 1);
    const char *err;
    if (!cf->args[0].quoted && tg_str_eq_lit(key, "default")) {
        if (m->has_default)
            return "duplicate \"default\" in \"map\"";
        if ((m->dflt = tg_tpl_compile(cf, val, &err)) == NULL)
            return err;
        m->has_default = 1;
        return NULL;
    }
    map_entry_t e = {key, NULL, NULL, NULL};
    if (!cf->args[0].quoted && key.len > 1 && key.p[0] == '~') {
        int caseless = key.len > 2 && key.p[1] == '*';
        tg_str_t src = {key.p + 1 + caseless, key.len - 1 - caseless};
        int errcode;
        PCRE2_SIZE erroff;
        e.re = pcre2_compile((PCRE2_SPTR)src.p, src.len, caseless ? PCRE2_CASELESS : 0, &errcode,
                             &erroff, NULL);
        if (e.re == NULL) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(errcode, msg, sizeof(msg));
            return tg_conf_errf(cf, "invalid regex \"%.*s\" at offset %zu: %s", TG_STR_FMT(src),
                                (size_t)erroff, (char *)msg);
        }
        tg_arena_on_reset(cf->arena, re_free, e.re);
        pcre2_jit_compile(e.re, PCRE2_JIT_COMPLETE);
        if ((e.md = pcre2_match_data_create_from_pattern(e.re, NULL)) == NULL)
            return "out of memory";
        tg_arena_on_reset(cf->arena, md_free, e.md);
    }
    if ((e.value = tg_tpl_compile_captures(cf, val, e.re, &err)) == NULL)
        return err;
    map_entry_t **arr = e.re ? &m->regex : &m->exact;
    int *n = e.re ? &m->nregex : &m->nexact;
    if (e.re == NULL) {
        for (int i = 0; i < *n; i++)
            if (tg_str_eq((*arr)[i].key, key))
                return tg_conf_errf(cf, "duplicate key \"%.*s\" in \"map\"", TG_STR_FMT(key));
    }
    map_entry_t *grown = tg_arena_grow(cf->arena, *arr, (size_t)*n, 1, sizeof(e));
    if (grown == NULL)
        return "out of memory";
    grown[(*n)++] = e;
    *arr = grown;
    return NULL;
}

static const tg_directive_t map_entry_directive = {"(map entry)", TG_SCOPE_MAIN, 0, 0, 1,
                                                   map_entry, 0};

/* Inside a map block every statement is an entry. */
static const tg_directive_t *map_find_directive(tg_conf_t *cf, const char *name, int *mindex,
                                                int *known)
{
    (void)cf;
    (void)name;
    *known = 1;
    *mindex = tg_map_module.index;
    return &map_entry_directive;
}

static int map_get(tg_request_t *r, tg_str_t arg, tg_str_t *out);

static int var_name_ok(tg_str_t n)
{
    if (n.len < 2 || n.p[0] != '$')
        return 0;
    for (size_t i = 1; i < n.len; i++) {
        char c = n.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return !(n.len == 2 && n.p[1] >= '0' && n.p[1] <= '9');
}

/* map $SOURCE $NAME { ... } */
static const char *set_map(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    (void)d;
    map_main_t *mm = conf;
    tg_str_t src = tg_conf_arg(cf, 1), name = tg_conf_arg(cf, 2);
    const char *err;
    if (!var_name_ok(name))
        return tg_conf_errf(cf, "invalid variable name \"%.*s\" in \"map\", expected $name",
                            TG_STR_FMT(name));
    if (src.len == 0)
        return "empty source in \"map\"";
    tg_str_t vn = {name.p + 1, name.len - 1};
    map_t *m = tg_arena_alloc(cf->arena, sizeof(*m) + vn.len + 1);
    if (m == NULL)
        return "out of memory";
    memcpy(m->name, vn.p, vn.len);
    m->name_len = vn.len;
    m->main = mm;
    if ((m->source = tg_tpl_compile(cf, src, &err)) == NULL)
        return err;
    /* the block: every statement is an entry */
    const tg_directive_t *(*find)(tg_conf_t *, const char *, int *, int *) = cf->find_directive;
    cf->find_directive = map_find_directive;
    cf->ctx = m;
    cf->mconf = NULL;
    int rc = tg_conf_parse_block(cf);
    cf->find_directive = find;
    if (rc != 0)
        return NULL; /* reported */
    if (m->nexact > 1)
        qsort(m->exact, (size_t)m->nexact, sizeof(map_entry_t), entry_cmp);
    /* defined after its block: a value cannot name its own map */
    int dr = tg_var_define(cf, (tg_str_t){m->name, m->name_len}, map_get);
    if (dr == -1)
        return tg_conf_errf(cf, "variable \"%.*s\" is defined already", TG_STR_FMT(name));
    if (dr != 0)
        return "out of memory";
    m->index = mm->nmaps++;
    return NULL;
}

static int eval_entry(tg_request_t *r, const map_entry_t *e, tg_str_t *out)
{
    return tg_tpl_eval(r, e->value, out);
}

/* The getter of every map variable: `arg` is the map's name (map_t.name). */
static int map_get(tg_request_t *r, tg_str_t arg, tg_str_t *out)
{
    const map_t *m = (const map_t *)(arg.p - offsetof(map_t, name));
    map_slot_t *slots = tg_module_ctx(r, &tg_map_module);
    if (slots == NULL) {
        slots = tg_arena_alloc(r->arena, (size_t)m->main->nmaps * sizeof(*slots));
        if (slots == NULL)
            return -1;
        tg_module_ctx(r, &tg_map_module) = slots;
    }
    map_slot_t *s = &slots[m->index];
    if (s->state == 2) {
        *out = s->value;
        return 0;
    }
    if (s->state == 1) {
        tg_log(TG_LOG_ERROR, "map: \"$%.*s\" reads itself", (int)m->name_len, m->name);
        return -1;
    }
    s->state = 1;
    tg_str_t key, v = {"", 0};
    int rc = -1;
    if (tg_tpl_eval(r, m->source, &key) != 0)
        goto done;
    int lo = 0, hi = m->nexact - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        map_entry_t probe = {key, NULL, NULL, NULL};
        int c = entry_cmp(&probe, &m->exact[mid]);
        if (c == 0) {
            rc = eval_entry(r, &m->exact[mid], &v);
            goto done;
        }
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    for (int i = 0; i < m->nregex; i++) {
        const map_entry_t *e = &m->regex[i];
        int n = pcre2_match(e->re, (PCRE2_SPTR)key.p, key.len, 0, 0, e->md, NULL);
        if (n == PCRE2_ERROR_NOMATCH)
            continue;
        if (n < 0)
            goto done;
        if (tg_request_set_captures(r, key, pcre2_get_ovector_pointer(e->md),
                                    (int)pcre2_get_ovector_count(e->md)) != 0)
            goto done;
        rc = eval_entry(r, e, &v);
        goto done;
    }
    rc = m->dflt ? tg_tpl_eval(r, m->dflt, &v) : 0;
done:
    if (rc != 0) {
        s->state = 0;
        return -1;
    }
    s->state = 2;
    s->value = v;
    *out = v;
    return 0;
}

static const tg_directive_t map_directives[] = {
    {"map", TG_SCOPE_MAIN, TG_CONF_F_BLOCK, 2, 2, set_map, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_map_module = {
    .name = "map",
    .directives = map_directives,
    .create_conf = map_create_conf,
};
