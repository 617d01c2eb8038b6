/* libaev core - completion-style operations run over a readiness engine.
 *
 * An active operation owns the fd's reader (receives, accept) or writer (sends,
 * connect) watcher, registered through aev__io_watch_owned with the operation
 * as its argument. On readiness the syscall is made once (accept: up to op->len
 * times, as asyncio accepts up to backlog connections per event); EAGAIN leaves
 * the interest in place, a result completes the operation. An operation that
 * done() resubmits keeps its watcher, so a transport that reads or writes
 * continuously costs no epoll_ctl. Completion engines run operations natively
 * (io_op_completion.c); io_op.h has the contract both sides keep. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io_op.h"
#include "loop_internal.h"

static int op_ready(aev_loop_t *loop, void *arg);

static uint32_t op_direction(const aev__op_t *op)
{
    switch (op->opcode) {
    case AEV_OP_SEND:
    case AEV_OP_WRITEV:
    case AEV_OP_SENDMSG:
    case AEV_OP_CONNECT:
        return AEV_POLL_OUT;
    default:
        return AEV_POLL_IN;
    }
}

void *aev__op_shared_buffer(aev_loop_t *loop, size_t *size)
{
    if (!loop->stream_rbuf && !(loop->stream_rbuf = malloc(AEV__OP_SHARED_SIZE)))
        return NULL;
    if (size)
        *size = AEV__OP_SHARED_SIZE;
    return loop->stream_rbuf;
}

static int soon_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev__op_t *op = arg;
    aev_handle_unref(op->soon);
    op->soon = NULL;
    if (!op->active)
        return 0;
    op->active = 0;
    op->done(op, op->soon_result, 0);
    return 0;
}

/* CONNECT starts at submit: connect(2) either finishes at once (the result comes from the
 * next dispatch of ready callbacks) or is in progress (the writer watcher reports it). */
static int connect_start(aev_loop_t *loop, aev__op_t *op)
{
    op->soon = NULL;
    int r;
    do
        r = connect(op->fd, op->addr, op->addrlen);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EINPROGRESS || errno == EAGAIN))
        return aev__io_watch_owned(loop, op->fd, AEV_POLL_OUT, op_ready, op);
    op->soon_result = r < 0 ? -errno : 0;
    return aev_loop_call_soon(loop, soon_cb, op, &op->soon);
}

int aev__op_submit(aev_loop_t *loop, aev__op_t *op)
{
    if (op->active)
        return -EBUSY;
    if (AEV__UNLIKELY(loop->native_ops) && (op->flags & AEV__OP_COMPLETION_OK)) {
        int rc = aev__op_completion_submit(loop, op);
        if (rc == 0)
            op->active = 1;
        return rc;
    }
    /* An engine serving both halves (io_uring) runs these over its readiness half unless
     * the loop hands it operations natively; a completion-only engine cannot yet. */
    if (AEV__UNLIKELY(!(loop->poll->caps & AEV_POLL_CAP_READINESS))) {
        aev__set_detail("the completion engine '%s' does not run transports yet",
                        loop->poll_plugin ? loop->poll_plugin->desc->name : "?");
        return AEV_ENOT_SUPPORTED;
    }
    int rc = op->opcode == AEV_OP_CONNECT
                 ? connect_start(loop, op)
                 : aev__io_watch_owned(loop, op->fd, op_direction(op), op_ready, op);
    if (rc < 0)
        return rc;
    op->active = 1;
    return 0;
}

int aev__op_cancel(aev_loop_t *loop, aev__op_t *op)
{
    if (!op->active)
        return 0;
    if (AEV__UNLIKELY(op->eop != NULL))
        return aev__op_completion_cancel(loop, op); /* the final completion still comes */
    op->active = 0;
    if (op->opcode == AEV_OP_CONNECT && op->soon) { /* soon aliases buf: CONNECT only */
        aev_handle_cancel(op->soon);
        aev_handle_unref(op->soon);
        op->soon = NULL;
        return 0;
    }
    aev__io_unwatch_owned(loop, op->fd, op_direction(op), op_ready, op);
    return 0;
}

ssize_t aev__writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    int blocked_here = pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0 && !sigismember(&old, SIGPIPE);
    ssize_t n;
    do
        n = writev(fd, iov, iovcnt);
    while (n < 0 && errno == EINTR);
    int err = errno;
    if (blocked_here) {
        if (n < 0 && err == EPIPE) {
            /* the write raised SIGPIPE for this thread, where it is pending now: take it
             * back before the mask lets it through (with SIGPIPE ignored nothing is pending) */
            const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    errno = err;
    return n;
}

/* One syscall for op: its result, or -EAGAIN when the fd is not ready after all. */
static int op_syscall(aev_loop_t *loop, aev__op_t *op)
{
    ssize_t n;
    void *buf = op->buf;
    size_t len = op->len;
    if ((op->flags & AEV__OP_SHARED_BUF) && (op->opcode == AEV_OP_RECV || op->opcode == AEV_OP_READV ||
                                             op->opcode == AEV_OP_RECVMSG)) {
        buf = aev__op_shared_buffer(loop, &len);
        if (!buf)
            return -ENOMEM;
        op->data = buf;
    }
    for (;;) {
        switch (op->opcode) {
        case AEV_OP_RECV:
            n = recv(op->fd, buf, len, MSG_DONTWAIT);
            break;
        case AEV_OP_READV:
            n = (op->flags & AEV__OP_SHARED_BUF) || op->iovcnt == 0 ? read(op->fd, buf, len)
                                                                    : readv(op->fd, op->iov, op->iovcnt);
            break;
        case AEV_OP_RECVMSG:
            if (op->flags & AEV__OP_SHARED_BUF) {
                struct iovec v = {.iov_base = buf, .iov_len = len};
                op->msg->msg_iov = &v;
                op->msg->msg_iovlen = 1;
                n = recvmsg(op->fd, op->msg, MSG_DONTWAIT);
                op->msg->msg_iov = NULL;
                op->msg->msg_iovlen = 0;
            } else {
                n = recvmsg(op->fd, op->msg, MSG_DONTWAIT);
            }
            break;
        case AEV_OP_SEND:
            if (op->iovcnt > 0) {
                struct msghdr m = {.msg_iov = (struct iovec *)op->iov, .msg_iovlen = (size_t)op->iovcnt};
                n = sendmsg(op->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
            } else {
                n = send(op->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            break;
        case AEV_OP_WRITEV:
            if (op->flags & AEV__OP_NOSIGPIPE) {
                struct iovec v = {.iov_base = buf, .iov_len = len};
                n = op->iovcnt > 0 ? aev__writev_nosigpipe(op->fd, op->iov, op->iovcnt)
                                   : aev__writev_nosigpipe(op->fd, &v, 1);
            } else {
                n = op->iovcnt > 0 ? writev(op->fd, op->iov, op->iovcnt) : write(op->fd, buf, len);
            }
            break;
        case AEV_OP_SENDMSG:
            n = sendmsg(op->fd, op->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
            break;
        case AEV_OP_ACCEPT:
            n = accept4(op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (n < 0 && (errno == ECONNABORTED || errno == EPROTO))
                continue; /* the peer gave up before we accepted: try the next one */
            break;
        case AEV_OP_POLL:
            return 0; /* readiness was the question: no syscall */
        case AEV_OP_CONNECT: {
            int err = 0;
            socklen_t elen = sizeof err;
            if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
                err = errno;
            return err == EINPROGRESS ? -EAGAIN : -err;
        }
        default:
            return -EINVAL;
        }
        if (n >= 0)
            return n > INT32_MAX ? INT32_MAX : (int)n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static int op_ready(aev_loop_t *loop, void *arg)
{
    aev__op_t *op = arg;
    if (AEV__UNLIKELY(!op->active)) {
        aev__io_unwatch_owned(loop, op->fd, op_direction(op), op_ready, op);
        return 0;
    }
    int fd = op->fd;
    uint32_t dir = op_direction(op);
    size_t batch = op->opcode == AEV_OP_ACCEPT && op->len > 0 ? op->len : 1;
    for (size_t i = 0; i < batch; i++) {
        int r = op->prepare ? op->prepare(op) : 0;
        if (r == 0)
            r = op_syscall(loop, op);
        if (r == -EAGAIN)
            break;
        int more = (op->flags & AEV__OP_MULTISHOT) && (r > 0 || (r == 0 && op->opcode == AEV_OP_ACCEPT));
        if (!more)
            op->active = 0;
        op->done(op, r, more ? AEV__OP_MORE : 0);
        if (!more || !op->active)
            break;
    }
    if (!op->active) /* finished and not resubmitted: give the interest back */
        aev__io_unwatch_owned(loop, fd, dir, op_ready, op);
    return 0;
}
