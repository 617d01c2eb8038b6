/* libaev plugin dns/system - the system resolver: getaddrinfo(3) and
 * getnameinfo(3), which block, run on the loop's default executor (as
 * asyncio's loop.getaddrinfo runs socket.getaddrinfo in run_in_executor).
 *
 * A query is one executor job: the future the job gives is the query's
 * future, so cancellation and closing the loop are the executor's rules
 * (a query not started never runs; one running finishes on its worker and
 * its answer is freed there). The resolver keeps no per-query state, so
 * destroying it never waits for a worker.
 *
 * Queries that need no lookup (numeric hosts, AI_NUMERICHOST, a NULL host,
 * with no service or a numeric one; getnameinfo with NI_NUMERICHOST and
 * NI_NUMERICSERV) are answered on the loop's thread at once: getaddrinfo(3)
 * reads no file and sends nothing for them.
 *
 * Needs host table v2 (run_in_executor). No options. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "aev/error.h"
#include "aev/plugin.h"

struct aev_dns_resolver {
    const aev_host_t *host;
    aev_loop_t *loop;
};

/* ---- errors ------------------------------------------------------------------------- */

/* Maps an EAI_* code (and errno for EAI_SYSTEM) to a libaev code. */
static int map_eai(int eai, int err)
{
    switch (eai) {
    case EAI_NONAME: return AEV_EDNS_NONAME;
    case EAI_AGAIN: return AEV_EDNS_AGAIN;
    case EAI_FAIL: return AEV_EDNS_FAIL;
    case EAI_FAMILY: return AEV_EDNS_FAMILY;
    case EAI_SOCKTYPE: return AEV_EDNS_SOCKTYPE;
    case EAI_SERVICE: return AEV_EDNS_SERVICE;
    case EAI_BADFLAGS: return AEV_EDNS_BADFLAGS;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_OVERFLOW: return -EOVERFLOW;
    case EAI_SYSTEM: return err > 0 ? -err : AEV_EDNS_FAIL;
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return AEV_EDNS_ADDRFAMILY;
#endif
#ifdef EAI_NODATA
    case EAI_NODATA: return AEV_EDNS_NODATA;
#endif
#ifdef EAI_CANCELED
    case EAI_CANCELED: return AEV_ECANCELLED;
#endif
    default: return AEV_EDNS_FAIL;
    }
}

/* The future's detail: what was asked, and the resolver's own text. */
static void describe_eai(char *buf, size_t size, const char *what, int eai, int err)
{
    if (eai == EAI_SYSTEM && err > 0)
        snprintf(buf, size, "%s: %s", what, strerror(err));
    else
        snprintf(buf, size, "%s: %s", what, gai_strerror(eai));
}

/* ---- getaddrinfo ---------------------------------------------------------------------- */

typedef struct gai_req {
    struct addrinfo hints;
    char *host;    /* NULL, or a copy after the struct */
    char *service; /* NULL, or a copy after the struct */
} gai_req_t;

static void free_addrinfo(void *list)
{
    freeaddrinfo(list);
}

static void gai_what(char *buf, size_t size, const char *host, const char *service)
{
    snprintf(buf, size, "getaddrinfo(%s%.200s%s, %s%.64s%s)", host ? "\"" : "",
             host ? host : "NULL", host ? "\"" : "", service ? "\"" : "",
             service ? service : "NULL", service ? "\"" : "");
}

/* Runs getaddrinfo(3): 0 with *list set, or a libaev code with detail filled. */
static int gai_run(const char *host, const char *service, const struct addrinfo *hints,
                   struct addrinfo **list, char *detail, size_t size)
{
    *list = NULL;
    errno = 0;
    int eai = getaddrinfo(host, service, hints, list);
    int err = errno;
    if (eai == 0)
        return 0;
    char what[320];
    gai_what(what, sizeof what, host, service);
    describe_eai(detail, size, what, eai, err);
    *list = NULL;
    return map_eai(eai, err);
}

/* The executor's work: on a worker thread. */
static int gai_work(void *arg, aev_work_result_t *res)
{
    gai_req_t *r = arg;
    struct addrinfo *list = NULL;
    int rc = gai_run(r->host, r->service, &r->hints, &list, res->detail, sizeof res->detail);
    if (rc < 0)
        return rc;
    res->value = list;
    res->destroy = free_addrinfo;
    return 0;
}

static int is_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int is_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A future of the loop, already done with rc (a result of value/destroy, or an error). */
static int done_future(aev_dns_resolver_t *r, int rc, void *value, void (*destroy)(void *),
                       const char *detail, aev_future_t **out)
{
    aev_future_t *f = NULL;
    int err = r->host->future_create(r->loop, &f);
    if (err < 0) {
        if (destroy && value)
            destroy(value);
        return err;
    }
    if (rc < 0)
        r->host->future_set_error(f, rc, detail);
    else
        r->host->future_set_result(f, value, destroy);
    *out = f;
    return 0;
}

static int sys_getaddrinfo(aev_dns_resolver_t *r, const char *host, const char *service,
                           const struct addrinfo *hints, aev_future_t **out)
{
    *out = NULL;
    int flags = hints->ai_flags;
    int host_local = !host || (flags & AI_NUMERICHOST) ||
                     (!(flags & AI_CANONNAME) && is_numeric_host(host));
    int serv_local = !service || (flags & AI_NUMERICSERV) || is_digits(service);
    if (host_local && serv_local) {
        struct addrinfo h = *hints;
        if (host)
            h.ai_flags |= AI_NUMERICHOST;
        if (service)
            h.ai_flags |= AI_NUMERICSERV;
        struct addrinfo *list = NULL;
        char detail[512];
        int rc = gai_run(host, service, &h, &list, detail, sizeof detail);
        return done_future(r, rc, list, rc < 0 ? NULL : free_addrinfo, detail, out);
    }
    size_t hl = host ? strlen(host) + 1 : 0, sl = service ? strlen(service) + 1 : 0;
    gai_req_t *q = malloc(sizeof *q + hl + sl);
    if (!q)
        return -ENOMEM;
    memset(&q->hints, 0, sizeof q->hints);
    q->hints.ai_family = hints->ai_family;
    q->hints.ai_socktype = hints->ai_socktype;
    q->hints.ai_protocol = hints->ai_protocol;
    q->hints.ai_flags = hints->ai_flags;
    char *p = (char *)(q + 1);
    q->host = host ? memcpy(p, host, hl) : NULL;
    q->service = service ? memcpy(p + hl, service, sl) : NULL;
    int rc = r->host->run_in_executor(r->loop, gai_work, q, free, out);
    if (rc < 0) {
        free(q); /* not taken: arg_destroy is not called on failure */
        *out = NULL;
    }
    return rc;
}

/* ---- getnameinfo ---------------------------------------------------------------------- */

typedef struct gni_req {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int flags;
} gni_req_t;

static int gni_run(const struct sockaddr *sa, socklen_t len, int flags, aev_nameinfo_t **out,
                   char *detail, size_t size)
{
    *out = NULL;
    aev_nameinfo_t *ni = calloc(1, sizeof *ni);
    if (!ni) {
        snprintf(detail, size, "getnameinfo: out of memory");
        return -ENOMEM;
    }
    errno = 0;
    int eai = getnameinfo(sa, len, ni->host, sizeof ni->host, ni->service, sizeof ni->service,
                          flags);
    int err = errno;
    if (eai != 0) {
        free(ni);
        describe_eai(detail, size, "getnameinfo", eai, err);
        return map_eai(eai, err);
    }
    *out = ni;
    return 0;
}

static int gni_work(void *arg, aev_work_result_t *res)
{
    gni_req_t *q = arg;
    aev_nameinfo_t *ni = NULL;
    int rc = gni_run((const struct sockaddr *)&q->addr, q->addrlen, q->flags, &ni, res->detail,
                     sizeof res->detail);
    if (rc < 0)
        return rc;
    res->value = ni;
    res->destroy = free;
    return 0;
}

static int sys_getnameinfo(aev_dns_resolver_t *r, const struct sockaddr *addr, socklen_t addrlen,
                           int flags, aev_future_t **out)
{
    *out = NULL;
    if (addrlen > (socklen_t)sizeof(struct sockaddr_storage)) {
        r->host->set_error_detail("getnameinfo: a socket address of %u bytes is too long",
                                  (unsigned)addrlen);
        return -EINVAL;
    }
    if ((flags & NI_NUMERICHOST) && (flags & NI_NUMERICSERV)) {
        aev_nameinfo_t *ni = NULL;
        char detail[512];
        int rc = gni_run(addr, addrlen, flags, &ni, detail, sizeof detail);
        return done_future(r, rc, ni, rc < 0 ? NULL : free, detail, out);
    }
    gni_req_t *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    memcpy(&q->addr, addr, addrlen);
    q->addrlen = addrlen;
    q->flags = flags;
    int rc = r->host->run_in_executor(r->loop, gni_work, q, free, out);
    if (rc < 0) {
        free(q);
        *out = NULL;
    }
    return rc;
}

/* ---- the resolver ------------------------------------------------------------------------ */

static int sys_create(const aev_host_t *host, const aev_plugin_context_t *ctx, aev_loop_t *loop,
                      aev_dns_resolver_t **out)
{
    (void)ctx;
    *out = NULL;
    aev_dns_resolver_t *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->host = host;
    r->loop = loop;
    *out = r;
    return 0;
}

/* Queries in flight are executor jobs that never look at the resolver: nothing to wait for. */
static void sys_destroy(aev_dns_resolver_t *r)
{
    free(r);
}

static const aev_dns_ops_t system_ops = {
    .version = AEV_DNS_OPS_VERSION,
    .caps = AEV_DNS_CAP_THREADS,
    .create = sys_create,
    .destroy = sys_destroy,
    .getaddrinfo = sys_getaddrinfo,
    .getnameinfo = sys_getnameinfo,
};

static int system_probe(const aev_host_t *host, char *why, size_t size)
{
    if (host->version < 2) {
        snprintf(why, size, "needs host table v2 (run_in_executor); this libaev has v%u",
                 (unsigned)host->version);
        return -ENOTSUP;
    }
    return 0;
}

static const void *system_init(const aev_host_t *host)
{
    (void)host;
    return &system_ops;
}

AEV_PLUGIN_DEFINE(aev_dns_system) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_DNS,
    .name = "system",
    .version = "1.0",
    .description = "getaddrinfo(3)/getnameinfo(3) on the loop's default executor",
    .priority = 10,
    .caps = AEV_DNS_CAP_THREADS,
    .probe = system_probe,
    .init = system_init,
};
