/* Unit tests for src/uri.c: request-target forms and path normalisation
 * (decoding, dot segments, slashes, and what is rejected). */
#include <stdio.h>
#include <string.h>
#include "uri.h"
#include "tap.h"

static void split(const char *in, int rc, const char *auth, const char *path, const char *query)
{
    tg_uri_t u = {0};
    int got = tg_uri_split(tg_str_c(in), &u);
    char a[256] = "", p[256] = "", q[256] = "";
    if (got == 0) {
        snprintf(a, sizeof(a), "%.*s", (int)u.authority.len, u.authority.p ? u.authority.p : "");
        snprintf(p, sizeof(p), "%.*s", (int)u.path.len, u.path.p ? u.path.p : "");
        snprintf(q, sizeof(q), "%.*s", (int)u.query.len, u.query.p ? u.query.p : "");
    }
    ok(got == rc && (rc != 0 || (!strcmp(a, auth) && !strcmp(p, path) && !strcmp(q, query))),
       "split \"%s\": rc %d authority \"%s\" path \"%s\" query \"%s\"", in, got, a, p, q);
}

static void norm(const char *in, const char *want)
{
    char out[512];
    long n = tg_uri_normalize(tg_str_c(in), out);
    if (want == NULL) {
        ok(n < 0, "normalize \"%s\" rejected", in);
        return;
    }
    ok(n >= 0 && (size_t)n == strlen(want) && memcmp(out, want, (size_t)n) == 0,
       "normalize \"%s\" -> \"%s\" (got \"%.*s\")", in, want, n < 0 ? 0 : (int)n, out);
}

int main(void)
{
    split("/", 0, "", "/", "");
    split("/a/b?x=1&y", 0, "", "/a/b", "x=1&y");
    split("/a?", 0, "", "/a", "");
    split("*", 0, "", "*", "");
    split("http://Example.com:8080/p?q", 0, "Example.com:8080", "/p", "q");
    split("https://h/", 0, "h", "/", "");
    split("a/b", -1, "", "", "");
    split("", -1, "", "", "");
    split("ftp://h/", -1, "", "", "");

    norm("/", "/");
    norm("/a/b/c", "/a/b/c");
    norm("/a//b///c", "/a/b/c");
    norm("/a/./b/.", "/a/b/");
    norm("/a/b/../c", "/a/c");
    norm("/a/b/..", "/a/");
    norm("/%41%62c", "/Abc");
    norm("/a%2fb", "/a/b");
    norm("/%2e%2e/x", NULL);
    norm("/a/%2E%2E/b", "/b");
    norm("/..", NULL);
    norm("/a/../..", NULL);
    norm("/a%00b", NULL);
    norm("/a%zz", NULL);
    norm("/a%4", NULL);
    norm("/caf%C3%A9", "/caf\xc3\xa9");
    norm("/a+b", "/a+b");
    return done_testing();
}
