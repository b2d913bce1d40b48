/* tg.cache: the response cache from Lua (docs/lua.md, docs/cache.md).
 *
 *   local n = tg.cache.purge(key)          -- the entry and its Vary variants
 *   local n = tg.cache.purge_prefix(prefix)
 *   local n = tg.cache.purge_tag(tag)      -- Surrogate-Key / Cache-Tag
 *
 * Each acts on every cache zone of the running config and returns how many
 * entries went. */
#include "lua.h"
#include "lauxlib.h"
#include "lua_vm.h"
#include "cache_store.h"
#include "worker.h"

static int purge(lua_State *L, int how)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    long total = 0;
    for (tg_shm_zone_t *z = tg_worker ? tg_worker->config->shm_zones : NULL; z; z = z->next) {
        tg_cache_store_t *st = tg_cache_store_of(z);
        if (st)
            total += tg_cache_purge(st, (tg_str_t){s, n}, how);
    }
    lua_pushnumber(L, (lua_Number)total);
    return 1;
}

static int l_purge(lua_State *L)
{
    return purge(L, TG_CACHE_PURGE_KEY);
}

static int l_purge_prefix(lua_State *L)
{
    return purge(L, TG_CACHE_PURGE_PREFIX);
}

static int l_purge_tag(lua_State *L)
{
    return purge(L, TG_CACHE_PURGE_TAG);
}

void tg_lua_cache_open(lua_State *L)
{
    lua_pushcfunction(L, l_purge);
    lua_setfield(L, -2, "purge");
    lua_pushcfunction(L, l_purge_prefix);
    lua_setfield(L, -2, "purge_prefix");
    lua_pushcfunction(L, l_purge_tag);
    lua_setfield(L, -2, "purge_tag");
}
