/* libaev core - stream transports (asyncio's _SelectorSocketTransport):
 * reading into the protocol, the write buffer with its high/low marks,
 * write_eof, close and abort, and the one connection_lost at the end.
 *
 * I/O follows DESIGN ("I/O") through the completion-style operations of
 * io_op.h, so the same code serves readiness and completion engines: while the
 * transport reads, one multishot receive is active, into the buffer the loop
 * lends (one 64 KiB buffer shared by all streams on a readiness engine) or, for
 * a buffered protocol, straight into the protocol's get_buffer(). A write is
 * tried at once with sendmsg(2) and only what the socket does not take is
 * buffered, with one send operation active until the buffer drains. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream_internal.h"

#define AEV__STREAM_READ_SIZE 65536
#define AEV__STREAM_HIGH_DEFAULT (64u * 1024u)

#define T_OF(op, member) ((aev_transport_t *)((char *)(op) - offsetof(aev_transport_t, member)))
#define W_OF(op) ((aev__stream_wside_t *)((char *)(op) - offsetof(aev__stream_wside_t, wop)))

static void stream_read_done(aev__op_t *op, int result, unsigned flags);
static void stream_deliver_other_kind(aev_transport_t *t, const char *data, size_t n);
static void stream_write_done(aev__op_t *op, int result, unsigned flags);
static int stream_read_prepare(aev__op_t *op);
static int stream_write_prepare(aev__op_t *op);

/* Stops one of t's operations. A readiness engine stops it at once; on a completion engine
 * its final completion is still to come and may touch the transport and its buffers, so the
 * transport holds a reference until then (stream_op_final). */
void aev__stream_op_stop(aev_transport_t *t, aev__op_t *op)
{
    if (aev__op_stop_held(t->loop, op, &t->held, op == &t->rop ? AEV__HELD_READ : AEV__HELD_WRITE))
        t->refs++;
}

/* Stops both operations. */
static void stream_ops_cancel(aev_transport_t *t)
{
    aev__stream_op_stop(t, &t->rop);
    if (t->w)
        aev__stream_op_stop(t, &t->w->wop);
}

/* The final completion of op arrived: 1 if a cancel had taken a reference for it (the
 * caller gives it back with aev_transport_unref as its last act: io_op.h lets the final
 * done of a cancelled op free it). */
static int stream_op_final(aev_transport_t *t, aev__op_t *op)
{
    return aev__op_final_held(&t->held, op == &t->rop ? AEV__HELD_READ : AEV__HELD_WRITE);
}

/* ---- lifetime ------------------------------------------------------------------ */

/* t's side struct, allocated on first use, or NULL (no memory). */
static aev__stream_cold_t *cold_get(aev_transport_t *t)
{
    if (!t->cold)
        t->cold = calloc(1, sizeof *t->cold);
    return t->cold;
}

/* Frees t's side struct once it holds nothing. */
static void cold_trim(aev_transport_t *t)
{
    aev__stream_cold_t *c = t->cold;
    if (c && !c->factory && !c->rstash && !c->sendfile) {
        free(c);
        t->cold = NULL;
    }
}

int aev__stream_set_sendfile(aev_transport_t *t, struct aev__tsendfile *st)
{
    if (!st) {
        if (t->cold) {
            t->cold->sendfile = NULL;
            cold_trim(t);
        }
        return 0;
    }
    aev__stream_cold_t *c = cold_get(t);
    if (!c)
        return -ENOMEM;
    c->sendfile = st;
    return 0;
}

aev_transport_t *aev_transport_ref(aev_transport_t *t)
{
    if (t)
        t->refs++;
    return t;
}

void aev_transport_unref(aev_transport_t *t)
{
    if (!t || --t->refs > 0)
        return;
    aev_loop_t *loop = t->loop;
    if (t->w) {
        free(t->w->wbuf);
        free(t->w->wbuf_retired);
        free(t->w);
    }
    if (t->cold) {
        free(t->cold->rstash);
        free(t->cold);
    }
    free(t);
    loop->live_futures--; /* transports count as live objects of the loop */
    aev__loop_object_released(loop);
}

aev_loop_t *aev_transport_get_loop(const aev_transport_t *t)
{
    return t ? t->loop : NULL;
}

static void list_unlink(aev_transport_t *t)
{
    aev_loop_t *loop = t->loop;
    if (t->prev)
        t->prev->next = t->next;
    else if (loop->streams == t)
        loop->streams = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* Reports a protocol callback that "raised" and aborts the transport (asyncio's _fatal_error). */
static void protocol_raised(aev_transport_t *t, const char *what, int rc)
{
    aev_exception_context_t ctx = {.message = what, .error = rc, .protocol = t->proto, .transport = t,
                                   .has_socket = t->fd >= 0, .socket = t->fd};
    aev_loop_call_exception_handler(t->loop, &ctx);
    aev__stream_force_close(t, rc);
}

/* The last act: connection_lost, the fd closed, the loop's reference dropped. */
static int call_connection_lost(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_transport_t *t = arg;
    if (aev__stream_sendfile(t))
        aev__sendfile_lost(t); /* stops a sendfile before its socket closes */
    if (t->fd >= 0) {
        stream_ops_cancel(t);
        close(t->fd);
        t->fd = -1;
    }
    /* A buffered protocol's receive still in the kernel writes into the protocol's buffer,
     * which the protocol may free in connection_lost: that waits for the receive's final
     * completion (stream_read_done). Not at loop close: the loop waited for every op then. */
    if ((t->held & AEV__HELD_READ) && !(t->rop.flags & AEV__OP_SHARED_BUF) && !t->loop->closed) {
        t->lost_waits_read = 1;
        return 0;
    }
    if (t->made && t->proto && t->proto->connection_lost) {
        int rc = t->proto->connection_lost(t->proto, t->conn_error);
        if (rc < 0) {
            aev_exception_context_t ctx = {.message = "connection_lost raised", .error = rc,
                                           .protocol = t->proto, .transport = t};
            aev_loop_call_exception_handler(t->loop, &ctx);
        }
    }
    t->proto = NULL;
    list_unlink(t);
    if (t->server)
        aev__server_connection_gone(t->server, t);
    aev_transport_unref(t); /* the loop's */
    return 0;
}

static void schedule_connection_lost(aev_transport_t *t)
{
    if (t->lost)
        return;
    t->lost = 1;
    if (aev_loop_call_soon(t->loop, call_connection_lost, t, NULL) < 0)
        call_connection_lost(t->loop, t); /* closed loop or no memory: now */
}

void aev__stream_lost_soon(aev_transport_t *t)
{
    schedule_connection_lost(t);
}

void aev__stream_force_close(aev_transport_t *t, int error)
{
    if (t->lost)
        return;
    if (t->fd >= 0)
        stream_ops_cancel(t);
    t->closing = 1;
    t->reading = 0;
    if (t->w)
        t->w->wlen = t->w->woff = 0;
    if (!t->conn_error)
        t->conn_error = error;
    schedule_connection_lost(t);
}

/* Errors asyncio only logs in debug mode: on a socket the peer's resets; on a read pipe EIO
 * (a pty whose other side closed); on a write pipe every OS error (not ours: no memory, or an
 * fd the loop could not watch). */
static int error_is_quiet(const aev_transport_t *t, int err)
{
    switch (t->kind) {
    case AEV__TRANSPORT_READ_PIPE:
        return err == -EIO;
    case AEV__TRANSPORT_WRITE_PIPE:
        return err > -4000 && err != -ENOMEM;
    default:
        return err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED || err == -ETIMEDOUT;
    }
}

/* "fatal read/write error on socket/pipe transport" (asyncio's messages) */
#define FATAL_MSG(t, dir) \
    ((t)->kind == AEV__TRANSPORT_STREAM ? "fatal " dir " error on socket transport" \
                                        : "fatal " dir " error on pipe transport")

/* An I/O error: quiet ones (error_is_quiet) are the peer's doing and are not reported;
 * anything else reaches the exception handler. The transport is closed either way. */
static void socket_failed(aev_transport_t *t, const char *what, int err)
{
    if (!error_is_quiet(t, err)) {
        int sock = t->kind == AEV__TRANSPORT_STREAM;
        aev_exception_context_t ctx = {.message = what, .error = err, .protocol = t->proto,
                                       .transport = t, .has_socket = sock, .socket = sock ? t->fd : 0};
        aev_loop_call_exception_handler(t->loop, &ctx);
    }
    aev__stream_force_close(t, err);
}

/* ---- creating ------------------------------------------------------------------------ */

static void transport_value_release(void *value)
{
    aev_transport_unref(value);
}

/* connection_made ran (rc 0) or the connection ended before (rc < 0): tell the waiter. */
static void made_waiter_finish(aev_transport_t *t, int rc)
{
    aev_future_t *w = t->made_waiter;
    if (!w)
        return;
    t->made_waiter = NULL;
    if (!aev_future_done(w)) {
        if (rc == 0)
            aev_future_set_result(w, aev_transport_ref(t), transport_value_release);
        else
            aev_future_set_error(w, rc == AEV_ECANCELLED ? -ECONNABORTED : rc,
                                 "the connection ended before connection_made");
    }
    aev_future_unref(w);
}

static int call_connection_made(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_transport_t *t = arg;
    t->made_pending = 0;
    if (t->lost) { /* aborted before it was even made: no protocol was made either */
        made_waiter_finish(t, t->conn_error ? t->conn_error : -ECONNABORTED);
        aev_transport_unref(t);
        return 0;
    }
    /* the protocol is made now, so that one exists only for a connection that is made */
    aev_protocol_factory_fn factory = t->cold->factory;
    void *factory_data = t->cold->factory_data;
    t->cold->factory = NULL;
    cold_trim(t);
    t->proto = factory(factory_data);
    if (!t->proto) {
        aev_exception_context_t ctx = {.message = "the protocol factory returned no protocol",
                                       .error = -ENOMEM, .transport = t};
        aev_loop_call_exception_handler(t->loop, &ctx);
        aev__stream_force_close(t, -ENOMEM);
        made_waiter_finish(t, -ENOMEM);
        aev_transport_unref(t);
        return 0;
    }
    t->made = 1;
    int rc = t->proto->connection_made ? t->proto->connection_made(t->proto, t) : 0;
    if (rc < 0)
        protocol_raised(t, "connection_made raised", rc);
    else if (t->kind == AEV__TRANSPORT_WRITE_PIPE)
        aev__pipe_made(t);
    else if (t->reading && !t->closing)
        aev__stream_resume_io(t);
    made_waiter_finish(t, rc < 0 ? rc : 0);
    aev_transport_unref(t); /* the scheduled call's */
    return 0;
}

int aev__stream_new(aev_loop_t *loop, int fd, aev_protocol_factory_fn factory, void *factory_data,
                    aev_server_t *server, aev_transport_t **out)
{
    aev_transport_t *t = calloc(1, sizeof *t);
    if (!t || !cold_get(t)) {
        free(t);
        return -ENOMEM;
    }
    t->loop = loop;
    t->refs = 2; /* the loop's, and the scheduled connection_made's */
    t->fd = fd;
    t->cold->factory = factory;
    t->cold->factory_data = factory_data;
    t->server = server;
    t->reading = 1;
    t->rop.fd = fd;
    t->rop.opcode = AEV_OP_RECV;
    t->rop.done = stream_read_done;
    int one = 1; /* as asyncio: no Nagle on stream transports (harmless on AF_UNIX) */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = aev_loop_call_soon(loop, call_connection_made, t, NULL);
    if (rc < 0) {
        free(t->cold);
        free(t);
        return rc;
    }
    t->made_pending = 1;
    loop->live_futures++;
    t->next = loop->streams;
    if (loop->streams)
        loop->streams->prev = t;
    loop->streams = t;
    if (out)
        *out = t;
    return 0;
}

/* ---- reading --------------------------------------------------------------------------- */

/* Starts the receive while the transport reads. */
void aev__stream_resume_io(aev_transport_t *t)
{
    if (t->fd >= 0 && t->reading && !t->eof_received && !t->closing && !aev__op_active(&t->rop) &&
        t->kind != AEV__TRANSPORT_WRITE_PIPE) {
        /* a buffered protocol is read into its own buffer (asked right before each receive),
         * any other into the buffer the loop lends */
        int buffered = t->proto && t->proto->get_buffer;
        t->rop.flags = AEV__OP_MULTISHOT | (buffered ? 0 : AEV__OP_SHARED_BUF) |
                       AEV__OP_COMPLETION_OK; /* sockets, and read pipes (read(2)) */
        t->rop.prepare = buffered ? stream_read_prepare : NULL;
        int rc = aev__op_submit(t->loop, &t->rop);
        if (rc < 0)
            socket_failed(t, "could not watch the socket for reading", rc);
    }
}

static void on_eof(aev_transport_t *t)
{
    t->eof_received = 1;
    if (t->kind == AEV__TRANSPORT_READ_PIPE) {
        aev__pipe_read_eof(t);
        return;
    }
    int keep = 0;
    if (t->proto->eof_received) {
        keep = t->proto->eof_received(t->proto);
        if (keep < 0) {
            protocol_raised(t, "eof_received raised", keep);
            return;
        }
    }
    if (!keep)
        aev_transport_close(t);
}

/* A buffered protocol's buffer for the next receive (-ENOBUFS: it gave none). */
static int stream_read_prepare(aev__op_t *op)
{
    aev_transport_t *t = T_OF(op, rop);
    size_t size = 0;
    void *buf = t->proto->get_buffer(t->proto, AEV__STREAM_READ_SIZE, &size);
    if (!buf || size == 0)
        return -ENOBUFS;
    op->buf = buf;
    op->len = size;
    return 0;
}

/* Keeps what a receive brought while reading was paused (its cancel was on its way, on a
 * completion engine): nothing received is ever dropped. A buffered protocol's bytes are
 * copied out of its buffer too: no buffer_updated while paused (asyncio calls none), they
 * reach it on resume through get_buffer as any stashed bytes. 0, or -ENOMEM. */
static int stream_stash(aev_transport_t *t, aev__op_t *op, int result)
{
    if (result == 0) {
        t->eof_stashed = 1;
        return 0;
    }
    aev__stream_cold_t *c = cold_get(t);
    char *n = c ? realloc(c->rstash, c->rstash_len + (size_t)result) : NULL;
    if (!n)
        return -ENOMEM;
    memcpy(n + c->rstash_len, op->data, (size_t)result);
    c->rstash = n;
    c->rstash_len += (size_t)result;
    return 0;
}

/* resume_reading with stashed bytes: they go first, from a callback of their own. */
static int stream_unstash_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_transport_t *t = arg;
    if (t->reading && !t->closing && !t->lost) {
        char *data = t->cold ? t->cold->rstash : NULL;
        size_t len = t->cold ? t->cold->rstash_len : 0;
        if (t->cold) {
            t->cold->rstash = NULL;
            t->cold->rstash_len = 0;
            cold_trim(t);
        }
        if (len) /* copied into a buffered protocol's buffers if it is one by now */
            stream_deliver_other_kind(t, data, len);
        free(data);
        if (t->eof_stashed && t->reading && !t->closing && !t->lost) {
            t->eof_stashed = 0;
            on_eof(t);
        } else if (len && !t->eof_stashed) {
            aev__stream_resume_io(t); /* not before: it could receive into the same buffer */
        }
    }
    aev_transport_unref(t);
    return 0;
}

/* Bytes a receive of the other kind brought (the protocol was switched between a plain and a
 * buffered one while it was in flight): a buffered protocol gets them copied into its
 * buffers, a plain one straight from where they are. */
static void stream_deliver_other_kind(aev_transport_t *t, const char *data, size_t n)
{
    aev_protocol_t *p = t->proto;
    if (!p->get_buffer) {
        int rc = p->data_received ? p->data_received(p, data, n) : 0;
        if (rc < 0)
            protocol_raised(t, "data_received raised", rc);
        return;
    }
    while (n > 0 && t->proto == p && !t->closing && !t->lost) {
        size_t size = 0;
        char *buf = p->get_buffer(p, n, &size);
        if (!buf || size == 0) {
            protocol_raised(t, "get_buffer returned no buffer", -ENOBUFS);
            return;
        }
        size_t k = size < n ? size : n;
        memcpy(buf, data, k);
        int rc = p->buffer_updated ? p->buffer_updated(p, k) : 0;
        if (rc < 0) {
            protocol_raised(t, "buffer_updated raised", rc);
            return;
        }
        data += k;
        n -= k;
    }
}

static void stream_read_done(aev__op_t *op, int result, unsigned flags)
{
    aev_transport_t *t = T_OF(op, rop);
    if (AEV__UNLIKELY(!(flags & AEV__OP_MORE)) && stream_op_final(t, op)) {
        /* a cancelled receive ended (completion engines): what raced the cancel is kept or
         * delivered, and reading restarts if it was resumed meanwhile */
        if (result >= 0 && !t->closing && !t->lost) {
            if (t->reading && result > 0)
                stream_read_done(op, result, AEV__OP_MORE);
            else if (t->reading)
                on_eof(t);
            else if (stream_stash(t, op, result) < 0)
                socket_failed(t, "no memory for received data", -ENOMEM);
        }
        if (result != 0)
            aev__stream_resume_io(t);
        if (t->lost_waits_read) {
            t->lost_waits_read = 0;
            call_connection_lost(t->loop, t);
        }
        aev_transport_unref(t); /* the cancel's reference */
        return;
    }
    if (AEV__UNLIKELY(!t->reading || t->closing || t->lost)) {
        if (!t->reading && !t->closing && !t->lost && result >= 0 && stream_stash(t, op, result) < 0)
            socket_failed(t, "no memory for received data", -ENOMEM);
        else if (flags & AEV__OP_MORE)
            aev__stream_op_stop(t, op);
        return;
    }
    aev_protocol_t *p = t->proto;
    if (AEV__LIKELY(result > 0)) {
        int shared = (op->flags & AEV__OP_SHARED_BUF) != 0;
        int rc;
        if (AEV__UNLIKELY(shared == (p->get_buffer != NULL))) {
            /* set_protocol changed the protocol's kind while this receive was in flight */
            stream_deliver_other_kind(t, shared ? op->data : op->buf, (size_t)result);
            return;
        }
        if (shared)
            rc = p->data_received ? p->data_received(p, op->data, (size_t)result) : 0;
        else
            rc = p->buffer_updated ? p->buffer_updated(p, (size_t)result) : 0;
        if (rc < 0)
            protocol_raised(t, shared ? "data_received raised" : "buffer_updated raised", rc);
    } else if (result == 0) {
        on_eof(t);
    } else if (result == -ENOBUFS && op->prepare) {
        protocol_raised(t, "get_buffer returned no buffer", -ENOBUFS);
    } else {
        socket_failed(t, FATAL_MSG(t, "read"), result);
    }
}

void aev_transport_pause_reading(aev_transport_t *t)
{
    if (!t || !t->reading || t->closing)
        return;
    t->reading = 0;
    aev__stream_op_stop(t, &t->rop);
}

void aev_transport_resume_reading(aev_transport_t *t)
{
    if (!t || t->reading || t->closing || t->kind == AEV__TRANSPORT_WRITE_PIPE)
        return;
    t->reading = 1;
    size_t stashed = t->cold ? t->cold->rstash_len : 0;
    if ((stashed || t->eof_stashed) &&
        aev_loop_call_soon(t->loop, stream_unstash_cb, aev_transport_ref(t), NULL) < 0)
        aev_transport_unref(t);
    /* with stashed bytes the receive starts once they were delivered (stream_unstash_cb): a
     * buffered protocol's get_buffer may hand out the buffer they are copied into */
    if (t->made && !t->eof_stashed && !stashed)
        aev__stream_resume_io(t);
}

int aev_transport_is_reading(const aev_transport_t *t)
{
    return t && t->reading && !t->closing ? 1 : 0;
}

/* ---- writing ------------------------------------------------------------------------- */

/* t's write side, allocated on first use (a write that has to wait, or write-buffer limits
 * set), or NULL (no memory). */
static aev__stream_wside_t *wside_get(aev_transport_t *t)
{
    if (AEV__LIKELY(t->w != NULL))
        return t->w;
    aev__stream_wside_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->t = t;
    w->high = AEV__STREAM_HIGH_DEFAULT;
    w->low = AEV__STREAM_HIGH_DEFAULT / 4;
    w->wop.fd = t->fd;
    if (t->write_writev) { /* a pipe or character device: write(2), on the readiness half
                              unless aev__pipe_write_route says otherwise */
        w->wop.opcode = AEV_OP_WRITEV;
        w->wop.flags = AEV__OP_NOSIGPIPE;
    } else {
        w->wop.opcode = AEV_OP_SEND;
        w->wop.flags = AEV__OP_COMPLETION_OK;
    }
    w->wop.done = stream_write_done;
    w->wop.prepare = stream_write_prepare;
    t->w = w;
    return w;
}

static void maybe_pause_protocol(aev_transport_t *t)
{
    size_t size = aev__stream_write_pending(t);
    if (!t->w || size <= t->w->high || t->writing_paused)
        return;
    t->writing_paused = 1;
    if (t->proto && t->proto->pause_writing) {
        int rc = t->proto->pause_writing(t->proto);
        if (rc < 0) {
            aev_exception_context_t ctx = {.message = "protocol.pause_writing() failed", .error = rc,
                                           .protocol = t->proto, .transport = t};
            aev_loop_call_exception_handler(t->loop, &ctx);
        }
    }
}

static void maybe_resume_protocol(aev_transport_t *t)
{
    if (!t->writing_paused || aev__stream_write_pending(t) > t->w->low)
        return;
    t->writing_paused = 0;
    if (t->proto && t->proto->resume_writing) {
        int rc = t->proto->resume_writing(t->proto);
        if (rc < 0) {
            aev_exception_context_t ctx = {.message = "protocol.resume_writing() failed", .error = rc,
                                           .protocol = t->proto, .transport = t};
            aev_loop_call_exception_handler(t->loop, &ctx);
        }
    }
}

/* Appends to the write buffer (compacting it first when the sent part is large). */
static int buffer_append(aev__stream_wside_t *w, const void *data, size_t len)
{
    /* a send in flight on a completion engine reads wbuf_sending: those bytes stay put */
    int pinned = w->wbuf_sending != NULL && w->wbuf_sending == w->wbuf;
    if (!pinned && w->woff > 0 && (w->woff >= w->wlen / 2 || w->wlen + len > w->wcap)) {
        memmove(w->wbuf, w->wbuf + w->woff, w->wlen - w->woff);
        w->wlen -= w->woff;
        w->woff = 0;
    }
    if (w->wlen + len > w->wcap) {
        size_t cap = w->wcap ? w->wcap : 4096;
        while (cap < w->wlen + len)
            cap *= 2;
        char *n;
        if (pinned) { /* a new buffer (same offsets); the old one lives until the send ends */
            if (!(n = malloc(cap)))
                return -ENOMEM;
            memcpy(n, w->wbuf, w->wlen);
            w->wbuf_retired = w->wbuf;
        } else if (!(n = realloc(w->wbuf, cap))) {
            return -ENOMEM;
        }
        w->wbuf = n;
        w->wcap = cap;
    }
    memcpy(w->wbuf + w->wlen, data, len);
    w->wlen += len;
    return 0;
}

/* All buffered bytes went: finish what waited for it. */
static void write_drained(aev_transport_t *t)
{
    /* the buffer goes too (no send reads it now): an idle connection that once buffered keeps
     * only the write side's struct, whose send op may not be freed from its own done() */
    aev__stream_wside_t *w = t->w;
    free(w->wbuf);
    w->wbuf = NULL;
    w->wlen = w->woff = w->wcap = 0;
    maybe_resume_protocol(t);
    if (t->closing) {
        schedule_connection_lost(t);
    } else if (t->eof_pending && !t->eof_sent) {
        t->eof_sent = 1;
        (void)shutdown(t->fd, SHUT_WR);
    }
    if (aev__stream_sendfile(t))
        aev__sendfile_wake(t);
}

/* The send operation's bytes: whatever the buffer holds now. */
static int stream_write_prepare(aev__op_t *op)
{
    aev__stream_wside_t *w = W_OF(op);
    op->buf = w->wbuf + w->woff;
    op->len = w->wlen - w->woff;
    if (w->t->loop->native_ops && (op->flags & AEV__OP_COMPLETION_OK))
        w->wbuf_sending = w->wbuf; /* read by the engine until the send completes */
    return 0;
}

static void stream_write_done(aev__op_t *op, int result, unsigned flags)
{
    aev__stream_wside_t *w = W_OF(op);
    aev_transport_t *t = w->t;
    w->wbuf_sending = NULL;
    free(w->wbuf_retired);
    w->wbuf_retired = NULL;
    if (AEV__UNLIKELY(!(flags & AEV__OP_MORE)) && stream_op_final(t, op)) {
        aev_transport_unref(t); /* cancelled: the cancel's reference (being lost) */
        return;
    }
    if (t->lost)
        return;
    if (result < 0) {
        socket_failed(t, FATAL_MSG(t, "write"), result);
        return;
    }
    w->woff += (size_t)result;
    if (w->woff == w->wlen) {
        write_drained(t);
        return;
    }
    int rc = aev__op_submit(t->loop, op); /* the rest (the engine keeps its interest) */
    if (rc < 0) {
        socket_failed(t, "could not watch the socket for writing", rc);
        return;
    }
    maybe_resume_protocol(t);
}

int aev_transport_writelines(aev_transport_t *t, const struct iovec *iov, int iovcnt)
{
    if (!t || (iovcnt > 0 && !iov) || iovcnt < 0)
        return -EINVAL;
    if (t->kind == AEV__TRANSPORT_READ_PIPE) {
        aev__set_detail("a read pipe transport cannot write");
        return AEV_EINVALID_STATE;
    }
    if (t->eof_pending) {
        aev__set_detail("cannot write after write_eof()");
        return AEV_EINVALID_STATE;
    }
    if (t->lost || t->closing)
        return t->conn_error ? t->conn_error : AEV_EINVALID_STATE;
    if (AEV__UNLIKELY(aev__stream_sendfile(t) != NULL) && aev__sendfile_write_refused(t) < 0)
        return AEV_EINVALID_STATE;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    int i = 0;
    size_t skip = 0;
    if (aev__stream_write_pending(t) == 0 && t->made) {
        /* nothing buffered: try the socket (or pipe) at once */
        ssize_t n;
        if (t->write_writev) { /* a pipe or character device */
            n = aev__writev_nosigpipe(t->fd, iov, iovcnt);
        } else if (iovcnt == 1) { /* send(2) spares the kernel sendmsg's iovec import */
            n = send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
            n = sendmsg(t->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                socket_failed(t, FATAL_MSG(t, "write"), -errno);
                return 0;
            }
            n = 0;
        }
        if ((size_t)n == total)
            return 0;
        size_t sent = (size_t)n;
        while (sent >= iov[i].iov_len) {
            sent -= iov[i].iov_len;
            i++;
        }
        skip = sent;
    }
    aev__stream_wside_t *w = wside_get(t);
    if (!w) {
        socket_failed(t, "no memory for the write buffer", -ENOMEM);
        return -ENOMEM;
    }
    int was_empty = w->wlen == w->woff;
    for (; i < iovcnt; i++, skip = 0) {
        int rc = buffer_append(w, (const char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
        if (rc < 0) {
            socket_failed(t, "no memory for the write buffer", rc);
            return rc;
        }
    }
    if (was_empty && t->made) {
        if (t->kind == AEV__TRANSPORT_WRITE_PIPE)
            aev__pipe_write_route(t); /* pipe.c: which half, by SIGPIPE's disposition */
        int rc = aev__op_submit(t->loop, &w->wop);
        if (rc < 0) {
            socket_failed(t, "could not watch the socket for writing", rc);
            return rc;
        }
    }
    maybe_pause_protocol(t);
    return 0;
}

int aev_transport_write(aev_transport_t *t, const void *data, size_t len)
{
    if (len && !data)
        return -EINVAL;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return aev_transport_writelines(t, &iov, 1);
}

int aev_transport_write_eof(aev_transport_t *t)
{
    if (!t)
        return -EINVAL;
    if (t->kind == AEV__TRANSPORT_READ_PIPE) {
        aev__set_detail("a read pipe transport cannot write_eof");
        return AEV_EINVALID_STATE;
    }
    if (t->kind == AEV__TRANSPORT_WRITE_PIPE) { /* asyncio: all a write pipe needs is close */
        aev_transport_close(t);
        return 0;
    }
    if (t->closing || t->eof_pending)
        return 0;
    t->eof_pending = 1;
    if (aev__stream_write_pending(t) == 0 && t->fd >= 0) {
        t->eof_sent = 1;
        (void)shutdown(t->fd, SHUT_WR);
    }
    return 0;
}

int aev_transport_can_write_eof(const aev_transport_t *t)
{
    return t && t->kind != AEV__TRANSPORT_READ_PIPE ? 1 : 0;
}

void aev_transport_close(aev_transport_t *t)
{
    if (!t || t->closing)
        return;
    t->closing = 1;
    aev__stream_op_stop(t, &t->rop);
    if (aev__stream_sendfile(t))
        aev__sendfile_wake(t);
    if (aev__stream_write_pending(t) == 0)
        schedule_connection_lost(t);
    /* else: connection_lost once the buffer drained (write_drained) */
}

void aev_transport_abort(aev_transport_t *t)
{
    if (t)
        aev__stream_force_close(t, 0);
}

int aev_transport_is_closing(const aev_transport_t *t)
{
    return t && (t->closing || t->lost) ? 1 : 0;
}

int aev__write_limits_resolve(long high, long low, size_t default_high, size_t *h, size_t *l)
{
    size_t hi = high < 0 ? (low < 0 ? default_high : (size_t)low * 4) : (size_t)high;
    size_t lo = low < 0 ? hi / 4 : (size_t)low;
    if (lo > hi) {
        aev__set_detail("high (%zu) must be >= low (%zu) must be >= 0", hi, lo);
        return -EINVAL;
    }
    *h = hi;
    *l = lo;
    return 0;
}

int aev_transport_set_write_buffer_limits(aev_transport_t *t, long high, long low)
{
    if (!t)
        return -EINVAL;
    size_t hi, lo;
    int rc = aev__write_limits_resolve(high, low, AEV__STREAM_HIGH_DEFAULT, &hi, &lo);
    if (rc < 0)
        return rc;
    aev__stream_wside_t *w = wside_get(t);
    if (!w)
        return -ENOMEM;
    w->high = hi;
    w->low = lo;
    maybe_pause_protocol(t);
    return 0;
}

void aev_transport_get_write_buffer_limits(const aev_transport_t *t, size_t *low, size_t *high)
{
    size_t lo = 0, hi = 0;
    if (t) {
        hi = t->w ? t->w->high : AEV__STREAM_HIGH_DEFAULT;
        lo = t->w ? t->w->low : AEV__STREAM_HIGH_DEFAULT / 4;
    }
    if (low)
        *low = lo;
    if (high)
        *high = hi;
}

size_t aev_transport_get_write_buffer_size(const aev_transport_t *t)
{
    return t ? aev__stream_write_pending(t) : 0;
}

void aev_transport_set_protocol(aev_transport_t *t, aev_protocol_t *p)
{
    if (!t || !p)
        return;
    int was_buffered = t->proto && t->proto->get_buffer;
    t->proto = p;
    if (t->kind != AEV__TRANSPORT_WRITE_PIPE && aev__op_active(&t->rop) &&
        was_buffered != (p->get_buffer != NULL)) {
        /* the receive changes kind (lent buffer / the protocol's own) */
        aev__stream_op_stop(t, &t->rop); /* restarts with the new kind, now or once it ended */
        aev__stream_resume_io(t);
    }
}

aev_protocol_t *aev_transport_get_protocol(const aev_transport_t *t)
{
    return t ? t->proto : NULL;
}

int aev_transport_get_fd(const aev_transport_t *t)
{
    return t ? t->fd : -1;
}

int aev_transport_get_peername(const aev_transport_t *t, struct sockaddr *addr, socklen_t *len)
{
    if (!t || !addr || !len)
        return -EINVAL;
    if (t->fd < 0)
        return -EBADF;
    return getpeername(t->fd, addr, len) < 0 ? -errno : 0;
}

int aev_transport_get_sockname(const aev_transport_t *t, struct sockaddr *addr, socklen_t *len)
{
    if (!t || !addr || !len)
        return -EINVAL;
    if (t->fd < 0)
        return -EBADF;
    return getsockname(t->fd, addr, len) < 0 ? -errno : 0;
}

/* ---- connect_accepted_socket ------------------------------------------------------------ */

int aev_loop_connect_accepted_socket(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                                     int fd, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    int rc = aev__check_usable(loop);
    if (rc == 0)
        rc = aev_loop_create_future(loop, out);
    aev_transport_t *t = NULL;
    if (rc == 0)
        rc = aev__stream_new(loop, fd, factory, userdata, NULL, &t);
    if (rc < 0) {
        close(fd);
        aev_future_unref(*out);
        *out = NULL;
        return rc;
    }
    /* done once connection_made ran, as asyncio returns only then; the future's value holds
     * a reference, so the pointer stays valid while it is read */
    t->made_waiter = aev_future_ref(*out);
    return 0;
}

/* ---- loop close ------------------------------------------------------------------------------ */

void aev__streams_loop_close(aev_loop_t *loop)
{
    /* Transports still open when the loop closes: their sockets are closed and their
     * protocols get connection_lost(AEV_ECLOSED) now, so that nothing leaks. */
    while (loop->streams) {
        aev_transport_t *t = loop->streams;
        if (loop->debug)
            aev_log(AEV_LOG_WARNING, "aev", "unclosed transport (fd %d) when the loop closes", t->fd);
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
    free(loop->stream_rbuf);
    loop->stream_rbuf = NULL;
}
