/* libaev plugin poll/epoll - a readiness engine over Linux epoll.
 * Level-triggered, one epoll_wait (or epoll_pwait2 for sub-millisecond
 * timeouts) per loop iteration; an eventfd wakes a blocked wait. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "aev/plugin.h"

#define MAX_EVENTS 256

struct aev_poll_backend {
    const aev_host_t *host;
    int epfd;
    int wakefd;
    int have_pwait2;
    struct epoll_event events[MAX_EVENTS];
};

static uint32_t to_epoll(uint32_t ev)
{
    return (ev & AEV_POLL_IN ? EPOLLIN : 0u) | (ev & AEV_POLL_OUT ? EPOLLOUT : 0u);
}

static int epoll_backend_create(const aev_host_t *host, const aev_plugin_context_t *ctx,
                                aev_poll_backend_t **out)
{
    (void)ctx;
    aev_poll_backend_t *b = host->alloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    memset(b, 0, sizeof *b);
    b->host = host;
    b->have_pwait2 = 1;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        int err = -errno;
        host->set_error_detail("epoll_create1: %s", strerror(-err));
        host->free(b);
        return err;
    }
    b->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = b->wakefd};
    if (b->wakefd < 0 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->wakefd, &ev) < 0) {
        int err = -errno;
        host->set_error_detail("eventfd: %s", strerror(-err));
        if (b->wakefd >= 0)
            close(b->wakefd);
        close(b->epfd);
        host->free(b);
        return err;
    }
    *out = b;
    return 0;
}

static void epoll_backend_destroy(aev_poll_backend_t *b)
{
    close(b->wakefd);
    close(b->epfd);
    b->host->free(b);
}

static int epoll_backend_watch(aev_poll_backend_t *b, int fd, uint32_t old_events, uint32_t new_events)
{
    struct epoll_event ev = {.events = to_epoll(new_events), .data.fd = fd};
    if (fd == b->wakefd)
        return -EBADF; /* our own descriptor: the application closed it and reused the number? */
    if (new_events == 0) {
        if (epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, &ev) < 0)
            return -errno;
        return 0;
    }
    int op = old_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(b->epfd, op, fd, &ev) == 0)
        return 0;
    /* The kernel forgets an fd when its last reference closes: a reused number
     * needs ADD where we expected MOD, and the reverse after a dup'd fd lives on. */
    if (errno == ENOENT && op == EPOLL_CTL_MOD && epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    if (errno == EEXIST && op == EPOLL_CTL_ADD && epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    if (errno == EPERM)
        b->host->set_error_detail("fd %d cannot be watched by epoll (a regular file or directory?)", fd);
    return -errno;
}

static int epoll_backend_wait(aev_poll_backend_t *b, int64_t timeout_ns, aev_poll_event_t *out, int max)
{
    if (max > MAX_EVENTS)
        max = MAX_EVENTS;
    int n;
    if (timeout_ns > 0 && timeout_ns % 1000000 != 0 && b->have_pwait2) {
        struct timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
        n = epoll_pwait2(b->epfd, b->events, max, &ts, NULL);
        if (n < 0 && errno == ENOSYS) {
            b->have_pwait2 = 0;
            return 0; /* a spurious early return; the next wait uses epoll_wait */
        }
    } else {
        int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
        n = epoll_wait(b->epfd, b->events, max, ms);
    }
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int k = 0;
    for (int i = 0; i < n; i++) {
        int fd = b->events[i].data.fd;
        uint32_t e = b->events[i].events;
        if (fd == b->wakefd) {
            uint64_t v;
            while (read(b->wakefd, &v, sizeof v) == (ssize_t)sizeof v)
                ;
            continue;
        }
        out[k].kind = AEV_POLL_EVENT_FD;
        out[k].fd = fd;
        out[k].events = (e & EPOLLIN ? AEV_POLL_IN : 0u) | (e & EPOLLOUT ? AEV_POLL_OUT : 0u) |
                        (e & EPOLLERR ? AEV_POLL_ERR : 0u) | (e & EPOLLHUP ? AEV_POLL_HUP : 0u);
        k++;
    }
    return k;
}

static int epoll_backend_wake(aev_poll_backend_t *b)
{
    uint64_t one = 1;
    if (write(b->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static const aev_poll_ops_t epoll_ops = {
    .version = AEV_POLL_OPS_VERSION,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT,
    .create = epoll_backend_create,
    .destroy = epoll_backend_destroy,
    .watch = epoll_backend_watch,
    .wait = epoll_backend_wait,
    .wake = epoll_backend_wake,
};

static int epoll_probe(const aev_host_t *host, char *why, size_t size)
{
    (void)host;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        snprintf(why, size, "epoll_create1: %s", strerror(err));
        return -err;
    }
    close(fd);
    return 0;
}

static const void *epoll_init(const aev_host_t *host)
{
    (void)host;
    return &epoll_ops;
}

AEV_PLUGIN_DEFINE(aev_poll_epoll) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_POLL,
    .name = "epoll",
    .version = "1.0",
    .description = "Linux epoll readiness engine (level-triggered)",
    .priority = 30,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT,
    .probe = epoll_probe,
    .init = epoll_init,
};
