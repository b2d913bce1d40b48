/* The request layer: what happens to a request whatever carries it.
 *
 * A carrier (a protocol codec: src/h1.c) parses a request head, fills a
 * tg_request_t and calls tg_request_process. From there this file picks the
 * server and location, runs the phases (rewrite, access, route, content),
 * and offers content handlers one API for the response (header through the
 * response header hooks, body through the body filters, flush, finalize) and
 * the request body; each goes to the carrier through tg_carrier_t. The
 * content phase ends with the location's content handler (return, stats,
 * the proxy: whichever module answers first); a handler that takes the
 * request over gets its events through r->handler. Nothing here knows
 * HTTP/1.1 framing or sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <llhttp.h>
#include "request.h"
#include "conn.h"
#include "log.h"
#include "worker.h"
#include "uri.h"
#include "error_page.h"
#include "file_io.h"
#include "grpc.h"

void tg_request_init(tg_request_t *r, tg_arena_t *a, const tg_carrier_t *carrier, tg_conn_t *c)
{
    r->arena = a;
    r->carrier = carrier;
    r->conn = c;
    r->content_length = -1;
    r->resp_content_length = -1;
    r->start = ev_now(tg_worker->loop);
    r->id = ++tg_worker->next_request_id;
    if (c) {
        r->peer_addr = tg_arena_str(r->arena, tg_str_c(tg_conn_peer(c)));
        r->scheme = c->listen->tls ? TG_STR("https") : TG_STR("http");
    } else {
        r->peer_addr = TG_STR("");
        r->scheme = TG_STR("http");
    }
    r->remote_addr = r->peer_addr;
}

const struct sockaddr *tg_request_peer_sa(const tg_request_t *r)
{
    return r->conn ? (const struct sockaddr *)&r->conn->sa : NULL;
}

const char *tg_request_proxy_protocol_addr(const tg_request_t *r)
{
    return r->conn ? tg_conn_proxy_addr(r->conn) : NULL;
}

void *tg_request_conn_ext(tg_request_t *r, const void *owner)
{
    return r->conn ? tg_conn_ext_get(r->conn, owner) : NULL;
}

int tg_request_set_conn_ext(tg_request_t *r, const void *owner, void *data,
                            void (*release)(void *))
{
    return r->conn ? tg_conn_ext_set(r->conn, owner, data, release) : -1;
}

/* ---- the request head --------------------------------------------------- */

static int hostname_is_valid(tg_str_t h)
{
    if (h.len == 0 || h.len > 255)
        return 0;
    for (size_t i = 0; i < h.len; i++) {
        unsigned char ch = (unsigned char)h.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '[' || ch == ']'))
            return 0;
    }
    return 1;
}

int tg_request_set_path(tg_request_t *r, tg_str_t path)
{
    char *norm = tg_arena_alloc_nz(r->arena, path.len + 1);
    if (norm == NULL)
        return 500;
    long n = tg_uri_normalize(path, norm);
    if (n < 0)
        return 400;
    r->path = (tg_str_t){norm, (size_t)n};
    return 0;
}

int tg_request_set_host(tg_request_t *r, tg_str_t authority)
{
    if (!hostname_is_valid(authority))
        return -1;
    size_t len = authority.len;
    if (authority.p[0] == '[') {
        const char *e = memchr(authority.p, ']', len);
        if (e == NULL)
            return -1;
        len = (size_t)(e - authority.p) + 1;
    } else {
        const char *colon = memchr(authority.p, ':', len);
        if (colon)
            len = (size_t)(colon - authority.p);
    }
    while (len > 0 && authority.p[len - 1] == '.')
        len--; /* "example.com." names the same host */
    char *h = tg_arena_alloc_nz(r->arena, len + 1);
    if (h == NULL)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = authority.p[i];
        h[i] = (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch;
    }
    h[len] = '\0';
    r->host = (tg_str_t){h, len};
    return 0;
}

/* ---- phases --------------------------------------------------------------- */

static void request_local(tg_request_t *r);

/* Choose the location for r->path. Returns 0, or -1 when the request was
 * answered (its body is over this location's client_max_body_size: nginx
 * checks it whenever a location is chosen). */
static int request_route(tg_request_t *r)
{
    r->loc = tg_core_find_location(r->server, r->path);
    if (r->loc == NULL)
        r->loc = r->server->root;
    r->loc_conf = r->loc->mconf;
    r->uri_changed = r->uri_stays = r->uri_relocate = 0;
    tg_core_conf_t *cc = tg_core_conf(r->loc_conf);
    if (cc->client_max_body_size && r->content_length > cc->client_max_body_size) {
        r->keepalive = 0;
        tg_request_error(r, 413);
        return -1;
    }
    return 0;
}

/* Count one more URI change (a routing on a changed path, an internal
 * redirect). Returns 0, or -1 past the limit: answered 500. */
static int request_uri_change(tg_request_t *r)
{
    if (r->uri_changes < TG_REQUEST_MAX_URI_CHANGES) {
        r->uri_changes++;
        return 0;
    }
    tg_log(TG_LOG_ERROR, "rewrite or internal redirection cycle while processing \"%.*s\" "
                         "(request %u)",
           TG_STR_FMT(r->path), r->id);
    r->error_page = 1; /* this 500 is final */
    tg_request_error(r, 500);
    return -1;
}

void tg_request_process(tg_request_t *r, tg_listen_t *ls, int st)
{
    r->server = tg_core_find_server(ls, r->host);
    if (st != 0) {
        /* a request this bad gets no error_page: its URI may be anything */
        r->loc = tg_core_find_location(r->server, r->path);
        r->loc = r->loc ? r->loc : r->server->root;
        r->loc_conf = r->loc->mconf;
        r->keepalive = 0;
        r->error_page = 1;
        tg_request_error(r, st);
        return;
    }
    /* until the server rewrite phase has run, the request is in the
     * implicit root location (the server-level settings) */
    r->loc = r->server->root;
    r->loc_conf = r->loc->mconf;
    tg_core_conf_t *cc = tg_core_conf(r->loc_conf);
    if ((r->conn && r->conn->nrequests + 1 >= (uint32_t)cc->keepalive_requests) ||
        tg_worker->shutting_down)
        r->keepalive = 0;
    r->phase = TG_PHASE_SERVER_REWRITE;
    r->hook = 0;
    tg_request_run_phases(r);
}

void tg_request_run_phases(tg_request_t *r)
{
    while (r->phase <= TG_PHASE_CONTENT) {
        tg_hook_t *hooks = r->loc->hooks[r->phase];
        while (hooks && hooks[r->hook].module) {
            tg_hook_t *h = &hooks[r->hook];
            tg_rc_t (*fn)(tg_request_t *, void *) = NULL;
            switch (r->phase) {
            case TG_PHASE_SERVER_REWRITE: fn = h->module->on_server_rewrite; break;
            case TG_PHASE_REWRITE: fn = h->module->on_rewrite; break;
            case TG_PHASE_ACCESS: fn = h->module->on_access; break;
            case TG_PHASE_ROUTE: fn = h->module->on_route; break;
            case TG_PHASE_CONTENT: fn = h->module->on_content; break;
            default: break;
            }
            tg_rc_t rc = fn ? fn(r, h->conf) : TG_OK;
            if (rc == TG_AGAIN)
                return; /* parked (tg_request_resume), or a content handler took it */
            if (rc == TG_DONE) {
                /* a refusal (deny, a rate limit, a Lua exit) takes the
                 * location's error_page; a content handler's answer is the
                 * location's own content and does not */
                if (r->phase < TG_PHASE_CONTENT && r->status >= 300 &&
                    tg_request_has_error_page(r, r->status)) {
                    tg_request_error(r, r->status);
                    return;
                }
                request_local(r);
                return;
            }
            if (rc == TG_ERROR) {
                tg_request_error(r, 500);
                return;
            }
            r->hook++;
        }
        r->hook = 0;
        if (r->phase == TG_PHASE_SERVER_REWRITE) {
            /* the first routing (or the one after an internal redirect) */
            if (request_route(r) != 0)
                return;
        } else if (r->phase == TG_PHASE_REWRITE && r->uri_changed && !r->uri_stays) {
            int again = r->uri_relocate;
            if (request_uri_change(r) != 0 || request_route(r) != 0)
                return;
            if (again)
                continue; /* the new location's rewrite phase, as nginx's */
        }
        r->phase++;
    }
    /* no content handler answered (a location with neither proxy_pass,
     * return nor a handler of its own, and no route chosen) */
    tg_request_error(r, 404);
}

void tg_request_resume(tg_request_t *r)
{
    tg_request_run_phases(r);
}

int tg_request_set_uri(tg_request_t *r, tg_str_t path, tg_str_t args)
{
    size_t elen = tg_uri_escape(NULL, path, 1);
    size_t n = path.len + 1 + elen + (args.len ? 1 + args.len : 0);
    char *p = tg_arena_alloc_nz(r->arena, n);
    if (p == NULL)
        return -1;
    /* the path, then the target: the encoded path and "?args" (args point
     * into the target) */
    memcpy(p, path.p, path.len);
    p[path.len] = '\0';
    char *t = p + path.len + 1, *w = t;
    w += tg_uri_escape(w, path, 1);
    if (args.len) {
        *w++ = '?';
        memcpy(w, args.p, args.len);
        r->args = (tg_str_t){w, args.len};
        w += args.len;
    } else {
        r->args = (tg_str_t){"", 0};
    }
    r->path = (tg_str_t){p, path.len};
    r->uri = (tg_str_t){t, (size_t)(w - t)};
    r->path_set = 0;
    r->uri_changed = 1;
    return 0;
}

void tg_request_internal_redirect(tg_request_t *r, tg_str_t uri, tg_location_t *named)
{
    if (request_uri_change(r) != 0)
        return;
    if (named == NULL) {
        const char *q = memchr(uri.p, '?', uri.len);
        tg_str_t path = q ? (tg_str_t){uri.p, (size_t)(q - uri.p)} : uri;
        tg_str_t args = q ? (tg_str_t){q + 1, uri.len - path.len - 1} : (tg_str_t){"", 0};
        if (tg_request_set_uri(r, path, args) != 0) {
            r->error_page = 1;
            tg_request_error(r, 500);
            return;
        }
    }
    /* what the first answer had begun */
    r->status = 0;
    r->resp_headers.n = 0;
    r->resp_trailers.n = 0;
    r->resp_body = NULL;
    r->resp_content_length = -1;
    r->resp_local = r->resp_no_body = r->header_hold = r->header_pending = r->body_filter = 0;
    r->upstream = NULL;
    r->handler = NULL;
    r->handler_ctx = NULL;
    memset(r->ctx, 0, (size_t)tg_nmodules * sizeof(void *));
    r->uri_changed = r->uri_stays = r->uri_relocate = 0;
    r->hook = 0;
    if (named) {
        r->loc = named;
        r->phase = TG_PHASE_REWRITE;
    } else {
        r->loc = r->server->root;
        r->phase = TG_PHASE_SERVER_REWRITE;
    }
    r->loc_conf = r->loc->mconf;
    tg_request_run_phases(r);
}

int tg_request_set_captures(tg_request_t *r, tg_str_t subject, const size_t *ovector, int n)
{
    if (n <= 0) {
        r->ncaps = 0;
        return 0;
    }
    size_t *c = r->caps;
    if (c == NULL || r->ncaps < n) {
        /* room for the usual few groups at once: a request rarely matches
         * more than one regex, so this is allocated once */
        int room = n < 10 ? 10 : n;
        if ((c = tg_arena_alloc_nz(r->arena, (size_t)room * 2 * sizeof(size_t))) == NULL)
            return -1;
    }
    memcpy(c, ovector, (size_t)n * 2 * sizeof(size_t));
    r->caps = c;
    r->ncaps = n;
    r->cap_subject = subject;
    return 0;
}

int tg_request_capture(tg_request_t *r, int i, tg_str_t *out)
{
    if (i < 0 || i >= r->ncaps)
        return -1;
    size_t a = r->caps[2 * i], b = r->caps[2 * i + 1];
    if (a == (size_t)-1 || b < a || b > r->cap_subject.len) {
        *out = (tg_str_t){"", 0};
        return 0;
    }
    *out = (tg_str_t){r->cap_subject.p + a, b - a};
    return 0;
}

/* ---- error pages ---------------------------------------------------------- */

int tg_request_has_error_page(tg_request_t *r, int status)
{
    return !r->error_page && !r->header_sent && r->loc_conf &&
           tg_error_page_find(r->loc_conf, status) != NULL;
}

/* Answer `status` with the location's error_page: nginx's rules. Returns 1
 * when it did (the request may be over), 0 when there is none. */
static int request_error_page(tg_request_t *r, int status)
{
    if (!tg_request_has_error_page(r, status))
        return 0;
    const tg_error_page_t *ep = tg_error_page_find(r->loc_conf, status);
    r->error_page = 1;
    r->err_status = ep->overwrite < 0 ? status : ep->overwrite;
    if (ep->uri.p[0] != '/' && ep->uri.p[0] != '@') {
        /* a URL: a redirect, 302 unless =301/303/307/308 */
        int st = ep->overwrite > 0 ? ep->overwrite : 302;
        r->err_status = 0;
        r->resp_headers.n = 0;
        char *page = tg_arena_printf(r->arena, "%d %s\n", st, tg_status_reason(st));
        if (tg_request_add_resp_header(r, TG_STR("Location"), ep->uri) != 0 ||
            tg_request_respond(r, st, "text/plain", page ? tg_str_c(page) : TG_NULL_STR) != 0)
            r->status = 500;
        request_local(r);
        return 1;
    }
    tg_location_t *named = NULL;
    if (ep->uri.p[0] == '@' && (named = tg_core_find_named(r->server, ep->uri)) == NULL) {
        /* checked at load for every server where it applies */
        r->err_status = 0;
        return 0;
    }
    if (r->method != HTTP_HEAD && named == NULL) {
        r->method = HTTP_GET;
        r->method_name = TG_STR("GET");
    }
    /* the redirected request has no body (part of it may be gone upstream
     * already); what the client still sends of it is the carrier's to drop
     * (it closes the connection after the answer) */
    r->has_body = 0;
    r->chunked = 0;
    r->content_length = -1;
    r->expect_continue = 0;
    tg_request_internal_redirect(r, ep->uri, named);
    return 1;
}

/* ---- response ------------------------------------------------------------- */

int tg_request_send_header(tg_request_t *r)
{
    if (r->err_status)
        r->status = r->err_status; /* error_page: the original status (or =CODE) */
    /* before the hooks, so remove_header can drop it too */
    tg_core_conf_t *cc = r->loc_conf ? tg_core_conf(r->loc_conf) : NULL;
    if (cc && !cc->server_tokens)
        tg_headers_remove(&r->resp_headers, TG_STR("Server"));
    else if (tg_headers_find(&r->resp_headers, TG_STR("Server")) == NULL)
        tg_headers_add(r->arena, &r->resp_headers, TG_STR("Server"), TG_STR("tollgate"));
    if (r->loc) {
        for (tg_hook_t *h = r->loc->hooks[TG_PHASE_RESPONSE_HEADERS]; h && h->module; h++) {
            if (h->module->on_response_headers(r, h->conf) == TG_ERROR) {
                r->status = 500;
                return -1;
            }
        }
    }
    int st = r->status;
    if (r->method == HTTP_HEAD || st == 204 || st == 304 || st < 200)
        r->resp_no_body = 1;
    if (r->header_hold && !r->resp_no_body && r->loc && r->loc->hooks[TG_PHASE_RESPONSE_BODY]) {
        /* a body filter decides first (filter_body); the header strings may
         * point into the upstream's read buffer, which body reads reuse */
        if (tg_headers_own(r->arena, &r->resp_headers) != 0)
            return -1;
        r->header_pending = 1;
        r->header_sent = 1;
        return 0;
    }
    r->header_hold = 0;
    return r->carrier->send_header(r);
}

/* Run the location's body filters over this round: the spans become a chain
 * (descriptors kept per request, no allocation per round), each filter
 * replaces the chain with its output, and the result goes to the carrier. */
static int filter_body(tg_request_t *r, tg_spans_t *spans, int last)
{
    if (r->filter_bufs == NULL &&
        (r->filter_bufs = tg_arena_alloc(r->arena, (TG_SPANS_MAX + 1) *
                                                       (sizeof(tg_buf_t) + sizeof(tg_chain_t)))) == NULL)
        return -1;
    tg_buf_t *bufs = r->filter_bufs;
    tg_chain_t *links = (tg_chain_t *)(bufs + TG_SPANS_MAX + 1), *in = NULL;
    int nb = 0;
    for (int i = 0; spans && i < spans->n; i++) {
        char *p = spans->v[i].iov_base;
        bufs[nb++] = (tg_buf_t){p, p + spans->v[i].iov_len, p, p + spans->v[i].iov_len, 0, NULL};
    }
    if (nb == 0 && !last)
        return 0;
    if (nb == 0)
        bufs[nb++] = (tg_buf_t){0}; /* an empty buffer that carries LAST */
    if (last)
        bufs[nb - 1].flags |= TG_BUF_F_LAST;
    for (int i = nb - 1; i >= 0; i--) {
        links[i] = (tg_chain_t){&bufs[i], in};
        in = &links[i];
    }
    for (tg_hook_t *h = r->loc->hooks[TG_PHASE_RESPONSE_BODY]; h && h->module; h++)
        if (h->module->on_response_body(r, h->conf, &in) == TG_ERROR)
            return -1;
    if (r->header_pending && (last || !r->header_hold || tg_chain_len(in) > 0)) {
        r->header_hold = 0;
        r->header_pending = 0;
        if (r->carrier->send_header(r) != 0)
            return -1;
    }
    struct iovec v[TG_IOVQ_MAX - 4];
    int nv = 0;
    size_t len = 0;
    for (tg_chain_t *cl = in; cl; cl = cl->next) {
        size_t bl = tg_buf_len(cl->buf);
        if (bl == 0)
            continue;
        if (nv == (int)(sizeof(v) / sizeof(v[0]))) {
            tg_log(TG_LOG_ERROR, "a body filter returned more than %d buffers", nv);
            return -1;
        }
        v[nv++] = (struct iovec){cl->buf->pos, bl};
        len += bl;
    }
    return r->carrier->send_body(r, v, nv, len, last);
}

int tg_request_send_body(tg_request_t *r, tg_spans_t *spans, int last)
{
    if (r->resp_no_body && !r->tunnel)
        return r->carrier->send_body(r, NULL, 0, 0, last);
    if (!r->tunnel && r->loc && r->loc->hooks[TG_PHASE_RESPONSE_BODY])
        return filter_body(r, spans, last);
    return r->carrier->send_body(r, spans ? spans->v : NULL, spans ? spans->n : 0,
                                 spans ? spans->len : 0, last);
}

/* The request's file read buffer goes back to the pool; a read still running
 * in a file thread keeps it until it is done (tg_file_io_cancel). */
static void file_buf_release(void *p)
{
    tg_request_t *r = p;
    if (r->file_io)
        tg_file_io_cancel(r->file_io);
    else
        tg_buf_put(r->file_buf);
    for (int i = 0; i < TG_REQUEST_FILE_BUFS - 1; i++)
        if (r->file_more[i]) {
            tg_buf_put(r->file_more[i]);
            r->file_more[i] = NULL;
        }
    r->file_io = NULL;
    r->file_buf = NULL;
}

/* Bytes read into the file buffer: through the body filters to the carrier.
 * 1: the caller may go on; 0: wait for on_drained; -1: abort. `batched`:
 * the bytes may go with the send batch (the drain after it wakes the
 * handler, as after a wait). */
static int file_pass(tg_request_t *r, size_t n, size_t first, int batched)
{
    tg_spans_t spans = {0};
    tg_spans_add(&spans, r->file_buf->start, n < first ? n : first);
    n -= n < first ? n : first;
    for (int i = 0; n > 0; i++) {
        size_t cap = (size_t)(r->file_more[i]->end - r->file_more[i]->start);
        size_t take = n < cap ? n : cap;
        tg_spans_add(&spans, r->file_more[i]->start, take);
        n -= take;
    }
    if (tg_request_send_body(r, &spans, 0) != 0)
        return -1;
    int rc = batched ? tg_request_flush_batched(r) : tg_request_flush(r);
    return rc == 2 ? 0 : rc;
}

static void file_read_failed(tg_request_t *r, int64_t off, ssize_t n, int err)
{
    tg_log(TG_LOG_ERROR, "request %u: reading a file body failed at offset %lld: %s", r->id,
           (long long)off, n >= 0 ? "the file is shorter than announced" : strerror(err));
}

/* A read done in a file thread: the bytes go on, and the handler, told to
 * wait by tg_request_send_file, is woken as by a drained output (a failure
 * makes its next tg_request_send_file return -1). */
static void file_read_done(void *data, tg_file_io_t *io)
{
    tg_request_t *r = data;
    r->file_io = NULL;
    int rc = -1;
    if (io->res == (ssize_t)io->len)
        rc = file_pass(r, io->len, io->len, 0);
    else
        file_read_failed(r, io->off + (io->res > 0 ? io->res : 0), io->res, io->err);
    if (rc < 0)
        r->file_failed = 1;
    if (rc != 0)
        tg_request_on_drained(r);
}

int tg_request_send_file(tg_request_t *r, int fd, int64_t off, size_t len, size_t *sent)
{
    *sent = 0;
    if (r->file_failed)
        return -1;
    if (r->resp_no_body || len == 0) {
        *sent = len;
        return 1;
    }
    int filtered = r->body_filter && r->loc && r->loc->hooks[TG_PHASE_RESPONSE_BODY];
    if (!filtered && !r->header_pending && r->carrier->send_file)
        return r->carrier->send_file(r, fd, off, len, sent);
    /* copied (body filters, TLS, HTTP/2): up to two pool buffers per call
     * (one read of 32 KB instead of two of 16; the carrier's file_bufs, four
     * for HTTP/1.1 on TLS), reused once the carrier wrote them (the caller
     * waits for on_drained after a 0) */
    if (r->file_buf == NULL) {
        if ((r->file_buf = tg_buf_get()) == NULL)
            return -1;
        if (tg_arena_on_reset(r->arena, file_buf_release, r) != 0) {
            tg_buf_put(r->file_buf);
            r->file_buf = NULL;
            return -1;
        }
    }
    tg_buf_t *b = r->file_buf;
    size_t cap = (size_t)(b->end - b->start), first = cap;
    if (r->carrier->body_lead) {
        /* the head shares the first buffer's record: read that much less */
        size_t lead = r->carrier->body_lead(r);
        if (lead < cap)
            first = cap - lead;
    }
    struct iovec iov[TG_REQUEST_FILE_BUFS] = {{b->start, len < first ? len : first}};
    int niov = 1, nbufs = r->carrier->file_bufs ? r->carrier->file_bufs : 2;
    for (size_t got = iov[0].iov_len; got < len && niov < nbufs; niov++) {
        tg_buf_t **m = &r->file_more[niov - 1];
        if (*m == NULL && (*m = tg_buf_get()) == NULL)
            break;
        iov[niov].iov_base = (*m)->start;
        iov[niov].iov_len = len - got < cap ? len - got : cap;
        got += iov[niov].iov_len;
    }
    size_t want = iov[0].iov_len;
    /* from the page cache without blocking; what is not there is read by a
     * file thread (one buffer; without a pool, or with its queue full: here) */
    ssize_t n;
    do
        n = preadv2(fd, iov, niov, (off_t)off, RWF_NOWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) {
        if ((r->file_io = tg_file_io_read(fd, b, want, off, file_read_done, r)) != NULL) {
            tg_log(TG_LOG_DEBUG, "request %u: file bytes %lld+%zu read in a thread", r->id,
                   (long long)off, want);
            *sent = want;
            return 0;
        }
        do
            n = pread(fd, b->start, want, (off_t)off);
        while (n < 0 && errno == EINTR);
    }
    if (n <= 0) {
        file_read_failed(r, off, n, errno);
        return -1;
    }
    *sent = (size_t)n;
    /* all of it read: it may go with the send batch */
    return file_pass(r, (size_t)n, iov[0].iov_len, (size_t)n == len);
}

int tg_request_flush(tg_request_t *r)
{
    return r->carrier->flush(r, 0);
}

int tg_request_flush_batched(tg_request_t *r)
{
    return r->carrier->flush(r, 1);
}

void tg_request_finalize(tg_request_t *r, int abort)
{
    if (r->status == 0)
        r->status = abort ? 499 : 200;
    if (r->loc) {
        for (tg_hook_t *h = r->loc->hooks[TG_PHASE_LOG]; h && h->module; h++)
            h->module->on_log(r, h->conf);
    }
    const tg_handler_events_t *ev = r->handler;
    if (ev) {
        r->handler = NULL;
        if (ev->on_abort)
            ev->on_abort(r);
    }
    r->carrier->finalize(r, abort);
}

/* Send a response the gateway made itself (r->status, r->resp_body). */
static void request_local(tg_request_t *r)
{
    if (r->status == 0)
        r->status = 500;
    r->resp_local = 1;
    if (r->resp_content_length < 0)
        r->resp_content_length = (int64_t)tg_chain_len(r->resp_body);
    if (tg_request_send_header(r) != 0) {
        tg_request_finalize(r, 1);
        return;
    }
    tg_spans_t spans = {0};
    for (tg_chain_t *cl = r->resp_body; cl; cl = cl->next)
        tg_spans_add(&spans, cl->buf->pos, tg_buf_len(cl->buf));
    if (tg_request_send_body(r, &spans, 1) != 0) { /* a body filter failed */
        tg_request_finalize(r, 1);
        return;
    }
    int rc = tg_request_flush(r);
    if (rc != 0)
        tg_request_finalize(r, rc < 0);
}

void tg_request_error(tg_request_t *r, int status)
{
    if (r->header_sent) {
        tg_request_finalize(r, 1);
        return;
    }
    if (status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
        status == 505 || status == 417 || status == 500)
        r->keepalive = 0;
    if (request_error_page(r, status))
        return;
    r->err_status = 0; /* an error of the redirected request is answered as it is */
    r->resp_headers.n = 0;
    char *body = tg_arena_printf(r->arena, "%d %s\n", status, tg_status_reason(status));
    tg_request_respond(r, status, "text/plain", body ? tg_str_c(body) : TG_NULL_STR);
    request_local(r);
}

/* ---- request body --------------------------------------------------------- */

int tg_request_body_pull(tg_request_t *r, tg_spans_t **spans, int *done)
{
    return r->carrier->body_pull(r, spans, done);
}

void tg_request_body_consumed(tg_request_t *r)
{
    r->carrier->body_consumed(r);
}

/* Append this round's body bytes to r->held, growing it by doubling (from
 * 16 KB, or the Content-Length) up to `max`. Returns 0 or -1. */
static int held_append(tg_request_t *r, tg_spans_t *spans, size_t max)
{
    size_t need = r->held.len + spans->len;
    if (need > r->held_cap) {
        size_t cap = r->held_cap ? r->held_cap * 2 : 16384;
        if (r->content_length > 0 && (size_t)r->content_length > cap)
            cap = (size_t)r->content_length;
        while (cap < need)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *p = tg_arena_alloc_nz(r->arena, cap);
        if (p == NULL)
            return -1;
        if (r->held.len)
            memcpy(p, r->held.p, r->held.len);
        r->held.p = p;
        r->held_cap = cap;
    }
    char *w = (char *)r->held.p + r->held.len;
    for (int i = 0; i < spans->n; i++) {
        memcpy(w, spans->v[i].iov_base, spans->v[i].iov_len);
        w += spans->v[i].iov_len;
    }
    r->held.len = need;
    return 0;
}

int tg_request_body_read(tg_request_t *r, int64_t max, tg_str_t *body)
{
    tg_core_conf_t *cc = tg_core_conf(r->loc_conf);
    if (cc->client_max_body_size && max > cc->client_max_body_size)
        max = cc->client_max_body_size;
    if (!r->held_done && !r->has_body) {
        r->held = (tg_str_t){"", 0};
        r->held_done = 1;
    }
    if (!r->held_done && r->content_length > max) {
        r->held_too_large = r->held_done = 1; /* not a byte read: it streams as usual */
    }
    while (!r->held_done) {
        tg_spans_t *spans;
        int done = 0;
        int rc = tg_request_body_pull(r, &spans, &done);
        if (rc == 0) {
            r->held_wait = 1;
            return 0;
        }
        if (rc < 0) {
            if (rc == -499)
                tg_request_finalize(r, 1);
            else
                tg_request_error(r, -rc);
            return -1;
        }
        if (r->held.len + spans->len > (size_t)max) {
            /* too large: what was read goes upstream first, then this round
             * (still in the input buffer) and the rest stream as usual */
            if (r->held.len)
                tg_spans_prepend(spans, r->held.p, r->held.len);
            r->held_too_large = r->held_done = 1;
            break;
        }
        if (spans->len && held_append(r, spans, (size_t)max) != 0) {
            tg_request_error(r, 500);
            return -1;
        }
        tg_request_body_consumed(r);
        if (done) {
            /* complete: the content handler gets exactly these bytes, framed
             * with a Content-Length whatever the client used */
            if (r->held.p == NULL)
                r->held = (tg_str_t){"", 0};
            r->chunked = 0;
            r->content_length = (int64_t)r->held.len;
            r->has_body = r->held.len > 0;
            tg_spans_add(spans, r->held.p, r->held.len);
            r->held_done = 1;
        }
    }
    *body = r->held_too_large ? TG_NULL_STR : r->held;
    return 1;
}

/* ---- carrier events ------------------------------------------------------- */

void tg_request_on_body(tg_request_t *r)
{
    if (r->held_wait) {
        r->held_wait = 0;
        tg_request_resume(r); /* the hook waiting in tg_request_body_read */
    } else if (r->handler && r->handler->on_body) {
        r->handler->on_body(r);
    }
}

void tg_request_on_drained(tg_request_t *r)
{
    if (r->handler && r->handler->on_drained)
        r->handler->on_drained(r);
}

void tg_request_on_blocked(tg_request_t *r)
{
    if (r->handler && r->handler->on_blocked)
        r->handler->on_blocked(r);
}

void tg_request_on_tunnel(tg_request_t *r)
{
    if (r->handler && r->handler->on_tunnel)
        r->handler->on_tunnel(r);
}

int tg_request_tunnel_begin(tg_request_t *r, tg_msec_t idle_ms, tg_buf_t **early)
{
    int rc = r->carrier->tunnel_begin(r, idle_ms, early);
    if (rc == 1)
        r->tunnel = 1;
    return rc;
}

void tg_request_tunnel_active(tg_request_t *r)
{
    r->carrier->tunnel_active(r);
}

/* ---- local answers and response headers ----------------------------------- */

/* A gRPC call the gateway ends (an error, a denial, a rate limit, Lua's
 * tg.exit): trailers-only, HTTP 200, grpc-status and grpc-message in the
 * head (grpc/doc/PROTOCOL-HTTP2.md), for the client reads nothing else; a
 * gRPC-Web call's content-type is its own kind (PROTOCOL-WEB.md: a
 * trailers-only answer is unchanged). */
static int respond_grpc(tg_request_t *r, int status)
{
    char *code = tg_arena_printf(r->arena, "%d", tg_grpc_status_for_http(status));
    tg_header_t *ct = tg_headers_find(&r->headers, TG_STR("Content-Type"));
    int web = tg_grpc_web_kind(ct->value);
    char *type = web ? tg_arena_printf(r->arena, "application/grpc-web%s%.*s",
                                       web == TG_GRPC_WEB_TEXT ? "-text" : "",
                                       TG_STR_FMT(tg_grpc_web_format(ct->value)))
                     : "application/grpc";
    if (code == NULL || type == NULL ||
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("Content-Type"), tg_str_c(type)) != 0 ||
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("grpc-status"), tg_str_c(code)) != 0 ||
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("grpc-message"),
                       tg_str_c(tg_status_reason(status))) != 0)
        return -1;
    r->status = 200;
    r->resp_body = NULL;
    r->resp_content_length = 0;
    r->resp_no_body = 1;
    return 0;
}

int tg_request_grpc_status(const tg_request_t *r, tg_str_t *text)
{
    tg_header_t *h = tg_headers_find((tg_headers_t *)&r->resp_trailers, TG_STR("grpc-status"));
    if (h == NULL)
        h = tg_headers_find((tg_headers_t *)&r->resp_headers, TG_STR("grpc-status"));
    int64_t v;
    if (h == NULL)
        return -1;
    if (text)
        *text = h->value;
    return tg_parse_int(h->value, &v) == 0 && v <= 1000 ? (int)v : -1;
}

int tg_request_is_grpc(const tg_request_t *r)
{
    tg_header_t *ct = tg_headers_find((tg_headers_t *)&r->headers, TG_STR("Content-Type"));
    return ct && r->method == HTTP_POST &&
           (tg_grpc_is_content_type(ct->value) || tg_grpc_web_kind(ct->value));
}

int tg_request_respond(tg_request_t *r, int status, const char *ctype, tg_str_t body)
{
    if (status >= 300 && tg_request_is_grpc(r))
        return respond_grpc(r, status);
    r->status = status;
    if (ctype && body.len &&
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("Content-Type"), tg_str_c(ctype)) != 0)
        return -1;
    r->resp_body = NULL;
    r->resp_content_length = (int64_t)body.len;
    if (body.len) {
        tg_str_t copy = tg_arena_str(r->arena, body);
        tg_buf_t *b = copy.p ? tg_buf_ref(r->arena, copy.p, copy.len) : NULL;
        tg_chain_t **tail = &r->resp_body;
        if (b == NULL || tg_chain_append(r->arena, &tail, b) != 0)
            return -1;
    }
    return 0;
}

int tg_request_etag_weaken(tg_request_t *r)
{
    tg_header_t *etag = tg_headers_find(&r->resp_headers, TG_STR("ETag"));
    if (etag == NULL || tg_str_has_caseprefix(etag->value, "W/"))
        return 0;
    char *w = tg_arena_printf(r->arena, "W/%.*s", TG_STR_FMT(etag->value));
    if (w == NULL)
        return -1;
    etag->value = tg_str_c(w);
    return 0;
}

int tg_request_vary_add(tg_request_t *r, const char *token)
{
    tg_header_t *v = tg_headers_find(&r->resp_headers, TG_STR("Vary"));
    if (v == NULL)
        return tg_headers_add(r->arena, &r->resp_headers, TG_STR("Vary"), tg_str_c(token));
    for (uint32_t i = 0; i < r->resp_headers.n; i++) {
        tg_header_t *h = &r->resp_headers.h[i];
        if (tg_str_caseeq_lit(h->name, "Vary") &&
            (tg_str_has_token(h->value, token) || tg_str_has_token(h->value, "*")))
            return 0;
    }
    char *s = tg_arena_printf(r->arena, "%.*s, %s", TG_STR_FMT(v->value), token);
    if (s == NULL)
        return -1;
    v->value = tg_str_c(s);
    return 0;
}

int tg_request_add_resp_header(tg_request_t *r, tg_str_t name, tg_str_t value)
{
    tg_str_t n = tg_arena_str(r->arena, name), v = tg_arena_str(r->arena, value);
    if (n.p == NULL || v.p == NULL)
        return -1;
    return tg_headers_add(r->arena, &r->resp_headers, n, v);
}

/* ---- header lists --------------------------------------------------------- */

void tg_header_span_extend(tg_str_t *s, const char *at, size_t len)
{
    if (s->p == NULL)
        s->p = at;
    s->len = (size_t)(at + len - s->p);
}

int tg_header_value_finish(tg_header_t *h)
{
    if (h->value.p == NULL)
        h->value = (tg_str_t){"", 0};
    for (size_t i = 0; i < h->value.len; i++) {
        unsigned char ch = (unsigned char)h->value.p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return -1;
    }
    while (h->value.len && (h->value.p[h->value.len - 1] == ' ' ||
                            h->value.p[h->value.len - 1] == '\t'))
        h->value.len--;
    return 0;
}

tg_header_t *tg_headers_find(tg_headers_t *hs, tg_str_t name)
{
    for (uint32_t i = 0; i < hs->n; i++)
        if (tg_str_caseeq(hs->h[i].name, name))
            return &hs->h[i];
    return NULL;
}

int tg_headers_add(tg_arena_t *a, tg_headers_t *hs, tg_str_t name, tg_str_t value)
{
    if (hs->n == hs->cap) {
        uint32_t cap = hs->cap ? hs->cap * 2 : 16;
        tg_header_t *h = tg_arena_alloc_nz(a, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        if (hs->n)
            memcpy(h, hs->h, hs->n * sizeof(*h));
        hs->h = h;
        hs->cap = cap;
    }
    hs->h[hs->n++] = (tg_header_t){name, value};
    return 0;
}

int tg_headers_remove(tg_headers_t *hs, tg_str_t name)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < hs->n; i++)
        if (!tg_str_caseeq(hs->h[i].name, name))
            hs->h[w++] = hs->h[i];
    int removed = (int)(hs->n - w);
    hs->n = w;
    return removed;
}

int tg_headers_own(tg_arena_t *a, tg_headers_t *hs)
{
    for (uint32_t i = 0; i < hs->n; i++) {
        tg_header_t *h = &hs->h[i];
        h->name = tg_arena_str(a, h->name);
        h->value = tg_arena_str(a, h->value);
        if (h->name.p == NULL || h->value.p == NULL)
            return -1;
    }
    return 0;
}

int tg_headers_set(tg_arena_t *a, tg_headers_t *hs, tg_str_t name, tg_str_t value)
{
    tg_header_t *h = tg_headers_find(hs, name);
    if (h == NULL)
        return tg_headers_add(a, hs, name, value);
    h->value = value;
    /* drop later duplicates, keep the first's position */
    uint32_t keep = (uint32_t)(h - hs->h), w = keep + 1;
    for (uint32_t i = keep + 1; i < hs->n; i++)
        if (!tg_str_caseeq(hs->h[i].name, name))
            hs->h[w++] = hs->h[i];
    hs->n = w;
    return 0;
}

tg_str_t tg_request_protocol(const tg_request_t *r)
{
    const char *p = r->carrier ? r->carrier->protocol : "HTTP/1.1";
    if (r->http_minor == 0 && strcmp(p, "HTTP/1.1") == 0)
        return TG_STR("HTTP/1.0");
    return tg_str_c(p);
}

const char *tg_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 412: return "Precondition Failed";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" :
                    status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}
