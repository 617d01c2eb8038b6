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

/* ---- address families for transport tests ---------------------------------- */
/* Transport tests run once per address kind (Check loop tests, _i is the kind): TCP over
 * 127.0.0.1, TCP over ::1, and a Unix stream socket (a socket file in /tmp). */

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stddef.h>
#include <poll.h>
#include <sys/un.h>

enum { TU_FAM_INET = 0, TU_FAM_INET6 = 1, TU_FAM_UNIX = 2, TU_FAM_COUNT = 3 };

/** "127.0.0.1", "::1" or "unix". */
static inline const char *tu_fam_name(int fam)
{
    return fam == TU_FAM_INET ? "127.0.0.1" : fam == TU_FAM_INET6 ? "::1" : "unix";
}

/** AF_INET, AF_INET6 or AF_UNIX. */
static inline int tu_fam_af(int fam)
{
    return fam == TU_FAM_INET ? AF_INET : fam == TU_FAM_INET6 ? AF_INET6 : AF_UNIX;
}

/** 1 if the kind can be used here (::1 may be missing on hosts without IPv6). */
static inline int tu_fam_available(int fam)
{
    if (fam != TU_FAM_INET6)
        return 1;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/** Returns from the test (it passes, with a note) when fam cannot be used here. */
#define TU_SKIP_UNAVAILABLE(fam)                                                                   \
    do {                                                                                           \
        if (!tu_fam_available(fam)) {                                                              \
            printf("%s: %s not available here: skipped\n", __func__, tu_fam_name(fam));            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/** A fresh socket file path in /tmp (not created). */
static inline void tu_unix_path(char *buf, size_t size)
{
    /* pid, sequence and the clock: pids are reused, and a file a killed test left behind
     * must not make a later test's bind fail */
    static int seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "/tmp/aev-test-%d-%d-%ld%09ld.sock", (int)getpid(), ++seq, (long)ts.tv_sec,
             ts.tv_nsec);
}

/** The loopback address of fam with port (IP kinds), or the socket file path (Unix). */
static inline socklen_t tu_fam_addr(int fam, const char *path, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (fam == TU_FAM_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        return sizeof *a;
    }
    if (fam == TU_FAM_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = htons(port);
        return sizeof *a;
    }
    struct sockaddr_un *a = (struct sockaddr_un *)ss;
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s", path ? path : "");
    return sizeof *a;
}

/* Socket buffer size set on the test's sockets (SO_RCVBUF of the connecting end, SO_SNDBUF
 * of the accepted end): TCP loopback autotuning lets the kernel hold tens of MiB, so tests
 * that need bytes to stay in the transport's own buffer cap it. A few hundred KiB at most
 * then sit in the kernel. */
#define TU_SOCKBUF (128 * 1024)

static inline void tu_set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/** Caps fd's send buffer to TU_SOCKBUF (see there). */
static inline void tu_cap_sndbuf(int fd)
{
    int v = TU_SOCKBUF;
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v), 0);
}

/** A client socket connected (blocking connect) to addr, then made non-blocking; its receive
 *  buffer is capped to TU_SOCKBUF before connecting. Fails the test on error. */
static inline int tu_connect_to(const struct sockaddr *addr, socklen_t len)
{
    int c = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(c >= 0, "socket: %s", strerror(errno));
    int v = TU_SOCKBUF;
    ck_assert_int_eq(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &v, sizeof v), 0);
    ck_assert_msg(connect(c, addr, len) == 0, "connect: %s", strerror(errno));
    tu_set_nonblocking(c);
    return c;
}

/** A connected stream pair of kind fam, made with listen/connect/accept: sv[0] the accepted
 *  end, sv[1] the connecting end; both non-blocking and close-on-exec, sv[0]'s send buffer and
 *  sv[1]'s receive buffer capped to TU_SOCKBUF. No listener or socket file remains. */
static inline void tu_stream_pair(int fam, int sv[2])
{
    char path[108] = "";
    if (fam == TU_FAM_UNIX)
        tu_unix_path(path, sizeof path);
    struct sockaddr_storage ss;
    socklen_t len = tu_fam_addr(fam, path, 0, &ss);
    int l = socket(tu_fam_af(fam), SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_msg(l >= 0, "socket: %s", strerror(errno));
    ck_assert_msg(bind(l, (struct sockaddr *)&ss, len) == 0, "bind %s: %s", tu_fam_name(fam), strerror(errno));
    ck_assert_int_eq(listen(l, 4), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&ss, &len), 0);
    sv[1] = tu_connect_to((struct sockaddr *)&ss, len);
    sv[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_msg(sv[0] >= 0, "accept: %s", strerror(errno));
    close(l);
    if (fam == TU_FAM_UNIX)
        unlink(path);
    tu_cap_sndbuf(sv[0]);
}

/** The port of an AF_INET/AF_INET6 address. */
static inline int tu_addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

/** 1 if a and b are the same address (IP and port, or Unix path). */
static inline int tu_same_addr(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr_storage *b,
                               socklen_t blen)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return alen == blen && x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return alen == blen && x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
    }
    if (a->ss_family == AF_UNIX) {
        size_t off = offsetof(struct sockaddr_un, sun_path);
        const struct sockaddr_un *x = (const void *)a, *y = (const void *)b;
        size_t xl = alen > off ? alen - off : 0, yl = blen > off ? blen - off : 0;
        /* a path's length may or may not count its NUL: compare the strings */
        if (xl && x->sun_path[0] && yl && y->sun_path[0])
            return strncmp(x->sun_path, y->sun_path, sizeof x->sun_path) == 0;
        return xl == yl && memcmp(x->sun_path, y->sun_path, xl) == 0;
    }
    return 0;
}

/** Waits up to timeout seconds for events on fd; returns the revents (0 on timeout). */
static inline short tu_poll_fd(int fd, short events, double timeout)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;
    do
        n = poll(&p, 1, (int)(timeout * 1000));
    while (n < 0 && errno == EINTR);
    return n > 0 ? p.revents : 0;
}

/** The number of open file descriptors of the process (entries of /proc/self/fd). */
static inline int tu_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/** Starts a server of kind fam: create_server on 127.0.0.1 or ::1 port 0, or
 *  create_unix_server on a fresh socket file. *sf gets create_server's future (done at once,
 *  its value the server), ss/len the address a client connects to. Returns the server. */
static inline aev_server_t *tu_server_start(aev_loop_t *loop, int fam, aev_protocol_factory_fn factory, void *ud,
                                            const aev_server_options_t *opts, aev_future_t **sf,
                                            struct sockaddr_storage *ss, socklen_t *len)
{
    int rc;
    if (fam == TU_FAM_UNIX) {
        char path[108];
        tu_unix_path(path, sizeof path);
        rc = aev_loop_create_unix_server(loop, factory, ud, path, opts, sf);
    } else {
        rc = aev_loop_create_server(loop, factory, ud, tu_fam_name(fam), 0, opts, sf);
    }
    ck_assert_msg(rc == 0, "create server on %s: %s (%s)", tu_fam_name(fam), aev_err_name(rc), aev_error_detail());
    ck_assert_int_eq(aev_future_done(*sf), 1);
    void *srv = NULL;
    ck_assert_int_eq(aev_future_result(*sf, &srv), 0);
    ck_assert_ptr_nonnull(srv);
    int lfd = -1;
    ck_assert_uint_eq(aev_server_sockets(srv, &lfd, 1), 1);
    *len = sizeof *ss;
    memset(ss, 0, sizeof *ss);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)ss, len), 0);
    ck_assert_int_eq(ss->ss_family, tu_fam_af(fam));
    return srv;
}

/** Adds a loop test (fn run for _i = 0 .. n-1) as its own test case. */
#define TU_ADD_LOOP(suite, fn, n)                                                                  \
    do {                                                                                           \
        TCase *tc_ = tu_tcase(#fn);                                                                \
        tcase_add_loop_test(tc_, fn, 0, (n));                                                      \
        suite_add_tcase((suite), tc_);                                                             \
    } while (0)

#endif /* AEV_CONFORMANCE_TEST_UTIL_H */
