/* libaev tests - aev-inspect: its records (format documented at the top of
 * tools/aev-inspect/aev-inspect.c), exit codes, and that the origins it
 * prints are the ones the library resolves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define TESTDIR th_getenv("AEV_TEST_PLUGIN_DIR")

static const char *inspect(const char *args, int *status)
{
    return th_run(th_fmt("'%s' %s", th_getenv("AEV_INSPECT"), args), status);
}

static void assert_line(const char *out, const char *prefix, const char *expected)
{
    const char *line = th_find_line(out, prefix);
    ck_assert_msg(line != NULL, "no line starting \"%s\" in:\n%s", prefix, out);
    if (expected != NULL)
        ck_assert_msg(strcmp(line, expected) == 0, "line\n  \"%s\"\nexpected\n  \"%s\"", line,
                      expected);
}

static int count_prefix(const char *out, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *l = out; l && *l;) {
        if (strncmp(l, prefix, len) == 0)
            n++;
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return n;
}

START_TEST(test_help_version_usage)
{
    int st;
    const char *out = inspect("--help", &st);
    ck_assert_int_eq(st, 0);
    ck_assert_str_contains(out, "Usage:");
    ck_assert_str_contains(out, "--try");

    out = inspect("--version", &st);
    ck_assert_int_eq(st, 0);
    ck_assert_str_contains(out, aev_version());
    ck_assert_str_contains(out, th_fmt("%d.%d", AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR));

    inspect("--frobnicate", &st);
    ck_assert_int_eq(st, 2);
    inspect("stray-argument", &st);
    ck_assert_int_eq(st, 2);
    inspect("--poll", &st); /* missing value */
    ck_assert_int_eq(st, 2);
}
END_TEST

/* Every setting the library resolves appears as "policy<TAB>key=value<TAB>origin". */
static void check_policy_matches(const char *out, const aev_loop_options_t *opts)
{
    aev_policy_t *p = NULL;
    const char *s;
    ck_assert_aev_rc(aev_policy_resolve(opts, &p), 0);
    ck_assert_int_eq(count_prefix(out, "policy\t"), aev_policy_count(p));
    for (int i = 0; i < aev_policy_count(p); i++) {
        const aev_policy_choice_t *c = aev_policy_at(p, i);
        assert_line(out, th_fmt("policy\t%s=%s", c->key, c->value),
                    th_fmt("policy\t%s=%s\t%s", c->key, c->value, c->origin_text));
    }
    for (int i = 0; (s = aev_policy_config_file(p, i)) != NULL; i++)
        assert_line(out, th_fmt("config\t%s", s), NULL);
    for (int i = 0; (s = aev_policy_search_dir(p, i)) != NULL; i++)
        assert_line(out, th_fmt("search\t%s", s), NULL);
    {
        int n = 0;
        while (aev_policy_search_dir(p, n) != NULL)
            n++;
        ck_assert_int_eq(count_prefix(out, "search\t"), n);
    }
    aev_policy_free(p);
}

START_TEST(test_policy_origins)
{
    const char *dir = th_tmpdir();
    const char *drop, *conf, *out;
    aev_loop_options_t opts = {0};
    int st;

    setenv("AEV_CONFIG_DIR", dir, 1);
    drop = th_write(dir, "aev.conf.d/50-pkg.conf", "[policy]\n\ndns = pkgdns\n");
    conf = th_write(dir, "aev.conf",
                    "# mine\n[policy]\npoll = select\nexec = myexec\nloop = auto\n");
    setenv("AEV_PROC", "myproc", 1);

    out = inspect("--policy --tls=argtls", &st);
    ck_assert_msg(st == 0, "exit %d: %s", st, out);
    ck_assert_int_eq(count_prefix(out, "plugin\t"), 0);
    assert_line(out, "policy\tloop=auto", th_fmt("policy\tloop=auto\tconfig %s:5", conf));
    assert_line(out, "policy\tpoll=select", th_fmt("policy\tpoll=select\tconfig %s:3", conf));
    assert_line(out, "policy\ttls=argtls", "policy\ttls=argtls\targument");
    assert_line(out, "policy\tdns=pkgdns", th_fmt("policy\tdns=pkgdns\tconfig %s:3", drop));
    assert_line(out, "policy\tproc=myproc", "policy\tproc=myproc\tenv AEV_PROC");
    assert_line(out, "policy\texec=myexec", th_fmt("policy\texec=myexec\tconfig %s:4", conf));
    /* config files in the order read */
    ck_assert_str_contains(out, th_fmt("config\t%s\nconfig\t%s\n", drop, conf));

    opts.tls = "argtls";
    check_policy_matches(out, &opts);
}
END_TEST

START_TEST(test_policy_presets_and_defaults)
{
    int st;
    const char *out = inspect("--policy", &st);
    ck_assert_int_eq(st, 0);
    check_policy_matches(out, NULL);
    assert_line(out, "policy\tpoll=epoll,poll,select",
                "policy\tpoll=epoll,poll,select\tpreset selector (default)");
    assert_line(out, "policy\tloop=selector", "policy\tloop=selector\tdefault");

    out = inspect("--policy --loop=proactor --debug", &st);
    ck_assert_int_eq(st, 0);
    assert_line(out, "policy\tloop=proactor", "policy\tloop=proactor\targument");
    assert_line(out, "policy\tpoll=io_uring", "policy\tpoll=io_uring\tpreset proactor");
    assert_line(out, "policy\tdebug=1", "policy\tdebug=1\targument");
    {
        aev_loop_options_t opts = {0};
        opts.loop = "proactor";
        opts.debug = 1;
        check_policy_matches(out, &opts);
    }
}
END_TEST

START_TEST(test_plugin_records)
{
    char caps[256];
    const char *out, *fake, *line;
    int st;

    th_set_plugin_path(TESTDIR, NULL);
    out = inspect("--plugins", &st);
    ck_assert_msg(st == 0, "exit %d: %s", st, out);
    ck_assert_int_eq(count_prefix(out, "policy\t"), 0);

    aev_caps_describe(AEV_FAMILY_POLL, AEV_POLL_CAP_READINESS | AEV_POLL_CAP_NS_TIMEOUT, caps,
                      sizeof caps);
    fake = th_fmt("%s/aev_poll_fake.so", TESTDIR);
    assert_line(out, th_fmt("plugin\t%s", fake),
                th_fmt("plugin\t%s\tpoll.fake\tversion=test-1\tabi=%d.%d\tcaps=%s\tpriority=-100\t"
                       "usable",
                       fake, AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR, caps[0] ? caps : "-"));

    line = th_find_line(out, th_fmt("plugin\t%s/aev_poll_newminor.so", TESTDIR));
    ck_assert_ptr_nonnull(line);
    ck_assert_str_contains(line, th_fmt("\tabi=%d.%d\t", AEV_PLUGIN_ABI_MAJOR,
                                        AEV_PLUGIN_ABI_MINOR + 5));
    ck_assert_str_contains(line, "\trefused: ");
    ck_assert_str_contains(strstr(line, "\trefused: "),
                           th_fmt("%d.%d", AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR + 5));

    line = th_find_line(out, th_fmt("plugin\t%s/aev_poll_failprobe.so", TESTDIR));
    ck_assert_ptr_nonnull(line);
    ck_assert_str_contains(line, "\tcannot run here: ");
    ck_assert_str_contains(strstr(line, "\tcannot run here: "), "test: io_uring disabled by policy");

    line = th_find_line(out, th_fmt("plugin\t%s/aev_poll_badmagic.so", TESTDIR));
    ck_assert_ptr_nonnull(line);
    ck_assert_str_contains(line, "\trefused: ");

    /* Every record has the eight fields. */
    for (const char *l = out; l && *l;) {
        if (strncmp(l, "plugin\t", 7) == 0) {
            int tabs = 0;
            for (const char *c = l; *c && *c != '\n'; c++)
                tabs += *c == '\t';
            ck_assert_msg(tabs == 7, "record with %d fields: %.200s", tabs + 1, l);
        }
        l = strchr(l, '\n');
        if (l)
            l++;
    }
}
END_TEST

START_TEST(test_plugin_excluded_record)
{
    const char *excl = th_getenv("AEV_TEST_EXCLUDED_PLUGIN_DIR");
    const char *conf = th_write(th_tmpdir(), "aev.conf", "[plugins]\nexclude = boom\n");
    const char *out, *line;
    int st;
    setenv("AEV_CONFIG", conf, 1);
    th_set_plugin_path(excl, NULL);
    out = inspect("", &st);
    ck_assert_msg(st == 0, "exit %d: %s", st, out);
    line = th_find_line(out, th_fmt("plugin\t%s/aev_poll_boom.so", excl));
    ck_assert_msg(line != NULL, "no record for the excluded plugin in:\n%s", out);
    ck_assert_str_contains(line, "\texcluded by config");
    assert_line(out, th_fmt("config\t%s", conf), th_fmt("config\t%s", conf));
    assert_line(out, th_fmt("search\t%s", excl), th_fmt("search\t%s", excl));
}
END_TEST

START_TEST(test_try_ok)
{
    int st;
    const char *out;
    th_set_plugin_path(TESTDIR, NULL);
    out = inspect("--try --poll=fake", &st);
    ck_assert_msg(st == 0, "exit %d: %s", st, out);
    assert_line(out, "loop\tpoll=fake", "loop\tpoll=fake");
    assert_line(out, "try\tok", "try\tok");
    ck_assert_int_eq(count_prefix(out, "policy\t"), 0);
    ck_assert_int_eq(count_prefix(out, "plugin\t"), 0);
}
END_TEST

START_TEST(test_try_failure)
{
    int st;
    const char *out;
    th_set_plugin_path(TESTDIR, NULL);
    setenv("AEV_POLL", "failprobe", 1);
    out = inspect("--try", &st);
    ck_assert_msg(st == 1, "exit %d: %s", st, out);
    ck_assert_str_contains(out, th_fmt("try\tfailed\t%s\t", aev_err_name(AEV_EPLUGIN_PROBE)));
    ck_assert_str_contains(out, "detail\t");
    ck_assert_str_contains(out, "test: io_uring disabled by policy");
    ck_assert_str_contains(out, th_fmt("%s/aev_poll_failprobe.so", TESTDIR));

    setenv("AEV_POLL", "nosuch", 1);
    out = inspect("--try", &st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_contains(out, th_fmt("try\tfailed\t%s\t", aev_err_name(AEV_EPLUGIN_NOT_FOUND)));
    ck_assert_str_contains(out, th_fmt("%s/aev_poll_nosuch.so", TESTDIR));
}
END_TEST

START_TEST(test_bad_config_exit_1)
{
    const char *conf = th_write(th_tmpdir(), "aev.conf", "[policy]\nloop = sideways\n");
    const char *out;
    int st;
    out = inspect(th_fmt("--config='%s'", conf), &st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_contains(out, th_fmt("%s:2: ", conf));
    setenv("AEV_CONFIG", conf, 1);
    out = inspect("--policy", &st);
    ck_assert_int_eq(st, 1);
    ck_assert_str_contains(out, th_fmt("%s:2: ", conf));
}
END_TEST

static Suite *inspect_suite(void)
{
    Suite *s = suite_create("inspect");
    TCase *tc = th_tcase("inspect");
    tcase_add_test(tc, test_help_version_usage);
    tcase_add_test(tc, test_policy_origins);
    tcase_add_test(tc, test_policy_presets_and_defaults);
    tcase_add_test(tc, test_plugin_records);
    tcase_add_test(tc, test_plugin_excluded_record);
    tcase_add_test(tc, test_try_ok);
    tcase_add_test(tc, test_try_failure);
    tcase_add_test(tc, test_bad_config_exit_1);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return th_run_suite(inspect_suite());
}
