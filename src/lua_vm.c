/* The worker's Lua state and the script runner (see lua_vm.h). Everything
 * here is per process: the master only uses tg_lua_vm_check and
 * tg_lua_vm_route_literals, with a throwaway state. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ev.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "luajit.h"
#include "lua_vm.h"
#include "request.h"
#include "worker.h"
#include "log.h"
#include "stats.h"
#include "watchdog.h"

struct tg_lua_req_s {
    tg_request_t *r;
    lua_State *co; /* the running or sleeping chunk, NULL when none */
    int co_ref;    /* its registry anchor */
    tg_lua_phase_t co_phase;
    int ctx_ref; /* tg.ctx table, LUA_NOREF until used */
    ev_timer timer;
    tg_str_t body; /* tg.req.body's answer once read (request arena); p NULL: too large */
    tg_lua_wait_t *wait; /* the operation the coroutine waits for (tg.http.request) */
    int out_ref;    /* the body filter's last output string, LUA_NOREF when none */
    tg_buf_t out;   /* ... the buffer pointing at it, and its link */
    tg_chain_t out_link;
    unsigned sleeping : 1;
    unsigned exited : 1;
    unsigned body_wait : 1; /* yielded in tg.req.body, the runner reads */
    unsigned body_read : 1;
    unsigned cleanup : 1;   /* req_cleanup is registered */
};

#define LUA_CO_POOL 64 /* finished coroutines kept for reuse */

/* A run without a request that waits (a timer or lua_init_worker in
 * tg.redis or tg.http.request), or a detached call of the log phase
 * (co NULL). Allocated when the run first asks for a wait arena; freed
 * when the run (or the call) ends. */
struct tg_lua_bg_s {
    lua_State *co; /* NULL: detached */
    int co_ref;
    tg_lua_phase_t phase;
    tg_lua_wait_t *wait;             /* what it waits for, while parked */
    tg_arena_t arena;                /* the wait's memory */
    struct tg_lua_bg_s *prev, *next; /* vm.parked */
};

/* This process's runtime. `r`, `ctx` and `phase` describe the chunk running
 * now (NULL between runs), which is how the API finds its request. */
static struct {
    lua_State *L;
    int *chunks; /* registry refs of the compiled scripts, by script id */
    int nchunks;
    size_t used, limit; /* bytes allocated by the state; limit 0 = none */
    int in_script;      /* the limit applies only while a script runs */
    int over_budget;    /* the instruction limit was hit in this run */
    int64_t budget;
    int64_t limit_no_request; /* instruction limit of lua_init_worker and timers */
    int64_t http_body_max;    /* lua_http_body_max */
    int jit;                  /* lua_jit on: no instruction limit (the count hook would
                               * slow the interpreter and cannot stop traces anyway) */
    int arg_ref;              /* the tg.arg table (body filter's chunk and eof) */
    tg_request_t *r;
    tg_lua_req_t *ctx;
    tg_lua_phase_t phase;
    lua_State *bg_co;      /* the coroutine of the running run without a request */
    tg_lua_bg_t *bg;       /* its wait state, once it asked for one */
    tg_lua_bg_t *detached; /* a log-phase call between its arena and its start */
    tg_lua_bg_t *parked;   /* waiting runs and detached calls */
    int nbg;
    int64_t max_bg; /* lua_max_timers */
    struct {
        lua_State *co;
        int ref;
    } pool[LUA_CO_POOL];
    int npool;
} vm;

const char *const tg_lua_phase_names[TG_LUA_TIMER + 1] = {
    "rewrite", "access", "route", "header_filter", "log", "body_filter", "init_worker", "timer"};

/* ---- config time (master) ---- */

const char *tg_lua_vm_check(tg_arena_t *a, const char *path, char **src, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return tg_arena_printf(a, "cannot open Lua script \"%s\": %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return "out of memory";
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return tg_arena_printf(a, "cannot read Lua script \"%s\"", path);
    }
    const char *err = NULL;
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        free(buf);
        return "cannot create a Lua state";
    }
    char *chunkname = tg_arena_printf(a, "@%s", path);
    if (n && buf[0] == 0x1b) /* precompiled bytecode could break the sandbox */
        err = tg_arena_printf(a, "%s: bytecode scripts are not accepted", path);
    else if (luaL_loadbuffer(L, buf, n, chunkname) != 0)
        err = tg_arena_printf(a, "%s", lua_tostring(L, -1));
    lua_close(L);
    if (err == NULL) {
        *src = tg_arena_alloc_nz(a, n + 1);
        if (*src == NULL) {
            err = "out of memory";
        } else {
            memcpy(*src, buf, n);
            (*src)[n] = '\0';
            *len = n;
        }
    }
    free(buf);
    return err;
}

void tg_lua_vm_call_literals(const char *src, size_t len, const char *call,
                             void (*fn)(void *, tg_str_t), void *data)
{
    size_t cn = strlen(call);
    const char *p = src, *end = src + len;
    while ((p = memmem(p, (size_t)(end - p), call, cn)) != NULL) {
        p += cn;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p >= end || (*p != '"' && *p != '\''))
            continue;
        char q = *p++;
        const char *s = p;
        while (p < end && *p != q && *p != '\\' && *p != '\n')
            p++;
        if (p < end && *p == q)
            fn(data, (tg_str_t){s, (size_t)(p - s)});
    }
}

/* ---- the state ---- */

static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        vm.used -= osize;
        return NULL;
    }
    /* outside a script (new coroutines, refs) allocations are small and must
     * not fail: an unprotected Lua error would abort the process */
    if (vm.in_script && vm.limit && nsize > osize && vm.used - osize + nsize > vm.limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        vm.used = vm.used - osize + nsize;
    return p;
}

/* The budget is spent: yield out of the chunk. A yield cannot be caught by
 * pcall, unlike an error; the runner sees over_budget and fails the run.
 * Inside a C call that cannot yield (a sort comparator, a gsub callback)
 * lua_yield raises "attempt to yield across a C-call boundary" instead, and
 * the hook tries again 1000 instructions later. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (!vm.in_script)
        return;
    if (!vm.over_budget) {
        vm.over_budget = 1;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);
    }
    lua_yield(L, 0);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

static void set_nil(lua_State *L, int table, const char *field)
{
    lua_pushnil(L);
    lua_setfield(L, table, field);
}

static int trace_started(lua_State *L)
{
    tg_watchdog_trace(luaL_optstring(L, 1, "?"), (int)luaL_optinteger(L, 2, 0));
    return 0;
}

/* The JIT's trace events (jit.attach, called only when a trace is started,
 * never while compiled code runs): where each trace starts goes to the
 * watchdog's slot, so a stalled worker's log line names the loop. */
static void watch_traces(lua_State *L)
{
    static const char src[] =
        "local jit, util, rec = ...\n"
        "jit.attach(function(what, tr, func, pc)\n"
        "  if what ~= 'start' then return end\n"
        "  local i = util.funcinfo(func, pc)\n"
        "  rec(i.source, i.currentline)\n"
        "end, 'trace')\n";
    if (luaL_loadbuffer(L, src, sizeof(src) - 1, "=watchdog") != 0) {
        lua_pop(L, 1);
        return;
    }
    lua_getglobal(L, "jit");
    lua_getglobal(L, "require");
    lua_pushliteral(L, "jit.util");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        tg_log(TG_LOG_WARN, "lua: jit.util: %s", lua_tostring(L, -1));
        lua_pop(L, 3);
        return;
    }
    lua_pushcfunction(L, trace_started);
    if (lua_pcall(L, 3, 0, 0) != 0) {
        tg_log(TG_LOG_WARN, "lua: watching JIT traces: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

/* The standard library a script sees: base (without dofile, loadfile, load,
 * loadstring, collectgarbage, gcinfo, getfenv, setfenv), string (without
 * dump), table, math, bit, coroutine, os.time/clock/date/difftime, and
 * require limited to Lua files on lua_package_path. No io, debug, ffi, jit. */
static void sandbox(lua_State *L, tg_lua_main_t *m)
{
    open_lib(L, "", luaopen_base);
    open_lib(L, LUA_LOADLIBNAME, luaopen_package);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_BITLIBNAME, luaopen_bit);
    open_lib(L, LUA_OSLIBNAME, luaopen_os);
    open_lib(L, LUA_JITLIBNAME, luaopen_jit);
    /* compiled traces skip the count hook: with the JIT off the instruction
     * limit is exact; with it on the watchdog stops endless loops, and
     * learns where they are from the traces started during a hook */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | (m->jit ? LUAJIT_MODE_ON : LUAJIT_MODE_OFF));
    if (m->jit)
        watch_traces(L);

    lua_pushvalue(L, LUA_GLOBALSINDEX);
    int g = lua_gettop(L);
    static const char *const drop[] = {"dofile", "loadfile", "load", "loadstring",
                                       "collectgarbage", "gcinfo", "getfenv", "setfenv",
                                       "jit", "module", NULL};
    for (int i = 0; drop[i]; i++)
        set_nil(L, g, drop[i]);
    lua_getfield(L, g, "string");
    set_nil(L, lua_gettop(L), "dump");
    lua_pop(L, 1);

    /* os: only the clock functions */
    lua_getfield(L, g, "os");
    int os = lua_gettop(L);
    lua_createtable(L, 0, 4);
    static const char *const keep[] = {"time", "clock", "date", "difftime", NULL};
    for (int i = 0; keep[i]; i++) {
        lua_getfield(L, os, keep[i]);
        lua_setfield(L, -2, keep[i]);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, g, "os");
    lua_getfield(L, g, "package");
    int pkg = lua_gettop(L);
    lua_getfield(L, pkg, "loaded");
    int loaded = lua_gettop(L);
    lua_pushvalue(L, os + 1);
    lua_setfield(L, loaded, "os");
    set_nil(L, loaded, "jit");
    set_nil(L, loaded, "io");
    set_nil(L, loaded, "debug");
    set_nil(L, loaded, "ffi");
    set_nil(L, loaded, "_G");
    /* require: preload and Lua files only */
    set_nil(L, pkg, "loadlib");
    set_nil(L, pkg, "seeall");
    lua_pushliteral(L, "");
    lua_setfield(L, pkg, "cpath");
    lua_pushlstring(L, m->package_path.len ? m->package_path.p : "", m->package_path.len);
    lua_setfield(L, pkg, "path");
    lua_getfield(L, pkg, "loaders");
    lua_pushnil(L);
    lua_rawseti(L, -2, 4);
    lua_pushnil(L);
    lua_rawseti(L, -2, 3);
    lua_pop(L, 1);

    /* the tg table: global and require "tollgate" */
    lua_newtable(L);
    tg_lua_api_open(L, m);
    lua_pushvalue(L, -1);
    lua_setfield(L, loaded, "tollgate");
    lua_getfield(L, -1, "json"); /* the pure-Lua library it replaced */
    lua_setfield(L, loaded, "tollgate.json");
    lua_setfield(L, g, "tg");
    lua_settop(L, 0);
}

int tg_lua_vm_init(tg_lua_main_t *m)
{
    memset(&vm, 0, sizeof(vm));
    vm.limit = m->memory_limit > 0 ? (size_t)m->memory_limit : 0;
    vm.L = lua_newstate(vm_alloc, NULL);
    if (vm.L == NULL) {
        tg_log(TG_LOG_ERROR, "lua: cannot create the state");
        return -1;
    }
    lua_State *L = vm.L;
    sandbox(L, m);
    lua_getglobal(L, "tg");
    lua_newtable(L);
    if (tg_lua_timer_open(L, m->max_timers) != 0)
        return -1;
    lua_setfield(L, -2, "timer");
    lua_newtable(L); /* tg.arg: the body filter's input and output */
    lua_pushvalue(L, -1);
    vm.arg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushliteral(L, "arg");
    lua_insert(L, -2);
    lua_rawset(L, -3); /* past tg's __newindex, which keeps scripts from replacing it */
    lua_pop(L, 1);
    vm.nchunks = m->nscripts;
    vm.chunks = calloc((size_t)(m->nscripts ? m->nscripts : 1), sizeof(int));
    if (vm.chunks == NULL)
        return -1;
    for (tg_lua_script_t *s = m->scripts; s; s = s->next) {
        char name[4096];
        snprintf(name, sizeof(name), "@%s", s->path);
        if (luaL_loadbuffer(L, s->src, s->len, name) != 0) {
            tg_log(TG_LOG_ERROR, "lua: %s", lua_tostring(L, -1));
            lua_settop(L, 0);
            return -1;
        }
        /* globals of a script are its own: written to its environment, read
         * through to the shared sandbox */
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, LUA_GLOBALSINDEX);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_setfenv(L, -2);
        vm.chunks[s->id] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    vm.limit_no_request = m->jit ? 0 : m->instruction_limit;
    vm.max_bg = m->max_timers;
    vm.jit = m->jit;
    vm.http_body_max = m->http_body_max;
    lua_gc(L, LUA_GCCOLLECT, 0);
    /* an error here is logged and the worker serves on, as after a failed
     * request script */
    if (m->init_worker)
        (void)tg_lua_vm_call(vm.chunks[m->init_worker->id], TG_LUA_INIT_WORKER);
    return 0;
}

static void bg_free(tg_lua_bg_t *bg);

void tg_lua_vm_exit(void)
{
    tg_lua_timer_exit();
    while (vm.parked) {
        tg_lua_bg_t *bg = vm.parked;
        if (bg->wait && !bg->wait->done) bg->wait->cancel(bg->wait->data);
        bg_free(bg); /* its coroutine goes with the state */
    }
    tg_lua_http_exit(); /* after the calls that use its pools are cancelled */
    if (vm.L)
        lua_close(vm.L);
    free(vm.chunks);
    memset(&vm, 0, sizeof(vm));
}

/* ---- per request ---- */

/* A coroutine for a run: a finished one from the pool (a thread whose chunk
 * returned normally is reset and started again: no allocation, no registry
 * reference, no garbage), else a new one. */
static int co_acquire(tg_lua_req_t *ctx)
{
    if (vm.npool) {
        vm.npool--;
        ctx->co = vm.pool[vm.npool].co;
        ctx->co_ref = vm.pool[vm.npool].ref;
        return 0;
    }
    ctx->co = lua_newthread(vm.L);
    ctx->co_ref = luaL_ref(vm.L, LUA_REGISTRYINDEX);
    return ctx->co_ref == LUA_REFNIL ? -1 : 0;
}

/* Done with the request's coroutine. `finished`: its chunk returned (the
 * thread can start another); otherwise (an error, tg.exit, a request that
 * ended while it slept) it is dropped for the collector. */
static void release_co(tg_lua_req_t *ctx, int finished)
{
    if (ev_is_active(&ctx->timer) && tg_worker)
        ev_timer_stop(tg_worker->loop, &ctx->timer);
    if (ctx->wait) {
        if (!ctx->wait->done)
            ctx->wait->cancel(ctx->wait->data);
        ctx->wait = NULL;
    }
    if (ctx->co_ref != LUA_NOREF && vm.L) {
        if (finished && vm.npool < LUA_CO_POOL) {
            lua_settop(ctx->co, 0);
            vm.pool[vm.npool].co = ctx->co;
            vm.pool[vm.npool].ref = ctx->co_ref;
            vm.npool++;
        } else {
            luaL_unref(vm.L, LUA_REGISTRYINDEX, ctx->co_ref);
        }
        ctx->co_ref = LUA_NOREF;
    }
    ctx->co = NULL;
    ctx->sleeping = 0;
    ctx->body_wait = 0;
}

/* arena cleanup: the request is over, whatever state its script is in */
static void req_cleanup(void *data)
{
    tg_lua_req_t *ctx = data;
    release_co(ctx, 0); /* stops a pending tg.sleep timer too */
    if (ctx->ctx_ref != LUA_NOREF && vm.L)
        luaL_unref(vm.L, LUA_REGISTRYINDEX, ctx->ctx_ref);
    ctx->ctx_ref = LUA_NOREF;
    if (ctx->out_ref != LUA_NOREF && vm.L)
        luaL_unref(vm.L, LUA_REGISTRYINDEX, ctx->out_ref);
    ctx->out_ref = LUA_NOREF;
}

/* Registered only when something outlives a run (a parked coroutine, the
 * tg.ctx table): most requests need no cleanup. Returns 0 or -1. */
static int need_cleanup(tg_lua_req_t *ctx)
{
    if (ctx->cleanup)
        return 0;
    if (tg_arena_on_reset(ctx->r->arena, req_cleanup, ctx) != 0)
        return -1;
    ctx->cleanup = 1;
    return 0;
}

static void on_wake(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    tg_lua_req_t *ctx = t->data;
    tg_request_resume(ctx->r);
}

static tg_lua_req_t *req_ctx(tg_request_t *r, void **slot)
{
    tg_lua_req_t *ctx = *slot;
    if (ctx)
        return ctx;
    ctx = tg_arena_alloc(r->arena, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->r = r;
    ctx->co_ref = ctx->ctx_ref = ctx->out_ref = LUA_NOREF;
    ev_timer_init(&ctx->timer, on_wake, 0, 0);
    ctx->timer.data = ctx;
    *slot = ctx;
    return ctx;
}

/* The error `co` stopped with ("file:line: message") and its traceback,
 * pushed on the main state; for the error log. */
static void push_error_text(lua_State *co, int rc)
{
    const char *msg = lua_tostring(co, -1);
    if (msg == NULL)
        msg = rc == LUA_ERRMEM ? "not enough memory" : "(error object is not a string)";
    if (rc == LUA_ERRMEM)
        msg = lua_pushfstring(co, "%s (lua_memory_limit %d bytes)", msg, (int)vm.limit);
    luaL_traceback(vm.L, co, msg, 0);
}

/* The error and its traceback on one log line, flattened in the request's
 * arena */
static void log_error(lua_State *co, int rc, tg_request_t *r, tg_lua_phase_t phase)
{
    lua_State *L = vm.L;
    push_error_text(co, rc);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    char *line = tg_arena_alloc_nz(r->arena, n + 1);
    if (line) {
        for (size_t i = 0; i < n; i++)
            line[i] = s[i] == '\n' ? ' ' : s[i] == '\t' ? ' ' : s[i];
        line[n] = '\0';
    }
    tg_log(TG_LOG_ERROR, "lua %s: %s, request #%u \"%.*s %.*s\"", tg_lua_phase_names[phase],
           line ? line : s, r->id, TG_STR_FMT(r->method_name), TG_STR_FMT(r->uri));
    lua_pop(L, 1);
}

/* tg.req.body's results on the coroutine's stack: the body, or nil and
 * "body too large". Returns how many. */
static int push_body(lua_State *co, tg_lua_req_t *ctx)
{
    if (ctx->body.p) {
        lua_pushlstring(co, ctx->body.p, ctx->body.len);
        return 1;
    }
    lua_pushnil(co);
    lua_pushliteral(co, "body too large");
    return 2;
}

/* The coroutine waits in tg.req.body: read on. Returns how many results
 * are pushed for the resumption, or -1 when still waiting (TG_AGAIN), or -2
 * when the request ended meanwhile (ctx is gone with it). */
static int body_step(tg_lua_req_t *ctx, int64_t body_max)
{
    int rc = tg_request_body_read(ctx->r, body_max, &ctx->body);
    if (rc == 0)
        return -1;
    if (rc < 0)
        return -2;
    ctx->body_wait = 0;
    ctx->body_read = 1;
    return push_body(ctx->co, ctx);
}

tg_rc_t tg_lua_vm_run(tg_request_t *r, void **slot, tg_lua_script_t *s, tg_lua_phase_t phase,
                      int64_t instruction_limit, int64_t body_max)
{
    lua_State *L = vm.L;
    tg_lua_req_t *ctx = req_ctx(r, slot);
    if (L == NULL || ctx == NULL)
        return TG_ERROR;
    int nargs = 0;
    if (ctx->co && !(ctx->co_phase == phase && (ctx->sleeping || ctx->body_wait || ctx->wait)))
        release_co(ctx, 0); /* left over from a phase that did not finish */
    if (ctx->co == NULL) {
        if (co_acquire(ctx) != 0)
            return TG_ERROR;
        ctx->co_phase = phase;
        lua_rawgeti(ctx->co, LUA_REGISTRYINDEX, vm.chunks[s->id]);
    } else if (ctx->wait) {
        if (!ctx->wait->done)
            return TG_AGAIN;
        nargs = ctx->wait->push(ctx->co, ctx->wait->data);
        ctx->wait = NULL;
    } else if (ctx->body_wait) {
        /* resumed by body bytes: read on before waking the script */
        if ((nargs = body_step(ctx, body_max)) == -1)
            return TG_AGAIN;
        if (nargs == -2)
            return TG_AGAIN; /* the request is over */
    }
    lua_State *co = ctx->co;
    int rc;

    for (;;) {
        ctx->sleeping = 0;
        ctx->exited = 0;
        vm.r = r;
        vm.ctx = ctx;
        vm.phase = phase;
        vm.over_budget = 0;
        if (vm.jit)
            instruction_limit = 0; /* the watchdog's job: see lua_jit in docs/lua.md */
        vm.budget = instruction_limit;
        /* the count hook stays installed between runs: setting it again with
         * the same mask only restarts the count, while installing and
         * removing it would rewrite the interpreter's dispatch table twice */
        if (instruction_limit > 0)
            lua_sethook(L, count_hook, LUA_MASKCOUNT,
                        instruction_limit > INT_MAX ? INT_MAX : (int)instruction_limit);
        else if (lua_gethookmask(L))
            lua_sethook(L, NULL, 0, 0);
        vm.in_script = 1;
        tg_watchdog_hook(s->path, tg_lua_phase_names[phase]);
        rc = lua_resume(co, nargs);
        tg_watchdog_hook(NULL, NULL);
        vm.in_script = 0;
        vm.r = NULL;
        vm.ctx = NULL;
        if (vm.detached) { /* asked for by a call that failed before starting */
            bg_free(vm.detached);
            vm.detached = NULL;
        }
        if (rc == LUA_YIELD && !vm.over_budget && ctx->wait) {
            /* started outside the script; it may be over at once */
            tg_lua_wait_t *w = ctx->wait;
            if (need_cleanup(ctx) != 0)
                break;
            w->starting = 1;
            w->start(w->data);
            w->starting = 0;
            if (!w->done)
                return TG_AGAIN;
            nargs = w->push(co, w->data);
            ctx->wait = NULL;
            continue;
        }
        if (rc != LUA_YIELD || vm.over_budget || !ctx->body_wait)
            break;
        /* tg.req.body: read what is there; wait for more, or resume now */
        if ((nargs = body_step(ctx, body_max)) == -1) {
            if (need_cleanup(ctx) != 0)
                break;
            return TG_AGAIN;
        }
        if (nargs == -2)
            return TG_AGAIN; /* the request is over */
    }

    if (vm.over_budget) {
        lua_settop(co, 0);
        lua_pushfstring(co, "instruction limit exceeded (%d)", (int)vm.budget);
        rc = LUA_ERRRUN;
    } else if (rc == LUA_YIELD) {
        if (ctx->exited) {
            release_co(ctx, 0);
            return TG_DONE;
        }
        if (ctx->sleeping && need_cleanup(ctx) == 0)
            return TG_AGAIN;
        if (ctx->sleeping || ctx->body_wait || ctx->wait)
            lua_pushliteral(co, "out of memory");
        else
            lua_pushliteral(co, "attempt to yield from the script's main chunk");
        rc = LUA_ERRRUN;
    }
    if (rc == 0) {
        release_co(ctx, 1);
        return TG_OK;
    }
    tg_stats_count(TG_STATS_LUA_ERRORS, 1);
    if (vm.over_budget)
        tg_stats_count(TG_STATS_LUA_LIMIT, 1);
    log_error(co, rc, r, phase);
    release_co(ctx, 0);
    if (rc == LUA_ERRMEM)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return TG_ERROR;
}

/* ---- the body filter ---- */

/* tg.arg.chunk: the round's bytes as one string (a single buffer without a
 * copy into a Lua buffer first) */
static void push_chunk(lua_State *L, tg_chain_t *in)
{
    tg_chain_t *one = NULL;
    int n = 0;
    for (tg_chain_t *cl = in; cl; cl = cl->next)
        if (tg_buf_len(cl->buf)) {
            one = cl;
            n++;
        }
    if (n <= 1) {
        lua_pushlstring(L, one ? one->buf->pos : "", one ? tg_buf_len(one->buf) : 0);
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (tg_chain_t *cl = in; cl; cl = cl->next)
        luaL_addlstring(&b, cl->buf->pos, tg_buf_len(cl->buf));
    luaL_pushresult(&b);
}

tg_rc_t tg_lua_vm_body_filter(tg_request_t *r, void **slot, tg_lua_script_t *s,
                              int64_t instruction_limit, tg_chain_t **io)
{
    lua_State *L = vm.L;
    tg_lua_req_t *ctx = req_ctx(r, slot);
    if (L == NULL || ctx == NULL || need_cleanup(ctx) != 0)
        return TG_ERROR;
    int last = 0;
    for (tg_chain_t *cl = *io; cl; cl = cl->next)
        if (cl->buf->flags & TG_BUF_F_LAST)
            last = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm.arg_ref);
    push_chunk(L, *io);
    lua_setfield(L, -2, "chunk");
    lua_pushboolean(L, last);
    lua_setfield(L, -2, "eof");
    lua_pop(L, 1);

    tg_rc_t rc = tg_lua_vm_run(r, slot, s, TG_LUA_BODY_FILTER, instruction_limit, 0);

    lua_rawgeti(L, LUA_REGISTRYINDEX, vm.arg_ref);
    lua_getfield(L, -1, "chunk");
    lua_pushnil(L); /* the input is garbage once the round is over */
    lua_setfield(L, -3, "chunk");
    lua_remove(L, -2);
    /* the previous round's output is written by now */
    if (ctx->out_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, ctx->out_ref);
    ctx->out_ref = LUA_NOREF;
    int t = lua_type(L, -1);
    if (rc == TG_OK && t != LUA_TSTRING && t != LUA_TNIL) {
        tg_stats_count(TG_STATS_LUA_ERRORS, 1);
        tg_log(TG_LOG_ERROR, "lua body_filter: %s: tg.arg.chunk is a %s, expected a string or "
                             "nil, request #%u \"%.*s %.*s\"",
               s->path, lua_typename(L, t), r->id, TG_STR_FMT(r->method_name), TG_STR_FMT(r->uri));
        rc = TG_ERROR;
    }
    if (rc != TG_OK) {
        lua_pop(L, 1);
        return TG_ERROR;
    }
    size_t n = 0;
    char *p = t == LUA_TSTRING ? (char *)lua_tolstring(L, -1, &n) : NULL;
    if (n) /* Lua strings do not move: the buffer points into it while anchored */
        ctx->out_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        lua_pop(L, 1);
    if (n == 0 && !last) {
        *io = NULL;
        return TG_OK;
    }
    ctx->out = (tg_buf_t){p, p + n, p, p + n, last ? TG_BUF_F_LAST : 0, NULL};
    ctx->out_link = (tg_chain_t){&ctx->out, NULL};
    *io = &ctx->out_link;
    return TG_OK;
}

/* ---- runs without a request ---- */

/* The whole message and traceback on one line, for the error log. */
static void log_error_no_request(lua_State *co, int rc, tg_lua_phase_t phase)
{
    lua_State *L = vm.L;
    push_error_text(co, rc);
    luaL_gsub(L, lua_tostring(L, -1), "\n", " ");
    luaL_gsub(L, lua_tostring(L, -1), "\t", " ");
    tg_log(TG_LOG_ERROR, "lua %s: %s", tg_lua_phase_names[phase], lua_tostring(L, -1));
    lua_pop(L, 3);
}

/* ---- waits of runs without a request ---- */

static tg_lua_bg_t *bg_new(void)
{
    if (vm.nbg >= vm.max_bg) return NULL;
    tg_lua_bg_t *bg = calloc(1, sizeof(*bg));
    if (bg == NULL) return NULL;
    tg_arena_init(&bg->arena, 0);
    bg->co_ref = LUA_NOREF;
    vm.nbg++;
    return bg;
}

static void bg_park(tg_lua_bg_t *bg)
{
    bg->prev = NULL;
    bg->next = vm.parked;
    if (vm.parked) vm.parked->prev = bg;
    vm.parked = bg;
}

static void bg_unpark(tg_lua_bg_t *bg)
{
    if (bg->prev)
        bg->prev->next = bg->next;
    else if (vm.parked == bg)
        vm.parked = bg->next;
    if (bg->next) bg->next->prev = bg->prev;
    bg->prev = bg->next = NULL;
}

/* Frees the wait state (not the coroutine: its owner drops it). */
static void bg_free(tg_lua_bg_t *bg)
{
    bg_unpark(bg);
    tg_arena_destroy(&bg->arena);
    free(bg);
    vm.nbg--;
}

/* Run (or resume with nargs results) the coroutine of a run without a
 * request until it ends or waits. bg: its wait state when resumed after a
 * wait, else NULL. Returns 0 (done or parked) or -1 (an error, logged). */
static int bg_run(lua_State *co, int co_ref, tg_lua_bg_t *bg, tg_lua_phase_t phase, int nargs)
{
    lua_State *L = vm.L;
    int rc;
    for (;;) {
        vm.r = NULL;
        vm.ctx = NULL;
        vm.phase = phase;
        vm.bg_co = co;
        vm.bg = bg;
        vm.over_budget = 0;
        vm.budget = vm.limit_no_request;
        if (vm.budget > 0)
            lua_sethook(L, count_hook, LUA_MASKCOUNT,
                        vm.budget > INT_MAX ? INT_MAX : (int)vm.budget);
        else if (lua_gethookmask(L))
            lua_sethook(L, NULL, 0, 0);
        vm.in_script = 1;
        tg_watchdog_hook(phase == TG_LUA_TIMER         ? "a tg.timer callback"
                         : phase == TG_LUA_INIT_WORKER ? "lua_init_worker"
                                                       : "a call waited on after its request",
                         tg_lua_phase_names[phase]);
        rc = lua_resume(co, nargs);
        tg_watchdog_hook(NULL, NULL);
        vm.in_script = 0;
        bg = vm.bg;
        vm.bg = NULL;
        vm.bg_co = NULL;
        if (rc != LUA_YIELD || vm.over_budget || bg == NULL || bg->wait == NULL) break;
        /* waiting: started outside the script; it may be over at once */
        tg_lua_wait_t *w = bg->wait;
        bg->co = co;
        bg->co_ref = co_ref;
        bg->phase = phase;
        w->starting = 1;
        w->start(w->data);
        w->starting = 0;
        if (!w->done) {
            bg_park(bg);
            return 0;
        }
        nargs = w->push(co, w->data);
        bg->wait = NULL;
    }
    if (bg) bg_free(bg);
    if (vm.over_budget) {
        lua_settop(co, 0);
        lua_pushfstring(co, "instruction limit exceeded (%d)", (int)vm.budget);
        rc = LUA_ERRRUN;
    } else if (rc == LUA_YIELD) {
        lua_settop(co, 0);
        lua_pushfstring(co, "attempt to yield in phase \"%s\"", tg_lua_phase_names[phase]);
        rc = LUA_ERRRUN;
    }
    if (rc == 0 && vm.npool < LUA_CO_POOL) {
        lua_settop(co, 0);
        vm.pool[vm.npool].co = co;
        vm.pool[vm.npool].ref = co_ref;
        vm.npool++;
        return 0;
    }
    if (rc != 0) {
        tg_stats_count(TG_STATS_LUA_ERRORS, 1);
        if (vm.over_budget)
            tg_stats_count(TG_STATS_LUA_LIMIT, 1);
        log_error_no_request(co, rc, phase);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, co_ref);
    if (rc == LUA_ERRMEM)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return rc == 0 ? 0 : -1;
}

int tg_lua_vm_call(int ref, tg_lua_phase_t phase)
{
    lua_State *L = vm.L, *co;
    int co_ref;
    if (vm.npool) {
        vm.npool--;
        co = vm.pool[vm.npool].co;
        co_ref = vm.pool[vm.npool].ref;
    } else {
        co = lua_newthread(L);
        if ((co_ref = luaL_ref(L, LUA_REGISTRYINDEX)) == LUA_REFNIL) return -1;
    }
    lua_rawgeti(co, LUA_REGISTRYINDEX, ref);
    int nargs = 0;
    if (lua_istable(co, 1)) {
        lua_getfield(co, 1, "n");
        nargs = (int)lua_tointeger(co, -1);
        lua_pop(co, 1);
        for (int i = 1; i <= nargs + 1; i++)
            lua_rawgeti(co, 1, i);
        lua_remove(co, 1);
    }
    return bg_run(co, co_ref, NULL, phase, nargs);
}

/* ---- for the API ---- */

tg_lua_req_t *tg_lua_vm_ctx(lua_State *L, const char *fn, unsigned phases)
{
    if (vm.ctx == NULL)
        luaL_error(L, "%s: no request in phase \"%s\"", fn, tg_lua_phase_names[vm.phase]);
    if (!(phases & TG_LUA_F(vm.phase)))
        luaL_error(L, "%s: not allowed in phase \"%s\"", fn, tg_lua_phase_names[vm.phase]);
    return vm.ctx;
}

tg_request_t *tg_lua_vm_request(lua_State *L, const char *fn, unsigned phases)
{
    return tg_lua_vm_ctx(L, fn, phases)->r;
}

tg_lua_phase_t tg_lua_vm_phase(void)
{
    return vm.phase;
}

int tg_lua_vm_sleep(lua_State *L, double seconds)
{
    tg_lua_req_t *ctx = tg_lua_vm_ctx(L, "tg.sleep", TG_LUA_F_REQUEST);
    if (L != ctx->co)
        return luaL_error(L, "tg.sleep: not allowed inside a coroutine of the script");
    ev_timer_set(&ctx->timer, seconds < 0 ? 0 : seconds, 0);
    ev_timer_start(tg_worker->loop, &ctx->timer);
    ctx->sleeping = 1;
    return lua_yield(L, 0);
}

int tg_lua_vm_in_chunk(lua_State *L)
{
    return vm.ctx && L == vm.ctx->co;
}

int tg_lua_vm_exit_request(lua_State *L)
{
    vm.ctx->exited = 1;
    return lua_yield(L, 0);
}

int tg_lua_vm_body(lua_State *L)
{
    tg_lua_req_t *ctx = tg_lua_vm_ctx(L, "tg.req.body", TG_LUA_F_REQUEST);
    if (ctx->body_read)
        return push_body(L, ctx);
    if (L != ctx->co)
        return luaL_error(L, "tg.req.body: not allowed inside a coroutine of the script before "
                             "the chunk read the body");
    ctx->body_wait = 1; /* the runner reads, outside the script, and resumes it */
    return lua_yield(L, 0);
}

tg_arena_t *tg_lua_vm_wait_arena(lua_State *L, const char *fn)
{
    if (vm.ctx && (TG_LUA_F(vm.phase) & TG_LUA_F_REQUEST)) {
        if (L != vm.ctx->co) luaL_error(L, "%s: not allowed inside a coroutine of the script", fn);
        return vm.ctx->r->arena;
    }
    tg_lua_bg_t **slot;
    if (vm.ctx && vm.phase == TG_LUA_LOG) {
        slot = &vm.detached;
    } else if (vm.ctx == NULL && (vm.phase == TG_LUA_TIMER || vm.phase == TG_LUA_INIT_WORKER)) {
        if (L != vm.bg_co) luaL_error(L, "%s: not allowed inside a coroutine of the script", fn);
        slot = &vm.bg;
    } else {
        luaL_error(L, "%s: not allowed in phase \"%s\"", fn, tg_lua_phase_names[vm.phase]);
        return NULL;
    }
    if (*slot) { /* left by a call that failed after asking (a pcall caught it) */
        tg_arena_reset(&(*slot)->arena);
        return &(*slot)->arena;
    }
    *slot = bg_new();
    return *slot ? &(*slot)->arena : NULL;
}

int tg_lua_vm_wait(lua_State *L, tg_lua_wait_t *w, const char *fn)
{
    w->r = NULL;
    w->bg = NULL;
    if (vm.ctx && (TG_LUA_F(vm.phase) & TG_LUA_F_REQUEST)) {
        w->r = vm.ctx->r;
        vm.ctx->wait = w; /* the runner starts it once the script has yielded */
        return lua_yield(L, 0);
    }
    if (vm.ctx && vm.phase == TG_LUA_LOG && vm.detached) {
        /* fire and forget: the call runs on its own after the request */
        tg_lua_bg_t *bg = vm.detached;
        vm.detached = NULL;
        bg->wait = w;
        w->bg = bg;
        bg_park(bg);
        w->starting = 1;
        w->start(w->data);
        w->starting = 0;
        if (w->done) bg_free(bg);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (vm.ctx == NULL && vm.bg && L == vm.bg_co) {
        vm.bg->wait = w; /* bg_run starts it once the script has yielded */
        w->bg = vm.bg;
        return lua_yield(L, 0);
    }
    return luaL_error(L, "%s: no wait arena", fn);
}

void tg_lua_vm_wake(tg_lua_wait_t *w)
{
    w->done = 1;
    if (w->starting) return;
    if (w->r) {
        tg_request_resume(w->r);
        return;
    }
    tg_lua_bg_t *bg = w->bg;
    if (bg->co == NULL) { /* detached: nobody waits for the result */
        bg_free(bg);
        return;
    }
    bg_unpark(bg);
    int nargs = w->push(bg->co, w->data);
    bg->wait = NULL;
    (void)bg_run(bg->co, bg->co_ref, bg, bg->phase, nargs);
}

int64_t tg_lua_vm_http_body_max(void)
{
    return vm.http_body_max;
}

int tg_lua_vm_push_ctx_table(lua_State *L, tg_lua_req_t *ctx)
{
    if (ctx->ctx_ref == LUA_NOREF) {
        if (need_cleanup(ctx) != 0)
            return luaL_error(L, "tg.ctx: out of memory");
        lua_newtable(L);
        lua_pushvalue(L, -1);
        ctx->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->ctx_ref);
    return 1;
}
