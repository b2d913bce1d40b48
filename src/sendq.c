/* The worker's send batch (see sendq.h). An ev_check watcher opens the
 * batch when the loop has polled; callbacks then add their writes and
 * reads; two ev_prepare watchers, which libev runs before it reifies
 * watchers and polls again, give them to the kernel with one io_uring_enter
 * each and wait for their completions (MSG_DONTWAIT: a full socket, or one
 * with nothing to read, completes at once with -EAGAIN; nothing stays in
 * flight), then wake the owners. The early flush leaves the batch open for
 * what its owners write (the answers to what they read); the late one
 * closes it while its owners run, so what they write goes out directly:
 * nothing is left for a loop that is about to block. */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h> /* bytes the kernel read in through io_uring */
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif
#include "log.h"
#include "sendq.h"
#include "stats.h"

/* Writes and reads per batch; more in one round go directly. A deferred
 * response keeps its request (buffers, arena) alive until the batch, so many
 * of them would raise the peak of live requests in a burst, and the block
 * caches keep that peak: 256 cost 100 bytes per connection more in the
 * 10,000-idle benchmark than 32. Responses therefore take SENDQ_HELD slots
 * at most; a request to an upstream, whose memory lives until its response
 * anyway, and a read, any of them (HTTP/2 with 10 x 100 streams of small
 * GETs: 13 % of the upstream writes went in the batch with 32 slots; with
 * the upstream reads in it too, 256 slots overflowed at 50 x 10, and with
 * the HTTP/2 client reads too, 512 left 0.35 direct writev per request at
 * 10 x 100: the requests those reads start come while the early flush's
 * entries still hold their slots). Reads take the first SENDQ_READS slots
 * only (each has its stage). */
#define SENDQ_MAX 2048
#define SENDQ_READS 512
#define SENDQ_HELD 32
/* A read in the batch lands in a small area of its slot and is copied to
 * its owner's buffer when the owner takes it: the owner need not hold a
 * buffer (16 KB, a page of it touched) while the read waits, so a round of
 * hundreds of upstream responses does not leave hundreds of buffers in the
 * worker's free list (the idle benchmark: 490 -> 600 bytes per connection
 * when it did). Bytes beyond it are read directly, after. */
#define SENDQ_STAGE TG_SENDQ_READ_MAX
#define RES_NONE INT_MIN          /* not sent */
#define RES_UNKNOWN (INT_MIN + 1) /* given to the kernel, outcome not seen */

typedef struct {
    tg_iovq_t *q; /* a write: NULL once cancelled or done */
    int *slot;    /* a read: its owner's slot; NULL once cancelled or collected */
    ev_io *w;
    uint64_t *written;
    int fd;
    int res; /* bytes written or read, or -errno; RES_NONE until known */
    struct msghdr mh;
} entry_t;

#define LIVE(e) ((e)->q != NULL || (e)->slot != NULL)

static struct io_uring ring;
static int on, open_now;
static entry_t ents[SENDQ_MAX];
/* The reads' bytes. Its pages become resident as rounds use slots, and a
 * burst of hundreds of reads in one round would keep them so; a worker
 * that has not used more than the first page's slots for REST_S seconds
 * gives the others back (MADV_DONTNEED: they read back as zeros). */
static char stage[SENDQ_READS][SENDQ_STAGE] __attribute__((aligned(4096)));
#define STAGE_KEEP (4096 / SENDQ_STAGE) /* slots on the page that stays */
#define REST_S 1.0
static int stage_used; /* the slots up to this one were used since the last check */
static ev_timer rest_w;
static int nents;
static int cap; /* entries: the ring's size */
static int nheld; /* responses' writes queued in this round of the loop */
static int nread_sub; /* reads among the last submission */
static ev_prepare early_w, late_w;
static struct ev_loop *sq_loop; /* the worker's */
static ev_check check_w;

static void set_msg(entry_t *e)
{
    memset(&e->mh, 0, sizeof(e->mh));
    e->mh.msg_iov = e->q->iov + e->q->i;
    e->mh.msg_iovlen = (size_t)(e->q->n - e->q->i);
}

/* After io_uring failed: the writes it did not take go out with sendmsg(2);
 * a socket whose write it took without telling the outcome is shut down (its
 * owner's next write fails and closes it: bytes are never sent twice). */
static void batch_direct(int n)
{
    for (int i = 0; i < n; i++) {
        entry_t *e = &ents[i];
        if (!LIVE(e))
            continue;
        if (e->res == RES_UNKNOWN) {
            shutdown(e->fd, SHUT_RDWR);
            e->res = -EIO;
        } else if (e->res == RES_NONE && e->slot) {
            ssize_t r = recv(e->fd, stage[i], SENDQ_STAGE, MSG_DONTWAIT);
            e->res = r < 0 ? -errno : (int)r;
        } else if (e->res == RES_NONE) {
            set_msg(e);
            ssize_t w = sendmsg(e->fd, &e->mh, MSG_DONTWAIT | MSG_NOSIGNAL);
            e->res = w < 0 ? -errno : (int)w;
        }
    }
}

/* Send every queued write: one submission, all completions reaped. Returns
 * the writes submitted, or -1 when io_uring failed (the caller writes the
 * rest directly). */
static int batch_submit(int n)
{
    int m = 0;
    nread_sub = 0;
    for (int i = 0; i < n; i++) {
        entry_t *e = &ents[i];
        if (!LIVE(e) || e->res != RES_NONE) /* a read done, not taken yet */
            continue;
        nread_sub += e->slot != NULL;
        if (e->slot && i >= stage_used)
            stage_used = i + 1;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        if (sqe == NULL)
            return -1;
        if (e->slot) {
            io_uring_prep_recv(sqe, e->fd, stage[i], SENDQ_STAGE, MSG_DONTWAIT);
        } else {
            set_msg(e);
            io_uring_prep_sendmsg(sqe, e->fd, &e->mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        io_uring_sqe_set_data64(sqe, (uint64_t)i);
        e->res = RES_UNKNOWN;
        m++;
    }
    if (m == 0)
        return 0;
    int rc;
    do
        rc = io_uring_submit_and_wait(&ring, (unsigned)m);
    while (rc == -EINTR);
    if (rc < 0) {
        tg_log(TG_LOG_ERROR, "io_uring_submit failed: %s; writing directly from now on",
               strerror(-rc));
        for (int i = 0; i < n; i++) /* nothing was taken */
            if (ents[i].res == RES_UNKNOWN)
                ents[i].res = RES_NONE;
        return -1;
    }
    for (int got = 0; got < rc;) {
        struct io_uring_cqe *cqe;
        int w = io_uring_wait_cqe(&ring, &cqe);
        if (w == -EINTR)
            continue;
        if (w < 0) {
            tg_log(TG_LOG_ERROR, "io_uring_wait_cqe failed: %s; writing directly from now on",
                   strerror(-w));
            return -1;
        }
        entry_t *e = &ents[cqe->user_data];
        e->res = cqe->res;
        if (e->slot && e->res > 0) /* valgrind does not see the kernel write it */
            VALGRIND_MAKE_MEM_DEFINED(stage[cqe->user_data], (size_t)e->res);
        io_uring_cqe_seen(&ring, cqe);
        got++;
    }
    if (rc == m)
        return m;
    /* fewer taken than given (not seen in practice): those never started */
    tg_log(TG_LOG_ERROR, "io_uring took %d of %d writes; writing directly from now on", rc, m);
    for (int i = 0; i < n; i++)
        if (ents[i].res == RES_UNKNOWN)
            ents[i].res = RES_NONE;
    return -1;
}

/* Send and read the first n entries, wake their owners, and move what they
 * added meanwhile to the front. */
static void flush(struct ev_loop *loop, int n)
{
    int m = batch_submit(n);
    if (m > 0) {
        tg_stats_count(TG_STATS_SENDQ_BATCHES, 1);
        tg_stats_count(TG_STATS_SENDQ_WRITES, (uint64_t)(m - nread_sub));
        tg_stats_count(TG_STATS_SENDQ_READS, (uint64_t)nread_sub);
    }
    if (m < 0) {
        on = open_now = 0; /* the rest, and every later write, directly */
        batch_direct(n);
    }
    for (int i = 0; i < n; i++) {
        entry_t *e = &ents[i];
        if (e->slot) {
            /* the owner reads on, and its first read takes this outcome; one
             * that cannot yet (its client is not draining) takes it later:
             * the entry stays, and it is woken again at every flush */
            ev_invoke(loop, e->w, EV_READ);
            continue;
        }
        tg_iovq_t *q = e->q;
        if (q == NULL)
            continue; /* cancelled while an earlier owner ran */
        e->q = NULL;
        q->batch = 0;
        if (e->res > 0)
            tg_iovq_consume(q, (size_t)e->res, e->written);
        /* the owner writes on: nothing is left, or its direct write meets
         * the error, or the rest would block and it waits for the socket */
        ev_invoke(loop, e->w, EV_WRITE);
    }
    int k = 0;
    for (int i = 0; i < nents; i++) {
        entry_t *e = &ents[i];
        if (!LIVE(e) || (i < n && e->q)) /* (a write of the flush: done) */
            continue;
        if (k != i) {
            ents[k] = *e;
            if (e->slot && e->res > 0) /* a read not taken: its bytes move along */
                memcpy(stage[k], stage[i], (size_t)e->res);
        }
        if (ents[k].q)
            ents[k].q->batch = k + 1;
        else
            *ents[k].slot = k + 1;
        k++;
    }
    nents = k;
}

/* Two flushes before the loop polls. The early one runs before the other
 * prepare watchers: the reads it does give their owners bytes to answer
 * with, and the HTTP/2 round (src/h2.c, a prepare watcher too) then sends
 * what their streams got in one write per connection; the batch stays open
 * meanwhile, so what the owners write joins the late flush, which runs
 * after every other prepare watcher and closes the batch. */
static void early_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)p;
    (void)revents;
    if (nents)
        flush(loop, nents);
}

static void late_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)p;
    (void)revents;
    open_now = 0;
    nheld = 0; /* the next round's */
    if (nents)
        flush(loop, nents);
    if (stage_used > STAGE_KEEP && !ev_is_active(&rest_w)) {
        ev_timer_set(&rest_w, REST_S, REST_S);
        ev_timer_start(loop, &rest_w);
    }
}

static void rest_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    if (stage_used > STAGE_KEEP || nents) { /* used since the last check */
        stage_used = 0;
        return;
    }
    ev_timer_stop(loop, t);
    madvise(stage[STAGE_KEEP], sizeof(stage) - STAGE_KEEP * SENDQ_STAGE, MADV_DONTNEED);
}

static void check_cb(struct ev_loop *loop, ev_check *c, int revents)
{
    (void)loop;
    (void)c;
    (void)revents;
    open_now = on;
}

void tg_sendq_init(struct ev_loop *loop, int enable)
{
    if (!enable)
        return;
    sq_loop = loop;
    struct io_uring_params p;
    int rc;
    for (cap = SENDQ_MAX;; cap = SENDQ_READS) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        rc = io_uring_queue_init_params((unsigned)cap, &ring, &p);
        if (rc == -EINVAL) { /* a kernel before 6.1: without the newer flags */
            memset(&p, 0, sizeof(p));
            rc = io_uring_queue_init_params((unsigned)cap, &ring, &p);
        }
        /* a kernel before 5.12 counts the ring against RLIMIT_MEMLOCK
         * (often 64 KB): a smaller one fits */
        if (rc != -ENOMEM || cap == SENDQ_READS)
            break;
    }
    if (rc < 0) {
        tg_log(TG_LOG_WARN, "io_uring is not available (%s): writing directly", strerror(-rc));
        return;
    }
    on = 1;
    ev_prepare_init(&early_w, early_cb);
    ev_set_priority(&early_w, EV_MAXPRI);
    ev_prepare_start(loop, &early_w);
    ev_unref(loop); /* the batch alone does not keep the loop running */
    ev_prepare_init(&late_w, late_cb);
    ev_set_priority(&late_w, EV_MINPRI);
    ev_prepare_start(loop, &late_w);
    ev_unref(loop);
    ev_check_init(&check_w, check_cb);
    ev_check_start(loop, &check_w);
    ev_unref(loop);
    ev_init(&rest_w, rest_cb);
}

/* A new entry at the end: a write (q) or a read (slot); its 1-based index. */
static int entry_add(tg_iovq_t *q, int *slot, ev_io *w, int fd)
{
    entry_t *e = &ents[nents++];
    e->q = q;
    e->slot = slot;
    e->w = w;
    e->fd = fd;
    e->res = RES_NONE;
    return nents;
}

/* Has the open batch a slot for a write (see tg_sendq_write's `lasting`)? */
static int write_room(int lasting)
{
    return open_now && nents < cap && (lasting || nheld < SENDQ_HELD);
}

int tg_sendq_open(void)
{
    return write_room(0);
}

int tg_sendq_write(tg_iovq_t *q, int fd, ev_io *w, uint64_t *written, int lasting)
{
    if (q->batch)
        return 2; /* already waiting in the batch */
    if (q->pending && write_room(lasting)) {
        nheld += !lasting;
        q->batch = entry_add(q, NULL, w, fd);
        ents[q->batch - 1].written = written;
        return 2;
    }
    return tg_iovq_write(q, fd, written);
}

void tg_sendq_cancel(tg_iovq_t *q)
{
    if (q->batch) {
        ents[q->batch - 1].q = NULL;
        q->batch = 0;
    }
}

void tg_sendq_cancel_wake(tg_iovq_t *q)
{
    if (q->batch == 0)
        return;
    ev_io *w = ents[q->batch - 1].w;
    tg_sendq_cancel(q);
    ev_feed_event(sq_loop, w, EV_WRITE);
}

int tg_sendq_read_start(int *slot, int fd, ev_io *w)
{
    if (*slot || !open_now || nents >= SENDQ_READS)
        return 0;
    *slot = entry_add(NULL, slot, w, fd);
    return 1;
}

ssize_t tg_sendq_read_take(int *slot, void *buf, size_t len)
{
    entry_t *e = &ents[*slot - 1];
    if (e->res == RES_NONE || e->res == RES_UNKNOWN)
        return TG_SENDQ_WAIT; /* the batch has not run */
    const char *got = stage[*slot - 1];
    *slot = 0;
    e->slot = NULL;
    if (e->res < 0) {
        errno = -e->res;
        return -1;
    }
    if ((size_t)e->res > len) { /* never: callers take into a buffer with room */
        errno = EIO;
        return -1;
    }
    memcpy(buf, got, (size_t)e->res);
    return e->res;
}

void tg_sendq_cancel_fd(int fd)
{
    for (int i = 0; i < nents; i++) {
        if (ents[i].fd != fd)
            continue;
        if (ents[i].q) {
            ents[i].q->batch = 0;
            ents[i].q = NULL;
        }
        if (ents[i].slot) {
            *ents[i].slot = 0;
            ents[i].slot = NULL;
        }
    }
}
