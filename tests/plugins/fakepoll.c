/* libaev tests - a small, working poll engine built on ppoll(2), compiled into
 * several test-only plugins with different -D flags (see meson.build).
 *
 *   TP_MODULE        module name (file name without .so), e.g. aev_poll_fake
 *   TP_NAME          descriptor name, e.g. "fake"
 *   TP_ABI_MAJOR     abi_major to declare (default AEV_PLUGIN_ABI_MAJOR)
 *   TP_ABI_MINOR     abi_minor to declare (default AEV_PLUGIN_ABI_MINOR)
 *   TP_REFUSE_ME     the core must refuse this descriptor: probe() and init() abort()
 *   TP_PROBE_FAIL    probe() fails with this text (and -TP_PROBE_ERRNO); init() abort()s
 *   TP_PROBE_ERRNO   the errno of that failure (default EPERM)
 *   TP_LOG_OPTION    create() logs "marker=<value of option marker>" through host->log
 *   TP_LOG_CREATE    create() logs this text through host->log (to tell a plugin apart)
 *   TP_CTOR_ABORT    a constructor abort()s: loading the file at all kills the process
 *
 * Whatever the core calls that it should not, aborts, so a test that survives
 * proves the call never happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aev/log.h" /* for the level constants only: plugins do not link libaev */
#include "aev/plugin.h"

#ifndef TP_MODULE
#error "TP_MODULE must be defined"
#endif
#ifndef TP_NAME
#error "TP_NAME must be defined"
#endif
#ifndef TP_ABI_MAJOR
#define TP_ABI_MAJOR AEV_PLUGIN_ABI_MAJOR
#endif
#ifndef TP_ABI_MINOR
#define TP_ABI_MINOR AEV_PLUGIN_ABI_MINOR
#endif
#ifndef TP_PROBE_ERRNO
#define TP_PROBE_ERRNO EPERM
#endif

#define TP_ORIGIN "poll." TP_NAME

#ifdef TP_CTOR_ABORT
__attribute__((constructor)) static void tp_boom(void)
{
    abort();
}
#endif

struct tp_watch {
    int fd;
    uint32_t events;
};

struct aev_poll_backend {
    const aev_host_t *host;
    int wakefd;
    struct tp_watch *watches;
    size_t n, cap;
    struct pollfd *pfds;
    size_t pcap;
};

static int tp_create(const aev_host_t *host, const aev_plugin_context_t *ctx,
                     aev_poll_backend_t **out)
{
#ifdef TP_REFUSE_ME
    (void)host, (void)ctx, (void)out;
    abort();
#else
    aev_poll_backend_t *b = host->alloc(sizeof *b);
    if (b == NULL)
        return -ENOMEM;
    memset(b, 0, sizeof *b);
    b->host = host;
    b->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->wakefd < 0) {
        int err = -errno;
        host->free(b);
        return err;
    }
#ifdef TP_LOG_OPTION
    {
        const char *marker = host->option(ctx, "marker");
        host->log(AEV_LOG_INFO, TP_ORIGIN, "marker=%s", marker != NULL ? marker : "(unset)");
    }
#else
    (void)ctx;
#endif
#ifdef TP_LOG_CREATE
    host->log(AEV_LOG_INFO, TP_ORIGIN, "%s", TP_LOG_CREATE);
#endif
    *out = b;
    return 0;
#endif
}

static void tp_destroy(aev_poll_backend_t *b)
{
    if (b == NULL)
        return;
    close(b->wakefd);
    b->host->free(b->watches);
    b->host->free(b->pfds);
    b->host->free(b);
}

static int tp_watch(aev_poll_backend_t *b, int fd, uint32_t old_events, uint32_t new_events)
{
    size_t i;
    (void)old_events;
    new_events &= AEV_POLL_IN | AEV_POLL_OUT;
    if (fd < 0)
        return -EBADF;
    for (i = 0; i < b->n; i++)
        if (b->watches[i].fd == fd)
            break;
    if (new_events == 0) {
        if (i < b->n)
            b->watches[i] = b->watches[--b->n];
        return 0;
    }
    if (fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    if (i == b->n) {
        if (b->n == b->cap) {
            size_t cap = b->cap ? b->cap * 2 : 16;
            struct tp_watch *w = b->host->realloc(b->watches, cap * sizeof *w);
            if (w == NULL)
                return -ENOMEM;
            b->watches = w;
            b->cap = cap;
        }
        b->watches[b->n].fd = fd;
        b->n++;
    }
    b->watches[i].events = new_events;
    return 0;
}

static int tp_wait(aev_poll_backend_t *b, int64_t timeout_ns, aev_poll_event_t *events, int max)
{
    size_t need = b->n + 1, i;
    struct timespec ts, *tsp = NULL;
    int r, count = 0;

    if (need > b->pcap) {
        struct pollfd *p = b->host->realloc(b->pfds, need * sizeof *p);
        if (p == NULL)
            return -ENOMEM;
        b->pfds = p;
        b->pcap = need;
    }
    b->pfds[0].fd = b->wakefd;
    b->pfds[0].events = POLLIN;
    b->pfds[0].revents = 0;
    for (i = 0; i < b->n; i++) {
        struct pollfd *p = &b->pfds[i + 1];
        p->fd = b->watches[i].fd;
        p->events = (short)(((b->watches[i].events & AEV_POLL_IN) ? POLLIN : 0) |
                            ((b->watches[i].events & AEV_POLL_OUT) ? POLLOUT : 0));
        p->revents = 0;
    }
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    r = ppoll(b->pfds, (nfds_t)need, tsp, NULL);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    if (b->pfds[0].revents != 0) {
        eventfd_t v;
        (void)eventfd_read(b->wakefd, &v);
    }
    for (i = 1; i < need && count < max; i++) {
        short re = b->pfds[i].revents;
        uint32_t ev = 0;
        if (re == 0)
            continue;
        if (re & POLLIN)
            ev |= AEV_POLL_IN;
        if (re & POLLOUT)
            ev |= AEV_POLL_OUT;
        if (re & POLLERR)
            ev |= AEV_POLL_ERR;
        if (re & POLLHUP)
            ev |= AEV_POLL_HUP;
        if (re & POLLNVAL)
            ev |= AEV_POLL_NVAL;
        memset(&events[count], 0, sizeof events[count]);
        events[count].kind = AEV_POLL_EVENT_FD;
        events[count].events = ev;
        events[count].fd = b->pfds[i].fd;
        count++;
    }
    return count;
}

static int tp_wake(aev_poll_backend_t *b)
{
    if (eventfd_write(b->wakefd, 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

/* unused in the variants whose init() aborts */
__attribute__((unused)) static const aev_poll_ops_t tp_ops = {
    .version = 1,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT,
    .create = tp_create,
    .destroy = tp_destroy,
    .watch = tp_watch,
    .wait = tp_wait,
    .wake = tp_wake,
};

static int tp_probe(const aev_host_t *host, char *why, size_t why_size)
{
    (void)host;
#if defined(TP_REFUSE_ME)
    (void)why, (void)why_size;
    abort();
#elif defined(TP_PROBE_FAIL)
    snprintf(why, why_size, "%s", TP_PROBE_FAIL);
    return -TP_PROBE_ERRNO;
#else
    (void)why, (void)why_size;
    return 0;
#endif
}

static const void *tp_init(const aev_host_t *host)
{
    (void)host;
#if defined(TP_REFUSE_ME) || defined(TP_PROBE_FAIL)
    abort();
#else
    return &tp_ops;
#endif
}

#define TP_DEFINE(module) AEV_PLUGIN_DEFINE(module)

TP_DEFINE(TP_MODULE) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = TP_ABI_MAJOR,
    .abi_minor = TP_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_POLL,
    .name = TP_NAME,
    .version = "test-1",
    .description = "libaev test plugin (ppoll engine)",
    .priority = -100,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT,
    .probe = tp_probe,
    .init = tp_init,
};
