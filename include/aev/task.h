/* libaev - tasks (asyncio.Task, loop.create_task, asyncio.sleep).
 *
 * A task runs a C function on its own small stack (with a guard page below
 * it) and can wait inside it: aev_await(future) suspends the task, not the
 * thread, until the future is done; the loop runs other callbacks and tasks
 * meanwhile. A task is itself a future: the aev_future_t * that create_task
 * gives out works with every aev_future_* function (result, cancel, done
 * callbacks, references) and with aev_loop_run_until_complete().
 *
 * The function returns 0 for success (the task's result is then the value
 * given to aev_task_return(), or NULL), or a negative error code: the task
 * fails with it (detail: the one given to aev_task_fail()). Returning
 * AEV_ECANCELLED after a cancellation ends the task cancelled.
 *
 * Cancellation (aev_future_cancel(task, msg)) surfaces inside the task at the
 * wait it is suspended in, or at the next one: that aev_await / aev_sleep /
 * aev_task_sock_* returns AEV_ECANCELLED, and the future the task was awaiting
 * is cancelled too (wrap it with aev_future_shield() to keep it). The task may
 * clean up and wait again; aev_task_uncancel() withdraws the request.
 *
 * Scheduling is asyncio's: create_task schedules the first step with
 * call_soon; a task woken by a future runs from that future's done callback
 * (call_soon). A task waiting on a socket inside aev_task_sock_* is resumed by
 * the readiness callback itself (one iteration sooner, no future object).
 *
 * The task's context is a copy of the current one when it is created (or the
 * one given); callbacks scheduled from inside the task capture it.
 *
 * When the loop closes, tasks still pending are cancelled and run until they
 * finish (the place of shutdown_asyncgens): each task gets to clean up.
 */
#ifndef AEV_TASK_H
#define AEV_TASK_H

#include <stddef.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** A task's function: runs on the task's own stack; self is the task. */
typedef int (*aev_task_fn)(aev_future_t *self, void *arg);

/* Options of create_task; zero means the default. */
typedef struct aev_task_options {
    const char *name;       /* the task's name (copied); NULL: "Task-<n>" */
    aev_context_t *context; /* run in this context; NULL: a copy of the current one */
    size_t stack_size;      /* usable stack bytes; 0: 64 KiB (256 KiB under AddressSanitizer) */
} aev_task_options_t;

/** A task factory (set_task_factory): makes the task for create_task, for example by calling
 *  aev_task_new() and adding to it. Returns 0 and the task in *out, or an error. */
typedef int (*aev_task_factory_fn)(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn,
                                   void *arg, aev_future_t **out, void *userdata);

/** Creates a task running fn(task, arg) and schedules its first step (loop.create_task).
 *  Goes through the task factory when one is set. *out receives one reference. */
int aev_loop_create_task(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn, void *arg,
                         aev_future_t **out);

/** Creates a plain task (what create_task does with no factory): for task factories. */
int aev_task_new(aev_loop_t *loop, const aev_task_options_t *opts, aev_task_fn fn, void *arg,
                 aev_future_t **out);

/** Sets the task factory; NULL restores the default. */
void aev_loop_set_task_factory(aev_loop_t *loop, aev_task_factory_fn factory, void *userdata);

/** Returns the task factory (and its userdata), or NULL when the default one is in use. */
aev_task_factory_fn aev_loop_get_task_factory(const aev_loop_t *loop, void **userdata);

/** Returns 1 if future is a task. */
int aev_future_is_task(const aev_future_t *future);

/** Returns the task running now in this thread, or NULL (asyncio.current_task). */
aev_future_t *aev_task_current(void);

/** Returns the task's name ("Task-<n>" unless given). */
const char *aev_task_get_name(const aev_future_t *task);

/** Renames the task (the name is copied). */
int aev_task_set_name(aev_future_t *task, const char *name);

/** Returns the task's context (borrowed). */
aev_context_t *aev_task_get_context(const aev_future_t *task);

/** Returns the task's function (the place of Task.get_coro). */
aev_task_fn aev_task_get_fn(const aev_future_t *task);

/** Returns the number of cancellation requests not withdrawn (Task.cancelling). */
int aev_task_cancelling(const aev_future_t *task);

/** Withdraws one cancellation request; returns the count left (Task.uncancel). */
int aev_task_uncancel(aev_future_t *task);

/** From inside the task: its result when the function returns 0 (destroy frees value with the
 *  task; may be NULL). A second call replaces (and destroys) the first value. */
int aev_task_return(aev_future_t *self, void *value, void (*destroy)(void *value));

/** From inside the task: records detail (copied) for the error the function returns, and
 *  returns error, so that `return aev_task_fail(self, -EPROTO, "bad header");` reads well. */
int aev_task_fail(aev_future_t *self, int error, const char *detail);

/* ---- waiting: only from inside a task ------------------------------------- */

/** Suspends the task until future is done (await future). Returns what aev_future_result()
 *  returns (0 and *value, the error, AEV_ECANCELLED), or AEV_ECANCELLED when the task is
 *  cancelled while waiting (the future is then cancelled too). AEV_ENOT_IN_TASK outside a
 *  task; -EINVAL for a future of another loop or the task itself. */
int aev_await(aev_future_t *future, void **value);

/** Suspends the task for seconds (asyncio.sleep); 0 or less: yields once to the loop.
 *  Returns 0, or AEV_ECANCELLED. */
int aev_sleep(double seconds);

/** Lets the loop run the other ready callbacks, then goes on (await asyncio.sleep(0)). */
int aev_task_yield(void);

/* ---- the loop's tasks ------------------------------------------------------ */

/** Returns the number of tasks of loop that are not done (asyncio.all_tasks). If tasks is
 *  not NULL, up to cap of them go there, each with a reference for the caller. */
size_t aev_loop_all_tasks(aev_loop_t *loop, aev_future_t **tasks, size_t cap);

/** Cancels every pending task and runs the loop until they are all done (what asyncio.run
 *  does before closing). The loop must not be running. aev_loop_close() calls it. */
int aev_loop_shutdown_tasks(aev_loop_t *loop);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_TASK_H */
