/* libaev core - contexts (contextvars) with copy-on-write maps.
 *
 * A context points to an immutable-while-shared map of (variable, value)
 * pairs. Copying a context shares the map; setting a variable in a context
 * whose map is shared first clones the map. Reference counts are atomic
 * because call_soon_threadsafe copies a context in a foreign thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "task_internal.h"

struct aev_context_var {
    char *name;
    void *default_value;
};

typedef struct ctx_map {
    uint32_t refs;
    uint32_t len, cap;
    struct {
        const aev_context_var_t *var;
        void *value;
    } items[];
} ctx_map_t;

struct aev_context {
    uint32_t refs;
    ctx_map_t *map; /* NULL: empty */
};

AEV__TLS aev_context_t *aev__thread_context;

/* A thread's own context is released when the thread exits. */
static pthread_key_t thread_context_key;
static pthread_once_t thread_context_once = PTHREAD_ONCE_INIT;

static void thread_context_release(void *ctx)
{
    aev__thread_context = NULL;
    aev_context_unref(ctx);
}

static void thread_context_key_create(void)
{
    (void)pthread_key_create(&thread_context_key, thread_context_release);
}

aev_context_var_t *aev_context_var_new(const char *name, void *default_value)
{
    aev_context_var_t *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->name = strdup(name ? name : "");
    if (!v->name) {
        free(v);
        return NULL;
    }
    v->default_value = default_value;
    return v;
}

void aev_context_var_free(aev_context_var_t *var)
{
    if (!var)
        return;
    free(var->name);
    free(var);
}

const char *aev_context_var_name(const aev_context_var_t *var)
{
    return var ? var->name : NULL;
}

static void map_unref(ctx_map_t *m)
{
    if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(m);
}

aev_context_t *aev_context_new(void)
{
    aev_context_t *c = calloc(1, sizeof *c);
    if (c)
        c->refs = 1;
    return c;
}

aev_context_t *aev_context_copy(const aev_context_t *ctx)
{
    aev_context_t *c = aev_context_new();
    if (c && ctx && ctx->map) {
        __atomic_add_fetch(&ctx->map->refs, 1, __ATOMIC_RELAXED);
        c->map = ctx->map;
    }
    return c;
}

aev_context_t *aev_context_copy_current(void)
{
    return aev_context_copy(aev__context_current_raw());
}

aev_context_t *aev_context_ref(aev_context_t *ctx)
{
    if (ctx)
        __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
    return ctx;
}

void aev_context_unref(aev_context_t *ctx)
{
    if (ctx && __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        map_unref(ctx->map);
        free(ctx);
    }
}

int aev_context_get(const aev_context_t *ctx, const aev_context_var_t *var, void **value)
{
    if (ctx && ctx->map) {
        for (uint32_t i = 0; i < ctx->map->len; i++) {
            if (ctx->map->items[i].var == var) {
                if (value)
                    *value = ctx->map->items[i].value;
                return 1;
            }
        }
    }
    if (value)
        *value = var ? var->default_value : NULL;
    return 0;
}

int aev_context_set(aev_context_t *ctx, aev_context_var_t *var, void *value)
{
    if (!ctx || !var)
        return -EINVAL;
    ctx_map_t *m = ctx->map;
    if (m) {
        for (uint32_t i = 0; i < m->len; i++) {
            if (m->items[i].var == var) {
                if (m->items[i].value == value)
                    return 0;
                break;
            }
        }
    }
    /* Clone when shared (or absent) or full, then write. */
    if (!m || __atomic_load_n(&m->refs, __ATOMIC_ACQUIRE) > 1 || m->len == m->cap) {
        uint32_t len = m ? m->len : 0;
        uint32_t cap = m && m->len < m->cap ? m->cap : (len ? len * 2 : 4);
        ctx_map_t *n = malloc(sizeof *n + (size_t)cap * sizeof n->items[0]);
        if (!n)
            return -ENOMEM;
        n->refs = 1;
        n->len = len;
        n->cap = cap;
        if (len)
            memcpy(n->items, m->items, (size_t)len * sizeof n->items[0]);
        map_unref(m);
        ctx->map = m = n;
    }
    for (uint32_t i = 0; i < m->len; i++) {
        if (m->items[i].var == var) {
            m->items[i].value = value;
            return 0;
        }
    }
    m->items[m->len].var = var;
    m->items[m->len].value = value;
    m->len++;
    return 0;
}

aev_context_t *aev_context_current(void)
{
    return aev__context_current_raw();
}

/* Where a set in "the current context" goes: the running callback's context
 * (created on first use), else the thread's own. */
aev_context_t **aev__context_current_slot(void)
{
    aev_loop_t *rl = aev__running_loop;
    if (rl) {
        if (rl->current_task)
            return aev__task_context_slot(rl->current_task);
        return rl->current_handle ? &rl->current_handle->context : &rl->plain_ctx;
    }
    return &aev__thread_context;
}

void *aev_context_var_get(const aev_context_var_t *var)
{
    void *v = NULL;
    aev_context_get(aev__context_current_raw(), var, &v);
    return v;
}

int aev_context_var_set(aev_context_var_t *var, void *value)
{
    if (!var)
        return -EINVAL;
    aev_context_t **slot = aev__context_current_slot();
    if (!*slot) {
        *slot = aev_context_new();
        if (!*slot)
            return -ENOMEM;
        aev_loop_t *rl = aev__running_loop;
        if (rl) /* keep the loop's view of the context in effect up to date */
            rl->cur_ctx = *slot;
        if (slot == &aev__thread_context) {
            pthread_once(&thread_context_once, thread_context_key_create);
            (void)pthread_setspecific(thread_context_key, *slot);
        }
    }
    return aev_context_set(*slot, var, value);
}
