/* @public Strings as (pointer, length) pairs, and the small parsers every part of the
 * gateway shares: sizes, durations, case-insensitive compares. A tg_str_t
 * never owns its memory; whoever made it (config arena, request arena, an I/O
 * buffer) keeps it alive. Nothing here allocates. */
#ifndef TG_STR_H
#define TG_STR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *p; /* not NUL-terminated unless documented */
    size_t len;
} tg_str_t;

typedef int64_t tg_msec_t;

#define TG_STR(lit) ((tg_str_t){(lit), sizeof(lit) - 1})
#define TG_NULL_STR ((tg_str_t){NULL, 0})
#define TG_STR_FMT(s) (int)(s).len, (s).p /* printf("%.*s", TG_STR_FMT(s)) */

static inline tg_str_t tg_str_c(const char *s)
{
    return (tg_str_t){s, s ? strlen(s) : 0};
}

static inline int tg_str_eq(tg_str_t a, tg_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline int tg_str_eq_lit(tg_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.p, lit, n) == 0;
}

/* ASCII case-insensitive equality, the rule for header names and tokens.
 * Inline so that the length test, which settles most header-name compares,
 * costs no call. */
int tg_str_caseeq_n(const char *a, const char *b, size_t n);
static inline int tg_str_caseeq(tg_str_t a, tg_str_t b)
{
    return a.len == b.len && tg_str_caseeq_n(a.p, b.p, a.len);
}
/* Inline so that strlen of a literal is folded and a length mismatch, the
 * usual case when scanning headers, costs one compare. */
static inline int tg_str_caseeq_lit(tg_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && tg_str_caseeq(a, (tg_str_t){lit, n});
}
/* 1 when `s` starts with `prefix`, case-insensitively. */
int tg_str_has_caseprefix(tg_str_t s, const char *prefix);
/* Find `needle` inside `s` case-insensitively as a comma-separated token
 * ("keep-alive, Upgrade" contains token "upgrade"). */
int tg_str_has_token(tg_str_t list, const char *token);
tg_str_t tg_str_trim(tg_str_t s);

/* "10k", "5m", "1g", "512" -> bytes. Returns 0, or -1 on bad syntax/overflow. */
int tg_parse_size(tg_str_t s, int64_t *out);
/* "250ms", "10s", "5m", "1h", "2d", plain number = seconds. Returns 0 or -1. */
int tg_parse_msec(tg_str_t s, tg_msec_t *out);
/* Non-negative decimal integer that fits in int64. Returns 0 or -1. */
int tg_parse_int(tg_str_t s, int64_t *out);

/* Digits of v at p, in decimal (room for 20) or lowercase hex (room for 16);
 * not NUL-terminated. Return how many. snprintf costs ~1,000 instructions a
 * call, which shows on the per-request path. */
size_t tg_fmt_dec(char *p, uint64_t v);
size_t tg_fmt_hex(char *p, uint64_t v);
/* IMF-fixdate of t ("Tue, 14 Nov 2023 22:13:20 GMT", RFC 9110 5.6.7) at p
 * (room for 32); its length. */
size_t tg_fmt_http_date(char *p, time_t t);

/* Base64 (RFC 4648) without padding (strip '=' first) into `out`, which has
 * room for n * 3 / 4 + 1 bytes. `alphabets`: TG_B64_STD ('+' '/'),
 * TG_B64_URL ('-' '_'), or both. Returns the length, or -1 on a byte outside
 * the alphabets or a length no encoding has; with `strict`, also when the
 * last character carries stray bits (RFC 7515's base64url must not). */
#define TG_B64_STD 1
#define TG_B64_URL 2
long tg_base64_decode(const char *s, size_t n, unsigned char *out, int alphabets, int strict);
/* One character's value (0 to 63) in `alphabets`, or -1. */
int tg_base64_digit(unsigned char c, int alphabets);

/* The one unkeyed hash: 64-bit FNV-1a, for tables whose keys a client does
 * not choose, and consistent hashing. Its values are part of behaviour:
 * upstream hash rings (balance.c) place keys by them, so t/unit/str.c pins
 * them; change it and every `balance hash` key moves. */
uint64_t tg_hash64(const void *data, size_t len);
/* The keyed hash: SipHash-2-4 with a 128-bit result, for shared tables whose
 * keys clients pick (a client cannot make keys collide without the key). */
void tg_siphash128(const uint64_t key[2], const void *data, size_t len, uint64_t out[2]);

#endif
