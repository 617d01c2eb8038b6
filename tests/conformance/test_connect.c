/* libaev conformance - loop.create_connection: Happy Eyeballs (RFC 8305, as asyncio's
 * staggered_race: happy_eyeballs_delay, interleave), all_errors, cancellation, and bad input.
 *
 * Names with several addresses come from the test-only resolver aev_dns_fake
 * (tests/plugins/fakedns.c), chosen through the loop's policy: a config file
 * naming its directory ([plugins] path) and its table ([dns.fake] hosts), and
 * aev_loop_options_t.dns = "fake".
 *
 * The "black hole" is a listener on 127.0.0.2 whose accept queue is full (listen(fd, 0),
 * then connections nobody accepts): a SYN to it is dropped, so a connect to it never
 * completes. The good listener is 127.0.0.1 on the same port (Linux routes all of 127/8 to
 * lo), and 127.0.0.3-5 on that port refuse at once. */
#include "test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>

/* ---- file descriptors ------------------------------------------------------- */

/** The number of open file descriptors of this process. */
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

/* ---- listeners -------------------------------------------------------------- */

static void sin_of(struct sockaddr_in *sin, const char *ip, int port)
{
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

/* A listener on ip:port (0: any port), or -1 if the address is taken. */
static int listen_on(const char *ip, int port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin;
    sin_of(&sin, ip, port);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        ck_assert_int_eq(errno, EADDRINUSE);
        close(fd);
        return -1;
    }
    ck_assert_int_eq(listen(fd, backlog), 0);
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    return ntohs(sin.sin_port);
}

#define MAX_FILLERS 32

typedef struct net {
    int port;
    int good; /* 127.0.0.1:port, accepting (nobody calls accept: the kernel completes it) */
    int hole; /* 127.0.0.2:port, its accept queue full */
    int fillers[MAX_FILLERS];
    int nfillers;
} net_t;

/* Fills the accept queue of the black hole until a further connect stays in progress. */
static void fill_hole(net_t *n)
{
    struct sockaddr_in sin;
    sin_of(&sin, "127.0.0.2", n->port);
    for (;;) {
        ck_assert_msg(n->nfillers < MAX_FILLERS, "the black hole keeps accepting connections");
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(c, 0);
        int rc = connect(c, (struct sockaddr *)&sin, sizeof sin);
        ck_assert(rc == 0 || errno == EINPROGRESS);
        struct pollfd p = {.fd = c, .events = POLLOUT};
        if (rc != 0 && poll(&p, 1, 100) == 0) { /* no answer: the SYN was dropped */
            close(c);
            return;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ck_assert_int_eq(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
        ck_assert_msg(err == 0, "filling the black hole: %s", strerror(err));
        n->fillers[n->nfillers++] = c;
    }
}

/* The good listener on 127.0.0.1 and (with_hole) the black hole on 127.0.0.2, same port. */
static void net_setup(net_t *n, int with_hole)
{
    memset(n, 0, sizeof *n);
    n->hole = -1;
    for (int tries = 0; tries < 20; tries++) {
        n->good = listen_on("127.0.0.1", 0, 16);
        ck_assert_int_ge(n->good, 0);
        n->port = port_of(n->good);
        if (!with_hole)
            return;
        n->hole = listen_on("127.0.0.2", n->port, 0);
        if (n->hole >= 0) {
            fill_hole(n);
            return;
        }
        close(n->good);
    }
    ck_abort_msg("no port free on both 127.0.0.1 and 127.0.0.2");
}

static void net_teardown(net_t *n)
{
    for (int i = 0; i < n->nfillers; i++)
        close(n->fillers[i]);
    if (n->hole >= 0)
        close(n->hole);
    close(n->good);
}

/* ---- loops with the fake resolver ---------------------------------------------- */

/* The directory of the test-only plugins: AEV_TEST_PLUGIN_DIR, else tests/plugins in the
 * build tree, beside this executable's directory (tests/conformance). */
static void plugin_dir(char *buf, size_t size)
{
    const char *env = getenv("AEV_TEST_PLUGIN_DIR");
    if (env && *env) {
        snprintf(buf, size, "%s", env);
        return;
    }
    char exe[PATH_MAX + 16];
    ssize_t len = readlink("/proc/self/exe", exe, PATH_MAX - 1);
    ck_assert_int_gt(len, 0);
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    ck_assert_ptr_nonnull(slash);
    strcpy(slash, "/../plugins");
    ck_assert_uint_lt(strlen(exe), size);
    strcpy(buf, exe);
}

/* A loop whose resolver is aev_dns_fake with this table ("name=addr,addr;..."). */
static aev_loop_t *fake_loop(const char *hosts)
{
    char dir[PATH_MAX], conf[] = "/tmp/aev-test-connect-XXXXXX";
    plugin_dir(dir, sizeof dir);
    int fd = mkstemp(conf);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[plugins]\npath = %s\n[dns.fake]\nhosts = %s\n", dir, hosts);
    fclose(f);
    aev_loop_t *loop = NULL;
    int rc = aev_loop_new(&(aev_loop_options_t){.dns = "fake", .config_file = conf}, &loop);
    unlink(conf);
    ck_assert_msg(rc == 0, "aev_loop_new: %s: %s", aev_err_name(rc), aev_error_detail());
    return loop;
}

/* ---- the client's protocol ------------------------------------------------------- */

typedef struct client {
    aev_protocol_t proto;
    int made, lost;
} client_t;

static int client_made(aev_protocol_t *p, aev_transport_t *t)
{
    (void)t;
    ((client_t *)p->userdata)->made++;
    return 0;
}

static int client_lost(aev_protocol_t *p, int error)
{
    client_t *c = p->userdata;
    (void)error;
    c->lost++;
    aev_loop_stop(aev_loop_get_running());
    return 0;
}

static aev_protocol_t *client_factory(void *userdata)
{
    client_t *c = userdata;
    c->proto.userdata = c;
    c->proto.connection_made = client_made;
    c->proto.connection_lost = client_lost;
    return &c->proto;
}

static int cancel_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_future_cancel(arg, "test guard");
    return 0;
}

/* create_connection, run to its end (cancelled after guard seconds): its outcome, with the
 * time it took in *elapsed. */
static int connect_run(aev_loop_t *loop, client_t *c, const char *host, int port,
                       const aev_connection_options_t *o, aev_future_t **fut, double *elapsed, double guard)
{
    double t0 = tu_now();
    int rc = aev_loop_create_connection(loop, client_factory, c, host, port, o, fut);
    ck_assert_msg(rc == 0, "create_connection: %s: %s", aev_err_name(rc), aev_error_detail());
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, guard, cancel_cb, *fut, &h), 0);
    rc = aev_loop_run_until_complete(loop, *fut);
    aev_handle_cancel(h);
    aev_handle_unref(h);
    if (elapsed)
        *elapsed = tu_now() - t0;
    return rc;
}

/* The transport's peer address as "ip" (IPv4). */
static void peer_ip(aev_future_t *fut, char *buf, size_t size)
{
    void *t = NULL;
    ck_assert_int_eq(aev_future_result(fut, &t), 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    ck_assert_int_eq(aev_transport_get_peername(t, (struct sockaddr *)&sin, &len), 0);
    ck_assert_int_eq(sin.sin_family, AF_INET);
    ck_assert_ptr_nonnull(inet_ntop(AF_INET, &sin.sin_addr, buf, (socklen_t)size));
}

/* Closes the connection of fut and runs the loop until connection_lost. */
static void close_connection(aev_loop_t *loop, aev_future_t *fut, client_t *c)
{
    void *t = NULL;
    ck_assert_int_eq(aev_future_result(fut, &t), 0);
    aev_transport_close(t);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(c->lost, 1);
    aev_future_unref(fut);
}

/* "('ip', port)" as the attempts of a detail name them. */
static const char *attempt_name(char *buf, size_t size, const char *ip, int port)
{
    snprintf(buf, size, "('%s', %d)", ip, port);
    return buf;
}

/* Asserts that detail names the attempts ips[0..n) in this order, and nothing else. */
static void assert_attempts(const char *detail, int port, const char *const *ips, int n)
{
    ck_assert_ptr_nonnull(detail);
    const char *pos = detail;
    char name[96];
    for (int i = 0; i < n; i++) {
        const char *at = strstr(pos, attempt_name(name, sizeof name, ips[i], port));
        ck_assert_msg(at, "attempt %d %s not found in order in \"%s\"", i, name, detail);
        pos = at + strlen(name);
    }
    ck_assert_msg(!strstr(pos, "('"), "more attempts than expected in \"%s\"", detail);
}

/* ---- one address at a time --------------------------------------------------------- */

/* Without happy_eyeballs_delay the addresses are tried one after the other: two refuse, the
 * third connects (a socket number freed by a failed attempt is reused by the next one). */
START_TEST(test_sequential_tries_each)
{
    net_t n;
    net_setup(&n, 0);
    aev_loop_t *loop = fake_loop("seq.test=127.0.0.3,127.0.0.4,127.0.0.1");
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = NULL;
    int rc = connect_run(loop, &c, "seq.test", n.port, NULL, &fut, NULL, 5.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    char ip[INET_ADDRSTRLEN];
    peer_ip(fut, ip, sizeof ip);
    ck_assert_str_eq(ip, "127.0.0.1");
    ck_assert_int_eq(count_fds(), before + 1);
    close_connection(loop, fut, &c);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* ---- Happy Eyeballs ------------------------------------------------------------------- */

/* The first address never answers: the second starts after the delay and wins; the black
 * hole's socket is closed. */
START_TEST(test_he_second_wins_after_delay)
{
    net_t n;
    net_setup(&n, 1);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.2,127.0.0.1");
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = NULL;
    double elapsed = 0;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.2};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, &elapsed, 5.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    ck_assert_msg(elapsed >= 0.2 && elapsed < 1.0, "elapsed %.3f s", elapsed);
    ck_assert_int_eq(c.made, 1);
    char ip[INET_ADDRSTRLEN];
    peer_ip(fut, ip, sizeof ip);
    ck_assert_str_eq(ip, "127.0.0.1");
    ck_assert_int_eq(count_fds(), before + 1); /* the transport's socket only */
    close_connection(loop, fut, &c);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* Each attempt's delay starts when it starts: two black holes, then the good address, which
 * starts after two delays. */
START_TEST(test_he_staggered_starts)
{
    net_t n;
    net_setup(&n, 1);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.2,127.0.0.2,127.0.0.1");
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = NULL;
    double elapsed = 0;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.1};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, &elapsed, 5.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    ck_assert_msg(elapsed >= 0.2 && elapsed < 1.0, "elapsed %.3f s", elapsed);
    ck_assert_int_eq(count_fds(), before + 1);
    close_connection(loop, fut, &c);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* An attempt that fails starts the next one at once, without waiting for the delay. */
START_TEST(test_he_failure_starts_next_at_once)
{
    net_t n;
    net_setup(&n, 0);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.3,127.0.0.4,127.0.0.1");
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = NULL;
    double elapsed = 0;
    aev_connection_options_t o = {.happy_eyeballs_delay = 2.0};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, &elapsed, 10.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    ck_assert_msg(elapsed < 1.0, "elapsed %.3f s: the failures did not start the next attempt", elapsed);
    char ip[INET_ADDRSTRLEN];
    peer_ip(fut, ip, sizeof ip);
    ck_assert_str_eq(ip, "127.0.0.1");
    ck_assert_int_eq(count_fds(), before + 1);
    close_connection(loop, fut, &c);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* The first address connects before the delay: no other attempt starts, nothing is left. */
START_TEST(test_he_first_wins)
{
    net_t n;
    net_setup(&n, 1);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.1,127.0.0.2");
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = NULL;
    double elapsed = 0;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.5};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, &elapsed, 5.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    ck_assert_msg(elapsed < 0.5, "elapsed %.3f s", elapsed);
    char ip[INET_ADDRSTRLEN];
    peer_ip(fut, ip, sizeof ip);
    ck_assert_str_eq(ip, "127.0.0.1");
    ck_assert_int_eq(count_fds(), before + 1);
    close_connection(loop, fut, &c);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* A numeric host through the system resolver races too (one address: it just connects). */
START_TEST(test_he_numeric_host)
{
    net_t n;
    net_setup(&n, 0);
    aev_loop_t *loop = tu_loop_new();
    client_t c = {0};
    aev_future_t *fut = NULL;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.25};
    int rc = connect_run(loop, &c, "127.0.0.1", n.port, &o, &fut, NULL, 5.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    ck_assert_int_eq(c.made, 1);
    close_connection(loop, fut, &c);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* local_addr binds every attempt of the race. */
START_TEST(test_he_local_addr)
{
    net_t n;
    net_setup(&n, 1);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.2,127.0.0.1");
    client_t c = {0};
    aev_future_t *fut = NULL;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.05, .local_host = "127.0.0.1"};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, NULL, 5.0);
    ck_assert_msg(rc == 0, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    void *t = NULL;
    ck_assert_int_eq(aev_future_result(fut, &t), 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    ck_assert_int_eq(aev_transport_get_sockname(t, (struct sockaddr *)&sin, &len), 0);
    ck_assert_uint_eq(ntohl(sin.sin_addr.s_addr), INADDR_LOOPBACK);
    close_connection(loop, fut, &c);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* Every attempt fails: the first error; the detail names every attempt, in order. */
static void all_fail(int all_errors)
{
    net_t n;
    net_setup(&n, 0);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.3,127.0.0.4,127.0.0.5");
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = NULL;
    double elapsed = 0;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.5, .all_errors = all_errors};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, &elapsed, 5.0);
    ck_assert_msg(rc == -ECONNREFUSED, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    ck_assert_msg(elapsed < 0.5, "elapsed %.3f s", elapsed);
    const char *detail = aev_future_error_detail(fut);
    ck_assert_ptr_nonnull(detail);
    ck_assert_msg(strstr(detail, all_errors ? "every attempt failed" : "connect failed"), "%s", detail);
    static const char *const ips[] = {"127.0.0.3", "127.0.0.4", "127.0.0.5"};
    assert_attempts(detail, n.port, ips, 3);
    ck_assert_ptr_nonnull(strstr(detail, aev_strerror(-ECONNREFUSED)));
    ck_assert_int_eq(c.made, 0);
    aev_future_unref(fut);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}

START_TEST(test_he_all_fail)
{
    all_fail(0);
}
END_TEST

START_TEST(test_he_all_fail_all_errors)
{
    all_fail(1);
}
END_TEST

typedef struct probe {
    int fds;
    aev_future_t *fut;
} probe_t;

static int probe_fds_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    ((probe_t *)arg)->fds = count_fds();
    return 0;
}

/* Cancelling create_connection mid-race stops every attempt and closes every socket. */
START_TEST(test_he_cancel_mid_race)
{
    net_t n;
    net_setup(&n, 1);
    aev_loop_t *loop = fake_loop("he.test=127.0.0.2,127.0.0.2,127.0.0.2");
    client_t c = {0};
    int before = count_fds();
    probe_t probe = {0};
    ck_assert_int_eq(aev_loop_call_later(loop, 0.3, probe_fds_cb, &probe, NULL), 0);
    aev_future_t *fut = NULL;
    double elapsed = 0;
    aev_connection_options_t o = {.happy_eyeballs_delay = 0.05};
    int rc = connect_run(loop, &c, "he.test", n.port, &o, &fut, &elapsed, 0.4);
    ck_assert_int_eq(rc, AEV_ECANCELLED);
    ck_assert(aev_future_cancelled(fut));
    ck_assert_msg(elapsed < 1.0, "elapsed %.3f s", elapsed);
    ck_assert_int_eq(probe.fds, before + 3); /* all three attempts were running */
    ck_assert_int_eq(count_fds(), before);   /* and all three are closed */
    ck_assert_int_eq(c.made, 0);
    aev_future_unref(fut);
    tu_run_once(loop); /* the cancelled connects' own clean-up */
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
    net_teardown(&n);
}
END_TEST

/* ---- interleave ---------------------------------------------------------------------- */

/* The order of the attempts for a table of three IPv4 and two IPv6 addresses, all refusing,
 * read from the detail. */
static void check_order(double delay, int interleave, const char *const *expected)
{
    net_t n;
    net_setup(&n, 0);
    aev_loop_t *loop = fake_loop("mix.test=127.0.0.3,127.0.0.4,127.0.0.5,::1,::1");
    client_t c = {0};
    aev_future_t *fut = NULL;
    aev_connection_options_t o = {.happy_eyeballs_delay = delay, .interleave = interleave};
    int rc = connect_run(loop, &c, "mix.test", n.port, &o, &fut, NULL, 5.0);
    ck_assert_msg(rc == -ECONNREFUSED, "%s: %s", aev_err_name(rc), aev_future_error_detail(fut));
    assert_attempts(aev_future_error_detail(fut), n.port, expected, 5);
    aev_future_unref(fut);
    tu_loop_free(loop);
    net_teardown(&n);
}

START_TEST(test_interleave_order)
{
    static const char *const as_given[] = {"127.0.0.3", "127.0.0.4", "127.0.0.5", "::1", "::1"};
    static const char *const one[] = {"127.0.0.3", "::1", "127.0.0.4", "::1", "127.0.0.5"};
    static const char *const two[] = {"127.0.0.3", "127.0.0.4", "::1", "127.0.0.5", "::1"};
    check_order(0, 0, as_given);   /* no reordering by default */
    check_order(0, 1, one);        /* interleave alone reorders the sequential tries */
    check_order(0, 2, two);        /* First Address Family Count 2 */
    check_order(0, 9, as_given);   /* more than the family has */
    check_order(0.5, 0, one);      /* happy_eyeballs_delay implies interleave 1 */
    check_order(0.5, 2, two);
}
END_TEST

/* ---- errors --------------------------------------------------------------------------- */

START_TEST(test_bad_delay_and_interleave)
{
    aev_loop_t *loop = tu_loop_new();
    client_t c = {0};
    int before = count_fds();
    aev_future_t *fut = (aev_future_t *)&c;
    aev_connection_options_t o = {.happy_eyeballs_delay = -0.25};
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 80, &o, &fut), -EINVAL);
    ck_assert_ptr_null(fut);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "happy_eyeballs_delay"));
    o.happy_eyeballs_delay = NAN;
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 80, &o, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "happy_eyeballs_delay"));
    o = (aev_connection_options_t){.interleave = -1};
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 80, &o, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "interleave"));
    ck_assert_ptr_null(fut);
    ck_assert_int_eq(count_fds(), before);
    tu_loop_free(loop);
}
END_TEST

/* A name the resolver does not know: its error and detail; no socket was made. */
START_TEST(test_unknown_host)
{
    aev_loop_t *loop = fake_loop("he.test=127.0.0.1");
    for (int he = 0; he < 2; he++) {
        client_t c = {0};
        int before = count_fds();
        aev_future_t *fut = NULL;
        aev_connection_options_t o = {.happy_eyeballs_delay = he ? 0.1 : 0};
        int rc = connect_run(loop, &c, "nowhere.test", 80, &o, &fut, NULL, 5.0);
        ck_assert_int_eq(rc, AEV_EDNS_NONAME);
        const char *detail = aev_future_error_detail(fut);
        ck_assert_ptr_nonnull(detail);
        ck_assert_msg(strstr(detail, "nowhere.test"), "%s", detail);
        aev_future_unref(fut);
        ck_assert_int_eq(count_fds(), before);
    }
    tu_loop_free(loop);
}
END_TEST

/* Bad arguments are refused at once with a detail; no socket is made, sock is not taken. */
START_TEST(test_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    client_t c = {0};
    int sv[2];
    tu_socketpair(sv);
    int before = count_fds();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", -1, NULL, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "port"));
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 65536, NULL, &fut),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "65536"));
    aev_connection_options_t o = {.family = AF_UNIX};
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 80, &o, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "family"));
    o = (aev_connection_options_t){.family = 12345};
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 80, &o, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "12345"));
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, NULL, 80, NULL, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "host"));
    o = (aev_connection_options_t){.use_sock = 1, .sock = sv[0]};
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, "127.0.0.1", 80, &o, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "sock"));
    o = (aev_connection_options_t){.use_sock = 1, .sock = sv[0], .happy_eyeballs_delay = 0.25};
    ck_assert_int_eq(aev_loop_create_connection(loop, client_factory, &c, NULL, 0, &o, &fut), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "happy_eyeballs_delay"));
    ck_assert_ptr_null(fut);
    ck_assert(tu_fd_is_open(sv[0])); /* refused: still the caller's */
    ck_assert_int_eq(count_fds(), before);
    ck_assert_int_eq(c.made, 0);
    close(sv[0]);
    close(sv[1]);
    tu_loop_free(loop);
}
END_TEST

static Suite *connect_suite(void)
{
    Suite *s = suite_create("connect");
    TU_ADD(s, test_sequential_tries_each);
    TU_ADD(s, test_he_second_wins_after_delay);
    TU_ADD(s, test_he_staggered_starts);
    TU_ADD(s, test_he_failure_starts_next_at_once);
    TU_ADD(s, test_he_first_wins);
    TU_ADD(s, test_he_numeric_host);
    TU_ADD(s, test_he_local_addr);
    TU_ADD(s, test_he_all_fail);
    TU_ADD(s, test_he_all_fail_all_errors);
    TU_ADD(s, test_he_cancel_mid_race);
    TU_ADD(s, test_interleave_order);
    TU_ADD(s, test_bad_delay_and_interleave);
    TU_ADD(s, test_unknown_host);
    TU_ADD(s, test_bad_input);
    return s;
}

TU_MAIN(connect_suite)
