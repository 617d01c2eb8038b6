/* libaev - error codes.
 *
 * Every libaev call that can fail returns an int: 0 (or a non-negative count)
 * on success, a negative number on failure. A failure is either a negated
 * errno value (-EBADF, -ENOMEM, ...) or one of the project codes below, all
 * below -4000. aev_strerror() and aev_err_name() describe both kinds.
 *
 * A failing call may leave a longer, human-readable explanation in a
 * thread-local slot, read with aev_error_detail() (for instance the list of
 * paths searched for a plugin that could not be loaded).
 */
#ifndef AEV_ERROR_H
#define AEV_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* X(name, value, message) - the one table the error functions are made from. */
#define AEV_ERROR_MAP(X)                                                                   \
    X(CLOSED, -4001, "event loop is closed")                                               \
    X(RUNNING, -4002, "event loop is already running")                                     \
    X(CANCELLED, -4003, "operation was cancelled")                                         \
    X(INVALID_STATE, -4004, "invalid state")                                               \
    X(WRONG_THREAD, -4005, "non-thread-safe operation invoked from another thread")        \
    X(STOPPED, -4006, "event loop stopped before the future completed")                    \
    X(PLUGIN_NOT_FOUND, -4007, "plugin not found")                                         \
    X(PLUGIN_REFUSED, -4008, "plugin refused")                                             \
    X(PLUGIN_PROBE, -4009, "plugin cannot run on this system")                            \
    X(CONFIG, -4010, "bad configuration")                                                  \
    X(OTHER_LOOP, -4011, "another event loop is running in this thread")                   \
    X(NOT_SUPPORTED, -4012, "not supported by the chosen plugin")                          \
    X(CALLBACK, -4013, "callback reported an error")                                       \
    X(NOT_IN_TASK, -4014, "only a task can wait here")                                     \
    X(SENDFILE_NOT_AVAILABLE, -4015, "sendfile is not available for these files")          \
    X(SHUTDOWN, -4016, "executor has been shut down")                                      \
    X(DNS_NONAME, -4017, "name or service not known")                                      \
    X(DNS_AGAIN, -4018, "temporary failure in name resolution")                            \
    X(DNS_FAIL, -4019, "non-recoverable failure in name resolution")                       \
    X(DNS_FAMILY, -4020, "address family not supported by the resolver")                  \
    X(DNS_SOCKTYPE, -4021, "socket type not supported by the resolver")                    \
    X(DNS_SERVICE, -4022, "service not supported for this socket type")                    \
    X(DNS_BADFLAGS, -4023, "bad flags for name resolution")                                \
    X(DNS_ADDRFAMILY, -4024, "host has no address of the requested family")                \
    X(DNS_NODATA, -4025, "host is known but has no address")

enum aev_error {
#define AEV__ERROR_ENUM(name, value, msg) AEV_E##name = (value),
    AEV_ERROR_MAP(AEV__ERROR_ENUM)
#undef AEV__ERROR_ENUM
};

/** Returns a static, human-readable message for err (a negative errno or an AEV_E* code). */
const char *aev_strerror(int err);

/** Returns the symbolic name of err ("EBADF", "AEV_ECLOSED"), or "UNKNOWN". */
const char *aev_err_name(int err);

/** Returns the detail left by the last failing libaev call in this thread, or "" if none. */
const char *aev_error_detail(void);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_ERROR_H */
