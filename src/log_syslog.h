/* @public Syslog as a log destination (log_syslog.c), for `error_log
 * syslog:...` and `access_log syslog:...`, in nginx's syntax:
 *   syslog:server=ADDR[:PORT]|unix:PATH[,facility=F][,severity=S][,tag=T][,nohostname]
 * Messages are RFC 3164 datagrams, as nginx sends them:
 *   <PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MESSAGE
 * over UDP (port 514 by default) or a Unix datagram socket, sent without
 * blocking: a message the socket cannot take at once is dropped, never
 * waited for. */
#ifndef TG_LOG_SYSLOG_H
#define TG_LOG_SYSLOG_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct {
    struct sockaddr_storage addr; /* the server (AF_INET, AF_INET6 or AF_UNIX) */
    socklen_t addrlen;
    int facility;   /* 0..23: kern .. local7 (default local7, 23) */
    int severity;   /* 0..7, or -1: the message's own (error_log; access_log: info) */
    int nohostname; /* leave HOSTNAME out (a local syslogd adds it) */
    char tag[33];   /* default "tollgate" */
    char hostname[65];
    int fd;         /* -1 until tg_log_syslog_open */
} tg_log_syslog_t;

/* 1 when a log destination names syslog ("syslog:..."). */
int tg_log_syslog_is(const char *dest);

/* Parse the text after "syslog:" into `s` (fd -1; the address is resolved
 * now). Returns NULL, or a static error message; `bad` (at least 64 bytes)
 * then holds the offending parameter. */
const char *tg_log_syslog_parse(const char *spec, tg_log_syslog_t *s, char *bad, size_t badlen);

/* Open (or reopen) the non-blocking datagram socket. 0, or -1 with errno. */
int tg_log_syslog_open(tg_log_syslog_t *s);

/* Send one message (no trailing newline) at `severity` (0 emerg .. 7
 * debug) unless `s` fixes one. Never blocks; a failure drops the message. */
void tg_log_syslog_send(tg_log_syslog_t *s, int severity, const char *msg, size_t len);

void tg_log_syslog_close(tg_log_syslog_t *s);

#endif
