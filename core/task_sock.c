/* libaev core - socket operations awaited from a task (await loop.sock_recv()
 * and friends): try the system call, and when it would block, suspend the task
 * until the socket is ready, then try again.
 *
 * The watcher a task waits on stays registered while the task waits on the
 * same socket and direction again right after it is resumed (a receive loop),
 * so a busy connection costs no epoll_ctl. A receive that came back short
 * means the socket is very likely drained: the next receive waits for
 * readiness first instead of failing with EAGAIN (DESIGN: "reads are not
 * retried into EAGAIN"). */
#include <errno.h>
#include <sys/socket.h>

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

ssize_t aev_task_sock_recv(int fd, void *buf, size_t n)
{
    aev_loop_t *loop;
    int rc;
    aev__task_t *t = begin(&loop, fd, &rc);
    if (!t)
        return rc;
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
