/* libaev - Unix signals: asyncio's loop.add_signal_handler() and
 * loop.remove_signal_handler().
 *
 * A signal handler set with aev_loop_add_signal_handler() is an ordinary loop
 * callback: when the signal arrives, a process-wide, async-signal-safe handler
 * only notes it and wakes the loop; the loop then runs the callback from its
 * ready queue, along with its other callbacks, on the loop's own thread, in
 * the context captured when the handler was added. So the callback may call
 * any loop function, and a negative return reaches the exception handler with
 * the handle, as for any callback. One callback runs per arrival the kernel
 * reports (standard signals that arrive while one is pending merge into one,
 * as the kernel does; real-time signals queue).
 *
 * This header is <aev/signals.h>, not "signal.h", so that it can never be
 * mistaken for the system's <signal.h>.
 *
 * Signal dispositions belong to the process, so the rule for several loops is:
 *   - each signal number is owned by at most one open loop at a time; adding a
 *     handler for a signal that another open loop owns fails with -EBUSY;
 *   - different loops (typically in different threads) may own different
 *     signals, and each callback runs on the thread of the loop that owns it;
 *   - the first handler a loop adds for a signal saves the disposition in
 *     effect (SIG_DFL, SIG_IGN or another handler); removing the handler, or
 *     closing the loop, restores it and frees the signal for any loop.
 * asyncio requires the main thread; libaev accepts any thread's loop under
 * that rule. The thread that runs the loop does not need the signal unblocked:
 * the kernel may deliver it to any thread that does not block it, and the loop
 * is woken all the same. A signal no thread accepts stays pending.
 *
 * Like the rest of the loop's API these calls belong to the loop's thread (or,
 * while it is not running, any one thread at a time); the process-wide table
 * of owners is protected by a mutex, so loops in different threads may add
 * and remove handlers at the same time.
 */
#ifndef AEV_SIGNALS_H
#define AEV_SIGNALS_H

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** Sets cb(loop, arg) as the loop's handler for signal signum, replacing a previous one of
 *  this loop. Returns 0; -EINVAL (with a detail) for a number out of range (<= 0, >= NSIG),
 *  an uncatchable signal (SIGKILL, SIGSTOP, ones the C library reserves) or a NULL cb;
 *  -EBUSY if another open loop owns signum; AEV_ECLOSED on a closed loop; another negative
 *  errno (with a detail) if the handler or the loop's wake-up fd cannot be set up. */
int aev_loop_add_signal_handler(aev_loop_t *loop, int signum, aev_callback_fn cb, void *arg);

/** add_signal_handler with options: the context the callback runs in (NULL: a copy of the
 *  current one, taken now) and a name for messages. */
int aev_loop_add_signal_handler_ex(aev_loop_t *loop, int signum, const aev_call_options_t *opts,
                                   aev_callback_fn cb, void *arg);

/** Removes the loop's handler for signum and restores the disposition saved when it was
 *  added. Returns 1 if a handler was removed, 0 if this loop had none (also on a closed
 *  loop), -EINVAL for a number out of range. A callback already queued for an earlier
 *  arrival does not run. */
int aev_loop_remove_signal_handler(aev_loop_t *loop, int signum);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_SIGNALS_H */
