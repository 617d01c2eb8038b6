/* aev-inspect - show the plugins libaev finds and the policy it resolves.
 *
 * Usage: aev-inspect [--plugins] [--policy] [--try] [--loop=PRESET] [--poll=LIST]
 *                    [--tls=LIST] [--dns=LIST] [--proc=LIST] [--exec=LIST]
 *                    [--config=FILE] [--debug | --no-debug]
 *        aev-inspect --help | --version
 *
 * Without --plugins, --policy or --try it prints the plugins, then the policy
 * (with the config files read and the plugin directories searched). With any
 * of them it prints only what was asked for, in that same order (--try last).
 * --loop, --poll, ... --config and --debug/--no-debug fill aev_loop_options_t
 * exactly as a program calling aev_loop_new() would, so they show up with the
 * origin "argument". The environment (AEV_LOOP, AEV_POLL, ..., AEV_CONFIG,
 * AEV_PLUGIN_PATH) is honoured as by any libaev program.
 *
 * OUTPUT FORMAT (stable: meant for people and for grep, cut -f, awk -F'\t')
 *
 * One record per line: a record type, then fields separated by a single TAB.
 * No field contains a TAB or a newline (they are replaced by spaces); an
 * empty or missing field is printed as "-". Lines starting with '#' are
 * headings for people; programs ignore them. Records:
 *
 *   plugin TAB <path> TAB <family>.<name> TAB version=<v> TAB abi=<major>.<minor>
 *          TAB caps=<caps> TAB priority=<n> TAB <status>
 *       One per plugin module found (in search order; <path> is "(built in)"
 *       for a preloaded one). <caps> is aev_caps_describe()'s text. <status> is
 *       one of:
 *         usable                      the descriptor is valid and the probe passed
 *         excluded by config          [plugins] exclude names it; it was not opened
 *         cannot run here: <reason>   valid, but its probe failed (AEV_EPLUGIN_PROBE)
 *         refused: <reason>           the core refused it (bad ABI, malformed, ...)
 *       An unreadable descriptor shows "?" for family and name.
 *
 *   policy TAB <key>=<value> TAB <origin>
 *       One per setting, in the order loop, poll, tls, dns, proc, exec, debug.
 *       <origin> is where the value came from, strongest first:
 *         argument                    a command-line option here (aev_loop_options_t)
 *         env <VAR>                   e.g. "env AEV_POLL"
 *         config <file>:<line>        a config file line
 *         preset <name>               implied by the loop preset, e.g. "preset auto";
 *                                     "preset selector (default)" for the built-in one
 *         default                     the built-in default
 *
 *   config TAB <file>        a config file read, in the order read (later wins)
 *   search TAB <dir>         a plugin directory searched, in search order
 *
 *   With --try, after creating a loop with this policy:
 *   loop TAB <family>=<plugin>                    each family loaded by the loop
 *                                                 (the others load on first use)
 *   try TAB ok                                    the loop was created and ran once
 *   try TAB failed TAB <error name> TAB <message> creating or running it failed
 *   detail TAB <text>                             aev_error_detail(), one record per line
 *
 * Exit status: 0 success; 1 the policy could not be resolved (a bad config
 * file: the message, on stderr, names file and line), the plugins could not
 * be listed, or --try failed; 2 bad usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aev/aev.h"
#include "aev/plugin.h"

static const char *const families[] = {"poll", "tls", "dns", "proc", "exec"};

static void usage(FILE *f)
{
    fputs("Usage: aev-inspect [OPTION]...\n"
          "Show the plugins libaev finds and the event loop policy it resolves.\n"
          "\n"
          "  --plugins          only list the plugins found\n"
          "  --policy           only print the resolved policy, config files and search path\n"
          "  --try              create a loop with the policy and report the plugins it got\n"
          "  --loop=PRESET      selector, proactor or auto (as aev_loop_options_t.loop)\n"
          "  --poll=LIST        poll plugin, or a comma list of candidates\n"
          "  --tls=LIST, --dns=LIST, --proc=LIST, --exec=LIST\n"
          "                     the same for the other families\n"
          "  --config=FILE      read FILE instead of the usual config files\n"
          "  --debug, --no-debug\n"
          "                     turn debug mode on or off\n"
          "  -h, --help         show this help and exit\n"
          "  -V, --version      show the versions and exit\n"
          "\n"
          "Every option that sets the policy counts as origin \"argument\".\n"
          "Output: one TAB-separated record per line (see the top of aev-inspect.c):\n"
          "  plugin <path> <family>.<name> version= abi= caps= priority= <status>\n"
          "  policy <key>=<value> <origin>\n"
          "  config <file>     search <dir>     loop <family>=<plugin>     try ok|failed\n"
          "Exit status: 0 ok, 1 failure to resolve or load, 2 bad usage.\n",
          f);
}

/* Prints s with TABs and newlines as spaces; "-" for NULL or "". */
static void field(const char *s)
{
    if (s == NULL || *s == '\0') {
        fputc('-', stdout);
        return;
    }
    for (; *s; s++)
        fputc((*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s, stdout);
}

static int family_id(const char *name)
{
    if (name == NULL)
        return 0;
    for (int id = 1; id <= 16; id++) {
        const char *f = aev_family_name(id);
        if (f != NULL && strcmp(f, name) == 0)
            return id;
    }
    return 0;
}

static int print_plugin(const aev_plugin_info_t *info, void *userdata)
{
    char caps[256];
    const char *capstext = NULL;
    int fam = family_id(info->family);
    (void)userdata;

    if (fam != 0) {
        capstext = aev_caps_describe(fam, info->caps, caps, sizeof caps);
    } else {
        snprintf(caps, sizeof caps, "0x%x", (unsigned)info->caps);
        capstext = caps;
    }

    fputs("plugin\t", stdout);
    field(info->path);
    fputc('\t', stdout);
    field(info->family != NULL ? info->family : "?");
    fputc('.', stdout);
    field(info->name != NULL ? info->name : "?");
    fputs("\tversion=", stdout);
    field(info->version);
    printf("\tabi=%u.%u\tcaps=", info->abi_major, info->abi_minor);
    field(capstext);
    printf("\tpriority=%d\t", info->priority);
    if (info->excluded) {
        fputs("excluded by config", stdout);
    } else if (info->status == 0) {
        fputs("usable", stdout);
    } else {
        const char *reason = (info->reason != NULL && *info->reason != '\0')
                                 ? info->reason
                                 : aev_strerror(info->status);
        fputs(info->status == AEV_EPLUGIN_PROBE ? "cannot run here: " : "refused: ", stdout);
        field(reason);
    }
    fputc('\n', stdout);
    return 0;
}

static void print_policy(const aev_policy_t *policy)
{
    const char *s;
    int n = aev_policy_count(policy);

    puts("# policy");
    for (int i = 0; i < n; i++) {
        const aev_policy_choice_t *c = aev_policy_at(policy, i);
        if (c == NULL)
            continue;
        fputs("policy\t", stdout);
        field(c->key);
        fputc('=', stdout);
        field(c->value);
        fputc('\t', stdout);
        field(c->origin_text);
        fputc('\n', stdout);
    }
    puts("# config files read");
    for (int i = 0; (s = aev_policy_config_file(policy, i)) != NULL; i++) {
        fputs("config\t", stdout);
        field(s);
        fputc('\n', stdout);
    }
    puts("# plugin search path");
    for (int i = 0; (s = aev_policy_search_dir(policy, i)) != NULL; i++) {
        fputs("search\t", stdout);
        field(s);
        fputc('\n', stdout);
    }
}

static void print_failure(int rc)
{
    const char *detail = aev_error_detail();
    fputs("try\tfailed\t", stdout);
    field(aev_err_name(rc));
    fputc('\t', stdout);
    field(aev_strerror(rc));
    fputc('\n', stdout);
    while (detail != NULL && *detail != '\0') {
        const char *nl = strchr(detail, '\n');
        size_t len = nl != NULL ? (size_t)(nl - detail) : strlen(detail);
        if (len > 0) {
            fputs("detail\t", stdout);
            for (size_t i = 0; i < len; i++)
                fputc(detail[i] == '\t' || detail[i] == '\r' ? ' ' : detail[i], stdout);
            fputc('\n', stdout);
        }
        detail = nl != NULL ? nl + 1 : NULL;
    }
}

static int stop_cb(aev_loop_t *loop, void *arg)
{
    (void)arg;
    aev_loop_stop(loop);
    return 0;
}

static int try_loop(const aev_loop_options_t *opts)
{
    aev_loop_t *loop = NULL;
    int rc;

    puts("# loop");
    rc = aev_loop_new(opts, &loop);
    if (rc < 0) {
        print_failure(rc);
        return 1;
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const char *name = aev_loop_plugin_name(loop, families[i]);
        if (name == NULL)
            continue;
        printf("loop\t%s=", families[i]);
        field(name);
        fputc('\n', stdout);
    }
    /* One iteration, so that the poll engine has really waited once. */
    rc = aev_loop_call_soon(loop, stop_cb, NULL, NULL);
    if (rc == 0)
        rc = aev_loop_run_forever(loop);
    if (rc < 0) {
        print_failure(rc);
        aev_loop_close(loop);
        aev_loop_free(loop);
        return 1;
    }
    aev_loop_close(loop);
    aev_loop_free(loop);
    puts("try\tok");
    return 0;
}

enum {
    OPT_PLUGINS = 256,
    OPT_POLICY,
    OPT_TRY,
    OPT_LOOP,
    OPT_POLL,
    OPT_TLS,
    OPT_DNS,
    OPT_PROC,
    OPT_EXEC,
    OPT_CONFIG,
    OPT_DEBUG,
    OPT_NO_DEBUG,
};

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"plugins", no_argument, NULL, OPT_PLUGINS},
        {"policy", no_argument, NULL, OPT_POLICY},
        {"try", no_argument, NULL, OPT_TRY},
        {"loop", required_argument, NULL, OPT_LOOP},
        {"poll", required_argument, NULL, OPT_POLL},
        {"tls", required_argument, NULL, OPT_TLS},
        {"dns", required_argument, NULL, OPT_DNS},
        {"proc", required_argument, NULL, OPT_PROC},
        {"exec", required_argument, NULL, OPT_EXEC},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"debug", no_argument, NULL, OPT_DEBUG},
        {"no-debug", no_argument, NULL, OPT_NO_DEBUG},
        {NULL, 0, NULL, 0},
    };
    aev_loop_options_t opts;
    aev_policy_t *policy = NULL;
    int show_plugins = 0, show_policy = 0, do_try = 0;
    int c, rc, status = 0;

    memset(&opts, 0, sizeof opts);
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("aev-inspect (libaev) %s\n", aev_version());
            printf("plugin ABI %d.%d\n", AEV_PLUGIN_ABI_MAJOR, AEV_PLUGIN_ABI_MINOR);
            return 0;
        case OPT_PLUGINS: show_plugins = 1; break;
        case OPT_POLICY: show_policy = 1; break;
        case OPT_TRY: do_try = 1; break;
        case OPT_LOOP: opts.loop = optarg; break;
        case OPT_POLL: opts.poll = optarg; break;
        case OPT_TLS: opts.tls = optarg; break;
        case OPT_DNS: opts.dns = optarg; break;
        case OPT_PROC: opts.proc = optarg; break;
        case OPT_EXEC: opts.exec = optarg; break;
        case OPT_CONFIG: opts.config_file = optarg; break;
        case OPT_DEBUG: opts.debug = 1; break;
        case OPT_NO_DEBUG: opts.debug = -1; break;
        default:
            if (optopt != 0 && optopt < 256)
                fprintf(stderr, "aev-inspect: bad option -%c\n", optopt);
            else
                fprintf(stderr, "aev-inspect: bad option %s\n", argv[optind - 1]);
            fputs("Try 'aev-inspect --help'.\n", stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aev-inspect: unexpected argument '%s'\nTry 'aev-inspect --help'.\n",
                argv[optind]);
        return 2;
    }
    if (!show_plugins && !show_policy && !do_try)
        show_plugins = show_policy = 1;

    if (show_plugins || show_policy) {
        rc = aev_policy_resolve(&opts, &policy);
        if (rc < 0) {
            const char *d = aev_error_detail();
            fprintf(stderr, "aev-inspect: cannot resolve the policy: %s (%s)%s%s\n",
                    aev_strerror(rc), aev_err_name(rc), *d ? "\n" : "", d);
            return 1;
        }
    }
    if (show_plugins) {
        puts("# plugins");
        rc = aev_plugins_foreach(policy, print_plugin, NULL);
        if (rc < 0) {
            const char *d = aev_error_detail();
            fflush(stdout);
            fprintf(stderr, "aev-inspect: cannot list the plugins: %s (%s)%s%s\n",
                    aev_strerror(rc), aev_err_name(rc), *d ? "\n" : "", d);
            status = 1;
        }
    }
    if (show_policy)
        print_policy(policy);
    if (policy != NULL)
        aev_policy_free(policy);

    if (do_try && try_loop(&opts) != 0)
        status = 1;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fputs("aev-inspect: write error\n", stderr);
        return 1;
    }
    return status;
}
