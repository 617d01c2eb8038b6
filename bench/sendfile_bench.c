/* sendfile_bench - a file to a loopback TCP reader: which way of sending it is fastest on the
 * proactor (io_uring) and how it compares with the selector.
 *
 *   sendfile_bench loop [MIB [RUNS]]         loop.sendfile (aev_loop_sendfile) on the loop the
 *                                            environment picks (AEV_LOOP=selector|proactor)
 *   sendfile_bench uring-poll [MIB [RUNS]]   io_uring: sendfile(2) until EAGAIN, then one
 *                                            IORING_OP_POLL_ADD(POLLOUT), and again (what a
 *                                            native AEV_OP_POLL wait + sendfile(2) costs)
 *   sendfile_bench uring-splice [MIB [RUNS] [PIPE_KIB]]
 *                                            io_uring: per chunk IORING_OP_SPLICE file -> pipe,
 *                                            linked to POLL_ADD(POLLOUT) and SPLICE pipe ->
 *                                            socket (the socket is non-blocking, as a
 *                                            transport's; short sends are finished with more
 *                                            POLL_ADD + SPLICE); the pipe holds PIPE_KIB
 *                                            (default 1024) KiB
 *
 * The file (MIB MiB, default 64) is made in $TMPDIR (or /tmp) and read once before the runs, so
 * every run sends from the page cache. The reader is a thread of this process that recv()s
 * into 256 KiB until it has every byte. Prints one line per run and the medians: MB/s (10^6
 * bytes per second of wall time from the first byte offered to the last byte read) and the
 * sender's CPU time per GB (the process's CPU time less the reader thread's: io_uring's worker
 * threads, which run the splices, count as the sender's).
 * Not a peer-kit program; run it pinned or on a quiet machine, several times. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <aev/aev.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "sendfile_bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

/* ---- the reader ---------------------------------------------------------------------- */

typedef struct reader {
    int fd;
    size_t want, got;
    double end;
    double cpu; /* the reader thread's CPU time */
} reader_t;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    static char buf[256 << 10];
    while (r->got < r->want) {
        ssize_t n = recv(r->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->got += (size_t)n;
    }
    r->end = now();
    r->cpu = thread_cpu();
    return NULL;
}

/* A connected loopback pair: *snd (the sender's, non-blocking) and *rcv. */
static void tcp_pair(int *snd, int *rcv)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0)
        die("listen", errno);
    *rcv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*rcv < 0 || connect(*rcv, (struct sockaddr *)&a, sizeof a) < 0)
        die("connect", errno);
    *snd = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (*snd < 0)
        die("accept", errno);
    close(l);
}

/* ---- the senders --------------------------------------------------------------------- */

static aev_protocol_t quiet_proto;
static aev_protocol_t *quiet_factory(void *ud)
{
    (void)ud;
    return &quiet_proto;
}

static void send_loop(int sock, int file, size_t size)
{
    aev_loop_t *loop = NULL;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0)
        die("aev_loop_new", rc);
    aev_future_t *f = NULL;
    rc = aev_loop_connect_accepted_socket(loop, quiet_factory, NULL, sock, &f);
    if (rc < 0 || (rc = aev_loop_run_until_complete(loop, f)) < 0)
        die("connect_accepted_socket", rc);
    void *t = NULL;
    aev_future_result(f, &t);
    aev_transport_t *tr = aev_transport_ref(t);
    aev_future_unref(f);
    rc = aev_loop_sendfile(loop, tr, file, 0, (int64_t)size, 0, &f);
    if (rc < 0 || (rc = aev_loop_run_until_complete(loop, f)) < 0)
        die("loop.sendfile", rc);
    void *sent = NULL;
    if ((rc = aev_future_result(f, &sent)) < 0 || (size_t)(intptr_t)sent != size)
        die("loop.sendfile result", rc < 0 ? rc : EIO);
    aev_future_unref(f);
    aev_transport_close(tr);
    aev_transport_unref(tr);
    aev_loop_close(loop);
    aev_loop_free(loop);
}

static struct io_uring ring;

static struct io_uring_cqe *wait_one(void)
{
    struct io_uring_cqe *cqe;
    int rc = io_uring_wait_cqe(&ring, &cqe);
    if (rc < 0)
        die("io_uring_wait_cqe", rc);
    return cqe;
}

static void poll_out(int sock)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_poll_add(sqe, sock, POLLOUT);
    io_uring_submit(&ring);
    struct io_uring_cqe *cqe = wait_one();
    if (cqe->res < 0)
        die("poll", cqe->res);
    io_uring_cqe_seen(&ring, cqe);
}

static void send_uring_poll(int sock, int file, size_t size)
{
    off_t off = 0;
    while ((size_t)off < size) {
        ssize_t n = sendfile(sock, file, &off, size - (size_t)off);
        if (n > 0)
            continue;
        if (n == 0)
            die("sendfile: early end of file", EIO);
        if (errno == EAGAIN)
            poll_out(sock);
        else if (errno != EINTR)
            die("sendfile", errno);
    }
}

static void send_uring_splice(int sock, int file, size_t size, size_t pipe_size)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe", errno);
    (void)fcntl(p[1], F_SETPIPE_SZ, (int)pipe_size);
    long real = fcntl(p[1], F_GETPIPE_SZ);
    size_t chunk = real > 0 ? (size_t)real : 65536;
    size_t off = 0;
    while (off < size) {
        size_t want = size - off < chunk ? size - off : chunk;
        /* file -> pipe, then (linked) wait for room, then pipe -> socket */
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_splice(sqe, file, (int64_t)off, p[1], -1, (unsigned)want, 0);
        sqe->flags |= IOSQE_IO_LINK;
        sqe->user_data = 1;
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_poll_add(sqe, sock, POLLOUT);
        sqe->flags |= IOSQE_IO_LINK;
        sqe->user_data = 2;
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_splice(sqe, p[0], -1, sock, -1, (unsigned)want, 0);
        sqe->user_data = 3;
        io_uring_submit(&ring);
        size_t in = 0, out = 0;
        for (int i = 0; i < 3; i++) {
            struct io_uring_cqe *cqe = wait_one();
            int res = cqe->res;
            uint64_t ud = cqe->user_data;
            io_uring_cqe_seen(&ring, cqe);
            if (ud == 1) {
                if (res <= 0)
                    die("splice file -> pipe", res ? res : EIO);
                in = (size_t)res;
            } else if (ud == 3 && res > 0) {
                out = (size_t)res;
            } else if (res < 0 && res != -ECANCELED && res != -EAGAIN) {
                die(ud == 2 ? "poll" : "splice pipe -> socket", res);
            }
        }
        while (out < in) { /* a short send (or a chain cut by a short splice in): the rest */
            sqe = io_uring_get_sqe(&ring);
            io_uring_prep_poll_add(sqe, sock, POLLOUT);
            sqe->flags |= IOSQE_IO_LINK;
            sqe->user_data = 2;
            sqe = io_uring_get_sqe(&ring);
            io_uring_prep_splice(sqe, p[0], -1, sock, -1, (unsigned)(in - out), 0);
            sqe->user_data = 3;
            io_uring_submit(&ring);
            for (int i = 0; i < 2; i++) {
                struct io_uring_cqe *cqe = wait_one();
                int res = cqe->res;
                uint64_t ud = cqe->user_data;
                io_uring_cqe_seen(&ring, cqe);
                if (ud == 3 && res > 0)
                    out += (size_t)res;
                else if (res < 0 && res != -EAGAIN && res != -ECANCELED)
                    die(ud == 2 ? "poll" : "splice pipe -> socket", res);
            }
        }
        off += in;
    }
    close(p[0]);
    close(p[1]);
}

/* ---- main ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    size_t pipe_kib = argc > 4 ? strtoul(argv[4], NULL, 10) : 1024;
    if ((strcmp(mode, "loop") && strcmp(mode, "uring-poll") && strcmp(mode, "uring-splice")) || mib == 0 ||
        runs < 1 || runs > 100) {
        fprintf(stderr, "usage: sendfile_bench loop|uring-poll|uring-splice [MIB [RUNS [PIPE_KIB]]]\n");
        return 2;
    }
    size_t size = mib << 20;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/aev-sendfile-bench-XXXXXX", dir);
    int file = mkstemp(path);
    if (file < 0)
        die("mkstemp", errno);
    unlink(path);
    char *block = malloc(1 << 20);
    for (size_t i = 0; i < (1u << 20); i++)
        block[i] = (char)(i * 131u);
    for (size_t i = 0; i < mib; i++)
        if (write(file, block, 1 << 20) != 1 << 20)
            die("write the file", errno);
    for (size_t i = 0; i < mib; i++) /* into the page cache */
        if (pread(file, block, 1 << 20, (off_t)(i << 20)) != 1 << 20)
            die("read the file", errno);
    free(block);
    if (strncmp(mode, "uring", 5) == 0) {
        int rc = io_uring_queue_init(64, &ring, 0);
        if (rc < 0)
            die("io_uring_queue_init", rc);
    }
    double mbps[100], cpus[100];
    for (int run = 0; run < runs; run++) {
        int snd, rcv;
        tcp_pair(&snd, &rcv);
        reader_t r = {.fd = rcv, .want = size};
        pthread_t th;
        double start = now(), cpu0 = process_cpu();
        pthread_create(&th, NULL, reader_main, &r);
        if (strcmp(mode, "loop") == 0) {
            send_loop(snd, file, size); /* the transport closes snd */
        } else {
            if (strcmp(mode, "uring-poll") == 0)
                send_uring_poll(snd, file, size);
            else
                send_uring_splice(snd, file, size, pipe_kib << 10);
            close(snd);
        }
        pthread_join(th, NULL);
        double cpu = process_cpu() - cpu0 - r.cpu; /* the sender's, io_uring's workers included */
        close(rcv);
        if (r.got != size)
            die("the reader got less than the file", EIO);
        mbps[run] = (double)size / (r.end - start) / 1e6;
        cpus[run] = cpu / ((double)size / 1e9) * 1e3;
        printf("%s run %d: %.0f MB/s, sender CPU %.0f ms/GB\n", mode, run + 1, mbps[run], cpus[run]);
    }
    qsort(mbps, (size_t)runs, sizeof mbps[0], cmp_double);
    qsort(cpus, (size_t)runs, sizeof cpus[0], cmp_double);
    const char *env_loop = getenv("AEV_LOOP");
    const char *kind = strcmp(mode, "loop") != 0 ? "raw io_uring" : env_loop ? env_loop : "default";
    printf("%s %s: median %.0f MB/s, sender CPU %.0f ms/GB, over %d runs of %zu MiB\n", mode, kind,
           mbps[runs / 2], cpus[runs / 2], runs, mib);
    if (strncmp(mode, "uring", 5) == 0)
        io_uring_queue_exit(&ring);
    close(file);
    return 0;
}
