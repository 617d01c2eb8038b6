/* echo_aev - a protocol-based TCP echo server (asyncio.Protocol: data_received
 * -> transport.write), a contender for `run-peers.sh --server`
 * (../shared/bench/README.md).
 *
 * usage: echo_aev PORT      (listens on 127.0.0.1:PORT; SIGTERM ends it)
 *
 * As the kit's echo_asyncio.py, reading pauses while the write buffer is over
 * its high mark and resumes at the low mark. One protocol per connection,
 * allocated by the factory and freed in connection_lost. */
#include <aev/aev.h>

#include <signal.h>

#include "bench_util.h"

typedef struct echo {
    aev_protocol_t proto; /* first: the callbacks get &proto */
    aev_transport_t *transport;
} echo_t;

static int echo_made(aev_protocol_t *p, aev_transport_t *t)
{
    ((echo_t *)p)->transport = t;
    return 0;
}

static int echo_data(aev_protocol_t *p, const void *data, size_t len)
{
    return aev_transport_write(((echo_t *)p)->transport, data, len);
}

static int echo_pause(aev_protocol_t *p)
{
    aev_transport_pause_reading(((echo_t *)p)->transport);
    return 0;
}

static int echo_resume(aev_protocol_t *p)
{
    aev_transport_resume_reading(((echo_t *)p)->transport);
    return 0;
}

static int echo_lost(aev_protocol_t *p, int error)
{
    (void)error;
    free(p);
    return 0;
}

static aev_protocol_t *echo_factory(void *userdata)
{
    (void)userdata;
    echo_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->proto.connection_made = echo_made;
    e->proto.data_received = echo_data;
    e->proto.pause_writing = echo_pause;
    e->proto.resume_writing = echo_resume;
    e->proto.connection_lost = echo_lost;
    return &e->proto;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        bench_die("usage: %s PORT", argv[0]);
    uint64_t port = bench_parse_u64(argv[1], "port");
    if (port == 0 || port > 65535)
        bench_die("bad port: '%s'", argv[1]);
    signal(SIGPIPE, SIG_IGN);
    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0)
        bench_die("aev_loop_new: %s: %s", aev_strerror(rc), aev_error_detail());
    aev_future_t *fut;
    rc = aev_loop_create_server(loop, echo_factory, NULL, "127.0.0.1", (int)port,
                                &(aev_server_options_t){.backlog = 1024}, &fut);
    if (rc < 0)
        bench_die("create_server: %s: %s", aev_strerror(rc), aev_error_detail());
    aev_loop_run_forever(loop); /* until SIGTERM */
    aev_future_unref(fut);
    aev_loop_close(loop);
    aev_loop_free(loop);
    return 0;
}
