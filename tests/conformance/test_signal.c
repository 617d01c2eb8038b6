/* libaev conformance: Unix signals (add_signal_handler / remove_signal_handler).
 *
 * Check runs each test in its own forked child, so the dispositions changed
 * here never reach the next test. The signals used (SIGUSR1, SIGUSR2, SIGHUP,
 * SIGWINCH, real-time ones) are not used by Check or the sanitizers. */
#include "test_util.h"

#include <limits.h>
#include <signal.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* What one signal handler saw. */
typedef struct sig_rec {
    aev_loop_t *loop;      /* the loop it was added to */
    int count;             /* runs */
    int wrong_loop;        /* runs where aev_loop_get_running() was not loop */
    int wrong_thread;      /* runs off the thread in 'thread' (when thread_set) */
    int thread_set;
    pthread_t thread;      /* expected thread; also: the thread of the last run */
    pthread_t ran_on;
    int stop;              /* stop the loop when it runs */
    int ret;               /* what the callback returns */
} sig_rec_t;

static int rec_cb(aev_loop_t *loop, void *arg)
{
    sig_rec_t *r = arg;
    r->count++;
    r->ran_on = pthread_self();
    if (aev_loop_get_running() != loop || loop != r->loop)
        r->wrong_loop++;
    if (r->thread_set && !pthread_equal(r->thread, pthread_self()))
        r->wrong_thread++;
    if (r->stop)
        aev_loop_stop(loop);
    return r->ret;
}

static void send_self(int sig)
{
    ck_assert_int_eq(kill(getpid(), sig), 0);
}

static struct sigaction query(int sig)
{
    struct sigaction sa;
    ck_assert_int_eq(sigaction(sig, NULL, &sa), 0);
    return sa;
}

/* ---- the handler runs as a loop callback ------------------------------------ */

static struct {
    sig_rec_t rec;
    char order[16];
    int n;
    int after_kill;     /* set right after kill() returned */
    int saw_after_kill; /* the handler ran after kill() returned */
    int call_soon_rc;
} ord;

static void mark(char c)
{
    if (ord.n < (int)sizeof ord.order - 1)
        ord.order[ord.n++] = c;
}

static int ord_c(aev_loop_t *loop, void *arg)
{
    (void)arg;
    mark('C');
    aev_loop_stop(loop);
    return 0;
}

static int ord_sig(aev_loop_t *loop, void *arg)
{
    mark('S');
    ord.saw_after_kill = ord.after_kill;
    ord.call_soon_rc = aev_loop_call_soon(loop, ord_c, NULL, NULL);
    return rec_cb(loop, arg);
}

static int ord_b(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    mark('B');
    return 0;
}

static int ord_a(aev_loop_t *loop, void *arg)
{
    (void)arg;
    mark('A');
    send_self(SIGUSR1); /* delivered to this thread before kill() returns */
    ord.after_kill = 1;
    return aev_loop_call_soon(loop, ord_b, NULL, NULL);
}

START_TEST(test_handler_runs_as_loop_callback)
{
    memset(&ord, 0, sizeof ord);
    aev_loop_t *loop = tu_loop_new();
    ord.rec.loop = loop;
    ord.rec.thread = pthread_self();
    ord.rec.thread_set = 1;
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, ord_sig, &ord.rec), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, ord_a, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(ord.rec.count, 1);
    ck_assert_int_eq(ord.rec.wrong_loop, 0);
    ck_assert_int_eq(ord.rec.wrong_thread, 0);
    /* Not run inside the signal handler (which runs before kill() returns), but
     * later, from the ready queue, after the callback queued before it. */
    ck_assert_int_eq(ord.saw_after_kill, 1);
    ck_assert_int_eq(ord.call_soon_rc, 0);
    ck_assert_str_eq(ord.order, "ABSC");
    tu_loop_free(loop);
}
END_TEST

/* ---- several different signals arriving together ------------------------------ */

#define NSEV 4
static const int sev_sigs[NSEV] = {SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH};
static sig_rec_t sev[NSEV];
static int sev_settle_scheduled;

static int sev_cb(aev_loop_t *loop, void *arg)
{
    rec_cb(loop, arg);
    for (int i = 0; i < NSEV; i++)
        if (sev[i].count == 0)
            return 0;
    if (!sev_settle_scheduled) {
        /* everything arrived: give duplicates, if any, time to show up */
        sev_settle_scheduled = 1;
        return aev_loop_call_later(loop, 0.2, tu_stop_cb, NULL, NULL);
    }
    return 0;
}

static int unblock_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ck_assert_int_eq(sigprocmask(SIG_UNBLOCK, arg, NULL), 0);
    return 0;
}

START_TEST(test_several_signals_each_delivered_once)
{
    memset(sev, 0, sizeof sev);
    sev_settle_scheduled = 0;
    aev_loop_t *loop = tu_loop_new();
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < NSEV; i++) {
        sigaddset(&set, sev_sigs[i]);
        sev[i].loop = loop;
        ck_assert_int_eq(aev_loop_add_signal_handler(loop, sev_sigs[i], sev_cb, &sev[i]), 0);
    }
    ck_assert_int_eq(sigprocmask(SIG_BLOCK, &set, NULL), 0);
    for (int i = 0; i < NSEV; i++)
        send_self(sev_sigs[i]);
    send_self(SIGUSR1); /* a standard signal already pending merges with the first */
    sigset_t pend;
    ck_assert_int_eq(sigpending(&pend), 0);
    for (int i = 0; i < NSEV; i++)
        ck_assert(sigismember(&pend, sev_sigs[i]));
    /* all of them are delivered at once when the loop unblocks them */
    ck_assert_int_eq(aev_loop_call_soon(loop, unblock_cb, &set, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    for (int i = 0; i < NSEV; i++) {
        ck_assert_msg(sev[i].count == 1, "signal %d: handler ran %d times", sev_sigs[i],
                      sev[i].count);
        ck_assert_int_eq(sev[i].wrong_loop, 0);
    }
    tu_loop_free(loop);
}
END_TEST

static int rt_done(aev_loop_t *loop, void *arg)
{
    sig_rec_t *r = arg;
    rec_cb(loop, arg);
    if (r->count == 1)
        return aev_loop_call_later(loop, 0.3, tu_stop_cb, NULL, NULL);
    return 0;
}

/* Real-time signals queue in the kernel: one run per arrival. */
START_TEST(test_realtime_signal_runs_per_arrival)
{
    int sig = SIGRTMIN + 2;
    sig_rec_t rec = {0};
    aev_loop_t *loop = tu_loop_new();
    rec.loop = loop;
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, sig, rt_done, &rec), 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ck_assert_int_eq(sigprocmask(SIG_BLOCK, &set, NULL), 0);
    union sigval v = {.sival_int = 0};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sigqueue(getpid(), sig, v), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, unblock_cb, &set, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    if (UNDER_TSAN) {
        /* TSan defers signals that arrive outside a blocking call and keeps one
         * pending entry per signal number, so it may merge queued arrivals. */
        ck_assert_int_ge(rec.count, 1);
        ck_assert_int_le(rec.count, 3);
    } else {
        ck_assert_int_eq(rec.count, 3);
    }
    tu_loop_free(loop);
}
END_TEST

/* ---- signals sent by other threads -------------------------------------------- */

typedef struct sender {
    int sig;
    double delay;
    int rc;
    int block; /* 1: block sig in the sending thread (so it is delivered elsewhere),
                  -1: unblock it there (a new thread inherits its creator's mask) */
} sender_t;

static void *sender_thread(void *arg)
{
    sender_t *s = arg;
    if (s->block) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, s->sig);
        pthread_sigmask(s->block > 0 ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
    }
    tu_sleep(s->delay);
    s->rc = kill(getpid(), s->sig);
    return NULL;
}

static int start_sender(aev_loop_t *loop, void *arg)
{
    (void)loop;
    sender_t *s = arg;
    pthread_t *t = (pthread_t *)(s + 1);
    ck_assert_int_eq(pthread_create(t, NULL, sender_thread, s), 0);
    return 0;
}

START_TEST(test_signal_from_another_thread_wakes_loop)
{
    struct {
        sender_t s;
        pthread_t t;
    } snd = {.s = {.sig = SIGUSR2, .delay = 0.1, .rc = -1}};
    sig_rec_t rec = {0};
    aev_loop_t *loop = tu_loop_new();
    rec.loop = loop;
    rec.thread = pthread_self();
    rec.thread_set = 1;
    rec.stop = 1;
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &rec), 0);
    /* the loop has nothing else to do: it sleeps in its poll until the signal */
    ck_assert_int_eq(aev_loop_call_soon(loop, start_sender, &snd.s, NULL), 0);
    int timed_out = tu_run_guarded(loop, 10.0);
    pthread_join(snd.t, NULL);
    ck_assert_int_eq(snd.s.rc, 0);
    ck_assert_msg(!timed_out, "the signal did not wake the loop");
    ck_assert_int_eq(rec.count, 1);
    ck_assert_int_eq(rec.wrong_loop, 0);
    ck_assert_int_eq(rec.wrong_thread, 0);
    tu_loop_free(loop);
}
END_TEST

/* The loop's thread blocks the signal: the kernel runs the process-wide handler
 * on the other thread, and the callback still runs on the loop's thread. */
START_TEST(test_signal_handled_on_another_thread)
{
    struct {
        sender_t s;
        pthread_t t;
    } snd = {.s = {.sig = SIGHUP, .delay = 0.1, .rc = -1, .block = -1}};
    sig_rec_t rec = {0};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    aev_loop_t *loop = tu_loop_new();
    rec.loop = loop;
    rec.thread = pthread_self();
    rec.thread_set = 1;
    rec.stop = 1;
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGHUP, rec_cb, &rec), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, start_sender, &snd.s, NULL), 0);
    int timed_out = tu_run_guarded(loop, 10.0);
    pthread_join(snd.t, NULL);
    ck_assert_int_eq(snd.s.rc, 0);
    ck_assert_msg(!timed_out, "the signal did not wake the loop");
    ck_assert_int_eq(rec.count, 1);
    ck_assert_int_eq(rec.wrong_thread, 0);
    /* it was never pending for this thread: the other thread took it */
    sigset_t pend;
    ck_assert_int_eq(sigpending(&pend), 0);
    ck_assert(!sigismember(&pend, SIGHUP));
    tu_loop_free(loop);
}
END_TEST

/* ---- bad input ----------------------------------------------------------------- */

START_TEST(test_invalid_and_uncatchable_refused)
{
    aev_loop_t *loop = tu_loop_new();
    sig_rec_t rec = {.loop = loop};
    const int bad[] = {0, -1, NSIG, NSIG + 5, 1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(aev_loop_add_signal_handler(loop, bad[i], rec_cb, &rec), -EINVAL);
        ck_assert_msg(strstr(aev_error_detail(), "invalid signal number") != NULL,
                      "signal %d: detail \"%s\"", bad[i], aev_error_detail());
        ck_assert_int_eq(aev_loop_remove_signal_handler(loop, bad[i]), -EINVAL);
    }
    const int uncatchable[] = {SIGKILL, SIGSTOP};
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(aev_loop_add_signal_handler(loop, uncatchable[i], rec_cb, &rec), -EINVAL);
        ck_assert_msg(strstr(aev_error_detail(), "cannot be caught") != NULL, "detail \"%s\"",
                      aev_error_detail());
        ck_assert_int_eq(aev_loop_remove_signal_handler(loop, uncatchable[i]), 0);
    }
    if (SIGRTMIN > 32) {
        /* glibc keeps signal 32 for its threads: sigaction refuses it */
        ck_assert_int_eq(aev_loop_add_signal_handler(loop, 32, rec_cb, &rec), -EINVAL);
        ck_assert_msg(strstr(aev_error_detail(), "cannot be caught") != NULL, "detail \"%s\"",
                      aev_error_detail());
        ck_assert_int_eq(aev_loop_remove_signal_handler(loop, 32), 0);
    }
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, NULL, &rec), -EINVAL);
    ck_assert_int_eq(aev_loop_add_signal_handler(NULL, SIGUSR1, rec_cb, &rec), -EINVAL);
    ck_assert_int_eq(aev_loop_remove_signal_handler(NULL, SIGUSR1), -EINVAL);
    /* nothing refused left a trace: SIGUSR1 is still at its default */
    ck_assert(query(SIGUSR1).sa_handler == SIG_DFL);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 0);
    tu_loop_free(loop);
}
END_TEST

/* ---- remove, replace, dispositions ------------------------------------------ */

START_TEST(test_remove_returns_1_then_0_and_restores_ignore)
{
    ck_assert(signal(SIGUSR1, SIG_IGN) != SIG_ERR);
    aev_loop_t *loop = tu_loop_new();
    sig_rec_t rec = {.loop = loop};
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &rec), 0);
    ck_assert(query(SIGUSR1).sa_handler != SIG_IGN);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 1);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 0);
    ck_assert(query(SIGUSR1).sa_handler == SIG_IGN);
    send_self(SIGUSR1); /* ignored again: the process goes on */
    aev_loop_call_later(loop, 0.1, tu_stop_cb, NULL, NULL);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(rec.count, 0);
    tu_loop_free(loop);
}
END_TEST

static volatile sig_atomic_t custom_hits;
static void custom_handler(int sig, siginfo_t *info, void *uc)
{
    (void)sig;
    (void)info;
    (void)uc;
    custom_hits++;
}

START_TEST(test_remove_restores_custom_handler)
{
    struct sigaction mine;
    memset(&mine, 0, sizeof mine);
    mine.sa_sigaction = custom_handler;
    mine.sa_flags = SA_SIGINFO;
    sigemptyset(&mine.sa_mask);
    sigaddset(&mine.sa_mask, SIGWINCH);
    ck_assert_int_eq(sigaction(SIGUSR2, &mine, NULL), 0);
    custom_hits = 0;

    aev_loop_t *loop = tu_loop_new();
    sig_rec_t rec = {.loop = loop, .stop = 1};
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &rec), 0);
    send_self(SIGUSR2);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(rec.count, 1);
    ck_assert_int_eq(custom_hits, 0);

    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR2), 1);
    struct sigaction now = query(SIGUSR2);
    ck_assert(now.sa_sigaction == custom_handler);
    ck_assert(now.sa_flags & SA_SIGINFO);
    ck_assert(sigismember(&now.sa_mask, SIGWINCH));
    send_self(SIGUSR2);
    ck_assert_int_eq(custom_hits, 1);
    tu_run_once(loop);
    ck_assert_int_eq(rec.count, 1);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_add_again_replaces_handler)
{
    aev_loop_t *loop = tu_loop_new();
    sig_rec_t first = {.loop = loop, .stop = 1}, second = {.loop = loop, .stop = 1};
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &first), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &second), 0);
    send_self(SIGUSR1);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(first.count, 0);
    ck_assert_int_eq(second.count, 1);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 1);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 0);
    /* the disposition saved by the first add (the default) is back */
    ck_assert(query(SIGUSR1).sa_handler == SIG_DFL);
    tu_loop_free(loop);
}
END_TEST

static int kill_then_remove(aev_loop_t *loop, void *arg)
{
    (void)arg;
    send_self(SIGUSR1);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 1);
    return aev_loop_call_later(loop, 0.2, tu_stop_cb, NULL, NULL);
}

START_TEST(test_remove_drops_arrival_not_yet_run)
{
    ck_assert(signal(SIGUSR1, SIG_IGN) != SIG_ERR); /* what remove puts back */
    aev_loop_t *loop = tu_loop_new();
    sig_rec_t rec = {.loop = loop};
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &rec), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, kill_then_remove, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(rec.count, 0);
    tu_loop_free(loop);
}
END_TEST

/* ---- errors and contexts --------------------------------------------------------- */

static int after_error_ran;
static int after_error(aev_loop_t *loop, void *arg)
{
    (void)arg;
    after_error_ran = 1;
    aev_loop_stop(loop);
    return 0;
}

static int failing_handler(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_call_soon(loop, after_error, NULL, NULL);
    return -EIO;
}

START_TEST(test_handler_error_reaches_exception_handler)
{
    static tu_exc_t exc;
    memset(&exc, 0, sizeof exc);
    after_error_ran = 0;
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    aev_call_options_t opts = {.name = "on_sigusr1"};
    ck_assert_int_eq(aev_loop_add_signal_handler_ex(loop, SIGUSR1, &opts, failing_handler, NULL), 0);
    send_self(SIGUSR1);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(after_error_ran, 1); /* the loop went on */
    ck_assert_int_eq(exc.count, 1);
    ck_assert_int_eq(exc.records[0].error, -EIO);
    ck_assert_ptr_nonnull(exc.records[0].handle);
    ck_assert_msg(strstr(exc.records[0].message, "Exception in callback on_sigusr1") != NULL,
                  "message \"%s\"", exc.records[0].message);
    tu_loop_free(loop);
}
END_TEST

static aev_context_var_t *ctx_var;
static void *ctx_seen[2];
static int ctx_handler(aev_loop_t *loop, void *arg)
{
    int i = (int)(intptr_t)arg;
    ctx_seen[i] = aev_context_var_get(ctx_var);
    if (ctx_seen[0] && ctx_seen[1])
        aev_loop_stop(loop);
    return 0;
}

START_TEST(test_handler_runs_in_context_of_add)
{
    static int a, b, c;
    ctx_var = aev_context_var_new("who", NULL);
    ctx_seen[0] = ctx_seen[1] = NULL;
    aev_loop_t *loop = tu_loop_new();
    /* an explicit context */
    aev_context_t *ctx = aev_context_new();
    ck_assert_int_eq(aev_context_set(ctx, ctx_var, &a), 0);
    aev_call_options_t opts = {.context = ctx};
    ck_assert_int_eq(aev_loop_add_signal_handler_ex(loop, SIGUSR1, &opts, ctx_handler, (void *)0), 0);
    aev_context_unref(ctx);
    /* a copy of the current context, taken at add time */
    ck_assert_int_eq(aev_context_var_set(ctx_var, &b), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR2, ctx_handler, (void *)1), 0);
    ck_assert_int_eq(aev_context_var_set(ctx_var, &c), 0);
    send_self(SIGUSR1);
    send_self(SIGUSR2);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_ptr_eq(ctx_seen[0], &a);
    ck_assert_ptr_eq(ctx_seen[1], &b);
    tu_loop_free(loop);
    ck_assert_int_eq(aev_context_var_set(ctx_var, NULL), 0);
}
END_TEST

/* ---- closing ------------------------------------------------------------------- */

START_TEST(test_close_releases_signals)
{
    ck_assert(signal(SIGUSR1, SIG_IGN) != SIG_ERR);
    aev_loop_t *loop = tu_loop_new();
    sig_rec_t r1 = {.loop = loop}, r2 = {.loop = loop};
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r1), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &r2), 0);
    send_self(SIGUSR1); /* arrives, never runs: the loop closes first */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert(query(SIGUSR1).sa_handler == SIG_IGN);
    ck_assert(query(SIGUSR2).sa_handler == SIG_DFL);
    ck_assert_int_eq(r1.count, 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r1), AEV_ECLOSED);
    ck_assert_int_eq(aev_loop_remove_signal_handler(loop, SIGUSR1), 0);
    send_self(SIGUSR1); /* after close: ignored, as before the loop took it */
    aev_loop_free(loop);
    ck_assert_int_eq(r1.count, 0);

    /* another loop may take the signals now; freeing it unclosed gives them back too */
    aev_loop_t *other = tu_loop_new();
    sig_rec_t r3 = {.loop = other, .stop = 1};
    ck_assert_int_eq(aev_loop_add_signal_handler(other, SIGUSR1, rec_cb, &r3), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(other, SIGUSR2, rec_cb, &r3), 0);
    send_self(SIGUSR1);
    ck_assert_int_eq(tu_run_guarded(other, 10.0), 0);
    ck_assert_int_eq(r3.count, 1);
    aev_log_set_handler(NULL, NULL, AEV_LOG_ERROR); /* quiet the "unclosed loop" warning */
    aev_loop_free(other);
    tu_log_capture_stop();
    ck_assert(query(SIGUSR1).sa_handler == SIG_IGN);
    ck_assert(query(SIGUSR2).sa_handler == SIG_DFL);
}
END_TEST

/* ---- two loops ------------------------------------------------------------------ */

START_TEST(test_two_loops_one_owner_per_signal)
{
    aev_loop_t *a = tu_loop_new(), *b = tu_loop_new();
    sig_rec_t ra = {.loop = a, .stop = 1}, rb = {.loop = b, .stop = 1};
    ck_assert_int_eq(aev_loop_add_signal_handler(a, SIGUSR1, rec_cb, &ra), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(b, SIGUSR1, rec_cb, &rb), -EBUSY);
    ck_assert_msg(strstr(aev_error_detail(), "another open event loop") != NULL, "detail \"%s\"",
                  aev_error_detail());
    ck_assert_int_eq(aev_loop_remove_signal_handler(b, SIGUSR1), 0); /* not b's to remove */
    ck_assert_int_eq(aev_loop_add_signal_handler(b, SIGUSR2, rec_cb, &rb), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(a, SIGUSR2, rec_cb, &ra), -EBUSY);

    send_self(SIGUSR1); /* still a's */
    ck_assert_int_eq(tu_run_guarded(a, 10.0), 0);
    ck_assert_int_eq(ra.count, 1);
    ck_assert_int_eq(rb.count, 0);

    /* closing a frees SIGUSR1 for b; its saved disposition is the default again */
    tu_loop_free(a);
    ck_assert(query(SIGUSR1).sa_handler == SIG_DFL);
    ck_assert_int_eq(aev_loop_add_signal_handler(b, SIGUSR1, rec_cb, &rb), 0);
    send_self(SIGUSR1);
    ck_assert_int_eq(tu_run_guarded(b, 10.0), 0);
    ck_assert_int_eq(rb.count, 1);
    ck_assert_int_eq(rb.wrong_loop, 0);
    tu_loop_free(b);
    ck_assert(query(SIGUSR1).sa_handler == SIG_DFL);
    ck_assert(query(SIGUSR2).sa_handler == SIG_DFL);
}
END_TEST

typedef struct loop_thread_arg {
    aev_loop_t *loop;
    int timed_out;
} loop_thread_arg_t;

static void *run_loop_thread(void *arg)
{
    loop_thread_arg_t *lt = arg;
    lt->timed_out = tu_run_guarded(lt->loop, 10.0);
    return NULL;
}

START_TEST(test_two_loops_in_two_threads)
{
    aev_loop_t *a = tu_loop_new(), *b = tu_loop_new();
    sig_rec_t ra = {.loop = a, .stop = 1}, rb = {.loop = b, .stop = 1};
    ra.thread = pthread_self();
    ra.thread_set = 1;
    ck_assert_int_eq(aev_loop_add_signal_handler(a, SIGUSR1, rec_cb, &ra), 0);
    ck_assert_int_eq(aev_loop_add_signal_handler(b, SIGUSR2, rec_cb, &rb), 0);
    loop_thread_arg_t lt = {.loop = b};
    pthread_t tb;
    ck_assert_int_eq(pthread_create(&tb, NULL, run_loop_thread, &lt), 0);
    struct {
        sender_t s;
        pthread_t t;
    } s1 = {.s = {.sig = SIGUSR1, .delay = 0.1, .rc = -1, .block = 1}},
      s2 = {.s = {.sig = SIGUSR2, .delay = 0.1, .rc = -1, .block = 1}};
    ck_assert_int_eq(aev_loop_call_soon(a, start_sender, &s1.s, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(a, start_sender, &s2.s, NULL), 0);
    int timed_out = tu_run_guarded(a, 10.0);
    pthread_join(tb, NULL);
    pthread_join(s1.t, NULL);
    pthread_join(s2.t, NULL);
    ck_assert_int_eq(s1.s.rc, 0);
    ck_assert_int_eq(s2.s.rc, 0);
    ck_assert(!timed_out);
    ck_assert(!lt.timed_out);
    ck_assert_int_eq(ra.count, 1);
    ck_assert_int_eq(rb.count, 1);
    ck_assert_int_eq(ra.wrong_loop, 0);
    ck_assert_int_eq(rb.wrong_loop, 0);
    ck_assert_int_eq(ra.wrong_thread, 0);
    ck_assert(pthread_equal(rb.ran_on, tb)); /* each runs on its own loop's thread */
    tu_loop_free(a);
    tu_loop_free(b);
}
END_TEST

/* Loops in two threads add and remove at the same time: one shared signal
 * (one owner at a time) and one signal each. */
#define CHURN 300
typedef struct churn {
    int own_sig;
    int added, busy, other_errors, removed;
} churn_t;

static int noop_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return 0;
}

static void *churn_thread(void *arg)
{
    churn_t *c = arg;
    aev_loop_t *loop = NULL;
    if (aev_loop_new(NULL, &loop) < 0)
        return NULL;
    for (int i = 0; i < CHURN; i++) {
        int rc = aev_loop_add_signal_handler(loop, SIGWINCH, noop_cb, NULL);
        if (rc == 0) {
            c->added++;
            if (aev_loop_remove_signal_handler(loop, SIGWINCH) == 1)
                c->removed++;
        } else if (rc == -EBUSY) {
            c->busy++;
        } else {
            c->other_errors++;
        }
        if (aev_loop_add_signal_handler(loop, c->own_sig, noop_cb, NULL) != 0 ||
            aev_loop_remove_signal_handler(loop, c->own_sig) != 1)
            c->other_errors++;
    }
    aev_loop_close(loop);
    aev_loop_free(loop);
    return NULL;
}

START_TEST(test_concurrent_add_remove_two_threads)
{
    churn_t c[2] = {{.own_sig = SIGUSR1}, {.own_sig = SIGUSR2}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(c[i].other_errors, 0);
        ck_assert_int_eq(c[i].added + c[i].busy, CHURN);
        ck_assert_int_eq(c[i].removed, c[i].added);
    }
    ck_assert_int_gt(c[0].added + c[1].added, 0);
    ck_assert(query(SIGWINCH).sa_handler == SIG_DFL);
    ck_assert(query(SIGUSR1).sa_handler == SIG_DFL);
    ck_assert(query(SIGUSR2).sa_handler == SIG_DFL);
}
END_TEST

static Suite *signal_suite(void)
{
    Suite *s = suite_create("signal");
    TU_ADD(s, test_handler_runs_as_loop_callback);
    TU_ADD(s, test_several_signals_each_delivered_once);
    TU_ADD(s, test_realtime_signal_runs_per_arrival);
    TU_ADD(s, test_signal_from_another_thread_wakes_loop);
    TU_ADD(s, test_signal_handled_on_another_thread);
    TU_ADD(s, test_invalid_and_uncatchable_refused);
    TU_ADD(s, test_remove_returns_1_then_0_and_restores_ignore);
    TU_ADD(s, test_remove_restores_custom_handler);
    TU_ADD(s, test_add_again_replaces_handler);
    TU_ADD(s, test_remove_drops_arrival_not_yet_run);
    TU_ADD(s, test_handler_error_reaches_exception_handler);
    TU_ADD(s, test_handler_runs_in_context_of_add);
    TU_ADD(s, test_close_releases_signals);
    TU_ADD(s, test_two_loops_one_owner_per_signal);
    TU_ADD(s, test_two_loops_in_two_threads);
    TU_ADD(s, test_concurrent_add_remove_two_threads);
    return s;
}

TU_MAIN(signal_suite)
