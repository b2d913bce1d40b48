/* The response cache's files (see cache_disk.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "buf.h"
#include "cache_disk.h"
#include "log.h"

#define CD_MAGIC 0x31656c6966636774ULL      /* "tgcfile1" */
#define CD_MAGIC_HEAD 0x3164616568636774ULL /* "tgchead1": a head file */
#define CD_PATH (TG_CACHE_DIR_MAX + 32)
#define CD_HEAD_MAX (16u << 20) /* key + head bytes a file read back may have */

/* The start of a file (TG_CACHE_FILE_HEAD bytes, the rest zero). sum[0]
 * covers the key and head, sum[1] this header with sum[1] zero. */
typedef struct {
    uint64_t magic, fid;
    uint32_t klen, hlen;
    uint64_t blen;
    tg_cache_meta_t meta;
    uint64_t sum[2];
} cd_head_t;

_Static_assert(sizeof(cd_head_t) <= TG_CACHE_FILE_HEAD, "file header too large");

static const uint64_t cd_seed[2] = {0x746f6c6c67617465ULL, 0x6361636865646973ULL};

static uint64_t sum64(const void *p, size_t len)
{
    uint64_t h[2];
    tg_siphash128(cd_seed, p, len, h);
    return h[0];
}

/* The header's own sum, over the TG_CACHE_FILE_HEAD bytes in `b`. */
static void head_seal(char *b)
{
    cd_head_t *h = (cd_head_t *)b;
    h->sum[1] = 0;
    h->sum[1] = sum64(b, TG_CACHE_FILE_HEAD);
}

/* pwritev all of v[0..n) at `off` (short writes continued), up to CD_IOV
 * buffers per call. 0, -1. */
#define CD_IOV 64

static int write_all(int fd, const struct iovec *v, int n, off_t off)
{
    struct iovec iov[CD_IOV];
    while (n > 0) {
        int k = n < CD_IOV ? n : CD_IOV, i = 0;
        memcpy(iov, v, (size_t)k * sizeof(*v));
        v += k;
        n -= k;
        while (i < k) {
            ssize_t w = pwritev(fd, iov + i, k - i, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
            off += w;
            tg_iov_advance(iov, k, &i, (size_t)w);
        }
    }
    return 0;
}

/* Write a header (`magic`, the body length `blen`), `key` and `head` at
 * the start of fd. 0, -1. */
static int write_head(int fd, uint64_t magic, uint64_t fid, const tg_cache_meta_t *m,
                      tg_str_t key, tg_str_t head, uint64_t blen)
{
    char b[TG_CACHE_FILE_HEAD] = {0};
    char *kh = malloc(key.len + head.len + 1);
    if (kh == NULL)
        return -1;
    memcpy(kh, key.p, key.len);
    memcpy(kh + key.len, head.p, head.len);
    cd_head_t *h = (cd_head_t *)b;
    *h = (cd_head_t){.magic = magic, .fid = fid, .klen = (uint32_t)key.len,
                     .hlen = (uint32_t)head.len, .blen = blen, .meta = *m,
                     .sum = {sum64(kh, key.len + head.len), 0}};
    head_seal(b);
    struct iovec v[2] = {{b, sizeof(b)}, {kh, key.len + head.len}};
    int rc = write_all(fd, v, 2, 0);
    free(kh);
    return rc;
}

/* Read and check the header of an open file (`magic`, of entry `fid`,
 * its size what the header says) and its key + head. 0, *h and *kh
 * (malloc'd: the caller frees it), or -1. */
static int read_head(int fd, uint64_t magic, uint64_t fid, cd_head_t *out, char **kh)
{
    char b[TG_CACHE_FILE_HEAD];
    cd_head_t *h = (cd_head_t *)b;
    struct stat st;
    *kh = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        pread(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) || h->magic != magic ||
        h->fid != fid || h->klen == 0 || (uint64_t)h->klen + h->hlen > CD_HEAD_MAX ||
        (uint64_t)st.st_size != sizeof(b) + (uint64_t)h->klen + h->hlen +
                                    (magic == CD_MAGIC ? h->blen : 0))
        return -1;
    uint64_t sum = h->sum[1];
    head_seal(b);
    size_t khlen = (size_t)h->klen + h->hlen;
    if (sum != h->sum[1] || (*kh = malloc(khlen + 1)) == NULL ||
        pread(fd, *kh, khlen, sizeof(b)) != (ssize_t)khlen || sum64(*kh, khlen) != h->sum[0]) {
        free(*kh);
        *kh = NULL;
        return -1;
    }
    *out = *h;
    return 0;
}

/* Create the temporary file `fid` of entry e with its header, key and head
 * (the body follows at f->base). 0, -1 (logged, nothing left behind). */
static int file_create(tg_cache_file_t *f, tg_cache_store_t *s, uint64_t fid,
                       const tg_cache_meta_t *m, tg_str_t key, tg_str_t head)
{
    char path[CD_PATH];
    int fd = -1;
    if (tg_cache_file_path(s, fid, TG_CACHE_PATH_TMP, path, sizeof(path)) == 0)
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        tg_log_errno(TG_LOG_ERROR, "cache: cannot create a file in %s", tg_cache_store_dir(s));
        return -1;
    }
    if (write_head(fd, CD_MAGIC, fid, m, key, head, 0) != 0) {
        tg_log_errno(TG_LOG_ERROR, "cache: cannot write %s", path);
        close(fd);
        unlink(path);
        return -1;
    }
    *f = (tg_cache_file_t){.fd = fd, .fid = fid,
                           .base = TG_CACHE_FILE_HEAD + key.len + head.len, .open = 1,
                           .writing = 1};
    return 0;
}

int tg_cache_disk_fill_head(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                            const tg_cache_meta_t *m, tg_str_t key, tg_str_t head, int64_t clen,
                            double now)
{
    if (tg_cache_fill_head(s, e, m, head, clen, now) != 0)
        return -1;
    if (e->fid && file_create(f, s, e->fid, m, key, head) != 0) {
        tg_cache_fill_end(s, e, 0);
        return -1;
    }
    return 0;
}

/* A fill in memory outgrew max_entry: write what it has to file `fid`,
 * then move the entry there. 0, -1 (the entry is gone). */
static int move_to_disk(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                        uint64_t fid, tg_str_t key)
{
    char path[CD_PATH];
    size_t room = 64 * 1024;
    char *head = malloc(e->hlen + 1), *buf = malloc(room);
    int rc = head && buf && tg_cache_read(s, e, 0, head, e->hlen) == (long)e->hlen &&
                     file_create(f, s, fid, &e->meta, key, (tg_str_t){head, e->hlen}) == 0
                 ? 0
                 : -1;
    int created = rc == 0;
    /* only this fill appends: the body so far stays as it is meanwhile */
    for (uint64_t off = 0; rc == 0 && off < e->blen;) {
        long n = tg_cache_read(s, e, e->hlen + off, buf, room);
        struct iovec v = {buf, n > 0 ? (size_t)n : 0};
        rc = n > 0 && write_all(f->fd, &v, 1, (off_t)(f->base + off)) == 0 ? 0 : -1;
        off += n > 0 ? (uint64_t)n : 0;
    }
    if (rc == 0)
        rc = tg_cache_to_disk(s, e, fid, (tg_str_t){head, e->hlen});
    if (rc != 0 && created) {
        tg_cache_disk_close(f);
        if (tg_cache_file_path(s, fid, TG_CACHE_PATH_TMP, path, sizeof(path)) == 0)
            unlink(path);
    }
    free(head);
    free(buf);
    return rc;
}

int tg_cache_disk_fill_body(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                            tg_str_t key, const struct iovec *v, int n, double now)
{
    uint64_t len = 0;
    for (int i = 0; i < n; i++)
        len += v[i].iov_len;
    if (e->fid == 0) {
        uint64_t fid = tg_cache_disk_due(s, e, len);
        if (fid == 0)
            return tg_cache_fill_body(s, e, v, n, now);
        if (move_to_disk(f, s, e, fid, key) != 0) {
            tg_cache_fill_end(s, e, 0);
            return -1;
        }
    }
    if (!f->writing || write_all(f->fd, v, n, (off_t)(f->base + e->blen)) != 0) {
        if (f->writing)
            tg_log_errno(TG_LOG_ERROR, "cache: cannot write to %s", tg_cache_store_dir(s));
        tg_cache_fill_end(s, e, 0);
        return -1;
    }
    return tg_cache_fill_commit(s, e, len, now);
}

void tg_cache_disk_fill_end(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e, int ok)
{
    if (e->fid && f->writing) {
        char b[TG_CACHE_FILE_HEAD], tmp[CD_PATH], path[CD_PATH];
        ok = ok && pread(f->fd, b, sizeof(b), 0) == (ssize_t)sizeof(b);
        if (ok) {
            ((cd_head_t *)b)->blen = e->blen;
            head_seal(b);
            ok = pwrite(f->fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) &&
                 tg_cache_file_path(s, e->fid, TG_CACHE_PATH_TMP, tmp, sizeof(tmp)) == 0 &&
                 tg_cache_file_path(s, e->fid, TG_CACHE_PATH_BODY, path, sizeof(path)) == 0 &&
                 rename(tmp, path) == 0; /* fails when the entry went meanwhile */
        }
        tg_cache_disk_close(f);
    }
    tg_cache_fill_end(s, e, ok);
}

int tg_cache_disk_rehead(tg_cache_store_t *s, tg_cache_entry_t *e, tg_str_t key,
                         const tg_cache_meta_t *m, tg_str_t head, double now)
{
    if (e->fid == 0)
        return tg_cache_rehead(s, e, m, head, 0, now);
    char body[CD_PATH], path[CD_PATH], tmp[CD_PATH];
    struct stat st, hst;
    uint64_t fid = e->fid;
    int n = snprintf(tmp, sizeof(tmp), "%s/tmp.%016llx.%ld.h", tg_cache_store_dir(s),
                     (unsigned long long)fid, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp) || tg_cache_file_path(s, fid, TG_CACHE_PATH_BODY, body, sizeof(body)) ||
        tg_cache_file_path(s, fid, TG_CACHE_PATH_HEAD, path, sizeof(path)) || stat(body, &st) != 0)
        return -1; /* the entry went (its file is deleted first) */
    /* the head file is complete before it gets its name: a crash leaves
     * the old one (or none) and a temporary file the next start deletes */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int written = fd >= 0 && write_head(fd, CD_MAGIC_HEAD, fid, m, key, head, e->blen) == 0;
    if (fd >= 0)
        close(fd);
    if (!written) {
        tg_log_errno(TG_LOG_ERROR, "cache: cannot write %s", tmp);
        unlink(tmp);
    }
    uint64_t dsize = (uint64_t)st.st_size;
    if (written)
        dsize += TG_CACHE_FILE_HEAD + key.len + head.len;
    else if (stat(path, &hst) == 0)
        dsize += (uint64_t)hst.st_size;
    /* the entry in memory first: the new head serves at once, and when the
     * file cannot follow, the file read back later is the older response,
     * whole */
    int rc = tg_cache_rehead(s, e, m, head, dsize, now);
    if (written && (rc != 0 || rename(tmp, path) != 0)) {
        if (rc == 0)
            tg_log_errno(TG_LOG_ERROR, "cache: cannot rename %s", tmp);
        unlink(tmp);
    }
    return rc;
}

/* Open the file of entry e for reading: the temporary name while it is
 * being filled, else (or when the fill was renamed meanwhile) the final. */
static int open_entry(tg_cache_file_t *f, tg_cache_store_t *s, const tg_cache_entry_t *e)
{
    char path[CD_PATH], b[TG_CACHE_FILE_HEAD];
    int fd = -1;
    int first = e->state != TG_CACHE_READY ? TG_CACHE_PATH_TMP : TG_CACHE_PATH_BODY;
    for (int kind = first; fd < 0 && kind >= TG_CACHE_PATH_BODY; kind--) /* TMP, then BODY */
        if (tg_cache_file_path(s, e->fid, kind, path, sizeof(path)) == 0)
            fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    cd_head_t *h = (cd_head_t *)b;
    if (pread(fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) || h->magic != CD_MAGIC ||
        h->fid != e->fid) {
        close(fd);
        return -1;
    }
    tg_cache_disk_close(f);
    *f = (tg_cache_file_t){.fd = fd, .fid = e->fid,
                           .base = sizeof(b) + (uint64_t)h->klen + h->hlen, .open = 1};
    return 0;
}

long tg_cache_disk_read(tg_cache_file_t *f, tg_cache_store_t *s, tg_cache_entry_t *e,
                        uint64_t off, void *buf, size_t len)
{
    if (e->fid == 0 || off < e->hlen)
        return tg_cache_read(s, e, off, buf, len);
    /* a complete file once open is read to its end, even when its entry
     * goes meanwhile (evicted, purged: its file is unlinked, not changed);
     * else the entry as it is now: still there, its committed length */
    int done = f->open && !f->writing && f->fid == e->fid && e->state == TG_CACHE_READY;
    if (!done && (tg_cache_read(s, e, off, NULL, 0) < 0 || e->fid == 0))
        return -1;
    uint64_t boff = off - e->hlen;
    if (boff >= e->blen)
        return 0;
    if (e->blen - boff < len)
        len = (size_t)(e->blen - boff);
    if ((!f->open || f->fid != e->fid) && open_entry(f, s, e) != 0)
        return -1;
    ssize_t n;
    do
        n = pread(f->fd, buf, len, (off_t)(f->base + boff));
    while (n < 0 && errno == EINTR);
    return n > 0 ? (long)n : -1; /* committed bytes are there: none is a broken file */
}

void tg_cache_disk_close(tg_cache_file_t *f)
{
    if (f->open)
        close(f->fd);
    f->open = f->writing = 0;
}

const char *tg_cache_disk_prepare(const char *dir, const tg_user_t *u, char *err, size_t len)
{
    struct stat st;
    if (stat(dir, &st) != 0 &&
        (errno != ENOENT || mkdir(dir, 0700) != 0 || stat(dir, &st) != 0)) {
        snprintf(err, len, "cannot make the cache directory \"%s\": %s", dir, strerror(errno));
        return err;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, len, "cache path \"%s\" is not a directory", dir);
        return err;
    }
    if ((tg_user_switches(u) && st.st_uid != u->uid && chown(dir, u->uid, u->gid) != 0) ||
        ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) != 0)) {
        snprintf(err, len, "cannot give the cache directory \"%s\" to the workers: %s", dir,
                 strerror(errno));
        return err;
    }
    if (!tg_user_switches(u) && access(dir, R_OK | W_OK | X_OK) != 0) {
        snprintf(err, len, "cache directory \"%s\" is not writable: %s", dir, strerror(errno));
        return err;
    }
    return NULL;
}

/* Read file `name` (fid) of the directory back into the zone, with the
 * head and metadata of its head file `hname` when it has a good one (a 304
 * updated them; a bad one is deleted). 0, or -1 when it is not a complete
 * entry file (the caller deletes both). */
static int index_file(tg_cache_store_t *s, int dfd, const char *name, const char *hname,
                      uint64_t fid, double now)
{
    cd_head_t h, hh;
    char *kh = NULL, *hkh = NULL;
    int rc = -1, hfd = -1;
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || read_head(fd, CD_MAGIC, fid, &h, &kh) != 0)
        goto done;
    tg_cache_meta_t m = h.meta;
    tg_str_t head = {kh + h.klen, h.hlen};
    uint64_t dsize = TG_CACHE_FILE_HEAD + (uint64_t)h.klen + h.hlen + h.blen;
    if ((hfd = openat(dfd, hname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
        if (read_head(hfd, CD_MAGIC_HEAD, fid, &hh, &hkh) == 0 && hh.klen == h.klen &&
            hh.blen == h.blen && memcmp(hkh, kh, h.klen) == 0) {
            m = hh.meta;
            head = (tg_str_t){hkh + hh.klen, hh.hlen};
            dsize += TG_CACHE_FILE_HEAD + (uint64_t)hh.klen + hh.hlen;
        } else {
            unlinkat(dfd, hname, 0);
        }
    }
    m.flags &= ~(TG_CACHE_F_UPDATING | TG_CACHE_F_ERRORS);
    rc = tg_cache_store_index(s, (tg_str_t){kh, h.klen}, head, &m, fid, h.blen, dsize, now);
done:
    free(kh);
    free(hkh);
    if (hfd >= 0)
        close(hfd);
    if (fd >= 0)
        close(fd);
    return rc;
}

long tg_cache_disk_index(tg_cache_store_t *s, double now)
{
    const char *dir = tg_cache_store_dir(s);
    DIR *d = opendir(dir);
    if (d == NULL) {
        tg_log_errno(TG_LOG_ERROR, "cache: cannot read the directory %s", dir);
        return 0;
    }
    long n = 0, dropped = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        char *end;
        if (strncmp(name, "tmp.", 4) == 0) {
            /* a fill that a crash or a stop cut */
            unlinkat(dirfd(d), name, 0);
            dropped++;
            continue;
        }
        size_t len = strlen(name);
        if ((len != 16 && !(len == 18 && strcmp(name + 16, ".h") == 0)) ||
            strspn(name, "0123456789abcdef") != 16)
            continue; /* not one of ours */
        if (len == 18) {
            /* a head file goes with its entry's; alone (a crash while its
             * entry was deleted), it goes */
            char body[17];
            memcpy(body, name, 16);
            body[16] = 0;
            if (faccessat(dirfd(d), body, F_OK, 0) != 0 && errno == ENOENT) {
                unlinkat(dirfd(d), name, 0);
                dropped++;
            }
            continue;
        }
        uint64_t fid = strtoull(name, &end, 16);
        char hname[19];
        snprintf(hname, sizeof(hname), "%s.h", name); /* name: 16 hex digits */
        if (index_file(s, dirfd(d), name, hname, fid, now) == 0) {
            n++;
        } else {
            unlinkat(dirfd(d), name, 0);
            unlinkat(dirfd(d), hname, 0);
            dropped++;
        }
    }
    closedir(d);
    tg_log(TG_LOG_INFO, "cache: %ld entries read back from %s, %ld files deleted", n, dir,
           dropped);
    return n;
}
