/* libaev tests - the config files: which files are read and in what order,
 * the INI syntax, and errors that name file and line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helpers.h"

static aev_policy_t *resolve(const aev_loop_options_t *opts)
{
    aev_policy_t *policy = NULL;
    ck_assert_aev_rc(aev_policy_resolve(opts, &policy), 0);
    ck_assert_ptr_nonnull(policy);
    return policy;
}

static void check(const aev_policy_t *policy, const char *key, const char *value,
                  const char *origin_text)
{
    const aev_policy_choice_t *c = aev_policy_get(policy, key);
    ck_assert_msg(c != NULL, "no setting %s", key);
    ck_assert_msg(strcmp(c->value, value) == 0, "%s: value \"%s\", expected \"%s\"", key,
                  c->value, value);
    ck_assert_msg(strcmp(c->origin_text, origin_text) == 0,
                  "%s=%s: origin \"%s\", expected \"%s\"", key, value, c->origin_text,
                  origin_text);
}

/* The config files read, as one "a|b|c" string. */
static const char *files_read(const aev_policy_t *p)
{
    const char *s = "";
    const char *f;
    for (int i = 0; (f = aev_policy_config_file(p, i)) != NULL; i++)
        s = th_fmt("%s%s%s", s, i ? "|" : "", f);
    return s;
}

/* ---- bad lines --------------------------------------------------------------- */

struct bad {
    const char *what;
    const char *text;
    int line;
};

static const struct bad bad_lines[] = {
    {"garbage line", "[policy]\npoll = epoll\nthis line is garbage\n", 3},
    {"unterminated section", "# c\n[policy\npoll = epoll\n", 2},
    {"unknown section", "[policy]\npoll = epoll\n[nosuch]\nkey = v\n", 3},
    {"unknown policy key", "[policy]\n\nfrobnicate = 1\n", 3},
    {"unknown plugins key", "[plugins]\npath = /nonexistent\ncolour = blue\n", 3},
    {"bad loop value", "; c\n[policy]\n\nloop = sideways\n", 4},
    {"bad debug value", "[policy]\ndebug = maybe\n", 2},
    {"key before any section", "# comment\n\npoll = epoll\n[policy]\n", 3},
    {"garbage after good lines", "[policy]\npoll = epoll\n[poll.fake]\nmarker = 1\n}\n", 5},
};
#define N_BAD ((int)(sizeof bad_lines / sizeof bad_lines[0]))

START_TEST(test_bad_line_names_file_and_line)
{
    const struct bad *b = &bad_lines[_i];
    const char *conf = th_write(th_tmpdir(), "aev.conf", b->text);
    const char *prefix = th_fmt("%s:%d: ", conf, b->line);
    aev_policy_t *policy = NULL;
    aev_loop_t *loop = (aev_loop_t *)0x1;

    setenv("AEV_CONFIG", conf, 1);
    ck_assert_msg(aev_policy_resolve(NULL, &policy) == AEV_ECONFIG,
                  "%s: aev_policy_resolve accepted the file (detail: %s)", b->what,
                  aev_error_detail());
    ck_assert_msg(strncmp(aev_error_detail(), prefix, strlen(prefix)) == 0,
                  "%s: detail \"%s\" does not start with \"%s\"", b->what, aev_error_detail(),
                  prefix);

    ck_assert_msg(aev_loop_new(NULL, &loop) == AEV_ECONFIG, "%s: aev_loop_new accepted the file",
                  b->what);
    ck_assert_ptr_null(loop);
    ck_assert_msg(strncmp(aev_error_detail(), prefix, strlen(prefix)) == 0,
                  "%s: aev_loop_new detail \"%s\" does not start with \"%s\"", b->what,
                  aev_error_detail(), prefix);
}
END_TEST

START_TEST(test_bad_line_in_dropin)
{
    const char *dir = th_tmpdir();
    const char *bad;
    aev_policy_t *policy = NULL;
    th_write(dir, "aev.conf.d/10-good.conf", "[policy]\npoll = poll\n");
    bad = th_write(dir, "aev.conf.d/20-bad.conf", "[policy]\n# ok\nloop = sideways\n");
    setenv("AEV_CONFIG_DIR", dir, 1);
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), AEV_ECONFIG);
    ck_assert_str_starts(aev_error_detail(), th_fmt("%s:3: ", bad));
}
END_TEST

START_TEST(test_bad_line_in_config_file_argument)
{
    const char *conf = th_write(th_tmpdir(), "x.conf", "[policy]\n\n\nnonsense\n");
    aev_loop_options_t opts = {0};
    aev_policy_t *policy = NULL;
    opts.config_file = conf;
    ck_assert_aev_rc(aev_policy_resolve(&opts, &policy), AEV_ECONFIG);
    ck_assert_str_starts(aev_error_detail(), th_fmt("%s:4: ", conf));
}
END_TEST

START_TEST(test_missing_named_config)
{
    const char *missing = th_fmt("%s/does-not-exist.conf", th_tmpdir());
    aev_policy_t *policy = NULL;
    aev_loop_t *loop = NULL;
    setenv("AEV_CONFIG", missing, 1);
    ck_assert_aev_rc(aev_policy_resolve(NULL, &policy), AEV_ECONFIG);
    ck_assert_str_contains(aev_error_detail(), missing);
    ck_assert_aev_rc(aev_loop_new(NULL, &loop), AEV_ECONFIG);
    ck_assert_str_contains(aev_error_detail(), missing);
}
END_TEST

/* ---- good syntax ------------------------------------------------------------- */

START_TEST(test_syntax_accepted)
{
    const char *conf = th_write(th_tmpdir(), "aev.conf",
                                "# hash comment\n"                 /* 1 */
                                "; semicolon comment\n"            /* 2 */
                                "\n"                               /* 3 */
                                "[policy]\n"                       /* 4 */
                                "\t poll   =   select  \n"         /* 5 */
                                "# another comment\n"              /* 6 */
                                "debug=off\n"                      /* 7 */
                                "[plugins]\n"                      /* 8 */
                                "exclude = nosuch\n"               /* 9 */
                                "[poll.fake]\n"                    /* 10 */
                                "  marker   =   a b  \n"           /* 11 */
                                "anything_goes = 1\n"              /* 12 */
                                "[exec.threads]\n"                 /* 13 */
                                "max_workers = 8\n");              /* 14 */
    aev_policy_t *p;
    setenv("AEV_CONFIG", conf, 1);
    p = resolve(NULL);
    check(p, "poll", "select", th_fmt("config %s:5", conf));
    check(p, "debug", "0", th_fmt("config %s:7", conf));
    ck_assert_str_eq(aev_policy_plugin_option(p, "poll", "fake", "marker"), "a b");
    ck_assert_str_eq(aev_policy_plugin_option(p, "poll", "fake", "anything_goes"), "1");
    ck_assert_str_eq(aev_policy_plugin_option(p, "exec", "threads", "max_workers"), "8");
    ck_assert_ptr_null(aev_policy_plugin_option(p, "exec", "threads", "marker"));
    aev_policy_free(p);
}
END_TEST

START_TEST(test_debug_values)
{
    static const char *const on[] = {"1", "true", "yes", "on"};
    static const char *const off[] = {"0", "false", "no", "off"};
    const char *dir = th_tmpdir();
    for (int i = 0; i < 8; i++) {
        const char *v = i < 4 ? on[i] : off[i - 4];
        const char *conf =
            th_write(dir, th_fmt("d%d.conf", i), th_fmt("[policy]\ndebug = %s\n", v));
        aev_policy_t *p;
        setenv("AEV_CONFIG", conf, 1);
        p = resolve(NULL);
        char origin[4200];
        snprintf(origin, sizeof origin, "config %.4000s:2", conf ? conf : "?");
        check(p, "debug", i < 4 ? "1" : "0", origin);
        aev_policy_free(p);
    }
}
END_TEST

START_TEST(test_config_plugin_path)
{
    const char *dir = th_tmpdir();
    const char *conf = th_write(dir, "aev.conf", "[plugins]\npath = /nonexistent/a:/nonexistent/b\n");
    const char *env = th_getenv("AEV_PLUGIN_PATH");
    aev_policy_t *p;
    setenv("AEV_CONFIG", conf, 1);
    p = resolve(NULL);
    ck_assert_str_eq(aev_policy_search_dir(p, 0), env);
    ck_assert_str_eq(aev_policy_search_dir(p, 1), "/nonexistent/a");
    ck_assert_str_eq(aev_policy_search_dir(p, 2), "/nonexistent/b");
    ck_assert_str_eq(aev_policy_search_dir(p, 3), th_getenv("AEV_TEST_SYSTEM_PLUGIN_DIR"));
    ck_assert_ptr_null(aev_policy_search_dir(p, 4));
    aev_policy_free(p);
}
END_TEST

/* ---- which files ------------------------------------------------------------- */

START_TEST(test_dropins_in_name_order_main_wins)
{
    const char *dir = th_tmpdir();
    const char *b, *a, *c, *main_conf;
    aev_policy_t *p;

    setenv("AEV_CONFIG_DIR", dir, 1);
    /* Written out of order, so directory order cannot pass for name order. */
    b = th_write(dir, "aev.conf.d/20-b.conf", "[policy]\n\npoll = poll\ntls = tls_b\n");
    c = th_write(dir, "aev.conf.d/30-c.conf", "[policy]\ndns = dns_c\n");
    a = th_write(dir, "aev.conf.d/10-a.conf", "[policy]\npoll = select\ntls = tls_a\nproc = proc_a\n");
    th_write(dir, "aev.conf.d/40-ignored.conf.disabled", "[policy]\nexec = nope\n");
    th_write(dir, "aev.conf.d/50-ignored.txt", "garbage that would not parse\n");

    /* Drop-ins alone: later names win. */
    p = resolve(NULL);
    ck_assert_str_eq(files_read(p), th_fmt("%s|%s|%s", a, b, c));
    check(p, "poll", "poll", th_fmt("config %s:3", b));
    check(p, "tls", "tls_b", th_fmt("config %s:4", b));
    check(p, "proc", "proc_a", th_fmt("config %s:4", a));
    check(p, "dns", "dns_c", th_fmt("config %s:2", c));
    ck_assert_str_eq(aev_policy_get(p, "exec")->value, "threads"); /* nobody set it */
    aev_policy_free(p);

    /* The main file is read after the drop-ins and wins. */
    main_conf = th_write(dir, "aev.conf", "[policy]\ntls = tls_main\n");
    p = resolve(NULL);
    ck_assert_str_eq(files_read(p), th_fmt("%s|%s|%s|%s", a, b, c, main_conf));
    check(p, "tls", "tls_main", th_fmt("config %s:2", main_conf));
    check(p, "poll", "poll", th_fmt("config %s:3", b));
    aev_policy_free(p);
}
END_TEST

START_TEST(test_xdg_file_preferred)
{
    const char *sys = th_tmpdir(), *xdg = th_tmpdir();
    const char *sys_conf, *xdg_conf, *drop;
    aev_policy_t *p;

    setenv("AEV_CONFIG_DIR", sys, 1);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    sys_conf = th_write(sys, "aev.conf", "[policy]\npoll = select\n");
    drop = th_write(sys, "aev.conf.d/10-pkg.conf", "[policy]\ndns = pkg_dns\n");

    /* No XDG file: the config dir's aev.conf. */
    p = resolve(NULL);
    ck_assert_str_eq(files_read(p), th_fmt("%s|%s", drop, sys_conf));
    check(p, "poll", "select", th_fmt("config %s:2", sys_conf));
    aev_policy_free(p);

    /* An XDG file replaces it (the drop-ins stay). */
    xdg_conf = th_write(xdg, "aev/aev.conf", "[policy]\n\npoll = poll\n");
    p = resolve(NULL);
    ck_assert_str_eq(files_read(p), th_fmt("%s|%s", drop, xdg_conf));
    check(p, "poll", "poll", th_fmt("config %s:3", xdg_conf));
    check(p, "dns", "pkg_dns", th_fmt("config %s:2", drop));
    aev_policy_free(p);
}
END_TEST

START_TEST(test_aev_config_preferred)
{
    const char *xdg = th_tmpdir(), *own = th_tmpdir();
    const char *own_conf;
    aev_policy_t *p;

    setenv("XDG_CONFIG_HOME", xdg, 1);
    th_write(xdg, "aev/aev.conf", "[policy]\npoll = poll\n");
    own_conf = th_write(own, "mine.conf", "[policy]\npoll = select\n");
    setenv("AEV_CONFIG", own_conf, 1);
    p = resolve(NULL);
    check(p, "poll", "select", th_fmt("config %s:2", own_conf));
    for (int i = 0; aev_policy_config_file(p, i) != NULL; i++)
        ck_assert_str_ne(aev_policy_config_file(p, i), th_fmt("%s/aev/aev.conf", xdg));
    aev_policy_free(p);
}
END_TEST

START_TEST(test_no_config_at_all)
{
    aev_policy_t *p = resolve(NULL);
    ck_assert_ptr_null(aev_policy_config_file(p, 0));
    check(p, "poll", "epoll,poll,select", "preset selector (default)");
    aev_policy_free(p);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = th_tcase("errors");
    tcase_add_loop_test(tc, test_bad_line_names_file_and_line, 0, N_BAD);
    tcase_add_test(tc, test_bad_line_in_dropin);
    tcase_add_test(tc, test_bad_line_in_config_file_argument);
    tcase_add_test(tc, test_missing_named_config);
    suite_add_tcase(s, tc);

    tc = th_tcase("syntax");
    tcase_add_test(tc, test_syntax_accepted);
    tcase_add_test(tc, test_debug_values);
    tcase_add_test(tc, test_config_plugin_path);
    suite_add_tcase(s, tc);

    tc = th_tcase("files");
    tcase_add_test(tc, test_dropins_in_name_order_main_wins);
    tcase_add_test(tc, test_xdg_file_preferred);
    tcase_add_test(tc, test_aev_config_preferred);
    tcase_add_test(tc, test_no_config_at_all);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return th_run_suite(config_suite());
}
