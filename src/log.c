/* Error log writer. Each line is formatted into a stack buffer and written
 * with one write(2), so lines from several workers appending to the same file
 * (O_APPEND) never interleave. Writes to a local file do not block for long;
 * the error log is not on the per-request path unless something is wrong.
 * With `error_log syslog:...` each line (without the date: syslog stamps it)
 * is one datagram instead (log_syslog.c), its severity the line's level. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "log_syslog.h"

int tg_log_level = TG_LOG_INFO;
static int log_fd = STDERR_FILENO;
static int log_slot = -1;
static tg_log_syslog_t log_syslog; /* used when log_syslog.fd > 0 (0 is stdin) */
static char log_syslog_spec[512];  /* the "syslog:..." text it was opened from */

static const char *const level_names[] = {"debug", "info", "warn", "error", "crit"};

int tg_log_parse_level(const char *name, size_t len)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (strlen(level_names[i]) == len && strncasecmp(name, level_names[i], len) == 0)
            return i;
    if (len == 5 && strncasecmp(name, "alert", 5) == 0)
        return TG_LOG_CRIT;
    return -1;
}

int tg_log_open(const char *path)
{
    if (tg_log_syslog_is(path)) {
        /* USR1 in a worker: the same destination, no name lookup again */
        if (log_syslog.fd > 0 && strcmp(path, log_syslog_spec) == 0)
            return tg_log_syslog_open(&log_syslog);
        tg_log_syslog_t s;
        char bad[128];
        if (strlen(path) >= sizeof(log_syslog_spec) ||
            tg_log_syslog_parse(path + 7, &s, bad, sizeof(bad)) != NULL) {
            errno = EINVAL;
            return -1;
        }
        if (tg_log_syslog_open(&s) != 0)
            return -1;
        if (log_syslog.fd > 0)
            tg_log_syslog_close(&log_syslog);
        log_syslog = s;
        memcpy(log_syslog_spec, path, strlen(path) + 1);
        return 0;
    }
    if (log_syslog.fd > 0)
        tg_log_syslog_close(&log_syslog);
    if (path == NULL || strcmp(path, "stderr") == 0) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    return 0;
}

void tg_log_set_slot(int slot)
{
    log_slot = slot;
}

void tg_log_write(int level, int err, const char *fmt, ...)
{
    char line[2048];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    if (level < 0 || level > TG_LOG_CRIT)
        level = TG_LOG_ERROR;
    size_t n = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S ", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "[%s] %d#%d: ", level_names[level],
                          (int)getpid(), log_slot);
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    n = (w < 0) ? n : (n + (size_t)w >= sizeof(line) ? sizeof(line) - 1 : n + (size_t)w);
    if (err && n < sizeof(line) - 1)
        n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s", strerror(err));
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    if (log_syslog.fd > 0) {
        static const int severity[] = {7, 6, 4, 3, 2}; /* debug info warn error crit */
        tg_log_syslog_send(&log_syslog, severity[level], line + 20, n - 20);
        return;
    }
    line[n++] = '\n';
    ssize_t rc = write(log_fd, line, n);
    (void)rc;
}
