/* The app supervisor, in the master (workers only route). For each app block
 * it keeps `instances` processes running in the slots of its upstream, and
 * opens a slot's gate (shared memory, upstream.h) only while its instance is
 * ready: it passed its readiness probe (src/app_probe.c) within
 * `ready_timeout`, and, with a health_check, keeps passing it.
 *
 *   crash          the slot restarts after restart_backoff's delay, doubling
 *                  from MIN to MAX while it keeps crashing (reset once an
 *                  instance lived for 30 s)
 *   max_memory     an instance above it is replaced like a rolling restart of
 *                  that one slot: the new one ready first, then the old drained
 *   rolling restart (tollgate -s restart-app, or a reload that changed the
 *                  block): for each running instance, one at a time: start a
 *                  new one in a free slot, wait until it is ready (its gate
 *                  opens: traffic goes to it), close the old one's gate, wait
 *                  until the workers have no request in flight to it, SIGTERM,
 *                  SIGKILL after stop_timeout. A new instance that exits or is
 *                  not ready in time stops the rollout: it is killed, the old
 *                  instances were never touched (rollback)
 *
 * An instance runs `/bin/sh -c "exec COMMAND"` in its own process group (the
 * signals reach what it spawns), with PORT (or the socket path),
 * TOLLGATE_INSTANCE, TOLLGATE_APP and the block's env, as its user, in its
 * cwd, and dies with the master (PR_SET_PDEATHSIG). Its stdout and stderr go
 * through a pipe the master reads into the app's log, each line prefixed
 * with the time and "NAME#SLOT".
 *
 * The master has no event loop: tg_app_wait polls the pipes, the probes and
 * a signalfd of the master's signals, then tg_app_tick advances every state
 * machine. The supervisor's state is process-wide (it outlives configs: a
 * reload hands the running processes to the next config's app of the same
 * name). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "app.h"
#include "app_probe.h"
#include "app_run.h"
#include "core.h"
#include "log.h"

#define LIFE_RESETS_BACKOFF 30.0 /* seconds an instance must live to reset its backoff */
#define DRAIN_MIN 0.5            /* seconds a closed gate waits for picks in progress */

typedef struct {
    pid_t pid;
    tg_app_state_t state;
    int wanted;        /* this slot should run an instance */
    int killed;        /* SIGKILL sent */
    int not_ready;     /* killed for missing ready_timeout: its exit is a failure */
    double since;      /* monotonic time the state began */
    double restart_at; /* CRASHED: when to start again */
    double started;
    int crashes; /* in a row, for the backoff */
    int log_fd;  /* read end of its output pipe, -1 */
    char line[2048];
    size_t linelen;
    tg_app_probe_t probe;
    double next_probe, next_rss;
    int hc_fails, hc_passes;
} inst_t;

typedef struct app_rt_s {
    char name[256];
    tg_app_t *conf;
    tg_app_shm_t *shm;
    inst_t inst[TG_APP_MAX_SLOTS];
    int log_fd; /* the app's log file, -1: the master's stdout/stderr */
    const char *log_path;
    int removed;         /* gone from the config: stop everything, then forget it */
    struct kept_s *kept; /* removed: what it still needs of its config and zone */
    /* rolling restart */
    int roll;         /* under way */
    int roll_pending; /* another one asked for while one runs */
    int roll_queue[TG_APP_MAX_SLOTS], roll_n, roll_pos;
    int roll_new, roll_old; /* slots of the step under way, -1 */
    int roll_failed;
    int roll_reply; /* a `tollgate -s restart-app` waits for the end */
    struct app_rt_s *next;
} app_rt_t;

/* A removed app outlives its config and zone: the settings its stop still
 * reads, and its slots. */
typedef struct kept_s {
    tg_app_t conf;
    tg_app_shm_t shm;
} kept_t;

static app_rt_t *apps;
static int sigfd = -1;

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static tg_app_slot_t *slot_of(app_rt_t *rt, int s)
{
    return &rt->shm->slots[s];
}

static void set_state(app_rt_t *rt, int s, tg_app_state_t st)
{
    inst_t *in = &rt->inst[s];
    in->state = st;
    in->since = now_sec();
    /* the gate is the only thing workers act on: open exactly while ready */
    atomic_store(&slot_of(rt, s)->gate.open, st == TG_APP_READY);
    atomic_store(&slot_of(rt, s)->state, (int32_t)st);
}

static int nslots(const app_rt_t *rt)
{
    return rt->conf->instances + 1;
}

/* ---- logs ------------------------------------------------------------------ */

static void open_log(app_rt_t *rt)
{
    const char *path = rt->conf->log;
    if (rt->log_fd >= 0) close(rt->log_fd);
    rt->log_fd = -1;
    rt->log_path = path;
    if (path && (rt->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        tg_log_errno(TG_LOG_ERROR, "app %s: cannot open its log %s", rt->name, path);
}

static void log_line(app_rt_t *rt, int s, const char *p, size_t n)
{
    if (rt->log_fd < 0) return;
    char head[320];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t h = strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%SZ ", &tm);
    h += (size_t)snprintf(head + h, sizeof(head) - h, "%s#%d: ", rt->name, s);
    struct iovec iov[3] = {{head, h}, {(void *)p, n}, {"\n", 1}};
    ssize_t rc = writev(rt->log_fd, iov, 3);
    (void)rc;
}

/* Read what the instance wrote; complete lines go to the log, a line longer
 * than the buffer goes in pieces. At EOF (or `flush`) the rest goes too. */
static void read_output(app_rt_t *rt, int s, int flush)
{
    inst_t *in = &rt->inst[s];
    while (in->log_fd >= 0) {
        ssize_t n = read(in->log_fd, in->line + in->linelen, sizeof(in->line) - in->linelen);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                close(in->log_fd);
                in->log_fd = -1;
                flush = 1;
            }
            break;
        }
        in->linelen += (size_t)n;
        char *start = in->line, *nl;
        while ((nl = memchr(start, '\n', in->linelen - (size_t)(start - in->line))) != NULL) {
            log_line(rt, s, start, (size_t)(nl - start));
            start = nl + 1;
        }
        in->linelen -= (size_t)(start - in->line);
        memmove(in->line, start, in->linelen);
        if (in->linelen == sizeof(in->line)) {
            log_line(rt, s, in->line, in->linelen);
            in->linelen = 0;
        }
    }
    if (flush && in->linelen) {
        log_line(rt, s, in->line, in->linelen);
        in->linelen = 0;
    }
}

/* ---- processes --------------------------------------------------------------- */

static void child_exec(tg_app_t *a, int s, int out_fd, pid_t master)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL); /* the master ignores it; exec would keep that */
    setpgid(0, 0);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) {
        dup2(null, 0);
        close(null);
    }
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        close(out_fd);
    }
    struct sockaddr_storage ss;
    socklen_t len;
    char addr[256], num[16];
    tg_app_slot_addr(a, s, &ss, &len, addr, sizeof(addr));
    unsetenv("NOTIFY_SOCKET"); /* systemd's readiness is the master's to say */
    setenv("PORT", addr, 1);
    if (a->unix_listen) setenv("TOLLGATE_SOCKET", addr, 1);
    snprintf(num, sizeof(num), "%d", s);
    setenv("TOLLGATE_INSTANCE", num, 1);
    setenv("TOLLGATE_APP", a->name.p, 1);
    for (int i = 0; i < a->nenv; i++) {
        const char *eq = strchr(a->env[i], '=');
        char key[256];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - a->env[i]), a->env[i]);
        setenv(key, eq + 1, 1);
    }
    if (a->cwd && chdir(a->cwd) != 0) {
        tg_log_errno(TG_LOG_ERROR, "app %s#%d: chdir(%s)", a->name.p, s, a->cwd);
        _exit(126);
    }
    if (a->user.name && tg_user_drop(&a->user) != 0) _exit(126);
    /* switching user cleared it: the instance must not outlive the master */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master) _exit(0);
    size_t n = strlen(a->command) + 6;
    char *cmd = malloc(n);
    if (cmd == NULL) _exit(126);
    snprintf(cmd, n, "exec %s", a->command);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    tg_log_errno(TG_LOG_ERROR, "app %s#%d: exec /bin/sh", a->name.p, s);
    _exit(127);
}

/* The directory of the sockets (/run/tollgate/...) made when missing, the
 * app's user's, so that the instances can create their sockets in it. */
static void make_socket_dir(const tg_app_t *a, const char *path)
{
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) return;
    *slash = '\0';
    struct stat st;
    if (stat(dir, &st) == 0) return;
    if (mkdir(dir, 0755) != 0) {
        tg_log_errno(TG_LOG_ERROR, "app %.*s: cannot make the socket directory %s",
                     TG_STR_FMT(a->name), dir);
        return;
    }
    if (tg_user_switches(&a->user) && chown(dir, a->user.uid, a->user.gid) != 0)
        tg_log_errno(TG_LOG_ERROR, "app %.*s: cannot give %s to user %s", TG_STR_FMT(a->name), dir,
                     a->user.name);
}

static void spawn(app_rt_t *rt, int s)
{
    tg_app_t *a = rt->conf;
    inst_t *in = &rt->inst[s];
    struct sockaddr_storage ss;
    socklen_t len;
    char addr[256];
    tg_app_slot_addr(a, s, &ss, &len, addr, sizeof(addr));
    struct stat st;
    /* a socket left by an instance that was killed: Node's listen() would fail */
    if (a->unix_listen && lstat(addr, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(addr);
    if (a->unix_listen) make_socket_dir(a, addr);
    int p[2] = {-1, -1};
    if (rt->log_fd >= 0 && pipe2(p, O_CLOEXEC) != 0)
        tg_log_errno(TG_LOG_WARN, "app %s#%d: pipe2(), its output is lost", rt->name, s);
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (p[0] >= 0) close(p[0]);
        child_exec(a, s, p[1], master);
    }
    if (p[1] >= 0) close(p[1]);
    if (pid < 0) {
        tg_log_errno(TG_LOG_CRIT, "app %s#%d: fork()", rt->name, s);
        if (p[0] >= 0) close(p[0]);
        in->restart_at = now_sec() + 1.0;
        set_state(rt, s, TG_APP_CRASHED);
        return;
    }
    setpgid(pid, pid); /* also here: signals sent before the child ran setpgid */
    if (p[0] >= 0) fcntl(p[0], F_SETFL, O_NONBLOCK);
    in->log_fd = p[0];
    in->linelen = 0;
    in->pid = pid;
    in->killed = in->not_ready = 0;
    in->started = now_sec();
    in->next_probe = 0;
    in->hc_fails = in->hc_passes = 0;
    tg_app_probe_stop(&in->probe);
    atomic_store(&slot_of(rt, s)->pid, (int32_t)pid);
    atomic_store(&slot_of(rt, s)->started, wall_ms());
    atomic_store(&slot_of(rt, s)->rss, 0);
    atomic_store(&slot_of(rt, s)->cpu_ms, 0);
    set_state(rt, s, TG_APP_STARTING);
    tg_log(TG_LOG_INFO, "app %s#%d: started pid %d on %s", rt->name, s, (int)pid, addr);
}

/* The instance's process group, so what it spawned stops too. */
static void signal_inst(inst_t *in, int sig)
{
    if (in->pid > 0 && kill(-in->pid, sig) != 0) kill(in->pid, sig);
}

/* Stop the instance of slot s: no traffic from now, SIGTERM now. */
static void stop_inst(app_rt_t *rt, int s)
{
    inst_t *in = &rt->inst[s];
    if (in->pid <= 0) {
        set_state(rt, s, TG_APP_FREE);
        return;
    }
    tg_app_probe_stop(&in->probe);
    set_state(rt, s, TG_APP_STOPPING);
    signal_inst(in, SIGTERM);
}

static int64_t read_rss(pid_t pid)
{
    char path[64];
    long pages = 0, rss = 0;
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

/* User + system CPU time of a process in ms (/proc/PID/stat fields 14 and
 * 15, after the command name, which may hold spaces and parentheses). */
static int64_t read_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (int64_t)((ut + st) * 1000ULL / (unsigned long long)hz) : 0;
}

/* ---- rolling restarts ---------------------------------------------------- */

static void roll_end(app_rt_t *rt, int ok, const char *msg)
{
    rt->roll = 0;
    if (ok)
        atomic_fetch_add(&rt->shm->rollouts, 1);
    else
        atomic_fetch_add(&rt->shm->rollbacks, 1);
    tg_log(ok ? TG_LOG_INFO : TG_LOG_ERROR, "app %s: %s", rt->name, msg);
    if (rt->roll_reply) {
        rt->roll_reply = 0;
        tg_app_ctl_reply(ok ? "ok %s\n" : "error %s\n", msg);
    }
}

/* Start replacing the instances in `queue` one at a time. */
static void roll_start(app_rt_t *rt, const int *queue, int n, const char *why)
{
    rt->roll = 1;
    rt->roll_pending = 0;
    rt->roll_n = n;
    rt->roll_pos = 0;
    rt->roll_new = rt->roll_old = -1;
    rt->roll_failed = 0;
    memcpy(rt->roll_queue, queue, (size_t)n * sizeof(int));
    tg_log(TG_LOG_INFO, "app %s: rolling restart of %d instance%s (%s)", rt->name, n,
           n == 1 ? "" : "s", why);
}

static void roll_all(app_rt_t *rt, const char *why)
{
    int q[TG_APP_MAX_SLOTS], n = 0;
    for (int s = 0; s < TG_APP_MAX_SLOTS; s++)
        if (rt->inst[s].wanted) q[n++] = s;
    roll_start(rt, q, n, why);
}

static void roll_step(app_rt_t *rt)
{
    if (rt->roll_new >= 0) {
        inst_t *nw = &rt->inst[rt->roll_new];
        if (rt->roll_failed) {
            /* rollback: the old instance was not touched */
            nw->wanted = 0;
            if (nw->pid > 0) stop_inst(rt, rt->roll_new);
            char msg[200];
            snprintf(msg, sizeof(msg),
                     "rolling restart stopped: the new instance #%d did not "
                     "become ready; the running instances keep serving",
                     rt->roll_new);
            rt->roll_new = -1;
            roll_end(rt, 0, msg);
            return;
        }
        if (nw->state != TG_APP_READY) return;
        /* the new one takes traffic: drain the old one */
        inst_t *old = &rt->inst[rt->roll_old];
        old->wanted = 0;
        if (old->pid > 0) {
            tg_app_probe_stop(&old->probe);
            set_state(rt, rt->roll_old, TG_APP_DRAINING);
        } else {
            set_state(rt, rt->roll_old, TG_APP_FREE);
        }
        rt->roll_new = -1;
        rt->roll_pos++;
        return;
    }
    if (rt->roll_pos == rt->roll_n) {
        /* done once the last old one has stopped: nothing of the old version runs */
        if (rt->roll_old >= 0 && rt->inst[rt->roll_old].state != TG_APP_FREE &&
            !rt->inst[rt->roll_old].wanted)
            return;
        char msg[200];
        snprintf(msg, sizeof(msg), "rolling restart done: %d instance%s replaced", rt->roll_n,
                 rt->roll_n == 1 ? "" : "s");
        roll_end(rt, 1, msg);
        return;
    }
    int old = rt->roll_queue[rt->roll_pos];
    if (!rt->inst[old].wanted) { /* gone meanwhile (a reload with fewer instances) */
        rt->roll_pos++;
        return;
    }
    /* a free slot for the new one: the previous old one must have exited */
    int f = -1;
    for (int s = 0; s < nslots(rt) && f < 0; s++)
        if (!rt->inst[s].wanted && rt->inst[s].state == TG_APP_FREE) f = s;
    if (f < 0) return;
    rt->roll_new = f;
    rt->roll_old = old;
    rt->roll_failed = 0;
    rt->inst[f].wanted = 1;
    rt->inst[f].crashes = 0;
    spawn(rt, f);
}

/* ---- the state machine ------------------------------------------------------- */

static double backoff(app_rt_t *rt, inst_t *in)
{
    double d = (double)rt->conf->backoff_min / 1000.0, max = (double)rt->conf->backoff_max / 1000.0;
    for (int i = 0; i < in->crashes && d < max; i++)
        d *= 2;
    in->crashes++;
    return d < max ? d : max;
}

/* A probe result for slot s: readiness while STARTING, health after. */
static void probe_result(app_rt_t *rt, int s, int pass)
{
    inst_t *in = &rt->inst[s];
    tg_health_conf_t *h = &rt->conf->health;
    double t = now_sec();
    if (in->state == TG_APP_STARTING) {
        if (pass) {
            const tg_user_t *w = rt->conf->workers_user;
            if (rt->conf->unix_listen && w && tg_user_switches(w)) {
                /* the workers connect as their user: give them the socket's group */
                struct sockaddr_storage ss;
                socklen_t len;
                char path[256];
                tg_app_slot_addr(rt->conf, s, &ss, &len, path, sizeof(path));
                if (chown(path, (uid_t)-1, w->gid) != 0 || chmod(path, 0660) != 0)
                    tg_log_errno(TG_LOG_WARN, "app %s#%d: cannot give %s to group %s", rt->name, s,
                                 path, w->group);
            }
            set_state(rt, s, TG_APP_READY);
            in->next_probe = t + (double)h->interval / 1000.0;
            tg_log(TG_LOG_INFO, "app %s#%d: ready (pid %d, %.1fs)", rt->name, s, (int)in->pid,
                   t - in->started);
        } else {
            in->next_probe = t + 0.1;
        }
        return;
    }
    in->next_probe = t + (double)h->interval / 1000.0;
    if (pass) {
        in->hc_fails = 0;
        if (in->state == TG_APP_UNHEALTHY && ++in->hc_passes >= h->passes) {
            in->hc_passes = 0;
            set_state(rt, s, TG_APP_READY);
            tg_log(TG_LOG_WARN, "app %s#%d: healthy again", rt->name, s);
        }
    } else {
        in->hc_passes = 0;
        if (in->state == TG_APP_READY && ++in->hc_fails >= h->fails) {
            in->hc_fails = 0;
            set_state(rt, s, TG_APP_UNHEALTHY);
            tg_log(TG_LOG_WARN, "app %s#%d: failed %d health checks, no traffic until it passes",
                   rt->name, s, h->fails);
        }
    }
}

static void tick_probe(app_rt_t *rt, int s, double t)
{
    inst_t *in = &rt->inst[s];
    tg_health_conf_t *h = &rt->conf->health;
    if (in->state != TG_APP_STARTING && !h->enabled) return;
    if (in->probe.fd < 0) {
        if (t < in->next_probe) return;
        struct sockaddr_storage ss;
        socklen_t len;
        char addr[256];
        tg_app_slot_addr(rt->conf, s, &ss, &len, addr, sizeof(addr));
        double timeout = h->enabled ? (double)h->timeout / 1000.0 : 1.0;
        if (tg_app_probe_start(&in->probe, &ss, len, h->enabled ? &h->path : NULL, t + timeout) !=
            0) {
            probe_result(rt, s, 0);
            return;
        }
    }
    int rc = tg_app_probe_step(&in->probe, t);
    if (rc != 0) probe_result(rt, s, rc > 0);
}

static void tick_inst(app_rt_t *rt, int s, double t)
{
    inst_t *in = &rt->inst[s];
    tg_app_t *a = rt->conf;
    switch (in->state) {
    case TG_APP_FREE:
        if (in->wanted && !rt->removed) spawn(rt, s);
        break;
    case TG_APP_CRASHED:
        if (!in->wanted || rt->removed)
            set_state(rt, s, TG_APP_FREE);
        else if (t >= in->restart_at)
            spawn(rt, s);
        break;
    case TG_APP_STARTING:
        if (t - in->since > (double)a->ready_timeout / 1000.0) {
            tg_log(TG_LOG_ERROR, "app %s#%d: not ready after %.1fs, killed", rt->name, s,
                   (double)a->ready_timeout / 1000.0);
            tg_app_probe_stop(&in->probe);
            signal_inst(in, SIGKILL);
            in->killed = in->not_ready = 1;
            if (s == rt->roll_new) rt->roll_failed = 1;
            set_state(rt, s, TG_APP_STOPPING);
            break;
        }
        tick_probe(rt, s, t);
        break;
    case TG_APP_READY:
    case TG_APP_UNHEALTHY:
        tick_probe(rt, s, t);
        if (t >= in->next_rss) {
            in->next_rss = t + 1.0;
            int64_t rss = read_rss(in->pid);
            atomic_store(&slot_of(rt, s)->rss, rss);
            atomic_store(&slot_of(rt, s)->cpu_ms, read_cpu_ms(in->pid));
            if (a->max_memory && rss > a->max_memory && !rt->roll) {
                tg_log(TG_LOG_WARN, "app %s#%d: RSS %lld bytes above max_memory %lld: replaced",
                       rt->name, s, (long long)rss, (long long)a->max_memory);
                atomic_fetch_add(&slot_of(rt, s)->restarts, 1);
                roll_start(rt, &s, 1, "max_memory");
            }
        }
        break;
    case TG_APP_DRAINING:
        if ((atomic_load(&slot_of(rt, s)->gate.inflight) <= 0 && t - in->since >= DRAIN_MIN) ||
            t - in->since > (double)a->stop_timeout / 1000.0)
            stop_inst(rt, s);
        break;
    case TG_APP_STOPPING:
        if (!in->killed && t - in->since > (double)a->stop_timeout / 1000.0) {
            tg_log(TG_LOG_WARN, "app %s#%d: pid %d still running %.1fs after SIGTERM, killed",
                   rt->name, s, (int)in->pid, (double)a->stop_timeout / 1000.0);
            signal_inst(in, SIGKILL);
            in->killed = 1;
        }
        break;
    }
}

void tg_app_tick(void)
{
    double t = now_sec();
    for (app_rt_t **pp = &apps; *pp;) {
        app_rt_t *rt = *pp;
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
            if (rt->inst[s].log_fd >= 0) read_output(rt, s, 0);
            tick_inst(rt, s, t);
        }
        if (rt->roll && !rt->removed)
            roll_step(rt);
        else if (rt->roll_pending && !rt->removed)
            roll_all(rt, "reload");
        int alive = 0;
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++)
            alive |= rt->inst[s].pid > 0;
        if (rt->removed && !alive) {
            tg_log(TG_LOG_INFO, "app %s: stopped and removed", rt->name);
            *pp = rt->next;
            if (rt->log_fd >= 0) close(rt->log_fd);
            free(rt->kept);
            free(rt);
            continue;
        }
        pp = &rt->next;
    }
}

int tg_app_reaped(pid_t pid, int status)
{
    for (app_rt_t *rt = apps; rt; rt = rt->next)
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
            inst_t *in = &rt->inst[s];
            if (in->pid != pid) continue;
            read_output(rt, s, 1);
            in->pid = 0;
            atomic_store(&slot_of(rt, s)->pid, 0);
            tg_app_probe_stop(&in->probe);
            int failed = WIFSIGNALED(status) || WEXITSTATUS(status) != 0;
            char how[64];
            if (WIFSIGNALED(status))
                snprintf(how, sizeof(how), "on signal %d", WTERMSIG(status));
            else
                snprintf(how, sizeof(how), "with code %d", WEXITSTATUS(status));
            int rolling_new = s == rt->roll_new && rt->roll;
            if (in->state == TG_APP_STOPPING && !rolling_new && !in->not_ready) {
                tg_log(TG_LOG_INFO, "app %s#%d: pid %d stopped (exited %s)", rt->name, s, (int)pid,
                       how);
                set_state(rt, s, in->wanted && !rt->removed ? TG_APP_CRASHED : TG_APP_FREE);
                in->restart_at = 0;
                return 1;
            }
            if (rolling_new) { /* roll_step rolls back */
                rt->roll_failed = 1;
                in->wanted = 0;
            }
            double t = now_sec();
            if (t - in->started > LIFE_RESETS_BACKOFF) in->crashes = 0;
            int again =
                in->wanted && !rt->removed &&
                (rt->conf->restart == TG_APP_RESTART_ALWAYS ||
                 (rt->conf->restart == TG_APP_RESTART_ON_FAILURE && (failed || in->not_ready)));
            if (!again) {
                tg_log(failed ? TG_LOG_WARN : TG_LOG_INFO, "app %s#%d: pid %d exited %s", rt->name,
                       s, (int)pid, how);
                in->wanted = 0;
                set_state(rt, s, TG_APP_FREE);
                return 1;
            }
            double d = backoff(rt, in);
            in->restart_at = t + d;
            atomic_fetch_add(&slot_of(rt, s)->restarts, 1);
            tg_log(TG_LOG_WARN, "app %s#%d: pid %d exited %s, restart in %.1fs", rt->name, s,
                   (int)pid, how, d);
            set_state(rt, s, TG_APP_CRASHED);
            return 1;
        }
    return 0;
}

/* ---- configs ----------------------------------------------------------------- */

static app_rt_t *rt_find(tg_str_t name)
{
    for (app_rt_t *rt = apps; rt; rt = rt->next)
        if (strlen(rt->name) == name.len && memcmp(rt->name, name.p, name.len) == 0) return rt;
    return NULL;
}

static void rt_adopt(app_rt_t *rt, tg_app_t *a)
{
    rt->conf = a;
    rt->shm = a->shm;
    if (rt->log_path == NULL || a->log == NULL || strcmp(rt->log_path, a->log) != 0)
        open_log(rt);
    else
        rt->log_path = a->log; /* the old config's string goes with it */
}

static void rt_create(tg_app_t *a)
{
    app_rt_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        tg_log(TG_LOG_CRIT, "app %.*s: out of memory, not started", TG_STR_FMT(a->name));
        return;
    }
    snprintf(rt->name, sizeof(rt->name), "%.*s", TG_STR_FMT(a->name));
    rt->log_fd = -1;
    rt->roll_new = rt->roll_old = -1;
    for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
        rt->inst[s].log_fd = -1;
        rt->inst[s].probe.fd = -1;
    }
    rt_adopt(rt, a);
    memset(rt->shm, 0, sizeof(*rt->shm));
    for (int s = 0; s < a->instances; s++)
        rt->inst[s].wanted = 1;
    rt->next = apps;
    apps = rt;
}

void tg_app_start(tg_config_t *c)
{
    for (tg_app_t *a = c->apps; a; a = a->next)
        rt_create(a);
    tg_app_tick();
}

/* The app is gone from the next config: drain and stop its instances. Its
 * config and zone go with the previous config, so the stop runs on a copy
 * that keeps only plain values (timeouts, restart policy); without memory
 * for it the instances are killed at once. */
static void rt_remove(app_rt_t *rt)
{
    tg_log(TG_LOG_INFO, "app %s: removed from the config, stopping it", rt->name);
    rt->removed = 1;
    rt->roll = 0;
    if (rt->roll_reply) {
        rt->roll_reply = 0;
        tg_app_ctl_reply("error app %s was removed by a reload\n", rt->name);
    }
    kept_t *k = calloc(1, sizeof(*k));
    for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
        inst_t *in = &rt->inst[s];
        in->wanted = 0;
        tg_app_probe_stop(&in->probe);
        if (k == NULL)
            signal_inst(in, SIGKILL);
        else if (in->pid > 0 && in->state != TG_APP_STOPPING)
            set_state(rt, s, TG_APP_DRAINING);
    }
    if (k == NULL) {
        /* tg_app_reload drops it: their exits are then the master's to log */
        tg_log(TG_LOG_CRIT, "app %s: out of memory, its instances are killed", rt->name);
        return;
    }
    k->conf.name = (tg_str_t){rt->name, strlen(rt->name)};
    k->conf.instances = rt->conf->instances;
    k->conf.stop_timeout = rt->conf->stop_timeout;
    k->conf.ready_timeout = rt->conf->ready_timeout;
    k->conf.backoff_min = rt->conf->backoff_min;
    k->conf.backoff_max = rt->conf->backoff_max;
    k->conf.restart = TG_APP_RESTART_NO;
    k->conf.shm = &k->shm;
    memcpy(&k->shm, rt->shm, sizeof(k->shm));
    rt->kept = k;
    rt->conf = &k->conf;
    rt->shm = &k->shm;
    rt->log_path = NULL; /* the log stays open for their last lines */
}

void tg_app_reload(tg_config_t *next)
{
    for (app_rt_t *rt = apps; rt; rt = rt->next) {
        if (rt->removed) continue; /* removed before, still stopping */
        tg_app_t *a = NULL;
        for (tg_app_t *x = next->apps; x; x = x->next)
            if (strlen(rt->name) == x->name.len && memcmp(rt->name, x->name.p, x->name.len) == 0)
                a = x;
        if (a == NULL) {
            /* gone: no traffic from the new workers; stop after the old ones drain */
            rt_remove(rt);
            continue;
        }
        uint64_t old_hash = rt->conf->hash;
        rt_adopt(rt, a);
        /* fewer instances: the last ones drain; the others run the old
         * settings, to replace when they changed; more: the next free slots,
         * started with the new settings */
        int wanted = 0, q[TG_APP_MAX_SLOTS], n = 0;
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
            if (!rt->inst[s].wanted) continue;
            if (++wanted <= a->instances) {
                q[n++] = s;
                continue;
            }
            rt->inst[s].wanted = 0;
            if (rt->inst[s].pid > 0) {
                tg_app_probe_stop(&rt->inst[s].probe);
                set_state(rt, s, TG_APP_DRAINING);
            }
        }
        for (int s = 0; s < nslots(rt) && n < a->instances; s++)
            if (!rt->inst[s].wanted && rt->inst[s].state == TG_APP_FREE) {
                rt->inst[s].wanted = 1;
                n++;
            }
        if (old_hash != a->hash) {
            if (rt->roll)
                rt->roll_pending = 1;
            else
                roll_start(rt, q, wanted < a->instances ? wanted : a->instances,
                           "reload: block changed");
        }
    }
    for (app_rt_t **pp = &apps; *pp;) { /* removed without memory to stop gracefully */
        app_rt_t *rt = *pp;
        if (rt->removed && rt->kept == NULL) {
            *pp = rt->next;
            if (rt->log_fd >= 0) close(rt->log_fd);
            for (int s = 0; s < TG_APP_MAX_SLOTS; s++)
                if (rt->inst[s].log_fd >= 0) close(rt->inst[s].log_fd);
            free(rt);
        } else {
            pp = &rt->next;
        }
    }
    for (tg_app_t *a = next->apps; a; a = a->next)
        if (rt_find(a->name) == NULL) rt_create(a);
    tg_app_tick();
}

/* ---- the master's loop -------------------------------------------------------- */

int tg_app_any(void)
{
    return apps != NULL;
}

void tg_app_wait(const sigset_t *set, int timeout_ms)
{
    struct pollfd fds[1 + 2 * 64];
    int n = 0;
    if (sigfd < 0) sigfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd >= 0) fds[n++] = (struct pollfd){sigfd, POLLIN, 0};
    int busy = 0;
    for (app_rt_t *rt = apps; rt; rt = rt->next)
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
            inst_t *in = &rt->inst[s];
            busy |= in->state == TG_APP_STARTING || in->state == TG_APP_DRAINING || rt->roll;
            if (n < (int)(sizeof(fds) / sizeof(fds[0])) && in->log_fd >= 0)
                fds[n++] = (struct pollfd){in->log_fd, POLLIN, 0};
            if (n < (int)(sizeof(fds) / sizeof(fds[0])) && in->probe.fd >= 0)
                fds[n++] = (struct pollfd){in->probe.fd, tg_app_probe_events(&in->probe), 0};
        }
    /* short steps while something is starting or draining: readiness is
     * noticed within 20 ms */
    poll(fds, (nfds_t)n, busy && timeout_ms > 20 ? 20 : timeout_ms);
}

void tg_app_stop_all(void)
{
    if (apps == NULL) return;
    double grace = 0;
    for (app_rt_t *rt = apps; rt; rt = rt->next) {
        rt->removed = 1;
        rt->roll = 0;
        if (rt->roll_reply) {
            rt->roll_reply = 0;
            tg_app_ctl_reply("error tollgate is stopping\n");
        }
        if ((double)rt->conf->stop_timeout / 1000.0 > grace)
            grace = (double)rt->conf->stop_timeout / 1000.0;
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
            rt->inst[s].wanted = 0;
            if (rt->inst[s].pid > 0 && rt->inst[s].state != TG_APP_STOPPING) stop_inst(rt, s);
        }
    }
    tg_log(TG_LOG_INFO, "stopping the apps");
    double deadline = now_sec() + grace + 2.0;
    while (apps && now_sec() < deadline) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            tg_app_reaped(pid, status);
        tg_app_tick(); /* SIGKILL after stop_timeout; frees the apps that are done */
        if (apps) poll(NULL, 0, 20);
    }
}

void tg_app_reopen_logs(void)
{
    for (app_rt_t *rt = apps; rt; rt = rt->next)
        if (rt->conf->log) open_log(rt);
}

/* ---- commands (src/app_ctl.c) ------------------------------------------------- */

int tg_app_restart(const char *name, int reply)
{
    app_rt_t *rt = rt_find(tg_str_c(name));
    if (rt == NULL || rt->removed) return -1;
    if (rt->roll) return -2;
    roll_all(rt, "restart-app");
    rt->roll_reply = reply;
    return 0;
}

void tg_app_status(FILE *f)
{
    int64_t now = wall_ms();
    fprintf(f, "%-16s %4s %8s %-10s %8s %10s %8s %10s %8s\n", "app", "slot", "pid", "state",
            "restarts", "rss", "cpu", "uptime", "inflight");
    for (app_rt_t *rt = apps; rt; rt = rt->next)
        for (int s = 0; s < TG_APP_MAX_SLOTS; s++) {
            inst_t *in = &rt->inst[s];
            tg_app_slot_t *sl = slot_of(rt, s);
            if (in->state == TG_APP_FREE && !in->wanted && sl->restarts == 0) continue;
            char rss[32] = "-", up[32] = "-", cpu[32] = "-";
            if (in->pid > 0) {
                snprintf(rss, sizeof(rss), "%.1fM", (double)read_rss(in->pid) / 1048576.0);
                snprintf(cpu, sizeof(cpu), "%.1fs", (double)read_cpu_ms(in->pid) / 1000.0);
                int64_t sec = (now - sl->started) / 1000;
                if (sec >= 3600)
                    snprintf(up, sizeof(up), "%lldh%02lldm", (long long)sec / 3600,
                             (long long)sec / 60 % 60);
                else
                    snprintf(up, sizeof(up), "%lldm%02llds", (long long)sec / 60,
                             (long long)sec % 60);
            }
            fprintf(f, "%-16s %4d %8d %-10s %8d %10s %8s %10s %8d\n", rt->name, s, (int)in->pid,
                    tg_app_state_name(in->state), (int)sl->restarts, rss, cpu, up,
                    (int)atomic_load(&sl->gate.inflight));
        }
}
