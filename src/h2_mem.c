/* nghttp2's allocator for one HTTP/2 connection: see h2_mem.h.
 *
 * Why: an idle HTTP/2 connection holds nghttp2's session, ~25.5 KB
 * (contrib/bench/h2_session_mem), 16 KB of it the frame buffer the session
 * allocates when it is made and keeps: frames are serialized into it, and
 * the small ones of small requests reach its first page only. From malloc,
 * the block lands on pages the worker touched before (handshake buffers),
 * so all of it is resident; mapped on its own, only the pages frames reached
 * are, and madvise(MADV_DONTNEED) gives those back when the connection goes
 * idle after frames past the first page (large responses). Its contents then
 * are dead: an idle session has no frame half sent.
 *
 * Every block has a header: its size, and whether it is mapped. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include "h2_mem.h"

typedef struct {
    size_t size;
    size_t mapped; /* the mapping's length, 0 for a malloc block */
} head_t;

#define HEAD sizeof(head_t)

static size_t page_size(void)
{
    static size_t ps;
    if (ps == 0)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static void big_track(tg_h2_mem_t *m, uint8_t *base, size_t len)
{
    for (int i = 0; i < TG_H2_MEM_BIGS; i++)
        if (m->big[i].base == NULL) {
            m->big[i].base = base;
            m->big[i].len = len;
            m->big[i].dirty = 0;
            return;
        }
    /* more big blocks than tracked: mapped all the same, never released */
}

static void big_untrack(tg_h2_mem_t *m, uint8_t *base)
{
    for (int i = 0; i < TG_H2_MEM_BIGS; i++)
        if (m->big[i].base == base)
            m->big[i].base = NULL;
}

/* A block of n bytes (zeroed if `zero`), or NULL. */
static void *block_new(tg_h2_mem_t *m, size_t n, int zero)
{
    if (n > SIZE_MAX - HEAD - page_size())
        return NULL;
    head_t *h;
    if (n < TG_H2_MEM_BIG) {
        h = zero ? calloc(1, HEAD + n) : malloc(HEAD + n);
        if (h == NULL)
            return NULL;
        *h = (head_t){n, 0};
    } else {
        size_t len = (HEAD + n + page_size() - 1) & ~(page_size() - 1);
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        h = p; /* fresh mappings are zero */
        *h = (head_t){n, len};
        big_track(m, p, len);
    }
    return h + 1;
}

static void block_free(tg_h2_mem_t *m, void *p)
{
    if (p == NULL)
        return;
    head_t *h = (head_t *)p - 1;
    if (h->mapped) {
        big_untrack(m, (uint8_t *)h);
        munmap(h, h->mapped);
    } else {
        free(h);
    }
}

static void *mem_malloc(size_t n, void *ud)
{
    return block_new(ud, n, 0);
}

static void *mem_calloc(size_t k, size_t n, void *ud)
{
    if (n && k > SIZE_MAX / n)
        return NULL;
    return block_new(ud, k * n, 1);
}

static void mem_free(void *p, void *ud)
{
    block_free(ud, p);
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    if (p == NULL)
        return block_new(ud, n, 0);
    head_t *h = (head_t *)p - 1;
    if (!h->mapped && n < TG_H2_MEM_BIG) {
        head_t *q = realloc(h, HEAD + n);
        if (q == NULL)
            return NULL;
        q->size = n;
        return q + 1;
    }
    void *q = block_new(ud, n, 0);
    if (q == NULL)
        return NULL;
    memcpy(q, p, h->size < n ? h->size : n);
    block_free(ud, p);
    return q;
}

void tg_h2_mem_init(tg_h2_mem_t *m)
{
    memset(m, 0, sizeof(*m));
    m->mem = (nghttp2_mem){m, mem_malloc, mem_free, mem_calloc, mem_realloc};
}

void tg_h2_mem_sent(tg_h2_mem_t *m, const uint8_t *p, size_t n)
{
    for (int i = 0; i < TG_H2_MEM_BIGS; i++) {
        uint8_t *b = m->big[i].base;
        if (b && p >= b && p < b + m->big[i].len && p + n > b + page_size())
            m->big[i].dirty = 1;
    }
}

void tg_h2_mem_idle(tg_h2_mem_t *m)
{
    for (int i = 0; i < TG_H2_MEM_BIGS; i++)
        if (m->big[i].base && m->big[i].dirty) {
            /* the first page holds the header (and the first frames) */
            madvise(m->big[i].base + page_size(), m->big[i].len - page_size(), MADV_DONTNEED);
            m->big[i].dirty = 0;
        }
}
