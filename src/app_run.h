/* The master's side of the apps: the supervisor (src/app.c) and the
 * control channel of `tollgate -s status|restart-app` (src/app_ctl.c). */
#ifndef TG_APP_RUN_H
#define TG_APP_RUN_H

#include <signal.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct tg_config_s tg_config_t;

/* Start the apps of the first config. */
void tg_app_start(tg_config_t *c);
/* A reload: the apps of `next` take over the running processes of the same
 * name; a changed block is restarted rolling, a new one started, a removed
 * one drained and stopped. Call before the previous config is destroyed
 * (the running apps still point into it). */
void tg_app_reload(tg_config_t *next);
/* 1 when any app is supervised (the master then waits in tg_app_wait). */
int tg_app_any(void);
/* Wait up to timeout_ms for one of the master's signals (`set`, blocked),
 * an instance's output or a probe's socket. */
void tg_app_wait(const sigset_t *set, int timeout_ms);
/* Advance every app: output, probes, restarts, drains, rolling restarts. */
void tg_app_tick(void);
/* A child exited: 1 when it was an app instance (handled), else 0. */
int tg_app_reaped(pid_t pid, int status);
/* Stop every instance (SIGTERM, SIGKILL after stop_timeout) and wait. */
void tg_app_stop_all(void);
/* USR1: reopen the apps' log files. */
void tg_app_reopen_logs(void);
/* Start a rolling restart of app `name`; `reply`: answer the waiting
 * client when it ends (tg_app_ctl_reply). 0, -1 no such app, -2 one is
 * under way. */
int tg_app_restart(const char *name, int reply);
/* The instances as a table (pid, state, restarts, RSS, uptime, in flight). */
void tg_app_status(FILE *f);

/* SIGWINCH in the master: run the command a client left next to the pid
 * file (PIDFILE.ctl). */
void tg_app_ctl_handle(tg_config_t *c);
/* Answer the waiting client (PIDFILE.ctl.out); "error ..." means failure. */
void tg_app_ctl_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* `tollgate -s status` or `-s restart-app NAME`: leave the command, signal
 * the master, wait for the answer and print it. The exit code. */
int tg_app_ctl_send(tg_config_t *c, const char *cmd, const char *arg);

#endif
