/* libaev core - policy resolution: which plugin serves each family, and where
 * each choice came from.
 *
 * Sources, weakest first: built-in default (preset "selector"), config files
 * (drop-ins in name order, then the main file), environment (secure_getenv),
 * the API (aev_loop_options_t). For the poll family, the strongest source that
 * sets either poll itself or the loop preset decides (when one source sets both,
 * poll wins): AEV_LOOP=proactor beats a config's poll = epoll. The other
 * families are the same in every preset, so only their own settings count. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "loop_internal.h"

enum { K_LOOP = 0, K_POLL, K_TLS, K_DNS, K_PROC, K_EXEC, K_DEBUG, K_COUNT };

static const char *const keys[K_COUNT] = {"loop", "poll", "tls", "dns", "proc", "exec", "debug"};
static const char *const env_names[K_COUNT] = {"AEV_LOOP", "AEV_POLL", "AEV_TLS", "AEV_DNS",
                                               "AEV_PROC", "AEV_EXEC", "AEV_DEBUG"};

/* Presets: candidates for the poll family; other families share defaults. */
static const struct {
    const char *name;
    const char *poll;
} presets[] = {
    {"selector", "epoll,poll,select"},
    {"proactor", "io_uring"},
    {"auto", "io_uring,epoll,poll,select"},
};
static const char *const family_defaults[K_COUNT] = {NULL, NULL, "openssl", "system", "posix", "threads", NULL};

struct aev_policy {
    aev_policy_choice_t choices[K_COUNT];
    char *owned[K_COUNT * 2]; /* value and origin_text strings */
    aev__config_t config;
    char **dirs;
    size_t ndirs;
    char **excludes;
    size_t nexcludes;
};

const char *aev_family_name(int family)
{
    return family >= AEV_FAMILY_POLL && family <= AEV_FAMILY_EXEC ? keys[family] : NULL;
}

static int family_index(const char *name, size_t len)
{
    for (int i = K_POLL; i <= K_EXEC; i++)
        if (strlen(keys[i]) == len && strncmp(keys[i], name, len) == 0)
            return i;
    return -1;
}

static int valid_plugin_name(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* "epoll,poll" -> every item a valid plugin name. */
static int valid_name_list(const char *list)
{
    const char *p = list;
    if (!*p)
        return 0;
    for (;;) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        if (!valid_plugin_name(start, (size_t)(p - start)))
            return 0;
        while (*p == ' ')
            p++;
        if (!*p)
            return 1;
        if (*p != ',')
            return 0;
        p++;
    }
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int valid_preset(const char *v)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(v, presets[i].name) == 0)
            return 1;
    return 0;
}

/* Checks one setting's value; writes the reason into why. */
static int check_value(int k, const char *value, char *why, size_t size)
{
    int b;
    if (k == K_LOOP && !valid_preset(value)) {
        snprintf(why, size, "loop = \"%s\": expected selector, proactor or auto", value);
        return -1;
    }
    if (k == K_DEBUG && parse_bool(value, &b) < 0) {
        snprintf(why, size, "debug = \"%s\": expected 0/1, true/false, yes/no or on/off", value);
        return -1;
    }
    if (k >= K_POLL && k <= K_EXEC && !valid_name_list(value)) {
        snprintf(why, size, "%s = \"%s\": expected a plugin name or a comma list of names ([a-z0-9_])",
                 keys[k], value);
        return -1;
    }
    return 0;
}

int aev__config_check_section(const char *file, int line, const char *section)
{
    if (strcmp(section, "policy") == 0 || strcmp(section, "plugins") == 0)
        return 0;
    const char *dot = strchr(section, '.');
    if (dot && family_index(section, (size_t)(dot - section)) >= 0 &&
        valid_plugin_name(dot + 1, strlen(dot + 1)))
        return 0;
    aev__set_detail("%s:%d: unknown section [%s] (expected [policy], [plugins] or "
                    "[<family>.<plugin>] with family poll, tls, dns, proc or exec)",
                    file, line, section);
    return AEV_ECONFIG;
}

int aev__config_check_entry(const char *file, int line, const char *section, const char *key,
                            const char *value)
{
    char why[512];
    if (strcmp(section, "policy") == 0) {
        for (int k = 0; k < K_COUNT; k++) {
            if (strcmp(key, keys[k]) == 0) {
                if (check_value(k, value, why, sizeof why) < 0) {
                    aev__set_detail("%s:%d: %s", file, line, why);
                    return AEV_ECONFIG;
                }
                return 0;
            }
        }
        aev__set_detail("%s:%d: unknown key \"%s\" in [policy] (expected loop, poll, tls, dns, "
                        "proc, exec or debug)", file, line, key);
        return AEV_ECONFIG;
    }
    if (strcmp(section, "plugins") == 0) {
        if (strcmp(key, "path") == 0 || strcmp(key, "exclude") == 0)
            return 0;
        aev__set_detail("%s:%d: unknown key \"%s\" in [plugins] (expected path or exclude)", file,
                        line, key);
        return AEV_ECONFIG;
    }
    return 0; /* plugin sections hold the plugin's own options */
}

/* ---- building the policy --------------------------------------------------- */

static int set_choice(aev_policy_t *p, int k, const char *value, int origin, const char *origin_text)
{
    char *v = strdup(value);
    char *o = strdup(origin_text);
    if (!v || !o) {
        free(v);
        free(o);
        return -ENOMEM;
    }
    free(p->owned[k * 2]);
    free(p->owned[k * 2 + 1]);
    p->owned[k * 2] = v;
    p->owned[k * 2 + 1] = o;
    p->choices[k].key = keys[k];
    p->choices[k].value = v;
    p->choices[k].origin = origin;
    p->choices[k].origin_text = o;
    return 0;
}

static int push_str(char ***arr, size_t *n, const char *s, size_t len)
{
    char **na = realloc(*arr, (*n + 1) * sizeof *na);
    if (!na)
        return -ENOMEM;
    *arr = na;
    if (!(na[*n] = strndup(s, len)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

static int push_split(char ***arr, size_t *n, const char *list, char sep)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, sep);
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && p[0] == ' ') {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        if (len) {
            int rc = push_str(arr, n, p, len);
            if (rc < 0)
                return rc;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int read_config(aev_policy_t *p, const aev_loop_options_t *opts)
{
    const char *confdir = secure_getenv("AEV_CONFIG_DIR");
    char dir[4000], path[4200];
    snprintf(dir, sizeof dir, "%s", confdir && *confdir ? confdir : AEV_SYSCONFDIR "/aev");

    /* Drop-ins first: they are package defaults; the main file wins over them. */
    snprintf(path, sizeof path, "%s/aev.conf.d", dir);
    int rc = aev__config_read_dropins(&p->config, path);
    if (rc < 0)
        return rc;

    if (opts && opts->config_file)
        return aev__config_read_file(&p->config, opts->config_file, 1);
    const char *env = secure_getenv("AEV_CONFIG");
    if (env && *env)
        return aev__config_read_file(&p->config, env, 1);
    const char *xdg = secure_getenv("XDG_CONFIG_HOME");
    const char *home = secure_getenv("HOME");
    if (xdg && *xdg)
        snprintf(path, sizeof path, "%s/aev/aev.conf", xdg);
    else if (home && *home)
        snprintf(path, sizeof path, "%s/.config/aev/aev.conf", home);
    else
        path[0] = '\0';
    if (path[0]) {
        size_t before = p->config.nfiles;
        rc = aev__config_read_file(&p->config, path, 0);
        if (rc < 0 || p->config.nfiles > before)
            return rc; /* the user's file replaces the system one */
    }
    snprintf(path, sizeof path, "%s/aev.conf", dir);
    return aev__config_read_file(&p->config, path, 0);
}

static const char *opt_field(const aev_loop_options_t *o, int k)
{
    if (!o)
        return NULL;
    switch (k) {
    case K_LOOP: return o->loop;
    case K_POLL: return o->poll;
    case K_TLS: return o->tls;
    case K_DNS: return o->dns;
    case K_PROC: return o->proc;
    case K_EXEC: return o->exec;
    case K_DEBUG: return o->debug > 0 ? "1" : o->debug < 0 ? "0" : NULL;
    default: return NULL;
    }
}

int aev_policy_resolve(const aev_loop_options_t *opts, aev_policy_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    aev_policy_t *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int rc;
    /* explicit[k]: the strongest explicit setting of k: origin and text (NULL: none) */
    const char *val[K_COUNT] = {0};
    int origin[K_COUNT];
    char origin_text[K_COUNT][4200];
    for (int k = 0; k < K_COUNT; k++)
        origin[k] = -1;

    rc = read_config(p, opts);
    if (rc < 0)
        goto fail;
    for (int k = 0; k < K_COUNT; k++) {
        const aev__config_entry_t *e = aev__config_find(&p->config, "policy", keys[k]);
        if (e) {
            val[k] = e->value;
            origin[k] = AEV_ORIGIN_CONFIG;
            snprintf(origin_text[k], sizeof origin_text[k], "config %s:%d", e->file, e->line);
        }
    }
    for (int k = 0; k < K_COUNT; k++) {
        const char *env = secure_getenv(env_names[k]);
        if (k == K_DEBUG && env && *env) {
            /* AEV_DEBUG: any non-empty value other than 0 turns debug on */
            val[k] = *env && strcmp(env, "0") != 0 ? "1" : "0";
        } else if (env && *env) {
            char why[512];
            if (check_value(k, env, why, sizeof why) < 0) {
                aev__set_detail("environment %s: %s", env_names[k], why);
                rc = AEV_ECONFIG;
                goto fail;
            }
            val[k] = env;
        } else {
            continue;
        }
        origin[k] = AEV_ORIGIN_ENV;
        snprintf(origin_text[k], sizeof origin_text[k], "env %s", env_names[k]);
    }
    for (int k = 0; k < K_COUNT; k++) {
        const char *a = opt_field(opts, k);
        if (!a)
            continue;
        char why[512];
        if (check_value(k, a, why, sizeof why) < 0) {
            aev__set_detail("argument: %s", why);
            rc = -EINVAL;
            goto fail;
        }
        val[k] = a;
        origin[k] = AEV_ORIGIN_ARGUMENT;
        snprintf(origin_text[k], sizeof origin_text[k], "argument");
    }

    /* the preset */
    if (val[K_LOOP])
        rc = set_choice(p, K_LOOP, val[K_LOOP], origin[K_LOOP], origin_text[K_LOOP]);
    else
        rc = set_choice(p, K_LOOP, "selector", AEV_ORIGIN_DEFAULT, "default");
    if (rc < 0)
        goto fail;
    const char *preset = p->choices[K_LOOP].value;
    char preset_text[64];
    snprintf(preset_text, sizeof preset_text, "preset %s%s", preset,
             p->choices[K_LOOP].origin == AEV_ORIGIN_DEFAULT ? " (default)" : "");

    /* poll: the preset speaks for it, so a stronger preset beats a weaker poll setting
     * (AEV_LOOP=proactor wins over a config's poll = epoll); on a tie the family wins. */
    if (val[K_POLL] && origin[K_POLL] >= p->choices[K_LOOP].origin) {
        rc = set_choice(p, K_POLL, val[K_POLL], origin[K_POLL], origin_text[K_POLL]);
    } else {
        const char *v = presets[0].poll;
        for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
            if (strcmp(preset, presets[i].name) == 0)
                v = presets[i].poll;
        rc = set_choice(p, K_POLL, v, AEV_ORIGIN_PRESET, preset_text);
    }
    if (rc < 0)
        goto fail;
    /* the other families are the same in every preset: only their own settings count */
    for (int k = K_TLS; k <= K_EXEC; k++) {
        rc = val[k] ? set_choice(p, k, val[k], origin[k], origin_text[k])
                    : set_choice(p, k, family_defaults[k], AEV_ORIGIN_DEFAULT, "default");
        if (rc < 0)
            goto fail;
    }
    int dbg = 0;
    if (val[K_DEBUG])
        parse_bool(val[K_DEBUG], &dbg);
    rc = val[K_DEBUG] ? set_choice(p, K_DEBUG, dbg ? "1" : "0", origin[K_DEBUG], origin_text[K_DEBUG])
                      : set_choice(p, K_DEBUG, "0", AEV_ORIGIN_DEFAULT, "default");
    if (rc < 0)
        goto fail;

    /* search path: AEV_PLUGIN_PATH, then [plugins] path, then the built-in dir */
    const char *pp = secure_getenv("AEV_PLUGIN_PATH");
    if (pp && (rc = push_split(&p->dirs, &p->ndirs, pp, ':')) < 0)
        goto fail;
    const aev__config_entry_t *e = aev__config_find(&p->config, "plugins", "path");
    if (e && (rc = push_split(&p->dirs, &p->ndirs, e->value, ':')) < 0)
        goto fail;
    if ((rc = push_str(&p->dirs, &p->ndirs, AEV_PLUGIN_DIR, strlen(AEV_PLUGIN_DIR))) < 0)
        goto fail;
    e = aev__config_find(&p->config, "plugins", "exclude");
    if (e && (rc = push_split(&p->excludes, &p->nexcludes, e->value, ',')) < 0)
        goto fail;

    *out = p;
    return 0;
fail:
    aev_policy_free(p);
    return rc;
}

void aev_policy_free(aev_policy_t *p)
{
    if (!p)
        return;
    for (int i = 0; i < K_COUNT * 2; i++)
        free(p->owned[i]);
    aev__config_free(&p->config);
    for (size_t i = 0; i < p->ndirs; i++)
        free(p->dirs[i]);
    free(p->dirs);
    for (size_t i = 0; i < p->nexcludes; i++)
        free(p->excludes[i]);
    free(p->excludes);
    free(p);
}

int aev_policy_count(const aev_policy_t *p)
{
    return p ? K_COUNT : 0;
}

const aev_policy_choice_t *aev_policy_at(const aev_policy_t *p, int i)
{
    return p && i >= 0 && i < K_COUNT ? &p->choices[i] : NULL;
}

const aev_policy_choice_t *aev_policy_get(const aev_policy_t *p, const char *key)
{
    if (!p || !key)
        return NULL;
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(keys[k], key) == 0)
            return &p->choices[k];
    return NULL;
}

const char *aev_policy_config_file(const aev_policy_t *p, int i)
{
    return p && i >= 0 && (size_t)i < p->config.nfiles ? p->config.files[i] : NULL;
}

const char *aev_policy_search_dir(const aev_policy_t *p, int i)
{
    return p && i >= 0 && (size_t)i < p->ndirs ? p->dirs[i] : NULL;
}

const char *aev_policy_plugin_option(const aev_policy_t *p, const char *family, const char *name,
                                     const char *key)
{
    if (!p || !family || !name || !key)
        return NULL;
    char section[256];
    snprintf(section, sizeof section, "%s.%s", family, name);
    const aev__config_entry_t *e = aev__config_find(&p->config, section, key);
    return e ? e->value : NULL;
}

int aev__policy_debug(const aev_policy_t *p)
{
    return strcmp(p->choices[K_DEBUG].value, "1") == 0;
}

/* 1 if the config excludes plugin name of family (as "name" or "family.name"). */
int aev__policy_excluded(const aev_policy_t *p, const char *family, const char *name)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", family, name);
    for (size_t i = 0; i < p->nexcludes; i++)
        if (strcmp(p->excludes[i], name) == 0 || strcmp(p->excludes[i], full) == 0)
            return 1;
    return 0;
}
