/* limit_conn: concurrent connections per key (usually the client address),
 * exact across workers (src/limit_conn.c, docs/security.md).
 *
 * A connection takes its place in a zone at its first request in a server
 * that has `limit_conn` (the key is known then: after real_ip and the PROXY
 * header) and gives it back when it closes, whatever the path (error,
 * timeout, end of a tunnel, graceful stop, worker exit). The holds live
 * with the connection (its module state, tg_request_conn_ext); the counts
 * live in shared memory,
 * one column per worker slot, so the master can drop the counts of a worker
 * that crashed. */
#ifndef TG_LIMIT_CONN_H
#define TG_LIMIT_CONN_H

#include <stdint.h>
#include "core.h"

#define TG_LIMIT_CONN_HOLDS 4 /* zones one connection can count in */

typedef struct {
    struct tg_limit_conn_table_s *table; /* NULL: free */
    uint32_t entry;                      /* entry index + 1 */
    uint32_t epoch;                      /* the table's epoch when taken */
    uint64_t hash;                       /* first word of the key's hash, to check the entry */
} tg_limit_conn_hold_t;

typedef struct {
    tg_limit_conn_hold_t h[TG_LIMIT_CONN_HOLDS];
} tg_limit_conn_holds_t;

extern tg_module_t tg_limit_conn_module;

#endif
