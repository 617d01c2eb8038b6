/* libaev core - callback handles: allocation (chunked free list), reference
 * counting, cancellation and description. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop_internal.h"

#define AEV__HANDLE_CHUNK 256

struct aev__handle_chunk {
    _Alignas(64) aev_handle_t handles[AEV__HANDLE_CHUNK]; /* sizeof: a multiple of 64 */
    struct aev__handle_chunk *next;
};
_Static_assert(sizeof(aev_handle_t) == 64, "a handle fills one cache line");

/* Adds a chunk of handles. The free stack always has room for every handle
 * the loop owns, so releasing one never allocates. */
int aev__handle_refill(aev_loop_t *loop)
{
    size_t need = loop->handles_allocated + AEV__HANDLE_CHUNK;
    if (need > UINT32_MAX)
        return -ENOMEM;
    if (need > loop->free_cap) {
        aev_handle_t **n = realloc(loop->free_stack, need * sizeof *n);
        if (!n)
            return -ENOMEM;
        loop->free_stack = n;
        loop->free_cap = (uint32_t)need;
    }
    struct aev__handle_chunk *c = aligned_alloc(64, sizeof *c); /* one handle per cache line */
    if (!c)
        return -ENOMEM;
    c->next = loop->chunks;
    loop->chunks = c;
    for (int i = AEV__HANDLE_CHUNK - 1; i >= 0; i--) {
        c->handles[i].loop = loop; /* invariant: a free handle knows its loop */
        loop->free_stack[loop->free_len++] = &c->handles[i];
    }
    loop->handles_allocated += AEV__HANDLE_CHUNK;
    return 0;
}

aev_handle_t *aev__handle_new(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb,
                              void *arg)
{
    if (loop->free_len == 0 && aev__handle_refill(loop) < 0)
        return NULL;
    aev_handle_t *h = loop->free_stack[--loop->free_len];
    h->cb = cb;
    h->arg = arg;
    h->loop = loop;
    h->aux.future = NULL;
    h->refs = 1;
    h->flags = 0;
    h->u.when = -1.0;
    if (AEV__UNLIKELY(opts != NULL)) {
        h->name = opts->name;
        h->context = opts->context ? aev_context_ref(opts->context) : NULL;
        if (!opts->context) {
            aev_context_t *cur = aev__context_current_raw();
            h->context = cur ? aev_context_copy(cur) : NULL;
        }
    } else {
        h->name = NULL;
        aev_context_t *cur = aev__context_current_raw();
        h->context = AEV__UNLIKELY(cur != NULL) ? aev_context_copy(cur) : NULL;
    }
    return h;
}

void aev__handle_release(aev_handle_t *h)
{
    aev_loop_t *loop = h->loop;
    if (h->context)
        aev_context_unref(h->context);
    if (h->flags & AEV__H_FUTURE_CB)
        aev_future_unref(h->aux.future);
    h->context = NULL;
    h->flags = 0;
    loop->free_stack[loop->free_len++] = h;
    aev__loop_object_released(loop);
}

/* Handles made by call_soon_threadsafe may be released from any thread: they
 * never join the loop's free list and do not count as the loop's objects. */
void aev__handle_unref_shared(aev_handle_t *h)
{
    if (__atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (h->context)
        aev_context_unref(h->context);
    free(h);
}

void aev__handle_free_all(aev_loop_t *loop)
{
    struct aev__handle_chunk *c = loop->chunks;
    while (c) {
        struct aev__handle_chunk *next = c->next;
        free(c);
        c = next;
    }
    loop->chunks = NULL;
    free(loop->free_stack);
    loop->free_stack = NULL;
    loop->free_len = loop->free_cap = 0;
}

void aev_handle_cancel(aev_handle_t *h)
{
    if (!h || (aev__handle_flags(h) & AEV__H_CANCELLED))
        return;
    if (h->flags & AEV__H_SHARED) {
        __atomic_fetch_or(&h->flags, AEV__H_CANCELLED, __ATOMIC_RELAXED);
        return;
    }
    h->flags |= AEV__H_CANCELLED;
    if (h->flags & AEV__H_IN_HEAP)
        h->loop->timers.cancelled++;
}

int aev_handle_cancelled(const aev_handle_t *h)
{
    return h && (aev__handle_flags(h) & AEV__H_CANCELLED) ? 1 : 0;
}

int aev_handle_is_timer(const aev_handle_t *h)
{
    return h && (h->flags & AEV__H_TIMER) ? 1 : 0;
}

double aev_handle_when(const aev_handle_t *h)
{
    return h && (h->flags & AEV__H_TIMER) ? h->u.when : -1.0;
}

aev_context_t *aev_handle_get_context(const aev_handle_t *h)
{
    return h ? h->context : NULL;
}

const char *aev_handle_describe(const aev_handle_t *h, char *buf, size_t size)
{
    if (!buf || size == 0)
        return "";
    if (!h) {
        snprintf(buf, size, "(no handle)");
        return buf;
    }
    if (h->name) {
        snprintf(buf, size, "%s", h->name);
        return buf;
    }
    Dl_info info;
    void *fn = (h->flags & AEV__H_FUTURE_CB) ? (void *)(uintptr_t)h->u.future_cb
                                              : (void *)(uintptr_t)h->cb;
    if (dladdr(fn, &info) && info.dli_sname && info.dli_saddr == fn)
        snprintf(buf, size, "%s", info.dli_sname);
    else
        snprintf(buf, size, "callback at %p", fn);
    return buf;
}

aev_handle_t *aev_handle_ref(aev_handle_t *h)
{
    if (h && (h->flags & AEV__H_SHARED))
        __atomic_add_fetch(&h->refs, 1, __ATOMIC_RELAXED);
    else if (h)
        h->refs++;
    return h;
}

void aev_handle_unref(aev_handle_t *h)
{
    if (h)
        aev__handle_unref_fast(h);
}
