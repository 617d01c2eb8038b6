/* libaev - executors: running blocking work on worker threads
 * (asyncio loop.run_in_executor, set_default_executor, shutdown_default_executor).
 *
 * An executor is a pool of worker threads served by an "exec" plugin (the
 * "threads" plugin: a ThreadPoolExecutor). aev_loop_run_in_executor() runs a
 * work function on one of its threads and gives back a future of the loop;
 * the future is always completed on the loop's thread, with the work's result
 * or error.
 *
 * Cancelling the future before the work started means the work never runs
 * (concurrent.futures semantics); once started it runs to completion, and a
 * result nobody can take any more is freed with its destroy function.
 *
 * The default executor of a loop is created on first use from the loop's
 * policy (the "exec" family; [exec.threads] max_workers in the config file).
 *
 * Closing the loop shuts its default executor down without waiting: queued
 * work still runs, but no result reaches a future any more (results are
 * dropped, their destroy functions called, on the worker thread).
 * aev_loop_free() (or the release of the last object keeping the loop alive)
 * then waits for the default executor's threads to finish, as an interpreter
 * joins a ThreadPoolExecutor's threads at exit. Work submitted to an executor
 * of your own (aev_executor_new) never touches a loop after that loop closed,
 * so such an executor may outlive its loops.
 */
#ifndef AEV_EXECUTOR_H
#define AEV_EXECUTOR_H

#include "loop.h"
#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct aev_executor aev_executor_t;

/* What a work function hands back (zeroed before the call). */
typedef struct aev_work_result {
    void *value;                 /* the future's result on success (may stay NULL) */
    void (*destroy)(void *value); /* frees value with the future, or if nobody takes it */
    char detail[256];            /* on error: an optional explanation (the future's detail) */
} aev_work_result_t;

/** A work function: runs on a worker thread. Return 0 (or any value >= 0) with the result in
 *  res, or a negative error code (with an optional res->detail) to fail the future. It must
 *  not call loop functions other than the thread-safe ones (aev_loop_call_soon_threadsafe). */
typedef int (*aev_work_fn)(void *arg, aev_work_result_t *res);

/* Options of aev_executor_new(); all zero means the defaults. */
typedef struct aev_executor_options {
    int max_workers;   /* > 0: the most threads at once; 0: the plugin's option, else
                          min(32, CPUs + 4) */
    const char *plugin; /* exec plugin name or comma list; NULL: the policy's "exec" choice */
    const aev_loop_options_t *policy; /* where the policy comes from (config_file, exec ...);
                                         NULL: environment, config files, defaults */
} aev_executor_options_t;

/* Options of aev_loop_run_in_executor_ex(). */
typedef struct aev_run_options {
    /* Called exactly once with the work's arg when the executor is done with it: after the
     * work ran, or when it will never run. May be called on the loop thread or a worker. */
    void (*arg_destroy)(void *arg);
} aev_run_options_t;

/** Creates an executor (a concurrent.futures.ThreadPoolExecutor). opts may be NULL. Fails with
 *  -EINVAL for a bad max_workers (the detail names the option and, for a config value, the
 *  config files read), or a plugin error (AEV_EPLUGIN_*), with aev_error_detail() set. */
int aev_executor_new(const aev_executor_options_t *opts, aev_executor_t **out);

/** Shuts ex down (Executor.shutdown): no new work is accepted (AEV_ESHUTDOWN). cancel_futures:
 *  work not started yet never runs and its futures are cancelled. wait: returns when all
 *  running and queued work has finished and the threads are joined. Any thread; idempotent.
 *  Returns 0 or -EINVAL. */
int aev_executor_shutdown(aev_executor_t *ex, int wait, int cancel_futures);

/** Shuts ex down, waits for its threads and frees it. NULL is ignored. Refused (logged) for an
 *  executor owned by a loop (set with aev_loop_set_default_executor). */
void aev_executor_free(aev_executor_t *ex);

/** The most threads ex runs at once. */
int aev_executor_max_workers(const aev_executor_t *ex);

/** The name of the plugin serving ex ("threads"). */
const char *aev_executor_plugin_name(const aev_executor_t *ex);

/** Runs fn(arg) on a worker thread of ex (NULL: the loop's default executor, created on first
 *  use) and gives a future completed on the loop thread: with res.value (and res.destroy) if
 *  fn returned >= 0, else with fn's error. On the loop's thread only. Errors: AEV_ECLOSED,
 *  AEV_ESHUTDOWN (ex shut down, or ex NULL after aev_loop_shutdown_default_executor),
 *  -EINVAL, -ENOMEM, or the error creating the default executor. */
int aev_loop_run_in_executor(aev_loop_t *loop, aev_executor_t *ex, aev_work_fn fn, void *arg,
                             aev_future_t **out);

/** run_in_executor with options (opts may be NULL). On failure arg_destroy is not called. */
int aev_loop_run_in_executor_ex(aev_loop_t *loop, aev_executor_t *ex, const aev_run_options_t *opts,
                                aev_work_fn fn, void *arg, aev_future_t **out);

/** Makes ex the loop's default executor (loop.set_default_executor). The loop takes ex over:
 *  it shuts it down on close or shutdown_default_executor and frees it with the loop. A
 *  default executor it had before is shut down (without waiting) and freed with the loop.
 *  -EINVAL if ex is NULL or already another loop's; AEV_ECLOSED on a closed loop. A shut
 *  down ex is taken as it is: run_in_executor with it then fails with AEV_ESHUTDOWN. */
int aev_loop_set_default_executor(aev_loop_t *loop, aev_executor_t *ex);

/** Shuts the default executor down and gives a future completed (with no value) once its
 *  threads have finished and been joined; the join happens on another thread, so the loop
 *  keeps running. timeout >= 0: after that many seconds a warning is logged and the future
 *  completes anyway. Called again, or without a default executor, the future is done at once.
 *  Afterwards run_in_executor with the default executor fails with AEV_ESHUTDOWN. */
int aev_loop_shutdown_default_executor(aev_loop_t *loop, double timeout, aev_future_t **out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* AEV_EXECUTOR_H */
