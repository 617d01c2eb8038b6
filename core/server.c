/* libaev core - TCP servers (loop.create_server, asyncio.Server): listening
 * sockets, accepting connections into stream transports, and the server
 * object's close / close_clients / abort_clients / wait_closed.
 *
 * Accepting follows asyncio's _accept_connection: on readiness, accept up to
 * backlog connections; when the process is out of descriptors or memory, the
 * error is reported and accepting pauses for one second instead of spinning. */
#include <arpa/inet.h>
#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "aev/dns.h"
#include "stream_internal.h"

#define AEV__ACCEPT_RETRY_DELAY 1.0

typedef struct listener {
    aev_server_t *server;
    int fd;
    aev__op_t accept; /* multishot accept while serving */
    uint8_t held;     /* a cancelled accept holds a server reference until its end (bit 1) */
} listener_t;

struct aev_server {
    aev_loop_t *loop;
    uint32_t refs;
    aev_protocol_factory_fn factory;
    void *userdata;
    listener_t *listeners;
    size_t nlisteners;
    int backlog;
    int keep_alive;
    int serving;
    int closed;
    aev_handle_t *retry;        /* the timer that resumes accepting after EMFILE & co */
    size_t nconns;              /* connections still open (the loop's transports whose server
                                   is this one) */
    aev_future_t *serving_forever; /* the serve_forever() future, while it runs */
    aev_future_t **waiters;     /* wait_closed() futures */
    size_t nwaiters;
    struct aev_server *prev, *next; /* the loop's servers */
    struct server_setup *setup; /* create_server still resolving names, or NULL */
    char *unix_path;            /* a Unix server's socket file, removed at close if still ours */
    dev_t unix_dev;
    ino_t unix_ino;
};

static void server_accept_done(aev__op_t *op, int result, unsigned flags);

/* ---- lifetime ----------------------------------------------------------------------- */

aev_server_t *aev_server_ref(aev_server_t *s)
{
    if (s)
        s->refs++;
    return s;
}

void aev_server_unref(aev_server_t *s);

static void wake_waiters(aev_server_t *s)
{
    if (!s->closed || s->nconns > 0)
        return;
    for (size_t i = 0; i < s->nwaiters; i++) {
        if (!aev_future_done(s->waiters[i]))
            aev_future_set_result(s->waiters[i], NULL, NULL);
        aev_future_unref(s->waiters[i]);
    }
    size_t n = s->nwaiters;
    free(s->waiters);
    s->waiters = NULL;
    s->nwaiters = 0;
    /* each waiter held the server (asyncio's wait_closed keeps it alive): the last release
     * may free it, so this is the caller's last use of s */
    while (n-- > 0)
        aev_server_unref(s);
}

static void stop_accepting(aev_server_t *s)
{
    for (size_t i = 0; i < s->nlisteners; i++)
        if (aev__op_stop_held(s->loop, &s->listeners[i].accept, &s->listeners[i].held, 1))
            s->refs++; /* completion engines: the final completion is still to come; the server
                          (which holds the op) stays until then */
    if (s->retry) {
        aev_handle_cancel(s->retry);
        aev_handle_unref(s->retry);
        s->retry = NULL;
    }
    s->serving = 0;
}

void aev_server_close(aev_server_t *s)
{
    if (!s || s->closed)
        return;
    stop_accepting(s);
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].fd >= 0) {
            /* a listening TCP socket stops listening at shutdown(2) at once, even while a
             * completion engine's accept still holds the file until its cancel ends */
            (void)shutdown(s->listeners[i].fd, SHUT_RDWR);
            close(s->listeners[i].fd);
        }
        s->listeners[i].fd = -1;
    }
    if (s->unix_path) { /* cleanup_socket (3.13): only the file this server made */
        struct stat st;
        if (stat(s->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->unix_dev &&
            st.st_ino == s->unix_ino)
            unlink(s->unix_path);
    }
    s->closed = 1;
    if (s->serving_forever) /* as asyncio's close(): serve_forever ends cancelled */
        aev_future_cancel(s->serving_forever, "the server was closed");
    wake_waiters(s);
}

/* Calls fn on each of s's connections: the loop's transports that name s (fn may close or
 * abort t: the next transport is taken before). */
static void server_conns_each(aev_server_t *s, void (*fn)(aev_transport_t *))
{
    aev_transport_t *next;
    for (aev_transport_t *t = s->nconns ? s->loop->streams : NULL; t; t = next) {
        next = t->next;
        if (t->server == s)
            fn(t);
    }
}

static void conn_forget_server(aev_transport_t *t)
{
    t->server = NULL;
}

void aev_server_unref(aev_server_t *s)
{
    if (!s || --s->refs > 0)
        return;
    s->refs = 1; /* closing may hand out references (accepts whose cancel is on its way) */
    aev_server_close(s);
    if (--s->refs > 0)
        return; /* freed when the last of them comes back */
    /* connections outlive their server (asyncio leaves them open): they forget it */
    aev_loop_t *loop = s->loop;
    server_conns_each(s, conn_forget_server);
    if (s->prev)
        s->prev->next = s->next;
    else if (loop->servers == s)
        loop->servers = s->next;
    if (s->next)
        s->next->prev = s->prev;
    for (size_t i = 0; i < s->nwaiters; i++)
        aev_future_unref(s->waiters[i]);
    free(s->waiters);
    free(s->listeners);
    free(s->unix_path);
    free(s);
    loop->live_futures--;
    aev__loop_object_released(loop);
}

aev_loop_t *aev_server_get_loop(const aev_server_t *s)
{
    return s ? s->loop : NULL;
}

/* ---- accepting ------------------------------------------------------------------------- */

static int retry_accept_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    aev_server_t *s = arg;
    aev_handle_unref(s->retry);
    s->retry = NULL;
    if (!s->closed)
        aev_server_start_serving(s);
    return 0;
}

static void server_accept_done(aev__op_t *op, int fd, unsigned flags)
{
    listener_t *l = (listener_t *)((char *)op - offsetof(listener_t, accept));
    aev_server_t *s = l->server;
    aev_loop_t *loop = s->loop;
    if (!(flags & AEV__OP_MORE) && aev__op_final_held(&l->held, 1)) {
        if (fd >= 0)
            close(fd); /* accepted while the cancel was on its way */
        aev_server_unref(s); /* the final done may free the op (io_op.h) */
        return;
    }
    if (fd < 0) { /* the multishot accept ended */
        int e = -fd;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            aev_exception_context_t ctx = {.message = "socket.accept() out of system resource",
                                           .error = fd, .has_socket = 1, .socket = l->fd};
            aev_loop_call_exception_handler(loop, &ctx);
            stop_accepting(s);
            aev_loop_call_later(loop, AEV__ACCEPT_RETRY_DELAY, retry_accept_cb, s, &s->retry);
            return;
        }
        if (e != ECANCELED) {
            aev_exception_context_t ctx = {.message = "error accepting a connection", .error = fd,
                                           .has_socket = 1, .socket = l->fd};
            aev_loop_call_exception_handler(loop, &ctx);
        }
        /* accept again at the next readiness, as asyncio keeps its reader */
        if (s->serving && !s->closed && aev__op_submit(loop, op) < 0)
            stop_accepting(s);
        return;
    }
    if (!s->serving) { /* accepted after the server stopped: not ours to serve */
        close(fd);
        return;
    }
    if (s->keep_alive) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    aev_transport_t *t = NULL;
    int rc = aev__stream_new(loop, fd, s->factory, s->userdata, s, &t);
    if (rc < 0) {
        close(fd);
        aev_exception_context_t ctx = {.message = "could not make a transport for a new connection",
                                       .error = rc};
        aev_loop_call_exception_handler(loop, &ctx);
        return;
    }
    s->nconns++;
}

void aev__server_connection_gone(aev_server_t *s, aev_transport_t *t)
{
    t->server = NULL;
    s->nconns--;
    wake_waiters(s);
}

int aev_server_start_serving(aev_server_t *s)
{
    if (!s)
        return -EINVAL;
    if (s->closed) {
        aev__set_detail("the server is closed");
        return AEV_EINVALID_STATE;
    }
    if (s->serving)
        return 0;
    for (size_t i = 0; i < s->nlisteners; i++) {
        listener_t *l = &s->listeners[i];
        l->accept.fd = l->fd;
        l->accept.opcode = AEV_OP_ACCEPT;
        l->accept.flags = AEV__OP_MULTISHOT | AEV__OP_COMPLETION_OK;
        l->accept.len = (size_t)(s->backlog > 0 ? s->backlog : 1); /* per readiness, as asyncio */
        l->accept.done = server_accept_done;
        int rc = aev__op_submit(s->loop, &l->accept);
        if (rc < 0) {
            stop_accepting(s);
            return rc;
        }
    }
    s->serving = 1;
    return 0;
}

/* serve_forever's future is done (cancelled, as it never completes otherwise): the server
 * closes, as asyncio's serve_forever does when its task is cancelled. */
static int serve_forever_done(aev_future_t *fut, void *arg)
{
    aev_server_t *s = arg;
    if (s->serving_forever == fut) {
        s->serving_forever = NULL;
        aev_server_close(s);
        aev_future_unref(fut);
    }
    aev_server_unref(s);
    return 0;
}

int aev_server_serve_forever(aev_server_t *s, aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!s)
        return -EINVAL;
    if (s->serving_forever) {
        aev__set_detail("server is already being awaited on serve_forever()");
        return AEV_EINVALID_STATE;
    }
    int rc = aev_server_start_serving(s);
    if (rc < 0)
        return rc;
    rc = aev_loop_create_future(s->loop, out);
    if (rc < 0)
        return rc;
    rc = aev_future_add_done_callback(*out, serve_forever_done, aev_server_ref(s));
    if (rc < 0) {
        aev_server_unref(s);
        aev_future_unref(*out);
        *out = NULL;
        return rc;
    }
    s->serving_forever = aev_future_ref(*out);
    return 0;
}

int aev_server_is_serving(const aev_server_t *s)
{
    return s && s->serving ? 1 : 0;
}

void aev_server_close_clients(aev_server_t *s)
{
    if (!s)
        return;
    server_conns_each(s, aev_transport_close);
}

void aev_server_abort_clients(aev_server_t *s)
{
    if (!s)
        return;
    server_conns_each(s, aev_transport_abort);
}

int aev_server_wait_closed(aev_server_t *s, aev_future_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!s)
        return -EINVAL;
    int rc = aev_loop_create_future(s->loop, out);
    if (rc < 0)
        return rc;
    if (s->closed && s->nconns == 0) {
        aev_future_set_result(*out, NULL, NULL);
        return 0;
    }
    aev_future_t **w = realloc(s->waiters, (s->nwaiters + 1) * sizeof *w);
    if (!w) {
        aev_future_unref(*out);
        *out = NULL;
        return -ENOMEM;
    }
    s->waiters = w;
    s->waiters[s->nwaiters++] = aev_future_ref(*out);
    s->refs++; /* released when the waiters are woken */
    return 0;
}

size_t aev_server_sockets(const aev_server_t *s, int *fds, size_t cap)
{
    if (!s || s->closed)
        return 0;
    for (size_t i = 0; fds && i < s->nlisteners && i < cap; i++)
        fds[i] = s->listeners[i].fd;
    return s->nlisteners;
}

/* ---- create_server ----------------------------------------------------------------------- */

/* One listening socket on addr; -errno with a detail naming the address. */
static int listen_on(const struct sockaddr *addr, socklen_t len, const aev_server_options_t *o, int backlog,
                     int *out)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (addr->sa_family != AF_UNIX && (!o || o->reuse_address >= 0))
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o && o->reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int e = errno;
        close(fd);
        aev__set_detail("reuse_port is not supported here: %s", strerror(e));
        return -e;
    }
    if (addr->sa_family == AF_INET6) /* as asyncio: the v4 socket serves v4 */
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, addr, len) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (addr->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, host, sizeof host);
            port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
        } else if (addr->sa_family == AF_INET6) {
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, host, sizeof host);
            port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
        }
        close(fd);
        if (addr->sa_family == AF_UNIX) {
            const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
            aev__set_detail("error while attempting to bind on path '%s%s': %s", un->sun_path[0] ? "" : "@",
                            un->sun_path[0] ? un->sun_path : un->sun_path + 1, strerror(e));
            return -e;
        }
        aev__set_detail("error while attempting to bind on address ('%s', %d): %s", host, port, strerror(e));
        return -e;
    }
    *out = fd;
    return 0;
}

/* The addresses of host (NULL/"": all interfaces; a comma list): numeric ones into addrs, names
 * (to resolve) into names (strdup'ed). */
static int parse_hosts(const char *host, int port, int family, struct sockaddr_storage *addrs, socklen_t *lens,
                       size_t cap, size_t *n, char **names, size_t *nnames)
{
    *n = 0;
    if (nnames)
        *nnames = 0;
    if (port < 0 || port > 65535) {
        aev__set_detail("port %d out of range 0-65535", port);
        return -EINVAL;
    }
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) {
        aev__set_detail("family %d is not AF_UNSPEC, AF_INET or AF_INET6", family);
        return -EAFNOSUPPORT;
    }
    char buf[1024];
    if (!host || !*host) {
        snprintf(buf, sizeof buf, "%s", family == AF_INET6 ? "::" : family == AF_INET ? "0.0.0.0" : "0.0.0.0,::");
    } else if (snprintf(buf, sizeof buf, "%s", host) >= (int)sizeof buf) {
        aev__set_detail("host list too long");
        return -EINVAL;
    }
    char *save = NULL;
    for (char *h = strtok_r(buf, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
        while (*h == ' ')
            h++;
        if (*n == cap) {
            aev__set_detail("too many hosts (at most %zu)", cap);
            return -EINVAL;
        }
        struct sockaddr_storage *ss = &addrs[*n];
        memset(ss, 0, sizeof *ss);
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (family != AF_INET6 && inet_pton(AF_INET, h, &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            in->sin_port = htons((uint16_t)port);
            lens[(*n)++] = sizeof *in;
        } else if (family != AF_INET && inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)port);
            lens[(*n)++] = sizeof *in6;
        } else if (names && *nnames < cap) {
            names[(*nnames)++] = strdup(h); /* resolved with getaddrinfo */
            if (!names[*nnames - 1]) {
                (*nnames)--;
                return -ENOMEM;
            }
        } else {
            aev__set_detail("host '%s' is not a numeric address of the family asked for", h);
            return -EINVAL;
        }
    }
    return 0;
}

static void server_value_release(void *value)
{
    aev_server_unref(value);
}

#define AEV__SERVER_MAX_ADDRS 64

/* Everything create_server needs once the addresses are known. */
typedef struct server_setup {
    aev_server_t *s;
    aev_future_t *out;
    aev_server_options_t opts;
    int backlog;
    struct sockaddr_storage addrs[AEV__SERVER_MAX_ADDRS];
    socklen_t lens[AEV__SERVER_MAX_ADDRS];
    size_t naddrs;
    aev_future_t *lookups[16]; /* getaddrinfo of the names */
    size_t nlookups, pending;
} server_setup_t;

/* Binds and listens on every address (or the given sock) and starts serving. */
static int server_bind_all(server_setup_t *st)
{
    aev_server_t *s = st->s;
    size_t nl = st->opts.use_sock ? 1 : st->naddrs;
    if (nl == 0) {
        aev__set_detail("no address to listen on");
        return -EADDRNOTAVAIL;
    }
    s->listeners = calloc(nl, sizeof *s->listeners);
    if (!s->listeners)
        return -ENOMEM;
    for (size_t i = 0; i < nl; i++) {
        s->listeners[i].server = s;
        s->listeners[i].fd = -1;
    }
    s->nlisteners = nl;
    int rc = 0;
    if (st->opts.use_sock) {
        int fd = st->opts.sock;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || listen(fd, st->backlog) < 0) {
            rc = -errno;
            aev__set_detail("sock %d cannot listen: %s", fd, strerror(errno));
        } else {
            s->listeners[0].fd = fd;
        }
    } else {
        for (size_t i = 0; i < st->naddrs && rc == 0; i++)
            rc = listen_on((struct sockaddr *)&st->addrs[i], st->lens[i], &st->opts, st->backlog,
                           &s->listeners[i].fd);
    }
    if (rc == 0 && !st->opts.no_start)
        rc = aev_server_start_serving(s);
    return rc;
}

static void setup_free(server_setup_t *st)
{
    for (size_t i = 0; i < st->nlookups; i++)
        aev_future_unref(st->lookups[i]);
    aev_future_unref(st->out);
    free(st);
}

/* Every name is resolved (or failed): bind, and complete create_server's future. */
static int lookup_done(aev_future_t *fut, void *arg)
{
    (void)fut;
    server_setup_t *st = arg;
    if (--st->pending > 0)
        return 0;
    st->s->setup = NULL;
    int rc = 0;
    const char *detail = NULL;
    for (size_t i = 0; i < st->nlookups && rc == 0; i++) {
        void *v = NULL;
        rc = aev_future_result(st->lookups[i], &v);
        if (rc < 0) {
            detail = aev_future_error_detail(st->lookups[i]);
            break;
        }
        for (const struct addrinfo *ai = v; ai; ai = ai->ai_next) {
            if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof st->addrs[0])
                continue;
            int dup = 0; /* getaddrinfo may list an address twice */
            for (size_t k = 0; k < st->naddrs && !dup; k++)
                dup = st->lens[k] == ai->ai_addrlen && memcmp(&st->addrs[k], ai->ai_addr, ai->ai_addrlen) == 0;
            if (dup || st->naddrs == AEV__SERVER_MAX_ADDRS)
                continue;
            memcpy(&st->addrs[st->naddrs], ai->ai_addr, ai->ai_addrlen);
            st->lens[st->naddrs++] = ai->ai_addrlen;
        }
    }
    if (aev_future_cancelled(st->out)) {
        aev_server_unref(st->s); /* nobody waits for it any more */
    } else if (rc == 0 && (rc = server_bind_all(st)) == 0) {
        aev_future_set_result(st->out, st->s, server_value_release);
    } else {
        if (rc == AEV_ECANCELLED)
            aev_future_cancel(st->out, detail);
        else
            aev_future_set_error(st->out, rc, detail ? detail : aev_error_detail());
        aev_server_unref(st->s);
    }
    setup_free(st);
    return 0;
}

int aev_loop_create_server(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, const char *host,
                           int port, const aev_server_options_t *opts, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    server_setup_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    if (opts)
        st->opts = *opts;
    st->backlog = st->opts.backlog > 0 ? st->opts.backlog : 100;
    char *names[16];
    size_t nnames = 0;
    if (st->opts.use_sock) {
        if (host || port) {
            aev__set_detail("host/port and sock can not be specified at the same time");
            free(st);
            return -EINVAL;
        }
    } else {
        rc = parse_hosts(host, port, st->opts.family, st->addrs, st->lens, 16, &st->naddrs, names, &nnames);
        if (rc < 0) {
            for (size_t i = 0; i < nnames; i++)
                free(names[i]);
            free(st);
            return rc;
        }
    }
    aev_server_t *s = calloc(1, sizeof *s);
    if (!s) {
        for (size_t i = 0; i < nnames; i++)
            free(names[i]);
        free(st);
        return -ENOMEM;
    }
    s->loop = loop;
    s->refs = 1;
    s->factory = factory;
    s->userdata = userdata;
    s->backlog = st->backlog;
    s->keep_alive = st->opts.keep_alive;
    loop->live_futures++;
    s->next = loop->servers;
    if (loop->servers)
        loop->servers->prev = s;
    loop->servers = s;
    st->s = s;
    rc = aev_loop_create_future(loop, &st->out);
    /* names: resolve them first (AI_PASSIVE, stream), then bind everything */
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    aev_getaddrinfo_options_t gai = {.family = st->opts.family, .type = SOCK_STREAM,
                                     .flags = st->opts.flags | AI_PASSIVE};
    for (size_t i = 0; i < nnames && rc == 0; i++) {
        rc = aev_loop_getaddrinfo(loop, names[i], service, &gai, &st->lookups[i]);
        if (rc == 0)
            st->nlookups++;
    }
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    if (rc == 0 && st->nlookups == 0) {
        rc = server_bind_all(st);
        if (rc == 0) {
            *out = aev_future_ref(st->out);
            aev_future_set_result(st->out, s, server_value_release);
            setup_free(st);
            return 0;
        }
    }
    if (rc < 0) {
        aev_server_unref(s);
        setup_free(st);
        return rc;
    }
    st->pending = st->nlookups;
    s->setup = st;
    for (size_t i = 0; i < st->nlookups; i++)
        aev_future_add_done_callback(st->lookups[i], lookup_done, st);
    *out = aev_future_ref(st->out);
    return 0;
}

int aev__unix_address(const char *path, struct sockaddr_un *un, socklen_t *len)
{
    size_t n = path ? strlen(path) : 0;
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof un->sun_path || (path[0] == '@' && n == 1)) {
        aev__set_detail("bad Unix socket path '%s' (1 to %zu bytes; '@name' for the abstract namespace)",
                        path ? path : "(null)", sizeof un->sun_path - 1);
        return -EINVAL;
    }
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') /* Linux abstract namespace: a leading NUL, not a file */
        un->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
}

int aev_loop_create_unix_server(aev_loop_t *loop, aev_protocol_factory_fn factory, void *userdata, const char *path,
                                const aev_server_options_t *opts, aev_future_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !factory || !out)
        return -EINVAL;
    int rc = aev__check_usable(loop);
    if (rc < 0)
        return rc;
    server_setup_t *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    if (opts)
        st->opts = *opts;
    st->backlog = st->opts.backlog > 0 ? st->opts.backlog : 100;
    if (st->opts.use_sock && path) {
        aev__set_detail("path and sock can not be specified at the same time");
        free(st);
        return -EINVAL;
    }
    if (!st->opts.use_sock) {
        struct sockaddr_un *un = (struct sockaddr_un *)&st->addrs[0];
        rc = aev__unix_address(path, un, &st->lens[0]);
        if (rc < 0) {
            free(st);
            return rc;
        }
        st->naddrs = 1;
        /* a stale socket file (a server that died) is removed, as asyncio does; any other
         * file makes bind fail with EADDRINUSE */
        struct stat sb;
        if (path[0] != '@' && stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
            unlink(path);
    }
    aev_server_t *s = calloc(1, sizeof *s);
    if (!s || (!st->opts.use_sock && path[0] != '@' && !(s->unix_path = strdup(path)))) {
        free(s);
        free(st);
        return -ENOMEM;
    }
    s->loop = loop;
    s->refs = 1;
    s->factory = factory;
    s->userdata = userdata;
    s->backlog = st->backlog;
    loop->live_futures++;
    s->next = loop->servers;
    if (loop->servers)
        loop->servers->prev = s;
    loop->servers = s;
    st->s = s;
    st->opts.keep_alive = 0;
    rc = aev_loop_create_future(loop, &st->out);
    if (rc == 0)
        rc = server_bind_all(st);
    if (rc == 0 && s->unix_path) {
        struct stat sb;
        if (stat(s->unix_path, &sb) == 0) {
            s->unix_dev = sb.st_dev;
            s->unix_ino = sb.st_ino;
        }
    }
    if (rc < 0) {
        free(s->unix_path); /* not ours: bind failed */
        s->unix_path = NULL;
        aev_server_unref(s);
        setup_free(st);
        return rc;
    }
    *out = aev_future_ref(st->out);
    aev_future_set_result(st->out, s, server_value_release);
    setup_free(st);
    return 0;
}

void aev__servers_loop_close(aev_loop_t *loop)
{
    for (aev_server_t *s = loop->servers, *next; s; s = next) {
        aev_server_ref(s);
        server_setup_t *st = s->setup;
        if (st) { /* still resolving: the lookups are stopped, create_server's future stays
                   * pending as every future of a closed loop, the setup's reference goes */
            s->setup = NULL;
            for (size_t i = 0; i < st->nlookups; i++) {
                aev_future_remove_done_callback(st->lookups[i], lookup_done, st);
                aev_future_cancel(st->lookups[i], "the event loop was closed");
            }
            setup_free(st);
            aev_server_unref(s);
        }
        aev_future_t *forever = s->serving_forever;
        s->serving_forever = NULL;
        aev_server_close(s);
        if (forever) {
            /* the loop is closed: the done callback that held the server will not run */
            aev_future_cancel(forever, "the event loop was closed");
            aev_future_remove_done_callback(forever, serve_forever_done, s);
            aev_future_unref(forever);
            aev_server_unref(s);
        }
        next = s->next;
        aev_server_unref(s);
    }
}
