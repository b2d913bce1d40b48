/* Shared memory zones (see shm.h).
 *
 * A zone of a config points at a mapping. Mappings are kept in one list in
 * the process that loads configs (the master, or `tollgate -t`), with a count
 * of the configs using each. A new config asking for a name, tag and size
 * that a live config already has gets that mapping again: that is how state
 * survives a reload without the master having to hand anything over. The
 * count drops when a config's arena is destroyed; at zero the mapping is
 * unmapped in this process (workers that inherited it keep theirs until they
 * exit). The list is the one piece of process-wide state here: it has to
 * outlive any single config. Workers inherit a copy and never use it.
 *
 * A mapping is a memfd (anonymous memory with a file descriptor), so that a
 * binary upgrade can hand it to the next master across exec: the old master's
 * child lists them in TG_SHM_ENV (tg_shm_handover) before it execs; the new
 * master maps them again (tg_shm_inherit) before it loads its config, where
 * a zone declared with the same name, tag and size takes its mapping as a
 * reload would, and drops the ones no zone claimed (tg_shm_inherit_end).
 * Owners keep offsets in their zones, never pointers: the new master maps a
 * zone at another address. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdint.h>
#include "shm.h"
#include "core.h"
#include "log.h"

/* 64 GB: far beyond what anyone means; catches "size=64g" typos for 64m */
#define SHM_MAX_SIZE ((size_t)64 << 30)

struct tg_shm_map_s {
    char *name; /* malloc'd: a mapping outlives the config that named it first */
    char *tag;  /* malloc'd with name (after it): an inherited map's comes from the env */
    void *addr;
    size_t size;
    int refs; /* configs using it */
    int fd;   /* the memfd, or -1 (anonymous mapping: memfd_create is missing) */
    struct tg_shm_map_s *next;
};

static tg_shm_map_t *maps;

/* Off the list, unmapped, closed, freed. */
static void map_drop(tg_shm_map_t *m)
{
    for (tg_shm_map_t **pp = &maps; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    munmap(m->addr, m->size);
    if (m->fd >= 0) close(m->fd);
    free(m->name);
    free(m);
}

static void map_release(void *data)
{
    tg_shm_map_t *m = data;
    if (--m->refs == 0) map_drop(m);
}

static tg_shm_map_t *map_find(tg_str_t name, const char *tag, size_t size)
{
    for (tg_shm_map_t *m = maps; m; m = m->next)
        if (m->size == size && strcmp(m->tag, tag) == 0 && strlen(m->name) == name.len &&
            memcmp(m->name, name.p, name.len) == 0)
            return m;
    return NULL;
}

/* A mapping of `size` bytes: of `fd` when it is >= 0, else of a new memfd
 * (or anonymous memory if there is none), put on the list with no config
 * using it yet. NULL with errno set. */
static tg_shm_map_t *map_create(tg_str_t name, const char *tag, size_t size, int fd)
{
    tg_shm_map_t *m = calloc(1, sizeof(*m));
    size_t tlen = strlen(tag);
    if (m == NULL || (m->name = malloc(name.len + tlen + 2)) == NULL) {
        free(m);
        return NULL;
    }
    memcpy(m->name, name.p, name.len);
    m->name[name.len] = '\0';
    m->tag = m->name + name.len + 1;
    memcpy(m->tag, tag, tlen + 1);
    int given = fd >= 0; /* the caller's to close if this fails */
    if (!given) {
        fd = memfd_create("tollgate-shm", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
            int e = errno;
            close(fd);
            free(m->name);
            free(m);
            errno = e;
            return NULL;
        }
    }
    /* NORESERVE: a big zone costs RAM only for the pages its owner touches */
    m->addr = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
    if (m->addr == MAP_FAILED) {
        int e = errno;
        if (fd >= 0 && !given) close(fd);
        free(m->name);
        free(m);
        errno = e;
        return NULL;
    }
    m->fd = fd;
    m->size = size;
    m->next = maps;
    maps = m;
    return m;
}

const char *tg_shm_zone_add(tg_conf_t *cf, tg_str_t name, size_t size, const char *tag,
                            tg_shm_zone_t **out)
{
    tg_config_t *c = cf->config;
    tg_shm_zone_t *dup = tg_shm_zone_find(c, name);
    if (dup)
        return tg_conf_errf(cf, "shared memory zone \"%.*s\" is already declared at %s:%d",
                            TG_STR_FMT(name), dup->file, dup->line);
    if (name.len == 0) return "empty shared memory zone name";
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size == 0 || size > SHM_MAX_SIZE)
        return tg_conf_errf(cf, "invalid size of shared memory zone \"%.*s\"", TG_STR_FMT(name));
    size = (size + page - 1) / page * page;

    tg_shm_zone_t *z = tg_arena_alloc(cf->arena, sizeof(*z));
    if (z == NULL) return "out of memory";
    tg_shm_map_t *m = map_find(name, tag, size);
    if (m) {
        z->reused = 1;
    } else if ((m = map_create(name, tag, size, -1)) == NULL) {
        return tg_conf_errf(cf, "cannot map %zu bytes of shared memory for zone \"%.*s\": %s", size,
                            TG_STR_FMT(name), strerror(errno));
    }
    m->refs++;
    if (tg_arena_on_reset(cf->arena, map_release, m) != 0) {
        map_release(m);
        return "out of memory";
    }
    z->name = tg_arena_str(cf->arena, name);
    z->tag = tag;
    z->data = m->addr;
    z->size = size;
    z->file = cf->file;
    z->line = cf->line;
    z->map = m;
    tg_shm_zone_t **tail = &c->shm_zones;
    while (*tail)
        tail = &(*tail)->next;
    *tail = z;
    *out = z;
    return NULL;
}

tg_shm_zone_t *tg_shm_zone_find(tg_config_t *c, tg_str_t name)
{
    for (tg_shm_zone_t *z = c->shm_zones; z; z = z->next)
        if (tg_str_eq(z->name, name)) return z;
    return NULL;
}

int tg_shm_handover(char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (tg_shm_map_t *m = maps; m; m = m->next) {
        if (m->fd < 0 || m->refs == 0) continue;
        /* "FD SIZE TAG NAMELEN:NAME;": the name last and counted, it may hold anything */
        int w = snprintf(buf + n, size - n, "%d %zu %s %zu:%s;", m->fd, m->size, m->tag,
                         strlen(m->name), m->name);
        if (w < 0 || (size_t)w >= size - n) return -1;
        n += (size_t)w;
    }
    for (tg_shm_map_t *m = maps; m; m = m->next)
        if (m->fd >= 0 && m->refs > 0) fcntl(m->fd, F_SETFD, 0);
    return 0;
}

int tg_shm_inherit(void)
{
    const char *env = getenv(TG_SHM_ENV);
    int n = 0;
    for (const char *p = env; p && *p;) {
        int fd, used = 0;
        size_t size, nlen;
        char tag[64];
        if (sscanf(p, "%d %zu %63s %zu:%n", &fd, &size, tag, &nlen, &used) != 4 || used == 0 ||
            strlen(p + used) < nlen + 1 || p[used + nlen] != ';') {
            tg_log(TG_LOG_WARN, "upgrade: cannot read " TG_SHM_ENV " at \"%.40s\"", p);
            break;
        }
        tg_str_t name = {p + used, nlen};
        p += used + nlen + 1;
        struct stat st;
        if (fd <= 2 || fstat(fd, &st) != 0 || (size_t)st.st_size != size ||
            map_create(name, tag, size, fd) == NULL) {
            tg_log(TG_LOG_WARN, "upgrade: shared memory zone \"%.*s\" (%s) not taken over",
                   TG_STR_FMT(name), tag);
            if (fd > 2) close(fd);
            continue;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        n++;
    }
    unsetenv(TG_SHM_ENV);
    return n;
}

void tg_shm_inherit_end(void)
{
    for (tg_shm_map_t *m = maps, *next; m; m = next) {
        next = m->next;
        if (m->refs == 0) map_drop(m);
    }
}

int tg_shm_mutex_init(tg_shm_mutex_t *mx)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0) return -1;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
             pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0 ||
             pthread_mutex_init(&mx->m, &a) != 0;
    pthread_mutexattr_destroy(&a);
    return rc ? -1 : 0;
}

int tg_shm_mutex_lock(tg_shm_mutex_t *mx)
{
    int rc = pthread_mutex_lock(&mx->m);
    if (rc == 0) return 0;
    if (rc == EOWNERDEAD) {
        /* the holder died: the lock is ours, the data it guards is suspect */
        pthread_mutex_consistent(&mx->m);
        return 1;
    }
    tg_log(TG_LOG_CRIT, "shared memory mutex: %s", strerror(rc));
    return -1;
}

void tg_shm_mutex_unlock(tg_shm_mutex_t *mx)
{
    pthread_mutex_unlock(&mx->m);
}
