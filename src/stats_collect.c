/* What the stats need from the rest of the core, kept out of src/stats.c
 * (the counters every layer calls, which must stay below them all): the
 * upstream servers' slots at config load (tg_stats_setup) and the gauges
 * each worker publishes (tg_stats_gauges_collect: its connections by state
 * from conn.c, its upstream servers' in-flight attempts and health from
 * balance.c), every second and before the stats endpoint answers. */
#include <stdlib.h>
#include "stats_collect.h"
#include "conn.h"
#include "upstream.h"
#include "worker.h"

_Static_assert(TG_STATS_UP == (int)TG_PEER_UP && TG_STATS_DOWN_PASSIVE == (int)TG_PEER_DOWN_PASSIVE &&
                   TG_STATS_DOWN_ACTIVE == (int)TG_PEER_DOWN_ACTIVE,
               "stats health values are balance.c's");

tg_stats_t *tg_stats_setup(tg_conf_t *cf)
{
    tg_stats_t *st = tg_stats_zone(cf);
    if (st == NULL || st->ups)
        return st;
    int nups = 0;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next)
        nups++;
    st->ups = tg_arena_alloc(cf->arena, (size_t)(nups ? nups : 1) * sizeof(*st->ups));
    if (st->ups == NULL)
        goto fail;
    for (tg_upstream_t *u = cf->config->upstreams; u; u = u->next) {
        tg_stats_upstream_t *su = &st->ups[st->nups++];
        su->u = u;
        su->name = u->name;
        su->npeers = u->npeers;
        su->slots = tg_arena_alloc(cf->arena, (size_t)u->npeers * sizeof(int) + 1);
        su->peer_names = tg_arena_alloc(cf->arena, (size_t)u->npeers * sizeof(tg_str_t) + 1);
        if (su->slots == NULL || su->peer_names == NULL)
            goto fail;
        for (int i = 0; i < u->npeers; i++) {
            su->peer_names[i] = u->peers[i].name;
            su->slots[i] = -1; /* a resolve server's slot: its address changes */
            if (u->peers[i].dynamic)
                continue;
            su->slots[i] = tg_stats_slot(cf, TG_STATS_PEER, u->name, u->peers[i].name);
            if (su->slots[i] < 0)
                tg_conf_warn(cf, "stats: upstream \"%.*s\" server \"%.*s\" is not counted on its "
                                 "own, more than %d upstream servers",
                             TG_STR_FMT(u->name), TG_STR_FMT(u->peers[i].name),
                             TG_STATS_MAX_PEERS);
        }
    }
    return st;
fail:
    tg_conf_error(cf, "out of memory");
    return NULL;
}

/* ---- gauges: each worker publishes its own ---- */

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
    tg_stats_gauges_collect();
}

int tg_stats_worker_start(tg_worker_t *w)
{
    tg_stats_t *st = w->config->stats;
    if (st == NULL)
        return 0;
    if ((st->timer = malloc(sizeof(ev_timer))) == NULL)
        return -1;
    st->upgrades_seen = w->upgrades;
    ev_timer_init(st->timer, timer_cb, 0., 1.);
    ev_timer_start(w->loop, st->timer);
    return 0;
}

void tg_stats_gauges_collect(void)
{
    tg_worker_t *w = tg_worker;
    tg_stats_t *st = w ? w->config->stats : NULL;
    tg_stats_worker_t *b = tg_stats_request_end();
    if (b == NULL || w->shutting_down)
        return;
    tg_conn_states_t cs;
    tg_conn_count_states(&cs);
    tg_stats_set(&b->conns_state[TG_STATS_CONN_READING], cs.reading);
    tg_stats_set(&b->conns_state[TG_STATS_CONN_WRITING], cs.writing);
    tg_stats_set(&b->conns_state[TG_STATS_CONN_IDLE], cs.idle);
    tg_stats_set(&b->conns_state[TG_STATS_CONN_UPGRADED], cs.upgraded);
    tg_stats_set(&b->h2_streams, w->h2_streams);
    tg_msec_t now = (tg_msec_t)(ev_now(w->loop) * 1000);
    for (int i = 0; i < st->nups; i++) {
        tg_stats_upstream_t *su = &st->ups[i];
        for (int k = 0; k < su->npeers; k++) {
            if (su->slots[k] < 0)
                continue;
            tg_peer_gauge_t g = tg_balance_peer_gauge(&su->u->peers[k], now);
            tg_stats_set(&b->peers[su->slots[k]].active, g.active);
            tg_stats_set(&b->peers[su->slots[k]].health, g.health);
        }
    }
}

