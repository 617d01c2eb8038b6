/* libaev core - datagram endpoints (asyncio's create_datagram_endpoint and
 * _SelectorDatagramTransport): UDP over IPv4/IPv6 and Unix datagram sockets.
 *
 * I/O goes through the completion-style operations of io_op.h (DESIGN "I/O"):
 * while the transport reads, one multishot AEV_OP_RECVMSG is active, receiving
 * each datagram and its sender's address into the buffer the loop lends; a
 * datagram is sent at once with sendto(2) when nothing is buffered, and only
 * when the socket would block is it copied into the write buffer (a queue of
 * whole datagrams), with one AEV_OP_SENDMSG active until the queue is empty.
 *
 * On a proactor loop (native ops) the receive runs on the engine into a 64 KiB
 * buffer of the transport's own, and a UDP endpoint's every datagram goes
 * through the queue as a native SENDMSG (native_send). A cancelled native op
 * still completes later: the transport is held until then, the datagram a send
 * reads stays pinned (wpinned), and a datagram that raced pause_reading is
 * stashed and delivered on resume_reading, in order.
 *
 * As asyncio's datagram transport: errors of receives and sends go to the
 * protocol's error_received and the endpoint stays open; close() lets the
 * buffered datagrams go first, abort() drops them; connection_lost comes once. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "aev/dns.h"
#include "aev/transport.h"
#include "io_op.h"
#include "loop_internal.h"
#include "stream_internal.h" /* aev__unix_address, aev__write_limits_resolve */
#include "task_internal.h"

#define DGRAM_HIGH_DEFAULT (64u * 1024u)
#define DGRAM_HEADER 8u /* counted per buffered datagram, as asyncio 3.13 does */

#define DGRAM_RBUF_SIZE 65536u /* a native receive's own buffer: any UDP datagram fits */

/* One datagram waiting in the write buffer. */
typedef struct dgram_out {
    struct dgram_out *next;
    size_t len;
    socklen_t addrlen; /* 0: the connected peer */
    struct sockaddr_storage addr;
    unsigned char data[];
} dgram_out_t;

/* A datagram (or a receive error) that a native receive brought after pause_reading, before
 * its cancel took effect: delivered on resume_reading, in order. */
typedef struct dgram_in {
    struct dgram_in *next;
    int error; /* < 0: error_received(error), no datagram */
    size_t len;
    socklen_t addrlen;
    struct sockaddr_storage addr;
    unsigned char data[];
} dgram_in_t;


struct aev_datagram_transport {
    aev_loop_t *loop;
    uint32_t refs; /* the loop's until connection_lost has run, the users' */
    int fd;        /* -1 once closed */
    aev_datagram_protocol_factory_fn factory;
    void *factory_data;
    aev_datagram_protocol_t *proto; /* NULL until connection_made */
    struct aev_datagram_transport *prev, *next; /* the loop's open datagram transports */
    uint8_t reading;        /* not paused */
    uint8_t closing;        /* close() or abort() was called, or a fatal error */
    uint8_t made_pending;   /* connection_made is queued (holds a reference) */
    uint8_t made;           /* connection_made ran */
    uint8_t lost;           /* connection_lost is queued or ran */
    uint8_t writing_paused; /* pause_writing was called, resume_writing not yet */
    uint8_t connected;      /* the socket is connect()ed to remote */
    uint8_t held;           /* AEV__HELD_*: a cancelled op whose final completion is still to come
                               holds a reference (native ops) */
    int conn_error;         /* what connection_lost will say */
    aev_future_t *made_waiter;
    struct sockaddr_storage remote; /* the default destination (remote_addr), if remote_len */
    socklen_t remote_len;
    dgram_out_t *head, *tail; /* the write buffer */
    size_t wsize;             /* its size as get_write_buffer_size tells it */
    size_t high, low;         /* write-buffer marks */
    aev__op_t rop;            /* the receive (multishot while reading) */
    aev__op_t wop;            /* the send of the first buffered datagram */
    struct msghdr rmsg, wmsg;
    struct sockaddr_storage from; /* the sender of the datagram being received */
    struct iovec riov, wiov;
    void *rbuf;               /* native receives land here (DGRAM_RBUF_SIZE), or NULL */
    dgram_out_t *wpinned;     /* the datagram a native send in flight reads (the head, or one
                                 the queue dropped meanwhile: freed by the send's completion) */
    dgram_in_t *stash_head, *stash_tail; /* received after pause_reading (native ops) */
    aev_handle_t *unstash;    /* the queued delivery of the stash, or NULL */
};

typedef aev_datagram_transport_t dgram_t;

#define D_OF(op, member) ((dgram_t *)((char *)(op) - offsetof(dgram_t, member)))

static void dgram_read_done(aev__op_t *op, int result, unsigned flags);
static int dgram_read_prepare(aev__op_t *op);
static void dgram_write_done(aev__op_t *op, int result, unsigned flags);
static int dgram_write_prepare(aev__op_t *op);
static void dgram_force_close(dgram_t *t, int error);

/* ---- lifetime ------------------------------------------------------------------ */

/* Drops the write buffer; a datagram a native send still reads stays until it completes. */
static void queue_free(dgram_t *t)
{
    dgram_out_t *d = t->head;
    while (d) {
        dgram_out_t *n = d->next;
        if (d != t->wpinned)
            free(d);
        d = n;
    }
    t->head = t->tail = NULL;
    t->wsize = 0;
}

static void stash_free(dgram_t *t)
{
    dgram_in_t *d = t->stash_head;
    while (d) {
        dgram_in_t *n = d->next;
        free(d);
        d = n;
    }
    t->stash_head = t->stash_tail = NULL;
}

aev_datagram_transport_t *aev_datagram_transport_ref(aev_datagram_transport_t *t)
{
    if (t)
        t->refs++;
    return t;
}

void aev_datagram_transport_unref(aev_datagram_transport_t *t)
{
    if (!t || --t->refs > 0)
        return;
    aev_loop_t *loop = t->loop;
    queue_free(t);
    stash_free(t);
    free(t->rbuf);
    free(t);
    loop->live_futures--; /* transports count as live objects of the loop */
    aev__loop_object_released(loop);
}

aev_loop_t *aev_datagram_transport_get_loop(const aev_datagram_transport_t *t)
{
    return t ? t->loop : NULL;
}

static void list_unlink(dgram_t *t)
{
    aev_loop_t *loop = t->loop;
    if (t->prev)
        t->prev->next = t->next;
    else if (loop->datagrams == t)
        loop->datagrams = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* Stops one of t's operations. A readiness engine stops it at once; a native one may still
 * complete, reading or writing the transport's buffers until then, so the transport holds a
 * reference until that final completion (op_final). */
static void op_stop(dgram_t *t, aev__op_t *op)
{
    if (aev__op_stop_held(t->loop, op, &t->held, op == &t->rop ? AEV__HELD_READ : AEV__HELD_WRITE))
        t->refs++;
}

/* The final completion of op came: 1 if a cancel held t for it (the caller drops that
 * reference as its last act). */
static int op_final(dgram_t *t, aev__op_t *op)
{
    return aev__op_final_held(&t->held, op == &t->rop ? AEV__HELD_READ : AEV__HELD_WRITE);
}

static void ops_cancel(dgram_t *t)
{
    op_stop(t, &t->rop);
    op_stop(t, &t->wop);
}

/* Reports an error to the exception handler, with the socket in the context. */
static void report(dgram_t *t, const char *what, int rc)
{
    aev_exception_context_t ctx = {.message = what, .error = rc, .has_socket = t->fd >= 0, .socket = t->fd};
    aev_loop_call_exception_handler(t->loop, &ctx);
}

/* The last act: connection_lost, the fd closed, the loop's reference dropped. */
static int call_connection_lost(aev_loop_t *loop, void *arg)
{
    (void)loop;
    dgram_t *t = arg;
    if (t->fd >= 0) {
        ops_cancel(t);
        close(t->fd);
        t->fd = -1;
    }
    queue_free(t);
    stash_free(t);
    if (t->unstash) {
        aev_handle_cancel(t->unstash);
        aev_handle_unref(t->unstash);
        t->unstash = NULL;
    }
    if (t->made && t->proto && t->proto->connection_lost) {
        int rc = t->proto->connection_lost(t->proto, t->conn_error);
        if (rc < 0)
            report(t, "connection_lost raised", rc);
    }
    t->proto = NULL;
    list_unlink(t);
    aev_datagram_transport_unref(t); /* the loop's */
    return 0;
}

static void schedule_connection_lost(dgram_t *t)
{
    if (t->lost)
        return;
    t->lost = 1;
    if (aev_loop_call_soon(t->loop, call_connection_lost, t, NULL) < 0)
        call_connection_lost(t->loop, t); /* closed loop or no memory: now */
}

/* Closes at once (abort, fatal errors): buffer dropped, connection_lost(error) queued. */
static void dgram_force_close(dgram_t *t, int error)
{
    if (t->lost)
        return;
    if (t->fd >= 0)
        ops_cancel(t);
    t->closing = 1;
    t->reading = 0;
    queue_free(t);
    if (!t->conn_error)
        t->conn_error = error;
    schedule_connection_lost(t);
}

/* An error of the loop's own (not of the network): reported, then the transport ends. */
static void fatal(dgram_t *t, const char *what, int err)
{
    report(t, what, err);
    dgram_force_close(t, err);
}

/* A protocol callback's result: a negative one is reported; the transport stays open (as
 * asyncio's datagram transport, whose callbacks' exceptions reach the loop's handler). */
static void check_raised(dgram_t *t, const char *what, int rc)
{
    if (rc < 0)
        report(t, what, rc);
}

/* A send or receive failed: the protocol hears of it (error_received), as asyncio. */
static void error_received(dgram_t *t, int err)
{
    if (t->made && t->proto && t->proto->error_received)
        check_raised(t, "error_received raised", t->proto->error_received(t->proto, err));
}

/* ---- creating ------------------------------------------------------------------------- */

static void transport_value_release(void *value)
{
    aev_datagram_transport_unref(value);
}

/* connection_made ran (rc 0) or the endpoint ended before (rc < 0): tell the waiter. */
static void made_waiter_finish(dgram_t *t, int rc)
{
    aev_future_t *w = t->made_waiter;
    if (!w)
        return;
    t->made_waiter = NULL;
    if (!aev_future_done(w)) {
        if (rc == 0)
            aev_future_set_result(w, aev_datagram_transport_ref(t), transport_value_release);
        else
            aev_future_set_error(w, rc == AEV_ECANCELLED ? -ECONNABORTED : rc,
                                 "the endpoint ended before connection_made");
    }
    aev_future_unref(w);
}

static void start_reading(dgram_t *t)
{
    if (t->fd < 0 || !t->reading || t->closing || aev__op_active(&t->rop))
        return;
    if (t->loop->native_ops) {
        /* natively each receive has a buffer of the transport's own: the engine's ring
         * buffers (16 KiB) would cut bigger datagrams, and a cut datagram is gone */
        if (!t->rbuf && !(t->rbuf = malloc(DGRAM_RBUF_SIZE))) {
            fatal(t, "no memory for the datagram receive buffer", -ENOMEM);
            return;
        }
        t->rop.flags = AEV__OP_MULTISHOT | AEV__OP_COMPLETION_OK;
        t->rop.buf = t->rbuf;
        t->rop.len = DGRAM_RBUF_SIZE;
    } else { /* the loop's shared 64 KiB buffer, lent for each receive */
        t->rop.flags = AEV__OP_MULTISHOT | AEV__OP_SHARED_BUF;
    }
    int rc = aev__op_submit(t->loop, &t->rop);
    if (rc < 0)
        fatal(t, "could not watch the datagram socket for reading", rc);
}

static void start_writing(dgram_t *t)
{
    if (t->fd < 0 || !t->head || aev__op_active(&t->wop))
        return;
    int rc = aev__op_submit(t->loop, &t->wop);
    if (rc < 0)
        fatal(t, "could not watch the datagram socket for writing", rc);
}

static int call_connection_made(aev_loop_t *loop, void *arg)
{
    (void)loop;
    dgram_t *t = arg;
    t->made_pending = 0;
    if (t->lost) { /* aborted before it was even made: no protocol was made either */
        made_waiter_finish(t, t->conn_error ? t->conn_error : -ECONNABORTED);
        aev_datagram_transport_unref(t);
        return 0;
    }
    t->proto = t->factory(t->factory_data);
    if (!t->proto) {
        report(t, "the protocol factory returned no protocol", -ENOMEM);
        dgram_force_close(t, -ENOMEM);
        made_waiter_finish(t, -ENOMEM);
        aev_datagram_transport_unref(t);
        return 0;
    }
    t->made = 1;
    int rc = t->proto->connection_made ? t->proto->connection_made(t->proto, t) : 0;
    if (rc < 0) {
        report(t, "connection_made raised", rc);
        dgram_force_close(t, rc);
    } else if (!t->closing) {
        start_reading(t);
        start_writing(t);
    }
    made_waiter_finish(t, rc < 0 ? rc : 0);
    aev_datagram_transport_unref(t); /* the scheduled call's */
    return 0;
}

/* A transport over fd (owned from now on, also on failure). remote: the default destination
 * (connected says whether fd is connect()ed to it); without one, a connected fd's peer. */
static int dgram_new(aev_loop_t *loop, int fd, aev_datagram_protocol_factory_fn factory, void *factory_data,
                     const struct sockaddr *remote, socklen_t remote_len, int connected, dgram_t **out)
{
    dgram_t *t = calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        return -ENOMEM;
    }
    t->loop = loop;
    t->refs = 2; /* the loop's, and the scheduled connection_made's */
    t->fd = fd;
    t->factory = factory;
    t->factory_data = factory_data;
    t->reading = 1;
    t->high = DGRAM_HIGH_DEFAULT;
    t->low = DGRAM_HIGH_DEFAULT / 4;
    if (remote && remote_len > 0 && remote_len <= sizeof t->remote) {
        memcpy(&t->remote, remote, remote_len);
        t->remote_len = remote_len;
        t->connected = connected ? 1 : 0;
    } else {
        socklen_t len = sizeof t->remote;
        if (getpeername(fd, (struct sockaddr *)&t->remote, &len) == 0 && len > 0) {
            t->remote_len = len;
            t->connected = 1;
        }
    }
    t->rop.fd = t->wop.fd = fd;
    t->rop.opcode = AEV_OP_RECVMSG;
    t->rop.flags = AEV__OP_MULTISHOT | AEV__OP_SHARED_BUF; /* set again by start_reading */
    t->rop.msg = &t->rmsg;
    t->rop.prepare = dgram_read_prepare;
    t->rop.done = dgram_read_done;
    t->wop.opcode = AEV_OP_SENDMSG;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX)
        t->wop.flags = AEV__OP_COMPLETION_OK; /* see native_send */
    t->wop.msg = &t->wmsg;
    t->wop.prepare = dgram_write_prepare;
    t->wop.done = dgram_write_done;
    int rc = aev_loop_call_soon(loop, call_connection_made, t, NULL);
    if (rc < 0) {
        close(fd);
        free(t);
        return rc;
    }
    t->made_pending = 1;
    loop->live_futures++;
    t->next = loop->datagrams;
    if (loop->datagrams)
        loop->datagrams->prev = t;
    loop->datagrams = t;
    *out = t;
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* Before each receive: room for the sender's address; a native receive points the data at
 * the transport's own buffer (on a readiness engine the op layer points it at the buffer the
 * loop lends). */
static int dgram_read_prepare(aev__op_t *op)
{
    dgram_t *t = D_OF(op, rop);
    t->rmsg.msg_name = &t->from;
    t->rmsg.msg_namelen = sizeof t->from;
    t->rmsg.msg_control = NULL;
    t->rmsg.msg_controllen = 0;
    t->rmsg.msg_flags = 0;
    if (!(op->flags & AEV__OP_SHARED_BUF)) {
        t->riov.iov_base = t->rbuf;
        t->riov.iov_len = DGRAM_RBUF_SIZE;
        t->rmsg.msg_iov = &t->riov;
        t->rmsg.msg_iovlen = 1;
    }
    return 0;
}

/* The sender of the datagram just received, or NULL (an unnamed Unix socket, an unbound
 * sender, has no address to give). */
static const struct sockaddr *received_from(dgram_t *t, socklen_t *alen)
{
    *alen = t->rmsg.msg_namelen;
    if (*alen > sizeof t->from || *alen <= (socklen_t)sizeof(sa_family_t)) {
        *alen = 0;
        return NULL;
    }
    return (const struct sockaddr *)&t->from;
}

/* One datagram, or a receive error, for the protocol. 0, or -1 if the transport ended (a
 * fatal error). */
static int deliver(dgram_t *t, int result, const void *data, const struct sockaddr *from, socklen_t alen)
{
    if (AEV__LIKELY(result >= 0)) {
        aev_datagram_protocol_t *p = t->proto;
        if (p->datagram_received)
            check_raised(t, "datagram_received raised", p->datagram_received(p, data, (size_t)result, from, alen));
    } else if (result == -ENOMEM || result == -EBADF || result == -ENOTSOCK || result == -EFAULT) {
        /* the loop's own trouble, or a socket gone under it: receiving again would fail again */
        fatal(t, "fatal read error on datagram transport", result);
        return -1;
    } else if (result != -ECANCELED) {
        error_received(t, result); /* -ECONNREFUSED and the like: the endpoint stays open */
    }
    return 0;
}

/* Keeps what a receive brought after pause_reading (native ops: its cancel was on its way).
 * 0, or -ENOMEM. */
static int stash_add(dgram_t *t, int result, const void *data)
{
    if (result == -ECANCELED)
        return 0;
    size_t len = result > 0 ? (size_t)result : 0;
    dgram_in_t *d = malloc(sizeof *d + len);
    if (!d)
        return -ENOMEM;
    d->next = NULL;
    d->error = result < 0 ? result : 0;
    d->len = len;
    const struct sockaddr *from = received_from(t, &d->addrlen);
    if (from)
        memcpy(&d->addr, from, d->addrlen);
    if (len)
        memcpy(d->data, data, len);
    if (t->stash_tail)
        t->stash_tail->next = d;
    else
        t->stash_head = d;
    t->stash_tail = d;
    return 0;
}

/* resume_reading with a stash: its datagrams go first, from a callback of their own (the
 * next receive's completion can only come after it), until the protocol pauses again. */
static int unstash_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    dgram_t *t = arg;
    aev_handle_unref(t->unstash);
    t->unstash = NULL;
    while (t->stash_head && t->reading && !t->closing && !t->lost) {
        dgram_in_t *d = t->stash_head;
        t->stash_head = d->next;
        if (!t->stash_head)
            t->stash_tail = NULL;
        int rc = deliver(t, d->error < 0 ? d->error : (int)d->len, d->data,
                         d->addrlen ? (const struct sockaddr *)&d->addr : NULL, d->addrlen);
        free(d);
        if (rc < 0)
            break;
    }
    return 0;
}

/* Queues unstash_cb while the transport reads and has a stash. */
static void unstash_soon(dgram_t *t)
{
    if (t->stash_head && t->reading && !t->unstash &&
        aev_loop_call_soon(t->loop, unstash_cb, t, &t->unstash) < 0)
        t->unstash = NULL;
}

/* What a receive brought, for a reading transport: to the protocol, or behind the stash while
 * that waits for its delivery (order is kept). 0, or -1 if the transport ended. */
static int take(dgram_t *t, int result, const void *data)
{
    if (AEV__UNLIKELY(t->stash_head != NULL)) {
        if (stash_add(t, result, data) < 0) {
            fatal(t, "no memory for a received datagram", -ENOMEM);
            return -1;
        }
        unstash_soon(t);
        return 0;
    }
    socklen_t alen;
    const struct sockaddr *from = received_from(t, &alen);
    return deliver(t, result, data, from, alen);
}

static void dgram_read_done(aev__op_t *op, int result, unsigned flags)
{
    dgram_t *t = D_OF(op, rop);
    if (AEV__UNLIKELY(!(flags & AEV__OP_MORE)) && op_final(t, op)) {
        /* a cancelled native receive ended: what raced the cancel is delivered (reading was
         * resumed meanwhile) or kept for resume_reading (still paused); after close or abort
         * it is dropped, as asyncio reads nothing more then */
        if (!t->closing && !t->lost) {
            if (!t->reading) {
                if (stash_add(t, result, op->data) < 0)
                    fatal(t, "no memory for a received datagram", -ENOMEM);
            } else if (take(t, result, op->data) == 0) {
                start_reading(t);
            }
        }
        aev_datagram_transport_unref(t); /* the cancel's reference */
        return;
    }
    if (AEV__UNLIKELY(!t->reading || t->closing || t->lost)) {
        if (!t->reading && !t->closing && !t->lost && stash_add(t, result, op->data) < 0)
            fatal(t, "no memory for a received datagram", -ENOMEM);
        else if (flags & AEV__OP_MORE)
            op_stop(t, op);
        return;
    }
    if (take(t, result, op->data) < 0)
        return;
    /* an empty datagram or an error ends a multishot receive: start the next one */
    if (!(flags & AEV__OP_MORE))
        start_reading(t);
}

void aev_datagram_transport_pause_reading(aev_datagram_transport_t *t)
{
    if (!t || !t->reading || t->closing)
        return;
    t->reading = 0;
    op_stop(t, &t->rop);
}

void aev_datagram_transport_resume_reading(aev_datagram_transport_t *t)
{
    if (!t || t->reading || t->closing)
        return;
    t->reading = 1;
    unstash_soon(t);
    if (t->made)
        start_reading(t);
}

int aev_datagram_transport_is_reading(const aev_datagram_transport_t *t)
{
    return t && t->reading && !t->closing ? 1 : 0;
}

/* ---- writing ------------------------------------------------------------------------- */

static void maybe_pause_protocol(dgram_t *t)
{
    if (t->wsize <= t->high || t->writing_paused)
        return;
    t->writing_paused = 1;
    if (t->proto && t->proto->pause_writing)
        check_raised(t, "protocol.pause_writing() failed", t->proto->pause_writing(t->proto));
}

static void maybe_resume_protocol(dgram_t *t)
{
    if (!t->writing_paused || t->wsize > t->low)
        return;
    t->writing_paused = 0;
    if (t->proto && t->proto->resume_writing)
        check_raised(t, "protocol.resume_writing() failed", t->proto->resume_writing(t->proto));
}

/* The send operation's datagram: the first one buffered. */
static int dgram_write_prepare(aev__op_t *op)
{
    dgram_t *t = D_OF(op, wop);
    dgram_out_t *d = t->head;
    if (!d)
        return -ECANCELED;
    t->wiov.iov_base = d->data;
    t->wiov.iov_len = d->len;
    memset(&t->wmsg, 0, sizeof t->wmsg);
    t->wmsg.msg_name = d->addrlen ? &d->addr : NULL;
    t->wmsg.msg_namelen = d->addrlen;
    t->wmsg.msg_iov = &t->wiov;
    t->wmsg.msg_iovlen = 1;
    if (t->loop->native_ops && (op->flags & AEV__OP_COMPLETION_OK))
        t->wpinned = d; /* read by the engine until the send completes */
    return 0;
}

static void dgram_write_done(aev__op_t *op, int result, unsigned flags)
{
    dgram_t *t = D_OF(op, wop);
    dgram_out_t *sent = t->wpinned;
    t->wpinned = NULL;
    if (sent && sent != t->head)
        free(sent); /* abort or loss dropped the queue while the send read it */
    if (AEV__UNLIKELY(!(flags & AEV__OP_MORE)) && op_final(t, op)) {
        aev_datagram_transport_unref(t); /* cancelled (being lost): the cancel's reference */
        return;
    }
    if (t->lost || result == -ECANCELED)
        return;
    if (AEV__UNLIKELY(result == -EAGAIN)) { /* a native send may say so: it is tried again */
        start_writing(t);
        return;
    }
    /* the first datagram went whole, or failed and is dropped (asyncio's _sendto_ready) */
    dgram_out_t *d = t->head;
    if (d) {
        t->head = d->next;
        if (!t->head)
            t->tail = NULL;
        t->wsize -= d->len + DGRAM_HEADER;
        free(d);
    }
    if (result < 0) {
        error_received(t, result);
        if (t->lost)
            return;
    }
    maybe_resume_protocol(t); /* may send more */
    if (t->lost)
        return;
    if (t->head)
        start_writing(t); /* the next (the engine keeps its interest) */
    else if (t->closing)
        schedule_connection_lost(t);
}

/* Do t's sends run on the engine (a proactor loop)? UDP's do, every datagram as a native
 * SENDMSG from the start (one in flight at a time, in order): a loopback ping-pong measured
 * ~5% faster than a sendto(2) first (which a burst of 64 favoured by ~13%), and no send
 * costs a syscall of its own. Unix datagram sockets keep their sends on the readiness half:
 * io_uring (seen on Linux 6.18) retries a send that met a full peer queue with the data
 * already consumed and delivers an empty datagram instead (docs/design.md). */
static int native_send(const dgram_t *t)
{
    return t->loop->native_ops && (t->wop.flags & AEV__OP_COMPLETION_OK);
}

/* Are a and b the same address (family, port, host; path for AF_UNIX)? */
static int same_address(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b, socklen_t blen)
{
    if (alen < (socklen_t)sizeof(sa_family_t) || blen < (socklen_t)sizeof(sa_family_t) ||
        a->sa_family != b->sa_family)
        return 0;
    switch (a->sa_family) {
    case AF_INET: {
        if (alen < (socklen_t)sizeof(struct sockaddr_in) || blen < (socklen_t)sizeof(struct sockaddr_in))
            return 0;
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        if (alen < (socklen_t)sizeof(struct sockaddr_in6) || blen < (socklen_t)sizeof(struct sockaddr_in6))
            return 0;
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    case AF_UNIX: {
        /* the path's bytes up to its end (a NUL, or the length for abstract names) */
        size_t off = offsetof(struct sockaddr_un, sun_path);
        const char *x = ((const struct sockaddr_un *)(const void *)a)->sun_path;
        const char *y = ((const struct sockaddr_un *)(const void *)b)->sun_path;
        size_t xn = alen > off ? alen - off : 0, yn = blen > off ? blen - off : 0;
        if (xn > 0 && x[0] != '\0')
            xn = strnlen(x, xn);
        if (yn > 0 && y[0] != '\0')
            yn = strnlen(y, yn);
        return xn == yn && memcmp(x, y, xn) == 0;
    }
    default:
        return alen == blen && memcmp(a, b, alen) == 0;
    }
}

int aev_datagram_transport_sendto(aev_datagram_transport_t *t, const void *data, size_t len,
                                  const struct sockaddr *addr, socklen_t addrlen)
{
    if (!t || (len && !data))
        return -EINVAL;
    if (addr && (addrlen < (socklen_t)sizeof(sa_family_t) || addrlen > (socklen_t)sizeof(struct sockaddr_storage))) {
        aev__set_detail("addrlen %u is not a socket address's length", (unsigned)addrlen);
        return -EINVAL;
    }
    if (t->closing || t->lost) {
        aev__set_detail("the datagram transport is closing");
        return AEV_EINVALID_STATE;
    }
    if (t->remote_len) {
        if (addr && !same_address(addr, addrlen, (const struct sockaddr *)&t->remote, t->remote_len)) {
            aev__set_detail("Invalid address: must be NULL or the endpoint's remote address");
            return -EINVAL;
        }
        /* connected: the kernel knows the destination; else (allow_broadcast) name it */
        addr = t->connected ? NULL : (const struct sockaddr *)&t->remote;
        addrlen = t->connected ? 0 : t->remote_len;
    } else if (!addr) {
        aev__set_detail("no destination: the endpoint has no remote address, give addr");
        return -EDESTADDRREQ;
    }
    if (!t->head && t->made && !native_send(t)) {
        /* nothing buffered: try the socket at once (natively the send is an engine operation
         * from the start: see native_send) */
        ssize_t n;
        do
            n = sendto(t->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT, addr, addrlen);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            error_received(t, -errno); /* as asyncio: the protocol hears of it, no error here */
            return 0;
        }
    }
    dgram_out_t *d = malloc(sizeof *d + len);
    if (!d) {
        fatal(t, "no memory for the datagram write buffer", -ENOMEM);
        return -ENOMEM;
    }
    d->next = NULL;
    d->len = len;
    d->addrlen = addr ? addrlen : 0;
    if (addr)
        memcpy(&d->addr, addr, addrlen);
    if (len)
        memcpy(d->data, data, len);
    if (t->tail)
        t->tail->next = d;
    else
        t->head = d;
    t->tail = d;
    t->wsize += len + DGRAM_HEADER;
    if (t->made) {
        start_writing(t);
        if (t->lost)
            return t->conn_error;
    }
    maybe_pause_protocol(t);
    return 0;
}

void aev_datagram_transport_close(aev_datagram_transport_t *t)
{
    if (!t || t->closing || t->lost)
        return;
    t->closing = 1;
    op_stop(t, &t->rop);
    if (!t->head)
        schedule_connection_lost(t);
    /* else: connection_lost once the buffer is sent (dgram_write_done) */
}

void aev_datagram_transport_abort(aev_datagram_transport_t *t)
{
    if (t)
        dgram_force_close(t, 0);
}

int aev_datagram_transport_is_closing(const aev_datagram_transport_t *t)
{
    return t && (t->closing || t->lost) ? 1 : 0;
}

int aev_datagram_transport_set_write_buffer_limits(aev_datagram_transport_t *t, long high, long low)
{
    if (!t)
        return -EINVAL;
    int rc = aev__write_limits_resolve(high, low, DGRAM_HIGH_DEFAULT, &t->high, &t->low);
    if (rc == 0)
        maybe_pause_protocol(t);
    return rc;
}

void aev_datagram_transport_get_write_buffer_limits(const aev_datagram_transport_t *t, size_t *low,
                                                    size_t *high)
{
    if (low)
        *low = t ? t->low : 0;
    if (high)
        *high = t ? t->high : 0;
}

size_t aev_datagram_transport_get_write_buffer_size(const aev_datagram_transport_t *t)
{
    return t ? t->wsize : 0;
}

void aev_datagram_transport_set_protocol(aev_datagram_transport_t *t, aev_datagram_protocol_t *p)
{
    if (t && p)
        t->proto = p;
}

aev_datagram_protocol_t *aev_datagram_transport_get_protocol(const aev_datagram_transport_t *t)
{
    return t ? t->proto : NULL;
}

int aev_datagram_transport_get_fd(const aev_datagram_transport_t *t)
{
    return t ? t->fd : -1;
}

int aev_datagram_transport_get_peername(const aev_datagram_transport_t *t, struct sockaddr *addr,
                                        socklen_t *len)
{
    if (!t || !addr || !len)
        return -EINVAL;
    if (t->fd < 0)
        return -EBADF;
    return getpeername(t->fd, addr, len) < 0 ? -errno : 0;
}

int aev_datagram_transport_get_sockname(const aev_datagram_transport_t *t, struct sockaddr *addr,
                                        socklen_t *len)
{
    if (!t || !addr || !len)
        return -EINVAL;
    if (t->fd < 0)
        return -EBADF;
    return getsockname(t->fd, addr, len) < 0 ? -errno : 0;
}

/* ---- create_datagram_endpoint ---------------------------------------------------------- */

typedef struct dgram_job {
    aev_datagram_protocol_factory_fn factory;
    void *userdata;
    aev_datagram_options_t o;
    char *local_host, *remote_host, *local_path, *remote_path;
    int sock; /* use_sock: the socket, until the transport owns it (-1 then) */
} dgram_job_t;

static void job_free(dgram_job_t *j)
{
    if (j->sock >= 0)
        close(j->sock);
    free(j->local_host);
    free(j->remote_host);
    free(j->local_path);
    free(j->remote_path);
    free(j);
}

static void job_free_void(void *j)
{
    job_free(j);
}

/* Appends "('addr', port): message" (or the path) to the attempts text. */
static void note_attempt(char *buf, size_t size, const struct sockaddr *sa, int err)
{
    char host[INET6_ADDRSTRLEN + 8] = "?";
    int port = 0;
    if (sa && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, host, sizeof host);
        port = ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    } else if (sa && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, host, sizeof host);
        port = ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    }
    size_t len = strlen(buf);
    if (len + 1 < size)
        snprintf(buf + len, size - len, "%s('%s', %d): %s", len ? ", " : "", host, port, aev_strerror(err));
}

/* Makes the transport on the endpoint's socket and waits for connection_made. */
static int finish(aev_future_t *self, dgram_job_t *j, int fd, const struct sockaddr *remote, socklen_t remote_len,
                  int connected)
{
    aev_loop_t *loop = aev_future_get_loop(self);
    aev_future_t *made = NULL;
    int rc = aev_loop_create_future(loop, &made);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    dgram_t *t = NULL;
    rc = dgram_new(loop, fd, j->factory, j->userdata, remote, remote_len, connected, &t); /* owns fd */
    if (rc < 0) {
        aev_future_unref(made);
        return rc;
    }
    t->made_waiter = aev_future_ref(made);
    void *v = NULL;
    rc = aev_await(made, &v);
    if (rc == 0)
        aev_task_return(self, aev_datagram_transport_ref(v), transport_value_release);
    else if (rc == AEV_ECANCELLED)
        aev_datagram_transport_abort(t);
    aev_future_unref(made);
    return rc;
}

/* Opens a datagram socket with the endpoint's options: 0 and *fdp, or a negative error. */
static int open_socket(const dgram_job_t *j, int family, int proto, int *fdp)
{
    *fdp = -1;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd < 0)
        return -errno;
    int one = 1;
    if ((j->o.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        (j->o.allow_broadcast && setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0)) {
        int e = errno;
        close(fd);
        return -e;
    }
    *fdp = fd;
    return 0;
}

/* connect(2) of a datagram socket only records the peer: it never waits. */
static int connect_now(int fd, const struct sockaddr *sa, socklen_t len)
{
    int r;
    do
        r = connect(fd, sa, len);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

/* AF_UNIX: bind to local_path, connect to remote_path. */
static int unix_endpoint(aev_future_t *self, dgram_job_t *j)
{
    struct sockaddr_un lun, run;
    socklen_t llen = 0, rlen = 0;
    int rc = 0;
    if (j->local_path)
        rc = aev__unix_address(j->local_path, &lun, &llen);
    if (rc == 0 && j->remote_path)
        rc = aev__unix_address(j->remote_path, &run, &rlen);
    int fd = -1;
    if (rc == 0)
        rc = open_socket(j, AF_UNIX, j->o.proto, &fd);
    const char *what = "socket";
    if (rc == 0 && j->local_path) {
        /* a stale socket file (an endpoint that died) is removed, as asyncio does */
        struct stat sb;
        if (j->local_path[0] != '@' && stat(j->local_path, &sb) == 0 && S_ISSOCK(sb.st_mode))
            unlink(j->local_path);
        what = j->local_path;
        rc = bind(fd, (struct sockaddr *)&lun, llen) < 0 ? -errno : 0;
    }
    if (rc == 0 && j->remote_path && !j->o.allow_broadcast) {
        what = j->remote_path;
        rc = connect_now(fd, (struct sockaddr *)&run, rlen);
    }
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        char detail[256];
        snprintf(detail, sizeof detail, "%s: %s", what, aev_strerror(rc));
        return aev_task_fail(self, rc, detail);
    }
    return finish(self, j, fd, j->remote_path ? (struct sockaddr *)&run : NULL, rlen, !j->o.allow_broadcast);
}

/* One (family, protocol) of the resolved addresses, with its local and remote address. */
typedef struct pair {
    int family, proto;
    const struct addrinfo *local, *remote;
} pair_t;

/* Groups the addresses by (family, protocol) in the order getaddrinfo gave them, as
 * asyncio does, keeping the first address of each; only the groups having every address
 * that was asked for are returned. */
static size_t make_pairs(const struct addrinfo *local, const struct addrinfo *remote, int want_local,
                         int want_remote, pair_t **out)
{
    size_t n = 0, cap = 0;
    for (const struct addrinfo *ai = local; ai; ai = ai->ai_next)
        cap++;
    for (const struct addrinfo *ai = remote; ai; ai = ai->ai_next)
        cap++;
    pair_t *p = calloc(cap ? cap : 1, sizeof *p);
    *out = p;
    if (!p)
        return 0;
    for (int side = 0; side < 2; side++) {
        for (const struct addrinfo *ai = side ? remote : local; ai; ai = ai->ai_next) {
            size_t k = 0;
            while (k < n && (p[k].family != ai->ai_family || p[k].proto != ai->ai_protocol))
                k++;
            if (k == n) {
                p[n].family = ai->ai_family;
                p[n].proto = ai->ai_protocol;
                n++;
            }
            const struct addrinfo **slot = side ? &p[k].remote : &p[k].local;
            if (!*slot)
                *slot = ai;
        }
    }
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if ((!want_local || p[k].local) && (!want_remote || p[k].remote))
            p[m++] = p[k];
    return m;
}

static int resolve(aev_loop_t *loop, const dgram_job_t *j, const char *host, int port, int passive,
                   aev_future_t **fut, void **list)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    aev_getaddrinfo_options_t gai = {.family = j->o.family, .type = SOCK_DGRAM, .proto = j->o.proto,
                                     .flags = j->o.flags | (passive ? AI_PASSIVE : 0)};
    int rc = aev_loop_getaddrinfo(loop, host, service, &gai, fut);
    if (rc == 0)
        rc = aev_await(*fut, list);
    return rc;
}

static int inet_endpoint(aev_future_t *self, dgram_job_t *j)
{
    aev_loop_t *loop = aev_future_get_loop(self);
    aev_future_t *lf = NULL, *rf = NULL;
    void *laddrs = NULL, *raddrs = NULL;
    int rc = 0;
    char detail[1100] = "";
    /* "" is the wildcard address: getaddrinfo's NULL host with AI_PASSIVE */
    if (j->local_host)
        rc = resolve(loop, j, j->local_host[0] ? j->local_host : NULL, j->o.local_port, !j->local_host[0], &lf,
                     &laddrs);
    if (rc == 0 && j->remote_host)
        rc = resolve(loop, j, j->remote_host, j->o.remote_port, 0, &rf, &raddrs);
    if (rc < 0) {
        aev_future_t *f = rf ? rf : lf;
        if (f && aev_future_done(f) && !aev_future_cancelled(f))
            snprintf(detail, sizeof detail, "%s", aev_future_error_detail(f) ? aev_future_error_detail(f) : "");
        aev_future_unref(lf);
        aev_future_unref(rf);
        return rc == AEV_ECANCELLED ? rc : aev_task_fail(self, rc, detail[0] ? detail : NULL);
    }
    pair_t *pairs = NULL;
    size_t n = make_pairs(laddrs, raddrs, j->local_host != NULL, j->remote_host != NULL, &pairs);
    int fd = -1, first_error = 0;
    const pair_t *won = NULL;
    if (!pairs)
        first_error = -ENOMEM;
    else if (n == 0)
        snprintf(detail, sizeof detail, "can not get address information: no address family has %s",
                 j->local_host && j->remote_host ? "both a local and a remote address" : "an address");
    for (size_t i = 0; pairs && i < n; i++) {
        const pair_t *p = &pairs[i];
        const struct sockaddr *at = NULL;
        int err = open_socket(j, p->family, p->proto, &fd);
        if (err == 0 && p->local) {
            at = p->local->ai_addr;
            err = bind(fd, p->local->ai_addr, p->local->ai_addrlen) < 0 ? -errno : 0;
        }
        if (err == 0 && p->remote && !j->o.allow_broadcast) {
            at = p->remote->ai_addr;
            err = connect_now(fd, p->remote->ai_addr, p->remote->ai_addrlen);
        }
        if (err == 0) {
            won = p;
            break;
        }
        if (fd >= 0)
            close(fd);
        fd = -1;
        if (!first_error)
            first_error = err;
        note_attempt(detail, sizeof detail, at, err);
    }
    if (won) {
        struct sockaddr_storage remote;
        socklen_t rlen = 0;
        if (won->remote) {
            rlen = won->remote->ai_addrlen;
            memcpy(&remote, won->remote->ai_addr, rlen);
        }
        free(pairs);
        aev_future_unref(lf);
        aev_future_unref(rf);
        return finish(self, j, fd, rlen ? (struct sockaddr *)&remote : NULL, rlen, !j->o.allow_broadcast);
    }
    free(pairs);
    aev_future_unref(lf);
    aev_future_unref(rf);
    return aev_task_fail(self, first_error ? first_error : -EINVAL, detail[0] ? detail : NULL);
}

static int endpoint_task(aev_future_t *self, void *arg)
{
    dgram_job_t *j = arg;
    int rc;
    if (j->o.use_sock) {
        int fd = j->sock;
        j->sock = -1; /* the transport's from now on */
        rc = finish(self, j, fd, NULL, 0, 1);
    } else if (j->o.family == AF_UNIX) {
        rc = unix_endpoint(self, j);
    } else if (!j->local_host && !j->remote_host) {
        int fd;
        rc = open_socket(j, j->o.family, j->o.proto, &fd); /* unbound: the first send binds it */
        rc = rc < 0 ? aev_task_fail(self, rc, "socket") : finish(self, j, fd, NULL, 0, 0);
    } else {
        rc = inet_endpoint(self, j);
    }
    job_free(j);
    return rc;
}

/* Bad input, refused at once: -EINVAL and a detail. */
static int check_options(const aev_datagram_options_t *o)
{
    if (o->reuse_address) {
        aev__set_detail("reuse_address is not supported (as asyncio since 3.8.1): SO_REUSEADDR lets other "
                        "users' sockets on the same address take this endpoint's datagrams; use reuse_port");
        return -EINVAL;
    }
    if (o->use_sock) {
        char problems[256] = "";
        struct {
            const char *name;
            int set;
        } mods[] = {
            {"local_host", o->local_host != NULL}, {"local_port", o->local_port != 0},
            {"remote_host", o->remote_host != NULL}, {"remote_port", o->remote_port != 0},
            {"local_path", o->local_path != NULL}, {"remote_path", o->remote_path != NULL},
            {"family", o->family != 0}, {"proto", o->proto != 0}, {"flags", o->flags != 0},
            {"reuse_port", o->reuse_port != 0}, {"allow_broadcast", o->allow_broadcast != 0},
        };
        for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++)
            if (mods[i].set) {
                size_t len = strlen(problems);
                snprintf(problems + len, sizeof problems - len, "%s%s", len ? ", " : "", mods[i].name);
            }
        if (problems[0]) {
            aev__set_detail("socket modifier options can not be used when sock is specified (%s)", problems);
            return -EINVAL;
        }
        int type = 0;
        socklen_t tl = sizeof type;
        if (getsockopt(o->sock, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) {
            int e = errno;
            aev__set_detail("sock %d is not a usable socket: %s", o->sock, strerror(e));
            return -e;
        }
        if (type != SOCK_DGRAM) {
            aev__set_detail("a datagram socket was expected, sock %d is of type %d", o->sock, type);
            return -EINVAL;
        }
        return 0;
    }
    if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6 && o->family != AF_UNIX) {
        aev__set_detail("family %d is not AF_UNSPEC (%d), AF_INET (%d), AF_INET6 (%d) or AF_UNIX (%d)", o->family,
                        AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX);
        return -EINVAL;
    }
    const int ports[2] = {o->local_port, o->remote_port};
    const char *hosts[2] = {o->local_host, o->remote_host};
    const char *names[2] = {"local", "remote"};
    for (int i = 0; i < 2; i++) {
        if (ports[i] < 0 || ports[i] > 65535) {
            aev__set_detail("%s_port %d out of range 0-65535", names[i], ports[i]);
            return -EINVAL;
        }
        if (ports[i] && !hosts[i]) {
            aev__set_detail("%s_port %d given without %s_host", names[i], ports[i], names[i]);
            return -EINVAL;
        }
    }
    int paths = o->local_path || o->remote_path;
    if (paths && (o->local_host || o->remote_host)) {
        aev__set_detail("Unix paths and host addresses can not be given together");
        return -EINVAL;
    }
    if (paths && o->family != AF_UNSPEC && o->family != AF_UNIX) {
        aev__set_detail("local_path/remote_path need family AF_UNIX (%d), not %d", AF_UNIX, o->family);
        return -EINVAL;
    }
    if (o->family == AF_UNIX && (o->local_host || o->remote_host)) {
        aev__set_detail("AF_UNIX endpoints take local_path/remote_path, not hosts");
        return -EINVAL;
    }
    if (!paths && !o->local_host && !o->remote_host && o->family == AF_UNSPEC) {
        aev__set_detail("unexpected address family: no local or remote address, and no family");
        return -EINVAL;
    }
    if (o->reuse_port && (paths || o->family == AF_UNIX)) {
        aev__set_detail("reuse_port applies to AF_INET and AF_INET6 endpoints only");
        return -EINVAL;
    }
    struct sockaddr_un un;
    socklen_t len;
    if (o->local_path && aev__unix_address(o->local_path, &un, &len) < 0)
        return -EINVAL;
    if (o->remote_path && aev__unix_address(o->remote_path, &un, &len) < 0)
        return -EINVAL;
    return 0;
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    return !s || (*out = strdup(s)) ? 0 : -ENOMEM;
}

int aev_loop_create_datagram_endpoint(aev_loop_t *loop, aev_datagram_protocol_factory_fn factory, void *userdata,
                                      const aev_datagram_options_t *opts, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    aev_datagram_options_t o = opts ? *opts : (aev_datagram_options_t){0};
    rc = check_options(&o);
    if (rc < 0)
        return rc;
    dgram_job_t *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->sock = -1;
    j->factory = factory;
    j->userdata = userdata;
    j->o = o;
    if (o.local_path || o.remote_path)
        j->o.family = AF_UNIX;
    if (dup_opt(o.local_host, &j->local_host) < 0 || dup_opt(o.remote_host, &j->remote_host) < 0 ||
        dup_opt(o.local_path, &j->local_path) < 0 || dup_opt(o.remote_path, &j->remote_path) < 0) {
        job_free(j);
        return -ENOMEM;
    }
    j->o.local_host = j->o.remote_host = j->o.local_path = j->o.remote_path = NULL;
    if (o.use_sock) {
        int fl = fcntl(o.sock, F_GETFL);
        if (fl < 0 || fcntl(o.sock, F_SETFL, fl | O_NONBLOCK) < 0) {
            rc = -errno;
            job_free(j);
            aev__set_detail("sock %d could not be made non-blocking", o.sock);
            return rc;
        }
    }
    rc = aev_task_new(loop, &(aev_task_options_t){.name = "create_datagram_endpoint"}, endpoint_task, j, out);
    if (rc < 0) {
        job_free(j);
        return rc;
    }
    if (o.use_sock)
        j->sock = o.sock; /* the endpoint's now: closed with it, or if it never comes */
    ((aev__task_t *)*out)->arg_destroy = job_free_void; /* cancelled before it ran */
    return 0;
}

/* ---- loop close ------------------------------------------------------------------------------ */

void aev__datagrams_loop_close(aev_loop_t *loop)
{
    /* Endpoints still open when the loop closes: their sockets are closed and their protocols
     * get connection_lost(AEV_ECLOSED) now, so that nothing leaks. */
    while (loop->datagrams) {
        dgram_t *t = loop->datagrams;
        if (loop->debug)
            aev_log(AEV_LOG_WARNING, "aev", "unclosed datagram transport (fd %d) when the loop closes", t->fd);
        t->conn_error = t->conn_error ? t->conn_error : AEV_ECLOSED;
        t->lost = 1;
        if (t->made_pending) { /* its queued connection_made is discarded with the queue */
            t->made_pending = 0;
            t->refs--;
        }
        if (t->made_waiter) { /* stays pending, as every future of a closed loop */
            aev_future_unref(t->made_waiter);
            t->made_waiter = NULL;
        }
        call_connection_lost(loop, t);
    }
}
