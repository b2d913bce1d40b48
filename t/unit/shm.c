/* Unit tests for src/shm.c: zones are page-rounded, zeroed, found by name and
 * unique per config; the next config gets the same mapping (contents kept)
 * for the same name, tag and size and a new one otherwise; a mapping outlives
 * the config that created it while another uses it; the process-shared mutex
 * serialises forked processes and reports a holder that died. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "shm.h"
#include "core.h"
#include "tap.h"

static tg_config_t *config_new(tg_conf_t *cf)
{
    tg_config_t *c = calloc(1, sizeof(*c));
    tg_arena_init(&c->arena, 0);
    memset(cf, 0, sizeof(*cf));
    cf->arena = &c->arena;
    cf->config = c;
    cf->file = "test.conf";
    cf->line = 1;
    return c;
}

static void config_free(tg_config_t *c)
{
    tg_arena_destroy(&c->arena);
    free(c);
}

static void test_zones(void)
{
    tg_conf_t cf1, cf2;
    tg_config_t *c1 = config_new(&cf1), *c2;
    tg_shm_zone_t *a = NULL, *b = NULL, *x = NULL, *a2 = NULL, *b2 = NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    ok(tg_shm_zone_add(&cf1, TG_STR("a"), 10000, "t1", &a) == NULL && a, "add a");
    is_int(a->size, (10000 + page - 1) / page * page, "size rounded up to pages");
    ok(((unsigned char *)a->data)[0] == 0 && ((unsigned char *)a->data)[a->size - 1] == 0,
       "zeroed");
    ok(!a->reused, "new");
    const char *err = tg_shm_zone_add(&cf1, TG_STR("a"), 10000, "t1", &x);
    ok(err && strstr(err, "already declared at test.conf:1"), "duplicate name refused: %s",
       err ? err : "");
    ok(tg_shm_zone_add(&cf1, TG_STR("b"), 4096, "t1", &b) == NULL, "add b");
    ok(tg_shm_zone_add(&cf1, TG_STR("c"), 0, "t1", &x) != NULL, "size 0 refused");
    ok(tg_shm_zone_find(c1, TG_STR("b")) == b && tg_shm_zone_find(c1, TG_STR("zz")) == NULL,
       "find by name");
    strcpy(a->data, "state");

    /* the next generation, while the first is alive (a reload) */
    c2 = config_new(&cf2);
    ok(tg_shm_zone_add(&cf2, TG_STR("a"), 10000, "t1", &a2) == NULL, "add a again");
    ok(a2->reused && a2->data == a->data, "same name, tag, size: same mapping");
    is_str((char *)a2->data, "state", "contents kept");
    ok(tg_shm_zone_add(&cf2, TG_STR("b"), 8192, "t1", &b2) == NULL, "b with another size");
    ok(!b2->reused && b2->data != b->data, "another size: a new zone");
    tg_shm_zone_t *t2;
    ok(tg_shm_zone_add(&cf2, TG_STR("c"), 4096, "t2", &t2) == NULL && !t2->reused,
       "name not in the old config: new");
    config_free(c1);
    strcpy(a2->data, "after");
    is_str((char *)a2->data, "after", "still mapped after the old config went");
    config_free(c2);
}

static void test_mutex(void)
{
    struct shared {
        tg_shm_mutex_t mx;
        long counter;
    } *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ok(tg_shm_mutex_init(&s->mx) == 0, "mutex init");
    pid_t kids[2];
    for (int k = 0; k < 2; k++)
        if ((kids[k] = fork()) == 0) {
            for (int i = 0; i < 100000; i++) {
                tg_shm_mutex_lock(&s->mx);
                long v = s->counter;
                s->counter = v + 1; /* a read-modify-write the lock must protect */
                tg_shm_mutex_unlock(&s->mx);
            }
            _exit(0);
        }
    for (int k = 0; k < 2; k++)
        waitpid(kids[k], NULL, 0);
    is_int(s->counter, 200000, "two processes, 100000 locked increments each");

    pid_t p = fork();
    if (p == 0) {
        tg_shm_mutex_lock(&s->mx);
        _exit(0); /* dies holding it */
    }
    waitpid(p, NULL, 0);
    is_int(tg_shm_mutex_lock(&s->mx), 1, "holder died: lock says so");
    tg_shm_mutex_unlock(&s->mx);
    is_int(tg_shm_mutex_lock(&s->mx), 0, "consistent again");
    tg_shm_mutex_unlock(&s->mx);
    munmap(s, 4096);
}

int main(void)
{
    test_zones();
    test_mutex();
    return done_testing();
}
