/* Media types by extension (see mime.h): an array sorted by extension,
 * searched with bsearch; duplicates resolved at finish (the last added wins). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mime.h"

int tg_mime_add(tg_arena_t *a, tg_mime_t *m, tg_str_t type, tg_str_t ext)
{
    if (m->n == 0 || (m->n >= 64 && (m->n & (m->n - 1)) == 0)) {
        /* grow at powers of two */
        size_t cap = m->n ? m->n * 2 : 64;
        tg_mime_entry_t *v = tg_arena_alloc_nz(a, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        if (m->n)
            memcpy(v, m->v, m->n * sizeof(*v));
        m->v = v;
    }
    char *e = tg_arena_alloc_nz(a, ext.len + 1);
    tg_str_t t = tg_arena_str(a, type);
    if (e == NULL || t.p == NULL)
        return -1;
    for (size_t i = 0; i < ext.len; i++)
        e[i] = (ext.p[i] >= 'A' && ext.p[i] <= 'Z') ? (char)(ext.p[i] + 32) : ext.p[i];
    e[ext.len] = '\0';
    m->v[m->n++] = (tg_mime_entry_t){{e, ext.len}, t};
    m->sorted = 0;
    return 0;
}

int tg_mime_load_file(tg_arena_t *a, tg_mime_t *m, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[1024];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        char *save = NULL, *type = strtok_r(line, " \t\r\n", &save);
        if (type == NULL || type[0] == '#')
            continue;
        for (char *ext; rc == 0 && (ext = strtok_r(NULL, " \t\r\n", &save));)
            rc = tg_mime_add(a, m, tg_str_c(type), tg_str_c(ext));
    }
    fclose(f);
    return rc;
}

static int entry_cmp(const void *a, const void *b)
{
    const tg_mime_entry_t *x = a, *y = b;
    size_t n = x->ext.len < y->ext.len ? x->ext.len : y->ext.len;
    int c = memcmp(x->ext.p, y->ext.p, n);
    if (c)
        return c;
    if (x->ext.len != y->ext.len)
        return x->ext.len < y->ext.len ? -1 : 1;
    /* equal extensions: keep insertion order, so the last one is found */
    return x < y ? -1 : (x > y);
}

void tg_mime_finish(tg_mime_t *m)
{
    if (m->n)
        qsort(m->v, m->n, sizeof(*m->v), entry_cmp);
    /* drop all but the last of equal extensions */
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (i + 1 < m->n && tg_str_eq(m->v[i].ext, m->v[i + 1].ext))
            continue;
        m->v[w++] = m->v[i];
    }
    m->n = w;
    m->sorted = 1;
}

static int key_cmp(const void *k, const void *e)
{
    const tg_str_t *x = k;
    const tg_mime_entry_t *y = e;
    size_t n = x->len < y->ext.len ? x->len : y->ext.len;
    int c = memcmp(x->p, y->ext.p, n);
    if (c)
        return c;
    return x->len == y->ext.len ? 0 : (x->len < y->ext.len ? -1 : 1);
}

tg_str_t tg_mime_find(const tg_mime_t *m, tg_str_t name)
{
    if (m == NULL || m->n == 0)
        return TG_NULL_STR;
    size_t i = name.len;
    while (i > 0 && name.p[i - 1] != '.' && name.p[i - 1] != '/')
        i--;
    if (i == 0 || name.p[i - 1] != '.')
        return TG_NULL_STR;
    size_t len = name.len - i;
    char low[32];
    if (len == 0 || len > sizeof(low))
        return TG_NULL_STR;
    for (size_t k = 0; k < len; k++) {
        char ch = name.p[i + k];
        low[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    tg_str_t key = {low, len};
    const tg_mime_entry_t *e = bsearch(&key, m->v, m->n, sizeof(*m->v), key_cmp);
    return e ? e->type : TG_NULL_STR;
}

int tg_mime_is_text(tg_str_t t)
{
    return tg_str_has_caseprefix(t, "text/") || tg_str_caseeq_lit(t, "application/javascript") ||
           tg_str_caseeq_lit(t, "application/json");
}
