/* libaev core - loop.create_connection: resolve, try the addresses in order,
 * and wrap the connected socket in a stream transport.
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
    rc = aev_loop_getaddrinfo(loop, j->host, service, &gai, &lookup);
    void *addrs = NULL, *laddrs = NULL;
    if (rc == 0)
        rc = aev_await(lookup, &addrs);
    if (rc == 0 && j->local_host) {
        char lservice[16];
        snprintf(lservice, sizeof lservice, "%d", j->opts.local_port);
        aev_getaddrinfo_options_t lgai = gai;
        lgai.flags |= AI_PASSIVE;
        rc = aev_loop_getaddrinfo(loop, j->local_host, lservice, &lgai, &local);
        if (rc == 0)
            rc = aev_await(local, &laddrs);
    }
    char attempts[1024] = "";
    int first_error = 0, connected = -1;
    for (const struct addrinfo *ai = addrs; rc == 0 && ai && connected < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        int err = fd < 0 ? -errno : 0;
        if (err == 0 && laddrs) { /* bind to the first local address of the same family */
            err = -EADDRNOTAVAIL;
            for (const struct addrinfo *la = laddrs; la; la = la->ai_next)
                if (la->ai_family == ai->ai_family) {
                    err = bind(fd, la->ai_addr, la->ai_addrlen) < 0 ? -errno : 0;
                    break;
                }
        }
        if (err == 0)
            err = aev_task_sock_connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (err == 0) {
            connected = fd;
            break;
        }
        if (fd >= 0)
            close(fd);
        if (err == AEV_ECANCELLED) {
            rc = err;
            break;
        }
        if (!first_error)
            first_error = err;
        note_attempt(attempts, sizeof attempts, ai->ai_addr, err);
    }
    char detail[1100];
    const char *lookup_detail = NULL;
    if (rc < 0 && lookup && aev_future_done(lookup) && aev_future_error(lookup) < 0)
        lookup_detail = aev_future_error_detail(lookup);
    else if (rc < 0 && local && aev_future_done(local) && aev_future_error(local) < 0)
        lookup_detail = aev_future_error_detail(local);
    if (lookup_detail)
        snprintf(detail, sizeof detail, "%s", lookup_detail);
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
    if (o.happy_eyeballs_delay != 0 || o.interleave != 0) {
        aev__set_detail("happy_eyeballs_delay and interleave (RFC 8305) are not implemented yet");
        return AEV_ENOT_SUPPORTED;
    }
    if (o.use_sock && (host || port || o.local_host)) {
        aev__set_detail("host/port/local_addr and sock can not be specified at the same time");
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
