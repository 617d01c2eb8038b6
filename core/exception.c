/* libaev core - the exception handler (set/get/default/call) and the report of
 * a callback that returned an error. */
#include <stdio.h>
#include <string.h>

#include "loop_internal.h"

void aev_loop_set_exception_handler(aev_loop_t *loop, aev_exception_handler_fn handler, void *userdata)
{
    if (!loop)
        return;
    loop->exc_handler = handler;
    loop->exc_userdata = handler ? userdata : NULL;
}

aev_exception_handler_fn aev_loop_get_exception_handler(const aev_loop_t *loop, void **userdata)
{
    if (userdata)
        *userdata = loop ? loop->exc_userdata : NULL;
    return loop ? loop->exc_handler : NULL;
}

void aev_loop_default_exception_handler(aev_loop_t *loop, const aev_exception_context_t *ctx)
{
    (void)loop;
    if (!ctx)
        return;
    char buf[3072];
    size_t n = 0;
#define AEV__APPEND(...)                                                    \
    do {                                                                    \
        if (n < sizeof buf) {                                               \
            int w = snprintf(buf + n, sizeof buf - n, __VA_ARGS__);         \
            if (w > 0)                                                      \
                n += (size_t)w;                                             \
        }                                                                   \
    } while (0)
    AEV__APPEND("%s", ctx->message && ctx->message[0] ? ctx->message : "Unhandled error in event loop");
    if (ctx->error)
        AEV__APPEND("\nexception: %s (%s)%s%s", aev_err_name(ctx->error), aev_strerror(ctx->error),
                    ctx->error_detail ? ": " : "", ctx->error_detail ? ctx->error_detail : "");
    if (ctx->handle) {
        char name[256];
        AEV__APPEND("\nhandle: <Handle %s>", aev_handle_describe(ctx->handle, name, sizeof name));
    }
    if (ctx->future)
        AEV__APPEND("\nfuture: <Future %p>", (void *)ctx->future);
    if (ctx->task)
        AEV__APPEND("\ntask: <Task %p>", (void *)ctx->task);
    if (ctx->protocol)
        AEV__APPEND("\nprotocol: %p", (void *)ctx->protocol);
    if (ctx->transport)
        AEV__APPEND("\ntransport: %p", (void *)ctx->transport);
    if (ctx->has_socket)
        AEV__APPEND("\nsocket: fd %d", ctx->socket);
#undef AEV__APPEND
    aev_log(AEV_LOG_ERROR, "aev", "%s", buf);
}

void aev_loop_call_exception_handler(aev_loop_t *loop, const aev_exception_context_t *ctx)
{
    if (!loop || !ctx)
        return;
    if (loop->exc_handler)
        loop->exc_handler(loop, ctx, loop->exc_userdata);
    else
        aev_loop_default_exception_handler(loop, ctx);
}

void aev__report_callback_error(aev_loop_t *loop, aev_handle_t *h, int rc)
{
    char name[256], msg[320];
    snprintf(msg, sizeof msg, "Exception in callback %s", aev_handle_describe(h, name, sizeof name));
    const char *detail = aev_error_detail();
    aev_exception_context_t ctx = {
        .message = msg,
        .error = rc,
        .error_detail = detail[0] ? detail : NULL,
        .handle = h,
    };
    if (h->flags & AEV__H_FUTURE_CB)
        ctx.future = AEV__EXT(h)->future;
    aev_loop_call_exception_handler(loop, &ctx);
}

/* A plain callback (queued without a handle) failed: make the handle asyncio
 * would have had, so the handler sees the same context. */
void aev__report_plain_error(aev_loop_t *loop, aev_callback_fn cb, void *arg, int rc)
{
    aev_handle_t *h = aev__handle_new_ext(loop, NULL, cb, arg);
    if (h) {
        aev__report_callback_error(loop, h, rc);
        aev__handle_unref_fast(h);
        return;
    }
    char name[256], msg[320];
    snprintf(msg, sizeof msg, "Exception in callback %s",
             aev__describe_fn((void *)(uintptr_t)cb, name, sizeof name));
    aev_exception_context_t ctx = {.message = msg, .error = rc};
    aev_loop_call_exception_handler(loop, &ctx);
}
