/* libaev core - executors: run_in_executor, the loop's default executor,
 * shutdown_default_executor, and what closing the loop does to them.
 *
 * A pool (an "exec" plugin) runs opaque items; everything about loops and
 * futures is here. Each run_in_executor call is one job with two references:
 * the pool's item (held until the item is called and its outcome handed back
 * to the loop) and the loop's (held while the loop watches the job's future).
 *
 * Threads meet in one place, the loop's link: a mutex, the loop pointer
 * (NULL once the loop closed) and a list of finished jobs. A worker that
 * finishes a job appends it to the list and, while the loop is open, queues
 * one drain callback with call_soon_threadsafe; the drain runs on the loop
 * thread and completes the futures. After the loop closed a worker drops the
 * result itself and never looks at the loop again, so closing needs no wait.
 * Futures are only ever touched on the loop thread.
 *
 * Cancellation follows concurrent.futures: a done callback on the future
 * moves a queued job to "cancelled" (compare-and-swap against the worker
 * moving it to "running"); a cancelled job's item is skipped when its turn
 * comes. A job that already runs finishes, and its result is dropped. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop_internal.h"

enum { JOB_QUEUED = 0, JOB_RUNNING, JOB_DONE, JOB_CANCELLED, JOB_DROPPED };

typedef struct job job_t;

struct aev_executor {
    const aev__plugin_t *plugin;
    const aev_exec_ops_t *ops;
    aev_exec_pool_t *pool;
    struct aev_plugin_context ctx;
    aev_policy_t *own_policy; /* NULL when the policy is the loop's */
    aev_loop_t *owner;        /* the loop it is (or was) the default executor of */
    pthread_t joiner;         /* shutdown_default_executor's joining thread */
    int joiner_started;
    aev__exec_link_t *joiner_link;
    aev_executor_t *retired_next;
};

struct aev__exec_link {
    pthread_mutex_t lock;
    atomic_uint refs; /* the loop's, one per job, */
    /* under lock */
    aev_loop_t *loop; /* NULL once the loop closed */
    job_t *done_head, *done_tail;
    int posted;         /* a drain callback is queued */
    int joined_pending; /* the joiner thread finished */
    /* loop thread only */
    job_t *jobs; /* jobs whose future the loop watches */
    aev_executor_t *default_ex;
    aev_executor_t *retired; /* former defaults: shut down, freed with the loop */
    int shutdown_called;
    aev_future_t *shutdown_fut;
    aev_handle_t *shutdown_timer;
    double shutdown_timeout;
};

struct job {
    atomic_uint refs;
    atomic_int state;
    aev__exec_link_t *link;
    aev_work_fn fn;
    void *arg;
    void (*arg_destroy)(void *);
    int status;
    aev_work_result_t res;
    /* loop thread only */
    aev_future_t *future; /* set while the loop holds its reference */
    job_t *prev, *next;
    /* under the link's lock */
    job_t *done_next;
};

/* ---- links and jobs ---------------------------------------------------------------- */

static void link_unref(aev__exec_link_t *l)
{
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

static aev__exec_link_t *link_get(aev_loop_t *loop)
{
    if (loop->exec)
        return loop->exec;
    aev__exec_link_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l);
        return NULL;
    }
    atomic_init(&l->refs, 1);
    l->loop = loop;
    loop->exec = l;
    return l;
}

static void job_unref(job_t *j)
{
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
        return;
    aev__exec_link_t *l = j->link;
    free(j);
    link_unref(l);
}

/* Frees a result nobody took. */
static void job_drop_result(job_t *j)
{
    if (j->res.destroy && j->res.value)
        j->res.destroy(j->res.value);
    j->res.value = NULL;
    j->res.destroy = NULL;
}

static int job_future_done(aev_future_t *f, void *arg);

/* Loop thread: stops watching the job's future and drops the loop's reference. */
static void job_loop_release(job_t *j)
{
    aev__exec_link_t *l = j->link;
    if (j->prev)
        j->prev->next = j->next;
    else
        l->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    aev_future_t *f = j->future;
    j->future = NULL;
    if (!aev_future_done(f))
        aev_future_remove_done_callback(f, job_future_done, j);
    aev_future_unref(f);
    job_unref(j);
}

/* Loop thread: the future is done (cancelled, or completed by someone else) before the
 * job reported back: a job not started yet never starts. */
static int job_future_done(aev_future_t *f, void *arg)
{
    (void)f;
    job_t *j = arg;
    int expect = JOB_QUEUED;
    atomic_compare_exchange_strong(&j->state, &expect, JOB_CANCELLED);
    job_loop_release(j);
    return 0;
}

static int drain_cb(aev_loop_t *loop, void *arg);

/* Hands a job back to its loop (any thread); the pool's reference goes with it. */
static void job_post(job_t *j)
{
    aev__exec_link_t *l = j->link;
    pthread_mutex_lock(&l->lock);
    if (l->loop) {
        j->done_next = NULL;
        if (l->done_tail)
            l->done_tail->done_next = j;
        else
            l->done_head = j;
        l->done_tail = j;
        if (!l->posted) {
            int rc = aev_loop_call_soon_threadsafe(l->loop, drain_cb, l, NULL);
            if (rc == 0)
                l->posted = 1;
            else
                aev_log(AEV_LOG_ERROR, "aev.exec",
                        "could not hand an executor result back to the loop: %s (it waits "
                        "for the next one)",
                        aev_strerror(rc));
        }
        pthread_mutex_unlock(&l->lock);
        return;
    }
    pthread_mutex_unlock(&l->lock);
    /* the loop closed: nobody can take the result */
    job_drop_result(j);
    job_unref(j);
}

/* The pool's item: run (run = 1, on a worker) or dropped unrun (run = 0). */
static void job_item(void *arg, int run)
{
    job_t *j = arg;
    int expect = JOB_QUEUED;
    if (run) {
        if (atomic_compare_exchange_strong(&j->state, &expect, JOB_RUNNING)) {
            int rc = j->fn(j->arg, &j->res);
            j->res.detail[sizeof j->res.detail - 1] = '\0';
            j->status = rc < 0 ? rc : 0;
            atomic_store(&j->state, JOB_DONE);
        }
    } else {
        atomic_compare_exchange_strong(&j->state, &expect, JOB_DROPPED);
    }
    if (j->arg_destroy)
        j->arg_destroy(j->arg);
    j->arg_destroy = NULL;
    job_post(j);
}

/* ---- shutdown_default_executor's completion ----------------------------------------- */

static void shutdown_complete(aev__exec_link_t *l)
{
    if (l->shutdown_timer) {
        aev_handle_cancel(l->shutdown_timer);
        aev_handle_unref(l->shutdown_timer);
        l->shutdown_timer = NULL;
    }
    aev_future_t *f = l->shutdown_fut;
    l->shutdown_fut = NULL;
    if (f && !aev_future_done(f))
        aev_future_set_result(f, NULL, NULL);
    aev_future_unref(f);
}

static int shutdown_timeout_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev__exec_link_t *l = arg;
    aev_handle_unref(l->shutdown_timer);
    l->shutdown_timer = NULL;
    aev_log(AEV_LOG_WARNING, "aev.exec",
            "The executor did not finish joining its threads within %g seconds.",
            l->shutdown_timeout);
    shutdown_complete(l);
    return 0;
}

/* ---- the drain: finished jobs, on the loop thread ------------------------------------- */

static void job_complete_future(job_t *j)
{
    aev_future_t *f = j->future;
    aev_future_remove_done_callback(f, job_future_done, j);
    if (atomic_load(&j->state) == JOB_DONE) {
        const char *detail = j->res.detail[0] ? j->res.detail : NULL;
        if (j->status == AEV_ECANCELLED) {
            aev_future_cancel(f, detail);
        } else if (j->status < 0) {
            aev_future_set_error(f, j->status, detail);
        } else if (aev_future_set_result(f, j->res.value, j->res.destroy) == 0) {
            j->res.value = NULL;
            j->res.destroy = NULL;
        }
    } else {
        aev_future_cancel(f, NULL); /* dropped by shutdown(cancel_futures) */
    }
    job_loop_release(j);
}

static int drain_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev__exec_link_t *l = arg;
    pthread_mutex_lock(&l->lock);
    job_t *j = l->done_head;
    l->done_head = l->done_tail = NULL;
    l->posted = 0;
    int joined = l->joined_pending;
    l->joined_pending = 0;
    pthread_mutex_unlock(&l->lock);
    while (j) {
        job_t *next = j->done_next;
        /* Still watched and pending: complete it. Watched but done: its done callback is
         * queued and drops the loop's reference. */
        if (j->future && !aev_future_done(j->future))
            job_complete_future(j);
        job_drop_result(j);
        job_unref(j);
        j = next;
    }
    if (joined)
        shutdown_complete(l);
    return 0;
}

/* ---- executors ----------------------------------------------------------------------- */

static void exec_destroy(aev_executor_t *ex)
{
    if (ex->joiner_started)
        pthread_join(ex->joiner, NULL);
    ex->ops->destroy(ex->pool);
    aev_policy_free(ex->own_policy);
    free(ex);
}

/* Creates an executor with policy (taken over when own is 1: freed on failure too). */
static int exec_create(aev_policy_t *policy, int own, const char *plugin, int max_workers,
                       aev_executor_t **out)
{
    *out = NULL;
    if (max_workers < 0) {
        aev__set_detail("max_workers must be positive (0: the default), not %d", max_workers);
        if (own)
            aev_policy_free(policy);
        return -EINVAL;
    }
    const aev_policy_choice_t *pc = aev_policy_get(policy, "exec");
    const char *list = plugin ? plugin : pc->value;
    const aev__plugin_t *pl = NULL;
    int rc = aev__registry_load(policy, AEV_FAMILY_EXEC, list, plugin ? "argument" : pc->origin_text,
                                &pl);
    if (rc < 0) {
        if (own)
            aev_policy_free(policy);
        return rc;
    }
    aev_executor_t *ex = calloc(1, sizeof *ex);
    if (!ex) {
        if (own)
            aev_policy_free(policy);
        return -ENOMEM;
    }
    ex->plugin = pl;
    ex->ops = pl->ops;
    ex->own_policy = own ? policy : NULL;
    ex->ctx.policy = policy;
    ex->ctx.family = "exec";
    ex->ctx.name = pl->desc->name;
    aev__clear_detail();
    rc = ex->ops->create(&aev__host, &ex->ctx, max_workers, &ex->pool);
    if (rc < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", aev_error_detail()[0] ? aev_error_detail() : aev_strerror(rc));
        char files[512] = "";
        size_t n = 0;
        for (int i = 0; aev_policy_config_file(policy, i) && n + 1 < sizeof files; i++) {
            int w = snprintf(files + n, sizeof files - n, "%s%s", i ? ", " : "",
                             aev_policy_config_file(policy, i));
            if (w < 0)
                break;
            n += (size_t)w;
        }
        aev__set_detail("exec plugin \"%s\" (%s) could not create a pool: %s%s%s%s", pl->desc->name,
                        pl->path, why, files[0] ? " (config files read: " : "", files,
                        files[0] ? ")" : "");
        aev_policy_free(ex->own_policy);
        free(ex);
        return rc;
    }
    *out = ex;
    return 0;
}

int aev_executor_new(const aev_executor_options_t *opts, aev_executor_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    aev__clear_detail();
    aev_policy_t *policy = NULL;
    int rc = aev_policy_resolve(opts ? opts->policy : NULL, &policy);
    if (rc < 0)
        return rc;
    return exec_create(policy, 1, opts ? opts->plugin : NULL, opts ? opts->max_workers : 0, out);
}

int aev_executor_shutdown(aev_executor_t *ex, int wait, int cancel_futures)
{
    if (!ex)
        return -EINVAL;
    return ex->ops->shutdown(ex->pool, wait ? 1 : 0, cancel_futures ? 1 : 0);
}

void aev_executor_free(aev_executor_t *ex)
{
    if (!ex)
        return;
    if (ex->owner) {
        aev_log(AEV_LOG_ERROR, "aev.exec",
                "aev_executor_free() on the default executor of loop %p: ignored (the loop frees it)",
                (void *)ex->owner);
        return;
    }
    exec_destroy(ex);
}

int aev_executor_max_workers(const aev_executor_t *ex)
{
    return ex ? ex->ops->max_workers(ex->pool) : -EINVAL;
}

const char *aev_executor_plugin_name(const aev_executor_t *ex)
{
    return ex ? ex->plugin->desc->name : NULL;
}

/* ---- the loop's side ------------------------------------------------------------------ */

int aev_loop_run_in_executor_ex(aev_loop_t *loop, aev_executor_t *ex, const aev_run_options_t *opts,
                                aev_work_fn fn, void *arg, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !fn || !out)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    aev__exec_link_t *l = link_get(loop);
    if (!l)
        return -ENOMEM;
    if (!ex) {
        if (l->shutdown_called) {
            aev__set_detail("Executor shutdown has been called (the loop's default executor)");
            return AEV_ESHUTDOWN;
        }
        if (!l->default_ex) {
            rc = exec_create(loop->policy, 0, NULL, 0, &l->default_ex);
            if (rc < 0)
                return rc;
            l->default_ex->owner = loop;
        }
        ex = l->default_ex;
    }
    aev_future_t *f = NULL;
    rc = aev_loop_create_future(loop, &f);
    if (rc < 0)
        return rc;
    job_t *j = calloc(1, sizeof *j);
    if (!j) {
        aev_future_unref(f);
        return -ENOMEM;
    }
    atomic_init(&j->refs, 2);
    atomic_init(&j->state, JOB_QUEUED);
    j->link = l;
    j->fn = fn;
    j->arg = arg;
    j->arg_destroy = opts ? opts->arg_destroy : NULL;
    rc = aev_future_add_done_callback(f, job_future_done, j);
    if (rc < 0) {
        free(j);
        aev_future_unref(f);
        return rc;
    }
    j->future = aev_future_ref(f);
    j->next = l->jobs;
    if (l->jobs)
        l->jobs->prev = j;
    l->jobs = j;
    atomic_fetch_add(&l->refs, 1);
    rc = ex->ops->submit(ex->pool, job_item, j);
    if (rc < 0) {
        j->arg_destroy = NULL; /* the caller keeps arg */
        job_loop_release(j);   /* the loop's reference */
        job_unref(j);          /* the item's */
        aev_future_unref(f);
        if (rc == AEV_ESHUTDOWN)
            aev__set_detail("cannot schedule new futures after shutdown");
        return rc;
    }
    *out = f;
    return 0;
}

int aev_loop_run_in_executor(aev_loop_t *loop, aev_executor_t *ex, aev_work_fn fn, void *arg,
                             aev_future_t **out)
{
    return aev_loop_run_in_executor_ex(loop, ex, NULL, fn, arg, out);
}

int aev_loop_set_default_executor(aev_loop_t *loop, aev_executor_t *ex)
{
    if (!loop || !ex)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (ex->owner) {
        if (ex->owner == loop && loop->exec && loop->exec->default_ex == ex)
            return 0;
        aev__set_detail("the executor already belongs to a loop (as its default executor)");
        return -EINVAL;
    }
    aev__exec_link_t *l = link_get(loop);
    if (!l)
        return -ENOMEM;
    aev_executor_t *old = l->default_ex;
    if (old) {
        old->ops->shutdown(old->pool, 0, 0);
        old->retired_next = l->retired;
        l->retired = old;
    }
    l->default_ex = ex;
    ex->owner = loop;
    return 0;
}

static void *joiner_main(void *arg)
{
    aev_executor_t *ex = arg;
    ex->ops->shutdown(ex->pool, 1, 0);
    aev__exec_link_t *l = ex->joiner_link;
    pthread_mutex_lock(&l->lock);
    if (l->loop) {
        l->joined_pending = 1;
        if (!l->posted) {
            int rc = aev_loop_call_soon_threadsafe(l->loop, drain_cb, l, NULL);
            if (rc == 0)
                l->posted = 1;
            else
                aev_log(AEV_LOG_ERROR, "aev.exec",
                        "could not report the default executor's shutdown to the loop: %s",
                        aev_strerror(rc));
        }
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

int aev_loop_shutdown_default_executor(aev_loop_t *loop, double timeout, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !out || isnan(timeout))
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    aev__exec_link_t *l = link_get(loop);
    if (!l)
        return -ENOMEM;
    aev_future_t *f = NULL;
    rc = aev_loop_create_future(loop, &f);
    if (rc < 0)
        return rc;
    aev_executor_t *ex = l->default_ex;
    if (l->shutdown_called || !ex) {
        l->shutdown_called = 1;
        aev_future_set_result(f, NULL, NULL);
        *out = f;
        return 0;
    }
    ex->ops->shutdown(ex->pool, 0, 0);
    ex->joiner_link = l;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&ex->joiner, NULL, joiner_main, ex);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        aev__set_detail("could not start a thread to join the default executor: %s", strerror(err));
        aev_future_unref(f);
        return -err;
    }
    ex->joiner_started = 1;
    l->shutdown_called = 1;
    l->shutdown_fut = aev_future_ref(f);
    if (timeout >= 0) {
        l->shutdown_timeout = timeout;
        rc = aev_loop_call_later(loop, timeout, shutdown_timeout_cb, l, &l->shutdown_timer);
        if (rc < 0)
            aev_log(AEV_LOG_ERROR, "aev.exec",
                    "could not arm the %g s timeout of shutdown_default_executor: %s; waiting "
                    "without one",
                    timeout, aev_strerror(rc));
    }
    *out = f;
    return 0;
}

const char *aev__executor_loop_plugin_name(const aev_loop_t *loop)
{
    return loop->exec && loop->exec->default_ex ? loop->exec->default_ex->plugin->desc->name : NULL;
}

void aev__executor_loop_close(aev_loop_t *loop)
{
    aev__exec_link_t *l = loop->exec;
    if (!l)
        return;
    /* as BaseEventLoop.close(): shut the default executor down, without waiting */
    l->shutdown_called = 1;
    if (l->default_ex)
        l->default_ex->ops->shutdown(l->default_ex->pool, 0, 0);
    pthread_mutex_lock(&l->lock);
    l->loop = NULL; /* from now on workers drop results themselves */
    job_t *j = l->done_head;
    l->done_head = l->done_tail = NULL;
    l->posted = 0;
    l->joined_pending = 0;
    pthread_mutex_unlock(&l->lock);
    while (j) {
        job_t *next = j->done_next;
        job_drop_result(j);
        job_unref(j);
        j = next;
    }
    while (l->jobs)
        job_loop_release(l->jobs);
    if (l->shutdown_timer) {
        aev_handle_cancel(l->shutdown_timer);
        aev_handle_unref(l->shutdown_timer);
        l->shutdown_timer = NULL;
    }
    aev_future_unref(l->shutdown_fut);
    l->shutdown_fut = NULL;
}

void aev__executor_loop_destroy(aev_loop_t *loop)
{
    aev__exec_link_t *l = loop->exec;
    if (!l)
        return;
    loop->exec = NULL;
    while (l->retired) {
        aev_executor_t *ex = l->retired;
        l->retired = ex->retired_next;
        exec_destroy(ex);
    }
    if (l->default_ex)
        exec_destroy(l->default_ex);
    l->default_ex = NULL;
    link_unref(l);
}
