/* libaev conformance: add_reader / add_writer / remove_reader / remove_writer. */
#include "test_util.h"

#include <sys/resource.h>

typedef struct {
    int fd;
    int calls;
    int drain;     /* read what is available */
    int stop_at;   /* stop the loop at this call count (0: never) */
    int remove_at; /* remove the reader at this call count (0: never) */
    char data[64];
    size_t len;
} rd_t;

static int reader_cb(aev_loop_t *loop, void *arg)
{
    rd_t *r = arg;
    r->calls++;
    if (r->drain) {
        ssize_t n = read(r->fd, r->data + r->len, sizeof r->data - 1 - r->len);
        if (n > 0) {
            r->len += (size_t)n;
            r->data[r->len] = '\0';
        }
    }
    if (r->remove_at && r->calls == r->remove_at)
        ck_assert_int_eq(aev_loop_remove_reader(loop, r->fd), 1);
    if (r->stop_at && r->calls == r->stop_at)
        aev_loop_stop(loop);
    return 0;
}

typedef struct {
    int fd;
    int calls;
    int stop_at;
    int remove_self;
} wr_t;

static int writer_cb(aev_loop_t *loop, void *arg)
{
    wr_t *w = arg;
    w->calls++;
    if (w->remove_self)
        ck_assert_int_eq(aev_loop_remove_writer(loop, w->fd), 1);
    if (w->stop_at && w->calls == w->stop_at)
        aev_loop_stop(loop);
    return 0;
}

typedef struct {
    int fd;
    const char *data;
} delayed_write_t;

static int delayed_write_cb(aev_loop_t *loop, void *arg)
{
    delayed_write_t *d = arg;
    (void)loop;
    tu_write(d->fd, d->data);
    return 0;
}

START_TEST(test_plugin_name_matches_policy)
{
    aev_loop_t *loop = tu_loop_new();
    const char *name = tu_poller(loop);
    const char *env = getenv("AEV_POLL");
    if (env && *env && !strchr(env, ','))
        ck_assert_str_eq(name, env);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_reader_called_when_data_arrives)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    rd_t r = {.fd = sv[0], .drain = 1, .stop_at = 1};
    delayed_write_t d = {sv[1], "hello"};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &r), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, delayed_write_cb, &d, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(r.data, "hello");
    /* Drained, no new data: the reader is not called again. */
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_reader_level_triggered)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], "x");
    /* Never drains: called again on every iteration, until it removes itself. */
    rd_t r = {.fd = sv[0], .remove_at = 3, .stop_at = 3};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &r), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(r.calls, 3);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_reader_level_triggered_one_call_per_iteration)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_io_poll_interval(loop, 0);
    int sv[2];
    tu_socketpair(sv);
    tu_write(sv[1], "x");
    rd_t r = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &r), 0);
    for (int i = 1; i <= 3; i++) {
        tu_run_once(loop);
        ck_assert_int_eq(r.calls, i);
    }
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 3);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_remove_return_values)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    rd_t r = {.fd = sv[0]};
    wr_t w = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 0);
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &r), 0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 0); /* only a reader */
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0);
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], writer_cb, &w), 0);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0); /* only a writer */
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 1);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 0);
    /* An fd that was never watched (and not even open): 0, not an error. */
    ck_assert_int_eq(aev_loop_remove_reader(loop, 987), 0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, 987), 0);
    /* Removed watchers are not called. */
    tu_write(sv[1], "x");
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(w.calls, 0);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_replace_reader)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    rd_t old = {.fd = sv[0]}, neu = {.fd = sv[0], .drain = 1};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &old), 0);
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &neu), 0);
    tu_write(sv[1], "data");
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(old.calls, 0);
    ck_assert_int_eq(neu.calls, 1);
    ck_assert_str_eq(neu.data, "data");
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 0);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_replace_writer)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    wr_t old = {.fd = sv[0]}, neu = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], writer_cb, &old), 0);
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], writer_cb, &neu), 0);
    tu_run_once(loop);
    ck_assert_int_eq(old.calls, 0);
    ck_assert_int_eq(neu.calls, 1);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 1);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 0);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_reader_and_writer_coexist)
{
    aev_loop_t *loop = tu_loop_new();
    aev_loop_set_io_poll_interval(loop, 0);
    int sv[2];
    tu_socketpair(sv);
    rd_t r = {.fd = sv[0]};
    wr_t w = {.fd = sv[0]};
    ck_assert_int_eq(aev_loop_add_reader(loop, sv[0], reader_cb, &r), 0);
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], writer_cb, &w), 0);
    tu_write(sv[1], "x");
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(w.calls, 1);

    /* Removing the writer keeps the reader. */
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 1);
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 2);
    ck_assert_int_eq(w.calls, 1);

    /* And the other way round. */
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[0], writer_cb, &w), 0);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 2);
    ck_assert_int_eq(w.calls, 2);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[0]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_writer_fires_on_writable_socket)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    wr_t w = {.fd = sv[1], .stop_at = 1};
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[1], writer_cb, &w), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[1]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_writer_removes_itself)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    wr_t w = {.fd = sv[1], .remove_self = 1};
    ck_assert_int_eq(aev_loop_add_writer(loop, sv[1], writer_cb, &w), 0);
    ck_assert_int_eq(aev_loop_call_later(loop, 0.03, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[1]), 0);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

typedef struct {
    int other_fd;
    int *ran;
    int rc;
} remover_t;

static int remove_other_cb(aev_loop_t *loop, void *arg)
{
    remover_t *m = arg;
    (*m->ran)++;
    m->rc = aev_loop_remove_reader(loop, m->other_fd);
    return 0;
}

START_TEST(test_remove_other_ready_reader)
{
    /* Two readers ready in the same iteration, each removing the other: exactly one runs
     * (a removed reader is not called even if its event was already collected). */
    aev_loop_t *loop = tu_loop_new();
    int a[2], b[2], ran = 0;
    tu_socketpair(a);
    tu_socketpair(b);
    tu_write(a[1], "x");
    tu_write(b[1], "x");
    remover_t ma = {b[0], &ran, -100}, mb = {a[0], &ran, -100};
    ck_assert_int_eq(aev_loop_add_reader(loop, a[0], remove_other_cb, &ma), 0);
    ck_assert_int_eq(aev_loop_add_reader(loop, b[0], remove_other_cb, &mb), 0);
    tu_run_once(loop);
    ck_assert_int_eq(ran, 1);
    ck_assert_int_eq(ma.rc == 1 || mb.rc == 1, 1);
    /* One watcher is left: the survivor's. */
    ck_assert_int_eq(aev_loop_remove_reader(loop, a[0]) + aev_loop_remove_reader(loop, b[0]), 1);
    tu_loop_free(loop);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}
END_TEST

START_TEST(test_many_fds)
{
    enum { N = 100 };
    aev_loop_t *loop = tu_loop_new();
    int sv[N][2];
    rd_t r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        tu_socketpair(sv[i]);
        r[i].fd = sv[i][0];
        r[i].drain = 1;
        ck_assert_int_eq(aev_loop_add_reader(loop, sv[i][0], reader_cb, &r[i]), 0);
    }
    for (int i = 0; i < N; i += 3)
        tu_write(sv[i][1], "y");
    ck_assert_int_eq(aev_loop_call_later(loop, 0.02, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(r[i].calls == (i % 3 == 0 ? 1 : 0), "reader %d called %d times", i,
                      r[i].calls);
        ck_assert_int_eq(aev_loop_remove_reader(loop, sv[i][0]), 1);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_invalid_fd_refused)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    int closed_fd = sv[0];
    close(sv[0]);
    rd_t r = {.fd = closed_fd};
    wr_t w = {.fd = closed_fd};

    int rc = aev_loop_add_reader(loop, -1, reader_cb, &r);
    ck_assert_msg(rc == -EBADF || rc == -EINVAL, "add_reader(-1) = %d (%s)", rc,
                  aev_err_name(rc));
    rc = aev_loop_add_writer(loop, -1, writer_cb, &w);
    ck_assert_msg(rc == -EBADF || rc == -EINVAL, "add_writer(-1) = %d (%s)", rc,
                  aev_err_name(rc));
    rc = aev_loop_add_reader(loop, closed_fd, reader_cb, &r);
    ck_assert_msg(rc == -EBADF || rc == -EINVAL, "add_reader(closed fd) = %d (%s)", rc,
                  aev_err_name(rc));
    rc = aev_loop_add_writer(loop, closed_fd, writer_cb, &w);
    ck_assert_msg(rc == -EBADF || rc == -EINVAL, "add_writer(closed fd) = %d (%s)", rc,
                  aev_err_name(rc));

    /* No watcher was left behind. */
    ck_assert_int_eq(aev_loop_remove_reader(loop, closed_fd), 0);
    ck_assert_int_eq(aev_loop_remove_writer(loop, closed_fd), 0);
    ck_assert_int_eq(aev_loop_remove_reader(loop, -1), 0);
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(w.calls, 0);
    close(sv[1]);
    tu_loop_free(loop);
}
END_TEST

START_TEST(test_fd_closed_behind_loop)
{
    aev_loop_t *loop = tu_loop_new();
    tu_exc_t exc = {0};
    aev_loop_set_exception_handler(loop, tu_exc_handler, &exc);
    int sv[2];
    tu_socketpair(sv);
    int fd = sv[0];
    rd_t r = {.fd = fd};
    ck_assert_int_eq(aev_loop_add_reader(loop, fd, reader_cb, &r), 0);
    close(fd);

    ck_assert_int_eq(aev_loop_call_later(loop, 0.1, tu_stop_cb, NULL, NULL), 0);
    ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);

    const char *poller = tu_poller(loop);
    if (strcmp(poller, "epoll") == 0) {
        /* The kernel dropped the registration with the file: nothing to report. */
        int rc = aev_loop_remove_reader(loop, fd);
        ck_assert_msg(rc == 0 || rc == 1, "remove_reader after close = %d", rc);
    } else {
        int ebadf = tu_exc_count_error(&exc, -EBADF);
        ck_assert_msg(ebadf == 1, "%s: %d -EBADF reports (%d in all)", poller, ebadf, exc.count);
        const tu_exc_record_t *rec = NULL;
        for (int i = 0; i < exc.count && i < TU_EXC_MAX; i++)
            if (exc.records[i].error == -EBADF)
                rec = &exc.records[i];
        ck_assert_ptr_nonnull(rec);
        ck_assert_int_eq(rec->has_socket, 1);
        ck_assert_int_eq(rec->socket, fd);
        ck_assert_msg(rec->message[0] != '\0', "empty message");
        /* The watcher was dropped. */
        ck_assert_int_eq(aev_loop_remove_reader(loop, fd), 0);
    }
    /* The loop still works. */
    int hits = 0;
    ck_assert_int_eq(aev_loop_call_soon(loop, tu_count_cb, &hits, NULL), 0);
    tu_run_once(loop);
    ck_assert_int_eq(hits, 1);
    tu_loop_free(loop);
    close(sv[1]);
}
END_TEST

START_TEST(test_fd_above_fd_setsize)
{
    enum { HIGH_FD = 1100 };
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur <= HIGH_FD) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= HIGH_FD) {
            fprintf(stderr, "test_fd_above_fd_setsize: RLIMIT_NOFILE hard limit %lu, skipped\n",
                    (unsigned long)rl.rlim_max);
            return;
        }
        rl.rlim_cur = HIGH_FD + 100;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            fprintf(stderr, "test_fd_above_fd_setsize: cannot raise RLIMIT_NOFILE, skipped\n");
            return;
        }
    }
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    ck_assert_int_eq(dup2(sv[0], HIGH_FD), HIGH_FD);
    rd_t r = {.fd = HIGH_FD, .drain = 1, .stop_at = 1};
    int rc = aev_loop_add_reader(loop, HIGH_FD, reader_cb, &r);
    const char *poller = tu_poller(loop);
    if (strcmp(poller, "select") == 0) {
        ck_assert_msg(rc == -ERANGE, "select: add_reader(fd %d) = %d (%s)", HIGH_FD, rc,
                      aev_err_name(rc));
        const char *detail = aev_error_detail();
        ck_assert_ptr_nonnull(detail);
        ck_assert_msg(strstr(detail, "FD_SETSIZE") != NULL, "detail: '%s'", detail);
        ck_assert_int_eq(aev_loop_remove_reader(loop, HIGH_FD), 0);
    } else {
        ck_assert_msg(rc == 0, "%s: add_reader(fd %d) = %d (%s): %s", poller, HIGH_FD, rc,
                      aev_err_name(rc), aev_error_detail());
        tu_write(sv[1], "high");
        ck_assert_int_eq(tu_run_guarded(loop, 5.0), 0);
        ck_assert_int_eq(r.calls, 1);
        ck_assert_str_eq(r.data, "high");
        ck_assert_int_eq(aev_loop_remove_reader(loop, HIGH_FD), 1);
    }
    tu_loop_free(loop);
    close(HIGH_FD);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_watchers_with_options)
{
    aev_loop_t *loop = tu_loop_new();
    int sv[2];
    tu_socketpair(sv);
    rd_t r = {.fd = sv[0], .drain = 1};
    wr_t w = {.fd = sv[1]};
    aev_call_options_t opts = {.name = "named-watcher"};
    ck_assert_int_eq(aev_loop_add_reader_ex(loop, sv[0], &opts, reader_cb, &r), 0);
    ck_assert_int_eq(aev_loop_add_writer_ex(loop, sv[1], &opts, writer_cb, &w), 0);
    tu_write(sv[1], "z");
    tu_run_once(loop);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(aev_loop_remove_reader(loop, sv[0]), 1);
    ck_assert_int_eq(aev_loop_remove_writer(loop, sv[1]), 1);
    tu_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static Suite *fd_watch_suite(void)
{
    Suite *s = suite_create("fd_watch");
    TU_ADD(s, test_plugin_name_matches_policy);
    TU_ADD(s, test_reader_called_when_data_arrives);
    TU_ADD(s, test_reader_level_triggered);
    TU_ADD(s, test_reader_level_triggered_one_call_per_iteration);
    TU_ADD(s, test_remove_return_values);
    TU_ADD(s, test_replace_reader);
    TU_ADD(s, test_replace_writer);
    TU_ADD(s, test_reader_and_writer_coexist);
    TU_ADD(s, test_writer_fires_on_writable_socket);
    TU_ADD(s, test_writer_removes_itself);
    TU_ADD(s, test_remove_other_ready_reader);
    TU_ADD(s, test_many_fds);
    TU_ADD(s, test_invalid_fd_refused);
    TU_ADD(s, test_fd_closed_behind_loop);
    TU_ADD(s, test_fd_above_fd_setsize);
    TU_ADD(s, test_watchers_with_options);
    return s;
}

TU_MAIN(fd_watch_suite)
