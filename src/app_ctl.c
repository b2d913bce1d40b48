/* The control channel between `tollgate -s status|restart-app NAME` and the
 * master. Signals carry no argument, so the client writes its command into
 * PIDFILE.ctl (by rename: the master never reads half a command), sends
 * SIGWINCH, and waits for PIDFILE.ctl.out, which the master writes (again
 * by rename) when the command is done: at once for status, at the end of
 * the rollout for restart-app. One command at a time: a second client
 * waits until the first one's file is gone. Both files sit where the pid
 * file is, which only the master's user may write. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "app.h"
#include "app_run.h"
#include "core.h"
#include "log.h"

static char reply_path[4200]; /* the master's answer file, set by the command */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void write_reply(const char *text)
{
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", reply_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, reply_path) != 0)
        tg_log_errno(TG_LOG_ERROR, "cannot write the answer %s", reply_path);
}

void tg_app_ctl_reply(const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    write_reply(text);
}

void tg_app_ctl_handle(tg_config_t *c)
{
    if (c->main->pid_file == NULL) return;
    char path[4200], cmd[512] = "";
    snprintf(path, sizeof(path), "%s.ctl", c->main->pid_file);
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    if (fgets(cmd, sizeof(cmd), f) == NULL) cmd[0] = '\0';
    fclose(f);
    unlink(path);
    snprintf(reply_path, sizeof(reply_path), "%s.ctl.out", c->main->pid_file);
    cmd[strcspn(cmd, "\r\n")] = '\0';
    if (strcmp(cmd, "status") == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (mem == NULL) return;
        tg_app_status(mem);
        fclose(mem);
        write_reply(text);
        free(text);
        return;
    }
    if (strncmp(cmd, "restart-app ", 12) == 0) {
        const char *name = cmd + 12;
        int rc = tg_app_restart(name, 1);
        if (rc == -1)
            tg_app_ctl_reply("error no app \"%s\"\n", name);
        else if (rc == -2)
            tg_app_ctl_reply("error a rolling restart of \"%s\" is under way\n", name);
        return;
    }
    tg_app_ctl_reply("error unknown command \"%s\"\n", cmd);
}

/* How long restart-app may take: each instance in turn starts (ready_timeout)
 * and its predecessor drains and stops (stop_timeout twice at most). */
static int wait_ms(tg_config_t *c, const char *cmd, const char *arg)
{
    if (strcmp(cmd, "status") == 0) return 5000;
    for (tg_app_t *a = c->apps; a; a = a->next)
        if (arg && tg_str_eq(a->name, tg_str_c(arg)))
            return (int)((a->ready_timeout + 2 * a->stop_timeout + 1000) * a->instances + 10000);
    return 5000;
}

int tg_app_ctl_send(tg_config_t *c, const char *cmd, const char *arg)
{
    const char *pid_file = c->main->pid_file;
    if (pid_file == NULL) {
        fprintf(stderr, "tollgate: %s has no \"pid\" directive: cannot find the master\n", c->file);
        return 1;
    }
    FILE *f = fopen(pid_file, "r");
    long pid = 0;
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "tollgate: cannot read the pid file %s: %s\n", pid_file,
                f ? "bad content" : strerror(errno));
        if (f) fclose(f);
        return 1;
    }
    fclose(f);
    char path[4200], tmp[4300], out[4300];
    snprintf(path, sizeof(path), "%s.ctl", pid_file);
    snprintf(tmp, sizeof(tmp), "%s.ctl.%d", pid_file, (int)getpid());
    snprintf(out, sizeof(out), "%s.ctl.out", pid_file);
    /* another command is pending: wait for it (bounded) */
    for (int i = 0; i < 100 && access(path, F_OK) == 0; i++)
        sleep_ms(100);
    unlink(out);
    f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%s%s%s\n", cmd, arg ? " " : "", arg ? arg : "") < 0 ||
        fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "tollgate: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return 1;
    }
    if (kill((pid_t)pid, SIGWINCH) != 0) {
        fprintf(stderr, "tollgate: kill(%ld): %s\n", pid, strerror(errno));
        unlink(path);
        return 1;
    }
    int limit = wait_ms(c, cmd, arg);
    for (int waited = 0; waited < limit; waited += 50) {
        if ((f = fopen(out, "r")) != NULL) {
            char line[1024];
            int rc = 0, first = 1;
            while (fgets(line, sizeof(line), f)) {
                if (first && strncmp(line, "error ", 6) == 0) {
                    fprintf(stderr, "tollgate: %s", line + 6);
                    rc = 1;
                } else if (first && strncmp(line, "ok ", 3) == 0) {
                    fputs(line + 3, stdout);
                } else {
                    fputs(line, stdout);
                }
                first = 0;
            }
            fclose(f);
            unlink(out);
            return rc;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "tollgate: no answer from the master %ld within %.1fs\n", pid,
            (double)limit / 1000.0);
    return 1;
}
