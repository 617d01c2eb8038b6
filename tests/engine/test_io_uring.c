/* libaev tests - the io_uring engine plugin driven directly through its ops.
 *
 * The test dlopen()s the built module ($AEV_TEST_IO_URING_MODULE), checks its
 * descriptor, probes it (exit 77, with the reason, where io_uring cannot run
 * here) and runs its ops on a minimal fake host table, as the ABI allows:
 *  - readiness: level-triggered reports, interest changes and fd reuse without
 *    stale events, NVAL for an fd closed behind the engine's back, wake-ups
 *    from another thread and from a signal handler, timeouts;
 *  - completion: every opcode, multishot accept and receive with provided
 *    buffers (native, emulated, legacy provision), cancel racing completion,
 *    an fd closed with an operation in flight, CQ overflow, batching (the
 *    counting build of the module, $AEV_TEST_IO_URING_COUNTING). */
#include <arpa/inet.h>
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TEST_UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef TEST_UNDER_VALGRIND
#define TEST_UNDER_VALGRIND() 0
#endif
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "aev/plugin.h"

#define SKIP_EXIT 77
#define MS 1000000LL

static const aev_plugin_descriptor_t *desc;
static const aev_poll_ops_t *ops;
static void *counting_module;

/* ---- the fake host ---------------------------------------------------------------- */

static char detail[512];

static void host_log(int level, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%d] %s: ", level, origin);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void host_set_error_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
}

/* The plugin context is ours: a NULL-terminated list of key, value pairs. */
static const char *host_option(const aev_plugin_context_t *ctx, const char *key)
{
    const char *const *kv = (const char *const *)ctx;
    for (; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], key) == 0)
            return kv[1];
    return NULL;
}

static const aev_host_t host = {
    .version = AEV_HOST_VERSION,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .alloc = malloc,
    .realloc = realloc,
    .free = free,
    .log = host_log,
    .set_error_detail = host_set_error_detail,
    .option = host_option,
};

/* Engine configurations the completion tests run under (tcase loop index). */
static const char *const configs[][7] = {
    {NULL},                                   /* what the kernel offers */
    {"multishot", "no", NULL},                /* multishot emulated by resubmission */
    {"buf_ring", "no", "multishot", "no", NULL}, /* and IORING_OP_PROVIDE_BUFFERS */
    {"defer_taskrun", "yes", NULL},           /* completions posted only inside the wait */
};
#define N_CONFIGS 4

static aev_poll_backend_t *engine_new_with(const aev_poll_ops_t *o, const char *const *kv)
{
    aev_poll_backend_t *b = NULL;
    int rc = o->create(&host, (const aev_plugin_context_t *)kv, &b);
    ck_assert_msg(rc == 0, "create: %d (%s): %s", rc, strerror(-rc), detail);
    ck_assert_ptr_nonnull(b);
    return b;
}

static aev_poll_backend_t *engine_new(const char *const *kv)
{
    return engine_new_with(ops, kv);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void make_pair(int type, int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
}

static void put(int fd, const char *s)
{
    ck_assert_int_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* FD events of fd in one wait. */
static uint32_t fd_events(aev_poll_backend_t *b, int64_t timeout_ns, int fd)
{
    aev_poll_event_t ev[16];
    uint32_t e = 0;
    int n = ops->wait(b, timeout_ns, ev, 16);
    ck_assert_msg(n >= 0, "wait: %d", n);
    for (int i = 0; i < n; i++)
        if (ev[i].kind == AEV_POLL_EVENT_FD && ev[i].fd == fd)
            e |= ev[i].events;
    return e;
}

/* Completions taken by a wait but not asked for yet. */
static aev_poll_event_t stash[256];
static int nstash;

/* One wait; completions go to the stash, FD events are dropped. Returns the count. */
static int pump(aev_poll_backend_t *b, int64_t timeout_ns)
{
    aev_poll_event_t ev[16];
    int n = ops->wait(b, timeout_ns, ev, 16);
    ck_assert_msg(n >= 0, "wait: %d", n);
    for (int i = 0; i < n; i++)
        if (ev[i].kind == AEV_POLL_EVENT_COMPLETION) {
            ck_assert_int_lt(nstash, 256);
            stash[nstash++] = ev[i];
        }
    return n;
}

/* Waits (up to 2 s) for the next completion of op. */
static aev_poll_event_t completion_of(aev_poll_backend_t *b, aev_poll_op_t *op)
{
    int64_t deadline = now_ns() + 2000 * MS;
    for (;;) {
        for (int i = 0; i < nstash; i++) {
            if (stash[i].op == op) {
                aev_poll_event_t e = stash[i];
                memmove(&stash[i], &stash[i + 1], (size_t)(nstash - i - 1) * sizeof stash[0]);
                nstash--;
                return e;
            }
        }
        ck_assert_msg(now_ns() < deadline, "no completion for op %p", (void *)op);
        pump(b, 100 * MS);
    }
}

static void submit(aev_poll_backend_t *b, aev_poll_op_t *op)
{
    int rc = ops->submit(b, op);
    ck_assert_msg(rc == 0, "submit opcode %u: %d: %s", op->opcode, rc, detail);
}

/* A listening TCP socket on 127.0.0.1; *addr gets its address. */
static int tcp_listener(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    socklen_t len = sizeof *addr;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    return fd;
}

static int tcp_connect(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)addr, sizeof *addr), 0);
    return fd;
}

/* ---- readiness -------------------------------------------------------------------- */

START_TEST(test_level_triggered)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    ck_assert_int_eq(ops->watch(b, sv[0], 0, AEV_POLL_IN), 0);
    ck_assert_uint_eq(fd_events(b, 20 * MS, sv[0]), 0);
    put(sv[1], "abc");
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]) & AEV_POLL_IN, AEV_POLL_IN);
    /* nothing read: told again, and again after a partial read */
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]) & AEV_POLL_IN, AEV_POLL_IN);
    char c;
    ck_assert_int_eq(read(sv[0], &c, 1), 1);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]) & AEV_POLL_IN, AEV_POLL_IN);
    char rest[8];
    ck_assert_int_eq(read(sv[0], rest, sizeof rest), 2);
    ck_assert_uint_eq(fd_events(b, 30 * MS, sv[0]), 0);
    /* writable at once and level as well */
    ck_assert_int_eq(ops->watch(b, sv[0], AEV_POLL_IN, AEV_POLL_IN | AEV_POLL_OUT), 0);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]), AEV_POLL_OUT);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]), AEV_POLL_OUT);
    /* hang-up */
    close(sv[1]);
    ck_assert_int_eq(ops->watch(b, sv[0], AEV_POLL_IN | AEV_POLL_OUT, AEV_POLL_IN), 0);
    uint32_t e = fd_events(b, 1000 * MS, sv[0]);
    ck_assert_msg(e & (AEV_POLL_IN | AEV_POLL_HUP), "events 0x%x after the peer closed", e);
    ck_assert_int_eq(ops->watch(b, sv[0], AEV_POLL_IN, 0), 0);
    ck_assert_uint_eq(fd_events(b, 30 * MS, sv[0]), 0);
    close(sv[0]);
    ops->destroy(b);
}
END_TEST

START_TEST(test_interest_change_no_stale_event)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int a[2], c[2];
    make_pair(SOCK_STREAM, a);
    make_pair(SOCK_STREAM, c);
    put(a[1], "x");
    put(c[1], "y");
    ck_assert_int_eq(ops->watch(b, a[0], 0, AEV_POLL_IN), 0);
    ck_assert_int_eq(ops->watch(b, c[0], 0, AEV_POLL_IN), 0);
    /* Both fire; take one event only: the other stays in the completion queue. */
    aev_poll_event_t ev[1];
    int n = ops->wait(b, 1000 * MS, ev, 1);
    ck_assert_int_eq(n, 1);
    int got = ev[0].fd, other = got == a[0] ? c[0] : a[0];
    ck_assert(got == a[0] || got == c[0]);
    /* The core drops interest in the other one before the next wait: its queued
     * completion belongs to a registration that is gone. */
    ck_assert_int_eq(ops->watch(b, other, AEV_POLL_IN, 0), 0);
    aev_poll_event_t evs[8];
    int64_t until = now_ns() + 60 * MS;
    while (now_ns() < until) {
        n = ops->wait(b, 20 * MS, evs, 8);
        ck_assert_int_ge(n, 0);
        for (int i = 0; i < n; i++)
            ck_assert_msg(evs[i].fd != other, "stale event 0x%x for fd %d", evs[i].events, other);
    }
    /* Asked for OUT only now: an IN registration's completion is never reported as OUT's. */
    ck_assert_int_eq(ops->watch(b, other, 0, AEV_POLL_OUT), 0);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, other), AEV_POLL_OUT);
    ck_assert_int_eq(ops->watch(b, other, AEV_POLL_OUT, AEV_POLL_IN), 0);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, other), AEV_POLL_IN);
    close(a[0]), close(a[1]), close(c[0]), close(c[1]);
    ops->destroy(b);
}
END_TEST

START_TEST(test_fd_reuse_no_stale_event)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int a[2], c[2];
    make_pair(SOCK_STREAM, a);
    make_pair(SOCK_STREAM, c);
    put(a[1], "data");
    put(c[1], "data");
    ck_assert_int_eq(ops->watch(b, a[0], 0, AEV_POLL_IN), 0);
    ck_assert_int_eq(ops->watch(b, c[0], 0, AEV_POLL_IN), 0);
    /* one event taken: the other fd's readiness completion waits in the queue */
    aev_poll_event_t ev[1];
    ck_assert_int_eq(ops->wait(b, 1000 * MS, ev, 1), 1);
    int fd = ev[0].fd == a[0] ? c[0] : a[0];
    int *pair = fd == a[0] ? a : c;
    /* The core forgets that fd, the application closes it and a new socket gets the
     * same number, all before the next wait: the queued completion of the old file
     * must not show as an event of the new one (which has no data). */
    ck_assert_int_eq(ops->watch(b, fd, AEV_POLL_IN, 0), 0);
    close(pair[0]);
    close(pair[1]);
    int nv[2];
    make_pair(SOCK_STREAM, nv);
    ck_assert_msg(nv[0] == fd || nv[1] == fd, "fd %d was not reused (%d, %d)", fd, nv[0], nv[1]);
    int peer = nv[0] == fd ? nv[1] : nv[0];
    ck_assert_int_eq(ops->watch(b, fd, 0, AEV_POLL_IN), 0);
    ck_assert_uint_eq(fd_events(b, 50 * MS, fd), 0);
    ck_assert_uint_eq(fd_events(b, 20 * MS, fd), 0);
    put(peer, "new");
    ck_assert_uint_eq(fd_events(b, 1000 * MS, fd), AEV_POLL_IN);
    ck_assert_int_eq(ops->watch(b, fd, AEV_POLL_IN, 0), 0);
    close(nv[0]), close(nv[1]);
    int other = fd == a[0] ? c[0] : a[0];
    ck_assert_int_eq(ops->watch(b, other, AEV_POLL_IN, 0), 0);
    close(other), close(other == a[0] ? a[1] : c[1]);
    ops->destroy(b);
}
END_TEST

START_TEST(test_nval_closed_fd)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    /* a closed fd is refused at once */
    int dead = dup(sv[0]);
    close(dead);
    ck_assert_int_eq(ops->watch(b, dead, 0, AEV_POLL_IN), -EBADF);
    ck_assert_int_eq(ops->watch(b, -1, 0, AEV_POLL_IN), -EBADF);

    /* closed after an event, interest kept (the callback closed it): NVAL, once */
    put(sv[1], "x");
    ck_assert_int_eq(ops->watch(b, sv[0], 0, AEV_POLL_IN), 0);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]), AEV_POLL_IN);
    int fd = sv[0];
    close(fd);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, fd), AEV_POLL_NVAL);
    ck_assert_uint_eq(fd_events(b, 30 * MS, fd), 0);
    ck_assert_int_eq(ops->watch(b, fd, AEV_POLL_IN, 0), 0);

    /* closed between watch() and the next wait(): NVAL as well */
    int p[2];
    make_pair(SOCK_STREAM, p);
    ck_assert_int_eq(ops->watch(b, p[0], 0, AEV_POLL_OUT), 0);
    int fd2 = p[0];
    close(p[0]);
    ck_assert_uint_eq(fd_events(b, 1000 * MS, fd2), AEV_POLL_NVAL);
    ck_assert_int_eq(ops->watch(b, fd2, AEV_POLL_OUT, 0), 0);
    close(p[1]);
    close(sv[1]);
    ops->destroy(b);
}
END_TEST

struct waker {
    aev_poll_backend_t *b;
    int delay_ms;
};

static void *wake_later(void *arg)
{
    struct waker *w = arg;
    struct timespec ts = {0, w->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    ck_assert_int_eq(ops->wake(w->b), 0);
    return NULL;
}

START_TEST(test_wake_from_thread)
{
    aev_poll_backend_t *b = engine_new(NULL);
    aev_poll_event_t ev[4];
    /* a wake before the wait makes it return at once, with no event */
    ck_assert_int_eq(ops->wake(b), 0);
    ck_assert_int_eq(ops->wake(b), 0);
    int64_t t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, -1, ev, 4), 0);
    ck_assert_int_lt(now_ns() - t0, 1000 * MS);
    /* the wake-up was consumed: the next wait times out */
    t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, 30 * MS, ev, 4), 0);
    ck_assert_int_ge(now_ns() - t0, 30 * MS);
    /* a concurrent wait(-1) is woken from another thread */
    for (int i = 0; i < 3; i++) {
        struct waker w = {b, 30};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, wake_later, &w), 0);
        t0 = now_ns();
        ck_assert_int_eq(ops->wait(b, -1, ev, 4), 0);
        ck_assert_int_lt(now_ns() - t0, 1500 * MS);
        pthread_join(th, NULL);
    }
    ops->destroy(b);
}
END_TEST

static aev_poll_backend_t *signal_target;
static volatile sig_atomic_t handler_ran;

static void on_usr1(int sig)
{
    (void)sig;
    ops->wake(signal_target);
    handler_ran = 1;
}

static void *signal_thread(void *arg)
{
    /* this thread takes SIGUSR1 (the waiting thread blocks it), so only the wake-up
     * the handler makes can end the wait */
    pthread_t *waiter = arg;
    (void)waiter;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    struct timespec ts = {0, 30 * 1000000L};
    nanosleep(&ts, NULL);
    pthread_kill(pthread_self(), SIGUSR1);
    return NULL;
}

START_TEST(test_wake_from_signal_handler)
{
    aev_poll_backend_t *b = engine_new(NULL);
    signal_target = b;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t self = pthread_self(), th;
    ck_assert_int_eq(pthread_create(&th, NULL, signal_thread, &self), 0);
    aev_poll_event_t ev[4];
    int64_t t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, 3000 * MS, ev, 4), 0);
    int64_t took = now_ns() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(handler_ran, 1);
    ck_assert_msg(took < 2000 * MS, "the wait took %lld ms: not woken by the handler", (long long)(took / MS));
    ops->destroy(b);
}
END_TEST

START_TEST(test_timeouts)
{
    aev_poll_backend_t *b = engine_new(NULL);
    aev_poll_event_t ev[4];
    int64_t t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, 0, ev, 4), 0);
    ck_assert_int_lt(now_ns() - t0, 50 * MS);
    t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, 20 * MS, ev, 4), 0);
    int64_t took = now_ns() - t0;
    ck_assert_int_ge(took, 20 * MS);
    ck_assert_int_lt(took, 1000 * MS);
    /* sub-millisecond precision (AEV_POLL_CAP_NS_TIMEOUT) */
    ck_assert_uint_eq(ops->caps & AEV_POLL_CAP_NS_TIMEOUT, AEV_POLL_CAP_NS_TIMEOUT);
    t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, 1500000, ev, 4), 0);
    took = now_ns() - t0;
    ck_assert_int_ge(took, 1500000);
    ck_assert_int_lt(took, 500 * MS);
    ops->destroy(b);
}
END_TEST

/* ---- completion operations -------------------------------------------------------- */

START_TEST(test_send_recv)
{
    aev_poll_backend_t *b = engine_new(configs[_i]);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    char in[64];
    memset(in, 0, sizeof in);
    aev_poll_op_t rx = {.opcode = AEV_OP_RECV, .fd = sv[1], .buf = in, .len = sizeof in};
    aev_poll_op_t tx = {.opcode = AEV_OP_SEND, .fd = sv[0], .buf = "hello", .len = 5,
                        .msg_flags = MSG_NOSIGNAL};
    submit(b, &rx);
    submit(b, &tx);
    aev_poll_event_t e = completion_of(b, &tx);
    ck_assert_int_eq(e.result, 5);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
    e = completion_of(b, &rx);
    ck_assert_int_eq(e.result, 5);
    ck_assert_uint_eq(e.flags, 0);
    ck_assert_int_eq(memcmp(in, "hello", 5), 0);
    /* end of stream: 0 */
    close(sv[0]);
    submit(b, &rx);
    ck_assert_int_eq(completion_of(b, &rx).result, 0);
    close(sv[1]);
    ops->destroy(b);
}
END_TEST

START_TEST(test_readv_writev_splice_close)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int p1[2], p2[2];
    ck_assert_int_eq(pipe2(p1, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(p2, O_CLOEXEC), 0);
    struct iovec wv[2] = {{"abc", 3}, {"defg", 4}};
    aev_poll_op_t w = {.opcode = AEV_OP_WRITEV, .fd = p1[1], .iov = wv, .iovcnt = 2, .offset = -1};
    submit(b, &w);
    ck_assert_int_eq(completion_of(b, &w).result, 7);
    char r1[4], r2[8];
    memset(r1, 0, sizeof r1), memset(r2, 0, sizeof r2);
    struct iovec rv[2] = {{r1, 2}, {r2, sizeof r2}};
    aev_poll_op_t r = {.opcode = AEV_OP_READV, .fd = p1[0], .iov = rv, .iovcnt = 2, .offset = -1};
    submit(b, &r);
    ck_assert_int_eq(completion_of(b, &r).result, 7);
    ck_assert_int_eq(memcmp(r1, "ab", 2), 0);
    ck_assert_int_eq(memcmp(r2, "cdefg", 5), 0);
    /* splice: pipe -> pipe */
    put(p1[1], "spliced");
    aev_poll_op_t s = {.opcode = AEV_OP_SPLICE, .fd = p1[0], .fd_out = p2[1], .len = 7, .offset = -1};
    submit(b, &s);
    ck_assert_int_eq(completion_of(b, &s).result, 7);
    char out[8] = {0};
    ck_assert_int_eq(read(p2[0], out, sizeof out), 7);
    ck_assert_str_eq(out, "spliced");
    /* close */
    aev_poll_op_t c = {.opcode = AEV_OP_CLOSE, .fd = p2[0]};
    submit(b, &c);
    ck_assert_int_eq(completion_of(b, &c).result, 0);
    ck_assert_int_eq(fcntl(p2[0], F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);
    close(p1[0]), close(p1[1]), close(p2[1]);
    ops->destroy(b);
}
END_TEST

START_TEST(test_sendmsg_recvmsg_poll_timeout)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int sv[2];
    make_pair(SOCK_DGRAM, sv);
    struct iovec sio[2] = {{"dat", 3}, {"agram", 5}};
    struct msghdr sm = {.msg_iov = sio, .msg_iovlen = 2};
    aev_poll_op_t tx = {.opcode = AEV_OP_SENDMSG, .fd = sv[0], .msg = &sm};
    submit(b, &tx);
    ck_assert_int_eq(completion_of(b, &tx).result, 8);
    /* POLL: the datagram is there */
    aev_poll_op_t po = {.opcode = AEV_OP_POLL, .fd = sv[1], .poll_events = AEV_POLL_IN};
    submit(b, &po);
    ck_assert_uint_eq((uint32_t)completion_of(b, &po).result & AEV_POLL_IN, AEV_POLL_IN);
    char buf[16];
    memset(buf, 0, sizeof buf);
    struct iovec rio = {buf, sizeof buf};
    struct msghdr rm = {.msg_iov = &rio, .msg_iovlen = 1};
    aev_poll_op_t rx = {.opcode = AEV_OP_RECVMSG, .fd = sv[1], .msg = &rm};
    submit(b, &rx);
    ck_assert_int_eq(completion_of(b, &rx).result, 8);
    ck_assert_int_eq(memcmp(buf, "datagram", 8), 0);
    /* TIMEOUT: completes with 0 once due, not before */
    aev_poll_op_t t = {.opcode = AEV_OP_TIMEOUT, .timeout_ns = 20 * MS};
    int64_t t0 = now_ns();
    submit(b, &t);
    ck_assert_int_eq(completion_of(b, &t).result, 0);
    ck_assert_int_ge(now_ns() - t0, 20 * MS);
    /* a cancelled timeout: -ECANCELED */
    t.timeout_ns = 10000 * MS;
    submit(b, &t);
    ck_assert_int_eq(ops->cancel(b, &t), 0);
    ck_assert_int_eq(completion_of(b, &t).result, -ECANCELED);
    close(sv[0]), close(sv[1]);
    ops->destroy(b);
}
END_TEST

START_TEST(test_bad_ops_refused)
{
    aev_poll_backend_t *b = engine_new(NULL);
    aev_poll_op_t op = {.opcode = AEV_OP_SEND, .flags = AEV_OP_F_MULTISHOT, .fd = 0};
    ck_assert_int_eq(ops->submit(b, &op), -EINVAL);
    ck_assert_ptr_nonnull(strstr(detail, "MULTISHOT"));
    op = (aev_poll_op_t){.opcode = AEV_OP_RECV, .flags = AEV_OP_F_MULTISHOT, .fd = 0};
    ck_assert_int_eq(ops->submit(b, &op), -EINVAL);
    ck_assert_ptr_nonnull(strstr(detail, "BUFFER_SELECT"));
    op = (aev_poll_op_t){.opcode = 99};
    ck_assert_int_eq(ops->submit(b, &op), -EINVAL);
    ck_assert_int_eq(ops->provide_buffers(b, 3, NULL, 0, 0), -ENOENT);
    /* nothing was submitted: the ring is idle */
    aev_poll_event_t ev[4];
    ck_assert_int_eq(ops->wait(b, 10 * MS, ev, 4), 0);
    ops->destroy(b);
}
END_TEST

START_TEST(test_connect_accept_multishot)
{
    aev_poll_backend_t *b = engine_new(configs[_i]);
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr);
    aev_poll_op_t acc = {.opcode = AEV_OP_ACCEPT, .flags = AEV_OP_F_MULTISHOT, .fd = lfd,
                         .sock_flags = SOCK_CLOEXEC | SOCK_NONBLOCK};
    submit(b, &acc);
    /* CONNECT from a non-blocking socket */
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    aev_poll_op_t con = {.opcode = AEV_OP_CONNECT, .fd = cfd, .addr = (struct sockaddr *)&addr,
                         .addrlen = sizeof addr};
    submit(b, &con);
    ck_assert_int_eq(completion_of(b, &con).result, 0);
    int clients[3] = {cfd, tcp_connect(&addr), tcp_connect(&addr)};
    int accepted[3];
    for (int i = 0; i < 3; i++) {
        aev_poll_event_t e = completion_of(b, &acc);
        ck_assert_msg(e.result >= 0, "accept %d: %d", i, e.result);
        ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, AEV_OP_CQE_MORE);
        accepted[i] = e.result;
        ck_assert_int_eq(fcntl(accepted[i], F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    }
    /* the accepted sockets work */
    put(clients[2], "ping");
    char buf[8] = {0};
    int found = 0;
    for (int i = 0; i < 3; i++)
        if (recv(accepted[i], buf, sizeof buf, MSG_DONTWAIT) == 4)
            found++;
    ck_assert_int_eq(found, 1);
    /* cancel ends the multishot accept: one final completion */
    ck_assert_int_eq(ops->cancel(b, &acc), 0);
    aev_poll_event_t e = completion_of(b, &acc);
    ck_assert_int_eq(e.result, -ECANCELED);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
    for (int i = 0; i < 3; i++)
        close(clients[i]), close(accepted[i]);
    close(lfd);
    ops->destroy(b);
}
END_TEST

START_TEST(test_multishot_recv_buffer_ring)
{
    enum { NBUF = 4, BUFSZ = 32 };
    aev_poll_backend_t *b = engine_new(configs[_i]);
    char *mem = malloc(NBUF * BUFSZ);
    ck_assert_int_eq(ops->provide_buffers(b, 7, mem, BUFSZ, NBUF), 0);
    ck_assert_int_eq(ops->provide_buffers(b, 7, mem, BUFSZ, NBUF), -EEXIST);
    ck_assert_uint_ge(ops->version, 2);
    ck_assert_ptr_nonnull(ops->return_buffer);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    aev_poll_op_t rx = {.opcode = AEV_OP_RECV, .flags = AEV_OP_F_MULTISHOT | AEV_OP_F_BUFFER_SELECT,
                        .fd = sv[1], .buf_group = 7};
    submit(b, &rx);
    int seen[NBUF] = {0};
    const char *msgs[] = {"one", "two", "three", "four"};
    uint32_t ids[NBUF];
    for (int i = 0; i < NBUF; i++) {
        put(sv[0], msgs[i]);
        aev_poll_event_t e = completion_of(b, &rx);
        ck_assert_int_eq(e.result, (int)strlen(msgs[i]));
        ck_assert_uint_eq(e.flags, AEV_OP_CQE_MORE | AEV_OP_CQE_BUFFER);
        ck_assert_uint_lt(e.buffer_id, NBUF);
        ck_assert_int_eq(seen[e.buffer_id]++, 0);
        ck_assert_int_eq(memcmp(mem + e.buffer_id * BUFSZ, msgs[i], strlen(msgs[i])), 0);
        ids[i] = e.buffer_id;
    }
    /* every buffer is the core's now: the next data finds none, and the multishot ends */
    put(sv[0], "five");
    aev_poll_event_t e = completion_of(b, &rx);
    ck_assert_int_eq(e.result, -ENOBUFS);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
    /* buffers given back are used again; the data waited in the socket */
    ck_assert_int_eq(ops->return_buffer(b, 7, ids[2]), 0);
    ck_assert_int_eq(ops->return_buffer(b, 7, NBUF), -EINVAL);
    ck_assert_int_eq(ops->return_buffer(b, 8, 0), -ENOENT);
    submit(b, &rx);
    e = completion_of(b, &rx);
    ck_assert_int_eq(e.result, 4);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_BUFFER, AEV_OP_CQE_BUFFER);
    ck_assert_uint_eq(e.buffer_id, ids[2]);
    ck_assert_int_eq(memcmp(mem + ids[2] * BUFSZ, "five", 4), 0);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, AEV_OP_CQE_MORE);
    /* cancel: one final completion (an emulated multishot receive ends with -ENOBUFS as
     * soon as it is resubmitted without a buffer left, before the cancel) */
    ck_assert_int_eq(ops->cancel(b, &rx), 0);
    e = completion_of(b, &rx);
    ck_assert_msg(e.result == -ECANCELED || (_i > 0 && e.result == -ENOBUFS), "result %d", e.result);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
    ck_assert_int_eq(ops->provide_buffers(b, 7, NULL, 0, 0), 0);
    close(sv[0]), close(sv[1]);
    ops->destroy(b);
    free(mem);
}
END_TEST

/* A UDP socket bound on 127.0.0.1; *addr gets its address. */
static int udp_bound(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, sizeof *addr), 0);
    socklen_t len = sizeof *addr;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

/* RECVMSG with a provided buffer: the kernel picks the buffer (its id in the completion),
 * the datagram lands there, the sender's address and the flags in the msghdr; one iovec,
 * whose length caps the receive (MSG_TRUNC says a datagram was longer). */
START_TEST(test_recvmsg_buffer_select)
{
    enum { NBUF = 2, BUFSZ = 64 };
    aev_poll_backend_t *b = engine_new(configs[_i]);
    char *mem = calloc(NBUF, BUFSZ);
    ck_assert_int_eq(ops->provide_buffers(b, 5, mem, BUFSZ, NBUF), 0);
    struct sockaddr_in ra, sa;
    int rfd = udp_bound(&ra), sfd = udp_bound(&sa);
    struct sockaddr_in from;
    struct iovec iov = {NULL, BUFSZ};
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
    aev_poll_op_t rx = {.opcode = AEV_OP_RECVMSG, .flags = AEV_OP_F_BUFFER_SELECT, .fd = rfd, .msg = &m,
                        .buf_group = 5};
    submit(b, &rx);
    ck_assert_int_eq(sendto(sfd, "datagram", 8, 0, (struct sockaddr *)&ra, sizeof ra), 8);
    aev_poll_event_t e = completion_of(b, &rx);
    ck_assert_int_eq(e.result, 8);
    ck_assert_uint_eq(e.flags, AEV_OP_CQE_BUFFER); /* single shot: no MORE */
    ck_assert_uint_lt(e.buffer_id, NBUF);
    uint32_t first = e.buffer_id;
    ck_assert_int_eq(memcmp(mem + first * BUFSZ, "datagram", 8), 0);
    ck_assert_uint_eq(m.msg_namelen, sizeof from);
    ck_assert_uint_eq(from.sin_port, sa.sin_port);
    ck_assert_uint_eq(from.sin_addr.s_addr, sa.sin_addr.s_addr);
    ck_assert_int_eq(m.msg_flags & MSG_TRUNC, 0);
    /* a datagram longer than the buffer: cut, and MSG_TRUNC says so; the other buffer */
    char big[BUFSZ * 2];
    memset(big, 'b', sizeof big);
    ck_assert_int_eq(sendto(sfd, big, sizeof big, 0, (struct sockaddr *)&ra, sizeof ra), (ssize_t)sizeof big);
    m.msg_namelen = sizeof from;
    m.msg_flags = 0;
    submit(b, &rx);
    e = completion_of(b, &rx);
    ck_assert_int_eq(e.result, BUFSZ);
    ck_assert_uint_eq(e.flags, AEV_OP_CQE_BUFFER);
    ck_assert_uint_ne(e.buffer_id, first);
    ck_assert_uint_lt(e.buffer_id, NBUF);
    ck_assert_int_eq(memcmp(mem + e.buffer_id * BUFSZ, big, BUFSZ), 0);
    ck_assert_int_eq(m.msg_flags & MSG_TRUNC, MSG_TRUNC);
    /* more than one iovec, or no msghdr: refused at once */
    struct iovec two[2] = {{NULL, 8}, {NULL, 8}};
    struct msghdr m2 = {.msg_iov = two, .msg_iovlen = 2};
    aev_poll_op_t bad = {.opcode = AEV_OP_RECVMSG, .flags = AEV_OP_F_BUFFER_SELECT, .fd = rfd, .msg = &m2,
                         .buf_group = 5};
    ck_assert_int_eq(ops->submit(b, &bad), -EINVAL);
    ck_assert_ptr_nonnull(strstr(detail, "one iovec"));
    bad.msg = NULL;
    ck_assert_int_eq(ops->submit(b, &bad), -EINVAL);
    /* multishot RECVMSG (another output format) is not offered */
    bad = (aev_poll_op_t){.opcode = AEV_OP_RECVMSG, .flags = AEV_OP_F_MULTISHOT | AEV_OP_F_BUFFER_SELECT,
                          .fd = rfd, .msg = &m, .buf_group = 5};
    ck_assert_int_eq(ops->submit(b, &bad), -EINVAL);
    ck_assert_int_eq(ops->provide_buffers(b, 5, NULL, 0, 0), 0);
    close(rfd), close(sfd);
    ops->destroy(b);
    free(mem);
}
END_TEST

START_TEST(test_multishot_poll)
{
    aev_poll_backend_t *b = engine_new(configs[_i]);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    aev_poll_op_t po = {.opcode = AEV_OP_POLL, .flags = AEV_OP_F_MULTISHOT, .fd = sv[1],
                        .poll_events = AEV_POLL_IN};
    submit(b, &po);
    for (int round = 0; round < 3; round++) {
        put(sv[0], "ab");
        aev_poll_event_t e = completion_of(b, &po);
        ck_assert_uint_eq((uint32_t)e.result & AEV_POLL_IN, AEV_POLL_IN);
        ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, AEV_OP_CQE_MORE);
        char buf[8];
        ck_assert_int_eq(read(sv[1], buf, sizeof buf), 2);
        /* an emulated multishot poll may have fired again before the read: drain those */
        pump(b, 5 * MS);
        for (int i = 0; i < nstash; i++)
            if (stash[i].op == &po)
                ck_assert_uint_eq(stash[i].flags & AEV_OP_CQE_MORE, AEV_OP_CQE_MORE);
        nstash = 0;
    }
    ck_assert_int_eq(ops->cancel(b, &po), 0);
    aev_poll_event_t e = completion_of(b, &po);
    ck_assert_int_eq(e.result, -ECANCELED);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
    close(sv[0]), close(sv[1]);
    ops->destroy(b);
}
END_TEST

/* Cancel an operation that is completing at that very moment: exactly one final
 * completion, either the result or -ECANCELED, and nothing after it. */
START_TEST(test_cancel_races_completion)
{
    aev_poll_backend_t *b = engine_new(configs[_i]);
    int outcomes[2] = {0, 0};
    for (int round = 0; round < 200; round++) {
        int sv[2];
        make_pair(SOCK_STREAM, sv);
        char c = 0;
        aev_poll_op_t rx = {.opcode = AEV_OP_RECV, .fd = sv[1], .buf = &c, .len = 1};
        submit(b, &rx);
        switch (round % 4) {
        case 0: /* the data is there before the receive reaches the kernel */
            put(sv[0], "z");
            ck_assert_int_eq(ops->cancel(b, &rx), 0);
            break;
        case 1: /* in flight; data, then cancel */
            pump(b, 0);
            put(sv[0], "z");
            ck_assert_int_eq(ops->cancel(b, &rx), 0);
            break;
        case 2: /* in flight; cancel queued, data before it reaches the kernel */
            pump(b, 0);
            ck_assert_int_eq(ops->cancel(b, &rx), 0);
            put(sv[0], "z");
            break;
        default: /* in flight; cancelled, then data */
            pump(b, 0);
            ck_assert_int_eq(ops->cancel(b, &rx), 0);
            pump(b, 0);
            put(sv[0], "z");
            break;
        }
        aev_poll_event_t e = completion_of(b, &rx);
        ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
        ck_assert_msg(e.result == 1 || e.result == -ECANCELED, "round %d: result %d", round, e.result);
        outcomes[e.result == 1]++;
        if (e.result == 1)
            ck_assert_int_eq(c, 'z');
        /* nothing more for this op */
        pump(b, 0);
        for (int i = 0; i < nstash; i++)
            ck_assert_msg(stash[i].op != &rx, "round %d: a second completion", round);
        close(sv[0]), close(sv[1]);
    }
    fprintf(stderr, "cancel race: %d completed, %d cancelled\n", outcomes[1], outcomes[0]);
    ck_assert_int_gt(outcomes[0], 0);
    ck_assert_int_gt(outcomes[1], 0);
    ops->destroy(b);
}
END_TEST

/* The application closes an fd with a receive in flight: the kernel keeps the file
 * until the operation ends; cancel ends it (once), and then the file goes. */
START_TEST(test_close_fd_with_op_in_flight)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    char buf[16];
    memset(buf, 0x5a, sizeof buf);
    aev_poll_op_t rx = {.opcode = AEV_OP_RECV, .fd = sv[1], .buf = buf, .len = sizeof buf};
    submit(b, &rx);
    aev_poll_event_t ev[8];
    ck_assert_int_ge(ops->wait(b, 10 * MS, ev, 8), 0);
    close(sv[1]);
    ck_assert_int_eq(ops->cancel(b, &rx), 0);
    aev_poll_event_t e = completion_of(b, &rx);
    ck_assert_int_eq(e.result, -ECANCELED);
    ck_assert_uint_eq(e.flags & AEV_OP_CQE_MORE, 0);
    /* the file is released: the peer sees the end of the stream */
    char c;
    int64_t deadline = now_ns() + 1000 * MS;
    ssize_t r;
    while ((r = recv(sv[0], &c, 1, MSG_DONTWAIT)) < 0 && errno == EAGAIN && now_ns() < deadline)
        ck_assert_int_ge(ops->wait(b, 5 * MS, ev, 8), 0);
    ck_assert_int_eq(r, 0);
    /* and the buffer was never written */
    for (size_t i = 0; i < sizeof buf; i++)
        ck_assert_int_eq((unsigned char)buf[i], 0x5a);
    close(sv[0]);
    ops->destroy(b);
}
END_TEST

/* More completions than the CQ holds before anything is reaped: none is lost. */
START_TEST(test_cq_overflow)
{
    enum { N = 200 };
    static const char *const small[] = {"entries", "4", NULL};
    aev_poll_backend_t *b = engine_new(small);
    aev_poll_op_t *op = calloc(N, sizeof *op);
    int *seen = calloc(N, sizeof *seen);
    for (int i = 0; i < N; i++) {
        op[i].opcode = AEV_OP_NOP;
        submit(b, &op[i]);
    }
    int total = 0;
    int64_t deadline = now_ns() + 2000 * MS;
    while (total < N && now_ns() < deadline) {
        aev_poll_event_t ev[7];
        int n = ops->wait(b, 50 * MS, ev, 7);
        ck_assert_int_ge(n, 0);
        ck_assert_int_le(n, 7);
        for (int i = 0; i < n; i++) {
            ck_assert_int_eq(ev[i].kind, AEV_POLL_EVENT_COMPLETION);
            long k = ev[i].op - op;
            ck_assert_msg(k >= 0 && k < N, "unknown op");
            ck_assert_int_eq(seen[k]++, 0);
            total++;
        }
    }
    ck_assert_int_eq(total, N);
    aev_poll_event_t ev[4];
    ck_assert_int_eq(ops->wait(b, 10 * MS, ev, 4), 0);
    ops->destroy(b);
    free(op);
    free(seen);
}
END_TEST

/* The engine is destroyed with operations in flight: it cancels them and waits for the
 * kernel to let go of their buffers, promptly (a timeout of 10 s must not hold it). */
START_TEST(test_destroy_with_ops_in_flight)
{
    aev_poll_backend_t *b = engine_new(NULL);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    char *buf = malloc(64);
    aev_poll_op_t rx = {.opcode = AEV_OP_RECV, .fd = sv[1], .buf = buf, .len = 64};
    aev_poll_op_t t = {.opcode = AEV_OP_TIMEOUT, .timeout_ns = 10000 * MS};
    submit(b, &rx);
    submit(b, &t);
    aev_poll_event_t ev[4];
    ck_assert_int_ge(ops->wait(b, 0, ev, 4), 0);
    int64_t t0 = now_ns();
    ops->destroy(b);
    ck_assert_int_lt(now_ns() - t0, 1000 * MS);
    free(buf);
    put(sv[0], "late");
    close(sv[0]), close(sv[1]);
}
END_TEST

/* One loop iteration costs one entry into the kernel: the re-arm of a poll and the
 * operations queued since the last wait ride on the wait's io_uring_enter. */
START_TEST(test_batching)
{
    if (!counting_module) {
        fprintf(stderr, "test_batching: the counting build of the module is missing, skipped\n");
        return;
    }
    const aev_plugin_descriptor_t *d = dlsym(counting_module, "aev_poll_io_uring_LTX_aev_plugin");
    unsigned long *enters = dlsym(counting_module, "aev_poll_io_uring_test_enters");
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_nonnull(enters);
    const aev_poll_ops_t *o = d->init(&host);
    aev_poll_backend_t *b = engine_new_with(o, NULL);
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    ck_assert_int_eq(o->watch(b, sv[0], 0, AEV_POLL_IN), 0);
    aev_poll_event_t ev[8];
    unsigned long start = *enters;
    for (int i = 0; i < 50; i++) {
        put(sv[1], "x");
        int n = o->wait(b, 1000 * MS, ev, 8);
        ck_assert_int_eq(n, 1);
        char c;
        ck_assert_int_eq(read(sv[0], &c, 1), 1);
    }
    ck_assert_uint_le(*enters - start, 50);
    /* ten operations and a wait: one entry */
    aev_poll_op_t nop[10];
    memset(nop, 0, sizeof nop);
    start = *enters;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(o->submit(b, &nop[i]), 0);
    int got = 0;
    while (got < 10) {
        int n = o->wait(b, 1000 * MS, ev, 8);
        ck_assert_int_gt(n, 0);
        got += n;
    }
    ck_assert_uint_le(*enters - start, 2); /* the second wait hands out what the first left */
    ck_assert_int_eq(o->watch(b, sv[0], AEV_POLL_IN, 0), 0);
    o->destroy(b);
    close(sv[0]), close(sv[1]);
}
END_TEST

/* ---- probe ------------------------------------------------------------------------ */

/* A seccomp filter that refuses io_uring_setup with EPERM, as container profiles do.
 * Only in a forked test process: it stays for the rest of the process's life. */
static int refuse_io_uring_setup(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0 ? 0 : -errno;
}

START_TEST(test_probe_refused_by_seccomp)
{
    const char *fork_mode = getenv("CK_FORK");
    if (fork_mode && strcmp(fork_mode, "no") == 0) {
        fprintf(stderr, "test_probe_refused_by_seccomp: needs CK_FORK (a filter is for life), skipped\n");
        return;
    }
    char why[256] = "";
    ck_assert_int_eq(desc->probe(&host, why, sizeof why), 0);
    ck_assert_int_eq(refuse_io_uring_setup(), 0);
    int rc = desc->probe(&host, why, sizeof why);
    ck_assert_int_eq(rc, -EPERM);
    ck_assert_msg(strstr(why, "io_uring_setup: Operation not permitted") && strstr(why, "seccomp"),
                  "reason: %s", why);
    /* and an engine cannot be created either: a negative errno with a detail */
    aev_poll_backend_t *b = NULL;
    ck_assert_int_eq(ops->create(&host, NULL, &b), -EPERM);
    ck_assert_ptr_null(b);
    ck_assert_ptr_nonnull(strstr(detail, "io_uring_setup"));
}
END_TEST

START_TEST(test_bad_entries_option)
{
    static const char *const bad[][3] = {{"entries", "1", NULL}, {"entries", "12x", NULL},
                                         {"entries", "99999", NULL}, {"entries", "-4", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aev_poll_backend_t *b = NULL;
        ck_assert_int_eq(ops->create(&host, (const aev_plugin_context_t *)bad[i], &b), -EINVAL);
        ck_assert_ptr_null(b);
        ck_assert_msg(strstr(detail, "entries") && strstr(detail, bad[i][1]), "detail: %s", detail);
    }
}
END_TEST

struct foreign_wait {
    aev_poll_backend_t *b;
    int rc;
    char detail[256];
};

static void *wait_from_thread(void *arg)
{
    struct foreign_wait *f = arg;
    aev_poll_event_t ev[4];
    detail[0] = 0;
    f->rc = ops->wait(f->b, 0, ev, 4);
    snprintf(f->detail, sizeof f->detail, "%s", detail);
    return NULL;
}

/* defer_taskrun: the first thread that waits owns the ring; another one is refused with a
 * reason, wake-ups from other threads still reach the owner, and the value is checked. */
START_TEST(test_defer_taskrun_one_thread)
{
    static const char *const kv[] = {"defer_taskrun", "yes", NULL};
    aev_poll_backend_t *b = engine_new(kv);
    aev_poll_event_t ev[4];
    int sv[2];
    make_pair(SOCK_STREAM, sv);
    /* ops queued before the first wait run once this thread enables the ring */
    ck_assert_int_eq(ops->watch(b, sv[0], 0, AEV_POLL_IN), 0);
    put(sv[1], "x");
    ck_assert_uint_eq(fd_events(b, 1000 * MS, sv[0]), AEV_POLL_IN);
    struct foreign_wait f = {.b = b, .rc = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, wait_from_thread, &f), 0);
    pthread_join(th, NULL);
    if (!TEST_UNDER_VALGRIND()) { /* under valgrind the engine ignores the option (ppoll) */
        ck_assert_int_eq(f.rc, -EEXIST);
        ck_assert_msg(strstr(f.detail, "defer_taskrun"), "detail: %s", f.detail);
    }
    /* the owner goes on; a wake from another thread ends its wait(-1) */
    ck_assert_int_eq(ops->watch(b, sv[0], AEV_POLL_IN, 0), 0);
    struct waker w = {b, 30};
    ck_assert_int_eq(pthread_create(&th, NULL, wake_later, &w), 0);
    int64_t t0 = now_ns();
    ck_assert_int_eq(ops->wait(b, -1, ev, 4), 0);
    ck_assert_int_lt(now_ns() - t0, 1500 * MS);
    pthread_join(th, NULL);
    ops->destroy(b);
    close(sv[0]);
    close(sv[1]);

    static const char *const bad[] = {"defer_taskrun", "maybe", NULL};
    b = NULL;
    ck_assert_int_eq(ops->create(&host, (const aev_plugin_context_t *)bad, &b), -EINVAL);
    ck_assert_ptr_null(b);
    ck_assert_msg(strstr(detail, "defer_taskrun") && strstr(detail, "maybe"), "detail: %s", detail);
}
END_TEST

/* ---- the suite -------------------------------------------------------------------- */

static Suite *engine_suite(void)
{
    Suite *s = suite_create("io_uring");
    TCase *tc = tcase_create("readiness");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_level_triggered);
    tcase_add_test(tc, test_interest_change_no_stale_event);
    tcase_add_test(tc, test_fd_reuse_no_stale_event);
    tcase_add_test(tc, test_nval_closed_fd);
    tcase_add_test(tc, test_wake_from_thread);
    tcase_add_test(tc, test_wake_from_signal_handler);
    tcase_add_test(tc, test_timeouts);
    suite_add_tcase(s, tc);

    tc = tcase_create("probe");
    tcase_add_test(tc, test_probe_refused_by_seccomp);
    tcase_add_test(tc, test_bad_entries_option);
    tcase_add_test(tc, test_defer_taskrun_one_thread);
    suite_add_tcase(s, tc);

    tc = tcase_create("completion");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_send_recv, 0, N_CONFIGS);
    tcase_add_test(tc, test_readv_writev_splice_close);
    tcase_add_test(tc, test_sendmsg_recvmsg_poll_timeout);
    tcase_add_test(tc, test_bad_ops_refused);
    tcase_add_loop_test(tc, test_connect_accept_multishot, 0, N_CONFIGS);
    tcase_add_loop_test(tc, test_multishot_recv_buffer_ring, 0, N_CONFIGS);
    tcase_add_loop_test(tc, test_recvmsg_buffer_select, 0, N_CONFIGS);
    tcase_add_loop_test(tc, test_multishot_poll, 0, N_CONFIGS);
    tcase_add_loop_test(tc, test_cancel_races_completion, 0, N_CONFIGS);
    tcase_add_test(tc, test_close_fd_with_op_in_flight);
    tcase_add_test(tc, test_cq_overflow);
    tcase_add_test(tc, test_destroy_with_ops_in_flight);
    tcase_add_test(tc, test_batching);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *path = getenv("AEV_TEST_IO_URING_MODULE");
    if (!path || !*path) {
        fprintf(stderr, "AEV_TEST_IO_URING_MODULE is not set\n");
        return 1;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return 1;
    }
    const aev_plugin_descriptor_t *d = desc = dlsym(h, "aev_poll_io_uring_LTX_aev_plugin");
    if (!d || d->magic != AEV_PLUGIN_MAGIC || d->family != AEV_FAMILY_POLL ||
        strcmp(d->name, "io_uring") != 0 || !d->probe || !d->init) {
        fprintf(stderr, "%s: no valid io_uring descriptor\n", path);
        return 1;
    }
    char why[256] = "";
    int rc = d->probe(&host, why, sizeof why);
    if (rc < 0) {
        fprintf(stderr, "SKIPPED: io_uring cannot run here: %s (%d)\n", why, rc);
        return SKIP_EXIT;
    }
    ops = d->init(&host);
    if (!ops || ops->caps != d->caps || !ops->submit || !ops->cancel || !ops->provide_buffers) {
        fprintf(stderr, "%s: bad ops\n", path);
        return 1;
    }
    const char *counting = getenv("AEV_TEST_IO_URING_COUNTING");
    if (counting && *counting)
        counting_module = dlopen(counting, RTLD_NOW | RTLD_LOCAL);

    SRunner *sr = srunner_create(engine_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    /* the modules stay loaded, as plugins do in the core */
    return failed == 0 ? 0 : 1;
}
