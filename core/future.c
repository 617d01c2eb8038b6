/* libaev core - futures: one of result / error / cancelled, done callbacks
 * scheduled with call_soon in the order added, reference counting, and the
 * report of an error nobody retrieved. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "future_internal.h"

int aev_loop_create_future(aev_loop_t *loop, aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    aev_future_t *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->loop = loop;
    f->refs = 1;
    loop->live_futures++;
    *out = f;
    return 0;
}

aev_future_t *aev_future_ref(aev_future_t *f)
{
    if (f)
        f->refs++;
    return f;
}

void aev_future_unref(aev_future_t *f)
{
    if (!f || --f->refs > 0)
        return;
    aev_loop_t *loop = f->loop;
    if (f->state == FUT_ERROR && !f->retrieved) {
        f->refs = 1; /* the handler may look at (and ref/unref) the future */
        aev_exception_context_t ctx = {
            .message = f->is_task ? "Task exception was never retrieved" : "Future exception was never retrieved",
            .error = f->error,
            .error_detail = f->detail,
            .future = f,
            .task = f->is_task ? f : NULL,
        };
        aev_loop_call_exception_handler(loop, &ctx);
        if (--f->refs > 0)
            return;
    }
    for (size_t i = 0; i < f->ncbs; i++)
        aev_context_unref(f->cbs[i].context);
    if (f->cbs != f->cb_inline)
        free(f->cbs);
    if (f->is_task)
        aev__task_release(f);
    if (f->state == FUT_RESULT && f->destroy)
        f->destroy(f->value);
    aev_future_t *keep = f->keep;
    free(f->detail);
    free(f);
    aev_future_unref(keep); /* while f still counts as live: the loop cannot go under us */
    loop->live_futures--;
    aev__loop_object_released(loop);
}

aev_loop_t *aev_future_get_loop(const aev_future_t *f)
{
    return f ? f->loop : NULL;
}

/* Schedules every done callback (CPython's __schedule_callbacks). */
static void schedule_callbacks(aev_future_t *f)
{
    aev_loop_t *loop = f->loop;
    size_t n = f->ncbs;
    done_cb_t one[1];
    done_cb_t *cbs = f->cbs;
    if (cbs == f->cb_inline) { /* the slot is reused if a callback adds another */
        if (n)
            one[0] = f->cb_inline[0];
        cbs = one;
    }
    f->cbs = NULL;
    f->ncbs = f->capcbs = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = loop->closed ? AEV_ECLOSED : 0;
        aev_handle_t *h = NULL;
        if (rc == 0) {
            h = aev__handle_new_ext(loop, NULL, aev__future_trampoline, cbs[i].arg);
            rc = h ? 0 : -ENOMEM;
        }
        if (rc == 0) {
            /* run in the context captured when the callback was added */
            aev_context_unref(h->context);
            h->context = cbs[i].context;
            cbs[i].context = NULL;
            AEV__EXT(h)->name = cbs[i].name;
            AEV__EXT(h)->u.future_cb = cbs[i].cb;
            AEV__EXT(h)->future = aev_future_ref(f);
            h->flags |= AEV__H_FUTURE_CB;
            rc = aev__ready_push(loop, h);
            if (rc < 0)
                aev__handle_unref_fast(h);
        }
        if (rc < 0 && rc != AEV_ECLOSED) {
            aev_exception_context_t ctx = {.message = "could not schedule a future's done callback",
                                           .error = rc, .future = f};
            aev_loop_call_exception_handler(loop, &ctx);
        }
        aev_context_unref(cbs[i].context);
    }
    if (cbs != one)
        free(cbs);
}

/* Runs a done callback: the handle carries the future and the user's function. */
int aev__future_trampoline(aev_loop_t *loop, void *arg)
{
    aev__handle_ext_t *x = AEV__EXT(loop->current_handle);
    return x->u.future_cb(x->future, arg);
}

static int complete(aev_future_t *f, int state)
{
    f->state = (uint8_t)state;
    schedule_callbacks(f);
    return 0;
}

int aev_future_set_result(aev_future_t *f, void *value, void (*destroy)(void *))
{
    if (!f)
        return -EINVAL;
    int rc = aev__check_thread(f->loop);
    if (rc < 0)
        return rc;
    if (f->state != FUT_PENDING)
        return AEV_EINVALID_STATE;
    if (f->is_task) {
        aev__set_detail("a task's outcome is what its function returns: set_result is not supported");
        return AEV_EINVALID_STATE;
    }
    return aev__future_complete_result(f, value, destroy);
}

int aev__future_complete_result(aev_future_t *f, void *value, void (*destroy)(void *))
{
    f->value = value;
    f->destroy = destroy;
    return complete(f, FUT_RESULT);
}

int aev_future_set_error(aev_future_t *f, int error, const char *detail)
{
    if (!f || error >= 0)
        return -EINVAL;
    int rc = aev__check_thread(f->loop);
    if (rc < 0)
        return rc;
    if (f->state != FUT_PENDING)
        return AEV_EINVALID_STATE;
    if (error == AEV_ECANCELLED) /* as CPython: set_exception(CancelledError) is refused */
        return -EINVAL;
    if (f->is_task) {
        aev__set_detail("a task's outcome is what its function returns: set_error is not supported");
        return AEV_EINVALID_STATE;
    }
    return aev__future_complete_error(f, error, detail);
}

int aev__future_complete_error(aev_future_t *f, int error, const char *detail)
{
    f->error = error;
    f->detail = detail ? strdup(detail) : NULL;
    return complete(f, FUT_ERROR);
}

int aev_future_cancel(aev_future_t *f, const char *message)
{
    if (!f)
        return 0;
    int rc = aev__check_thread(f->loop);
    if (rc < 0)
        return rc;
    if (f->state != FUT_PENDING)
        return 0;
    if (f->is_task)
        return aev__task_cancel(f, message);
    return aev__future_cancel_now(f, message);
}

int aev__future_cancel_now(aev_future_t *f, const char *message)
{
    f->error = AEV_ECANCELLED;
    f->detail = message ? strdup(message) : NULL;
    complete(f, FUT_CANCELLED);
    return 1;
}

int aev_future_done(const aev_future_t *f)
{
    return f && f->state != FUT_PENDING ? 1 : 0;
}

int aev_future_cancelled(const aev_future_t *f)
{
    return f && f->state == FUT_CANCELLED ? 1 : 0;
}

int aev_future_result(aev_future_t *f, void **value)
{
    if (value)
        *value = NULL;
    if (!f)
        return -EINVAL;
    switch (f->state) {
    case FUT_PENDING:
        return AEV_EINVALID_STATE;
    case FUT_RESULT:
        if (value)
            *value = f->value;
        return 0;
    case FUT_ERROR:
        f->retrieved = 1;
        return f->error;
    default:
        return AEV_ECANCELLED;
    }
}

int aev_future_error(aev_future_t *f)
{
    return aev_future_result(f, NULL);
}

const char *aev_future_error_detail(const aev_future_t *f)
{
    return f ? f->detail : NULL;
}

int aev_future_add_done_callback_ex(aev_future_t *f, const aev_call_options_t *opts,
                                    aev_future_callback_fn cb, void *arg)
{
    if (!f || !cb)
        return -EINVAL;
    int rc = aev__check_thread(f->loop);
    if (rc < 0)
        return rc;
    if (f->ncbs == f->capcbs) {
        if (f->capcbs == 0) { /* the first callback goes in the future itself */
            f->cbs = f->cb_inline;
            f->capcbs = 1;
        } else {
            size_t cap = f->capcbs * 2;
            done_cb_t *n = malloc(cap * sizeof *n);
            if (!n)
                return -ENOMEM;
            memcpy(n, f->cbs, f->ncbs * sizeof *n);
            if (f->cbs != f->cb_inline)
                free(f->cbs);
            f->cbs = n;
            f->capcbs = cap;
        }
    }
    done_cb_t *d = &f->cbs[f->ncbs++];
    d->cb = cb;
    d->arg = arg;
    d->name = opts ? opts->name : NULL;
    if (opts && opts->context) {
        d->context = aev_context_ref(opts->context);
    } else {
        aev_context_t *cur = aev__context_current_raw();
        d->context = cur ? aev_context_copy(cur) : NULL;
    }
    if (f->state != FUT_PENDING)
        schedule_callbacks(f);
    return 0;
}

int aev_future_add_done_callback(aev_future_t *f, aev_future_callback_fn cb, void *arg)
{
    return aev_future_add_done_callback_ex(f, NULL, cb, arg);
}

int aev_future_remove_done_callback(aev_future_t *f, aev_future_callback_fn cb, void *arg)
{
    if (!f)
        return 0;
    size_t j = 0;
    int removed = 0;
    for (size_t i = 0; i < f->ncbs; i++) {
        if (f->cbs[i].cb == cb && f->cbs[i].arg == arg) {
            aev_context_unref(f->cbs[i].context);
            removed++;
        } else {
            f->cbs[j++] = f->cbs[i];
        }
    }
    f->ncbs = j;
    return removed;
}
