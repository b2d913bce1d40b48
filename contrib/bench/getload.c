/* getload.c: the load generator of the benchmark's large-file scenarios.
 *
 *   getload -c CONNS -d SECS [-T TIMEOUT_SECS] URL      URL: http[s]://127.0.0.1:PORT/PATH
 *
 * Keeps CONNS keep-alive HTTP/1.1 connections busy with "GET PATH" for SECS seconds, one
 * request in flight per connection (as wrk), and prints the line report.lua prints for wrk:
 *
 *   TGBENCH requests=N duration_us=D bytes=B connect=E read=E write=E status=E timeout=E
 *           p50_us=L p90_us=L p99_us=L max_us=L mean_us=L
 *
 * Why not wrk: wrk reads 8 KB per read(2) and runs its HTTP parser over every body byte.
 * With a 100 KB answer that is 13 reads and 100 KB parsed per request, and on the one CPU
 * the load side has, wrk ran out of CPU before the server did (Tollgate at 30 % of its CPU
 * on static_100k). getload reads up to 256 KB per call and skips the body by its length.
 * The server's work is the same; only the client costs less.
 *
 * Counted as in wrk: requests = complete answers (after one with Connection: close, a new
 * connection takes over); status = answers with a status above 399;
 * read = connections that ended or failed before their answer was complete (the connection
 * is opened again); connect = connects or TLS handshakes that failed; timeout = answers not
 * complete TIMEOUT_SECS (default 10) after their request. Latency is from the request's
 * write to the answer's last byte. Answers must carry Content-Length (static files do);
 * one without it counts as a read error. Loopback only; the run ends after SECS.
 *
 * Build: cc -O2 -o getload getload.c -lssl -lcrypto   (contrib/bench/run builds it) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF (256 * 1024) /* bytes per read */
#define HEAD_MAX 8192     /* an answer's head must fit */

enum { CONNECTING, HANDSHAKE, HEAD, BODY };

typedef struct {
    int fd, state;
    SSL *ssl;
    uint64_t sent_us;  /* when the request went out, 0: none in flight */
    uint64_t body_left;
    int closing; /* the answer said Connection: close */
    size_t head_len;
    char head[HEAD_MAX];
} conn_t;

static struct sockaddr_in addr;
static SSL_CTX *tls;
static int epfd;
static char request[1024];
static size_t request_len;
static char rbuf[RBUF];

static uint64_t requests, bytes, err_connect, err_read, err_write, err_status, err_timeout;
static uint32_t *lat; /* µs per complete answer */
static size_t nlat, lat_cap;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void record(uint64_t us)
{
    if (nlat == lat_cap) {
        lat_cap = lat_cap ? 2 * lat_cap : 65536;
        uint32_t *n = realloc(lat, lat_cap * sizeof *lat);
        if (n == NULL) {
            perror("getload: realloc");
            exit(1);
        }
        lat = n;
    }
    lat[nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void watch(conn_t *c, uint32_t events, int op)
{
    struct epoll_event e = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &e) < 0) {
        perror("getload: epoll_ctl");
        exit(1);
    }
}

static void conn_open(conn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("getload: socket");
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    c->sent_us = 0;
    c->head_len = 0;
    /* a failed connect shows as EPOLLERR: counted, and opened again, in on_event */
    connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
    watch(c, EPOLLOUT | EPOLLIN, EPOLL_CTL_ADD);
}

static void conn_close(conn_t *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    c->fd = -1;
}

/* The connection is over: count why (counter, or NULL: the server ended it
 * after an answer) and open it again. */
static void conn_reopen(conn_t *c, uint64_t *counter)
{
    if (counter)
        (*counter)++;
    conn_close(c);
    conn_open(c);
}

/* Sends the request. 0, or -1 after a failure was counted. */
static int send_request(conn_t *c)
{
    ssize_t n = c->ssl ? SSL_write(c->ssl, request, (int)request_len)
                       : send(c->fd, request, request_len, MSG_NOSIGNAL);
    if (n != (ssize_t)request_len) { /* a 60-byte request always fits the socket buffer */
        conn_reopen(c, &err_write);
        return -1;
    }
    c->sent_us = now_us();
    c->state = HEAD;
    c->head_len = 0;
    return 0;
}

/* The head in c->head is complete (len bytes with the blank line). 0 or -1 (bad). */
static int parse_head(conn_t *c, size_t len)
{
    c->head[len - 1] = '\0';
    int status = 0;
    if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    if (status > 399)
        err_status++;
    int length = 0;
    c->closing = 0;
    const char *p = c->head;
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, "content-length:", 15) == 0) {
            c->body_left = strtoull(p + 15, NULL, 10);
            length = 1;
        } else if (strncasecmp(p, "connection:", 11) == 0) {
            c->closing = strncasecmp(p + 11 + strspn(p + 11, " \t"), "close", 5) == 0;
        }
    }
    return length ? 0 : -1;
}

/* Takes n bytes of the answer. 0, or -1: the connection was closed (and opened again). */
static int take(conn_t *c, const char *buf, size_t n)
{
    while (n > 0) {
        if (c->state == HEAD) {
            size_t room = HEAD_MAX - c->head_len, k = n < room ? n : room;
            memcpy(c->head + c->head_len, buf, k);
            size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
            c->head_len += k;
            char *end = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
            if (end == NULL) {
                if (c->head_len == HEAD_MAX)
                    goto bad;
                return 0;
            }
            size_t hl = (size_t)(end - c->head) + 4;
            if (parse_head(c, hl) < 0)
                goto bad;
            bytes += hl;
            /* what followed the head in this chunk is body */
            size_t used = hl - (c->head_len - k);
            buf += used;
            n -= used;
            c->state = BODY;
        }
        size_t k = n < c->body_left ? n : (size_t)c->body_left;
        c->body_left -= k;
        bytes += k;
        buf += k;
        n -= k;
        if (c->body_left == 0) { /* also when the head ended the chunk: an empty body */
            if (n > 0) /* one request in flight: nothing may follow its answer */
                goto bad;
            requests++;
            record(now_us() - c->sent_us);
            if (c->closing) { /* the server ends the connection: a new one, no error */
                conn_reopen(c, NULL);
                return -1;
            }
            return send_request(c);
        }
    }
    return 0;
bad:
    conn_reopen(c, &err_read);
    return -1;
}

static void on_readable(conn_t *c)
{
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            n = SSL_read(c->ssl, rbuf, RBUF);
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, (int)n);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                conn_reopen(c, &err_read);
                return;
            }
        } else {
            n = recv(c->fd, rbuf, RBUF, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0) {
                conn_reopen(c, &err_read);
                return;
            }
        }
        if (c->state != HEAD && c->state != BODY) {
            conn_reopen(c, &err_read);
            return;
        }
        if (take(c, rbuf, (size_t)n) < 0)
            return;
        if (!c->ssl && (size_t)n < RBUF)
            return; /* drained: epoll is level-triggered */
    }
}

static void on_event(conn_t *c, uint32_t ev)
{
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            conn_reopen(c, &err_connect);
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        watch(c, EPOLLIN, EPOLL_CTL_MOD);
        if (tls) {
            c->ssl = SSL_new(tls);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            c->state = HANDSHAKE;
        } else {
            send_request(c);
            return;
        }
    }
    if (c->state == HANDSHAKE) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
            watch(c, EPOLLIN, EPOLL_CTL_MOD);
            send_request(c);
            return;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            watch(c, e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD);
            return;
        }
        conn_reopen(c, &err_connect);
        return;
    }
    on_readable(c);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(double q)
{
    if (nlat == 0)
        return 0;
    size_t i = (size_t)(q / 100 * (double)nlat);
    return lat[i < nlat ? i : nlat - 1];
}

static void usage(void)
{
    fprintf(stderr, "usage: getload -c CONNS -d SECS [-T TIMEOUT_SECS] http[s]://127.0.0.1:PORT/PATH\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int nconns = 50, secs = 5, timeout = 10, opt;
    while ((opt = getopt(argc, argv, "c:d:T:")) != -1) {
        if (opt == 'c')
            nconns = atoi(optarg);
        else if (opt == 'd')
            secs = atoi(optarg);
        else if (opt == 'T')
            timeout = atoi(optarg);
        else
            usage();
    }
    if (optind != argc - 1 || nconns < 1 || secs < 1 || timeout < 1)
        usage();
    const char *url = argv[optind], *rest;
    if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else
        usage();
    char host[64];
    int port, off = 0;
    if (sscanf(rest, "%63[^:]:%d%n", host, &port, &off) != 2 || rest[off] != '/')
        usage();
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "getload: %s: loopback addresses only\n", host);
        return 2;
    }
    int rl = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", rest + off, host, port);
    if (rl < 0 || (size_t)rl >= sizeof request)
        usage();
    request_len = (size_t)rl;
    if (url[4] == 's') {
        tls = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(tls, SSL_VERIFY_NONE, NULL); /* the benchmark's throwaway certificate */
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(tls, alpn, sizeof alpn - 1);
        SSL_CTX_set_mode(tls, SSL_MODE_AUTO_RETRY);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conn_t *conns = calloc((size_t)nconns, sizeof *conns);
    if (epfd < 0 || conns == NULL) {
        perror("getload");
        return 1;
    }
    for (int i = 0; i < nconns; i++)
        conn_open(&conns[i]);
    uint64_t t0 = now_us(), end = t0 + (uint64_t)secs * 1000000u, next_check = t0 + 100000;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_us();
        if (t >= end)
            break;
        int n = epoll_wait(epfd, evs, 256, 100);
        if (n < 0 && errno != EINTR) {
            perror("getload: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        if ((t = now_us()) >= next_check) { /* answers overdue: count and reconnect */
            next_check = t + 100000;
            for (int i = 0; i < nconns; i++)
                if (conns[i].sent_us && (conns[i].state == HEAD || conns[i].state == BODY)
                    && t - conns[i].sent_us > (uint64_t)timeout * 1000000u)
                    conn_reopen(&conns[i], &err_timeout);
        }
    }
    uint64_t dur = now_us() - t0;
    for (int i = 0; i < nconns; i++)
        conn_close(&conns[i]);
    double sum = 0;
    for (size_t i = 0; i < nlat; i++)
        sum += lat[i];
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    printf("TGBENCH requests=%llu duration_us=%llu bytes=%llu connect=%llu read=%llu write=%llu "
           "status=%llu timeout=%llu p50_us=%u p90_us=%u p99_us=%u max_us=%u mean_us=%.1f\n",
           (unsigned long long)requests, (unsigned long long)dur, (unsigned long long)bytes,
           (unsigned long long)err_connect, (unsigned long long)err_read,
           (unsigned long long)err_write, (unsigned long long)err_status,
           (unsigned long long)err_timeout, pct(50), pct(90), pct(99), nlat ? lat[nlat - 1] : 0,
           nlat ? sum / (double)nlat : 0.0);
    free(lat);
    free(conns);
    if (tls)
        SSL_CTX_free(tls);
    return 0;
}
