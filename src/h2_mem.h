/* nghttp2's allocator for one HTTP/2 connection (h2_mem.c): blocks of
 * TG_H2_MEM_BIG bytes and more (the session's 16 KB frame buffer) are mapped
 * on their own, so that the pages no frame has reached take no memory, and
 * the pages frames did reach go back to the kernel when the connection is
 * idle. Everything else comes from malloc. Inside the HTTP/2 codec only. */
#ifndef TG_H2_MEM_H
#define TG_H2_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <nghttp2/nghttp2.h>

#define TG_H2_MEM_BIG 8192
#define TG_H2_MEM_BIGS 2 /* mapped blocks tracked per connection */

typedef struct {
    nghttp2_mem mem; /* handed to nghttp2_session_server_new3 */
    struct {
        uint8_t *base; /* the mapping; the block starts after a header */
        size_t len;
        int dirty; /* pages past the first were written since the last release */
    } big[TG_H2_MEM_BIGS];
} tg_h2_mem_t;

/* Ready m->mem for one session (m stays where it is while the session lives). */
void tg_h2_mem_init(tg_h2_mem_t *m);
/* nghttp2_session_mem_send returned [p, p+n): note the pages it reached. */
void tg_h2_mem_sent(tg_h2_mem_t *m, const uint8_t *p, size_t n);
/* The connection is idle: the written pages of its mapped blocks go back. */
void tg_h2_mem_idle(tg_h2_mem_t *m);

#endif
