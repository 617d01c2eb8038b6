/* libaev plugin poll/io_uring - the completion engine over Linux io_uring
 * (liburing), serving both halves of the poll ABI:
 *
 *  - readiness: watch() keeps one one-shot IORING_OP_POLL_ADD per watched fd,
 *    re-armed lazily at the next wait() after each reported event while the
 *    interest remains. A re-armed poll on a still-ready fd completes at once,
 *    so the core sees level-triggered readiness, as from epoll. Every poll's
 *    user_data carries the fd and a generation: a completion of a poll that an
 *    interest change or removal replaced is recognised and dropped.
 *  - completion: submit() turns an aev_poll_op_t into one SQE whose user_data
 *    is the op; cancel() queues IORING_OP_ASYNC_CANCEL; provide_buffers() and
 *    return_buffer() manage provided buffer rings.
 *  - wait() queues the re-arms, then makes one io_uring_enter that submits
 *    everything queued since the last call and waits; CQEs beyond `max` stay
 *    in the ring for the next call. wake() writes an eventfd on which a read
 *    request is always armed.
 *
 * Per-operation fallbacks (never per process): multishot accept/recv/poll is
 * emulated by resubmitting a single-shot request after each completion where
 * the kernel lacks it (before 5.19/6.0); provided buffer rings fall back to
 * IORING_OP_PROVIDE_BUFFERS (before 5.19). Options in [poll.io_uring]:
 * entries (SQ size, default 256), multishot = no, buf_ring = no, defer_taskrun = yes. */
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <signal.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "aev/plugin.h"

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define URING_HAVE_VALGRIND 1
#endif
#endif
/* Valgrind (3.19) does not see what the kernel writes into user memory through io_uring,
 * and runs io_uring_enter as a system call that never blocks: holding its big lock, with
 * signals blocked, so a wait in it would never let another thread wake it. Under
 * valgrind the engine therefore marks received bytes defined and blocks in ppoll() on
 * the ring's fd instead (see uring_wait). */
#ifdef URING_HAVE_VALGRIND
#define MARK_DEFINED(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else
#define MARK_DEFINED(p, n) ((void)0)
#define UNDER_VALGRIND() 0
#endif

/* liburing maps and unmaps a ring with raw system calls, which ThreadSanitizer does not see:
 * a loop's ring mapped at the address of another thread's ring, unmapped a moment before,
 * looks to it like a race on the SQ entries. A release when a ring goes and an acquire when
 * one comes, on the addresses of its mappings, order the two for it. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define URING_UNDER_TSAN 1
#endif
#endif
#if !defined(URING_UNDER_TSAN) && defined(__SANITIZE_THREAD__)
#define URING_UNDER_TSAN 1
#endif
#ifdef URING_UNDER_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static void ring_mapped(struct io_uring *ring)
{
    __tsan_acquire(ring->sq.sqes);
    __tsan_acquire(ring->sq.ring_ptr);
    __tsan_acquire(ring->cq.ring_ptr);
}
static void ring_unmapping(struct io_uring *ring)
{
    __tsan_release(ring->sq.sqes);
    __tsan_release(ring->sq.ring_ptr);
    __tsan_release(ring->cq.ring_ptr);
}
#else
#define ring_mapped(ring) ((void)0)
#define ring_unmapping(ring) ((void)0)
#endif

#define DEFAULT_ENTRIES 256u
#define MAX_ENTRIES 32768u

/* user_data: the low 3 bits tag what a CQE belongs to. Ops are pointers (8-byte aligned). */
#define TAG_MASK 7u
#define TAG_OP 0u       /* an aev_poll_op_t */
#define TAG_POLL 1u     /* a readiness poll: fd in bits 3..31, generation in bits 32..63 */
#define TAG_WAKE 2u     /* the read armed on the wake eventfd */
#define TAG_IGNORE 3u   /* poll removals, cancels, buffer provisions: results not needed */
/* liburing's own timeout (LIBURING_UDATA_TIMEOUT, all ones) has tag 7: ignored too. */

/* engine_data of an op: the engine's bits. */
#define OPD_EMULATED_MS 0x1u /* multishot emulated: resubmitted after each completion */
#define OPD_CANCELLED 0x2u   /* cancel() was asked: do not resubmit */

struct fd_state {
    uint32_t interest; /* AEV_POLL_IN|OUT the core wants */
    uint32_t armed;    /* the mask of the poll in flight, 0 if none */
    uint32_t gen;      /* generation of the current registration */
    uint8_t dirty;     /* on the dirty list */
    uint8_t dead;      /* the last poll found the fd closed: no re-arm until watch() */
};

struct buf_group {
    struct buf_group *next;
    uint16_t id;
    int legacy;                 /* IORING_OP_PROVIDE_BUFFERS instead of a ring */
    struct io_uring_buf_ring *br;
    size_t ring_bytes;
    unsigned entries;           /* ring size (power of two) */
    char *base;
    size_t size;
    unsigned count;
};

struct aev_poll_backend {
    const aev_host_t *host;
    struct io_uring ring;
    unsigned sq_entries;
    int wakefd;
    int wake_armed;
    uint64_t wake_buf;
    struct fd_state *fds;
    int fds_cap;
    int *dirty;
    int ndirty, dirty_cap;
    struct __kernel_timespec *op_ts; /* timeout SQEs: one timespec per SQ slot */
    unsigned long inflight;          /* submitted ops whose final CQE was not reaped */
    int native_ms_accept, native_ms_recv, native_ms_poll, use_buf_ring, have_cancel_any;
    struct buf_group *groups;
    int block_in_ppoll; /* under valgrind: see the comment at MARK_DEFINED */
    /* option defer_taskrun: the ring is created disabled and enabled by the first thread that
     * enters it, issuer, which then is the only one that may (IORING_SETUP_SINGLE_ISSUER) */
    int defer_taskrun, ring_disabled;
    pthread_t issuer; /* set once the ring is enabled */
#ifdef AEV_URING_TEST_HOOKS
    unsigned long enters;
#endif
};

#ifdef AEV_URING_TEST_HOOKS
/* Test builds only: how many calls that may enter the kernel the engine made. */
AEV_PLUGIN_EXPORT unsigned long aev_poll_io_uring_test_enters;
#define COUNT_ENTER(b) ((b)->enters++, aev_poll_io_uring_test_enters++)
#else
#define COUNT_ENTER(b) ((void)0)
#endif

/* ---- helpers ---------------------------------------------------------------------- */

static uint64_t poll_ud(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | ((uint64_t)(uint32_t)fd << 3) | TAG_POLL;
}

static unsigned to_poll_mask(uint32_t ev)
{
    return (ev & AEV_POLL_IN ? POLLIN : 0u) | (ev & AEV_POLL_OUT ? POLLOUT : 0u);
}

static uint32_t from_poll_mask(unsigned m)
{
    return (m & POLLIN ? AEV_POLL_IN : 0u) | (m & POLLOUT ? AEV_POLL_OUT : 0u) |
           (m & POLLERR ? AEV_POLL_ERR : 0u) | (m & POLLHUP ? AEV_POLL_HUP : 0u) |
           (m & POLLNVAL ? AEV_POLL_NVAL : 0u);
}

/* Before any io_uring_enter: with defer_taskrun, enables the ring for this thread at the
 * first call and refuses any other thread after (-EEXIST + detail). */
static int ring_enter_check(aev_poll_backend_t *b)
{
    if (!b->defer_taskrun)
        return 0;
    if (b->ring_disabled) {
        /* liburing 2.3 declares io_uring_enable_rings but its library does not export it */
        if (syscall(__NR_io_uring_register, b->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
            int rc = -errno;
            b->host->set_error_detail("io_uring: enabling the ring: %s", strerror(-rc));
            return rc;
        }
        b->ring_disabled = 0;
        b->issuer = pthread_self();
        return 0;
    }
    if (!pthread_equal(b->issuer, pthread_self())) {
        b->host->set_error_detail("io_uring: with defer_taskrun = yes a loop runs only on the "
                                  "thread that first ran it");
        return -EEXIST;
    }
    return 0;
}

/* An SQE; when the SQ is full, what is queued is submitted first (one extra enter). */
static struct io_uring_sqe *get_sqe(aev_poll_backend_t *b)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
    while (!sqe) {
        if (ring_enter_check(b) < 0)
            return NULL;
        COUNT_ENTER(b);
        int rc = io_uring_submit(&b->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            return NULL;
        sqe = io_uring_get_sqe(&b->ring);
        if (!sqe && rc <= 0) {
            /* the kernel takes nothing now (-EBUSY: CQ overflow backlog): let it flush */
            COUNT_ENTER(b);
            if (io_uring_get_events(&b->ring) < 0)
                return NULL;
        }
    }
    return sqe;
}

static int queue_ignored(aev_poll_backend_t *b, struct io_uring_sqe *sqe)
{
    io_uring_sqe_set_data64(sqe, TAG_IGNORE);
    (void)b;
    return 0;
}

static int ensure_fd(aev_poll_backend_t *b, int fd)
{
    if (fd < b->fds_cap)
        return 0;
    int cap = b->fds_cap ? b->fds_cap : 64;
    while (cap <= fd)
        cap *= 2;
    struct fd_state *n = b->host->realloc(b->fds, (size_t)cap * sizeof *n);
    if (!n)
        return -ENOMEM;
    memset(n + b->fds_cap, 0, (size_t)(cap - b->fds_cap) * sizeof *n);
    b->fds = n;
    b->fds_cap = cap;
    return 0;
}

static int mark_dirty(aev_poll_backend_t *b, int fd)
{
    struct fd_state *st = &b->fds[fd];
    if (st->dirty)
        return 0;
    if (b->ndirty == b->dirty_cap) {
        int cap = b->dirty_cap ? b->dirty_cap * 2 : 64;
        int *n = b->host->realloc(b->dirty, (size_t)cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        b->dirty = n;
        b->dirty_cap = cap;
    }
    b->dirty[b->ndirty++] = fd;
    st->dirty = 1;
    return 0;
}

/* Takes back the poll in flight for fd (its late completion carries an old generation). */
static int disarm(aev_poll_backend_t *b, int fd)
{
    struct fd_state *st = &b->fds[fd];
    if (st->armed) {
        struct io_uring_sqe *sqe = get_sqe(b);
        if (!sqe)
            return -EIO;
        io_uring_prep_poll_remove(sqe, poll_ud(fd, st->gen));
        queue_ignored(b, sqe);
        st->armed = 0;
    }
    st->gen++;
    return 0;
}

static int arm(aev_poll_backend_t *b, int fd)
{
    struct fd_state *st = &b->fds[fd];
    struct io_uring_sqe *sqe = get_sqe(b);
    if (!sqe)
        return -EIO;
    io_uring_prep_poll_add(sqe, fd, to_poll_mask(st->interest));
    io_uring_sqe_set_data64(sqe, poll_ud(fd, st->gen));
    st->armed = st->interest;
    return 0;
}

static int arm_wake(aev_poll_backend_t *b)
{
    struct io_uring_sqe *sqe = get_sqe(b);
    if (!sqe)
        return -EIO;
    io_uring_prep_read(sqe, b->wakefd, &b->wake_buf, sizeof b->wake_buf, 0);
    io_uring_sqe_set_data64(sqe, TAG_WAKE);
    b->wake_armed = 1;
    return 0;
}

static const char *opt(const aev_host_t *host, const aev_plugin_context_t *ctx, const char *key)
{
    return ctx && host->option ? host->option(ctx, key) : NULL;
}

static int opt_off(const char *v)
{
    return v && (!strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "false"));
}

/* ---- create / destroy ------------------------------------------------------------- */

static int setup_ring(aev_poll_backend_t *b, unsigned entries)
{
    /* Flag sets tried in order: the newest kernels first, then what 5.5 has. The first
     * (6.1) only with the option defer_taskrun: completions are then posted only inside the
     * loop's own io_uring_enter, never by interrupting it, but one thread owns the ring. */
    static const unsigned flag_sets[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
            IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL,
        IORING_SETUP_CQSIZE,
    };
    int rc = -EINVAL;
    /* Cooperative task running defers completions to the next io_uring_enter, which a
     * ppoll() on the ring (valgrind) would not make: not under valgrind. */
    size_t first = b->block_in_ppoll ? 2 : b->defer_taskrun ? 0 : 1;
    for (size_t i = first; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = flag_sets[i];
        p.cq_entries = entries * 4; /* the CQ holds at least twice the SQ */
        rc = io_uring_queue_init_params(entries, &b->ring, &p);
        if (rc == 0) {
            b->defer_taskrun = b->ring_disabled = i == 0;
            ring_mapped(&b->ring);
            return 0;
        }
        if (rc != -EINVAL)
            break;
    }
    return rc;
}

static void probe_kernel_features(aev_poll_backend_t *b)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(&b->ring);
    int have_socket = p && io_uring_opcode_supported(p, IORING_OP_SOCKET);   /* Linux 5.19 */
    int have_send_zc = p && io_uring_opcode_supported(p, IORING_OP_SEND_ZC); /* Linux 6.0 */
    if (p)
        io_uring_free_probe(p);
    /* No feature bit tells of multishot requests or buffer rings: opcodes of the same
     * release stand in for them (multishot accept and buffer rings came with 5.19,
     * multishot recv with 6.0). Multishot poll is 5.13, older than IORING_OP_SOCKET. */
    b->native_ms_accept = have_socket;
    b->native_ms_poll = have_socket;
    b->native_ms_recv = have_send_zc;
    b->use_buf_ring = have_socket;
    b->have_cancel_any = have_socket; /* IORING_ASYNC_CANCEL_ANY: 5.19 */
}

static int uring_create(const aev_host_t *host, const aev_plugin_context_t *ctx,
                        aev_poll_backend_t **out)
{
    aev_poll_backend_t *b = host->alloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    memset(b, 0, sizeof *b);
    b->host = host;
    b->wakefd = -1;

    unsigned entries = DEFAULT_ENTRIES;
    const char *v = opt(host, ctx, "entries");
    if (v) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*v < '0' || *v > '9' || *end || n < 2 || n > MAX_ENTRIES) {
            host->set_error_detail("[poll.io_uring] entries = \"%s\": expected a number from 2 to %u",
                                   v, MAX_ENTRIES);
            host->free(b);
            return -EINVAL;
        }
        entries = (unsigned)n;
    }
    b->block_in_ppoll = UNDER_VALGRIND();
    v = opt(host, ctx, "defer_taskrun");
    if (v && !opt_off(v) && strcmp(v, "yes") && strcmp(v, "on") && strcmp(v, "1") && strcmp(v, "true")) {
        host->set_error_detail("[poll.io_uring] defer_taskrun = \"%s\": expected yes or no", v);
        host->free(b);
        return -EINVAL;
    }
    b->defer_taskrun = v && !opt_off(v);
    int rc = setup_ring(b, entries);
    if (rc < 0) {
        host->set_error_detail("io_uring_setup(%u entries): %s", entries, strerror(-rc));
        host->free(b);
        return rc;
    }
    b->sq_entries = b->ring.sq.ring_entries;
    probe_kernel_features(b);
    if (opt_off(opt(host, ctx, "multishot")))
        b->native_ms_accept = b->native_ms_recv = b->native_ms_poll = 0;
    if (opt_off(opt(host, ctx, "buf_ring")))
        b->use_buf_ring = 0;

    b->op_ts = host->alloc((size_t)b->sq_entries * sizeof *b->op_ts);
    /* Blocking: io_uring's read on an O_NONBLOCK file may fail with EAGAIN instead of waiting.
     * wake() never blocks on it all the same (the counter would have to reach 2^64 - 1). */
    b->wakefd = eventfd(0, EFD_CLOEXEC);
    if (!b->op_ts || b->wakefd < 0) {
        rc = b->op_ts ? -errno : -ENOMEM;
        host->set_error_detail("io_uring engine: %s", b->op_ts ? "eventfd failed" : "out of memory");
        if (b->wakefd >= 0)
            close(b->wakefd);
        host->free(b->op_ts);
        ring_unmapping(&b->ring);
        io_uring_queue_exit(&b->ring);
        host->free(b);
        return rc;
    }
    *out = b;
    return 0;
}

static void free_group(aev_poll_backend_t *b, struct buf_group *g)
{
    if (g->br)
        munmap(g->br, g->ring_bytes);
    b->host->free(g);
}

static void uring_destroy(aev_poll_backend_t *b)
{
    /* Operations still in flight own user memory: cancel them and let the kernel finish
     * with them before the ring goes (their completions are not reported any more). */
    if (b->inflight > 0 && b->have_cancel_any && ring_enter_check(b) == 0) {
        struct io_uring_sqe *sqe = get_sqe(b);
        if (sqe) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            queue_ignored(b, sqe);
        }
        for (int rounds = 0; b->inflight > 0 && rounds < 100; rounds++) {
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10000000};
            struct io_uring_cqe *cqe;
            (void)io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, &ts, NULL);
            unsigned head, seen = 0;
            io_uring_for_each_cqe(&b->ring, head, cqe) {
                seen++;
                if ((cqe->user_data & TAG_MASK) == TAG_OP && !(cqe->flags & IORING_CQE_F_MORE))
                    b->inflight--;
            }
            io_uring_cq_advance(&b->ring, seen);
        }
    }
    ring_unmapping(&b->ring);
    io_uring_queue_exit(&b->ring);
    close(b->wakefd);
    while (b->groups) {
        struct buf_group *g = b->groups;
        b->groups = g->next;
        free_group(b, g);
    }
    b->host->free(b->op_ts);
    b->host->free(b->fds);
    b->host->free(b->dirty);
    b->host->free(b);
}

/* ---- readiness -------------------------------------------------------------------- */

static int uring_watch(aev_poll_backend_t *b, int fd, uint32_t old_events, uint32_t new_events)
{
    (void)old_events; /* the engine keeps its own view */
    if (fd < 0 || fd == b->wakefd)
        return -EBADF;
    new_events &= AEV_POLL_IN | AEV_POLL_OUT;
    if (fd >= b->fds_cap && new_events == 0)
        return 0;
    int rc = ensure_fd(b, fd);
    if (rc < 0)
        return rc;
    struct fd_state *st = &b->fds[fd];
    if (new_events == st->interest)
        return 0;
    if (new_events == 0) {
        /* Eagerly: the number may be closed and reused before the next wait(). */
        rc = disarm(b, fd);
        st->interest = 0;
        st->dead = 0;
        return rc;
    }
    if (st->interest == 0 && fcntl(fd, F_GETFD) < 0)
        return -errno;
    rc = mark_dirty(b, fd);
    if (rc < 0)
        return rc;
    st->interest = new_events;
    st->dead = 0;
    return 0;
}

/* Queues the polls that wait() owes: new registrations, changed masks, re-arms. */
static int flush_dirty(aev_poll_backend_t *b)
{
    int rc = 0, i;
    for (i = 0; i < b->ndirty; i++) {
        int fd = b->dirty[i];
        struct fd_state *st = &b->fds[fd];
        if (st->interest && !st->dead && st->armed != st->interest) {
            if ((st->armed && (rc = disarm(b, fd)) < 0) || (rc = arm(b, fd)) < 0)
                break; /* this fd and the rest stay on the list for the next wait() */
        }
        st->dirty = 0;
    }
    if (i > 0) {
        b->ndirty -= i;
        if (b->ndirty > 0)
            memmove(b->dirty, b->dirty + i, (size_t)b->ndirty * sizeof *b->dirty);
    }
    return rc;
}

/* ---- completion operations -------------------------------------------------------- */

/* A read or write of one buffer moves at most 1 GiB per operation (the SQE's length is 32
 * bits; the kernel moves less than 2 GiB per call anyway): a short count, never a wrapped one. */
static unsigned rw_len(size_t len)
{
    return len > (1u << 30) ? (1u << 30) : (unsigned)len;
}

static int prep_op(aev_poll_backend_t *b, aev_poll_op_t *op, struct io_uring_sqe *sqe)
{
    uint32_t opd = (uint32_t)(uintptr_t)op->engine_data;
    int ms = (op->flags & AEV_OP_F_MULTISHOT) && !(opd & OPD_EMULATED_MS);
    int bs = (op->flags & AEV_OP_F_BUFFER_SELECT) != 0;
    int64_t off = op->offset < 0 ? -1 : op->offset;

    switch (op->opcode) {
    case AEV_OP_NOP:
        io_uring_prep_nop(sqe);
        break;
    case AEV_OP_RECV:
        if (ms)
            io_uring_prep_recv_multishot(sqe, op->fd, NULL, 0, op->msg_flags);
        else
            io_uring_prep_recv(sqe, op->fd, bs ? NULL : op->buf, op->len, op->msg_flags);
        break;
    case AEV_OP_SEND:
        io_uring_prep_send(sqe, op->fd, op->buf, op->len, op->msg_flags);
        break;
    case AEV_OP_RECVMSG:
        io_uring_prep_recvmsg(sqe, op->fd, op->msg, (unsigned)op->msg_flags);
        break;
    case AEV_OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, op->msg, (unsigned)op->msg_flags);
        break;
    case AEV_OP_READV:
        if (bs)
            io_uring_prep_read(sqe, op->fd, NULL, (unsigned)op->len, (uint64_t)off);
        else if (op->iovcnt == 0) /* one buffer: buf, len (read(2)) */
            io_uring_prep_read(sqe, op->fd, op->buf, rw_len(op->len), (uint64_t)off);
        else
            io_uring_prep_readv(sqe, op->fd, op->iov, op->iovcnt, (uint64_t)off);
        break;
    case AEV_OP_WRITEV:
        if (op->iovcnt == 0) /* one buffer: buf, len (write(2)) */
            io_uring_prep_write(sqe, op->fd, op->buf, rw_len(op->len), (uint64_t)off);
        else
            io_uring_prep_writev(sqe, op->fd, op->iov, op->iovcnt, (uint64_t)off);
        break;
    case AEV_OP_ACCEPT:
        if (ms)
            io_uring_prep_multishot_accept(sqe, op->fd, op->addr, op->addrlen_inout, op->sock_flags);
        else
            io_uring_prep_accept(sqe, op->fd, op->addr, op->addrlen_inout, op->sock_flags);
        break;
    case AEV_OP_CONNECT:
        io_uring_prep_connect(sqe, op->fd, op->addr, op->addrlen);
        break;
    case AEV_OP_POLL:
        if (ms)
            io_uring_prep_poll_multishot(sqe, op->fd, to_poll_mask(op->poll_events));
        else
            io_uring_prep_poll_add(sqe, op->fd, to_poll_mask(op->poll_events));
        break;
    case AEV_OP_TIMEOUT: {
        /* The kernel reads the timespec at submission: it lives in the SQE's slot. */
        unsigned slot = (unsigned)(sqe - b->ring.sq.sqes);
        struct __kernel_timespec *ts = &b->op_ts[slot];
        int64_t ns = op->timeout_ns < 0 ? 0 : op->timeout_ns;
        ts->tv_sec = ns / 1000000000;
        ts->tv_nsec = ns % 1000000000;
        io_uring_prep_timeout(sqe, ts, 0, 0);
        break;
    }
    case AEV_OP_SPLICE:
        io_uring_prep_splice(sqe, op->fd, off, op->fd_out, -1, (unsigned)op->len, 0);
        break;
    case AEV_OP_CLOSE:
        io_uring_prep_close(sqe, op->fd);
        break;
    default:
        return -EINVAL;
    }
    if (bs) {
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = op->buf_group;
    }
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

static int check_op(aev_poll_backend_t *b, const aev_poll_op_t *op)
{
    const aev_host_t *h = b->host;
    if (((uintptr_t)op & TAG_MASK) != 0) {
        h->set_error_detail("io_uring: operation %p is not 8-byte aligned", (const void *)op);
        return -EINVAL;
    }
    if (op->opcode > AEV_OP_CLOSE) {
        h->set_error_detail("io_uring: unknown opcode %u", op->opcode);
        return -EINVAL;
    }
    if ((op->flags & AEV_OP_F_MULTISHOT) && op->opcode != AEV_OP_ACCEPT &&
        op->opcode != AEV_OP_RECV && op->opcode != AEV_OP_POLL) {
        h->set_error_detail("io_uring: AEV_OP_F_MULTISHOT applies to ACCEPT, RECV and POLL only");
        return -EINVAL;
    }
    if ((op->flags & AEV_OP_F_MULTISHOT) && op->opcode == AEV_OP_RECV &&
        !(op->flags & AEV_OP_F_BUFFER_SELECT)) {
        h->set_error_detail("io_uring: a multishot RECV needs AEV_OP_F_BUFFER_SELECT");
        return -EINVAL;
    }
    if ((op->flags & AEV_OP_F_BUFFER_SELECT) && op->opcode != AEV_OP_RECV &&
        op->opcode != AEV_OP_READV && op->opcode != AEV_OP_RECVMSG) {
        h->set_error_detail("io_uring: AEV_OP_F_BUFFER_SELECT applies to RECV, READV and RECVMSG only");
        return -EINVAL;
    }
    /* RECVMSG with a provided buffer: the kernel fills one iovec, whose length caps the
     * receive (its base is ignored) */
    if ((op->flags & AEV_OP_F_BUFFER_SELECT) && op->opcode == AEV_OP_RECVMSG &&
        (!op->msg || op->msg->msg_iovlen > 1)) {
        h->set_error_detail("io_uring: a RECVMSG with AEV_OP_F_BUFFER_SELECT needs a msghdr of at most one iovec");
        return -EINVAL;
    }
    if (op->flags & ~(AEV_OP_F_MULTISHOT | AEV_OP_F_BUFFER_SELECT)) {
        h->set_error_detail("io_uring: unknown operation flags 0x%x", op->flags);
        return -EINVAL;
    }
    return 0;
}

static int uring_submit(aev_poll_backend_t *b, aev_poll_op_t *op)
{
    if (!op)
        return -EINVAL;
    int rc = check_op(b, op);
    if (rc < 0)
        return rc;
    uint32_t opd = 0;
    if (op->flags & AEV_OP_F_MULTISHOT) {
        int native = op->opcode == AEV_OP_ACCEPT ? b->native_ms_accept
                     : op->opcode == AEV_OP_RECV ? b->native_ms_recv
                                                 : b->native_ms_poll;
        if (!native)
            opd |= OPD_EMULATED_MS;
    }
    op->engine_data = (void *)(uintptr_t)opd;
    struct io_uring_sqe *sqe = get_sqe(b);
    if (!sqe)
        return -EIO;
    rc = prep_op(b, op, sqe);
    if (rc < 0) {
        io_uring_prep_nop(sqe); /* the slot is taken: fill it harmlessly */
        queue_ignored(b, sqe);
        return rc;
    }
    b->inflight++;
    return 0;
}

static int uring_cancel(aev_poll_backend_t *b, aev_poll_op_t *op)
{
    if (!op)
        return -EINVAL;
    op->engine_data = (void *)((uintptr_t)op->engine_data | OPD_CANCELLED);
    struct io_uring_sqe *sqe = get_sqe(b);
    if (!sqe)
        return -EIO;
    io_uring_prep_cancel(sqe, op, 0);
    queue_ignored(b, sqe);
    return 0;
}

static struct buf_group *find_group(aev_poll_backend_t *b, uint16_t id, struct buf_group ***link)
{
    struct buf_group **pp = &b->groups;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id)
            break;
    if (link)
        *link = pp;
    return *pp;
}

static int remove_group(aev_poll_backend_t *b, uint16_t id)
{
    struct buf_group **link;
    struct buf_group *g = find_group(b, id, &link);
    if (!g)
        return -ENOENT;
    if (g->legacy) {
        struct io_uring_sqe *sqe = get_sqe(b);
        if (!sqe)
            return -EIO;
        io_uring_prep_remove_buffers(sqe, (int)g->count, id);
        queue_ignored(b, sqe);
    } else {
        int rc = io_uring_unregister_buf_ring(&b->ring, id);
        if (rc < 0)
            return rc;
    }
    *link = g->next;
    free_group(b, g);
    return 0;
}

static int uring_provide_buffers(aev_poll_backend_t *b, uint16_t buf_group, void *base, size_t size,
                                 unsigned count)
{
    const aev_host_t *h = b->host;
    if (count == 0)
        return remove_group(b, buf_group);
    if (!base || size == 0 || size > UINT32_MAX || count > 32768) {
        h->set_error_detail("io_uring: provide_buffers needs a base, a size of 1 B..4 GiB and "
                            "at most 32768 buffers");
        return -EINVAL;
    }
    if (find_group(b, buf_group, NULL)) {
        h->set_error_detail("io_uring: buffer group %u is already provided", buf_group);
        return -EEXIST;
    }
    struct buf_group *g = h->alloc(sizeof *g);
    if (!g)
        return -ENOMEM;
    memset(g, 0, sizeof *g);
    g->id = buf_group;
    g->base = base;
    g->size = size;
    g->count = count;
    g->entries = 1;
    while (g->entries < count)
        g->entries <<= 1;
    int rc = -EINVAL;
    if (b->use_buf_ring) {
        g->ring_bytes = (size_t)g->entries * sizeof(struct io_uring_buf);
        void *mem = mmap(NULL, g->ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (mem == MAP_FAILED) {
            h->free(g);
            return -ENOMEM;
        }
        g->br = mem;
        io_uring_buf_ring_init(g->br);
        struct io_uring_buf_reg reg;
        memset(&reg, 0, sizeof reg);
        reg.ring_addr = (uint64_t)(uintptr_t)g->br;
        reg.ring_entries = g->entries;
        reg.bgid = buf_group;
        rc = io_uring_register_buf_ring(&b->ring, &reg, 0);
        if (rc == 0) {
            int mask = io_uring_buf_ring_mask(g->entries);
            for (unsigned i = 0; i < count; i++)
                io_uring_buf_ring_add(g->br, g->base + (size_t)i * size, (unsigned)size,
                                      (unsigned short)i, mask, (int)i);
            io_uring_buf_ring_advance(g->br, (int)count);
        } else {
            munmap(g->br, g->ring_bytes);
            g->br = NULL;
            if (rc != -EINVAL) {
                h->set_error_detail("io_uring_register_buf_ring: %s", strerror(-rc));
                h->free(g);
                return rc;
            }
        }
    }
    if (rc != 0) {
        /* no buffer rings here: the classic provision, one SQE for the whole group */
        struct io_uring_sqe *sqe = get_sqe(b);
        if (!sqe) {
            h->free(g);
            return -EIO;
        }
        io_uring_prep_provide_buffers(sqe, base, (int)size, (int)count, buf_group, 0);
        queue_ignored(b, sqe);
        g->legacy = 1;
    }
    g->next = b->groups;
    b->groups = g;
    return 0;
}

static int uring_return_buffer(aev_poll_backend_t *b, uint16_t buf_group, uint32_t buffer_id)
{
    struct buf_group *g = find_group(b, buf_group, NULL);
    if (!g || buffer_id >= g->count) {
        b->host->set_error_detail("io_uring: no buffer %u in group %u", buffer_id, buf_group);
        return g ? -EINVAL : -ENOENT;
    }
    char *addr = g->base + (size_t)buffer_id * g->size;
    if (g->legacy) {
        struct io_uring_sqe *sqe = get_sqe(b);
        if (!sqe)
            return -EIO;
        io_uring_prep_provide_buffers(sqe, addr, (int)g->size, 1, buf_group, (int)buffer_id);
        queue_ignored(b, sqe);
        return 0;
    }
    io_uring_buf_ring_add(g->br, addr, (unsigned)g->size, (unsigned short)buffer_id,
                          io_uring_buf_ring_mask(g->entries), 0);
    io_uring_buf_ring_advance(g->br, 1);
    return 0;
}

/* Tells valgrind what the kernel wrote for a successful receive. */
static void mark_received(aev_poll_backend_t *b, const aev_poll_op_t *op, const struct io_uring_cqe *cqe)
{
#ifdef URING_HAVE_VALGRIND
    if (!RUNNING_ON_VALGRIND || cqe->res < 0)
        return;
    size_t n = (size_t)cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        struct buf_group *g = find_group(b, op->buf_group, NULL);
        unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (g && id < g->count)
            MARK_DEFINED(g->base + (size_t)id * g->size, n < g->size ? n : g->size);
        if (op->opcode == AEV_OP_RECVMSG) { /* the header and the sender's address too */
            MARK_DEFINED(op->msg, sizeof *op->msg);
            if (op->msg->msg_name)
                MARK_DEFINED(op->msg->msg_name, op->msg->msg_namelen);
        }
        return;
    }
    switch (op->opcode) {
    case AEV_OP_RECV:
        MARK_DEFINED(op->buf, n);
        break;
    case AEV_OP_READV:
        if (op->iovcnt == 0) { /* one buffer */
            MARK_DEFINED(op->buf, n < op->len ? n : op->len);
            break;
        }
        /* fall through */
    case AEV_OP_RECVMSG: {
        const struct iovec *iov = op->opcode == AEV_OP_READV ? op->iov : op->msg->msg_iov;
        size_t cnt = op->opcode == AEV_OP_READV ? op->iovcnt : op->msg->msg_iovlen;
        for (size_t i = 0; i < cnt && n > 0; i++) {
            size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
            MARK_DEFINED(iov[i].iov_base, k);
            n -= k;
        }
        if (op->opcode == AEV_OP_RECVMSG) {
            MARK_DEFINED(op->msg, sizeof *op->msg);
            if (op->msg->msg_name)
                MARK_DEFINED(op->msg->msg_name, op->msg->msg_namelen);
            if (op->msg->msg_control)
                MARK_DEFINED(op->msg->msg_control, op->msg->msg_controllen);
        }
        break;
    }
    case AEV_OP_ACCEPT:
        if (op->addrlen_inout) {
            MARK_DEFINED(op->addrlen_inout, sizeof *op->addrlen_inout);
            if (op->addr)
                MARK_DEFINED(op->addr, *op->addrlen_inout);
        }
        break;
    default:
        break;
    }
#else
    (void)b, (void)op, (void)cqe;
#endif
}

/* ---- wait ------------------------------------------------------------------------- */

/* One CQE to at most one event; returns how many it made. */
static int handle_cqe(aev_poll_backend_t *b, const struct io_uring_cqe *cqe, aev_poll_event_t *ev)
{
    uint64_t ud = cqe->user_data;
    switch ((unsigned)(ud & TAG_MASK)) {
    case TAG_OP: {
        aev_poll_op_t *op = (aev_poll_op_t *)(uintptr_t)ud;
        uint32_t opd = (uint32_t)(uintptr_t)op->engine_data;
        int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        int32_t res = cqe->res;
        mark_received(b, op, cqe);
        if (op->opcode == AEV_OP_TIMEOUT && res == -ETIME)
            res = 0;
        if (op->opcode == AEV_OP_POLL && res >= 0)
            res = (int32_t)from_poll_mask((unsigned)res);
        /* Emulated multishot: a success asks for the next shot, unless cancelled (a
         * receive of 0 bytes is the end of the stream, an accepted fd may be 0). */
        int success = op->opcode == AEV_OP_ACCEPT ? res >= 0 : res > 0;
        if ((opd & OPD_EMULATED_MS) && !(opd & OPD_CANCELLED) && success) {
            struct io_uring_sqe *sqe = get_sqe(b);
            if (sqe && prep_op(b, op, sqe) == 0)
                more = 1;
        }
        if (!more)
            b->inflight--;
        memset(ev, 0, sizeof *ev);
        ev->kind = AEV_POLL_EVENT_COMPLETION;
        ev->result = res;
        ev->flags = (more ? AEV_OP_CQE_MORE : 0u) | (cqe->flags & IORING_CQE_F_BUFFER ? AEV_OP_CQE_BUFFER : 0u);
        ev->buffer_id = cqe->flags & IORING_CQE_F_BUFFER ? cqe->flags >> IORING_CQE_BUFFER_SHIFT : 0;
        ev->op = op;
        ev->fd = op->fd;
        return 1;
    }
    case TAG_POLL: {
        int fd = (int)((ud & 0xffffffffu) >> 3);
        uint32_t gen = (uint32_t)(ud >> 32);
        if (fd >= b->fds_cap)
            return 0;
        struct fd_state *st = &b->fds[fd];
        if (st->gen != gen || !st->armed)
            return 0; /* a poll that a removal or an interest change replaced */
        st->armed = 0;
        uint32_t e;
        if (cqe->res == -EBADF) {
            st->dead = 1; /* closed behind the loop's back: no re-arm until watch() */
            e = AEV_POLL_NVAL;
        } else if (cqe->res == -ECANCELED) {
            e = 0;
        } else if (cqe->res < 0) {
            e = AEV_POLL_ERR;
        } else {
            e = from_poll_mask((unsigned)cqe->res) & (st->interest | AEV_POLL_ERR | AEV_POLL_HUP |
                                                     AEV_POLL_NVAL);
        }
        if (st->interest && !st->dead)
            (void)mark_dirty(b, fd); /* level-triggered: armed again at the next wait() */
        if (!e)
            return 0;
        memset(ev, 0, sizeof *ev);
        ev->kind = AEV_POLL_EVENT_FD;
        ev->fd = fd;
        ev->events = e;
        return 1;
    }
    case TAG_WAKE:
        b->wake_armed = 0;
        return 0;
    default:
        return 0;
    }
}

static int reap(aev_poll_backend_t *b, aev_poll_event_t *out, int max)
{
    int k = 0;
    unsigned head, seen = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&b->ring, head, cqe) {
        if (k >= max)
            break;
        seen++;
        k += handle_cqe(b, cqe, &out[k]);
    }
    io_uring_cq_advance(&b->ring, seen);
    return k;
}

static int uring_wait(aev_poll_backend_t *b, int64_t timeout_ns, aev_poll_event_t *out, int max)
{
    if (max <= 0)
        return -EINVAL;
    int rc = ring_enter_check(b);
    if (rc < 0)
        return rc;
    rc = flush_dirty(b);
    if (rc == 0 && !b->wake_armed)
        rc = arm_wake(b);
    if (rc < 0)
        return rc;
    /* CQEs left from a call whose max was reached: hand them out without blocking. */
    if (io_uring_cq_ready(&b->ring) > 0)
        timeout_ns = 0;
    if (timeout_ns == 0) {
        unsigned kflags = IO_URING_READ_ONCE(*b->ring.sq.kflags);
        if (io_uring_sq_ready(&b->ring) > 0) {
            COUNT_ENTER(b);
            rc = io_uring_submit(&b->ring);
        } else if (kflags & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) {
            COUNT_ENTER(b);
            rc = io_uring_get_events(&b->ring);
        }
    } else if (b->block_in_ppoll) {
        if (io_uring_sq_ready(&b->ring) > 0) {
            COUNT_ENTER(b);
            rc = io_uring_submit(&b->ring);
        }
        if (io_uring_cq_ready(&b->ring) == 0) {
            struct pollfd pfd = {.fd = b->ring.ring_fd, .events = POLLIN};
            struct timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
            (void)ppoll(&pfd, 1, timeout_ns < 0 ? NULL : &ts, NULL);
            COUNT_ENTER(b);
            rc = io_uring_get_events(&b->ring);
        }
    } else {
        struct __kernel_timespec ts, *tsp = NULL;
        struct io_uring_cqe *cqe;
        if (timeout_ns > 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            tsp = &ts;
        }
        COUNT_ENTER(b);
        rc = io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, tsp, NULL);
    }
#ifdef URING_UNDER_TSAN
    if (rc == -EINTR) {
        /* ThreadSanitizer runs a signal handler only when the thread passes one of its
         * interceptors, and io_uring_enter is a raw system call: pass one now, or the
         * handler of the signal that interrupted the wait would wait for the next one */
        sigset_t cur;
        (void)pthread_sigmask(SIG_SETMASK, NULL, &cur);
    }
#endif
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    return reap(b, out, max);
}

static int uring_wake(aev_poll_backend_t *b)
{
    uint64_t one = 1;
    if (write(b->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

#define URING_CAPS                                                                                 \
    (AEV_POLL_CAP_READINESS | AEV_POLL_CAP_COMPLETION | AEV_POLL_CAP_MULTISHOT |                    \
     AEV_POLL_CAP_BUFFER_RING | AEV_POLL_CAP_NS_TIMEOUT)

static const aev_poll_ops_t uring_ops = {
    .version = AEV_POLL_OPS_VERSION,
    .caps = URING_CAPS,
    .create = uring_create,
    .destroy = uring_destroy,
    .watch = uring_watch,
    .wait = uring_wait,
    .wake = uring_wake,
    .submit = uring_submit,
    .cancel = uring_cancel,
    .provide_buffers = uring_provide_buffers,
    .return_buffer = uring_return_buffer,
};

/* ---- probe ------------------------------------------------------------------------ */

static int read_disabled(void)
{
    int v = -1;
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static int uring_probe(const aev_host_t *host, char *why, size_t size)
{
    (void)host;
    int disabled = read_disabled();
    if (disabled == 2) {
        snprintf(why, size, "io_uring is disabled on this system (/proc/sys/kernel/io_uring_disabled = 2)");
        return -EPERM;
    }
    struct io_uring ring;
    int rc = io_uring_queue_init(4, &ring, 0);
    if (rc < 0) {
        const char *hint = rc == -ENOSYS ? " (kernel too old or built without io_uring: Linux 5.7+ needed)"
                           : rc == -EPERM && disabled == 1
                               ? " (io_uring_disabled=1: this process is not in kernel.io_uring_group)"
                           : rc == -EPERM ? " (seccomp or io_uring_disabled=2?)"
                           : rc == -ENOMEM ? " (RLIMIT_MEMLOCK too low for the ring?)"
                                           : "";
        snprintf(why, size, "io_uring_setup: %s%s", strerror(-rc), hint);
        return rc;
    }
    ring_mapped(&ring);
    static const struct {
        int opcode;
        const char *name;
    } needed[] = {
        {IORING_OP_POLL_ADD, "POLL_ADD"}, {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        {IORING_OP_ACCEPT, "ACCEPT"},     {IORING_OP_CONNECT, "CONNECT"},
        {IORING_OP_RECV, "RECV"},         {IORING_OP_SEND, "SEND"},
        {IORING_OP_READ, "READ"},         {IORING_OP_CLOSE, "CLOSE"},
        {IORING_OP_SPLICE, "SPLICE"},     {IORING_OP_PROVIDE_BUFFERS, "PROVIDE_BUFFERS"},
    };
    const char *missing = NULL;
    if (!(ring.features & IORING_FEAT_NODROP)) {
        missing = "feature NODROP";
    } else {
        struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
        if (!p)
            missing = "IORING_REGISTER_PROBE";
        for (size_t i = 0; p && !missing && i < sizeof needed / sizeof needed[0]; i++)
            if (!io_uring_opcode_supported(p, needed[i].opcode))
                missing = needed[i].name;
        if (p)
            io_uring_free_probe(p);
    }
    ring_unmapping(&ring);
    io_uring_queue_exit(&ring);
    if (missing) {
        snprintf(why, size, "kernel too old: io_uring lacks %s (Linux 5.7 or newer needed)", missing);
        return -ENOSYS;
    }
    return 0;
}

static const void *uring_init(const aev_host_t *host)
{
    (void)host;
    return &uring_ops;
}

AEV_PLUGIN_DEFINE(aev_poll_io_uring) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_POLL,
    .name = "io_uring",
    .version = "1.0",
    .description = "Linux io_uring completion engine (readiness through poll requests)",
    .priority = 40,
    .caps = URING_CAPS,
    .probe = uring_probe,
    .init = uring_init,
};
