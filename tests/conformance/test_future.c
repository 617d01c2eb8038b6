/* libaev conformance: futures (states, results, errors, cancellation, done callbacks,
 * references, never-retrieved errors). */
#include "test_util.h"

static aev_future_t *new_future(aev_loop_t *loop)
{
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_ptr_nonnull(fut);
    return fut;
}

START_TEST(test_new_future_pending)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_future_done(fut), 0);
    ck_assert_int_eq(aev_future_cancelled(fut), 0);
    ck_assert_ptr_eq(aev_future_get_loop(fut), loop);
    void *v = (void *)0x1;
    ck_assert_int_eq(aev_future_result(fut, &v), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_error(fut), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_done(fut), 0);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int calls;
    void *last;
    void *values[8];
} destroy_log_t;

static destroy_log_t destroyed;

static void destroy_fn(void *value)
{
    if (destroyed.calls < 8)
        destroyed.values[destroyed.calls] = value;
    destroyed.calls++;
    destroyed.last = value;
}

START_TEST(test_set_result)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    int value = 5;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    ck_assert_int_eq(aev_future_done(fut), 1);
    ck_assert_int_eq(aev_future_cancelled(fut), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(fut, &v), 0);
    ck_assert_ptr_eq(v, &value);
    ck_assert_int_eq(aev_future_result(fut, NULL), 0); /* value pointer may be NULL */
    ck_assert_int_eq(aev_future_error(fut), 0);
    ck_assert_int_eq(aev_future_cancel(fut, "too late"), 0);
    ck_assert_int_eq(aev_future_cancelled(fut), 0);
    ck_assert_int_eq(aev_future_result(fut, &v), 0);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_destroy_on_last_reference)
{
    aev_loop_t *loop = tu_loop_new();
    memset(&destroyed, 0, sizeof destroyed);
    aev_future_t *fut = new_future(loop);
    int value = 1, second = 2;
    ck_assert_int_eq(aev_future_set_result(fut, &value, destroy_fn), 0);
    /* Setting twice fails and does not take the second value. */
    ck_assert_int_eq(aev_future_set_result(fut, &second, destroy_fn), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_set_error(fut, -EIO, NULL), AEV_EINVALID_STATE);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(fut, &v), 0);
    ck_assert_ptr_eq(v, &value);
    ck_assert_int_eq(destroyed.calls, 0);

    ck_assert_ptr_eq(aev_future_ref(fut), fut);
    aev_future_unref(fut);
    ck_assert_int_eq(destroyed.calls, 0);
    aev_future_unref(fut); /* the last reference */
    ck_assert_int_eq(destroyed.calls, 1);
    ck_assert_ptr_eq(destroyed.values[0], &value);
    tu_loop_free(loop);
    ck_assert_int_eq(destroyed.calls, 1);
}
END_TEST

START_TEST(test_set_after_cancel_or_error)
{
    aev_loop_t *loop = tu_loop_new();
    memset(&destroyed, 0, sizeof destroyed);
    int value = 3;
    aev_future_t *a = new_future(loop);
    ck_assert_int_eq(aev_future_cancel(a, NULL), 1);
    ck_assert_int_eq(aev_future_set_result(a, &value, destroy_fn), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_set_error(a, -EIO, "x"), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_cancelled(a), 1);

    aev_future_t *b = new_future(loop);
    ck_assert_int_eq(aev_future_set_error(b, -EIO, NULL), 0);
    ck_assert_int_eq(aev_future_set_result(b, &value, destroy_fn), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_set_error(b, -EPIPE, NULL), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_future_cancel(b, NULL), 0);
    ck_assert_int_eq(aev_future_result(b, NULL), -EIO);
    aev_future_unref(a);
    aev_future_unref(b);
    ck_assert_int_eq(destroyed.calls, 0); /* refused values were never taken */
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_set_error)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    char detail[16];
    snprintf(detail, sizeof detail, "detail");
    ck_assert_int_eq(aev_future_set_error(fut, -ECONNRESET, detail), 0);
    memset(detail, 'X', sizeof detail - 1); /* the detail was copied */
    ck_assert_int_eq(aev_future_done(fut), 1);
    ck_assert_int_eq(aev_future_cancelled(fut), 0);
    void *v = (void *)0x1;
    ck_assert_int_eq(aev_future_result(fut, &v), -ECONNRESET);
    ck_assert_int_eq(aev_future_error(fut), -ECONNRESET);
    ck_assert_ptr_nonnull(aev_future_error_detail(fut));
    ck_assert_str_eq(aev_future_error_detail(fut), "detail");
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_cancel)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_future_cancel(fut, "stop it"), 1);
    ck_assert_int_eq(aev_future_cancel(fut, "again"), 0);
    ck_assert_int_eq(aev_future_done(fut), 1);
    ck_assert_int_eq(aev_future_cancelled(fut), 1);
    ck_assert_int_eq(aev_future_result(fut, NULL), AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_error(fut), AEV_ECANCELLED);
    ck_assert_ptr_nonnull(aev_future_error_detail(fut));
    ck_assert_str_eq(aev_future_error_detail(fut), "stop it");
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

/* ---- done callbacks ---------------------------------------------------------- */

typedef struct {
    char order[32];
    int n;
    aev_future_t *seen[32];
    int result_rc[32];
} done_log_t;

typedef struct {
    done_log_t *log;
    char tag;
} done_tag_t;

static int done_cb(aev_future_t *fut, void *arg)
{
    done_tag_t *t = arg;
    done_log_t *log = t->log;
    if (log->n < 31) {
        log->seen[log->n] = fut;
        log->result_rc[log->n] = aev_future_result(fut, NULL);
        log->order[log->n++] = t->tag;
        log->order[log->n] = '\0';
    }
    return 0;
}

START_TEST(test_done_callbacks_scheduled_in_order)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    done_log_t log = {0};
    done_tag_t a = {&log, 'a'}, b = {&log, 'b'}, c = {&log, 'c'};
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &a), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &b), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &c), 0);
    int value = 9;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    ck_assert_int_eq(log.n, 0); /* not called synchronously */
    tu_run_once(loop);
    ck_assert_str_eq(log.order, "abc");
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_eq(log.seen[i], fut);
        ck_assert_int_eq(log.result_rc[i], 0);
    }
    tu_run_once(loop);
    ck_assert_int_eq(log.n, 3); /* called once each */
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_done_callbacks_after_preexisting_callbacks)
{
    /* Done callbacks go through call_soon: a callback scheduled before the future completed
     * runs first. */
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    done_log_t log = {0};
    done_tag_t a = {&log, 'a'};
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &a), 0);
    int hits = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), 0);
    ck_assert_int_eq(aev_future_cancel(fut, NULL), 1);
    ck_assert_int_eq(log.n, 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 1);
    ck_assert_str_eq(log.order, "a");
    ck_assert_int_eq(log.result_rc[0], AEV_ECANCELLED);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_done_callback_on_done_future)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_future_set_error(fut, -EPIPE, NULL), 0);
    done_log_t log = {0};
    done_tag_t a = {&log, 'a'}, b = {&log, 'b'};
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &a), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &b), 0);
    ck_assert_int_eq(log.n, 0); /* scheduled soon, not called now */
    tu_run_once(loop);
    ck_assert_str_eq(log.order, "ab");
    ck_assert_int_eq(log.result_rc[0], -EPIPE);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_remove_done_callback)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    done_log_t log = {0};
    done_tag_t x = {&log, 'x'}, y = {&log, 'y'}, z = {&log, 'z'};
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &x), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &y), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &x), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &z), 0);
    ck_assert_int_eq(aev_future_remove_done_callback(fut, done_cb, &x), 2);
    ck_assert_int_eq(aev_future_remove_done_callback(fut, done_cb, &x), 0);
    int value = 1;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    tu_run_once(loop);
    ck_assert_str_eq(log.order, "yz");
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_remove_done_callback_after_completion)
{
    /* Removing after the future completed but before the callbacks ran: asyncio then has
     * nothing left to remove (the callbacks were already scheduled). Only safety and the
     * count's consistency are checked: a removed callback must not run. */
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    done_log_t log = {0};
    done_tag_t x = {&log, 'x'};
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &x), 0);
    int value = 1;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    int removed = aev_future_remove_done_callback(fut, done_cb, &x);
    ck_assert_msg(removed == 0 || removed == 1, "removed %d", removed);
    tu_run_once(loop);
    ck_assert_int_eq(log.n, removed ? 0 : 1);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int calls;
    int rc;
    void *value;
} late_reader_t;

static int late_result_cb(aev_future_t *fut, void *arg)
{
    late_reader_t *r = arg;
    r->calls++;
    r->rc = aev_future_result(fut, &r->value);
    return 0;
}

START_TEST(test_loop_keeps_future_for_callbacks)
{
    /* The caller drops its reference before the done callbacks ran: the loop's own reference
     * keeps the future alive for them, and the value is destroyed only afterwards. */
    aev_loop_t *loop = tu_loop_new();
    memset(&destroyed, 0, sizeof destroyed);
    aev_future_t *fut = new_future(loop);
    late_reader_t r = {.rc = 1};
    static int value = 77;
    ck_assert_int_eq(aev_future_add_done_callback(fut, late_result_cb, &r), 0);
    ck_assert_int_eq(aev_future_set_result(fut, &value, destroy_fn), 0);
    aev_future_unref(fut);
    ck_assert_int_eq(destroyed.calls, 0);
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_ptr_eq(r.value, &value);
    tu_run_once(loop);
    tu_loop_free(loop);
    ck_assert_int_eq(destroyed.calls, 1);
}
END_TEST

static int set_result_later_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    static int v = 1;
    ck_assert_int_eq(aev_future_set_result(arg, &v, NULL), 0);
    return 0;
}

START_TEST(test_pending_future_dropped_by_caller)
{
    /* A pending future whose caller reference is gone, completed later by a callback that
     * holds its own reference. */
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = new_future(loop);
    done_log_t log = {0};
    done_tag_t a = {&log, 'a'};
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_cb, &a), 0);
    aev_future_t *held = aev_future_ref(fut);
    aev_future_unref(fut);
    ck_assert_int_eq(aev_loop_call_soon(loop, set_result_later_cb, held, NULL), 0);
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_str_eq(log.order, "a");
    aev_future_unref(held);
    tu_loop_free(loop);
}
END_TEST

/* ---- never-retrieved errors --------------------------------------------------- */

START_TEST(test_unretrieved_error_reported)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = new_future(loop);
    ck_assert_int_eq(aev_future_set_error(fut, -EIO, "nobody read me"), 0);
    aev_future_unref(fut);
    tu_run_once(loop); /* in case the report is deferred to the loop */
    ck_assert_int_eq(exc.count, 1);
    ck_assert_int_eq(exc.records[0].error, -EIO);
    ck_assert_ptr_nonnull(exc.records[0].future);
    ck_assert_msg(exc.records[0].message[0] != '\0', "empty message");
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_retrieved_error_not_reported)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *a = new_future(loop);
    aev_future_t *b = new_future(loop);
    aev_future_t *c = new_future(loop);
    ck_assert_int_eq(aev_future_set_error(a, -EIO, NULL), 0);
    ck_assert_int_eq(aev_future_set_error(b, -EIO, NULL), 0);
    ck_assert_int_eq(aev_future_cancel(c, "cancelled, not an error"), 1);
    ck_assert_int_eq(aev_future_result(a, NULL), -EIO);
    ck_assert_int_eq(aev_future_error(b), -EIO);
    aev_future_unref(a);
    aev_future_unref(b);
    aev_future_unref(c);
    tu_run_once(loop);
    ck_assert_int_eq(exc.count, 0);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_error_retrieved_by_done_callback_not_reported)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = new_future(loop);
    late_reader_t r = {.rc = 1};
    ck_assert_int_eq(aev_future_add_done_callback(fut, late_result_cb, &r), 0);
    ck_assert_int_eq(aev_future_set_error(fut, -ETIMEDOUT, NULL), 0);
    aev_future_unref(fut);
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.rc, -ETIMEDOUT);
    ck_assert_int_eq(exc.count, 0);
    tu_loop_free(loop);
}
END_TEST

static int failing_done_cb(aev_future_t *fut, void *arg)
{
    (void)fut;
    (*(int *)arg)++;
    return -ENOTCONN;
}

START_TEST(test_failing_done_callback_reported)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = new_future(loop);
    int calls = 0;
    ck_assert_int_eq(aev_future_add_done_callback(fut, failing_done_cb, &calls), 0);
    int value = 0;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(tu_exc_count_error(&exc, -ENOTCONN), 1);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

static Suite *future_suite(void)
{
    Suite *s = suite_create("future");
    TU_ADD(s, test_new_future_pending);
    TU_ADD(s, test_set_result);
    TU_ADD(s, test_destroy_on_last_reference);
    TU_ADD(s, test_set_after_cancel_or_error);
    TU_ADD(s, test_set_error);
    TU_ADD(s, test_cancel);
    TU_ADD(s, test_done_callbacks_scheduled_in_order);
    TU_ADD(s, test_done_callbacks_after_preexisting_callbacks);
    TU_ADD(s, test_done_callback_on_done_future);
    TU_ADD(s, test_remove_done_callback);
    TU_ADD(s, test_remove_done_callback_after_completion);
    TU_ADD(s, test_loop_keeps_future_for_callbacks);
    TU_ADD(s, test_pending_future_dropped_by_caller);
    TU_ADD(s, test_unretrieved_error_reported);
    TU_ADD(s, test_retrieved_error_not_reported);
    TU_ADD(s, test_error_retrieved_by_done_callback_not_reported);
    TU_ADD(s, test_failing_done_callback_reported);
    return s;
}

TU_MAIN(future_suite)
