/* The worker's send batch: writes to plain sockets on the proxy's hot path
 * (a response to its client, a request to its upstream), and reads of
 * upstream responses, are collected while the loop runs its callbacks and
 * go to the kernel together, one io_uring_enter for all of them, just
 * before the loop waits for events.
 *
 * On the machine this was measured on a syscall costs about 1 µs and a
 * request crosses four of them (two reads, two writes); a send inside the
 * batch costs 1.4 µs against 3.2 µs for writev(2) (see docs/benchmarks.md).
 *
 * The caller of a deferred write returns without touching its watchers (a
 * change of watched events costs an epoll_ctl); after the batch the
 * watcher's callback runs with EV_WRITE and writes on: nothing is left, or
 * a direct write meets the error, or finds the socket full and waits for
 * EV_WRITE as usual. `io_uring off;`, or a kernel without
 * io_uring, makes every write direct. */
#ifndef TG_SENDQ_H
#define TG_SENDQ_H

#include <ev.h>
#include <stdint.h>
#include <sys/types.h>
#include "buf.h"

/* Start the batch on the worker's loop (enable = the `io_uring` directive).
 * Without io_uring the batch stays off and every write is direct. */
void tg_sendq_init(struct ev_loop *loop, int enable);
/* Like tg_iovq_write, but may leave the bytes to the batch: returns 1 when
 * nothing is left to write, 0 when the socket would block (the caller waits
 * for EV_WRITE on `w`), 2 when the bytes wait in the batch (the caller arms
 * nothing: the callback of `w` runs with EV_WRITE after the batch, and
 * writes on), -1 on error. `q`, the memory its ranges point to and
 * `written` must stay until then, or until tg_sendq_cancel_fd(fd).
 * `lasting`: they stay that long anyway (a request to an upstream waits for
 * its response), so the write may take any slot of the batch; otherwise
 * (a response) only one of its first slots, as it keeps its request alive. */
int tg_sendq_write(tg_iovq_t *q, int fd, ev_io *w, uint64_t *written, int lasting);
/* Would a response's write (lasting 0) go to the batch now? */
int tg_sendq_open(void);
/* A read of `fd` for the batch, where it goes to the kernel with the writes
 * (for a socket the loop just reported readable: on this machine's kind a
 * read(2) is a syscall of ~1 µs of its own). 1: queued; the caller arms
 * nothing and returns, and the callback of `w` runs with EV_READ after the
 * batch, where tg_sendq_read_take gives the outcome. 0: not queued (outside
 * the batch, or it is full): read directly. The bytes (up to TG_SENDQ_READ_MAX;
 * the rest stays in the socket) wait in the batch, so the caller holds no buffer
 * meanwhile. `*slot` is 0 while no read of the caller waits, and must stay
 * until the outcome is taken or tg_sendq_cancel_fd(fd). */
int tg_sendq_read_start(int *slot, int fd, ev_io *w);
/* The most a read of the batch takes: one that took this much may have left
 * bytes in the socket. */
#define TG_SENDQ_READ_MAX 512
/* The outcome of the caller's read (*slot not 0): TG_SENDQ_WAIT while the
 * batch has not run, else as read(2) into buf (room for len >=
 * TG_SENDQ_READ_MAX). */
#define TG_SENDQ_WAIT (-2)
ssize_t tg_sendq_read_take(int *slot, void *buf, size_t len);
/* Forget the deferred write and read of `fd` (call before closing it). */
void tg_sendq_cancel_fd(int fd);
/* Forget the deferred write of `q`, if any. */
void tg_sendq_cancel(tg_iovq_t *q);
/* The same when the bytes go directly now, written by someone else than
 * the owner (OpenSSL answering a KeyUpdate inside SSL_read): the owner's
 * watcher still gets its EV_WRITE, as after the batch (libev drops the
 * event if the watcher is stopped first). */
void tg_sendq_cancel_wake(tg_iovq_t *q);

#endif
