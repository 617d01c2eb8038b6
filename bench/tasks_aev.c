/* tasks_aev - the cost of tasks: spawning and joining them, and switching
 * between them.
 *
 * usage: tasks_aev switch [N [T]]  T tasks (default 2) take turns, each
 *                               yielding to the loop (await asyncio.sleep(0))
 *                               until N yields in all; one op = one switch: a
 *                               task suspends and the next one runs
 *        tasks_aev spawn [N]    a task creates N tasks in batches of 100 and
 *                               awaits each; one op = create + run + finish +
 *                               join (its stack comes from the loop's cache)
 *
 * Prints the peers' one-line report (bench_util.h) with ns_per_op. Like the
 * other micro-benchmarks, the loop watches one idle pipe. */
#include <aev/aev.h>

#include "bench_util.h"

static uint64_t g_n;

static int yielder(aev_future_t *self, void *arg)
{
    (void)self;
    uint64_t *left = arg;
    while (*left > 0) {
        (*left)--;
        aev_task_yield();
    }
    return 0;
}

static int empty_task(aev_future_t *self, void *arg)
{
    (void)self;
    (void)arg;
    return 0;
}

static int spawner(aev_future_t *self, void *arg)
{
    (void)arg;
    aev_loop_t *loop = aev_future_get_loop(self);
    aev_future_t *batch[100];
    for (uint64_t done = 0; done < g_n;) {
        size_t k = g_n - done < 100 ? (size_t)(g_n - done) : 100;
        for (size_t i = 0; i < k; i++)
            if (aev_loop_create_task(loop, NULL, empty_task, NULL, &batch[i]) < 0)
                bench_die("create_task failed");
        for (size_t i = 0; i < k; i++) {
            aev_await(batch[i], NULL);
            aev_future_unref(batch[i]);
        }
        done += k;
    }
    return 0;
}

static int noop_reader(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4)
        bench_die("usage: %s switch [N [TASKS]] | spawn [N]", argv[0]);
    int is_switch = strcmp(argv[1], "switch") == 0;
    if (!is_switch && strcmp(argv[1], "spawn") != 0)
        bench_die("unknown mode '%s' (switch or spawn)", argv[1]);
    g_n = argc >= 3 ? bench_parse_u64(argv[2], "N") : (is_switch ? 20000000u : 2000000u);
    uint64_t ntasks = argc == 4 ? bench_parse_u64(argv[3], "TASKS") : 2;
    if (ntasks == 0 || ntasks > 100000 || (!is_switch && argc == 4))
        bench_die("bad TASKS (1..100000, switch mode only)");

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0)
        bench_die("aev_loop_new: %s: %s", aev_strerror(rc), aev_error_detail());
    int idle[2];
    bench_idle_pipe(idle);
    aev_loop_add_reader(loop, idle[0], noop_reader, NULL);

    aev_future_t **tasks = bench_alloc(ntasks, sizeof *tasks);
    uint64_t *left = bench_alloc(ntasks, sizeof *left);
    double w0 = now_s(), c0 = cpu_s();
    if (is_switch) {
        for (uint64_t i = 0; i < ntasks; i++) {
            left[i] = g_n / ntasks + (i < g_n % ntasks);
            if (aev_loop_create_task(loop, NULL, yielder, &left[i], &tasks[i]) < 0)
                bench_die("create_task failed");
        }
        for (uint64_t i = 0; i < ntasks; i++)
            aev_loop_run_until_complete(loop, tasks[i]);
    } else {
        ntasks = 1;
        aev_loop_create_task(loop, NULL, spawner, NULL, &tasks[0]);
        aev_loop_run_until_complete(loop, tasks[0]);
    }
    double cpu = cpu_s() - c0, wall = now_s() - w0;
    char extra[64];
    snprintf(extra, sizeof extra, "ns_per_op=%.1f tasks=%llu", cpu * 1e9 / (double)g_n,
             (unsigned long long)ntasks);
    bench_report(is_switch ? "tasks_switch_aev" : "tasks_spawn_aev", g_n, cpu, wall, extra);
    for (uint64_t i = 0; i < ntasks; i++)
        aev_future_unref(tasks[i]);
    free(tasks);
    free(left);
    aev_loop_remove_reader(loop, idle[0]);
    aev_loop_close(loop);
    aev_loop_free(loop);
    close(idle[0]);
    close(idle[1]);
    return 0;
}
