/* Buffers from a per-worker free list. Every owned buffer has the same size
 * (set once at worker start), so a free list is a plain stack and the steady
 * state never calls malloc. At most `max_cached` buffers are kept; beyond
 * that a released buffer goes back to the system, so a burst does not pin
 * memory forever. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"

static tg_buf_t *free_list;
static size_t nfree, max_free = 1024, buf_size = 16384;

void tg_buf_pool_init(size_t size, size_t max_cached)
{
    buf_size = size;
    max_free = max_cached;
}

size_t tg_buf_pool_size(void)
{
    return buf_size;
}

tg_buf_t *tg_buf_get(void)
{
    tg_buf_t *b = free_list;
    if (b) {
        free_list = b->next;
        nfree--;
    } else {
        /* descriptor and memory in one allocation */
        b = malloc(sizeof(*b) + buf_size);
        if (b == NULL)
            return NULL;
        b->start = (char *)(b + 1);
        b->end = b->start + buf_size;
    }
    b->pos = b->last = b->start;
    b->flags = TG_BUF_F_OWNED;
    b->next = NULL;
    return b;
}

void tg_buf_put(tg_buf_t *b)
{
    if (b == NULL)
        return;
    if (nfree >= max_free) {
        free(b);
        return;
    }
    b->next = free_list;
    free_list = b;
    nfree++;
}

void tg_buf_put_list(tg_buf_t *b)
{
    while (b) {
        tg_buf_t *next = b->next;
        tg_buf_put(b);
        b = next;
    }
}

tg_buf_t *tg_buf_ref(tg_arena_t *a, const char *p, size_t len)
{
    tg_buf_t *b = tg_arena_alloc(a, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->start = b->pos = (char *)p;
    b->end = b->last = (char *)p + len;
    return b;
}

int tg_chain_append(tg_arena_t *a, tg_chain_t ***tail, tg_buf_t *b)
{
    tg_chain_t *cl = tg_arena_alloc(a, sizeof(*cl));
    if (cl == NULL)
        return -1;
    cl->buf = b;
    **tail = cl;
    *tail = &cl->next;
    return 0;
}

size_t tg_chain_len(const tg_chain_t *c)
{
    size_t n = 0;
    for (; c; c = c->next)
        n += tg_buf_len(c->buf);
    return n;
}

int tg_iovq_add(tg_iovq_t *q, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    if (q->n == TG_IOVQ_MAX)
        return -1;
    q->iov[q->n].iov_base = (void *)p;
    q->iov[q->n].iov_len = len;
    q->n++;
    q->pending += len;
    return 0;
}

int tg_iovq_add_chunk_size(tg_iovq_t *q, size_t len)
{
    size_t k = tg_fmt_hex(q->scratch, len);
    q->scratch[k++] = '\r';
    q->scratch[k++] = '\n';
    return tg_iovq_add(q, q->scratch, k);
}

void tg_iovq_reset(tg_iovq_t *q)
{
    q->n = q->i = 0;
    q->pending = 0;
}

static ssize_t fd_writev(void *ctx, const struct iovec *iov, int n)
{
    return writev(*(int *)ctx, iov, n);
}

int tg_iovq_write(tg_iovq_t *q, int fd, uint64_t *written)
{
    return tg_iovq_send(q, fd_writev, &fd, written);
}

int tg_iovq_send(tg_iovq_t *q, ssize_t (*wv)(void *ctx, const struct iovec *iov, int n), void *ctx,
                 uint64_t *written)
{
    while (q->pending) {
        ssize_t n = wv(ctx, q->iov + q->i, q->n - q->i);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        tg_iovq_consume(q, (size_t)n, written);
    }
    tg_iovq_reset(q);
    return 1;
}

void tg_iov_advance(struct iovec *v, int cnt, int *i, size_t n)
{
    while (*i < cnt && n >= v[*i].iov_len)
        n -= v[(*i)++].iov_len;
    if (*i < cnt) {
        v[*i].iov_base = (char *)v[*i].iov_base + n;
        v[*i].iov_len -= n;
    }
}

void tg_iovq_consume(tg_iovq_t *q, size_t n, uint64_t *written)
{
    *written += n;
    q->pending -= n;
    tg_iov_advance(q->iov, q->n, &q->i, n);
    if (q->pending == 0)
        tg_iovq_reset(q); /* drained: the next round starts at the first slot */
}

/* Move every range to follow the first (in place: see buf.h); returns the
 * end of the one range left. */
static char *spans_compact(tg_spans_t *s)
{
    char *dst = (char *)s->v[0].iov_base + s->v[0].iov_len;
    for (int i = 1; i < s->n; i++) {
        memmove(dst, s->v[i].iov_base, s->v[i].iov_len);
        dst += s->v[i].iov_len;
    }
    s->v[0].iov_len = (size_t)(dst - (char *)s->v[0].iov_base);
    s->n = 1;
    return dst;
}

void tg_spans_add(tg_spans_t *s, const char *p, size_t len)
{
    if (len == 0)
        return;
    s->len += len;
    if (s->n > 0) {
        struct iovec *last = &s->v[s->n - 1];
        if ((char *)last->iov_base + last->iov_len == p) {
            last->iov_len += len;
            return;
        }
    }
    if (s->n == TG_SPANS_MAX) {
        char *dst = spans_compact(s);
        memmove(dst, p, len);
        s->v[0].iov_len += len;
        return;
    }
    s->v[s->n].iov_base = (void *)p;
    s->v[s->n].iov_len = len;
    s->n++;
}

void tg_spans_prepend(tg_spans_t *s, const char *p, size_t len)
{
    if (len == 0)
        return;
    if (s->n == TG_SPANS_MAX)
        spans_compact(s);
    memmove(&s->v[1], &s->v[0], (size_t)s->n * sizeof(s->v[0]));
    s->v[0].iov_base = (void *)p;
    s->v[0].iov_len = len;
    s->n++;
    s->len += len;
}
