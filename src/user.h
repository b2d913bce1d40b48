/* The workers' credentials (src/user.c): `user NAME [GROUP]` resolved at
 * config time, switched to in each worker right after fork, before it
 * accepts anything; the master keeps root for the listeners, the keys and
 * reopening the logs, and gives the workers the log files they write.
 * @public: a module that writes files gives them over in its own_logs hook. */
#ifndef TG_USER_H
#define TG_USER_H

#include <sys/types.h>
#include "arena.h"
#include "str.h"

typedef struct {
    const char *name;  /* NULL: workers keep the master's credentials */
    const char *group; /* the group's name, for messages */
    uid_t uid;
    gid_t gid;
    int explicit;      /* 1: from the `user` directive, 0: the default (nobody) */
} tg_user_t;

/* Resolve NAME (and GROUP, else NAME's primary group) into *u. Returns NULL,
 * or an error message in `a` naming what is unknown. Refuses root: a worker
 * never runs as root. */
const char *tg_user_resolve(tg_arena_t *a, tg_user_t *u, tg_str_t name, tg_str_t group);

/* The default when the config has no `user`: nobody, group nogroup (else
 * nobody's own group). Returns NULL or an error message in `a`. */
const char *tg_user_default(tg_arena_t *a, tg_user_t *u);

/* 1 when workers switch to u: it is set and this process runs as root. */
int tg_user_switches(const tg_user_t *u);

/* In a new worker: setgid, initgroups, setuid to u, then check that root
 * cannot be regained. Returns 0, or -1 (logged) and the worker must exit. */
int tg_user_drop(const tg_user_t *u);

/* In the master: create `path` if missing (a rotated log) and make u its
 * owner, so that workers running as u can reopen it. 0 or -1 (logged). */
int tg_user_own_file(const tg_user_t *u, const char *path);

#endif
