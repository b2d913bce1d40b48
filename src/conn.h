/* A client connection: its socket, watchers, the request parser and the
 * input buffer. An idle keep-alive connection holds no buffer and no arena
 * block, only this struct, so tens of thousands of idle clients cost little.
 * The HTTP logic that drives it is in http.c. */
#ifndef TG_CONN_H
#define TG_CONN_H

#include <netinet/in.h>
#include <ev.h>
#include <llhttp.h>
#include "arena.h"
#include "buf.h"
#include "core.h"

typedef enum {
    TG_CONN_IDLE = 0,     /* keep-alive, waiting for a request (no buffer) */
    TG_CONN_HEADERS,      /* reading a request's header block */
    TG_CONN_BUSY,         /* a request is being processed/proxied */
    TG_CONN_LINGER,       /* response sent, draining input before close */
    TG_CONN_TUNNEL,       /* upgraded: bytes pass through (proxy.c, tunnel.c) */
} tg_conn_state_t;

struct tg_conn_s {
    int fd;
    ev_io io; /* one watcher; its events follow what the connection waits for */
    ev_timer timer;
    tg_listen_t *listen;
    tg_arena_t arena;
    llhttp_t *parser;   /* with ibuf: an idle connection holds neither */
    tg_buf_t *ibuf;     /* bytes read; [pos,last) not parsed yet */
    tg_request_t *req;  /* current request, NULL when idle */
    struct tg_conn_s *prev, *next; /* the worker's list of open connections */
    uint32_t nrequests;
    uint8_t state;
    unsigned paused : 1; /* parser paused at the end of a message */
    unsigned closing : 1;
    unsigned pp_done : 1;        /* PROXY protocol header read */
    char *pp_addr;               /* client address from the PROXY header (malloc) */
    struct sockaddr_in6 sa;      /* peer address (AF_INET fits too) */
};

/* The peer's address as text, in a buffer valid until the next call. */
const char *tg_conn_peer(const tg_conn_t *c);

/* Take an accepted socket (already non-blocking). */
void tg_conn_accept(tg_listen_t *ls, int fd, struct sockaddr *sa, socklen_t salen);
/* Graceful shutdown: close the keep-alive connections idle for at least
 * `min_idle` seconds (the others are closed after their next answer, which
 * says Connection: close: closing a connection a client is about to reuse
 * would fail its request). */
void tg_conn_close_idle_all(double min_idle);
void tg_conn_close(tg_conn_t *c);

#endif
