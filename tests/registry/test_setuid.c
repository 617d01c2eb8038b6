/* libaev registry: the AEV_* environment is ignored in set-user-ID programs.
 *
 * Runs policy_probe twice with the same hostile environment: once as is (the
 * environment must be obeyed, so the test can fail), once as a copy owned by
 * "nobody" with the set-user-ID bit, which the kernel runs in secure-execution
 * mode (the effective uid differs from the real one): there every AEV_*
 * setting must be ignored. Needs root (to give the copy away); skipped loudly
 * (exit 77) otherwise. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static char out_buf[8192];
static char conf_path[] = "/tmp/aev-setuid-conf-XXXXXX";

/* A config file that names a plugin, so its use shows in the output. */
static void write_conf(void)
{
    int fd = mkstemp(conf_path);
    ck_assert_int_ge(fd, 0);
    const char text[] = "[policy]\nexec = evilpool\n";
    ck_assert_int_eq(write(fd, text, sizeof text - 1), (int)(sizeof text - 1));
    ck_assert_int_eq(fchmod(fd, 0644), 0);
    close(fd);
}

static const char *run(const char *prog)
{
    char cmd[8600];
    write_conf();
    snprintf(cmd, sizeof cmd,
             "env AEV_LOOP=proactor AEV_POLL=select AEV_DEBUG=1 AEV_CONFIG=%s "
             "AEV_PLUGIN_PATH=/nonexistent/evil-plugins %s",
             conf_path, prog);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(out_buf, 1, sizeof out_buf - 1, f);
    out_buf[n] = '\0';
    ck_assert_int_eq(pclose(f), 0);
    unlink(conf_path);
    return out_buf;
}

static const char *probe_path(void)
{
    const char *p = getenv("AEV_TEST_POLICY_PROBE");
    ck_assert_msg(p != NULL, "AEV_TEST_POLICY_PROBE is not set");
    return p;
}

START_TEST(test_environment_obeyed_normally)
{
    const char *out = run(probe_path());
    ck_assert_msg(strstr(out, "loop=proactor\tenv AEV_LOOP"), "output:\n%s", out);
    ck_assert_msg(strstr(out, "debug=1\tenv AEV_DEBUG"), "output:\n%s", out);
    ck_assert_msg(strstr(out, "search=/nonexistent/evil-plugins"), "output:\n%s", out);
    ck_assert_msg(strstr(out, "exec=evilpool\tconfig "), "output:\n%s", out);
}
END_TEST

START_TEST(test_environment_ignored_when_setuid)
{
    char dir[] = "/tmp/aev-setuid-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chmod(dir, 0755), 0);
    char copy[4200];
    snprintf(copy, sizeof copy, "%s/policy_probe", dir);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", probe_path(), copy);
    ck_assert_int_eq(system(cmd), 0);
    struct passwd *nobody = getpwnam("nobody");
    ck_assert_ptr_nonnull(nobody);
    ck_assert_int_eq(chown(copy, nobody->pw_uid, (gid_t)-1), 0);
    ck_assert_int_eq(chmod(copy, 04755), 0);

    const char *out = run(copy);
    unlink(copy);
    rmdir(dir);
    ck_assert_msg(strstr(out, "loop=selector\tdefault"), "output:\n%s", out);
    ck_assert_msg(strstr(out, "poll=epoll,poll,select\tpreset selector (default)"), "output:\n%s", out);
    ck_assert_msg(strstr(out, "debug=0\tdefault"), "output:\n%s", out);
    ck_assert_msg(!strstr(out, "env AEV_"), "output:\n%s", out);
    ck_assert_msg(!strstr(out, "evil"), "output:\n%s", out);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
#define AEV_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AEV_TEST_ASAN 1
#endif
#endif

int main(void)
{
#ifdef AEV_TEST_ASAN
    /* LeakSanitizer dies with "fatal error" in a set-user-ID process; the plain
     * build and the valgrind run cover this test. */
    fprintf(stderr, "SKIP: AddressSanitizer/LeakSanitizer cannot run a set-user-ID program\n");
    return 77;
#endif
    if (geteuid() != 0) {
        fprintf(stderr, "SKIP: the set-user-ID check needs root to give a copy to \"nobody\"\n");
        return 77;
    }
    struct statvfs vfs;
    if (statvfs("/tmp", &vfs) == 0 && (vfs.f_flag & ST_NOSUID)) {
        fprintf(stderr, "SKIP: /tmp is mounted nosuid, so a set-user-ID copy cannot be run there\n");
        return 77;
    }
    if (!getpwnam("nobody")) {
        fprintf(stderr, "SKIP: no user \"nobody\" to own the set-user-ID copy\n");
        return 77;
    }
    Suite *s = suite_create("setuid");
    TCase *tc = tcase_create("env");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_environment_obeyed_normally);
    tcase_add_test(tc, test_environment_ignored_when_setuid);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
