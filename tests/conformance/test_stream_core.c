/* libaev conformance - stream transports and protocols (asyncio's
 * _SelectorSocketTransport and Protocol): order of calls, flow control with
 * the write-buffer marks, pause/resume reading, write_eof, close and abort,
 * raising callbacks, buffered protocols, servers and their close rules, and
 * loop close with open transports, close while writing, writes after write_eof,
 * get_extra_info and set_protocol. The peer is the other end of a real connected
 * stream pair (or a client of a server), read and written directly by the test.
 *
 * The transport tests run for three address kinds (Check loop tests, _i is the kind,
 * see TU_FAM_* in test_util.h): TCP over 127.0.0.1, TCP over ::1 (skipped with a note
 * where the host has no IPv6 loopback) and a Unix stream socket. The pair is made with
 * listen/connect/accept, and the accepted end is given to connect_accepted_socket; the
 * kernel buffers are capped (TU_SOCKBUF) so that large writes stay in the transport. */
#include "test_util.h"

typedef struct rec {
    aev_protocol_t proto;
    aev_transport_t *t;
    int made, lost, eofs, pauses, resumes, raised_at;
    int lost_error;
    size_t got;
    unsigned char buf[1 << 16];
    int keep_open_on_eof;
    size_t small_cap; /* buffered protocol: the buffer size it gives */
    size_t max_chunk;
    size_t size_at_pause, size_at_resume; /* write buffer size when pause/resume_writing ran */
    aev_protocol_t *switch_to;            /* set_protocol(switch_to) in the first data_received */
    aev_transport_t *pause_other;         /* pause_reading(pause_other) in the first data_received */
} rec_t;

static int r_made(aev_protocol_t *p, aev_transport_t *t)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made + r->lost, 0); /* first call */
    r->made++;
    r->t = t;
    ck_assert_ptr_eq(aev_transport_get_protocol(t), p);
    return 0;
}

static int r_data(aev_protocol_t *p, const void *d, size_t n)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    ck_assert_int_eq(r->lost, 0);
    if (r->raised_at && r->got + n >= (size_t)r->raised_at)
        return -EIO;
    size_t c = n < sizeof r->buf - r->got ? n : sizeof r->buf - r->got;
    memcpy(r->buf + r->got, d, c);
    r->got += n;
    if (r->switch_to) {
        aev_transport_set_protocol(r->t, r->switch_to);
        r->switch_to = NULL;
    }
    if (r->pause_other) {
        aev_transport_pause_reading(r->pause_other);
        r->pause_other = NULL;
    }
    return 0;
}

static int r_eof(aev_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->lost, 0);
    r->eofs++;
    return r->keep_open_on_eof;
}

static int r_lost(aev_protocol_t *p, int error)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    r->lost++;
    r->lost_error = error;
    return 0;
}

static int r_pause(aev_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    r->pauses++;
    r->size_at_pause = aev_transport_get_write_buffer_size(r->t);
    return 0;
}

static int r_resume(aev_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    r->resumes++;
    r->size_at_resume = aev_transport_get_write_buffer_size(r->t);
    return 0;
}

static void *r_get_buffer(aev_protocol_t *p, size_t hint, size_t *size)
{
    rec_t *r = (rec_t *)p;
    (void)hint;
    *size = r->small_cap;
    return r->buf + r->got;
}

static int r_updated(aev_protocol_t *p, size_t n)
{
    rec_t *r = (rec_t *)p;
    ck_assert_uint_le(n, r->small_cap);
    if (n > r->max_chunk)
        r->max_chunk = n;
    r->got += n;
    return 0;
}

static rec_t *g_rec; /* the factory hands out this one */

static aev_protocol_t *rec_factory(void *userdata)
{
    (void)userdata;
    return &g_rec->proto;
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

/* A transport over sv[0] (sv[1] is the test's peer), a connected pair of kind fam. */
static aev_transport_t *make_transport(aev_loop_t *loop, rec_t *r, int sv[2], int fam)
{
    tu_stream_pair(fam, sv);
    g_rec = r;
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_connect_accepted_socket(loop, rec_factory, NULL, sv[0], &f), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, f), 0);
    ck_assert_int_eq(r->made, 1);
    void *t = NULL;
    ck_assert_int_eq(aev_future_result(f, &t), 0);
    ck_assert_ptr_eq(t, r->t);
    aev_future_unref(f);
    return r->t;
}

/* Reads everything the peer can get now; returns the count (appends to a pattern check). */
static size_t peer_drain(int fd, size_t *offset, int *eof)
{
    unsigned char b[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, b, sizeof b);
        if (n > 0) {
            /* one assertion per read: each ck_assert costs a message to Check's parent */
            ssize_t bad = -1;
            for (ssize_t i = 0; i < n && bad < 0; i++)
                if (b[i] != (unsigned char)((*offset + (size_t)i) * 31u))
                    bad = i;
            ck_assert_msg(bad < 0, "byte %zu of the stream is wrong", *offset + (size_t)bad);
            *offset += (size_t)n;
            total += (size_t)n;
            continue;
        }
        if (n == 0)
            *eof = 1;
        return total;
    }
}

/* Reads until EOF (waiting for data with poll, at most limit seconds), checking the pattern;
 * returns 1 on EOF, 0 on timeout or a read error (errno then says which). */
static int peer_drain_to_eof(int fd, size_t *offset, double limit)
{
    double end = tu_now() + limit;
    int eof = 0;
    while (!eof && tu_now() < end) {
        peer_drain(fd, offset, &eof);
        if (!eof && errno != EAGAIN && errno != EWOULDBLOCK)
            return 0;
        if (!eof)
            tu_poll_fd(fd, POLLIN, end - tu_now());
    }
    return eof;
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u);
    return p;
}

START_TEST(test_order_data_eof_lost)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    make_transport(loop, r, sv, fam);
    tu_write(sv[1], "hello");
    run_until(loop, (const int *)&r->got, 5);
    ck_assert_int_eq(r->got, 5);
    ck_assert_int_eq(memcmp(r->buf, "hello", 5), 0);
    shutdown(sv[1], SHUT_WR);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->eofs, 1);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(r->lost_error, 0);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* eof_received returning 1 keeps the transport open for writing (half-close). */
START_TEST(test_half_open_after_eof)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    r->keep_open_on_eof = 1;
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    shutdown(sv[1], SHUT_WR);
    run_until(loop, &r->eofs, 5);
    ck_assert_int_eq(r->lost, 0);
    ck_assert_int_eq(aev_transport_write(t, "late", 4), 0);
    char b[8];
    ck_assert(tu_poll_fd(sv[1], POLLIN, 5) & POLLIN);
    ck_assert_int_eq(read(sv[1], b, sizeof b), 4);
    ck_assert_int_eq(memcmp(b, "late", 4), 0);
    aev_transport_close(t);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

static size_t g_peer_off;
static int g_peer_eof;
static int g_peer_fd;

static int peer_read_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    peer_drain(g_peer_fd, &g_peer_off, &g_peer_eof);
    return 0;
}

/* Writes pile up while the peer does not read: pause_writing once above high, resume_writing
 * once at low after the peer drains; every byte arrives in order. */
START_TEST(test_flow_control_marks)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 65536, 16384), 0);
    size_t lo = 0, hi = 0;
    aev_transport_get_write_buffer_limits(t, &lo, &hi);
    ck_assert_uint_eq(lo, 16384);
    ck_assert_uint_eq(hi, 65536);
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 10, 20), -EINVAL);
    /* marks far apart compared with what the kernel takes per send (TU_SOCKBUF), so that
     * pausing or resuming at the wrong mark shows */
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 1 << 20, 256 << 10), 0);
    aev_transport_get_write_buffer_limits(t, &lo, &hi);
    ck_assert_uint_eq(lo, 256u << 10);
    ck_assert_uint_eq(hi, 1u << 20);
    size_t total = 4u << 20;
    unsigned char *data = pattern(total);
    for (size_t off = 0; off < total; off += 65536)
        ck_assert_int_eq(aev_transport_write(t, data + off, 65536), 0);
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 65536);
    ck_assert_int_eq(r->pauses, 1);
    ck_assert_int_eq(r->resumes, 0);
    ck_assert_uint_gt(r->size_at_pause, 1u << 20); /* paused only above the high mark ... */
    ck_assert_uint_le(r->size_at_pause, (1u << 20) + 65536); /* ... as soon as it was crossed */
    g_peer_off = 0;
    g_peer_eof = 0;
    g_peer_fd = sv[1];
    double end = tu_now() + 20;
    while (g_peer_off < total && tu_now() < end) {
        aev_loop_call_soon(loop, peer_read_cb, NULL, NULL);
        tu_run_once(loop);
    }
    ck_assert_uint_eq(g_peer_off, total);
    ck_assert_int_eq(r->resumes, 1);
    ck_assert_uint_le(r->size_at_resume, 256u << 10); /* resumed at the low mark, not before */
    ck_assert_uint_eq(aev_transport_get_write_buffer_size(t), 0);
    aev_transport_close(t);
    run_until(loop, &r->lost, 5);
    free(data);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_pause_resume_reading)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    aev_transport_pause_reading(t);
    aev_transport_pause_reading(t); /* idempotent */
    ck_assert_int_eq(aev_transport_is_reading(t), 0);
    tu_write(sv[1], "queued");
    ck_assert(tu_poll_fd(aev_transport_get_fd(t), POLLIN, 5) & POLLIN); /* the bytes are there */
    for (int i = 0; i < 10; i++)
        tu_run_once(loop);
    ck_assert_int_eq(r->got, 0);
    aev_transport_resume_reading(t);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    run_until(loop, (const int *)&r->got, 5);
    ck_assert_int_eq(memcmp(r->buf, "queued", 6), 0);
    aev_transport_abort(t);
    run_until(loop, &r->lost, 5);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* Data and EOF that arrive while reading is paused wait for resume_reading, in order (on a
 * completion engine they race the cancel of the receive and are kept). */
START_TEST(test_pause_then_data_and_eof)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    aev_transport_pause_reading(t);
    tu_write(sv[1], "last words");
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 10; i++)
        tu_run_once(loop);
    ck_assert_int_eq(r->got, 0);
    ck_assert_int_eq(r->eofs, 0);
    ck_assert_int_eq(r->lost, 0);
    aev_transport_resume_reading(t);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->got, 10);
    ck_assert_int_eq(memcmp(r->buf, "last words", 10), 0);
    ck_assert_int_eq(r->eofs, 1);
    ck_assert_int_eq(r->lost_error, 0);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* A transport paused by another's callback in the same loop iteration, when its own bytes
 * are already in (a completion engine has received them into a buffer of its ring): they
 * are not delivered while paused, nor lost, and come once on resume. */
START_TEST(test_pause_from_a_neighbour)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *a = rec_new(), *b = rec_new();
    int sa[2], sb[2];
    aev_transport_t *ta = make_transport(loop, a, sa, fam);
    aev_transport_t *tb = make_transport(loop, b, sb, fam);
    a->pause_other = tb;
    tu_write(sa[1], "first");
    tu_write(sb[1], "second");
    ck_assert(tu_poll_fd(aev_transport_get_fd(tb), POLLIN, 5) & POLLIN);
    run_until(loop, (const int *)&a->got, 5);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_uint_eq(a->got, 5);
    ck_assert_int_eq(aev_transport_is_reading(tb), 0);
    ck_assert_uint_eq(b->got, 0);
    aev_transport_resume_reading(tb);
    run_until(loop, (const int *)&b->got, 5);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_uint_eq(b->got, 6);
    ck_assert_int_eq(memcmp(b->buf, "second", 6), 0);
    aev_transport_abort(ta);
    aev_transport_abort(tb);
    run_until(loop, &a->lost, 5);
    run_until(loop, &b->lost, 5);
    close(sa[1]);
    close(sb[1]);
    free(a);
    free(b);
    tu_loop_free(loop);
}
END_TEST

/* write_eof after buffered data: the peer gets every byte, then EOF; writing after it is refused. */
START_TEST(test_write_eof_and_close_flush)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    for (int mode = 0; mode < 2; mode++) { /* 0: write_eof, 1: close */
        rec_t *r = rec_new();
        int sv[2];
        aev_transport_t *t = make_transport(loop, r, sv, fam);
        size_t total = 2u << 20;
        unsigned char *data = pattern(total);
        ck_assert_int_eq(aev_transport_write(t, data, total), 0);
        ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 0);
        ck_assert_int_eq(aev_transport_can_write_eof(t), 1);
        if (mode == 0) {
            ck_assert_int_eq(aev_transport_write_eof(t), 0);
            ck_assert_int_eq(aev_transport_write(t, "x", 1), AEV_EINVALID_STATE);
        } else {
            aev_transport_close(t);
            ck_assert_int_eq(aev_transport_is_closing(t), 1);
        }
        g_peer_off = 0;
        g_peer_eof = 0;
        g_peer_fd = sv[1];
        double end = tu_now() + 20;
        while (!g_peer_eof && tu_now() < end) {
            aev_loop_call_soon(loop, peer_read_cb, NULL, NULL);
            tu_run_once(loop);
        }
        ck_assert_int_eq(g_peer_eof, 1);
        ck_assert_uint_eq(g_peer_off, total); /* nothing accepted was lost */
        if (mode == 0) {
            ck_assert_int_eq(r->lost, 0);
            aev_transport_close(t);
        }
        run_until(loop, &r->lost, 5);
        ck_assert_int_eq(r->lost_error, 0);
        free(data);
        close(sv[1]);
        free(r);
    }
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_abort_drops_buffer)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    size_t total = 8u << 20;
    unsigned char *data = pattern(total);
    ck_assert_int_eq(aev_transport_write(t, data, total), 0);
    aev_transport_abort(t);
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    g_peer_off = 0;
    /* what the kernel had taken arrives (TCP may still be delivering it), then EOF */
    g_peer_eof = peer_drain_to_eof(sv[1], &g_peer_off, 5);
    ck_assert_int_eq(g_peer_eof, 1);
    ck_assert_uint_lt(g_peer_off, total);
    free(data);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

static int g_exc_calls;
static aev_exception_context_t g_exc;

static void record_exc(aev_loop_t *loop, const aev_exception_context_t *ctx, void *ud)
{
    (void)loop;
    (void)ud;
    g_exc_calls++;
    g_exc = *ctx;
}

START_TEST(test_raising_data_received_aborts)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_exception_handler(loop, record_exc, NULL);
    g_exc_calls = 0;
    rec_t *r = rec_new();
    r->raised_at = 1;
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    tu_write(sv[1], "boom");
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(g_exc_calls, 1);
    ck_assert_int_eq(g_exc.error, -EIO);
    ck_assert_ptr_eq(g_exc.protocol, &r->proto);
    ck_assert_ptr_eq(g_exc.transport, t);
    ck_assert_int_eq(r->lost_error, -EIO);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* The peer closes the connection abruptly; returns the transport's connection_lost error. The
 * transport sends the peer a few bytes first, which the peer leaves unread if leave_unread. */
static int peer_reset_case(int fam, int leave_unread, int *eofs)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_exception_handler(loop, record_exc, NULL);
    g_exc_calls = 0;
    aev_future_t *sf = NULL;
    rec_t *r = rec_new();
    g_rec = r;
    struct sockaddr_storage sa;
    socklen_t len;
    tu_server_start(loop, fam, rec_factory, NULL, NULL, &sf, &sa, &len);
    int c = tu_connect_to((struct sockaddr *)&sa, len);
    run_until(loop, &r->made, 5);
    ck_assert_int_eq(aev_transport_write(r->t, "unread", 6), 0);
    ck_assert(tu_poll_fd(c, POLLIN, 5) & POLLIN);
    if (!leave_unread) {
        char b[8];
        ck_assert_int_eq(read(c, b, sizeof b), 6);
    }
    tu_write(c, "data");
    run_until(loop, (const int *)&r->got, 5); /* the transport has read the data */
    ck_assert_uint_eq(r->got, 4);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ck_assert_int_eq(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(c); /* TCP: an RST */
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(g_exc_calls, 0); /* a reset is the peer's doing, not an error to report */
    int err = r->lost_error;
    *eofs = r->eofs;
    aev_future_unref(sf);
    free(r);
    tu_loop_free(loop);
    return err;
}

/* The peer resets the connection: connection_lost(-ECONNRESET), not an exception-handler matter.
 * TCP: the peer closes with SO_LINGER {1, 0}, which sends an RST.
 * Unix: SO_LINGER does nothing; what the kernel gives depends on the peer's receive queue.
 * Linux (and gVisor) report ECONNRESET to the other end when a Unix stream socket is closed
 * with unread data in its receive queue, and a plain EOF (connection_lost(0) after
 * eof_received) when it is empty. Both cases are checked. */
START_TEST(test_peer_reset)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    int eofs = -1;
    int err = peer_reset_case(fam, 1, &eofs);
    ck_assert_msg(err == -ECONNRESET, "%s: connection_lost(%d %s), want -ECONNRESET", tu_fam_name(fam), err,
                  aev_err_name(err));
    ck_assert_int_eq(eofs, 0);
    err = peer_reset_case(fam, 0, &eofs);
    if (fam == TU_FAM_UNIX) {
        ck_assert_int_eq(err, 0);
        ck_assert_int_eq(eofs, 1);
    } else {
        ck_assert_int_eq(err, -ECONNRESET);
        ck_assert_int_eq(eofs, 0);
    }
}
END_TEST

START_TEST(test_buffered_protocol_small_buffer)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    r->proto.get_buffer = r_get_buffer;
    r->proto.buffer_updated = r_updated;
    r->small_cap = 7;
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    char msg[100];
    for (int i = 0; i < 100; i++)
        msg[i] = (char)('a' + i % 26);
    ck_assert_int_eq(write(sv[1], msg, sizeof msg), (ssize_t)sizeof msg);
    double end = tu_now() + 5;
    while (r->got < 100 && tu_now() < end)
        tu_run_once(loop);
    ck_assert_uint_eq(r->got, 100);
    ck_assert_uint_eq(r->max_chunk, 7);
    ck_assert_int_eq(memcmp(r->buf, msg, 100), 0); /* received straight into our buffer */
    aev_transport_abort(t);
    run_until(loop, &r->lost, 5);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

static int g_waited;

static int set_flag_cb(aev_future_t *f, void *arg)
{
    (void)f;
    *(int *)arg = 1;
    return 0;
}

/* close() stops listening and leaves connections; wait_closed waits for the last one;
 * close_clients ends them gracefully. */
START_TEST(test_server_close_rules)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    g_rec = r;
    aev_future_t *sf = NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    aev_server_t *srv =
        tu_server_start(loop, fam, rec_factory, NULL, &(aev_server_options_t){.no_start = 1}, &sf, &sa, &len);
    ck_assert_ptr_eq(aev_server_get_loop(srv), loop);
    ck_assert_int_eq(aev_server_is_serving(srv), 0);
    ck_assert_int_eq(aev_server_start_serving(srv), 0);
    ck_assert_int_eq(aev_server_is_serving(srv), 1);
    int c = tu_connect_to((struct sockaddr *)&sa, len);
    run_until(loop, &r->made, 5);

    aev_server_close(srv);
    ck_assert_int_eq(aev_server_is_serving(srv), 0);
    ck_assert_uint_eq(aev_server_sockets(srv, NULL, 0), 0);
    int c2 = socket(sa.ss_family, SOCK_STREAM, 0);
    ck_assert_int_ne(connect(c2, (struct sockaddr *)&sa, len), 0); /* nobody listens (Unix: no file) */
    close(c2);
    aev_future_t *wc = NULL;
    ck_assert_int_eq(aev_server_wait_closed(srv, &wc), 0);
    g_waited = 0;
    ck_assert_int_eq(aev_future_add_done_callback(wc, set_flag_cb, &g_waited), 0);
    /* the existing connection still works */
    tu_write(c, "still");
    run_until(loop, (const int *)&r->got, 5);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_int_eq(g_waited, 0);
    aev_server_close_clients(srv);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    run_until(loop, &g_waited, 5);
    aev_future_unref(wc);
    aev_future_unref(sf);
    close(c);
    free(r);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_server_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, rec_factory, NULL, "127.0.0.1", 70000, NULL, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_create_server(loop, rec_factory, NULL, "127.0.0.1", 0,
                                            &(aev_server_options_t){.family = 12345}, &f),
                     -EAFNOSUPPORT);
    /* a port in use (reuse_address does not allow two listeners) */
    aev_future_t *a = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, rec_factory, NULL, "127.0.0.1", 0, NULL, &a), 0);
    void *srv = NULL;
    aev_future_result(a, &srv);
    int lfd = -1;
    aev_server_sockets(srv, &lfd, 1);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    int rc = aev_loop_create_server(loop, rec_factory, NULL, "127.0.0.1", ntohs(sa.sin_port), NULL, &f);
    ck_assert_int_eq(rc, -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "127.0.0.1"));
    ck_assert_ptr_null(f);
    aev_future_unref(a);
    tu_loop_free(loop);
}
END_TEST

/* Closing the loop with a transport open: its protocol gets connection_lost(AEV_ECLOSED). */
START_TEST(test_loop_close_loses_transports)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    make_transport(loop, r, sv, fam);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(r->lost_error, AEV_ECLOSED);
    aev_loop_free(loop);
    close(sv[1]);
    free(r);
}
END_TEST

/* A receive in flight into a buffered protocol's buffer when the loop closes: once
 * connection_lost has run, the protocol owns its buffer again, and nothing may write into it
 * (on proactor, a native receive still in the kernel would, at the loop thread's next system
 * call: the loop's close first cancels and waits for every native op). Bytes sent from
 * connection_lost must not land in the buffer it just cleared. */
static int g_late_peer = -1;

static int r_lost_then_peer_sends(aev_protocol_t *p, int error)
{
    rec_t *r = (rec_t *)p;
    r_lost(p, error);
    memset(r->buf, 0, sizeof r->buf);
    /* the transport's end may be closed by now (a Unix peer then gets EPIPE): no check */
    (void)!send(g_late_peer, "late bytes", 10, MSG_NOSIGNAL);
    return 0;
}

/* A buffered protocol (64-byte buffer) whose connection_lost clears its buffer and makes
 * the peer (g_late_peer) send. */
static rec_t *rec_new_late_peer(void)
{
    rec_t *r = rec_new();
    r->proto.get_buffer = r_get_buffer;
    r->proto.buffer_updated = r_updated;
    r->proto.connection_lost = r_lost_then_peer_sends;
    r->small_cap = 64;
    return r;
}

/* The buffer connection_lost cleared is still clear. */
static void check_no_late_write(const rec_t *r)
{
    static const unsigned char zero[64];
    ck_assert_msg(memcmp(r->buf, zero, sizeof zero) == 0,
                  "the kernel wrote into a buffer after connection_lost: %.10s", (const char *)r->buf);
}

START_TEST(test_loop_close_no_late_receive)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new_late_peer();
    int sv[2];
    make_transport(loop, r, sv, fam);
    for (int i = 0; i < 3; i++) /* the receive is in flight */
        tu_run_once(loop);
    g_late_peer = sv[1];
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(r->lost, 1);
    for (int i = 0; i < 5; i++) { /* system calls, at which pending kernel work would run */
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    check_no_late_write(r);
    aev_loop_free(loop);
    check_no_late_write(r);
    close(sv[1]);
    free(r);
}
END_TEST

/* The same when the transport is aborted while the loop runs on: connection_lost comes
 * only once no receive of the transport can write into the protocol's buffer any more.
 * A busy loop (callbacks always ready) polls at most every 20 us, so connection_lost may
 * run before the loop has handed the receive's cancel to the kernel. */
static int g_busy;

static int busy_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    if (g_busy)
        ck_assert_int_eq(aev_loop_call_soon(loop, busy_cb, NULL, NULL), 0);
    return 0;
}

START_TEST(test_abort_no_late_receive)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new_late_peer();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    for (int i = 0; i < 3; i++) /* the receive is in flight */
        tu_run_once(loop);
    g_late_peer = sv[1];
    g_busy = 1;
    ck_assert_int_eq(aev_loop_call_soon(loop, busy_cb, NULL, NULL), 0);
    tu_run_once(loop);
    aev_transport_abort(t);
    run_until(loop, &r->lost, 5);
    g_busy = 0;
    ck_assert_int_eq(r->lost, 1);
    for (int i = 0; i < 5; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        tu_run_once(loop);
    }
    check_no_late_write(r);
    close(sv[1]);
    tu_loop_free(loop);
    free(r);
}
END_TEST

/* Close while writing: 8 MiB accepted while the peer does not read, then close(). Nothing
 * accepted is lost: connection_lost waits until the buffer is flushed, the peer reads every
 * byte in order and then EOF. */
START_TEST(test_close_while_writing_nothing_lost)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    size_t total = 8u << 20, chunk = 1u << 20;
    unsigned char *data = pattern(total);
    for (size_t off = 0; off < total; off += chunk)
        ck_assert_int_eq(aev_transport_write(t, data + off, chunk), 0);
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), total / 2); /* most of it waits here */
    ck_assert_int_eq(r->pauses, 1);
    aev_transport_close(t);
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    ck_assert_int_eq(aev_transport_write(t, "x", 1), AEV_EINVALID_STATE); /* nothing more accepted */
    aev_transport_close(t);                                              /* idempotent */
    for (int i = 0; i < 10; i++)
        tu_run_once(loop);
    ck_assert_int_eq(r->lost, 0); /* not before the buffer is flushed */
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), total / 2);
    g_peer_off = 0;
    g_peer_eof = 0;
    g_peer_fd = sv[1];
    double end = tu_now() + 20;
    while (!g_peer_eof && tu_now() < end) {
        aev_loop_call_soon(loop, peer_read_cb, NULL, NULL);
        tu_run_once(loop);
    }
    ck_assert_int_eq(g_peer_eof, 1);
    ck_assert_uint_eq(g_peer_off, total);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(r->lost_error, 0);
    ck_assert_int_eq(r->eofs, 0);
    free(data);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* After write_eof every write is refused (asyncio: RuntimeError, even for b''), write_eof again
 * is a no-op, the transport is not closing and still reads: the peer gets EOF, answers, and
 * the answer arrives (half-close from our side). */
START_TEST(test_write_after_write_eof_rejected)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    ck_assert_int_eq(aev_transport_write(t, "last", 4), 0);
    ck_assert_int_eq(aev_transport_write_eof(t), 0);
    ck_assert_int_eq(aev_transport_write(t, "x", 1), AEV_EINVALID_STATE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "write_eof"));
    ck_assert_int_eq(aev_transport_write(t, "", 0), AEV_EINVALID_STATE);
    struct iovec iov[2] = {{.iov_base = "a", .iov_len = 1}, {.iov_base = "b", .iov_len = 1}};
    ck_assert_int_eq(aev_transport_writelines(t, iov, 2), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_transport_write_eof(t), 0);
    ck_assert_int_eq(aev_transport_is_closing(t), 0);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    /* the peer: "last", then EOF, and nothing of the refused writes */
    char b[16];
    size_t got = 0;
    double end = tu_now() + 5;
    ssize_t n = -1;
    while (tu_now() < end) {
        tu_poll_fd(sv[1], POLLIN, 1);
        n = read(sv[1], b + got, sizeof b - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    ck_assert_int_eq(n, 0);
    ck_assert_uint_eq(got, 4);
    ck_assert_int_eq(memcmp(b, "last", 4), 0);
    tu_write(sv[1], "answer");
    run_until(loop, (const int *)&r->got, 5);
    ck_assert_uint_eq(r->got, 6);
    ck_assert_int_eq(memcmp(r->buf, "answer", 6), 0);
    ck_assert_int_eq(r->lost, 0);
    shutdown(sv[1], SHUT_WR);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->eofs, 1);
    ck_assert_int_eq(r->lost_error, 0);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* get_extra_info: 'socket' is the fd, 'peername' and 'sockname' are the peer's sockname and
 * peername (the family's addresses: 127.0.0.1 / ::1 with ports, or the socket file path);
 * after connection_lost the fd is -1 and the names are -EBADF. */
START_TEST(test_extra_info_names)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv, fam);
    aev_transport_ref(t);
    ck_assert_int_eq(aev_transport_get_fd(t), sv[0]);
    struct sockaddr_storage tp, ts, pp, ps;
    socklen_t tpl = sizeof tp, tsl = sizeof ts, ppl = sizeof pp, psl = sizeof ps;
    ck_assert_int_eq(aev_transport_get_peername(t, (struct sockaddr *)&tp, &tpl), 0);
    ck_assert_int_eq(aev_transport_get_sockname(t, (struct sockaddr *)&ts, &tsl), 0);
    ck_assert_int_eq(getpeername(sv[1], (struct sockaddr *)&pp, &ppl), 0);
    ck_assert_int_eq(getsockname(sv[1], (struct sockaddr *)&ps, &psl), 0);
    ck_assert_int_eq(tp.ss_family, tu_fam_af(fam));
    ck_assert_int_eq(ts.ss_family, tu_fam_af(fam));
    ck_assert_msg(tu_same_addr(&tp, tpl, &ps, psl), "%s: peername is not the peer's sockname", tu_fam_name(fam));
    ck_assert_msg(tu_same_addr(&ts, tsl, &pp, ppl), "%s: sockname is not the peer's peername", tu_fam_name(fam));
    if (fam == TU_FAM_INET) {
        ck_assert_uint_eq(ntohl(((struct sockaddr_in *)&tp)->sin_addr.s_addr), INADDR_LOOPBACK);
        ck_assert_int_gt(tu_addr_port(&tp), 0);
        ck_assert_int_ne(tu_addr_port(&tp), tu_addr_port(&ts));
    } else if (fam == TU_FAM_INET6) {
        ck_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ts)->sin6_addr));
        ck_assert_int_gt(tu_addr_port(&ts), 0);
    } else {
        ck_assert_ptr_nonnull(strstr(((struct sockaddr_un *)&ts)->sun_path, "/tmp/aev-test-"));
    }
    ck_assert_int_eq(aev_transport_get_peername(t, NULL, &tpl), -EINVAL);
    ck_assert_int_eq(aev_transport_get_sockname(t, (struct sockaddr *)&ts, NULL), -EINVAL);
    aev_transport_close(t);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(aev_transport_get_fd(t), -1);
    tpl = sizeof tp;
    ck_assert_int_eq(aev_transport_get_peername(t, (struct sockaddr *)&tp, &tpl), -EBADF);
    tsl = sizeof ts;
    ck_assert_int_eq(aev_transport_get_sockname(t, (struct sockaddr *)&ts, &tsl), -EBADF);
    aev_transport_unref(t);
    close(sv[1]);
    free(r);
    tu_loop_free(loop);
}
END_TEST

/* set_protocol mid-stream, from inside data_received: the bytes read after it go to the new
 * protocol, here a buffered one (asyncio's transport switches between Protocol and
 * BufferedProtocol on set_protocol), and so do eof_received and connection_lost; the old
 * protocol gets no more calls. */
START_TEST(test_set_protocol_mid_stream)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    rec_t *a = rec_new();
    rec_t *b = rec_new();
    b->proto.data_received = NULL;
    b->proto.get_buffer = r_get_buffer;
    b->proto.buffer_updated = r_updated;
    b->small_cap = 5;
    b->made = 1; /* it takes over a made connection: no connection_made of its own */
    a->switch_to = &b->proto;
    int sv[2];
    aev_transport_t *t = make_transport(loop, a, sv, fam);
    b->t = t;
    tu_write(sv[1], "first");
    run_until(loop, (const int *)&a->got, 5);
    ck_assert_uint_eq(a->got, 5);
    ck_assert_ptr_eq(aev_transport_get_protocol(t), &b->proto);
    tu_write(sv[1], "second-part");
    double end = tu_now() + 5;
    while (b->got < 11 && tu_now() < end)
        tu_run_once(loop);
    ck_assert_uint_eq(b->got, 11);
    ck_assert_int_eq(memcmp(b->buf, "second-part", 11), 0);
    ck_assert_uint_eq(b->max_chunk, 5);
    ck_assert_uint_eq(a->got, 5);
    ck_assert_int_eq(memcmp(a->buf, "first", 5), 0);
    /* set_protocol(NULL) is ignored */
    aev_transport_set_protocol(t, NULL);
    ck_assert_ptr_eq(aev_transport_get_protocol(t), &b->proto);
    shutdown(sv[1], SHUT_WR);
    run_until(loop, &b->lost, 5);
    ck_assert_int_eq(b->eofs, 1);
    ck_assert_int_eq(b->lost_error, 0);
    ck_assert_int_eq(a->eofs, 0);
    ck_assert_int_eq(a->lost, 0);
    close(sv[1]);
    free(a);
    free(b);
    tu_loop_free(loop);
}
END_TEST

static Suite *stream_core_suite(void)
{
    Suite *s = suite_create("stream_core");
    /* each transport test runs for 127.0.0.1, ::1 and a Unix socket (_i: TU_FAM_*) */
    TU_ADD_LOOP(s, test_order_data_eof_lost, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_half_open_after_eof, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_flow_control_marks, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_pause_resume_reading, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_pause_then_data_and_eof, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_pause_from_a_neighbour, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_write_eof_and_close_flush, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_abort_drops_buffer, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_raising_data_received_aborts, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_peer_reset, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_buffered_protocol_small_buffer, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_server_close_rules, TU_FAM_COUNT);
    TU_ADD(s, test_server_bad_input);
    TU_ADD_LOOP(s, test_loop_close_loses_transports, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_loop_close_no_late_receive, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_abort_no_late_receive, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_close_while_writing_nothing_lost, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_write_after_write_eof_rejected, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_extra_info_names, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_set_protocol_mid_stream, TU_FAM_COUNT);
    return s;
}

TU_MAIN(stream_core_suite)
