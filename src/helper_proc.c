/* The master's helper processes (see helper_proc.h). */
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include "helper_proc.h"
#include "log.h"
#include "user.h"

#define RESPAWN_DELAY 5.0

double tg_helper_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tg_helper_fork(tg_helper_t *h, tg_config_t *c, void *(*as_root)(tg_config_t *c),
                    void (*run)(tg_config_t *c, void *arg), const char *what)
{
    tg_helper_stop(h);
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        tg_log_errno(TG_LOG_ERROR, "%s: fork()", h->name);
        h->respawn_at = tg_helper_now() + RESPAWN_DELAY;
        return;
    }
    if (pid == 0) {
        for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
            for (int i = 0; i < TG_MAX_WORKERS; i++)
                if (ls->fds[i] >= 0)
                    close(ls->fds[i]);
        void *arg = as_root ? as_root(c) : NULL;
        if (tg_user_drop(&c->main->user) != 0)
            _exit(2);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            _exit(0); /* the master died before the line above */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        run(c, arg);
        _exit(0);
    }
    h->pid = pid;
    tg_log(TG_LOG_INFO, "%s: helper process %d started %s", h->name, (int)pid, what);
}

int tg_helper_due(tg_helper_t *h)
{
    return h->respawn_at > 0 && tg_helper_now() >= h->respawn_at;
}

int tg_helper_reaped(tg_helper_t *h, pid_t pid, int status)
{
    if (pid == 0)
        return 0;
    if (pid == h->stopping) {
        h->stopping = 0;
        return 1;
    }
    if (pid != h->pid)
        return 0;
    h->pid = 0;
    tg_log(TG_LOG_ERROR, "%s: helper process %d %s %d, starting again in %.0fs", h->name,
           (int)pid, WIFSIGNALED(status) ? "died on signal" : "exited with code",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), RESPAWN_DELAY);
    h->respawn_at = tg_helper_now() + RESPAWN_DELAY;
    return 1;
}

void tg_helper_stop(tg_helper_t *h)
{
    h->respawn_at = 0;
    if (h->pid == 0)
        return;
    kill(h->pid, SIGTERM);
    h->stopping = h->pid;
    h->pid = 0;
}
