/* The `tg` table scripts see (docs/lua.md): tg.req, tg.resp, tg.var, tg.ctx,
 * tg.route, tg.exit, tg.redirect, tg.sleep, tg.log, tg.now, tg.shared; tg.re,
 * tg.crypto, tg.json and tg.jwt come from lua_re.c, lua_crypto.c, lua_json.c
 * and lua_jwt.c. Every function that touches the request checks the phase
 * first (tg_lua_vm_request). Strings given to the request are copied into
 * its arena; strings handed to Lua are copied by Lua. Runtime failures
 * return nil, err; caller mistakes raise. */
#include <math.h>
#include <string.h>
#include <ev.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "upstream.h"
#include "request.h"
#include "var.h"
#include "core.h"
#include "worker.h"
#include "shdict.h"
#include "log.h"

#define ANY TG_LUA_F_ANY
#define REQ TG_LUA_F_REQUEST
#define RESP (TG_LUA_F(TG_LUA_HEADER_FILTER) | TG_LUA_F(TG_LUA_BODY_FILTER) | TG_LUA_F(TG_LUA_LOG))

static void push_str(lua_State *L, tg_str_t s)
{
    lua_pushlstring(L, s.p ? s.p : "", s.len);
}

static tg_str_t check_str(lua_State *L, int i)
{
    size_t n;
    const char *p = luaL_checklstring(L, i, &n);
    return (tg_str_t){p, n};
}

/* All values of header `name`, joined with ", " (nil when none). */
static int push_header(lua_State *L, tg_headers_t *hs, tg_str_t name)
{
    /* the usual cases, none or one, without a buffer */
    uint32_t first = 0;
    while (first < hs->n && !tg_str_caseeq(hs->h[first].name, name))
        first++;
    if (first == hs->n) {
        lua_pushnil(L);
        return 1;
    }
    uint32_t next = first + 1;
    while (next < hs->n && !tg_str_caseeq(hs->h[next].name, name))
        next++;
    if (next == hs->n) {
        push_str(L, hs->h[first].value);
        return 1;
    }
    int count = 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (uint32_t i = 0; i < hs->n; i++) {
        if (!tg_str_caseeq(hs->h[i].name, name))
            continue;
        if (count++)
            luaL_addlstring(&b, ", ", 2);
        luaL_addlstring(&b, hs->h[i].value.p ? hs->h[i].value.p : "", hs->h[i].value.len);
    }
    luaL_pushresult(&b);
    if (count == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    return 1;
}

static int push_headers(lua_State *L, tg_headers_t *hs)
{
    lua_createtable(L, 0, (int)hs->n);
    char name[256];
    for (uint32_t i = 0; i < hs->n; i++) {
        tg_header_t *h = &hs->h[i];
        size_t n = h->name.len < sizeof(name) ? h->name.len : sizeof(name);
        for (size_t k = 0; k < n; k++) {
            char c = h->name.p[k];
            name[k] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        lua_pushlstring(L, name, n);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            push_str(L, h->value);
        } else {
            lua_pushliteral(L, ", ");
            push_str(L, h->value);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
    return 1;
}

/* A header name and value from Lua, checked and copied into the arena. */
static void check_header(lua_State *L, tg_request_t *r, const char *fn, int i, tg_str_t *name,
                         tg_str_t *value)
{
    tg_str_t n = check_str(L, i);
    if (!tg_conf_is_token(n))
        luaL_error(L, "%s: invalid header name \"%s\"", fn, n.p);
    *name = tg_arena_str(r->arena, n);
    if (value) {
        size_t len;
        const char *v = luaL_checklstring(L, i + 1, &len);
        for (size_t k = 0; k < len; k++)
            if (v[k] == '\r' || v[k] == '\n' || v[k] == '\0')
                luaL_error(L, "%s: invalid character in the value of \"%s\"", fn, n.p);
        *value = tg_arena_str(r->arena, (tg_str_t){v, len});
        if (value->p == NULL)
            luaL_error(L, "%s: out of memory", fn);
    }
    if (name->p == NULL)
        luaL_error(L, "%s: out of memory", fn);
}

/* ---- tg.req ---- */

static int req_method(lua_State *L)
{
    push_str(L, tg_lua_vm_request(L, "tg.req.method", ANY)->method_name);
    return 1;
}

static int req_path(lua_State *L)
{
    push_str(L, tg_lua_vm_request(L, "tg.req.path", ANY)->path);
    return 1;
}

static int req_query(lua_State *L)
{
    push_str(L, tg_lua_vm_request(L, "tg.req.query", ANY)->args);
    return 1;
}

static int req_set_path(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.req.set_path", REQ);
    tg_str_t p = check_str(L, 1);
    if (p.len == 0 || p.p[0] != '/')
        return luaL_error(L, "tg.req.set_path: the path must start with \"/\"");
    for (size_t k = 0; k < p.len; k++)
        if ((unsigned char)p.p[k] <= ' ' || p.p[k] == 0x7f || p.p[k] == '#')
            return luaL_error(L, "tg.req.set_path: invalid character in \"%s\"", p.p);
    const char *q = memchr(p.p, '?', p.len);
    tg_str_t path = q ? (tg_str_t){p.p, (size_t)(q - p.p)} : p;
    tg_str_t args = q ? (tg_str_t){q + 1, p.len - path.len - 1} : r->args;
    char *uri = args.len ? tg_arena_printf(r->arena, "%.*s?%.*s", TG_STR_FMT(path),
                                           TG_STR_FMT(args))
                         : tg_arena_strdup(r->arena, path);
    if (uri == NULL)
        return luaL_error(L, "tg.req.set_path: out of memory");
    r->uri = tg_str_c(uri);
    r->path = (tg_str_t){uri, path.len};
    r->args = args.len ? (tg_str_t){uri + path.len + 1, args.len} : (tg_str_t){"", 0};
    r->uri_changed = 1;
    r->path_set = 1;
    return 0;
}

static int req_arg(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.req.arg", ANY);
    tg_str_t v;
    if (tg_var_arg(r, check_str(L, 1), &v) != 0) {
        lua_pushnil(L);
        return 1;
    }
    push_str(L, v);
    return 1;
}

static int req_header(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.req.header", ANY);
    return push_header(L, &r->headers, check_str(L, 1));
}

static int req_headers(lua_State *L)
{
    return push_headers(L, &tg_lua_vm_request(L, "tg.req.headers", ANY)->headers);
}

static int req_set_header(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.req.set_header", REQ);
    tg_str_t n, v;
    check_header(L, r, "tg.req.set_header", 1, &n, &v);
    if (tg_headers_set(r->arena, &r->headers, n, v) != 0)
        return luaL_error(L, "tg.req.set_header: out of memory");
    return 0;
}

static int req_clear_header(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.req.clear_header", REQ);
    tg_headers_remove(&r->headers, check_str(L, 1));
    return 0;
}

static int req_client_ip(lua_State *L)
{
    push_str(L, tg_lua_vm_request(L, "tg.req.client_ip", ANY)->remote_addr);
    return 1;
}

static int req_host(lua_State *L)
{
    push_str(L, tg_lua_vm_request(L, "tg.req.host", ANY)->host);
    return 1;
}

static int req_scheme(lua_State *L)
{
    push_str(L, tg_lua_vm_request(L, "tg.req.scheme", ANY)->scheme);
    return 1;
}


/* ---- tg.resp ---- */

static int resp_status(lua_State *L)
{
    lua_pushinteger(L, tg_lua_vm_request(L, "tg.resp.status", RESP)->status);
    return 1;
}

static int resp_header(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.resp.header", RESP);
    return push_header(L, &r->resp_headers, check_str(L, 1));
}

static int resp_headers(lua_State *L)
{
    return push_headers(L, &tg_lua_vm_request(L, "tg.resp.headers", RESP)->resp_headers);
}

static int resp_set_header(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.resp.set_header", TG_LUA_F(TG_LUA_HEADER_FILTER));
    tg_str_t n, v;
    check_header(L, r, "tg.resp.set_header", 1, &n, &v);
    if (tg_headers_set(r->arena, &r->resp_headers, n, v) != 0)
        return luaL_error(L, "tg.resp.set_header: out of memory");
    return 0;
}

static int resp_add_header(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.resp.add_header", TG_LUA_F(TG_LUA_HEADER_FILTER));
    tg_str_t n, v;
    check_header(L, r, "tg.resp.add_header", 1, &n, &v);
    if (tg_headers_add(r->arena, &r->resp_headers, n, v) != 0)
        return luaL_error(L, "tg.resp.add_header: out of memory");
    return 0;
}

static int resp_clear_header(lua_State *L)
{
    tg_request_t *r =
        tg_lua_vm_request(L, "tg.resp.clear_header", TG_LUA_F(TG_LUA_HEADER_FILTER));
    tg_headers_remove(&r->resp_headers, check_str(L, 1));
    return 0;
}

/* ---- tg.var, tg.ctx ---- */

static int var_index(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.var", ANY);
    tg_str_t name = check_str(L, 2), v;
    int rc = tg_var_get(r, name, &v);
    if (rc == -2)
        return luaL_error(L, "tg.var: unknown variable \"%s\"", name.p);
    if (rc != 0) {
        lua_pushnil(L);
        return 1;
    }
    push_str(L, v);
    return 1;
}

static int tg_index(lua_State *L)
{
    size_t n;
    const char *k = lua_tolstring(L, 2, &n);
    if (k && n == 3 && memcmp(k, "ctx", 3) == 0)
        return tg_lua_vm_push_ctx_table(L, tg_lua_vm_ctx(L, "tg.ctx", ANY));
    return 0;
}

/* tg.ctx is looked up per request, so it must never become a plain field;
 * tg.arg is the table the body filter runner reads back */
static int tg_newindex(lua_State *L)
{
    size_t n;
    const char *k = lua_tolstring(L, 2, &n);
    if (k && n == 3 && (memcmp(k, "ctx", 3) == 0 || memcmp(k, "arg", 3) == 0))
        return luaL_error(L, "tg.%s cannot be replaced; set fields in it", k);
    lua_rawset(L, 1);
    return 0;
}

/* ---- routing and answers ---- */

static int l_route(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.route", REQ);
    tg_str_t name = check_str(L, 1);
    tg_upstream_t *u = tg_config_find_upstream(tg_worker->config, name);
    if (u == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "no upstream \"%s\"", name.p);
        return 2;
    }
    r->upstream = u;
    lua_pushboolean(L, 1);
    return 1;
}

static void check_chunk(lua_State *L, const char *fn)
{
    if (!tg_lua_vm_in_chunk(L))
        luaL_error(L, "%s: not allowed inside a coroutine of the script", fn);
}

/* Headers from a table {name = value or {values}} onto the response. */
static void add_resp_headers(lua_State *L, tg_request_t *r, int t, const char *fn)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int top = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: header names must be strings", fn);
        int values = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 1;
        for (int i = 1; i <= values; i++) {
            lua_pushvalue(L, top - 1);
            if (lua_istable(L, top))
                lua_rawgeti(L, top, i);
            else
                lua_pushvalue(L, top);
            if (!lua_isstring(L, -1))
                luaL_error(L, "%s: header values must be strings", fn);
            tg_str_t n, v;
            check_header(L, r, fn, top + 1, &n, &v);
            if (tg_str_caseeq_lit(n, "content-type") ? tg_headers_set(r->arena, &r->resp_headers, n, v)
                                                       : tg_headers_add(r->arena, &r->resp_headers, n, v))
                luaL_error(L, "%s: out of memory", fn);
            lua_settop(L, top);
        }
        lua_pop(L, 1);
    }
}

static int l_exit(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.exit", REQ);
    check_chunk(L, "tg.exit");
    int st = (int)luaL_checkinteger(L, 1);
    if (st < 200 || st > 599)
        return luaL_error(L, "tg.exit: invalid status %d", st);
    size_t n = 0;
    const char *body = luaL_optlstring(L, 2, "", &n);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    if (tg_request_respond(r, st, "text/plain", (tg_str_t){body, n}) != 0)
        return luaL_error(L, "tg.exit: out of memory");
    if (lua_istable(L, 3))
        add_resp_headers(L, r, 3, "tg.exit");
    return tg_lua_vm_exit_request(L);
}

static int l_redirect(lua_State *L)
{
    tg_request_t *r = tg_lua_vm_request(L, "tg.redirect", REQ);
    check_chunk(L, "tg.redirect");
    tg_str_t url = check_str(L, 1);
    int st = (int)luaL_optinteger(L, 2, 302);
    if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308)
        return luaL_error(L, "tg.redirect: invalid status %d, expected 301, 302, 303, 307 or 308",
                          st);
    for (size_t k = 0; k < url.len; k++)
        if ((unsigned char)url.p[k] < ' ' || url.p[k] == 0x7f)
            return luaL_error(L, "tg.redirect: invalid character in the URL");
    char *page = tg_arena_printf(r->arena, "%d %s\n", st, tg_status_reason(st));
    tg_str_t loc = tg_arena_str(r->arena, url);
    if (page == NULL || loc.p == NULL ||
        tg_request_respond(r, st, "text/plain", tg_str_c(page)) != 0 ||
        tg_headers_set(r->arena, &r->resp_headers, TG_STR("Location"), loc) != 0)
        return luaL_error(L, "tg.redirect: out of memory");
    return tg_lua_vm_exit_request(L);
}

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (!(s >= 0 && s <= 86400))
        return luaL_error(L, "tg.sleep: invalid duration");
    return tg_lua_vm_sleep(L, s);
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, ev_time());
    return 1;
}

static int l_phase(lua_State *L)
{
    lua_pushstring(L, tg_lua_phase_names[tg_lua_vm_phase()]);
    return 1;
}

static int l_log(lua_State *L)
{
    size_t n;
    const char *lv = luaL_checklstring(L, 1, &n);
    int level = tg_log_parse_level(lv, n);
    if (level < 0)
        return luaL_error(L, "tg.log: unknown level \"%s\", expected debug, info, warn or error",
                          lv);
    if (level < tg_log_level)
        return 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int top = lua_gettop(L);
    for (int i = 2; i <= top; i++) {
        switch (lua_type(L, i)) {
        case LUA_TSTRING:
        case LUA_TNUMBER: lua_pushvalue(L, i); break;
        case LUA_TNIL: lua_pushliteral(L, "nil"); break;
        case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false"); break;
        default: lua_pushfstring(L, "%s: %p", luaL_typename(L, i), lua_topointer(L, i)); break;
        }
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    tg_log(level, "lua: %s", lua_tostring(L, -1));
    return 0;
}

/* ---- tg.shared ---- */

static tg_shdict_t *check_dict(lua_State *L)
{
    tg_shdict_t **d = luaL_checkudata(L, 1, "tg.shared");
    return *d;
}

static int dict_get(lua_State *L)
{
    tg_shdict_t *d = check_dict(L);
    tg_request_t *r = tg_lua_vm_request(L, "get", ANY);
    tg_shdict_value_t v;
    int rc = tg_shdict_get(d, check_str(L, 2), ev_time(), r->arena, &v);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "no memory");
        return 2;
    }
    if (rc == 0) {
        lua_pushnil(L);
        return 1;
    }
    switch (v.type) {
    case TG_SHDICT_STR: push_str(L, v.str); break;
    case TG_SHDICT_BOOL: lua_pushboolean(L, v.num != 0); break;
    default: lua_pushnumber(L, v.num); break;
    }
    return 1;
}

static double opt_ttl(lua_State *L, int i)
{
    double ttl = luaL_optnumber(L, i, 0);
    if (ttl < 0 || isnan(ttl))
        luaL_error(L, "invalid ttl");
    return ttl;
}

static int dict_set(lua_State *L)
{
    tg_shdict_t *d = check_dict(L);
    tg_str_t key = check_str(L, 2);
    tg_shdict_value_t v = {TG_SHDICT_NONE, 0, TG_NULL_STR};
    switch (lua_type(L, 3)) {
    case LUA_TNIL:
    case LUA_TNONE:
        tg_shdict_delete(d, key, ev_time());
        lua_pushboolean(L, 1);
        return 1;
    case LUA_TSTRING: v.type = TG_SHDICT_STR; v.str.p = lua_tolstring(L, 3, &v.str.len); break;
    case LUA_TNUMBER: v.type = TG_SHDICT_NUM; v.num = lua_tonumber(L, 3); break;
    case LUA_TBOOLEAN: v.type = TG_SHDICT_BOOL; v.num = lua_toboolean(L, 3); break;
    default: return luaL_error(L, "set: values are strings, numbers or booleans");
    }
    if (tg_shdict_set(d, key, &v, opt_ttl(L, 4), ev_time()) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "no memory");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int dict_incr(lua_State *L)
{
    tg_shdict_t *d = check_dict(L);
    tg_str_t key = check_str(L, 2);
    double by = luaL_optnumber(L, 3, 1), out = 0;
    int has_init = !lua_isnoneornil(L, 4);
    double init = has_init ? luaL_checknumber(L, 4) : 0;
    int rc = tg_shdict_incr(d, key, by, has_init, init, opt_ttl(L, 5), ev_time(), &out);
    if (rc == 0) {
        lua_pushnumber(L, out);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, rc == 1 ? "not found" : rc == -2 ? "not a number" : "no memory");
    return 2;
}

static int dict_delete(lua_State *L)
{
    tg_shdict_t *d = check_dict(L);
    tg_shdict_delete(d, check_str(L, 2), ev_time());
    return 0;
}

/* ---- registration ---- */

static void set_funcs(lua_State *L, const luaL_Reg *f)
{
    for (; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
}

void tg_lua_api_open(lua_State *L, tg_lua_main_t *m)
{
    static const luaL_Reg req[] = {
        {"method", req_method},   {"path", req_path},
        {"set_path", req_set_path}, {"query", req_query},
        {"arg", req_arg},         {"header", req_header},
        {"headers", req_headers}, {"set_header", req_set_header},
        {"clear_header", req_clear_header}, {"client_ip", req_client_ip},
        {"host", req_host},       {"scheme", req_scheme},
        {"body", tg_lua_vm_body},       {NULL, NULL},
    };
    static const luaL_Reg resp[] = {
        {"status", resp_status},         {"header", resp_header},
        {"headers", resp_headers},       {"set_header", resp_set_header},
        {"add_header", resp_add_header}, {"clear_header", resp_clear_header},
        {NULL, NULL},
    };
    static const luaL_Reg top[] = {
        {"route", l_route}, {"exit", l_exit}, {"redirect", l_redirect}, {"sleep", l_sleep},
        {"now", l_now},     {"log", l_log},   {"phase", l_phase}, {NULL, NULL},
    };
    static const luaL_Reg dict[] = {
        {"get", dict_get}, {"set", dict_set}, {"incr", dict_incr}, {"delete", dict_delete},
        {NULL, NULL},
    };
    int tg = lua_gettop(L);
    set_funcs(L, top);
    lua_newtable(L);
    set_funcs(L, req);
    lua_setfield(L, tg, "req");
    lua_newtable(L);
    set_funcs(L, resp);
    lua_setfield(L, tg, "resp");

    lua_newtable(L); /* tg.var */
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, var_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, tg, "var");

    luaL_newmetatable(L, "tg.shared");
    lua_newtable(L);
    set_funcs(L, dict);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_newtable(L); /* tg.shared */
    for (tg_lua_dict_t *d = m->dicts; d; d = d->next) {
        push_str(L, d->name);
        tg_shdict_t **ud = lua_newuserdata(L, sizeof(*ud));
        *ud = d->dict;
        luaL_getmetatable(L, "tg.shared");
        lua_setmetatable(L, -2);
        lua_rawset(L, -3);
    }
    lua_setfield(L, tg, "shared");

    lua_newtable(L);
    tg_lua_re_open(L);
    lua_setfield(L, tg, "re");
    lua_newtable(L);
    tg_lua_crypto_open(L);
    lua_setfield(L, tg, "crypto");
    lua_newtable(L);
    tg_lua_json_open(L);
    lua_setfield(L, tg, "json");
    lua_newtable(L);
    tg_lua_jwt_open(L);
    lua_setfield(L, tg, "jwt");
    lua_newtable(L);
    tg_lua_http_open(L, m);
    lua_setfield(L, tg, "http");
    lua_pushvalue(L, tg);
    tg_lua_redis_open(L, m);
    lua_pop(L, 1);
    lua_newtable(L);
    tg_lua_cache_open(L);
    lua_setfield(L, tg, "cache");

    lua_createtable(L, 0, 2); /* tg.ctx is per request */
    lua_pushcfunction(L, tg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tg_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, tg);
}
