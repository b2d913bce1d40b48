/* @public Opening files under a directory for the static file handler:
 * path resolution that cannot leave the directory, and nginx's
 * open_file_cache (a worker's open descriptors and their stat results,
 * kept for `valid` and at most `max` of them).
 *
 * Resolution: openat2(2) with RESOLVE_BENEATH (no "..", absolute path or
 * symlink leads out of the directory) and RESOLVE_NO_MAGICLINKS, plus
 * RESOLVE_NO_SYMLINKS when symlinks are refused altogether; where openat2 is
 * missing (ENOSYS: kernels before 5.6), a walk one component at a time with
 * O_NOFOLLOW, which refuses every symlink. Files are opened O_NONBLOCK so a
 * FIFO planted in the tree cannot block the worker; only regular files and
 * directories are handed out.
 *
 * Never blocking the loop: with a file thread pool (src/file_io.h) an open
 * on the loop asks openat2 for RESOLVE_CACHED, which succeeds only when the
 * dentry cache holds every component (a served tree: no thread hop); what
 * would need the disk (or waits for a lease holder) fails with EAGAIN and
 * is opened in a thread by tg_file_open_start. A cache hit costs no system
 * call at all. Reads are not here: bodies go by sendfile(2) or through the
 * request layer's copy (src/request.c). */
#ifndef TG_FILE_CACHE_H
#define TG_FILE_CACHE_H

#include <stdint.h>
#include <sys/stat.h>
#include "str.h"
#include "arena.h"
#include "file_io.h"

typedef enum {
    TG_FILE_SYMLINKS_BENEATH = 0, /* default: symlinks that stay under the directory */
    TG_FILE_SYMLINKS_OFF,         /* disable_symlinks on: no symlink anywhere */
    TG_FILE_SYMLINKS_FOLLOW,      /* disable_symlinks off: any symlink, as serve-static */
} tg_file_symlinks_t;

/* A directory files are opened under: its descriptor, and its identity,
 * which is what the cache keys entries by (a descriptor number is reused
 * once closed, an inode is not while it is held). */
typedef struct {
    int fd;
    dev_t dev;
    ino_t ino;
} tg_file_dir_t;

typedef struct tg_file_s {
    int fd;
    struct stat st;
    /* cache internals */
    uint64_t hash;
    dev_t dir_dev;
    ino_t dir_ino;
    double validated; /* ev_now when opened */
    uint32_t refs;
    int slot;         /* index in the cache's pool, -1: not cached (request arena) */
    unsigned cached : 1; /* in the hash table (else an orphan or uncached) */
    struct tg_file_s *hnext, *lprev, *lnext;
    char *name;
    size_t name_len;
} tg_file_t;

#define TG_FILE_NOWAIT 0x01 /* with a file thread pool: EAGAIN rather than block */

/* Set up this worker's cache: at most `max` descriptors (0: no cache),
 * each trusted for `valid_ms`. Call once per worker (init_worker). 0, -1. */
int tg_file_cache_init(int64_t max, tg_msec_t valid_ms);
/* Close every cached descriptor (worker exit). */
void tg_file_cache_destroy(void);

/* Open `rel` (relative: no leading '/'; "" is the directory itself) under
 * `dir`. Returns the file, held until tg_file_release (served from the
 * cache when it has a fresh entry; an uncached file is allocated in `a`),
 * or NULL with errno: ENOENT, ENOTDIR, ELOOP or EXDEV (a symlink the policy
 * refuses), EACCES, EPERM for a file that is neither regular nor a
 * directory, or, with TG_FILE_NOWAIT and a file thread pool, EAGAIN when
 * the open would block (then tg_file_open_start). TG_FILE_SYMLINKS_FOLLOW
 * also takes an absolute `rel` (a root directory named by the config). */
tg_file_t *tg_file_open(tg_arena_t *a, const tg_file_dir_t *dir, tg_str_t rel,
                        tg_file_symlinks_t links, int flags);
/* The open that would block, in a file thread: `done` gets the job; then
 * tg_file_adopt makes the file of it. NULL with errno (no pool, every slot
 * busy, a name too long for a job): open with tg_file_open(..., 0). */
tg_file_io_t *tg_file_open_start(const tg_file_dir_t *dir, tg_str_t rel, tg_file_symlinks_t links,
                                 tg_file_io_cb done, void *data);
/* The file a finished open job made (taking its descriptor; cached as
 * tg_file_open would), or NULL with errno (the job's error, ENOMEM). */
tg_file_t *tg_file_adopt(tg_arena_t *a, const tg_file_dir_t *dir, tg_str_t rel, tg_file_io_t *io);
/* Let go of a file from tg_file_open (an arena cleanup, `void *` for that). */
void tg_file_release(void *f);

#endif
