/* @public I/O buffers and chains.
 *
 * A tg_buf_t describes bytes [pos, last) inside memory [start, end). Buffers
 * with TG_BUF_F_OWNED memory come from the worker's free list of fixed-size
 * blocks (tg_buf_get/tg_buf_put); the others point into memory somebody else
 * keeps alive (an upstream read buffer, a static string, a request arena).
 * A body travels as a chain: links are passed or swapped, bytes never joined. */
#ifndef TG_BUF_H
#define TG_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
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
/* Copy what fits of the `*n` bytes at `*p` to the end of `b`; *p and *n
 * move past what was copied. */
static inline void tg_buf_fill(tg_buf_t *b, const uint8_t **p, size_t *n)
{
    size_t k = tg_buf_room(b) < *n ? tg_buf_room(b) : *n;
    memcpy(b->last, *p, k);
    b->last += k;
    *p += k;
    *n -= k;
}

/* Per-worker pool of TG_BUF_F_OWNED buffers of `size` bytes; at most
 * `max_cached` kept when released. */
void tg_buf_pool_init(size_t size, size_t max_cached);
size_t tg_buf_pool_size(void);
/* An empty owned buffer, or NULL when out of memory. */
tg_buf_t *tg_buf_get(void);
void tg_buf_put(tg_buf_t *b);
/* tg_buf_put each buffer of a list linked by `next`. */
void tg_buf_put_list(tg_buf_t *b);

/* A buffer descriptor (not owned memory) in `a` pointing at `s`. */
tg_buf_t *tg_buf_ref(tg_arena_t *a, const char *p, size_t len);
/* Append a link for `b` to the chain whose tail pointer is *tail. */
int tg_chain_append(tg_arena_t *a, tg_chain_t ***tail, tg_buf_t *b);
size_t tg_chain_len(const tg_chain_t *c);


/* A fixed-size queue of byte ranges waiting for writev(2). The ranges point
 * into memory the owner keeps until they are written. `scratch` holds small
 * framing text (chunk sizes) that must outlive the call that made it. */
#define TG_IOVQ_MAX 24 /* one round: a head, 16 body spans and chunk framing */
typedef struct {
    struct iovec iov[TG_IOVQ_MAX];
    int n, i;       /* ranges queued, first not fully written */
    size_t pending; /* bytes not written yet */
    int batch;      /* 1 + its slot in the worker's send batch (src/sendq.c), 0 if none */
    char scratch[24];
} tg_iovq_t;

static inline int tg_iovq_is_empty(const tg_iovq_t *q)
{
    return q->pending == 0;
}
/* Queue a range; returns -1 when the queue is full (caller flushes first). */
int tg_iovq_add(tg_iovq_t *q, const void *p, size_t len);
/* Queue the chunk-size line "HEX\r\n" of a chunk of `len` bytes (in
 * `scratch`: one per round of queued writes). */
int tg_iovq_add_chunk_size(tg_iovq_t *q, size_t len);
/* writev what is queued. Returns 1 when everything went, 0 when the socket
 * would block (the rest stays queued), -1 on error (errno set). *written
 * accumulates the bytes written. */
int tg_iovq_write(tg_iovq_t *q, int fd, uint64_t *written);
/* The same through a writev-like function (a TLS connection). */
int tg_iovq_send(tg_iovq_t *q, ssize_t (*wv)(void *ctx, const struct iovec *iov, int n), void *ctx,
                 uint64_t *written);
void tg_iovq_reset(tg_iovq_t *q);
/* Skip `n` bytes of the ranges v[*i .. cnt) (they were written): *i moves
 * past the ranges used up (and empty ones), the next starts after the
 * skipped bytes. */
void tg_iov_advance(struct iovec *v, int cnt, int *i, size_t n);
/* Drop the first `n` queued bytes (they were written); *written += n. A
 * queue drained this way is reset, ready for its next round. */
void tg_iovq_consume(tg_iovq_t *q, size_t n, uint64_t *written);

/* Body ranges produced by one parse round, in order. Adjacent ranges merge;
 * when the list is full the ranges are compacted in place into one (safe:
 * parsed output never runs ahead of parsed input in the same buffer). */
#define TG_SPANS_MAX 16
typedef struct {
    struct iovec v[TG_SPANS_MAX];
    int n;
    size_t len;
} tg_spans_t;

void tg_spans_add(tg_spans_t *s, const char *p, size_t len);
/* Put a range in front (compacting the others first when the list is full). */
void tg_spans_prepend(tg_spans_t *s, const char *p, size_t len);
static inline void tg_spans_reset(tg_spans_t *s)
{
    s->n = 0;
    s->len = 0;
}

#endif
