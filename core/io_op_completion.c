/* libaev core - completion-style operations on a completion engine (io_uring).
 *
 * An active aev__op_t gets an engine operation (aev_poll_op_t, from a free list
 * of the loop) that the engine runs natively; its completions come back from
 * wait() as AEV_POLL_EVENT_COMPLETION events. The events of one wait() are run
 * in order by one ready callback, so a completion reaches its owner at the same
 * point of the iteration as a readiness event on a selector loop.
 *
 * Receives into the lent buffer (AEV__OP_SHARED_BUF) use the engine's provided
 * buffer ring where it has one (AEV_POLL_CAP_BUFFER_RING): the kernel picks a
 * buffer, the owner sees it during done(), and it goes back to the ring right
 * after; multishot receive needs the ring. Without a ring each such receive
 * gets a buffer of its own while it is in flight, and multishot is emulated by
 * resubmitting after each completion (the same for accept without multishot).
 *
 * Cancelling an operation in flight asks the engine and answers 1: the final
 * completion (possibly with data that raced the cancel) still reaches done(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "io_op.h"
#include "loop_internal.h"

#define RING_GROUP 0
#define RING_COUNT 64u
#define RING_SIZE 16384u
#define OWN_BUF_SIZE 16384u
#define EOP_CHUNK 64
/* A multishot lent-buffer receive whose data keeps coming in big pieces leaves the ring for
 * "poll, then recv(2) into the loop's shared buffer": the kernel then writes every big
 * receive into the same hot 64 KiB instead of cycling through the ring's 1 MiB (a ring
 * receive costs no system call but, at 16 KiB a message and 50 connections, far more cache
 * misses: bench/README.md, "The proactor"). Small receives bring it back to the ring. */
#define HOT_BIG (RING_SIZE / 2)
#define HOT_BIG_STREAK 4
#define HOT_SMALL 2048
#define HOT_SMALL_STREAK 16

/* An engine operation and what the core keeps with it. */
typedef struct eop {
    aev_poll_op_t op;      /* handed to the engine; core_data is the aev__op_t (NULL: orphaned) */
    union eop_ext *ext;    /* allocated for the ops that need it (an idle receive does not) */
    void *own_buf;         /* the buffer of a lent-buffer receive without a ring */
    uint8_t multishot;     /* the engine runs it multishot */
    uint8_t cancelling;
    uint8_t in_use;
    uint8_t engine_done; /* loop close: the engine reported its final completion (quiesce) */
    uint8_t hot;         /* a lent-buffer receive runs as poll + recv(2) into the loop's buffer */
    uint8_t switching;   /* its ring receive is being cancelled to go hot */
    uint8_t streak;      /* successive receives that argue for the other way */
    struct eop *next_free;
} eop_t;

/* What a few ops need beside the engine operation, kept while they are in flight. */
union eop_ext {
    struct msghdr msg; /* SEND with several buffers */
    struct iovec iov;  /* RECVMSG into a lent buffer */
};

typedef struct aev__completion {
    eop_t *free;
    void **chunks;
    size_t nchunks;
    void *ring_base; /* the provided buffers, or NULL */
    aev_poll_event_t *batch; /* completions of the last wait(), run by run_batch */
    int batch_len, batch_cap;
    int batch_queued;
} aev__completion_t;

/* Can the core give buffers back to the engine's ring? */
static int ring_supported(aev_loop_t *loop)
{
    return loop->poll->version >= 2 && loop->poll->return_buffer != NULL;
}

static aev__completion_t *completion_state(aev_loop_t *loop)
{
    if (loop->completion)
        return loop->completion;
    aev__completion_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    const aev_poll_ops_t *ops = loop->poll;
    if ((ops->caps & AEV_POLL_CAP_BUFFER_RING) && ops->provide_buffers && ring_supported(loop)) {
        void *base = malloc((size_t)RING_COUNT * RING_SIZE);
        if (base && ops->provide_buffers(loop->backend, RING_GROUP, base, RING_SIZE, RING_COUNT) == 0)
            c->ring_base = base;
        else
            free(base);
    }
    loop->completion = c;
    return c;
}

static eop_t *eop_get(aev__completion_t *c)
{
    if (!c->free) {
        eop_t *chunk = calloc(EOP_CHUNK, sizeof *chunk);
        void **chunks = chunk ? realloc(c->chunks, (c->nchunks + 1) * sizeof *chunks) : NULL;
        if (!chunks) {
            free(chunk);
            return NULL;
        }
        c->chunks = chunks;
        c->chunks[c->nchunks++] = chunk;
        for (int i = 0; i < EOP_CHUNK; i++) {
            chunk[i].next_free = c->free;
            c->free = &chunk[i];
        }
    }
    eop_t *e = c->free;
    c->free = e->next_free;
    memset(e, 0, sizeof *e);
    e->in_use = 1;
    return e;
}

static void eop_put(aev__completion_t *c, eop_t *e)
{
    free(e->own_buf);
    e->own_buf = NULL;
    free(e->ext);
    e->ext = NULL;
    e->in_use = 0;
    e->next_free = c->free;
    c->free = e;
}

/* Fills e from op and hands it to the engine. */
static int eop_start(aev_loop_t *loop, aev__completion_t *c, aev__op_t *op, eop_t *e)
{
    aev_poll_op_t *p = &e->op;
    uint32_t caps = loop->poll->caps;
    int shared = (op->flags & AEV__OP_SHARED_BUF) != 0;
    p->opcode = op->opcode;
    p->fd = op->fd;
    p->fd_out = -1;
    p->offset = -1;
    p->core_data = op;
    switch (op->opcode) {
    case AEV_OP_RECV:
    case AEV_OP_READV:
    case AEV_OP_RECVMSG:
        if (shared && c->ring_base) {
            p->flags |= AEV_OP_F_BUFFER_SELECT;
            p->buf_group = RING_GROUP;
            p->len = RING_SIZE;
            if ((op->flags & AEV__OP_MULTISHOT) && (caps & AEV_POLL_CAP_MULTISHOT) &&
                op->opcode != AEV_OP_READV) {
                p->flags |= AEV_OP_F_MULTISHOT;
                e->multishot = 1;
            }
        } else if (shared) {
            if (!(e->own_buf = malloc(OWN_BUF_SIZE)))
                return -ENOMEM;
            p->buf = e->own_buf;
            p->len = OWN_BUF_SIZE;
        } else {
            p->buf = op->buf;
            p->len = op->len;
        }
        if (op->opcode == AEV_OP_READV) { /* read(2) at the current position */
            if (!p->buf && op->iovcnt > 0) {
                p->iov = op->iov;
                p->iovcnt = (unsigned)op->iovcnt;
            }
        }
        if (op->opcode == AEV_OP_RECVMSG) {
            /* no multishot recvmsg (its output format differs); a lent-buffer receive points
             * the owner's msghdr at the ring's buffer size or at its own buffer */
            p->flags &= ~AEV_OP_F_MULTISHOT;
            e->multishot = 0;
            p->msg = op->msg;
            if (shared) {
                if (!(e->ext = malloc(sizeof *e->ext)))
                    return -ENOMEM;
                e->ext->iov.iov_base = p->buf;
                e->ext->iov.iov_len = p->len;
                op->msg->msg_iov = &e->ext->iov;
                op->msg->msg_iovlen = 1;
            }
        }
        break;
    case AEV_OP_SEND:
        p->msg_flags = MSG_NOSIGNAL;
        if (op->iovcnt > 0) {
            if (!(e->ext = calloc(1, sizeof *e->ext)))
                return -ENOMEM;
            e->ext->msg.msg_iov = (struct iovec *)op->iov;
            e->ext->msg.msg_iovlen = (size_t)op->iovcnt;
            p->opcode = AEV_OP_SENDMSG;
            p->msg = &e->ext->msg;
        } else {
            p->buf = op->buf;
            p->len = op->len;
        }
        break;
    case AEV_OP_WRITEV:
        if (op->iovcnt > 0) {
            p->iov = op->iov;
            p->iovcnt = (unsigned)op->iovcnt;
        } else {
            p->buf = op->buf;
            p->len = op->len;
        }
        break;
    case AEV_OP_SENDMSG:
        p->msg = op->msg;
        p->msg_flags = MSG_NOSIGNAL;
        break;
    case AEV_OP_ACCEPT:
        p->sock_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
        if ((op->flags & AEV__OP_MULTISHOT) && (caps & AEV_POLL_CAP_MULTISHOT)) {
            p->flags |= AEV_OP_F_MULTISHOT;
            e->multishot = 1;
        }
        break;
    case AEV_OP_CONNECT:
        p->addr = (struct sockaddr *)op->addr;
        p->addrlen = op->addrlen;
        break;
    default:
        return -EINVAL;
    }
    return loop->poll->submit(loop->backend, p);
}

/* op ends with result (its final completion): detached from e, e back to the free list. */
static void op_end(aev__completion_t *c, aev__op_t *op, eop_t *e, int result)
{
    op->eop = NULL;
    op->active = 0;
    eop_put(c, e);
    op->done(op, result, 0);
}

/* Can this op go hot (a multishot lent-buffer stream receive on a loop with a ring)? */
static int hot_eligible(const aev__completion_t *c, const aev__op_t *op)
{
    return c->ring_base && op->opcode == AEV_OP_RECV &&
           (op->flags & (AEV__OP_SHARED_BUF | AEV__OP_MULTISHOT)) == (AEV__OP_SHARED_BUF | AEV__OP_MULTISHOT);
}

/* Re-arms e for op: a one-shot POLLIN (hot), or the ring receive again. */
static int eop_arm(aev_loop_t *loop, aev__completion_t *c, aev__op_t *op, eop_t *e, int hot)
{
    memset(&e->op, 0, sizeof e->op);
    e->hot = (uint8_t)hot;
    e->switching = 0;
    e->multishot = 0;
    e->streak = 0;
    if (!hot)
        return eop_start(loop, c, op, e);
    aev_poll_op_t *p = &e->op;
    p->opcode = AEV_OP_POLL;
    p->fd = op->fd;
    p->fd_out = -1;
    p->offset = -1;
    p->poll_events = AEV_POLL_IN;
    p->core_data = op;
    return loop->poll->submit(loop->backend, p);
}

/* op goes on with e after a done(MORE) that left it active: re-armed, else it ends with the
 * error. e is put back if the owner stopped op in done(). */
static void hot_continue(aev_loop_t *loop, aev__completion_t *c, aev__op_t *op, eop_t *e, int hot)
{
    if (!op->active || op->eop) { /* stopped in done() (cancel answered 0) */
        eop_put(c, e);
        return;
    }
    op->eop = e;
    int rc = eop_arm(loop, c, op, e, hot);
    if (rc < 0)
        op_end(c, op, e, rc);
}

/* A hot receive's POLLIN came (or an error, or the cancel of its owner). */
static void run_hot(aev_loop_t *loop, aev__completion_t *c, eop_t *e, aev__op_t *op, int result)
{
    if (e->cancelling) { /* the owner's cancel: nothing was received */
        op_end(c, op, e, -ECANCELED);
        return;
    }
    int r = result;
    if (r >= 0) {
        size_t size = 0;
        void *buf = aev__op_shared_buffer(loop, &size);
        if (!buf) {
            r = -ENOMEM;
        } else {
            ssize_t n = recv(op->fd, buf, size, MSG_DONTWAIT);
            r = n >= 0 ? (int)n : -errno;
        }
        if (r == -EAGAIN || r == -EWOULDBLOCK || r == -EINTR) { /* woken for nothing */
            op->eop = NULL;
            hot_continue(loop, c, op, e, 1);
            return;
        }
        op->data = buf;
    }
    if (r > 0) {
        uint8_t streak = r < HOT_SMALL ? (uint8_t)(e->streak + 1) : 0;
        op->eop = NULL; /* active: a cancel in done() finishes it at once */
        op->done(op, r, AEV__OP_MORE);
        int hot = streak < HOT_SMALL_STREAK;
        hot_continue(loop, c, op, e, hot);
        if (hot && op->eop == e)
            e->streak = streak;
        return;
    }
    op_end(c, op, e, r); /* the end of the stream, or an error */
}

int aev__op_completion_submit(aev_loop_t *loop, aev__op_t *op)
{
    aev__completion_t *c = completion_state(loop);
    if (!c)
        return -ENOMEM;
    if (op->prepare) {
        int rc = op->prepare(op);
        if (rc < 0)
            return rc;
    }
    eop_t *e = eop_get(c);
    if (!e)
        return -ENOMEM;
    int rc = eop_start(loop, c, op, e);
    if (rc < 0) {
        eop_put(c, e);
        return rc;
    }
    op->eop = e;
    return 0;
}

int aev__op_completion_cancel(aev_loop_t *loop, aev__op_t *op)
{
    eop_t *e = op->eop;
    if (!e)
        return 0;
    if (!e->cancelling) {
        e->cancelling = 1;
        (void)loop->poll->cancel(loop->backend, &e->op);
    }
    return 1;
}

/* Gives a provided buffer back to the ring once its owner read it. */
static void ring_recycle(aev_loop_t *loop, uint32_t id)
{
    (void)loop->poll->return_buffer(loop->backend, RING_GROUP, id);
}

/* One completion, in order. */
static void run_one(aev_loop_t *loop, aev__completion_t *c, const aev_poll_event_t *ev)
{
    eop_t *e = (eop_t *)ev->op;
    aev__op_t *op = e->op.core_data;
    int more = (ev->flags & AEV_OP_CQE_MORE) != 0;
    void *ring_buf = NULL;
    if (ev->flags & AEV_OP_CQE_BUFFER)
        ring_buf = (char *)c->ring_base + (size_t)ev->buffer_id * RING_SIZE;
    int result = ev->result;
    if (op && e->hot) {
        run_hot(loop, c, e, op, result);
        return;
    }
    if (op && e->switching && !more && !e->cancelling && op->active &&
        (result > 0 || result == -ECANCELED || result == -ENOBUFS)) {
        /* the ring receive we cancelled to go hot ended: what it brought still goes to the
         * owner, then the op goes on hot */
        op->eop = NULL;
        if (result > 0) {
            op->data = ring_buf;
            op->done(op, result, AEV__OP_MORE);
        }
        if (ring_buf)
            ring_recycle(loop, ev->buffer_id);
        hot_continue(loop, c, op, e, 1);
        return;
    }
    if (op && op->active && !e->cancelling && result == -ENOBUFS && (e->op.flags & AEV_OP_F_BUFFER_SELECT)) {
        /* the ring ran dry: a multishot receive ended; start it again (the owner never sees
         * it) once this batch gave its buffers back */
        if (!more) {
            op->eop = NULL;
            eop_put(c, e);
            op->active = 0;
            if (aev__op_completion_submit(loop, op) == 0)
                op->active = 1;
            else
                op->done(op, -ENOBUFS, 0);
        }
        return;
    }
    if (op) {
        if (op->flags & AEV__OP_SHARED_BUF)
            op->data = ring_buf ? ring_buf : e->own_buf;
        /* a multishot op that ends with a success and no cancel goes on: emulated multishot,
         * and a native one the kernel ended (it does when the CQ is full: the last shot,
         * bytes or an accepted fd, comes without F_MORE) */
        int emulated_more = !more && !e->cancelling && (op->flags & AEV__OP_MULTISHOT) &&
                            (result > 0 || (result >= 0 && op->opcode == AEV_OP_ACCEPT));
        if (!more) {
            op->eop = NULL;
            op->active = 0;
        }
        void *own = !more ? e->own_buf : NULL;
        if (!more)
            e->own_buf = NULL; /* kept until done() has read it */
        if (emulated_more)
            op->active = 1; /* resubmitted below unless done() cancels it */
        op->done(op, result, (more || emulated_more) ? AEV__OP_MORE : 0);
        if (more && op->active && op->eop == (void *)e && !e->cancelling && !e->switching &&
            hot_eligible(c, op)) {
            e->streak = result >= (int)HOT_BIG ? (uint8_t)(e->streak + 1) : 0;
            if (e->streak >= HOT_BIG_STREAK) { /* big pieces: leave the ring */
                e->switching = 1;
                (void)loop->poll->cancel(loop->backend, &e->op);
            }
        }
        if (emulated_more && op->active && !op->eop) { /* not final: op is alive */
            op->active = 0;
            int rc = aev__op_completion_submit(loop, op);
            if (rc == 0)
                op->active = 1;
            else
                op->done(op, rc, 0); /* it cannot go on: its owner hears it, as a final error */
        }
        free(own);
    }
    if (ring_buf)
        ring_recycle(loop, ev->buffer_id);
    /* after a final completion the op is not touched again (its owner may have freed it in
     * done); e was detached from it before done */
    if (!more)
        eop_put(c, e);
}

static int run_batch(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev__completion_t *c = loop->completion;
    c->batch_queued = 0;
    /* completions of a wait() that runs while this batch runs go to a fresh batch */
    int n = c->batch_len;
    aev_poll_event_t local[64];
    aev_poll_event_t *evs = n <= 64 ? local : malloc((size_t)n * sizeof *evs);
    if (!evs)
        evs = c->batch, n = c->batch_len; /* no memory: run in place */
    else
        memcpy(evs, c->batch, (size_t)n * sizeof *evs);
    c->batch_len = 0;
    for (int i = 0; i < n; i++)
        run_one(loop, c, &evs[i]);
    if (evs != local && evs != c->batch)
        free(evs);
    return 0;
}

void aev__op_completion_event(aev_loop_t *loop, const aev_poll_event_t *ev)
{
    aev__completion_t *c = completion_state(loop);
    if (!c)
        return;
    if (c->batch_len == c->batch_cap) {
        int cap = c->batch_cap ? c->batch_cap * 2 : 64;
        aev_poll_event_t *b = realloc(c->batch, (size_t)cap * sizeof *b);
        if (!b)
            return; /* cannot happen short of memory; the op stays active */
        c->batch = b;
        c->batch_cap = cap;
    }
    c->batch[c->batch_len++] = *ev;
    if (!c->batch_queued && aev__ready_push_plain(loop, run_batch, NULL) == 0)
        c->batch_queued = 1;
}

/* Is e the engine operation of an op still in flight? */
static int eop_in_flight(const eop_t *e)
{
    const aev__op_t *op = e->op.core_data;
    return e->in_use && op && op->eop == (const void *)e;
}

/* Marks what one completion of a quiesce finishes (1: the op's final one); its buffer goes
 * back to the ring. */
static int quiesce_note(aev_loop_t *loop, const aev_poll_event_t *ev)
{
    eop_t *e = (eop_t *)ev->op;
    if (ev->flags & AEV_OP_CQE_BUFFER)
        ring_recycle(loop, ev->buffer_id);
    if ((ev->flags & AEV_OP_CQE_MORE) || e->engine_done)
        return 0;
    e->engine_done = 1;
    return 1;
}

void aev__op_completion_quiesce(aev_loop_t *loop)
{
    aev__completion_t *c = loop->completion;
    if (!c)
        return;
    /* Every op in flight is cancelled in the engine, and the loop waits until the engine has
     * reported each one finished, before any owner lets go of its memory: a receive into a
     * buffered protocol's buffer, a send from a write buffer, a sock op's own buffer. Between
     * loop close and the engine's destroy the loop thread still makes system calls, and the
     * kernel may run a pending request's work at any of them. What those completions carry is
     * dropped (the loop is closing; asyncio drops it too); the owners' final done(-ECANCELED)
     * comes from aev__op_completion_close. */
    size_t pending = 0;
    for (int i = 0; i < c->batch_len; i++) /* completions of the last wait not yet run */
        if (c->batch[i].op)
            (void)quiesce_note(loop, &c->batch[i]);
    c->batch_len = 0;
    for (size_t i = 0; i < c->nchunks; i++) {
        eop_t *chunk = c->chunks[i];
        for (int j = 0; j < EOP_CHUNK; j++) {
            eop_t *e = &chunk[j];
            if (!eop_in_flight(e) || e->engine_done)
                continue;
            if (!e->cancelling) {
                e->cancelling = 1;
                (void)loop->poll->cancel(loop->backend, &e->op);
            }
            pending++;
        }
    }
    aev_poll_event_t evs[64];
    for (int rounds = 0; pending > 0 && rounds < 200; rounds++) {
        int n = loop->poll->wait(loop->backend, 5000000, evs, 64);
        if (n < 0)
            break; /* cannot wait here (a defer_taskrun loop closed from another thread) */
        for (int k = 0; k < n; k++)
            if (evs[k].kind == AEV_POLL_EVENT_COMPLETION && evs[k].op && quiesce_note(loop, &evs[k]))
                pending--;
    }
}

void aev__op_completion_close(aev_loop_t *loop)
{
    aev__completion_t *c = loop->completion;
    if (!c)
        return;
    /* no completion comes any more: every op still in flight ends now, cancelled, so that its
     * owner can let go; the engine operations stay until the engine is gone */
    for (size_t i = 0; i < c->nchunks; i++) {
        eop_t *chunk = c->chunks[i];
        for (int j = 0; j < EOP_CHUNK; j++) {
            eop_t *e = &chunk[j];
            if (!eop_in_flight(e))
                continue;
            aev__op_t *op = e->op.core_data;
            e->op.core_data = NULL;
            op->eop = NULL;
            op->active = 0;
            op->done(op, -ECANCELED, 0);
        }
    }
    c->batch_len = 0;
}

void aev__op_completion_free(aev_loop_t *loop)
{
    aev__completion_t *c = loop->completion;
    if (!c)
        return;
    for (size_t i = 0; i < c->nchunks; i++) {
        eop_t *chunk = c->chunks[i];
        for (int j = 0; j < EOP_CHUNK; j++) {
            free(chunk[j].own_buf);
            free(chunk[j].ext);
        }
        free(chunk);
    }
    free(c->chunks);
    free(c->ring_base); /* the engine that used it is gone */
    free(c->batch);
    free(c);
    loop->completion = NULL;
}
