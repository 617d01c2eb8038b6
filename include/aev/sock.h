/* libaev - working with sockets directly (asyncio "Working with socket objects
 * directly": loop.sock_recv, sock_sendall, sock_accept, ...).
 *
 * Every operation comes in two forms:
 *  - aev_loop_sock_*(loop, fd, ..., &future): starts the operation and gives
 *    the caller a future (one reference). The operation is tried at once; if
 *    the socket is not ready it waits for readiness on the loop. The future's
 *    value is an intptr_t carried in the void * (read it with
 *    aev_future_result(fut, &v) and (intptr_t)v): a byte count, or the new fd
 *    for sock_accept. Buffers, addresses and out-parameters passed in belong
 *    to the operation until the future is done: keep them alive. Bad input
 *    (a blocking socket, a bad fd, NULL buffers), a closed loop or a busy
 *    direction is refused at once: a negative return and *out = NULL; what
 *    the socket itself reports (-ECONNRESET, ...) is the future's error.
 *  - aev_task_sock_*(fd, ...): the same operation awaited from inside a task
 *    (await loop.sock_recv(...)): it returns the result directly (a byte count,
 *    a new fd, 0) or a negative error code, AEV_ECANCELLED if the task was
 *    cancelled while it waited. Outside a task: AEV_ENOT_IN_TASK.
 *
 * The socket must be non-blocking: a blocking one is refused with -EINVAL (as
 * asyncio raises ValueError). Cancelling an operation (the future, or the task
 * that waits) before it completes means it did not happen for the caller: the
 * caller's buffer is not written after the cancel, and the socket stays usable.
 * On a selector loop no byte is taken from the socket by a cancelled receive or
 * accept. On a proactor loop the kernel may have completed the receive or
 * accept as the cancel was made: what it took is kept by the loop and handed,
 * in order, to the next sock_* receive or accept on the same socket (a plain
 * recv(2) after the cancel does not see it, as in asyncio's proactor). A send
 * that is cancelled after part of the data went out reports how much did
 * through its `sent` out-parameter (on a proactor loop the future form may miss
 * the bytes of a native send that was completing as it was cancelled; the task
 * form counts them).
 *
 * Two operations of the same direction on one socket at once are refused
 * (AEV_EINVALID_STATE for the second): one reader and one writer per fd, as
 * with add_reader/add_writer (on a selector loop these operations use their
 * watchers; on a proactor loop, native operations of the engine).
 */
#ifndef AEV_SOCK_H
#define AEV_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* ---- futures --------------------------------------------------------------- */

/** Receives up to n bytes into buf (sock_recv / sock_recv_into): value = bytes read, 0 at EOF. */
int aev_loop_sock_recv(aev_loop_t *loop, int fd, void *buf, size_t n, aev_future_t **out);

/** Receives one datagram of up to n bytes (sock_recvfrom / sock_recvfrom_into): value = its
 *  length; the sender's address goes to addr/addrlen (both may be NULL; *addrlen in/out). */
int aev_loop_sock_recvfrom(aev_loop_t *loop, int fd, void *buf, size_t n, struct sockaddr *addr,
                           socklen_t *addrlen, aev_future_t **out);

/** Sends all n bytes (sock_sendall): value = n. *sent (may be NULL) counts the bytes sent so
 *  far, also when the send fails or is cancelled. */
int aev_loop_sock_sendall(aev_loop_t *loop, int fd, const void *buf, size_t n, size_t *sent,
                          aev_future_t **out);

/** Sends one datagram to addr (sock_sendto): value = bytes sent. */
int aev_loop_sock_sendto(aev_loop_t *loop, int fd, const void *buf, size_t n,
                         const struct sockaddr *addr, socklen_t addrlen, aev_future_t **out);

/** Connects to an address already resolved (sock_connect): value = 0. A failed connection
 *  is its error (-ECONNREFUSED, ...). Resolving names is getaddrinfo's job. */
int aev_loop_sock_connect(aev_loop_t *loop, int fd, const struct sockaddr *addr, socklen_t addrlen,
                          aev_future_t **out);

/** Accepts a connection (sock_accept): value = the new fd, non-blocking and close-on-exec,
 *  which the caller owns; the peer's address goes to addr/addrlen (may be NULL). */
int aev_loop_sock_accept(aev_loop_t *loop, int fd, struct sockaddr *addr, socklen_t *addrlen,
                         aev_future_t **out);

/* Options of sock_sendfile; zero means the spec's default. */
typedef struct aev_sendfile_options {
    off_t offset;     /* where to start in the file */
    size_t count;     /* bytes to send; 0: until the end of the file */
    int no_fallback;  /* 1: fail with AEV_ESENDFILE_NOT_AVAILABLE rather than read and send */
} aev_sendfile_options_t;

/** Sends a regular file over a stream socket with sendfile(2) (sock_sendfile), or by reading
 *  and sending when sendfile cannot serve these files and fallback is allowed (else the
 *  future fails with AEV_ESENDFILE_NOT_AVAILABLE): value = bytes sent. The file position is
 *  left after the last byte sent, also on error or cancellation. */
int aev_loop_sock_sendfile(aev_loop_t *loop, int fd, int file_fd, const aev_sendfile_options_t *opts,
                           aev_future_t **out);

/* ---- awaited from a task --------------------------------------------------- */

/** await sock_recv inside a task: bytes read (0 at EOF) or a negative error. */
ssize_t aev_task_sock_recv(int fd, void *buf, size_t n);
/** await sock_recvfrom inside a task. */
ssize_t aev_task_sock_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr, socklen_t *addrlen);
/** await sock_sendall inside a task: n, or a negative error (*sent, may be NULL, says how much went). */
ssize_t aev_task_sock_sendall(int fd, const void *buf, size_t n, size_t *sent);
/** await sock_sendto inside a task. */
ssize_t aev_task_sock_sendto(int fd, const void *buf, size_t n, const struct sockaddr *addr,
                             socklen_t addrlen);
/** await sock_connect inside a task: 0 or a negative error. */
int aev_task_sock_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
/** await sock_accept inside a task: the new fd or a negative error. */
int aev_task_sock_accept(int fd, struct sockaddr *addr, socklen_t *addrlen);
/** await sock_sendfile inside a task: bytes sent or a negative error. */
ssize_t aev_task_sock_sendfile(int fd, int file_fd, const aev_sendfile_options_t *opts);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_SOCK_H */
