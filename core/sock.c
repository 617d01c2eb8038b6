/* libaev core - working with sockets directly, the future forms
 * (loop.sock_recv, sock_recvfrom, sock_sendall, sock_sendto, sock_connect,
 * sock_accept, sock_sendfile), after CPython's selector_events.py and
 * base_events.py.
 *
 * Each operation checks that the socket is non-blocking, then tries the system
 * call at once. If it would block, an operation state (sock_op_t) is created:
 * it holds the loop's reference on the future and registers a reader or writer
 * (add_reader/add_writer) whose callback, op_ready, retries the call; the
 * operation that finishes removes its watcher and completes the future.
 *
 * Cancellation: a done callback (op_done_cb) removes the watcher and frees the
 * state when the future is completed by someone else (cancelled). Done
 * callbacks run one iteration later, so op_ready also looks at the future first
 * and touches nothing once it is done; a new operation on the same fd and
 * direction takes over at once from a cancelled one whose done callback has
 * not run yet. Hence nothing is read, written or accepted for a cancelled
 * future. The state of a completed operation is freed by whoever ends it: the
 * operation itself (after removing its done callback), op_done_cb, or
 * aev__sock_loop_close() when the loop closes first (every state is on the
 * loop's list, loop->sock_ops).
 *
 * Which watcher belongs to an operation: its handle's callback is op_ready
 * and its argument is the state; this is how a second operation of the same
 * direction on one fd is detected and refused (AEV_EINVALID_STATE). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop_internal.h"
#include "sock_internal.h"

/* ---- the shared checks --------------------------------------------------------- */

int aev__sock_check_nonblocking(int fd)
{
    if (fd < 0) {
        aev__set_detail("invalid file descriptor %d", fd);
        return -EBADF;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
        int e = errno;
        aev__set_detail("file descriptor %d: fcntl(F_GETFL) failed", fd);
        return -e;
    }
    if (!(fl & O_NONBLOCK)) {
        aev__set_detail("the socket must be non-blocking");
        return -EINVAL;
    }
    return 0;
}

/* ---- sendfile ------------------------------------------------------------------ */

/* Bytes one step may send before it lets the loop run other callbacks. */
#define SENDFILE_STEP_BUDGET ((size_t)16 << 20)
/* One sendfile(2) call at most (Linux caps a call at 0x7ffff000 bytes anyway). */
#define SENDFILE_CHUNK ((size_t)1 << 30)
/* Fallback buffer (CPython reads up to 256 KiB blocks). */
#define FALLBACK_BUF ((size_t)64 << 10)

int aev__sendfile_init(aev__sendfile_t *sf, int fd, int file_fd, const aev_sendfile_options_t *opts)
{
    memset(sf, 0, sizeof *sf);
    sf->fd = fd;
    sf->file_fd = file_fd;
    sf->wait_fd = -1;
    int rc = aev__sock_check_nonblocking(fd);
    if (rc < 0)
        return rc;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0) {
        int e = errno;
        aev__set_detail("sock_sendfile: fd %d is not a socket", fd);
        return -e;
    }
    if (type != SOCK_STREAM) {
        aev__set_detail("only SOCK_STREAM type sockets are supported");
        return -EINVAL;
    }
    off_t offset = opts ? opts->offset : 0;
    if (offset < 0) {
        aev__set_detail("offset must be a non-negative integer (got %jd)", (intmax_t)offset);
        return -EINVAL;
    }
    struct stat st;
    if (file_fd < 0 || fstat(file_fd, &st) < 0) {
        aev__set_detail("sock_sendfile: invalid file descriptor %d", file_fd);
        return -EBADF;
    }
    sf->offset = offset;
    sf->no_fallback = opts ? opts->no_fallback : 0;
    size_t count = opts ? opts->count : 0;
    sf->seekable = lseek(file_fd, 0, SEEK_CUR) >= 0;
    if (S_ISREG(st.st_mode)) {
        /* count 0: until the end of the file as it is now (CPython: fstat's size) */
        size_t left = st.st_size > offset ? (size_t)(st.st_size - offset) : 0;
        sf->count = count ? count : left;
    } else {
        /* sendfile(2) serves regular (mmap-able) files: read and send the others */
        sf->fallback = 1;
        sf->why = "not a regular file";
        sf->count = count ? count : SIZE_MAX;
    }
    return 0;
}

static int sendfile_wait(aev__sendfile_t *sf, int fd, uint32_t events)
{
    sf->wait_fd = fd;
    sf->wait_events = events;
    return 0;
}

static int step_native(aev__sendfile_t *sf, size_t *budget)
{
    while (sf->sent < sf->count) {
        if (*budget == 0)
            return sendfile_wait(sf, sf->fd, AEV_POLL_OUT);
        size_t want = sf->count - sf->sent;
        if (want > SENDFILE_CHUNK)
            want = SENDFILE_CHUNK;
        off_t off = sf->offset + (off_t)sf->sent;
        ssize_t n = sendfile(sf->fd, sf->file_fd, &off, want);
        if (n > 0) {
            sf->sent += (size_t)n;
            *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
            continue;
        }
        if (n == 0)
            return 1; /* end of file */
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return sendfile_wait(sf, sf->fd, AEV_POLL_OUT);
        if (sf->sent == 0 && (e == EINVAL || e == ENOSYS || e == ESPIPE || e == EOPNOTSUPP)) {
            /* sendfile(2) cannot serve this pair of files */
            sf->fallback = 1;
            sf->why = "the sendfile system call failed";
            return 2;
        }
        return -e;
    }
    return 1;
}

static int step_fallback(aev__sendfile_t *sf, size_t *budget)
{
    if (!sf->buf) {
        sf->buf = malloc(FALLBACK_BUF);
        if (!sf->buf)
            return -ENOMEM;
    }
    for (;;) {
        if (sf->buf_off < sf->buf_len) {
            ssize_t n = send(sf->fd, sf->buf + sf->buf_off, sf->buf_len - sf->buf_off, MSG_NOSIGNAL);
            if (n >= 0) {
                sf->buf_off += (size_t)n;
                sf->sent += (size_t)n;
                *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
                continue;
            }
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return sendfile_wait(sf, sf->fd, AEV_POLL_OUT);
            return -e;
        }
        if (sf->sent >= sf->count)
            return 1;
        if (*budget == 0)
            return sendfile_wait(sf, sf->fd, AEV_POLL_OUT);
        size_t want = sf->count - sf->sent;
        if (want > FALLBACK_BUF)
            want = FALLBACK_BUF;
        ssize_t r;
        if (sf->seekable) {
            r = pread(sf->file_fd, sf->buf, want, sf->offset + (off_t)sf->sent);
        } else if (sf->offset != 0) {
            return -ESPIPE; /* an offset in a file that has no position */
        } else {
            r = read(sf->file_fd, sf->buf, want);
        }
        if (r == 0)
            return 1; /* end of file */
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return sendfile_wait(sf, sf->file_fd, AEV_POLL_IN); /* a non-blocking pipe */
            return -e;
        }
        sf->buf_len = (size_t)r;
        sf->buf_off = 0;
    }
}

int aev__sendfile_step(aev__sendfile_t *sf)
{
    size_t budget = SENDFILE_STEP_BUDGET;
    sf->started = 1;
    sf->wait_fd = -1;
    sf->wait_events = 0;
    if (!sf->fallback) {
        int rc = step_native(sf, &budget);
        if (rc != 2)
            return rc;
    }
    if (sf->no_fallback)
        return AEV_ESENDFILE_NOT_AVAILABLE;
    return step_fallback(sf, &budget);
}

void aev__sendfile_end(aev__sendfile_t *sf)
{
    /* "File position is always updated, even when this method raises an error" */
    if (sf->started && sf->seekable)
        (void)lseek(sf->file_fd, sf->offset + (off_t)sf->sent, SEEK_SET);
    sf->started = 0;
    free(sf->buf);
    sf->buf = NULL;
    sf->buf_len = sf->buf_off = 0;
}

/* ---- operations in flight ---------------------------------------------------- */

/* sock_connect: connect() not called yet; called and EAGAIN (an AF_UNIX backlog is
 * full: call it again when writable); under way (EINPROGRESS: read SO_ERROR when
 * writable, as CPython's _sock_connect_cb). */
enum { CONNECT_FIRST, CONNECT_AGAIN, CONNECT_IN_PROGRESS };

enum op_kind { OP_RECV, OP_RECVFROM, OP_SENDALL, OP_SENDTO, OP_CONNECT, OP_ACCEPT, OP_SENDFILE };

static const char *const op_names[] = {"sock_recv", "sock_recvfrom", "sock_sendall", "sock_sendto",
                                       "sock_connect", "sock_accept", "sock_sendfile"};

typedef struct aev__sock_op {
    aev_loop_t *loop;
    aev_future_t *fut; /* the loop's reference while in flight */
    struct aev__sock_op *prev, *next;
    int kind;
    int fd;
    int watch_fd;        /* the fd watched, when watch_events != 0 */
    uint32_t watch_events; /* AEV_POLL_IN or AEV_POLL_OUT; 0: not watching */
    int listed;          /* on loop->sock_ops */
    void *buf;           /* recv/recvfrom: into; sendall/sendto: from */
    size_t n;
    size_t pos;          /* sendall: bytes sent */
    size_t *sent;        /* sendall: the caller's progress counter (may be NULL) */
    struct sockaddr *addr; /* recvfrom/accept: the peer's address out (may be NULL) */
    socklen_t *addrlen;
    socklen_t addrcap;   /* *addrlen as given */
    struct sockaddr_storage to; /* sendto/connect: the address */
    socklen_t tolen;
    int connect_state;   /* connect: CONNECT_* */
    aev__sendfile_t sf;
} sock_op_t;

static int op_ready(aev_loop_t *loop, void *arg);
static int op_done_cb(aev_future_t *fut, void *arg);

/* The operation state whose watcher (events) is on fd, or NULL. */
static sock_op_t *op_on(aev_loop_t *loop, int fd, uint32_t events)
{
    if (fd < 0 || fd >= loop->fds_cap)
        return NULL;
    aev_handle_t *h = events == AEV_POLL_IN ? loop->fds[fd].reader : loop->fds[fd].writer;
    if (!h || h->cb != op_ready || (h->flags & AEV__H_CANCELLED))
        return NULL;
    return h->arg;
}

/* Removes op's watcher (only if it is still op's: add_reader may have replaced it). */
static void op_unwatch(sock_op_t *op)
{
    if (!op->watch_events)
        return;
    if (op_on(op->loop, op->watch_fd, op->watch_events) == op) {
        if (op->watch_events == AEV_POLL_IN)
            aev_loop_remove_reader(op->loop, op->watch_fd);
        else
            aev_loop_remove_writer(op->loop, op->watch_fd);
    }
    op->watch_events = 0;
}

/* Refuses a second operation on (fd, events) while one is in flight; one whose
 * future is already done (cancelled, its done callback still to run) gives way. */
static int op_claim(aev_loop_t *loop, int fd, uint32_t events, const char *name)
{
    sock_op_t *other = op_on(loop, fd, events);
    if (!other)
        return 0;
    if (aev_future_done(other->fut)) {
        op_unwatch(other);
        return 0;
    }
    aev__set_detail("%s: fd %d is already used by %s (one %s operation per socket at a time)", name, fd,
                    op_names[other->kind], events == AEV_POLL_IN ? "receiving" : "sending");
    return AEV_EINVALID_STATE;
}

/* Watches (fd, events) for op, replacing its previous watcher if it differs. */
static int op_watch(sock_op_t *op, int fd, uint32_t events)
{
    if (op->watch_events == events && op->watch_fd == fd && op_on(op->loop, fd, events) == op)
        return 0;
    op_unwatch(op);
    int rc = op_claim(op->loop, fd, events, op_names[op->kind]);
    if (rc < 0)
        return rc;
    rc = events == AEV_POLL_IN ? aev_loop_add_reader(op->loop, fd, op_ready, op)
                               : aev_loop_add_writer(op->loop, fd, op_ready, op);
    if (rc < 0)
        return rc;
    op->watch_fd = fd;
    op->watch_events = events;
    return 0;
}

static void op_unlist(sock_op_t *op)
{
    if (!op->listed)
        return;
    if (op->prev)
        op->prev->next = op->next;
    else
        op->loop->sock_ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
    op->listed = 0;
}

static void op_free(sock_op_t *op)
{
    if (op->kind == OP_SENDFILE)
        aev__sendfile_end(&op->sf);
    op_unlist(op);
    aev_future_unref(op->fut);
    free(op);
}

/* Tries the operation once more: 1 done (*res set), 0 must wait (for
 * op_want_fd/op_want_events), or a negative error (*why may name a detail). */
static int op_try(sock_op_t *op, intptr_t *res, const char **why)
{
    for (;;) {
        ssize_t n;
        switch (op->kind) {
        case OP_RECV:
            n = recv(op->fd, op->buf, op->n, 0);
            if (n >= 0) {
                *res = n;
                return 1;
            }
            break;
        case OP_RECVFROM: {
            socklen_t len = op->addrcap;
            n = recvfrom(op->fd, op->buf, op->n, 0, op->addr, op->addr ? &len : NULL);
            if (n >= 0) {
                if (op->addrlen)
                    *op->addrlen = len;
                *res = n;
                return 1;
            }
            break;
        }
        case OP_SENDALL:
            n = 0;
            while (op->pos < op->n) {
                n = send(op->fd, (const char *)op->buf + op->pos, op->n - op->pos, MSG_NOSIGNAL);
                if (n < 0)
                    break;
                op->pos += (size_t)n;
                if (op->sent)
                    *op->sent = op->pos;
            }
            if (op->pos == op->n) {
                *res = (intptr_t)op->n;
                return 1;
            }
            break;
        case OP_SENDTO:
            n = sendto(op->fd, op->buf, op->n, MSG_NOSIGNAL, (const struct sockaddr *)&op->to, op->tolen);
            if (n >= 0) {
                *res = n;
                return 1;
            }
            break;
        case OP_CONNECT:
            if (op->connect_state == CONNECT_IN_PROGRESS) {
                /* writable: the attempt ended, SO_ERROR says how */
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                    return -errno;
                if (err == 0) {
                    *res = 0;
                    return 1;
                }
                if (err == EINPROGRESS || err == EALREADY || err == EINTR)
                    return 0;
                return -err;
            }
            n = connect(op->fd, (const struct sockaddr *)&op->to, op->tolen);
            if (n == 0 || (errno == EISCONN && op->connect_state == CONNECT_AGAIN)) {
                *res = 0;
                return 1;
            }
            if (errno == EINPROGRESS || errno == EALREADY || errno == EINTR) {
                /* EINTR: the connection goes on asynchronously */
                op->connect_state = CONNECT_IN_PROGRESS;
                return 0;
            }
            if (errno == EAGAIN)
                op->connect_state = CONNECT_AGAIN;
            break;
        case OP_ACCEPT: {
            socklen_t len = op->addrcap;
            int cfd = accept4(op->fd, op->addr, op->addr ? &len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (cfd >= 0) {
                if (op->addrlen)
                    *op->addrlen = len;
                *res = cfd;
                return 1;
            }
            n = -1;
            break;
        }
        default: { /* OP_SENDFILE */
            int rc = aev__sendfile_step(&op->sf);
            if (rc == 1)
                *res = (intptr_t)op->sf.sent;
            if (rc == AEV_ESENDFILE_NOT_AVAILABLE)
                *why = op->sf.why;
            return rc;
        }
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return 0;
        return -e;
    }
}

static int op_want_fd(const sock_op_t *op)
{
    return op->kind == OP_SENDFILE ? op->sf.wait_fd : op->fd;
}

static uint32_t op_want_events(const sock_op_t *op)
{
    switch (op->kind) {
    case OP_RECV:
    case OP_RECVFROM:
    case OP_ACCEPT:
        return AEV_POLL_IN;
    case OP_SENDFILE:
        return op->sf.wait_events;
    default:
        return AEV_POLL_OUT;
    }
}

/* Completes the future with the outcome (rc: 1 result, < 0 error) and frees op. */
static void op_finish(sock_op_t *op, int rc, intptr_t res, const char *why)
{
    aev_future_remove_done_callback(op->fut, op_done_cb, op);
    op_unwatch(op);
    if (op->kind == OP_SENDFILE)
        aev__sendfile_end(&op->sf); /* the file position before anyone sees the outcome */
    if (rc < 0)
        aev_future_set_error(op->fut, rc, why);
    else
        aev_future_set_result(op->fut, (void *)res, NULL);
    op_free(op);
}

/* The watcher's callback: the fd is ready, try again. */
static int op_ready(aev_loop_t *loop, void *arg)
{
    (void)loop;
    sock_op_t *op = arg;
    if (aev_future_done(op->fut)) {
        /* cancelled: touch nothing; op_done_cb frees the state */
        op_unwatch(op);
        return 0;
    }
    intptr_t res = 0;
    const char *why = NULL;
    int rc = op_try(op, &res, &why);
    if (rc == 0) {
        rc = op_watch(op, op_want_fd(op), op_want_events(op));
        if (rc == 0)
            return 0;
    }
    op_finish(op, rc, res, why);
    return 0;
}

/* The future was completed by someone else (cancelled): stop at once. */
static int op_done_cb(aev_future_t *fut, void *arg)
{
    (void)fut;
    sock_op_t *op = arg;
    op_unwatch(op);
    op_free(op);
    return 0;
}

void aev__sock_loop_close(aev_loop_t *loop)
{
    /* The watchers are gone already (aev__io_close); done callbacks queued for
     * cancelled futures are discarded by the close, so free every state here. */
    while (loop->sock_ops) {
        sock_op_t *op = loop->sock_ops;
        aev_future_remove_done_callback(op->fut, op_done_cb, op);
        op->watch_events = 0;
        op_free(op);
    }
}

/* ---- starting an operation ------------------------------------------------------ */

/* Checks what every operation needs; on success *out is NULL and op is allocated. */
static int op_new(aev_loop_t *loop, int kind, int fd, aev_future_t **out, sock_op_t **opp)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    *opp = NULL;
    if (!loop)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    rc = aev__sock_check_nonblocking(fd);
    if (rc < 0)
        return rc;
    sock_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return -ENOMEM;
    op->loop = loop;
    op->kind = kind;
    op->fd = fd;
    op->watch_fd = -1;
    *opp = op;
    return 0;
}

/* Tries op at once; if it must wait, puts it in flight. Gives the caller the future. */
static int op_start(sock_op_t *op, aev_future_t **out)
{
    aev_loop_t *loop = op->loop;
    /* sendfile starts on the socket's writer side (op_want_events says so once it waits) */
    uint32_t first = op->kind == OP_SENDFILE ? AEV_POLL_OUT : op_want_events(op);
    int rc = op_claim(loop, op->fd, first, op_names[op->kind]);
    if (rc == 0)
        rc = aev_loop_create_future(loop, &op->fut);
    if (rc < 0) {
        if (op->kind == OP_SENDFILE)
            aev__sendfile_end(&op->sf);
        free(op);
        return rc;
    }
    *out = aev_future_ref(op->fut); /* the caller's; op->fut is the loop's */
    intptr_t res = 0;
    const char *why = NULL;
    rc = op_try(op, &res, &why);
    if (rc == 0)
        rc = aev_future_add_done_callback(op->fut, op_done_cb, op);
    if (rc == 0) {
        op->next = loop->sock_ops;
        if (op->next)
            op->next->prev = op;
        loop->sock_ops = op;
        op->listed = 1;
        rc = op_watch(op, op_want_fd(op), op_want_events(op));
        if (rc == 0)
            return 0;
    }
    op_finish(op, rc, res, why);
    return 0;
}

int aev_loop_sock_recv(aev_loop_t *loop, int fd, void *buf, size_t n, aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_RECV, fd, out, &op);
    if (rc < 0)
        return rc;
    if (!buf && n) {
        free(op);
        aev__set_detail("sock_recv: NULL buffer");
        return -EINVAL;
    }
    op->buf = buf;
    op->n = n;
    return op_start(op, out);
}

int aev_loop_sock_recvfrom(aev_loop_t *loop, int fd, void *buf, size_t n, struct sockaddr *addr,
                           socklen_t *addrlen, aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_RECVFROM, fd, out, &op);
    if (rc < 0)
        return rc;
    if ((!buf && n) || (addr && !addrlen)) {
        free(op);
        aev__set_detail("sock_recvfrom: %s", addr && !addrlen ? "addr without addrlen" : "NULL buffer");
        return -EINVAL;
    }
    op->buf = buf;
    op->n = n;
    op->addr = addrlen ? addr : NULL;
    op->addrlen = addr ? addrlen : NULL;
    op->addrcap = op->addrlen ? *addrlen : 0;
    return op_start(op, out);
}

int aev_loop_sock_sendall(aev_loop_t *loop, int fd, const void *buf, size_t n, size_t *sent,
                          aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_SENDALL, fd, out, &op);
    if (rc < 0)
        return rc;
    if (!buf && n) {
        free(op);
        aev__set_detail("sock_sendall: NULL buffer");
        return -EINVAL;
    }
    op->buf = (void *)(uintptr_t)buf;
    op->n = n;
    op->sent = sent;
    if (sent)
        *sent = 0;
    return op_start(op, out);
}

/* Copies an address into op (sendto, connect). */
static int op_set_to(sock_op_t *op, const struct sockaddr *addr, socklen_t addrlen)
{
    if (!addr || addrlen == 0 || addrlen > sizeof op->to) {
        aev__set_detail("%s: %s", op_names[op->kind], !addr || !addrlen ? "no address" : "address too long");
        free(op);
        return -EINVAL;
    }
    memcpy(&op->to, addr, addrlen);
    op->tolen = addrlen;
    return 0;
}

int aev_loop_sock_sendto(aev_loop_t *loop, int fd, const void *buf, size_t n,
                         const struct sockaddr *addr, socklen_t addrlen, aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_SENDTO, fd, out, &op);
    if (rc < 0)
        return rc;
    if (!buf && n) {
        free(op);
        aev__set_detail("sock_sendto: NULL buffer");
        return -EINVAL;
    }
    rc = op_set_to(op, addr, addrlen);
    if (rc < 0)
        return rc;
    op->buf = (void *)(uintptr_t)buf;
    op->n = n;
    return op_start(op, out);
}

int aev_loop_sock_connect(aev_loop_t *loop, int fd, const struct sockaddr *addr, socklen_t addrlen,
                          aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_CONNECT, fd, out, &op);
    if (rc < 0)
        return rc;
    rc = op_set_to(op, addr, addrlen);
    if (rc < 0)
        return rc;
    return op_start(op, out);
}

int aev_loop_sock_accept(aev_loop_t *loop, int fd, struct sockaddr *addr, socklen_t *addrlen,
                         aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_ACCEPT, fd, out, &op);
    if (rc < 0)
        return rc;
    if (addr && !addrlen) {
        free(op);
        aev__set_detail("sock_accept: addr without addrlen");
        return -EINVAL;
    }
    op->addr = addr;
    op->addrlen = addr ? addrlen : NULL;
    op->addrcap = op->addrlen ? *addrlen : 0;
    return op_start(op, out);
}

int aev_loop_sock_sendfile(aev_loop_t *loop, int fd, int file_fd, const aev_sendfile_options_t *opts,
                           aev_future_t **out)
{
    sock_op_t *op;
    int rc = op_new(loop, OP_SENDFILE, fd, out, &op);
    if (rc < 0)
        return rc;
    rc = aev__sendfile_init(&op->sf, fd, file_fd, opts);
    if (rc < 0) {
        free(op);
        return rc;
    }
    return op_start(op, out);
}
