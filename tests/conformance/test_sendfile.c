/* libaev conformance - loop.sendfile(transport, file, offset, count, fallback)
 * (the spec's "Transferring files"): a file sent over stream transports on
 * 127.0.0.1, ::1 and Unix sockets, its bytes checked one by one at the peer;
 * offset and count; the file position afterwards; data written before arriving
 * first; writes refused while sendfile(2) runs; the fallback (read and write
 * with the transport's flow control) giving the same bytes; a transport closed
 * or reset mid-way; cancellation; bad files refused; no fd leaked.
 *
 * The peer is a plain socket read by a reader callback on the same loop. The
 * fallback is forced with the test knob AEV_SENDFILE_FORCE_FALLBACK=1. */
#include "test_util.h"

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/un.h>

#define FILE_SIZE ((size_t)5 << 20)

/* The file's byte at position i: no short period, so a shifted offset shows. */
static unsigned char file_byte(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

/* A temporary file of n pattern bytes, unlinked already. */
static int temp_file(size_t n)
{
    char path[] = "/tmp/aev-tsendfile-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    unsigned char *data = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < n; i++)
        data[i] = file_byte(i);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        ck_assert_int_gt(w, 0);
        off += (size_t)w;
    }
    free(data);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static off_t file_pos(int fd)
{
    return lseek(fd, 0, SEEK_CUR);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- the transport's protocol ------------------------------------------------------------ */

typedef struct rec {
    aev_protocol_t proto;
    aev_transport_t *t;
    int made, lost, lost_error, pauses, resumes, eofs;
    size_t got;
    char buf[64];
} rec_t;

static int r_made(aev_protocol_t *p, aev_transport_t *t)
{
    rec_t *r = (rec_t *)p;
    r->made++;
    r->t = t;
    return 0;
}

static int r_data(aev_protocol_t *p, const void *d, size_t n)
{
    rec_t *r = (rec_t *)p;
    size_t c = n < sizeof r->buf - r->got ? n : sizeof r->buf - r->got;
    memcpy(r->buf + r->got, d, c);
    r->got += n;
    return 0;
}

static int r_eof(aev_protocol_t *p)
{
    ((rec_t *)p)->eofs++;
    return 0;
}

static int r_lost(aev_protocol_t *p, int error)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->lost, 0); /* exactly once */
    r->lost++;
    r->lost_error = error;
    return 0;
}

static int r_pause(aev_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->pauses, r->resumes); /* pairs */
    r->pauses++;
    return 0;
}

static int r_resume(aev_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    r->resumes++;
    ck_assert_int_eq(r->pauses, r->resumes);
    return 0;
}

static aev_protocol_t *rec_factory(void *userdata)
{
    return &((rec_t *)userdata)->proto;
}

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof *r);
    r->proto.connection_made = r_made;
    r->proto.data_received = r_data;
    r->proto.eof_received = r_eof;
    r->proto.connection_lost = r_lost;
    r->proto.pause_writing = r_pause;
    r->proto.resume_writing = r_resume;
}

/* ---- connections ---------------------------------------------------------------------------- */

enum { FAM_V4, FAM_V6, FAM_UNIX };

static int ipv6_usable(void)
{
    int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void shrink(int fd)
{
    int v = 32768;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

/* A connected pair: a transport (protocol r) over one end, the other end (non-blocking) in
 * *peer. small: small socket buffers, so that sendfile(2) must wait for the peer. */
static aev_transport_t *make_conn(aev_loop_t *loop, rec_t *r, int fam, int small, int *peer)
{
    static int serial;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int family;
    if (fam == FAM_V4) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else if (fam == FAM_V6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        a->sun_family = family = AF_UNIX;
        int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "aev-tsendfile-%d-%d", (int)getpid(), serial++);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    }
    int l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l, 0);
    if (small)
        shrink(l);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&ss, len), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    socklen_t alen = sizeof ss;
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&ss, &alen), 0);
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c, 0);
    if (small)
        shrink(c);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&ss, alen), 0);
    int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_int_ge(a, 0);
    close(l);
    ck_assert_int_eq(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK), 0);
    rec_init(r);
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_connect_accepted_socket(loop, rec_factory, r, c, &f), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    aev_future_unref(f);
    ck_assert_int_eq(r->made, 1);
    *peer = a;
    return r->t;
}

/* ---- the peer ---------------------------------------------------------------------------------- */

typedef struct peer {
    int fd;
    const unsigned char *expect; /* every byte the peer must get, in order */
    size_t expect_len;
    size_t got;
    int eof;
    int err;
    aev_transport_t *t;          /* if set: watch its write buffer (flow control) ... */
    size_t sample_after;         /* ... once this many bytes came */
    size_t max_wbuf;
} peer_t;

static int peer_read_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    peer_t *p = arg;
    unsigned char b[65536];
    for (;;) {
        ssize_t n = read(p->fd, b, sizeof b);
        if (n > 0) {
            ck_assert_msg(p->got + (size_t)n <= p->expect_len, "peer got %zu bytes, more than the %zu expected",
                          p->got + (size_t)n, p->expect_len);
            for (ssize_t i = 0; i < n; i++)
                if (b[i] != p->expect[p->got + (size_t)i])
                    ck_abort_msg("byte %zu differs: got %u, expected %u", p->got + (size_t)i, b[i],
                                 p->expect[p->got + (size_t)i]);
            p->got += (size_t)n;
            continue;
        }
        if (n == 0)
            p->eof = 1;
        else if (errno != EAGAIN)
            p->err = -errno;
        break;
    }
    if (p->t && p->got >= p->sample_after) {
        size_t w = aev_transport_get_write_buffer_size(p->t);
        if (w > p->max_wbuf)
            p->max_wbuf = w;
    }
    if (p->eof || p->err)
        aev_loop_remove_reader(loop, p->fd);
    return 0;
}

/* The expected stream: head bytes, the file's [offset, offset + n), tail. */
static unsigned char *expected(const char *head, size_t head_len, size_t offset, size_t n, const char *tail,
                               size_t *len)
{
    size_t tl = tail ? strlen(tail) : 0;
    *len = head_len + n + tl;
    unsigned char *e = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(e);
    if (head_len)
        memcpy(e, head, head_len);
    for (size_t i = 0; i < n; i++)
        e[head_len + i] = file_byte(offset + i);
    if (tl)
        memcpy(e + head_len + n, tail, tl);
    return e;
}

static void peer_start(aev_loop_t *loop, peer_t *p, int fd, const unsigned char *expect, size_t len)
{
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->expect = expect;
    p->expect_len = len;
    ck_assert_int_eq(aev_loop_add_reader(loop, fd, peer_read_cb, p), 0);
}

/* Runs the loop in short slices until *flag is set (or limit seconds). */
static void run_until(aev_loop_t *loop, const int *flag, double limit)
{
    double end = tu_now() + limit;
    while (!*flag && tu_now() < end) {
        aev_loop_call_later(loop, 0.002, tu_stop_cb, NULL, NULL);
        aev_loop_run_forever(loop);
    }
    ck_assert_msg(*flag, "condition not reached within %.0f s", limit);
}

static int g_done;
static int done_cb(aev_future_t *f, void *arg)
{
    (void)f;
    (void)arg;
    g_done = 1;
    return 0;
}

/* Waits for f; returns its outcome (value in *v). */
static int wait_fut(aev_loop_t *loop, aev_future_t *f, intptr_t *v)
{
    g_done = 0;
    ck_assert_int_eq(aev_future_add_done_callback(f, done_cb, NULL), 0);
    run_until(loop, &g_done, 20);
    void *val = NULL;
    int rc = aev_future_result(f, &val);
    if (v)
        *v = (intptr_t)val;
    return rc;
}

/* Runs until the peer has bytes waiting (the transfer is under way and stuck on the peer). */
static void run_until_peer_readable(aev_loop_t *loop, int fd, aev_future_t *f)
{
    double end = tu_now() + 10;
    for (;;) {
        tu_run_once(loop);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) == 1) {
            for (int i = 0; i < 5; i++) /* a few more turns: the engine fills the buffers and waits */
                tu_run_once(loop);
            break;
        }
        ck_assert(tu_now() < end);
    }
    ck_assert_int_eq(aev_future_done(f), 0);
}

static void set_fallback(int on)
{
    if (on)
        setenv("AEV_SENDFILE_FORCE_FALLBACK", "1", 1);
    else
        unsetenv("AEV_SENDFILE_FORCE_FALLBACK");
}

/* ---- the whole file, after and before other writes ------------------------------------------------- */

/* 1 MiB written first (mostly buffered), then the 5 MiB file, then a tail: the peer gets them
 * in this order, byte for byte. While sendfile(2) runs writes are refused; afterwards the
 * transport reads and writes as before. */
static void whole_file_case(int fam, int fallback)
{
    if (fam == FAM_V6 && !ipv6_usable()) {
        printf("note: ::1 unusable here, skipped\n");
        return;
    }
    int fds0 = count_fds();
    set_fallback(fallback);
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    int peer;
    aev_transport_t *t = make_conn(loop, &r, fam, 1, &peer);
    int file = temp_file(FILE_SIZE);
    ck_assert_int_eq(lseek(file, 777, SEEK_SET), 777); /* the call's offset counts, not this */
    size_t head_len = (size_t)1 << 20;
    char *head = malloc(head_len);
    for (size_t i = 0; i < head_len; i++)
        head[i] = (char)('a' + i % 23);
    size_t len;
    unsigned char *exp = expected(head, head_len, 0, FILE_SIZE, "TAIL", &len);
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 65536, 16384), 0);
    ck_assert_int_eq(aev_transport_write(t, head, head_len), 0);
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 0); /* something waits */

    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 0, 0, 1, &f), 0);
    ck_assert_ptr_nonnull(f);
    if (!fallback) {
        ck_assert_int_eq(aev_transport_write(t, "x", 1), AEV_EINVALID_STATE);
        ck_assert_ptr_nonnull(strstr(aev_error_detail(), "sendfile is in progress"));
    }
    /* a second one on the same transport is refused */
    aev_future_t *f2 = NULL;
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 0, 0, 1, &f2), AEV_EINVALID_STATE);
    ck_assert_ptr_null(f2);

    peer_t p;
    peer_start(loop, &p, peer, exp, len);
    p.t = t;
    p.sample_after = head_len;
    tu_run_once(loop);
    ck_assert_int_eq(aev_transport_is_reading(t), 0); /* paused while the file goes */
    if (fallback) /* the protocol is swapped while the fallback runs */
        ck_assert_ptr_ne(aev_transport_get_protocol(t), &r.proto);
    intptr_t v = 0;
    ck_assert_int_eq(wait_fut(loop, f, &v), 0);
    p.t = NULL; /* the transport may go before the peer is done */
    ck_assert_int_eq(v, (intptr_t)FILE_SIZE);
    ck_assert_int_eq(file_pos(file), (off_t)FILE_SIZE);
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0); /* done means drained */
    aev_future_unref(f);

    /* the transport is back to normal */
    ck_assert_ptr_eq(aev_transport_get_protocol(t), &r.proto);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    ck_assert_int_eq(r.pauses, r.resumes);
    if (fallback) /* flow control held: the buffer stayed near the high mark */
        ck_assert_uint_le(p.max_wbuf, 65536 + 65536);
    ck_assert_int_eq(aev_transport_write(t, "TAIL", 4), 0);
    tu_write(peer, "ping");
    run_until(loop, (const int *)&r.got, 5);
    ck_assert_int_eq(memcmp(r.buf, "ping", 4), 0);
    aev_transport_close(t);
    run_until(loop, &p.eof, 10);
    ck_assert_uint_eq(p.got, len);
    ck_assert_int_eq(p.err, 0);
    run_until(loop, &r.lost, 5);
    ck_assert_int_eq(r.lost_error, 0);
    close(peer);
    close(file);
    free(exp);
    free(head);
    tu_loop_free(loop);
    set_fallback(0);
    ck_assert_int_eq(count_fds(), fds0);
}

START_TEST(test_whole_file_v4)
{
    whole_file_case(FAM_V4, 0);
}
END_TEST

START_TEST(test_whole_file_v6)
{
    whole_file_case(FAM_V6, 0);
}
END_TEST

START_TEST(test_whole_file_unix)
{
    whole_file_case(FAM_UNIX, 0);
}
END_TEST

START_TEST(test_fallback_v4)
{
    whole_file_case(FAM_V4, 1);
}
END_TEST

START_TEST(test_fallback_v6)
{
    whole_file_case(FAM_V6, 1);
}
END_TEST

START_TEST(test_fallback_unix)
{
    whole_file_case(FAM_UNIX, 1);
}
END_TEST

/* ---- offset and count -------------------------------------------------------------------------- */

/* Sends (offset, count) over a fresh Unix connection: the peer must get exactly `expect` bytes
 * of the file from offset; the file position ends at offset + sent. Returns the value. */
static intptr_t range_case(aev_loop_t *loop, int file, int64_t offset, int64_t count, size_t expect)
{
    rec_t r;
    int peer;
    aev_transport_t *t = make_conn(loop, &r, FAM_UNIX, 0, &peer);
    size_t len;
    unsigned char *exp = expected("", 0, (size_t)offset, expect, NULL, &len);
    peer_t p;
    peer_start(loop, &p, peer, exp, len);
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, offset, count, 1, &f), 0);
    intptr_t v = -1;
    ck_assert_int_eq(wait_fut(loop, f, &v), 0);
    aev_future_unref(f);
    ck_assert_int_eq(file_pos(file), (off_t)(offset + v));
    aev_transport_close(t);
    run_until(loop, &p.eof, 5);
    ck_assert_uint_eq(p.got, expect);
    run_until(loop, &r.lost, 5);
    close(peer);
    free(exp);
    return v;
}

static void ranges(int fallback)
{
    int fds0 = count_fds();
    set_fallback(fallback);
    aev_loop_t *loop = tu_loop_new();
    const size_t size = 300000;
    int file = temp_file(size);
    ck_assert_int_eq(range_case(loop, file, 0, 0, size), (intptr_t)size);          /* to EOF */
    ck_assert_int_eq(range_case(loop, file, 1000, 5000, 5000), 5000);               /* a slice */
    ck_assert_int_eq(range_case(loop, file, 123457, 0, size - 123457), (intptr_t)(size - 123457));
    ck_assert_int_eq(range_case(loop, file, (int64_t)size - 1000, 5000, 1000), 1000); /* stops at EOF */
    ck_assert_int_eq(range_case(loop, file, (int64_t)size, 0, 0), 0);               /* at EOF */
    ck_assert_int_eq(range_case(loop, file, (int64_t)size + 10, 7, 0), 0);          /* past EOF */
    int empty = temp_file(0);
    ck_assert_int_eq(range_case(loop, empty, 0, 0, 0), 0);
    close(empty);
    close(file);
    tu_loop_free(loop);
    set_fallback(0);
    ck_assert_int_eq(count_fds(), fds0);
}

START_TEST(test_offset_count)
{
    ranges(0);
}
END_TEST

START_TEST(test_offset_count_fallback)
{
    ranges(1);
}
END_TEST

/* ---- ended mid-way ----------------------------------------------------------------------------------- */

enum { END_ABORT, END_CLOSE, END_PEER_RESET, END_CANCEL };

/* Reads everything until EOF; returns it (*len) for the caller to check. */
static unsigned char *peer_read_all(aev_loop_t *loop, int fd, size_t *len)
{
    size_t cap = (size_t)1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    double end = tu_now() + 10;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r > 0) {
            n += (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            break;
        aev_loop_call_later(loop, 0.001, tu_stop_cb, NULL, NULL); /* the transport flushes */
        aev_loop_run_forever(loop);
        ck_assert(tu_now() < end);
    }
    *len = n;
    return buf;
}

/* The peer stops reading, the transfer stalls, then it is ended by `how`. */
static void midway_case(int how, int fallback, int fam)
{
    int fds0 = count_fds();
    set_fallback(fallback);
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    int peer;
    aev_transport_t *t = make_conn(loop, &r, fam, 1, &peer);
    int file = temp_file(FILE_SIZE);
    const off_t off = 100;
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, off, 0, 1, &f), 0);
    run_until_peer_readable(loop, peer, f);
    switch (how) {
    case END_ABORT:
        aev_transport_abort(t);
        break;
    case END_CLOSE:
        aev_transport_close(t);
        break;
    case END_PEER_RESET: {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        ck_assert_int_eq(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
        close(peer);
        peer = -1;
        break;
    }
    default:
        ck_assert_int_eq(aev_future_cancel(f, "enough"), 1);
        break;
    }
    int rc = wait_fut(loop, f, NULL);
    off_t pos = file_pos(file);
    ck_assert_int_gt(pos, off);                       /* some went */
    ck_assert_int_lt(pos, off + (off_t)FILE_SIZE);    /* not all */
    size_t sent = (size_t)(pos - off);
    if (how == END_CANCEL) {
        ck_assert_int_eq(rc, AEV_ECANCELLED);
        ck_assert_int_eq(aev_future_cancelled(f), 1);
        /* the transport is usable again, its protocol back, reading on */
        ck_assert_ptr_eq(aev_transport_get_protocol(t), &r.proto);
        ck_assert_int_eq(aev_transport_is_reading(t), 1);
        ck_assert_int_eq(aev_transport_write(t, "END", 3), 0);
        aev_transport_close(t);
    } else if (how == END_PEER_RESET) {
        ck_assert_msg(rc == -ECONNRESET || rc == -EPIPE, "error %d (%s)", rc, aev_err_name(rc));
    } else {
        ck_assert_msg(rc == -ECONNABORTED, "error %d (%s)", rc, aev_err_name(rc));
        ck_assert_ptr_nonnull(strstr(aev_future_error_detail(f), "closed during sendfile"));
    }
    aev_future_unref(f);
    if (peer >= 0) {
        /* what went is the file from offset (then END after a cancel); an abort of the fallback
         * drops what the transport still buffered, the kernel keeps the rest */
        size_t n;
        unsigned char *got = peer_read_all(loop, peer, &n);
        size_t tail = how == END_CANCEL ? 3 : 0;
        if (how == END_ABORT && fallback)
            ck_assert_uint_le(n, sent);
        else
            ck_assert_uint_eq(n, sent + tail);
        for (size_t i = 0; i < n - tail; i++)
            if (got[i] != file_byte((size_t)off + i))
                ck_abort_msg("byte %zu differs", i);
        if (tail)
            ck_assert_int_eq(memcmp(got + n - tail, "END", 3), 0);
        free(got);
        close(peer);
    }
    run_until(loop, &r.lost, 5);
    ck_assert_int_eq(r.lost, 1);
    if (how != END_PEER_RESET)
        ck_assert_int_eq(r.lost_error, 0);
    ck_assert_int_eq(r.pauses, r.resumes);
    close(file);
    tu_loop_free(loop);
    set_fallback(0);
    ck_assert_int_eq(count_fds(), fds0);
}

START_TEST(test_abort_midway)
{
    midway_case(END_ABORT, 0, FAM_V4);
    midway_case(END_ABORT, 1, FAM_UNIX);
}
END_TEST

START_TEST(test_close_midway)
{
    midway_case(END_CLOSE, 0, FAM_UNIX);
    midway_case(END_CLOSE, 1, FAM_V4);
}
END_TEST

START_TEST(test_peer_reset_midway)
{
    midway_case(END_PEER_RESET, 0, FAM_V4);
    midway_case(END_PEER_RESET, 1, FAM_V4);
}
END_TEST

START_TEST(test_cancel_midway)
{
    midway_case(END_CANCEL, 0, FAM_V4);
    midway_case(END_CANCEL, 0, FAM_UNIX);
    midway_case(END_CANCEL, 1, FAM_UNIX);
}
END_TEST

static aev_transport_t *g_close_when_done;
static int close_when_done_cb(aev_future_t *f, void *arg)
{
    (void)f;
    (void)arg;
    aev_transport_close(g_close_when_done);
    return 0;
}

/* Cancelled mid-transfer, then resumed where it stopped: the peer's bytes sent while the
 * transfer ran (reading is paused then: on a proactor loop the native receive was cancelled
 * and may have raced them) arrive after the cancel, in order; a write goes next; a second
 * sendfile from the file position (the offset + what went), with a count past the end of the
 * file, sends the rest and says how much. The peer gets the file from the first offset exactly
 * once, with the write between the two parts. _i: 0 native sendfile over TCP, 1 over a Unix
 * socket, 2 the fallback. */
START_TEST(test_cancel_then_resume)
{
    int fds0 = count_fds();
    set_fallback(_i == 2);
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    int peer;
    aev_transport_t *t = make_conn(loop, &r, _i == 1 ? FAM_UNIX : FAM_V4, 1, &peer);
    int file = temp_file(FILE_SIZE);
    const off_t off = 4097;
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, off, 0, 1, &f), 0);
    run_until_peer_readable(loop, peer, f);
    tu_write(peer, "HELLO");
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_uint_eq(r.got, 0); /* reading is paused while the file goes */
    ck_assert_int_eq(aev_future_cancel(f, "stop"), 1);
    ck_assert_int_eq(wait_fut(loop, f, NULL), AEV_ECANCELLED);
    aev_future_unref(f);
    off_t pos = file_pos(file);
    ck_assert_int_gt(pos, off);
    ck_assert_int_lt(pos, (off_t)FILE_SIZE);
    size_t first = (size_t)(pos - off);
    double end = tu_now() + 5;
    while (r.got < 5 && tu_now() < end) /* reading again: HELLO */
        tu_run_once(loop);
    ck_assert_uint_eq(r.got, 5);
    ck_assert_int_eq(memcmp(r.buf, "HELLO", 5), 0);
    ck_assert_int_eq(aev_transport_write(t, "MID", 3), 0);
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, pos, (int64_t)FILE_SIZE, 1, &f), 0);
    g_close_when_done = t;
    ck_assert_int_eq(aev_future_add_done_callback(f, close_when_done_cb, NULL), 0);
    size_t n;
    unsigned char *got = peer_read_all(loop, peer, &n); /* until the close's EOF */
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(f, &v), 0);
    ck_assert_int_eq((intptr_t)v, (intptr_t)(FILE_SIZE - (size_t)pos)); /* shorter than count */
    ck_assert_int_eq(file_pos(file), (off_t)FILE_SIZE);
    aev_future_unref(f);
    ck_assert_uint_eq(n, FILE_SIZE - (size_t)off + 3);
    for (size_t i = 0; i < first; i++)
        if (got[i] != file_byte((size_t)off + i))
            ck_abort_msg("byte %zu of the first part differs", i);
    ck_assert_int_eq(memcmp(got + first, "MID", 3), 0);
    for (size_t i = first + 3; i < n; i++)
        if (got[i] != file_byte((size_t)off + i - 3))
            ck_abort_msg("byte %zu of the second part differs", i - first - 3);
    free(got);
    run_until(loop, &r.lost, 5);
    ck_assert_int_eq(r.lost_error, 0);
    ck_assert_int_eq(r.pauses, r.resumes);
    close(peer);
    close(file);
    tu_loop_free(loop);
    set_fallback(0);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* Cancelled before it ran, and while it waited for the write buffer to drain: nothing of the
 * file went, the position is the offset, the transport writes and reads again. */
START_TEST(test_cancel_early)
{
    int fds0 = count_fds();
    aev_loop_t *loop = tu_loop_new();
    int file = temp_file(100000);
    for (int phase = 0; phase < 2; phase++) {
        rec_t r;
        int peer;
        aev_transport_t *t = make_conn(loop, &r, FAM_UNIX, 1, &peer);
        size_t head_len = 0;
        if (phase == 1) { /* a buffer the stalled peer will not drain */
            head_len = (size_t)1 << 20;
            char *head = calloc(1, head_len);
            ck_assert_int_eq(aev_transport_write(t, head, head_len), 0);
            free(head);
            ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 0);
        }
        aev_future_t *f = NULL;
        ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 10, 0, 1, &f), 0);
        if (phase == 1) {
            for (int i = 0; i < 5; i++)
                tu_run_once(loop);
            ck_assert_int_eq(aev_future_done(f), 0);
            ck_assert_int_eq(aev_transport_is_reading(t), 0);
        }
        ck_assert_int_eq(aev_future_cancel(f, NULL), 1);
        ck_assert_int_eq(wait_fut(loop, f, NULL), AEV_ECANCELLED);
        aev_future_unref(f);
        ck_assert_int_eq(file_pos(file), 10);
        ck_assert_int_eq(aev_transport_is_reading(t), 1);
        ck_assert_int_eq(aev_transport_write(t, "after", 5), 0);
        aev_transport_close(t);
        size_t n;
        unsigned char *got = peer_read_all(loop, peer, &n);
        ck_assert_uint_eq(n, head_len + 5);
        ck_assert_int_eq(memcmp(got + head_len, "after", 5), 0);
        free(got);
        run_until(loop, &r.lost, 5);
        close(peer);
    }
    close(file);
    tu_loop_free(loop);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* The loop closes while a transfer is stalled: the task is cancelled and cleans up, the
 * protocol gets connection_lost(AEV_ECLOSED), nothing leaks. */
START_TEST(test_loop_close_midway)
{
    int fds0 = count_fds();
    for (int fallback = 0; fallback < 2; fallback++) {
        set_fallback(fallback);
        aev_loop_t *loop = tu_loop_new();
        rec_t r;
        int peer;
        aev_transport_t *t = make_conn(loop, &r, FAM_UNIX, 1, &peer);
        int file = temp_file(FILE_SIZE);
        aev_future_t *f = NULL;
        ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 0, 0, 1, &f), 0);
        run_until_peer_readable(loop, peer, f);
        ck_assert_int_eq(aev_loop_close(loop), 0);
        ck_assert_int_eq(aev_future_cancelled(f), 1);
        ck_assert_int_gt(file_pos(file), 0);
        ck_assert_int_eq(r.lost, 1);
        ck_assert_int_eq(r.lost_error, AEV_ECLOSED);
        aev_future_unref(f);
        aev_loop_free(loop);
        close(peer);
        close(file);
        set_fallback(0);
    }
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* ---- native impossible ---------------------------------------------------------------------------- */

/* fallback 0 with native sendfile impossible: AEV_ESENDFILE_NOT_AVAILABLE (asyncio's
 * SendfileNotAvailableError), nothing sent, the transport as before. */
START_TEST(test_no_fallback)
{
    int fds0 = count_fds();
    set_fallback(1);
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    int peer;
    aev_transport_t *t = make_conn(loop, &r, FAM_V4, 0, &peer);
    int file = temp_file(10000);
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 5, 0, 0, &f), 0);
    ck_assert_int_eq(wait_fut(loop, f, NULL), AEV_ESENDFILE_NOT_AVAILABLE);
    ck_assert_ptr_nonnull(strstr(aev_future_error_detail(f), "AEV_SENDFILE_FORCE_FALLBACK"));
    aev_future_unref(f);
    ck_assert_int_eq(file_pos(file), 5);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    ck_assert_int_eq(aev_transport_write(t, "ok", 2), 0);
    aev_transport_close(t);
    size_t n;
    unsigned char *got = peer_read_all(loop, peer, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(memcmp(got, "ok", 2), 0);
    free(got);
    run_until(loop, &r.lost, 5);
    close(peer);
    close(file);
    tu_loop_free(loop);
    set_fallback(0);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* /proc/self/cmdline is a regular file that sendfile(2) refuses (EINVAL) on current kernels:
 * native fails before sending anything, so the fallback sends it (fallback 1) or the future
 * fails with AEV_ESENDFILE_NOT_AVAILABLE (fallback 0). */
START_TEST(test_native_refused_falls_back)
{
    int fds0 = count_fds();
    int file = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (file < 0) {
        printf("note: /proc/self/cmdline unavailable: skipped\n");
        return;
    }
    unsigned char want[256];
    ssize_t wl = pread(file, want, sizeof want, 0);
    ck_assert_int_gt(wl, 2);
    int sv[2];
    tu_socketpair(sv);
    off_t probe = 0;
    int native_fails = sendfile(sv[0], file, &probe, 1) < 0 && errno == EINVAL;
    close(sv[0]);
    close(sv[1]);
    if (!native_fails) {
        printf("note: sendfile(2) serves /proc/self/cmdline here (this kernel, or valgrind's stand-in file): skipped\n");
        close(file);
        return;
    }
    aev_loop_t *loop = tu_loop_new();
    for (int fallback = 1; fallback >= 0; fallback--) {
        rec_t r;
        int peer;
        aev_transport_t *t = make_conn(loop, &r, FAM_UNIX, 0, &peer);
        aev_future_t *f = NULL;
        /* a count: procfs says the size is 0, so "to the end" would send nothing */
        ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 2, 1000, fallback, &f), 0);
        intptr_t v = 0;
        int rc = wait_fut(loop, f, &v);
        aev_future_unref(f);
        aev_transport_close(t);
        size_t n;
        unsigned char *got = peer_read_all(loop, peer, &n);
        if (fallback) {
            ck_assert_int_eq(rc, 0);
            ck_assert_int_eq(v, wl - 2);
            ck_assert_uint_eq(n, (size_t)(wl - 2));
            ck_assert_int_eq(memcmp(got, want + 2, n), 0);
            ck_assert_int_eq(file_pos(file), wl);
        } else {
            ck_assert_int_eq(rc, AEV_ESENDFILE_NOT_AVAILABLE);
            ck_assert_uint_eq(n, 0);
            ck_assert_int_eq(file_pos(file), 2);
        }
        free(got);
        run_until(loop, &r.lost, 5);
        close(peer);
    }
    tu_loop_free(loop);
    close(file);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* ---- refused at once ------------------------------------------------------------------------------ */

static void refused(aev_loop_t *loop, aev_transport_t *t, int file, int64_t off, int64_t count, int want)
{
    aev_future_t *f = (aev_future_t *)&f; /* must become NULL */
    int rc = aev_loop_sendfile(loop, t, file, off, count, 1, &f);
    ck_assert_msg(rc == want, "got %d (%s), want %d (%s)", rc, aev_err_name(rc), want, aev_err_name(want));
    ck_assert_ptr_null(f);
    ck_assert_msg(aev_error_detail()[0] != '\0', "no detail for %s", aev_err_name(want));
}

START_TEST(test_bad_files)
{
    int fds0 = count_fds();
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    int peer;
    aev_transport_t *t = make_conn(loop, &r, FAM_UNIX, 0, &peer);
    int file = temp_file(1000);

    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dir, 0);
    refused(loop, t, dir, 0, 0, -EISDIR);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "directory"));
    close(dir);

    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    tu_write(p[1], "pipe data");
    refused(loop, t, p[0], 0, 0, -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "a pipe"));
    close(p[0]);
    close(p[1]);

    char path[] = "/tmp/aev-tsendfile-wo-XXXXXX";
    int tmp = mkstemp(path);
    ck_assert_int_ge(tmp, 0);
    close(tmp);
    int wo = open(path, O_WRONLY | O_CLOEXEC);
    unlink(path);
    ck_assert_int_ge(wo, 0);
    refused(loop, t, wo, 0, 0, -EBADF);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "not open for reading"));
    close(wo);

    refused(loop, t, -1, 0, 0, -EBADF);
    refused(loop, t, file, -1, 0, -EINVAL);
    refused(loop, t, file, 0, -5, -EINVAL);
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_sendfile(NULL, t, file, 0, 0, 1, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_sendfile(loop, NULL, file, 0, 0, 1, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_sendfile(loop, t, file, 0, 0, 1, NULL), -EINVAL);

    /* a transport of another loop, and a closing one */
    aev_loop_t *other = tu_loop_new();
    refused(other, t, file, 0, 0, -EINVAL);
    tu_loop_free(other);
    aev_transport_close(t);
    refused(loop, t, file, 0, 0, AEV_EINVALID_STATE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "closing"));
    ck_assert_int_eq(file_pos(file), 0); /* nothing touched the file */

    run_until(loop, &r.lost, 5);
    close(peer);
    close(file);
    tu_loop_free(loop);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

static Suite *sendfile_suite(void)
{
    Suite *s = suite_create("sendfile");
    TU_ADD(s, test_whole_file_v4);
    TU_ADD(s, test_whole_file_v6);
    TU_ADD(s, test_whole_file_unix);
    TU_ADD(s, test_fallback_v4);
    TU_ADD(s, test_fallback_v6);
    TU_ADD(s, test_fallback_unix);
    TU_ADD(s, test_offset_count);
    TU_ADD(s, test_offset_count_fallback);
    TU_ADD(s, test_abort_midway);
    TU_ADD(s, test_close_midway);
    TU_ADD(s, test_peer_reset_midway);
    TU_ADD(s, test_cancel_midway);
    TU_ADD(s, test_cancel_early);
    TU_ADD_LOOP(s, test_cancel_then_resume, 3);
    TU_ADD(s, test_loop_close_midway);
    TU_ADD(s, test_no_fallback);
    TU_ADD(s, test_native_refused_falls_back);
    TU_ADD(s, test_bad_files);
    return s;
}

TU_MAIN(sendfile_suite)
