/* @public The Lua runtime of a worker: one LuaJIT state, the sandbox every script
 * runs in, the compiled script chunks, and running one chunk for one request
 * in its own coroutine (modules/lua.c calls it from its phase hooks).
 *
 * Scripts are read and syntax-checked once per config load in the master
 * (tg_lua_vm_check), and the checked source is what the workers compile at
 * start, so a worker never reads a script file and a reload with a broken
 * script never gets past the master. Each run of a script gets a coroutine
 * from a per-worker pool (threads whose chunk returned are reused), anchored
 * in the registry until the chunk ends or the request ends (arena cleanup).
 * A coroutine that sleeps (tg.sleep) or waits for the request body
 * (tg.req.body) parks the request (TG_AGAIN) and is resumed by a timer or by
 * body bytes; the same hook called again resumes it instead of starting a
 * new one. lua_init_worker and tg.timer callbacks run without a request
 * (tg_lua_vm_call): a coroutine from the same pool, the main scope's
 * instruction limit, no yield. The body is read by the runner, outside the script, so no I/O
 * and no end of the request ever happens inside a Lua call.
 *
 * Safety: with lua_jit off the per-run instruction limit is exact in the
 * interpreter; with it on compiled traces never call the instruction-count
 * hook, so the limit is not set and the stall watchdog (watchdog.h) ends
 * runaway scripts, told by each run which script and phase it is in; the state's allocator counts bytes and refuses allocations
 * past lua_memory_limit while a script runs (a Lua "not enough memory"
 * error). Every error ends that run only: 500, logged with a traceback. */
#ifndef TG_LUA_VM_H
#define TG_LUA_VM_H

#include <stdint.h>
#include "str.h"
#include "arena.h"
#include "module.h"

typedef enum {
    TG_LUA_REWRITE = 0,
    TG_LUA_ACCESS,
    TG_LUA_ROUTE,
    TG_LUA_HEADER_FILTER,
    TG_LUA_LOG,
    TG_LUA_BODY_FILTER, /* runs once per round of the response body, cannot yield */
    TG_LUA_NPHASES,     /* the request phases above, one script directive each */
    /* runs without a request: lua_init_worker and tg.timer callbacks */
    TG_LUA_INIT_WORKER = TG_LUA_NPHASES,
    TG_LUA_TIMER,
} tg_lua_phase_t;

#define TG_LUA_F(ph) (1u << (ph)) /* phase bit, for API phase checks */
#define TG_LUA_F_REQUEST (TG_LUA_F(TG_LUA_REWRITE) | TG_LUA_F(TG_LUA_ACCESS) | TG_LUA_F(TG_LUA_ROUTE))
#define TG_LUA_F_ANY ((1u << TG_LUA_NPHASES) - 1)

/* One script file, once per config however many directives name it. */
typedef struct tg_lua_script_s {
    const char *path; /* as resolved, also the chunk name for messages */
    char *src;        /* the checked source (config arena) */
    size_t len;
    int id; /* index of its compiled chunk in the worker */
    struct tg_lua_script_s *next;
} tg_lua_script_t;

/* A Redis backend a script may name in tg.redis.connect: `lua_redis NAME
 * URL`, or a URL written literally in a script (name = the URL). */
typedef struct tg_redis_s tg_redis_t;
typedef struct tg_lua_redis_s {
    tg_str_t name;
    tg_redis_t *redis;
    struct tg_lua_redis_s *next;
} tg_lua_redis_t;

typedef struct tg_shdict_s tg_shdict_t;
typedef struct tg_lua_dict_s {
    tg_str_t name; /* tg.shared.NAME */
    tg_shdict_t *dict;
    struct tg_lua_dict_s *next;
} tg_lua_dict_t;

/* Main-scope settings the worker's state is built from. */
typedef struct {
    tg_str_t package_path; /* lua_package_path, resolved against the prefix */
    int64_t memory_limit;  /* bytes, per worker state */
    tg_lua_script_t *scripts;
    int nscripts;
    tg_lua_dict_t *dicts;
    tg_lua_script_t *init_worker; /* lua_init_worker, or NULL */
    int64_t max_timers;           /* lua_max_timers: pending tg.timer timers per worker */
    int64_t instruction_limit;    /* main scope's: for lua_init_worker and timers */
    int64_t http_body_max;        /* lua_http_body_max: tg.http.request answers */
    tg_lua_redis_t *redis;        /* tg.redis.connect's names */
    const char *http_ca;          /* lua_http_ca: url calls' trusted CAs (NULL: system's) */
    void *http_tls_ctx;           /* the TLS client context made from it */
    int jit;                      /* lua_jit: compile hot code (the watchdog, not the
                                   * instruction limit, then stops endless loops) */
} tg_lua_main_t;

/* Master, config time: read `path`, check its syntax. Returns NULL and the
 * source in *src and *len (arena), or an error message "path:line: ..." (arena). */
const char *tg_lua_vm_check(tg_arena_t *a, const char *path, char **src, size_t *len);
/* String literals given first to calls of `call` (e.g. "tg.route(") in a
 * source: calls fn for each. The config makes what they name before the
 * workers start: implicit HOST:PORT upstreams for tg.route, Redis
 * backends for tg.redis.connect. */
void tg_lua_vm_call_literals(const char *src, size_t len, const char *call,
                             void (*fn)(void *, tg_str_t), void *data);

/* Worker start: the state (JIT on or off), sandbox, tg API and every script compiled.
 * Returns 0 or -1 (logged). */
int tg_lua_vm_init(tg_lua_main_t *m);
void tg_lua_vm_exit(void);

/* Run, without a request, the function at registry[ref] (a compiled
 * chunk), or the call that registry[ref] holds as {fn, arg1, ..., n = N}:
 * lua_init_worker and timers, in phase TG_LUA_INIT_WORKER or TG_LUA_TIMER,
 * in a coroutine of their own with the main scope's instruction limit and
 * the memory limit. It may not yield. Returns 0, or -1 (the error logged
 * with its traceback, counted as a Lua error). */
int tg_lua_vm_call(int ref, tg_lua_phase_t phase);

/* Run (or resume) script `s` for request r in `phase`. `slot` is the
 * module's per-request context slot; body_max caps tg.req.body. TG_OK,
 * TG_DONE (tg.exit answered), TG_AGAIN (sleeping, or waiting for the request
 * body; also when the request ended meanwhile), TG_ERROR (a script error,
 * logged: the caller answers 500). In the header filter and log phases a
 * sleep is an error. */
tg_rc_t tg_lua_vm_run(tg_request_t *r, void **slot, tg_lua_script_t *s, tg_lua_phase_t phase,
                      int64_t instruction_limit, int64_t body_max);

/* Run body filter script `s` over one round of the response body: *io is
 * the round's chain (TG_BUF_F_LAST on its last buffer in the last round),
 * given to the script as tg.arg.chunk (one string) and tg.arg.eof. What the
 * script leaves in tg.arg.chunk replaces the round: *io becomes one buffer
 * pointing at that string, anchored in the Lua state until the next round
 * or the end of the request, or an empty chain (an empty buffer carrying
 * TG_BUF_F_LAST in the last round) for "" or nil. TG_OK, or TG_ERROR (a
 * script error, or a chunk that is not a string: logged). */
tg_rc_t tg_lua_vm_body_filter(tg_request_t *r, void **slot, tg_lua_script_t *s,
                              int64_t instruction_limit, tg_chain_t **io);

/* ---- for the API files (src/lua_api.c, lua_re.c, lua_crypto.c) ---- */
typedef struct lua_State lua_State;
typedef struct tg_lua_req_s tg_lua_req_t;

/* The request of the running script, after checking that `fn` may be called
 * in the current phase (raises a Lua error otherwise). */
tg_request_t *tg_lua_vm_request(lua_State *L, const char *fn, unsigned phases);
/* The per-request context of the running script (same checks). */
tg_lua_req_t *tg_lua_vm_ctx(lua_State *L, const char *fn, unsigned phases);
tg_lua_phase_t tg_lua_vm_phase(void);
extern const char *const tg_lua_phase_names[TG_LUA_TIMER + 1];

/* Registers tg.* into the table on top of the stack. */
void tg_lua_api_open(lua_State *L, tg_lua_main_t *m);
void tg_lua_re_open(lua_State *L);     /* tg.re */
void tg_lua_crypto_open(lua_State *L); /* tg.crypto */
void tg_lua_json_open(lua_State *L);   /* tg.json (lua_json.c) */
/* tg.timer (lua_timer.c): the table on top of the stack gets at, every and
 * count; timer slots for `max` timers are allocated (worker start). 0 or -1. */
int tg_lua_timer_open(lua_State *L, int64_t max);
void tg_lua_timer_exit(void); /* stops every timer (worker exit) */
void tg_lua_jwt_open(lua_State *L);    /* tg.jwt (lua_jwt.c) */
/* Decode the JSON text s[0..n) onto L's stack: 0 and the value pushed, or
 * -1 and an error message pushed (tg.json.decode's rules). */
int tg_lua_json_decode(lua_State *L, const char *s, size_t n);

/* A script waiting for an operation outside Lua (tg.http.request,
 * tg.redis): the caller takes the struct and the operation's memory from
 * tg_lua_vm_wait_arena(), fills it and returns tg_lua_vm_wait(L, w, its
 * name). The runner calls start() once the script has yielded; the
 * operation calls tg_lua_vm_wake() when it is over (even from inside
 * start()), as the last thing it does with its memory; the runner then
 * calls push() on the coroutine for the results the script gets. If the
 * request ends first (or the worker exits), cancel() is called.
 *
 * Request phases (rewrite, access, route) park the request; timers and
 * lua_init_worker park their coroutine (at most lua_max_timers of them at
 * once, each with an arena of its own, freed when it ends). In the log
 * phase the operation is detached, fire and forget: tg_lua_vm_wait starts
 * it at once and returns (true) without waiting; it runs on after the
 * request, in an arena of its own, and its result is dropped. */
typedef struct tg_lua_bg_s tg_lua_bg_t;
typedef struct tg_lua_wait_s {
    int (*push)(lua_State *co, void *data);
    void (*start)(void *data);
    void (*cancel)(void *data);
    void *data;
    tg_request_t *r;       /* set by tg_lua_vm_wait: the parked request, or NULL */
    tg_lua_bg_t *bg;       /* or the parked run without a request (or the detached call) */
    unsigned starting : 1; /* inside start(): the runner sees the wake itself */
    unsigned done : 1;
} tg_lua_wait_t;
/* The arena for a wait's memory in the current run, after checking that
 * `fn` may wait in this phase (raises otherwise). NULL when out of memory
 * or when too many runs wait already (the caller returns nil, err). */
tg_arena_t *tg_lua_vm_wait_arena(lua_State *L, const char *fn);
int tg_lua_vm_wait(lua_State *L, tg_lua_wait_t *w, const char *fn); /* yields; lua_CFunction tail */
void tg_lua_vm_wake(tg_lua_wait_t *w);
int64_t tg_lua_vm_http_body_max(void); /* lua_http_body_max, for lua_http.c */
/* tg.http (lua_http.c): config time, the TLS context of url calls
 * (lua_http_ca); worker start, the table on top of the stack gets request;
 * worker exit, the url hosts' pools and the resolver are freed. */
const char *tg_lua_http_init_conf(tg_conf_t *cf, tg_lua_main_t *m);
void tg_lua_http_open(lua_State *L, tg_lua_main_t *m);
void tg_lua_http_exit(void);
void tg_lua_redis_open(lua_State *L, tg_lua_main_t *m); /* tg.redis, tg.null */
void tg_lua_cache_open(lua_State *L); /* tg.cache (lua_cache.c) */

/* What the API asks of the runner. */
int tg_lua_vm_sleep(lua_State *L, double seconds); /* yields; lua_CFunction tail */
int tg_lua_vm_in_chunk(lua_State *L); /* L is the chunk's coroutine, not one it made */
int tg_lua_vm_exit_request(lua_State *L); /* after tg_request_respond: yields */
int tg_lua_vm_push_ctx_table(lua_State *L, tg_lua_req_t *ctx); /* tg.ctx */
/* tg.req.body: the body read once per request (up to body_max), or nil,
 * "body too large"; yields while the body arrives. lua_CFunction. */
int tg_lua_vm_body(lua_State *L);

#endif
