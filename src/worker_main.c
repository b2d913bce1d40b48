/* A worker process: accepts on its own SO_REUSEPORT socket of every listener,
 * serves connections on one libev loop, and stops in one of two ways:
 *   graceful (TERM from the master, or the master died): stop accepting, close
 *     idle connections, let requests in flight finish, exit when none are
 *     left or shutdown_timeout has passed;
 *   fast (INT, QUIT): exit now.
 * The master keeps the listening sockets, so connections queued on this
 * worker's socket are taken by the next worker of the same slot. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include "worker_main.h"
#include "worker.h"
#include "conn.h"
#include "h1.h"
#include "h2.h"
#include "upstream.h"
#include "log.h"
#include "sendq.h"
#include "watchdog.h"

#define ACCEPT_BATCH 64

/* the worker of this process: static storage, so it exists from fork to
 * _exit without an allocation */
int tg_worker_ready_fd = -1;
static tg_worker_t worker_storage;

static void worker_exit(int code)
{
    /* a fast stop leaves connections open: their module state (limit_conn
     * places in shared memory) goes back first */
    tg_conn_ext_release_all();
    for (int i = tg_nmodules - 1; i >= 0; i--)
        if (tg_modules[i]->exit_worker)
            tg_modules[i]->exit_worker(tg_worker);
    tg_log(TG_LOG_INFO, "worker exiting");
    /* _exit: the process image is about to go; the config and pools are
     * released by the kernel, and the master's atexit handlers must not run. */
    _exit(code);
}

/* The connection's preamble chose its protocol: attach that codec. */
static void conn_attach(tg_conn_t *c, tg_conn_proto_id_t proto)
{
    if (proto == TG_CONN_PROTO_H2)
        tg_h2_start(c);
    else
        tg_h1_start(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    tg_worker_t *w = tg_worker;
    tg_listen_t *ls = io->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (w->nconns >= w->config->main->worker_connections) {
            tg_log(TG_LOG_WARN, "%d worker_connections are not enough", (int)w->nconns);
            tg_worker_accept_pause();
            return;
        }
        struct sockaddr_in6 sa;
        socklen_t salen = sizeof(sa);
        int fd = accept4(io->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                tg_log_errno(TG_LOG_ERROR, "accept() on %s", ls->text);
                tg_worker_accept_pause();
                ev_timer_set(&w->accept_retry, 0.5, 0.);
                ev_timer_start(w->loop, &w->accept_retry);
                return;
            }
            tg_log_errno(TG_LOG_ERROR, "accept() on %s", ls->text);
            return;
        }
        tg_conn_t *c = tg_conn_accept(ls, fd, (struct sockaddr *)&sa, salen);
        if (c)
            tg_conn_start(c, conn_attach);
    }
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    tg_worker_accept_resume();
}

static void shutdown_check(tg_worker_t *w)
{
    if (w->nconns == 0)
        worker_exit(0);
}


static void shutdown_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    tg_worker_t *w = tg_worker;
    tg_conn_close_idle_all(1.0);
    if (w->nconns > 0 && ev_now(loop) >= w->shutdown_deadline) {
        tg_log(TG_LOG_WARN, "shutdown_timeout: closing %d connections", (int)w->nconns);
        while (w->conns)
            tg_conn_close(w->conns);
    }
    shutdown_check(w);
}


static void graceful_stop(tg_worker_t *w)
{
    if (w->shutting_down)
        return;
    tg_log(TG_LOG_INFO, "gracefully shutting down (%d connections open)", (int)w->nconns);
    tg_worker_accept_pause();
    w->shutting_down = 1;
    for (int i = 0; i < w->nlistens; i++)
        close(w->accepts[i].fd); /* the master keeps its copy */
    tg_upstream_close_idle_all(w->config);
    tg_conn_close_idle_all(1.0);
    w->shutdown_deadline = ev_now(w->loop) + (double)w->config->main->shutdown_timeout / 1000.0;
    ev_timer_set(&w->shutdown_timer, 0.05, 0.05);
    ev_timer_start(w->loop, &w->shutdown_timer);
    shutdown_check(w);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    tg_worker_t *w = tg_worker;
    switch (s->signum) {
    case SIGTERM: graceful_stop(w); break;
    case SIGINT:
    case SIGQUIT: worker_exit(0); break;
    case SIGUSR1:
        tg_log_open(w->config->main->error_log);
        for (int i = 0; i < tg_nmodules; i++)
            if (tg_modules[i]->reopen_logs)
                tg_modules[i]->reopen_logs(w);
        break;
    default: break; /* HUP: the master's business */
    }
}

static void master_check_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    if (getppid() != tg_worker->master_pid) {
        tg_log(TG_LOG_WARN, "the master process is gone");
        graceful_stop(tg_worker);
    }
}

void tg_worker_main(tg_config_t *config, int slot)
{
    tg_worker_t *w = &worker_storage;
    tg_worker = w;
    w->master_pid = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    tg_log_set_slot(slot);
    w->slot = slot;
    w->config = config;
    w->loop = ev_default_loop(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (w->loop == NULL) {
        tg_log(TG_LOG_CRIT, "cannot create the event loop");
        _exit(2);
    }
    size_t bufsize = (size_t)config->main->header_buffer_size;
    tg_buf_pool_init(bufsize < 16384 ? 16384 : bufsize, 1024);
    tg_arena_blocks_init(4096);
    tg_sendq_init(w->loop, (int)config->main->io_uring);

    int n = 0;
    for (tg_listen_t *ls = config->listens; ls; ls = ls->next)
        n++;
    w->accepts = calloc((size_t)n, sizeof(ev_io));
    w->listens = calloc((size_t)n, sizeof(tg_listen_t *));
    if (w->accepts == NULL || w->listens == NULL)
        _exit(2);
    for (tg_listen_t *ls = config->listens; ls; ls = ls->next) {
        for (int i = 0; i < TG_MAX_WORKERS; i++)
            if (i != slot && ls->fds[i] >= 0)
                close(ls->fds[i]); /* other slots' sockets are not ours */
        ev_io_init(&w->accepts[w->nlistens], accept_cb, ls->fds[slot], EV_READ);
        w->accepts[w->nlistens].data = ls;
        w->listens[w->nlistens++] = ls;
    }

    ev_signal_init(&w->sig_term, signal_cb, SIGTERM);
    ev_signal_init(&w->sig_int, signal_cb, SIGINT);
    ev_signal_init(&w->sig_quit, signal_cb, SIGQUIT);
    ev_signal_init(&w->sig_usr1, signal_cb, SIGUSR1);
    ev_signal_init(&w->sig_hup, signal_cb, SIGHUP);
    ev_signal_start(w->loop, &w->sig_term);
    ev_signal_start(w->loop, &w->sig_int);
    ev_signal_start(w->loop, &w->sig_quit);
    ev_signal_start(w->loop, &w->sig_usr1);
    ev_signal_start(w->loop, &w->sig_hup);
    ev_init(&w->shutdown_timer, shutdown_timer_cb);
    ev_init(&w->accept_retry, accept_retry_cb);
    ev_timer_init(&w->master_check, master_check_cb, 1., 1.);
    ev_timer_start(w->loop, &w->master_check);

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);

    tg_watchdog_start(w->loop, slot); /* before module init: lua_init_worker may loop */
    for (int i = 0; i < tg_nmodules; i++)
        if (tg_modules[i]->init_worker && tg_modules[i]->init_worker(w) != 0) {
            tg_log(TG_LOG_CRIT, "module %s failed to start", tg_modules[i]->name);
            _exit(2);
        }
    for (int i = 0; i < w->nlistens; i++)
        ev_io_start(w->loop, &w->accepts[i]);
    tg_log(TG_LOG_INFO, "worker started");
    if (tg_worker_ready_fd >= 0) {
        char up = 1;
        if (write(tg_worker_ready_fd, &up, 1) != 1)
            tg_log_errno(TG_LOG_WARN, "cannot tell the master this worker is up");
        close(tg_worker_ready_fd);
        tg_worker_ready_fd = -1;
    }
    ev_run(w->loop, 0);
    worker_exit(0);
}
