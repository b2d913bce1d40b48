/* A tiny header-only TAP producer for the C unit tests, in the spirit of
 * Perl's Test::More: ok(), is_int(), is_str(), diag(), and done_testing(),
 * which prints the plan last (TAP allows a trailing plan) and returns the exit
 * status for main(). Results go to stdout, failure diagnostics to stderr as
 * '#' lines, which is what prove expects. Each test binary includes this
 * once, so the counters below are per program. */
#ifndef TG_TAP_H
#define TG_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_run, tap_failed;

static inline void __attribute__((format(printf, 1, 2))) diag(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout); /* keep diagnostics next to their result when both go to a tty */
    fputs("# ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static inline int tap_vresult(int pass, const char *file, int line, const char *fmt, va_list ap)
{
    tap_run++;
    printf("%sok %d - ", pass ? "" : "not ", tap_run);
    vprintf(fmt, ap);
    putchar('\n');
    if (!pass) {
        tap_failed++;
        diag("  Failed test at %s line %d.", file, line);
    }
    return pass;
}

static inline int __attribute__((format(printf, 4, 5)))
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = tap_vresult(pass, file, line, fmt, ap);
    va_end(ap);
    return r;
}

static inline int tap_is_int(long long got, long long want, const char *file, int line,
                             const char *name)
{
    int pass = tap_ok(got == want, file, line, "%s", name);

    if (!pass) diag("         got: %lld\n#     expected: %lld", got, want);
    return pass;
}

static inline int tap_is_str(const char *got, const char *want, const char *file, int line,
                             const char *name)
{
    int pass = (got == NULL || want == NULL) ? got == want : strcmp(got, want) == 0;

    tap_ok(pass, file, line, "%s", name);
    if (!pass)
        diag("         got: %s%s%s\n#     expected: %s%s%s", got ? "'" : "", got ? got : "NULL",
             got ? "'" : "", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    return pass;
}

/* ok(cond, "name %d", i): the name is a printf format. */
#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* is_int(got, expected, "name"): compared as long long. */
#define is_int(got, want, name)                                                                    \
    tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__, (name))
/* is_str(got, expected, "name"): NUL-terminated strings; NULL equals only NULL. */
#define is_str(got, want, name) tap_is_str((got), (want), __FILE__, __LINE__, (name))

/* Prints the plan; returns 0 when everything passed (use as main's result). */
static inline int done_testing(void)
{
    printf("1..%d\n", tap_run);
    fflush(stdout);
    return tap_failed == 0 ? 0 : tap_failed < 255 ? tap_failed : 254;
}

#endif
