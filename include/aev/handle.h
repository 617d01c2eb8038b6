/* libaev - callback handles (asyncio.Handle and asyncio.TimerHandle).
 *
 * A handle is returned (on request) by every scheduling call. It is reference
 * counted: the loop holds its own reference while the callback is pending, and
 * a caller that asked for the handle holds one more, released with
 * aev_handle_unref(). Cancelling a handle whose callback already ran, or that
 * was already cancelled, is a safe no-op. Handles belong to their loop's thread,
 * except those returned by aev_loop_call_soon_threadsafe(): their reference
 * count is atomic, so the calling thread may cancel and release them.
 * The name in aev_call_options_t is stored, not copied: it must outlive the
 * handle (a string literal is the usual choice).
 */
#ifndef AEV_HANDLE_H
#define AEV_HANDLE_H

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** Cancels the callback; no effect if it already ran or was cancelled. */
void aev_handle_cancel(aev_handle_t *handle);

/** Returns 1 if the handle was cancelled, else 0. */
int aev_handle_cancelled(const aev_handle_t *handle);

/** Returns 1 for a timer handle (from call_later/call_at), else 0. */
int aev_handle_is_timer(const aev_handle_t *handle);

/** Returns a timer handle's scheduled time (loop time, seconds); -1.0 for other handles. */
double aev_handle_when(const aev_handle_t *handle);

/** Returns the context the callback runs in (borrowed; NULL means an empty context). */
aev_context_t *aev_handle_get_context(const aev_handle_t *handle);

/** Writes the handle's display name (given name, else the callback's symbol) into buf. */
const char *aev_handle_describe(const aev_handle_t *handle, char *buf, size_t size);

/** Adds a reference to handle and returns it. */
aev_handle_t *aev_handle_ref(aev_handle_t *handle);

/** Releases a reference obtained from a scheduling call or aev_handle_ref(). NULL is ignored. */
void aev_handle_unref(aev_handle_t *handle);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_HANDLE_H */
