/* gRPC-Web to gRPC and back (grpc/doc/PROTOCOL-WEB.md), for the HTTP/2
 * proxy: the gRPC framing is the same both ways, so a call is translated by
 * its content-types, base64 in text mode and the trailers, which gRPC-Web
 * carries as the body's last frame (flag 0x80, an HTTP/1 header block).
 *
 * Text mode streams: each request round is decoded as it comes (a quantum
 * split between rounds is carried over, and padding may end any round, as
 * clients that encode message by message send it); each response round is
 * encoded on its own and padded, so a message reaches the client when the
 * upstream sent it (the spec lets the client expect padding wherever the
 * server flushes). */
#include <string.h>
#include <llhttp.h>
#include "grpc_web.h"
#include "grpc.h"
#include "log.h"

long tg_b64_stream_decode(tg_b64_stream_t *d, const char *s, size_t n, unsigned char *out)
{
    unsigned char *w = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            if (d->n < 2)
                return -1; /* "=" or "Q=": no encoding has it */
            d->pad++;
            d->acc <<= 6;
        } else {
            int v = tg_base64_digit(c, TG_B64_STD);
            if (v < 0 || d->pad)
                return -1;
            d->acc = d->acc << 6 | (uint32_t)v;
        }
        if (++d->n < 4)
            continue;
        w[0] = (unsigned char)(d->acc >> 16);
        w[1] = (unsigned char)(d->acc >> 8);
        w[2] = (unsigned char)d->acc;
        w += 3 - d->pad;
        *d = (tg_b64_stream_t){0};
    }
    return (long)(w - out);
}

size_t tg_b64_encode_spans(const tg_spans_t *in, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *w = out;
    uint32_t acc = 0;
    int n = 0;
    for (int i = 0; i < in->n; i++) {
        const unsigned char *p = in->v[i].iov_base, *e = p + in->v[i].iov_len;
        for (; p < e; p++) {
            acc = acc << 8 | *p;
            if (++n < 3)
                continue;
            w[0] = abc[acc >> 18 & 63];
            w[1] = abc[acc >> 12 & 63];
            w[2] = abc[acc >> 6 & 63];
            w[3] = abc[acc & 63];
            w += 4;
            acc = 0;
            n = 0;
        }
    }
    if (n) {
        acc <<= 8 * (3 - n);
        w[0] = abc[acc >> 18 & 63];
        w[1] = abc[acc >> 12 & 63];
        w[2] = n == 2 ? abc[acc >> 6 & 63] : '=';
        w[3] = '=';
        w += 4;
    }
    return (size_t)(w - out);
}

size_t tg_grpc_web_trailer_frame(const tg_headers_t *hs, char *out)
{
    size_t len = 0;
    for (uint32_t i = 0; i < hs->n; i++)
        len += hs->h[i].name.len + 2 + hs->h[i].value.len + 2;
    if (out == NULL)
        return 5 + len;
    out[0] = (char)0x80;
    out[1] = (char)(len >> 24);
    out[2] = (char)(len >> 16);
    out[3] = (char)(len >> 8);
    out[4] = (char)len;
    char *w = out + 5;
    for (uint32_t i = 0; i < hs->n; i++) {
        const tg_header_t *h = &hs->h[i];
        for (size_t k = 0; k < h->name.len; k++) {
            char c = h->name.p[k];
            *w++ = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        memcpy(w, ": ", 2);
        memcpy(w + 2, h->value.p, h->value.len);
        w += 2 + h->value.len;
        memcpy(w, "\r\n", 2);
        w += 2;
    }
    return (size_t)(w - out);
}

/* ---- the translation -------------------------------------------------------------- */

/* Does this Accept list name application/grpc-web-text (PROTOCOL-WEB: how
 * a client asks for a text answer)? */
static int accepts_text(tg_str_t list)
{
    const char *p = list.p, *end = list.p + list.len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (tg_grpc_web_kind(tg_str_trim((tg_str_t){p, (size_t)(stop - p)})) == TG_GRPC_WEB_TEXT)
            return 1;
        p = comma ? comma + 1 : end;
    }
    return 0;
}

int tg_grpc_web_start(tg_grpc_web_t *w, tg_request_t *r, int enabled)
{
    tg_header_t *ct = tg_headers_find(&r->headers, TG_STR("Content-Type"));
    w->kind = enabled && ct && r->method == HTTP_POST ? tg_grpc_web_kind(ct->value) : 0;
    if (w->kind == 0)
        return 0;
    tg_header_t *acc = tg_headers_find(&r->headers, TG_STR("Accept"));
    w->text_resp = w->kind == TG_GRPC_WEB_TEXT ||
                   (acc && accepts_text(acc->value));
    tg_str_t fmt = tg_grpc_web_format(ct->value);
    char *up = tg_arena_printf(r->arena, "application/grpc%.*s", TG_STR_FMT(fmt));
    char *rt = tg_arena_printf(r->arena, "application/grpc-web%s%.*s",
                               w->text_resp ? "-text" : "", TG_STR_FMT(fmt));
    if (up == NULL || rt == NULL)
        return -1;
    w->up_type = tg_str_c(up);
    w->resp_type = tg_str_c(rt);
    return 1;
}

int tg_grpc_web_field(const tg_grpc_web_t *w, tg_str_t name, tg_str_t *value)
{
    if (tg_str_caseeq_lit(name, "content-type"))
        *value = w->up_type;
    return !tg_str_caseeq_lit(name, "x-grpc-web") &&
           !(w->kind == TG_GRPC_WEB_TEXT && tg_str_caseeq_lit(name, "content-length"));
}

/* Room for `need` bytes in a scratch buffer (kept for the next rounds). */
static char *scratch(tg_request_t *r, char **buf, size_t *cap, size_t need)
{
    if (need > *cap) {
        size_t c = *cap ? *cap * 2 : 4096;
        while (c < need)
            c *= 2;
        if ((*buf = tg_arena_alloc_nz(r->arena, c)) == NULL)
            return NULL;
        *cap = c;
    }
    return *buf;
}

tg_spans_t *tg_grpc_web_request_body(tg_grpc_web_t *w, tg_request_t *r, tg_spans_t *in, int last)
{
    if (w->kind != TG_GRPC_WEB_TEXT)
        return in;
    size_t len = in ? in->len : 0;
    unsigned char *out = (unsigned char *)scratch(r, &w->dbuf, &w->dcap, len / 4 * 3 + 3);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (int i = 0; in && i < in->n; i++) {
        long k = tg_b64_stream_decode(&w->dec, in->v[i].iov_base, in->v[i].iov_len, out + n);
        if (k < 0) {
            tg_log(TG_LOG_INFO, "gRPC-Web call %.*s: the request body is not base64",
                   TG_STR_FMT(r->uri));
            return NULL;
        }
        n += (size_t)k;
    }
    if (last && w->dec.n) {
        tg_log(TG_LOG_INFO, "gRPC-Web call %.*s: the request body ends inside a base64 quantum",
               TG_STR_FMT(r->uri));
        return NULL;
    }
    tg_spans_reset(&w->din);
    if (n)
        tg_spans_add(&w->din, (char *)out, n);
    return &w->din;
}

int tg_grpc_web_response_head(tg_grpc_web_t *w, tg_request_t *r)
{
    tg_headers_remove(&r->resp_headers, TG_STR("content-length"));
    r->resp_content_length = r->resp_no_body ? 0 : -1; /* trailers-only: empty */
    return tg_headers_set(r->arena, &r->resp_headers, TG_STR("content-type"), w->resp_type);
}

tg_spans_t *tg_grpc_web_response_body(tg_grpc_web_t *w, tg_request_t *r, tg_spans_t *in, int last)
{
    int frame = last && !r->resp_no_body;
    size_t flen = frame ? tg_grpc_web_trailer_frame(&r->resp_trailers, NULL) : 0;
    size_t len = in ? in->len : 0;
    /* text: the data's base64, the frame's, and the frame itself at the end */
    size_t need = w->text_resp ? (len + 2) / 3 * 4 + (flen + 2) / 3 * 4 + flen : flen;
    char *buf = need ? scratch(r, &w->ebuf, &w->ecap, need) : NULL;
    if (need && buf == NULL)
        return NULL;
    tg_spans_reset(&w->eout);
    if (w->text_resp && len) {
        size_t n = tg_b64_encode_spans(in, buf);
        tg_spans_add(&w->eout, buf, n);
        buf += n;
    } else {
        for (int i = 0; in && i < in->n; i++)
            tg_spans_add(&w->eout, in->v[i].iov_base, in->v[i].iov_len);
    }
    if (!frame)
        return &w->eout;
    if (w->text_resp) {
        char *raw = w->ebuf + w->ecap - flen;
        tg_grpc_web_trailer_frame(&r->resp_trailers, raw);
        tg_spans_t fs = {.n = 0};
        tg_spans_add(&fs, raw, flen);
        tg_spans_add(&w->eout, buf, tg_b64_encode_spans(&fs, buf));
    } else {
        tg_grpc_web_trailer_frame(&r->resp_trailers, buf);
        tg_spans_add(&w->eout, buf, flen);
    }
    /* the trailers went in the body: not as HTTP/2 trailers too; the head
     * (sent) keeps them for $grpc_status and the stats */
    for (uint32_t i = 0; i < r->resp_trailers.n; i++)
        if (tg_headers_add(r->arena, &r->resp_headers, r->resp_trailers.h[i].name,
                           r->resp_trailers.h[i].value) != 0)
            return NULL;
    r->resp_trailers.n = 0;
    return &w->eout;
}
