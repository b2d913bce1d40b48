/* Binary upgrade (upgrade.c): the old master execs the new binary as a new
 * master that inherits the listening sockets through the environment, and
 * the new one tells the old one through a pipe when its workers are up.
 * The state machine (pid files, stopping the old master) is in master.c. */
#ifndef TG_UPGRADE_H
#define TG_UPGRADE_H

#include <sys/types.h>
#include "core.h"

/* Environment variables of the hand-over (read and removed by the new master). */
#define TG_UPGRADE_LISTEN_ENV "TOLLGATE_LISTEN_FDS" /* "ADDR#SLOT=FD;..." */
#define TG_UPGRADE_READY_ENV "TOLLGATE_UPGRADE_FD"  /* write end of the "up" pipe */

/* Remember the command line (call first in main, before getopt permutes it):
 * the new master is started with the same arguments, less -d. The binary is
 * the path the master was started with, made absolute against the start-up
 * directory; a bare name found through PATH is taken from /proc/self/exe. */
void tg_upgrade_set_argv(int argc, char **argv);

/* Old master: fork and exec the new binary, passing every listening socket of
 * `c` (close-on-exec cleared in the child only). Returns the child's pid and
 * sets *ready_fd to the read end of the pipe the new master writes one byte
 * on once its workers are up (EOF if it dies first); -1 on failure. */
pid_t tg_upgrade_spawn(tg_config_t *c, int *ready_fd);

/* New master: read and remove the environment of the hand-over. Returns 1
 * when this process was started by an upgrade, else 0. */
int tg_upgrade_inherit(void);

/* New master: the inherited socket bound to `ls`'s address for worker slot
 * `slot` (close-on-exec set again), or -1 when there is none. Each is given
 * out once. */
int tg_upgrade_take_listen_fd(const tg_listen_t *ls, int slot);

/* New master: close the inherited sockets the config did not take. */
void tg_upgrade_close_unused(void);

/* New master: tell the old master that every worker is up. 0, or -1 when
 * this master was not started by an upgrade (nothing to tell). */
int tg_upgrade_report_ready(void);

#endif
