/* signals.c - "Set signal handlers for SIGINT and SIGTERM", from the asyncio
 * event loop documentation, in C.
 *
 * Registers handlers for SIGINT and SIGTERM with aev_loop_add_signal_handler();
 * the handler prints which signal arrived and stops the loop. The coroutine's
 * "await asyncio.sleep(3600)" becomes a one-hour timer that stops the loop
 * too. The handlers are ordinary loop callbacks: they run on the loop, not
 * inside the signal handler, so they may call aev_loop_stop() and any other
 * loop function.
 *
 *     import asyncio
 *     import functools
 *     import os
 *     import signal
 *
 *     def ask_exit(signame, loop):
 *         print("got signal %s: exit" % signame)
 *         loop.stop()
 *
 *     async def main():
 *         loop = asyncio.get_running_loop()
 *
 *         for signame in {'SIGINT', 'SIGTERM'}:
 *             loop.add_signal_handler(
 *                 getattr(signal, signame),
 *                 functools.partial(ask_exit, signame, loop))
 *
 *         await asyncio.sleep(3600)
 *
 *     print("Event loop running for 1 hour, press Ctrl+C to interrupt.")
 *     print(f"pid {os.getpid()}: send SIGINT or SIGTERM to exit.")
 *
 *     asyncio.run(main())
 *
 * The two lines are printed once the handlers are in place (in Python they
 * come first, which leaves a moment when SIGTERM still kills the process), so
 * whoever reads "pid N: ..." may send the signal at once.
 *
 * usage: signals
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <aev/aev.h>

/* functools.partial(ask_exit, signame, loop): the loop comes as the callback's
 * first argument, the name as its user pointer. */
struct signal_entry {
    int signum;
    const char *signame;
};

static void report(const char *what, int rc)
{
    const char *detail = aev_error_detail();
    size_t len = strlen(detail);
    fprintf(stderr, "signals: %s: %s (%s)%s%s%s", what, aev_strerror(rc), aev_err_name(rc),
            len ? ": " : "", detail, len && detail[len - 1] == '\n' ? "" : "\n");
}

static int ask_exit(aev_loop_t *loop, void *arg)
{
    const struct signal_entry *e = arg;
    printf("got signal %s: exit\n", e->signame);
    fflush(stdout);
    aev_loop_stop(loop);
    return 0;
}

/* The end of "await asyncio.sleep(3600)". */
static int hour_over(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_stop(loop);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct signal_entry entries[] = {
        {SIGINT, "SIGINT"},
        {SIGTERM, "SIGTERM"},
    };
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: signals\n");
        return 2;
    }

    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop);
    if (rc < 0) {
        report("aev_loop_new", rc);
        return 1;
    }
    fprintf(stderr, "signals: poll plugin: %s\n", aev_loop_plugin_name(loop, "poll"));

    int status = 0;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0] && status == 0; i++) {
        rc = aev_loop_add_signal_handler(loop, entries[i].signum, ask_exit, (void *)&entries[i]);
        if (rc < 0) {
            report("aev_loop_add_signal_handler", rc);
            status = 1;
        }
    }
    if (status == 0) {
        rc = aev_loop_call_later(loop, 3600.0, hour_over, NULL, NULL);
        if (rc < 0) {
            report("aev_loop_call_later", rc);
            status = 1;
        }
    }
    if (status == 0) {
        printf("Event loop running for 1 hour, press Ctrl+C to interrupt.\n");
        printf("pid %ld: send SIGINT or SIGTERM to exit.\n", (long)getpid());
        fflush(stdout);
        rc = aev_loop_run_forever(loop);
        if (rc < 0) {
            report("aev_loop_run_forever", rc);
            status = 1;
        }
    }

    /* Closing the loop gives SIGINT and SIGTERM their default dispositions back. */
    rc = aev_loop_close(loop);
    if (rc < 0) {
        report("aev_loop_close", rc);
        status = 1;
    }
    aev_loop_free(loop);
    return status;
}
