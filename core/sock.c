/* libaev core - working with sockets directly, the future forms
 * (loop.sock_recv, sock_recvfrom, sock_sendall, sock_sendto, sock_connect,
 * sock_accept, sock_sendfile), after CPython's selector_events.py and
 * base_events.py.
 *
 * Each operation checks that the socket is non-blocking, then tries the system
 * call at once. If it would block, an operation state (sock_op_t) is created:
 * it holds the loop's reference on the future and waits, in one of two ways.
 *
 * Readiness (selector loops, AEV_IO_OPS=readiness, and sock_sendfile always): a
 * reader or writer (add_reader/add_writer) whose callback, op_ready, retries the
 * call; the operation that finishes removes its watcher and completes the
 * future. Which watcher belongs to an operation: its handle's callback is
 * op_ready and its argument is the state.
 *
 * Native (a proactor loop, loop->native_ops): the operation becomes a completion
 * operation (aev__op_t, AEV__OP_COMPLETION_OK) that the engine runs, and its
 * completion carries the result, so no system call is made after the wait. The
 * kernel only ever touches memory of the state, never the caller's: a receive
 * lands in the state's buffer and is copied out at completion; the part of a
 * sendall that must wait is staged in the state's buffer (SEND_STAGE_MAX at a
 * time), a sendto's datagram too, and addresses live in the state. connect goes
 * to the engine without a connect(2) of its own (the kernel's would then see
 * EALREADY); accept gets the peer's address with getpeername(). A receive right
 * after one that came back short goes to the engine without trying recv(2)
 * (the socket is very likely drained: DESIGN, "reads are not retried into
 * EAGAIN"). Each fd has a slot (sock_fd_t) per direction: cur, the operation
 * whose native op is in flight, and next, one that waits for cur to end.
 *
 * Cancellation: a done callback (op_done_cb) stops the operation when the
 * future is completed by someone else (cancelled). Done callbacks run one
 * iteration later, so op_ready also looks at the future first and touches
 * nothing once it is done; a new operation on the same fd and direction takes
 * over at once from a cancelled readiness one whose done callback has not run
 * yet. A native op is cancelled in the engine (by op_done_cb, or by a new
 * operation of its direction, which then waits as next until it has ended);
 * until its final completion the state stays alive (then it is freed there, or
 * by op_done_cb if that runs later). Whatever the kernel still took for a
 * cancelled receive or accept (the cancel raced the data) is kept in the slot's
 * stash and handed to the next receive or accept of that socket, so bytes sent
 * after the cancel returned are never lost; a stash is only handed out while fd
 * is still the same socket (st_dev/st_ino), and accepted connections nobody
 * took are closed with the loop. Bytes of a cancelled send whose completion
 * raced the cancel went out but are not counted in `sent` (the future is done).
 *
 * The state of a completed operation is freed by whoever ends it: the
 * operation itself (after removing its done callback), op_done_cb, the final
 * completion of a cancelled native op, or aev__sock_loop_close() when the loop
 * closes first (every state is on the loop's list). A second operation of the
 * same direction on one fd while one is in flight (readiness watcher, or a
 * slot's cur or next whose future is pending) is refused (AEV_EINVALID_STATE). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_op.h"
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

/* The two directions of a socket: one operation of each at a time. */
enum { DIR_IN = 0, DIR_OUT = 1 };

/* Where a native operation stands on its fd's slot (sock_fd_t). */
enum { SLOT_NONE, SLOT_CUR, SLOT_NEXT };

/* The most a native sendall copies from the caller's buffer at a time. */
#define SEND_STAGE_MAX ((size_t)256 << 10)

typedef struct sock_op {
    aev_loop_t *loop;
    aev_future_t *fut; /* the loop's reference while in flight */
    struct sock_op *prev, *next;
    int kind;
    int fd;
    int watch_fd;        /* the fd watched, when watch_events != 0 */
    uint32_t watch_events; /* AEV_POLL_IN or AEV_POLL_OUT; 0: not watching */
    int listed;          /* on the loop's list */
    void *buf;           /* recv/recvfrom: into; sendall/sendto: from */
    size_t n;
    size_t pos;          /* sendall: bytes sent */
    size_t *sent;        /* sendall: the caller's progress counter (may be NULL) */
    struct sockaddr *addr; /* recvfrom/accept: the peer's address out (may be NULL) */
    socklen_t *addrlen;
    socklen_t addrcap;   /* *addrlen as given */
    struct sockaddr_storage to; /* sendto/connect: the address; native recvfrom: the sender's */
    socklen_t tolen;
    int connect_state;   /* connect: CONNECT_* */
    aev__sendfile_t sf;
    /* ---- native (completion) operations, proactor loops only */
    aev__op_t nop;       /* the completion operation */
    uint8_t native;      /* runs as nop (not over readiness) */
    uint8_t slot;        /* SLOT_*: cur or next of its fd's slot */
    uint8_t orphan;      /* cancelled and its done callback ran: the final done() frees it */
    uint8_t ident;       /* dev/ino hold the socket's identity (taken when it was cancelled) */
    uint8_t task;        /* started by a task form (aev__sock_task_next): see sock_internal.h */
    size_t base;         /* sendall of a task form: *sent counts from here */
    dev_t dev;
    ino_t ino;
    char *kbuf;          /* the core's buffer the kernel reads or writes (never the caller's) */
    size_t kcap, klen, koff; /* kbuf's size; sendall: bytes staged, bytes of them sent */
    struct msghdr msg;   /* recvfrom/sendto */
    struct iovec iov;
} sock_op_t;

/* What a cancelled native receive or accept still got when its final completion came
 * (the kernel had already taken it from the socket): kept for the next operation of the
 * same kind on the socket rather than lost. */
typedef struct stash_item {
    struct stash_item *next;
    int kind;            /* OP_RECV/OP_RECVFROM: bytes; OP_ACCEPT: a connection */
    int result;          /* bytes in data, the new fd, or a negative error */
    int stream;          /* bytes of a stream (a receive may take part of them) */
    char *data;
    size_t off;          /* bytes of data already handed out */
    struct sockaddr_storage addr; /* recvfrom: the sender */
    socklen_t addrlen;
} stash_item_t;

/* One fd's native operations (proactor loops). */
typedef struct sock_fd {
    sock_op_t *cur[2];   /* the operation whose native op is in flight (its future may be done) */
    sock_op_t *next[2];  /* an operation waiting for cur's cancelled op to end */
    stash_item_t *stash, *stash_tail;
    dev_t dev;           /* the socket the stash came from */
    ino_t ino;
    uint8_t drained;     /* the last receive came back short: the next waits natively at once */
} sock_fd_t;

/* loop->sock_ops: the loop's operations in flight and, on a proactor, its fds' slots. */
struct aev__sock_op {
    sock_op_t *list;
    sock_fd_t *fds;
    int nfds;
};

static int op_ready(aev_loop_t *loop, void *arg);
static int op_done_cb(aev_future_t *fut, void *arg);
static void op_native_done(aev__op_t *nop, int result, unsigned flags);
static void op_go(sock_op_t *op);

#define OP_OF(nopp) ((sock_op_t *)((char *)(nopp) - offsetof(sock_op_t, nop)))

static int op_dir(int kind)
{
    return kind == OP_RECV || kind == OP_RECVFROM || kind == OP_ACCEPT ? DIR_IN : DIR_OUT;
}

static struct aev__sock_op *sock_state(aev_loop_t *loop)
{
    if (!loop->sock_ops)
        loop->sock_ops = calloc(1, sizeof *loop->sock_ops);
    return loop->sock_ops;
}

/* fd's slot, created on demand (NULL: no memory, or none and !create). */
static sock_fd_t *fd_slot(aev_loop_t *loop, int fd, int create)
{
    struct aev__sock_op *s = loop->sock_ops;
    if (fd < 0 || !s)
        return NULL;
    if (fd >= s->nfds) {
        if (!create)
            return NULL;
        int n = s->nfds ? s->nfds : 64;
        while (n <= fd)
            n *= 2;
        sock_fd_t *fds = realloc(s->fds, (size_t)n * sizeof *fds);
        if (!fds)
            return NULL;
        memset(fds + s->nfds, 0, (size_t)(n - s->nfds) * sizeof *fds);
        s->fds = fds;
        s->nfds = n;
    }
    return &s->fds[fd];
}

/* The socket's identity (st_dev, st_ino): 1 if known. */
static int sock_ident(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 1;
}

/* ---- the stash of a cancelled receive's late result ---------------------------------- */

static void stash_pop(sock_fd_t *slot)
{
    stash_item_t *it = slot->stash;
    slot->stash = it->next;
    if (!slot->stash)
        slot->stash_tail = NULL;
    free(it->data);
    free(it);
}

static void stash_drop(sock_fd_t *slot)
{
    while (slot->stash) {
        if (slot->stash->kind == OP_ACCEPT && slot->stash->result >= 0)
            close(slot->stash->result); /* nobody accepted it: the peer sees it closed */
        stash_pop(slot);
    }
}

/* Puts it on slot's stash, which now holds what came from the socket (dev, ino): at the
 * end, or first (it came before anything stashed since). An older socket's stash goes. */
static void stash_add(sock_fd_t *slot, dev_t dev, ino_t ino, stash_item_t *it, int first)
{
    if (slot->stash && (slot->dev != dev || slot->ino != ino))
        stash_drop(slot);
    slot->dev = dev;
    slot->ino = ino;
    if (first) {
        it->next = slot->stash;
        slot->stash = it;
        if (!slot->stash_tail)
            slot->stash_tail = it;
    } else {
        if (slot->stash_tail)
            slot->stash_tail->next = it;
        else
            slot->stash = it;
        slot->stash_tail = it;
    }
}

/* Is fd a stream socket (a receive may then take part of stashed bytes)? */
static int sock_is_stream(int fd)
{
    int type = 0;
    socklen_t tl = sizeof type;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM;
}

/* Keeps what the cancelled op's final completion brought (result >= 0, or an error that
 * the socket reported once); a connection or bytes of another socket are dropped. */
static void stash_keep(sock_op_t *op, int result)
{
    sock_fd_t *slot = fd_slot(op->loop, op->fd, 0);
    if (!op->ident) /* it ended before its cancel was asked */
        op->ident = (uint8_t)sock_ident(op->fd, &op->dev, &op->ino);
    stash_item_t *it = slot && op->ident ? calloc(1, sizeof *it) : NULL;
    if (!it) {
        if (op->kind == OP_ACCEPT && result >= 0)
            close(result);
        return;
    }
    it->kind = op->kind == OP_ACCEPT ? OP_ACCEPT : OP_RECV;
    it->result = result;
    if (it->kind == OP_RECV && result >= 0) {
        it->stream = sock_is_stream(op->fd);
        it->data = op->kbuf; /* the bytes are in the core's buffer already: take it */
        op->kbuf = NULL;
        op->kcap = 0;
        if (op->kind == OP_RECVFROM && op->msg.msg_name) {
            it->addrlen = op->msg.msg_namelen;
            memcpy(&it->addr, &op->to, it->addrlen < sizeof it->addr ? it->addrlen : sizeof it->addr);
        }
    }
    stash_add(slot, op->dev, op->ino, it, 0);
}

void aev__sock_give_back(aev_loop_t *loop, int fd, ssize_t n, const void *data, const struct sockaddr *from,
                         socklen_t fromlen, int accepted)
{
    sock_fd_t *slot = fd_slot(loop, fd, 1);
    stash_item_t *it = slot ? calloc(1, sizeof *it) : NULL;
    char *copy = accepted < 0 && n > 0 ? malloc((size_t)n) : NULL;
    dev_t dev;
    ino_t ino;
    if (!it || (accepted < 0 && n > 0 && !copy) || !sock_ident(fd, &dev, &ino)) {
        free(it);
        free(copy);
        if (accepted >= 0)
            close(accepted); /* as a connection nobody took */
        return;
    }
    it->kind = accepted >= 0 ? OP_ACCEPT : OP_RECV;
    it->result = accepted >= 0 ? accepted : (int)n;
    if (copy)
        memcpy(copy, data, (size_t)n);
    it->data = copy;
    it->stream = sock_is_stream(fd);
    if (from) {
        it->addrlen = fromlen < sizeof it->addr ? fromlen : sizeof it->addr;
        memcpy(&it->addr, from, it->addrlen);
    }
    stash_add(slot, dev, ino, it, 1); /* first: it came before anything stashed since */
}

/* The stash's first item for op's kind, after checking that fd is still the socket it
 * came from; NULL when there is none. */
static stash_item_t *stash_for(sock_op_t *op, sock_fd_t *slot)
{
    if (!slot || !slot->stash)
        return NULL;
    dev_t dev;
    ino_t ino;
    if (!sock_ident(op->fd, &dev, &ino) || dev != slot->dev || ino != slot->ino) {
        stash_drop(slot); /* fd was closed and now is another socket */
        return NULL;
    }
    int want = op->kind == OP_ACCEPT ? OP_ACCEPT : OP_RECV;
    return slot->stash->kind == want ? slot->stash : NULL;
}

/* ---- claiming a direction of an fd ---------------------------------------------------- */

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

static int refuse(const char *name, int fd, const sock_op_t *other, int dir)
{
    aev__set_detail("%s: fd %d is already used by %s (one %s operation per socket at a time)", name, fd,
                    op_names[other->kind], dir == DIR_IN ? "receiving" : "sending");
    return AEV_EINVALID_STATE;
}

/* Refuses a second operation on (fd, events) while one is in flight; one whose
 * future is already done (cancelled, its done callback still to run) gives way. */
static int watch_claim(aev_loop_t *loop, int fd, uint32_t events, const char *name)
{
    sock_op_t *other = op_on(loop, fd, events);
    if (!other)
        return 0;
    if (aev_future_done(other->fut)) {
        op_unwatch(other);
        return 0;
    }
    return refuse(name, fd, other, events == AEV_POLL_IN ? DIR_IN : DIR_OUT);
}

/* Takes op off its fd's slot. */
static void slot_leave(sock_op_t *op)
{
    if (op->slot == SLOT_NONE)
        return;
    sock_fd_t *slot = fd_slot(op->loop, op->fd, 0);
    int d = op_dir(op->kind);
    if (slot && op->slot == SLOT_CUR && slot->cur[d] == op)
        slot->cur[d] = NULL;
    if (slot && op->slot == SLOT_NEXT && slot->next[d] == op)
        slot->next[d] = NULL;
    op->slot = SLOT_NONE;
}

/* Asks the engine to cancel op's native op: 1 while its final completion is still to
 * come (then the kernel may still use kbuf, msg and the address), 0 once it has ended. */
static int op_native_cancel(sock_op_t *op)
{
    if (!aev__op_active(&op->nop))
        return 0;
    if (!op->ident)
        op->ident = (uint8_t)sock_ident(op->fd, &op->dev, &op->ino);
    return aev__op_cancel(op->loop, &op->nop);
}

/* Whether a native op on (fd, direction) can start: 0 now, 1 once the cancelled op still
 * in flight there has ended (op becomes the slot's next), or AEV_EINVALID_STATE. */
static int slot_claim(sock_op_t *op, sock_fd_t *slot)
{
    int d = op_dir(op->kind);
    sock_op_t *nx = slot->next[d];
    if (nx) {
        if (!aev_future_done(nx->fut))
            return refuse(op_names[op->kind], op->fd, nx, d);
        slot->next[d] = NULL; /* cancelled while it waited: its done callback frees it */
        nx->slot = SLOT_NONE;
    }
    sock_op_t *cur = slot->cur[d];
    if (!cur)
        return 0;
    if (!aev_future_done(cur->fut))
        return refuse(op_names[op->kind], op->fd, cur, d);
    if (op_native_cancel(cur) == 0) { /* ended already */
        slot_leave(cur);
        return 0;
    }
    return 1;
}

/* The operation waiting on (fd, d) starts once the cancelled one there has ended. */
static void slot_promote(aev_loop_t *loop, int fd, int d)
{
    sock_fd_t *slot = fd_slot(loop, fd, 0);
    sock_op_t *nx = slot ? slot->next[d] : NULL;
    if (!nx || slot->cur[d])
        return;
    slot->next[d] = NULL;
    nx->slot = SLOT_NONE;
    if (!aev_future_done(nx->fut))
        op_go(nx);
}

/* Watches (fd, events) for op, replacing its previous watcher if it differs. */
static int op_watch(sock_op_t *op, int fd, uint32_t events)
{
    if (op->watch_events == events && op->watch_fd == fd && op_on(op->loop, fd, events) == op)
        return 0;
    op_unwatch(op);
    int rc = watch_claim(op->loop, fd, events, op_names[op->kind]);
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
        op->loop->sock_ops->list = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
    op->listed = 0;
}

static void op_free(sock_op_t *op)
{
    if (op->kind == OP_SENDFILE)
        aev__sendfile_end(&op->sf);
    slot_leave(op);
    op_unlist(op);
    aev_future_unref(op->fut);
    free(op->kbuf);
    free(op);
}

/* ---- one try, and the outcome ------------------------------------------------------- */

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
                    *op->sent = op->base + op->pos;
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
    if (op_native_cancel(op) == 1) {
        /* the kernel may still use the op's buffers: its final completion frees it */
        op->orphan = 1;
        return 0;
    }
    int was_cur = op->slot == SLOT_CUR;
    slot_leave(op);
    op_unwatch(op);
    aev_loop_t *loop = op->loop;
    int fd = op->fd, d = op_dir(op->kind);
    op_free(op);
    if (was_cur)
        slot_promote(loop, fd, d);
    return 0;
}

void aev__sock_loop_close(aev_loop_t *loop)
{
    /* The watchers are gone already (aev__io_close), and so are the native operations
     * (aev__op_completion_close ended them); done callbacks queued for cancelled futures
     * are discarded by the close, so free every state here. */
    struct aev__sock_op *s = loop->sock_ops;
    if (!s)
        return;
    while (s->list) {
        sock_op_t *op = s->list;
        aev_future_remove_done_callback(op->fut, op_done_cb, op);
        op->watch_events = 0;
        op_free(op);
    }
    for (int i = 0; i < s->nfds; i++)
        stash_drop(&s->fds[i]);
    free(s->fds);
    free(s);
    loop->sock_ops = NULL;
}

/* ---- native operations (proactor) ------------------------------------------------------ */

/* Room for n bytes in op's own buffer. */
static int op_kbuf(sock_op_t *op, size_t n)
{
    if (op->kcap >= n && op->kbuf)
        return 0;
    char *b = malloc(n ? n : 1);
    if (!b)
        return -ENOMEM;
    free(op->kbuf);
    op->kbuf = b;
    op->kcap = n ? n : 1;
    return 0;
}

/* Points op's msghdr at its own buffer (op->n bytes) and, with_addr, at its address storage
 * (namelen bytes) for recvfrom and sendto. */
static void op_msg_set(sock_op_t *op, int with_addr, socklen_t namelen)
{
    memset(&op->msg, 0, sizeof op->msg);
    op->iov.iov_base = op->kbuf;
    op->iov.iov_len = op->n;
    op->msg.msg_iov = &op->iov;
    op->msg.msg_iovlen = 1;
    if (with_addr) {
        op->msg.msg_name = &op->to;
        op->msg.msg_namelen = namelen;
    }
}

/* Starts op's native operation. 0, or a negative error (nothing started). */
static int op_submit(sock_op_t *op)
{
    aev__op_t *p = &op->nop;
    p->done = op_native_done;
    p->prepare = NULL;
    p->fd = op->fd;
    p->flags = AEV__OP_COMPLETION_OK;
    int rc = 0;
    switch (op->kind) {
    case OP_RECV:
        /* into the core's buffer: a cancelled receive's late bytes never reach the caller's */
        if ((rc = op_kbuf(op, op->n)) < 0)
            return rc;
        p->opcode = AEV_OP_RECV;
        p->buf = op->kbuf;
        p->len = op->n;
        p->iov = NULL;
        p->iovcnt = 0;
        break;
    case OP_RECVFROM:
        if ((rc = op_kbuf(op, op->n)) < 0)
            return rc;
        op_msg_set(op, op->addr != NULL, sizeof op->to);
        p->opcode = AEV_OP_RECVMSG;
        p->buf = NULL;
        p->len = 0;
        p->msg = &op->msg;
        break;
    case OP_SENDALL:
        if (op->koff == op->klen) { /* stage the next part of the caller's bytes */
            size_t k = op->n - op->pos < SEND_STAGE_MAX ? op->n - op->pos : SEND_STAGE_MAX;
            if ((rc = op_kbuf(op, k)) < 0)
                return rc;
            memcpy(op->kbuf, (const char *)op->buf + op->pos, k);
            op->klen = k;
            op->koff = 0;
        }
        p->opcode = AEV_OP_SEND;
        p->buf = op->kbuf + op->koff;
        p->len = op->klen - op->koff;
        p->iov = NULL;
        p->iovcnt = 0;
        break;
    case OP_SENDTO:
        if (!op->klen) {
            if ((rc = op_kbuf(op, op->n)) < 0)
                return rc;
            memcpy(op->kbuf, op->buf, op->n);
            op->klen = op->n ? op->n : 1;
        }
        op_msg_set(op, 1, op->tolen);
        p->opcode = AEV_OP_SENDMSG;
        p->buf = NULL;
        p->len = 0;
        p->msg = &op->msg;
        break;
    case OP_CONNECT:
        p->opcode = AEV_OP_CONNECT;
        p->buf = NULL;
        p->len = 0;
        p->addr = (const struct sockaddr *)&op->to;
        p->addrlen = op->tolen;
        break;
    case OP_ACCEPT:
        p->opcode = AEV_OP_ACCEPT;
        p->buf = NULL;
        p->len = 1;
        p->iov = NULL;
        p->iovcnt = 0;
        break;
    default:
        return -EINVAL;
    }
    rc = aev__op_submit(op->loop, p);
    if (rc < 0)
        return rc;
    sock_fd_t *slot = fd_slot(op->loop, op->fd, 0);
    if (slot) {
        slot->cur[op_dir(op->kind)] = op;
        op->slot = SLOT_CUR;
    }
    return 0;
}

/* accept: the peer's address the caller asked for (the native accept did not fetch it). */
static void accept_peer(sock_op_t *op, int cfd)
{
    if (!op->addrlen)
        return;
    socklen_t len = op->addrcap;
    if (getpeername(cfd, op->addr, &len) < 0)
        len = 0;
    *op->addrlen = len;
}

/* Hands op the stash's first item: 1 (op finished), or 0 if there is none for it. */
static int op_from_stash(sock_op_t *op, sock_fd_t *slot)
{
    stash_item_t *it = stash_for(op, slot);
    if (!it)
        return 0;
    int rc = 1;
    intptr_t res = it->result;
    if (it->result < 0) {
        rc = it->result;
    } else if (it->kind == OP_ACCEPT) {
        accept_peer(op, it->result);
        it->result = -1; /* the caller's now */
    } else {
        size_t avail = (size_t)it->result - it->off;
        size_t k = avail < op->n ? avail : op->n;
        if (k)
            memcpy(op->buf, it->data + it->off, k);
        it->off += k;
        res = (intptr_t)k;
        if (op->kind == OP_RECVFROM && op->addrlen) {
            *op->addrlen = it->addrlen;
            memcpy(op->addr, &it->addr, it->addrlen < op->addrcap ? it->addrlen : op->addrcap);
        }
        if (it->stream && it->off < (size_t)it->result) {
            op_finish(op, 1, res, NULL); /* the rest stays for the next receive */
            return 1;
        }
    }
    stash_pop(slot);
    op_finish(op, rc, res, NULL);
    return 1;
}

/* A native operation starts on a proactor loop: from the stash, or tried at once (sends,
 * accept, and receives unless the last one came back short), else on the engine. */
static void op_go_native(sock_op_t *op)
{
    sock_fd_t *slot = fd_slot(op->loop, op->fd, 0);
    if (op->kind == OP_RECV || op->kind == OP_RECVFROM || op->kind == OP_ACCEPT) {
        if (op_from_stash(op, slot))
            return;
    }
    intptr_t res = 0;
    int rc = 0;
    int is_recv = op->kind == OP_RECV || op->kind == OP_RECVFROM;
    if (!op->task && op->kind != OP_CONNECT && !(is_recv && slot && slot->drained && op->n > 0)) {
        /* connect goes to the engine at once: the kernel's connect there would see the
         * attempt of a connect(2) made here as EALREADY */
        const char *why = NULL;
        rc = op_try(op, &res, &why);
        if (rc != 0) {
            if (is_recv && slot)
                slot->drained = rc == 1 && res > 0 && (size_t)res < op->n;
            op_finish(op, rc, res, why);
            return;
        }
    }
    rc = op_submit(op);
    if (rc < 0)
        op_finish(op, rc, 0, NULL);
}

/* The native operation's completion. */
static void op_native_done(aev__op_t *nop, int result, unsigned flags)
{
    (void)flags;
    sock_op_t *op = OP_OF(nop);
    aev_loop_t *loop = op->loop;
    if (loop->closed)
        return; /* the loop closes: aev__sock_loop_close frees op, the future stays pending */
    int fd = op->fd, d = op_dir(op->kind);
    if (aev_future_done(op->fut)) {
        /* cancelled, and now it has ended: what the kernel took from the socket after all
         * goes to the next receive or accept */
        if (result != -ECANCELED && d == DIR_IN)
            stash_keep(op, result);
        if (op->task && op->kind == OP_SENDALL && result > 0 && op->sent)
            *op->sent = op->base + op->pos + (size_t)result; /* the task waits for this */
        slot_leave(op);
        if (op->orphan)
            op_free(op); /* its done callback ran already */
        slot_promote(loop, fd, d);
        return;
    }
    if (result == -EAGAIN || result == -EINTR) {
        if (op_submit(op) == 0)
            return;
    }
    slot_leave(op);
    if (result < 0) {
        op_finish(op, result, 0, NULL);
        return;
    }
    sock_fd_t *slot = fd_slot(loop, fd, 0);
    intptr_t res = result;
    switch (op->kind) {
    case OP_RECV:
    case OP_RECVFROM:
        if (result > 0)
            memcpy(op->buf, op->kbuf, (size_t)result);
        if (op->kind == OP_RECVFROM && op->addrlen) {
            socklen_t len = op->msg.msg_namelen;
            memcpy(op->addr, &op->to, len < op->addrcap ? len : op->addrcap);
            *op->addrlen = len;
        }
        if (slot)
            slot->drained = result > 0 && (size_t)result < op->n;
        break;
    case OP_SENDALL:
        op->pos += (size_t)result;
        op->koff += (size_t)result;
        if (op->sent)
            *op->sent = op->base + op->pos;
        if (op->pos < op->n) {
            int rc = op_submit(op);
            if (rc < 0)
                op_finish(op, rc, 0, NULL);
            return;
        }
        res = (intptr_t)op->n;
        break;
    case OP_ACCEPT:
        accept_peer(op, result);
        break;
    default: /* OP_SENDTO, OP_CONNECT */
        break;
    }
    op_finish(op, 1, res, NULL);
}

int aev__sock_native_state(aev_loop_t *loop, int fd, uint32_t dir)
{
    sock_fd_t *slot = fd_slot(loop, fd, 0);
    int d = dir == AEV_POLL_IN ? DIR_IN : DIR_OUT;
    if (!slot || !(slot->cur[d] || slot->next[d] || (d == DIR_IN && slot->stash)))
        return 0;
    return AEV__SOCK_BUSY | (slot->cur[d] && aev_future_done(slot->cur[d]->fut) ? AEV__SOCK_SETTLING : 0);
}

/* ---- starting an operation ------------------------------------------------------ */

static _Thread_local uint8_t task_next; /* aev__sock_task_next() was called */

void aev__sock_task_next(void)
{
    task_next = 1;
}

/* Checks what every operation needs; on success *out is NULL and op is allocated. */
static int op_new(aev_loop_t *loop, int kind, int fd, aev_future_t **out, sock_op_t **opp)
{
    uint8_t task = task_next;
    task_next = 0;
    if (!out)
        return -EINVAL;
    *out = NULL;
    *opp = NULL;
    if (!loop)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    rc = task ? 0 : aev__sock_check_nonblocking(fd);
    if (rc < 0)
        return rc;
    sock_op_t *op = calloc(1, sizeof *op);
    if (!op)
        return -ENOMEM;
    op->loop = loop;
    op->kind = kind;
    op->fd = fd;
    op->watch_fd = -1;
    op->native = loop->native_ops && kind != OP_SENDFILE;
    op->task = task && op->native;
    *opp = op;
    return 0;
}

/* Starts op (claimed, with its future, listed): at once, or it waits. */
static void op_go(sock_op_t *op)
{
    if (op->native) {
        op_go_native(op);
        return;
    }
    intptr_t res = 0;
    const char *why = NULL;
    int rc = op_try(op, &res, &why);
    if (rc == 0) {
        rc = op_watch(op, op_want_fd(op), op_want_events(op));
        if (rc == 0)
            return;
    }
    op_finish(op, rc, res, why);
}

/* Claims op's direction of its fd, creates its future and starts it (or lets it wait for
 * a cancelled native op to end). Gives the caller the future. */
static int op_start(sock_op_t *op, aev_future_t **out)
{
    aev_loop_t *loop = op->loop;
    int d = op_dir(op->kind);
    int rc = watch_claim(loop, op->fd, d == DIR_IN ? AEV_POLL_IN : AEV_POLL_OUT, op_names[op->kind]);
    sock_fd_t *slot = NULL;
    int wait = 0;
    if (rc == 0 && !sock_state(loop))
        rc = -ENOMEM;
    if (rc == 0 && loop->native_ops) {
        /* native operations (and sendfile, which shares the sending direction) */
        slot = fd_slot(loop, op->fd, 1);
        if (!slot)
            rc = -ENOMEM;
        else
            wait = rc = slot_claim(op, slot);
    }
    if (rc >= 0)
        rc = aev_loop_create_future(loop, &op->fut);
    if (rc >= 0)
        rc = aev_future_add_done_callback(op->fut, op_done_cb, op);
    if (rc < 0) {
        if (op->kind == OP_SENDFILE)
            aev__sendfile_end(&op->sf);
        aev_future_unref(op->fut);
        free(op);
        return rc;
    }
    *out = aev_future_ref(op->fut); /* the caller's; op->fut is the loop's */
    struct aev__sock_op *s = loop->sock_ops;
    op->next = s->list;
    if (op->next)
        op->next->prev = op;
    s->list = op;
    op->listed = 1;
    if (wait) {
        slot->next[d] = op;
        op->slot = SLOT_NEXT;
        return 0;
    }
    op_go(op);
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
    op->base = op->task && sent ? *sent : 0;
    if (sent)
        *sent = op->base;
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
