/* libaev tests - policy resolution: presets, precedence (argument > env >
 * config > preset > default) and the exact origin of every setting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

static const char *const keys[] = {"loop", "poll", "tls", "dns", "proc", "exec", "debug"};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

static aev_policy_t *resolve(const aev_loop_options_t *opts)
{
    aev_policy_t *policy = NULL;
    ck_assert_aev_rc(aev_policy_resolve(opts, &policy), 0);
    ck_assert_ptr_nonnull(policy);
    return policy;
}

static void check(const aev_policy_t *policy, const char *key, const char *value, int origin,
                  const char *origin_text)
{
    const aev_policy_choice_t *c = aev_policy_get(policy, key);
    ck_assert_msg(c != NULL, "no setting %s", key);
    ck_assert_str_eq(c->key, key);
    ck_assert_msg(c->value != NULL && strcmp(c->value, value) == 0,
                  "%s: value \"%s\", expected \"%s\"", key, c->value ? c->value : "(null)",
                  value);
    ck_assert_msg(c->origin_text != NULL && strcmp(c->origin_text, origin_text) == 0,
                  "%s=%s: origin \"%s\", expected \"%s\"", key, value,
                  c->origin_text ? c->origin_text : "(null)", origin_text);
    ck_assert_msg(c->origin == origin, "%s=%s: origin %d, expected %d", key, value, c->origin,
                  origin);
}

START_TEST(test_builtin_defaults)
{
    aev_policy_t *p = resolve(NULL);
    ck_assert_int_eq(aev_policy_count(p), N_KEYS);
    for (int i = 0; i < N_KEYS; i++) {
        const aev_policy_choice_t *c = aev_policy_at(p, i);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(c->key, keys[i]);
        ck_assert_ptr_eq(aev_policy_get(p, keys[i]), c);
    }
    ck_assert_ptr_null(aev_policy_get(p, "nosuch"));
    check(p, "loop", "selector", AEV_ORIGIN_DEFAULT, "default");
    check(p, "poll", "epoll,poll,select", AEV_ORIGIN_PRESET, "preset selector (default)");
    check(p, "debug", "0", AEV_ORIGIN_DEFAULT, "default");
    ck_assert_ptr_null(aev_policy_config_file(p, 0));
    aev_policy_free(p);
}
END_TEST

/* The families a preset says nothing about (every preset uses the same ones) keep their
 * built-in defaults, with origin "default", whatever the preset and wherever it came from. */
START_TEST(test_other_family_defaults)
{
    static const char *const presets[] = {NULL, "selector", "proactor", "auto"};
    for (int i = 0; i < 4; i++) {
        aev_policy_t *p;
        if (presets[i])
            setenv("AEV_LOOP", presets[i], 1);
        p = resolve(NULL);
        check(p, "tls", "openssl", AEV_ORIGIN_DEFAULT, "default");
        check(p, "dns", "system", AEV_ORIGIN_DEFAULT, "default");
        check(p, "proc", "posix", AEV_ORIGIN_DEFAULT, "default");
        check(p, "exec", "threads", AEV_ORIGIN_DEFAULT, "default");
        aev_policy_free(p);
    }
}
END_TEST

START_TEST(test_presets_from_env)
{
    aev_policy_t *p;

    setenv("AEV_LOOP", "proactor", 1);
    p = resolve(NULL);
    check(p, "loop", "proactor", AEV_ORIGIN_ENV, "env AEV_LOOP");
    check(p, "poll", "io_uring", AEV_ORIGIN_PRESET, "preset proactor");
    aev_policy_free(p);

    setenv("AEV_LOOP", "auto", 1);
    p = resolve(NULL);
    check(p, "loop", "auto", AEV_ORIGIN_ENV, "env AEV_LOOP");
    check(p, "poll", "io_uring,epoll,poll,select", AEV_ORIGIN_PRESET, "preset auto");
    aev_policy_free(p);

    setenv("AEV_LOOP", "selector", 1);
    p = resolve(NULL);
    check(p, "loop", "selector", AEV_ORIGIN_ENV, "env AEV_LOOP");
    check(p, "poll", "epoll,poll,select", AEV_ORIGIN_PRESET, "preset selector");
    aev_policy_free(p);
}
END_TEST

START_TEST(test_preset_from_argument)
{
    aev_loop_options_t opts = {0};
    aev_policy_t *p;
    opts.loop = "auto";
    setenv("AEV_LOOP", "proactor", 1);
    p = resolve(&opts);
    check(p, "loop", "auto", AEV_ORIGIN_ARGUMENT, "argument");
    check(p, "poll", "io_uring,epoll,poll,select", AEV_ORIGIN_PRESET, "preset auto");
    aev_policy_free(p);
}
END_TEST

START_TEST(test_env_per_family)
{
    static const char *const fam[] = {"poll", "tls", "dns", "proc", "exec"};
    static const char *const var[] = {"AEV_POLL", "AEV_TLS", "AEV_DNS", "AEV_PROC", "AEV_EXEC"};
    aev_policy_t *p;
    for (int i = 0; i < 5; i++)
        setenv(var[i], th_fmt("x%d,y%d", i, i), 1);
    p = resolve(NULL);
    for (int i = 0; i < 5; i++)
        check(p, fam[i], th_fmt("x%d,y%d", i, i), AEV_ORIGIN_ENV, th_fmt("env %s", var[i]));
    check(p, "loop", "selector", AEV_ORIGIN_DEFAULT, "default");
    aev_policy_free(p);
}
END_TEST

/* A config file whose settings sit on known lines. */
static const char *write_config(void)
{
    return th_write(th_tmpdir(), "aev.conf",
                    "# test config\n"          /* 1 */
                    "\n"                       /* 2 */
                    "[policy]\n"               /* 3 */
                    "; a comment\n"            /* 4 */
                    "poll = select\n"          /* 5 */
                    "loop = auto\n"            /* 6 */
                    "tls = faketls\n"          /* 7 */
                    "  dns   =   c_ares  \n"   /* 8 */
                    "debug = yes\n"            /* 9 */
                    "\n"                       /* 10 */
                    "[poll.fake]\n"            /* 11 */
                    "marker = x\n");           /* 12 */
}

START_TEST(test_config_origin)
{
    const char *conf = write_config();
    aev_policy_t *p;
    setenv("AEV_CONFIG", conf, 1);
    p = resolve(NULL);
    check(p, "poll", "select", AEV_ORIGIN_CONFIG, th_fmt("config %s:5", conf));
    check(p, "loop", "auto", AEV_ORIGIN_CONFIG, th_fmt("config %s:6", conf));
    check(p, "tls", "faketls", AEV_ORIGIN_CONFIG, th_fmt("config %s:7", conf));
    check(p, "dns", "c_ares", AEV_ORIGIN_CONFIG, th_fmt("config %s:8", conf));
    check(p, "debug", "1", AEV_ORIGIN_CONFIG, th_fmt("config %s:9", conf));
    ck_assert_str_eq(aev_policy_config_file(p, 0), conf);
    ck_assert_ptr_null(aev_policy_config_file(p, 1));
    aev_policy_free(p);
}
END_TEST

START_TEST(test_precedence_ladder)
{
    const char *conf = write_config();
    aev_loop_options_t opts = {0};
    aev_policy_t *p;

    /* config beats the preset (even the config's own preset) */
    setenv("AEV_CONFIG", conf, 1);
    p = resolve(NULL);
    check(p, "poll", "select", AEV_ORIGIN_CONFIG, th_fmt("config %s:5", conf));
    aev_policy_free(p);

    /* env beats config, key by key (the preset interplay is test_preset_*) */
    setenv("AEV_POLL", "poll", 1);
    setenv("AEV_DNS", "envdns", 1);
    setenv("AEV_DEBUG", "0", 1);
    p = resolve(NULL);
    check(p, "poll", "poll", AEV_ORIGIN_ENV, "env AEV_POLL");
    check(p, "dns", "envdns", AEV_ORIGIN_ENV, "env AEV_DNS");
    check(p, "loop", "auto", AEV_ORIGIN_CONFIG, th_fmt("config %s:6", conf));
    check(p, "tls", "faketls", AEV_ORIGIN_CONFIG, th_fmt("config %s:7", conf));
    check(p, "debug", "0", AEV_ORIGIN_ENV, "env AEV_DEBUG");
    aev_policy_free(p);

    /* argument beats env */
    opts.poll = "epoll";
    opts.tls = "othertls";
    opts.debug = 1;
    p = resolve(&opts);
    check(p, "poll", "epoll", AEV_ORIGIN_ARGUMENT, "argument");
    check(p, "tls", "othertls", AEV_ORIGIN_ARGUMENT, "argument");
    check(p, "dns", "envdns", AEV_ORIGIN_ENV, "env AEV_DNS");
    check(p, "loop", "auto", AEV_ORIGIN_CONFIG, th_fmt("config %s:6", conf));
    check(p, "debug", "1", AEV_ORIGIN_ARGUMENT, "argument");
    aev_policy_free(p);

    setenv("AEV_LOOP", "selector", 1);
    opts.loop = "proactor";
    p = resolve(&opts);
    check(p, "loop", "proactor", AEV_ORIGIN_ARGUMENT, "argument");
    aev_policy_free(p);
    opts.loop = NULL;

    opts.debug = -1;
    setenv("AEV_DEBUG", "1", 1);
    p = resolve(&opts);
    check(p, "debug", "0", AEV_ORIGIN_ARGUMENT, "argument");
    aev_policy_free(p);
}
END_TEST

START_TEST(test_preset_is_below_family_settings)
{
    /* The preset speaks for the poll family only: a preset from a stronger source
     * (argument, env) replaces a poll list named by a weaker one (config), while
     * tls/dns/proc/exec keep what any source named, since every preset agrees on them.
     * When one source names both the preset and poll, poll wins. */
    const char *conf = write_config();
    aev_loop_options_t opts = {0};
    aev_policy_t *p;

    setenv("AEV_CONFIG", conf, 1);

    setenv("AEV_LOOP", "proactor", 1); /* env preset vs config families */
    p = resolve(NULL);
    check(p, "loop", "proactor", AEV_ORIGIN_ENV, "env AEV_LOOP");
    check(p, "poll", "io_uring", AEV_ORIGIN_PRESET, "preset proactor");
    check(p, "tls", "faketls", AEV_ORIGIN_CONFIG, th_fmt("config %s:7", conf));
    aev_policy_free(p);

    opts.loop = "proactor"; /* argument preset vs config families */
    p = resolve(&opts);
    check(p, "loop", "proactor", AEV_ORIGIN_ARGUMENT, "argument");
    check(p, "poll", "io_uring", AEV_ORIGIN_PRESET, "preset proactor");
    check(p, "dns", "c_ares", AEV_ORIGIN_CONFIG, th_fmt("config %s:8", conf));
    aev_policy_free(p);

    unsetenv("AEV_CONFIG"); /* argument preset vs env family */
    setenv("AEV_POLL", "poll", 1);
    p = resolve(&opts);
    check(p, "poll", "io_uring", AEV_ORIGIN_PRESET, "preset proactor");
    aev_policy_free(p);

    unsetenv("AEV_LOOP"); /* same source names both: poll wins */
    opts.poll = "select";
    p = resolve(&opts);
    check(p, "loop", "proactor", AEV_ORIGIN_ARGUMENT, "argument");
    check(p, "poll", "select", AEV_ORIGIN_ARGUMENT, "argument");
    aev_policy_free(p);
}
END_TEST

START_TEST(test_debug_env)
{
    aev_policy_t *p;
    setenv("AEV_DEBUG", "1", 1);
    p = resolve(NULL);
    check(p, "debug", "1", AEV_ORIGIN_ENV, "env AEV_DEBUG");
    aev_policy_free(p);
}
END_TEST

START_TEST(test_config_file_argument)
{
    const char *a = th_write(th_tmpdir(), "a.conf", "[policy]\npoll = select\n");
    const char *b = th_write(th_tmpdir(), "b.conf", "\n[policy]\n\npoll = poll\n");
    aev_loop_options_t opts = {0};
    aev_policy_t *p;

    setenv("AEV_CONFIG", a, 1);
    opts.config_file = b;
    p = resolve(&opts);
    check(p, "poll", "poll", AEV_ORIGIN_CONFIG, th_fmt("config %s:4", b));
    for (int i = 0; aev_policy_config_file(p, i) != NULL; i++)
        ck_assert_str_ne(aev_policy_config_file(p, i), a);
    aev_policy_free(p);
}
END_TEST

START_TEST(test_loop_follows_policy)
{
    /* The loop gets what the policy says: argument over env. */
    aev_loop_options_t opts = {0};
    aev_loop_t *loop = NULL;
    th_set_plugin_path(th_getenv("AEV_TEST_PLUGIN_DIR"), NULL);
    setenv("AEV_POLL", "fake", 1);
    ck_assert_aev_rc(aev_loop_new(NULL, &loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "poll"), "fake");
    aev_loop_close(loop);
    aev_loop_free(loop);

    setenv("AEV_POLL", "nosuch", 1);
    opts.poll = "fake";
    ck_assert_aev_rc(aev_loop_new(&opts, &loop), 0);
    ck_assert_str_eq(aev_loop_plugin_name(loop, "poll"), "fake");
    aev_loop_close(loop);
    aev_loop_free(loop);
}
END_TEST

START_TEST(test_policy_resolve_does_not_load_plugins)
{
    /* Resolving names plugins; it does not open them (boom aborts when loaded). */
    aev_policy_t *p;
    th_set_plugin_path(th_getenv("AEV_TEST_EXCLUDED_PLUGIN_DIR"), NULL);
    setenv("AEV_POLL", "boom", 1);
    p = resolve(NULL);
    check(p, "poll", "boom", AEV_ORIGIN_ENV, "env AEV_POLL");
    aev_policy_free(p);
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = th_tcase("policy");
    tcase_add_test(tc, test_builtin_defaults);
    tcase_add_test(tc, test_other_family_defaults);
    tcase_add_test(tc, test_presets_from_env);
    tcase_add_test(tc, test_preset_from_argument);
    tcase_add_test(tc, test_env_per_family);
    tcase_add_test(tc, test_config_origin);
    tcase_add_test(tc, test_precedence_ladder);
    tcase_add_test(tc, test_preset_is_below_family_settings);
    tcase_add_test(tc, test_debug_env);
    tcase_add_test(tc, test_config_file_argument);
    tcase_add_test(tc, test_loop_follows_policy);
    tcase_add_test(tc, test_policy_resolve_does_not_load_plugins);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return th_run_suite(policy_suite());
}
