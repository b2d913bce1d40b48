/* @public The response cache's files (src/cache_store.h keeps the index):
 * a zone with `path=` keeps the bodies of large entries in files of its
 * directory, one per entry, while the key, the metadata and the response head stay in the
 * shared zone.
 *
 * An entry goes to a file when its announced length is over the memory
 * limit (max_entry), or when its body passes that limit (what it has so far
 * is then copied to the file and its memory freed).
 *
 * A file is written by the request that fills the entry, under a temporary
 * name ("tmp.ID"), and renamed to its final name ("ID", 16 hex digits) only
 * once the body is complete; followers in any worker read the temporary
 * file up to the committed length meanwhile. It starts with a header (the
 * key and head lengths, the body length, the metadata, a SipHash of the
 * header, key and head), then the key, the head, the body. A 304 that
 * updates the head (RFC 9111 4.3.4) leaves that file alone: the new head
 * and metadata go to a head file beside it ("ID.h": the same header, the
 * key and the head), written under a temporary name and renamed over the
 * last one. At start the master reads the directory back into a new zone:
 * temporary files (a fill a crash cut) go, as do files whose header, sum
 * or length do not check and head files of no entry; an entry with a good
 * head file comes back with its head and metadata.
 *
 * Reads are pread(2) of at most the caller's buffer at a time, on the loop:
 * the pages of a file being served are usually in the page cache (it was
 * just written, or is read sequentially with read-ahead). */
#ifndef TG_CACHE_DISK_H
#define TG_CACHE_DISK_H

#include <stdint.h>
#include <sys/uio.h>
#include "cache_store.h"
#include "user.h"

/* A request's open file of an entry (zeroed: none). */
typedef struct {
    int fd;
    uint64_t fid;           /* the entry's file it is open on */
    uint64_t base;          /* where the body starts in it */
    unsigned open : 1;
    unsigned writing : 1;   /* the fill's temporary file */
} tg_cache_file_t;

/* tg_cache_fill_head, then, for an entry the store put on disk, its
 * temporary file with the header, `key` and `head`. 0, -1 (not stored). */
int tg_cache_disk_fill_head(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                            const tg_cache_meta_t *m, tg_str_t key, tg_str_t head, int64_t clen,
                            double now);
/* Append body bytes: to the file of an entry on disk, else into the zone
 * (tg_cache_fill_body); an entry of `key` in memory that they take over
 * max_entry moves to a file first. 0, -1 (the entry is gone). */
int tg_cache_disk_fill_body(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                            tg_str_t key, const struct iovec *v, int n, double now);
/* The end of a fill (tg_cache_fill_end): a complete file gets its final
 * header and name before the entry is READY. */
void tg_cache_disk_fill_end(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                            int ok);
/* A 304 updated the head of READY entry e (of `key`) to `head` and its
 * metadata to `m`: tg_cache_rehead, and for an entry on disk its head file
 * ("ID.h": a header, the key and the head, no body) is written beside its
 * file, which is left as it is. Written under a temporary name and renamed,
 * so that a start reads back either the old head or the new one, whole. 0
 * and *e the entry now, -1 (nothing changed in memory). */
int tg_cache_disk_rehead(tg_cache_store_t *s, tg_cache_entry_t *e, tg_str_t key,
                         const tg_cache_meta_t *m, tg_str_t head, double now);
/* tg_cache_read for any entry: the body of one on disk comes from its file
 * (opened at the first read, the temporary one while it is being filled). */
long tg_cache_disk_read(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                        uint64_t off, void *buf, size_t len);
void tg_cache_disk_close(tg_cache_file_t *f);

/* At config load: the directory, made 0700 if missing and given to the
 * workers' user `u`. NULL, or an error message in `err`. */
const char *tg_cache_disk_prepare(const char *dir, const tg_user_t *u, char *err, size_t len);
/* In the master before workers start, once per new zone: read the files of
 * its directory back as entries, delete temporary and broken files. Returns
 * the entries read back. */
long tg_cache_disk_index(tg_cache_store_t *s, double now);

#endif
