/* OpenSSL's allocator: see tls_mem.h.
 *
 * Why: a TLS connection's record buffers (~17 KB to read, ~17 KB to write)
 * are released as soon as they are empty (SSL_MODE_RELEASE_BUFFERS, so an
 * idle connection holds none of them), which means a malloc and a free of
 * each for every request of a keep-alive connection: ~1,300 instructions per
 * request in glibc's large-chunk paths (contrib/bench/tls-instructions,
 * static 1 KB over TLS), and fresh cache lines each time. The blocks of that
 * size class that OpenSSL frees go to a short per-thread list instead, and
 * the next allocation of the class takes the most recent (still in the CPU's
 * cache). At most CACHE_MAX blocks per thread: the memory an idle worker
 * keeps for it is bounded (~67 KB), whatever the number of connections. A
 * connection holds its buffers only while a record is read or written, and
 * the worker runs one connection at a time: a busy worker uses one or two.
 * Not under ASan, which would lose sight of use after free. */
#include <malloc.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include "tls_mem.h"

/* The record buffers' size class: libssl asks for 16 KB of plaintext plus
 * its record overhead and alignment (16,709 bytes to read, 16,704 to write
 * with OpenSSL 3.0). */
#define CLASS_MIN (16 * 1024)
#define CLASS_MAX (20 * 1024)
#if defined(__SANITIZE_ADDRESS__)
#define CACHE_MAX 0
#else
#define CACHE_MAX 4
#endif

#if CACHE_MAX > 0
static __thread struct {
    void *block[CACHE_MAX]; /* most recent last */
    int n;
} cache;
#endif

static void *mem_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
#if CACHE_MAX > 0
    if (n >= CLASS_MIN && n <= CLASS_MAX && cache.n > 0) {
        void *p = cache.block[cache.n - 1];
        if (malloc_usable_size(p) >= n) {
            cache.n--;
            return p;
        }
    }
#endif
    return malloc(n);
}

static void *mem_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return realloc(p, n);
}

static void mem_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
#if CACHE_MAX > 0
    if (p && cache.n < CACHE_MAX) {
        size_t n = malloc_usable_size(p);
        if (n >= CLASS_MIN && n <= CLASS_MAX) {
            cache.block[cache.n++] = p;
            return;
        }
    }
#endif
    free(p);
}

int tg_tls_mem_init(void)
{
    return CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free) ? 0 : -1;
}
