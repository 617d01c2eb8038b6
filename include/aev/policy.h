/* libaev - policies and the plugin registry, as aev-inspect shows them.
 *
 * A policy names one plugin (or an ordered list of candidates) per family.
 * Highest wins: the API (aev_loop_options_t), the environment (AEV_LOOP,
 * AEV_POLL, ...; ignored in setuid/setgid processes), the config file, the
 * built-in default (preset "selector"). docs/operators.md has the details.
 */
#ifndef AEV_POLICY_H
#define AEV_POLICY_H

#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** Where a setting came from, strongest last. */
enum aev_origin {
    AEV_ORIGIN_DEFAULT = 0,  /* built-in default */
    AEV_ORIGIN_PRESET = 1,   /* implied by the loop preset (selector/proactor/auto) */
    AEV_ORIGIN_CONFIG = 2,   /* a config file line */
    AEV_ORIGIN_ENV = 3,      /* an AEV_* environment variable */
    AEV_ORIGIN_ARGUMENT = 4  /* aev_loop_options_t */
};

/* One resolved setting. */
typedef struct aev_policy_choice {
    const char *key;         /* "loop", "poll", "tls", "dns", "proc", "exec", "debug" */
    const char *value;       /* "selector", "epoll,poll,select", "1" ... */
    int origin;              /* enum aev_origin */
    const char *origin_text; /* "argument", "env AEV_POLL", "config /etc/aev/aev.conf:3",
                                "preset selector (default)", "default" */
} aev_policy_choice_t;

typedef struct aev_policy aev_policy_t;

/** Resolves the policy for opts (may be NULL). Fails with AEV_ECONFIG on a bad config file,
 *  with aev_error_detail() naming the file and line. */
int aev_policy_resolve(const aev_loop_options_t *opts, aev_policy_t **out);
/** Frees a resolved policy. */
void aev_policy_free(aev_policy_t *policy);
/** Returns the number of settings in the policy. */
int aev_policy_count(const aev_policy_t *policy);
/** Returns setting i (0 <= i < count), in a fixed order: loop, poll, tls, dns, proc, exec, debug. */
const aev_policy_choice_t *aev_policy_at(const aev_policy_t *policy, int i);
/** Returns the setting named key, or NULL. */
const aev_policy_choice_t *aev_policy_get(const aev_policy_t *policy, const char *key);
/** Returns the config files read, in order (i from 0; NULL past the end). */
const char *aev_policy_config_file(const aev_policy_t *policy, int i);
/** Returns the plugin directories searched, in order (i from 0; NULL past the end). */
const char *aev_policy_search_dir(const aev_policy_t *policy, int i);
/** Returns a plugin option, `key` of section [<family>.<name>], or NULL. */
const char *aev_policy_plugin_option(const aev_policy_t *policy, const char *family,
                                     const char *name, const char *key);

/* One plugin module found on disk (or preloaded), as aev-inspect lists it. */
typedef struct aev_plugin_info {
    const char *path;        /* file, or "(built in) <module>" for a preloaded plugin */
    const char *family;      /* "poll", ... or "?" when the descriptor is unreadable */
    const char *name;
    const char *version;
    const char *description;
    unsigned abi_major, abi_minor;
    uint32_t caps;
    int priority;
    int status;              /* 0 usable here; else AEV_EPLUGIN_REFUSED, AEV_EPLUGIN_PROBE ... */
    const char *reason;      /* why it was refused or cannot run, "" when usable */
    int excluded;            /* 1: excluded by the config, so it was not opened */
} aev_plugin_info_t;

typedef int (*aev_plugin_visit_fn)(const aev_plugin_info_t *info, void *userdata);

/** Calls visit for every plugin module in the policy's search path (and the built-in ones),
 *  loading each to read and check its descriptor and running its probe. A non-zero return
 *  from visit stops the walk and is returned. */
int aev_plugins_foreach(const aev_policy_t *policy, aev_plugin_visit_fn visit, void *userdata);

/** Returns the name of a family ("poll" ...) or NULL. */
const char *aev_family_name(int family);

/** Returns a printable list of the capability flags of a family's plugin into buf. */
const char *aev_caps_describe(int family, uint32_t caps, char *buf, size_t size);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_POLICY_H */
