/* @public Quoted strings for machine readers (src/json.c): the contents of a JSON
 * string (the access log's json and escape=json formats, the stats answer)
 * and of a Prometheus label value (the stats exposition). Both take any
 * bytes and always write valid UTF-8 that the reader decodes back to the
 * input's characters; a byte that is not part of well-formed UTF-8 becomes
 * U+FFFD. Nothing here allocates: the caller gives a buffer, and a value
 * that does not fit is cut between characters, never inside an escape or a
 * multi-byte character, so what was written is always a valid string body. */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>
#include "str.h"
#include "arena.h"

/* Most output bytes one input byte can become ("\u0001", "\ufffd"). */
#define TG_JSON_ESCAPE_MAX 6

/* Write `s` escaped as the inside of a JSON string (RFC 8259; no quotes
 * around it) into dst[0..cap). '"' and '\' get a backslash; \b \f \n \r \t
 * their short escapes; the other C0 controls, DEL, the C1 controls
 * (U+0080..U+009F) and U+2028/U+2029 (line breaks to JavaScript and to some
 * log viewers) are written \u00hh / \u20hh; every maximal ill-formed
 * subsequence (Unicode 15 §3.9, what Python and browsers replace) becomes
 * \ufffd; all other characters pass unchanged. Returns the bytes written;
 * *used (if not NULL) gets the input bytes they stand for, less than s.len
 * when the rest did not fit. */
size_t tg_json_escape(char *dst, size_t cap, tg_str_t s, size_t *used);

/* The bytes tg_json_escape writes for all of `s`. */
size_t tg_json_escape_len(tg_str_t s);

/* Write `s` as a Prometheus label value (the text exposition format, inside
 * the quotes): '\' as \\, '"' as \", a line feed as \n, and nothing else
 * escaped, as the format says; an ill-formed UTF-8 subsequence becomes the
 * three bytes of U+FFFD (label values must be UTF-8, and the format has no
 * \u escape). Same contract as tg_json_escape. */
size_t tg_json_escape_prom(char *dst, size_t cap, tg_str_t s, size_t *used);

/* `s` escaped for a JSON string (prom 0) or a Prometheus label value
 * (prom 1), NUL-terminated in the arena; NULL when out of memory. */
char *tg_json_escape_dup(tg_arena_t *a, tg_str_t s, int prom);

#endif
