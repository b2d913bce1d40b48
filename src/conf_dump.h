/* `tollgate -T` (src/conf_dump.c): the files of a config and its effective
 * settings; and the names and one-line summaries --explain shares. */
#ifndef TG_CONF_DUMP_H
#define TG_CONF_DUMP_H

#include <stdio.h>
#include "core.h"

/* Before tg_config_load: copy every file the parser reads. */
void tg_conf_dump_record(void);
/* After a successful load: print the recorded files, each after a
 * "# configuration file PATH:" line, then "# effective settings". Frees the
 * copies. Returns 0, or -1 (out of memory, or writing failed). */
int tg_conf_dump(FILE *out, tg_config_t *c);

/* A load failed: drop what was recorded. */
void tg_conf_dump_discard(void);

/* Arena strings: "location ^~ /static/" (or the server level's note), a
 * server's names, and the core settings of a scope's module configs. */
const char *tg_conf_dump_location_name(tg_arena_t *a, const tg_location_t *l);
const char *tg_conf_dump_server_name(tg_arena_t *a, const tg_server_t *s);
const char *tg_conf_dump_core(tg_arena_t *a, void **mconf);

#endif
