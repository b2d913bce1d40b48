/* idle_clients.c: the client of the benchmark's `idle` scenario.
 *
 * Opens N keep-alive connections to 127.0.0.1:PORT, sends one "GET PATH HTTP/1.1" on each
 * and reads its whole response, so that every connection ends up established and idle after
 * a completed request. Then it prints one "ready ..." line and holds the connections open,
 * watching for any the server closes, until SIGTERM/SIGINT/SIGUSR1 or MAX_SECS after its
 * start; then it closes them all, prints one "done ..." line and exits 0. contrib/bench/run
 * measures the proxy's memory between those two lines.
 *
 *   ready conns=N ok=K non200=A connect=B closed=C timeout=D badresp=E closed_idle=F open_ms=T
 *     ok: connections whose request got a complete 200 response and that are still open;
 *     non200: complete responses with another status; connect: connects that failed;
 *     closed: closed by the server before the response was complete; timeout: not done
 *     within the open phase (MAX_SECS / 2); badresp: unparsable or too large responses;
 *     closed_idle: connections the server closed after their 200 (not in ok)
 *   done held=H closed_idle=C held_ms=T
 *     held: idle connections still open when told to stop; closed_idle: idle connections
 *     the server closed (or reset, or sent unexpected data on) so far, the open phase included
 *
 * With MODE "ws" each connection is a WebSocket instead: the request asks for an upgrade
 * (RFC 6455's sample key), a 101 answer counts as the complete response, then the client sends
 * one masked 5-byte text frame and waits for the same 11 bytes to come back (the benchmark
 * upstream echoes raw bytes), so both directions of every tunnel have carried data before
 * the connections sit idle; "ok" counts connections that got the echo.
 *
 * Invariants: at most INFLIGHT connections are connecting or waiting for their response at
 * once (so the server's listen backlog never overflows and no SYN is retried); every wait
 * is bounded by MAX_SECS in total; loopback only. It raises its own RLIMIT_NOFILE to fit N.
 *
 * With MODE "tls" each connection does a TLS handshake first (TLS 1.2 or 1.3, no
 * certificate check: the benchmark's throwaway certificate), then the same GET over TLS;
 * TLS 1.3 session tickets that arrive after the response are read and are not "stray data".
 *
 * With MODE "h2" each connection is HTTP/2 over TLS (ALPN h2, which the server must select):
 * the client preface, an empty SETTINGS frame and one HEADERS frame (GET PATH, END_STREAM,
 * the header block encoded by hand from HPACK's static table) on stream 1; the response is
 * complete at the END_STREAM of stream 1, its status is read from the first field of the
 * HEADERS block. The server's SETTINGS and PINGs are acknowledged, WINDOW_UPDATEs and
 * SETTINGS acks ignored, before and after the response; a GOAWAY, RST_STREAM or any other
 * frame on an idle connection counts as closed_idle. The frames are written and read by hand
 * (this is a load tool, not the gateway: nghttp2 sessions in the client would cost more
 * memory than the 10,000 connections it holds need).
 *
 * Usage: idle_clients PORT N PATH MAX_SECS [http|ws|tls|h2]
 * Build: gcc -O2 -o build/bench/idle_clients contrib/bench/idle_clients.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define INFLIGHT 256      /* connections connecting or awaiting a response at once */
#define RESP_MAX 8192     /* a response (headers + body) must fit in this */
#define MAX_EVENTS 512
#define H2_IDLE_BUF 256   /* h2: room for a partial frame after the response */

enum { C_FREE = 0, C_CONNECTING, C_HANDSHAKE, C_WAITING, C_ECHO, C_IDLE, C_DONE };

/* The WebSocket mode's frame: FIN + text, masked, 5 bytes "hello" (RFC 6455 section 5.7). */
static const unsigned char ws_frame[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};

typedef struct {
    int fd;
    int state;
    SSL *ssl; /* tls mode */
    char *buf; /* RESP_MAX bytes while waiting for the response (h2: H2_IDLE_BUF once idle), else NULL */
    size_t len;
    int h2_status; /* h2: the response's status, 0 until its HEADERS frame */
} conn_t;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int epfd;
static struct sockaddr_in peer;
static char request[512];
static size_t request_len;
static long n_ok, n_non200, n_connect, n_closed, n_badresp, n_closed_idle;
static int inflight;
static int ws_mode, tls_mode, h2_mode;
static SSL_CTX *tls_ctx;

/* read/write through TLS in tls mode; -1 with errno EAGAIN when TLS wants to wait */
static ssize_t c_read(conn_t *c, void *buf, size_t len)
{
    if (!c->ssl) return read(c->fd, buf, len);
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, (int)len);
    if (n > 0) return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static ssize_t c_write(conn_t *c, const void *buf, size_t len)
{
    if (!c->ssl) return write(c->fd, buf, len);
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf, (int)len);
    return n > 0 ? n : -1;
}

static void conn_finish(conn_t *c, int state)
{
    if (state == C_IDLE && h2_mode) {
        /* h2: frames still come after the response (SETTINGS acks, WINDOW_UPDATEs) */
        char *small = c->len <= H2_IDLE_BUF ? realloc(c->buf, H2_IDLE_BUF) : NULL;
        if (small) {
            c->buf = small;
        } else {
            n_ok--;
            n_badresp++;
            state = C_DONE;
        }
    }
    if (state != C_IDLE || !h2_mode) {
        free(c->buf);
        c->buf = NULL;
    }
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE || c->state == C_WAITING ||
        c->state == C_ECHO)
        inflight--;
    if (state == C_DONE && c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (state == C_DONE && c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    c->state = state;
}

static void conn_start(conn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        n_connect++;
        c->state = C_DONE;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    inflight++;
    c->state = C_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&peer, sizeof(peer)) < 0 && errno != EINPROGRESS) {
        n_connect++;
        conn_finish(c, C_DONE);
        return;
    }
    struct epoll_event e = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) {
        n_connect++;
        conn_finish(c, C_DONE);
    }
}

/* h2: the client preface, an empty SETTINGS frame and HEADERS for stream 1, built once. */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void put_frame_head(unsigned char *p, size_t len, int type, int flags, uint32_t stream)
{
    p[0] = (unsigned char)(len >> 16);
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    p[3] = (unsigned char)type;
    p[4] = (unsigned char)flags;
    p[5] = (unsigned char)(stream >> 24);
    p[6] = (unsigned char)(stream >> 16);
    p[7] = (unsigned char)(stream >> 8);
    p[8] = (unsigned char)stream;
}

/* Fills request[] with the h2 opening; returns its length, or 0 if PATH is too long. The
 * block: :method GET (static index 2), :scheme https (7), then :path (name index 4) and
 * :authority (name index 1) as literals without indexing, no Huffman coding. */
static size_t h2_request(const char *path)
{
    size_t plen = strlen(path), n = 0;
    if (plen > 126) return 0;
    unsigned char *p = (unsigned char *)request;
    memcpy(p, h2_preface, 24);
    n = 24;
    put_frame_head(p + n, 0, 4, 0, 0); /* SETTINGS, no parameters: the defaults */
    n += 9;
    unsigned char block[160];
    size_t b = 0;
    block[b++] = 0x82;
    block[b++] = 0x87;
    block[b++] = 0x04;
    block[b++] = (unsigned char)plen;
    memcpy(block + b, path, plen);
    b += plen;
    block[b++] = 0x01;
    block[b++] = 5;
    memcpy(block + b, "bench", 5);
    b += 5;
    put_frame_head(p + n, b, 1, 0x1 | 0x4, 1); /* HEADERS, END_STREAM | END_HEADERS */
    n += 9;
    memcpy(p + n, block, b);
    return n + b;
}

/* The status in an HPACK block's first field, or -1: an indexed field of the static table
 * (8 to 14: 200 204 206 304 400 404 500) or a literal with name index 8 and a 3-digit value,
 * plain or Huffman-coded (then only "200" is recognised). A dynamic table size update
 * first is skipped. */
static int h2_status_of(const unsigned char *p, size_t len)
{
    static const int indexed[] = {200, 204, 206, 304, 400, 404, 500};
    size_t i = 0;
    if (i < len && (p[i] & 0xe0) == 0x20) i++; /* a small table size update */
    if (i >= len) return -1;
    if (p[i] & 0x80) {
        int idx = p[i] & 0x7f;
        return idx >= 8 && idx <= 14 ? indexed[idx - 8] : -1;
    }
    int name = (p[i] & 0xc0) == 0x40 ? (p[i] & 0x3f) : (p[i] & 0xe0) == 0 ? (p[i] & 0x0f) : -1;
    if (name != 8 || i + 2 >= len) return -1;
    unsigned vlen = p[i + 1] & 0x7f;
    const unsigned char *v = p + i + 2;
    if (i + 2 + vlen > len) return -1;
    if (p[i + 1] & 0x80) /* Huffman: "200" is 00010 00000 00000 and one padding bit */
        return vlen == 2 && v[0] == 0x10 && v[1] == 0x01 ? 200 : -1;
    if (vlen != 3) return -1;
    return (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
}

/* Consumes the whole frames in c->buf: answers SETTINGS and PING, notes the response's
 * status and end. Returns 1 when stream 1 has ended, 0 for more to come, -1 when the
 * connection is unusable (GOAWAY, a reset of stream 1, a frame too large; *why: closed or
 * badresp), -2 on an unexpected frame while idle. */
static int h2_frames(conn_t *c, size_t cap, int idle, long **why)
{
    size_t off = 0;
    int done = 0;
    while (c->len - off >= 9) {
        const unsigned char *f = (const unsigned char *)c->buf + off;
        size_t flen = ((size_t)f[0] << 16) | ((size_t)f[1] << 8) | f[2];
        int type = f[3], flags = f[4];
        uint32_t sid = (((uint32_t)f[5] & 0x7f) << 24) | ((uint32_t)f[6] << 16) | ((uint32_t)f[7] << 8) | f[8];
        if (9 + flen > cap) {
            *why = &n_badresp;
            return idle ? -2 : -1;
        }
        if (c->len - off < 9 + flen) break;
        const unsigned char *pl = f + 9;
        if (type == 4 && !(flags & 1)) { /* SETTINGS: acknowledge */
            unsigned char ack[9];
            put_frame_head(ack, 0, 4, 1, 0);
            if (c_write(c, ack, 9) != 9) { *why = &n_closed; return -1; }
        } else if (type == 6 && !(flags & 1) && flen == 8) { /* PING: echo */
            unsigned char pong[17];
            put_frame_head(pong, 8, 6, 1, 0);
            memcpy(pong + 9, pl, 8);
            if (c_write(c, pong, 17) != 17) { *why = &n_closed; return -1; }
        } else if (type == 7 || (type == 3 && sid == 1)) { /* GOAWAY, RST_STREAM */
            *why = &n_closed;
            return idle ? -2 : -1;
        } else if (idle && type != 4 && type != 6 && type != 8) {
            return -2;
        } else if (type == 1 && sid == 1) { /* HEADERS: padding and priority fields first */
            size_t o = 0, pad = 0;
            if (flags & 0x8) { pad = flen ? pl[0] : 0; o = 1; }
            if (flags & 0x20) o += 5;
            if (c->h2_status == 0)
                c->h2_status = o + pad <= flen ? h2_status_of(pl + o, flen - o - pad) : -1;
            if (flags & 1) done = 1;
        } else if (type == 0 && sid == 1 && (flags & 1)) {
            done = 1;
        }
        off += 9 + flen;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return done;
}

/* Is the response in c->buf complete? 1 yes (status in *status), 0 not yet, -1 invalid. */
static int response_complete(conn_t *c, int *status)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return c->len >= RESP_MAX ? -1 : 0;
    size_t hdr_len = (size_t)(end - c->buf) + 4;
    if (sscanf(c->buf, "HTTP/1.%*[01] %d", status) != 1) return -1;
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) return 1;
    long clen = -1;
    int chunked = 0;
    for (char *p = memchr(c->buf, '\n', hdr_len); p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
        p++;
        if (strncasecmp(p, "Content-Length:", 15) == 0) clen = strtol(p + 15, NULL, 10);
        else if (strncasecmp(p, "Transfer-Encoding:", 18) == 0) {
            char *eol = memchr(p, '\r', (size_t)(end + 2 - p));
            if (eol && memmem(p, (size_t)(eol - p), "chunked", 7)) chunked = 1;
        }
    }
    if (chunked) /* a small body: done once the last chunk and empty trailer are in */
        return c->len >= hdr_len + 5 && memcmp(c->buf + c->len - 5, "0\r\n\r\n", 5) == 0
                   ? 1 : (c->len >= RESP_MAX ? -1 : 0);
    if (clen < 0) return -1; /* would be delimited by close: not a keep-alive response */
    if (hdr_len + (size_t)clen > RESP_MAX) return -1;
    return c->len >= hdr_len + (size_t)clen;
}

static void on_io(conn_t *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            n_connect++;
            conn_finish(c, C_DONE);
            return;
        }
        if (!(ev & EPOLLOUT)) return;
        if (tls_mode) {
            c->ssl = SSL_new(tls_ctx);
            if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
                n_connect++;
                conn_finish(c, C_DONE);
                return;
            }
            SSL_set_connect_state(c->ssl);
            c->state = C_HANDSHAKE;
            ev = EPOLLIN;
        }
    }
    if (c->state == C_HANDSHAKE) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                struct epoll_event w = {.events = (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN) | EPOLLRDHUP,
                                        .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &w);
                return;
            }
            n_connect++;
            conn_finish(c, C_DONE);
            return;
        }
        if (h2_mode) {
            const unsigned char *proto = NULL;
            unsigned plen = 0;
            SSL_get0_alpn_selected(c->ssl, &proto, &plen);
            if (plen != 2 || memcmp(proto, "h2", 2) != 0) { /* the server did not choose h2 */
                n_badresp++;
                conn_finish(c, C_DONE);
                return;
            }
        }
    }
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
        /* the request is tiny: one write on a fresh socket sends it whole */
        if (c_write(c, request, request_len) != (ssize_t)request_len) {
            n_closed++;
            conn_finish(c, C_DONE);
            return;
        }
        c->buf = malloc(RESP_MAX);
        c->len = 0;
        c->h2_status = 0;
        c->state = C_WAITING;
        struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
        return;
    }
    if (c->state == C_WAITING) {
        for (;;) {
            ssize_t n = c_read(c, c->buf + c->len, RESP_MAX - c->len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            if (n <= 0) {
                n_closed++;
                conn_finish(c, C_DONE);
                return;
            }
            c->len += (size_t)n;
            if (h2_mode) {
                long *why = &n_badresp;
                int r = h2_frames(c, RESP_MAX, 0, &why);
                if (r < 0) {
                    (*why)++;
                    conn_finish(c, C_DONE);
                    return;
                }
                if (r > 0) {
                    if (c->h2_status == 200) {
                        n_ok++;
                        conn_finish(c, C_IDLE);
                    } else {
                        if (c->h2_status > 0) n_non200++;
                        else n_badresp++;
                        conn_finish(c, C_DONE);
                    }
                    return;
                }
                continue;
            }
            int status = 0;
            int r = response_complete(c, &status);
            if (r < 0) {
                n_badresp++;
                conn_finish(c, C_DONE);
                return;
            }
            if (r > 0) {
                if (ws_mode && status == 101) {
                    /* the 101 ends the header block; nothing may follow it before our frame */
                    if (c->len != (size_t)((char *)memmem(c->buf, c->len, "\r\n\r\n", 4) - c->buf) + 4 ||
                        write(c->fd, ws_frame, sizeof(ws_frame)) != (ssize_t)sizeof(ws_frame)) {
                        n_badresp++;
                        conn_finish(c, C_DONE);
                        return;
                    }
                    c->len = 0;
                    c->state = C_ECHO;
                } else if (!ws_mode && status == 200) {
                    n_ok++;
                    conn_finish(c, C_IDLE); /* stays open and in the epoll set */
                } else {
                    n_non200++;
                    conn_finish(c, C_DONE);
                }
                return;
            }
            if (c->len >= RESP_MAX) {
                n_badresp++;
                conn_finish(c, C_DONE);
                return;
            }
        }
    }
    if (c->state == C_ECHO) {
        for (;;) {
            ssize_t n = read(c->fd, c->buf + c->len, sizeof(ws_frame) - c->len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return;
            if (n <= 0) {
                n_closed++;
                conn_finish(c, C_DONE);
                return;
            }
            c->len += (size_t)n;
            if (c->len < sizeof(ws_frame)) continue;
            if (memcmp(c->buf, ws_frame, sizeof(ws_frame)) != 0) {
                n_badresp++;
                conn_finish(c, C_DONE);
            } else {
                n_ok++;
                conn_finish(c, C_IDLE);
            }
            return;
        }
    }
    if (c->state == C_IDLE) {
        if (h2_mode) {
            for (;;) {
                ssize_t n = c_read(c, c->buf + c->len, H2_IDLE_BUF - c->len);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0 && errno == EAGAIN) return;
                long *why = &n_badresp;
                if (n > 0) {
                    c->len += (size_t)n;
                    if (h2_frames(c, H2_IDLE_BUF, 1, &why) >= 0) continue;
                }
                n_closed_idle++; /* EOF, an error, GOAWAY or an unexpected frame */
                n_ok--;
                conn_finish(c, C_DONE);
                return;
            }
        }
        /* nothing should arrive on an idle connection: EOF, a reset or stray data all count */
        char tmp[512];
        ssize_t n = c_read(c, tmp, sizeof(tmp)); /* TLS: consumes late session tickets */
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        n_closed_idle++;
        n_ok--;
        conn_finish(c, C_DONE);
    }
}

static void raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= (rlim_t)want) return;
    struct rlimit nr = {.rlim_cur = (rlim_t)want, .rlim_max = rl.rlim_max};
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) nr.rlim_max = (rlim_t)want;
    if (setrlimit(RLIMIT_NOFILE, &nr) == 0) return;
    nr.rlim_cur = nr.rlim_max = rl.rlim_max; /* not allowed to raise the hard limit */
    setrlimit(RLIMIT_NOFILE, &nr);
    fprintf(stderr, "idle_clients: fd limit %ld is below the %ld it needs\n", (long)rl.rlim_max, want);
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s PORT N PATH MAX_SECS [http|ws|tls|h2]\n", argv[0]);
        return 2;
    }
    ws_mode = argc == 6 && strcmp(argv[5], "ws") == 0;
    h2_mode = argc == 6 && strcmp(argv[5], "h2") == 0;
    tls_mode = h2_mode || (argc == 6 && strcmp(argv[5], "tls") == 0);
    if (argc == 6 && !ws_mode && !tls_mode && strcmp(argv[5], "http") != 0) {
        fprintf(stderr, "idle_clients: mode must be http, ws, tls or h2\n");
        return 2;
    }
    if (tls_mode) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (!tls_ctx) return 1;
        SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
        if (h2_mode && SSL_CTX_set_alpn_protos(tls_ctx, (const unsigned char *)"\x02h2", 3) != 0) return 1;
    }
    int port = atoi(argv[1]);
    long n = atol(argv[2]);
    double max_ms = atof(argv[4]) * 1000;
    if (port <= 0 || port > 65535 || n <= 0 || n > 1000000 || max_ms <= 0 || argv[3][0] != '/') {
        fprintf(stderr, "idle_clients: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    raise_nofile(n + 64);
    setvbuf(stdout, NULL, _IOLBF, 0);

    peer.sin_family = AF_INET;
    peer.sin_port = htons((uint16_t)port);
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle_clients\r\n%s\r\n",
                                   argv[3],
                                   ws_mode ? "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                             "Sec-WebSocket-Version: 13\r\n"
                                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                           : "");
    if (request_len >= sizeof(request)) return 2;
    if (h2_mode && !(request_len = h2_request(argv[3]))) return 2;

    conn_t *conns = calloc((size_t)n, sizeof(conn_t));
    if (!conns) return 1;
    for (long i = 0; i < n; i++) conns[i].fd = -1;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("epoll_create1");
        return 1;
    }

    /* Phase 1: open them, a window of INFLIGHT at a time, each with one request. */
    double t0 = now_ms();
    double open_deadline = t0 + max_ms / 2;
    long next = 0;
    struct epoll_event evs[MAX_EVENTS];
    while (!stop_flag && now_ms() < open_deadline) {
        while (next < n && inflight < INFLIGHT) conn_start(&conns[next++]);
        if (next >= n && inflight == 0) break;
        int k = epoll_wait(epfd, evs, MAX_EVENTS, 100);
        if (k < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < k; i++) on_io((conn_t *)evs[i].data.ptr, evs[i].events);
    }
    long n_timeout = 0;
    for (long i = 0; i < n; i++) {
        if (conns[i].state == C_CONNECTING || conns[i].state == C_HANDSHAKE ||
            conns[i].state == C_WAITING || conns[i].state == C_ECHO || conns[i].state == C_FREE) {
            n_timeout++;
            conn_finish(&conns[i], C_DONE);
        }
    }
    double t1 = now_ms();
    printf("ready conns=%ld ok=%ld non200=%ld connect=%ld closed=%ld timeout=%ld badresp=%ld "
           "closed_idle=%ld open_ms=%.0f\n",
           n, n_ok, n_non200, n_connect, n_closed, n_timeout, n_badresp, n_closed_idle, t1 - t0);

    /* Phase 2: hold them until told to stop (or MAX_SECS), noting any the server closes. */
    while (!stop_flag && now_ms() < t0 + max_ms) {
        int k = epoll_wait(epfd, evs, MAX_EVENTS, 100);
        if (k < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < k; i++) on_io((conn_t *)evs[i].data.ptr, evs[i].events);
    }
    long held = 0;
    for (long i = 0; i < n; i++) {
        if (conns[i].state == C_IDLE) {
            held++;
            conn_finish(&conns[i], C_DONE);
        }
    }
    printf("done held=%ld closed_idle=%ld held_ms=%.0f\n", held, n_closed_idle, now_ms() - t1);
    return 0;
}
