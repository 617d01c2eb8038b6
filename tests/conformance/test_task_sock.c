/* libaev conformance: socket operations awaited from tasks (await loop.sock_recv(),
 * sock_sendall, sock_accept, sock_connect, sock_recvfrom, sock_sendto): data integrity
 * with partial sends, EOF, refused and reset connections, blocking sockets refused,
 * cancellation mid-transfer with every byte accounted for, datagrams with addresses,
 * one receiver per socket.
 *
 * Each test runs three times (Check loop tests): _i == 0 an AF_UNIX socketpair,
 * _i == 1 TCP/UDP over 127.0.0.1, _i == 2 over ::1 (skipped, with a note, when the
 * machine has no IPv6 loopback). */
#include "test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/un.h>

enum { FAM_UNIX = 0, FAM_V4 = 1, FAM_V6 = 2, FAM_COUNT = 3 };

/* On the proactor set the task forms run natively here (AEV_TASK_SOCK_OPS=native, off by
 * default); the default there, the readiness half, is the selector sets' code over io_uring
 * poll requests. AEV_TASK_SOCK_OPS given from outside wins. */
__attribute__((constructor)) static void task_sock_ops_native(void)
{
    setenv("AEV_TASK_SOCK_OPS", "native", 0);
}

static const char *fam_name(int fam)
{
    return fam == FAM_UNIX ? "unix socketpair" : fam == FAM_V4 ? "127.0.0.1" : "::1";
}

static int fam_af(int fam)
{
    return fam == FAM_UNIX ? AF_UNIX : fam == FAM_V4 ? AF_INET : AF_INET6;
}

/* 1 if ::1 can be bound. */
static int have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

#define SKIP_WITHOUT_IPV6(fam)                                                                     \
    do {                                                                                           \
        if ((fam) == FAM_V6 && !have_ipv6()) {                                                     \
            printf("%s: IPv6 loopback (::1) not available: the ::1 case is skipped\n", __func__);  \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static socklen_t loopback_addr(int fam, struct sockaddr_storage *ss, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (fam == FAM_V4) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        return sizeof *a;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons(port);
    return sizeof *a;
}

/* 1 if a and b are the same IP address and port. */
static int same_inet_addr(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr_storage *b,
                          socklen_t blen)
{
    if (alen != blen || a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
    }
    if (a->ss_family == AF_UNIX)
        return memcmp(a, b, alen) == 0;
    return 0;
}

static void set_bufs(int fd, int size)
{
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
}

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A non-blocking socket (stream or datagram) of fam's IP family. */
static int ip_socket(int fam, int type)
{
    int fd = socket(fam_af(fam), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_msg(fd >= 0, "socket: %s", strerror(errno));
    return fd;
}

/* A listening TCP socket on the loopback (port chosen by the kernel); its address in *ss. */
static int tcp_listener(int fam, int bufsize, struct sockaddr_storage *ss, socklen_t *len)
{
    int fd = ip_socket(fam, SOCK_STREAM);
    int one = 1;
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    if (bufsize)
        set_bufs(fd, bufsize); /* inherited by accepted sockets */
    *len = loopback_addr(fam, ss, 0);
    ck_assert_msg(bind(fd, (struct sockaddr *)ss, *len) == 0, "bind: %s", strerror(errno));
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)ss, len), 0);
    return fd;
}

/* A connected, non-blocking stream pair: an AF_UNIX socketpair or a TCP connection over the
 * loopback (made synchronously). bufsize: SO_SNDBUF/SO_RCVBUF of both ends (0: default). */
static void stream_pair(int fam, int sv[2], int bufsize)
{
    if (fam == FAM_UNIX) {
        tu_socketpair(sv);
        if (bufsize) {
            set_bufs(sv[0], bufsize);
            set_bufs(sv[1], bufsize);
        }
        return;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    int lfd = tcp_listener(fam, bufsize, &ss, &len);
    int c = socket(fam_af(fam), SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c, 0);
    if (bufsize)
        set_bufs(c, bufsize);
    ck_assert_msg(connect(c, (struct sockaddr *)&ss, len) == 0, "connect: %s", strerror(errno));
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 10000), 1);
    int s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_msg(s >= 0, "accept: %s", strerror(errno));
    set_nonblocking(c);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close(lfd);
    sv[0] = c;
    sv[1] = s;
}

static aev_future_t *spawn(aev_loop_t *loop, aev_task_fn fn, void *arg)
{
    aev_future_t *task = NULL;
    int rc = aev_loop_create_task(loop, NULL, fn, arg, &task);
    ck_assert_msg(rc == 0, "create_task: %d (%s)", rc, aev_err_name(rc));
    return task;
}

/* Runs the loop until task is done; a safety timer cancels the task after limit seconds
 * and the test fails then (a hang). Returns the task's outcome. */
typedef struct {
    aev_future_t *task;
    int fired;
} hang_guard_t;

static int hang_guard_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    hang_guard_t *g = arg;
    g->fired = 1;
    aev_future_cancel(g->task, "test guard: the task hung");
    return 0;
}

static int run_task(aev_loop_t *loop, aev_future_t *task, double limit)
{
    hang_guard_t g = {.task = task};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, limit, hang_guard_cb, &g, &h), 0);
    int rc = aev_loop_run_until_complete(loop, task);
    aev_handle_cancel(h);
    aev_handle_unref(h);
    ck_assert_msg(!g.fired, "task %s hung (cancelled by the guard after %.0f s)", aev_task_get_name(task),
                  limit);
    return rc;
}

static inline unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 7u + (i >> 9) * 13u + (i >> 17));
}

static unsigned char *pattern_buf(size_t n)
{
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        b[i] = pattern(i);
    return b;
}

/* ---- echo: accept, connect, 1 MiB with partial sends, EOF ------------------------------------ */

#define ECHO_TOTAL (1024u * 1024u)
#define SMALL_BUF 4096

typedef struct {
    int fam;
    aev_loop_t *loop;
    int listen_fd;
    struct sockaddr_storage listen_addr;
    socklen_t listen_len;
    int server_fd;
    int client_fd;
    struct sockaddr_storage peer; /* what accept reported */
    socklen_t peer_len;
    unsigned char *src;
    size_t sent;           /* the sendall's out-parameter */
    ssize_t send_rc;
    size_t echoed;         /* bytes the server echoed */
    size_t received;       /* bytes the client read back, verified */
    size_t received_when_send_done;
    int reader_eof_twice;
    aev_future_t *reader;
    int server_eof;
    int bad_offset;        /* first wrong byte, or -1 */
} echo_t;

static int echo_server_task(aev_future_t *self, void *arg)
{
    (void)self;
    echo_t *e = arg;
    if (e->fam != FAM_UNIX) {
        e->peer_len = sizeof e->peer;
        int fd = aev_task_sock_accept(e->listen_fd, (struct sockaddr *)&e->peer, &e->peer_len);
        if (fd < 0)
            return aev_task_fail(self, fd, "accept failed");
        e->server_fd = fd;
        int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
        ck_assert(fl & O_NONBLOCK);
        ck_assert(fdfl & FD_CLOEXEC);
    }
    unsigned char buf[3001]; /* an odd chunk size */
    for (;;) {
        ssize_t r = aev_task_sock_recv(e->server_fd, buf, sizeof buf);
        if (r < 0)
            return aev_task_fail(self, (int)r, "server recv failed");
        if (r == 0)
            break;
        ssize_t w = aev_task_sock_sendall(e->server_fd, buf, (size_t)r, NULL);
        if (w != r)
            return aev_task_fail(self, w < 0 ? (int)w : -EIO, "server sendall failed");
        e->echoed += (size_t)r;
    }
    e->server_eof = 1;
    ck_assert_int_eq(shutdown(e->server_fd, SHUT_WR), 0);
    return 0;
}

static int echo_reader_task(aev_future_t *self, void *arg)
{
    (void)self;
    echo_t *e = arg;
    unsigned char buf[1000];
    for (;;) {
        ssize_t r = aev_task_sock_recv(e->client_fd, buf, sizeof buf);
        if (r < 0)
            return aev_task_fail(self, (int)r, "client recv failed");
        if (r == 0)
            break;
        for (ssize_t k = 0; k < r; k++)
            if (buf[k] != pattern(e->received + (size_t)k) && e->bad_offset < 0)
                e->bad_offset = (int)(e->received + (size_t)k);
        e->received += (size_t)r;
        if (e->received > ECHO_TOTAL)
            return aev_task_fail(self, -EOVERFLOW, "more bytes than were sent");
    }
    /* EOF stays EOF */
    e->reader_eof_twice = aev_task_sock_recv(e->client_fd, buf, sizeof buf) == 0;
    return 0;
}

static int echo_client_task(aev_future_t *self, void *arg)
{
    echo_t *e = arg;
    if (e->fam != FAM_UNIX) {
        e->client_fd = ip_socket(e->fam, SOCK_STREAM);
        set_bufs(e->client_fd, SMALL_BUF);
        int rc = aev_task_sock_connect(e->client_fd, (struct sockaddr *)&e->listen_addr, e->listen_len);
        if (rc < 0)
            return aev_task_fail(self, rc, "connect failed");
    }
    /* the reader of the same socket: one reader and one writer per fd is allowed */
    int rc = aev_loop_create_task(e->loop, NULL, echo_reader_task, e, &e->reader);
    if (rc < 0)
        return rc;
    e->sent = 12345;
    e->send_rc = aev_task_sock_sendall(e->client_fd, e->src, ECHO_TOTAL, &e->sent);
    e->received_when_send_done = e->received;
    ck_assert_int_eq(shutdown(e->client_fd, SHUT_WR), 0);
    return e->send_rc < 0 ? (int)e->send_rc : 0;
}

START_TEST(test_echo_1mib)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    echo_t e = {.fam = fam, .loop = loop, .listen_fd = -1, .server_fd = -1, .client_fd = -1, .bad_offset = -1};
    e.src = pattern_buf(ECHO_TOTAL);
    if (fam == FAM_UNIX) {
        int sv[2];
        stream_pair(fam, sv, SMALL_BUF);
        e.client_fd = sv[0];
        e.server_fd = sv[1];
    } else {
        e.listen_fd = tcp_listener(fam, SMALL_BUF, &e.listen_addr, &e.listen_len);
    }
    aev_future_t *server = spawn(loop, echo_server_task, &e);
    aev_future_t *client = spawn(loop, echo_client_task, &e);
    int rc = run_task(loop, client, 60);
    ck_assert_msg(rc == 0, "%s: client: %d (%s) %s", fam_name(fam), rc, aev_err_name(rc),
                  aev_future_error_detail(client) ? aev_future_error_detail(client) : "");
    ck_assert_int_eq(e.send_rc, (ssize_t)ECHO_TOTAL);
    ck_assert_uint_eq(e.sent, ECHO_TOTAL);
    /* the buffers hold a few KiB: sendall went out in parts while the echo flowed back */
    ck_assert_msg(e.received_when_send_done >= ECHO_TOTAL / 2, "%s: only %zu bytes echoed when sendall returned",
                  fam_name(fam), e.received_when_send_done);
    ck_assert_ptr_nonnull(e.reader);
    rc = run_task(loop, e.reader, 60);
    ck_assert_msg(rc == 0, "%s: reader: %d (%s)", fam_name(fam), rc, aev_err_name(rc));
    rc = run_task(loop, server, 60);
    ck_assert_msg(rc == 0, "%s: server: %d (%s)", fam_name(fam), rc, aev_err_name(rc));
    ck_assert_int_eq(e.bad_offset, -1);
    ck_assert_uint_eq(e.echoed, ECHO_TOTAL);
    ck_assert_uint_eq(e.received, ECHO_TOTAL);
    ck_assert_int_eq(e.server_eof, 1);
    ck_assert_int_eq(e.reader_eof_twice, 1);
    if (fam != FAM_UNIX) {
        /* accept reported the client's own address */
        struct sockaddr_storage local;
        socklen_t llen = sizeof local;
        ck_assert_int_eq(getsockname(e.client_fd, (struct sockaddr *)&local, &llen), 0);
        ck_assert_int_eq(e.peer.ss_family, fam_af(fam));
        ck_assert_msg(same_inet_addr(&e.peer, e.peer_len, &local, llen), "%s: accept's peer address differs",
                      fam_name(fam));
        close(e.listen_fd);
    }
    aev_future_unref(server);
    aev_future_unref(client);
    aev_future_unref(e.reader);
    close(e.client_fd);
    close(e.server_fd);
    free(e.src);
    tu_loop_free(loop);
}
END_TEST

/* ---- connect refused ----------------------------------------------------------------------- */

typedef struct {
    int fam;
    int fd;
    struct sockaddr_storage addr;
    socklen_t len;
    int rc;
} connect_t;

static int connect_task(aev_future_t *self, void *arg)
{
    (void)self;
    connect_t *c = arg;
    c->rc = aev_task_sock_connect(c->fd, (struct sockaddr *)&c->addr, c->len);
    return 0;
}

START_TEST(test_connect_refused)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    connect_t c = {.fam = fam, .rc = 99};
    int holder = -1;
    if (fam == FAM_UNIX) {
        /* an AF_UNIX (abstract) address bound by a socket that does not listen */
        holder = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(holder, 0);
        struct sockaddr_un *un = (struct sockaddr_un *)&c.addr;
        un->sun_family = AF_UNIX;
        int n = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "aev-test-refused-%d", (int)getpid());
        c.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        ck_assert_int_eq(bind(holder, (struct sockaddr *)&c.addr, c.len), 0);
        c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    } else {
        /* a port that was just closed */
        int tmp = ip_socket(fam, SOCK_STREAM);
        c.len = loopback_addr(fam, &c.addr, 0);
        ck_assert_int_eq(bind(tmp, (struct sockaddr *)&c.addr, c.len), 0);
        ck_assert_int_eq(getsockname(tmp, (struct sockaddr *)&c.addr, &c.len), 0);
        close(tmp);
        c.fd = ip_socket(fam, SOCK_STREAM);
    }
    ck_assert_int_ge(c.fd, 0);
    aev_future_t *t = spawn(loop, connect_task, &c);
    ck_assert_int_eq(run_task(loop, t, 20), 0);
    ck_assert_msg(c.rc == -ECONNREFUSED, "%s: connect: %d (%s), expected -ECONNREFUSED", fam_name(fam), c.rc,
                  aev_err_name(c.rc));
    aev_future_unref(t);

    /* a connect with no address is refused as bad input */
    connect_t bad = {.fam = fam, .fd = c.fd, .rc = 99};
    t = spawn(loop, connect_task, &bad);
    ck_assert_int_eq(run_task(loop, t, 20), 0);
    ck_assert(bad.rc < 0);
    aev_future_unref(t);
    close(c.fd);
    if (holder >= 0)
        close(holder);
    tu_loop_free(loop);
}
END_TEST

/* ---- peer reset ------------------------------------------------------------------------------ */

typedef struct {
    int fd;
    int peer;
    ssize_t recv_rc;
    ssize_t recv2_rc;
    ssize_t send_rc;
    int waiting; /* set just before the recv that the reset interrupts */
} reset_t;

static int reset_task(aev_future_t *self, void *arg)
{
    (void)self;
    reset_t *r = arg;
    /* unread data in the peer's receive queue: closing it resets the connection */
    ck_assert_int_eq(aev_task_sock_sendall(r->fd, "unread", 6, NULL), 6);
    char buf[64];
    r->waiting = 1;
    r->recv_rc = aev_task_sock_recv(r->fd, buf, sizeof buf);
    r->recv2_rc = aev_task_sock_recv(r->fd, buf, sizeof buf);
    static char big[256 * 1024];
    size_t sent = 0;
    r->send_rc = aev_task_sock_sendall(r->fd, big, sizeof big, &sent);
    ck_assert_uint_le(sent, sizeof big);
    return 0;
}

static int reset_peer_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    reset_t *r = arg;
    ck_assert_int_eq(r->waiting, 1);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ck_assert_int_eq(setsockopt(r->peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(close(r->peer), 0);
    r->peer = -1;
    return 0;
}

static int is_reset(ssize_t rc)
{
    return rc == -ECONNRESET || rc == -EPIPE;
}

START_TEST(test_peer_reset)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    stream_pair(fam, sv, 0);
    reset_t r = {.fd = sv[0], .peer = sv[1], .recv_rc = 99, .recv2_rc = 99, .send_rc = 99};
    aev_future_t *t = spawn(loop, reset_task, &r);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.05, reset_peer_cb, &r, NULL), 0);
    ck_assert_int_eq(run_task(loop, t, 20), 0);
    ck_assert_int_eq(r.peer, -1);
    /* an error (or EOF, then an error), never a hang or a success */
    ck_assert_msg(is_reset(r.recv_rc) || r.recv_rc == 0, "%s: recv after reset: %zd (%s)", fam_name(fam),
                  r.recv_rc, aev_err_name((int)r.recv_rc));
    ck_assert_msg(r.recv2_rc <= 0, "%s: second recv: %zd", fam_name(fam), r.recv2_rc);
    ck_assert_msg(is_reset(r.send_rc), "%s: sendall after reset: %zd (%s)", fam_name(fam), r.send_rc,
                  aev_err_name((int)r.send_rc));
    if (fam != FAM_UNIX)
        ck_assert_msg(r.recv_rc == -ECONNRESET, "%s: recv after RST: %zd (%s), expected -ECONNRESET",
                      fam_name(fam), r.recv_rc, aev_err_name((int)r.recv_rc));
    aev_future_unref(t);
    close(sv[0]);
    tu_loop_free(loop);
}
END_TEST

/* ---- blocking sockets refused ---------------------------------------------------------------- */

typedef struct {
    int fd;        /* blocking, connected (stream) */
    int dgram_fd;  /* blocking datagram socket */
    int listen_fd; /* blocking listener (or -1) */
    int conn_fd;   /* blocking, not connected (or -1) */
    struct sockaddr_storage addr;
    socklen_t len;
    int failures;
    char why[256];
} blocking_t;

static void expect_refused(blocking_t *b, const char *op, ssize_t rc)
{
    const char *d = aev_error_detail();
    if (rc != -EINVAL || !d || !strstr(d, "non-blocking")) {
        if (!b->failures)
            snprintf(b->why, sizeof b->why, "%s: %zd (%s), detail '%s'", op, rc, aev_err_name((int)rc),
                     d ? d : "(null)");
        b->failures++;
    }
}

static int blocking_task(aev_future_t *self, void *arg)
{
    (void)self;
    blocking_t *b = arg;
    char buf[16];
    size_t sent = 99;
    expect_refused(b, "recv", aev_task_sock_recv(b->fd, buf, sizeof buf));
    expect_refused(b, "sendall", aev_task_sock_sendall(b->fd, "x", 1, &sent));
    if (sent != 0 && !b->failures) {
        snprintf(b->why, sizeof b->why, "sendall's sent = %zu", sent);
        b->failures++;
    }
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    expect_refused(b, "recvfrom", aev_task_sock_recvfrom(b->dgram_fd, buf, sizeof buf, (struct sockaddr *)&from,
                                                         &flen));
    expect_refused(b, "sendto", aev_task_sock_sendto(b->dgram_fd, "x", 1, (struct sockaddr *)&b->addr, b->len));
    if (b->listen_fd >= 0) {
        expect_refused(b, "accept", aev_task_sock_accept(b->listen_fd, NULL, NULL));
        expect_refused(b, "connect", aev_task_sock_connect(b->conn_fd, (struct sockaddr *)&b->addr, b->len));
    }
    /* again, the same socket: still refused (no check is skipped) */
    expect_refused(b, "recv again", aev_task_sock_recv(b->fd, buf, sizeof buf));
    return 0;
}

typedef struct {
    int fd;
    ssize_t rc;
    char buf[16];
} simple_recv_t;

static int simple_recv_task(aev_future_t *self, void *arg)
{
    (void)self;
    simple_recv_t *s = arg;
    s->rc = aev_task_sock_recv(s->fd, s->buf, sizeof s->buf);
    return 0;
}

START_TEST(test_blocking_socket_refused)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    blocking_t b = {.listen_fd = -1, .conn_fd = -1};
    int sv[2];
    stream_pair(fam, sv, 0);
    /* make the tested end blocking; data is waiting, so a wrongly accepted recv would not hang */
    int fl = fcntl(sv[0], F_GETFL);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK), 0);
    tu_write(sv[1], "hello");
    b.fd = sv[0];
    int dsv[2] = {-1, -1};
    /* Everything is set up so that an operation wrongly accepted on a blocking socket
     * completes at once instead of hanging: a datagram waits, a connection is pending. */
    int pending_fd = -1;
    if (fam == FAM_UNIX) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dsv), 0);
        b.dgram_fd = dsv[0];
        b.len = 0;
        ck_assert_int_eq(send(dsv[1], "dgram", 5, 0), 5);
    } else {
        b.dgram_fd = socket(fam_af(fam), SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(b.dgram_fd, 0);
        b.len = loopback_addr(fam, &b.addr, 0);
        ck_assert_int_eq(bind(b.dgram_fd, (struct sockaddr *)&b.addr, b.len), 0);
        ck_assert_int_eq(getsockname(b.dgram_fd, (struct sockaddr *)&b.addr, &b.len), 0);
        ck_assert_int_eq(sendto(b.dgram_fd, "dgram", 5, 0, (struct sockaddr *)&b.addr, b.len), 5);
        b.listen_fd = socket(fam_af(fam), SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_storage la;
        socklen_t ll = loopback_addr(fam, &la, 0);
        ck_assert_int_eq(bind(b.listen_fd, (struct sockaddr *)&la, ll), 0);
        ck_assert_int_eq(listen(b.listen_fd, 4), 0);
        ck_assert_int_eq(getsockname(b.listen_fd, (struct sockaddr *)&la, &ll), 0);
        pending_fd = socket(fam_af(fam), SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(connect(pending_fd, (struct sockaddr *)&la, ll), 0);
        b.conn_fd = socket(fam_af(fam), SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(b.conn_fd, 0);
    }
    aev_future_t *t = spawn(loop, blocking_task, &b);
    ck_assert_int_eq(run_task(loop, t, 20), 0);
    ck_assert_msg(b.failures == 0, "%s: %d operations not refused as expected; first: %s", fam_name(fam),
                  b.failures, b.why);
    aev_future_unref(t);

    /* nothing was read: made non-blocking, the socket works and still holds the data */
    set_nonblocking(sv[0]);
    simple_recv_t s = {.fd = sv[0], .rc = 99};
    t = spawn(loop, simple_recv_task, &s);
    ck_assert_int_eq(run_task(loop, t, 20), 0);
    ck_assert_int_eq(s.rc, 5);
    ck_assert_int_eq(memcmp(s.buf, "hello", 5), 0);
    aev_future_unref(t);

    /* outside a task */
    char buf[4];
    ck_assert_int_eq(aev_task_sock_recv(sv[0], buf, sizeof buf), AEV_ENOT_IN_TASK);
    ck_assert_int_eq(aev_task_sock_sendall(sv[0], "x", 1, NULL), AEV_ENOT_IN_TASK);
    ck_assert_int_eq(aev_task_sock_recvfrom(sv[0], buf, sizeof buf, NULL, NULL), AEV_ENOT_IN_TASK);
    ck_assert_int_eq(aev_task_sock_sendto(sv[0], "x", 1, NULL, 0), AEV_ENOT_IN_TASK);
    ck_assert_int_eq(aev_task_sock_accept(sv[0], NULL, NULL), AEV_ENOT_IN_TASK);
    ck_assert_int_eq(aev_task_sock_connect(sv[0], (struct sockaddr *)&b.addr, b.len), AEV_ENOT_IN_TASK);

    close(sv[0]);
    close(sv[1]);
    if (dsv[1] >= 0)
        close(dsv[1]);
    close(b.dgram_fd);
    if (b.listen_fd >= 0)
        close(b.listen_fd);
    if (b.conn_fd >= 0)
        close(b.conn_fd);
    if (pending_fd >= 0)
        close(pending_fd);
    tu_loop_free(loop);
}
END_TEST

/* ---- cancellation mid-transfer ------------------------------------------------------------- */

#define CANCEL_TOTAL (4u * 1024u * 1024u)
#define CANCEL_AFTER (128u * 1024u)

typedef struct {
    aev_loop_t *loop;
    int fd;   /* the sender's end */
    int peer; /* the slow reader's end */
    unsigned char *src;
    size_t sent;
    ssize_t rc;
    aev_future_t *task;
    size_t read_total;
    size_t read_at_cancel;
    int cancelled;
    int bad_offset;
    aev_handle_t *timer;
} midcancel_t;

static void check_chunk(midcancel_t *m, const unsigned char *buf, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (buf[k] != pattern(m->read_total + k) && m->bad_offset < 0)
            m->bad_offset = (int)(m->read_total + k);
    m->read_total += n;
}

static int slow_reader_cb(aev_loop_t *loop, void *arg)
{
    midcancel_t *m = arg;
    aev_handle_unref(m->timer);
    m->timer = NULL;
    unsigned char buf[4096];
    ssize_t r = recv(m->peer, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0)
        check_chunk(m, buf, (size_t)r);
    if (!m->cancelled && m->read_total >= CANCEL_AFTER) {
        m->read_at_cancel = m->read_total;
        m->cancelled = 1;
        ck_assert_int_eq(aev_future_cancel(m->task, "enough"), 1);
        return 0;
    }
    if (!m->cancelled)
        ck_assert_int_eq(aev_loop_call_later(loop, 0.002, slow_reader_cb, m, &m->timer), 0);
    return 0;
}

static int big_sender_task(aev_future_t *self, void *arg)
{
    (void)self;
    midcancel_t *m = arg;
    m->sent = 7;
    m->rc = aev_task_sock_sendall(m->fd, m->src, CANCEL_TOTAL, &m->sent);
    return m->rc < 0 ? (int)m->rc : 0;
}

START_TEST(test_cancel_mid_transfer)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    stream_pair(fam, sv, SMALL_BUF);
    midcancel_t m = {.loop = loop, .fd = sv[0], .peer = sv[1], .rc = 99, .bad_offset = -1};
    m.src = pattern_buf(CANCEL_TOTAL);
    m.task = spawn(loop, big_sender_task, &m);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.002, slow_reader_cb, &m, &m.timer), 0);
    ck_assert_int_eq(run_task(loop, m.task, 60), AEV_ECANCELLED);
    ck_assert_int_eq(m.cancelled, 1);
    ck_assert_int_eq(m.rc, AEV_ECANCELLED);
    ck_assert_str_eq(aev_future_error_detail(m.task), "enough");
    ck_assert_uint_ge(m.sent, m.read_at_cancel);
    ck_assert_uint_lt(m.sent, CANCEL_TOTAL);
    /* the sender is gone: close its end; the peer then reads exactly `sent` bytes, then EOF */
    close(sv[0]);
    unsigned char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = sv[1], .events = POLLIN};
        int pr = poll(&p, 1, 10000);
        ck_assert_msg(pr == 1, "%s: no EOF after %zu bytes (sent %zu)", fam_name(fam), m.read_total, m.sent);
        ssize_t r = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        ck_assert_msg(r >= 0, "%s: recv: %s", fam_name(fam), strerror(errno));
        if (r == 0)
            break;
        check_chunk(&m, buf, (size_t)r);
    }
    ck_assert_msg(m.read_total == m.sent, "%s: the peer read %zu bytes, sendall reported %zu sent", fam_name(fam),
                  m.read_total, m.sent);
    ck_assert_int_eq(m.bad_offset, -1);
    aev_handle_unref(m.timer);
    aev_future_unref(m.task);
    close(sv[1]);
    free(m.src);
    tu_loop_free(loop);
}
END_TEST

/* ---- datagrams ------------------------------------------------------------------------------ */

typedef struct {
    int fam;
    int a, b;                      /* a receives and replies, b sends */
    struct sockaddr_storage a_addr, b_addr;
    socklen_t a_len, b_len;
    int failures;
    char why[256];
    int replies;
} dgram_t;

static void dgram_fail(dgram_t *d, const char *what, long v)
{
    if (!d->failures)
        snprintf(d->why, sizeof d->why, "%s (%ld)", what, v);
    d->failures++;
}

static const size_t dgram_sizes[3] = {1, 100, 1400};

static void fill(char *buf, size_t n, int k)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (int)((i + (size_t)k) % 26));
}

static int dgram_receiver_task(aev_future_t *self, void *arg)
{
    (void)self;
    dgram_t *d = arg;
    char buf[2048], want[2048];
    struct sockaddr_storage from;
    socklen_t flen = 0;
    for (int k = 0; k < 3; k++) {
        flen = sizeof from;
        memset(&from, 0, sizeof from);
        ssize_t r = aev_task_sock_recvfrom(d->a, buf, sizeof buf, (struct sockaddr *)&from, &flen);
        if (r != (ssize_t)dgram_sizes[k]) {
            dgram_fail(d, "datagram size", (long)r);
            return 0;
        }
        fill(want, dgram_sizes[k], k);
        if (memcmp(buf, want, dgram_sizes[k]) != 0)
            dgram_fail(d, "datagram content", k);
        if (!same_inet_addr(&from, flen, &d->b_addr, d->b_len))
            dgram_fail(d, "sender address", (long)flen);
    }
    /* a datagram longer than the buffer: truncated, the rest discarded */
    ssize_t r = aev_task_sock_recvfrom(d->a, buf, 10, NULL, NULL);
    if (r != 10 || memcmp(buf, "0123456789", 10) != 0)
        dgram_fail(d, "truncated datagram", (long)r);
    flen = sizeof from;
    r = aev_task_sock_recvfrom(d->a, buf, sizeof buf, (struct sockaddr *)&from, &flen);
    if (r != 3 || memcmp(buf, "end", 3) != 0)
        dgram_fail(d, "datagram after the truncated one", (long)r);
    /* reply to the address it came from */
    r = aev_task_sock_sendto(d->a, "pong", 4, (struct sockaddr *)&from, flen);
    if (r != 4)
        dgram_fail(d, "sendto reply", (long)r);
    return 0;
}

static int dgram_sender_task(aev_future_t *self, void *arg)
{
    (void)self;
    dgram_t *d = arg;
    char buf[2048];
    for (int k = 0; k < 3; k++) {
        fill(buf, dgram_sizes[k], k);
        ssize_t r = aev_task_sock_sendto(d->b, buf, dgram_sizes[k], (struct sockaddr *)&d->a_addr, d->a_len);
        if (r != (ssize_t)dgram_sizes[k])
            dgram_fail(d, "sendto", (long)r);
    }
    const char *longer = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    if (aev_task_sock_sendto(d->b, longer, 50, (struct sockaddr *)&d->a_addr, d->a_len) != 50)
        dgram_fail(d, "sendto 50", 0);
    if (aev_task_sock_sendto(d->b, "end", 3, (struct sockaddr *)&d->a_addr, d->a_len) != 3)
        dgram_fail(d, "sendto end", 0);
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    ssize_t r = aev_task_sock_recvfrom(d->b, buf, sizeof buf, (struct sockaddr *)&from, &flen);
    if (r != 4 || memcmp(buf, "pong", 4) != 0)
        dgram_fail(d, "reply", (long)r);
    else if (!same_inet_addr(&from, flen, &d->a_addr, d->a_len))
        dgram_fail(d, "reply's address", (long)flen);
    else
        d->replies++;
    return 0;
}

static socklen_t unix_abstract(struct sockaddr_storage *ss, const char *tag)
{
    static int seq;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    un->sun_family = AF_UNIX;
    int n = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "aev-test-dgram-%d-%d-%s", (int)getpid(), ++seq,
                     tag);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

START_TEST(test_datagrams)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    dgram_t d = {.fam = fam};
    if (fam == FAM_UNIX) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        d.a = sv[0];
        d.b = sv[1];
        d.a_len = unix_abstract(&d.a_addr, "a");
        d.b_len = unix_abstract(&d.b_addr, "b");
    } else {
        d.a = ip_socket(fam, SOCK_DGRAM);
        d.b = ip_socket(fam, SOCK_DGRAM);
        d.a_len = loopback_addr(fam, &d.a_addr, 0);
        d.b_len = loopback_addr(fam, &d.b_addr, 0);
    }
    ck_assert_int_eq(bind(d.a, (struct sockaddr *)&d.a_addr, d.a_len), 0);
    ck_assert_int_eq(bind(d.b, (struct sockaddr *)&d.b_addr, d.b_len), 0);
    ck_assert_int_eq(getsockname(d.a, (struct sockaddr *)&d.a_addr, &d.a_len), 0);
    ck_assert_int_eq(getsockname(d.b, (struct sockaddr *)&d.b_addr, &d.b_len), 0);
    aev_future_t *rx = spawn(loop, dgram_receiver_task, &d);
    aev_future_t *tx = spawn(loop, dgram_sender_task, &d);
    ck_assert_int_eq(run_task(loop, tx, 20), 0);
    ck_assert_int_eq(run_task(loop, rx, 20), 0);
    ck_assert_msg(d.failures == 0, "%s: %d failures, first: %s", fam_name(fam), d.failures, d.why);
    ck_assert_int_eq(d.replies, 1);
    aev_future_unref(rx);
    aev_future_unref(tx);
    close(d.a);
    close(d.b);
    tu_loop_free(loop);
}
END_TEST

/* ---- one receiver, one sender per socket ------------------------------------------------------ */

typedef struct {
    int fd;
    ssize_t rc;
    char buf[32];
    int started;
} recv_one_t;

static int recv_one_task(aev_future_t *self, void *arg)
{
    (void)self;
    recv_one_t *r = arg;
    r->started = 1;
    r->rc = aev_task_sock_recv(r->fd, r->buf, sizeof r->buf);
    return 0;
}

typedef struct {
    int fd;
    const unsigned char *buf;
    size_t n;
    size_t sent;
    ssize_t rc;
} send_one_t;

static int send_one_task(aev_future_t *self, void *arg)
{
    (void)self;
    send_one_t *s = arg;
    s->rc = aev_task_sock_sendall(s->fd, s->buf, s->n, &s->sent);
    return 0;
}

START_TEST(test_two_receivers_refused)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    stream_pair(fam, sv, SMALL_BUF);
    recv_one_t r1 = {.fd = sv[0], .rc = 99}, r2 = {.fd = sv[0], .rc = 99};
    aev_future_t *t1 = spawn(loop, recv_one_task, &r1);
    aev_future_t *t2 = spawn(loop, recv_one_task, &r2);
    ck_assert_int_eq(run_task(loop, t2, 20), 0);
    ck_assert_int_eq(r1.started, 1);
    ck_assert_int_eq(aev_future_done(t1), 0);
    ck_assert_msg(r2.rc == AEV_EINVALID_STATE, "%s: second receiver: %zd (%s)", fam_name(fam), r2.rc,
                  aev_err_name((int)r2.rc));
    /* the first one is unharmed */
    tu_write(sv[1], "data");
    ck_assert_int_eq(run_task(loop, t1, 20), 0);
    ck_assert_int_eq(r1.rc, 4);
    ck_assert_int_eq(memcmp(r1.buf, "data", 4), 0);
    aev_future_unref(t1);
    aev_future_unref(t2);

    /* the same for two senders on a full socket */
    size_t big = 4u * 1024u * 1024u;
    unsigned char *src = pattern_buf(big);
    send_one_t s1 = {.fd = sv[0], .buf = src, .n = big, .rc = 99};
    send_one_t s2 = {.fd = sv[0], .buf = src, .n = 1000, .rc = 99, .sent = 99};
    aev_future_t *w1 = spawn(loop, send_one_task, &s1);
    for (int k = 0; k < 3; k++)
        tu_run_once(loop);
    ck_assert_int_eq(aev_future_done(w1), 0); /* blocked: nobody reads */
    ck_assert_uint_gt(s1.sent, 0);
    aev_future_t *w2 = spawn(loop, send_one_task, &s2);
    ck_assert_int_eq(run_task(loop, w2, 20), 0);
    ck_assert_msg(s2.rc == AEV_EINVALID_STATE, "%s: second sender: %zd (%s)", fam_name(fam), s2.rc,
                  aev_err_name((int)s2.rc));
    ck_assert_uint_eq(s2.sent, 0);
    /* the first sender is cancelled; the bytes it sent are all the peer gets */
    ck_assert_int_eq(aev_future_cancel(w1, NULL), 1);
    ck_assert_int_eq(run_task(loop, w1, 20), 0);
    ck_assert_int_eq(s1.rc, AEV_ECANCELLED);
    shutdown(sv[0], SHUT_WR);
    size_t total = 0;
    int bad = 0;
    unsigned char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = sv[1], .events = POLLIN};
        ck_assert_int_eq(poll(&p, 1, 10000), 1);
        ssize_t r = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN)
            continue;
        ck_assert_int_ge(r, 0);
        if (r == 0)
            break;
        for (ssize_t k = 0; k < r; k++)
            bad += buf[k] != pattern(total + (size_t)k);
        total += (size_t)r;
    }
    ck_assert_uint_eq(total, s1.sent);
    ck_assert_int_eq(bad, 0);
    aev_future_unref(w1);
    aev_future_unref(w2);
    free(src);
    close(sv[0]);
    close(sv[1]);
    tu_loop_free(loop);
}
END_TEST

/* ---- a cancelled receive loses nothing --------------------------------------------------------- */

/* Does loop run the task forms natively (a proactor's io_uring completions)? */
static int runs_native(aev_loop_t *loop)
{
    const char *ops = getenv("AEV_IO_OPS"), *task_ops = getenv("AEV_TASK_SOCK_OPS");
    return strcmp(tu_poller(loop), "io_uring") == 0 && !(ops && strcmp(ops, "readiness") == 0) &&
           task_ops && strcmp(task_ops, "native") == 0;
}

typedef struct {
    int fd;
    size_t want;  /* read until this many bytes */
    char got[128];
    size_t n;
    ssize_t rc;   /* the first error, or 0 */
} recv_all_t;

static int recv_all_task(aev_future_t *self, void *arg)
{
    (void)self;
    recv_all_t *r = arg;
    while (r->n < r->want) {
        ssize_t k = aev_task_sock_recv(r->fd, r->got + r->n, sizeof r->got - r->n);
        if (k <= 0) {
            r->rc = k < 0 ? k : -EPIPE;
            return 0;
        }
        r->n += (size_t)k;
    }
    return 0;
}

START_TEST(test_cancel_recv_then_data)
{
    /* Each round: a task waits in aev_task_sock_recv (on a proactor: a native receive in the
     * kernel) and is cancelled; part1 is written just before the cancel (mode 1), or written
     * and the loop runs once before the cancel, so that the receive has completed but the
     * task has not resumed yet (mode 2), or not written at all (mode 0); then part2 is written
     * and a new task reads: the bytes arrive whole and in order. A cancelled receive returns
     * AEV_ECANCELLED and takes nothing: what the kernel gave it goes to the next receive. On
     * a selector loop in mode 2 the task resumes inside the readiness callback and receives
     * part1 itself (it is done before the cancel). */
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    int native = runs_native(loop);
    int sv[2];
    stream_pair(fam, sv, 0);
    for (int i = 0; i < 30; i++) {
        int mode = i % 3;
        char part1[32], part2[32], all[64];
        int l1 = mode ? snprintf(part1, sizeof part1, "first %d;", i) : 0;
        int l2 = snprintf(part2, sizeof part2, "second %d.", i);
        memcpy(all, part1, (size_t)l1);
        memcpy(all + l1, part2, (size_t)l2);
        recv_one_t a = {.fd = sv[0], .rc = 99};
        memset(a.buf, 'X', sizeof a.buf);
        aev_future_t *ta = spawn(loop, recv_one_task, &a);
        tu_run_once(loop); /* a runs, tries, waits */
        tu_run_once(loop); /* native: the receive is in the kernel */
        ck_assert_int_eq(aev_future_done(ta), 0);
        if (mode)
            ck_assert_int_eq(write(sv[1], part1, (size_t)l1), l1);
        if (mode == 2)
            tu_run_once(loop);
        int done_first = aev_future_done(ta);
        ck_assert_int_eq(aev_future_cancel(ta, NULL), !done_first);
        ck_assert_int_eq(run_task(loop, ta, 5), 0); /* recv_one_task stores the outcome in a.rc */
        size_t skip = 0;
        if (done_first) {
            /* only on readiness: the task received part1 before the cancel came */
            ck_assert_msg(!native, "round %d: a native receive resumed its task inside the completion", i);
            ck_assert_int_eq(a.rc, l1);
            ck_assert_int_eq(memcmp(a.buf, part1, (size_t)l1), 0);
            skip = (size_t)l1;
        } else {
            ck_assert_msg(a.rc == AEV_ECANCELLED, "%s round %d: %zd", fam_name(fam), i, a.rc);
        }
        ck_assert_int_eq(write(sv[1], part2, (size_t)l2), l2);
        recv_all_t b = {.fd = sv[0], .want = (size_t)(l1 + l2) - skip};
        aev_future_t *tb = spawn(loop, recv_all_task, &b);
        ck_assert_int_eq(run_task(loop, tb, 5), 0);
        ck_assert_int_eq(b.rc, 0);
        ck_assert_msg(b.n == b.want && memcmp(b.got, all + skip, b.n) == 0,
                      "%s round %d (mode %d): got \"%.*s\", want \"%.*s\"", fam_name(fam), i, mode, (int)b.n,
                      b.got, (int)b.want, all + skip);
        aev_future_unref(ta);
        aev_future_unref(tb);
    }
    /* nothing left over */
    char c;
    ck_assert_int_eq(recv(sv[0], &c, 1, MSG_DONTWAIT), -1);
    close(sv[0]);
    close(sv[1]);
    tu_loop_free(loop);
}
END_TEST

/* ---- closing the loop while tasks wait -------------------------------------------------------- */

typedef struct {
    int fd;
    ssize_t rc;
    int ended;
} accept_one_t;

static int accept_one_task(aev_future_t *self, void *arg)
{
    (void)self;
    accept_one_t *a = arg;
    a->rc = aev_task_sock_accept(a->fd, NULL, NULL);
    a->ended = 1;
    return (int)(a->rc < 0 ? a->rc : 0);
}

START_TEST(test_loop_close_with_waiting_tasks)
{
    /* Tasks wait in a receive, an accept and a blocked sendall (on a proactor: native operations
     * in the kernel, their buffers the core's); a receive was cancelled while in flight. Closing
     * the loop cancels the tasks: each call returns AEV_ECANCELLED, the sendall's *sent is
     * exactly what the peer then reads, and nothing leaks (valgrind). */
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    int sv[2], wv[2];
    stream_pair(fam, sv, 0);
    stream_pair(fam, wv, SMALL_BUF);
    struct sockaddr_storage ss;
    socklen_t sl;
    int lfd = fam == FAM_UNIX ? -1 : tcp_listener(fam, 0, &ss, &sl);
    recv_one_t r = {.fd = sv[0], .rc = 99}, rc1 = {.fd = sv[1], .rc = 99};
    accept_one_t a = {.fd = lfd, .rc = 99};
    size_t big = 2u * 1024u * 1024u;
    unsigned char *src = pattern_buf(big);
    send_one_t w = {.fd = wv[0], .buf = src, .n = big, .rc = 99};
    aev_future_t *tr = spawn(loop, recv_one_task, &r);
    aev_future_t *tc = spawn(loop, recv_one_task, &rc1);
    aev_future_t *ta = lfd >= 0 ? spawn(loop, accept_one_task, &a) : NULL;
    aev_future_t *tw = spawn(loop, send_one_task, &w);
    for (int k = 0; k < 3; k++)
        tu_run_once(loop);
    ck_assert_int_eq(aev_future_done(tr), 0);
    ck_assert_int_eq(aev_future_done(tw), 0);
    ck_assert_uint_gt(w.sent, 0);
    ck_assert_int_eq(aev_future_cancel(tc, NULL), 1); /* its done callbacks never run */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(r.rc, AEV_ECANCELLED);
    ck_assert_int_eq(rc1.rc, AEV_ECANCELLED);
    ck_assert_int_eq(w.rc, AEV_ECANCELLED);
    ck_assert(aev_future_done(tr) && aev_future_done(tc) && aev_future_done(tw));
    if (ta) {
        ck_assert_int_eq(a.rc, AEV_ECANCELLED);
        ck_assert_int_eq(aev_future_cancelled(ta), 1);
    }
    /* the sender's end closes: the peer reads exactly `sent` bytes, intact, then EOF */
    close(wv[0]);
    size_t total = 0;
    int bad = 0;
    unsigned char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = wv[1], .events = POLLIN};
        ck_assert_int_eq(poll(&p, 1, 10000), 1);
        ssize_t n = recv(wv[1], buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
            continue;
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        for (ssize_t k = 0; k < n; k++)
            bad += buf[k] != pattern(total + (size_t)k);
        total += (size_t)n;
    }
    ck_assert_msg(total == w.sent, "%s: the peer read %zu bytes, sendall reported %zu", fam_name(fam), total,
                  w.sent);
    ck_assert_int_eq(bad, 0);
    aev_future_unref(tr);
    aev_future_unref(tc);
    aev_future_unref(tw);
    if (ta)
        aev_future_unref(ta);
    aev_loop_free(loop);
    if (lfd >= 0)
        close(lfd);
    close(sv[0]);
    close(sv[1]);
    close(wv[1]);
    free(src);
}
END_TEST

/* ---- sendfile awaited from a task ------------------------------------------------ */

typedef struct {
    int sock, file;
    aev_sendfile_options_t opts;
    ssize_t rc;
} sendfile_job_t;

static int sendfile_task(aev_future_t *self, void *arg)
{
    (void)self;
    sendfile_job_t *j = arg;
    j->rc = aev_task_sock_sendfile(j->sock, j->file, &j->opts);
    return 0;
}

typedef struct {
    int fd;
    size_t want, got;
    size_t base; /* the pattern index of the first byte expected */
    int bad;
} drain_job_t;

static int drain_task(aev_future_t *self, void *arg)
{
    (void)self;
    drain_job_t *d = arg;
    unsigned char buf[8192];
    while (d->got < d->want) {
        ssize_t n = aev_task_sock_recv(d->fd, buf, sizeof buf);
        if (n <= 0)
            return n < 0 ? (int)n : -EPIPE;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pattern(d->base + d->got + (size_t)i))
                d->bad++;
        d->got += (size_t)n;
    }
    return 0;
}

/* aev_task_sock_sendfile: a range of a regular file (sendfile(2)), the file position left
 * after the last byte sent, every byte checked; a pipe as the file takes the fallback, and
 * with no_fallback it is refused with AEV_ESENDFILE_NOT_AVAILABLE. */
START_TEST(test_sendfile)
{
    int fam = _i;
    SKIP_WITHOUT_IPV6(fam);
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    stream_pair(fam, sv, 16384);
    char path[] = "/tmp/aev-task-sendfile-XXXXXX";
    int file = mkstemp(path);
    ck_assert_int_ge(file, 0);
    unlink(path);
    size_t size = 1 << 20;
    unsigned char *data = pattern_buf(size);
    ck_assert_int_eq(write(file, data, size), (ssize_t)size);

    sendfile_job_t j = {.sock = sv[0], .file = file, .opts = {.offset = 1000, .count = 500000}};
    drain_job_t d = {.fd = sv[1], .want = 500000, .base = 1000};
    aev_future_t *reader = spawn(loop, drain_task, &d);
    aev_future_t *sender = spawn(loop, sendfile_task, &j);
    ck_assert_int_eq(run_task(loop, sender, 30), 0);
    ck_assert_int_eq(run_task(loop, reader, 30), 0);
    ck_assert_int_eq(j.rc, 500000);
    ck_assert_int_eq(d.got, 500000);
    ck_assert_int_eq(d.bad, 0);
    ck_assert_int_eq(lseek(file, 0, SEEK_CUR), 501000);
    aev_future_unref(sender);
    aev_future_unref(reader);

    /* a pipe: sendfile(2) cannot read from it, the fallback reads and sends */
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    ck_assert_int_eq(write(pfd[1], data, 3000), 3000);
    close(pfd[1]);
    sendfile_job_t jp = {.sock = sv[0], .file = pfd[0]};
    drain_job_t dp = {.fd = sv[1], .want = 3000, .base = 0};
    reader = spawn(loop, drain_task, &dp);
    sender = spawn(loop, sendfile_task, &jp);
    ck_assert_int_eq(run_task(loop, sender, 30), 0);
    ck_assert_int_eq(run_task(loop, reader, 30), 0);
    ck_assert_int_eq(jp.rc, 3000);
    ck_assert_int_eq(dp.bad, 0);
    aev_future_unref(sender);
    aev_future_unref(reader);
    close(pfd[0]);

    ck_assert_int_eq(pipe(pfd), 0);
    sendfile_job_t jn = {.sock = sv[0], .file = pfd[0], .opts = {.no_fallback = 1}};
    sender = spawn(loop, sendfile_task, &jn);
    ck_assert_int_eq(run_task(loop, sender, 30), 0);
    ck_assert_int_eq(jn.rc, AEV_ESENDFILE_NOT_AVAILABLE);
    aev_future_unref(sender);
    close(pfd[0]);
    close(pfd[1]);

    free(data);
    close(file);
    close(sv[0]);
    close(sv[1]);
    tu_loop_free(loop);
}
END_TEST

static Suite *task_sock_suite(void)
{
    Suite *s = suite_create("task_sock");
    struct {
        const char *name;
        const TTest *test;
    } tests[] = {
        {"test_echo_1mib", test_echo_1mib},
        {"test_connect_refused", test_connect_refused},
        {"test_peer_reset", test_peer_reset},
        {"test_blocking_socket_refused", test_blocking_socket_refused},
        {"test_cancel_mid_transfer", test_cancel_mid_transfer},
        {"test_datagrams", test_datagrams},
        {"test_two_receivers_refused", test_two_receivers_refused},
        {"test_sendfile", test_sendfile},
        {"test_cancel_recv_then_data", test_cancel_recv_then_data},
        {"test_loop_close_with_waiting_tasks", test_loop_close_with_waiting_tasks},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        TCase *tc = tu_tcase(tests[i].name);
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, tests[i].test, 0, FAM_COUNT);
        suite_add_tcase(s, tc);
    }
    return s;
}

TU_MAIN(task_sock_suite)
