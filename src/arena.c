/* Arenas: bump allocation from a chain of blocks, released all at once.
 *
 * a->head is the block being carved; older blocks are chained behind it.
 * Standard blocks are TG_ARENA_BLOCK bytes in total (header included, so they
 * are page-sized mallocs); a request that does not fit in an empty standard
 * block gets a dedicated block of exactly its size, linked *behind* the head
 * so the head's free space stays usable for small allocations. Every pointer
 * handed out is aligned to ARENA_ALIGN, because each allocation is rounded up
 * to it and block data starts aligned.
 *
 * Reset keeps one standard block and empties it, so a keep-alive connection's
 * next request allocates without touching malloc or the cache. Other standard
 * blocks go to a worker-wide free list (file-static: a worker is one thread),
 * bounded by tg_arena_blocks_init(); dedicated blocks always go back to free()
 * so one huge request cannot pin memory for the life of the worker. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16
#define ALIGN_UP(n) (((n) + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1))

/* Block data starts at malloc's alignment plus an aligned header size. */
_Static_assert(_Alignof(max_align_t) >= ARENA_ALIGN, "malloc must align to ARENA_ALIGN");

struct tg_arena_block_s {
    tg_arena_block_t *next; /* older block */
    char *pos;              /* first free byte, ARENA_ALIGN-aligned */
    char *end;              /* end of the block's memory */
    size_t size;            /* bytes malloc'd; TG_ARENA_BLOCK marks a standard block */
};

struct tg_arena_cleanup_s {
    tg_arena_cleanup_t *next; /* registered before this one */
    void (*fn)(void *);
    void *data;
};

#define HDR ALIGN_UP(sizeof(tg_arena_block_t))
#define STD_ROOM (TG_ARENA_BLOCK - HDR) /* largest allocation a standard block takes */

/* The worker-wide cache of standard blocks, linked through ->next. */
static tg_arena_block_t *cache;
static size_t ncached, max_cached;

void tg_arena_blocks_init(size_t max)
{
    max_cached = max;
    while (ncached > max_cached) {
        tg_arena_block_t *b = cache;
        cache = b->next;
        ncached--;
        free(b);
    }
}

static tg_arena_block_t *block_get(size_t size)
{
    tg_arena_block_t *b;

    if (size == TG_ARENA_BLOCK && cache) {
        b = cache;
        cache = b->next;
        ncached--;
    } else if ((b = malloc(size)) == NULL) {
        return NULL;
    }
    b->next = NULL;
    b->size = size;
    b->pos = (char *)b + HDR;
    b->end = (char *)b + size;
    return b;
}

static void block_put(tg_arena_block_t *b)
{
    if (b->size == TG_ARENA_BLOCK && ncached < max_cached) {
        b->next = cache;
        cache = b;
        ncached++;
    } else {
        free(b);
    }
}

void tg_arena_init(tg_arena_t *a, size_t limit)
{
    /* No block yet: init cannot fail, and an arena that is never used
     * (a connection closed before its first request) costs nothing. */
    a->head = NULL;
    a->cleanups = NULL;
    a->total = 0;
    a->limit = limit;
}

/* Carve `size` bytes without looking at the limit (cleanup records use this
 * too: registering the cleanup that frees a resource must not fail because
 * the request already used its budget). */
static void *carve(tg_arena_t *a, size_t size)
{
    tg_arena_block_t *b = a->head;
    size_t need;
    void *p;

    if (size > SIZE_MAX - HDR - ARENA_ALIGN) return NULL;
    need = ALIGN_UP(size ? size : 1); /* distinct pointers even for size 0 */
    if (b && (size_t)(b->end - b->pos) >= need) {
        p = b->pos;
        b->pos += need;
        return p;
    }
    if (need > STD_ROOM) {
        if ((b = block_get(HDR + need)) == NULL) return NULL;
        b->pos = b->end;
        if (a->head) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            a->head = b;
        }
        return (char *)b + HDR;
    }
    if ((b = block_get(TG_ARENA_BLOCK)) == NULL) return NULL;
    b->next = a->head;
    a->head = b;
    p = b->pos;
    b->pos += need;
    return p;
}

void *tg_arena_alloc_nz(tg_arena_t *a, size_t size)
{
    void *p;

    /* `total` counts requested bytes, not rounded ones, so a limit reads as
     * "this much data" whatever the alignment padding. */
    if (a->limit && (size > a->limit || a->total > a->limit - size)) return NULL;
    if ((p = carve(a, size)) != NULL) a->total += size;
    return p;
}

void *tg_arena_alloc(tg_arena_t *a, size_t size)
{
    void *p = tg_arena_alloc_nz(a, size);

    if (p) memset(p, 0, size);
    return p;
}

char *tg_arena_strdup(tg_arena_t *a, tg_str_t s)
{
    char *p = tg_arena_alloc_nz(a, s.len + 1);

    if (p) {
        if (s.len) memcpy(p, s.p, s.len);
        p[s.len] = '\0';
    }
    return p;
}

tg_str_t tg_arena_str(tg_arena_t *a, tg_str_t s)
{
    char *p = tg_arena_strdup(a, s);

    return p ? (tg_str_t){p, s.len} : TG_NULL_STR;
}

char *tg_arena_vprintf(tg_arena_t *a, const char *fmt, va_list ap)
{
    va_list probe;
    char *p;
    int n;

    va_copy(probe, ap);
    n = vsnprintf(NULL, 0, fmt, probe);
    va_end(probe);
    if (n < 0 || (p = tg_arena_alloc_nz(a, (size_t)n + 1)) == NULL) return NULL;
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *tg_arena_printf(tg_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    char *p;

    va_start(ap, fmt);
    p = tg_arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

int tg_arena_on_reset(tg_arena_t *a, void (*fn)(void *), void *data)
{
    tg_arena_cleanup_t *c = carve(a, sizeof *c);

    if (c == NULL) return -1;
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

/* Pops one at a time so a cleanup that registers another still has it run. */
static void run_cleanups(tg_arena_t *a)
{
    while (a->cleanups) {
        tg_arena_cleanup_t *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->data);
    }
}

void tg_arena_reset(tg_arena_t *a)
{
    tg_arena_block_t *b, *next, *keep = NULL;

    run_cleanups(a);
    /* Any standard block will do as the one kept; the newest is the one
     * most likely still in the CPU cache. */
    for (b = a->head; b; b = next) {
        next = b->next;
        if (!keep && b->size == TG_ARENA_BLOCK)
            keep = b;
        else
            block_put(b);
    }
    if (keep) {
        keep->next = NULL;
        keep->pos = (char *)keep + HDR;
    }
    a->head = keep;
    a->total = 0;
}

void tg_arena_destroy(tg_arena_t *a)
{
    tg_arena_block_t *b, *next;

    run_cleanups(a);
    for (b = a->head; b; b = next) {
        next = b->next;
        block_put(b);
    }
    a->head = NULL;
    a->total = 0;
}

void *tg_arena_grow(tg_arena_t *a, const void *arr, size_t n, size_t extra, size_t size)
{
    char *v = tg_arena_alloc(a, (n + extra) * size);
    if (v && n)
        memcpy(v, arr, n * size);
    return v;
}
