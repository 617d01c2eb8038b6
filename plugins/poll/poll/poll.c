/* libaev plugin poll/poll - a readiness engine over poll(2)/ppoll(2).
 * Keeps a dense pollfd array with an fd -> slot index; a self-pipe wakes a
 * blocked wait. Reports fds closed behind the loop's back (POLLNVAL). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aev/plugin.h"

struct aev_poll_backend {
    const aev_host_t *host;
    struct pollfd *pfds; /* slot 0: the wake pipe */
    int npfds, cappfds;
    int *slot_of;        /* fd -> slot, -1 if not watched */
    int capslots;
    int wake[2];
    int rotate;          /* where reporting starts, for fairness */
};

static int poll_backend_create(const aev_host_t *host, const aev_plugin_context_t *ctx,
                               aev_poll_backend_t **out)
{
    (void)ctx;
    aev_poll_backend_t *b = host->alloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    memset(b, 0, sizeof *b);
    b->host = host;
    if (pipe2(b->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        int err = -errno;
        host->set_error_detail("pipe2: %s", strerror(-err));
        host->free(b);
        return err;
    }
    b->cappfds = 64;
    b->pfds = host->alloc((size_t)b->cappfds * sizeof *b->pfds);
    if (!b->pfds) {
        close(b->wake[0]);
        close(b->wake[1]);
        host->free(b);
        return -ENOMEM;
    }
    b->pfds[0] = (struct pollfd){.fd = b->wake[0], .events = POLLIN};
    b->npfds = 1;
    *out = b;
    return 0;
}

static void poll_backend_destroy(aev_poll_backend_t *b)
{
    close(b->wake[0]);
    close(b->wake[1]);
    b->host->free(b->pfds);
    b->host->free(b->slot_of);
    b->host->free(b);
}

static int ensure_slot_map(aev_poll_backend_t *b, int fd)
{
    if (fd < b->capslots)
        return 0;
    int cap = b->capslots ? b->capslots : 64;
    while (cap <= fd)
        cap *= 2;
    int *n = b->host->realloc(b->slot_of, (size_t)cap * sizeof *n);
    if (!n)
        return -ENOMEM;
    for (int i = b->capslots; i < cap; i++)
        n[i] = -1;
    b->slot_of = n;
    b->capslots = cap;
    return 0;
}

static int poll_backend_watch(aev_poll_backend_t *b, int fd, uint32_t old_events, uint32_t new_events)
{
    (void)old_events;
    if (fd < 0)
        return -EBADF;
    int rc = ensure_slot_map(b, fd);
    if (rc < 0)
        return rc;
    int slot = b->slot_of[fd];
    short pev = (short)((new_events & AEV_POLL_IN ? POLLIN : 0) | (new_events & AEV_POLL_OUT ? POLLOUT : 0));
    if (new_events == 0) {
        if (slot < 0)
            return 0;
        int last = --b->npfds;
        if (slot != last) {
            b->pfds[slot] = b->pfds[last];
            b->slot_of[b->pfds[slot].fd] = slot;
        }
        b->slot_of[fd] = -1;
        return 0;
    }
    if (slot >= 0) {
        b->pfds[slot].events = pev;
        return 0;
    }
    if (fcntl(fd, F_GETFD) < 0)
        return -errno;
    if (b->npfds == b->cappfds) {
        int cap = b->cappfds * 2;
        struct pollfd *n = b->host->realloc(b->pfds, (size_t)cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        b->pfds = n;
        b->cappfds = cap;
    }
    b->pfds[b->npfds] = (struct pollfd){.fd = fd, .events = pev};
    b->slot_of[fd] = b->npfds++;
    return 0;
}

static int poll_backend_wait(aev_poll_backend_t *b, int64_t timeout_ns, aev_poll_event_t *out, int max)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    int n = ppoll(b->pfds, (nfds_t)b->npfds, tsp, NULL);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (n == 0)
        return 0;
    if (b->pfds[0].revents) {
        char buf[64];
        while (read(b->wake[0], buf, sizeof buf) > 0)
            ;
        n--;
    }
    int k = 0;
    int count = b->npfds - 1;
    for (int j = 0; j < count && n > 0 && k < max; j++) {
        int i = 1 + (b->rotate + j) % count;
        short r = b->pfds[i].revents;
        if (!r)
            continue;
        n--;
        out[k].kind = AEV_POLL_EVENT_FD;
        out[k].fd = b->pfds[i].fd;
        out[k].events = (r & POLLIN ? AEV_POLL_IN : 0u) | (r & POLLOUT ? AEV_POLL_OUT : 0u) |
                        (r & POLLERR ? AEV_POLL_ERR : 0u) | (r & POLLHUP ? AEV_POLL_HUP : 0u) |
                        (r & POLLNVAL ? AEV_POLL_NVAL : 0u);
        k++;
    }
    if (count > 0)
        b->rotate = (b->rotate + 1) % count;
    return k;
}

static int poll_backend_wake(aev_poll_backend_t *b)
{
    char c = 1;
    if (write(b->wake[1], &c, 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static const aev_poll_ops_t poll_ops = {
    .version = AEV_POLL_OPS_VERSION,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT,
    .create = poll_backend_create,
    .destroy = poll_backend_destroy,
    .watch = poll_backend_watch,
    .wait = poll_backend_wait,
    .wake = poll_backend_wake,
};

static const void *poll_init(const aev_host_t *host)
{
    (void)host;
    return &poll_ops;
}

AEV_PLUGIN_DEFINE(aev_poll_poll) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_POLL,
    .name = "poll",
    .version = "1.0",
    .description = "POSIX poll(2) readiness engine",
    .priority = 20,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT,
    .probe = NULL,
    .init = poll_init,
};
