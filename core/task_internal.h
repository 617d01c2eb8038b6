/* libaev core - the task object, for the files that suspend tasks (task.c,
 * task_sock.c). */
#ifndef AEV_TASK_INTERNAL_H
#define AEV_TASK_INTERNAL_H

#include "future_internal.h"

enum { AEV__T_SCHEDULED = 1, AEV__T_RUNNING, AEV__T_WAITING, AEV__T_DONE };
/* What a task waits for; exactly one wake-up source is armed at a time. */
enum { AEV__W_NONE = 0, AEV__W_STEP, AEV__W_FUTURE, AEV__W_TIMER, AEV__W_FD };

typedef struct aev__task {
    struct aev_future fut; /* first: a task is a future */
    aev_task_fn fn;
    void *arg;
    aev_context_t *context;
    char *name;          /* NULL: "Task-<num>", formatted into name_buf on demand */
    uint64_t num;
    char name_buf[32];
    aev__fiber_t fiber;
    size_t stack_request;
    uint8_t state;       /* AEV__T_* */
    uint8_t wait;        /* AEV__W_* */
    uint8_t must_cancel; /* a cancellation to deliver at the current or next wait */
    uint8_t started;     /* has a stack and has run */
    uint8_t ran;         /* its function was called */
    void (*arg_destroy)(void *arg); /* core tasks: frees arg if the function never ran */
    int cancel_requests;
    char *cancel_msg;
    aev_future_t *waiting_on; /* AEV__W_FUTURE */
    aev_handle_t *timer;      /* AEV__W_TIMER */
    int wait_fd;              /* AEV__W_FD */
    uint32_t wait_dir;        /* AEV_POLL_IN or AEV_POLL_OUT */
    int short_read_fd;        /* the fd whose last receive came back short (-1: none) */
    int checked_fd;           /* the fd last found non-blocking (-1: none) */
    int rc;                   /* what fn returned */
    void *ret_value;
    void (*ret_destroy)(void *);
    char *fail_detail;
    struct aev__task *prev, *next; /* the loop's pending tasks */
} aev__task_t;

int aev__task_start(aev_loop_t *loop, aev__task_t *t) __attribute__((cold));
void aev__task_finish(aev_loop_t *loop, aev__task_t *t);
void aev__task_entry(void *arg);
/* The callback of a scheduled step (a plain ready entry; run_ready runs it inline). */
int aev__task_step_cb(aev_loop_t *loop, void *arg);

/* Runs t until it waits or ends, on the loop's stack; does not finish it. Inline into
 * every wake-up path: each function level between the switch and the code that runs
 * costs a mispredicted return per switch (see aev__fiber_enter). */
static inline __attribute__((always_inline)) void aev__task_switch_in(aev_loop_t *loop, aev__task_t *t)
{
    if (AEV__UNLIKELY(!t->started) && aev__task_start(loop, t) < 0)
        return;
    aev_handle_t *saved_handle = loop->current_handle;
    aev_context_t *saved_ctx = loop->cur_ctx;
    loop->current_task = t;
    loop->current_handle = NULL;
    loop->cur_ctx = t->context;
    t->state = AEV__T_RUNNING;
    t->wait = AEV__W_NONE;
    aev__fiber_enter(&loop->fiber_home, &t->fiber);
    loop->current_task = NULL;
    loop->current_handle = saved_handle;
    loop->cur_ctx = saved_ctx;
}

/* The same, from run_ready between two callbacks, where no handle runs and the context in
 * effect is none: nothing to save. */
static inline __attribute__((always_inline)) void aev__task_switch_in_between(aev_loop_t *loop,
                                                                             aev__task_t *t)
{
    if (AEV__UNLIKELY(!t->started) && aev__task_start(loop, t) < 0)
        return;
    loop->current_task = t;
    loop->cur_ctx = t->context;
    t->state = AEV__T_RUNNING;
    t->wait = AEV__W_NONE;
    aev__fiber_enter(&loop->fiber_home, &t->fiber);
    loop->current_task = NULL;
    loop->cur_ctx = NULL;
}

/* A scheduled step: runs t if the step is still what it waits for, and finishes it if it
 * ended (t may be freed then). */
static inline __attribute__((always_inline)) void aev__task_step(aev_loop_t *loop, aev__task_t *t)
{
    if (t->wait != AEV__W_STEP)
        return;
    aev__task_switch_in(loop, t);
    if (AEV__UNLIKELY(t->state == AEV__T_DONE))
        aev__task_finish(loop, t);
}

/* aev__task_step for run_ready, between two callbacks (see aev__task_switch_in_between). */
static inline __attribute__((always_inline)) void aev__task_step_between(aev_loop_t *loop, aev__task_t *t)
{
    if (t->wait != AEV__W_STEP)
        return;
    aev__task_switch_in_between(loop, t);
    if (AEV__UNLIKELY(t->state == AEV__T_DONE))
        aev__task_finish(loop, t);
}

/* The task running now, or NULL (with AEV_ENOT_IN_TASK's detail set). */
aev__task_t *aev__task_self(aev_loop_t **loop_out);

/* Suspends t until fd is ready for which (AEV_POLL_IN/OUT). Returns 0, AEV_ECANCELLED, or
 * AEV_EINVALID_STATE if another watcher has that direction of fd. The watcher stays
 * registered while t waits on the same fd and direction again right after it is resumed. */
int aev__task_wait_fd(aev_loop_t *loop, aev__task_t *t, int fd, uint32_t which);

/* 1 if t's own watcher is registered on fd (so fd has stayed open and in use since it was
 * checked); then the checks made when the watcher was added still hold. */
int aev__task_holds_fd(aev_loop_t *loop, aev__task_t *t, int fd);
/* 1 if t's reader on fd is registered and its last receive on fd came back short: the
 * socket is very likely drained, so wait for readiness before the next receive. */
int aev__task_expect_drained(aev_loop_t *loop, aev__task_t *t, int fd);

/* If cb(arg) wakes a task up (a step, its timer, its socket), writes "<task name> (step)"
 * into buf and returns 1: debug mode names slow task steps after the task. */
int aev__task_describe_wakeup(aev_callback_fn cb, void *arg, char *buf, size_t size);

/* The slot a context-variable set writes to inside t. */
aev_context_t **aev__task_context_slot(aev__task_t *t);

#endif /* AEV_TASK_INTERNAL_H */
