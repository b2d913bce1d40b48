/* The master process: owns the listening sockets (one SO_REUSEPORT socket per
 * listener and worker slot, kept across reloads so no queued connection is
 * ever reset), forks the workers, and turns signals into actions:
 *   HUP   reload: load and check the new config; on error log it and keep
 *         the running one; else start new workers and stop the old ones
 *         gracefully
 *   TERM  graceful stop; INT, QUIT fast stop; USR1 reopen the logs
 *   USR2  binary upgrade: the pid file becomes PIDFILE.oldbin and the binary
 *         is exec'd as a new master that inherits the listening sockets
 *         (upgrade.c); once its workers are up it says so on a pipe and this
 *         master stops gracefully, handing systemd's MAINPID over. If it
 *         exits before, this one keeps serving and takes its pid file back.
 *   CHLD  a worker of the current generation that died is respawned, after
 *         a delay that grows while it keeps crashing; an app instance that
 *         exited goes to the app supervisor (app.c)
 *   WINCH a command from `tollgate -s status|restart-app` (app_ctl.c)
 * With app blocks it also supervises the Node processes (src/app.c): it
 * then waits in poll (tg_app_wait) rather than sigtimedwait alone.
 * Started as root, it stays root (listeners, keys, reopening logs) and each
 * worker switches to the `user` (default nobody) right after fork; the log
 * files workers append to are given to that user first.
 * Under systemd (Type=notify, NOTIFY_SOCKET set) it sends READY=1 once every
 * worker of the generation is up (each writes a byte on its slot's pipe just
 * before it accepts), RELOADING=1 on HUP and READY=1 again once the new
 * workers are up (or at once when the reload failed), STOPPING=1 on stop.
 * It waits for signals with sigtimedwait, so it needs no event loop. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include "master.h"
#include "worker_main.h"
#include "log.h"
#include "stats.h"
#include "user.h"
#include "upgrade.h"
#include "log_syslog.h"
#include "app_run.h"
#include "watchdog.h"
#include "acme.h"
#include "ocsp.h"

typedef struct {
    pid_t pid;        /* 0 = not running */
    int generation;   /* config generation it runs */
    double respawn_at; /* > 0: respawn pending at this time */
    int crashes;       /* recent crashes, for the backoff */
    double last_crash;
    int ready_fd;      /* read end of the worker's "up" pipe, -1 when none */
    int ready;         /* the worker wrote its byte */
    pid_t stall_killed; /* the watchdog killed it; not reaped yet */
} slot_t;

static tg_config_t *current;
static const char *conf_path;
static slot_t slots[TG_MAX_WORKERS];
static int nworkers;
static pid_t old_pids[4096]; /* workers of older generations still finishing */
static int old_slots[4096];  /* and their slots */
static int nold;
static int notify_pending; /* READY=1 is due once every current worker is up */
/* binary upgrade, old master's side: the new master while it starts */
static pid_t upgrade_pid;    /* 0 = none under way */
static int upgrade_fd = -1;  /* read end of its "up" pipe */
static int upgraded;         /* the new master is up: this one is stopping */

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1 when the comma-separated controller list `ctls` names `want`. */
static int has_controller(const char *ctls, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = ctls; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, want, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* The CPU quota of this process's cgroup, in CPUs rounded up, or 0 when
 * none is set: cgroup v2's cpu.max ("max 100000" or "150000 100000"), else
 * v1's cpu.cfs_quota_us / cpu.cfs_period_us. */
static int cgroup_cpu_quota(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f == NULL)
        return 0;
    char line[512], path[600];
    long quota = -1, period = 0;
    while (quota < 0 && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *ctl = strchr(line, ':'), *cg = ctl ? strchr(ctl + 1, ':') : NULL;
        if (cg == NULL)
            continue;
        *cg++ = '\0';
        ctl++;
        FILE *q = NULL;
        if (*ctl == '\0') { /* v2: "0::/path" */
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", cg);
            if ((q = fopen(path, "r")) != NULL) {
                char max[32];
                if (fscanf(q, "%31s %ld", max, &period) == 2 && strcmp(max, "max") != 0)
                    quota = atol(max);
                fclose(q);
            }
        } else if (has_controller(ctl, "cpu")) {
            /* v1: "N:cpu,cpuacct:/path" */
            const char *dirs[] = {"cpu,cpuacct", "cpu", "cpuacct,cpu"};
            for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && quota < 0; i++) {
                long qv = -1, pv = 0;
                snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/cpu.cfs_quota_us", dirs[i], cg);
                if ((q = fopen(path, "r")) == NULL)
                    continue;
                int ok = fscanf(q, "%ld", &qv) == 1;
                fclose(q);
                snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/cpu.cfs_period_us", dirs[i], cg);
                if (ok && qv > 0 && (q = fopen(path, "r")) != NULL) {
                    if (fscanf(q, "%ld", &pv) == 1 && pv > 0) {
                        quota = qv;
                        period = pv;
                    }
                    fclose(q);
                }
            }
        }
    }
    fclose(f);
    if (quota <= 0 || period <= 0)
        return 0;
    return (int)((quota + period - 1) / period);
}

/* `workers auto`: the CPUs this process may run on (its affinity mask, as
 * taskset or a cpuset sets it), at most its cgroup's CPU quota. */
static int workers_auto(void)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    int quota = cgroup_cpu_quota();
    return quota > 0 && quota < n ? quota : n;
}

static int workers_wanted(tg_config_t *c)
{
    int n = (int)c->main->workers;
    if (n <= 0)
        n = workers_auto();
    return n > TG_MAX_WORKERS ? TG_MAX_WORKERS : n;
}

static int open_socket(tg_listen_t *ls)
{
    int fd = socket(ls->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, defer = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ls->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer));
    if (bind(fd, (struct sockaddr *)&ls->addr, ls->addrlen) != 0 || listen(fd, ls->backlog) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Give `next` its sockets: taken over from `prev` where the address and slot
 * match, opened otherwise. On failure nothing of `prev` is touched. */
static int open_listeners(tg_config_t *next, tg_config_t *prev, int n)
{
    for (tg_listen_t *ls = next->listens; ls; ls = ls->next) {
        tg_listen_t *old = NULL;
        for (tg_listen_t *o = prev ? prev->listens : NULL; o; o = o->next)
            if (o->addrlen == ls->addrlen && memcmp(&o->addr, &ls->addr, o->addrlen) == 0)
                old = o;
        for (int i = 0; i < n; i++) {
            if (old && old->fds[i] >= 0) {
                ls->fds[i] = old->fds[i];
                continue;
            }
            /* a master started by an upgrade first takes its predecessor's */
            if ((ls->fds[i] = tg_upgrade_take_listen_fd(ls, i)) >= 0)
                continue;
            if ((ls->fds[i] = open_socket(ls)) < 0) {
                tg_log_errno(TG_LOG_CRIT, "%s:%d: cannot listen on %s", ls->file, ls->line,
                             ls->text);
                /* close only what was opened for `next` */
                for (tg_listen_t *l = next->listens; l; l = l->next)
                    for (int k = 0; k < TG_MAX_WORKERS; k++) {
                        int shared = 0;
                        for (tg_listen_t *o = prev ? prev->listens : NULL; o; o = o->next)
                            shared |= o->fds[k] == l->fds[k] && l->fds[k] >= 0;
                        if (l->fds[k] >= 0 && !shared)
                            close(l->fds[k]);
                        l->fds[k] = -1;
                    }
                return -1;
            }
        }
    }
    return 0;
}

/* Close `prev`'s sockets that `next` does not use. */
static void close_unused(tg_config_t *prev, tg_config_t *next)
{
    for (tg_listen_t *o = prev->listens; o; o = o->next)
        for (int i = 0; i < TG_MAX_WORKERS; i++) {
            if (o->fds[i] < 0)
                continue;
            int used = 0;
            for (tg_listen_t *l = next ? next->listens : NULL; l; l = l->next)
                used |= l->fds[i] == o->fds[i];
            if (!used)
                close(o->fds[i]);
            o->fds[i] = -1;
        }
}

static void close_ready(slot_t *s)
{
    if (s->ready_fd >= 0)
        close(s->ready_fd);
    s->ready_fd = -1;
}

static void spawn(int slot)
{
    int p[2] = {-1, -1};
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        tg_log_errno(TG_LOG_WARN, "pipe2(): worker #%d counts as up at once", slot);
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        tg_log_errno(TG_LOG_CRIT, "fork()");
        if (p[0] >= 0) {
            close(p[0]);
            close(p[1]);
        }
        slots[slot].respawn_at = now_sec() + 1.0;
        return;
    }
    if (pid == 0) {
        for (int i = 0; i < TG_MAX_WORKERS; i++)
            close_ready(&slots[i]); /* the other workers' pipes */
        if (p[0] >= 0)
            close(p[0]);
        tg_worker_ready_fd = p[1];
        /* before the worker reads a byte from a client; its logs opened first */
        for (int i = 0; i < tg_nmodules; i++)
            if (tg_modules[i]->open_logs_early)
                tg_modules[i]->open_logs_early(current);
        if (tg_user_drop(&current->main->user) != 0)
            _exit(2);
        /* switching user cleared the parent-death signal fork does not keep
         * anyway: set it now, and leave if the master died before that */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            _exit(0);
        tg_worker_main(current, slot); /* never returns */
    }
    if (p[1] >= 0)
        close(p[1]);
    close_ready(&slots[slot]);
    slots[slot].ready_fd = p[0];
    slots[slot].ready = p[0] < 0;
    slots[slot].pid = pid;
    slots[slot].generation = current->generation;
    slots[slot].respawn_at = 0;
}

/* Collect the "up" bytes; once every current worker is up and a READY=1 is
 * due, send it. A worker that died before it was up leaves EOF: its respawn
 * brings a new pipe. */
static void check_ready(void)
{
    int all = 1;
    for (int i = 0; i < nworkers; i++) {
        slot_t *s = &slots[i];
        if (!s->ready && s->ready_fd >= 0) {
            char b;
            ssize_t n = read(s->ready_fd, &b, 1);
            if (n == 1)
                s->ready = 1;
            if (n >= 0 || errno != EAGAIN)
                close_ready(s);
        }
        all &= s->ready;
    }
    if (!notify_pending || !all)
        return;
    notify_pending = 0;
    tg_log(TG_LOG_INFO, "all %d workers up", nworkers);
    /* started by an upgrade: the old master, still systemd's main process,
     * hands MAINPID over and says READY=1 for us */
    if (tg_upgrade_report_ready() == 0)
        return;
    sd_notifyf(0, "READY=1\nSTATUS=%d workers, generation %d", nworkers, current->generation);
}

/* The files workers open for writing (the error log, the access logs) made
 * theirs, when they switch user. Called before workers start and on USR1,
 * after the master reopened the error log (a rotated file is created here). */
static void give_files(tg_config_t *c)
{
    if (!tg_log_syslog_is(c->main->error_log))
        tg_user_own_file(&c->main->user, c->main->error_log);
    for (int i = 0; i < tg_nmodules; i++)
        if (tg_modules[i]->own_logs)
            tg_modules[i]->own_logs(c);
}

static void user_notice(tg_config_t *c)
{
    const tg_user_t *u = &c->main->user;
    if (tg_user_switches(u))
        tg_log(TG_LOG_INFO, "workers run as user %s, group %s", u->name, u->group);
    else if (u->explicit)
        tg_log(TG_LOG_WARN, "\"user %s\" ignored: the master does not run as root", u->name);
}

static int write_pid(const char *path)
{
    if (path == NULL)
        return 0;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 ||
        rename(tmp, path) != 0) {
        tg_log_errno(TG_LOG_CRIT, "cannot write the pid file %s", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* 1 when the pid file at `path` holds this process's pid. */
static int pid_file_is_ours(const char *path)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    long pid = 0;
    if (f == NULL)
        return 0;
    int ok = fscanf(f, "%ld", &pid) == 1 && pid == (long)getpid();
    fclose(f);
    return ok;
}

/* "PIDFILE.oldbin", where the old master's pid waits while the new one starts */
static void oldbin_path(char *buf, size_t size)
{
    snprintf(buf, size, "%s.oldbin", current->main->pid_file);
}

/* USR2: exec the binary again as a new master that inherits the listening
 * sockets. This master keeps serving until the new one's workers are up. */
static void upgrade_start(void)
{
    if (upgrade_pid > 0) {
        tg_log(TG_LOG_WARN, "upgrade: new master %d is still starting, USR2 ignored",
               (int)upgrade_pid);
        return;
    }
    char old[4096];
    const char *pid_file = current->main->pid_file;
    if (pid_file) {
        oldbin_path(old, sizeof(old));
        if (rename(pid_file, old) != 0) {
            tg_log_errno(TG_LOG_ERROR, "upgrade: cannot rename %s to %s", pid_file, old);
            return;
        }
    }
    upgrade_pid = tg_upgrade_spawn(current, &upgrade_fd);
    if (upgrade_pid < 0) {
        upgrade_pid = 0;
        if (pid_file && rename(old, pid_file) != 0)
            tg_log_errno(TG_LOG_ERROR, "upgrade: cannot rename %s back", old);
    }
}

/* The new master exited before it was up: keep serving, take the pid file back. */
static void upgrade_failed(int status)
{
    if (WIFSIGNALED(status))
        tg_log(TG_LOG_ERROR, "upgrade failed: the new master %d was killed by signal %d before "
               "its workers were up; this master keeps serving", (int)upgrade_pid,
               WTERMSIG(status));
    else
        tg_log(TG_LOG_ERROR, "upgrade failed: the new master %d exited with code %d before its "
               "workers were up; this master keeps serving", (int)upgrade_pid,
               WEXITSTATUS(status));
    upgrade_pid = 0;
    if (upgrade_fd >= 0)
        close(upgrade_fd);
    upgrade_fd = -1;
    const char *pid_file = current->main->pid_file;
    if (pid_file) {
        char old[4096];
        oldbin_path(old, sizeof(old));
        if (rename(old, pid_file) != 0 && write_pid(pid_file) != 0)
            tg_log_errno(TG_LOG_ERROR, "upgrade: cannot restore the pid file %s", pid_file);
    }
}

/* 1 once the new master reported its workers up. */
static int upgrade_check(void)
{
    if (upgrade_fd < 0)
        return 0;
    char b;
    ssize_t n = read(upgrade_fd, &b, 1);
    if (n < 0 && errno == EAGAIN)
        return 0;
    close(upgrade_fd);
    upgrade_fd = -1;
    if (n != 1)
        return 0; /* EOF: it is dying; reap() says so */
    tg_log(TG_LOG_INFO, "upgrade: new master %d is up, this one stops gracefully",
           (int)upgrade_pid);
    /* systemd: the new master becomes the service's main process */
    sd_notifyf(0, "MAINPID=%d\nREADY=1\nSTATUS=upgraded: new master %d", (int)upgrade_pid,
               (int)upgrade_pid);
    return 1;
}

static void remember_old(pid_t pid, int slot)
{
    if (nold < (int)(sizeof(old_pids) / sizeof(old_pids[0]))) {
        old_slots[nold] = slot;
        old_pids[nold++] = pid;
    }
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == upgrade_pid) {
            upgrade_failed(status);
            continue;
        }
        if (tg_app_reaped(pid, status) || tg_acme_reaped(pid, status) ||
            tg_ocsp_reaped(pid, status))
            continue;
        int slot = -1;
        for (int i = 0; i < nworkers; i++)
            if (slots[i].pid == pid)
                slot = i;
        int old_slot = -1;
        for (int i = 0; i < nold; i++)
            if (old_pids[i] == pid) {
                old_slot = old_slots[i];
                old_slots[i] = old_slots[nold - 1];
                old_pids[i] = old_pids[--nold];
            }
        int crashed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
        /* a crashed worker did not close its connections: free their places */
        if (crashed && (slot >= 0 || old_slot >= 0))
            for (int m = 0; m < tg_nmodules; m++)
                if (tg_modules[m]->on_worker_gone)
                    tg_modules[m]->on_worker_gone(current, slot >= 0 ? slot : old_slot);
        /* the watchdog said why already: no crash of unknown cause */
        int stalled = slot >= 0 && slots[slot].stall_killed == pid;
        if (WIFSIGNALED(status))
            tg_log(stalled ? TG_LOG_ERROR : slot >= 0 ? TG_LOG_CRIT : TG_LOG_WARN,
                   "worker %d exited on signal %d%s", (int)pid, WTERMSIG(status),
                   WCOREDUMP(status) ? " (core dumped)" : stalled ? " (stalled)" : "");
        else
            tg_log(crashed ? TG_LOG_CRIT : TG_LOG_INFO, "worker %d exited with code %d", (int)pid,
                   WEXITSTATUS(status));
        if (slot < 0)
            continue;
        slots[slot].pid = 0;
        /* a worker of the current generation must not end: respawn it, with a
         * delay growing 0.1s, 0.2s, ... up to 10s while it keeps crashing */
        double t = now_sec();
        slot_t *s = &slots[slot];
        if (t - s->last_crash > 30.0)
            s->crashes = 0;
        s->last_crash = t;
        double delay = 0.1 * (double)(1 << (s->crashes < 7 ? s->crashes : 7));
        s->crashes++;
        s->respawn_at = t + (delay > 10.0 ? 10.0 : delay);
    }
}

/* worker_stall_timeout: a worker whose loop is stuck is killed; reap()
 * respawns it like any crashed worker */
static void stall_check(void)
{
    for (int i = 0; i < nworkers; i++) {
        slot_t *s = &slots[i];
        if (s->pid > 0 && s->stall_killed != s->pid &&
            tg_watchdog_check(i, s->pid, current->main->stall_timeout)) {
            kill(s->pid, SIGKILL);
            s->stall_killed = s->pid;
        }
    }
}

static void respawn_due(void)
{
    double t = now_sec();
    for (int i = 0; i < nworkers; i++)
        if (slots[i].pid == 0 && slots[i].respawn_at > 0 && t >= slots[i].respawn_at) {
            tg_log(TG_LOG_WARN, "respawning worker #%d", i);
            tg_stats_master_respawned(current);
            spawn(i);
        }
}

/* stderr of the config loader goes to the log on reload (it may be a file) */
static tg_config_t *load_logged(int generation)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    FILE *saved = stderr;
    if (mem)
        stderr = mem;
    tg_config_t *c = tg_config_load(conf_path, generation);
    if (mem) {
        stderr = saved;
        fclose(mem);
        for (char *line = text, *nl; line && *line; line = nl + 1) {
            if ((nl = strchr(line, '\n')) == NULL)
                nl = line + strlen(line) - 1;
            else
                *nl = '\0';
            tg_log(c ? TG_LOG_WARN : TG_LOG_ERROR, "%s", line);
        }
        free(text);
    }
    return c;
}

static void reload_failed(void)
{
    tg_log(TG_LOG_ERROR, "reload failed, the running configuration is kept");
    sd_notifyf(0, "READY=1\nSTATUS=reload failed, %d workers, generation %d", nworkers,
               current->generation);
}

static void reload(void)
{
    tg_log(TG_LOG_INFO, "reloading %s", conf_path);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    tg_config_t *next = load_logged(current->generation + 1);
    if (next == NULL) {
        reload_failed();
        return;
    }
    int n = workers_wanted(next);
    if (open_listeners(next, current, n) != 0) {
        reload_failed();
        tg_config_destroy(next);
        return;
    }
    if (tg_log_open(next->main->error_log) != 0)
        tg_log_errno(TG_LOG_ERROR, "cannot open the error log %s", next->main->error_log);
    tg_log_level = next->main->error_level;
    tg_config_t *prev = current;
    current = next;
    user_notice(current);
    give_files(current);
    /* new workers first, then the old ones stop accepting: the sockets they
     * share hold any connection that arrives in between */
    pid_t olds[TG_MAX_WORKERS];
    int old_slot_of[TG_MAX_WORKERS];
    int nolds = 0;
    for (int i = 0; i < TG_MAX_WORKERS; i++) {
        if (slots[i].pid > 0) {
            old_slot_of[nolds] = i;
            olds[nolds++] = slots[i].pid;
        }
        close_ready(&slots[i]);
        slots[i] = (slot_t){.ready_fd = -1};
    }
    nworkers = n;
    notify_pending = 1;
    tg_stats_master_loaded(current, n, 1);
    tg_app_reload(current);
    /* the sockets `next` drops (fewer workers, a listener gone) are closed
     * here before the fork: new workers must not inherit them, or the
     * kernel keeps giving connections to a socket nobody accepts on (the
     * old workers keep their copies until they stop) */
    close_unused(prev, next);
    for (int i = 0; i < n; i++)
        spawn(i);
    for (int i = 0; i < nolds; i++) {
        kill(olds[i], SIGTERM);
        remember_old(olds[i], old_slot_of[i]);
    }
    tg_acme_start(current); /* the new generation's certificates */
    tg_ocsp_start(current);
    tg_config_destroy(prev);
    tg_log(TG_LOG_INFO, "reloaded: generation %d, %d workers", current->generation, n);
}

static void signal_all(int sig)
{
    for (int i = 0; i < nworkers; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
    for (int i = 0; i < nold; i++)
        kill(old_pids[i], sig);
}

static int any_alive(void)
{
    for (int i = 0; i < nworkers; i++)
        if (slots[i].pid > 0)
            return 1;
    return nold > 0;
}

/* Stop: send `sig`, wait for the workers up to `grace` seconds, then kill. */
static void stop_all(int sig, double grace)
{
    tg_acme_stop();
    tg_ocsp_stop();
    for (int i = 0; i < nworkers; i++)
        slots[i].respawn_at = 0;
    signal_all(sig);
    double deadline = now_sec() + grace;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    while (any_alive()) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        sigtimedwait(&set, NULL, &ts);
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (tg_app_reaped(pid, status) || tg_acme_reaped(pid, status) ||
                tg_ocsp_reaped(pid, status))
                continue;
            for (int i = 0; i < nworkers; i++)
                if (slots[i].pid == pid)
                    slots[i].pid = 0;
            for (int i = 0; i < nold; i++)
                if (old_pids[i] == pid) {
                    old_slots[i] = old_slots[nold - 1];
                    old_pids[i] = old_pids[--nold];
                }
        }
        if (now_sec() > deadline) {
            tg_log(TG_LOG_WARN, "workers still running after %.1fs: killing them", grace);
            signal_all(SIGKILL);
            deadline = now_sec() + 5.0;
        }
    }
}

int tg_master_run(tg_config_t *config, const char *path)
{
    current = config;
    conf_path = path;
    tg_log_set_slot(-1);
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaddset(&set, sigs[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int inherited = tg_upgrade_inherit();
    nworkers = workers_wanted(current);
    int rc = open_listeners(current, NULL, nworkers);
    tg_upgrade_close_unused(); /* a predecessor's sockets this config does not use */
    if (rc != 0)
        return 1;
    if (inherited)
        tg_log(TG_LOG_INFO, "started by an upgrade from master %d", (int)getppid());
    if (write_pid(current->main->pid_file) != 0)
        return 1;
    tg_stats_master_loaded(current, nworkers, 0);
    user_notice(current);
    give_files(current);
    for (int i = 0; i < TG_MAX_WORKERS; i++)
        slots[i].ready_fd = -1;
    notify_pending = 1;
    tg_app_start(current); /* first: they get traffic only once ready */
    (void)tg_watchdog_init(); /* without it the workers still serve, unwatched */
    for (int i = 0; i < nworkers; i++)
        spawn(i);
    tg_acme_start(current); /* after the workers: they answer its challenges */
    tg_ocsp_start(current);
    tg_log(TG_LOG_INFO, "started: %d workers, config %s", nworkers, conf_path);

    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (tg_app_any()) {
            tg_app_wait(&set, 100);
            ts.tv_nsec = 0;
        }
        int sig = sigtimedwait(&set, NULL, &ts);
        switch (sig) {
        case SIGCHLD: reap(); break;
        case SIGHUP: reload(); break;
        case SIGUSR2: upgrade_start(); break;
        case SIGUSR1:
            tg_log_open(current->main->error_log);
            give_files(current);
            signal_all(SIGUSR1);
            tg_app_reopen_logs();
            tg_log(TG_LOG_INFO, "logs reopened");
            break;
        case SIGWINCH: tg_app_ctl_handle(current); break;
        case SIGTERM:
            tg_log(TG_LOG_INFO, "graceful stop");
            sd_notify(0, "STOPPING=1\nSTATUS=graceful stop");
            stop_all(SIGTERM, (double)current->main->shutdown_timeout / 1000.0 + 5.0);
            tg_app_stop_all(); /* after the workers: their requests in flight finished */
            goto done;
        case SIGINT:
        case SIGQUIT:
            tg_log(TG_LOG_INFO, "fast stop");
            sd_notify(0, "STOPPING=1\nSTATUS=fast stop");
            stop_all(SIGQUIT, 3.0);
            tg_app_stop_all();
            goto done;
        default: break;
        }
        reap();
        stall_check();
        tg_app_tick();
        tg_acme_tick(current);
        tg_ocsp_tick(current);
        respawn_due();
        check_ready();
        if (upgrade_check()) {
            upgraded = 1;
            stop_all(SIGTERM, (double)current->main->shutdown_timeout / 1000.0 + 5.0);
            tg_app_stop_all();
            goto done;
        }
    }
done:
    /* only our own: after an upgrade (or while one starts) the pid file is
     * the new master's, and PIDFILE.oldbin ours */
    if (current->main->pid_file) {
        char old[4096];
        oldbin_path(old, sizeof(old));
        if (pid_file_is_ours(current->main->pid_file))
            unlink(current->main->pid_file);
        if (pid_file_is_ours(old))
            unlink(old);
    }
    close_unused(current, NULL);
    if (upgraded)
        tg_log(TG_LOG_INFO, "exit: the new master %d serves", (int)upgrade_pid);
    else
        tg_log(TG_LOG_INFO, "exit");
    tg_config_destroy(current);
    return 0;
}
