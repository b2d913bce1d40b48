/* static_upstream.c: the benchmark's upstream, a tiny single-threaded epoll HTTP/1.1 server.
 *
 * It exists so that the proxies under test, not the backend, are the bottleneck: every
 * response is built once at start-up and sent with writev() straight from static memory.
 *
 *   GET|HEAD /small    ~100-byte text body
 *   GET|HEAD /json1k   1 KB JSON
 *   GET|HEAD /json50k  50 KB JSON
 *   GET|HEAD /100k     100 KB octet stream
 *   POST /upload       reads and discards a body of any size (Content-Length or chunked),
 *                      answers {"received":N}
 *   GET /ws            with "Upgrade: websocket": 101 Switching Protocols, then the
 *                      connection echoes every byte it reads (a raw tunnel echo: enough for
 *                      the idle-WebSocket scenario, whose client sends one frame and reads
 *                      it back). The accept key is computed for the fixed key the
 *                      benchmark's client sends (RFC 6455's sample key); proxies forward it
 *                      as is.
 *   anything else      404 (405 for a known path with the wrong method)
 *
 * Invariants: connections are keep-alive unless the client asks otherwise (Connection:
 * close, or HTTP/1.0 without keep-alive); requests are parsed one after the other from the
 * same buffer, so pipelined requests are answered in order; a request body is skipped
 * without being copied; no connection holds more than MAX_QUEUE unsent responses (past
 * that it stops reading until the peer drains them). Loopback only: it binds 127.0.0.1.
 *
 * Usage: static_upstream PORT        (prints "listening 127.0.0.1:PORT" when ready)
 * Build: gcc -O2 -o build/bench/static_upstream contrib/bench/static_upstream.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define IN_SIZE (64 * 1024) /* read buffer; also the request header size limit */
#define MAX_QUEUE 64        /* unsent responses per connection before we stop reading */
#define MAX_EVENTS 256

/* A prebuilt response: header and body contiguous, in a keep-alive and a close flavour. */
typedef struct {
    const char *path;
    const char *method; /* "GET" (HEAD allowed too) or "POST" */
    char *ka;           /* keep-alive variant */
    size_t ka_len, ka_hdr_len;
    char *cl; /* "Connection: close" variant */
    size_t cl_len, cl_hdr_len;
} response_t;

typedef enum {
    ST_HEAD = 0,
    ST_BODY_CL,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_CRLF,
    ST_TRAILER,
    ST_TUNNEL
} state_t;

typedef struct {
    const char *p; /* static response, or conn->dyn[i] */
    size_t len;
} out_t;

typedef struct conn_s {
    int fd;
    state_t state;
    char in[IN_SIZE];
    size_t in_len;
    size_t scan;                  /* where the next search for the end of the header block starts */
    unsigned long long body_left; /* bytes of body (or current chunk) still to skip */
    unsigned long long body_seen; /* total body bytes of the current request */
    int close_after;              /* current request asked for Connection: close */
    int closing;                  /* no more requests: close once the queue is written */
    const response_t *pending;    /* the answer to send once the body is consumed */
    int pending_head;             /* HEAD request: headers only */
    out_t q[MAX_QUEUE];
    int q_head, q_len;
    size_t q_off;             /* bytes of q[q_head] already written */
    char dyn[MAX_QUEUE][160]; /* per-slot storage for generated responses */
    unsigned events;
    struct conn_s *next_free;
} conn_t;

static int epfd;
static conn_t *free_conns;
static response_t routes[8];
static int nroutes;
static response_t resp_404, resp_405, resp_400;

static char *xmalloc(size_t n)
{
    char *p = malloc(n);
    if (p == NULL) {
        perror("malloc");
        exit(1);
    }
    return p;
}

/* Fills out a valid JSON document of exactly `size` bytes (size >= 64). */
static char *make_json(size_t size)
{
    char *b = xmalloc(size + 1);
    size_t n = 0;
    int i = 0;
    n += (size_t)sprintf(b, "{\"items\":[");
    for (;;) {
        char item[96];
        int l = snprintf(item, sizeof(item), "%s{\"id\":%d,\"name\":\"item-%05d\",\"ok\":true}",
                         i ? "," : "", i, i);
        /* leave room for ],"pad":"" } */
        if (n + (size_t)l + 12 > size) break;
        memcpy(b + n, item, (size_t)l);
        n += (size_t)l;
        i++;
    }
    n += (size_t)sprintf(b + n, "],\"pad\":\"");
    while (n < size - 2)
        b[n++] = 'x';
    b[n++] = '"';
    b[n++] = '}';
    b[n] = '\0';
    return b;
}

static char *make_bytes(size_t size, const char *pattern)
{
    char *b = xmalloc(size + 1);
    size_t pl = strlen(pattern);
    for (size_t i = 0; i < size; i++)
        b[i] = pattern[i % pl];
    b[size] = '\0';
    return b;
}

static void build_one(char **out, size_t *len, size_t *hdr_len, int status, const char *reason,
                      const char *type, const char *body, size_t body_len, int close)
{
    char hdr[256];
    int h = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 %d %s\r\nServer: tollgate-bench-upstream\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                     status, reason, type, body_len, close ? "Connection: close\r\n" : "");
    *out = xmalloc((size_t)h + body_len);
    memcpy(*out, hdr, (size_t)h);
    memcpy(*out + h, body, body_len);
    *len = (size_t)h + body_len;
    *hdr_len = (size_t)h;
}

static void build(response_t *r, const char *path, const char *method, int status,
                  const char *reason, const char *type, const char *body, size_t body_len)
{
    r->path = path;
    r->method = method;
    build_one(&r->ka, &r->ka_len, &r->ka_hdr_len, status, reason, type, body, body_len, 0);
    build_one(&r->cl, &r->cl_len, &r->cl_hdr_len, status, reason, type, body, body_len, 1);
}

static void build_routes(void)
{
    /* exactly 100 bytes, ends with a newline */
    const char *small = "Hello from the Tollgate benchmark upstream. This body is one hundred "
                        "bytes long, give or take......\n";
    build(&routes[nroutes++], "/small", "GET", 200, "OK", "text/plain", small, strlen(small));
    char *j1 = make_json(1024), *j50 = make_json(50 * 1024);
    build(&routes[nroutes++], "/json1k", "GET", 200, "OK", "application/json", j1, 1024);
    build(&routes[nroutes++], "/json50k", "GET", 200, "OK", "application/json", j50, 50 * 1024);
    char *k100 = make_bytes(100 * 1024, "0123456789abcdefghijklmnopqrstuvwxyz\n");
    build(&routes[nroutes++], "/100k", "GET", 200, "OK", "application/octet-stream", k100,
          100 * 1024);
    /* /upload is generated per request (it reports the byte count); the entry routes it */
    build(&routes[nroutes++], "/upload", "POST", 200, "OK", "application/json", "{}", 2);
    build(&resp_404, NULL, NULL, 404, "Not Found", "text/plain", "not found\n", 10);
    build(&resp_405, NULL, NULL, 405, "Method Not Allowed", "text/plain", "bad method\n", 11);
    build(&resp_400, NULL, NULL, 400, "Bad Request", "text/plain", "bad request\n", 12);
}

static conn_t *conn_get(int fd)
{
    conn_t *c = free_conns;
    if (c != NULL)
        free_conns = c->next_free;
    else
        c = (conn_t *)xmalloc(sizeof(*c));
    c->fd = fd;
    c->state = ST_HEAD;
    c->in_len = c->scan = 0;
    c->body_left = c->body_seen = 0;
    c->close_after = c->closing = 0;
    c->pending = NULL;
    c->pending_head = 0;
    c->q_head = c->q_len = 0;
    c->q_off = 0;
    c->events = 0;
    return c;
}

static void conn_close(conn_t *c)
{
    close(c->fd); /* also removes it from the epoll set */
    c->next_free = free_conns;
    free_conns = c;
}

static void set_events(conn_t *c, unsigned ev)
{
    if (ev == c->events) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void enqueue(conn_t *c, const char *p, size_t len)
{
    int slot = (c->q_head + c->q_len) % MAX_QUEUE;
    c->q[slot].p = p;
    c->q[slot].len = len;
    c->q_len++;
}

/* Queues the answer to the request just completed. */
static void respond(conn_t *c)
{
    const response_t *r = c->pending;
    int close = c->close_after;
    if (r == &routes[4] && !c->pending_head) { /* /upload: report what was received */
        int slot = (c->q_head + c->q_len) % MAX_QUEUE;
        char body[48];
        int bl = snprintf(body, sizeof(body), "{\"received\":%llu}\n", c->body_seen);
        int n = snprintf(c->dyn[slot], sizeof(c->dyn[slot]),
                         "HTTP/1.1 200 OK\r\nServer: tollgate-bench-upstream\r\n"
                         "Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s",
                         bl, close ? "Connection: close\r\n" : "", body);
        enqueue(c, c->dyn[slot], (size_t)n);
    } else if (close) {
        enqueue(c, r->cl, c->pending_head ? r->cl_hdr_len : r->cl_len);
    } else {
        enqueue(c, r->ka, c->pending_head ? r->ka_hdr_len : r->ka_len);
    }
    if (close) c->closing = 1;
    c->pending = NULL;
    c->state = ST_HEAD;
    c->body_seen = 0;
}

static int token_has(const char *v, size_t vl, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= vl; i++)
        if (strncasecmp(v + i, tok, tl) == 0) return 1;
    return 0;
}

/* Parses the header block c->in[0..end) (end points past the blank line). Sets the pending
 * response and the body state. Returns 0, or -1 for a malformed request. */
static int parse_head(conn_t *c, size_t end)
{
    char *p = c->in, *e = c->in + end;
    char *sp1 = memchr(p, ' ', (size_t)(e - p));
    if (sp1 == NULL) return -1;
    char *sp2 = memchr(sp1 + 1, ' ', (size_t)(e - sp1 - 1));
    if (sp2 == NULL) return -1;
    char *eol = memchr(sp2, '\n', (size_t)(e - sp2));
    if (eol == NULL) return -1;
    size_t mlen = (size_t)(sp1 - p);
    char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    char *q = memchr(target, '?', tlen);
    if (q != NULL) tlen = (size_t)(q - target);
    int http10 = (eol - sp2 >= 9 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0);

    int chunked = 0, has_cl = 0, conn_close = http10, expect = 0, upgrade = 0;
    unsigned long long cl = 0;
    for (char *l = eol + 1; l < e;) {
        char *le = memchr(l, '\n', (size_t)(e - l));
        if (le == NULL || le - l <= 1) break;
        char *colon = memchr(l, ':', (size_t)(le - l));
        if (colon == NULL) return -1;
        size_t nl = (size_t)(colon - l);
        char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        if (nl == 14 && strncasecmp(l, "content-length", 14) == 0) {
            char *end_num;
            cl = strtoull(v, &end_num, 10);
            if (end_num == v) return -1;
            has_cl = 1;
        } else if (nl == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
            chunked = token_has(v, vl, "chunked");
        } else if (nl == 10 && strncasecmp(l, "connection", 10) == 0) {
            if (token_has(v, vl, "close"))
                conn_close = 1;
            else if (token_has(v, vl, "keep-alive"))
                conn_close = 0;
        } else if (nl == 6 && strncasecmp(l, "expect", 6) == 0) {
            expect = token_has(v, vl, "100-continue");
        } else if (nl == 7 && strncasecmp(l, "upgrade", 7) == 0) {
            upgrade = token_has(v, vl, "websocket");
        }
        l = le + 1;
    }

    if (upgrade && tlen == 3 && memcmp(target, "/ws", 3) == 0 && mlen == 3 &&
        memcmp(p, "GET", 3) == 0) {
        static const char ws101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        enqueue(c, ws101, sizeof(ws101) - 1);
        c->state = ST_TUNNEL;
        return 0;
    }
    const response_t *r = &resp_404;
    int head = (mlen == 4 && memcmp(p, "HEAD", 4) == 0);
    for (int i = 0; i < nroutes; i++) {
        if (strlen(routes[i].path) == tlen && memcmp(routes[i].path, target, tlen) == 0) {
            size_t ml = strlen(routes[i].method);
            int ok = (mlen == ml && memcmp(p, routes[i].method, ml) == 0) ||
                     (head && strcmp(routes[i].method, "GET") == 0);
            r = ok ? &routes[i] : &resp_405;
            break;
        }
    }
    c->pending = r;
    c->pending_head = head;
    c->close_after = conn_close;
    c->body_seen = 0;
    if (expect && (chunked || cl > 0)) enqueue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (chunked) {
        c->state = ST_CHUNK_SIZE;
        c->body_left = 0;
    } else if (has_cl && cl > 0) {
        c->state = ST_BODY_CL;
        c->body_left = cl;
    } else {
        respond(c);
    }
    return 0;
}

/* Consumes as much of c->in as it can. Returns 0, or -1 to drop the connection. */
static int process(conn_t *c)
{
    size_t pos = 0;
    while (pos < c->in_len && !c->closing && c->q_len < MAX_QUEUE - 1) {
        char *b = c->in + pos;
        size_t avail = c->in_len - pos;
        switch (c->state) {
        case ST_HEAD: {
            size_t from = c->scan > pos ? c->scan - pos : 0;
            if (from >= 3) from -= 3;
            char *end = NULL;
            for (size_t i = from; i + 3 < avail; i++) {
                if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') {
                    end = b + i + 4;
                    break;
                }
            }
            if (end == NULL) {
                c->scan = c->in_len;
                goto out;
            }
            size_t hl = (size_t)(end - b);
            if (pos > 0) { /* parse_head works on c->in from offset 0 */
                memmove(c->in, b, avail);
                c->in_len = avail;
                pos = 0;
            }
            if (parse_head(c, hl) < 0) {
                enqueue(c, resp_400.cl, resp_400.cl_len);
                c->closing = 1;
                return 0;
            }
            pos += hl;
            c->scan = pos;
            break;
        }
        case ST_BODY_CL: {
            size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
            c->body_left -= n;
            c->body_seen += n;
            pos += n;
            if (c->body_left == 0) respond(c);
            c->scan = pos;
            break;
        }
        case ST_CHUNK_SIZE:
        case ST_TRAILER: {
            char *nl = memchr(b, '\n', avail);
            if (nl == NULL) {
                if (avail > 4096) return -1;
                goto out;
            }
            size_t ll = (size_t)(nl - b) + 1;
            if (c->state == ST_TRAILER) {
                if (ll <= 2) /* the blank line ends the message */
                    respond(c);
            } else {
                char *end_num;
                unsigned long long n = strtoull(b, &end_num, 16);
                if (end_num == b) return -1;
                if (n == 0) {
                    c->state = ST_TRAILER;
                } else {
                    c->body_left = n;
                    c->state = ST_CHUNK_DATA;
                }
            }
            pos += ll;
            c->scan = pos;
            break;
        }
        case ST_CHUNK_DATA: {
            size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
            c->body_left -= n;
            c->body_seen += n;
            pos += n;
            if (c->body_left == 0) c->state = ST_CHUNK_CRLF;
            c->scan = pos;
            break;
        }
        case ST_TUNNEL: { /* echo, in slices that fit a dyn slot */
            int slot = (c->q_head + c->q_len) % MAX_QUEUE;
            size_t n = avail < sizeof(c->dyn[slot]) ? avail : sizeof(c->dyn[slot]);
            memcpy(c->dyn[slot], b, n);
            enqueue(c, c->dyn[slot], n);
            pos += n;
            c->scan = pos;
            break;
        }
        case ST_CHUNK_CRLF: {
            char *nl = memchr(b, '\n', avail);
            if (nl == NULL) {
                if (avail > 2) return -1;
                goto out;
            }
            pos += (size_t)(nl - b) + 1;
            c->state = ST_CHUNK_SIZE;
            c->scan = pos;
            break;
        }
        }
    }
out:
    if (pos > 0) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
        c->scan = c->scan > pos ? c->scan - pos : 0;
    }
    if (c->state == ST_HEAD && c->in_len == IN_SIZE) { /* header block too large */
        enqueue(c, resp_400.cl, resp_400.cl_len);
        c->closing = 1;
    }
    return 0;
}

/* Writes what is queued. Returns 1 if everything went out, 0 if the socket is full, -1 on
 * error. */
static int flush(conn_t *c)
{
    while (c->q_len > 0) {
        struct iovec iov[MAX_QUEUE];
        int n = 0;
        for (int i = 0; i < c->q_len && n < MAX_QUEUE; i++) {
            out_t *o = &c->q[(c->q_head + i) % MAX_QUEUE];
            size_t off = i == 0 ? c->q_off : 0;
            iov[n].iov_base = (void *)(o->p + off);
            iov[n].iov_len = o->len - off;
            n++;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (left > 0 && c->q_len > 0) {
            out_t *o = &c->q[c->q_head];
            size_t rest = o->len - c->q_off;
            if (left >= rest) {
                left -= rest;
                c->q_off = 0;
                c->q_head = (c->q_head + 1) % MAX_QUEUE;
                c->q_len--;
            } else {
                c->q_off += left;
                left = 0;
            }
        }
    }
    return 1;
}

/* Reads, parses and answers until the socket runs dry or the queue is full. */
static void on_io(conn_t *c, unsigned ev)
{
    if (ev & (EPOLLERR)) {
        conn_close(c);
        return;
    }
    if ((ev & (EPOLLIN | EPOLLHUP)) && !c->closing) {
        for (int rounds = 0; rounds < 16 && c->q_len < MAX_QUEUE - 1 && c->in_len < IN_SIZE;
             rounds++) {
            ssize_t n = read(c->fd, c->in + c->in_len, IN_SIZE - c->in_len);
            if (n == 0) {
                conn_close(c);
                return;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                if (errno == EINTR) continue;
                conn_close(c);
                return;
            }
            c->in_len += (size_t)n;
            if (process(c) < 0) {
                conn_close(c);
                return;
            }
            if (c->closing || (size_t)n < IN_SIZE / 2) break;
        }
    }
    int done = flush(c);
    if (done < 0) {
        conn_close(c);
        return;
    }
    if (done && c->closing) {
        conn_close(c);
        return;
    }
    /* the queue drained: parse what the queue limit left unparsed */
    if (done && c->in_len > 0 && !c->closing) {
        if (process(c) < 0) {
            conn_close(c);
            return;
        }
        done = flush(c);
        if (done < 0 || (done && c->closing)) {
            conn_close(c);
            return;
        }
    }
    unsigned want = 0;
    if (!done) want |= EPOLLOUT;
    if (!c->closing && c->q_len < MAX_QUEUE - 1) want |= EPOLLIN;
    set_events(c, want);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    build_routes();

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 4096) < 0) {
        perror("bind/listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &lev);
    printf("listening 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conn_t *c = conn_get(fd);
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    c->events = EPOLLIN;
                    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) conn_close(c);
                }
                continue;
            }
            on_io((conn_t *)evs[i].data.ptr, evs[i].events);
        }
    }
}
