/* hello_world.c - "Hello World with call_soon()", the first example of the
 * asyncio event loop documentation, in C.
 *
 * A callback scheduled with aev_loop_call_soon() prints "Hello World" and
 * stops the loop, which aev_loop_run_forever() was running.
 *
 *     import asyncio
 *
 *     def hello_world(loop):
 *         print('Hello World')
 *         loop.stop()
 *
 *     loop = asyncio.new_event_loop()
 *     loop.call_soon(hello_world, loop)
 *     try:
 *         loop.run_forever()
 *     finally:
 *         loop.close()
 *
 * usage: hello_world
 */
#include <stdio.h>
#include <string.h>

#include <aev/aev.h>

/* Reports a failed libaev call the way every example does: message, symbolic
 * name and, when the library left one, the detail text. */
static void report(const char *what, int rc)
{
    const char *detail = aev_error_detail();
    size_t len = strlen(detail);
    fprintf(stderr, "hello_world: %s: %s (%s)%s%s%s", what, aev_strerror(rc), aev_err_name(rc),
            len ? ": " : "", detail, len && detail[len - 1] == '\n' ? "" : "\n");
}

/* A callback to print 'Hello World' and stop the event loop. */
static int hello_world(aev_loop_t *loop, void *arg)
{
    (void)arg;
    printf("Hello World\n");
    aev_loop_stop(loop);
    return 0;
}

int main(void)
{
    aev_loop_t *loop;
    int rc = aev_loop_new(NULL, &loop); /* the policy comes from env, config, defaults */
    if (rc < 0) {
        report("aev_loop_new", rc);
        return 1;
    }
    fprintf(stderr, "hello_world: poll plugin: %s\n", aev_loop_plugin_name(loop, "poll"));

    int status = 0;
    /* Schedule a call to hello_world(); we do not need its handle. */
    rc = aev_loop_call_soon(loop, hello_world, NULL, NULL);
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
    }

    /* finally: loop.close() */
    rc = aev_loop_close(loop);
    if (rc < 0) {
        report("aev_loop_close", rc);
        status = 1;
    }
    aev_loop_free(loop);
    return status;
}
