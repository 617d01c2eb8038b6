/* libaev core - the future object, shared by futures and tasks (a task is a
 * future whose struct starts with one). */
#ifndef AEV_FUTURE_INTERNAL_H
#define AEV_FUTURE_INTERNAL_H

#include "loop_internal.h"

enum { FUT_PENDING = 0, FUT_RESULT, FUT_ERROR, FUT_CANCELLED };

typedef struct done_cb {
    aev_future_callback_fn cb;
    void *arg;
    aev_context_t *context;
    const char *name;
} done_cb_t;

struct aev_future {
    aev_loop_t *loop;
    uint32_t refs;
    uint8_t state;
    uint8_t retrieved;
    uint8_t is_task;
    int error;
    char *detail;
    void *value;
    void (*destroy)(void *);
    done_cb_t *cbs; /* cb_inline while there is at most one */
    size_t ncbs, capcbs;
    done_cb_t cb_inline[1];
    aev_future_t *keep; /* released with this one: the future whose value this one shares */
};

/* Cancels a pending future now (no task logic): state, message, callbacks. Returns 1. */
int aev__future_cancel_now(aev_future_t *f, const char *message);

/* Complete a pending future with no further checks (tasks use these). */
int aev__future_complete_result(aev_future_t *f, void *value, void (*destroy)(void *));
int aev__future_complete_error(aev_future_t *f, int error, const char *detail);

/* tasks (task.c) */
int aev__task_cancel(aev_future_t *task, const char *message);
void aev__task_release(aev_future_t *task);

#endif /* AEV_FUTURE_INTERNAL_H */
