/* The stall watchdog (see watchdog.h). The slots live in one anonymous
 * shared mapping the master makes before it forks, inherited by every
 * worker of every generation. A slot belongs to the worker whose pid it
 * holds: a new worker of a slot claims it at start, and an old one still
 * finishing after a reload then stops writing there (it is not watched). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <ev.h>
#include "watchdog.h"
#include "core.h"
#include "log.h"

struct tg_watchdog_slot_s {
    volatile pid_t pid;
    volatile int64_t busy_since; /* ms, monotonic: the loop woke up; 0: waiting */
    volatile int running;        /* a Lua hook runs */
    char script[256];            /* the last hook's script */
    char phase[24];
    char trace[256];             /* "source:line" of the last trace started in it */
};

static tg_watchdog_slot_t *slots;      /* TG_MAX_WORKERS of them */
static tg_watchdog_slot_t *mine;       /* this worker's, while it holds its pid */
static pid_t my_pid;
static const char *last_script; /* what script[] holds, to copy it only when it changes */
/* master: the busy_since of each slot's long turn outside Lua already warned about */
static int64_t warned[TG_MAX_WORKERS];
static ev_prepare prepare_w;
static ev_check check_w;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tg_watchdog_init(void)
{
    if (slots)
        return 0;
    void *p = mmap(NULL, TG_MAX_WORKERS * sizeof(tg_watchdog_slot_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        tg_log_errno(TG_LOG_ERROR, "watchdog: mmap()");
        return -1;
    }
    slots = p;
    return 0;
}

int tg_watchdog_check(int slot, pid_t pid, int64_t timeout_ms)
{
    if (slots == NULL || timeout_ms <= 0 || slot < 0 || slot >= TG_MAX_WORKERS)
        return 0;
    tg_watchdog_slot_t *s = &slots[slot];
    int64_t since = s->busy_since;
    if (s->pid != pid || since == 0)
        return 0;
    int64_t stalled = now_ms() - since;
    if (stalled <= timeout_ms)
        return 0;
    if (!s->running) {
        /* outside Lua: C code that ends (one proxy read loop compressing a
         * fast stream can hold the loop for seconds on a loaded machine);
         * killing it would cut healthy responses, so say it once */
        if (warned[slot] != since)
            tg_log(TG_LOG_WARN, "worker %d busy for %.1fs outside Lua without returning to its "
                                "event loop", (int)pid, (double)stalled / 1000.0);
        warned[slot] = since;
        return 0;
    }
    char script[256], phase[24], trace[256];
    memcpy(script, s->script, sizeof(script));
    memcpy(phase, s->phase, sizeof(phase));
    memcpy(trace, s->trace, sizeof(trace));
    script[sizeof(script) - 1] = phase[sizeof(phase) - 1] = trace[sizeof(trace) - 1] = '\0';
    size_t n = strlen(script);
    int same = trace[0] && strncmp(trace, script, n) == 0 && trace[n] == ':';
    /* the line is the last trace's: a compiled loop is where it stalls */
    tg_log(TG_LOG_ERROR, "worker %d stalled for %.1fs in %s (%s)%s%s, killed", (int)pid,
           (double)stalled / 1000.0, trace[0] ? trace : script, phase,
           trace[0] && !same ? ", called from " : "", trace[0] && !same ? script : "");
    return 1;
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (mine->pid == my_pid)
        mine->busy_since = 0;
}

static void on_check(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (mine->pid == my_pid)
        mine->busy_since = now_ms();
}

void tg_watchdog_start(struct ev_loop *loop, int slot)
{
    if (slots == NULL || slot < 0 || slot >= TG_MAX_WORKERS)
        return;
    mine = &slots[slot];
    mine->script[0] = mine->trace[0] = '\0';
    mine->running = 0;
    mine->busy_since = now_ms(); /* starting up counts as busy */
    mine->pid = my_pid = getpid();
    /* highest priority: the watchers run first after the wait and last
     * before it, so the time between covers all the callbacks */
    ev_prepare_init(&prepare_w, on_prepare);
    ev_set_priority(&prepare_w, EV_MINPRI);
    ev_prepare_start(loop, &prepare_w);
    ev_check_init(&check_w, on_check);
    ev_set_priority(&check_w, EV_MAXPRI);
    ev_check_start(loop, &check_w);
    ev_unref(loop); /* they must not keep the loop alive at shutdown */
    ev_unref(loop);
}

void tg_watchdog_hook(const char *script, const char *phase)
{
    if (mine == NULL || mine->pid != my_pid)
        return;
    mine->trace[0] = '\0';
    if (script == NULL) {
        mine->running = 0;
        return;
    }
    if (script != last_script) {
        snprintf(mine->phase, sizeof(mine->phase), "%s", phase);
        snprintf(mine->script, sizeof(mine->script), "%s", script);
        last_script = script;
    } else if (strcmp(mine->phase, phase) != 0) {
        snprintf(mine->phase, sizeof(mine->phase), "%s", phase);
    }
    mine->running = 1;
}

void tg_watchdog_trace(const char *source, int line)
{
    if (mine == NULL || mine->pid != my_pid || !mine->running)
        return;
    snprintf(mine->trace, sizeof(mine->trace), "%s:%d", source[0] == '@' ? source + 1 : source,
             line);
}
