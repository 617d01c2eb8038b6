/* libaev core - callback handles: pools of plain (32-byte) and extended
 * (64-byte) handles in 16 KiB chunks, reference counting, cancellation and
 * description.
 *
 * A chunk is a 16 KiB-aligned block whose first 64 bytes name the loop it
 * belongs to; the rest are handles of one size. Each pool's free stack has
 * room for every handle of the pool, so releasing a handle never allocates.
 * Handles from call_soon_threadsafe are malloc'ed by the calling thread
 * (AEV__H_SHARED): their count is atomic and they never join a pool.
 *
 * A pool that has grown past 1 MiB takes further chunks from 2 MiB slabs
 * advised for transparent huge pages: a program with a million timers then
 * takes a few dozen page faults instead of tens of thousands. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loop_internal.h"

_Static_assert(sizeof(aev_handle_t) == 32, "a plain handle is half a cache line");
_Static_assert(sizeof(aev__handle_ext_t) == 64, "an extended handle is one cache line");
_Static_assert(sizeof(aev__chunk_header_t) <= AEV__CHUNK_HEADER, "chunk header fits its slot");

#define SLAB_BYTES (2u << 20)
#define SLAB_AFTER_BYTES (1u << 20)

/* Maps a 2 MiB-aligned slab (huge-page advised); on failure the pool just goes
 * on with malloc'ed chunks. */
static void slab_new(aev__handle_pool_t *pool)
{
    void **slabs = realloc(pool->slabs, (pool->nslabs + 1) * sizeof *slabs);
    if (!slabs)
        return;
    pool->slabs = slabs;
    size_t len = 2 * (size_t)SLAB_BYTES;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    unsigned char *start = (unsigned char *)(((uintptr_t)p + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1));
    if (start > p)
        munmap(p, (size_t)(start - p));
    if (start + SLAB_BYTES < p + len)
        munmap(start + SLAB_BYTES, (size_t)(p + len - (start + SLAB_BYTES)));
#ifdef MADV_HUGEPAGE
    (void)madvise(start, SLAB_BYTES, MADV_HUGEPAGE);
#endif
    pool->slabs[pool->nslabs++] = start;
    pool->slab_next = start;
    pool->slab_left = SLAB_BYTES / AEV__CHUNK_BYTES;
}

int aev__handle_pool_refill(aev__handle_pool_t *pool, aev_loop_t *loop)
{
    size_t per_chunk = (AEV__CHUNK_BYTES - AEV__CHUNK_HEADER) / pool->size;
    size_t need = pool->allocated + per_chunk;
    if (need > UINT32_MAX)
        return -ENOMEM;
    if (need > pool->cap) {
        size_t cap = pool->cap ? (size_t)pool->cap * 2 : need;
        if (cap < need)
            cap = need;
        if (cap > UINT32_MAX)
            cap = UINT32_MAX;
        aev_handle_t **n = realloc(pool->free, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        pool->free = n;
        pool->cap = (uint32_t)cap;
    }
    int in_slab = 0;
    unsigned char *block = NULL;
    if (pool->slab_left == 0 && pool->allocated * pool->size >= SLAB_AFTER_BYTES)
        slab_new(pool);
    if (pool->slab_left > 0) {
        block = pool->slab_next;
        pool->slab_next += AEV__CHUNK_BYTES;
        pool->slab_left--;
        in_slab = 1;
    } else {
        block = aligned_alloc(AEV__CHUNK_BYTES, AEV__CHUNK_BYTES);
        if (!block)
            return -ENOMEM;
    }
    aev__chunk_header_t *c = (aev__chunk_header_t *)block;
    c->in_slab = in_slab;
    c->loop = loop;
    c->next = pool->chunks;
    pool->chunks = c;
    /* Pushed in reverse, so handles are handed out in address order. */
    for (size_t i = per_chunk; i-- > 0;)
        pool->free[pool->len++] = (aev_handle_t *)(block + AEV__CHUNK_HEADER + i * pool->size);
    pool->allocated += per_chunk;
    return 0;
}

void aev__handle_pool_free(aev__handle_pool_t *pool)
{
    aev__chunk_header_t *c = pool->chunks;
    while (c) {
        aev__chunk_header_t *next = c->next;
        if (!c->in_slab)
            free(c);
        c = next;
    }
    for (size_t i = 0; i < pool->nslabs; i++)
        munmap(pool->slabs[i], SLAB_BYTES);
    free(pool->slabs);
    pool->slabs = NULL;
    pool->nslabs = 0;
    pool->slab_next = NULL;
    pool->slab_left = 0;
    free(pool->free);
    pool->chunks = NULL;
    pool->free = NULL;
    pool->len = pool->cap = 0;
    pool->allocated = 0;
}

aev_handle_t *aev__handle_new_ext(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb,
                                  void *arg)
{
    if (loop->ext.len == 0 && aev__handle_pool_refill(&loop->ext, loop) < 0)
        return NULL;
    aev__handle_ext_t *x = (aev__handle_ext_t *)loop->ext.free[--loop->ext.len];
    aev__handle_ext_init(x, loop, opts, cb, arg);
    return &x->base;
}

void aev__handle_ext_init(aev__handle_ext_t *x, aev_loop_t *loop, const aev_call_options_t *opts,
                          aev_callback_fn cb, void *arg)
{
    aev_handle_t *h = &x->base;
    aev__handle_ext_fill(x, loop, cb, arg, opts ? opts->name : NULL, 0);
    if (opts && opts->context) {
        h->context = aev_context_ref(opts->context);
    } else {
        aev_context_t *cur = aev__context_current_raw();
        h->context = cur ? aev_context_copy(cur) : NULL;
    }
}

/* The other half of aev__handle_unref_fast: shared, extended, or with a context. */
void aev__handle_unref_slow(aev_handle_t *h)
{
    if (h->flags & AEV__H_SHARED) {
        if (__atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) != 0)
            return;
        if (h->context)
            aev_context_unref(h->context);
        free(h);
        return;
    }
    if (--h->refs != 0)
        return;
    aev_loop_t *loop = aev__handle_loop(h);
    if (h->context) {
        aev_context_unref(h->context);
        h->context = NULL;
    }
    if (h->flags & AEV__H_EXT) {
        if (h->flags & AEV__H_FUTURE_CB)
            aev_future_unref(AEV__EXT(h)->future);
        loop->ext.free[loop->ext.len++] = h;
    } else {
        loop->small.free[loop->small.len++] = h;
    }
    aev__loop_object_released(loop);
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
        AEV__EXT(h)->loop->timers.cancelled++;
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
    return h && (h->flags & AEV__H_TIMER) ? AEV__EXT(h)->u.when : -1.0;
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
    if ((h->flags & AEV__H_EXT) && AEV__EXT(h)->name) {
        snprintf(buf, size, "%s", AEV__EXT(h)->name);
        return buf;
    }
    void *fn = (h->flags & AEV__H_FUTURE_CB) ? (void *)(uintptr_t)AEV__EXT(h)->u.future_cb
                                              : (void *)(uintptr_t)h->cb;
    return aev__describe_fn(fn, buf, size);
}

/* A callback's symbol name (dladdr), else its address. */
const char *aev__describe_fn(void *fn, char *buf, size_t size)
{
    Dl_info info;
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
