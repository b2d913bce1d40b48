/* contrib/bench/wrk_no_resume.c: an LD_PRELOAD shim that makes wrk do a full TLS handshake
 * on every new connection. wrk reuses one SSL object per connection slot and resets it with
 * SSL_clear() between connections, which keeps the last session (with TLS 1.3, the one
 * from the server's ticket), so the next SSL_connect() resumes it. This wraps SSL_clear()
 * and drops the session after it. Used by contrib/bench/run for the tls_new scenario:
 *   gcc -O2 -shared -fPIC -o build/bench/wrk_no_resume.so contrib/bench/wrk_no_resume.c -ldl
 *   LD_PRELOAD=build/bench/wrk_no_resume.so wrk -H 'Connection: close' https://...
 * No OpenSSL headers needed: both functions are looked up at run time. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;

int SSL_clear(SSL *s)
{
    static int (*real_clear)(SSL *);
    static int (*set_session)(SSL *, void *);
    if (!real_clear) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(SSL *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    if (!real_clear)
        return 0;
    int r = real_clear(s);
    if (r == 1 && set_session)
        set_session(s, NULL);    /* no session: the next SSL_connect is a full handshake */
    return r;
}
