/* Command line: run (foreground, or -d), test a config (-t), test and print
 * it (-T, src/conf_dump.c), signal a running master (-s reload|stop|quit|
 * reopen|upgrade), print versions (-v, -V: src/version.c), explain how a
 * request would be routed (--explain, src/explain.c). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core.h"
#include "master.h"
#include "log.h"
#include "conf_dump.h"
#include "explain.h"
#include "version.h"
#include "upgrade.h"
#include "shm.h"
#include "app_run.h"
#include "tls_mem.h"


static void usage(FILE *f)
{
    fprintf(f, "usage: tollgate [-c FILE] [-p PREFIX] [-t | -T] [-d] [-s SIGNAL] [-v | -V]\n"
               "       tollgate --explain METHOD URL [-H 'Name: value']... [--remote ADDR] "
               "[-c FILE]\n"
               "  -c FILE   configuration file (default " TG_DEFAULT_CONF ")\n"
               "  -p DIR    prefix for relative paths in the config (default: cwd)\n"
               "  -t        test the configuration and exit\n"
               "  -T        test the configuration, print it (every file, then the effective\n"
               "            settings with their defaults) and exit\n"
               "  -d        run in the background\n"
               "  -s SIG    signal the running master: reload, stop (graceful), quit (fast),\n"
               "            reopen (log files), upgrade (exec the binary as a new master),\n"
               "            status (the apps' instances), restart-app NAME (rolling restart)\n"
               "  -s drain UPSTREAM SERVER, -s undrain UPSTREAM SERVER\n"
               "            drain a server (address or id) through the running gateway's admin\n"
               "            location, or undo it (credentials for admin_auth: TOLLGATE_ADMIN_AUTH)\n"
               "  -v        print the version and the versions of the linked libraries\n"
               "  -V        the same and the build options\n"
               "  --explain METHOD URL\n"
               "            print which listener, server and location a request would get and\n"
               "            why, and the modules each phase would run (nothing is started)\n"
               "  -H 'Name: value'  a request header for --explain (repeatable)\n"
               "  --remote ADDR     the client address for --explain\n");
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
        fprintf(stderr, "tollgate: unknown signal \"%s\" (reload, stop, quit, reopen, upgrade, "
                        "drain, undrain)\n",
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
    enum { OPT_EXPLAIN = 256, OPT_REMOTE };
    static const struct option longopts[] = {
        {"explain", no_argument, NULL, OPT_EXPLAIN},
        {"remote", required_argument, NULL, OPT_REMOTE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    const char *conf = TG_DEFAULT_CONF, *sig = NULL, *remote = NULL;
    static const char *headers[64]; /* -H for --explain */
    int test = 0, dump = 0, daemon = 0, explain = 0, nheaders = 0, opt;
    static char cwd[4096];
    tg_tls_mem_init(); /* before OpenSSL allocates */
    tg_upgrade_set_argv(argc, argv); /* before getopt reorders it */
    while ((opt = getopt_long(argc, argv, "c:p:s:tTdvVhH:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'p': tg_conf_prefix = optarg; break;
        case 's': sig = optarg; break;
        case 't': test = 1; break;
        case 'T': test = dump = 1; break;
        case 'd': daemon = 1; break;
        case 'v': tg_version_print(stdout, 0); return 0;
        case 'V': tg_version_print(stdout, 1); return 0;
        case 'h': usage(stdout); return 0;
        case OPT_EXPLAIN: explain = 1; break;
        case OPT_REMOTE: remote = optarg; break;
        case 'H':
            if (nheaders == (int)(sizeof(headers) / sizeof(headers[0]))) {
                fprintf(stderr, "tollgate: more than %d -H options\n", nheaders);
                return 2;
            }
            headers[nheaders++] = optarg;
            break;
        default: usage(stderr); return 2;
        }
    }
    /* -s drain UPSTREAM SERVER, -s restart-app NAME: commands with arguments */
    int cmd_args = sig && !explain && !test && !daemon ? argc - optind : 0;
    /* the apps' commands: status takes no argument, restart-app one */
    int app_args = !sig ? -1 : strcmp(sig, "status") == 0 ? 0 : strcmp(sig, "restart-app") == 0 ? 1 : -1;
    if (explain ? argc - optind != 2 || test || sig || daemon
                : optind + cmd_args != argc || nheaders || remote ||
                      (app_args >= 0 && cmd_args != app_args)) {
        usage(stderr);
        return 2;
    }
    if (tg_conf_prefix == NULL && getcwd(cwd, sizeof(cwd)))
        tg_conf_prefix = cwd;
    tg_modules_init();
    tg_conf_check_secrets = test;
    if (dump)
        tg_conf_dump_record();
    /* a master started by a binary upgrade: its predecessor's shared memory
     * zones, for the config to take over (only an upgrade sets TG_SHM_ENV) */
    tg_shm_inherit();
    tg_config_t *c = tg_config_load(conf, 1);
    tg_shm_inherit_end();
    if (c == NULL) {
        tg_conf_dump_discard();
        fprintf(stderr, "tollgate: configuration file %s test failed\n", conf);
        return 1;
    }
    if (explain) {
        int rc = tg_explain(stdout, c, argv[optind], argv[optind + 1], headers, nheaders, remote);
        tg_config_destroy(c);
        return rc;
    }
    if (test) {
        fprintf(stderr, "tollgate: configuration file %s test is successful\n", conf);
        int rc = dump && tg_conf_dump(stdout, c) != 0 ? 1 : 0;
        tg_config_destroy(c);
        return rc;
    }
    if (sig) {
        int rc = -1;
        if (app_args >= 0)
            rc = tg_app_ctl_send(c, sig, app_args ? argv[optind] : NULL);
        for (int i = 0; i < tg_nmodules && rc < 0 && app_args < 0; i++)
            if (tg_modules[i]->command)
                rc = tg_modules[i]->command(c, sig, cmd_args, argv + optind);
        if (rc < 0 && app_args < 0)
            rc = cmd_args ? (usage(stderr), 2) : send_signal(c, sig);
        if (rc < 0)
            rc = 1;
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
