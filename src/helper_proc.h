/* A helper process of the master: the ACME client (src/acme.c) and the OCSP
 * fetcher (src/ocsp.c). Sequential code with bounded waits, kept off the
 * workers' paths and out of the master's loop.
 *
 * The master forks one per generation after the workers (a reload stops the
 * previous one first). The child closes the listening sockets (it serves
 * nothing), runs `as_root` while still root (to open files only root reads),
 * takes the workers' user, dies with the master (PR_SET_PDEATHSIG) and runs
 * `run`, which never returns. A helper that dies is started again
 * RESPAWN_DELAY (5 s) later: the master polls tg_helper_due from its timer. */
#ifndef TG_HELPER_PROC_H
#define TG_HELPER_PROC_H

#include <sys/types.h>
#include "core.h"

typedef struct {
    const char *name;  /* the log prefix: "acme", "ocsp" */
    pid_t pid;         /* 0: none */
    pid_t stopping;    /* the previous generation's helper, being stopped */
    double respawn_at; /* > 0: start again at this time (monotonic seconds) */
} tg_helper_t;

/* Stop the running helper and fork a new one; `as_root` may be NULL, its
 * result is `run`'s `arg`. `what` ends the log line ("for 2 certificates"). */
void tg_helper_fork(tg_helper_t *h, tg_config_t *c, void *(*as_root)(tg_config_t *c),
                    void (*run)(tg_config_t *c, void *arg), const char *what);
/* 1 when a helper that died is due to be started again. */
int tg_helper_due(tg_helper_t *h);
/* 1 when `pid` was this helper (a crash is logged and the restart planned). */
int tg_helper_reaped(tg_helper_t *h, pid_t pid, int status);
/* SIGTERM to the running helper; no restart. */
void tg_helper_stop(tg_helper_t *h);
/* CLOCK_MONOTONIC in seconds. */
double tg_helper_now(void);

#endif
