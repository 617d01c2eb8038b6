/* libaev core - DNS: loop.getaddrinfo and loop.getnameinfo over the loop's
 * resolver, a "dns" plugin.
 *
 * The core checks the arguments the way socket.getaddrinfo/getnameinfo do
 * before any lookup, loads the resolver on first use from the loop's policy
 * (as the default executor is), and hands each query to it; the plugin gives
 * back a future of the loop and completes it on the loop's thread. Nothing
 * here knows whether the resolver uses threads (the system plugin runs
 * getaddrinfo(3) on the executor) or the loop itself (a c-ares plugin).
 * Closing the loop destroys the resolver while the loop is still open, so a
 * loop-driven resolver can take its watchers and timers back. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "loop_internal.h"

struct aev__dns {
    const aev__plugin_t *plugin;
    const aev_dns_ops_t *ops;
    aev_dns_resolver_t *resolver; /* NULL once the loop closed */
    struct aev_plugin_context ctx;
};

/* The loop's resolver, loaded and created on first use. */
static int dns_get(aev_loop_t *loop, struct aev__dns **out)
{
    if (loop->dns) {
        *out = loop->dns;
        return 0;
    }
    const aev_policy_choice_t *pc = aev_policy_get(loop->policy, "dns");
    const aev__plugin_t *pl = NULL;
    int rc = aev__registry_load(loop->policy, AEV_FAMILY_DNS, pc->value, pc->origin_text, &pl);
    if (rc < 0)
        return rc;
    struct aev__dns *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->plugin = pl;
    d->ops = pl->ops;
    d->ctx.policy = loop->policy;
    d->ctx.family = "dns";
    d->ctx.name = pl->desc->name;
    aev__clear_detail();
    rc = d->ops->create(&aev__host, &d->ctx, loop, &d->resolver);
    if (rc < 0 || !d->resolver) {
        char why[512];
        if (rc >= 0)
            rc = AEV_EPLUGIN_REFUSED;
        snprintf(why, sizeof why, "%s", aev_error_detail()[0] ? aev_error_detail() : aev_strerror(rc));
        aev__set_detail("dns plugin \"%s\" (%s) could not create a resolver: %s", pl->desc->name,
                        pl->path, why);
        free(d);
        return rc;
    }
    loop->dns = d;
    *out = d;
    return 0;
}

/* 1 if s is a non-empty string of decimal digits. */
static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int aev_loop_getaddrinfo(aev_loop_t *loop, const char *host, const char *service,
                         const aev_getaddrinfo_options_t *opts, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !out) {
        aev__set_detail("aev_loop_getaddrinfo: loop and out must not be NULL");
        return -EINVAL;
    }
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (!host && !service) {
        aev__set_detail("getaddrinfo needs a host or a service (port); both are NULL");
        return -EINVAL;
    }
    aev_getaddrinfo_options_t o = {0};
    if (opts)
        o = *opts;
    if (o.family != AF_UNSPEC && o.family != AF_INET && o.family != AF_INET6) {
        aev__set_detail("getaddrinfo: family %d is not AF_UNSPEC (%d), AF_INET (%d) or AF_INET6 (%d)",
                        o.family, AF_UNSPEC, AF_INET, AF_INET6);
        return -EINVAL;
    }
    if (service && all_digits(service)) {
        /* as Python's "getaddrinfo(): port must be 0-65535." */
        size_t n = strlen(service);
        while (n > 1 && *service == '0') {
            service++;
            n--;
        }
        if (n > 5 || strtol(service, NULL, 10) > 65535) {
            aev__set_detail("getaddrinfo: port %s is out of range (0-65535)", service);
            return -EINVAL;
        }
    }
    struct aev__dns *d = NULL;
    rc = dns_get(loop, &d);
    if (rc < 0)
        return rc;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = o.family;
    hints.ai_socktype = o.type;
    hints.ai_protocol = o.proto;
    hints.ai_flags = o.flags;
    aev__clear_detail();
    aev_future_t *f = NULL;
    rc = d->ops->getaddrinfo(d->resolver, host, service, &hints, &f);
    if (rc < 0 || !f) {
        if (f)
            aev_future_unref(f);
        return rc < 0 ? rc : AEV_EINVALID_STATE;
    }
    *out = f;
    return 0;
}

int aev_loop_getnameinfo(aev_loop_t *loop, const struct sockaddr *sa, socklen_t len, int flags,
                         aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !out) {
        aev__set_detail("aev_loop_getnameinfo: loop and out must not be NULL");
        return -EINVAL;
    }
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (!sa) {
        aev__set_detail("getnameinfo: the socket address is NULL");
        return -EINVAL;
    }
    if (len < (socklen_t)sizeof(sa_family_t)) {
        aev__set_detail("getnameinfo: a socket address of %u bytes has no family", (unsigned)len);
        return -EINVAL;
    }
    socklen_t need;
    if (sa->sa_family == AF_INET) {
        need = sizeof(struct sockaddr_in);
    } else if (sa->sa_family == AF_INET6) {
        need = sizeof(struct sockaddr_in6);
    } else {
        aev__set_detail("getnameinfo: family %d is not AF_INET (%d) or AF_INET6 (%d)",
                        sa->sa_family, AF_INET, AF_INET6);
        return -EINVAL;
    }
    if (len < need) {
        aev__set_detail("getnameinfo: an %s address needs %u bytes, got %u",
                        sa->sa_family == AF_INET ? "AF_INET" : "AF_INET6", (unsigned)need,
                        (unsigned)len);
        return -EINVAL;
    }
    struct aev__dns *d = NULL;
    rc = dns_get(loop, &d);
    if (rc < 0)
        return rc;
    aev__clear_detail();
    aev_future_t *f = NULL;
    rc = d->ops->getnameinfo(d->resolver, sa, need, flags, &f);
    if (rc < 0 || !f) {
        if (f)
            aev_future_unref(f);
        return rc < 0 ? rc : AEV_EINVALID_STATE;
    }
    *out = f;
    return 0;
}

const char *aev__dns_loop_plugin_name(const aev_loop_t *loop)
{
    return loop->dns ? loop->dns->plugin->desc->name : NULL;
}

void aev__dns_loop_close(aev_loop_t *loop)
{
    struct aev__dns *d = loop->dns;
    if (!d || !d->resolver)
        return;
    aev_dns_resolver_t *r = d->resolver;
    d->resolver = NULL;
    d->ops->destroy(r);
}

void aev__dns_loop_destroy(aev_loop_t *loop)
{
    struct aev__dns *d = loop->dns;
    if (!d)
        return;
    loop->dns = NULL;
    if (d->resolver) /* freed without being closed */
        d->ops->destroy(d->resolver);
    free(d);
}
