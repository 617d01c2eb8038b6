/* display_date_task.c - "Display the current date", the coroutine version the
 * asyncio documentation points to from its call_later() example, in C: a task
 * that prints the date and sleeps one second, five times.
 *
 *     import asyncio
 *     import datetime
 *
 *     async def display_date():
 *         loop = asyncio.get_running_loop()
 *         end_time = loop.time() + 5.0
 *         while True:
 *             print(datetime.datetime.now())
 *             if (loop.time() + 1.0) >= end_time:
 *                 break
 *             await asyncio.sleep(1)
 *
 *     asyncio.run(display_date())
 *
 * usage: display_date_task [--seconds N]     (default 5; N may be fractional)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, localtime_r */
#endif
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <aev/aev.h>

static void print_now(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s.%06ld\n", buf, ts.tv_nsec / 1000);
    fflush(stdout);
}

/* The coroutine: runs on the task's own stack; aev_sleep() suspends only the task. */
static int display_date(aev_future_t *self, void *arg)
{
    double seconds = *(const double *)arg;
    aev_loop_t *loop = aev_future_get_loop(self);
    double end_time = aev_loop_time(loop) + seconds;
    for (;;) {
        print_now();
        if (aev_loop_time(loop) + 1.0 >= end_time)
            break;
        int rc = aev_sleep(1.0);
        if (rc < 0)
            return rc; /* cancelled: end the task with it */
    }
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 5.0;
    if (argc == 3 && strcmp(argv[1], "--seconds") == 0) {
        char *end;
        errno = 0;
        seconds = strtod(argv[2], &end);
        if (errno || end == argv[2] || *end || !isfinite(seconds) || seconds <= 0) {
            fprintf(stderr, "usage: %s [--seconds N]     (N > 0, default 5)\n", argv[0]);
            return 2;
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--seconds N]     (N > 0, default 5)\n", argv[0]);
        return 2;
    }

    /* asyncio.run(): a new loop, the task run to completion, the loop closed. */
    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0) {
        fprintf(stderr, "display_date_task: aev_loop_new: %s: %s\n", aev_strerror(rc), aev_error_detail());
        return 1;
    }
    aev_future_t *task;
    rc = aev_loop_create_task(loop, &(aev_task_options_t){.name = "display_date"}, display_date, &seconds,
                              &task);
    if (rc == 0) {
        rc = aev_loop_run_until_complete(loop, task);
        aev_future_unref(task);
    }
    if (rc < 0)
        fprintf(stderr, "display_date_task: %s\n", aev_strerror(rc));
    aev_loop_close(loop);
    aev_loop_free(loop);
    return rc < 0 ? 1 : 0;
}
