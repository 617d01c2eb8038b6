/* libaev conformance: tasks (asyncio.Task, loop.create_task, asyncio.sleep):
 * scheduling order, results and errors, awaiting futures and tasks, cancellation at
 * every kind of wait, never-retrieved task errors, thousands of tasks, names, contexts,
 * the task factory, all_tasks, shutdown at close, stack sizes. */
#include "test_util.h"

#include <inttypes.h>
#include <math.h>
#include <sys/resource.h>

/* ---- helpers ------------------------------------------------------------------ */

static aev_future_t *spawn(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn, void *arg)
{
    aev_future_t *task = NULL;
    int rc = aev_loop_create_task(loop, opts, fn, arg, &task);
    ck_assert_msg(rc == 0, "create_task: %d (%s): %s", rc, aev_err_name(rc), aev_error_detail());
    ck_assert_ptr_nonnull(task);
    return task;
}

static aev_future_t *new_future(aev_loop_t *loop)
{
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_ptr_nonnull(fut);
    return fut;
}

/* Runs the loop until task is done (run_until_complete), with a safety timer that cancels
 * the task after 20 s and fails the test then (a hang), rather than waiting for Check's
 * timeout. Returns run_until_complete's result. */
typedef struct {
    aev_future_t *task;
    int fired;
} hang_guard_t;

static int hang_guard_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    hang_guard_t *g = arg;
    g->fired = 1;
    aev_future_cancel(g->task, "test guard: the task hung");
    return 0;
}

static int run_task(aev_loop_t *loop, aev_future_t *task)
{
    hang_guard_t g = {.task = task};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, 20, hang_guard_cb, &g, &h), 0);
    int rc = aev_loop_run_until_complete(loop, task);
    aev_handle_cancel(h);
    aev_handle_unref(h);
    ck_assert_msg(!g.fired, "task %s hung (cancelled by the guard after 20 s)", aev_task_get_name(task));
    return rc;
}

/* An order log: each step appends one character. */
static char order[256];
static size_t norder;

static void rec(char c)
{
    ck_assert_uint_lt(norder, sizeof order - 1);
    order[norder++] = c;
    order[norder] = '\0';
}

static int rec_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    rec((char)(intptr_t)arg);
    return 0;
}

static int set_flag_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    *(int *)arg = 1;
    return 0;
}

typedef struct {
    aev_future_t *fut;
    void *value;
    int error;
    const char *msg;
    int ran;
} completer_t;

static int complete_result_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    completer_t *c = arg;
    c->ran = 1;
    ck_assert_int_eq(aev_future_set_result(c->fut, c->value, NULL), 0);
    return 0;
}

static int complete_error_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    completer_t *c = arg;
    c->ran = 1;
    ck_assert_int_eq(aev_future_set_error(c->fut, c->error, c->msg), 0);
    return 0;
}

static int cancel_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    completer_t *c = arg;
    c->ran = 1;
    ck_assert_int_eq(aev_future_cancel(c->fut, c->msg), 1);
    return 0;
}

/* An exception handler recording the task member too. */
typedef struct {
    int count;
    char message[8][160];
    int error[8];
    aev_future_t *task[8];
    aev_future_t *future[8];
    aev_handle_t *handle[8];
} exc_log_t;

static void exc_handler(aev_loop_t *loop, const aev_exception_context_t *ctx, void *ud)
{
    (void)loop;
    exc_log_t *x = ud;
    if (x->count < 8) {
        snprintf(x->message[x->count], sizeof x->message[0], "%s", ctx->message ? ctx->message : "");
        x->error[x->count] = ctx->error;
        x->task[x->count] = ctx->task;
        x->future[x->count] = ctx->future;
        x->handle[x->count] = ctx->handle;
    }
    x->count++;
}

static int V1, V2, V3;

/* ---- scheduling order ------------------------------------------------------------ */

static int order_task(aev_future_t *self, void *arg)
{
    char c = (char)(intptr_t)arg;
    ck_assert_ptr_eq(aev_task_current(), self);
    rec(c);
    if (c == 'A') {
        /* a callback scheduled from inside runs before A's own next step; a timer due at
         * once runs in the next iteration, after the callbacks ready when it starts: it
         * shows where one iteration ends (steps queued by yields wait for the next one) */
        ck_assert_int_eq(aev_loop_call_soon(aev_loop_get_running(), rec_cb, (void *)(intptr_t)'x', NULL), 0);
        ck_assert_int_eq(aev_loop_call_later(aev_loop_get_running(), 0, rec_cb, (void *)(intptr_t)'T', NULL), 0);
    }
    ck_assert_int_eq(aev_task_yield(), 0);
    rec(c);
    ck_assert_int_eq(aev_sleep(0), 0);
    rec(c);
    return aev_task_return(self, c == 'C' ? &V3 : &V1, NULL);
}

/* _i == 1: the same in debug mode (the loop runs steps through another path). */
START_TEST(test_scheduling_order)
{
    aev_loop_t *loop = tu_loop_new();
    if (_i == 1)
        aev_loop_set_debug(loop, 1);
    norder = 0;
    order[0] = '\0';
    ck_assert_int_eq(aev_loop_call_soon(loop, rec_cb, (void *)(intptr_t)'0', NULL), 0);
    aev_future_t *a = spawn(loop, NULL, order_task, (void *)(intptr_t)'A');
    aev_future_t *b = spawn(loop, NULL, order_task, (void *)(intptr_t)'B');
    aev_future_t *c = spawn(loop, NULL, order_task, (void *)(intptr_t)'C');
    ck_assert_int_eq(aev_loop_call_soon(loop, rec_cb, (void *)(intptr_t)'1', NULL), 0);
    /* create_task returns before the task runs */
    ck_assert_uint_eq(norder, 0);
    ck_assert_int_eq(aev_future_done(a), 0);
    ck_assert_int_eq(aev_future_is_task(a), 1);

    void *v = NULL;
    ck_assert_int_eq(run_task(loop, c), 0);
    ck_assert_str_eq(order, "0ABC1xABCTABC");
    ck_assert_int_eq(aev_future_result(c, &v), 0);
    ck_assert_ptr_eq(v, &V3);
    ck_assert_int_eq(aev_future_done(a), 1);
    ck_assert_int_eq(aev_future_done(b), 1);
    ck_assert_int_eq(aev_future_result(a, &v), 0);
    ck_assert_ptr_eq(v, &V1);
    /* run_until_complete on a task already done returns its outcome */
    ck_assert_int_eq(run_task(loop, a), 0);
    aev_future_unref(a);
    aev_future_unref(b);
    aev_future_unref(c);
    tu_loop_free(loop);
}
END_TEST

static int fail_eio_task(aev_future_t *self, void *arg)
{
    (void)self;
    (void)arg;
    return -EIO;
}

START_TEST(test_run_until_complete_returns_task_error)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t = spawn(loop, NULL, fail_eio_task, NULL);
    ck_assert_int_eq(run_task(loop, t), -EIO);
    ck_assert_int_eq(aev_future_error(t), -EIO);
    ck_assert_int_eq(aev_future_cancelled(t), 0);
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

/* ---- results and errors ------------------------------------------------------------ */

static int destroy_calls;
static void *destroy_last;

static void destroy_fn(void *value)
{
    destroy_calls++;
    destroy_last = value;
}

static int return_value_task(aev_future_t *self, void *arg)
{
    (void)arg;
    ck_assert_int_eq(aev_task_return(self, &V1, destroy_fn), 0);
    return 0;
}

START_TEST(test_result_and_destroy_once)
{
    destroy_calls = 0;
    destroy_last = NULL;
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t = spawn(loop, NULL, return_value_task, NULL);
    ck_assert_int_eq(run_task(loop, t), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_ptr_eq(v, &V1);
    ck_assert_int_eq(aev_future_error(t), 0);
    ck_assert_ptr_null(aev_future_error_detail(t));
    ck_assert_int_eq(destroy_calls, 0); /* we still hold the task */
    aev_future_unref(t);
    tu_loop_free(loop);
    ck_assert_int_eq(destroy_calls, 1);
    ck_assert_ptr_eq(destroy_last, &V1);
}
END_TEST

static int replace_value_task(aev_future_t *self, void *arg)
{
    (void)arg;
    ck_assert_int_eq(aev_task_return(self, &V1, destroy_fn), 0);
    ck_assert_int_eq(destroy_calls, 0);
    ck_assert_int_eq(aev_task_return(self, &V2, destroy_fn), 0); /* replaces: V1 destroyed */
    ck_assert_int_eq(destroy_calls, 1);
    ck_assert_ptr_eq(destroy_last, &V1);
    return 0;
}

START_TEST(test_result_replaced)
{
    destroy_calls = 0;
    destroy_last = NULL;
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t = spawn(loop, NULL, replace_value_task, NULL);
    ck_assert_int_eq(run_task(loop, t), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_ptr_eq(v, &V2);
    ck_assert_int_eq(destroy_calls, 1);
    aev_future_unref(t);
    tu_loop_free(loop);
    ck_assert_int_eq(destroy_calls, 2);
    ck_assert_ptr_eq(destroy_last, &V2);
}
END_TEST

static int value_then_fail_task(aev_future_t *self, void *arg)
{
    (void)arg;
    ck_assert_int_eq(aev_task_return(self, &V1, destroy_fn), 0);
    return aev_task_fail(self, -EPROTO, "bad header");
}

START_TEST(test_error_with_detail)
{
    destroy_calls = 0;
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t = spawn(loop, NULL, value_then_fail_task, NULL);
    ck_assert_int_eq(run_task(loop, t), -EPROTO);
    ck_assert_int_eq(aev_future_done(t), 1);
    ck_assert_int_eq(aev_future_cancelled(t), 0);
    ck_assert_int_eq(aev_future_error(t), -EPROTO);
    void *v = &V3;
    ck_assert_int_eq(aev_future_result(t, &v), -EPROTO);
    ck_assert_ptr_nonnull(aev_future_error_detail(t));
    ck_assert_str_eq(aev_future_error_detail(t), "bad header");
    aev_future_unref(t);
    tu_loop_free(loop);
    /* the value given before failing is not leaked: destroyed exactly once */
    ck_assert_int_eq(destroy_calls, 1);

    /* aev_task_fail returns the error it is given; outside a task it only returns it */
    ck_assert_int_eq(aev_task_fail(NULL, -EPROTO, "x"), -EPROTO);
    ck_assert_int_eq(aev_task_return(NULL, &V1, NULL), -EINVAL);
}
END_TEST

static int task_done_seen;
static int task_fn_finished;

static int task_done_cb(aev_future_t *fut, void *arg)
{
    (void)arg;
    ck_assert_int_eq(aev_future_done(fut), 1);
    ck_assert_int_eq(task_fn_finished, 1);
    ck_assert_ptr_null(aev_task_current()); /* done callbacks run on the loop, not in the task */
    task_done_seen++;
    return 0;
}

static int finish_flag_task(aev_future_t *self, void *arg)
{
    aev_future_t *plain = arg;
    /* a task refuses set_result / set_error even from inside */
    ck_assert_int_eq(aev_future_set_result(self, &V1, NULL), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_set_error(self, -EIO, NULL), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_is_task(plain), 0);
    ck_assert_int_eq(aev_sleep(0.01), 0);
    ck_assert_int_eq(task_done_seen, 0);
    task_fn_finished = 1;
    return aev_task_return(self, &V2, NULL);
}

START_TEST(test_task_is_a_future)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *plain = new_future(loop);
    task_done_seen = 0;
    task_fn_finished = 0;
    aev_future_t *t = spawn(loop, NULL, finish_flag_task, plain);
    ck_assert_int_eq(aev_future_is_task(t), 1);
    ck_assert_int_eq(aev_future_is_task(plain), 0);
    ck_assert_ptr_eq(aev_future_get_loop(t), loop);
    ck_assert_int_eq(aev_future_add_done_callback(t, task_done_cb, NULL), 0);
    ck_assert_int_eq(aev_future_set_result(t, &V1, NULL), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_result(t, NULL), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_error(t), AEV_EINVALID_STATE);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(task_done_seen, 1);
    ck_assert_int_eq(aev_future_set_result(t, &V1, NULL), AEV_EINVALID_STATE);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_ptr_eq(v, &V2);
    /* a done callback added after the end is scheduled at once */
    ck_assert_int_eq(aev_future_add_done_callback(t, task_done_cb, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(task_done_seen, 2);
    aev_future_unref(plain);
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

/* ---- await --------------------------------------------------------------------------- */

typedef struct {
    aev_future_t *fut;
    completer_t *comp;
    int rc;
    void *value;
    int other_ran;
    double elapsed;
} await_arg_t;

static int await_task(aev_future_t *self, void *arg)
{
    (void)self;
    await_arg_t *a = arg;
    a->value = &V3;
    a->rc = aev_await(a->fut, &a->value);
    if (a->comp)
        ck_assert_int_eq(a->comp->ran, 1); /* resumed only after the future completed */
    return a->rc;
}

START_TEST(test_await_pending_future)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    completer_t c = {.fut = fut, .value = &V2};
    await_arg_t a = {.fut = fut, .comp = &c, .rc = 99};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, complete_result_cb, &c, NULL), 0);
    aev_future_t *t = spawn(loop, NULL, await_task, &a);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_ptr_eq(a.value, &V2);
    aev_future_unref(t);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

static int await_done_task(aev_future_t *self, void *arg)
{
    (void)self;
    await_arg_t *a = arg;
    aev_loop_t *loop = aev_loop_get_running();
    ck_assert_ptr_nonnull(loop);
    ck_assert_int_eq(aev_loop_call_soon(loop, set_flag_cb, &a->other_ran, NULL), 0);
    a->rc = aev_await(a->fut, &a->value);
    /* the future was done: no suspension, so the callback queued above has not run */
    ck_assert_int_eq(a->other_ran, 0);
    ck_assert_int_eq(a->rc, 0);
    ck_assert_ptr_eq(a->value, &V1);
    /* a second await of the same done future: same outcome, still no suspension */
    void *v = NULL;
    ck_assert_int_eq(aev_await(a->fut, &v), 0);
    ck_assert_ptr_eq(v, &V1);
    ck_assert_int_eq(a->other_ran, 0);
    ck_assert_int_eq(aev_task_yield(), 0); /* a real suspension lets it run */
    ck_assert_int_eq(a->other_ran, 1);
    return 0;
}

START_TEST(test_await_done_future_does_not_suspend)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_future_set_result(fut, &V1, NULL), 0);
    await_arg_t a = {.fut = fut};
    aev_future_t *t = spawn(loop, NULL, await_done_task, &a);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(a.other_ran, 1);
    aev_future_unref(t);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_await_error_future)
{
    aev_loop_t *loop = tu_loop_new();
    exc_log_t x = {0};
    aev_loop_set_exception_handler(loop, exc_handler, &x);

    /* completed with an error while the task waits */
    aev_future_t *fut = new_future(loop);
    completer_t c = {.fut = fut, .error = -EPIPE, .msg = "pipe broke"};
    await_arg_t a = {.fut = fut, .comp = &c, .rc = 99};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, complete_error_cb, &c, NULL), 0);
    aev_future_t *t = spawn(loop, NULL, await_task, &a);
    ck_assert_int_eq(run_task(loop, t), -EPIPE);
    ck_assert_int_eq(a.rc, -EPIPE);
    ck_assert_ptr_null(a.value);
    ck_assert_str_eq(aev_future_error_detail(fut), "pipe broke");
    aev_future_unref(t);

    /* already failed before the await */
    aev_future_t *fut2 = new_future(loop);
    ck_assert_int_eq(aev_future_set_error(fut2, -ETIMEDOUT, NULL), 0);
    await_arg_t a2 = {.fut = fut2, .rc = 99};
    aev_future_t *t2 = spawn(loop, NULL, await_task, &a2);
    ck_assert_int_eq(run_task(loop, t2), -ETIMEDOUT);
    ck_assert_int_eq(a2.rc, -ETIMEDOUT);
    aev_future_unref(t2);

    /* the awaits retrieved both errors, and run_until_complete the tasks' */
    aev_future_unref(fut);
    aev_future_unref(fut2);
    tu_loop_free(loop);
    ck_assert_int_eq(x.count, 0);
}
END_TEST

static int await_catch_cancel_task(aev_future_t *self, void *arg)
{
    await_arg_t *a = arg;
    a->rc = aev_await(a->fut, &a->value);
    ck_assert_int_eq(a->rc, AEV_ECANCELLED);
    /* the task itself was not cancelled: it may go on and return a result */
    ck_assert_int_eq(aev_task_cancelling(self), 0);
    ck_assert_int_eq(aev_sleep(0.001), 0);
    return aev_task_return(self, &V2, NULL);
}

START_TEST(test_await_cancelled_future)
{
    aev_loop_t *loop = tu_loop_new();
    /* cancelled while waiting; the task propagates it and ends cancelled */
    aev_future_t *fut = new_future(loop);
    completer_t c = {.fut = fut, .msg = "fut cancelled"};
    await_arg_t a = {.fut = fut, .comp = &c, .rc = 99};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, cancel_cb, &c, NULL), 0);
    aev_future_t *t = spawn(loop, NULL, await_task, &a);
    ck_assert_int_eq(run_task(loop, t), AEV_ECANCELLED);
    ck_assert_int_eq(a.rc, AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_cancelled(t), 1);
    aev_future_unref(t);

    /* already cancelled; the task catches it and ends with a result */
    aev_future_t *fut2 = new_future(loop);
    ck_assert_int_eq(aev_future_cancel(fut2, NULL), 1);
    await_arg_t a2 = {.fut = fut2, .rc = 99};
    aev_future_t *t2 = spawn(loop, NULL, await_catch_cancel_task, &a2);
    ck_assert_int_eq(run_task(loop, t2), 0);
    ck_assert_int_eq(aev_future_cancelled(t2), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t2, &v), 0);
    ck_assert_ptr_eq(v, &V2);
    aev_future_unref(t2);
    aev_future_unref(fut);
    aev_future_unref(fut2);
    tu_loop_free(loop);
}
END_TEST

static int inner_task(aev_future_t *self, void *arg)
{
    int err = (int)(intptr_t)arg;
    ck_assert_int_eq(aev_sleep(0.01), 0);
    if (err)
        return aev_task_fail(self, err, "inner failed");
    return aev_task_return(self, &V1, NULL);
}

typedef struct {
    int inner_err;
    int rc;
    void *value;
    const char *detail_seen;
} outer_arg_t;

static int outer_task(aev_future_t *self, void *arg)
{
    outer_arg_t *o = arg;
    aev_future_t *inner = NULL;
    ck_assert_int_eq(aev_loop_create_task(aev_future_get_loop(self), NULL, inner_task,
                                          (void *)(intptr_t)o->inner_err, &inner), 0);
    o->rc = aev_await(inner, &o->value);
    ck_assert_int_eq(aev_future_done(inner), 1);
    if (o->rc < 0 && aev_future_error_detail(inner) &&
        strcmp(aev_future_error_detail(inner), "inner failed") == 0)
        o->detail_seen = "inner failed";
    aev_future_unref(inner);
    return 0;
}

START_TEST(test_await_task)
{
    aev_loop_t *loop = tu_loop_new();
    outer_arg_t o = {.rc = 99};
    aev_future_t *t = spawn(loop, NULL, outer_task, &o);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(o.rc, 0);
    ck_assert_ptr_eq(o.value, &V1);
    aev_future_unref(t);

    outer_arg_t o2 = {.inner_err = -ENOENT, .rc = 99};
    t = spawn(loop, NULL, outer_task, &o2);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(o2.rc, -ENOENT);
    ck_assert_ptr_null(o2.value);
    ck_assert_ptr_nonnull(o2.detail_seen);
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_future_t *foreign;
    aev_future_t *local;
    int cb_await_rc, cb_sleep_rc, cb_yield_rc;
    aev_future_t *cb_current;
} misuse_t;

static int misuse_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    misuse_t *m = arg;
    void *v = &V1;
    m->cb_await_rc = aev_await(m->local, &v);
    ck_assert_ptr_null(v);
    m->cb_sleep_rc = aev_sleep(0.01);
    m->cb_yield_rc = aev_task_yield();
    m->cb_current = aev_task_current();
    return 0;
}

static int misuse_task(aev_future_t *self, void *arg)
{
    misuse_t *m = arg;
    void *v = &V1;
    ck_assert_int_eq(aev_await(self, &v), -EINVAL);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(aev_await(NULL, &v), -EINVAL);
    ck_assert_int_eq(aev_await(m->foreign, &v), -EINVAL);
    ck_assert_int_eq(aev_future_done(m->foreign), 0);
    ck_assert_int_eq(aev_sleep(NAN), -EINVAL);
    /* still usable after the refusals */
    ck_assert_int_eq(aev_await(m->local, &v), 0);
    ck_assert_ptr_eq(v, &V2);
    return 0;
}

START_TEST(test_await_misuse)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_t *other = tu_loop_new();
    misuse_t m = {.cb_await_rc = 99, .cb_sleep_rc = 99, .cb_yield_rc = 99};
    m.cb_current = (aev_future_t *)&m; /* any non-NULL value: the callback overwrites it */
    m.foreign = new_future(other);
    m.local = new_future(loop);

    /* outside any task, loop not running */
    void *v = &V1;
    ck_assert_int_eq(aev_await(m.local, &v), AEV_ENOT_IN_TASK);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(aev_sleep(0.01), AEV_ENOT_IN_TASK);
    ck_assert_int_eq(aev_task_yield(), AEV_ENOT_IN_TASK);
    ck_assert_ptr_null(aev_task_current());

    /* from a plain callback while the loop runs */
    ck_assert_int_eq(aev_loop_call_soon(loop, misuse_cb, &m, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(m.cb_await_rc, AEV_ENOT_IN_TASK);
    ck_assert_int_eq(m.cb_sleep_rc, AEV_ENOT_IN_TASK);
    ck_assert_int_eq(m.cb_yield_rc, AEV_ENOT_IN_TASK);
    ck_assert_ptr_null(m.cb_current);

    ck_assert_int_eq(aev_future_set_result(m.local, &V2, NULL), 0);
    aev_future_t *t = spawn(loop, NULL, misuse_task, &m);
    ck_assert_int_eq(run_task(loop, t), 0);
    aev_future_unref(t);
    aev_future_unref(m.local);
    aev_future_unref(m.foreign);
    tu_loop_free(other);
    tu_loop_free(loop);
}
END_TEST

/* ---- cancellation ---------------------------------------------------------------------- */

typedef struct {
    aev_future_t *fut; /* awaited */
    int rc;
    double elapsed;
    int after; /* code after the wait ran */
    int count;
} cwait_t;

static int cancel_await_task(aev_future_t *self, void *arg)
{
    (void)self;
    cwait_t *w = arg;
    w->rc = aev_await(w->fut, NULL);
    w->after = 1;
    ck_assert_int_eq(aev_future_cancelled(w->fut), 1);
    return w->rc;
}

START_TEST(test_cancel_while_awaiting_future)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    cwait_t w = {.fut = fut, .rc = 99};
    aev_future_t *t = spawn(loop, NULL, cancel_await_task, &w);
    completer_t c = {.fut = t, .msg = "stop now"};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, cancel_cb, &c, NULL), 0);
    ck_assert_int_eq(run_task(loop, t), AEV_ECANCELLED);
    ck_assert_int_eq(w.rc, AEV_ECANCELLED);
    ck_assert_int_eq(w.after, 1);
    /* the awaited future was cancelled too, with the message */
    ck_assert_int_eq(aev_future_cancelled(fut), 1);
    ck_assert_ptr_nonnull(aev_future_error_detail(fut));
    ck_assert_str_eq(aev_future_error_detail(fut), "stop now");
    /* and the task ends cancelled, with the message */
    ck_assert_int_eq(aev_future_cancelled(t), 1);
    ck_assert_int_eq(aev_future_error(t), AEV_ECANCELLED);
    ck_assert_ptr_nonnull(aev_future_error_detail(t));
    ck_assert_str_eq(aev_future_error_detail(t), "stop now");
    ck_assert_int_eq(aev_task_cancelling(t), 1);
    aev_future_unref(t);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

static int cancel_sleep_task(aev_future_t *self, void *arg)
{
    (void)self;
    cwait_t *w = arg;
    double t0 = tu_now();
    w->rc = aev_sleep(3600);
    w->elapsed = tu_now() - t0;
    w->after = 1;
    return w->rc;
}

START_TEST(test_cancel_while_sleeping)
{
    aev_loop_t *loop = tu_loop_new();
    cwait_t w = {.rc = 99};
    aev_future_t *t = spawn(loop, NULL, cancel_sleep_task, &w);
    completer_t c = {.fut = t, .msg = "wake up"};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.05, cancel_cb, &c, NULL), 0);
    double t0 = tu_now();
    ck_assert_int_eq(run_task(loop, t), AEV_ECANCELLED);
    ck_assert_double_lt(tu_now() - t0, 2.0);
    ck_assert_int_eq(w.rc, AEV_ECANCELLED);
    ck_assert_int_eq(w.after, 1);
    ck_assert_double_lt(w.elapsed, 2.0);
    ck_assert_int_eq(c.ran, 1); /* woken by the cancellation, not by anything else */
    ck_assert_int_eq(aev_future_cancelled(t), 1);
    ck_assert_str_eq(aev_future_error_detail(t), "wake up");
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_future_t *victim;
    int yields;
    int rc;
} yielder_t;

static int yielder_task(aev_future_t *self, void *arg)
{
    (void)self;
    yielder_t *y = arg;
    for (;;) {
        y->yields++;
        y->rc = aev_task_yield();
        if (y->rc != 0 || y->yields > 1000)
            break;
    }
    return y->rc;
}

static int canceller_task(aev_future_t *self, void *arg)
{
    (void)self;
    yielder_t *y = arg;
    ck_assert_int_eq(aev_task_yield(), 0);
    ck_assert_int_eq(aev_task_yield(), 0);
    /* third step: the yielder has yielded 3 times and is scheduled again */
    ck_assert_int_eq(y->yields, 3);
    ck_assert_int_eq(aev_future_cancel(y->victim, NULL), 1);
    return 0;
}

START_TEST(test_cancel_while_yielding)
{
    aev_loop_t *loop = tu_loop_new();
    yielder_t y = {.rc = 99};
    aev_future_t *a = spawn(loop, NULL, yielder_task, &y);
    y.victim = a;
    aev_future_t *b = spawn(loop, NULL, canceller_task, &y);
    ck_assert_int_eq(run_task(loop, a), AEV_ECANCELLED);
    ck_assert_int_eq(y.rc, AEV_ECANCELLED);
    ck_assert_int_eq(y.yields, 3); /* the very next resume brought the cancellation */
    ck_assert_int_eq(aev_future_cancelled(a), 1);
    ck_assert_ptr_null(aev_future_error_detail(a));
    ck_assert_int_eq(run_task(loop, b), 0);
    aev_future_unref(a);
    aev_future_unref(b);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int fd;
    int rc;
    int started;
    char buf[64];
    size_t got;
    size_t want;
} sockwait_t;

static int cancel_recv_task(aev_future_t *self, void *arg)
{
    (void)self;
    sockwait_t *s = arg;
    s->started = 1;
    ssize_t r = aev_task_sock_recv(s->fd, s->buf, sizeof s->buf);
    s->rc = (int)r;
    return r < 0 ? (int)r : 0;
}

static int read_all_task(aev_future_t *self, void *arg)
{
    (void)self;
    sockwait_t *s = arg;
    while (s->got < s->want) {
        ssize_t r = aev_task_sock_recv(s->fd, s->buf + s->got, sizeof s->buf - s->got);
        if (r <= 0)
            return r < 0 ? (int)r : -EPIPE;
        s->got += (size_t)r;
    }
    return 0;
}

typedef struct {
    aev_future_t *task;
    int fd;
    const char *data;
} write_cancel_t;

static int write_and_cancel_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    write_cancel_t *wc = arg;
    tu_write(wc->fd, wc->data); /* data arrives, but the cancellation comes first */
    ck_assert_int_eq(aev_future_cancel(wc->task, "no more"), 1);
    return 0;
}

START_TEST(test_cancel_while_in_sock_recv)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    sockwait_t s = {.fd = sv[0], .rc = 99};
    aev_future_t *t = spawn(loop, NULL, cancel_recv_task, &s);
    /* let it start and block in recv */
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_int_eq(s.started, 1);
    ck_assert_int_eq(aev_future_done(t), 0);
    write_cancel_t wc = {.task = t, .fd = sv[1], .data = "abc"};
    ck_assert_int_eq(aev_loop_call_soon(loop, write_and_cancel_cb, &wc, NULL), 0);
    ck_assert_int_eq(run_task(loop, t), AEV_ECANCELLED);
    ck_assert_int_eq(s.rc, AEV_ECANCELLED);
    ck_assert_str_eq(aev_future_error_detail(t), "no more");
    aev_future_unref(t);

    /* nothing was taken from the socket: a new task receives every byte */
    tu_write(sv[1], "defgh");
    sockwait_t s2 = {.fd = sv[0], .want = 8};
    aev_future_t *t2 = spawn(loop, NULL, read_all_task, &s2);
    ck_assert_int_eq(run_task(loop, t2), 0);
    ck_assert_uint_eq(s2.got, 8);
    ck_assert_int_eq(memcmp(s2.buf, "abcdefgh", 8), 0);
    aev_future_unref(t2);
    close(sv[0]);
    close(sv[1]);
    tu_loop_free(loop);
}
END_TEST

static int never_run_count;

static int never_run_task(aev_future_t *self, void *arg)
{
    (void)self;
    (void)arg;
    never_run_count++;
    return 0;
}

START_TEST(test_cancel_before_first_step)
{
    aev_loop_t *loop = tu_loop_new();
    never_run_count = 0;
    aev_future_t *t = spawn(loop, NULL, never_run_task, NULL);
    ck_assert_int_eq(aev_future_cancel(t, "too soon"), 1);
    ck_assert_int_eq(aev_task_cancelling(t), 1);
    ck_assert_int_eq(aev_future_done(t), 0); /* the cancellation is delivered by a step */
    ck_assert_int_eq(run_task(loop, t), AEV_ECANCELLED);
    ck_assert_int_eq(never_run_count, 0);
    ck_assert_int_eq(aev_future_cancelled(t), 1);
    ck_assert_str_eq(aev_future_error_detail(t), "too soon");
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 0);
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

static int catch_cancel_task(aev_future_t *self, void *arg)
{
    cwait_t *w = arg;
    w->rc = aev_sleep(3600);
    ck_assert_int_eq(w->rc, AEV_ECANCELLED);
    ck_assert_int_eq(aev_task_cancelling(self), 1);
    /* the cancellation was consumed: waiting again works */
    ck_assert_int_eq(aev_sleep(0.005), 0);
    ck_assert_int_eq(aev_task_yield(), 0);
    w->after = 1;
    return aev_task_return(self, &V1, NULL);
}

START_TEST(test_task_catches_cancellation)
{
    aev_loop_t *loop = tu_loop_new();
    cwait_t w = {.rc = 99};
    aev_future_t *t = spawn(loop, NULL, catch_cancel_task, &w);
    completer_t c = {.fut = t};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, cancel_cb, &c, NULL), 0);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(w.after, 1);
    ck_assert_int_eq(aev_future_cancelled(t), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_ptr_eq(v, &V1);
    ck_assert_int_eq(aev_task_cancelling(t), 1); /* never uncancelled */
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

static int uncancel_task(aev_future_t *self, void *arg)
{
    cwait_t *w = arg;
    w->after = 1;
    ck_assert_int_eq(aev_task_cancelling(self), 0);
    /* the withdrawn requests are not delivered */
    w->rc = aev_sleep(0.01);
    ck_assert_int_eq(w->rc, 0);
    ck_assert_int_eq(aev_task_yield(), 0);
    /* a request made now, withdrawn by the task itself after it catches it */
    ck_assert_int_eq(aev_future_cancel(self, NULL), 1);
    ck_assert_int_eq(aev_task_cancelling(self), 1);
    ck_assert_int_eq(aev_sleep(0.01), AEV_ECANCELLED);
    ck_assert_int_eq(aev_task_uncancel(self), 0);
    ck_assert_int_eq(aev_sleep(0.001), 0);
    return aev_task_return(self, &V2, NULL);
}

START_TEST(test_cancelling_and_uncancel)
{
    aev_loop_t *loop = tu_loop_new();
    cwait_t w = {.rc = 99};
    aev_future_t *t = spawn(loop, NULL, uncancel_task, &w);
    ck_assert_int_eq(aev_task_cancelling(t), 0);
    ck_assert_int_eq(aev_future_cancel(t, NULL), 1);
    ck_assert_int_eq(aev_task_cancelling(t), 1);
    ck_assert_int_eq(aev_future_cancel(t, NULL), 1); /* a second request counts too */
    ck_assert_int_eq(aev_task_cancelling(t), 2);
    ck_assert_int_eq(aev_task_uncancel(t), 1);
    ck_assert_int_eq(aev_task_cancelling(t), 1);
    ck_assert_int_eq(aev_task_uncancel(t), 0);
    ck_assert_int_eq(aev_task_uncancel(t), 0); /* never below zero */
    ck_assert_int_eq(aev_task_cancelling(t), 0);
    /* all requests withdrawn before the first step: the task runs normally */
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(w.after, 1);
    ck_assert_int_eq(aev_future_cancelled(t), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_ptr_eq(v, &V2);
    /* on non-tasks: 0 */
    aev_future_t *plain = new_future(loop);
    ck_assert_int_eq(aev_task_cancelling(plain), 0);
    ck_assert_int_eq(aev_task_uncancel(plain), 0);
    aev_future_unref(plain);
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

static int self_cancel_task(aev_future_t *self, void *arg)
{
    cwait_t *w = arg;
    ck_assert_int_eq(aev_future_cancel(self, "by myself"), 1);
    ck_assert_int_eq(aev_future_done(self), 0);
    ck_assert_int_eq(aev_task_cancelling(self), 1);
    double t0 = tu_now();
    w->rc = aev_sleep(3600);
    w->elapsed = tu_now() - t0;
    return w->rc;
}

START_TEST(test_self_cancel)
{
    aev_loop_t *loop = tu_loop_new();
    cwait_t w = {.rc = 99};
    aev_future_t *t = spawn(loop, NULL, self_cancel_task, &w);
    ck_assert_int_eq(run_task(loop, t), AEV_ECANCELLED);
    ck_assert_int_eq(w.rc, AEV_ECANCELLED);
    ck_assert_double_lt(w.elapsed, 2.0);
    ck_assert_int_eq(aev_future_cancelled(t), 1);
    ck_assert_str_eq(aev_future_error_detail(t), "by myself");
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

static int cancel_late_task(aev_future_t *self, void *arg)
{
    (void)arg;
    /* cancelled after its last wait, and returns success: asyncio ends it cancelled */
    ck_assert_int_eq(aev_future_cancel(self, "late"), 1);
    return aev_task_return(self, &V1, NULL);
}

START_TEST(test_cancel_done_task)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t = spawn(loop, NULL, return_value_task, NULL);
    ck_assert_int_eq(run_task(loop, t), 0);
    ck_assert_int_eq(aev_future_cancel(t, "too late"), 0);
    ck_assert_int_eq(aev_future_cancelled(t), 0);
    ck_assert_int_eq(aev_task_cancelling(t), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_ptr_eq(v, &V1);
    aev_future_unref(t);

    aev_future_t *t2 = spawn(loop, NULL, cancel_late_task, NULL);
    ck_assert_int_eq(run_task(loop, t2), AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_cancelled(t2), 1);
    ck_assert_str_eq(aev_future_error_detail(t2), "late");
    aev_future_unref(t2);
    tu_loop_free(loop);
}
END_TEST

/* ---- errors nobody retrieved ----------------------------------------------------------- */

static int stop_loop_done_cb(aev_future_t *fut, void *arg)
{
    (void)arg;
    aev_loop_stop(aev_future_get_loop(fut));
    return 0;
}

START_TEST(test_task_exception_never_retrieved)
{
    aev_loop_t *loop = tu_loop_new();
    exc_log_t x = {0};
    aev_loop_set_exception_handler(loop, exc_handler, &x);

    /* the user drops the reference after the end without reading the error */
    aev_future_t *t = spawn(loop, NULL, fail_eio_task, NULL);
    ck_assert_int_eq(aev_future_add_done_callback(t, stop_loop_done_cb, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10), 0);
    ck_assert_int_eq(aev_future_done(t), 1);
    ck_assert_int_eq(x.count, 0);
    aev_future_t *tp = t;
    aev_future_unref(t);
    ck_assert_int_eq(x.count, 1);
    ck_assert_str_eq(x.message[0], "Task exception was never retrieved");
    ck_assert_int_eq(x.error[0], -EIO);
    ck_assert_ptr_eq(x.task[0], tp);

    /* the user drops the reference before the end */
    aev_future_t *t2 = spawn(loop, NULL, fail_eio_task, NULL);
    aev_future_t *t2p = t2;
    ck_assert_int_eq(aev_future_add_done_callback(t2, stop_loop_done_cb, NULL), 0);
    aev_future_unref(t2);
    ck_assert_int_eq(x.count, 1);
    ck_assert_int_eq(tu_run_guarded(loop, 10), 0);
    tu_run_once(loop);
    ck_assert_int_eq(x.count, 2);
    ck_assert_str_eq(x.message[1], "Task exception was never retrieved");
    ck_assert_int_eq(x.error[1], -EIO);
    ck_assert_ptr_eq(x.task[1], t2p);

    /* read: not reported */
    aev_future_t *t3 = spawn(loop, NULL, fail_eio_task, NULL);
    ck_assert_int_eq(aev_future_add_done_callback(t3, stop_loop_done_cb, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10), 0);
    ck_assert_int_eq(aev_future_error(t3), -EIO);
    aev_future_unref(t3);
    /* a cancelled task is not an error to report either */
    aev_future_t *t4 = spawn(loop, NULL, never_run_task, NULL);
    ck_assert_int_eq(aev_future_cancel(t4, NULL), 1);
    ck_assert_int_eq(aev_future_add_done_callback(t4, stop_loop_done_cb, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10), 0);
    aev_future_unref(t4);
    tu_loop_free(loop);
    ck_assert_int_eq(x.count, 2);
}
END_TEST

/* ---- thousands of tasks ------------------------------------------------------------------ */

typedef struct {
    int done;
    int target;
} counter_t;

static int count_done_cb(aev_future_t *fut, void *arg)
{
    counter_t *c = arg;
    if (++c->done == c->target)
        aev_loop_stop(aev_future_get_loop(fut));
    return 0;
}

static int many_task(aev_future_t *self, void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    uint32_t r = (uint32_t)i * 2654435761u + 12345u;
    for (int k = 0; k < 3; k++) {
        r = r * 1103515245u + 12345u;
        double d = (double)((r >> 8) % 21) / 1000.0; /* 0..20 ms */
        int rc = aev_sleep(d);
        if (rc < 0)
            return rc;
        rc = aev_task_yield();
        if (rc < 0)
            return rc;
    }
    return aev_task_return(self, (void *)(i + 1), NULL);
}

START_TEST(test_thousands_of_sleeping_tasks)
{
    enum { N = 5000 };
    aev_loop_t *loop = tu_loop_new();
    aev_future_t **tasks = calloc(N, sizeof *tasks);
    ck_assert_ptr_nonnull(tasks);
    counter_t c = {.target = N};
    for (uintptr_t i = 0; i < N; i++) {
        tasks[i] = spawn(loop, NULL, many_task, (void *)i);
        ck_assert_int_eq(aev_future_add_done_callback(tasks[i], count_done_cb, &c), 0);
    }
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), N);
    ck_assert_int_eq(tu_run_guarded(loop, 120), 0);
    ck_assert_int_eq(c.done, N);
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 0);
    uint64_t sum = 0;
    for (int i = 0; i < N; i++) {
        void *v = NULL;
        ck_assert_int_eq(aev_future_result(tasks[i], &v), 0);
        ck_assert_ptr_eq(v, (void *)(uintptr_t)(i + 1));
        sum += (uintptr_t)v;
        aev_future_unref(tasks[i]);
    }
    ck_assert_uint_eq(sum, (uint64_t)N * (N + 1) / 2);
    free(tasks);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int fd;
    int index;
    int *started;
} sock_many_t;

static int sock_many_task(aev_future_t *self, void *arg)
{
    sock_many_t *s = arg;
    char want[32], buf[64];
    int n = snprintf(want, sizeof want, "message %d", s->index);
    (*s->started)++;
    size_t got = 0;
    while (got < (size_t)n) {
        ssize_t r = aev_task_sock_recv(s->fd, buf + got, sizeof buf - got);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return -EPIPE;
        got += (size_t)r;
    }
    if (got != (size_t)n || memcmp(buf, want, got) != 0)
        return aev_task_fail(self, -EBADMSG, "wrong data");
    return aev_task_return(self, (void *)(uintptr_t)got, NULL);
}

START_TEST(test_thousands_of_tasks_in_sock_recv)
{
    aev_loop_t *loop = tu_loop_new();
    int n = 2000;
    if (strcmp(tu_poller(loop), "select") == 0) {
        n = 400; /* select(2) cannot watch fds at or above FD_SETSIZE */
        printf("test_thousands_of_tasks_in_sock_recv: select poller: %d socketpairs (FD_SETSIZE)\n", n);
    }
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < (rlim_t)(2 * n + 64)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < (rlim_t)(2 * n + 64)) {
            n = (int)(rl.rlim_cur - 64) / 2;
            printf("test_thousands_of_tasks_in_sock_recv: RLIMIT_NOFILE: %d socketpairs\n", n);
        }
    }
    int (*sv)[2] = calloc((size_t)n, sizeof *sv);
    sock_many_t *args = calloc((size_t)n, sizeof *args);
    aev_future_t **tasks = calloc((size_t)n, sizeof *tasks);
    ck_assert(sv && args && tasks);
    int started = 0;
    counter_t c = {.target = n};
    for (int i = 0; i < n; i++) {
        tu_socketpair(sv[i]);
        args[i] = (sock_many_t){.fd = sv[i][0], .index = i, .started = &started};
        tasks[i] = spawn(loop, NULL, sock_many_task, &args[i]);
        ck_assert_int_eq(aev_future_add_done_callback(tasks[i], count_done_cb, &c), 0);
    }
    for (int k = 0; k < 3; k++)
        tu_run_once(loop);
    ck_assert_int_eq(started, n);
    ck_assert_int_eq(c.done, 0);
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), (size_t)n);
    /* feed them in reverse order, in two halves per message */
    for (int i = n - 1; i >= 0; i--) {
        char msg[32];
        snprintf(msg, sizeof msg, "message %d", i);
        char head[8];
        snprintf(head, sizeof head, "%.4s", msg);
        tu_write(sv[i][1], head);
    }
    tu_run_once(loop);
    for (int i = n - 1; i >= 0; i--) {
        char msg[32];
        snprintf(msg, sizeof msg, "message %d", i);
        tu_write(sv[i][1], msg + 4);
    }
    ck_assert_int_eq(tu_run_guarded(loop, 60), 0);
    ck_assert_int_eq(c.done, n);
    for (int i = 0; i < n; i++) {
        void *v = NULL;
        int rc = aev_future_result(tasks[i], &v);
        ck_assert_msg(rc == 0, "task %d: %d (%s)", i, rc, aev_err_name(rc));
        char msg[32];
        ck_assert_ptr_eq(v, (void *)(uintptr_t)snprintf(msg, sizeof msg, "message %d", i));
        aev_future_unref(tasks[i]);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    free(sv);
    free(args);
    free(tasks);
    tu_loop_free(loop);
}
END_TEST

/* ---- names, current task, fn ----------------------------------------------------------- */

typedef struct {
    aev_future_t *self_seen;
    aev_future_t *current_seen;
    const char *name_seen;
    char name_copy[64];
} names_t;

static int names_task(aev_future_t *self, void *arg)
{
    names_t *n = arg;
    n->self_seen = self;
    n->current_seen = aev_task_current();
    snprintf(n->name_copy, sizeof n->name_copy, "%s", aev_task_get_name(aev_task_current()));
    ck_assert_int_eq(aev_sleep(0.001), 0);
    ck_assert_ptr_eq(aev_task_current(), self); /* still, after resuming */
    return 0;
}

START_TEST(test_names_and_current)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_ptr_null(aev_task_current());
    names_t n1 = {0}, n2 = {0}, n3 = {0};
    aev_future_t *t1 = spawn(loop, NULL, names_task, &n1);
    aev_future_t *t2 = spawn(loop, NULL, names_task, &n2);
    unsigned long a = 0, b = 0;
    char tail;
    ck_assert_int_eq(sscanf(aev_task_get_name(t1), "Task-%lu%c", &a, &tail), 1);
    ck_assert_int_eq(sscanf(aev_task_get_name(t2), "Task-%lu%c", &b, &tail), 1);
    ck_assert_uint_ge(a, 1);
    ck_assert_uint_eq(b, a + 1);

    char name[32] = "worker-7";
    aev_task_options_t opts = {.name = name};
    aev_future_t *t3 = spawn(loop, &opts, names_task, &n3);
    strcpy(name, "changed"); /* the name was copied */
    ck_assert_str_eq(aev_task_get_name(t3), "worker-7");
    ck_assert_ptr_eq(aev_task_get_fn(t3), (aev_task_fn)names_task);

    ck_assert_int_eq(aev_task_set_name(t2, "renamed"), 0);
    ck_assert_str_eq(aev_task_get_name(t2), "renamed");
    ck_assert_int_eq(aev_task_set_name(t2, NULL), -EINVAL);
    aev_future_t *plain = new_future(loop);
    ck_assert_int_eq(aev_task_set_name(plain, "x"), -EINVAL);
    ck_assert_ptr_null(aev_task_get_name(plain));
    ck_assert_ptr_null(aev_task_get_fn(plain));

    ck_assert_int_eq(run_task(loop, t1), 0);
    ck_assert_int_eq(run_task(loop, t2), 0);
    ck_assert_int_eq(run_task(loop, t3), 0);
    ck_assert_ptr_eq(n1.self_seen, t1);
    ck_assert_ptr_eq(n1.current_seen, t1);
    ck_assert_ptr_eq(n2.current_seen, t2);
    ck_assert_ptr_eq(n3.current_seen, t3);
    ck_assert_str_eq(n2.name_copy, "renamed");
    ck_assert_str_eq(n3.name_copy, "worker-7");
    ck_assert_ptr_null(aev_task_current());
    /* the name stays readable after the end */
    ck_assert_str_eq(aev_task_get_name(t3), "worker-7");
    aev_future_unref(plain);
    aev_future_unref(t1);
    aev_future_unref(t2);
    aev_future_unref(t3);
    tu_loop_free(loop);
}
END_TEST

/* ---- contexts ------------------------------------------------------------------------------ */

static aev_context_var_t *cvar;
static int CX, CY, CZ, CDEF;

typedef struct {
    void *seen_start;
    void *seen_cb;
    void *seen_after_set;
    int cb_ran;
} ctx_seen_t;

static int ctx_record_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ctx_seen_t *s = arg;
    s->seen_cb = aev_context_var_get(cvar);
    s->cb_ran = 1;
    return 0;
}

static int ctx_task(aev_future_t *self, void *arg)
{
    (void)self;
    ctx_seen_t *s = arg;
    s->seen_start = aev_context_var_get(cvar);
    ck_assert_int_eq(aev_context_var_set(cvar, &CY), 0);
    ck_assert_int_eq(aev_sleep(0.001), 0);
    s->seen_after_set = aev_context_var_get(cvar); /* kept across the wait */
    ck_assert_int_eq(aev_loop_call_soon(aev_loop_get_running(), ctx_record_cb, s, NULL), 0);
    ck_assert_int_eq(aev_task_yield(), 0);
    ck_assert_int_eq(s->cb_ran, 1);
    return 0;
}

static int ctx_plain_task(aev_future_t *self, void *arg)
{
    (void)self;
    ctx_seen_t *s = arg;
    s->seen_start = aev_context_var_get(cvar);
    ck_assert_int_eq(aev_task_yield(), 0);
    s->seen_after_set = aev_context_var_get(cvar);
    return 0;
}

START_TEST(test_context_inheritance)
{
    cvar = aev_context_var_new("tctx", &CDEF);
    ck_assert_ptr_nonnull(cvar);
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_context_var_set(cvar, &CX), 0);
    ctx_seen_t s1 = {0}, s2 = {0};
    aev_future_t *t1 = spawn(loop, NULL, ctx_task, &s1);
    aev_future_t *t2 = spawn(loop, NULL, ctx_plain_task, &s2); /* a sibling */
    ck_assert_ptr_nonnull(aev_task_get_context(t1));
    ck_assert_int_eq(run_task(loop, t1), 0);
    ck_assert_int_eq(run_task(loop, t2), 0);
    ck_assert_ptr_eq(s1.seen_start, &CX);       /* set before create_task: seen inside */
    ck_assert_ptr_eq(s1.seen_after_set, &CY);
    ck_assert_ptr_eq(s1.seen_cb, &CY);          /* callbacks scheduled inside see the task's */
    ck_assert_ptr_eq(s2.seen_start, &CX);       /* the sibling does not see t1's set */
    ck_assert_ptr_eq(s2.seen_after_set, &CX);
    ck_assert_ptr_eq(aev_context_var_get(cvar), &CX); /* nor does the caller */
    void *v = NULL;
    ck_assert_int_eq(aev_context_get(aev_task_get_context(t1), cvar, &v), 1);
    ck_assert_ptr_eq(v, &CY);

    /* changing the caller's value after create_task does not reach the task (a copy) */
    ctx_seen_t s3 = {0};
    aev_future_t *t3 = spawn(loop, NULL, ctx_plain_task, &s3);
    ck_assert_int_eq(aev_context_var_set(cvar, &CZ), 0);
    ck_assert_int_eq(run_task(loop, t3), 0);
    ck_assert_ptr_eq(s3.seen_start, &CX);

    /* an explicit context: used as is; what the task sets lands in it */
    aev_context_t *ctx = aev_context_new();
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(aev_context_set(ctx, cvar, &CZ), 0);
    aev_task_options_t opts = {.context = ctx};
    ctx_seen_t s4 = {0};
    aev_future_t *t4 = spawn(loop, &opts, ctx_task, &s4);
    ck_assert_ptr_eq(aev_task_get_context(t4), ctx);
    ck_assert_int_eq(run_task(loop, t4), 0);
    ck_assert_ptr_eq(s4.seen_start, &CZ);
    ck_assert_ptr_eq(s4.seen_cb, &CY);
    ck_assert_int_eq(aev_context_get(ctx, cvar, &v), 1);
    ck_assert_ptr_eq(v, &CY);
    ck_assert_ptr_eq(aev_context_var_get(cvar), &CZ); /* the caller's own value */

    aev_future_unref(t1);
    aev_future_unref(t2);
    aev_future_unref(t3);
    aev_future_unref(t4);
    aev_context_unref(ctx);
    tu_loop_free(loop);
    /* cvar stays set in the thread's context: not freed (see test_context.c) */
}
END_TEST

/* ---- task factory ------------------------------------------------------------------------ */

typedef struct {
    int calls;
    const aev_task_options_t *opts_seen;
    int fail;
} factory_state_t;

static int my_factory(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn, void *arg,
                      aev_future_t **out, void *userdata)
{
    factory_state_t *f = userdata;
    f->calls++;
    f->opts_seen = opts;
    if (f->fail)
        return -ENOSPC;
    int rc = aev_task_new(loop, opts, fn, arg, out);
    if (rc < 0)
        return rc;
    char name[32];
    snprintf(name, sizeof name, "factory-%d", f->calls);
    return aev_task_set_name(*out, name);
}

START_TEST(test_task_factory)
{
    aev_loop_t *loop = tu_loop_new();
    void *ud = &ud;
    ck_assert_ptr_null(aev_loop_get_task_factory(loop, &ud));
    ck_assert_ptr_null(ud);
    factory_state_t f = {0};
    aev_loop_set_task_factory(loop, my_factory, &f);
    ck_assert_ptr_eq(aev_loop_get_task_factory(loop, &ud), (aev_task_factory_fn)my_factory);
    ck_assert_ptr_eq(ud, &f);

    aev_task_options_t opts = {.name = "ignored-by-factory"};
    aev_future_t *t1 = spawn(loop, &opts, return_value_task, NULL);
    ck_assert_int_eq(f.calls, 1);
    ck_assert_ptr_eq(f.opts_seen, &opts);
    ck_assert_str_eq(aev_task_get_name(t1), "factory-1");
    aev_future_t *t2 = spawn(loop, NULL, return_value_task, NULL);
    ck_assert_int_eq(f.calls, 2);
    ck_assert_str_eq(aev_task_get_name(t2), "factory-2");
    ck_assert_int_eq(run_task(loop, t2), 0);
    ck_assert_int_eq(aev_future_done(t1), 1);

    /* a failing factory: create_task fails with its error */
    f.fail = 1;
    aev_future_t *t3 = (aev_future_t *)&f; /* any non-NULL value: cleared on failure */
    ck_assert_int_eq(aev_loop_create_task(loop, NULL, return_value_task, NULL, &t3), -ENOSPC);
    ck_assert_ptr_null(t3);
    ck_assert_int_eq(f.calls, 3);
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 0);

    /* NULL restores the default */
    aev_loop_set_task_factory(loop, NULL, &f);
    ck_assert_ptr_null(aev_loop_get_task_factory(loop, &ud));
    ck_assert_ptr_null(ud);
    aev_future_t *t4 = spawn(loop, NULL, return_value_task, NULL);
    ck_assert_int_eq(f.calls, 3);
    unsigned long num;
    ck_assert_int_eq(sscanf(aev_task_get_name(t4), "Task-%lu", &num), 1);
    ck_assert_int_eq(run_task(loop, t4), 0);
    aev_future_unref(t1);
    aev_future_unref(t2);
    aev_future_unref(t4);
    tu_loop_free(loop);
}
END_TEST

/* ---- all_tasks --------------------------------------------------------------------------- */

START_TEST(test_all_tasks)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 0);
    aev_future_t *futs[3];
    await_arg_t args[3];
    aev_future_t *tasks[3];
    for (int i = 0; i < 3; i++) {
        futs[i] = new_future(loop);
        args[i] = (await_arg_t){.fut = futs[i], .rc = 99};
        tasks[i] = spawn(loop, NULL, await_task, &args[i]);
    }
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 3); /* scheduled counts as pending */
    tu_run_once(loop);
    tu_run_once(loop);
    aev_future_t *got[2] = {NULL, NULL};
    ck_assert_uint_eq(aev_loop_all_tasks(loop, got, 2), 3); /* the count, even past cap */
    for (int k = 0; k < 2; k++) {
        ck_assert_ptr_nonnull(got[k]);
        ck_assert(got[k] == tasks[0] || got[k] == tasks[1] || got[k] == tasks[2]);
        ck_assert_int_eq(aev_future_is_task(got[k]), 1);
    }
    ck_assert_ptr_ne(got[0], got[1]);
    /* each comes with a reference: usable after ours is gone */
    aev_future_t *all[8] = {0};
    ck_assert_uint_eq(aev_loop_all_tasks(loop, all, 8), 3);
    ck_assert_ptr_null(all[3]);
    ck_assert_int_eq(aev_future_set_result(futs[1], &V1, NULL), 0);
    ck_assert_int_eq(run_task(loop, tasks[1]), 0);
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 2); /* done tasks are not listed */
    aev_future_t *left[4] = {0};
    ck_assert_uint_eq(aev_loop_all_tasks(loop, left, 4), 2);
    ck_assert(left[0] != tasks[1] && left[1] != tasks[1]);
    for (int i = 0; i < 3; i++)
        aev_future_unref(tasks[i]);
    ck_assert_int_eq(aev_future_set_result(futs[0], &V1, NULL), 0);
    ck_assert_int_eq(aev_future_set_result(futs[2], &V1, NULL), 0);
    ck_assert_int_eq(run_task(loop, all[0]), 0);
    ck_assert_int_eq(run_task(loop, all[1]), 0);
    ck_assert_int_eq(run_task(loop, all[2]), 0);
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 0);
    for (int k = 0; k < 2; k++)
        aev_future_unref(got[k]);
    for (int k = 0; k < 3; k++)
        aev_future_unref(all[k]);
    for (int k = 0; k < 2; k++)
        aev_future_unref(left[k]);
    for (int i = 0; i < 3; i++)
        aev_future_unref(futs[i]);
    tu_loop_free(loop);
}
END_TEST

/* ---- shutdown ------------------------------------------------------------------------------- */

typedef struct {
    int started;
    int sleep_rc;
    int cleanup_rc;
    int cleanup_done;
    char *resource; /* freed by the cleanup: valgrind/ASan see a leak if it does not run */
} sleeper_t;

static int long_sleeper_task(aev_future_t *self, void *arg)
{
    (void)self;
    sleeper_t *s = arg;
    s->resource = malloc(100);
    ck_assert_ptr_nonnull(s->resource);
    s->started = 1;
    s->sleep_rc = aev_sleep(3600);
    /* cleanup, which may wait again */
    s->cleanup_rc = aev_sleep(0.005);
    free(s->resource);
    s->resource = NULL;
    s->cleanup_done = 1;
    return s->sleep_rc;
}

START_TEST(test_close_with_pending_tasks)
{
    aev_loop_t *loop = tu_loop_new();
    sleeper_t s1 = {.sleep_rc = 99, .cleanup_rc = 99}, s2 = {.sleep_rc = 99, .cleanup_rc = 99};
    aev_future_t *t1 = spawn(loop, NULL, long_sleeper_task, &s1);
    ck_assert_int_eq(aev_loop_create_task(loop, NULL, long_sleeper_task, &s2, NULL), 0); /* no ref */
    sleeper_t s3 = {0};
    aev_future_t *t3 = spawn(loop, NULL, long_sleeper_task, &s3); /* never started */
    ck_assert_int_eq(aev_future_cancel(t3, NULL), 1);
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_int_eq(s1.started, 1);
    ck_assert_int_eq(s2.started, 1);
    ck_assert_int_eq(s3.started, 0);
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_double_lt(tu_now() - t0, 2.0);
    ck_assert_int_eq(s1.sleep_rc, AEV_ECANCELLED);
    ck_assert_int_eq(s1.cleanup_rc, 0);
    ck_assert_int_eq(s1.cleanup_done, 1);
    ck_assert_int_eq(s2.sleep_rc, AEV_ECANCELLED);
    ck_assert_int_eq(s2.cleanup_done, 1);
    ck_assert_int_eq(s3.started, 0);
    ck_assert_int_eq(aev_future_done(t1), 1);
    ck_assert_int_eq(aev_future_cancelled(t1), 1);
    ck_assert_int_eq(aev_future_cancelled(t3), 1);
    aev_future_unref(t1);
    aev_future_unref(t3);
    aev_loop_free(loop);
}
END_TEST

static int shutdown_cb_rc;

static int shutdown_inside_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    shutdown_cb_rc = aev_loop_shutdown_tasks(loop);
    return 0;
}

START_TEST(test_shutdown_tasks_explicit)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_shutdown_tasks(loop), 0); /* no tasks: nothing to do */
    sleeper_t s1 = {.sleep_rc = 99}, s2 = {.sleep_rc = 99};
    aev_future_t *t1 = spawn(loop, NULL, long_sleeper_task, &s1);
    aev_future_t *t2 = spawn(loop, NULL, long_sleeper_task, &s2);
    tu_run_once(loop);
    ck_assert_int_eq(s1.started, 1);
    ck_assert_int_eq(s2.started, 1);

    /* refused while the loop runs */
    shutdown_cb_rc = 99;
    ck_assert_int_eq(aev_loop_call_soon(loop, shutdown_inside_cb, NULL, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(shutdown_cb_rc, AEV_ERUNNING);
    ck_assert_int_eq(aev_future_done(t1), 0);

    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_shutdown_tasks(loop), 0);
    ck_assert_double_lt(tu_now() - t0, 2.0);
    ck_assert_int_eq(aev_loop_is_closed(loop), 0);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);
    ck_assert_uint_eq(aev_loop_all_tasks(loop, NULL, 0), 0);
    ck_assert_int_eq(aev_future_cancelled(t1), 1);
    ck_assert_int_eq(aev_future_cancelled(t2), 1);
    ck_assert_int_eq(s1.cleanup_done, 1);
    ck_assert_int_eq(s2.cleanup_done, 1);
    ck_assert_int_eq(s1.sleep_rc, AEV_ECANCELLED);
    ck_assert_int_eq(s1.cleanup_rc, 0);
    ck_assert_str_eq(aev_future_error_detail(t1), "the event loop is shutting down");

    /* the loop goes on working */
    aev_future_t *t3 = spawn(loop, NULL, return_value_task, NULL);
    ck_assert_int_eq(run_task(loop, t3), 0);
    aev_future_unref(t1);
    aev_future_unref(t2);
    aev_future_unref(t3);
    tu_loop_free(loop);
}
END_TEST

/* ---- stacks ----------------------------------------------------------------------------------- */

static __attribute__((noinline)) uint64_t use_stack(size_t size)
{
    volatile unsigned char buf[size];
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)(i * 31u);
    uint64_t sum = 0;
    for (size_t i = 0; i < size; i++)
        sum += buf[i];
    return sum;
}

static uint64_t expected_sum(size_t size)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < size; i++)
        sum += (unsigned char)(i * 31u);
    return sum;
}

static int stack_task(aev_future_t *self, void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    uint64_t s1 = use_stack(size);
    ck_assert_int_eq(aev_sleep(0.001), 0); /* suspended with a deep stack in use before */
    uint64_t s2 = use_stack(size);
    if (s1 != expected_sum(size) || s2 != s1)
        return aev_task_fail(self, -EFAULT, "stack contents wrong");
    return 0;
}

START_TEST(test_stack_sizes)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t1 = spawn(loop, NULL, stack_task, (void *)(uintptr_t)(32 * 1024));
    aev_task_options_t opts = {.stack_size = 256 * 1024};
    aev_future_t *t2 = spawn(loop, &opts, stack_task, (void *)(uintptr_t)(200 * 1024));
    aev_future_t *t3 = spawn(loop, NULL, stack_task, (void *)(uintptr_t)(32 * 1024));
    ck_assert_int_eq(run_task(loop, t1), 0);
    ck_assert_int_eq(run_task(loop, t2), 0);
    ck_assert_int_eq(run_task(loop, t3), 0);
    aev_future_unref(t1);
    aev_future_unref(t2);
    aev_future_unref(t3);
    tu_loop_free(loop);
}
END_TEST

/* ---- raising callbacks around tasks ------------------------------------------------------ */

static int raise_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (*(int *)arg)++;
    return -EIO;
}

static int raise_done_cb(aev_future_t *fut, void *arg)
{
    (void)fut;
    (*(int *)arg)++;
    return -ENOEXEC;
}

static int raising_chain_task(aev_future_t *self, void *arg)
{
    int *raised = arg;
    aev_loop_t *loop = aev_loop_get_running();
    ck_assert_int_eq(aev_loop_call_soon(loop, raise_cb, raised, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.001, raise_cb, raised, NULL), 0);
    ck_assert_int_eq(aev_sleep(0.02), 0);
    ck_assert_int_eq(*raised, 2);
    ck_assert_int_eq(aev_task_yield(), 0);
    return aev_task_return(self, &V1, NULL);
}

START_TEST(test_raising_callbacks_do_not_break_tasks)
{
    aev_loop_t *loop = tu_loop_new();
    exc_log_t x = {0};
    aev_loop_set_exception_handler(loop, exc_handler, &x);
    int raised = 0, done_raised = 0;
    aev_future_t *t1 = spawn(loop, NULL, raising_chain_task, &raised);
    ck_assert_int_eq(aev_future_add_done_callback(t1, raise_done_cb, &done_raised), 0);
    aev_future_t *t2 = spawn(loop, NULL, catch_cancel_task, &(cwait_t){0});
    completer_t c = {.fut = t2};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, cancel_cb, &c, NULL), 0);
    ck_assert_int_eq(run_task(loop, t1), 0);
    ck_assert_int_eq(run_task(loop, t2), 0);
    tu_run_once(loop);
    ck_assert_int_eq(raised, 2);
    ck_assert_int_eq(done_raised, 1);
    ck_assert_int_eq(x.count, 3);
    int eio = 0, enoexec = 0;
    for (int i = 0; i < 3; i++) {
        eio += x.error[i] == -EIO;
        enoexec += x.error[i] == -ENOEXEC;
        ck_assert_ptr_nonnull(x.handle[i]);
    }
    ck_assert_int_eq(eio, 2);
    ck_assert_int_eq(enoexec, 1);
    aev_future_unref(t1);
    aev_future_unref(t2);
    tu_loop_free(loop);
}
END_TEST

/* ---- debug mode: a slow step is named after its task ------------------------------ */

static int busy_task(aev_future_t *self, void *arg)
{
    (void)self;
    (void)arg;
    double t0 = tu_now();
    while (tu_now() - t0 < 0.06) {
    }
    aev_sleep(0.001);
    t0 = tu_now();
    while (tu_now() - t0 < 0.06) {
    }
    return 0;
}

START_TEST(test_debug_slow_step_names_task)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    aev_loop_set_slow_callback_duration(loop, 0.05);
    tu_log_capture_start();
    aev_future_t *task = NULL;
    ck_assert_int_eq(aev_loop_create_task(loop, &(aev_task_options_t){.name = "busy-one"}, busy_task, NULL,
                                          &task),
                     0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, task), 0);
    /* the first step, then the step after the sleep (woken by its timer) */
    ck_assert_int_ge(tu_log_find(AEV_LOG_WARNING, "Executing task busy-one (step) took", NULL, NULL), 0);
    ck_assert_int_ge(tu_log_find(AEV_LOG_WARNING, "Executing task busy-one (sleep over) took", NULL, NULL), 0);
    tu_log_capture_stop();
    aev_future_unref(task);
    tu_loop_free(loop);
}
END_TEST

static Suite *task_suite(void)
{
    Suite *s = suite_create("task");
    TCase *tc = tu_tcase("test_scheduling_order");
    tcase_add_loop_test(tc, test_scheduling_order, 0, 2);
    suite_add_tcase(s, tc);
    TU_ADD(s, test_run_until_complete_returns_task_error);
    TU_ADD(s, test_result_and_destroy_once);
    TU_ADD(s, test_result_replaced);
    TU_ADD(s, test_error_with_detail);
    TU_ADD(s, test_task_is_a_future);
    TU_ADD(s, test_await_pending_future);
    TU_ADD(s, test_await_done_future_does_not_suspend);
    TU_ADD(s, test_await_error_future);
    TU_ADD(s, test_await_cancelled_future);
    TU_ADD(s, test_await_task);
    TU_ADD(s, test_await_misuse);
    TU_ADD(s, test_cancel_while_awaiting_future);
    TU_ADD(s, test_cancel_while_sleeping);
    TU_ADD(s, test_cancel_while_yielding);
    TU_ADD(s, test_cancel_while_in_sock_recv);
    TU_ADD(s, test_cancel_before_first_step);
    TU_ADD(s, test_task_catches_cancellation);
    TU_ADD(s, test_cancelling_and_uncancel);
    TU_ADD(s, test_self_cancel);
    TU_ADD(s, test_cancel_done_task);
    TU_ADD(s, test_task_exception_never_retrieved);
    tc = tu_tcase("test_thousands_of_sleeping_tasks");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_thousands_of_sleeping_tasks);
    suite_add_tcase(s, tc);
    tc = tu_tcase("test_thousands_of_tasks_in_sock_recv");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_thousands_of_tasks_in_sock_recv);
    suite_add_tcase(s, tc);
    TU_ADD(s, test_names_and_current);
    TU_ADD(s, test_context_inheritance);
    TU_ADD(s, test_task_factory);
    TU_ADD(s, test_all_tasks);
    TU_ADD(s, test_close_with_pending_tasks);
    TU_ADD(s, test_shutdown_tasks_explicit);
    TU_ADD(s, test_stack_sizes);
    TU_ADD(s, test_raising_callbacks_do_not_break_tasks);
    TU_ADD(s, test_debug_slow_step_names_task);
    return s;
}

TU_MAIN(task_suite)
