/* libaev conformance: the exception handler (set/get, failing callbacks, default handler). */
#include "test_util.h"

static void other_handler(aev_loop_t *loop, const aev_exception_context_t *ctx, void *ud)
{
    (void)loop;
    (void)ctx;
    (*(int *)ud)++;
}

START_TEST(test_set_get_handler)
{
    aev_loop_t *loop = tu_loop_new();
    void *ud = (void *)0x1;
    ck_assert(aev_loop_get_exception_handler(loop, &ud) == NULL);
    ck_assert(aev_loop_get_exception_handler(loop, NULL) == NULL);

    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    ud = NULL;
    ck_assert(aev_loop_get_exception_handler(loop, &ud) == tu_exc_handler);
    ck_assert_ptr_eq(ud, &exc);

    int other = 0;
    aev_loop_set_exception_handler(loop, other_handler, &other);
    ck_assert(aev_loop_get_exception_handler(loop, &ud) == other_handler);
    ck_assert_ptr_eq(ud, &other);

    aev_loop_set_exception_handler(loop, NULL, NULL);
    ck_assert(aev_loop_get_exception_handler(loop, &ud) == NULL);
    tu_loop_free(loop);
}
END_TEST

static int fail_eio_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (*(int *)arg)++;
    return -EIO;
}

START_TEST(test_failing_callback_reaches_handler)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    int failed = 0, after = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, fail_eio_cb, &failed, &h), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &after, NULL), 0);
    /* Callbacks scheduled later, in later iterations, still run: the loop goes on. */
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, tu_count_cb, &after, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);

    ck_assert_int_eq(failed, 1);
    ck_assert_int_eq(after, 2);
    ck_assert_int_eq(exc.count, 1);
    ck_assert_int_eq(exc.records[0].error, -EIO);
    ck_assert_ptr_eq(exc.records[0].handle, h);
    ck_assert_msg(exc.records[0].message[0] != '\0', "empty message");
    ck_assert_ptr_null(exc.records[0].future);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int fd;
    int calls;
} fail_reader_t;

static int fail_reader_cb(aev_loop_t *loop, void *arg)
{
    fail_reader_t *r = arg;
    char buf[16];
    (void)loop;
    (void)!read(r->fd, buf, sizeof buf);
    r->calls++;
    return -EPROTO;
}

START_TEST(test_failing_timer_and_reader_reach_handler)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    int timer_calls = 0;
    aev_handle_t *th = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, 0.005, fail_eio_cb, &timer_calls, &th), 0);
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], "q");
    fail_reader_t r = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], fail_reader_cb, &r), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);

    ck_assert_int_eq(timer_calls, 1);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(exc.count, 2);
    ck_assert_int_eq(tu_exc_count_error(&exc, -EIO), 1);
    ck_assert_int_eq(tu_exc_count_error(&exc, -EPROTO), 1);
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(exc.records[i].handle);
        ck_assert_msg(exc.records[i].message[0] != '\0', "empty message");
        if (exc.records[i].error == -EIO)
            ck_assert_ptr_eq(exc.records[i].handle, th);
    }
    /* A reader that reported an error stays registered, as in asyncio. */
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    aev_handle_unref(th);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_call_exception_handler_custom)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_exception_context_t ctx = {
        .message = "custom failure message",
        .error = -EPIPE,
        .error_detail = "the pipe broke",
        .has_socket = 1,
        .socket = 42,
    };
    aev_loop_call_exception_handler(loop, &ctx);
    ck_assert_int_eq(exc.count, 1);
    ck_assert_str_eq(exc.records[0].message, "custom failure message");
    ck_assert_int_eq(exc.records[0].error, -EPIPE);
    ck_assert_int_eq(exc.records[0].has_detail, 1);
    ck_assert_str_eq(exc.records[0].detail, "the pipe broke");
    ck_assert_int_eq(exc.records[0].has_socket, 1);
    ck_assert_int_eq(exc.records[0].socket, 42);
    ck_assert_ptr_null(exc.records[0].handle);
    ck_assert_ptr_null(exc.records[0].future);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_default_handler_logs)
{
    aev_loop_t *loop = tu_loop_new();
    tu_log_capture_start();
    aev_exception_context_t ctx = {
        .message = "unique-message-8472",
        .error = -EIO,
    };
    aev_loop_default_exception_handler(loop, &ctx);
    char dump[4096];
    int i = tu_log_find(AEV_LOG_DEBUG, "unique-message-8472", NULL, NULL);
    ck_assert_msg(i >= 0, "message not logged; log:\n%s", tu_log_dump(dump, sizeof dump));
    ck_assert_msg(tu_log_state()->entries[i].level == AEV_LOG_ERROR,
                  "logged at level %d, not ERROR", tu_log_state()->entries[i].level);
    /* The error is part of what is logged (by name or by text). */
    int has_error = tu_log_find(AEV_LOG_DEBUG, aev_err_name(-EIO), NULL, NULL) >= 0 ||
                    tu_log_find(AEV_LOG_DEBUG, aev_strerror(-EIO), NULL, NULL) >= 0;
    ck_assert_msg(has_error, "error not logged; log:\n%s", tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_call_exception_handler_uses_default)
{
    /* Without a custom handler, call_exception_handler goes to the default one (logs). */
    aev_loop_t *loop = tu_loop_new();
    tu_log_capture_start();
    aev_exception_context_t ctx = {.message = "via-call-exception-handler-5531"};
    aev_loop_call_exception_handler(loop, &ctx);
    char dump[4096];
    ck_assert_msg(tu_log_find(AEV_LOG_ERROR, "via-call-exception-handler-5531", NULL, NULL) >= 0,
                  "not logged at ERROR; log:\n%s", tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_failing_callback_with_default_handler)
{
    aev_loop_t *loop = tu_loop_new();
    tu_log_capture_start();
    int failed = 0, after = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, fail_eio_cb, &failed, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &after, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(failed, 1);
    ck_assert_int_eq(after, 1);
    char dump[4096];
    ck_assert_msg(tu_log_state()->count >= 1 && tu_log_find(AEV_LOG_ERROR, NULL, NULL, NULL) >= 0,
                  "nothing logged at ERROR; log:\n%s", tu_log_dump(dump, sizeof dump));
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_restored_default_handler)
{
    aev_loop_t *loop = tu_loop_new();
    int custom = 0;
    aev_loop_set_exception_handler(loop, other_handler, &custom);
    aev_loop_set_exception_handler(loop, NULL, NULL);
    tu_log_capture_start();
    int failed = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, fail_eio_cb, &failed, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(failed, 1);
    ck_assert_int_eq(custom, 0);
    ck_assert_int_ge(tu_log_find(AEV_LOG_ERROR, NULL, NULL, NULL), 0);
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_loop_t *loop;
    int calls;
    int seen_error;
} chaining_t;

static void delegating_handler(aev_loop_t *loop, const aev_exception_context_t *ctx, void *ud)
{
    chaining_t *c = ud;
    c->calls++;
    c->seen_error = ctx->error;
    /* A custom handler may call the default one (asyncio's documented pattern). */
    aev_loop_default_exception_handler(loop, ctx);
}

START_TEST(test_custom_handler_can_delegate)
{
    aev_loop_t *loop = tu_loop_new();
    chaining_t c = {.loop = loop};
    aev_loop_set_exception_handler(loop, delegating_handler, &c);
    tu_log_capture_start();
    int failed = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, fail_eio_cb, &failed, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(c.seen_error, -EIO);
    ck_assert_int_ge(tu_log_find(AEV_LOG_ERROR, NULL, NULL, NULL), 0);
    tu_log_capture_stop();
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_error_names)
{
    ck_assert_str_eq(aev_err_name(AEV_ECLOSED), "AEV_ECLOSED");
    ck_assert_str_eq(aev_err_name(-EBADF), "EBADF");
    ck_assert_str_eq(aev_strerror(AEV_ECLOSED), "event loop is closed");
    ck_assert_ptr_nonnull(aev_strerror(-EIO));
    ck_assert_ptr_nonnull(aev_error_detail());
}
END_TEST

static Suite *exception_suite(void)
{
    Suite *s = suite_create("exception");
    TU_ADD(s, test_set_get_handler);
    TU_ADD(s, test_failing_callback_reaches_handler);
    TU_ADD(s, test_failing_timer_and_reader_reach_handler);
    TU_ADD(s, test_call_exception_handler_custom);
    TU_ADD(s, test_default_handler_logs);
    TU_ADD(s, test_call_exception_handler_uses_default);
    TU_ADD(s, test_failing_callback_with_default_handler);
    TU_ADD(s, test_restored_default_handler);
    TU_ADD(s, test_custom_handler_can_delegate);
    TU_ADD(s, test_error_names);
    return s;
}

TU_MAIN(exception_suite)
