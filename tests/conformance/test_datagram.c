/* libaev conformance - datagram endpoints (loop.create_datagram_endpoint,
 * DatagramTransport, DatagramProtocol) on 127.0.0.1, ::1 and Unix datagram
 * sockets: datagrams both ways with their addresses, connected endpoints
 * (remote_addr) and their address check, error_received (ICMP port
 * unreachable), sock, allow_broadcast, reuse_port, the write buffer with its
 * marks (a Unix peer that does not read makes the socket block), close and
 * abort with buffered datagrams, pause_reading, raising callbacks, loop close
 * with an open endpoint, and bad input refused at once with no fd leaked. */
#include "test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/un.h>

#define MAXD 64

/* ---- a recording protocol ------------------------------------------------------ */

typedef struct rec {
    aev_datagram_protocol_t proto;
    aev_loop_t *loop;
    aev_datagram_transport_t *t;
    int made, lost, lost_error, pauses, resumes;
    int nd;                           /* datagrams received */
    char data[MAXD][128];
    size_t len[MAXD];
    struct sockaddr_storage from[MAXD];
    socklen_t fromlen[MAXD];
    int nerr;
    int errs[MAXD];
    int raise_in_received;            /* datagram_received returns this (once) */
    int raise_in_made;
    int send_in_resume;               /* resume_writing sends one more datagram */
    size_t size_at_pause, size_at_resume; /* get_write_buffer_size then */
    aev_datagram_transport_t *pause_other; /* datagram_received pauses this transport (once) */
    aev_datagram_transport_t *abort_other; /* datagram_received aborts this transport (once) */
    size_t big_len[4];                /* datagrams above 128 bytes: their lengths */
    int nbig, big_bad;                /* how many, and how many not as big_fill made them */
} rec_t;

/* The byte at i of a big test datagram. */
static unsigned char big_byte(size_t i)
{
    return (unsigned char)(i * 7 % 251);
}

/* The condition that stops the loop, checked after every event the test sees. */
static int (*g_pred)(void *);
static void *g_pred_arg;

static void check_stop(aev_loop_t *loop)
{
    if (g_pred && g_pred(g_pred_arg))
        aev_loop_stop(loop);
}

/* Runs the loop until pred(arg) holds (at most 2 s, which fails the test). */
static void run_until(aev_loop_t *loop, int (*pred)(void *), void *arg)
{
    if (pred(arg))
        return;
    g_pred = pred;
    g_pred_arg = arg;
    int fired = tu_run_guarded(loop, 2.0);
    g_pred = NULL;
    ck_assert_msg(!fired, "the awaited event did not come");
    ck_assert(pred(arg));
}

static int r_made(aev_datagram_protocol_t *p, aev_datagram_transport_t *t)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made + r->lost + r->nd, 0); /* the first call */
    r->made++;
    r->t = t;
    ck_assert_ptr_eq(aev_datagram_transport_get_protocol(t), p);
    ck_assert_ptr_eq(aev_datagram_transport_get_loop(t), r->loop);
    return r->raise_in_made;
}

static int r_received(aev_datagram_protocol_t *p, const void *d, size_t n, const struct sockaddr *a, socklen_t al)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    ck_assert_int_eq(r->lost, 0);
    ck_assert_int_lt(r->nd, MAXD);
    if (n > sizeof r->data[0]) { /* a big one: checked here, its length kept */
        ck_assert_int_lt(r->nbig, 4);
        r->big_len[r->nbig++] = n;
        for (size_t i = 0; i < n; i++)
            if (((const unsigned char *)d)[i] != big_byte(i))
                r->big_bad++;
        n = 0;
    }
    if (r->pause_other) {
        aev_datagram_transport_pause_reading(r->pause_other);
        r->pause_other = NULL;
    }
    if (r->abort_other) {
        aev_datagram_transport_abort(r->abort_other);
        r->abort_other = NULL;
    }
    memcpy(r->data[r->nd], d, n);
    r->len[r->nd] = n;
    ck_assert((a == NULL) == (al == 0));
    if (a)
        memcpy(&r->from[r->nd], a, al);
    r->fromlen[r->nd] = al;
    r->nd++;
    check_stop(r->loop);
    int rc = r->raise_in_received;
    r->raise_in_received = 0;
    return rc;
}

static int r_error(aev_datagram_protocol_t *p, int error)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    ck_assert_int_eq(r->lost, 0);
    ck_assert_int_lt(r->nerr, MAXD);
    r->errs[r->nerr++] = error;
    check_stop(r->loop);
    return 0;
}

static int r_lost(aev_datagram_protocol_t *p, int error)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->made, 1);
    ck_assert_int_eq(r->lost, 0); /* exactly once */
    r->lost++;
    r->lost_error = error;
    check_stop(r->loop);
    return 0;
}

static int r_pause(aev_datagram_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    ck_assert_int_eq(r->pauses, r->resumes);
    r->pauses++;
    r->size_at_pause = aev_datagram_transport_get_write_buffer_size(r->t);
    return 0;
}

static int r_resume(aev_datagram_protocol_t *p)
{
    rec_t *r = (rec_t *)p;
    r->resumes++;
    ck_assert_int_eq(r->pauses, r->resumes);
    r->size_at_resume = aev_datagram_transport_get_write_buffer_size(r->t);
    if (r->send_in_resume)
        ck_assert_int_eq(aev_datagram_transport_sendto(r->t, "late", 4, NULL, 0), 0);
    check_stop(r->loop);
    return 0;
}

static void rec_init(rec_t *r, aev_loop_t *loop)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->proto = (aev_datagram_protocol_t){.userdata = r, .connection_made = r_made, .connection_lost = r_lost,
                                         .datagram_received = r_received, .error_received = r_error,
                                         .pause_writing = r_pause, .resume_writing = r_resume};
}

static aev_datagram_protocol_t *factory(void *userdata)
{
    return &((rec_t *)userdata)->proto;
}

static char g_detail[512]; /* the detail of the last failed endpoint future */

/* Creates an endpoint and runs the loop until its future is done: the future's error. */
static int try_endpoint(aev_loop_t *loop, rec_t *r, const aev_datagram_options_t *o,
                        aev_datagram_transport_t **t)
{
    aev_future_t *f = NULL;
    int rc = aev_loop_create_datagram_endpoint(loop, factory, r, o, &f);
    ck_assert_msg(rc == 0, "create_datagram_endpoint: %s: %s", aev_err_name(rc), aev_error_detail());
    ck_assert_ptr_nonnull(f);
    int ran = aev_loop_run_until_complete(loop, f);
    void *v = NULL;
    rc = aev_future_result(f, &v);
    ck_assert_int_eq(ran, rc);
    if (rc == 0) {
        ck_assert_int_eq(r->made, 1); /* done only once connection_made ran */
        ck_assert_ptr_eq(v, r->t);
    } else {
        const char *d = aev_future_error_detail(f);
        snprintf(g_detail, sizeof g_detail, "%s", d ? d : "");
    }
    if (t)
        *t = v;
    aev_future_unref(f); /* the loop keeps the transport until connection_lost */
    return rc;
}

static aev_datagram_transport_t *endpoint(aev_loop_t *loop, rec_t *r, const aev_datagram_options_t *o)
{
    aev_datagram_transport_t *t = NULL;
    ck_assert_int_eq(try_endpoint(loop, r, o, &t), 0);
    ck_assert_ptr_nonnull(t);
    return t;
}

static int pred_nd(void *arg)
{
    return ((rec_t *)arg)->nd > 0;
}

static int pred_nd2(void *arg)
{
    return ((rec_t *)arg)->nd >= 2;
}

static int pred_err(void *arg)
{
    return ((rec_t *)arg)->nerr > 0;
}

static int pred_lost(void *arg)
{
    return ((rec_t *)arg)->lost > 0;
}

static void close_and_wait(aev_loop_t *loop, rec_t *r)
{
    aev_datagram_transport_close(r->t);
    ck_assert_int_eq(aev_datagram_transport_is_closing(r->t), 1);
    run_until(loop, pred_lost, r);
    ck_assert_int_eq(r->lost, 1);
    ck_assert_int_eq(r->lost_error, 0);
}

static socklen_t sockname(aev_datagram_transport_t *t, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof *ss;
    ck_assert_int_eq(aev_datagram_transport_get_sockname(t, (struct sockaddr *)ss, &len), 0);
    return len;
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static int have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void tmp_path(char *buf, size_t size, const char *tag)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "/tmp/aev-dgram-%s-%d-%ld%09ld.sock", tag, (int)getpid(), (long)ts.tv_sec, ts.tv_nsec);
}

/* ---- both ways --------------------------------------------------------------------- */

/* Two endpoints bound on host: a datagram each way, each with the sender's address, and
 * an empty datagram (asyncio 3.13 sends those too). */
static void both_ways(const char *host)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_options_t o = {.local_host = host};
    aev_datagram_transport_t *ta = endpoint(loop, &a, &o);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &o);
    struct sockaddr_storage sa, sb;
    socklen_t la = sockname(ta, &sa), lb = sockname(tb, &sb);
    ck_assert_int_ne(port_of(&sa), 0);
    ck_assert_int_ne(port_of(&sb), 0);
    ck_assert_int_ge(aev_datagram_transport_get_fd(ta), 0);
    ck_assert_int_eq(aev_datagram_transport_is_reading(ta), 1);
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    ck_assert_int_eq(aev_datagram_transport_get_peername(ta, (struct sockaddr *)&peer, &pl), -ENOTCONN);

    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "ping", 4, (struct sockaddr *)&sb, lb), 0);
    run_until(loop, pred_nd, &b);
    ck_assert_int_eq(b.nd, 1);
    ck_assert_uint_eq(b.len[0], 4);
    ck_assert_int_eq(memcmp(b.data[0], "ping", 4), 0);
    ck_assert_uint_eq(b.fromlen[0], la);
    ck_assert_int_eq(memcmp(&b.from[0], &sa, la), 0);

    /* the reply goes to the address the datagram came from */
    ck_assert_int_eq(aev_datagram_transport_sendto(tb, "pong!", 5, (struct sockaddr *)&b.from[0], b.fromlen[0]), 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(tb, NULL, 0, (struct sockaddr *)&b.from[0], b.fromlen[0]), 0);
    run_until(loop, pred_nd2, &a);
    ck_assert_uint_eq(a.len[0], 5);
    ck_assert_int_eq(memcmp(a.data[0], "pong!", 5), 0);
    ck_assert_int_eq(memcmp(&a.from[0], &sb, lb), 0);
    ck_assert_uint_eq(a.len[1], 0);
    ck_assert_int_eq(a.nerr + b.nerr, 0);
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 0);

    /* no remote address: sendto needs one */
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "x", 1, NULL, 0), -EDESTADDRREQ);
    ck_assert_str_ne(aev_error_detail(), "");

    aev_datagram_transport_ref(ta); /* used after its connection_lost */
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "x", 1, (struct sockaddr *)&sb, lb), AEV_EINVALID_STATE);
    ck_assert_int_eq(aev_datagram_transport_get_fd(ta), -1);
    aev_datagram_transport_unref(ta);
    tu_loop_free(loop);
}

START_TEST(test_udp4_both_ways)
{
    both_ways("127.0.0.1");
}
END_TEST

START_TEST(test_udp6_both_ways)
{
    if (!have_ipv6())
        return; /* no ::1 here */
    both_ways("::1");
}
END_TEST

START_TEST(test_unix_both_ways)
{
    aev_loop_t *loop = tu_loop_new();
    char pa[108], pb[108];
    tmp_path(pa, sizeof pa, "a");
    snprintf(pb, sizeof pb, "@aev-dgram-b-%d-%d", (int)getpid(), rand()); /* abstract namespace */
    /* a stale socket file at a's path is removed first */
    int stale = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", pa);
    ck_assert_int_eq(bind(stale, (struct sockaddr *)&su, sizeof su), 0);
    close(stale);

    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.local_path = pa});
    aev_datagram_transport_t *tb =
        endpoint(loop, &b, &(aev_datagram_options_t){.family = AF_UNIX, .local_path = pb});
    struct sockaddr_storage sb;
    socklen_t lb = sockname(tb, &sb);
    ck_assert_int_eq(sb.ss_family, AF_UNIX);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "to b", 4, (struct sockaddr *)&sb, lb), 0);
    run_until(loop, pred_nd, &b);
    ck_assert_int_eq(memcmp(b.data[0], "to b", 4), 0);
    const struct sockaddr_un *from = (const struct sockaddr_un *)&b.from[0];
    ck_assert_int_eq(from->sun_family, AF_UNIX);
    ck_assert_str_eq(from->sun_path, pa);
    ck_assert_int_eq(aev_datagram_transport_sendto(tb, "to a", 4, (struct sockaddr *)&b.from[0], b.fromlen[0]), 0);
    run_until(loop, pred_nd, &a);
    ck_assert_int_eq(memcmp(a.data[0], "to a", 4), 0);
    ck_assert_int_eq(((struct sockaddr_un *)&a.from[0])->sun_path[0], '\0'); /* abstract */

    /* an unnamed (unbound) sender has no address to give */
    int anon = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(sendto(anon, "anon", 4, 0, (struct sockaddr *)&su, sizeof su), 4);
    close(anon);
    run_until(loop, pred_nd2, &a);
    ck_assert_uint_eq(a.fromlen[1], 0);
    ck_assert_int_eq(memcmp(a.data[1], "anon", 4), 0);

    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    unlink(pa);
    tu_loop_free(loop);
}
END_TEST

/* ---- connected endpoints (remote_addr) ----------------------------------------------- */

static void connected(const char *host)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &(aev_datagram_options_t){.local_host = host});
    struct sockaddr_storage sb;
    socklen_t lb = sockname(tb, &sb);
    aev_datagram_transport_t *ta =
        endpoint(loop, &a, &(aev_datagram_options_t){.remote_host = host, .remote_port = port_of(&sb)});
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    ck_assert_int_eq(aev_datagram_transport_get_peername(ta, (struct sockaddr *)&peer, &pl), 0);
    ck_assert_uint_eq(pl, lb);
    ck_assert_int_eq(memcmp(&peer, &sb, lb), 0);

    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "one", 3, NULL, 0), 0);
    /* the remote address itself is accepted, any other is asyncio's "Invalid address" */
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "two", 3, (struct sockaddr *)&sb, lb), 0);
    struct sockaddr_storage other = sb;
    if (other.ss_family == AF_INET)
        ((struct sockaddr_in *)&other)->sin_port = htons((uint16_t)(port_of(&sb) ^ 1));
    else
        ((struct sockaddr_in6 *)&other)->sin6_port = htons((uint16_t)(port_of(&sb) ^ 1));
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "bad", 3, (struct sockaddr *)&other, lb), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "Invalid address"));
    run_until(loop, pred_nd2, &b);
    ck_assert_int_eq(memcmp(b.data[0], "one", 3), 0);
    ck_assert_int_eq(memcmp(b.data[1], "two", 3), 0);

    /* the answer reaches the connected endpoint */
    ck_assert_int_eq(aev_datagram_transport_sendto(tb, "back", 4, (struct sockaddr *)&b.from[0], b.fromlen[0]), 0);
    run_until(loop, pred_nd, &a);
    ck_assert_int_eq(memcmp(a.data[0], "back", 4), 0);
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    ck_assert_int_eq(b.nd, 2);
    tu_loop_free(loop);
}

START_TEST(test_udp4_remote_addr)
{
    connected("127.0.0.1");
}
END_TEST

START_TEST(test_udp6_remote_addr)
{
    if (!have_ipv6())
        return;
    connected("::1");
}
END_TEST

/* A port nobody listens on: bound once, then closed. */
static int closed_port(int family)
{
    int fd = socket(family, SOCK_DGRAM, 0);
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    if (family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, sizeof ss), 0);
    socklen_t len = sizeof ss;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    close(fd);
    return port_of(&ss);
}

/* ICMP port unreachable on a connected endpoint: error_received(-ECONNREFUSED), and the
 * endpoint stays open and usable (asyncio). */
static void refused(int family, const char *host)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a;
    rec_init(&a, loop);
    aev_datagram_transport_t *ta =
        endpoint(loop, &a, &(aev_datagram_options_t){.remote_host = host, .remote_port = closed_port(family)});
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "anyone?", 7, NULL, 0), 0);
    run_until(loop, pred_err, &a);
    ck_assert_int_eq(a.errs[0], -ECONNREFUSED);
    ck_assert_int_eq(aev_datagram_transport_is_closing(ta), 0);
    ck_assert_int_eq(aev_datagram_transport_is_reading(ta), 1);
    ck_assert_int_eq(a.lost, 0);
    /* still usable: the next refusal comes the same way */
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "again", 5, NULL, 0), 0);
    a.nerr = 0;
    run_until(loop, pred_err, &a);
    ck_assert_int_eq(a.errs[0], -ECONNREFUSED);
    close_and_wait(loop, &a);
    tu_loop_free(loop);
}

START_TEST(test_udp4_error_received_refused)
{
    refused(AF_INET, "127.0.0.1");
}
END_TEST

START_TEST(test_udp6_error_received_refused)
{
    if (!have_ipv6())
        return;
    refused(AF_INET6, "::1");
}
END_TEST

/* ---- sock, allow_broadcast, reuse_port ------------------------------------------------------ */

START_TEST(test_sock_option)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    struct sockaddr_storage sb;
    socklen_t lb = sockname(tb, &sb);
    /* a blocking, connected socket of the caller's: the endpoint makes it non-blocking and
     * takes the connected peer as its remote address */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(connect(s, (struct sockaddr *)&sb, lb), 0);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.use_sock = 1, .sock = s});
    ck_assert_int_eq(aev_datagram_transport_get_fd(ta), s);
    ck_assert(fcntl(s, F_GETFL) & O_NONBLOCK);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "via sock", 8, NULL, 0), 0);
    run_until(loop, pred_nd, &b);
    ck_assert_int_eq(memcmp(b.data[0], "via sock", 8), 0);
    close_and_wait(loop, &a);
    ck_assert(!tu_fd_is_open(s)); /* closed with the transport */
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}
END_TEST

static int sockopt(int fd, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, opt, &v, &len), 0);
    return v;
}

START_TEST(test_allow_broadcast)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b, c;
    rec_init(&a, loop);
    rec_init(&b, loop);
    rec_init(&c, loop);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    ck_assert_int_eq(sockopt(aev_datagram_transport_get_fd(tb), SO_BROADCAST), 0);
    struct sockaddr_storage sb;
    sockname(tb, &sb);
    /* with allow_broadcast the remote address is not connected, only sendto's default */
    aev_datagram_transport_t *ta = endpoint(
        loop, &a,
        &(aev_datagram_options_t){.remote_host = "127.0.0.1", .remote_port = port_of(&sb), .allow_broadcast = 1});
    ck_assert_int_ne(sockopt(aev_datagram_transport_get_fd(ta), SO_BROADCAST), 0);
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    ck_assert_int_eq(aev_datagram_transport_get_peername(ta, (struct sockaddr *)&peer, &pl), -ENOTCONN);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "bcast", 5, NULL, 0), 0);
    run_until(loop, pred_nd, &b);
    ck_assert_int_eq(memcmp(b.data[0], "bcast", 5), 0);
    /* and an unbound endpoint of a family alone */
    aev_datagram_transport_t *tc =
        endpoint(loop, &c, &(aev_datagram_options_t){.family = AF_INET, .allow_broadcast = 1});
    ck_assert_int_ne(sockopt(aev_datagram_transport_get_fd(tc), SO_BROADCAST), 0);
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    close_and_wait(loop, &c);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_reuse_port)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b, c;
    rec_init(&a, loop);
    rec_init(&b, loop);
    rec_init(&c, loop);
    aev_datagram_transport_t *ta =
        endpoint(loop, &a, &(aev_datagram_options_t){.local_host = "127.0.0.1", .reuse_port = 1});
    ck_assert_int_ne(sockopt(aev_datagram_transport_get_fd(ta), SO_REUSEPORT), 0);
    struct sockaddr_storage sa;
    sockname(ta, &sa);
    aev_datagram_options_t o = {.local_host = "127.0.0.1", .local_port = port_of(&sa), .reuse_port = 1};
    aev_datagram_transport_t *tb = endpoint(loop, &b, &o);
    ck_assert_int_ne(sockopt(aev_datagram_transport_get_fd(tb), SO_REUSEPORT), 0);
    /* without reuse_port the port is taken */
    o.reuse_port = 0;
    ck_assert_int_eq(try_endpoint(loop, &c, &o, NULL), -EADDRINUSE);
    ck_assert_int_eq(c.made, 0);
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}
END_TEST

/* ---- bad input ----------------------------------------------------------------------------- */

START_TEST(test_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    rec_init(&r, loop);
    int stream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int dgram = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int before = count_fds();
    const aev_datagram_options_t bad[] = {
        {.local_host = "127.0.0.1", .reuse_address = 1},
        {.local_host = "127.0.0.1", .local_port = 65536},
        {.remote_host = "127.0.0.1", .remote_port = -1},
        {.local_port = 5000},                               /* a port without its host */
        {.use_sock = 1, .sock = dgram, .local_host = "127.0.0.1"},
        {.use_sock = 1, .sock = dgram, .remote_host = "127.0.0.1", .remote_port = 9},
        {.use_sock = 1, .sock = dgram, .allow_broadcast = 1},
        {.use_sock = 1, .sock = dgram, .family = AF_INET},
        {.use_sock = 1, .sock = stream},                    /* not a datagram socket */
        {.family = AF_PACKET, .local_host = "127.0.0.1"},   /* an unknown family */
        {.family = 12345},
        {0},                                                /* no address, no family */
        {.family = AF_INET, .local_path = "/tmp/x.sock"},
        {.local_path = "/tmp/x.sock", .remote_host = "127.0.0.1"},
        {.family = AF_UNIX, .local_host = "127.0.0.1"},
        {.local_path = "/tmp/x.sock", .reuse_port = 1},
        {.local_path = ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aev_future_t *f = (aev_future_t *)&r; /* overwritten with NULL */
        int rc = aev_loop_create_datagram_endpoint(loop, factory, &r, &bad[i], &f);
        ck_assert_msg(rc == -EINVAL, "case %zu: %d (%s)", i, rc, aev_err_name(rc));
        ck_assert_ptr_null(f);
        ck_assert_msg(aev_error_detail()[0] != '\0', "case %zu has no detail", i);
    }
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_create_datagram_endpoint(loop, factory, &r, &bad[0], &f), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "reuse_address"));
    ck_assert_int_eq(aev_loop_create_datagram_endpoint(loop, NULL, &r, &bad[1], &f), -EINVAL);
    ck_assert_int_eq(aev_loop_create_datagram_endpoint(loop, factory, &r, NULL, &f), -EINVAL);
    tu_run_once(loop);
    ck_assert_int_eq(count_fds(), before); /* nothing opened, the socks are still the caller's */
    ck_assert(tu_fd_is_open(stream) && tu_fd_is_open(dgram));
    ck_assert_int_eq(r.made, 0);
    close(stream);
    close(dgram);
    tu_loop_free(loop);
    /* a closed loop */
    loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(aev_loop_create_datagram_endpoint(loop, factory, &r, &bad[1], &f), AEV_ECLOSED);
    aev_loop_free(loop);
}
END_TEST

/* Failures after the call (bind, connect, lookups) fail the future and leak nothing. */
START_TEST(test_failures_leak_nothing)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t r;
    rec_init(&r, loop);
    int before = count_fds();
    /* an address of no interface here */
    ck_assert_int_eq(try_endpoint(loop, &r, &(aev_datagram_options_t){.local_host = "192.0.2.1"}, NULL),
                     -EADDRNOTAVAIL);
    ck_assert_msg(strstr(g_detail, "192.0.2.1") != NULL, "detail: %s", g_detail);
    /* a local address of one family, a remote one of the other: no pair */
    if (have_ipv6()) {
        int rc = try_endpoint(loop, &r,
                              &(aev_datagram_options_t){.local_host = "127.0.0.1", .remote_host = "::1",
                                                        .remote_port = 9},
                              NULL);
        ck_assert_int_eq(rc, -EINVAL);
    }
    /* a Unix path nobody is bound to */
    char p[108];
    tmp_path(p, sizeof p, "none");
    ck_assert_int_eq(try_endpoint(loop, &r, &(aev_datagram_options_t){.remote_path = p}, NULL), -ENOENT);
    ck_assert_int_eq(r.made, 0);
    tu_run_once(loop);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
}
END_TEST

/* ---- the write buffer ---------------------------------------------------------------------- */

/* A Unix peer bound at path that reads only when told to; what it read, in order. */
typedef struct peer {
    int fd;
    int reading;
    int n;           /* datagrams read */
    int bad;         /* datagrams not whole or out of order */
    int late;        /* "late" datagrams */
    aev_loop_t *loop;
} peer_t;

static int peer_read(aev_loop_t *loop, void *arg)
{
    peer_t *p = arg;
    char buf[4096];
    ssize_t n;
    while ((n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0) {
        if (n == 4 && memcmp(buf, "late", 4) == 0) {
            p->late++;
            continue;
        }
        int seq = -1;
        if (n != 1000 || sscanf(buf, "%d", &seq) != 1 || seq != p->n)
            p->bad++;
        for (ssize_t i = 16; i < n; i++)
            if (buf[i] != (char)('a' + seq % 26))
                p->bad++;
        p->n++;
    }
    check_stop(loop);
    return 0;
}

static void peer_open(peer_t *p, aev_loop_t *loop, char *path, size_t size)
{
    memset(p, 0, sizeof *p);
    p->loop = loop;
    tmp_path(path, size, "peer");
    p->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
    ck_assert_int_eq(bind(p->fd, (struct sockaddr *)&su, sizeof su), 0);
}

static void peer_start(peer_t *p)
{
    ck_assert_int_eq(aev_loop_add_reader(p->loop, p->fd, peer_read, p), 0);
}

static void peer_close(peer_t *p, const char *path)
{
    aev_loop_remove_reader(p->loop, p->fd);
    close(p->fd);
    unlink(path);
}

static void datagram_of(char *buf, int seq)
{
    memset(buf, 'a' + seq % 26, 1000);
    snprintf(buf, 16, "%d", seq);
}

/* Sends numbered 1000-byte datagrams (from *seq on) until `buffered` of them wait in the
 * write buffer; *seq: the number of datagrams sent in all. */
static void fill(aev_datagram_transport_t *t, int buffered, int *seq)
{
    char buf[1000];
    for (int i = 0; i < 10000; i++) {
        datagram_of(buf, *seq);
        ck_assert_int_eq(aev_datagram_transport_sendto(t, buf, sizeof buf, NULL, 0), 0);
        (*seq)++;
        if (aev_datagram_transport_get_write_buffer_size(t) >= (size_t)buffered * 1008)
            return;
    }
    ck_abort_msg("the socket never blocked");
}

typedef struct drain_state {
    peer_t *p;
    rec_t *r;
    int total;
} drain_state_t;

static int pred_drained(void *arg)
{
    drain_state_t *d = arg;
    return d->p->n == d->total && aev_datagram_transport_get_write_buffer_size(d->r->t) == 0;
}

static int pred_late(void *arg)
{
    return ((peer_t *)arg)->late > 0;
}

static int pred_all_and_lost(void *arg)
{
    drain_state_t *d = arg;
    return d->p->n == d->total && d->r->lost > 0;
}

START_TEST(test_write_buffer_flow_control)
{
    aev_loop_t *loop = tu_loop_new();
    char path[108];
    peer_t p;
    peer_open(&p, loop, path, sizeof path);
    rec_t a;
    rec_init(&a, loop);
    a.send_in_resume = 1;
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.remote_path = path});
    size_t low = 0, high = 0;
    aev_datagram_transport_get_write_buffer_limits(ta, &low, &high);
    ck_assert_uint_eq(high, 65536);
    ck_assert_uint_eq(low, 16384);
    ck_assert_int_eq(aev_datagram_transport_set_write_buffer_limits(ta, 10, 20), -EINVAL);
    ck_assert_int_eq(aev_datagram_transport_set_write_buffer_limits(ta, 5000, 2016), 0);
    aev_datagram_transport_get_write_buffer_limits(ta, &low, &high);
    ck_assert_uint_eq(high, 5000);
    ck_assert_uint_eq(low, 2016);

    int total = 0;
    fill(ta, 4, &total); /* 4 * 1008 <= 5000: not paused yet */
    ck_assert_int_eq(a.pauses, 0);
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 4 * 1008);
    fill(ta, 5, &total); /* one more: above the high mark */
    ck_assert_int_eq(a.pauses, 1);
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 5 * 1008);
    /* the loop runs while the peer does not read: nothing moves */
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 5 * 1008);
    ck_assert_int_eq(a.resumes, 0);

    peer_start(&p);
    drain_state_t d = {&p, &a, total};
    run_until(loop, pred_drained, &d);
    ck_assert_int_eq(p.bad, 0); /* each whole, in order */
    ck_assert_int_eq(a.resumes, 1);
    ck_assert_uint_eq(a.size_at_pause, 5 * 1008);
    ck_assert_uint_eq(a.size_at_resume, 2 * 1008); /* at the low mark, not before */
    ck_assert_int_eq(a.nerr, 0);
    run_until(loop, pred_late, &p); /* the datagram sent from resume_writing went last */
    ck_assert_int_eq(p.late, 1);
    ck_assert_int_eq(p.n, total);
    close_and_wait(loop, &a);
    peer_close(&p, path);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_close_sends_buffered)
{
    aev_loop_t *loop = tu_loop_new();
    char path[108];
    peer_t p;
    peer_open(&p, loop, path, sizeof path);
    rec_t a;
    rec_init(&a, loop);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.remote_path = path});
    int total = 0;
    fill(ta, 3, &total);
    aev_datagram_transport_close(ta);
    aev_datagram_transport_close(ta); /* idempotent */
    ck_assert_int_eq(aev_datagram_transport_is_closing(ta), 1);
    ck_assert_int_eq(aev_datagram_transport_is_reading(ta), 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "x", 1, NULL, 0), AEV_EINVALID_STATE);
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_int_eq(a.lost, 0); /* not before the buffer went */
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 3 * 1008);
    peer_start(&p);
    drain_state_t d = {&p, &a, total};
    run_until(loop, pred_all_and_lost, &d);
    ck_assert_int_eq(p.bad, 0);
    ck_assert_int_eq(a.lost, 1);
    ck_assert_int_eq(a.lost_error, 0);
    tu_run_once(loop);
    ck_assert_int_eq(a.lost, 1);
    peer_close(&p, path);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_abort_drops_buffered)
{
    aev_loop_t *loop = tu_loop_new();
    char path[108];
    peer_t p;
    peer_open(&p, loop, path, sizeof path);
    rec_t a;
    rec_init(&a, loop);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.remote_path = path});
    int total = 0;
    fill(ta, 3, &total);
    int fd = aev_datagram_transport_get_fd(ta);
    aev_datagram_transport_abort(ta);
    ck_assert_int_eq(aev_datagram_transport_is_closing(ta), 1);
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 0);
    aev_datagram_transport_abort(ta);
    aev_datagram_transport_close(ta);
    run_until(loop, pred_lost, &a);
    ck_assert_int_eq(a.lost, 1);
    ck_assert_int_eq(a.lost_error, 0);
    ck_assert(!tu_fd_is_open(fd));
    peer_start(&p);
    tu_run_once(loop);
    ck_assert_int_eq(p.n, total - 3); /* only what went before the socket blocked */
    ck_assert_int_eq(p.bad, 0);
    peer_close(&p, path);
    tu_loop_free(loop);
}
END_TEST

/* ---- reading ------------------------------------------------------------------------------- */

START_TEST(test_pause_reading_and_raising)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    struct sockaddr_storage sb;
    sockname(tb, &sb);
    aev_datagram_transport_t *ta =
        endpoint(loop, &a, &(aev_datagram_options_t){.remote_host = "127.0.0.1", .remote_port = port_of(&sb)});
    aev_datagram_transport_pause_reading(tb);
    aev_datagram_transport_pause_reading(tb);
    ck_assert_int_eq(aev_datagram_transport_is_reading(tb), 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "first", 5, NULL, 0), 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "second", 6, NULL, 0), 0);
    for (int i = 0; i < 3; i++)
        tu_run_once(loop);
    ck_assert_int_eq(b.nd, 0);
    /* datagram_received raising is reported; the endpoint stays open and reads on */
    b.raise_in_received = -EPROTO;
    aev_datagram_transport_resume_reading(tb);
    ck_assert_int_eq(aev_datagram_transport_is_reading(tb), 1);
    run_until(loop, pred_nd2, &b);
    ck_assert_int_eq(memcmp(b.data[0], "first", 5), 0);
    ck_assert_int_eq(memcmp(b.data[1], "second", 6), 0);
    ck_assert_int_eq(exc.count, 1);
    ck_assert_int_eq(exc.records[0].error, -EPROTO);
    ck_assert_int_eq(exc.records[0].has_socket, 1);
    ck_assert_int_eq(aev_datagram_transport_is_closing(tb), 0);
    ck_assert_int_eq(b.lost, 0);
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_connection_made_raises)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    rec_t a;
    rec_init(&a, loop);
    a.raise_in_made = -EPROTO;
    int before = count_fds();
    ck_assert_int_eq(try_endpoint(loop, &a, &(aev_datagram_options_t){.local_host = "127.0.0.1"}, NULL), -EPROTO);
    run_until(loop, pred_lost, &a);
    ck_assert_int_eq(a.lost, 1);
    ck_assert_int_eq(a.lost_error, -EPROTO);
    ck_assert_int_eq(exc.count, 1);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
}
END_TEST

/* Cancelling the endpoint's future before it is done leaves nothing open. */
START_TEST(test_cancel_creation)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a;
    rec_init(&a, loop);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int before = count_fds();
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_create_datagram_endpoint(loop, factory, &a,
                                                       &(aev_datagram_options_t){.use_sock = 1, .sock = s}, &f),
                     0);
    aev_future_cancel(f, NULL);
    aev_future_unref(f);
    for (int i = 0; i < 3; i++)
        tu_run_once(loop);
    ck_assert_int_eq(a.made, 0);
    ck_assert(!tu_fd_is_open(s)); /* the endpoint owned sock */
    ck_assert_int_eq(count_fds(), before - 1);
    /* and once the task waits for connection_made */
    ck_assert_int_eq(
        aev_loop_create_datagram_endpoint(loop, factory, &a, &(aev_datagram_options_t){.local_host = "127.0.0.1"}, &f),
        0);
    tu_run_once(loop); /* the task ran up to its wait */
    aev_future_cancel(f, NULL);
    aev_future_unref(f);
    for (int i = 0; i < 3; i++)
        tu_run_once(loop);
    ck_assert_int_eq(a.lost, a.made);
    ck_assert_int_eq(count_fds(), before - 1);
    tu_loop_free(loop);
}
END_TEST

/* ---- loop close ---------------------------------------------------------------------------- */

START_TEST(test_loop_close_with_open_endpoint)
{
    int before = count_fds();
    aev_loop_t *loop = tu_loop_new();
    char path[108];
    peer_t p;
    peer_open(&p, loop, path, sizeof path);
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    aev_datagram_transport_t *tb = endpoint(loop, &b, &(aev_datagram_options_t){.remote_path = path});
    int sent = 0;
    fill(tb, 2, &sent); /* with datagrams in its buffer */
    aev_datagram_transport_ref(ta); /* a user's reference outlives connection_lost */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(a.lost, 1);
    ck_assert_int_eq(a.lost_error, AEV_ECLOSED);
    ck_assert_int_eq(b.lost, 1);
    ck_assert_int_eq(b.lost_error, AEV_ECLOSED);
    ck_assert_int_eq(aev_datagram_transport_get_fd(ta), -1);
    ck_assert_int_eq(aev_datagram_transport_is_closing(ta), 1);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "x", 1, NULL, 0), AEV_EINVALID_STATE);
    aev_datagram_transport_unref(ta);
    aev_loop_free(loop);
    close(p.fd);
    unlink(path);
    ck_assert_int_eq(count_fds(), before);
}
END_TEST

/* ---- the proactor's completion contract -------------------------------------------------- */

/* A 60000-byte UDP datagram arrives whole (the selector's 64 KiB buffer holds it; so must the
 * proactor's native receive, whose engine buffers are 16 KiB), each way. */
static void big_datagrams(const char *host)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_options_t o = {.local_host = host};
    aev_datagram_transport_t *ta = endpoint(loop, &a, &o);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &o);
    struct sockaddr_storage sa, sb;
    socklen_t la = sockname(ta, &sa), lb = sockname(tb, &sb);
    enum { BIG = 60000 };
    unsigned char *big = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        big[i] = big_byte(i);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, big, BIG, (struct sockaddr *)&sb, lb), 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, "small", 5, (struct sockaddr *)&sb, lb), 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(tb, big, 20000, (struct sockaddr *)&sa, la), 0);
    free(big); /* the transport copied what it could not send at once */
    run_until(loop, pred_nd2, &b);
    run_until(loop, pred_nd, &a);
    ck_assert_int_eq(b.nbig, 1);
    ck_assert_uint_eq(b.big_len[0], BIG);
    ck_assert_int_eq(b.big_bad, 0);
    ck_assert_uint_eq(b.len[1], 5); /* then the small one, in order */
    ck_assert_int_eq(memcmp(b.data[1], "small", 5), 0);
    ck_assert_uint_eq(b.fromlen[0], la);
    ck_assert_int_eq(memcmp(&b.from[0], &sa, la), 0);
    ck_assert_int_eq(a.nbig, 1);
    ck_assert_uint_eq(a.big_len[0], 20000);
    ck_assert_int_eq(a.big_bad, 0);
    ck_assert_int_eq(a.nerr + b.nerr, 0);
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}

START_TEST(test_udp4_big_datagram)
{
    big_datagrams("127.0.0.1");
}
END_TEST

START_TEST(test_udp6_big_datagram)
{
    if (!have_ipv6())
        return; /* no ::1 here */
    big_datagrams("::1");
}
END_TEST

/* Numbered datagrams "A<seq>" padded to 100 bytes. */
static void numbered(char *buf, char tag, int seq)
{
    memset(buf, '.', 100);
    snprintf(buf, 16, "%c%d", tag, seq);
}

static int pred_nd20_lost(void *arg)
{
    rec_t *r = arg; /* r[0] receives, r[1] sends */
    return r[0].nd >= 20 && r[1].lost > 0;
}

/* close() right after many sends (on the proactor each is a native send, one in flight, the
 * rest queued): every datagram goes, in order, then connection_lost. */
START_TEST(test_close_with_sends_in_flight)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t r[2]; /* r[0] receives, r[1] sends */
    rec_init(&r[0], loop);
    rec_init(&r[1], loop);
    aev_datagram_transport_t *tb = endpoint(loop, &r[0], &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    struct sockaddr_storage sb;
    sockname(tb, &sb);
    aev_datagram_transport_t *ta =
        endpoint(loop, &r[1], &(aev_datagram_options_t){.remote_host = "127.0.0.1", .remote_port = port_of(&sb)});
    char buf[100];
    for (int i = 0; i < 20; i++) {
        numbered(buf, 'A', i);
        ck_assert_int_eq(aev_datagram_transport_sendto(ta, buf, sizeof buf, NULL, 0), 0);
    }
    aev_datagram_transport_close(ta);
    ck_assert_int_eq(aev_datagram_transport_sendto(ta, buf, sizeof buf, NULL, 0), AEV_EINVALID_STATE);
    run_until(loop, pred_nd20_lost, r);
    ck_assert_int_eq(r[0].nd, 20);
    for (int i = 0; i < 20; i++) {
        numbered(buf, 'A', i);
        ck_assert_uint_eq(r[0].len[i], 100);
        ck_assert_int_eq(memcmp(r[0].data[i], buf, 100), 0);
    }
    ck_assert_int_eq(r[1].lost, 1);
    ck_assert_int_eq(r[1].lost_error, 0);
    ck_assert_int_eq(r[1].nerr, 0);
    close_and_wait(loop, &r[0]);
    tu_loop_free(loop);
}
END_TEST

static int pred_from_c(void *arg)
{
    rec_t *r = arg;
    for (int i = 0; i < r->nd; i++)
        if (r->data[i][0] == 'C')
            return 1;
    return 0;
}

/* abort() with sends queued and one in flight (proactor: its engine operation reads the
 * datagram when the loop next enters the kernel, after the abort): the buffer is dropped,
 * but the datagram in flight stays untouched until its send completed - another endpoint's
 * send right after the abort reuses freed memory of that size, which must not be it. */
START_TEST(test_abort_with_send_in_flight)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t b, a, c;
    rec_init(&b, loop);
    rec_init(&a, loop);
    rec_init(&c, loop);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    struct sockaddr_storage sb;
    sockname(tb, &sb);
    aev_datagram_options_t to_b = {.remote_host = "127.0.0.1", .remote_port = port_of(&sb)};
    aev_datagram_transport_t *ta = endpoint(loop, &a, &to_b);
    aev_datagram_transport_t *tc = endpoint(loop, &c, &to_b);
    char buf[100];
    for (int i = 0; i < 5; i++) {
        numbered(buf, 'A', i);
        ck_assert_int_eq(aev_datagram_transport_sendto(ta, buf, sizeof buf, NULL, 0), 0);
    }
    aev_datagram_transport_abort(ta);
    ck_assert_uint_eq(aev_datagram_transport_get_write_buffer_size(ta), 0);
    numbered(buf, 'C', 0);
    ck_assert_int_eq(aev_datagram_transport_sendto(tc, buf, sizeof buf, NULL, 0), 0);
    run_until(loop, pred_from_c, &b);
    run_until(loop, pred_lost, &a);
    ck_assert_int_eq(a.lost_error, 0);
    /* what came from A: A's datagrams, whole, in order, from A's address */
    struct sockaddr_storage sa;
    socklen_t la = sockname(tc, &sa);
    int from_a = 0;
    for (int i = 0; i < b.nd; i++) {
        int is_c = memcmp(&b.from[i], &sa, la) == 0;
        numbered(buf, is_c ? 'C' : 'A', is_c ? 0 : from_a);
        ck_assert_msg(memcmp(b.data[i], buf, 100) == 0, "datagram %d: %.8s", i, b.data[i]);
        from_a += !is_c;
    }
    ck_assert_int_le(from_a, 5);
    aev_datagram_transport_abort(tc);
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}
END_TEST

/* abort() while a receive is in flight and its datagram already came (on the proactor: its
 * completion waits in the same batch, behind the callback that aborts): nothing is delivered
 * after abort, connection_lost(0) comes once, the socket is closed, nothing leaks. */
START_TEST(test_abort_with_receive_in_flight)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_options_t o = {.local_host = "127.0.0.1"};
    /* B first: a selector that dispatches in fd order (poll, select) then sees B's datagram
     * before A's, as the kernel received them */
    aev_datagram_transport_t *tb = endpoint(loop, &b, &o);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &o);
    struct sockaddr_storage sa, sb;
    socklen_t la = sockname(ta, &sa), lb = sockname(tb, &sb);
    int fd = aev_datagram_transport_get_fd(ta);
    tu_run_once(loop); /* both receives wait in the kernel now (proactor) */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    b.abort_other = ta; /* B's datagram_received aborts A */
    ck_assert_int_eq(sendto(s, "to-b", 4, 0, (struct sockaddr *)&sb, lb), 4);
    ck_assert_int_eq(sendto(s, "racing", 6, 0, (struct sockaddr *)&sa, la), 6);
    run_until(loop, pred_lost, &a);
    for (int i = 0; i < 3; i++)
        tu_run_once(loop);
    ck_assert_int_eq(b.nd, 1);
    ck_assert_int_eq(a.nd, 0);
    ck_assert_int_eq(a.lost, 1);
    ck_assert_int_eq(a.lost_error, 0);
    ck_assert(!tu_fd_is_open(fd));
    close(s);
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}
END_TEST

static int pred_nd3(void *arg)
{
    return ((rec_t *)arg)->nd >= 3;
}

static int pred_nd4(void *arg)
{
    return ((rec_t *)arg)->nd >= 4;
}

/* pause_reading called while a datagram for the paused endpoint is already received (on the
 * proactor: its completion waits in the same batch, behind the callback that pauses): it is
 * not delivered while paused, nor lost; after resume it comes first, then those that came
 * meanwhile, in order. */
START_TEST(test_pause_reading_races_datagram)
{
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_options_t o = {.local_host = "127.0.0.1"};
    aev_datagram_transport_t *ta = endpoint(loop, &a, &o);
    aev_datagram_transport_t *tb = endpoint(loop, &b, &o);
    struct sockaddr_storage sa, sb;
    socklen_t la = sockname(ta, &sa), lb = sockname(tb, &sb);
    tu_run_once(loop); /* both receives wait in the kernel now (proactor) */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(s, (struct sockaddr *)&lo, sizeof lo), 0);
    b.pause_other = ta; /* B's datagram_received pauses A */
    ck_assert_int_eq(sendto(s, "to-b", 4, 0, (struct sockaddr *)&sb, lb), 4);
    ck_assert_int_eq(sendto(s, "one", 3, 0, (struct sockaddr *)&sa, la), 3);
    run_until(loop, pred_nd, &b);
    ck_assert_int_eq(aev_datagram_transport_is_reading(ta), 0);
    /* a selector may have dispatched A's readiness before B's (poll, select: fd order) */
    int early = a.nd;
    ck_assert_int_le(early, 1);
    ck_assert_int_eq(sendto(s, "two", 3, 0, (struct sockaddr *)&sa, la), 3);
    ck_assert_int_eq(sendto(s, "three", 5, 0, (struct sockaddr *)&sa, la), 5);
    for (int i = 0; i < 4; i++)
        tu_run_once(loop);
    ck_assert_int_eq(a.nd, early); /* paused: nothing more */
    aev_datagram_transport_resume_reading(ta);
    run_until(loop, pred_nd3, &a);
    ck_assert_int_eq(a.nd, 3);
    ck_assert_int_eq(memcmp(a.data[0], "one", 3), 0);
    ck_assert_int_eq(memcmp(a.data[1], "two", 3), 0);
    ck_assert_int_eq(memcmp(a.data[2], "three", 5), 0);
    struct sockaddr_storage ss;
    socklen_t ls = sizeof ss;
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&ss, &ls), 0);
    ck_assert_uint_eq(a.fromlen[0], ls); /* the stashed one kept its sender */
    ck_assert_int_eq(memcmp(&a.from[0], &ss, ls), 0);
    /* paused again right after resume: still nothing lost */
    aev_datagram_transport_pause_reading(ta);
    ck_assert_int_eq(sendto(s, "four", 4, 0, (struct sockaddr *)&sa, la), 4);
    aev_datagram_transport_resume_reading(ta);
    aev_datagram_transport_pause_reading(ta);
    tu_run_once(loop);
    ck_assert_int_eq(a.nd, 3);
    aev_datagram_transport_resume_reading(ta);
    run_until(loop, pred_nd4, &a);
    ck_assert_int_eq(a.nd, 4);
    ck_assert_int_eq(memcmp(a.data[3], "four", 4), 0);
    close(s);
    close_and_wait(loop, &a);
    close_and_wait(loop, &b);
    tu_loop_free(loop);
}
END_TEST

/* The loop closes with a receive in flight, a datagram stashed by a racing pause, and sends
 * queued (proactor: native operations in flight): every endpoint gets connection_lost
 * (AEV_ECLOSED), nothing leaks (valgrind), no fd stays open. */
START_TEST(test_loop_close_with_ops_in_flight)
{
    int before = count_fds();
    aev_loop_t *loop = tu_loop_new();
    rec_t a, b;
    rec_init(&a, loop);
    rec_init(&b, loop);
    aev_datagram_transport_t *ta = endpoint(loop, &a, &(aev_datagram_options_t){.local_host = "127.0.0.1"});
    struct sockaddr_storage sa;
    socklen_t la = sockname(ta, &sa);
    aev_datagram_transport_t *tb =
        endpoint(loop, &b, &(aev_datagram_options_t){.remote_host = "127.0.0.1", .remote_port = port_of(&sa)});
    (void)la;
    tu_run_once(loop);
    ck_assert_int_eq(aev_datagram_transport_sendto(tb, "stashed", 7, NULL, 0), 0);
    tu_run_once(loop);
    aev_datagram_transport_pause_reading(ta);
    tu_run_once(loop);
    aev_datagram_transport_resume_reading(ta); /* its delivery is queued, never runs */
    char buf[100];
    for (int i = 0; i < 10; i++) {
        numbered(buf, 'B', i);
        ck_assert_int_eq(aev_datagram_transport_sendto(tb, buf, sizeof buf, NULL, 0), 0);
    }
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(a.lost, 1);
    ck_assert_int_eq(a.lost_error, AEV_ECLOSED);
    ck_assert_int_eq(b.lost, 1);
    ck_assert_int_eq(b.lost_error, AEV_ECLOSED);
    (void)ta;
    aev_loop_free(loop);
    ck_assert_int_eq(count_fds(), before);
}
END_TEST

static Suite *datagram_suite(void)
{
    Suite *s = suite_create("datagram");
    TU_ADD(s, test_udp4_both_ways);
    TU_ADD(s, test_udp6_both_ways);
    TU_ADD(s, test_unix_both_ways);
    TU_ADD(s, test_udp4_remote_addr);
    TU_ADD(s, test_udp6_remote_addr);
    TU_ADD(s, test_udp4_error_received_refused);
    TU_ADD(s, test_udp6_error_received_refused);
    TU_ADD(s, test_sock_option);
    TU_ADD(s, test_allow_broadcast);
    TU_ADD(s, test_reuse_port);
    TU_ADD(s, test_bad_input);
    TU_ADD(s, test_failures_leak_nothing);
    TU_ADD(s, test_write_buffer_flow_control);
    TU_ADD(s, test_close_sends_buffered);
    TU_ADD(s, test_abort_drops_buffered);
    TU_ADD(s, test_pause_reading_and_raising);
    TU_ADD(s, test_connection_made_raises);
    TU_ADD(s, test_cancel_creation);
    TU_ADD(s, test_loop_close_with_open_endpoint);
    TU_ADD(s, test_udp4_big_datagram);
    TU_ADD(s, test_udp6_big_datagram);
    TU_ADD(s, test_close_with_sends_in_flight);
    TU_ADD(s, test_abort_with_send_in_flight);
    TU_ADD(s, test_abort_with_receive_in_flight);
    TU_ADD(s, test_pause_reading_races_datagram);
    TU_ADD(s, test_loop_close_with_ops_in_flight);
    return s;
}

TU_MAIN(datagram_suite)
