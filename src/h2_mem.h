/* nghttp2's allocator for one HTTP/2 connection (h2_mem.c): blocks of
 * TG_H2_MEM_BIG bytes and more (the session's 16 KB frame buffer, its 4 KB
 * stream map) are mapped on their own, so that the pages nothing has reached
 * take no memory, and when the connection rests (idle for a while) the pages
 * of the frame buffer and the pages of other mapped blocks that hold only
 * zeros go back to the kernel. Everything else comes from malloc. Inside the
 * HTTP/2 codec only. */
#ifndef TG_H2_MEM_H
#define TG_H2_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <nghttp2/nghttp2.h>

#define TG_H2_MEM_BIG 4096
#define TG_H2_MEM_BIGS 4 /* mapped blocks per connection; more come from malloc */

typedef struct {
    nghttp2_mem mem; /* handed to nghttp2_session_server_new3 */
    struct {
        uint8_t *base; /* the mapping, which is the block (page-aligned) */
        size_t size;   /* the block's size */
        size_t len;    /* the mapping's length */
        int frames;    /* the frame buffer: its contents are dead between frames */
        int dirty;     /* frames were written since the last release */
    } big[TG_H2_MEM_BIGS];
} tg_h2_mem_t;

/* Ready m->mem for one session (m stays where it is while the session lives). */
void tg_h2_mem_init(tg_h2_mem_t *m);
/* nghttp2_session_mem_send returned [p, p+n): note the block frames go to. */
void tg_h2_mem_sent(tg_h2_mem_t *m, const uint8_t *p, size_t n);
/* The connection rests, no frame half sent: the frame buffer's pages and the
 * all-zero pages of the other mapped blocks go back. */
void tg_h2_mem_idle(tg_h2_mem_t *m);

#endif
