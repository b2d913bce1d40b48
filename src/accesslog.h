/* The access log (src/accesslog.c): the access_log and log_format
 * directives, one line per request in the log phase, optionally gathered in
 * a per-worker buffer per file (access_log ... buffer=SIZE flush=TIME). */
#ifndef TG_ACCESSLOG_H
#define TG_ACCESSLOG_H

/* USR1 in a worker: write out what is buffered, then reopen every access log
 * file of the worker's config (log rotation: the old file may have been
 * renamed). A file that cannot be opened keeps its old descriptor. */
void tg_accesslog_reopen(void);

#endif
