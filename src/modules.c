/* The one ordered list of modules. Order is hook order within a phase:
 * real_ip first (it decides $remote_addr for everyone after it), then
 * request_id (the id header goes upstream whatever answers); access:
 * limit_conn, then rate_limit (a refused request costs nothing further, and a CORS
 * preflight counts too), then allow/deny, then cors, then lua (scripts see only requests the
 * built-in checks let through); response headers: rate_limit's RateLimit
 * headers, security_headers, cors, lua_header_filter, compress (it sees the
 * final Content-Type and adds Content-Encoding and Vary), then the user's
 * add_header/remove_header (so remove_header can drop anything); the access
 * log last. Adding a module is one line here plus its file (src/ for core
 * parts, modules/ for middleware). */
#include <stddef.h>
#include "module.h"
#include "core.h"
#include "proxy.h"
#include "upstream.h"
#include "health.h"
#include "tls_conf.h"
#include "error_page.h"
#include "h2_conf.h"

extern tg_module_t tg_upstream_dyn_module;
extern tg_module_t tg_acme_module;
extern tg_module_t tg_ocsp_module;
extern tg_module_t tg_app_module;
extern tg_module_t tg_realip_module;
extern tg_module_t tg_redirect_https_module;
extern tg_module_t tg_request_id_module;
extern tg_module_t tg_cache_module;
extern tg_module_t tg_accesslog_module;
extern tg_module_t tg_rate_limit_module;
extern tg_module_t tg_limit_conn_module;
extern tg_module_t tg_security_headers_module;
extern tg_module_t tg_cors_module;
extern tg_module_t tg_lua_module;
extern tg_module_t tg_compress_module;
extern tg_module_t tg_cache_variant_module;
extern tg_module_t tg_headers_module;
extern tg_module_t tg_access_module;
extern tg_module_t tg_stats_module;
extern tg_module_t tg_admin_module;
extern tg_module_t tg_static_module;
extern tg_module_t tg_rewrite_module;
extern tg_module_t tg_map_module;
extern tg_module_t tg_app_status_module;

tg_module_t *const tg_modules[] = {
    &tg_core_module,
    &tg_app_module, /* before the upstream module: an app block's own health_check, server */
    &tg_upstream_module, /* its init_conf resolves upstream references before the others run */
    &tg_upstream_dyn_module, /* after upstream: the resolve servers' shared records */
    &tg_health_module,
    &tg_realip_module,
    &tg_cache_module, /* before every response hook: it stores the upstream's own head and
                       * identity body; its content hook answers before return and the proxy */
    &tg_request_id_module, /* sets the id header before anything can answer */
    &tg_acme_module, /* answers http-01 challenges before any rewrite or redirect; its
                      * init_conf gives certificates to the tls module, which comes later */
    &tg_redirect_https_module, /* redirect_https answers before any other rewrite */
    &tg_rewrite_module, /* rewrite/return/break: before lua_rewrite, as nginx; its content
                         * hook (return) is the first */
    &tg_map_module,
    &tg_error_page_module,
    &tg_tls_module,
    &tg_ocsp_module, /* after tls: its init_conf reads the contexts tls built */
    &tg_h2_module,
    &tg_limit_conn_module, /* a refused connection costs nothing further */
    &tg_rate_limit_module,
    &tg_access_module, /* allow/deny: after rate_limit, before cors */
    &tg_security_headers_module,
    &tg_cors_module,
    &tg_lua_module,
    &tg_compress_module,
    &tg_cache_variant_module, /* after compress: stores its output for a cache entry */
    &tg_headers_module,
    &tg_admin_module, /* the runtime API: its access hook reads a PATCH body after allow/deny */
    &tg_stats_module, /* content handlers: return (rewrite), stats, static, then the
                       * proxy (the fallback); its log hook must see the final status */
    &tg_app_status_module, /* app_status: a content handler, before the proxy */
    &tg_static_module, /* files: where a root is set and no upstream was chosen */
    &tg_proxy_module, /* route: proxy_pass unless a route hook chose; content: last */
    &tg_accesslog_module,
    NULL,
};

int tg_nmodules;

void tg_modules_init(void)
{
    for (tg_nmodules = 0; tg_modules[tg_nmodules]; tg_nmodules++)
        tg_modules[tg_nmodules]->index = tg_nmodules;
}
