/* @public The error log: one process-wide destination (stderr until the config names
 * a file), a level filter checked before the arguments are evaluated, and
 * lines in the form `2026/11/23 09:33:06 [error] 1234#0: message`, where the
 * number after '#' is the worker slot (-1 for the master). */
#ifndef TG_LOG_H
#define TG_LOG_H

#include <errno.h>

typedef enum {
    TG_LOG_DEBUG = 0,
    TG_LOG_INFO,
    TG_LOG_WARN,
    TG_LOG_ERROR,
    TG_LOG_CRIT,
} tg_log_level_t;

extern int tg_log_level; /* messages below it are dropped */

#define tg_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= tg_log_level)                                                               \
            tg_log_write((level), 0, __VA_ARGS__);                                                 \
    } while (0)
/* Same, with ": strerror(errno)" appended. */
#define tg_log_errno(level, ...)                                                                   \
    do {                                                                                           \
        if ((level) >= tg_log_level)                                                               \
            tg_log_write((level), errno, __VA_ARGS__);                                             \
    } while (0)

void tg_log_write(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Level name ("debug" ...) to level, -1 if unknown. */
int tg_log_parse_level(const char *name, size_t len);
/* Open (or reopen, on USR1) the error log file; NULL = stderr. Returns 0/-1. */
int tg_log_open(const char *path);
/* Which process writes: -1 master, else the worker slot. */
void tg_log_set_slot(int slot);

#endif
