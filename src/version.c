/* `tollgate -v` and `-V`: the version, every library linked in with its
 * version, and (-V) how the binary was built.
 *
 * A library's version comes from its run-time API where it has one, so a
 * shared library upgraded under the binary shows its real version; where
 * there is none (hiredis, liburing 2.3, libsystemd, LuaJIT, llhttp, which
 * is compiled in) the version the build saw is printed and marked so. The
 * build facts (compiler, flags, flavour, pkg-config versions) come from the
 * Makefile as TG_BUILD_* strings defined for this file only. */
#include <stdio.h>
#include <ev.h>
#include <llhttp.h>
#include <pcre2.h>
#include <openssl/crypto.h>
#include <zlib.h>
#include <brotli/encode.h>
#include <zstd.h>
#include <hiredis/hiredis.h>
#include <luajit-2.1/luajit.h>
#include "version.h"
#include "core.h"

#ifndef TG_BUILD_CC
#define TG_BUILD_CC "unknown"
#endif
#ifndef TG_BUILD_CFLAGS
#define TG_BUILD_CFLAGS "unknown"
#endif
#ifndef TG_BUILD_LDFLAGS
#define TG_BUILD_LDFLAGS "unknown"
#endif
#ifndef TG_BUILD_FLAVOUR
#define TG_BUILD_FLAVOUR "unknown"
#endif
#ifndef TG_BUILD_PKGS
#define TG_BUILD_PKGS "unknown"
#endif
#ifndef TG_BUILD_LIBURING
#define TG_BUILD_LIBURING "unknown"
#endif
#ifndef TG_BUILD_LIBSYSTEMD
#define TG_BUILD_LIBSYSTEMD "unknown"
#endif

/* nghttp2 is listed only by a build that links it (the Makefile defines
 * TG_HAVE_NGHTTP2 when libnghttp2 is among the linked packages). */
#ifdef TG_HAVE_NGHTTP2
#include <nghttp2/nghttp2.h>
static const char *nghttp2_text(void)
{
    nghttp2_info *i = nghttp2_version(0);
    return i ? i->version_str : "?";
}
#else
static const char *nghttp2_text(void)
{
    return NULL;
}
#endif

/* Was PCRE2 built with its JIT (regexes then compile to machine code)? */
static int pcre2_jit_available(void)
{
    uint32_t jit = 0;
    return pcre2_config(PCRE2_CONFIG_JIT, &jit) >= 0 && jit;
}

void tg_version_print(FILE *out, int build)
{
    char pcre[64] = "?";
    uint32_t br = BrotliEncoderVersion();
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    fprintf(out, "tollgate %s\n", TG_VERSION);
    fprintf(out, "libraries:\n");
    fprintf(out, "  openssl   %s\n", OpenSSL_version(OPENSSL_VERSION));
    fprintf(out, "  luajit    %s (build time)\n", LUAJIT_VERSION);
    fprintf(out, "  zlib      %s\n", zlibVersion());
    fprintf(out, "  brotli    %u.%u.%u\n", br >> 24, (br >> 12) & 0xfff, br & 0xfff);
    fprintf(out, "  zstd      %s\n", ZSTD_versionString());
    fprintf(out, "  hiredis   %d.%d.%d (build time)\n", HIREDIS_MAJOR, HIREDIS_MINOR,
            HIREDIS_PATCH);
    fprintf(out, "  liburing  %s (build time)\n", TG_BUILD_LIBURING);
    fprintf(out, "  libev     %d.%d\n", ev_version_major(), ev_version_minor());
    fprintf(out, "  llhttp    %d.%d.%d (compiled in)\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
            LLHTTP_VERSION_PATCH);
    fprintf(out, "  pcre2     %s (jit %s)\n", pcre, pcre2_jit_available() ? "yes" : "no");
    fprintf(out, "  libsystemd %s (build time)\n", TG_BUILD_LIBSYSTEMD);
    if (nghttp2_text())
        fprintf(out, "  nghttp2   %s\n", nghttp2_text());
    if (!build)
        return;
    fprintf(out, "build:\n");
    fprintf(out, "  flavour   %s\n", TG_BUILD_FLAVOUR);
    fprintf(out, "  compiler  %s (%s)\n", TG_BUILD_CC, __VERSION__);
    fprintf(out, "  cflags    %s\n", TG_BUILD_CFLAGS);
    fprintf(out, "  ldflags   %s\n", TG_BUILD_LDFLAGS);
    fprintf(out, "  packages  %s\n", TG_BUILD_PKGS);
    fprintf(out, "paths:\n");
    fprintf(out, "  config    %s (default of -c)\n", TG_DEFAULT_CONF);
    fprintf(out, "  prefix    the working directory (default of -p)\n");
    fprintf(out, "  lua       %s (the Lua libraries, in lua_package_path's default)\n",
            TG_LUA_LIB_DIR);
}
