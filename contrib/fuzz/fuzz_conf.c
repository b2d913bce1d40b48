/* libFuzzer target: the whole config loader (lexer, parser, every module's
 * directives, merge, checks) on arbitrary text. It must never crash, leak or
 * hang; errors are fine (their messages are dropped). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    static char path[64];
    static FILE *devnull;
    if (!init) {
        tg_modules_init();
        snprintf(path, sizeof(path), "/tmp/tg-fuzz-conf-%d.conf", (int)getpid());
        tg_conf_prefix = "/tmp";
        devnull = fopen("/dev/null", "w");
        init = 1;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    FILE *saved = stderr; /* the loader's error messages: not interesting here */
    stderr = devnull;
    tg_config_t *c = tg_config_load(path, 1);
    stderr = saved;
    tg_config_destroy(c);
    return 0;
}
