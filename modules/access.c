/* access: allow or deny by client address, nginx style.
 *
 *   allow 10.0.0.0/8;  allow ::1;  deny all;
 *
 * Rules are checked in order in the access phase and the first that matches
 * decides: allow goes on, deny answers 403. No match: allowed. A location
 * with no rules of its own inherits all of its parent's; one rule replaces
 * them. The address is $remote_addr, so real_ip applies first. */
#include <string.h>
#include <arpa/inet.h>
#include "module.h"
#include "request.h"
#include "cidr.h"

typedef struct {
    tg_cidr_t cidr;
    unsigned all : 1;
    unsigned deny : 1;
} access_rule_t;

typedef struct {
    access_rule_t *rules;
    int nrules;
} access_conf_t;

static void *access_create_conf(tg_conf_t *cf)
{
    return tg_arena_alloc(cf->arena, sizeof(access_conf_t));
}

static const char *access_merge_conf(tg_conf_t *cf, void *parent, void *child)
{
    (void)cf;
    access_conf_t *p = parent, *c = child;
    if (c->nrules == 0)
        *c = *p;
    return NULL;
}

static const char *set_rule(tg_conf_t *cf, const tg_directive_t *d, void *conf)
{
    access_conf_t *c = conf;
    access_rule_t *rules = tg_arena_grow(cf->arena, c->rules, (size_t)c->nrules, 1, sizeof(*rules));
    if (rules == NULL)
        return "out of memory";
    access_rule_t *rule = &rules[c->nrules];
    tg_str_t v = tg_conf_arg(cf, 1);
    rule->deny = strcmp(d->name, "deny") == 0;
    if (tg_str_eq_lit(v, "all"))
        rule->all = 1;
    else if (tg_cidr_parse(v, &rule->cidr) != 0)
        return tg_conf_errf(cf, "invalid address \"%.*s\" in \"%s\", expected an address, "
                                "ADDRESS/BITS or all",
                            TG_STR_FMT(v), d->name);
    c->rules = rules;
    c->nrules++;
    return NULL;
}

static tg_rc_t access_access(tg_request_t *r, void *conf)
{
    access_conf_t *c = conf;
    for (int i = 0; i < c->nrules; i++) {
        access_rule_t *rule = &c->rules[i];
        if (!rule->all && !tg_cidr_match_text(&rule->cidr, 1, r->remote_addr))
            continue;
        if (!rule->deny)
            return TG_OK;
        if (tg_request_respond(r, 403, NULL, TG_NULL_STR) != 0)
            return TG_ERROR;
        return TG_DONE;
    }
    return TG_OK;
}

static int access_is_active(void *conf)
{
    return ((access_conf_t *)conf)->nrules > 0;
}

/* --explain and -T: the rules in the order they are tried. */
static const char *access_explain(tg_arena_t *a, void *conf, const tg_explain_req_t *req)
{
    access_conf_t *c = conf;
    char *s = tg_arena_printf(a, "rules:");
    for (int i = 0; s && i < c->nrules; i++) {
        const access_rule_t *rule = &c->rules[i];
        char text[INET6_ADDRSTRLEN] = "all";
        int bits = 0, full = rule->cidr.family == AF_INET ? 32 : 128;
        if (!rule->all) {
            inet_ntop(rule->cidr.family, rule->cidr.addr, text, sizeof(text));
            for (int k = 0; k < full / 8; k++)
                bits += __builtin_popcount(rule->cidr.mask[k]);
        }
        s = tg_arena_printf(a, "%s %s %s", s, rule->deny ? "deny" : "allow", text);
        if (s && !rule->all && bits != full)
            s = tg_arena_printf(a, "%s/%d", s, bits);
        if (s && i + 1 < c->nrules)
            s = tg_arena_printf(a, "%s;", s);
    }
    if (s == NULL || req == NULL || req->remote.len == 0)
        return s;
    /* the first rule the address is in decides, as access_access does */
    for (int i = 0; i < c->nrules; i++)
        if (c->rules[i].all || tg_cidr_match_text(&c->rules[i].cidr, 1, req->remote))
            return tg_arena_printf(a, "%s -> %.*s hits rule %d: %s", s, TG_STR_FMT(req->remote),
                                   i + 1, c->rules[i].deny ? "denied (403)" : "allowed");
    return tg_arena_printf(a, "%s -> %.*s hits no rule: allowed", s, TG_STR_FMT(req->remote));
}

static const tg_directive_t access_directives[] = {
    {"allow", TG_SCOPE_HTTP, 0, 1, 1, set_rule, 0},
    {"deny", TG_SCOPE_HTTP, 0, 1, 1, set_rule, 0},
    {NULL, 0, 0, 0, 0, NULL, 0},
};

tg_module_t tg_access_module = {
    .name = "access",
    .directives = access_directives,
    .create_conf = access_create_conf,
    .merge_conf = access_merge_conf,
    .is_active = access_is_active,
    .explain = access_explain,
    .on_access = access_access,
};
