/* Syslog destinations for the error and access logs (see log_syslog.h).
 *
 * The format is RFC 3164's, the one nginx sends and every syslog daemon
 * (rsyslog, syslog-ng, journald's syslog socket) reads: a PRI, a local
 * timestamp "Mmm dd hh:mm:ss", the host name, the tag and a colon. The
 * header and the message go out as one datagram with sendmsg(MSG_DONTWAIT):
 * a worker never waits for a syslog server, and a full socket buffer or an
 * unreachable server (ECONNREFUSED on a connected UDP socket) costs that
 * message only. No logging here: this file is below log.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include "log_syslog.h"
#include "addr.h"
#include "str.h"

static const char *const facilities[] = {
    "kern",   "user",   "mail",   "daemon", "auth",   "syslog", "lpr",    "news",
    "uucp",   "clock",  "authpriv", "ftp",  "ntp",    "audit",  "alert",  "cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"};
static const char *const severities[] = {"emerg", "alert", "crit",  "error",
                                         "warn",  "notice", "info", "debug"};

int tg_log_syslog_is(const char *dest)
{
    return dest && strncmp(dest, "syslog:", 7) == 0;
}

static int lookup(const char *const *names, int n, const char *v, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && strncmp(names[i], v, len) == 0)
            return i;
    return -1;
}

static const char *fail(char *bad, size_t badlen, const char *p, size_t len, const char *msg)
{
    snprintf(bad, badlen, "%.*s", (int)len, p);
    return msg;
}

const char *tg_log_syslog_parse(const char *spec, tg_log_syslog_t *s, char *bad, size_t badlen)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->facility = 23; /* local7, as nginx */
    s->severity = -1;
    snprintf(s->tag, sizeof(s->tag), "tollgate");
    int server = 0;
    for (const char *p = spec; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        const char *v = eq ? eq + 1 : p + len;
        size_t vlen = (size_t)(p + len - v);
        if (klen == 6 && strncmp(p, "server", 6) == 0 && vlen > 0) {
            if (vlen > 5 && strncmp(v, "unix:", 5) == 0) {
                struct sockaddr_un *un = (struct sockaddr_un *)&s->addr;
                if (vlen - 5 >= sizeof(un->sun_path))
                    return fail(bad, badlen, v, vlen, "unix socket path too long");
                un->sun_family = AF_UNIX;
                memcpy(un->sun_path, v + 5, vlen - 5);
                s->addrlen = (socklen_t)sizeof(*un);
            } else if (tg_parse_addr((tg_str_t){v, vlen}, &s->addr, &s->addrlen, 514) != 0) {
                return fail(bad, badlen, v, vlen, "invalid syslog server address");
            }
            server = 1;
        } else if (klen == 8 && strncmp(p, "facility", 8) == 0) {
            if ((s->facility = lookup(facilities, 24, v, vlen)) < 0)
                return fail(bad, badlen, v, vlen,
                            "unknown syslog facility, expected kern, user, ..., local0 .. local7");
        } else if (klen == 8 && strncmp(p, "severity", 8) == 0) {
            if ((s->severity = lookup(severities, 8, v, vlen)) < 0)
                return fail(bad, badlen, v, vlen,
                            "unknown syslog severity, expected emerg, alert, crit, error, warn, "
                            "notice, info or debug");
        } else if (klen == 3 && strncmp(p, "tag", 3) == 0) {
            if (vlen == 0 || vlen >= sizeof(s->tag))
                return fail(bad, badlen, v, vlen, "syslog tag must be 1 to 32 characters");
            for (size_t i = 0; i < vlen; i++)
                if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                      (v[i] >= '0' && v[i] <= '9') || v[i] == '_' || v[i] == '-'))
                    return fail(bad, badlen, v, vlen,
                                "syslog tag: letters, digits, '_' and '-' only");
            memcpy(s->tag, v, vlen);
            s->tag[vlen] = '\0';
        } else if (len == 10 && strncmp(p, "nohostname", 10) == 0) {
            s->nohostname = 1;
        } else {
            return fail(bad, badlen, p, len, "unknown syslog parameter, expected server=, "
                                             "facility=, severity=, tag= or nohostname");
        }
        p = comma ? comma + 1 : p + len;
    }
    if (!server)
        return fail(bad, badlen, spec, strlen(spec), "syslog needs server=");
    if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0 || s->hostname[0] == '\0')
        snprintf(s->hostname, sizeof(s->hostname), "localhost");
    return NULL;
}

int tg_log_syslog_open(tg_log_syslog_t *s)
{
    int fd = socket(s->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* connected: send() needs no address, and a UDP error comes back here */
    if (connect(fd, (struct sockaddr *)&s->addr, s->addrlen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    return 0;
}

void tg_log_syslog_send(tg_log_syslog_t *s, int severity, const char *msg, size_t len)
{
    if (s->fd < 0)
        return;
    int sev = s->severity >= 0 ? s->severity : severity;
    char head[160];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int n = snprintf(head, sizeof(head), "<%d>%s %2d %02d:%02d:%02d %s%s%s: ",
                     s->facility * 8 + (sev < 0 ? 6 : sev & 7), mon[tm.tm_mon], tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, s->nohostname ? "" : s->hostname,
                     s->nohostname ? "" : " ", s->tag);
    if (n < 0 || (size_t)n >= sizeof(head))
        return;
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)msg, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t rc = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)rc; /* dropped: the log must not wait for, nor complain about, itself */
}

void tg_log_syslog_close(tg_log_syslog_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}
