/* libaev conformance: call_soon (order, exactly-once, next-iteration semantics). */
#include "test_util.h"

#define MANY 10000

typedef struct {
    int order[MANY]; /* ids in call order */
    int n;
    int calls[MANY]; /* calls per id */
    aev_loop_t *loop_seen;
    int bad_loop;
} fifo_state_t;

static fifo_state_t fifo;

static int fifo_cb(aev_loop_t *loop, void *arg)
{
    int id = (int)(intptr_t)arg;
    if (loop != fifo.loop_seen)
        fifo.bad_loop++;
    if (fifo.n < MANY)
        fifo.order[fifo.n] = id;
    fifo.n++;
    if (id >= 0 && id < MANY)
        fifo.calls[id]++;
    return 0;
}

START_TEST(test_fifo_many)
{
    aev_loop_t *loop = tu_loop_new();
    memset(&fifo, 0, sizeof fifo);
    fifo.loop_seen = loop;
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(aev_loop_call_soon(loop, fifo_cb, (void *)(intptr_t)i, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(fifo.n, 0); /* nothing runs before the loop does */
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);

    ck_assert_int_eq(fifo.n, MANY);
    ck_assert_int_eq(fifo.bad_loop, 0);
    for (int i = 0; i < MANY; i++) {
        ck_assert_msg(fifo.order[i] == i, "position %d ran id %d", i, fifo.order[i]);
        ck_assert_msg(fifo.calls[i] == 1, "id %d ran %d times", i, fifo.calls[i]);
    }
    /* Nothing runs a second time. */
    tu_run_once(loop);
    ck_assert_int_eq(fifo.n, MANY);
    tu_loop_free(loop);
}
END_TEST

/* A callback that schedules many callbacks while the ready queue is being drained:
 * they keep FIFO order and each runs once. */
static int fan_out_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    for (int i = 1; i < MANY; i++)
        ck_assert_int_eq(aev_loop_call_soon(loop, fifo_cb, (void *)(intptr_t)i, NULL), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_stop_cb, NULL, NULL), 0);
    return fifo_cb(loop, (void *)(intptr_t)0);
}

START_TEST(test_fifo_scheduled_from_callback)
{
    aev_loop_t *loop = tu_loop_new();
    memset(&fifo, 0, sizeof fifo);
    fifo.loop_seen = loop;
    ck_assert_int_eq(aev_loop_call_soon(loop, fan_out_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 10.0), 0);
    ck_assert_int_eq(fifo.n, MANY);
    for (int i = 0; i < MANY; i++) {
        ck_assert_msg(fifo.order[i] == i, "position %d ran id %d", i, fifo.order[i]);
        ck_assert_int_eq(fifo.calls[i], 1);
    }
    tu_loop_free(loop);
}
END_TEST

/* ---- arguments and the handle ------------------------------------------- */

typedef struct {
    aev_loop_t *loop;
    void *arg;
    int calls;
} args_state_t;

static int args_cb(aev_loop_t *loop, void *arg)
{
    args_state_t *st = arg;
    st->loop = loop;
    st->arg = arg;
    st->calls++;
    return 0;
}

START_TEST(test_callback_receives_loop_and_arg)
{
    aev_loop_t *loop = tu_loop_new();
    args_state_t st = {0};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon(loop, args_cb, &st, &h), 0);
    ck_assert_ptr_nonnull(h);
    ck_assert_int_eq(aev_handle_is_timer(h), 0);
    ck_assert_int_eq(aev_handle_cancelled(h), 0);
    ck_assert_int_eq(st.calls, 0); /* not called synchronously */
    tu_run_once(loop);
    ck_assert_int_eq(st.calls, 1);
    ck_assert_ptr_eq(st.loop, loop);
    ck_assert_ptr_eq(st.arg, &st);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

/* ---- a callback scheduled by a callback runs in the next iteration --------- */

#define CHAIN 6

typedef struct {
    int fd;
    char events[64]; /* 'R' for a reader call, '0'.. for chain links */
    int n;
    int link;
} chain_state_t;

static void chain_note(chain_state_t *st, char c)
{
    if (st->n < (int)sizeof st->events - 1)
        st->events[st->n++] = c;
}

static int chain_reader_cb(aev_loop_t *loop, void *arg)
{
    (void)loop;
    chain_note(arg, 'R'); /* does not drain: level-triggered, ready every iteration */
    return 0;
}

static int chain_link_cb(aev_loop_t *loop, void *arg)
{
    chain_state_t *st = arg;
    chain_note(st, (char)('0' + st->link));
    st->link++;
    if (st->link < CHAIN) {
        ck_assert_int_eq(aev_loop_call_soon(loop, chain_link_cb, st, NULL), 0);
    } else {
        ck_assert_int_eq(aev_loop_remove_reader(loop, st->fd), 1);
        aev_loop_stop(loop);
    }
    return 0;
}

START_TEST(test_scheduled_from_callback_runs_next_iteration)
{
    /* With an I/O poll on every iteration and a reader that is always ready, exactly one
     * reader call separates each chain link from the link it scheduled: each link runs
     * one iteration after the callback that scheduled it. */
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_io_poll_interval(loop, 0);
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], "always readable");
    chain_state_t st = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], chain_reader_cb, &st), 0);
    ck_assert_int_eq(aev_loop_call_soon(loop, chain_link_cb, &st, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    st.events[st.n] = '\0';

    ck_assert_int_eq(st.link, CHAIN);
    int last_link_pos = -1, links = 0;
    for (int i = 0; i < st.n; i++) {
        if (st.events[i] == 'R')
            continue;
        if (last_link_pos >= 0) {
            int readers = 0;
            for (int j = last_link_pos + 1; j < i; j++)
                readers += st.events[j] == 'R';
            ck_assert_msg(readers == 1, "expected one reader call between links, got %d: %s",
                          readers, st.events);
        }
        last_link_pos = i;
        links++;
    }
    ck_assert_int_eq(links, CHAIN);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

typedef struct {
    int first_done;
    int second_saw_first_run_stopped;
    int runs;
    int second_run_no;
} nested_state_t;

static int second_cb(aev_loop_t *loop, void *arg)
{
    nested_state_t *st = arg;
    (void)loop;
    st->second_run_no = st->runs;
    return 0;
}

static int first_cb(aev_loop_t *loop, void *arg)
{
    nested_state_t *st = arg;
    st->first_done = 1;
    ck_assert_int_eq(aev_loop_call_soon(loop, second_cb, st, NULL), 0);
    return 0;
}

START_TEST(test_scheduled_from_callback_not_in_same_batch)
{
    /* stop() before run gives exactly one iteration: the callback scheduled from inside
     * it waits for the next run. */
    aev_loop_t *loop = tu_loop_new();
    nested_state_t st = {0};
    ck_assert_int_eq(aev_loop_call_soon(loop, first_cb, &st, NULL), 0);
    st.runs = 1;
    tu_run_once(loop);
    ck_assert_int_eq(st.first_done, 1);
    ck_assert_int_eq(st.second_run_no, 0);
    st.runs = 2;
    tu_run_once(loop);
    ck_assert_int_eq(st.second_run_no, 2);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_call_soon_with_options)
{
    aev_loop_t *loop = tu_loop_new();
    int hits = 0;
    aev_call_options_t opts = {.name = "named-callback"};
    aev_handle_t *h = NULL;
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, &opts, tu_count_cb, &hits, &h), 0);
    ck_assert_int_eq(aev_loop_call_soon_ex(loop, NULL, tu_count_cb, &hits, NULL), 0);
    char buf[128];
    const char *d = aev_handle_describe(h, buf, sizeof buf);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(strstr(d, "named-callback") != NULL, "describe: '%s'", d);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 2);
    aev_handle_unref(h);
    tu_loop_free(loop);
}
END_TEST

static Suite *call_soon_suite(void)
{
    Suite *s = suite_create("call_soon");
    TU_ADD(s, test_fifo_many);
    TU_ADD(s, test_fifo_scheduled_from_callback);
    TU_ADD(s, test_callback_receives_loop_and_arg);
    TU_ADD(s, test_scheduled_from_callback_runs_next_iteration);
    TU_ADD(s, test_scheduled_from_callback_not_in_same_batch);
    TU_ADD(s, test_call_soon_with_options);
    return s;
}

TU_MAIN(call_soon_suite)
