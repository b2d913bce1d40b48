/* The worker's send batch (see sendq.h). An ev_check watcher opens the
 * batch when the loop has polled; callbacks then add their writes; the
 * ev_prepare watcher, which libev runs before it reifies watchers and polls
 * again, sends them all with one io_uring_enter and waits for their
 * completions (MSG_DONTWAIT: a full socket completes at once with -EAGAIN,
 * nothing stays in flight), then wakes the owners. The batch is closed while
 * they run, so what they write goes out directly: nothing is left for a loop
 * that is about to block. */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "log.h"
#include "sendq.h"
#include "stats.h"

/* Writes per batch; more in one round go out directly. A deferred response
 * keeps its request (buffers, arena) alive until the batch, so many of them
 * would raise the peak of live requests in a burst, and the block caches
 * keep that peak: 256 cost 100 bytes per connection more in the 10,000-idle
 * benchmark than 32. Responses therefore take the first SENDQ_HELD slots
 * only; a request to an upstream, whose memory lives until its response
 * anyway, any of them (HTTP/2 with 10 x 100 streams of small GETs: 13 % of
 * the upstream writes went in the batch with 32 slots). */
#define SENDQ_MAX 256
#define SENDQ_HELD 32
#define RES_NONE INT_MIN          /* not sent */
#define RES_UNKNOWN (INT_MIN + 1) /* given to the kernel, outcome not seen */

typedef struct {
    tg_iovq_t *q; /* NULL once cancelled or done */
    ev_io *w;
    uint64_t *written;
    int fd;
    int res; /* bytes written or -errno; RES_NONE until known */
    struct msghdr mh;
} entry_t;

static struct io_uring ring;
static int on, open_now;
static entry_t ents[SENDQ_MAX];
static int nents;
static ev_prepare prepare_w;
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
        if (e->q == NULL)
            continue;
        if (e->res == RES_UNKNOWN) {
            shutdown(e->fd, SHUT_RDWR);
            e->res = -EIO;
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
    for (int i = 0; i < n; i++) {
        entry_t *e = &ents[i];
        if (e->q == NULL)
            continue;
        set_msg(e);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        if (sqe == NULL)
            return -1;
        io_uring_prep_sendmsg(sqe, e->fd, &e->mh, MSG_DONTWAIT | MSG_NOSIGNAL);
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
        ents[cqe->user_data].res = cqe->res;
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

static void prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)p;
    (void)revents;
    open_now = 0;
    int n = nents;
    if (n == 0)
        return;
    int m = batch_submit(n);
    if (m > 0) {
        tg_stats_count(TG_STATS_SENDQ_BATCHES, 1);
        tg_stats_count(TG_STATS_SENDQ_WRITES, (uint64_t)m);
    }
    if (m < 0) {
        on = 0; /* the rest, and every later write, directly */
        batch_direct(n);
    }
    for (int i = 0; i < n; i++) {
        entry_t *e = &ents[i];
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
    nents = 0;
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
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(SENDQ_MAX, &ring, &p);
    if (rc == -EINVAL) { /* a kernel before 6.1: without the newer flags */
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(SENDQ_MAX, &ring, &p);
    }
    if (rc < 0) {
        tg_log(TG_LOG_WARN, "io_uring is not available (%s): writing directly", strerror(-rc));
        return;
    }
    on = 1;
    ev_prepare_init(&prepare_w, prepare_cb);
    ev_prepare_start(loop, &prepare_w);
    ev_unref(loop); /* the batch alone does not keep the loop running */
    ev_check_init(&check_w, check_cb);
    ev_check_start(loop, &check_w);
    ev_unref(loop);
}

int tg_sendq_write(tg_iovq_t *q, int fd, ev_io *w, uint64_t *written, int lasting)
{
    if (q->batch)
        return 2; /* already waiting in the batch */
    if (open_now && q->pending && nents < (lasting ? SENDQ_MAX : SENDQ_HELD)) {
        entry_t *e = &ents[nents++];
        e->q = q;
        e->w = w;
        e->written = written;
        e->fd = fd;
        e->res = RES_NONE;
        q->batch = nents;
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

void tg_sendq_cancel_fd(int fd)
{
    for (int i = 0; i < nents; i++)
        if (ents[i].q && ents[i].fd == fd) {
            ents[i].q->batch = 0;
            ents[i].q = NULL;
        }
}
