/* tg.re: PCRE2 regular expressions for scripts, JIT compiled, with a bounded
 * per-worker cache of compiled patterns (direct mapped: a pattern evicts the
 * one in its slot), so a pattern written in a script is compiled once per
 * worker in the steady state. Every match runs with a match limit, so a
 * pathological pattern ends in an error instead of stalling the worker.
 *
 *   tg.re.match(s, re [, flags])  -> {[0]=whole, [1]=group1, name=...} or nil
 *   tg.re.find(s, re [, flags])   -> from, to (1-based, inclusive) or nil
 *   tg.re.gsub(s, re, repl [, flags]) -> new string, count
 *       repl: string with $0..$99, ${name}, $$; or function(m) returning a string
 * flags: i caseless, m multiline, s dotall, x extended, u utf (others: error) */
#include <stdlib.h>
#include <string.h>
#include <pcre2.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"

#define RE_CACHE 64
#define RE_MATCH_LIMIT 1000000

typedef struct {
    char *pat; /* malloc'd copy, NUL-terminated */
    size_t len;
    uint32_t opts;
    pcre2_code *code;
    pcre2_match_data *md;
} re_slot_t;

static re_slot_t cache[RE_CACHE];
static pcre2_match_context *mctx;

static uint32_t parse_flags(lua_State *L, int i)
{
    const char *f = luaL_optstring(L, i, "");
    uint32_t o = 0;
    for (; *f; f++) {
        switch (*f) {
        case 'i': o |= PCRE2_CASELESS; break;
        case 'm': o |= PCRE2_MULTILINE; break;
        case 's': o |= PCRE2_DOTALL; break;
        case 'x': o |= PCRE2_EXTENDED; break;
        case 'u': o |= PCRE2_UTF; break;
        case 'j':
        case 'o': break; /* always JIT compiled and cached */
        default: luaL_error(L, "tg.re: unknown flag '%c'", *f);
        }
    }
    return o;
}

static re_slot_t *compiled(lua_State *L, int pi, int fi)
{
    size_t len;
    const char *pat = luaL_checklstring(L, pi, &len);
    uint32_t opts = parse_flags(L, fi);
    uint64_t h = tg_hash64(pat, len) ^ opts;
    re_slot_t *s = &cache[h % RE_CACHE];
    if (s->code && s->len == len && s->opts == opts && memcmp(s->pat, pat, len) == 0)
        return s;
    int err;
    PCRE2_SIZE off;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &off, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof(msg));
        luaL_error(L, "tg.re: bad pattern \"%s\" at offset %d: %s", pat, (int)off, (char *)msg);
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    char *copy = malloc(len + 1);
    if (md == NULL || copy == NULL) {
        pcre2_code_free(code);
        pcre2_match_data_free(md);
        free(copy);
        luaL_error(L, "tg.re: out of memory");
    }
    memcpy(copy, pat, len);
    copy[len] = '\0';
    if (s->code) {
        pcre2_code_free(s->code);
        pcre2_match_data_free(s->md);
        free(s->pat);
    }
    *s = (re_slot_t){copy, len, opts, code, md};
    return s;
}

/* 1 matched, 0 not; raises on a match error (limit, bad UTF). */
static int run(lua_State *L, re_slot_t *re, const char *s, size_t len, size_t start)
{
    if (mctx == NULL && (mctx = pcre2_match_context_create(NULL)) != NULL)
        pcre2_set_match_limit(mctx, RE_MATCH_LIMIT);
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, len, start, 0, re->md, mctx);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        return luaL_error(L, "tg.re: %s", (char *)msg);
    }
    return 1;
}

/* {[0]=whole, [1]=..., name=...}; unmatched groups are false */
static void push_captures(lua_State *L, re_slot_t *re, const char *s)
{
    uint32_t n = pcre2_get_ovector_count(re->md);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    uint32_t ncap = 0;
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &ncap);
    lua_createtable(L, (int)ncap, 1);
    for (uint32_t i = 0; i <= ncap && i < n; i++) {
        if (ov[2 * i] == PCRE2_UNSET)
            lua_pushboolean(L, 0);
        else
            lua_pushlstring(L, s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
        lua_rawseti(L, -2, (int)i);
    }
    uint32_t names = 0, esize = 0;
    PCRE2_SPTR table;
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &names);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &esize);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t k = 0; k < names; k++) {
        const unsigned char *e = table + k * esize;
        int idx = (e[0] << 8) | e[1];
        lua_pushstring(L, (const char *)e + 2);
        lua_rawgeti(L, -2, idx);
        lua_rawset(L, -3);
    }
}

static int re_match(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    re_slot_t *re = compiled(L, 2, 3);
    if (!run(L, re, s, len, 0)) {
        lua_pushnil(L);
        return 1;
    }
    push_captures(L, re, s);
    return 1;
}

static int re_find(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    re_slot_t *re = compiled(L, 2, 3);
    if (!run(L, re, s, len, 0)) {
        lua_pushnil(L);
        return 1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    lua_pushinteger(L, (lua_Integer)ov[0] + 1);
    lua_pushinteger(L, (lua_Integer)ov[1]);
    return 2;
}

/* Expand $N, ${N}, ${name}, $$ of a replacement template. */
static void expand(lua_State *L, luaL_Buffer *b, re_slot_t *re, const char *s, const char *t,
                   size_t tlen)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    uint32_t n = pcre2_get_ovector_count(re->md);
    for (size_t i = 0; i < tlen; i++) {
        if (t[i] != '$' || i + 1 == tlen) {
            luaL_addchar(b, t[i]);
            continue;
        }
        i++;
        if (t[i] == '$') {
            luaL_addchar(b, '$');
            continue;
        }
        int idx = -1;
        if (t[i] >= '0' && t[i] <= '9') {
            idx = t[i] - '0';
            if (i + 1 < tlen && t[i + 1] >= '0' && t[i + 1] <= '9')
                idx = idx * 10 + (t[++i] - '0');
        } else if (t[i] == '{') {
            const char *e = memchr(t + i, '}', tlen - i);
            if (e == NULL)
                luaL_error(L, "tg.re.gsub: unclosed \"${\" in the replacement");
            char name[64];
            size_t nl = (size_t)(e - (t + i + 1));
            if (nl == 0 || nl >= sizeof(name))
                luaL_error(L, "tg.re.gsub: bad group name in the replacement");
            memcpy(name, t + i + 1, nl);
            name[nl] = '\0';
            idx = (name[0] >= '0' && name[0] <= '9')
                      ? atoi(name)
                      : pcre2_substring_number_from_name(re->code, (PCRE2_SPTR)name);
            i = (size_t)(e - t);
        } else {
            luaL_error(L, "tg.re.gsub: bad \"$\" in the replacement");
        }
        if (idx < 0 || (uint32_t)idx >= n)
            luaL_error(L, "tg.re.gsub: no group %d in the pattern", idx);
        if (ov[2 * idx] != PCRE2_UNSET)
            luaL_addlstring(b, s + ov[2 * idx], ov[2 * idx + 1] - ov[2 * idx]);
    }
}

static int re_gsub(lua_State *L)
{
    size_t len, tlen = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    re_slot_t *re = compiled(L, 2, 4);
    int fn = lua_isfunction(L, 3);
    const char *t = fn ? NULL : luaL_checklstring(L, 3, &tlen);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t pos = 0, count = 0;
    while (pos <= len && run(L, re, s, len, pos)) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        size_t ms = ov[0], me = ov[1];
        luaL_addlstring(&b, s + pos, ms - pos);
        if (fn) {
            /* the buffer may sit on the stack: call with the captures above it */
            lua_pushvalue(L, 3);
            push_captures(L, re, s);
            lua_call(L, 1, 1);
            if (!lua_isstring(L, -1))
                luaL_error(L, "tg.re.gsub: the function must return a string");
            luaL_addvalue(&b);
            /* a nested tg.re call may have reused this slot's match data */
            re = compiled(L, 2, 4);
        } else {
            expand(L, &b, re, s, t, tlen);
        }
        count++;
        if (me == ms) { /* empty match: copy one character and go on */
            if (ms < len)
                luaL_addchar(&b, s[ms]);
            pos = ms + 1;
        } else {
            pos = me;
        }
    }
    if (pos < len)
        luaL_addlstring(&b, s + pos, len - pos);
    luaL_pushresult(&b);
    lua_pushinteger(L, (lua_Integer)count);
    return 2;
}

void tg_lua_re_open(lua_State *L)
{
    lua_pushcfunction(L, re_match);
    lua_setfield(L, -2, "match");
    lua_pushcfunction(L, re_find);
    lua_setfield(L, -2, "find");
    lua_pushcfunction(L, re_gsub);
    lua_setfield(L, -2, "gsub");
}
