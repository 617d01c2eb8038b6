/* libaev core - socket operations awaited from a task (await loop.sock_recv()
 * and friends): try the system call, and when it would block, suspend the task
 * until the socket is ready, then try again.
 *
 * On a proactor loop (loop->native_ops) with AEV_TASK_SOCK_OPS=native in the
 * environment the wait is native instead (off by default: slower, see
 * native_wanted()): after the
 * first try, the task awaits the future form (core/sock.c), started with
 * aev__sock_task_next() so that it neither checks fd nor tries the call again,
 * and whose completion carries the result (no system call after the wait). The
 * kernel only touches the core's buffers, what raced a cancelled receive or
 * accept goes to the next one, and a cancelled sendall returns only once its
 * native send has ended, so that *sent counts exactly what went out. The first
 * try is skipped where it could overtake what the core still holds for the
 * socket (an operation in flight or waiting, a stash): the future form serves
 * those in order. A receive or accept whose future completed but whose task was
 * cancelled before it resumed gives what it got back to the stash (it returns
 * AEV_ECANCELLED, and as on readiness, the next receive gets those bytes). sock_connect goes to the engine at once (as the future form)
 * and sock_sendfile stays on readiness (as the future form).
 *
 * The watcher a task waits on stays registered while the task waits on the
 * same socket and direction again right after it is resumed (a receive loop),
 * so a busy connection costs no epoll_ctl. A receive that came back short
 * means the socket is very likely drained: the next receive waits for
 * readiness first instead of failing with EAGAIN (DESIGN: "reads are not
 * retried into EAGAIN"). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "loop_internal.h"
#include "sock_internal.h"
#include "task_internal.h"

/* The running task, and the checks on fd. A task that just checked fd (its last
 * operation was on fd) or holds a watcher on it skips the fcntl: receives and sends
 * also pass MSG_DONTWAIT, so even a socket made blocking behind the task's back never
 * blocks the loop. */
static aev__task_t *begin(aev_loop_t **loop, int fd, int *rc)
{
    aev__task_t *t = aev__task_self(loop);
    if (!t) {
        *rc = AEV_ENOT_IN_TASK;
        return NULL;
    }
    if (fd < 0) {
        aev__set_detail("invalid file descriptor %d", fd);
        *rc = -EBADF;
        return NULL;
    }
    if (t->checked_fd == fd || aev__task_holds_fd(*loop, t, fd)) {
        *rc = 0;
        return t;
    }
    *rc = aev__sock_check_nonblocking(fd);
    if (*rc < 0)
        return NULL;
    t->checked_fd = fd;
    return t;
}

/* After a system call failed: 0 to try it again (EINTR, or the socket is ready now after
 * the task waited), else the error to return. */
static int wait_again(aev_loop_t *loop, aev__task_t *t, int fd, uint32_t dir)
{
    int e = errno;
    if (e == EINTR)
        return 0;
    if (e != EAGAIN && e != EWOULDBLOCK)
        return -e;
    return aev__task_wait_fd(loop, t, fd, dir);
}

/* ---- native (proactor) ---------------------------------------------------------------- */

/* Whether the task forms wait natively on a proactor loop: only with AEV_TASK_SOCK_OPS=native
 * in the environment (read once per process). Off by default: measured slower than the
 * readiness half for a task-per-connection echo server (bench/README.md). */
static int native_wanted(void)
{
    static atomic_int mode = -1;
    int m = atomic_load_explicit(&mode, memory_order_relaxed);
    if (m < 0) {
        const char *e = getenv("AEV_TASK_SOCK_OPS");
        m = e && strcmp(e, "native") == 0;
        atomic_store_explicit(&mode, m, memory_order_relaxed);
    }
    return m;
}

#define NATIVE(loop) ((loop)->native_ops && native_wanted())

/* 1 if the system call may be tried first: nothing of the core's on fd's direction to
 * overtake (and, for receives, the last one did not come back short). */
static int may_try(aev_loop_t *loop, int fd, uint32_t dir)
{
    return aev__sock_native_state(loop, fd, dir) == 0;
}

/* After a try failed with errno: 0 to go native, 1 to try again (EINTR), else the error. */
static int native_after(void)
{
    int e = errno;
    if (e == EINTR)
        return 1;
    return e == EAGAIN || e == EWOULDBLOCK ? 0 : -e;
}

/* Awaits the future form's future (*futp; rc: what starting it returned, evaluated before
 * *futp is read) and gives its result. *late (may be NULL): -1, or the operation's result
 * when it completed but the task was cancelled before it resumed (AEV_ECANCELLED is
 * returned: what a receive or accept got must then be given back). */
static ssize_t await_op(int rc, aev_future_t **futp, ssize_t *late)
{
    if (late)
        *late = -1;
    if (rc < 0)
        return rc;
    aev_future_t *fut = *futp;
    void *v = NULL;
    rc = aev_await(fut, &v);
    if (rc == AEV_ECANCELLED && late && aev_future_result(fut, &v) == 0)
        *late = (ssize_t)(intptr_t)v;
    aev_future_unref(fut);
    return rc < 0 ? rc : (ssize_t)(intptr_t)v;
}

static ssize_t recv_native(aev_loop_t *loop, aev__task_t *t, int fd, void *buf, size_t n)
{
    if (t->short_read_fd != fd && may_try(loop, fd, AEV_POLL_IN)) {
        for (;;) {
            ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
            if (r >= 0) {
                t->short_read_fd = r > 0 && (size_t)r < n ? fd : -1;
                return r;
            }
            int rc = native_after();
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
        }
    }
    aev_future_t *fut = NULL;
    aev__sock_task_next();
    ssize_t late;
    ssize_t r = await_op(aev_loop_sock_recv(loop, fd, buf, n, &fut), &fut, &late);
    if (late > 0)
        aev__sock_give_back(loop, fd, late, buf, NULL, 0, -1);
    t->short_read_fd = r > 0 && (size_t)r < n ? fd : -1;
    return r;
}

static ssize_t recvfrom_native(aev_loop_t *loop, int fd, void *buf, size_t n, struct sockaddr *addr,
                               socklen_t *addrlen)
{
    socklen_t cap = addrlen ? *addrlen : 0;
    while (may_try(loop, fd, AEV_POLL_IN)) {
        if (addrlen)
            *addrlen = cap;
        ssize_t r = recvfrom(fd, buf, n, MSG_DONTWAIT, addrlen ? addr : NULL, addrlen);
        if (r >= 0)
            return r;
        int rc = native_after();
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
    }
    if (addrlen)
        *addrlen = cap;
    aev_future_t *fut = NULL;
    aev__sock_task_next();
    ssize_t late;
    ssize_t r = await_op(aev_loop_sock_recvfrom(loop, fd, buf, n, addrlen ? addr : NULL, addrlen, &fut), &fut,
                         &late);
    if (late > 0)
        aev__sock_give_back(loop, fd, late, buf, addrlen ? addr : NULL, addrlen ? *addrlen : 0, -1);
    return r;
}

/* A cancelled native sendall: waits until its send has ended in the engine (the engine
 * answers a cancel at once: an iteration or two), so that *sent is exact and nothing of
 * the caller's buffer goes out after the call returned. A further cancel does not cut
 * this short (it is the same cancellation's cleanup). */
static void settle(aev_loop_t *loop, int fd)
{
    while (aev__sock_native_state(loop, fd, AEV_POLL_OUT) & AEV__SOCK_SETTLING)
        (void)aev_task_yield();
}

static ssize_t sendall_native(aev_loop_t *loop, int fd, const void *buf, size_t n, size_t *sent)
{
    size_t done = 0;
    while (done < n && may_try(loop, fd, AEV_POLL_OUT)) {
        ssize_t r = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            done += (size_t)r;
            if (sent)
                *sent = done;
            continue;
        }
        int rc = native_after();
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
    }
    if (done == n)
        return (ssize_t)n;
    /* the rest natively; sock.c counts on from *sent (the bytes sent above) */
    aev_future_t *fut = NULL;
    aev__sock_task_next();
    int rc = aev_loop_sock_sendall(loop, fd, (const char *)buf + done, n - done, sent, &fut);
    if (rc < 0)
        return rc;
    ssize_t r = await_op(0, &fut, NULL);
    if (r == AEV_ECANCELLED)
        settle(loop, fd);
    return r < 0 ? r : (ssize_t)n;
}

static ssize_t sendto_native(aev_loop_t *loop, int fd, const void *buf, size_t n,
                             const struct sockaddr *addr, socklen_t addrlen)
{
    while (may_try(loop, fd, AEV_POLL_OUT)) {
        ssize_t r = sendto(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT, addr, addrlen);
        if (r >= 0)
            return r;
        int rc = native_after();
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
    }
    aev_future_t *fut = NULL;
    aev__sock_task_next();
    return await_op(aev_loop_sock_sendto(loop, fd, buf, n, addr, addrlen, &fut), &fut, NULL);
}

static int accept_native(aev_loop_t *loop, int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    socklen_t cap = addrlen ? *addrlen : 0;
    while (may_try(loop, fd, AEV_POLL_IN)) {
        if (addrlen)
            *addrlen = cap;
        int c = accept4(fd, addrlen ? addr : NULL, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0)
            return c;
        int rc = native_after();
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
    }
    if (addrlen)
        *addrlen = cap;
    aev_future_t *fut = NULL;
    aev__sock_task_next();
    ssize_t late;
    int r = (int)await_op(aev_loop_sock_accept(loop, fd, addrlen ? addr : NULL, addrlen, &fut), &fut, &late);
    if (late >= 0)
        aev__sock_give_back(loop, fd, 0, NULL, NULL, 0, (int)late);
    return r;
}

/* ---- the calls ---------------------------------------------------------------------------- */

ssize_t aev_task_sock_recv(int fd, void *buf, size_t n)
{
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
    if (NATIVE(loop))
        return recv_native(loop, t, fd, buf, n);
    if (aev__task_expect_drained(loop, t, fd)) {
        rc = aev__task_wait_fd(loop, t, fd, AEV_POLL_IN);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r >= 0) {
            t->short_read_fd = r > 0 && (size_t)r < n ? fd : -1;
            return r;
        }
        rc = wait_again(loop, t, fd, AEV_POLL_IN);
        if (rc < 0)
            return rc;
    }
}

ssize_t aev_task_sock_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr, socklen_t *addrlen)
{
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
    if (NATIVE(loop))
        return recvfrom_native(loop, fd, buf, n, addr, addrlen);
    socklen_t cap = addrlen ? *addrlen : 0;
    for (;;) {
        if (addrlen)
            *addrlen = cap;
        ssize_t r = recvfrom(fd, buf, n, MSG_DONTWAIT, addrlen ? addr : NULL, addrlen);
        if (r >= 0)
            return r;
        rc = wait_again(loop, t, fd, AEV_POLL_IN);
        if (rc < 0)
            return rc;
    }
}

ssize_t aev_task_sock_sendall(int fd, const void *buf, size_t n, size_t *sent)
{
    if (sent)
        *sent = 0;
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
    if (NATIVE(loop))
        return sendall_native(loop, fd, buf, n, sent);
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            done += (size_t)r;
            if (sent)
                *sent = done;
            continue;
        }
        rc = wait_again(loop, t, fd, AEV_POLL_OUT);
        if (rc < 0)
            return rc;
    }
    return (ssize_t)n;
}

ssize_t aev_task_sock_sendto(int fd, const void *buf, size_t n, const struct sockaddr *addr, socklen_t addrlen)
{
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
    if (NATIVE(loop))
        return sendto_native(loop, fd, buf, n, addr, addrlen);
    for (;;) {
        ssize_t r = sendto(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT, addr, addrlen);
        if (r >= 0)
            return r;
        rc = wait_again(loop, t, fd, AEV_POLL_OUT);
        if (rc < 0)
            return rc;
    }
}

int aev_task_sock_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
    if (!addr) {
        aev__set_detail("sock_connect needs an address");
        return -EINVAL;
    }
    if (NATIVE(loop)) { /* to the engine at once, as the future form */
        aev_future_t *fut = NULL;
        return (int)await_op(aev_loop_sock_connect(loop, fd, addr, addrlen, &fut), &fut, NULL);
    }
    if (connect(fd, addr, addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    /* the connection goes on in the background: writable means it is decided */
    rc = aev__task_wait_fd(loop, t, fd, AEV_POLL_OUT);
    if (rc < 0)
        return rc;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return err ? -err : 0;
}

int aev_task_sock_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
    if (NATIVE(loop))
        return accept_native(loop, fd, addr, addrlen);
    socklen_t cap = addrlen ? *addrlen : 0;
    for (;;) {
        if (addrlen)
            *addrlen = cap;
        int c = accept4(fd, addrlen ? addr : NULL, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0)
            return c;
        rc = wait_again(loop, t, fd, AEV_POLL_IN);
        if (rc < 0)
            return rc;
    }
}

ssize_t aev_task_sock_sendfile(int fd, int file_fd, const aev_sendfile_options_t *opts)
{
    aev_loop_t *loop;
    aev__task_t *t = aev__task_self(&loop);
    if (!t)
        return AEV_ENOT_IN_TASK;
    aev__sendfile_t sf;
    int rc = aev__sendfile_init(&sf, fd, file_fd, opts);
    if (rc < 0)
        return rc;
    /* the same engine as the future form; only the waiting differs */
    for (;;) {
        rc = aev__sendfile_step(&sf);
        if (rc != 0)
            break;
        if (sf.wait_fd < 0)
            rc = aev_task_yield(); /* a big file: let the loop breathe between chunks */
        else
            rc = aev__task_wait_fd(loop, t, sf.wait_fd, sf.wait_events);
        if (rc < 0)
            break;
    }
    aev__sendfile_end(&sf); /* the file position: offset + what was sent, however it ended */
    return rc < 0 ? rc : (ssize_t)sf.sent;
}
