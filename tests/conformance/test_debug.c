/* libaev conformance: debug mode (flag, environment, slow callbacks, thread checks,
 * unclosed resources). */
#include "test_util.h"

START_TEST(test_debug_default_off_and_set)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_get_debug(loop), 0);
    aev_loop_set_debug(loop, 1);
    ck_assert_int_eq(aev_loop_get_debug(loop), 1);
    aev_loop_set_debug(loop, 0);
    ck_assert_int_eq(aev_loop_get_debug(loop), 0);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_debug_from_environment)
{
    ck_assert_int_eq(setenv("AEV_DEBUG", "1", 1), 0);
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_get_debug(loop), 1);
    tu_loop_free(loop);

    ck_assert_int_eq(setenv("AEV_DEBUG", "0", 1), 0);
    loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_get_debug(loop), 0);
    tu_loop_free(loop);

    /* The API is stronger than the environment. */
    ck_assert_int_eq(setenv("AEV_DEBUG", "1", 1), 0);
    aev_loop_options_t off = {.debug = -1};
    ck_assert_int_eq(aev_loop_new(&off, &loop), 0);
    ck_assert_int_eq(aev_loop_get_debug(loop), 0);
    tu_loop_free(loop);

    ck_assert_int_eq(setenv("AEV_DEBUG", "", 1), 0);
    aev_loop_options_t on = {.debug = 1};
    ck_assert_int_eq(aev_loop_new(&on, &loop), 0);
    ck_assert_int_eq(aev_loop_get_debug(loop), 1);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_slow_callback_duration)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_double_eq_tol(aev_loop_get_slow_callback_duration(loop), 0.1, 1e-12);
    aev_loop_set_slow_callback_duration(loop, 0.01);
    ck_assert_double_eq_tol(aev_loop_get_slow_callback_duration(loop), 0.01, 1e-12);
    tu_loop_free(loop);
}
END_TEST

static int sleepy_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    tu_sleep(0.03);
    return 0;
}

/* Non-static: its symbol must be visible to dladdr() (export_dynamic executable). */
int aev_conformance_slow_callback(aev_loop_t *loop, void *arg);
int aev_conformance_slow_callback(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    tu_sleep(0.03);
    return 0;
}

START_TEST(test_slow_callback_logged_with_name)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    aev_loop_set_slow_callback_duration(loop, 0.01);
    tu_log_capture_start();
    aev_call_options_t opts = {.name = "sleepy"};
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, sleepy_cb, NULL, NULL), 0);
    tu_run_once(loop);
    char dump[8192];
    int i = tu_log_find(AEV_LOG_WARNING, "sleepy", "took", NULL);
    ck_assert_msg(i >= 0, "no slow-callback warning; log:\n%s", tu_log_dump(dump, sizeof dump));
    ck_assert_int_eq(tu_log_state()->entries[i].level, AEV_LOG_WARNING);
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_slow_callback_logged_with_symbol)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    aev_loop_set_slow_callback_duration(loop, 0.01);
    tu_log_capture_start();
    ck_assert_int_eq(aev_loop_call_soon(loop, aev_conformance_slow_callback, NULL, NULL), 0);
    tu_run_once(loop);
    char dump[8192];
    ck_assert_msg(tu_log_find(AEV_LOG_WARNING, "aev_conformance_slow_callback", "took", NULL) >= 0,
                  "no slow-callback warning naming the function; log:\n%s",
                  tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_slow_timer_logged)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    aev_loop_set_slow_callback_duration(loop, 0.01);
    tu_log_capture_start();
    aev_call_options_t opts = {.name = "sleepy-timer"};
    ck_assert_int_eq(aev_loop_call_later_ex(loop, 0.0, &opts, sleepy_cb, NULL, NULL), 0);
    tu_run_once(loop);
    char dump[8192];
    ck_assert_msg(tu_log_find(AEV_LOG_WARNING, "sleepy-timer", "took", NULL) >= 0,
                  "no slow-callback warning; log:\n%s", tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_slow_callback_not_logged_without_debug)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_slow_callback_duration(loop, 0.01);
    tu_log_capture_start();
    aev_call_options_t opts = {.name = "sleepy"};
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, sleepy_cb, NULL, NULL), 0);
    tu_run_once(loop);
    char dump[8192];
    ck_assert_msg(tu_log_find(AEV_LOG_DEBUG, "sleepy", NULL, NULL) < 0,
                  "slow callback reported with debug off; log:\n%s",
                  tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_fast_callback_not_logged)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    aev_loop_set_slow_callback_duration(loop, 1.0); /* a 30 ms callback is not slow */
    tu_log_capture_start();
    aev_call_options_t opts = {.name = "sleepy"};
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, sleepy_cb, NULL, NULL), 0);
    tu_run_once(loop);
    char dump[8192];
    ck_assert_msg(tu_log_find(AEV_LOG_DEBUG, "sleepy", "took", NULL) < 0,
                  "callback under the threshold reported; log:\n%s",
                  tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

/* ---- foreign threads ------------------------------------------------------ */

typedef struct {
    aev_loop_t *loop;
    aev_future_t *fut; /* created by the loop's thread */
    int rc_soon;
    int rc_later;
    int rc_threadsafe;
    int rc_create_future;
    int rc_set_result;
    int rc_cancel;
    int foreign_ran;
} foreign_t;

static int foreign_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ((foreign_t *)arg)->foreign_ran++;
    return 0;
}

static void *foreign_thread(void *arg)
{
    foreign_t *f = arg;
    f->rc_soon = aev_loop_call_soon(f->loop, foreign_cb, f, NULL);
    f->rc_later = aev_loop_call_later(f->loop, 0.0, foreign_cb, f, NULL);
    aev_future_t *other = NULL;
    f->rc_create_future = aev_loop_create_future(f->loop, &other);
    f->rc_set_result = aev_future_set_result(f->fut, NULL, NULL);
    f->rc_cancel = aev_future_cancel(f->fut, "from another thread");
    f->rc_threadsafe = aev_loop_call_soon_threadsafe(f->loop, tu_stop_cb, NULL, NULL);
    return NULL;
}

static int spawn_foreign_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    pthread_t th;
    /* The loop is running (inside this callback) while the thread calls into it. */
    ck_assert_int_eq(pthread_create(&th, NULL, foreign_thread, arg), 0);
    pthread_join(th, NULL);
    return 0;
}

START_TEST(test_debug_detects_foreign_thread)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    foreign_t f = {.loop = loop, .rc_soon = 1, .rc_later = 1, .rc_threadsafe = 1};
    ck_assert_int_eq(aev_loop_create_future(loop, &f.fut), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, spawn_foreign_cb, &f, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(f.rc_soon, AEV_EWRONG_THREAD);
    ck_assert_int_eq(f.rc_later, AEV_EWRONG_THREAD);
    ck_assert_int_eq(f.rc_create_future, AEV_EWRONG_THREAD);
    ck_assert_int_eq(f.rc_set_result, AEV_EWRONG_THREAD);
    ck_assert_int_eq(f.rc_cancel, AEV_EWRONG_THREAD);
    ck_assert_int_eq(aev_future_done(f.fut), 0);
    aev_future_unref(f.fut);
    ck_assert_int_eq(f.rc_threadsafe, 0);
    ck_assert_int_eq(f.foreign_ran, 0);
    tu_run_once(loop);
    ck_assert_int_eq(f.foreign_ran, 0);
    tu_loop_free(loop);
}
END_TEST

/* ---- unclosed resources ---------------------------------------------------- */

static int noop_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return 0;
}

START_TEST(test_debug_reports_watched_fd_at_close)
{
    enum { DISTINCT_FD = 517 };
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_debug(loop, 1);
    int sv[2];
    tu_socketpair(sv);
    ck_assert_int_eq(dup2(sv[0], DISTINCT_FD), DISTINCT_FD);
    ck_assert_int_eq(aev_loop_add_reader(loop, DISTINCT_FD, noop_cb, NULL), 0);
    tu_log_capture_start();
    ck_assert_int_eq(aev_loop_close(loop), 0);
    char dump[8192];
    int found = tu_log_find(AEV_LOG_WARNING, "517", "unclosed", NULL) >= 0 ||
                tu_log_find(AEV_LOG_WARNING, "517", "still watched", NULL) >= 0;
    ck_assert_msg(found, "no warning about fd 517 at close; log:\n%s",
                  tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    aev_loop_free(loop);
    /* The loop does not own the fd: it is still open. */
    ck_assert_int_eq(tu_fd_is_open(DISTINCT_FD), 1);
    close(DISTINCT_FD);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static Suite *debug_suite(void)
{
    Suite *s = suite_create("debug");
    TU_ADD(s, test_debug_default_off_and_set);
    TU_ADD(s, test_debug_from_environment);
    TU_ADD(s, test_slow_callback_duration);
    TU_ADD(s, test_slow_callback_logged_with_name);
    TU_ADD(s, test_slow_callback_logged_with_symbol);
    TU_ADD(s, test_slow_timer_logged);
    TU_ADD(s, test_slow_callback_not_logged_without_debug);
    TU_ADD(s, test_fast_callback_not_logged);
    TU_ADD(s, test_debug_detects_foreign_thread);
    TU_ADD(s, test_debug_reports_watched_fd_at_close);
    return s;
}

TU_MAIN(debug_suite)
