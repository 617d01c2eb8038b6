/* libaev conformance tests - shared helpers.
 *
 * Everything here is static inline so that each test file can use any subset
 * of it under -Wall -Wextra -Werror. Check runs each test in a forked child
 * (CK_FORK), so the process-wide state touched here (log sink, environment)
 * never leaks from one test into the next; helpers still restore it.
 */
#ifndef AEV_CONFORMANCE_TEST_UTIL_H
#define AEV_CONFORMANCE_TEST_UTIL_H

#include <aev/aev.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Per-test timeout (seconds) given to Check. Tests are meant to take well under
 * 2 s; the margin is for valgrind and sanitizer builds on a noisy machine. */
#define TU_TEST_TIMEOUT 30

/* ---- time --------------------------------------------------------------- */

/** Monotonic wall-clock time in seconds (independent of the loop's clock). */
static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/** Sleeps for the given number of seconds (restarting on EINTR). */
static inline void tu_sleep(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- loops -------------------------------------------------------------- */

/** Creates a loop with the policy from the environment; fails the test on error. */
static inline aev_loop_t *tu_loop_new(void)
{
    aev_loop_t *loop = NULL;
    int rc = aev_loop_new(NULL, &loop);
    ck_assert_msg(rc == 0, "aev_loop_new failed: %d (%s): %s", rc, aev_err_name(rc),
                  aev_error_detail());
    ck_assert_ptr_nonnull(loop);
    return loop;
}

/** Closes and frees a loop, asserting that close succeeds. */
static inline void tu_loop_free(aev_loop_t *loop)
{
    ck_assert_int_eq(aev_loop_close(loop), 0);
    aev_loop_free(loop);
}

/** The name of the poll plugin serving loop ("epoll", "poll", "select"), never NULL. */
static inline const char *tu_poller(aev_loop_t *loop)
{
    const char *name = aev_loop_plugin_name(loop, "poll");
    ck_assert_ptr_nonnull(name);
    return name;
}

/** A callback that stops the loop. */
static inline int tu_stop_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_stop(loop);
    return 0;
}

/** A callback that increments the int pointed to by arg. */
static inline int tu_count_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (*(int *)arg)++;
    return 0;
}

/** Runs exactly one iteration: stop() before run_forever(), which must return 0. */
static inline void tu_run_once(aev_loop_t *loop)
{
    aev_loop_stop(loop);
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
}

typedef struct tu_guard {
    int fired;
} tu_guard_t;

static inline int tu_guard_cb(aev_loop_t *loop, void *arg)
{
    ((tu_guard_t *)arg)->fired = 1;
    aev_loop_stop(loop);
    return 0;
}

/** Runs the loop until something stops it, with a safety timer that stops it after limit
 *  seconds. Returns 1 if the safety timer had to stop the loop, else 0. */
static inline int tu_run_guarded(aev_loop_t *loop, double limit)
{
    tu_guard_t guard = {0};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, limit, tu_guard_cb, &guard, &h), 0);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(aev_loop_run_forever(loop), 0);
    aev_handle_cancel(h);
    aev_handle_unref(h);
    return guard.fired;
}

/* ---- sockets ------------------------------------------------------------ */

/** A connected, non-blocking AF_UNIX stream socketpair. */
static inline void tu_socketpair(int sv[2])
{
    int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
    ck_assert_msg(rc == 0, "socketpair: %s", strerror(errno));
}

static inline void tu_write(int fd, const char *data)
{
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    ck_assert_msg(n == (ssize_t)len, "write(%d): %zd (%s)", fd, n, strerror(errno));
}

/** 1 if fd is an open file descriptor. */
static inline int tu_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* ---- log capture -------------------------------------------------------- */

#define TU_LOG_MAX 256
#define TU_LOG_LEN 1024

typedef struct tu_log_entry {
    int level;
    char origin[64];
    char message[TU_LOG_LEN];
} tu_log_entry_t;

typedef struct tu_log {
    pthread_mutex_t lock;
    int count;    /* entries stored */
    int dropped;  /* entries past TU_LOG_MAX */
    tu_log_entry_t entries[TU_LOG_MAX];
} tu_log_t;

static inline tu_log_t *tu_log_state(void)
{
    static tu_log_t state = {.lock = PTHREAD_MUTEX_INITIALIZER};
    return &state;
}

static inline void tu_log_sink(int level, const char *origin, const char *message, void *ud)
{
    tu_log_t *log = ud;
    pthread_mutex_lock(&log->lock);
    if (log->count < TU_LOG_MAX) {
        tu_log_entry_t *e = &log->entries[log->count++];
        e->level = level;
        snprintf(e->origin, sizeof e->origin, "%s", origin ? origin : "(null)");
        snprintf(e->message, sizeof e->message, "%s", message ? message : "(null)");
    } else {
        log->dropped++;
    }
    pthread_mutex_unlock(&log->lock);
}

/** Starts capturing every log message (level DEBUG and up) into tu_log_state(). */
static inline void tu_log_capture_start(void)
{
    tu_log_t *log = tu_log_state();
    pthread_mutex_lock(&log->lock);
    log->count = 0;
    log->dropped = 0;
    pthread_mutex_unlock(&log->lock);
    aev_log_set_handler(tu_log_sink, log, AEV_LOG_DEBUG);
}

/** Restores the default sink (stderr, WARNING and up). */
static inline void tu_log_capture_stop(void)
{
    aev_log_set_handler(NULL, NULL, AEV_LOG_WARNING);
}

/** Index of the first captured entry with level >= min_level whose message contains every
 *  non-NULL needle, or -1. */
static inline int tu_log_find(int min_level, const char *n1, const char *n2, const char *n3)
{
    tu_log_t *log = tu_log_state();
    int found = -1;
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count && found < 0; i++) {
        const tu_log_entry_t *e = &log->entries[i];
        if (e->level < min_level)
            continue;
        if (n1 && !strstr(e->message, n1))
            continue;
        if (n2 && !strstr(e->message, n2))
            continue;
        if (n3 && !strstr(e->message, n3))
            continue;
        found = i;
    }
    pthread_mutex_unlock(&log->lock);
    return found;
}

/** Writes every captured entry into buf (for failure messages). */
static inline const char *tu_log_dump(char *buf, size_t size)
{
    tu_log_t *log = tu_log_state();
    size_t off = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&log->lock);
    for (int i = 0; i < log->count && off + 1 < size; i++) {
        int n = snprintf(buf + off, size - off, "[%d %s] %s\n", log->entries[i].level,
                         log->entries[i].origin, log->entries[i].message);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    pthread_mutex_unlock(&log->lock);
    if (off == 0)
        snprintf(buf, size, "(no log lines captured)");
    return buf;
}

/* ---- exception handler capture ----------------------------------------- */

#define TU_EXC_MAX 64

typedef struct tu_exc_record {
    char message[512];
    int error;
    char detail[256];
    int has_detail;
    aev_future_t *future;
    aev_handle_t *handle;
    int has_socket;
    int socket;
} tu_exc_record_t;

typedef struct tu_exc {
    int count;
    tu_exc_record_t records[TU_EXC_MAX];
} tu_exc_t;

/** An exception handler that copies each context into the tu_exc_t given as userdata. */
static inline void tu_exc_handler(aev_loop_t *loop, const aev_exception_context_t *ctx, void *ud)
{
    tu_exc_t *exc = ud;
    (void)loop;
    if (exc->count < TU_EXC_MAX) {
        tu_exc_record_t *r = &exc->records[exc->count];
        snprintf(r->message, sizeof r->message, "%s", ctx->message ? ctx->message : "");
        r->error = ctx->error;
        r->has_detail = ctx->error_detail != NULL;
        snprintf(r->detail, sizeof r->detail, "%s", ctx->error_detail ? ctx->error_detail : "");
        r->future = ctx->future;
        r->handle = ctx->handle;
        r->has_socket = ctx->has_socket;
        r->socket = ctx->socket;
    }
    exc->count++;
}

/** Number of captured contexts whose error equals err. */
static inline int tu_exc_count_error(const tu_exc_t *exc, int err)
{
    int n = 0;
    for (int i = 0; i < exc->count && i < TU_EXC_MAX; i++)
        if (exc->records[i].error == err)
            n++;
    return n;
}

/* ---- suites --------------------------------------------------------------- */

/** A test case with the suite's timeout. */
static inline TCase *tu_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TU_TEST_TIMEOUT);
    return tc;
}

/** Adds one test function as its own test case (so each has its own timeout and name). */
#define TU_ADD(suite, fn)                                                                          \
    do {                                                                                           \
        TCase *tc_ = tu_tcase(#fn);                                                                \
        tcase_add_test(tc_, fn);                                                                   \
        suite_add_tcase((suite), tc_);                                                             \
    } while (0)

/** main(): runs the suite built by suite_fn, exits non-zero if any test failed. */
#define TU_MAIN(suite_fn)                                                                          \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *sr = srunner_create(suite_fn());                                                  \
        srunner_run_all(sr, CK_NORMAL);                                                            \
        int failed = srunner_ntests_failed(sr);                                                    \
        srunner_free(sr);                                                                          \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                                          \
    }

#endif /* AEV_CONFORMANCE_TEST_UTIL_H */
