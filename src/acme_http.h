/* The ACME helper's HTTP client (src/acme_http.c): one request per
 * connection (Connection: close), HTTP/1.1 over TLS (verified against the
 * given context, with SNI and a host name check) or plain HTTP, the
 * response parsed with llhttp (Content-Length, chunked or up to the close).
 *
 * It waits in poll(2) with one deadline for the whole exchange, so a CA
 * that stops answering costs at most `timeout_ms`. It runs only in the ACME
 * helper process (src/acme.c), which serves no client: see
 * docs/architecture.md for why that process may wait. */
#ifndef TG_ACME_HTTP_H
#define TG_ACME_HTTP_H

#include <stddef.h>
#include <openssl/ssl.h>

#define TG_ACME_HTTP_MAX_BODY (1024 * 1024)

typedef struct {
    int status;             /* 0 when no response came (err says why) */
    char *body;             /* malloc'd, NUL-terminated; body_len bytes */
    size_t body_len;
    char *location;         /* malloc'd header values, NULL when absent */
    char *nonce;            /* Replay-Nonce */
    char *content_type;
    long retry_after;       /* Retry-After in seconds, -1 when absent */
    char err[256];
} tg_acme_resp_t;

/* `method` to `url` (http:// or https://), with `body` (NULL: none) of
 * `ctype`; `accept` may be NULL. ctx: the client context for https. Fills
 * *resp (free it with tg_acme_resp_free) and returns 0 when a response
 * came, whatever its status; -1 with resp->err otherwise. */
int tg_acme_http(SSL_CTX *ctx, const char *method, const char *url, const char *ctype,
                 const char *body, size_t body_len, const char *accept, int timeout_ms,
                 tg_acme_resp_t *resp);
void tg_acme_resp_free(tg_acme_resp_t *resp);

#endif
