/* libaev conformance - pipe transports (loop.connect_read_pipe and
 * loop.connect_write_pipe, asyncio's _UnixReadPipeTransport and
 * _UnixWritePipeTransport): a child process writing into a read pipe (data in
 * order, EOF, connection_lost), a child process reading a write pipe (large
 * writes with flow control, nothing lost, write_eof), the reader going away
 * (with and without buffered data, no SIGPIPE), pause/resume reading, abort,
 * which fds are accepted (pipes, sockets, character devices; not regular
 * files), and loop close with open pipe transports. Every child is reaped and
 * every test checks that no fd leaked. */
#include "test_util.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- the protocol ------------------------------------------------------------------ */

typedef struct rec {
    aev_protocol_t proto;
    aev_transport_t *t;
    int made, lost, eofs, pauses, resumes;
    int lost_error;
    int eof_answer;  /* what eof_received returns */
    char order[16];  /* m(ade) d(ata) e(of) l(ost) p(ause) r(esume), deduplicated runs */
    size_t got;
    unsigned char buf[1 << 16];
    size_t pattern_off; /* data_received checks the pattern from here when check_pattern */
    int check_pattern;
} rec_t;

static void note(rec_t *r, char c)
{
    size_t n = strlen(r->order);
    if ((n == 0 || r->order[n - 1] != c) && n + 1 < sizeof r->order)
        r->order[n] = c;
}

static int r_made(aev_protocol_t *p, aev_transport_t *t)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made + r->lost, 0);
    r->made++;
    r->t = t;
    note(r, 'm');
    return 0;
}

static int r_data(aev_protocol_t *p, const void *d, size_t n)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    ck_assert_int_eq(r->lost, 0);
    ck_assert_int_eq(r->eofs, 0);
    note(r, 'd');
    const unsigned char *b = d;
    if (r->check_pattern) {
        size_t i = 0;
        while (i < n && b[i] == (unsigned char)((r->pattern_off + i) * 31u))
            i++;
        ck_assert_msg(i == n, "byte %zu of the stream differs", r->pattern_off + i);
        r->pattern_off += n;
    }
    size_t room = r->got < sizeof r->buf ? sizeof r->buf - r->got : 0;
    memcpy(r->buf + (r->got < sizeof r->buf ? r->got : 0), d, n < room ? n : room);
    r->got += n;
    return 0;
}

static int r_eof(aev_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->lost, 0);
    r->eofs++;
    note(r, 'e');
    return r->eof_answer;
}

static int r_lost(aev_protocol_t *p, int error)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    r->lost++;
    r->lost_error = error;
    note(r, 'l');
    return 0;
}

static int r_pause(aev_protocol_t *p)
{
    ((rec_t *)p)->pauses++;
    note((rec_t *)p, 'p');
    return 0;
}

static int r_resume(aev_protocol_t *p)
{
    ((rec_t *)p)->resumes++;
    note((rec_t *)p, 'r');
    return 0;
}

static aev_protocol_t *rec_factory(void *userdata)
{
    return &((rec_t *)userdata)->proto;
}

static rec_t *rec_new(void)
{
    rec_t *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->proto.connection_made = r_made;
    r->proto.data_received = r_data;
    r->proto.eof_received = r_eof;
    r->proto.connection_lost = r_lost;
    r->proto.pause_writing = r_pause;
    r->proto.resume_writing = r_resume;
    return r;
}

/* ---- helpers ----------------------------------------------------------------------- */

/* Runs the loop in short slices until *flag becomes non-zero (or limit seconds). */
static void run_until(aev_loop_t *loop, const int *flag, double limit)
{
    double end = tu_now() + limit;
    while (!*flag && tu_now() < end) {
        aev_loop_call_later(loop, 0.002, tu_stop_cb, NULL, NULL);
        aev_loop_run_forever(loop);
    }
    ck_assert_msg(*flag, "condition not reached within %.0f s", limit);
}

typedef int (*connect_fn)(aev_loop_t *, aev_protocol_factory_fn, void *, int, aev_future_t **);

/* Connects fd with r's protocol and runs until the future is done; returns the transport. */
static aev_transport_t *connect_pipe(aev_loop_t *loop, connect_fn fn, rec_t *r, int fd)
{
    aev_future_t *f = NULL;
    int rc = fn(loop, rec_factory, r, fd, &f);
    ck_assert_msg(rc == 0, "connect pipe: %s: %s", aev_err_name(rc), aev_error_detail());
    ck_assert_int_eq(r->made, 0); /* connection_made comes from the loop */
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    ck_assert_int_eq(r->made, 1);
    void *t = NULL;
    ck_assert_int_eq(aev_future_result(f, &t), 0);
    ck_assert_ptr_eq(t, r->t);
    aev_future_unref(f);
    ck_assert_int_eq(aev_transport_get_pipe(r->t), fd);
    ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK); /* made non-blocking */
    return r->t;
}

static void make_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
}

/* The number of open fds of this process. */
static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* Waits for the child and returns its exit status (fails if it did not exit normally). */
static int reap(pid_t pid)
{
    int st = 0;
    pid_t w;
    do
        w = waitpid(pid, &st, 0);
    while (w < 0 && errno == EINTR);
    ck_assert_int_eq(w, pid);
    ck_assert_msg(WIFEXITED(st), "child %d did not exit (status %#x)", (int)pid, st);
    return WEXITSTATUS(st);
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u);
    return p;
}

/* FNV-1a, 64 bit: the reader child's digest of what it read. */
static uint64_t fnv(uint64_t h, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV_START 14695981039346656037ull

typedef struct digest {
    uint64_t count, hash;
} digest_t;

/* The children are this program again (exec'd, so that a memory checker watching the test
 * does not look at a copy of it): "--child-reader N" reads stdin until EOF (or N bytes, 0: no
 * limit), closes it and writes its digest to stdout; "--child-writer N" writes N bytes of the
 * pattern to stdout in small pieces. */
static char g_self[4096];

static int child_reader(size_t stop_after)
{
    digest_t d = {0, FNV_START};
    unsigned char b[8192];
    for (;;) {
        size_t want = sizeof b;
        if (stop_after && stop_after - d.count < want)
            want = stop_after - d.count;
        ssize_t n = read(0, b, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        d.hash = fnv(d.hash, b, (size_t)n);
        d.count += (uint64_t)n;
        if (stop_after && d.count == stop_after)
            break;
    }
    close(0); /* the reader goes away */
    return write(1, &d, sizeof d) == (ssize_t)sizeof d ? 0 : 3;
}

static int child_writer(size_t total)
{
    unsigned char *data = malloc(total); /* no Check calls in a child: it runs no test */
    if (!data)
        return 4;
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 31u);
    for (size_t off = 0; off < total;) {
        size_t n = total - off < 3000 ? total - off : 3000;
        ssize_t w = write(1, data + off, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 2;
        off += (size_t)w;
    }
    free(data);
    return 0;
}

/* Starts this program as role with stdin/stdout from in_fd/out_fd (-1: unchanged); every other
 * fd of the test is close-on-exec. */
static pid_t spawn_self(const char *role, size_t n, int in_fd, int out_fd)
{
    char arg[32];
    snprintf(arg, sizeof arg, "%zu", n);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if ((in_fd >= 0 && dup2(in_fd, 0) < 0) || (out_fd >= 0 && dup2(out_fd, 1) < 0))
            _exit(126);
        execl(g_self, g_self, role, arg, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* A child reading the pipe p (its read end, closed here) and reporting through res (its write
 * end, closed here). */
static pid_t spawn_reader(int p[2], int res[2], size_t stop_after)
{
    pid_t pid = spawn_self("--child-reader", stop_after, p[0], res[1]);
    close(p[0]);
    close(res[1]);
    return pid;
}

static digest_t read_digest(int fd)
{
    digest_t d;
    size_t got = 0;
    while (got < sizeof d) {
        ssize_t n = read(fd, (char *)&d + got, sizeof d - got);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
    return d;
}

static int g_exc_calls;
static aev_exception_context_t g_exc;

static void record_exc(aev_loop_t *loop, const aev_exception_context_t *ctx, void *ud)
{
    (void)loop;
    (void)ud;
    g_exc_calls++;
    g_exc = *ctx;
}

static aev_loop_t *loop_new(void)
{
    aev_loop_t *loop = tu_loop_new();
    g_exc_calls = 0;
    aev_loop_set_exception_handler(loop, record_exc, NULL);
    return loop;
}

/* The loop tests over write pipes run twice: _i 0 with SIGPIPE at its default disposition
 * (the write pipe's waited writes stay on the readiness half on every loop), _i 1 with SIGPIPE
 * ignored (on a proactor loop they run as native io_uring writes). */
static void sigpipe_for(int ignored)
{
    signal(SIGPIPE, ignored ? SIG_IGN : SIG_DFL);
}

/* ---- read pipes ---------------------------------------------------------------------- */

/* A shell writes two lines and exits: data in order, then eof_received, then
 * connection_lost(0); the transport closed its fd. */
START_TEST(test_read_pipe_child_shell)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(p[1], 1);
        execl("/bin/sh", "sh", "-c", "printf 'one\\n'; printf 'two\\n'; exit 0", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    rec_t *r = rec_new();
    r->eof_answer = 1; /* asking to stay open means nothing to a read pipe */
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_read_pipe, r, p[0]);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    ck_assert_int_eq(aev_transport_can_write_eof(t), 0);
    run_until(loop, &r->lost, 5);
    ck_assert_uint_eq(r->got, 8);
    ck_assert_int_eq(memcmp(r->buf, "one\ntwo\n", 8), 0);
    ck_assert_str_eq(r->order, "mdel");
    ck_assert_int_eq(r->eofs, 1);
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(g_exc_calls, 0);
    ck_assert_int_eq(reap(pid), 0);
    tu_loop_free(loop);
    ck_assert_int_eq(tu_fd_is_open(p[0]), 0);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
}
END_TEST

/* A forked child writes 2 MiB in small pieces: every byte arrives, in order. */
START_TEST(test_read_pipe_child_stream)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    size_t total = 2u << 20;
    pid_t pid = spawn_self("--child-writer", total, -1, p[1]);
    close(p[1]);
    rec_t *r = rec_new();
    r->check_pattern = 1;
    connect_pipe(loop, aev_loop_connect_read_pipe, r, p[0]);
    run_until(loop, &r->lost, 10);
    ck_assert_uint_eq(r->pattern_off, total);
    ck_assert_str_eq(r->order, "mdel");
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(reap(pid), 0);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
}
END_TEST

START_TEST(test_read_pipe_pause_resume)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    rec_t *r = rec_new();
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_read_pipe, r, p[0]);
    aev_transport_pause_reading(t);
    aev_transport_pause_reading(t); /* idempotent */
    ck_assert_int_eq(aev_transport_is_reading(t), 0);
    tu_write(p[1], "queued");
    for (int i = 0; i < 10; i++)
        tu_run_once(loop);
    ck_assert_uint_eq(r->got, 0);
    aev_transport_resume_reading(t);
    aev_transport_resume_reading(t);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    run_until(loop, (const int *)&r->got, 5);
    ck_assert_int_eq(memcmp(r->buf, "queued", 6), 0);
    /* a read pipe cannot write */
    ck_assert_int_eq(aev_transport_write(t, "x", 1), AEV_EINVALID_STATE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "read pipe"));
    ck_assert_int_eq(aev_transport_write_eof(t), AEV_EINVALID_STATE);
    close(p[1]);
    run_until(loop, &r->lost, 5);
    ck_assert_str_eq(r->order, "mdel");
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
}
END_TEST

static int eof_raises(aev_protocol_t *p)
{
    r_eof(p);
    return -EPROTO;
}

/* eof_received "raising" is reported; the read pipe still ends with connection_lost(0). */
START_TEST(test_read_pipe_eof_raises)
{
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    rec_t *r = rec_new();
    r->proto.eof_received = eof_raises;
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_read_pipe, r, p[0]);
    close(p[1]);
    run_until(loop, &r->lost, 5);
    ck_assert_str_eq(r->order, "mel");
    ck_assert_int_eq(g_exc_calls, 1);
    ck_assert_int_eq(g_exc.error, -EPROTO);
    ck_assert_ptr_eq(g_exc.transport, t);
    ck_assert_int_eq(r->lost_error, 0);
    tu_loop_free(loop);
    free(r);
}
END_TEST

/* close() on a read pipe: connection_lost(0) soon, no eof_received; abort is the same. */
START_TEST(test_read_pipe_close_abort)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    for (int mode = 0; mode < 2; mode++) {
        int p[2];
        make_pipe(p);
        rec_t *r = rec_new();
        aev_transport_t *t = connect_pipe(loop, aev_loop_connect_read_pipe, r, p[0]);
        if (mode == 0)
            aev_transport_close(t);
        else
            aev_transport_abort(t);
        ck_assert_int_eq(aev_transport_is_closing(t), 1);
        ck_assert_int_eq(aev_transport_is_reading(t), 0);
        ck_assert_int_eq(r->lost, 0); /* soon, not now */
        tu_write(p[1], "late");
        run_until(loop, &r->lost, 5);
        ck_assert_str_eq(r->order, "ml");
        ck_assert_int_eq(r->lost_error, 0);
        ck_assert_int_eq(tu_fd_is_open(p[0]), 0);
        close(p[1]);
        free(r);
    }
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
}
END_TEST

/* A pty's master reads EIO once the slave closes: connection_lost(-EIO), which asyncio does not
 * report to the exception handler. */
START_TEST(test_read_pipe_pty_eio)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || !ptsname(m)) {
        if (m >= 0)
            close(m);
        return; /* no ptys here */
    }
    int fds0 = fd_count();
    int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
    ck_assert_int_ge(s, 0);
    aev_loop_t *loop = loop_new();
    rec_t *r = rec_new();
    connect_pipe(loop, aev_loop_connect_read_pipe, r, m); /* a character device */
    tu_write(s, "tty\n");
    run_until(loop, (const int *)&r->got, 5);
    close(s);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, -EIO);
    ck_assert_int_eq(g_exc_calls, 0);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0 - 1); /* m went with the transport, s closed */
    free(r);
}
END_TEST

/* ---- write pipes ---------------------------------------------------------------------- */

/* 4 MiB to a child reader: pause_writing once above high, resume_writing once at low, every
 * byte arrives in order (the child's digest), then close (= write_eof) gives the child EOF and
 * us connection_lost(0). */
START_TEST(test_write_pipe_child_reader_flow_control)
{
    sigpipe_for(_i);
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2], res[2];
    make_pipe(p);
    make_pipe(res);
    pid_t pid = spawn_reader(p, res, 0);
    rec_t *r = rec_new();
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]);
    ck_assert_int_eq(aev_transport_is_reading(t), 0);
    aev_transport_resume_reading(t); /* nothing to read on a write pipe */
    ck_assert_int_eq(aev_transport_is_reading(t), 0);
    aev_transport_pause_reading(t);
    ck_assert_int_eq(aev_transport_can_write_eof(t), 1);
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 65536, 16384), 0);
    size_t total = 4u << 20;
    unsigned char *data = pattern(total);
    size_t off = 0;
    for (; off < total / 2; off += 65536)
        ck_assert_int_eq(aev_transport_write(t, data + off, 65536), 0);
    for (; off < total; off += 3 * 32768) { /* writelines of three pieces */
        size_t left = total - off;
        struct iovec iov[3] = {{data + off, 32768}, {data + off + 32768, 32768}, {data + off + 65536, 32768}};
        int cnt = left >= 3 * 32768 ? 3 : (int)((left + 32767) / 32768);
        if (left < 3 * 32768)
            iov[cnt - 1].iov_len = left - (size_t)(cnt - 1) * 32768;
        ck_assert_int_eq(aev_transport_writelines(t, iov, cnt), 0);
    }
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 65536);
    ck_assert_int_eq(r->pauses, 1);
    ck_assert_int_eq(r->resumes, 0);
    double end = tu_now() + 10;
    while (aev_transport_get_write_buffer_size(t) > 0 && tu_now() < end)
        tu_run_once(loop);
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0);
    ck_assert_int_eq(r->resumes, 1);
    ck_assert_int_eq(r->lost, 0);
    aev_transport_close(t);
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    run_until(loop, &r->lost, 5);
    ck_assert_str_eq(r->order, "mprl");
    ck_assert_int_eq(r->lost_error, 0);
    digest_t d = read_digest(res[0]);
    ck_assert_uint_eq(d.count, total);
    ck_assert(d.hash == fnv(FNV_START, data, total));
    ck_assert_int_eq(reap(pid), 0);
    close(res[0]);
    free(data);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
    sigpipe_for(0);
}
END_TEST

/* write_eof with data still buffered: the data goes first, then the fd is closed (the child
 * sees EOF) and connection_lost(0) follows; writing after write_eof is refused. */
START_TEST(test_write_pipe_write_eof)
{
    sigpipe_for(_i);
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2], res[2];
    make_pipe(p);
    make_pipe(res);
    pid_t pid = spawn_reader(p, res, 0);
    rec_t *r = rec_new();
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]);
    size_t total = 1u << 20;
    unsigned char *data = pattern(total);
    ck_assert_int_eq(aev_transport_write(t, data, total), 0);
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 0);
    ck_assert_int_eq(aev_transport_write_eof(t), 0);
    ck_assert_int_eq(aev_transport_write_eof(t), 0); /* idempotent */
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    ck_assert_int_ne(aev_transport_write(t, "x", 1), 0);
    ck_assert_int_eq(r->lost, 0);
    run_until(loop, &r->lost, 10);
    ck_assert_int_eq(r->lost_error, 0);
    digest_t d = read_digest(res[0]);
    ck_assert_uint_eq(d.count, total);
    ck_assert(d.hash == fnv(FNV_START, data, total));
    ck_assert_int_eq(reap(pid), 0);
    close(res[0]);
    free(data);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
    sigpipe_for(0);
}
END_TEST

/* The child reads 1000 bytes and exits while much more is buffered: connection_lost(-EPIPE),
 * not reported to the exception handler, and no SIGPIPE kills us (its disposition is the
 * default one here). Also when close() was called and the buffer was draining (the failing
 * write then tells). */
START_TEST(test_write_pipe_reader_exits_early)
{
    sigpipe_for(_i);
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    for (int mode = 0; mode < 2; mode++) {
        int p[2], res[2];
        make_pipe(p);
        make_pipe(res);
        pid_t pid = spawn_reader(p, res, 1000);
        rec_t *r = rec_new();
        aev_transport_t *t = aev_transport_ref(connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]));
        size_t total = 1u << 20;
        unsigned char *data = pattern(total);
        ck_assert_int_eq(aev_transport_write(t, data, total), 0);
        ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 0);
        if (mode == 1)
            aev_transport_close(t);
        run_until(loop, &r->lost, 5);
        ck_assert_int_eq(r->lost_error, -EPIPE);
        ck_assert_int_eq(g_exc_calls, 0);
        ck_assert_int_eq(aev_transport_is_closing(t), 1); /* our reference keeps t */
        aev_transport_unref(t);
        digest_t d = read_digest(res[0]);
        ck_assert_uint_eq(d.count, 1000);
        ck_assert_int_eq(reap(pid), 0);
        sigset_t pending;
        sigpending(&pending);
        ck_assert(!sigismember(&pending, SIGPIPE));
        close(res[0]);
        free(data);
        free(r);
    }
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    sigpipe_for(0);
}
END_TEST

/* The reader closes while nothing is buffered: the transport notices without writing and ends
 * with connection_lost(0), as asyncio's reader on the write end does. */
START_TEST(test_write_pipe_reader_closes_idle)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    rec_t *r = rec_new();
    aev_transport_t *t = aev_transport_ref(connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]));
    ck_assert_int_eq(aev_transport_write(t, "hello", 5), 0);
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_int_eq(r->lost, 0); /* data waiting in the pipe is no reason to close */
    close(p[0]);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(g_exc_calls, 0);
    ck_assert_int_eq(aev_transport_is_closing(t), 1); /* our reference keeps t */
    aev_transport_unref(t);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
}
END_TEST

/* A write that meets a closed reader (before the loop could notice): connection_lost(-EPIPE),
 * no SIGPIPE, later writes refused. */
START_TEST(test_write_pipe_write_after_reader_gone)
{
    sigpipe_for(_i);
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    rec_t *r = rec_new();
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]);
    close(p[0]);
    ck_assert_int_eq(aev_transport_write(t, "x", 1), 0); /* fails inside: reported by connection_lost */
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    ck_assert_int_eq(aev_transport_write(t, "y", 1), -EPIPE);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, -EPIPE);
    ck_assert_int_eq(g_exc_calls, 0);
    sigset_t pending;
    sigpending(&pending);
    ck_assert(!sigismember(&pending, SIGPIPE));
    tu_loop_free(loop);
    free(r);
    sigpipe_for(0);
}
END_TEST

/* abort drops the buffer at once: connection_lost(0), the reader gets less than was written. */
START_TEST(test_write_pipe_abort)
{
    sigpipe_for(_i);
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    rec_t *r = rec_new();
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]);
    size_t total = 1u << 20;
    unsigned char *data = pattern(total);
    ck_assert_int_eq(aev_transport_write(t, data, total), 0);
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 0);
    aev_transport_abort(t);
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(tu_fd_is_open(p[1]), 0);
    size_t got = 0;
    char b[65536];
    ssize_t n;
    while ((n = read(p[0], b, sizeof b)) > 0)
        got += (size_t)n;
    ck_assert_int_eq(n, 0); /* EOF: the write end is closed */
    ck_assert_uint_lt(got, total);
    close(p[0]);
    free(data);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
    sigpipe_for(0);
}
END_TEST

/* Reads what the pipe's read end rfd (non-blocking) holds now; returns the bytes read, and sets
 * *eof at EOF. */
static size_t drain_now(int rfd, int *eof)
{
    char b[65536];
    size_t got = 0;
    ssize_t n;
    while ((n = read(rfd, b, sizeof b)) > 0)
        got += (size_t)n;
    if (n == 0)
        *eof = 1;
    return got;
}

/* A write waits (1 MiB into a 64 KiB pipe: on a proactor loop with SIGPIPE ignored, a native
 * io_uring write is in flight) when: mode 0, the reader closes: connection_lost(-EPIPE), as
 * asyncio's BrokenPipeError, not reported, and no signal; mode 1, abort: connection_lost(0)
 * at once, the reader gets a prefix of the data and EOF; mode 2, close: every byte still
 * arrives, then EOF and connection_lost(0). _i / 3: SIGPIPE ignored (see sigpipe_for). */
START_TEST(test_write_pipe_send_in_flight)
{
    int mode = _i % 3;
    sigpipe_for(_i / 3);
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    rec_t *r = rec_new();
    aev_transport_t *t = aev_transport_ref(connect_pipe(loop, aev_loop_connect_write_pipe, r, p[1]));
    size_t total = 1u << 20;
    unsigned char *data = pattern(total);
    ck_assert_int_eq(aev_transport_write(t, data, total), 0);
    size_t buffered = aev_transport_get_write_buffer_size(t);
    ck_assert_uint_gt(buffered, 0);
    for (int i = 0; i < 3; i++) /* the waiting write is handed to the kernel */
        tu_run_once(loop);
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), buffered); /* the pipe is full */
    ck_assert_int_eq(r->lost, 0);
    size_t got = 0;
    int eof = 0;
    if (mode == 0) {
        close(p[0]);
        p[0] = -1;
        run_until(loop, &r->lost, 5);
        ck_assert_int_eq(r->lost_error, -EPIPE);
        ck_assert_int_eq(g_exc_calls, 0);
        ck_assert_int_ne(aev_transport_write(t, "x", 1), 0); /* refused */
    } else if (mode == 1) {
        aev_transport_abort(t);
        ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0);
        run_until(loop, &r->lost, 5);
        ck_assert_int_eq(r->lost_error, 0);
        got = drain_now(p[0], &eof);
        ck_assert_int_eq(eof, 1);
        ck_assert_uint_eq(got, total - buffered); /* nothing of the cancelled write */
    } else {
        aev_transport_close(t);
        ck_assert_int_eq(aev_transport_is_closing(t), 1);
        double end = tu_now() + 10;
        while (!eof && tu_now() < end) {
            got += drain_now(p[0], &eof);
            tu_run_once(loop);
        }
        ck_assert_int_eq(eof, 1);
        ck_assert_uint_eq(got, total);
        ck_assert_int_eq(r->lost, 1);
        ck_assert_int_eq(r->lost_error, 0);
    }
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    ck_assert_int_eq(tu_fd_is_open(p[1]), 0);
    sigset_t pending;
    sigpending(&pending);
    ck_assert(!sigismember(&pending, SIGPIPE));
    aev_transport_unref(t);
    if (p[0] >= 0)
        close(p[0]);
    free(data);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
    free(r);
    sigpipe_for(0);
}
END_TEST

/* In a child process (no Check calls): a write pipe whose write waits in a full pipe when the
 * reader closes. ign_connect / ign_write: is SIGPIPE ignored when the pipe is connected / when
 * the write starts to wait. Exit status 0: connection_lost(-EPIPE) came and the process lives;
 * a SIGPIPE that got through kills it instead. */
static int broken_pipe_child(int ign_connect, int ign_write)
{
    signal(SIGPIPE, ign_connect ? SIG_IGN : SIG_DFL);
    aev_loop_t *loop = NULL;
    if (aev_loop_new(NULL, &loop) < 0)
        return 10;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return 11;
    rec_t r;
    memset(&r, 0, sizeof r);
    r.proto.connection_made = r_made;
    r.proto.connection_lost = r_lost;
    aev_future_t *f = NULL;
    if (aev_loop_connect_write_pipe(loop, rec_factory, &r, p[1], &f) < 0 ||
        aev_loop_run_until_complete(loop, f) < 0 || !r.t)
        return 12;
    aev_future_unref(f);
    signal(SIGPIPE, ign_write ? SIG_IGN : SIG_DFL);
    static unsigned char big[1 << 20];
    if (aev_transport_write(r.t, big, sizeof big) < 0 || aev_transport_get_write_buffer_size(r.t) == 0)
        return 13;
    for (int i = 0; i < 3; i++) {
        aev_loop_stop(loop);
        aev_loop_run_forever(loop);
    }
    close(p[0]);
    double end = tu_now() + 5;
    while (!r.lost && tu_now() < end) {
        aev_loop_call_later(loop, 0.002, tu_stop_cb, NULL, NULL);
        aev_loop_run_forever(loop);
    }
    if (!r.lost)
        return 14;
    if (r.lost_error != -EPIPE)
        return 15;
    aev_loop_close(loop);
    aev_loop_free(loop);
    return 0;
}

/* SIGPIPE at its default disposition: the reader closing while a write waits gives
 * connection_lost(-EPIPE) and the process survives (the write pipe stays on the readiness half,
 * which takes the signal back). _i 0: default all along; _i 1: ignored when the pipe was
 * connected, default again when the write starts to wait (checked again then); _i 2: ignored
 * throughout (the native path on proactor). Each in a child of its own, which a leaked SIGPIPE
 * would kill. */
START_TEST(test_write_pipe_sigpipe_child_survives)
{
    static const int scen[3][2] = {{0, 0}, {1, 0}, {1, 1}};
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(broken_pipe_child(scen[_i][0], scen[_i][1]));
    int st = 0;
    pid_t w;
    do
        w = waitpid(pid, &st, 0);
    while (w < 0 && errno == EINTR);
    ck_assert_int_eq(w, pid);
    ck_assert_msg(!WIFSIGNALED(st), "the child was killed by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

/* ---- which fds ------------------------------------------------------------------------ */

/* Regular files and directories are refused with a clear error; the fd stays the caller's,
 * untouched (still blocking); bad fds are -EBADF. A character device (/dev/null) is taken. */
START_TEST(test_fd_kinds)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    char path[] = "/tmp/aev-pipe-test-XXXXXX";
    int f = mkstemp(path);
    ck_assert_int_ge(f, 0);
    unlink(path);
    aev_future_t *fut = (aev_future_t *)1;
    ck_assert_int_eq(aev_loop_connect_read_pipe(loop, rec_factory, NULL, f, &fut), -EINVAL);
    ck_assert_ptr_null(fut);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "Pipe transport is for pipes/sockets only"));
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "regular file"));
    ck_assert_int_eq(aev_loop_connect_write_pipe(loop, rec_factory, NULL, f, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "only for pipes, sockets and character devices"));
    ck_assert_int_eq(tu_fd_is_open(f), 1);
    ck_assert_int_eq(fcntl(f, F_GETFL) & O_NONBLOCK, 0);
    close(f);
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dir, 0);
    ck_assert_int_eq(aev_loop_connect_read_pipe(loop, rec_factory, NULL, dir, &fut), -EINVAL);
    close(dir);
    ck_assert_int_eq(aev_loop_connect_read_pipe(loop, rec_factory, NULL, -1, &fut), -EBADF);
    ck_assert_int_eq(aev_loop_connect_write_pipe(loop, rec_factory, NULL, dir, &fut), -EBADF); /* closed */
    ck_assert_int_eq(aev_loop_connect_write_pipe(loop, NULL, NULL, 1, &fut), -EINVAL);

    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(null, 0);
    rec_t *r = rec_new();
    aev_transport_t *t = connect_pipe(loop, aev_loop_connect_write_pipe, r, null);
    ck_assert_int_eq(aev_transport_write(t, "into the void", 13), 0);
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0);
    aev_transport_close(t);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(tu_fd_is_open(null), 0);
    free(r);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
}
END_TEST

/* A socketpair serves as a pipe: one end as the write pipe, the other as the read pipe of the
 * same loop; closing the write pipe gives the reader EOF. Then the other way round: the read
 * side closes and the idle write pipe notices. */
START_TEST(test_socketpair_as_pipe)
{
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int sv[2];
    tu_socketpair(sv);
    rec_t *rd = rec_new(), *wr = rec_new();
    aev_transport_t *rt = connect_pipe(loop, aev_loop_connect_read_pipe, rd, sv[0]);
    aev_transport_t *wt = connect_pipe(loop, aev_loop_connect_write_pipe, wr, sv[1]);
    size_t total = 1u << 20;
    unsigned char *data = pattern(total);
    rd->check_pattern = 1;
    ck_assert_int_eq(aev_transport_write(wt, data, total), 0);
    aev_transport_close(wt);
    run_until(loop, &rd->lost, 10);
    ck_assert_int_eq(wr->lost, 1);
    ck_assert_int_eq(wr->lost_error, 0);
    ck_assert_uint_eq(rd->pattern_off, total);
    ck_assert_str_eq(rd->order, "mdel");
    ck_assert_int_eq(rd->lost_error, 0);
    (void)rt;
    free(rd);
    free(wr);

    tu_socketpair(sv);
    rd = rec_new();
    wr = rec_new();
    rt = connect_pipe(loop, aev_loop_connect_read_pipe, rd, sv[0]);
    wt = connect_pipe(loop, aev_loop_connect_write_pipe, wr, sv[1]);
    ck_assert_int_eq(aev_transport_write(wt, "ping", 4), 0);
    run_until(loop, (const int *)&rd->got, 5);
    aev_transport_close(rt);
    run_until(loop, &wr->lost, 5);
    ck_assert_int_eq(wr->lost_error, 0);
    ck_assert_int_eq(g_exc_calls, 0);
    free(data);
    free(rd);
    free(wr);
    tu_loop_free(loop);
    ck_assert_int_eq(fd_count(), fds0);
}
END_TEST

/* Closing the loop with pipe transports open: connection_lost(AEV_ECLOSED), fds closed. */
START_TEST(test_loop_close_with_open_pipes)
{
    sigpipe_for(_i);
    int fds0 = fd_count();
    aev_loop_t *loop = loop_new();
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    rec_t *rd = rec_new(), *wr = rec_new();
    connect_pipe(loop, aev_loop_connect_read_pipe, rd, a[0]);
    aev_transport_t *wt = connect_pipe(loop, aev_loop_connect_write_pipe, wr, b[1]);
    unsigned char *data = pattern(1u << 20);
    ck_assert_int_eq(aev_transport_write(wt, data, 1u << 20), 0); /* some of it buffered */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(rd->lost, 1);
    ck_assert_int_eq(rd->lost_error, AEV_ECLOSED);
    ck_assert_int_eq(wr->lost, 1);
    ck_assert_int_eq(wr->lost_error, AEV_ECLOSED);
    ck_assert_int_eq(tu_fd_is_open(a[0]), 0);
    ck_assert_int_eq(tu_fd_is_open(b[1]), 0);
    aev_loop_free(loop);
    close(a[1]);
    close(b[0]);
    free(data);
    free(rd);
    free(wr);
    ck_assert_int_eq(fd_count(), fds0);
    sigpipe_for(0);
}
END_TEST

static Suite *pipe_suite(void)
{
    Suite *s = suite_create("pipe");
    TU_ADD(s, test_read_pipe_child_shell);
    TU_ADD(s, test_read_pipe_child_stream);
    TU_ADD(s, test_read_pipe_pause_resume);
    TU_ADD(s, test_read_pipe_eof_raises);
    TU_ADD(s, test_read_pipe_close_abort);
    TU_ADD(s, test_read_pipe_pty_eio);
    TU_ADD_LOOP(s, test_write_pipe_child_reader_flow_control, 2);
    TU_ADD_LOOP(s, test_write_pipe_write_eof, 2);
    TU_ADD_LOOP(s, test_write_pipe_reader_exits_early, 2);
    TU_ADD(s, test_write_pipe_reader_closes_idle);
    TU_ADD_LOOP(s, test_write_pipe_write_after_reader_gone, 2);
    TU_ADD_LOOP(s, test_write_pipe_abort, 2);
    TU_ADD_LOOP(s, test_write_pipe_send_in_flight, 6);
    TU_ADD_LOOP(s, test_write_pipe_sigpipe_child_survives, 3);
    TU_ADD(s, test_fd_kinds);
    TU_ADD(s, test_socketpair_as_pipe);
    TU_ADD_LOOP(s, test_loop_close_with_open_pipes, 2);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child-reader") == 0)
        return child_reader(strtoul(argv[2], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "--child-writer") == 0)
        return child_writer(strtoul(argv[2], NULL, 10));
    if (!realpath(argv[0], g_self)) {
        perror(argv[0]);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(pipe_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
