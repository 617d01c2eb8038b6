/* libaev conformance: call_later / call_at (timing, order, when(), cancel, many timers). */
#include "test_util.h"

/* Slack for comparing loop times: the clock is monotonic with ns resolution. */
#define EPS 1e-6

typedef struct {
    char order[16];
    int n;
} order_state_t;

typedef struct {
    order_state_t *st;
    char tag;
} tag_t;

static int tag_cb(aev_loop_t *loop, void *arg)
{
    tag_t *t = arg;
    (void)loop;
    if (t->st->n < 15)
        t->st->order[t->st->n++] = t->tag;
    return 0;
}

START_TEST(test_fire_order_by_time)
{
    aev_loop_t *loop = tu_loop_new();
    order_state_t st = {0};
    tag_t c = {&st, 'C'}, a = {&st, 'A'}, b = {&st, 'B'}, d = {&st, 'D'};
    double now = aev_loop_time(loop);
    /* call_later reads the clock at each call: gaps of 100 ms keep the order
     * intended even when the calls themselves are slow (valgrind). */
    ck_assert_int_eq(aev_loop_call_later(loop, 0.300, tag_cb, &c, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.100, tag_cb, &a, NULL), 0);
    ck_assert_int_eq(aev_loop_call_at(loop, now + 0.400, tag_cb, &d, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.200, tag_cb, &b, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.600, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    st.order[st.n] = '\0';
    ck_assert_str_eq(st.order, "ABCD");
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    double fired_loop_time;
    double fired_wall;
    int calls;
} fire_state_t;

static int fire_cb(aev_loop_t *loop, void *arg)
{
    fire_state_t *st = arg;
    st->fired_loop_time = aev_loop_time(loop);
    st->fired_wall = tu_now();
    st->calls++;
    aev_loop_stop(loop);
    return 0;
}

START_TEST(test_call_later_not_early)
{
    aev_loop_t *loop = tu_loop_new();
    fire_state_t st = {0};
    aev_handle_t *h = NULL;
    double wall0 = tu_now();
    double t0 = aev_loop_time(loop);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.05, fire_cb, &st, &h), 0);
    double t1 = aev_loop_time(loop);
    ck_assert_int_eq(aev_handle_is_timer(h), 1);
    double when = aev_handle_when(h);
    ck_assert_msg(when >= t0 + 0.05 - EPS && when <= t1 + 0.05 + EPS,
                  "when %.6f not in [%.6f, %.6f]", when, t0 + 0.05, t1 + 0.05);

    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_msg(st.fired_loop_time >= when - EPS, "fired at %.6f before when %.6f",
                  st.fired_loop_time, when);
    ck_assert_msg(st.fired_loop_time - t0 >= 0.05 - EPS, "fired after %.6f s (loop time)",
                  st.fired_loop_time - t0);
    ck_assert_msg(st.fired_wall - wall0 >= 0.05 - 1e-3, "fired after %.6f s (wall clock)",
                  st.fired_wall - wall0);
    ck_assert_msg(st.fired_loop_time - t0 < 1.5, "fired late: %.3f s", st.fired_loop_time - t0);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

static int busy_writer_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_timer_not_early_while_busy)
{
    /* An always-writable socket makes the loop iterate without sleeping, so the timer is
     * checked many times before it is due: it must still not fire early. */
    aev_loop_t *loop = tu_loop_new();
    int sv[2], spins = 0;
    tu_socketpair(sv);
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], busy_writer_cb, &spins), 0);
    fire_state_t st = {0};
    aev_handle_t *h = NULL;
    double t0 = aev_loop_time(loop);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.05, fire_cb, &st, &h), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_int_gt(spins, 1);
    ck_assert_msg(st.fired_loop_time >= aev_handle_when(h) - EPS, "fired at %.6f before when %.6f",
                  st.fired_loop_time, aev_handle_when(h));
    ck_assert_msg(st.fired_loop_time - t0 >= 0.05 - EPS, "fired after %.6f s",
                  st.fired_loop_time - t0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 1);
    aev_handle_unref(h);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_call_at_uses_loop_time)
{
    aev_loop_t *loop = tu_loop_new();
    fire_state_t st = {0};
    aev_handle_t *h = NULL;
    double when = aev_loop_time(loop) + 0.03;
    ck_assert_int_eq(aev_loop_call_at(loop, when, fire_cb, &st, &h), 0);
    ck_assert_int_eq(aev_handle_is_timer(h), 1);
    ck_assert_double_eq_tol(aev_handle_when(h), when, 1e-9);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_msg(st.fired_loop_time >= when - EPS, "fired at %.6f, scheduled for %.6f",
                  st.fired_loop_time, when);
    ck_assert_msg(st.fired_loop_time < when + 1.5, "fired late: %.6f for %.6f",
                  st.fired_loop_time, when);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_loop_time_monotonic)
{
    aev_loop_t *loop = tu_loop_new();
    double a = aev_loop_time(loop);
    tu_sleep(0.02);
    double b = aev_loop_time(loop);
    ck_assert_msg(b - a >= 0.02 - 1e-3 && b - a < 1.5, "time advanced %.6f over a 20 ms sleep",
                  b - a);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_negative_delay_is_soon)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, -5.0, tu_count_cb, &hits, &h), 0);
    ck_assert_int_eq(aev_handle_is_timer(h), 1);
    ck_assert_int_eq(hits, 0);
    tu_run_once(loop); /* one iteration is enough: the timer is already due */
    ck_assert_int_eq(hits, 1);
    /* call_at in the past, likewise. */
    ck_assert_int_eq(aev_loop_call_at(loop, aev_loop_time(loop) - 100.0, tu_count_cb, &hits, NULL),
                     0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 2);
    /* Zero delay too. */
    ck_assert_int_eq(aev_loop_call_later(loop, 0.0, tu_count_cb, &hits, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 3);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_long_delays_accepted)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    aev_handle_t *two_days = NULL, *forty_days = NULL;
    double now = aev_loop_time(loop);
    ck_assert_int_eq(aev_loop_call_later(loop, 86400.0 * 2, tu_count_cb, &hits, &two_days), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 86400.0 * 40, tu_count_cb, &hits, &forty_days), 0);
    ck_assert_double_eq_tol(aev_handle_when(two_days), now + 86400.0 * 2, 1.0);
    ck_assert_double_eq_tol(aev_handle_when(forty_days), now + 86400.0 * 40, 1.0);

    /* Pending far timers do not make the loop block past a near one. */
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    double elapsed = tu_now() - t0;
    ck_assert_msg(elapsed < 1.5, "loop ran %.3f s for a 20 ms timer", elapsed);
    ck_assert_int_eq(hits, 0);

    aev_handle_cancel(two_days);
    ck_assert_int_eq(aev_handle_cancelled(two_days), 1);
    aev_handle_cancel(forty_days);
    /* Only cancelled far timers left: a stopped run returns at once. */
    t0 = tu_now();
    tu_run_once(loop);
    ck_assert_msg(tu_now() - t0 < 1.0, "stopped run blocked");
    ck_assert_int_eq(hits, 0);
    aev_handle_unref(two_days);
    aev_handle_unref(forty_days);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_cancel_before_firing)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0, other = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, tu_count_cb, &hits, &h), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, tu_count_cb, &other, NULL), 0);
    aev_handle_cancel(h);
    ck_assert_int_eq(aev_handle_cancelled(h), 1);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.04, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 0);
    ck_assert_int_eq(other, 1);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_handle_t *victim;
} canceller_t;

static int canceller_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_handle_cancel(((canceller_t *)arg)->victim);
    return 0;
}

START_TEST(test_cancel_from_earlier_timer)
{
    /* A timer at 10 ms cancels a pending one due at 30 ms: it never runs. */
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    canceller_t c = {0};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, tu_count_cb, &hits, &c.victim), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.01, canceller_cb, &c, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.06, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 0);
    ck_assert_int_eq(aev_handle_cancelled(c.victim), 1);
    aev_handle_unref(c.victim);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    aev_handle_t *other;
    int *ran;
} mutual_t;

static int mutual_cb(aev_loop_t *loop, void *arg)
{
    mutual_t *m = arg;
    (void)loop;
    (*m->ran)++;
    aev_handle_cancel(m->other);
    return 0;
}

START_TEST(test_cancel_due_timer_from_callback)
{
    /* Two timers due in the same iteration, each cancelling the other: exactly one runs. */
    aev_loop_t *loop = tu_loop_new();
    int ran = 0;
    mutual_t m1 = {NULL, &ran}, m2 = {NULL, &ran};
    aev_handle_t *h1 = NULL, *h2 = NULL;
    double when = aev_loop_time(loop) + 0.02;
    ck_assert_int_eq(aev_loop_call_at(loop, when, mutual_cb, &m1, &h1), 0);
    ck_assert_int_eq(aev_loop_call_at(loop, when, mutual_cb, &m2, &h2), 0);
    m1.other = h2;
    m2.other = h1;
    ck_assert_int_eq(aev_loop_call_later(loop, 0.05, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(ran, 1);
    aev_handle_unref(h1);
    aev_handle_unref(h2);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_handle_kinds)
{
    aev_loop_t *loop = tu_loop_new();
    aev_handle_t *soon = NULL, *later = NULL, *at = NULL, *ts = NULL;
    int hits = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, &soon), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.001, tu_count_cb, &hits, &later), 0);
    double when = aev_loop_time(loop) + 0.002;
    ck_assert_int_eq(aev_loop_call_at(loop, when, tu_count_cb, &hits, &at), 0);
    ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_count_cb, &hits, &ts), 0);
    ck_assert_int_eq(aev_handle_is_timer(soon), 0);
    ck_assert_int_eq(aev_handle_is_timer(ts), 0);
    ck_assert_int_eq(aev_handle_is_timer(later), 1);
    ck_assert_int_eq(aev_handle_is_timer(at), 1);
    ck_assert_double_eq(aev_handle_when(soon), -1.0);
    ck_assert_double_eq(aev_handle_when(ts), -1.0);
    ck_assert_double_eq_tol(aev_handle_when(at), when, 1e-9);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 4);
    /* when() stays valid after the timer ran. */
    ck_assert_double_eq_tol(aev_handle_when(at), when, 1e-9);
    aev_handle_unref(soon);
    aev_handle_unref(later);
    aev_handle_unref(at);
    aev_handle_unref(ts);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int remaining;
    double last_when;
} periodic_t;

static int periodic_cb(aev_loop_t *loop, void *arg)
{
    periodic_t *p = arg;
    if (--p->remaining > 0)
        ck_assert_int_eq(aev_loop_call_later(loop, 0.005, periodic_cb, p, NULL), 0);
    else
        aev_loop_stop(loop);
    return 0;
}

START_TEST(test_timer_rescheduling_itself)
{
    aev_loop_t *loop = tu_loop_new();
    periodic_t p = {.remaining = 10};
    double t0 = aev_loop_time(loop);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.005, periodic_cb, &p, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(p.remaining, 0);
    double elapsed = aev_loop_time(loop) - t0;
    ck_assert_msg(elapsed >= 0.05 - EPS && elapsed < 2.0, "10 x 5 ms took %.4f s", elapsed);
    tu_loop_free(loop);
}
END_TEST

/* ---- many timers -------------------------------------------------------- */

#define NTIMERS 10000

typedef struct {
    aev_handle_t *handles[NTIMERS];
    int calls[NTIMERS];
    double fired_when[NTIMERS]; /* when() of each fired timer, in firing order */
    int nfired;
    int expected;
    int early; /* timers that fired before their when() */
    aev_loop_t *loop;
} many_t;

static many_t many;

static int many_cb(aev_loop_t *loop, void *arg)
{
    int i = (int)(intptr_t)arg;
    double when = aev_handle_when(many.handles[i]);
    if (aev_loop_time(loop) < when - EPS)
        many.early++;
    many.calls[i]++;
    if (many.nfired < NTIMERS)
        many.fired_when[many.nfired] = when;
    many.nfired++;
    if (many.nfired == many.expected)
        aev_loop_stop(loop);
    return 0;
}

START_TEST(test_many_timers)
{
    aev_loop_t *loop = tu_loop_new();
    memset(&many, 0, sizeof many);
    unsigned seed = 12345;
    for (int i = 0; i < NTIMERS; i++) {
        double delay = (double)(rand_r(&seed) % 50001) / 1e6; /* 0 .. 50 ms */
        ck_assert_int_eq(
            aev_loop_call_later(loop, delay, many_cb, (void *)(intptr_t)i, &many.handles[i]), 0);
    }
    for (int i = 1; i < NTIMERS; i += 2)
        aev_handle_cancel(many.handles[i]);
    many.expected = NTIMERS / 2;

    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(many.nfired, NTIMERS / 2);
    ck_assert_int_eq(many.early, 0);
    for (int i = 0; i < NTIMERS; i++) {
        ck_assert_msg(many.calls[i] == (i % 2 == 0 ? 1 : 0), "timer %d ran %d times", i,
                      many.calls[i]);
    }
    for (int k = 1; k < many.nfired; k++) {
        ck_assert_msg(many.fired_when[k] >= many.fired_when[k - 1],
                      "timer #%d (when %.6f) fired after one due at %.6f", k,
                      many.fired_when[k], many.fired_when[k - 1]);
    }
    /* Nothing more fires afterwards. */
    ck_assert_int_eq(aev_loop_call_later(loop, 0.06, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(many.nfired, NTIMERS / 2);
    for (int i = 0; i < NTIMERS; i++)
        aev_handle_unref(many.handles[i]);
    tu_loop_free(loop);
}
END_TEST

static Suite *timers_suite(void)
{
    Suite *s = suite_create("timers");
    TU_ADD(s, test_fire_order_by_time);
    TU_ADD(s, test_call_later_not_early);
    TU_ADD(s, test_timer_not_early_while_busy);
    TU_ADD(s, test_call_at_uses_loop_time);
    TU_ADD(s, test_loop_time_monotonic);
    TU_ADD(s, test_negative_delay_is_soon);
    TU_ADD(s, test_long_delays_accepted);
    TU_ADD(s, test_cancel_before_firing);
    TU_ADD(s, test_cancel_from_earlier_timer);
    TU_ADD(s, test_cancel_due_timer_from_callback);
    TU_ADD(s, test_handle_kinds);
    TU_ADD(s, test_timer_rescheduling_itself);
    TU_ADD(s, test_many_timers);
    return s;
}

TU_MAIN(timers_suite)
