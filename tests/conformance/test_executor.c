/* libaev conformance: executors (loop.run_in_executor, set_default_executor,
 * shutdown_default_executor, loop.close and the default executor). */
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------- */

/* A gate work items wait at until the test opens it. */
typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int open;
    int waiting; /* items blocked at the gate now */
} gate_t;

static gate_t gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void gate_pass(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.waiting++;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.lock);
    gate.waiting--;
    pthread_mutex_unlock(&gate.lock);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.lock);
}

/* Waits (up to 10 s) until n items are blocked at the gate. */
static void gate_wait_for(int n)
{
    double limit = tu_now() + 10;
    pthread_mutex_lock(&gate.lock);
    while (gate.waiting < n && tu_now() < limit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&gate.cv, &gate.lock, &ts);
    }
    int got = gate.waiting;
    pthread_mutex_unlock(&gate.lock);
    ck_assert_int_ge(got, n);
}

static void *gate_open_later(void *arg)
{
    (void)arg;
    tu_sleep(0.1);
    gate_open();
    return NULL;
}

static int ran_count;          /* work items that ran (atomic) */
static int destroyed_count;    /* results destroyed (atomic) */
static int arg_destroy_count;  /* arg_destroy calls (atomic) */

static int atomic_get(int *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void atomic_inc(int *p)
{
    __atomic_fetch_add(p, 1, __ATOMIC_SEQ_CST);
}

static void result_destroy(void *v)
{
    atomic_inc(&destroyed_count);
    free(v);
}

static void count_arg_destroy(void *arg)
{
    (void)arg;
    atomic_inc(&arg_destroy_count);
}

/* Work: records its thread, returns a malloc'ed copy of *(int *)arg + 1. */
typedef struct {
    int input;
    pthread_t worker;
} thread_arg_t;

static int work_add_one(void *arg, aev_work_result_t *res)
{
    thread_arg_t *a = arg;
    a->worker = pthread_self();
    int *v = malloc(sizeof *v);
    if (!v)
        return -ENOMEM;
    *v = a->input + 1;
    res->value = v;
    res->destroy = result_destroy;
    atomic_inc(&ran_count);
    return 0;
}

static int work_fail(void *arg, aev_work_result_t *res)
{
    (void)arg;
    snprintf(res->detail, sizeof res->detail, "disk on fire");
    return -EIO;
}

static int work_cancel_itself(void *arg, aev_work_result_t *res)
{
    (void)arg;
    (void)res;
    return AEV_ECANCELLED;
}

/* Work: waits at the gate, then returns a malloc'ed int. */
static int work_gated(void *arg, aev_work_result_t *res)
{
    (void)arg;
    gate_pass();
    atomic_inc(&ran_count);
    res->value = malloc(sizeof(int));
    res->destroy = result_destroy;
    return res->value ? 0 : -ENOMEM;
}

static int work_count(void *arg, aev_work_result_t *res)
{
    (void)res;
    tu_sleep(0.01);
    atomic_inc(&ran_count);
    atomic_inc((int *)arg);
    return 0;
}

/* Concurrency probe: each item waits until `want` items have run at once (or concurrent_wait
 * seconds passed), keeping its worker busy so that the pool must use more threads. */
static int concurrent_now, concurrent_max, concurrent_want;
static double concurrent_wait = 0.2;

static int work_concurrent(void *arg, aev_work_result_t *res)
{
    (void)arg;
    (void)res;
    int now = __atomic_add_fetch(&concurrent_now, 1, __ATOMIC_SEQ_CST);
    int seen = atomic_get(&concurrent_max);
    while (now > seen && !__atomic_compare_exchange_n(&concurrent_max, &seen, now, 0,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    double limit = tu_now() + concurrent_wait;
    while (atomic_get(&concurrent_max) < concurrent_want && tu_now() < limit)
        tu_sleep(0.002);
    tu_sleep(0.005);
    __atomic_sub_fetch(&concurrent_now, 1, __ATOMIC_SEQ_CST);
    atomic_inc(&ran_count);
    return 0;
}

typedef struct {
    pthread_t loop_thread;
    int calls;
    int on_loop_thread;
} done_probe_t;

static int probe_done(aev_future_t *f, void *arg)
{
    (void)f;
    done_probe_t *p = arg;
    p->calls++;
    if (pthread_equal(pthread_self(), p->loop_thread))
        p->on_loop_thread++;
    return 0;
}

/* Runs the loop until every future in futs is done (safety limit 20 s). */
typedef struct {
    aev_future_t **futs;
    int n;
} all_t;

static int all_check_cb(aev_loop_t *loop, void *arg)
{
    all_t *a = arg;
    for (int i = 0; i < a->n; i++)
        if (!aev_future_done(a->futs[i]))
            return aev_loop_call_later(loop, 0.005, all_check_cb, a, NULL);
    aev_loop_stop(loop);
    return 0;
}

static void run_until_all_done(aev_loop_t *loop, aev_future_t **futs, int n)
{
    all_t a = {futs, n};
    ck_assert_int_eq(aev_loop_call_soon(loop, all_check_cb, &a, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 20.0), 0);
}

/* Runs the loop until cond() holds (polled every 5 ms; safety limit 20 s). */
typedef int (*cond_fn)(void);
static int cond_check_cb(aev_loop_t *loop, void *arg)
{
    cond_fn c = (cond_fn)(uintptr_t)arg;
    if (!c())
        return aev_loop_call_later(loop, 0.005, cond_check_cb, arg, NULL);
    aev_loop_stop(loop);
    return 0;
}

static void run_until(aev_loop_t *loop, cond_fn c)
{
    ck_assert_int_eq(aev_loop_call_soon(loop, cond_check_cb, (void *)(uintptr_t)c, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 20.0), 0);
}

static aev_executor_t *executor_new(int max_workers)
{
    aev_executor_options_t o = {.max_workers = max_workers};
    aev_executor_t *ex = NULL;
    int rc = aev_executor_new(&o, &ex);
    ck_assert_msg(rc == 0, "aev_executor_new: %s: %s", aev_err_name(rc), aev_error_detail());
    ck_assert_int_eq(aev_executor_max_workers(ex), max_workers);
    ck_assert_str_eq(aev_executor_plugin_name(ex), "threads");
    return ex;
}

static char conf_path[64];

static const char *write_conf(const char *text)
{
    snprintf(conf_path, sizeof conf_path, "/tmp/aev-exec-test-XXXXXX");
    int fd = mkstemp(conf_path);
    ck_assert_int_ge(fd, 0);
    tu_write(fd, text);
    close(fd);
    return conf_path;
}

/* ---- results and errors ------------------------------------------------------------- */

START_TEST(test_result_on_loop_thread)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_ptr_null(aev_loop_plugin_name(loop, "exec")); /* created on first use */
    thread_arg_t a = {.input = 41};
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_add_one, &a, &f), 0);
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "exec"), "threads");
    ck_assert_int_eq(aev_future_done(f), 0); /* completed by the loop, never inline */
    done_probe_t probe = {.loop_thread = pthread_self()};
    ck_assert_int_eq(aev_future_add_done_callback(f, probe_done, &probe), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(f, &v), 0);
    ck_assert_int_eq(*(int *)v, 42);
    ck_assert_int_eq(pthread_equal(a.worker, pthread_self()), 0); /* ran on a worker */
    tu_run_once(loop);
    ck_assert_int_eq(probe.calls, 1);
    ck_assert_int_eq(probe.on_loop_thread, 1);
    ck_assert_int_eq(atomic_get(&destroyed_count), 0);
    aev_future_unref(f); /* the result goes with the future */
    ck_assert_int_eq(atomic_get(&destroyed_count), 1);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_error_on_loop_thread)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = NULL, *g = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, &f), 0);
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_cancel_itself, NULL, &g), 0);
    done_probe_t probe = {.loop_thread = pthread_self()};
    ck_assert_int_eq(aev_future_add_done_callback(f, probe_done, &probe), 0);
    aev_future_t *both[2] = {f, g};
    run_until_all_done(loop, both, 2);
    ck_assert_int_eq(aev_future_error(f), -EIO);
    ck_assert_str_eq(aev_future_error_detail(f), "disk on fire");
    ck_assert_int_eq(aev_future_cancelled(g), 1); /* AEV_ECANCELLED from the work: cancelled */
    tu_run_once(loop);
    ck_assert_int_eq(probe.calls, 1);
    ck_assert_int_eq(probe.on_loop_thread, 1);
    aev_future_unref(f);
    aev_future_unref(g);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_bad_arguments)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, NULL, NULL, &f), -EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(aev_loop_run_in_executor(NULL, NULL, work_fail, NULL, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, NULL), -EINVAL);
    ck_assert_int_eq(aev_loop_set_default_executor(loop, NULL), -EINVAL);
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, -1, NULL), -EINVAL);
    aev_executor_options_t o = {.max_workers = -2};
    aev_executor_t *ex = (aev_executor_t *)&ex;
    ck_assert_int_eq(aev_executor_new(&o, &ex), -EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "max_workers"));
    o.max_workers = 0;
    o.plugin = "nosuch";
    ck_assert_int_eq(aev_executor_new(&o, &ex), AEV_EPLUGIN_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "nosuch"));
    tu_loop_free(loop);
}
END_TEST

/* ---- pools ---------------------------------------------------------------------------- */

START_TEST(test_max_workers_respected)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(3);
    concurrent_want = 3;
    concurrent_wait = 5.0; /* reached at once unless the machine is very busy */
    enum { N = 12 };
    aev_future_t *futs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_concurrent, NULL, &futs[i]), 0);
    run_until_all_done(loop, futs, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(aev_future_result(futs[i], NULL), 0);
        aev_future_unref(futs[i]);
    }
    ck_assert_int_eq(atomic_get(&ran_count), N);
    ck_assert_int_eq(atomic_get(&concurrent_max), 3); /* in parallel, never more than 3 */
    aev_executor_free(ex);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_fifo_order_single_worker)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(1);
    enum { N = 8 };
    thread_arg_t args[N];
    aev_future_t *futs[N];
    for (int i = 0; i < N; i++) {
        args[i].input = i;
        ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_add_one, &args[i], &futs[i]), 0);
    }
    run_until_all_done(loop, futs, N);
    for (int i = 0; i < N; i++) {
        void *v;
        ck_assert_int_eq(aev_future_result(futs[i], &v), 0);
        ck_assert_int_eq(*(int *)v, i + 1);
        /* one worker: every item ran on the same thread */
        ck_assert_int_ne(pthread_equal(args[i].worker, args[0].worker), 0);
        aev_future_unref(futs[i]);
    }
    aev_executor_free(ex);
    tu_loop_free(loop);
}
END_TEST

/* ---- cancellation -------------------------------------------------------------------- */

static int one_arg_destroyed(void)
{
    return atomic_get(&arg_destroy_count) >= 1;
}

START_TEST(test_cancel_before_start)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(1);
    aev_future_t *blocker = NULL, *victim = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_gated, NULL, &blocker), 0);
    gate_wait_for(1); /* the only worker is busy: the next item stays queued */
    thread_arg_t a = {.input = 1};
    aev_run_options_t ro = {.arg_destroy = count_arg_destroy};
    ck_assert_int_eq(aev_loop_run_in_executor_ex(loop, ex, &ro, work_add_one, &a, &victim), 0);
    ck_assert_int_eq(aev_future_cancel(victim, "not needed"), 1);
    tu_run_once(loop); /* the done callback marks the item cancelled */
    gate_open();
    ck_assert_int_eq(aev_loop_run_until_complete(loop, blocker), 0);
    run_until(loop, one_arg_destroyed); /* the worker reached the cancelled item */
    ck_assert_int_eq(aev_executor_shutdown(ex, 1, 0), 0);
    ck_assert_int_eq(atomic_get(&ran_count), 1); /* only the blocker: the victim never ran */
    ck_assert_int_eq(atomic_get(&arg_destroy_count), 1);
    ck_assert_int_eq(aev_future_cancelled(victim), 1);
    ck_assert_str_eq(aev_future_error_detail(victim), "not needed");
    aev_future_unref(blocker);
    aev_future_unref(victim);
    ck_assert_int_eq(atomic_get(&destroyed_count), 1); /* the blocker's result */
    aev_executor_free(ex);
    tu_loop_free(loop);
}
END_TEST

static int two_ran(void)
{
    return atomic_get(&ran_count) >= 1 && atomic_get(&destroyed_count) >= 1;
}

START_TEST(test_cancel_while_running)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(2);
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_gated, NULL, &f), 0);
    gate_wait_for(1);
    ck_assert_int_eq(aev_future_cancel(f, NULL), 1);
    tu_run_once(loop);
    gate_open();
    /* it runs to completion; nobody can take the result, so it is destroyed */
    run_until(loop, two_ran);
    ck_assert_int_eq(atomic_get(&ran_count), 1);
    ck_assert_int_eq(aev_future_cancelled(f), 1);
    aev_future_unref(f);
    aev_executor_free(ex);
    ck_assert_int_eq(atomic_get(&destroyed_count), 1);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_executor_shutdown_cancel_futures)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(1);
    aev_future_t *blocker = NULL, *q1 = NULL, *q2 = NULL;
    aev_run_options_t ro = {.arg_destroy = count_arg_destroy};
    ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_gated, NULL, &blocker), 0);
    gate_wait_for(1);
    ck_assert_int_eq(aev_loop_run_in_executor_ex(loop, ex, &ro, work_gated, NULL, &q1), 0);
    ck_assert_int_eq(aev_loop_run_in_executor_ex(loop, ex, &ro, work_gated, NULL, &q2), 0);
    ck_assert_int_eq(aev_executor_shutdown(ex, 0, 1), 0); /* no wait, cancel queued */
    ck_assert_int_eq(atomic_get(&arg_destroy_count), 2);  /* dropped at once */
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_fail, NULL, &f), AEV_ESHUTDOWN);
    ck_assert_ptr_null(f);
    aev_future_t *queued[2] = {q1, q2};
    run_until_all_done(loop, queued, 2);
    ck_assert_int_eq(aev_future_cancelled(q1), 1);
    ck_assert_int_eq(aev_future_cancelled(q2), 1);
    ck_assert_int_eq(aev_future_done(blocker), 0); /* still running */
    gate_open();
    ck_assert_int_eq(aev_loop_run_until_complete(loop, blocker), 0);
    ck_assert_int_eq(atomic_get(&ran_count), 1);
    aev_future_unref(blocker);
    aev_future_unref(q1);
    aev_future_unref(q2);
    aev_executor_free(ex);
    tu_loop_free(loop);
}
END_TEST

/* ---- shutdown_default_executor ----------------------------------------------------------- */

START_TEST(test_shutdown_default_runs_queued_work)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(1);
    ck_assert_int_eq(aev_loop_set_default_executor(loop, ex), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "exec"), "threads");
    enum { N = 5 };
    int count = 0;
    aev_future_t *futs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_count, &count, &futs[i]), 0);
    aev_future_t *sd = NULL;
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, -1, &sd), 0);
    ck_assert_int_eq(aev_future_done(sd), 0); /* the join happens on another thread */
    /* no new work once shutdown was called */
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, &f), AEV_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, sd), 0);
    /* as ThreadPoolExecutor.shutdown(wait=True): the queued work ran first */
    ck_assert_int_eq(atomic_get(&count), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(aev_future_done(futs[i]), 1);
        ck_assert_int_eq(aev_future_result(futs[i], NULL), 0);
        aev_future_unref(futs[i]);
    }
    /* again: done at once */
    aev_future_t *sd2 = NULL;
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, -1, &sd2), 0);
    ck_assert_int_eq(aev_future_done(sd2), 1);
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, &f), AEV_ESHUTDOWN);
    /* a custom executor still works */
    aev_executor_t *other = executor_new(1);
    ck_assert_int_eq(aev_loop_run_in_executor(loop, other, work_count, &count, &f), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    aev_future_unref(f);
    aev_executor_free(other);
    aev_future_unref(sd);
    aev_future_unref(sd2);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_shutdown_default_without_executor)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *sd = NULL;
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, 1.0, &sd), 0);
    ck_assert_int_eq(aev_future_done(sd), 1);
    ck_assert_int_eq(aev_future_result(sd, NULL), 0);
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, &f), AEV_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "shutdown"));
    aev_future_unref(sd);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_shutdown_default_timeout)
{
    tu_log_capture_start();
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = NULL, *sd = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_gated, NULL, &f), 0);
    gate_wait_for(1);
    double t0 = tu_now();
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, 0.1, &sd), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, sd), 0); /* completes anyway */
    ck_assert(tu_now() - t0 >= 0.09);
    char buf[4096];
    ck_assert_msg(tu_log_find(AEV_LOG_WARNING, "did not finish joining", "0.1", NULL) >= 0, "%s",
                  tu_log_dump(buf, sizeof buf));
    ck_assert_int_eq(aev_future_done(f), 0); /* the work is still blocked */
    gate_open();
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0); /* and its result still arrives */
    ck_assert_int_eq(atomic_get(&ran_count), 1);
    aev_future_unref(f);
    aev_future_unref(sd);
    tu_loop_free(loop);
    tu_log_capture_stop();
}
END_TEST

/* ---- set_default_executor ---------------------------------------------------------------- */

START_TEST(test_set_default_executor)
{
    tu_log_capture_start();
    aev_loop_t *loop = tu_loop_new(), *loop2 = tu_loop_new();
    aev_executor_t *a = executor_new(2), *b = executor_new(1);
    ck_assert_int_eq(aev_loop_set_default_executor(loop, a), 0);
    ck_assert_int_eq(aev_loop_set_default_executor(loop2, a), -EINVAL); /* owned by loop */
    aev_executor_free(a); /* refused: the loop owns it */
    char buf[4096];
    ck_assert_msg(tu_log_find(AEV_LOG_ERROR, "aev_executor_free", NULL, NULL) >= 0, "%s",
                  tu_log_dump(buf, sizeof buf));
    aev_future_t *f = NULL;
    int counter = 0; /* a variable, not a compound literal: a worker writes to it */
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_count, &counter, &f), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    aev_future_unref(f);
    /* replacing it: the old one is shut down (and freed with the loop) */
    ck_assert_int_eq(aev_loop_set_default_executor(loop, b), 0);
    ck_assert_int_eq(aev_loop_run_in_executor(loop, a, work_fail, NULL, &f), AEV_ESHUTDOWN);
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_count, &counter, &f), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    aev_future_unref(f);
    tu_loop_free(loop);
    tu_loop_free(loop2);
    tu_log_capture_stop();
}
END_TEST

/* ---- loop close ---------------------------------------------------------------------------- */

START_TEST(test_close_with_work_running)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_t *ex = executor_new(1);
    ck_assert_int_eq(aev_loop_set_default_executor(loop, ex), 0);
    aev_future_t *running = NULL, *queued = NULL;
    aev_run_options_t ro = {.arg_destroy = count_arg_destroy};
    ck_assert_int_eq(aev_loop_run_in_executor_ex(loop, NULL, &ro, work_gated, NULL, &running), 0);
    gate_wait_for(1);
    ck_assert_int_eq(aev_loop_run_in_executor_ex(loop, NULL, &ro, work_gated, NULL, &queued), 0);
    /* close does not wait for the executor */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(aev_future_done(running), 0);
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, &f), AEV_ECLOSED);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, -1, &f), AEV_ECLOSED);
    aev_future_unref(running);
    aev_future_unref(queued);
    pthread_t opener;
    ck_assert_int_eq(pthread_create(&opener, NULL, gate_open_later, NULL), 0);
    aev_loop_free(loop); /* waits for the default executor's threads */
    pthread_join(opener, NULL);
    /* the running and the queued work finished; their results were dropped */
    ck_assert_int_eq(atomic_get(&ran_count), 2);
    ck_assert_int_eq(atomic_get(&destroyed_count), 2);
    ck_assert_int_eq(atomic_get(&arg_destroy_count), 2);
}
END_TEST

START_TEST(test_custom_executor_outlives_loop)
{
    aev_executor_t *ex = executor_new(2);
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, ex, work_gated, NULL, &f), 0);
    gate_wait_for(1);
    aev_future_unref(f);
    tu_loop_free(loop); /* does not wait for a custom executor */
    ck_assert_int_eq(atomic_get(&ran_count), 0);
    gate_open();
    /* the result has no loop to go to: dropped on the worker */
    aev_executor_free(ex);
    ck_assert_int_eq(atomic_get(&ran_count), 1);
    ck_assert_int_eq(atomic_get(&destroyed_count), 1);
}
END_TEST

START_TEST(test_close_during_shutdown_default)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = NULL, *sd = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_gated, NULL, &f), 0);
    gate_wait_for(1);
    ck_assert_int_eq(aev_loop_shutdown_default_executor(loop, -1, &sd), 0);
    tu_run_once(loop);
    ck_assert_int_eq(aev_future_done(sd), 0); /* the joiner waits for the blocked work */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    aev_future_unref(sd);
    pthread_t opener;
    ck_assert_int_eq(pthread_create(&opener, NULL, gate_open_later, NULL), 0);
    /* the application still holds f: the loop goes when f goes, and then joins */
    aev_loop_free(loop);
    pthread_join(opener, NULL);
    ck_assert_int_eq(aev_future_done(f), 0); /* no result reaches a closed loop's future */
    aev_future_unref(f);
    ck_assert_int_eq(atomic_get(&ran_count), 1);
    ck_assert_int_eq(atomic_get(&destroyed_count), 1);
}
END_TEST

/* ---- configuration ------------------------------------------------------------------------- */

START_TEST(test_max_workers_from_config)
{
    const char *conf = write_conf("[exec.threads]\nmax_workers = 2\n");
    aev_loop_options_t lo = {.config_file = conf};
    aev_loop_t *loop = NULL;
    ck_assert_int_eq(aev_loop_new(&lo, &loop), 0);
    concurrent_want = 3; /* asks for more than the pool allows */
    enum { N = 6 };
    aev_future_t *futs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_concurrent, NULL, &futs[i]), 0);
    run_until_all_done(loop, futs, N);
    for (int i = 0; i < N; i++)
        aev_future_unref(futs[i]);
    ck_assert_int_eq(atomic_get(&concurrent_max), 2);
    tu_loop_free(loop);

    /* an executor of one's own reads the same option; an explicit max_workers wins */
    aev_executor_options_t eo = {.policy = &lo};
    aev_executor_t *ex = NULL;
    ck_assert_int_eq(aev_executor_new(&eo, &ex), 0);
    ck_assert_int_eq(aev_executor_max_workers(ex), 2);
    aev_executor_free(ex);
    eo.max_workers = 5;
    ck_assert_int_eq(aev_executor_new(&eo, &ex), 0);
    ck_assert_int_eq(aev_executor_max_workers(ex), 5);
    aev_executor_free(ex);
    unlink(conf);
}
END_TEST

START_TEST(test_default_max_workers)
{
    aev_executor_t *ex = NULL;
    ck_assert_int_eq(aev_executor_new(NULL, &ex), 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n = aev_executor_max_workers(ex);
    ck_assert_int_ge(n, 5);  /* at least 1 CPU + 4 */
    ck_assert_int_le(n, 32); /* min(32, ...) */
    ck_assert_int_le(n, (int)ncpu + 4);
    aev_executor_free(ex);
}
END_TEST

static void check_bad_value(const char *value)
{
    char text[128];
    snprintf(text, sizeof text, "[exec.threads]\nmax_workers = %s\n", value);
    const char *conf = write_conf(text);
    aev_loop_options_t lo = {.config_file = conf};
    aev_loop_t *loop = NULL;
    ck_assert_int_eq(aev_loop_new(&lo, &loop), 0);
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, work_fail, NULL, &f), -EINVAL);
    ck_assert_ptr_null(f);
    const char *d = aev_error_detail();
    ck_assert_msg(strstr(d, "[exec.threads] max_workers") && strstr(d, value) && strstr(d, conf),
                  "detail: %s", d);
    ck_assert_ptr_null(aev_loop_plugin_name(loop, "exec"));
    tu_loop_free(loop);
    aev_executor_options_t eo = {.policy = &lo};
    aev_executor_t *ex = (aev_executor_t *)&ex;
    ck_assert_int_eq(aev_executor_new(&eo, &ex), -EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "max_workers"));
    unlink(conf);
}

START_TEST(test_max_workers_bad_config)
{
    check_bad_value("junk");
    check_bad_value("0");
    check_bad_value("-3");
    check_bad_value("4x");
    check_bad_value("99999999999999999999");
}
END_TEST

static Suite *executor_suite(void)
{
    Suite *s = suite_create("executor");
    TU_ADD(s, test_result_on_loop_thread);
    TU_ADD(s, test_error_on_loop_thread);
    TU_ADD(s, test_bad_arguments);
    TU_ADD(s, test_max_workers_respected);
    TU_ADD(s, test_fifo_order_single_worker);
    TU_ADD(s, test_cancel_before_start);
    TU_ADD(s, test_cancel_while_running);
    TU_ADD(s, test_executor_shutdown_cancel_futures);
    TU_ADD(s, test_shutdown_default_runs_queued_work);
    TU_ADD(s, test_shutdown_default_without_executor);
    TU_ADD(s, test_shutdown_default_timeout);
    TU_ADD(s, test_set_default_executor);
    TU_ADD(s, test_close_with_work_running);
    TU_ADD(s, test_custom_executor_outlives_loop);
    TU_ADD(s, test_close_during_shutdown_default);
    TU_ADD(s, test_max_workers_from_config);
    TU_ADD(s, test_default_max_workers);
    TU_ADD(s, test_max_workers_bad_config);
    return s;
}

TU_MAIN(executor_suite)
