/* libaev core - call_soon_threadsafe: a mutex-protected queue that the loop
 * moves into its ready queue at the start of each iteration, and at most one
 * wake-up of the engine per loop iteration: a caller wakes the engine only if
 * it flips wake_pending from 0 to 1; the loop clears wake_pending at the start
 * of each iteration, before it looks at the queue (see run_once in loop.c). */
#include <errno.h>
#include <stdlib.h>

#include "loop_internal.h"

static int ts_push(aev_loop_t *loop, aev_handle_t *h)
{
    if (loop->ts_len == loop->ts_cap) {
        size_t cap = loop->ts_cap ? loop->ts_cap * 2 : 64;
        aev_handle_t **n = realloc(loop->ts_queue, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        loop->ts_queue = n;
        loop->ts_cap = cap;
    }
    loop->ts_queue[loop->ts_len++] = h;
    return 0;
}

static int call_soon_threadsafe(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb,
                                void *arg, aev_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!loop || !cb)
        return -EINVAL;
    /* Built outside the loop's free list, which only the loop thread touches. */
    aev__handle_ext_t *x = malloc(sizeof *x);
    if (!x)
        return -ENOMEM;
    aev__handle_ext_init(x, loop, opts, cb, arg);
    aev_handle_t *h = &x->base;
    h->refs = handle_out ? 2 : 1;
    h->flags |= AEV__H_SHARED;

    pthread_mutex_lock(&loop->ts_lock);
    int rc = loop->closed ? AEV_ECLOSED : ts_push(loop, h);
    if (rc == 0)
        atomic_fetch_add_explicit(&loop->ts_count, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&loop->ts_lock);
    if (rc < 0) {
        if (h->context)
            aev_context_unref(h->context);
        free(h);
        return rc;
    }
    if (!atomic_exchange_explicit(&loop->wake_pending, 1, memory_order_seq_cst))
        loop->poll->wake(loop->backend);
    if (handle_out)
        *handle_out = h;
    return 0;
}

int aev_loop_call_soon_threadsafe(aev_loop_t *loop, aev_callback_fn cb, void *arg,
                                  aev_handle_t **handle_out)
{
    return call_soon_threadsafe(loop, NULL, cb, arg, handle_out);
}

int aev_loop_call_soon_threadsafe_ex(aev_loop_t *loop, const aev_call_options_t *opts,
                                     aev_callback_fn cb, void *arg, aev_handle_t **handle_out)
{
    return call_soon_threadsafe(loop, opts, cb, arg, handle_out);
}

/* Moves queued handles into the ready queue (they keep their own malloc'ed,
 * atomically counted life: see aev__handle_unref_slow). */
void aev__ts_drain(aev_loop_t *loop)
{
    pthread_mutex_lock(&loop->ts_lock);
    size_t n = loop->ts_len;
    size_t moved = 0;
    for (; moved < n; moved++) {
        if (aev__ready_push(loop, loop->ts_queue[moved]) < 0)
            break;
    }
    /* Keep what did not fit (out of memory) for the next iteration. */
    for (size_t i = moved; i < n; i++)
        loop->ts_queue[i - moved] = loop->ts_queue[i];
    loop->ts_len = n - moved;
    atomic_fetch_sub_explicit(&loop->ts_count, moved, memory_order_relaxed);
    pthread_mutex_unlock(&loop->ts_lock);
}

void aev__ts_discard(aev_loop_t *loop)
{
    pthread_mutex_lock(&loop->ts_lock);
    size_t n = loop->ts_len;
    loop->ts_len = 0;
    atomic_store_explicit(&loop->ts_count, 0, memory_order_relaxed);
    pthread_mutex_unlock(&loop->ts_lock);
    for (size_t i = 0; i < n; i++) {
        aev__handle_unref_fast(loop->ts_queue[i]);
    }
}
