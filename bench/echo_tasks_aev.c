/* echo_tasks_aev - a TCP echo server with one task per connection doing
 * sock_recv / sock_sendall (uvloop's vmbench "sockets" mode), a contender for
 * `run-peers.sh --server` (../shared/bench/README.md).
 *
 * usage: echo_tasks_aev PORT      (listens on 127.0.0.1:PORT; SIGTERM ends it)
 *
 * The accept loop is a task too (sock_accept). Each connection task receives
 * into its own 64 KiB buffer (the raw epoll server reads 64 KiB per event) and
 * sends it all back before it receives again. */
#include <aev/aev.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include "bench_util.h"

#define BUF_SIZE 65536

static int serve_connection(aev_future_t *self, void *arg)
{
    (void)self;
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(BUF_SIZE);
    if (!buf)
        bench_die("out of memory");
    for (;;) {
        ssize_t n = aev_task_sock_recv(fd, buf, BUF_SIZE);
        if (n <= 0)
            break;
        if (aev_task_sock_sendall(fd, buf, (size_t)n, NULL) < 0)
            break;
    }
    free(buf);
    close(fd);
    return 0;
}

static int accept_loop(aev_future_t *self, void *arg)
{
    int lfd = (int)(intptr_t)arg;
    aev_loop_t *loop = aev_future_get_loop(self);
    for (;;) {
        int fd = aev_task_sock_accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (fd == -ECONNABORTED || fd == -EMFILE || fd == -ENFILE)
                continue;
            return fd;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int rc = aev_loop_create_task(loop, NULL, serve_connection, (void *)(intptr_t)fd, NULL);
        if (rc < 0) {
            close(fd);
            fprintf(stderr, "create_task: %s\n", aev_strerror(rc));
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2)
        bench_die("usage: %s PORT", argv[0]);
    uint64_t port = bench_parse_u64(argv[1], "port");
    if (port == 0 || port > 65535)
        bench_die("bad port: '%s'", argv[1]);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        bench_die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        bench_die("bind 127.0.0.1:%d: %s", (int)port, strerror(errno));
    if (listen(lfd, 1024) < 0)
        bench_die("listen: %s", strerror(errno));

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0)
        bench_die("aev_loop_new: %s: %s", aev_strerror(rc), aev_error_detail());
    aev_future_t *acceptor;
    rc = aev_loop_create_task(loop, &(aev_task_options_t){.name = "accept"}, accept_loop,
                              (void *)(intptr_t)lfd, &acceptor);
    if (rc < 0)
        bench_die("create_task: %s", aev_strerror(rc));
    rc = aev_loop_run_until_complete(loop, acceptor);
    fprintf(stderr, "accept loop ended: %s\n", aev_strerror(rc));
    aev_future_unref(acceptor);
    aev_loop_free(loop);
    return 1;
}
