/* timers_aev.c - timer benchmarks on libaev (asyncio call_later / cancel).
 *
 * usage: timers_aev fire|cancel [N]     (default N=1000000)
 *
 * fire:   from inside a loop callback, start N one-shot timers with
 *         aev_loop_call_later() and random delays of 1..1000 ms (no handle
 *         requested), then run until all have fired; the last one stops the
 *         loop.
 * cancel: from inside a loop callback, start N such timers, asking for their
 *         handles, then cancel them all in random order, releasing each
 *         handle, and schedule a stop with call_soon: the measured phase thus
 *         includes the next loop iteration, where the loop drops the
 *         cancelled timers (as micro_asyncio.py does for asyncio).
 * Delays are bench_random_ms(N, 42) and the cancel order bench_random_perm(N,
 * 7), the same as every peer. As in timers_libuv.c, the measured phase is
 * the whole run: it starts before the starter callback is scheduled and
 * ends when aev_loop_run_forever() returns; the handle array is allocated
 * before it. The loop watches one never-readable pipe. `seconds` is process
 * CPU time, so the wait for the last timer is not counted (wall_s is).
 */
#include "bench_util.h"

#include <aev/aev.h>

static uint32_t *ms, *perm;
static aev_handle_t **handles; /* cancel mode only */
static uint64_t n, fired;
static int cancel_mode;
static int cb_error; /* first error met inside a callback */

static int timer_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    if (++fired == n)
        aev_loop_stop(loop);
    return 0;
}

static int stop_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_stop(loop);
    return 0;
}

static int starter_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    int rc = 0;
    for (uint64_t i = 0; i < n; i++) {
        rc = aev_loop_call_later(loop, ms[i] / 1000.0, timer_cb, NULL,
                                 cancel_mode ? &handles[i] : NULL);
        if (rc < 0)
            goto fail;
    }
    if (cancel_mode) {
        for (uint64_t i = 0; i < n; i++) {
            aev_handle_t *h = handles[perm[i]];
            aev_handle_cancel(h);
            aev_handle_unref(h);
        }
        rc = aev_loop_call_soon(loop, stop_cb, NULL, NULL);
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    cb_error = rc;
    aev_loop_stop(loop);
    return rc;
}

static int noop_reader(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return 0;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "timers_aev: %s: %s (%s) %s\n", what, aev_strerror(rc), aev_err_name(rc),
            aev_error_detail());
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || (strcmp(argv[1], "fire") && strcmp(argv[1], "cancel")))
        bench_die("usage: %s fire|cancel [N]     (default N=1000000)", argv[0]);
    cancel_mode = strcmp(argv[1], "cancel") == 0;
    n = argc > 2 ? bench_parse_u64(argv[2], "N") : 1000000;
    if (n == 0 || n > UINT32_MAX)
        bench_die("usage: %s fire|cancel [N] with 1 <= N <= %u", argv[0], UINT32_MAX);

    ms = bench_random_ms(n, 42);
    perm = bench_random_perm(n, 7);
    if (cancel_mode)
        handles = bench_alloc(n, sizeof *handles);

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0)
        fail("aev_loop_new", rc);
    fprintf(stderr, "timers_aev: poll plugin: %s\n", aev_loop_plugin_name(loop, "poll"));
    int fds[2];
    bench_idle_pipe(fds);
    rc = aev_loop_add_reader(loop, fds[0], noop_reader, NULL);
    if (rc < 0)
        fail("aev_loop_add_reader", rc);

    double c0 = cpu_s(), w0 = now_s();
    rc = aev_loop_call_soon(loop, starter_cb, NULL, NULL);
    if (rc < 0)
        fail("aev_loop_call_soon", rc);
    rc = aev_loop_run_forever(loop);
    double c1 = cpu_s(), w1 = now_s();
    if (rc < 0)
        fail("aev_loop_run_forever", rc);
    if (cb_error)
        fail(cancel_mode ? "starting or cancelling timers" : "starting timers", cb_error);

    uint64_t expect = cancel_mode ? 0 : n;
    if (fired != expect)
        bench_die("timers_aev: %llu timers fired, expected %llu", (unsigned long long)fired,
                  (unsigned long long)expect);
    bench_report(cancel_mode ? "timers_cancel_aev" : "timers_fire_aev", n, c1 - c0, w1 - w0,
                 NULL);

    aev_loop_remove_reader(loop, fds[0]);
    rc = aev_loop_close(loop);
    if (rc < 0)
        fail("aev_loop_close", rc);
    aev_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
    free(handles);
    free(perm);
    free(ms);
    return 0;
}
