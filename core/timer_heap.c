/* libaev core - the timer heap: a 4-ary min-heap of (when, handle) entries.
 *
 * Layout: as in libev's 4-heap, the root sits at index HEAP0 = 3 of a 64-byte
 * aligned array, so the four children of a node (16-byte entries) share one
 * cache line. Entries carry their own copy of `when`, so sifting touches only
 * the array. Popping moves the hole down to a leaf along the smaller children
 * and then lifts the last entry into it (fewer comparisons than sifting the
 * last entry down from the root).
 *
 * Cancelled timers stay in the heap (their handle is flagged) and are dropped
 * when they reach the top, or all at once by aev__timer_heap_compact() when
 * they make up more than half of the heap, as CPython does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loop_internal.h"

#define D AEV__HEAP_D
#define HEAP0 AEV__HEAP0
#define PARENT(p) AEV__HEAP_PARENT(p)
#define FIRST_CHILD(p) (D * ((p) - HEAP0) + HEAP0 + 1)

/* Sifts x down from position p; end is one past the last used position. */
static void sift_down(aev__timer_entry_t *e, size_t end, size_t p, aev__timer_entry_t x)
{
    for (;;) {
        size_t c = FIRST_CHILD(p);
        if (c >= end)
            break;
        size_t best = c;
        size_t stop = c + D <= end ? c + D : end;
        for (size_t k = c + 1; k < stop; k++)
            if (e[k].when < e[best].when)
                best = k;
        if (e[best].when >= x.when)
            break;
        e[p] = e[best];
        p = best;
    }
    e[p] = x;
}

#define MAP_MIN_BYTES (1u << 20) /* from 1 MiB on, the array is mapped and grows by mremap */

static size_t bytes_for(size_t cap)
{
    return (cap + HEAP0 + 1) * sizeof(aev__timer_entry_t);
}

/* Grows the array to cap entries: small arrays by aligned_alloc and copy; large
 * ones are page-aligned mappings that mremap grows without copying. */
static int heap_grow(aev__timer_heap_t *heap, size_t cap)
{
    size_t new_bytes = bytes_for(cap);
    aev__timer_entry_t *n;
    if (new_bytes >= MAP_MIN_BYTES) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        new_bytes = (new_bytes + page - 1) / page * page;
        if (heap->mapped) {
            void *p = mremap(heap->entries, heap->mapped, new_bytes, MREMAP_MAYMOVE);
            if (p == MAP_FAILED)
                return -ENOMEM;
            n = p;
        } else {
            void *p = mmap(NULL, new_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                return -ENOMEM;
#ifdef MADV_HUGEPAGE
            (void)madvise(p, new_bytes, MADV_HUGEPAGE); /* kept by mremap */
#endif
            n = p;
            if (heap->entries) {
                memcpy(n + HEAP0, heap->entries + HEAP0, heap->len * sizeof *n);
                free(heap->entries);
            }
        }
        heap->mapped = new_bytes;
        cap = new_bytes / sizeof *n - HEAP0 - 1;
    } else {
        /* cap is a power of two >= 64, so the size is a multiple of the alignment */
        n = aligned_alloc(D * sizeof *n, new_bytes);
        if (!n)
            return -ENOMEM;
        if (heap->entries) {
            memcpy(n + HEAP0, heap->entries + HEAP0, heap->len * sizeof *n);
            free(heap->entries);
        }
    }
    heap->entries = n;
    heap->cap = cap;
    return 0;
}

int aev__timer_heap_push(aev__timer_heap_t *heap, double when, aev_handle_t *h)
{
    if (heap->len == heap->cap) {
        int rc = heap_grow(heap, heap->cap ? heap->cap * 2 : 64);
        if (rc < 0)
            return rc;
    }
    aev__timer_heap_push_room(heap, when, h);
    return 0;
}

aev_handle_t *aev__timer_heap_pop(aev__timer_heap_t *heap)
{
    aev__timer_entry_t *e = heap->entries;
    aev_handle_t *top = e[HEAP0].handle;
    size_t end = HEAP0 + --heap->len;
    if (heap->len == 0)
        return top;
    aev__timer_entry_t last = e[end];
    /* Move the hole at the root down to a leaf, then lift `last` into it. */
    size_t p = HEAP0;
    for (;;) {
        size_t c = FIRST_CHILD(p);
        if (c >= end)
            break;
        /* Fetch the four grandchild groups (one cache line each) while the
         * children are compared: deep levels of a big heap are out of cache. */
        for (size_t k = 0; k < D; k++) {
            size_t g = FIRST_CHILD(c + k);
            if (g >= end)
                break;
            __builtin_prefetch(&e[g]);
        }
        size_t best = c;
        size_t stop = c + D <= end ? c + D : end;
        for (size_t k = c + 1; k < stop; k++)
            if (e[k].when < e[best].when)
                best = k;
        e[p] = e[best];
        p = best;
    }
    aev__timer_heap_sift_up(e, p, last);
    return top;
}

void aev__timer_heap_compact(aev__timer_heap_t *heap)
{
    aev__timer_entry_t *e = heap->entries;
    size_t j = HEAP0;
    size_t end = HEAP0 + heap->len;
    for (size_t i = HEAP0; i < end; i++) {
        if (i + 8 < end) /* the handles are scattered: fetch ahead of the scan */
            __builtin_prefetch(e[i + 8].handle, 1);
        aev_handle_t *h = e[i].handle;
        if (h->flags & AEV__H_CANCELLED) {
            h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
            aev__handle_unref_fast(h);
        } else {
            e[j++] = e[i];
        }
    }
    heap->len = j - HEAP0;
    heap->cancelled = 0;
    /* Floyd's heap construction, from the last parent up. */
    if (heap->len > 1)
        for (size_t p = PARENT(j - 1) + 1; p-- > HEAP0;)
            sift_down(e, j, p, e[p]);
}

void aev__timer_heap_clear(aev__timer_heap_t *heap)
{
    /* Handles may release other objects: take entries out before unref. */
    while (heap->len > 0) {
        aev_handle_t *h = heap->entries[HEAP0 + --heap->len].handle;
        h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
        aev__handle_unref_fast(h);
    }
    heap->cancelled = 0;
}

void aev__timer_heap_free(aev__timer_heap_t *heap)
{
    if (heap->mapped)
        munmap(heap->entries, heap->mapped);
    else
        free(heap->entries);
    heap->mapped = 0;
    heap->entries = NULL;
    heap->len = heap->cap = 0;
}

aev__timer_entry_t *aev__timer_heap_top(aev__timer_heap_t *heap)
{
    return &heap->entries[HEAP0];
}
