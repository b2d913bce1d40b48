/* `tollgate -T`: the whole configuration as loaded, as `nginx -T` prints it:
 * every file the parser read (includes where they were read), each after a
 * `# configuration file PATH:` line, then a section with the effective
 * settings of the loaded config, defaults applied: main settings,
 * listeners, upstreams with their servers, and per server and location the
 * core limits and every module switched on there with the line its explain
 * callback gives (module.h).
 *
 * The file texts are copied while the parser reads them (tg_conf_on_file)
 * and printed only once the config loaded without error, so what is shown
 * is what was checked. Runs in the command-line process only: malloc is
 * fine here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conf_dump.h"
#include "core.h"
#include "upstream.h"

typedef struct dump_file_s {
    char *path, *text;
    size_t len;
    struct dump_file_s *next;
} dump_file_t;

static dump_file_t *files, **files_tail = &files;
static int files_oom;

static void files_free(void);

static void on_file(const char *path, const char *text, size_t len)
{
    dump_file_t *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->path = strdup(path)) == NULL || (f->text = malloc(len + 1)) == NULL) {
        if (f)
            free(f->path);
        free(f);
        files_oom = 1;
        return;
    }
    memcpy(f->text, text, len);
    f->len = len;
    *files_tail = f;
    files_tail = &f->next;
}

void tg_conf_dump_record(void)
{
    tg_conf_on_file = on_file;
}

void tg_conf_dump_discard(void)
{
    tg_conf_on_file = NULL;
    files_oom = 0;
    files_free();
}

static void files_free(void)
{
    while (files) {
        dump_file_t *f = files;
        files = f->next;
        free(f->path);
        free(f->text);
        free(f);
    }
    files_tail = &files;
}

const char *tg_conf_dump_location_name(tg_arena_t *a, const tg_location_t *l)
{
    static const char *const mod[] = {"", "= ", "^~ ", "~ ", ""};
    if (l == l->server->root)
        return "(server level: no location matched)";
    const char *m = mod[l->kind];
    uint32_t opts = 0;
    if (l->kind == TG_LOC_REGEX && pcre2_pattern_info(l->re, PCRE2_INFO_ARGOPTIONS, &opts) == 0 &&
        (opts & PCRE2_CASELESS))
        m = "~* ";
    return tg_arena_printf(a, "location %s%.*s", m, TG_STR_FMT(l->path));
}

const char *tg_conf_dump_server_name(tg_arena_t *a, const tg_server_t *s)
{
    char *n = tg_arena_printf(a, "%s", s->nnames ? "" : "\"\"");
    for (int i = 0; n && i < s->nnames; i++)
        n = tg_arena_printf(a, "%s%s%.*s", n, i ? " " : "", TG_STR_FMT(s->names[i]));
    return n;
}

const char *tg_conf_dump_core(tg_arena_t *a, void **mconf)
{
    const tg_core_conf_t *c = tg_core_conf(mconf);
    return tg_arena_printf(a,
                           "client_max_body_size=%lld client_max_uri_length=%lld "
                           "client_max_headers=%lld timeouts header=%lldms idle=%lldms "
                           "send=%lldms body=%lldms client_body_min_rate=%lld grace=%lldms "
                           "keepalive_requests=%lld server_tokens=%s",
                           (long long)c->client_max_body_size, (long long)c->client_max_uri,
                           (long long)c->client_max_headers, (long long)c->header_timeout,
                           (long long)c->idle_timeout, (long long)c->send_timeout,
                           (long long)c->body_timeout, (long long)c->body_min_rate,
                           (long long)c->body_rate_grace, (long long)c->keepalive_requests,
                           c->server_tokens ? "on" : "off");
}

/* Is module m in one of the location's hook arrays? */
static int hooked(const tg_location_t *l, const tg_module_t *m)
{
    for (int ph = 0; ph < TG_PHASE_COUNT; ph++)
        for (const tg_hook_t *h = l->hooks[ph]; h && h->module; h++)
            if (h->module == m)
                return 1;
    return 0;
}

static void dump_location(FILE *out, tg_arena_t *a, const tg_location_t *l)
{
    fprintf(out, "    %s", tg_conf_dump_location_name(a, l));
    if (l != l->server->root)
        fprintf(out, "  # %s:%d", l->file, l->line);
    fprintf(out, "\n        core: %s\n", tg_conf_dump_core(a, l->mconf));
    for (int i = 0; i < tg_nmodules; i++) {
        const tg_module_t *m = tg_modules[i];
        if (m == &tg_core_module || !hooked(l, m))
            continue;
        const char *line = m->explain ? m->explain(a, l->mconf[i], NULL) : NULL;
        fprintf(out, "        %s%s%s\n", m->name, line && *line ? ": " : "", line ? line : "");
    }
}

static const char *level_name(int l)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "crit"};
    return l >= 0 && l < 5 ? names[l] : "?";
}

static void dump_effective(FILE *out, tg_config_t *c, tg_arena_t *a)
{
    const tg_main_conf_t *m = c->main;
    fprintf(out, "# effective settings: the loaded configuration with its defaults (times in "
                 "ms, sizes in bytes)\n");
    fprintf(out, "main:\n    workers=%lld%s pid=%s error_log=%s level=%s user=%s%s%s%s\n",
            (long long)m->workers, m->workers == 0 ? " (auto: one per CPU)" : "",
            m->pid_file ? m->pid_file : "(none)", m->error_log ? m->error_log : "stderr",
            level_name(m->error_level), m->user.name ? m->user.name : "(the master's)",
            m->user.group ? ":" : "", m->user.group ? m->user.group : "",
            m->user.name && !m->user.explicit ? " (default for root)" : "");
    fprintf(out, "    shutdown_timeout=%lldms worker_connections=%lld "
                 "client_header_buffer_size=%lld io_uring=%s worker_stall_timeout=%lldms\n",
            (long long)m->shutdown_timeout, (long long)m->worker_connections,
            (long long)m->header_buffer_size, m->io_uring ? "on" : "off",
            (long long)m->stall_timeout);
    for (tg_listen_t *ls = c->listens; ls; ls = ls->next)
        fprintf(out, "listen %s: tls=%s http2=%s proxy_protocol=%s backlog=%d servers=%d "
                     "default_server=%s  # %s:%d\n",
                ls->text, ls->tls ? "on" : "off", ls->http2 ? "on" : "off",
                ls->proxy_protocol ? "on" : "off",
                ls->backlog, ls->nservers, tg_conf_dump_server_name(a, ls->default_server),
                ls->file, ls->line);
    for (tg_upstream_t *u = c->upstreams; u; u = u->next) {
        const char *d = tg_upstream_describe(a, u);
        /* one line per server reads better than the one-line form */
        for (const char *p = d; p && *p;) {
            const char *e = strstr(p, "; ");
            int n = e ? (int)(e - p) : (int)strlen(p);
            fprintf(out, "%s%.*s\n", p == d ? "" : "    ", n, p);
            p = e ? e + 2 : p + n;
        }
    }
    for (int i = 0; i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        fprintf(out, "server %s  # %s:%d\n    listen", tg_conf_dump_server_name(a, s), s->file,
                s->line);
        for (int k = 0; k < s->nlistens; k++)
            fprintf(out, " %s%s", s->listens[k]->text,
                    s->listens[k]->default_server == s ? " (default)" : "");
        fprintf(out, "\n");
        for (int k = 0; k < s->nlocations; k++)
            dump_location(out, a, s->locations[k]);
        dump_location(out, a, s->root);
    }
}

int tg_conf_dump(FILE *out, tg_config_t *c)
{
    tg_arena_t a;
    tg_conf_on_file = NULL;
    if (files_oom) {
        files_free();
        return -1;
    }
    for (dump_file_t *f = files; f; f = f->next) {
        fprintf(out, "# configuration file %s:\n", f->path);
        fwrite(f->text, 1, f->len, out);
        if (f->len && f->text[f->len - 1] != '\n')
            fputc('\n', out);
        fputc('\n', out);
    }
    files_free();
    tg_arena_init(&a, 0);
    dump_effective(out, c, &a);
    tg_arena_destroy(&a);
    return ferror(out) ? -1 : 0;
}
