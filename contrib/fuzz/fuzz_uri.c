/* libFuzzer target: request-target split and path normalisation. Checks the
 * invariants the router relies on: the result starts with '/', is no longer
 * than the input, has no "//", no "." or ".." segment and no NUL (a
 * %00 is refused). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_uri_t u;
    tg_str_t in = {(const char *)data, size};
    for (size_t i = 0; i < size; i++)
        if (data[i] <= ' ' || data[i] == 0x7f)
            return 0; /* llhttp rejects those before a target reaches us */
    if (tg_uri_split(in, &u) != 0 || (u.path.len == 1 && u.path.p[0] == '*'))
        return 0;
    char *out = malloc(u.path.len + 1);
    long n = tg_uri_normalize(u.path, out);
    if (n >= 0) {
        if (n == 0 || out[0] != '/' || (size_t)n > u.path.len || memchr(out, 0, (size_t)n))
            abort();
        for (long i = 0; i + 1 < n; i++)
            if (out[i] == '/' && out[i + 1] == '/')
                abort();
        for (long i = 0; i < n; i++) {
            if (out[i] != '/')
                continue;
            long e = i + 1;
            while (e < n && out[e] != '/')
                e++;
            long len = e - i - 1;
            if ((len == 1 && out[i + 1] == '.') || (len == 2 && out[i + 1] == '.' && out[i + 2] == '.'))
                abort();
        }
    }
    free(out);
    return 0;
}
