/* libaev - futures (asyncio.Future).
 *
 * Ownership: every function that gives out a future (aev_loop_create_future()
 * and, later, every operation returning a future) gives the caller one
 * reference, released with aev_future_unref(). The loop keeps its own
 * references while it needs the future (pending done callbacks, operations in
 * flight), so dropping yours early never frees a future under the loop.
 * Release every future before aev_loop_free().
 *
 * Result: a future ends in exactly one of three states: a result (a void *
 * value with an optional destructor, called when the future is freed), an
 * error (a negative error code and an optional detail string), or cancelled
 * (with an optional message). Done callbacks are scheduled with call_soon when
 * the future completes, in the order they were added, in the context that was
 * current when they were added.
 *
 * An error that nobody read (aev_future_result/aev_future_error) is reported
 * to the exception handler when the last reference goes, as asyncio reports
 * "Future exception was never retrieved".
 */
#ifndef AEV_FUTURE_H
#define AEV_FUTURE_H

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** A done callback: called on the loop with the completed future. Return 0 or an error. */
typedef int (*aev_future_callback_fn)(aev_future_t *future, void *arg);

/** Creates a pending future attached to loop (asyncio loop.create_future). */
int aev_loop_create_future(aev_loop_t *loop, aev_future_t **out);

/** Adds a reference and returns future. */
aev_future_t *aev_future_ref(aev_future_t *future);

/** Releases a reference; the last one frees the future (and its result). NULL is ignored. */
void aev_future_unref(aev_future_t *future);

/** Returns the loop the future belongs to. */
aev_loop_t *aev_future_get_loop(const aev_future_t *future);

/** Completes the future with value; destroy (may be NULL) frees value with the future.
 *  AEV_EINVALID_STATE if already done (value is then not taken). */
int aev_future_set_result(aev_future_t *future, void *value, void (*destroy)(void *value));

/** Completes the future with error (negative) and an optional detail (copied). */
int aev_future_set_error(aev_future_t *future, int error, const char *detail);

/** Cancels the future with an optional message. Returns 1 if cancelled now, 0 if already done
 *  (or AEV_EWRONG_THREAD, as every call here that changes a future, from a foreign thread in
 *  debug mode while the loop runs). */
int aev_future_cancel(aev_future_t *future, const char *message);

/** Returns 1 if the future is done (result, error or cancelled). */
int aev_future_done(const aev_future_t *future);

/** Returns 1 if the future was cancelled. */
int aev_future_cancelled(const aev_future_t *future);

/** Reads the outcome: 0 and *value (may be NULL) for a result, the error code for an
 *  error, AEV_ECANCELLED if cancelled, AEV_EINVALID_STATE if not done yet. */
int aev_future_result(aev_future_t *future, void **value);

/** Returns the error (0 if the future has a result), AEV_ECANCELLED or AEV_EINVALID_STATE. */
int aev_future_error(aev_future_t *future);

/** Returns the error detail or cancellation message, or NULL. Valid while the future lives. */
const char *aev_future_error_detail(const aev_future_t *future);

/** Adds a done callback (scheduled at once if the future is already done). */
int aev_future_add_done_callback(aev_future_t *future, aev_future_callback_fn cb, void *arg);
/** add_done_callback with options (context, name). */
int aev_future_add_done_callback_ex(aev_future_t *future, const aev_call_options_t *opts,
                                    aev_future_callback_fn cb, void *arg);

/** Removes every registration of (cb, arg); returns how many were removed. */
int aev_future_remove_done_callback(aev_future_t *future, aev_future_callback_fn cb, void *arg);

/* ---- helpers (asyncio.wait_for, gather, shield, wait) -------------------
 *
 * Each helper gives the caller one reference to a new "outer" future (*out),
 * released with aev_future_unref(); the loop keeps what it needs (the inner
 * futures, the outer one, timers) until the helper is finished, so releasing
 * the outer future early is safe. The helpers hold a reference to every
 * future passed in until they no longer need it; a future that never
 * completes keeps its helper (and so its outer future) alive: run the loop
 * until the helpers are done before closing it.
 *
 * Shared results: when an outer future mirrors an inner one (wait_for,
 * shield), the outer's value is the inner's value pointer itself, still owned
 * by the inner future (whose destroy frees it); the outer future keeps the
 * inner alive until the outer is freed, so the value stays valid as long as
 * you hold the outer future. Errors are passed on with their detail (reading
 * them through the outer counts as reading the inner's).
 *
 * Cancelled: asyncio lets a gather fail with CancelledError without being
 * "cancelled"; a C future has no such state, so where asyncio raises
 * CancelledError the outer future here is cancelled (aev_future_result()
 * returns AEV_ECANCELLED in both languages). */

/** asyncio.wait_for: *out completes with fut's outcome, or fails with -ETIMEDOUT when timeout
 *  seconds pass first (fut is then cancelled, and *out completes once fut is done: a task that
 *  ignores the cancellation and returns gives its outcome). timeout < 0 (or +inf) means none;
 *  0 times out at once unless fut is done. Cancelling *out cancels fut. If fut is already done,
 *  *out is completed before the call returns. -EINVAL for a NaN timeout. */
int aev_future_wait_for(aev_future_t *fut, double timeout, aev_future_t **out);

/** asyncio.gather: *out gets a NULL result once every future in futs (n of them, all of loop;
 *  duplicates count once) is done; read each outcome from the futures themselves. With
 *  return_exceptions == 0 the first child that fails makes *out fail at once with its error (a
 *  cancelled child: *out cancelled), the others go on running. Children that complete are read
 *  (their errors count as retrieved). Cancelling *out cancels every child not done. n == 0, or
 *  all children done already: *out is complete when the call returns. -EINVAL (with a detail)
 *  for a NULL future or one of another loop. */
int aev_future_gather(aev_loop_t *loop, aev_future_t *const *futs, size_t n, int return_exceptions,
                      aev_future_t **out);

/** asyncio.shield: *out mirrors fut, but cancelling *out does not cancel fut (if fut is cancelled,
 *  *out is). If fut is already done, *out is fut itself (one more reference), as in asyncio. */
int aev_future_shield(aev_future_t *fut, aev_future_t **out);

/* asyncio.wait's return_when; zero is the default, ALL_COMPLETED. */
typedef enum aev_wait_return_when {
    AEV_WAIT_ALL_COMPLETED = 0,
    AEV_WAIT_FIRST_COMPLETED = 1,
    AEV_WAIT_FIRST_EXCEPTION = 2, /* a child failed (cancelled does not count), or all done */
} aev_wait_return_when_t;

/** asyncio.wait: *out gets a NULL result when return_when holds for futs (n > 0 of them, all of
 *  loop, duplicates count once) or when timeout seconds pass (< 0 or +inf: no timeout); it never
 *  fails on timeout and never cancels the futures: see which are done with aev_future_done().
 *  Cancelling *out only stops the wait. -EINVAL for n == 0, a bad return_when or timeout, a
 *  NULL future or one of another loop. */
int aev_future_wait(aev_loop_t *loop, aev_future_t *const *futs, size_t n, double timeout,
                    int return_when, aev_future_t **out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_FUTURE_H */
