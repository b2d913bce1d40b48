/* tg.redis: Redis commands from scripts, without blocking the worker
 * (docs/lua.md).
 *
 *   local red, err = tg.redis.connect("sessions" or "redis://...", { timeout = 0.5 })
 *   local v, err = red:get("k")          -- set incr expire del hget hset eval
 *   local v, err = red:call("ZADD", "z", 1, "m")
 *   local results, err = red:pipeline(function(p) p:incr("a") p:get("b") end)
 *
 * A connection object names a backend of the config (src/redis.c): a
 * `lua_redis NAME URL` name, a URL written literally in a script (made at
 * config time, so a worker never resolves a host), or a backend the
 * rate-limit zones declared (by its URL or "host:port/db"). Commands go
 * over that backend's per-worker pool of hiredis async connections on the
 * worker's loop; the script's coroutine waits (tg_lua_vm_wait) in request
 * phases, timers and lua_init_worker, and in the log phase the call is
 * sent and forgotten. A pipeline's commands are sent together on one
 * connection. Replies are copied into the wait's arena when they come and
 * made Lua values when the script resumes: strings and status replies as
 * strings, integers as numbers, arrays as tables, a nil reply as tg.null;
 * an error reply is nil, "ERR ..." (in a pipeline: {false, "ERR ..."}).
 * A call that cannot be sent, times out or loses its connection returns
 * nil and the reason. */
#include <string.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "core.h"
#include "redis.h"
#include "worker.h"

#define CONN_MT "tg.redis"
#define RECORDER_MT "tg.redis.pipeline"
#define DEFAULT_TIMEOUT 1.0 /* seconds */
#define MAX_ARGS 1024       /* arguments of one command */
#define MAX_PIPELINE 1024   /* commands of one pipeline */

typedef struct {
    tg_redis_t *redis;
    tg_msec_t timeout;
} conn_t;

/* A reply copied out of hiredis (valid only during its callback). */
typedef struct reply_s {
    int type; /* REDIS_REPLY_* */
    long long integer;
    char *str;
    size_t len;
    size_t n;
    struct reply_s *el;
} reply_t;

typedef struct call_s call_t;

typedef struct {
    call_t *c;
    int argc;
    const char **argv;
    size_t *argvlen;
    tg_redis_cmd_t *cmd; /* in flight, else NULL */
    reply_t *reply;      /* once answered */
} item_t;

struct call_s {
    tg_lua_wait_t wait;
    tg_arena_t *arena;
    conn_t conn;
    item_t *items;
    int n, pending;
    int pipeline; /* results as one array */
    const char *err;
};

static tg_lua_main_t *lmain;

/* ---- replies ---- */

static int copy_reply(tg_arena_t *a, reply_t *to, const redisReply *from)
{
    to->type = from->type;
    to->integer = from->integer;
    to->len = from->len;
    to->n = 0;
    if (from->type == REDIS_REPLY_STRING || from->type == REDIS_REPLY_STATUS ||
        from->type == REDIS_REPLY_ERROR) {
        if ((to->str = tg_arena_alloc_nz(a, from->len + 1)) == NULL) return -1;
        memcpy(to->str, from->str, from->len);
        to->str[from->len] = '\0';
    }
    if (from->type == REDIS_REPLY_ARRAY && from->elements) {
        if ((to->el = tg_arena_alloc(a, from->elements * sizeof(*to->el))) == NULL) return -1;
        to->n = from->elements;
        for (size_t i = 0; i < from->elements; i++)
            if (copy_reply(a, &to->el[i], from->element[i]) != 0) return -1;
    }
    return 0;
}

static void push_null(lua_State *L)
{
    lua_pushlightuserdata(L, NULL); /* tg.null, the same value as tg.json.null */
}

/* A reply as a Lua value; error replies inside arrays as {false, msg}. */
static void push_reply(lua_State *L, const reply_t *r)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, r->str, r->len);
        return;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)r->integer);
        return;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->n, 0);
        for (size_t i = 0; i < r->n; i++) {
            push_reply(L, &r->el[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        return;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 2, 0);
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_rawseti(L, -2, 2);
        return;
    default:
        push_null(L);
        return;
    }
}

static int push_result(lua_State *co, void *data)
{
    call_t *c = data;
    if (c->err) {
        lua_pushnil(co);
        lua_pushstring(co, c->err);
        return 2;
    }
    if (!c->pipeline) {
        const reply_t *r = c->items[0].reply;
        if (r->type == REDIS_REPLY_ERROR) {
            lua_pushnil(co);
            lua_pushlstring(co, r->str, r->len);
            return 2;
        }
        push_reply(co, r);
        return 1;
    }
    lua_createtable(co, c->n, 0);
    for (int i = 0; i < c->n; i++) {
        push_reply(co, c->items[i].reply);
        lua_rawseti(co, -2, i + 1);
    }
    return 1;
}

/* ---- the call ---- */

static void on_reply(void *data, redisReply *reply, const char *err)
{
    item_t *it = data;
    call_t *c = it->c;
    it->cmd = NULL;
    if (reply && c->err == NULL) {
        if ((it->reply = tg_arena_alloc(c->arena, sizeof(*it->reply))) == NULL ||
            copy_reply(c->arena, it->reply, reply) != 0)
            c->err = "out of memory";
    } else if (c->err == NULL) {
        c->err = err ? err : "no reply";
    }
    if (--c->pending == 0) tg_lua_vm_wake(&c->wait); /* the last thing done with c */
}

/* Sends every command on one connection. A command that cannot be sent
 * fails the call; those already sent are waited for. */
static void start_call(void *data)
{
    call_t *c = data;
    int pin = -1;
    c->pending = 1; /* held while sending, so a reply cannot end the call */
    for (int i = 0; i < c->n && c->err == NULL; i++) {
        item_t *it = &c->items[i];
        const char *err = NULL;
        it->cmd = tg_redis_command(c->conn.redis, &pin, it->argc, it->argv, it->argvlen,
                                   c->conn.timeout, on_reply, it, &err);
        if (it->cmd == NULL)
            c->err = err;
        else
            c->pending++;
    }
    if (--c->pending == 0) tg_lua_vm_wake(&c->wait);
}

static void cancel_call(void *data)
{
    call_t *c = data;
    for (int i = 0; i < c->n; i++)
        if (c->items[i].cmd) {
            tg_redis_cancel(c->items[i].cmd);
            c->items[i].cmd = NULL;
        }
}

/* The arguments at stack slots [first, last] as one command (strings and
 * numbers, copied into the arena); `name` first when not NULL. */
static void collect(lua_State *L, tg_arena_t *a, item_t *it, const char *name, int first, int last,
                    const char *fn)
{
    int argc = (name ? 1 : 0) + (last - first + 1);
    if (argc < 1) luaL_error(L, "%s: no command", fn);
    if (argc > MAX_ARGS) luaL_error(L, "%s: more than %d arguments", fn, MAX_ARGS);
    it->argv = tg_arena_alloc(a, (size_t)argc * sizeof(*it->argv));
    it->argvlen = tg_arena_alloc(a, (size_t)argc * sizeof(*it->argvlen));
    if (it->argv == NULL || it->argvlen == NULL) luaL_error(L, "%s: out of memory", fn);
    int k = 0;
    if (name) {
        it->argv[k] = name;
        it->argvlen[k++] = strlen(name);
    }
    for (int i = first; i <= last; i++, k++) {
        int t = lua_type(L, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "%s: argument %d must be a string or a number, not %s", fn, i - first + 1,
                       lua_typename(L, t));
        size_t n;
        const char *s = lua_tolstring(L, i, &n);
        char *copy = tg_arena_alloc_nz(a, n + 1);
        if (copy == NULL) luaL_error(L, "%s: out of memory", fn);
        memcpy(copy, s, n);
        copy[n] = '\0';
        it->argv[k] = copy;
        it->argvlen[k] = n;
    }
    it->argc = argc;
}

/* Commands that would change the state of a pooled connection for every
 * other user of the pool (the rate-limit zones, other scripts): refused. */
static const char *const refused[] = {"SELECT", "AUTH", "HELLO", "QUIT", "RESET", "SUBSCRIBE",
                                      "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC",
                                      NULL};

static void check_command(lua_State *L, const item_t *it, int in_pipeline, const char *fn)
{
    tg_str_t name = {it->argv[0], it->argvlen[0]};
    for (int i = 0; refused[i]; i++)
        if (tg_str_caseeq_lit(name, refused[i]))
            luaL_error(L, "%s: %s is not allowed on a shared connection", fn, refused[i]);
    if (!in_pipeline && (tg_str_caseeq_lit(name, "MULTI") || tg_str_caseeq_lit(name, "WATCH")))
        luaL_error(L, "%s: %s only inside red:pipeline (with its EXEC)", fn, it->argv[0]);
}

static call_t *call_new(lua_State *L, const conn_t *conn, int n, const char *fn)
{
    tg_arena_t *a = tg_lua_vm_wait_arena(L, fn);
    if (a == NULL) return NULL;
    call_t *c = tg_arena_alloc(a, sizeof(*c));
    item_t *items = c ? tg_arena_alloc(a, (size_t)n * sizeof(*items)) : NULL;
    if (items == NULL) return NULL;
    c->arena = a;
    c->conn = *conn;
    c->items = items;
    c->n = n;
    for (int i = 0; i < n; i++)
        items[i].c = c;
    c->wait.push = push_result;
    c->wait.start = start_call;
    c->wait.cancel = cancel_call;
    c->wait.data = c;
    return c;
}

static int no_call(lua_State *L, const char *fn)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: out of memory or too many waiting calls (lua_max_timers)", fn);
    return 2;
}

/* ---- methods ---- */

static conn_t *check_conn(lua_State *L)
{
    return luaL_checkudata(L, 1, CONN_MT);
}

/* red:get(...) and the other named commands: the name is upvalue 1;
 * red:call(name, ...) has none. */
static int l_command(lua_State *L)
{
    conn_t *conn = check_conn(L);
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    call_t *c = call_new(L, conn, 1, "tg.redis");
    if (c == NULL) return no_call(L, "tg.redis");
    collect(L, c->arena, &c->items[0], name, 2, lua_gettop(L), "tg.redis");
    check_command(L, &c->items[0], 0, "tg.redis");
    return tg_lua_vm_wait(L, &c->wait, "tg.redis");
}

/* p:get(...) inside red:pipeline(fn): appends {name, args...} to p. */
static int l_record(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_objlen(L, 1);
    if (n >= MAX_PIPELINE)
        return luaL_error(L, "tg.redis: more than %d commands in a pipeline", MAX_PIPELINE);
    int top = lua_gettop(L);
    lua_createtable(L, top, 0);
    int k = 1;
    if (!lua_isnil(L, lua_upvalueindex(1))) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_rawseti(L, -2, k++);
    }
    for (int i = 2; i <= top; i++, k++) {
        int t = lua_type(L, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            return luaL_error(L, "tg.redis: argument %d must be a string or a number, not %s",
                              i - 1, lua_typename(L, t));
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, k);
    }
    if (k == 1) return luaL_error(L, "tg.redis: no command");
    lua_rawseti(L, 1, n + 1);
    return 0;
}

static int l_pipeline(lua_State *L)
{
    conn_t *conn = check_conn(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_newtable(L); /* 3: the recorder */
    luaL_getmetatable(L, RECORDER_MT);
    lua_setmetatable(L, 3);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_call(L, 1, 0); /* records; cannot wait */
    int n = (int)lua_objlen(L, 3);
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    call_t *c = call_new(L, conn, n, "tg.redis");
    if (c == NULL) return no_call(L, "tg.redis");
    c->pipeline = 1;
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 3, i + 1);
        int t = lua_gettop(L);
        int argc = (int)lua_objlen(L, t);
        for (int k = 1; k <= argc; k++)
            lua_rawgeti(L, t, k);
        collect(L, c->arena, &c->items[i], NULL, t + 1, t + argc, "tg.redis");
        check_command(L, &c->items[i], 1, "tg.redis");
        lua_settop(L, 3);
    }
    return tg_lua_vm_wait(L, &c->wait, "tg.redis");
}

static int timeout_arg(lua_State *L, int idx, tg_msec_t *out)
{
    double t = luaL_checknumber(L, idx);
    if (!(t > 0 && t <= 3600)) return luaL_error(L, "tg.redis: invalid timeout");
    *out = (tg_msec_t)(t * 1000 + 0.5);
    if (*out == 0) *out = 1;
    return 0;
}

static int l_set_timeout(lua_State *L)
{
    conn_t *conn = check_conn(L);
    timeout_arg(L, 2, &conn->timeout);
    return 0;
}

/* tg.redis.connect(NAME_or_URL [, { timeout = seconds }]) */
static int l_connect(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    tg_str_t name = {s, n};
    tg_redis_t *redis = NULL;
    for (tg_lua_redis_t *k = lmain ? lmain->redis : NULL; k && redis == NULL; k = k->next)
        if (tg_str_eq(k->name, name)) redis = k->redis;
    if (redis == NULL) redis = tg_redis_find(tg_worker->config, name);
    if (redis == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L,
                        "unknown redis \"%s\" (declare it with lua_redis, or write the URL "
                        "literally in tg.redis.connect)",
                        s);
        return 2;
    }
    tg_msec_t timeout = (tg_msec_t)(DEFAULT_TIMEOUT * 1000);
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "timeout");
        if (!lua_isnil(L, -1)) timeout_arg(L, -1, &timeout);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 2)) {
        return luaL_error(L, "tg.redis.connect: options must be a table");
    }
    conn_t *conn = lua_newuserdata(L, sizeof(*conn));
    conn->redis = redis;
    conn->timeout = timeout;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static const char *const commands[] = {"get",  "set",  "incr", "expire", "del",
                                       "hget", "hset", "eval", NULL};

/* methods[name] = fn (with the upper-case command as upvalue) for each
 * command, and `call` without, into the table on top of the stack. */
static void add_commands(lua_State *L, lua_CFunction fn)
{
    for (int i = 0; commands[i]; i++) {
        char up[16];
        size_t k = 0;
        for (; commands[i][k]; k++)
            up[k] = (char)(commands[i][k] - 32);
        lua_pushlstring(L, up, k);
        lua_pushcclosure(L, fn, 1);
        lua_setfield(L, -2, commands[i]);
    }
    lua_pushnil(L);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, "call");
}

void tg_lua_redis_open(lua_State *L, tg_lua_main_t *m)
{
    lmain = m;
    luaL_newmetatable(L, CONN_MT);
    lua_newtable(L);
    add_commands(L, l_command);
    lua_pushcfunction(L, l_pipeline);
    lua_setfield(L, -2, "pipeline");
    lua_pushcfunction(L, l_set_timeout);
    lua_setfield(L, -2, "set_timeout");
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "tg.redis");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    luaL_newmetatable(L, RECORDER_MT);
    lua_newtable(L);
    add_commands(L, l_record);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_connect);
    lua_setfield(L, -2, "connect");
    lua_setfield(L, -2, "redis");
    push_null(L);
    lua_setfield(L, -2, "null");
}
