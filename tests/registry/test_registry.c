/* libaev tests - the plugin registry: finding, validating, probing and loading
 * plugins, with the test-only plugins of tests/plugins.
 *
 * Every function a refused plugin provides abort()s, so a test that passes
 * also proves the core called nothing in it.
 */
#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

#define TESTDIR th_getenv("AEV_TEST_PLUGIN_DIR")
#define BUILDDIR th_getenv("AEV_TEST_BUILD_PLUGIN_DIR")
/* holds only aev_poll_io_uring.so, a fake whose probe always fails (a refused io_uring) */
#define NOURINGDIR th_getenv("AEV_TEST_NOURING_PLUGIN_DIR")

/* "<major>.<minor>" strings of the core's ABI and of the test plugins' ABIs. */
#define CORE_ABI th_fmt("%d.%d", AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR)
#define NEWMINOR_ABI th_fmt("%d.%d", AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR + 5)
#define NEWMAJOR_ABI th_fmt("%d.%d", AEV_PLUGIN_ABI_MAJOR + 1, AEV_PLUGIN_ABI_MINOR)

static const char *so(const char *dir, const char *name)
{
    return th_fmt("%s/aev_poll_%s.so", dir, name);
}

static void require_real_plugin(const char *name)
{
    struct stat st;
    ck_assert_msg(stat(so(BUILDDIR, name), &st) == 0,
                  "this test needs the real %s plugin in %s (built on Linux)", name, BUILDDIR);
}

/* Creates a loop with opts poll = poll (may be NULL) and returns its rc; frees the loop. */
static int try_loop(const char *poll, const char **chosen)
{
    aev_loop_options_t opts = {0};
    aev_loop_t *loop = (aev_loop_t *)0x1;
    int rc;
    opts.poll = poll;
    rc = aev_loop_new(&opts, &loop);
    if (rc < 0) {
        ck_assert_msg(loop == NULL, "aev_loop_new failed (%d) but left *out set", rc);
        if (chosen)
            *chosen = NULL;
        return rc;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(loop);
    if (chosen) {
        const char *n = aev_loop_plugin_name(loop, "poll");
        *chosen = n ? th_fmt("%s", n) : NULL;
    }
    aev_loop_close(loop);
    aev_loop_free(loop);
    return rc;
}

/* ---- the fake engine really runs a loop ------------------------------------ */

struct run_state {
    int fds[2];
    int read_ok;
    int timer_ok;
};

static int on_readable(aev_loop_t *loop, void *arg)
{
    struct run_state *st = arg;
    char c;
    if (read(st->fds[0], &c, 1) == 1 && c == 'x')
        st->read_ok++;
    aev_loop_remove_reader(loop, st->fds[0]);
    return 0;
}

static int on_timer(aev_loop_t *loop, void *arg)
{
    struct run_state *st = arg;
    st->timer_ok = 1;
    aev_loop_stop(loop);
    return 0;
}

static int on_safety(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_stop(loop);
    return 0;
}

START_TEST(test_fake_engine_runs_a_loop)
{
    struct run_state st = {{-1, -1}, 0, 0};
    aev_loop_options_t opts = {0};
    aev_loop_t *loop = NULL;

    th_set_plugin_path(TESTDIR, NULL);
    opts.poll = "fake";
    ck_assert_aev_rc(aev_loop_new(&opts, &loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "poll"), "fake");

    ck_assert_int_eq(pipe(st.fds), 0);
    ck_assert_int_eq(write(st.fds[1], "x", 1), 1);
    ck_assert_aev_rc(aev_loop_add_reader(loop, st.fds[0], on_readable, &st), 0);
    ck_assert_aev_rc(aev_loop_call_later(loop, 0.05, on_timer, &st, NULL), 0);
    ck_assert_aev_rc(aev_loop_call_later(loop, 5.0, on_safety, &st, NULL), 0);
    ck_assert_aev_rc(aev_loop_run_forever(loop), 0);
    ck_assert_int_eq(st.read_ok, 1);
    ck_assert_int_eq(st.timer_ok, 1);
    aev_loop_close(loop);
    aev_loop_free(loop);
    close(st.fds[0]);
    close(st.fds[1]);
}
END_TEST

struct wake_state {
    aev_loop_t *loop;
    int woken;
};

static int on_threadsafe(aev_loop_t *loop, void *arg)
{
    struct wake_state *ws = arg;
    ws->woken = 1;
    aev_loop_stop(loop);
    return 0;
}

static void *waker(void *arg)
{
    struct wake_state *ws = arg;
    usleep(50 * 1000);
    aev_loop_call_soon_threadsafe(ws->loop, on_threadsafe, ws, NULL);
    return NULL;
}

START_TEST(test_fake_engine_wakes_up)
{
    struct wake_state ws = {NULL, 0};
    aev_loop_options_t opts = {0};
    pthread_t t;

    th_set_plugin_path(TESTDIR, NULL);
    opts.poll = "fake";
    ck_assert_aev_rc(aev_loop_new(&opts, &ws.loop), 0);
    /* Only the thread's wake-up can stop the loop before the 10 s safety timer. */
    ck_assert_aev_rc(aev_loop_call_later(ws.loop, 10.0, on_safety, NULL, NULL), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, waker, &ws), 0);
    double t0 = aev_loop_time(ws.loop);
    ck_assert_aev_rc(aev_loop_run_forever(ws.loop), 0);
    double elapsed = aev_loop_time(ws.loop) - t0;
    pthread_join(t, NULL);
    ck_assert_int_eq(ws.woken, 1);
    ck_assert_msg(elapsed < 5.0, "the wake-up took %.3f s", elapsed);
    aev_loop_close(ws.loop);
    aev_loop_free(ws.loop);
}
END_TEST

/* ---- ABI versions ---------------------------------------------------------- */

START_TEST(test_newer_minor_refused)
{
    const char *detail;
    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(try_loop("newminor", NULL), AEV_EPLUGIN_REFUSED);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, "poll");
    ck_assert_str_contains(detail, "newminor");
    ck_assert_str_contains(detail, so(TESTDIR, "newminor"));
    ck_assert_str_contains(detail, NEWMINOR_ABI);
    ck_assert_str_contains(detail, CORE_ABI);
}
END_TEST

START_TEST(test_other_major_refused)
{
    const char *detail;
    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(try_loop("newmajor", NULL), AEV_EPLUGIN_REFUSED);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, "newmajor");
    ck_assert_str_contains(detail, so(TESTDIR, "newmajor"));
    ck_assert_str_contains(detail, NEWMAJOR_ABI);
    ck_assert_str_contains(detail, CORE_ABI);
}
END_TEST

START_TEST(test_abi_listed_by_foreach)
{
    aev_policy_t *policy = NULL;
    th_plugin_t *list;
    const th_plugin_t *p;
    int n;

    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    n = th_collect_plugins(policy, &list);

    p = th_plugin_at(list, n, TESTDIR, "aev_poll_newminor.so");
    ck_assert_msg(p != NULL, "aev_poll_newminor.so not listed");
    ck_assert_int_eq(p->status, AEV_EPLUGIN_REFUSED);
    ck_assert_uint_eq(p->abi_major, AEV_PLUGIN_ABI_MAJOR);
    ck_assert_uint_eq(p->abi_minor, AEV_PLUGIN_ABI_MINOR + 5);
    ck_assert_str_contains(p->reason, NEWMINOR_ABI);
    ck_assert_str_contains(p->reason, CORE_ABI);

    p = th_plugin_at(list, n, TESTDIR, "aev_poll_newmajor.so");
    ck_assert_msg(p != NULL, "aev_poll_newmajor.so not listed");
    ck_assert_int_eq(p->status, AEV_EPLUGIN_REFUSED);
    ck_assert_uint_eq(p->abi_major, AEV_PLUGIN_ABI_MAJOR + 1);
    ck_assert_str_contains(p->reason, NEWMAJOR_ABI);
    ck_assert_str_contains(p->reason, CORE_ABI);

    p = th_plugin_at(list, n, TESTDIR, "aev_poll_fake.so");
    ck_assert_msg(p != NULL, "aev_poll_fake.so not listed");
    ck_assert_int_eq(p->status, 0);
    ck_assert_str_eq(p->family, "poll");
    ck_assert_str_eq(p->name, "fake");
    ck_assert_str_eq(p->reason, "");
    ck_assert_int_eq(p->excluded, 0);
    aev_policy_free(policy);
}
END_TEST

/* ---- probes ---------------------------------------------------------------- */

START_TEST(test_probe_failure_explicit)
{
    const char *detail;
    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(try_loop("failprobe", NULL), AEV_EPLUGIN_PROBE);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, "failprobe");
    ck_assert_str_contains(detail, so(TESTDIR, "failprobe"));
    ck_assert_str_contains(detail, "test: io_uring disabled by policy");
}
END_TEST

START_TEST(test_auto_skips_failing_probe)
{
    aev_loop_t *loop = NULL;
    require_real_plugin("epoll");
    /* io_uring, auto's first candidate, is refused here (the fake's probe fails) */
    th_set_plugin_path(NOURINGDIR, TESTDIR, BUILDDIR, NULL);
    setenv("AEV_LOOP", "auto", 1);
    ck_assert_aev_rc(aev_loop_new(NULL, &loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "poll"), "epoll");
    ck_assert_aev_rc(aev_loop_call_soon(loop, on_safety, NULL, NULL), 0);
    ck_assert_aev_rc(aev_loop_run_forever(loop), 0);
    aev_loop_close(loop);
    aev_loop_free(loop);
}
END_TEST

START_TEST(test_proactor_fails_naming_io_uring)
{
    const char *detail;
    th_set_plugin_path(NOURINGDIR, TESTDIR, BUILDDIR, NULL);
    setenv("AEV_LOOP", "proactor", 1);
    ck_assert_aev_rc(try_loop(NULL, NULL), AEV_EPLUGIN_PROBE);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, "poll");
    ck_assert_str_contains(detail, "io_uring");
    ck_assert_str_contains(detail, so(NOURINGDIR, "io_uring"));
    ck_assert_str_contains(detail, "test: fake io_uring never runs");
}
END_TEST

/* The refused fake is listed with its probe's reason. */
START_TEST(test_refused_io_uring_listed)
{
    aev_policy_t *policy = NULL;
    th_plugin_t *list;
    int n;
    th_set_plugin_path(NOURINGDIR, NULL);
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    n = th_collect_plugins(policy, &list);
    const th_plugin_t *p = th_plugin_at(list, n, NOURINGDIR, "aev_poll_io_uring.so");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->status, AEV_EPLUGIN_PROBE);
    ck_assert_str_contains(p->reason, "test: fake io_uring never runs");
    aev_policy_free(policy);
}
END_TEST

/* Nothing in the test directories shadows the real io_uring plugin: proactor and auto
 * get it where the kernel allows io_uring, else proactor fails with the real probe's
 * reason and auto falls back to epoll. */
START_TEST(test_real_io_uring_not_shadowed)
{
    struct stat st;
    const char *chosen = NULL;
    if (stat(so(BUILDDIR, "io_uring"), &st) != 0) {
        fprintf(stderr, "test_real_io_uring_not_shadowed: io_uring plugin not built, skipped\n");
        return;
    }
    require_real_plugin("epoll");
    th_set_plugin_path(TESTDIR, BUILDDIR, NULL);
    setenv("AEV_LOOP", "proactor", 1);
    int rc = try_loop(NULL, &chosen);
    if (rc == 0) {
        ck_assert_str_eq(chosen, "io_uring");
        setenv("AEV_LOOP", "auto", 1);
        ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
        ck_assert_str_eq(chosen, "io_uring");
    } else {
        ck_assert_aev_rc(rc, AEV_EPLUGIN_PROBE);
        const char *detail = aev_error_detail();
        ck_assert_str_contains(detail, so(BUILDDIR, "io_uring"));
        ck_assert_msg(strstr(detail, "io_uring") != NULL, "detail: %s", detail);
        fprintf(stderr, "test_real_io_uring_not_shadowed: io_uring refused here: %s\n", detail);
        setenv("AEV_LOOP", "auto", 1);
        ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
        ck_assert_str_eq(chosen, "epoll");
    }
}
END_TEST

/* The real plugin refused as a seccomp profile refuses it (io_uring_setup fails with
 * EPERM): proactor fails naming the cause, auto falls back to epoll. The filter lasts as
 * long as the process, which Check forks for this test alone. */
START_TEST(test_real_io_uring_refused_by_seccomp)
{
    struct stat st;
    const char *chosen = NULL, *detail;
    const char *fork_mode = getenv("CK_FORK");
    if (stat(so(BUILDDIR, "io_uring"), &st) != 0 || (fork_mode && strcmp(fork_mode, "no") == 0)) {
        fprintf(stderr, "test_real_io_uring_refused_by_seccomp: needs the io_uring plugin and "
                        "CK_FORK, skipped\n");
        return;
    }
    require_real_plugin("epoll");
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);

    th_set_plugin_path(TESTDIR, BUILDDIR, NULL);
    setenv("AEV_LOOP", "proactor", 1);
    ck_assert_aev_rc(try_loop(NULL, NULL), AEV_EPLUGIN_PROBE);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, so(BUILDDIR, "io_uring"));
    ck_assert_str_contains(detail, "io_uring_setup: Operation not permitted");
    ck_assert_str_contains(detail, "seccomp");
    setenv("AEV_LOOP", "auto", 1);
    ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
    ck_assert_str_eq(chosen, "epoll");
}
END_TEST

/* ---- search path ----------------------------------------------------------- */

START_TEST(test_missing_names_every_path)
{
    const char *tmp = th_tmpdir();
    const char *extra1 = th_fmt("%s/extra1", tmp), *extra2 = th_fmt("%s/extra2", tmp);
    const char *sysdir = th_getenv("AEV_TEST_SYSTEM_PLUGIN_DIR");
    const char *conf, *detail;
    aev_policy_t *policy = NULL;

    mkdir(extra1, 0777);
    mkdir(extra2, 0777);
    conf = th_write(tmp, "aev.conf", th_fmt("[plugins]\npath = %s:%s\n", extra1, extra2));
    setenv("AEV_CONFIG", conf, 1);
    th_set_plugin_path(TESTDIR, BUILDDIR, NULL);
    setenv("AEV_POLL", "nosuch", 1);

    /* The search path, in order: AEV_PLUGIN_PATH, the config's path, the built-in dir. */
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    ck_assert_str_eq(aev_policy_search_dir(policy, 0), TESTDIR);
    ck_assert_str_eq(aev_policy_search_dir(policy, 1), BUILDDIR);
    ck_assert_str_eq(aev_policy_search_dir(policy, 2), extra1);
    ck_assert_str_eq(aev_policy_search_dir(policy, 3), extra2);
    ck_assert_str_eq(aev_policy_search_dir(policy, 4), sysdir);
    ck_assert_ptr_null(aev_policy_search_dir(policy, 5));
    aev_policy_free(policy);

    ck_assert_aev_rc(try_loop(NULL, NULL), AEV_EPLUGIN_NOT_FOUND);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, "poll");
    ck_assert_str_contains(detail, "nosuch");
    ck_assert_str_contains(detail, so(TESTDIR, "nosuch"));
    ck_assert_str_contains(detail, so(BUILDDIR, "nosuch"));
    ck_assert_str_contains(detail, so(extra1, "nosuch"));
    ck_assert_str_contains(detail, so(extra2, "nosuch"));
    ck_assert_str_contains(detail, so(sysdir, "nosuch"));
    ck_assert_str_contains(detail, "not found");
}
END_TEST

START_TEST(test_list_falls_through)
{
    const char *chosen;
    require_real_plugin("epoll");
    th_set_plugin_path(TESTDIR, BUILDDIR, NULL);
    setenv("AEV_POLL", "nosuch,epoll", 1);
    ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
    ck_assert_str_eq(chosen, "epoll");

    /* Each kind of failure falls through to the next candidate. */
    setenv("AEV_POLL", "failprobe,newminor,newmajor,badmagic,nodesc,badops,nosuch,fake", 1);
    ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
    ck_assert_str_eq(chosen, "fake");
}
END_TEST

START_TEST(test_list_all_fail_names_each)
{
    const char *detail;
    int rc;
    th_set_plugin_path(TESTDIR, NULL);
    setenv("AEV_POLL", "nosuch,failprobe,newminor", 1);
    rc = try_loop(NULL, NULL);
    ck_assert_msg(rc == AEV_EPLUGIN_NOT_FOUND || rc == AEV_EPLUGIN_REFUSED ||
                      rc == AEV_EPLUGIN_PROBE,
                  "rc %d (%s)", rc, aev_err_name(rc));
    detail = aev_error_detail();
    ck_assert_str_contains(detail, so(TESTDIR, "nosuch"));
    ck_assert_str_contains(detail, "not found");
    ck_assert_str_contains(detail, so(TESTDIR, "failprobe"));
    ck_assert_str_contains(detail, "test: io_uring disabled by policy");
    ck_assert_str_contains(detail, so(TESTDIR, "newminor"));
    ck_assert_str_contains(detail, NEWMINOR_ABI);
}
END_TEST

START_TEST(test_first_dir_wins)
{
    aev_loop_options_t opts = {0};
    aev_loop_t *loop = NULL;
    const char *shadow = th_getenv("AEV_TEST_SHADOW_PLUGIN_DIR");
    require_real_plugin("select");
    th_log_capture();
    th_set_plugin_path(shadow, BUILDDIR, NULL);
    opts.poll = "select";
    ck_assert_aev_rc(aev_loop_new(&opts, &loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "poll"), "select");
    ck_assert_str_contains(th_log_text(), "shadow select created");
    aev_loop_close(loop);
    aev_loop_free(loop);
}
END_TEST

START_TEST(test_later_dir_not_opened_when_earlier_wins)
{
    /* aev_poll_boom aborts when loaded; the fake in the first directory must win
     * without the core opening anything else named in a later entry of the list. */
    aev_loop_options_t opts = {0};
    aev_loop_t *loop = NULL;
    th_set_plugin_path(TESTDIR, th_getenv("AEV_TEST_EXCLUDED_PLUGIN_DIR"), NULL);
    opts.poll = "fake,boom";
    ck_assert_aev_rc(aev_loop_new(&opts, &loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "poll"), "fake");
    aev_loop_close(loop);
    aev_loop_free(loop);
}
END_TEST

/* ---- malformed descriptors --------------------------------------------------- */

struct malformed {
    const char *name;  /* aev_poll_<name>.so */
    const char *words[3]; /* each must appear in the reason once <name> is taken out */
};

static const struct malformed malformed[] = {
    {"badmagic", {"magic"}},
    {"nullname", {"name"}},
    {"noinit", {"init"}},
    {"wrongname", {"name", "other"}},
    {"badfamily", {"family"}},
    {"otherfamily", {"family"}},
    {"smallsize", {"size"}},
    {"nodesc", {NULL}}, /* checked separately: no descriptor symbol */
};
#define N_MALFORMED ((int)(sizeof malformed / sizeof malformed[0]))

/* text with every occurrence of word removed (so a file name does not satisfy a check). */
static const char *without(const char *text, const char *word)
{
    char *out = (char *)th_fmt("%s", text);
    size_t wl = strlen(word);
    char *p;
    while ((p = strstr(out, word)) != NULL)
        memmove(p, p + wl, strlen(p + wl) + 1);
    return out;
}

static void check_reason(const struct malformed *m, const char *text)
{
    const char *stripped = without(text, m->name);
    if (strcmp(m->name, "nodesc") == 0) {
        ck_assert_msg(strstr(text, "aev_plugin") != NULL || strstr(text, "descriptor") != NULL ||
                          strstr(text, "symbol") != NULL,
                      "the reason for aev_poll_nodesc.so does not say the descriptor symbol "
                      "is missing: %s",
                      text);
        return;
    }
    for (int i = 0; i < 3 && m->words[i] != NULL; i++)
        ck_assert_msg(strstr(stripped, m->words[i]) != NULL,
                      "the reason for aev_poll_%s.so does not name \"%s\": %s", m->name,
                      m->words[i], text);
}

START_TEST(test_malformed_refused_explicit)
{
    const struct malformed *m = &malformed[_i];
    const char *detail;
    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(try_loop(m->name, NULL), AEV_EPLUGIN_REFUSED);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, so(TESTDIR, m->name));
    check_reason(m, detail);
}
END_TEST

START_TEST(test_malformed_listed_refused)
{
    aev_policy_t *policy = NULL;
    th_plugin_t *list;
    int n;
    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    n = th_collect_plugins(policy, &list);
    for (int i = 0; i < N_MALFORMED; i++) {
        const th_plugin_t *p = th_plugin_at(list, n, TESTDIR,
                                            th_fmt("aev_poll_%s.so", malformed[i].name));
        ck_assert_msg(p != NULL, "aev_poll_%s.so not listed", malformed[i].name);
        ck_assert_msg(p->status == AEV_EPLUGIN_REFUSED, "aev_poll_%s.so: status %d (%s)",
                      malformed[i].name, p->status, aev_err_name(p->status));
        ck_assert_int_eq(p->excluded, 0);
        check_reason(&malformed[i], p->reason);
    }
    aev_policy_free(policy);
}
END_TEST

START_TEST(test_foreach_lists_each_module_once)
{
    /* Every aev_*_*.so file of the directory is listed once; other entries (meson's
     * *.so.p object directories, subdirectories) are not. */
    aev_policy_t *policy = NULL;
    th_plugin_t *list;
    int n, files = 0, listed = 0;
    DIR *d;
    struct dirent *e;
    const char *prefix = th_fmt("%s/", TESTDIR);

    th_set_plugin_path(TESTDIR, NULL);
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    n = th_collect_plugins(policy, &list);
    d = opendir(TESTDIR);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        struct stat st;
        if (strncmp(e->d_name, "aev_", 4) != 0 || len < 4 ||
            strcmp(e->d_name + len - 3, ".so") != 0)
            continue;
        if (stat(th_fmt("%s/%s", TESTDIR, e->d_name), &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        files++;
        int seen = 0;
        for (int i = 0; i < n; i++)
            if (strcmp(list[i].path, th_fmt("%s%s", prefix, e->d_name)) == 0)
                seen++;
        ck_assert_msg(seen == 1, "%s listed %d times", e->d_name, seen);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        if (strncmp(list[i].path, prefix, strlen(prefix)) == 0)
            listed++;
    ck_assert_int_ge(files, 17);
    ck_assert_int_eq(listed, files);

    /* Probe results: usable, or the probe's own text. */
    const th_plugin_t *p = th_plugin_at(list, n, TESTDIR, "aev_poll_failprobe.so");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->status, AEV_EPLUGIN_PROBE);
    ck_assert_str_contains(p->reason, "test: io_uring disabled by policy");
    p = th_plugin_at(list, n, TESTDIR, "aev_poll_opts.so");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->status, 0);
    aev_policy_free(policy);
}
END_TEST

/* Ops faults: probe passes, init returns ops the core must not use. */
START_TEST(test_bad_ops_refused)
{
    const char *detail;
    th_set_plugin_path(TESTDIR, NULL);

    ck_assert_aev_rc(try_loop("badops", NULL), AEV_EPLUGIN_REFUSED);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, so(TESTDIR, "badops"));
    ck_assert_str_contains(without(detail, "badops"), "wait");

    ck_assert_aev_rc(try_loop("oldops", NULL), AEV_EPLUGIN_REFUSED);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, so(TESTDIR, "oldops"));
    ck_assert_str_contains(detail, "version");

    ck_assert_aev_rc(try_loop("badcaps", NULL), AEV_EPLUGIN_REFUSED);
    detail = aev_error_detail();
    ck_assert_str_contains(detail, so(TESTDIR, "badcaps"));
    ck_assert_str_contains(detail, "caps");

    int rc = try_loop("nullops", NULL);
    ck_assert_msg(rc < 0, "a plugin whose init returns NULL was accepted");
    ck_assert_str_contains(aev_error_detail(), "nullops");
}
END_TEST

/* ---- exclusion ------------------------------------------------------------- */

START_TEST(test_boom_aborts_when_loaded)
{
    /* The premise of the exclusion tests: loading aev_poll_boom kills the process. */
    th_set_plugin_path(th_getenv("AEV_TEST_EXCLUDED_PLUGIN_DIR"), NULL);
    try_loop("boom", NULL);
}
END_TEST

static void exclusion_case(const char *exclude)
{
    const char *tmp = th_tmpdir();
    const char *excl = th_getenv("AEV_TEST_EXCLUDED_PLUGIN_DIR");
    const char *conf, *chosen;
    aev_policy_t *policy = NULL;
    th_plugin_t *list;
    const th_plugin_t *p;
    int n;

    conf = th_write(tmp, "aev.conf", th_fmt("[plugins]\nexclude = %s\n", exclude));
    setenv("AEV_CONFIG", conf, 1);
    th_set_plugin_path(excl, TESTDIR, NULL);

    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    n = th_collect_plugins(policy, &list);
    p = th_plugin_at(list, n, excl, "aev_poll_boom.so");
    ck_assert_msg(p != NULL, "an excluded plugin is still listed (as excluded)");
    ck_assert_int_eq(p->excluded, 1);
    p = th_plugin_at(list, n, TESTDIR, "aev_poll_fake.so");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->excluded, 0);
    aev_policy_free(policy);

    setenv("AEV_POLL", "boom,fake", 1);
    ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
    ck_assert_str_eq(chosen, "fake");

    /* Named alone, the excluded plugin is an error that says it is excluded. */
    setenv("AEV_POLL", "boom", 1);
    ck_assert_int_lt(try_loop(NULL, NULL), 0);
    ck_assert_str_contains(aev_error_detail(), "boom");
    ck_assert_str_contains(aev_error_detail(), "exclu");
}

START_TEST(test_exclude_by_name)
{
    exclusion_case("boom");
}
END_TEST

START_TEST(test_exclude_by_family_name)
{
    exclusion_case("tls.nosuch,poll.boom");
}
END_TEST

/* ---- plugin options -------------------------------------------------------- */

START_TEST(test_plugin_options_reach_plugin)
{
    const char *tmp = th_tmpdir();
    const char *conf, *chosen;
    aev_policy_t *policy = NULL;

    conf = th_write(tmp, "aev.conf",
                    "[policy]\npoll = opts\n\n[poll.opts]\nmarker = blue-42\nother = 1\n");
    setenv("AEV_CONFIG", conf, 1);
    th_set_plugin_path(TESTDIR, NULL);
    th_log_capture();

    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), 0);
    ck_assert_str_eq(aev_policy_plugin_option(policy, "poll", "opts", "marker"), "blue-42");
    ck_assert_ptr_null(aev_policy_plugin_option(policy, "poll", "opts", "nosuch"));
    ck_assert_ptr_null(aev_policy_plugin_option(policy, "poll", "fake", "marker"));
    aev_policy_free(policy);

    ck_assert_aev_rc(try_loop(NULL, &chosen), 0);
    ck_assert_str_eq(chosen, "opts");
    ck_assert_str_contains(th_log_text(), "poll.opts: marker=blue-42");
}
END_TEST

START_TEST(test_plugin_option_unset)
{
    const char *chosen;
    th_set_plugin_path(TESTDIR, NULL);
    th_log_capture();
    ck_assert_aev_rc(try_loop("opts", &chosen), 0);
    ck_assert_str_eq(chosen, "opts");
    ck_assert_str_contains(th_log_text(), "poll.opts: marker=(unset)");
}
END_TEST

static Suite *registry_suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc;

    tc = th_tcase("engine");
    tcase_add_test(tc, test_fake_engine_runs_a_loop);
    tcase_add_test(tc, test_fake_engine_wakes_up);
    suite_add_tcase(s, tc);

    tc = th_tcase("abi");
    tcase_add_test(tc, test_newer_minor_refused);
    tcase_add_test(tc, test_other_major_refused);
    tcase_add_test(tc, test_abi_listed_by_foreach);
    suite_add_tcase(s, tc);

    tc = th_tcase("probe");
    tcase_add_test(tc, test_probe_failure_explicit);
    tcase_add_test(tc, test_auto_skips_failing_probe);
    tcase_add_test(tc, test_proactor_fails_naming_io_uring);
    tcase_add_test(tc, test_refused_io_uring_listed);
    tcase_add_test(tc, test_real_io_uring_not_shadowed);
    tcase_add_test(tc, test_real_io_uring_refused_by_seccomp);
    suite_add_tcase(s, tc);

    tc = th_tcase("search");
    tcase_add_test(tc, test_missing_names_every_path);
    tcase_add_test(tc, test_list_falls_through);
    tcase_add_test(tc, test_list_all_fail_names_each);
    tcase_add_test(tc, test_first_dir_wins);
    tcase_add_test(tc, test_later_dir_not_opened_when_earlier_wins);
    suite_add_tcase(s, tc);

    tc = th_tcase("malformed");
    tcase_add_loop_test(tc, test_malformed_refused_explicit, 0, N_MALFORMED);
    tcase_add_test(tc, test_malformed_listed_refused);
    tcase_add_test(tc, test_foreach_lists_each_module_once);
    tcase_add_test(tc, test_bad_ops_refused);
    suite_add_tcase(s, tc);

    tc = th_tcase("exclude");
    tcase_add_test_raise_signal(tc, test_boom_aborts_when_loaded, SIGABRT);
    tcase_add_test(tc, test_exclude_by_name);
    tcase_add_test(tc, test_exclude_by_family_name);
    suite_add_tcase(s, tc);

    tc = th_tcase("options");
    tcase_add_test(tc, test_plugin_options_reach_plugin);
    tcase_add_test(tc, test_plugin_option_unset);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return th_run_suite(registry_suite());
}
