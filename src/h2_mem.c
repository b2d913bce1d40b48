/* nghttp2's allocator for one HTTP/2 connection: see h2_mem.h.
 *
 * Why: an idle HTTP/2 connection holds nghttp2's session, ~25.5 KB
 * (contrib/bench/h2_session_mem): 16 KB of it the frame buffer the session
 * allocates when it is made and keeps (frames are serialized into it, the
 * small ones of small requests reach its first page only), 4 KB its stream
 * map (256 buckets, never shrunk). From malloc, these blocks land on pages
 * the worker touched before (handshake buffers), so all of them is resident;
 * mapped on their own, only the pages something reached are, and
 * madvise(MADV_DONTNEED) gives pages back when the connection rests: the
 * frame buffer's (an idle session has no frame half sent: its contents are
 * dead), and the pages of the other blocks that hold only zeros (an empty
 * stream map), which read back as the same zeros. The pages come back on the
 * next frame or stream, zeroed by the kernel.
 *
 * Small blocks (up to 1 KB with their header) come in size classes of 64
 * bytes, and the worker keeps freed ones (up to CACHE_MAX bytes) for the
 * next: every request allocates and frees about five (its stream, its
 * header fields, its frames' queue items), in bursts of a round's streams
 * that overflow malloc's per-size cache: ~1,000 instructions of malloc and
 * free per request otherwise. Not under ASan, which would lose sight of
 * use after free.
 *
 * A malloc block has a header in front (its size); a mapped block has none:
 * it is found by its address in the connection's table. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include "h2_mem.h"

typedef struct {
    size_t size;
    size_t pad; /* keeps the block 16-byte aligned, as malloc's */
} head_t;

#define HEAD sizeof(head_t)
#define CLASS 64    /* small blocks' size step (header included) */
#define CLASSES 16  /* small: up to CLASSES x CLASS bytes */
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_MAX 0
#else
#define CACHE_MAX (256 * 1024) /* free small blocks the worker keeps, bytes */
#endif

/* The worker's free small blocks by class, linked through their first word.
 * nghttp2 runs on the worker's loop thread only. */
static void *cache[CLASSES];
static size_t cached;

/* The class of a block of n bytes, or -1: not small. */
static int size_class(size_t n)
{
    return n <= CLASSES * CLASS - HEAD ? (int)((HEAD + n - 1) / CLASS) : -1;
}

static size_t page_size(void)
{
    static size_t ps;
    if (ps == 0)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* The table slot of the mapped block p, or -1: p is a malloc block. */
static int big_find(const tg_h2_mem_t *m, const void *p)
{
    for (int i = 0; i < TG_H2_MEM_BIGS; i++)
        if (m->big[i].base == p)
            return i;
    return -1;
}

/* A mapped block of n bytes (zero), or NULL: the table is full or mmap failed. */
static void *big_new(tg_h2_mem_t *m, size_t n)
{
    int i = big_find(m, NULL);
    if (i < 0)
        return NULL;
    size_t len = (n + page_size() - 1) & ~(page_size() - 1);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    m->big[i].base = p;
    m->big[i].size = n;
    m->big[i].len = len;
    m->big[i].frames = m->big[i].dirty = 0;
    return p;
}

/* A block of n bytes (zeroed if `zero`), or NULL. */
static void *block_new(tg_h2_mem_t *m, size_t n, int zero)
{
    if (n > SIZE_MAX - HEAD - page_size())
        return NULL;
    if (n >= TG_H2_MEM_BIG) {
        void *p = big_new(m, n); /* fresh mappings are zero */
        if (p)
            return p;
    }
    int k = size_class(n);
    head_t *h;
    if (k >= 0 && cache[k]) {
        h = cache[k];
        cache[k] = *(void **)h;
        cached -= (size_t)(k + 1) * CLASS;
        if (zero)
            memset(h + 1, 0, n);
    } else {
        size_t sz = k >= 0 ? (size_t)(k + 1) * CLASS : HEAD + n;
        h = zero ? calloc(1, sz) : malloc(sz);
        if (h == NULL)
            return NULL;
    }
    h->size = n;
    return h + 1;
}

static size_t block_size(const tg_h2_mem_t *m, void *p)
{
    int i = big_find(m, p);
    return i >= 0 ? m->big[i].size : ((head_t *)p - 1)->size;
}

static void block_free(tg_h2_mem_t *m, void *p)
{
    if (p == NULL)
        return;
    int i = big_find(m, p);
    if (i >= 0) {
        munmap(p, m->big[i].len);
        m->big[i].base = NULL;
        return;
    }
    head_t *h = (head_t *)p - 1;
    int k = size_class(h->size);
    if (k >= 0 && cached + (size_t)(k + 1) * CLASS <= CACHE_MAX) {
        *(void **)h = cache[k];
        cache[k] = h;
        cached += (size_t)(k + 1) * CLASS;
        return;
    }
    free(h);
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
    tg_h2_mem_t *m = ud;
    if (p == NULL)
        return block_new(m, n, 0);
    if (big_find(m, p) < 0) {
        head_t *h = (head_t *)p - 1;
        int k = size_class(h->size);
        if (k >= 0 && k == size_class(n)) {
            h->size = n; /* fits its class */
            return p;
        }
        if (k < 0 && size_class(n) < 0 && n < TG_H2_MEM_BIG) {
            head_t *q = realloc(h, HEAD + n);
            if (q == NULL)
                return NULL;
            q->size = n;
            return q + 1;
        }
    }
    size_t old = block_size(m, p);
    void *q = block_new(m, n, 0);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    block_free(m, p);
    return q;
}

void tg_h2_mem_init(tg_h2_mem_t *m)
{
    memset(m, 0, sizeof(*m));
    m->mem = (nghttp2_mem){m, mem_malloc, mem_free, mem_calloc, mem_realloc};
}

void tg_h2_mem_sent(tg_h2_mem_t *m, const uint8_t *p, size_t n)
{
    (void)n;
    for (int i = 0; i < TG_H2_MEM_BIGS; i++) {
        uint8_t *b = m->big[i].base;
        if (b && p >= b && p < b + m->big[i].len) {
            m->big[i].frames = m->big[i].dirty = 1;
            return;
        }
    }
}

static int page_zero(const uint8_t *p, size_t n)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < n / sizeof(*w); i++)
        if (w[i])
            return 0;
    return 1;
}

void tg_h2_mem_idle(tg_h2_mem_t *m)
{
    size_t ps = page_size();
    for (int i = 0; i < TG_H2_MEM_BIGS; i++) {
        uint8_t *b = m->big[i].base;
        if (b == NULL)
            continue;
        if (m->big[i].frames) {
            if (m->big[i].dirty)
                madvise(b, m->big[i].len, MADV_DONTNEED);
            m->big[i].dirty = 0;
            continue;
        }
        /* a page not resident reads as the shared zero page: no memory */
        for (size_t off = 0; off < m->big[i].len; off += ps)
            if (page_zero(b + off, ps))
                madvise(b + off, ps, MADV_DONTNEED);
    }
}
