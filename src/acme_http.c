/* The ACME helper's HTTP client (see acme_http.h): resolve, connect, TLS,
 * write the request, read and parse the response, all against one
 * deadline. Sockets are non-blocking and every wait is a poll(2) bounded by
 * what is left of the deadline. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "acme_http.h"

typedef struct {
    tg_acme_resp_t *resp;
    char field[64];
    size_t field_len;
    int in_value;
    char **cur; /* the header value being collected, or NULL */
    size_t cur_len;
    char retry[24];
    int done;
} parse_t;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(tg_acme_resp_t *r, const char *fmt, const char *arg)
{
    snprintf(r->err, sizeof(r->err), fmt, arg);
    return -1;
}

/* ---- response parsing ---- */

static char **header_slot(parse_t *ps)
{
    static const char *const names[] = {"location", "replay-nonce", "content-type"};
    tg_acme_resp_t *r = ps->resp;
    char **slots[] = {&r->location, &r->nonce, &r->content_type};
    for (int i = 0; i < 3; i++)
        if (ps->field_len == strlen(names[i]) && strncasecmp(ps->field, names[i], ps->field_len) == 0)
            return *slots[i] ? NULL : slots[i];
    return NULL;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    parse_t *ps = p->data;
    if (ps->in_value) {
        ps->in_value = 0;
        ps->field_len = 0;
    }
    size_t room = sizeof(ps->field) - ps->field_len;
    memcpy(ps->field + ps->field_len, at, n < room ? n : room);
    ps->field_len += n < room ? n : room;
    return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    parse_t *ps = p->data;
    if (!ps->in_value) {
        ps->in_value = 1;
        ps->cur = header_slot(ps);
        ps->cur_len = 0;
        if (ps->field_len == 11 && strncasecmp(ps->field, "retry-after", 11) == 0)
            ps->cur = NULL, ps->retry[0] = '\0', ps->cur_len = (size_t)-1;
    }
    if (ps->cur_len == (size_t)-1) { /* Retry-After: seconds */
        size_t l = strlen(ps->retry);
        if (l + n < sizeof(ps->retry))
            memcpy(ps->retry + l, at, n), ps->retry[l + n] = '\0';
        return 0;
    }
    if (ps->cur == NULL)
        return 0;
    if (ps->cur_len + n > 8192)
        return -1;
    char *v = realloc(*ps->cur, ps->cur_len + n + 1);
    if (v == NULL)
        return -1;
    memcpy(v + ps->cur_len, at, n);
    ps->cur_len += n;
    v[ps->cur_len] = '\0';
    *ps->cur = v;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    parse_t *ps = p->data;
    tg_acme_resp_t *r = ps->resp;
    if (r->body_len + n > TG_ACME_HTTP_MAX_BODY)
        return -1;
    char *b = realloc(r->body, r->body_len + n + 1);
    if (b == NULL)
        return -1;
    memcpy(b + r->body_len, at, n);
    r->body_len += n;
    b[r->body_len] = '\0';
    r->body = b;
    return 0;
}

static int on_complete(llhttp_t *p)
{
    parse_t *ps = p->data;
    ps->done = 1;
    ps->resp->status = p->status_code;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* ---- the connection ---- */

typedef struct {
    int fd;
    SSL *ssl;
    long long deadline;
} link_t;

static int wait_fd(link_t *l, short events)
{
    long long left = l->deadline - now_ms();
    if (left <= 0)
        return -1;
    struct pollfd pfd = {.fd = l->fd, .events = events};
    int n = poll(&pfd, 1, (int)left);
    return n > 0 ? 0 : -1;
}

/* Wait for what an SSL call that returned rc wants; -1 on a real error. */
static int ssl_wait(link_t *l, int rc)
{
    int e = SSL_get_error(l->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(l, POLLIN);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(l, POLLOUT);
    return -1;
}

static int do_connect(link_t *l, const char *host, const char *port, tg_acme_resp_t *r)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0)
        return fail(r, "cannot resolve: %s", gai_strerror(rc));
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        l->fd = fd;
        int err = 0;
        socklen_t elen = sizeof(err);
        if ((connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
             (errno == EINPROGRESS && wait_fd(l, POLLOUT) == 0 &&
              getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0))) {
            freeaddrinfo(ai);
            return 0;
        }
        close(fd);
        l->fd = -1;
        snprintf(r->err, sizeof(r->err), "connect: %s", strerror(err ? err : errno ? errno : ETIMEDOUT));
    }
    freeaddrinfo(ai);
    if (r->err[0] == '\0')
        fail(r, "connect: %s", "no address");
    return -1;
}

static int do_tls(link_t *l, SSL_CTX *ctx, const char *host, tg_acme_resp_t *r)
{
    unsigned char bin[16];
    int is_ip = inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1;
    if ((l->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(l->ssl, l->fd) ||
        (!is_ip && !SSL_set_tlsext_host_name(l->ssl, host)) ||
        !(is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), host)
                : SSL_set1_host(l->ssl, host)))
        return fail(r, "TLS set-up failed%s", "");
    SSL_set_verify(l->ssl, SSL_VERIFY_PEER, NULL);
    int rc;
    while ((rc = SSL_connect(l->ssl)) != 1)
        if (ssl_wait(l, rc) != 0) {
            long v = SSL_get_verify_result(l->ssl);
            if (v != X509_V_OK)
                return fail(r, "TLS handshake: certificate not trusted: %s",
                            X509_verify_cert_error_string(v));
            unsigned long e = ERR_get_error();
            return fail(r, "TLS handshake failed: %s", e ? ERR_reason_error_string(e) : "timeout");
        }
    return 0;
}

static int io_write(link_t *l, const char *p, size_t n)
{
    while (n > 0) {
        if (l->ssl) {
            size_t w = 0;
            int rc = SSL_write_ex(l->ssl, p, n, &w);
            if (rc != 1) {
                if (ssl_wait(l, rc) != 0)
                    return -1;
                continue;
            }
            p += w, n -= w;
        } else {
            ssize_t w = write(l->fd, p, n);
            if (w < 0) {
                if ((errno != EAGAIN && errno != EINTR) || wait_fd(l, POLLOUT) != 0)
                    return -1;
                continue;
            }
            p += w, n -= (size_t)w;
        }
    }
    return 0;
}

/* Bytes read (0 at the end of the stream), or -1. */
static ssize_t io_read(link_t *l, char *buf, size_t size)
{
    for (;;) {
        if (l->ssl) {
            size_t n = 0;
            int rc = SSL_read_ex(l->ssl, buf, size, &n);
            if (rc == 1)
                return (ssize_t)n;
            int e = SSL_get_error(l->ssl, rc);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (ssl_wait(l, rc) != 0)
                return -1;
        } else {
            ssize_t n = read(l->fd, buf, size);
            if (n >= 0)
                return n;
            if ((errno != EAGAIN && errno != EINTR) || wait_fd(l, POLLIN) != 0)
                return -1;
        }
    }
}

int tg_acme_http(SSL_CTX *ctx, const char *method, const char *url, const char *ctype,
                 const char *body, size_t body_len, const char *accept, int timeout_ms,
                 tg_acme_resp_t *r)
{
    *r = (tg_acme_resp_t){.retry_after = -1};
    link_t l = {.fd = -1, .deadline = now_ms() + timeout_ms};
    int tls = strncmp(url, "https://", 8) == 0;
    if (!tls && strncmp(url, "http://", 7) != 0)
        return fail(r, "not an http(s) URL: \"%.200s\"", url);
    const char *h = url + (tls ? 8 : 7), *path = strchr(h, '/');
    size_t hl = path ? (size_t)(path - h) : strlen(h);
    char host[256], port[8];
    const char *colon = NULL;
    if (hl == 0 || hl >= sizeof(host))
        return fail(r, "bad host in \"%.200s\"", url);
    if (h[0] == '[') { /* [v6]:port */
        const char *rb = memchr(h, ']', hl);
        if (rb == NULL)
            return fail(r, "bad host in \"%.200s\"", url);
        snprintf(host, sizeof(host), "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb + 1 < h + hl && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', hl);
        snprintf(host, sizeof(host), "%.*s", (int)(colon ? colon - h : (long)hl), h);
    }
    if (colon)
        snprintf(port, sizeof(port), "%.*s", (int)(h + hl - colon - 1), colon + 1);
    else
        snprintf(port, sizeof(port), "%s", tls ? "443" : "80");
    char *req = NULL;
    int rc = -1;
    llhttp_t parser;
    parse_t ps = {.resp = r};
    if (do_connect(&l, host, port, r) != 0 || (tls && do_tls(&l, ctx, host, r) != 0))
        goto done;
    int hlen = asprintf(&req,
                        "%s %s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: tollgate-acme\r\n"
                        "Connection: close\r\n%s%s%s%s%s%s",
                        method, path ? path : "/", (int)hl, h, accept ? "Accept: " : "",
                        accept ? accept : "", accept ? "\r\n" : "", ctype ? "Content-Type: " : "",
                        ctype ? ctype : "", ctype ? "\r\n" : "");
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n", body ? body_len : 0);
    if (hlen < 0 || io_write(&l, req, (size_t)hlen) != 0 || io_write(&l, cl, strlen(cl)) != 0 ||
        (body && io_write(&l, body, body_len) != 0)) {
        fail(r, "cannot send the request%s", "");
        goto done;
    }
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    parser.data = &ps;
    char buf[16384];
    for (;;) {
        ssize_t n = io_read(&l, buf, sizeof(buf));
        if (n < 0) {
            fail(r, "reading the response: %s", l.deadline <= now_ms() ? "timed out" : "failed");
            goto done;
        }
        llhttp_errno_t e = n == 0 ? llhttp_finish(&parser) : llhttp_execute(&parser, buf, (size_t)n);
        if (ps.done)
            break;
        if (e != HPE_OK) {
            fail(r, "bad response: %s", llhttp_errno_name(e));
            goto done;
        }
        if (n == 0) {
            fail(r, "connection closed before the response ended%s", "");
            goto done;
        }
    }
    if (ps.retry[0])
        r->retry_after = strtol(ps.retry, NULL, 10);
    if (r->body == NULL && (r->body = calloc(1, 1)) == NULL)
        goto done;
    rc = 0;
done:
    free(req);
    if (l.ssl)
        SSL_free(l.ssl);
    if (l.fd >= 0)
        close(l.fd);
    ERR_clear_error();
    if (rc != 0)
        r->status = 0;
    return rc;
}

void tg_acme_resp_free(tg_acme_resp_t *r)
{
    free(r->body);
    free(r->location);
    free(r->nonce);
    free(r->content_type);
    *r = (tg_acme_resp_t){.retry_after = -1};
}
