/* libaev conformance: run_forever, stop, is_running, get_running, run_until_complete. */
#include "test_util.h"

/* ---- stop() before run_forever() ---------------------------------------- */

typedef struct {
    int fd;
    int calls;
    char data[16];
} reader_state_t;

static int drain_reader_cb(aev_loop_t *loop, void *arg)
{
    reader_state_t *st = arg;
    (void)loop;
    ssize_t n = read(st->fd, st->data, sizeof st->data - 1);
    if (n > 0)
        st->data[n] = '\0';
    st->calls++;
    return 0;
}

START_TEST(test_stop_before_run_runs_scheduled_and_returns)
{
    aev_loop_t *loop = tu_loop_new();
    int soon = 0, late = 0;
    aev_handle_t *far = NULL;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &soon, NULL), 0);
    /* A timer far in the future must neither run nor make run_forever block. */
    ck_assert_int_eq(aev_loop_call_later(loop, 10.0, tu_count_cb, &late, &far), 0);

    aev_loop_stop(loop);
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    double elapsed = tu_now() - t0;

    ck_assert_int_eq(soon, 3);
    ck_assert_int_eq(late, 0);
    ck_assert_msg(elapsed < 1.0, "run_forever after stop() took %.3f s", elapsed);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);

    aev_handle_cancel(far);
    aev_handle_unref(far);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_stop_before_run_with_nothing_scheduled)
{
    aev_loop_t *loop = tu_loop_new();
    aev_handle_t *far = NULL;
    int late = 0;
    ck_assert_int_eq(aev_loop_call_later(loop, 10.0, tu_count_cb, &late, &far), 0);
    aev_loop_stop(loop);
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    double elapsed = tu_now() - t0;
    ck_assert_msg(elapsed < 1.0, "run_forever after stop() blocked for %.3f s", elapsed);
    ck_assert_int_eq(late, 0);
    aev_handle_unref(far);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_stop_before_run_polls_io_once)
{
    /* Data already waiting on a socket: the single zero-timeout poll sees it and the
     * reader runs within that one run. */
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], "ping");
    reader_state_t st = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], drain_reader_cb, &st), 0);

    aev_loop_stop(loop);
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    double elapsed = tu_now() - t0;

    ck_assert_int_eq(st.calls, 1);
    ck_assert_str_eq(st.data, "ping");
    ck_assert_msg(elapsed < 1.0, "run_forever after stop() took %.3f s", elapsed);

    /* Nothing to read any more: another stopped run does not call the reader and
     * does not block waiting for data. */
    aev_loop_stop(loop);
    t0 = tu_now();
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    elapsed = tu_now() - t0;
    ck_assert_int_eq(st.calls, 1);
    ck_assert_msg(elapsed < 1.0, "run_forever after stop() blocked for %.3f s", elapsed);

    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_stop_before_run_callbacks_and_io_strict)
{
    /* With polling on every iteration, the stopped run executes both the callbacks
     * already scheduled and the reader for data ready at that moment. */
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_io_poll_interval(loop, 0);
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], "x");
    reader_state_t st = {.fd = sv[0]};
    int soon = 0;
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], drain_reader_cb, &st), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &soon, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(soon, 1);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* ---- stop() during a batch ---------------------------------------------- */

typedef struct {
    int run_no;       /* which run_forever call is in progress (1, 2) */
    char log[16];     /* callback letters in call order */
    int log_runs[16]; /* run_no of each entry */
    int n;
} batch_state_t;

static void batch_note(batch_state_t *st, char c)
{
    if (st->n < 16) {
        st->log[st->n] = c;
        st->log_runs[st->n] = st->run_no;
        st->n++;
    }
}

static int batch_c_cb(aev_loop_t *loop, void *arg)
{
    batch_note(arg, 'C');
    aev_loop_stop(loop);
    return 0;
}

static int batch_a_cb(aev_loop_t *loop, void *arg)
{
    batch_note(arg, 'A');
    aev_loop_stop(loop);
    ck_assert_int_eq(aev_loop_call_soon(loop, batch_c_cb, arg, NULL), 0);
    return 0;
}

static int batch_b_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    batch_note(arg, 'B');
    return 0;
}

START_TEST(test_stop_during_batch)
{
    aev_loop_t *loop = tu_loop_new();
    batch_state_t st = {0};
    ck_assert_int_eq(aev_loop_call_soon(loop, batch_a_cb, &st, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, batch_b_cb, &st, NULL), 0);

    st.run_no = 1;
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    /* A stopped the loop, B (same batch) still ran, C (scheduled by A) did not. */
    ck_assert_int_eq(st.n, 2);
    ck_assert_int_eq(st.log[0], 'A');
    ck_assert_int_eq(st.log[1], 'B');

    st.run_no = 2;
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(st.n, 3);
    ck_assert_int_eq(st.log[2], 'C');
    ck_assert_int_eq(st.log_runs[2], 2);
    tu_loop_free(loop);
}
END_TEST

static int stop_twice_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_stop(loop);
    aev_loop_stop(loop);
    return 0;
}

START_TEST(test_stop_is_not_sticky_across_runs)
{
    /* One stop() ends one run: the next run_forever keeps running until stopped again. */
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_call_soon(loop, stop_twice_cb, NULL, NULL), 0);
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);

    int hits = 0;
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, tu_count_cb, &hits, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.05, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 1);
    tu_loop_free(loop);
}
END_TEST

/* ---- is_running / get_running ------------------------------------------- */

typedef struct {
    int is_running;
    aev_loop_t *running;
    int rc_forever;
    int rc_until;
    int rc_other;
    aev_loop_t *other;
    aev_future_t *fut;
} inside_state_t;

static int inside_cb(aev_loop_t *loop, void *arg)
{
    inside_state_t *st = arg;
    st->is_running = aev_loop_is_running(loop);
    st->running = aev_loop_get_running();
    st->rc_forever = aev_loop_run_forever(loop);
    if (st->fut)
        st->rc_until = aev_loop_run_until_complete(loop, st->fut);
    if (st->other)
        st->rc_other = aev_loop_run_forever(st->other);
    aev_loop_stop(loop);
    return 0;
}

START_TEST(test_is_running_and_get_running)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_is_running(loop), 0);
    ck_assert_ptr_null(aev_loop_get_running());

    inside_state_t st = {.is_running = -1, .rc_forever = 1};
    ck_assert_int_eq(aev_loop_call_soon(loop, inside_cb, &st, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);

    ck_assert_int_eq(st.is_running, 1);
    ck_assert_ptr_eq(st.running, loop);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);
    ck_assert_ptr_null(aev_loop_get_running());
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_inside_running_loop_refused)
{
    aev_loop_t *loop = tu_loop_new();
    inside_state_t st = {.rc_forever = 1, .rc_until = 1};
    ck_assert_int_eq(aev_loop_create_future(loop, &st.fut), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, inside_cb, &st, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(st.rc_forever, AEV_ERUNNING);
    ck_assert_int_eq(st.rc_until, AEV_ERUNNING);
    /* The refused nested calls did not disturb the loop: it still runs. */
    int hits = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 1);
    aev_future_unref(st.fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_other_loop_inside_callback_refused)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_t *other = tu_loop_new();
    int hits = 0;
    ck_assert_int_eq(aev_loop_call_soon(other, tu_count_cb, &hits, NULL), 0);
    inside_state_t st = {.rc_forever = 1, .rc_other = 1, .other = other};
    ck_assert_int_eq(aev_loop_call_soon(loop, inside_cb, &st, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(st.rc_other, AEV_EOTHER_LOOP);
    ck_assert_int_eq(hits, 0);
    ck_assert_int_eq(aev_loop_is_running(other), 0);
    /* The other loop works normally once the first one is no longer running. */
    tu_run_once(other);
    ck_assert_int_eq(hits, 1);
    tu_loop_free(other);
    tu_loop_free(loop);
}
END_TEST

/* ---- run_until_complete ------------------------------------------------- */

static int set_result_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    static int value = 42;
    ck_assert_int_eq(aev_future_set_result(arg, &value, NULL), 0);
    return 0;
}

static int set_eio_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ck_assert_int_eq(aev_future_set_error(arg, -EIO, "disk on fire"), 0);
    return 0;
}

static int cancel_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ck_assert_int_eq(aev_future_cancel(arg, "bye"), 1);
    return 0;
}

START_TEST(test_run_until_complete_result_from_callback)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, set_result_cb, fut, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), 0);
    ck_assert_int_eq(aev_future_done(fut), 1);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(fut, &v), 0);
    ck_assert_int_eq(*(int *)v, 42);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_result_from_timer)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    double t0 = aev_loop_time(loop);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, set_result_cb, fut, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), 0);
    double elapsed = aev_loop_time(loop) - t0;
    ck_assert_msg(elapsed >= 0.03 - 1e-6 && elapsed < 1.5, "elapsed %.4f s", elapsed);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_error)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, set_eio_cb, fut, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), -EIO);
    /* run_until_complete read the error (as asyncio's future.result() does), so dropping
     * the future reports nothing. */
    aev_future_unref(fut);
    tu_run_once(loop);
    ck_assert_int_eq(exc.count, 0);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_cancelled)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, cancel_cb, fut, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), AEV_ECANCELLED);
    ck_assert_int_eq(aev_future_cancelled(fut), 1);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_stopped)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), AEV_ESTOPPED);
    ck_assert_int_eq(aev_future_done(fut), 0);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);

    /* The loop and the future are still usable: completing it later works. */
    ck_assert_int_eq(aev_loop_call_soon(loop, set_result_cb, fut, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), 0);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_already_done)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    int value = 7, late = 0;
    aev_handle_t *far = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 10.0, tu_count_cb, &late, &far), 0);
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), 0);
    double elapsed = tu_now() - t0;
    ck_assert_msg(elapsed < 1.0, "run_until_complete(done future) took %.3f s", elapsed);
    ck_assert_int_eq(late, 0);
    aev_handle_unref(far);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_runs_other_callbacks)
{
    /* Callbacks scheduled before the future completes run too. */
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    int hits = 0;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, tu_count_cb, &hits, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, set_result_cb, fut, NULL), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), 0);
    ck_assert_int_eq(hits, 2);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

static Suite *run_stop_suite(void)
{
    Suite *s = suite_create("run_stop");
    TU_ADD(s, test_stop_before_run_runs_scheduled_and_returns);
    TU_ADD(s, test_stop_before_run_with_nothing_scheduled);
    TU_ADD(s, test_stop_before_run_polls_io_once);
    TU_ADD(s, test_stop_before_run_callbacks_and_io_strict);
    TU_ADD(s, test_stop_during_batch);
    TU_ADD(s, test_stop_is_not_sticky_across_runs);
    TU_ADD(s, test_is_running_and_get_running);
    TU_ADD(s, test_run_inside_running_loop_refused);
    TU_ADD(s, test_run_other_loop_inside_callback_refused);
    TU_ADD(s, test_run_until_complete_result_from_callback);
    TU_ADD(s, test_run_until_complete_result_from_timer);
    TU_ADD(s, test_run_until_complete_error);
    TU_ADD(s, test_run_until_complete_cancelled);
    TU_ADD(s, test_run_until_complete_stopped);
    TU_ADD(s, test_run_until_complete_already_done);
    TU_ADD(s, test_run_until_complete_runs_other_callbacks);
    return s;
}

TU_MAIN(run_stop_suite)
