/* @public The response cache's store: entries in a shared-memory zone
 * (src/shm.c) that every worker sees and that a reload keeps, built on the
 * shared hash table (src/shm_table.c). An entry is its key, the stored
 * response head (status, header lines) and its body, in one byte run over
 * the entry's slot and a chain of raw slots; its metadata (times, lengths,
 * state) sits at the start of the slot.
 *
 * Life of an entry: a miss that will fetch takes the key's fill lock (a new
 * entry in state LOCKED); the fetch then writes the head (FILLING) and body
 * rounds, each published at once by its committed length, so readers in any
 * worker follow the body as it comes in; the end makes it READY, a failure
 * removes it. A LOCKED entry whose lock ran out, or a FILLING one that made
 * no progress for a minute (or the lock time when longer: its writer died),
 * is taken over by the next miss.
 *
 * Readers copy bytes out under the table lock, round by round, and check
 * the entry's generation each time: an entry evicted or replaced meanwhile
 * is noticed, never read half reused. Memory is bounded by the zone: entries
 * are evicted least recently used first (never one being filled), within
 * the slots and `max_entries`; an entry larger than `max_entry` bytes is
 * not kept in memory: without disk storage it is not stored, with it its
 * body goes to a file (src/cache_disk.c; the entry names its file by `fid`,
 * `max_disk` bounds the files' bytes). `inactive` removes entries not
 * looked up for that long, at the next lookups. */
#ifndef TG_CACHE_STORE_H
#define TG_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "str.h"
#include "shm.h"

typedef struct tg_cache_store_s tg_cache_store_t;

enum { TG_CACHE_LOCKED = 1, TG_CACHE_FILLING, TG_CACHE_READY };

#define TG_CACHE_F_MUST_REVALIDATE 0x01 /* must-revalidate, proxy-revalidate, s-maxage */
#define TG_CACHE_F_NO_CACHE 0x02        /* revalidate before every use */
#define TG_CACHE_F_VARY 0x04            /* a Vary record: its head lists the header names */
#define TG_CACHE_F_UPDATING 0x08        /* a refresh of this entry is under way */
#define TG_CACHE_F_AUTH_OK 0x10         /* may answer requests with Authorization (RFC 9111 3.5) */
/* the last refresh failed: no answer (connect, reset), a timeout, a 5xx */
#define TG_CACHE_F_ERR_ERROR 0x20
#define TG_CACHE_F_ERR_TIMEOUT 0x40
#define TG_CACHE_F_ERR_5XX 0x80
#define TG_CACHE_F_ERRORS (TG_CACHE_F_ERR_ERROR | TG_CACHE_F_ERR_TIMEOUT | TG_CACHE_F_ERR_5XX)
/* compressed variants were stored beside it (modules/cache_variant.c), under
 * its key + "\x01\x03" + the coding: a purge of its key takes them too */
#define TG_CACHE_F_VARIANTS 0x100

/* What the cache knows of a response, kept with the entry. Times are Unix
 * seconds (ev_now). */
typedef struct {
    int32_t status;
    uint32_t flags;        /* TG_CACHE_F_* */
    double stored;         /* when the response was received */
    double age;            /* its Age when received (RFC 9111 4.2.3: corrected initial age) */
    double fresh_until;    /* stored + freshness lifetime - age */
    double swr_until;      /* end of stale-while-revalidate (fresh_until when none) */
    double sie_until;      /* end of stale-if-error */
} tg_cache_meta_t;

/* An entry as a lookup or a read saw it. */
typedef struct {
    uint32_t ref, gen; /* where; the generation tells a reused slot */
    int state;         /* TG_CACHE_LOCKED ... READY */
    uint32_t hlen;     /* head bytes */
    uint64_t blen;     /* body bytes committed */
    int64_t clen;      /* announced body length, -1 unknown */
    uint64_t fid;      /* the body is in this file of the zone's directory (0: in memory) */
    tg_cache_meta_t meta;
} tg_cache_entry_t;

/* Counters per zone, summed over every worker (atomic adds in the zone). */
typedef enum {
    TG_CACHE_C_HIT = 0,
    TG_CACHE_C_MISS,
    TG_CACHE_C_STALE,       /* stale entries served */
    TG_CACHE_C_REVALIDATED, /* entries refreshed by a 304 */
    TG_CACHE_C_COLLAPSED,   /* requests served from another request's fill */
    TG_CACHE_C_BYPASS,
    TG_CACHE_C_STORED,      /* responses stored */
    TG_CACHE_C_EVICTED,
    TG_CACHE_C_VARIANT_STORED, /* compressed variants stored */
    TG_CACHE_C_VARIANT_SERVED, /* hits answered from a compressed variant */
    TG_CACHE_C_COUNT
} tg_cache_counter_t;

typedef struct {
    uint64_t c[TG_CACHE_C_COUNT];
    uint64_t entries, bytes; /* gauges: entries (Vary records included), bytes of slots used */
    uint64_t size, max_entries;
    uint64_t disk_bytes, disk_entries, max_disk; /* gauges: the files, their bytes; the limit */
    double hit_ratio; /* answers from the cache (hit, stale, collapsed, revalidated) / lookups */
} tg_cache_stats_t;

/* The owner tag of a cache zone (src/shm.h); its store starts at its data. */
#define TG_CACHE_ZONE_TAG "cache"
/* The store of a zone, NULL when the zone is not a cache's. */
tg_cache_store_t *tg_cache_store_of(const tg_shm_zone_t *z);

/* Lay out a store in a zone's memory (in the master at config load). A
 * block holding a store of the same shape is taken as it is (a reload).
 * NULL when the block is too small. */
tg_cache_store_t *tg_cache_store_init(void *mem, size_t size, uint32_t max_entries,
                                      uint64_t max_entry);

/* The zone's options (in the master at config load, a reload included):
 * entries not looked up for `inactive` seconds go (0: never); with `dir`,
 * bodies of entries over max_entry (or of unknown length) are kept in files
 * there, up to `max_disk` bytes of files. -1 when dir is too long, -2
 * when the zone has entries on disk in another directory (a reload). */
#define TG_CACHE_DIR_MAX 512
int tg_cache_store_options(tg_cache_store_t *s, double inactive, const char *dir,
                           uint64_t max_disk);
/* The bytes before the key in an entry's file (src/cache_disk.c). */
#define TG_CACHE_FILE_HEAD 128
/* The names of file `fid` (tg_cache_file_path's `kind`): the entry's file,
 * its temporary name while being filled, its head file (a head a 304
 * updated, src/cache_disk.c). */
enum { TG_CACHE_PATH_BODY = 0, TG_CACHE_PATH_TMP = 1, TG_CACHE_PATH_HEAD = 2 };
int tg_cache_file_path(tg_cache_store_t *s, uint64_t fid, int kind, char *buf, size_t len);
const char *tg_cache_store_dir(tg_cache_store_t *s);
/* 1 the first time it is asked of a zone with disk storage (the master
 * then reads the files back), else 0. */
int tg_cache_store_claim_index(tg_cache_store_t *s);
/* A READY entry for a file read back (its files are `dsize` bytes): 0, -1
 * no room (or a newer response of the key is in): the caller deletes the
 * file. */
int tg_cache_store_index(tg_cache_store_t *s, tg_str_t key, tg_str_t head,
                         const tg_cache_meta_t *m, uint64_t fid, uint64_t blen, uint64_t dsize,
                         double now);

/* Look `key` up at time `now`. Returns 1 and *e when an entry is there
 * (any state); 0 when there is none and, if lock_s > 0, a fill lock was
 * taken (e->state LOCKED, the caller fetches and fills, lock held until
 * now + lock_s); -1 when none and no lock could be had (no room). An
 * entry in LOCKED or FILLING state whose lock ran out is dropped first. A
 * READY entry is moved to the head of the recency list. */
int tg_cache_lookup(tg_cache_store_t *s, tg_str_t key, double now, double lock_s,
                    tg_cache_entry_t *e);
/* A new LOCKED entry for `key` in front of the one it will replace (a
 * stale entry refreshed: the old one stays readable by its holders, and is
 * dropped when the new one is READY). 0 and *e, -1 no room. */
int tg_cache_lock(tg_cache_store_t *s, tg_str_t key, double now, double lock_s,
                  tg_cache_entry_t *e);
/* The fill of a LOCKED entry: the head (FILLING). `clen` the announced
 * body length (-1: unknown). 0; -1 when the entry is gone or too large
 * (it is then removed). */
int tg_cache_fill_head(tg_cache_store_t *s, tg_cache_entry_t *e, const tg_cache_meta_t *m,
                       tg_str_t head, int64_t clen, double now);
/* Append body bytes and publish them. 0; -1: gone, too large or no room
 * (removed). */
int tg_cache_fill_body(tg_cache_store_t *s, tg_cache_entry_t *e, const struct iovec *v, int n,
                       double now);
/* An entry on disk (e->fid): `n` more body bytes are in its file, publish
 * them (room is made on disk). 0; -1: gone or no room (removed). */
int tg_cache_fill_commit(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t n, double now);
/* A fill in memory that `add` more body bytes take over max_entry, in a
 * zone with disk storage: a file id for it (the caller writes the entry so
 * far to that file, then tg_cache_to_disk), else 0. */
uint64_t tg_cache_disk_due(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t add);
/* The entry's body is now in file `fid`: its memory beyond the key and
 * `head` (the entry's own) is freed. 0; -1: gone or no room on disk
 * (removed; the caller deletes the file). */
int tg_cache_to_disk(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t fid, tg_str_t head);
/* The end of a fill: `ok` makes the entry READY (and drops an older entry
 * of the same key it replaces), else the entry is removed. */
void tg_cache_fill_end(tg_cache_store_t *s, tg_cache_entry_t *e, int ok);
/* Copy up to `len` bytes at `off` of the entry's head + body run (the head
 * is at 0, the body at e->hlen; of an entry on disk only the head) into `buf`, and refresh *e's state and
 * lengths. Returns the bytes copied (0: none committed there yet), or -1
 * when the entry is gone (its fill failed, or it was taken out unpinned). */
long tg_cache_read(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t off, void *buf, size_t len);
/* A request serving the entry's body pins it, and unpins it when done: a
 * pinned entry that is replaced, purged or expires leaves the index at
 * once but keeps its body for its readers until the last unpins it (not
 * evicted meanwhile). 0, -1 gone. */
int tg_cache_pin(tg_cache_store_t *s, tg_cache_entry_t *e, double now);
void tg_cache_unpin(tg_cache_store_t *s, tg_cache_entry_t *e);
/* Replace the metadata of a READY entry (a 304 refreshed it; UPDATING
 * set or cleared). 0, -1 gone. */
int tg_cache_update_meta(tg_cache_store_t *s, tg_cache_entry_t *e, const tg_cache_meta_t *m);
/* A 304 updated the head of READY entry *e (RFC 9111 4.3.4): a new READY
 * entry of its key takes its place, in one step under the lock, with
 * `head`, metadata `m` and the same body (copied when in memory; when on
 * disk, its file passes to the new entry, whose file bytes are `dsize`)
 * and the same generation (the same response: its compressed variants,
 * made from that generation, stay valid). The old entry leaves the index
 * and stays for the requests still serving it (tg_cache_pin). 0 and *e the
 * new entry; -1 gone, or no room for the copy (nothing changed). */
int tg_cache_rehead(tg_cache_store_t *s, tg_cache_entry_t *e, const tg_cache_meta_t *m,
                    tg_str_t head, uint64_t dsize, double now);
/* Set TG_CACHE_F_UPDATING on a READY entry unless it is set already (and
 * not run out: `until` is the claim's end), clearing the error flags of an
 * earlier refresh: 1 when this caller set it (it refreshes), 0 when
 * somebody else did, -1 gone. */
int tg_cache_claim_update(tg_cache_store_t *s, tg_cache_entry_t *e, double until);
/* Set then clear flags of an entry's metadata. 0, -1 gone. */
int tg_cache_set_flags(tg_cache_store_t *s, tg_cache_entry_t *e, uint32_t set, uint32_t clear);
/* Remove entries (those being filled too: their fill fails): TG_CACHE_PURGE_KEY
 * the entry of key `arg`, its Vary variants and compressed variants; _PREFIX every key starting
 * with `arg`; _TAG every response whose Surrogate-Key (space-separated) or
 * Cache-Tag (comma-separated) lists `arg` (heads over TG_CACHE_TAG_HEAD_MAX
 * bytes are not searched). Returns how many went. */
enum { TG_CACHE_PURGE_KEY = 0, TG_CACHE_PURGE_PREFIX, TG_CACHE_PURGE_TAG };
#define TG_CACHE_TAG_HEAD_MAX 16384
long tg_cache_purge(tg_cache_store_t *s, tg_str_t arg, int how);

void tg_cache_count(tg_cache_store_t *s, tg_cache_counter_t c);
void tg_cache_stats(tg_cache_store_t *s, tg_cache_stats_t *out);

#endif
