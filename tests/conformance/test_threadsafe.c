/* libaev conformance: call_soon_threadsafe (many threads, wake-up, closed loop). */
#include "test_util.h"

#define NTHREADS 4
#define PER_THREAD 10000

typedef struct {
    aev_loop_t *loop;
    pthread_t loop_thread;
    pthread_t threads[NTHREADS];
    int started;
    int sched_errors;         /* written by the threads (atomically) */
    int count[NTHREADS];      /* loop thread only */
    int next_seq[NTHREADS];   /* loop thread only */
    int order_errors;
    int foreign_thread_calls; /* callbacks that ran outside the loop thread */
    int total;
} flood_t;

static flood_t flood;

static int flood_cb(aev_loop_t *loop, void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    int t = (int)(v / PER_THREAD), seq = (int)(v % PER_THREAD);
    if (!pthread_equal(pthread_self(), flood.loop_thread))
        flood.foreign_thread_calls++;
    if (t < 0 || t >= NTHREADS)
        return -EINVAL;
    if (seq != flood.next_seq[t])
        flood.order_errors++;
    flood.next_seq[t] = seq + 1;
    flood.count[t]++;
    if (++flood.total == NTHREADS * PER_THREAD)
        aev_loop_stop(loop);
    return 0;
}

static void *flood_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    tu_sleep(0.02); /* let the loop go to sleep in its poll first */
    for (int i = 0; i < PER_THREAD; i++) {
        void *v = (void *)(uintptr_t)((uintptr_t)t * PER_THREAD + (uintptr_t)i);
        if (aev_loop_call_soon_threadsafe(flood.loop, flood_cb, v, NULL) != 0)
            __atomic_fetch_add(&flood.sched_errors, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int start_threads_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    for (int t = 0; t < NTHREADS; t++)
        ck_assert_int_eq(pthread_create(&flood.threads[t], NULL, flood_thread, (void *)(intptr_t)t),
                         0);
    flood.started = 1;
    return 0;
}

START_TEST(test_many_threads_exactly_once_fifo)
{
    memset(&flood, 0, sizeof flood);
    flood.loop = tu_loop_new();
    flood.loop_thread = pthread_self();
    /* The loop has no other work: it blocks in its poll while the threads schedule. */
    ck_assert_int_eq(aev_loop_call_soon(flood.loop, start_threads_cb, NULL, NULL), 0);
    int timed_out = tu_run_guarded(flood.loop, 10.0);
    ck_assert_int_eq(flood.started, 1);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(flood.threads[t], NULL);
    ck_assert_int_eq(flood.sched_errors, 0);
    ck_assert_msg(!timed_out, "loop not woken: %d of %d callbacks ran in 10 s (per thread: %d %d %d %d)",
                  flood.total, NTHREADS * PER_THREAD, flood.count[0], flood.count[1],
                  flood.count[2], flood.count[3]);
    ck_assert_int_eq(flood.total, NTHREADS * PER_THREAD);
    for (int t = 0; t < NTHREADS; t++)
        ck_assert_msg(flood.count[t] == PER_THREAD, "thread %d: %d callbacks ran", t,
                      flood.count[t]);
    ck_assert_int_eq(flood.order_errors, 0);
    ck_assert_int_eq(flood.foreign_thread_calls, 0);
    /* Nothing runs twice. */
    tu_run_once(flood.loop);
    ck_assert_int_eq(flood.total, NTHREADS * PER_THREAD);
    tu_loop_free(flood.loop);
}
END_TEST

/* ---- wake-up ------------------------------------------------------------- */

typedef struct {
    aev_loop_t *loop;
    int rc;
    double delay;
} waker_t;

typedef struct {
    int ran;
    pthread_t thread;
} woke_t;

static woke_t woke;

static int woke_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    woke.ran++;
    woke.thread = pthread_self();
    aev_loop_stop(loop);
    return 0;
}

static void *waker_thread(void *arg)
{
    waker_t *w = arg;
    tu_sleep(w->delay);
    w->rc = aev_loop_call_soon_threadsafe(w->loop, woke_cb, NULL, NULL);
    return NULL;
}

START_TEST(test_wakes_blocked_loop)
{
    aev_loop_t *loop = tu_loop_new();
    memset(&woke, 0, sizeof woke);
    /* Without a wake-up the loop would sleep 10 s on this timer. */
    tu_guard_t guard = {0};
    aev_handle_t *g = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, 10.0, tu_guard_cb, &guard, &g), 0);
    waker_t w = {.loop = loop, .rc = 1, .delay = 0.05};
    pthread_t th;
    double t0 = tu_now();
    ck_assert_int_eq(pthread_create(&th, NULL, waker_thread, &w), 0);
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    double elapsed = tu_now() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(guard.fired, 0);
    ck_assert_int_eq(woke.ran, 1);
    ck_assert(pthread_equal(woke.thread, pthread_self()));
    ck_assert_msg(elapsed < 2.0, "loop woke after %.3f s", elapsed);
    ck_assert_msg(elapsed >= 0.04, "loop stopped after %.3f s, before the wake-up", elapsed);
    aev_handle_cancel(g);
    aev_handle_unref(g);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_wakes_loop_blocked_without_timers)
{
    /* No timer at all: the loop would block indefinitely. */
    aev_loop_t *loop = tu_loop_new();
    memset(&woke, 0, sizeof woke);
    waker_t w = {.loop = loop, .rc = 1, .delay = 0.05};
    pthread_t th;
    double t0 = tu_now();
    ck_assert_int_eq(pthread_create(&th, NULL, waker_thread, &w), 0);
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    double elapsed = tu_now() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(woke.ran, 1);
    ck_assert_msg(elapsed < 2.0, "loop woke after %.3f s", elapsed);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_repeated_wakeups)
{
    /* Several successive wake-ups of the same blocked loop each work (the wake-up channel is
     * drained and re-armed). */
    aev_loop_t *loop = tu_loop_new();
    for (int round = 0; round < 5; round++) {
        memset(&woke, 0, sizeof woke);
        waker_t w = {.loop = loop, .rc = 1, .delay = 0.01};
        pthread_t th;
        double t0 = tu_now();
        ck_assert_int_eq(pthread_create(&th, NULL, waker_thread, &w), 0);
        int timed_out = tu_run_guarded(loop, 5.0);
        double elapsed = tu_now() - t0;
        pthread_join(th, NULL);
        ck_assert_int_eq(timed_out, 0);
        ck_assert_int_eq(w.rc, 0);
        ck_assert_int_eq(woke.ran, 1);
        ck_assert_msg(elapsed < 2.0, "round %d: woke after %.3f s", round, elapsed);
    }
    tu_loop_free(loop);
}
END_TEST

/* ---- before running, from the loop thread, after close ------------------- */

static void *schedule_100_thread(void *arg)
{
    aev_loop_t *loop = ((void **)arg)[0];
    int *hits = ((void **)arg)[1];
    int *errors = ((void **)arg)[2];
    for (int i = 0; i < 100; i++)
        if (aev_loop_call_soon_threadsafe(loop, tu_count_cb, hits, NULL) != 0)
            (*errors)++;
    return NULL;
}

START_TEST(test_threadsafe_while_not_running)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0, errors = 0;
    void *args[3] = {loop, &hits, &errors};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, schedule_100_thread, args), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(errors, 0);
    ck_assert_int_eq(hits, 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 100);
    tu_loop_free(loop);
}
END_TEST

static int threadsafe_from_loop_cb(aev_loop_t *loop, void *arg)
{
    ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_count_cb, arg, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_stop_cb, NULL, NULL), 0);
    return 0;
}

START_TEST(test_threadsafe_from_loop_thread)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, threadsafe_from_loop_cb, &hits, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(hits, 1);
    tu_loop_free(loop);
}
END_TEST

static void *after_close_thread(void *arg)
{
    waker_t *w = arg;
    w->rc = aev_loop_call_soon_threadsafe(w->loop, woke_cb, NULL, NULL);
    return NULL;
}

START_TEST(test_threadsafe_after_close)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_close(loop), 0);
    int hits = 0;
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon_threadsafe(loop, tu_count_cb, &hits, &h), AEV_ECLOSED);
    aev_handle_unref(h);
    waker_t w = {.loop = loop, .rc = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, after_close_thread, &w), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(w.rc, AEV_ECLOSED);
    aev_loop_free(loop);
    ck_assert_int_eq(hits, 0);
}
END_TEST

static Suite *threadsafe_suite(void)
{
    Suite *s = suite_create("threadsafe");
    TU_ADD(s, test_many_threads_exactly_once_fifo);
    TU_ADD(s, test_wakes_blocked_loop);
    TU_ADD(s, test_wakes_loop_blocked_without_timers);
    TU_ADD(s, test_repeated_wakeups);
    TU_ADD(s, test_threadsafe_while_not_running);
    TU_ADD(s, test_threadsafe_from_loop_thread);
    TU_ADD(s, test_threadsafe_after_close);
    return s;
}

TU_MAIN(threadsafe_suite)
