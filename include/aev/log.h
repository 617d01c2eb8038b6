/* libaev - logging.
 *
 * libaev never prints to stdout. Diagnostics (the default exception handler,
 * debug-mode reports, plugin messages) go through one process-wide log sink,
 * stderr by default.
 */
#ifndef AEV_LOG_H
#define AEV_LOG_H

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

enum aev_log_level { AEV_LOG_DEBUG = 10, AEV_LOG_INFO = 20, AEV_LOG_WARNING = 30, AEV_LOG_ERROR = 40 };

/** A log sink: origin is "aev" for the core or "<family>.<name>" for a plugin. */
typedef void (*aev_log_fn)(int level, const char *origin, const char *message, void *userdata);

/** Sets the process-wide log sink (NULL: stderr) and the lowest level passed to it. */
void aev_log_set_handler(aev_log_fn fn, void *userdata, int min_level);

/** Logs a printf-style message from origin at level. */
void aev_log(int level, const char *origin, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_LOG_H */
