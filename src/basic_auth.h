/* @public HTTP Basic authentication against crypt(3) password hashes, for the
 * locations that serve the gateway's own endpoints (stats_auth, admin_auth).
 * A location keeps its users; a module keeps one cache per worker of the
 * credentials that verified lately, so a client polling every second costs
 * one crypt(3) run, not one per request. */
#ifndef TG_BASIC_AUTH_H
#define TG_BASIC_AUTH_H

#include "conf.h"
#include "request.h"

#define TG_BASIC_AUTH_CACHE 4 /* credentials that verified lately, per worker */

typedef struct {
    tg_str_t user;
    const char *hash; /* crypt(3) string: $6$..., $y$..., $2b$... */
} tg_basic_user_t;

/* A location's users (config arena). */
typedef struct {
    tg_basic_user_t *users;
    int nusers;
} tg_basic_users_t;

/* A module's cache; each worker writes its own copy (fork). */
typedef struct {
    struct crypt_data *crypt; /* crypt_r's scratch space */
    unsigned char ok[TG_BASIC_AUTH_CACHE][32]; /* SHA-256 of users pointer + credentials */
    int next;
} tg_basic_cache_t;

/* `DIRECTIVE USER:HASH` (argument 1): add a user after checking that the
 * hash is one crypt(3) takes. NULL or an error message for set(). */
const char *tg_basic_auth_add(tg_conf_t *cf, tg_basic_users_t *u, const char *directive);
/* Allocate the cache's crypt scratch space from the config arena. 0 or -1. */
int tg_basic_auth_cache_init(tg_conf_t *cf, tg_basic_cache_t *c);
/* 1 when the request's Authorization header holds the credentials of one of
 * `u`'s users, else 0. */
int tg_basic_auth_check(tg_basic_cache_t *c, const tg_basic_users_t *u, tg_request_t *r);
/* Answer 401 with a Basic challenge for `realm`. 0, or -1 (out of memory). */
int tg_basic_auth_challenge(tg_request_t *r, const char *realm);

#endif
