/* libaev conformance tests - DNS: loop.getaddrinfo and loop.getnameinfo
 * (the "system" resolver plugin, served by the default executor).
 *
 * The test machine has no network and no DNS server: the tests use
 * "localhost" (from /etc/hosts), numeric hosts, /etc/services, AI_NUMERICHOST
 * for a deterministic "name not known", and compare with what the system's own
 * resolver answers synchronously rather than with hard-coded results. */
#include "test_util.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

/* Guard for one lookup: generous for valgrind on a loaded machine. */
#define DNS_LIMIT 20.0

/* Runs the loop until fut is done, or the guard stops it (a test failure). */
static int run_until(aev_loop_t *loop, aev_future_t *fut)
{
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_later(loop, DNS_LIMIT, tu_stop_cb, NULL, &h), 0);
    int rc = aev_loop_run_until_complete(loop, fut);
    aev_handle_cancel(h);
    aev_handle_unref(h);
    ck_assert_msg(rc != AEV_ESTOPPED, "the lookup did not finish within %.0f s", DNS_LIMIT);
    return rc;
}

/* getaddrinfo through the loop, run to completion; the future is returned (caller unrefs). */
static aev_future_t *gai(aev_loop_t *loop, const char *host, const char *service, int family,
                         int type, int flags, int *rc_out)
{
    aev_getaddrinfo_options_t o = {.family = family, .type = type, .flags = flags};
    aev_future_t *f = NULL;
    int rc = aev_loop_getaddrinfo(loop, host, service, &o, &f);
    ck_assert_msg(rc == 0, "getaddrinfo(%s, %s) refused: %s: %s", host ? host : "NULL",
                  service ? service : "NULL", aev_err_name(rc), aev_error_detail());
    ck_assert_ptr_nonnull(f);
    *rc_out = run_until(loop, f);
    return f;
}

static struct addrinfo *gai_list(aev_future_t *f)
{
    void *v = NULL;
    int rc = aev_future_result(f, &v);
    ck_assert_msg(rc == 0, "lookup failed: %s: %s", aev_err_name(rc),
                  aev_future_error_detail(f) ? aev_future_error_detail(f) : "");
    ck_assert_ptr_nonnull(v);
    return v;
}

static int ai_port(const struct addrinfo *ai)
{
    if (ai->ai_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ai->ai_addr)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
}

static const char *ai_host(const struct addrinfo *ai, char *buf, size_t size)
{
    const void *a = ai->ai_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ai->ai_addr)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    ck_assert_ptr_nonnull(inet_ntop(ai->ai_family, a, buf, (socklen_t)size));
    return buf;
}

/* ---- getaddrinfo: results -------------------------------------------------------------- */

START_TEST(test_numeric_ipv4)
{
    aev_loop_t *loop = tu_loop_new();
    int rc;
    aev_future_t *f = gai(loop, "127.0.0.1", "8080", 0, SOCK_STREAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    struct addrinfo *ai = gai_list(f);
    int n = 0;
    char buf[64];
    for (; ai; ai = ai->ai_next, n++) {
        ck_assert_int_eq(ai->ai_family, AF_INET);
        ck_assert_int_eq(ai->ai_socktype, SOCK_STREAM);
        ck_assert_int_eq(ai->ai_protocol, IPPROTO_TCP);
        ck_assert_int_eq(ai->ai_addrlen, sizeof(struct sockaddr_in));
        ck_assert_str_eq(ai_host(ai, buf, sizeof buf), "127.0.0.1");
        ck_assert_int_eq(ai_port(ai), 8080);
    }
    ck_assert_int_eq(n, 1);
    aev_future_unref(f);
    /* type 0: one entry per socket type, all for the same address */
    f = gai(loop, "127.0.0.1", "9", 0, 0, 0, &rc);
    ck_assert_int_eq(rc, 0);
    int stream = 0, dgram = 0;
    for (ai = gai_list(f); ai; ai = ai->ai_next) {
        ck_assert_int_eq(ai_port(ai), 9);
        stream += ai->ai_socktype == SOCK_STREAM;
        dgram += ai->ai_socktype == SOCK_DGRAM;
    }
    ck_assert_int_eq(stream, 1);
    ck_assert_int_eq(dgram, 1);
    aev_future_unref(f);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "dns"), "system");
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_numeric_ipv6)
{
    aev_loop_t *loop = tu_loop_new();
    int rc;
    aev_future_t *f = gai(loop, "::1", "443", AF_INET6, SOCK_STREAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    struct addrinfo *ai = gai_list(f);
    char buf[64];
    ck_assert_int_eq(ai->ai_family, AF_INET6);
    ck_assert_int_eq(ai->ai_addrlen, sizeof(struct sockaddr_in6));
    ck_assert_str_eq(ai_host(ai, buf, sizeof buf), "::1");
    ck_assert_int_eq(ai_port(ai), 443);
    ck_assert_ptr_null(ai->ai_next);
    aev_future_unref(f);
    /* a numeric IPv4 host asked for as IPv6 has no address of that family */
    f = gai(loop, "127.0.0.1", "80", AF_INET6, SOCK_STREAM, 0, &rc);
    ck_assert_msg(rc == AEV_EDNS_ADDRFAMILY || rc == AEV_EDNS_NONAME || rc == AEV_EDNS_FAMILY,
                  "127.0.0.1 as AF_INET6: %s", aev_err_name(rc));
    ck_assert_ptr_nonnull(aev_future_error_detail(f));
    ck_assert_ptr_nonnull(strstr(aev_future_error_detail(f), "127.0.0.1"));
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

/* What the system resolver says for host, synchronously: the set of IPv4 addresses. */
static int sys_has(const char *host, int family, const char *addr)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    if (getaddrinfo(host, "80", &hints, &list) != 0)
        return 0;
    int found = 0;
    char buf[64];
    for (struct addrinfo *ai = list; ai; ai = ai->ai_next)
        if (strcmp(ai_host(ai, buf, sizeof buf), addr) == 0)
            found = 1;
    freeaddrinfo(list);
    return found;
}

START_TEST(test_localhost_and_family_filter)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_ptr_null(aev_loop_plugin_name(loop, "dns")); /* loaded on first use */
    int rc;
    aev_future_t *f = gai(loop, "localhost", "80", AF_INET, SOCK_STREAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "dns"), "system");
    int n = 0;
    char buf[64];
    for (struct addrinfo *ai = gai_list(f); ai; ai = ai->ai_next, n++) {
        ck_assert_int_eq(ai->ai_family, AF_INET);
        ck_assert_int_eq(ai_port(ai), 80);
        ai_host(ai, buf, sizeof buf);
        ck_assert_msg(strncmp(buf, "127.", 4) == 0, "localhost is %s", buf);
        ck_assert(sys_has("localhost", AF_INET, buf));
    }
    ck_assert_int_gt(n, 0);
    aev_future_unref(f);

    /* AF_INET6: whatever the system says, only IPv6 addresses come back */
    f = gai(loop, "localhost", "80", AF_INET6, SOCK_STREAM, 0, &rc);
    if (rc == 0) {
        for (struct addrinfo *ai = gai_list(f); ai; ai = ai->ai_next) {
            ck_assert_int_eq(ai->ai_family, AF_INET6);
            ck_assert(sys_has("localhost", AF_INET6, ai_host(ai, buf, sizeof buf)));
        }
    } else {
        ck_assert_msg(rc <= AEV_EDNS_NONAME && rc >= AEV_EDNS_NODATA, "localhost AF_INET6: %s",
                      aev_err_name(rc));
        ck_assert(!sys_has("localhost", AF_INET6, "::1"));
    }
    aev_future_unref(f);

    /* AF_UNSPEC: the system's own list, IPv4 included */
    f = gai(loop, "localhost", "80", AF_UNSPEC, SOCK_STREAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    int v4 = 0;
    for (struct addrinfo *ai = gai_list(f); ai; ai = ai->ai_next) {
        ck_assert(ai->ai_family == AF_INET || ai->ai_family == AF_INET6);
        ck_assert(sys_has("localhost", AF_UNSPEC, ai_host(ai, buf, sizeof buf)));
        v4 += ai->ai_family == AF_INET;
    }
    ck_assert_int_gt(v4, 0);
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_service_names)
{
    aev_loop_t *loop = tu_loop_new();
    struct servent *se = getservbyname("http", "tcp");
    int expect = se ? ntohs((uint16_t)se->s_port) : -1;
    int rc;
    aev_future_t *f = gai(loop, "127.0.0.1", "http", AF_INET, SOCK_STREAM, 0, &rc);
    if (expect > 0) {
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(ai_port(gai_list(f)), expect);
    } else {
        ck_assert_int_eq(rc, AEV_EDNS_SERVICE);
    }
    aev_future_unref(f);
    /* an unknown service name: EAI_SERVICE (or NONAME on some libcs), with gai_strerror text */
    f = gai(loop, "localhost", "no-such-service-aev", AF_INET, SOCK_STREAM, 0, &rc);
    ck_assert_msg(rc == AEV_EDNS_SERVICE || rc == AEV_EDNS_NONAME, "unknown service: %s",
                  aev_err_name(rc));
    const char *d = aev_future_error_detail(f);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(strstr(d, "no-such-service-aev") && strstr(d, gai_strerror(rc == AEV_EDNS_SERVICE
                                                                                 ? EAI_SERVICE
                                                                                 : EAI_NONAME)),
                  "detail: %s", d);
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_passive_null_host)
{
    aev_loop_t *loop = tu_loop_new();
    int rc;
    char buf[64];
    aev_future_t *f = gai(loop, NULL, "8080", AF_INET, SOCK_STREAM, AI_PASSIVE, &rc);
    ck_assert_int_eq(rc, 0);
    struct addrinfo *ai = gai_list(f);
    ck_assert_str_eq(ai_host(ai, buf, sizeof buf), "0.0.0.0");
    ck_assert_int_eq(ai_port(ai), 8080);
    aev_future_unref(f);
    f = gai(loop, NULL, "8080", AF_INET6, SOCK_STREAM, AI_PASSIVE, &rc);
    ck_assert_int_eq(rc, 0);
    ai = gai_list(f);
    ck_assert_str_eq(ai_host(ai, buf, sizeof buf), "::");
    aev_future_unref(f);
    /* without AI_PASSIVE a NULL host is loopback */
    f = gai(loop, NULL, "8080", AF_INET, SOCK_STREAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(ai_host(gai_list(f), buf, sizeof buf), "127.0.0.1");
    aev_future_unref(f);
    /* a host with no service: port 0 */
    f = gai(loop, "127.0.0.1", NULL, AF_INET, SOCK_DGRAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(ai_port(gai_list(f)), 0);
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

/* ---- getaddrinfo: errors ------------------------------------------------------------- */

START_TEST(test_numerichost_noname)
{
    aev_loop_t *loop = tu_loop_new();
    int rc;
    aev_future_t *f = gai(loop, "localhost", "80", 0, SOCK_STREAM, AI_NUMERICHOST, &rc);
    ck_assert_int_eq(rc, AEV_EDNS_NONAME);
    ck_assert_int_eq(aev_future_error(f), AEV_EDNS_NONAME);
    const char *d = aev_future_error_detail(f);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(strstr(d, "localhost") && strstr(d, gai_strerror(EAI_NONAME)), "detail: %s", d);
    ck_assert_str_eq(aev_err_name(AEV_EDNS_NONAME), "AEV_EDNS_NONAME");
    ck_assert_str_eq(aev_strerror(AEV_EDNS_NONAME), "name or service not known");
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_invalid_tld)
{
    /* RFC 6761: ".invalid" never resolves. Without a network the lookup fails as well
     * (NXDOMAIN, or no server to ask): any resolver error, never a result. The trailing
     * dot makes the name absolute: no search domains are tried. */
    aev_loop_t *loop = tu_loop_new();
    int rc;
    aev_future_t *f = gai(loop, "no-such-host.invalid.", "80", AF_INET, SOCK_STREAM, 0, &rc);
    ck_assert_msg(rc <= AEV_EDNS_NONAME && rc >= AEV_EDNS_NODATA, "no-such-host.invalid: %s (%s)",
                  aev_err_name(rc), aev_future_error_detail(f) ? aev_future_error_detail(f) : "");
    ck_assert_ptr_nonnull(strstr(aev_future_error_detail(f), "no-such-host.invalid"));
    aev_future_unref(f);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_bad_input)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *f = (aev_future_t *)&f;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, NULL, NULL, NULL, &f), -EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "host"));
    aev_getaddrinfo_options_t o = {.family = AF_UNIX};
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", &o, &f), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "family"));
    o.family = -1;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", &o, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "70000", NULL, &f), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "70000"));
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "123456789012345678901", NULL, &f),
                     -EINVAL);
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", NULL, NULL), -EINVAL);
    ck_assert_int_eq(aev_loop_getaddrinfo(NULL, "localhost", "80", NULL, &f), -EINVAL);
    ck_assert_ptr_null(f);
    /* nothing was started: the resolver is not even loaded */
    ck_assert_ptr_null(aev_loop_plugin_name(loop, "dns"));
    /* 65535 and leading zeros are fine */
    int rc;
    f = gai(loop, "127.0.0.1", "0065535", AF_INET, SOCK_STREAM, 0, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(ai_port(gai_list(f)), 65535);
    aev_future_unref(f);
    /* bad flags and socket types are the resolver's errors */
    f = gai(loop, "127.0.0.1", "80", AF_INET, 0, 0x7fff0000, &rc);
    ck_assert_int_eq(rc, AEV_EDNS_BADFLAGS);
    aev_future_unref(f);
    f = gai(loop, "127.0.0.1", "80", AF_INET, 12345, 0, &rc);
    ck_assert_int_eq(rc, AEV_EDNS_SOCKTYPE);
    aev_future_unref(f);

    /* getnameinfo */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(aev_loop_getnameinfo(loop, NULL, sizeof sin, 0, &f), -EINVAL);
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&sin, sizeof sin - 1, 0, &f),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "AF_INET"));
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&sin, 1, 0, &f), -EINVAL);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&sin6, sizeof sin, 0, &f),
                     -EINVAL);
    struct sockaddr_storage ss = {.ss_family = AF_UNIX};
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&ss, sizeof ss, 0, &f), -EINVAL);
    ck_assert_ptr_nonnull(strstr(aev_error_detail(), "family"));
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&sin, sizeof sin, 0, NULL),
                     -EINVAL);
    ck_assert_ptr_null(f);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_closed_loop)
{
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_loop_close(loop), 0);
    aev_future_t *f = NULL;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "127.0.0.1", "80", NULL, &f), AEV_ECLOSED);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&sin, sizeof sin, 0, &f),
                     AEV_ECLOSED);
    ck_assert_ptr_null(f);
    aev_loop_free(loop);
}
END_TEST

START_TEST(test_missing_plugin)
{
    aev_loop_options_t lo = {.dns = "nosuchresolver"};
    aev_loop_t *loop = NULL;
    ck_assert_int_eq(aev_loop_new(&lo, &loop), 0); /* loaded lazily: the loop is fine */
    aev_future_t *f = NULL;
    int rc = aev_loop_getaddrinfo(loop, "127.0.0.1", "80", NULL, &f);
    ck_assert_int_eq(rc, AEV_EPLUGIN_NOT_FOUND);
    ck_assert_ptr_null(f);
    ck_assert_msg(strstr(aev_error_detail(), "nosuchresolver"), "detail: %s", aev_error_detail());
    ck_assert_ptr_null(aev_loop_plugin_name(loop, "dns"));
    /* the loop still works */
    int n = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &n, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(n, 1);
    tu_loop_free(loop);
}
END_TEST

/* ---- getnameinfo ----------------------------------------------------------------------- */

static aev_nameinfo_t *gni(aev_loop_t *loop, const struct sockaddr *sa, socklen_t len, int flags,
                           aev_future_t **fout)
{
    aev_future_t *f = NULL;
    int rc = aev_loop_getnameinfo(loop, sa, len, flags, &f);
    ck_assert_msg(rc == 0, "getnameinfo refused: %s: %s", aev_err_name(rc), aev_error_detail());
    rc = run_until(loop, f);
    ck_assert_msg(rc == 0, "getnameinfo failed: %s: %s", aev_err_name(rc),
                  aev_future_error_detail(f) ? aev_future_error_detail(f) : "");
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(f, &v), 0);
    ck_assert_ptr_nonnull(v);
    *fout = f;
    return v;
}

START_TEST(test_getnameinfo)
{
    aev_loop_t *loop = tu_loop_new();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    aev_future_t *f = NULL;
    aev_nameinfo_t *ni = gni(loop, (struct sockaddr *)&sin, sizeof sin,
                             NI_NUMERICHOST | NI_NUMERICSERV, &f);
    ck_assert_str_eq(ni->host, "127.0.0.1");
    ck_assert_str_eq(ni->service, "80");
    aev_future_unref(f);

    /* with lookups: the same answer as the system's own getnameinfo */
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    ck_assert_int_eq(getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, serv,
                                 sizeof serv, 0),
                     0);
    ni = gni(loop, (struct sockaddr *)&sin, sizeof sin, 0, &f);
    ck_assert_str_eq(ni->host, host);
    ck_assert_str_eq(ni->service, serv);
    struct servent *se = getservbyport(htons(80), "tcp");
    if (se)
        ck_assert_str_eq(ni->service, se->s_name);
    aev_future_unref(f);

    /* IPv6, numeric host, service looked up */
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    sin6.sin6_addr = in6addr_loopback;
    ck_assert_int_eq(getnameinfo((struct sockaddr *)&sin6, sizeof sin6, host, sizeof host, serv,
                                 sizeof serv, NI_NUMERICHOST | NI_DGRAM),
                     0);
    ni = gni(loop, (struct sockaddr *)&sin6, sizeof sin6, NI_NUMERICHOST | NI_DGRAM, &f);
    ck_assert_str_eq(ni->host, "::1");
    ck_assert_str_eq(ni->service, serv);
    aev_future_unref(f);

    /* NI_NAMEREQD for an address nobody names fails with a DNS error */
    struct sockaddr_in odd = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "127.255.3.4", &odd.sin_addr);
    int sys = getnameinfo((struct sockaddr *)&odd, sizeof odd, host, sizeof host, NULL, 0,
                          NI_NAMEREQD);
    aev_future_t *g = NULL;
    ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&odd, sizeof odd, NI_NAMEREQD, &g),
                     0);
    int rc = run_until(loop, g);
    if (sys == 0) {
        ck_assert_int_eq(rc, 0);
    } else {
        ck_assert_msg(rc <= AEV_EDNS_NONAME && rc >= AEV_EDNS_NODATA, "NI_NAMEREQD: %s",
                      aev_err_name(rc));
        ck_assert_ptr_nonnull(strstr(aev_future_error_detail(g), "getnameinfo"));
    }
    aev_future_unref(g);
    tu_loop_free(loop);
}
END_TEST

/* ---- cancellation, concurrency, closing -------------------------------------------------- */

static int done_count_cb(aev_future_t *f, void *arg)
{
    (void)f;
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_cancel)
{
    aev_loop_t *loop = tu_loop_new();
    enum { N = 40 };
    aev_future_t *fs[N];
    int done = 0;
    for (int i = 0; i < N; i++) {
        aev_getaddrinfo_options_t o = {.family = AF_INET, .type = SOCK_STREAM};
        ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", &o, &fs[i]), 0);
        ck_assert_int_eq(aev_future_add_done_callback(fs[i], done_count_cb, &done), 0);
    }
    /* cancel every other one at once: cancelled now, whatever the worker is doing */
    for (int i = 0; i < N; i += 2) {
        ck_assert_int_eq(aev_future_cancel(fs[i], "not needed"), 1);
        ck_assert(aev_future_cancelled(fs[i]));
    }
    for (int i = 1; i < N; i += 2) {
        int rc = run_until(loop, fs[i]);
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(gai_list(fs[i])->ai_family, AF_INET);
    }
    /* every done callback ran (cancelled ones included), exactly once */
    for (int spin = 0; spin < 100 && done < N; spin++)
        tu_run_once(loop);
    ck_assert_int_eq(done, N);
    for (int i = 0; i < N; i += 2) {
        ck_assert(aev_future_cancelled(fs[i]));
        ck_assert_int_eq(aev_future_result(fs[i], NULL), AEV_ECANCELLED);
    }
    for (int i = 0; i < N; i++)
        aev_future_unref(fs[i]);
    tu_loop_free(loop); /* late answers of cancelled queries are freed (valgrind, ASan) */
}
END_TEST

/* A work function that blocks its worker until the pipe is readable. */
static int block_work(void *arg, aev_work_result_t *res)
{
    (void)res;
    char c;
    while (read(*(int *)arg, &c, 1) < 0 && errno == EINTR) {
    }
    return 0;
}

START_TEST(test_cancel_queued_never_runs)
{
    aev_loop_t *loop = tu_loop_new();
    aev_executor_options_t eo = {.max_workers = 1};
    aev_executor_t *ex = NULL;
    ck_assert_int_eq(aev_executor_new(&eo, &ex), 0);
    ck_assert_int_eq(aev_loop_set_default_executor(loop, ex), 0);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    aev_future_t *blocker = NULL;
    ck_assert_int_eq(aev_loop_run_in_executor(loop, NULL, block_work, &p[0], &blocker), 0);
    /* queued behind the blocker: the only worker is busy */
    aev_future_t *q = NULL, *r = NULL;
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "80", NULL, &q), 0);
    ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "81", NULL, &r), 0);
    ck_assert(!aev_future_done(q));
    ck_assert_int_eq(aev_future_cancel(q, NULL), 1);
    ck_assert(aev_future_cancelled(q));
    tu_run_once(loop);
    ck_assert(!aev_future_done(r));
    tu_write(p[1], "x");
    ck_assert_int_eq(run_until(loop, r), 0);
    ck_assert_int_eq(ai_port(gai_list(r)), 81);
    ck_assert_int_eq(run_until(loop, blocker), 0);
    ck_assert(aev_future_cancelled(q));
    aev_future_unref(q);
    aev_future_unref(r);
    aev_future_unref(blocker);
    close(p[0]);
    close(p[1]);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_many_concurrent)
{
    aev_loop_t *loop = tu_loop_new();
    enum { N = 200 };
    aev_future_t *fs[N];
    for (int i = 0; i < N; i++) {
        char port[16];
        snprintf(port, sizeof port, "%d", 1000 + i);
        aev_getaddrinfo_options_t o = {.family = AF_INET, .type = SOCK_STREAM};
        const char *host = i % 3 == 0 ? "127.0.0.1" : "localhost";
        ck_assert_int_eq(aev_loop_getaddrinfo(loop, host, port, &o, &fs[i]), 0);
    }
    aev_future_t *all = NULL;
    ck_assert_int_eq(aev_future_gather(loop, fs, N, 0, &all), 0);
    ck_assert_int_eq(run_until(loop, all), 0);
    for (int i = 0; i < N; i++) {
        struct addrinfo *ai = gai_list(fs[i]);
        ck_assert_int_eq(ai->ai_family, AF_INET);
        ck_assert_int_eq(ai_port(ai), 1000 + i);
        aev_future_unref(fs[i]);
    }
    aev_future_unref(all);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_close_in_flight)
{
    aev_loop_t *loop = tu_loop_new();
    enum { N = 30 };
    aev_future_t *fs[N];
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < N; i++) {
        if (i % 2)
            ck_assert_int_eq(aev_loop_getaddrinfo(loop, "localhost", "http", NULL, &fs[i]), 0);
        else
            ck_assert_int_eq(aev_loop_getnameinfo(loop, (struct sockaddr *)&sin, sizeof sin, 0, &fs[i]),
                             0);
    }
    ck_assert_str_eq(aev_loop_plugin_name(loop, "dns"), "system");
    /* close with every query in flight: no wait, no crash; answers arriving later are
     * freed by the workers; the futures stay as they were (pending) */
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "dns"), "system");
    for (int i = 0; i < N; i++)
        aev_future_unref(fs[i]);
    aev_loop_free(loop); /* joins the executor's threads */
}
END_TEST

static aev_protocol_t *no_protocol(void *userdata)
{
    (void)userdata;
    return NULL;
}

/* create_server and create_connection still resolving their names when the loop closes:
 * their futures stay pending, nothing leaks (the valgrind and ASan runs check that). */
START_TEST(test_close_during_server_lookup)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *srv = NULL, *conn = NULL;
    ck_assert_int_eq(aev_loop_create_server(loop, no_protocol, NULL, "localhost", 0, NULL, &srv), 0);
    ck_assert_int_eq(aev_loop_create_connection(loop, no_protocol, NULL, "localhost", 9, NULL, &conn), 0);
    ck_assert_int_eq(aev_future_done(srv), 0);
    ck_assert_int_eq(aev_loop_close(loop), 0);
    ck_assert_int_eq(aev_future_done(srv), 0);
    aev_future_unref(srv);
    aev_future_unref(conn);
    aev_loop_free(loop);
}
END_TEST

/* ---- from a task ------------------------------------------------------------------------- */

static int resolve_task(aev_future_t *self, void *arg)
{
    (void)arg;
    aev_loop_t *loop = aev_future_get_loop(self);
    aev_getaddrinfo_options_t o = {.family = AF_INET, .type = SOCK_STREAM};
    aev_future_t *f = NULL;
    int rc = aev_loop_getaddrinfo(loop, "localhost", "8000", &o, &f);
    if (rc < 0)
        return aev_task_fail(self, rc, "getaddrinfo refused");
    void *v = NULL;
    rc = aev_await(f, &v);
    int port = rc == 0 ? ai_port(v) : rc;
    aev_future_unref(f);
    return aev_task_return(self, (void *)(intptr_t)port, NULL);
}

START_TEST(test_await_in_task)
{
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *t = NULL;
    ck_assert_int_eq(aev_loop_create_task(loop, NULL, resolve_task, NULL, &t), 0);
    ck_assert_int_eq(run_until(loop, t), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_future_result(t, &v), 0);
    ck_assert_int_eq((int)(intptr_t)v, 8000);
    aev_future_unref(t);
    tu_loop_free(loop);
}
END_TEST

static Suite *dns_suite(void)
{
    Suite *s = suite_create("dns");
    TU_ADD(s, test_numeric_ipv4);
    TU_ADD(s, test_numeric_ipv6);
    TU_ADD(s, test_localhost_and_family_filter);
    TU_ADD(s, test_service_names);
    TU_ADD(s, test_passive_null_host);
    TU_ADD(s, test_numerichost_noname);
    TU_ADD(s, test_invalid_tld);
    TU_ADD(s, test_bad_input);
    TU_ADD(s, test_closed_loop);
    TU_ADD(s, test_missing_plugin);
    TU_ADD(s, test_getnameinfo);
    TU_ADD(s, test_cancel);
    TU_ADD(s, test_cancel_queued_never_runs);
    TU_ADD(s, test_many_concurrent);
    TU_ADD(s, test_close_in_flight);
    TU_ADD(s, test_close_during_server_lookup);
    TU_ADD(s, test_await_in_task);
    return s;
}

TU_MAIN(dns_suite)
