/* libaev core - add_reader/add_writer/remove_reader/remove_writer and the
 * dispatch of readiness events to the watchers' handles.
 *
 * Each watched fd has at most one reader and one writer handle; the loop keeps
 * the engine's interest equal to the union of the two. A readiness event puts
 * the watcher's handle on the ready queue (as CPython's _process_events does);
 * an error or hang-up wakes both. An engine that finds an fd closed behind the
 * loop's back (AEV_POLL_NVAL) gets its watchers dropped and the exception
 * handler is told, with the fd as 'socket'. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io_op.h"
#include "loop_internal.h"

static int ensure_fd(aev_loop_t *loop, int fd)
{
    if (fd < loop->fds_cap)
        return 0;
    int cap = loop->fds_cap ? loop->fds_cap : 64;
    while (cap <= fd)
        cap *= 2;
    aev__fd_watch_t *n = realloc(loop->fds, (size_t)cap * sizeof *n);
    if (!n)
        return -ENOMEM;
    memset(n + loop->fds_cap, 0, (size_t)(cap - loop->fds_cap) * sizeof *n);
    loop->fds = n;
    loop->fds_cap = cap;
    return 0;
}

/* Makes sure the engine watches fd for which (fd's slot exists afterwards). */
static int interest_add(aev_loop_t *loop, int fd, uint32_t which)
{
    int rc = ensure_fd(loop, fd);
    if (rc < 0)
        return rc;
    aev__fd_watch_t *w = &loop->fds[fd];
    uint32_t events = w->events | which;
    if (events != w->events) {
        rc = loop->poll->watch(loop->backend, fd, w->events, events);
        if (rc < 0)
            return rc;
        w->events = events;
    }
    return 0;
}

/* Takes back interest_add when no watcher of that direction came of it. */
static void interest_undo(aev_loop_t *loop, int fd, uint32_t which)
{
    aev__fd_watch_t *w = &loop->fds[fd];
    if (!(which == AEV_POLL_IN ? w->reader : w->writer)) {
        loop->poll->watch(loop->backend, fd, w->events, w->events & ~which);
        w->events &= ~which;
    }
}

static int add_watcher(aev_loop_t *loop, int fd, uint32_t which, const aev_call_options_t *opts,
                       aev_callback_fn cb, void *arg)
{
    if (!loop || !cb)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (fd < 0) {
        aev__set_detail("invalid file descriptor %d", fd);
        return -EBADF;
    }
    rc = interest_add(loop, fd, which);
    if (rc < 0)
        return rc;
    aev__fd_watch_t *w = &loop->fds[fd];
    aev_handle_t *h = opts ? aev__handle_new_ext(loop, opts, cb, arg) : aev__handle_new_fast(loop, cb, arg);
    if (!h) {
        interest_undo(loop, fd, which);
        return -ENOMEM;
    }
    aev_handle_t **slot = which == AEV_POLL_IN ? &w->reader : &w->writer;
    if (*slot) {
        aev_handle_cancel(*slot);
        aev__handle_unref_fast(*slot);
    }
    *slot = h;
    return 0;
}

/* Drops fd's watcher of one direction (the core's own callers: also while the loop closes). */
static int remove_watcher_now(aev_loop_t *loop, int fd, uint32_t which)
{
    if (fd < 0 || fd >= loop->fds_cap)
        return 0;
    aev__fd_watch_t *w = &loop->fds[fd];
    aev_handle_t **slot = which == AEV_POLL_IN ? &w->reader : &w->writer;
    if (!*slot)
        return 0;
    aev_handle_t *h = *slot;
    *slot = NULL;
    uint32_t events = w->events & ~which;
    /* An fd closed behind our back makes the engine fail (EBADF/ENOENT): the
     * watcher is gone all the same. */
    (void)loop->poll->watch(loop->backend, fd, w->events, events);
    w->events = events;
    aev_handle_cancel(h);
    aev__handle_unref_fast(h);
    return 1;
}

static int remove_watcher(aev_loop_t *loop, int fd, uint32_t which)
{
    if (!loop)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc == AEV_ECLOSED ? 0 : rc;
    return remove_watcher_now(loop, fd, which);
}

int aev_loop_add_reader(aev_loop_t *loop, int fd, aev_callback_fn cb, void *arg)
{
    return add_watcher(loop, fd, AEV_POLL_IN, NULL, cb, arg);
}

int aev_loop_add_reader_ex(aev_loop_t *loop, int fd, const aev_call_options_t *opts,
                           aev_callback_fn cb, void *arg)
{
    return add_watcher(loop, fd, AEV_POLL_IN, opts, cb, arg);
}

int aev_loop_remove_reader(aev_loop_t *loop, int fd)
{
    return remove_watcher(loop, fd, AEV_POLL_IN);
}

int aev_loop_add_writer(aev_loop_t *loop, int fd, aev_callback_fn cb, void *arg)
{
    return add_watcher(loop, fd, AEV_POLL_OUT, NULL, cb, arg);
}

int aev_loop_add_writer_ex(aev_loop_t *loop, int fd, const aev_call_options_t *opts,
                           aev_callback_fn cb, void *arg)
{
    return add_watcher(loop, fd, AEV_POLL_OUT, opts, cb, arg);
}

int aev_loop_remove_writer(aev_loop_t *loop, int fd)
{
    return remove_watcher(loop, fd, AEV_POLL_OUT);
}

static void drop_closed_fd(aev_loop_t *loop, int fd)
{
    aev__fd_watch_t *w = &loop->fds[fd];
    aev_handle_t *h = w->reader ? w->reader : w->writer;
    if (h)
        aev_handle_ref(h);
    uint32_t had = w->events;
    if (w->reader)
        remove_watcher_now(loop, fd, AEV_POLL_IN);
    if (w->writer)
        remove_watcher_now(loop, fd, AEV_POLL_OUT);
    if (had) {
        aev_exception_context_t ctx = {
            .message = "file descriptor was closed while the loop was watching it; watcher removed",
            .error = -EBADF,
            .handle = h,
            .has_socket = 1,
            .socket = fd,
        };
        aev_loop_call_exception_handler(loop, &ctx);
    }
    if (h)
        aev__handle_unref_fast(h);
}

void aev__io_process(aev_loop_t *loop, const aev_poll_event_t *ev)
{
    if (AEV__UNLIKELY(ev->kind != AEV_POLL_EVENT_FD)) {
        if (ev->kind == AEV_POLL_EVENT_COMPLETION && ev->op)
            aev__op_completion_event(loop, ev);
        return;
    }
    int fd = ev->fd;
    if (AEV__UNLIKELY(fd < 0 || fd >= loop->fds_cap))
        return;
    aev__fd_watch_t *w = &loop->fds[fd];
    uint32_t e = ev->events;
    if (AEV__UNLIKELY(e & AEV_POLL_NVAL)) {
        drop_closed_fd(loop, fd);
        return;
    }
    if ((e & (AEV_POLL_IN | AEV_POLL_ERR | AEV_POLL_HUP)) && w->reader) {
        aev_handle_t *h = w->reader;
        if (h->flags & AEV__H_CANCELLED) {
            remove_watcher_now(loop, fd, AEV_POLL_IN);
        } else if (aev__ready_push(loop, h) == 0) {
            h->refs++;
        }
    }
    if ((e & (AEV_POLL_OUT | AEV_POLL_ERR | AEV_POLL_HUP)) && w->writer) {
        aev_handle_t *h = w->writer;
        if (h->flags & AEV__H_CANCELLED) {
            remove_watcher_now(loop, fd, AEV_POLL_OUT);
        } else if (aev__ready_push(loop, h) == 0) {
            h->refs++;
        }
    }
}

void aev__io_close(aev_loop_t *loop)
{
    for (int fd = 0; fd < loop->fds_cap; fd++) {
        aev__fd_watch_t *w = &loop->fds[fd];
        if (!w->events)
            continue;
        if (loop->debug)
            aev_log(AEV_LOG_WARNING, "aev", "unclosed resource: fd %d is still watched (%s%s) when the loop closes",
                    fd, w->reader ? "reader" : "", w->writer ? (w->reader ? ", writer" : "writer") : "");
        (void)loop->poll->watch(loop->backend, fd, w->events, 0);
        if (w->reader)
            aev__handle_unref_fast(w->reader);
        if (w->writer)
            aev__handle_unref_fast(w->writer);
        w->reader = w->writer = NULL;
        w->events = 0;
    }
}

/* ---- watchers owned by the core (tasks waiting on sockets) ------------------------ */

int aev__io_watch_owned(aev_loop_t *loop, int fd, uint32_t which, aev_callback_fn cb, void *arg)
{
    if (fd < 0) {
        aev__set_detail("invalid file descriptor %d", fd);
        return -EBADF;
    }
    if (fd < loop->fds_cap) {
        aev_handle_t *cur = which == AEV_POLL_IN ? loop->fds[fd].reader : loop->fds[fd].writer;
        if (cur) {
            if (cur->cb == cb && cur->arg == arg && !(cur->flags & AEV__H_CANCELLED))
                return 0; /* still registered from the previous wait: nothing to do */
            aev__set_detail("fd %d already has a %s (another operation or add_%s)", fd,
                            which == AEV_POLL_IN ? "reader" : "writer",
                            which == AEV_POLL_IN ? "reader" : "writer");
            return AEV_EINVALID_STATE;
        }
    }
    int rc = interest_add(loop, fd, which);
    if (rc < 0)
        return rc;
    aev__fd_watch_t *w = &loop->fds[fd];
    aev_handle_t *h = aev__handle_new_fast(loop, cb, arg);
    if (!h) {
        interest_undo(loop, fd, which);
        return -ENOMEM;
    }
    /* the task switches to its own context: the watcher needs none */
    aev_context_unref(h->context);
    h->context = NULL;
    if (which == AEV_POLL_IN)
        w->reader = h;
    else
        w->writer = h;
    return 0;
}

int aev__io_owns(aev_loop_t *loop, int fd, uint32_t which, aev_callback_fn cb, void *arg)
{
    if (fd < 0 || fd >= loop->fds_cap)
        return 0;
    aev_handle_t *cur = which == AEV_POLL_IN ? loop->fds[fd].reader : loop->fds[fd].writer;
    return cur && cur->cb == cb && cur->arg == arg && !(cur->flags & AEV__H_CANCELLED);
}

void aev__io_unwatch_owned(aev_loop_t *loop, int fd, uint32_t which, aev_callback_fn cb, void *arg)
{
    if (aev__io_owns(loop, fd, which, cb, arg))
        remove_watcher_now(loop, fd, which);
}
