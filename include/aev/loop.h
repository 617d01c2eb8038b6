/* libaev - the event loop: running, scheduling callbacks and timers, watching
 * file descriptors, error handling and debug mode.
 *
 * This is asyncio's event loop (see docs/asyncio-mapping.md). A loop belongs to
 * the thread that runs it: every function here must be called from that thread
 * (or, while it is not running, from any one thread at a time), except
 * aev_loop_call_soon_threadsafe(). As in asyncio, aev_loop_stop() is not
 * thread-safe: to stop a loop from another thread, schedule a callback that
 * stops it with aev_loop_call_soon_threadsafe(). In debug mode a call from a
 * foreign thread while the loop runs fails with AEV_EWRONG_THREAD.
 *
 * Callbacks return int: 0 for success, or a negative error code, which is the
 * C form of "the callback raised": it reaches the loop's exception handler
 * with the handle in the context, and the loop goes on.
 */
#ifndef AEV_LOOP_H
#define AEV_LOOP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct aev_loop aev_loop_t;
typedef struct aev_handle aev_handle_t;
typedef struct aev_future aev_future_t;
typedef struct aev_context aev_context_t;
struct aev_transport;
struct aev_protocol;

/** A loop callback. Return 0, or a negative error code to report a failure. */
typedef int (*aev_callback_fn)(aev_loop_t *loop, void *arg);

/* ---- creating and destroying ------------------------------------------ */

/* Options for aev_loop_new(). Zero (or NULL) in a field means "not given here":
 * the environment, then the config file, then the built-in default decide. */
typedef struct aev_loop_options {
    const char *loop;        /* preset: "selector", "proactor" or "auto" */
    const char *poll;        /* plugin name or comma list per family, e.g. "epoll,poll" */
    const char *tls;
    const char *dns;
    const char *proc;
    const char *exec;
    const char *config_file; /* the main config file, instead of $AEV_CONFIG / XDG / system
                                (the drop-in directory is still read first) */
    int debug;               /* 1: debug mode on, -1: off, 0: environment decides */
} aev_loop_options_t;

/** Creates a loop with the plugins chosen by opts (may be NULL), env, config and defaults.
 *  On failure *out is NULL and aev_error_detail() explains (plugin, paths searched, reason). */
int aev_loop_new(const aev_loop_options_t *opts, aev_loop_t **out);

/** Closes the loop: refused (AEV_ERUNNING) while running; idempotent; pending callbacks
 *  and timers are discarded and their resources released. */
int aev_loop_close(aev_loop_t *loop);

/** Closes the loop if needed and frees it. Safe on NULL. No other call may follow. */
void aev_loop_free(aev_loop_t *loop);

/** Returns the name of the plugin serving family ("poll", ...) in this loop, or NULL. */
const char *aev_loop_plugin_name(const aev_loop_t *loop, const char *family);

/* ---- running and stopping --------------------------------------------- */

/** Runs until aev_loop_stop(). Returns 0, AEV_ERUNNING, AEV_ECLOSED or AEV_EOTHER_LOOP. */
int aev_loop_run_forever(aev_loop_t *loop);

/** Runs until fut is done. Returns 0 if it has a result, its error code if it failed,
 *  AEV_ECANCELLED if it was cancelled, AEV_ESTOPPED if the loop was stopped first. */
int aev_loop_run_until_complete(aev_loop_t *loop, aev_future_t *fut);

/** Stops the loop after the current batch of callbacks (before a run: after one poll). */
void aev_loop_stop(aev_loop_t *loop);

/** Returns 1 while the loop is running, else 0. */
int aev_loop_is_running(const aev_loop_t *loop);

/** Returns 1 once the loop has been closed, else 0. */
int aev_loop_is_closed(const aev_loop_t *loop);

/** Returns the loop's monotonic time in seconds (the reference of call_at and when()). */
double aev_loop_time(const aev_loop_t *loop);

/** Returns the loop running in the calling thread, or NULL (asyncio.get_running_loop). */
aev_loop_t *aev_loop_get_running(void);

/* ---- scheduling callbacks --------------------------------------------- */

/* Optional per-call settings, the C form of asyncio's keyword arguments. */
typedef struct aev_call_options {
    aev_context_t *context; /* run the callback in this context (NULL: a copy of the current) */
    const char *name;       /* shown in debug and error messages (NULL: the function's symbol) */
} aev_call_options_t;

/* Every scheduling call takes handle_out: pass NULL to ignore the handle (it then costs
 * nothing to the caller), or a pointer to receive a reference that the caller releases with
 * aev_handle_unref(). */

/** Schedules cb(loop, arg) for the next iteration; callbacks run in the order scheduled. */
int aev_loop_call_soon(aev_loop_t *loop, aev_callback_fn cb, void *arg, aev_handle_t **handle_out);
/** call_soon with options (context, name). */
int aev_loop_call_soon_ex(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb,
                          void *arg, aev_handle_t **handle_out);

/** Thread-safe call_soon: callable from any thread, wakes a blocked loop. AEV_ECLOSED after close. */
int aev_loop_call_soon_threadsafe(aev_loop_t *loop, aev_callback_fn cb, void *arg,
                                  aev_handle_t **handle_out);
/** call_soon_threadsafe with options. */
int aev_loop_call_soon_threadsafe_ex(aev_loop_t *loop, const aev_call_options_t *opts,
                                     aev_callback_fn cb, void *arg, aev_handle_t **handle_out);

/** Schedules cb after delay seconds (negative counts as 0); returns a timer handle. */
int aev_loop_call_later(aev_loop_t *loop, double delay, aev_callback_fn cb, void *arg,
                        aev_handle_t **handle_out);
/** call_later with options. */
int aev_loop_call_later_ex(aev_loop_t *loop, double delay, const aev_call_options_t *opts,
                           aev_callback_fn cb, void *arg, aev_handle_t **handle_out);

/** Schedules cb at absolute loop time when (see aev_loop_time()). */
int aev_loop_call_at(aev_loop_t *loop, double when, aev_callback_fn cb, void *arg,
                     aev_handle_t **handle_out);
/** call_at with options. */
int aev_loop_call_at_ex(aev_loop_t *loop, double when, const aev_call_options_t *opts,
                        aev_callback_fn cb, void *arg, aev_handle_t **handle_out);

/* ---- watching file descriptors ---------------------------------------- */

/** Calls cb each time fd is readable, until removed; replaces an existing reader of fd. */
int aev_loop_add_reader(aev_loop_t *loop, int fd, aev_callback_fn cb, void *arg);
/** add_reader with options. */
int aev_loop_add_reader_ex(aev_loop_t *loop, int fd, const aev_call_options_t *opts,
                           aev_callback_fn cb, void *arg);
/** Stops watching fd for reading. Returns 1 if a reader was removed, 0 if there was none. */
int aev_loop_remove_reader(aev_loop_t *loop, int fd);

/** Calls cb each time fd is writable, until removed; replaces an existing writer of fd. */
int aev_loop_add_writer(aev_loop_t *loop, int fd, aev_callback_fn cb, void *arg);
/** add_writer with options. */
int aev_loop_add_writer_ex(aev_loop_t *loop, int fd, const aev_call_options_t *opts,
                           aev_callback_fn cb, void *arg);
/** Stops watching fd for writing. Returns 1 if a writer was removed, 0 if there was none. */
int aev_loop_remove_writer(aev_loop_t *loop, int fd);

/* ---- error handling ---------------------------------------------------- */

/* The context of asyncio's exception handler; unset members are NULL / 0. */
typedef struct aev_exception_context {
    const char *message;             /* 'message' (always set) */
    int error;                       /* 'exception': a negative error code, 0 if none */
    const char *error_detail;        /* detail text of the error, may be NULL */
    aev_future_t *future;            /* 'future' */
    aev_future_t *task;              /* 'task' (a task is a future) */
    aev_handle_t *handle;            /* 'handle' */
    struct aev_protocol *protocol;   /* 'protocol' */
    struct aev_transport *transport; /* 'transport' */
    int has_socket;                  /* 1 when 'socket' is set */
    int socket;                      /* 'socket': the file descriptor */
} aev_exception_context_t;

typedef void (*aev_exception_handler_fn)(aev_loop_t *loop, const aev_exception_context_t *ctx,
                                         void *userdata);

/** Sets the loop's exception handler; NULL restores the default one. */
void aev_loop_set_exception_handler(aev_loop_t *loop, aev_exception_handler_fn handler,
                                    void *userdata);
/** Returns the custom handler (and its userdata), or NULL when the default one is in use. */
aev_exception_handler_fn aev_loop_get_exception_handler(const aev_loop_t *loop, void **userdata);
/** The default handler: logs the message and the error at error level. */
void aev_loop_default_exception_handler(aev_loop_t *loop, const aev_exception_context_t *ctx);
/** Calls the current exception handler with ctx. */
void aev_loop_call_exception_handler(aev_loop_t *loop, const aev_exception_context_t *ctx);

/* ---- debug mode --------------------------------------------------------- */

/** Returns 1 if debug mode is on (default: AEV_DEBUG set to a non-empty value other than 0). */
int aev_loop_get_debug(const aev_loop_t *loop);
/** Turns debug mode on or off: slow callbacks logged, foreign threads detected, leaks reported. */
void aev_loop_set_debug(aev_loop_t *loop, int enabled);
/** Sets the duration (seconds, default 0.1) over which debug mode logs a callback as slow. */
void aev_loop_set_slow_callback_duration(aev_loop_t *loop, double seconds);
/** Returns the slow-callback threshold in seconds. */
double aev_loop_get_slow_callback_duration(const aev_loop_t *loop);

/** Sets how often (seconds) the loop polls for I/O while callbacks are ready; 0 means every
 *  iteration, as CPython does. Default 20e-6: a zero-timeout poll at most every 20 us. */
void aev_loop_set_io_poll_interval(aev_loop_t *loop, double seconds);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_LOOP_H */
