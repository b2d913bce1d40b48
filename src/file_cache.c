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

static int open_under(int dirfd, const char *rel, tg_file_symlinks_t links)
{
    int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
    const char *name = rel[0] ? rel : ".";
    if (links == TG_FILE_SYMLINKS_FOLLOW)
        return openat(dirfd, name, flags);
    struct open_how how = {.flags = (uint64_t)flags,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
                                      (links == TG_FILE_SYMLINKS_OFF ? RESOLVE_NO_SYMLINKS : 0)};
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS)
        return (int)fd;
    return open_walk(dirfd, rel, flags);
}

/* Open and stat; only regular files and directories. */
static int open_stat(int dirfd, const char *rel, tg_file_symlinks_t links, int *fd, struct stat *st)
{
    if ((*fd = open_under(dirfd, rel, links)) < 0)
        return -1;
    if (fstat(*fd, st) != 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
        int saved = S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) ? errno : EPERM;
        close(*fd);
        errno = saved;
        return -1;
    }
    return 0;
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

static uint64_t key_hash(int dirfd, const char *rel, size_t len)
{
    return tg_hash64(rel, len) ^ ((uint64_t)(unsigned)dirfd * 0x9e3779b97f4a7c15ULL);
}

tg_file_t *tg_file_open(tg_arena_t *a, int dirfd, tg_str_t rel, tg_file_symlinks_t links)
{
    char path[4096];
    if (rel.len >= sizeof(path) || memchr(rel.p, '\0', rel.len)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    memcpy(path, rel.p, rel.len);
    path[rel.len] = '\0';
    double now = tg_worker ? ev_now(tg_worker->loop) : 0;
    uint64_t h = 0;
    int cacheable = fc.max > 0 && rel.len <= NAME_MAX_CACHED;
    if (cacheable) {
        h = key_hash(dirfd, path, rel.len);
        for (tg_file_t *f = fc.buckets[h & (fc.nbuckets - 1)]; f; f = f->hnext) {
            if (f->hash != h || f->dirfd != dirfd || f->name_len != rel.len ||
                memcmp(f->name, path, rel.len) != 0)
                continue;
            if (now - f->validated >= fc.valid) {
                entry_remove(f); /* stale: open again below */
                break;
            }
            f->refs++;
            lru_unlink(f);
            lru_push(f);
            return f;
        }
    }
    int fd;
    struct stat st;
    if (open_stat(dirfd, path, links, &fd, &st) != 0)
        return NULL;
    tg_file_t *f = NULL;
    if (cacheable) {
        if (fc.free == NULL && fc.tail)
            entry_remove(fc.tail); /* the least recent (its slot frees when let go) */
        if ((f = fc.free) != NULL) {
            fc.free = f->hnext;
            memcpy(f->name, path, rel.len + 1);
            f->name_len = rel.len;
            f->hash = h;
            f->dirfd = dirfd;
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
    f->st = st;
    f->refs = 1;
    return f;
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
