/* callbacks_aev.c - zero-delay callbacks on libaev (asyncio call_soon).
 *
 * usage: callbacks_aev [N [K]]     (default N=10000000, K=1)
 *
 * K callbacks are in flight at a time; each run re-schedules itself with
 * aev_loop_call_soon() (no handle requested) until N have run, and the last
 * one stops the loop, as micro_asyncio.py does with loop.call_soon. K=1 is a
 * chain (every callback pays for a trip through the loop), K=1000 a batch
 * (the loop's per-iteration cost is shared by 1000 callbacks).
 *
 * As in every peer, the loop watches one never-readable pipe, and the
 * measured phase starts just before the K first callbacks are scheduled and
 * ends when aev_loop_run_forever() returns; creating and closing the loop
 * are outside it. The loop runs with its defaults (including the I/O poll
 * interval), with the plugins the environment or config choose.
 * `seconds` is process CPU time, `wall_s` wall time.
 */
#include "bench_util.h"

#include <aev/aev.h>

static uint64_t target, scheduled, ran;
static int cb_error; /* first error reported to the exception handler */

/* Re-schedules itself; a failing call_soon is returned as the callback's error,
 * which the loop hands to on_error (the C form of an exception in a callback). */
static int cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    ran++;
    if (scheduled < target) {
        scheduled++;
        return aev_loop_call_soon(loop, cb, NULL, NULL);
    }
    if (ran == target)
        aev_loop_stop(loop);
    return 0;
}

static void on_error(aev_loop_t *loop, const aev_exception_context_t *ctx, void *userdata)
{
    (void)userdata;
    if (!cb_error)
        cb_error = ctx->error ? ctx->error : AEV_ECALLBACK;
    aev_loop_stop(loop);
}

static int noop_reader(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return 0;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "callbacks_aev: %s: %s (%s) %s\n", what, aev_strerror(rc), aev_err_name(rc),
            aev_error_detail());
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc > 3)
        bench_die("usage: %s [N [K]]     (default N=10000000 K=1)", argv[0]);
    target = argc > 1 ? bench_parse_u64(argv[1], "N") : 10000000;
    uint64_t k = argc > 2 ? bench_parse_u64(argv[2], "K") : 1;
    if (k == 0 || target == 0)
        bench_die("usage: %s [N [K]] with N, K >= 1", argv[0]);
    if (k > target)
        k = target;

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0)
        fail("aev_loop_new", rc);
    fprintf(stderr, "callbacks_aev: poll plugin: %s\n", aev_loop_plugin_name(loop, "poll"));
    aev_loop_set_exception_handler(loop, on_error, NULL);
    int fds[2];
    bench_idle_pipe(fds);
    rc = aev_loop_add_reader(loop, fds[0], noop_reader, NULL);
    if (rc < 0)
        fail("aev_loop_add_reader", rc);

    double c0 = cpu_s(), w0 = now_s();
    for (uint64_t i = 0; i < k; i++) {
        scheduled++;
        rc = aev_loop_call_soon(loop, cb, NULL, NULL);
        if (rc < 0)
            fail("aev_loop_call_soon", rc);
    }
    rc = aev_loop_run_forever(loop);
    double c1 = cpu_s(), w1 = now_s();
    if (rc < 0)
        fail("aev_loop_run_forever", rc);
    if (cb_error)
        fail("a callback (aev_loop_call_soon)", cb_error);

    if (ran != target)
        bench_die("callbacks_aev: ran %llu callbacks, expected %llu", (unsigned long long)ran,
                  (unsigned long long)target);
    char extra[64];
    snprintf(extra, sizeof extra, "inflight=%llu", (unsigned long long)k);
    bench_report("callbacks_aev", ran, c1 - c0, w1 - w0, extra);

    aev_loop_remove_reader(loop, fds[0]);
    rc = aev_loop_close(loop);
    if (rc < 0)
        fail("aev_loop_close", rc);
    aev_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
    return 0;
}
