/* libaev plugin poll/select - a readiness engine over pselect(2).
 * select(2) cannot watch an fd at or above FD_SETSIZE: such an fd is refused
 * with -ERANGE and a clear message instead of writing past the fd_set. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "aev/plugin.h"

struct aev_poll_backend {
    const aev_host_t *host;
    fd_set rd, wr; /* interest */
    int maxfd;     /* highest watched fd, or -1 */
    int wake[2];
};

static int select_backend_create(const aev_host_t *host, const aev_plugin_context_t *ctx,
                                 aev_poll_backend_t **out)
{
    (void)ctx;
    aev_poll_backend_t *b = host->alloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    memset(b, 0, sizeof *b);
    b->host = host;
    FD_ZERO(&b->rd);
    FD_ZERO(&b->wr);
    b->maxfd = -1;
    if (pipe2(b->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        int err = -errno;
        host->set_error_detail("pipe2: %s", strerror(-err));
        host->free(b);
        return err;
    }
    if (b->wake[0] >= FD_SETSIZE) {
        host->set_error_detail("the select poller's wake-up pipe got fd %d, at or above FD_SETSIZE (%d)",
                               b->wake[0], FD_SETSIZE);
        close(b->wake[0]);
        close(b->wake[1]);
        host->free(b);
        return -ERANGE;
    }
    *out = b;
    return 0;
}

static void select_backend_destroy(aev_poll_backend_t *b)
{
    close(b->wake[0]);
    close(b->wake[1]);
    b->host->free(b);
}

static int select_backend_watch(aev_poll_backend_t *b, int fd, uint32_t old_events, uint32_t new_events)
{
    if (fd < 0)
        return -EBADF;
    if (fd >= FD_SETSIZE) {
        if (new_events == 0)
            return 0;
        b->host->set_error_detail("fd %d is at or above FD_SETSIZE (%d): the select poller cannot watch it; "
                                  "use the epoll or poll plugin", fd, FD_SETSIZE);
        return -ERANGE;
    }
    if (!old_events && new_events && fcntl(fd, F_GETFD) < 0)
        return -errno;
    if (new_events & AEV_POLL_IN)
        FD_SET(fd, &b->rd);
    else
        FD_CLR(fd, &b->rd);
    if (new_events & AEV_POLL_OUT)
        FD_SET(fd, &b->wr);
    else
        FD_CLR(fd, &b->wr);
    if (new_events && fd > b->maxfd)
        b->maxfd = fd;
    while (b->maxfd >= 0 && !FD_ISSET(b->maxfd, &b->rd) && !FD_ISSET(b->maxfd, &b->wr))
        b->maxfd--;
    return 0;
}

/* After EBADF: report every watched fd that is no longer open, and forget it. */
static int report_closed(aev_poll_backend_t *b, aev_poll_event_t *out, int max)
{
    int k = 0;
    for (int fd = 0; fd <= b->maxfd && k < max; fd++) {
        if ((FD_ISSET(fd, &b->rd) || FD_ISSET(fd, &b->wr)) && fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            out[k].kind = AEV_POLL_EVENT_FD;
            out[k].fd = fd;
            out[k].events = AEV_POLL_NVAL;
            k++;
            FD_CLR(fd, &b->rd);
            FD_CLR(fd, &b->wr);
        }
    }
    return k;
}

static int select_backend_wait(aev_poll_backend_t *b, int64_t timeout_ns, aev_poll_event_t *out, int max)
{
    fd_set rd = b->rd, wr = b->wr;
    FD_SET(b->wake[0], &rd);
    int nfds = (b->maxfd > b->wake[0] ? b->maxfd : b->wake[0]) + 1;
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    int n = pselect(nfds, &rd, &wr, NULL, tsp, NULL);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        if (errno == EBADF)
            return report_closed(b, out, max);
        return -errno;
    }
    if (n == 0)
        return 0;
    if (FD_ISSET(b->wake[0], &rd)) {
        char buf[64];
        while (read(b->wake[0], buf, sizeof buf) > 0)
            ;
    }
    int k = 0;
    for (int fd = 0; fd <= b->maxfd && k < max; fd++) {
        uint32_t e = (FD_ISSET(fd, &rd) && FD_ISSET(fd, &b->rd) ? AEV_POLL_IN : 0u) |
                     (FD_ISSET(fd, &wr) ? AEV_POLL_OUT : 0u);
        if (!e)
            continue;
        out[k].kind = AEV_POLL_EVENT_FD;
        out[k].fd = fd;
        out[k].events = e;
        k++;
    }
    return k;
}

static int select_backend_wake(aev_poll_backend_t *b)
{
    char c = 1;
    if (write(b->wake[1], &c, 1) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

static const aev_poll_ops_t select_ops = {
    .version = AEV_POLL_OPS_VERSION,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_FD_LIMIT | AEV_POLL_CAP_NS_TIMEOUT,
    .create = select_backend_create,
    .destroy = select_backend_destroy,
    .watch = select_backend_watch,
    .wait = select_backend_wait,
    .wake = select_backend_wake,
};

static const void *select_init(const aev_host_t *host)
{
    (void)host;
    return &select_ops;
}

AEV_PLUGIN_DEFINE(aev_poll_select) = {
    .magic = AEV_PLUGIN_MAGIC,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(aev_plugin_descriptor_t),
    .family = AEV_FAMILY_POLL,
    .name = "select",
    .version = "1.0",
    .description = "POSIX select(2) readiness engine (fds below FD_SETSIZE only)",
    .priority = 10,
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_FD_LIMIT | AEV_POLL_CAP_NS_TIMEOUT,
    .probe = NULL,
    .init = select_init,
};
