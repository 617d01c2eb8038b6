/* libaev conformance: handles (cancel, cancelled, context, describe, references). */
#include "test_util.h"

START_TEST(test_cancel_pending)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0, other = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, &h), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &other, NULL), 0);
    ck_assert_int_eq(aev_handle_cancelled(h), 0);
    aev_handle_cancel(h);
    ck_assert_int_eq(aev_handle_cancelled(h), 1);
    aev_handle_cancel(h); /* twice: a no-op */
    ck_assert_int_eq(aev_handle_cancelled(h), 1);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 0);
    ck_assert_int_eq(other, 1);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 0);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_cancel_after_run_is_noop)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0, timer_hits = 0;
    aev_handle_t *h = NULL, *t = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, &h), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.0, tu_count_cb, &timer_hits, &t), 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 1);
    ck_assert_int_eq(timer_hits, 1);
    /* Safe: no crash, and the callbacks do not run again. (asyncio sets the cancelled
     * flag even then, so cancelled() is not asserted.) */
    aev_handle_cancel(h);
    aev_handle_cancel(h);
    aev_handle_cancel(t);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 1);
    ck_assert_int_eq(timer_hits, 1);
    aev_handle_unref(h);
    aev_handle_unref(t);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_handle_t *victim;
    int ran;
} sibling_t;

static int cancel_sibling_cb(aev_loop_t *loop, void *arg)
{
    sibling_t *s = arg;
    (void)loop;
    s->ran++;
    aev_handle_cancel(s->victim);
    return 0;
}

START_TEST(test_cancel_sibling_in_same_batch)
{
    /* B is already in the ready batch when A cancels it: B must not run. */
    aev_loop_t *loop = tu_loop_new();
    int b_hits = 0;
    sibling_t a = {0};
    ck_assert_int_eq(aev_loop_call_soon(loop, cancel_sibling_cb, &a, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &b_hits, &a.victim), 0);
    tu_run_once(loop);
    ck_assert_int_eq(a.ran, 1);
    ck_assert_int_eq(b_hits, 0);
    ck_assert_int_eq(aev_handle_cancelled(a.victim), 1);
    aev_handle_unref(a.victim);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_handle_t *self;
    int ran;
    int cancelled_inside;
} self_cancel_t;

static int self_cancel_cb(aev_loop_t *loop, void *arg)
{
    self_cancel_t *s = arg;
    (void)loop;
    s->ran++;
    aev_handle_cancel(s->self); /* cancelling the running handle: harmless */
    return 0;
}

START_TEST(test_cancel_self_while_running)
{
    aev_loop_t *loop = tu_loop_new();
    self_cancel_t s = {0};
    ck_assert_int_eq(aev_loop_call_soon(loop, self_cancel_cb, &s, &s.self), 0);
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_int_eq(s.ran, 1);
    aev_handle_unref(s.self);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_handle_context)
{
    aev_loop_t *loop = tu_loop_new();
    aev_context_t *ctx = aev_context_new();
    ck_assert_ptr_nonnull(ctx);
    aev_call_options_t opts = {.context = ctx};
    int hits = 0;
    aev_handle_t *soon = NULL, *later = NULL, *at = NULL, *ts = NULL;
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, tu_count_cb, &hits, &soon), 0);
    ck_assert_int_eq(aev_loop_call_later_ex(loop, 0.0, &opts, tu_count_cb, &hits, &later), 0);
    ck_assert_int_eq(
        aev_loop_call_at_ex(loop, aev_loop_time(loop), &opts, tu_count_cb, &hits, &at), 0);
    ck_assert_int_eq(aev_loop_call_soon_threadsafe_ex(loop, &opts, tu_count_cb, &hits, &ts), 0);
    ck_assert_ptr_eq(aev_handle_get_context(soon), ctx);
    ck_assert_ptr_eq(aev_handle_get_context(later), ctx);
    ck_assert_ptr_eq(aev_handle_get_context(at), ctx);
    ck_assert_ptr_eq(aev_handle_get_context(ts), ctx);
    /* The handle keeps what it needs: dropping our context reference early is fine. */
    aev_context_unref(ctx);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 4);
    ck_assert_ptr_eq(aev_handle_get_context(soon), ctx);
    aev_handle_unref(soon);
    aev_handle_unref(later);
    aev_handle_unref(at);
    aev_handle_unref(ts);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_null_handle_out)
{
    /* Ignoring handles costs nothing: run under valgrind/LSan, nothing may leak. */
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), 0);
        ck_assert_int_eq(aev_loop_call_later(loop, 0.0, tu_count_cb, &hits, NULL), 0);
        ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_count_cb, &hits, NULL), 0);
    }
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 3000);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_handle_references)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, &h), 0);
    aev_handle_t *h2 = aev_handle_ref(h);
    ck_assert_ptr_eq(h2, h);
    aev_handle_unref(h);
    /* The second reference keeps the handle usable; the loop's own reference keeps
     * the callback pending. */
    ck_assert_int_eq(aev_handle_cancelled(h2), 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 1);
    ck_assert_int_eq(aev_handle_is_timer(h2), 0);
    aev_handle_unref(h2);
    aev_handle_unref(NULL); /* ignored */

    /* Dropping the caller's reference at once still runs the callback. */
    aev_handle_t *t = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, 0.0, tu_count_cb, &hits, &t), 0);
    aev_handle_unref(t);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 2);
    tu_loop_free(loop);
}
END_TEST

/* Non-static so that its symbol is visible to dladdr() (the executable is linked with
 * export_dynamic). */
int aev_conformance_described_cb(aev_loop_t *loop, void *arg);
int aev_conformance_described_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return 0;
}

START_TEST(test_handle_describe)
{
    aev_loop_t *loop = tu_loop_new();
    aev_handle_t *named = NULL, *anon = NULL;
    aev_call_options_t opts = {.name = "my-described-callback"};
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, aev_conformance_described_cb, NULL, &named),
                     0);
    ck_assert_int_eq(aev_loop_call_soon(loop, aev_conformance_described_cb, NULL, &anon), 0);
    char buf[256];
    const char *d = aev_handle_describe(named, buf, sizeof buf);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(strstr(d, "my-described-callback") != NULL, "describe(named) = '%s'", d);
    d = aev_handle_describe(anon, buf, sizeof buf);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(strstr(d, "aev_conformance_described_cb") != NULL, "describe(anon) = '%s'", d);
    /* A small buffer is never overrun and stays terminated. */
    char small[8];
    memset(small, 'x', sizeof small);
    d = aev_handle_describe(named, small, 4);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(memchr(small, '\0', 4) != NULL, "describe did not terminate a short buffer");
    ck_assert_int_eq(small[4], 'x');
    tu_run_once(loop);
    aev_handle_unref(named);
    aev_handle_unref(anon);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_handles_outlive_close)
{
    /* Handles requested, loop closed with the callbacks still pending, then the handles
     * are released: no callback runs, nothing leaks. */
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    aev_handle_t *hs[4] = {0};
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, &hs[0]), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.5, tu_count_cb, &hits, &hs[1]), 0);
    ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_count_cb, &hits, &hs[2]), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.0, tu_count_cb, &hits, &hs[3]), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(hits, 0);
    /* Cancelling after close is still safe. */
    aev_handle_cancel(hs[1]);
    for (int i = 0; i < 4; i++)
        aev_handle_unref(hs[i]);
    aev_loop_free(loop);
    ck_assert_int_eq(hits, 0);
}
END_TEST

static Suite *handles_suite(void)
{
    Suite *s = suite_create("handles");
    TU_ADD(s, test_cancel_pending);
    TU_ADD(s, test_cancel_after_run_is_noop);
    TU_ADD(s, test_cancel_sibling_in_same_batch);
    TU_ADD(s, test_cancel_self_while_running);
    TU_ADD(s, test_handle_context);
    TU_ADD(s, test_null_handle_out);
    TU_ADD(s, test_handle_references);
    TU_ADD(s, test_handle_describe);
    TU_ADD(s, test_handles_outlive_close);
    return s;
}

TU_MAIN(handles_suite)
