/* tg.json: JSON for scripts, in C (docs/lua.md).
 *
 *   tg.json.decode(s)   -> value, or nil, err (never raises on bad input)
 *   tg.json.encode(v)   -> string, or nil, err
 *   tg.json.null        JSON null inside tables (a light userdata)
 *   tg.json.empty_array encodes as [] (an empty Lua table encodes as {})
 *   tg.json.array_mt    metatable of decoded arrays: an empty one encodes as []
 *
 * The decoder builds Lua values straight from the text (no tree in between):
 * RFC 8259 grammar, strings checked to be well-formed UTF-8, \u escapes with
 * surrogate pairs joined (a lone surrogate is refused: UTF-8 cannot hold
 * it), numbers as Lua numbers (doubles: integers exact up to 2^53, as in
 * JavaScript), duplicate keys keep the last value. Nesting deeper than
 * TG_LUA_JSON_DEPTH is refused by both directions, which also stops a table
 * that contains itself. Strings are escaped by tg_json_escape (src/json.c),
 * the escaper the access log and stats use: bytes that are not UTF-8 become
 * U+FFFD. One scratch buffer per process, kept between calls (and trimmed
 * when a big value grew it), holds the text being encoded and unescaped
 * strings, so a Lua error in the middle (out of memory) leaks nothing. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "json.h"

#define TG_LUA_JSON_DEPTH 1000
#define SCRATCH_KEEP (64 * 1024) /* a larger scratch is freed after the call */

static struct {
    char *p;
    size_t cap;
} scratch;

static char empty_array_tag; /* its address is tg.json.empty_array */

/* Room for `need` bytes in the scratch buffer. Returns it, or NULL. */
static char *scratch_reserve(size_t need)
{
    if (need <= scratch.cap)
        return scratch.p;
    size_t cap = scratch.cap ? scratch.cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = realloc(scratch.p, cap);
    if (p == NULL)
        return NULL;
    scratch.p = p;
    scratch.cap = cap;
    return p;
}

static void scratch_trim(void)
{
    if (scratch.cap > SCRATCH_KEEP) {
        free(scratch.p);
        scratch.p = NULL;
        scratch.cap = 0;
    }
}

/* ---- decode ---- */

typedef struct {
    lua_State *L;
    const unsigned char *s, *p, *end;
    const char *err; /* static text, set once */
    int depth;
} dec_t;

static int fail(dec_t *d, const char *err)
{
    if (d->err == NULL)
        d->err = err;
    return -1;
}

static void skip_ws(dec_t *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t'))
        d->p++;
}

static int hex4(const unsigned char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v |= (c | 0x20) - 'a' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (first byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f; /* not past U+10FFFF */
    } else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at d->p (on the opening quote): pushed. A string without escapes
 * is pushed from the input directly; one with escapes is unescaped into the
 * scratch buffer (never longer than the input). */
static int dec_string(dec_t *d)
{
    const unsigned char *p = ++d->p, *end = d->end;
    int escaped = 0;
    /* first pass: find the end, check the bytes */
    while (p < end && *p != '"') {
        if (*p == '\\') {
            escaped = 1;
            p += 2;
        } else if (*p < 0x20) {
            d->p = p;
            return fail(d, "control character in a string");
        } else if (*p < 0x80) {
            p++;
        } else {
            size_t n = utf8_len(p, end);
            if (n == 0) {
                d->p = p;
                return fail(d, "invalid UTF-8 in a string");
            }
            p += n;
        }
    }
    if (p >= end)
        return fail(d, "unterminated string");
    if (!escaped) {
        lua_pushlstring(d->L, (const char *)d->p, (size_t)(p - d->p));
        d->p = p + 1;
        return 0;
    }
    char *o = scratch_reserve((size_t)(p - d->p));
    if (o == NULL)
        return fail(d, "out of memory");
    char *o0 = o;
    const unsigned char *q = d->p;
    while (q < p) {
        if (*q != '\\') {
            *o++ = (char)*q++;
            continue;
        }
        d->p = q;
        switch (q[1]) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (p - q < 6 || hex4(q + 2, &cp) != 0)
                return fail(d, "bad \\u escape");
            q += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(d, "lone surrogate in a \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* "\ud83d\ude00": a pair is one character */
                if (p - q < 8 || q[2] != '\\' || q[3] != 'u' || hex4(q + 4, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return fail(d, "lone surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                q += 6;
            }
            o += put_utf8(o, cp); /* never longer than the escape it replaces */
            break;
        }
        default:
            return fail(d, "bad escape in a string");
        }
        q += 2;
    }
    lua_pushlstring(d->L, o0, (size_t)(o - o0));
    d->p = p + 1;
    return 0;
}

/* A number: RFC 8259's grammar checked here, the value by strtod (which on
 * its own would take hex, "inf" and leading '+'). Up to 15 digits without
 * a fraction or exponent are added up exactly instead. */
static int dec_number(dec_t *d)
{
    const unsigned char *p = d->p, *end = d->end, *start = p;
    int simple = 1;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return fail(d, "bad number");
    if (p < end && *p == '.') {
        simple = 0;
        if (++p >= end || *p < '0' || *p > '9')
            return fail(d, "bad number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        simple = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(d, "bad number");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n = (size_t)(p - start);
    double v;
    const unsigned char *digits = start + (*start == '-');
    if (simple && (size_t)(p - digits) <= 15) {
        int64_t i = 0;
        for (const unsigned char *c = digits; c < p; c++)
            i = i * 10 + (*c - '0');
        v = *start == '-' ? -(double)i : (double)i;
        if (*start == '-' && i == 0)
            v = -0.0;
    } else {
        char local[64];
        char *buf = n < sizeof(local) ? local : scratch_reserve(n + 1);
        if (buf == NULL)
            return fail(d, "out of memory");
        memcpy(buf, start, n);
        buf[n] = '\0';
        v = strtod(buf, NULL); /* out of range: +-HUGE_VAL, as JavaScript's Infinity */
    }
    lua_pushnumber(d->L, v);
    d->p = p;
    return 0;
}

static int dec_value(dec_t *d);

static int dec_literal(dec_t *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return fail(d, "unexpected character");
    d->p += n;
    return 0;
}

/* [ ... ] or { ... } at d->p; the table is pushed. */
static int dec_container(dec_t *d, int array)
{
    lua_State *L = d->L;
    if (++d->depth > TG_LUA_JSON_DEPTH)
        return fail(d, "nested too deep");
    if (!lua_checkstack(L, 4))
        return fail(d, "nested too deep");
    d->p++;
    /* room for a few members up front: growing a table from empty rehashes
     * (and reallocates) at 1, 2 and 4 */
    lua_createtable(L, array ? 4 : 0, array ? 0 : 4);
    if (array) {
        lua_pushlightuserdata(L, &empty_array_tag); /* the array metatable's registry key */
        lua_rawget(L, LUA_REGISTRYINDEX);
        lua_setmetatable(L, -2);
    }
    int n = 0;
    char close = array ? ']' : '}';
    skip_ws(d);
    if (d->p < d->end && *d->p == close) {
        d->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(d);
        if (!array) {
            if (d->p >= d->end || *d->p != '"')
                return fail(d, "expected a key string");
            if (dec_string(d) != 0)
                return -1;
            skip_ws(d);
            if (d->p >= d->end || *d->p != ':')
                return fail(d, "expected ':'");
            d->p++;
            skip_ws(d);
        }
        if (dec_value(d) != 0)
            return -1;
        if (array)
            lua_rawseti(L, -2, ++n);
        else
            lua_rawset(L, -3);
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == close) {
            d->p++;
            d->depth--;
            return 0;
        }
        return fail(d, array ? "expected ',' or ']'" : "expected ',' or '}'");
    }
}

static int dec_value(dec_t *d)
{
    if (d->p >= d->end)
        return fail(d, "unexpected end");
    switch (*d->p) {
    case '"': return dec_string(d);
    case '{': return dec_container(d, 0);
    case '[': return dec_container(d, 1);
    case 't':
        if (dec_literal(d, "true", 4) != 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5) != 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4) != 0)
            return -1;
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    default:
        if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9'))
            return dec_number(d);
        return fail(d, "unexpected character");
    }
}

int tg_lua_json_decode(lua_State *L, const char *s, size_t n)
{
    dec_t d = {L, (const unsigned char *)s, (const unsigned char *)s,
               (const unsigned char *)s + n, NULL, 0};
    int top = lua_gettop(L);
    skip_ws(&d);
    int rc = dec_value(&d);
    if (rc == 0) {
        skip_ws(&d);
        if (d.p != d.end)
            rc = fail(&d, "garbage after the value");
    }
    scratch_trim();
    if (rc == 0)
        return 0;
    lua_settop(L, top);
    lua_pushfstring(L, "%s at byte %d", d.err, (int)(d.p - d.s) + 1);
    return -1;
}

static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (tg_lua_json_decode(L, s, n) == 0)
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* ---- encode ---- */

typedef struct {
    lua_State *L;
    size_t len;
    const char *err;
    int depth;
} enc_t;

static int put(enc_t *e, const char *s, size_t n)
{
    char *b = scratch_reserve(e->len + n);
    if (b == NULL) {
        e->err = "out of memory";
        return -1;
    }
    memcpy(b + e->len, s, n);
    e->len += n;
    return 0;
}

static int enc_string(enc_t *e, int idx)
{
    size_t n;
    const char *s = lua_tolstring(e->L, idx, &n);
    /* the usual string, printable ASCII without a quote or a backslash, is copied */
    size_t plain = 0;
    while (plain < n && (unsigned char)s[plain] >= 0x20 && (unsigned char)s[plain] < 0x7f &&
           s[plain] != '"' && s[plain] != '\\')
        plain++;
    size_t need = plain == n ? n + 2 : n * TG_JSON_ESCAPE_MAX + 2;
    char *b = scratch_reserve(e->len + need);
    if (b == NULL) {
        e->err = "out of memory";
        return -1;
    }
    b += e->len;
    b[0] = '"';
    size_t w = n;
    if (plain == n)
        memcpy(b + 1, s, n);
    else
        w = tg_json_escape(b + 1, need - 2, (tg_str_t){s, n}, NULL);
    b[w + 1] = '"';
    e->len += w + 2;
    return 0;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double;
 * integers below 2^53 as integers. */
static int enc_number(enc_t *e, double v)
{
    char buf[32];
    int n;
    if (!isfinite(v)) {
        e->err = "cannot encode NaN or infinity";
        return -1;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        /* integers: digits written backwards, no printf */
        uint64_t u = (uint64_t)fabs(v);
        char *p = buf + sizeof(buf);
        do
            *--p = (char)('0' + u % 10);
        while ((u /= 10) != 0);
        if (v < 0)
            *--p = '-';
        return put(e, p, (size_t)(buf + sizeof(buf) - p));
    } else {
        n = snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v)
            n = snprintf(buf, sizeof(buf), "%.16g", v);
        if (strtod(buf, NULL) != v)
            n = snprintf(buf, sizeof(buf), "%.17g", v);
    }
    return put(e, buf, (size_t)n);
}

static int enc_value(enc_t *e, int idx);

/* A table: an array when its keys are exactly 1..n (or it has the array
 * metatable), an object when they are all strings, else an error. */
static int enc_table(enc_t *e, int idx)
{
    lua_State *L = e->L;
    if (++e->depth > TG_LUA_JSON_DEPTH) {
        e->err = "nested too deep (or a table contains itself)";
        return -1;
    }
    if (!lua_checkstack(L, 4)) {
        e->err = "nested too deep";
        return -1;
    }
    int is_array = 0;
    if (lua_getmetatable(L, idx)) {
        lua_pushlightuserdata(L, &empty_array_tag);
        lua_rawget(L, LUA_REGISTRYINDEX);
        is_array = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    size_t count = 0, strings = 0, ints = 0;
    double max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            double k = lua_tonumber(L, -1);
            if (k >= 1 && k == floor(k)) {
                ints++;
                if (k > max)
                    max = k;
            }
        }
    }
    if (count == 0) {
        e->depth--;
        return put(e, is_array ? "[]" : "{}", 2);
    }
    if (ints == count && max == (double)count) {
        if (put(e, "[", 1) != 0)
            return -1;
        for (size_t i = 1; i <= count; i++) {
            if (i > 1 && put(e, ",", 1) != 0)
                return -1;
            lua_rawgeti(L, idx, (int)i);
            if (enc_value(e, lua_gettop(L)) != 0)
                return -1;
            lua_pop(L, 1);
        }
        e->depth--;
        return put(e, "]", 1);
    }
    if (strings != count) {
        e->err = "cannot encode a table with both string and number keys, or a sparse array";
        return -1;
    }
    if (put(e, "{", 1) != 0)
        return -1;
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (!first && put(e, ",", 1) != 0)
            return -1;
        first = 0;
        int top = lua_gettop(L);
        if (enc_string(e, top - 1) != 0 || put(e, ":", 1) != 0 || enc_value(e, top) != 0)
            return -1;
        lua_pop(L, 1);
    }
    e->depth--;
    return put(e, "}", 1);
}

static int enc_value(enc_t *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return put(e, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(e, "true", 4) : put(e, "false", 5);
    case LUA_TNUMBER: return enc_number(e, lua_tonumber(L, idx));
    case LUA_TSTRING: return enc_string(e, idx);
    case LUA_TTABLE: return enc_table(e, idx);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return put(e, "null", 4);
        if (lua_touserdata(L, idx) == &empty_array_tag)
            return put(e, "[]", 2);
        /* fall through */
    default:
        e->err = lua_pushfstring(L, "cannot encode a %s", luaL_typename(L, idx));
        return -1;
    }
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    enc_t e = {L, 0, NULL, 0};
    int rc = enc_value(&e, 1);
    if (rc == 0)
        lua_pushlstring(L, scratch.p, e.len);
    else {
        lua_pushnil(L);
        lua_pushstring(L, e.err);
    }
    scratch_trim();
    return rc == 0 ? 1 : 2;
}

void tg_lua_json_open(lua_State *L)
{
    /* the array metatable, found by the decoder through the registry */
    lua_pushlightuserdata(L, &empty_array_tag);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "array_mt");
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushlightuserdata(L, &empty_array_tag);
    lua_setfield(L, -2, "empty_array");
}
