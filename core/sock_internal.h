/* libaev core - internals of the sock_* operations (core/sock.c) that other
 * core files reuse: the non-blocking check every operation starts with, and
 * the sendfile engine (sendfile(2), or pread + send when sendfile cannot serve
 * the file) as a resumable step function, so that both the future forms
 * (core/sock.c) and the task forms (core/task_sock.c) drive the same code and
 * only differ in how they wait. Nothing here is public API. */
#ifndef AEV_SOCK_INTERNAL_H
#define AEV_SOCK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sys/socket.h>

#include "aev/sock.h"

/* 0 if fd is an open non-blocking descriptor; -EINVAL ("the socket must be
 * non-blocking", as asyncio's ValueError) for a blocking one; -EBADF for a bad
 * fd. Sets the error detail on failure. */
int aev__sock_check_nonblocking(int fd);

/* ---- sendfile ---------------------------------------------------------------- */

typedef struct aev__sendfile {
    int fd;            /* the stream socket */
    int file_fd;       /* the file */
    off_t offset;      /* where sending started in the file */
    size_t count;      /* bytes to send at most (SIZE_MAX: until EOF) */
    size_t sent;       /* bytes sent so far */
    int no_fallback;
    int fallback;      /* 1 once reading and sending (sendfile(2) cannot serve the file) */
    int seekable;      /* the file has a position (lseek works) */
    int started;       /* step() was called at least once */
    unsigned char *buf; /* fallback: bytes read and not all sent yet */
    size_t buf_len, buf_off;
    /* After step() returned 0: wait until wait_fd is ready for wait_events
     * (AEV_POLL_OUT on the socket, or AEV_POLL_IN on a non-blocking pipe). */
    int wait_fd;
    uint32_t wait_events;
    const char *why;   /* after AEV_ESENDFILE_NOT_AVAILABLE: why (a static string) */
} aev__sendfile_t;

/* Checks the arguments (non-blocking SOCK_STREAM socket, offset >= 0, file_fd
 * open; opts may be NULL) and fills *sf. Errors: -EINVAL, -EBADF, -ENOTSOCK,
 * with a detail. Nothing to free on failure. */
int aev__sendfile_init(aev__sendfile_t *sf, int fd, int file_fd, const aev_sendfile_options_t *opts);

/* Sends as much as can go now (bounded, so that one call never monopolises the
 * loop): 1 when finished (sf->sent is the total), 0 when it must wait for
 * (sf->wait_fd, sf->wait_events) and be called again, or a negative error:
 * -errno, or AEV_ESENDFILE_NOT_AVAILABLE when sendfile(2) cannot serve the file
 * and no_fallback is set (the detail says why). */
int aev__sendfile_step(aev__sendfile_t *sf);

/* Ends the operation, however it ended (done, error, cancelled): leaves a
 * seekable file's position at offset + sent and frees the buffer. Idempotent. */
void aev__sendfile_end(aev__sendfile_t *sf);

/* ---- the task forms on a proactor loop (core/task_sock.c) ------------------------ */

/* The next aev_loop_sock_*() call of this thread comes from a task form that has
 * checked fd and tried the call just now (it would block): no non-blocking check,
 * no first try, the native operation goes to the engine at once. A sendall then
 * starts counting at *sent as given, and the final completion of a native send that
 * raced the future's cancel still adds what it sent to *sent: the caller keeps
 * `sent` valid until aev__sock_native_state() no longer says AEV__SOCK_SETTLING. */
void aev__sock_task_next(void);

/* A receive or accept of a task form completed, but the task was cancelled before it
 * resumed (it returns AEV_ECANCELLED): what it got goes back to fd's stash, first, for
 * the next receive or accept (n bytes at data, the sender from/fromlen if any; or the
 * connection `accepted` when >= 0, closed if it cannot be kept). */
void aev__sock_give_back(aev_loop_t *loop, int fd, ssize_t n, const void *data, const struct sockaddr *from,
                         socklen_t fromlen, int accepted);

/* Where fd's direction (AEV_POLL_IN/OUT) stands on a proactor loop: 0 idle (the
 * system call may be tried directly without overtaking anything), else
 * AEV__SOCK_BUSY (an operation in flight or waiting, or a cancelled receive's
 * stash), plus AEV__SOCK_SETTLING while a cancelled native operation has not ended. */
#define AEV__SOCK_BUSY 1
#define AEV__SOCK_SETTLING 2
int aev__sock_native_state(aev_loop_t *loop, int fd, uint32_t dir);

/* ---- loop hooks ---------------------------------------------------------------- */

/* aev_loop_close(): drops every operation still in flight (their futures stay
 * pending; the loop's references on them are released), and closes connections
 * that cancelled native accepts took and nobody accepted since. Called after the
 * watchers were dropped and the native operations ended (aev__op_completion_close);
 * never runs a callback. */
void aev__sock_loop_close(aev_loop_t *loop);

#endif /* AEV_SOCK_INTERNAL_H */
