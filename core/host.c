/* libaev core - the host table: the core services a plugin may use, since
 * plugins do not link against libaev. Append-only; see AEV_HOST_VERSION. */
#include <stdarg.h>
#include <stdlib.h>

#include "loop_internal.h"

static void *host_alloc(size_t size)
{
    return malloc(size);
}

static void *host_realloc(void *ptr, size_t size)
{
    return realloc(ptr, size);
}

static void host_free(void *ptr)
{
    free(ptr);
}

static void host_log(int level, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    aev__vlog(level, origin, fmt, ap);
    va_end(ap);
}

static void host_set_error_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    aev__vset_detail(fmt, ap);
    va_end(ap);
}

static int host_run_in_executor(aev_loop_t *loop, aev_work_fn fn, void *arg,
                                void (*arg_destroy)(void *), aev_future_t **out)
{
    aev_run_options_t opts = {.arg_destroy = arg_destroy};
    return aev_loop_run_in_executor_ex(loop, NULL, &opts, fn, arg, out);
}

static const char *host_option(const aev_plugin_context_t *ctx, const char *key)
{
    if (!ctx)
        return NULL;
    return aev_policy_plugin_option(ctx->policy, ctx->family, ctx->name, key);
}

const aev_host_t aev__host = {
    .version = AEV_HOST_VERSION,
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
    .alloc = host_alloc,
    .realloc = host_realloc,
    .free = host_free,
    .log = host_log,
    .set_error_detail = host_set_error_detail,
    .option = host_option,
    .time = aev_loop_time,
    .call_soon = aev_loop_call_soon,
    .call_soon_threadsafe = aev_loop_call_soon_threadsafe,
    .call_later = aev_loop_call_later,
    .handle_cancel = aev_handle_cancel,
    .handle_unref = aev_handle_unref,
    .add_reader = aev_loop_add_reader,
    .remove_reader = aev_loop_remove_reader,
    .add_writer = aev_loop_add_writer,
    .remove_writer = aev_loop_remove_writer,
    .future_create = aev_loop_create_future,
    .future_ref = aev_future_ref,
    .future_unref = aev_future_unref,
    .future_set_result = aev_future_set_result,
    .future_set_error = aev_future_set_error,
    .future_cancelled = aev_future_cancelled,
    .future_add_done_callback = aev_future_add_done_callback,
    .call_exception_handler = aev_loop_call_exception_handler,
    /* since v2 */
    .future_done = aev_future_done,
    .future_remove_done_callback = aev_future_remove_done_callback,
    .run_in_executor = host_run_in_executor,
};
