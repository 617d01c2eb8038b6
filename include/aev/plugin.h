/* libaev - the plugin ABI.
 *
 * A plugin is one shared module exporting one descriptor. The module file is
 * named aev_<family>_<name> (aev_poll_epoll.so) and exports its descriptor as
 * <module>_LTX_aev_plugin, which AEV_PLUGIN_DEFINE() spells for you, so the
 * same source also links into a static core as a preloaded module.
 *
 * Versioning (docs/plugin-authors.md has the full rules):
 *  - The core accepts a descriptor when abi_major equals the core's and
 *    abi_minor is not newer than the core's. It validates the descriptor
 *    (magic, size, family, name, functions) before calling anything in it.
 *  - Every ops struct and the host table start with a version. Members are
 *    only ever appended; each appended member is marked "since vN", and the
 *    core (or plugin) checks the version before touching a newer member.
 *  - Differences in behaviour are capability flags, not more methods.
 *
 * Rules for plugins: do not link against libaev (use the host table); keep
 * everything static except the descriptor; never call exit(), never print to
 * stdout, never leave errno for the core to read (return negative codes).
 * Plugins stay loaded until the process ends.
 */
#ifndef AEV_PLUGIN_H
#define AEV_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "loop.h"
#include "future.h"
#include "executor.h"
#include "dns.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AEV_PLUGIN_ABI_MAJOR 1
#define AEV_PLUGIN_ABI_MINOR 1 /* 1.1: host table v2, dns ops settled */
#define AEV_PLUGIN_MAGIC 0x50564541u /* "AEVP" in little-endian memory */

#if defined(__GNUC__)
#define AEV_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define AEV_PLUGIN_EXPORT
#endif

/* Defines the descriptor of module `module` (the file name without extension). */
#define AEV_PLUGIN_DEFINE(module) AEV_PLUGIN_EXPORT const aev_plugin_descriptor_t module##_LTX_aev_plugin

/** The plugin families. */
enum aev_plugin_family {
    AEV_FAMILY_POLL = 1, /* I/O engines: readiness (epoll, poll, select) or completion (io_uring) */
    AEV_FAMILY_TLS = 2,  /* TLS byte engines */
    AEV_FAMILY_DNS = 3,  /* resolvers */
    AEV_FAMILY_PROC = 4, /* subprocess spawning and watching */
    AEV_FAMILY_EXEC = 5  /* executors (thread pools) */
};

typedef struct aev_host aev_host_t;
/* Per-instance settings handed to a plugin's create(): read with host->option(). */
typedef struct aev_plugin_context aev_plugin_context_t;

/* ---- the descriptor ------------------------------------------------------ */

typedef struct aev_plugin_descriptor {
    uint32_t magic;        /* AEV_PLUGIN_MAGIC */
    uint16_t abi_major;    /* AEV_PLUGIN_ABI_MAJOR the plugin was built against */
    uint16_t abi_minor;    /* AEV_PLUGIN_ABI_MINOR the plugin was built against */
    uint32_t struct_size;  /* sizeof(aev_plugin_descriptor_t) as the plugin knows it */
    uint32_t family;       /* enum aev_plugin_family */
    const char *name;      /* "epoll": [a-z0-9_]+, equal to the <name> in the file name */
    const char *version;   /* the plugin's own version, free text (may be NULL) */
    const char *description;
    int32_t priority;      /* order among candidates of one family in a preset (higher first) */
    uint32_t caps;         /* family capability flags (AEV_POLL_CAP_* ...) */
    /* Can the plugin run here? 0 if yes; else a negative errno, with a reason in why. */
    int (*probe)(const aev_host_t *host, char *why, size_t why_size);
    /* Called once, after a successful probe: returns the family's ops, or NULL. */
    const void *(*init)(const aev_host_t *host);
} aev_plugin_descriptor_t;

/* ---- the host table: core services for plugins --------------------------- */

#define AEV_HOST_VERSION 2

struct aev_host {
    uint32_t version; /* AEV_HOST_VERSION of the core */
    uint16_t abi_major;
    uint16_t abi_minor;
    /* memory */
    void *(*alloc)(size_t size);
    void *(*realloc)(void *ptr, size_t size);
    void (*free)(void *ptr);
    /* diagnostics: log through the core's sink; leave a detail for aev_error_detail() */
    void (*log)(int level, const char *origin, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    void (*set_error_detail)(const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 1, 2)))
#endif
        ;
    /* plugin options: `key` in the config section [<family>.<name>], or NULL */
    const char *(*option)(const aev_plugin_context_t *ctx, const char *key);
    /* loop services, same contracts as the public functions of the same names */
    double (*time)(const aev_loop_t *loop);
    int (*call_soon)(aev_loop_t *loop, aev_callback_fn cb, void *arg, aev_handle_t **handle_out);
    int (*call_soon_threadsafe)(aev_loop_t *loop, aev_callback_fn cb, void *arg,
                                aev_handle_t **handle_out);
    int (*call_later)(aev_loop_t *loop, double delay, aev_callback_fn cb, void *arg,
                      aev_handle_t **handle_out);
    void (*handle_cancel)(aev_handle_t *handle);
    void (*handle_unref)(aev_handle_t *handle);
    int (*add_reader)(aev_loop_t *loop, int fd, aev_callback_fn cb, void *arg);
    int (*remove_reader)(aev_loop_t *loop, int fd);
    int (*add_writer)(aev_loop_t *loop, int fd, aev_callback_fn cb, void *arg);
    int (*remove_writer)(aev_loop_t *loop, int fd);
    int (*future_create)(aev_loop_t *loop, aev_future_t **out);
    aev_future_t *(*future_ref)(aev_future_t *future);
    void (*future_unref)(aev_future_t *future);
    int (*future_set_result)(aev_future_t *future, void *value, void (*destroy)(void *));
    int (*future_set_error)(aev_future_t *future, int error, const char *detail);
    int (*future_cancelled)(const aev_future_t *future);
    int (*future_add_done_callback)(aev_future_t *future, aev_future_callback_fn cb, void *arg);
    void (*call_exception_handler)(aev_loop_t *loop, const aev_exception_context_t *ctx);
    /* since v2: aev_future_done(), aev_future_remove_done_callback() */
    int (*future_done)(const aev_future_t *future);
    int (*future_remove_done_callback)(aev_future_t *future, aev_future_callback_fn cb, void *arg);
    /* since v2: runs blocking work off the loop: aev_loop_run_in_executor_ex() with the
     * loop's default executor (created on first use from the loop's policy). fn runs on a
     * worker thread; the future it gives completes on the loop thread with fn's result (its
     * destroy frees it, on the worker if nobody can take it any more) or error. Cancelling
     * the future: work not started never runs; work that runs finishes and its result is
     * freed. arg_destroy (may be NULL) is called once when the executor is done with arg. */
    int (*run_in_executor)(aev_loop_t *loop, aev_work_fn fn, void *arg, void (*arg_destroy)(void *),
                           aev_future_t **out);
};

/* ---- family "poll": I/O engines ------------------------------------------ */

/* Readiness bits, used by watch() and in fd events. */
#define AEV_POLL_IN 0x01u
#define AEV_POLL_OUT 0x04u
#define AEV_POLL_ERR 0x08u
#define AEV_POLL_HUP 0x10u
#define AEV_POLL_NVAL 0x20u /* the fd is not open (closed behind the loop's back) */

/* Capability flags (descriptor caps and ops caps agree). */
#define AEV_POLL_CAP_READINESS 0x01u    /* watch/wait readiness engine */
#define AEV_POLL_CAP_COMPLETION 0x02u   /* submit/cancel completion operations */
#define AEV_POLL_CAP_MULTISHOT 0x04u    /* AEV_OP_F_MULTISHOT on accept/recv */
#define AEV_POLL_CAP_BUFFER_RING 0x08u  /* AEV_OP_F_BUFFER_SELECT with provided buffers */
#define AEV_POLL_CAP_FD_LIMIT 0x10u     /* watch() refuses fds above a limit (select) */
#define AEV_POLL_CAP_NS_TIMEOUT 0x20u   /* wait() honours sub-millisecond timeouts */

typedef struct aev_poll_backend aev_poll_backend_t;

/* Completion operations (for engines with AEV_POLL_CAP_COMPLETION). */
enum aev_poll_opcode {
    AEV_OP_NOP = 0,
    AEV_OP_RECV,     /* fd, buf, len, msg_flags */
    AEV_OP_SEND,     /* fd, buf, len, msg_flags */
    AEV_OP_RECVMSG,  /* fd, msg, msg_flags */
    AEV_OP_SENDMSG,  /* fd, msg, msg_flags */
    AEV_OP_READV,    /* fd, iov, iovcnt, offset (-1: current position); iovcnt 0: buf, len */
    AEV_OP_WRITEV,   /* fd, iov, iovcnt, offset; iovcnt 0: buf, len (write(2)) */
    AEV_OP_ACCEPT,   /* fd, addr, addrlen_inout, sock_flags */
    AEV_OP_CONNECT,  /* fd, addr, addrlen */
    AEV_OP_POLL,     /* fd, poll_events: one readiness event (multishot: until cancelled) */
    AEV_OP_TIMEOUT,  /* timeout_ns */
    AEV_OP_SPLICE,   /* fd -> fd_out, len */
    AEV_OP_CLOSE     /* fd */
};

#define AEV_OP_F_MULTISHOT 0x01u     /* keep completing until cancelled or an error */
#define AEV_OP_F_BUFFER_SELECT 0x02u /* receive into a buffer of group buf_group */

/* One operation. The core owns it and keeps it alive until its last completion
 * (an event without AEV_OP_CQE_MORE) has been delivered. Append-only. */
typedef struct aev_poll_op {
    uint32_t opcode;
    uint32_t flags;
    int fd;
    int fd_out;
    void *buf;
    size_t len;
    const struct iovec *iov;
    unsigned iovcnt;
    int msg_flags;
    struct msghdr *msg;
    struct sockaddr *addr;
    socklen_t addrlen;
    socklen_t *addrlen_inout;
    int sock_flags;
    uint32_t poll_events;
    int64_t offset;
    int64_t timeout_ns;
    uint16_t buf_group;
    void *core_data; /* the core's; the engine never touches it */
    void *engine_data; /* the engine's */
} aev_poll_op_t;

#define AEV_OP_CQE_MORE 0x01u   /* more completions will follow for this op */
#define AEV_OP_CQE_BUFFER 0x02u /* buffer_id holds the provided buffer used */

enum aev_poll_event_kind { AEV_POLL_EVENT_FD = 0, AEV_POLL_EVENT_COMPLETION = 1 };

/* One result of wait(). */
typedef struct aev_poll_event {
    uint32_t kind;     /* enum aev_poll_event_kind */
    uint32_t events;   /* FD: AEV_POLL_* bits */
    int fd;            /* FD: the descriptor */
    int32_t result;    /* COMPLETION: bytes, new fd, 0, or a negative errno */
    uint32_t flags;    /* COMPLETION: AEV_OP_CQE_* */
    uint32_t buffer_id;
    aev_poll_op_t *op; /* COMPLETION: the operation */
} aev_poll_event_t;

#define AEV_POLL_OPS_VERSION 2 /* 2: return_buffer */

typedef struct aev_poll_ops {
    uint32_t version; /* AEV_POLL_OPS_VERSION the plugin implements */
    uint32_t caps;    /* AEV_POLL_CAP_* */
    /* Creates an engine instance (one per loop). */
    int (*create)(const aev_host_t *host, const aev_plugin_context_t *ctx, aev_poll_backend_t **out);
    /* Destroys it; the wake-up mechanism goes with it. */
    void (*destroy)(aev_poll_backend_t *backend);
    /* Sets fd's interest from old_events to new_events (AEV_POLL_IN|OUT; 0: forget fd).
     * -EBADF for a closed fd, -ERANGE (with a detail) for an fd beyond the engine's limit. */
    int (*watch)(aev_poll_backend_t *backend, int fd, uint32_t old_events, uint32_t new_events);
    /* Waits up to timeout_ns (-1: forever, 0: do not block) and writes at most max events.
     * Returns the count (0 on timeout, wake-up or EINTR) or a negative errno. */
    int (*wait)(aev_poll_backend_t *backend, int64_t timeout_ns, aev_poll_event_t *events, int max);
    /* Makes a concurrent or the next wait() return early. Thread-safe and async-signal-safe. */
    int (*wake)(aev_poll_backend_t *backend);
    /* Completion engines only (NULL otherwise): start op; its completions come from wait(). */
    int (*submit)(aev_poll_backend_t *backend, aev_poll_op_t *op);
    /* Asks to cancel op; its final completion (often -ECANCELED) still comes from wait(). */
    int (*cancel)(aev_poll_backend_t *backend, aev_poll_op_t *op);
    /* Provides (or, with count 0, removes) a ring of count buffers of size bytes as buf_group. */
    int (*provide_buffers)(aev_poll_backend_t *backend, uint16_t buf_group, void *base,
                           size_t size, unsigned count);
    /* since v2: gives buffer buffer_id of buf_group (as a completion with AEV_OP_CQE_BUFFER
     * named it) back to the engine once the core has consumed its data; until then the
     * kernel never writes into it again. NULL in readiness engines: check version >= 2 and
     * the pointer before calling. */
    int (*return_buffer)(aev_poll_backend_t *backend, uint16_t buf_group, uint32_t buffer_id);
} aev_poll_ops_t;

/* ---- family "tls": byte engines over memory buffers ---------------------- *
 * Provisional until the first TLS plugin lands (the TLS issue may append). */

typedef struct aev_tls_config aev_tls_config_t;   /* plugin-defined (SSL_CTX) */
typedef struct aev_tls_session aev_tls_session_t; /* plugin-defined (SSL + BIOs) */

typedef struct aev_tls_config_options {
    int server_side;
    int verify_peer;             /* 1 by default for clients */
    const char *ca_file, *ca_path;
    const char *cert_file, *key_file;
    const char *const *alpn;     /* NULL-terminated */
    const char *ciphers;
    int min_version, max_version; /* 0: library default; else 0x0303 TLS1.2, 0x0304 TLS1.3 */
} aev_tls_config_options_t;

/* Engine results other than byte counts. */
#define AEV_TLS_WANT_READ (-4100)  /* feed more ciphertext */
#define AEV_TLS_WANT_WRITE (-4101) /* pull pending ciphertext */
#define AEV_TLS_CLOSED (-4102)     /* the peer sent close_notify */

#define AEV_TLS_OPS_VERSION 1

typedef struct aev_tls_ops {
    uint32_t version;
    uint32_t caps;
    int (*config_new)(const aev_host_t *host, const aev_tls_config_options_t *opts,
                      aev_tls_config_t **out);
    void (*config_free)(aev_tls_config_t *config);
    int (*session_new)(aev_tls_config_t *config, const char *server_hostname,
                       aev_tls_session_t **out);
    void (*session_free)(aev_tls_session_t *session);
    int (*handshake)(aev_tls_session_t *session);
    int (*feed)(aev_tls_session_t *session, const void *ciphertext, size_t len);
    int (*pull)(aev_tls_session_t *session, void *ciphertext, size_t len);
    int (*read)(aev_tls_session_t *session, void *plaintext, size_t len);
    int (*write)(aev_tls_session_t *session, const void *plaintext, size_t len);
    int (*shutdown)(aev_tls_session_t *session);
    /* Copies a named piece of session information ("cipher", "version", "alpn", "peercert"). */
    int (*info)(aev_tls_session_t *session, const char *what, void *buf, size_t *len);
} aev_tls_ops_t;

/* ---- family "dns": resolvers ----------------------------------------------
 *
 * A resolver serves one loop (create() gets it) and answers loop.getaddrinfo and
 * loop.getnameinfo with futures of that loop. The core checks the arguments (a host or
 * a service, a known family, a port in range, a whole sockaddr), then calls the
 * plugin on the loop's thread; every call of these ops comes from that thread.
 *
 *  - getaddrinfo()/getnameinfo() start one query and return 0 with *out set to a new
 *    future of the loop (the caller's reference), or a negative code with nothing
 *    started (a detail through host->set_error_detail). The future is completed on the
 *    loop's thread, at once or later:
 *      getaddrinfo: value a struct addrinfo list (ai_next chained; ai_addr and
 *        ai_canonname inside it) owned by the future: its destroy frees the whole list;
 *      getnameinfo: value an aev_nameinfo_t (<aev/dns.h>) owned by the future;
 *      errors: AEV_EDNS_* (EAI_* mapped: docs/plugin-authors.md has the table),
 *        -ENOMEM, a negative errno (EAI_SYSTEM), with the resolver's own text as the
 *        future's detail.
 *  - Cancellation is the future's: the application cancels it and it is done, cancelled,
 *    at once. The resolver learns it from a done callback it put on the future
 *    (host->future_add_done_callback) and stops or abandons the query; an answer that
 *    arrives for a done future is freed, never delivered.
 *  - destroy() comes once, on the loop's thread, when the loop closes and while it is
 *    still open (remove_reader and handle_cancel still work). The resolver abandons
 *    every query (their futures may stay pending, as asyncio's do when the loop closes),
 *    drops every reference it holds and frees itself. Work still running elsewhere must
 *    then never touch the loop or the resolver (free its answer itself).
 *
 * Nothing here assumes threads. A loop-driven resolver (c-ares) watches its sockets with
 * host->add_reader/add_writer, runs a host->call_later timer from ares_timeout() and
 * calls ares_process_fd() from those callbacks; a blocking one (getaddrinfo(3)) runs it
 * through host->run_in_executor (since host v2) and returns that future. */

typedef struct aev_dns_resolver aev_dns_resolver_t;
struct addrinfo;

/* Capability flags of a resolver. */
#define AEV_DNS_CAP_THREADS 0x01u /* queries run on the executor's threads (shown by
                                     aev-inspect; a loop-driven resolver has none) */

#define AEV_DNS_OPS_VERSION 1

typedef struct aev_dns_ops {
    uint32_t version; /* AEV_DNS_OPS_VERSION the plugin implements */
    uint32_t caps;    /* AEV_DNS_CAP_* */
    /* Creates the resolver of loop (once, on first use). A bad option: -EINVAL with a
     * detail naming the key and the value. */
    int (*create)(const aev_host_t *host, const aev_plugin_context_t *ctx, aev_loop_t *loop,
                  aev_dns_resolver_t **out);
    /* Abandons every query, releases every future, frees the resolver (see above). */
    void (*destroy)(aev_dns_resolver_t *resolver);
    /* Starts getaddrinfo(host, service, hints): host or service may be NULL, not both;
     * hints has ai_family, ai_socktype, ai_protocol and ai_flags set, the rest zero. */
    int (*getaddrinfo)(aev_dns_resolver_t *resolver, const char *host, const char *service,
                       const struct addrinfo *hints, aev_future_t **out);
    /* Starts getnameinfo(addr, addrlen, flags): addr is an AF_INET or AF_INET6 address of
     * the right length; the resolver copies it if it needs it later. */
    int (*getnameinfo)(aev_dns_resolver_t *resolver, const struct sockaddr *addr,
                       socklen_t addrlen, int flags, aev_future_t **out);
} aev_dns_ops_t;

/* ---- family "proc": subprocesses ------------------------------------------ *
 * Provisional until the first process plugin lands. */

typedef struct aev_proc_backend aev_proc_backend_t;
typedef struct aev_proc_child aev_proc_child_t;

typedef struct aev_proc_spawn_options {
    const char *file;
    const char *const *argv;
    const char *const *envp;  /* NULL: inherit */
    const char *cwd;
    int stdin_fd, stdout_fd, stderr_fd; /* -1: inherit */
    const int *pass_fds;
    size_t n_pass_fds;
    int start_new_session;
} aev_proc_spawn_options_t;

#define AEV_PROC_OPS_VERSION 1

typedef struct aev_proc_ops {
    uint32_t version;
    uint32_t caps;
    int (*create)(const aev_host_t *host, const aev_plugin_context_t *ctx, aev_loop_t *loop,
                  aev_proc_backend_t **out);
    void (*destroy)(aev_proc_backend_t *backend);
    int (*spawn)(aev_proc_backend_t *backend, const aev_proc_spawn_options_t *opts,
                 aev_proc_child_t **child, pid_t *pid);
    /* Completes future with the wait status (as an intptr_t value) when the child exits. */
    int (*watch_exit)(aev_proc_backend_t *backend, aev_proc_child_t *child, aev_future_t *future);
    int (*send_signal)(aev_proc_backend_t *backend, aev_proc_child_t *child, int sig);
    void (*release)(aev_proc_backend_t *backend, aev_proc_child_t *child);
} aev_proc_ops_t;

/* ---- family "exec": executors ---------------------------------------------
 *
 * An executor plugin runs work items on threads of its own. The core wraps
 * each aev_loop_run_in_executor() call in one item and does all the loop-side
 * work (futures, cancellation, reporting back to the loop thread), so a pool
 * only has to run opaque items:
 *
 *  - item(arg, 1) runs the item (on a worker thread, never on the thread that
 *    called submit(), and never while holding a lock the pool needs);
 *  - item(arg, 0) tells the core the item will never run (shutdown() with
 *    cancel_pending); it must not block.
 * Every submitted item is called exactly once, one way or the other, before
 * shutdown(pool, 1, ...) returns. Items start in submission order (FIFO).
 * Everything but create and destroy may be called from any thread, at the same
 * time as other calls. Worker threads should block signals (the application
 * handles them on its own threads). */

typedef struct aev_exec_pool aev_exec_pool_t;

/* One work item: run is 1 to run it, 0 when it is dropped unrun. */
typedef void (*aev_exec_item_fn)(void *arg, int run);

#define AEV_EXEC_OPS_VERSION 1

typedef struct aev_exec_ops {
    uint32_t version; /* AEV_EXEC_OPS_VERSION the plugin implements */
    uint32_t caps;    /* none defined yet: 0 */
    /* Creates a pool of at most max_workers threads; 0 means the plugin's default (its option
     * "max_workers" in [exec.<name>], else its own default). Threads may start lazily, as
     * work arrives. A bad option: -EINVAL with a detail naming the key and the value. */
    int (*create)(const aev_host_t *host, const aev_plugin_context_t *ctx, int max_workers,
                  aev_exec_pool_t **out);
    /* Queues item for a worker thread. 0, AEV_ESHUTDOWN after shutdown(), -ENOMEM, or
     * another negative errno when no worker could be started (the item is then not taken). */
    int (*submit)(aev_exec_pool_t *pool, aev_exec_item_fn item, void *arg);
    /* Stops accepting work (idempotent). cancel_pending: calls item(arg, 0) for every item
     * not started yet, on the calling thread, before returning. wait: returns only when every
     * worker thread has finished and been joined (several threads may wait at once); without
     * wait it never blocks on work. Queued items that were not cancelled still run. Returns 0. */
    int (*shutdown)(aev_exec_pool_t *pool, int wait, int cancel_pending);
    /* The most worker threads the pool runs at once. */
    int (*max_workers)(const aev_exec_pool_t *pool);
    /* shutdown(pool, 1, 0), then frees the pool. Nothing else may use the pool then. */
    void (*destroy)(aev_exec_pool_t *pool);
} aev_exec_ops_t;

#ifdef __cplusplus
}
#endif
#endif /* AEV_PLUGIN_H */
