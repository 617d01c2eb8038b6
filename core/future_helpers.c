/* libaev core - helpers over futures: wait_for, gather, shield and wait
 * (asyncio.tasks), built on the public future API. Each helper keeps a small
 * state, reference counted by "slots": one per done callback or timer it has
 * registered; the callback (or whoever removes the registration) releases its
 * slot, and the last one frees the state and the references it holds.
 *
 * Outer futures that mirror an inner one share its value pointer: the outer
 * keeps a reference to the inner (the future's `keep`), so the value lives as
 * long as either. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "future_internal.h"

#include <aev/future.h>

/* ---- common pieces ------------------------------------------------------- */

/* Completes dst (pending) with src's outcome (src done); reading src marks its error retrieved. */
static void mirror(aev_future_t *src, aev_future_t *dst)
{
    void *value = NULL;
    int rc = aev_future_result(src, &value);
    if (rc == 0) {
        /* the value stays the inner's: dst keeps the inner alive with it */
        if (aev_future_set_result(dst, value, NULL) == 0 && value && !dst->keep)
            dst->keep = aev_future_ref(src);
    } else if (rc == AEV_ECANCELLED) {
        aev_future_cancel(dst, aev_future_error_detail(src));
    } else {
        aev_future_set_error(dst, rc, aev_future_error_detail(src));
    }
}

static int cmp_uintptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Checks the children of gather/wait and returns them without duplicates (first occurrence
 * order) in *kids_out (malloc'ed, no references taken), their number in *nkids. */
static int unique_children(aev_loop_t *loop, const char *who, aev_future_t *const *futs, size_t n,
                           aev_future_t ***kids_out, size_t *nkids)
{
    *kids_out = NULL;
    *nkids = 0;
    if (n > 0 && !futs) {
        aev__set_detail("%s: futs is NULL with n = %zu", who, n);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!futs[i]) {
            aev__set_detail("%s: future %zu is NULL", who, i);
            return -EINVAL;
        }
        if (aev_future_get_loop(futs[i]) != loop) {
            aev__set_detail("%s: future %zu belongs to another event loop", who, i);
            return -EINVAL;
        }
    }
    if (n == 0)
        return 0;
    aev_future_t **kids = malloc(n * sizeof *kids);
    if (!kids)
        return -ENOMEM;
    size_t m = 0;
    if (n <= 32) { /* a handful: quadratic is cheapest */
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < m && kids[j] != futs[i])
                j++;
            if (j == m)
                kids[m++] = futs[i];
        }
    } else { /* sort the pointers, keep each one's first occurrence: O(n log n) */
        uintptr_t *sorted = malloc(n * sizeof *sorted);
        unsigned char *taken = calloc(n, 1);
        if (!sorted || !taken) {
            free(sorted);
            free(taken);
            free(kids);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
            sorted[i] = (uintptr_t)futs[i];
        qsort(sorted, n, sizeof *sorted, cmp_uintptr);
        for (size_t i = 0; i < n; i++) {
            uintptr_t key = (uintptr_t)futs[i];
            size_t lo = 0, hi = n;
            while (lo < hi) { /* the first index holding key */
                size_t mid = lo + (hi - lo) / 2;
                if (sorted[mid] < key)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (!taken[lo]) {
                taken[lo] = 1;
                kids[m++] = futs[i];
            }
        }
        free(sorted);
        free(taken);
    }
    *kids_out = kids;
    *nkids = m;
    return 0;
}

/* ---- wait_for ------------------------------------------------------------ */

typedef struct wait_for {
    aev_future_t *fut, *out;
    aev_handle_t *timer;
    double timeout;
    int timed_out;
    int slots;
} wait_for_t;

static void wf_release(wait_for_t *st)
{
    if (--st->slots > 0)
        return;
    aev_future_unref(st->fut);
    aev_future_unref(st->out);
    free(st);
}

static void wf_stop_timer(wait_for_t *st)
{
    if (!st->timer)
        return;
    aev_handle_cancel(st->timer);
    aev_handle_unref(st->timer);
    st->timer = NULL;
    st->slots--; /* never the last: the caller holds one */
}

static int wf_outer_done(aev_future_t *out, void *arg);

/* fut is done: pass its outcome on (TimeoutError if we cancelled it at the deadline). */
static int wf_inner_done(aev_future_t *fut, void *arg)
{
    wait_for_t *st = arg;
    wf_stop_timer(st);
    if (!aev_future_done(st->out)) {
        st->slots -= aev_future_remove_done_callback(st->out, wf_outer_done, st);
        if (st->timed_out && aev_future_cancelled(fut)) {
            char detail[64];
            snprintf(detail, sizeof detail, "wait_for: timed out after %g s", st->timeout);
            aev_future_set_error(st->out, -ETIMEDOUT, detail);
        } else {
            mirror(fut, st->out);
        }
    } else if (!aev_future_cancelled(fut)) {
        aev_future_error(fut); /* the waiter is gone: its outcome counts as read */
    }
    wf_release(st);
    return 0;
}

/* out was completed by someone else (cancelled): cancel fut and wait for it. */
static int wf_outer_done(aev_future_t *out, void *arg)
{
    wait_for_t *st = arg;
    wf_stop_timer(st);
    if (aev_future_cancelled(out))
        aev_future_cancel(st->fut, aev_future_error_detail(out));
    wf_release(st);
    return 0;
}

static int wf_timeout(aev_loop_t *loop, void *arg)
{
    wait_for_t *st = arg;
    (void)loop;
    aev_handle_unref(st->timer);
    st->timer = NULL;
    if (!aev_future_done(st->fut) && !aev_future_done(st->out)) {
        st->timed_out = 1;
        aev_future_cancel(st->fut, NULL);
    }
    wf_release(st);
    return 0;
}

int aev_future_wait_for(aev_future_t *fut, double timeout, aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!fut)
        return -EINVAL;
    if (isnan(timeout)) {
        aev__set_detail("wait_for: timeout is NaN");
        return -EINVAL;
    }
    aev_future_t *o = NULL;
    int rc = aev_loop_create_future(aev_future_get_loop(fut), &o);
    if (rc < 0)
        return rc;
    if (aev_future_done(fut)) { /* as `await fut` on a done future: no suspension */
        mirror(fut, o);
        *out = o;
        return 0;
    }
    wait_for_t *st = calloc(1, sizeof *st);
    if (!st) {
        aev_future_unref(o);
        return -ENOMEM;
    }
    st->fut = aev_future_ref(fut);
    st->out = aev_future_ref(o);
    st->timeout = timeout;
    st->slots = 1; /* ours, until the end of this call */
    rc = aev_future_add_done_callback(fut, wf_inner_done, st);
    if (rc == 0) {
        st->slots++;
        rc = aev_future_add_done_callback(o, wf_outer_done, st);
        if (rc == 0)
            st->slots++;
        else
            st->slots -= aev_future_remove_done_callback(fut, wf_inner_done, st);
    }
    if (rc == 0 && timeout > 0 && !isinf(timeout)) {
        rc = aev_loop_call_later(aev_future_get_loop(fut), timeout, wf_timeout, st, &st->timer);
        if (rc == 0) {
            st->slots++;
        } else {
            st->slots -= aev_future_remove_done_callback(fut, wf_inner_done, st);
            st->slots -= aev_future_remove_done_callback(o, wf_outer_done, st);
        }
    }
    if (rc == 0 && timeout == 0) { /* no time at all: cancel now, time out once it is done */
        st->timed_out = 1;
        aev_future_cancel(fut, NULL);
    }
    wf_release(st);
    if (rc < 0) {
        aev_future_unref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* ---- shield -------------------------------------------------------------- */

typedef struct shield {
    aev_future_t *inner, *out;
    int slots;
} shield_t;

static void sh_release(shield_t *st)
{
    if (--st->slots > 0)
        return;
    aev_future_unref(st->inner);
    aev_future_unref(st->out);
    free(st);
}

static int sh_outer_done(aev_future_t *out, void *arg);

static int sh_inner_done(aev_future_t *inner, void *arg)
{
    shield_t *st = arg;
    if (aev_future_done(st->out)) {
        if (!aev_future_cancelled(inner))
            aev_future_error(inner); /* mark it retrieved, as asyncio's shield does */
    } else {
        st->slots -= aev_future_remove_done_callback(st->out, sh_outer_done, st);
        mirror(inner, st->out);
    }
    sh_release(st);
    return 0;
}

/* out was cancelled (or completed) by someone else: stop listening to inner, leave it be. */
static int sh_outer_done(aev_future_t *out, void *arg)
{
    shield_t *st = arg;
    (void)out;
    if (!aev_future_done(st->inner))
        st->slots -= aev_future_remove_done_callback(st->inner, sh_inner_done, st);
    sh_release(st);
    return 0;
}

int aev_future_shield(aev_future_t *fut, aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!fut)
        return -EINVAL;
    if (aev_future_done(fut)) { /* asyncio returns the inner future itself */
        *out = aev_future_ref(fut);
        return 0;
    }
    aev_future_t *o = NULL;
    int rc = aev_loop_create_future(aev_future_get_loop(fut), &o);
    if (rc < 0)
        return rc;
    shield_t *st = calloc(1, sizeof *st);
    if (!st) {
        aev_future_unref(o);
        return -ENOMEM;
    }
    st->inner = aev_future_ref(fut);
    st->out = aev_future_ref(o);
    st->slots = 1;
    rc = aev_future_add_done_callback(fut, sh_inner_done, st);
    if (rc == 0) {
        st->slots++;
        rc = aev_future_add_done_callback(o, sh_outer_done, st);
        if (rc == 0)
            st->slots++;
        else
            st->slots -= aev_future_remove_done_callback(fut, sh_inner_done, st);
    }
    sh_release(st);
    if (rc < 0) {
        aev_future_unref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* ---- gather -------------------------------------------------------------- */

typedef struct gather {
    aev_future_t *out; /* NULL once out is done and no longer needed */
    aev_future_t **kids;
    size_t nkids, nfinished;
    int return_exceptions;
    int slots;
} gather_t;

static void ga_release(gather_t *st)
{
    if (--st->slots > 0)
        return;
    for (size_t i = 0; i < st->nkids; i++)
        aev_future_unref(st->kids[i]);
    aev_future_unref(st->out);
    free(st->kids);
    free(st);
}

static int ga_outer_done(aev_future_t *out, void *arg);

/* Completes out: first its cancellation callback goes, then the outcome, then our reference. */
static void ga_finish(gather_t *st, int error, const char *detail)
{
    aev_future_t *out = st->out;
    st->out = NULL;
    st->slots -= aev_future_remove_done_callback(out, ga_outer_done, st);
    if (error == 0)
        aev_future_set_result(out, NULL, NULL);
    else if (error == AEV_ECANCELLED)
        aev_future_cancel(out, detail);
    else
        aev_future_set_error(out, error, detail);
    aev_future_unref(out);
}

/* CPython's _done_callback: one child is done. */
static void ga_child_finished(gather_t *st, aev_future_t *child)
{
    st->nfinished++;
    int rc = aev_future_result(child, NULL); /* reads it: its error counts as retrieved */
    if (!st->out || aev_future_done(st->out))
        return;
    if (!st->return_exceptions && rc < 0)
        ga_finish(st, rc, aev_future_error_detail(child));
    else if (st->nfinished == st->nkids)
        ga_finish(st, 0, NULL);
}

static int ga_child_done(aev_future_t *child, void *arg)
{
    gather_t *st = arg;
    ga_child_finished(st, child);
    ga_release(st);
    return 0;
}

/* out was cancelled by its owner: cancel every child not done (the children's callbacks stay
 * and read their outcomes as they finish). */
static int ga_outer_done(aev_future_t *out, void *arg)
{
    gather_t *st = arg;
    if (aev_future_cancelled(out)) {
        const char *msg = aev_future_error_detail(out);
        for (size_t i = 0; i < st->nkids; i++)
            if (!aev_future_done(st->kids[i]))
                aev_future_cancel(st->kids[i], msg);
    }
    aev_future_unref(st->out);
    st->out = NULL;
    ga_release(st);
    return 0;
}

int aev_future_gather(aev_loop_t *loop, aev_future_t *const *futs, size_t n, int return_exceptions,
                      aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop)
        return -EINVAL;
    aev_future_t **kids = NULL;
    size_t nkids = 0;
    int rc = unique_children(loop, "gather", futs, n, &kids, &nkids);
    if (rc < 0)
        return rc;
    aev_future_t *o = NULL;
    rc = aev_loop_create_future(loop, &o);
    if (rc < 0) {
        free(kids);
        return rc;
    }
    if (nkids == 0) { /* gather() of nothing: an empty result at once */
        aev_future_set_result(o, NULL, NULL);
        *out = o;
        return 0;
    }
    gather_t *st = calloc(1, sizeof *st);
    if (!st) {
        free(kids);
        aev_future_unref(o);
        return -ENOMEM;
    }
    st->kids = kids;
    st->nkids = nkids;
    st->return_exceptions = return_exceptions != 0;
    st->slots = 1;
    for (size_t i = 0; i < nkids; i++)
        aev_future_ref(kids[i]);
    /* Register on the pending children first; any failure undoes every registration. */
    for (size_t i = 0; i < nkids && rc == 0; i++) {
        if (aev_future_done(kids[i]))
            continue;
        rc = aev_future_add_done_callback(kids[i], ga_child_done, st);
        if (rc == 0)
            st->slots++;
    }
    if (rc == 0) {
        rc = aev_future_add_done_callback(o, ga_outer_done, st);
        if (rc == 0) {
            st->slots++;
            st->out = aev_future_ref(o);
        }
    }
    if (rc < 0) {
        for (size_t i = 0; i < nkids; i++)
            st->slots -= aev_future_remove_done_callback(kids[i], ga_child_done, st);
        ga_release(st);
        aev_future_unref(o);
        return rc;
    }
    /* As CPython: the children done already go through the callback now, in order, so a
     * gather of done futures is complete when it returns. (Nothing completes during this
     * call, so the children done now are exactly those without a callback.) */
    for (size_t i = 0; i < nkids; i++)
        if (aev_future_done(kids[i]))
            ga_child_finished(st, kids[i]);
    ga_release(st);
    *out = o;
    return 0;
}

/* ---- wait ---------------------------------------------------------------- */

typedef struct wait_state {
    aev_future_t *out; /* NULL once out is done */
    aev_future_t **kids;
    size_t nkids, counter;
    int return_when;
    aev_handle_t *timer;
    int slots;
} wait_state_t;

static void wt_release(wait_state_t *st)
{
    if (--st->slots > 0)
        return;
    for (size_t i = 0; i < st->nkids; i++)
        aev_future_unref(st->kids[i]);
    aev_future_unref(st->out);
    free(st->kids);
    free(st);
}

static int wt_child_done(aev_future_t *child, void *arg);
static int wt_outer_done(aev_future_t *out, void *arg);

/* The wait is over (condition met, timeout, or out cancelled): what asyncio's `finally` does. */
static void wt_detach(wait_state_t *st)
{
    if (st->timer) {
        aev_handle_cancel(st->timer);
        aev_handle_unref(st->timer);
        st->timer = NULL;
        st->slots--;
    }
    for (size_t i = 0; i < st->nkids; i++)
        st->slots -= aev_future_remove_done_callback(st->kids[i], wt_child_done, st);
    aev_future_unref(st->out);
    st->out = NULL;
}

static void wt_finish(wait_state_t *st)
{
    aev_future_t *out = aev_future_ref(st->out);
    st->slots -= aev_future_remove_done_callback(out, wt_outer_done, st);
    wt_detach(st);
    aev_future_set_result(out, NULL, NULL);
    aev_future_unref(out);
}

static int wt_child_done(aev_future_t *child, void *arg)
{
    wait_state_t *st = arg;
    if (st->out && !aev_future_done(st->out)) {
        st->counter--;
        if (st->counter == 0 || st->return_when == AEV_WAIT_FIRST_COMPLETED ||
            (st->return_when == AEV_WAIT_FIRST_EXCEPTION && !aev_future_cancelled(child) &&
             aev_future_error(child) != 0))
            wt_finish(st);
    }
    wt_release(st);
    return 0;
}

static int wt_timeout(aev_loop_t *loop, void *arg)
{
    wait_state_t *st = arg;
    (void)loop;
    aev_handle_unref(st->timer);
    st->timer = NULL;
    if (st->out && !aev_future_done(st->out))
        wt_finish(st);
    wt_release(st);
    return 0;
}

/* out was cancelled by its owner: stop waiting; the children are left alone. */
static int wt_outer_done(aev_future_t *out, void *arg)
{
    wait_state_t *st = arg;
    (void)out;
    if (st->out)
        wt_detach(st);
    wt_release(st);
    return 0;
}

int aev_future_wait(aev_loop_t *loop, aev_future_t *const *futs, size_t n, double timeout,
                    int return_when, aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop)
        return -EINVAL;
    if (n == 0) {
        aev__set_detail("wait: the set of futures is empty");
        return -EINVAL;
    }
    if (return_when != AEV_WAIT_ALL_COMPLETED && return_when != AEV_WAIT_FIRST_COMPLETED &&
        return_when != AEV_WAIT_FIRST_EXCEPTION) {
        aev__set_detail("wait: invalid return_when value %d", return_when);
        return -EINVAL;
    }
    if (isnan(timeout)) {
        aev__set_detail("wait: timeout is NaN");
        return -EINVAL;
    }
    aev_future_t **kids = NULL;
    size_t nkids = 0;
    int rc = unique_children(loop, "wait", futs, n, &kids, &nkids);
    if (rc < 0)
        return rc;
    aev_future_t *o = NULL;
    rc = aev_loop_create_future(loop, &o);
    if (rc < 0) {
        free(kids);
        return rc;
    }
    wait_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        free(kids);
        aev_future_unref(o);
        return -ENOMEM;
    }
    st->kids = kids;
    st->nkids = st->counter = nkids;
    st->return_when = return_when;
    st->out = aev_future_ref(o);
    st->slots = 1;
    for (size_t i = 0; i < nkids; i++)
        aev_future_ref(kids[i]);
    /* As asyncio: a callback on every child, done or not (done ones are scheduled now). */
    for (size_t i = 0; i < nkids && rc == 0; i++) {
        rc = aev_future_add_done_callback(kids[i], wt_child_done, st);
        if (rc == 0)
            st->slots++;
    }
    if (rc == 0) {
        rc = aev_future_add_done_callback(o, wt_outer_done, st);
        if (rc == 0)
            st->slots++;
    }
    if (rc == 0 && timeout >= 0 && !isinf(timeout)) {
        rc = aev_loop_call_later(loop, timeout, wt_timeout, st, &st->timer);
        if (rc == 0)
            st->slots++;
    }
    if (rc < 0) {
        st->slots -= aev_future_remove_done_callback(o, wt_outer_done, st);
        wt_detach(st); /* callbacks already scheduled on done children still hold their slots */
        wt_release(st);
        aev_future_unref(o);
        return rc;
    }
    wt_release(st);
    *out = o;
    return 0;
}
