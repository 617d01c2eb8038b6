/* libaev - DNS: asyncio's loop.getaddrinfo and loop.getnameinfo.
 *
 * Both start a query and give the caller a future (one reference) completed on
 * the loop's thread. The query is served by the loop's resolver, a "dns"
 * plugin loaded on first use from the loop's policy (dns = system by default:
 * getaddrinfo(3)/getnameinfo(3) on the loop's default executor; AEV_DNS or
 * "dns = ..." in a config file choose another). A plugin that cannot be loaded
 * fails the call with the registry's AEV_EPLUGIN_* error and a detail naming
 * every candidate and path tried.
 *
 * Results:
 *  - getaddrinfo: the future's value is a struct addrinfo list (<netdb.h>),
 *    ai_next chained, owned by the future: read it while you hold the future,
 *    never free it yourself (the future's destroy does, with the future);
 *  - getnameinfo: the value is an aev_nameinfo_t owned by the future.
 * Errors are the future's: AEV_EDNS_* for the resolver's EAI_* codes (the
 * detail is the resolver's text, gai_strerror's for the system resolver),
 * -ENOMEM, or a negative errno. Bad input is refused at once with -EINVAL and
 * a detail, *out = NULL.
 *
 * Cancelling the future cancels the query: the future is cancelled at once; a
 * lookup already running on a worker thread finishes there and its answer is
 * freed. Closing the loop abandons the queries in flight (their futures stay
 * pending, as asyncio's do); release your futures as usual.
 *
 * Numeric hosts ("127.0.0.1", "::1"), AI_NUMERICHOST, a NULL host with a
 * numeric port, and getnameinfo with NI_NUMERICHOST | NI_NUMERICSERV need no
 * lookup: the system resolver answers them on the loop's thread (the future is
 * done when the call returns), without a thread.
 */
#ifndef AEV_DNS_H
#define AEV_DNS_H

#include <sys/socket.h>

#include "loop.h"
#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

struct addrinfo;

/* Sizes of aev_nameinfo_t's buffers: glibc's NI_MAXHOST and NI_MAXSERV. */
#define AEV_NI_MAXHOST 1025
#define AEV_NI_MAXSERV 32

/* The value of a getnameinfo future (socket.getnameinfo's (host, port) pair). */
typedef struct aev_nameinfo {
    char host[AEV_NI_MAXHOST];    /* a name, or the numeric address (NI_NUMERICHOST) */
    char service[AEV_NI_MAXSERV]; /* a service name, or the decimal port (NI_NUMERICSERV) */
} aev_nameinfo_t;

/* Options of aev_loop_getaddrinfo() (getaddrinfo's keyword arguments); zero: the defaults. */
typedef struct aev_getaddrinfo_options {
    int family; /* AF_UNSPEC (0), AF_INET or AF_INET6 */
    int type;   /* 0 (any), SOCK_STREAM, SOCK_DGRAM, ... */
    int proto;  /* 0 (any), IPPROTO_TCP, ... */
    int flags;  /* AI_* flags: AI_PASSIVE, AI_CANONNAME, AI_NUMERICHOST, ... */
} aev_getaddrinfo_options_t;

/** Resolves host and service (loop.getaddrinfo(host, port, family=, type=, proto=, flags=)).
 *  host: a name or a numeric address, or NULL (with AI_PASSIVE: the wildcard address, else
 *  loopback); service: a service name ("http") or a decimal port ("8080"), or NULL (port 0).
 *  opts may be NULL. The future's value is a struct addrinfo list owned by the future.
 *  On the loop's thread only. -EINVAL with a detail: host and service both NULL, a family
 *  other than AF_UNSPEC/AF_INET/AF_INET6, a numeric port above 65535, a NULL loop or out;
 *  AEV_ECLOSED; an AEV_EPLUGIN_* code if no dns plugin could be loaded; AEV_ESHUTDOWN when
 *  the system resolver needs the default executor after aev_loop_shutdown_default_executor. */
int aev_loop_getaddrinfo(aev_loop_t *loop, const char *host, const char *service,
                         const aev_getaddrinfo_options_t *opts, aev_future_t **out);

/** Looks up the host and service of a socket address (loop.getnameinfo(sockaddr, flags)).
 *  sa is an AF_INET or AF_INET6 address of len bytes (copied: it may go away after the call);
 *  flags are NI_* flags. The future's value is an aev_nameinfo_t owned by the future.
 *  On the loop's thread only. -EINVAL with a detail: a NULL or short address, another
 *  family, a NULL loop or out; otherwise as aev_loop_getaddrinfo(). */
int aev_loop_getnameinfo(aev_loop_t *loop, const struct sockaddr *sa, socklen_t len, int flags,
                         aev_future_t **out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* AEV_DNS_H */
