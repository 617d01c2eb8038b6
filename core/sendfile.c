/* libaev core - loop.sendfile(transport, file, offset, count, fallback), after
 * asyncio's BaseEventLoop.sendfile, _sendfile_native (selector_events) and
 * _sendfile_fallback with its _SendfileFallbackProtocol.
 *
 * The operation is a task of the core (asyncio's sendfile is a coroutine): the
 * future the caller gets is that task, so cancelling it stops the transfer at
 * whatever it waits for, and the file position is set before the task is done.
 *
 * Native (a stream transport over a socket): reading is paused and the write
 * buffer must drain first, so that what was written before arrives before the
 * file; then loop.sock_sendfile's engine runs on the transport's socket, awaited
 * from the task (aev_task_sock_sendfile with no_fallback: sendfile(2) in chunks,
 * waiting for writability on EAGAIN); reading resumes after. From the call until
 * the end, aev_transport_write() is refused (asyncio: "unable to write; sendfile
 * is in progress").
 *
 * Fallback (native impossible: the transport's fd is not a stream socket,
 * sendfile(2) refuses the file, or the test knob AEV_SENDFILE_FORCE_FALLBACK=1):
 * the protocol is swapped for one that takes pause_writing/resume_writing (and
 * forwards connection_lost), reading is paused, and the file is read in chunks
 * with pread() and written to the transport, the task waiting while the
 * transport is above its high mark. At the end it waits for the write buffer to
 * drain (so that the result means the same as the native one: every byte went
 * to the kernel), then puts the protocol back.
 *
 * The transport knows of the operation through aev__stream_sendfile() and three hooks in
 * stream.c: a write refused, a wake-up (the write buffer drained, or close() was
 * called: the transfer fails at once rather than wait for a flush that needs it
 * to stop), and the connection lost.
 * The last one comes before the socket is closed: a task waiting on the socket
 * inside the engine is woken by a cancellation (which removes its watcher at
 * once), withdrawn again when the task sees it, and the transfer fails with the
 * connection's error. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aev/sock.h"
#include "stream_internal.h"
#include "task_internal.h"

/* Fallback: bytes read and written per step, and written between two yields to the loop
 * when the transport never pauses (a high mark above the file's size). */
#define FALLBACK_CHUNK ((size_t)64 << 10)
#define FALLBACK_YIELD_BYTES ((size_t)1 << 20)

typedef struct aev__tsendfile {
    aev_loop_t *loop;
    aev_transport_t *t;        /* a reference, until the end */
    aev_future_t *task;        /* borrowed: the task runs this operation */
    int file_fd;
    off_t offset;
    size_t count;              /* 0: to the end of the file */
    size_t sent;
    uint8_t try_native;
    uint8_t fallback;          /* allowed */
    uint8_t refuse_writes;     /* native: aev_transport_write() refused */
    uint8_t in_engine;         /* inside aev_task_sock_sendfile: may wait on the socket */
    uint8_t lost;              /* the connection was lost (the transport's sendfile detached) */
    uint8_t lost_cancel;       /* the lost hook cancelled the task to wake it */
    int lost_error;
    aev_future_t *drained;     /* while waiting for the write buffer to drain */
    aev_future_t *write_ready; /* fallback: pending while the transport is paused */
    /* fallback: the protocol swap (asyncio's _SendfileFallbackProtocol) */
    aev_protocol_t shim;
    aev_protocol_t *orig;
    uint8_t swapped;
    uint8_t orig_paused;       /* the transport had paused the user's protocol */
    uint8_t resume_reading;
    char detail[160];
} tsendfile_t;

static void wake(aev_future_t *f)
{
    if (f && !aev_future_done(f))
        aev_future_set_result(f, NULL, NULL);
}

/* ---- the transport's hooks ------------------------------------------------------------ */

int aev__sendfile_write_refused(aev_transport_t *t)
{
    if (!aev__stream_sendfile(t)->refuse_writes)
        return 0;
    aev__set_detail("unable to write; sendfile is in progress");
    return AEV_EINVALID_STATE;
}

void aev__sendfile_wake(aev_transport_t *t)
{
    /* whatever the task waits for, it checks the transport again when woken */
    tsendfile_t *st = aev__stream_sendfile(t);
    wake(st->drained);
    wake(st->write_ready);
}

void aev__sendfile_lost(aev_transport_t *t)
{
    tsendfile_t *st = aev__stream_sendfile(t);
    aev__stream_set_sendfile(t, NULL);
    st->lost = 1;
    st->lost_error = t->conn_error;
    st->refuse_writes = 0;
    wake(st->drained);
    wake(st->write_ready);
    if (st->in_engine && !st->lost_cancel) {
        /* the task may wait on the socket about to be closed: the cancellation removes its
         * watcher now and wakes it; the task withdraws it and reports the lost connection */
        st->lost_cancel = 1;
        aev_future_cancel(st->task, "the transport was closed during sendfile");
    }
}

/* ---- common steps -------------------------------------------------------------------------- */

/* 0 while the transport is open, else the error the transfer ends with. */
static int check_open(tsendfile_t *st)
{
    if (!st->lost && !aev_transport_is_closing(st->t))
        return 0;
    int err = st->lost ? st->lost_error : st->t->conn_error;
    snprintf(st->detail, sizeof st->detail, "the transport was closed during sendfile");
    return err ? err : -ECONNABORTED;
}

/* Waits until the transport's write buffer is empty (asyncio's _make_empty_waiter). */
static int wait_drained(tsendfile_t *st)
{
    for (;;) {
        int rc = check_open(st);
        if (rc < 0 || aev_transport_get_write_buffer_size(st->t) == 0)
            return rc;
        rc = aev_loop_create_future(st->loop, &st->drained);
        if (rc < 0)
            return rc;
        rc = aev_await(st->drained, NULL);
        aev_future_unref(st->drained);
        st->drained = NULL;
        if (rc < 0)
            return rc; /* cancelled */
    }
}

/* The end, however it ended: the file position, the transport given back. */
static void st_finish(tsendfile_t *st)
{
    if (aev__stream_sendfile(st->t) == st)
        aev__stream_set_sendfile(st->t, NULL);
    /* "File position is always updated, even when this method raises an error" */
    (void)lseek(st->file_fd, st->offset + (off_t)st->sent, SEEK_SET);
    aev_transport_unref(st->t);
    free(st);
}

static void st_finish_void(void *arg) /* the task was cancelled before it ran */
{
    st_finish(arg);
}

/* ---- native ------------------------------------------------------------------------------------ */

static int run_native(aev_future_t *self, tsendfile_t *st)
{
    aev_transport_t *t = st->t;
    int was_reading = aev_transport_is_reading(t);
    aev_transport_pause_reading(t);
    int rc = wait_drained(st);
    if (rc == 0) {
        /* transports' sockets are non-blocking (asyncio makes them so): sendfile(2) has no
         * MSG_DONTWAIT */
        int fl = fcntl(t->fd, F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK))
            (void)fcntl(t->fd, F_SETFL, fl | O_NONBLOCK);
        /* the engine leaves the position at offset + sent once it started: start from here,
         * so that it also tells how much went when the engine fails */
        (void)lseek(st->file_fd, st->offset, SEEK_SET);
        aev_sendfile_options_t o = {.offset = st->offset, .count = st->count, .no_fallback = 1};
        st->in_engine = 1;
        ssize_t n = aev_task_sock_sendfile(t->fd, st->file_fd, &o);
        st->in_engine = 0;
        if (n >= 0) {
            st->sent = (size_t)n;
        } else {
            off_t pos = lseek(st->file_fd, 0, SEEK_CUR);
            st->sent = pos > st->offset ? (size_t)(pos - st->offset) : 0;
            rc = (int)n;
            if (rc == AEV_ECANCELLED && st->lost_cancel) {
                aev_task_uncancel(self); /* the lost hook's wake-up, not a cancellation */
                rc = aev_task_cancelling(self) > 0 ? AEV_ECANCELLED : check_open(st);
            } else if (rc == AEV_ESENDFILE_NOT_AVAILABLE) {
                snprintf(st->detail, sizeof st->detail, "the sendfile system call cannot send this file");
            } else if (rc != AEV_ECANCELLED) {
                snprintf(st->detail, sizeof st->detail, "sendfile on the transport's socket failed after %zu bytes",
                         st->sent);
            }
        }
    }
    st->refuse_writes = 0;
    if (was_reading && !st->lost)
        aev_transport_resume_reading(t);
    return rc;
}

/* ---- fallback ------------------------------------------------------------------------------------ */

static tsendfile_t *shim_st(aev_protocol_t *p)
{
    return p->userdata;
}

static int shim_pause_writing(aev_protocol_t *p)
{
    tsendfile_t *st = shim_st(p);
    if (st->write_ready && !aev_future_done(st->write_ready))
        return 0;
    aev_future_unref(st->write_ready); /* woken by a wake-up hook: a new pause needs a new one */
    st->write_ready = NULL;
    return aev_loop_create_future(st->loop, &st->write_ready);
}

static int shim_resume_writing(aev_protocol_t *p)
{
    tsendfile_t *st = shim_st(p);
    aev_future_t *f = st->write_ready;
    if (!f)
        return 0;
    st->write_ready = NULL;
    wake(f);
    aev_future_unref(f);
    return 0;
}

static int shim_connection_lost(aev_protocol_t *p, int error)
{
    aev_protocol_t *orig = shim_st(p)->orig;
    return orig->connection_lost ? orig->connection_lost(orig, error) : 0;
}

static int shim_data_received(aev_protocol_t *p, const void *data, size_t len)
{
    (void)p, (void)data, (void)len;
    return AEV_EINVALID_STATE; /* asyncio: "Invalid state: reading should be paused" */
}

static int shim_eof_received(aev_protocol_t *p)
{
    (void)p;
    return AEV_EINVALID_STATE;
}

/* Waits while the transport is paused (asyncio's _SendfileFallbackProtocol.drain). */
static int drain(tsendfile_t *st)
{
    for (;;) {
        int rc = check_open(st);
        if (rc < 0 || !st->write_ready || aev_future_done(st->write_ready))
            return rc;
        aev_future_t *f = aev_future_ref(st->write_ready);
        rc = aev_await(f, NULL);
        aev_future_unref(f);
        if (rc < 0)
            return rc; /* cancelled */
    }
}

/* Tells the user's protocol what it missed while the shim took the flow control calls. */
static void flow_callback(tsendfile_t *st, int (*cb)(aev_protocol_t *), const char *what)
{
    if (!cb)
        return;
    int rc = cb(st->orig);
    if (rc < 0) {
        aev_exception_context_t ctx = {.message = what, .error = rc, .protocol = st->orig, .transport = st->t};
        aev_loop_call_exception_handler(st->loop, &ctx);
    }
}

/* asyncio's _SendfileFallbackProtocol.restore. */
static void restore(tsendfile_t *st)
{
    if (!st->swapped)
        return;
    st->swapped = 0;
    if (st->write_ready) {
        aev_future_cancel(st->write_ready, NULL);
        aev_future_unref(st->write_ready);
        st->write_ready = NULL;
    }
    if (st->lost) /* connection_lost went to the user's protocol: never touch it again */
        return;
    aev_transport_t *t = st->t;
    aev_transport_set_protocol(t, st->orig);
    if (st->resume_reading)
        aev_transport_resume_reading(t);
    if (st->orig_paused && !t->writing_paused)
        flow_callback(st, st->orig->resume_writing, "protocol.resume_writing() failed");
    else if (!st->orig_paused && t->writing_paused)
        flow_callback(st, st->orig->pause_writing, "protocol.pause_writing() failed");
}

static int run_fallback(tsendfile_t *st)
{
    aev_transport_t *t = st->t;
    int rc = check_open(st);
    if (rc < 0)
        return rc;
    unsigned char *buf = malloc(FALLBACK_CHUNK);
    if (!buf)
        return -ENOMEM;
    st->orig = t->proto;
    st->orig_paused = t->writing_paused;
    st->resume_reading = (uint8_t)aev_transport_is_reading(t);
    aev_transport_pause_reading(t);
    st->shim = (aev_protocol_t){.userdata = st,
                                .connection_lost = shim_connection_lost,
                                .pause_writing = shim_pause_writing,
                                .resume_writing = shim_resume_writing,
                                .data_received = shim_data_received,
                                .eof_received = shim_eof_received};
    aev_transport_set_protocol(t, &st->shim);
    st->swapped = 1;
    if (t->writing_paused)
        rc = aev_loop_create_future(st->loop, &st->write_ready);
    size_t since_yield = 0;
    while (rc == 0) {
        size_t want = FALLBACK_CHUNK;
        if (st->count) {
            if (st->sent >= st->count)
                break;
            if (st->count - st->sent < want)
                want = st->count - st->sent;
        }
        rc = drain(st);
        if (rc < 0)
            break;
        ssize_t r;
        do
            r = pread(st->file_fd, buf, want, st->offset + (off_t)st->sent);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            rc = -errno;
            snprintf(st->detail, sizeof st->detail, "reading the file failed after %zu bytes", st->sent);
            break;
        }
        if (r == 0)
            break; /* end of file */
        rc = aev_transport_write(t, buf, (size_t)r);
        if (rc < 0) {
            snprintf(st->detail, sizeof st->detail, "writing to the transport failed after %zu bytes", st->sent);
            break;
        }
        st->sent += (size_t)r;
        since_yield += (size_t)r;
        if (since_yield >= FALLBACK_YIELD_BYTES) {
            since_yield = 0;
            rc = aev_task_yield();
        }
    }
    free(buf);
    if (rc == 0)
        rc = wait_drained(st);
    restore(st);
    return rc;
}

/* ---- the task ------------------------------------------------------------------------------------ */

static int sendfile_task(aev_future_t *self, void *arg)
{
    tsendfile_t *st = arg;
    int rc = check_open(st);
    if (rc == 0) {
        if (st->try_native) {
            rc = run_native(self, st);
        } else {
            rc = AEV_ESENDFILE_NOT_AVAILABLE;
            snprintf(st->detail, sizeof st->detail, "%s",
                     getenv("AEV_SENDFILE_FORCE_FALLBACK")
                         ? "native sendfile is disabled (AEV_SENDFILE_FORCE_FALLBACK)"
                         : "the transport is not a stream socket: the sendfile system call cannot serve it");
        }
        if (rc == AEV_ESENDFILE_NOT_AVAILABLE && st->fallback) {
            st->detail[0] = '\0';
            /* after the engine, let the loop drop its socket watcher before writing */
            rc = st->try_native ? aev_task_yield() : 0;
            if (rc == 0)
                rc = run_fallback(st);
        }
    }
    size_t sent = st->sent;
    char detail[sizeof st->detail];
    memcpy(detail, st->detail, sizeof detail);
    st_finish(st);
    if (rc == AEV_ECANCELLED)
        return rc;
    if (rc < 0)
        return aev_task_fail(self, rc, detail[0] ? detail : NULL);
    aev_task_return(self, (void *)(intptr_t)sent, NULL);
    return 0;
}

/* 0 if fd is a regular file open for reading, else the error (with a detail). */
static int check_file(int fd)
{
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        aev__set_detail("sendfile: invalid file descriptor %d", fd);
        return -EBADF;
    }
    if (S_ISDIR(sb.st_mode)) {
        aev__set_detail("sendfile: file descriptor %d is a directory, not a regular file", fd);
        return -EISDIR;
    }
    if (!S_ISREG(sb.st_mode)) {
        const char *kind = S_ISFIFO(sb.st_mode)   ? "a pipe"
                           : S_ISSOCK(sb.st_mode) ? "a socket"
                           : S_ISCHR(sb.st_mode)  ? "a character device"
                           : S_ISBLK(sb.st_mode)  ? "a block device"
                                                  : "not a regular file";
        aev__set_detail("sendfile: the file must be a regular file; file descriptor %d is %s", fd, kind);
        return -EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY || (fl & O_PATH)) {
        aev__set_detail("sendfile: file descriptor %d is not open for reading", fd);
        return -EBADF;
    }
    return 0;
}

/* Can sendfile(2) write to this transport's fd? (stream sockets; pipes may later) */
static int native_possible(const aev_transport_t *t)
{
    const char *force = getenv("AEV_SENDFILE_FORCE_FALLBACK"); /* test knob */
    if (force && *force && strcmp(force, "0") != 0)
        return 0;
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(t->fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

int aev_loop_sendfile(aev_loop_t *loop, aev_transport_t *t, int file_fd, int64_t offset, int64_t count,
                      int fallback, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !t || !out)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (t->loop != loop) {
        aev__set_detail("sendfile: the transport belongs to another event loop");
        return -EINVAL;
    }
    if (offset < 0 || count < 0) {
        aev__set_detail(offset < 0 ? "offset must be a non-negative integer (got %jd)"
                                   : "count must be a positive integer or 0 (got %jd)",
                        (intmax_t)(offset < 0 ? offset : count));
        return -EINVAL;
    }
    if (!t->made || t->closing || t->lost || t->fd < 0) {
        aev__set_detail(t->made ? "sendfile: the transport is closing" : "sendfile: the connection is not made yet");
        return AEV_EINVALID_STATE;
    }
    if (aev__stream_sendfile(t)) {
        aev__set_detail("sendfile: a sendfile is already in progress on this transport");
        return AEV_EINVALID_STATE;
    }
    rc = check_file(file_fd);
    if (rc < 0)
        return rc;
    tsendfile_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->loop = loop;
    st->t = t;
    st->file_fd = file_fd;
    st->offset = (off_t)offset;
    st->count = (size_t)count;
    st->fallback = fallback ? 1 : 0;
    st->try_native = (uint8_t)native_possible(t);
    st->refuse_writes = st->try_native;
    rc = aev__stream_set_sendfile(t, st); /* first: the only step after the task that can fail */
    if (rc == 0)
        rc = aev_task_new(loop, &(aev_task_options_t){.name = "sendfile"}, sendfile_task, st, out);
    if (rc < 0) {
        aev__stream_set_sendfile(t, NULL);
        free(st);
        return rc;
    }
    ((aev__task_t *)*out)->arg_destroy = st_finish_void;
    st->task = *out;
    aev_transport_ref(t);
    return 0;
}
