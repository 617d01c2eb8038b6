/* libaev conformance: close (refused while running, idempotent, discards pending work,
 * refuses later calls, releases everything, owns no user resources). */
#include "test_util.h"

typedef struct {
    int rc_close;
    int is_closed_inside;
} close_inside_t;

static int close_inside_cb(aev_loop_t *loop, void *arg)
{
    close_inside_t *c = arg;
    c->rc_close = aev_loop_close(loop);
    c->is_closed_inside = aev_loop_is_closed(loop);
    return 0;
}

START_TEST(test_close_refused_while_running)
{
    aev_loop_t *loop = tu_loop_new();
    close_inside_t c = {.rc_close = 1, .is_closed_inside = -1};
    int after = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, close_inside_cb, &c, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, tu_count_cb, &after, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(c.rc_close, AEV_ERUNNING);
    ck_assert_int_eq(c.is_closed_inside, 0);
    ck_assert_int_eq(after, 1); /* the loop went on */
    ck_assert_int_eq(aev_loop_is_closed(loop), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(aev_loop_is_closed(loop), 1);
    aev_loop_free(loop);
}
END_TEST

START_TEST(test_close_idempotent)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_is_closed(loop), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(aev_loop_is_closed(loop), 1);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(aev_loop_is_closed(loop), 1);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);
    aev_loop_free(loop);
    aev_loop_free(NULL); /* safe */
}
END_TEST

START_TEST(test_calls_after_close_refused)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    int hits = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, &h), AEV_ECLOSED);
    aev_handle_unref(h);
    h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.0, tu_count_cb, &hits, &h), AEV_ECLOSED);
    aev_handle_unref(h);
    h = NULL;
    ck_assert_int_eq(aev_loop_call_at(loop, 0.0, tu_count_cb, &hits, NULL), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_count_cb, &hits, &h), AEV_ECLOSED);
    aev_handle_unref(h);
    int sv[2];
    tu_socketpair(sv);
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], tu_count_cb, &hits), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], tu_count_cb, &hits), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 0);
    ck_assert_int_eq(aev_loop_run_forever(loop), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, fut), AEV_ECLOSED);
    aev_loop_stop(loop); /* harmless */
    ck_assert_int_eq(aev_loop_run_forever(loop), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_is_running(loop), 0);
    ck_assert_int_eq(hits, 0);
    aev_future_unref(fut);
    aev_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

typedef struct {
    int value;
    int runs;
} user_arg_t;

static int user_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ((user_arg_t *)arg)->runs++;
    return 0;
}

START_TEST(test_close_discards_pending_and_releases)
{
    enum { N = 1000 };
    aev_loop_t *loop = tu_loop_new();
    /* The arguments live on the stack: the loop must neither run nor free them. */
    user_arg_t arg = {.value = 1};
    aev_handle_t *soon[N], *later[N];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(aev_loop_call_soon(loop, user_cb, &arg, &soon[i]), 0);
        ck_assert_int_eq(aev_loop_call_later(loop, 0.001 * (i % 50), user_cb, &arg, &later[i]), 0);
        ck_assert_int_eq(aev_loop_call_soon(loop, user_cb, &arg, NULL), 0);
        ck_assert_int_eq(aev_loop_call_later(loop, 60.0, user_cb, &arg, NULL), 0);
        ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, user_cb, &arg, NULL), 0);
    }
    tu_sleep(0.06); /* the timers are now due: still discarded */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(arg.runs, 0);
    for (int i = 0; i < N; i++) {
        aev_handle_unref(soon[i]);
        aev_handle_unref(later[i]);
    }
    aev_loop_free(loop);
    ck_assert_int_eq(arg.runs, 0);
    ck_assert_int_eq(arg.value, 1);
}
END_TEST

START_TEST(test_free_without_close_discards)
{
    aev_loop_t *loop = tu_loop_new();
    user_arg_t arg = {0};
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(aev_loop_call_soon(loop, user_cb, &arg, NULL), 0);
        ck_assert_int_eq(aev_loop_call_later(loop, 1.0, user_cb, &arg, NULL), 0);
    }
    aev_loop_free(loop); /* closes, then frees; nothing may leak */
    ck_assert_int_eq(arg.runs, 0);
}
END_TEST

START_TEST(test_close_after_partial_run)
{
    /* Some callbacks ran, others were queued by them and are pending at close. */
    aev_loop_t *loop = tu_loop_new();
    user_arg_t arg = {0};
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(aev_loop_call_soon(loop, user_cb, &arg, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(arg.runs, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(aev_loop_call_soon(loop, user_cb, &arg, NULL), 0);
    tu_loop_free(loop);
    ck_assert_int_eq(arg.runs, 10);
}
END_TEST

START_TEST(test_close_leaves_user_fds_open)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    int hits = 0;
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], tu_count_cb, &hits), 0);
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[1], tu_count_cb, &hits), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(tu_fd_is_open(sv[0]), 1);
    ck_assert_int_eq(tu_fd_is_open(sv[1]), 1);
    /* Watchers are gone with the close. */
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[1]), 0);
    aev_loop_free(loop);
    ck_assert_int_eq(tu_fd_is_open(sv[0]), 1);
    ck_assert_int_eq(tu_fd_is_open(sv[1]), 1);
    ck_assert_int_eq(hits, 0);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static int never_cb(aev_future_t *fut, void *arg)
{
    (void)fut;
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_close_with_pending_future_callbacks)
{
    /* Done callbacks scheduled but not yet run when the loop closes: discarded, and the
     * loop's references to the future are released (no leak once ours goes too). */
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    int calls = 0;
    ck_assert_int_eq(aev_future_add_done_callback(fut, never_cb, &calls), 0);
    int value = 1;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(calls, 0);
    aev_future_unref(fut);
    aev_loop_free(loop);
    ck_assert_int_eq(calls, 0);
}
END_TEST

START_TEST(test_many_loops)
{
    /* Creating and closing loops repeatedly leaks neither memory nor descriptors. A first
     * loop is made before measuring, in case the library sets up process-wide state once. */
    tu_loop_free(tu_loop_new());
    int before = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(before, 0);
    close(before);
    for (int i = 0; i < 50; i++) {
        aev_loop_t *loop = tu_loop_new();
        int hits = 0;
        ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), 0);
        tu_run_once(loop);
        ck_assert_int_eq(hits, 1);
        tu_loop_free(loop);
    }
    int after = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(after, 0);
    close(after);
    ck_assert_msg(after == before, "lowest free fd went from %d to %d: descriptors leak", before,
                  after);
}
END_TEST

static Suite *close_suite(void)
{
    Suite *s = suite_create("close");
    TU_ADD(s, test_close_refused_while_running);
    TU_ADD(s, test_close_idempotent);
    TU_ADD(s, test_calls_after_close_refused);
    TU_ADD(s, test_close_discards_pending_and_releases);
    TU_ADD(s, test_free_without_close_discards);
    TU_ADD(s, test_close_after_partial_run);
    TU_ADD(s, test_close_leaves_user_fds_open);
    TU_ADD(s, test_close_with_pending_future_callbacks);
    TU_ADD(s, test_many_loops);
    return s;
}

TU_MAIN(close_suite)
