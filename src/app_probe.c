/* App instance probes (see app_probe.h). A probe never blocks: every step
 * polls its socket with a zero timeout, so the master may step dozens of
 * them per tick and still answer its signals at once. A 2xx status line is
 * a pass; anything else, a refused or reset connection or the deadline, is
 * a fail. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "app_probe.h"

int tg_app_probe_start(tg_app_probe_t *p, const struct sockaddr_storage *ss, socklen_t len,
                       const tg_str_t *path, double deadline)
{
    p->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) return -1;
    p->phase = 0;
    p->deadline = deadline;
    p->get = path != NULL;
    p->sent = p->got = 0;
    if (path) {
        int n = snprintf(p->req, sizeof(p->req),
                         "GET %.*s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tollgate-app-probe"
                         "\r\nConnection: close\r\n\r\n",
                         TG_STR_FMT(*path));
        p->req_len = n > 0 && (size_t)n < sizeof(p->req) ? (size_t)n : 0;
    }
    if (connect(p->fd, (const struct sockaddr *)ss, len) != 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        /* refused at once (the app does not listen yet): the next probe retries */
        close(p->fd);
        p->fd = -1;
        return -1;
    }
    return 0;
}

short tg_app_probe_events(const tg_app_probe_t *p)
{
    if (p->fd < 0) return 0;
    return p->phase == 2 ? POLLIN : POLLOUT;
}

void tg_app_probe_stop(tg_app_probe_t *p)
{
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
}

static int finish(tg_app_probe_t *p, int rc)
{
    tg_app_probe_stop(p);
    return rc;
}

int tg_app_probe_step(tg_app_probe_t *p, double now)
{
    if (p->fd < 0) return -1;
    for (;;) {
        struct pollfd pfd = {p->fd, tg_app_probe_events(p), 0};
        if (poll(&pfd, 1, 0) < 0) return finish(p, -1);
        if (pfd.revents == 0) return now > p->deadline ? finish(p, -1) : 0;
        if (p->phase == 0) {
            int err = 0;
            socklen_t elen = sizeof(err);
            if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
                return finish(p, -1);
            if (!p->get) return finish(p, 1);
            p->phase = 1;
        } else if (p->phase == 1) {
            ssize_t n = send(p->fd, p->req + p->sent, p->req_len - p->sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN) return finish(p, -1);
            if (n > 0 && (p->sent += (size_t)n) == p->req_len) p->phase = 2;
        } else {
            ssize_t n = recv(p->fd, p->resp + p->got, sizeof(p->resp) - p->got, 0);
            if (n < 0 && errno == EAGAIN) continue;
            if (n <= 0) return finish(p, -1);
            p->got += (size_t)n;
            if (p->got < 12) continue;
            /* "HTTP/1.1 200" */
            int ok = memcmp(p->resp, "HTTP/1.", 7) == 0 && p->resp[8] == ' ' && p->resp[9] == '2';
            return finish(p, ok ? 1 : -1);
        }
    }
}
