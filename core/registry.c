/* libaev core - the plugin registry: finding plugin modules, loading them with
 * libltdl (local binding), checking their descriptors before calling anything
 * in them, probing, and initialising them.
 *
 * A module is found by file name, aev_<family>_<name>.so, in the policy's
 * search directories; the first file found decides (as PATH does). Plugins
 * linked into the core (-Dpreload_plugins=true) come after the directories.
 * Loaded plugins stay resident and are remembered by path; failures are not
 * remembered, so a later attempt tries again. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop_internal.h"
#include "registry_internal.h"

#ifndef AEV_MODULE_EXT
#define AEV_MODULE_EXT ".so"
#endif
#define BUILTIN_PATH "(built in)"


static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static int ltdl_ready;
static aev__plugin_t **loaded;
static size_t nloaded;

/* Caller holds registry_lock. */
static int ltdl_init(char *why, size_t size)
{
    if (ltdl_ready)
        return 0;
    if (lt_dlinit() != 0) {
        snprintf(why, size, "libltdl failed to initialise: %s", lt_dlerror());
        return AEV_EPLUGIN_REFUSED;
    }
    ltdl_ready = 1;
    return 0;
}

/* ---- descriptor checks --------------------------------------------------------- */

static int check_descriptor(const aev_plugin_descriptor_t *d, int family, const char *name,
                            char *why, size_t size)
{
    if (d->magic != AEV_PLUGIN_MAGIC) {
        snprintf(why, size, "bad descriptor magic 0x%08x (expected 0x%08x): not a libaev plugin descriptor",
                 d->magic, AEV_PLUGIN_MAGIC);
        return -1;
    }
    if (d->abi_major != AEV_PLUGIN_ABI_MAJOR) {
        snprintf(why, size, "plugin ABI %u.%u has a different major version than libaev's %u.%u",
                 d->abi_major, d->abi_minor, AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR);
        return -1;
    }
    if (d->abi_minor > AEV_PLUGIN_ABI_MINOR) {
        snprintf(why, size, "plugin ABI %u.%u is newer than libaev's %u.%u (abi_minor %u > %u)",
                 d->abi_major, d->abi_minor, AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR, d->abi_minor,
                 AEV_PLUGIN_ABI_MINOR);
        return -1;
    }
    /* The descriptor's size for each minor of this major (append-only: grows with the minor). */
    static const size_t size_of_minor[] = {
        sizeof(aev_plugin_descriptor_t), /* 1.0 */
        sizeof(aev_plugin_descriptor_t), /* 1.1: host table v2 and dns ops; descriptor unchanged */
    };
    _Static_assert(sizeof size_of_minor / sizeof size_of_minor[0] == AEV_PLUGIN_ABI_MINOR + 1,
                   "one descriptor size per ABI minor");
    if (d->struct_size < size_of_minor[d->abi_minor]) {
        snprintf(why, size, "descriptor struct_size %u is smaller than the %zu bytes of ABI %u.%u",
                 d->struct_size, size_of_minor[d->abi_minor], d->abi_major, d->abi_minor);
        return -1;
    }
    if (!aev_family_name((int)d->family)) {
        snprintf(why, size, "descriptor family %u is unknown", d->family);
        return -1;
    }
    if ((int)d->family != family) {
        snprintf(why, size, "descriptor family \"%s\" differs from the file name's \"%s\"",
                 aev_family_name((int)d->family), aev_family_name(family));
        return -1;
    }
    if (!d->name || !d->name[0]) {
        snprintf(why, size, "descriptor name is missing");
        return -1;
    }
    if (strcmp(d->name, name) != 0) {
        snprintf(why, size, "descriptor name \"%.64s\" differs from the file name's \"%s\"", d->name, name);
        return -1;
    }
    if (!d->init) {
        snprintf(why, size, "descriptor init function is missing");
        return -1;
    }
    return 0;
}

static int check_ops(const aev_plugin_descriptor_t *d, int family, const void *ops, char *why,
                     size_t size)
{
    uint32_t version = *(const uint32_t *)ops;
    if (version < 1) {
        snprintf(why, size, "ops version %u is invalid", version);
        return -1;
    }
    /* Every family's ops begin with (version, caps). */
    uint32_t caps = ((const uint32_t *)ops)[1];
    if (caps != d->caps) {
        snprintf(why, size, "ops caps 0x%x differ from the descriptor's caps 0x%x", caps, d->caps);
        return -1;
    }
    if (family == AEV_FAMILY_POLL) {
        const aev_poll_ops_t *p = ops;
        const char *missing = !p->create ? "create" : !p->destroy ? "destroy" : !p->watch ? "watch"
                              : !p->wait ? "wait" : !p->wake ? "wake" : NULL;
        if (!missing && (p->caps & AEV_POLL_CAP_COMPLETION) && (!p->submit || !p->cancel))
            missing = "submit/cancel (the engine claims AEV_POLL_CAP_COMPLETION)";
        if (missing) {
            snprintf(why, size, "poll ops lack %s", missing);
            return -1;
        }
    }
    if (family == AEV_FAMILY_DNS) {
        const aev_dns_ops_t *x = ops;
        const char *missing = !x->create ? "create" : !x->destroy ? "destroy"
                              : !x->getaddrinfo ? "getaddrinfo" : !x->getnameinfo ? "getnameinfo"
                              : NULL;
        if (missing) {
            snprintf(why, size, "dns ops lack %s", missing);
            return -1;
        }
    }
    if (family == AEV_FAMILY_EXEC) {
        const aev_exec_ops_t *x = ops;
        const char *missing = !x->create ? "create" : !x->submit ? "submit" : !x->shutdown ? "shutdown"
                              : !x->max_workers ? "max_workers" : !x->destroy ? "destroy" : NULL;
        if (missing) {
            snprintf(why, size, "exec ops lack %s", missing);
            return -1;
        }
    }
    return 0;
}

/* Checks, probes and initialises a descriptor; caller holds registry_lock. */
static int activate(const char *path, const aev_plugin_descriptor_t *d, int family, const char *name,
                    const aev__plugin_t **out, char *why, size_t size)
{
    for (size_t i = 0; i < nloaded; i++) {
        if (strcmp(loaded[i]->path, path) == 0) {
            *out = loaded[i];
            return 0;
        }
    }
    if (check_descriptor(d, family, name, why, size) < 0)
        return AEV_EPLUGIN_REFUSED;
    if (d->probe) {
        char pwhy[512] = "";
        int rc = d->probe(&aev__host, pwhy, sizeof pwhy);
        if (rc != 0) {
            snprintf(why, size, "probe failed: %s (%s)", pwhy[0] ? pwhy : "no reason given",
                     aev_err_name(rc < 0 ? rc : -rc));
            return AEV_EPLUGIN_PROBE;
        }
    }
    const void *ops = d->init(&aev__host);
    if (!ops) {
        snprintf(why, size, "init failed%s%s", aev_error_detail()[0] ? ": " : "", aev_error_detail());
        return AEV_EPLUGIN_REFUSED;
    }
    if (check_ops(d, family, ops, why, size) < 0)
        return AEV_EPLUGIN_REFUSED;
    aev__plugin_t *p = calloc(1, sizeof *p);
    aev__plugin_t **nl = realloc(loaded, (nloaded + 1) * sizeof *nl);
    if (!p || !nl || !(p->path = strdup(path))) {
        free(p);
        if (nl)
            loaded = nl;
        snprintf(why, size, "out of memory");
        return -ENOMEM;
    }
    p->desc = d;
    p->ops = ops;
    loaded = nl;
    loaded[nloaded++] = p;
    *out = p;
    return 0;
}

/* Opens a module file and returns its descriptor; caller holds registry_lock. */
static int open_module(const char *path, const aev_plugin_descriptor_t **desc, char *why, size_t size)
{
    int rc = ltdl_init(why, size);
    if (rc < 0)
        return rc;
    lt_dladvise advise;
    if (lt_dladvise_init(&advise) != 0 || lt_dladvise_local(&advise) != 0) {
        snprintf(why, size, "libltdl: %s", lt_dlerror());
        return AEV_EPLUGIN_REFUSED;
    }
    lt_dlhandle h = lt_dlopenadvise(path, advise);
    lt_dladvise_destroy(&advise);
    if (!h) {
        snprintf(why, size, "cannot load: %s", lt_dlerror());
        return AEV_EPLUGIN_REFUSED;
    }
    /* libltdl tries <module>_LTX_aev_plugin first, then aev_plugin. */
    const aev_plugin_descriptor_t *d = lt_dlsym(h, "aev_plugin");
    if (!d) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t len = strlen(base);
        size_t elen = strlen(AEV_MODULE_EXT);
        snprintf(why, size, "no plugin descriptor: the module exports neither %.*s_LTX_aev_plugin nor aev_plugin",
                 (int)(len > elen ? len - elen : len), base);
        return AEV_EPLUGIN_REFUSED;
    }
    *desc = d;
    return 0;
}

static const aev_plugin_descriptor_t *builtin_find(const char *module)
{
#ifdef AEV_HAVE_PRELOAD
    for (const lt_dlsymlist *s = aev__preloaded_symbols + 1; s->name; s++)
        if (!s->address && strcmp(s->name, module) == 0 && s[1].name)
            return s[1].address;
#else
    (void)module;
#endif
    return NULL;
}

/* ---- loading one family from a candidate list ---------------------------------------- */

typedef struct report {
    char *buf;
    size_t len, cap;
} report_t;

static void report_add(report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_add(report_t *r, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(r->buf ? r->buf + r->len : NULL, r->buf ? r->cap - r->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (r->buf && r->len + (size_t)n < r->cap) {
            r->len += (size_t)n;
            return;
        }
        size_t cap = (r->cap ? r->cap : 512) * 2 + (size_t)n;
        char *nb = realloc(r->buf, cap);
        if (!nb)
            return;
        r->buf = nb;
        r->cap = cap;
    }
}

/* Tries one candidate; returns 0 and *out, or an AEV_EPLUGIN_* code after adding to r. */
static int load_candidate(const aev_policy_t *policy, int family, const char *name,
                          const aev__plugin_t **out, report_t *r)
{
    const char *fam = aev_family_name(family);
    char module[300], path[4400], why[1024];
    snprintf(module, sizeof module, "aev_%s_%s", fam, name);
    if (aev__policy_excluded(policy, fam, name)) {
        report_add(r, "  - %s: excluded by the config ([plugins] exclude), not opened\n", name);
        return AEV_EPLUGIN_NOT_FOUND;
    }
    report_add(r, "  - %s:", name);
    for (int i = 0; aev_policy_search_dir(policy, i); i++) {
        snprintf(path, sizeof path, "%s/%s%s", aev_policy_search_dir(policy, i), module, AEV_MODULE_EXT);
        if (access(path, F_OK) != 0) {
            report_add(r, "\n      %s: not found", path);
            continue;
        }
        const aev_plugin_descriptor_t *d = NULL;
        int rc = open_module(path, &d, why, sizeof why);
        if (rc == 0)
            rc = activate(path, d, family, name, out, why, sizeof why);
        if (rc == 0)
            return 0;
        report_add(r, "\n      %s: %s\n", path, why);
        return rc; /* the first file found decides */
    }
    const aev_plugin_descriptor_t *d = builtin_find(module);
    if (d) {
        /* "(built in) <module>": also the key under which it is remembered */
        snprintf(path, sizeof path, "%s %s", BUILTIN_PATH, module);
        int rc = activate(path, d, family, name, out, why, sizeof why);
        if (rc == 0)
            return 0;
        report_add(r, "\n      %s: %s\n", path, why);
        return rc;
    }
    report_add(r, "\n      (not built in either)\n");
    return AEV_EPLUGIN_NOT_FOUND;
}

int aev__registry_load(const aev_policy_t *policy, int family, const char *list,
                       const char *origin_text, const aev__plugin_t **out)
{
    report_t r = {0};
    int worst = AEV_EPLUGIN_NOT_FOUND;
    int rc = AEV_EPLUGIN_NOT_FOUND;
    const char *fam = aev_family_name(family);
    pthread_mutex_lock(&registry_lock);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if (e == p)
            break;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(e - p), p);
        rc = load_candidate(policy, family, name, out, &r);
        if (rc == 0)
            break;
        if (rc == AEV_EPLUGIN_PROBE || (rc == AEV_EPLUGIN_REFUSED && worst != AEV_EPLUGIN_PROBE))
            worst = rc;
        else if (rc == -ENOMEM)
            worst = rc;
        p = e;
    }
    pthread_mutex_unlock(&registry_lock);
    if (rc == 0) {
        if (r.len)
            aev_log(AEV_LOG_DEBUG, "aev", "%s plugin \"%s\" chosen after skipping:\n%s", fam,
                    (*out)->desc->name, r.buf);
        free(r.buf);
        return 0;
    }
    aev__set_detail("cannot load a %s plugin from \"%s\" (%s); tried:\n%s", fam, list, origin_text,
                    r.buf ? r.buf : "  (no candidates)\n");
    free(r.buf);
    return worst;
}

/* ---- listing ------------------------------------------------------------------------- */

static int parse_module_name(const char *file, char *fam, size_t fsize, char *name, size_t nsize)
{
    size_t len = strlen(file), elen = strlen(AEV_MODULE_EXT);
    if (len <= 4 + elen || strncmp(file, "aev_", 4) != 0 || strcmp(file + len - elen, AEV_MODULE_EXT) != 0)
        return -1;
    const char *f = file + 4;
    const char *us = strchr(f, '_');
    if (!us || (size_t)(us - f) >= fsize)
        return -1;
    snprintf(fam, fsize, "%.*s", (int)(us - f), f);
    snprintf(name, nsize, "%.*s", (int)(file + len - elen - (us + 1)), us + 1);
    return name[0] ? 0 : -1;
}

static int family_from_name(const char *fam)
{
    for (int f = AEV_FAMILY_POLL; f <= AEV_FAMILY_EXEC; f++)
        if (strcmp(aev_family_name(f), fam) == 0)
            return f;
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int visit_one(const aev_policy_t *policy, const char *path, const char *fam, const char *name,
                     const aev_plugin_descriptor_t *builtin, aev_plugin_visit_fn visit, void *ud)
{
    aev_plugin_info_t info = {.path = path, .family = fam, .name = name, .version = "", .description = "",
                              .reason = ""};
    char why[1024] = "";
    int family = family_from_name(fam);
    const aev_plugin_descriptor_t *d = builtin;
    if (!family) {
        info.family = "?";
        info.status = AEV_EPLUGIN_REFUSED;
        snprintf(why, sizeof why, "file name does not name a known family (aev_<family>_<name>%s)",
                 AEV_MODULE_EXT);
    } else if (aev__policy_excluded(policy, fam, name)) {
        info.excluded = 1;
        info.status = AEV_EPLUGIN_REFUSED;
        snprintf(why, sizeof why, "excluded by the config ([plugins] exclude), not opened");
    } else {
        pthread_mutex_lock(&registry_lock);
        int rc = d ? 0 : open_module(path, &d, why, sizeof why);
        if (rc == 0) {
            /* Show what the descriptor says only once it is known to be well-formed. */
            const aev__plugin_t *p;
            rc = activate(path, d, family, name, &p, why, sizeof why);
            if (rc == 0 || rc == AEV_EPLUGIN_PROBE || check_descriptor(d, family, name, why, 0) == 0) {
                info.name = d->name;
                info.version = d->version ? d->version : "";
                info.description = d->description ? d->description : "";
                info.caps = d->caps;
                info.priority = d->priority;
            }
            if (d->magic == AEV_PLUGIN_MAGIC) {
                info.abi_major = d->abi_major;
                info.abi_minor = d->abi_minor;
            }
        }
        pthread_mutex_unlock(&registry_lock);
        info.status = rc;
    }
    info.reason = why;
    return visit(&info, ud);
}

int aev_plugins_foreach(const aev_policy_t *policy, aev_plugin_visit_fn visit, void *ud)
{
    if (!policy || !visit)
        return -EINVAL;
    char **seen = NULL;
    size_t nseen = 0;
    int ret = 0;
    for (int i = 0; ret == 0 && aev_policy_search_dir(policy, i); i++) {
        const char *dir = aev_policy_search_dir(policy, i);
        DIR *dh = opendir(dir);
        if (!dh)
            continue;
        char **files = NULL;
        size_t nfiles = 0;
        struct dirent *de;
        while ((de = readdir(dh))) {
            char fam[64], name[128];
            if (parse_module_name(de->d_name, fam, sizeof fam, name, sizeof name) < 0)
                continue;
            char **nf = realloc(files, (nfiles + 1) * sizeof *nf);
            if (!nf)
                break;
            files = nf;
            if ((files[nfiles] = strdup(de->d_name)))
                nfiles++;
        }
        closedir(dh);
        if (nfiles > 1)
            qsort(files, nfiles, sizeof *files, name_cmp);
        for (size_t j = 0; j < nfiles; j++) {
            char fam[64], name[128], path[4400];
            parse_module_name(files[j], fam, sizeof fam, name, sizeof name);
            snprintf(path, sizeof path, "%s/%s", dir, files[j]);
            int shadowed = 0;
            for (size_t s = 0; s < nseen; s++)
                if (strcmp(seen[s], files[j]) == 0)
                    shadowed = 1;
            if (shadowed) {
                aev_plugin_info_t info = {.path = path, .family = fam, .name = name, .version = "",
                                          .description = "", .status = AEV_EPLUGIN_REFUSED,
                                          .reason = "shadowed by a module of the same name earlier in the search path"};
                if (ret == 0)
                    ret = visit(&info, ud);
            } else {
                char **ns = realloc(seen, (nseen + 1) * sizeof *ns);
                if (ns) {
                    seen = ns;
                    if ((seen[nseen] = strdup(files[j])))
                        nseen++;
                }
                if (ret == 0)
                    ret = visit_one(policy, path, fam, name, NULL, visit, ud);
            }
            free(files[j]);
        }
        free(files);
    }
#ifdef AEV_HAVE_PRELOAD
    for (const lt_dlsymlist *s = aev__preloaded_symbols + 1; ret == 0 && s->name; s++) {
        if (s->address || !s[1].name)
            continue;
        char fam[64], name[128], file[300];
        snprintf(file, sizeof file, "%s%s", s->name, AEV_MODULE_EXT);
        char path[400];
        snprintf(path, sizeof path, "%s %s", BUILTIN_PATH, s->name);
        if (parse_module_name(file, fam, sizeof fam, name, sizeof name) == 0)
            ret = visit_one(policy, path, fam, name, s[1].address, visit, ud);
    }
#endif
    for (size_t s = 0; s < nseen; s++)
        free(seen[s]);
    free(seen);
    return ret;
}

const char *aev_caps_describe(int family, uint32_t caps, char *buf, size_t size)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } poll_caps[] = {
        {AEV_POLL_CAP_READINESS, "readiness"},     {AEV_POLL_CAP_COMPLETION, "completion"},
        {AEV_POLL_CAP_MULTISHOT, "multishot"},     {AEV_POLL_CAP_BUFFER_RING, "buffer-ring"},
        {AEV_POLL_CAP_FD_LIMIT, "fd-limit"},       {AEV_POLL_CAP_NS_TIMEOUT, "ns-timeout"},
    };
    if (!buf || !size)
        return "";
    buf[0] = '\0';
    size_t n = 0;
    uint32_t rest = caps;
    if (family == AEV_FAMILY_DNS && (caps & AEV_DNS_CAP_THREADS)) {
        int w = snprintf(buf, size, "threads");
        if (w < 0 || (size_t)w >= size)
            return buf;
        n = (size_t)w;
        rest &= ~AEV_DNS_CAP_THREADS;
    }
    if (family == AEV_FAMILY_POLL) {
        for (size_t i = 0; i < sizeof poll_caps / sizeof poll_caps[0]; i++) {
            if (caps & poll_caps[i].bit) {
                int w = snprintf(buf + n, size - n, "%s%s", n ? "," : "", poll_caps[i].name);
                if (w < 0 || (size_t)w >= size - n)
                    return buf;
                n += (size_t)w;
                rest &= ~poll_caps[i].bit;
            }
        }
    }
    if (rest)
        snprintf(buf + n, size - n, "%s0x%x", n ? "," : "", rest);
    else if (!n)
        snprintf(buf, size, "-");
    return buf;
}
