/* `tollgate -v` / `-V` (src/version.c): versions of the binary, the linked
 * libraries and the build. */
#ifndef TG_VERSION_H
#define TG_VERSION_H

#include <stdio.h>

/* The configuration file used when -c is not given. */
#ifndef TG_DEFAULT_CONF
#define TG_DEFAULT_CONF "conf/tollgate.conf"
#endif

/* Where the installed Lua libraries are (lua/tollgate/ of the tree). */
#ifndef TG_LUA_LIB_DIR
#define TG_LUA_LIB_DIR "/usr/local/share/tollgate/lua"
#endif

/* Print the version and every linked library's; with build != 0 also the
 * compiler, flags, build flavour, packages built against and default paths. */
void tg_version_print(FILE *out, int build);

#endif
