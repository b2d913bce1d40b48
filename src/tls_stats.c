/* The served certificates as JSON or Prometheus text (tls_stats.h). */
#include <string.h>
#include <time.h>
#include <openssl/x509v3.h>
#include "tls_stats.h"
#include "tls_conf.h"
#include "acme.h"
#include "ocsp.h"
#include "json.h"

#define MAX_LEAVES 4

static const char *const result_names[] = {"none", "ok", "failed"};

/* `s` escaped for a JSON string or a Prometheus label, in the arena. */
static char *esc(tg_arena_t *a, const char *s, int prom)
{
    return tg_json_escape_dup(a, tg_str_c(s), prom);
}

/* The leaf's DNS names, space separated (its CN when it has none). */
static char *leaf_names(tg_arena_t *a, X509 *x)
{
    char *out = "";
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; out && i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
        out = tg_arena_printf(a, "%s%s%.*s", out, *out ? " " : "",
                              ASN1_STRING_length(g->d.dNSName), (const char *)d);
    }
    GENERAL_NAMES_free(gens);
    if (out && *out == '\0') {
        char cn[256] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        out = tg_arena_printf(a, "%s", cn);
    }
    return out;
}

static const tg_acme_cert_t *acme_cert_of(tg_acme_main_t *run, tg_server_t *s, int *slot)
{
    for (int i = 0; run && i < run->ncerts; i++)
        if (run->certs[i].server == s) {
            *slot = i;
            return &run->certs[i];
        }
    return NULL;
}

static const char *const prom_help =
    "# HELP tollgate_tls_certificate_expiry_seconds Seconds until the certificate served expires "
    "(negative once expired).\n"
    "# TYPE tollgate_tls_certificate_expiry_seconds gauge\n";
static const char *const prom_acme_help =
    "# HELP tollgate_acme_last_attempt_timestamp_seconds When this gateway last asked the CA "
    "for the certificate (0: never).\n"
    "# TYPE tollgate_acme_last_attempt_timestamp_seconds gauge\n"
    "# HELP tollgate_acme_last_result The result of that attempt (the label with value 1).\n"
    "# TYPE tollgate_acme_last_result gauge\n"
    "# HELP tollgate_acme_next_attempt_timestamp_seconds When the next attempt (renewal or "
    "retry) is planned.\n"
    "# TYPE tollgate_acme_next_attempt_timestamp_seconds gauge\n";

/* The certificate's OCSP state (ocsp.h): "none" when nothing fetches for it. */
static tg_ocsp_slot_t ocsp_state(tg_config_t *c, X509 *x)
{
    tg_ocsp_slot_t sl;
    if (tg_ocsp_lookup(c, x, &sl) != 0 || sl.status < 0 || sl.status > TG_OCSP_ERROR)
        memset(&sl, 0, offsetof(tg_ocsp_slot_t, der));
    return sl;
}

static char *ocsp_json(tg_arena_t *a, char *o, tg_config_t *c, X509 *x)
{
    tg_ocsp_slot_t sl = ocsp_state(c, x);
    sl.last_error[sizeof(sl.last_error) - 1] = '\0';
    char *ee = esc(a, sl.last_error, 0);
    int stapled = sl.status == TG_OCSP_GOOD && sl.next_update > (int64_t)time(NULL);
    return ee ? tg_arena_printf(a,
                                "%s,\"ocsp\":{\"status\":\"%s\",\"stapled\":%s,"
                                "\"this_update\":%lld,\"next_update\":%lld,\"last_fetch\":%lld,"
                                "\"last_result\":\"%s\",\"last_error\":\"%s\",\"next_fetch\":%lld}",
                                o, tg_ocsp_status_names[sl.status], stapled ? "true" : "false",
                                (long long)sl.this_update, (long long)sl.next_update,
                                (long long)sl.last_fetch,
                                sl.last_fetch == 0 ? "none" : sl.last_ok ? "ok" : "failed", ee,
                                (long long)sl.next_fetch)
              : NULL;
}

static const char *const prom_ocsp_help =
    "# HELP tollgate_tls_ocsp_status The OCSP status of the certificate (the label with value "
    "1; only good is stapled).\n"
    "# TYPE tollgate_tls_ocsp_status gauge\n"
    "# HELP tollgate_tls_ocsp_next_update_seconds Seconds until the held OCSP response's "
    "nextUpdate (negative once past; absent without a response).\n"
    "# TYPE tollgate_tls_ocsp_next_update_seconds gauge\n";

static char *ocsp_prom(tg_arena_t *a, char *o, tg_config_t *c, X509 *x, const char *es,
                       const char *en, int first)
{
    tg_ocsp_slot_t sl = ocsp_state(c, x);
    o = tg_arena_printf(a, "%s%stollgate_tls_ocsp_status{server=\"%s\",names=\"%s\",status=\"%s\"} 1\n",
                        o, first ? prom_ocsp_help : "", es, en, tg_ocsp_status_names[sl.status]);
    if (o && sl.next_update)
        o = tg_arena_printf(a, "%stollgate_tls_ocsp_next_update_seconds{server=\"%s\",names=\"%s\"} "
                               "%lld\n",
                            o, es, en, (long long)(sl.next_update - (int64_t)time(NULL)));
    return o;
}

char *tg_tls_stats_render(tg_arena_t *a, const char *out, const char *sep, tg_config_t *c,
                          int prom)
{
    tg_acme_main_t *run = tg_acme_main(c);
    int64_t now = (int64_t)time(NULL);
    int k = 0;
    char *o = (char *)out;
    for (int i = 0; o && i < c->nservers; i++) {
        tg_server_t *s = c->servers[i];
        X509 *leaves[MAX_LEAVES];
        int n = tg_tls_server_leaves(s->mconf, leaves, MAX_LEAVES);
        int slot = -1;
        const tg_acme_cert_t *ac = acme_cert_of(run, s, &slot);
        const tg_acme_slot_t *sl = ac ? &run->shm->slots[slot] : NULL;
        const char *server = s->nnames ? tg_arena_printf(a, "%.*s", TG_STR_FMT(s->names[0])) : "";
        for (int j = 0; o && server && j < n; j++) {
            X509 *x = leaves[j];
            int64_t na = tg_acme_asn1_time(X509_get0_notAfter(x));
            int placeholder = ac && X509_check_issued(x, x) == X509_V_OK;
            char *names = leaf_names(a, x);
            char *en = names ? esc(a, names, prom) : NULL, *es = esc(a, server, prom);
            if (en == NULL || es == NULL)
                return NULL;
            const char *src = ac ? (placeholder ? "acme-placeholder" : "acme") : "file";
            if (prom) {
                o = tg_arena_printf(a,
                                    "%s%stollgate_tls_certificate_expiry_seconds{server=\"%s\","
                                    "names=\"%s\",source=\"%s\"} %lld\n",
                                    o, k == 0 ? prom_help : "", es, en, src, (long long)(na - now));
                o = o ? ocsp_prom(a, o, c, x, es, en, k == 0) : NULL;
            } else {
                o = tg_arena_printf(a,
                                    "%s%s{\"server\":\"%s\",\"names\":\"%s\",\"source\":\"%s\","
                                    "\"not_after\":%lld,\"expiry_seconds\":%lld,\"placeholder\":%s",
                                    o, k == 0 ? sep : ",", es, en, ac ? "acme" : "file",
                                    (long long)na, (long long)(na - now),
                                    placeholder ? "true" : "false");
                if (o && sl) {
                    char *ee = esc(a, sl->last_error, 0);
                    int r = sl->last_result >= 0 && sl->last_result <= 2 ? sl->last_result : 0;
                    o = ee ? tg_arena_printf(a,
                                             "%s,\"last_attempt\":%lld,\"last_result\":\"%s\","
                                             "\"last_error\":\"%s\",\"next_attempt\":%lld",
                                             o, (long long)sl->last_attempt, result_names[r], ee,
                                             (long long)sl->next_attempt)
                           : NULL;
                }
                o = o ? ocsp_json(a, o, c, x) : NULL;
                o = o ? tg_arena_printf(a, "%s}", o) : NULL;
            }
            k++;
        }
    }
    if (o && !prom && k)
        o = tg_arena_printf(a, "%s]", o);
    for (int i = 0; o && prom && run && i < run->ncerts; i++) {
        const tg_acme_slot_t *sl = &run->shm->slots[i];
        char *en = esc(a, run->certs[i].names_text, 1);
        int r = sl->last_result >= 0 && sl->last_result <= 2 ? sl->last_result : 0;
        o = en ? tg_arena_printf(a,
                                 "%s%stollgate_acme_last_attempt_timestamp_seconds{names=\"%s\"} "
                                 "%lld\ntollgate_acme_last_result{names=\"%s\",result=\"%s\"} 1\n"
                                 "tollgate_acme_next_attempt_timestamp_seconds{names=\"%s\"} %lld\n",
                                 o, i == 0 ? prom_acme_help : "", en, (long long)sl->last_attempt, en,
                                 result_names[r], en, (long long)sl->next_attempt)
               : NULL;
    }
    return o;
}
