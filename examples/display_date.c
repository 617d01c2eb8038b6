/* display_date.c - "Display the current date with call_later()", from the
 * asyncio event loop documentation, in C.
 *
 * A callback prints the current date and time, then re-schedules itself one
 * second later with aev_loop_call_later(), until 5 seconds have passed; then
 * it stops the loop.
 *
 *     import asyncio
 *     import datetime
 *
 *     def display_date(end_time, loop):
 *         print(datetime.datetime.now())
 *         if (loop.time() + 1.0) < end_time:
 *             loop.call_later(1, display_date, end_time, loop)
 *         else:
 *             loop.stop()
 *
 *     loop = asyncio.new_event_loop()
 *     end_time = loop.time() + 5.0
 *     loop.call_soon(display_date, end_time, loop)
 *     try:
 *         loop.run_forever()
 *     finally:
 *         loop.close()
 *
 * usage: display_date [--seconds N]     (default 5; N may be fractional)
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

/* The callback's arguments (Python passes end_time and loop). */
struct display_state {
    double end_time; /* loop time at which to stop */
    int error;       /* the first libaev error met inside a callback, 0 if none */
};

static void report(const char *what, int rc)
{
    const char *detail = aev_error_detail();
    size_t len = strlen(detail);
    fprintf(stderr, "display_date: %s: %s (%s)%s%s%s", what, aev_strerror(rc), aev_err_name(rc),
            len ? ": " : "", detail, len && detail[len - 1] == '\n' ? "" : "\n");
}

/* Prints the local time as Python's str(datetime.datetime.now()) does:
 * "2024-05-17 14:03:12.345678". */
static void print_now(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s.%06ld\n", buf, ts.tv_nsec / 1000);
    fflush(stdout); /* one line per second, also when stdout is a pipe */
}

static int display_date(aev_loop_t *loop, void *arg)
{
    struct display_state *st = arg;
    print_now();
    if (aev_loop_time(loop) + 1.0 < st->end_time) {
        int rc = aev_loop_call_later(loop, 1.0, display_date, st, NULL);
        if (rc < 0) {
            /* Nothing else would ever stop the loop: stop it, and "raise" so the
             * loop's exception handler reports the failure too. */
            report("aev_loop_call_later", rc);
            st->error = rc;
            aev_loop_stop(loop);
            return rc;
        }
    } else {
        aev_loop_stop(loop);
    }
    return 0;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--seconds N]     (N > 0, default 5)\n", argv0);
    return 2;
}

int main(int argc, char **argv)
{
    double seconds = 5.0;
    if (argc == 3 && strcmp(argv[1], "--seconds") == 0) {
        char *end;
        errno = 0;
        seconds = strtod(argv[2], &end);
        if (errno || end == argv[2] || *end || !isfinite(seconds) || seconds <= 0)
            return usage(argv[0]);
    } else if (argc != 1) {
        return usage(argv[0]);
    }

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0) {
        report("aev_loop_new", rc);
        return 1;
    }
    fprintf(stderr, "display_date: poll plugin: %s\n", aev_loop_plugin_name(loop, "poll"));

    int status = 0;
    /* Schedule the first call to display_date(). */
    struct display_state st = {.end_time = aev_loop_time(loop) + seconds, .error = 0};
    rc = aev_loop_call_soon(loop, display_date, &st, NULL);
    if (rc < 0) {
        report("aev_loop_call_soon", rc);
        status = 1;
    } else {
        /* Blocking call interrupted by aev_loop_stop(). */
        rc = aev_loop_run_forever(loop);
        if (rc < 0) {
            report("aev_loop_run_forever", rc);
            status = 1;
        }
        if (st.error)
            status = 1;
    }

    rc = aev_loop_close(loop);
    if (rc < 0) {
        report("aev_loop_close", rc);
        status = 1;
    }
    aev_loop_free(loop);
    return status;
}
