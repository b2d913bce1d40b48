/* @public Shared memory zones: named regions that every worker of a config
 * generation sees at the same address with the same bytes. The master maps
 * them (a memfd, MAP_SHARED) while it loads the config, before it
 * forks the workers, so a worker inherits them and never maps anything
 * itself. Users: rate-limit tables now; Lua shared dicts and the stats
 * counters later.
 *
 * A zone is declared by a directive's set() with tg_shm_zone_add(): name,
 * size and an owner tag (what the bytes mean: "rate_limit", "lua_dict", ...).
 * Names are unique within a config and looked up with tg_shm_zone_find().
 *
 * Reload: when the next config declares a zone with the same name, tag and
 * size, it gets the same mapping, contents and all (zone->reused is set), so
 * counters and rate-limit state survive a reload; old and new workers then
 * share it while the old ones finish, which is why the layout of a tag must
 * only depend on the size. A zone whose size or tag changed is new and
 * starts zeroed. A mapping is released when the last config using it is
 * destroyed (in the master; workers exit with theirs). A binary upgrade
 * hands the mappings to the new master the same way (tg_shm_handover), so
 * a zone holds offsets, never pointers, and a tag names a layout: an owner
 * that changes what its zone holds changes its tag (or its table's magic).
 *
 * The memory of a new zone is zeroed and only takes RAM when touched, so
 * owners should make "all zero" mean "empty". Locking inside a zone is the
 * owner's business; tg_shm_mutex_* is a process-shared, robust mutex for it.
 * Hash tables in a zone are built on src/shm_table.c. */
#ifndef TG_SHM_H
#define TG_SHM_H

#include <pthread.h>
#include <stddef.h>
#include "str.h"
#include "conf.h"

typedef struct tg_shm_map_s tg_shm_map_t;

typedef struct tg_shm_zone_s {
    tg_str_t name;       /* as declared (config arena) */
    const char *tag;     /* owner: a static string */
    void *data;          /* start of the zone, page aligned */
    size_t size;         /* usable bytes at data: the requested size rounded up to pages */
    unsigned reused : 1; /* the mapping and its contents come from the previous config */
    const char *file;    /* where it was declared */
    int line;
    struct tg_shm_zone_s *next; /* the config's zones, declaration order */
    tg_shm_map_t *map;          /* private: the mapping */
} tg_shm_zone_t;

/* Declare a zone in the config being parsed (call it from a directive's
 * set()). Returns NULL and sets *out, or an error message: a duplicate name,
 * a size out of range, mmap failing. The mapping is released with the config. */
const char *tg_shm_zone_add(tg_conf_t *cf, tg_str_t name, size_t size, const char *tag,
                            tg_shm_zone_t **out);
/* The config's zone of this name, or NULL. */
tg_shm_zone_t *tg_shm_zone_find(tg_config_t *c, tg_str_t name);

/* Binary upgrade (src/upgrade.c). tg_shm_handover, in the child about to
 * exec the new binary: the zones' descriptors, no longer close-on-exec, as
 * the text of TG_SHM_ENV into `buf`; 0, or -1 if it is too small.
 * tg_shm_inherit, in the new process before it loads its config: maps the
 * zones TG_SHM_ENV lists (returns how many), so that a zone of the config
 * with the same name, tag and size takes one over with its contents, as on a
 * reload; tg_shm_inherit_end after the load drops those no zone took. */
#define TG_SHM_ENV "TOLLGATE_SHM_FDS"
int tg_shm_handover(char *buf, size_t size);
int tg_shm_inherit(void);
void tg_shm_inherit_end(void);

/* A mutex that lives in a zone and works across processes. When a worker
 * dies holding it (a crash), the next locker gets it with a return value of
 * 1 instead of 0 and must repair or reset what it protects; it is consistent
 * again after that. -1: a usage error (logged). */
typedef struct {
    pthread_mutex_t m;
} tg_shm_mutex_t;

int tg_shm_mutex_init(tg_shm_mutex_t *mx);
int tg_shm_mutex_lock(tg_shm_mutex_t *mx);
void tg_shm_mutex_unlock(tg_shm_mutex_t *mx);

static inline size_t tg_shm_align(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

#endif
