/* The response cache's store (see cache_store.h). A zone holds a cs_shared
 * header (the table's, then the store's shape and counters) and the table's
 * 4 KB slots. An entry's slot starts with its cs_entry_t; the key, the head
 * and the body follow in one run (cs_span) over the slot and a chain of raw
 * slots, which grows at its tail as the body comes in. Every function takes
 * the table lock for its whole operation and copies in or out; nothing
 * points into the zone once the lock is released. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cache_store.h"
#include "shm_table.h"

#define CS_MAGIC 0x3430686361677400ULL /* "\0tgcach04" */
#define CS_SLOT 4096                    /* bytes of a slot */
#define CS_DATA (CS_SLOT - TG_SHM_SLOT_HEADER)

typedef struct {
    uint32_t state, gen;
    uint32_t klen, hlen;
    uint64_t blen;
    int64_t clen;
    uint32_t chain, tail; /* raw slots: first and last */
    uint32_t nslots;      /* raw slots in the chain */
    uint32_t pins;        /* requests serving it (tg_cache_pin); CS_DROPPED: out of the index */
    double lock_until; /* LOCKED/FILLING: taken over after this (moved on by progress) */
    double lock_s;
    double atime;  /* last looked up (inactive=) */
    uint64_t fid;  /* the body is in this file (0: in the run) */
    uint64_t dsize; /* bytes of its file */
    double pinned;  /* when last pinned: pins older than CS_PIN_MAX are a dead worker's */
    uint32_t lent;  /* its file went to the newer entry of its key that a 304 made
                       (tg_cache_rehead): it stays for this one's readers, is not its */
    uint32_t pad;
    tg_cache_meta_t meta;
} cs_entry_t;

/* An entry replaced, purged or expired while requests are serving its body
 * leaves the index at once (no lookup finds it) but keeps its slots until
 * the last of them unpins it. A pin of a worker that died is never taken
 * back: such an entry goes CS_PIN_MAX after it was last pinned, when room
 * is needed (a reader still on it then is cut, as before pins). */
#define CS_DROPPED 0x80000000u
#define CS_PIN_MAX 600.0

#define CS_INLINE (CS_DATA - sizeof(cs_entry_t))

struct tg_cache_store_s {
    tg_shm_table_t t; /* first: the shared table */
    uint64_t max_entries, max_entry;
    uint32_t gen; /* the last generation handed out */
    uint32_t indexed; /* the files were read back into this zone */
    uint64_t counters[TG_CACHE_C_COUNT];
    double inactive;  /* s: entries not looked up for this long go (0: never) */
    uint64_t max_disk; /* 0: no disk storage */
    uint64_t disk_bytes, disk_entries;
    uint64_t fseq; /* the last file id handed out */
    uint64_t resets; /* t.resets when the disk gauges were last right */
    double clock;    /* `now` of the last lookup (for CS_PIN_MAX) */
    char dir[TG_CACHE_DIR_MAX];
};

static cs_entry_t *entry(tg_cache_store_t *s, uint32_t ref)
{
    return tg_shm_table_data(&s->t, ref);
}

static tg_shm_span_t span(tg_cache_store_t *s, uint32_t ref)
{
    cs_entry_t *e = entry(s, ref);
    return (tg_shm_span_t){(char *)(e + 1), CS_INLINE, e->chain};
}

tg_cache_store_t *tg_cache_store_init(void *mem, size_t size, uint32_t max_entries,
                                      uint64_t max_entry)
{
    if (size < sizeof(tg_cache_store_t) + 64 + 16 * CS_SLOT ||
        tg_shm_table_init(mem, size, sizeof(tg_cache_store_t), CS_DATA, 0, CS_MAGIC) < 0)
        return NULL;
    tg_cache_store_t *s = mem;
    s->max_entries = max_entries ? max_entries : s->t.capacity;
    s->max_entry = max_entry;
    return s;
}

int tg_cache_store_options(tg_cache_store_t *s, double inactive, const char *dir,
                           uint64_t max_disk)
{
    if (dir && strlen(dir) >= sizeof(s->dir))
        return -1;
    /* the entries on disk are named in the directory they are in */
    if (__atomic_load_n(&s->disk_entries, __ATOMIC_RELAXED) && strcmp(s->dir, dir ? dir : ""))
        return -2;
    s->inactive = inactive;
    s->max_disk = dir ? max_disk : 0;
    snprintf(s->dir, sizeof(s->dir), "%s", dir ? dir : "");
    return 0;
}

int tg_cache_file_path(tg_cache_store_t *s, uint64_t fid, int kind, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s%016llx%s", s->dir, kind == TG_CACHE_PATH_TMP ? "tmp." : "",
                     (unsigned long long)fid, kind == TG_CACHE_PATH_HEAD ? ".h" : "");
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* How long a fill with its head in may go without progress before the next
 * lookup takes it for dead: its pace is its client's, which may pause for a
 * while, and its followers are cut off when it is taken over. */
#define CS_FILL_GRACE 60.0

static double fill_grace(const cs_entry_t *e)
{
    return e->lock_s > CS_FILL_GRACE ? e->lock_s : CS_FILL_GRACE;
}

static int lock(tg_cache_store_t *s)
{
    if (tg_shm_table_lock(&s->t) < 0)
        return -1;
    if (s->t.resets != s->resets) {
        /* emptied after a worker died holding the lock: the files it had
         * are no entries now (read back at the next start) */
        s->resets = s->t.resets;
        s->disk_bytes = s->disk_entries = 0;
    }
    return 0;
}

static void unlock(tg_cache_store_t *s)
{
    tg_shm_table_unlock(&s->t);
}

static uint64_t key_hash(tg_cache_store_t *s, tg_str_t key)
{
    uint64_t h[2];
    tg_siphash128(s->t.seed, key.p, key.len, h);
    return h[0];
}

static int key_eq(tg_shm_table_t *t, uint32_t ref, const void *key, void *ctx)
{
    (void)ctx;
    tg_cache_store_t *s = (tg_cache_store_t *)t;
    const tg_str_t *k = key;
    tg_shm_span_t sp = span(s, ref);
    return !(entry(s, ref)->pins & CS_DROPPED) && entry(s, ref)->klen == k->len &&
           tg_shm_span_io(t, &sp, 0, (void *)k->p, k->len, TG_SHM_SPAN_CMP) == 0;
}

static const tg_shm_table_ops_t ops = {key_eq, NULL};

/* An entry on disk goes: its file (either name while it is being filled:
 * the writer renames it at the end) and its bytes. */
static void file_drop(tg_cache_store_t *s, cs_entry_t *e)
{
    char path[TG_CACHE_DIR_MAX + 32];
    if (e->state != TG_CACHE_READY && tg_cache_file_path(s, e->fid, TG_CACHE_PATH_TMP, path, sizeof(path)) == 0)
        unlink(path);
    if (tg_cache_file_path(s, e->fid, TG_CACHE_PATH_BODY, path, sizeof(path)) == 0)
        unlink(path);
    /* after the body's: a crash in between leaves a head file with no
     * body, which the next start deletes, never an entry back */
    if (tg_cache_file_path(s, e->fid, TG_CACHE_PATH_HEAD, path, sizeof(path)) == 0)
        unlink(path);
    s->disk_bytes -= e->dsize;
    s->disk_entries--;
    e->fid = 0;
}

static void entry_remove(tg_cache_store_t *s, uint32_t ref)
{
    if (entry(s, ref)->fid && !entry(s, ref)->lent)
        file_drop(s, entry(s, ref));
    tg_shm_table_chain_free(&s->t, entry(s, ref)->chain);
    tg_shm_table_remove(&s->t, ref);
}

/* Is the entry pinned by a request that may still serve it? */
static int pinned(tg_cache_store_t *s, const cs_entry_t *e)
{
    return (e->pins & ~CS_DROPPED) && e->pinned + CS_PIN_MAX > s->clock;
}

/* Take an entry out of the cache: at once, or once its readers are done. */
static void entry_drop(tg_cache_store_t *s, uint32_t ref)
{
    if (pinned(s, entry(s, ref)))
        entry(s, ref)->pins |= CS_DROPPED;
    else
        entry_remove(s, ref);
}

static void copy_out(tg_cache_store_t *s, uint32_t ref, tg_cache_entry_t *out)
{
    cs_entry_t *e = entry(s, ref);
    out->ref = ref;
    out->gen = e->gen;
    out->state = (int)e->state;
    out->hlen = e->hlen;
    out->blen = e->blen;
    out->clen = e->clen;
    out->fid = e->fid;
    out->meta = e->meta;
}

/* The entry `e` names, if it is still that one. */
static cs_entry_t *still(tg_cache_store_t *s, const tg_cache_entry_t *e)
{
    if (!tg_shm_table_is_entry(&s->t, e->ref))
        return NULL;
    cs_entry_t *ce = entry(s, e->ref);
    return ce->gen == e->gen && ce->state != 0 ? ce : NULL;
}

/* Free `n` slots (and one entry when `entry`) by evicting the least recently
 * used entries that are not being filled. -1 when that is not enough. */
static int make_room(tg_cache_store_t *s, uint32_t n, int for_entry)
{
    uint32_t ref = tg_shm_table_oldest(&s->t);
    while (ref && (tg_shm_table_free_slots(&s->t) < n ||
                   (for_entry && s->t.used >= s->max_entries))) {
        uint32_t newer = tg_shm_table_newer(&s->t, ref);
        cs_entry_t *e = entry(s, ref);
        if (e->state == TG_CACHE_READY && !pinned(s, e)) {
            if (!(e->pins & CS_DROPPED))
                __atomic_add_fetch(&s->counters[TG_CACHE_C_EVICTED], 1, __ATOMIC_RELAXED);
            entry_remove(s, ref);
        }
        ref = newer;
    }
    return tg_shm_table_free_slots(&s->t) >= n && (!for_entry || s->t.used < s->max_entries)
               ? 0
               : -1;
}

/* Room for `n` more bytes on disk: the least recently used entries on disk
 * go (not those being filled). -1 when that is not enough. */
static int disk_room(tg_cache_store_t *s, uint64_t n)
{
    for (uint32_t ref = tg_shm_table_oldest(&s->t); ref && s->disk_bytes + n > s->max_disk;) {
        uint32_t newer = tg_shm_table_newer(&s->t, ref);
        cs_entry_t *e = entry(s, ref);
        if (e->fid && !e->lent && e->state == TG_CACHE_READY) {
            entry_remove(s, ref);
            __atomic_add_fetch(&s->counters[TG_CACHE_C_EVICTED], 1, __ATOMIC_RELAXED);
        }
        ref = newer;
    }
    return s->disk_bytes + n <= s->max_disk ? 0 : -1;
}

/* inactive=: entries not looked up for that long go, oldest first (the
 * recency list is in lookup order), a bounded number per call. */
#define CS_EXPIRE_MAX 64

static void expire(tg_cache_store_t *s, double now)
{
    int n = 0;
    for (uint32_t ref = tg_shm_table_oldest(&s->t); ref && s->inactive > 0 && n < CS_EXPIRE_MAX;) {
        uint32_t newer = tg_shm_table_newer(&s->t, ref);
        cs_entry_t *e = entry(s, ref);
        if (e->state == TG_CACHE_READY && !(e->pins & CS_DROPPED)) {
            if (e->atime + s->inactive >= now)
                break;
            entry_drop(s, ref);
            n++;
        }
        ref = newer;
    }
}

static uint32_t add_locked(tg_cache_store_t *s, tg_str_t key, uint64_t h, double now,
                           double lock_s)
{
    if (key.len > CS_INLINE || make_room(s, 1, 1) != 0)
        return 0;
    uint32_t ref = tg_shm_table_add(&s->t, h, NULL);
    if (ref == 0)
        return 0;
    cs_entry_t *e = entry(s, ref);
    e->state = TG_CACHE_LOCKED;
    e->gen = ++s->gen ? s->gen : ++s->gen;
    e->klen = (uint32_t)key.len;
    e->clen = -1;
    e->lock_s = lock_s;
    e->lock_until = now + lock_s;
    e->atime = now;
    memcpy(e + 1, key.p, key.len);
    return ref;
}

int tg_cache_lookup(tg_cache_store_t *s, tg_str_t key, double now, double lock_s,
                    tg_cache_entry_t *out)
{
    if (lock(s) != 0)
        return -1;
    s->clock = now;
    expire(s, now);
    uint64_t h = key_hash(s, key);
    uint32_t ref = tg_shm_table_find(&s->t, h, &key, &ops, NULL);
    if (ref) {
        cs_entry_t *e = entry(s, ref);
        if (e->state != TG_CACHE_READY && e->lock_until < now) {
            entry_remove(s, ref); /* its fetch died or stalled: take over */
            ref = tg_shm_table_find(&s->t, h, &key, &ops, NULL);
        }
    }
    int rc = 1;
    if (ref) {
        if (entry(s, ref)->state == TG_CACHE_READY) {
            tg_shm_table_touch(&s->t, ref);
            entry(s, ref)->atime = now;
        }
    } else {
        rc = lock_s > 0 && (ref = add_locked(s, key, h, now, lock_s)) ? 0 : -1;
    }
    if (ref)
        copy_out(s, ref, out);
    unlock(s);
    return rc;
}

int tg_cache_lock(tg_cache_store_t *s, tg_str_t key, double now, double lock_s,
                  tg_cache_entry_t *out)
{
    if (lock(s) != 0)
        return -1;
    uint32_t ref = add_locked(s, key, key_hash(s, key), now, lock_s);
    if (ref)
        copy_out(s, ref, out);
    unlock(s);
    return ref ? 0 : -1;
}

/* Write `len` bytes at `off` of the entry's run (after its key), growing
 * its chain as needed. 0, -1 (too large or no room). */
static int run_write(tg_cache_store_t *s, uint32_t ref, uint64_t off, const void *p, size_t len)
{
    cs_entry_t *e = entry(s, ref);
    uint64_t end = e->klen + off + len;
    if (end > s->max_entry)
        return -1;
    uint32_t need = tg_shm_table_chain_slots(&s->t, end, CS_INLINE);
    if (need > e->nslots) {
        uint32_t n = need - e->nslots;
        /* this entry is not READY, so make_room never takes it */
        if (make_room(s, n, 0) != 0)
            return -1;
        uint32_t more = tg_shm_table_chain_take(&s->t, n);
        if (more == 0)
            return -1;
        e = entry(s, ref);
        if (e->tail)
            tg_shm_table_chain_link(&s->t, e->tail, more);
        else
            e->chain = more;
        e->tail = tg_shm_table_chain_last(&s->t, more);
        e->nslots = need;
    }
    tg_shm_span_t sp = span(s, ref);
    return tg_shm_span_io(&s->t, &sp, e->klen + off, (void *)p, len, TG_SHM_SPAN_WRITE);
}

int tg_cache_fill_head(tg_cache_store_t *s, tg_cache_entry_t *e, const tg_cache_meta_t *m,
                       tg_str_t head, int64_t clen, double now)
{
    if (lock(s) != 0)
        return -1;
    int rc = -1;
    cs_entry_t *ce = still(s, e);
    /* with disk storage, a body announced over the memory limit goes to a
     * file (one of unknown length when it passes the limit: tg_cache_to_disk);
     * the key and head stay here too */
    uint64_t mem = ce ? ce->klen + head.len + (uint64_t)(clen > 0 ? clen : 0) : 0;
    int disk = s->max_disk && clen >= 0 && mem > s->max_entry;
    uint64_t fsize = TG_CACHE_FILE_HEAD + mem;
    if (ce && ce->state == TG_CACHE_LOCKED && (disk || mem <= s->max_entry) &&
        (!disk || disk_room(s, fsize) == 0)) {
        if (run_write(s, e->ref, 0, head.p, head.len) == 0) {
            ce = entry(s, e->ref);
            if (disk) {
                ce->fid = ++s->fseq;
                ce->dsize = fsize - (uint64_t)(clen > 0 ? clen : 0);
                s->disk_bytes += ce->dsize;
                s->disk_entries++;
            }
            ce->hlen = (uint32_t)head.len;
            ce->clen = clen;
            ce->meta = *m;
            ce->state = TG_CACHE_FILLING;
            ce->lock_until = now + fill_grace(ce);
            rc = 0;
        } else {
            entry_remove(s, e->ref);
        }
    } else if (ce) {
        entry_remove(s, e->ref);
    }
    if (rc == 0)
        copy_out(s, e->ref, e);
    unlock(s);
    return rc;
}

int tg_cache_fill_body(tg_cache_store_t *s, tg_cache_entry_t *e, const struct iovec *v, int n,
                       double now)
{
    if (lock(s) != 0)
        return -1;
    cs_entry_t *ce = still(s, e);
    int rc = ce && ce->state == TG_CACHE_FILLING && ce->fid == 0 ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        ce = entry(s, e->ref);
        if (run_write(s, e->ref, ce->hlen + ce->blen, v[i].iov_base, v[i].iov_len) != 0) {
            entry_remove(s, e->ref);
            rc = -1;
            break;
        }
        ce = entry(s, e->ref);
        /* readers copy under the same lock: the new length is their bound */
        ce->blen += v[i].iov_len;
        ce->lock_until = now + fill_grace(ce);
    }
    if (rc == 0)
        e->blen = entry(s, e->ref)->blen;
    unlock(s);
    return rc;
}

int tg_cache_fill_commit(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t n, double now)
{
    if (lock(s) != 0)
        return -1;
    cs_entry_t *ce = still(s, e);
    int rc = ce && ce->state == TG_CACHE_FILLING && ce->fid ? 0 : -1;
    if (rc == 0 && disk_room(s, n) != 0) {
        entry_remove(s, e->ref);
        rc = -1;
    }
    if (rc == 0) {
        ce->blen += n;
        ce->dsize += n;
        s->disk_bytes += n;
        ce->lock_until = now + fill_grace(ce);
        e->blen = ce->blen;
    }
    unlock(s);
    return rc;
}

uint64_t tg_cache_disk_due(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t add)
{
    if (lock(s) != 0)
        return 0;
    cs_entry_t *ce = still(s, e);
    uint64_t fid = 0;
    if (ce && ce->state == TG_CACHE_FILLING && ce->fid == 0 && s->max_disk &&
        ce->klen + ce->hlen + ce->blen + add > s->max_entry)
        fid = ++s->fseq;
    unlock(s);
    return fid;
}

int tg_cache_to_disk(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t fid, tg_str_t head)
{
    if (lock(s) != 0)
        return -1;
    int rc = -1;
    cs_entry_t *ce = still(s, e);
    if (ce && ce->state == TG_CACHE_FILLING && ce->fid == 0 && ce->hlen == head.len) {
        uint64_t fsize = TG_CACHE_FILE_HEAD + ce->klen + ce->hlen + ce->blen;
        /* the run keeps the key and the head only */
        tg_shm_table_chain_free(&s->t, ce->chain);
        ce->chain = ce->tail = ce->nslots = 0;
        if (disk_room(s, fsize) == 0 && run_write(s, e->ref, 0, head.p, head.len) == 0) {
            ce = entry(s, e->ref);
            ce->fid = fid;
            ce->dsize = fsize;
            s->disk_bytes += fsize;
            s->disk_entries++;
            copy_out(s, e->ref, e);
            rc = 0;
        } else {
            entry_remove(s, e->ref);
        }
    } else if (ce) {
        entry_remove(s, e->ref);
    }
    unlock(s);
    return rc;
}

void tg_cache_fill_end(tg_cache_store_t *s, tg_cache_entry_t *e, int ok)
{
    if (lock(s) != 0)
        return;
    cs_entry_t *ce = still(s, e);
    if (ce && ok && ce->state == TG_CACHE_FILLING && (ce->clen < 0 || (uint64_t)ce->clen == ce->blen)) {
        ce->state = TG_CACHE_READY;
        ce->clen = (int64_t)ce->blen;
        __atomic_add_fetch(&s->counters[TG_CACHE_C_STORED], 1, __ATOMIC_RELAXED);
        /* drop the older entries of the key this one replaces */
        tg_shm_span_t sp = span(s, e->ref);
        char kb[CS_INLINE];
        uint32_t klen = ce->klen;
        tg_shm_span_io(&s->t, &sp, 0, kb, klen, TG_SHM_SPAN_READ);
        tg_str_t key = {kb, klen};
        uint64_t h = key_hash(s, key);
        for (uint32_t ref = tg_shm_table_bucket_first(&s->t, h); ref;) {
            uint32_t next = tg_shm_table_bucket_next(&s->t, ref);
            if (ref != e->ref && key_eq(&s->t, ref, &key, NULL) &&
                entry(s, ref)->state == TG_CACHE_READY)
                entry_drop(s, ref);
            ref = next;
        }
        e->state = TG_CACHE_READY;
    } else if (ce) {
        entry_remove(s, e->ref);
    }
    unlock(s);
}

long tg_cache_read(tg_cache_store_t *s, tg_cache_entry_t *e, uint64_t off, void *buf, size_t len)
{
    if (lock(s) != 0)
        return -1;
    long rc = -1;
    cs_entry_t *ce = still(s, e);
    if (ce && ce->state != TG_CACHE_LOCKED) {
        uint64_t have = ce->hlen + (ce->fid ? 0 : ce->blen);
        size_t n = off >= have ? 0 : (have - off < len ? (size_t)(have - off) : len);
        tg_shm_span_t sp = span(s, e->ref);
        if (n)
            tg_shm_span_io(&s->t, &sp, ce->klen + off, buf, n, TG_SHM_SPAN_READ);
        copy_out(s, e->ref, e);
        rc = (long)n;
    }
    unlock(s);
    return rc;
}

int tg_cache_pin(tg_cache_store_t *s, tg_cache_entry_t *e, double now)
{
    if (lock(s) != 0)
        return -1;
    cs_entry_t *ce = still(s, e);
    if (ce) {
        ce->pins++;
        ce->pinned = now;
    }
    unlock(s);
    return ce ? 0 : -1;
}

void tg_cache_unpin(tg_cache_store_t *s, tg_cache_entry_t *e)
{
    if (lock(s) != 0)
        return;
    cs_entry_t *ce = still(s, e);
    if (ce && (ce->pins & ~CS_DROPPED) && --ce->pins == CS_DROPPED)
        entry_remove(s, e->ref); /* the last reader of an entry taken out */
    unlock(s);
}

int tg_cache_update_meta(tg_cache_store_t *s, tg_cache_entry_t *e, const tg_cache_meta_t *m)
{
    if (lock(s) != 0)
        return -1;
    cs_entry_t *ce = still(s, e);
    if (ce && ce->state == TG_CACHE_READY) {
        ce->meta = *m;
        e->meta = *m;
    }
    unlock(s);
    return ce ? 0 : -1;
}

/* Copy the body of entry `from` (in the run) to `to`'s run after its head,
 * a slot's worth at a time. 0, -1 (no room). */
static int body_copy(tg_cache_store_t *s, uint32_t from, uint32_t to)
{
    char buf[CS_DATA];
    uint64_t blen = entry(s, from)->blen;
    for (uint64_t off = 0; off < blen;) {
        cs_entry_t *f = entry(s, from);
        size_t n = blen - off < sizeof(buf) ? (size_t)(blen - off) : sizeof(buf);
        tg_shm_span_t sp = span(s, from);
        tg_shm_span_io(&s->t, &sp, f->klen + f->hlen + off, buf, n, TG_SHM_SPAN_READ);
        if (run_write(s, to, entry(s, to)->hlen + off, buf, n) != 0)
            return -1;
        off += n;
    }
    return 0;
}

int tg_cache_rehead(tg_cache_store_t *s, tg_cache_entry_t *e, const tg_cache_meta_t *m,
                    tg_str_t head, uint64_t dsize, double now)
{
    char kb[CS_INLINE];
    if (lock(s) != 0)
        return -1;
    int rc = -1;
    cs_entry_t *ce = still(s, e);
    if (ce == NULL || ce->state != TG_CACHE_READY || (ce->pins & CS_DROPPED)) {
        unlock(s);
        return -1;
    }
    /* pinned meanwhile: the room its copy needs is not made by evicting it */
    double pinned_at = ce->pinned;
    ce->pins++;
    ce->pinned = now;
    uint32_t klen = ce->klen;
    tg_shm_span_t sp = span(s, e->ref);
    tg_shm_span_io(&s->t, &sp, 0, kb, klen, TG_SHM_SPAN_READ);
    tg_str_t key = {kb, klen};
    uint32_t ref = add_locked(s, key, key_hash(s, key), now, ce->lock_s);
    if (ref) {
        cs_entry_t *ne = entry(s, ref);
        ne->hlen = (uint32_t)head.len;
        if (run_write(s, ref, 0, head.p, head.len) != 0 ||
            (entry(s, e->ref)->fid == 0 && body_copy(s, e->ref, ref) != 0)) {
            entry_remove(s, ref);
            ref = 0;
        }
    }
    ce = entry(s, e->ref);
    ce->pins--;
    ce->pinned = pinned_at;
    if (ref) {
        cs_entry_t *ne = entry(s, ref);
        ne->gen = ce->gen; /* the same response: its variants stay its own */
        ne->blen = ce->blen;
        ne->clen = ce->clen;
        ne->meta = *m;
        if (ce->fid) {
            ne->fid = ce->fid;
            ne->dsize = dsize;
            s->disk_bytes = s->disk_bytes - ce->dsize + dsize;
            ce->lent = 1;
            /* a longer head file: within max_disk (neither entry is taken:
             * the new one is not READY yet, the old one has no file now) */
            disk_room(s, 0);
        }
        ne->state = TG_CACHE_READY;
        entry_drop(s, e->ref);
        copy_out(s, ref, e);
        rc = 0;
    }
    unlock(s);
    return rc;
}

int tg_cache_claim_update(tg_cache_store_t *s, tg_cache_entry_t *e, double until)
{
    if (lock(s) != 0)
        return -1;
    int rc = -1;
    cs_entry_t *ce = still(s, e);
    if (ce) {
        /* an UPDATING mark outlives a refresh that died by lock_until */
        rc = !(ce->meta.flags & TG_CACHE_F_UPDATING) || ce->lock_until < until - ce->lock_s;
        if (rc) {
            ce->meta.flags = (ce->meta.flags & ~TG_CACHE_F_ERRORS) | TG_CACHE_F_UPDATING;
            ce->lock_until = until;
        }
    }
    unlock(s);
    return rc;
}

int tg_cache_set_flags(tg_cache_store_t *s, tg_cache_entry_t *e, uint32_t set, uint32_t clear)
{
    if (lock(s) != 0)
        return -1;
    cs_entry_t *ce = still(s, e);
    if (ce) {
        ce->meta.flags = (ce->meta.flags | set) & ~clear;
        e->meta.flags = ce->meta.flags;
    }
    unlock(s);
    return ce ? 0 : -1;
}

/* Does the head (`len` bytes of "Name: value\n" lines) tag the response
 * with `tag`? */
static int head_has_tag(const char *h, size_t len, tg_str_t tag)
{
    for (const char *p = h, *end = h + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        const char *v = NULL;
        if ((size_t)(eol - p) > 15 && tg_str_caseeq_n(p, "Surrogate-Key: ", 15))
            v = p + 15;
        else if ((size_t)(eol - p) > 11 && tg_str_caseeq_n(p, "Cache-Tag: ", 11))
            v = p + 11;
        while (v && v < eol) {
            while (v < eol && (*v == ' ' || *v == ',' || *v == '\t'))
                v++;
            const char *t = v;
            while (v < eol && *v != ' ' && *v != ',' && *v != '\t')
                v++;
            if ((size_t)(v - t) == tag.len && memcmp(t, tag.p, tag.len) == 0)
                return 1;
        }
        p = eol + 1;
    }
    return 0;
}

/* Is entry `ref` one a purge of `arg` takes? `vkey`: arg + the variant mark. */
static int purge_match(tg_cache_store_t *s, uint32_t ref, tg_str_t arg, tg_str_t vkey, int how,
                       char *buf)
{
    cs_entry_t *e = entry(s, ref);
    tg_shm_span_t sp = span(s, ref);
    if (e->pins & CS_DROPPED)
        return 0; /* purged already, still being served */
    if (how == TG_CACHE_PURGE_TAG) {
        if (e->state == TG_CACHE_LOCKED || (e->meta.flags & TG_CACHE_F_VARY) ||
            e->hlen > TG_CACHE_TAG_HEAD_MAX)
            return 0;
        tg_shm_span_io(&s->t, &sp, e->klen, buf, e->hlen, TG_SHM_SPAN_READ);
        return head_has_tag(buf, e->hlen, arg);
    }
    tg_str_t k = how == TG_CACHE_PURGE_PREFIX ? arg : vkey;
    return e->klen >= k.len && tg_shm_span_io(&s->t, &sp, 0, (void *)k.p, k.len,
                                              TG_SHM_SPAN_CMP) == 0;
}

/* A purged entry being filled goes at once (its fill fails, as do its
 * followers); one READY goes once its readers are done. */
static void purge_one(tg_cache_store_t *s, uint32_t ref)
{
    if (entry(s, ref)->state == TG_CACHE_READY)
        entry_drop(s, ref);
    else
        entry_remove(s, ref);
}

long tg_cache_purge(tg_cache_store_t *s, tg_str_t arg, int how)
{
    char vk[CS_INLINE + 1], buf[TG_CACHE_TAG_HEAD_MAX];
    if (arg.len > CS_INLINE || lock(s) != 0)
        return 0;
    long n = 0;
    int walk = how != TG_CACHE_PURGE_KEY;
    if (how == TG_CACHE_PURGE_KEY) {
        uint64_t h = key_hash(s, arg);
        uint32_t ref;
        while ((ref = tg_shm_table_find(&s->t, h, &arg, &ops, NULL)) != 0) {
            walk |= (entry(s, ref)->meta.flags & (TG_CACHE_F_VARY | TG_CACHE_F_VARIANTS)) != 0;
            purge_one(s, ref);
            n++;
        }
    }
    /* variant keys are the key, \x01, then the request's header values */
    memcpy(vk, arg.p, arg.len);
    vk[arg.len] = '\x01';
    tg_str_t vkey = {vk, arg.len + 1};
    for (uint32_t ref = walk ? tg_shm_table_oldest(&s->t) : 0; ref;) {
        uint32_t newer = tg_shm_table_newer(&s->t, ref);
        if (purge_match(s, ref, arg, vkey, how, buf)) {
            purge_one(s, ref);
            n++;
        }
        ref = newer;
    }
    unlock(s);
    return n;
}

tg_cache_store_t *tg_cache_store_of(const tg_shm_zone_t *z)
{
    tg_cache_store_t *s = z->data;
    return strcmp(z->tag, TG_CACHE_ZONE_TAG) == 0 && s->t.magic == CS_MAGIC ? s : NULL;
}

int tg_cache_store_index(tg_cache_store_t *s, tg_str_t key, tg_str_t head,
                         const tg_cache_meta_t *m, uint64_t fid, uint64_t blen, uint64_t dsize,
                         double now)
{
    if (lock(s) != 0)
        return -1;
    if (fid > s->fseq)
        s->fseq = fid;
    uint64_t h = key_hash(s, key), fsize = dsize;
    uint32_t ref = tg_shm_table_find(&s->t, h, &key, &ops, NULL);
    if (ref && entry(s, ref)->meta.stored >= m->stored)
        ref = UINT32_MAX; /* a newer response of the key is in: this file goes */
    else if (ref)
        entry_remove(s, ref);
    int rc = -1;
    if (ref != UINT32_MAX && disk_room(s, fsize) == 0 &&
        (ref = add_locked(s, key, h, now, 1)) != 0) {
        if (run_write(s, ref, 0, head.p, head.len) == 0) {
            cs_entry_t *e = entry(s, ref);
            e->state = TG_CACHE_READY;
            e->hlen = (uint32_t)head.len;
            e->blen = blen;
            e->clen = (int64_t)blen;
            e->meta = *m;
            e->fid = fid;
            e->dsize = fsize;
            s->disk_bytes += fsize;
            s->disk_entries++;
            rc = 0;
        } else {
            entry_remove(s, ref);
        }
    }
    unlock(s);
    return rc;
}

int tg_cache_store_claim_index(tg_cache_store_t *s)
{
    return s->max_disk && __atomic_exchange_n(&s->indexed, 1, __ATOMIC_RELAXED) == 0;
}

const char *tg_cache_store_dir(tg_cache_store_t *s)
{
    return s->dir;
}

void tg_cache_count(tg_cache_store_t *s, tg_cache_counter_t c)
{
    __atomic_add_fetch(&s->counters[c], 1, __ATOMIC_RELAXED);
}

void tg_cache_stats(tg_cache_store_t *s, tg_cache_stats_t *out)
{
    for (int i = 0; i < TG_CACHE_C_COUNT; i++)
        out->c[i] = __atomic_load_n(&s->counters[i], __ATOMIC_RELAXED);
    out->entries = __atomic_load_n(&s->t.used, __ATOMIC_RELAXED);
    uint32_t free_slots = __atomic_load_n(&s->t.nfree, __ATOMIC_RELAXED) +
                          (s->t.capacity - __atomic_load_n(&s->t.hw, __ATOMIC_RELAXED));
    out->bytes = (uint64_t)(s->t.capacity - free_slots) * CS_SLOT;
    out->size = (uint64_t)s->t.capacity * CS_SLOT;
    out->max_entries = s->max_entries;
    out->disk_bytes = __atomic_load_n(&s->disk_bytes, __ATOMIC_RELAXED);
    out->disk_entries = __atomic_load_n(&s->disk_entries, __ATOMIC_RELAXED);
    out->max_disk = s->max_disk;
    uint64_t *c = out->c;
    uint64_t served = c[TG_CACHE_C_HIT] + c[TG_CACHE_C_STALE] + c[TG_CACHE_C_COLLAPSED];
    out->hit_ratio = served + c[TG_CACHE_C_MISS]
                         ? (double)served / (double)(served + c[TG_CACHE_C_MISS])
                         : 0;
}
