/* libaev plugin exec/threads - a pool of POSIX threads, as concurrent.futures'
 * ThreadPoolExecutor: at most max_workers threads, started lazily (a new
 * thread only when no idle one is there to take the item), one FIFO queue,
 * workers that live until the pool shuts down.
 *
 * Option: [exec.threads] max_workers = N (1..AEV_THREADS_MAX); default
 * min(32, CPUs available to the process + 4), as Python's. A max_workers given
 * by the core (the API) wins over the option. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aev/error.h"
#include "aev/log.h"
#include "aev/plugin.h"

#define AEV_THREADS_MAX 4096

typedef struct item {
    aev_exec_item_fn fn;
    void *arg;
    struct item *next;
} item_t;

struct aev_exec_pool {
    const aev_host_t *host;
    pthread_mutex_t lock;
    pthread_cond_t work_cv;   /* an item was queued, or shutdown */
    pthread_cond_t joined_cv; /* the joining thread finished */
    item_t *head, *tail;
    size_t queued;
    pthread_t *threads; /* max_workers slots */
    int nthreads;
    int idle; /* workers waiting for an item */
    int max_workers;
    int shutdown;
    int joining, joined;
};

/* ---- options ---------------------------------------------------------------------- */

static int default_workers(void)
{
    long n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return n + 4 < 32 ? (int)n + 4 : 32;
}

/* The option's value as a count, or -EINVAL with a detail naming the key. */
static int parse_workers(const aev_host_t *host, const char *v)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    int bad = errno != 0 || end == v || n < 1 || n > AEV_THREADS_MAX;
    while (!bad && end && (*end == ' ' || *end == '\t'))
        end++;
    if (bad || (end && *end)) {
        errno = 0;
        host->set_error_detail("[exec.threads] max_workers = \"%s\": expected a whole number "
                               "from 1 to %d",
                               v, AEV_THREADS_MAX);
        return -EINVAL;
    }
    return (int)n;
}

/* ---- workers ------------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    aev_exec_pool_t *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->shutdown) {
            p->idle++;
            pthread_cond_wait(&p->work_cv, &p->lock);
            p->idle--;
        }
        item_t *it = p->head;
        if (!it)
            break; /* shut down and nothing left to run */
        p->head = it->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        aev_exec_item_fn fn = it->fn;
        void *farg = it->arg;
        p->host->free(it);
        fn(farg, 1);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Starts one worker with every signal blocked. Caller holds the lock. */
static int start_worker(aev_exec_pool_t *p)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0)
        return -err;
    p->nthreads++;
    return 0;
}

/* ---- ops ------------------------------------------------------------------------------ */

static int threads_create(const aev_host_t *host, const aev_plugin_context_t *ctx, int max_workers,
                          aev_exec_pool_t **out)
{
    *out = NULL;
    if (max_workers < 0 || max_workers > AEV_THREADS_MAX) {
        host->set_error_detail("max_workers %d: expected 1 to %d (0: the default)", max_workers,
                               AEV_THREADS_MAX);
        return -EINVAL;
    }
    int n = max_workers;
    if (n == 0) {
        const char *v = host->option(ctx, "max_workers");
        n = v ? parse_workers(host, v) : default_workers();
        if (n < 0)
            return n;
    }
    aev_exec_pool_t *p = host->alloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    memset(p, 0, sizeof *p);
    p->host = host;
    p->max_workers = n;
    p->threads = host->alloc((size_t)n * sizeof *p->threads);
    if (!p->threads) {
        host->free(p);
        return -ENOMEM;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        host->free(p->threads);
        host->free(p);
        return -ENOMEM;
    }
    if (pthread_cond_init(&p->work_cv, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        host->free(p->threads);
        host->free(p);
        return -ENOMEM;
    }
    if (pthread_cond_init(&p->joined_cv, NULL) != 0) {
        pthread_cond_destroy(&p->work_cv);
        pthread_mutex_destroy(&p->lock);
        host->free(p->threads);
        host->free(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

static int threads_submit(aev_exec_pool_t *p, aev_exec_item_fn fn, void *arg)
{
    if (!fn)
        return -EINVAL;
    item_t *it = p->host->alloc(sizeof *it);
    if (!it)
        return -ENOMEM;
    it->fn = fn;
    it->arg = arg;
    it->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->shutdown) {
        pthread_mutex_unlock(&p->lock);
        p->host->free(it);
        return AEV_ESHUTDOWN;
    }
    if (p->tail)
        p->tail->next = it;
    else
        p->head = it;
    p->tail = it;
    p->queued++;
    /* A new thread only when the idle ones cannot take every queued item. */
    if (p->queued > (size_t)p->idle && p->nthreads < p->max_workers) {
        int rc = start_worker(p);
        if (rc < 0 && p->nthreads == 0) {
            /* nobody would ever run it: take it back (it is the only item) */
            p->head = p->tail = NULL;
            p->queued = 0;
            pthread_mutex_unlock(&p->lock);
            p->host->free(it);
            p->host->set_error_detail("the thread pool could not start a worker: %s",
                                      strerror(-rc));
            return rc;
        }
        if (rc < 0)
            p->host->log(AEV_LOG_WARNING, "aev.exec.threads",
                         "could not start worker %d of %d (%s); the %d running ones take the work",
                         p->nthreads + 1, p->max_workers, strerror(-rc), p->nthreads);
    }
    pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static int threads_shutdown(aev_exec_pool_t *p, int wait, int cancel_pending)
{
    item_t *dropped = NULL;
    pthread_mutex_lock(&p->lock);
    p->shutdown = 1;
    if (cancel_pending) {
        dropped = p->head;
        p->head = p->tail = NULL;
        p->queued = 0;
    }
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->lock);
    while (dropped) {
        item_t *next = dropped->next;
        dropped->fn(dropped->arg, 0);
        p->host->free(dropped);
        dropped = next;
    }
    if (!wait)
        return 0;
    pthread_mutex_lock(&p->lock);
    if (p->joining) {
        while (!p->joined)
            pthread_cond_wait(&p->joined_cv, &p->lock);
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    p->joining = 1;
    int n = p->nthreads; /* fixed now: no thread starts after shutdown */
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_lock(&p->lock);
    p->joined = 1;
    pthread_cond_broadcast(&p->joined_cv);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static int threads_max_workers(const aev_exec_pool_t *p)
{
    return p->max_workers;
}

static void threads_destroy(aev_exec_pool_t *p)
{
    threads_shutdown(p, 1, 0);
    pthread_cond_destroy(&p->joined_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->lock);
    p->host->free(p->threads);
    p->host->free(p);
}

static const aev_exec_ops_t threads_ops = {
    .version = AEV_EXEC_OPS_VERSION,
    .caps = 0,
    .create = threads_create,
    .submit = threads_submit,
    .shutdown = threads_shutdown,
    .max_workers = threads_max_workers,
    .destroy = threads_destroy,
};

static const void *threads_init(const aev_host_t *host)
{
    (void)host;
    return &threads_ops;
}

AEV_PLUGIN_DEFINE(aev_exec_threads) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_EXEC,
    .name = "threads",
    .version = "1.0",
    .description = "POSIX thread pool (ThreadPoolExecutor): lazy workers, FIFO queue",
    .priority = 10,
    .caps = 0,
    .probe = NULL,
    .init = threads_init,
};
