/* @public The module interface. A module is one struct: its directives, per-scope
 * config create + merge (main -> server -> location), an optional per-worker
 * init, and hooks for the phases it cares about. src/modules.c lists every
 * module once; that order is the hook order within each phase. At config
 * time the core builds, for every location, one hook array per phase from the
 * modules switched on there (is_active), so a request only calls hooks that
 * do something.
 *
 * Hooks return TG_OK (next hook), TG_DONE (the hook answered: it called
 * tg_request_respond), TG_AGAIN (the hook parked the request and will call
 * tg_request_resume() later, which runs the same hook again) or TG_ERROR
 * (the request fails with 500). */
#ifndef TG_MODULE_H
#define TG_MODULE_H

#include "str.h"
#include "arena.h"
#include "conf.h"
#include "buf.h"

/* init_conf's answer when its errors are printed already as file:line */
#define TG_CONF_REPORTED ""

typedef enum { TG_OK = 0, TG_DONE, TG_AGAIN, TG_ERROR = -1 } tg_rc_t;

typedef enum {
    TG_PHASE_SERVER_REWRITE = 0, /* before the location is chosen: on_server_rewrite */
    TG_PHASE_REWRITE,
    TG_PHASE_ACCESS,
    TG_PHASE_ROUTE,
    TG_PHASE_CONTENT,
    TG_PHASE_RESPONSE_HEADERS,
    TG_PHASE_RESPONSE_BODY,
    TG_PHASE_LOG,
    TG_PHASE_COUNT
} tg_phase_t;

typedef struct tg_request_s tg_request_t;
typedef struct tg_worker_s tg_worker_t;
typedef struct tg_module_s tg_module_t;
typedef struct tg_explain_req_s tg_explain_req_t;

/* A variable a module provides ($name, or a prefix like "http_" when
 * TG_VAR_F_PREFIX). get() fills *out (memory from r->arena or the request)
 * and returns 0, or -1 when the variable is unset (empty). */
#define TG_VAR_F_PREFIX 0x01
typedef struct {
    const char *name;
    unsigned flags;
    int (*get)(tg_request_t *r, tg_str_t arg, tg_str_t *out);
} tg_var_def_t;

struct tg_module_s {
    const char *name;
    const tg_directive_t *directives; /* ends with a { NULL } row; may be NULL */
    const tg_var_def_t *variables;    /* ends with a { NULL } row; may be NULL */
    /* One config per scope (main, each server, each location), fields unset. */
    void *(*create_conf)(tg_conf_t *cf);
    /* Fill unset fields of child from parent; NULL or an error message. */
    const char *(*merge_conf)(tg_conf_t *cf, void *parent, void *child);
    /* After the whole config is parsed and merged (in the master, once per
     * load, in module order): build tables, open zones. NULL, an error
     * message, or TG_CONF_REPORTED when the errors are printed already. */
    const char *(*init_conf)(tg_conf_t *cf, void *main_conf);
    /* Is the module switched on in this (merged) location config? NULL means
     * always. Only active modules get into the location's hook arrays. */
    int (*is_active)(void *loc_conf);
    int (*init_worker)(tg_worker_t *w);
    void (*exit_worker)(tg_worker_t *w);
    /* USR1 in a worker (log rotation): reopen the files the module writes. */
    void (*reopen_logs)(tg_worker_t *w);
    /* In the master, when workers switch user (src/user.c), before workers
     * start and before USR1 is passed on: create the files the module's
     * workers write (a rotation moved them away) and make the workers' user
     * their owner, with tg_user_own_file. */
    void (*own_logs)(tg_config_t *c);
    /* In a new worker, before it switches user: open the files the module
     * writes (as root, so a directory only root may enter is no obstacle);
     * init_worker then keeps what is open. */
    void (*open_logs_early)(tg_config_t *c);
    /* In the master, when the worker of `slot` died without closing its
     * connections (state it kept per slot in shared memory is stale). */
    void (*on_worker_gone)(tg_config_t *c, int slot);
    /* The server's rewrite phase: runs before the location is chosen (and
     * again after an internal redirect to a URI), with the module's
     * server-scope config. A path changed here is what the location is then
     * chosen by. */
    tg_rc_t (*on_server_rewrite)(tg_request_t *r, void *conf);
    /* The location's rewrite phase. A hook that changes the path
     * (tg_request_set_uri) has the request routed again at the end of the
     * phase (see tg_request_run_phases). */
    tg_rc_t (*on_rewrite)(tg_request_t *r, void *conf);
    tg_rc_t (*on_access)(tg_request_t *r, void *conf);
    tg_rc_t (*on_route)(tg_request_t *r, void *conf);
    /* The location's content: return, stats, the proxy. Content hooks run in
     * module order; TG_OK: not mine, the next one; TG_DONE: answered with
     * tg_request_respond; TG_AGAIN: the handler took the request over and
     * ends it itself (tg_request_finalize/tg_request_error), receiving the
     * carrier's events through r->handler. */
    tg_rc_t (*on_content)(tg_request_t *r, void *conf);
    tg_rc_t (*on_response_headers)(tg_request_t *r, void *conf);
    /* Transform the body: *io is the chain of new data (NULL-terminated list;
     * the last call of a response has TG_BUF_F_LAST on its last buffer). A
     * filter replaces *io with its output chain (which may be empty). A
     * filter that will transform a response sets r->body_filter in its
     * response-header hook: file bodies bypass the filters otherwise. */
    tg_rc_t (*on_response_body)(tg_request_t *r, void *conf, tg_chain_t **io);
    void (*on_log)(tg_request_t *r, void *conf);
    /* `tollgate -T` and `--explain` (src/inspect.c, src/explain.c): one line
     * saying what the module does with this merged scope config (a
     * location's, or the server's for the server rewrite phase), such as
     * "zone per_ip key=$remote_addr 10-in-1sec burst=5". Returns an arena
     * string, or NULL when it has nothing to add. Optional: a module without
     * it is still listed, by name, in every phase it hooks. `req` is the
     * request --explain was given (NULL for -T): a module may say what it
     * would decide for it (access: the rule the address hits). */
    const char *(*explain)(tg_arena_t *a, void *conf, const tg_explain_req_t *req);
    /* `tollgate -s NAME ARG...` for a NAME that is not a signal: run it in
     * the command-line process against the loaded config (the admin module's
     * drain and undrain talk to the running gateway's API). Returns the exit
     * status, or -1 when NAME is not the module's. */
    int (*command)(tg_config_t *c, const char *name, int argc, char **argv);
    int index; /* position in tg_modules[], set by tg_modules_init() */
};

/* The request `tollgate --explain` describes (src/explain.c): no request
 * struct exists, only what the command line gave. */
typedef struct tg_explain_req_s {
    tg_str_t method, path, host; /* path normalized as routing sees it */
    tg_str_t remote;             /* --remote ADDR, empty when not given */
    const tg_str_t *names, *values; /* -H headers */
    int nheaders;
} tg_explain_req_t;

/* One entry of a location's per-phase hook array. */
typedef struct {
    tg_module_t *module;
    void *conf;
} tg_hook_t;

extern tg_module_t *const tg_modules[]; /* NULL-terminated, src/modules.c */
extern int tg_nmodules;
void tg_modules_init(void);

/* The module's config in the request's location (merged). */
#define tg_module_conf(r, m) ((r)->loc_conf[(m)->index])
/* Per-request module context slot. */
#define tg_module_ctx(r, m) ((r)->ctx[(m)->index])

#endif
