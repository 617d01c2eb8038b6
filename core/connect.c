/* libaev core - loop.create_connection: resolve, try the addresses in order (or
 * race them, Happy Eyeballs: RFC 8305, as asyncio's staggered_race), and wrap the
 * connected socket in a stream transport.
 *
 * The whole operation is a task of the core (asyncio's create_connection is a
 * coroutine too): the future the caller gets is that task, so cancelling it
 * stops the connection attempt at whatever it is waiting for (the lookup, or a
 * connect), and the socket of an attempt is closed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "aev/dns.h"
#include "aev/sock.h"
#include "stream_internal.h"
#include "task_internal.h"

typedef struct connect_job {
    aev_protocol_factory_fn factory;
    void *userdata;
    char *host;
    int port;
    aev_connection_options_t opts;
    char *local_host;
    char *unix_path; /* create_unix_connection */
} connect_job_t;

static void job_free(connect_job_t *j)
{
    free(j->host);
    free(j->local_host);
    free(j->unix_path);
    free(j);
}

static void job_free_void(void *j)
{
    job_free(j);
}

static void transport_release(void *value)
{
    aev_transport_unref(value);
}

/* Appends "('addr', port): message" to the attempts text. */
static void note_attempt(char *buf, size_t size, const struct sockaddr *sa, int err)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof host);
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    size_t len = strlen(buf);
    if (len + 1 < size)
        snprintf(buf + len, size - len, "%s('%s', %d): %s", len ? ", " : "", host, port, aev_strerror(err));
}

/* ---- the addresses, in the order they are tried -------------------------------------- */

/* The addresses of list in the order create_connection tries them (*out: n pointers into
 * list, malloc'ed; NULL when n is 0). interleave 0 keeps getaddrinfo's order; otherwise the
 * addresses are interleaved by family as asyncio's _interleave_addrinfos does: families in
 * the order they first appear, the first interleave - 1 addresses of the first family, then
 * one address of each family in turn ("First Address Family Count", RFC 8305 section 4). */
static int order_addresses(const struct addrinfo *list, int interleave, const struct addrinfo ***out,
                           size_t *np)
{
    size_t n = 0;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
        n++;
    *out = NULL;
    *np = n;
    if (n == 0)
        return 0;
    const struct addrinfo **order = malloc(n * sizeof *order);
    const struct addrinfo **next = malloc(n * sizeof *next); /* per family: its next address */
    if (!order || !next) {
        free(order);
        free(next);
        return -ENOMEM;
    }
    size_t k = 0;
    if (interleave <= 0) {
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
            order[k++] = ai;
        free(next);
        *out = order;
        return 0;
    }
    size_t nfam = 0; /* next[f]: the first address of family f, families by first appearance */
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        size_t f = 0;
        while (f < nfam && next[f]->ai_family != ai->ai_family)
            f++;
        if (f == nfam)
            next[nfam++] = ai;
    }
    for (int c = 1; c < interleave && next[0]; c++) { /* the first family's head start */
        const struct addrinfo *ai = next[0];
        order[k++] = ai;
        do
            ai = ai->ai_next;
        while (ai && ai->ai_family != order[k - 1]->ai_family);
        next[0] = ai;
    }
    while (k < n) {
        for (size_t f = 0; f < nfam; f++) {
            const struct addrinfo *ai = next[f];
            if (!ai)
                continue;
            order[k++] = ai;
            int family = ai->ai_family;
            do
                ai = ai->ai_next;
            while (ai && ai->ai_family != family);
            next[f] = ai;
        }
    }
    free(next);
    *out = order;
    return 0;
}

/* Opens the socket of one attempt, bound to the first local address of its family when
 * local_addr was given: 0 and *fdp, or a negative error and *fdp = -1 (nothing left open). */
static int attempt_open(const struct addrinfo *ai, const struct addrinfo *laddrs, int *fdp)
{
    *fdp = -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (laddrs) {
        int err = -EADDRNOTAVAIL;
        for (const struct addrinfo *la = laddrs; la; la = la->ai_next)
            if (la->ai_family == ai->ai_family) {
                err = bind(fd, la->ai_addr, la->ai_addrlen) < 0 ? -errno : 0;
                break;
            }
        if (err < 0) {
            close(fd);
            return err;
        }
    }
    *fdp = fd;
    return 0;
}

/* ---- Happy Eyeballs ------------------------------------------------------------------- */

/* One connection attempt of the race. */
typedef struct attempt {
    const struct addrinfo *ai;
    int fd;            /* -1 once closed */
    aev_future_t *fut; /* its sock_connect, until it is read */
    int err;           /* why it failed; 0 while it runs, or for the winner */
} attempt_t;

/* Ends an attempt that did not win: stops its connect (its watcher is removed before the
 * socket is closed, so a new socket taking the same number is never confused with it) and
 * closes the socket. */
static void attempt_close(aev_loop_t *loop, attempt_t *a)
{
    if (a->fut) {
        if (!aev_future_done(a->fut)) {
            aev_future_cancel(a->fut, NULL);
            aev_loop_remove_writer(loop, a->fd);
        } else {
            (void)aev_future_error(a->fut); /* read: never "exception was never retrieved" */
        }
        aev_future_unref(a->fut);
        a->fut = NULL;
    }
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
}

/* The staggered race of RFC 8305 section 5, as asyncio's staggered_race runs it: the first
 * attempt starts at once; the next one starts when the latest one fails or when delay
 * seconds have passed since it started, whichever comes first; the first connection made
 * wins and every other attempt is stopped and its socket closed. Returns 0 with *connected
 * the winner's fd, or 0 with *connected -1 when every attempt failed (their errors noted in
 * attempt order in the attempts text, the first in *first_error); AEV_ECANCELLED when the
 * task is cancelled (every socket closed), or another negative code. */
static int happy_eyeballs(aev_loop_t *loop, const struct addrinfo *const *order, size_t n,
                          const struct addrinfo *laddrs, double delay, int *connected, char *attempts,
                          size_t attempts_size, int *first_error)
{
    *connected = -1;
    if (n == 0)
        return 0;
    attempt_t *a = calloc(n, sizeof *a);
    aev_future_t **running = calloc(n, sizeof *running);
    if (!a || !running) {
        free(a);
        free(running);
        return -ENOMEM;
    }
    size_t next = 0, winner = n;
    double due = 0; /* when the latest attempt's delay is over */
    int start = 1;  /* start the next attempt now */
    int rc = 0;
    for (;;) {
        if (start && next < n) {
            attempt_t *x = &a[next++];
            start = 0;
            x->ai = order[next - 1];
            x->err = attempt_open(x->ai, laddrs, &x->fd);
            if (x->err == 0)
                x->err = aev_loop_sock_connect(loop, x->fd, x->ai->ai_addr, x->ai->ai_addrlen, &x->fut);
            if (x->err < 0) {
                attempt_close(loop, x);
                start = 1; /* a failure starts the next attempt at once */
                continue;
            }
            due = aev_loop_time(loop) + delay;
        }
        /* the outcomes so far */
        size_t nrunning = 0;
        for (size_t i = 0; i < next && winner == n; i++) {
            attempt_t *x = &a[i];
            if (!x->fut)
                continue;
            if (!aev_future_done(x->fut)) {
                running[nrunning++] = x->fut;
                continue;
            }
            int err = aev_future_error(x->fut);
            if (err == 0) {
                winner = i;
                break;
            }
            x->err = err;
            attempt_close(loop, x);
            if (i == next - 1)
                start = 1;
        }
        if (winner < n || (nrunning == 0 && next == n))
            break;
        double left = next < n ? due - aev_loop_time(loop) : -1.0; /* -1: no more to start */
        if (next < n && (start || left <= 0 || nrunning == 0)) {
            start = 1;
            continue;
        }
        /* wait for an attempt to end, or for the delay of the latest one */
        aev_future_t *w = NULL;
        rc = aev_future_wait(loop, running, nrunning, left, AEV_WAIT_FIRST_COMPLETED, &w);
        if (rc == 0)
            rc = aev_await(w, NULL);
        aev_future_unref(w);
        if (rc < 0)
            break;
    }
    for (size_t i = 0; i < next; i++) {
        if (i == winner) {
            aev_future_unref(a[i].fut);
            *connected = a[i].fd;
            continue;
        }
        attempt_close(loop, &a[i]);
        if (rc == 0 && winner == n) {
            if (!*first_error)
                *first_error = a[i].err;
            note_attempt(attempts, attempts_size, a[i].ai->ai_addr, a[i].err);
        }
    }
    free(a);
    free(running);
    return rc;
}

/* Makes the transport on a connected fd and waits for connection_made. */
static int finish(aev_future_t *self, connect_job_t *j, int fd)
{
    aev_loop_t *loop = aev_future_get_loop(self);
    aev_future_t *made = NULL;
    int rc = aev_loop_create_future(loop, &made);
    aev_transport_t *t = NULL;
    if (rc == 0)
        rc = aev__stream_new(loop, fd, j->factory, j->userdata, NULL, &t);
    if (rc < 0) {
        close(fd);
        aev_future_unref(made);
        return rc;
    }
    t->made_waiter = aev_future_ref(made);
    void *v = NULL;
    rc = aev_await(made, &v);
    if (rc == 0)
        aev_task_return(self, aev_transport_ref(v), transport_release);
    else if (rc == AEV_ECANCELLED)
        aev_transport_abort(t);
    aev_future_unref(made);
    return rc;
}

static int connect_task(aev_future_t *self, void *arg)
{
    connect_job_t *j = arg;
    aev_loop_t *loop = aev_future_get_loop(self);
    int rc;
    if (j->opts.use_sock) {
        int fd = j->opts.sock;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            rc = -errno;
            job_free(j);
            return aev_task_fail(self, rc, "sock is not a usable socket");
        }
        rc = finish(self, j, fd);
        job_free(j);
        return rc;
    }
    if (j->unix_path) {
        struct sockaddr_un un;
        socklen_t len;
        rc = aev__unix_address(j->unix_path, &un, &len);
        int fd = rc < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (rc == 0 && fd < 0)
            rc = -errno;
        if (rc == 0)
            rc = aev_task_sock_connect(fd, (struct sockaddr *)&un, len);
        if (rc == 0) {
            rc = finish(self, j, fd);
            job_free(j);
            return rc;
        }
        if (fd >= 0)
            close(fd);
        char detail[160];
        snprintf(detail, sizeof detail, "connect to '%s': %s", j->unix_path, aev_strerror(rc));
        job_free(j);
        return rc == AEV_ECANCELLED ? rc : aev_task_fail(self, rc, detail);
    }
    char service[16];
    snprintf(service, sizeof service, "%d", j->port);
    aev_getaddrinfo_options_t gai = {.family = j->opts.family, .type = SOCK_STREAM, .proto = j->opts.proto,
                                     .flags = j->opts.flags};
    aev_future_t *lookup = NULL, *local = NULL;
    char detail[1100] = "";
    rc = aev_loop_getaddrinfo(loop, j->host, service, &gai, &lookup);
    if (rc < 0) /* refused at once (bad family, ...): no future holds the reason */
        snprintf(detail, sizeof detail, "%s", aev_error_detail());
    void *addrs = NULL, *laddrs = NULL;
    if (rc == 0)
        rc = aev_await(lookup, &addrs);
    if (rc == 0 && j->local_host) {
        char lservice[16];
        snprintf(lservice, sizeof lservice, "%d", j->opts.local_port);
        aev_getaddrinfo_options_t lgai = gai;
        lgai.flags |= AI_PASSIVE;
        rc = aev_loop_getaddrinfo(loop, j->local_host, lservice, &lgai, &local);
        if (rc < 0)
            snprintf(detail, sizeof detail, "local_addr: %s", aev_error_detail());
        if (rc == 0)
            rc = aev_await(local, &laddrs);
    }
    const struct addrinfo **order = NULL;
    size_t n = 0;
    double delay = j->opts.happy_eyeballs_delay;
    if (rc == 0)
        rc = order_addresses(addrs, j->opts.interleave ? j->opts.interleave : delay > 0 ? 1 : 0, &order, &n);
    char attempts[1024] = "";
    int first_error = 0, connected = -1;
    if (rc == 0 && delay > 0) {
        rc = happy_eyeballs(loop, order, n, laddrs, delay, &connected, attempts, sizeof attempts, &first_error);
    } else {
        for (size_t i = 0; rc == 0 && i < n && connected < 0; i++) {
            const struct addrinfo *ai = order[i];
            int fd;
            int err = attempt_open(ai, laddrs, &fd);
            if (err == 0)
                err = aev_task_sock_connect(fd, ai->ai_addr, ai->ai_addrlen);
            if (err == 0) {
                connected = fd;
                break;
            }
            if (fd >= 0) {
                /* the task may still hold its watcher on fd (kept for a next wait on it): drop
                 * it before the number is reused by the next attempt's socket */
                aev_loop_remove_writer(loop, fd);
                close(fd);
            }
            if (err == AEV_ECANCELLED) {
                rc = err;
                break;
            }
            if (!first_error)
                first_error = err;
            note_attempt(attempts, sizeof attempts, ai->ai_addr, err);
        }
    }
    free(order);
    const char *lookup_detail = NULL;
    if (rc < 0 && lookup && aev_future_done(lookup) && aev_future_error(lookup) < 0)
        lookup_detail = aev_future_error_detail(lookup);
    else if (rc < 0 && local && aev_future_done(local) && aev_future_error(local) < 0)
        lookup_detail = aev_future_error_detail(local);
    if (lookup_detail) /* copied: the lookups are released below */
        snprintf(detail, sizeof detail, "%s", lookup_detail);
    lookup_detail = detail[0] ? detail : NULL;
    aev_future_unref(lookup);
    aev_future_unref(local);
    if (rc == 0 && connected >= 0) {
        rc = finish(self, j, connected);
        job_free(j);
        return rc;
    }
    if (rc == 0) {
        rc = first_error ? first_error : -EHOSTUNREACH;
        snprintf(detail, sizeof detail, "%s %s", j->opts.all_errors ? "every attempt failed:" : "connect failed:",
                 attempts);
        lookup_detail = detail;
    }
    job_free(j);
    return rc == AEV_ECANCELLED ? rc : aev_task_fail(self, rc, lookup_detail);
}

int aev_loop_create_connection(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, const char *host,
                               int port, const aev_connection_options_t *opts, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out)
        return -EINVAL;
    aev_connection_options_t o = opts ? *opts : (aev_connection_options_t){0};
    if (o.ssl) {
        aev__set_detail("ssl needs the tls plugin family, which libaev does not have yet");
        return AEV_ENOT_SUPPORTED;
    }
    if (o.server_hostname || o.ssl_handshake_timeout != 0 || o.ssl_shutdown_timeout != 0) {
        aev__set_detail("server_hostname and the ssl timeouts are only meaningful with ssl");
        return -EINVAL;
    }
    if (!(o.happy_eyeballs_delay >= 0)) { /* NaN too */
        aev__set_detail("happy_eyeballs_delay must be 0 (off) or a positive number of seconds, not %g",
                        o.happy_eyeballs_delay);
        return -EINVAL;
    }
    if (o.interleave < 0) {
        aev__set_detail("interleave must be 0 (no reordering) or a positive count, not %d", o.interleave);
        return -EINVAL;
    }
    if (o.use_sock && (host || port || o.local_host)) {
        aev__set_detail("host/port/local_addr and sock can not be specified at the same time");
        return -EINVAL;
    }
    if (o.use_sock && (o.happy_eyeballs_delay > 0 || o.interleave)) {
        aev__set_detail("happy_eyeballs_delay and interleave do not apply to sock (already connected)");
        return -EINVAL;
    }
    if (!o.use_sock && o.family != AF_UNSPEC && o.family != AF_INET && o.family != AF_INET6) {
        aev__set_detail("family %d is not AF_UNSPEC (%d), AF_INET (%d) or AF_INET6 (%d)", o.family, AF_UNSPEC,
                        AF_INET, AF_INET6);
        return -EINVAL;
    }
    if (!o.use_sock && (port < 0 || port > 65535)) {
        aev__set_detail("port %d out of range 0-65535", port);
        return -EINVAL;
    }
    if (!o.use_sock && !host) {
        aev__set_detail("host and port were not specified and no sock specified");
        return -EINVAL;
    }
    connect_job_t *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->factory = factory;
    j->userdata = userdata;
    j->port = port;
    j->opts = o;
    if ((host && !(j->host = strdup(host))) || (o.local_host && !(j->local_host = strdup(o.local_host)))) {
        job_free(j);
        return -ENOMEM;
    }
    j->opts.local_host = NULL;
    int rc = aev_task_new(loop, &(aev_task_options_t){.name = "create_connection"}, connect_task, j, out);
    if (rc < 0) {
        job_free(j);
        return rc;
    }
    ((aev__task_t *)*out)->arg_destroy = job_free_void; /* cancelled before it ran */
    return 0;
}

int aev_loop_create_unix_connection(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata,
                                    const char *path, const aev_connection_options_t *opts, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out)
        return -EINVAL;
    if (opts && opts->use_sock) {
        if (path) {
            aev__set_detail("path and sock can not be specified at the same time");
            return -EINVAL;
        }
        return aev_loop_create_connection(loop, factory, userdata, NULL, 0, opts, out);
    }
    struct sockaddr_un un;
    socklen_t len;
    int rc = aev__unix_address(path, &un, &len); /* bad paths are refused at once */
    if (rc < 0)
        return rc;
    connect_job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->unix_path = strdup(path))) {
        free(j);
        return -ENOMEM;
    }
    j->factory = factory;
    j->userdata = userdata;
    rc = aev_task_new(loop, &(aev_task_options_t){.name = "create_unix_connection"}, connect_task, j, out);
    if (rc < 0) {
        job_free(j);
        return rc;
    }
    ((aev__task_t *)*out)->arg_destroy = job_free_void;
    return 0;
}
