/* libaev core - completion-style I/O operations (DESIGN "I/O").
 *
 * Transports (stream, datagram, pipe) and servers are written once against
 * these operations: "receive into a buffer and tell me", "send these bytes and
 * tell me how much went", "accept", "connect". On a completion engine
 * (AEV_POLL_CAP_COMPLETION) an operation becomes an aev_poll_op_t handed to the
 * engine; on a readiness engine the core runs it itself (io_op.c): it keeps
 * level interest in the fd while the operation is active and makes the syscall
 * when the engine reports readiness, so no syscall is spent that a hand-written
 * epoll loop would not spend.
 *
 * Contract for the owner of an operation (the same on both engine kinds):
 *  - Fill the fields, then aev__op_submit(). The op is active from then until its
 *    final completion: a call of done() without AEV__OP_MORE, or a cancel that
 *    returned 0.
 *  - done(op, result, flags) runs on the loop thread, from the loop's dispatch
 *    (never from inside submit or cancel). result: bytes moved, the new fd
 *    (accept), 0, or a negative errno. AEV__OP_MORE: a multishot op stays active
 *    and completes again.
 *  - With AEV__OP_SHARED_BUF a receive lands in a buffer the loop lends for the
 *    call only (the loop's shared read buffer, or an engine's provided buffer):
 *    op->data points at the bytes during done() and not after.
 *  - prepare (optional) is called right before the syscall (readiness) or at
 *    submit (completion) to point buf/len or iov at the current bytes (a write
 *    buffer may therefore move between submit and the syscall on a readiness
 *    engine; a buffered protocol's get_buffer is asked then). A negative return
 *    completes the op with that error.
 *  - done() may resubmit the op (the readiness engine then keeps its interest:
 *    no epoll_ctl) or cancel it; the op's memory must stay valid until done()
 *    has returned, except that the done() of a final completion that follows a
 *    cancel answered with 1 may free it (nothing touches the op after that).
 *  - aev__op_cancel() returns 0 when the op is finished now (no completion will
 *    come), 1 when a final completion (often -ECANCELED) is still to come.
 *
 * AEV_OP_POLL moves no bytes: it completes (result 0) once the fd is readable or
 * reports an error or hang-up, as the engines' POLLIN|POLLERR|POLLHUP (io_uring:
 * IORING_OP_POLL_ADD). Pipe transports use it where asyncio keeps a reader on
 * a write pipe to learn that the other end went away.
 */
#ifndef AEV_IO_OP_H
#define AEV_IO_OP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "aev/plugin.h"

typedef struct aev__op aev__op_t;

/* completion flags */
#define AEV__OP_MORE 0x01u /* multishot: more completions follow */

/* submit flags (op->flags) */
#define AEV__OP_MULTISHOT 0x01u  /* RECV/READV/RECVMSG/ACCEPT: complete until cancelled or error */
#define AEV__OP_SHARED_BUF 0x02u /* RECV/READV/RECVMSG: receive into a buffer the loop lends */
/* The owner keeps the completion contract in full (cancel may answer 1, its buffers stay put
 * while the op is in flight): on a loop with native_ops the op runs on the engine's
 * completion half; without this flag it runs on the readiness half of any engine. */
#define AEV__OP_COMPLETION_OK 0x80u
#define AEV__OP_NOSIGPIPE 0x04u  /* WRITEV: a reader gone is -EPIPE, never SIGPIPE (pipes have
                                    no MSG_NOSIGNAL; see aev__writev_nosigpipe) */

typedef void (*aev__op_done_fn)(aev__op_t *op, int result, unsigned flags);
/* 0, or a negative errno that completes the op with that error instead of a syscall. */
typedef int (*aev__op_prepare_fn)(aev__op_t *op);

struct aev__op {
    aev__op_done_fn done;
    aev__op_prepare_fn prepare; /* may be NULL */
    union {
        struct {
            void *buf;  /* RECV/SEND/READV/WRITEV: the bytes (READV/WRITEV: when iovcnt is 0) */
            size_t len; /* ACCEPT: connections accepted per readiness event at most */
        };
        void *data; /* during done(): where a SHARED_BUF receive put the bytes (aliases buf) */
        struct {    /* CONNECT finished at once: its result, delivered by the soon callback */
            aev_handle_t *soon;
            int soon_result;
        };
    };
    union {
        struct {
            const struct iovec *iov; /* READV/WRITEV, and SEND when iovcnt > 0 (sendmsg) */
            int iovcnt;
        };
        struct msghdr *msg; /* RECVMSG/SENDMSG */
        struct {            /* CONNECT */
            const struct sockaddr *addr;
            socklen_t addrlen;
        };
    };
    int fd;
    uint8_t opcode; /* AEV_OP_RECV, _SEND, _READV, _WRITEV, _RECVMSG, _SENDMSG, _ACCEPT, _CONNECT,
                       _POLL */
    uint8_t flags;  /* AEV__OP_* submit flags */
    uint8_t active; /* submitted, final completion not yet delivered */
    void *eop;      /* completion engines: the engine operation in flight (io_op_completion.c) */
};

/* io_op_completion.c: the same on a completion engine (called by io_op.c and the loop) */
int aev__op_completion_submit(aev_loop_t *loop, aev__op_t *op);
int aev__op_completion_cancel(aev_loop_t *loop, aev__op_t *op);
void aev__op_completion_event(aev_loop_t *loop, const aev_poll_event_t *ev);
/* loop close, first: every op in flight is cancelled in the engine and waited for (its
 * completions dropped), so that no kernel work touches memory its owner frees while closing */
void aev__op_completion_quiesce(aev_loop_t *loop);
/* loop close: ops in flight get a final done(-ECANCELED) now (before the engine goes) */
void aev__op_completion_close(aev_loop_t *loop);
/* after the engine was destroyed: the engine operations and buffers are freed */
void aev__op_completion_free(aev_loop_t *loop);
/* Can loop's engine run operations natively (a completion engine)? */
#define AEV__OP_NATIVE(loop) (((loop)->poll->caps & AEV_POLL_CAP_COMPLETION) && (loop)->poll->submit)

/* Starts op on loop's engine. 0, or a negative errno (nothing started, done never called;
 * -EBUSY if op is already active, AEV_EINVALID_STATE + detail if the fd already has another
 * reader/writer). */
int aev__op_submit(aev_loop_t *loop, aev__op_t *op);

/* Stops op: 0 when it is finished now (done will not be called), 1 when its final completion
 * is still to come. Not active: 0. */
int aev__op_cancel(aev_loop_t *loop, aev__op_t *op);

/* For an owner that holds itself (a reference) while the final completion of a cancelled op
 * is still to come, one bit of *held per op: stops op, and answers 1 when the owner must take
 * that reference now (a final completion is due and none was taken for op yet). */
static inline int aev__op_stop_held(aev_loop_t *loop, aev__op_t *op, uint8_t *held, uint8_t bit)
{
    if (aev__op_cancel(loop, op) != 1 || (*held & bit))
        return 0;
    *held |= bit;
    return 1;
}

/* op's final completion came: 1 if a cancel held its owner for it (the owner gives the
 * reference back as the last act of that done(): it may free the op). */
static inline int aev__op_final_held(uint8_t *held, uint8_t bit)
{
    if (!(*held & bit))
        return 0;
    *held &= (uint8_t)~bit;
    return 1;
}

/* Is op active (submitted and not finished)? */
static inline int aev__op_active(const aev__op_t *op)
{
    return op->active;
}

/* writev(2) for a pipe whose reader may be gone: -1/EPIPE as usual, but no SIGPIPE reaches
 * the process (SIGPIPE is blocked in the calling thread around the call, and the one the call
 * raised is taken back), as MSG_NOSIGNAL does for sockets. */
ssize_t aev__writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt);

/* The loop's shared read buffer (64 KiB, allocated on first use), or NULL. */
void *aev__op_shared_buffer(aev_loop_t *loop, size_t *size);
#define AEV__OP_SHARED_SIZE 65536u

#endif /* AEV_IO_OP_H */
