/* OpenSSL's allocator (src/tls_mem.c): libcrypto's malloc, realloc and free
 * go through Tollgate's functions, which keep a few freed record buffers for
 * the next connection. */
#ifndef TG_TLS_MEM_H
#define TG_TLS_MEM_H

/* Installs the functions; before anything calls into OpenSSL (the first
 * thing main does). 0, or -1: OpenSSL had allocated already (it then keeps
 * its own, which works the same, only slower). */
int tg_tls_mem_init(void);

#endif
