/* The one ordered list of modules. Order is hook order within a phase:
 * real_ip first (it decides $remote_addr for everyone after it), the access
 * log last. Adding a module is one line here plus its file. */
#include <stddef.h>
#include "module.h"
#include "core.h"
#include "proxy.h"

extern tg_module_t tg_realip_module;
extern tg_module_t tg_accesslog_module;

tg_module_t *const tg_modules[] = {
    &tg_core_module,
    &tg_realip_module,
    &tg_upstream_module,
    &tg_proxy_module,
    &tg_accesslog_module,
    NULL,
};

int tg_nmodules;

void tg_modules_init(void)
{
    for (tg_nmodules = 0; tg_modules[tg_nmodules]; tg_nmodules++)
        tg_modules[tg_nmodules]->index = tg_nmodules;
}
