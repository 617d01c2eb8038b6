/* libaev core - the timer heap: a 4-ary min-heap of (when, handle) entries.
 * Cancelled timers stay in the heap (their handle is flagged) and are dropped
 * when they reach the top, or all at once by aev__timer_heap_compact() when
 * they make up more than half of the heap, as CPython does. Entries carry
 * their own copy of `when` so that sifting touches only the heap array. */
#include <errno.h>
#include <stdlib.h>

#include "loop_internal.h"

#define D 4

static void sift_up(aev__timer_entry_t *e, size_t i)
{
    aev__timer_entry_t x = e[i];
    while (i > 0) {
        size_t parent = (i - 1) / D;
        if (e[parent].when <= x.when)
            break;
        e[i] = e[parent];
        i = parent;
    }
    e[i] = x;
}

static void sift_down(aev__timer_entry_t *e, size_t len, size_t i)
{
    aev__timer_entry_t x = e[i];
    for (;;) {
        size_t first = i * D + 1;
        if (first >= len)
            break;
        size_t best = first;
        size_t last = first + D < len ? first + D : len;
        for (size_t c = first + 1; c < last; c++)
            if (e[c].when < e[best].when)
                best = c;
        if (e[best].when >= x.when)
            break;
        e[i] = e[best];
        i = best;
    }
    e[i] = x;
}

int aev__timer_heap_push(aev__timer_heap_t *heap, double when, aev_handle_t *h)
{
    if (heap->len == heap->cap) {
        size_t cap = heap->cap ? heap->cap * 2 : 64;
        aev__timer_entry_t *n = realloc(heap->entries, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        heap->entries = n;
        heap->cap = cap;
    }
    heap->entries[heap->len].when = when;
    heap->entries[heap->len].handle = h;
    sift_up(heap->entries, heap->len++);
    return 0;
}

aev_handle_t *aev__timer_heap_pop(aev__timer_heap_t *heap)
{
    aev_handle_t *top = heap->entries[0].handle;
    if (--heap->len > 0) {
        heap->entries[0] = heap->entries[heap->len];
        sift_down(heap->entries, heap->len, 0);
    }
    return top;
}

void aev__timer_heap_compact(aev__timer_heap_t *heap)
{
    size_t j = 0;
    for (size_t i = 0; i < heap->len; i++) {
        aev_handle_t *h = heap->entries[i].handle;
        if (h->flags & AEV__H_CANCELLED) {
            h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
            aev__handle_unref_fast(h);
        } else {
            heap->entries[j++] = heap->entries[i];
        }
    }
    heap->len = j;
    heap->cancelled = 0;
    if (j > 1)
        for (size_t i = (j - 2) / D + 1; i-- > 0;)
            sift_down(heap->entries, j, i);
}

void aev__timer_heap_clear(aev__timer_heap_t *heap)
{
    /* Handles may release other objects: take entries out before unref. */
    while (heap->len > 0) {
        aev_handle_t *h = heap->entries[--heap->len].handle;
        h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
        aev__handle_unref_fast(h);
    }
    heap->cancelled = 0;
}

void aev__timer_heap_free(aev__timer_heap_t *heap)
{
    free(heap->entries);
    heap->entries = NULL;
    heap->len = heap->cap = 0;
}
