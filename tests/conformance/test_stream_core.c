/* libaev conformance - stream transports and protocols (asyncio's
 * _SelectorSocketTransport and Protocol): order of calls, flow control with
 * the write-buffer marks, pause/resume reading, write_eof, close and abort,
 * raising callbacks, buffered protocols, servers and their close rules, and
 * loop close with open transports. The peer is the other end of a socketpair
 * (or a TCP client), read and written directly by the test. */
#include "test_util.h"

#include <netinet/in.h>
#include <poll.h>

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
    ((rec_t *)p)->pauses++;
    return 0;
}

static int r_resume(aev_protocol_t *p)
{
    ((rec_t *)p)->resumes++;
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

/* A transport over sv[0] (sv[1] is the test's peer). */
static aev_transport_t *make_transport(aev_loop_t *loop, rec_t *r, int sv[2])
{
    tu_socketpair(sv);
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
            /* one assertion per chunk: a per-byte ck_assert costs minutes under valgrind */
            ssize_t bad = -1;
            for (ssize_t i = 0; i < n && bad < 0; i++)
                if (b[i] != (unsigned char)((*offset + (size_t)i) * 31u))
                    bad = i;
            ck_assert_msg(bad < 0, "byte %zu differs", *offset + (size_t)bad);
            *offset += (size_t)n;
            total += (size_t)n;
            continue;
        }
        if (n == 0)
            *eof = 1;
        return total;
    }
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    make_transport(loop, r, sv);
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    r->keep_open_on_eof = 1;
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv);
    shutdown(sv[1], SHUT_WR);
    run_until(loop, &r->eofs, 5);
    ck_assert_int_eq(r->lost, 0);
    ck_assert_int_eq(aev_transport_write(t, "late", 4), 0);
    char b[8];
    tu_sleep(0.05);
    ck_assert_int_eq(read(sv[1], b, sizeof b), 4);
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv);
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 65536, 16384), 0);
    size_t lo = 0, hi = 0;
    aev_transport_get_write_buffer_limits(t, &lo, &hi);
    ck_assert_uint_eq(lo, 16384);
    ck_assert_uint_eq(hi, 65536);
    ck_assert_int_eq(aev_transport_set_write_buffer_limits(t, 10, 20), -EINVAL);
    size_t total = 4u << 20;
    unsigned char *data = pattern(total);
    for (size_t off = 0; off < total; off += 65536)
        ck_assert_int_eq(aev_transport_write(t, data + off, 65536), 0);
    ck_assert_uint_gt(aev_transport_get_write_buffer_size(t), 65536);
    ck_assert_int_eq(r->pauses, 1);
    ck_assert_int_eq(r->resumes, 0);
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv);
    ck_assert_int_eq(aev_transport_is_reading(t), 1);
    aev_transport_pause_reading(t);
    aev_transport_pause_reading(t); /* idempotent */
    ck_assert_int_eq(aev_transport_is_reading(t), 0);
    tu_write(sv[1], "queued");
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

/* write_eof after buffered data: the peer gets every byte, then EOF; writing after it is refused. */
START_TEST(test_write_eof_and_close_flush)
{
    aev_loop_t *loop = tu_loop_new();
    for (int mode = 0; mode < 2; mode++) { /* 0: write_eof, 1: close */
        rec_t *r = rec_new();
        int sv[2];
        aev_transport_t *t = make_transport(loop, r, sv);
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv);
    size_t total = 8u << 20;
    unsigned char *data = pattern(total);
    ck_assert_int_eq(aev_transport_write(t, data, total), 0);
    aev_transport_abort(t);
    ck_assert_int_eq(aev_transport_is_closing(t), 1);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, 0);
    g_peer_off = 0;
    g_peer_eof = 0;
    peer_drain(sv[1], &g_peer_off, &g_peer_eof);
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
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_exception_handler(loop, record_exc, NULL);
    g_exc_calls = 0;
    rec_t *r = rec_new();
    r->raised_at = 1;
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv);
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

/* The peer resets the connection: connection_lost(-ECONNRESET), not an exception-handler matter. */
START_TEST(test_peer_reset)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_exception_handler(loop, record_exc, NULL);
    g_exc_calls = 0;
    aev_future_t *sf = NULL;
    rec_t *r = rec_new();
    g_rec = r;
    ck_assert_int_eq(aev_loop_create_server(loop, rec_factory, NULL, "127.0.0.1", 0, NULL, &sf), 0);
    void *srv = NULL;
    ck_assert_int_eq(aev_future_result(sf, &srv), 0);
    int lfd = -1;
    ck_assert_int_eq(aev_server_sockets(srv, &lfd, 1), 1);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&sa, len), 0);
    run_until(loop, &r->made, 5);
    tu_write(c, "data");
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    tu_sleep(0.05);
    close(c);
    run_until(loop, &r->lost, 5);
    ck_assert_int_eq(r->lost_error, -ECONNRESET);
    ck_assert_int_eq(g_exc_calls, 0);
    aev_future_unref(sf);
    free(r);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_buffered_protocol_small_buffer)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    r->proto.get_buffer = r_get_buffer;
    r->proto.buffer_updated = r_updated;
    r->small_cap = 7;
    int sv[2];
    aev_transport_t *t = make_transport(loop, r, sv);
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    g_rec = r;
    aev_future_t *sf = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, rec_factory, NULL, "127.0.0.1", 0,
                                            &(aev_server_options_t){.no_start = 1}, &sf),
                     0);
    void *srv = NULL;
    ck_assert_int_eq(aev_future_result(sf, &srv), 0);
    ck_assert_ptr_eq(aev_server_get_loop(srv), loop);
    ck_assert_int_eq(aev_server_is_serving(srv), 0);
    ck_assert_int_eq(aev_server_start_serving(srv), 0);
    ck_assert_int_eq(aev_server_is_serving(srv), 1);
    int lfd = -1;
    ck_assert_int_eq(aev_server_sockets(srv, &lfd, 1), 1);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&sa, len), 0);
    run_until(loop, &r->made, 5);

    aev_server_close(srv);
    ck_assert_int_eq(aev_server_is_serving(srv), 0);
    ck_assert_uint_eq(aev_server_sockets(srv, NULL, 0), 0);
    int c2 = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ne(connect(c2, (struct sockaddr *)&sa, len), 0); /* nobody listens */
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
    aev_loop_t *loop = tu_loop_new();
    rec_t *r = rec_new();
    int sv[2];
    make_transport(loop, r, sv);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(r->lost_error, AEV_ECLOSED);
    aev_loop_free(loop);
    close(sv[1]);
    free(r);
}
END_TEST

static Suite *stream_core_suite(void)
{
    Suite *s = suite_create("stream_core");
    TU_ADD(s, test_order_data_eof_lost);
    TU_ADD(s, test_half_open_after_eof);
    TU_ADD(s, test_flow_control_marks);
    TU_ADD(s, test_pause_resume_reading);
    TU_ADD(s, test_write_eof_and_close_flush);
    TU_ADD(s, test_abort_drops_buffer);
    TU_ADD(s, test_raising_data_received_aborts);
    TU_ADD(s, test_peer_reset);
    TU_ADD(s, test_buffered_protocol_small_buffer);
    TU_ADD(s, test_server_close_rules);
    TU_ADD(s, test_server_bad_input);
    TU_ADD(s, test_loop_close_loses_transports);
    return s;
}

TU_MAIN(stream_core_suite)
