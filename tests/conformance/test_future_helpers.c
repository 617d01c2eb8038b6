/* libaev conformance: helpers over futures (asyncio.wait_for, gather, shield, wait):
 * outcomes, errors, cancellation both ways, timeouts, futures already done, early
 * release of the outer future, shared result values, refusal of other loops. */
#include <math.h>

#include "test_util.h"

static aev_future_t *new_future(aev_loop_t *loop)
{
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_ptr_nonnull(fut);
    return fut;
}

/* Runs a few iterations so that done callbacks already scheduled get to run. */
static void drain(aev_loop_t *loop)
{
    for (int i = 0; i < 3; i++)
        tu_run_once(loop);
}

/* ---- completing futures later ------------------------------------------------ */

enum { DO_RESULT, DO_ERROR, DO_CANCEL };

/* Completes fut from a loop callback; holds its own reference to fut until then. */
typedef struct completer {
    aev_future_t *fut;
    int kind;
    int error;
    void *value;
    void (*destroy)(void *);
    const char *text; /* error detail or cancel message */
    int fired;
    int rc;
    double fired_at; /* loop time */
    aev_handle_t *handle;
} completer_t;

static int completer_cb(aev_loop_t *loop, void *arg)
{
    completer_t *c = arg;
    c->fired = 1;
    c->fired_at = aev_loop_time(loop);
    if (c->kind == DO_RESULT)
        c->rc = aev_future_set_result(c->fut, c->value, c->destroy);
    else if (c->kind == DO_ERROR)
        c->rc = aev_future_set_error(c->fut, c->error, c->text);
    else
        c->rc = aev_future_cancel(c->fut, c->text);
    aev_future_unref(c->fut);
    c->fut = NULL;
    return 0;
}

static void complete_later(aev_loop_t *loop, completer_t *c, aev_future_t *fut, double delay)
{
    c->fut = aev_future_ref(fut);
    c->fired = 0;
    ck_assert_int_eq(aev_loop_call_later(loop, delay, completer_cb, c, &c->handle), 0);
}

/* Cancels a completer that has not fired (and drops its reference). */
static void completer_done(completer_t *c)
{
    if (!c->fired) {
        aev_handle_cancel(c->handle);
        aev_future_unref(c->fut);
        c->fut = NULL;
    }
    aev_handle_unref(c->handle);
    c->handle = NULL;
}

/* ---- values with a destructor ----------------------------------------------- */

static int destroyed;

static void count_destroy(void *value)
{
    (void)value;
    destroyed++;
}

/* A heap value whose destructor frees it: use-after-free shows under ASan/valgrind. */
static void free_destroy(void *value)
{
    destroyed++;
    free(value);
}

/* ---- order recording -------------------------------------------------------- */

typedef struct order {
    int n;
    char tags[16];
} order_t;

typedef struct tagged {
    order_t *order;
    char tag;
} tagged_t;

static int record_done(aev_future_t *fut, void *arg)
{
    tagged_t *t = arg;
    (void)fut;
    if (t->order->n < 15)
        t->order->tags[t->order->n++] = t->tag;
    return 0;
}

/* ======================================================================== */
/* wait_for                                                                  */
/* ======================================================================== */

START_TEST(test_wait_for_result_before_deadline)
{
    aev_loop_t *loop = tu_loop_new();
    destroyed = 0;
    aev_future_t *fut = new_future(loop);
    int *value = malloc(sizeof *value);
    ck_assert_ptr_nonnull(value);
    *value = 42;
    completer_t c = {.kind = DO_RESULT, .value = value, .destroy = free_destroy};
    complete_later(loop, &c, fut, 0.05);

    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 10.0, &out), 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_ne(out, fut);
    ck_assert_int_eq(aev_future_done(out), 0);
    aev_future_unref(fut); /* the caller lets go of the inner future at once */

    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
    ck_assert_int_eq(c.fired, 1);
    ck_assert_int_eq(c.rc, 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(out, &v), 0);
    ck_assert_ptr_eq(v, value); /* the same pointer, still valid: the inner is kept alive */
    ck_assert_int_eq(*(int *)v, 42);
    drain(loop);
    ck_assert_int_eq(destroyed, 0);
    aev_future_unref(out); /* the last holder of the value: the inner goes, and its value */
    ck_assert_int_eq(destroyed, 1);
    completer_done(&c);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_timeout_cancels_inner)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = new_future(loop);
    static int value = 7;
    completer_t late = {.kind = DO_RESULT, .value = &value};
    complete_later(loop, &late, fut, 0.5); /* after the deadline */

    double t0 = aev_loop_time(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 0.05, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), -ETIMEDOUT);
    double elapsed = aev_loop_time(loop) - t0;
    ck_assert_msg(elapsed >= 0.04, "timed out after %.3f s, before the deadline", elapsed);
    ck_assert_int_eq(late.fired, 0);
    ck_assert_int_eq(aev_future_cancelled(fut), 1); /* asyncio cancels the inner future */
    ck_assert_int_eq(aev_future_cancelled(out), 0);
    ck_assert_int_eq(aev_future_error(out), -ETIMEDOUT);
    ck_assert_ptr_nonnull(aev_future_error_detail(out));

    /* The late completion finds the inner future done already. */
    ck_assert_int_eq(tu_run_guarded(loop, 0.8), 1);
    ck_assert_int_eq(late.fired, 1);
    ck_assert_int_eq(late.rc, AEV_EINVALID_STATE);
    aev_future_unref(fut);
    aev_future_unref(out);
    ck_assert_int_eq(exc.count, 0);
    completer_done(&late);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_inner_error)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = new_future(loop);
    completer_t c = {.kind = DO_ERROR, .error = -ECONNRESET, .text = "peer went away"};
    complete_later(loop, &c, fut, 0.01);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 10.0, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), -ECONNRESET);
    ck_assert_str_eq(aev_future_error_detail(out), "peer went away");
    ck_assert_int_eq(aev_future_cancelled(fut), 0);
    drain(loop);
    aev_future_unref(fut); /* its error was passed on: not reported as never retrieved */
    aev_future_unref(out);
    ck_assert_int_eq(exc.count, 0);
    completer_done(&c);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_inner_cancelled)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    completer_t c = {.kind = DO_CANCEL, .text = "someone else"};
    complete_later(loop, &c, fut, 0.01);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 10.0, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_cancelled(out), 1); /* not a timeout */
    ck_assert_str_eq(aev_future_error_detail(out), "someone else");
    drain(loop);
    aev_future_unref(fut);
    aev_future_unref(out);
    completer_done(&c);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_outer_cancel_cancels_inner)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 10.0, &out), 0);
    ck_assert_int_eq(aev_future_cancel(out, "give up"), 1);
    ck_assert_int_eq(aev_future_done(fut), 0); /* propagated by out's done callback */
    drain(loop);
    ck_assert_int_eq(aev_future_cancelled(fut), 1);
    ck_assert_str_eq(aev_future_error_detail(fut), "give up");
    ck_assert_int_eq(aev_future_cancelled(out), 1);
    aev_future_unref(fut);
    aev_future_unref(out);
    tu_loop_free(loop); /* the deadline timer was cancelled: nothing left behind */
}
END_TEST

START_TEST(test_wait_for_already_done)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    destroyed = 0;
    static int value = 3;
    const double timeouts[] = {-1.0, 0.0, 5.0};
    for (size_t i = 0; i < 3; i++) {
        aev_future_t *fut = new_future(loop);
        ck_assert_int_eq(aev_future_set_result(fut, &value, count_destroy), 0);
        aev_future_t *out = NULL;
        ck_assert_int_eq(aev_future_wait_for(fut, timeouts[i], &out), 0);
        ck_assert_int_eq(aev_future_done(out), 1); /* at once: asyncio does not suspend */
        void *v = NULL;
        ck_assert_int_eq(aev_future_result(out, &v), 0);
        ck_assert_ptr_eq(v, &value);
        ck_assert_int_eq(aev_future_cancelled(fut), 0);
        aev_future_unref(fut);
        ck_assert_int_eq(destroyed, (int)i); /* out keeps fut (and its value) alive */
        aev_future_unref(out);
        ck_assert_int_eq(destroyed, (int)i + 1);

        aev_future_t *bad = new_future(loop);
        ck_assert_int_eq(aev_future_set_error(bad, -EPIPE, "broken"), 0);
        ck_assert_int_eq(aev_future_wait_for(bad, timeouts[i], &out), 0);
        ck_assert_int_eq(aev_future_result(out, NULL), -EPIPE);
        ck_assert_str_eq(aev_future_error_detail(out), "broken");
        aev_future_unref(out);
        aev_future_unref(bad);
    }
    drain(loop);
    ck_assert_int_eq(exc.count, 0);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_zero_timeout_pending)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 0.0, &out), 0);
    ck_assert_int_eq(aev_future_cancelled(fut), 1); /* cancelled at once */
    ck_assert_int_eq(aev_future_done(out), 0);      /* TimeoutError once the cancel is seen */
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), -ETIMEDOUT);
    drain(loop);
    aev_future_unref(fut);
    aev_future_unref(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_no_timeout)
{
    aev_loop_t *loop = tu_loop_new();
    const double timeouts[] = {-1.0, INFINITY};
    for (size_t i = 0; i < 2; i++) {
        aev_future_t *fut = new_future(loop);
        static int value = 9;
        completer_t c = {.kind = DO_RESULT, .value = &value};
        complete_later(loop, &c, fut, 0.1);
        aev_future_t *out = NULL;
        ck_assert_int_eq(aev_future_wait_for(fut, timeouts[i], &out), 0);
        ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
        void *v = NULL;
        ck_assert_int_eq(aev_future_result(out, &v), 0);
        ck_assert_ptr_eq(v, &value);
        drain(loop);
        aev_future_unref(fut);
        aev_future_unref(out);
        completer_done(&c);
    }
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_early_release)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);

    /* Times out with nobody holding anything: the TimeoutError is reported when the outer
     * future goes, as an unawaited failed task is in asyncio. */
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 0.02, &out), 0);
    aev_future_unref(out);
    aev_future_unref(fut);

    /* Completes with a heap value with nobody holding anything: freed, no report. */
    destroyed = 0;
    aev_future_t *fut2 = new_future(loop);
    int *value = malloc(sizeof *value);
    ck_assert_ptr_nonnull(value);
    completer_t c = {.kind = DO_RESULT, .value = value, .destroy = free_destroy};
    complete_later(loop, &c, fut2, 0.01);
    ck_assert_int_eq(aev_future_wait_for(fut2, 10.0, &out), 0);
    aev_future_unref(out);
    aev_future_unref(fut2);

    ck_assert_int_eq(tu_run_guarded(loop, 0.5), 1);
    ck_assert_int_eq(c.fired, 1);
    ck_assert_int_eq(destroyed, 1);
    ck_assert_int_eq(exc.count, 1);
    ck_assert_int_eq(exc.records[0].error, -ETIMEDOUT);
    completer_done(&c);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = (aev_future_t *)0x1;
    ck_assert_int_eq(aev_future_wait_for(fut, NAN, &out), -EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "NaN"));
    out = (aev_future_t *)0x1;
    ck_assert_int_eq(aev_future_wait_for(NULL, 1.0, &out), -EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(aev_future_wait_for(fut, 1.0, NULL), -EINVAL);
    ck_assert_int_eq(aev_future_done(fut), 0);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_for_closed_loop)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait_for(fut, 1.0, &out), AEV_ECLOSED);
    ck_assert_ptr_null(out);
    aev_future_unref(fut);
    aev_loop_free(loop);
}
END_TEST

/* ======================================================================== */
/* gather                                                                    */
/* ======================================================================== */

START_TEST(test_gather_results)
{
    aev_loop_t *loop = tu_loop_new();
    order_t order = {0};
    aev_future_t *kids[3];
    completer_t c[3];
    static int values[3] = {10, 20, 30};
    const double delays[3] = {0.06, 0.0, 0.03}; /* completion order: 1, 2, 0 */
    tagged_t tags[4];
    for (int i = 0; i < 3; i++) {
        kids[i] = new_future(loop);
        c[i] = (completer_t){.kind = DO_RESULT, .value = &values[i]};
        complete_later(loop, &c[i], kids[i], delays[i]);
        tags[i] = (tagged_t){&order, (char)('a' + i)};
        ck_assert_int_eq(aev_future_add_done_callback(kids[i], record_done, &tags[i]), 0);
    }
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 3, 0, &out), 0);
    tags[3] = (tagged_t){&order, 'G'};
    ck_assert_int_eq(aev_future_add_done_callback(out, record_done, &tags[3]), 0);
    ck_assert_int_eq(aev_future_done(out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
    void *v = (void *)0x1;
    ck_assert_int_eq(aev_future_result(out, &v), 0);
    ck_assert_ptr_null(v); /* the results are read from the children */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(aev_future_result(kids[i], &v), 0);
        ck_assert_ptr_eq(v, &values[i]);
    }
    drain(loop);
    order.tags[order.n] = '\0';
    ck_assert_str_eq(order.tags, "bcaG"); /* out completes after the last child */
    for (int i = 0; i < 3; i++) {
        aev_future_unref(kids[i]);
        completer_done(&c[i]);
    }
    aev_future_unref(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_first_error_at_once)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *a = new_future(loop), *b = new_future(loop), *d = new_future(loop);
    aev_future_t *kids[3] = {a, b, d};
    completer_t cb_ = {.kind = DO_ERROR, .error = -EIO, .text = "disk"};
    completer_t ca = {.kind = DO_RESULT};
    completer_t cd = {.kind = DO_ERROR, .error = -EPIPE, .text = "second error"};
    complete_later(loop, &cb_, b, 0.0);
    complete_later(loop, &ca, a, 0.1);
    complete_later(loop, &cd, d, 0.15);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 3, 0, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), -EIO);
    ck_assert_str_eq(aev_future_error_detail(out), "disk");
    /* the others keep running, they are not cancelled */
    ck_assert_int_eq(aev_future_done(a), 0);
    ck_assert_int_eq(aev_future_done(d), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 0.5), 1);
    ck_assert_int_eq(ca.fired && cd.fired, 1);
    ck_assert_int_eq(aev_future_cancelled(a), 0);
    ck_assert_int_eq(aev_future_result(a, NULL), 0);
    ck_assert_int_eq(aev_future_result(out, NULL), -EIO); /* the first error stays */
    aev_future_unref(a);
    aev_future_unref(b);
    aev_future_unref(d); /* gather read its error: not reported as never retrieved */
    aev_future_unref(out);
    ck_assert_int_eq(exc.count, 0);
    completer_done(&ca);
    completer_done(&cb_);
    completer_done(&cd);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_return_exceptions)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *kids[3];
    for (int i = 0; i < 3; i++)
        kids[i] = new_future(loop);
    completer_t c0 = {.kind = DO_ERROR, .error = -EIO};
    completer_t c1 = {.kind = DO_CANCEL, .text = "child cancelled"};
    completer_t c2 = {.kind = DO_RESULT};
    complete_later(loop, &c0, kids[0], 0.0);
    complete_later(loop, &c1, kids[1], 0.02);
    complete_later(loop, &c2, kids[2], 0.05);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 3, 1, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
    ck_assert_int_eq(c2.fired, 1); /* only once all are done */
    ck_assert_int_eq(aev_future_result(kids[0], NULL), -EIO);
    ck_assert_int_eq(aev_future_result(kids[1], NULL), AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_result(kids[2], NULL), 0);
    drain(loop);
    for (int i = 0; i < 3; i++)
        aev_future_unref(kids[i]);
    aev_future_unref(out);
    ck_assert_int_eq(exc.count, 0);
    completer_done(&c0);
    completer_done(&c1);
    completer_done(&c2);

    /* Unread errors of children are "returned" by gather: read, so never reported. */
    aev_future_t *e1 = new_future(loop), *e2 = new_future(loop);
    aev_future_t *both[2] = {e1, e2};
    ck_assert_int_eq(aev_future_gather(loop, both, 2, 1, &out), 0);
    ck_assert_int_eq(aev_future_set_error(e1, -EIO, NULL), 0);
    ck_assert_int_eq(aev_future_set_error(e2, -EBADF, NULL), 0);
    aev_future_unref(e1);
    aev_future_unref(e2);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
    aev_future_unref(out);
    drain(loop);
    ck_assert_int_eq(exc.count, 0);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_child_cancelled)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *a = new_future(loop), *b = new_future(loop);
    aev_future_t *kids[2] = {a, b};
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 2, 0, &out), 0);
    ck_assert_int_eq(aev_future_cancel(b, "b stops"), 1);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), AEV_ECANCELLED);
    ck_assert_str_eq(aev_future_error_detail(out), "b stops");
    ck_assert_int_eq(aev_future_done(a), 0); /* the sibling is not cancelled */
    ck_assert_int_eq(aev_future_set_result(a, NULL, NULL), 0);
    drain(loop);
    aev_future_unref(a);
    aev_future_unref(b);
    aev_future_unref(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_outer_cancel)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *kids[3];
    for (int i = 0; i < 3; i++)
        kids[i] = new_future(loop);
    ck_assert_int_eq(aev_future_set_result(kids[1], NULL, NULL), 0);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 3, 1, &out), 0);
    ck_assert_int_eq(aev_future_cancel(out, "stop all"), 1);
    drain(loop);
    ck_assert_int_eq(aev_future_cancelled(kids[0]), 1);
    ck_assert_str_eq(aev_future_error_detail(kids[0]), "stop all");
    ck_assert_int_eq(aev_future_cancelled(kids[1]), 0); /* done already: untouched */
    ck_assert_int_eq(aev_future_cancelled(kids[2]), 1);
    ck_assert_int_eq(aev_future_cancelled(out), 1);
    for (int i = 0; i < 3; i++)
        aev_future_unref(kids[i]);
    aev_future_unref(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_zero)
{
    aev_loop_t *loop = tu_loop_new();
    for (int re = 0; re < 2; re++) {
        aev_future_t *out = NULL;
        ck_assert_int_eq(aev_future_gather(loop, NULL, 0, re, &out), 0);
        ck_assert_int_eq(aev_future_done(out), 1);
        void *v = (void *)0x1;
        ck_assert_int_eq(aev_future_result(out, &v), 0);
        ck_assert_ptr_null(v);
        aev_future_unref(out);
    }
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_already_done)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *a = new_future(loop), *b = new_future(loop), *c = new_future(loop);
    ck_assert_int_eq(aev_future_set_result(a, NULL, NULL), 0);
    ck_assert_int_eq(aev_future_set_result(b, NULL, NULL), 0);
    aev_future_t *ab[2] = {a, b};
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, ab, 2, 0, &out), 0);
    ck_assert_int_eq(aev_future_done(out), 1); /* complete when gather returns, as CPython */
    ck_assert_int_eq(aev_future_result(out, NULL), 0);
    aev_future_unref(out);

    /* A failed child among pending ones: out fails before gather returns. */
    ck_assert_int_eq(aev_future_set_error(c, -ENOENT, "missing"), 0);
    aev_future_t *d = new_future(loop);
    aev_future_t *dc[2] = {d, c};
    ck_assert_int_eq(aev_future_gather(loop, dc, 2, 0, &out), 0);
    ck_assert_int_eq(aev_future_done(out), 1);
    ck_assert_int_eq(aev_future_result(out, NULL), -ENOENT);
    ck_assert_str_eq(aev_future_error_detail(out), "missing");
    ck_assert_int_eq(aev_future_done(d), 0);
    aev_future_unref(out);
    ck_assert_int_eq(aev_future_set_result(d, NULL, NULL), 0); /* releases the gather */
    drain(loop);
    aev_future_unref(a);
    aev_future_unref(b);
    aev_future_unref(c);
    aev_future_unref(d);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_duplicates)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *a = new_future(loop), *b = new_future(loop);
    aev_future_t *kids[4] = {a, b, a, a};
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 4, 0, &out), 0);
    ck_assert_int_eq(aev_future_set_result(a, NULL, NULL), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 0); /* a counts once: b is still pending */
    ck_assert_int_eq(aev_future_set_result(b, NULL, NULL), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 1);
    ck_assert_int_eq(aev_future_result(out, NULL), 0);
    aev_future_unref(out);

    /* Many children with duplicates (the sorted path): each counts once. */
    enum { N = 100 };
    aev_future_t *many[N];
    aev_future_t *distinct[10];
    for (int i = 0; i < 10; i++)
        distinct[i] = new_future(loop);
    for (int i = 0; i < N; i++)
        many[i] = distinct[(i * 7) % 10];
    ck_assert_int_eq(aev_future_gather(loop, many, N, 0, &out), 0);
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(aev_future_set_result(distinct[i], NULL, NULL), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 0);
    ck_assert_int_eq(aev_future_set_result(distinct[9], NULL, NULL), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 1);
    aev_future_unref(out);
    for (int i = 0; i < 10; i++)
        aev_future_unref(distinct[i]);
    aev_future_unref(a);
    aev_future_unref(b);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_other_loop_refused)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_t *other = tu_loop_new();
    aev_future_t *a = new_future(loop), *x = new_future(other);
    aev_future_t *kids[2] = {a, x};
    aev_future_t *out = (aev_future_t *)0x1;
    ck_assert_int_eq(aev_future_gather(loop, kids, 2, 0, &out), -EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "another event loop"));
    aev_future_t *withnull[2] = {a, NULL};
    ck_assert_int_eq(aev_future_gather(loop, withnull, 2, 0, &out), -EINVAL);
    ck_assert_int_eq(aev_future_gather(loop, NULL, 2, 0, &out), -EINVAL);
    ck_assert_int_eq(aev_future_gather(NULL, kids, 1, 0, &out), -EINVAL);
    ck_assert_int_eq(aev_future_gather(loop, kids, 1, 0, NULL), -EINVAL);
    ck_assert_int_eq(aev_future_done(a), 0); /* nothing was touched */
    aev_future_unref(a);
    aev_future_unref(x);
    tu_loop_free(other);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_gather_early_release)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *kids[2] = {new_future(loop), new_future(loop)};
    completer_t c0 = {.kind = DO_RESULT}, c1 = {.kind = DO_RESULT};
    complete_later(loop, &c0, kids[0], 0.01);
    complete_later(loop, &c1, kids[1], 0.03);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_gather(loop, kids, 2, 0, &out), 0);
    aev_future_unref(out);
    aev_future_unref(kids[0]);
    aev_future_unref(kids[1]);
    ck_assert_int_eq(tu_run_guarded(loop, 0.3), 1);
    ck_assert_int_eq(c0.fired && c1.fired, 1);
    ck_assert_int_eq(exc.count, 0);
    completer_done(&c0);
    completer_done(&c1);
    tu_loop_free(loop); /* valgrind / ASan: nothing leaked */
}
END_TEST

/* ======================================================================== */
/* shield                                                                    */
/* ======================================================================== */

START_TEST(test_shield_result)
{
    aev_loop_t *loop = tu_loop_new();
    destroyed = 0;
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_shield(fut, &out), 0);
    ck_assert_ptr_ne(out, fut);
    int *value = malloc(sizeof *value);
    ck_assert_ptr_nonnull(value);
    *value = 5;
    ck_assert_int_eq(aev_future_set_result(fut, value, free_destroy), 0);
    aev_future_unref(fut);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(out, &v), 0);
    ck_assert_ptr_eq(v, value);
    ck_assert_int_eq(*(int *)v, 5);
    drain(loop);
    ck_assert_int_eq(destroyed, 0);
    aev_future_unref(out);
    ck_assert_int_eq(destroyed, 1);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_shield_outer_cancel_spares_inner)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_shield(fut, &out), 0);
    ck_assert_int_eq(aev_future_cancel(out, "not you"), 1);
    drain(loop);
    ck_assert_int_eq(aev_future_done(fut), 0); /* the shielded future goes on */
    static int value = 1;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_cancelled(out), 1);
    ck_assert_int_eq(aev_future_result(fut, NULL), 0);
    aev_future_unref(fut);
    aev_future_unref(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_shield_inner_cancel_and_error)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_shield(fut, &out), 0);
    ck_assert_int_eq(aev_future_cancel(fut, "inner gone"), 1);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_cancelled(out), 1);
    ck_assert_str_eq(aev_future_error_detail(out), "inner gone");
    aev_future_unref(fut);
    aev_future_unref(out);

    fut = new_future(loop);
    ck_assert_int_eq(aev_future_shield(fut, &out), 0);
    ck_assert_int_eq(aev_future_set_error(fut, -EACCES, "denied"), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), -EACCES);
    ck_assert_str_eq(aev_future_error_detail(out), "denied");
    drain(loop);
    aev_future_unref(fut);
    aev_future_unref(out);
    ck_assert_int_eq(exc.count, 0);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_shield_already_done)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_future_set_result(fut, NULL, NULL), 0);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_shield(fut, &out), 0);
    ck_assert_ptr_eq(out, fut); /* asyncio returns the inner future itself */
    aev_future_unref(out);
    ck_assert_int_eq(aev_future_done(fut), 1);
    aev_future_unref(fut);
    ck_assert_int_eq(aev_future_shield(NULL, &out), -EINVAL);
    ck_assert_ptr_null(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_shield_early_release)
{
    aev_loop_t *loop = tu_loop_new();
    destroyed = 0;
    aev_future_t *fut = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_shield(fut, &out), 0);
    aev_future_unref(out); /* the shield is dropped; the inner is still ours */
    drain(loop);
    static int value = 2;
    ck_assert_int_eq(aev_future_set_result(fut, &value, count_destroy), 0);
    drain(loop);
    ck_assert_int_eq(destroyed, 0);
    aev_future_unref(fut);
    ck_assert_int_eq(destroyed, 1); /* out (mirroring value) is gone too: nothing kept */
    tu_loop_free(loop);
}
END_TEST

/* ======================================================================== */
/* wait                                                                      */
/* ======================================================================== */

START_TEST(test_wait_all_completed)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *kids[3];
    completer_t c[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = new_future(loop);
        c[i] = (completer_t){.kind = i == 1 ? DO_ERROR : DO_RESULT, .error = -EIO};
        complete_later(loop, &c[i], kids[i], 0.02 * i);
    }
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait(loop, kids, 3, -1.0, AEV_WAIT_ALL_COMPLETED, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0); /* errors do not stop it */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(aev_future_done(kids[i]), 1);
    ck_assert_int_eq(aev_future_result(kids[1], NULL), -EIO);
    drain(loop);
    for (int i = 0; i < 3; i++) {
        aev_future_unref(kids[i]);
        completer_done(&c[i]);
    }
    aev_future_unref(out);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_first_completed)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *a = new_future(loop), *b = new_future(loop);
    aev_future_t *kids[2] = {a, b};
    completer_t cb_ = {.kind = DO_RESULT};
    complete_later(loop, &cb_, b, 0.02);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait(loop, kids, 2, 10.0, AEV_WAIT_FIRST_COMPLETED, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0);
    ck_assert_int_eq(aev_future_done(b), 1);
    ck_assert_int_eq(aev_future_done(a), 0); /* wait never cancels */
    ck_assert_int_eq(aev_future_set_result(a, NULL, NULL), 0);
    drain(loop);
    aev_future_unref(a);
    aev_future_unref(b);
    aev_future_unref(out);
    completer_done(&cb_);

    /* A future done already: the wait ends on the next iteration (callbacks, not at once). */
    a = new_future(loop);
    b = new_future(loop);
    ck_assert_int_eq(aev_future_set_result(a, NULL, NULL), 0);
    aev_future_t *ab[2] = {a, b};
    ck_assert_int_eq(aev_future_wait(loop, ab, 2, -1.0, AEV_WAIT_FIRST_COMPLETED, &out), 0);
    ck_assert_int_eq(aev_future_done(out), 0);
    tu_run_once(loop);
    ck_assert_int_eq(aev_future_done(out), 1);
    aev_future_unref(out);
    aev_future_unref(a);
    aev_future_unref(b); /* never completed: the wait let go of it already */
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_first_exception)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *k[4];
    for (int i = 0; i < 4; i++)
        k[i] = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait(loop, k, 4, -1.0, AEV_WAIT_FIRST_EXCEPTION, &out), 0);
    ck_assert_int_eq(aev_future_set_result(k[0], NULL, NULL), 0);
    ck_assert_int_eq(aev_future_cancel(k[1], NULL), 1); /* cancelled is not an exception */
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 0);
    ck_assert_int_eq(aev_future_set_error(k[2], -EIO, NULL), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 1);
    ck_assert_int_eq(aev_future_result(out, NULL), 0);
    ck_assert_int_eq(aev_future_done(k[3]), 0);
    aev_future_unref(out);

    /* No exception at all: ends when all are done. */
    ck_assert_int_eq(aev_future_wait(loop, k, 2, -1.0, AEV_WAIT_FIRST_EXCEPTION, &out), 0);
    drain(loop);
    ck_assert_int_eq(aev_future_done(out), 1);
    aev_future_unref(out);
    for (int i = 0; i < 4; i++)
        aev_future_unref(k[i]);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_timeout)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *a = new_future(loop), *b = new_future(loop);
    ck_assert_int_eq(aev_future_set_result(b, NULL, NULL), 0);
    aev_future_t *kids[2] = {a, b};
    aev_future_t *out = NULL;
    double t0 = aev_loop_time(loop);
    ck_assert_int_eq(aev_future_wait(loop, kids, 2, 0.05, AEV_WAIT_ALL_COMPLETED, &out), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, out), 0); /* no TimeoutError */
    ck_assert_msg(aev_loop_time(loop) - t0 >= 0.04, "ended before the timeout");
    ck_assert_int_eq(aev_future_done(a), 0); /* not cancelled */
    ck_assert_int_eq(aev_future_done(b), 1);
    aev_future_unref(out);
    drain(loop);
    aev_future_unref(a);
    aev_future_unref(b);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_outer_cancel_and_early_release)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *a = new_future(loop);
    aev_future_t *out = NULL;
    ck_assert_int_eq(aev_future_wait(loop, &a, 1, 10.0, AEV_WAIT_ALL_COMPLETED, &out), 0);
    ck_assert_int_eq(aev_future_cancel(out, NULL), 1);
    drain(loop);
    ck_assert_int_eq(aev_future_done(a), 0); /* the children are left alone */
    aev_future_unref(out);

    /* Dropped at once: the timeout still ends it and frees everything. */
    ck_assert_int_eq(aev_future_wait(loop, &a, 1, 0.01, AEV_WAIT_ALL_COMPLETED, &out), 0);
    aev_future_unref(out);
    ck_assert_int_eq(tu_run_guarded(loop, 0.2), 1);
    aev_future_unref(a);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wait_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_t *other = tu_loop_new();
    aev_future_t *a = new_future(loop), *x = new_future(other);
    aev_future_t *kids[2] = {a, x};
    aev_future_t *out = (aev_future_t *)0x1;
    ck_assert_int_eq(aev_future_wait(loop, kids, 0, -1.0, 0, &out), -EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "empty"));
    ck_assert_int_eq(aev_future_wait(loop, kids, 1, -1.0, 3, &out), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "return_when"));
    ck_assert_int_eq(aev_future_wait(loop, kids, 1, NAN, 0, &out), -EINVAL);
    ck_assert_int_eq(aev_future_wait(loop, kids, 2, -1.0, 0, &out), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "another event loop"));
    ck_assert_ptr_null(out);
    aev_future_unref(a);
    aev_future_unref(x);
    tu_loop_free(other);
    tu_loop_free(loop);
}
END_TEST

/* ======================================================================== */
/* shared values across loops in threads                                     */
/* ======================================================================== */

/* The same value pointer shared by outer futures of two loops, each run by its own thread:
 * every outer future keeps its own loop's inner future alive, and releasing it in its thread
 * releases only that loop's futures (ASan/TSan/valgrind check the bookkeeping). */
static int shared_value = 11;

typedef struct thread_run {
    int iterations;
    int ok;
} thread_run_t;

static void thread_destroy(void *value)
{
    (void)value; /* a static value: nothing to free, but the inner owns it */
}

static void *helpers_thread(void *arg)
{
    thread_run_t *t = arg;
    aev_loop_t *loop = NULL;
    if (aev_loop_new(NULL, &loop) != 0)
        return NULL;
    for (int i = 0; i < t->iterations; i++) {
        aev_future_t *fut = NULL, *a = NULL, *b = NULL;
        if (aev_loop_create_future(loop, &fut) != 0)
            break;
        if (aev_future_wait_for(fut, 10.0, &a) != 0 || aev_future_shield(fut, &b) != 0)
            break;
        aev_future_set_result(fut, &shared_value, thread_destroy);
        aev_future_unref(fut);
        void *va = NULL, *vb = NULL;
        int ra = aev_loop_run_until_complete(loop, a);
        int rb = aev_loop_run_until_complete(loop, b);
        aev_future_result(a, &va);
        aev_future_result(b, &vb);
        if (ra == 0 && rb == 0 && va == &shared_value && vb == &shared_value)
            t->ok++;
        aev_future_unref(a);
        aev_future_unref(b);
    }
    aev_loop_close(loop);
    aev_loop_free(loop);
    return NULL;
}

START_TEST(test_shared_value_in_threads)
{
    thread_run_t runs[2] = {{.iterations = 200}, {.iterations = 200}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, helpers_thread, &runs[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(runs[i].ok, runs[i].iterations);
}
END_TEST


static Suite *helpers_suite(void)
{
    Suite *s = suite_create("future_helpers");
    TU_ADD(s, test_wait_for_result_before_deadline);
    TU_ADD(s, test_wait_for_timeout_cancels_inner);
    TU_ADD(s, test_wait_for_inner_error);
    TU_ADD(s, test_wait_for_inner_cancelled);
    TU_ADD(s, test_wait_for_outer_cancel_cancels_inner);
    TU_ADD(s, test_wait_for_already_done);
    TU_ADD(s, test_wait_for_zero_timeout_pending);
    TU_ADD(s, test_wait_for_no_timeout);
    TU_ADD(s, test_wait_for_early_release);
    TU_ADD(s, test_wait_for_bad_input);
    TU_ADD(s, test_wait_for_closed_loop);
    TU_ADD(s, test_gather_results);
    TU_ADD(s, test_gather_first_error_at_once);
    TU_ADD(s, test_gather_return_exceptions);
    TU_ADD(s, test_gather_child_cancelled);
    TU_ADD(s, test_gather_outer_cancel);
    TU_ADD(s, test_gather_zero);
    TU_ADD(s, test_gather_already_done);
    TU_ADD(s, test_gather_duplicates);
    TU_ADD(s, test_gather_other_loop_refused);
    TU_ADD(s, test_gather_early_release);
    TU_ADD(s, test_shield_result);
    TU_ADD(s, test_shield_outer_cancel_spares_inner);
    TU_ADD(s, test_shield_inner_cancel_and_error);
    TU_ADD(s, test_shield_already_done);
    TU_ADD(s, test_shield_early_release);
    TU_ADD(s, test_wait_all_completed);
    TU_ADD(s, test_wait_first_completed);
    TU_ADD(s, test_wait_first_exception);
    TU_ADD(s, test_wait_timeout);
    TU_ADD(s, test_wait_outer_cancel_and_early_release);
    TU_ADD(s, test_wait_bad_input);
    TU_ADD(s, test_shared_value_in_threads);
    return s;
}

TU_MAIN(helpers_suite)
