/* libaev core - pipe transports (asyncio's _UnixReadPipeTransport and
 * _UnixWritePipeTransport): loop.connect_read_pipe and loop.connect_write_pipe.
 *
 * A pipe transport is an aev_transport_t of another kind (stream_internal.h),
 * so the protocol and transport API is the streams' one and stream.c does the
 * reading, the write buffer with its marks, closing and connection_lost. What
 * differs lives here:
 *  - which fds are accepted: FIFOs (pipes), sockets and character devices, as
 *    asyncio; a regular file is refused. The fd is made non-blocking.
 *  - the operations: read(2) (AEV_OP_READV) for a read pipe, write(2)
 *    (AEV_OP_WRITEV, without SIGPIPE) for a write pipe, so that FIFOs and
 *    character devices work; a socket used as a write pipe keeps sendmsg. On a
 *    proactor loop a FIFO's waited writes run as native io_uring writes while the
 *    process ignores SIGPIPE, else on the readiness half (aev__pipe_write_route).
 *  - EOF on a read pipe: eof_received (its answer does not matter: a read pipe
 *    cannot stay half open), then connection_lost(0).
 *  - a write pipe learns that the reader went away as asyncio does, by watching
 *    the write end of a FIFO or socket for readability (an AEV_OP_POLL in rop,
 *    which a write pipe does not need for reading): Linux reports POLLERR on a
 *    pipe's write end once the last reader closed, and a socket turns readable
 *    at the peer's EOF. The transport then closes at once, as asyncio's _close():
 *    connection_lost(0) with nothing buffered, connection_lost(-EPIPE) with data
 *    left. A write that meets the closed end fails with EPIPE and ends the
 *    transport with connection_lost(-EPIPE) too.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream_internal.h"

#define T_OF(op, member) ((aev_transport_t *)((char *)(op) - offsetof(aev_transport_t, member)))

/* ---- read pipes ---------------------------------------------------------------------- */

void aev__pipe_read_eof(aev_transport_t *t)
{
    /* as asyncio's _read_ready at EOF: closing first, then eof_received, then connection_lost;
     * what eof_received returns is not looked at */
    t->closing = 1;
    aev__stream_op_stop(t, &t->rop);
    if (t->proto && t->proto->eof_received) {
        int rc = t->proto->eof_received(t->proto);
        if (rc < 0) { /* reported as asyncio reports a raising callback; the pipe ends normally */
            aev_exception_context_t ctx = {.message = "eof_received raised", .error = rc,
                                           .protocol = t->proto, .transport = t};
            aev_loop_call_exception_handler(t->loop, &ctx);
        }
    }
    aev__stream_lost_soon(t);
}

/* ---- write pipes --------------------------------------------------------------------- */

/* Does the process ignore SIGPIPE (SIG_IGN)? One rt_sigaction(2) that changes nothing. */
static int sigpipe_ignored(void)
{
    struct sigaction sa;
    return sigaction(SIGPIPE, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_IGN;
}

void aev__pipe_write_route(aev_transport_t *t)
{
    /* FIFOs only: a character device's driver may not wait natively for room (io_uring
     * hands some of them to a worker thread or answers EAGAIN); a socket sends with
     * MSG_NOSIGNAL and runs natively anyway (stream.c) */
    if (t->kind != AEV__TRANSPORT_WRITE_PIPE || !t->write_writev || !t->w ||
        t->rop.opcode != AEV_OP_POLL || aev__op_active(&t->w->wop) || !t->loop->native_ops)
        return;
    /* io_uring's write(2) has no MSG_NOSIGNAL: a reader gone raises SIGPIPE in the loop
     * thread (the kernel's pipe_write signals the task that runs the write, here the loop
     * thread in io_uring_enter or its task work), which kills a process that did not ignore
     * it. So natively only while SIGPIPE is ignored; otherwise the readiness half writes
     * with the signal blocked and taken back (aev__writev_nosigpipe). */
    if (sigpipe_ignored())
        t->w->wop.flags |= AEV__OP_COMPLETION_OK;
    else
        t->w->wop.flags &= (uint8_t)~AEV__OP_COMPLETION_OK;
}

/* The write end became readable: the reader is gone (or, on a socket, the peer sent data or
 * EOF, which a write pipe takes for the same, as asyncio). */
static void pipe_peer_done(aev__op_t *op, int result, unsigned flags)
{
    (void)flags;
    aev_transport_t *t = T_OF(op, rop);
    if (t->lost || t->closing || result == -ECANCELED)
        return;
    if (t->loop->debug)
        aev_log(AEV_LOG_INFO, "aev", "write pipe transport (fd %d) was closed by peer", t->fd);
    aev__stream_force_close(t, aev__stream_write_pending(t) ? -EPIPE : 0);
}

void aev__pipe_made(aev_transport_t *t)
{
    if (t->rop.opcode != AEV_OP_POLL || t->closing || t->lost || t->fd < 0 || aev__op_active(&t->rop))
        return;
    int rc = aev__op_submit(t->loop, &t->rop);
    if (rc < 0) {
        aev_exception_context_t ctx = {.message = "could not watch the write pipe for its reader going away",
                                       .error = rc, .protocol = t->proto, .transport = t};
        aev_loop_call_exception_handler(t->loop, &ctx);
        aev__stream_force_close(t, rc);
    }
}

/* ---- connecting ---------------------------------------------------------------------------- */

static int pipe_connect(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, int fd,
                        int kind, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out)
        return -EINVAL;
    if (fd < 0) {
        aev__set_detail("invalid file descriptor %d", fd);
        return -EBADF;
    }
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        aev__set_detail("fstat(%d): %s", fd, strerror(-rc));
        return rc;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) && !S_ISCHR(st.st_mode)) {
        /* asyncio's words (ValueError) for each kind; both accept character devices */
        aev__set_detail("%s (fd %d is %s)",
                        kind == AEV__TRANSPORT_READ_PIPE ? "Pipe transport is for pipes/sockets only."
                                                         : "Pipe transport is only for pipes, sockets and character devices",
                        fd, S_ISREG(st.st_mode) ? "a regular file" : S_ISDIR(st.st_mode) ? "a directory"
                                                                                          : "of another type");
        return -EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
        rc = -errno;
        aev__set_detail("could not make fd %d non-blocking: %s", fd, strerror(-rc));
        return rc;
    }
    aev_transport_t *t = NULL;
    rc = aev_loop_create_future(loop, out);
    if (rc == 0)
        rc = aev__stream_new(loop, fd, factory, userdata, NULL, &t);
    if (rc < 0) { /* fd stays the caller's, as it was */
        if (!(fl & O_NONBLOCK))
            (void)fcntl(fd, F_SETFL, fl);
        aev_future_unref(*out);
        *out = NULL;
        return rc;
    }
    t->kind = (uint8_t)kind;
    if (kind == AEV__TRANSPORT_READ_PIPE) {
        t->rop.opcode = AEV_OP_READV; /* read(2): any readable fd */
    } else {
        t->reading = 0;
        t->rop.opcode = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ? AEV_OP_POLL : AEV_OP_NOP;
        t->rop.done = pipe_peer_done;
        t->rop.flags = 0;
        /* a socket keeps send(2) with MSG_NOSIGNAL; anything else writes with write(2),
         * on the readiness half unless aev__pipe_write_route picks the native one (the write
         * side is made when a write first waits: stream.c) */
        t->write_writev = !S_ISSOCK(st.st_mode);
    }
    /* done once connection_made ran, as asyncio returns only then */
    t->made_waiter = aev_future_ref(*out);
    return 0;
}

int aev_loop_connect_read_pipe(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, int fd,
                               aev_future_t **out)
{
    return pipe_connect(loop, factory, userdata, fd, AEV__TRANSPORT_READ_PIPE, out);
}

int aev_loop_connect_write_pipe(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, int fd,
                                aev_future_t **out)
{
    return pipe_connect(loop, factory, userdata, fd, AEV__TRANSPORT_WRITE_PIPE, out);
}

int aev_transport_get_pipe(const aev_transport_t *t)
{
    return t && t->kind != AEV__TRANSPORT_STREAM ? t->fd : -1;
}
