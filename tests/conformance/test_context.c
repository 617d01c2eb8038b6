/* libaev conformance: contexts (contextvars) and how callbacks inherit them. */
#include "test_util.h"

static int DEFAULT_V, A, B, X, Y, Z, T;

#define V(p) ((void *)&(p))

/* Each test makes a fresh variable, so that values set by an earlier test are invisible
 * even when Check does not fork (CK_FORK=no, e.g. under valgrind). A variable set in the
 * thread's current context must outlive it, so most tests do not free theirs. */
static aev_context_var_t *var;

static void make_var(void)
{
    var = aev_context_var_new("request_id", V(DEFAULT_V));
    ck_assert_ptr_nonnull(var);
}

START_TEST(test_var_get_set)
{
    make_var();
    ck_assert_str_eq(aev_context_var_name(var), "request_id");
    ck_assert_ptr_eq(aev_context_var_get(var), V(DEFAULT_V));
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    ck_assert_ptr_eq(aev_context_var_get(var), V(A));
    ck_assert_int_eq(aev_context_var_set(var, V(B)), 0);
    ck_assert_ptr_eq(aev_context_var_get(var), V(B));

    aev_context_var_t *other = aev_context_var_new("other", NULL);
    ck_assert_ptr_nonnull(other);
    ck_assert_ptr_null(aev_context_var_get(other));
    aev_context_var_free(other); /* never set anywhere */
}
END_TEST

START_TEST(test_explicit_contexts)
{
    make_var();
    aev_context_t *ctx = aev_context_new();
    ck_assert_ptr_nonnull(ctx);
    void *v = NULL;
    ck_assert_int_eq(aev_context_get(ctx, var, &v), 0);
    ck_assert_ptr_eq(v, V(DEFAULT_V));
    ck_assert_int_eq(aev_context_set(ctx, var, V(X)), 0);
    ck_assert_int_eq(aev_context_get(ctx, var, &v), 1);
    ck_assert_ptr_eq(v, V(X));

    /* A copy is independent of the original, both ways. */
    aev_context_t *copy = aev_context_copy(ctx);
    ck_assert_ptr_nonnull(copy);
    ck_assert_int_eq(aev_context_get(copy, var, &v), 1);
    ck_assert_ptr_eq(v, V(X));
    ck_assert_int_eq(aev_context_set(copy, var, V(Y)), 0);
    ck_assert_int_eq(aev_context_get(ctx, var, &v), 1);
    ck_assert_ptr_eq(v, V(X));
    ck_assert_int_eq(aev_context_set(ctx, var, V(Z)), 0);
    ck_assert_int_eq(aev_context_get(copy, var, &v), 1);
    ck_assert_ptr_eq(v, V(Y));

    /* NULL is the empty context. */
    ck_assert_int_eq(aev_context_get(NULL, var, &v), 0);
    ck_assert_ptr_eq(v, V(DEFAULT_V));
    aev_context_t *empty_copy = aev_context_copy(NULL);
    ck_assert_ptr_nonnull(empty_copy);
    ck_assert_int_eq(aev_context_get(empty_copy, var, &v), 0);

    /* Setting in an explicit context does not touch the current one. */
    ck_assert_ptr_eq(aev_context_var_get(var), V(DEFAULT_V));

    ck_assert_ptr_eq(aev_context_ref(ctx), ctx);
    aev_context_unref(ctx);
    aev_context_unref(ctx);
    aev_context_unref(copy);
    aev_context_unref(empty_copy);
    aev_context_unref(NULL);
    aev_context_var_free(var); /* set in no live context any more */
    var = NULL;
}
END_TEST

START_TEST(test_copy_current)
{
    make_var();
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    aev_context_t *snap = aev_context_copy_current();
    ck_assert_ptr_nonnull(snap);
    ck_assert_int_eq(aev_context_var_set(var, V(B)), 0);
    void *v = NULL;
    ck_assert_int_eq(aev_context_get(snap, var, &v), 1);
    ck_assert_ptr_eq(v, V(A));
    ck_assert_ptr_eq(aev_context_var_get(var), V(B));
    aev_context_t *cur = aev_context_current();
    ck_assert_ptr_nonnull(cur);
    ck_assert_int_eq(aev_context_get(cur, var, &v), 1);
    ck_assert_ptr_eq(v, V(B));
    aev_context_unref(snap);
}
END_TEST

/* ---- callbacks inherit the context current when they were scheduled ------- */

typedef struct {
    void *seen[8];
    int n;
} seen_t;

static int record_cb(aev_loop_t *loop, void *arg)
{
    seen_t *s = arg;
    (void)loop;
    if (s->n < 8)
        s->seen[s->n++] = aev_context_var_get(var);
    return 0;
}

START_TEST(test_call_soon_captures_copy)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    seen_t first = {0}, second = {0}, timer = {0};
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, record_cb, &first, NULL), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.0, record_cb, &timer, NULL), 0);
    ck_assert_int_eq(aev_context_var_set(var, V(B)), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, record_cb, &second, NULL), 0);
    ck_assert_int_eq(aev_context_var_set(var, V(X)), 0);
    tu_run_once(loop);
    ck_assert_int_eq(first.n, 1);
    ck_assert_int_eq(second.n, 1);
    ck_assert_int_eq(timer.n, 1);
    ck_assert_ptr_eq(first.seen[0], V(A));
    ck_assert_ptr_eq(timer.seen[0], V(A));
    ck_assert_ptr_eq(second.seen[0], V(B));
    /* Running callbacks did not change the caller's current context. */
    ck_assert_ptr_eq(aev_context_var_get(var), V(X));
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    seen_t child;
    seen_t sibling;
    void *parent_after_set;
} family_t;

static int child_cb(aev_loop_t *loop, void *arg)
{
    return record_cb(loop, &((family_t *)arg)->child);
}

static int sibling_cb(aev_loop_t *loop, void *arg)
{
    return record_cb(loop, &((family_t *)arg)->sibling);
}

static int parent_cb(aev_loop_t *loop, void *arg)
{
    family_t *f = arg;
    ck_assert_int_eq(aev_context_var_set(var, V(Y)), 0);
    f->parent_after_set = aev_context_var_get(var);
    ck_assert_int_eq(aev_loop_call_soon(loop, child_cb, f, NULL), 0);
    return 0;
}

START_TEST(test_value_set_in_callback_seen_by_children_only)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    family_t f = {0};
    ck_assert_int_eq(aev_context_var_set(var, V(X)), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, parent_cb, &f, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, sibling_cb, &f, NULL), 0);
    tu_run_once(loop);
    tu_run_once(loop);
    ck_assert_ptr_eq(f.parent_after_set, V(Y));
    ck_assert_int_eq(f.child.n, 1);
    ck_assert_int_eq(f.sibling.n, 1);
    ck_assert_ptr_eq(f.child.seen[0], V(Y));
    ck_assert_ptr_eq(f.sibling.seen[0], V(X));
    ck_assert_ptr_eq(aev_context_var_get(var), V(X));
    tu_loop_free(loop);
}
END_TEST

static int set_z_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    ck_assert_int_eq(aev_context_var_set(var, V(Z)), 0);
    return 0;
}

START_TEST(test_explicit_context_used)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    aev_context_t *ctx = aev_context_new();
    ck_assert_int_eq(aev_context_set(ctx, var, V(T)), 0);
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    aev_call_options_t opts = {.context = ctx};
    seen_t s = {0};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, record_cb, &s, &h), 0);
    ck_assert_ptr_eq(aev_handle_get_context(h), ctx);
    tu_run_once(loop);
    ck_assert_int_eq(s.n, 1);
    ck_assert_ptr_eq(s.seen[0], V(T));

    /* The callback runs in that very context (asyncio's Context.run): what it sets stays
     * in ctx, not in the caller's current context. */
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, set_z_cb, NULL, NULL), 0);
    tu_run_once(loop);
    void *v = NULL;
    ck_assert_int_eq(aev_context_get(ctx, var, &v), 1);
    ck_assert_ptr_eq(v, V(Z));
    ck_assert_ptr_eq(aev_context_var_get(var), V(A));

    aev_handle_unref(h);
    aev_context_unref(ctx);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_handle_context_of_implicit_copy)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    seen_t s = {0};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, record_cb, &s, &h), 0);
    ck_assert_int_eq(aev_context_var_set(var, V(B)), 0);
    aev_context_t *hc = aev_handle_get_context(h);
    ck_assert_ptr_nonnull(hc);
    void *v = NULL;
    ck_assert_int_eq(aev_context_get(hc, var, &v), 1);
    ck_assert_ptr_eq(v, V(A));
    tu_run_once(loop);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

/* ---- done callbacks, readers, threads ----------------------------------------- */

typedef struct {
    void *seen;
    int calls;
} done_seen_t;

static int done_record_cb(aev_future_t *fut, void *arg)
{
    done_seen_t *d = arg;
    (void)fut;
    d->seen = aev_context_var_get(var);
    d->calls++;
    return 0;
}

START_TEST(test_done_callback_context)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    aev_future_t *fut = NULL;
    ck_assert_int_eq(aev_loop_create_future(loop, &fut), 0);
    done_seen_t d1 = {0}, d2 = {0};
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    ck_assert_int_eq(aev_future_add_done_callback(fut, done_record_cb, &d1), 0);
    aev_context_t *ctx = aev_context_new();
    ck_assert_int_eq(aev_context_set(ctx, var, V(T)), 0);
    aev_call_options_t opts = {.context = ctx};
    ck_assert_int_eq(aev_future_add_done_callback_ex(fut, &opts, done_record_cb, &d2), 0);
    ck_assert_int_eq(aev_context_var_set(var, V(B)), 0);
    int value = 0;
    ck_assert_int_eq(aev_future_set_result(fut, &value, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(d1.calls, 1);
    ck_assert_int_eq(d2.calls, 1);
    ck_assert_ptr_eq(d1.seen, V(A));
    ck_assert_ptr_eq(d2.seen, V(T));
    aev_context_unref(ctx);
    aev_future_unref(fut);
    tu_loop_free(loop);
}
END_TEST

typedef struct {
    int fd;
    void *seen;
    int calls;
} ctx_reader_t;

static int ctx_reader_cb(aev_loop_t *loop, void *arg)
{
    ctx_reader_t *r = arg;
    char buf[8];
    (void)loop;
    (void)!read(r->fd, buf, sizeof buf);
    r->seen = aev_context_var_get(var);
    r->calls++;
    return 0;
}

START_TEST(test_reader_context_captured_at_add)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    ctx_reader_t r = {.fd = sv[0]};
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], ctx_reader_cb, &r), 0);
    ck_assert_int_eq(aev_context_var_set(var, V(B)), 0);
    tu_write(sv[1], "r");
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_ptr_eq(r.seen, V(A));
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

typedef struct {
    aev_loop_t *loop;
    seen_t *seen;
    int rc;
} ctx_thread_t;

static void *ctx_thread(void *arg)
{
    ctx_thread_t *t = arg;
    /* This thread's own current context. */
    if (aev_context_var_set(var, V(T)) != 0)
        t->rc = -1;
    else
        t->rc = aev_loop_call_soon_threadsafe(t->loop, record_cb, t->seen, NULL);
    return NULL;
}

START_TEST(test_threadsafe_captures_calling_thread_context)
{
    make_var();
    aev_loop_t *loop = tu_loop_new();
    ck_assert_int_eq(aev_context_var_set(var, V(A)), 0);
    seen_t s = {0};
    ctx_thread_t t = {loop, &s, 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, ctx_thread, &t), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(t.rc, 0);
    tu_run_once(loop);
    ck_assert_int_eq(s.n, 1);
    ck_assert_ptr_eq(s.seen[0], V(T));
    ck_assert_ptr_eq(aev_context_var_get(var), V(A));
    tu_loop_free(loop);
}
END_TEST

static Suite *context_suite(void)
{
    Suite *s = suite_create("context");
    TU_ADD(s, test_var_get_set);
    TU_ADD(s, test_explicit_contexts);
    TU_ADD(s, test_copy_current);
    TU_ADD(s, test_call_soon_captures_copy);
    TU_ADD(s, test_value_set_in_callback_seen_by_children_only);
    TU_ADD(s, test_explicit_context_used);
    TU_ADD(s, test_handle_context_of_implicit_copy);
    TU_ADD(s, test_done_callback_context);
    TU_ADD(s, test_reader_context_captured_at_add);
    TU_ADD(s, test_threadsafe_captures_calling_thread_context);
    return s;
}

TU_MAIN(context_suite)
