/* Binary upgrade, the hand-over (see upgrade.h; the sequence is in master.c
 * and docs/deployment.md).
 *
 * The old master forks; the child clears close-on-exec on the listening
 * sockets, puts them in TOLLGATE_LISTEN_FDS ("127.0.0.1:8080#0=5;..." with
 * the worker slot after '#': one SO_REUSEPORT socket per listener and slot)
 * and the write end of a pipe in TOLLGATE_UPGRADE_FD, and execs the binary
 * with the master's original arguments. The new master takes the sockets
 * whose bound address (getsockname, not the text, which is only for people
 * reading `ps e`) and slot match a listener of its config, opens the rest,
 * closes the ones left over, and writes one byte on the pipe when its
 * workers are up. The same socket objects stay open throughout, so a
 * connection queued in one is accepted by whichever generation gets to it.
 *
 * Shared memory zones (rate-limit state, limit_conn counts, Lua shared
 * dicts, the TLS session cache, stats counters) go across too: the child
 * puts their memfds in TG_SHM_ENV (shm.c), and the new master maps them
 * before it loads its config, so a zone declared with the same name, tag and
 * size keeps its contents, shared with the old workers while they finish. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "upgrade.h"
#include "log.h"
#include "shm.h"

#define MAX_INHERITED 4096

typedef struct {
    int fd;
    int slot;
} inherited_t;

static char **saved_argv; /* malloc'd copy, NULL-terminated, -d removed */
static char exe_path[PATH_MAX];
static inherited_t inherited[MAX_INHERITED];
static int ninherited;
static int ready_fd = -1; /* new master: write end of the "up" pipe */

void tg_upgrade_set_argv(int argc, char **argv)
{
    saved_argv = calloc((size_t)argc + 1, sizeof(char *));
    if (saved_argv == NULL)
        return;
    int n = 0;
    for (int i = 0; i < argc; i++)
        if (i == 0 || strcmp(argv[i], "-d") != 0) /* the new master stays in the foreground */
            saved_argv[n++] = argv[i];
    const char *a0 = argc > 0 ? argv[0] : "";
    char cwd[PATH_MAX];
    size_t clen;
    if (a0[0] == '/' && strlen(a0) < sizeof(exe_path)) {
        memcpy(exe_path, a0, strlen(a0) + 1);
    } else if (strchr(a0, '/') && getcwd(cwd, sizeof(cwd)) &&
               (clen = strlen(cwd)) + 1 + strlen(a0) < sizeof(exe_path)) {
        memcpy(exe_path, cwd, clen);
        exe_path[clen] = '/';
        memcpy(exe_path + clen + 1, a0, strlen(a0) + 1);
    } else {
        /* found through PATH: the file that was run */
        ssize_t len = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
        exe_path[len > 0 ? len : 0] = '\0';
    }
}

/* "ADDR#SLOT=FD;" for every socket of `c`, into `buf`. 0, or -1 if it is too small. */
static int listen_env(tg_config_t *c, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
        for (int i = 0; i < TG_MAX_WORKERS; i++) {
            if (ls->fds[i] < 0)
                continue;
            int w = snprintf(buf + n, size - n, "%s%s#%d=%d", n ? ";" : "", ls->text, i,
                             ls->fds[i]);
            if (w < 0 || (size_t)w >= size - n)
                return -1;
            n += (size_t)w;
        }
    return 0;
}

pid_t tg_upgrade_spawn(tg_config_t *c, int *ready)
{
    if (saved_argv == NULL || exe_path[0] == '\0') {
        tg_log(TG_LOG_ERROR, "upgrade: the path of the binary is unknown");
        return -1;
    }
    size_t envsize = 64 * 1024;
    char *env = malloc(envsize);
    if (env == NULL || listen_env(c, env, envsize) != 0) {
        tg_log(TG_LOG_ERROR, "upgrade: too many listening sockets to pass on");
        free(env);
        return -1;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        tg_log_errno(TG_LOG_ERROR, "upgrade: pipe2()");
        free(env);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        tg_log_errno(TG_LOG_ERROR, "upgrade: fork()");
        close(p[0]);
        close(p[1]);
        free(env);
        return -1;
    }
    if (pid == 0) {
        /* the new master: only the listeners, the zones and the write end cross exec */
        char shm_env[8192];
        if (tg_shm_handover(shm_env, sizeof(shm_env)) != 0) {
            tg_log(TG_LOG_WARN, "upgrade: too many shared memory zones to pass on: none is");
            shm_env[0] = '\0';
        }
        if (shm_env[0]) setenv(TG_SHM_ENV, shm_env, 1);
        for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
            for (int i = 0; i < TG_MAX_WORKERS; i++)
                if (ls->fds[i] >= 0)
                    fcntl(ls->fds[i], F_SETFD, 0);
        fcntl(p[1], F_SETFD, 0);
        fcntl(p[1], F_SETFL, 0);
        char num[16];
        snprintf(num, sizeof(num), "%d", p[1]);
        setenv(TG_UPGRADE_LISTEN_ENV, env, 1);
        setenv(TG_UPGRADE_READY_ENV, num, 1);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv(exe_path, saved_argv);
        tg_log_errno(TG_LOG_ERROR, "upgrade: cannot execute %s", exe_path);
        _exit(127);
    }
    free(env);
    close(p[1]);
    *ready = p[0];
    tg_log(TG_LOG_INFO, "upgrade: started %s as the new master, pid %d", exe_path, (int)pid);
    return pid;
}

int tg_upgrade_inherit(void)
{
    const char *rd = getenv(TG_UPGRADE_READY_ENV);
    const char *ls = getenv(TG_UPGRADE_LISTEN_ENV);
    int upgraded = rd != NULL || ls != NULL;
    if (rd) {
        char *end;
        long fd = strtol(rd, &end, 10);
        if (*end == '\0' && fd > 2 && fd < INT_MAX && fcntl((int)fd, F_GETFD) >= 0) {
            ready_fd = (int)fd;
            fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
        }
    }
    for (const char *p = ls; p && *p;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        char item[256];
        if (len < sizeof(item)) {
            memcpy(item, p, len);
            item[len] = '\0';
            char *eq = strrchr(item, '='), *hash = strrchr(item, '#');
            int fd = eq ? atoi(eq + 1) : -1, slot = hash && hash < eq ? atoi(hash + 1) : -1;
            int listening = 0;
            socklen_t sl = sizeof(listening);
            if (fd > 2 && slot >= 0 && slot < TG_MAX_WORKERS && ninherited < MAX_INHERITED &&
                getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &sl) == 0 && listening) {
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                inherited[ninherited++] = (inherited_t){fd, slot};
            } else {
                tg_log(TG_LOG_WARN, "upgrade: ignoring \"%s\" in " TG_UPGRADE_LISTEN_ENV, item);
            }
        }
        p = semi ? semi + 1 : p + len;
    }
    unsetenv(TG_UPGRADE_READY_ENV);
    unsetenv(TG_UPGRADE_LISTEN_ENV);
    return upgraded;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

int tg_upgrade_take_listen_fd(const tg_listen_t *ls, int slot)
{
    for (int i = 0; i < ninherited; i++) {
        if (inherited[i].slot != slot)
            continue;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        if (getsockname(inherited[i].fd, (struct sockaddr *)&ss, &len) != 0 ||
            !same_addr(&ss, &ls->addr))
            continue;
        int fd = inherited[i].fd;
        inherited[i] = inherited[--ninherited];
        return fd;
    }
    return -1;
}

void tg_upgrade_close_unused(void)
{
    for (int i = 0; i < ninherited; i++)
        close(inherited[i].fd);
    ninherited = 0;
}

int tg_upgrade_report_ready(void)
{
    if (ready_fd < 0)
        return -1;
    char up = 'R';
    if (write(ready_fd, &up, 1) != 1)
        tg_log_errno(TG_LOG_WARN, "upgrade: cannot tell the old master that we are up");
    close(ready_fd);
    ready_fd = -1;
    return 0;
}
