/* @public The stall watchdog: the master kills a worker whose event loop has
 * not come back to wait for `worker_stall_timeout` while a Lua hook runs (a
 * Lua loop compiled by the JIT, which the instruction limit cannot stop)
 * and respawns it; a turn that long outside Lua is only logged.
 *
 * One shared page, mapped by the master before it forks the first worker,
 * holds a slot per worker slot. A worker writes into its own: the time its
 * loop woke up (ev_check), zero when it goes back to wait (ev_prepare, so an
 * idle worker is never "stalled"), and, while a Lua hook runs, the script
 * and phase (and the line of the last JIT trace started in that run). The
 * master reads the slots on every turn of its own loop. Writers and the
 * reader share no lock: the text is only for the log line. */
#ifndef TG_WATCHDOG_H
#define TG_WATCHDOG_H

#include <stdint.h>
#include <sys/types.h>

typedef struct tg_watchdog_slot_s tg_watchdog_slot_t;
struct ev_loop;

/* Master, once before the first fork: map the slots. 0 or -1 (logged; the
 * gateway then runs without a watchdog). */
int tg_watchdog_init(void);
/* Master: is the worker `pid` of `slot` stalled in a Lua hook for longer
 * than timeout_ms? If so, logs where and returns 1 (the caller kills it).
 * Busy that long outside Lua: a warning (once per turn), 0. */
int tg_watchdog_check(int slot, pid_t pid, int64_t timeout_ms);

/* Worker start (before module init, so a stall there counts too): claim
 * `slot` and watch `loop`. */
void tg_watchdog_start(struct ev_loop *loop, int slot);
/* A Lua hook starts running `script` in `phase` (names, copied), or ends
 * (script NULL). */
void tg_watchdog_hook(const char *script, const char *phase);
/* The JIT started a trace at source:line during the hook. */
void tg_watchdog_trace(const char *source, int line);

#endif
