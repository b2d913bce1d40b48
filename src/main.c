/* Command line: run (foreground, or -d), test a config (-t), signal a running
 * master (-s reload|stop|quit|reopen|upgrade), print versions (-v). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ev.h>
#include <llhttp.h>
#include "core.h"
#include "master.h"
#include "log.h"
#include "upgrade.h"


static void usage(FILE *f)
{
    fprintf(f, "usage: tollgate [-c FILE] [-p PREFIX] [-t] [-d] [-s SIGNAL] [-v]\n"
               "  -c FILE   configuration file (default conf/tollgate.conf)\n"
               "  -p DIR    prefix for relative paths in the config (default: cwd)\n"
               "  -t        test the configuration and exit\n"
               "  -d        run in the background\n"
               "  -s SIG    signal the running master: reload, stop (graceful), quit (fast),\n"
               "            reopen (the logs), upgrade (exec the binary as a new master)\n"
               "  -v        print the version and the library versions\n");
}

static void version(void)
{
    char pcre[64] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    printf("tollgate %s\n", TG_VERSION);
    printf("libev %d.%d, llhttp %d.%d.%d, pcre2 %s\n", ev_version_major(), ev_version_minor(),
           LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, pcre);
}

static int send_signal(tg_config_t *c, const char *name)
{
    int sig = strcmp(name, "reload") == 0 ? SIGHUP
              : strcmp(name, "stop") == 0 ? SIGTERM
              : strcmp(name, "quit") == 0 ? SIGQUIT
              : strcmp(name, "reopen") == 0 ? SIGUSR1
              : strcmp(name, "upgrade") == 0 ? SIGUSR2
                                             : 0;
    if (sig == 0) {
        fprintf(stderr, "tollgate: unknown signal \"%s\" (reload, stop, quit, reopen, upgrade)\n",
                name);
        return 1;
    }
    if (c->main->pid_file == NULL) {
        fprintf(stderr, "tollgate: %s has no \"pid\" directive: cannot find the master\n",
                c->file);
        return 1;
    }
    FILE *f = fopen(c->main->pid_file, "r");
    long pid = 0;
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "tollgate: cannot read the pid file %s: %s\n", c->main->pid_file,
                f ? "bad content" : strerror(errno));
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill((pid_t)pid, sig) != 0) {
        fprintf(stderr, "tollgate: kill(%ld, %s): %s\n", pid, name, strerror(errno));
        return 1;
    }
    return 0;
}

static int daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -1;
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return -1;
    dup2(fd, 0);
    dup2(fd, 1);
    if (fd > 2)
        close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = "conf/tollgate.conf", *sig = NULL;
    int test = 0, daemon = 0, opt;
    static char cwd[4096];
    tg_upgrade_set_argv(argc, argv); /* before getopt reorders it */
    while ((opt = getopt(argc, argv, "c:p:s:tdvh")) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'p': tg_conf_prefix = optarg; break;
        case 's': sig = optarg; break;
        case 't': test = 1; break;
        case 'd': daemon = 1; break;
        case 'v': version(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (tg_conf_prefix == NULL && getcwd(cwd, sizeof(cwd)))
        tg_conf_prefix = cwd;
    tg_modules_init();
    tg_config_t *c = tg_config_load(conf, 1);
    if (c == NULL) {
        fprintf(stderr, "tollgate: configuration file %s test failed\n", conf);
        return 1;
    }
    if (test) {
        fprintf(stderr, "tollgate: configuration file %s test is successful\n", conf);
        tg_config_destroy(c);
        return 0;
    }
    if (sig) {
        int rc = send_signal(c, sig);
        tg_config_destroy(c);
        return rc;
    }
    tg_log_level = c->main->error_level;
    if (tg_log_open(c->main->error_log) != 0) {
        fprintf(stderr, "tollgate: cannot open the error log %s: %s\n", c->main->error_log,
                strerror(errno));
        return 1;
    }
    if (daemon && daemonize() != 0) {
        fprintf(stderr, "tollgate: cannot daemonize: %s\n", strerror(errno));
        return 1;
    }
    return tg_master_run(c, conf);
}
