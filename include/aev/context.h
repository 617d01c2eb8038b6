/* libaev - contexts (contextvars).
 *
 * A context maps context variables to values (void *, owned by the caller).
 * Each thread has a current context. Scheduling a callback without an explicit
 * context captures a copy of the current one (copies are cheap: copy on
 * write), and the callback runs with that copy as current, so what a callback
 * sets is seen by callbacks it schedules, not by its siblings.
 * A NULL context is the empty context.
 */
#ifndef AEV_CONTEXT_H
#define AEV_CONTEXT_H

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct aev_context_var aev_context_var_t;

/** Creates a context variable (contextvars.ContextVar) with a default value. */
aev_context_var_t *aev_context_var_new(const char *name, void *default_value);
/** Frees a variable; it must no longer be set in any live context. */
void aev_context_var_free(aev_context_var_t *var);
/** Returns the variable's name. */
const char *aev_context_var_name(const aev_context_var_t *var);

/** Reads var in the current context: its value, else the default. */
void *aev_context_var_get(const aev_context_var_t *var);
/** Sets var in the current context. Returns 0 or -ENOMEM. */
int aev_context_var_set(aev_context_var_t *var, void *value);

/** Creates an empty context (one reference). */
aev_context_t *aev_context_new(void);
/** Returns a copy of ctx (NULL: of the empty context), with one reference. */
aev_context_t *aev_context_copy(const aev_context_t *ctx);
/** Returns a copy of the calling thread's current context (contextvars.copy_context). */
aev_context_t *aev_context_copy_current(void);
/** Adds a reference. */
aev_context_t *aev_context_ref(aev_context_t *ctx);
/** Releases a reference. NULL is ignored. */
void aev_context_unref(aev_context_t *ctx);

/** Reads var in ctx; returns 1 and *value if set there, else 0 and the default in *value. */
int aev_context_get(const aev_context_t *ctx, const aev_context_var_t *var, void **value);
/** Sets var in ctx. Returns 0 or -ENOMEM. */
int aev_context_set(aev_context_t *ctx, aev_context_var_t *var, void *value);

/** Returns the calling thread's current context (borrowed; may be NULL when empty). */
aev_context_t *aev_context_current(void);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_CONTEXT_H */
