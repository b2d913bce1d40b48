/* @public Arenas: bump allocation from blocks, released all at once.
 *
 * The config arena lives as long as one loaded config (blocks from malloc).
 * A request arena lives as long as one request and is reset, not freed, at
 * request end so the next request on the connection reuses its first block.
 * Cleanups registered with tg_arena_on_reset run (last registered first) on
 * reset and destroy. Blocks come from malloc; the worker keeps a free list of
 * standard-size blocks (see tg_arena_blocks_*) so serving does not call malloc
 * in the steady state. */
#ifndef TG_ARENA_H
#define TG_ARENA_H

#include <stdarg.h>
#include <stddef.h>
#include "str.h"

#define TG_ARENA_BLOCK 4096 /* standard block size */

typedef struct tg_arena_block_s tg_arena_block_t;
typedef struct tg_arena_cleanup_s tg_arena_cleanup_t;

typedef struct {
    tg_arena_block_t *head;       /* current block (others chained behind it) */
    tg_arena_cleanup_t *cleanups; /* LIFO */
    size_t total;                 /* bytes handed out since the last reset */
    size_t limit;                 /* 0 = unlimited; else alloc fails past it */
} tg_arena_t;

void tg_arena_init(tg_arena_t *a, size_t limit);
/* Returns zeroed memory aligned for any type, or NULL when out of memory or
 * over the limit. */
void *tg_arena_alloc(tg_arena_t *a, size_t size);
/* Same, not zeroed. */
void *tg_arena_alloc_nz(tg_arena_t *a, size_t size);
char *tg_arena_strdup(tg_arena_t *a, tg_str_t s); /* NUL-terminated copy */
tg_str_t tg_arena_str(tg_arena_t *a, tg_str_t s); /* copy, also NUL-terminated */
char *tg_arena_printf(tg_arena_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *tg_arena_vprintf(tg_arena_t *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* A copy of the array `arr` (n elements of `size` bytes) with `extra` more
 * zeroed elements after them: how config directives grow their lists.
 * NULL when out of memory. */
void *tg_arena_grow(tg_arena_t *a, const void *arr, size_t n, size_t extra, size_t size);
int tg_arena_on_reset(tg_arena_t *a, void (*fn)(void *), void *data);
/* Run cleanups, keep the first block only (emptied). */
void tg_arena_reset(tg_arena_t *a);
/* Run cleanups, release every block. The arena can be used again after. */
void tg_arena_destroy(tg_arena_t *a);

/* Worker-wide cache of standard blocks; bounded by `max_cached` blocks. */
void tg_arena_blocks_init(size_t max_cached);

#endif
