/* The worker's file thread pool (see file_io.h). Jobs move through two
 * lists under one mutex: `pending` (the threads take from its head) and
 * `finished` (the loop drains it when the ev_async fires). The loop alone
 * allocates and frees slots, calls callbacks and touches buffers; a thread
 * touches only the job it took, and only between taking it and putting it on
 * `finished`. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ev.h>
#include "file_io.h"
#include "log.h"

#define THREAD_STACK (256 * 1024)

static struct {
    struct ev_loop *loop;
    int nthreads, nslots, started;
    pthread_t *threads;
    tg_file_io_t *slots, *free;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    tg_file_io_t *pending, **pending_tail, *finished;
    int stop;
    ev_async async;
} fio = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void run_read(tg_file_io_t *io)
{
    size_t got = 0;
    while (got < io->len) {
        off_t at = (off_t)(io->off + (int64_t)got);
        ssize_t n = pread(io->fd, io->buf->start + got, io->len - got, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            io->res = -1;
            io->err = errno;
            return;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    io->res = (ssize_t)got;
}

static void *thread_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fio.lock);
    for (;;) {
        while (!fio.stop && fio.pending == NULL)
            pthread_cond_wait(&fio.cond, &fio.lock);
        if (fio.stop)
            break;
        tg_file_io_t *io = fio.pending;
        fio.pending = io->next;
        if (fio.pending == NULL)
            fio.pending_tail = &fio.pending;
        pthread_mutex_unlock(&fio.lock);
        io->run(io);
        pthread_mutex_lock(&fio.lock);
        io->next = fio.finished;
        fio.finished = io;
        pthread_mutex_unlock(&fio.lock);
        ev_async_send(fio.loop, &fio.async);
        pthread_mutex_lock(&fio.lock);
    }
    pthread_mutex_unlock(&fio.lock);
    return NULL;
}

static void slot_put(tg_file_io_t *io)
{
    io->next = fio.free;
    fio.free = io;
}

/* On the loop: finished jobs to their owners (oldest first), or released
 * when cancelled. */
static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    pthread_mutex_lock(&fio.lock);
    tg_file_io_t *list = fio.finished, *rev = NULL;
    fio.finished = NULL;
    pthread_mutex_unlock(&fio.lock);
    while (list) {
        tg_file_io_t *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        tg_file_io_t *io = rev;
        rev = io->next;
        if (io->run == run_read) {
            close(io->fd); /* our duplicate */
            io->fd = -1;
            if (io->cancelled)
                tg_buf_put(io->buf);
        } else if (io->cancelled && io->fd >= 0) {
            close(io->fd);
        }
        if (io->dirfd >= 0)
            close(io->dirfd);
        if (!io->cancelled)
            io->done(io->data, io);
        else
            tg_log(TG_LOG_DEBUG, "a file %s finished after its request ended: released",
                   io->run == run_read ? "read" : "open");
        slot_put(io);
    }
}

int tg_file_io_init(struct ev_loop *loop, int threads, int queue)
{
    fio.loop = loop;
    fio.nthreads = threads;
    fio.nslots = queue;
    fio.pending_tail = &fio.pending;
    return 0;
}

int tg_file_io_enabled(void)
{
    return fio.nthreads > 0;
}

/* The slots and threads, at the first job. */
static int start(void)
{
    if ((fio.slots = calloc((size_t)fio.nslots, sizeof(tg_file_io_t))) == NULL ||
        (fio.threads = calloc((size_t)fio.nthreads, sizeof(pthread_t))) == NULL)
        goto fail;
    for (int i = fio.nslots - 1; i >= 0; i--)
        slot_put(&fio.slots[i]);
    /* the threads take no signal: the loop's handlers stay the only ones */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int err = 0;
    for (int i = 0; i < fio.nthreads && err == 0; i++)
        if ((err = pthread_create(&fio.threads[i], &attr, thread_main, NULL)) == 0)
            fio.started++;
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (fio.started == 0) {
        errno = err;
        tg_log_errno(TG_LOG_ERROR, "cannot start the file threads");
        goto fail;
    }
    /* jobs are submitted only after this returns: no thread signals before */
    ev_async_init(&fio.async, on_async);
    ev_async_start(fio.loop, &fio.async);
    ev_unref(fio.loop); /* the pool alone does not keep the loop running */
    return 0;
fail:
    /* no pool: every later call fails with ENOSYS and files are read on the loop */
    free(fio.slots);
    free(fio.threads);
    fio.slots = NULL;
    fio.threads = NULL;
    fio.free = NULL;
    fio.nthreads = 0;
    return -1;
}

tg_file_io_t *tg_file_io_get(tg_file_io_cb done, void *data)
{
    if (fio.nthreads == 0) {
        errno = ENOSYS;
        return NULL;
    }
    if (fio.slots == NULL && start() != 0) {
        errno = ENOSYS;
        return NULL;
    }
    tg_file_io_t *io = fio.free;
    if (io == NULL) {
        errno = EAGAIN;
        return NULL;
    }
    fio.free = io->next;
    memset(io, 0, offsetof(tg_file_io_t, path));
    io->path[0] = '\0';
    io->fd = io->dirfd = -1;
    io->done = done;
    io->data = data;
    return io;
}

void tg_file_io_put(tg_file_io_t *io)
{
    slot_put(io);
}

void tg_file_io_submit(tg_file_io_t *io)
{
    pthread_mutex_lock(&fio.lock);
    *fio.pending_tail = io;
    fio.pending_tail = &io->next;
    pthread_cond_signal(&fio.cond);
    pthread_mutex_unlock(&fio.lock);
}

tg_file_io_t *tg_file_io_read(int fd, tg_buf_t *b, size_t len, int64_t off, tg_file_io_cb done,
                              void *data)
{
    tg_file_io_t *io = tg_file_io_get(done, data);
    if (io == NULL)
        return NULL;
    if ((io->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        int saved = errno;
        slot_put(io);
        errno = saved;
        return NULL;
    }
    io->run = run_read;
    io->buf = b;
    io->len = len;
    io->off = off;
    tg_file_io_submit(io);
    return io;
}

void tg_file_io_cancel(tg_file_io_t *io)
{
    io->cancelled = 1;
}

void tg_file_io_destroy(void)
{
    if (fio.slots == NULL)
        return;
    pthread_mutex_lock(&fio.lock);
    fio.stop = 1;
    pthread_cond_broadcast(&fio.cond);
    pthread_mutex_unlock(&fio.lock);
    /* a thread blocked in an open (a lease held for minutes) must not hold
     * the worker's exit: after a second its job's memory is left to _exit */
    int all = 1;
    for (int i = 0; i < fio.started; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (pthread_timedjoin_np(fio.threads[i], NULL, &ts) != 0)
            all = 0;
    }
    ev_ref(fio.loop);
    ev_async_stop(fio.loop, &fio.async);
    if (!all)
        return;
    /* the worker's requests are gone: what finished only needs releasing */
    for (tg_file_io_t *io = fio.finished; io; io = io->next)
        io->cancelled = 1;
    on_async(fio.loop, &fio.async, 0);
    for (tg_file_io_t *io = fio.pending; io; io = io->next)
        if (io->run == run_read)
            close(io->fd);
    free(fio.slots);
    free(fio.threads);
    fio.slots = NULL;
    fio.threads = NULL;
    fio.started = 0;
}
