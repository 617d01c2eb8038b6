/* libaev core - internal definitions shared by the loop's files.
 * Nothing here is public API; names are aev__ prefixed. */
#ifndef AEV_LOOP_INTERNAL_H
#define AEV_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "aev/aev.h"
#include "aev/plugin.h"
#include "fiber.h"

#define AEV__LIKELY(x) __builtin_expect(!!(x), 1)
#define AEV__UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Thread-locals of the core: initial-exec, so reading one is one instruction. */
#define AEV__TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* ---- handles ----------------------------------------------------------- */

enum {
    AEV__H_CANCELLED = 0x01,
    AEV__H_TIMER = 0x02,     /* from call_later/call_at */
    AEV__H_IN_HEAP = 0x04,   /* the timer heap holds a reference */
    AEV__H_FUTURE_CB = 0x08, /* a future done callback */
    AEV__H_SHARED = 0x20,    /* from call_soon_threadsafe: atomic refs and flags, malloc'ed */
    AEV__H_EXT = 0x40,       /* an aev__handle_ext_t */
};

/* A handle holds what running its callback needs, in 32 bytes (two per cache
 * line: a batch of queued callbacks stays in L1). Timers, done callbacks,
 * handles with options and call_soon_threadsafe handles are aev__handle_ext_t. */
struct aev_handle {
    aev_callback_fn cb; /* for a future's done callback: aev__future_trampoline */
    void *arg;
    aev_context_t *context;
    uint32_t refs;
    uint32_t flags;
};

typedef struct aev__handle_ext {
    aev_handle_t base;
    aev_loop_t *loop;
    const char *name;
    union {
        double when;                      /* AEV__H_TIMER */
        aev_future_callback_fn future_cb; /* AEV__H_FUTURE_CB */
    } u;
    aev_future_t *future; /* AEV__H_FUTURE_CB */
} aev__handle_ext_t;

#define AEV__EXT(h) ((aev__handle_ext_t *)(h))

/* Handles live in 16 KiB-aligned chunks whose header names their loop, so a
 * plain handle needs no loop pointer of its own. */
#define AEV__CHUNK_BYTES 16384u

typedef struct aev__chunk_header {
    aev_loop_t *loop;
    struct aev__chunk_header *next;
    int in_slab; /* part of a huge-page slab (freed with it), else malloc'ed */
} aev__chunk_header_t;

#define AEV__CHUNK_HEADER 64u /* the header's slot: keeps handles cache-line aligned */

typedef struct aev__handle_pool {
    aev_handle_t **free; /* free handles, used last-in first-out; room for all */
    uint32_t len, cap;
    size_t allocated;
    uint32_t size; /* sizeof one handle of this pool */
    aev__chunk_header_t *chunks;
    unsigned char *slab_next; /* the next unused chunk of the current slab */
    size_t slab_left;         /* chunks left in it */
    void **slabs;             /* every slab, for munmap */
    size_t nslabs;
} aev__handle_pool_t;

static inline aev_loop_t *aev__handle_loop(const aev_handle_t *h)
{
    if (h->flags & AEV__H_EXT)
        return ((const aev__handle_ext_t *)h)->loop;
    return ((const aev__chunk_header_t *)((uintptr_t)h & ~(uintptr_t)(AEV__CHUNK_BYTES - 1)))->loop;
}

int aev__handle_pool_refill(aev__handle_pool_t *pool, aev_loop_t *loop);
void aev__handle_pool_free(aev__handle_pool_t *pool);
/* An extended handle (options, timers, done callbacks); NULL on ENOMEM. */
aev_handle_t *aev__handle_new_ext(aev_loop_t *loop, const aev_call_options_t *opts, aev_callback_fn cb,
                                  void *arg);
/* Sets an extended handle's fields but the context: one reference, AEV__H_EXT | flags. */
static inline void aev__handle_ext_fill(aev__handle_ext_t *x, aev_loop_t *loop, aev_callback_fn cb,
                                        void *arg, const char *name, uint32_t flags)
{
    x->base.cb = cb;
    x->base.arg = arg;
    x->base.refs = 1;
    x->base.flags = AEV__H_EXT | flags;
    x->loop = loop;
    x->name = name;
    x->u.when = -1.0;
    x->future = NULL;
}
/* Fills an extended handle: one reference, no flags but AEV__H_EXT, context from opts or
 * a copy of the current one. */
void aev__handle_ext_init(aev__handle_ext_t *x, aev_loop_t *loop, const aev_call_options_t *opts,
                          aev_callback_fn cb, void *arg);
static inline aev_handle_t *aev__handle_new_fast(aev_loop_t *loop, aev_callback_fn cb, void *arg);
void aev__handle_unref_slow(aev_handle_t *h);
static inline void aev__handle_unref_fast(aev_handle_t *h);

static inline uint32_t aev__handle_flags(const aev_handle_t *h)
{
    return __atomic_load_n(&h->flags, __ATOMIC_RELAXED);
}

/* ---- timers: a 4-ary min-heap of (when, handle) ------------------------- */

typedef struct aev__timer_entry {
    double when;
    aev_handle_t *handle;
} aev__timer_entry_t;

typedef struct aev__timer_heap {
    aev__timer_entry_t *entries;
    size_t len, cap;
    size_t cancelled; /* cancelled handles still in the heap */
    size_t mapped;    /* bytes mapped when the array is an mmap (large heaps), else 0 */
} aev__timer_heap_t;

int aev__timer_heap_push(aev__timer_heap_t *heap, double when, aev_handle_t *h);

#define AEV__HEAP_D 4                                 /* children per node */
#define AEV__HEAP0 (AEV__HEAP_D - 1)                  /* index of the root */
#define AEV__HEAP_PARENT(p) (((p) - AEV__HEAP0 - 1) / AEV__HEAP_D + AEV__HEAP0)

/* Moves the hole at position p up past later parents, then stores x there. */
static inline void aev__timer_heap_sift_up(aev__timer_entry_t *e, size_t p, aev__timer_entry_t x)
{
    while (p > AEV__HEAP0) {
        size_t parent = AEV__HEAP_PARENT(p);
        if (e[parent].when <= x.when)
            break;
        e[p] = e[parent];
        p = parent;
    }
    e[p] = x;
}

/* Pushes when the array has room (len < cap). */
static inline void aev__timer_heap_push_room(aev__timer_heap_t *heap, double when, aev_handle_t *h)
{
    aev__timer_entry_t x = {.when = when, .handle = h};
    aev__timer_heap_sift_up(heap->entries, AEV__HEAP0 + heap->len++, x);
}
/* The earliest entry (the heap's root lives at index D - 1); only when len > 0. */
aev__timer_entry_t *aev__timer_heap_top(aev__timer_heap_t *heap);
aev_handle_t *aev__timer_heap_pop(aev__timer_heap_t *heap);
void aev__timer_heap_compact(aev__timer_heap_t *heap);
void aev__timer_heap_clear(aev__timer_heap_t *heap);
void aev__timer_heap_free(aev__timer_heap_t *heap);

/* ---- fd watchers ---------------------------------------------------------- */

typedef struct aev__fd_watch {
    aev_handle_t *reader;
    aev_handle_t *writer;
    uint32_t events; /* interest registered with the engine */
} aev__fd_watch_t;

/* ---- plugins --------------------------------------------------------------- */

struct aev_plugin_context {
    const aev_policy_t *policy;
    const char *family;
    const char *name;
};

typedef struct aev__plugin {
    const aev_plugin_descriptor_t *desc;
    const void *ops;
    char *path;
} aev__plugin_t;

/* Loads the first usable plugin of family from a comma list; on failure returns an
 * AEV_EPLUGIN_* code and leaves the whole story in the error detail. */
int aev__registry_load(const aev_policy_t *policy, int family, const char *list,
                       const char *origin_text, const aev__plugin_t **out);
extern const aev_host_t aev__host;

/* policy internals used by the loop */
int aev__policy_debug(const aev_policy_t *policy);
int aev__policy_excluded(const aev_policy_t *policy, const char *family, const char *name);

/* ---- the loop ---------------------------------------------------------------- */

/* One ready callback. A plain call_soon (no handle wanted, no options, no
 * context to capture) is just (cb, arg): no handle object at all. Everything
 * else is a handle: cb == NULL and arg is the aev_handle_t. */
typedef struct aev__ready_entry {
    aev_callback_fn cb;
    void *arg;
} aev__ready_entry_t;

struct aev_loop {
    /* hot: the ready queue (a ring of entries) and the handle pools */
    aev__ready_entry_t *ready;
    uint32_t ready_head, ready_tail, ready_mask;
    aev__handle_pool_t small;  /* plain handles (32 bytes) */
    aev__handle_pool_t ext;    /* extended handles (64 bytes) */
    aev_handle_t *current_handle; /* the handle whose callback runs now */
    aev_context_t *cur_ctx;       /* context in effect: the running callback's (NULL between
                                     callbacks and in plain ones), base_ctx outside batches */
    aev_context_t *base_ctx;      /* the running thread's own context */
    aev_context_t *plain_ctx;     /* context created by a var_set in a plain callback */
    aev__timer_heap_t timers;
    const aev_poll_ops_t *poll;
    aev_poll_backend_t *backend;
    aev_poll_event_t *events;
    int events_cap;
    double last_poll;
    double poll_interval;
    uint32_t clock_skips; /* iterations since the clock was last read (see run_once) */
    int last_poll_error;

    /* fd watchers, indexed by fd */
    aev__fd_watch_t *fds;
    int fds_cap;
    struct aev__sock_op *sock_ops; /* sock_* operations in flight (core/sock.c) */

    /* state */
    int running;
    int stopping;
    int closed;
    int debug;
    int free_requested;
    pthread_t thread;
    double slow_callback_duration;
    size_t live_futures; /* futures not yet released (live handles: allocated - free) */
    uint32_t slow_calls;  /* non-zero when closed or in debug mode: scheduling takes the full path */

    /* call_soon_threadsafe */
    pthread_mutex_t ts_lock;
    aev_handle_t **ts_queue;
    size_t ts_len, ts_cap;
    atomic_size_t ts_count;
    atomic_int wake_pending;

    /* tasks (task.c) */
    struct aev__task *current_task; /* the task running now, on its own stack */
    struct aev__task *tasks;        /* tasks not yet done (a list) */
    size_t ntasks;
    uint64_t task_counter;          /* for "Task-<n>" names */
    aev__fiber_home_t fiber_home;   /* the loop's side of task switches */
    aev__stack_cache_t stacks;
    aev_task_factory_fn task_factory;
    void *task_factory_data;

    /* stream transports and servers (stream.c, server.c) */
    struct aev_transport *streams; /* open transports */
    struct aev_server *servers;
    struct aev__completion *completion; /* completion engines: io_op_completion.c's state */
    int native_ops;                     /* io_op runs on the engine's completion half */
    void *stream_rbuf;             /* the read buffer the streams share (64 KiB) */
    struct aev_datagram_transport *datagrams; /* open datagram transports (datagram.c) */

    /* error handling */
    aev_exception_handler_fn exc_handler;
    void *exc_userdata;

    /* plugins */
    aev_policy_t *policy;
    const aev__plugin_t *poll_plugin;
    struct aev_plugin_context poll_ctx;

    /* Unix signals (signal.c): NULL until the first add_signal_handler */
    struct aev__signals *signals;
    /* executors (core/executor.c): NULL until first used */
    struct aev__exec_link *exec;
    /* the resolver (core/dns.c): NULL until the first getaddrinfo/getnameinfo */
    struct aev__dns *dns;
};

/* Monotonic time in seconds. */
static inline double aev__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The loop running in this thread. */
extern AEV__TLS aev_loop_t *aev__running_loop;
/* The context of this thread outside callbacks. */
extern AEV__TLS aev_context_t *aev__thread_context;

/* Returns the context a new callback captures: the running handle's, else the thread's. */
static inline aev_context_t *aev__context_current_raw(void)
{
    aev_loop_t *rl = aev__running_loop;
    if (rl)
        return rl->cur_ctx;
    return aev__thread_context;
}
aev_context_t **aev__context_current_slot(void);

int aev__ready_grow(aev_loop_t *loop);
void aev__loop_destroy(aev_loop_t *loop);

/* Handles and futures not yet released. */
static inline size_t aev__loop_live_objects(const aev_loop_t *loop)
{
    return loop->small.allocated - loop->small.len + loop->ext.allocated - loop->ext.len +
           loop->live_futures;
}

/* After a handle or future went back: a loop freed by the application meanwhile goes now. */
static inline void aev__loop_object_released_fast(aev_loop_t *loop)
{
    if (AEV__UNLIKELY(loop->free_requested) && aev__loop_live_objects(loop) == 0)
        aev__loop_destroy(loop);
}

/* A handle with no options: the hot path of call_soon. */
static inline aev_handle_t *aev__handle_new_fast(aev_loop_t *loop, aev_callback_fn cb, void *arg)
{
    if (AEV__UNLIKELY(loop->small.len == 0) && aev__handle_pool_refill(&loop->small, loop) < 0)
        return NULL;
    aev_handle_t *h = loop->small.free[--loop->small.len];
    h->cb = cb;
    h->arg = arg;
    h->refs = 1;
    h->flags = 0;
    aev_context_t *cur = aev__context_current_raw();
    h->context = AEV__UNLIKELY(cur != NULL) ? aev_context_copy(cur) : NULL;
    return h;
}

static inline int aev__ready_push_plain(aev_loop_t *loop, aev_callback_fn cb, void *arg)
{
    if (AEV__UNLIKELY(loop->ready_tail - loop->ready_head > loop->ready_mask)) {
        int rc = aev__ready_grow(loop);
        if (rc < 0)
            return rc;
    }
    aev__ready_entry_t *e = &loop->ready[loop->ready_tail++ & loop->ready_mask];
    e->cb = cb;
    e->arg = arg;
    return 0;
}

/* Queues a handle; its reference passes to the queue. */
static inline int aev__ready_push(aev_loop_t *loop, aev_handle_t *h)
{
    return aev__ready_push_plain(loop, NULL, h);
}

/* Drops a reference; the last one returns the handle to its loop's pool. */
static inline void aev__handle_unref_fast(aev_handle_t *h)
{
    if (AEV__UNLIKELY((h->flags & (AEV__H_SHARED | AEV__H_EXT)) || h->context != NULL)) {
        aev__handle_unref_slow(h);
        return;
    }
    if (--h->refs != 0)
        return;
    aev_loop_t *loop = aev__handle_loop(h);
    loop->small.free[loop->small.len++] = h;
    aev__loop_object_released_fast(loop);
}

int aev__check_usable(aev_loop_t *loop); /* closed / wrong thread checks for non-threadsafe calls */
int aev__check_thread(aev_loop_t *loop); /* debug mode: AEV_EWRONG_THREAD from a foreign thread */
void aev__loop_object_released(aev_loop_t *loop);
void aev__report_callback_error(aev_loop_t *loop, aev_handle_t *h, int rc);
void aev__report_plain_error(aev_loop_t *loop, aev_callback_fn cb, void *arg, int rc);
const char *aev__describe_fn(void *fn, char *buf, size_t size);
void aev__ts_drain(aev_loop_t *loop);
void aev__ts_discard(aev_loop_t *loop);
void aev__io_process(aev_loop_t *loop, const aev_poll_event_t *ev);
void aev__io_close(aev_loop_t *loop);
/* Watchers the core itself owns (cb, arg identify them): watch keeps an existing one of the
 * same owner (0), refuses another one (AEV_EINVALID_STATE), or adds one. */
int aev__io_watch_owned(aev_loop_t *loop, int fd, uint32_t which, aev_callback_fn cb, void *arg);
int aev__io_owns(aev_loop_t *loop, int fd, uint32_t which, aev_callback_fn cb, void *arg);
void aev__io_unwatch_owned(aev_loop_t *loop, int fd, uint32_t which, aev_callback_fn cb, void *arg);
/* One iteration of the loop, and the bracket around running it (loop.c). */
int aev__loop_run_begin(aev_loop_t *loop);
void aev__loop_run_once(aev_loop_t *loop);
void aev__loop_run_end(aev_loop_t *loop);
int aev__future_trampoline(aev_loop_t *loop, void *arg);
void aev__tasks_loop_free(aev_loop_t *loop); /* stacks and task state at destroy */
void aev__signal_close(aev_loop_t *loop); /* gives back the loop's signals (while still open) */
void aev__datagrams_loop_close(aev_loop_t *loop); /* open datagram endpoints: connection_lost now */

/* executors (core/executor.c) */
typedef struct aev__exec_link aev__exec_link_t;
/* close: shuts the default executor down without waiting; results arriving later are dropped */
void aev__executor_loop_close(aev_loop_t *loop);
/* destroy: waits for the default executor's threads, frees it */
void aev__executor_loop_destroy(aev_loop_t *loop);
const char *aev__executor_loop_plugin_name(const aev_loop_t *loop);

/* the resolver (core/dns.c) */
/* close (while the loop is still open): destroys the resolver; queries in flight are abandoned */
void aev__dns_loop_close(aev_loop_t *loop);
const char *aev__dns_loop_plugin_name(const aev_loop_t *loop);
void aev__dns_loop_destroy(aev_loop_t *loop); /* frees what is left at destroy */



/* error detail (thread-local) */
void aev__set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void aev__clear_detail(void);
void aev__vset_detail(const char *fmt, va_list ap);

void aev__vlog(int level, const char *origin, const char *fmt, va_list ap);

#endif /* AEV_LOOP_INTERNAL_H */
