/* tg.timer: functions run later, or every so often, in the worker that
 * started them (docs/lua.md).
 *
 *   tg.timer.at(delay, fn, ...)        -> handle, or nil, err
 *   tg.timer.every(interval, fn, ...)  -> handle, or nil, err
 *   handle:cancel()                    -> true if it was pending
 *   tg.timer.count()                   -> timers pending in this worker
 *
 * Each timer is a slot of a table allocated at worker start with
 * lua_max_timers entries (no allocation when one starts, and the count is
 * bounded); the function and its arguments are kept in the registry as
 * {fn, arg1, ..., n = N} until the timer is done. A callback runs through
 * tg_lua_vm_call: its own coroutine, the main scope's instruction limit,
 * the memory limit, errors logged with a traceback; an `every` timer goes on
 * after an error. Once the worker starts to shut down (reload, stop) a timer
 * that comes due is dropped without running, so an old generation's timers
 * never run alongside the new one's; at exit every timer is stopped.
 * Handles carry the slot and its generation, so a handle of a finished
 * timer cannot cancel the slot's next timer. */
#include <stdlib.h>
#include <ev.h>
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "worker.h"

#define HANDLE_MT "tg.timer"
#define MIN_INTERVAL 0.001 /* seconds: tg.timer.every */

typedef struct {
    ev_timer w;
    int ref; /* registry: {fn, args..., n = N}; LUA_NOREF when the slot is free */
    unsigned gen;
    int next_free;
} slot_t;

typedef struct {
    int slot;
    unsigned gen;
} handle_t;

static struct {
    lua_State *L;
    slot_t *slots;
    int max, free_head, pending;
} tm;

static void release(slot_t *t)
{
    if (tg_worker)
        ev_timer_stop(tg_worker->loop, &t->w);
    if (t->ref != LUA_NOREF)
        luaL_unref(tm.L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
    t->gen++;
    t->next_free = tm.free_head;
    tm.free_head = (int)(t - tm.slots);
    tm.pending--;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    slot_t *t = w->data;
    if (tg_worker->shutting_down) {
        release(t);
        return;
    }
    if (w->repeat > 0) {
        /* the callback may cancel its own timer: the call keeps what it needs */
        (void)tg_lua_vm_call(t->ref, TG_LUA_TIMER);
        return;
    }
    /* a one-shot timer's slot is free before its callback runs, so the
     * callback can start the next one; the call keeps its reference */
    int ref = t->ref;
    t->ref = LUA_NOREF;
    release(t);
    (void)tg_lua_vm_call(ref, TG_LUA_TIMER);
    luaL_unref(tm.L, LUA_REGISTRYINDEX, ref);
}

static int start(lua_State *L, int every)
{
    const char *fn = every ? "tg.timer.every" : "tg.timer.at";
    double d = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!(d >= (every ? MIN_INTERVAL : 0) && d <= 1e8))
        return luaL_error(L, "%s: invalid %s", fn, every ? "interval (0.001 s or more)" : "delay");
    if (tg_worker->shutting_down) {
        lua_pushnil(L);
        lua_pushliteral(L, "worker exiting");
        return 2;
    }
    if (tm.free_head < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "too many timers (lua_max_timers %d)", tm.max);
        return 2;
    }
    int top = lua_gettop(L);
    lua_createtable(L, top - 1, 1);
    for (int i = 2; i <= top; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - 1);
    }
    lua_pushinteger(L, top - 2);
    lua_setfield(L, -2, "n");
    handle_t *h = lua_newuserdata(L, sizeof(*h)); /* before the slot: may raise */
    luaL_getmetatable(L, HANDLE_MT);
    lua_setmetatable(L, -2);
    lua_insert(L, -2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (ref == LUA_REFNIL)
        return luaL_error(L, "%s: out of memory", fn);
    slot_t *t = &tm.slots[tm.free_head];
    tm.free_head = t->next_free;
    tm.pending++;
    t->ref = ref;
    ev_timer_init(&t->w, on_timer, d, every ? d : 0.);
    t->w.data = t;
    ev_timer_start(tg_worker->loop, &t->w);
    h->slot = (int)(t - tm.slots);
    h->gen = t->gen;
    return 1;
}

static int l_at(lua_State *L)
{
    return start(L, 0);
}

static int l_every(lua_State *L)
{
    return start(L, 1);
}

static int l_count(lua_State *L)
{
    lua_pushinteger(L, tm.pending);
    return 1;
}

static int l_cancel(lua_State *L)
{
    handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
    slot_t *t = &tm.slots[h->slot];
    int pending = t->gen == h->gen && t->ref != LUA_NOREF;
    if (pending)
        release(t);
    lua_pushboolean(L, pending);
    return 1;
}

int tg_lua_timer_open(lua_State *L, int64_t max)
{
    tm.L = L;
    tm.max = (int)max;
    tm.pending = 0;
    tm.free_head = -1;
    tm.slots = max ? calloc((size_t)max, sizeof(slot_t)) : NULL;
    if (max && tm.slots == NULL)
        return -1;
    for (int i = tm.max - 1; i >= 0; i--) {
        tm.slots[i].ref = LUA_NOREF;
        tm.slots[i].next_free = tm.free_head;
        tm.free_head = i;
    }
    luaL_newmetatable(L, HANDLE_MT);
    lua_newtable(L);
    lua_pushcfunction(L, l_cancel);
    lua_setfield(L, -2, "cancel");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_at);
    lua_setfield(L, -2, "at");
    lua_pushcfunction(L, l_every);
    lua_setfield(L, -2, "every");
    lua_pushcfunction(L, l_count);
    lua_setfield(L, -2, "count");
    return 0;
}

void tg_lua_timer_exit(void)
{
    for (int i = 0; tm.slots && i < tm.max; i++)
        if (tm.slots[i].ref != LUA_NOREF && tg_worker)
            ev_timer_stop(tg_worker->loop, &tm.slots[i].w);
    free(tm.slots);
    tm.slots = NULL;
    tm.max = tm.pending = 0;
    tm.free_head = -1;
}
