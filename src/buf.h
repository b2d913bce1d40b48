/* I/O buffers and chains.
 *
 * A tg_buf_t describes bytes [pos, last) inside memory [start, end). Buffers
 * with TG_BUF_F_OWNED memory come from the worker's free list of fixed-size
 * blocks (tg_buf_get/tg_buf_put); the others point into memory somebody else
 * keeps alive (an upstream read buffer, a static string, a request arena).
 * A body travels as a chain: links are passed or swapped, bytes never joined. */
#ifndef TG_BUF_H
#define TG_BUF_H

#include <stddef.h>
#include <sys/uio.h>
#include "str.h"
#include "arena.h"

#define TG_BUF_F_OWNED 0x01 /* memory from the free list; tg_buf_put returns it */
#define TG_BUF_F_LAST 0x02  /* last bytes of the body */
#define TG_BUF_F_FLUSH 0x04 /* send what is pending now (streamed responses) */

typedef struct tg_buf_s {
    char *start, *end; /* memory */
    char *pos, *last;  /* data */
    unsigned flags;
    struct tg_buf_s *next; /* free-list link */
} tg_buf_t;

typedef struct tg_chain_s {
    tg_buf_t *buf;
    struct tg_chain_s *next;
} tg_chain_t;

static inline size_t tg_buf_len(const tg_buf_t *b)
{
    return (size_t)(b->last - b->pos);
}
static inline size_t tg_buf_room(const tg_buf_t *b)
{
    return (size_t)(b->end - b->last);
}

/* Per-worker pool of TG_BUF_F_OWNED buffers of `size` bytes; at most
 * `max_cached` kept when released. */
void tg_buf_pool_init(size_t size, size_t max_cached);
size_t tg_buf_pool_size(void);
/* An empty owned buffer, or NULL when out of memory. */
tg_buf_t *tg_buf_get(void);
void tg_buf_put(tg_buf_t *b);

/* A buffer descriptor (not owned memory) in `a` pointing at `s`. */
tg_buf_t *tg_buf_ref(tg_arena_t *a, const char *p, size_t len);
/* Append a link for `b` to the chain whose tail pointer is *tail. */
int tg_chain_append(tg_arena_t *a, tg_chain_t ***tail, tg_buf_t *b);
size_t tg_chain_len(const tg_chain_t *c);

#endif
