/* @public Blocking file operations off the event loop: a worker's small,
 * fixed pool of threads for the reads the page cache cannot answer and the
 * opens the dentry cache cannot resolve (a cold or slow disk, a file whose
 * lease holder must first let go).
 *
 * The loop tries first without blocking (preadv2 RWF_NOWAIT, openat2
 * RESOLVE_CACHED: no thread hop for a warm tree); only what would block is
 * handed over. A job lives in one of the pool's `queue` slots, made at the
 * first use, so memory is fixed whatever the load; when every slot is busy
 * the submit fails (errno EAGAIN) and the caller does the work itself on the
 * loop, which is slower but never wrong. The threads are started at the
 * first job, so a worker that serves no file has none.
 *
 * A job's owner may go away while its thread still runs (the client closed):
 * tg_file_io_cancel then hands the job's memory (the read buffer, the opened
 * descriptor) to the pool, which releases it on the loop once the thread is
 * done, and the callback is not called. A read works on its own duplicate of
 * the caller's descriptor, so closing the caller's never races the thread. */
#ifndef TG_FILE_IO_H
#define TG_FILE_IO_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <ev.h>
#include "buf.h"

#define TG_FILE_IO_PATH_MAX 1024 /* longer names are opened on the loop */

typedef struct tg_file_io_s tg_file_io_t;
/* Called on the loop when the job is done (never after a cancel). */
typedef void (*tg_file_io_cb)(void *data, tg_file_io_t *io);

struct tg_file_io_s {
    /* results, for the callback */
    ssize_t res; /* read: bytes read (short: end of file); open: 0; -1: failed */
    int err;     /* errno of a failure */
    int fd;      /* open: the descriptor, the callback's to keep or close */
    struct stat st; /* open: its fstat */
    /* arguments */
    void (*run)(tg_file_io_t *io); /* in a pool thread: the blocking call */
    int dirfd;                     /* open: resolve under this directory (a descriptor
                                      of the job's own: the pool closes it when done) */
    int flags;                     /* open: the caller's options for run() */
    tg_buf_t *buf;                 /* read: into buf->start */
    size_t len;
    int64_t off;
    /* internals */
    tg_file_io_cb done;
    void *data;
    unsigned cancelled : 1;
    tg_file_io_t *next;
    char path[TG_FILE_IO_PATH_MAX]; /* open: the name under dirfd (last: not cleared) */
};

/* This worker's pool: `threads` threads (0: none, every call below fails
 * with ENOSYS and callers work on the loop), `queue` job slots. Nothing is
 * allocated or started yet. 0, -1. */
int tg_file_io_init(struct ev_loop *loop, int threads, int queue);
/* Stop the threads (waiting a moment for running jobs) and free the pool. */
void tg_file_io_destroy(void);
/* Is there a pool at all (threads > 0)? */
int tg_file_io_enabled(void);

/* Read `len` bytes of `fd` at `off` into b->start (len <= the buffer's
 * size) in a thread; `done` gets io->res. NULL with errno: ENOSYS (no pool),
 * EAGAIN (every slot busy), or what dup(2) or the thread start failed with.
 * b stays the caller's unless the job is cancelled. */
tg_file_io_t *tg_file_io_read(int fd, tg_buf_t *b, size_t len, int64_t off, tg_file_io_cb done,
                              void *data);
/* A job slot for an operation of the caller's: fill io->run, dirfd, path,
 * flags, then tg_file_io_submit. run() sets res, err, fd and st. NULL as
 * tg_file_io_read. */
tg_file_io_t *tg_file_io_get(tg_file_io_cb done, void *data);
void tg_file_io_submit(tg_file_io_t *io);
/* Give back a slot from tg_file_io_get that was not submitted. */
void tg_file_io_put(tg_file_io_t *io);
/* The owner goes: the callback will not be called; a read's buffer is put
 * back, an opened descriptor closed, once the thread is done. */
void tg_file_io_cancel(tg_file_io_t *io);

#endif
