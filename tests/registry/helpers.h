/* libaev tests - helpers shared by the registry, policy, config and inspect tests.
 *
 * Paths come from the environment that tests/registry/meson.build sets:
 *   AEV_TEST_PLUGIN_DIR           the test-only plugins (tests/plugins)
 *   AEV_TEST_EXCLUDED_PLUGIN_DIR  aev_poll_boom, which aborts when loaded
 *   AEV_TEST_SHADOW_PLUGIN_DIR    a fake aev_poll_select that logs "shadow select created"
 *   AEV_TEST_BUILD_PLUGIN_DIR     the real plugins of this build
 *   AEV_TEST_SYSTEM_PLUGIN_DIR    the core's built-in plugin directory
 *   AEV_TEST_TMP                  where temporary directories go
 *   AEV_INSPECT                   the aev-inspect executable
 * Every test runs in its own forked process (Check's default), so the
 * environment a test sets dies with it.
 */
#ifndef AEV_TEST_REGISTRY_HELPERS_H
#define AEV_TEST_REGISTRY_HELPERS_H

#include <check.h>
#include <stddef.h>
#include <string.h>

#include "aev/aev.h"
#include "aev/plugin.h"

/* Fails the test if $var is unset or empty; returns its value. */
const char *th_getenv(const char *var);

/* Unsets every AEV_* policy variable (AEV_LOOP, AEV_POLL, ..., AEV_CONFIG, AEV_DEBUG),
 * and points AEV_CONFIG_DIR and XDG_CONFIG_HOME at empty temporary directories,
 * so only what the test sets is seen. AEV_PLUGIN_PATH is left as meson set it. */
void th_env_reset(void);

/* A new empty directory (under $AEV_TEST_TMP), removed by th_cleanup(). */
const char *th_tmpdir(void) __attribute__((returns_nonnull));

/* Writes content to dir/rel (creating parent directories); returns the full path. */
const char *th_write(const char *dir, const char *rel, const char *content) __attribute__((returns_nonnull));

/* A printf-formatted string that lives until the test ends.
 * What the helpers return "until the test ends" (th_fmt, th_write, th_tmpdir,
 * th_find_line, th_run, th_collect_plugins) is owned by an arena the helpers
 * free from an atexit handler: callers never free it, and nothing is leaked. */
const char *th_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2), returns_nonnull));

/* Sets AEV_PLUGIN_PATH to the directories given, NULL-terminated, joined by ':'. */
void th_set_plugin_path(const char *first, ...) __attribute__((sentinel));

/* Removes the temporary directories (checked fixture teardown). */
void th_cleanup(void);

/* Captures every log message (level >= debug) as "<origin>: <message>\n" lines. */
void th_log_capture(void);
const char *th_log_text(void);

/* Runs a shell command line, returns its stdout+stderr (lives until the test ends);
 * *status gets the exit status (-1 if it did not exit normally). */
const char *th_run(const char *cmdline, int *status);

/* The record line of aev-inspect output whose first fields equal prefix, or NULL. */
const char *th_find_line(const char *output, const char *prefix);

/* A plugin as aev_plugins_foreach reported it (copied). */
typedef struct th_plugin {
    char *path, *family, *name, *reason;
    unsigned abi_major, abi_minor;
    int status, excluded;
} th_plugin_t;

/* Collects all plugins of the policy; returns the count (array lives until the test ends). */
int th_collect_plugins(const aev_policy_t *policy, th_plugin_t **out);
/* The collected plugin whose path is dir/file, or NULL. */
const th_plugin_t *th_plugin_at(const th_plugin_t *list, int n, const char *dir,
                                const char *file);

#define ck_assert_str_contains(hay, needle)                                                  \
    do {                                                                                   \
        const char *th_h_ = (hay), *th_n_ = (needle);                                      \
        ck_assert_msg(th_h_ != NULL && strstr(th_h_, th_n_) != NULL,                       \
                      "expected \"%s\" in \"%s\"", th_n_, th_h_ ? th_h_ : "(null)");       \
    } while (0)

#define ck_assert_str_lacks(hay, needle)                                                     \
    do {                                                                                   \
        const char *th_h_ = (hay), *th_n_ = (needle);                                      \
        ck_assert_msg(th_h_ == NULL || strstr(th_h_, th_n_) == NULL,                       \
                      "did not expect \"%s\" in \"%s\"", th_n_, th_h_);                    \
    } while (0)

#define ck_assert_str_starts(hay, prefix)                                                    \
    do {                                                                                   \
        const char *th_h_ = (hay), *th_p_ = (prefix);                                      \
        ck_assert_msg(th_h_ != NULL && strncmp(th_h_, th_p_, strlen(th_p_)) == 0,          \
                      "expected \"%s\" to start with \"%s\"", th_h_ ? th_h_ : "(null)",     \
                      th_p_);                                                              \
    } while (0)

/* rc equals the expected code, naming both on failure. */
#define ck_assert_aev_rc(rc, expected)                                                       \
    do {                                                                                   \
        int th_rc_ = (rc), th_ex_ = (expected);                                            \
        ck_assert_msg(th_rc_ == th_ex_, "got %d (%s), expected %d (%s); detail: %s", th_rc_, \
                      aev_err_name(th_rc_), th_ex_, aev_err_name(th_ex_),                  \
                      aev_error_detail());                                                 \
    } while (0)

/* A suite runner main(): runs s, returns non-zero on failure. */
int th_run_suite(Suite *s);

/* A tcase with th_env_reset as setup and th_cleanup as teardown. */
TCase *th_tcase(const char *name);

#endif
