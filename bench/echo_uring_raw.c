/* echo_uring_raw - the ceiling of a completion loop on this machine: a hand-written
 * io_uring echo server with no event-loop library, the io_uring counterpart of the kit's
 * echo_epoll_raw. It does what libaev's proactor does per request, and nothing else:
 * multishot accept, one multishot receive per connection into a provided buffer ring
 * (buffers go back to the ring right after their bytes were sent), an immediate send(2)
 * of what came, a send request through the ring only for leftovers, and one
 * io_uring_enter per iteration (DEFER_TASKRUN where the kernel has it).
 *
 * usage: echo_uring_raw [-n BUFFERS] [-s BUFSIZE] [-q] PORT
 *   -n  buffers in the ring (default 64), -s their size (default 16384)
 *   -q  send through the ring too (one send request per receive, no send(2))
 * Listens on 127.0.0.1:PORT; SIGTERM ends it. Leftovers of a partial send are kept in a
 * per-connection heap buffer. Not a general server: enough for the kit's loadgen. */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum { TAG_ACCEPT = 1, TAG_RECV, TAG_SEND };
#define TAG(kind, fd) (((uint64_t)(kind) << 32) | (uint32_t)(fd))

typedef struct conn {
    char *pending; /* bytes a partial send left */
    size_t plen;
    int sending;   /* a send request of pending is in flight */
} conn_t;

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static unsigned nbufs = 64, bufsize = 16384, mask;
static conn_t *conns;
static int ring_sends;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) {
        io_uring_submit(&ring);
        s = io_uring_get_sqe(&ring);
    }
    return s;
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *s = sqe_get();
    io_uring_prep_recv(s, fd, NULL, 0, 0);
    s->ioprio |= IORING_RECV_MULTISHOT;
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    io_uring_sqe_set_data64(s, TAG(TAG_RECV, fd));
}

static void buf_return(unsigned id)
{
    io_uring_buf_ring_add(br, bufs + (size_t)id * bufsize, bufsize, (unsigned short)id, mask, 0);
    io_uring_buf_ring_advance(br, 1);
}

static void send_pending(int fd)
{
    conn_t *c = &conns[fd];
    struct io_uring_sqe *s = sqe_get();
    io_uring_prep_send(s, fd, c->pending, c->plen, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, TAG(TAG_SEND, fd));
    c->sending = 1;
}

static void keep(int fd, const char *p, size_t n)
{
    conn_t *c = &conns[fd];
    c->pending = realloc(c->pending, c->plen + n);
    memcpy(c->pending + c->plen, p, n);
    c->plen += n;
    if (!c->sending)
        send_pending(fd);
}

static void conn_close(int fd)
{
    if (!conns[fd].sending) /* else the ring may still read it: left to the process's exit */
        free(conns[fd].pending);
    memset(&conns[fd], 0, sizeof conns[fd]);
    close(fd);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "n:s:q")) != -1) {
        if (opt == 'n')
            nbufs = (unsigned)atoi(optarg);
        else if (opt == 's')
            bufsize = (unsigned)atoi(optarg);
        else if (opt == 'q')
            ring_sends = 1;
        else
            return 2;
    }
    if (optind >= argc || (nbufs & (nbufs - 1)) || nbufs == 0) {
        fprintf(stderr, "usage: echo_uring_raw [-n BUFFERS (power of 2)] [-s BUFSIZE] [-q] PORT\n");
        return 2;
    }
    int port = atoi(argv[optind]);
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
              IORING_SETUP_CQSIZE;
    p.cq_entries = 4096;
    if (io_uring_queue_init_params(1024, &ring, &p) < 0) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
        p.cq_entries = 4096;
        int rc = io_uring_queue_init_params(1024, &ring, &p);
        if (rc < 0) {
            fprintf(stderr, "echo_uring_raw: io_uring: %s\n", strerror(-rc));
            return 1;
        }
    }
    int rc = -ENOMEM;
    /* liburing 2.3 has no io_uring_setup_buf_ring: map and register the ring by hand */
    br = mmap(NULL, nbufs * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
              MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = nbufs, .bgid = 0};
    if (br == MAP_FAILED || (rc = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
        fprintf(stderr, "echo_uring_raw: buffer ring: %s\n", strerror(-rc));
        return 1;
    }
    io_uring_buf_ring_init(br);
    mask = io_uring_buf_ring_mask(nbufs);
    bufs = malloc((size_t)nbufs * bufsize);
    for (unsigned i = 0; i < nbufs; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * bufsize, bufsize, (unsigned short)i, mask, (int)i);
    io_uring_buf_ring_advance(br, (int)nbufs);
    conns = calloc(65536, sizeof *conns);

    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) {
        perror("echo_uring_raw: listen");
        return 1;
    }
    struct io_uring_sqe *s = sqe_get();
    io_uring_prep_multishot_accept(s, ls, NULL, NULL, 0);
    io_uring_sqe_set_data64(s, TAG(TAG_ACCEPT, ls));

    while (!stop) {
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -ETIME) {
            fprintf(stderr, "echo_uring_raw: wait: %s\n", strerror(-rc));
            return 1;
        }
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t tag = io_uring_cqe_get_data64(cqe);
            int fd = (int)(uint32_t)tag, res = cqe->res;
            switch ((int)(tag >> 32)) {
            case TAG_ACCEPT:
                if (res >= 0 && res < 65536) {
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(res);
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    s = sqe_get();
                    io_uring_prep_multishot_accept(s, ls, NULL, NULL, 0);
                    io_uring_sqe_set_data64(s, TAG(TAG_ACCEPT, ls));
                }
                break;
            case TAG_RECV: {
                int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
                if (res > 0) {
                    unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    const char *data = bufs + (size_t)id * bufsize;
                    if (ring_sends || conns[fd].plen) {
                        keep(fd, data, (size_t)res);
                    } else {
                        ssize_t n = send(fd, data, (size_t)res, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n < 0)
                            n = 0;
                        if (n < res)
                            keep(fd, data + n, (size_t)(res - n));
                    }
                    buf_return(id);
                    if (!more)
                        arm_recv(fd);
                } else if (res == -ENOBUFS) {
                    if (!more)
                        arm_recv(fd);
                } else if (!more) {
                    conn_close(fd);
                }
                break;
            }
            case TAG_SEND: {
                conn_t *c = &conns[fd];
                c->sending = 0;
                if (res < 0 || !c->pending)
                    break;
                memmove(c->pending, c->pending + res, c->plen - (size_t)res);
                c->plen -= (size_t)res;
                if (c->plen)
                    send_pending(fd);
                break;
            }
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    return 0;
}
