/* Files opened under a directory, and the worker's open-file cache (see
 * file_cache.h). The cache is a fixed pool of entries made at worker init:
 * a hash table by (directory, relative name) and a recency list. An entry
 * is held by the requests serving it (refs); evicting or expiring a held
 * entry only takes it out of the table, and its descriptor is closed when
 * the last request lets go, so a file is never closed under a sendfile. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
#include "file_cache.h"
#include "worker.h"

#define NAME_MAX_CACHED 255

static struct {
    tg_file_t *pool;
    tg_file_t **buckets;
    size_t nbuckets;
    tg_file_t *free;       /* free entries (linked by hnext) */
    tg_file_t *head, *tail; /* recency list of cached entries, most recent first */
    double valid;          /* seconds */
    int64_t max;
} fc;

int tg_file_cache_init(int64_t max, tg_msec_t valid_ms)
{
    if (max <= 0)
        return 0;
    fc.pool = calloc((size_t)max, sizeof(tg_file_t));
    fc.nbuckets = 1;
    while (fc.nbuckets < (size_t)max * 2)
        fc.nbuckets <<= 1;
    fc.buckets = calloc(fc.nbuckets, sizeof(tg_file_t *));
    if (fc.pool == NULL || fc.buckets == NULL) {
        free(fc.pool);
        free(fc.buckets);
        fc.pool = NULL;
        fc.buckets = NULL;
        return -1;
    }
    for (int64_t i = 0; i < max; i++) {
        tg_file_t *f = &fc.pool[i];
        f->slot = (int)i;
        f->fd = -1;
        if ((f->name = malloc(NAME_MAX_CACHED + 1)) == NULL)
            return -1;
        f->hnext = fc.free;
        fc.free = f;
    }
    fc.max = max;
    fc.valid = (double)valid_ms / 1000.0;
    return 0;
}

void tg_file_cache_destroy(void)
{
    for (int64_t i = 0; i < fc.max; i++) {
        if (fc.pool[i].fd >= 0)
            close(fc.pool[i].fd);
        free(fc.pool[i].name);
    }
    free(fc.pool);
    free(fc.buckets);
    memset(&fc, 0, sizeof(fc));
}

/* ---- resolution ----------------------------------------------------------- */

/* Component by component with O_NOFOLLOW: no symlink at all. */
static int open_walk(int dirfd, const char *rel, int flags)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return -1;
    const char *p = rel;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char comp[NAME_MAX_CACHED + 1];
        if (n == 0 || n > NAME_MAX_CACHED || (n <= 2 && p[0] == '.' && (n == 1 || p[1] == '.'))) {
            if (n == 0 && e) { /* "a//b" */
                p = e + 1;
                continue;
            }
            close(fd);
            errno = n > NAME_MAX_CACHED ? ENAMETOOLONG : EXDEV;
            return -1;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int next = openat(fd, comp, (e ? O_PATH | O_DIRECTORY : flags) | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        close(fd);
        if (next < 0) {
            errno = saved;
            return -1;
        }
        fd = next;
        p = e ? e + 1 : p + n;
    }
    if (rel[0] == '\0' || rel[strlen(rel) - 1] == '/') {
        /* the directory itself: reopen it readable */
        int d = openat(fd, ".", flags | O_CLOEXEC);
        int saved = errno;
        close(fd);
        errno = saved;
        return d;
    }
    return fd;
}

/* openat2 without RESOLVE_CACHED (kernels before 5.12: EINVAL) or at all
 * (before 5.6: ENOSYS): a nowait open then always goes to a thread. Set on
 * the loop, read by the threads too. */
static int no_cached, no_openat2;

#define OPEN_CACHED 0x01 /* fail with EAGAIN rather than read the disk (loop only) */
#define OPEN_BLOCK 0x02  /* no O_NONBLOCK: wait for a lease holder (threads only) */

static int open_under(int dirfd, const char *rel, tg_file_symlinks_t links, int how_flags)
{
    int flags = O_RDONLY | O_CLOEXEC | (how_flags & OPEN_BLOCK ? 0 : O_NONBLOCK);
    const char *name = rel[0] ? rel : ".";
    int cached = how_flags & OPEN_CACHED;
    int have_openat2 = !__atomic_load_n(&no_openat2, __ATOMIC_RELAXED);
    if (cached && (!have_openat2 || __atomic_load_n(&no_cached, __ATOMIC_RELAXED))) {
        errno = EAGAIN;
        return -1;
    }
    if (links == TG_FILE_SYMLINKS_FOLLOW && !cached)
        return openat(dirfd, name, flags);
    uint64_t resolve = cached ? RESOLVE_CACHED : 0;
    if (links != TG_FILE_SYMLINKS_FOLLOW)
        resolve |= RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
                   (links == TG_FILE_SYMLINKS_OFF ? RESOLVE_NO_SYMLINKS : 0);
    if (have_openat2) {
        struct open_how how = {.flags = (uint64_t)flags, .resolve = resolve};
        long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
        if (fd >= 0 || (errno != ENOSYS && !(errno == EINVAL && cached)))
            return (int)fd;
        if (cached) {
            __atomic_store_n(errno == ENOSYS ? &no_openat2 : &no_cached, 1, __ATOMIC_RELAXED);
            errno = EAGAIN;
            return -1;
        }
    }
    return open_walk(dirfd, rel, flags);
}

/* Open and stat; only regular files and directories. */
static int open_stat(int dirfd, const char *rel, tg_file_symlinks_t links, int how_flags, int *fd,
                     struct stat *st)
{
    if ((*fd = open_under(dirfd, rel, links, how_flags)) < 0)
        return -1;
    if (fstat(*fd, st) != 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
        int saved = S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) ? errno : EPERM;
        close(*fd);
        errno = saved;
        return -1;
    }
    return 0;
}

/* In a file thread: the open the loop could not do without blocking. A
 * file whose lease holder must let go first (EWOULDBLOCK with O_NONBLOCK)
 * is opened again blocking: the kernel bounds that wait (lease-break-time).
 * A FIFO never gets there: its O_NONBLOCK open succeeds, and fstat refuses it. */
static void run_open(tg_file_io_t *io)
{
    tg_file_symlinks_t links = (tg_file_symlinks_t)io->flags;
    int rc = open_stat(io->dirfd, io->path, links, 0, &io->fd, &io->st);
    if (rc != 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        rc = open_stat(io->dirfd, io->path, links, OPEN_BLOCK, &io->fd, &io->st);
    io->res = rc;
    io->err = rc ? errno : 0;
    if (rc)
        io->fd = -1;
}

/* ---- the cache ------------------------------------------------------------- */

static void lru_unlink(tg_file_t *f)
{
    if (f->lprev)
        f->lprev->lnext = f->lnext;
    else
        fc.head = f->lnext;
    if (f->lnext)
        f->lnext->lprev = f->lprev;
    else
        fc.tail = f->lprev;
    f->lprev = f->lnext = NULL;
}

static void lru_push(tg_file_t *f)
{
    f->lprev = NULL;
    f->lnext = fc.head;
    if (fc.head)
        fc.head->lprev = f;
    fc.head = f;
    if (fc.tail == NULL)
        fc.tail = f;
}

static void entry_free(tg_file_t *f)
{
    close(f->fd);
    f->fd = -1;
    f->hnext = fc.free;
    fc.free = f;
}

/* Out of the table (and the recency list); closed now unless held. */
static void entry_remove(tg_file_t *f)
{
    tg_file_t **pp = &fc.buckets[f->hash & (fc.nbuckets - 1)];
    while (*pp && *pp != f)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = f->hnext;
    f->hnext = NULL;
    lru_unlink(f);
    f->cached = 0;
    if (f->refs == 0)
        entry_free(f);
}

static uint64_t key_hash(const tg_file_dir_t *dir, const char *rel, size_t len)
{
    return tg_hash64(rel, len) ^ ((uint64_t)dir->ino * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)dir->dev;
}

/* A fresh cached entry for (dir, rel), held once more; NULL: none (a stale
 * one is dropped). */
static tg_file_t *cache_find(uint64_t h, const tg_file_dir_t *dir, const char *path, size_t len,
                             double now)
{
    for (tg_file_t *f = fc.buckets[h & (fc.nbuckets - 1)]; f; f = f->hnext) {
        if (f->hash != h || f->dir_dev != dir->dev || f->dir_ino != dir->ino ||
            f->name_len != len || memcmp(f->name, path, len) != 0)
            continue;
        if (now - f->validated >= fc.valid) {
            entry_remove(f); /* stale: opened again */
            return NULL;
        }
        f->refs++;
        lru_unlink(f);
        lru_push(f);
        return f;
    }
    return NULL;
}

/* The file for an open descriptor: a cache entry when it may be cached, else
 * in the arena. NULL (fd closed, errno ENOMEM). */
static tg_file_t *file_make(tg_arena_t *a, const tg_file_dir_t *dir, const char *path, size_t len,
                            int fd, const struct stat *st, double now)
{
    tg_file_t *f = NULL;
    if (fc.max > 0 && len <= NAME_MAX_CACHED) {
        uint64_t h = key_hash(dir, path, len);
        if (fc.free == NULL && fc.tail)
            entry_remove(fc.tail); /* the least recent (its slot frees when let go) */
        if ((f = fc.free) != NULL) {
            fc.free = f->hnext;
            memcpy(f->name, path, len);
            f->name[len] = '\0';
            f->name_len = len;
            f->hash = h;
            f->dir_dev = dir->dev;
            f->dir_ino = dir->ino;
            f->validated = now;
            f->cached = 1;
            f->hnext = fc.buckets[h & (fc.nbuckets - 1)];
            fc.buckets[h & (fc.nbuckets - 1)] = f;
            lru_push(f);
        }
    }
    if (f == NULL) {
        if ((f = tg_arena_alloc(a, sizeof(*f))) == NULL) {
            close(fd);
            errno = ENOMEM;
            return NULL;
        }
        f->slot = -1;
    }
    f->fd = fd;
    f->st = *st;
    f->refs = 1;
    return f;
}

static double now_sec(void)
{
    return tg_worker ? ev_now(tg_worker->loop) : 0;
}

tg_file_t *tg_file_open(tg_arena_t *a, const tg_file_dir_t *dir, tg_str_t rel,
                        tg_file_symlinks_t links, int flags)
{
    char path[4096];
    if (rel.len >= sizeof(path) || memchr(rel.p, '\0', rel.len)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    memcpy(path, rel.p, rel.len);
    path[rel.len] = '\0';
    double now = now_sec();
    if (fc.max > 0 && rel.len <= NAME_MAX_CACHED) {
        tg_file_t *f = cache_find(key_hash(dir, path, rel.len), dir, path, rel.len, now);
        if (f)
            return f;
    }
    int fd;
    struct stat st;
    int how = (flags & TG_FILE_NOWAIT) && tg_file_io_enabled() ? OPEN_CACHED : 0;
    if (open_stat(dir->fd, path, links, how, &fd, &st) != 0)
        return NULL;
    return file_make(a, dir, path, rel.len, fd, &st, now);
}

tg_file_io_t *tg_file_open_start(const tg_file_dir_t *dir, tg_str_t rel, tg_file_symlinks_t links,
                                 tg_file_io_cb done, void *data)
{
    if (rel.len >= TG_FILE_IO_PATH_MAX || memchr(rel.p, '\0', rel.len)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    tg_file_io_t *io = tg_file_io_get(done, data);
    if (io == NULL)
        return NULL;
    /* the job's own directory descriptor: the caller's may close meanwhile */
    io->dirfd = dir->fd == AT_FDCWD ? AT_FDCWD : fcntl(dir->fd, F_DUPFD_CLOEXEC, 0);
    if (io->dirfd == -1) {
        int saved = errno;
        tg_file_io_put(io);
        errno = saved;
        return NULL;
    }
    memcpy(io->path, rel.p, rel.len);
    io->path[rel.len] = '\0';
    io->flags = (int)links;
    io->run = run_open;
    tg_file_io_submit(io);
    return io;
}

tg_file_t *tg_file_adopt(tg_arena_t *a, const tg_file_dir_t *dir, tg_str_t rel, tg_file_io_t *io)
{
    if (io->res != 0) {
        errno = io->err;
        return NULL;
    }
    int fd = io->fd;
    io->fd = -1;
    double now = now_sec();
    if (fc.max > 0 && rel.len <= NAME_MAX_CACHED) {
        /* another request may have opened it meanwhile: one entry */
        tg_file_t *f = cache_find(key_hash(dir, io->path, rel.len), dir, io->path, rel.len, now);
        if (f) {
            close(fd);
            return f;
        }
    }
    return file_make(a, dir, io->path, rel.len, fd, &io->st, now);
}

void tg_file_release(void *p)
{
    tg_file_t *f = p;
    if (f->slot < 0) {
        close(f->fd);
        f->fd = -1;
        return;
    }
    if (--f->refs == 0 && !f->cached)
        entry_free(f);
}
