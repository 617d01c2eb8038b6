/* libaev conformance - servers and connections (loop.create_server,
 * create_unix_server, create_connection, asyncio.Server): servers closing with
 * live clients (close + wait_closed waits for them, close_clients flushes and
 * closes, abort_clients drops), several hosts on port 0, a round trip through
 * create_connection for each address kind, and bad input refused with a clear
 * error and no socket left open.
 *
 * The tests that take an address kind run for TCP over 127.0.0.1, TCP over ::1
 * (skipped with a note where the host has no IPv6 loopback) and a Unix stream
 * socket (Check loop tests, _i is the kind: TU_FAM_* of test_util.h). Clients
 * are plain sockets driven by the test, unless the test is about
 * create_connection. */
#include "test_util.h"

#include <netdb.h>
#include <netinet/in.h>

/* ---- the server side: one conn_t per accepted connection ---------------------------------- */

#define MAX_CONNS 8

typedef struct conn {
    aev_protocol_t proto;
    aev_transport_t *t;
    int made, lost, eofs;
    int lost_error;
    size_t got;
    char buf[256];
} conn_t;

static conn_t *g_conns[MAX_CONNS];
static int g_nconns;     /* connections made */
static int g_nlost;      /* connections lost */
static int g_echo;       /* 1: echo what is received */
static size_t g_push;    /* bytes of pattern each connection writes at connection_made */
static unsigned char *g_pattern;

static int s_made(aev_protocol_t *p, aev_transport_t *t)
{
    conn_t *c = (conn_t *)p;
    ck_assert_int_eq(c->made + c->lost, 0);
    c->made = 1;
    c->t = t;
    g_nconns++;
    if (g_push) {
        tu_cap_sndbuf(aev_transport_get_fd(t)); /* keep most of it in the transport */
        return aev_transport_write(t, g_pattern, g_push);
    }
    return 0;
}

static int s_data(aev_protocol_t *p, const void *d, size_t n)
{
    conn_t *c = (conn_t *)p;
    ck_assert_int_eq(c->lost, 0);
    size_t k = n < sizeof c->buf - c->got ? n : sizeof c->buf - c->got;
    memcpy(c->buf + c->got, d, k);
    c->got += n;
    return g_echo ? aev_transport_write(c->t, d, n) : 0;
}

static int s_eof(aev_protocol_t *p)
{
    ((conn_t *)p)->eofs++;
    return 0;
}

static int s_lost(aev_protocol_t *p, int error)
{
    conn_t *c = (conn_t *)p;
    ck_assert_int_eq(c->made, 1);
    ck_assert_int_eq(c->lost, 0);
    c->lost = 1;
    c->lost_error = error;
    g_nlost++;
    return 0;
}

static aev_protocol_t *s_factory(void *userdata)
{
    (void)userdata;
    ck_assert_int_lt(g_nconns, MAX_CONNS);
    conn_t *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->proto.connection_made = s_made;
    c->proto.data_received = s_data;
    c->proto.eof_received = s_eof;
    c->proto.connection_lost = s_lost;
    g_conns[g_nconns] = c; /* s_made counts it */
    return &c->proto;
}

static void conns_reset(void)
{
    for (int i = 0; i < MAX_CONNS; i++) {
        free(g_conns[i]);
        g_conns[i] = NULL;
    }
    g_nconns = g_nlost = 0;
    g_echo = 0;
    g_push = 0;
    free(g_pattern);
    g_pattern = NULL;
}

static void set_push(size_t n)
{
    g_push = n;
    g_pattern = malloc(n);
    ck_assert_ptr_nonnull(g_pattern);
    for (size_t i = 0; i < n; i++)
        g_pattern[i] = (unsigned char)(i * 31u);
}

/* ---- helpers ----------------------------------------------------------------------------------- */

/* Runs the loop in short slices until *flag >= want (or limit seconds). */
static void run_until_ge(aev_loop_t *loop, const int *flag, int want, double limit)
{
    double end = tu_now() + limit;
    while (*flag < want && tu_now() < end) {
        aev_loop_call_later(loop, 0.002, tu_stop_cb, NULL, NULL);
        aev_loop_run_forever(loop);
    }
    ck_assert_msg(*flag >= want, "condition not reached within %.0f s (%d < %d)", limit, *flag, want);
}

static int set_flag_cb(aev_future_t *f, void *arg)
{
    (void)f;
    *(int *)arg = 1;
    return 0;
}

/* A client sends msg and reads it back from the echoing server (the loop runs meanwhile). */
static void echo_round_trip(aev_loop_t *loop, int c, const char *msg)
{
    size_t len = strlen(msg), got = 0;
    char b[64];
    tu_write(c, msg);
    double end = tu_now() + 5;
    while (got < len && tu_now() < end) {
        tu_run_once(loop);
        ssize_t n = read(c, b + got, sizeof b - got);
        if (n > 0)
            got += (size_t)n;
        else
            ck_assert_msg(n < 0 && errno == EAGAIN, "client read: %zd (%s)", n, strerror(errno));
    }
    ck_assert_uint_eq(got, len);
    ck_assert_int_eq(memcmp(b, msg, len), 0);
}

/* Reads what is there now from a client, checking the pattern; *eof set on EOF, *reset on
 * ECONNRESET. */
static void client_drain(int c, size_t *off, int *eof, int *reset)
{
    unsigned char b[65536];
    for (;;) {
        ssize_t n = read(c, b, sizeof b);
        if (n > 0) {
            ssize_t bad = -1;
            for (ssize_t i = 0; i < n && bad < 0; i++)
                if (b[i] != (unsigned char)((*off + (size_t)i) * 31u))
                    bad = i;
            ck_assert_msg(bad < 0, "byte %zu of the stream is wrong", *off + (size_t)bad);
            *off += (size_t)n;
            continue;
        }
        if (n == 0)
            *eof = 1;
        else if (errno == ECONNRESET)
            *reset = 1;
        else
            ck_assert_msg(errno == EAGAIN, "client read: %s", strerror(errno));
        return;
    }
}

/* ---- servers closing with live clients ------------------------------------------------------ */

/* close() stops listening and leaves the connections; wait_closed is done only once the last
 * one is gone (here: the clients hang up, one after the other). */
START_TEST(test_close_waits_for_clients)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    g_echo = 1;
    aev_future_t *sf = NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    aev_server_t *srv = tu_server_start(loop, fam, s_factory, NULL, NULL, &sf, &sa, &len);
    int c[2];
    for (int i = 0; i < 2; i++)
        c[i] = tu_connect_to((struct sockaddr *)&sa, len);
    run_until_ge(loop, &g_nconns, 2, 5);

    aev_server_close(srv);
    ck_assert_int_eq(aev_server_is_serving(srv), 0);
    ck_assert_uint_eq(aev_server_sockets(srv, NULL, 0), 0);
    aev_future_t *wc = NULL;
    ck_assert_int_eq(aev_server_wait_closed(srv, &wc), 0);
    int waited = 0;
    ck_assert_int_eq(aev_future_add_done_callback(wc, set_flag_cb, &waited), 0);
    /* the clients are still served */
    echo_round_trip(loop, c[0], "ping");
    echo_round_trip(loop, c[1], "pong");
    ck_assert_int_eq(waited, 0);

    close(c[0]); /* EOF: its connection closes */
    run_until_ge(loop, &g_nlost, 1, 5);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_int_eq(aev_future_done(wc), 0); /* one client is left */
    echo_round_trip(loop, c[1], "still");

    close(c[1]);
    run_until_ge(loop, &g_nlost, 2, 5);
    run_until_ge(loop, &waited, 1, 5);
    ck_assert_int_eq(aev_future_result(wc, NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(g_conns[i]->eofs, 1);
        ck_assert_int_eq(g_conns[i]->lost_error, 0);
    }
    /* wait_closed on a closed server without connections is done at once */
    aev_future_t *wc2 = NULL;
    ck_assert_int_eq(aev_server_wait_closed(srv, &wc2), 0);
    ck_assert_int_eq(aev_future_done(wc2), 1);
    aev_future_unref(wc2);
    aev_future_unref(wc);
    aev_future_unref(sf);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

/* close_clients closes every connection gracefully: what each had buffered (4 MiB, the clients
 * were not reading) still reaches its client, then EOF; connection_lost(0) for each, only after
 * the flush. It does not stop the server: close() does, and wait_closed is then done at once. */
START_TEST(test_close_clients_flushes)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    size_t total = 4u << 20;
    set_push(total);
    aev_future_t *sf = NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    aev_server_t *srv = tu_server_start(loop, fam, s_factory, NULL, NULL, &sf, &sa, &len);
    int c[2];
    for (int i = 0; i < 2; i++)
        c[i] = tu_connect_to((struct sockaddr *)&sa, len);
    run_until_ge(loop, &g_nconns, 2, 5);
    for (int i = 0; i < 2; i++)
        ck_assert_uint_gt(aev_transport_get_write_buffer_size(g_conns[i]->t), total / 2);

    aev_server_close_clients(srv);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(aev_transport_is_closing(g_conns[i]->t), 1);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_int_eq(g_nlost, 0); /* nothing is dropped: the buffers are still being sent */
    ck_assert_int_eq(aev_server_is_serving(srv), 1);

    size_t off[2] = {0, 0};
    int eof[2] = {0, 0}, reset[2] = {0, 0};
    double end = tu_now() + 20;
    while ((!eof[0] || !eof[1]) && !reset[0] && !reset[1] && tu_now() < end) {
        tu_run_once(loop);
        for (int i = 0; i < 2; i++)
            if (!eof[i])
                client_drain(c[i], &off[i], &eof[i], &reset[i]);
    }
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(reset[i], 0);
        ck_assert_int_eq(eof[i], 1);
        ck_assert_uint_eq(off[i], total);
    }
    run_until_ge(loop, &g_nlost, 2, 5);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(g_conns[i]->lost_error, 0);

    aev_server_close(srv);
    aev_future_t *wc = NULL;
    ck_assert_int_eq(aev_server_wait_closed(srv, &wc), 0);
    ck_assert_int_eq(aev_future_done(wc), 1);
    aev_future_unref(wc);
    close(c[0]);
    close(c[1]);
    aev_future_unref(sf);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

/* abort_clients drops every connection at once, buffers and all: connection_lost(0) without the
 * clients reading; the clients then see what the kernel had taken, and EOF or a reset, never
 * the whole stream; the closed server's wait_closed completes. */
START_TEST(test_abort_clients_drops)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    size_t total = 4u << 20;
    set_push(total);
    aev_future_t *sf = NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    aev_server_t *srv = tu_server_start(loop, fam, s_factory, NULL, NULL, &sf, &sa, &len);
    int c[2];
    for (int i = 0; i < 2; i++)
        c[i] = tu_connect_to((struct sockaddr *)&sa, len);
    run_until_ge(loop, &g_nconns, 2, 5);

    aev_server_close(srv);
    aev_future_t *wc = NULL;
    ck_assert_int_eq(aev_server_wait_closed(srv, &wc), 0);
    int waited = 0;
    ck_assert_int_eq(aev_future_add_done_callback(wc, set_flag_cb, &waited), 0);
    for (int i = 0; i < 5; i++)
        tu_run_once(loop);
    ck_assert_int_eq(waited, 0);

    aev_server_abort_clients(srv);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(aev_transport_is_closing(g_conns[i]->t), 1);
    run_until_ge(loop, &g_nlost, 2, 5); /* the clients have read nothing */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(g_conns[i]->lost_error, 0);
    run_until_ge(loop, &waited, 1, 5);

    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        int eof = 0, reset = 0;
        double end = tu_now() + 5;
        while (!eof && !reset && tu_now() < end) {
            client_drain(c[i], &off, &eof, &reset);
            if (!eof && !reset)
                tu_poll_fd(c[i], POLLIN, end - tu_now());
        }
        ck_assert_msg(eof || reset, "client %d: neither EOF nor a reset", i);
        ck_assert_uint_lt(off, total);
        close(c[i]);
    }
    aev_future_unref(wc);
    aev_future_unref(sf);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

/* BUG (core/server.c, aev_server_unref): the wait_closed future is left pending for ever when
 * the last reference to the server goes while connections are still open; see the report.
 * asyncio's wait_closed holds the server (the coroutine's self) until it returns. */
START_TEST(test_wait_closed_outlives_server_reference)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    g_echo = 1;
    aev_future_t *sf = NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    aev_server_t *srv = tu_server_start(loop, fam, s_factory, NULL, NULL, &sf, &sa, &len);
    int c = tu_connect_to((struct sockaddr *)&sa, len);
    run_until_ge(loop, &g_nconns, 1, 5);
    aev_server_close(srv);
    aev_future_t *wc = NULL;
    ck_assert_int_eq(aev_server_wait_closed(srv, &wc), 0);
    int waited = 0;
    ck_assert_int_eq(aev_future_add_done_callback(wc, set_flag_cb, &waited), 0);
    aev_future_unref(sf); /* the server's last reference: it is freed, its connection stays */
    echo_round_trip(loop, c, "alive");
    ck_assert_int_eq(waited, 0);
    close(c);
    run_until_ge(loop, &g_nlost, 1, 5);
    run_until_ge(loop, &waited, 1, 2); /* the connection is gone: wait_closed is done */
    aev_future_unref(wc);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

/* ---- listening ----------------------------------------------------------------------------------- */

/* create_server("127.0.0.1,::1", 0): one listening socket per host, each on a free port, both
 * serving; the IPv6 one is IPV6_V6ONLY. */
START_TEST(test_several_hosts_port0)
{
    int v6 = tu_fam_available(TU_FAM_INET6);
    if (!v6)
        printf("%s: ::1 not available here: only 127.0.0.1 is checked\n", __func__);
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    g_echo = 1;
    aev_future_t *sf = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, v6 ? "127.0.0.1, ::1" : "127.0.0.1", 0, NULL, &sf),
                     0);
    ck_assert_int_eq(aev_future_done(sf), 1);
    void *srv = NULL;
    ck_assert_int_eq(aev_future_result(sf, &srv), 0);
    int fds[4] = {-1, -1, -1, -1};
    size_t n = aev_server_sockets(srv, fds, 4);
    ck_assert_uint_eq(n, v6 ? 2 : 1);
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        ck_assert_int_eq(getsockname(fds[i], (struct sockaddr *)&ss, &len), 0);
        ck_assert_int_eq(ss.ss_family, i == 0 ? AF_INET : AF_INET6);
        ck_assert_int_gt(tu_addr_port(&ss), 0);
        int listening = 0;
        socklen_t ol = sizeof listening;
        ck_assert_int_eq(getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol), 0);
        ck_assert_int_eq(listening, 1);
        if (ss.ss_family == AF_INET6) {
            int only = 0;
            ol = sizeof only;
            ck_assert_int_eq(getsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &only, &ol), 0);
            ck_assert_int_eq(only, 1);
        }
        int c = tu_connect_to((struct sockaddr *)&ss, len);
        run_until_ge(loop, &g_nconns, (int)i + 1, 5);
        echo_round_trip(loop, c, i == 0 ? "four" : "six");
        close(c);
    }
    run_until_ge(loop, &g_nlost, (int)n, 5);
    aev_future_unref(sf);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

/* A host name is resolved first (the future completes later): "localhost" gives loopback
 * listeners only. */
START_TEST(test_server_on_a_name)
{
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    g_echo = 1;
    aev_future_t *sf = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, "localhost", 0, NULL, &sf), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, sf), 0);
    void *srv = NULL;
    ck_assert_int_eq(aev_future_result(sf, &srv), 0);
    int fds[8];
    size_t n = aev_server_sockets(srv, fds, 8);
    ck_assert_uint_ge(n, 1);
    for (size_t i = 0; i < n && i < 8; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        ck_assert_int_eq(getsockname(fds[i], (struct sockaddr *)&ss, &len), 0);
        if (ss.ss_family == AF_INET)
            ck_assert_uint_eq(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24, 127);
        else
            ck_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));
    }
    aev_future_unref(sf);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

/* ---- create_connection ------------------------------------------------------------------------ */

typedef struct client {
    aev_protocol_t proto;
    aev_transport_t *t;
    int made, lost, lost_error;
    size_t got;
    char buf[64];
} client_t;

static int c_made(aev_protocol_t *p, aev_transport_t *t)
{
    client_t *c = (client_t *)p;
    c->made++;
    c->t = t;
    return aev_transport_write(t, "round trip", 10);
}

static int c_data(aev_protocol_t *p, const void *d, size_t n)
{
    client_t *c = (client_t *)p;
    size_t k = n < sizeof c->buf - c->got ? n : sizeof c->buf - c->got;
    memcpy(c->buf + c->got, d, k);
    c->got += n;
    if (c->got >= 10)
        aev_transport_close(c->t);
    return 0;
}

static int c_lost(aev_protocol_t *p, int error)
{
    client_t *c = (client_t *)p;
    c->lost++;
    c->lost_error = error;
    return 0;
}

static aev_protocol_t *c_factory(void *userdata)
{
    client_t *c = userdata;
    c->proto.connection_made = c_made;
    c->proto.data_received = c_data;
    c->proto.connection_lost = c_lost;
    return &c->proto;
}

/* create_connection (create_unix_connection for Unix) to an echo server: the future's value is
 * the transport, made before the future is done; its peername is the server's address; the
 * bytes go round; with the family given explicitly as well. */
START_TEST(test_create_connection_round_trip)
{
    const int fam = _i;
    TU_SKIP_UNAVAILABLE(fam);
    aev_loop_t *loop = tu_loop_new();
    conns_reset();
    g_echo = 1;
    aev_future_t *sf = NULL;
    struct sockaddr_storage sa;
    socklen_t len;
    tu_server_start(loop, fam, s_factory, NULL, NULL, &sf, &sa, &len);
    for (int explicit_family = 0; explicit_family < 2; explicit_family++) {
        if (fam == TU_FAM_UNIX && explicit_family)
            break;
        client_t cl = {0};
        aev_future_t *cf = NULL;
        int rc;
        if (fam == TU_FAM_UNIX) {
            rc = aev_loop_create_unix_connection(loop, c_factory, &cl, ((struct sockaddr_un *)&sa)->sun_path, NULL,
                                                 &cf);
        } else {
            aev_connection_options_t o = {.family = explicit_family ? tu_fam_af(fam) : 0};
            rc = aev_loop_create_connection(loop, c_factory, &cl, tu_fam_name(fam), tu_addr_port(&sa), &o, &cf);
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(aev_loop_run_until_complete(loop, cf), 0);
        void *t = NULL;
        ck_assert_int_eq(aev_future_result(cf, &t), 0);
        ck_assert_int_eq(cl.made, 1);
        ck_assert_ptr_eq(t, cl.t);
        struct sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        ck_assert_int_eq(aev_transport_get_peername(t, (struct sockaddr *)&peer, &pl), 0);
        ck_assert_msg(tu_same_addr(&peer, pl, &sa, len), "%s: peername is not the server's address",
                      tu_fam_name(fam));
        run_until_ge(loop, &cl.lost, 1, 5);
        ck_assert_uint_eq(cl.got, 10);
        ck_assert_int_eq(memcmp(cl.buf, "round trip", 10), 0);
        ck_assert_int_eq(cl.lost_error, 0);
        aev_future_unref(cf);
    }
    aev_future_unref(sf);
    run_until_ge(loop, &g_nlost, g_nconns, 5);
    conns_reset();
    tu_loop_free(loop);
}
END_TEST

static int is_dns_error(int rc)
{
    return rc <= AEV_EDNS_NONAME && rc >= AEV_EDNS_NODATA;
}

/* Runs a create_connection future to its end; returns its error (0 if it connected). */
static int connection_outcome(aev_loop_t *loop, aev_future_t *f, char *detail, size_t size)
{
    int rc = aev_loop_run_until_complete(loop, f);
    const char *d = aev_future_error_detail(f);
    snprintf(detail, size, "%s", d ? d : "");
    aev_future_unref(f);
    return rc;
}

/* Bad input to create_connection: a clear error (at once for bad arguments, from the future for
 * what needs a lookup or a connect), a detail, and no socket left open. */
START_TEST(test_create_connection_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    client_t cl = {0};
    /* warm up: the resolver (and its executor) are made on first use and stay */
    aev_future_t *g = NULL;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", NULL, &g), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, g), 0);
    aev_future_unref(g);
    int before = tu_fd_count();
    aev_future_t *f = (aev_future_t *)&f;
    char detail[1200];

    /* refused at once */
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", 70000, NULL, &f), -EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "70000"));
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", -1, NULL, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, NULL, 80, NULL, &f), -EINVAL);
    ck_assert_str_ne(aev_error_detail(), "");
    int sv[2];
    tu_socketpair(sv);
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", 80,
                                                &(aev_connection_options_t){.use_sock = 1, .sock = sv[0]}, &f),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "sock"));
    close(sv[0]);
    close(sv[1]);
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", 80,
                                                &(aev_connection_options_t){.server_hostname = "x"}, &f),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "ssl"));
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", 80,
                                                &(aev_connection_options_t){.ssl = &cl}, &f),
                     AEV_ENOT_SUPPORTED);
    ck_assert_ptr_null(f);

    /* an unknown host: the resolver's error */
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "no-such-host.invalid", 80, NULL, &f), 0);
    int rc = connection_outcome(loop, f, detail, sizeof detail);
    ck_assert_msg(is_dns_error(rc), "unknown host: %d %s", rc, aev_err_name(rc));
    ck_assert_str_ne(detail, "");
    /* an unknown local address */
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", 80,
                                                &(aev_connection_options_t){.local_host = "no-such-host.invalid"},
                                                &f),
                     0);
    rc = connection_outcome(loop, f, detail, sizeof detail);
    ck_assert_msg(is_dns_error(rc), "unknown local host: %d %s", rc, aev_err_name(rc));

    /* nobody listens: -ECONNREFUSED naming the address */
    struct sockaddr_storage ss;
    socklen_t len = tu_fam_addr(TU_FAM_INET, NULL, 0, &ss);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(l, (struct sockaddr *)&ss, len), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&ss, &len), 0);
    close(l); /* bound, never listening: the port is free again */
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", tu_addr_port(&ss), NULL, &f), 0);
    rc = connection_outcome(loop, f, detail, sizeof detail);
    ck_assert_int_eq(rc, -ECONNREFUSED);
    ck_assert_ptr_nonnull(strstr(detail, "127.0.0.1"));
    /* a Unix path nobody serves */
    char path[108];
    tu_unix_path(path, sizeof path);
    ck_assert_int_eq(aev_loop_create_unix_connection(loop, c_factory, &cl, path, NULL, &f), 0);
    rc = connection_outcome(loop, f, detail, sizeof detail);
    ck_assert_int_eq(rc, -ENOENT);
    ck_assert_ptr_nonnull(strstr(detail, path));

    ck_assert_int_eq(cl.made, 0);
    ck_assert_int_eq(tu_fd_count(), before);
    tu_loop_free(loop);
}
END_TEST

/* BUG (core/connect.c, connect_task, use after free): a lookup the resolver answers at once with
 * an error (a numeric host of the other family than asked for) is released with
 * aev_future_unref(lookup) before aev_task_fail(self, rc, lookup_detail) reads lookup_detail,
 * which points into that future (the copy made into detail[] is not the one passed). The
 * assertions pass; valgrind reports "Invalid read" in strdup from aev_task_fail (connect.c:200)
 * of a block freed by aev_future_unref (connect.c:186). Left out of the suite (it is run under
 * valgrind) until the core fix; see the report. */
START_TEST(test_create_connection_numeric_host_other_family)
{
    aev_loop_t *loop = tu_loop_new();
    client_t cl = {0};
    int before = tu_fd_count();
    aev_future_t *f = NULL;
    char detail[1200];
    ck_assert_int_eq(aev_loop_create_connection(loop, c_factory, &cl, "::1", 80,
                                                &(aev_connection_options_t){.family = AF_INET}, &f),
                     0);
    int rc = connection_outcome(loop, f, detail, sizeof detail);
    ck_assert_msg(is_dns_error(rc), "::1 as AF_INET: %d %s", rc, aev_err_name(rc));
    ck_assert_ptr_nonnull(strstr(detail, "::1"));
    ck_assert_int_eq(cl.made, 0);
    ck_assert_int_eq(tu_fd_count(), before);
    tu_loop_free(loop);
}
END_TEST

/* BUG (core/connect.c, connect_task): a family other than AF_UNSPEC/AF_INET/AF_INET6 fails the
 * future with -EINVAL but no detail: aev_loop_getaddrinfo refuses it at once, with the detail
 * in the thread's slot, and connect_task calls aev_task_fail(self, rc, NULL) because no lookup
 * future exists. Fails at: "family 1: EINVAL without a detail" (AF_UNIX; 12345 the same).
 * Left out of the suite until the core fix; see the report. */
START_TEST(test_create_connection_bad_family)
{
    aev_loop_t *loop = tu_loop_new();
    client_t cl = {0};
    aev_future_t *g = NULL;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", NULL, &g), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, g), 0);
    aev_future_unref(g);
    int before = tu_fd_count();
    aev_future_t *f = NULL;
    char detail[1200];
    /* a bad family: refused (at once or by the future), with a detail */
    int bad_families[] = {AF_UNIX, 12345};
    for (size_t i = 0; i < sizeof bad_families / sizeof bad_families[0]; i++) {
        int rc = aev_loop_create_connection(loop, c_factory, &cl, "127.0.0.1", 80,
                                            &(aev_connection_options_t){.family = bad_families[i]}, &f);
        if (rc == 0)
            rc = connection_outcome(loop, f, detail, sizeof detail);
        else
            snprintf(detail, sizeof detail, "%s", aev_error_detail());
        ck_assert_msg(rc < 0, "family %d accepted", bad_families[i]);
        ck_assert_msg(detail[0] != '\0', "family %d: %s without a detail", bad_families[i], aev_err_name(rc));
    }

    ck_assert_int_eq(cl.made, 0);
    ck_assert_int_eq(tu_fd_count(), before);
    tu_loop_free(loop);
}
END_TEST

/* Bad input to create_server and create_unix_server: a clear error and no socket left open,
 * also when the second of two hosts fails after the first was bound. */
START_TEST(test_create_server_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *g = NULL;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", NULL, &g), 0);
    ck_assert_int_eq(aev_loop_run_until_complete(loop, g), 0);
    aev_future_unref(g);
    int before = tu_fd_count();
    aev_future_t *f = NULL;

    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, "127.0.0.1", 70000, NULL, &f), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "70000"));
    ck_assert_ptr_null(f);
    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, "127.0.0.1", 0,
                                            &(aev_server_options_t){.family = 12345}, &f),
                     -EAFNOSUPPORT);
    ck_assert_str_ne(aev_error_detail(), "");
    /* a host not of the family asked for is taken as a name: the resolver refuses it */
    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, "127.0.0.1,::1", 0,
                                            &(aev_server_options_t){.family = AF_INET}, &f),
                     0);
    int rc = aev_loop_run_until_complete(loop, f);
    ck_assert_msg(is_dns_error(rc), "::1 as AF_INET: %d %s", rc, aev_err_name(rc));
    ck_assert_ptr_nonnull(strstr(aev_future_error_detail(f), "::1"));
    aev_future_unref(f);
    f = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, "127.0.0.1", 0,
                                            &(aev_server_options_t){.use_sock = 1, .sock = 0}, &f),
                     -EINVAL);
    ck_assert_ptr_null(f);

    /* the second host's port is taken: the first one's socket is closed again. ::1 with the
     * port of the 127.0.0.1 socket is normally free, but a test running beside this one may
     * hold it: then the error names ::1 and the case is tried again with another port. */
    int v6 = tu_fam_available(TU_FAM_INET6);
    for (int attempt = 0;; attempt++) {
        struct sockaddr_storage ss;
        socklen_t len = tu_fam_addr(TU_FAM_INET, NULL, 0, &ss);
        int taken = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_eq(bind(taken, (struct sockaddr *)&ss, len), 0);
        ck_assert_int_eq(listen(taken, 1), 0);
        ck_assert_int_eq(getsockname(taken, (struct sockaddr *)&ss, &len), 0);
        int port = tu_addr_port(&ss);
        rc = aev_loop_create_server(loop, s_factory, NULL, v6 ? "::1,127.0.0.1" : "127.0.0.1", port, NULL, &f);
        close(taken);
        ck_assert_int_eq(rc, -EADDRINUSE);
        ck_assert_ptr_null(f);
        if (strstr(aev_error_detail(), "127.0.0.1"))
            break;
        ck_assert_msg(attempt < 10, "detail: %s", aev_error_detail());
    }

    /* an unknown host name: the resolver's error, from the future */
    ck_assert_int_eq(aev_loop_create_server(loop, s_factory, NULL, "no-such-host.invalid", 0, NULL, &f), 0);
    rc = aev_loop_run_until_complete(loop, f);
    ck_assert_msg(is_dns_error(rc), "unknown host: %d %s", rc, aev_err_name(rc));
    ck_assert_ptr_nonnull(aev_future_error_detail(f));
    aev_future_unref(f);
    f = NULL;

    /* Unix: a path too long, a file that is not a socket */
    char longpath[200];
    memset(longpath, 'x', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    ck_assert_int_eq(aev_loop_create_unix_server(loop, s_factory, NULL, longpath, NULL, &f), -EINVAL);
    char path[108];
    tu_unix_path(path, sizeof path);
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    fclose(file);
    ck_assert_int_eq(aev_loop_create_unix_server(loop, s_factory, NULL, path, NULL, &f), -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), path));
    unlink(path);

    ck_assert_int_eq(tu_fd_count(), before);
    tu_loop_free(loop);
}
END_TEST

static Suite *server_suite(void)
{
    Suite *s = suite_create("server");
    TU_ADD_LOOP(s, test_close_waits_for_clients, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_close_clients_flushes, TU_FAM_COUNT);
    TU_ADD_LOOP(s, test_abort_clients_drops, TU_FAM_COUNT);
    TU_ADD(s, test_several_hosts_port0);
    TU_ADD(s, test_server_on_a_name);
    TU_ADD_LOOP(s, test_create_connection_round_trip, TU_FAM_COUNT);
    TU_ADD(s, test_create_connection_bad_input);
    TU_ADD(s, test_create_server_bad_input);
    TU_ADD_LOOP(s, test_wait_closed_outlives_server_reference, TU_FAM_COUNT);
    TU_ADD(s, test_create_connection_bad_family);
    TU_ADD(s, test_create_connection_numeric_host_other_family);
    return s;
}

TU_MAIN(server_suite)
