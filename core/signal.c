/* libaev core - Unix signals: add_signal_handler / remove_signal_handler.
 *
 * One process-wide table has a slot per signal number: the loop that owns the
 * signal (at most one open loop at a time), the disposition saved when it took
 * the signal, and two atomics the signal handler reads: the owner's wake-up fd
 * and a count of arrivals not yet taken. The handler (on_signal) is all
 * async-signal-safe: it bumps the count, write()s to the wake-up fd and keeps
 * errno. Every loop that handles signals has its own wake-up fd (an eventfd,
 * or a non-blocking pipe elsewhere), watched with the loop's ordinary reader
 * machinery; its reader callback takes the counts of the loop's signals and
 * queues each signal's handle once per arrival, so the user's callbacks run
 * from the ready queue like any other callback, on the loop's thread and in
 * the context captured at add time. The poll engine's own wake-up is not used:
 * the ABI does not promise that it is async-signal-safe for every engine.
 *
 * Add, remove and close take the table's mutex; the handler takes no lock. To
 * close a wake-up fd safely, close first hides it from the handler (wake_fd =
 * 0, after the saved disposition is back), then waits until no handler is
 * running (in_handler == 0): a handler either saw the fd hidden or is counted
 * (both sides sequentially consistent), so it never writes to a closed, reused
 * fd. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "aev/signals.h"
#include "loop_internal.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler needs lock-free atomics");

typedef struct signal_slot {
    aev_loop_t *owner;      /* under table_lock */
    struct sigaction saved; /* the disposition before owner took the signal */
    atomic_int wake_fd;     /* owner's wake-up fd + 1, 0 for none: read by the handler */
    atomic_uint pending;    /* arrivals the owner has not taken yet */
} signal_slot_t;

static signal_slot_t slots[NSIG];
static atomic_int in_handler; /* signal handlers running now, in any thread */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

/* A loop's signal state (loop->signals), made by its first add. */
struct aev__signals {
    int rfd, wfd;                 /* the wake-up fd (one eventfd: rfd == wfd) */
    aev_handle_t *handlers[NSIG]; /* the loop's handle per signal it owns */
};

/* ---- the process-wide handler (async-signal-safe) -------------------------- */

static void on_signal(int signum)
{
    int saved_errno = errno;
    atomic_fetch_add(&in_handler, 1);
    if (signum > 0 && signum < NSIG) {
        int fd = atomic_load(&slots[signum].wake_fd) - 1;
        if (fd >= 0) {
            atomic_fetch_add(&slots[signum].pending, 1);
#ifdef __linux__
            uint64_t one = 1;
            ssize_t n = write(fd, &one, sizeof one);
#else
            char one = 1;
            ssize_t n = write(fd, &one, 1);
#endif
            (void)n; /* EAGAIN: the fd is readable already, the loop will look */
        }
    }
    atomic_fetch_sub(&in_handler, 1);
    errno = saved_errno;
}

/* ---- the loop side --------------------------------------------------------- */

/* The reader of the wake-up fd: drains it, then queues one run of each owned
 * signal's handle per arrival counted since the last look. */
static int on_wake(aev_loop_t *loop, void *arg)
{
    (void)arg;
    struct aev__signals *s = loop->signals;
    char buf[64];
    while (read(s->rfd, buf, sizeof buf) > 0) {
    }
    int err = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        aev_handle_t *h = s->handlers[sig];
        if (!h)
            continue;
        unsigned n = atomic_exchange(&slots[sig].pending, 0);
        for (; n > 0; n--) {
            int rc = aev__ready_push(loop, h);
            if (rc < 0) {
                /* the arrivals not queued are reported (once), not retried */
                if (!err)
                    aev__set_detail("signal %d: %u arrivals dropped: cannot queue their handler",
                                    sig, n);
                err = err ? err : rc;
                break;
            }
            h->refs++;
        }
    }
    return err;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGKILL:
        return "SIGKILL";
    case SIGSTOP:
        return "SIGSTOP";
    default:
        return "signal";
    }
}

/* Checks signum as asyncio's _check_signal does (a ValueError there). */
static int check_signum(int signum)
{
    if (signum <= 0 || signum >= NSIG) {
        aev__set_detail("invalid signal number %d: valid numbers are 1 to %d", signum, NSIG - 1);
        return -EINVAL;
    }
    return 0;
}

/* Makes the loop's wake-up fd and watches it. */
static int signals_init(aev_loop_t *loop)
{
    struct aev__signals *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        free(s);
        aev__set_detail("cannot create the signal wake-up eventfd: %s", strerror(err));
        return -err;
    }
    s->rfd = s->wfd = fd;
#else
    int p[2];
    if (pipe(p) < 0) {
        int err = errno;
        free(s);
        aev__set_detail("cannot create the signal wake-up pipe: %s", strerror(err));
        return -err;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
    }
    s->rfd = p[0];
    s->wfd = p[1];
#endif
    loop->signals = s;
    aev_call_options_t opts = {.name = "signal wake-up"};
    int rc = aev_loop_add_reader_ex(loop, s->rfd, &opts, on_wake, NULL);
    if (rc < 0) {
        close(s->rfd);
        if (s->wfd != s->rfd)
            close(s->wfd);
        free(s);
        loop->signals = NULL;
        if (!aev_error_detail()[0])
            aev__set_detail("cannot watch the signal wake-up fd: %s", aev_strerror(rc));
        return rc;
    }
    /* The reader is the loop's own: it runs in the empty context, not the caller's. */
    aev_handle_t *rh = loop->fds[s->rfd].reader;
    if (rh->context) {
        aev_context_unref(rh->context);
        rh->context = NULL;
    }
    return 0;
}

/* Takes signum for loop: saves the disposition and installs on_signal. */
static int slot_acquire(aev_loop_t *loop, int signum)
{
    signal_slot_t *slot = &slots[signum];
    int rc = 0;
    pthread_mutex_lock(&table_lock);
    if (slot->owner) {
        aev__set_detail("signal %d is handled by another open event loop (%p); a signal belongs "
                        "to one loop at a time: remove its handler there or close that loop first",
                        signum, (void *)slot->owner);
        rc = -EBUSY;
        goto out;
    }
    /* Visible to the handler before it is installed: no arrival is lost. */
    atomic_store(&slot->pending, 0);
    atomic_store(&slot->wake_fd, loop->signals->wfd + 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    if (sigaction(signum, &sa, &slot->saved) < 0) {
        int err = errno;
        atomic_store(&slot->wake_fd, 0);
        if (err == EINVAL)
            aev__set_detail("signal %d cannot be caught (reserved by the system or the C library)",
                            signum);
        else
            aev__set_detail("cannot set up a handler for signal %d: sigaction: %s", signum,
                            strerror(err));
        rc = -err;
        goto out;
    }
    slot->owner = loop;
out:
    pthread_mutex_unlock(&table_lock);
    return rc;
}

/* Gives signum back: restores the saved disposition, hides the wake-up fd. */
static void slot_release_locked(int signum)
{
    signal_slot_t *slot = &slots[signum];
    if (sigaction(signum, &slot->saved, NULL) < 0)
        aev_log(AEV_LOG_ERROR, "aev", "cannot restore the disposition of signal %d: %s", signum,
                strerror(errno));
    atomic_store(&slot->wake_fd, 0);
    atomic_store(&slot->pending, 0);
    slot->owner = NULL;
    memset(&slot->saved, 0, sizeof slot->saved);
}

static int add_handler(aev_loop_t *loop, int signum, const aev_call_options_t *opts,
                       aev_callback_fn cb, void *arg)
{
    if (!loop || !cb) {
        aev__set_detail("add_signal_handler: %s is NULL", loop ? "the callback" : "the loop");
        return -EINVAL;
    }
    int rc = check_signum(signum);
    if (rc < 0)
        return rc;
    if (signum == SIGKILL || signum == SIGSTOP) {
        aev__set_detail("signal %d (%s) cannot be caught", signum, signal_name(signum));
        return -EINVAL;
    }
    rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    if (!loop->signals && (rc = signals_init(loop)) < 0)
        return rc;
    aev_handle_t *h = aev__handle_new_ext(loop, opts, cb, arg);
    if (!h)
        return -ENOMEM;
    aev_handle_t **slot = &loop->signals->handlers[signum];
    if (*slot) {
        /* Replace this loop's handler: the disposition stays as it is. */
        aev_handle_cancel(*slot);
        aev__handle_unref_fast(*slot);
        *slot = h;
        return 0;
    }
    rc = slot_acquire(loop, signum);
    if (rc < 0) {
        aev__handle_unref_fast(h);
        return rc;
    }
    *slot = h;
    return 0;
}

int aev_loop_add_signal_handler(aev_loop_t *loop, int signum, aev_callback_fn cb, void *arg)
{
    return add_handler(loop, signum, NULL, cb, arg);
}

int aev_loop_add_signal_handler_ex(aev_loop_t *loop, int signum, const aev_call_options_t *opts,
                                   aev_callback_fn cb, void *arg)
{
    return add_handler(loop, signum, opts, cb, arg);
}

int aev_loop_remove_signal_handler(aev_loop_t *loop, int signum)
{
    if (!loop)
        return -EINVAL;
    int rc = check_signum(signum);
    if (rc < 0)
        return rc;
    rc = aev__check_usable(loop);
    if (rc < 0)
        return rc == AEV_ECLOSED ? 0 : rc;
    if (!loop->signals || !loop->signals->handlers[signum])
        return 0;
    pthread_mutex_lock(&table_lock);
    slot_release_locked(signum);
    pthread_mutex_unlock(&table_lock);
    aev_handle_t *h = loop->signals->handlers[signum];
    loop->signals->handlers[signum] = NULL;
    aev_handle_cancel(h); /* a run queued for an earlier arrival is dropped */
    aev__handle_unref_fast(h);
    return 1;
}

/* Called by aev_loop_close() while the loop is still open: gives back every
 * signal the loop owns (their saved dispositions restored), stops watching the
 * wake-up fd, waits for handlers still running elsewhere, closes the fd. */
void aev__signal_close(aev_loop_t *loop)
{
    struct aev__signals *s = loop->signals;
    if (!s)
        return;
    pthread_mutex_lock(&table_lock);
    for (int sig = 1; sig < NSIG; sig++)
        if (s->handlers[sig])
            slot_release_locked(sig);
    pthread_mutex_unlock(&table_lock);
    for (int sig = 1; sig < NSIG; sig++) {
        if (s->handlers[sig]) {
            aev_handle_cancel(s->handlers[sig]);
            aev__handle_unref_fast(s->handlers[sig]);
            s->handlers[sig] = NULL;
        }
    }
    (void)aev_loop_remove_reader(loop, s->rfd);
    /* A handler that read our fd before it was hidden may still write to it. */
    while (atomic_load(&in_handler) != 0)
        sched_yield();
    close(s->rfd);
    if (s->wfd != s->rfd)
        close(s->wfd);
    free(s);
    loop->signals = NULL;
}
