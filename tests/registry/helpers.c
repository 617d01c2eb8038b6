/* libaev tests - helpers for the registry tests (see helpers.h). */
#include "helpers.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TH_MAX_DIRS 32

static char *tmpdirs[TH_MAX_DIRS];
static int n_tmpdirs;


const char *th_getenv(const char *var)
{
    const char *v = getenv(var);
    ck_assert_msg(v != NULL && *v != '\0', "environment variable %s is not set (run via meson test)",
                  var);
    return v;
}

/* ---- the arena ------------------------------------------------------------ */

/* Memory the helpers hand out "until the test ends" (th_fmt strings, th_run
 * output, th_collect_plugins lists) is kept here and freed by an atexit handler,
 * so every test process ends with nothing lost: a test that passes or fails
 * (Check's child exits through exit()) frees it all, and LeakSanitizer and
 * valgrind memcheck, which look after the atexit handlers ran, see no leak. */
static void **arena;
static size_t arena_len, arena_cap;
static int arena_registered;

static void arena_free(void)
{
    for (size_t i = 0; i < arena_len; i++)
        free(arena[i]);
    free(arena);
    arena = NULL;
    arena_len = arena_cap = 0;
    arena_registered = 0; /* anything kept after this gets a handler of its own */
}

/* Takes ownership of p (malloc'd, may be NULL) until the process exits; returns p. */
static void *arena_keep(void *p)
{
    if (p == NULL)
        return NULL;
    if (!arena_registered) {
        ck_assert_int_eq(atexit(arena_free), 0);
        arena_registered = 1;
    }
    if (arena_len == arena_cap) {
        size_t cap = arena_cap ? arena_cap * 2 : 64;
        void **n = realloc(arena, cap * sizeof *n);
        if (n == NULL)
            free(p);
        ck_assert_ptr_nonnull(n);
        arena = n;
        arena_cap = cap;
    }
    arena[arena_len++] = p;
    return p;
}

const char *th_fmt(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int r;
    va_start(ap, fmt);
    r = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(r, 0);
    return arena_keep(s);
}

void th_env_reset(void)
{
    static const char *const vars[] = {"AEV_LOOP", "AEV_POLL", "AEV_TLS",    "AEV_DNS",
                                       "AEV_PROC", "AEV_EXEC", "AEV_CONFIG", "AEV_DEBUG"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    const char *empty = th_tmpdir();
    setenv("AEV_CONFIG_DIR", th_fmt("%s/sysconf", empty), 1);
    setenv("XDG_CONFIG_HOME", th_fmt("%s/xdg", empty), 1);
}

const char *th_tmpdir(void)
{
    const char *base = getenv("AEV_TEST_TMP");
    char *tmpl;
    if (base == NULL || *base == '\0')
        base = "/tmp";
    mkdir(base, 0777);
    tmpl = (char *)th_fmt("%s/aevtest-XXXXXX", base);
    ck_assert_msg(mkdtemp(tmpl) != NULL, "mkdtemp %s: %s", tmpl, strerror(errno));
    ck_assert_int_lt(n_tmpdirs, TH_MAX_DIRS);
    tmpdirs[n_tmpdirs++] = tmpl;
    return tmpl;
}

static void mkparents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0777);
            *p = '/';
        }
    }
}

const char *th_write(const char *dir, const char *rel, const char *content)
{
    char *path = (char *)th_fmt("%s/%s", dir, rel);
    FILE *f;
    mkparents(path);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(content, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

void th_set_plugin_path(const char *first, ...)
{
    va_list ap;
    size_t len = 0;
    char *buf;
    const char *d;

    va_start(ap, first);
    for (d = first; d != NULL; d = va_arg(ap, const char *))
        len += strlen(d) + 1;
    va_end(ap);
    buf = calloc(1, len + 1);
    ck_assert_ptr_nonnull(buf);
    va_start(ap, first);
    for (d = first; d != NULL; d = va_arg(ap, const char *)) {
        if (*buf)
            strcat(buf, ":");
        strcat(buf, d);
    }
    va_end(ap);
    setenv("AEV_PLUGIN_PATH", buf, 1);
    free(buf);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    remove(path);
    return 0;
}

void th_cleanup(void)
{
    for (int i = 0; i < n_tmpdirs; i++)
        nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    n_tmpdirs = 0;
}

/* ---- log capture --------------------------------------------------------- */

static char *logbuf;
static size_t loglen;

static void log_sink(int level, const char *origin, const char *message, void *userdata)
{
    (void)level, (void)userdata;
    size_t add = strlen(origin ? origin : "") + strlen(message ? message : "") + 3;
    char *n = realloc(logbuf, loglen + add + 1);
    if (n == NULL)
        return;
    logbuf = n;
    loglen += (size_t)sprintf(logbuf + loglen, "%s: %s\n", origin ? origin : "",
                              message ? message : "");
}

void th_log_capture(void)
{
    aev_log_set_handler(log_sink, NULL, AEV_LOG_DEBUG);
}

const char *th_log_text(void)
{
    return logbuf != NULL ? logbuf : "";
}

/* ---- running programs ------------------------------------------------------ */

const char *th_run(const char *cmdline, int *status)
{
    FILE *p = popen(th_fmt("%s 2>&1", cmdline), "r");
    char *out = NULL;
    size_t len = 0, cap = 0, r;
    int st;

    ck_assert_msg(p != NULL, "popen %s: %s", cmdline, strerror(errno));
    do {
        if (cap - len < 4096) {
            char *n;
            cap = cap ? cap * 2 : 8192;
            n = realloc(out, cap);
            if (n == NULL)
                free(out);
            ck_assert_ptr_nonnull(n);
            out = n;
        }
        r = fread(out + len, 1, cap - len - 1, p);
        len += r;
    } while (r > 0);
    out[len] = '\0';
    st = pclose(p);
    *status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    return arena_keep(out);
}

const char *th_find_line(const char *output, const char *prefix)
{
    size_t plen = strlen(prefix);
    const char *line = output;
    while (line != NULL && *line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len >= plen && strncmp(line, prefix, plen) == 0 &&
            (len == plen || line[plen] == '\t'))
            return th_fmt("%.*s", (int)len, line);
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* ---- plugin listing ------------------------------------------------------ */

struct collect {
    th_plugin_t *list;
    int n;
};

/* The strings and the array are kept in the arena (they live until the test ends). */
static int collect_one(const aev_plugin_info_t *info, void *userdata)
{
    struct collect *c = userdata;
    th_plugin_t *p, *n;
    n = realloc(c->list, (size_t)(c->n + 1) * sizeof *c->list);
    ck_assert_ptr_nonnull(n);
    c->list = n;
    p = &c->list[c->n++];
    p->path = (char *)th_fmt("%s", info->path != NULL ? info->path : "");
    p->family = (char *)th_fmt("%s", info->family != NULL ? info->family : "");
    p->name = (char *)th_fmt("%s", info->name != NULL ? info->name : "");
    p->reason = (char *)th_fmt("%s", info->reason != NULL ? info->reason : "");
    p->abi_major = info->abi_major;
    p->abi_minor = info->abi_minor;
    p->status = info->status;
    p->excluded = info->excluded;
    return 0;
}

int th_collect_plugins(const aev_policy_t *policy, th_plugin_t **out)
{
    struct collect c = {NULL, 0};
    int rc = aev_plugins_foreach(policy, collect_one, &c);
    arena_keep(c.list);
    ck_assert_msg(rc == 0, "aev_plugins_foreach: %d (%s) %s", rc, aev_err_name(rc),
                  aev_error_detail());
    *out = c.list;
    return c.n;
}

const th_plugin_t *th_plugin_at(const th_plugin_t *list, int n, const char *dir, const char *file)
{
    const char *path = th_fmt("%s/%s", dir, file);
    for (int i = 0; i < n; i++)
        if (strcmp(list[i].path, path) == 0)
            return &list[i];
    return NULL;
}

/* ---- running suites -------------------------------------------------------- */

TCase *th_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, th_env_reset, th_cleanup);
    tcase_set_timeout(tc, 30);
    return tc;
}

int th_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
