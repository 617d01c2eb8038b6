/* watch_fd.c - "Watch a file descriptor for read events", from the asyncio
 * event loop documentation, in C.
 *
 * Waits with aev_loop_add_reader() until one end of a socket pair has
 * received some data, prints it, stops watching and stops the loop. The data
 * is sent by a callback scheduled with aev_loop_call_soon(), which stands for
 * "the reception of data from the network".
 *
 *     import asyncio
 *     from socket import socketpair
 *
 *     rsock, wsock = socketpair()
 *     loop = asyncio.new_event_loop()
 *
 *     def reader():
 *         data = rsock.recv(100)
 *         print("Received:", data.decode())
 *         loop.remove_reader(rsock)
 *         loop.stop()
 *
 *     loop.add_reader(rsock, reader)
 *     loop.call_soon(wsock.send, 'abc'.encode())
 *     try:
 *         loop.run_forever()
 *     finally:
 *         rsock.close()
 *         wsock.close()
 *         loop.close()
 *
 * usage: watch_fd
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_NOSIGNAL */
#endif
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <aev/aev.h>

/* What the callbacks share: the two sockets and the first error met. */
struct watch_state {
    int rsock, wsock;
    int error; /* a negative errno or AEV_E* code, 0 if none */
};

static void report(const char *what, int rc)
{
    const char *detail = aev_error_detail();
    size_t len = strlen(detail);
    fprintf(stderr, "watch_fd: %s: %s (%s)%s%s%s", what, aev_strerror(rc), aev_err_name(rc),
            len ? ": " : "", detail, len && detail[len - 1] == '\n' ? "" : "\n");
}

/* Records the first error and stops the loop: with the reader gone or the
 * data never sent, nothing else would. Returning the error afterwards is
 * C's "raise": the loop's exception handler reports it too. */
static int fail(aev_loop_t *loop, struct watch_state *st, const char *what, int rc)
{
    report(what, rc);
    if (!st->error)
        st->error = rc;
    aev_loop_remove_reader(loop, st->rsock);
    aev_loop_stop(loop);
    return rc;
}

static int reader(aev_loop_t *loop, void *arg)
{
    struct watch_state *st = arg;
    char data[100];
    ssize_t n = recv(st->rsock, data, sizeof data, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0; /* not readable after all: keep waiting */
    if (n < 0)
        return fail(loop, st, "recv", -errno);
    if (n == 0)
        return fail(loop, st, "recv (peer closed the connection)", -ECONNRESET);
    printf("Received: %.*s\n", (int)n, data);

    /* We are done: unregister the file descriptor ... */
    int rc = aev_loop_remove_reader(loop, st->rsock);
    if (rc < 0)
        return fail(loop, st, "aev_loop_remove_reader", rc);
    /* ... and stop the event loop. */
    aev_loop_stop(loop);
    return 0;
}

/* wsock.send(b'abc') */
static int send_abc(aev_loop_t *loop, void *arg)
{
    struct watch_state *st = arg;
    ssize_t n = send(st->wsock, "abc", 3, MSG_NOSIGNAL);
    if (n < 0)
        return fail(loop, st, "send", -errno);
    if (n != 3)
        return fail(loop, st, "send (short write)", -EIO);
    return 0;
}

int main(void)
{
    /* Create a pair of connected file descriptors. Non-blocking, as a
     * descriptor watched by an event loop should be. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        fprintf(stderr, "watch_fd: socketpair: %s\n", strerror(errno));
        return 1;
    }
    struct watch_state st = {.rsock = sv[0], .wsock = sv[1], .error = 0};

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0) {
        report("aev_loop_new", rc);
        close(st.rsock);
        close(st.wsock);
        return 1;
    }
    fprintf(stderr, "watch_fd: poll plugin: %s\n", aev_loop_plugin_name(loop, "poll"));

    int status = 0;
    /* Register the file descriptor for read events. */
    rc = aev_loop_add_reader(loop, st.rsock, reader, &st);
    if (rc < 0) {
        report("aev_loop_add_reader", rc);
        status = 1;
        goto out;
    }
    /* Simulate the reception of data from the network. */
    rc = aev_loop_call_soon(loop, send_abc, &st, NULL);
    if (rc < 0) {
        report("aev_loop_call_soon", rc);
        status = 1;
        goto out;
    }
    /* Run the event loop. */
    rc = aev_loop_run_forever(loop);
    if (rc < 0) {
        report("aev_loop_run_forever", rc);
        status = 1;
    }
    if (st.error)
        status = 1;

out:
    /* We are done. Close the loop first, so that it never watches a closed
     * descriptor (closing drops a reader that is still registered after a
     * failure), then the sockets. */
    rc = aev_loop_close(loop);
    if (rc < 0) {
        report("aev_loop_close", rc);
        status = 1;
    }
    aev_loop_free(loop);
    close(st.rsock);
    close(st.wsock);
    return status;
}
