/* libaev tests - malformed plugins, one per -D flag (see meson.build).
 *
 * The core must refuse each of them, with a reason that names the bad field,
 * and must do so before calling anything the plugin provides: every function
 * here abort()s, so a test process that survives proves nothing was called.
 *
 * Descriptor faults (the core must refuse before probe):
 *   TP_BAD_MAGIC      magic is not AEV_PLUGIN_MAGIC
 *   TP_NULL_NAME      name is NULL
 *   TP_NO_INIT        init is NULL
 *   TP_WRONG_NAME     name differs from the <name> in the file name
 *   TP_BAD_FAMILY     family is not a known family
 *   TP_OTHER_FAMILY   family is a known one, but not the one in the file name
 *   TP_SMALL_SIZE     struct_size is far below any version of the descriptor
 *   TP_NO_DESC        no descriptor symbol at all
 * Ops faults (probe succeeds, init returns bad ops; nothing in them may be called):
 *   TP_BAD_OPS        wait is NULL
 *   TP_OLD_OPS        version is 0
 *   TP_NULL_OPS       init returns NULL
 *   TP_BAD_CAPS       the ops' caps differ from the descriptor's
 */
#include <stdlib.h>

#include "aev/plugin.h"

/* Each variant leaves some of these unused. */
#define TP_UNUSED __attribute__((unused))

#ifndef TP_MODULE
#error "TP_MODULE must be defined"
#endif
#ifndef TP_NAME
#error "TP_NAME must be defined"
#endif

TP_UNUSED static int tp_create(const aev_host_t *host, const aev_plugin_context_t *ctx,
                     aev_poll_backend_t **out)
{
    (void)host, (void)ctx, (void)out;
    abort();
}

TP_UNUSED static void tp_destroy(aev_poll_backend_t *b)
{
    (void)b;
    abort();
}

TP_UNUSED static int tp_watch(aev_poll_backend_t *b, int fd, uint32_t old_events, uint32_t new_events)
{
    (void)b, (void)fd, (void)old_events, (void)new_events;
    abort();
}

TP_UNUSED static int tp_wait(aev_poll_backend_t *b, int64_t timeout_ns, aev_poll_event_t *events, int max)
{
    (void)b, (void)timeout_ns, (void)events, (void)max;
    abort();
}

TP_UNUSED static int tp_wake(aev_poll_backend_t *b)
{
    (void)b;
    abort();
}

TP_UNUSED static const aev_poll_ops_t tp_ops = {
#ifdef TP_OLD_OPS
    .version = 0,
#else
    .version = AEV_POLL_OPS_VERSION,
#endif
#ifdef TP_BAD_CAPS
    .caps = AEV_POLL_CAP_READINESS | AEV_POLL_CAP_FD_LIMIT,
#else
    .caps = AEV_POLL_CAP_READINESS,
#endif
    .create = tp_create,
    .destroy = tp_destroy,
    .watch = tp_watch,
#ifdef TP_BAD_OPS
    .wait = NULL,
#else
    .wait = tp_wait,
#endif
    .wake = tp_wake,
};

#if defined(TP_BAD_OPS) || defined(TP_OLD_OPS) || defined(TP_NULL_OPS) || defined(TP_BAD_CAPS)
#define TP_OPS_FAULT 1
#endif

TP_UNUSED static int tp_probe(const aev_host_t *host, char *why, size_t why_size)
{
    (void)host, (void)why, (void)why_size;
#ifdef TP_OPS_FAULT
    return 0;
#else
    abort();
#endif
}

TP_UNUSED static const void *tp_init(const aev_host_t *host)
{
    (void)host;
#if defined(TP_NULL_OPS)
    return NULL;
#elif defined(TP_OPS_FAULT)
    return &tp_ops;
#else
    abort();
#endif
}

#ifdef TP_NO_DESC
/* Something exported, so the module is an ordinary shared object, but no descriptor. */
AEV_PLUGIN_EXPORT const void *const tp_not_a_descriptor[] = {(const void *)tp_probe,
                                                             (const void *)tp_init,
                                                             (const void *)&tp_ops};
#else

#define TP_DEFINE(module) AEV_PLUGIN_DEFINE(module)

TP_DEFINE(TP_MODULE) = {
#ifdef TP_BAD_MAGIC
    .magic = 0x0badf00du,
#else
    .magic = AEV_PLUGIN_MAGIC,
#endif
    .abi_major = AEV_PLUGIN_ABI_MAJOR,
    .abi_minor = AEV_PLUGIN_ABI_MINOR,
#ifdef TP_SMALL_SIZE
    .struct_size = 8,
#else
    .struct_size = sizeof(aev_plugin_descriptor_t),
#endif
#if defined(TP_BAD_FAMILY)
    .family = 42,
#elif defined(TP_OTHER_FAMILY)
    .family = AEV_FAMILY_TLS,
#else
    .family = AEV_FAMILY_POLL,
#endif
#if defined(TP_NULL_NAME)
    .name = NULL,
#elif defined(TP_WRONG_NAME)
    .name = "other",
#else
    .name = TP_NAME,
#endif
    .version = "test-1",
    .description = "libaev test plugin (malformed on purpose)",
    .priority = -100,
    .caps = AEV_POLL_CAP_READINESS,
    .probe = tp_probe,
#ifdef TP_NO_INIT
    .init = NULL,
#else
    .init = tp_init,
#endif
};
#endif
