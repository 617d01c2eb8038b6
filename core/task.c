/* libaev core - tasks: a C function on its own stack that waits for futures,
 * timers and sockets without blocking the loop (asyncio.Task).
 *
 * A task is always in one of four states: scheduled (its next step is queued),
 * running (on its stack, the loop's stack waits in aev__fiber_enter),
 * waiting (exactly one wake-up source armed: a future's done callback, a
 * timer, or a socket watcher) and done. Every wake-up runs the task from a
 * loop callback, on the loop's stack; a task never switches to another task
 * directly. When the function returns, the task switches back for the last
 * time and the loop side finishes it: stack back to the cache, outcome into
 * the future, the loop's reference dropped.
 *
 * Cancellation follows CPython's Task: cancel() cancels the future the task
 * awaits (the wake-up then brings AEV_ECANCELLED), disarms a timer or socket
 * wait and schedules a step that reports AEV_ECANCELLED, or, when the task is
 * scheduled or running, leaves a request (must_cancel) for its next wait. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task_internal.h"

#define AEV__STACK_CACHE_MAX 256

static int task_timer_cb(aev_loop_t *loop, void *arg);
static int task_fd_cb(aev_loop_t *loop, void *arg);
static int task_wakeup_cb(aev_future_t *fut, void *arg);

static inline aev__task_t *T(aev_future_t *f)
{
    return (aev__task_t *)f;
}

/* ---- the list of pending tasks ---------------------------------------------- */

static void tasks_link(aev_loop_t *loop, aev__task_t *t)
{
    t->prev = NULL;
    t->next = loop->tasks;
    if (loop->tasks)
        loop->tasks->prev = t;
    loop->tasks = t;
    loop->ntasks++;
}

static void tasks_unlink(aev_loop_t *loop, aev__task_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        loop->tasks = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    loop->ntasks--;
}

/* ---- creating ------------------------------------------------------------------ */

static int schedule_step(aev_loop_t *loop, aev__task_t *t)
{
    t->wait = AEV__W_STEP;
    int rc = aev__ready_push_plain(loop, aev__task_step_cb, t);
    if (AEV__UNLIKELY(rc < 0)) {
        aev_exception_context_t ctx = {.message = "could not schedule a task's step", .error = rc,
                                       .task = &t->fut, .future = &t->fut};
        aev_loop_call_exception_handler(loop, &ctx);
    }
    return rc;
}

int aev_task_new(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn, void *arg,
                 aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !fn)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    aev__task_t *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    if (opts && opts->name && !(t->name = strdup(opts->name))) {
        free(t);
        return -ENOMEM;
    }
    t->fut.loop = loop;
    t->fut.refs = out ? 2 : 1; /* the caller's, and the loop's until the task is done */
    t->fut.is_task = 1;
    t->fn = fn;
    t->arg = arg;
    t->num = ++loop->task_counter;
    t->stack_request = opts ? opts->stack_size : 0;
    t->short_read_fd = -1;
    t->checked_fd = -1;
    if (opts && opts->context) {
        t->context = aev_context_ref(opts->context);
    } else {
        aev_context_t *cur = aev__context_current_raw();
        t->context = cur ? aev_context_copy(cur) : NULL;
    }
    loop->live_futures++;
    tasks_link(loop, t);
    t->state = AEV__T_SCHEDULED;
    rc = schedule_step(loop, t);
    if (rc < 0) {
        tasks_unlink(loop, t);
        t->fut.refs = 1;
        t->state = AEV__T_DONE;
        aev__future_cancel_now(&t->fut, NULL);
        aev_future_unref(&t->fut);
        return rc;
    }
    if (out)
        *out = &t->fut;
    return 0;
}

int aev_loop_create_task(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn, void *arg,
                         aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !fn)
        return -EINVAL;
    if (!loop->task_factory)
        return aev_task_new(loop, opts, fn, arg, out);
    aev_future_t *task = NULL;
    int rc = loop->task_factory(loop, opts, fn, arg, &task, loop->task_factory_data);
    if (rc < 0) {
        aev_future_unref(task);
        return rc;
    }
    if (!task) {
        aev__set_detail("the task factory returned success but no task");
        return AEV_EINVALID_STATE;
    }
    if (out)
        *out = task;
    else
        aev_future_unref(task);
    return 0;
}

void aev_loop_set_task_factory(aev_loop_t *loop, aev_task_factory_fn factory, void *userdata)
{
    if (!loop)
        return;
    loop->task_factory = factory;
    loop->task_factory_data = factory ? userdata : NULL;
}

aev_task_factory_fn aev_loop_get_task_factory(const aev_loop_t *loop, void **userdata)
{
    if (userdata)
        *userdata = loop ? loop->task_factory_data : NULL;
    return loop ? loop->task_factory : NULL;
}

/* ---- running ---------------------------------------------------------------------- */

void aev__task_entry(void *arg)
{
    aev__task_t *t = arg;
    aev_loop_t *loop = t->fut.loop;
    aev__fiber_started(&loop->fiber_home, &t->fiber);
    t->ran = 1;
    int rc = t->fn(&t->fut, t->arg);
    t->rc = rc;
    t->state = AEV__T_DONE;
    aev__fiber_exit(&loop->fiber_home, &t->fiber);
}

/* A task's first step: give it a stack, or end it at once when it was cancelled first.
 * Returns 0 when the task can be entered. */
int aev__task_start(aev_loop_t *loop, aev__task_t *t)
{
    if (t->must_cancel) { /* cancelled before its first step: the function never runs */
        t->state = AEV__T_DONE;
        t->rc = AEV_ECANCELLED;
        return -1;
    }
    aev__stack_t *stack;
    int rc = aev__stack_get(&loop->stacks, aev__stack_size(t->stack_request), &stack);
    if (rc < 0) {
        t->state = AEV__T_DONE;
        t->rc = rc;
        free(t->fail_detail);
        t->fail_detail = strdup("could not map the task's stack");
        return -1;
    }
    aev__fiber_init(&t->fiber, stack, aev__task_entry, t);
    t->started = 1;
    return 0;
}

/* The loop side of a task's end: its outcome goes into its future. */
void aev__task_finish(aev_loop_t *loop, aev__task_t *t)
{
    if (t->started) {
        aev__fiber_destroy(&t->fiber);
        aev__stack_put(&loop->stacks, t->fiber.stack);
        t->fiber.stack = NULL;
        t->started = 0;
    }
    tasks_unlink(loop, t);
    if (!t->ran && t->arg_destroy)
        t->arg_destroy(t->arg);
    int rc = t->rc;
    if (rc >= 0 && t->must_cancel)
        rc = AEV_ECANCELLED; /* cancelled after its last wait: CPython cancels it at the end */
    t->must_cancel = 0;
    if (rc >= 0) {
        void *v = t->ret_value;
        t->ret_value = NULL;
        aev__future_complete_result(&t->fut, v, t->ret_destroy);
    } else if (rc == AEV_ECANCELLED) {
        aev__future_cancel_now(&t->fut, t->cancel_msg);
    } else {
        aev__future_complete_error(&t->fut, rc, t->fail_detail);
    }
    aev_future_unref(&t->fut); /* the loop's */
}

/* Runs t from a wake-up callback and finishes it if it ended. t may be freed after. */
static inline __attribute__((always_inline)) void task_run(aev_loop_t *loop, aev__task_t *t)
{
    aev__task_switch_in(loop, t);
    if (t->state == AEV__T_DONE)
        aev__task_finish(loop, t);
}

int aev__task_step_cb(aev_loop_t *loop, void *arg)
{
    aev__task_step(loop, arg);
    return 0;
}

static int task_timer_cb(aev_loop_t *loop, void *arg)
{
    aev__task_t *t = arg;
    if (t->wait != AEV__W_TIMER)
        return 0;
    aev_handle_unref(t->timer);
    t->timer = NULL;
    task_run(loop, t);
    return 0;
}

static int task_wakeup_cb(aev_future_t *fut, void *arg)
{
    aev__task_t *t = arg;
    if (t->wait != AEV__W_FUTURE || t->waiting_on != fut)
        return 0;
    task_run(fut->loop, t);
    return 0;
}

/* A socket watcher's callback: the task resumes right here. If it waits on the same fd and
 * direction again before it comes back, the watcher stays registered: no system call. */
static int task_fd_cb(aev_loop_t *loop, void *arg)
{
    aev__task_t *t = arg;
    if (t->wait != AEV__W_FD)
        return 0;
    int fd = t->wait_fd;
    uint32_t dir = t->wait_dir;
    aev__task_switch_in(loop, t);
    if (!(t->state == AEV__T_WAITING && t->wait == AEV__W_FD && t->wait_fd == fd && t->wait_dir == dir))
        aev__io_unwatch_owned(loop, fd, dir, task_fd_cb, t);
    if (t->state == AEV__T_DONE)
        aev__task_finish(loop, t);
    return 0;
}

/* From inside t: back to the loop until a wake-up runs t again. */
static inline __attribute__((always_inline)) void task_suspend(aev_loop_t *loop, aev__task_t *t)
{
    t->state = AEV__T_WAITING;
    aev__fiber_leave(&loop->fiber_home, &t->fiber);
}

aev__task_t *aev__task_self(aev_loop_t **loop_out)
{
    aev_loop_t *loop = aev__running_loop;
    aev__task_t *t = loop ? loop->current_task : NULL;
    if (AEV__UNLIKELY(!t))
        aev__set_detail("only a task can wait: call this from a function run by aev_loop_create_task()");
    *loop_out = loop;
    return t;
}

/* A pending cancellation, delivered at this wait: consumes it. */
static inline int take_cancel(aev__task_t *t)
{
    if (AEV__LIKELY(!t->must_cancel))
        return 0;
    t->must_cancel = 0;
    return 1;
}

/* ---- waiting --------------------------------------------------------------------------- */

int aev_await(aev_future_t *fut, void **value)
{
    if (value)
        *value = NULL;
    aev_loop_t *loop;
    aev__task_t *t = aev__task_self(&loop);
    if (!t)
        return AEV_ENOT_IN_TASK;
    if (!fut)
        return -EINVAL;
    if (fut->loop != loop) {
        aev__set_detail("the future belongs to another event loop");
        return -EINVAL;
    }
    if (fut == &t->fut) {
        aev__set_detail("a task cannot await itself");
        return -EINVAL;
    }
    if (aev_future_done(fut)) /* a done future does not suspend (Future.__await__) */
        return aev_future_result(fut, value);
    if (take_cancel(t)) /* CPython's __step: the awaited future gets the cancellation */
        aev_future_cancel(fut, t->cancel_msg);
    int rc = aev_future_add_done_callback(fut, task_wakeup_cb, t);
    if (rc < 0)
        return rc;
    t->waiting_on = aev_future_ref(fut);
    t->wait = AEV__W_FUTURE;
    task_suspend(loop, t);
    t->waiting_on = NULL;
    if (take_cancel(t))
        rc = AEV_ECANCELLED;
    else
        rc = aev_future_result(fut, value);
    aev_future_unref(fut);
    return rc;
}

int aev_sleep(double seconds)
{
    aev_loop_t *loop;
    aev__task_t *t = aev__task_self(&loop);
    if (!t)
        return AEV_ENOT_IN_TASK;
    if (seconds != seconds)
        return -EINVAL;
    if (take_cancel(t))
        return AEV_ECANCELLED;
    if (seconds <= 0) {
        int rc = schedule_step(loop, t);
        if (rc < 0)
            return rc;
    } else {
        int rc = aev_loop_call_later(loop, seconds, task_timer_cb, t, &t->timer);
        if (rc < 0)
            return rc;
        t->wait = AEV__W_TIMER;
    }
    task_suspend(loop, t);
    return take_cancel(t) ? AEV_ECANCELLED : 0;
}

/* await asyncio.sleep(0), flat: the switch happens in this very function (see
 * aev__fiber_enter). */
int aev_task_yield(void)
{
    aev_loop_t *loop = aev__running_loop;
    aev__task_t *t = loop ? loop->current_task : NULL;
    if (AEV__UNLIKELY(!t || t->must_cancel || loop->ready_tail - loop->ready_head > loop->ready_mask))
        return aev_sleep(0);
    aev__ready_entry_t *e = &loop->ready[loop->ready_tail++ & loop->ready_mask];
    e->cb = aev__task_step_cb;
    e->arg = t;
    t->wait = AEV__W_STEP;
    task_suspend(loop, t);
    return take_cancel(t) ? AEV_ECANCELLED : 0;
}

int aev__task_wait_fd(aev_loop_t *loop, aev__task_t *t, int fd, uint32_t which)
{
    if (take_cancel(t))
        return AEV_ECANCELLED;
    int rc = aev__io_watch_owned(loop, fd, which, task_fd_cb, t);
    if (rc < 0)
        return rc;
    t->wait = AEV__W_FD;
    t->wait_fd = fd;
    t->wait_dir = which;
    task_suspend(loop, t);
    return take_cancel(t) ? AEV_ECANCELLED : 0;
}

int aev__task_holds_fd(aev_loop_t *loop, aev__task_t *t, int fd)
{
    return aev__io_owns(loop, fd, AEV_POLL_IN, task_fd_cb, t) ||
           aev__io_owns(loop, fd, AEV_POLL_OUT, task_fd_cb, t);
}

int aev__task_expect_drained(aev_loop_t *loop, aev__task_t *t, int fd)
{
    return t->short_read_fd == fd && aev__io_owns(loop, fd, AEV_POLL_IN, task_fd_cb, t);
}

/* ---- cancelling ------------------------------------------------------------------------- */

int aev__task_cancel(aev_future_t *f, const char *message)
{
    aev__task_t *t = T(f);
    aev_loop_t *loop = f->loop;
    if (t->state == AEV__T_DONE)
        return 0;
    t->cancel_requests++;
    if (message) {
        char *m = strdup(message);
        if (m) {
            free(t->cancel_msg);
            t->cancel_msg = m;
        }
    }
    switch (t->wait) {
    case AEV__W_FUTURE:
        if (aev_future_cancel(t->waiting_on, message) == 1)
            return 1; /* the wake-up brings the cancelled future */
        t->must_cancel = 1;
        return 1;
    case AEV__W_TIMER:
        aev_handle_cancel(t->timer);
        aev_handle_unref(t->timer);
        t->timer = NULL;
        t->must_cancel = 1;
        schedule_step(loop, t);
        return 1;
    case AEV__W_FD:
        aev__io_unwatch_owned(loop, t->wait_fd, t->wait_dir, task_fd_cb, t);
        t->must_cancel = 1;
        schedule_step(loop, t);
        return 1;
    default: /* scheduled or running: at the next wait */
        t->must_cancel = 1;
        return 1;
    }
}

int aev_task_cancelling(const aev_future_t *task)
{
    return task && task->is_task ? ((const aev__task_t *)task)->cancel_requests : 0;
}

int aev_task_uncancel(aev_future_t *task)
{
    if (!task || !task->is_task)
        return 0;
    aev__task_t *t = T(task);
    if (t->cancel_requests > 0 && --t->cancel_requests == 0)
        t->must_cancel = 0;
    return t->cancel_requests;
}

/* ---- the task's own calls ------------------------------------------------------------------ */

int aev_task_return(aev_future_t *self, void *value, void (*destroy)(void *))
{
    if (!self || !self->is_task)
        return -EINVAL;
    aev__task_t *t = T(self);
    if (t->state == AEV__T_DONE || self->state != FUT_PENDING)
        return AEV_EINVALID_STATE;
    if (t->ret_value && t->ret_destroy && t->ret_value != value)
        t->ret_destroy(t->ret_value);
    t->ret_value = value;
    t->ret_destroy = destroy;
    return 0;
}

int aev_task_fail(aev_future_t *self, int error, const char *detail)
{
    if (self && self->is_task) {
        aev__task_t *t = T(self);
        free(t->fail_detail);
        t->fail_detail = detail ? strdup(detail) : NULL;
    }
    return error;
}

/* ---- queries ---------------------------------------------------------------------------------- */

int aev_future_is_task(const aev_future_t *future)
{
    return future && future->is_task ? 1 : 0;
}

aev_future_t *aev_task_current(void)
{
    aev_loop_t *loop = aev__running_loop;
    return loop && loop->current_task ? &loop->current_task->fut : NULL;
}

const char *aev_task_get_name(const aev_future_t *task)
{
    if (!task || !task->is_task)
        return NULL;
    aev__task_t *t = (aev__task_t *)task;
    if (t->name)
        return t->name;
    if (!t->name_buf[0])
        snprintf(t->name_buf, sizeof t->name_buf, "Task-%" PRIu64, t->num);
    return t->name_buf;
}

int aev_task_set_name(aev_future_t *task, const char *name)
{
    if (!task || !task->is_task || !name)
        return -EINVAL;
    char *n = strdup(name);
    if (!n)
        return -ENOMEM;
    aev__task_t *t = T(task);
    free(t->name);
    t->name = n;
    return 0;
}

aev_context_t *aev_task_get_context(const aev_future_t *task)
{
    return task && task->is_task ? ((const aev__task_t *)task)->context : NULL;
}

aev_task_fn aev_task_get_fn(const aev_future_t *task)
{
    return task && task->is_task ? ((const aev__task_t *)task)->fn : NULL;
}

int aev__task_describe_wakeup(aev_callback_fn cb, void *arg, char *buf, size_t size)
{
    const char *what = cb == aev__task_step_cb ? "step"
                       : cb == task_timer_cb   ? "sleep over"
                       : cb == task_fd_cb      ? "socket ready"
                                               : NULL;
    if (!what)
        return 0;
    snprintf(buf, size, "task %s (%s)", aev_task_get_name(&((aev__task_t *)arg)->fut), what);
    return 1;
}

aev_context_t **aev__task_context_slot(aev__task_t *t)
{
    return &t->context;
}

size_t aev_loop_all_tasks(aev_loop_t *loop, aev_future_t **tasks, size_t cap)
{
    if (!loop)
        return 0;
    size_t i = 0;
    for (aev__task_t *t = loop->tasks; t; t = t->next, i++)
        if (tasks && i < cap)
            tasks[i] = aev_future_ref(&t->fut);
    return i;
}

/* ---- shutdown ------------------------------------------------------------------------------------- */

static void cancel_all(aev_loop_t *loop)
{
    for (aev__task_t *t = loop->tasks; t; t = t->next)
        aev__task_cancel(&t->fut, "the event loop is shutting down");
}

/* A task that would not end: finish it as cancelled without running it again. What its
 * stack held is abandoned. */
static void abandon(aev_loop_t *loop, aev__task_t *t)
{
    char name[64];
    snprintf(name, sizeof name, "%s", aev_task_get_name(&t->fut));
    aev_log(AEV_LOG_ERROR, "aev", "task %s ignored cancellation at loop shutdown; abandoned", name);
    if (t->wait == AEV__W_FUTURE) {
        aev_future_remove_done_callback(t->waiting_on, task_wakeup_cb, t);
        aev_future_unref(t->waiting_on);
        t->waiting_on = NULL;
    } else if (t->wait == AEV__W_TIMER) {
        aev_handle_cancel(t->timer);
        aev_handle_unref(t->timer);
        t->timer = NULL;
    } else if (t->wait == AEV__W_FD) {
        aev__io_unwatch_owned(loop, t->wait_fd, t->wait_dir, task_fd_cb, t);
    }
    t->wait = AEV__W_NONE;
    t->state = AEV__T_DONE;
    t->rc = AEV_ECANCELLED;
    aev__task_finish(loop, t);
}

int aev_loop_shutdown_tasks(aev_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->closed || loop->ntasks == 0)
        return 0;
    int rc = aev__loop_run_begin(loop);
    if (rc < 0)
        return rc;
    cancel_all(loop);
    size_t last = loop->ntasks;
    unsigned idle = 0, recancel = 0;
    while (loop->ntasks > 0) {
        aev__loop_run_once(loop);
        if (loop->ntasks < last) {
            last = loop->ntasks;
            idle = 0;
        } else if (++idle >= 1000) {
            if (++recancel > 10)
                break;
            cancel_all(loop);
            idle = 0;
        }
    }
    aev__loop_run_end(loop);
    while (loop->tasks)
        abandon(loop, loop->tasks);
    return 0;
}

void aev__task_release(aev_future_t *f)
{
    aev__task_t *t = T(f);
    if (t->ret_value && t->ret_destroy)
        t->ret_destroy(t->ret_value);
    free(t->name);
    free(t->cancel_msg);
    free(t->fail_detail);
    aev_context_unref(t->context);
}

void aev__tasks_loop_free(aev_loop_t *loop)
{
    aev__stack_cache_clear(&loop->stacks);
}
