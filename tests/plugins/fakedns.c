/* libaev tests - aev_dns_fake, a resolver that answers from a table, so that
 * tests can give a host name several addresses (Happy Eyeballs) without a
 * network or /etc/hosts.
 *
 * The table: option "hosts" of section [dns.fake] in the config file, or, if
 * the option is not set, the environment variable AEV_DNS_FAKE_HOSTS. Its
 * syntax: entries separated by ';', each "name=addr,addr,..." with numeric
 * IPv4 or IPv6 addresses, in the order getaddrinfo returns them; spaces are
 * ignored. For example:
 *
 *     he.test=127.0.0.2,127.0.0.1; dual.test=127.0.0.3,::1
 *
 * getaddrinfo answers:
 *  - a name in the table: its addresses of the family asked (hints->ai_family),
 *    with the service's port, type hints->ai_socktype (SOCK_STREAM if 0),
 *    protocol hints->ai_protocol (the type's default if 0); none of that family:
 *    AEV_EDNS_ADDRFAMILY;
 *  - a numeric address: itself (so local_addr works), NULL: the loopback or, with
 *    AI_PASSIVE, the wildcard address;
 *  - any other name: AEV_EDNS_NONAME with the name in the detail; a service that
 *    is not a decimal port: AEV_EDNS_SERVICE.
 * The answer is delivered with call_soon, one iteration later, as a real
 * resolver's is never there at once; a query cancelled meanwhile gets nothing
 * and its answer is freed. getnameinfo answers numerically. A bad table (an
 * entry without '=', an address that is not numeric): create() fails with
 * -EINVAL and a detail naming the entry. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "aev/error.h"
#include "aev/plugin.h"

#define FD_MAX_ADDRS 16

/* One name of the table. */
typedef struct fd_entry {
    char *name;
    int naddrs;
    struct sockaddr_storage addrs[FD_MAX_ADDRS]; /* port 0 */
    socklen_t lens[FD_MAX_ADDRS];
} fd_entry_t;

/* A query whose answer waits for its call_soon. */
typedef struct fd_query {
    struct fd_query *prev, *next;
    aev_dns_resolver_t *r;
    aev_future_t *fut;
    aev_handle_t *handle;
    struct addrinfo *list; /* the answer, or NULL with err */
    int err;
    char detail[512];
} fd_query_t;

struct aev_dns_resolver {
    const aev_host_t *host;
    aev_loop_t *loop;
    fd_entry_t *entries;
    int nentries;
    fd_query_t *queries; /* answers not delivered yet */
};

/* ---- the table ------------------------------------------------------------------------ */

/* Copies s[0..len) without spaces into a new string. */
static char *strip(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t')
            *o++ = s[i];
    *o = '\0';
    return out;
}

/* Parses a numeric address into ss (port 0): 0, or -EINVAL. */
static int parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        *len = sizeof *in;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        *len = sizeof *in6;
        return 0;
    }
    return -EINVAL;
}

static void free_table(aev_dns_resolver_t *r)
{
    for (int i = 0; i < r->nentries; i++)
        free(r->entries[i].name);
    free(r->entries);
    r->entries = NULL;
    r->nentries = 0;
}

/* Parses one "name=addr,addr" entry (spaces already stripped) into e. */
static int parse_entry(const aev_host_t *host, char *text, fd_entry_t *e)
{
    memset(e, 0, sizeof *e);
    char *eq = strchr(text, '=');
    if (!eq || eq == text) {
        host->set_error_detail("dns.fake: hosts entry \"%s\" is not name=address,address...", text);
        return -EINVAL;
    }
    *eq = '\0';
    e->name = strdup(text);
    if (!e->name)
        return -ENOMEM;
    char *save = NULL;
    for (char *a = strtok_r(eq + 1, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        if (e->naddrs == FD_MAX_ADDRS) {
            host->set_error_detail("dns.fake: more than %d addresses for \"%s\"", FD_MAX_ADDRS, e->name);
            return -EINVAL;
        }
        if (parse_addr(a, &e->addrs[e->naddrs], &e->lens[e->naddrs]) < 0) {
            host->set_error_detail("dns.fake: \"%s\" (for \"%s\") is not a numeric IPv4 or IPv6 address", a,
                                   e->name);
            return -EINVAL;
        }
        e->naddrs++;
    }
    return 0;
}

static int parse_table(aev_dns_resolver_t *r, const char *table)
{
    for (const char *p = table; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *text = strip(p, len);
        if (!text)
            return -ENOMEM;
        int rc = 0;
        if (*text) {
            fd_entry_t *grown = realloc(r->entries, (size_t)(r->nentries + 1) * sizeof *grown);
            if (!grown)
                rc = -ENOMEM;
            else {
                r->entries = grown;
                rc = parse_entry(r->host, text, &r->entries[r->nentries]);
                r->nentries++; /* counted even on failure: its name is freed with the table */
            }
        }
        free(text);
        if (rc < 0)
            return rc;
        p += len;
        if (*p == ';')
            p++;
    }
    return 0;
}

static const fd_entry_t *find(const aev_dns_resolver_t *r, const char *name)
{
    for (int i = 0; i < r->nentries; i++)
        if (strcasecmp(r->entries[i].name, name) == 0)
            return &r->entries[i];
    return NULL;
}

/* ---- answers --------------------------------------------------------------------------- */

static void free_list(void *list)
{
    struct addrinfo *ai = list;
    while (ai) {
        struct addrinfo *next = ai->ai_next;
        free(ai->ai_canonname);
        free(ai); /* ai_addr lives in the same block */
        ai = next;
    }
}

/* Appends one address (with port) to the list whose last node is *tail. */
static int append(struct addrinfo **head, struct addrinfo **tail, const struct sockaddr_storage *ss,
                  socklen_t len, int port, const struct addrinfo *hints, const char *canon)
{
    struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_storage));
    if (!ai)
        return -ENOMEM;
    struct sockaddr_storage *copy = (struct sockaddr_storage *)(ai + 1);
    memcpy(copy, ss, len);
    if (copy->ss_family == AF_INET)
        ((struct sockaddr_in *)copy)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)copy)->sin6_port = htons((uint16_t)port);
    ai->ai_family = copy->ss_family;
    ai->ai_socktype = hints->ai_socktype ? hints->ai_socktype : SOCK_STREAM;
    ai->ai_protocol = hints->ai_protocol      ? hints->ai_protocol
                      : ai->ai_socktype == SOCK_DGRAM ? IPPROTO_UDP
                                                      : IPPROTO_TCP;
    ai->ai_addr = (struct sockaddr *)copy;
    ai->ai_addrlen = len;
    if (canon && !*head && (hints->ai_flags & AI_CANONNAME) && !(ai->ai_canonname = strdup(canon))) {
        free(ai);
        return -ENOMEM;
    }
    if (*tail)
        (*tail)->ai_next = ai;
    else
        *head = ai;
    *tail = ai;
    return 0;
}

static int family_ok(int want, int family)
{
    return want == AF_UNSPEC || want == family;
}

/* Computes the answer of one query into q (list, or err and detail). */
static void answer(aev_dns_resolver_t *r, const char *host, const char *service, const struct addrinfo *hints,
                   fd_query_t *q)
{
    char what[320];
    snprintf(what, sizeof what, "getaddrinfo(%s%.200s%s, %s%.64s%s)", host ? "\"" : "", host ? host : "NULL",
             host ? "\"" : "", service ? "\"" : "", service ? service : "NULL", service ? "\"" : "");
    long port = 0;
    if (service) {
        char *end = NULL;
        port = strtol(service, &end, 10);
        if (!*service || *end || port < 0 || port > 65535) {
            q->err = AEV_EDNS_SERVICE;
            snprintf(q->detail, sizeof q->detail, "%s: fake resolver: only decimal ports", what);
            return;
        }
    }
    fd_entry_t single;
    const fd_entry_t *e = NULL;
    memset(&single, 0, sizeof single);
    if (!host) { /* loopback, or the wildcard with AI_PASSIVE */
        int passive = (hints->ai_flags & AI_PASSIVE) != 0;
        single.naddrs = 0;
        if (family_ok(hints->ai_family, AF_INET6)) {
            parse_addr(passive ? "::" : "::1", &single.addrs[single.naddrs], &single.lens[single.naddrs]);
            single.naddrs++;
        }
        if (family_ok(hints->ai_family, AF_INET)) {
            parse_addr(passive ? "0.0.0.0" : "127.0.0.1", &single.addrs[single.naddrs],
                       &single.lens[single.naddrs]);
            single.naddrs++;
        }
        e = &single;
    } else if (parse_addr(host, &single.addrs[0], &single.lens[0]) == 0) {
        single.naddrs = 1;
        e = &single;
    } else if (!(hints->ai_flags & AI_NUMERICHOST)) {
        e = find(r, host);
    }
    if (!e) {
        q->err = AEV_EDNS_NONAME;
        snprintf(q->detail, sizeof q->detail, "%s: fake resolver: name not in its table", what);
        return;
    }
    struct addrinfo *head = NULL, *tail = NULL;
    for (int i = 0; i < e->naddrs; i++) {
        if (!family_ok(hints->ai_family, e->addrs[i].ss_family))
            continue;
        if (append(&head, &tail, &e->addrs[i], e->lens[i], (int)port, hints, host) < 0) {
            free_list(head);
            q->err = -ENOMEM;
            snprintf(q->detail, sizeof q->detail, "%s: out of memory", what);
            return;
        }
    }
    if (!head) {
        q->err = AEV_EDNS_ADDRFAMILY;
        snprintf(q->detail, sizeof q->detail, "%s: fake resolver: no address of family %d", what,
                 hints->ai_family);
        return;
    }
    q->list = head;
}

static void query_unlink(fd_query_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        q->r->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
}

static void query_free(fd_query_t *q)
{
    const aev_host_t *host = q->r->host;
    free_list(q->list);
    host->future_unref(q->fut);
    if (q->handle)
        host->handle_unref(q->handle);
    free(q);
}

/* call_soon: the answer arrives; a query cancelled meanwhile gets nothing. */
static int deliver(aev_loop_t *loop, void *arg)
{
    (void)loop;
    fd_query_t *q = arg;
    const aev_host_t *host = q->r->host;
    query_unlink(q);
    if (!host->future_done(q->fut)) {
        if (q->err < 0)
            host->future_set_error(q->fut, q->err, q->detail);
        else if (host->future_set_result(q->fut, q->list, free_list) == 0)
            q->list = NULL; /* the future's now */
    }
    query_free(q);
    return 0;
}

static int fake_getaddrinfo(aev_dns_resolver_t *r, const char *host, const char *service,
                            const struct addrinfo *hints, aev_future_t **out)
{
    *out = NULL;
    fd_query_t *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    q->r = r;
    answer(r, host, service, hints, q);
    int rc = r->host->future_create(r->loop, &q->fut);
    if (rc == 0)
        rc = r->host->call_soon(r->loop, deliver, q, &q->handle);
    if (rc < 0) {
        if (q->fut)
            r->host->future_unref(q->fut);
        free_list(q->list);
        free(q);
        return rc;
    }
    q->next = r->queries;
    if (q->next)
        q->next->prev = q;
    r->queries = q;
    *out = r->host->future_ref(q->fut);
    return 0;
}

/* Numeric only: no names to look up here. */
static int fake_getnameinfo(aev_dns_resolver_t *r, const struct sockaddr *addr, socklen_t addrlen, int flags,
                            aev_future_t **out)
{
    *out = NULL;
    aev_nameinfo_t *ni = calloc(1, sizeof *ni);
    if (!ni)
        return -ENOMEM;
    int eai = getnameinfo(addr, addrlen, ni->host, sizeof ni->host, ni->service, sizeof ni->service,
                          flags | NI_NUMERICHOST | NI_NUMERICSERV);
    aev_future_t *f = NULL;
    int rc = r->host->future_create(r->loop, &f);
    if (rc < 0) {
        free(ni);
        return rc;
    }
    if (eai != 0) {
        free(ni);
        r->host->future_set_error(f, AEV_EDNS_FAIL, "getnameinfo: fake resolver: not a usable address");
    } else {
        r->host->future_set_result(f, ni, free);
    }
    *out = f;
    return 0;
}

/* ---- the resolver ------------------------------------------------------------------------ */

static int fake_create(const aev_host_t *host, const aev_plugin_context_t *ctx, aev_loop_t *loop,
                       aev_dns_resolver_t **out)
{
    *out = NULL;
    aev_dns_resolver_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->host = host;
    r->loop = loop;
    const char *table = host->option(ctx, "hosts");
    if (!table)
        table = getenv("AEV_DNS_FAKE_HOSTS");
    int rc = table ? parse_table(r, table) : 0;
    if (rc < 0) {
        free_table(r);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Answers not delivered yet are dropped; their futures stay pending. */
static void fake_destroy(aev_dns_resolver_t *r)
{
    while (r->queries) {
        fd_query_t *q = r->queries;
        query_unlink(q);
        r->host->handle_cancel(q->handle);
        query_free(q);
    }
    free_table(r);
    free(r);
}

static const aev_dns_ops_t fake_ops = {
    .version = AEV_DNS_OPS_VERSION,
    .caps = 0,
    .create = fake_create,
    .destroy = fake_destroy,
    .getaddrinfo = fake_getaddrinfo,
    .getnameinfo = fake_getnameinfo,
};

static int fake_probe(const aev_host_t *host, char *why, size_t size)
{
    if (host->version < 2) {
        snprintf(why, size, "needs host table v2 (future_done); this libaev has v%u", (unsigned)host->version);
        return -ENOTSUP;
    }
    return 0;
}

static const void *fake_init(const aev_host_t *host)
{
    (void)host;
    return &fake_ops;
}

AEV_PLUGIN_DEFINE(aev_dns_fake) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_DNS,
    .name = "fake",
    .version = "1.0",
    .description = "test-only resolver answering from a table (option hosts, or AEV_DNS_FAKE_HOSTS)",
    .priority = 0,
    .caps = 0,
    .probe = fake_probe,
    .init = fake_init,
};
