/* @public Media types by file extension, for the static file handler:
 * a table read from a mime.types file (/etc/mime.types: "type ext ext ...")
 * or built from a `types { }` block, looked up case-insensitively. Built at
 * config time in the config arena; read-only after. */
#ifndef TG_MIME_H
#define TG_MIME_H

#include "str.h"
#include "arena.h"

typedef struct {
    tg_str_t ext, type; /* ext lowercase */
} tg_mime_entry_t;

typedef struct {
    tg_mime_entry_t *v; /* sorted by ext once finished */
    size_t n;
    int sorted;
} tg_mime_t;

/* Add one extension (copied, lowercased) for `type` (copied). A later entry
 * for the same extension wins, as in nginx. 0 or -1 (out of memory). */
int tg_mime_add(tg_arena_t *a, tg_mime_t *m, tg_str_t type, tg_str_t ext);
/* Read a mime.types file into m. 0, or -1 when it cannot be read (errno). */
int tg_mime_load_file(tg_arena_t *a, tg_mime_t *m, const char *path);
/* Sort for lookups; call once after the last add. */
void tg_mime_finish(tg_mime_t *m);
/* The type of a file name's extension (after its last '.' in the last path
 * segment), or a NULL string when there is none or it is not listed. */
tg_str_t tg_mime_find(const tg_mime_t *m, tg_str_t name);
/* Is `type` text a charset parameter belongs to (text/..., JavaScript, JSON)? */
int tg_mime_is_text(tg_str_t type);

#endif
