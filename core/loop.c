/* libaev core - the loop: creation, running and stopping, call_soon,
 * call_later/call_at, debug mode and closing.
 *
 * One iteration (aev__run_once) follows CPython's BaseEventLoop._run_once:
 * take callbacks scheduled from other threads, poll for I/O (zero timeout when
 * callbacks are ready or the loop is stopping, else until the next timer),
 * move due timers to the ready queue, then run exactly the callbacks that were
 * ready at that point; whatever they schedule waits for the next iteration. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io_op.h"
#include "task_internal.h"
#include "stream_internal.h"
#include "loop_internal.h"
#include "sock_internal.h"

#define AEV__EVENTS_MAX 256
#define AEV__MAX_TIMEOUT 86400.0 /* as CPython's MAXIMUM_SELECT_TIMEOUT */
#define AEV__CLOCK_RESOLUTION 1e-9
#define AEV__MIN_HEAP_FOR_COMPACT 100
#define AEV__CLOCK_SKIP_MAX 8

AEV__TLS aev_loop_t *aev__running_loop;

/* ---- creation -------------------------------------------------------------- */

int aev_loop_new(const aev_loop_options_t *opts, aev_loop_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    aev__clear_detail();

    aev_policy_t *policy = NULL;
    int rc = aev_policy_resolve(opts, &policy);
    if (rc < 0)
        return rc;

    const aev_policy_choice_t *pc = aev_policy_get(policy, "poll");
    const aev__plugin_t *plugin = NULL;
    rc = aev__registry_load(policy, AEV_FAMILY_POLL, pc->value, pc->origin_text, &plugin);
    if (rc < 0) {
        aev_policy_free(policy);
        return rc;
    }

    aev_loop_t *loop = calloc(1, sizeof *loop);
    if (!loop) {
        aev_policy_free(policy);
        return -ENOMEM;
    }
    loop->policy = policy;
    loop->poll_plugin = plugin;
    loop->poll = plugin->ops;
    loop->poll_ctx.policy = policy;
    loop->poll_ctx.family = "poll";
    loop->poll_ctx.name = plugin->desc->name;
    loop->debug = aev__policy_debug(policy);
    loop->slow_calls = loop->debug;
    loop->slow_callback_duration = 0.1;
    loop->poll_interval = 20e-6;
    /* transports on the completion half of an engine that has one; AEV_IO_OPS=readiness
     * keeps them on its readiness half (for comparison and diagnosis) */
    const char *io_ops = getenv("AEV_IO_OPS");
    loop->native_ops = AEV__OP_NATIVE(loop) && !(io_ops && strcmp(io_ops, "readiness") == 0);
    loop->stacks.max = 256;
    loop->stacks.usable = aev__stack_size(0);
    loop->small.size = sizeof(aev_handle_t);
    loop->ext.size = sizeof(aev__handle_ext_t);
    loop->ready_mask = 255;
    loop->ready = malloc((loop->ready_mask + 1) * sizeof *loop->ready);
    loop->events_cap = AEV__EVENTS_MAX;
    loop->events = calloc((size_t)loop->events_cap, sizeof *loop->events);
    atomic_init(&loop->ts_count, 0);
    atomic_init(&loop->wake_pending, 0);
    if (!loop->ready || !loop->events || pthread_mutex_init(&loop->ts_lock, NULL) != 0) {
        free(loop->ready);
        free(loop->events);
        free(loop);
        aev_policy_free(policy);
        return -ENOMEM;
    }
    rc = loop->poll->create(&aev__host, &loop->poll_ctx, &loop->backend);
    if (rc < 0) {
        if (!aev_error_detail()[0])
            aev__set_detail("poll plugin \"%s\" (%s) could not create an engine: %s",
                            plugin->desc->name, plugin->path, aev_strerror(rc));
        pthread_mutex_destroy(&loop->ts_lock);
        free(loop->ready);
        free(loop->events);
        free(loop);
        aev_policy_free(policy);
        return rc;
    }
    *out = loop;
    return 0;
}

const char *aev_loop_plugin_name(const aev_loop_t *loop, const char *family)
{
    if (!loop || !family)
        return NULL;
    if (strcmp(family, "poll") == 0)
        return loop->poll_plugin->desc->name;
    if (strcmp(family, "exec") == 0)
        return aev__executor_loop_plugin_name(loop);
    if (strcmp(family, "dns") == 0)
        return aev__dns_loop_plugin_name(loop);
    return NULL;
}

/* ---- checks ------------------------------------------------------------------ */

int aev__check_thread(aev_loop_t *loop)
{
    if (AEV__UNLIKELY(loop->debug) && loop->running && !pthread_equal(loop->thread, pthread_self())) {
        aev__set_detail("non-thread-safe operation invoked on an event loop other than the "
                        "current one (use aev_loop_call_soon_threadsafe)");
        return AEV_EWRONG_THREAD;
    }
    return 0;
}

int aev__check_usable(aev_loop_t *loop)
{
    if (AEV__UNLIKELY(loop->closed))
        return AEV_ECLOSED;
    return aev__check_thread(loop);
}

/* ---- the ready queue ----------------------------------------------------------- */

int aev__ready_grow(aev_loop_t *loop)
{
    uint32_t cap = loop->ready_mask + 1;
    uint32_t ncap = cap * 2;
    if (ncap == 0)
        return -ENOMEM;
    aev__ready_entry_t *n = malloc((size_t)ncap * sizeof *n);
    if (!n)
        return -ENOMEM;
    uint32_t count = loop->ready_tail - loop->ready_head;
    for (uint32_t i = 0; i < count; i++)
        n[i] = loop->ready[(loop->ready_head + i) & loop->ready_mask];
    free(loop->ready);
    loop->ready = n;
    loop->ready_head = 0;
    loop->ready_tail = count;
    loop->ready_mask = ncap - 1;
    return 0;
}

/* ---- scheduling ------------------------------------------------------------------- */

static int call_soon(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb, void *arg,
                     aev_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!loop || !cb)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (!opts && !handle_out && !aev__context_current_raw() && !loop->debug)
        return aev__ready_push_plain(loop, cb, arg);
    aev_handle_t *h = opts ? aev__handle_new_ext(loop, opts, cb, arg) : aev__handle_new_fast(loop, cb, arg);
    if (!h)
        return -ENOMEM;
    rc = aev__ready_push(loop, h);
    if (rc < 0) {
        aev__handle_unref_fast(h);
        return rc;
    }
    if (handle_out) {
        h->refs++;
        *handle_out = h;
    }
    return 0;
}

/* The hot path: no options, no handle wanted, loop open and not in debug mode,
 * nothing to capture as context, room in the ready queue: the callback is queued
 * as a plain (cb, arg) entry, with no handle object. Everything else goes to
 * call_soon(). */
int aev_loop_call_soon(aev_loop_t *loop, aev_callback_fn cb, void *arg, aev_handle_t **handle_out)
{
    if (AEV__UNLIKELY(!loop || !cb || handle_out || loop->slow_calls ||
                      loop->ready_tail - loop->ready_head > loop->ready_mask ||
                      aev__running_loop != loop || loop->cur_ctx != NULL))
        return call_soon(loop, NULL, cb, arg, handle_out);
    aev__ready_entry_t *e = &loop->ready[loop->ready_tail++ & loop->ready_mask];
    e->cb = cb;
    e->arg = arg;
    return 0;
}

int aev_loop_call_soon_ex(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb,
                          void *arg, aev_handle_t **handle_out)
{
    return call_soon(loop, opts, cb, arg, handle_out);
}

static int call_at(aev_loop_t *loop, double when, const aev_call_options_t *opts, aev_callback_fn cb,
                   void *arg, aev_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!loop || !cb || isnan(when))
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    aev_handle_t *h = aev__handle_new_ext(loop, opts, cb, arg);
    if (AEV__UNLIKELY(!h))
        return -ENOMEM;
    h->flags |= AEV__H_TIMER | AEV__H_IN_HEAP;
    AEV__EXT(h)->u.when = when;
    rc = aev__timer_heap_push(&loop->timers, when, h);
    if (rc < 0) {
        h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
        aev__handle_unref_fast(h);
        return rc;
    }
    if (handle_out) {
        h->refs++;
        *handle_out = h;
    }
    return 0;
}

/* The hot path of call_later/call_at: no options, loop open and not in debug mode,
 * an empty context, a free extended handle and room in the heap array. */
static inline __attribute__((always_inline)) int call_at_fast(aev_loop_t *loop, double when,
                                                             aev_callback_fn cb, void *arg,
                                                             aev_handle_t **handle_out)
{
    if (AEV__UNLIKELY(!loop || !cb || isnan(when) || loop->slow_calls || loop->ext.len == 0 ||
                      loop->timers.len == loop->timers.cap || aev__running_loop != loop ||
                      loop->cur_ctx != NULL))
        return call_at(loop, when, NULL, cb, arg, handle_out);
    aev__handle_ext_t *x = (aev__handle_ext_t *)loop->ext.free[--loop->ext.len];
    aev_handle_t *h = &x->base;
    aev__handle_ext_fill(x, loop, cb, arg, NULL, AEV__H_TIMER | AEV__H_IN_HEAP);
    h->context = NULL;
    x->u.when = when;
    aev__timer_heap_push_room(&loop->timers, when, h);
    if (handle_out) {
        h->refs++;
        *handle_out = h;
    }
    return 0;
}

int aev_loop_call_at(aev_loop_t *loop, double when, aev_callback_fn cb, void *arg,
                     aev_handle_t **handle_out)
{
    return call_at_fast(loop, when, cb, arg, handle_out);
}

int aev_loop_call_at_ex(aev_loop_t *loop, double when, const aev_call_options_t *opts,
                        aev_callback_fn cb, void *arg, aev_handle_t **handle_out)
{
    return call_at(loop, when, opts, cb, arg, handle_out);
}

int aev_loop_call_later(aev_loop_t *loop, double delay, aev_callback_fn cb, void *arg,
                        aev_handle_t **handle_out)
{
    if (isnan(delay))
        return -EINVAL;
    return call_at_fast(loop, aev__now() + (delay > 0 ? delay : 0), cb, arg, handle_out);
}

int aev_loop_call_later_ex(aev_loop_t *loop, double delay, const aev_call_options_t *opts,
                           aev_callback_fn cb, void *arg, aev_handle_t **handle_out)
{
    if (isnan(delay))
        return -EINVAL;
    return call_at(loop, aev__now() + (delay > 0 ? delay : 0), opts, cb, arg, handle_out);
}

double aev_loop_time(const aev_loop_t *loop)
{
    (void)loop;
    return aev__now();
}

/* ---- running ---------------------------------------------------------------------- */

/* Runs one callback in debug mode: timed, and logged when slow. h is NULL for a
 * plain entry. */
static void run_debug(aev_loop_t *loop, aev_handle_t *h, aev_callback_fn cb, void *arg)
{
    /* a task's wake-up is named after the task (which may be gone after the call) */
    char task_name[96];
    int is_task = aev__task_describe_wakeup(cb, arg, task_name, sizeof task_name);
    double t0 = aev__now();
    int rc = cb(loop, arg);
    double took = aev__now() - t0;
    if (took >= loop->slow_callback_duration) {
        char name[256];
        aev_log(AEV_LOG_WARNING, "aev", "Executing %s took %.3f seconds",
                is_task ? task_name
                : h     ? aev_handle_describe(h, name, sizeof name)
                        : aev__describe_fn((void *)(uintptr_t)cb, name, sizeof name),
                took);
    }
    if (rc < 0) {
        if (h)
            aev__report_callback_error(loop, h, rc);
        else
            aev__report_plain_error(loop, cb, arg, rc);
    }
}

/* Drops a context that a plain callback created with aev_context_var_set. */
static void plain_ctx_release(aev_loop_t *loop)
{
    aev_context_unref(loop->plain_ctx);
    loop->plain_ctx = NULL;
    loop->cur_ctx = NULL;
}

/* Runs the callbacks that are ready now; what they schedule waits for the next
 * iteration. Between callbacks current_handle and cur_ctx are NULL (a plain
 * entry runs in the empty context: it was queued only when the context was
 * empty). The loop cannot be freed while it runs, so releasing a handle here
 * never has to check for a pending aev_loop_free(). */
static void run_ready(aev_loop_t *loop)
{
    uint32_t ntodo = loop->ready_tail - loop->ready_head;
    const int debug = loop->debug;
    loop->current_handle = NULL;
    loop->cur_ctx = NULL;
    if (loop->plain_ctx)
        plain_ctx_release(loop);
    while (ntodo-- > 0) {
        aev__ready_entry_t e = loop->ready[loop->ready_head++ & loop->ready_mask];
        if (AEV__LIKELY(e.cb != NULL)) {
            if (e.cb == aev__task_step_cb && !debug) {
                /* a task's step, switched to right here: the task's return to its own
                 * caller is then predicted (no call of ours is left on the return stack) */
                aev__task_step_between(loop, e.arg);
                continue;
            }
            if (AEV__UNLIKELY(debug)) {
                run_debug(loop, NULL, e.cb, e.arg);
            } else {
                int rc = e.cb(loop, e.arg);
                if (AEV__UNLIKELY(rc < 0))
                    aev__report_plain_error(loop, e.cb, e.arg, rc);
            }
            if (AEV__UNLIKELY(loop->plain_ctx != NULL))
                plain_ctx_release(loop);
            continue;
        }
        aev_handle_t *h = e.arg;
        uint32_t flags = aev__handle_flags(h);
        if (AEV__UNLIKELY(flags & AEV__H_IN_HEAP)) {
            /* a timer just taken from the heap (see run_once) */
            h->flags = flags & ~(uint32_t)AEV__H_IN_HEAP;
            if (flags & AEV__H_CANCELLED)
                loop->timers.cancelled--;
        }
        if (AEV__LIKELY(!(flags & AEV__H_CANCELLED))) {
            loop->current_handle = h;
            loop->cur_ctx = h->context;
            if (AEV__UNLIKELY(debug)) {
                run_debug(loop, h, h->cb, h->arg);
            } else {
                int rc = h->cb(loop, h->arg);
                if (AEV__UNLIKELY(rc < 0))
                    aev__report_callback_error(loop, h, rc);
            }
            loop->current_handle = NULL;
            loop->cur_ctx = NULL;
        }
        if (AEV__UNLIKELY((h->flags & (AEV__H_SHARED | AEV__H_EXT)) || h->context))
            aev__handle_unref_slow(h);
        else if (--h->refs == 0)
            loop->small.free[loop->small.len++] = h;
    }
    loop->cur_ctx = loop->base_ctx;
}

static int64_t poll_timeout_ns(aev_loop_t *loop, double now)
{
    if (loop->ready_tail != loop->ready_head || loop->stopping)
        return 0;
    if (loop->timers.len == 0)
        return -1;
    double t = aev__timer_heap_top(&loop->timers)->when - now;
    if (t <= 0)
        return 0;
    if (t > AEV__MAX_TIMEOUT)
        t = AEV__MAX_TIMEOUT;
    double ns = t * 1e9;
    int64_t r = (int64_t)ns;
    return (double)r < ns ? r + 1 : r; /* round up: never wake before the timer is due */
}

void aev__loop_run_once(aev_loop_t *loop)
{
    /* Re-arm wake-ups, then look at the queue (seq_cst on both sides: either we
     * see a call queued after this point, or its thread sees wake_pending == 0
     * and wakes the poll below). */
    if (atomic_load_explicit(&loop->wake_pending, memory_order_relaxed))
        atomic_store_explicit(&loop->wake_pending, 0, memory_order_seq_cst);
    if (atomic_load_explicit(&loop->ts_count, memory_order_seq_cst))
        aev__ts_drain(loop);

    aev__timer_heap_t *timers = &loop->timers;
    if (timers->cancelled > AEV__MIN_HEAP_FOR_COMPACT / 2 && timers->cancelled * 2 > timers->len)
        aev__timer_heap_compact(timers);
    while (timers->len > 0 && (aev__timer_heap_top(timers)->handle->flags & AEV__H_CANCELLED)) {
        aev_handle_t *h = aev__timer_heap_pop(timers);
        h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
        timers->cancelled--;
        aev__handle_unref_fast(h);
    }

    /* Callbacks are ready, no timer can be due and the last poll was a few iterations
     * ago: this iteration needs neither the clock nor a poll. Reading the clock costs
     * more than a short iteration (about 25 ns here), so it is read at least every
     * AEV__CLOCK_SKIP_MAX iterations, not every one (with poll interval 0, every one). */
    if (loop->ready_tail != loop->ready_head && timers->len == 0 && !loop->stopping &&
        loop->poll_interval > 0 && loop->clock_skips < AEV__CLOCK_SKIP_MAX) {
        loop->clock_skips++;
        run_ready(loop);
        return;
    }
    loop->clock_skips = 0;
    double now = aev__now();
    int64_t timeout = poll_timeout_ns(loop, now);
    /* While callbacks are ready, poll at most every poll_interval seconds: a zero-timeout
     * poll costs a syscall, more than a whole iteration. A stopping loop always polls. */
    if (timeout != 0 || loop->stopping || now - loop->last_poll >= loop->poll_interval) {
        int n = loop->poll->wait(loop->backend, timeout, loop->events, loop->events_cap);
        if (timeout != 0)
            now = aev__now();
        loop->last_poll = now;
        for (int i = 0; i < n; i++)
            aev__io_process(loop, &loop->events[i]);
        if (AEV__UNLIKELY(n < 0) && n != loop->last_poll_error) {
            /* reported once until the engine recovers or fails differently */
            aev_exception_context_t ctx = {.message = "poll engine failed", .error = n};
            aev_loop_call_exception_handler(loop, &ctx);
        }
        loop->last_poll_error = n < 0 ? n : 0;
    }

    /* Move due timers to the ready queue (the heap's reference moves with them). */
    double end = now + AEV__CLOCK_RESOLUTION;
    /* The handles are not touched here (they may be far out of cache): run_ready clears
     * AEV__H_IN_HEAP and skips the cancelled ones. */
    while (timers->len > 0 && aev__timer_heap_top(timers)->when <= end) {
        aev_handle_t *h = aev__timer_heap_pop(timers);
        if (AEV__UNLIKELY(aev__ready_push(loop, h) < 0)) {
            h->flags &= ~(uint32_t)AEV__H_IN_HEAP;
            if (h->flags & AEV__H_CANCELLED)
                timers->cancelled--;
            aev_exception_context_t ctx = {.message = "out of memory moving a due timer",
                                           .error = -ENOMEM, .handle = h};
            aev_loop_call_exception_handler(loop, &ctx);
            aev__handle_unref_fast(h);
        }
    }

    run_ready(loop);
}

int aev__loop_run_begin(aev_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->closed)
        return AEV_ECLOSED;
    if (loop->running)
        return AEV_ERUNNING;
    if (aev__running_loop)
        return AEV_EOTHER_LOOP;
    loop->running = 1;
    loop->thread = pthread_self();
    aev__running_loop = loop;
    loop->base_ctx = loop->cur_ctx = aev__thread_context;
    loop->last_poll = -1e300; /* the first iteration always polls */
    return 0;
}

void aev__loop_run_end(aev_loop_t *loop)
{
    if (loop->plain_ctx)
        plain_ctx_release(loop);
    loop->stopping = 0;
    loop->running = 0;
    aev__running_loop = NULL;
}

int aev_loop_run_forever(aev_loop_t *loop)
{
    int rc = aev__loop_run_begin(loop);
    if (rc < 0)
        return rc;
    for (;;) {
        aev__loop_run_once(loop);
        if (loop->stopping)
            break;
    }
    aev__loop_run_end(loop);
    return 0;
}

static int stop_when_done(aev_future_t *fut, void *arg)
{
    (void)arg;
    aev_loop_stop(aev_future_get_loop(fut));
    return 0;
}

int aev_loop_run_until_complete(aev_loop_t *loop, aev_future_t *fut)
{
    if (!loop || !fut)
        return -EINVAL;
    if (aev_future_get_loop(fut) != loop) {
        aev__set_detail("the future belongs to another event loop");
        return -EINVAL;
    }
    if (loop->closed)
        return AEV_ECLOSED;
    if (loop->running)
        return AEV_ERUNNING;
    int rc = aev_future_add_done_callback(fut, stop_when_done, NULL);
    if (rc < 0)
        return rc;
    rc = aev_loop_run_forever(loop);
    aev_future_remove_done_callback(fut, stop_when_done, NULL);
    if (rc < 0)
        return rc;
    if (!aev_future_done(fut))
        return AEV_ESTOPPED;
    return aev_future_result(fut, NULL);
}

void aev_loop_stop(aev_loop_t *loop)
{
    if (loop)
        loop->stopping = 1;
}

int aev_loop_is_running(const aev_loop_t *loop)
{
    return loop && loop->running ? 1 : 0;
}

int aev_loop_is_closed(const aev_loop_t *loop)
{
    return loop && loop->closed ? 1 : 0;
}

aev_loop_t *aev_loop_get_running(void)
{
    return aev__running_loop;
}

/* ---- debug ------------------------------------------------------------------------- */

int aev_loop_get_debug(const aev_loop_t *loop)
{
    return loop && loop->debug ? 1 : 0;
}

void aev_loop_set_debug(aev_loop_t *loop, int enabled)
{
    if (loop) {
        loop->debug = enabled ? 1 : 0;
        loop->slow_calls = loop->debug || loop->closed;
    }
}

void aev_loop_set_slow_callback_duration(aev_loop_t *loop, double seconds)
{
    if (loop && seconds >= 0)
        loop->slow_callback_duration = seconds;
}

double aev_loop_get_slow_callback_duration(const aev_loop_t *loop)
{
    return loop ? loop->slow_callback_duration : 0.0;
}

void aev_loop_set_io_poll_interval(aev_loop_t *loop, double seconds)
{
    if (loop && seconds >= 0)
        loop->poll_interval = seconds;
}

/* ---- closing --------------------------------------------------------------------------- */

int aev_loop_close(aev_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->running)
        return AEV_ERUNNING;
    if (loop->closed)
        return 0;
    /* Tasks still pending are cancelled and run to their end first (asyncio.run does so
     * before closing; shutdown_asyncgens has no C counterpart). */
    if (loop->ntasks)
        aev_loop_shutdown_tasks(loop);
    if (loop->debug) {
        uint32_t pending = loop->ready_tail - loop->ready_head;
        if (pending || loop->timers.len)
            aev_log(AEV_LOG_WARNING, "aev", "closing the loop discards %u pending callbacks and %zu timers",
                    pending, loop->timers.len - loop->timers.cancelled);
    }
    /* Give back the loop's signals (their dispositions restored) while it is open. */
    aev__signal_close(loop);
    /* The resolver abandons its queries while the loop can still remove its watchers. */
    aev__dns_loop_close(loop);
    /* The default executor: shut down without waiting; later results are dropped. */
    aev__executor_loop_close(loop);
    /* Refuse threadsafe calls first, then drop everything queued. */
    pthread_mutex_lock(&loop->ts_lock);
    loop->closed = 1;
    loop->slow_calls = 1;
    pthread_mutex_unlock(&loop->ts_lock);
    aev__ts_discard(loop);
    aev__op_completion_quiesce(loop);
    aev__servers_loop_close(loop);
    aev__datagrams_loop_close(loop);
    aev__streams_loop_close(loop);
    aev__op_completion_close(loop);
    aev__io_close(loop);
    aev__sock_loop_close(loop);
    while (loop->ready_head != loop->ready_tail) {
        aev__ready_entry_t e = loop->ready[loop->ready_head++ & loop->ready_mask];
        if (!e.cb)
            aev__handle_unref_fast(e.arg);
    }
    aev__timer_heap_clear(&loop->timers);
    loop->poll->destroy(loop->backend);
    loop->backend = NULL;
    aev__op_completion_free(loop);
    return 0;
}

void aev__loop_destroy(aev_loop_t *loop)
{
    aev__tasks_loop_free(loop);
    aev__dns_loop_destroy(loop);
    aev__executor_loop_destroy(loop); /* waits for the default executor's threads */
    aev__handle_pool_free(&loop->small);
    aev__handle_pool_free(&loop->ext);
    aev__timer_heap_free(&loop->timers);
    free(loop->ready);
    free(loop->events);
    free(loop->fds);
    free(loop->ts_queue);
    pthread_mutex_destroy(&loop->ts_lock);
    aev_policy_free(loop->policy);
    free(loop);
}

void aev__loop_object_released(aev_loop_t *loop)
{
    aev__loop_object_released_fast(loop);
}

void aev_loop_free(aev_loop_t *loop)
{
    if (!loop)
        return;
    if (loop->running) {
        aev_log(AEV_LOG_ERROR, "aev", "aev_loop_free() called on a running loop; ignored");
        return;
    }
    if (!loop->closed) {
        aev_log(AEV_LOG_WARNING, "aev", "unclosed event loop %p freed; closing it", (void *)loop);
        aev_loop_close(loop);
    }
    if (aev__loop_live_objects(loop) > 0) {
        /* Handles or futures the application still holds: free when the last goes. */
        if (loop->debug)
            aev_log(AEV_LOG_WARNING, "aev", "loop freed while %zu handles or futures are still referenced",
                    aev__loop_live_objects(loop));
        loop->free_requested = 1;
        return;
    }
    aev__loop_destroy(loop);
}
