/* Workers' credentials: resolving `user NAME [GROUP]` (config time, in the
 * master), dropping root in a new worker (setgid, initgroups, setuid: the
 * order matters, the group calls need root), and handing the log files the
 * workers append to over to that user. Nothing here runs per request. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "user.h"
#include "log.h"

const char *tg_user_resolve(tg_arena_t *a, tg_user_t *u, tg_str_t name, tg_str_t group)
{
    char *n = tg_arena_strdup(a, name);
    char *g = group.len ? tg_arena_strdup(a, group) : NULL;
    if (n == NULL || (group.len && g == NULL))
        return "out of memory";
    struct passwd *pw = getpwnam(n);
    if (pw == NULL)
        return tg_arena_printf(a, "\"user\": unknown user \"%s\"", n);
    if (pw->pw_uid == 0)
        return tg_arena_printf(a, "\"user\": \"%s\" is root: workers never run as root", n);
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    if (g) {
        struct group *gr = getgrnam(g);
        if (gr == NULL)
            return tg_arena_printf(a, "\"user\": unknown group \"%s\"", g);
        if (gr->gr_gid == 0)
            return tg_arena_printf(a, "\"user\": group \"%s\" is root's: workers never run "
                                      "as root", g);
        u->gid = gr->gr_gid;
    } else {
        struct group *gr = getgrgid(pw->pw_gid);
        g = gr ? tg_arena_strdup(a, tg_str_c(gr->gr_name)) : NULL;
        if (pw->pw_gid == 0)
            return tg_arena_printf(a, "\"user\": the group of \"%s\" is root's: name one", n);
    }
    u->name = n;
    u->group = g ? g : "?";
    return NULL;
}

const char *tg_user_default(tg_arena_t *a, tg_user_t *u)
{
    const char *err = tg_user_resolve(a, u, tg_str_c("nobody"), tg_str_c("nogroup"));
    if (err && getgrnam("nogroup") == NULL) /* systems where nobody's group is "nobody" */
        err = tg_user_resolve(a, u, tg_str_c("nobody"), (tg_str_t){NULL, 0});
    if (err == NULL)
        u->explicit = 0;
    return err;
}

int tg_user_switches(const tg_user_t *u)
{
    return u->name != NULL && geteuid() == 0;
}

int tg_user_drop(const tg_user_t *u)
{
    if (!tg_user_switches(u))
        return 0;
    if (setgid(u->gid) != 0 || initgroups(u->name, u->gid) != 0 || setuid(u->uid) != 0) {
        tg_log_errno(TG_LOG_CRIT, "cannot switch the worker to user %s, group %s", u->name,
                     u->group);
        return -1;
    }
    /* setuid from root drops the saved uid too: getting root back must fail */
    if (setuid(0) == 0 || geteuid() == 0) {
        tg_log(TG_LOG_CRIT, "the worker could get root back after switching to %s", u->name);
        return -1;
    }
    return 0;
}

int tg_user_own_file(const tg_user_t *u, const char *path)
{
    if (!tg_user_switches(u) || path == NULL)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        tg_log_errno(TG_LOG_ERROR, "cannot open %s to give it to user %s", path, u->name);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    /* only the owner changes: a group an operator chose (adm) stays. Never a
     * link (O_NOFOLLOW, one name): a worker that can write in the directory
     * must not get another file, say /etc/shadow, given to it. */
    int rc = 0;
    if (!S_ISREG(st.st_mode)) {
        /* a device (/dev/null, a tty): nothing to give */
    } else if (st.st_nlink != 1) {
        tg_log(TG_LOG_ERROR, "%s has %d names: not given to user %s", path, (int)st.st_nlink,
               u->name);
        rc = -1;
    } else if (st.st_uid != u->uid && fchown(fd, u->uid, (gid_t)-1) != 0) {
        tg_log_errno(TG_LOG_ERROR, "cannot give %s to user %s", path, u->name);
        rc = -1;
    }
    close(fd);
    return rc;
}
